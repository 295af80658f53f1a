"""Zones, pods, clusters, hosts, primary storage and image stores.

Every service takes the acting `Caller`, validates everything before it writes, runs in
one transaction and records an audit event there. A reference to an object (`*_ref`) is
its UUID, or its name where that is unambiguous (zone names are unique; a pod name is
unique in its zone, and so on).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, delete, func, insert, update
from sqlmodel import Session, SQLModel, col, select

from engine.context import Caller
from engine.errors import AlreadyExists, InUse, InvalidParameter, StateConflict
from engine.events import record_event
from engine.ipam.references import check_pod_management_range, zone_ipam_children
from engine.lookup import apply_rename, ensure_unique_name, reject_unknown_fields, resolve
from engine.models import (
    AllocationState,
    Cluster,
    Host,
    HostStatus,
    HostTag,
    Hypervisor,
    ImageStore,
    NetworkType,
    Pod,
    ResourceState,
    StoragePool,
    StoragePoolStatus,
    StoragePoolTag,
    StorageScope,
    VirtualMachine,
    VmState,
    Zone,
    new_uuid,
)
from engine.settings import delete_overrides
from engine.validation import (
    check_count,
    check_factor,
    check_name,
    check_tags,
    check_text,
    check_threshold,
    parse_cidr,
    parse_host_uri,
    parse_ip,
    parse_ipv4,
    parse_netmask,
)

POOL_TYPES = ("dir", "nfs")
RFC1918 = tuple(
    ipaddress.IPv4Network(block) for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
# Prefix lengths a pod network may have: /8 is a whole datacenter, /30 leaves 2 addresses.
POD_PREFIX_RANGE = (8, 30)


# --- lookups ---------------------------------------------------------------------------


def _refuse_children(label: str, children: list[tuple[str, tuple[int, list[str]]]]) -> None:
    """Raise InUse naming every kind of child still present."""
    parts = []
    for kind, (total, names) in children:
        if total:
            shown = ", ".join(f"'{n}'" for n in names)
            more = f" and {total - len(names)} more" if total > len(names) else ""
            parts.append(f"{total} {kind}{'' if total == 1 else 's'} ({shown}{more})")
    if parts:
        listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
        raise InUse(f"{label} still has {listed}: delete or move them first")


def _child_names(
    session: Session, model: type[SQLModel], where: Any, shown: int = 5
) -> tuple[int, list[str]]:
    """How many children match, and the first few names for the message."""
    total = session.exec(select(func.count()).select_from(model).where(where)).one()
    names = session.exec(select(model.name).where(where).order_by(model.name).limit(shown))  # type: ignore[attr-defined]
    return total, list(names)


def _names(rows: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(f"'{r}'" for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _allocation(label: str, enabled: bool | str) -> str:
    if isinstance(enabled, bool):
        return AllocationState.ENABLED if enabled else AllocationState.DISABLED
    try:
        return AllocationState(enabled)
    except ValueError:
        raise InvalidParameter(
            f"{label}: allocation state {enabled!r} is not Enabled or Disabled",
            field="allocation_state",
        ) from None


# --- zones -----------------------------------------------------------------------------


def _validate_zone_network(label: str, values: dict[str, Any]) -> None:
    try:
        values["network_type"] = NetworkType(str(values["network_type"]).capitalize())
    except ValueError:
        raise InvalidParameter(
            f"{label}: network type {values['network_type']!r} is not Basic or Advanced",
            field="network_type",
        ) from None
    for key, what in (
        ("dns1", "DNS 1"),
        ("dns2", "DNS 2"),
        ("internal_dns1", "internal DNS 1"),
        ("internal_dns2", "internal DNS 2"),
    ):
        if values.get(key):
            values[key] = str(parse_ip(label, values[key], field=key, what=what))
        else:
            values[key] = None
    if not values["dns1"]:
        raise InvalidParameter(f"{label}: DNS 1 is required", field="dns1")
    values["internal_dns1"] = values["internal_dns1"] or values["dns1"]
    if values["network_type"] == NetworkType.ADVANCED:
        cidr = parse_cidr(label, values.get("guest_cidr") or "10.1.1.0/24", field="guest_cidr")
        if not any(cidr.subnet_of(block) for block in RFC1918):
            raise InvalidParameter(
                f"{label}: guest CIDR {cidr} is not a private (RFC 1918) network",
                field="guest_cidr",
            )
        values["guest_cidr"] = str(cidr)
    elif values.get("guest_cidr"):
        raise InvalidParameter(
            f"{label}: a Basic zone has no guest CIDR (guest ranges are set per pod)",
            field="guest_cidr",
        )
    else:
        values["guest_cidr"] = None
    if values.get("network_domain"):
        values["network_domain"] = check_text(
            label, values["network_domain"], field="network_domain", limit=255
        )


def create_zone(
    caller: Caller,
    name: str,
    *,
    dns1: str,
    network_type: str = NetworkType.ADVANCED,
    dns2: str | None = None,
    internal_dns1: str | None = None,
    internal_dns2: str | None = None,
    guest_cidr: str | None = None,
    network_domain: str | None = None,
    description: str = "",
    enabled: bool = True,
) -> Zone:
    label = f"zone '{name}'"
    name = check_name(label, name)
    label = f"zone '{name}'"
    values: dict[str, Any] = {
        "network_type": network_type,
        "dns1": dns1,
        "dns2": dns2,
        "internal_dns1": internal_dns1,
        "internal_dns2": internal_dns2,
        "guest_cidr": guest_cidr,
        "network_domain": network_domain,
    }
    _validate_zone_network(label, values)
    description = check_text(label, description, field="description")
    with caller.db.write() as session:
        ensure_unique_name(session, Zone, label, name)
        zone = Zone(
            name=name,
            description=description,
            allocation_state=_allocation(label, enabled),
            **values,
        )
        session.add(zone)
        session.flush()
        record_event(
            session, caller, "ZONE.CREATE", "Zone", zone, f"created {values['network_type']} zone"
        )
    return zone


ZONE_FIELDS = {
    "name",
    "description",
    "dns1",
    "dns2",
    "internal_dns1",
    "internal_dns2",
    "guest_cidr",
    "network_domain",
    "network_type",
}


def update_zone(caller: Caller, zone_ref: str, **changes: Any) -> Zone:
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        label = f"zone '{zone.name}'"
        reject_unknown_fields(label, changes, ZONE_FIELDS)
        values = {k: getattr(zone, k) for k in ZONE_FIELDS} | changes
        values["name"] = check_name(label, values["name"])
        values["description"] = check_text(label, values["description"], field="description")
        if values["name"] != zone.name:
            ensure_unique_name(session, Zone, label, values["name"])
        retyped = str(changes.get("network_type", zone.network_type)).capitalize()
        if retyped != zone.network_type:
            has_pods = session.exec(select(Pod.id).where(Pod.zone_id == zone.id).limit(1)).first()
            if has_pods is not None:
                raise InvalidParameter(
                    f"{label}: the network type cannot change while the zone has pods",
                    field="network_type",
                )
        if retyped == NetworkType.BASIC and "guest_cidr" not in changes:
            values["guest_cidr"] = None
        _validate_zone_network(label, values)
        for key, value in values.items():
            setattr(zone, key, value)
        session.add(zone)
        record_event(session, caller, "ZONE.EDIT", "Zone", zone, f"changed {_fields(changes)}")
    return zone


def _fields(changes: dict[str, Any]) -> str:
    return ", ".join(sorted(changes)) or "nothing"


def get_zone(caller: Caller, zone_ref: str) -> Zone:
    with caller.db.read() as session:
        return resolve(session, Zone, zone_ref, "zone", field="zone")


def list_zones(caller: Caller) -> list[Zone]:
    with caller.db.read() as session:
        return list(session.exec(select(Zone).order_by(Zone.name)))


def delete_zone(caller: Caller, zone_ref: str) -> None:
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        _refuse_children(
            f"zone '{zone.name}'",
            [
                ("pod", _child_names(session, Pod, Pod.zone_id == zone.id)),
                ("image store", _child_names(session, ImageStore, ImageStore.zone_id == zone.id)),
                (
                    "zone-wide primary storage pool",
                    _child_names(
                        session,
                        StoragePool,
                        (StoragePool.zone_id == zone.id) & (StoragePool.scope == StorageScope.ZONE),
                    ),
                ),
                *zone_ipam_children(session, zone.id),  # type: ignore[arg-type]
            ],
        )
        delete_overrides(session, "zone", zone.id)  # type: ignore[arg-type]
        session.delete(zone)
        record_event(session, caller, "ZONE.DELETE", "Zone", zone, "deleted zone")


# --- pods ------------------------------------------------------------------------------


@dataclass
class _PodNetwork:
    gateway: str
    netmask: str
    cidr: str
    start_ip: str
    end_ip: str


def _validate_pod_network(
    session: Session,
    label: str,
    zone: Zone,
    gateway: str,
    netmask: str | None,
    start_ip: str,
    end_ip: str | None,
    *,
    cidr: str | None = None,
    exclude_pod_id: int | None = None,
) -> _PodNetwork:
    gw = parse_ipv4(label, gateway, field="gateway", what="gateway")
    if cidr:
        network = parse_cidr(label, cidr, field="cidr")
        if netmask and parse_netmask(label, netmask) != network.prefixlen:
            raise InvalidParameter(
                f"{label}: netmask {netmask} does not match CIDR {network}", field="netmask"
            )
        if gw not in network:
            raise InvalidParameter(f"{label}: gateway {gw} is outside {network}", field="gateway")
        prefix = network.prefixlen
    elif netmask:
        prefix = parse_netmask(label, netmask)
        network = ipaddress.IPv4Network(f"{gw}/{prefix}", strict=False)
    else:
        raise InvalidParameter(f"{label}: a netmask or a CIDR is required", field="netmask")
    low, high = POD_PREFIX_RANGE
    if not low <= prefix <= high:
        raise InvalidParameter(
            f"{label}: netmask /{prefix} is outside /{low}../{high}", field="netmask"
        )
    if gw in (network.network_address, network.broadcast_address):
        raise InvalidParameter(
            f"{label}: gateway {gw} is the network or broadcast address of {network}",
            field="gateway",
        )
    start = parse_ipv4(label, start_ip, field="start_ip", what="management range start")
    end = parse_ipv4(label, end_ip or start_ip, field="end_ip", what="management range end")
    if start > end:
        raise InvalidParameter(
            f"{label}: management range start {start} is after its end {end}", field="end_ip"
        )
    for addr, fld in ((start, "start_ip"), (end, "end_ip")):
        if addr not in network:
            raise InvalidParameter(
                f"{label}: management range {start}-{end} is outside the pod network {network}",
                field=fld,
            )
        if addr in (network.network_address, network.broadcast_address):
            raise InvalidParameter(
                f"{label}: management range {start}-{end} includes the network or broadcast "
                f"address of {network}",
                field=fld,
            )
    if start <= gw <= end:
        raise InvalidParameter(
            f"{label}: gateway {gw} is inside the management range {start}-{end}",
            field="gateway",
        )
    others = session.exec(select(Pod).where(Pod.zone_id == zone.id).order_by(Pod.name))
    for other in others:
        if other.id == exclude_pod_id:
            continue
        other_net = ipaddress.IPv4Network(other.cidr)
        o_start = ipaddress.IPv4Address(other.start_ip)
        o_end = ipaddress.IPv4Address(other.end_ip)
        if start <= o_end and o_start <= end:
            raise InvalidParameter(
                f"{label}: management range {start}-{end} overlaps pod '{other.name}' "
                f"range {o_start}-{o_end} in zone '{zone.name}'",
                field="start_ip",
            )
        if network.overlaps(other_net):
            raise InvalidParameter(
                f"{label}: network {network} overlaps pod '{other.name}' network {other_net} "
                f"in zone '{zone.name}' (pods of a zone need distinct CIDRs)",
                field="cidr" if cidr else "netmask",
            )
    # Public, shared-guest and isolated ranges of the zone live in IPAM.
    check_pod_management_range(session, label, zone, str(start), str(end), str(gw))
    return _PodNetwork(
        gateway=str(gw),
        netmask=str(network.netmask),
        cidr=str(network),
        start_ip=str(start),
        end_ip=str(end),
    )


def create_pod(
    caller: Caller,
    zone_ref: str,
    name: str,
    *,
    gateway: str,
    start_ip: str,
    netmask: str | None = None,
    end_ip: str | None = None,
    cidr: str | None = None,
    enabled: bool = True,
) -> Pod:
    """A pod's network is `cidr`, or the gateway's network under `netmask`."""
    name = check_name(f"pod '{name}'", name)
    label = f"pod '{name}'"
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        ensure_unique_name(session, Pod, f"{label} in zone '{zone.name}'", name, zone_id=zone.id)
        net = _validate_pod_network(
            session, label, zone, gateway, netmask, start_ip, end_ip, cidr=cidr
        )
        pod = Pod(
            zone_id=zone.id,  # type: ignore[arg-type]
            name=name,
            allocation_state=_allocation(label, enabled),
            **net.__dict__,
        )
        session.add(pod)
        session.flush()
        record_event(
            session,
            caller,
            "POD.CREATE",
            "Pod",
            pod,
            f"created pod {net.cidr} in zone '{zone.name}', management {net.start_ip}-{net.end_ip}",
        )
    return pod


POD_FIELDS = {"name", "gateway", "netmask", "cidr", "start_ip", "end_ip"}


def update_pod(caller: Caller, pod_ref: str, **changes: Any) -> Pod:
    with caller.db.write() as session:
        pod = resolve(session, Pod, pod_ref, "pod", field="pod")
        zone = session.get(Zone, pod.zone_id)
        assert zone is not None
        label = f"pod '{pod.name}'"
        reject_unknown_fields(label, changes, POD_FIELDS)
        name = check_name(label, changes.get("name", pod.name))
        if name != pod.name:
            ensure_unique_name(
                session, Pod, f"{label} in zone '{zone.name}'", name, zone_id=zone.id
            )
        net = _validate_pod_network(
            session,
            label,
            zone,
            changes.get("gateway", pod.gateway),
            changes.get("netmask", None if "cidr" in changes else pod.netmask),
            changes.get("start_ip", pod.start_ip),
            changes.get("end_ip", pod.end_ip),
            cidr=changes.get("cidr"),
            exclude_pod_id=pod.id,
        )
        stranded = [
            f"{h.name} ({h.address})"
            for h in session.exec(
                select(Host).where(Host.pod_id == pod.id, col(Host.address).is_not(None))
            )
            if ipaddress.ip_address(h.address or "0.0.0.0") not in ipaddress.ip_network(net.cidr)
        ]
        if stranded:
            raise InvalidParameter(
                f"{label}: network {net.cidr} would leave hosts outside it: {_names(stranded)}",
                field="cidr" if "cidr" in changes else "netmask",
            )
        pod.name = name
        for key, value in net.__dict__.items():
            setattr(pod, key, value)
        session.add(pod)
        record_event(session, caller, "POD.EDIT", "Pod", pod, f"changed {_fields(changes)}")
    return pod


def list_pods(caller: Caller, zone_ref: str | None = None) -> list[Pod]:
    with caller.db.read() as session:
        query = select(Pod).order_by(Pod.name)
        if zone_ref is not None:
            zone = resolve(session, Zone, zone_ref, "zone", field="zone")
            query = query.where(Pod.zone_id == zone.id)
        return list(session.exec(query))


def get_pod(caller: Caller, pod_ref: str, zone_ref: str | None = None) -> Pod:
    with caller.db.read() as session:
        scope = {}
        within = None
        if zone_ref is not None:
            zone = resolve(session, Zone, zone_ref, "zone", field="zone")
            scope["zone_id"], within = zone.id, f"zone '{zone.name}'"
        return resolve(session, Pod, pod_ref, "pod", field="pod", within=within, **scope)


def delete_pod(caller: Caller, pod_ref: str) -> None:
    with caller.db.write() as session:
        pod = resolve(session, Pod, pod_ref, "pod", field="pod")
        _refuse_children(
            f"pod '{pod.name}'",
            [("cluster", _child_names(session, Cluster, Cluster.pod_id == pod.id))],
        )
        session.delete(pod)
        record_event(session, caller, "POD.DELETE", "Pod", pod, "deleted pod")


# --- clusters --------------------------------------------------------------------------

CLUSTER_TUNABLES = {
    "cpu_overprovisioning_factor": ("CPU overprovisioning factor", check_factor),
    "mem_overprovisioning_factor": ("memory overprovisioning factor", check_factor),
    "cpu_disable_threshold": ("CPU allocated-capacity disable threshold", check_threshold),
    "mem_disable_threshold": ("memory allocated-capacity disable threshold", check_threshold),
}


def _check_tunables(label: str, tunables: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        key: spec[key][1](label, value, field=key, what=spec[key][0])
        for key, value in tunables.items()
    }


def _check_hypervisor(label: str, hypervisor: str) -> str:
    if str(hypervisor).upper() != Hypervisor.KVM:
        raise InvalidParameter(
            f"{label}: hypervisor {hypervisor!r} is not supported (Stratus manages KVM)",
            field="hypervisor",
        )
    return Hypervisor.KVM


def create_cluster(
    caller: Caller,
    pod_ref: str,
    name: str,
    *,
    hypervisor: str = Hypervisor.KVM,
    cpu_overprovisioning_factor: float | None = None,
    mem_overprovisioning_factor: float | None = None,
    cpu_disable_threshold: float | None = None,
    mem_disable_threshold: float | None = None,
    enabled: bool = True,
    zone_ref: str | None = None,
) -> Cluster:
    name = check_name(f"cluster '{name}'", name)
    label = f"cluster '{name}'"
    tunables = _check_tunables(
        label,
        {
            "cpu_overprovisioning_factor": cpu_overprovisioning_factor,
            "mem_overprovisioning_factor": mem_overprovisioning_factor,
            "cpu_disable_threshold": cpu_disable_threshold,
            "mem_disable_threshold": mem_disable_threshold,
        },
        CLUSTER_TUNABLES,
    )
    hypervisor = _check_hypervisor(label, hypervisor)
    with caller.db.write() as session:
        scope = {}
        within = None
        if zone_ref is not None:
            zone = resolve(session, Zone, zone_ref, "zone", field="zone")
            scope["zone_id"], within = zone.id, f"zone '{zone.name}'"
        pod = resolve(session, Pod, pod_ref, "pod", field="pod", within=within, **scope)
        ensure_unique_name(session, Cluster, f"{label} in pod '{pod.name}'", name, pod_id=pod.id)
        cluster = Cluster(
            zone_id=pod.zone_id,
            pod_id=pod.id,  # type: ignore[arg-type]
            name=name,
            hypervisor=hypervisor,
            allocation_state=_allocation(label, enabled),
            **tunables,
        )
        session.add(cluster)
        session.flush()
        record_event(
            session,
            caller,
            "CLUSTER.CREATE",
            "Cluster",
            cluster,
            f"created {hypervisor} cluster in pod '{pod.name}'",
        )
    return cluster


def update_cluster(caller: Caller, cluster_ref: str, **changes: Any) -> Cluster:
    with caller.db.write() as session:
        cluster = resolve(session, Cluster, cluster_ref, "cluster", field="cluster")
        label = f"cluster '{cluster.name}'"
        reject_unknown_fields(label, changes, {"name", *CLUSTER_TUNABLES})
        tunables = _check_tunables(
            label, {k: v for k, v in changes.items() if k in CLUSTER_TUNABLES}, CLUSTER_TUNABLES
        )
        apply_rename(session, cluster, label, changes, pod_id=cluster.pod_id)
        for key, value in tunables.items():
            setattr(cluster, key, value)
        session.add(cluster)
        record_event(
            session, caller, "CLUSTER.EDIT", "Cluster", cluster, f"changed {_fields(changes)}"
        )
    return cluster


def list_clusters(
    caller: Caller, *, pod_ref: str | None = None, zone_ref: str | None = None
) -> list[Cluster]:
    with caller.db.read() as session:
        query = select(Cluster).order_by(Cluster.name)
        if zone_ref is not None:
            zone = resolve(session, Zone, zone_ref, "zone", field="zone")
            query = query.where(Cluster.zone_id == zone.id)
        if pod_ref is not None:
            pod = resolve(session, Pod, pod_ref, "pod", field="pod")
            query = query.where(Cluster.pod_id == pod.id)
        return list(session.exec(query))


def get_cluster(caller: Caller, cluster_ref: str) -> Cluster:
    with caller.db.read() as session:
        return resolve(session, Cluster, cluster_ref, "cluster", field="cluster")


def get_cluster_and_zone(caller: Caller, cluster_ref: str) -> tuple[Cluster, Zone]:
    """A cluster and the zone it belongs to, in one read."""
    with caller.db.read() as session:
        cluster = resolve(session, Cluster, cluster_ref, "cluster", field="cluster")
        zone = session.get(Zone, cluster.zone_id)
        assert zone is not None  # foreign key
        return cluster, zone


def delete_cluster(caller: Caller, cluster_ref: str) -> None:
    with caller.db.write() as session:
        cluster = resolve(session, Cluster, cluster_ref, "cluster", field="cluster")
        _refuse_children(
            f"cluster '{cluster.name}'",
            [
                ("host", _child_names(session, Host, Host.cluster_id == cluster.id)),
                (
                    "primary storage pool",
                    _child_names(session, StoragePool, StoragePool.cluster_id == cluster.id),
                ),
            ],
        )
        delete_overrides(session, "cluster", cluster.id)  # type: ignore[arg-type]
        session.delete(cluster)
        record_event(session, caller, "CLUSTER.DELETE", "Cluster", cluster, "deleted cluster")


# --- hosts -----------------------------------------------------------------------------


@dataclass
class HostSpec:
    """What is known of a host when it is added (discovery fills these from libvirt)."""

    name: str
    uri: str
    cpu_cores: int
    cpu_mhz: int
    memory_bytes: int
    cpu_sockets: int = 1
    address: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)
    cpu_model: str | None = None
    hostname: str | None = None
    hypervisor_version: str | None = None
    libvirt_version: str | None = None
    status: str = HostStatus.UP
    enabled: bool = True


def _check_host_address(label: str, address: str, pod: Pod) -> str:
    """A management address: inside the pod network, not its network, broadcast or gateway."""
    ip = parse_ipv4(label, address, field="address", what="address")
    network = ipaddress.IPv4Network(pod.cidr)
    if ip not in network:
        raise InvalidParameter(
            f"{label}: address {ip} is outside its pod network {network}", field="address"
        )
    if ip in (network.network_address, network.broadcast_address):
        raise InvalidParameter(
            f"{label}: address {ip} is the network or broadcast address of {network}",
            field="address",
        )
    if str(ip) == pod.gateway:
        raise InvalidParameter(
            f"{label}: address {ip} is the gateway of pod '{pod.name}'", field="address"
        )
    return str(ip)


def _host_row(spec: HostSpec, cluster: Cluster, pod: Pod) -> tuple[dict[str, Any], list[str]]:
    label = f"host '{spec.name}'"
    name = check_name(label, spec.name)
    label = f"host '{name}'"
    uri = parse_host_uri(label, spec.uri)
    address = _check_host_address(label, spec.address, pod) if spec.address else None
    try:
        status = HostStatus(spec.status)
    except ValueError:
        raise InvalidParameter(
            f"{label}: status {spec.status!r} is not a host status", field="status"
        ) from None
    row = {
        "zone_id": cluster.zone_id,
        "pod_id": cluster.pod_id,
        "cluster_id": cluster.id,
        "name": name,
        "uri": uri,
        "address": address,
        "hypervisor": cluster.hypervisor,
        "hypervisor_version": spec.hypervisor_version,
        "libvirt_version": spec.libvirt_version,
        "hostname": spec.hostname,
        "cpu_model": spec.cpu_model,
        "cpu_sockets": check_count(
            label, spec.cpu_sockets, field="cpu_sockets", what="CPU sockets"
        ),
        "cpu_cores": check_count(label, spec.cpu_cores, field="cpu_cores", what="CPU cores"),
        "cpu_mhz": check_count(label, spec.cpu_mhz, field="cpu_mhz", what="CPU speed (MHz)"),
        "memory_bytes": check_count(
            label, spec.memory_bytes, field="memory_bytes", what="memory (bytes)"
        ),
        "status": status,
        "resource_state": ResourceState.ENABLED if spec.enabled else ResourceState.DISABLED,
    }
    if row["cpu_cores"] < row["cpu_sockets"]:
        raise InvalidParameter(
            f"{label}: {row['cpu_cores']} cores cannot fill {row['cpu_sockets']} sockets",
            field="cpu_cores",
        )
    return row, check_tags(label, spec.tags)


def add_hosts(caller: Caller, cluster_ref: str, specs: Sequence[HostSpec]) -> list[str]:
    """Add many hosts to one cluster in one transaction: all of them, or none.

    Returns the new hosts' UUIDs in the order of `specs`. The rows go in as one
    executemany (no RETURNING, no ORM objects): 10,000 hosts take a fraction of a second.
    """
    if not specs:
        return []
    with caller.db.write() as session:
        cluster = resolve(session, Cluster, cluster_ref, "cluster", field="cluster")
        pod = session.get(Pod, cluster.pod_id)
        assert pod is not None
        rows, tags = [], []
        for spec in specs:
            row, host_tags = _host_row(spec, cluster, pod)
            row["uuid"] = new_uuid()
            rows.append(row)
            tags.append(host_tags)
        _check_hosts_unique(session, cluster, rows)
        session.execute(insert(Host.__table__), rows)  # type: ignore[attr-defined]
        tagged = {row["uuid"]: t for row, t in zip(rows, tags, strict=True) if t}
        if tagged:
            ids = _ids_by_uuid(session, list(tagged))
            session.execute(
                insert(HostTag.__table__),  # type: ignore[attr-defined]
                [
                    {"host_id": ids[u], "tag": tag}
                    for u, host_tags in tagged.items()
                    for tag in host_tags
                ],
            )
        if len(rows) == 1:
            host = session.exec(select(Host).where(Host.uuid == rows[0]["uuid"])).one()
            description = f"added host {rows[0]['uri']} to cluster '{cluster.name}'"
            record_event(session, caller, "HOST.ADD", "Host", host, description)
        else:
            description = f"added {len(rows)} hosts to cluster '{cluster.name}'"
            record_event(session, caller, "HOST.ADD", "Cluster", cluster, description)
        return [row["uuid"] for row in rows]


def _ids_by_uuid(session: Session, uuids: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(uuids, 500):
        ids.update(
            (u, i)
            for u, i in session.exec(select(Host.uuid, Host.id).where(col(Host.uuid).in_(chunk)))
        )
    return ids


def _check_hosts_unique(session: Session, cluster: Cluster, rows: list[dict[str, Any]]) -> None:
    seen_names: set[str] = set()
    seen_uris: set[str] = set()
    seen_addresses: set[str] = set()
    for row in rows:
        if row["name"] in seen_names:
            raise AlreadyExists(f"host '{row['name']}': the name is given twice", field="name")
        if row["uri"] in seen_uris:
            raise AlreadyExists(
                f"host '{row['name']}': URI {row['uri']} is given twice", field="uri"
            )
        if row["address"] is not None and row["address"] in seen_addresses:
            raise AlreadyExists(
                f"host '{row['name']}': address {row['address']} is given twice", field="address"
            )
        seen_names.add(row["name"])
        seen_uris.add(row["uri"])
        if row["address"] is not None:
            seen_addresses.add(row["address"])
    for chunk in _chunks(sorted(seen_addresses), 500):
        holder = session.exec(
            select(Host.name, Host.address)
            .where(Host.pod_id == cluster.pod_id, col(Host.address).in_(chunk))
            .limit(1)
        ).first()
        if holder is not None:
            raise AlreadyExists(
                f"host address {holder[1]} is already used by host '{holder[0]}' in this pod",
                field="address",
            )
    for chunk in _chunks(sorted(seen_uris), 500):
        taken = session.exec(
            select(Host.name, Host.uri).where(col(Host.uri).in_(chunk)).limit(1)
        ).first()
        if taken is not None:
            raise AlreadyExists(
                f"host URI {taken[1]} is already in the topology as host '{taken[0]}'", field="uri"
            )
    for chunk in _chunks(sorted(seen_names), 500):
        taken_name = session.exec(
            select(Host.name)
            .where(Host.cluster_id == cluster.id, col(Host.name).in_(chunk))
            .limit(1)
        ).first()
        if taken_name is not None:
            raise AlreadyExists(
                f"host '{taken_name}': the name is already taken in cluster '{cluster.name}'",
                field="name",
            )


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    # SQLite builds may cap bound parameters per statement at 999.
    for start in range(0, len(items), size):
        yield items[start : start + size]


def add_host(caller: Caller, cluster_ref: str, spec: HostSpec) -> Host:
    (uuid,) = add_hosts(caller, cluster_ref, [spec])
    return get_host(caller, uuid)


def get_host(caller: Caller, host_ref: str) -> Host:
    with caller.db.read() as session:
        return resolve(session, Host, host_ref, "host", field="host")


def host_tags(caller: Caller, host_ref: str) -> list[str]:
    with caller.db.read() as session:
        host = resolve(session, Host, host_ref, "host", field="host")
        return list(
            session.exec(
                select(HostTag.tag).where(HostTag.host_id == host.id).order_by(HostTag.tag)
            )
        )


def list_hosts(
    caller: Caller,
    *,
    zone_ref: str | None = None,
    pod_ref: str | None = None,
    cluster_ref: str | None = None,
    after_id: int | None = None,
    limit: int | None = 500,
) -> list[Host]:
    """Hosts in id order, keyset-paged: pass the last id seen as `after_id`."""
    with caller.db.read() as session:
        query = select(Host).order_by(Host.id)
        if zone_ref is not None:
            query = query.where(
                Host.zone_id == resolve(session, Zone, zone_ref, "zone", field="zone").id
            )
        if pod_ref is not None:
            query = query.where(
                Host.pod_id == resolve(session, Pod, pod_ref, "pod", field="pod").id
            )
        if cluster_ref is not None:
            query = query.where(
                Host.cluster_id
                == resolve(session, Cluster, cluster_ref, "cluster", field="cluster").id
            )
        if after_id is not None:
            query = query.where(col(Host.id) > after_id)
        if limit is not None:
            query = query.limit(limit)
        return list(session.exec(query))


HOST_FIELDS = {"name", "address", "tags"}


def update_host(caller: Caller, host_ref: str, **changes: Any) -> Host:
    with caller.db.write() as session:
        host = resolve(session, Host, host_ref, "host", field="host")
        label = f"host '{host.name}'"
        reject_unknown_fields(label, changes, HOST_FIELDS)
        apply_rename(session, host, label, changes, cluster_id=host.cluster_id)
        if "address" in changes:
            pod = session.get(Pod, host.pod_id)
            assert pod is not None
            if changes["address"]:
                address = _check_host_address(label, changes["address"], pod)
                holder = session.exec(
                    select(Host.name).where(
                        Host.pod_id == pod.id, Host.address == address, Host.id != host.id
                    )
                ).first()
                if holder is not None:
                    raise AlreadyExists(
                        f"{label}: address {address} is already used by host '{holder}'",
                        field="address",
                    )
                host.address = address
            else:
                host.address = None
        if "tags" in changes:
            _replace_tags(session, HostTag.__table__, "host_id", host.id, label, changes["tags"])
        host.capacity_version += 1
        session.add(host)
        record_event(session, caller, "HOST.UPDATE", "Host", host, f"changed {_fields(changes)}")
    return host


def _replace_tags(
    session: Session, table: Any, owner: str, owner_id: int | None, label: str, tags: Any
) -> None:
    """Make the owner's tags exactly `tags` (validated first)."""
    wanted = check_tags(label, tags)
    session.execute(delete(table).where(table.c[owner] == owner_id))
    if wanted:
        session.execute(insert(table), [{owner: owner_id, "tag": tag} for tag in wanted])


