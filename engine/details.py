"""Detail views of one zone, pod, cluster, host or VM: facts, capacity, what runs there.

Each service reads in one session and returns plain dataclasses; long lists (VMs, hosts)
carry their first `limit` rows in name order plus the total. Two parts come from other
layers: `live_host_metrics` (the hypervisor layer's psutil sampler, for the host this
process runs on) and `vm_nics` (IPAM's NICs joined with their guest networks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case
from sqlmodel import Session, col, func, select

from engine.capacity import CapacityRollup, Figure, capacity_rollups, zone_capacity
from engine.context import Caller
from engine.dashboard import EventLine, _event_line, pool_figures
from engine.hosts.metrics import HostSample, LocalMetrics, is_local, local_metrics
from engine.lookup import resolve
from engine.models import (
    Account,
    Cluster,
    Event,
    GuestNetwork,
    Host,
    HostStatus,
    HostTag,
    ImageStore,
    Nic,
    Pod,
    ServiceOffering,
    StoragePool,
    Template,
    VirtualMachine,
    VmState,
    Volume,
    Zone,
)
from engine.settings import effective_value, global_values

LIMIT = 25
EVENTS = 10


# --- hooks for other parts of Stratus ----------------------------------------------------


def live_host_metrics(caller: Caller, host_uuid: str) -> dict[str, float] | None:
    """The host's latest live sample by name ("CPU %", "memory %", "load 1m", "disk %").

    Only a host whose URI is this machine (`qemu:///system`) has live metrics: they come
    from the process-wide psutil sampler, started on first use. None for any other host
    (the console says it reports none); the console keeps the history for its sparklines.
    """
    sampler = _local_sampler(caller, host_uuid)
    if sampler is None:
        return None
    # The sampler thread takes its first sample right after starting; don't wait for it.
    return _named(sampler.latest() or sampler.sample())


def live_host_history(caller: Caller, host_uuid: str) -> list[dict[str, float]]:
    """The sampler's earlier samples of a local host, oldest first ([] for other hosts):
    the console starts its sparklines from them instead of from one point."""
    sampler = _local_sampler(caller, host_uuid)
    return [] if sampler is None else [_named(s) for s in sampler.history()]


def _local_sampler(caller: Caller, host_uuid: str) -> LocalMetrics | None:
    with caller.db.read() as session:
        uri = session.exec(select(Host.uri).where(Host.uuid == host_uuid)).first()
    return local_metrics() if uri is not None and is_local(uri) else None


def _named(sample: HostSample) -> dict[str, float]:
    total = sample.disk_total_bytes
    return {
        "CPU %": sample.cpu_percent,
        "memory %": sample.memory_percent,
        "load 1m": sample.load_1,
        "disk %": round(100.0 * sample.disk_used_bytes / total, 1) if total else 0.0,
    }


@dataclass(frozen=True)
class NicLine:
    device_id: int
    network: str
    mac_address: str
    ip_addresses: tuple[str, ...]
    is_default: bool = False


def vm_nics(caller: Caller, vm_uuid: str) -> list[NicLine]:
    """The VM's NICs with their networks and addresses, in creation order (device 0 first).

    Device ids are the NICs' order on the VM (IPAM keeps no device number). An empty list
    is a VM without NICs (or no such VM).
    """
    with caller.db.read() as session:
        rows = session.exec(
            select(Nic.mac, Nic.address, Nic.ip6_address, Nic.is_default, GuestNetwork.name)
            .join(GuestNetwork, col(GuestNetwork.id) == Nic.network_id)
            .join(VirtualMachine, col(VirtualMachine.id) == Nic.vm_id)
            .where(VirtualMachine.uuid == vm_uuid)
            .order_by(col(Nic.id))
        ).all()
    return [
        NicLine(
            device_id=device,
            network=network,
            mac_address=mac,
            ip_addresses=tuple(a for a in (address, ip6) if a),
            is_default=bool(is_default),
        )
        for device, (mac, address, ip6, is_default, network) in enumerate(rows)
    ]


# --- shared pieces ---------------------------------------------------------------------


@dataclass(frozen=True)
class VmLine:
    uuid: str
    name: str
    state: str
    power_state: str
    host: str | None
    cpu_count: int
    cpu_mhz: int
    memory_bytes: int


@dataclass(frozen=True)
class VmList:
    total: int
    shown: list[VmLine]


@dataclass(frozen=True)
class ChildLine:
    """A child object in a detail view: its name, state and a short summary."""

    uuid: str
    name: str
    state: str
    summary: str


@dataclass(frozen=True)
class ChildList:
    total: int
    shown: list[ChildLine]


def _live_vms() -> ColumnElement[bool]:
    return and_(
        col(VirtualMachine.removed).is_(None),
        col(VirtualMachine.state).not_in((VmState.EXPUNGED, VmState.EXPUNGING)),
    )


def _vms(session: Session, where: ColumnElement[bool], limit: int) -> VmList:
    condition = and_(_live_vms(), where)
    total = session.exec(select(func.count()).select_from(VirtualMachine).where(condition)).one()
    rows = session.exec(
        select(VirtualMachine, Host.name)
        .join(Host, col(Host.id) == VirtualMachine.host_id, isouter=True)
        .where(condition)
        .order_by(VirtualMachine.name, col(VirtualMachine.id))
        .limit(limit)
    )
    return VmList(
        int(total),
        [
            VmLine(
                vm.uuid,
                vm.name,
                vm.state,
                vm.power_state,
                host,
                vm.cpu_count,
                vm.cpu_mhz,
                vm.memory_bytes,
            )
            for vm, host in rows
        ],
    )


def _gib(value: float) -> str:
    return f"{value / 2**30:,.0f} GiB"


def _pools(session: Session, where: ColumnElement[bool], limit: int) -> ChildList:
    total = session.exec(select(func.count()).select_from(StoragePool).where(where)).one()
    defaults = global_values(
        session,
        [
            "storage.overprovisioning.factor",
            "pool.storage.capacity.disablethreshold",
            "pool.storage.allocated.capacity.disablethreshold",
        ],
    )
    shown = []
    for pool in session.exec(
        select(StoragePool)
        .where(where)
        .order_by(StoragePool.name, col(StoragePool.id))
        .limit(limit)
    ):
        (_, used, _), (_, allocated, _) = pool_figures(pool, defaults)
        shown.append(
            ChildLine(
                pool.uuid,
                pool.name,
                pool.status,
                f"{pool.scope.lower()} {pool.pool_type} {pool.path} · used {used.percent:.0f}% "
                f"of {_gib(used.total)} · allocated {allocated.percent:.0f}%",
            )
        )
    return ChildList(int(total), shown)


def _hosts(session: Session, where: ColumnElement[bool], limit: int) -> ChildList:
    total = session.exec(select(func.count()).select_from(Host).where(where)).one()
    shown = [
        ChildLine(
            h.uuid,
            h.name,
            h.status,
            f"{h.resource_state} · {h.cpu_cores} cores x {h.cpu_mhz} MHz · "
            f"{_gib(h.memory_bytes)}" + (f" · {h.address}" if h.address else ""),
        )
        for h in session.exec(
            select(Host).where(where).order_by(Host.name, col(Host.id)).limit(limit)
        )
    ]
    return ChildList(int(total), shown)


def _name(session: Session, model: type, row_id: int | None) -> str | None:
    if row_id is None:
        return None
    return session.exec(select(model.name).where(model.id == row_id)).first()  # type: ignore[attr-defined]


def _is_up():  # type: ignore[no-untyped-def]
    return case((col(Host.status) == HostStatus.UP, 1), else_=0)


def _host_counts(session: Session, where: ColumnElement[bool]) -> tuple[int, int]:
    total, up = session.exec(
        select(
            func.count(),
            func.coalesce(func.sum(_is_up()), 0),
        ).where(where)
    ).one()
    return int(total), int(up)


# --- zone ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneDetail:
    zone: Zone
    capacity: CapacityRollup
    pods: ChildList
    clusters: int
    hosts: int
    hosts_up: int
    pools: ChildList
    image_stores: ChildList
    vms: VmList


def zone_detail(caller: Caller, zone_ref: str, *, limit: int = LIMIT) -> ZoneDetail:
    capacity = zone_capacity(caller, zone_ref)
    with caller.db.read() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        pods_total = session.exec(
            select(func.count()).select_from(Pod).where(Pod.zone_id == zone.id)
        ).one()
        pods = [
            ChildLine(p.uuid, p.name, p.allocation_state, f"{p.cidr} · gateway {p.gateway}")
            for p in session.exec(
                select(Pod)
                .where(Pod.zone_id == zone.id)
                .order_by(Pod.name, col(Pod.id))
                .limit(limit)
            )
        ]
        clusters = session.exec(
            select(func.count()).select_from(Cluster).where(Cluster.zone_id == zone.id)
        ).one()
        hosts, up = _host_counts(session, col(Host.zone_id) == zone.id)
        stores = [
            ChildLine(
                s.uuid,
                s.name,
                "ReadOnly" if s.read_only else "Ready",
                f"{s.url} · {_gib(s.used_bytes)} of {_gib(s.capacity_bytes)}",
            )
            for s in session.exec(
                select(ImageStore)
                .where(ImageStore.zone_id == zone.id)
                .order_by(ImageStore.name, col(ImageStore.id))
            )
        ]
        return ZoneDetail(
            zone=zone,
            capacity=capacity,
            pods=ChildList(int(pods_total), pods),
            clusters=int(clusters),
            hosts=hosts,
            hosts_up=up,
            pools=_pools(session, col(StoragePool.zone_id) == zone.id, limit),
            image_stores=ChildList(len(stores), stores),
            vms=_vms(session, col(VirtualMachine.zone_id) == zone.id, limit),
        )


# --- pod -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodDetail:
    pod: Pod
    zone_name: str
    capacity: CapacityRollup
    clusters: ChildList
    hosts: int
    hosts_up: int
    vms: VmList


def pod_detail(caller: Caller, pod_ref: str, *, limit: int = LIMIT) -> PodDetail:
    pod = resolve_in(caller, Pod, pod_ref, "pod")
    capacity = next(
        r
        for r in capacity_rollups(caller, "pod", within_ref=_zone_uuid(caller, pod.zone_id))
        if r.id == pod.id
    )
    with caller.db.read() as session:
        counts = {
            cid: (int(t), int(u))
            for cid, t, u in session.exec(
                select(
                    Host.cluster_id,
                    func.count(),
                    func.sum(_is_up()),
                )
                .where(Host.pod_id == pod.id)
                .group_by(Host.cluster_id)
            )
        }
        total = session.exec(
            select(func.count()).select_from(Cluster).where(Cluster.pod_id == pod.id)
        ).one()
        clusters = []
        for c in session.exec(
            select(Cluster)
            .where(Cluster.pod_id == pod.id)
            .order_by(Cluster.name, col(Cluster.id))
            .limit(limit)
        ):
            t, u = counts.get(c.id or 0, (0, 0))
            clusters.append(ChildLine(c.uuid, c.name, c.allocation_state, f"{t} hosts, {u} Up"))
        hosts, up = _host_counts(session, col(Host.pod_id) == pod.id)
        return PodDetail(
            pod=pod,
            zone_name=_name(session, Zone, pod.zone_id) or "?",
            capacity=capacity,
            clusters=ChildList(int(total), clusters),
            hosts=hosts,
            hosts_up=up,
            vms=_vms(session, col(VirtualMachine.pod_id) == pod.id, limit),
        )


def resolve_in(caller: Caller, model: type, ref: str, kind: str):  # type: ignore[no-untyped-def]
    with caller.db.read() as session:
        return resolve(session, model, ref, kind, field=kind)


def _zone_uuid(caller: Caller, zone_id: int) -> str:
    with caller.db.read() as session:
        return session.exec(select(Zone.uuid).where(Zone.id == zone_id)).one()


# --- cluster ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tunable:
    """A cluster or pool setting: the value in force and whether the object sets it."""

    label: str
    value: float
    own: bool


@dataclass(frozen=True)
class ClusterDetail:
    cluster: Cluster
    zone_name: str
    pod_name: str
    capacity: CapacityRollup
    tunables: list[Tunable]
    hosts: ChildList
    hosts_up: int
    pools: ChildList
    vms: VmList


CLUSTER_SETTINGS = [
    ("CPU overprovisioning factor", "cpu_overprovisioning_factor", "cpu.overprovisioning.factor"),
    (
        "memory overprovisioning factor",
        "mem_overprovisioning_factor",
        "mem.overprovisioning.factor",
    ),
    (
        "CPU disable threshold",
        "cpu_disable_threshold",
        "cluster.cpu.allocated.capacity.disablethreshold",
    ),
    (
        "memory disable threshold",
        "mem_disable_threshold",
        "cluster.memory.allocated.capacity.disablethreshold",
    ),
]


def cluster_detail(caller: Caller, cluster_ref: str, *, limit: int = LIMIT) -> ClusterDetail:
    cluster = resolve_in(caller, Cluster, cluster_ref, "cluster")
    with caller.db.read() as session:
        pod_uuid = session.exec(select(Pod.uuid).where(Pod.id == cluster.pod_id)).one()
    capacity = next(
        r for r in capacity_rollups(caller, "cluster", within_ref=pod_uuid) if r.id == cluster.id
    )
    with caller.db.read() as session:
        defaults = global_values(session, [s for _, _, s in CLUSTER_SETTINGS])
        tunables = [
            Tunable(
                label,
                float(
                    getattr(cluster, column)
                    if getattr(cluster, column) is not None
                    else defaults[setting]
                ),
                getattr(cluster, column) is not None,
            )
            for label, column, setting in CLUSTER_SETTINGS
        ]
        _, up = _host_counts(session, col(Host.cluster_id) == cluster.id)
        return ClusterDetail(
            cluster=cluster,
            zone_name=_name(session, Zone, cluster.zone_id) or "?",
            pod_name=_name(session, Pod, cluster.pod_id) or "?",
            capacity=capacity,
            tunables=tunables,
            hosts=_hosts(session, col(Host.cluster_id) == cluster.id, limit),
            hosts_up=up,
            pools=_pools(session, col(StoragePool.cluster_id) == cluster.id, limit),
            vms=_vms(session, col(VirtualMachine.cluster_id) == cluster.id, limit),
        )


# --- host ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostDetail:
    host: Host
    zone_name: str
    pod_name: str
    cluster_name: str
    tags: list[str]
    cpu_mhz: Figure  # total includes the cluster's CPU overprovisioning factor
    memory_bytes: Figure  # total includes the memory overprovisioning factor
    cpu_factor: float
    memory_factor: float
    vms: VmList


def host_detail(caller: Caller, host_ref: str, *, limit: int = LIMIT) -> HostDetail:
    with caller.db.read() as session:
        host = resolve(session, Host, host_ref, "host", field="host")
        cluster = session.get(Cluster, host.cluster_id)
        cpu_factor = float(
            effective_value(
                session, "cpu.overprovisioning.factor", scope_type="cluster", scope_obj=cluster
            )
        )
        mem_factor = float(
            effective_value(
                session, "mem.overprovisioning.factor", scope_type="cluster", scope_obj=cluster
            )
        )
        tags = list(
            session.exec(
                select(HostTag.tag).where(HostTag.host_id == host.id).order_by(HostTag.tag)
            )
        )
        return HostDetail(
            host=host,
            zone_name=_name(session, Zone, host.zone_id) or "?",
            pod_name=_name(session, Pod, host.pod_id) or "?",
            cluster_name=cluster.name if cluster else "?",
            tags=tags,
            cpu_mhz=Figure(
                float(host.cpu_cores * host.cpu_mhz) * cpu_factor,
                float(host.cpu_used_mhz),
                float(host.cpu_reserved_mhz),
            ),
            memory_bytes=Figure(
                float(host.memory_bytes) * mem_factor,
                float(host.memory_used_bytes),
                float(host.memory_reserved_bytes),
            ),
            cpu_factor=cpu_factor,
            memory_factor=mem_factor,
            vms=_vms(session, col(VirtualMachine.host_id) == host.id, limit),
        )


# --- VM --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeLine:
    uuid: str
    name: str
    volume_type: str
    device_id: int | None
    size_bytes: int
    state: str
    pool: str | None


@dataclass(frozen=True)
class VmDetail:
    vm: VirtualMachine
    account: str | None
    zone_name: str
    pod_name: str | None
    cluster_name: str | None
    host_name: str | None
    last_host_name: str | None
    offering: str | None
    template: str | None
    volumes: list[VolumeLine]
    events: list[EventLine]
    # An empty list is a VM without NICs (None: no address information, "n/a").
    nics: list[NicLine] | None
    created: datetime | None = None
    iso: str | None = None  # the ISO in the VM's CD-ROM drive


def vm_detail(caller: Caller, vm_ref: str, *, events: int = EVENTS) -> VmDetail:
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        volumes = [
            VolumeLine(v.uuid, v.name, v.volume_type, v.device_id, v.size_bytes, v.state, pool)
            for v, pool in session.exec(
                select(Volume, StoragePool.name)
                .join(StoragePool, col(StoragePool.id) == Volume.pool_id, isouter=True)
                .where(Volume.vm_id == vm.id, col(Volume.removed).is_(None))
                .order_by(col(Volume.device_id).nulls_last(), Volume.name, col(Volume.id))
            )
        ]
        recent = [
            _event_line(e)
            for e in session.exec(
                select(Event)
                .where(Event.resource_uuid == vm.uuid)
                .order_by(col(Event.id).desc())
                .limit(events)
            )
        ]
        detail = VmDetail(
            vm=vm,
            account=_name(session, Account, vm.account_id),
            zone_name=_name(session, Zone, vm.zone_id) or "?",
            pod_name=_name(session, Pod, vm.pod_id),
            cluster_name=_name(session, Cluster, vm.cluster_id),
            host_name=_name(session, Host, vm.host_id),
            last_host_name=_name(session, Host, vm.last_host_id),
            offering=_name(session, ServiceOffering, vm.service_offering_id),
            template=_name(session, Template, vm.template_id),
            volumes=volumes,
            events=recent,
            nics=None,
            created=vm.created,
            iso=_name(session, Template, vm.iso_id),
        )
    return VmDetail(**{**detail.__dict__, "nics": vm_nics(caller, vm.uuid)})
