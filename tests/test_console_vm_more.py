"""More VM actions from the console, on test-driver hosts through the console's job runner:
suspend/resume, attach/detach a data volume, attach/eject an ISO (confirmations with
Cancel by default), the `virsh console` key (a fake virsh on PATH records its argv), and
none of these keys in read-only mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from compute_world import make_compute_world, vm_by_name
from console_support import go, run_console, settle, toasts
from ops_support import affected, wait_for
from screens_support import build_world, screen_text
from sqlmodel import select
from test_compute_attach import make_iso
from test_console_ops_vms import deploy, dialog_open, state, to_row
from textual.drivers.headless_driver import HeadlessDriver
from textual.pilot import Pilot
from textual.widgets import OptionList

from engine import offerings
from engine.bootstrap import Cloud
from engine.models import Host, Job, VmState, Volume
from engine.storage.volumes import create_volume
from tui.app import StratusApp
from tui.screens.details import VmDetailScreen
from tui.screens.vm_actions import IsoDialog, VmsScreen, VolumeDialog
from tui.widgets.confirm import ConfirmDialog

GIB = 2**30


def cancel_is_focused(app: StratusApp) -> bool:
    return app.screen.focused is not None and app.screen.focused.id == "cancel"


async def cancel_then_back(app: StratusApp, pilot: Pilot, back: type) -> None:
    """Enter on the dialog as it opens: its focus is on Cancel, so nothing happens."""
    assert cancel_is_focused(app)
    await pilot.press("enter")
    await settle(app, pilot)
    assert isinstance(app.screen, back)


def volume(cloud: Cloud, name: str) -> Volume:
    with cloud.db.read() as session:
        return session.exec(select(Volume).where(Volume.name == name)).one()


async def choices_loaded(app: StratusApp, pilot: Pilot, kind: type) -> str:
    await wait_for(pilot, lambda: isinstance(app.screen, kind), kind.__name__)
    await wait_for(pilot, lambda: app.screen.loaded, "the choices")
    return screen_text(app)


def test_suspend_asks_first_then_resume(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        await to_row(app, pilot, "web")
        await pilot.press("p")
        await dialog_open(app, pilot)
        assert "Suspend VM web?" in screen_text(app)
        assert "VM web (Running on host" in affected(app)
        await cancel_then_back(app, pilot, VmsScreen)
        assert state(cloud, "web") == VmState.RUNNING
        await pilot.press("p")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.SUSPENDED, "suspended")
        await wait_for(pilot, lambda: app.screen.cell_at(0, "state") == "Suspended", "table")
        await wait_for(pilot, lambda: any("SuspendVM" in t for t in toasts(app)), "toast")
        await pilot.press("P")  # resuming stops nothing: no dialog
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.RUNNING, "running again")
        await wait_for(pilot, lambda: any("ResumeVM" in t for t in toasts(app)), "toast")

    run_console(cloud, scenario)


def test_attach_and_detach_a_volume_from_the_vm_detail(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)
    offerings.create_disk_offering(cloud.admin, "small", disk_size_bytes=1 * GIB)
    create_volume(cloud.admin, "data1", zone="z1", disk_offering="small")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        vm = vm_by_name(cloud, "web")
        await to_row(app, pilot, "web")
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen)
        # The test driver cannot hot-plug a disk: the VM is stopped (attach and detach are
        # then recorded, and the disk is in the domain at the next start).
        await pilot.press("T")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.STOPPED, "stopped")

        await pilot.press("A")
        text = await choices_loaded(app, pilot, VolumeDialog)
        assert "Attach a volume to VM web (Stopped)" in text
        assert "data1 (1 GiB, Allocated, no file yet)" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: volume(cloud, "data1").vm_id == vm.id, "attached")
        await wait_for(pilot, lambda: any("AttachVolume" in t for t in toasts(app)), "toast")

        await pilot.press("D")
        text = await choices_loaded(app, pilot, VolumeDialog)
        assert "Detach a volume from VM web (Stopped)" in text
        assert "data1 (1 GiB, Ready, pool primary)" in text
        await pilot.press("enter")
        await dialog_open(app, pilot)
        assert "volume data1 (1 GiB, Ready, pool primary)" in affected(app)
        await cancel_then_back(app, pilot, VmDetailScreen)
        assert volume(cloud, "data1").vm_id == vm.id
        await pilot.press("D")
        await choices_loaded(app, pilot, VolumeDialog)
        await pilot.press("enter")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: volume(cloud, "data1").vm_id is None, "detached")
        await wait_for(pilot, lambda: any("DetachVolume" in t for t in toasts(app)), "toast")

    run_console(cloud, scenario)


def test_attach_and_eject_an_iso_from_the_vm_table(cloud: Cloud, tmp_path: Path) -> None:
    world = make_compute_world(cloud, tmp_path)
    iso = make_iso(cloud, tmp_path, "rescue")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        await to_row(app, pilot, "web")
        await pilot.press("I")  # nothing to eject yet
        await wait_for(pilot, lambda: any("has no ISO attached" in t for t in toasts(app)), "")
        assert isinstance(app.screen, VmsScreen)

        await pilot.press("i")
        text = await choices_loaded(app, pilot, IsoDialog)
        assert "Attach an ISO to VM web (Running)" in text and "rescue (" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: vm_by_name(cloud, "web").iso_id == iso.id, "attached")
        await wait_for(pilot, lambda: any("AttachISO" in t for t in toasts(app)), "toast")
        await pilot.press("d")  # the VM's detail says which ISO is in its drive
        await wait_for(pilot, lambda: "ISO                   rescue" in screen_text(app), "ISO")
        await pilot.press("escape")
        await settle(app, pilot)

        await pilot.press("i")  # one at a time: nothing can be chosen now
        text = await choices_loaded(app, pilot, IsoDialog)
        assert "ISO rescue is in its drive: eject it first (I)" in text
        options = app.screen.query_one("#choice-list", OptionList)
        assert options.get_option_at_index(0).disabled
        await pilot.press("escape")
        await settle(app, pilot)

        await pilot.press("I")
        await dialog_open(app, pilot)
        assert "Eject ISO rescue from VM web?" in screen_text(app)
        assert "ISO rescue in the CD-ROM drive of VM web (Running)" in affected(app)
        await cancel_then_back(app, pilot, VmsScreen)
        assert vm_by_name(cloud, "web").iso_id == iso.id
        await pilot.press("I")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: vm_by_name(cloud, "web").iso_id is None, "ejected")
        await wait_for(pilot, lambda: any("DetachISO" in t for t in toasts(app)), "toast")

    run_console(cloud, scenario)


# --- the console key -------------------------------------------------------------------------


def fake_virsh(directory: Path) -> Path:
    """A `virsh` that writes its arguments, one a line, to argv.txt next to it."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "virsh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{directory}/argv.txt"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return directory / "argv.txt"


