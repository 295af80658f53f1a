"""A VM's whole life on the real libvirtd with QEMU (qemu:///system), through the job
runner: register a qcow2 made with qemu-img, deploy, stop, start, reboot, destroy,
expunge — the domain, its volume file, its NIC and address and its capacity come and go.

The guest has no OS (a blank qcow2): QEMU runs it all the same, software-emulated, with
64 MiB. Its NIC plugs into a bridge made for the test (brvx<vni>), removed afterwards.
Live migration needs a second libvirtd; with one, that test says so and skips.
"""

# ruff: noqa: F811  (pytest fixtures imported from compute_qemu are used as arguments)
from __future__ import annotations

import contextlib
import os
import subprocess
import uuid

import libvirt
from compute_qemu import (  # noqa: F401  (fixtures)
    BRIDGE,
    VNI,
    bridge,
    domain_on_qemu,
    forget_pools_under,
    qemu,
    runner,
    workdir,
    world,
)
from compute_world import (
    claims,
    host_usage,
    live_volumes,
    make_compute_world,
    nics,
    pool_row,
    taken_addresses,
    vm_by_name,
)
from conftest import missing_part
from hosts_helpers import MIB

from engine import topology
from engine.compute import (
    DeployRequest,
    deploy_vm,
    destroy_vm,
    expunge_vm,
    migrate_vm,
    reboot_vm,
    start_vm,
    stop_vm,
)
from engine.hosts import domains
from engine.hosts.domain_xml import vm_uuid_of
from engine.jobs import JobRunner
from engine.models import ClaimState, PowerState, VmState


def _run(runner: JobRunner, job) -> None:  # type: ignore[no-untyped-def]
    runner.wait(job.uuid, timeout=180, raise_on_failure=True)


def test_a_vm_through_its_whole_life_on_real_qemu(world, runner, workdir) -> None:
    cloud = world.cloud
    request = DeployRequest("e2e", zone="z1", offering="tiny", template="tiny", networks=["guest"])
    vm, job = deploy_vm(cloud.admin, request)
    _run(runner, job)

    vm = vm_by_name(cloud, "e2e")
    assert vm.state == VmState.RUNNING and vm.host_id == world.hosts[0].id
    state, xml = domain_on_qemu(vm.instance_name)  # type: ignore[misc]
    assert state == "running"
    assert vm_uuid_of(xml) == vm.uuid  # our metadata: the domain is tied to its row
    assert f"bridge='{BRIDGE}'" in xml or f'bridge="{BRIDGE}"' in xml
    (root,) = live_volumes(cloud, vm.id)
    disk = workdir / "primary" / str(root.path)
    assert disk.exists() and f"volume='{root.path}'" in xml
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", str(disk)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"virtual-size": 33554432' in info and "backing-filename" not in info  # a copy
    (nic,) = nics(cloud)
    assert nic.mac in xml and taken_addresses(cloud) == [nic.address]
    assert host_usage(cloud) == [(500, 0, 64 * MIB, 0)]
    assert [c.state for c in claims(cloud)] == [ClaimState.USED]
    assert pool_row(cloud).allocated_bytes == 32 * MIB

    # stop: no OS answers ACPI, so the graceful stop runs out and forces the domain off
    _run(runner, stop_vm(cloud.admin, vm.uuid, timeout=1))
    assert domain_on_qemu(vm.instance_name)[0] == "shutoff"  # type: ignore[index]
    stopped = vm_by_name(cloud, "e2e")
    assert stopped.state == VmState.STOPPED and stopped.power_state == PowerState.POWER_OFF
    assert host_usage(cloud) == [(0, 500, 0, 64 * MIB)]
    assert [c.state for c in claims(cloud)] == [ClaimState.RESERVED]

    _run(runner, start_vm(cloud.admin, vm.uuid))
    assert domain_on_qemu(vm.instance_name)[0] == "running"  # type: ignore[index]
    assert host_usage(cloud) == [(500, 0, 64 * MIB, 0)]

    _run(runner, reboot_vm(cloud.admin, vm.uuid))
    assert domain_on_qemu(vm.instance_name)[0] == "running"  # type: ignore[index]
    assert vm_by_name(cloud, "e2e").state == VmState.RUNNING

    _run(runner, destroy_vm(cloud.admin, vm.uuid))
    assert domain_on_qemu(vm.instance_name) is None  # undefined
    assert disk.exists()  # recoverable: the volume stays
    assert vm_by_name(cloud, "e2e").state == VmState.DESTROYED
    assert host_usage(cloud)[0][0] == 0

    _run(runner, expunge_vm(cloud.admin, vm.uuid))
    gone = vm_by_name(cloud, "e2e")
    assert gone.state == VmState.EXPUNGED and gone.removed is not None
    assert not disk.exists()
    assert live_volumes(cloud) == [] and nics(cloud) == [] and taken_addresses(cloud) == []
    assert claims(cloud) == [] and host_usage(cloud) == [(0, 0, 0, 0)]
    assert pool_row(cloud).allocated_bytes == 0


def test_live_migration_between_two_real_hosts(qemu, bridge, cloud, workdir, runner) -> None:
    second = os.environ.get("SECOND_LIBVIRT_URI")
    if not second:
        missing_part(
            "live migration needs a second libvirtd host (scripts/libvirtd-second-up, "
            "SECOND_LIBVIRT_URI); none here"
        )
    world = make_compute_world(
        cloud, workdir, uris=[qemu, second], vni=VNI, instance_suffix=f"M{uuid.uuid4().hex[:8]}"
    )
    source, target = world.hosts  # h0 at qemu:///system, h1 the second daemon
    # Deploy on the first daemon: the second one, in its own mount namespace, would read
    # qemu:///system as itself, so only first -> second is a migration between two hosts.
    topology.disable_host(cloud.admin, target.uuid)
    request = DeployRequest("mig", zone="z1", offering="tiny", template="tiny", networks=["guest"])
    vm, job = deploy_vm(cloud.admin, request)
    _run(runner, job)
    topology.enable_host(cloud.admin, target.uuid)
    vm = vm_by_name(cloud, "mig")
    assert vm.host_id == source.id
    try:
        done = runner.wait(migrate_vm(cloud.admin, vm.uuid, target.uuid).uuid, timeout=180)
        assert done.state == "Succeeded", done.error
        assert done.progress == 100
        moved = vm_by_name(cloud, "mig")
        assert moved.state == VmState.RUNNING and moved.host_id == target.id
        assert [(c.host_id, c.state) for c in claims(cloud)] == [(target.id, ClaimState.USED)]
        usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
        assert usage == {source.name: (0, 0, 0, 0), target.name: (500, 0, 64 * MIB, 0)}
        state_on = {
            h.name: domains.domain_state(runner.hosts.for_host(h), vm.instance_name)  # type: ignore[union-attr]
            if domains.domain_exists(runner.hosts.for_host(h), vm.instance_name)  # type: ignore[union-attr]
            else None
            for h in world.hosts
        }
        assert state_on == {source.name: None, target.name: "running"}
    finally:
        _run(runner, destroy_vm(cloud.admin, vm.uuid, expunge=True))
        for uri in (qemu, second):
            conn = libvirt.open(uri)
            try:
                with contextlib.suppress(libvirt.libvirtError):
                    dom = conn.lookupByName(vm.instance_name)
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
            finally:
                conn.close()
            forget_pools_under(workdir, uri)
