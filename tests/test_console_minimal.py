"""The console's topology tree: lazy levels, refresh, engine errors, and the engine boundary."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static, Tree
from textual.widgets._toast import Toast

import tui.screens.topology as topology_screen
from engine.bootstrap import Cloud
from engine.config import default_config
from engine.context import Caller
from engine.errors import DatabaseUnavailable
from engine.topology import (
    HostSpec,
    add_host,
    add_hosts,
    create_cluster,
    create_pod,
    create_zone,
    disable_cluster,
)
from tui.app import StratusApp

ENGINE = Path(__file__).resolve().parent.parent / "engine"
GIB = 1024**3


def _spec(name: str) -> HostSpec:
    return HostSpec(
        name=name, uri=f"test:///nodes/{name}.xml", cpu_cores=8, cpu_mhz=2400, memory_bytes=GIB
    )


def build_topology(caller: Caller) -> None:
    """Zone eu-west → pod rack-1 → clusters kvm-a (3 hosts) and kvm-b (1 host)."""
    create_zone(caller, "eu-west", dns1="192.0.2.53")
    create_pod(
        caller,
        "eu-west",
        "rack-1",
        gateway="10.1.0.1",
        netmask="255.255.255.0",
        start_ip="10.1.0.10",
        end_ip="10.1.0.99",
    )
    create_cluster(caller, "rack-1", "kvm-a")
    create_cluster(caller, "rack-1", "kvm-b")
    add_hosts(caller, "kvm-a", [_spec(f"a{i}") for i in range(3)])
    add_host(caller, "kvm-b", _spec("b0"))


def run_app(cloud: Cloud, scenario: Callable[[StratusApp, Pilot], Awaitable[None]]) -> None:
    """Run `scenario` against a console on `cloud`, automatic refresh off."""
    config = replace(default_config(), refresh_seconds=0)

    async def main() -> None:
        app = StratusApp(cloud.admin, config)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await settle(app, pilot)
            await open_tree(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())


async def settle(app: StratusApp, pilot: Pilot) -> None:
    """Let workers start, finish, and their messages land (twice: loads start loads)."""
    for _ in range(2):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()


async def open_tree(app: StratusApp, pilot: Pilot) -> None:
    """`:tree`, then expand every level down to the clusters."""
    await pilot.press("colon", *"tree", "enter")
    await settle(app, pilot)
    tree = app.screen.query_one("#topology", Tree)
    for _level in range(2):  # zones, then pods
        for node in list(_walk(tree.root)):
            data = node.data
            if data is not None and data.item is not None and data.kind in ("zone", "pod"):
                node.expand()
        await settle(app, pilot)


def _walk(node):  # type: ignore[no-untyped-def]
    for child in node.children:
        yield child
        yield from _walk(child)


def labels(app: StratusApp) -> dict[str, str]:
    """Every loaded tree node's label by the name of its object."""
    tree = app.screen.query_one("#topology", Tree)
    return {
        node.data.item.name: node.label.plain
        for node in _walk(tree.root)
        if node.data is not None and node.data.item is not None
    }


def toasts(app: StratusApp) -> list[str]:
    return [toast.render().plain for toast in app.screen.query(Toast)]


def test_tree_shows_zones_pods_clusters_and_host_counts(cloud: Cloud) -> None:
    build_topology(cloud.admin)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        shown = labels(app)
        assert set(shown) == {"eu-west", "rack-1", "kvm-a", "kvm-b", "Secondary storage"}
        assert shown["eu-west"].startswith("Zone eu-west (4 hosts, all Up)  CPU ")
        assert shown["rack-1"].startswith("Pod rack-1 (4 hosts, all Up)  CPU ")
        assert shown["kvm-a"].startswith("Cluster kvm-a (3 hosts, all Up)  CPU ")
        assert shown["kvm-b"].startswith("Cluster kvm-b (1 host, all Up)  CPU ")
        # Capacity gauges with numbers: 3 hosts x 8 cores x 2.4 GHz, 3 x 1 GiB.
        assert "CPU ░░░░░░   0% 0 MHz/57.6 GHz" in shown["kvm-a"]
        assert "Mem ░░░░░░   0% 0 B/3.0 GiB" in shown["kvm-a"]
        assert shown["Secondary storage"].startswith("Secondary storage 0 image stores")
        summary = app.screen.query_one("#summary", Static)
        assert "1 zone · 4 hosts · updated " in str(summary.render())

    run_app(cloud, scenario)


def test_r_refreshes_counts_and_states(cloud: Cloud) -> None:
    build_topology(cloud.admin)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        tree = app.screen.query_one("#topology", Tree)
        tree.focus()
        await pilot.press("down", "down", "down")  # eu-west, rack-1, kvm-a
        assert tree.cursor_node is not None and tree.cursor_node.label.plain.startswith(
            "Cluster kvm-a"
        )

        add_host(cloud.admin, "kvm-a", _spec("a3"))
        disable_cluster(cloud.admin, "kvm-b")
        assert "(3 hosts, all Up)" in labels(app)["kvm-a"]  # nothing moves by itself

        await pilot.press("r")
        await settle(app, pilot)
        shown = labels(app)
        assert "(4 hosts, all Up)" in shown["kvm-a"]
        assert "(5 hosts, all Up)" in shown["eu-west"]
        assert tree.cursor_node.label.plain.startswith("Cluster kvm-a")

        # A new cluster changes the level's shape: it is laid out again, the cursor and
        # what was expanded stay.
        create_cluster(cloud.admin, "rack-1", "kvm-0")
        await pilot.press("r")
        await settle(app, pilot)
        assert labels(app)["kvm-0"].startswith("Cluster kvm-0 (0 hosts)")
        assert tree.cursor_node.label.plain.startswith("Cluster kvm-a")
        assert {"eu-west", "rack-1", "kvm-a"} <= set(labels(app))

    run_app(cloud, scenario)


