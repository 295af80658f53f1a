"""VM actions from the console, on test-driver hosts through the console's job runner:
confirmations (Cancel by default, the VMs listed, the name typed for expunge), stop and
start, bulk stop/start of marked rows, destroy/recover/expunge, change offering, the
migration target list (fit / no fit and why), and none of it in read-only mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compute_world import ComputeWorld, make_compute_world, vm_by_name
from console_support import go, run_console, settle, toasts
from hosts_helpers import MIB
from ops_support import affected, confirm_enabled, runner_started, wait_for
from placement_world import set_host
from screens_support import ScreenApp, build_world, screen_text
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.compute import DeployRequest, deploy_vm
from engine.models import Job, VmState
from tui.app import StratusApp
from tui.screens.details import VmDetailScreen
from tui.screens.vm_actions import MigrateDialog, OfferingDialog, VmsScreen
from tui.widgets.confirm import ConfirmDialog

GIB = 2**30


def state(cloud: Cloud, name: str) -> str:
    return vm_by_name(cloud, name).state


async def deploy(app: StratusApp, pilot: Pilot, world: ComputeWorld, *names: str) -> None:
    """Deploy VMs through the engine; the console's runner runs the jobs."""
    await runner_started(app, pilot)
    for name in names:
        deploy_vm(
            world.cloud.admin,
            DeployRequest(name, world.zone, world.offering, world.template.uuid, [world.network]),
        )
    for name in names:
        await wait_for(pilot, lambda n=name: state(world.cloud, n) == VmState.RUNNING, name)


async def to_row(app: StratusApp, pilot: Pilot, name: str) -> VmsScreen:
    if not isinstance(app.screen, VmsScreen):
        await go(app, pilot, "vms")
    screen = app.screen
    assert isinstance(screen, VmsScreen)
    screen.load(mode="refresh")
    await settle(app, pilot)
    screen.table.move_cursor(row=0)
    while screen.cursor_row is not None and screen.cursor_row.cells[0] != name:
        await pilot.press("down")
    assert screen.cursor_row is not None and screen.cursor_row.cells[0] == name
    return screen


async def dialog_open(app: StratusApp, pilot: Pilot) -> None:
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")


def test_stop_asks_first_cancel_is_the_default_then_stop_and_start(
    cloud: Cloud, tmp_path: Path
) -> None:
    world = make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        await to_row(app, pilot, "web")
        host = app.screen.cell_at(0, "host")
        for key in ("t", "T", "b"):
            await pilot.press(key)
            await dialog_open(app, pilot)
            assert app.screen.focused is not None and app.screen.focused.id == "cancel"
            assert f"VM web (Running on host {host}), 1 x 500 MHz, 64 MiB" in affected(app)
            await pilot.press("enter")  # Cancel
            await settle(app, pilot)
            assert isinstance(app.screen, VmsScreen)
        assert state(cloud, "web") == VmState.RUNNING
        await pilot.press("t")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.STOPPED, "stopped")
        await wait_for(pilot, lambda: any("StopVM" in t and "done" in t for t in toasts(app)), "")
        await wait_for(pilot, lambda: app.screen.cell_at(0, "state") == "Stopped", "table")
        await pilot.press("s")  # starting is not destructive: no dialog
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.RUNNING, "running again")
        await wait_for(pilot, lambda: any("StartVM" in t for t in toasts(app)), "the toast")

    run_console(cloud, scenario)


def test_bulk_stop_and_start_of_marked_vms_with_one_confirmation(
    cloud: Cloud, tmp_path: Path
) -> None:
    world = make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "a", "b", "c")
        screen = await to_row(app, pilot, "a")
        await pilot.press("space", "space")  # marks a and b; the cursor moves on
        assert list(screen.marked.values()) == ["a", "b"]
        assert screen.cell_at(0, "name") == "● a" and screen.cell_at(2, "name") == "c"
        assert "2 marked" in str(screen.query_one("#table-status").render())
        await pilot.press("t")
        await dialog_open(app, pilot)
        listed = affected(app)
        assert "Stop 2 VMs?" in screen_text(app)
        assert "VM a (Running" in listed and "VM b (Running" in listed and "VM c" not in listed
        await pilot.click("#confirm")
        await wait_for(
            pilot,
            lambda: [state(cloud, n) for n in "abc"] == ["Stopped", "Stopped", "Running"],
            "a and b stopped",
        )
        assert screen.marked == {}
        await to_row(app, pilot, "a")
        await pilot.press("space", "space")
        await pilot.press("slash", "!", "b")  # the filter hides b, still marked
        await settle(app, pilot)
        await pilot.press("enter")
        assert [screen.cell_at(i, "name") for i in range(screen.table.row_count)] == ["● a", "c"]
        assert "2 marked (1 not shown)" in str(screen.query_one("#table-status").render())
        await pilot.press("s")
        await dialog_open(app, pilot)
        listed = affected(app)
        assert "VM a (Stopped" in listed and "VM b (Stopped" in listed and "VM c" not in listed
        assert "1 of these 2 VMs are hidden by the filter" in listed
        await pilot.click("#confirm")
        await wait_for(
            pilot, lambda: all(state(cloud, n) == "Running" for n in "abc"), "all running"
        )

    run_console(cloud, scenario)


