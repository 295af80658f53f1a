"""Breadcrumbs: where the operator is, from the first screen to this one."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def crumb_of(screen: object) -> str:
    """A screen's breadcrumb: its `crumb`, else its sub-title or title."""
    for attribute in ("crumb", "sub_title", "title", "TITLE"):
        text = getattr(screen, attribute, None)
        if text:
            return str(text)
    return type(screen).__name__


class Breadcrumbs(Static):
    """`Dashboard > Zones > Pods of zone eu-west`, computed from the screen stack."""

    DEFAULT_CSS = """
    Breadcrumbs {
        height: 1;
        padding: 0 1;
        color: $text-accent;
    }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False)

    def on_mount(self) -> None:
        self.update(self.path())

    def path(self) -> Text:
        stack = list(self.app.screen_stack)
        if self.screen in stack:
            stack = stack[: stack.index(self.screen) + 1]
        else:
            stack.append(self.screen)
        names = [crumb_of(s) for s in stack if not getattr(s, "is_modal", False)]
        text = Text(no_wrap=True, overflow="ellipsis")
        for n, name in enumerate(names):
            if n:
                text.append(" > ", style="dim")
            text.append(name, style="bold" if n == len(names) - 1 else "")
        return text
