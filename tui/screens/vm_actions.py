"""VM actions, from the VMs table and from a VM's detail screen.

Every action calls an `engine.compute` service; the hypervisor ones run as jobs whose
progress the jobs panel (`j`) shows and whose outcome is a toast:

- `s` start, `b` reboot, `t` stop (the guest is asked to shut down), `T` stop forced
  (the domain is switched off). Stop, force stop and reboot confirm first.
- `ctrl+d` destroy (the VM stays recoverable until expunged), `v` recover a destroyed
  VM (immediate), `X` expunge: the confirmation lists its volumes and NICs and asks for
  the VM's name to be typed.
- `m` migrate: the hosts of the VM's cluster, each with whether it fits and why not
  (`engine.vm_views.migration_targets`); Enter on a fitting host submits the migration.
- `c` change offering (Stopped VMs): the active offerings, the current one marked.
- `p` suspend (confirms: the guest freezes, keeping its memory and host capacity), `P`
  resume.
- `A` attach a data volume (the account's detached volumes in the VM's zone), `D` detach
  one (its data volumes, then a confirmation). `a` and `d` stay the table's Add and Details.
- `i` attach an ISO (the zone's Ready ISOs), `I` eject it (confirms).
- `ctrl+o` the VM's serial console: the console hands the terminal to
  `virsh -c <host uri> console <domain>` (App.suspend) and takes it back when virsh ends
  (ctrl+] leaves it). A toast says why when the VM is not Running, virsh is missing, or the
  terminal cannot be handed over (a web or test driver).
- In the table, `space` marks rows; `s`, `t` and `T` then act on every marked VM after
  one confirmation that lists them all.

None of these keys exist in read-only mode (`check_action` hides and refuses them).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from engine import compute, details, vm_views
from engine.compute.isos import IsoChoice, iso_choices
from engine.compute.queries import (
    ConsoleTarget,
    VolumeChoice,
    attachable_volumes,
    attached_data_volumes,
    console_target,
)
from engine.context import Caller
from engine.custom_sizes import MIB
from engine.details import VmDetail
from engine.errors import InvalidParameter
from engine.job_views import JobView
from engine.models import Job, VirtualMachine
from engine.storage.volumes import attach_volume, detach_volume
from engine.vm_views import MigrationTargets, OfferingChoice, VmSummary
from tui.screens.forms import FormField, FormScreen
from tui.screens.jobs import JobWatching, announce
from tui.screens.live import is_read_only
from tui.screens.resources import ResourceScreen
from tui.widgets.confirm import Confirmation, ConfirmDialog

VM_BINDINGS = [
    Binding("s", "start_vm", "Start", id="vm.start"),
    Binding("t", "stop_vm", "Stop", id="vm.stop"),
    Binding("T", "force_stop_vm", "Force stop", id="vm.force_stop"),
    Binding("b", "reboot_vm", "Reboot", id="vm.reboot"),
    Binding("m", "migrate_vm", "Migrate", id="vm.migrate"),
    Binding("c", "change_offering", "Offering", id="vm.offering"),
    Binding("ctrl+d", "destroy_vm", "Destroy", id="vm.destroy"),
    Binding("v", "recover_vm", "Recover", id="vm.recover"),
    Binding("X", "expunge_vm", "Expunge", id="vm.expunge"),
    # Not in the footer (it is full): `?` lists them.
    Binding("p", "suspend_vm", "Suspend", show=False, id="vm.suspend"),
    Binding("P", "resume_vm", "Resume", show=False, id="vm.resume"),
    Binding("A", "attach_volume", "Attach volume", show=False, id="vm.attach_volume"),
    Binding("D", "detach_volume", "Detach volume", show=False, id="vm.detach_volume"),
    Binding("i", "attach_iso", "Attach ISO", show=False, id="vm.attach_iso"),
    Binding("I", "eject_iso", "Eject ISO", show=False, id="vm.eject_iso"),
    Binding("ctrl+o", "vm_console", "Console (virsh)", show=False, id="vm.console"),
]
VM_ACTIONS = {
    "start_vm",
    "stop_vm",
    "force_stop_vm",
    "reboot_vm",
    "migrate_vm",
    "change_offering",
    "destroy_vm",
    "recover_vm",
    "expunge_vm",
    "mark_vm",
    "suspend_vm",
    "resume_vm",
    "attach_volume",
    "detach_volume",
    "attach_iso",
    "eject_iso",
    "vm_console",
}
BULK_ACTIONS = {"start_vm", "stop_vm", "force_stop_vm"}


def _detail_lines(detail: VmDetail) -> list[str]:
    """A VM, its volumes and its NICs: what destroy and expunge take away."""
    vm = detail.vm
    where = f" on host {detail.host_name}" if detail.host_name else ""
    lines = [f"VM {vm.name} ({vm.state}{where}) in zone {detail.zone_name}"]
    lines += [
        f"volume {v.name} ({v.volume_type}, {v.size_bytes // 2**30} GiB"
        f"{', pool ' + v.pool if v.pool else ''})"
        for v in detail.volumes
    ]
    for nic in detail.nics or []:
        lines.append(f"NIC {nic.mac_address} on {nic.network}: {', '.join(nic.ip_addresses)}")
    return lines


class VmActions(JobWatching):
    """Mixed into a screen with a `caller`: the VM actions on `vm_targets()`."""

    def vm_targets(self) -> list[str]:
        """The UUIDs the keys act on: the marked rows, else the cursor's (or shown) VM."""
        raise NotImplementedError

    def after_vm_change(self) -> None:
        """Show the change (reload the table or the detail)."""

    def hidden_targets(self) -> int:
        """How many of the VMs acted on the screen does not show (a filter hides them)."""
        return 0

    def vm_action_allowed(self, action: str) -> bool | None:
        """For `check_action`: None when `action` is not a VM action."""
        if action not in VM_ACTIONS:
            return None
        screen: Any = self
        return not is_read_only(screen.app) and bool(self.vm_targets())

    def _single(self) -> str | None:
        targets = self.vm_targets()
        return targets[0] if len(targets) == 1 else None

    def _needs_one(self, what: str) -> str | None:
        screen: Any = self
        targets = self.vm_targets()
        if is_read_only(screen.app) or not targets:
            return None
        if len(targets) > 1:
            screen.notify(f"{what} acts on one VM: unmark the others", severity="warning")
            return None
        return targets[0]

    # --- job submission --------------------------------------------------------------------

    def _submit(self, submits: Sequence[tuple[str, Callable[[], Job]]], what: str) -> None:
        """Submit one job per VM and follow each; a toast per outcome."""
        screen: Any = self
        for _name, submit in submits:
            self.submit_and_follow(submit, on_done=self._vm_job_done)
        count = len(submits)
        names = ", ".join(name for name, _s in submits)
        screen.notify(
            escape(f"{what} {names}: {count} job{'s' if count != 1 else ''} submitted (j: jobs)"),
            title="VM",
        )
        self.after_vm_change()

    def _vm_job_done(self, view: JobView) -> None:
        announce(self, view)
        self.after_vm_change()

    def _with_summaries(self, then: Callable[[list[VmSummary]], None]) -> None:
        screen: Any = self
        targets = self.vm_targets()
        if is_read_only(screen.app) or not targets:
            return
        caller = self.caller
        self.run_then(lambda: vm_views.vm_summaries(caller, targets), then, what="Reading the VMs")

    def _confirm_then(
        self,
        summaries: list[VmSummary],
        *,
        title: str,
        action: str,
        warning: str,
        submit: Callable[[Caller, str], Job],
        what: str,
    ) -> None:
        screen: Any = self
        caller = self.caller
        affected = [s.line for s in summaries]
        hidden = self.hidden_targets()
        if hidden:
            affected.append(f"{hidden} of these {len(summaries)} VMs are hidden by the filter")
        confirmation = Confirmation(title=title, action=action, affected=affected, warning=warning)
        submits = [
            (s.name, lambda uuid=s.uuid: submit(caller, uuid))  # type: ignore[misc]
            for s in summaries
        ]
        screen.app.push_screen(
            ConfirmDialog(confirmation), lambda yes: self._submit(submits, what) if yes else None
        )

    @staticmethod
    def _how_many(summaries: list[VmSummary]) -> str:
        if len(summaries) == 1:
            return f"VM {summaries[0].name}"
        return f"{len(summaries)} VMs"

    # --- start, stop, reboot -----------------------------------------------------------------

    def action_start_vm(self) -> None:
        def go(summaries: list[VmSummary]) -> None:
            caller = self.caller
            if len(summaries) == 1:  # starting one VM changes nothing that runs: no dialog
                uuid = summaries[0].uuid
                self._submit([(summaries[0].name, lambda: compute.start_vm(caller, uuid))], "Start")
                return
            self._confirm_then(
                summaries,
                title=f"Start {self._how_many(summaries)}?",
                action="Start",
                warning="",
                submit=compute.start_vm,
                what="Start",
            )

        self._with_summaries(go)

    def action_stop_vm(self) -> None:
        self._stop(forced=False)

    def action_force_stop_vm(self) -> None:
        self._stop(forced=True)

    def _stop(self, *, forced: bool) -> None:
        def go(summaries: list[VmSummary]) -> None:
            self._confirm_then(
                summaries,
                title=f"{'Force stop' if forced else 'Stop'} {self._how_many(summaries)}?",
                action="Force stop" if forced else "Stop",
                warning=(
                    "The domain is switched off at once: unsaved guest data is lost."
                    if forced
                    else "The guest is asked to shut down; it is forced off after the timeout."
                ),
                submit=lambda caller, uuid: compute.stop_vm(caller, uuid, forced=forced),
                what="Force stop" if forced else "Stop",
            )

        self._with_summaries(go)

    def action_reboot_vm(self) -> None:
        if self._needs_one("Reboot") is None:
            return

        def go(summaries: list[VmSummary]) -> None:
            self._confirm_then(
                summaries,
                title=f"Reboot {self._how_many(summaries)}?",
                action="Reboot",
                warning="The guest restarts: its services are interrupted.",
                submit=compute.reboot_vm,
                what="Reboot",
            )

        self._with_summaries(go)

    # --- destroy, recover, expunge -----------------------------------------------------------

    def _with_detail(self, what: str, then: Callable[[VmDetail], None]) -> None:
        uuid = self._needs_one(what)
        if uuid is None:
            return
        caller = self.caller
        self.run_then(lambda: details.vm_detail(caller, uuid), then, what="Reading the VM")

    def action_destroy_vm(self) -> None:
        def go(detail: VmDetail) -> None:
            vm = detail.vm
            screen: Any = self
            caller = self.caller
            confirmation = Confirmation(
                title=f"Destroy VM {vm.name}?",
                action="Destroy",
                affected=_detail_lines(detail),
                warning="The VM is switched off; it can be recovered until it is expunged.",
            )
            submit = [(vm.name, lambda: compute.destroy_vm(caller, vm.uuid))]
            screen.app.push_screen(
                ConfirmDialog(confirmation),
                lambda yes: self._submit(submit, "Destroy") if yes else None,
            )

        self._with_detail("Destroy", go)

    def action_expunge_vm(self) -> None:
        def go(detail: VmDetail) -> None:
            vm = detail.vm
            screen: Any = self
            caller = self.caller
            confirmation = Confirmation(
                title=f"Expunge VM {vm.name}?",
                action="Expunge",
                affected=_detail_lines(detail),
                warning="Its volumes are deleted and its addresses released: no way back.",
                type_to_confirm=vm.name,
            )
            submit = [(vm.name, lambda: compute.expunge_vm(caller, vm.uuid))]
            screen.app.push_screen(
                ConfirmDialog(confirmation),
                lambda yes: self._submit(submit, "Expunge") if yes else None,
            )

        self._with_detail("Expunge", go)

    def action_recover_vm(self) -> None:
        uuid = self._needs_one("Recover")
        if uuid is None:
            return
        caller = self.caller
        screen: Any = self

        def done(vm: Any) -> None:
            screen.notify(escape(f"VM {vm.name} recovered: Stopped"), title="VM")
            self.after_vm_change()

        self.run_then(lambda: compute.recover_vm(caller, uuid), done, what="Recover")

    # --- migrate, change offering ------------------------------------------------------------

    def _choose_then_submit(
        self,
        what: str,
        dialog: Callable[[Caller, str], ChoiceDialog],
        submit: Callable[[str, str], Job],
        done: Callable[[str], str],
    ) -> None:
        """Pick from `dialog` (it dismisses with (uuid, name, VM name)), then submit
        `submit(vm uuid, picked uuid)`; `done(picked name)` words the toast."""
        uuid = self._needs_one(what)
        if uuid is None:
            return
        screen: Any = self

        def chosen(choice: tuple[str, str, str] | None) -> None:
            if choice is not None:
                picked_uuid, picked_name, vm_name = choice
                self._submit([(vm_name, lambda: submit(uuid, picked_uuid))], done(picked_name))

        screen.app.push_screen(dialog(self.caller, uuid), chosen)

    def action_migrate_vm(self) -> None:
        caller = self.caller
        self._choose_then_submit(
            "Migrate",
            MigrateDialog,
            lambda vm, host: compute.migrate_vm(caller, vm, host),
            lambda host: f"Migrate to host {host}:",
        )

    def action_change_offering(self) -> None:
        uuid = self._needs_one("Change offering")
        if uuid is None:
            return
        screen: Any = self
        caller = self.caller

        def chosen(picked: tuple[OfferingChoice, str] | None) -> None:
            if picked is None:
                return
            choice, vm_name = picked

            def changed(vm_uuid: str | None) -> None:
                if vm_uuid is None:
                    return
                screen.notify(escape(f"VM {vm_name} now has offering {choice.name}"), title="VM")
                self.after_vm_change()

            if choice.limits is not None:  # the VM names its own sizes: ask for them
                screen.app.push_screen(CustomSizesForm(caller, uuid, vm_name, choice), changed)
                return
            self.run_then(
                lambda: compute.change_offering(caller, uuid, choice.uuid),
                lambda vm: changed(vm.uuid),
                what="Change offering",
            )

        screen.app.push_screen(OfferingDialog(caller, uuid), chosen)

    # --- suspend, resume ------------------------------------------------------------------------

    def action_suspend_vm(self) -> None:
        if self._needs_one("Suspend") is None:
            return

        def go(summaries: list[VmSummary]) -> None:
            self._confirm_then(
                summaries,
                title=f"Suspend {self._how_many(summaries)}?",
                action="Suspend",
                warning="The guest is frozen until it is resumed (P); it keeps its memory "
                "and its host's capacity.",
                submit=compute.suspend_vm,
                what="Suspend",
            )

        self._with_summaries(go)

    def action_resume_vm(self) -> None:
        if self._needs_one("Resume") is None:
            return

        def go(summaries: list[VmSummary]) -> None:
            caller = self.caller
            uuid = summaries[0].uuid  # resuming stops nothing: no dialog
            self._submit([(summaries[0].name, lambda: compute.resume_vm(caller, uuid))], "Resume")

        self._with_summaries(go)

    # --- volumes and ISOs ------------------------------------------------------------------------

    def action_attach_volume(self) -> None:
        caller = self.caller
        self._choose_then_submit(
            "Attach volume",
            lambda c, vm: VolumeDialog(c, vm, attach=True),
            lambda vm, volume: attach_volume(caller, volume, vm),
            lambda volume: f"Attach volume {volume} to",
        )

    def action_detach_volume(self) -> None:
        uuid = self._needs_one("Detach volume")
        if uuid is None:
            return
        screen: Any = self
        caller = self.caller

        def chosen(choice: tuple[str, str, str] | None) -> None:
            if choice is None:
                return
            volume_uuid, line, vm_name = choice
            confirmation = Confirmation(
                title=f"Detach a volume from VM {vm_name}?",
                action="Detach",
                affected=[f"volume {line}", f"VM {vm_name} loses this disk"],
                warning="The guest loses the disk at once: unmount it in the guest first.",
            )
            submit = [(vm_name, lambda: detach_volume(caller, volume_uuid))]
            screen.app.push_screen(
                ConfirmDialog(confirmation),
                lambda yes: self._submit(submit, "Detach a volume from") if yes else None,
            )

        screen.app.push_screen(VolumeDialog(caller, uuid, attach=False), chosen)

    def action_attach_iso(self) -> None:
        caller = self.caller
        self._choose_then_submit(
            "Attach ISO",
            IsoDialog,
            lambda vm, iso: compute.attach_iso(caller, vm, iso),
            lambda iso: f"Attach ISO {iso} to",
        )

    def action_eject_iso(self) -> None:
        uuid = self._needs_one("Eject ISO")
        if uuid is None:
            return
        screen: Any = self
        caller = self.caller

        def go(found: tuple[VirtualMachine, str | None, list[IsoChoice]]) -> None:
            vm, current, _choices = found
            if current is None:
                screen.notify(escape(f"VM {vm.name} has no ISO attached"), severity="warning")
                return
            confirmation = Confirmation(
                title=f"Eject ISO {current} from VM {vm.name}?",
                action="Eject",
                affected=[f"ISO {current} in the CD-ROM drive of VM {vm.name} ({vm.state})"],
                warning="A guest reading from the disc loses it at once."
                if vm.state != "Stopped"
                else "",
            )
            submit = [(vm.name, lambda: compute.detach_iso(caller, uuid))]
            screen.app.push_screen(
                ConfirmDialog(confirmation),
                lambda yes: self._submit(submit, f"Eject ISO {current} from") if yes else None,
            )

        self.run_then(lambda: iso_choices(caller, uuid), go, what="Eject ISO")

    # --- console ---------------------------------------------------------------------------------

    def action_vm_console(self) -> None:
        uuid = self._needs_one("Console")
        if uuid is None:
            return
        caller = self.caller
        self.run_then(lambda: console_target(caller, uuid), self.open_console, what="Console")

    def open_console(self, target: ConsoleTarget) -> None:
        """Hand the terminal to `virsh console` and take it back when virsh ends."""
        screen: Any = self
        virsh = shutil.which("virsh")
        command = target.command(virsh or "virsh")
        shown = " ".join(command)
        if virsh is None:
            screen.notify(
                escape(f"virsh is not installed here: cannot open the console ({shown})"),
                title="Console",
                severity="error",
            )
            return
        try:
            with screen.app.suspend():
                print(f"VM {target.vm}: {shown}  (ctrl+] comes back to Stratus)", flush=True)
                # The terminal is virsh's until it ends: blocking here is the point.
                code = subprocess.run(command, check=False).returncode
        except SuspendNotSupported:
            screen.notify(
                escape(f"this console cannot hand over its terminal; run: {shown}"),
                title="Console",
                severity="warning",
            )
            return
        screen.notify(
            escape(f"console of VM {target.vm} closed" + (f" (virsh exit {code})" if code else "")),
            title="Console",
            severity="error" if code else "information",
        )


