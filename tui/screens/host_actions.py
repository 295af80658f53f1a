"""Host actions, from the hosts table and from a host's detail screen.

- `s` enables a Disabled host, or disables an Enabled one after a confirmation that says
  what stays on it (topology service; no hypervisor involved).
- `R` reconnects: a `ReconnectHost` job drops the host's libvirt connection and opens a
  new one (the host turns Up, its power states are resynced); its progress is followed.
- `ctrl+d` removes the host, after a confirmation that lists its VMs and asks for its name
  to be typed: a `RemoveHost` job, refused with the topology's message while VMs are on it.
- `u` (hosts table) adds a host by its libvirt URI: a `ProbeHost` job reads the facts from
  libvirt and shows them, then `AddHost` saves the host.
- `M` (hosts table) prepares the host for maintenance: the confirmation lists each VM on it
  and its fate (live-migrated to which host, or stopped and why, from
  `engine.hosts.maintenance.maintenance_plan`), then the `PrepareHostMaintenance` job
  drains it with its progress followed; `C` cancels maintenance (the host is Enabled
  again; VMs that left stay where they are), after a confirmation too.

None of these keys exist in read-only mode (`check_action` hides and refuses them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine import details, topology
from engine.context import Caller
from engine.details import HostDetail
from engine.errors import StratusError
from engine.hosts.handlers import submit_host_job
from engine.hosts.maintenance import (
    IN_MAINTENANCE,
    MaintenancePlan,
    cancel_maintenance,
    maintenance_plan,
    prepare_host_for_maintenance,
)
from engine.job_views import JobView
from tui.screens.jobs import JobWatching, announce, progress_bar
from tui.screens.live import failure_message, is_read_only
from tui.screens.resources import ResourceScreen
from tui.widgets.confirm import Confirmation, ConfirmDialog
from tui.widgets.gauge import human_bytes

HOST_BINDINGS = [
    Binding("s", "toggle_host", "Enable/Disable", id="host.toggle"),
    Binding("M", "prepare_maintenance", "Maintenance", id="host.maintenance"),
    Binding("C", "cancel_maintenance", "End maint.", id="host.end_maintenance"),
    Binding("R", "reconnect_host", "Reconnect", id="host.reconnect"),
    Binding("ctrl+d", "remove_host", "Remove", id="host.remove"),
]
HOST_ACTIONS = {
    "toggle_host",
    "reconnect_host",
    "remove_host",
    "add_host_uri",
    "prepare_maintenance",
    "cancel_maintenance",
}
SHOWN_VMS = 8


def _vm_lines(detail: HostDetail) -> list[str]:
    vms = detail.vms
    if not vms.total:
        return ["no VMs on it"]
    lines = [f"{vms.total} VM{'s' if vms.total != 1 else ''} on it:"]
    lines += [f"VM {vm.name} ({vm.state})" for vm in vms.shown[:SHOWN_VMS]]
    if vms.total > SHOWN_VMS:
        lines.append(f"… and {vms.total - SHOWN_VMS} more VMs")
    return lines


def _host_line(detail: HostDetail) -> str:
    host = detail.host
    return (
        f"host {host.name} ({host.uri}) in {detail.zone_name} / {detail.pod_name} / "
        f"{detail.cluster_name}, {host.status}, {host.resource_state}"
    )


class HostActions(JobWatching):
    """Mixed into a screen with a `caller`: the host actions, on `host_target()`."""

    def host_target(self) -> str | None:
        """The UUID of the host the keys act on (the cursor's row, the shown host)."""
        raise NotImplementedError

    def after_host_change(self, removed: bool = False) -> None:
        """Show the change (reload; a detail screen of a removed host goes back)."""

    def host_action_allowed(self, action: str) -> bool | None:
        """For `check_action`: None when `action` is not a host action."""
        if action not in HOST_ACTIONS:
            return None
        screen: Any = self
        return not is_read_only(screen.app) and (
            action == "add_host_uri" or self.host_target() is not None
        )

    def _act_on_host(self, then: Callable[[HostDetail], None]) -> None:
        screen: Any = self
        uuid = self.host_target()
        if uuid is None or is_read_only(screen.app):
            return
        caller = self.caller
        self.run_then(lambda: details.host_detail(caller, uuid), then, what="Reading the host")

    # --- enable / disable ------------------------------------------------------------------

    def action_toggle_host(self) -> None:
        self._act_on_host(self._toggle)

    def _toggle(self, detail: HostDetail) -> None:
        host = detail.host
        screen: Any = self
        if host.resource_state != "Enabled":
            self._set_state(host.uuid, host.name, enable=True)
            return
        confirmation = Confirmation(
            title=f"Disable host {host.name}?",
            action="Disable",
            affected=[
                _host_line(detail),
                *_vm_lines(detail),
                "no new VM will be placed on it; the VMs on it keep running",
            ],
        )
        screen.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: self._set_state(host.uuid, host.name, enable=False) if yes else None,
        )

    def _set_state(self, uuid: str, name: str, *, enable: bool) -> None:
        caller = self.caller
        change = topology.enable_host if enable else topology.disable_host
        verb = "enabled" if enable else "disabled"
        screen: Any = self

        def done(_host: Any) -> None:
            screen.notify(escape(f"host {name} {verb}"), title="Host")
            self.after_host_change()

        self.run_then(lambda: change(caller, uuid), done, what=f"Host {name} not {verb}")

    # --- reconnect -------------------------------------------------------------------------

    def action_reconnect_host(self) -> None:
        screen: Any = self
        uuid = self.host_target()
        if uuid is None or is_read_only(screen.app):
            return
        caller = self.caller
        self.submit_and_follow(
            lambda: submit_host_job(caller, "ReconnectHost", host_ref=uuid),
            on_done=self._host_job_done,
        )
        screen.notify("Reconnect submitted: see its progress with j", title="Host")

    def _host_job_done(self, view: JobView, *, removed: bool = False) -> None:
        announce(self, view)
        self.after_host_change(removed=removed and view.state == "Succeeded")

    # --- remove ----------------------------------------------------------------------------

    def action_remove_host(self) -> None:
        self._act_on_host(self._confirm_remove)

    def _confirm_remove(self, detail: HostDetail) -> None:
        host = detail.host
        screen: Any = self
        confirmation = Confirmation(
            title=f"Remove host {host.name}?",
            action="Remove",
            affected=[_host_line(detail), *_vm_lines(detail)],
            warning="The host leaves the topology; its libvirt connection is closed.",
            type_to_confirm=host.name,
        )
        screen.app.push_screen(
            ConfirmDialog(confirmation), lambda yes: self._remove(host.uuid) if yes else None
        )

    def _remove(self, uuid: str) -> None:
        caller = self.caller
        self.submit_and_follow(
            lambda: submit_host_job(caller, "RemoveHost", host_ref=uuid),
            on_done=lambda view: self._host_job_done(view, removed=True),
        )

    # --- maintenance ---------------------------------------------------------------------

    def action_prepare_maintenance(self) -> None:
        screen: Any = self
        uuid = self.host_target()
        if uuid is None or is_read_only(screen.app):
            return
        caller = self.caller
        self.run_then(
            lambda: (maintenance_plan(caller, uuid), details.host_detail(caller, uuid)),
            lambda found: self._confirm_maintenance(*found),
            what="Reading the host's VMs",
        )

    def _confirm_maintenance(self, plan: MaintenancePlan, detail: HostDetail) -> None:
        screen: Any = self
        if plan.resource_state in ("PrepareForMaintenance", "Maintenance"):
            screen.notify(
                escape(f"host {plan.host} is {plan.resource_state}: C cancels maintenance"),
                title="Maintenance",
                severity="warning",
            )
            return
        if plan.busy:
            names = ", ".join(f"{f.vm} ({f.state})" for f in plan.busy)
            screen.notify(
                escape(f"host {plan.host}: wait until the jobs of {names} end"),
                title="Maintenance not possible now",
                severity="warning",
            )
            return
        moves, stops = len(plan.of("migrate")), len(plan.of("stop"))
        confirmation = Confirmation(
            title=f"Prepare host {plan.host} for maintenance?",
            action="Prepare",
            affected=[
                _host_line(detail),
                *plan.lines,
                "no new VM will be placed on it until maintenance is cancelled (C)",
            ],
            warning=f"{moves} VM{'s' if moves != 1 else ''} will be live-migrated and "
            f"{stops} stopped. Each target is checked again just before its VM moves.",
        )
        screen.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: self._prepare(plan.host_uuid, plan.host) if yes else None,
        )

    def _prepare(self, uuid: str, name: str) -> None:
        caller = self.caller
        screen: Any = self
        seen: list[str] = []

        def moving(view: JobView) -> None:
            # The table follows the drain: reloaded when the job turns to its next VM.
            where = (view.progress_message or "").split(":", 1)[0]
            if not seen or seen[-1] != where:
                seen.append(where)
                self.after_host_change()

        self.submit_and_follow(
            lambda: prepare_host_for_maintenance(caller, uuid),
            on_update=moving,
            on_done=self._host_job_done,
        )
        screen.notify(
            escape(f"Maintenance of host {name} submitted: see its progress with j"),
            title="Maintenance",
        )

    def action_cancel_maintenance(self) -> None:
        self._act_on_host(self._confirm_cancel_maintenance)

    def _confirm_cancel_maintenance(self, detail: HostDetail) -> None:
        host = detail.host
        screen: Any = self
        if host.resource_state not in IN_MAINTENANCE:
            screen.notify(
                escape(f"host {host.name} is {host.resource_state}, not in maintenance"),
                title="Maintenance",
                severity="warning",
            )
            return
        confirmation = Confirmation(
            title=f"Cancel maintenance of host {host.name}?",
            action="End maintenance",
            affected=[
                _host_line(detail),
                "the host becomes Enabled: new VMs may be placed on it again",
                "VMs that were migrated away stay where they are",
            ],
        )
        screen.app.push_screen(
            ConfirmDialog(confirmation),
            lambda yes: self._end_maintenance(host.uuid, host.name) if yes else None,
        )

    def _end_maintenance(self, uuid: str, name: str) -> None:
        caller = self.caller
        screen: Any = self

        def done(_host: Any) -> None:
            screen.notify(escape(f"host {name}: maintenance cancelled, Enabled"), title="Host")
            self.after_host_change()

        self.run_then(
            lambda: cancel_maintenance(caller, uuid), done, what=f"Maintenance of {name} not ended"
        )


