"""VM operations through the job runner on test-driver hosts: stop, start, reboot,
destroy, recover, expunge, change offering, migrate's checks; compare-and-set state
changes; and jobs of one VM that run one after another, never interleaved."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from compute_world import (
    ComputeWorld,
    claims,
    domains_everywhere,
    host_usage,
    live_volumes,
    make_compute_world,
    nics,
    pool_files,
    pool_row,
    taken_addresses,
    vm_by_name,
)
from helpers import rejects, set_columns
from hosts_helpers import MIB

from engine import offerings
from engine.bootstrap import Cloud
from engine.compute import (
    DeployRequest,
    change_offering,
    deploy_vm,
    destroy_vm,
    expunge_due,
    expunge_vm,
    migrate_vm,
    reboot_vm,
    recover_vm,
    start_vm,
    stop_vm,
    vm_lifecycle,
)
from engine.compute.states import transition
from engine.errors import InsufficientCapacity, InvalidParameter, StateConflict
from engine.hosts import domains
from engine.hosts.manager import HostManager
from engine.jobs import JobRunner, get_job
from engine.models import (
    ClaimState,
    JobState,
    PowerState,
    VirtualMachine,
    VmLifecycle,
    VmState,
    VolumeState,
    utcnow,
)
from engine.settings import update_setting


@pytest.fixture
def runner(cloud: Cloud, manager: HostManager) -> Iterator[JobRunner]:
    with JobRunner(cloud.db, workers=4, hosts=manager, poll_seconds=0.05) as r:
        yield r


def deployed(world: ComputeWorld, runner: JobRunner, name: str = "web1") -> VirtualMachine:
    request = DeployRequest(name, zone="z1", offering="tiny", template="tiny", networks=["guest"])
    _vm, job = deploy_vm(world.cloud.admin, request)
    runner.wait(job.uuid, raise_on_failure=True)
    return vm_by_name(world.cloud, name)


def run(runner: JobRunner, job) -> None:  # type: ignore[no-untyped-def]
    runner.wait(job.uuid, raise_on_failure=True)


def state_of(manager: HostManager, world: ComputeWorld, vm: VirtualMachine) -> str:
    host = next(h for h in world.hosts if h.id == (vm.host_id or vm.last_host_id))
    return domains.domain_state(manager.for_host(host), vm.instance_name)


def test_stop_start_reboot_keep_capacity_where_it_belongs(world, manager, runner) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    host_index = [h.id for h in world.hosts].index(vm.host_id)

    run(runner, stop_vm(cloud.admin, vm.uuid, timeout=0.5))  # no guest OS: forced after 0.5 s
    stopped = vm_by_name(cloud, "web1")
    assert stopped.state == VmState.STOPPED and stopped.host_id is None
    assert stopped.last_host_id == vm.host_id and stopped.power_state == PowerState.POWER_OFF
    assert state_of(manager, world, stopped) == "shutoff"
    (claim,) = claims(cloud)
    assert claim.state == ClaimState.RESERVED
    assert host_usage(cloud)[host_index] == (0, 500, 0, 64 * MIB)
    assert pool_row(cloud).allocated_bytes == world.template.size_bytes  # disks stay
    assert len(nics(cloud)) == 1

    run(runner, start_vm(cloud.admin, vm.uuid))
    started = vm_by_name(cloud, "web1")
    assert started.state == VmState.RUNNING and started.host_id == vm.host_id  # last host
    assert state_of(manager, world, started) == "running"
    assert host_usage(cloud)[host_index] == (500, 0, 64 * MIB, 0)
    assert [c.state for c in claims(cloud)] == [ClaimState.USED]

    run(runner, reboot_vm(cloud.admin, vm.uuid))
    rebooted = vm_by_name(cloud, "web1")
    assert rebooted.state == VmState.RUNNING and rebooted.update_count > started.update_count
    assert state_of(manager, world, rebooted) == "running"

    run(runner, stop_vm(cloud.admin, vm.uuid, forced=True))
    assert vm_by_name(cloud, "web1").state == VmState.STOPPED


def test_operations_refuse_the_wrong_state_before_writing(world, runner) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    with rejects(cloud, StateConflict, "VM 'web1' is Running; start needs it Stopped"):
        start_vm(cloud.admin, vm.uuid)
    with rejects(cloud, StateConflict, "expunge needs it Destroyed or Error"):
        expunge_vm(cloud.admin, vm.uuid)
    with rejects(cloud, StateConflict, "recover needs it Destroyed"):
        recover_vm(cloud.admin, vm.uuid)
    with rejects(cloud, StateConflict, "change offering needs it Stopped"):
        change_offering(cloud.admin, vm.uuid, "tiny")


def test_a_lost_compare_and_set_names_the_vm_and_both_states(world, runner) -> None:
    stale = deployed(world, runner)  # read while Running
    set_columns(world.cloud, VirtualMachine, stale.uuid, state=VmState.STOPPING)  # someone else
    with pytest.raises(StateConflict) as info, world.cloud.db.write() as session:
        transition(session, stale, VmState.RUNNING, VmState.STOPPING, what="stop it")
    assert "VM 'web1' is Stopping, expected Running to move it to Stopping; cannot stop it" in (
        str(info.value)
    )
    assert vm_by_name(world.cloud, "web1").update_count == stale.update_count


def test_destroy_recover_then_destroy_and_expunge(world, manager, runner) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    (root,) = live_volumes(cloud, vm.id)

    run(runner, destroy_vm(cloud.admin, vm.uuid))
    destroyed = vm_by_name(cloud, "web1")
    assert destroyed.state == VmState.DESTROYED and destroyed.removed is None
    # the domain is gone, the volume (row and file) and the address stay: recoverable
    assert domains_everywhere(manager, world.hosts) == {h.name: [] for h in world.hosts}
    assert [v.uuid for v in live_volumes(cloud, vm.id)] == [root.uuid]
    files = pool_files(manager, world.hosts, world.pool)
    assert [f for names in files.values() for f in names] == [root.path]
    assert len(nics(cloud)) == 1
    assert sum(u[0] for u in host_usage(cloud)) == 0  # no host share is used

    view = vm_lifecycle(cloud.admin, vm.uuid)
    assert view.destroyed is not None and view.expunge_after is not None
    assert (view.expunge_after - view.destroyed).total_seconds() == 86400  # expunge.delay
    assert "chose host" in view.placement_summary and view.state_reason == ""

    recovered = recover_vm(cloud.admin, vm.uuid)
    assert vm_lifecycle(cloud.admin, vm.uuid).expunge_after is None
    assert recovered.state == VmState.STOPPED
    run(runner, start_vm(cloud.admin, vm.uuid))
    assert vm_by_name(cloud, "web1").state == VmState.RUNNING
    assert state_of(manager, world, vm_by_name(cloud, "web1")) == "running"

    run(runner, destroy_vm(cloud.admin, vm.uuid))
    run(runner, expunge_vm(cloud.admin, vm.uuid))
    gone = vm_by_name(cloud, "web1")
    assert gone.state == VmState.EXPUNGED and gone.removed is not None
    assert live_volumes(cloud) == []
    assert pool_files(manager, world.hosts, world.pool) == {h.name: [] for h in world.hosts}
    assert nics(cloud) == [] and taken_addresses(cloud) == [] and claims(cloud) == []
    assert host_usage(cloud) == [(0, 0, 0, 0)] * 2 and pool_row(cloud).allocated_bytes == 0


def test_expunge_due_takes_only_vms_past_the_delay(world, manager, runner) -> None:
    cloud = world.cloud
    old, new = deployed(world, runner, "old"), deployed(world, runner, "new")
    run(runner, destroy_vm(cloud.admin, old.uuid))
    run(runner, destroy_vm(cloud.admin, new.uuid))
    update_setting(cloud.admin, "expunge.delay", "3600")
    with cloud.db.write() as session:
        row = session.get(VmLifecycle, old.id)
        assert row is not None
        row.destroyed = utcnow().replace(year=2000)
    runner.stop()  # so that the expunge stays queued while the thread looks again
    jobs = expunge_due(cloud.admin)
    assert [j.resource_uuid for j in jobs] == [old.uuid]
    assert expunge_due(cloud.admin) == []  # already queued: not submitted twice
    with JobRunner(cloud.db, workers=1, hosts=manager, poll_seconds=0.05) as again:
        run(again, jobs[0])
    assert vm_by_name(cloud, "old").state == VmState.EXPUNGED
    assert vm_by_name(cloud, "new").state == VmState.DESTROYED


def test_destroy_with_expunge_removes_everything_at_once(world, manager, runner) -> None:
    vm = deployed(world, runner)
    run(runner, destroy_vm(world.cloud.admin, vm.uuid, expunge=True))
    assert vm_by_name(world.cloud, "web1").state == VmState.EXPUNGED
    assert live_volumes(world.cloud) == [] and claims(world.cloud) == []
    assert domains_everywhere(manager, world.hosts) == {h.name: [] for h in world.hosts}


def test_change_offering_while_stopped(world, manager, runner) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    offerings.create_service_offering(
        cloud.admin, "bigger", cpu_count=2, cpu_mhz=1000, memory_bytes=128 * MIB
    )
    offerings.create_service_offering(
        cloud.admin, "giant", cpu_count=4, cpu_mhz=1000, memory_bytes=64 * 2**30
    )
    run(runner, stop_vm(cloud.admin, vm.uuid, forced=True))
    with rejects(cloud, InsufficientCapacity, "0 of 2 hosts fit"):
        change_offering(cloud.admin, vm.uuid, "giant")
    changed = change_offering(cloud.admin, vm.uuid, "bigger")
    assert (changed.cpu_count, changed.cpu_mhz, changed.memory_bytes) == (2, 1000, 128 * MIB)
    run(runner, start_vm(cloud.admin, vm.uuid))
    running = vm_by_name(cloud, "web1")
    host = next(h for h in world.hosts if h.id == running.host_id)
    stats = domains.domain_stats(manager.for_host(host), running.instance_name)
    assert stats.vcpus == 2 and stats.max_memory_bytes == 128 * MIB
    # the host counts the new sizes, the old reservation is gone
    usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
    assert usage[host.name] == (2000, 0, 128 * MIB, 0)
    assert sum(u[1] + u[3] for u in usage.values()) == 0


def test_migrate_is_checked_before_anything_moves(world, cloud, runner) -> None:
    from placement_world import set_host

    from engine import topology

    vm = deployed(world, runner)
    here = next(h for h in world.hosts if h.id == vm.host_id)
    there = next(h for h in world.hosts if h.id != vm.host_id)
    with rejects(cloud, InvalidParameter, "already runs on host", field="host"):
        migrate_vm(cloud.admin, vm.uuid, here.uuid)
    # no room on the target: refused, saying why
    set_host(cloud, there.name, memory_used_bytes=there.memory_bytes)
    with rejects(cloud, InsufficientCapacity, "0 of 2 hosts fit", "lack"):
        migrate_vm(cloud.admin, vm.uuid, there.uuid)
    set_host(cloud, there.name, memory_used_bytes=0)
    # a host of another cluster: refused
    other = topology.create_cluster(cloud.admin, "rack-1", "c2")
    topology.add_hosts(
        cloud.admin,
        other.uuid,
        [
            topology.HostSpec(
                name="far", uri="test:///far.xml", cpu_cores=8, cpu_mhz=2000, memory_bytes=2**34
            )
        ],
    )
    with rejects(cloud, InvalidParameter, "in another cluster", field="host"):
        migrate_vm(cloud.admin, vm.uuid, "far")
    # a Stopped VM cannot be live-migrated
    run(runner, stop_vm(cloud.admin, vm.uuid, forced=True))
    with rejects(cloud, StateConflict, "migrate needs it Running"):
        migrate_vm(cloud.admin, vm.uuid, there.uuid)


def test_a_failed_migration_leaves_the_vm_running_where_it_was(world, manager, runner) -> None:
    """The test driver cannot migrate: libvirt refuses, and the VM, its domain and its
    claim stay on the source host."""
    cloud = world.cloud
    vm = deployed(world, runner)
    source = next(h for h in world.hosts if h.id == vm.host_id)
    target = next(h for h in world.hosts if h.id != vm.host_id)
    done = runner.wait(migrate_vm(cloud.admin, vm.uuid, target.uuid).uuid)
    assert done.state == JobState.FAILED and "migration" in (done.error or "")
    after = vm_by_name(cloud, "web1")
    assert after.state == VmState.RUNNING and after.host_id == source.id
    (claim,) = claims(cloud)
    assert claim.state == ClaimState.USED and claim.host_id == source.id
    usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
    assert usage[source.name] == (500, 0, 64 * MIB, 0) and usage[target.name] == (0, 0, 0, 0)
    assert domains_everywhere(manager, world.hosts)[source.name] == [vm.instance_name]


def test_jobs_of_one_vm_run_one_after_another(world, manager, runner) -> None:
    """Stop, start, reboot, stop, start submitted at once (four workers free): each runs
    alone, in submission order, and each finds the state the previous one left."""
    cloud = world.cloud
    vm = deployed(world, runner)
    jobs = [
        stop_vm(cloud.admin, vm.uuid, forced=True),
        start_vm(cloud.admin, vm.uuid),
        reboot_vm(cloud.admin, vm.uuid),
        stop_vm(cloud.admin, vm.uuid, forced=True),
        start_vm(cloud.admin, vm.uuid),
    ]
    for job in jobs:
        runner.wait(job.uuid, raise_on_failure=True)
    rows = [get_job(cloud.db, j.uuid) for j in jobs]
    assert all(r.state == JobState.SUCCEEDED for r in rows)
    for earlier, later in itertools.pairwise(rows):
        assert earlier.finished is not None and later.started is not None
        assert earlier.finished <= later.started, (
            f"{later.job_type} started before {earlier.job_type} finished"
        )
    final = vm_by_name(cloud, "web1")
    assert final.state == VmState.RUNNING
    assert state_of(manager, world, final) == "running"
    assert [c.state for c in claims(cloud)] == [ClaimState.USED]


def test_volumes_of_a_running_vm_are_ready(world, runner) -> None:
    vm = deployed(world, runner)
    assert [v.state for v in live_volumes(world.cloud, vm.id)] == [VolumeState.READY]


def test_expunge_also_takes_back_a_data_volume_storage_attached(world, manager, runner) -> None:
    """A data volume attached by the storage service (its pool space is the volume's own,
    not the VM's claim) is deleted with the VM, and its space goes back exactly once."""
    from engine.storage.volumes import attach_volume, create_volume

    cloud = world.cloud
    vm = deployed(world, runner)
    offerings.create_disk_offering(cloud.admin, "data-1g", disk_size_bytes=2**30)
    volume = create_volume(cloud.admin, "extra", zone="z1", disk_offering="data-1g")
    # stopped (the test driver cannot hot-plug): storage records it, the next start
    # defines the domain with it
    run(runner, stop_vm(cloud.admin, vm.uuid, forced=True))
    run(runner, attach_volume(cloud.admin, volume.uuid, vm.uuid))
    assert len(live_volumes(cloud, vm.id)) == 2
    run(runner, start_vm(cloud.admin, vm.uuid))
    assert pool_row(cloud).allocated_bytes == world.template.size_bytes + 2**30
    running = vm_by_name(cloud, "web1")
    host = next(h for h in world.hosts if h.id == running.host_id)
    xml = manager.for_host(host).call(
        lambda c: c.lookupByName(running.instance_name).XMLDesc(0), what="read xml"
    )
    assert "dev='vda'" in xml and "dev='sdb'" in xml  # data disk on SCSI, as storage plugs it

    run(runner, destroy_vm(cloud.admin, vm.uuid, expunge=True))
    assert live_volumes(cloud) == []
    assert pool_files(manager, world.hosts, world.pool) == {h.name: [] for h in world.hosts}
    assert pool_row(cloud).allocated_bytes == 0 and claims(cloud) == []


def test_the_lifecycle_on_sqlite_and_postgresql(any_cloud, tmp_path) -> None:
    """Deploy, then stop/start/reboot queued at once, a failed deploy's undo, destroy and
    expunge: the same compare-and-set SQL on both databases."""
    from engine.compute import context

    world = make_compute_world(any_cloud, tmp_path)
    manager = HostManager(any_cloud.db, debounce=0.1)
    try:
        with JobRunner(any_cloud.db, workers=4, hosts=manager, poll_seconds=0.05) as runner:
            vm = deployed(world, runner)
            jobs = [
                stop_vm(any_cloud.admin, vm.uuid, forced=True),
                start_vm(any_cloud.admin, vm.uuid),
                reboot_vm(any_cloud.admin, vm.uuid),
            ]
            rows = [runner.wait(j.uuid, raise_on_failure=True) for j in jobs]
            for earlier, later in itertools.pairwise(rows):
                assert earlier.finished <= later.started  # type: ignore[operator]
            context.STEP_HOOKS.append(_fail_after_volume)
            try:
                request = DeployRequest(
                    "bad", zone="z1", offering="tiny", template="tiny", networks=["guest"]
                )
                _bad, job = deploy_vm(any_cloud.admin, request)
                assert runner.wait(job.uuid).state == JobState.FAILED
            finally:
                context.STEP_HOOKS.remove(_fail_after_volume)
            assert vm_by_name(any_cloud, "bad").state == VmState.ERROR
            run(runner, destroy_vm(any_cloud.admin, vm.uuid, expunge=True))
            run(runner, destroy_vm(any_cloud.admin, "bad"))
    finally:
        manager.close()
    assert live_volumes(any_cloud) == [] and nics(any_cloud) == [] and claims(any_cloud) == []
    assert host_usage(any_cloud) == [(0, 0, 0, 0)] * 2
    assert pool_row(any_cloud).allocated_bytes == 0


def _fail_after_volume(step: str, _vm: object) -> None:
    if step == "volume":
        raise StateConflict("injected failure after volume")


def test_a_vm_whose_deploy_was_cancelled_before_it_ran_can_be_destroyed(world, manager) -> None:
    from engine.jobs import cancel_job

    cloud = world.cloud
    request = DeployRequest("web1", zone="z1", offering="tiny", template="tiny", networks=["guest"])
    vm, job = deploy_vm(cloud.admin, request)  # no runner yet: the job stays Pending
    cancelled = cancel_job(cloud.admin, job.uuid)
    assert cancelled.state == JobState.CANCELLED
    assert (cancelled.error or "").startswith("cancelled before it started; VM 'web1' is in Error")
    # No transitional state outlives its job: the cancel took the VM out of Starting.
    assert vm_by_name(cloud, "web1").state == VmState.ERROR
    assert "cancelled before it started" in vm_lifecycle(cloud.admin, vm.uuid).state_reason
    destroy = destroy_vm(cloud.admin, vm.uuid)
    with JobRunner(cloud.db, workers=1, hosts=manager, poll_seconds=0.05) as runner:
        run(runner, destroy)
    gone = vm_by_name(cloud, "web1")
    assert gone.state == VmState.EXPUNGED and gone.removed is not None
    assert live_volumes(cloud) == [] and nics(cloud) == [] and claims(cloud) == []


def test_start_moves_to_another_host_when_the_last_one_cannot_take_it(
    world, manager, runner
) -> None:
    from engine import topology

    cloud = world.cloud
    vm = deployed(world, runner)
    first = next(h for h in world.hosts if h.id == vm.host_id)
    other = next(h for h in world.hosts if h.id != vm.host_id)
    run(runner, stop_vm(cloud.admin, vm.uuid, forced=True))
    topology.disable_host(cloud.admin, first.uuid)
    run(runner, start_vm(cloud.admin, vm.uuid))
    moved = vm_by_name(cloud, "web1")
    assert moved.state == VmState.RUNNING and moved.host_id == other.id
    assert moved.last_host_id == other.id
    # the definition followed the VM; the reservation on the first host was given back
    assert domains_everywhere(manager, world.hosts) == {
        first.name: [],
        other.name: [vm.instance_name],
    }
    usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
    assert usage == {first.name: (0, 0, 0, 0), other.name: (500, 0, 64 * MIB, 0)}
    (claim,) = claims(cloud)
    assert claim.host_id == other.id and claim.state == ClaimState.USED


def test_a_migration_moves_the_vm_its_claim_and_its_capacity(
    world, manager, runner, monkeypatch
) -> None:
    """The test driver cannot migrate, so the libvirt call is replaced by the same moves
    on the two test-driver hosts (define + start on the target, off + undefine on the
    source); what is tested is compute's part: checks, claim, counters, state, progress."""
    cloud = world.cloud
    vm = deployed(world, runner)
    source = next(h for h in world.hosts if h.id == vm.host_id)
    target = next(h for h in world.hosts if h.id != vm.host_id)
    seen: list[int] = []

    def move(src, dst, name, *, progress=None, **_kw):  # type: ignore[no-untyped-def]
        xml = src.call(lambda c: c.lookupByName(name).XMLDesc(0), what="read xml")
        domains.define_domain(dst, xml)
        domains.start_domain(dst, name)
        domains.destroy_domain(src, name)
        domains.undefine_domain(src, name)
        if progress is not None:
            progress(domains.MigrationProgress(100, 1, 1, 0.1))
        seen.append(1)

    monkeypatch.setattr(domains, "migrate_domain", move)
    done = runner.wait(migrate_vm(cloud.admin, vm.uuid, target.uuid).uuid, raise_on_failure=True)
    assert seen == [1] and done.progress == 100
    moved = vm_by_name(cloud, "web1")
    assert moved.state == VmState.RUNNING and moved.host_id == target.id
    assert moved.last_host_id == target.id
    (claim,) = claims(cloud)
    assert claim.host_id == target.id and claim.state == ClaimState.USED
    usage = dict(zip([h.name for h in world.hosts], host_usage(cloud), strict=True))
    assert usage == {source.name: (0, 0, 0, 0), target.name: (500, 0, 64 * MIB, 0)}
    assert pool_row(cloud).allocated_bytes == world.template.size_bytes  # disks stay put
    assert domains_everywhere(manager, world.hosts) == {
        source.name: [],
        target.name: [vm.instance_name],
    }


def test_change_to_a_customized_offering_takes_the_vms_own_sizes_within_its_limits(
    world, runner
) -> None:
    cloud = world.cloud
    vm = deployed(world, runner)
    offerings.create_service_offering(
        cloud.admin,
        "flex",
        cpu_count=1,
        cpu_mhz=500,
        memory_bytes=128 * MIB,
        customized=True,
        min_cpu_count=1,
        max_cpu_count=4,
        min_memory_bytes=64 * MIB,
        max_memory_bytes=512 * MIB,
    )
    run(runner, stop_vm(cloud.admin, vm.uuid, forced=True))
    with rejects(cloud, InvalidParameter, "VM 'web1'", "8 CPUs is outside 1-4", "'flex'"):
        change_offering(cloud.admin, vm.uuid, "flex", cpu_count=8)
    with rejects(cloud, InvalidParameter, "service offering 'tiny' is not customized"):
        change_offering(cloud.admin, vm.uuid, "tiny", cpu_count=2)
    # The offering's host tags still apply to the VM's own sizes: no host carries 'gpu'.
    offerings.create_service_offering(
        cloud.admin, "flex-gpu", cpu_count=1, cpu_mhz=500, memory_bytes=128 * MIB,
        customized=True, host_tags="gpu",
    )  # fmt: skip
    with rejects(cloud, InsufficientCapacity, "0 of 2 hosts fit"):
        change_offering(cloud.admin, vm.uuid, "flex-gpu", cpu_count=1)
    changed = change_offering(cloud.admin, vm.uuid, "flex", cpu_count=3, memory_bytes=256 * MIB)
    assert (changed.cpu_count, changed.cpu_mhz, changed.memory_bytes) == (3, 500, 256 * MIB)
    assert vm_by_name(cloud, "web1").memory_bytes == 256 * MIB
