"""Storage from the console, through the console's own job runner: a volume created,
attached, resized, detached and deleted (confirmations Cancel by default, the name typed
to delete data); a snapshot created, reverted and deleted; a template copied to another
zone with its progress shown while the copy runs; a refused template delete; read-only
mode without the keys; and a snapshot of the copy dialog."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from console_support import go, run_console, settle, toasts
from ops_support import affected, confirm_enabled, runner_started, wait_for
from screens_support import ScreenApp, screen_text
from sqlmodel import col, select
from textual.pilot import Pilot
from textual.widgets import Button, Input, OptionList, Select, Static

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.models import (
    ImageStore,
    Job,
    Snapshot,
    Template,
    TemplateStoreRef,
    VirtualMachine,
    Volume,
    VolumeState,
)
from engine.storage import templates, volumes
from engine.storage.templates import register_template
from tests.conftest import missing_part
from tests.helpers import GIB, MIB, db_snapshot, make_zone
from tests.storage_site import Site, site_fixture  # noqa: F401
from tui.app import StratusApp
from tui.screens.jobs import JobsScreen
from tui.screens.storage_common import StorageScreen
from tui.screens.storage_snapshots import (
    PickVolumeDialog,
    SnapshotsScreen,
    TemplateFromSnapshotForm,
)
from tui.screens.storage_templates import (
    CopiesDialog,
    CopyDialog,
    RegisterTemplateForm,
    TemplatesScreen,
)
from tui.screens.storage_volumes import (
    AttachDialog,
    CreateVolumeForm,
    ResizeVolumeForm,
    VolumesScreen,
)
from tui.widgets.confirm import ConfirmDialog

# --- reading the database back ------------------------------------------------------------


def write_pattern(disk: str, byte: int) -> None:
    """Guest data written into a qcow2 file with qemu-io (its first 64 KiB)."""
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} 0 64k", disk],
        check=True,
        capture_output=True,
    )


def holds_pattern(disk: str, byte: int) -> bool:
    """Whether the file's first 64 KiB of guest data are all `byte` (qemu-io read -P)."""
    done = subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"read -P {byte} 0 64k", disk],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


def volume_named(cloud: Cloud, name: str) -> Volume | None:
    with cloud.db.read() as session:
        return session.exec(select(Volume).where(Volume.name == name)).first()


def live_snapshots(cloud: Cloud) -> list[Snapshot]:
    with cloud.db.read() as session:
        return list(session.exec(select(Snapshot).where(col(Snapshot.removed).is_(None))))


def jobs_of(cloud: Cloud, job_type: str) -> list[Job]:
    with cloud.db.read() as session:
        return list(session.exec(select(Job).where(Job.job_type == job_type)))


def copy_in(cloud: Cloud, template: Template, store_id: int) -> TemplateStoreRef | None:
    with cloud.db.read() as session:
        return session.get(TemplateStoreRef, (template.id, store_id))


# --- driving the console ------------------------------------------------------------------


async def to_row(app: StratusApp, pilot: Pilot, name: str) -> StorageScreen:
    screen = app.screen
    assert isinstance(screen, StorageScreen)
    screen.load(mode="refresh")
    await settle(app, pilot)
    screen.table.move_cursor(row=0)
    for _ in range(len(screen.rows)):
        if screen.cursor_row is not None and screen.cursor_row.cells[0] == name:
            break
        await pilot.press("down")
    assert screen.cursor_row is not None and screen.cursor_row.cells[0] == name
    return screen


async def on_screen(pilot: Pilot, app: StratusApp, kind: type, what: str) -> Any:
    await wait_for(pilot, lambda: isinstance(app.screen, kind), what)
    await settle(app, pilot)
    return app.screen


async def choice_loaded(pilot: Pilot, app: StratusApp, kind: type) -> Any:
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, kind) and getattr(app.screen, "loaded", False),
        kind.__name__,
    )
    return app.screen


def field_error(app: StratusApp, name: str) -> str:
    return str(app.screen.query_one(f"#error-{name}", Static).render())


async def cancel_by_enter(pilot: Pilot, app: StratusApp) -> None:
    """The dialog opens with Cancel focused: Enter at once changes nothing."""
    await on_screen(pilot, app, ConfirmDialog, "the confirmation")
    assert app.screen.focused is not None and app.screen.focused.id == "cancel"
    await pilot.press("enter")
    await settle(app, pilot)
    assert not isinstance(app.screen, ConfirmDialog)


