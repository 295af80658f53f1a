"""Attach an ISO to a VM's CD-ROM drive, and eject it (CloudStack's attachIso/detachIso).

One ISO at a time (`VirtualMachine.iso_id`). The ISO must be Ready on its zone's
secondary storage (`template_path_in_zone`), usable by the VM's account (its own or
public), and the VM Running, Suspended or Stopped. A stopped VM only records it: its
domain is built with the ISO in its drive at the next start (engine.compute.domain). A
running one gets the media changed live (engine.hosts.domains.change_cdrom).

Both are jobs on the VM (AttachISO / DetachISO), so they queue behind its other jobs.
The hypervisor is changed first, then the row, with compare-and-set on the VM; a failed
row write puts the drive back. A job that died half-way is settled by `recover_iso`:
the drive is made to hold what the database says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from engine.compute.context import StepContext, step_done
from engine.compute.domain import iso_file
from engine.compute.operations import _connection, _vm, submit_operation
from engine.compute.states import require_state, transition
from engine.context import Caller
from engine.errors import InUse, InvalidParameter, StateConflict, StratusError
from engine.events import record_event
from engine.hosts import domains
from engine.lookup import resolve
from engine.models import (
    ImageFormat,
    ImageStore,
    Job,
    Template,
    TemplateState,
    TemplateStoreRef,
    VirtualMachine,
    VmState,
    Zone,
)
from engine.storage.templates import template_path_in_zone

log = logging.getLogger("stratus.compute")

S = VmState
ATTACH_JOB = "AttachISO"
DETACH_JOB = "DetachISO"
ISO_VM_STATES = frozenset({S.RUNNING, S.SUSPENDED, S.STOPPED})
# States in which the VM's domain runs on its host (the drive is changed live).
_LIVE = (S.RUNNING, S.SUSPENDED)


def _vm_row(session: Session, vm_ref: str) -> VirtualMachine:
    vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
    if vm.removed is not None or vm.state == S.EXPUNGED:
        raise InvalidParameter(f"VM '{vm.name}' was expunged", field="vm")
    return vm


def _iso_name(session: Session, iso_id: int | None) -> str:
    iso = session.get(Template, iso_id) if iso_id is not None else None
    return iso.name if iso is not None else f"#{iso_id}"


def check_attach_iso(caller: Caller, vm_ref: str, iso_ref: str) -> tuple[VirtualMachine, Template]:
    """Everything an attach needs, checked without writing: the VM's state, no ISO in its
    drive yet, the ISO an ISO of the VM's account (or public) Ready in the VM's zone."""
    with caller.db.read() as session:
        vm = _vm_row(session, vm_ref)
        iso = resolve(session, Template, iso_ref, "ISO", field="iso")
        zone = session.get(Zone, vm.zone_id)
        assert zone is not None
        current = _iso_name(session, vm.iso_id) if vm.iso_id is not None else None
    require_state(vm, ISO_VM_STATES, "attaching an ISO")
    if iso.removed is not None:
        raise InvalidParameter(f"ISO '{iso.name}' was deleted", field="iso")
    if iso.format != ImageFormat.ISO:
        raise InvalidParameter(
            f"template '{iso.name}' is a {iso.format} disk image, not an ISO", field="iso"
        )
    if not iso.is_public and iso.account_id != vm.account_id:
        raise InvalidParameter(
            f"ISO '{iso.name}' belongs to another account than VM '{vm.name}' and is not public",
            field="iso",
        )
    if current is not None:
        raise InUse(
            f"VM '{vm.name}' already has ISO '{current}' attached: eject it first (one at a time)",
            field="vm",
        )
    template_path_in_zone(caller.db, iso.uuid, zone.uuid)  # NotFound / StateConflict: why
    return vm, iso


def attach_iso(caller: Caller, vm_ref: str, iso_ref: str) -> Job:
    """Insert an ISO into the VM's CD-ROM drive: an AttachISO job."""
    vm, iso = check_attach_iso(caller, vm_ref, iso_ref)
    return submit_operation(caller, ATTACH_JOB, vm.uuid, {"iso": iso.uuid})


def detach_iso(caller: Caller, vm_ref: str) -> Job:
    """Eject the VM's ISO: a DetachISO job."""
    with caller.db.read() as session:
        vm = _vm_row(session, vm_ref)
    require_state(vm, ISO_VM_STATES, "ejecting its ISO")
    if vm.iso_id is None:
        raise StateConflict(f"VM '{vm.name}' has no ISO attached", field="vm")
    return submit_operation(caller, DETACH_JOB, vm.uuid)


# --- the jobs ----------------------------------------------------------------------------


def _set_drive(ctx: StepContext, vm: VirtualMachine, path: str | None) -> str:
    """Make the running VM's drive hold `path`; "" for a VM whose domain is not running."""
    if vm.state not in _LIVE:
        return ""
    if vm.host_id is None:
        raise StateConflict(f"VM '{vm.name}' is {vm.state} but has no host")
    return domains.change_cdrom(_connection(ctx, vm.host_id), vm.instance_name, path)