# --- dialogs ---------------------------------------------------------------------------------


class ChoiceDialog(JobWatching, ModalScreen[Any]):
    """A modal list loaded from the engine in a thread; Enter picks, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choice.cancel")]
    DEFAULT_CSS = """
    ChoiceDialog {
        align: center middle;
    }
    ChoiceDialog #choice-box {
        width: 100;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    ChoiceDialog #choice-title {
        text-style: bold;
        padding: 0 0 1 0;
    }
    ChoiceDialog #choice-list {
        height: auto;
        max-height: 20;
        border: round $secondary;
        background: $background;
    }
    ChoiceDialog #choice-list > .option-list--option-disabled {
        color: $text-muted;
    }
    ChoiceDialog #choice-note {
        height: auto;
        padding: 1 0 0 0;
    }
    ChoiceDialog #choice-buttons {
        height: auto;
        align-horizontal: right;
        padding: 1 0 0 0;
    }
    """

    def __init__(self, caller: Caller, vm_uuid: str) -> None:
        super().__init__()
        self.caller = caller
        self.vm_uuid = vm_uuid
        self.loaded = False

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-box"):
            yield Static("Loading…", id="choice-title", markup=False)
            yield OptionList(id="choice-list")
            yield Static("", id="choice-note", markup=False)
            with Horizontal(id="choice-buttons"):
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        if is_read_only(self.app):
            self.dismiss(None)
            return
        self.query_one("#choice-list", OptionList).focus()
        self.run_then(self.fetch, self._loaded, what="Loading")

    def fetch(self) -> Any:
        raise NotImplementedError

    def fill(self, data: Any) -> tuple[str, list[Option], str]:
        raise NotImplementedError

    def _loaded(self, data: Any) -> None:
        self.data = data
        title, options, note = self.fill(data)
        self.query_one("#choice-title", Static).update(Text(title))
        options_list = self.query_one("#choice-list", OptionList)
        options_list.clear_options()
        options_list.add_options(options)
        self.query_one("#choice-note", Static).update(Text(note))
        for index, option in enumerate(options):
            if not option.disabled:  # the first one that can be chosen
                options_list.highlighted = index
                break
        self.loaded = True

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def target_text(target: vm_views.MigrationTarget) -> Text:
    line = Text()
    if target.fits:
        line.append("✓ fits    ", style="bold green")
    else:
        line.append("✗ no fit  ", style="bold red")
    line.append(f"{target.host:<16}", style="bold")
    line.append(f" {target.status + '/' + target.resource_state:<22} ")
    line.append(target.reason)
    return line


class MigrateDialog(ChoiceDialog):
    """The hosts of the VM's cluster, fit or no fit and why; dismisses with
    (host uuid, host name, VM name) or None."""

    def fetch(self) -> MigrationTargets:
        return vm_views.migration_targets(self.caller, self.vm_uuid)

    def fill(self, data: MigrationTargets) -> tuple[str, list[Option], str]:
        title = (
            f"Migrate VM {data.vm} (on host {data.host or '-'}) within cluster "
            f"{data.cluster or '-'}: {data.fitting} of {len(data.targets)} hosts fit"
        )
        options = [
            Option(target_text(t), id=t.host_uuid, disabled=not t.fits) for t in data.targets
        ]
        note = data.note or (
            "Enter migrates to the highlighted host (live, its disks stay on the cluster's storage)"
            if data.fitting
            else "No host of the cluster can take it now."
        )
        return title, options, note

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        data: MigrationTargets = self.data
        for target in data.targets:
            if target.host_uuid == event.option.id and target.fits:
                self.dismiss((target.host_uuid, target.host, data.vm))


class OfferingDialog(ChoiceDialog):
    """The active service offerings; dismisses with (offering uuid, name) or None."""

    def fetch(self) -> tuple[VmSummary, list[OfferingChoice]]:
        summary = vm_views.vm_summaries(self.caller, [self.vm_uuid])[0]
        return summary, vm_views.offering_choices(self.caller, self.vm_uuid)

    def fill(self, data: tuple[VmSummary, list[OfferingChoice]]) -> tuple[str, list[Option], str]:
        summary, choices = data
        title = f"Change the offering of VM {summary.name} ({summary.state})"
        options = [Option(Text(c.line), id=c.uuid, disabled=c.current) for c in choices]
        note = (
            "Enter gives the VM the highlighted offering's sizes"
            if summary.state == "Stopped"
            else f"VM {summary.name} is {summary.state}: stop it first (the engine refuses)"
        )
        return title, options, note

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        summary, choices = self.data
        for choice in choices:
            if choice.uuid == event.option.id and not choice.current:
                self.dismiss((choice, summary.name))


class CustomSizesForm(FormScreen):
    """A customized offering's sizes for a Stopped VM: CPU count, speed and memory within
    the offering's limits (shown under each input); the engine checks them and places
    nothing if no host of the zone could run the VM."""

    NOUN = "VM's sizes"
    FIELDS = [
        FormField("cpu_count", "CPU count"),
        FormField("cpu_mhz", "CPU speed (MHz)"),
        FormField("memory_bytes", "Memory (MiB)"),
    ]

    def __init__(self, caller: Caller, vm_uuid: str, vm_name: str, choice: OfferingChoice) -> None:
        super().__init__(caller)
        self.vm_uuid = vm_uuid
        self.vm_name = vm_name
        self.choice = choice

    def title_text(self) -> str:
        limits = self.choice.limits
        assert limits is not None
        return (
            f"Sizes of VM {self.vm_name} with customized offering {self.choice.name}: "
            f"{limits.range_text('cpu_count')}, {limits.range_text('cpu_mhz')}, "
            f"{limits.range_text('memory_bytes')}"
        )

    def initial_values(self) -> dict[str, str]:
        # The VM's own sizes: changing to this offering often means "the same, but one
        # more CPU".
        summary = vm_views.vm_summaries(self.caller, [self.vm_uuid])[0]
        return {
            "cpu_count": str(summary.cpu_count),
            "cpu_mhz": str(summary.cpu_mhz),
            "memory_bytes": str(summary.memory_bytes // MIB),
        }

    def submit(self, values: dict[str, str]) -> str:
        label = f"VM '{self.vm_name}'"
        sizes = {name: _whole(label, self.fields(), name, values[name]) for name in values}
        vm = compute.change_offering(
            self.caller,
            self.vm_uuid,
            self.choice.uuid,
            cpu_count=sizes["cpu_count"],
            cpu_mhz=sizes["cpu_mhz"],
            memory_bytes=sizes["memory_bytes"] * MIB,
        )
        return vm.uuid


def _whole(label: str, fields: list[FormField], name: str, text: str) -> int:
    what = next(f.label for f in fields if f.name == name)
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidParameter(
            f"{label}: {what.lower()} {text.strip()!r} is not a whole number", field=name
        ) from None


class VolumeDialog(ChoiceDialog):
    """Attach: the account's detached volumes in the VM's zone; detach: the VM's data
    volumes. Dismisses with (volume uuid, its line, VM name) or None."""

    def __init__(self, caller: Caller, vm_uuid: str, *, attach: bool) -> None:
        super().__init__(caller, vm_uuid)
        self.attach = attach

    def fetch(self) -> tuple[VirtualMachine, list[VolumeChoice]]:
        if self.attach:
            return attachable_volumes(self.caller, self.vm_uuid)
        return attached_data_volumes(self.caller, self.vm_uuid)

    def fill(
        self, data: tuple[VirtualMachine, list[VolumeChoice]]
    ) -> tuple[str, list[Option], str]:
        vm, choices = data
        options = [Option(Text(c.line), id=c.uuid) for c in choices]
        if self.attach:
            title = f"Attach a volume to VM {vm.name} ({vm.state})"
            note = (
                "Enter attaches the highlighted volume (live when the VM runs)"
                if choices
                else "No detached volume of its account in its zone: create one first"
            )
        else:
            title = f"Detach a volume from VM {vm.name} ({vm.state})"
            note = (
                "Enter asks to confirm the detach of the highlighted volume"
                if choices
                else f"VM {vm.name} has no data volume (the root volume stays)"
            )
        return title, options, note

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        vm, choices = self.data
        for choice in choices:
            if choice.uuid == event.option.id:
                shown = choice.name if self.attach else choice.line
                self.dismiss((choice.uuid, shown, vm.name))


class IsoDialog(ChoiceDialog):
    """The ISOs Ready in the VM's zone it may take; dismisses with (ISO uuid, name, VM name)
    or None. With an ISO already in the drive, none can be chosen (eject it first)."""

    def fetch(self) -> tuple[VirtualMachine, str | None, list[IsoChoice]]:
        return iso_choices(self.caller, self.vm_uuid)

    def fill(
        self, data: tuple[VirtualMachine, str | None, list[IsoChoice]]
    ) -> tuple[str, list[Option], str]:
        vm, current, choices = data
        title = f"Attach an ISO to VM {vm.name} ({vm.state})"
        options = [Option(Text(c.line), id=c.uuid, disabled=current is not None) for c in choices]
        if current is not None:
            note = f"ISO {current} is in its drive: eject it first (I)"
        elif choices:
            note = "Enter inserts the highlighted ISO (live when the VM runs)"
        else:
            note = "No ISO is Ready in the VM's zone: register or copy one there first"
        return title, options, note

    @on(OptionList.OptionSelected, "#choice-list")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        vm, current, choices = self.data
        for choice in choices:
            if choice.uuid == event.option.id and current is None:
                self.dismiss((choice.uuid, choice.name, vm.name))


# --- the VMs table ---------------------------------------------------------------------------


class VmsScreen(VmActions, ResourceScreen):
    """The VMs table with the VM actions on the cursor's row or on the marked rows."""

    BINDINGS = [
        *VM_BINDINGS,
        Binding("space", "mark_vm", "Mark", id="vm.mark"),
        Binding("n", "deploy_vm", "Deploy", id="vm.deploy"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marked: dict[str, str] = {}  # uuid -> name, in marking order

    def vm_targets(self) -> list[str]:
        if self.marked:
            return list(self.marked)
        row = self.cursor_row
        return [] if row is None else [row.key]

    def after_vm_change(self) -> None:
        self.load(mode="refresh")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "mark_vm":
            return not is_read_only(self.app) and self.cursor_row is not None
        if action == "deploy_vm":
            return not is_read_only(self.app)
        allowed = self.vm_action_allowed(action)
        if allowed and self.marked and action not in BULK_ACTIONS:
            return None  # shown dimmed: it acts on one VM
        return super().check_action(action, parameters) if allowed is None else allowed

    def _cells(self, row: Any, highlighted: bool) -> list[Text]:
        cells = super()._cells(row, highlighted)
        if row.key in self.marked:
            first = Text("● ", style="bold")
            first.append_text(cells[0])
            cells[0] = first
        return cells

    def action_deploy_vm(self) -> None:
        if is_read_only(self.app):
            return
        from tui.screens.deploy import DeployScreen

        zone = self.scope.get("zone")
        shower = getattr(self.app, "show_screen", None)
        if shower is not None:
            shower(lambda: DeployScreen(self.caller, zone=zone))
        else:
            self.app.push_screen(DeployScreen(self.caller, zone=zone))

    def action_mark_vm(self) -> None:
        row = self.cursor_row
        if row is None or is_read_only(self.app):
            return
        if row.key in self.marked:
            del self.marked[row.key]
        else:
            self.marked[row.key] = row.cells[0]
        self.table.update_row(row.key, self._cells(row, False))
        self.table.move_cursor(row=min(self.table.cursor_row + 1, len(self.rows) - 1))
        self.refresh_bindings()
        self._show_status()

    def hidden_targets(self) -> int:
        return len(set(self.marked) - {r.key for r in self.rows})

    def status_text(self) -> Text:
        text = super().status_text()
        if self.marked:
            hidden = self.hidden_targets()
            note = f"{len(self.marked)} marked"
            if hidden:
                note += f" ({hidden} not shown)"
            text = Text(f"{note} · ").append_text(text)
        return text

    def _submit(self, submits: Sequence[tuple[str, Callable[[], Job]]], what: str) -> None:
        if len(submits) > 1:  # a bulk action done: the marks have served
            self.unmark_all()
        super()._submit(submits, what)

    def unmark_all(self) -> None:
        marked, self.marked = set(self.marked), {}
        for row in self.rows:
            if row.key in marked:
                self.table.update_row(row.key, self._cells(row, False))
        self.refresh_bindings()
        self._show_status()
