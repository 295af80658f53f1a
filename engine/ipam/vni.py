"""VLAN ids and VXLAN VNIs of a zone: ranges, one row per id, each id used once per zone.

Like CloudStack's op_dc_vnet_alloc, a range's ids are rows created with the range;
taking one is the same single picking UPDATE as for addresses, and UNIQUE(zone, vni)
guarantees no id is in two rows of a zone.
"""

from __future__ import annotations

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.errors import InUse, InvalidParameter, NotFound, StateConflict
from engine.events import record_event
from engine.ipam.allocation import take_exact, take_from_pools
from engine.ipam.common import Named, insert_rows, now
from engine.ipam.errors import AddressExhausted
from engine.lookup import resolve
from engine.models import IsolationMethod, VniState, Zone, ZoneVni, ZoneVniRange
from engine.validation import check_count

ID_LIMITS = {IsolationMethod.VLAN: (1, 4094), IsolationMethod.VXLAN: (1, 16_777_214)}
MAX_VNI_RANGE = 65_536


def vni_range_label(rng: ZoneVniRange) -> str:
    return f"{rng.isolation} range {rng.first_vni}-{rng.last_vni}"


def add_vni_range(
    caller: Caller, zone_ref: str, first: int, last: int, *, isolation: str = "vxlan"
) -> ZoneVniRange:
    method = str(isolation).lower()
    label = f"{method} range {first}-{last}"
    if method not in ID_LIMITS:
        raise InvalidParameter(
            f"{label}: isolation {isolation!r} is not vlan or vxlan", field="isolation"
        )
    low, high = ID_LIMITS[IsolationMethod(method)]
    first = check_count(label, first, field="first", what="first id", minimum=low)
    last = check_count(label, last, field="last", what="last id", minimum=low)
    label = f"{method} range {first}-{last}"
    if last > high:
        raise InvalidParameter(f"{label}: {method} ids end at {high}", field="last")
    if first > last:
        raise InvalidParameter(f"{label}: first id {first} is after last {last}", field="last")
    if last - first + 1 > MAX_VNI_RANGE:
        raise InvalidParameter(
            f"{label}: holds {last - first + 1} ids, more than the {MAX_VNI_RANGE} one range "
            "may hold",
            field="last",
        )
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        for other in session.exec(select(ZoneVniRange).where(ZoneVniRange.zone_id == zone.id)):
            if first <= other.last_vni and other.first_vni <= last:
                raise InvalidParameter(
                    f"{label}: overlaps {vni_range_label(other)} of zone '{zone.name}'",
                    field="first",
                )
        rng = ZoneVniRange(zone_id=zone.id, isolation=method, first_vni=first, last_vni=last)  # type: ignore[arg-type]
        session.add(rng)
        session.flush()
        rows = [
            {"zone_id": zone.id, "range_id": rng.id, "vni": vni, "state": VniState.FREE}
            for vni in range(first, last + 1)
        ]
        insert_rows(session, ZoneVni.__table__, rows)
        record_event(
            session,
            caller,
            "ZONE.VNI.RANGE.ADD",
            "ZoneVniRange",
            Named(rng.uuid, label),
            f"added {label} to zone '{zone.name}'",
        )
    return rng


def delete_vni_range(caller: Caller, range_ref: str) -> None:
    with caller.db.write() as session:
        rng = session.exec(select(ZoneVniRange).where(ZoneVniRange.uuid == str(range_ref))).first()
        if rng is None:
            raise NotFound(f"VNI range '{range_ref}' does not exist", field="range")
        label = vni_range_label(rng)
        used = session.exec(
            select(func.count()).where(
                ZoneVni.range_id == rng.id, ZoneVni.state == VniState.ALLOCATED
            )
        ).one()
        if used:
            raise InUse(f"{label} has {used} id{'s' if used != 1 else ''} in use by networks")
        session.execute(delete(ZoneVni).where(col(ZoneVni.range_id) == rng.id))
        session.delete(rng)
        record_event(
            session,
            caller,
            "ZONE.VNI.RANGE.DELETE",
            "ZoneVniRange",
            Named(rng.uuid, label),
            f"deleted {label}",
        )


def list_vni_ranges(caller: Caller, zone_ref: str) -> list[ZoneVniRange]:
    with caller.db.read() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        return list(
            session.exec(
                select(ZoneVniRange)
                .where(ZoneVniRange.zone_id == zone.id)
                .order_by(ZoneVniRange.first_vni)
            )
        )


def take_vni(
    session: Session,
    zone: Zone,
    *,
    network_id: int,
    account_id: int | None,
    requested: int | None = None,
) -> int:
    """A VNI for a network: the requested one if it is free, else the lowest free."""
    values = {
        "state": VniState.ALLOCATED,
        "network_id": network_id,
        "account_id": account_id,
        "allocated": now(),
    }
    label = f"zone '{zone.name}'"
    if requested is not None:
        row_id = take_exact(
            session, "vni", {"zone_id": zone.id}, requested, values, from_states=(VniState.FREE,)
        )
        if row_id is None:
            row = session.exec(
                select(ZoneVni).where(ZoneVni.zone_id == zone.id, ZoneVni.vni == requested)
            ).first()
            if row is None:
                raise InvalidParameter(
                    f"{label}: VNI {requested} is in none of the zone's VNI ranges", field="vni"
                )
            raise StateConflict(f"{label}: VNI {requested} is already in use", field="vni")
        return requested
    ranges = list(
        session.exec(
            select(ZoneVniRange)
            .where(ZoneVniRange.zone_id == zone.id)
            .order_by(ZoneVniRange.first_vni)
        )
    )
    taken = take_from_pools(session, "vni", [r.id for r in ranges], values)  # type: ignore[misc]
    if taken is None:
        if not ranges:
            raise AddressExhausted(
                f"{label} has no VLAN/VNI range: add one before creating isolated networks"
            )
        listed = ", ".join(
            f"{vni_range_label(r)} ({r.last_vni - r.first_vni + 1} ids)" for r in ranges
        )
        raise AddressExhausted(f"{label}: every id of {listed} is in use")
    return int(taken[2])


def release_vni(session: Session, zone_id: int, vni: int) -> None:
    session.execute(
        ZoneVni.__table__.update()  # type: ignore[attr-defined]
        .where(ZoneVni.__table__.c.zone_id == zone_id, ZoneVni.__table__.c.vni == vni)  # type: ignore[attr-defined]
        .values(state=VniState.FREE, network_id=None, account_id=None, allocated=None)
    )