def _record(
    ctx: StepContext, vm: VirtualMachine, iso: Template | None, event: str, text: str
) -> None:
    with ctx.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        if row.update_count != vm.update_count:
            raise StateConflict(
                f"VM '{vm.name}' changed (now {row.state}) while its ISO was being changed"
            )
        transition(
            session, row, vm.state, vm.state, what="change its ISO", iso_id=iso.id if iso else None
        )
        record_event(session, ctx.caller, event, "VirtualMachine", row, text)


def run_attach_iso(ctx: StepContext) -> dict[str, Any]:
    # Checked again: the VM or the ISO may have changed since the job was submitted.
    vm, iso = check_attach_iso(ctx.caller, str(ctx.resource_uuid), str(ctx.params["iso"]))
    with ctx.db.read() as session:
        zone = session.get(Zone, vm.zone_id)
        assert zone is not None
    path, _fmt = template_path_in_zone(ctx.db, iso.uuid, zone.uuid)
    how = _set_drive(ctx, vm, str(path))
    if how:
        step_done(ctx, vm, "inserted", host_id=vm.host_id, how=how)
    try:
        _record(ctx, vm, iso, "ISO.ATTACH", f"ISO '{iso.name}' attached to VM '{vm.name}'")
    except BaseException:
        if how:
            try:
                _set_drive(ctx, vm, None)
            except StratusError as exc:
                log.warning("VM '%s': ISO left in its drive: %s", vm.name, exc)
        raise
    ctx.progress(100, f"ISO '{iso.name}' in the drive" + (f" ({how})" if how else ""))
    return {"vm": vm.uuid, "iso": iso.name, "live": how == "live"}


def run_detach_iso(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    require_state(vm, ISO_VM_STATES, "ejecting its ISO")
    if vm.iso_id is None:
        raise StateConflict(f"VM '{vm.name}' has no ISO attached", field="vm")
    with ctx.db.read() as session:
        iso = session.get(Template, vm.iso_id)
        path = iso_file(session, vm)
    name = iso.name if iso is not None else f"#{vm.iso_id}"
    how = _set_drive(ctx, vm, None)
    if how:
        step_done(ctx, vm, "ejected", host_id=vm.host_id, how=how)
    try:
        _record(ctx, vm, None, "ISO.DETACH", f"ISO '{name}' ejected from VM '{vm.name}'")
    except BaseException:
        if how and path:
            try:
                _set_drive(ctx, vm, path)
            except StratusError as exc:
                log.warning("VM '%s': ISO not put back in its drive: %s", vm.name, exc)
        raise
    ctx.progress(100, f"ISO '{name}' ejected" + (f" ({how})" if how else ""))
    return {"vm": vm.uuid, "iso": name, "live": how == "live"}


def recover_iso(ctx: StepContext) -> str:
    """After a dead AttachISO / DetachISO: the running VM's drive gets what the database
    records (the row is written last, so it says whether the change completed)."""
    vm = _vm(ctx)
    if vm.state not in _LIVE or vm.host_id is None:
        return f"VM '{vm.name}' is {vm.state}: its drive is set at its next start"
    with ctx.db.read() as session:
        path = iso_file(session, vm)
    try:
        _set_drive(ctx, vm, path)
    except StratusError as exc:
        return f"VM '{vm.name}': its drive could not be set to match the database: {exc}"
    return f"VM '{vm.name}': drive set to {'the attached ISO' if path else 'empty'}"


# --- what the console offers -------------------------------------------------------------


@dataclass(frozen=True)
class IsoChoice:
    uuid: str
    name: str
    line: str  # "ubuntu-24.04 (1.2 GiB, public)"


def iso_choices(caller: Caller, vm_ref: str) -> tuple[VirtualMachine, str | None, list[IsoChoice]]:
    """The VM, the name of the ISO in its drive, and the ISOs it may take: Ready in its
    zone, its account's or public, by name."""
    with caller.db.read() as session:
        vm = _vm_row(session, vm_ref)
        current = _iso_name(session, vm.iso_id) if vm.iso_id is not None else None
        rows = session.exec(
            select(Template)
            .where(
                col(Template.removed).is_(None),
                Template.format == ImageFormat.ISO,
                Template.state == TemplateState.READY,
                col(Template.is_public) | (Template.account_id == vm.account_id),
                col(Template.id).in_(
                    select(TemplateStoreRef.template_id)
                    .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
                    .where(
                        ImageStore.zone_id == vm.zone_id,
                        TemplateStoreRef.state == TemplateState.READY,
                    )
                ),
            )
            .order_by(col(Template.name), col(Template.id))
        ).all()
    choices = [
        IsoChoice(
            t.uuid,
            t.name,
            f"{t.name} ({_size(t.physical_size_bytes or t.size_bytes)}"
            f"{', public' if t.is_public else ''})",
        )
        for t in rows
    ]
    return vm, current, choices


def _size(size: int) -> str:
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    return f"{max(size, 0) / 2**20:.1f} MiB"