# --- add a host by URI -----------------------------------------------------------------------


def facts_table(facts: dict[str, Any], name: str) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows = [
        ("Suggested name", name),
        ("Hostname", facts.get("hostname")),
        ("Driver", facts.get("driver")),
        ("CPU model", facts.get("cpu_model")),
        (
            "CPU",
            f"{facts.get('cpu_sockets')} sockets, {facts.get('cpu_cores')} cores, "
            f"{facts.get('cpu_threads')} threads per core at {facts.get('cpu_mhz')} MHz",
        ),
        ("Memory", human_bytes(int(facts.get("memory_bytes") or 0))),
        ("Hypervisor", f"version {facts.get('hypervisor_version')}"),
        ("libvirt", f"version {facts.get('libvirt_version')}"),
    ]
    for key, value in rows:
        table.add_row(key, Text(str(value)))
    return table


class AddHostDialog(JobWatching, ModalScreen[str | None]):
    """URI → `Read facts` (a ProbeHost job) → the facts → `Add host` (an AddHost job).

    Dismisses with the new host's UUID, or None when cancelled. The engine's messages
    (a bad URI, an unreachable host, a name taken) show in place; what was typed stays.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="addhost.cancel")]
    DEFAULT_CSS = """
    AddHostDialog {
        align: center middle;
    }
    AddHostDialog #add-box {
        width: 90;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    AddHostDialog #add-title {
        text-style: bold;
        padding: 0 0 1 0;
    }
    AddHostDialog .field-row {
        height: auto;
        margin-bottom: 1;
    }
    AddHostDialog .field-label {
        width: 22;
    }
    AddHostDialog Input {
        width: 1fr;
    }
    AddHostDialog #add-facts {
        height: auto;
        border: round $secondary;
        padding: 0 1;
    }
    AddHostDialog #add-progress {
        height: auto;
    }
    AddHostDialog #add-error {
        color: $text-error;
        text-style: bold;
    }
    AddHostDialog #add-buttons {
        height: auto;
        align-horizontal: right;
        padding: 1 0 0 0;
    }
    AddHostDialog #add-buttons Button {
        margin-left: 2;
    }
    """

    def __init__(self, caller: Caller, *, cluster: str = "") -> None:
        super().__init__()
        self.caller = caller
        self.cluster = cluster
        self.facts: dict[str, Any] | None = None
        self.probed_uri: str | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="add-box"):
            yield Static("Add a host by its libvirt URI", id="add-title", markup=False)
            for name, label, placeholder in (
                ("cluster", "Cluster", "cluster name or UUID"),
                ("uri", "libvirt URI", "qemu+ssh://root@10.1.0.20/system or test:///default"),
                ("name", "Name", "optional: the suggested name"),
                ("address", "Management address", "optional: 10.1.0.20"),
            ):
                with Horizontal(classes="field-row"):
                    yield Label(label, classes="field-label")
                    yield Input(placeholder=placeholder, id=f"input-{name}", compact=True)
            facts = Static("Facts: not read yet (Read facts asks libvirt)", id="add-facts")
            facts.border_title = "What libvirt reports"
            yield facts
            yield Static("", id="add-progress", markup=False)
            yield Static("", id="add-error", markup=False)
            with Horizontal(id="add-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Read facts", id="probe", variant="primary")
                yield Button("Add host", id="save", variant="success", disabled=True)

    def on_mount(self) -> None:
        if is_read_only(self.app):
            self.app.notify("Read-only console: hosts cannot be added", severity="warning")
            self.dismiss(None)
            return
        self.query_one("#input-cluster", Input).value = self.cluster
        self.query_one("#input-uri" if self.cluster else "#input-cluster", Input).focus()

    def value(self, name: str) -> str:
        return self.query_one(f"#input-{name}", Input).value.strip()

    def _show_error(self, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else failure_message(error, "adding the host")
        self.query_one("#add-error", Static).update(Text(text))
        if isinstance(error, StratusError) and error.field in ("cluster", "uri", "name", "address"):
            self.query_one(f"#input-{error.field}", Input).focus()

    def _progress(self, view: JobView) -> None:
        line = Text(f"{view.job_type}: ")
        line.append_text(progress_bar(view))
        line.append(f"  {view.progress_message if view.active else view.state}")
        self.query_one("#add-progress", Static).update(line)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.query_one("#probe", Button).disabled = busy
        self.query_one("#save", Button).disabled = busy or not self._probed_current()

    def _probed_current(self) -> bool:
        return self.facts is not None and self.probed_uri == self.value("uri")

    @on(Input.Changed, "#input-uri")
    def _uri_changed(self, _event: Input.Changed) -> None:
        if not self.busy:
            self.query_one("#save", Button).disabled = not self._probed_current()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._probed_current():
            self.action_save()
        else:
            self.action_probe()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    @on(Button.Pressed, "#probe")
    def _probe_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_probe()

    @on(Button.Pressed, "#save")
    def _save_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_probe(self) -> None:
        if self.busy:
            return
        uri, cluster = self.value("uri"), self.value("cluster")
        self.facts, self.probed_uri = None, None
        self.query_one("#add-error", Static).update("")
        self._set_busy(True)
        caller = self.caller
        self.submit_and_follow(
            lambda: submit_host_job(caller, "ProbeHost", params={"uri": uri, "cluster": cluster}),
            on_update=self._progress,
            on_done=lambda view: self._probed(view, uri),
            on_error=self._refused,
        )

    def _refused(self, error: BaseException) -> None:
        self._set_busy(False)
        self.query_one("#add-progress", Static).update("")
        self._show_error(error)

    def _probed(self, view: JobView, uri: str) -> None:
        self._progress(view)
        if view.state != "Succeeded":
            self._set_busy(False)
            self._show_error(view.error or f"reading the facts ended {view.state}")
            return
        result = view.result_data
        self.facts, self.probed_uri = result.get("facts", {}), uri
        self.query_one("#add-facts", Static).update(
            facts_table(self.facts or {}, str(result.get("name", "")))
        )
        self.query_one("#input-name", Input).placeholder = f"optional: {result.get('name', '')}"
        self._set_busy(False)
        self.query_one("#save", Button).focus()

    def action_save(self) -> None:
        if self.busy or not self._probed_current():
            return
        params = {
            "uri": self.value("uri"),
            "cluster": self.value("cluster"),
            "name": self.value("name") or None,
            "address": self.value("address") or None,
        }
        self.query_one("#add-error", Static).update("")
        self._set_busy(True)
        caller = self.caller
        self.submit_and_follow(
            lambda: submit_host_job(caller, "AddHost", params=params),
            on_update=self._progress,
            on_done=self._added,
            on_error=self._refused,
        )

    def _added(self, view: JobView) -> None:
        self._progress(view)
        self._set_busy(False)
        if view.state != "Succeeded":
            self._show_error(view.error or f"adding the host ended {view.state}")
            return
        announce(self, view)
        self.dismiss(str(view.result_data.get("host") or ""))


# --- the hosts table -------------------------------------------------------------------------


class HostsScreen(HostActions, ResourceScreen):
    """The hosts table with the host actions on the cursor's row, and `u` to add by URI."""

    # At 120 columns every key the table shows must fit on the key bar: the rarer ones are
    # hidden there (`?` still lists them) and the host keys have short descriptions.
    BINDINGS = [
        Binding("escape", "back", "Back", show=False, id="table.back"),
        Binding("o", "sort_next", "Sort", show=False, id="table.sort"),
        Binding("O", "sort_reverse", "Reverse", show=False, id="table.sort_reverse"),
        Binding("r", "refresh", "Refresh", show=False, id="table.refresh"),
        Binding("a", "add", "Add", show=False, id="table.add"),
        Binding("e", "edit", "Edit", show=False, id="table.edit"),
        Binding("s", "toggle_host", "En/Disable", id="host.toggle"),
        Binding("M", "prepare_maintenance", "Maint", id="host.maintenance"),
        Binding(
            "C", "cancel_maintenance", "End maintenance", show=False, id="host.end_maintenance"
        ),
        Binding("R", "reconnect_host", "Reconnect", show=False, id="host.reconnect"),
        Binding("ctrl+d", "remove_host", "Remove", id="host.remove"),
        Binding("u", "add_host_uri", "Add URI", id="host.add_uri"),
    ]

    def host_target(self) -> str | None:
        row = self.cursor_row
        return None if row is None else row.key

    def after_host_change(self, removed: bool = False) -> None:
        self.load(mode="refresh")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = self.host_action_allowed(action)
        return super().check_action(action, parameters) if allowed is None else allowed

    def action_add_host_uri(self) -> None:
        if is_read_only(self.app):
            return
        cluster = self.scope.get("cluster", "")
        if not cluster:
            self._open_add_host("")
            return
        # The scope holds the cluster's UUID; the dialog shows (and submits) its name.
        caller = self.caller
        self.run_then(
            lambda: topology.get_cluster(caller, cluster).name,
            self._open_add_host,
            what="Reading the cluster",
        )

    def _open_add_host(self, cluster: str) -> None:
        dialog = AddHostDialog(self.caller, cluster=cluster)
        self.app.push_screen(dialog, lambda added: self.load(mode="refresh") if added else None)
