"""Host actions from the console: confirmations (Cancel by default, type the name),
enable/disable, remove (refused while VMs are on it), add by URI with the facts shown,
and none of it in read-only mode."""

from __future__ import annotations

from console_support import build, go, run_console, settle, toasts
from ops_support import affected, confirm_enabled, hosts, runner_started, wait_for
from screens_support import screen_text
from sqlalchemy import func
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Input, Static

from engine.bootstrap import Cloud
from engine.models import Event
from engine.topology import HostSpec, add_hosts
from tui.app import StratusApp
from tui.screens.details import HostDetailScreen
from tui.screens.host_actions import AddHostDialog, HostsScreen
from tui.widgets.confirm import ConfirmDialog

GIB = 2**30


def world(cloud: Cloud) -> None:
    """h0 carries 2 VMs; `spare` carries none."""
    build(cloud.admin, hosts=1, vms=2)
    add_hosts(
        cloud.admin,
        "c1",
        [HostSpec("spare", "test:///nodes/spare.xml", 8, 2000, 16 * GIB, address="10.1.0.30")],
    )


def events(cloud: Cloud) -> int:
    with cloud.db.read() as session:
        return session.exec(select(func.count()).select_from(Event)).one()


async def to_row(app: StratusApp, pilot: Pilot, name: str) -> HostsScreen:
    await go(app, pilot, "hosts")
    screen = app.screen
    assert isinstance(screen, HostsScreen)
    while screen.cursor_row is not None and screen.cursor_row.cells[0] != name:
        await pilot.press("down")
    assert screen.cursor_row is not None and screen.cursor_row.cells[0] == name
    return screen


def test_enter_at_once_cancels_and_nothing_changes(cloud: Cloud) -> None:
    world(cloud)
    before = (hosts(cloud)["spare"].resource_state, len(hosts(cloud)), events(cloud))

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await to_row(app, pilot, "spare")
        for key in ("s", "ctrl+d"):  # disable, remove
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
            assert app.screen.focused is not None and app.screen.focused.id == "cancel"
            await pilot.press("enter")
            await settle(app, pilot)
            assert isinstance(app.screen, HostsScreen)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, HostsScreen)

    run_console(cloud, scenario)
    assert (hosts(cloud)["spare"].resource_state, len(hosts(cloud)), events(cloud)) == before


def test_disable_with_confirmation_then_enable(cloud: Cloud) -> None:
    world(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await to_row(app, pilot, "h0")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        listed = affected(app)
        assert "host h0 (test:///nodes/h0.xml) in z1 / p1 / c1, Up, Enabled" in listed
        assert "2 VMs on it:" in listed and "• VM api-000001 (Running)" in listed
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: hosts(cloud)["h0"].resource_state == "Disabled", "disable")
        await settle(app, pilot)
        assert app.screen.cell_at(0, "resource") == "Disabled"
        await pilot.press("s")  # enabling is not destructive: no dialog
        await wait_for(pilot, lambda: hosts(cloud)["h0"].resource_state == "Enabled", "enable")
        await settle(app, pilot)
        assert app.screen.cell_at(0, "resource") == "Enabled"

    run_console(cloud, scenario)


