"""Small pieces the IPAM services share: references for audit events, owners, clocks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, select

from engine.context import Caller
from engine.errors import InvalidParameter
from engine.lookup import resolve
from engine.models import Account, Domain, new_uuid

# Rows per INSERT: SQLite builds may cap bound parameters per statement.
INSERT_CHUNK = 2_000


@dataclass(frozen=True)
class Named:
    """What record_event needs of a resource that has no name column (ranges, addresses)."""

    uuid: str | None
    name: str


def now() -> datetime:
    return datetime.now(UTC)


def caller_account(session: Session, caller: Caller, account_ref: str | None) -> Account:
    """The account named by `account_ref`, else the caller's own."""
    if account_ref is not None:
        return resolve(session, Account, account_ref, "account", field="account")
    if caller.account_id is None:
        raise InvalidParameter("an account is required (the caller has none)", field="account")
    account = session.get(Account, caller.account_id)
    assert account is not None
    return account


def resolve_domain(session: Session, ref: str) -> Domain:
    found = session.get(Domain, int(ref)) if str(ref).isdigit() else None
    if found is not None:
        return found
    by_path = session.exec(select(Domain).where(Domain.path == str(ref))).first()
    if by_path is not None:
        return by_path
    return resolve(session, Domain, ref, "domain", field="domain")


def insert_rows(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    for first in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(table), rows[first : first + INSERT_CHUNK])


def with_uuids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["uuid"] = new_uuid()
    return rows
