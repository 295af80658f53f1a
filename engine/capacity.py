"""Capacity roll-ups per zone, pod and cluster, computed by the database.

A roll-up is a handful of GROUP BY queries whatever the number of hosts: the hosts never
travel to Python. CPU and memory totals include the cluster's overprovisioning factors
(the cluster's own value, else the global setting), as CloudStack reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Float, case, cast, func
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.errors import InvalidParameter, NotFound
from engine.lookup import resolve
from engine.models import Cluster, Host, HostStatus, ImageStore, Pod, StoragePool, Zone
from engine.settings import global_values

Level = Literal["zone", "pod", "cluster"]
FACTOR_SETTINGS = [
    "cpu.overprovisioning.factor",
    "mem.overprovisioning.factor",
    "storage.overprovisioning.factor",
]


@dataclass(frozen=True)
class Figure:
    """One capacity: what exists, what is used, what is reserved."""

    total: float
    used: float
    reserved: float = 0.0

    @property
    def allocated(self) -> float:
        return self.used + self.reserved

    @property
    def free(self) -> float:
        return max(self.total - self.allocated, 0.0)

    @property
    def percent(self) -> float:
        """Allocated (used + reserved) as a percentage of the total; 0 when there is none."""
        return 100.0 * self.allocated / self.total if self.total else 0.0


@dataclass(frozen=True)
class CapacityRollup:
    level: Level
    id: int
    uuid: str
    name: str
    hosts: int
    hosts_up: int
    cpu_mhz: Figure
    memory_bytes: Figure
    cpu_cores: Figure  # physical cores (no overprovisioning)
    primary_used_bytes: Figure
    # Allocated is measured against usable space (capacity x storage overprovisioning).
    primary_allocated_bytes: Figure
    secondary_bytes: Figure


_EMPTY = Figure(0.0, 0.0, 0.0)


def capacity_rollups(
    caller: Caller, level: Level = "zone", *, within_ref: str | None = None
) -> list[CapacityRollup]:
    """One roll-up per container of `level`, optionally only those inside `within_ref`.

    `within_ref` names the parent: a zone for pods, a pod (or zone) for clusters.
    """
    with caller.db.read() as session:
        return _rollups(session, level, within_ref)


def zone_capacity(caller: Caller, zone_ref: str) -> CapacityRollup:
    with caller.db.read() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        return next(r for r in _rollups(session, "zone", None, only_id=zone.id))


def _rollups(
    session: Session, level: Level, within_ref: str | None, only_id: int | None = None
) -> list[CapacityRollup]:
    container = {"zone": Zone, "pod": Pod, "cluster": Cluster}[level]
    host_key = {"zone": Host.zone_id, "pod": Host.pod_id, "cluster": Host.cluster_id}[level]
    pool_key = {
        "zone": StoragePool.zone_id,
        "pod": StoragePool.pod_id,
        "cluster": StoragePool.cluster_id,
    }[level]

    containers = select(container.id, container.uuid, container.name).order_by(container.name)
    if only_id is not None:
        containers = containers.where(container.id == only_id)
    if within_ref is not None:
        containers = _within(session, containers, container, level, within_ref)
    rows = list(session.exec(containers))
    if not rows:
        return []
    ids = [r[0] for r in rows]

    factors = global_values(session, FACTOR_SETTINGS)
    cpu_factor, mem_factor, storage_factor = (float(factors[n]) for n in FACTOR_SETTINGS)

    host_rows = session.exec(
        select(
            host_key,
            func.count(),
            func.sum(case((col(Host.status) == HostStatus.UP, 1), else_=0)),
            func.sum(
                cast(Host.cpu_cores * Host.cpu_mhz, Float)
                * func.coalesce(Cluster.cpu_overprovisioning_factor, cpu_factor)
            ),
            func.sum(Host.cpu_used_mhz),
            func.sum(Host.cpu_reserved_mhz),
            func.sum(
                cast(Host.memory_bytes, Float)
                * func.coalesce(Cluster.mem_overprovisioning_factor, mem_factor)
            ),
            func.sum(Host.memory_used_bytes),
            func.sum(Host.memory_reserved_bytes),
            func.sum(Host.cpu_cores),
        )
        .join(Cluster, col(Cluster.id) == Host.cluster_id)
        .where(col(host_key).in_(ids))
        .group_by(host_key)
    )
    hosts: dict[int, Any] = {r[0]: r for r in host_rows}

    pool_rows = session.exec(
        select(
            pool_key,
            func.sum(StoragePool.capacity_bytes),
            func.sum(StoragePool.used_bytes),
            func.sum(StoragePool.allocated_bytes),
            func.sum(
                cast(StoragePool.capacity_bytes, Float)
                * func.coalesce(StoragePool.overprovisioning_factor, storage_factor)
            ),
        )
        .where(col(pool_key).in_(ids))
        .group_by(pool_key)
    )
    pools: dict[int, Any] = {r[0]: r for r in pool_rows}

    stores: dict[int, Any] = {}
    if level == "zone":
        store_rows = session.exec(
            select(
                ImageStore.zone_id,
                func.sum(ImageStore.capacity_bytes),
                func.sum(ImageStore.used_bytes),
            )
            .where(col(ImageStore.zone_id).in_(ids))
            .group_by(ImageStore.zone_id)
        )
        stores = {r[0]: r for r in store_rows}

    result = []
    for row_id, uuid, name in rows:
        h = hosts.get(row_id)
        p = pools.get(row_id)
        s = stores.get(row_id)
        result.append(
            CapacityRollup(
                level=level,
                id=row_id,
                uuid=uuid,
                name=name,
                hosts=int(h[1]) if h else 0,
                hosts_up=int(h[2] or 0) if h else 0,
                cpu_mhz=Figure(float(h[3] or 0), float(h[4] or 0), float(h[5] or 0))
                if h
                else _EMPTY,
                memory_bytes=Figure(float(h[6] or 0), float(h[7] or 0), float(h[8] or 0))
                if h
                else _EMPTY,
                cpu_cores=Figure(float(h[9] or 0), 0.0) if h else _EMPTY,
                primary_used_bytes=Figure(float(p[1] or 0), float(p[2] or 0)) if p else _EMPTY,
                primary_allocated_bytes=Figure(float(p[4] or 0), float(p[3] or 0)) if p else _EMPTY,
                secondary_bytes=Figure(float(s[1] or 0), float(s[2] or 0)) if s else _EMPTY,
            )
        )
    return result


def _within(session: Session, query: Any, container: Any, level: Level, ref: str) -> Any:
    if level == "zone":
        raise InvalidParameter("zones have no parent to filter by", field="within")
    try:
        zone = resolve(session, Zone, ref, "zone", field="within")
        return query.where(container.zone_id == zone.id)
    except NotFound:
        if level != "cluster":
            raise
    pod = resolve(session, Pod, ref, "pod", field="within")
    return query.where(container.pod_id == pod.id)