async def confirm(pilot: Pilot, app: StratusApp) -> None:
    """Press the dialog's confirm button (toasts may cover it from a mouse click)."""
    app.screen.query_one("#confirm", Button).press()
    await pilot.pause()


# --- volumes -------------------------------------------------------------------------------


def test_a_volume_created_attached_resized_detached_and_deleted(site: Site) -> None:
    cloud = site.cloud
    vm = site.make_vm(running=False)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await go(app, pilot, "vols")
        assert isinstance(app.screen, VolumesScreen)

        # Create: a refused size shows next to the field and writes nothing.
        await pilot.press("n")
        form = await on_screen(pilot, app, CreateVolumeForm, "the create form")
        form.query_one("#input-offering", Select).value = "small"
        await pilot.pause()
        assert not form.query_one("#input-size").parent.display  # a fixed size: no input
        form.query_one("#input-offering", Select).value = "custom"
        await pilot.pause()
        assert form.query_one("#input-size").parent.display
        form.query_one("#input-name", Input).value = "data-1"
        form.query_one("#input-size", Input).value = "1.5"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "whole number of GiB" in field_error(app, "size"), "error")
        assert volume_named(cloud, "data-1") is None
        form.query_one("#input-size", Input).value = "2"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, VolumesScreen), "the form closed")
        created = volume_named(cloud, "data-1")
        assert created is not None and created.state == VolumeState.ALLOCATED
        assert created.size_bytes == 2 * GIB and site.pool_row().allocated_bytes == 0

        # Attach to the stopped VM: a file on the VM's root pool, the space claimed.
        await to_row(app, pilot, "data-1")
        await pilot.press("a")
        dialog = await choice_loaded(pilot, app, AttachDialog)
        options = dialog.query_one("#choice-list", OptionList)
        assert options.highlighted_option is not None
        assert options.highlighted_option.id == vm.uuid
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: volume_named(cloud, "data-1").vm_id == vm.id, "attached", seconds=60
        )
        screen = app.screen
        assert isinstance(screen, VolumesScreen)
        await wait_for(pilot, lambda: "Succeeded" in screen.progress_text(), "the job line")
        assert "AttachVolume" in screen.progress_text() or "data-1" in screen.progress_text()
        attached = volume_named(cloud, "data-1")
        assert attached.state == VolumeState.READY and attached.path
        file = Path(site.pool.path) / attached.path
        assert file.is_file() and site.pool_row().allocated_bytes == 2 * GIB

        # Resize: shrinking is refused by the engine next to the field; growing is a job.
        await to_row(app, pilot, "data-1")
        await pilot.press("r")
        form = await on_screen(pilot, app, ResizeVolumeForm, "the resize form")
        form.query_one("#input-size", Input).value = "1"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "cannot shrink" in field_error(app, "size"), "refusal")
        assert volume_named(cloud, "data-1").size_bytes == 2 * GIB
        form.query_one("#input-size", Input).value = "3"
        await pilot.press("ctrl+s")
        await wait_for(
            pilot, lambda: volume_named(cloud, "data-1").size_bytes == 3 * GIB, "grown", 60
        )
        await wait_for(pilot, lambda: site.pool_row().allocated_bytes == 3 * GIB, "claimed")

        # :pools shows the claim; Enter on a pool lists the volumes on it.
        await go(app, pilot, "pools")
        pools = app.screen
        assert pools.cell_at(0, "name") == "primary"
        assert pools.cell_at(0, "allocated") == "3.0 GiB"
        assert "/ 100.0 GiB" in pools.cell_at(0, "used")
        await pilot.press("enter")
        on_pool = await on_screen(pilot, app, VolumesScreen, "the pool's volumes")
        assert on_pool.scope == {"pool": site.pool.uuid}
        assert [row.cells[0] for row in on_pool.rows] == [f"ROOT-{vm.id}", "data-1"]

        # Detach: Enter on the dialog cancels; confirming detaches.
        await to_row(app, pilot, "data-1")
        await pilot.press("d")
        await on_screen(pilot, app, ConfirmDialog, "the detach dialog")
        assert f"Detach volume data-1 from VM {vm.name}?" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("d")
        await cancel_by_enter(pilot, app)
        assert volume_named(cloud, "data-1").vm_id == vm.id
        assert not jobs_of(cloud, "DetachVolume")
        await pilot.press("d")
        await on_screen(pilot, app, ConfirmDialog, "the detach dialog")
        await confirm(pilot, app)
        await wait_for(
            pilot, lambda: volume_named(cloud, "data-1").vm_id is None, "detached", seconds=60
        )
        assert site.pool_row().allocated_bytes == 3 * GIB  # detached, still on the pool

        # Delete: it has data, so its name must be typed; Enter at once cancels.
        await to_row(app, pilot, "data-1")
        await pilot.press("ctrl+d")
        await cancel_by_enter(pilot, app)
        assert volume_named(cloud, "data-1").state == VolumeState.READY
        await pilot.press("ctrl+d")
        await on_screen(pilot, app, ConfirmDialog, "the delete dialog")
        assert "primary storage primary" in affected(app)
        assert not confirm_enabled(app)
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press(*"data-1")
        assert confirm_enabled(app)
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: volume_named(cloud, "data-1").state == VolumeState.EXPUNGED,
            "deleted",
            seconds=60,
        )
        await wait_for(pilot, lambda: site.pool_row().allocated_bytes == 0, "space given back")
        assert not file.exists()

    run_console(cloud, scenario)


