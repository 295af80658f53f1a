"""The deploy wizard on test-driver hosts: choices from the engine, the placement preview
with its explanation, a deployment that cannot fit (the error names the reasons), N VMs
with one progress line each, to Running; an admin's pinned host; and a snapshot of the
preview."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from compute_world import host_usage, make_compute_world, vm_by_name
from console_support import go, run_console, settle, toasts
from helpers import changed_tables, db_snapshot
from hosts_helpers import MIB
from ops_support import runner_started, wait_for
from placement_world import set_host
from rich.console import Console
from screens_support import ScreenApp, build_world
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, SelectionList, Static

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.compute import DeployRequest, deploy_vm
from engine.models import (
    AffinityGroup,
    AffinityGroupMember,
    Host,
    ImageStore,
    ServiceOffering,
    StoragePool,
    Template,
    TemplateStoreRef,
    VirtualMachine,
    Zone,
)
from engine.placement import create_affinity_group
from engine.settings import update_setting
from tui.app import StratusApp
from tui.screens.deploy import DeployScreen
from tui.screens.vm_actions import VmsScreen

GIB = 2**30


def vms(cloud: Cloud) -> dict[str, str]:
    with cloud.db.read() as session:
        return {vm.name: vm.state for vm in session.exec(select(VirtualMachine))}


def members(cloud: Cloud, group: str) -> list[str]:
    with cloud.db.read() as session:
        return sorted(
            session.exec(
                select(VirtualMachine.name)
                .join(AffinityGroupMember, AffinityGroupMember.vm_id == VirtualMachine.id)
                .join(AffinityGroup, AffinityGroup.id == AffinityGroupMember.group_id)
                .where(AffinityGroup.name == group)
            )
        )


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


async def click(pilot: Pilot, screen: DeployScreen, selector: str) -> None:
    """Scroll the button into view (the form is taller than 40 rows), then click it."""
    screen.query_one(selector).scroll_visible(animate=False, immediate=True)
    await pilot.pause()
    assert await pilot.click(selector), f"{selector} was not clicked"


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
        await click(pilot, screen, "#preview")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        shown = text_of(screen, "#deploy-preview")
        assert "Host   h0 in cluster c1 / pod rack-1" in shown
        assert "ROOT (32 MiB) → primary" in shown
        assert "1 of 2 hosts of zone z1 fit" in shown
        assert "memory" in shown and "1 lack 64 MiB free memory  (e.g. h1)" in shown
        assert "2 VMs: each is placed when its job runs" in shown
        assert not screen.query_one("#deploy", Button).disabled
        assert vms(cloud) == {}  # a preview deploys nothing
        await click(pilot, screen, "#deploy")
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
        await click(pilot, screen, "#deploy")
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
        await click(pilot, screen, "#deploy")
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


# --- custom sizes and affinity groups ------------------------------------------------------


def add_flex_offering(cloud: Cloud) -> None:
    offerings.create_service_offering(
        cloud.admin,
        "flex",
        cpu_count=1,
        cpu_mhz=500,
        memory_bytes=128 * MIB,
        customized=True,
        min_cpu_count=1,
        max_cpu_count=4,
        min_cpu_mhz=250,
        max_cpu_mhz=1500,
        min_memory_bytes=64 * MIB,
        max_memory_bytes=2 * GIB,
    )


def hint(screen: DeployScreen, field: str) -> tuple[str, bool]:
    """What the hint under a custom size input says, and whether it is an error."""
    widget = screen.query_one(f"#hint-{field}", Static)
    return text_of(screen, f"#hint-{field}").strip(), widget.has_class("field-error")


def type_sizes(screen: DeployScreen, cpus: str, mhz: str, memory: str) -> None:
    for input_id, value in (("cpus", cpus), ("mhz", mhz), ("memory", memory)):
        screen.query_one(f"#input-{input_id}", Input).value = value


def test_a_customized_offering_deploys_the_sizes_typed(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)
    add_flex_offering(cloud)
    set_host(cloud, "h1", memory_used_bytes=world.hosts[1].memory_bytes)  # all on h0

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        assert not screen.query_one("#custom-row").display  # 'tiny' has fixed sizes
        await choose(pilot, screen, name="flexy", offering="flex")
        assert screen.query_one("#custom-row").display
        # the offering's defaults, its limits under each field
        assert screen.query_one("#input-cpus", Input).value == "1"
        assert screen.query_one("#input-memory", Input).value == "128 MiB"
        assert hint(screen, "cpu_count") == ("1-4 CPUs", False)
        assert hint(screen, "cpu_mhz") == ("250-1500 MHz", False)
        assert hint(screen, "memory_bytes") == ("64 MiB-2 GiB", False)
        type_sizes(screen, "2", "750", "0.25 GiB")
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        shown = text_of(screen, "#deploy-preview")
        assert "Size   2 x 750 MHz, 256 MiB (custom)" in shown
        await click(pilot, screen, "#deploy")
        await wait_for(pilot, lambda: vms(cloud) == {"flexy": "Running"}, "Running", 40)

    before = host_usage(cloud)
    run_console(cloud, scenario)
    vm = vm_by_name(cloud, "flexy")
    assert (vm.cpu_count, vm.cpu_mhz, vm.memory_bytes) == (2, 750, 256 * MIB)
    after = host_usage(cloud)
    assert after[0][0] - before[0][0] == 2 * 750  # h0's used CPU grew by the VM's own
    assert after[0][2] - before[0][2] == 256 * MIB  # ... and its used memory
    assert after[1] == before[1]


def test_a_bad_custom_size_is_refused_next_to_the_field(cloud: Cloud, tmp_path: Path) -> None:
    make_compute_world(cloud, tmp_path)
    add_flex_offering(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        await choose(pilot, screen, name="flexy", offering="flex")
        type_sizes(screen, "9", "750", "lots")
        await pilot.pause()
        assert hint(screen, "cpu_count") == ("✗ 9 CPUs is outside 1-4 CPUs", True)
        assert hint(screen, "cpu_mhz") == ("250-1500 MHz", False)
        assert hint(screen, "memory_bytes") == ("✗ 'lots' is not a size (512 MiB, 2 GiB)", True)
        before = db_snapshot(cloud)
        await pilot.press("f5")
        await pilot.pause()
        assert text_of(screen, "#deploy-error").strip() == (
            "custom size: CPU count 9 CPUs is outside 1-4 CPUs; "
            "memory 'lots' is not a size (512 MiB, 2 GiB)"
        )
        assert screen.preview is None and screen.query_one("#deploy", Button).disabled
        # fixed: the hints go back to the limits
        type_sizes(screen, "4", "750", "2 GiB")
        await pilot.pause()
        assert hint(screen, "cpu_count") == ("1-4 CPUs", False)
        assert hint(screen, "memory_bytes") == ("64 MiB-2 GiB", False)
        # the offering's limits shrink behind the wizard's back: the engine refuses, and
        # its reason shows next to the field it names
        with cloud.db.write() as session:
            flex = session.exec(select(ServiceOffering).where(ServiceOffering.name == "flex")).one()
            flex.max_cpu_count = 2
            session.add(flex)
        await pilot.press("f5")
        await wait_for(pilot, lambda: hint(screen, "cpu_count")[1], "the engine's refusal")
        assert "CPU count 4 CPUs is outside 1-2 CPUs" in hint(screen, "cpu_count")[0]
        assert "customized offering 'flex'" in text_of(screen, "#deploy-error")
        assert screen.query_one("#deploy", Button).disabled
        assert changed_tables(before, db_snapshot(cloud)) == ["serviceoffering"]

    run_console(cloud, scenario)
    assert vms(cloud) == {}


def test_two_vms_of_an_anti_affinity_group_land_on_two_hosts(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)
    update_setting(cloud.admin, "vm.allocation.algorithm", "firstfit")  # would stack on h0
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")
    create_affinity_group(cloud.admin, "pair", "host affinity")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        choices = screen.choices
        assert choices is not None
        assert [(g.name, g.note) for g in choices.affinity_groups] == [
            ("pair", "host affinity, 0 VMs"),
            ("spread", "host anti-affinity, 0 VMs"),
        ]
        await choose(pilot, screen, name="web", count=2)
        groups = screen.query_one("#select-groups", SelectionList)
        groups.select(next(g.uuid for g in choices.affinity_groups if g.name == "spread"))
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        shown = text_of(screen, "#deploy-preview")
        assert "Affinity  spread (host anti-affinity, 0 VMs)" in shown
        await click(pilot, screen, "#deploy")
        await wait_for(
            pilot,
            lambda: vms(cloud) == {"web-1": "Running", "web-2": "Running"},
            "both Running",
            seconds=40,
        )

    run_console(cloud, scenario)
    placed = {vm_by_name(cloud, n).host_id for n in ("web-1", "web-2")}
    assert placed == {h.id for h in world.hosts}
    assert members(cloud, "spread") == ["web-1", "web-2"] and members(cloud, "pair") == []


def test_a_deploy_that_anti_affinity_cannot_fit_names_the_reason(
    cloud: Cloud, tmp_path: Path
) -> None:
    make_compute_world(cloud, tmp_path)
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        screen = await open_wizard(app, pilot)
        choices = screen.choices
        assert choices is not None
        await choose(pilot, screen, name="web", count=3)
        screen.query_one("#select-groups", SelectionList).select(choices.affinity_groups[0].uuid)
        await pilot.press("f5")
        error = screen.query_one("#deploy-error", Static)
        await wait_for(pilot, lambda: str(error.render()) != "", "the error")
        text = str(error.render())
        assert "anti-affinity group 'spread' puts each of the 3 VMs on its own host" in text
        assert "but only 2 fit" in text
        assert screen.query_one("#deploy", Button).disabled
        assert "nothing fits" in text_of(screen, "#deploy-preview")

    run_console(cloud, scenario)
    assert vms(cloud) == {}


def test_a_full_anti_affinity_group_names_the_hosts_it_excludes(
    cloud: Cloud, tmp_path: Path
) -> None:
    world = make_compute_world(cloud, tmp_path)
    create_affinity_group(cloud.admin, "spread", "host anti-affinity")
    for i, host in enumerate(world.hosts):  # one member on each host already
        deploy_vm(
            cloud.admin,
            DeployRequest(
                f"old-{i}", "z1", "tiny", "tiny", ["guest"], host=host.uuid,
                affinity_groups=["spread"],
            ),
        )  # fmt: skip

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await wait_for(
            pilot, lambda: set(vms(cloud).values()) == {"Running"}, "the members", seconds=40
        )
        screen = await open_wizard(app, pilot)
        choices = screen.choices
        assert choices is not None
        assert choices.affinity_groups[0].note == "host anti-affinity, 2 VMs"
        await choose(pilot, screen, name="web")
        screen.query_one("#select-groups", SelectionList).select(choices.affinity_groups[0].uuid)
        await pilot.press("f5")
        error = screen.query_one("#deploy-error", Static)
        await wait_for(pilot, lambda: str(error.render()) != "", "the error")
        text = str(error.render())
        assert "0 of 2 hosts fit: 2 run a VM of anti-affinity group 'spread'" in text

    run_console(cloud, scenario)
    assert sorted(vms(cloud)) == ["old-0", "old-1"]


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


def test_deploy_custom_size_and_affinity_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    """The customized offering's size fields (limits under each, one refused) and the
    account's affinity groups with their members."""
    build_world(cloud)
    add_flex_offering(cloud)
    create_affinity_group(cloud.admin, "web-spread", "host anti-affinity")
    create_affinity_group(cloud.admin, "db-pair", "host affinity")
    app = ScreenApp(lambda: DeployScreen(cloud.admin))

    async def filled(pilot: Pilot[Any]) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, DeployScreen)
        await wait_for(pilot, lambda: screen.loaded, "choices")
        choices = screen.choices
        assert choices is not None
        flex = next(o.uuid for o in choices.offerings if o.name == "flex")
        screen.query_one("#select-offering", Select).value = flex
        await pilot.pause()
        for widget in screen.query(Input):
            widget.cursor_blink = False
        type_sizes(screen, "8", "1000", "512 MiB")
        screen.query_one("#input-name", Input).value = "api"
        screen.query_one("#select-groups", SelectionList).select(
            next(g.uuid for g in choices.affinity_groups if g.name == "web-spread")
        )
        await pilot.pause()
        screen.query_one("#cancel").focus()
        screen.query_one("#deploy-body").scroll_home(animate=False, immediate=True)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 48), run_before=filled)


