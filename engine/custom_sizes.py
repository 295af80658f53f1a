"""Customized service offerings: each VM names its own CPU count, speed and memory within
the offering's limits (CloudStack's "custom constrained" offerings; no limit given means
only the floors below apply, placement still decides whether a host has room).

- `SizeLimits` / `size_limits(offering)`: what a customized offering lets a VM choose.
- `check_limits(label, ...)`: the limits an operator gives when creating such an offering.
- `size_errors(limits, cpu_count, cpu_mhz, memory_bytes)`: one message per bad field
  (the console shows each next to its field); `check_custom_sizes` raises the first.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidParameter
from engine.models import ServiceOffering

MIB = 2**20
GIB = 2**30
# Below these no guest boots, whatever the offering says.
FLOOR = {"cpu_count": 1, "cpu_mhz": 100, "memory_bytes": 32 * MIB}
FIELDS = ("cpu_count", "cpu_mhz", "memory_bytes")


def human_memory(n: int) -> str:
    if n >= GIB and n % GIB == 0:
        return f"{n // GIB} GiB"
    return f"{n // MIB} MiB"


def _show(field: str, n: int) -> str:
    if field == "memory_bytes":
        return human_memory(n)
    return f"{n} MHz" if field == "cpu_mhz" else f"{n} CPU{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class SizeLimits:
    """The range each size may take (maximum None: no upper limit) and the defaults."""

    offering: str
    cpu_count: tuple[int, int | None]
    cpu_mhz: tuple[int, int | None]
    memory_bytes: tuple[int, int | None]
    default_cpu_count: int
    default_cpu_mhz: int
    default_memory_bytes: int

    def range_text(self, field: str) -> str:
        """ "1-8 CPUs", "500-3000 MHz", "256 MiB-16 GiB", "at least 100 MHz"."""
        low, high = getattr(self, field)
        if high is None:
            return f"at least {_show(field, low)}"
        if field == "memory_bytes":
            return f"{human_memory(low)}-{human_memory(high)}"
        unit = "MHz" if field == "cpu_mhz" else "CPUs"
        return f"{low}-{high} {unit}"


def size_limits(offering: ServiceOffering) -> SizeLimits:
    def pair(field: str) -> tuple[int, int | None]:
        low = getattr(offering, f"min_{field}")
        return (FLOOR[field] if low is None else max(low, FLOOR[field])), getattr(
            offering, f"max_{field}"
        )

    return SizeLimits(
        offering.name,
        pair("cpu_count"),
        pair("cpu_mhz"),
        pair("memory_bytes"),
        offering.cpu_count,
        offering.cpu_mhz,
        offering.memory_bytes,
    )


def what(field: str) -> str:
    return {"cpu_count": "CPU count", "cpu_mhz": "CPU speed", "memory_bytes": "memory"}[field]


def size_errors(
    limits: SizeLimits, cpu_count: object, cpu_mhz: object, memory_bytes: object
) -> dict[str, str]:
    """field -> why its value is refused ("8 CPUs is outside 1-4 CPUs", short enough to
    stand under its field); empty when all three are within the limits."""
    errors: dict[str, str] = {}
    for field, value in zip(FIELDS, (cpu_count, cpu_mhz, memory_bytes), strict=True):
        low, high = getattr(limits, field)
        if isinstance(value, bool) or not isinstance(value, int):
            errors[field] = f"{value!r} is not a whole number"
        elif value < low or (high is not None and value > high):
            errors[field] = f"{_show(field, value)} is outside {limits.range_text(field)}"
    return errors


def check_custom_sizes(
    label: str, limits: SizeLimits, cpu_count: object, cpu_mhz: object, memory_bytes: object
) -> tuple[int, int, int]:
    """The three sizes, or InvalidParameter naming the offering and the first bad field."""
    errors = size_errors(limits, cpu_count, cpu_mhz, memory_bytes)
    for field in FIELDS:
        if field in errors:
            raise InvalidParameter(
                f"{label}: {what(field)} {errors[field]} allowed by customized offering "
                f"'{limits.offering}'",
                field=field,
            )
    return cpu_count, cpu_mhz, memory_bytes  # type: ignore[return-value]


def check_limits(
    label: str,
    defaults: tuple[int, int, int],
    limits: dict[str, tuple[int | None, int | None]],
) -> None:
    """Limits given at creation: whole numbers, min not above max, defaults within them."""
    for field, default in zip(FIELDS, defaults, strict=True):
        low, high = limits[field]
        for end, value in (("min", low), ("max", high)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < FLOOR[field]:
                raise InvalidParameter(
                    f"{label}: {end}_{field} {value!r} must be a whole number of at least "
                    f"{FLOOR[field]}",
                    field=f"{end}_{field}",
                )
        if low is not None and high is not None and low > high:
            raise InvalidParameter(
                f"{label}: min_{field} {low} is above max_{field} {high}", field=f"min_{field}"
            )
        if (low is not None and default < low) or (high is not None and default > high):
            raise InvalidParameter(
                f"{label}: the default {what(field)} {_show(field, default)} is outside the limits",
                field=field,
            )
