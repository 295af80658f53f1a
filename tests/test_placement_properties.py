"""Property tests: random topologies, capacities, factors, thresholds, tags, states,
dedications and anti-affinity groups. Every placement is checked against an oracle written
here from the rules (not from the engine's code): a placed VM lands on a host the oracle
accepts, so it never exceeds a limit, never lands on a disabled, down or maintenance host,
and honours anti-affinity and dedication; a refusal happens only when the oracle accepts
no host, and says so. The same input and seed give the same result."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement_world import GIB, account, hosts, vm
from sqlalchemy import text

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.errors import InsufficientCapacity
from engine.placement import (
    PlacementRequest,
    VolumeRequest,
    create_affinity_group,
    dedicate,
    place_vm,
)

TAGS = ("gpu", "ssd")
_zone_numbers = itertools.count()
# One cloud per test function; every example builds its own zone in it.
SLOW_FIXTURE = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@dataclass(frozen=True)
class HostCase:
    cores: int
    mhz: int
    memory_gib: int
    status: str
    resource_state: str
    cpu_used: float
    mem_used: float
    reserved: float
    tags: tuple[str, ...]


@dataclass(frozen=True)
class PoolCase:
    capacity_gib: int
    allocated: float
    used: float
    factor: float | None
    allocated_threshold: float | None
    capacity_threshold: float | None
    ssd: bool
    up: bool


pools_st = st.builds(
    PoolCase,
    capacity_gib=st.sampled_from([10, 40, 100]),
    allocated=st.floats(0, 1),
    used=st.floats(0, 1),
    factor=st.sampled_from([None, 1.0, 2.0]),
    allocated_threshold=st.sampled_from([None, 0.85, 1.0]),
    capacity_threshold=st.sampled_from([None, 0.85, 1.0]),
    ssd=st.booleans(),
    up=st.sampled_from([True] * 5 + [False]),
)


@dataclass(frozen=True)
class ClusterCase:
    pool: PoolCase | None
    enabled: bool
    cpu_factor: float | None
    mem_factor: float | None
    cpu_threshold: float | None
    mem_threshold: float | None
    hosts: tuple[HostCase, ...]


hosts_st = st.builds(
    HostCase,
    cores=st.sampled_from([2, 4, 8, 16]),
    mhz=st.sampled_from([1000, 2000, 3000]),
    memory_gib=st.sampled_from([4, 8, 16]),
    status=st.sampled_from(["Up"] * 6 + ["Down", "Alert", "Disconnected"]),
    resource_state=st.sampled_from(["Enabled"] * 6 + ["Disabled", "Maintenance"]),
    cpu_used=st.floats(0, 1),
    mem_used=st.floats(0, 1),
    reserved=st.floats(0, 0.3),
    tags=st.lists(st.sampled_from(TAGS), max_size=2, unique=True).map(tuple),
)
clusters_st = st.builds(
    ClusterCase,
    pool=st.one_of(st.none(), pools_st),
    enabled=st.sampled_from([True] * 5 + [False]),
    cpu_factor=st.sampled_from([None, 1.0, 1.5, 3.0]),
    mem_factor=st.sampled_from([None, 1.0, 1.25, 2.0]),
    cpu_threshold=st.sampled_from([None, 0.5, 0.85, 1.0]),
    mem_threshold=st.sampled_from([None, 0.6, 0.85, 1.0]),
    hosts=st.lists(hosts_st, min_size=1, max_size=4).map(tuple),
)


@dataclass(frozen=True)
class Case:
    pods: tuple[tuple[ClusterCase, ...], ...]
    zone_pool: PoolCase | None
    volumes: tuple[tuple[int, bool], ...]  # (GiB, needs tag ssd)
    dedicate_to: str | None  # "tenant" or "other": the first cluster is theirs
    cpus: int
    mhz: int
    memory_gib: int
    tags: tuple[str, ...]
    tenant: bool  # the VMs belong to account "tenant" (else admin)
    explicit: bool
    anti_members: int  # VMs of the group already placed before the run
    anti: bool
    placements: int
    planner: str
    allocator: str
    seed: int


cases = st.builds(
    Case,
    zone_pool=st.one_of(st.none(), pools_st),
    volumes=st.lists(st.tuples(st.integers(1, 30), st.booleans()), max_size=2).map(tuple),
    pods=st.lists(
        st.lists(clusters_st, min_size=1, max_size=2).map(tuple), min_size=1, max_size=2
    ).map(tuple),
    dedicate_to=st.sampled_from([None, None, "tenant", "other"]),
    cpus=st.integers(1, 4),
    mhz=st.sampled_from([500, 1000, 2000, 2500]),
    memory_gib=st.integers(1, 6),
    tags=st.lists(st.sampled_from(TAGS), max_size=1, unique=True).map(tuple),
    tenant=st.booleans(),
    explicit=st.booleans(),
    anti_members=st.integers(0, 2),
    anti=st.booleans(),
    placements=st.integers(1, 5),
    planner=st.sampled_from(
        ["FirstFitPlanner", "UserDispersingPlanner", "UserConcentratedPodPlanner"]
    ),
    allocator=st.sampled_from(["random", "firstfit", "userdispersing", "firstfitleastconsumed"]),
    seed=st.integers(0, 2**32),
)


def build_case(cloud: Cloud, case: Case, zone: str) -> None:
    admin = cloud.admin
    topology.create_zone(admin, zone, dns1="8.8.8.8")
    first = None
    for p, clusters in enumerate(case.pods):
        topology.create_pod(
            admin,
            zone,
            f"p{p}",
            gateway=f"10.8.{p}.1",
            netmask="24",
            start_ip=f"10.8.{p}.10",
            end_ip=f"10.8.{p}.99",
        )
        pod = topology.get_pod(admin, f"p{p}", zone)
        for c, cc in enumerate(clusters):
            cluster = topology.create_cluster(admin, pod.uuid, f"c{p}-{c}")
            first = first or cluster.uuid
            topology.update_cluster(
                admin,
                cluster.uuid,
                cpu_overprovisioning_factor=cc.cpu_factor,
                mem_overprovisioning_factor=cc.mem_factor,
                cpu_disable_threshold=cc.cpu_threshold,
                mem_disable_threshold=cc.mem_threshold,
            )
            if not cc.enabled:
                topology.disable_cluster(admin, cluster.uuid)
            specs = [
                topology.HostSpec(
                    name=f"h{p}-{c}-{k}",
                    uri=f"test:///{zone}/h{p}-{c}-{k}.xml",
                    cpu_cores=h.cores,
                    cpu_mhz=h.mhz,
                    memory_bytes=h.memory_gib * GIB,
                    tags=h.tags,
                )
                for k, h in enumerate(cc.hosts)
            ]
            uuids = topology.add_hosts(admin, cluster.uuid, specs)
            with cloud.db.write() as session:
                for uuid, h in zip(uuids, cc.hosts, strict=True):
                    cpu, mem = h.cores * h.mhz, h.memory_gib * GIB
                    session.execute(
                        text(
                            "UPDATE host SET status = :s, resource_state = :r, "
                            "cpu_used_mhz = :cu, cpu_reserved_mhz = :cr, "
                            "memory_used_bytes = :mu, memory_reserved_bytes = :mr, "
                            "capacity_version = capacity_version + 1 WHERE uuid = :u"
                        ),
                        {
                            "s": h.status,
                            "r": h.resource_state,
                            "u": uuid,
                            "cu": int(cpu * h.cpu_used),
                            "cr": int(cpu * h.reserved),
                            "mu": int(mem * h.mem_used),
                            "mr": int(mem * h.reserved),
                        },
                    )
            if cc.pool is not None:
                make_pool(cloud, zone, f"pool-{p}-{c}", cc.pool, cluster=cluster.uuid)
    if case.zone_pool is not None:
        make_pool(cloud, zone, "pool-zone", case.zone_pool)
    if case.dedicate_to:
        dedicate(admin, "cluster", first, account=case.dedicate_to)


def make_pool(cloud: Cloud, zone: str, name: str, pc: PoolCase, cluster: str | None = None) -> None:
    pool = topology.create_storage_pool(
        cloud.admin,
        name,
        path=f"/{zone}/{name}",
        zone_ref=None if cluster else zone,
        cluster_ref=cluster,
        capacity_bytes=pc.capacity_gib * GIB,
        tags=["ssd"] if pc.ssd else [],
        overprovisioning_factor=pc.factor,
        allocated_disable_threshold=pc.allocated_threshold,
        capacity_disable_threshold=pc.capacity_threshold,
        enabled=pc.up,
    )
    capacity = pc.capacity_gib * GIB
    with cloud.db.write() as session:
        session.execute(
            text("UPDATE storagepool SET allocated_bytes = :a, used_bytes = :u WHERE uuid = :id"),
            {"a": int(capacity * pc.allocated * 2), "u": int(capacity * pc.used), "id": pool.uuid},
        )


@dataclass
class OraclePool:
    name: str
    cluster_id: int | None
    up: bool
    capacity: int
    used: int
    allocated: int
    factor: float
    capacity_threshold: float
    allocated_threshold: float
    tags: set[str]

    def limit(self) -> float:
        return self.capacity * self.factor * self.allocated_threshold


def oracle_pools(cloud: Cloud, zone: str) -> list[OraclePool]:
    with cloud.db.read() as session:
        tags: dict[int, set[str]] = {}
        for pool_id, tag in session.execute(text("SELECT pool_id, tag FROM storagepooltag")):
            tags.setdefault(pool_id, set()).add(tag)
        return [
            OraclePool(
                r[1], r[2], r[3] == "Up", r[4], r[5], r[6], r[7], r[8], r[9], tags.get(r[0], set())
            )
            for r in session.execute(
                text(
                    "SELECT p.id, p.name, p.cluster_id, p.status, p.capacity_bytes, p.used_bytes, "
                    "p.allocated_bytes, coalesce(p.overprovisioning_factor, 2.0), "
                    "coalesce(p.capacity_disable_threshold, 0.85), "
                    "coalesce(p.allocated_disable_threshold, 0.85) FROM storagepool p "
                    "JOIN zone z ON z.id = p.zone_id WHERE z.name = :z ORDER BY p.id"
                ),
                {"z": zone},
            )
        ]


def storage_fits(case: Case, pools: list[OraclePool], cluster_id: int) -> bool:
    """The documented storage rule: volumes largest first; cluster pools before zone-wide
    ones; among the pools that fit (tags, state, thresholds, counting this VM's earlier
    volumes) the one with the most room left."""
    planned: dict[str, int] = {}
    volumes = sorted(
        ((gib * GIB, ssd) for gib, ssd in case.volumes), key=lambda v: -v[0]
    )  # stable: equal sizes keep their order
    for size, ssd in volumes:
        chosen = None
        for scope in ([p for p in pools if p.cluster_id == cluster_id],
                      [p for p in pools if p.cluster_id is None]):  # fmt: skip
            best, best_room = None, -1.0
            for p in scope:
                extra = planned.get(p.name, 0)
                if not p.up or (ssd and "ssd" not in p.tags):
                    continue
                if p.used > p.capacity * p.capacity_threshold:
                    continue
                if p.allocated + extra + size > p.limit():
                    continue
                room = p.limit() - p.allocated - extra
                if room > best_room:
                    best, best_room = p, room
            if best is not None:
                chosen = best
                break
        if chosen is None:
            return False
        planned[chosen.name] = planned.get(chosen.name, 0) + size
    return True


@dataclass
class OracleHost:
    name: str
    cluster: int
    ok_state: bool
    cores: int
    mhz: int
    cpu_alloc: int
    mem_alloc: int
    cpu_cap: float
    mem_cap: float
    tags: set[str]
    owner: int | None


def oracle(cloud: Cloud, zone: str, case: Case, account_id: int, anti_hosts: set[str]) -> set[str]:
    """Names of the hosts the rules allow for one VM of `case`, read from the database."""
    cpu_req, mem_req = case.cpus * case.mhz, case.memory_gib * GIB
    with cloud.db.read() as session:
        rows = session.execute(
            text(
                "SELECT h.name, h.cluster_id, h.status, h.resource_state, c.allocation_state, "
                "p.allocation_state, z.allocation_state, h.cpu_cores, h.cpu_mhz, h.memory_bytes, "
                "h.cpu_used_mhz + h.cpu_reserved_mhz, h.memory_used_bytes + "
                "h.memory_reserved_bytes, coalesce(c.cpu_overprovisioning_factor, 1.0), "
                "coalesce(c.mem_overprovisioning_factor, 1.0), "
                "coalesce(c.cpu_disable_threshold, 0.85), coalesce(c.mem_disable_threshold, 0.85), "
                "h.id, (SELECT d.account_id FROM dedication d WHERE d.scope = 'cluster' "
                "AND d.scope_id = c.id) FROM host h JOIN cluster c ON c.id = h.cluster_id "
                "JOIN pod p ON p.id = h.pod_id JOIN zone z ON z.id = h.zone_id WHERE z.name = :z"
            ),
            {"z": zone},
        ).all()
        tags: dict[int, set[str]] = {}
        for host_id, tag in session.execute(text("SELECT host_id, tag FROM hosttag")):
            tags.setdefault(host_id, set()).add(tag)
    sums: dict[int, list[float]] = {}
    thresholds: dict[int, tuple[float, float]] = {}
    for r in rows:
        s = sums.setdefault(r[1], [0, 0, 0.0, 0.0])
        s[0] += r[10]
        s[1] += r[11]
        s[2] += r[7] * r[8] * r[12]
        s[3] += r[9] * r[13]
        thresholds[r[1]] = (r[14], r[15])
    pools = oracle_pools(cloud, zone)
    allowed = set()
    for r in rows:
        name, cid = r[0], r[1]
        if r[2] != "Up" or r[3] != "Enabled" or "Disabled" in (r[4], r[5], r[6]):
            continue
        if r[7] < case.cpus or r[8] < case.mhz:
            continue
        if r[10] + cpu_req > r[7] * r[8] * r[12] or r[11] + mem_req > r[9] * r[13]:
            continue
        cpu_sum, mem_sum, cpu_total, mem_total = sums[cid]
        if (cpu_sum + cpu_req) / cpu_total > thresholds[cid][0]:
            continue
        if (mem_sum + mem_req) / mem_total > thresholds[cid][1]:
            continue
        if not set(case.tags) <= tags.get(r[16], set()):
            continue
        owner = r[17]
        if owner is not None and owner != account_id:
            continue
        if case.explicit and owner is None:
            continue
        if name in anti_hosts:
            continue
        if not storage_fits(case, pools, cid):
            continue
        allowed.add(name)
    return allowed


def host_rows(cloud: Cloud, zone: str) -> dict[str, tuple]:
    with cloud.db.read() as session:
        return {
            r[0]: r[1:]
            for r in session.execute(
                text(
                    "SELECT h.name, h.cpu_used_mhz + h.cpu_reserved_mhz, h.cpu_cores * h.cpu_mhz "
                    "* coalesce(c.cpu_overprovisioning_factor, 1.0), h.memory_used_bytes + "
                    "h.memory_reserved_bytes, h.memory_bytes * "
                    "coalesce(c.mem_overprovisioning_factor, 1.0) FROM host h JOIN cluster c "
                    "ON c.id = h.cluster_id JOIN zone z ON z.id = h.zone_id WHERE z.name = :z"
                ),
                {"z": zone},
            )
        }


def setup_accounts(cloud: Cloud) -> None:
    with cloud.db.read() as session:
        names = {r[0] for r in session.execute(text("SELECT name FROM account"))}
    for name in ("tenant", "other"):
        if name not in names:
            account(cloud, name)


def run_case(cloud: Cloud, case: Case, zone: str) -> list[str]:
    """Place the case's VMs one by one, checking each against the oracle; the hosts chosen
    (or "-" for a refusal) come back for the determinism check."""
    build_case(cloud, case, zone)
    owner = "tenant" if case.tenant else "admin"
    with cloud.db.read() as session:
        account_id = session.execute(
            text("SELECT id FROM account WHERE name = :n"), {"n": owner}
        ).scalar_one()
    groups = []
    if case.explicit:
        groups.append(f"{zone}-dedicated")
        create_affinity_group(cloud.admin, groups[-1], "ExplicitDedication", account=owner)
    anti_hosts: set[str] = set()
    if case.anti:
        groups.append(f"{zone}-spread")
        create_affinity_group(cloud.admin, groups[-1], "host anti-affinity", account=owner)
    offerings.create_service_offering(
        cloud.admin,
        f"{zone}-o",
        cpu_count=case.cpus,
        cpu_mhz=case.mhz,
        memory_bytes=case.memory_gib * GIB,
        host_tags=list(case.tags),
    )
    chosen = []
    for k in range(case.anti_members + case.placements):
        row = vm(
            cloud,
            f"{zone}-vm{k}",
            account_id,
            cpus=case.cpus,
            mhz=case.mhz,
            memory=case.memory_gib * GIB,
            zone=zone,
        )
        allowed = oracle(cloud, zone, case, account_id, anti_hosts)
        request = PlacementRequest(
            zone=zone,
            offering=f"{zone}-o",
            vm=row.uuid,
            affinity_groups=groups,
            planner=case.planner,
            allocator=case.allocator,
            seed=case.seed + k,
            volumes=[VolumeRequest(gib * GIB, ["ssd"] if ssd else []) for gib, ssd in case.volumes],
        )
        before = {p.name: p for p in oracle_pools(cloud, zone)}
        try:
            plan = place_vm(cloud.admin, request)
        except InsufficientCapacity as err:
            assert not allowed, f"refused although {sorted(allowed)} fit: {err}"
            assert err.explanation.fitting == 0  # type: ignore[attr-defined]
            assert str(err).startswith(f"zone '{zone}': 0 of ")
            chosen.append("-")
            continue
        assert plan.host_name in allowed, f"{plan.host_name} is not one of {sorted(allowed)}"
        chosen.append(plan.host_name)
        after = {p.name: p for p in oracle_pools(cloud, zone)}
        host_cluster = hosts(cloud)[plan.host_name].cluster_id
        for v in plan.volumes:
            p = after[v.pool_name]
            assert p.cluster_id in (None, host_cluster), "pool out of the host's reach"
            assert p.up and p.allocated <= p.limit(), f"pool {p.name} over its limit"
            assert p.allocated > before[v.pool_name].allocated
            assert not case.volumes[v.position][1] or "ssd" in p.tags
        if case.anti:
            anti_hosts.add(plan.host_name)
    for name, (cpu, cpu_cap, mem, mem_cap) in host_rows(cloud, zone).items():
        # Hosts may start over (the random fill), but placement never pushed one over.
        if name in chosen:
            assert cpu <= cpu_cap and mem <= mem_cap, name
    return chosen


@settings(max_examples=30, deadline=None, suppress_health_check=SLOW_FIXTURE)
@given(case=cases)
def test_placements_obey_every_rule(cloud: Cloud, case: Case) -> None:
    setup_accounts(cloud)
    run_case(cloud, case, f"z{next(_zone_numbers)}")


@settings(max_examples=10, deadline=None, suppress_health_check=SLOW_FIXTURE)
@given(case=cases)
def test_same_input_and_seed_give_the_same_result(cloud: Cloud, case: Case) -> None:
    setup_accounts(cloud)
    n = next(_zone_numbers)
    first = run_case(cloud, case, f"a{n}")
    second = run_case(cloud, case, f"b{n}")
    assert first == second