def _set_host_resource_state(caller: Caller, host_ref: str, target: ResourceState) -> Host:
    source = ResourceState.DISABLED if target == ResourceState.ENABLED else ResourceState.ENABLED
    with caller.db.write() as session:
        host = resolve(session, Host, host_ref, "host", field="host")
        if host.resource_state == target:
            return host
        changed = session.execute(
            update(Host)
            .where(col(Host.id) == host.id, col(Host.resource_state) == source)
            .values(resource_state=target, capacity_version=Host.capacity_version + 1)
        ).rowcount
        if changed != 1:
            raise StateConflict(
                f"host '{host.name}' is {host.resource_state}; only a host that is {source} "
                f"can become {target}"
            )
        session.refresh(host)
        verb = "enabled" if target == ResourceState.ENABLED else "disabled"
        record_event(session, caller, f"HOST.{verb.upper()[:-1]}", "Host", host, f"{verb} host")
    return host


def enable_host(caller: Caller, host_ref: str) -> Host:
    return _set_host_resource_state(caller, host_ref, ResourceState.ENABLED)


def disable_host(caller: Caller, host_ref: str) -> Host:
    return _set_host_resource_state(caller, host_ref, ResourceState.DISABLED)


def delete_host(caller: Caller, host_ref: str) -> None:
    with caller.db.write() as session:
        host = resolve(session, Host, host_ref, "host", field="host")
        used = (
            host.cpu_used_mhz
            + host.cpu_reserved_mhz
            + host.memory_used_bytes
            + host.memory_reserved_bytes
        )
        if used:
            raise InUse(
                f"host '{host.name}' still carries VMs ({host.memory_used_bytes // 2**20} MiB "
                f"memory used, {host.memory_reserved_bytes // 2**20} MiB reserved): migrate or "
                "stop them, or put the host in maintenance first"
            )
        _refuse_children(
            f"host '{host.name}'",
            [
                (
                    "VM",
                    _child_names(
                        session,
                        VirtualMachine,
                        (VirtualMachine.host_id == host.id)
                        & (VirtualMachine.state != VmState.EXPUNGED),
                    ),
                )
            ],
        )
        # Where gone VMs last ran is history, not a reason to keep the host.
        session.execute(
            update(VirtualMachine)
            .where(VirtualMachine.last_host_id == host.id)  # type: ignore[arg-type]
            .values(last_host_id=None)
        )
        session.delete(host)
        record_event(session, caller, "HOST.DELETE", "Host", host, f"removed host {host.uri}")


