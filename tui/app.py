"""The Stratus console: a Textual app acting for one caller on one cloud.

The app owns what every screen shares: the caller, the process configuration, the global
keys and the navigation. `:` opens the command line (a view by name or alias), `?` lists
every key of the current view, ctrl+p offers the same views in the command palette, `[`
and `]` go back and forward through visited views. `:` jumps replace the path (Dashboard
> the view); Enter in a table drills down and pushes (Dashboard > Zones > Pods of zone
eu-west); Esc goes back one step. Every binding has an id, and the config file's
`[keymap]` table remaps them (App.set_keymap).

Screens load their own data through engine services in thread workers.

`j` opens the jobs panel from every screen. The app owns this process's one job runner
and host manager (started in a thread after the first frame, stopped on exit; none in
read-only mode), so the jobs the console submits (host operations …) run here and their
progress shows in the panel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from engine.config import Config, default_config
from engine.context import Caller
from engine.db import redacted
from tui import navigation
from tui.screens.dashboard import DashboardScreen
from tui.screens.resources import ResourceScreen
from tui.screens.topology import TopologyScreen
from tui.widgets.command_line import CommandLine
from tui.widgets.crumbs import crumb_of
from tui.widgets.help_panel import HelpPanel, KeyHelp

ScreenFactory = Callable[[], Screen[Any]]


class ViewCommands(Provider):
    """The command palette's "Go to <view>" entries: the same views as `:`."""

    def _entries(self) -> Iterable[tuple[str, str, Callable[[], None]]]:
        app = self.app
        assert isinstance(app, StratusApp)
        for destination in navigation.DESTINATIONS.values():
            text = f"Go to {destination.title} (:{destination.name})"
            helptext = destination.help or destination.unavailable
            yield text, helptext, partial(app.open_view, destination.name)

    async def discover(self) -> Hits:
        for text, helptext, run in self._entries():
            yield DiscoveryHit(text, run, help=helptext)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, helptext, run in self._entries():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), run, help=helptext)