def test_an_iso_deploys_onto_a_blank_root_disk_sized_by_the_first_disk_offering(
    cloud: Cloud, tmp_path: Path
) -> None:
    from test_compute_attach import make_iso

    make_compute_world(cloud, tmp_path)
    installer = make_iso(cloud, tmp_path, "installer")
    offerings.create_disk_offering(cloud.admin, "root-4g", disk_size_bytes=4 * GIB)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        choices = screen.choices
        assert choices is not None and [i.name for i in choices.isos] == ["installer"]
        await choose(pilot, screen, name="inst")
        screen.query_one("#select-template", Select).value = installer.uuid
        await pilot.pause()
        # Without a disk offering for its root disk, the engine's refusal says what to do.
        await pilot.press("f5")
        error = screen.query_one("#deploy-error", Static)
        await wait_for(pilot, lambda: str(error.render()) != "", "the refusal")
        assert "ISO 'installer' boots onto a blank root disk" in str(error.render())
        disks = screen.query_one("#select-disks", SelectionList)
        disks.select(next(d.uuid for d in choices.disk_offerings if d.name == "root-4g"))
        await pilot.pause()
        await click(pilot, screen, "#preview")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        shown = text_of(screen, "#deploy-preview")
        assert "ROOT (4 GiB) → primary" in shown
        assert "ISO installer in the CD-ROM drive; ROOT is a blank disk" in shown
        await click(pilot, screen, "#deploy")
        await wait_for(pilot, lambda: vms(cloud) == {"inst": "Running"}, "Running", seconds=40)

    run_console(cloud, scenario)
    vm = vm_by_name(cloud, "inst")
    assert (vm.template_id, vm.iso_id) == (installer.id, installer.id)


