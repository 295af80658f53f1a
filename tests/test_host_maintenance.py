"""Host maintenance on test-driver hosts: the plan (migrate where, or stop and why), the
drain job ending in Maintenance, the refusal while a VM is transitional, cancel, placement
keeping off hosts in maintenance, and a drain whose runner dies mid-way.

The test driver cannot live-migrate, so (as in test_compute_operations) the libvirt call
is replaced by the same moves on the two test-driver hosts: what is tested is the drain's
part and compute's bookkeeping (claims, counters, states), not libvirt's migration."""

from __future__ import annotations

import threading

import pytest
from compute_world import (
    claims,
    domains_everywhere,
    host_rows,
    host_usage,
    vm_by_name,
)
from helpers import events, rejects, set_columns
from hosts_helpers import MIB
from maintenance_support import crowded, deploy_on, migrate_by_hand
from sqlalchemy import update

from engine import topology
from engine.bootstrap import Cloud
from engine.errors import InsufficientCapacity, InvalidParameter, StateConflict
from engine.hosts import domains, maintenance
from engine.hosts.maintenance import (
    cancel_maintenance,
    maintenance_plan,
    prepare_host_for_maintenance,
)
from engine.jobs import JobRunner, cancel_job, get_job
from engine.jobs.queue import append_step
from engine.models import ClaimState, Host, Job, JobState, VirtualMachine, VmState
from engine.placement import PlacementRequest, preview

GIB = 2**30


