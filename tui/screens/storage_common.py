"""What the storage screens (`:vols`, `:snapshots`, `:templates`, `:pools`) share.

`StorageScreen` is a table view whose actions submit storage jobs and follow them: each
followed job has a line above the table (its progress bar, percent and message while it
runs; its outcome once done), the jobs panel (`j`) shows it too, and its end is a toast
and a reload of the table. Engine calls that are done at once (create a volume, delete
a template) run in a thread too, their refusals shown as the engine words them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from engine.job_views import JobView
from engine.models import Job
from tui.screens.jobs import JobWatching, announce, job_text
from tui.screens.live import is_read_only
from tui.screens.resources import ResourceScreen, ResourceTable

SHOWN_JOBS = 4  # progress lines kept above the table


def cells_of(screen: ResourceScreen) -> dict[str, str] | None:
    """The cursor's row as {column id: text}, or None."""
    row = screen.cursor_row
    if row is None:
        return None
    return {c.id: cell for c, cell in zip(screen.view.columns, row.cells, strict=True)}


class StorageScreen(JobWatching, ResourceScreen):
    """A storage table whose actions (`ACTIONS`) are jobs followed on a progress line."""

    ACTIONS: set[str] = set()
    # Actions that need no row under the cursor (create, register).
    ROWLESS: set[str] = set()
    BINDINGS = [Binding("ctrl+r", "refresh", "Refresh", id="storage.refresh")]
    DEFAULT_CSS = """
    StorageScreen #storage-progress {
        height: auto;
        max-height: 6;
        padding: 0 1;
        display: none;
    }
    StorageScreen #storage-progress.-shown {
        display: block;
    }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_lines: dict[str, JobView] = {}  # job uuid -> its last look, newest last

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, ResourceTable):
                yield Static("", id="storage-progress", markup=False)
            yield widget

    # --- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.ACTIONS:
            if is_read_only(self.app):
                return False
            return action in self.ROWLESS or self.cursor_row is not None
        return super().check_action(action, parameters)

    def may_act(self, *, row: bool = True) -> bool:
        return not is_read_only(self.app) and (not row or self.cursor_row is not None)

    def _cursor(self) -> dict[str, str] | None:
        """The cursor's row to act on ({column id: text} and its "uuid"), or None when
        there is none or acting is not allowed."""
        cells = cells_of(self)
        if cells is None or not self.may_act():
            return None
        assert self.cursor_row is not None
        cells["uuid"] = self.cursor_row.key
        return cells

    def choose_then_follow(
        self,
        dialog: Screen[Any],
        submit: Callable[[str], Any],
        what: Callable[[str], str],
    ) -> None:
        """Open `dialog` (it dismisses with (uuid, name) or None), then `follow` the
        engine call `submit(uuid)`; `what(name)` words the progress line."""

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is not None:
                uuid, name = choice
                self.follow(lambda: submit(uuid), what(name))

        self.app.push_screen(dialog, chosen)

    # --- jobs ------------------------------------------------------------------------------

    def follow(self, submit: Callable[[], Any], what: str, *, at_once: str = "") -> None:
        """Run `submit` (an engine call) in a thread. A Job it returns is followed on the
        progress line; anything else means the engine did the change at once (a toast
        saying `at_once`). A refusal is a toast with the engine's message."""

        def then(result: Any) -> None:
            if isinstance(result, Job):
                self.submit_and_follow(
                    lambda: result, on_update=self._job_moved, on_done=self._job_done
                )
                self.notify(escape(f"{what}: submitted (j: jobs)"), title=self.title_word)
            else:
                self.notify(escape(at_once or f"{what}: done"), title=self.title_word)
                self.load(mode="refresh")

        self.run_then(submit, then, what=what)

    @property
    def title_word(self) -> str:
        return self.view.singular.capitalize()

    def _job_moved(self, view: JobView) -> None:
        self.job_lines.pop(view.uuid, None)
        self.job_lines[view.uuid] = view
        while len(self.job_lines) > SHOWN_JOBS:
            del self.job_lines[next(iter(self.job_lines))]
        line = Text()
        for index, shown in enumerate(self.job_lines.values()):
            if index:
                line.append("\n")
            line.append_text(job_text(shown))
        progress = self.query_one("#storage-progress", Static)
        progress.update(line)
        progress.add_class("-shown")

    def _job_done(self, view: JobView) -> None:
        self._job_moved(view)
        announce(self, view)
        self.load(mode="refresh")

    def progress_text(self) -> str:
        """The progress line as plain text (tests read it)."""
        content = self.query_one("#storage-progress", Static).content
        return content.plain if isinstance(content, Text) else str(content)
