"""The jobs panel, and how screens follow the jobs they submit.

`JobsScreen` (the `j` key, from every screen) lists running and pending jobs with a
progress bar and their progress message, then the newest finished jobs with their result
or error (a failed job's message says what failed and what was undone). It reads through
`engine.job_views` in a thread worker and refreshes on a re-armed timer (`LiveScreen`).
`c` cancels the job under the cursor, after a confirmation; Enter opens the object the job
acts on; Esc or `j` goes back.

`JobWatching` is what a screen mixes in to submit a job and follow it: the submit and
every look at the job run in thread workers, a one-shot timer re-arms the next look while
the job is active, and the callbacks run on the event loop with the job's `JobView`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from engine import job_views
from engine.context import Caller
from engine.job_views import JobPanel, JobView
from engine.jobs import cancel_job
from engine.models import Job
from tui.screens.dashboard import replace_options
from tui.screens.live import Clock, LiveScreen, LiveStatus, failure_message, hhmmss, is_read_only
from tui.widgets.confirm import Confirmation, ConfirmDialog
from tui.widgets.crumbs import Breadcrumbs
from tui.widgets.gauge import bar
from tui.widgets.key_bar import KeyBar
from tui.widgets.title_bar import TitleBar

WATCH_SECONDS = 0.2  # how often a submitted job is looked at while it runs
PANEL_SECONDS = 1.0  # the panel's refresh, at most (jobs move faster than topology)
BAR_WIDTH = 16
STATE_MARKS = {
    "Running": ("▶", "bold"),
    "Pending": ("…", ""),
    "Succeeded": ("✓", ""),
    "Failed": ("✗", "bold red"),
    "Cancelled": ("-", "bold yellow"),
}
# Job resource types whose detail screen Enter opens (the table view that has it).
JOB_VIEWS = {
    "Host": "hosts",
    "VirtualMachine": "vms",
    "Cluster": "clusters",
    "Pod": "pods",
    "Zone": "zones",
}
# Objects without a detail screen: Enter opens their table, filtered to the object's name.
JOB_TABLES = {
    "Template": "templates",
    "Iso": "templates",
    "Volume": "vols",
    "Snapshot": "snapshots",
}
_tokens = itertools.count(1)


# --- following a submitted job -------------------------------------------------------------


class JobSeen(Message):
    """A look at a followed job (or why it could not be submitted or read)."""

    def __init__(self, token: int, view: JobView | None, error: BaseException | None) -> None:
        super().__init__()
        self.token, self.view, self.error = token, view, error


class ThreadDone(Message):
    """What an engine call run by `JobWatching.run_then` returned, or raised."""

    def __init__(self, token: int, result: Any, error: BaseException | None) -> None:
        super().__init__()
        self.token, self.result, self.error = token, result, error


@dataclass
class _Follow:
    on_update: Callable[[JobView], None]
    on_done: Callable[[JobView], None]
    on_error: Callable[[BaseException], None] | None
    uuid: str | None = None


class JobWatching:
    """Mixed into a Screen that has a `caller`: submit jobs and follow them."""

    caller: Caller

    def submit_and_follow(
        self,
        submit: Callable[[], Job],
        *,
        on_done: Callable[[JobView], None],
        on_update: Callable[[JobView], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run `submit` (an engine call that queues a job) in a thread, then follow the job."""
        token = next(_tokens)
        self._follows()[token] = _Follow(on_update or (lambda _v: None), on_done, on_error)
        screen: Any = self
        caller = self.caller

        def work() -> None:
            try:
                job = submit()
                view = job_views.job_view(caller, job.uuid)
            except Exception as exc:  # shown on the event loop, with the engine's message
                screen.post_message(JobSeen(token, None, exc))
                return
            screen.post_message(JobSeen(token, view, None))

        screen.run_worker(work, thread=True, group="job-submit", exit_on_error=False)

    def run_then(self, call: Callable[[], Any], then: Callable[[Any], None], *, what: str) -> None:
        """Run the engine call `call` in a thread; `then(result)` on the event loop. A
        failure is a toast with the engine's message (titled `what`)."""
        token = next(_tokens)
        self._calls()[token] = (then, what)
        screen: Any = self

        def work() -> None:
            try:
                result = call()
            except Exception as exc:
                screen.post_message(ThreadDone(token, None, exc))
                return
            screen.post_message(ThreadDone(token, result, None))

        screen.run_worker(work, thread=True, group="engine-call", exit_on_error=False)

    def _calls(self) -> dict[int, tuple[Callable[[Any], None], str]]:
        calls: dict[int, tuple[Callable[[Any], None], str]] | None = getattr(
            self, "_engine_calls", None
        )
        if calls is None:
            calls = {}
            self._engine_calls = calls
        return calls

    def on_thread_done(self, message: ThreadDone) -> None:
        message.stop()
        entry = self._calls().pop(message.token, None)
        if entry is None:
            return
        then, what = entry
        if message.error is not None:
            text = failure_message(message.error, what)
            screen: Any = self
            screen.notify(escape(text), title=f"{what} failed", severity="error")
            return
        then(message.result)

    def following(self) -> int:
        return len(self._follows())

    def _follows(self) -> dict[int, _Follow]:
        follows: dict[int, _Follow] | None = getattr(self, "_job_follows", None)
        if follows is None:
            follows = {}
            self._job_follows = follows
        return follows

    def _look(self, token: int, uuid: str) -> None:
        screen: Any = self
        caller = self.caller
        if not screen.is_attached:
            return

        def work() -> None:
            try:
                view = job_views.job_view(caller, uuid)
            except Exception as exc:
                screen.post_message(JobSeen(token, None, exc))
                return
            screen.post_message(JobSeen(token, view, None))

        screen.run_worker(work, thread=True, group="job-watch", exit_on_error=False)

    def on_job_seen(self, message: JobSeen) -> None:
        message.stop()
        follow = self._follows().get(message.token)
        if follow is None:
            return
        screen: Any = self
        if message.view is None:
            if follow.uuid is None:  # the submit itself was refused
                del self._follows()[message.token]
                error = message.error or RuntimeError("job not submitted")
                if follow.on_error is not None:
                    follow.on_error(error)
                else:
                    text = failure_message(error, "submitting the job")
                    screen.notify(escape(text), title="Not done", severity="error")
                return
            # Reading the job failed (the database?): look again later.
            screen.set_timer(WATCH_SECONDS * 5, lambda: self._look(message.token, follow.uuid))
            return
        view = message.view
        follow.uuid = view.uuid
        if view.active:
            follow.on_update(view)
            screen.set_timer(WATCH_SECONDS, lambda: self._look(message.token, view.uuid))
        else:
            del self._follows()[message.token]
            follow.on_done(view)


