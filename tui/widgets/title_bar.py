"""The title bar: the stock `Header`'s line (icon, centred title — sub-title) as one widget.

`Header` composes three widgets (icon, title, clock space) and four watchers; `TitleBar`
draws the same line itself, which keeps the dashboard's first paint cheap. A click on the
icon opens the command palette, as with the Header.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.content import Content
from textual.widget import Widget

ICON = "⭘"
ICON_WIDTH = 8  # the Header's icon column: padding 0 1 in a width of 8
CLOCK_SPACE = 10  # the Header keeps this much free on the right for its (absent) clock


class TitleBar(Widget):
    DEFAULT_CSS = """
    TitleBar {
        dock: top;
        width: 100%;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    """

    def on_mount(self) -> None:
        for node in (self.app, self.screen):
            self.watch(node, "title", self._retitle, init=False)
            self.watch(node, "sub_title", self._retitle, init=False)

    def _retitle(self, _value: Any = None) -> None:
        self.refresh()

    def title_content(self) -> Content:
        screen, app = self.screen, self.app
        title = screen.title if screen.title is not None else app.title
        sub_title = screen.sub_title if screen.sub_title is not None else app.sub_title
        return app.format_title(title, sub_title)

    def render(self) -> Content:
        # The Header centres its title between the icon column and the clock space.
        middle = max(0, self.size.width - ICON_WIDTH - CLOCK_SPACE)
        title = self.title_content().truncate(middle, ellipsis=True)
        left = (middle - title.cell_length) // 2
        return Content.assemble(f" {ICON}".ljust(ICON_WIDTH) + " " * left, title)

    async def on_click(self, event: events.Click) -> None:
        if event.x < ICON_WIDTH and self.app.ENABLE_COMMAND_PALETTE:
            event.stop()
            await self.run_action("app.command_palette")
