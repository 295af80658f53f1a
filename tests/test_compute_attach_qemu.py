"""Suspend/resume and a live CD-ROM media change on a real running QEMU guest
(qemu:///system): what the test driver cannot show."""

# ruff: noqa: F811  (pytest fixtures imported from compute_qemu are used as arguments)
from __future__ import annotations

from compute_qemu import (  # noqa: F401  (fixtures)
    bridge,
    domain_on_qemu,
    qemu,
    runner,
    workdir,
    world,
)
from compute_world import claims, vm_by_name
from test_compute_attach import make_iso

from engine.compute import (
    DeployRequest,
    attach_iso,
    deploy_vm,
    destroy_vm,
    detach_iso,
    resume_vm,
    stop_vm,
    suspend_vm,
)
from engine.hosts.domain_xml import cdrom_of
from engine.jobs import JobRunner
from engine.models import ClaimState, VmState
from engine.storage.templates import template_path_in_zone


def _run(runner: JobRunner, job) -> None:  # type: ignore[no-untyped-def]
    runner.wait(job.uuid, timeout=180, raise_on_failure=True)


def _domain(name: str) -> tuple[str, str]:
    found = domain_on_qemu(name)
    assert found is not None, f"domain {name} is not defined on the real libvirtd"
    return found


def test_suspend_resume_and_a_live_iso_change_on_real_qemu(world, runner, workdir) -> None:
    cloud = world.cloud
    iso = make_iso(cloud, workdir, "rescue")
    path, _fmt = template_path_in_zone(cloud.db, iso.uuid, "z1")
    request = DeployRequest("cd", zone="z1", offering="tiny", template="tiny", networks=["guest"])
    vm, job = deploy_vm(cloud.admin, request)
    _run(runner, job)
    state, xml = _domain(vm.instance_name)
    assert state == "running" and cdrom_of(xml) == ""  # an empty drive from the start

    _run(runner, attach_iso(cloud.admin, vm.uuid, "rescue"))  # the guest runs meanwhile
    state, xml = _domain(vm.instance_name)
    assert state == "running" and cdrom_of(xml) == str(path)  # live XML: QEMU has it
    assert vm_by_name(cloud, "cd").iso_id == iso.id

    _run(runner, detach_iso(cloud.admin, vm.uuid))
    state, xml = _domain(vm.instance_name)
    assert state == "running" and cdrom_of(xml) == ""
    assert vm_by_name(cloud, "cd").iso_id is None

    _run(runner, suspend_vm(cloud.admin, vm.uuid))
    assert _domain(vm.instance_name)[0] == str(3)  # VIR_DOMAIN_PAUSED
    assert vm_by_name(cloud, "cd").state == VmState.SUSPENDED
    assert [c.state for c in claims(cloud)] == [ClaimState.USED]
    _run(runner, attach_iso(cloud.admin, vm.uuid, "rescue"))  # a paused guest's drive too
    assert cdrom_of(_domain(vm.instance_name)[1]) == str(path)
    _run(runner, resume_vm(cloud.admin, vm.uuid))
    assert _domain(vm.instance_name)[0] == "running"
    assert vm_by_name(cloud, "cd").state == VmState.RUNNING

    _run(runner, suspend_vm(cloud.admin, vm.uuid))
    _run(runner, stop_vm(cloud.admin, vm.uuid, timeout=3600))  # forced: a paused guest
    assert _domain(vm.instance_name)[0] == "shutoff"
    assert vm_by_name(cloud, "cd").state == VmState.STOPPED
    _run(runner, destroy_vm(cloud.admin, vm.uuid, expunge=True))
