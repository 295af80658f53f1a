"""Maintenance from the hosts table, on test-driver hosts through the console's job runner:
`M` lists every VM of the host and its fate (live-migrated to which host, or stopped and
why) in a dialog whose default is Cancel; confirmed, the drain runs as a job followed by
the console until the host is in Maintenance; `C` ends maintenance after a confirmation.
Also the hosts table's key bar at 120 columns, the add-host dialog of a cluster's hosts,
and a snapshot of the maintenance confirmation.

The test driver cannot live-migrate: the libvirt call is replaced by the same moves on the
two test-driver hosts (see maintenance_support)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from compute_world import ComputeWorld, make_compute_world, vm_by_name
from console_support import build, console, freeze_times, go, run_console, settle, toasts
from helpers import event_count, set_columns
from maintenance_support import GIB, migrate_by_hand
from ops_support import affected, hosts, runner_started, wait_for
from screens_support import screen_text
from sqlalchemy import update
from sqlmodel import col, select
from textual.pilot import Pilot
from textual.widgets import Input

from engine import offerings
from engine.bootstrap import Cloud
from engine.compute import DeployRequest, deploy_vm, operations
from engine.hosts import domains, maintenance
from engine.models import Host, VirtualMachine, VmState
from tui.app import StratusApp
from tui.screens.details import HostDetailScreen
from tui.screens.host_actions import AddHostDialog, HostsScreen
from tui.widgets.confirm import ConfirmDialog


@pytest.fixture
def world(cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ComputeWorld:
    monkeypatch.setattr(domains, "migrate_domain", migrate_by_hand([]))
    # No guest OS answers a shutdown on the test driver: force it off soon.
    monkeypatch.setattr(operations, "STOP_TIMEOUT", 0.5)
    made = make_compute_world(cloud, tmp_path)
    offerings.create_service_offering(
        cloud.admin, "big", cpu_count=1, cpu_mhz=500, memory_bytes=10 * GIB
    )
    return made


async def deploy(app: StratusApp, pilot: Pilot, world: ComputeWorld, *vms: tuple) -> None:
    """(name, host, offering) VMs deployed through the engine, run by the console's runner."""
    await runner_started(app, pilot)
    for name, host, offering in vms:
        deploy_vm(
            world.cloud.admin,
            DeployRequest(name, "z1", offering, "tiny", ["guest"], host=host),
        )
        await wait_for(
            pilot, lambda n=name: vm_by_name(world.cloud, n).state == VmState.RUNNING, name
        )


async def to_row(app: StratusApp, pilot: Pilot, name: str) -> HostsScreen:
    if not isinstance(app.screen, HostsScreen):
        await go(app, pilot, "hosts")
    screen = app.screen
    assert isinstance(screen, HostsScreen)
    screen.table.move_cursor(row=0)
    while screen.cursor_row is not None and screen.cursor_row.cells[0] != name:
        await pilot.press("down")
    assert screen.cursor_row is not None and screen.cursor_row.cells[0] == name
    return screen


def resource_state_shown(app: StratusApp, name: str) -> str:
    screen = app.screen
    assert isinstance(screen, HostsScreen)
    rows = [screen.cell_at(i, "name") for i in range(screen.table.row_count)]
    return screen.cell_at(rows.index(name), "resource")


def test_maintenance_drains_a_host_from_the_hosts_table(world: ComputeWorld) -> None:
    cloud = world.cloud
    seen: dict[str, Any] = {}

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(
            app, pilot, world,
            ("big-a", "h1", "big"), ("big-b", "h0", "big"), ("web1", "h0", "tiny"),
        )  # fmt: skip
        before = (hosts(cloud)["h0"].resource_state, event_count(cloud))
        await to_row(app, pilot, "h0")

        # The dialog lists each VM and its fate; Enter at once cancels: nothing changes.
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert app.screen.focused is not None and app.screen.focused.id == "cancel"
        listed = affected(app)
        assert "host h0 (" in listed and "Up, Enabled" in listed
        assert "• VM web1: live-migrate to host h1" in listed
        assert "• VM big-b: stop (no host fits: zone 'z1': 0 of 2 hosts fit" in listed
        shown = screen_text(app)
        assert "1 VM will be live-migrated and 1 stopped." in shown
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, HostsScreen)
        assert (hosts(cloud)["h0"].resource_state, event_count(cloud)) == before

        # Confirmed: the drain runs as a job the console follows to its end. It is held
        # after its first VM, to look at its progress.
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await pilot.click("#confirm")
        await wait_for(
            pilot, lambda: any("Maintenance of host h0 submitted" in t for t in toasts(app)), "!"
        )
        await wait_for(pilot, first_done.is_set, "the drain's first VM")
        await wait_for(
            pilot, lambda: resource_state_shown(app, "h0") == "PrepareForMaintenance", "state"
        )
        await pilot.press("j")
        await wait_for(pilot, lambda: "VM big-b (stop)" in screen_text(app), "the progress")
        panel = screen_text(app)
        assert "Running" in panel and "PrepareHostMaintenance Host h0" in panel
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HostsScreen), "the hosts table")
        release.set()
        await wait_for(
            pilot, lambda: hosts(cloud)["h0"].resource_state == "Maintenance", "maintenance"
        )
        await wait_for(
            pilot,
            lambda: any("PrepareHostMaintenance Host h0: done" in t for t in toasts(app)),
            "the job's toast",
        )
        seen["done"] = next(t for t in toasts(app) if "PrepareHostMaintenance" in t)
        await settle(app, pilot)
        assert resource_state_shown(app, "h0") == "Maintenance"
        # The jobs panel has the drain, finished, with what it did.
        await pilot.press("j")
        await wait_for(pilot, lambda: "PrepareHostMaintenance Host h0" in screen_text(app), "j")
        panel = screen_text(app)
        assert "Succeeded" in panel and "web1 migrated to h1" in panel
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, HostsScreen), "the hosts table")

        # Maintenance cannot be prepared twice; C ends it, after a confirmation.
        await pilot.press("M")
        await wait_for(
            pilot, lambda: any("C cancels maintenance" in t for t in toasts(app)), "refusal"
        )
        assert isinstance(app.screen, HostsScreen)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert app.screen.focused is not None and app.screen.focused.id == "cancel"
        assert "VMs that were migrated away stay where they are" in affected(app)
        await pilot.press("tab")  # from Cancel to End maintenance
        assert app.screen.focused is not None and app.screen.focused.id == "confirm"
        await pilot.press("enter")
        await wait_for(pilot, lambda: hosts(cloud)["h0"].resource_state == "Enabled", "enabled")
        await settle(app, pilot)
        assert resource_state_shown(app, "h0") == "Enabled"

    first_done, release = threading.Event(), threading.Event()

    def hold_after_the_first(_event: str, vm: str) -> None:
        if vm == "big-b":
            first_done.set()
            release.wait(30)

    maintenance.DRAIN_HOOKS.append(hold_after_the_first)
    try:
        run_console(cloud, scenario)
    finally:
        release.set()
        maintenance.DRAIN_HOOKS.remove(hold_after_the_first)
    assert "migrated" in seen["done"] and "stopped" in seen["done"]
    h1 = hosts(cloud)["h1"]
    web1, big_b = vm_by_name(cloud, "web1"), vm_by_name(cloud, "big-b")
    assert web1.state == VmState.RUNNING and web1.host_id == h1.id
    assert big_b.state == VmState.STOPPED and big_b.host_id is None