# --- snapshots -----------------------------------------------------------------------------


def test_snapshot_created_reverted_and_deleted(site: Site) -> None:
    cloud = site.cloud
    vm = site.make_vm(running=False)
    root = volume_named(cloud, f"ROOT-{vm.id}")
    assert root is not None

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await go(app, pilot, "snapshots")
        screen = app.screen
        assert isinstance(screen, SnapshotsScreen)
        await pilot.press("n")
        picker = await choice_loaded(pilot, app, PickVolumeDialog)
        highlighted = picker.query_one("#choice-list", OptionList).highlighted_option
        assert highlighted is not None and highlighted.id == root.uuid
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: [s.state for s in live_snapshots(cloud)] == ["BackedUp"],
            "the snapshot",
            seconds=60,
        )
        snapshot = live_snapshots(cloud)[0]
        await wait_for(pilot, lambda: len(screen.rows) == 1, "the snapshot's row")
        # After the snapshot the volume's first 64 KiB are written over; the revert must
        # bring back what the snapshot holds (zeros: the template is blank).
        disk = str(Path(site.pool.path) / str(volume_named(cloud, root.name).path))
        write_pattern(disk, 0xAB)
        assert holds_pattern(disk, 0xAB)

        # Revert: the dialog says the volume's data is replaced; Enter cancels.
        await to_row(app, pilot, snapshot.name)
        await pilot.press("R")
        await on_screen(pilot, app, ConfirmDialog, "the revert dialog")
        assert "its current data is replaced" in affected(app)
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("R")
        await cancel_by_enter(pilot, app)
        assert not jobs_of(cloud, "RevertSnapshot")
        await pilot.press("R")
        await on_screen(pilot, app, ConfirmDialog, "the revert dialog")
        await confirm(pilot, app)
        await wait_for(
            pilot,
            lambda: [j.state for j in jobs_of(cloud, "RevertSnapshot")] == ["Succeeded"],
            "the revert",
            seconds=60,
        )
        assert volume_named(cloud, root.name).state == VolumeState.READY
        assert holds_pattern(disk, 0x00) and not holds_pattern(disk, 0xAB)

        # A template made from the snapshot: a CreateTemplate job.
        await to_row(app, pilot, snapshot.name)
        await pilot.press("T")
        form = await on_screen(pilot, app, TemplateFromSnapshotForm, "the template form")
        form.query_one("#input-name", Input).value = "golden"
        await pilot.press("ctrl+s")
        await wait_for(
            pilot,
            lambda: [j.state for j in jobs_of(cloud, "CreateTemplate")] == ["Succeeded"],
            "the template",
            seconds=60,
        )
        with cloud.db.read() as session:
            made = session.exec(select(Template).where(Template.name == "golden")).one()
        assert made.state == "Ready"

        # Delete: the name typed.
        await to_row(app, pilot, snapshot.name)
        await pilot.press("ctrl+d")
        await on_screen(pilot, app, ConfirmDialog, "the delete dialog")
        assert not confirm_enabled(app)
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press(*snapshot.name, "enter")
        await wait_for(pilot, lambda: live_snapshots(cloud) == [], "deleted", seconds=60)
        await wait_for(pilot, lambda: not screen.rows, "the row gone")

        # `S` on :vols snapshots the volume under the cursor.
        await go(app, pilot, "vols")
        await to_row(app, pilot, root.name)
        await pilot.press("S")
        await wait_for(
            pilot,
            lambda: [s.state for s in live_snapshots(cloud)] == ["BackedUp"],
            "the snapshot from :vols",
            seconds=60,
        )
        assert live_snapshots(cloud)[0].volume_id == root.id

    run_console(cloud, scenario)


