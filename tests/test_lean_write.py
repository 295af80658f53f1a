"""Database.lean_write(): the Session-free write transaction the allocation hot path uses.
Commits when the block ends, writes nothing on any error, and runs the same picking
statement as a Session, on SQLite and on PostgreSQL; and associate_public_ip's next-free
path, which runs on it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from helpers import rejects
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.bootstrap import Cloud
from engine.errors import InvalidParameter, NotFound
from engine.ipam import public
from engine.ipam.allocation import take_from_pools, take_next_free
from engine.ipam.errors import AddressExhausted
from engine.models import Event, IpAddressState, PublicIpAddress
from engine.topology import create_zone

_TABLE = PublicIpAddress.__table__  # type: ignore[attr-defined]
_MARK = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("row_id"))
    .values(state=bindparam("new_state"), allocated=bindparam("when"))
)
_EVENT = insert(Event.__table__).values(  # type: ignore[attr-defined]
    uuid=bindparam("uuid"),
    created=bindparam("created"),
    username="test",
    event_type="TEST",
    resource_type="Test",
    description="",
    level="INFO",
    state="Completed",
    resource_name="",
)


def _range(cloud: Cloud) -> int:
    """A zone with one /29 public range: 5 addresses, 10.9.0.2-10.9.0.6."""
    zone = create_zone(cloud.admin, "z1", dns1="8.8.8.8")
    rng = public.create_public_ip_range(
        cloud.admin,
        zone.uuid,
        gateway="10.9.0.1",
        netmask="29",
        start_ip="10.9.0.2",
        end_ip="10.9.0.6",
    )
    return rng.id  # type: ignore[return-value]


def _states(cloud: Cloud) -> dict[str, str]:
    with cloud.db.read() as session:
        rows = session.execute(select(_TABLE.c.address, _TABLE.c.state)).all()
    return {address: state for address, state in rows}


def test_lean_primitive_hands_out_lowest_free_then_none_when_full(any_cloud: Cloud) -> None:
    range_id = _range(any_cloud)
    values = {"state": IpAddressState.ALLOCATED, "account_id": any_cloud.admin.account_id}
    got = []
    for _ in range(5):
        with any_cloud.db.lean_write() as tx:
            taken = take_next_free(tx, "public", range_id, values)
        assert taken is not None
        got.append(taken[1])
    assert got == [f"10.9.0.{n}" for n in range(2, 7)]
    with any_cloud.db.lean_write() as tx:
        assert take_next_free(tx, "public", range_id, values) is None
        assert take_from_pools(tx, "public", [range_id], values) is None
    assert set(_states(any_cloud).values()) == {IpAddressState.ALLOCATED}
    with any_cloud.db.read() as session:
        owners = session.execute(select(_TABLE.c.account_id).distinct()).scalars().all()
    assert owners == [any_cloud.admin.account_id]


def test_lean_and_session_transactions_share_the_pool_without_doubles(any_cloud: Cloud) -> None:
    range_id = _range(any_cloud)
    values = {"state": IpAddressState.ALLOCATED}
    got = []
    for n in range(5):
        if n % 2:
            with any_cloud.db.write() as session:
                got.append(take_next_free(session, "public", range_id, values))
        else:
            with any_cloud.db.lean_write() as tx:
                got.append(take_next_free(tx, "public", range_id, values))
    assert len({row_id for row_id, _ in got}) == 5  # type: ignore[misc]


def test_lean_write_binds_datetimes_as_the_orm_reads_them(any_cloud: Cloud) -> None:
    """Parameters go through the column types' bind processing (SQLite stores text)."""
    range_id = _range(any_cloud)
    when = datetime(2026, 11, 24, 10, 11, 12, 131415, tzinfo=UTC)
    with any_cloud.db.lean_write() as tx:
        row_id, _ = take_next_free(tx, "public", range_id, {"state": "Allocated"})  # type: ignore[misc]
        tx.execute(_MARK, {"row_id": row_id, "new_state": "Reserved", "when": when})
    with any_cloud.db.read() as session:
        row = session.get(PublicIpAddress, row_id)
    assert row is not None and row.state == "Reserved"
    assert row.allocated is not None
    assert row.allocated.replace(tzinfo=UTC) == when


def test_lean_write_rolls_back_everything_on_an_error(any_cloud: Cloud) -> None:
    range_id = _range(any_cloud)
    before = _states(any_cloud)
    with pytest.raises(RuntimeError, match="boom"), any_cloud.db.lean_write() as tx:
        assert take_next_free(tx, "public", range_id, {"state": "Allocated"}) is not None
        raise RuntimeError("boom")
    assert _states(any_cloud) == before
    # The pooled connection went back clean: the next transaction works and commits.
    with any_cloud.db.lean_write() as tx:
        assert take_next_free(tx, "public", range_id, {"state": "Allocated"}) is not None
    assert sum(s == "Allocated" for s in _states(any_cloud).values()) == 1


