"""What the console and the API read about a VM's lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select

from engine.context import Caller
from engine.errors import StateConflict
from engine.lookup import resolve
from engine.models import (
    StoragePool,
    VirtualMachine,
    VmLifecycle,
    VmState,
    Volume,
    VolumeState,
    VolumeType,
)
from engine.settings import effective_value


@dataclass(frozen=True)
class VmLifecycleView:
    vm: VirtualMachine
    state_reason: str  # why it is in Error, or why its last start failed; "" when none
    placement_summary: str  # the explanation of where its last deploy or start put it
    destroyed: datetime | None
    expunge_after: datetime | None  # a Destroyed VM is recoverable until then


def vm_lifecycle(caller: Caller, vm_ref: str) -> VmLifecycleView:
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        row = session.get(VmLifecycle, vm.id)
        delay = int(effective_value(session, "expunge.delay"))
    destroyed = row.destroyed if row is not None else None
    expunge_after = (
        destroyed + timedelta(seconds=delay)
        if destroyed is not None and vm.state == VmState.DESTROYED
        else None
    )
    return VmLifecycleView(
        vm=vm,
        state_reason=row.state_reason if row is not None else "",
        placement_summary=row.placement_summary if row is not None else "",
        destroyed=destroyed,
        expunge_after=expunge_after,
    )


@dataclass(frozen=True)
class VolumeChoice:
    uuid: str
    name: str
    line: str  # "data-1 (10 GiB, Ready, pool primary)"


def _volume_line(volume: Volume, pool: str | None) -> str:
    size = volume.size_bytes / 2**30
    where = f", pool {pool}" if pool else ", no file yet"
    return f"{volume.name} ({size:g} GiB, {volume.state}{where})"


def _choices(rows: list[tuple[Volume, str | None]]) -> list[VolumeChoice]:
    return [VolumeChoice(v.uuid, v.name, _volume_line(v, pool)) for v, pool in rows]


def attachable_volumes(caller: Caller, vm_ref: str) -> tuple[VirtualMachine, list[VolumeChoice]]:
    """The data volumes the VM's account could attach to it: detached, in its zone, Ready
    (or Allocated: created on the VM's pool by the attach). The attach checks the rest."""
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        rows = session.exec(
            select(Volume, StoragePool.name)
            .outerjoin(StoragePool, col(StoragePool.id) == Volume.pool_id)
            .where(
                col(Volume.removed).is_(None),
                col(Volume.vm_id).is_(None),
                Volume.volume_type == VolumeType.DATADISK,
                Volume.account_id == vm.account_id,
                Volume.zone_id == vm.zone_id,
                col(Volume.state).in_((VolumeState.READY, VolumeState.ALLOCATED)),
            )
            .order_by(col(Volume.name), col(Volume.id))
        ).all()
    return vm, _choices(list(rows))


def attached_data_volumes(caller: Caller, vm_ref: str) -> tuple[VirtualMachine, list[VolumeChoice]]:
    """The VM's data volumes (what a detach may take off), by device."""
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        rows = session.exec(
            select(Volume, StoragePool.name)
            .outerjoin(StoragePool, col(StoragePool.id) == Volume.pool_id)
            .where(
                col(Volume.removed).is_(None),
                Volume.vm_id == vm.id,
                Volume.volume_type == VolumeType.DATADISK,
            )
            .order_by(col(Volume.device_id), col(Volume.id))
        ).all()
    return vm, _choices(list(rows))


@dataclass(frozen=True)
class ConsoleTarget:
    """What `virsh console` needs for a VM: its host's libvirt URI and its domain."""

    vm: str
    uri: str
    domain: str

    def command(self, virsh: str = "virsh") -> list[str]:
        return [virsh, "-c", self.uri, "console", self.domain]


def console_target(caller: Caller, vm_ref: str) -> ConsoleTarget:
    """The console of a Running VM; StateConflict naming the VM and its state otherwise."""
    from engine.compute.states import require_state
    from engine.models import Host

    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        host = session.get(Host, vm.host_id) if vm.host_id is not None else None
    require_state(vm, {VmState.RUNNING}, "its console")
    if host is None:
        raise StateConflict(f"VM '{vm.name}' is Running but has no host", field="vm")
    return ConsoleTarget(vm.name, host.uri, vm.instance_name)
