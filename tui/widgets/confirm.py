"""The confirmation dialog every destructive or changing action goes through.

`ConfirmDialog(Confirmation(...))` is a modal that dismisses with True (go ahead) or False.
It lists exactly what the action will affect; focus starts on **Cancel**, so Enter pressed
at once (or Esc) changes nothing. An irreversible action names the object the operator
must type (`type_to_confirm`): the confirm button stays disabled until the typed text is
exactly that name. In read-only mode the dialog refuses to open at all (the screens hide
the keys too): it dismisses False and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui.screens.live import is_read_only


@dataclass(frozen=True)
class Confirmation:
    """What an action will do, for the operator to confirm."""

    title: str  # "Remove host a1"
    action: str  # the confirm button's label: "Remove"
    affected: Sequence[str] = field(default_factory=tuple)  # one line per affected object
    warning: str = ""  # "This cannot be undone." ...
    type_to_confirm: str | None = None  # irreversible: the name the operator must type


def affected_list(lines: Sequence[str]) -> Group:
    """ "This will affect:" and one bullet per line; a long line wraps under its text."""
    bullets = Table.grid(padding=(0, 1))
    bullets.add_column(width=3, justify="right")
    bullets.add_column(overflow="fold")
    for line in lines or ("(nothing listed)",):
        bullets.add_row("•", Text(line))
    return Group(Text("This will affect:", style="bold"), bullets)


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="confirm.cancel")]
    DEFAULT_CSS = """
    ConfirmDialog {
        align: center middle;
    }
    ConfirmDialog #confirm-box {
        width: 72;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    ConfirmDialog #confirm-title {
        text-style: bold;
        padding: 0 0 1 0;
    }
    ConfirmDialog #confirm-affected {
        height: auto;
        max-height: 16;
        padding: 0 0 1 0;
    }
    ConfirmDialog #confirm-warning {
        color: $text-warning;
        text-style: bold;
    }
    ConfirmDialog #confirm-name {
        margin: 1 0 0 0;
    }
    ConfirmDialog #confirm-buttons {
        height: auto;
        align-horizontal: right;
        padding: 1 0 0 0;
    }
    ConfirmDialog #confirm-buttons Button {
        margin-left: 2;
    }
    """

    def __init__(self, confirmation: Confirmation) -> None:
        super().__init__()
        self.confirmation = confirmation

    def compose(self) -> ComposeResult:
        spec = self.confirmation
        with Vertical(id="confirm-box"):
            yield Static(Text(spec.title), id="confirm-title")
            yield Static(affected_list(spec.affected), id="confirm-affected")
            if spec.warning:
                yield Static(Text(spec.warning), id="confirm-warning")
            if spec.type_to_confirm is not None:
                yield Static(
                    Text.assemble(
                        "Type ", (spec.type_to_confirm, "bold"), " to confirm (it cannot be undone)"
                    ),
                    id="confirm-type-hint",
                )
                yield Input(placeholder=spec.type_to_confirm, id="confirm-name", compact=True)
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(
                    spec.action,
                    id="confirm",
                    variant="error",
                    disabled=spec.type_to_confirm is not None,
                )

    def on_mount(self) -> None:
        if is_read_only(self.app):
            self.app.notify("Read-only console: nothing can be changed", severity="warning")
            self.dismiss(False)
            return
        self.query_one("#cancel", Button).focus()

    @property
    def confirmable(self) -> bool:
        name = self.confirmation.type_to_confirm
        if name is None:
            return True
        return self.query_one("#confirm-name", Input).value == name

    @on(Input.Changed, "#confirm-name")
    def _name_typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = not self.confirmable

    @on(Input.Submitted, "#confirm-name")
    def _name_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.confirmable:
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if self.confirmable and not is_read_only(self.app):
            self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