# --- templates -----------------------------------------------------------------------------


class Zones:
    def __init__(self, cloud: Cloud, root: Path) -> None:
        self.cloud, self.root = cloud, root
        make_zone(cloud, "z1")
        make_zone(cloud, "z2")
        self.stores = {
            zone: topology.add_image_store(cloud.admin, zone, f"{zone}-sec", url=str(root / zone))
            for zone in ("z1", "z2")
        }
        image = root / "image.raw"
        image.write_bytes(os.urandom(8 * MIB))  # 8 chunks of 1 MiB: eight progress steps
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
        self.template = register_template(
            cloud.admin, "tiny", zone="z1", source=image, format="RAW", checksum=f"sha256:{digest}"
        )


@pytest.fixture(name="zones")
def zones_fixture(cloud: Cloud, tmp_path: Path) -> Zones:
    if subprocess.run(["which", "qemu-img"], capture_output=True).returncode != 0:
        missing_part("qemu-img not installed (qemu-utils): templates are inspected with it")
    return Zones(cloud, tmp_path)


class CopyGate:
    """Holds the copy at two points (the first progress step, then past 60 %) until the
    test has seen the progress shown; the copy itself is the engine's, in 1 MiB chunks."""

    def __init__(self) -> None:
        self.reached = [threading.Event(), threading.Event()]
        self.go_on = [threading.Event(), threading.Event()]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = templates.copy_verified

        def gated(*args: Any, **kwargs: Any) -> Any:
            report = kwargs["progress"]

            def progress(percent: int, message: str) -> None:
                report(percent, message)
                stop = 0 if not self.reached[0].is_set() else 1 if percent >= 60 else None
                if stop is not None and percent < 100 and not self.reached[stop].is_set():
                    self.reached[stop].set()
                    self.go_on[stop].wait(60)

            kwargs.update(progress=progress, chunk_bytes=MIB)
            return real(*args, **kwargs)

        monkeypatch.setattr(templates, "copy_verified", gated)

    def release_all(self) -> None:
        for event in self.go_on:
            event.set()


def shown_percent(text: str) -> int | None:
    import re

    found = re.search(r"(\d+)%", text)
    return int(found[1]) if found else None


