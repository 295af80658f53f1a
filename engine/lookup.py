"""Finding objects by reference, and the uniqueness checks every service shares."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlmodel import Session, SQLModel, select

from engine.errors import AlreadyExists, InvalidParameter, NotFound
from engine.validation import check_name

T = TypeVar("T", bound=SQLModel)


def resolve(
    session: Session,
    model: type[T],
    ref: str | int | T,
    kind: str,
    *,
    field: str,
    within: str | None = None,
    **scope: Any,
) -> T:
    """Find an object by UUID, or by name (within `scope`) when the name is unambiguous."""
    if isinstance(ref, model):
        ref = ref.uuid  # type: ignore[attr-defined]
    text = str(ref).strip()
    if not text:
        raise InvalidParameter(f"a {kind} is required", field=field)
    found = session.exec(select(model).where(model.uuid == text)).first()  # type: ignore[attr-defined]
    if found is not None:
        return found
    query = select(model).where(model.name == text)  # type: ignore[attr-defined]
    for column, value in scope.items():
        query = query.where(getattr(model, column) == value)
    matches = list(session.exec(query.limit(2)))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InvalidParameter(
            f"{kind} name '{text}' is ambiguous; give its UUID instead", field=field
        )
    where = f" in {within}" if within else ""
    raise NotFound(f"{kind} '{text}' does not exist{where}", field=field)


def ensure_unique_name(
    session: Session, model: type[SQLModel], label: str, name: str, **scope: Any
) -> None:
    query = select(model.id).where(model.name == name)  # type: ignore[attr-defined]
    for column, value in scope.items():
        query = query.where(getattr(model, column) == value)
    if session.exec(query.limit(1)).first() is not None:
        raise AlreadyExists(f"{label}: the name '{name}' is already taken", field="name")


def reject_unknown_fields(label: str, changes: dict[str, Any], allowed: set[str]) -> None:
    """Refuse changes to fields an update cannot touch; `label` names the object."""
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidParameter(
            f"{label}: {', '.join(unknown)} cannot be changed "
            f"(changeable: {', '.join(sorted(allowed))})",
            field=unknown[0],
        )


def apply_rename(
    session: Session, obj: Any, label: str, changes: dict[str, Any], **scope: Any
) -> None:
    """Rename `obj` when `changes` holds a new name: valid, and unique within `scope`."""
    if "name" not in changes:
        return
    name = check_name(label, changes["name"])
    if name != obj.name:
        ensure_unique_name(session, type(obj), label, name, **scope)
    obj.name = name
