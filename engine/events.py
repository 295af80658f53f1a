"""The audit log: every service records who did what to which object, and the outcome."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import Insert, bindparam, insert
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.db import LeanWrite
from engine.models import Event, new_uuid, utcnow


class _Named(Protocol):
    @property
    def uuid(self) -> str | None: ...

    @property
    def name(self) -> str: ...


def record_event(
    session: Session,
    caller: Caller,
    event_type: str,
    resource_type: str,
    resource: _Named | None,
    description: str,
    *,
    level: str = "INFO",
    state: str = "Completed",
) -> Event:
    """Add an event in the caller's transaction, so it commits or rolls back with the change."""
    event = Event(
        **_event_values(
            caller, event_type, resource_type, resource, description, level=level, state=state
        )
    )
    session.add(event)
    return event


def _event_values(
    caller: Caller,
    event_type: str,
    resource_type: str,
    resource: _Named | None,
    description: str,
    *,
    level: str,
    state: str,
) -> dict[str, Any]:
    return {
        "user_id": caller.user_id,
        "account_id": caller.account_id,
        "username": caller.username,
        "event_type": event_type,
        "level": level,
        "state": state,
        "resource_type": resource_type,
        "resource_uuid": resource.uuid if resource is not None else None,
        "resource_name": resource.name if resource is not None else "",
        "description": description,
    }


@lru_cache(maxsize=1)
def _insert_event() -> Insert:
    # Every column but the key is a parameter: a column added to Event without a value
    # here fails loudly instead of being stored NULL.
    table = Event.__table__  # type: ignore[attr-defined]
    return insert(table).values(
        {c.name: bindparam(f"e_{c.name}", type_=c.type) for c in table.columns if c.name != "id"}
    )


def record_event_lean(
    tx: LeanWrite,
    caller: Caller,
    event_type: str,
    resource_type: str,
    resource: _Named | None,
    description: str,
    *,
    level: str = "INFO",
    state: str = "Completed",
) -> None:
    """record_event for a lean write transaction (Database.lean_write()): the same row."""
    values = _event_values(
        caller, event_type, resource_type, resource, description, level=level, state=state
    )
    values |= {"uuid": new_uuid(), "created": utcnow()}
    tx.execute(_insert_event(), {f"e_{name}": value for name, value in values.items()})


def list_events(caller: Caller, *, limit: int = 100, before_id: int | None = None) -> list[Event]:
    """Newest first, keyset-paged by id."""
    with caller.db.read() as session:
        query = select(Event).order_by(col(Event.id).desc()).limit(limit)
        if before_id is not None:
            query = query.where(col(Event.id) < before_id)
        return list(session.exec(query))
