"""The dashboard's one-widget title bar and key bar: what they show, follow and do."""

from __future__ import annotations

import asyncio
from typing import Any

from screens_support import ScreenApp, build_world, frozen_clock, settle
from textual.pilot import Pilot

from engine.bootstrap import Cloud
from tui.screens.dashboard import DashboardScreen, ZonePanel
from tui.widgets.key_bar import KeyBar
from tui.widgets.title_bar import TitleBar


def run(cloud: Cloud, scenario: Any) -> None:
    async def main() -> None:
        app = ScreenApp(lambda: DashboardScreen(cloud.admin, refresh_seconds=0, clock=frozen_clock))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())


def line(widget: Any) -> str:
    return "".join(strip.text for strip in widget.render_lines(widget.region.reset_offset))


def test_key_bar_shows_the_keys_of_what_has_focus(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        bar = app.screen.query_one(KeyBar)
        assert bar.keys() == ["Refresh"]
        assert line(bar).startswith(" r Refresh ")
        assert line(bar).rstrip().endswith("▏^p palette")
        app.screen.query_one(ZonePanel).focus()
        await pilot.pause()
        assert bar.keys() == ["Zone details", "Refresh"]
        assert line(bar).startswith(" ⏎ Zone details  r Refresh ")

    run(cloud, scenario)


def test_a_click_on_a_key_presses_it(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        loads = screen.loads
        bar = screen.query_one(KeyBar)
        await pilot.click(bar, offset=(3, 0))  # on "Refresh"
        await settle(app, pilot)
        assert screen.loads == loads + 1
        await pilot.click(bar, offset=(60, 0))  # the gap between the keys: nothing
        await settle(app, pilot)
        assert screen.loads == loads + 1

    run(cloud, scenario)


def test_title_bar_centres_the_title_and_follows_it(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        bar = app.screen.query_one(TitleBar)
        shown = line(bar)
        assert shown.startswith(" ⭘")
        # Centred between the icon column (8) and the clock space (10), as the Header does.
        assert shown.index("Dashboard") == 8 + (120 - 8 - 10 - len("Dashboard")) // 2
        app.screen.sub_title = "eu-west"
        await pilot.pause()
        assert "Dashboard — eu-west" in line(bar)

    run(cloud, scenario)
