"""Template and ISO actions on the `:templates` table.

- `n` registers a template or ISO from a file on the management server (administrators
  only: name, zone, format QCOW2 / RAW / ISO, OS type, absolute path, optional checksum):
  `storage.templates.submit_register_template`; what can be checked before copying is
  refused next to the field, the RegisterTemplate job's progress shows on the progress line.
- `y` copies the cursor's template to another zone: the zones, those that already hold a
  copy (Ready or being copied) shown but not choosable; a CopyTemplate job whose progress
  shows on the progress line and in the jobs panel.
- `ctrl+d` deletes it from every zone after a confirmation listing the zones' copies (its
  name typed); the engine refuses, naming the VMs and volumes that use it.
- Enter (or `d`) lists its copies per zone, with state and progress.

Read-only mode has none of the changing keys.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events, on
from textual.binding import Binding
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from engine import topology
from engine.context import Caller
from engine.models import ImageStore, Template, TemplateState, TemplateStoreRef, Zone
from engine.storage import templates
from tui.screens.forms import FormField, FormScreen
from tui.screens.storage_common import StorageScreen
from tui.screens.vm_actions import ChoiceDialog
from tui.widgets.confirm import Confirmation, ConfirmDialog
from tui.widgets.gauge import human_bytes

TEMPLATE_ACTIONS = {"register_template", "copy_template", "delete_template"}
FORMATS = ("QCOW2", "RAW", "ISO")


class Copies:
    """A template, its copies (with the zone each is in) and every zone."""

    def __init__(self, caller: Caller, template_uuid: str) -> None:
        self.template: Template = templates.get_template(caller, template_uuid)
        pairs = templates.template_copies(caller, template_uuid)
        self.zones: list[Zone] = topology.list_zones(caller)
        names = {z.id: z.name for z in self.zones}
        self.copies: list[tuple[str, TemplateStoreRef, ImageStore]] = [
            (names.get(store.zone_id, str(store.zone_id)), ref, store) for ref, store in pairs
        ]

    def in_zone(self, zone: Zone) -> list[TemplateStoreRef]:
        return [ref for _name, ref, store in self.copies if store.zone_id == zone.id]

    def lines(self) -> list[str]:
        return [copy_line(zone, ref, store) for zone, ref, store in self.copies]


def copy_line(zone: str, ref: TemplateStoreRef, store: ImageStore) -> str:
    line = f"zone {zone}: image store {store.name}, {ref.state}"
    if ref.state == TemplateState.DOWNLOADING:
        line += f" {ref.progress}%"
    if ref.physical_size_bytes:
        line += f", {human_bytes(ref.physical_size_bytes)}"
    if ref.error:
        line += f" ({ref.error})"
    return line


class RegisterTemplateForm(FormScreen):
    """Register a template or ISO from a file on this management server."""

    NOUN = "template"

    def __init__(self, caller: Caller, zones: list[Zone], **options: Any) -> None:
        super().__init__(caller, None, **options)
        self.zones = zones
        self.job: Any = None

    def title_text(self) -> str:
        return "Register a template or ISO from a file on the management server"

    def fields(self) -> list[FormField]:
        return [
            FormField("name", "Name", "debian-12"),
            FormField("zone", "Zone", choices=tuple(z.name for z in self.zones) or ("-",)),
            FormField("format", "Format", choices=FORMATS),
            FormField("os_type", "OS type", "Other Linux (64-bit)"),
            FormField(
                "path", "File (absolute path)", "/srv/images/debian-12.qcow2", aliases=("source",)
            ),
            FormField("checksum", "Checksum", "optional: sha256:<hex> or md5 hex"),
        ]

    def submit(self, values: dict[str, str]) -> str:
        iso = values["format"] == "ISO"
        self.job = templates.submit_register_template(
            self.caller,
            values["name"],
            zone=values["zone"],
            path=values["path"].strip(),
            iso=iso,
            format=None if iso else values["format"],
            os_type=values["os_type"].strip() or None,
            checksum=values["checksum"].strip() or None,
        )
        return str(self.job.uuid)


class CopyDialog(ChoiceDialog):
    """The zones to copy a template to; dismisses with (zone uuid, zone name) or None."""

    def __init__(self, caller: Caller, template_uuid: str) -> None:
        super().__init__(caller, "")
        self.template_uuid = template_uuid

    def fetch(self) -> Copies:
        return Copies(self.caller, self.template_uuid)

    def fill(self, data: Copies) -> tuple[str, list[Option], str]:
        options = []
        for zone in data.zones:
            refs = data.in_zone(zone)
            held = [r for r in refs if r.state in (TemplateState.READY, TemplateState.DOWNLOADING)]
            line = Text("✗ " if held else "✓ ", style="bold red" if held else "bold green")
            line.append(f"{zone.name:<20}", style="bold")
            if held:
                ref = held[0]
                progress = f" {ref.progress}%" if ref.state == TemplateState.DOWNLOADING else ""
                line.append(f" has a copy: {ref.state}{progress}")
            elif refs:
                line.append(f" an earlier copy ended {refs[0].state}: copy again")
            else:
                line.append(" no copy yet")
            options.append(Option(line, id=zone.uuid, disabled=bool(held)))
        template = data.template
        title = (
            f"Copy {'ISO' if template.format == 'ISO' else 'template'} {template.name} "
            f"({human_bytes(template.size_bytes)}) to zone:"
        )
        free = sum(not o.disabled for o in options)
        note = (
            "Enter copies it to the highlighted zone's image store (checksum verified)"
            if free
            else "Every zone already has a copy."
        )
        return title, options, note

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        for zone in self.data.zones:
            if zone.uuid == event.option.id and not event.option.disabled:
                self.dismiss((zone.uuid, zone.name))


class CopiesDialog(ChoiceDialog):
    """A template's copies per zone: state, progress, size (Esc closes)."""

    def __init__(self, caller: Caller, template_uuid: str) -> None:
        super().__init__(caller, "")
        self.template_uuid = template_uuid

    def fetch(self) -> Copies:
        return Copies(self.caller, self.template_uuid)

    def fill(self, data: Copies) -> tuple[str, list[Option], str]:
        t = data.template
        title = (
            f"{'ISO' if t.format == 'ISO' else 'Template'} {t.name}: {t.state}, {t.format}, "
            f"{t.os_type}, {human_bytes(t.size_bytes)}"
        )
        options = [Option(Text(line)) for line in data.lines()]
        if not options:
            options = [Option(Text("no copy in any zone"), disabled=True)]
        return title, options, "Esc closes; y copies it to another zone"

    def on_mount(self, event: events.Mount) -> None:
        # Showing copies changes nothing: allowed in read-only mode too, so not
        # ChoiceDialog's on_mount (which refuses read-only) after this one.
        event.prevent_default()
        self.query_one("#choice-list", OptionList).focus()
        self.run_then(self.fetch, self._loaded, what="Loading")


