"""`?`: every key of the current view, with what it does and its id for the keymap."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


@dataclass(frozen=True)
class KeyHelp:
    keys: str
    description: str
    binding_id: str
    where: str
    enabled: bool = True


class HelpPanel(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]
    DEFAULT_CSS = """
    HelpPanel {
        align: center middle;
    }
    HelpPanel #help-box {
        width: 90;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    HelpPanel #help-title {
        text-style: bold;
    }
    HelpPanel DataTable {
        height: auto;
        max-height: 30;
    }
    """

    def __init__(self, view: str, keys: list[KeyHelp]) -> None:
        super().__init__()
        self.view = view
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(f"Keys of {self.view}", id="help-title", markup=False)
            table: DataTable[str] = DataTable(cursor_type="row", id="help-keys")
            table.add_columns("Key", "Does", "Keymap id", "Of")
            for item in self.keys:
                does = item.description if item.enabled else f"{item.description} (not now)"
                table.add_row(item.keys, does, item.binding_id, item.where)
            yield table
            yield Static(
                ":view jumps to a view (Tab completes) · ctrl+p command palette · "
                'remap keys in stratus.toml [keymap] <id> = "<keys>"',
                markup=False,
            )

    def action_close(self) -> None:
        self.dismiss(None)
