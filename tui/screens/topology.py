"""The topology screen: zones → pods → clusters, with host counts.

The overview comes from `engine.topology.topology_overview` in a thread worker that posts
`TopologyScreen.Loaded` back; the event loop only touches widgets. After each load the
screen re-arms a one-shot timer for the next one (config `refresh_seconds`; 0 turns it
off), so a slow database never piles up refreshes. The tree is reconciled by UUID: labels
change in place, and when objects come or go the tree is rebuilt keeping what the operator
collapsed and where the cursor was.
"""

from __future__ import annotations

import logging
from datetime import datetime

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static, Tree
from textual.widgets.tree import TreeNode
from textual.worker import Worker, WorkerState, get_current_worker

from engine import paths
from engine.context import Caller
from engine.errors import StratusError
from engine.topology import ClusterSummary, PodSummary, ZoneSummary, topology_overview

log = logging.getLogger(__name__)

Summary = ZoneSummary | PodSummary | ClusterSummary
# The tree's shape: zone UUIDs, each with its pods' UUIDs, each with its clusters' UUIDs.
Shape = list[tuple[str, list[tuple[str, list[str]]]]]

ENABLED = "Enabled"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# Named ANSI colours read the same in truecolor, 256-colour and `ansi` terminals; the
# state is always spelled out too, so nothing depends on colour alone.
WARNING_STYLE = "bold yellow"
ERROR_STYLE = "bold red"


def _state(text: Text, state: str) -> None:
    """Append an allocation state: spelled out, and highlighted when not Enabled."""
    text.append(state, style="" if state == ENABLED else WARNING_STYLE)


def zone_label(zone: ZoneSummary) -> Text:
    text = Text(zone.name, style="bold")
    text.append(f" ({zone.network_type}, ")
    _state(text, zone.allocation_state)
    text.append(
        f") · {_plural(len(zone.pods), 'pod')} · {_plural(zone.clusters, 'cluster')}"
        f" · {_plural(zone.hosts, 'host')}"
    )
    return text


def pod_label(pod: PodSummary) -> Text:
    text = Text(pod.name, style="bold")
    text.append(f" {pod.cidr} (")
    _state(text, pod.allocation_state)
    text.append(f") · {_plural(len(pod.clusters), 'cluster')} · {_plural(pod.hosts, 'host')}")
    return text


def cluster_label(cluster: ClusterSummary) -> Text:
    text = Text(cluster.name, style="bold")
    text.append(" (")
    _state(text, cluster.allocation_state)
    text.append(f") · {_plural(cluster.hosts, 'host')}")
    if cluster.hosts:
        text.append(f", {cluster.hosts_up} Up")
        down = cluster.hosts - cluster.hosts_up
        if down:
            text.append(f", {down} not Up", style=ERROR_STYLE)
    return text


def _shape(zones: list[ZoneSummary]) -> Shape:
    return [(z.uuid, [(p.uuid, [c.uuid for c in p.clusters]) for p in z.pods]) for z in zones]