def announce(screen: Any, view: JobView) -> None:
    """A toast with a finished job's outcome: its result, or its error."""
    if view.state == "Succeeded":
        text = f"{view.subject}: done" + (f" ({view.result})" if view.result else "")
        screen.notify(escape(text), title="Job succeeded")
    else:
        text = f"{view.subject}: {view.error or view.state}"
        screen.notify(escape(text), title=f"Job {view.state.lower()}", severity="error")


# --- the panel -----------------------------------------------------------------------------


def progress_bar(view: JobView) -> Text:
    line = Text(f"[{bar(view.progress / 100, BAR_WIDTH)}] ")
    line.append(f"{view.progress:>3}%", style="bold")
    return line


def job_text(view: JobView) -> Text:
    mark, style = STATE_MARKS.get(view.state, ("?", ""))
    line = Text(f"{mark} ")
    line.append(f"{view.state:<9}", style=style)
    line.append(f" {view.subject}", style="bold")
    if view.active:
        line.append("  ")
        if view.state == "Running":
            line.append_text(progress_bar(view))
            if view.progress_message:
                line.append(f"  {view.progress_message}")
            line.append(f"  since {hhmmss(view.started or view.created)}", style="dim")
        else:
            line.append(f"queued {hhmmss(view.created)}", style="dim")
        if view.cancel_requested:
            line.append("  cancelling…", style="bold yellow")
        line.append(f"  {view.username}", style="dim")
    else:
        line.append(f"  {hhmmss(view.finished or view.created)} {view.username}", style="dim")
        if view.state == "Succeeded":
            if view.result:
                line.append(f"  {view.result}")
        elif view.error:
            # The whole message, wrapped: what failed and what was undone.
            line.append("\n    ")
            line.append(view.error, style=style)
    return line


def panel_options(panel: JobPanel) -> list[Option]:
    def heading(text: str) -> Option:
        return Option(Text(text, style="bold"), disabled=True)

    options = [heading(f"Running and pending: {panel.active_total}")]
    options += [Option(job_text(v), id=v.uuid) for v in panel.active]
    if not panel.active:
        options.append(Option(Text("  no job running", style="dim"), disabled=True))
    hidden = panel.active_total - len(panel.active)
    if hidden > 0:
        options.append(Option(Text(f"  … and {hidden} more", style="dim"), disabled=True))
    options.append(heading(f"Finished: {panel.finished_total}"))
    options += [Option(job_text(v), id=v.uuid) for v in panel.finished]
    if not panel.finished:
        options.append(Option(Text("  no finished job yet", style="dim"), disabled=True))
    return options


