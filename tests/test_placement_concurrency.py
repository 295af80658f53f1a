"""Many processes placing at once: 8 processes on one SQLite file, and several engines on one
PostgreSQL database, place into a zone that is 95 % full until nothing fits. No host and no
pool may end overcommitted, every success must be a claim in the database, and every
refusal must carry its explanation."""

from __future__ import annotations

import multiprocessing
import os
import re

import pytest
from placement_world import GIB, build, offering, vm
from sqlalchemy import text

from engine import topology
from engine.bootstrap import Cloud, open_cloud
from engine.errors import InsufficientCapacity
from engine.placement import (
    PlacementRequest,
    VolumeRequest,
    create_affinity_group,
    place_vm,
    place_vms,
    preview,
)

MIB = 2**20


def full_zone(cloud: Cloud) -> None:
    """eu-1: 2 clusters x 4 hosts (8 cores x 2000 MHz, 64 GiB), a 1 TiB pool per cluster;
    hosts and pools 95 % allocated, thresholds at 1.0 so the limits themselves bind."""
    build(cloud, clusters_per_pod=2, hosts_per_cluster=4)
    offering(cloud, "tiny", cpus=1, mhz=100, memory=256 * MIB)
    with cloud.db.write() as session:
        session.execute(
            text(
                "UPDATE host SET cpu_cores = 8, cpu_mhz = 2000, memory_bytes = :mem, "
                "cpu_used_mhz = 15200, memory_used_bytes = :used, "
                "capacity_version = capacity_version + 1"
            ),
            {"mem": 64 * GIB, "used": int(64 * GIB * 0.95)},
        )
    for c in ("c0-0", "c0-1"):
        topology.update_cluster(cloud.admin, c, cpu_disable_threshold=1.0,
                                mem_disable_threshold=1.0)  # fmt: skip
        topology.create_storage_pool(cloud.admin, f"pool-{c}", path=f"/{c}", cluster_ref=c,
                                     capacity_bytes=1024 * GIB, overprovisioning_factor=1.0,
                                     allocated_disable_threshold=1.0)  # fmt: skip
    with cloud.db.write() as session:
        session.execute(text("UPDATE storagepool SET allocated_bytes = :a"),
                        {"a": int(1024 * GIB * 0.95)})  # fmt: skip


def _placer(url: str, worker: int, start, results) -> None:  # type: ignore[no-untyped-def]
    """One process: place until refused. Reports (placed, refusal message, fitting)."""
    os.environ["STRATUS_HOME"] = os.environ.get("STRATUS_HOME", "/tmp") + f"/w{worker}"
    cloud = open_cloud(url, migrate=False)
    start.wait()
    placed = []
    refusal = ("", -1)
    k = 0
    try:
        while True:
            volumes = [VolumeRequest(3 * GIB, name="ROOT")] if k % 2 == 0 else []
            request = PlacementRequest(zone="eu-1", offering="tiny", volumes=volumes,
                                       seed=worker * 100_000 + k)  # fmt: skip
            k += 1
            try:
                if k % 5 == 0:
                    placed.extend(p.claim_uuid for p in place_vms(cloud.admin, request, count=3))
                else:
                    placed.append(place_vm(cloud.admin, request).claim_uuid)
            except InsufficientCapacity as err:
                if volumes or k % 5 == 0:
                    continue  # storage or a bulk of three ran out: try smaller requests
                refusal = (str(err), err.explanation.fitting)  # type: ignore[attr-defined]
                break
    except Exception as exc:  # report, do not hang the parent
        refusal = (f"{type(exc).__name__}: {exc}", -2)
    results.put((worker, placed, refusal))
    cloud.db.dispose()


def run_placers(url: str, processes: int) -> list[tuple[int, list[str], tuple[str, int]]]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_placer, args=(url, w, start, results)) for w in range(processes)]
    for p in procs:
        p.start()
    start.set()
    out = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def check_invariants(cloud: Cloud, outcomes) -> None:  # type: ignore[no-untyped-def]
    with cloud.db.read() as session:
        over_hosts = session.execute(
            text(
                "SELECT name FROM host WHERE cpu_used_mhz + cpu_reserved_mhz > cpu_cores * cpu_mhz"
                " OR memory_used_bytes + memory_reserved_bytes > memory_bytes"
            )
        ).all()
        over_pools = session.execute(
            text("SELECT name FROM storagepool WHERE allocated_bytes > capacity_bytes")
        ).all()
        claim_uuids = {r[0] for r in session.execute(text("SELECT uuid FROM placementclaim"))}
        claimed_mem = session.execute(
            text("SELECT coalesce(sum(memory_bytes), 0) FROM placementclaim")
        ).scalar_one()
        host_mem = session.execute(
            text("SELECT sum(memory_used_bytes) - :base FROM host"),
            {"base": 8 * int(64 * GIB * 0.95)},
        ).scalar_one()
        claimed_disk = session.execute(
            text("SELECT coalesce(sum(size_bytes), 0) FROM placementclaimvolume")
        ).scalar_one()
        pool_alloc = session.execute(
            text("SELECT sum(allocated_bytes) - :base FROM storagepool"),
            {"base": 2 * int(1024 * GIB * 0.95)},
        ).scalar_one()
    assert over_hosts == [] and over_pools == []
    placed = [u for _, uuids, _ in outcomes for u in uuids]
    assert len(placed) == len(set(placed)) == len(claim_uuids)
    assert set(placed) == claim_uuids
    # The hosts and pools carry exactly what the claims say: no lost or doubled update.
    assert host_mem == claimed_mem
    assert pool_alloc == claimed_disk
    for worker, _, (message, fitting) in outcomes:
        assert fitting == 0, f"worker {worker}: {message}"
        assert message.startswith("zone 'eu-1': 0 of 8 hosts fit: "), message
        assert re.search(r"hosts fit: \d+ (lack|are in clusters over)", message), message
    # Nothing fits any more: the zone really was filled.
    with pytest.raises(InsufficientCapacity):
        preview(cloud.admin, PlacementRequest(zone="eu-1", offering="tiny"))


