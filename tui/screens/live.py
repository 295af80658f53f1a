"""What the dashboard and the detail screens share: load in a thread, refresh on a timer.

`LiveScreen.fetch` runs in a thread worker (it calls engine services; the database never
blocks the event loop) and its result comes back as a `Loaded` message that `show` puts
on screen. After each load, successful or not, a one-shot timer is re-armed for the next
one (`refresh_seconds`; 0 turns live refresh off), so a slow database never piles up
refreshes; while a modal or another screen is in front the timer just re-arms.

A failed load keeps what is shown, marks the status line with the engine's message and
says so in a toast (once per distinct message; always when the operator pressed `r`).
Unexpected exceptions are logged with their traceback and shown as one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import App
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import Worker, WorkerState, get_current_worker

from engine import paths
from engine.context import Caller
from engine.errors import StratusError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def failure_message(error: BaseException | None, what: str) -> str:
    """The engine's own message, or one line pointing at the log for anything else."""
    if isinstance(error, StratusError):
        log.warning("%s failed: %s", what, error.message)
        return error.message
    log.error("%s failed", what, exc_info=error)
    return f"unexpected {type(error).__name__}: {error} (the traceback is in {paths.log_file()})"


def is_read_only(app: App[Any]) -> bool:
    """The app's read-only mode (StratusApp keeps it in its config)."""
    config = getattr(app, "config", None)
    return bool(getattr(config, "read_only", False))


def hhmmss(moment: datetime | None) -> str:
    """A time of day in UTC; database times are UTC whatever the backend returns."""
    if moment is None:
        return "--:--:--"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%H:%M:%S")


class LiveStatus(Static):
    """One line: when the view was loaded, or why it was not."""

    DEFAULT_CSS = """
    LiveStatus {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    LiveStatus.-error {
        background: $error 30%;
        color: $text;
        text-style: bold;
    }
    """


class LiveScreen(Screen[None]):
    """A screen that shows what `fetch` returns and keeps it fresh."""

    WHAT = "loading"  # for messages: "<WHAT> failed"

    class Loaded(Message):
        def __init__(self, data: Any) -> None:
            super().__init__()
            self.data = data

    def __init__(
        self, caller: Caller, *, refresh_seconds: float = 2.0, clock: Clock | None = None
    ) -> None:
        super().__init__()
        self.caller = caller
        self.refresh_seconds = refresh_seconds
        self.clock: Clock = clock or utc_now
        self.loaded_at: datetime | None = None
        self.loads = 0
        self.failures = 0
        self._refresh_timer: Timer | None = None
        self._last_failure = ""
        self._asked = False

    # --- to override ---------------------------------------------------------------------

    def fetch(self) -> Any:
        """Runs in a thread: call engine services, return plain values."""
        raise NotImplementedError

    def show(self, data: Any) -> None:
        """Runs on the event loop: put `data` on screen."""
        raise NotImplementedError

    def status_text(self, data: Any) -> str:
        return ""

    # --- loading ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        # Start loading once the screen's frame is on the terminal: the fetch runs in a
        # thread, but its Python work shares the GIL with the first paint and would delay
        # it; the first frame (status "Loading…") never waits for the database.
        self.call_after_refresh(self.load)

    def action_refresh(self) -> None:
        self._asked = True
        self.load()

    def _rearm(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = None
        if self.refresh_seconds > 0 and self.is_attached:
            self._refresh_timer = self.set_timer(self.refresh_seconds, self._due)

    def _due(self) -> None:
        self._refresh_timer = None
        if self.is_active:  # top of the stack: no modal in front (is_current is true under one)
            self.load()
        else:  # a modal or another screen is in front: look again later
            self._rearm()

    @work(thread=True, exclusive=True, group="live-load", exit_on_error=False)
    def load(self) -> None:
        data = self.fetch()
        if not get_current_worker().is_cancelled:
            self.post_message(self.Loaded(data))

    @on(Worker.StateChanged)
    def _load_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "live-load":
            return
        if event.state == WorkerState.RUNNING and self._refresh_timer is not None:
            self._refresh_timer.stop()  # a manual refresh replaces the pending automatic one
            self._refresh_timer = None
        elif event.state == WorkerState.ERROR:
            self._failed(event.worker.error)
            self._rearm()
        elif event.state == WorkerState.SUCCESS:
            self._rearm()

    def _failed(self, error: BaseException | None) -> None:
        message = failure_message(error, self.WHAT)
        self.failures += 1
        if self._asked or message != self._last_failure:
            self.notify(escape(message), title=f"{self.WHAT} failed", severity="error")
        self._last_failure, self._asked = message, False
        since = f"since {hhmmss(self.loaded_at)}" if self.loaded_at else "never loaded"
        status = self.query_one(LiveStatus)
        status.add_class("-error")
        status.update(Text(f"Not refreshed ({since}, {self.failures} failed): {message}"))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        message.stop()
        self.loaded_at = self.clock()
        self.loads += 1
        self.failures, self._last_failure, self._asked = 0, "", False
        self.show(message.data)
        status = self.query_one(LiveStatus)
        status.remove_class("-error")
        extra = self.status_text(message.data)
        live = "live" if self.refresh_seconds > 0 else "refresh off"
        status.update(
            Text(f"{extra}{' · ' if extra else ''}updated {hhmmss(self.loaded_at)} UTC ({live})")
        )
