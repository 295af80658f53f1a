"""The dashboard, the console's first screen: capacity per zone and what needs attention.

One panel per zone with gauges for CPU, memory, primary storage (used and allocated),
secondary storage and the zone's public and private addresses; then hosts that are not
Up, clusters and pools past their disable thresholds, running and recent jobs, and the
newest audit events. Everything comes from `engine.dashboard.dashboard` in a thread
worker and refreshes live (see `LiveScreen`). Enter opens the details of a zone panel,
of a host or cluster in "Needs attention", or of the object a job acts on.
"""

from __future__ import annotations

from contextlib import suppress

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from engine.context import Caller
from engine.dashboard import Dashboard, EventLine, JobLine, ZoneCapacity, dashboard
from tui.screens.live import Clock, LiveScreen, LiveStatus, hhmmss
from tui.widgets.gauge import gauge_line, human_bytes, human_count, human_mhz
from tui.widgets.key_bar import KeyBar
from tui.widgets.title_bar import TitleBar

GAUGE = {"bar_width": 10, "label_width": 11}
WARN_STYLE = "bold yellow"
ERROR_STYLE = "bold red"
LEVEL_STYLES = {"WARN": WARN_STYLE, "WARNING": WARN_STYLE, "ERROR": ERROR_STYLE}
JOB_STYLES = {"Failed": ERROR_STYLE, "Cancelled": WARN_STYLE, "Running": "bold", "Pending": ""}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def zone_text(zone: ZoneCapacity) -> Group:
    """A zone panel's content: its state and host count, then one gauge per capacity."""
    head = Text(f"{zone.network_type} · ")
    head.append(
        zone.allocation_state, style="" if zone.allocation_state == "Enabled" else WARN_STYLE
    )
    head.append(f" · {_plural(zone.hosts, 'host')}, {zone.hosts_up} Up")
    down = zone.hosts - zone.hosts_up
    if down:
        head.append(f", {down} not Up", style=ERROR_STYLE)
    lines = [
        head,
        gauge_line("CPU", zone.cpu_mhz.allocated, zone.cpu_mhz.total, unit=human_mhz, **GAUGE),
        gauge_line(
            "Memory",
            zone.memory_bytes.allocated,
            zone.memory_bytes.total,
            unit=human_bytes,
            **GAUGE,
        ),
        gauge_line(
            "Prim used",
            zone.primary_used_bytes.used,
            zone.primary_used_bytes.total,
            unit=human_bytes,
            **GAUGE,
        ),
        gauge_line(
            "Prim alloc",
            zone.primary_allocated_bytes.used,
            zone.primary_allocated_bytes.total,
            unit=human_bytes,
            **GAUGE,
        ),
        gauge_line(
            "Secondary",
            zone.secondary_bytes.used,
            zone.secondary_bytes.total,
            unit=human_bytes,
            **GAUGE,
        ),
    ]
    ips = zone.ip_utilisation or {}
    for key, label in (("public", "Public IP"), ("private", "Private IP")):
        figure = ips.get(key)
        if figure is None:
            lines.append(gauge_line(label, None, None, **GAUGE))
        else:
            lines.append(
                gauge_line(label, figure.allocated, figure.total, unit=human_count, **GAUGE)
            )
    return _group(lines)


def _unwrapped(line: Text) -> Text:
    line.no_wrap = True
    line.overflow = "ellipsis"
    return line


def attention_options(data: Dashboard) -> list[Option]:
    """Hosts not Up and what is over a threshold; hosts and clusters open their details."""
    options: list[Option] = []

    def add(line: Text, key: str | None = None) -> None:
        # Only lines that open something take the cursor; headings and notes are skipped.
        options.append(Option(_unwrapped(line), id=key, disabled=key is None))

    if data.hosts_not_up_total:
        add(
            Text(
                f"Hosts not Up: {data.hosts_not_up_total} of {data.hosts_total}", style=ERROR_STYLE
            )
        )
        for host in data.hosts_not_up:
            line = Text("  ✗ ")
            line.append(host.name, style="bold")
            line.append(f"  {host.status}", style=ERROR_STYLE)
            line.append(f"  {host.resource_state}  {host.zone} / {host.cluster}")
            add(line, f"host:{host.uuid}")
        hidden = data.hosts_not_up_total - len(data.hosts_not_up)
        if hidden > 0:
            add(Text(f"  … and {hidden} more", style="dim"))
    else:
        add(Text(f"✓ All {_plural(data.hosts_total, 'host')} Up"))
    if data.over_threshold:
        add(Text(f"Over threshold: {len(data.over_threshold)}", style=WARN_STYLE))
        for item in data.over_threshold:
            line = Text("  ! ")
            line.append(f"{item.kind} {item.name}", style="bold")
            line.append(f" ({item.zone}): {item.measure} ")
            line.append(f"{item.percent:.0f}%", style=WARN_STYLE)
            line.append(f" over {item.threshold_percent:.0f}%")
            add(line, f"{item.kind}:{item.uuid}" if item.kind == "cluster" else None)
    else:
        add(Text("✓ No cluster or pool over its threshold"))
    return options