def test_the_console_key_suspends_the_app_runs_virsh_console_and_comes_back(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_compute_world(cloud, tmp_path)
    argv = fake_virsh(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    # The pilot's headless driver cannot hand a terminal over; this one says it can and
    # records what App.suspend asks of it (leave application mode, then come back).
    driver_calls: list[str] = []
    monkeypatch.setattr(HeadlessDriver, "can_suspend", property(lambda self: True))
    monkeypatch.setattr(
        HeadlessDriver, "suspend_application_mode", lambda self: driver_calls.append("suspend")
    )
    monkeypatch.setattr(
        HeadlessDriver, "resume_application_mode", lambda self: driver_calls.append("resume")
    )

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        vm = vm_by_name(cloud, "web")
        with cloud.db.read() as session:
            host = session.get(Host, vm.host_id)
            assert host is not None
        await to_row(app, pilot, "web")
        await pilot.press("ctrl+o")
        await wait_for(pilot, argv.exists, "virsh to run")
        assert argv.read_text().split("\n")[:4] == ["-c", host.uri, "console", vm.instance_name]
        await wait_for(pilot, lambda: any("console of VM web closed" in t for t in toasts(app)), "")
        assert driver_calls == ["suspend", "resume"]  # handed over, then taken back
        assert isinstance(app.screen, VmsScreen) and app.is_running

    run_console(cloud, scenario)


def test_the_console_key_says_why_it_cannot_open(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_compute_world(cloud, tmp_path)
    argv = fake_virsh(tmp_path / "bin")
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{path}")

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await deploy(app, pilot, world, "web")
        vm = vm_by_name(cloud, "web")
        await to_row(app, pilot, "web")
        await pilot.press("ctrl+o")  # the pilot's driver cannot suspend
        await wait_for(pilot, lambda: any("cannot hand over" in t for t in toasts(app)), "")
        assert any("run: " in t and f"console {vm.instance_name}" in t for t in toasts(app))
        assert not argv.exists()

        monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no virsh anywhere
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: any("virsh is not installed" in t for t in toasts(app)), "")

        await pilot.press("T")
        await dialog_open(app, pilot)
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: state(cloud, "web") == VmState.STOPPED, "stopped")
        await pilot.press("ctrl+o")
        await wait_for(
            pilot,
            lambda: any("VM 'web' is Stopped; its console needs it Running" in t
                        for t in toasts(app)),
            "the refusal",
        )  # fmt: skip
        assert not argv.exists()

    run_console(cloud, scenario)


# --- read-only -------------------------------------------------------------------------------


def test_read_only_has_none_of_these_keys(cloud: Cloud) -> None:
    build_world(cloud)
    with cloud.db.read() as session:
        before = len(session.exec(select(Job)).all())
    ids = {"vm.suspend", "vm.resume", "vm.attach_volume", "vm.detach_volume"}
    ids |= {"vm.attach_iso", "vm.eject_iso", "vm.console"}

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        assert isinstance(app.screen, VmsScreen)
        assert not {b.binding.id for b in app.active_bindings.values()} & ids
        await pilot.press("p", "P", "A", "D", "i", "I", "ctrl+o")
        await settle(app, pilot)
        assert isinstance(app.screen, VmsScreen) and not isinstance(app.screen, ConfirmDialog)
        await pilot.press("d")
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen)
        assert not {b.binding.id for b in app.active_bindings.values()} & ids
        await pilot.press("p", "A", "D", "i", "I", "ctrl+o")
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen)

    run_console(cloud, scenario, read_only=True)
    with cloud.db.read() as session:
        assert len(session.exec(select(Job)).all()) == before


def test_the_help_lists_the_new_keys(cloud: Cloud) -> None:
    build_world(cloud)  # VMs web-1 and db-1: the cursor is on one

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        # What the `?` panel lists (HelpPanel is given app.current_keys()).
        keys: dict[str, Any] = {k.binding_id: k for k in app.current_keys()}
        expected = {
            "vm.suspend": ("p", "Suspend"),
            "vm.resume": ("P", "Resume"),
            "vm.attach_volume": ("A", "Attach volume"),
            "vm.detach_volume": ("D", "Detach volume"),
            "vm.attach_iso": ("i", "Attach ISO"),
            "vm.eject_iso": ("I", "Eject ISO"),
            "vm.console": ("^o", "Console (virsh)"),
        }
        for binding_id, (key, description) in expected.items():
            assert (keys[binding_id].keys, keys[binding_id].description) == (key, description)

    run_console(cloud, scenario)