def test_destroy_recover_and_expunge_with_the_name_typed(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "db")
        vm = vm_by_name(cloud, "db")
        await to_row(app, pilot, "db")
        await pilot.press("ctrl+d")
        await dialog_open(app, pilot)
        listed = affected(app)
        assert "VM db (Running on host" in listed and f"volume ROOT-{vm.id} (ROOT" in listed
        assert "NIC " in listed and "on guest: 10.50.0." in listed
        assert app.screen.focused is not None and app.screen.focused.id == "cancel"
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "db") == VmState.DESTROYED, "destroyed")
        await pilot.press("v")  # recover: immediate
        await wait_for(pilot, lambda: state(cloud, "db") == VmState.STOPPED, "recovered")
        await wait_for(pilot, lambda: any("recovered" in t for t in toasts(app)), "toast")
        await pilot.press("ctrl+d")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "db") == VmState.DESTROYED, "destroyed")
        await pilot.press("X")
        await dialog_open(app, pilot)
        assert not confirm_enabled(app)
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press("d", "enter")  # not the name: stays open
        assert isinstance(app.screen, ConfirmDialog) and not confirm_enabled(app)
        await pilot.press("b")
        assert confirm_enabled(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: state(cloud, "db") == VmState.EXPUNGED, "expunged")
        await wait_for(pilot, lambda: any("ExpungeVM" in t for t in toasts(app)), "toast")

    run_console(cloud, scenario)


def test_a_refused_action_says_why(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        await to_row(app, pilot, "web")
        await pilot.press("s")  # already Running
        await wait_for(pilot, lambda: any("needs it" in t for t in toasts(app)), "refusal")
        assert any("VM 'web'" in t and "start" in t for t in toasts(app))

    run_console(cloud, scenario)
    assert state(cloud, "web") == VmState.RUNNING


def test_change_offering_of_a_stopped_vm_from_its_detail_screen(
    cloud: Cloud, tmp_path: Path
) -> None:
    world = make_compute_world(cloud, tmp_path)
    offerings.create_service_offering(
        cloud.admin, "bigger", cpu_count=2, cpu_mhz=500, memory_bytes=128 * MIB
    )

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        await to_row(app, pilot, "web")
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen)
        await pilot.press("t")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.STOPPED, "stopped")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, OfferingDialog), "the offerings")
        await wait_for(pilot, lambda: app.screen.loaded, "loaded")
        text = screen_text(app)
        assert "tiny: 1 x 500 MHz, 64 MiB  (current)" in text
        assert "bigger: 2 x 500 MHz, 128 MiB" in text
        options = app.screen.query_one("#choice-list", OptionList)
        options.highlighted = options.get_option_index(offerings.get_service_offering(
            cloud.admin, "bigger").uuid)  # fmt: skip
        await pilot.press("enter")
        await wait_for(pilot, lambda: vm_by_name(cloud, "web").cpu_count == 2, "new sizes")
        await wait_for(
            pilot, lambda: any("VM web now has offering bigger" in t for t in toasts(app)), "toast"
        )
        assert vm_by_name(cloud, "web").memory_bytes == 128 * MIB

    run_console(cloud, scenario)


def test_migration_target_list_says_which_hosts_fit_and_why(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path, hosts=4)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        vm = vm_by_name(cloud, "web")
        names = {h.id: h.name for h in world.hosts}
        here = names[vm.host_id]
        others = sorted(n for n in names.values() if n != here)
        full, off, free = others
        host = next(h for h in world.hosts if h.name == full)
        set_host(cloud, full, memory_used_bytes=host.memory_bytes)
        topology.disable_host(cloud.admin, off)
        await to_row(app, pilot, "web")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MigrateDialog), "the dialog")
        await wait_for(pilot, lambda: app.screen.loaded, "the targets")
        text = screen_text(app)
        assert f"Migrate VM web (on host {here}) within cluster c1: 1 of 4 hosts fit" in text
        assert f"✗ no fit  {here}" in text and "the VM runs here" in text
        assert f"✗ no fit  {full}" in text and "lack 64 MiB free memory" in text
        assert f"✗ no fit  {off}" in text and "Up/Disabled" in text and "not Up and Enabled" in text
        assert f"✓ fits    {free}" in text and "room for 1 x 500 MHz and 64 MiB" in text
        options = app.screen.query_one("#choice-list", OptionList)
        assert [options.get_option_at_index(i).disabled for i in range(4)] == [
            names_ != free for names_ in sorted(names.values())
        ]
        highlighted = options.get_option_at_index(options.highlighted or 0)
        assert highlighted.id == next(h.uuid for h in world.hosts if h.name == free)
        await pilot.press("enter")  # the first fitting host is highlighted
        await wait_for(pilot, lambda: isinstance(app.screen, VmsScreen), "back to the table")
        # The test driver cannot live-migrate: the job fails, the toast says so, and the
        # VM runs where it was.
        await wait_for(pilot, lambda: any("MigrateVM" in t for t in toasts(app)), "outcome")
        with cloud.db.read() as session:
            job = session.exec(select(Job).where(Job.job_type == "MigrateVM")).one()
        free_uuid = next(h.uuid for h in world.hosts if h.name == free)
        assert job.resource_name == "web" and free_uuid in (job.params or "")
        assert job.state == "Failed" and job.error
        shown = next(t for t in toasts(app) if "MigrateVM VirtualMachine web" in t)
        assert "Job failed" in shown
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.RUNNING, "running")
        assert vm_by_name(cloud, "web").host_id == vm.host_id

    run_console(cloud, scenario)


