"""Suspend/resume and ISO attach/detach through the job runner on test-driver hosts: the
libvirt domain's state and XML checked, capacity kept by a suspended VM, a suspended VM
stopped and destroyed, and refusals that change nothing. (A live media change on a
running QEMU guest is in test_compute_attach_qemu.py: the test driver cannot do it.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from compute_world import (
    ComputeWorld,
    DirectContext,
    claims,
    host_usage,
    vm_by_name,
)
from helpers import events, rejects
from sqlalchemy import update
from sqlmodel import col, select

from engine.bootstrap import Cloud
from engine.compute import (
    DeployRequest,
    attach_iso,
    context,
    deploy_vm,
    destroy_vm,
    detach_iso,
    isos,
    migrate_vm,
    pause,
    reboot_vm,
    resume_vm,
    start_vm,
    stop_vm,
    suspend_vm,
)
from engine.compute.queries import console_target
from engine.errors import InUse, InvalidParameter, NotFound, StateConflict
from engine.hosts import domains
from engine.hosts.domain_xml import (
    DiskSpec,
    DomainSpec,
    build_domain_xml,
    cdrom_of,
    parse_domain_xml,
)
from engine.hosts.manager import HostManager
from engine.jobs import JobRunner
from engine.models import (
    ClaimState,
    JobState,
    PowerState,
    Template,
    TemplateState,
    TemplateStoreRef,
    VirtualMachine,
    VmState,
)
from engine.storage.templates import register_iso, template_path_in_zone


def iso_bytes(size: int = 64 * 1024) -> bytes:
    data = bytearray(size)
    data[0x8000:0x8006] = b"\x01CD001"  # what makes it an ISO 9660 image
    return bytes(data)


def make_iso(cloud: Cloud, tmp_path: Path, name: str, zone: str = "z1") -> Template:
    source = tmp_path / f"{name}.iso"
    source.write_bytes(iso_bytes())
    return register_iso(cloud.admin, name, zone=zone, source=source, is_public=True)


def deployed(world: ComputeWorld, runner: JobRunner, name: str = "web1") -> VirtualMachine:
    request = DeployRequest(name, zone="z1", offering="tiny", template="tiny", networks=["guest"])
    _vm, job = deploy_vm(world.cloud.admin, request)
    runner.wait(job.uuid, raise_on_failure=True)
    return vm_by_name(world.cloud, name)


def told(cloud: Cloud) -> str:
    """Every audit event's description, one a line."""
    return "\n".join(e.description for e in events(cloud))


def run(runner: JobRunner, job) -> None:  # type: ignore[no-untyped-def]
    runner.wait(job.uuid, raise_on_failure=True)


def host_of(manager: HostManager, world: ComputeWorld, vm: VirtualMachine):  # type: ignore[no-untyped-def]
    host = next(h for h in world.hosts if h.id == (vm.host_id or vm.last_host_id))
    return manager.for_host(host)


def domain_state(manager: HostManager, world: ComputeWorld, vm: VirtualMachine) -> str:
    return domains.domain_state(host_of(manager, world, vm), vm.instance_name)


# --- suspend / resume ----------------------------------------------------------------------


def test_suspend_and_resume_pause_the_domain_and_keep_the_capacity(world, manager, runner) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    usage = host_usage(cloud)
    assert domain_state(manager, world, vm) == "running"

    run(runner, suspend_vm(cloud.admin, vm.uuid))
    suspended = vm_by_name(cloud, "web1")
    assert suspended.state == VmState.SUSPENDED and suspended.host_id == vm.host_id
    assert domain_state(manager, world, suspended) == "paused"
    assert suspended.power_state == PowerState.POWER_ON  # paused keeps its memory
    assert host_usage(cloud) == usage  # its host still holds its CPU and memory
    assert [c.state for c in claims(cloud)] == [ClaimState.USED]
    assert "VM 'web1' suspended" in told(cloud)

    # What a suspended VM cannot do, refused before anything is written.
    with rejects(cloud, StateConflict, "VM 'web1' is Suspended; suspend needs it Running"):
        suspend_vm(cloud.admin, vm.uuid)
    with rejects(cloud, StateConflict, "VM 'web1' is Suspended; reboot needs it Running"):
        reboot_vm(cloud.admin, vm.uuid)
    other = next(h for h in world.hosts if h.id != vm.host_id)
    with rejects(cloud, StateConflict, "VM 'web1' is Suspended; migrate needs it Running"):
        migrate_vm(cloud.admin, vm.uuid, other.uuid)
    with rejects(cloud, StateConflict, "VM 'web1' is Suspended; its console needs it Running"):
        console_target(cloud.admin, vm.uuid)

    run(runner, resume_vm(cloud.admin, vm.uuid))
    resumed = vm_by_name(cloud, "web1")
    assert resumed.state == VmState.RUNNING and domain_state(manager, world, resumed) == "running"
    assert resumed.update_count > suspended.update_count
    assert host_usage(cloud) == usage
    with rejects(cloud, StateConflict, "VM 'web1' is Running; resume needs it Suspended"):
        resume_vm(cloud.admin, vm.uuid)


