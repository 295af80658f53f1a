"""Resource tables: a window of rows paged from the engine, sorting, live reconciliation."""

from __future__ import annotations

import asyncio
from typing import Any

from console_support import build, console, freeze_times, go, run_console, settle
from sqlalchemy import update
from sqlmodel import select
from textual.pilot import Pilot
from textual.worker import WorkerState

import tui.screens.resources as resources_screen
from engine.bootstrap import Cloud
from engine.models import Host, VirtualMachine
from tui.app import StratusApp
from tui.screens.resources import CHANGED_STYLE, ResourceScreen


async def quick_settle(app: StratusApp, pilot: Pilot) -> None:
    """After a key: wait for a page fetch if one started, and for its message."""
    while any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
        await asyncio.sleep(0.005)
    await pilot.pause()


def all_names(cloud: Cloud) -> list[str]:
    with cloud.db.read() as session:
        return sorted(session.exec(select(VirtualMachine.name)).all())


def test_scrolling_pages_in_more_rows_and_keeps_a_window(cloud: Cloud, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    build(cloud.admin, hosts=8, vms=40)
    monkeypatch.setattr(resources_screen, "PAGE", 5)
    monkeypatch.setattr(resources_screen, "WINDOW", 15)
    monkeypatch.setattr(resources_screen, "EDGE", 2)
    expected = all_names(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        screen = app.screen
        assert isinstance(screen, ResourceScreen)
        # The first page only.
        assert [r.cells[0] for r in screen.rows] == expected[:5]
        seen = [screen.cursor_row.cells[0]]
        for _ in range(len(expected) - 1):
            await pilot.press("down")
            await quick_settle(app, pilot)
            seen.append(screen.cursor_row.cells[0])
            assert len(screen.rows) <= 15  # never more than the window
        assert seen == expected  # every row, in order, once
        assert screen.more_before and not screen.more_after
        assert screen.table.row_count <= 15

        for _ in range(len(expected) - 1):  # and all the way back up
            await pilot.press("up")
            await quick_settle(app, pilot)
        assert screen.cursor_row.cells[0] == expected[0]
        assert not screen.more_before

        await pilot.press("end")
        await settle(app, pilot)
        assert screen.cursor_row.cells[0] == expected[-1]
        await pilot.press("home")
        await settle(app, pilot)
        assert screen.cursor_row.cells[0] == expected[0]

    run_console(cloud, scenario)


def test_page_down_moves_through_the_window(cloud: Cloud) -> None:
    build(cloud.admin, hosts=16, vms=250)
    expected = all_names(cloud)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        screen = app.screen
        assert len(screen.rows) == 100
        for _ in range(8):
            await pilot.press("pagedown")
            await settle(app, pilot)
        at = screen.cursor_row.cells[0]
        assert expected.index(at) > 100  # past the first page
        assert screen.rows[0].cells[0] in expected
        assert "250 vms" in screen.status_text().plain

    run_console(cloud, scenario)


def test_sorting_by_key_and_header(cloud: Cloud) -> None:
    build(cloud.admin, hosts=3, vms=0)
    with cloud.db.write() as session:
        session.execute(update(Host).where(Host.name == "h1").values(status="Down"))

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "hosts")
        screen = app.screen
        names = lambda: [r.cells[0] for r in screen.rows]  # noqa: E731
        assert names() == ["h0", "h1", "h2"]
        await pilot.press("O")  # reverse
        await settle(app, pilot)
        assert names() == ["h2", "h1", "h0"]
        assert "sort name desc" in screen.status_text().plain
        await pilot.press("o")  # next sortable column: status
        await settle(app, pilot)
        assert screen.sort == "status"
        assert names()[-1] == "h1" or names()[0] == "h1"
        assert [r.cells[1] for r in screen.rows] == sorted(
            (r.cells[1] for r in screen.rows), reverse=screen.descending
        )
        assert str(screen.table.columns["status"].label).startswith("Status ")  # arrow

    run_console(cloud, scenario)


def test_live_refresh_updates_changed_rows_in_place_and_keeps_the_cursor(cloud: Cloud) -> None:
    build(cloud.admin, hosts=4, vms=0)

    async def main() -> None:
        app = console(cloud, refresh_seconds=0.05)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await go(app, pilot, "hosts")
            screen = app.screen
            assert isinstance(screen, ResourceScreen)
            await pilot.press("down", "down")
            assert screen.cursor_row.cells[0] == "h2"
            with cloud.db.write() as session:
                session.execute(update(Host).where(Host.name == "h2").values(status="Down"))
            for _ in range(100):
                await pilot.pause(0.05)
                if screen.cursor_row.cells[1] == "Down":
                    break
            assert screen.cursor_row.cells[1] == "Down"
            assert screen.cursor_row.cells[0] == "h2"  # cursor stayed on its row
            cell = screen.table.get_cell(screen.rows[2].key, "status")
            assert cell.plain == "Down" and cell.style == CHANGED_STYLE  # highlighted

            # A row that goes away: the window is laid out again, the cursor stays on h2.
            with cloud.db.write() as session:
                session.execute(update(Host).where(Host.name == "h0").values(name="h9"))
            for _ in range(100):
                await pilot.pause(0.05)
                if screen.rows[-1].cells[0] == "h9":
                    break
            assert [r.cells[0] for r in screen.rows] == ["h1", "h2", "h3", "h9"]
            assert screen.cursor_row.cells[0] == "h2"

    asyncio.run(main())


def test_status_line_counts_and_says_the_database_answered(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=5)

    async def scenario(app: StratusApp, pilot: Pilot) -> None:
        await go(app, pilot, "vms")
        status = app.screen.status_text().plain
        assert status == (
            "5 vms · rows 1-5 · sort name asc · updated 03:04:05 UTC (refresh off) · database ok"
        )

    run_console(cloud, scenario)


def test_hosts_table_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build(cloud.admin, hosts=6, vms=9)
    with cloud.db.write() as session:
        session.execute(update(Host).where(Host.name == "h3").values(status="Disconnected"))
        session.execute(update(Host).where(Host.name == "h4").values(resource_state="Maintenance"))
    freeze_times(cloud)
    app = console(cloud)

    async def opened(pilot: Pilot[Any]) -> None:
        await settle(app, pilot)
        await go(app, pilot, "hosts")
        await pilot.press("down", "down", "down")  # the cursor on h3

    assert snap_compare(app, terminal_size=(120, 40), run_before=opened)