def _job(job: JobLine, when: str) -> Text:
    line = Text("  ")
    line.append(job.job_type, style="bold")
    line.append(f" {job.resource_type} {job.resource_name} ")
    line.append(job.state, style=JOB_STYLES.get(job.state, ""))
    if job.state == "Running":
        line.append(f" {job.progress}%")
    line.append(f" {when}", style="dim")
    detail = job.error if job.state == "Failed" and job.error else job.progress_message
    if detail:
        line.append(f" · {detail}")
    return line


# Job resource types whose detail screen a job line opens.
JOB_TARGETS = {"VirtualMachine": "vm", "Host": "host", "Cluster": "cluster", "Zone": "zone"}


def _job_option(job: JobLine, when: str) -> Option:
    kind = JOB_TARGETS.get(job.resource_type)
    key = f"{kind}:{job.resource_uuid}" if kind and job.resource_uuid else None
    # The key is unique per job even when two jobs act on the same object.
    return Option(_unwrapped(_job(job, when)), id=f"{key}#{job.uuid}" if key else None,
                  disabled=key is None)  # fmt: skip


def job_options(data: Dashboard) -> list[Option]:
    """Running and recent jobs; a job on a VM, host, cluster or zone opens that object."""

    def note(text: str, style: str) -> Option:
        return Option(_unwrapped(Text(text, style=style)), disabled=True)

    options = [note(f"Running: {data.running_jobs_total}", "bold")]
    options += [_job_option(j, f"since {hhmmss(j.created)}") for j in data.running_jobs]
    hidden = data.running_jobs_total - len(data.running_jobs)
    if hidden > 0:
        options.append(note(f"  … and {hidden} more", "dim"))
    if not data.running_jobs_total:
        options.append(note("  no job running", "dim"))
    options.append(note("Recent", "bold"))
    options += [_job_option(j, f"at {hhmmss(j.finished or j.created)}") for j in data.recent_jobs]
    if not data.recent_jobs:
        options.append(note("  no finished job yet", "dim"))
    return options


def event_line(event: EventLine) -> Text:
    line = Text(f"{hhmmss(event.created)}  ")
    line.append(f"{event.level:<5}", style=LEVEL_STYLES.get(event.level, "dim"))
    line.append(f"  {event.username:<8} ")
    line.append(f"{event.event_type:<24}", style="bold")
    line.append(f" {event.resource_type} {event.resource_name}: {event.description}")
    return line


def events_text(data: Dashboard) -> Group:
    if not data.events:
        return _group([Text("no events yet", style="dim")])
    return _group([event_line(e) for e in data.events])


def _group(lines: list[Text]) -> Group:
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    return Group(*lines)


def replace_options(option_list: OptionList, options: list[Option]) -> None:
    """New options, the cursor kept on the same line when it is still there."""
    chosen = option_list.highlighted_option.id if option_list.highlighted_option else None
    option_list.set_options(options)
    if chosen is not None:
        with suppress(OptionDoesNotExist):  # that host is Up again, that job is gone
            option_list.highlighted = option_list.get_option_index(chosen)


class ZonePanel(Static, can_focus=True):
    """One zone's gauges; Enter opens the zone's details."""

    BINDINGS = [Binding("enter", "open", "Zone details", id="dashboard.zone.open")]

    def __init__(self, zone: ZoneCapacity) -> None:
        super().__init__(zone_text(zone), classes="zone-panel", markup=False)
        self.zone = zone
        self.border_title = zone.name

    def show(self, zone: ZoneCapacity) -> None:
        self.zone = zone
        self.border_title = zone.name
        self.update(zone_text(zone))

    def action_open(self) -> None:
        from tui.screens.details import ZoneDetailScreen

        screen = self.screen
        assert isinstance(screen, DashboardScreen)
        self.app.push_screen(
            ZoneDetailScreen(
                screen.caller,
                self.zone.uuid,
                refresh_seconds=screen.refresh_seconds,
                clock=screen.clock,
            )
        )


