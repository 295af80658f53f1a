"""Suspend and resume a VM: its domain paused on its host, memory and host capacity kept.

CloudStack has no Suspended state for KVM guests, but libvirt's pause is what an operator
reaches for to freeze a misbehaving guest without losing it. A Suspended VM keeps its
placement claim (it still holds its host's memory and CPU share), resumes on the same
host, and can be stopped or destroyed (its domain is then forced off). It cannot be
migrated, rebooted, or have volumes attached until it is resumed.

Each is a job on the VM (SuspendVM / ResumeVM). The hypervisor is asked first and the
state moves after, with compare-and-set; a job that dies between the two is finished by
its recover hook from what the host shows (a paused domain means Suspended).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from engine.compute.context import StepContext, step_done
from engine.compute.operations import _connection, _move, _vm, submit_operation
from engine.context import Caller
from engine.errors import StateConflict, StratusError
from engine.hosts import domains
from engine.models import Job, VirtualMachine, VmState

S = VmState
log = logging.getLogger("stratus.compute")


def suspend_vm(caller: Caller, vm_ref: str) -> Job:
    """Pause a Running VM's domain (a SuspendVM job)."""
    return submit_operation(caller, "SuspendVM", vm_ref)


def resume_vm(caller: Caller, vm_ref: str) -> Job:
    """Let a Suspended VM's domain run again (a ResumeVM job)."""
    return submit_operation(caller, "ResumeVM", vm_ref)


def _host_of(vm: VirtualMachine) -> int:
    if vm.host_id is None:
        raise StateConflict(f"VM '{vm.name}' is {vm.state} but has no host")
    return vm.host_id


def run_suspend(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    # Running → Running first: the job must find the VM Running, and a concurrent change
    # bumps update_count, so nothing moves behind our back between the check and the pause.
    _move(ctx, vm, S.RUNNING, S.RUNNING, "suspend it")
    host_id = _host_of(vm)
    hc = _connection(ctx, host_id)
    domains.suspend_domain(hc, vm.instance_name)
    try:
        step_done(ctx, vm, "paused", host_id=host_id)
        _move(
            ctx,
            vm,
            S.RUNNING,
            S.SUSPENDED,
            "finish its suspend",
            "VM.SUSPEND",
            f"VM '{vm.name}' suspended (its memory and host capacity are kept)",
        )
    except BaseException:
        _undo(vm, "resume", lambda: domains.resume_domain(hc, vm.instance_name))
        raise
    ctx.progress(100, "suspended")
    return {"vm": vm.uuid, "state": S.SUSPENDED}


def run_resume(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    _move(ctx, vm, S.SUSPENDED, S.SUSPENDED, "resume it")
    host_id = _host_of(vm)
    hc = _connection(ctx, host_id)
    domains.resume_domain(hc, vm.instance_name)
    try:
        step_done(ctx, vm, "resumed", host_id=host_id)
        _move(
            ctx,
            vm,
            S.SUSPENDED,
            S.RUNNING,
            "finish its resume",
            "VM.RESUME",
            f"VM '{vm.name}' resumed",
        )
    except BaseException:
        _undo(vm, "pause", lambda: domains.suspend_domain(hc, vm.instance_name))
        raise
    ctx.progress(100, "running")
    return {"vm": vm.uuid, "state": S.RUNNING}


def _undo(vm: VirtualMachine, what: str, undo: Callable[[], None]) -> None:
    """The state could not be recorded: put the domain back as the database has it."""
    try:
        undo()
    except StratusError as exc:
        log.warning("VM '%s': could not %s its domain back: %s", vm.name, what, exc)


def _settle(ctx: StepContext, what: str) -> str:
    """After a dead suspend or resume job: the VM's state follows its domain's."""
    vm = _vm(ctx)
    if vm.state not in (S.RUNNING, S.SUSPENDED) or vm.host_id is None:
        return f"VM '{vm.name}' is {vm.state}; nothing to undo"
    try:
        state = domains.domain_state(_connection(ctx, vm.host_id), vm.instance_name)
    except StratusError as exc:
        return f"VM '{vm.name}' left {vm.state}: its domain's state is unknown ({exc})"
    wanted = {"paused": S.SUSPENDED, "running": S.RUNNING, "blocked": S.RUNNING}.get(state)
    if wanted is None or wanted == vm.state:
        return f"VM '{vm.name}' is {vm.state} (domain {state}); nothing to undo"
    _move(ctx, vm, vm.state, wanted, f"recover a dead {what}")
    return f"VM '{vm.name}': its domain is {state}, so it is {wanted}"


def recover_suspend(ctx: StepContext) -> str:
    return _settle(ctx, "suspend")


def recover_resume(ctx: StepContext) -> str:
    return _settle(ctx, "resume")
