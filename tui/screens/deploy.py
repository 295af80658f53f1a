"""The deploy wizard: zone → template (or ISO) → service offering (a customized one asks
for CPU count, speed and memory, its limits shown and each field checked as it is typed)
→ disk offerings → networks and an optional fixed IP → affinity groups (the account's,
with their type and members) → (admin) a pinned host → name and count.

Every choice comes from `engine.vm_views.deploy_choices` (a new zone reloads the rest).
`Preview` (ctrl+p is the palette, so `f5`/the button) asks `engine.vm_views.deploy_preview`
where the VM would go now: the host and pools chosen, and the explanation (how many hosts
each filter excluded, with examples, and the runners-up with their scores). A deployment
that cannot fit shows placement's error, which names the reasons. `Deploy` is offered once
a preview of the current choices succeeded; it calls `engine.compute.deploy_vm` once per
VM (N VMs are name-1 … name-N) and shows one progress line per VM's DeployVM job.

Opens with `:deploy` or `n` on the VMs table; not in read-only mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, SelectionList, Static

from engine import vm_views
from engine.compute import DeployRequest, deploy_vm
from engine.context import Caller
from engine.custom_sizes import FIELDS, SizeLimits, human_memory, size_errors, what
from engine.errors import StratusError
from engine.job_views import JobView
from engine.vm_views import DeployChoices, DeployPreview
from tui.screens.jobs import JobWatching, job_text
from tui.screens.live import failure_message, is_read_only
from tui.widgets.crumbs import Breadcrumbs

MAX_COUNT = 20
NO_HOST = "(placement chooses)"
# The custom size inputs: (engine field, input id, border title)
CUSTOM = (
    ("cpu_count", "input-cpus", "CPUs"),
    ("cpu_mhz", "input-mhz", "MHz per CPU"),
    ("memory_bytes", "input-memory", "Memory (MiB, or 2 GiB)"),
)
_UNITS = {"": 2**20, "m": 2**20, "mb": 2**20, "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30}


def parse_memory(text: str) -> int:
    """ "512", "512M", "512 MiB" → bytes (MiB when no unit); "2G", "1.5 GiB" too."""
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(number) :]
    if unit not in _UNITS or not number:
        raise ValueError(f"{text.strip()!r} is not a size (512 MiB, 2 GiB)")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a size (512 MiB, 2 GiB)") from None
    size = value * _UNITS[unit]
    if size != int(size):
        raise ValueError(f"{text.strip()!r} is not a whole number of bytes")
    return int(size)


def parse_count(text: str) -> int:
    cleaned = text.strip()
    if not cleaned.isdigit():
        raise ValueError(f"{cleaned!r} is not a whole number")
    return int(cleaned)


@dataclass(frozen=True)
class Wanted:
    """The wizard's choices, as the engine takes them."""

    request: DeployRequest
    count: int
    names: tuple[str, ...]
    host: str | None


def preview_renderable(preview: DeployPreview) -> Group:
    """The plan and why: host, pools, the filters that excluded hosts, the runners-up."""
    plan, why = preview.plan, preview.explanation
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row(
        "Host",
        f"{plan.host_name} in cluster {plan.cluster_name} / pod {plan.pod_name} ({plan.how})",
    )
    volumes = sorted(plan.volumes, key=lambda v: v.position)
    head.add_row(
        "Pools", ", ".join(f"{v.name} ({_size(v.size_bytes)}) → {v.pool_name}" for v in volumes)
    )
    head.add_row("Size", preview.size_line)
    if preview.boot_iso:
        head.add_row(
            "Boot",
            f"ISO {preview.boot_iso} in the CD-ROM drive; ROOT is a blank disk sized by the "
            "first disk offering, to install onto",
        )
    if preview.affinity_groups:
        head.add_row("Affinity", ", ".join(f"{g.name} ({g.note})" for g in preview.affinity_groups))
    head.add_row("Hosts", f"{why.fitting} of {why.hosts} hosts of zone {why.zone} fit")
    if preview.count > 1:
        head.add_row("Count", f"{preview.count} VMs: each is placed when its job runs")
    lines: list[Any] = [head, Text("Excluded by filter", style="bold")]
    excluded = [f for f in why.filters if f.excluded]
    if not excluded:
        lines.append(Text("  no host excluded", style="dim"))
    for result in excluded:
        examples = ", ".join(result.examples)
        line = Text(f"  {result.filter:<18}", style="bold")
        line.append(f"{result.excluded} {result.reason}")
        line.append(f"  (e.g. {examples})", style="dim")
        lines.append(line)
    lines.append(Text("Runners-up (lower scores are tried first)", style="bold"))
    if not why.runners_up:
        lines.append(Text("  none: no other host fits", style="dim"))
    for candidate in why.runners_up:
        lines.append(
            Text(
                f"  {candidate.host:<16} cluster {candidate.cluster:<12} "
                f"cluster score {candidate.cluster_score:.3f} · host score "
                f"{candidate.host_score:.3f}"
            )
        )
    return Group(*lines)


