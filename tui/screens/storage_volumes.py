"""Volume actions on the `:vols` table, and `:pools` drilling into a pool's volumes.

- `n` creates a data volume (name, zone, disk offering; a size only for a custom
  offering): `storage.volumes.create_volume`, Allocated at once; refusals next to the field.
- `a` attaches the cursor's volume to a VM: a list of the volume's zone's VMs, the ones
  that cannot take a volume now (neither Running nor Stopped) shown but not choosable;
  an AttachVolume job.
- `d` detaches (a confirmation naming the VM), `r` resizes (size in GiB or a new disk
  offering; the engine refuses to shrink), `ctrl+d` deletes (a volume with a file on
  primary storage asks for its name to be typed), `S` snapshots it (a CreateSnapshot job).
- `ctrl+r` refreshes (`r` is resize here).

Every job is followed on the progress line above the table and in the jobs panel.
None of these keys exist in read-only mode.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.widgets import OptionList, Select
from textual.widgets.option_list import Option

from engine import listing, offerings, topology
from engine.context import Caller
from engine.models import DiskOffering, Volume, Zone
from engine.storage import snapshots, volumes
from tui.screens.forms import GIB, FormField, FormScreen, _gib
from tui.screens.resources import ResourceScreen
from tui.screens.storage_common import StorageScreen
from tui.screens.vm_actions import ChoiceDialog
from tui.widgets.confirm import Confirmation, ConfirmDialog
from tui.widgets.gauge import human_bytes

VOLUME_ACTIONS = {
    "create_volume",
    "attach_volume",
    "detach_volume",
    "resize_volume",
    "delete_volume",
    "snapshot_volume",
}


def offering_label(offering: DiskOffering) -> str:
    if offering.is_customized:
        return f"{offering.name} (custom size)"
    return f"{offering.name} ({human_bytes(offering.disk_size_bytes)})"


class CreateVolumeForm(FormScreen):
    """A data volume: name, zone, disk offering, and a size for a custom offering."""

    NOUN = "volume"
    SIZE = FormField("size", "Size (GiB)", "custom offering: whole GiB", aliases=("size_bytes",))

    def __init__(
        self,
        caller: Caller,
        zones: list[Zone],
        disk_offerings: list[DiskOffering],
        *,
        zone_uuid: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(caller, None, **options)
        self.zones = zones
        self.disk_offerings = [o for o in disk_offerings if o.state == "Active"]
        self.zone_uuid = zone_uuid
        self.created = ""

    def title_text(self) -> str:
        return "Create a data volume (Allocated until attached to a VM)"

    def fields(self) -> list[FormField]:
        zone_names = tuple(z.name for z in self.zones) or ("(no zone)",)
        names = tuple(o.name for o in self.disk_offerings) or ("(no disk offering)",)
        return [
            FormField("name", "Name", "data-1"),
            FormField("zone", "Zone", choices=zone_names),
            FormField("offering", "Disk offering", choices=names, aliases=("disk_offering",)),
            self.SIZE,
        ]

    def on_mount(self) -> None:
        # FormScreen.on_mount runs after this one (Textual calls both): it loads and focuses.
        if self.read_only:
            return
        offering = self.query_one("#input-offering", Select)
        offering.set_options([(offering_label(o), o.name) for o in self.disk_offerings])
        if self.disk_offerings:
            offering.value = self.disk_offerings[0].name
        for zone in self.zones:
            if zone.uuid == self.zone_uuid:
                self.query_one("#input-zone", Select).value = zone.name
        self._show_size()

    def _custom(self) -> bool:
        chosen = self.value_of("offering")
        return any(o.name == chosen and o.is_customized for o in self.disk_offerings)

    def _show_size(self) -> None:
        # The size row (label, input) and its error line: only for a custom offering.
        size = self.query_one("#input-size")
        assert size.parent is not None
        size.parent.display = self._custom()
        if not self._custom():
            self.query_one("#error-size").display = False

    @on(Select.Changed, "#input-offering")
    def _offering_changed(self, _event: Select.Changed) -> None:
        self._show_size()

    def submit(self, values: dict[str, str]) -> str:
        size = _gib(self.SIZE, values["size"]) if self._custom() else None
        volume = volumes.create_volume(
            self.caller,
            values["name"],
            zone=values["zone"],
            disk_offering=values["offering"],
            size_bytes=size,
        )
        self.created = volume.name
        return volume.uuid


class ResizeVolumeForm(FormScreen):
    """A new size (custom offering) or a new, larger disk offering."""

    NOUN = "volume"
    SIZE = FormField("size", "New size (GiB)", "larger than now", aliases=("size_bytes",))
    FIELDS = [
        SIZE,
        FormField("offering", "Or disk offering", "optional: a larger fixed-size offering"),
    ]

    def __init__(self, caller: Caller, volume_uuid: str, name: str, size: str, **options: Any):
        super().__init__(caller, None, **options)
        self.volume_uuid, self.volume_name, self.current_size = volume_uuid, name, size
        self.result: Any = None

    def title_text(self) -> str:
        return f"Resize volume {self.volume_name} (now {self.current_size}; it can only grow)"

    def submit(self, values: dict[str, str]) -> str:
        offering = values["offering"].strip() or None
        size = None if offering else _gib(self.SIZE, values["size"])
        self.result = volumes.resize_volume(
            self.caller, self.volume_uuid, size_bytes=size, disk_offering=offering
        )
        return self.volume_uuid


class AttachDialog(ChoiceDialog):
    """The VMs of the volume's zone; dismisses with (vm uuid, vm name) or None."""

    def __init__(self, caller: Caller, volume_uuid: str) -> None:
        super().__init__(caller, "")
        self.volume_uuid = volume_uuid

    def fetch(self) -> tuple[Volume, list[listing.Row]]:
        volume = volumes.get_volume(self.caller, self.volume_uuid)
        zone = next(z for z in topology.list_zones(self.caller) if z.id == volume.zone_id)
        page = listing.list_page(
            self.caller, "vms", scope={"zone": zone.uuid}, limit=listing.MAX_PAGE
        )
        return volume, page.rows

    def fill(self, data: tuple[Volume, list[listing.Row]]) -> tuple[str, list[Option], str]:
        volume, rows = data
        view = listing.view_named("vms")
        state_at = [c.id for c in view.columns].index("state")
        host_at = [c.id for c in view.columns].index("host")
        options = []
        for row in rows:
            state = row.cells[state_at]
            can = state in volumes.ATTACHABLE_VM_STATES
            line = Text("✓ " if can else "✗ ", style="bold green" if can else "bold red")
            line.append(f"{row.cells[0]:<24}", style="bold")
            line.append(f" {state:<10} host {row.cells[host_at] or '-'}")
            if not can:
                line.append(f"  ({state}: a volume attaches to a Running or Stopped VM)")
            options.append(Option(line, id=row.key, disabled=not can))
        title = (
            f"Attach volume {volume.name} ({human_bytes(volume.size_bytes)}, {volume.state}) "
            f"to a VM of its zone: {sum(not o.disabled for o in options)} of {len(rows)} can"
        )
        note = (
            "Enter attaches it to the highlighted VM (a running VM gets it hot-plugged)"
            if rows
            else "No VM in the volume's zone."
        )
        return title, options, note

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        _volume, rows = self.data
        for row in rows:
            if row.key == event.option.id and not event.option.disabled:
                self.dismiss((row.key, row.cells[0]))


