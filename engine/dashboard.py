"""The dashboard: what an operator checks first, in one call.

Per zone, the capacity figures of `engine.capacity` (CPU, memory, primary storage used and
allocated, secondary storage); then what needs attention: hosts that are not Up, clusters
whose allocated CPU or memory passed their disable threshold, primary storage pools past
theirs; then running and recent jobs and the newest audit events.

Every list is ordered (ORDER BY on every query) and capped; the totals say how many there
are beyond the cap. The queries are aggregates or capped lists, so the dashboard costs the
same few queries at 10 or at 10,000 hosts.

Public, private (pod management) and guest IP figures come from IPAM
(`engine.ipam.utilisation.zone_ip_utilisation`, a few GROUP BY queries over the address
rows) through `ip_utilisation_by_zone`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import or_
from sqlmodel import Session, col, func, select

from engine.capacity import CapacityRollup, Figure, capacity_rollups
from engine.context import Caller
from engine.events import list_events
from engine.ipam.utilisation import zone_ip_utilisation
from engine.models import (
    Cluster,
    Event,
    Host,
    HostStatus,
    Job,
    JobState,
    ResourceState,
    StoragePool,
    StoragePoolStatus,
    Zone,
)
from engine.settings import global_values

# How many rows each list carries; the totals count the rest.
LIST_LIMIT = 20
EVENT_LIMIT = 12

CLUSTER_THRESHOLDS = {
    "CPU": "cluster.cpu.allocated.capacity.disablethreshold",
    "memory": "cluster.memory.allocated.capacity.disablethreshold",
}
POOL_THRESHOLDS = {
    "used": "pool.storage.capacity.disablethreshold",
    "allocated": "pool.storage.allocated.capacity.disablethreshold",
}
STORAGE_FACTOR = "storage.overprovisioning.factor"


class Utilisation(Protocol):
    """An address pool's use, as IPAM reports it (total, allocated, free, percent)."""

    @property
    def total(self) -> int: ...

    @property
    def allocated(self) -> int: ...

    @property
    def free(self) -> int: ...

    @property
    def percent(self) -> float: ...


def ip_utilisation_by_zone(caller: Caller, zone_uuids: list[str]) -> dict[str, dict[str, object]]:
    """{zone uuid: {"public" | "private" | "guest": Utilisation}} for the zones asked for.

    Every zone gets all three kinds (a zone without ranges has totals of 0); counted by
    IPAM in the database, in the same read session as the zone ids' uuids.
    """
    if not zone_uuids:
        return {}
    with caller.db.read() as session:
        uuids = dict(
            session.exec(select(Zone.id, Zone.uuid).where(col(Zone.uuid).in_(zone_uuids))).all()
        )
        by_id = zone_ip_utilisation(session)
    return {uuids[zone_id]: dict(kinds) for zone_id, kinds in by_id.items() if zone_id in uuids}


@dataclass(frozen=True)
class ZoneCapacity:
    uuid: str
    name: str
    network_type: str
    allocation_state: str
    hosts: int
    hosts_up: int
    cpu_mhz: Figure
    memory_bytes: Figure
    primary_used_bytes: Figure
    primary_allocated_bytes: Figure
    secondary_bytes: Figure
    # {"public" | "private" | "guest": Utilisation}; None until IPAM reports the zone.
    ip_utilisation: dict[str, Utilisation] | None = None


@dataclass(frozen=True)
class HostProblem:
    uuid: str
    name: str
    zone: str
    cluster: str
    status: str
    resource_state: str


@dataclass(frozen=True)
class OverThreshold:
    """A cluster or pool past a disable threshold: new VMs or volumes skip it."""

    kind: str  # "cluster" or "pool"
    uuid: str
    name: str
    zone: str
    measure: str  # "CPU", "memory" (clusters); "used", "allocated" (pools)
    percent: float
    threshold_percent: float


@dataclass(frozen=True)
class JobLine:
    uuid: str
    job_type: str
    resource_type: str
    resource_uuid: str | None
    resource_name: str
    state: str
    progress: int
    progress_message: str
    error: str | None
    username: str
    created: datetime
    finished: datetime | None