# --- allocation state of containers ----------------------------------------------------


def _set_allocation_state(
    caller: Caller, model: type[SQLModel], kind: str, ref: str, enabled: bool
) -> Any:
    state = AllocationState.ENABLED if enabled else AllocationState.DISABLED
    with caller.db.write() as session:
        obj = resolve(session, model, ref, kind, field=kind)
        if obj.allocation_state != state:  # type: ignore[attr-defined]
            obj.allocation_state = state  # type: ignore[attr-defined]
            session.add(obj)
            record_event(
                session,
                caller,
                f"{kind.upper()}.EDIT",
                kind.capitalize(),
                obj,  # type: ignore[arg-type]
                f"{'enabled' if enabled else 'disabled'} {kind}",
            )
        return obj


def enable_zone(caller: Caller, ref: str) -> Zone:
    return _set_allocation_state(caller, Zone, "zone", ref, True)


def disable_zone(caller: Caller, ref: str) -> Zone:
    return _set_allocation_state(caller, Zone, "zone", ref, False)


def enable_pod(caller: Caller, ref: str) -> Pod:
    return _set_allocation_state(caller, Pod, "pod", ref, True)


def disable_pod(caller: Caller, ref: str) -> Pod:
    return _set_allocation_state(caller, Pod, "pod", ref, False)


