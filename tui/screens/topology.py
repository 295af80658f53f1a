"""The topology tree: zones → pods → clusters → hosts → VMs, with storage where it lives.

Secondary storage hangs under each zone, primary storage under each cluster. Each level is
loaded when its parent is first expanded, by `engine.listing.tree_children` in a thread
worker (one per node); until then the node holds a "loading…" placeholder. Every node
spells out its state and shows small capacity gauges with numbers (CPU, memory, storage).

Refresh (`r`, and live after each load when `refresh_seconds` > 0) reloads every level
that is open. Children are reconciled by key: labels change in place, and when children
come or go the level is laid out again; what was expanded stays expanded, and the cursor
stays on its node. `d` opens the selected object's detail screen, `v` its table view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
from textual.worker import Worker, WorkerState

from engine.context import Caller
from engine.listing import Measure, TreeItem, tree_children
from tui.screens.live import failure_message, hhmmss
from tui.widgets.crumbs import Breadcrumbs
from tui.widgets.gauge import bar, gauge_state, human_bytes, human_mhz

log = logging.getLogger(__name__)

GAUGE_WIDTH = 6
STATE_STYLES = {"ok": "green", "high": "bold yellow", "over": "bold red", "n/a": "dim"}
PROBLEM_STYLE = "bold red"
KIND_MARK = {
    "zone": "Zone",
    "pod": "Pod",
    "cluster": "Cluster",
    "host": "Host",
    "vm": "VM",
    "pool": "Pool",
    "store": "Store",
}
# The table view `v` opens for a node, scoped to it: (view, scope kind).
TABLE_OF = {
    "zone": ("pods", "zone"),
    "pod": ("clusters", "pod"),
    "cluster": ("hosts", "cluster"),
    "host": ("vms", "host"),
    "pools": ("pools", "cluster"),
    "stores": ("stores", "zone"),
}
DETAILS_OF = {"zone": "zones", "pod": "pods", "cluster": "clusters", "host": "hosts", "vm": "vms"}
GOOD_STATES = {"Up", "Enabled", "Running", "PowerOn", "read-write", "all Up"}


@dataclass
class NodeData:
    item: TreeItem | None  # None: the hidden root (the cloud)
    loaded: bool = False
    placeholder: bool = False

    @property
    def kind(self) -> str:
        return self.item.kind if self.item else "cloud"

    @property
    def key(self) -> str | None:
        if self.item is None:
            return None
        if self.item.kind in ("pools", "stores"):
            return self.item.key.split(":", 1)[1]  # the group's parent uuid
        return self.item.key


def _figure(measure: Measure) -> str:
    unit = human_mhz if measure.unit == "mhz" else human_bytes
    total = measure.total or 0
    return f"{unit(measure.used)}/{unit(total)}"


def measure_text(measure: Measure) -> Text:
    """`CPU ███░░░  45% 1.2/2.6 THz`: a small bar, the percent, the numbers."""
    fraction = measure.used / measure.total if measure.total else None
    state = gauge_state(fraction)
    text = Text(f"{measure.label} ", style="bold")
    text.append(bar(fraction, GAUGE_WIDTH), style=STATE_STYLES[state])
    if fraction is None:
        text.append("    -")
    else:
        text.append(f" {fraction * 100:3.0f}%", style=STATE_STYLES[state])
        text.append(f" {_figure(measure)}")
    if state in ("high", "over"):
        text.append(f" {state}", style=STATE_STYLES[state])
    return text


def item_label(item: TreeItem) -> Text:
    text = Text()
    mark = KIND_MARK.get(item.kind)
    if mark:
        text.append(f"{mark} ", style="dim")
    text.append(item.name, style="bold" if item.kind != "more" else "dim")
    if item.state:
        text.append(" (")
        for n, part in enumerate(item.state.split(", ")):
            if n:
                text.append(", ")
            good = part in GOOD_STATES or part.endswith(" hosts") or part.endswith(" host")
            text.append(part, style="" if good else PROBLEM_STYLE)
        text.append(")")
    if item.note:
        text.append(f" {item.note}", style="dim")
    for measure in item.measures:
        text.append("  ")
        text.append_text(measure_text(measure))
    return text


class TopologyScreen(Screen[None]):
    """The cloud as a tree, loaded level by level."""

    TITLE = "Topology"
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="topology.refresh"),
        Binding("d", "details", "Details", id="topology.details"),
        Binding("v", "table", "Table", id="topology.table"),
        Binding("escape", "back", "Back", id="topology.back"),
    ]
    DEFAULT_CSS = """
    TopologyScreen #summary {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    TopologyScreen #summary.-error {
        background: $error 40%;
        color: $text;
        text-style: bold;
    }
    TopologyScreen Tree {
        height: 1fr;
    }
    """

    class Loaded(Message):
        """Children of one node, posted by its loader thread."""

        def __init__(self, node_id: int, items: list[TreeItem], generation: int) -> None:
            super().__init__()
            self.node_id, self.items, self.generation = node_id, items, generation

    def __init__(self, caller: Caller, *, refresh_seconds: float = 0.0, clock: Any = None) -> None:
        super().__init__()
        self.caller = caller
        self.refresh_seconds = refresh_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self.crumb = "Topology"
        self.title, self.sub_title = "Stratus", "Topology"
        self.loaded_at: datetime | None = None
        self.failures = 0
        self.error = ""
        self._pending = 0  # node loads on their way
        self._refresh_timer: Timer | None = None
        self._generation = 0
        self._asked = False
        self._want_cursor: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Breadcrumbs()
        yield Static("Loading the topology…", id="summary", markup=False)
        tree: Tree[NodeData] = Tree("Cloud", NodeData(None), id="topology")
        tree.show_root = False
        tree.auto_expand = True
        yield tree
        yield Footer()

    @property
    def tree(self) -> Tree[NodeData]:
        return self.query_one("#topology", Tree)

    def on_mount(self) -> None:
        self.tree.focus()
        self.tree.root.expand()
        self._load(self.tree.root)

    # --- loading ---------------------------------------------------------------------------

    def _load(self, node: TreeNode[NodeData]) -> None:
        data = node.data
        assert data is not None
        self._pending += 1
        self._fetch(node.id, data.kind, data.key, self._generation)

    @work(thread=True, group="tree-load", exit_on_error=False)
    def _fetch(self, node_id: int, kind: str, key: str | None, generation: int) -> None:
        items = tree_children(self.caller, kind, key)
        self.post_message(self.Loaded(node_id, items, generation))

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "tree-load":
            return
        if event.state == WorkerState.ERROR:
            self._pending = max(0, self._pending - 1)
            self._failed(event.worker.error)
            self._settled()

    def _failed(self, error: BaseException | None) -> None:
        message = failure_message(error, "Topology load")
        self.failures += 1
        if self._asked or message != self.error:
            self.notify(escape(message), title="Topology not loaded", severity="error")
        self.error, self._asked = message, False
        since = f"since {hhmmss(self.loaded_at)}" if self.loaded_at else "never loaded"
        summary = self.query_one("#summary", Static)
        summary.add_class("-error")
        summary.update(
            Text(f"DATABASE ERROR: not refreshed ({since}, {self.failures} failed): {message}")
        )

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        message.stop()
        self._pending = max(0, self._pending - 1)
        try:
            node = self.tree.get_node_by_id(message.node_id)  # type: ignore[arg-type]
        except Exception:  # the node went away meanwhile (its parent was re-laid)
            node = None
        if node is not None:
            self._fill(node, message.items)
        self.failures, self.error = 0, ""
        self.loaded_at = self.clock()
        self._show_summary()
        self._settled()

    def _settled(self) -> None:
        if self._pending == 0:
            self._asked = False
            self._rearm()

    def _fill(self, node: TreeNode[NodeData], items: list[TreeItem]) -> None:
        """Show `items` as the children of `node`, reconciled by key."""
        data = node.data
        assert data is not None
        data.loaded = True
        current = [c for c in node.children if c.data is not None and not c.data.placeholder]
        keys = [c.data.item.key for c in current if c.data and c.data.item]
        if keys == [i.key for i in items] and len(current) == len(node.children):
            for child, item in zip(current, items, strict=True):
                assert child.data is not None
                child.data.item = item
                child.set_label(item_label(item))
                child.allow_expand = item.expandable
            return
        # Children came or went: lay the level out again, keeping what was open.
        tree = self.tree
        cursor = tree.cursor_node
        if cursor is not None and cursor.data and cursor.data.item and _inside(cursor, node):
            self._want_cursor = cursor.data.item.key  # put it back when its node returns
        opened = {c.data.item.key for c in current if c.is_expanded and c.data and c.data.item}
        node.remove_children()
        for item in items:
            child = node.add(item_label(item), NodeData(item), allow_expand=item.expandable)
            if item.expandable:
                child.add_leaf("loading…", NodeData(None, placeholder=True))
            if item.key in opened:
                child.expand()
                self._load(child)
            if item.key == self._want_cursor:
                self._want_cursor = None
                # Lines are laid out on the next refresh; the cursor can move then.
                self.call_after_refresh(self._restore_cursor, child)

    def _restore_cursor(self, node: TreeNode[NodeData]) -> None:
        # The tree lays its lines out lazily: a node's line is -1 (which would put the
        # cursor on the first line) until they are built; asking for a line builds them.
        self.tree.get_node_at_line(0)
        if node.line >= 0:
            self.tree.move_cursor(node)

    @on(Tree.NodeSelected)
    def _selected_leaf(self, event: Tree.NodeSelected[NodeData]) -> None:
        """Enter on a leaf (a VM, a pool, a store) opens what it can: details or table."""
        data = event.node.data
        if data is None or data.item is None or data.item.expandable:
            return  # Enter on a branch expands it (the tree does that)
        if data.item.kind in DETAILS_OF:
            self.action_details()
        elif data.item.kind == "more":
            self.action_table()

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded[NodeData]) -> None:
        data = event.node.data
        if data is not None and data.item is not None and not data.loaded:
            self._load(event.node)

    # --- refresh ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self._asked = True
        self._reload_open()

    def _reload_open(self) -> None:
        self._generation += 1
        stack = [self.tree.root]
        while stack:
            node = stack.pop()
            data = node.data
            if data is not None and data.loaded and (node.is_expanded or node.is_root):
                self._load(node)
                stack.extend(node.children)

    def _rearm(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = None
        if self.refresh_seconds > 0 and self.is_attached:
            self._refresh_timer = self.set_timer(self.refresh_seconds, self._due)

    def _due(self) -> None:
        self._refresh_timer = None
        if self.is_active and self._pending == 0:
            self._reload_open()
        else:
            self._rearm()

    def _show_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        summary.remove_class("-error")
        zones = [c for c in self.tree.root.children if c.data and c.data.item]
        if not zones:
            summary.update(Text("No zones yet: `stratus demo` builds a demo datacenter to explore"))
            return
        hosts = sum(_hosts_of(c.data.item) for c in zones if c.data and c.data.item)
        live = "live" if self.refresh_seconds > 0 else "refresh off"
        summary.update(
            Text(
                f"{len(zones)} zone{'' if len(zones) == 1 else 's'} · {hosts:,} hosts · "
                f"updated {hhmmss(self.loaded_at)} UTC ({live}) · database ok"
            )
        )

    # --- keys ------------------------------------------------------------------------------

    def _selected(self) -> TreeItem | None:
        node = self.tree.cursor_node
        return node.data.item if node is not None and node.data is not None else None

    def action_details(self) -> None:
        item = self._selected()
        opener = getattr(self.app, "open_details", None)
        if item is None or opener is None:
            return
        view = DETAILS_OF.get(item.kind)
        if view is None:
            self.notify(f"{item.name}: no detail screen; `v` opens its table", timeout=3)
            return
        opener(view, item.key, f"{item.kind} {item.name}")

    def action_table(self) -> None:
        item = self._selected()
        opener = getattr(self.app, "open_view", None)
        if item is None or opener is None:
            return
        if item.kind == "more":
            view = item.key.split(":")[1]
            opener(
                view,
                scope={"cluster" if view == "hosts" else "host": item.key.split(":")[2]},
                scope_label="",
                jump=False,
            )
            return
        target = TABLE_OF.get(item.kind)
        if target is None:
            return
        view, scope_kind = target
        key = item.key.split(":", 1)[1] if ":" in item.key else item.key
        opener(view, scope={scope_kind: key}, scope_label=f"{item.kind} {item.name}", jump=False)

    def action_back(self) -> None:
        back = getattr(self.app, "action_back", None)
        if back is not None:
            back()


def _inside(node: TreeNode[NodeData], ancestor: TreeNode[NodeData]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _hosts_of(item: TreeItem) -> int:
    first = item.state.split(" ", 1)[0].replace(",", "")
    return int(first) if first.isdigit() else 0