def test_a_template_copied_to_another_zone_with_its_progress_shown(
    zones: Zones, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud, template = zones.cloud, zones.template
    gate = CopyGate()
    gate.install(monkeypatch)
    z2_store = zones.stores["z2"].id

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        try:
            await runner_started(app, pilot)
            await go(app, pilot, "templates")
            screen = await to_row(app, pilot, "tiny")
            assert isinstance(screen, TemplatesScreen)
            await pilot.press("y")
            dialog = await choice_loaded(pilot, app, CopyDialog)
            options = dialog.query_one("#choice-list", OptionList)
            assert [o.disabled for o in options.options] == [True, False]  # z1 has it
            assert "has a copy: Ready" in str(options.options[0].prompt)
            await pilot.press("enter")  # z2, the one choosable

            await wait_for(pilot, gate.reached[0].is_set, "the copy started", seconds=60)
            await wait_for(pilot, lambda: (shown_percent(screen.progress_text()) or 0) > 0, "%")
            first = shown_percent(screen.progress_text())
            assert first is not None and 0 < first < 60
            assert "Running" in screen.progress_text() and "copied" in screen.progress_text()
            assert copy_in(cloud, template, z2_store).state == "Downloading"  # type: ignore[union-attr]
            gate.go_on[0].set()

            await wait_for(pilot, gate.reached[1].is_set, "the copy past 60%", seconds=60)
            await wait_for(
                pilot, lambda: (shown_percent(screen.progress_text()) or 0) >= 60, "moved on"
            )
            second = shown_percent(screen.progress_text())
            assert second is not None and first < second < 100
            # The jobs panel shows the same running copy with its bar.
            await pilot.press("j")
            await on_screen(pilot, app, JobsScreen, "the jobs panel")
            text = screen_text(app)
            assert "CopyTemplate" in text or "tiny" in text
            assert f"{second:>3}%" in text
            await pilot.press("j")
            await wait_for(pilot, lambda: app.screen is screen, "back on templates")
            gate.go_on[1].set()

            await wait_for(
                pilot,
                lambda: copy_in(cloud, template, z2_store).state == "Ready",  # type: ignore[union-attr]
                "the copy Ready",
                seconds=60,
            )
            await wait_for(pilot, lambda: "Succeeded" in screen.progress_text(), "the outcome")
            await wait_for(pilot, lambda: any("done" in t for t in toasts(app)), "the toast")
            # Enter on the finished job in the panel: the template's row in its table.
            await pilot.press("j")
            await on_screen(pilot, app, JobsScreen, "the jobs panel")
            await pilot.press("down", "enter")  # the one job, the copy
            await wait_for(
                pilot,
                lambda: isinstance(app.screen, TemplatesScreen) and app.screen is not screen,
                "the template's table",
            )
            assert app.screen.filter_text == "tiny"
            assert app.screen.cursor_row is not None and app.screen.cursor_row.cells[0] == "tiny"
        finally:
            gate.release_all()

    run_console(cloud, scenario)
    ref = copy_in(cloud, template, z2_store)
    assert ref is not None and ref.progress == 100 and ref.physical_size_bytes == 8 * MIB


def test_deleting_a_template_in_use_is_refused_with_the_engine_s_message(zones: Zones) -> None:
    cloud, template = zones.cloud, zones.template
    _add_vm_using(cloud, template, "web-1")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "templates")
        await to_row(app, pilot, "tiny")
        await pilot.press("ctrl+d")
        await cancel_by_enter(pilot, app)
        await pilot.press("ctrl+d")
        await on_screen(pilot, app, ConfirmDialog, "the delete dialog")
        listed = affected(app)
        assert "zone z1: image store z1-sec, Ready, 8.0 MiB" in listed
        app.screen.query_one("#confirm-name", Input).focus()
        await pilot.press(*"tiny", "enter")
        await wait_for(pilot, lambda: any("in use by VM 'web-1'" in t for t in toasts(app)), "")

    run_console(cloud, scenario)
    with cloud.db.read() as session:
        row = session.get(Template, template.id)
        assert row is not None and row.removed is None and row.state == "Ready"
        refs = session.exec(
            select(TemplateStoreRef).where(TemplateStoreRef.template_id == template.id)
        ).all()
    assert [r.state for r in refs] == ["Ready"]
    assert (zones.root / "z1" / refs[0].path).is_file()  # its file is still there


def _add_vm_using(cloud: Cloud, template: Template, name: str) -> None:
    """A Stopped VM row deployed from `template` (what makes it in use)."""
    with cloud.db.write() as session:
        store = session.exec(select(ImageStore).where(ImageStore.name == "z1-sec")).one()
        session.add(
            VirtualMachine(
                name=name,
                instance_name=f"i-{name}",
                account_id=cloud.admin.account_id,  # type: ignore[arg-type]
                domain_id=cloud.admin.domain_id,  # type: ignore[arg-type]
                zone_id=store.zone_id,
                template_id=template.id,
                cpu_count=1,
                cpu_mhz=1000,
                memory_bytes=256 * MIB,
                state="Stopped",
                power_state="PowerOff",
            )
        )