def enable_cluster(caller: Caller, ref: str) -> Cluster:
    return _set_allocation_state(caller, Cluster, "cluster", ref, True)


def disable_cluster(caller: Caller, ref: str) -> Cluster:
    return _set_allocation_state(caller, Cluster, "cluster", ref, False)


# --- primary storage -------------------------------------------------------------------

POOL_TUNABLES = {
    "overprovisioning_factor": ("storage overprovisioning factor", check_factor),
    "capacity_disable_threshold": ("capacity disable threshold", check_threshold),
    "allocated_disable_threshold": ("allocated-capacity disable threshold", check_threshold),
}


def _check_pool_location(
    label: str, pool_type: str, path: str, server: str | None
) -> tuple[str, str, str | None]:
    pool_type = str(pool_type).lower()
    if pool_type not in POOL_TYPES:
        raise InvalidParameter(
            f"{label}: pool type {pool_type!r} is not one of {', '.join(POOL_TYPES)}",
            field="pool_type",
        )
    path = check_text(label, path, field="path")
    if not path.startswith("/"):
        raise InvalidParameter(f"{label}: path {path!r} must be absolute", field="path")
    if pool_type == "nfs":
        if not server:
            raise InvalidParameter(f"{label}: an NFS pool needs a server", field="server")
        server = check_text(label, server, field="server", limit=255)
    else:
        server = None
    return pool_type, path, server