def test_eight_processes_on_one_sqlite_file_never_overcommit(cloud: Cloud) -> None:
    full_zone(cloud)
    outcomes = run_placers(cloud.db.url, 8)
    placed = sum(len(u) for _, u, _ in outcomes)
    # CPU binds: 8 hosts x 800 MHz free / 100 MHz = 64 VMs (memory would take 96).
    assert placed == 64
    check_invariants(cloud, outcomes)


@pytest.mark.postgres
def test_several_engines_on_one_postgresql_never_overcommit(postgres_url: str) -> None:
    cloud = open_cloud(postgres_url)
    try:
        full_zone(cloud)
        outcomes = run_placers(postgres_url, 4)
        assert sum(len(u) for _, u, _ in outcomes) == 64
        check_invariants(cloud, outcomes)
    finally:
        cloud.db.dispose()


def _spreader(url: str, worker: int, vm_uuids: list[str], start, results) -> None:  # type: ignore[no-untyped-def]
    """Place VMs of one anti-affinity group; report (placed host names, refusals)."""
    os.environ["STRATUS_HOME"] = os.environ.get("STRATUS_HOME", "/tmp") + f"/s{worker}"
    cloud = open_cloud(url, migrate=False)
    start.wait()
    hosts, refusals = [], []
    for k, uuid in enumerate(vm_uuids):
        request = PlacementRequest(zone="eu-1", offering="small", vm=uuid,
                                   affinity_groups=["spread"], seed=worker * 100 + k)  # fmt: skip
        try:
            hosts.append(place_vm(cloud.admin, request).host_name)
        except InsufficientCapacity as err:
            refusals.append(str(err))
        except Exception as exc:  # report, do not hang the parent
            refusals.append(f"{type(exc).__name__}: {exc}")
    results.put((worker, hosts, refusals))
    cloud.db.dispose()


def test_concurrent_members_of_an_anti_affinity_group_never_share_a_host(db_url: str) -> None:
    """4 processes (engines, on PostgreSQL) place 12 VMs of one anti-affinity group into 8
    hosts at once: 8 land, each on its own host, and 4 are refused by the group."""
    cloud = open_cloud(db_url)
    try:
        build(cloud, clusters_per_pod=2, hosts_per_cluster=4)
        offering(cloud)
        create_affinity_group(cloud.admin, "spread", "host anti-affinity")
        rows = [vm(cloud, f"web{k}").uuid for k in range(12)]
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_spreader, args=(db_url, w, rows[w * 3 : w * 3 + 3], start, results))
            for w in range(4)
        ]
        for p in procs:
            p.start()
        start.set()
        outcomes = [results.get(timeout=300) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        placed = [h for _, hosts, _ in outcomes for h in hosts]
        refusals = [m for _, _, messages in outcomes for m in messages]
        assert len(placed) == 8 and len(set(placed)) == 8, placed
        assert len(refusals) == 4
        for message in refusals:
            assert "run a VM of anti-affinity group 'spread'" in message, message
    finally:
        cloud.db.dispose()


def test_a_deadlock_victim_is_reported_as_a_retryable_conflict(postgres_url: str) -> None:
    """Two placement connections lock two host rows in opposite orders: PostgreSQL picks a
    victim, and its transaction surfaces as TransientConflict (which place_vms retries),
    not as a dead database."""
    import threading

    from engine.placement.sql import Conn, TransientConflict

    cloud = open_cloud(postgres_url)
    try:
        full_zone(cloud)
        with cloud.db.read() as session:
            a, b = [r[0] for r in session.execute(text("SELECT id FROM host ORDER BY id LIMIT 2"))]
        first, second = Conn(cloud.db), Conn(cloud.db)
        both_hold_one = threading.Barrier(2)
        errors: list[BaseException] = []

        def lock_in_order(conn: Conn, one: int, other: int) -> None:
            try:
                with conn.transaction():
                    bump = "UPDATE host SET capacity_version = capacity_version + 1 WHERE id = :id"
                    conn.execute(bump, {"id": one})
                    both_hold_one.wait(timeout=10)
                    conn.execute(bump, {"id": other})
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=lock_in_order, args=(first, a, b)),
            threading.Thread(target=lock_in_order, args=(second, b, a)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(errors) == 1, errors
        assert isinstance(errors[0], TransientConflict)
        assert "try again" in str(errors[0])
        first.close()
        second.close()
    finally:
        cloud.db.dispose()
