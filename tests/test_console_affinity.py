"""`:affinity`: groups with their VMs and hosts; a group created through the form (a taken
name refused next to the field), a delete refused while a VM is in the group (the
refusal names it) and done once the group is empty; none of it in read-only mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compute_world import make_compute_world
from console_support import frozen_clock, go, run_console, settle, toasts
from ops_support import affected, runner_started, wait_for
from screens_support import ScreenApp, build_world
from screens_support import settle as screens_settle
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select, Static

from engine.bootstrap import Cloud
from engine.compute import DeployRequest, deploy_vm
from engine.models import AffinityGroup, VirtualMachine
from engine.placement import add_vm_to_affinity_group, create_affinity_group
from tui.app import StratusApp
from tui.screens.affinity import AffinityGroupForm, AffinityScreen
from tui.screens.forms import FormScreen
from tui.widgets.confirm import ConfirmDialog


def groups(cloud: Cloud) -> list[tuple[str, str]]:
    with cloud.db.read() as session:
        rows = session.exec(select(AffinityGroup).order_by(AffinityGroup.name))
        return [(g.name, g.group_type) for g in rows]


def running(cloud: Cloud, name: str) -> bool:
    with cloud.db.read() as session:
        vm = session.exec(select(VirtualMachine).where(VirtualMachine.name == name)).first()
        return vm is not None and vm.state == "Running"


def lines(screen: AffinityScreen) -> list[str]:
    options = screen.query_one("#ag-list", OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def highlight(screen: AffinityScreen, pilot: Pilot, fragment: str) -> None:
    options = screen.query_one("#ag-list", OptionList)
    options.highlighted = next(i for i, t in enumerate(lines(screen)) if fragment in t)
    await pilot.pause()


def test_create_refuse_a_taken_name_and_delete_only_an_empty_group(
    cloud: Cloud, tmp_path: Path
) -> None:
    world = make_compute_world(cloud, tmp_path)
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        deploy_vm(
            cloud.admin,
            DeployRequest("web", "z1", "tiny", "tiny", ["guest"], affinity_groups=["spread"]),
        )
        await wait_for(pilot, lambda: running(cloud, "web"), "web Running", 40)
        await go(app, pilot, "affinity")
        screen = app.screen
        assert isinstance(screen, AffinityScreen)
        shown = lines(screen)
        assert "admin / spread  host anti-affinity · 1 VM on 1 host" in shown[0]
        host = next(h.name for h in world.hosts if f"web (Running on {h.name})" in shown[1])
        assert host in ("h0", "h1")

        # n: the form; a taken name comes back next to the name field
        await pilot.press("n")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, AffinityGroupForm)
        form.query_one("#input-name", Input).value = "spread"
        form.query_one("#input-group_type", Select).value = "host affinity"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, AffinityGroupForm)
        error = str(form.query_one("#error-name", Static).render())
        assert "affinity group 'spread': the name is already taken for account 'admin'" in error
        form.query_one("#input-name", Input).value = "pair"
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert isinstance(app.screen, AffinityScreen)
        assert groups(cloud) == [("pair", "host affinity"), ("spread", "host anti-affinity")]
        await wait_for(pilot, lambda: any("admin / pair" in t for t in lines(screen)), "pair")

        # ctrl+d on a group with a VM: the dialog says so, the engine refuses naming it
        await highlight(screen, pilot, "admin / spread")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert app.screen.focused is not None and app.screen.focused.id == "cancel"
        listed = affected(app)
        assert "affinity group spread (host anti-affinity) of account admin" in listed
        assert "VM web (Running) is in it" in listed
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: any("still has 1 VM (web)" in t for t in toasts(app)), "")
        assert ("spread", "host anti-affinity") in groups(cloud)

        # an empty group goes
        await settle(app, pilot)
        await highlight(screen, pilot, "admin / pair")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: groups(cloud) == [("spread", "host anti-affinity")], "")
        await wait_for(pilot, lambda: not any("pair" in t for t in lines(screen)), "refreshed")

    run_console(cloud, scenario)


def test_read_only_has_no_affinity_group_changes(cloud: Cloud, tmp_path: Path) -> None:
    make_compute_world(cloud, tmp_path)
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "ag")
        screen = app.screen
        assert isinstance(screen, AffinityScreen)
        assert "admin / spread" in lines(screen)[0]
        active = {b.binding.id for b in app.active_bindings.values()}
        assert not active & {"ag.new_group", "ag.delete_group"}
        await pilot.press("n", "ctrl+d")
        await settle(app, pilot)
        assert not isinstance(app.screen, FormScreen | ConfirmDialog)

    run_console(cloud, scenario, read_only=True)
    assert groups(cloud) == [("spread", "host anti-affinity")]


def test_affinity_screen_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build_world(cloud)  # VMs web-1 (Running on a1) and db-1 (Stopped)
    create_affinity_group(cloud.admin, "web-spread", "host anti-affinity")
    create_affinity_group(cloud.admin, "db-pair", "host affinity")
    for vm in ("i-2-101-VM", "i-2-102-VM"):
        add_vm_to_affinity_group(cloud.admin, "web-spread", vm)
    app = ScreenApp(lambda: AffinityScreen(cloud.admin, refresh_seconds=0, clock=frozen_clock))

    async def loaded(pilot: Pilot[Any]) -> None:
        await screens_settle(pilot.app, pilot)
        screen = pilot.app.screen
        assert isinstance(screen, AffinityScreen)
        await highlight(screen, pilot, "web-spread")

    assert snap_compare(app, terminal_size=(100, 20), run_before=loaded)
