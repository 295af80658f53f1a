"""Resource tables: one screen per listing (`engine.listing`), paged and filtered in the engine.

The table (`RowTable`, drawn line by line) holds a window of at most `WINDOW` rows.
Moving the cursor near either end of the window fetches the next (or previous) page in a
thread worker and slides the window,
so a 100,000-row view costs what a few hundred rows cost. Sorting (`o` next column, `O`
reverse, or a click on a header) and the filter (`/`; `!text` inverts; Esc clears) are
queries too.

Live refresh: after each fetch a one-shot timer is re-armed (`refresh_seconds`; 0: off).
The refresh reads the window again from its first row; rows keep their keys, cells that
changed are updated in place and highlighted for a moment, rows that came or went are
added or dropped, and the cursor stays on its row. The status line always shows how many
rows match, the sort, the filter, when the data was read and whether the database
answered; a failing database turns it into a banner with the engine's message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from time import monotonic
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from engine import listing
from engine.context import Caller
from engine.listing import Count, Page, Row
from tui.screens.live import failure_message, hhmmss, is_read_only
from tui.widgets.crumbs import Breadcrumbs
from tui.widgets.row_table import RowTable

log = logging.getLogger(__name__)

PAGE = listing.PAGE_SIZE
WINDOW = 5 * PAGE  # rows held at most
EDGE = 20  # rows from the window's end at which the next page is fetched
HIGHLIGHT_SECONDS = 2.0
CHANGED_STYLE = "reverse"
STATE_COLUMNS = {"status", "state", "resource", "power", "level"}
# Named ANSI colours: the same in truecolor, 256-colour and `ansi` terminals.
WARN = "bold yellow"
BAD = "bold red"
STATE_STYLES = {
    **dict.fromkeys(("Down", "Disconnected", "Alert", "Error", "Failed", "ERROR"), BAD),
    **dict.fromkeys(("PowerOff", "PowerUnknown", "PowerReportMissing", "Unknown"), BAD),
    **dict.fromkeys(("Disabled", "Maintenance", "PrepareForMaintenance"), WARN),
    **dict.fromkeys(("ErrorInMaintenance", "Connecting", "Stopped", "WARN"), WARN),
}


class ResourceTable(RowTable):
    """The window of rows; scrolling past its ends asks the screen for more."""

    BINDINGS = [
        Binding("home,g", "first_row", "First", show=False, id="table.first"),
        Binding("end,G", "last_row", "Last", show=False, id="table.last"),
    ]

    def action_first_row(self) -> None:
        screen = self.screen
        if isinstance(screen, ResourceScreen):
            screen.load(mode="first")

    def action_last_row(self) -> None:
        screen = self.screen
        if isinstance(screen, ResourceScreen):
            screen.load(mode="last")


class ResourceScreen(Screen[None]):
    """A table view of one listing, optionally scoped to a parent (a zone's pods ...)."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", id="table.filter"),
        Binding("escape", "back", "Back", id="table.back"),
        Binding("d", "details", "Details", id="table.details"),
        Binding("o", "sort_next", "Sort", id="table.sort"),
        Binding("O", "sort_reverse", "Reverse", id="table.sort_reverse"),
        Binding("r", "refresh", "Refresh", id="table.refresh"),
        Binding("a", "add", "Add", id="table.add"),
        Binding("e", "edit", "Edit", id="table.edit"),
    ]

    DEFAULT_CSS = """
    ResourceScreen #table-status {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    ResourceScreen #table-status.-error {
        background: $error 40%;
        color: $text;
        text-style: bold;
    }
    ResourceScreen #table-filter {
        display: none;
        height: 3;
    }
    ResourceScreen #table-filter.-shown {
        display: block;
    }
    ResourceScreen ResourceTable {
        height: 1fr;
    }
    """

    class PageLoaded(Message):
        def __init__(self, request: int, mode: str, page: Page) -> None:
            super().__init__()
            self.request, self.mode, self.page = request, mode, page

    class Counted(Message):
        def __init__(self, request: int, count: Count) -> None:
            super().__init__()
            self.request, self.count = request, count

    def __init__(
        self,
        caller: Caller,
        view: str,
        *,
        scope: dict[str, str] | None = None,
        scope_label: str = "",
        filter_text: str = "",
        refresh_seconds: float = 2.0,
        clock: Any = None,
    ) -> None:
        super().__init__()
        self.caller = caller
        self.view = listing.view_named(view)
        self.scope = dict(scope or {})
        self.scope_label = scope_label
        self.filter_text = filter_text
        self.refresh_seconds = refresh_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sort = self.view.default_sort
        self.descending = self.view.default_descending
        self.rows: list[Row] = []
        self.more_after = False
        self.more_before = False
        self.count: Count | None = None
        self.loaded_at: datetime | None = None
        self.failures = 0
        self.error = ""
        self.loads = 0
        # Every query gets a number; answers to superseded ones are dropped.
        self._request = 0
        self._count_request = 0
        self._fetching_more = False
        self._refresh_timer: Timer | None = None
        self._highlight: dict[str, float] = {}  # row key -> when its highlight ends
        self._highlight_timer: Timer | None = None
        title = self.view.title
        self.crumb = f"{title} of {scope_label}" if scope_label else title
        self.title = "Stratus"
        self.sub_title = self.crumb

    # --- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Breadcrumbs()
        yield Static(f"Loading {self.view.title.lower()}…", id="table-status", markup=False)
        yield Input(
            self.filter_text,
            placeholder="filter: text in the name (or state); !text hides matches; Esc clears",
            id="table-filter",
        )
        table = ResourceTable(id="table")
        for column in self.view.columns:
            table.add_column(self._header(column.id, column.label), key=column.id)
        yield table
        yield Footer()

    def _header(self, column_id: str, label: str) -> Text:
        if column_id != self.sort:
            return Text(label)
        return Text(f"{label} {'▼' if self.descending else '▲'}", style="bold")

    def on_mount(self) -> None:
        if self.filter_text:
            self.query_one("#table-filter", Input).add_class("-shown")
        self.query_one(ResourceTable).focus()
        self.load(mode="first")

    @property
    def table(self) -> ResourceTable:
        return self.query_one(ResourceTable)

    @property
    def read_only(self) -> bool:
        return is_read_only(self.app)

    # --- loading -------------------------------------------------------------------------

    def _query(self) -> dict[str, Any]:
        return {
            "filter_text": self.filter_text,
            "sort": self.sort,
            "descending": self.descending,
            "scope": self.scope or None,
            "limit": PAGE,
        }

    def load(self, mode: str = "first") -> None:
        """Fetch rows: `first`/`last` page, `refresh` the window, `after`/`before` it."""
        self._request += 1
        if mode in ("first", "last", "refresh"):
            self._fetching_more = False
            self._fetch(self._request, mode, self._arguments(mode))
        else:
            self._fetching_more = True
            self._fetch_more(self._request, mode, self._arguments(mode))

    def _arguments(self, mode: str) -> dict[str, Any]:
        query = self._query()
        if mode == "last":
            query["from_end"] = True
        elif mode == "refresh" and self.rows and self.more_before:
            query.update(after=self.rows[0].cursor, inclusive=True, limit=len(self.rows))
        elif mode == "refresh":
            query["limit"] = max(len(self.rows), PAGE)
        elif mode == "after":
            query["after"] = self.rows[-1].cursor
        elif mode == "before":
            query["before"] = self.rows[0].cursor
        return query

    @work(thread=True, exclusive=True, group="table-page", exit_on_error=False)
    def _fetch(self, request: int, mode: str, query: dict[str, Any]) -> None:
        page = listing.list_page(self.caller, self.view.name, **query)
        self.post_message(self.PageLoaded(request, mode, page))

    @work(thread=True, exclusive=True, group="table-more", exit_on_error=False)
    def _fetch_more(self, request: int, mode: str, query: dict[str, Any]) -> None:
        page = listing.list_page(self.caller, self.view.name, **query)
        self.post_message(self.PageLoaded(request, mode, page))

    def _count_rows(self) -> None:
        self._count_request += 1
        self._count(self._count_request, self.filter_text)

    @work(thread=True, exclusive=True, group="table-count", exit_on_error=False)
    def _count(self, request: int, filter_text: str) -> None:
        count = listing.count_rows(
            self.caller, self.view.name, filter_text=filter_text, scope=self.scope or None
        )
        self.post_message(self.Counted(request, count))

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if not group.startswith("table-"):
            return
        if event.state == WorkerState.ERROR:
            if group == "table-more":
                self._fetching_more = False
            self._failed(event.worker.error, asked=group != "table-count")
            if group == "table-page":
                self._rearm()

    def _failed(self, error: BaseException | None, *, asked: bool) -> None:
        message = failure_message(error, f"{self.view.title} listing")
        self.failures += 1
        if message != self.error or (asked and self.failures == 1):
            self.notify(escape(message), title=f"{self.view.title} not loaded", severity="error")
        self.error = message
        self._show_status()

    @on(PageLoaded)
    def _page_loaded(self, message: PageLoaded) -> None:
        message.stop()
        if message.request != self._request:
            return  # superseded by a newer query
        page, mode = message.page, message.mode
        self.failures, self.error = 0, ""
        self.loaded_at = self.clock()
        self.loads += 1
        if mode in ("first", "last"):
            self._replace(
                page.rows,
                page.more_before,
                page.more_after,
                cursor="end" if mode == "last" else "start",
            )
        elif mode == "refresh":
            self._reconcile(page)
        elif mode == "after":
            self._fetching_more = False
            self._append(page.rows, page.more_after)
        elif mode == "before":
            self._fetching_more = False
            rows = page.rows + self.rows
            keep = min(len(rows), WINDOW)
            self._replace(rows[:keep], page.more_before, self.more_after or keep < len(rows))
        self._show_status()
        if mode in ("first", "last", "refresh"):
            # Counted after the rows are shown: the rows matter first, and the count
            # (up to COUNT_CAP rows) would compete with them for the database.
            self._count_rows()
            self._rearm()

    @on(Counted)
    def _counted(self, message: Counted) -> None:
        message.stop()
        if message.request == self._count_request:
            self.count = message.count
            self._show_status()

    # --- the window ----------------------------------------------------------------------

    def _cells(self, row: Row, highlighted: bool) -> list[Text]:
        changed = CHANGED_STYLE if highlighted else ""
        cells = []
        for column, cell in zip(self.view.columns, row.cells, strict=True):
            # States are words first; colour only underlines the ones that need a look.
            style = changed or (STATE_STYLES.get(cell, "") if column.id in STATE_COLUMNS else "")
            cells.append(Text(cell, style=style, no_wrap=True, overflow="ellipsis"))
        return cells

    def _replace(
        self, rows: list[Row], more_before: bool, more_after: bool, *, cursor: str = "keep"
    ) -> None:
        """Show `rows` as the window; the cursor stays on its row (or goes to an end)."""
        table = self.table
        old_key = self._cursor_key()
        old_index = table.cursor_row
        old_offset = old_index - int(table.scroll_y)
        self.rows, self.more_before, self.more_after = rows, more_before, more_after
        now = monotonic()
        table.set_rows(
            [(row.key, self._cells(row, self._highlight.get(row.key, 0) > now)) for row in rows]
        )
        if not rows:
            return
        if cursor == "start":
            index = 0
        elif cursor == "end":
            index = len(rows) - 1
        else:
            index = self._index_of(old_key, default=min(old_index, len(rows) - 1))
        if cursor == "keep":
            table.move_cursor(row=index, scroll=False)
            table.scroll_to(y=max(0, index - old_offset), animate=False, immediate=True)
        else:
            table.scroll_to(y=0 if cursor == "start" else len(rows), animate=False, immediate=True)
            table.move_cursor(row=index)

    def _append(self, rows: list[Row], more_after: bool) -> None:
        """Add a page below the window and drop what falls out above; the cursor stays on
        its row and at the same height on screen."""
        table = self.table
        now = monotonic()
        known = {row.key for row in self.rows}
        rows = [row for row in rows if row.key not in known]
        self.rows = self.rows + rows
        self.more_after = more_after
        drop = max(0, len(self.rows) - WINDOW)
        key = self._cursor_key()
        offset = table.cursor_row - int(table.scroll_y)
        if drop:
            self.rows = self.rows[drop:]
            self.more_before = True
        table.set_rows(
            [
                (row.key, self._cells(row, self._highlight.get(row.key, 0) > now))
                for row in self.rows
            ]
        )
        if drop:
            index = self._index_of(key, default=0)
            table.move_cursor(row=index, scroll=False)
            table.scroll_to(y=max(0, index - offset), animate=False, immediate=True)

    def _reconcile(self, page: Page) -> None:
        """A refreshed window: update changed cells in place, or re-lay if rows came or went."""
        now = monotonic()
        old = {row.key: row for row in self.rows}
        changed = [r.key for r in page.rows if r.key in old and old[r.key].cells != r.cells]
        added = [r.key for r in page.rows if r.key not in old]
        for key in changed + (added if self.loads > 1 else []):
            self._highlight[key] = now + HIGHLIGHT_SECONDS
        if [r.key for r in page.rows] == [r.key for r in self.rows]:
            table = self.table
            self.rows = page.rows
            self.more_after = page.more_after
            for row in page.rows:
                if row.key in changed:
                    table.update_row(row.key, self._cells(row, True))
        else:
            self._replace(page.rows, self.more_before, page.more_after)
        if changed or added:
            self._arm_highlight_timer()

    def _arm_highlight_timer(self) -> None:
        if self._highlight_timer is None:
            self._highlight_timer = self.set_timer(HIGHLIGHT_SECONDS, self._fade_highlights)

    def _fade_highlights(self) -> None:
        self._highlight_timer = None
        now = monotonic()
        done = [key for key, until in self._highlight.items() if until <= now]
        table = self.table
        rows = {row.key: row for row in self.rows}
        for key in done:
            del self._highlight[key]
            if key in rows:
                table.update_row(key, self._cells(rows[key], False))
        if self._highlight:
            self._arm_highlight_timer()

    def _index_of(self, key: str | None, *, default: int) -> int:
        for index, row in enumerate(self.rows):
            if row.key == key:
                return index
        return max(0, default)

    def _cursor_key(self) -> str | None:
        index = self.table.cursor_row
        if 0 <= index < len(self.rows):
            return self.rows[index].key
        return None

    @property
    def cursor_row(self) -> Row | None:
        index = self.table.cursor_row
        return self.rows[index] if 0 <= index < len(self.rows) else None

    @on(RowTable.RowHighlighted)
    def _near_an_edge(self, event: RowTable.RowHighlighted) -> None:
        if self._fetching_more or not self.rows:
            return
        index = self.table.cursor_row
        if event.cursor_row != index:
            return  # stale: posted while the window was laid out again
        if self.more_after and index >= len(self.rows) - EDGE:
            self.load(mode="after")
        elif self.more_before and index < EDGE:
            self.load(mode="before")

    # --- refresh ---------------------------------------------------------------------------

    def _rearm(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = None
        if self.refresh_seconds > 0 and self.is_attached:
            self._refresh_timer = self.set_timer(self.refresh_seconds, self._due)

    def _due(self) -> None:
        self._refresh_timer = None
        if self.is_active and not self._fetching_more:
            self.load(mode="refresh")
        else:  # hidden, or a page is on its way: look again later
            self._rearm()

    def action_refresh(self) -> None:
        self.load(mode="refresh")

    # --- status ----------------------------------------------------------------------------

    def status_text(self) -> Text:
        if self.error:
            since = f"last good read {hhmmss(self.loaded_at)}" if self.loaded_at else "never read"
            return Text(
                f"DATABASE ERROR ({self.failures} failed, {since}): {self.error}",
                no_wrap=True,
                overflow="ellipsis",
            )
        parts = []
        if self.count is not None:
            parts.append(f"{self.count.describe()} {self.view.title.lower()}")
        if self.rows:
            first = self._first_number()
            parts.append(
                f"rows {first}-{first + len(self.rows) - 1}" if first else f"{len(self.rows)} shown"
            )
        parts.append(f"sort {self.sort} {'desc' if self.descending else 'asc'}")
        if self.filter_text.strip():
            parts.append(f"filter '{self.filter_text.strip()}'")
        live = "live" if self.refresh_seconds > 0 else "refresh off"
        if self.loaded_at is not None:
            parts.append(f"updated {hhmmss(self.loaded_at)} UTC ({live})")
        parts.append("database ok" if self.loaded_at else "loading…")
        return Text(" · ".join(parts), no_wrap=True, overflow="ellipsis")

    def _first_number(self) -> int | None:
        # Only known when the window starts at the first row.
        return None if self.more_before else 1

    def _show_status(self) -> None:
        status = self.query_one("#table-status", Static)
        status.set_class(bool(self.error), "-error")
        status.update(self.status_text(), layout=False)  # one fixed line: no re-layout

    # --- keys ------------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#table-filter", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#table-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if event.value != self.filter_text:
            self.filter_text = event.value
            self.load(mode="first")

    @on(Input.Submitted, "#table-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()
        if not event.value.strip():
            self.query_one("#table-filter", Input).remove_class("-shown")

    def clear_filter(self) -> None:
        box = self.query_one("#table-filter", Input)
        box.remove_class("-shown")
        self.table.focus()
        if self.filter_text:
            self.filter_text = ""
            box.value = ""
            self.load(mode="first")

    def action_back(self) -> None:
        if self.filter_text or self.query_one("#table-filter", Input).has_focus:
            self.clear_filter()
            return
        back = getattr(self.app, "action_back", None)
        if back is not None:
            back()
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_sort_next(self) -> None:
        sortable = self.view.sortable
        if len(sortable) < 2 and self.sort in sortable:
            self.notify(f"{self.view.title} sort only by {self.sort}", timeout=3)
            return
        at = sortable.index(self.sort) if self.sort in sortable else -1
        self.set_sort(sortable[(at + 1) % len(sortable)], self.descending)

    def action_sort_reverse(self) -> None:
        self.set_sort(self.sort, not self.descending)

    def set_sort(self, column_id: str, descending: bool) -> None:
        previous = self.sort
        self.sort, self.descending = column_id, descending
        table = self.table
        for column in self.view.columns:
            if column.id in (previous, column_id):
                table.set_label(column.id, self._header(column.id, column.label))
        self.load(mode="first")

    @on(RowTable.HeaderSelected)
    def _header_clicked(self, event: RowTable.HeaderSelected) -> None:
        column_id = event.column_key
        if column_id in self.view.sortable:
            descending = not self.descending if column_id == self.sort else False
            self.set_sort(column_id, descending)

    @on(RowTable.RowSelected)
    def _drill(self, event: RowTable.RowSelected) -> None:
        """Enter: into the row's children (a zone's pods ...), or its details for a leaf."""
        row = self.cursor_row
        if row is None:
            return
        if self.view.child and self.view.scope_as:
            opener = getattr(self.app, "open_view", None)
            if opener is not None:
                opener(
                    self.view.child,
                    scope={**self._inherited_scope(), self.view.scope_as: row.key},
                    scope_label=f"{self.view.singular} {row.cells[0]}",
                    jump=False,
                )
            return
        self.action_details()

    def _inherited_scope(self) -> dict[str, str]:
        return {}  # the parent's scope is implied by the child's (a pod is in one zone)

    def action_details(self) -> None:
        row = self.cursor_row
        opener = getattr(self.app, "open_details", None)
        if row is not None and opener is not None:
            opener(self.view.name, row.key, f"{self.view.singular} {row.cells[0]}")

    def action_add(self) -> None:
        from tui.forms_map import add_form

        form = add_form(self.caller, self.view.name, self.scope)
        if form is not None and not self.read_only:
            self.app.push_screen(form, self._after_form)

    def action_edit(self) -> None:
        from tui.forms_map import edit_form

        row = self.cursor_row
        form = None if row is None else edit_form(self.caller, self.view.name, row.key)
        if form is not None and not self.read_only:
            self.app.push_screen(form, self._after_form)

    def _after_form(self, changed: str | None) -> None:
        if changed:
            self.load(mode="refresh")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from tui.forms_map import has_add_form, has_details, has_edit_form

        if action == "add":
            return not self.read_only and has_add_form(self.view.name)
        if action == "edit":
            return not self.read_only and has_edit_form(self.view.name)
        if action == "details":
            return has_details(self.view.name)
        if action == "sort_next":
            return len(self.view.sortable) > 1
        return True

    def cell_at(self, row: int, column: str) -> str:
        """The text shown in a cell (tests and the help use it)."""
        index = [c.id for c in self.view.columns].index(column)
        return self.table.cells[row][index].plain
