"""A table drawn line by line: a fixed header and a window of rows, cheap at any size.

Textual's DataTable renders every cell through Rich's layout pipeline; paging a 120x40
screen of 8 columns costs about a tenth of a second. `RowTable` keeps each row as a few
short styled strings and builds the visible lines directly as segments (the line API, as
toolong does for huge logs), so a redraw costs a couple of milliseconds whatever is
scrolled in. It holds only what the screen gives it (`set_rows`): the screen pages rows
in and out from the engine.

Keys: ↑ ↓ PgUp PgDn move the cursor, Enter selects; a click on a row moves the cursor
there, a click on a header posts `HeaderSelected`. Messages mirror DataTable's.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

MAX_WIDTH = 40  # a column never grows wider than this
GAP = 2


@dataclass(frozen=True)
class _Frame:
    width: int
    scroll_x: int
    scroll_y: int
    base: Style
    header: Style
    cursor: Style
    even: Style


@dataclass
class Column:
    key: str
    label: Text
    width: int = 0


class RowTable(ScrollView, can_focus=True):
    """Rows of cells (rich Text, one line each) under a header row."""

    COMPONENT_CLASSES = {
        "row-table--header",
        "row-table--cursor",
        "row-table--even",
    }
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False, id="rows.up"),
        Binding("down", "cursor(1)", "Down", show=False, id="rows.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="rows.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="rows.page_down"),
        Binding("enter", "select", "Open", id="rows.open"),
    ]
    DEFAULT_CSS = """
    RowTable {
        height: 1fr;
        padding: 0 0 0 1;
        background: $surface;
    }
    RowTable > .row-table--header {
        text-style: bold;
        background: $panel;
        color: $text;
    }
    RowTable > .row-table--cursor {
        background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground;
    }
    RowTable:focus > .row-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    RowTable > .row-table--even {
        background: $surface-lighten-1 40%;
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, init=False)

    class RowHighlighted(Message):
        def __init__(self, table: RowTable, cursor_row: int) -> None:
            super().__init__()
            self.table, self.cursor_row = table, cursor_row

        @property
        def control(self) -> RowTable:
            return self.table

    class RowSelected(RowHighlighted):
        pass

    class HeaderSelected(Message):
        def __init__(self, table: RowTable, column_key: str) -> None:
            super().__init__()
            self.table, self.column_key = table, column_key

        @property
        def control(self) -> RowTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: dict[str, Column] = {}
        self.keys: list[str] = []
        self.cells: list[list[Text]] = []
        self._index: dict[str, int] = {}
        self._lines: dict[int, list[Segment]] = {}  # row index -> its rendered segments
        self._styles: dict[tuple[Style, str], Style] = {}
        self._frame: _Frame | None = None  # set while render_lines draws

    # --- content -------------------------------------------------------------------------

    def add_column(self, label: Text | str, *, key: str) -> None:
        text = label if isinstance(label, Text) else Text(label)
        self.columns[key] = Column(key, text, text.cell_len)
        self._relayout()

    def set_label(self, key: str, label: Text) -> None:
        self.columns[key].label = label
        self._relayout()

    def set_rows(self, rows: list[tuple[str, list[Text]]]) -> None:
        """Show these rows (key, cells), replacing the ones shown."""
        self.keys = [key for key, _cells in rows]
        self.cells = [cells for _key, cells in rows]
        self._index = {key: n for n, key in enumerate(self.keys)}
        self._relayout()
        if self.cursor_row >= len(self.keys):
            self.cursor_row = max(0, len(self.keys) - 1)

    def update_row(self, key: str, cells: list[Text]) -> None:
        index = self._index.get(key)
        if index is None:
            return
        self.cells[index] = cells
        self._relayout()

    def get_cell(self, key: str, column_key: str) -> Text:
        index = self._index[key]
        return self.cells[index][list(self.columns).index(column_key)]

    @property
    def row_count(self) -> int:
        return len(self.keys)

    def _relayout(self) -> None:
        """Column widths from the header and the rows held; the virtual size follows."""
        for n, column in enumerate(self.columns.values()):
            widest = max((row[n].cell_len for row in self.cells), default=0)
            column.width = min(MAX_WIDTH, max(column.label.cell_len, widest))
        self._lines.clear()
        width = sum(c.width + GAP for c in self.columns.values())
        self.virtual_size = Size(width, len(self.keys) + 1)
        self.refresh()

    # --- cursor --------------------------------------------------------------------------

    def move_cursor(self, *, row: int, scroll: bool = True, animate: bool = False) -> None:
        self.cursor_row = max(0, min(row, len(self.keys) - 1))
        if scroll:
            self._scroll_to_cursor()

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._lines.pop(old, None)
        self._lines.pop(new, None)
        self.refresh()
        if self.keys:
            self.post_message(self.RowHighlighted(self, new))

    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self) -> None:
        top = int(self.scroll_y)
        visible = self._visible_rows()
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)

    def action_cursor(self, step: int) -> None:
        if self.keys:
            self.move_cursor(row=self.cursor_row + step)

    def action_page(self, step: int) -> None:
        if self.keys:
            jump = self._visible_rows()
            self.scroll_to(y=self.scroll_y + step * jump, animate=False, immediate=True)
            self.move_cursor(row=self.cursor_row + step * jump)

    def action_select(self) -> None:
        if self.keys:
            self.post_message(self.RowSelected(self, self.cursor_row))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            x = offset.x + int(self.scroll_x)
            for column in self.columns.values():
                if x < column.width + GAP:
                    self.post_message(self.HeaderSelected(self, column.key))
                    return
                x -= column.width + GAP
            return
        row = int(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self.keys):
            if row == self.cursor_row and event.chain > 1:
                self.action_select()
            self.move_cursor(row=row)

    # --- drawing -------------------------------------------------------------------------

    def _segments(self, cells: list[Text], base: Style) -> list[Segment]:
        segments: list[Segment] = []
        for column, cell in zip(self.columns.values(), cells, strict=False):
            if cell.spans:  # several styles in one cell: let Rich lay it out
                text = cell.copy()
                text.truncate(column.width, overflow="ellipsis", pad=True)
                text.append(" " * GAP)
                for segment in text.render(self.app.console):
                    style = base + segment.style if segment.style else base
                    segments.append(Segment(segment.text, style))
                continue
            # One style for the whole cell (nearly always): one segment, no Rich layout.
            plain = cell.plain
            size = cell_len(plain)
            if size > column.width:
                plain = set_cell_size(plain, column.width - 1) + "…"
            elif size < column.width:
                plain += " " * (column.width - size)
            segments.append(Segment(plain + " " * GAP, self._combined(base, cell.style)))
        return segments

    def _combined(self, base: Style, style: str | Style) -> Style:
        if not style:
            return base
        key = (base, str(style))
        found = self._styles.get(key)
        if found is None:
            found = base + (Style.parse(style) if isinstance(style, str) else style)
            self._styles[key] = found
        return found

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line of this redraw shares, looked up once rather than per line
        # (the widget's style and its component styles are computed from CSS each time).
        self._frame = self._make_frame()
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def _make_frame(self) -> _Frame:
        base = self.rich_style
        return _Frame(
            width=self.scrollable_content_region.width,
            scroll_x=int(self.scroll_x),
            scroll_y=int(self.scroll_y),
            base=base,
            header=base + self.get_component_rich_style("row-table--header"),
            cursor=base + self.get_component_rich_style("row-table--cursor"),
            even=base + self.get_component_rich_style("row-table--even"),
        )

    def render_line(self, y: int) -> Strip:
        frame = self._frame or self._make_frame()
        width, scroll_x, base = frame.width, frame.scroll_x, frame.base
        if y == 0:
            line = self._segments([c.label for c in self.columns.values()], frame.header)
            return Strip(line).crop_extend(scroll_x, scroll_x + width, frame.header)
        index = frame.scroll_y + y - 1
        if index >= len(self.keys):
            return Strip.blank(width, base)
        line = self._lines.get(index)
        if line is None:
            style = base
            if index == self.cursor_row:
                style = frame.cursor
            elif index % 2:
                style = frame.even
            line = self._segments(self.cells[index], style)
            self._lines[index] = line
        fill = line[-1].style if line else base
        return Strip(line).crop_extend(scroll_x, scroll_x + width, fill)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.refresh()

    def on_focus(self) -> None:
        self._lines.pop(self.cursor_row, None)

    def on_blur(self) -> None:
        self._lines.pop(self.cursor_row, None)