class StratusApp(App[None]):
    """The full-screen console. `run()` it; `return_code` is the process's exit status."""

    TITLE = "Stratus"
    CSS_PATH = "stratus.tcss"
    COMMANDS = App.COMMANDS | {ViewCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("colon", "command_line", "Go to", id="app.goto"),
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("j", "jobs", "Jobs", id="app.jobs"),
        Binding("left_square_bracket", "back", "Back", show=False, id="app.back"),
        Binding("right_square_bracket", "forward", "Forward", show=False, id="app.forward"),
    ]

    def __init__(
        self,
        caller: Caller,
        config: Config | None = None,
        *,
        clock: Any = None,
        run_jobs: bool = True,
    ) -> None:
        super().__init__()
        self.caller = caller
        # The process's one job runner and host manager, made after the first paint (a
        # read-only console runs no jobs: running them changes things).
        self.run_jobs = run_jobs
        self.runner: Any = None  # engine.jobs.JobRunner once started
        self.hosts: Any = None  # engine.hosts.manager.HostManager once started
        self._closing = False
        # What screens read "now" from (tests and snapshots freeze it).
        self.clock = clock
        self.config = config or default_config()
        where = redacted(caller.db.url)
        self.sub_title = f"{where} · read-only" if self.config.read_only else where
        self.command_history: list[str] = []
        self._forward: list[ScreenFactory] = []
        keymap = getattr(self.config, "keymap", None)
        if keymap:
            self.set_keymap(dict(keymap))

    @property
    def refresh_seconds(self) -> float:
        return self.config.refresh_seconds

    def get_default_screen(self) -> Screen[Any]:
        return self.first_screen()

    # --- the job runner --------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.run_jobs and not self.config.read_only:
            # After the first frame: importing libvirt and recovering jobs take a moment.
            self.call_after_refresh(self._start_job_runner)

    @work(thread=True, group="job-runner", exit_on_error=False)
    def _start_job_runner(self) -> None:
        from engine.hosts.manager import HostManager
        from engine.jobs import JobRunner

        hosts = HostManager(self.caller.db)
        runner = JobRunner(self.caller.db, workers=2, hosts=hosts)
        runner.start()
        self.runner, self.hosts = runner, hosts
        if self._closing:  # the app ended while the runner started
            self._stop_job_runner()

    def _stop_job_runner(self) -> None:
        runner, hosts = self.runner, self.hosts
        self.runner = self.hosts = None
        if runner is not None:
            # Jobs still running after this are failed cleanly by the next server to start.
            runner.stop(timeout=5.0)
        if hosts is not None:
            hosts.close()

    def on_unmount(self) -> None:
        self._closing = True
        self._stop_job_runner()

    def action_jobs(self) -> None:
        """`j`: the jobs panel from any screen; `j` again goes back."""
        from tui.screens.jobs import JobsScreen

        if isinstance(self.screen, JobsScreen):
            self.action_back()
            return
        self.show_screen(
            lambda: JobsScreen(self.caller, refresh_seconds=self.refresh_seconds, clock=self.clock)
        )

    def deploy_screen(self) -> Screen[Any]:
        from tui.screens.deploy import DeployScreen

        return DeployScreen(self.caller)

    def first_screen(self) -> Screen[Any]:
        return DashboardScreen(self.caller, refresh_seconds=self.refresh_seconds, clock=self.clock)

    # --- navigation ------------------------------------------------------------------------

    def action_command_line(self) -> None:
        self.push_screen(CommandLine(self.command_history), self._command_given)

    def _command_given(self, text: str | None) -> None:
        if text:
            self.open_view(text.split()[0], filter_text=" ".join(text.split()[1:]))

    def open_view(
        self,
        name: str,
        *,
        scope: dict[str, str] | None = None,
        scope_label: str = "",
        filter_text: str = "",
        jump: bool = True,
    ) -> None:
        """Show the view `name` (or alias). A jump starts the path again from the first
        screen; otherwise (drill-down) the view goes on top of the current one."""
        destination = navigation.find(name)
        if destination is None:
            self.notify(
                escape(f"no view '{name}'; try one of: {', '.join(navigation.completions())}"),
                title="Unknown view",
                severity="error",
            )
            return
        if not destination.available:
            self.notify(
                escape(destination.unavailable), title="Not available yet", severity="warning"
            )
            return
        if jump:
            while len(self.screen_stack) > 1:
                self.pop_screen()
            if destination.kind == "dashboard":
                self._forward.clear()
                return
        factory = self._factory(destination, scope, scope_label, filter_text)
        if factory is None:
            return
        self.show_screen(factory)

    def _factory(
        self,
        destination: navigation.Destination,
        scope: dict[str, str] | None,
        scope_label: str,
        filter_text: str,
    ) -> ScreenFactory | None:
        if destination.kind == "dashboard":
            return self.first_screen
        if destination.kind == "topology":
            return lambda: TopologyScreen(
                self.caller, refresh_seconds=self.refresh_seconds, clock=self.clock
            )
        if destination.kind == "secgroups":
            from tui.screens.security_groups import SecurityGroupsScreen

            return lambda: SecurityGroupsScreen(
                self.caller, refresh_seconds=self.refresh_seconds, clock=self.clock
            )
        if destination.kind == "deploy":
            return self.deploy_screen
        if destination.kind == "affinity":
            from tui.screens.affinity import AffinityScreen

            return lambda: AffinityScreen(
                self.caller, refresh_seconds=self.refresh_seconds, clock=self.clock
            )
        screen_class = _table_screens().get(destination.name, ResourceScreen)
        return lambda: screen_class(
            self.caller,
            destination.name,
            scope=scope,
            scope_label=scope_label,
            filter_text=filter_text,
            refresh_seconds=self.refresh_seconds,
            clock=self.clock,
        )

    def show_screen(self, factory: ScreenFactory, *, forward: bool = False) -> None:
        """Push a new screen made by `factory` (kept, so `]` can make it again)."""
        if not forward:
            self._forward.clear()
        screen = factory()
        screen._stratus_factory = factory  # type: ignore[attr-defined]
        self.push_screen(screen)

    def open_details(self, view: str, key: str, label: str = "") -> None:
        from tui.forms_map import detail_screen

        def make() -> Screen[Any]:
            screen = detail_screen(
                self.caller, view, key, refresh_seconds=self.refresh_seconds, clock=self.clock
            )
            assert screen is not None
            return screen

        if not _has_details(view):
            self.notify(escape(f"{label or view}: no detail screen"), severity="warning")
            return
        self.show_screen(make)

    def action_back(self) -> None:
        """Esc / `[`: leave the current screen (the first one stays)."""
        if len(self.screen_stack) <= 1:
            return
        factory = getattr(self.screen, "_stratus_factory", None)
        if factory is not None:
            self._forward.append(factory)
        self.pop_screen()

    def action_forward(self) -> None:
        if self._forward:
            self.show_screen(self._forward.pop(), forward=True)

    def breadcrumbs(self) -> list[str]:
        return [crumb_of(s) for s in self.screen_stack if not s.is_modal]

    # --- help --------------------------------------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpPanel):
            return
        self.push_screen(HelpPanel(crumb_of(self.screen), self.current_keys()))

    def current_keys(self) -> list[KeyHelp]:
        """Every key active on the current screen (widget, screen and app), once per binding."""
        grouped: dict[str, list[Any]] = {}
        for key, active in self.active_bindings.items():
            binding = active.binding
            grouped.setdefault(binding.id or binding.action, []).append((key, active))
        keys: list[KeyHelp] = []
        for entries in grouped.values():
            active = entries[0][1]
            binding = active.binding
            shown = ", ".join(self.get_key_display(Binding(key, "")) for key, _a in entries)
            where = "app" if active.node is self else type(active.node).__name__
            keys.append(
                KeyHelp(
                    shown,
                    binding.description or binding.action,
                    binding.id or "",
                    where,
                    active.enabled,
                )
            )
        return keys

    # --- read-only ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            return len(self.screen_stack) > 1
        if action == "forward":
            return bool(self._forward)
        if action == "jobs":
            return not self.screen.is_modal
        return True


def _table_screens() -> dict[str, type[ResourceScreen]]:
    """Table views whose screen adds actions of its own to the plain table."""
    from tui.screens.host_actions import HostsScreen
    from tui.screens.ip_actions import IpsScreen
    from tui.screens.storage_snapshots import SnapshotsScreen
    from tui.screens.storage_templates import TemplatesScreen
    from tui.screens.storage_volumes import PoolsScreen, VolumesScreen
    from tui.screens.vm_actions import VmsScreen

    return {
        "hosts": HostsScreen,
        "ips": IpsScreen,
        "vms": VmsScreen,
        "vols": VolumesScreen,
        "snapshots": SnapshotsScreen,
        "templates": TemplatesScreen,
        "pools": PoolsScreen,
    }


def _has_details(view: str) -> bool:
    from tui.forms_map import has_details

    return has_details(view)