def jobs(cloud: Cloud) -> list[str]:
    with cloud.db.read() as session:
        return sorted(j.uuid for j in session.exec(select(Job)))


def test_read_only_hides_and_refuses_every_vm_action(cloud: Cloud) -> None:
    build_world(cloud)
    before = jobs(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        screen = app.screen
        assert isinstance(screen, VmsScreen)
        ids = {"vm.start", "vm.stop", "vm.force_stop", "vm.reboot", "vm.migrate"}
        ids |= {"vm.offering", "vm.destroy", "vm.recover", "vm.expunge", "vm.mark"}
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & ids
        await pilot.press("space", "s", "t", "T", "b", "m", "c", "ctrl+d", "v", "X")
        await settle(app, pilot)
        assert isinstance(app.screen, VmsScreen) and screen.marked == {}
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen)
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & ids
        await pilot.press("t", "ctrl+d", "X", "m")
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen)

    run_console(cloud, scenario, read_only=True)
    assert jobs(cloud) == before
    assert state(cloud, "web-1") == "Running" and state(cloud, "db-1") == "Stopped"


# --- snapshot ----------------------------------------------------------------------------------


def test_migration_target_list_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    world = build_world(cloud)  # web-1 Running on a1; a2 Disconnected
    topology.add_hosts(
        cloud.admin,
        world.cluster,
        [
            topology.HostSpec(
                name="a3", uri="qemu+ssh://root@10.1.0.13/system", cpu_cores=16, cpu_mhz=2000,
                memory_bytes=64 * GIB, address="10.1.0.13",
            ),
            topology.HostSpec(
                name="a4", uri="qemu+ssh://root@10.1.0.14/system", cpu_cores=16, cpu_mhz=2000,
                memory_bytes=2 * GIB, address="10.1.0.14",
            ),
        ],
    )  # fmt: skip
    app = ScreenApp(lambda: MigrateDialog(cloud.admin, world.vm_web))

    async def loaded(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), "targets")

    assert snap_compare(app, terminal_size=(120, 30), run_before=loaded)


def test_change_to_a_customized_offering_asks_for_the_sizes_within_its_limits(
    cloud: Cloud, tmp_path: Path
) -> None:
    from tui.screens.vm_actions import CustomSizesForm

    world = make_compute_world(cloud, tmp_path)
    flex = offerings.create_service_offering(
        cloud.admin,
        "flex",
        cpu_count=1,
        cpu_mhz=500,
        memory_bytes=128 * MIB,
        customized=True,
        max_cpu_count=4,
        max_memory_bytes=1024 * MIB,
    )

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        await to_row(app, pilot, "web")
        await pilot.press("T")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.STOPPED, "stopped")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, OfferingDialog), "the offerings")
        await wait_for(pilot, lambda: app.screen.loaded, "loaded")
        assert "flex: customized, 1-4 CPUs, at least 100 MHz, 32 MiB-1 GiB" in screen_text(app)
        options = app.screen.query_one("#choice-list", OptionList)
        options.highlighted = options.get_option_index(flex.uuid)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CustomSizesForm), "the sizes")
        form = app.screen
        await wait_for(pilot, lambda: form.loaded, "the VM's sizes")
        assert form.query_one("#input-cpu_count", Input).value == "1"  # the VM's own
        assert form.query_one("#input-memory_bytes", Input).value == "64"
        # Outside the limits: refused next to the field, nothing changes.
        form.query_one("#input-cpu_count", Input).value = "8"
        await pilot.press("ctrl+s")
        error = form.query_one("#error-cpu_count", Static)
        await wait_for(pilot, lambda: "8 CPUs is outside 1-4 CPUs" in str(error.render()), "!")
        assert vm_by_name(cloud, "web").service_offering_id != flex.id
        form.query_one("#input-cpu_count", Input).value = "three"
        await pilot.press("ctrl+s")
        await wait_for(
            pilot,
            lambda: "VM 'web': cpu count 'three' is not a whole number" in str(error.render()),
            "not a number",
        )
        form.query_one("#input-cpu_count", Input).value = "3"
        form.query_one("#input-memory_bytes", Input).value = "512"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: vm_by_name(cloud, "web").cpu_count == 3, "new sizes")
        await wait_for(
            pilot, lambda: any("VM web now has offering flex" in t for t in toasts(app)), "toast"
        )

    run_console(cloud, scenario)
    vm = vm_by_name(cloud, "web")
    assert (vm.service_offering_id, vm.memory_bytes) == (flex.id, 512 * MIB)
