"""The jobs panel: reachable by `j` from every screen, running jobs with their progress,
failed ones with their error, cancelling with a confirmation; and snapshots of the panel
and of the confirmation dialog."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from console_support import build, console, go, run_console, settle
from ops_support import affected, runner_started, wait_for
from screens_support import ScreenApp, build_world, frozen_clock, screen_text
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

from engine.bootstrap import Cloud
from engine.errors import InvalidParameter
from engine.hosts.handlers import submit_host_job
from engine.jobs import JobContext, get_job, register_handler, submit_job
from tui.app import StratusApp
from tui.screens.dashboard import DashboardScreen
from tui.screens.details import HostDetailScreen
from tui.screens.forms import FormScreen
from tui.screens.jobs import JobsScreen
from tui.screens.resources import ResourceScreen
from tui.widgets.confirm import Confirmation, ConfirmDialog
from tui.widgets.key_bar import KeyBar

gate = threading.Event()


def _copy(ctx: JobContext) -> dict[str, Any]:
    ctx.progress(40, "copying 4 of 10 GiB")
    gate.wait(20)
    ctx.progress(100, "copied")
    return {"copied_gib": 10}


def _refuse(ctx: JobContext) -> None:
    raise InvalidParameter(
        f"template '{ctx.resource_name}': zone z9 has no image store; removed the partial copy"
    )


def _cancellable(ctx: JobContext) -> None:
    for _ in range(1000):
        ctx.progress(10, "waiting to be cancelled")
        ctx.check_cancelled()
        threading.Event().wait(0.02)


register_handler("OpsCopy", _copy)
register_handler("OpsRefuse", _refuse)
register_handler("OpsCancellable", _cancellable)


def panel_text(app: StratusApp) -> str:
    options = app.screen.query_one("#jobs-list", OptionList)
    return "\n".join(
        str(options.get_option_at_index(i).prompt) for i in range(options.option_count)
    )


def submit(cloud: Cloud, job_type: str, name: str) -> str:
    return submit_job(
        cloud.admin, job_type, resource_type="Template", resource_uuid=None, resource_name=name
    ).uuid


def test_the_panel_shows_a_running_jobs_progress_and_a_failed_jobs_error(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)
    gate.clear()

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        copy = submit(cloud, "OpsCopy", "debian-12")
        submit(cloud, "OpsRefuse", "alpine")
        await wait_for(pilot, lambda: get_job(cloud.db, copy).progress == 40, "progress")
        await pilot.press("j")
        await wait_for(pilot, lambda: "OpsRefuse" in panel_text(app), "the panel")
        assert isinstance(app.screen, JobsScreen)
        text = screen_text(app)
        assert "Running and pending: 1" in text and "Finished: 1" in text
        assert "▶ Running   OpsCopy Template debian-12  [██████░░░░░░░░░░]  40%" in text
        assert "copying 4 of 10 GiB" in text
        assert "✗ Failed    OpsRefuse Template alpine" in text
        assert "template 'alpine': zone z9 has no image store; removed the partial copy" in text
        gate.set()  # the copy ends; the panel's live refresh shows it
        await wait_for(pilot, lambda: "✓ Succeeded OpsCopy" in panel_text(app), "success")
        assert "copied_gib=10" in panel_text(app)

    run_console(cloud, scenario, refresh_seconds=0.1)


def test_cancel_a_running_job_from_the_panel_after_a_confirmation(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await runner_started(app, pilot)
        job = submit(cloud, "OpsCancellable", "big-iso")
        await wait_for(pilot, lambda: get_job(cloud.db, job).state == "Running", "running")
        await pilot.press("j")
        await wait_for(pilot, lambda: "OpsCancellable" in panel_text(app), "the panel")
        options = app.screen.query_one("#jobs-list", OptionList)
        options.highlighted = options.get_option_index(job)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        assert "OpsCancellable Template big-iso" in affected(app)
        await pilot.press("enter")  # Cancel is focused: the job goes on
        await settle(app, pilot)
        assert get_job(cloud.db, job).state == "Running"
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the dialog")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: get_job(cloud.db, job).state == "Cancelled", "cancelled")
        await wait_for(pilot, lambda: "- Cancelled OpsCancellable" in panel_text(app), "shown")

    run_console(cloud, scenario, refresh_seconds=0.1)


def test_j_opens_the_panel_from_every_screen_and_goes_back(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        assert isinstance(app.screen, DashboardScreen)
        shown = app.screen.query_one(KeyBar).keys()
        assert "Jobs" in shown  # the hint bar shows the key
        for opened in (DashboardScreen, ResourceScreen, HostDetailScreen):
            if opened is ResourceScreen:
                await go(app, pilot, "hosts")
            elif opened is HostDetailScreen:
                await pilot.press("d")
                await settle(app, pilot)
            assert isinstance(app.screen, opened)
            await pilot.press("j")
            await settle(app, pilot)
            assert isinstance(app.screen, JobsScreen)
            assert app.breadcrumbs()[-1] == "Jobs"
            await pilot.press("j")
            await settle(app, pilot)
            assert isinstance(app.screen, opened)
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert "app.jobs" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("e")  # a form is modal: j types, it does not leave
        await settle(app, pilot)
        assert isinstance(app.screen, FormScreen)
        await pilot.press("j")
        await settle(app, pilot)
        assert isinstance(app.screen, FormScreen)

    run_console(cloud, scenario)


def test_read_only_panel_shows_jobs_but_cannot_cancel(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)
    job = submit(cloud, "OpsCancellable", "big-iso")  # Pending: no runner in read-only
    reconnect = submit_host_job(cloud.admin, "ReconnectHost", host_ref="h0").uuid
    h0 = get_job(cloud.db, reconnect).resource_uuid

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await pilot.press("j")
        await settle(app, pilot)
        assert "… Pending   OpsCancellable Template big-iso" in panel_text(app)
        options = app.screen.query_one("#jobs-list", OptionList)
        options.highlighted = options.get_option_index(job)
        assert app.screen.check_action("cancel_job", ()) is False
        await pilot.press("c")
        await settle(app, pilot)
        assert isinstance(app.screen, JobsScreen)
        options.highlighted = options.get_option_index(reconnect)
        await pilot.press("enter")  # the object the job acts on
        await settle(app, pilot)
        assert isinstance(app.screen, HostDetailScreen) and app.screen.uuid == h0

    run_console(cloud, scenario, read_only=True)
    assert get_job(cloud.db, job).state == "Pending"
    assert get_job(cloud.db, reconnect).state == "Pending"


# --- snapshots -------------------------------------------------------------------------------


def test_jobs_panel_with_a_failed_job_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build_world(cloud)  # a Running StartVM at 40 %, a Failed StopVM
    app = ScreenApp(lambda: JobsScreen(cloud.admin, refresh_seconds=0, clock=frozen_clock))

    async def loaded(pilot: Pilot[Any]) -> None:
        await settle(pilot.app, pilot)  # type: ignore[arg-type]

    assert snap_compare(app, terminal_size=(120, 40), run_before=loaded)


def test_confirmation_dialog_snapshot(snap_compare: Any) -> None:
    confirmation = Confirmation(
        title="Remove host a1?",
        action="Remove",
        affected=[
            "host a1 (qemu+ssh://root@10.1.0.11/system) in eu-west / rack-1 / kvm-a, Up, Enabled",
            "2 VMs on it:",
            "VM web-1 (Running)",
            "VM db-1 (Stopped)",
        ],
        warning="The host leaves the topology; its libvirt connection is closed.",
        type_to_confirm="a1",
    )
    app = ScreenApp(lambda: ConfirmDialog(confirmation))

    async def typed(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        box = pilot.app.screen.query_one("#confirm-name", Input)
        box.cursor_blink = False
        box.value = "a"  # not the name yet: Remove stays disabled
        pilot.app.screen.query_one("#cancel").focus()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 40), run_before=typed)


def test_the_console_runs_jobs_while_open_and_stops_its_runner_on_exit(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)
    seen: dict[str, Any] = {}

    async def main() -> None:
        app = console(cloud)
        async with app.run_test(size=(120, 40)) as pilot:
            await runner_started(app, pilot)
            seen["runner"], seen["hosts"] = app.runner, app.hosts
            job = submit(cloud, "OpsRefuse", "alpine")
            await wait_for(pilot, lambda: get_job(cloud.db, job).state == "Failed", "the job")
        seen["after"] = (app.runner, app.hosts)

    asyncio.run(main())
    assert seen["after"] == (None, None)
    assert not any(thread.is_alive() for thread in seen["runner"]._threads)
    assert seen["hosts"]._writer._shutdown


def test_every_new_binding_has_an_id() -> None:
    from tui.screens.host_actions import AddHostDialog, HostsScreen
    from tui.screens.ip_actions import IpsScreen
    from tui.screens.security_groups import SecurityGroupsScreen

    for owner in (JobsScreen, ConfirmDialog, HostsScreen, HostDetailScreen, AddHostDialog,
                  IpsScreen, SecurityGroupsScreen, StratusApp):  # fmt: skip
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding) and binding.id, f"{owner.__name__}: {binding}"