class JobsScreen(LiveScreen):
    """Running jobs with progress, finished ones with their result or error."""

    TITLE = "Jobs"
    WHAT = "Jobs refresh"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="jobs.refresh"),
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel"),
        Binding("escape", "back", "Back", id="jobs.back"),
    ]
    DEFAULT_CSS = """
    JobsScreen #jobs-list {
        height: 1fr;
        border: round $secondary;
        background: $background;
    }
    JobsScreen #jobs-list > .option-list--option-disabled {
        color: $text;
    }
    """

    def __init__(
        self, caller: Caller, *, refresh_seconds: float = 2.0, clock: Clock | None = None
    ) -> None:
        seconds = min(refresh_seconds, PANEL_SECONDS) if refresh_seconds > 0 else 0
        super().__init__(caller, refresh_seconds=seconds, clock=clock)
        self.crumb = "Jobs"
        self.data: JobPanel | None = None

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Breadcrumbs()
        yield LiveStatus("Loading the jobs…", markup=False)
        jobs = OptionList(id="jobs-list")
        jobs.border_title = "Jobs"
        yield jobs
        yield KeyBar()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#jobs-list", OptionList).focus()

    def fetch(self) -> JobPanel:
        return job_views.job_panel(self.caller)

    def status_text(self, data: JobPanel) -> str:
        return f"{data.active_total} running or pending · {data.finished_total} finished"

    def show(self, data: JobPanel) -> None:
        self.data = data
        replace_options(self.query_one("#jobs-list", OptionList), panel_options(data))

    def job(self, uuid: str) -> JobView | None:
        if self.data is None:
            return None
        for view in (*self.data.active, *self.data.finished):
            if view.uuid == uuid:
                return view
        return None

    @property
    def selected(self) -> JobView | None:
        option = self.query_one("#jobs-list", OptionList).highlighted_option
        return None if option is None or option.id is None else self.job(option.id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_job":
            if is_read_only(self.app):
                return False
            selected = self.selected
            return None if selected is None or not selected.active else True
        return True

    @on(OptionList.OptionSelected, "#jobs-list")
    def _open_target(self, event: OptionList.OptionSelected) -> None:
        """Enter: the details of the object the job acts on (a host, a VM …), or its row
        in its table (a template, a volume, a snapshot)."""
        view = self.job(event.option.id or "")
        table = None if view is None else JOB_TABLES.get(view.resource_type)
        if view is not None and table is not None and view.resource_name:
            open_view = getattr(self.app, "open_view", None)
            if open_view is not None:
                open_view(table, filter_text=view.resource_name, jump=False)
            return
        target = None if view is None else JOB_VIEWS.get(view.resource_type)
        opener = getattr(self.app, "open_details", None)
        if view is None or target is None or not view.resource_uuid or opener is None:
            return
        opener(target, view.resource_uuid, f"{view.resource_type} {view.resource_name}")

    @on(OptionList.OptionHighlighted, "#jobs-list")
    def _moved(self, _event: OptionList.OptionHighlighted) -> None:
        self.refresh_bindings()  # "Cancel job" only for an active job

    def action_cancel_job(self) -> None:
        view = self.selected
        if view is None or not view.active or is_read_only(self.app):
            return
        running = "asked to stop (it undoes what it did)" if view.state == "Running" else "dropped"
        confirmation = Confirmation(
            title=f"Cancel job {view.job_type}?",
            action="Cancel job",
            affected=[
                f"job {view.uuid} ({view.state}, {view.progress}%): {view.subject}",
                f"the job is {running}",
            ],
        )
        self.app.push_screen(ConfirmDialog(confirmation), lambda yes: self._cancel(view, yes))

    def _cancel(self, view: JobView, confirmed: bool | None) -> None:
        if not confirmed:
            return
        caller = self.caller

        def work() -> None:
            cancel_job(caller, view.uuid)

        self.run_worker(work, thread=True, group="jobs-cancel", exit_on_error=False)

    @on(Worker.StateChanged)
    def _cancel_answered(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "jobs-cancel":
            return
        if event.state == WorkerState.SUCCESS:
            self.notify("Cancellation requested", title="Job")
            self.load()
        elif event.state == WorkerState.ERROR:
            message = failure_message(worker.error, "cancelling the job")
            self.notify(escape(message), title="Job not cancelled", severity="error")

    async def action_back(self) -> None:
        await self.app.run_action("back")
