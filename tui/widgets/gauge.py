"""A text capacity gauge: label, bar, percent, spelled state and the numbers.

    CPU        [██████████░░░░░░░░░░]  52%  ok       1.2 / 2.2 THz

Everything reads without colour: the bar is solid and shaded blocks, the percent is a
number and the state is a word (ok, high, over, n/a). Colours are named ANSI colours, the
same in truecolor, 256-colour and `ansi` terminals.

`gauge_line` returns a Rich `Text` for use inside other renderables (dashboard panels,
tree labels); `Gauge` is the same as a one-line widget.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

BAR_WIDTH = 20
LABEL_WIDTH = 11
# Above `HIGH` a gauge says "high"; at or above its limit (a disable threshold) "over".
HIGH = 0.75
LIMIT = 0.90

STATE_STYLES = {"ok": "green", "high": "bold yellow", "over": "bold red", "n/a": "dim"}


def gauge_state(fraction: float | None, *, limit: float = LIMIT, high: float = HIGH) -> str:
    if fraction is None:
        return "n/a"
    if fraction >= limit:
        return "over"
    if fraction >= min(high, limit):
        return "high"
    return "ok"


def bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """Solid blocks for the used part, shaded ones for the rest; dots when unknown."""
    if fraction is None:
        return "·" * width
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    if fraction > 0 and filled == 0:
        filled = 1  # something is used: never show an empty bar
    return "█" * filled + "░" * (width - filled)


def gauge_line(
    label: str,
    used: float | None,
    total: float | None,
    *,
    unit: Callable[[float], str] | None = None,
    limit: float = LIMIT,
    high: float = HIGH,
    bar_width: int = BAR_WIDTH,
    label_width: int = LABEL_WIDTH,
    note: str = "",
) -> Text:
    """One gauge; `total` of None or 0 shows "n/a" (nothing to measure)."""
    fraction = used / total if used is not None and total else None
    state = gauge_state(fraction, limit=limit, high=high)
    style = STATE_STYLES[state]
    text = Text(f"{label:<{label_width}}", style="bold")
    text.append("[")
    text.append(bar(fraction, bar_width), style=style)
    text.append("] ")
    text.append(f"{fraction * 100:3.0f}%" if fraction is not None else "   -", style=style)
    text.append(f"  {state:<4}", style=style)
    if fraction is not None and used is not None and total is not None:
        text.append(f"  {figures(used, total, unit)}")
    if note:
        text.append(f"  {note}", style="dim")
    return text


def figures(used: float, total: float, unit: Callable[[float], str] | None = None) -> str:
    """ "12.0 / 64.0 GHz": the unit once when both figures share it."""
    show = unit or (lambda v: f"{v:,.0f}")
    low, high = show(used), show(total)
    low_number, _, low_unit = low.partition(" ")
    high_unit = high.partition(" ")[2]
    if low_unit and low_unit == high_unit:
        return f"{low_number} / {high}"
    return f"{low} / {high}"


class Gauge(Static):
    """A one-line gauge widget; `update_figures` redraws it."""

    DEFAULT_CSS = """
    Gauge {
        height: 1;
        width: 1fr;
    }
    """

    def __init__(
        self,
        label: str,
        used: float | None = None,
        total: float | None = None,
        *,
        unit: Callable[[float], str] | None = None,
        limit: float = LIMIT,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        self.label_text = label
        self.unit = unit
        self.limit = limit
        self.used = used
        self.total = total
        super().__init__(self._line(), id=id, classes=classes)

    def _line(self) -> Text:
        return gauge_line(self.label_text, self.used, self.total, unit=self.unit, limit=self.limit)

    @property
    def state(self) -> str:
        fraction = self.used / self.total if self.used is not None and self.total else None
        return gauge_state(fraction, limit=self.limit)

    def update_figures(self, used: float | None, total: float | None) -> None:
        self.used, self.total = used, total
        self.update(self._line())


# --- units -----------------------------------------------------------------------------


def _scaled(value: float, steps: list[tuple[float, str]]) -> str:
    for size, name in steps:
        if abs(value) >= size:
            shown = value / size
            return f"{shown:,.1f} {name}" if shown < 100 else f"{shown:,.0f} {name}"
    size, name = steps[-1]
    return f"{value / size:,.0f} {name}"


def human_bytes(value: float) -> str:
    return _scaled(
        value,
        [(2**50, "PiB"), (2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")],
    )


def human_mhz(value: float) -> str:
    return _scaled(value, [(1e6, "THz"), (1e3, "GHz"), (1, "MHz")])


def human_count(value: float) -> str:
    return f"{value:,.0f}"
