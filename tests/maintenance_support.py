"""What the maintenance tests share: a live migration done by hand on test-driver hosts
(libvirt's test driver cannot migrate), and a small drainable world."""

from __future__ import annotations

from compute_world import ComputeWorld, vm_by_name

from engine import offerings
from engine.compute import DeployRequest, deploy_vm
from engine.hosts import domains
from engine.jobs import JobRunner
from engine.models import VirtualMachine

GIB = 2**30


def migrate_by_hand(moved: list[str]):  # type: ignore[no-untyped-def]
    """A stand-in for `domains.migrate_domain`: define and start on the target, off and
    undefine on the source (what a live migration leaves), appending the domain's name."""

    def move(src, dst, name, *, progress=None, **_kw):  # type: ignore[no-untyped-def]
        xml = src.call(lambda c: c.lookupByName(name).XMLDesc(0), what="read xml")
        domains.define_domain(dst, xml)
        domains.start_domain(dst, name)
        domains.destroy_domain(src, name)
        domains.undefine_domain(src, name)
        if progress is not None:
            progress(domains.MigrationProgress(100, 1, 1, 0.1))
        moved.append(name)

    return move


def deploy_on(
    world: ComputeWorld, runner: JobRunner, name: str, host: str, offering: str = "tiny"
) -> VirtualMachine:
    """A VM deployed (admin's pin) on `host`, Running when this returns."""
    request = DeployRequest(
        name, zone="z1", offering=offering, template="tiny", networks=["guest"], host=host
    )
    _vm, job = deploy_vm(world.cloud.admin, request)
    runner.wait(job.uuid, raise_on_failure=True)
    return vm_by_name(world.cloud, name)


def crowded(world: ComputeWorld, runner: JobRunner) -> None:
    """h1 carries big-a (10 of its 16 GiB); h0 carries big-b (10 GiB: fits nowhere else)
    and web1 (64 MiB: fits on h1)."""
    offerings.create_service_offering(
        world.cloud.admin, "big", cpu_count=1, cpu_mhz=500, memory_bytes=10 * GIB
    )
    deploy_on(world, runner, "big-a", "h1", offering="big")
    deploy_on(world, runner, "big-b", "h0", offering="big")
    deploy_on(world, runner, "web1", "h0")