def test_lean_write_raises_integrity_error_and_writes_nothing_half(any_cloud: Cloud) -> None:
    """A driver error half-way (a duplicate UUID) is SQLAlchemy's IntegrityError, and the
    statements before it in the transaction are rolled back with it."""
    range_id = _range(any_cloud)
    before = _states(any_cloud)
    with any_cloud.db.read() as session:
        events_before = len(session.execute(select(Event.id)).all())
    now = datetime.now(UTC)
    with pytest.raises(IntegrityError), any_cloud.db.lean_write() as tx:
        take_next_free(tx, "public", range_id, {"state": "Allocated"})
        tx.execute(_EVENT, {"uuid": "same-uuid", "created": now})
        tx.execute(_EVENT, {"uuid": "same-uuid", "created": now})
    assert _states(any_cloud) == before
    with any_cloud.db.read() as session:
        assert len(session.execute(select(Event.id)).all()) == events_before
    with any_cloud.db.lean_write() as tx:
        tx.execute(_EVENT, {"uuid": "same-uuid", "created": now})
    with any_cloud.db.read() as session:
        assert len(session.execute(select(Event.id)).all()) == events_before + 1


def test_lean_write_refuses_statements_rendered_per_call(cloud: Cloud) -> None:
    in_list = select(_TABLE.c.id).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="rendered per call"), cloud.db.lean_write() as tx:
        tx.execute(in_list, {"ids": [1, 2]})


# --- associate_public_ip's hot path (next free address, no network) on the lean path ---


def test_associate_returns_the_row_as_stored_and_its_event(any_cloud: Cloud) -> None:
    _range(any_cloud)
    got = public.associate_public_ip(any_cloud.admin, "z1")  # by zone name, own account
    with any_cloud.db.read() as session:
        stored = session.get(PublicIpAddress, got.id)
        events = session.execute(
            select(Event.resource_uuid, Event.description).where(Event.event_type == "NET.IPASSIGN")
        ).all()
    assert stored is not None
    assert got.model_dump() == stored.model_dump()
    assert (got.address, got.state, got.account_id) == ("10.9.0.2", "Allocated", 1)
    assert got.allocated is not None and got.network_id is None and got.source_nat is False
    assert events == [(got.uuid, "associated 10.9.0.2 with account 'admin'")]


def test_associate_writes_nothing_when_its_audit_event_fails(cloud: Cloud, monkeypatch) -> None:
    _range(cloud)
    before = _states(cloud)

    def broken_event(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("event store broken")

    monkeypatch.setattr(public, "record_event_lean", broken_event)
    with pytest.raises(RuntimeError, match="event store broken"):
        public.associate_public_ip(cloud.admin, "z1")
    assert _states(cloud) == before


def test_associate_on_a_full_range_is_the_typed_error_and_writes_nothing(any_cloud: Cloud):
    _range(any_cloud)
    for _ in range(5):
        public.associate_public_ip(any_cloud.admin, "z1")
    with rejects(any_cloud, AddressExhausted, "10.9.0.2-10.9.0.6 (5 addresses)", "'admin'"):
        public.associate_public_ip(any_cloud.admin, "z1")


def test_associate_answers_bad_references_with_the_resolvers_errors(cloud: Cloud) -> None:
    _range(cloud)
    with rejects(cloud, NotFound, "zone 'nowhere' does not exist"):
        public.associate_public_ip(cloud.admin, "nowhere")
    with rejects(cloud, NotFound, "account 'nobody' does not exist"):
        public.associate_public_ip(cloud.admin, "z1", account_ref="nobody")
    accountless = replace(cloud.admin, account_id=None)
    with rejects(cloud, InvalidParameter, "an account is required"):
        public.associate_public_ip(accountless, "z1")


def test_threads_sharing_one_database_never_share_an_address(cloud: Cloud) -> None:
    """Each thread keeps its own SQLite connection for lean writes; BEGIN IMMEDIATE
    serialises them."""
    zone = create_zone(cloud.admin, "z1", dns1="8.8.8.8")
    public.create_public_ip_range(
        cloud.admin,
        zone.uuid,
        gateway="10.8.0.1",
        netmask="25",
        start_ip="10.8.0.2",
        end_ip="10.8.0.126",
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(
            pool.map(lambda _: public.associate_public_ip(cloud.admin, "z1").address, range(80))
        )
    assert len(set(got)) == 80
    # Disposing closes every thread's connection; the next lean write opens a new one.
    cloud.db.dispose()
    assert public.associate_public_ip(cloud.admin, "z1").address not in got


def test_a_nested_lean_write_is_refused_and_leaves_the_outer_one_whole(cloud: Cloud) -> None:
    range_id = _range(cloud)
    before = _states(cloud)
    with pytest.raises(RuntimeError, match="boom"), cloud.db.lean_write() as tx:
        assert take_next_free(tx, "public", range_id, {"state": "Allocated"}) is not None
        with pytest.raises(RuntimeError, match="do not nest"), cloud.db.lean_write():
            pass
        # Still the outer transaction: what follows rolls back with it.
        assert take_next_free(tx, "public", range_id, {"state": "Allocated"}) is not None
        raise RuntimeError("boom")
    assert _states(cloud) == before
