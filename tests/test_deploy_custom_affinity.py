"""Deploy with a customized offering (the VM's own sizes within the offering's limits) and
into affinity groups (membership written with the VM row, left again when the deploy
fails; anti-affinity spreads the VMs over hosts, and the preview says when it cannot)."""

from __future__ import annotations

from pathlib import Path

import pytest
from compute_world import ComputeWorld, host_usage, make_compute_world, vm_by_name
from helpers import rejects
from hosts_helpers import MIB
from sqlmodel import select

from engine import offerings
from engine.bootstrap import Cloud
from engine.compute import DeployRequest, deploy_vm
from engine.errors import InsufficientCapacity, InvalidParameter, NotFound
from engine.models import AffinityGroup, AffinityGroupMember, JobState, VmState
from engine.placement import create_affinity_group
from engine.vm_views import deploy_choices, deploy_preview

GIB = 2**30


@pytest.fixture
def world(cloud: Cloud, tmp_path: Path) -> ComputeWorld:
    made = make_compute_world(cloud, tmp_path)
    offerings.create_service_offering(
        cloud.admin,
        "flex",
        cpu_count=1,
        cpu_mhz=500,
        memory_bytes=128 * MIB,
        customized=True,
        min_cpu_count=1,
        max_cpu_count=4,
        min_cpu_mhz=250,
        max_cpu_mhz=1500,
        min_memory_bytes=64 * MIB,
        max_memory_bytes=2 * GIB,
    )
    return made


def request(name: str = "web1", **kwargs: object) -> DeployRequest:
    values: dict = {"zone": "z1", "offering": "tiny", "template": "tiny", "networks": ["guest"]}
    values.update(kwargs)
    return DeployRequest(name, **values)


def members(cloud: Cloud, group: str) -> list[str]:
    from engine.models import VirtualMachine

    with cloud.db.read() as session:
        return sorted(
            session.exec(
                select(VirtualMachine.name)
                .join(AffinityGroupMember, AffinityGroupMember.vm_id == VirtualMachine.id)
                .join(AffinityGroup, AffinityGroup.id == AffinityGroupMember.group_id)
                .where(AffinityGroup.name == group)
            )
        )


# --- customized offerings ------------------------------------------------------------------


def test_a_customized_offering_deploys_the_vms_own_sizes(world, runner) -> None:
    cloud = world.cloud
    sizes = {"cpu_count": 2, "cpu_mhz": 750, "memory_bytes": 256 * MIB}
    preview = deploy_preview(cloud.admin, request(offering="flex", **sizes))
    assert preview.size_line == "2 x 750 MHz, 256 MiB (custom)"
    assert preview.plan.host_name in ("h0", "h1")
    _vm, job = deploy_vm(cloud.admin, request(offering="flex", **sizes))
    runner.wait(job.uuid, raise_on_failure=True)
    vm = vm_by_name(cloud, "web1")
    assert (vm.cpu_count, vm.cpu_mhz, vm.memory_bytes) == (2, 750, 256 * MIB)
    assert vm.state == VmState.RUNNING
    # the host's counters grew by the VM's own sizes, not the offering's defaults
    assert sorted(host_usage(cloud)) == [(0, 0, 0, 0), (1500, 0, 256 * MIB, 0)]


def test_missing_custom_sizes_take_the_offerings_defaults(world, runner) -> None:
    vm, _job = deploy_vm(world.cloud.admin, request(offering="flex", cpu_count=3))
    assert (vm.cpu_count, vm.cpu_mhz, vm.memory_bytes) == (3, 500, 128 * MIB)


