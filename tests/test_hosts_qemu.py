"""The hypervisor layer against a real libvirtd with QEMU (software emulation, type 'qemu').

`scripts/test` starts virtlogd and libvirtd; without them these tests report a missing
part. The VM is tiny and never boots (a blank qcow2 disk): what is tested is libvirt's
side of define, start, suspend, resume, shutdown/destroy and undefine, storage in a dir
pool, and what happens to a host when libvirtd dies and comes back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from engine.bootstrap import Cloud
from engine.hosts import domains, storage
from engine.hosts.domain_xml import DiskSpec, DomainSpec, build_domain_xml, vm_uuid_of
from engine.hosts.errors import HostTimeout, HypervisorError, ImageRefused
from engine.hosts.facts import add_host_from_uri
from engine.hosts.manager import HostManager
from engine.models import HostStatus, PowerState, VmState
from tests.helpers import make_cluster, make_pod, make_zone
from tests.hosts_helpers import (
    MIB,
    add_vm,
    forget_domain,
    host_row,
    need_qemu,
    qemu_workdir,
    vm_row,
    wait_for,
)

URI = "qemu:///system"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def qemu() -> str:
    return need_qemu()


@pytest.fixture
def workdir() -> Iterator[Path]:
    with qemu_workdir() as path:
        yield path


@pytest.fixture
def manager(cloud: Cloud) -> Iterator[HostManager]:
    m = HostManager(cloud.db, timeout=30, alert_after=120, debounce=0.3)
    yield m
    m.close()


@pytest.fixture
def pool(qemu: str, manager: HostManager, workdir: Path) -> Iterator[str]:
    """A dir pool over a fresh directory, removed (with its domains' leftovers) after."""
    name = f"stratus-test-{uuid.uuid4().hex[:8]}"
    hc = manager.connection(qemu)
    storage.ensure_dir_pool(hc, name, str(workdir / "pool"))
    yield name
    conn = libvirt.open(qemu)
    try:
        with contextlib.suppress(libvirt.libvirtError):
            p = conn.storagePoolLookupByName(name)
            if p.isActive():
                p.destroy()
            p.undefine()
    finally:
        conn.close()


def _tiny_vm(name: str, pool: str, volume: str) -> tuple[DomainSpec, str]:
    vm_uuid = str(uuid.uuid4())
    spec = DomainSpec(
        name=name,
        uuid=vm_uuid,
        vm_uuid=vm_uuid,
        vcpus=1,
        memory_bytes=64 * MIB,
        description="test VM <&> ]]>",
        disks=(DiskSpec(target="vda", format="qcow2", pool=pool, volume=volume),),
        domain_type="qemu",  # /dev/kvm is not usable here: software emulation
    )
    return spec, build_domain_xml(spec)


def test_a_small_vm_through_its_whole_life(qemu, manager, pool) -> None:
    hc = manager.connection(qemu)
    volume = storage.create_volume(hc, pool, "root.qcow2", 64 * MIB, "qcow2")
    assert volume.format == "qcow2" and volume.capacity_bytes == 64 * MIB
    name = f"stratus-test-{uuid.uuid4().hex[:8]}"
    spec, xml = _tiny_vm(name, pool, "root.qcow2")
    try:
        assert domains.define_domain(hc, xml) == name
        assert domains.power_state(hc, name) == PowerState.POWER_OFF
        assert domains.start_domain(hc, name) is True
        assert domains.domain_state(hc, name) == "running"
        # One libvirtd cannot migrate to itself; libvirt accepts our flags and parameters
        # and refuses only at the same-host check. The domain stays where it was.
        progress: list[domains.MigrationProgress] = []
        with pytest.raises(HypervisorError, match=r"migration of domain .* same host"):
            domains.migrate_domain(hc, hc, name, timeout=60, progress=progress.append)
        assert domains.domain_state(hc, name) == "running"
        domains.suspend_domain(hc, name)
        assert domains.domain_state(hc, name) == "paused"
        domains.resume_domain(hc, name)
        assert domains.domain_state(hc, name) == "running"
        stats = domains.domain_stats(hc, name)
        assert stats.vcpus == 1 and stats.max_memory_bytes == 64 * MIB
        assert "vda" in stats.block
        live_xml = hc.call(lambda c: c.lookupByName(name).XMLDesc(0), what="read xml")
        assert vm_uuid_of(live_xml) == spec.vm_uuid
        assert "listen='127.0.0.1'" in live_xml
        # No OS answers ACPI: the graceful shutdown runs out and the domain is destroyed.
        assert domains.shutdown_domain(hc, name, timeout=1) == "destroyed"
        assert domains.power_state(hc, name) == PowerState.POWER_OFF
        assert domains.destroy_domain(hc, name) is False
        assert domains.undefine_domain(hc, name) is True
        assert domains.power_state(hc, name) == PowerState.POWER_REPORT_MISSING
    finally:
        forget_domain(name)


def test_dir_pool_volumes_and_capacity(qemu, cloud, manager, pool, workdir) -> None:
    hc = manager.connection(qemu)
    # ensure_dir_pool is idempotent, and the path of an existing pool is checked.
    again = storage.ensure_dir_pool(hc, pool, str(workdir / "pool"))
    assert again.active and again.capacity_bytes > 0
    blank = storage.create_volume(hc, pool, "blank.raw", 8 * MIB, "raw")
    assert blank.format == "raw"
    template = workdir / "template.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(template), "32M"], check=True)
    copy = storage.create_volume_from_template(hc, pool, "copy.qcow2", str(template), "qcow2")
    assert copy.capacity_bytes == 32 * MIB and copy.backing_path is None
    linked = storage.create_volume_from_template(
        hc, pool, "linked.qcow2", str(template), "qcow2", size_bytes=48 * MIB, linked=True
    )
    assert linked.backing_path == str(template) and linked.capacity_bytes == 48 * MIB
    grown = storage.resize_volume(hc, pool, "copy.qcow2", 40 * MIB)
    assert grown.capacity_bytes == 40 * MIB
    names = [v.name for v in storage.list_volumes(hc, pool)]
    assert names == ["blank.raw", "copy.qcow2", "linked.qcow2"]
    assert storage.delete_volume(hc, pool, "blank.raw") is True
    assert storage.delete_volume(hc, pool, "blank.raw") is False
    assert not (workdir / "pool" / "blank.raw").exists()
    # An unsafe template never becomes a volume.
    evil = workdir / "evil.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(template), str(evil)],
        check=True,
    )
    with pytest.raises(ImageRefused, match="backing file"):
        storage.create_volume_from_template(hc, pool, "evil.qcow2", str(evil), "qcow2")
    assert "evil.qcow2" not in [v.name for v in storage.list_volumes(hc, pool)]


