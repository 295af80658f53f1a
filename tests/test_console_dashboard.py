"""The dashboard: the engine service, the screen's content, live refresh, failures, snapshot."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import set_columns
from screens_support import (
    CLUSTER,
    GIB,
    HOST_DOWN,
    HOST_UP,
    VM_WEB,
    ZONE,
    ScreenApp,
    build_world,
    frozen_clock,
    screen_text,
    settle,
    toasts,
)
from textual.pilot import Pilot
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static

import tui.screens.dashboard as dashboard_screen
from engine import topology
from engine.bootstrap import Cloud
from engine.dashboard import dashboard
from engine.demo import build_demo
from engine.errors import DatabaseUnavailable
from engine.models import Host
from tui.screens.dashboard import DashboardScreen, ZonePanel
from tui.screens.details import (
    ClusterDetailScreen,
    HostDetailScreen,
    VmDetailScreen,
    ZoneDetailScreen,
)
from tui.screens.live import LiveStatus
from tui.widgets.gauge import Gauge, bar, figures, gauge_line, gauge_state, human_bytes
from tui.widgets.sparkline import History, spark


def run_dashboard(
    cloud: Cloud,
    scenario: Callable[[ScreenApp, Pilot[Any]], Awaitable[None]],
    *,
    refresh_seconds: float = 0,
) -> None:
    async def main() -> None:
        app = ScreenApp(
            lambda: DashboardScreen(
                cloud.admin, refresh_seconds=refresh_seconds, clock=frozen_clock
            )
        )
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())


# --- the engine service ---------------------------------------------------------------


def test_dashboard_service_figures_problems_jobs_and_events(cloud: Cloud) -> None:
    build_world(cloud)
    data = dashboard(cloud.admin)

    (zone,) = data.zones
    assert (zone.name, zone.hosts, zone.hosts_up) == ("eu-west", 2, 1)
    # a1 claims 8000 MHz used + 4000 reserved of 2 hosts x 16 cores x 2000 MHz.
    assert (zone.cpu_mhz.allocated, zone.cpu_mhz.total) == (12000, 64000)
    assert (zone.memory_bytes.allocated, zone.memory_bytes.total) == (12 * GIB, 128 * GIB)
    assert (zone.primary_used_bytes.used, zone.primary_used_bytes.total) == (900 * GIB, 1000 * GIB)
    # Allocated is measured against capacity x the default storage factor 2.
    assert zone.primary_allocated_bytes.total == 2000 * GIB
    assert zone.secondary_bytes.total == 4096 * GIB
    # IPAM: 5 of the 20 public addresses reserved; a1 and a2 hold 2 of the pod's 90
    # management addresses; web-1's NIC takes 1 of web-net's 253 guest addresses.
    ips = {k: (u.total, u.allocated, u.free) for k, u in (zone.ip_utilisation or {}).items()}
    assert ips == {"public": (20, 5, 15), "private": (90, 2, 88), "guest": (253, 1, 252)}

    assert [(h.name, h.status, h.resource_state, h.cluster) for h in data.hosts_not_up] == [
        ("a2", "Disconnected", "Enabled", "kvm-a")
    ]
    assert data.hosts_not_up_total == 1 and data.hosts_total == 2
    over = [(o.kind, o.name, o.measure, round(o.percent, 2), o.threshold_percent) for o in
            data.over_threshold]  # fmt: skip
    # kvm-a: CPU 18.75% over its own 15%; memory 9.4% is under the global 85%.
    # ps-1: used 90% over the global 85%; allocated 15% is under.
    assert over == [("cluster", "kvm-a", "CPU", 18.75, 15.0), ("pool", "ps-1", "used", 90.0, 85.0)]

    assert [(j.job_type, j.state, j.progress) for j in data.running_jobs] == [
        ("StartVM", "Running", 40)
    ]
    assert [(j.job_type, j.state, j.error) for j in data.recent_jobs] == [
        ("StopVM", "Failed", "host a2 is Disconnected")
    ]
    assert [e.event_type for e in data.events[:3]] == [
        "VM.CREATE",
        "VM.CREATE",
        "SERVICE.OFFERING.CREATE",
    ]
    assert data.events[0].resource_name == "db-1"  # newest first


def test_a_host_stuck_entering_maintenance_needs_attention_while_up(cloud: Cloud) -> None:
    build_world(cloud)
    set_columns(cloud, Host, HOST_UP, resource_state="ErrorInMaintenance")
    data = dashboard(cloud.admin)
    assert [(h.name, h.status, h.resource_state) for h in data.hosts_not_up] == [
        ("a1", "Up", "ErrorInMaintenance"),
        ("a2", "Disconnected", "Enabled"),
    ]
    assert data.hosts_not_up_total == 2


def test_dashboard_service_on_an_empty_cloud(cloud: Cloud) -> None:
    data = dashboard(cloud.admin)
    assert data.zones == [] and data.hosts_not_up == [] and data.over_threshold == []
    assert data.running_jobs == [] and data.recent_jobs == []


def test_disabled_pools_and_clusters_under_threshold_are_not_problems(cloud: Cloud) -> None:
    build_world(cloud)
    topology.update_cluster(cloud.admin, "kvm-a", cpu_disable_threshold=0.9)
    topology.disable_storage_pool(cloud.admin, "ps-1")
    assert dashboard(cloud.admin).over_threshold == []


# --- the screen -----------------------------------------------------------------------


def test_screen_shows_gauges_problems_jobs_and_events(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "eu-west" in text
        assert "Advanced · Enabled · 2 hosts, 1 Up, 1 not Up" in text
        assert "CPU        [██░░░░░░░░]  19%  ok    12.0 / 64.0 GHz" in text
        assert "Prim used  [█████████░]  90%  over  900 / 1,000 GiB" in text
        assert "Public IP  [██░░░░░░░░]  25%  ok    5 / 20" in text
        assert "Private IP [█░░░░░░░░░]   2%  ok    2 / 90" in text
        assert "Hosts not Up: 1 of 2" in text
        assert "✗ a2  Disconnected  Enabled  eu-west / kvm-a" in text
        assert "! cluster kvm-a (eu-west): CPU 19% over 15%" in text
        assert "! pool ps-1 (eu-west): used 90% over 85%" in text
        assert "StartVM VirtualMachine db-1 Running 40%" in text
        assert "StopVM VirtualMachine web-1 Failed" in text
        assert "VM.CREATE" in text and "deployed web-1 on a1" in text
        assert "1 zone · 2 hosts · updated 09:56:53 UTC (refresh off)" in text

    run_dashboard(cloud, scenario)


def test_demo_datacenter_dashboard(cloud: Cloud) -> None:
    build_demo(cloud.admin, hosts=48)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        panels = {p.zone.name: p for p in app.screen.query(ZonePanel)}
        assert sorted(panels) == ["eu-central-adv", "eu-west-basic"]
        assert panels["eu-west-basic"].zone.network_type == "Basic"
        text = screen_text(app)
        assert "2 zones · 48 hosts" in text
        # The demo marks one host Down and one Disconnected.
        assert "Hosts not Up: 2 of 48" in text
        assert "Disconnected" in text and "  Down  " in text
        assert "SERVICE.OFFERING.CREATE" in text or "DISK.OFFERING.CREATE" in text

    run_dashboard(cloud, scenario)


def test_empty_cloud_says_how_to_get_a_demo(cloud: Cloud) -> None:
    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "No zones yet" in text and "stratus demo" in text
        assert "All 0 hosts Up" in text

    run_dashboard(cloud, scenario)


def test_enter_on_a_zone_opens_its_details(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        app.screen.query_one(ZonePanel).focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, ZoneDetailScreen)
        assert app.screen.uuid == ZONE
        assert "192.0.2.53" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)

    run_dashboard(cloud, scenario)


def test_enter_on_a_problem_host_or_cluster_opens_its_details(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        dashboard = app.screen
        app.screen.query_one("#attention", OptionList).focus()
        await pilot.press("down", "enter")  # past the heading, onto host a2
        await settle(app, pilot)
        assert isinstance(app.screen, HostDetailScreen) and app.screen.uuid == HOST_DOWN
        assert "Status                Disconnected" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is dashboard
        await pilot.press("down", "enter")  # headings are skipped: cluster kvm-a
        await settle(app, pilot)
        assert isinstance(app.screen, ClusterDetailScreen) and app.screen.uuid == CLUSTER

    run_dashboard(cloud, scenario)


def test_enter_on_a_job_opens_the_vm_it_acts_on(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        app.screen.query_one("#jobs", OptionList).focus()
        await pilot.press("down", "down", "enter")  # the running job, then the failed one
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen) and app.screen.uuid == VM_WEB
        assert "deployed web-1 on a1" in screen_text(app)

    run_dashboard(cloud, scenario)


class Blocker(ModalScreen[None]):
    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("a modal")


def test_live_refresh_rearms_and_pauses_under_a_modal(cloud: Cloud) -> None:
    build_world(cloud)

    async def wait_for(condition: Callable[[], bool], pilot: Pilot[Any]) -> bool:
        for _ in range(200):
            await pilot.pause(0.02)
            if condition():
                return True
        return False

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        topology.update_cluster(cloud.admin, "kvm-a", cpu_disable_threshold=0.9)

        def shown_over() -> list[str]:
            return [o.name for o in screen.data.over_threshold] if screen.data else []

        assert await wait_for(lambda: shown_over() == ["ps-1"], pilot)  # no key pressed

        app.push_screen(Blocker())
        await pilot.pause(0.1)
        loads = screen.loads
        await pilot.pause(0.3)  # several refresh periods: none while the modal is on top
        assert screen.loads == loads
        app.pop_screen()
        assert await wait_for(lambda: screen.loads > loads, pilot)

    run_dashboard(cloud, scenario, refresh_seconds=0.05)


def test_engine_failure_is_a_notification_with_escaped_markup(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_world(cloud)
    message = "database sqlite:////x.db: disk I/O error [b]not bold[/b] [/]"

    def failing(caller: Any) -> Any:
        raise DatabaseUnavailable(message)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        monkeypatch.setattr(dashboard_screen, "dashboard", failing)
        await pilot.press("r")
        await settle(app, pilot)
        assert app.is_running
        assert any(message in t for t in toasts(app)), toasts(app)
        status = app.screen.query_one(LiveStatus)
        assert status.has_class("-error")
        assert "Not refreshed (since 09:56:53, 1 failed)" in screen_text(app)
        assert "Hosts not Up: 1 of 2" in screen_text(app)  # the last good data stays

        monkeypatch.undo()
        await pilot.press("r")
        await settle(app, pilot)
        assert not status.has_class("-error")

    run_dashboard(cloud, scenario)


def test_unexpected_error_is_one_line_pointing_at_the_log(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(caller: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(dashboard_screen, "dashboard", broken)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert app.is_running
        shown = toasts(app)
        assert any("ZeroDivisionError: division by zero" in t and "stratus.log" in t for t in shown)
        assert "Traceback" not in screen_text(app)

    run_dashboard(cloud, scenario)


def test_every_binding_has_an_id() -> None:
    for owner in (DashboardScreen, ZonePanel):
        for binding in owner.BINDINGS:
            assert binding.id, f"{owner.__name__}: binding {binding.key!r} has no id"  # type: ignore[union-attr]


# --- gauge and sparkline ----------------------------------------------------------------


def test_gauge_states_are_spelled_and_bars_never_hide_use() -> None:
    assert gauge_state(None) == "n/a"
    assert gauge_state(0.1) == "ok"
    assert gauge_state(0.8) == "high"
    assert gauge_state(0.95) == "over"
    assert gauge_state(0.5, limit=0.4) == "over"
    assert bar(0.001, 10) == "█" + "░" * 9  # something used is never an empty bar
    assert bar(1.7, 4) == "████"
    assert bar(None, 3) == "···"
    assert figures(12_000, 64_000, lambda v: f"{v / 1000:.1f} GHz") == "12.0 / 64.0 GHz"
    assert figures(300 * GIB, 2048 * GIB, human_bytes) == "300 GiB / 2.0 TiB"
    line = gauge_line("Memory", 0, 0).plain
    assert "n/a" in line and "%" not in line


def test_sparkline_scales_between_min_and_max_and_keeps_history() -> None:
    assert spark([0, 50, 100]) == "▁▅█"
    assert spark([7, 7]) == "▄▄"
    history = History(size=3)
    for value in (1, 2, 3, 4):
        history.add({"CPU %": value})
    assert list(history.series["CPU %"]) == [2, 3, 4]
    assert "4.0" in history.lines()[0].plain


# --- snapshot ---------------------------------------------------------------------------


def test_dashboard_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build_world(cloud)
    app = ScreenApp(lambda: DashboardScreen(cloud.admin, refresh_seconds=0, clock=frozen_clock))

    async def loaded(pilot: Pilot[Any]) -> None:
        await settle(pilot.app, pilot)

    assert snap_compare(app, terminal_size=(120, 40), run_before=loaded)


def test_a_slow_engine_call_does_not_freeze_the_screen(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_world(cloud)
    release = threading.Event()
    started = threading.Event()

    def slow(caller: Any) -> Any:
        started.set()
        release.wait(timeout=30)
        return dashboard(caller)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        loads = screen.loads
        monkeypatch.setattr(dashboard_screen, "dashboard", slow)
        await pilot.press("r")
        for _ in range(100):
            if started.is_set():
                break
            await pilot.pause(0.01)
        assert started.is_set()
        # While the worker waits, the event loop keeps serving keys and screens.
        app.push_screen(Blocker())
        await pilot.pause()
        assert isinstance(app.screen, Blocker)
        app.pop_screen()
        await pilot.pause()
        assert app.screen is screen and screen.loads == loads
        release.set()
        await settle(app, pilot)
        assert screen.loads == loads + 1

    try:
        run_dashboard(cloud, scenario)
    finally:
        release.set()


def test_dashboard_fits_an_80x24_terminal(cloud: Cloud) -> None:
    build_world(cloud)

    async def main() -> None:
        app = ScreenApp(lambda: DashboardScreen(cloud.admin, refresh_seconds=0, clock=frozen_clock))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await pilot.resize_terminal(80, 24)
            await settle(app, pilot)
            text = screen_text(app).splitlines()
            assert len(text) == 24 and max(len(line) for line in text) <= 80
            assert any("Prim used  [█████████░]  90%" in line for line in text)
            assert "r Refresh" in text[-1]

    asyncio.run(main())


def test_gauge_widget_redraws_with_new_figures() -> None:
    async def main() -> None:
        app = ScreenApp(lambda: ModalScreen())
        async with app.run_test(size=(80, 5)) as pilot:
            gauge = Gauge("Memory", 1 * GIB, 4 * GIB, unit=human_bytes, limit=0.8)
            await app.screen.mount(gauge)
            await pilot.pause()
            assert gauge.state == "ok" and "25%" in str(gauge.render())
            gauge.update_figures(7 * GIB, 8 * GIB)
            await pilot.pause()
            assert gauge.state == "over"
            assert "88%  over  7.0 / 8.0 GiB" in str(gauge.render())

    asyncio.run(main())
