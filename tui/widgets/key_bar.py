"""The key hint bar: the current screen's shown keys on one line, as one widget.

Textual's `Footer` mounts one `FooterKey` widget per binding and restyles each of them
whenever the bindings change (every focus move); on the dashboard that was about a
quarter of the first paint. `KeyBar` draws the same hints (key, description, disabled
keys dimmed, the command palette key on the right) as a single line of text, recomputed
from `screen.active_bindings` when the screen says its bindings changed. A click on a
key presses it, as with the Footer.
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget

DIM = Style(dim=True)


class KeyBar(Widget):
    """`q Quit  : Go to  ? Help  r Refresh …                          ^p palette`."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description", "key-bar--rule"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    KeyBar > .key-bar--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeyBar > .key-bar--rule {
        color: $foreground 20%;
    }
    KeyBar > .key-bar--description {
        color: $footer-description-foreground;
        background: $footer-description-background;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # (key shown, description, key to press, enabled) per shown binding, and the
        # command palette's entry (drawn on the right).
        self._keys: list[tuple[str, str, str, bool]] = []
        self._palette: tuple[str, str, str, bool] | None = None
        # Columns of each drawn key, for clicks: (first, past the last, key, enabled).
        self._spans: list[tuple[int, int, str, bool]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._bindings_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[Any]) -> None:
        if not self.is_attached or screen is not self.screen:
            return
        keys, palette = self._shown_keys()
        if (keys, palette) != (self._keys, self._palette):
            self._keys, self._palette = keys, palette
            self.refresh()

    def _shown_keys(
        self,
    ) -> tuple[list[tuple[str, str, str, bool]], tuple[str, str, str, bool] | None]:
        """One entry per action (like Footer: the first key bound to it), in binding order."""
        app = self.app
        active = self.screen.active_bindings
        keys: list[tuple[str, str, str, bool]] = []
        seen: set[str] = set()
        for _node, binding, enabled, _tooltip in active.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            keys.append((app.get_key_display(binding), binding.description, binding.key, enabled))
        palette = None
        if app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING in active:
            _node, binding, enabled, _tooltip = active[app.COMMAND_PALETTE_BINDING]
            palette = (app.get_key_display(binding), binding.description, binding.key, enabled)
        return keys, palette

    def _entry(
        self, text: Text, entry: tuple[str, str, str, bool], *, palette: bool = False
    ) -> None:
        shown, description, key, enabled = entry
        dim = Style() if enabled else DIM
        key_style = self.get_component_rich_style("key-bar--key") + dim
        description_style = self.get_component_rich_style("key-bar--description") + dim
        start = len(text)
        if palette:  # "^p palette " against the rule
            text.append(shown, style=key_style)
            text.append(f" {description} ", style=description_style)
        else:  # " q Quit "
            text.append(f" {shown} ", style=key_style)
            if description:
                text.append(f"{description} ", style=description_style)
        self._spans.append((start, len(text), key, enabled))

    def render(self) -> Text:
        self._spans = []
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for entry in self._keys:
            self._entry(text, entry)
        if self._palette is not None:
            # Right-aligned after a thin rule, as the Footer draws it.
            right = Text("▏", style=self.get_component_rich_style("key-bar--rule"), end="")
            spans_before = len(self._spans)
            self._entry(right, self._palette, palette=True)
            gap = self.size.width - len(text) - len(right)
            if gap >= 1:
                offset = len(text) + gap
                text.append(" " * gap)
                text.append_text(right)
                self._spans[spans_before:] = [
                    (first + offset, last + offset, key, enabled)
                    for first, last, key, enabled in self._spans[spans_before:]
                ]
            else:
                del self._spans[spans_before:]
        return text

    def on_click(self, event: events.Click) -> None:
        for first, last, key, enabled in self._spans:
            if first <= event.x < last:
                if enabled:
                    self.app.simulate_key(key)
                else:
                    self.app.bell()
                return

    def keys(self) -> list[str]:
        """The descriptions shown, in order."""
        return [description for _shown, description, _key, _e in self._keys]
