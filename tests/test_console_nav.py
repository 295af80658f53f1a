"""Console navigation: `:` jumps, `/` filters, drill-down and back, help, palette, keymap,
read-only mode, slow and failing engine calls."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from console_support import build, build_ipam, console, go, run_console, settle, toasts
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input

import tui.screens.resources as resources_screen
from engine import listing
from engine.bootstrap import Cloud
from engine.config import ConfigError, load_config
from engine.errors import DatabaseUnavailable
from tui import navigation
from tui.app import StratusApp, ViewCommands
from tui.screens.resources import ResourceScreen
from tui.screens.topology import TopologyScreen
from tui.widgets.command_line import CommandLine
from tui.widgets.help_panel import HelpPanel


def table_names(app: StratusApp) -> list[str]:
    screen = app.screen
    assert isinstance(screen, ResourceScreen)
    return [row.cells[0] for row in screen.rows]


def test_colon_jumps_to_views_by_name_and_alias(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=4)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "hosts")
        assert isinstance(app.screen, ResourceScreen) and app.screen.view.name == "hosts"
        assert table_names(app) == ["h0", "h1"]
        assert app.breadcrumbs() == ["Dashboard", "Hosts"]

        await go(app, pilot, "vm")  # an alias; a jump replaces the path
        assert app.screen.view.name == "vms" and len(table_names(app)) == 4
        assert app.breadcrumbs() == ["Dashboard", "VMs"]

        await go(app, pilot, "tree")
        assert isinstance(app.screen, TopologyScreen)

        await go(app, pilot, "home")
        assert app.breadcrumbs() == ["Dashboard"]

    run_console(cloud, scenario)


def test_command_line_completes_and_remembers(cloud: Cloud) -> None:
    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await pilot.press("colon")
        await pilot.pause()
        assert isinstance(app.screen, CommandLine)
        await pilot.press(*"temp")
        await pilot.pause()
        box = app.screen.query_one(Input)
        await pilot.pause(0.1)  # the suggester answers asynchronously
        await pilot.press("tab")
        assert box.value == "templates"
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen.view.name == "templates"

        await pilot.press("colon", "up")
        assert app.screen.query_one(Input).value == "templates"  # history
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ResourceScreen)

    run_console(cloud, scenario)


def test_unknown_and_unavailable_views_say_so(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A build without some part registers its views unavailable, with the reason.
    monkeypatch.setitem(
        navigation.DESTINATIONS,
        "lbs",
        navigation.Destination(
            "lbs", "Load balancers", available=False, unavailable="Load balancers are not "
            "available yet: no load balancing in this build",
        ),
    )  # fmt: skip

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "nodez")
        assert any("no view 'nodez'" in t for t in toasts(app)), toasts(app)
        await go(app, pilot, "lbs")
        assert any("Load balancers are not available yet" in t for t in toasts(app))
        assert app.breadcrumbs() == ["Dashboard"]

    run_console(cloud, scenario)


def test_ips_and_nets_are_tables_and_a_network_opens_its_addresses(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)
    build_ipam(cloud.admin)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "ips")
        assert isinstance(app.screen, ResourceScreen) and app.screen.view.name == "ips"
        assert table_names(app) == [f"198.51.100.{n}" for n in range(10, 41)]
        await pilot.press("slash", *"admin")
        await settle(app, pilot)
        assert table_names(app) == ["198.51.100.10", "198.51.100.11"]
        await pilot.press("enter")  # back to the table

        await go(app, pilot, "networks")  # an alias
        assert app.screen.view.name == "nets" and table_names(app) == ["blue", "red"]
        await pilot.press("enter")  # blue's public addresses
        await settle(app, pilot)
        assert app.screen.view.name == "ips"
        assert table_names(app) == ["198.51.100.10", "198.51.100.11"]
        assert app.breadcrumbs()[:2] == ["Dashboard", "Networks"]

    run_console(cloud, scenario)


def test_every_issue_view_is_reachable() -> None:
    wanted = (
        "zones pods clusters hosts vms vols ips nets pools stores templates jobs events settings"
    )
    for name in wanted.split():
        destination = navigation.find(name)
        assert destination is not None, name
        if destination.kind == "table" and destination.available:
            assert destination.name in listing.VIEWS


def test_slash_filters_bang_inverts_escape_clears(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=12)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        every = table_names(app)
        await pilot.press("slash", *"web")
        await settle(app, pilot)
        assert table_names(app) == [n for n in every if "web" in n] != []
        assert "filter 'web'" in app.screen.status_text().plain

        await pilot.press("home", "exclamation_mark")  # "!web"
        await settle(app, pilot)
        assert table_names(app) == [n for n in every if "web" not in n]

        await pilot.press("enter")  # back to the table, filter kept
        assert app.screen.table.has_focus
        await pilot.press("escape")  # Esc clears the filter first ...
        await settle(app, pilot)
        assert table_names(app) == every
        await pilot.press("escape")  # ... then goes back
        await pilot.pause()
        assert app.breadcrumbs() == ["Dashboard"]

    run_console(cloud, scenario)


def test_enter_drills_down_and_escape_goes_back(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=4)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "zones")
        for _view in ("pods", "clusters", "hosts"):
            await pilot.press("enter")
            await settle(app, pilot)
        assert app.breadcrumbs() == [
            "Dashboard",
            "Zones",
            "Pods of zone z1",
            "Clusters of pod p1",
            "Hosts of cluster c1",
        ]
        assert table_names(app) == ["h0", "h1"]
        await pilot.press("down", "enter")  # h1's VMs
        await settle(app, pilot)
        assert app.breadcrumbs()[-1] == "VMs of host h1"
        assert len(table_names(app)) == 2
        assert {row.cells[3] for row in app.screen.rows} == {"h1"}

        await pilot.press("enter")  # a VM is a leaf: its detail screen
        await settle(app, pilot)
        assert type(app.screen).__name__ == "VmDetailScreen"

        await pilot.press("escape", "escape")
        await pilot.pause()
        assert app.breadcrumbs()[-1] == "Hosts of cluster c1"
        await pilot.press("right_square_bracket")  # forward again
        await settle(app, pilot)
        assert app.breadcrumbs()[-1] == "VMs of host h1"
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert app.breadcrumbs()[-1] == "Hosts of cluster c1"

    run_console(cloud, scenario)


def test_help_lists_every_key_of_the_view(cloud: Cloud) -> None:
    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "hosts")
        await pilot.press("question_mark")
        await pilot.pause()
        panel = app.screen
        assert isinstance(panel, HelpPanel)
        ids = {k.binding_id for k in panel.keys}
        assert {
            "table.filter",
            "table.back",
            "table.sort",
            "table.refresh",
            "table.add",
            "table.edit",
            "table.details",
            "table.first",
            "app.goto",
            "app.help",
            "app.quit",
        } <= ids
        keys = {k.binding_id: k.keys for k in panel.keys}
        assert keys["table.filter"] == "/" and keys["table.first"] == "home, g"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ResourceScreen)

    run_console(cloud, scenario)


def test_palette_offers_the_same_views(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        provider = ViewCommands(app.screen)
        hits = [hit async for hit in provider.search("hosts")]
        assert any("Go to Hosts (:hosts)" in str(hit.match_display) for hit in hits)
        found = [hit async for hit in provider.discover()]
        assert len(found) == len(navigation.DESTINATIONS)

        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"go to hosts")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ResourceScreen) and app.screen.view.name == "hosts"

    run_console(cloud, scenario)


def test_keymap_from_the_config_file_remaps_keys(
    cloud: Cloud, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file = tmp_path / "stratus.toml"
    config_file.write_text('[keymap]\n"app.goto" = "g,colon"\n"table.filter" = "f"\n')
    monkeypatch.setenv("STRATUS_CONFIG", str(config_file))
    config = load_config()
    assert config.keymap == {"app.goto": "g,colon", "table.filter": "f"}
    build(cloud.admin, hosts=2, vms=2)

    async def main() -> None:
        app = StratusApp(cloud.admin, config)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("g", *"hosts", "enter")
            await settle(app, pilot)
            assert app.screen.view.name == "hosts"
            await pilot.press("f", *"h1")
            await settle(app, pilot)
            assert table_names(app) == ["h1"]

    asyncio.run(main())

    config_file.write_text('[keymap]\n"quit" = "x"\n')
    with pytest.raises(ConfigError, match="'quit' is not a binding id"):
        load_config()


def test_read_only_hides_every_changing_action(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=1)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        for view in ("zones", "pods", "clusters", "hosts", "pools", "stores", "settings"):
            await go(app, pilot, view)
            screen = app.screen
            assert screen.check_action("add", ()) is False, view
            assert screen.check_action("edit", ()) is False, view
            active = {b.binding.id for b in app.active_bindings.values()}
            assert "table.add" not in active and "table.edit" not in active
        await pilot.press("a", "e")
        await pilot.pause()
        assert isinstance(app.screen, ResourceScreen)  # no form opened

    run_console(cloud, scenario, read_only=True)


def test_add_and_edit_open_forms_when_writable(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "zones")
        assert app.screen.check_action("add", ()) is True
        await pilot.press("e")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ZoneForm"
        assert app.screen.uuid is not None  # editing the selected zone
        await pilot.press("escape")
        await pilot.pause()
        await go(app, pilot, "vms")
        assert app.screen.check_action("add", ()) is False  # no VM form here

    run_console(cloud, scenario)


def test_a_slow_listing_does_not_freeze_the_console(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(cloud.admin, hosts=1, vms=2)
    release = threading.Event()
    entered = threading.Event()
    real = listing.list_page

    def slow(*args: Any, **kwargs: Any) -> listing.Page:
        entered.set()
        release.wait(timeout=30)
        return real(*args, **kwargs)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        monkeypatch.setattr(resources_screen.listing, "list_page", slow)
        await pilot.press("colon", *"vms", "enter")
        for _ in range(100):
            await pilot.pause(0.01)
            if entered.is_set():
                break
        assert entered.is_set()
        screen = app.screen
        assert isinstance(screen, ResourceScreen) and screen.rows == []
        # The query is stuck in its thread; keys still work.
        await pilot.press("colon")
        await pilot.pause()
        assert isinstance(app.screen, CommandLine)
        await pilot.press("escape", "question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpPanel)
        await pilot.press("escape")
        release.set()
        await settle(app, pilot)
        assert len(screen.rows) == 2

    try:
        run_console(cloud, scenario)
    finally:
        release.set()


def test_a_failing_listing_is_a_notification_with_the_engine_message(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(cloud.admin, hosts=1, vms=2)
    message = "database sqlite:////x.db: disk I/O error [b]not markup[/b]"

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable(message)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        screen = app.screen
        assert len(screen.rows) == 2
        monkeypatch.setattr(resources_screen.listing, "list_page", failing)
        await pilot.press("r")
        await settle(app, pilot)
        assert app.is_running
        assert any(message in t for t in toasts(app)), toasts(app)
        status = screen.status_text().plain
        assert status.startswith("DATABASE ERROR (1 failed, last good read 03:04:05)")
        assert message in status
        assert len(screen.rows) == 2  # what was shown stays

        monkeypatch.undo()
        await pilot.press("r")
        await settle(app, pilot)
        assert "database ok" in screen.status_text().plain

    run_console(cloud, scenario)


def test_every_binding_has_an_id_and_avoids_tmux_keys() -> None:
    from tui.widgets.command_line import CommandLine as Line
    from tui.widgets.help_panel import HelpPanel as Panel
    from tui.widgets.row_table import RowTable

    owners = [
        StratusApp,
        ResourceScreen,
        resources_screen.ResourceTable,
        RowTable,
        TopologyScreen,
        Line,
        Panel,
    ]
    for owner in owners:
        for binding in owner.BINDINGS:
            assert binding.id, f"{owner.__name__}: binding {binding.key!r} has no id"
            assert not {"ctrl+a", "ctrl+b"} & set(binding.key.split(","))


def test_console_fits_80_by_24(cloud: Cloud) -> None:
    build(cloud.admin, hosts=3, vms=6)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "hosts")
        table = app.screen.table
        assert table.size.height >= 10 and table.outer_size.width == 80
        await pilot.press("down", "down")
        assert app.screen.cursor_row.cells[0] == "h2"

    run_console(cloud, scenario, size=(80, 24))


def test_console_object_is_built_from_config(cloud: Cloud) -> None:
    app = console(cloud, read_only=True)
    assert "read-only" in app.sub_title