def test_a_template_registered_from_a_file_and_its_copies_shown(
    zones: Zones, tmp_path: Path
) -> None:
    cloud = zones.cloud
    image = tmp_path / "second.raw"
    image.write_bytes(os.urandom(2 * MIB))

    def names() -> list[str]:
        with cloud.db.read() as session:
            return sorted(session.exec(select(Template.name)).all())

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await go(app, pilot, "templates")
        screen = app.screen
        assert isinstance(screen, TemplatesScreen)
        await pilot.press("n")
        form = await on_screen(pilot, app, RegisterTemplateForm, "the register form")
        form.query_one("#input-name", Input).value = "second"
        form.query_one("#input-format", Select).value = "RAW"
        form.query_one("#input-path", Input).value = str(tmp_path / "missing.raw")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "no such file" in field_error(app, "path"), "refusal")
        assert names() == ["tiny"] and not jobs_of(cloud, "RegisterTemplate")
        form.query_one("#input-path", Input).value = str(image)
        await pilot.press("ctrl+s")
        await wait_for(
            pilot,
            lambda: [j.state for j in jobs_of(cloud, "RegisterTemplate")] == ["Succeeded"],
            "the registration",
            seconds=60,
        )
        await wait_for(pilot, lambda: "Succeeded" in screen.progress_text(), "the job line")
        assert names() == ["second", "tiny"]
        await to_row(app, pilot, "second")
        await pilot.press("enter")
        copies = await choice_loaded(pilot, app, CopiesDialog)
        listed = [str(o.prompt) for o in copies.query_one("#choice-list", OptionList).options]
        assert listed == ["zone z1: image store z1-sec, Ready, 2.0 MiB"]

    run_console(cloud, scenario)


# --- read-only, and a snapshot of the copy dialog ------------------------------------------


def test_read_only_shows_no_storage_action(zones: Zones) -> None:
    admin = zones.cloud.admin
    offerings.create_disk_offering(admin, "small", disk_size_bytes=GIB)
    volumes.create_volume(admin, "data-1", zone="z1", disk_offering="small")  # a row to act on

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        for view, keys in (
            ("templates", ("register_template", "copy_template", "delete_template")),
            (
                "vols",
                (
                    "create_volume", "attach_volume", "detach_volume", "delete_volume",
                    "resize_volume", "snapshot_volume",
                ),
            ),
            (
                "snapshots",
                ("create_snapshot", "revert_snapshot", "delete_snapshot", "template_from"),
            ),
        ):  # fmt: skip
            await go(app, pilot, view)
            assert view == "snapshots" or app.screen.cursor_row is not None
            shown = {b.binding.action for b in app.active_bindings.values() if b.enabled}
            assert not shown & set(keys), view
        await go(app, pilot, "templates")
        await to_row(app, pilot, "tiny")
        await pilot.press("ctrl+d", "y")
        await settle(app, pilot)
        assert isinstance(app.screen, TemplatesScreen)
        await go(app, pilot, "vols")
        await pilot.press("n", "a", "d", "r", "ctrl+d", "S")
        await settle(app, pilot)
        assert isinstance(app.screen, StorageScreen)  # no form, no dialog opened

    before = db_snapshot(zones.cloud)
    run_console(zones.cloud, scenario, read_only=True)
    assert db_snapshot(zones.cloud) == before  # no job, no row changed


def test_copy_dialog_snapshot(zones: Zones, snap_compare: Any) -> None:
    app = ScreenApp(lambda: CopyDialog(zones.cloud.admin, zones.template.uuid))

    async def loaded(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), "zones")

    assert snap_compare(app, terminal_size=(120, 24), run_before=loaded)


def test_an_iso_registered_from_a_file(zones: Zones, tmp_path: Path) -> None:
    from test_compute_attach import iso_bytes

    cloud = zones.cloud
    image = tmp_path / "rescue.iso"
    image.write_bytes(iso_bytes())

    def isos() -> list[tuple[str, str, str]]:
        with cloud.db.read() as session:
            rows = session.exec(select(Template).where(Template.format == "ISO"))
            return [(t.name, t.format, t.state) for t in rows]

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        await go(app, pilot, "templates")
        await pilot.press("n")
        form = await on_screen(pilot, app, RegisterTemplateForm, "the register form")
        form.query_one("#input-name", Input).value = "rescue"
        form.query_one("#input-format", Select).value = "ISO"
        form.query_one("#input-path", Input).value = str(image)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isos() == [("rescue", "ISO", "Ready")], "the ISO", 60)

    run_console(cloud, scenario)