class DashboardScreen(LiveScreen):
    """Capacity per zone, problems, jobs and events; refreshes itself."""

    TITLE = "Dashboard"
    WHAT = "Dashboard refresh"
    BINDINGS = [Binding("r", "refresh", "Refresh", id="dashboard.refresh")]

    DEFAULT_CSS = """
    DashboardScreen #zones {
        grid-size: 2;
        grid-gutter: 0 1;
        height: auto;
        padding: 0 1;
    }
    DashboardScreen .zone-panel {
        height: auto;
        border: round $primary;
        border-title-style: bold;
        padding: 0 1;
    }
    DashboardScreen .zone-panel:focus {
        border: double $accent;
    }
    DashboardScreen #attention-row {
        height: auto;
        padding: 0 1;
    }
    DashboardScreen #jobs {
        margin-left: 1;
    }
    DashboardScreen #attention, DashboardScreen #jobs {
        max-height: 14;
        background: $surface;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    DashboardScreen OptionList > .option-list--option-disabled {
        color: $text;
    }
    DashboardScreen .dash-panel {
        height: auto;
        border: round $secondary;
        border-title-style: bold;
        padding: 0 1;
        width: 1fr;
    }
    DashboardScreen #events-panel {
        margin: 0 1;
    }
    """

    def __init__(
        self, caller: Caller, *, refresh_seconds: float = 2.0, clock: Clock | None = None
    ) -> None:
        super().__init__(caller, refresh_seconds=refresh_seconds, clock=clock)
        self._panels: dict[str, ZonePanel] = {}
        self.data: Dashboard | None = None

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield LiveStatus("Loading the dashboard…", markup=False)
        with VerticalScroll(id="dashboard-body"):
            yield Grid(id="zones")
            with Horizontal(id="attention-row"):
                problems = OptionList(id="attention", classes="dash-panel")
                problems.border_title = "Needs attention"
                yield problems
                jobs = OptionList(id="jobs", classes="dash-panel")
                jobs.border_title = "Jobs"
                yield jobs
            events = Static("", id="events-panel", classes="dash-panel")
            events.border_title = "Recent events"
            yield events
        yield KeyBar()

    def fetch(self) -> Dashboard:
        return dashboard(self.caller)

    def status_text(self, data: Dashboard) -> str:
        if not data.zones:
            return "No zones yet: `stratus demo` builds a demo datacenter to explore"
        return f"{_plural(len(data.zones), 'zone')} · {_plural(data.hosts_total, 'host')}"

    def show(self, data: Dashboard) -> None:
        self.data = data
        grid = self.query_one("#zones", Grid)
        wanted = [z.uuid for z in data.zones]
        if list(self._panels) != wanted:
            # Zones came or went: rebuild the panels (rare), keeping focus on the same zone.
            focused = self.focused.zone.uuid if isinstance(self.focused, ZonePanel) else None
            for panel in self._panels.values():
                panel.remove()
            self._panels = {z.uuid: ZonePanel(z) for z in data.zones}
            grid.mount_all(self._panels.values())
            if focused in self._panels:
                self._panels[focused].focus()
        else:
            for zone in data.zones:
                self._panels[zone.uuid].show(zone)
        replace_options(self.query_one("#attention", OptionList), attention_options(data))
        replace_options(self.query_one("#jobs", OptionList), job_options(data))
        self.query_one("#events-panel", Static).update(events_text(data))

    @on(OptionList.OptionSelected, "#attention, #jobs")
    def _option_chosen(self, event: OptionList.OptionSelected) -> None:
        kind, _, rest = (event.option.id or "").partition(":")
        uuid = rest.partition("#")[0]
        from tui.screens import details

        screens = {
            "host": details.HostDetailScreen,
            "cluster": details.ClusterDetailScreen,
            "vm": details.VmDetailScreen,
            "zone": details.ZoneDetailScreen,
        }
        screen = screens.get(kind)
        if screen is not None and uuid:
            self.app.push_screen(
                screen(self.caller, uuid, refresh_seconds=self.refresh_seconds, clock=self.clock)
            )
