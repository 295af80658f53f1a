"""Public IP ranges of a zone and the public addresses handed to accounts.

A range (CloudStack's `vlan` row) gets one `PublicIpAddress` row per address when it is
created. Associating an address takes the lowest free row of the first range that serves
the account: ranges dedicated to the account, then to its domain, then the shared pool
(ranges for system use never serve tenants). The first address associated with an
isolated network is its source NAT address.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, or_, update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.db import Database, LeanWrite
from engine.errors import InUse, InvalidParameter, NotFound, StateConflict
from engine.events import record_event, record_event_lean
from engine.ipam.addressing import check_no_overlap, ip_text, parse_subnet, zone_spans
from engine.ipam.allocation import take_exact, take_from_pools
from engine.ipam.common import Named, caller_account, insert_rows, now, resolve_domain, with_uuids
from engine.ipam.errors import AddressExhausted
from engine.lookup import resolve
from engine.models import (
    Account,
    GuestNetwork,
    GuestType,
    IpAddressState,
    IsolationMethod,
    Pod,
    PublicIpAddress,
    PublicIpRange,
    Zone,
)
from engine.validation import check_count, parse_ipv4

VLAN_IDS = (1, 4094)
VXLAN_IDS = (1, 16_777_214)
TAKEN = (
    IpAddressState.ALLOCATING,
    IpAddressState.ALLOCATED,
    IpAddressState.RELEASING,
    IpAddressState.RESERVED,
)


def range_label(rng: PublicIpRange) -> str:
    return f"public IP range {rng.start_ip}-{rng.end_ip}"


def parse_vlan(label: str, vlan: object) -> tuple[str, int | None]:
    """`None`/"untagged", a VLAN id (100, "vlan://100") or a VNI ("vxlan://5000")."""
    if vlan is None or str(vlan).strip().lower() in {"", "untagged", "vlan://untagged"}:
        return IsolationMethod.UNTAGGED, None
    text = str(vlan).strip().lower()
    method, _, number = text.rpartition("://")
    method = method or IsolationMethod.VLAN
    if method not in (IsolationMethod.VLAN, IsolationMethod.VXLAN):
        raise InvalidParameter(
            f"{label}: VLAN {vlan!r} must be a VLAN id, vlan://<id>, vxlan://<vni> or untagged",
            field="vlan",
        )
    low, high = VLAN_IDS if method == IsolationMethod.VLAN else VXLAN_IDS
    tag = check_count(label, number, field="vlan", what=f"{method} id", minimum=low)
    if tag > high:
        raise InvalidParameter(f"{label}: {method} id {tag} is outside {low}..{high}", field="vlan")
    return method, tag


# --- ranges ----------------------------------------------------------------------------


def create_public_ip_range(
    caller: Caller,
    zone_ref: str,
    *,
    gateway: str,
    start_ip: str,
    end_ip: str | None = None,
    netmask: str | None = None,
    cidr: str | None = None,
    vlan: object = None,
    pod_ref: str | None = None,
    account_ref: str | None = None,
    domain_ref: str | None = None,
    for_system: bool = False,
) -> PublicIpRange:
    """Add a public range and its address rows, all or nothing."""
    label = f"public IP range {start_ip}-{end_ip or start_ip}"
    subnet = parse_subnet(
        label, gateway=gateway, netmask=netmask, cidr=cidr, start_ip=start_ip, end_ip=end_ip
    )
    label = f"public IP range {subnet.span}"
    isolation, tag = parse_vlan(label, vlan)
    if for_system and (account_ref or domain_ref):
        raise InvalidParameter(
            f"{label}: a range for system use cannot also be dedicated to an account or domain",
            field="for_system",
        )
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        pod = None
        if pod_ref is not None:
            pod = resolve(
                session,
                Pod,
                pod_ref,
                "pod",
                field="pod",
                within=f"zone '{zone.name}'",
                zone_id=zone.id,
            )
        account = (
            resolve(session, Account, account_ref, "account", field="account")
            if account_ref is not None
            else None
        )
        domain = resolve_domain(session, domain_ref) if domain_ref is not None else None
        if account is not None and domain is not None and account.domain_id != domain.id:
            raise InvalidParameter(
                f"{label}: account '{account.name}' is not in domain '{domain.name}'",
                field="domain",
            )
        check_no_overlap(
            label,
            zone_spans(session, zone.id),
            subnet.start,
            subnet.end,  # type: ignore[arg-type]
            what="range",
            zone_name=zone.name,
            gateway=subnet.gateway,
        )
        rng = PublicIpRange(
            zone_id=zone.id,  # type: ignore[arg-type]
            pod_id=pod.id if pod else None,
            gateway=subnet.gateway,
            netmask=subnet.netmask,
            cidr=subnet.cidr,
            isolation=isolation,
            vlan_tag=tag,
            start_ip=ip_text(subnet.start),
            end_ip=ip_text(subnet.end),
            start_int=subnet.start,
            end_int=subnet.end,
            size=subnet.size,
            account_id=account.id if account else None,
            domain_id=(domain.id if domain else (account.domain_id if account else None)),
            for_system=for_system,
        )
        session.add(rng)
        session.flush()
        rows = [
            {
                "range_id": rng.id,
                "zone_id": zone.id,
                "ip_int": value,
                "address": ip_text(value),
                "state": IpAddressState.FREE,
                "ip_version": 4,
                "source_nat": False,
            }
            for value in range(subnet.start, subnet.end + 1)
        ]
        insert_rows(session, PublicIpAddress.__table__, with_uuids(rows))
        owner = f", dedicated to account '{account.name}'" if account else ""
        owner = f", dedicated to domain '{domain.name}'" if domain and not account else owner
        record_event(
            session,
            caller,
            "VLAN.IP.RANGE.CREATE",
            "PublicIpRange",
            Named(rng.uuid, label),
            f"created {label} ({subnet.size} addresses, {isolation}"
            f"{'' if tag is None else f' {tag}'}) in zone '{zone.name}'{owner}"
            f"{', for system use' if for_system else ''}",
        )
    return rng


def _resolve_range(session: Session, range_ref: str) -> PublicIpRange:
    found = session.exec(select(PublicIpRange).where(PublicIpRange.uuid == str(range_ref))).first()
    if found is None:
        raise NotFound(f"public IP range '{range_ref}' does not exist", field="range")
    return found


def delete_public_ip_range(caller: Caller, range_ref: str) -> None:
    """Refused while any address of the range is taken (allocated, reserved, quarantined)."""
    with caller.db.write() as session:
        rng = _resolve_range(session, range_ref)
        label = range_label(rng)
        taken = list(
            session.exec(
                select(PublicIpAddress.address)
                .where(PublicIpAddress.range_id == rng.id, col(PublicIpAddress.state).in_(TAKEN))
                .order_by(PublicIpAddress.ip_int)
                .limit(3)
            )
        )
        if taken:
            count = session.exec(
                select(func.count()).where(
                    PublicIpAddress.range_id == rng.id, col(PublicIpAddress.state).in_(TAKEN)
                )
            ).one()
            raise InUse(
                f"{label} has {count} address{'es' if count != 1 else ''} in use "
                f"({', '.join(taken)}{' …' if count > len(taken) else ''}): release them first"
            )
        session.execute(delete(PublicIpAddress).where(col(PublicIpAddress.range_id) == rng.id))
        session.delete(rng)
        record_event(
            session,
            caller,
            "VLAN.IP.RANGE.DELETE",
            "PublicIpRange",
            Named(rng.uuid, label),
            f"deleted {label}",
        )


def list_public_ip_ranges(caller: Caller, zone_ref: str | None = None) -> list[PublicIpRange]:
    with caller.db.read() as session:
        query = select(PublicIpRange).order_by(PublicIpRange.zone_id, PublicIpRange.start_int)
        if zone_ref is not None:
            zone = resolve(session, Zone, zone_ref, "zone", field="zone")
            query = query.where(PublicIpRange.zone_id == zone.id)
        return list(session.exec(query))


# --- addresses -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _serving_ranges_query() -> Any:
    # Built once: a query built per call costs more than running it. The second column
    # says whether the range holds quarantined addresses whose time is up (an index probe),
    # so a full range costs no extra statement when it has none.
    return select(PublicIpRange, _expired_column()).where(*_serving_criteria())


def _serving_criteria() -> tuple[Any, ...]:
    return (
        PublicIpRange.zone_id == bindparam("zone_id"),
        col(PublicIpRange.for_system).is_(False),
        or_(
            PublicIpRange.account_id == bindparam("account_id"),
            and_(
                col(PublicIpRange.account_id).is_(None),
                PublicIpRange.domain_id == bindparam("domain_id"),
            ),
            and_(col(PublicIpRange.account_id).is_(None), col(PublicIpRange.domain_id).is_(None)),
        ),
    )


def _expired_column() -> Any:
    return (
        select(PublicIpAddress.id)
        .where(
            PublicIpAddress.range_id == PublicIpRange.id,
            PublicIpAddress.state == IpAddressState.RELEASING,
            col(PublicIpAddress.quarantine_until) <= bindparam("q_now"),
        )
        .exists()
    )


def _tier(rng: Any) -> tuple[int, int]:
    """Dedicated to the account first, then to its domain, then the shared pool."""
    rank = 0 if rng.account_id is not None else 1 if rng.domain_id is not None else 2
    return rank, rng.start_int


def _serving(
    session: Session, zone_id: int, account: Account
) -> tuple[list[PublicIpRange], set[int]]:
    rows = session.exec(
        _serving_ranges_query(),
        params={
            "zone_id": zone_id,
            "account_id": account.id,
            "domain_id": account.domain_id,
            "q_now": now(),
        },
    ).all()

    ranges = sorted((rng for rng, _ in rows), key=_tier)
    return ranges, {rng.id for rng, expired in rows if expired}  # type: ignore[misc]


def serving_ranges(session: Session, zone_id: int, account: Account) -> list[PublicIpRange]:
    """Ranges that may serve the account, in the order they are used: dedicated to the
    account, dedicated to its domain, then the shared pool."""
    return _serving(session, zone_id, account)[0]


@lru_cache(maxsize=1)
def _expire_quarantine_statement() -> Any:
    return (
        update(PublicIpAddress)
        .where(
            col(PublicIpAddress.range_id) == bindparam("q_range_id"),
            col(PublicIpAddress.state) == IpAddressState.RELEASING,
            col(PublicIpAddress.quarantine_until) <= bindparam("q_now"),
        )
        .values(_released_values())
        # No ORM object of these rows is loaded here: skip the session synchronisation.
        .execution_options(synchronize_session=False)
    )


def _expire_quarantine(session: Session, range_id: int) -> int:
    """Quarantined addresses whose time is up become Free; how many."""
    return session.execute(
        _expire_quarantine_statement(), {"q_range_id": range_id, "q_now": now()}
    ).rowcount


def _released_values() -> dict[str, Any]:
    return {
        "state": IpAddressState.FREE,
        "account_id": None,
        "domain_id": None,
        "network_id": None,
        "source_nat": False,
        "allocated": None,
        "quarantine_until": None,
    }


def _allocated_values(account_id: int, domain_id: int) -> dict[str, Any]:
    # A free row already holds no network, no source NAT and no quarantine time (every
    # path back to Free sets _released_values()); setting them again would only cost
    # index updates (network_id is indexed).
    return {
        "state": IpAddressState.ALLOCATED,
        "account_id": account_id,
        "domain_id": domain_id,
        "allocated": now(),
    }


def _exhausted(zone_name: str, label: str, ranges: list[Any]) -> AddressExhausted:
    if not ranges:
        return AddressExhausted(f"zone '{zone_name}' has no public IP range that serves {label}")
    listed = ", ".join(f"{r.start_ip}-{r.end_ip} ({r.size} addresses)" for r in ranges)
    return AddressExhausted(
        f"zone '{zone_name}': no free public IP for {label}; every address of "
        f"public IP range{'s' if len(ranges) > 1 else ''} {listed} is taken"
    )


def take_public_ip(
    session: Session,
    zone: Zone,
    account: Account,
    *,
    network: GuestNetwork | None = None,
    address: str | None = None,
) -> PublicIpAddress:
    """Associate a public address with `account` inside the caller's transaction."""
    label = f"account '{account.name}'"
    if network is not None:
        if network.guest_type != GuestType.ISOLATED or network.account_id != account.id:
            raise InvalidParameter(
                f"{label}: network '{network.name}' is not an isolated network of the account",
                field="network",
            )
        # Serialise associations to one network (PostgreSQL) so one source NAT is chosen.
        session.exec(
            select(GuestNetwork.id).where(GuestNetwork.id == network.id).with_for_update()
        ).first()
        has_snat = session.exec(
            select(PublicIpAddress.id).where(
                PublicIpAddress.network_id == network.id, col(PublicIpAddress.source_nat)
            )
        ).first()
    values = _allocated_values(account.id, account.domain_id)  # type: ignore[arg-type]
    if network is not None:
        values |= {"network_id": network.id, "source_nat": has_snat is None}
    ranges, expired = _serving(session, zone.id, account)  # type: ignore[arg-type]
    if address is not None:
        value = int(parse_ipv4(label, address, field="address", what="public address"))
        serving = [r for r in ranges if r.start_int <= value <= r.end_int]
        row_id = (
            take_exact(session, "public", {"range_id": serving[0].id}, value, values)
            if serving
            else None
        )
        if row_id is None:
            _refuse_requested(session, label, zone, value, ranges)
    else:
        taken = take_from_pools(
            session,
            "public",
            [r.id for r in ranges],
            values,
            before_retry=lambda rid: _expire_quarantine(session, rid) if rid in expired else 0,
        )
        if taken is None:
            raise _exhausted(zone.name, label, ranges)
        row_id = taken[1]
    # Fresh from the database: the row was changed by a Core UPDATE, not through the ORM.
    return session.exec(
        select(PublicIpAddress)
        .where(PublicIpAddress.id == row_id)
        .execution_options(populate_existing=True)
    ).one()