@dataclass(frozen=True)
class EventLine:
    uuid: str
    created: datetime
    username: str
    event_type: str
    level: str
    state: str
    resource_type: str
    resource_name: str
    description: str


@dataclass(frozen=True)
class Dashboard:
    zones: list[ZoneCapacity]
    hosts_not_up: list[HostProblem]
    hosts_not_up_total: int
    over_threshold: list[OverThreshold]
    running_jobs: list[JobLine]
    running_jobs_total: int
    recent_jobs: list[JobLine]
    events: list[EventLine]
    hosts_total: int = field(default=0)


def dashboard(caller: Caller) -> Dashboard:
    """Everything the console's first screen shows, in a handful of queries."""
    rollups = capacity_rollups(caller, "zone")
    cluster_rollups = capacity_rollups(caller, "cluster")
    with caller.db.read() as session:
        zone_rows = {z.id: z for z in session.exec(select(Zone).order_by(Zone.name, col(Zone.id)))}
        problems, problems_total = _hosts_not_up(session)
        over = _clusters_over(session, cluster_rollups) + _pools_over(session)
        running, running_total = _running_jobs(session)
        recent = _recent_jobs(session)
    ips = ip_utilisation_by_zone(caller, [r.uuid for r in rollups])
    zones = [_zone_capacity(r, zone_rows[r.id], ips.get(r.uuid)) for r in rollups]
    events = [_event_line(e) for e in list_events(caller, limit=EVENT_LIMIT)]
    return Dashboard(
        zones=zones,
        hosts_not_up=problems,
        hosts_not_up_total=problems_total,
        over_threshold=over,
        running_jobs=running,
        running_jobs_total=running_total,
        recent_jobs=recent,
        events=events,
        hosts_total=sum(z.hosts for z in zones),
    )


def _zone_capacity(rollup: CapacityRollup, zone: Zone, ips: object) -> ZoneCapacity:
    return ZoneCapacity(
        uuid=rollup.uuid,
        name=rollup.name,
        network_type=zone.network_type,
        allocation_state=zone.allocation_state,
        hosts=rollup.hosts,
        hosts_up=rollup.hosts_up,
        cpu_mhz=rollup.cpu_mhz,
        memory_bytes=rollup.memory_bytes,
        primary_used_bytes=rollup.primary_used_bytes,
        primary_allocated_bytes=rollup.primary_allocated_bytes,
        secondary_bytes=rollup.secondary_bytes,
        ip_utilisation=ips or None,  # type: ignore[arg-type]
    )


def _needs_attention():  # type: ignore[no-untyped-def]
    # Not connected, or stuck between maintenance states: either way no VM lands there.
    return or_(
        col(Host.status) != HostStatus.UP,
        col(Host.resource_state) == ResourceState.ERROR_IN_MAINTENANCE,
    )


def _hosts_not_up(session: Session) -> tuple[list[HostProblem], int]:
    total = session.exec(select(func.count()).select_from(Host).where(_needs_attention())).one()
    rows = session.exec(
        select(Host.uuid, Host.name, Zone.name, Cluster.name, Host.status, Host.resource_state)
        .join(Zone, col(Zone.id) == Host.zone_id)
        .join(Cluster, col(Cluster.id) == Host.cluster_id)
        .where(_needs_attention())
        .order_by(Zone.name, Cluster.name, Host.name, col(Host.id))
        .limit(LIST_LIMIT)
    )
    return [HostProblem(*row) for row in rows], int(total)