def create_storage_pool(
    caller: Caller,
    name: str,
    *,
    path: str,
    zone_ref: str | None = None,
    cluster_ref: str | None = None,
    pool_type: str = "dir",
    server: str | None = None,
    capacity_bytes: int = 0,
    tags: Iterable[str] | str | None = None,
    overprovisioning_factor: float | None = None,
    capacity_disable_threshold: float | None = None,
    allocated_disable_threshold: float | None = None,
    enabled: bool = True,
) -> StoragePool:
    """Primary storage: cluster scope when `cluster_ref` is given, else zone-wide."""
    name = check_name(f"primary storage '{name}'", name)
    label = f"primary storage '{name}'"
    pool_type, path, server = _check_pool_location(label, pool_type, path, server)
    capacity = check_count(
        label, capacity_bytes, field="capacity_bytes", what="capacity (bytes)", minimum=0
    )
    pool_tags = check_tags(label, tags)
    tunables = _check_tunables(
        label,
        {
            "overprovisioning_factor": overprovisioning_factor,
            "capacity_disable_threshold": capacity_disable_threshold,
            "allocated_disable_threshold": allocated_disable_threshold,
        },
        POOL_TUNABLES,
    )
    with caller.db.write() as session:
        zone = (
            resolve(session, Zone, zone_ref, "zone", field="zone") if zone_ref is not None else None
        )
        cluster = None
        if cluster_ref is not None:
            scope = {"zone_id": zone.id} if zone is not None else {}
            within = f"zone '{zone.name}'" if zone is not None else None
            cluster = resolve(
                session, Cluster, cluster_ref, "cluster", field="cluster", within=within, **scope
            )
            if zone is not None and cluster.zone_id != zone.id:
                raise InvalidParameter(
                    f"{label}: cluster '{cluster.name}' is not in zone '{zone.name}'",
                    field="cluster",
                )
            zone = session.get(Zone, cluster.zone_id)
        if zone is None:
            raise InvalidParameter(f"{label}: a zone or a cluster is required", field="zone")
        ensure_unique_name(
            session, StoragePool, f"{label} in zone '{zone.name}'", name, zone_id=zone.id
        )
        duplicate = session.exec(
            select(StoragePool.name).where(
                StoragePool.zone_id == zone.id,
                StoragePool.path == path,
                StoragePool.server == server,
                StoragePool.cluster_id == (cluster.id if cluster else None),
            )
        ).first()
        if duplicate is not None:
            raise AlreadyExists(
                f"{label}: path {path} is already primary storage '{duplicate}' here", field="path"
            )
        pool = StoragePool(
            zone_id=zone.id,  # type: ignore[arg-type]
            pod_id=cluster.pod_id if cluster else None,
            cluster_id=cluster.id if cluster else None,
            name=name,
            scope=StorageScope.CLUSTER if cluster else StorageScope.ZONE,
            pool_type=pool_type,
            server=server,
            path=path,
            libvirt_pool_name="",
            capacity_bytes=capacity,
            status=StoragePoolStatus.UP if enabled else StoragePoolStatus.DISABLED,
            **tunables,
        )
        session.add(pool)
        session.flush()
        # libvirt pool names must be unique per host; the UUID prefix keeps them so.
        pool.libvirt_pool_name = f"stratus-{pool.uuid[:8]}"
        for tag in pool_tags:
            session.add(StoragePoolTag(pool_id=pool.id, tag=tag))  # type: ignore[arg-type]
        where = f"cluster '{cluster.name}'" if cluster else f"zone '{zone.name}'"
        record_event(
            session,
            caller,
            "STORAGE.POOL.CREATE",
            "StoragePool",
            pool,
            f"created {pool_type} primary storage {path} for {where}",
        )
    return pool


