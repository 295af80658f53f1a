"""Forms to add and edit zones, pods, clusters, hosts, primary and secondary storage, and
to set a setting.

Each form is a modal that dismisses with the UUID of the object it created or changed
(a setting form: the setting's name), or None when cancelled. Validation is the engine's:
the form calls the topology or settings service in a thread worker, and a `StratusError`
comes back to the input its `field` names (or to the form's error line when no input
holds that field). A rejected form keeps everything typed. Read-only mode refuses to open
a form at all (the app hides the keys too).

The forms convert only their own units (GiB to bytes) and empty optional inputs (None);
everything else goes to the engine as typed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from engine import settings as settings_service
from engine import topology
from engine.context import Caller
from engine.errors import InvalidParameter, StratusError
from tui.screens.live import failure_message, is_read_only

GIB = 2**30


@dataclass(frozen=True)
class FormField:
    """One input. `name` is the engine's parameter (and `StratusError.field`) it feeds."""

    name: str
    label: str
    placeholder: str = ""
    choices: tuple[str, ...] = ()  # a Select of these when given
    kind: str = "text"  # text | optional (empty is None) | gib (GiB → bytes) | tags
    # Other engine field names whose errors belong next to this input.
    aliases: tuple[str, ...] = ()


def _opt(text: str) -> str | None:
    return text.strip() or None


def _gib(field: FormField, text: str) -> int | None:
    if not text.strip():
        return None
    try:
        value = float(text.strip())
    except ValueError:
        raise InvalidParameter(
            f"{field.label.lower()}: {text.strip()!r} is not a number of GiB", field=field.name
        ) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidParameter(f"{field.label.lower()}: {text!r} is not a number", field=field.name)
    return round(value * GIB)


def _gib_text(value: int | None) -> str:
    if not value:
        return ""
    return f"{value / GIB:g}"


def _number_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


