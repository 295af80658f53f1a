"""What the console operation tests share: waiting for a condition, the job runner, a
confirmation dialog's state, and a few engine reads."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

from rich.console import Console
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Button, Static

from engine.bootstrap import Cloud
from engine.models import Host
from tui.app import StratusApp
from tui.widgets.confirm import ConfirmDialog


async def wait_for(pilot: Pilot, ready: Callable[[], bool], what: str, seconds: float = 20) -> None:
    """Let the app run until `ready()` (a job is followed by timers, not one worker)."""
    for _ in range(int(seconds / 0.05)):
        if ready():
            await pilot.pause()  # and let the screen catch up with what made it ready
            return
        await pilot.pause(0.05)
    assert ready(), f"timed out waiting for {what}"


async def runner_started(app: StratusApp, pilot: Pilot) -> None:
    await wait_for(pilot, lambda: app.runner is not None, "the console's job runner")


def dialog(app: StratusApp) -> ConfirmDialog:
    screen = app.screen
    assert isinstance(screen, ConfirmDialog), f"no confirmation dialog: {type(screen).__name__}"
    return screen


def confirm_enabled(app: StratusApp) -> bool:
    return not dialog(app).query_one("#confirm", Button).disabled


def hosts(cloud: Cloud) -> dict[str, Host]:
    with cloud.db.read() as session:
        return {h.name: h for h in session.exec(select(Host))}


def idle(app: StratusApp) -> bool:
    return not any(w.state.name in ("PENDING", "RUNNING") for w in app.workers) and not (
        getattr(app.screen, "following", lambda: 0)()
    )


async def pause(seconds: float = 0.2) -> None:
    await asyncio.sleep(seconds)


def affected(app: StratusApp) -> str:
    """What the open confirmation dialog lists, as plain text (one line per bullet)."""
    box = dialog(app).query_one("#confirm-affected", Static)
    console = Console(width=400, record=True, file=io.StringIO())
    console.print(box.content)
    return console.export_text()