def update_storage_pool(caller: Caller, pool_ref: str, **changes: Any) -> StoragePool:
    with caller.db.write() as session:
        pool = resolve(session, StoragePool, pool_ref, "primary storage", field="pool")
        label = f"primary storage '{pool.name}'"
        reject_unknown_fields(label, changes, {"name", "tags", "capacity_bytes", *POOL_TUNABLES})
        tunables = _check_tunables(
            label, {k: v for k, v in changes.items() if k in POOL_TUNABLES}, POOL_TUNABLES
        )
        apply_rename(session, pool, label, changes, zone_id=pool.zone_id)
        if "capacity_bytes" in changes:
            pool.capacity_bytes = check_count(
                label,
                changes["capacity_bytes"],
                field="capacity_bytes",
                what="capacity (bytes)",
                minimum=0,
            )
        if "tags" in changes:
            table = StoragePoolTag.__table__
            _replace_tags(session, table, "pool_id", pool.id, label, changes["tags"])
        for key, value in tunables.items():
            setattr(pool, key, value)
        session.add(pool)
        record_event(
            session, caller, "STORAGE.POOL.EDIT", "StoragePool", pool, f"changed {_fields(changes)}"
        )
    return pool


def get_storage_pool(caller: Caller, pool_ref: str) -> StoragePool:
    with caller.db.read() as session:
        return resolve(session, StoragePool, pool_ref, "primary storage", field="pool")


