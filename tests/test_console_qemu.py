"""The console end to end on the real libvirtd with QEMU (qemu:///system): `:deploy`, the
wizard's preview and Deploy, to a running domain; then from the VMs table a force stop
(confirmed) to a shut-off domain, destroy (ctrl+d, confirmed) and expunge (the name typed)
until the domain and its volume file are gone. The console's own job runner does the work.

Same setup as test_compute_qemu.py: a qcow2 made with qemu-img registered as a template,
zone z1 whose one host is qemu:///system, a dir pool under a work directory QEMU can
reach. The guest has no OS, so the stop is a force stop (a graceful one would wait out
its timeout).
"""

# ruff: noqa: F811  (pytest fixtures imported from compute_qemu are used as arguments)
from __future__ import annotations

from pathlib import Path

from compute_qemu import (  # noqa: F401  (fixtures)
    bridge,
    domain_on_qemu,
    qemu,
    workdir,
    world,
)
from compute_world import ComputeWorld, live_volumes, vm_by_name
from console_support import go, run_console, settle
from ops_support import confirm_enabled, runner_started, wait_for
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, SelectionList

from engine.models import VmState
from tui.app import StratusApp
from tui.screens.deploy import DeployScreen
from tui.screens.vm_actions import VmsScreen
from tui.widgets.confirm import ConfirmDialog

# Bounds a hang only (QEMU emulates the guest in software on a busy machine).
JOB_SECONDS = 90


def state_of(world: ComputeWorld, name: str) -> str:
    return vm_by_name(world.cloud, name).state


async def confirm(app: StratusApp, pilot: Pilot) -> None:
    """The confirmation dialog opened with Cancel focused; press its confirm button."""
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
    assert app.screen.focused is not None and app.screen.focused.id == "cancel"
    await pilot.click("#confirm")


def test_the_console_deploys_stops_and_destroys_a_real_vm(
    world: ComputeWorld, workdir: Path
) -> None:
    cloud = world.cloud
    seen: dict[str, object] = {}

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await go(app, pilot, "deploy")
        screen = app.screen
        assert isinstance(screen, DeployScreen)
        await wait_for(pilot, lambda: screen.loaded, "the wizard's choices")
        choices = screen.choices
        assert choices is not None
        assert [t.name for t in choices.templates] == ["tiny"]
        assert [h.name for h in choices.hosts] == ["h0"]
        screen.query_one("#select-offering", Select).value = choices.offerings[0].uuid
        screen.query_one("#select-networks", SelectionList).select(choices.networks[0].uuid)
        screen.query_one("#input-name", Input).value = "real"
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        assert screen.preview is not None and screen.preview.plan.host_name == "h0"
        deploy = screen.query_one("#deploy", Button)
        deploy.scroll_visible(animate=False, immediate=True)
        await pilot.pause()
        assert await pilot.click("#deploy")
        await wait_for(
            pilot,
            lambda: state_of(world, "real") in (VmState.RUNNING, VmState.ERROR),
            "the deploy's end",
            JOB_SECONDS,
        )
        vm = vm_by_name(cloud, "real")
        assert vm.state == VmState.RUNNING, screen.jobs
        on_qemu = domain_on_qemu(vm.instance_name)
        assert on_qemu is not None and on_qemu[0] == "running"
        (root,) = live_volumes(cloud, vm.id)
        disk = workdir / "primary" / str(root.path)
        assert disk.exists()
        seen["disk"] = disk

        # From the VMs table: force stop (the guest has no OS to answer ACPI).
        await go(app, pilot, "vms")
        table = app.screen
        assert isinstance(table, VmsScreen)
        await wait_for(pilot, lambda: table.cursor_row is not None, "the VM's row")
        assert table.cursor_row is not None and table.cursor_row.cells[0] == "real"
        await pilot.press("T")
        await confirm(app, pilot)
        await wait_for(
            pilot, lambda: state_of(world, "real") == VmState.STOPPED, "stopped", JOB_SECONDS
        )
        assert domain_on_qemu(vm.instance_name)[0] == "shutoff"  # type: ignore[index]

        # Destroy (ctrl+d, confirmed): the domain is undefined, the volume stays.
        await settle(app, pilot)
        await pilot.press("ctrl+d")
        await confirm(app, pilot)
        await wait_for(
            pilot, lambda: state_of(world, "real") == VmState.DESTROYED, "destroyed", JOB_SECONDS
        )
        assert domain_on_qemu(vm.instance_name) is None
        assert disk.exists()

        # Expunge: only once the VM's name is typed; then its volume file goes too.
        await settle(app, pilot)
        await pilot.press("X")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert not confirm_enabled(app)
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press(*"real")
        assert confirm_enabled(app)
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: state_of(world, "real") == VmState.EXPUNGED, "expunged", JOB_SECONDS
        )

    run_console(cloud, scenario)
    vm = vm_by_name(cloud, "real")
    assert vm.removed is not None
    assert domain_on_qemu(vm.instance_name) is None
    assert not Path(str(seen["disk"])).exists()
    assert live_volumes(cloud) == []