def _refuse_requested(
    session: Session, label: str, zone: Zone, value: int, ranges: list[PublicIpRange]
) -> None:
    row = session.exec(
        select(PublicIpAddress).where(
            PublicIpAddress.zone_id == zone.id, PublicIpAddress.ip_int == value
        )
    ).first()
    text = ip_text(value)
    if row is None:
        raise InvalidParameter(
            f"{label}: public address {text} is in no public IP range of zone '{zone.name}'",
            field="address",
        )
    if row.range_id not in {r.id for r in ranges}:
        rng = session.get(PublicIpRange, row.range_id)
        assert rng is not None
        raise InvalidParameter(
            f"{label}: public address {text} belongs to {range_label(rng)}, which does not "
            "serve this account (dedicated elsewhere or for system use)",
            field="address",
        )
    raise StateConflict(f"{label}: public address {text} is already {row.state}", field="address")


def associate_public_ip(
    caller: Caller,
    zone_ref: str,
    *,
    account_ref: str | None = None,
    network_ref: str | None = None,
    address: str | None = None,
) -> PublicIpAddress:
    """Give the account a public address (the requested one, or the next free)."""
    if network_ref is None and address is None:
        fast = _associate_next_free(caller, zone_ref, account_ref)
        if fast is not None:
            return fast
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        account = caller_account(session, caller, account_ref)
        network = (
            resolve(session, GuestNetwork, network_ref, "network", field="network", zone_id=zone.id)
            if network_ref is not None
            else None
        )
        row = take_public_ip(session, zone, account, network=network, address=address)
        record_event(
            session,
            caller,
            "NET.IPASSIGN",
            "PublicIpAddress",
            Named(row.uuid, row.address),
            f"associated {row.address} with account '{account.name}'"
            f"{' as source NAT' if row.source_nat else ''}",
        )
    return row


