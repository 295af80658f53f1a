"""Address utilisation per range, network, pod and zone, counted by the database.

Each figure is one GROUP BY over the address rows (using the (pool, state, value)
indexes), never a walk over addresses in Python. "Allocated" is every address not Free:
allocated, being allocated, reserved, or in quarantine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, select

from engine.context import Caller
from engine.db import Database
from engine.ipam.addressing import ip_int
from engine.models import (
    GuestIpAddress,
    GuestIpRange,
    GuestNetwork,
    Host,
    IpAddressState,
    Pod,
    PodManagementAddress,
    PublicIpAddress,
    Zone,
)

KINDS = ("public", "private", "guest")


@dataclass(frozen=True)
class Utilisation:
    total: int
    allocated: int
    free: int
    percent: float

    @classmethod
    def of(cls, total: int, allocated: int) -> Utilisation:
        total, allocated = int(total or 0), int(allocated or 0)
        percent = round(100.0 * allocated / total, 1) if total else 0.0
        return cls(total, allocated, total - allocated, percent)

    def __add__(self, other: Utilisation) -> Utilisation:
        return Utilisation.of(self.total + other.total, self.allocated + other.allocated)


EMPTY = Utilisation.of(0, 0)


@contextmanager
def _session(source: Database | Caller | Session) -> Iterator[Session]:
    if isinstance(source, Session):
        yield source
        return
    database = source.db if isinstance(source, Caller) else source
    with database.read() as session:
        yield session


def _counts(session: Session, model: Any, key: Any, *where: Any) -> dict[int, Utilisation]:
    taken = func.sum(case((model.state != IpAddressState.FREE, 1), else_=0))
    query = select(key, func.count(), taken).group_by(key)
    for condition in where:
        query = query.where(condition)
    return {k: Utilisation.of(total, used) for k, total, used in session.exec(query)}


def public_range_utilisation(source: Database | Caller | Session) -> dict[int, Utilisation]:
    with _session(source) as session:
        return _counts(session, PublicIpAddress, PublicIpAddress.range_id)


def guest_range_utilisation(source: Database | Caller | Session) -> dict[int, Utilisation]:
    with _session(source) as session:
        return _counts(session, GuestIpAddress, GuestIpAddress.range_id)


def network_utilisation(source: Database | Caller | Session) -> dict[int, Utilisation]:
    with _session(source) as session:
        return _counts(session, GuestIpAddress, GuestIpAddress.network_id)


def _private_by_pod(session: Session) -> dict[int, tuple[int, Utilisation]]:
    """pod id → (zone id, management utilisation). Pods whose rows were never generated
    count the hosts that hold an address."""
    rows = _counts(session, PodManagementAddress, PodManagementAddress.pod_id)
    hosts = dict(
        session.exec(
            select(Host.pod_id, func.count())
            .where(Host.address.is_not(None))  # type: ignore[union-attr]
            .group_by(Host.pod_id)
        ).all()
    )
    result = {}
    for pod in session.exec(select(Pod)):
        size = ip_int(pod.end_ip) - ip_int(pod.start_ip) + 1
        used = rows[pod.id].allocated if pod.id in rows else hosts.get(pod.id, 0)
        result[pod.id] = (pod.zone_id, Utilisation.of(size, min(used, size)))  # type: ignore[index]
    return result


def pod_utilisation(source: Database | Caller | Session) -> dict[int, dict[str, Utilisation]]:
    """pod id → {"private": management range, "guest": the pod's guest ranges (Basic)}."""
    with _session(source) as session:
        taken = func.sum(case((GuestIpAddress.state != IpAddressState.FREE, 1), else_=0))
        guest = {
            pod_id: Utilisation.of(total, used)
            for pod_id, total, used in session.exec(
                select(GuestIpRange.pod_id, func.count(), taken)
                .select_from(GuestIpAddress)
                .join(GuestIpRange, GuestIpRange.id == GuestIpAddress.range_id)
                .where(GuestIpRange.pod_id.is_not(None))  # type: ignore[union-attr]
                .group_by(GuestIpRange.pod_id)
            )
        }
        return {
            pod_id: {"private": private, "guest": guest.get(pod_id, EMPTY)}
            for pod_id, (_zone, private) in _private_by_pod(session).items()
        }


def zone_ip_utilisation(
    source: Database | Caller | Session,
) -> dict[int, dict[str, Utilisation]]:
    """zone id → {"public", "private" (pod management), "guest"} utilisation."""
    with _session(source) as session:
        result = {zone_id: dict.fromkeys(KINDS, EMPTY) for zone_id in session.exec(select(Zone.id))}
        for zone_id, u in _counts(session, PublicIpAddress, PublicIpAddress.zone_id).items():
            result[zone_id]["public"] = u
        taken = func.sum(case((GuestIpAddress.state != IpAddressState.FREE, 1), else_=0))
        for zone_id, total, used in session.exec(
            select(GuestNetwork.zone_id, func.count(), taken)
            .select_from(GuestIpAddress)
            .join(GuestNetwork, GuestNetwork.id == GuestIpAddress.network_id)
            .group_by(GuestNetwork.zone_id)
        ):
            result[zone_id]["guest"] = Utilisation.of(total, used)
        for zone_id, private in _private_by_pod(session).values():
            result[zone_id]["private"] = result[zone_id]["private"] + private
        return result  # type: ignore[return-value]