def _clusters_over(session: Session, rollups: list[CapacityRollup]) -> list[OverThreshold]:
    defaults = global_values(session, list(CLUSTER_THRESHOLDS.values()))
    rows = session.exec(
        select(
            Cluster.id,
            Zone.name,
            Cluster.cpu_disable_threshold,
            Cluster.mem_disable_threshold,
        ).join(Zone, col(Zone.id) == Cluster.zone_id)
    )
    clusters = {r[0]: r for r in rows}
    found = []
    for rollup in sorted(rollups, key=lambda r: (clusters[r.id][1], r.name, r.id)):
        _, zone, cpu_threshold, mem_threshold = clusters[rollup.id]
        for measure, figure, own in (
            ("CPU", rollup.cpu_mhz, cpu_threshold),
            ("memory", rollup.memory_bytes, mem_threshold),
        ):
            limit = float(own if own is not None else defaults[CLUSTER_THRESHOLDS[measure]])
            if figure.total and figure.percent > 100.0 * limit:
                found.append(
                    OverThreshold(
                        "cluster",
                        rollup.uuid,
                        rollup.name,
                        zone,
                        measure,
                        figure.percent,
                        100.0 * limit,
                    )
                )
    return found


def _pools_over(session: Session) -> list[OverThreshold]:
    defaults = global_values(session, [*POOL_THRESHOLDS.values(), STORAGE_FACTOR])
    rows = session.exec(
        select(StoragePool, Zone.name)
        .join(Zone, col(Zone.id) == StoragePool.zone_id)
        .where(StoragePool.capacity_bytes > 0, StoragePool.status != StoragePoolStatus.DISABLED)
        .order_by(Zone.name, StoragePool.name, col(StoragePool.id))
    )
    found = []
    for pool, zone in rows:
        for measure, figure, own in pool_figures(pool, defaults):
            limit = float(own if own is not None else defaults[POOL_THRESHOLDS[measure]])
            if figure.percent > 100.0 * limit:
                found.append(
                    OverThreshold(
                        "pool", pool.uuid, pool.name, zone, measure, figure.percent, 100.0 * limit
                    )
                )
    return found


def pool_figures(
    pool: StoragePool, defaults: dict[str, int | float | bool | str]
) -> list[tuple[str, Figure, float | None]]:
    """A pool's used and allocated figures, each with the pool's own threshold (or None).

    Allocated is measured against usable space: capacity x the storage overprovisioning
    factor, as `engine.capacity` does for its roll-ups.
    """
    factor = float(
        pool.overprovisioning_factor
        if pool.overprovisioning_factor is not None
        else defaults[STORAGE_FACTOR]
    )
    return [
        (
            "used",
            Figure(float(pool.capacity_bytes), float(pool.used_bytes)),
            pool.capacity_disable_threshold,
        ),
        (
            "allocated",
            Figure(float(pool.capacity_bytes) * factor, float(pool.allocated_bytes)),
            pool.allocated_disable_threshold,
        ),
    ]


def _job_line(job: Job) -> JobLine:
    return JobLine(
        uuid=job.uuid,
        job_type=job.job_type,
        resource_type=job.resource_type,
        resource_uuid=job.resource_uuid,
        resource_name=job.resource_name,
        state=job.state,
        progress=job.progress,
        progress_message=job.progress_message,
        error=job.error,
        username=job.username,
        created=job.created,
        finished=job.finished,
    )


LIVE_JOB_STATES = (JobState.PENDING, JobState.RUNNING)


def _running_jobs(session: Session) -> tuple[list[JobLine], int]:
    live = col(Job.state).in_(LIVE_JOB_STATES)
    total = session.exec(select(func.count()).select_from(Job).where(live)).one()
    jobs = session.exec(
        select(Job).where(live).order_by(col(Job.created), col(Job.id)).limit(LIST_LIMIT)
    )
    return [_job_line(j) for j in jobs], int(total)


def _recent_jobs(session: Session) -> list[JobLine]:
    jobs = session.exec(
        select(Job)
        .where(col(Job.state).not_in(LIVE_JOB_STATES))
        .order_by(col(Job.finished).desc().nulls_last(), col(Job.id).desc())
        .limit(LIST_LIMIT // 2)
    )
    return [_job_line(j) for j in jobs]


def _event_line(event: Event) -> EventLine:
    return EventLine(
        uuid=event.uuid,
        created=event.created,
        username=event.username,
        event_type=event.event_type,
        level=event.level,
        state=event.state,
        resource_type=event.resource_type,
        resource_name=event.resource_name,
        description=event.description,
    )