class VolumesScreen(StorageScreen):
    """The volumes table with create, attach, detach, resize, delete and snapshot."""

    ACTIONS = VOLUME_ACTIONS
    ROWLESS = {"create_volume"}
    BINDINGS = [
        Binding("n", "create_volume", "Create", id="volume.create"),
        Binding("a", "attach_volume", "Attach", id="volume.attach"),
        Binding("d", "detach_volume", "Detach", id="volume.detach"),
        Binding("r", "resize_volume", "Resize", id="volume.resize"),
        Binding("ctrl+d", "delete_volume", "Delete", id="volume.delete"),
        Binding("S", "snapshot_volume", "Snapshot", id="volume.snapshot"),
    ]

    # --- create ----------------------------------------------------------------------------

    def action_create_volume(self) -> None:
        if not self.may_act(row=False):
            return
        caller = self.caller

        def choices() -> tuple[list[Zone], list[DiskOffering]]:
            return topology.list_zones(caller), offerings.list_disk_offerings(caller)

        def show(data: tuple[list[Zone], list[DiskOffering]]) -> None:
            zones, disk_offerings = data
            form = CreateVolumeForm(caller, zones, disk_offerings, zone_uuid=self.scope.get("zone"))

            def done(uuid: str | None) -> None:
                if uuid:
                    self.notify(f"volume {form.created} created (Allocated)", title="Volume")
                    self.load(mode="refresh")

            self.app.push_screen(form, done)

        self.run_then(choices, show, what="Reading zones and disk offerings")

    # --- attach / detach -------------------------------------------------------------------

    def action_attach_volume(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        caller, uuid, name = self.caller, cells["uuid"], cells["name"]
        self.choose_then_follow(
            AttachDialog(caller, uuid),
            lambda vm: volumes.attach_volume(caller, uuid, vm),
            lambda vm: f"Attach volume {name} to VM {vm}",
        )

    def action_detach_volume(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        if not cells["vm"]:
            self.notify(f"volume {cells['name']} is not attached", severity="warning")
            return
        caller, uuid, name = self.caller, cells["uuid"], cells["name"]
        confirmation = Confirmation(
            title=f"Detach volume {name} from VM {cells['vm']}?",
            action="Detach",
            affected=[
                f"volume {name} ({cells['type']}, {cells['size']}, {cells['state']}, "
                f"pool {cells['pool'] or '-'})",
                f"VM {cells['vm']} loses this disk (unplugged if it runs)",
            ],
            warning="The data stays on the volume; the guest must not be using the disk.",
        )
        self.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: (
                self.follow(
                    lambda: volumes.detach_volume(caller, uuid),
                    f"Detach volume {name} from VM {cells['vm']}",
                )
                if yes
                else None
            ),
        )

    # --- resize, delete, snapshot ----------------------------------------------------------

    def action_resize_volume(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        form = ResizeVolumeForm(self.caller, cells["uuid"], cells["name"], cells["size"])

        def done(uuid: str | None) -> None:
            if not uuid:
                return
            result = form.result  # a ResizeVolume job, or the Volume grown at once
            grown = human_bytes(getattr(result, "size_bytes", 0))
            self.follow(
                lambda: result,
                f"Resize volume {cells['name']}",
                at_once=f"volume {cells['name']} is now {grown} (it has no file yet)",
            )

        self.app.push_screen(form, done)

    def action_delete_volume(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        caller, uuid, name = self.caller, cells["uuid"], cells["name"]
        has_data = bool(cells["pool"])  # a file on primary storage: its data goes too
        affected = [
            f"volume {name} ({cells['type']}, {cells['size']}, {cells['state']})",
            f"its file on primary storage {cells['pool']} is removed and the space given back"
            if has_data
            else "it was never attached: it has no file yet",
        ]
        if cells["vm"]:
            affected.append(
                f"it is attached to VM {cells['vm']}: the engine refuses until detached"
            )
        confirmation = Confirmation(
            title=f"Delete volume {name}?",
            action="Delete",
            affected=affected,
            warning="Its data is lost." if has_data else "",
            type_to_confirm=name if has_data else None,
        )
        self.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: (
                self.follow(
                    lambda: volumes.delete_volume(caller, uuid),
                    f"Delete volume {name}",
                    at_once=f"volume {name} deleted",
                )
                if yes
                else None
            ),
        )

    def action_snapshot_volume(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        caller, uuid = self.caller, cells["uuid"]
        self.follow(
            lambda: snapshots.create_snapshot(caller, uuid), f"Snapshot of volume {cells['name']}"
        )


class PoolsScreen(ResourceScreen):
    """Primary storage with its capacity; Enter (or `d`) lists the pool's volumes."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "details":
            return True
        return super().check_action(action, parameters)

    def action_details(self) -> None:
        row = self.cursor_row
        opener = getattr(self.app, "open_view", None)
        if row is None or opener is None:
            return
        opener(
            "vols",
            scope={"pool": row.key},
            scope_label=f"storage pool {row.cells[0]}",
            jump=False,
        )


__all__ = ["GIB", "PoolsScreen", "VolumesScreen"]