def _size(n: int) -> str:
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n // 2**20} MiB"


class DeployScreen(JobWatching, Screen[None]):
    TITLE = "Deploy"
    BINDINGS = [
        Binding("escape", "back", "Back", id="deploy.back"),
        Binding("f5", "preview", "Preview", id="deploy.preview"),
    ]
    DEFAULT_CSS = """
    DeployScreen #deploy-body {
        height: 1fr;
        padding: 0 1;
    }
    DeployScreen .field-row {
        height: auto;
    }
    DeployScreen .field-label {
        width: 18;
        padding: 1 0 0 0;
    }
    DeployScreen Select, DeployScreen Input {
        width: 1fr;
    }
    DeployScreen .list-row {
        margin: 1 0 0 0;
    }
    DeployScreen .list-row .field-label {
        padding: 0;
    }
    DeployScreen .none {
        color: $text-muted;
        width: 1fr;
    }
    DeployScreen SelectionList {
        width: 1fr;
        height: auto;
        max-height: 5;
    }
    DeployScreen #custom-row .custom-field {
        width: 1fr;
        height: auto;
    }
    DeployScreen #custom-row .hint {
        color: $text-muted;
        padding: 0 1;
    }
    DeployScreen #custom-row .hint.field-error {
        color: $text-error;
        text-style: bold;
    }
    DeployScreen #deploy-preview {
        height: auto;
        border: round $secondary;
        padding: 0 1;
    }
    DeployScreen #deploy-error {
        color: $text-error;
        text-style: bold;
        height: auto;
    }
    DeployScreen #deploy-progress {
        height: auto;
    }
    DeployScreen #deploy-buttons {
        height: auto;
        align-horizontal: right;
    }
    DeployScreen #deploy-buttons Button {
        margin-left: 2;
    }
    """

    def __init__(
        self,
        caller: Caller,
        *,
        zone: str | None = None,
        refresh_seconds: float = 0,
        clock: Any = None,
    ) -> None:
        super().__init__()
        self.caller = caller
        self.zone_ref = zone
        self.crumb = "Deploy a VM"
        self.sub_title = self.crumb
        self.choices: DeployChoices | None = None
        self.preview: DeployPreview | None = None
        self.previewed: Wanted | None = None
        self.jobs: dict[str, JobView] = {}  # VM name -> its DeployVM job, last seen
        self.busy = False
        self.loaded = False
        self.custom_for: str | None = None  # the customized offering the size inputs hold
        self.engine_error: tuple[str, str] | None = None  # (size field, engine's refusal)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Breadcrumbs()
        with VerticalScroll(id="deploy-body"):
            for name, label in (
                ("zone", "Zone"),
                ("template", "Template or ISO"),
                ("offering", "Service offering"),
            ):
                with Horizontal(classes="field-row"):
                    yield Label(label, classes="field-label")
                    yield Select[str]([], id=f"select-{name}", prompt=f"choose a {label.lower()}")
            with Horizontal(classes="field-row", id="custom-row"):
                yield Label("Custom size", classes="field-label")
                for field, input_id, title in CUSTOM:
                    with Vertical(classes="custom-field"):
                        size_input = Input(id=input_id)
                        size_input.border_title = title
                        yield size_input
                        yield Static("", id=f"hint-{field}", classes="hint", markup=False)
            for name, label, none in (
                ("disks", "Disk offerings", "none in this zone"),
                ("networks", "Networks", "none in this zone"),
                ("groups", "Affinity groups", "none for this account"),
            ):
                with Horizontal(classes="field-row list-row"):
                    yield Label(label, classes="field-label")
                    yield SelectionList[str](id=f"select-{name}", compact=True)
                    yield Static(none, id=f"none-{name}", classes="none")
            with Horizontal(classes="field-row"):
                yield Label("Fixed IP", classes="field-label")
                yield Input(placeholder="optional: on the first network", id="input-ip")
            with Horizontal(classes="field-row"):
                yield Label("Pin host (admin)", classes="field-label")
                yield Select[str]([], id="select-host", prompt=NO_HOST)
            with Horizontal(classes="field-row"):
                yield Label("Name", classes="field-label")
                yield Input(placeholder="a hostname: web-1", id="input-name")
                yield Label("Count", classes="field-label")
                yield Input("1", id="input-count", type="integer")
            yield Static("", id="deploy-error", markup=False)
            preview = Static(
                Text("Preview shows where it would go", style="dim"), id="deploy-preview"
            )
            preview.border_title = "Placement preview"
            yield preview
            yield Static("", id="deploy-progress")
            with Horizontal(id="deploy-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Preview", id="preview", variant="primary")
                yield Button("Deploy", id="deploy", variant="success", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        if is_read_only(self.app):
            self.app.notify("Read-only console: nothing can be deployed", severity="warning")
            self.app.call_later(self.app.run_action, "back")
            return
        self.query_one("#select-host", Select).disabled = not self.caller.is_admin
        self._load(self.zone_ref)

    # --- choices -----------------------------------------------------------------------------

    def _load(self, zone: str | None) -> None:
        caller = self.caller
        self.run_then(lambda: vm_views.deploy_choices(caller, zone), self._fill, what="Loading")

    def _fill(self, choices: DeployChoices) -> None:
        self.choices = choices
        zone_select = self.query_one("#select-zone", Select)
        with self.prevent(Select.Changed):
            zone_select.set_options([(f"{z.name} ({z.note})", z.uuid) for z in choices.zones])
            if choices.zone is not None:
                zone_select.value = choices.zone.uuid
        templates = [(f"{t.name} ({t.note})", t.uuid) for t in choices.templates]
        templates += [(f"ISO {t.name} ({t.note})", t.uuid) for t in choices.isos]
        self._options("template", templates)
        self._options("offering", [(f"{o.name} ({o.note})", o.uuid) for o in choices.offerings])
        self._options("host", [(f"{h.name} ({h.note})", h.uuid) for h in choices.hosts])
        for name, items in (
            ("disks", choices.disk_offerings),
            ("networks", choices.networks),
            ("groups", choices.affinity_groups),
        ):
            selection = self.query_one(f"#select-{name}", SelectionList)
            selection.clear_options()
            selection.add_options([(f"{c.name} ({c.note})", c.uuid) for c in items])
            selection.display = bool(items)
            self.query_one(f"#none-{name}", Static).display = not items
        self.loaded = True
        self._offering_changed()
        self._changed()

    def _options(self, name: str, options: list[tuple[str, str]]) -> None:
        select = self.query_one(f"#select-{name}", Select)
        with self.prevent(Select.Changed):
            select.set_options(options)
            if options and name != "host":
                select.value = options[0][1]

    @on(Select.Changed, "#select-zone")
    def _zone_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and (
            self.choices is None
            or self.choices.zone is None
            or event.value != self.choices.zone.uuid
        ):
            self._load(event.value)

    @on(Select.Changed, "#select-offering")
    def _offering_select_changed(self, _event: Select.Changed) -> None:
        self._offering_changed()

    def limits(self) -> SizeLimits | None:
        """The size limits of the chosen offering when it is customized."""
        offering = self._value("offering")
        if self.choices is None or offering is None:
            return None
        return self.choices.custom.get(offering)

    def _offering_changed(self) -> None:
        """A customized offering shows the size inputs, filled with its defaults."""
        limits = self.limits()
        self.query_one("#custom-row").display = limits is not None
        offering = self._value("offering")
        if limits is None or offering == self.custom_for:
            return
        self.custom_for = offering
        defaults = (
            str(limits.default_cpu_count),
            str(limits.default_cpu_mhz),
            human_memory(limits.default_memory_bytes),
        )
        for (_field, input_id, _title), value in zip(CUSTOM, defaults, strict=True):
            self.query_one(f"#{input_id}", Input).value = value

    def custom_sizes(self) -> tuple[dict[str, int], dict[str, str]]:
        """The typed sizes, and field -> why it is refused (unreadable or out of limits)."""
        limits = self.limits()
        if limits is None:
            return {}, {}
        values: dict[str, int] = {}
        errors: dict[str, str] = {}
        for field, input_id, _title in CUSTOM:
            text = self.query_one(f"#{input_id}", Input).value
            try:
                if field == "memory_bytes":
                    values[field] = parse_memory(text)
                else:
                    values[field] = parse_count(text)
            except ValueError as exc:
                errors[field] = str(exc)
        if len(values) == len(FIELDS):
            errors.update(size_errors(limits, *(values[f] for f in FIELDS)))
        else:
            checked = size_errors(
                limits, *(values.get(f, limits_default(limits, f)) for f in FIELDS)
            )
            errors.update({f: m for f, m in checked.items() if f in values})
        return values, errors

    def _show_hints(self, errors: dict[str, str]) -> None:
        limits = self.limits()
        if limits is None:
            return
        if self.engine_error is not None and self.engine_error[0] not in errors:
            errors = {**errors, self.engine_error[0]: self.engine_error[1]}
        for field, _input_id, _title in CUSTOM:
            hint = self.query_one(f"#hint-{field}", Static)
            if field in errors:
                hint.update(f"✗ {errors[field]}")
                hint.add_class("field-error")
            else:
                hint.update(limits.range_text(field))
                hint.remove_class("field-error")

    @on(Select.Changed)
    @on(Input.Changed)
    @on(SelectionList.SelectedChanged)
    def _any_change(self, _event: Any) -> None:
        self.engine_error = None
        self._changed()

    def _changed(self) -> None:
        """A choice changed: the last preview no longer matches, Deploy waits for a new one."""
        deploy = self.query_one("#deploy", Button)
        self._show_hints(self.custom_sizes()[1])
        try:
            wanted = self.wanted()
        except ValueError:
            wanted = None
        deploy.disabled = self.busy or wanted is None or wanted != self.previewed

    def _value(self, name: str) -> str | None:
        value = self.query_one(f"#select-{name}", Select).value
        return value if isinstance(value, str) else None

    def wanted(self) -> Wanted:
        """The current choices; ValueError (with what is missing) when incomplete."""
        zone, template, offering = (self._value(n) for n in ("zone", "template", "offering"))
        missing = [
            label
            for label, value in (
                ("a zone", zone),
                ("a template", template),
                ("an offering", offering),
            )
            if value is None
        ]
        name = self.query_one("#input-name", Input).value.strip()
        if not name:
            missing.append("a name")
        if missing:
            raise ValueError(f"choose {', '.join(missing)}")
        text = self.query_one("#input-count", Input).value.strip() or "1"
        count = int(text) if text.isdigit() else 0
        if not 1 <= count <= MAX_COUNT:
            raise ValueError(f"count must be 1 to {MAX_COUNT}, got {text!r}")
        names = (name,) if count == 1 else tuple(f"{name}-{i}" for i in range(1, count + 1))
        host = self._value("host") if self.caller.is_admin else None
        sizes, errors = self.custom_sizes()
        if errors:
            refused = "; ".join(f"{what(f)} {errors[f]}" for f in FIELDS if f in errors)
            raise ValueError(f"custom size: {refused}")
        request = DeployRequest(
            name=names[0],
            zone=str(zone),
            offering=str(offering),
            template=str(template),
            networks=tuple(self.query_one("#select-networks", SelectionList).selected),
            disk_offerings=tuple(self.query_one("#select-disks", SelectionList).selected),
            ip_address=self.query_one("#input-ip", Input).value.strip() or None,
            host=host,
            affinity_groups=tuple(self.query_one("#select-groups", SelectionList).selected),
            **sizes,
        )
        return Wanted(request, count, names, host)

    def _error(self, text: str) -> None:
        self.query_one("#deploy-error", Static).update(Text(text))

    def _field_error(self, error: BaseException, text: str) -> None:
        """The engine refused a custom size: say so next to that field too."""
        field = getattr(error, "field", None)
        if field in FIELDS and self.limits() is not None:
            self.engine_error = (field, text)
            self._show_hints({})

    # --- preview -------------------------------------------------------------------------------

    @on(Button.Pressed, "#preview")
    def _preview_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_preview()

    def action_preview(self) -> None:
        if self.busy:
            return
        try:
            wanted = self.wanted()
        except ValueError as exc:
            self._error(str(exc))
            return
        self._error("")
        self.query_one("#deploy-preview", Static).update(Text("asking placement…", style="dim"))
        caller = self.caller

        def work() -> DeployPreview:
            return vm_views.deploy_preview(
                caller, wanted.request, host=wanted.host, count=wanted.count
            )

        self.run_worker(
            lambda: self._previewed_in_thread(work, wanted),
            thread=True,
            group="deploy-preview",
            exit_on_error=False,
        )

    def _previewed_in_thread(self, work: Any, wanted: Wanted) -> None:
        try:
            preview = work()
        except Exception as exc:
            self.app.call_from_thread(self._preview_failed, exc)
            return
        self.app.call_from_thread(self._previewed, preview, wanted)

    def _previewed(self, preview: DeployPreview, wanted: Wanted) -> None:
        self.preview, self.previewed = preview, wanted
        self.query_one("#deploy-preview", Static).update(preview_renderable(preview))
        self._changed()

    def _preview_failed(self, error: BaseException) -> None:
        self.preview, self.previewed = None, None
        text = failure_message(error, "the placement preview")
        self._field_error(error, text)
        self._error(f"Cannot deploy: {text}" if isinstance(error, StratusError) else text)
        self.query_one("#deploy-preview", Static).update(
            Text("nothing fits: see the reasons above", style="dim")
        )
        self._changed()

    # --- deploy --------------------------------------------------------------------------------

    @on(Button.Pressed, "#deploy")
    def _deploy_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        wanted = self.previewed
        if wanted is None or self.busy or is_read_only(self.app):
            return
        self.busy = True
        self._changed()
        self.jobs = {}
        caller = self.caller
        for name in wanted.names:
            request = DeployRequest(**{**wanted.request.__dict__, "name": name})
            self.submit_and_follow(
                lambda request=request: deploy_vm(caller, request)[1],  # type: ignore[misc]
                on_update=lambda view, name=name: self._progress(name, view),  # type: ignore[misc]
                on_done=lambda view, name=name: self._deployed(name, view),  # type: ignore[misc]
                on_error=lambda exc, name=name: self._refused(name, exc),  # type: ignore[misc]
            )
        self.notify(escape(f"deploying {', '.join(wanted.names)} (j: jobs)"), title="Deploy")

    def _progress(self, name: str, view: JobView) -> None:
        self.jobs[name] = view
        self._show_progress()

    def _show_progress(self) -> None:
        lines = [job_text(view) for _name, view in sorted(self.jobs.items())]
        self.query_one("#deploy-progress", Static).update(Group(*lines))

    def _deployed(self, name: str, view: JobView) -> None:
        self.jobs[name] = view
        self._show_progress()
        if view.state == "Succeeded":
            self.notify(escape(f"VM {name} is Running"), title="Deploy")
        else:
            self.notify(
                escape(f"VM {name}: {view.error or view.state}"),
                title="Deploy failed",
                severity="error",
            )
        self._finish()

    def _refused(self, name: str, error: BaseException) -> None:
        text = failure_message(error, f"deploying {name}")
        self._field_error(error, text)
        self._error(text)
        self.notify(escape(text), title="Deploy refused", severity="error")
        self._finish()

    def _finish(self) -> None:
        if not self.following():
            self.busy = False
            self.previewed = None  # capacity moved: preview again before the next deploy
            self._changed()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.app.call_later(self.app.run_action, "back")

    async def action_back(self) -> None:
        await self.app.run_action("back")


def limits_default(limits: SizeLimits, field: str) -> int:
    return int(getattr(limits, f"default_{field}"))
