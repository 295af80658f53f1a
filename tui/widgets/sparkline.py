"""Text sparklines for live metrics: one line of eighth-blocks with the latest value.

    CPU %      ▁▂▂▃▅▇█▆▄▃  42.0  (min 3.0, max 97.0)

Block heights carry the shape without colour, so they read on any terminal. `History`
keeps the last N samples of each named series (a live screen appends one sample per
refresh).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from rich.text import Text

BLOCKS = "▁▂▃▄▅▆▇█"
WIDTH = 30


def spark(values: Sequence[float], width: int = WIDTH) -> str:
    """The last `width` values as blocks, scaled between their minimum and maximum."""
    shown = list(values)[-width:]
    if not shown:
        return ""
    low, high = min(shown), max(shown)
    span = high - low
    if span <= 0:
        # A flat series: middle blocks for a non-zero value, floor blocks for zero.
        return (BLOCKS[3] if high else BLOCKS[0]) * len(shown)
    top = len(BLOCKS) - 1
    return "".join(BLOCKS[round((v - low) / span * top)] for v in shown)


def sparkline_line(
    label: str, values: Sequence[float], *, width: int = WIDTH, label_width: int = 11
) -> Text:
    text = Text(f"{label:<{label_width}}", style="bold")
    if not values:
        text.append("no samples yet", style="dim")
        return text
    text.append(f"{spark(values, width):<{width}}", style="cyan")
    text.append(f"  {values[-1]:,.1f}")
    if len(values) > 1:
        text.append(f"  (min {min(values):,.1f}, max {max(values):,.1f})", style="dim")
    return text


class History:
    """The last `size` samples of each named series, in arrival order of the names."""

    def __init__(self, size: int = WIDTH) -> None:
        self.size = size
        self.series: dict[str, deque[float]] = {}

    def add(self, sample: Mapping[str, float]) -> None:
        for name, value in sample.items():
            self.series.setdefault(name, deque(maxlen=self.size)).append(float(value))

    def lines(self, width: int = WIDTH) -> list[Text]:
        return [sparkline_line(n, list(v), width=width) for n, v in self.series.items()]
