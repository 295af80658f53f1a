"""The Stratus console: a Textual app acting for one caller on one cloud.

The app owns what every screen shares (the caller, the process configuration, global
keys); each screen loads its own data through engine services in thread workers.
"""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from engine.config import Config, default_config
from engine.context import Caller
from engine.db import redacted
from tui.screens.topology import TopologyScreen


class StratusApp(App[None]):
    """The full-screen console. `run()` it; `return_code` is the process's exit status."""

    TITLE = "Stratus"
    CSS_PATH = "stratus.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, caller: Caller, config: Config | None = None) -> None:
        super().__init__()
        self.caller = caller
        self.config = config or default_config()
        where = redacted(caller.db.url)
        self.sub_title = f"{where} · read-only" if self.config.read_only else where

    def get_default_screen(self) -> Screen:
        return TopologyScreen(self.caller, refresh_seconds=self.config.refresh_seconds)
