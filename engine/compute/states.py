"""The VM state machine and its compare-and-set transitions.

A transition is one `UPDATE virtualmachine SET state=:new, update_count=update_count+1
WHERE id=:id AND state IN (:expected)`: a rowcount of 0 means someone else moved the VM
first, and the caller gets a StateConflict naming the VM and both states, never a silent
overwrite (ARCHITECTURE rule 4).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from engine.errors import StateConflict
from engine.models import VirtualMachine, VmLifecycle, VmState, utcnow

S = VmState

# Which states each state may move to (CloudStack's VirtualMachine.State transitions that
# Stratus uses). Starting, Stopping, Migrating and Expunging belong to a live job.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.STARTING: frozenset({S.RUNNING, S.STOPPED, S.ERROR}),
    S.RUNNING: frozenset({S.STOPPING, S.MIGRATING, S.STOPPED, S.RUNNING, S.SUSPENDED}),
    # A suspended VM resumes, or is stopped / destroyed (its domain forced off).
    S.SUSPENDED: frozenset({S.RUNNING, S.STOPPING, S.SUSPENDED}),
    S.STOPPING: frozenset({S.STOPPED, S.RUNNING, S.SUSPENDED, S.DESTROYED}),
    S.STOPPED: frozenset({S.STARTING, S.DESTROYED, S.STOPPED}),
    S.MIGRATING: frozenset({S.RUNNING, S.STOPPED}),
    S.DESTROYED: frozenset({S.STOPPED, S.EXPUNGING}),
    S.ERROR: frozenset({S.EXPUNGING, S.DESTROYED}),
    S.EXPUNGING: frozenset({S.EXPUNGED, S.DESTROYED, S.ERROR}),
    S.EXPUNGED: frozenset(),
    S.UNKNOWN: frozenset({S.STOPPED, S.RUNNING, S.ERROR}),
}

TRANSITIONAL = frozenset({S.STARTING, S.STOPPING, S.MIGRATING, S.EXPUNGING})


def _names(states: Iterable[str]) -> str:
    listed = sorted(str(s) for s in states)
    return listed[0] if len(listed) == 1 else " or ".join(listed)


def transition(
    session: Session,
    vm: VirtualMachine,
    expected: str | Iterable[str],
    new: str,
    *,
    what: str | None = None,
    **values: Any,
) -> None:
    """Move `vm` from one of `expected` to `new` (and set `values`), or raise StateConflict.

    The row object is updated to what was written, so the caller can go on using it.
    """
    wanted = {expected} if isinstance(expected, str) else set(expected)
    for state in wanted:
        if new not in TRANSITIONS.get(state, frozenset()):
            raise StateConflict(f"VM '{vm.name}': no transition from {state} to {new}")
    result = session.execute(
        update(VirtualMachine)
        .where(col(VirtualMachine.id) == vm.id, col(VirtualMachine.state).in_(wanted))
        .values(state=new, update_count=VirtualMachine.update_count + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        current = session.get(VirtualMachine, vm.id, populate_existing=True)
        now = current.state if current is not None else "gone"
        action = f"; cannot {what}" if what else ""
        raise StateConflict(
            f"VM '{vm.name}' is {now}, expected {_names(wanted)} to move it to {new}{action}",
            field="state",
        )
    vm.state = new
    vm.update_count += 1
    for key, value in values.items():
        setattr(vm, key, value)


def require_state(vm: VirtualMachine, allowed: Iterable[str], what: str) -> None:
    """Refuse an operation up front (before anything is written) when the VM's state does
    not allow it."""
    allowed = set(allowed)
    if vm.state not in allowed:
        raise StateConflict(
            f"VM '{vm.name}' is {vm.state}; {what} needs it {_names(allowed)}", field="state"
        )


def set_reason(session: Session, vm_id: int, reason: str, **values: Any) -> VmLifecycle:
    """Write the VM's lifecycle details (the reason of its last failure, destroy time ...)."""
    row = session.get(VmLifecycle, vm_id)
    if row is None:
        row = VmLifecycle(vm_id=vm_id)
        session.add(row)
    row.state_reason = reason[:4096]
    for key, value in values.items():
        setattr(row, key, value)
    row.updated = utcnow()
    return row