@pytest.fixture
def live_migration(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    moved: list[str] = []
    monkeypatch.setattr(domains, "migrate_domain", migrate_by_hand(moved))
    return moved


def host_named(cloud: Cloud, name: str) -> Host:
    return next(h for h in host_rows(cloud) if h.name == name)


def event_types(cloud: Cloud) -> list[str]:
    return [e.event_type for e in events(cloud) if e.event_type.startswith("MAINT.")]


def test_a_host_is_drained_to_the_other_host_of_its_cluster(
    world, manager, runner, live_migration
) -> None:
    cloud = world.cloud
    web1 = deploy_on(world, runner, "web1", "h0")
    web2 = deploy_on(world, runner, "web2", "h0")

    plan = maintenance_plan(cloud.admin, "h0")
    assert [(f.vm, f.action, f.target) for f in plan.fates] == [
        ("web1", "migrate", "h1"),
        ("web2", "migrate", "h1"),
    ]
    assert plan.lines == ["VM web1: live-migrate to host h1", "VM web2: live-migrate to host h1"]
    assert plan.busy == [] and plan.resource_state == "Enabled"

    job = prepare_host_for_maintenance(cloud.admin, "h0")
    assert host_named(cloud, "h0").resource_state == "PrepareForMaintenance"
    done = runner.wait(job.uuid, raise_on_failure=True)

    assert done.progress == 100 and "in maintenance: 2 migrated, 0 stopped" in (
        done.progress_message or ""
    )
    assert host_named(cloud, "h0").resource_state == "Maintenance"
    h1 = host_named(cloud, "h1")
    for before in (web1, web2):
        after = vm_by_name(cloud, before.name)
        assert after.state == VmState.RUNNING and after.host_id == h1.id
    assert sorted(live_migration) == sorted([web1.instance_name, web2.instance_name])
    assert domains_everywhere(manager, world.hosts) == {
        "h0": [],
        "h1": sorted([web1.instance_name, web2.instance_name]),
    }
    assert all(c.host_id == h1.id and c.state == ClaimState.USED for c in claims(cloud))
    usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
    assert usage == {"h0": (0, 0, 0, 0), "h1": (1000, 0, 128 * MIB, 0)}
    assert event_types(cloud) == ["MAINT.PREPARE", "MAINT.DONE"]

    # Cancelling maintenance re-enables the host; the VMs stay where they went.
    assert cancel_maintenance(cloud.admin, "h0").resource_state == "Enabled"
    assert host_named(cloud, "h0").resource_state == "Enabled"
    assert vm_by_name(cloud, "web1").host_id == h1.id
    assert event_types(cloud)[-1] == "MAINT.CANCEL"


def test_a_vm_that_fits_nowhere_is_stopped_as_the_plan_said(
    world, manager, runner, live_migration
) -> None:
    cloud = world.cloud
    crowded(world, runner)  # h0: big-b (fits nowhere else) and web1; h1: 6 GiB free
    big, small = vm_by_name(cloud, "big-b"), vm_by_name(cloud, "web1")

    plan = maintenance_plan(cloud.admin, "h0")
    fates = {f.vm: f for f in plan.fates}
    assert (fates["web1"].action, fates["web1"].target) == ("migrate", "h1")
    assert fates["big-b"].action == "stop" and fates["big-b"].target is None
    assert "0 of 2 hosts fit" in fates["big-b"].reason  # placement's explanation
    assert plan.lines[0] == "VM web1: live-migrate to host h1"
    assert plan.lines[1].startswith("VM big-b: stop (no host fits: ")

    # no guest OS answers the shutdown: forced off after the stop timeout
    job = prepare_host_for_maintenance(cloud.admin, "h0", stop_timeout=0.5)
    done = runner.wait(job.uuid, raise_on_failure=True)
    assert done.result is not None and "big-b stopped" in done.result
    assert host_named(cloud, "h0").resource_state == "Maintenance"
    assert vm_by_name(cloud, "web1").host_id == host_named(cloud, "h1").id
    assert vm_by_name(cloud, "web1").state == VmState.RUNNING
    stopped = vm_by_name(cloud, "big-b")
    assert stopped.state == VmState.STOPPED and stopped.host_id is None
    assert live_migration == [small.instance_name]
    assert big.instance_name not in domains_everywhere(manager, world.hosts)["h1"]


def test_preparing_is_refused_while_a_vm_is_transitional_and_nothing_changes(world, runner) -> None:
    cloud = world.cloud
    web1 = deploy_on(world, runner, "web1", "h0")
    deploy_on(world, runner, "web2", "h0")
    set_columns(cloud, type(web1), web1.uuid, state=VmState.STOPPING)

    plan = maintenance_plan(cloud.admin, "h0")
    assert [(f.vm, f.action) for f in plan.busy] == [("web1", "wait")]
    assert plan.lines[0] == "VM web1 is Stopping: wait until its job ends"
    with rejects(cloud, StateConflict, "host 'h0': VM 'web1' (Stopping)", "must finish its job"):
        prepare_host_for_maintenance(cloud.admin, "h0")
    assert host_named(cloud, "h0").resource_state == "Enabled"
    for bad in (0, -1.5, "soon", True):
        with rejects(cloud, InvalidParameter, "host 'h0': stop timeout", field="stop_timeout"):
            prepare_host_for_maintenance(cloud.admin, "h0", stop_timeout=bad)  # type: ignore[arg-type]


def test_which_states_may_be_prepared_and_cancelled(world, runner) -> None:
    cloud = world.cloud
    with rejects(cloud, StateConflict, "host 'h0' is Enabled", "cancelling maintenance"):
        cancel_maintenance(cloud.admin, "h0")
    topology.disable_host(cloud.admin, "h0")  # a Disabled host may be prepared too
    runner.wait(prepare_host_for_maintenance(cloud.admin, "h0").uuid, raise_on_failure=True)
    assert host_named(cloud, "h0").resource_state == "Maintenance"
    with rejects(cloud, StateConflict, "host 'h0' is Maintenance", "preparing it needs it"):
        prepare_host_for_maintenance(cloud.admin, "h0")
    with rejects(cloud, StateConflict, "host 'h0' is Maintenance", "only a host that is"):
        topology.enable_host(cloud.admin, "h0")  # enable is not how maintenance ends
    set_columns(cloud, Host, host_named(cloud, "h0").uuid, resource_state="ErrorInMaintenance")
    runner.wait(prepare_host_for_maintenance(cloud.admin, "h0").uuid, raise_on_failure=True)
    assert host_named(cloud, "h0").resource_state == "Maintenance"
    assert cancel_maintenance(cloud.admin, "h0").resource_state == "Enabled"


def test_a_drain_cancelled_before_it_ran_puts_the_host_back(world) -> None:
    cloud = world.cloud  # no runner: the job stays Pending
    topology.disable_host(cloud.admin, "h1")
    job = prepare_host_for_maintenance(cloud.admin, "h1")
    assert host_named(cloud, "h1").resource_state == "PrepareForMaintenance"
    cancel_job(cloud.admin, job.uuid)
    assert get_job(cloud.db, job.uuid).state == JobState.CANCELLED
    assert host_named(cloud, "h1").resource_state == "Disabled"


def test_placement_never_picks_a_host_in_maintenance(world) -> None:
    cloud = world.cloud
    h0 = host_named(cloud, "h0")

    def chosen() -> set[str]:
        return {
            preview(cloud.admin, PlacementRequest(zone="z1", offering="tiny", seed=seed)).host_name
            for seed in range(24)
        }

    assert chosen() == {"h0", "h1"}  # the random allocator uses both when both may be used
    prepare_host_for_maintenance(cloud.admin, "h0")  # no runner: stays PrepareForMaintenance
    assert chosen() == {"h1"}
    for state in ("Maintenance", "ErrorInMaintenance"):
        set_columns(cloud, Host, h0.uuid, resource_state=state)
        assert chosen() == {"h1"}
    with pytest.raises(InsufficientCapacity, match="in maintenance"):
        preview(cloud.admin, PlacementRequest(zone="z1", offering="tiny", pinned_host="h0"))
    cancel_maintenance(cloud.admin, "h0")
    assert chosen() == {"h0", "h1"}


def test_a_drain_whose_runner_dies_leaves_the_host_in_error_in_maintenance(
    world, manager, runner, live_migration
) -> None:
    """The runner draining h0 stops answering after its first VM (blocked, then its lease
    taken as a dead process's would be); another runner recovers the job."""
    cloud = world.cloud
    deploy_on(world, runner, "web1", "h0")
    deploy_on(world, runner, "web2", "h0")
    first_done, release = threading.Event(), threading.Event()

    def die_after_the_first(event: str, vm: str) -> None:
        if vm == "web1":
            first_done.set()
            release.wait(30)

    maintenance.DRAIN_HOOKS.append(die_after_the_first)
    try:
        job = prepare_host_for_maintenance(cloud.admin, "h0")
        assert first_done.wait(30), "the drain never got to its first VM"
        with cloud.db.write() as session:  # the process is gone: its lease ran out
            session.execute(
                update(Job)
                .where(Job.uuid == job.uuid)
                .values(owner="other-machine:4242:1", lease_expires=None)
            )
        (recovered,) = JobRunner(cloud.db, workers=1, hosts=manager).recover()
        release.set()
        assert recovered.uuid == job.uuid
    finally:
        maintenance.DRAIN_HOOKS.remove(die_after_the_first)
        release.set()
    failed = runner.wait(job.uuid)
    assert failed.state == JobState.FAILED
    assert "PrepareHostMaintenance of Host 'h0' was interrupted" in (failed.error or "")
    assert "host 'h0' is ErrorInMaintenance: its drain stopped after 1 VM (web1)" in (
        failed.error or ""
    )
    assert host_named(cloud, "h0").resource_state == "ErrorInMaintenance"
    h1 = host_named(cloud, "h1")
    assert vm_by_name(cloud, "web1").host_id == h1.id  # moved before the runner died
    assert vm_by_name(cloud, "web2").host_id == host_named(cloud, "h0").id  # never moved
    assert vm_by_name(cloud, "web2").state == VmState.RUNNING

    # Preparing again drains the rest.
    runner.wait(prepare_host_for_maintenance(cloud.admin, "h0").uuid, raise_on_failure=True)
    assert host_named(cloud, "h0").resource_state == "Maintenance"
    assert vm_by_name(cloud, "web2").host_id == h1.id


def test_a_vm_that_cannot_be_moved_leaves_the_host_in_error_in_maintenance(world, runner) -> None:
    """Here libvirt's test driver itself refuses the live migration (no stand-in)."""
    cloud = world.cloud
    web1 = deploy_on(world, runner, "web1", "h0")
    failed = runner.wait(prepare_host_for_maintenance(cloud.admin, "h0").uuid)
    assert failed.state == JobState.FAILED
    error = failed.error or ""
    assert error.startswith("host 'h0' could not be drained: VM 'web1': ")
    assert "migrat" in error and error.endswith("the host is ErrorInMaintenance")
    assert host_named(cloud, "h0").resource_state == "ErrorInMaintenance"
    after = vm_by_name(cloud, "web1")  # compute undid its part: still Running where it was
    assert after.state == VmState.RUNNING and after.host_id == web1.host_id
    assert event_types(cloud) == ["MAINT.PREPARE", "MAINT.PREPARE"]
    assert [e.level for e in events(cloud) if e.event_type.startswith("MAINT.")][-1] == "ERROR"
    # From ErrorInMaintenance an operator may cancel (back to Enabled) or try again.
    assert cancel_maintenance(cloud.admin, "h0").resource_state == "Enabled"


def test_a_drain_that_died_mid_migration_lets_compute_recover_the_vm(world, manager) -> None:
    """The dead process had claimed h1 for web1 and marked it Migrating, and libvirt had
    not moved the domain: recovery puts web1 back to Running on h0 (where its domain
    runs), and the host is ErrorInMaintenance, the message saying both."""
    cloud = world.cloud
    with JobRunner(cloud.db, workers=2, hosts=manager, poll_seconds=0.05) as runner:
        web1 = deploy_on(world, runner, "web1", "h0")
    job = prepare_host_for_maintenance(cloud.admin, "h0")  # no runner now: stays Pending
    h0, h1 = host_named(cloud, "h0"), host_named(cloud, "h1")
    dead = "other-machine:4242:1"
    with cloud.db.write() as session:
        session.execute(
            update(Job)
            .where(Job.uuid == job.uuid)
            .values(state=JobState.RUNNING, owner=dead, lease_expires=None)
        )
    job_id = get_job(cloud.db, job.uuid).id
    append_step(cloud.db, job_id, dead, "vm", {"vm": web1.uuid, "name": "web1",
                                              "action": "migrate", "target": "h1"})  # fmt: skip
    append_step(cloud.db, job_id, dead, "claimed",
                {"maint_vm": web1.uuid, "host_id": h1.id, "source_id": h0.id})  # fmt: skip
    set_columns(cloud, VirtualMachine, web1.uuid, state=VmState.MIGRATING)

    (recovered,) = JobRunner(cloud.db, workers=1, hosts=manager).recover()
    error = recovered.error or ""
    assert "host 'h0' is ErrorInMaintenance: its drain stopped after 0 VMs (none)" in error
    assert "VM 'web1' runs on host" in error and "back to Running there" in error
    after = vm_by_name(cloud, "web1")
    assert after.state == VmState.RUNNING and after.host_id == h0.id
    assert host_named(cloud, "h0").resource_state == "ErrorInMaintenance"


def test_a_suspended_vm_is_stopped_by_the_drain_not_left_on_the_host(
    world, manager, runner, live_migration
) -> None:
    from engine.compute.pause import suspend_vm

    cloud = world.cloud
    web1 = deploy_on(world, runner, "web1", "h0")
    paused = deploy_on(world, runner, "paused", "h0")
    runner.wait(suspend_vm(cloud.admin, paused.uuid).uuid, raise_on_failure=True)
    assert vm_by_name(cloud, "paused").state == VmState.SUSPENDED

    plan = maintenance_plan(cloud.admin, "h0")
    assert [(f.vm, f.action) for f in plan.fates] == [("paused", "stop"), ("web1", "migrate")]
    assert "VM paused: stop (suspended: a paused VM is stopped, not live-migrated)" in plan.lines

    done = runner.wait(prepare_host_for_maintenance(cloud.admin, "h0").uuid, raise_on_failure=True)
    assert "1 migrated, 1 stopped" in (done.progress_message or "")
    assert host_named(cloud, "h0").resource_state == "Maintenance"
    after = vm_by_name(cloud, "paused")
    assert after.state == VmState.STOPPED and after.host_id is None
    assert vm_by_name(cloud, "web1").host_id == host_named(cloud, "h1").id
    assert live_migration == [web1.instance_name]
    # Switched off where it was paused (a stopped VM's domain stays defined there).
    h0 = manager.for_host(host_named(cloud, "h0"))
    assert domains.domain_state(h0, after.instance_name) == "shutoff"