class _LeanQueries(NamedTuple):
    zone_by_uuid: Any
    zone_by_name: Any
    account_by_uuid: Any
    account_by_name: Any
    account_by_id: Any
    serving: Any
    address_by_id: Any


class _ServingRange(NamedTuple):
    id: int
    account_id: int | None
    domain_id: int | None
    start_int: int
    start_ip: str
    end_ip: str
    size: int
    expired: bool


@lru_cache(maxsize=1)
def _lean_queries() -> _LeanQueries:
    zone, account = Zone.__table__, Account.__table__  # type: ignore[attr-defined]
    ranges = PublicIpRange.__table__  # type: ignore[attr-defined]
    ref = bindparam("ref")
    account_columns = (account.c.id, account.c.name, account.c.domain_id)
    return _LeanQueries(
        zone_by_uuid=select(zone.c.id, zone.c.name).where(zone.c.uuid == ref),
        zone_by_name=select(zone.c.id, zone.c.name).where(zone.c.name == ref).limit(2),
        account_by_uuid=select(*account_columns).where(account.c.uuid == ref),
        account_by_name=select(*account_columns).where(account.c.name == ref).limit(2),
        account_by_id=select(*account_columns).where(account.c.id == ref),
        serving=select(
            *(ranges.c[name] for name in _ServingRange._fields[:-1]), _expired_column()
        ).where(*_serving_criteria()),
        address_by_id=select(PublicIpAddress.__table__).where(  # type: ignore[attr-defined]
            PublicIpAddress.id == bindparam("row_id")
        ),
    )