class FormScreen(ModalScreen[str | None]):
    """A form of `FIELDS`; subclasses load initial values and submit to the engine."""

    NOUN = "object"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
        Binding("ctrl+s", "save", "Save", id="form.save"),
    ]
    DEFAULT_CSS = """
    FormScreen {
        align: center middle;
    }
    FormScreen #form-box {
        width: 84;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    FormScreen #form-title {
        text-style: bold;
        padding: 0 0 1 0;
    }
    FormScreen #form-fields {
        height: auto;
        max-height: 60vh;
    }
    FormScreen .field-row {
        height: auto;
        margin-bottom: 1;
    }
    FormScreen .field-label {
        width: 26;
        padding: 0 1 0 0;
    }
    FormScreen .field-input {
        width: 1fr;
    }
    FormScreen .field-error {
        display: none;
        color: $text-error;
        text-style: bold;
        padding: 0 0 0 26;
        margin: -1 0 1 0;
    }
    FormScreen .field-error.-shown {
        display: block;
    }
    FormScreen .-invalid-field {
        background: $error 25%;
    }
    FormScreen #form-error {
        display: none;
        color: $error;
        text-style: bold;
        padding: 1 0 0 0;
    }
    FormScreen #form-error.-shown {
        display: block;
    }
    FormScreen #form-buttons {
        height: auto;
        align-horizontal: right;
        padding: 1 0 0 0;
    }
    FormScreen #form-buttons Button {
        margin-left: 2;
    }
    """

    FIELDS: list[FormField] = []

    def __init__(
        self, caller: Caller, uuid: str | None = None, *, read_only: bool | None = None
    ) -> None:
        super().__init__()
        self.caller = caller
        self.uuid = uuid
        self._read_only = read_only
        self.original: dict[str, str] = {}
        # Prefilled references: what the input shows, and the UUID it stands for.
        self.references: dict[str, tuple[str, str]] = {}
        self.loaded = uuid is None
        self.saving = False

    # --- to override ---------------------------------------------------------------------

    @property
    def editing(self) -> bool:
        return self.uuid is not None

    def fields(self) -> list[FormField]:
        return self.FIELDS

    def title_text(self) -> str:
        return f"Edit {self.NOUN}" if self.editing else f"Add {self.NOUN}"

    def initial_values(self) -> dict[str, str]:
        """Runs in a thread: the values to show (the object's, or the parent's name)."""
        return {}

    def submit(self, values: dict[str, str]) -> str:
        """Runs in a thread: call the engine with the typed values, return the UUID."""
        raise NotImplementedError

    # --- layout ----------------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return is_read_only(self.app) if self._read_only is None else self._read_only

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box"):
            yield Static(self.title_text(), id="form-title", markup=False)
            with VerticalScroll(id="form-fields"):
                for field in self.fields():
                    with Horizontal(classes="field-row"):
                        yield Label(field.label, classes="field-label")
                        if field.choices:
                            yield Select(
                                [(c, c) for c in field.choices],
                                value=field.choices[0],
                                allow_blank=False,
                                id=f"input-{field.name}",
                                classes="field-input",
                                compact=True,
                            )
                        else:
                            yield Input(
                                placeholder=field.placeholder,
                                id=f"input-{field.name}",
                                classes="field-input",
                                compact=True,
                            )
                    yield Static("", id=f"error-{field.name}", classes="field-error", markup=False)
            yield Static("", id="form-error", markup=False)
            with Horizontal(id="form-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary", disabled=not self.loaded)

    def on_mount(self) -> None:
        if self.read_only:
            self.app.notify(
                f"Read-only console: a {self.NOUN} cannot be added or changed",
                severity="warning",
            )
            self.dismiss(None)
            return
        self.load_initial()

    @work(thread=True, exclusive=True, group="form-load", exit_on_error=False)
    def load_initial(self) -> dict[str, str]:
        return self.initial_values()

    # --- reading and writing inputs --------------------------------------------------------

    def _widget(self, name: str) -> Input | Select[str]:
        return self.query_one(f"#input-{name}")  # type: ignore[return-value]

    def value_of(self, name: str) -> str:
        widget = self._widget(name)
        if isinstance(widget, Select):
            return "" if widget.value is Select.BLANK else str(widget.value)
        return widget.value

    def set_value(self, name: str, value: str) -> None:
        self._widget(name).value = value

    def typed_values(self) -> dict[str, str]:
        return {f.name: self.value_of(f.name) for f in self.fields()}

    def reference(self, name: str, values: dict[str, str]) -> str | None:
        """What to pass for a reference input: the prefilled UUID if unchanged, else the text."""
        text = values.get(name, "").strip()
        shown = self.references.get(name)
        if shown is not None and text == shown[0]:
            return shown[1]
        return text or None

    def changes(self, values: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in values.items() if v.strip() != self.original.get(k, "").strip()}

    # --- errors ---------------------------------------------------------------------------

    def clear_errors(self) -> None:
        for error in self.query(".field-error"):
            error.remove_class("-shown")
            error.update("")  # type: ignore[attr-defined]
        for widget in self.query(".-invalid-field"):
            widget.remove_class("-invalid-field")
        form_error = self.query_one("#form-error", Static)
        form_error.remove_class("-shown")
        form_error.update("")

    def field_for(self, engine_field: str | None) -> FormField | None:
        if engine_field is None:
            return None
        for field in self.fields():
            if engine_field == field.name or engine_field in field.aliases:
                return field
        return None

    def show_error(self, error: BaseException | None) -> None:
        """Put the engine's message next to the input at fault, else on the form's line."""
        self.clear_errors()
        message = failure_message(error, f"saving the {self.NOUN}")
        field = self.field_for(error.field if isinstance(error, StratusError) else None)
        if field is not None:
            shown = self.query_one(f"#error-{field.name}", Static)
            shown.update(Text(message))
            shown.add_class("-shown")
            widget = self._widget(field.name)
            widget.add_class("-invalid-field")
            widget.focus()
            shown.scroll_visible()
        else:
            form_error = self.query_one("#form-error", Static)
            form_error.update(Text(message))
            form_error.add_class("-shown")
        if not isinstance(error, StratusError):
            self.notify(
                escape(message), title=f"{self.NOUN.capitalize()} not saved", severity="error"
            )

    # --- actions ---------------------------------------------------------------------------

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Input.Submitted)
    def _input_submitted(self) -> None:
        self.action_save()

    def action_save(self) -> None:
        if self.read_only or self.saving or not self.loaded:
            return
        self.saving = True
        self.query_one("#save", Button).disabled = True
        self.save(self.typed_values())

    @work(thread=True, exclusive=True, group="form-save", exit_on_error=False)
    def save(self, values: dict[str, str]) -> str:
        return self.submit(values)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if group == "form-load":
            if event.state == WorkerState.SUCCESS:
                for name, value in (event.worker.result or {}).items():
                    self.set_value(name, value)
                self.original = self.typed_values()
                self.loaded = True
                self.query_one("#save", Button).disabled = False
                self._focus_first()
            elif event.state == WorkerState.ERROR:
                self.show_error(event.worker.error)
        elif group == "form-save":
            if event.state == WorkerState.SUCCESS:
                self.dismiss(event.worker.result)
            elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
                self.saving = False
                self.query_one("#save", Button).disabled = False
                self.show_error(event.worker.error)

    def _focus_first(self) -> None:
        fields = self.fields()
        if fields:
            self._widget(fields[0].name).focus()


