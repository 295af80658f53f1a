"""The audit log: every service records who did what to which object, and the outcome."""

from __future__ import annotations

from typing import Protocol

from sqlmodel import Session, col, select

from engine.context import Caller
from engine.models import Event


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
        user_id=caller.user_id,
        account_id=caller.account_id,
        username=caller.username,
        event_type=event_type,
        level=level,
        state=state,
        resource_type=resource_type,
        resource_uuid=resource.uuid if resource is not None else None,
        resource_name=resource.name if resource is not None else "",
        description=description,
    )
    session.add(event)
    return event


def list_events(caller: Caller, *, limit: int = 100, before_id: int | None = None) -> list[Event]:
    """Newest first, keyset-paged by id."""
    with caller.db.read() as session:
        query = select(Event).order_by(col(Event.id).desc()).limit(limit)
        if before_id is not None:
            query = query.where(col(Event.id) < before_id)
        return list(session.exec(query))
