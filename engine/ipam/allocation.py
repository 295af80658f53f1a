"""The allocation primitive: one statement that picks a free row and marks it taken.

    UPDATE t SET state = 'Allocated', ...
     WHERE id = (SELECT id FROM t WHERE <pool> = :pool AND state = 'Free'
                  ORDER BY <value> LIMIT 1 [FOR UPDATE SKIP LOCKED])
       AND state = 'Free'
    RETURNING id, <value>

The subquery walks the (pool, state, value) index, so finding the lowest free row costs
the same at 0 % and at 99 % full, and a full pool is one index probe that finds nothing.
The outer `state = 'Free'` re-check plus the unique constraints make a double hand-out
impossible: on SQLite writers are serialised (BEGIN IMMEDIATE); on PostgreSQL the row
lock taken by FOR UPDATE SKIP LOCKED keeps concurrent servers off the same row.

The functions here run inside the caller's transaction, so a multi-step operation
(deploy: place → addresses → volumes) commits or rolls back all of it. That transaction is
an ORM Session (Database.write()) or, on hot paths, a LeanWrite (Database.lean_write():
the same BEGIN IMMEDIATE transaction on a pooled driver connection, without the Session's
bookkeeping, which costs several times what the statement itself does on SQLite). Every
statement here is built once per shape, so the lean path compiles it once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, Update, bindparam, func, select, update
from sqlmodel import Session

from engine.db import LeanWrite
from engine.models import (
    GuestIpAddress,
    IpAddressState,
    PodManagementAddress,
    PublicIpAddress,
    VniState,
    ZoneVni,
)

FREE = IpAddressState.FREE

# An ORM session or a lean driver transaction: the primitives run in either.
Transaction = Session | LeanWrite

# Each pool kind: (table, pool column, ordered value column, returned text column).
_POOLS: dict[str, tuple[Table, str, str, str]] = {
    "public": (PublicIpAddress.__table__, "range_id", "ip_int", "address"),  # type: ignore[attr-defined]
    "guest": (GuestIpAddress.__table__, "range_id", "ip_int", "address"),  # type: ignore[attr-defined]
    "management": (PodManagementAddress.__table__, "pod_id", "ip_int", "address"),  # type: ignore[attr-defined]
    "vni": (ZoneVni.__table__, "range_id", "vni", "vni"),  # type: ignore[attr-defined]
}


def _first(tx: Transaction, statement: Any, params: dict[str, Any]) -> Any | None:
    if isinstance(tx, LeanWrite):
        return tx.first(statement, params)
    return tx.execute(statement, params).first()


def take_next_free(
    tx: Transaction, kind: str, pool_id: int, values: dict[str, Any]
) -> tuple[int, Any] | None:
    """Mark the lowest free row of the pool with `values`; (row id, value) or None if full.

    Set only what differs from a free row (state, owner…): each column set that an index
    holds costs an index update."""
    statement = next_free_statement(kind, tuple(sorted(values)))
    params = {"pool_id": pool_id, **{f"set_{k}": v for k, v in values.items()}}
    row = _first(tx, statement, params)
    return (row[0], row[1]) if row is not None else None


@lru_cache(maxsize=64)
def next_free_statement(kind: str, columns: tuple[str, ...]) -> Update:
    """The picking UPDATE … RETURNING (id, value) of a pool kind, setting `columns` from
    the parameters `set_<column>`; the pool is the parameter `pool_id`. Built once per
    shape, so each call only binds values (bench/ipam.py compiles it for its floor)."""
    table, pool_col, value_col, text_col = _POOLS[kind]
    free = FREE if kind != "vni" else VniState.FREE
    pick = (
        select(table.c.id)
        .where(table.c[pool_col] == bindparam("pool_id"), table.c.state == free)
        .order_by(table.c[value_col])
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(table)
        .where(table.c.id == pick, table.c.state == free)
        .values({name: bindparam(f"set_{name}", type_=table.c[name].type) for name in columns})
        .returning(table.c.id, table.c[text_col])
    )


def take_exact(
    session: Session,
    kind: str,
    scope: dict[str, Any],
    value: int,
    values: dict[str, Any],
    *,
    from_states: tuple[str, ...] = (FREE,),
) -> int | None:
    """Mark the row holding `value` in `scope` if it is in one of `from_states`; its id."""
    table, _, value_col, _ = _POOLS[kind]
    statement = update(table).where(table.c[value_col] == value, table.c.state.in_(from_states))
    for column, wanted in scope.items():
        statement = statement.where(table.c[column] == wanted)
    row = session.execute(statement.values(**values).returning(table.c.id)).first()
    return row[0] if row is not None else None


@lru_cache(maxsize=8)
def _count_free_statement(kind: str) -> Any:
    table, pool_col, _, _ = _POOLS[kind]
    free = FREE if kind != "vni" else VniState.FREE
    return (
        select(func.count())
        .select_from(table)
        .where(table.c[pool_col] == bindparam("pool_id"), table.c.state == free)
    )


def count_free(tx: Transaction, kind: str, pool_id: int) -> int:
    return _first(tx, _count_free_statement(kind), {"pool_id": pool_id})[0]


def _dialect_name(tx: Transaction) -> str:
    return tx.dialect_name if isinstance(tx, LeanWrite) else tx.get_bind().dialect.name


def take_from_pools(
    tx: Transaction,
    kind: str,
    pool_ids: list[int],
    values: dict[str, Any],
    *,
    before_retry: Callable[[int], int] | None = None,
) -> tuple[int, int, Any] | None:
    """Try each pool in order; (pool id, row id, value) of the first hit, None if all full.

    On PostgreSQL, SKIP LOCKED can pass over rows other transactions hold for a moment,
    so an apparently full pool that still counts free rows is tried again. `before_retry`
    may free rows (expired quarantines) and returns how many it freed.
    """
    skips_locked = _dialect_name(tx) != "sqlite"
    for pool_id in pool_ids:
        for _attempt in range(5):
            taken = take_next_free(tx, kind, pool_id, values)
            if taken is not None:
                return (pool_id, *taken)
            freed = before_retry(pool_id) if before_retry is not None else 0
            if not freed and not (skips_locked and count_free(tx, kind, pool_id)):
                break
    return None
