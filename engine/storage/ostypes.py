"""Guest OS types (CloudStack's listOsTypes), shipped in data/os_types.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from engine.errors import InvalidParameter

OS_TYPES_FILE = "os_types.toml"


@dataclass(frozen=True)
class OsType:
    name: str
    category: str


@lru_cache(maxsize=1)
def os_types() -> tuple[OsType, ...]:
    """Every shipped OS type, in file order (category by category)."""
    text = resources.files("data").joinpath(OS_TYPES_FILE).read_text(encoding="utf-8")
    categories = tomllib.loads(text)["categories"]
    return tuple(
        OsType(name=name, category=category)
        for category, names in categories.items()
        for name in names
    )


@lru_cache(maxsize=1)
def _by_folded_name() -> dict[str, OsType]:
    return {t.name.casefold(): t for t in os_types()}


def check_os_type(label: str, value: object) -> str:
    """The canonical name of a shipped OS type (matched ignoring case), else InvalidParameter."""
    text = value.strip() if isinstance(value, str) else ""
    found = _by_folded_name().get(text.casefold()) if text else None
    if found is None:
        shown = repr(text[:64]) if text else "(none)"
        raise InvalidParameter(
            f"{label}: OS type {shown} is not a known OS type (see list_os_types(), e.g. "
            "'Other Linux (64-bit)')",
            field="os_type",
        )
    return found.name


def list_os_types(category: str | None = None) -> list[OsType]:
    return [t for t in os_types() if category is None or t.category == category]