def _lean_find(tx: LeanWrite, by_uuid: Any, by_name: Any, ref: Any) -> Any | None:
    """resolve()'s rule (the UUID, else an unambiguous name) on a lean transaction; None
    when it would raise, so the Session path answers with resolve()'s own error."""
    text = str(getattr(ref, "uuid", ref)).strip()
    if not text:
        return None
    found = tx.first(by_uuid, {"ref": text})
    if found is not None:
        return found
    named = tx.execute(by_name, {"ref": text})
    return named[0] if len(named) == 1 else None


def _associate_next_free(
    caller: Caller, zone_ref: str, account_ref: str | None
) -> PublicIpAddress | None:
    """associate_public_ip's hot path (the next free address, no network): the same reads,
    picking UPDATE and audit event in one lean write transaction (Database.lean_write()),
    without an ORM session. None when it cannot answer alone (an unknown or ambiguous
    reference, a caller without an account, quarantined addresses due to expire): the
    Session path then does the work or raises its typed error. Exhaustion is raised here."""
    queries = _lean_queries()
    with caller.db.lean_write() as tx:
        zone = _lean_find(tx, queries.zone_by_uuid, queries.zone_by_name, zone_ref)
        if account_ref is not None:
            account = _lean_find(tx, queries.account_by_uuid, queries.account_by_name, account_ref)
        elif caller.account_id is not None:
            account = tx.first(queries.account_by_id, {"ref": caller.account_id})
        else:
            account = None
        if zone is None or account is None:
            return None
        (zone_id, zone_name), (account_id, account_name, domain_id) = zone, account
        params = {"zone_id": zone_id, "account_id": account_id, "domain_id": domain_id}
        ranges = sorted(
            (_ServingRange(*row) for row in tx.execute(queries.serving, params | {"q_now": now()})),
            key=_tier,
        )
        if any(rng.expired for rng in ranges):
            return None
        label = f"account '{account_name}'"
        values = _allocated_values(account_id, domain_id)
        taken = take_from_pools(tx, "public", [rng.id for rng in ranges], values)
        if taken is None:
            raise _exhausted(zone_name, label, ranges)
        fields = tx.first(queries.address_by_id, {"row_id": taken[1]})
        row = PublicIpAddress(**dict(zip(tx.columns(queries.address_by_id), fields, strict=True)))
        record_event_lean(
            tx,
            caller,
            "NET.IPASSIGN",
            "PublicIpAddress",
            Named(row.uuid, row.address),
            f"associated {row.address} with account '{account_name}'",
        )
    return row