def test_read_only_has_no_maintenance_keys(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=2)
    before = {h.name: h.resource_state for h in hosts(cloud).values()}

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        screen = await to_row(app, pilot, "h0")
        for action in ("prepare_maintenance", "cancel_maintenance"):
            assert screen.check_action(action, ()) is False
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & {"host.maintenance", "host.end_maintenance"}
        await pilot.press("M", "C")
        await settle(app, pilot)
        assert isinstance(app.screen, HostsScreen)

    run_console(cloud, scenario, read_only=True)
    assert {h.name: h.resource_state for h in hosts(cloud).values()} == before


def test_the_hosts_key_bar_fits_120_columns_and_help_lists_the_rest(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=0)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "hosts")
        bar = screen_text(app).splitlines()[-1]
        for shown in ("/ Filter", "d Details", "M Maint", "^d Remove", "u Add URI", "j Jobs"):
            assert shown in bar, f"{shown!r} is not on the key bar: {bar!r}"
        await pilot.press("question_mark")
        await settle(app, pilot)
        help_text = screen_text(app)
        for hidden in ("End maintenance", "Reconnect", "Refresh"):
            assert hidden in help_text, f"{hidden!r} is not in the help"

    run_console(cloud, scenario)


def test_the_add_host_dialog_of_a_clusters_hosts_shows_the_clusters_name(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "clusters")
        await pilot.press("enter")  # the cluster's hosts
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, HostsScreen) and screen.scope.get("cluster")
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, AddHostDialog), "the dialog")
        assert app.screen.query_one("#input-cluster", Input).value == "c1"

    run_console(cloud, scenario)


def test_maintenance_confirmation_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    """h0 carries vm-0001 (2 GiB) and vm-0003 (shrunk to 512 MiB); h1 has 1 GiB free: one
    VM fits there, the other is stopped and the dialog says why."""
    build(cloud.admin, hosts=2, vms=3)
    small = vm_named(cloud, "h0", last=True)
    set_columns(cloud, VirtualMachine, small.uuid, memory_bytes=512 * 2**20)
    with cloud.db.write() as session:
        session.execute(update(Host).where(Host.name == "h1").values(memory_used_bytes=63 * GIB))
        session.execute(
            update(Host).where(Host.name == "h0").values(memory_used_bytes=2 * GIB + 512 * 2**20)
        )
    freeze_times(cloud)
    app = console(cloud)

    async def opened(pilot: Pilot[Any]) -> None:
        await settle(app, pilot)
        await to_row(app, pilot, "h0")
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await settle(app, pilot)

    assert snap_compare(app, terminal_size=(120, 40), run_before=opened)


def vm_named(cloud: Cloud, host: str, *, last: bool = False) -> VirtualMachine:
    """The first (or last) VM by name on `host`."""
    with cloud.db.read() as session:
        on_host = list(
            session.exec(
                select(VirtualMachine)
                .join(Host, col(Host.id) == VirtualMachine.host_id)
                .where(Host.name == host)
                .order_by(col(VirtualMachine.name))
            )
        )
    return on_host[-1] if last else on_host[0]


def test_maintenance_from_the_host_detail_screen(world: ComputeWorld) -> None:
    cloud = world.cloud

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, ("web1", "h0", "tiny"))
        await to_row(app, pilot, "h0")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, HostDetailScreen), "the detail")
        await pilot.press("M")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert "• VM web1: live-migrate to host h1" in affected(app)
        await pilot.click("#confirm")
        await wait_for(
            pilot, lambda: hosts(cloud)["h0"].resource_state == "Maintenance", "maintenance"
        )
        assert isinstance(app.screen, HostDetailScreen)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: hosts(cloud)["h0"].resource_state == "Enabled", "enabled")

    run_console(cloud, scenario)
    web1 = vm_by_name(cloud, "web1")
    assert web1.state == VmState.RUNNING and web1.host_id == hosts(cloud)["h1"].id