def test_pool_capacity_is_read_back_into_the_database(qemu, cloud, manager, workdir) -> None:
    from engine import topology

    make_zone(cloud)
    make_pod(cloud)
    cluster = make_cluster(cloud)
    row = topology.create_storage_pool(
        cloud.admin, "primary", path=str(workdir / "primary"), cluster_ref=cluster.uuid
    )
    assert row.capacity_bytes == 0
    hc = manager.connection(qemu)
    try:
        storage.ensure_dir_pool(hc, row.libvirt_pool_name, row.path)
        info = storage.sync_pool_capacity(cloud.db, hc, row.uuid)
        stored = topology.list_storage_pools(cloud.admin)[0]
        assert stored.capacity_bytes == info.capacity_bytes > 0
        assert stored.used_bytes == info.allocation_bytes
        statvfs = os.statvfs(workdir)
        assert info.capacity_bytes == statvfs.f_blocks * statvfs.f_frsize
    finally:
        conn = libvirt.open(qemu)
        with contextlib.suppress(libvirt.libvirtError):
            p = conn.storagePoolLookupByName(row.libvirt_pool_name)
            p.destroy()
            p.undefine()
        conn.close()


# --- libvirtd dies and comes back ------------------------------------------------------


def _libvirtd_pids() -> list[int]:
    """The qemu:///system daemon, by its pid file: the second libvirtd (another host, for
    the migration test) must survive this test."""
    try:
        pid = int(Path("/run/libvirtd.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return []
    return [pid]


def _start_libvirtd() -> None:
    subprocess.run([str(REPO / "scripts" / "libvirtd-up")], check=True, timeout=120)


def test_libvirtd_dies_host_disconnected_then_reconnected_and_resynced(
    qemu, cloud, manager, pool
) -> None:
    make_zone(cloud)
    make_pod(cloud)
    cluster = make_cluster(cloud)
    host = add_host_from_uri(cloud.admin, manager, cluster.uuid, qemu, name="local")
    hc = manager.for_host(host)
    storage.create_volume(hc, pool, "root.qcow2", 16 * MIB, "qcow2")
    name = f"stratus-test-{uuid.uuid4().hex[:8]}"
    spec, xml = _tiny_vm(name, pool, "root.qcow2")
    add_vm(
        cloud, host, name, state=VmState.RUNNING, power_state=PowerState.POWER_OFF,
        uuid=spec.vm_uuid,
    )  # fmt: skip
    try:
        domains.define_domain(hc, xml)
        domains.start_domain(hc, name)
        wait_for("PowerOn from the event", lambda: vm_row(cloud, name).power_state == "PowerOn")
        pids = _libvirtd_pids()
        assert pids, "libvirtd is not running"
        try:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            wait_for("libvirtd gone", lambda: not _libvirtd_pids())
            wait_for(
                "host Disconnected",
                lambda: host_row(cloud, host.uuid).status == HostStatus.DISCONNECTED,
            )
            # While it is away the database drifts (say, a missed event): resync must fix it.
            with cloud.db.write() as session:
                vm = session.get(type(vm_row(cloud, name)), vm_row(cloud, name).id)
                vm.power_state = PowerState.POWER_OFF  # type: ignore[union-attr]
                session.add(vm)
        finally:
            if not _libvirtd_pids():
                _start_libvirtd()
        wait_for("host Up again", lambda: host_row(cloud, host.uuid).status == HostStatus.UP)
        # The QEMU process survived libvirtd's death; the resync on reconnect reports it.
        wait_for("resynced PowerOn", lambda: vm_row(cloud, name).power_state == "PowerOn")
        assert hc.connects >= 2
        assert domains.domain_state(hc, name) == "running"
        # Events flow on the new connection (callbacks re-registered; no periodic resync
        # runs in this test, so only an event can bring this change in).
        domains.destroy_domain(hc, name)
        wait_for("PowerOff from an event", lambda: vm_row(cloud, name).power_state == "PowerOff")
    finally:
        if not _libvirtd_pids():
            _start_libvirtd()
        forget_domain(name)


def test_a_frozen_libvirtd_times_calls_out_and_the_host_recovers(qemu, cloud, manager) -> None:
    make_zone(cloud)
    make_pod(cloud)
    cluster = make_cluster(cloud)
    host = add_host_from_uri(cloud.admin, manager, cluster.uuid, qemu, name="local")
    hc = manager.for_host(host)
    domains.list_domains(hc)
    pids = _libvirtd_pids()
    assert pids, "libvirtd is not running"
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # alive but answering nothing: a hung host
        with pytest.raises(HostTimeout, match=r"host 'local' \(qemu:///system\): list domains"):
            hc.call(lambda c: c.listAllDomains(0), what="list domains", timeout=1)
        wait_for(
            "host Disconnected",
            lambda: host_row(cloud, host.uuid).status == HostStatus.DISCONNECTED,
        )
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    wait_for("host Up again", lambda: host_row(cloud, host.uuid).status == HostStatus.UP)
    assert isinstance(domains.list_domains(hc), dict)
