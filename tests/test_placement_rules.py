"""Placement rules: planner and allocator orders, each filter and its reason text, claims,
release, bulk, lost races, and bad input that writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import db_snapshot, rejects
from placement_world import (
    GIB,
    Shape,
    account,
    build,
    claims,
    hosts,
    offering,
    pools,
    set_host,
    vm,
)
from sqlalchemy import select, update

from engine import topology
from engine.bootstrap import Cloud
from engine.errors import InsufficientCapacity, InvalidParameter, NotFound, StateConflict
from engine.models import PlacementClaim, utcnow
from engine.placement import (
    PlacementRequest,
    VolumeRequest,
    add_vm_to_affinity_group,
    create_affinity_group,
    dedicate,
    expire_reservations,
    place_vm,
    place_vms,
    plan_vm,
    preview,
    release_capacity,
)
from engine.placement.snapshot import snapshot_for
from engine.settings import update_setting


def req(**kwargs) -> PlacementRequest:  # type: ignore[no-untyped-def]
    kwargs.setdefault("zone", "eu-1")
    kwargs.setdefault("offering", "small")
    kwargs.setdefault("seed", 1)
    return PlacementRequest(**kwargs)


@pytest.fixture
def two_clusters(cloud: Cloud) -> Cloud:
    """eu-1: pod p0 with clusters c0-0 and c0-1, two 8-core 16 GiB hosts each."""
    build(cloud, clusters_per_pod=2, hosts_per_cluster=2)
    offering(cloud)
    return cloud


# --- planners ----------------------------------------------------------------------------


def test_firstfit_planner_tries_the_least_allocated_cluster_first(two_clusters: Cloud) -> None:
    set_host(two_clusters, "h0-0-0", cpu_used_mhz=8000)
    plan = preview(two_clusters.admin, req())
    assert plan.cluster_name == "c0-1"
    assert plan.how == "FirstFitPlanner"
    # Now c0-1 is the more allocated one: the planner turns to c0-0.
    set_host(two_clusters, "h0-1-0", cpu_used_mhz=12000)
    assert preview(two_clusters.admin, req()).cluster_name == "c0-0"


def test_firstfit_orders_by_memory_when_told_to(two_clusters: Cloud) -> None:
    set_host(two_clusters, "h0-0-0", cpu_used_mhz=10000)  # c0-0 more CPU-allocated
    set_host(two_clusters, "h0-1-0", memory_used_bytes=10 * GIB)  # c0-1 more memory-allocated
    assert preview(two_clusters.admin, req()).cluster_name == "c0-1"
    update_setting(two_clusters.admin, "host.capacityType.to.order.clusters", "RAM")
    assert preview(two_clusters.admin, req()).cluster_name == "c0-0"


def test_user_dispersing_planner_prefers_clusters_without_the_accounts_vms(
    two_clusters: Cloud,
) -> None:
    # c0-1 is busier, but the account already has a VM in c0-0.
    place_vm(two_clusters.admin, req(pinned_host="h0-0-0"))
    set_host(two_clusters, "h0-1-0", cpu_used_mhz=6000)
    plan = preview(two_clusters.admin, req(planner="UserDispersingPlanner"))
    assert plan.cluster_name == "c0-1"
    assert plan.how == "UserDispersingPlanner"
    # FirstFit alone would have gone to the less allocated c0-0.
    assert preview(two_clusters.admin, req(planner="FirstFitPlanner")).cluster_name == "c0-0"


def test_user_concentrated_pod_planner_prefers_the_pod_with_the_accounts_vms(
    cloud: Cloud,
) -> None:
    build(cloud, pods=2, clusters_per_pod=1, hosts_per_cluster=2)
    offering(cloud)
    place_vm(cloud.admin, req(pinned_host="h1-0-0"))
    set_host(cloud, "h1-0-1", cpu_used_mhz=10000)
    assert preview(cloud.admin, req()).pod_name == "p0"  # FirstFit: least allocated
    plan = preview(cloud.admin, req(planner="UserConcentratedPodPlanner"))
    assert plan.pod_name == "p1"


def test_the_offerings_planner_applies_unless_the_request_names_one(cloud: Cloud) -> None:
    build(cloud, clusters_per_pod=2, hosts_per_cluster=1)
    offering(cloud, "dispersed", deployment_planner="UserDispersingPlanner")
    place_vm(cloud.admin, req(offering="dispersed", pinned_host="h0-0-0"))
    set_host(cloud, "h0-1-0", cpu_used_mhz=6000)
    assert preview(cloud.admin, req(offering="dispersed")).cluster_name == "c0-1"
    assert (
        preview(cloud.admin, req(offering="dispersed", planner="FirstFitPlanner")).cluster_name
        == "c0-0"
    )


def test_global_planner_setting_is_used(two_clusters: Cloud) -> None:
    update_setting(two_clusters.admin, "vm.deployment.planner", "UserConcentratedPodPlanner")
    assert preview(two_clusters.admin, req()).how == "UserConcentratedPodPlanner"


# --- allocators --------------------------------------------------------------------------


@pytest.fixture
def one_cluster(cloud: Cloud) -> Cloud:
    build(cloud, hosts_per_cluster=4)
    offering(cloud)
    return cloud


def test_firstfit_allocator_takes_the_first_host_that_fits(one_cluster: Cloud) -> None:
    set_host(one_cluster, "h0-0-0", memory_used_bytes=15 * GIB)
    assert preview(one_cluster.admin, req(allocator="firstfit")).host_name == "h0-0-1"


def test_firstfitleastconsumed_takes_the_least_allocated_host(one_cluster: Cloud) -> None:
    for k, used in enumerate((8000, 4000, 2000, 6000)):
        set_host(one_cluster, f"h0-0-{k}", cpu_used_mhz=used)
    plan = preview(one_cluster.admin, req(allocator="firstfitleastconsumed"))
    assert plan.host_name == "h0-0-2"
    runners = [c.host for c in plan.explanation.runners_up]
    assert runners == ["h0-0-1", "h0-0-3", "h0-0-0"]
    scores = [plan.explanation.winner.host_score] + [
        c.host_score for c in plan.explanation.runners_up
    ]
    assert scores == sorted(scores)


def test_userdispersing_allocator_avoids_hosts_with_the_accounts_vms(one_cluster: Cloud) -> None:
    for k in range(3):
        place_vm(one_cluster.admin, req(pinned_host=f"h0-0-{k}"))
    assert preview(one_cluster.admin, req(allocator="userdispersing")).host_name == "h0-0-3"


def test_random_allocator_is_repeatable_with_a_seed_and_spreads_without(
    one_cluster: Cloud,
) -> None:
    first = [preview(one_cluster.admin, req(seed=s)).host_name for s in range(20)]
    again = [preview(one_cluster.admin, req(seed=s)).host_name for s in range(20)]
    assert first == again
    assert len(set(first)) > 1
    unseeded = plan_vm(one_cluster.admin, req(seed=None))
    assert preview(one_cluster.admin, req(seed=unseeded.seed)).host_name == unseeded.host_name


def test_allocator_setting_is_used(one_cluster: Cloud) -> None:
    update_setting(one_cluster.admin, "vm.allocation.algorithm", "firstfit")
    set_host(one_cluster, "h0-0-0", resource_state="Disabled")
    plan = preview(one_cluster.admin, req())
    assert (plan.host_name, plan.explanation.allocator) == ("h0-0-1", "firstfit")


# --- filters and their reasons ----------------------------------------------------------


def refusal(cloud: Cloud, request: PlacementRequest) -> str:
    before = db_snapshot(cloud)
    with pytest.raises(InsufficientCapacity) as info:
        place_vm(cloud.admin, request)
    assert db_snapshot(cloud) == before
    assert info.value.explanation.fitting == 0  # type: ignore[attr-defined]
    return str(info.value)


def test_refusal_says_which_filter_excluded_how_many_hosts(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=6)
    offering(cloud, "gpu8", memory=8 * GIB, host_tags=["gpu"])
    for k in (0, 1):
        topology.update_host(cloud.admin, f"h0-0-{k}", tags=["gpu"])
        set_host(cloud, f"h0-0-{k}", memory_used_bytes=10 * GIB)
    topology.update_host(cloud.admin, "h0-0-2", tags=["gpu"])
    set_host(cloud, "h0-0-2", resource_state="Maintenance")
    message = refusal(cloud, req(offering="gpu8"))
    assert message == (
        "zone 'eu-1': 0 of 6 hosts fit: 3 lack tag 'gpu', 2 lack 8 GiB free memory, "
        "1 in maintenance"
    )


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda c: topology.disable_zone(c.admin, "eu-1"), "2 are in disabled zone 'eu-1'"),
        (lambda c: topology.disable_pod(c.admin, "p0"), "2 are in disabled pod 'p0'"),
        (lambda c: topology.disable_cluster(c.admin, "c0-0"), "2 are in a disabled cluster"),
        (lambda c: [set_host(c, f"h0-0-{k}", status="Down") for k in (0, 1)], "2 are Down"),
        (lambda c: [topology.disable_host(c.admin, f"h0-0-{k}") for k in (0, 1)], "2 are disabled"),
        (
            lambda c: [
                set_host(c, f"h0-0-{k}", resource_state="PrepareForMaintenance") for k in (0, 1)
            ],
            "2 in maintenance",
        ),
        (
            lambda c: [set_host(c, f"h0-0-{k}", cpu_used_mhz=15500) for k in (0, 1)],
            "2 are in clusters over the CPU disable threshold (0.85)",
        ),
        (
            lambda c: [set_host(c, f"h0-0-{k}", memory_used_bytes=14 * GIB) for k in (0, 1)],
            "2 are in clusters over the memory disable threshold (0.85)",
        ),
    ],
)
def test_state_and_threshold_filters_name_their_reason(cloud: Cloud, setup, reason) -> None:  # type: ignore[no-untyped-def]
    build(cloud)
    offering(cloud)
    setup(cloud)
    assert refusal(cloud, req()) == f"zone 'eu-1': 0 of 2 hosts fit: {reason}"


def test_cpu_memory_cores_and_speed_filters(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=4)
    topology.update_cluster(cloud.admin, "c0-0", cpu_disable_threshold=1.0,
                            mem_disable_threshold=1.0)  # fmt: skip
    offering(cloud, "wide", cpus=4, mhz=2000, memory=4 * GIB)
    set_host(cloud, "h0-0-0", cpu_used_mhz=10000)
    set_host(cloud, "h0-0-1", memory_used_bytes=13 * GIB)
    set_host(cloud, "h0-0-2", cpu_cores=2)
    set_host(cloud, "h0-0-3", cpu_mhz=1500)
    assert refusal(cloud, req(offering="wide")) == (
        "zone 'eu-1': 0 of 4 hosts fit: 1 have fewer than 4 cores, 1 are slower than 2000 MHz, "
        "1 lack 8000 MHz free CPU, 1 lack 4 GiB free memory"
    )


def test_overprovisioning_factors_and_reserved_capacity_count(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=2)
    set_host(cloud, "h0-0-1", resource_state="Maintenance")
    topology.update_cluster(cloud.admin, "c0-0", cpu_disable_threshold=1.0,
                            mem_disable_threshold=1.0)  # fmt: skip
    offering(cloud, "big", cpus=4, mhz=2000, memory=8 * GIB)
    set_host(cloud, "h0-0-0", cpu_used_mhz=8000, cpu_reserved_mhz=4000)
    assert refusal(cloud, req(offering="big")) == (
        "zone 'eu-1': 0 of 2 hosts fit: 1 in maintenance, 1 lack 8000 MHz free CPU"
    )
    topology.update_cluster(cloud.admin, "c0-0", cpu_overprovisioning_factor=2.0)
    assert preview(cloud.admin, req(offering="big")).host_name == "h0-0-0"
    set_host(cloud, "h0-0-0", memory_reserved_bytes=10 * GIB)
    assert "lack 8 GiB free memory" in refusal(cloud, req(offering="big"))
    topology.update_cluster(cloud.admin, "c0-0", mem_overprovisioning_factor=1.5)
    assert preview(cloud.admin, req(offering="big")).host_name == "h0-0-0"


def test_template_tag_joins_the_offering_tags(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=2)
    offering(cloud, "ssd", host_tags=["ssd"])
    topology.update_host(cloud.admin, "h0-0-0", tags=["ssd"])
    topology.update_host(cloud.admin, "h0-0-1", tags=["ssd", "win"])
    assert preview(cloud.admin, req(offering="ssd", template_tags=["win"])).host_name == "h0-0-1"
    topology.update_host(cloud.admin, "h0-0-1", tags=["win"])
    assert refusal(cloud, req(offering="ssd", template_tags=["win"])) == (
        "zone 'eu-1': 0 of 2 hosts fit: 1 lack tag 'ssd', 1 lack tag 'win'"
    )


def test_avoid_set_pinned_and_last_host(one_cluster: Cloud) -> None:
    r = req(allocator="firstfit")
    assert preview(one_cluster.admin, r).host_name == "h0-0-0"
    retry = r.avoiding(hosts=["h0-0-0"])
    plan = preview(one_cluster.admin, retry)
    assert plan.host_name == "h0-0-1"
    assert plan.explanation.excluded("avoid set") == 1
    assert refusal(one_cluster, r.avoiding(clusters=["c0-0"])) == (
        "zone 'eu-1': 0 of 4 hosts fit: 4 are in the avoid set"
    )
    pinned = preview(one_cluster.admin, req(pinned_host="h0-0-3"))
    assert (pinned.host_name, pinned.how) == ("h0-0-3", "pinned host")
    set_host(one_cluster, "h0-0-3", memory_used_bytes=15 * GIB)
    assert refusal(one_cluster, req(pinned_host="h0-0-3")) == (
        "zone 'eu-1': 0 of 4 hosts fit: 3 are not the pinned host 'h0-0-3', "
        "1 lack 2 GiB free memory"
    )
    last = preview(one_cluster.admin, req(last_host="h0-0-2"))
    assert (last.host_name, last.how) == ("h0-0-2", "last host")
    # A last host that no longer fits is only a preference: the planner takes over.
    set_host(one_cluster, "h0-0-2", status="Disconnected")
    assert preview(one_cluster.admin, req(last_host="h0-0-2")).how == "FirstFitPlanner"


def test_storage_filter_places_every_volume_largest_first(cloud: Cloud) -> None:
    build(cloud, clusters_per_pod=2, hosts_per_cluster=1)
    offering(cloud)
    topology.create_storage_pool(cloud.admin, "fast", path="/fast", cluster_ref="c0-0",
                                 capacity_bytes=100 * GIB, tags=["ssd"])  # fmt: skip
    topology.create_storage_pool(cloud.admin, "slow", path="/slow", cluster_ref="c0-1",
                                 capacity_bytes=100 * GIB)  # fmt: skip
    topology.create_storage_pool(cloud.admin, "shared", path="/shared", zone_ref="eu-1",
                                 capacity_bytes=50 * GIB)  # fmt: skip
    volumes = [VolumeRequest(20 * GIB, ["ssd"], name="ROOT"), VolumeRequest(60 * GIB, name="data")]
    plan = place_vm(cloud.admin, req(volumes=volumes))
    assert plan.cluster_name == "c0-0"
    assert [(v.name, v.pool_name) for v in plan.volumes] == [("ROOT", "fast"), ("data", "fast")]
    assert pools(cloud)["fast"].allocated_bytes == 80 * GIB
    # fast has 170 - 80 = 90 GiB of allocatable room left (100 x 2 x 0.85): two 50 GiB
    # volumes need 100, counted together: the second goes to the zone-wide pool.
    plan = place_vm(cloud.admin, req(volumes=[VolumeRequest(50 * GIB, ["ssd"]),
                                              VolumeRequest(40 * GIB)]))  # fmt: skip
    assert [v.pool_name for v in plan.volumes] == ["fast", "fast"]
    message = refusal(cloud, req(volumes=[VolumeRequest(20 * GIB, ["ssd"])]))
    assert message == (
        "zone 'eu-1': 0 of 2 hosts fit: 2 reach no primary storage with room for volume '#0' "
        "(20 GiB, tags ssd)"
    )


def test_pool_thresholds_and_state_are_respected(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=1)
    offering(cloud)
    topology.create_storage_pool(cloud.admin, "p", path="/p", cluster_ref="c0-0",
                                 capacity_bytes=100 * GIB)  # fmt: skip
    with cloud.db.write() as session:
        from engine.models import StoragePool

        session.execute(update(StoragePool).values(used_bytes=90 * GIB))
    assert "reach no primary storage" in refusal(cloud, req(volumes=[VolumeRequest(GIB)]))
    with cloud.db.write() as session:
        from engine.models import StoragePool

        session.execute(update(StoragePool).values(used_bytes=0))
    assert preview(cloud.admin, req(volumes=[VolumeRequest(GIB)])).volumes[0].pool_name == "p"
    topology.disable_storage_pool(cloud.admin, "p")
    assert "reach no primary storage" in refusal(cloud, req(volumes=[VolumeRequest(GIB)]))


def test_anti_affinity_and_affinity_groups(one_cluster: Cloud) -> None:
    create_affinity_group(one_cluster.admin, "web", "host anti-affinity")
    create_affinity_group(one_cluster.admin, "db", "host affinity")
    placed = []
    for k in range(4):
        row = vm(one_cluster, f"web{k}")
        placed.append(place_vm(one_cluster.admin, req(vm=row.uuid, affinity_groups=["web"],
                                                      seed=k)).host_name)  # fmt: skip
    assert sorted(placed) == ["h0-0-0", "h0-0-1", "h0-0-2", "h0-0-3"]
    extra = vm(one_cluster, "web4")
    assert refusal(one_cluster, req(vm=extra.uuid, affinity_groups=["web"])) == (
        "zone 'eu-1': 0 of 4 hosts fit: 4 run a VM of anti-affinity group 'web'"
    )
    first = place_vm(one_cluster.admin, req(vm=vm(one_cluster, "db0").uuid, affinity_groups=["db"]))
    for k in range(1, 4):
        again = place_vm(one_cluster.admin, req(vm=vm(one_cluster, f"db{k}").uuid,
                                                affinity_groups=["db"], seed=k))  # fmt: skip
        assert again.host_name == first.host_name
    # Membership added by the service is honoured for later VMs too.
    row = vm(one_cluster, "db4")
    add_vm_to_affinity_group(one_cluster.admin, "db", row.uuid)
    assert place_vm(one_cluster.admin, req(vm=row.uuid, seed=9)).host_name == first.host_name


def test_bulk_placement_honours_anti_affinity_among_its_own_vms(one_cluster: Cloud) -> None:
    create_affinity_group(one_cluster.admin, "spread", "host anti-affinity")
    rows = [vm(one_cluster, f"s{k}").uuid for k in range(4)]
    plans = place_vms(one_cluster.admin, req(affinity_groups=["spread"]), count=4, vms=rows)
    assert len({p.host_name for p in plans}) == 4


def test_dedication_restricts_hosts_to_their_owner(two_clusters: Cloud) -> None:
    tenant = account(two_clusters, "tenant")
    dedicate(two_clusters.admin, "cluster", "c0-1", account="tenant")
    # Other accounts never land on the dedicated cluster.
    set_host(two_clusters, "h0-0-0", cpu_used_mhz=10000)
    for seed in range(8):
        assert preview(two_clusters.admin, req(seed=seed)).cluster_name == "c0-0"
    # The owner may use both; with explicit dedication only its own.
    create_affinity_group(two_clusters.admin, "mine", "ExplicitDedication", account="tenant")
    plan = preview(two_clusters.admin, req(account="tenant", affinity_groups=["mine"]))
    assert plan.cluster_name == "c0-1"
    topology.disable_cluster(two_clusters.admin, "c0-1")
    message = refusal(two_clusters, req(account=tenant.uuid, affinity_groups=["mine"]))
    assert message == (
        "zone 'eu-1': 0 of 4 hosts fit: 2 are in a disabled cluster, "
        "2 are not dedicated to account 'tenant'"
    )
    topology.enable_cluster(two_clusters.admin, "c0-1")
    for k in (0, 1):
        set_host(two_clusters, f"h0-0-{k}", status="Alert")
    assert refusal(two_clusters, req()) == (
        "zone 'eu-1': 0 of 4 hosts fit: 2 are Alert, 2 are dedicated to another account or domain"
    )


def test_domain_dedication_admits_accounts_of_the_domain(two_clusters: Cloud) -> None:
    dedicate(two_clusters.admin, "zone", "eu-1", domain="ROOT/")
    account(two_clusters, "member")
    assert preview(two_clusters.admin, req(account="member")).zone == "eu-1"


# --- explanations ------------------------------------------------------------------------


def test_explanation_counts_add_up_and_list_examples(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=8)
    offering(cloud)
    for k in range(5):
        set_host(cloud, f"h0-0-{k}", resource_state="Maintenance")
    plan = preview(cloud.admin, req())
    e = plan.explanation
    assert e.hosts == 8
    assert e.fitting == 3
    assert sum(f.excluded for f in e.filters) == 5
    maintenance = next(f for f in e.filters if f.filter == "resource state" and f.excluded)
    assert maintenance.examples == ("h0-0-0", "h0-0-1", "h0-0-2")
    assert e.winner is not None and e.winner.host == plan.host_name
    assert len(e.runners_up) == 2
    assert plan.host_name not in {c.host for c in e.runners_up}
    assert e.summary().startswith("zone 'eu-1': 3 of 8 hosts fit: 5 in maintenance; chose host")


def test_empty_zone_says_so(cloud: Cloud) -> None:
    topology.create_zone(cloud.admin, "eu-1", dns1="8.8.8.8")
    offering(cloud)
    assert refusal(cloud, req()) == "zone 'eu-1' has no hosts"


# --- claims and release ------------------------------------------------------------------


def test_place_claims_and_release_gives_back(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=1)
    topology.update_cluster(cloud.admin, "c0-0", cpu_disable_threshold=1.0,
                            mem_disable_threshold=1.0)  # fmt: skip
    offering(cloud, "two", cpus=2, mhz=1000, memory=4 * GIB)
    topology.create_storage_pool(cloud.admin, "p", path="/p", cluster_ref="c0-0",
                                 capacity_bytes=100 * GIB)  # fmt: skip
    row = vm(cloud, "a", cpus=2, memory=4 * GIB)
    before = hosts(cloud)["h0-0-0"].capacity_version
    plan = place_vm(cloud.admin, req(offering="two", vm=row.uuid,
                                     volumes=[VolumeRequest(10 * GIB)]))  # fmt: skip
    h = hosts(cloud)["h0-0-0"]
    assert (h.cpu_used_mhz, h.memory_used_bytes) == (2000, 4 * GIB)
    assert h.capacity_version > before
    assert pools(cloud)["p"].allocated_bytes == 10 * GIB
    (claim,) = claims(cloud)
    assert (claim.vm_id, claim.state, claim.uuid) == (row.id, "used", plan.claim_uuid)

    with pytest.raises(StateConflict, match="already holds capacity"):
        place_vm(cloud.admin, req(offering="two", vm=row.uuid))

    release_capacity(cloud.admin, row.uuid, on="stop")
    h = hosts(cloud)["h0-0-0"]
    assert (h.cpu_used_mhz, h.cpu_reserved_mhz) == (0, 2000)
    assert (h.memory_used_bytes, h.memory_reserved_bytes) == (0, 4 * GIB)
    (claim,) = claims(cloud)
    assert claim.state == "reserved"
    assert claim.reserved_until is not None and claim.reserved_until > utcnow() + timedelta(
        seconds=3500
    )
    assert pools(cloud)["p"].allocated_bytes == 10 * GIB  # the disk stays

    # Fill the host: the stopped VM still restarts there, on its reservation.
    set_host(cloud, "h0-0-0", memory_used_bytes=12 * GIB)
    again = place_vm(cloud.admin, req(offering="two", vm=row.uuid))
    assert (again.host_name, again.how) == ("h0-0-0", "last host")
    assert [v.pool_name for v in again.volumes] == ["p"]
    h = hosts(cloud)["h0-0-0"]
    assert (h.memory_used_bytes, h.memory_reserved_bytes) == (16 * GIB, 0)
    assert pools(cloud)["p"].allocated_bytes == 10 * GIB  # not counted twice

    release_capacity(cloud.admin, row.uuid, on="destroy")
    h = hosts(cloud)["h0-0-0"]
    assert (h.cpu_used_mhz, h.memory_used_bytes) == (0, 12 * GIB)
    assert pools(cloud)["p"].allocated_bytes == 0
    assert claims(cloud) == []
    with rejects(cloud, NotFound, "holds no placement claim"):
        release_capacity(cloud.admin, row.uuid, on="destroy")


def test_reservations_expire_after_skipcounting(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=1)
    offering(cloud)
    plan = place_vm(cloud.admin, req())
    release_capacity(cloud.admin, claim=plan.claim_uuid, on="stop")
    assert hosts(cloud)["h0-0-0"].memory_reserved_bytes == 2 * GIB
    assert expire_reservations(cloud.admin) == 0
    with cloud.db.write() as session:
        session.execute(
            update(PlacementClaim).values(reserved_until=utcnow() - timedelta(seconds=1))
        )
    assert expire_reservations(cloud.admin) == 1
    h = hosts(cloud)["h0-0-0"]
    assert (h.memory_reserved_bytes, h.cpu_reserved_mhz) == (0, 0)
    assert claims(cloud)[0].state == "disks"
    release_capacity(cloud.admin, claim=plan.claim_uuid, on="destroy")
    assert hosts(cloud)["h0-0-0"].memory_used_bytes == 0


def test_placement_expires_due_reservations_before_deciding(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=1, shape=Shape(memory=4 * GIB))
    topology.update_cluster(cloud.admin, "c0-0", mem_disable_threshold=1.0)
    offering(cloud, "all", memory=4 * GIB)
    plan = place_vm(cloud.admin, req(offering="all"))
    release_capacity(cloud.admin, claim=plan.claim_uuid, on="stop")
    assert refusal(cloud, req(offering="all")).startswith("zone 'eu-1': 0 of 1 hosts fit")
    with cloud.db.write() as session:
        session.execute(
            update(PlacementClaim).values(reserved_until=utcnow() - timedelta(seconds=1))
        )
    assert place_vm(cloud.admin, req(offering="all")).host_name == "h0-0-0"


def test_zero_skipcounting_releases_at_once(cloud: Cloud) -> None:
    build(cloud, hosts_per_cluster=1)
    offering(cloud)
    update_setting(cloud.admin, "capacity.skipcounting.hours", "0")
    plan = place_vm(cloud.admin, req())
    release_capacity(cloud.admin, claim=plan.claim_uuid, on="stop")
    h = hosts(cloud)["h0-0-0"]
    assert (h.memory_used_bytes, h.memory_reserved_bytes) == (0, 0)


def test_bulk_places_all_in_one_transaction_or_none(one_cluster: Cloud) -> None:
    topology.update_cluster(one_cluster.admin, "c0-0", mem_disable_threshold=1.0,
                            cpu_disable_threshold=1.0)  # fmt: skip
    plans = place_vms(one_cluster.admin, req(), count=20)
    assert len(plans) == 20 and len({p.claim_uuid for p in plans}) == 20
    used = sum(h.memory_used_bytes for h in hosts(one_cluster).values())
    assert used == 40 * GIB
    # 64 GiB in all: 12 more fit, 13 do not, and then none is placed.
    before = db_snapshot(one_cluster)
    with pytest.raises(InsufficientCapacity, match=r"placed none of 13 VMs \(12 fit"):
        place_vms(one_cluster.admin, req(), count=13)
    assert db_snapshot(one_cluster) == before
    assert len(place_vms(one_cluster.admin, req(), count=12)) == 12
    assert all(h.memory_used_bytes == 16 * GIB for h in hosts(one_cluster).values())


def test_a_lost_race_moves_on_to_the_next_candidate(one_cluster: Cloud) -> None:
    """The snapshot believes h0-0-0 has room; another writer filled it after the freshness
    check. The conditional UPDATE refuses, and the placement lands elsewhere."""
    r = req(allocator="firstfit")
    assert preview(one_cluster.admin, r).host_name == "h0-0-0"
    set_host(one_cluster, "h0-0-0", memory_used_bytes=16 * GIB)
    snap = snapshot_for(one_cluster.db)
    snap.changed_elsewhere = lambda: False  # type: ignore[method-assign]  # the check misses it
    plan = place_vm(one_cluster.admin, r)
    assert plan.host_name == "h0-0-1"
    assert hosts(one_cluster)["h0-0-0"].memory_used_bytes == 16 * GIB


def test_preview_writes_nothing(one_cluster: Cloud) -> None:
    before = db_snapshot(one_cluster)
    plan = preview(one_cluster.admin, req())
    assert plan.claim_uuid is None
    assert db_snapshot(one_cluster) == before


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "error", "fragment"),
    [
        (req(zone="nowhere"), NotFound, "zone 'nowhere' does not exist"),
        (req(zone=""), InvalidParameter, "a placement needs a zone"),
        (req(offering="huge"), NotFound, "service offering 'huge' does not exist"),
        (req(offering=None), InvalidParameter, "give a service offering, or all of"),
        (req(cpu_count=1), InvalidParameter, "not both"),
        (
            req(offering=None, cpu_count=-1, cpu_mhz=1000, memory_bytes=GIB),
            InvalidParameter,
            "CPU count must be positive, got -1",
        ),
        (
            req(offering=None, cpu_count=1, cpu_mhz=1000, memory_bytes=0),
            InvalidParameter,
            "memory (bytes) must be positive",
        ),
        (req(volumes=[VolumeRequest(-5)]), InvalidParameter, "size (bytes) must be positive"),
        (req(volumes=[VolumeRequest(GIB, ["bad tag"])]), InvalidParameter, "tag 'bad tag'"),
        (req(planner="Nope"), InvalidParameter, "deployment planner 'Nope' is not one of"),
        (req(allocator="best"), InvalidParameter, "allocation algorithm 'best' is not one of"),
        (req(pinned_host="h9"), NotFound, "pinned_host 'h9' is not a host of zone 'eu-1'"),
        (req(affinity_groups=["ghost"]), NotFound, "affinity group 'ghost' does not exist"),
        (req(account="nobody"), NotFound, "account 'nobody' does not exist"),
        (req(vm="no-such-vm"), NotFound, "VM 'no-such-vm' does not exist"),
        (req(template="missing"), NotFound, "template 'missing' does not exist"),
        (
            req(volumes=[VolumeRequest(GIB, disk_offering="x")]),
            NotFound,
            "disk offering 'x' does not exist",
        ),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(
    one_cluster: Cloud, request_, error, fragment
) -> None:  # type: ignore[no-untyped-def]
    with rejects(one_cluster, error, fragment):
        place_vm(one_cluster.admin, request_)
    if request_.vm is None:
        with rejects(one_cluster, error, fragment):
            place_vms(one_cluster.admin, request_, count=3)
    else:
        with rejects(one_cluster, InvalidParameter, "bulk placements name their VMs in vms="):
            place_vms(one_cluster.admin, request_, count=3)


def test_bad_counts_and_release_modes(one_cluster: Cloud) -> None:
    with rejects(one_cluster, InvalidParameter, "count must be a positive whole number"):
        place_vms(one_cluster.admin, req(), count=0)
    with rejects(one_cluster, InvalidParameter, "2 VMs given for count 3"):
        place_vms(one_cluster.admin, req(), count=3, vms=["a", "b"])
    plan = place_vm(one_cluster.admin, req())
    with rejects(one_cluster, InvalidParameter, "expected 'stop' or 'destroy'"):
        release_capacity(one_cluster.admin, claim=plan.claim_uuid, on="pause")
    release_capacity(one_cluster.admin, claim=plan.claim_uuid, on="stop")
    with rejects(one_cluster, StateConflict, "is not running on a host"):
        release_capacity(one_cluster.admin, claim=plan.claim_uuid, on="stop")


def test_affinity_and_dedication_services_validate(two_clusters: Cloud) -> None:
    with rejects(two_clusters, InvalidParameter, "type 'sticky' is not one of"):
        create_affinity_group(two_clusters.admin, "g", "sticky")
    create_affinity_group(two_clusters.admin, "g", "host affinity")
    from engine.errors import AlreadyExists

    with rejects(two_clusters, AlreadyExists, "already taken"):
        create_affinity_group(two_clusters.admin, "g", "host anti-affinity")
    with rejects(two_clusters, InvalidParameter, "exactly one of account or domain"):
        dedicate(two_clusters.admin, "host", "h0-0-0")
    with rejects(two_clusters, InvalidParameter, "dedication scope 'rack'"):
        dedicate(two_clusters.admin, "rack", "p0", account="admin")
    dedicate(two_clusters.admin, "host", "h0-0-0", account="admin")
    with rejects(two_clusters, AlreadyExists, "already dedicated"):
        dedicate(two_clusters.admin, "host", "h0-0-0", domain="ROOT/")


def test_changes_made_through_another_connection_reach_the_snapshot(
    two_clusters: Cloud,
) -> None:
    """Another management server (here a second Database on the same file) disables a
    cluster and fills a host: the next decision here sees both."""
    from engine.bootstrap import open_cloud

    assert preview(two_clusters.admin, req()).explanation.fitting == 4
    other = open_cloud(two_clusters.db.url, migrate=False)
    try:
        topology.disable_cluster(other.admin, "c0-1")
        set_host(other, "h0-0-0", memory_used_bytes=16 * GIB)
    finally:
        other.db.dispose()
    plan = preview(two_clusters.admin, req())
    assert plan.host_name == "h0-0-1"
    assert plan.explanation.summary().startswith(
        "zone 'eu-1': 1 of 4 hosts fit: 2 are in a disabled cluster, 1 lack 2 GiB free memory"
    )


def test_a_clusters_skipcounting_override_sets_the_reservation(two_clusters: Cloud) -> None:
    cluster = topology.get_cluster(two_clusters.admin, "c0-0")
    update_setting(two_clusters.admin, "capacity.skipcounting.hours", "60",
                   scope_type="cluster", scope_uuid=cluster.uuid)  # fmt: skip
    plan = place_vm(two_clusters.admin, req(pinned_host="h0-0-0"))
    release_capacity(two_clusters.admin, claim=plan.claim_uuid, on="stop")
    (claim,) = claims(two_clusters)
    assert claim.reserved_until is not None
    left = (claim.reserved_until - utcnow()).total_seconds()
    assert 0 < left <= 60


def test_capacity_changed_elsewhere_rereads_only_those_hosts(two_clusters: Cloud) -> None:
    from engine.bootstrap import open_cloud

    place_vm(two_clusters.admin, req(pinned_host="h0-1-1"))  # our own write: no re-read
    snap = snapshot_for(two_clusters.db)
    view = next(iter(snap.zones.values()))
    other = open_cloud(two_clusters.db.url, migrate=False)
    try:
        set_host(other, "h0-0-0", memory_used_bytes=16 * GIB)
        topology.update_host(other.admin, "h0-0-1", tags=["gpu"])
        set_host(other, "h0-1-0", status="Down")
    finally:
        other.db.dispose()
    plan = preview(two_clusters.admin, req(allocator="firstfit"))
    assert next(iter(snap.zones.values())) is view  # updated in place, not rebuilt
    assert plan.host_name == "h0-0-1"
    assert plan.explanation.summary().startswith(
        "zone 'eu-1': 2 of 4 hosts fit: 1 are Down, 1 lack 2 GiB free memory"
    )
    offering(two_clusters, "gpu", host_tags=["gpu"])
    assert preview(two_clusters.admin, req(offering="gpu")).host_name == "h0-0-1"
    # The claim we made before is still counted on h0-1-1.
    i = view.host_index["h0-1-1"]
    assert view.h_mem_used[i] == 2 * GIB


def test_a_placement_can_carry_its_explanation(one_cluster: Cloud) -> None:
    for k, used in enumerate((8000, 4000, 2000, 6000)):
        set_host(one_cluster, f"h0-0-{k}", cpu_used_mhz=used)
    r = req(allocator="firstfitleastconsumed", offering=offering(one_cluster, "big", cpus=4))
    plans = [place_vm(one_cluster.admin, r, explain_plan=True) for _ in range(2)]
    assert [p.host_name for p in plans] == ["h0-0-2", "h0-0-1"]
    for plan in plans:
        assert plan.explanation is not None and plan.explanation.winner is not None
        assert plan.explanation.winner.host == plan.host_name
    assert place_vm(one_cluster.admin, r).explanation is None


def test_host_affinity_reason_names_the_group(one_cluster: Cloud) -> None:
    create_affinity_group(one_cluster.admin, "db", "host affinity")
    first = place_vm(one_cluster.admin, req(vm=vm(one_cluster, "db0").uuid, affinity_groups=["db"]))
    set_host(one_cluster, first.host_name, memory_used_bytes=16 * GIB)
    assert refusal(one_cluster, req(vm=vm(one_cluster, "db1").uuid, affinity_groups=["db"])) == (
        "zone 'eu-1': 0 of 4 hosts fit: 3 are not the host of affinity group 'db', "
        "1 lack 2 GiB free memory"
    )


def test_a_vm_placed_again_brings_its_own_sizes_and_tags(one_cluster: Cloud) -> None:
    from engine.models import ServiceOffering, VirtualMachine

    offering(one_cluster, "gpu", cpus=2, memory=4 * GIB, host_tags=["gpu"])
    topology.update_host(one_cluster.admin, "h0-0-3", tags=["gpu"])
    row = vm(one_cluster, "g", cpus=2, memory=4 * GIB)
    with one_cluster.db.write() as session:
        offering_id = session.execute(
            select(ServiceOffering.id).where(ServiceOffering.name == "gpu")
        ).scalar_one()
        session.execute(
            update(VirtualMachine)
            .where(VirtualMachine.id == row.id)
            .values(service_offering_id=offering_id)
        )
    plan = place_vm(one_cluster.admin, PlacementRequest(zone="eu-1", vm=row.uuid, seed=3))
    assert plan.host_name == "h0-0-3"
    assert hosts(one_cluster)["h0-0-3"].memory_used_bytes == 4 * GIB
    release_capacity(one_cluster.admin, row.uuid, on="stop")
    again = place_vm(one_cluster.admin, PlacementRequest(zone="eu-1", vm=row.uuid))
    assert (again.host_name, again.how) == ("h0-0-3", "last host")