class TopologyScreen(Screen[None]):
    """Zones, pods and clusters of the cloud with their host counts."""

    TITLE = "Topology"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="topology.refresh"),
    ]

    class Loaded(Message):
        """A fresh overview, posted by the loader thread."""

        def __init__(self, zones: list[ZoneSummary]) -> None:
            super().__init__()
            self.zones = zones

    def __init__(self, caller: Caller, *, refresh_seconds: float = 0.0) -> None:
        super().__init__()
        self.caller = caller
        self.refresh_seconds = refresh_seconds
        self._node_by_uuid: dict[str, TreeNode[Summary]] = {}
        self._tree_shape: Shape | None = None
        self._refresh_timer: Timer | None = None
        self.loaded_at: datetime | None = None
        # Consecutive failed loads, and whether the operator asked for the current one.
        self.failures = 0
        self._last_failure = ""
        self._asked = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading the topology…", id="summary", markup=False)
        tree: Tree[Summary] = Tree("Cloud", id="topology")
        tree.show_root = False
        yield tree
        yield Footer()

    def on_mount(self) -> None:
        self.load_overview()

    # --- loading -------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self._asked = True
        self.load_overview()

    def _rearm_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = None
        if self.refresh_seconds > 0:
            self._refresh_timer = self.set_timer(self.refresh_seconds, self._refresh_when_due)

    def _refresh_when_due(self) -> None:
        self._refresh_timer = None
        if self.is_current:
            self.load_overview()
        else:  # a modal or another screen is in front: check again later
            self._rearm_refresh()

    @work(thread=True, exclusive=True, group="overview", exit_on_error=False)
    def load_overview(self) -> None:
        zones = topology_overview(self.caller)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Loaded(zones))

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "overview":
            return
        if event.state == WorkerState.RUNNING and self._refresh_timer is not None:
            self._refresh_timer.stop()  # a manual refresh replaces the pending automatic one
            self._refresh_timer = None
        elif event.state == WorkerState.ERROR:
            self._failed(event.worker.error)
            self._rearm_refresh()
        elif event.state == WorkerState.SUCCESS:
            self.failures, self._last_failure, self._asked = 0, "", False
            self._rearm_refresh()

    def _failed(self, error: BaseException | None) -> None:
        """Say why the load failed: in the summary line always, in a toast when it is news.

        Automatic refreshes keep failing the same way while a database is down; one toast
        for that is enough, and the summary line counts the attempts. A refresh the
        operator asked for always answers with a toast.
        """
        if isinstance(error, StratusError):
            message = error.message
            log.warning("loading the topology failed: %s", message)
        else:
            log.error("loading the topology failed", exc_info=error)
            message = (
                f"unexpected {type(error).__name__}: {error} "
                f"(the traceback is in {paths.log_file()})"
            )
        self.failures += 1
        if self._asked or message != self._last_failure:
            self.notify(escape(message), title="Topology not refreshed", severity="error")
        self._last_failure, self._asked = message, False
        since = f"since {self.loaded_at:%H:%M:%S}" if self.loaded_at else "never loaded"
        attempts = f"{self.failures} attempt{'s' if self.failures > 1 else ''}"
        summary = self.query_one("#summary", Static)
        summary.add_class("-error")
        summary.update(Text(f"Not refreshed ({since}, {attempts}): {message}"))

    # --- showing -------------------------------------------------------------------------

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.loaded_at = datetime.now()
        self._show_summary(message.zones)
        tree: Tree[Summary] = self.query_one("#topology", Tree)
        shape = _shape(message.zones)
        if shape == self._tree_shape:
            self._relabel(message.zones)
        else:
            self._rebuild(tree, message.zones)
            self._tree_shape = shape

    def _show_summary(self, zones: list[ZoneSummary]) -> None:
        summary = self.query_one("#summary", Static)
        summary.remove_class("-error")
        if not zones:
            summary.update(
                Text("No zones yet. `stratus demo` builds a demo datacenter to explore.")
            )
            return
        pods = sum(len(z.pods) for z in zones)
        clusters = sum(z.clusters for z in zones)
        hosts = sum(z.hosts for z in zones)
        up = sum(c.hosts_up for z in zones for p in z.pods for c in p.clusters)
        at = self.loaded_at.strftime("%H:%M:%S") if self.loaded_at else "-"
        summary.update(
            Text(
                f"{_plural(len(zones), 'zone')} · {_plural(pods, 'pod')} · "
                f"{_plural(clusters, 'cluster')} · {_plural(hosts, 'host')} ({up} Up)"
                f" · updated {at}"
            )
        )

    def _relabel(self, zones: list[ZoneSummary]) -> None:
        for zone in zones:
            self._node_by_uuid[zone.uuid].set_label(zone_label(zone))
            self._node_by_uuid[zone.uuid].data = zone
            for pod in zone.pods:
                self._node_by_uuid[pod.uuid].set_label(pod_label(pod))
                self._node_by_uuid[pod.uuid].data = pod
                for cluster in pod.clusters:
                    self._node_by_uuid[cluster.uuid].set_label(cluster_label(cluster))
                    self._node_by_uuid[cluster.uuid].data = cluster

    def _rebuild(self, tree: Tree[Summary], zones: list[ZoneSummary]) -> None:
        old = self._node_by_uuid
        collapsed = {
            uuid for uuid, node in old.items() if node.allow_expand and not node.is_expanded
        }
        cursor = tree.cursor_node.data.uuid if tree.cursor_node and tree.cursor_node.data else None
        tree.clear()
        nodes: dict[str, TreeNode[Summary]] = {}
        for zone in zones:
            zone_node = tree.root.add(zone_label(zone), zone, expand=zone.uuid not in collapsed)
            nodes[zone.uuid] = zone_node
            for pod in zone.pods:
                pod_node = zone_node.add(pod_label(pod), pod, expand=pod.uuid not in collapsed)
                nodes[pod.uuid] = pod_node
                for cluster in pod.clusters:
                    nodes[cluster.uuid] = pod_node.add_leaf(cluster_label(cluster), cluster)
        self._node_by_uuid = nodes
        if cursor in nodes:
            # Reading last_line lays the new nodes out in lines; move_cursor needs their
            # line numbers (before that they are all -1, which the tree clamps to line 0).
            _ = tree.last_line
            tree.move_cursor(nodes[cursor])