def resolve_public_ip(session: Session, ref: str, zone_id: int | None = None) -> PublicIpAddress:
    text = str(ref).strip()
    query = select(PublicIpAddress).where(
        or_(PublicIpAddress.uuid == text, PublicIpAddress.address == text)
    )
    if zone_id is not None:
        query = query.where(PublicIpAddress.zone_id == zone_id)
    rows = list(session.exec(query.limit(2)))
    if len(rows) == 1:
        return rows[0]
    if rows:
        raise InvalidParameter(
            f"public address '{text}' exists in several zones; give its UUID", field="address"
        )
    raise NotFound(f"public address '{text}' does not exist", field="address")


def release_public_ip(
    caller: Caller, ip_ref: str, *, quarantine_seconds: int = 0
) -> PublicIpAddress:
    """Return an address to its range, or hold it in quarantine (Releasing) for a while."""
    seconds = check_count(
        f"public address '{ip_ref}'",
        quarantine_seconds,
        field="quarantine_seconds",
        what="quarantine (seconds)",
        minimum=0,
    )
    with caller.db.write() as session:
        row = resolve_public_ip(session, ip_ref)
        label = f"public address {row.address}"
        if row.state != IpAddressState.ALLOCATED:
            raise StateConflict(
                f"{label} is {row.state}; only an Allocated address can be released"
            )
        values = _released_values()
        if seconds:
            values |= {
                "state": IpAddressState.RELEASING,
                "quarantine_until": now() + timedelta(seconds=seconds),
            }
        changed = session.execute(
            update(PublicIpAddress)
            .where(
                col(PublicIpAddress.id) == row.id,
                col(PublicIpAddress.state) == IpAddressState.ALLOCATED,
            )
            .values(values)
        ).rowcount
        if changed != 1:
            raise StateConflict(f"{label} changed while being released; try again")
        session.refresh(row)
        record_event(
            session,
            caller,
            "NET.IPRELEASE",
            "PublicIpAddress",
            Named(row.uuid, row.address),
            f"released {row.address}{f' into quarantine for {seconds} s' if seconds else ''}",
        )
    return row