@pytest.mark.parametrize(
    ("sizes", "fragment", "field"),
    [
        ({"cpu_count": 5}, "CPU count 5 CPUs is outside 1-4 CPUs", "cpu_count"),
        ({"cpu_mhz": 100}, "CPU speed 100 MHz is outside 250-1500 MHz", "cpu_mhz"),
        ({"memory_bytes": 4 * GIB}, "memory 4 GiB is outside 64 MiB-2 GiB", "memory_bytes"),
        ({"cpu_count": "two"}, "CPU count 'two' is not a whole number", "cpu_count"),
    ],
)
def test_a_custom_size_outside_the_limits_is_refused(world, sizes, fragment, field) -> None:
    with rejects(world.cloud, InvalidParameter, fragment, "offering 'flex'", field=field):
        deploy_vm(world.cloud.admin, request(offering="flex", **sizes))


def test_custom_sizes_with_a_fixed_offering_are_refused_naming_it(world) -> None:
    cloud = world.cloud
    with rejects(cloud, InvalidParameter, "service offering 'tiny' is not customized"):
        deploy_vm(cloud.admin, request(cpu_count=2))
    with pytest.raises(InvalidParameter, match="'tiny' is not customized"):
        deploy_preview(cloud.admin, request(memory_bytes=GIB))


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        ({"min_cpu_count": 4, "max_cpu_count": 2}, "min_cpu_count 4 is above max_cpu_count 2"),
        ({"max_memory_bytes": 64 * MIB}, "the default memory 128 MiB is outside the limits"),
        ({"min_cpu_mhz": 0}, "min_cpu_mhz 0 must be a whole number of at least 100"),
    ],
)
def test_bad_limits_of_a_customized_offering_are_refused(cloud, limits, fragment) -> None:
    with rejects(cloud, InvalidParameter, "service offering 'bad'", fragment):
        offerings.create_service_offering(
            cloud.admin,
            "bad",
            cpu_count=1,
            cpu_mhz=500,
            memory_bytes=128 * MIB,
            customized=True,
            **limits,
        )
    with rejects(cloud, InvalidParameter, "for a customized offering only"):
        offerings.create_service_offering(
            cloud.admin, "bad", cpu_count=1, cpu_mhz=500, memory_bytes=128 * MIB, max_cpu_count=2
        )


def test_the_wizard_choices_show_the_limits(world) -> None:
    choices = deploy_choices(world.cloud.admin, "z1")
    flex = next(o for o in choices.offerings if o.name == "flex")
    assert flex.note == "custom: 1-4 CPUs, 250-1500 MHz, 64 MiB-2 GiB"
    limits = choices.custom[flex.uuid]
    assert limits.cpu_count == (1, 4) and limits.default_memory_bytes == 128 * MIB
    assert [o.name for o in choices.offerings if o.uuid in choices.custom] == ["flex"]


# --- affinity groups -----------------------------------------------------------------------


def test_the_vm_joins_its_groups_with_its_row(world) -> None:
    cloud = world.cloud
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")
    create_affinity_group(cloud.admin, "pair", "host affinity")
    vm, _job = deploy_vm(cloud.admin, request(affinity_groups=["spread", "pair"]))
    assert members(cloud, "spread") == ["web1"] and members(cloud, "pair") == ["web1"]
    notes = {c.name: c.note for c in deploy_choices(cloud.admin, "z1").affinity_groups}
    assert notes == {"pair": "host affinity, 1 VM", "spread": "host anti-affinity, 1 VM"}
    assert vm.id is not None


def test_an_unknown_or_repeated_group_is_refused(world) -> None:
    cloud = world.cloud
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")
    with rejects(cloud, NotFound, "affinity group 'nope' does not exist", field="affinity_groups"):
        deploy_vm(cloud.admin, request(affinity_groups=["nope"]))
    with rejects(cloud, InvalidParameter, "'spread' is named twice", field="affinity_groups"):
        deploy_vm(cloud.admin, request(affinity_groups=["spread", "spread"]))