class TemplatesScreen(StorageScreen):
    """The templates and ISOs table with register, copy to a zone, delete and copies."""

    ACTIONS = TEMPLATE_ACTIONS
    ROWLESS = {"register_template"}
    BINDINGS = [
        Binding("n", "register_template", "Register", id="template.register"),
        Binding("y", "copy_template", "Copy to zone", id="template.copy"),
        Binding("ctrl+d", "delete_template", "Delete", id="template.delete"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "register_template" and not self.caller.is_admin:
            return False  # a file on the management server: administrators only
        if action == "details":
            return self.cursor_row is not None
        return super().check_action(action, parameters)

    def action_details(self) -> None:
        row = self.cursor_row
        if row is not None:
            self.app.push_screen(CopiesDialog(self.caller, row.key))

    def action_register_template(self) -> None:
        if not self.may_act(row=False) or not self.caller.is_admin:
            return
        caller = self.caller

        def show(zones: list[Zone]) -> None:
            form = RegisterTemplateForm(caller, zones)

            def done(uuid: str | None) -> None:
                if uuid:
                    job = form.job
                    self.follow(lambda: job, f"Register {job.resource_name}")

            self.app.push_screen(form, done)

        self.run_then(lambda: topology.list_zones(caller), show, what="Reading the zones")

    def action_copy_template(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        caller, uuid, name = self.caller, cells["uuid"], cells["name"]
        self.choose_then_follow(
            CopyDialog(caller, uuid),
            lambda zone: templates.copy_template(caller, uuid, zone),
            lambda zone: f"Copy {name} to zone {zone}",
        )

    def action_delete_template(self) -> None:
        cells = self._cursor()
        if cells is None:
            return
        caller, uuid, name = self.caller, cells["uuid"], cells["name"]

        def confirm(data: Copies) -> None:
            kind = "ISO" if data.template.format == "ISO" else "template"
            confirmation = Confirmation(
                title=f"Delete {kind} {name} from every zone?",
                action="Delete",
                affected=[
                    f"{kind} {name} ({cells['format']}, {cells['size']}, {cells['state']})",
                    *(data.lines() or ["no copy in any zone"]),
                ],
                warning="Its files are removed from every image store; VMs or volumes "
                "using it make the engine refuse.",
                type_to_confirm=name,
            )
            self.app.push_screen(
                ConfirmDialog(confirmation),
                lambda yes: (
                    self.follow(
                        lambda: templates.delete_template(caller, uuid),
                        f"Delete {kind} {name}",
                        at_once=f"{kind} {name} deleted from every zone",
                    )
                    if yes
                    else None
                ),
            )

        self.run_then(lambda: Copies(caller, uuid), confirm, what="Reading its copies")