def reserve_public_ip(caller: Caller, zone_ref: str, address: str) -> PublicIpAddress:
    """An operator holds a free address back (Reserved): it is never handed out."""
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        label = f"zone '{zone.name}'"
        value = int(parse_ipv4(label, address, field="address", what="public address"))
        row_id = take_exact(
            session,
            "public",
            {"zone_id": zone.id},
            value,
            {"state": IpAddressState.RESERVED, "allocated": now()},
        )
        if row_id is None:
            _refuse_requested(
                session,
                label,
                zone,
                value,
                list(session.exec(select(PublicIpRange).where(PublicIpRange.zone_id == zone.id))),
            )
        row = session.get(PublicIpAddress, row_id)
        assert row is not None
        record_event(
            session,
            caller,
            "NET.IPRESERVE",
            "PublicIpAddress",
            Named(row.uuid, row.address),
            f"reserved {row.address}",
        )
    return row


def unreserve_public_ip(caller: Caller, ip_ref: str) -> PublicIpAddress:
    with caller.db.write() as session:
        row = resolve_public_ip(session, ip_ref)
        changed = session.execute(
            update(PublicIpAddress)
            .where(
                col(PublicIpAddress.id) == row.id,
                col(PublicIpAddress.state) == IpAddressState.RESERVED,
            )
            .values(_released_values())
        ).rowcount
        if changed != 1:
            raise StateConflict(f"public address {row.address} is {row.state}, not Reserved")
        session.refresh(row)
        record_event(
            session,
            caller,
            "NET.IPUNRESERVE",
            "PublicIpAddress",
            Named(row.uuid, row.address),
            f"unreserved {row.address}",
        )
    return row


def expire_quarantines(db: Database) -> int:
    """Free every quarantined address whose time is up; how many (a periodic task)."""
    with db.write() as session:
        return session.execute(
            update(PublicIpAddress)
            .where(
                col(PublicIpAddress.state) == IpAddressState.RELEASING,
                col(PublicIpAddress.quarantine_until) <= now(),
            )
            .values(_released_values())
        ).rowcount


def list_public_ips(
    db: Database | Caller,
    *,
    zone_id: int | None = None,
    range_id: int | None = None,
    state: str | None = None,
    account_id: int | None = None,
    after_id: int | None = None,
    limit: int = 500,
) -> list[PublicIpAddress]:
    """Public addresses in id order, keyset-paged: pass the last id seen as `after_id`."""
    database = db.db if isinstance(db, Caller) else db
    with database.read() as session:
        query = select(PublicIpAddress).order_by(PublicIpAddress.id).limit(limit)
        if zone_id is not None:
            query = query.where(PublicIpAddress.zone_id == zone_id)
        if range_id is not None:
            query = query.where(PublicIpAddress.range_id == range_id)
        if state is not None:
            query = query.where(PublicIpAddress.state == state)
        if account_id is not None:
            query = query.where(PublicIpAddress.account_id == account_id)
        if after_id is not None:
            query = query.where(col(PublicIpAddress.id) > after_id)
        return list(session.exec(query))
