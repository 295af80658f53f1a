"""Snapshot actions on the `:snapshots` table.

- `n` / `S` snapshot a volume picked from a list (only Ready volumes on primary storage
  can be chosen; the engine refuses one whose VM runs): a CreateSnapshot job.
- `R` reverts the cursor's snapshot onto its volume, after a confirmation saying the
  volume's current data is replaced: a RevertSnapshot job.
- `ctrl+d` deletes the snapshot (its name typed): a DeleteSnapshot job.
- `T` makes a template from it (name, OS type): a CreateTemplate job.

Jobs are followed on the progress line and in the jobs panel; read-only mode has none of
these keys.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine import listing
from engine.context import Caller
from engine.models import VolumeState
from engine.storage import snapshots
from tui.screens.forms import FormField, FormScreen
from tui.screens.storage_common import StorageScreen
from tui.screens.vm_actions import ChoiceDialog
from tui.widgets.confirm import Confirmation, ConfirmDialog

SNAPSHOT_ACTIONS = {"create_snapshot", "revert_snapshot", "delete_snapshot", "template_from"}


class PickVolumeDialog(ChoiceDialog):
    """The volumes (of the screen's zone, if scoped); dismisses with (uuid, name) or None."""

    def __init__(self, caller: Caller, scope: dict[str, str] | None = None) -> None:
        super().__init__(caller, "")
        self.scope = {k: v for k, v in (scope or {}).items() if k == "zone"}

    def fetch(self) -> list[listing.Row]:
        page = listing.list_page(
            self.caller, "vols", scope=self.scope or None, limit=listing.MAX_PAGE
        )
        return page.rows

    def fill(self, data: list[listing.Row]) -> tuple[str, list[Option], str]:
        ids = [c.id for c in listing.view_named("vols").columns]
        options = []
        for row in data:
            cells = dict(zip(ids, row.cells, strict=True))
            can = cells["state"] == VolumeState.READY and bool(cells["pool"])
            line = Text("✓ " if can else "✗ ", style="bold green" if can else "bold red")
            line.append(f"{cells['name']:<24}", style="bold")
            line.append(f" {cells['type']:<9} {cells['state']:<12} {cells['size']:>10}")
            line.append(f"  VM {cells['vm'] or '-'}")
            if not can:
                line.append("  (not Ready on primary storage)")
            options.append(Option(line, id=row.key, disabled=not can))
        title = f"Snapshot which volume? {sum(not o.disabled for o in options)} can be"
        note = "Enter snapshots the highlighted volume to secondary storage (its VM stopped)"
        return title, options, note

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        for row in self.data:
            if row.key == event.option.id and not event.option.disabled:
                self.dismiss((row.key, row.cells[0]))


class TemplateFromSnapshotForm(FormScreen):
    """A template made from a snapshot: its name and OS type."""

    NOUN = "template"
    FIELDS = [
        FormField("name", "Template name", "web-golden"),
        FormField("os_type", "OS type", "Other Linux (64-bit)"),
    ]

    def __init__(self, caller: Caller, snapshot_uuid: str, snapshot_name: str, **options: Any):
        super().__init__(caller, None, **options)
        self.snapshot_uuid, self.snapshot_name = snapshot_uuid, snapshot_name
        self.job: Any = None

    def title_text(self) -> str:
        return f"Make a template from snapshot {self.snapshot_name}"

    def submit(self, values: dict[str, str]) -> str:
        os_type = values["os_type"].strip()
        options = {"os_type": os_type} if os_type else {}  # empty: the engine's default
        self.job = snapshots.create_template_from(
            self.caller, values["name"], snapshot=self.snapshot_uuid, **options
        )
        return str(self.job.uuid)


class SnapshotsScreen(StorageScreen):
    """The snapshots table with create, revert, delete and template-from."""

    ACTIONS = SNAPSHOT_ACTIONS
    ROWLESS = {"create_snapshot"}
    BINDINGS = [
        Binding("n", "create_snapshot", "Snapshot a volume", id="snapshot.create"),
        Binding("S", "create_snapshot", "Snapshot a volume", id="snapshot.create_s", show=False),
        Binding("R", "revert_snapshot", "Revert", id="snapshot.revert"),
        Binding("ctrl+d", "delete_snapshot", "Delete", id="snapshot.delete"),
        Binding("T", "template_from", "Make template", id="snapshot.template"),
    ]

    def action_create_snapshot(self) -> None:
        if not self.may_act(row=False):
            return
        caller = self.caller
        self.choose_then_follow(
            PickVolumeDialog(caller, self.scope),
            lambda volume: snapshots.create_snapshot(caller, volume),
            lambda volume: f"Snapshot of volume {volume}",
        )

    def action_revert_snapshot(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        caller, uuid, name = self.caller, cells["uuid"], cells["name"]
        confirmation = Confirmation(
            title=f"Revert volume {cells['volume']} to snapshot {name}?",
            action="Revert",
            affected=[
                f"volume {cells['volume']}: its current data is replaced by the snapshot's",
                f"snapshot {name} ({cells['state']}, {cells['size']}, taken {cells['created']})",
            ],
            warning="Whatever was written to the volume since the snapshot is lost.",
        )
        self.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: (
                self.follow(
                    lambda: snapshots.revert_snapshot(caller, uuid),
                    f"Revert volume {cells['volume']} to snapshot {name}",
                )
                if yes
                else None
            ),
        )

    def action_delete_snapshot(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        caller, uuid, name = self.caller, cells["uuid"], cells["name"]
        confirmation = Confirmation(
            title=f"Delete snapshot {name}?",
            action="Delete",
            affected=[
                f"snapshot {name} of volume {cells['volume']} ({cells['state']}, "
                f"{cells['stored']} on secondary storage)",
                "its file is removed: the volume can no longer be reverted to it",
            ],
            warning="This cannot be undone.",
            type_to_confirm=name,
        )
        self.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: (
                self.follow(lambda: snapshots.delete_snapshot(caller, uuid), f"Delete {name}")
                if yes
                else None
            ),
        )

    def action_template_from(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        form = TemplateFromSnapshotForm(self.caller, cells["uuid"], cells["name"])

        def done(uuid: str | None) -> None:
            if uuid:
                job = form.job
                self.follow(lambda: job, f"Template from snapshot {cells['name']}")

        self.app.push_screen(form, done)