def test_a_suspended_vm_is_stopped_and_destroyed_by_forcing_its_domain_off(
    world, manager, runner
) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    run(runner, suspend_vm(cloud.admin, vm.uuid))
    # A graceful stop would wait for a paused guest that cannot answer: it is forced.
    run(runner, stop_vm(cloud.admin, vm.uuid, timeout=3600))
    stopped = vm_by_name(cloud, "web1")
    assert stopped.state == VmState.STOPPED and stopped.host_id is None
    assert domain_state(manager, world, stopped) == "shutoff"
    assert [c.state for c in claims(cloud)] == [ClaimState.RESERVED]
    assert "forced off" in told(cloud)

    run(runner, start_vm(cloud.admin, vm.uuid))
    run(runner, suspend_vm(cloud.admin, vm.uuid))
    run(runner, destroy_vm(cloud.admin, vm.uuid))
    destroyed = vm_by_name(cloud, "web1")
    assert destroyed.state == VmState.DESTROYED
    assert not domains.domain_exists(host_of(manager, world, destroyed), vm.instance_name)
    assert sum(u[0] for u in host_usage(cloud)) == 0  # no host share is used any more


def test_a_resync_counts_a_paused_domain_as_what_a_suspended_vm_should_have(
    world, manager, runner
) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    run(runner, suspend_vm(cloud.admin, vm.uuid))
    assert domain_state(manager, world, vm) == "paused"
    report = manager.resync_host(host_of(manager, world, vm))
    # Ours, where the database places it, and powered on as a suspended VM should be.
    assert report.drift == [] and report.missing == [] and report.unknown == []
    after = vm_by_name(cloud, vm.name)
    assert after.state == VmState.SUSPENDED and after.power_state == PowerState.POWER_ON


def _fail_at(step_name: str):  # type: ignore[no-untyped-def]
    def hook(step: str, _vm: object) -> None:
        if step == step_name:
            raise StateConflict(f"injected failure after {step}")

    return hook


def test_a_suspend_or_resume_that_fails_after_the_hypervisor_puts_the_domain_back(
    world, manager, runner, monkeypatch
) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    monkeypatch.setattr(context, "STEP_HOOKS", [_fail_at("paused")])
    job = runner.wait(suspend_vm(cloud.admin, vm.uuid).uuid)
    assert job.state == JobState.FAILED and "injected failure after paused" in (job.error or "")
    assert vm_by_name(cloud, "web1").state == VmState.RUNNING
    assert domain_state(manager, world, vm) == "running"  # resumed by the job's undo

    monkeypatch.setattr(context, "STEP_HOOKS", [])
    run(runner, suspend_vm(cloud.admin, vm.uuid))
    monkeypatch.setattr(context, "STEP_HOOKS", [_fail_at("resumed")])
    assert runner.wait(resume_vm(cloud.admin, vm.uuid).uuid).state == JobState.FAILED
    assert vm_by_name(cloud, "web1").state == VmState.SUSPENDED
    assert domain_state(manager, world, vm) == "paused"


def test_recover_hooks_make_the_vm_follow_its_domain(world, manager, runner, tmp_path) -> None:
    """A job killed between the hypervisor call and the row write: its recover hook reads
    the host and finishes (or undoes) the change."""
    cloud = world.cloud
    vm = deployed(world, runner)
    hc = host_of(manager, world, vm)
    domains.suspend_domain(hc, vm.instance_name)  # the dead SuspendVM got this far
    told_back = pause.recover_suspend(DirectContext(cloud, manager, vm.uuid))
    assert "its domain is paused, so it is Suspended" in told_back
    assert vm_by_name(cloud, "web1").state == VmState.SUSPENDED
    domains.resume_domain(hc, vm.instance_name)  # the dead ResumeVM got this far
    pause.recover_resume(DirectContext(cloud, manager, vm.uuid))
    assert vm_by_name(cloud, "web1").state == VmState.RUNNING
    assert "nothing to undo" in pause.recover_resume(DirectContext(cloud, manager, vm.uuid))

    make_iso(cloud, tmp_path, "rescue")
    run(runner, attach_iso(cloud.admin, vm.uuid, "rescue"))
    domains.change_cdrom(hc, vm.instance_name, None)  # a dead DetachISO ejected, wrote nothing
    assert cdrom_of(domains.domain_xml_of(hc, vm.instance_name, inactive=True)) == ""
    assert "the attached ISO" in isos.recover_iso(DirectContext(cloud, manager, vm.uuid))
    path, _fmt = template_path_in_zone(cloud.db, "rescue", "z1")
    assert cdrom_of(domains.domain_xml_of(hc, vm.instance_name, inactive=True)) == str(path)