def storage_pool_tags(caller: Caller, pool_ref: str) -> list[str]:
    with caller.db.read() as session:
        pool = resolve(session, StoragePool, pool_ref, "primary storage", field="pool")
        return list(
            session.exec(
                select(StoragePoolTag.tag)
                .where(StoragePoolTag.pool_id == pool.id)
                .order_by(StoragePoolTag.tag)
            )
        )


def list_storage_pools(
    caller: Caller, *, zone_ref: str | None = None, cluster_ref: str | None = None
) -> list[StoragePool]:
    with caller.db.read() as session:
        query = select(StoragePool).order_by(StoragePool.name)
        if zone_ref is not None:
            query = query.where(
                StoragePool.zone_id == resolve(session, Zone, zone_ref, "zone", field="zone").id
            )
        if cluster_ref is not None:
            cluster = resolve(session, Cluster, cluster_ref, "cluster", field="cluster")
            query = query.where(StoragePool.cluster_id == cluster.id)
        return list(session.exec(query))


def _set_pool_status(caller: Caller, pool_ref: str, enabled: bool) -> StoragePool:
    target = StoragePoolStatus.UP if enabled else StoragePoolStatus.DISABLED
    source = StoragePoolStatus.DISABLED if enabled else StoragePoolStatus.UP
    with caller.db.write() as session:
        pool = resolve(session, StoragePool, pool_ref, "primary storage", field="pool")
        if pool.status == target:
            return pool
        changed = session.execute(
            update(StoragePool)
            .where(col(StoragePool.id) == pool.id, col(StoragePool.status) == source)
            .values(status=target)
        ).rowcount
        if changed != 1:
            raise StateConflict(
                f"primary storage '{pool.name}' is {pool.status}; "
                f"only a pool that is {source} can become {target}"
            )
        session.refresh(pool)
        record_event(
            session,
            caller,
            "STORAGE.POOL.EDIT",
            "StoragePool",
            pool,
            f"{'enabled' if enabled else 'disabled'} primary storage",
        )
    return pool


def enable_storage_pool(caller: Caller, pool_ref: str) -> StoragePool:
    return _set_pool_status(caller, pool_ref, True)


def disable_storage_pool(caller: Caller, pool_ref: str) -> StoragePool:
    return _set_pool_status(caller, pool_ref, False)