def test_empty_cloud_says_how_to_get_a_demo(cloud: Cloud) -> None:
    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        assert labels(app) == {}
        summary = str(app.screen.query_one("#summary", Static).render())
        assert "No zones yet" in summary and "stratus demo" in summary

    run_app(cloud, scenario)


def test_engine_error_is_a_notification_and_the_app_keeps_running(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_topology(cloud.admin)
    # Square brackets would be markup if the screen did not escape the message.
    message = "database sqlite:////x.db: disk I/O error [b]not bold[/b] [/]"

    def failing(caller: Caller, kind: str, key: str | None = None) -> list:
        raise DatabaseUnavailable(message)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        monkeypatch.setattr(topology_screen, "tree_children", failing)
        await pilot.press("r")
        await settle(app, pilot)
        assert app.is_running
        assert any(message in toast for toast in toasts(app)), toasts(app)
        summary = app.screen.query_one("#summary", Static)
        assert summary.has_class("-error")
        assert message in str(summary.render())
        assert {"eu-west", "rack-1", "kvm-a", "kvm-b"} <= set(labels(app))  # kept, marked

        monkeypatch.undo()
        await pilot.press("r")
        await settle(app, pilot)
        assert not summary.has_class("-error")
        assert "(4 hosts, all Up)" in labels(app)["eu-west"]

    run_app(cloud, scenario)


def test_a_lasting_failure_toasts_once_and_counts_attempts(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_topology(cloud.admin)
    config = replace(default_config(), refresh_seconds=0.05)

    def down(caller: Caller, kind: str, key: str | None = None) -> list:
        raise DatabaseUnavailable("database sqlite:////x.db: unable to open database file")

    async def main() -> None:
        app = StratusApp(cloud.admin, config)
        notified: list[str] = []
        notify = app.notify

        def recording_notify(message: str, **options: object) -> None:
            notified.append(message)
            notify(message, **options)  # type: ignore[arg-type]

        monkeypatch.setattr(app, "notify", recording_notify)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            app.open_view("topology")
            await settle(app, pilot)
            screen = app.screen
            monkeypatch.setattr(topology_screen, "tree_children", down)
            for _ in range(100):
                await pilot.pause(0.05)
                if screen.failures >= 3:
                    break
            assert screen.failures >= 3
            assert len(notified) == 1
            summary = str(screen.query_one("#summary", Static).render())
            assert "not refreshed (since " in summary and " failed): " in summary

            await pilot.press("r")  # asked for: answered with a toast of its own
            for _ in range(100):
                await pilot.pause(0.05)
                if len(notified) == 2:
                    break
            assert len(notified) == 2

    asyncio.run(main())


def test_unexpected_error_points_at_the_log(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(caller: Caller, kind: str, key: str | None = None) -> list:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(topology_screen, "tree_children", broken)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        assert app.is_running
        shown = toasts(app)
        assert any("ZeroDivisionError: division by zero" in t and "stratus.log" in t for t in shown)

    run_app(cloud, scenario)


def test_automatic_refresh_rearms_after_each_load(cloud: Cloud) -> None:
    build_topology(cloud.admin)
    config = replace(default_config(), refresh_seconds=0.05)

    async def main() -> None:
        app = StratusApp(cloud.admin, config)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await open_tree(app, pilot)
            add_host(cloud.admin, "kvm-b", _spec("b1"))
            for _ in range(100):
                await pilot.pause(0.05)
                if "(2 hosts, all Up)" in labels(app)["kvm-b"]:
                    break
            assert "(2 hosts, all Up)" in labels(app)["kvm-b"]

    asyncio.run(main())


def test_every_binding_has_an_id() -> None:
    for owner in (StratusApp, topology_screen.TopologyScreen):
        for binding in owner.BINDINGS:
            assert binding.id, f"{owner.__name__}: binding {binding.key!r} has no id"


FORBIDDEN = ("textual", "tui", "api", "rich")


def _imported_modules(tree: ast.AST) -> list[str]:
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    return modules


def test_engine_never_imports_the_front_ends() -> None:
    files = sorted(ENGINE.rglob("*.py"))
    assert files, f"no engine sources under {ENGINE}"
    offenders = [
        f"{path.relative_to(ENGINE.parent)}: import {module}"
        for path in files
        for module in _imported_modules(ast.parse(path.read_text(), str(path)))
        if module.split(".")[0] in FORBIDDEN
    ]
    assert offenders == [], "the engine is plain Python:\n" + "\n".join(offenders)