# --- ISOs ----------------------------------------------------------------------------------


def test_an_iso_attached_to_a_stopped_vm_is_in_its_domain_after_start_then_ejected(
    world, manager, runner, tmp_path
) -> None:
    cloud = world.cloud
    iso = make_iso(cloud, tmp_path, "rescue")
    path, fmt = template_path_in_zone(cloud.db, iso.uuid, "z1")
    assert fmt == "iso"
    vm = deployed(world, runner)
    # A VM's domain has an empty drive from its first start, so media can change live.
    assert cdrom_of(domains.domain_xml_of(host_of(manager, world, vm), vm.instance_name)) == ""
    run(runner, stop_vm(cloud.admin, vm.uuid, forced=True))

    run(runner, attach_iso(cloud.admin, vm.uuid, "rescue"))
    stopped = vm_by_name(cloud, "web1")
    assert stopped.state == VmState.STOPPED and stopped.iso_id == iso.id
    assert "ISO 'rescue' attached to VM 'web1'" in told(cloud)

    run(runner, start_vm(cloud.admin, vm.uuid))
    running = vm_by_name(cloud, "web1")
    hc = host_of(manager, world, running)
    live = domains.domain_xml_of(hc, vm.instance_name)
    assert cdrom_of(live) == str(path)
    assert "<boot dev='cdrom'/>" in live or '<boot dev="cdrom"/>' in live

    # The test driver has no live media change: the definition is rewritten, which the
    # domain takes at its next start (the live change is tested on real QEMU).
    run(runner, detach_iso(cloud.admin, vm.uuid))
    assert vm_by_name(cloud, "web1").iso_id is None
    assert cdrom_of(domains.domain_xml_of(hc, vm.instance_name, inactive=True)) == ""
    assert "ISO 'rescue' ejected from VM 'web1'" in told(cloud)

    run(runner, attach_iso(cloud.admin, vm.uuid, iso.uuid))  # running: the definition too
    assert vm_by_name(cloud, "web1").iso_id == iso.id
    assert cdrom_of(domains.domain_xml_of(hc, vm.instance_name, inactive=True)) == str(path)


def test_iso_refusals_change_nothing(world, runner, tmp_path) -> None:
    cloud = world.cloud
    first = make_iso(cloud, tmp_path, "first")
    second = make_iso(cloud, tmp_path, "second")
    vm = deployed(world, runner)

    with rejects(cloud, StateConflict, "VM 'web1' has no ISO attached"):
        detach_iso(cloud.admin, vm.uuid)
    with rejects(cloud, InvalidParameter, "template 'tiny' is a", "not an ISO", field="iso"):
        attach_iso(cloud.admin, vm.uuid, "tiny")
    with rejects(cloud, NotFound, "no-such"):
        attach_iso(cloud.admin, vm.uuid, "no-such")

    # Not Ready in the VM's zone: its only copy is still being copied there.
    with cloud.db.write() as session:
        session.execute(
            update(TemplateStoreRef)
            .where(col(TemplateStoreRef.template_id) == second.id)
            .values(state=TemplateState.DOWNLOADING, progress=40)
        )
    with rejects(
        cloud, StateConflict, "ISO 'second' is not Ready in zone 'z1'", "Downloading (40%)"
    ):
        attach_iso(cloud.admin, vm.uuid, "second")
    with cloud.db.write() as session:
        session.execute(
            update(TemplateStoreRef)
            .where(col(TemplateStoreRef.template_id) == second.id)
            .values(state=TemplateState.READY, progress=100)
        )

    run(runner, attach_iso(cloud.admin, vm.uuid, "first"))
    with rejects(cloud, InUse, "VM 'web1' already has ISO 'first' attached: eject it first"):
        attach_iso(cloud.admin, vm.uuid, "second")
    assert vm_by_name(cloud, "web1").iso_id == first.id

    # An ISO in a VM's drive cannot be deleted (template_users counts iso_id).
    from engine.storage.templates import delete_template

    with rejects(cloud, InUse, "ISO 'first' is in use by VM 'web1'"):
        delete_template(cloud.admin, "first")

    run(runner, destroy_vm(cloud.admin, vm.uuid))
    with rejects(cloud, StateConflict, "VM 'web1' is Destroyed; attaching an ISO needs it"):
        attach_iso(cloud.admin, vm.uuid, "second")
    with rejects(cloud, StateConflict, "VM 'web1' is Destroyed; ejecting its ISO needs it"):
        detach_iso(cloud.admin, vm.uuid)


