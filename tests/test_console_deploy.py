"""The deploy wizard on test-driver hosts: choices from the engine, the placement preview
with its explanation, a deployment that cannot fit (the error names the reasons), N VMs
with one progress line each, to Running; an admin's pinned host; and a snapshot of the
preview."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from compute_world import make_compute_world, vm_by_name
from console_support import go, run_console, settle, toasts
from ops_support import runner_started, wait_for
from placement_world import set_host
from rich.console import Console
from screens_support import ScreenApp, build_world
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, SelectionList, Static

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.models import ImageStore, StoragePool, Template, TemplateStoreRef, VirtualMachine
from engine.settings import update_setting
from tui.app import StratusApp
from tui.screens.deploy import DeployScreen
from tui.screens.vm_actions import VmsScreen

GIB = 2**30


def vms(cloud: Cloud) -> dict[str, str]:
    with cloud.db.read() as session:
        return {vm.name: vm.state for vm in session.exec(select(VirtualMachine))}


def text_of(screen: DeployScreen, widget_id: str) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(screen.query_one(widget_id, Static).content)
    return console.export_text()


async def open_wizard(app: StratusApp, pilot: Pilot) -> DeployScreen:
    await go(app, pilot, "vms")
    assert isinstance(app.screen, VmsScreen)
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, DeployScreen), "the wizard")
    screen = app.screen
    assert isinstance(screen, DeployScreen)
    await wait_for(pilot, lambda: screen.loaded, "the choices")
    return screen


async def choose(
    pilot: Pilot, screen: DeployScreen, *, name: str, count: int = 1, offering: str = ""
) -> None:
    choices = screen.choices
    assert choices is not None
    if offering:
        uuid = next(o.uuid for o in choices.offerings if o.name == offering)
        screen.query_one("#select-offering", Select).value = uuid
    networks = screen.query_one("#select-networks", SelectionList)
    networks.select(next(n.uuid for n in choices.networks if n.name == "guest"))
    screen.query_one("#input-name", Input).value = name
    screen.query_one("#input-count", Input).value = str(count)
    await pilot.pause()


def test_the_wizard_previews_then_deploys_two_vms_to_running(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)
    update_setting(cloud.admin, "vm.allocation.algorithm", "firstfit")
    set_host(cloud, "h1", memory_used_bytes=world.hosts[1].memory_bytes)  # h1 is full

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        choices = screen.choices
        assert choices is not None and choices.zone is not None and choices.zone.name == "z1"
        assert [t.name for t in choices.templates] == ["tiny"]
        assert [o.name for o in choices.offerings] == ["tiny"]
        assert [n.name for n in choices.networks] == ["guest"]
        assert screen.query_one("#deploy", Button).disabled  # no preview yet
        await choose(pilot, screen, name="web", count=2)
        await pilot.click("#preview")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        shown = text_of(screen, "#deploy-preview")
        assert "Host   h0 in cluster c1 / pod rack-1" in shown
        assert "ROOT (32 MiB) → primary" in shown
        assert "1 of 2 hosts of zone z1 fit" in shown
        assert "memory" in shown and "1 lack 64 MiB free memory  (e.g. h1)" in shown
        assert "2 VMs: each is placed when its job runs" in shown
        assert not screen.query_one("#deploy", Button).disabled
        assert vms(cloud) == {}  # a preview deploys nothing
        await pilot.click("#deploy")
        await wait_for(
            pilot,
            lambda: vms(cloud) == {"web-1": "Running", "web-2": "Running"},
            "both Running",
            seconds=40,
        )
        await wait_for(pilot, lambda: len(screen.jobs) == 2 and not screen.busy, "outcome")
        progress = text_of(screen, "#deploy-progress")
        assert "✓ Succeeded DeployVM VirtualMachine web-1" in progress
        assert "✓ Succeeded DeployVM VirtualMachine web-2" in progress
        assert any("VM web-1 is Running" in t for t in toasts(app))
        assert screen.query_one("#deploy", Button).disabled  # preview again first

    run_console(cloud, scenario)
    assert vm_by_name(cloud, "web-1").host_id == world.hosts[0].id


def test_a_deployment_that_cannot_fit_names_the_reasons(cloud: Cloud, tmp_path: Path) -> None:
    make_compute_world(cloud, tmp_path)
    offerings.create_service_offering(
        cloud.admin, "huge", cpu_count=1, cpu_mhz=500, memory_bytes=512 * GIB
    )
    topology.disable_host(cloud.admin, "h1")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        screen = await open_wizard(app, pilot)
        await choose(pilot, screen, name="big", offering="huge")
        await pilot.press("f5")
        error = screen.query_one("#deploy-error", Static)
        await wait_for(pilot, lambda: str(error.render()) != "", "the error")
        text = str(error.render())
        assert "Cannot deploy: zone 'z1': 0 of 2 hosts fit" in text
        # h1 disabled; h0 would push its cluster over the memory disable threshold
        assert "1 are disabled" in text
        assert "1 are in clusters over the memory disable threshold (0.85)" in text
        assert screen.query_one("#deploy", Button).disabled
        assert "nothing fits" in text_of(screen, "#deploy-preview")

    run_console(cloud, scenario)
    assert vms(cloud) == {}


def test_an_admin_pins_the_host(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        await choose(pilot, screen, name="pinned")
        screen.query_one("#select-host", Select).value = world.hosts[1].uuid
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        shown = text_of(screen, "#deploy-preview")
        assert "Host   h1 in cluster c1 / pod rack-1 (pinned host)" in shown
        assert "pinned host" in shown and "1 are not the pinned host 'h1'" in shown
        await pilot.click("#deploy")
        await wait_for(pilot, lambda: vms(cloud) == {"pinned": "Running"}, "Running", 40)

    run_console(cloud, scenario)
    assert vm_by_name(cloud, "pinned").host_id == world.hosts[1].id


def test_a_refused_deploy_shows_the_engines_message(cloud: Cloud, tmp_path: Path) -> None:
    make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        await choose(pilot, screen, name="web")
        screen.query_one("#input-ip", Input).value = "10.99.0.5"  # outside the network
        await pilot.press("f5")
        await wait_for(pilot, lambda: not screen.query_one("#deploy", Button).disabled, "ok")
        await pilot.click("#deploy")
        # The job fails (the address is not in the network) and undoes what it did.
        await wait_for(pilot, lambda: screen.jobs and not screen.busy, "the job's end")
        progress = text_of(screen, "#deploy-progress")
        assert "✗ Failed    DeployVM VirtualMachine web" in progress and "10.99.0.5" in progress
        assert any("Deploy failed" in t and "10.99.0.5" in t for t in toasts(app))
        # Deploying again under the same name is refused before anything is written.
        screen.query_one("#input-ip", Input).value = ""
        await pilot.press("f5")
        await wait_for(pilot, lambda: not screen.query_one("#deploy", Button).disabled, "ok")
        screen.query_one("#deploy", Button).press()  # below the progress lines now
        error = screen.query_one("#deploy-error", Static)
        await wait_for(pilot, lambda: str(error.render()) != "", "the refusal")
        assert "already has a VM of that name" in str(error.render())
        await wait_for(pilot, lambda: not screen.busy, "done")

    run_console(cloud, scenario)
    assert vms(cloud) == {"web": "Error"}


def test_changing_a_choice_after_the_preview_asks_for_a_new_one(
    cloud: Cloud, tmp_path: Path
) -> None:
    make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        screen = await open_wizard(app, pilot)
        await choose(pilot, screen, name="one")
        await pilot.press("f5")
        await wait_for(pilot, lambda: not screen.query_one("#deploy", Button).disabled, "ok")
        screen.query_one("#input-name", Input).value = "two"
        await pilot.pause()
        assert screen.query_one("#deploy", Button).disabled
        screen.query_one("#input-name", Input).value = ""
        await pilot.press("f5")
        await pilot.pause()
        assert "choose a name" in str(screen.query_one("#deploy-error", Static).render())

    run_console(cloud, scenario)
    assert vms(cloud) == {}


def test_read_only_console_offers_no_deploy(cloud: Cloud, tmp_path: Path) -> None:
    make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        assert "vm.deploy" not in {b.binding.id for b in app.active_bindings.values()}
        await pilot.press("n")
        await settle(app, pilot)
        assert isinstance(app.screen, VmsScreen)
        await go(app, pilot, "deploy")
        await settle(app, pilot)
        assert not isinstance(app.screen, DeployScreen)

    run_console(cloud, scenario, read_only=True)


# --- snapshot --------------------------------------------------------------------------------


def test_deploy_preview_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    world = build_world(cloud)  # hosts a1 Up (busy), a2 Disconnected; template debian-12
    update_setting(cloud.admin, "vm.allocation.algorithm", "firstfit")
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
    with cloud.db.write() as session:
        pool = session.exec(select(StoragePool)).one()
        pool.used_bytes = 100 * GIB  # room for the root disk
        session.add(pool)
        template = session.exec(select(Template).where(Template.name == "debian-12")).one()
        store = session.exec(select(ImageStore)).one()
        session.add(
            TemplateStoreRef(
                template_id=template.id, store_id=store.id, path="t/debian-12.qcow2", state="Ready"
            )
        )
    app = ScreenApp(lambda: DeployScreen(cloud.admin))

    async def previewed(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, DeployScreen)
        await wait_for(pilot, lambda: screen.loaded, "choices")
        name = screen.query_one("#input-name", Input)
        name.value = "web-2"
        name.cursor_blink = False
        screen.query_one("#select-networks", SelectionList).select(
            screen.choices.networks[0].uuid  # type: ignore[union-attr]
        )
        await pilot.pause()
        screen.action_preview()
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        screen.query_one("#preview").focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 48), run_before=previewed)
