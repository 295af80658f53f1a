"""The `:` command line: type a view's name or alias, Tab or → completes, Enter jumps.

A modal docked at the bottom, k9s style. It dismisses with what was typed (None on Esc);
the app decides what the words mean. ↑ and ↓ walk through earlier commands.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui.navigation import ViewSuggester, completions


class CommandLine(ModalScreen[str | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="command.cancel"),
        Binding("up", "history(-1)", "Earlier", show=False, id="command.earlier"),
        Binding("down", "history(1)", "Later", show=False, id="command.later"),
        Binding("tab", "complete", "Complete", show=False, id="command.complete"),
    ]
    DEFAULT_CSS = """
    CommandLine {
        align: left bottom;
        background: $background 30%;
    }
    CommandLine #command-box {
        dock: bottom;
        height: auto;
        background: $surface;
    }
    CommandLine #command-hint {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    CommandLine Input {
        border: tall $accent;
    }
    """

    def __init__(self, history: list[str] | None = None) -> None:
        super().__init__()
        self.history = history if history is not None else []
        self._at = len(self.history)

    def compose(self) -> ComposeResult:
        from textual.containers import Vertical

        with Vertical(id="command-box"):
            yield Static(
                "views: " + " ".join(completions()[:16]) + " …",
                id="command-hint",
                markup=False,
            )
            yield Input(
                placeholder=":view  (Tab completes, Enter goes, Esc cancels)",
                suggester=ViewSuggester(),
                id="command-input",
            )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip().lstrip(":").strip()
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_complete(self) -> None:
        box = self.query_one(Input)
        if box._suggestion:  # the suggester's proposal, shown greyed after the cursor
            box.value = box._suggestion
            box.cursor_position = len(box.value)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._at = max(0, min(len(self.history), self._at + step))
        box = self.query_one(Input)
        box.value = self.history[self._at] if self._at < len(self.history) else ""
        box.cursor_position = len(box.value)