def test_the_wizard_deploys_on_the_demo_datacenter(cloud: Cloud, tmp_path: Path) -> None:
    """The demo's own test-driver hosts, storage and Basic zone network: a template
    registered onto its secondary storage, then the wizard to a Running VM."""
    from compute_world import make_template

    from engine.demo import build_demo

    build_demo(cloud.admin, hosts=6, vms=0)
    with cloud.db.read() as session:
        store = session.exec(select(ImageStore).where(ImageStore.name == "ams-secondary-1")).one()
    template = make_template(cloud, store, tmp_path / "images", name="demo-tiny")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        screen = await open_wizard(app, pilot)
        choices = screen.choices
        assert choices is not None
        zone = next(z.uuid for z in choices.zones if z.name == "eu-west-basic")
        screen.query_one("#select-zone", Select).value = zone
        await wait_for(
            pilot,
            lambda: (
                screen.choices is not None
                and screen.choices.zone is not None
                and screen.choices.zone.name == "eu-west-basic"
                and any(t.uuid == template.uuid for t in screen.choices.templates)
            ),
            "the zone's choices",
        )
        screen.query_one("#select-template", Select).value = template.uuid
        screen.query_one("#input-name", Input).value = "demo-web"
        await pilot.pause()
        await click(pilot, screen, "#preview")
        await wait_for(pilot, lambda: screen.preview is not None, "the preview")
        shown = text_of(screen, "#deploy-preview")
        assert "hosts of zone eu-west-basic fit" in shown
        await click(pilot, screen, "#deploy")
        await wait_for(pilot, lambda: vms(cloud).get("demo-web") == "Running", "Running", 60)

    run_console(cloud, scenario)
    vm = vm_by_name(cloud, "demo-web")
    with cloud.db.read() as session:
        host = session.get(Host, vm.host_id)
        zone = session.get(Zone, vm.zone_id)
    assert host is not None and host.uri.startswith("test:///")  # a demo host
    assert zone is not None and zone.name == "eu-west-basic"
