"""Database.lean_write(): the Session-free write transaction the allocation hot path uses.
Commits when the block ends, writes nothing on any error, and runs the same picking
statement as a Session, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.bootstrap import Cloud
from engine.ipam import public
from engine.ipam.allocation import take_from_pools, take_next_free
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