# --- zones -----------------------------------------------------------------------------


ZONE_FIELDS = [
    FormField("name", "Name", "eu-west-1"),
    FormField("network_type", "Network type", choices=("Advanced", "Basic")),
    FormField("dns1", "DNS 1", "8.8.8.8"),
    FormField("dns2", "DNS 2", "optional", kind="optional"),
    FormField("internal_dns1", "Internal DNS 1", "defaults to DNS 1", kind="optional"),
    FormField("internal_dns2", "Internal DNS 2", "optional", kind="optional"),
    FormField("guest_cidr", "Guest CIDR", "Advanced zones: 10.1.1.0/24", kind="optional"),
    FormField("network_domain", "Network domain", "optional", kind="optional"),
    FormField("description", "Description", "optional"),
]


def _converted(fields: list[FormField], values: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for field in fields:
        if field.name not in values:
            continue
        text = values[field.name]
        if field.kind == "optional":
            result[field.name] = _opt(text)
        elif field.kind == "gib":
            result[field.name] = _gib(field, text)
        else:
            result[field.name] = text.strip()
    return result


class ZoneForm(FormScreen):
    NOUN = "zone"
    FIELDS = ZONE_FIELDS

    def __init__(self, caller: Caller, zone_uuid: str | None = None, **options: Any) -> None:
        super().__init__(caller, zone_uuid, **options)

    def initial_values(self) -> dict[str, str]:
        if self.uuid is None:
            return {}
        zone = topology.get_zone(self.caller, self.uuid)
        return {f.name: str(getattr(zone, f.name) or "") for f in self.FIELDS}

    def submit(self, values: dict[str, str]) -> str:
        if self.uuid is None:
            args = _converted(self.FIELDS, values)
            return topology.create_zone(self.caller, args.pop("name"), **args).uuid
        changes = _converted(self.FIELDS, self.changes(values))
        if not changes:
            return self.uuid
        return topology.update_zone(self.caller, self.uuid, **changes).uuid


# --- pods ------------------------------------------------------------------------------


class PodForm(FormScreen):
    NOUN = "pod"

    def __init__(
        self,
        caller: Caller,
        pod_uuid: str | None = None,
        *,
        zone_uuid: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(caller, pod_uuid, **options)
        self.zone_uuid = zone_uuid

    def fields(self) -> list[FormField]:
        network = [
            FormField("gateway", "Gateway", "10.1.0.1"),
            FormField("netmask", "Netmask", "255.255.255.0 or 24", aliases=("cidr",)),
            FormField("start_ip", "Management start", "10.1.0.10"),
            FormField("end_ip", "Management end", "10.1.0.99"),
        ]
        if self.editing:
            return [FormField("name", "Name"), *network]
        return [
            FormField("zone", "Zone", "zone name or UUID"),
            FormField("name", "Name", "rack-1"),
            *network,
        ]

    def initial_values(self) -> dict[str, str]:
        if self.uuid is not None:
            pod = topology.get_pod(self.caller, self.uuid)
            return {f.name: str(getattr(pod, f.name) or "") for f in self.fields()}
        if self.zone_uuid is not None:
            zone = topology.get_zone(self.caller, self.zone_uuid)
            self.references["zone"] = (zone.name, zone.uuid)
            return {"zone": zone.name}
        return {}

    def submit(self, values: dict[str, str]) -> str:
        if self.uuid is None:
            args = _converted(self.fields(), values)
            zone = self.reference("zone", values)
            del args["zone"]
            name = args.pop("name")
            args["end_ip"] = args["end_ip"] or None
            return topology.create_pod(self.caller, zone or "", name, **args).uuid
        changes = _converted(self.fields(), self.changes(values))
        if not changes:
            return self.uuid
        return topology.update_pod(self.caller, self.uuid, **changes).uuid


# --- clusters --------------------------------------------------------------------------

CLUSTER_TUNABLE_FIELDS = [
    FormField(
        "cpu_overprovisioning_factor", "CPU overprovisioning", "inherit (e.g. 2.0)", kind="optional"
    ),
    FormField(
        "mem_overprovisioning_factor",
        "Memory overprovisioning",
        "inherit (e.g. 1.0)",
        kind="optional",
    ),
    FormField(
        "cpu_disable_threshold",
        "CPU disable threshold",
        "inherit (0..1, e.g. 0.85)",
        kind="optional",
    ),
    FormField(
        "mem_disable_threshold",
        "Memory disable threshold",
        "inherit (0..1, e.g. 0.85)",
        kind="optional",
    ),
]


class ClusterForm(FormScreen):
    NOUN = "cluster"

    def __init__(
        self,
        caller: Caller,
        cluster_uuid: str | None = None,
        *,
        pod_uuid: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(caller, cluster_uuid, **options)
        self.pod_uuid = pod_uuid

    def fields(self) -> list[FormField]:
        if self.editing:
            return [FormField("name", "Name"), *CLUSTER_TUNABLE_FIELDS]
        return [
            FormField("pod", "Pod", "pod name or UUID"),
            FormField("name", "Name", "kvm-1"),
            *CLUSTER_TUNABLE_FIELDS,
        ]

    def initial_values(self) -> dict[str, str]:
        if self.uuid is not None:
            cluster = topology.get_cluster(self.caller, self.uuid)
            values = {"name": cluster.name}
            for field in CLUSTER_TUNABLE_FIELDS:
                values[field.name] = _number_text(getattr(cluster, field.name))
            return values
        if self.pod_uuid is not None:
            pod = topology.get_pod(self.caller, self.pod_uuid)
            self.references["pod"] = (pod.name, pod.uuid)
            return {"pod": pod.name}
        return {}

    def submit(self, values: dict[str, str]) -> str:
        if self.uuid is None:
            args = _converted(self.fields(), values)
            pod = self.reference("pod", values)
            del args["pod"]
            return topology.create_cluster(self.caller, pod or "", args.pop("name"), **args).uuid
        changes = _converted(self.fields(), self.changes(values))
        if not changes:
            return self.uuid
        return topology.update_cluster(self.caller, self.uuid, **changes).uuid


# --- hosts -----------------------------------------------------------------------------


class HostForm(FormScreen):
    NOUN = "host"

    def __init__(
        self,
        caller: Caller,
        host_uuid: str | None = None,
        *,
        cluster_uuid: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(caller, host_uuid, **options)
        self.cluster_uuid = cluster_uuid

    def fields(self) -> list[FormField]:
        common = [
            FormField("address", "Management address", "optional: 10.1.0.20", kind="optional"),
            FormField("tags", "Tags", "comma-separated, optional"),
        ]
        if self.editing:
            return [FormField("name", "Name"), *common]
        return [
            FormField("cluster", "Cluster", "cluster name or UUID"),
            FormField("name", "Name", "kvm-host-01"),
            FormField("uri", "libvirt URI", "qemu+ssh://root@10.1.0.20/system"),
            *common,
            FormField("cpu_sockets", "CPU sockets", "1"),
            FormField("cpu_cores", "CPU cores (all sockets)", "32"),
            FormField("cpu_mhz", "CPU speed (MHz)", "2400"),
            FormField("memory_bytes", "Memory (GiB)", "256", kind="gib"),
        ]

    def initial_values(self) -> dict[str, str]:
        if self.uuid is not None:
            host = topology.get_host(self.caller, self.uuid)
            tags = topology.host_tags(self.caller, self.uuid)
            return {"name": host.name, "address": host.address or "", "tags": ", ".join(tags)}
        values = {"cpu_sockets": "1"}
        if self.cluster_uuid is not None:
            cluster = topology.get_cluster(self.caller, self.cluster_uuid)
            self.references["cluster"] = (cluster.name, cluster.uuid)
            values["cluster"] = cluster.name
        return values

    def submit(self, values: dict[str, str]) -> str:
        if self.uuid is None:
            args = _converted(self.fields(), values)
            cluster = self.reference("cluster", values)
            del args["cluster"]
            if cluster is None:
                raise InvalidParameter("a cluster is required", field="cluster")
            memory = args.pop("memory_bytes")
            if memory is None:
                raise InvalidParameter(
                    f"host '{args['name']}': memory (GiB) is required", field="memory_bytes"
                )
            spec = topology.HostSpec(
                name=args["name"],
                uri=args["uri"],
                cpu_cores=args["cpu_cores"],  # type: ignore[arg-type]  # the engine checks
                cpu_mhz=args["cpu_mhz"],  # type: ignore[arg-type]
                memory_bytes=memory,
                cpu_sockets=args["cpu_sockets"] or 1,  # type: ignore[arg-type]
                address=args["address"],
                tags=args["tags"],
            )
            return topology.add_hosts(self.caller, cluster, [spec])[0]
        changes = _converted(self.fields(), self.changes(values))
        if not changes:
            return self.uuid
        return topology.update_host(self.caller, self.uuid, **changes).uuid


# --- primary storage -------------------------------------------------------------------

POOL_TUNABLE_FIELDS = [
    FormField("overprovisioning_factor", "Overprovisioning", "inherit (e.g. 2.0)", kind="optional"),
    FormField(
        "capacity_disable_threshold", "Used disable threshold", "inherit (0..1)", kind="optional"
    ),
    FormField(
        "allocated_disable_threshold", "Allocated threshold", "inherit (0..1)", kind="optional"
    ),
]


class PrimaryStorageForm(FormScreen):
    NOUN = "primary storage"

    def __init__(
        self,
        caller: Caller,
        pool_uuid: str | None = None,
        *,
        zone_uuid: str | None = None,
        cluster_uuid: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(caller, pool_uuid, **options)
        self.zone_uuid = zone_uuid
        self.cluster_uuid = cluster_uuid

    def fields(self) -> list[FormField]:
        common = [
            FormField("capacity_bytes", "Capacity (GiB)", "e.g. 2048", kind="gib"),
            FormField("tags", "Tags", "comma-separated, optional"),
            *POOL_TUNABLE_FIELDS,
        ]
        if self.editing:
            return [FormField("name", "Name"), *common]
        return [
            FormField("zone", "Zone", "zone name or UUID"),
            FormField("cluster", "Cluster", "empty: zone-wide", kind="optional"),
            FormField("name", "Name", "ps-1"),
            FormField("pool_type", "Type", choices=("dir", "nfs")),
            FormField("server", "NFS server", "nfs pools only", kind="optional"),
            FormField("path", "Path", "/var/lib/stratus/primary"),
            *common,
        ]

    def initial_values(self) -> dict[str, str]:
        if self.uuid is not None:
            pool = topology.get_storage_pool(self.caller, self.uuid)
            values = {
                "name": pool.name,
                "capacity_bytes": _gib_text(pool.capacity_bytes),
                "tags": ", ".join(topology.storage_pool_tags(self.caller, self.uuid)),
            }
            for field in POOL_TUNABLE_FIELDS:
                values[field.name] = _number_text(getattr(pool, field.name))
            return values
        values = {}
        if self.cluster_uuid is not None:
            cluster, cluster_zone = topology.get_cluster_and_zone(self.caller, self.cluster_uuid)
            self.references["cluster"] = (cluster.name, cluster.uuid)
            values["cluster"] = cluster.name
            if self.zone_uuid is None:
                self.zone_uuid = cluster_zone.uuid
        if self.zone_uuid is not None:
            zone = topology.get_zone(self.caller, self.zone_uuid)
            self.references["zone"] = (zone.name, zone.uuid)
            values["zone"] = zone.name
        return values

    def submit(self, values: dict[str, str]) -> str:
        if self.uuid is None:
            args = _converted(self.fields(), values)
            zone = self.reference("zone", values)
            cluster = self.reference("cluster", values)
            del args["zone"], args["cluster"]
            capacity = args.pop("capacity_bytes")
            return topology.create_storage_pool(
                self.caller,
                args.pop("name"),
                zone_ref=zone,
                cluster_ref=cluster,
                capacity_bytes=capacity or 0,
                **args,
            ).uuid
        changes = _converted(self.fields(), self.changes(values))
        if "capacity_bytes" in changes and changes["capacity_bytes"] is None:
            changes["capacity_bytes"] = 0
        if not changes:
            return self.uuid
        return topology.update_storage_pool(self.caller, self.uuid, **changes).uuid


# --- secondary storage -----------------------------------------------------------------


class SecondaryStorageForm(FormScreen):
    NOUN = "secondary storage"

    def __init__(
        self,
        caller: Caller,
        store_uuid: str | None = None,
        *,
        zone_uuid: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(caller, store_uuid, **options)
        self.zone_uuid = zone_uuid

    def fields(self) -> list[FormField]:
        capacity = FormField("capacity_bytes", "Capacity (GiB)", "e.g. 10240", kind="gib")
        if self.editing:
            return [
                FormField("name", "Name"),
                capacity,
                FormField("read_only", "Read-only", choices=("no", "yes")),
            ]
        return [
            FormField("zone", "Zone", "zone name or UUID"),
            FormField("name", "Name", "secondary-1"),
            FormField("url", "URL", "nfs://server/export or /path"),
            capacity,
        ]

    def initial_values(self) -> dict[str, str]:
        if self.uuid is not None:
            store = topology.get_image_store(self.caller, self.uuid)
            return {
                "name": store.name,
                "capacity_bytes": _gib_text(store.capacity_bytes),
                "read_only": "yes" if store.read_only else "no",
            }
        if self.zone_uuid is not None:
            zone = topology.get_zone(self.caller, self.zone_uuid)
            self.references["zone"] = (zone.name, zone.uuid)
            return {"zone": zone.name}
        return {}

    def submit(self, values: dict[str, str]) -> str:
        if self.uuid is None:
            args = _converted(self.fields(), values)
            zone = self.reference("zone", values) or ""
            return topology.add_image_store(
                self.caller,
                zone,
                args["name"],
                url=args["url"],
                capacity_bytes=args["capacity_bytes"] or 0,
            ).uuid
        changes: dict[str, Any] = _converted(self.fields(), self.changes(values))
        if "read_only" in changes:
            changes["read_only"] = changes["read_only"] == "yes"
        if "capacity_bytes" in changes and changes["capacity_bytes"] is None:
            changes["capacity_bytes"] = 0
        if not changes:
            return self.uuid
        return topology.update_image_store(self.caller, self.uuid, **changes).uuid


# --- settings --------------------------------------------------------------------------


class SettingForm(FormScreen):
    """Set one setting globally, or at a zone, cluster, pool or account (`scope_*`).

    An empty value goes back to inheriting (the default, or the global value). Dismisses
    with the setting's name.
    """

    NOUN = "setting"
    FIELDS = [FormField("value", "Value", "empty: inherit")]

    def __init__(
        self,
        caller: Caller,
        name: str,
        *,
        scope_type: str | None = None,
        scope_uuid: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(caller, None, **options)
        self.setting_name = name
        self.scope_type = scope_type
        self.scope_uuid = scope_uuid
        self.loaded = False
        self.view: settings_service.SettingView | None = None

    def title_text(self) -> str:
        where = f" for this {self.scope_type}" if self.scope_type else " (global)"
        return f"Set {self.setting_name}{where}"

    def initial_values(self) -> dict[str, str]:
        views = settings_service.list_settings(
            self.caller, scope_type=self.scope_type, scope_uuid=self.scope_uuid
        )
        view = next((v for v in views if v.name == self.setting_name), None)
        if view is None:
            settings_service.definition(self.setting_name)  # raises NotFound for an unknown name
            raise InvalidParameter(
                f"setting '{self.setting_name}' cannot be set per {self.scope_type}", field="scope"
            )
        self.view = view
        self.app.call_from_thread(self._describe, view)
        inherited = view.source == "default" or (self.scope_type and view.source == "global")
        return {"value": "" if inherited else view.effective}

    def _describe(self, view: settings_service.SettingView) -> None:
        title = self.query_one("#form-title", Static)
        title.update(
            Text.assemble(
                (self.title_text(), "bold"),
                f"\n{view.description}\n",
                (
                    f"type {view.value_type} · default {view.default} · in force {view.effective} "
                    f"({view.source})",
                    "dim",
                ),
            )
        )

    def submit(self, values: dict[str, str]) -> str:
        value = _opt(values["value"])
        settings_service.update_setting(
            self.caller,
            self.setting_name,
            value,
            scope_type=self.scope_type,
            scope_uuid=self.scope_uuid,
        )
        return self.setting_name


FORMS: dict[str, Callable[..., FormScreen]] = {
    "zone": ZoneForm,
    "pod": PodForm,
    "cluster": ClusterForm,
    "host": HostForm,
    "primary storage": PrimaryStorageForm,
    "secondary storage": SecondaryStorageForm,
    "setting": SettingForm,
}
