"""Pod management addresses: the pod's management range, handed to hosts and system
services one row at a time.

Pods are created by the topology services, which know nothing of these rows, so the
rows of a pod are brought in line with its range (and with the addresses its hosts
already hold) at the start of every management-address operation.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, func, insert, update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.errors import AlreadyExists, InvalidParameter, StateConflict
from engine.events import record_event
from engine.ipam.addressing import ip_int, ip_text
from engine.ipam.allocation import take_exact, take_from_pools
from engine.ipam.common import INSERT_CHUNK, now
from engine.ipam.errors import AddressExhausted
from engine.lookup import resolve
from engine.models import Host, IpAddressState, Pod, PodManagementAddress
from engine.validation import parse_ipv4

HOST_PURPOSE = "host"


def management_label(pod: Pod) -> str:
    return f"pod '{pod.name}' management range {pod.start_ip}-{pod.end_ip}"


def sync_pod_management_addresses(session: Session, pod: Pod) -> None:
    """Rows for exactly the pod's range (taken rows outside it stay until released), and
    the addresses hosts of the pod hold marked as theirs. Costs one aggregate when in sync."""
    table = PodManagementAddress.__table__  # type: ignore[attr-defined]
    start, end = ip_int(pod.start_ip), ip_int(pod.end_ip)
    low, high, rows = session.execute(
        select(func.min(table.c.ip_int), func.max(table.c.ip_int), func.count()).where(
            table.c.pod_id == pod.id, table.c.ip_int.between(start, end)
        )
    ).one()
    if (low, high, rows) != (start, end, end - start + 1):
        have = set(
            session.exec(
                select(PodManagementAddress.ip_int).where(PodManagementAddress.pod_id == pod.id)
            )
        )
        missing = [
            {"pod_id": pod.id, "ip_int": v, "address": ip_text(v), "state": IpAddressState.FREE}
            for v in range(start, end + 1)
            if v not in have
        ]
        for first in range(0, len(missing), INSERT_CHUNK):
            session.execute(insert(table), missing[first : first + INSERT_CHUNK])
        session.execute(
            delete(table).where(
                table.c.pod_id == pod.id,
                table.c.state == IpAddressState.FREE,
                ~table.c.ip_int.between(start, end),
            )
        )
    hosts = Host.__table__  # type: ignore[attr-defined]
    # A host's row whose host is gone (deleted) or now holds another address is free again.
    session.execute(
        update(table)
        .where(
            table.c.pod_id == pod.id,
            table.c.purpose == HOST_PURPOSE,
            table.c.state == IpAddressState.ALLOCATED,
            ~select(hosts.c.id)
            .where(hosts.c.id == table.c.host_id, hosts.c.address == table.c.address)
            .exists(),
        )
        .values(state=IpAddressState.FREE, host_id=None, purpose=None, allocated=None)
    )
    # Addresses given to hosts directly (add_hosts, update_host) become taken rows. Driven
    # from the pod's hosts that hold an address but no row (host_id is unique, so this is
    # one index probe per host, and usually finds none), never from the free rows.
    unclaimed = session.execute(
        select(hosts.c.id, hosts.c.address).where(
            hosts.c.pod_id == pod.id,
            hosts.c.address.is_not(None),
            ~select(table.c.id).where(table.c.host_id == hosts.c.id).exists(),
        )
    ).all()
    for host_id, address in unclaimed:
        try:
            value = ip_int(address)
        except ValueError:
            continue  # not an IPv4 address: nothing of this pod's range
        session.execute(
            update(table)
            .where(
                table.c.pod_id == pod.id,
                table.c.ip_int == value,
                table.c.state == IpAddressState.FREE,
            )
            .values(
                state=IpAddressState.ALLOCATED,
                host_id=host_id,
                purpose=HOST_PURPOSE,
                allocated=now(),
            )
        )


def take_management_ip(
    session: Session,
    pod: Pod,
    *,
    host: Host | None = None,
    purpose: str = HOST_PURPOSE,
    address: str | None = None,
) -> str:
    """A management address of the pod for a host (recorded as the host's address) or a
    system service, inside the caller's transaction."""
    label = management_label(pod)
    if host is not None and host.pod_id != pod.id:
        raise InvalidParameter(f"host '{host.name}' is not in pod '{pod.name}'", field="host")
    sync_pod_management_addresses(session, pod)
    if host is not None:
        held = session.exec(
            select(PodManagementAddress.address).where(PodManagementAddress.host_id == host.id)
        ).first()
        if held is not None and address in (None, held):
            return held  # idempotent: the host keeps its address
        if held is not None:
            raise AlreadyExists(
                f"host '{host.name}' already holds management address {held}; release it first",
                field="host",
            )
    values = {
        "state": IpAddressState.ALLOCATED,
        "host_id": host.id if host else None,
        "purpose": HOST_PURPOSE if host else purpose,
        "allocated": now(),
    }
    if address is not None:
        value = _parse_address(label, address)
        start, end = ip_int(pod.start_ip), ip_int(pod.end_ip)
        if not start <= value <= end:
            raise InvalidParameter(
                f"{label}: address {address} is outside the range", field="address"
            )
        if take_exact(session, "management", {"pod_id": pod.id}, value, values) is None:
            raise AlreadyExists(
                f"{label}: address {ip_text(value)} is already taken", field="address"
            )
        text = ip_text(value)
    else:
        taken = take_from_pools(session, "management", [pod.id], values)  # type: ignore[list-item]
        if taken is None:
            size = ip_int(pod.end_ip) - ip_int(pod.start_ip) + 1
            raise AddressExhausted(f"{label}: all {size} addresses are taken")
        text = str(taken[2])
    if host is not None:
        host.address = text
        session.add(host)
    return text


def _parse_address(label: str, address: str) -> int:
    return int(parse_ipv4(label, address, field="address", what="address"))


def allocate_management_ip(
    caller: Caller,
    pod_ref: str,
    host_ref: str | None = None,
    *,
    purpose: str = HOST_PURPOSE,
    address: str | None = None,
) -> str:
    """Give a host (its `address` is set) or a system service a management address."""
    with caller.db.write() as session:
        pod = resolve(session, Pod, pod_ref, "pod", field="pod")
        host = resolve(session, Host, host_ref, "host", field="host") if host_ref else None
        text = take_management_ip(session, pod, host=host, purpose=purpose, address=address)
        whom = f"host '{host.name}'" if host else purpose
        record_event(
            session, caller, "NET.IPASSIGN", "Pod", pod, f"management address {text} to {whom}"
        )
    return text


def release_management_ip(caller: Caller, pod_ref: str, address: str) -> None:
    """Free a management address; a host holding it loses its address."""
    with caller.db.write() as session:
        pod = resolve(session, Pod, pod_ref, "pod", field="pod")
        label = management_label(pod)
        value = _parse_address(label, address)
        sync_pod_management_addresses(session, pod)
        row = session.exec(
            select(PodManagementAddress).where(
                PodManagementAddress.pod_id == pod.id, PodManagementAddress.ip_int == value
            )
        ).first()
        if row is None or row.state == IpAddressState.FREE:
            raise StateConflict(f"{label}: address {ip_text(value)} is not taken", field="address")
        if row.host_id is not None:
            session.execute(
                update(Host)
                .where(and_(col(Host.id) == row.host_id, col(Host.address) == row.address))
                .values(address=None)
            )
        session.execute(
            update(PodManagementAddress)
            .where(col(PodManagementAddress.id) == row.id)
            .values(state=IpAddressState.FREE, host_id=None, purpose=None, allocated=None)
        )
        record_event(
            session,
            caller,
            "NET.IPRELEASE",
            "Pod",
            pod,
            f"released management address {row.address}",
        )