def test_remove_needs_the_name_typed_and_runs_as_a_job(cloud: Cloud) -> None:
    world(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await to_row(app, pilot, "spare")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert "no VMs on it" in affected(app)
        assert not confirm_enabled(app)
        await pilot.click("#confirm")  # disabled: nothing happens
        assert isinstance(app.screen, ConfirmDialog)
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press(*"spar")
        assert not confirm_enabled(app)
        await pilot.press("enter")  # not the name yet: stays open
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("e")
        assert confirm_enabled(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: "spare" not in hosts(cloud), "the host removed")
        await wait_for(pilot, lambda: any("RemoveHost" in t for t in toasts(app)), "the toast")

    run_console(cloud, scenario)
    assert set(hosts(cloud)) == {"h0"}


def test_remove_is_refused_with_the_engines_message_while_vms_are_on_it(cloud: Cloud) -> None:
    world(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await to_row(app, pilot, "h0")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press("h", "0", "enter")
        await wait_for(
            pilot, lambda: any("still carries VMs" in t for t in toasts(app)), "the refusal"
        )
        shown = next(t for t in toasts(app) if "still carries VMs" in t)
        assert "host 'h0' still carries VMs" in shown and "Job failed" in shown

    run_console(cloud, scenario)
    assert "h0" in hosts(cloud)


def test_host_detail_offers_the_same_actions(cloud: Cloud) -> None:
    world(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await to_row(app, pilot, "spare")
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, HostDetailScreen)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: hosts(cloud)["spare"].resource_state == "Disabled", "off")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press(*"spare", "enter")
        await wait_for(pilot, lambda: "spare" not in hosts(cloud), "the host removed")
        await wait_for(pilot, lambda: isinstance(app.screen, HostsScreen), "back to the table")

    run_console(cloud, scenario)


def test_add_a_host_by_uri_shows_the_facts_before_saving(cloud: Cloud) -> None:
    world(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await go(app, pilot, "hosts")
        await pilot.press("u")
        await settle(app, pilot)
        add = app.screen
        assert isinstance(add, AddHostDialog)
        add.query_one("#input-cluster", Input).value = "c1"
        add.query_one("#input-uri", Input).value = "test:///nowhere/node.xml"
        await pilot.click("#probe")
        await wait_for(pilot, lambda: str(add.query_one("#add-error", Static).render()) != "", "")
        assert "unreachable" in str(add.query_one("#add-error", Static).render())
        assert add.query_one("#save").disabled
        add.query_one("#input-uri", Input).value = "test:///default"
        await pilot.click("#probe")
        await wait_for(pilot, lambda: add.facts is not None, "the facts")
        shown = screen_text(app)
        assert "Driver          TEST" in shown and "Suggested name  default" in shown
        assert "Memory" in shown and "MHz" in shown
        assert set(hosts(cloud)) == {"h0", "spare"}
        add.query_one("#input-name", Input).value = "probe-1"
        await pilot.click("#save")
        await wait_for(pilot, lambda: isinstance(app.screen, HostsScreen), "the dialog closed")
        await settle(app, pilot)
        names = [app.screen.cell_at(i, "name") for i in range(app.screen.table.row_count)]
        assert "probe-1" in names

    run_console(cloud, scenario)
    added = hosts(cloud)["probe-1"]
    assert added.uri == "test:///default" and added.status == "Up"
    assert added.cpu_cores > 0 and added.memory_bytes > 0


def test_read_only_hides_and_refuses_every_host_action(cloud: Cloud) -> None:
    world(cloud)
    before = (hosts(cloud), events(cloud))

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        assert app.runner is None  # a read-only console runs no jobs
        screen = await to_row(app, pilot, "spare")
        for action in ("toggle_host", "reconnect_host", "remove_host", "add_host_uri"):
            assert screen.check_action(action, ()) is False
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & {"host.toggle", "host.reconnect", "host.remove", "host.add_uri"}
        await pilot.press("s", "R", "ctrl+d", "u")
        await settle(app, pilot)
        assert isinstance(app.screen, HostsScreen)
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, HostDetailScreen)
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & {"host.toggle", "host.reconnect", "host.remove"}
        await pilot.press("s", "R", "ctrl+d")
        await settle(app, pilot)
        assert isinstance(app.screen, HostDetailScreen)

    run_console(cloud, scenario, read_only=True)
    assert (hosts(cloud), events(cloud)) == before


def test_reconnect_runs_as_a_job_and_the_host_comes_back_up(cloud: Cloud) -> None:
    world(cloud)
    add_hosts(
        cloud.admin,
        "c1",
        [HostSpec("lost", "test:///default", 2, 2000, 8 * GIB, status="Disconnected")],
    )

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await to_row(app, pilot, "lost")
        assert screen.cursor_row.cells[1] == "Disconnected"
        await pilot.press("R")
        await wait_for(pilot, lambda: hosts(cloud)["lost"].status == "Up", "the host Up")
        await wait_for(
            pilot, lambda: any("ReconnectHost Host lost: done" in t for t in toasts(app)), "toast"
        )
        await settle(app, pilot)
        assert screen.cursor_row.cells[0] == "lost" and screen.cursor_row.cells[1] == "Up"

    run_console(cloud, scenario)
