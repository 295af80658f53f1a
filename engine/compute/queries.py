"""What the console and the API read about a VM's lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.context import Caller
from engine.lookup import resolve
from engine.models import VirtualMachine, VmLifecycle, VmState
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
