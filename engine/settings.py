"""CloudStack settings: global values with zone / cluster / storage pool / account overrides.

Definitions (name, type, default, allowed scopes, bounds) ship in `data/settings.toml` and
are seeded into the `configuration` table on start. The effective value of a setting for an
object is its override at that object's scope, else the global value, else the default.

A few cluster and pool settings are columns of those tables (the placement engine reads
them with every host snapshot); for those the column is the override, so there is exactly
one place each value lives.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from sqlmodel import Session, col, select

from engine.context import Caller
from engine.errors import InvalidParameter, NotFound
from engine.events import record_event
from engine.models import (
    Account,
    Cluster,
    Configuration,
    ConfigurationOverride,
    StoragePool,
    Zone,
    utcnow,
)
from engine.validation import check_factor, check_threshold

SCOPE_TABLES: dict[str, type] = {
    "zone": Zone,
    "cluster": Cluster,
    "storagepool": StoragePool,
    "account": Account,
}

# Settings whose override at a scope is a column of the scoped object.
COLUMN_SETTINGS: dict[tuple[str, str], str] = {
    ("cluster", "cpu.overprovisioning.factor"): "cpu_overprovisioning_factor",
    ("cluster", "mem.overprovisioning.factor"): "mem_overprovisioning_factor",
    ("cluster", "cluster.cpu.allocated.capacity.disablethreshold"): "cpu_disable_threshold",
    ("cluster", "cluster.memory.allocated.capacity.disablethreshold"): "mem_disable_threshold",
    ("storagepool", "storage.overprovisioning.factor"): "overprovisioning_factor",
    ("storagepool", "pool.storage.capacity.disablethreshold"): "capacity_disable_threshold",
    ("storagepool", "pool.storage.allocated.capacity.disablethreshold"): (
        "allocated_disable_threshold"
    ),
}


# Rules beyond type and bounds, shared with the cluster and pool services so a value is
# judged the same whether it is set through a setting or on the object itself.
VALUE_RULES: dict[str, tuple[Callable[..., float | None], str]] = {
    "cpu.overprovisioning.factor": (check_factor, "the factor"),
    "mem.overprovisioning.factor": (check_factor, "the factor"),
    "storage.overprovisioning.factor": (check_factor, "the factor"),
    "cluster.cpu.allocated.capacity.disablethreshold": (check_threshold, "the threshold"),
    "cluster.memory.allocated.capacity.disablethreshold": (check_threshold, "the threshold"),
    "pool.storage.capacity.disablethreshold": (check_threshold, "the threshold"),
    "pool.storage.allocated.capacity.disablethreshold": (check_threshold, "the threshold"),
}


@dataclass(frozen=True)
class SettingDefinition:
    name: str
    default: str
    value_type: str
    scopes: tuple[str, ...]
    category: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: str, *, where: str = "") -> int | float | bool | str:
        """Convert and check a value; the error names the setting and the rule."""
        label = f"setting '{self.name}'{where}"
        text = str(raw).strip()
        value: int | float | bool | str
        try:
            if self.value_type == "int":
                value = int(text)
            elif self.value_type == "float":
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError
            elif self.value_type == "bool":
                lowered = text.lower()
                if lowered not in {"true", "false"}:
                    raise ValueError
                value = lowered == "true"
            else:
                value = text
        except ValueError:
            raise InvalidParameter(
                f"{label}: {raw!r} is not a valid {self.value_type}", field="value"
            ) from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise InvalidParameter(
                    f"{label}: {value} is below the minimum {self.minimum:g}", field="value"
                )
            if self.maximum is not None and value > self.maximum:
                raise InvalidParameter(
                    f"{label}: {value} is above the maximum {self.maximum:g}", field="value"
                )
        if self.choices and value not in self.choices:
            raise InvalidParameter(
                f"{label}: {raw!r} is not one of {', '.join(self.choices)}", field="value"
            )
        return value


@cache
def definitions() -> dict[str, SettingDefinition]:
    text = resources.files("data").joinpath("settings.toml").read_text(encoding="utf-8")
    result = {}
    for name, spec in tomllib.loads(text)["settings"].items():
        result[name] = SettingDefinition(
            name=name,
            default=str(spec["default"]),
            value_type=spec["type"],
            scopes=tuple(spec.get("scopes", ())),
            category=spec.get("category", "Advanced"),
            description=spec.get("description", ""),
            minimum=spec.get("min"),
            maximum=spec.get("max"),
            choices=tuple(spec.get("choices", ())),
        )
    return result


def definition(name: str) -> SettingDefinition:
    try:
        return definitions()[name]
    except KeyError:
        raise NotFound(f"setting '{name}' does not exist", field="name") from None


def seed_settings(session: Session) -> int:
    """Insert settings this version knows and the database lacks; refresh their metadata.

    Operator-set values are never touched. Returns how many settings were added.
    """
    existing = {row.name: row for row in session.exec(select(Configuration))}
    added = 0
    for d in definitions().values():
        row = existing.get(d.name)
        if row is None:
            row = Configuration(name=d.name, default_value=d.default, value_type=d.value_type)
            added += 1
        row.default_value = d.default
        row.value_type = d.value_type
        row.scopes = ",".join(d.scopes)
        row.category = d.category
        row.description = d.description
        session.add(row)
    return added


@dataclass(frozen=True)
class _SettingName:
    """A setting as an audit-log resource: it has a name and no UUID."""

    name: str
    uuid: str | None = None


@dataclass(frozen=True)
class SettingView:
    name: str
    category: str
    description: str
    value_type: str
    default: str
    global_value: str | None
    scopes: tuple[str, ...]
    # Value in force where asked (global, or at the scope given) and where it came from.
    effective: str
    source: str  # "default", "global", or the scope type of the override


def _scoped_object(session: Session, scope_type: str, scope_uuid: str):  # type: ignore[no-untyped-def]
    table = SCOPE_TABLES.get(scope_type)
    if table is None:
        raise InvalidParameter(
            f"scope '{scope_type}' is not one of global, {', '.join(SCOPE_TABLES)}",
            field="scope",
        )
    obj = session.exec(select(table).where(table.uuid == scope_uuid)).first()  # type: ignore[attr-defined]
    if obj is None:
        raise NotFound(f"{scope_type} {scope_uuid} does not exist", field="scope")
    return obj


def _override(session: Session, name: str, scope_type: str, obj) -> str | None:  # type: ignore[no-untyped-def]
    column = COLUMN_SETTINGS.get((scope_type, name))
    if column is not None:
        value = getattr(obj, column)
        return None if value is None else str(value)
    row = session.exec(
        select(ConfigurationOverride).where(
            ConfigurationOverride.name == name,
            ConfigurationOverride.scope_type == scope_type,
            ConfigurationOverride.scope_id == obj.id,
        )
    ).first()
    return row.value if row else None


def list_settings(
    caller: Caller, *, scope_type: str | None = None, scope_uuid: str | None = None
) -> list[SettingView]:
    """Every setting, with the value in force globally or at the given object."""
    with caller.db.read() as session:
        obj = _scoped_object(session, scope_type, scope_uuid or "") if scope_type else None
        views = []
        for row in session.exec(select(Configuration).order_by(Configuration.name)):
            d = definitions().get(row.name)
            scopes = d.scopes if d else tuple(filter(None, row.scopes.split(",")))
            if scope_type and scope_type not in scopes:
                continue
            effective, source = (
                (row.value, "global")
                if row.value is not None
                else (
                    row.default_value,
                    "default",
                )
            )
            if obj is not None:
                override = _override(session, row.name, scope_type or "", obj)
                if override is not None:
                    effective, source = override, scope_type or "global"
            views.append(
                SettingView(
                    name=row.name,
                    category=row.category,
                    description=row.description,
                    value_type=row.value_type,
                    default=row.default_value,
                    global_value=row.value,
                    scopes=scopes,
                    effective=effective,
                    source=source,
                )
            )
        return views


def effective_value(
    session: Session,
    name: str,
    *,
    scope_type: str | None = None,
    scope_obj=None,  # type: ignore[no-untyped-def]
) -> int | float | bool | str:
    """The typed value in force for `name`, at `scope_obj` if given."""
    d = definition(name)
    if scope_type and scope_obj is not None:
        override = _override(session, name, scope_type, scope_obj)
        if override is not None:
            return d.parse(override)
    row = session.get(Configuration, name)
    raw = row.value if row is not None and row.value is not None else d.default
    return d.parse(raw)


def global_values(session: Session, names: list[str]) -> dict[str, int | float | bool | str]:
    """The typed global values of several settings in one query."""
    rows = {
        row.name: row.value
        for row in session.exec(select(Configuration).where(col(Configuration.name).in_(names)))
    }
    result = {}
    for name in names:
        d = definition(name)
        raw = rows.get(name)
        result[name] = d.parse(raw if raw is not None else d.default)
    return result


def update_setting(
    caller: Caller,
    name: str,
    value: str | None,
    *,
    scope_type: str | None = None,
    scope_uuid: str | None = None,
) -> SettingView:
    """Set a setting globally or at one object; `value=None` goes back to inheriting."""
    d = definition(name)
    with caller.db.write() as session:
        where = ""
        obj = None
        if scope_type:
            obj = _scoped_object(session, scope_type, scope_uuid or "")
            where = f" for {scope_type} '{obj.name}'"
            if scope_type not in d.scopes:
                allowed = ", ".join(d.scopes) or "none"
                raise InvalidParameter(
                    f"setting '{name}' cannot be overridden per {scope_type} "
                    f"(scopes allowed: {allowed})",
                    field="scope",
                )
        parsed = None if value is None else d.parse(value, where=where)
        rule = VALUE_RULES.get(name)
        if parsed is not None and rule is not None:
            # The same rule as the cluster/pool column the value may land in.
            rule[0](f"setting '{name}'{where}", parsed, field="value", what=rule[1])
        text = None if parsed is None else str(value).strip()
        if obj is None:
            row = session.get(Configuration, name)
            assert row is not None, "settings are seeded on start"
            row.value = text
            row.updated = utcnow()
            session.add(row)
        else:
            _store_override(session, name, scope_type or "", obj, parsed, text)
        shown = "its default" if text is None else text
        record_event(
            session,
            caller,
            "CONFIGURATION.VALUE.EDIT",
            "Configuration",
            _SettingName(name),
            f"set {name}{where} to {shown}",
        )
    return next(
        v
        for v in list_settings(caller, scope_type=scope_type, scope_uuid=scope_uuid)
        if v.name == name
    )


def _store_override(session: Session, name: str, scope_type: str, obj, parsed, text) -> None:  # type: ignore[no-untyped-def]
    column = COLUMN_SETTINGS.get((scope_type, name))
    if column is not None:
        setattr(obj, column, parsed)
        session.add(obj)
        return
    row = session.exec(
        select(ConfigurationOverride).where(
            ConfigurationOverride.name == name,
            ConfigurationOverride.scope_type == scope_type,
            ConfigurationOverride.scope_id == obj.id,
        )
    ).first()
    if text is None:
        if row is not None:
            session.delete(row)
        return
    if row is None:
        row = ConfigurationOverride(name=name, scope_type=scope_type, scope_id=obj.id, value=text)
    row.value = text
    row.updated = utcnow()
    session.add(row)


def delete_overrides(session: Session, scope_type: str, scope_id: int) -> None:
    """Drop the overrides of an object that is being deleted."""
    for row in session.exec(
        select(ConfigurationOverride).where(
            ConfigurationOverride.scope_type == scope_type,
            ConfigurationOverride.scope_id == scope_id,
        )
    ):
        session.delete(row)