def delete_storage_pool(caller: Caller, pool_ref: str) -> None:
    with caller.db.write() as session:
        pool = resolve(session, StoragePool, pool_ref, "primary storage", field="pool")
        if pool.allocated_bytes > 0:
            raise InUse(
                f"primary storage '{pool.name}' still holds volumes "
                f"({pool.allocated_bytes // 2**30} GiB allocated): delete or migrate them first"
            )
        delete_overrides(session, "storagepool", pool.id)  # type: ignore[arg-type]
        session.delete(pool)
        record_event(
            session, caller, "STORAGE.POOL.DELETE", "StoragePool", pool, "deleted primary storage"
        )


# --- secondary storage -----------------------------------------------------------------


def _check_store_url(label: str, url: str) -> tuple[str, str]:
    url = check_text(label, url, field="url")
    if url.startswith("/"):
        return f"file://{url}", "file"
    if url.startswith("file:///") and len(url) > len("file:///"):
        return url, "file"
    if url.startswith("nfs://"):
        rest = url[len("nfs://") :]
        host, _, path = rest.partition("/")
        if host and path:
            return url, "nfs"
    raise InvalidParameter(
        f"{label}: URL {url!r} must be an absolute path, file:///path or nfs://server/path",
        field="url",
    )


def add_image_store(
    caller: Caller, zone_ref: str, name: str, *, url: str, capacity_bytes: int = 0
) -> ImageStore:
    name = check_name(f"image store '{name}'", name)
    label = f"image store '{name}'"
    url, protocol = _check_store_url(label, url)
    capacity = check_count(
        label, capacity_bytes, field="capacity_bytes", what="capacity (bytes)", minimum=0
    )
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        ensure_unique_name(
            session, ImageStore, f"{label} in zone '{zone.name}'", name, zone_id=zone.id
        )
        taken = session.exec(
            select(ImageStore.name).where(ImageStore.zone_id == zone.id, ImageStore.url == url)
        ).first()
        if taken is not None:
            raise AlreadyExists(
                f"{label}: {url} is already image store '{taken}' of zone '{zone.name}'",
                field="url",
            )
        store = ImageStore(
            zone_id=zone.id, name=name, url=url, protocol=protocol, capacity_bytes=capacity
        )  # type: ignore[arg-type]
        session.add(store)
        session.flush()
        record_event(
            session,
            caller,
            "IMAGE.STORE.ADD",
            "ImageStore",
            store,
            f"added {url} to zone '{zone.name}'",
        )
    return store


def update_image_store(caller: Caller, store_ref: str, **changes: Any) -> ImageStore:
    with caller.db.write() as session:
        store = resolve(session, ImageStore, store_ref, "image store", field="store")
        label = f"image store '{store.name}'"
        reject_unknown_fields(label, changes, {"name", "capacity_bytes", "read_only"})
        apply_rename(session, store, label, changes, zone_id=store.zone_id)
        if "capacity_bytes" in changes:
            store.capacity_bytes = check_count(
                label,
                changes["capacity_bytes"],
                field="capacity_bytes",
                what="capacity (bytes)",
                minimum=0,
            )
        if "read_only" in changes:
            store.read_only = bool(changes["read_only"])
        session.add(store)
        record_event(
            session, caller, "IMAGE.STORE.EDIT", "ImageStore", store, f"changed {_fields(changes)}"
        )
    return store


def get_image_store(caller: Caller, store_ref: str) -> ImageStore:
    with caller.db.read() as session:
        return resolve(session, ImageStore, store_ref, "image store", field="store")


def list_image_stores(caller: Caller, zone_ref: str | None = None) -> list[ImageStore]:
    with caller.db.read() as session:
        query = select(ImageStore).order_by(ImageStore.name)
        if zone_ref is not None:
            query = query.where(
                ImageStore.zone_id == resolve(session, Zone, zone_ref, "zone", field="zone").id
            )
        return list(session.exec(query))


def delete_image_store(caller: Caller, store_ref: str) -> None:
    with caller.db.write() as session:
        store = resolve(session, ImageStore, store_ref, "image store", field="store")
        if store.used_bytes > 0:
            raise InUse(
                f"image store '{store.name}' still holds {store.used_bytes // 2**20} MiB of "
                "templates, ISOs or snapshots: move or delete them first"
            )
        session.delete(store)
        record_event(
            session, caller, "IMAGE.STORE.DELETE", "ImageStore", store, "removed image store"
        )


# --- overview --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSummary:
    uuid: str
    name: str
    allocation_state: str
    hosts: int
    hosts_up: int


@dataclass(frozen=True)
class PodSummary:
    uuid: str
    name: str
    cidr: str
    allocation_state: str
    clusters: list[ClusterSummary]

    @property
    def hosts(self) -> int:
        return sum(c.hosts for c in self.clusters)


@dataclass(frozen=True)
class ZoneSummary:
    uuid: str
    name: str
    network_type: str
    allocation_state: str
    pods: list[PodSummary]

    @property
    def clusters(self) -> int:
        return sum(len(p.clusters) for p in self.pods)

    @property
    def hosts(self) -> int:
        return sum(p.hosts for p in self.pods)


def topology_overview(caller: Caller) -> list[ZoneSummary]:
    """Zones → pods → clusters with host counts, in three queries whatever the host count."""
    with caller.db.read() as session:
        counts = {
            cluster_id: (int(total), int(up or 0))
            for cluster_id, total, up in session.exec(
                select(
                    Host.cluster_id,
                    func.count(),
                    func.sum(case((col(Host.status) == HostStatus.UP, 1), else_=0)),
                ).group_by(Host.cluster_id)
            )
        }
        clusters: dict[int, list[ClusterSummary]] = {}
        for cluster in session.exec(select(Cluster).order_by(Cluster.name)):
            total, up = counts.get(cluster.id or 0, (0, 0))
            clusters.setdefault(cluster.pod_id, []).append(
                ClusterSummary(cluster.uuid, cluster.name, cluster.allocation_state, total, up)
            )
        pods: dict[int, list[PodSummary]] = {}
        for pod in session.exec(select(Pod).order_by(Pod.name)):
            pods.setdefault(pod.zone_id, []).append(
                PodSummary(
                    pod.uuid,
                    pod.name,
                    pod.cidr,
                    pod.allocation_state,
                    clusters.get(pod.id or 0, []),
                )
            )
        return [
            ZoneSummary(
                zone.uuid,
                zone.name,
                zone.network_type,
                zone.allocation_state,
                pods.get(zone.id or 0, []),
            )
            for zone in session.exec(select(Zone).order_by(Zone.name))
        ]
