"""The topology tree: lazy levels down to VMs, storage groups, details and table keys,
and a snapshot of it."""

from __future__ import annotations

from typing import Any

from console_support import build, console, freeze_times, go, run_console, settle
from textual.pilot import Pilot
from textual.widgets import Tree

from engine.bootstrap import Cloud
from tui.app import StratusApp
from tui.screens.resources import ResourceScreen
from tui.screens.topology import TopologyScreen


def _walk(node):  # type: ignore[no-untyped-def]
    for child in node.children:
        yield child
        yield from _walk(child)


def tree_of(app: StratusApp) -> Tree[Any]:
    screen = app.screen
    assert isinstance(screen, TopologyScreen)
    return screen.tree


def loaded_names(app: StratusApp) -> list[str]:
    return [
        n.data.item.name
        for n in _walk(tree_of(app).root)
        if n.data is not None and n.data.item is not None
    ]


async def open_down_to(app: StratusApp, pilot: Pilot, names: list[str]) -> None:
    """Expand the nodes named `names`, one level after the other."""
    for name in names:
        for node in _walk(tree_of(app).root):
            if node.data is not None and node.data.item is not None and node.data.item.name == name:
                node.expand()
                break
        else:
            raise AssertionError(f"no node {name} in {loaded_names(app)}")
        await settle(app, pilot)


def test_levels_load_only_when_opened(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=4)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "tree")
        assert loaded_names(app) == ["z1"]  # zones only, until one is opened
        await open_down_to(app, pilot, ["z1"])
        assert loaded_names(app) == ["z1", "p1", "Secondary storage"]
        await open_down_to(app, pilot, ["p1", "c1"])
        assert loaded_names(app)[3:] == ["h0", "h1", "Primary storage", "Secondary storage"]
        await open_down_to(app, pilot, ["h0", "Primary storage"])
        names = loaded_names(app)
        assert names[names.index("h0") + 1 : names.index("h1")] == ["api-000001", "cache-000003"]
        assert names[names.index("Primary storage") + 1] == "c1-ps1"
        labels = {
            n.data.item.name: n.label.plain
            for n in _walk(tree_of(app).root)
            if n.data is not None and n.data.item is not None
        }
        assert labels["api-000001"].startswith("VM api-000001 (Running, PowerOn) 1 vCPU")
        assert labels["h0"].startswith(
            "Host h0 (Up, Enabled) 2 VMs  CPU █░░░░░  12% 4.0 GHz/32.0 GHz  "
            "Mem █░░░░░   6% 4.0 GiB/64.0 GiB"
        )
        assert "Stor ░░░░░░   0% 0 B/1,000 GiB" in labels["c1-ps1"]

    run_console(cloud, scenario)


def test_d_opens_details_and_v_the_table_of_a_node(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=4)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "tree")
        await open_down_to(app, pilot, ["z1", "p1", "c1"])
        tree = tree_of(app)
        tree.focus()
        await pilot.press("down", "down", "down", "down")  # z1, p1, c1, h0
        assert tree.cursor_node.data.item.name == "h0"
        await pilot.press("d")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HostDetailScreen"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("v")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ResourceScreen) and screen.view.name == "vms"
        assert [r.cells[0] for r in screen.rows] == ["api-000001", "cache-000003"]
        assert app.breadcrumbs()[-2:] == ["Topology", "VMs of host h0"]

        await pilot.press("escape")
        await pilot.pause()
        await open_down_to(app, pilot, ["h0"])
        await pilot.press("down", "enter")  # the first VM of h0: a leaf opens its details
        await settle(app, pilot)
        assert type(app.screen).__name__ == "VmDetailScreen"

    run_console(cloud, scenario)


def test_topology_tree_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build(cloud.admin, hosts=3, vms=6)
    freeze_times(cloud)
    app = console(cloud)

    async def opened(pilot: Pilot[Any]) -> None:
        await settle(app, pilot)
        await go(app, pilot, "tree")
        await open_down_to(
            app, pilot, ["z1", "p1", "c1", "h1", "Primary storage", "Secondary storage"]
        )
        tree_of(app).focus()
        await pilot.press("down", "down", "down", "down", "down")  # the cursor on h1

    assert snap_compare(app, terminal_size=(120, 40), run_before=opened)