def test_anti_affinity_spreads_then_refuses_and_the_failed_vm_leaves_the_group(
    world, runner
) -> None:
    cloud = world.cloud
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")
    spread = request(affinity_groups=["spread"])
    with pytest.raises(InsufficientCapacity) as refused:
        deploy_preview(cloud.admin, spread, count=3)
    assert "anti-affinity group 'spread' puts each of the 3 VMs on its own host" in str(
        refused.value
    )
    assert "only 2 fit" in str(refused.value)
    jobs = [
        deploy_vm(cloud.admin, request(name, affinity_groups=["spread"]))[1]
        for name in ("a1", "a2")
    ]
    for job in jobs:
        runner.wait(job.uuid, raise_on_failure=True)
    hosts = {vm_by_name(cloud, n).host_id for n in ("a1", "a2")}
    assert hosts == {h.id for h in world.hosts}
    with pytest.raises(InsufficientCapacity) as full:
        deploy_preview(cloud.admin, request("a3", affinity_groups=["spread"]))
    assert "2 run a VM of anti-affinity group 'spread'" in str(full.value)
    _vm, job = deploy_vm(cloud.admin, request("a3", affinity_groups=["spread"]))
    assert members(cloud, "spread") == ["a1", "a2", "a3"]
    done = runner.wait(job.uuid)
    assert done.state == JobState.FAILED
    assert "anti-affinity group 'spread'" in (done.error or "")
    assert "left 1 affinity group(s)" in (done.error or "")
    assert vm_by_name(cloud, "a3").state == VmState.ERROR
    assert members(cloud, "spread") == ["a1", "a2"]


def test_a_group_with_vms_is_not_deleted_until_they_leave(world) -> None:
    from engine.affinity import affinity_groups_overview
    from engine.errors import StateConflict
    from engine.placement.groups import delete_affinity_group, remove_vm_from_affinity_group

    cloud = world.cloud
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")
    vm, _job = deploy_vm(cloud.admin, request(affinity_groups=["spread"]))
    (view,) = affinity_groups_overview(cloud.admin)
    assert (view.name, view.vms, [m.name for m in view.members]) == ("spread", 1, ["web1"])
    with rejects(cloud, StateConflict, "affinity group 'spread' still has 1 VM (web1)"):
        delete_affinity_group(cloud.admin, "spread")
    remove_vm_from_affinity_group(cloud.admin, "spread", vm.uuid)
    assert members(cloud, "spread") == []
    with rejects(cloud, NotFound, "VM 'web1' is not in it", field="vm"):
        remove_vm_from_affinity_group(cloud.admin, "spread", vm.uuid)
    delete_affinity_group(cloud.admin, "spread")
    assert affinity_groups_overview(cloud.admin) == []


def test_a_change_of_offering_offers_a_customized_one_with_its_limits(world) -> None:
    from engine.vm_views import offering_choices

    cloud = world.cloud
    vm, _job = deploy_vm(cloud.admin, request())
    shown = offering_choices(cloud.admin, vm.uuid)
    assert [(c.name, c.current, c.limits is not None) for c in shown] == [
        ("tiny", True, False),
        ("flex", False, True),
    ]
    assert shown[1].line == "flex: customized, 1-4 CPUs, 250-1500 MHz, 64 MiB-2 GiB"
    # A VM of the customized offering may choose it again: new sizes of its own.
    flexed, _job = deploy_vm(cloud.admin, request("flexed", offering="flex", cpu_count=2))
    shown = offering_choices(cloud.admin, flexed.uuid)
    assert [(c.name, c.current) for c in shown] == [("tiny", False), ("flex", False)]


def test_a_deploy_cancelled_before_it_ran_leaves_its_groups(world) -> None:
    """The recover hook (here: cancelling the pending DeployVM) takes the membership back."""
    from engine.jobs import cancel_job

    cloud = world.cloud
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")
    _vm, job = deploy_vm(cloud.admin, request(affinity_groups=["spread"]))
    assert members(cloud, "spread") == ["web1"]
    cancel_job(cloud.admin, job.uuid)
    assert vm_by_name(cloud, "web1").state == VmState.ERROR
    assert members(cloud, "spread") == []