def test_the_console_target_is_the_running_vms_host_uri_and_domain(world, runner) -> None:
    vm = deployed(world, runner)
    target = console_target(world.cloud.admin, vm.uuid)
    host = next(h for h in world.hosts if h.id == vm.host_id)
    assert target.command() == ["virsh", "-c", host.uri, "console", vm.instance_name]


# --- the CD-ROM drive in the domain XML ------------------------------------------------------


def _spec(cdrom: str | None) -> DomainSpec:
    return DomainSpec(
        name="i-2-7-VM",
        uuid="9f1c6a52-5d9e-4a43-9c55-0d1f8f1d2b11",
        vm_uuid="9f1c6a52-5d9e-4a43-9c55-0d1f8f1d2b11",
        vcpus=1,
        memory_bytes=64 * 2**20,
        disks=(DiskSpec(target="vda", path="/pool/root.qcow2"),),
        cdrom=cdrom,
    )


@pytest.mark.parametrize("cdrom", [None, "", "/store/iso/rescue.iso", "/store/a'b\"<&>]]>.iso"])
def test_the_cdrom_drive_round_trips_through_the_domain_xml(cdrom: str | None) -> None:
    xml = build_domain_xml(_spec(cdrom))
    assert cdrom_of(xml) == cdrom  # None: no drive; "": empty; else the file, escaped
    assert parse_domain_xml(xml) == _spec(cdrom)
    assert [d.target for d in parse_domain_xml(xml).disks] == ["vda"]  # not a disk
    assert ('dev="cdrom"' in xml) == bool(cdrom)  # boots from the ISO after the disk


@pytest.mark.parametrize(
    ("cdrom", "fragment"),
    [("rescue.iso", "is not absolute"), ("/store/a\x01.iso", "has control characters")],
)
def test_a_bad_cdrom_file_is_refused(cdrom: str, fragment: str) -> None:
    with pytest.raises(InvalidParameter, match=fragment) as info:
        build_domain_xml(_spec(cdrom))
    assert info.value.field == "cdrom"


# --- deploy from an ISO ----------------------------------------------------------------------


def test_a_vm_deployed_from_an_iso_boots_it_onto_a_blank_root_disk(
    world, manager, runner, tmp_path
) -> None:
    from engine import offerings
    from engine.models import Volume

    cloud = world.cloud
    installer = make_iso(cloud, tmp_path, "installer")
    path, _fmt = template_path_in_zone(cloud.db, installer.uuid, "z1")
    offerings.create_disk_offering(cloud.admin, "root-8g", disk_size_bytes=8 * 2**30)
    offerings.create_disk_offering(cloud.admin, "data-1g", disk_size_bytes=2**30)
    request = DeployRequest(
        "fromiso",
        zone="z1",
        offering="tiny",
        template="installer",
        networks=["guest"],
        disk_offerings=["root-8g", "data-1g"],
    )
    _vm, job = deploy_vm(cloud.admin, request)
    run(runner, job)

    vm = vm_by_name(cloud, "fromiso")
    assert vm.state == VmState.RUNNING
    assert (vm.template_id, vm.iso_id) == (installer.id, installer.id)
    with cloud.db.read() as session:
        volumes = session.exec(
            select(Volume).where(Volume.vm_id == vm.id).order_by(col(Volume.device_id))
        ).all()
    # The first disk offering sized the blank root disk; the others are data disks.
    assert [(v.volume_type, v.size_bytes, v.template_id) for v in volumes] == [
        ("ROOT", 8 * 2**30, None),
        ("DATADISK", 2**30, None),
    ]
    live = domains.domain_xml_of(host_of(manager, world, vm), vm.instance_name)
    assert cdrom_of(live) == str(path)
    # The disk first (blank until installed onto), then the ISO.
    assert live.index("<boot dev='hd'/>") < live.index("<boot dev='cdrom'/>")
    assert "deploy VM 'fromiso' (tiny, ISO 'installer')" in told(cloud)


def test_an_iso_deploy_without_a_disk_offering_for_its_root_disk_is_refused(
    world, tmp_path
) -> None:
    cloud = world.cloud
    make_iso(cloud, tmp_path, "installer")
    request = DeployRequest(
        "fromiso", zone="z1", offering="tiny", template="installer", networks=["guest"]
    )
    with rejects(
        cloud,
        InvalidParameter,
        "VM 'fromiso': ISO 'installer' boots onto a blank root disk",
        field="disk_offerings",
    ):
        deploy_vm(cloud.admin, request)
    source = tmp_path / "data.iso"
    source.write_bytes(iso_bytes())
    register_iso(cloud.admin, "data", zone="z1", source=source, bootable=False)
    with rejects(cloud, InvalidParameter, "VM 'other': ISO 'data' is not bootable"):
        deploy_vm(
            cloud.admin,
            DeployRequest("other", zone="z1", offering="tiny", template="data", networks=["guest"]),
        )
