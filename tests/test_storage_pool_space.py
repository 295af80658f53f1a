"""Pool space of standalone volumes: the conditional UPDATE never lets a pool overflow,
however many writers race for its last bytes (SQLite and PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from engine import topology
from engine.errors import InsufficientCapacity
from engine.models import StoragePool
from engine.storage import pool_space
from tests.helpers import GIB, make_cluster, make_pod, make_zone


def test_racing_claims_never_overflow_a_pool(any_cloud) -> None:
    cloud = any_cloud
    make_zone(cloud)
    make_pod(cloud)
    make_cluster(cloud)
    pool = topology.create_storage_pool(
        cloud.admin, "p", path="/srv/p", cluster_ref="c1", capacity_bytes=10 * GIB
    )
    # Defaults: overprovisioning 2, allocated threshold 0.85 -> 17 GiB allocatable.

    def claim(_: int) -> bool:
        try:
            with cloud.db.write() as session:
                pool_space.claim_pool_space(session, pool, GIB, "a 1 GiB volume")
            return True
        except InsufficientCapacity as exc:
            assert "primary storage 'p': no room for a 1 GiB volume (1 GiB)" in str(exc)
            return False

    with ThreadPoolExecutor(max_workers=6) as pool_of_threads:
        won = list(pool_of_threads.map(claim, range(24)))
    assert sum(won) == 17
    with cloud.db.read() as session:
        row = session.get(StoragePool, pool.id)
    assert row is not None and row.allocated_bytes == 17 * GIB
    with cloud.db.write() as session:
        pool_space.release_pool_space(session, pool.id, 17 * GIB)  # type: ignore[arg-type]
    topology.delete_storage_pool(cloud.admin, "p")  # nothing allocated any more
