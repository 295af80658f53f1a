"""Host maintenance, CloudStack's way: drain a host, keep it out of placement, bring it back.

- `maintenance_plan(caller, host)`: what preparing the host would do to each VM on it now:
  live-migrate it to a host of the same cluster (chosen by placement, the source host and
  the zone's other clusters avoided, so only an Up, Enabled host that fits can win), or stop
  it (placement's words say why nothing fits); and the VMs that are Starting, Stopping or
  Migrating, which make preparing refuse.
- `prepare_host_for_maintenance(caller, host)`: Enabled / Disabled / ErrorInMaintenance →
  PrepareForMaintenance (compare-and-set, with an audit event) and a
  `PrepareHostMaintenance` job that drains the host VM by VM, then sets Maintenance. A VM
  that can be neither moved nor stopped leaves the host in ErrorInMaintenance, the job's
  error naming the VM and why.
- `cancel_maintenance(caller, host)`: back to Enabled from any maintenance state; VMs that
  left are not moved back (as in CloudStack).

The job runs compute's own migrate and stop code in-line (`run_migrate`, `run_stop`, with
a context that scopes the steps to the VM), not child jobs: a child job would need a free
worker while this one holds one. Every step is recorded with the VM it belongs to, so the
recover hook of a dead drain first lets compute recover the VM that was in flight, then
leaves the host in ErrorInMaintenance saying how far the drain got.

Placement needs nothing new: it only ever places on hosts that are Up and Enabled, so a
host being prepared, in maintenance or in error is skipped from the moment its state is
written (the state change bumps `capacity_version`, which its snapshot watches).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from engine.compute import operations
from engine.compute.states import TRANSITIONAL
from engine.context import Caller
from engine.errors import InsufficientCapacity, InvalidParameter, StateConflict, StratusError
from engine.events import record_event
from engine.jobs import JobContext, LeaseLost, register_handler, submit_job
from engine.lookup import resolve
from engine.models import (
    Account,
    ClaimState,
    Cluster,
    Host,
    Job,
    PlacementClaim,
    ResourceState,
    VirtualMachine,
    VmState,
    Zone,
)
from engine.placement import Avoid, PlacementRequest, preview

JOB_TYPE = "PrepareHostMaintenance"
RS = ResourceState
S = VmState

# Where preparing may start from, and where cancelling may start from.
PREPARABLE = (RS.ENABLED, RS.DISABLED, RS.ERROR_IN_MAINTENANCE)
IN_MAINTENANCE = (RS.PREPARE_FOR_MAINTENANCE, RS.MAINTENANCE, RS.ERROR_IN_MAINTENANCE)

# The VMs a drain moves off the host: running ones are live-migrated (or stopped when no
# host fits); a suspended one is stopped, its paused memory is not carried along.
DRAINED = (S.RUNNING, S.SUSPENDED)
SUSPENDED_REASON = "suspended: a paused VM is stopped, not live-migrated"

# How long the drain waits for a VM that turned transitional (a job of it started after
# the plan was made) before it gives up on the host.
BUSY_WAIT_SECONDS = 300.0

# Called as hook(event, vm_name) after each VM of a drain is dealt with ("migrated",
# "stopped", "failed"). Tests use it to stop a drain between two VMs (a runner that
# dies); production leaves it empty.
DRAIN_HOOKS: list[Callable[[str, str], None]] = []


# --- the plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VmFate:
    vm_uuid: str
    vm: str
    state: str
    action: str  # "migrate", "stop", "wait" (transitional: refuses) or "none"
    target_uuid: str | None = None
    target: str | None = None
    reason: str = ""

    @property
    def line(self) -> str:
        if self.action == "migrate":
            return f"VM {self.vm}: live-migrate to host {self.target}"
        if self.action == "stop" and self.state == S.SUSPENDED:
            return f"VM {self.vm}: stop ({self.reason})"
        if self.action == "stop":
            return f"VM {self.vm}: stop (no host fits: {self.reason})"
        if self.action == "wait":
            return f"VM {self.vm} is {self.state}: wait until its job ends"
        return f"VM {self.vm} ({self.state}): {self.reason}"


@dataclass(frozen=True)
class MaintenancePlan:
    host_uuid: str
    host: str
    cluster: str
    resource_state: str
    fates: tuple[VmFate, ...]

    def of(self, action: str) -> list[VmFate]:
        return [f for f in self.fates if f.action == action]

    @property
    def busy(self) -> list[VmFate]:
        return self.of("wait")

    @property
    def lines(self) -> list[str]:
        """One line per VM for a confirmation: migrations first, then stops."""
        if not self.fates:
            return ["no VMs on it: nothing to migrate or stop"]
        order = {"wait": 0, "migrate": 1, "stop": 2, "none": 3}
        return [f.line for f in sorted(self.fates, key=lambda f: (order[f.action], f.vm))]


def _host(session: Session, host_ref: str) -> Host:
    return resolve(session, Host, host_ref, "host", field="host")


def vms_on_host(session: Session, host: Host) -> list[VirtualMachine]:
    """VMs that run on `host` or are being started there (their claim is already used
    there, their host_id not yet set), in name order."""
    claimed = select(PlacementClaim.vm_id).where(
        PlacementClaim.host_id == host.id, PlacementClaim.state == ClaimState.USED
    )
    return list(
        session.exec(
            select(VirtualMachine)
            .where(
                or_(col(VirtualMachine.host_id) == host.id, col(VirtualMachine.id).in_(claimed)),
                col(VirtualMachine.removed).is_(None),
                col(VirtualMachine.state).not_in([S.STOPPED, S.DESTROYED, S.EXPUNGED]),
            )
            .order_by(col(VirtualMachine.name), col(VirtualMachine.id))
        )
    )


def _sizes(session: Session, vm: VirtualMachine, **more: Any) -> PlacementRequest:
    zone = session.get(Zone, vm.zone_id)
    account = session.get(Account, vm.account_id)
    assert zone is not None and account is not None
    return PlacementRequest(
        zone=zone.uuid,
        cpu_count=vm.cpu_count,
        cpu_mhz=vm.cpu_mhz,
        memory_bytes=vm.memory_bytes,
        account=account.uuid,
        **more,
    )


def _choose_target(caller: Caller, vm: VirtualMachine, source: Host) -> tuple[Host | None, str]:
    """Where placement would live-migrate `vm` now: a host of its cluster other than
    `source` (the other clusters are avoided: a live migration stays where its disks
    are). (None, placement's reason) when no host fits."""
    with caller.db.read() as session:
        others = session.exec(
            select(Cluster.uuid).where(
                Cluster.zone_id == vm.zone_id, Cluster.id != source.cluster_id
            )
        ).all()
        request = _sizes(
            session, vm, avoid=Avoid(hosts=frozenset({source.uuid}), clusters=frozenset(others))
        )
    try:
        plan = preview(caller, request)
    except InsufficientCapacity as exc:
        return None, str(exc)
    with caller.db.read() as session:
        return session.get(Host, plan.host_id), plan.how


def _still_fits(caller: Caller, vm: VirtualMachine, target_uuid: str) -> Host | None:
    """The planned target, if a migration there would still be accepted (migrate_vm's
    own checks)."""
    with caller.db.read() as session:
        target = session.exec(select(Host).where(Host.uuid == target_uuid)).first()
    if target is None:
        return None
    try:
        operations.check_migration_target(caller, vm, target)
    except (InvalidParameter, InsufficientCapacity):
        return None
    return target


def maintenance_plan(caller: Caller, host_ref: str) -> MaintenancePlan:
    """What preparing `host_ref` for maintenance would do to each of its VMs, now. Each
    VM is judged against the hosts as they are now; the drain checks its target again
    just before moving it (and stops it if nothing fits any more)."""
    with caller.db.read() as session:
        host = _host(session, host_ref)
        cluster = session.get(Cluster, host.cluster_id)
        vms = vms_on_host(session, host)
    fates = []
    for vm in vms:
        if vm.state in TRANSITIONAL:
            fates.append(VmFate(vm.uuid, vm.name, vm.state, "wait"))
        elif vm.state == S.RUNNING:
            target, why = _choose_target(caller, vm, host)
            if target is not None:
                fates.append(
                    VmFate(vm.uuid, vm.name, vm.state, "migrate", target.uuid, target.name, why)
                )
            else:
                fates.append(VmFate(vm.uuid, vm.name, vm.state, "stop", reason=why))
        elif vm.state == S.SUSPENDED:
            # Its domain is paused on this host: it is switched off, not carried along.
            fates.append(VmFate(vm.uuid, vm.name, vm.state, "stop", reason=SUSPENDED_REASON))
        else:
            fates.append(
                VmFate(vm.uuid, vm.name, vm.state, "none", reason="not running: left as it is")
            )
    return MaintenancePlan(
        host.uuid,
        host.name,
        cluster.name if cluster is not None else "",
        host.resource_state,
        tuple(fates),
    )


# --- state changes -------------------------------------------------------------------------


def _set_state(
    session: Session, host: Host, sources: tuple[str, ...], target: str, *, what: str
) -> None:
    """Compare-and-set of the host's resource state; StateConflict naming both states."""
    changed = session.execute(
        update(Host)
        .where(col(Host.id) == host.id, col(Host.resource_state).in_(sources))
        .values(resource_state=target, capacity_version=Host.capacity_version + 1)
    ).rowcount
    if changed != 1:
        session.refresh(host)
        raise StateConflict(
            f"host '{host.name}' is {host.resource_state}: {what} needs it {' or '.join(sources)}"
        )
    session.refresh(host)


def prepare_host_for_maintenance(
    caller: Caller, host_ref: str, *, stop_timeout: float | None = None
) -> Job:
    """Refuse (nothing written) while a VM on the host is Starting, Stopping or Migrating;
    otherwise mark the host PrepareForMaintenance and queue its drain. A VM that is
    stopped gets `stop_timeout` seconds (compute's STOP_TIMEOUT by default) to shut down
    before it is forced off."""
    if stop_timeout is None:
        stop_timeout = operations.STOP_TIMEOUT
    if (
        isinstance(stop_timeout, bool)
        or not isinstance(stop_timeout, int | float)
        or not stop_timeout > 0
    ):
        raise InvalidParameter(
            f"host '{host_ref}': stop timeout {stop_timeout!r} must be a positive number of "
            "seconds",
            field="stop_timeout",
        )
    plan = maintenance_plan(caller, host_ref)
    busy = plan.busy
    if busy:
        names = ", ".join(f"VM '{f.vm}' ({f.state})" for f in busy)
        raise StateConflict(
            f"host '{plan.host}': {names} on it must finish its job before the host can be "
            "prepared for maintenance"
        )
    with caller.db.write() as session:
        host = _host(session, plan.host_uuid)
        before = host.resource_state
        _set_state(session, host, PREPARABLE, RS.PREPARE_FOR_MAINTENANCE, what="preparing it")
        moves = len(plan.of("migrate"))
        stops = len(plan.of("stop"))
        record_event(
            session,
            caller,
            "MAINT.PREPARE",
            "Host",
            host,
            f"host '{host.name}' ({before}) prepared for maintenance: {moves} VMs to migrate, "
            f"{stops} to stop",
        )
        return submit_job(
            caller,
            JOB_TYPE,
            resource_type="Host",
            resource_uuid=host.uuid,
            resource_name=host.name,
            params={
                "targets": {f.vm_uuid: f.target_uuid for f in plan.fates if f.action == "migrate"},
                "previous": before,
                "stop_timeout": stop_timeout,
            },
            session=session,
        )


def cancel_maintenance(caller: Caller, host_ref: str) -> Host:
    """PrepareForMaintenance / Maintenance / ErrorInMaintenance → Enabled. A drain still
    running notices and stops before its next VM; the VMs that left stay where they are."""
    with caller.db.write() as session:
        host = _host(session, host_ref)
        before = host.resource_state
        _set_state(session, host, IN_MAINTENANCE, RS.ENABLED, what="cancelling maintenance")
        record_event(
            session,
            caller,
            "MAINT.CANCEL",
            "Host",
            host,
            f"maintenance of host '{host.name}' cancelled ({before} → Enabled)",
        )
    return host


def _end_drain(ctx: JobContext, host: Host, target: str, description: str, level: str) -> bool:
    """PrepareForMaintenance → `target`, with an event; False when an operator cancelled
    the maintenance meanwhile (the host is then left as they made it)."""
    with ctx.db.write() as session:
        row = session.get(Host, host.id)
        assert row is not None
        try:
            _set_state(session, row, (RS.PREPARE_FOR_MAINTENANCE,), target, what="ending the drain")
        except StateConflict:
            return False
        event = "MAINT.PREPARE" if target == RS.ERROR_IN_MAINTENANCE else "MAINT.DONE"
        record_event(session, ctx.caller, event, "Host", row, description, level=level)
    return True


# --- the drain job ---------------------------------------------------------------------------


class _VmScope:
    """What compute's run functions see when the drain runs them for one VM: that VM as
    the resource, its own steps, and progress mapped into the drain's range."""

    def __init__(
        self,
        ctx: JobContext,
        vm: VirtualMachine,
        params: dict[str, Any],
        span: tuple[int, int],
        label: str,
    ) -> None:
        self.parent = ctx
        self.job_uuid = ctx.job_uuid
        self.db = ctx.db
        self.caller = ctx.caller
        self.hosts = ctx.hosts
        self.params = params
        self.resource_uuid = vm.uuid
        self.steps = [
            (step, {k: v for k, v in data.items() if k != "maint_vm"})
            for step, data in ctx.steps
            if data.get("maint_vm") == vm.uuid
        ]
        self.span = span
        self.label = label

    def progress(self, percent: int, message: str) -> None:
        low, high = self.span
        self.parent.progress(low + (high - low) * percent // 100, f"{self.label}: {message}")

    def record_step(self, step: str, **data: Any) -> None:
        self.parent.record_step(step, maint_vm=self.resource_uuid, **data)
        self.steps.append((step, data))


def _hooks(event: str, vm: str) -> None:
    for hook in list(DRAIN_HOOKS):
        hook(event, vm)


def _current_host(ctx: JobContext) -> Host:
    with ctx.db.read() as session:
        return _host(session, ctx.resource_uuid or "")


def run_drain(ctx: JobContext) -> dict[str, Any]:
    try:
        return _drain(ctx)
    except (LeaseLost, _Ended):
        raise
    except Exception as exc:
        # Whatever broke the drain, the host must not stay PrepareForMaintenance.
        reason = str(exc) if isinstance(exc, StratusError) else f"internal error: {exc!r}"
        host = _current_host(ctx)
        _end_drain(
            ctx, host, RS.ERROR_IN_MAINTENANCE, f"drain of host '{host.name}' failed: {reason}",
            "ERROR",
        )  # fmt: skip
        raise


class _Ended(StateConflict):
    """The drain ended with VMs left on the host; the host is already ErrorInMaintenance."""


def _drain(ctx: JobContext) -> dict[str, Any]:
    host = _current_host(ctx)
    planned: dict[str, str] = dict(ctx.params.get("targets") or {})
    stop_timeout = float(ctx.params.get("stop_timeout") or operations.STOP_TIMEOUT)
    busy_wait = float(ctx.params.get("busy_wait") or BUSY_WAIT_SECONDS)
    handled: set[str] = set()
    moved: list[str] = []
    stopped: list[str] = []
    failures: list[str] = []
    waited_since: float | None = None
    ctx.progress(1, f"draining host '{host.name}'")
    while True:
        host = _current_host(ctx)
        if host.resource_state != RS.PREPARE_FOR_MAINTENANCE:
            # cancel_maintenance ran: stop draining, leave the host as the operator set it
            ctx.progress(100, f"maintenance cancelled: host is {host.resource_state}")
            return {"host": host.name, "migrated": moved, "stopped": stopped, "cancelled": True}
        with ctx.db.read() as session:
            vms = vms_on_host(session, host)
        todo = [vm for vm in vms if vm.state in DRAINED and vm.uuid not in handled]
        busy = [vm for vm in vms if vm.state in TRANSITIONAL]
        if not todo:
            if not busy:
                break
            # A job of one of its VMs started after the plan: wait for it to end.
            waited_since = waited_since or time.monotonic()
            names = ", ".join(f"VM '{vm.name}' ({vm.state})" for vm in busy)
            if time.monotonic() - waited_since > busy_wait:
                failures.append(f"{names} still busy after {busy_wait:.0f} s")
                break
            ctx.progress(_percent(handled, todo, busy), f"waiting for {names}")
            time.sleep(0.2)
            continue
        if ctx.cancelled():
            failures.append("the drain job was cancelled")
            break
        vm = todo[0]
        handled.add(vm.uuid)
        span = (_percent(handled, todo, busy, before=True), _percent(handled, todo, busy))
        try:
            outcome = _drain_one(ctx, vm, host, planned.get(vm.uuid), span, stop_timeout)
        except LeaseLost:
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, StratusError) else f"internal error: {exc!r}"
            if isinstance(exc, StateConflict) and _moved_by_another_job(ctx, vm, host):
                # An operator's job of the VM changed it first (compare-and-set): judge the
                # VM again as it is now (gone from the host, or busy and waited for).
                handled.discard(vm.uuid)
                ctx.record_step("vm changed", vm=vm.uuid, name=vm.name, reason=reason)
                continue
            failures.append(f"VM '{vm.name}': {reason}")
            ctx.record_step("vm failed", vm=vm.uuid, name=vm.name, reason=reason)
            _hooks("failed", vm.name)
            continue
        (moved if outcome.startswith("migrated") else stopped).append(f"{vm.name} {outcome}")
        ctx.record_step("vm done", vm=vm.uuid, name=vm.name, outcome=outcome)
        _hooks(outcome.split()[0], vm.name)
    summary = _summary(moved, stopped)
    if failures:
        message = f"host '{host.name}' could not be drained: {'; '.join(failures)}"
        _end_drain(ctx, host, RS.ERROR_IN_MAINTENANCE, f"{message} ({summary})", "ERROR")
        raise _Ended(f"{message}; {summary}; the host is ErrorInMaintenance")
    done = f"host '{host.name}' in maintenance: {summary}"
    if not _end_drain(ctx, host, RS.MAINTENANCE, done, "INFO"):
        host = _current_host(ctx)
        ctx.progress(100, f"maintenance cancelled: host is {host.resource_state}")
        return {"host": host.name, "migrated": moved, "stopped": stopped, "cancelled": True}
    ctx.progress(100, f"host '{host.name}' in maintenance: {summary}")
    return {"host": host.name, "migrated": moved, "stopped": stopped, "state": RS.MAINTENANCE}


def _moved_by_another_job(ctx: JobContext, vm: VirtualMachine, host: Host) -> bool:
    with ctx.db.read() as session:
        now = session.get(VirtualMachine, vm.id)
    return now is not None and (
        now.update_count != vm.update_count and (now.state != S.RUNNING or now.host_id != host.id)
    )


def _percent(handled: set[str], todo: list, busy: list, *, before: bool = False) -> int:
    done = len(handled) - (1 if before else 0)
    total = len(handled) + len(todo) - 1 + len(busy)
    return 5 + 90 * done // max(total, 1)


def _summary(moved: list[str], stopped: list[str]) -> str:
    parts = [f"{len(moved)} migrated", f"{len(stopped)} stopped"]
    return ", ".join(parts)


def _drain_one(
    ctx: JobContext,
    vm: VirtualMachine,
    host: Host,
    planned: str | None,
    span: tuple[int, int],
    stop_timeout: float,
) -> str:
    """Migrate `vm` (to its planned target if that still fits, else wherever placement
    says) or, when no host fits, stop it. Returns what happened."""
    target = _still_fits(ctx.caller, vm, planned) if planned else None
    reason = SUSPENDED_REASON if vm.state == S.SUSPENDED else ""
    if target is None and not reason:
        target, reason = _choose_target(ctx.caller, vm, host)
    if target is not None:
        label = f"VM {vm.name} → {target.name}"
        ctx.record_step("vm", vm=vm.uuid, name=vm.name, action="migrate", target=target.name)
        ctx.progress(span[0], f"{label}: migrating")
        operations.run_migrate(_VmScope(ctx, vm, {"host": target.uuid}, span, label))  # type: ignore[arg-type]
        return f"migrated to {target.name}"
    label = f"VM {vm.name} (stop)"
    ctx.record_step("vm", vm=vm.uuid, name=vm.name, action="stop", reason=reason)
    ctx.progress(
        span[0], f"{label}: {reason if vm.state == S.SUSPENDED else f'no host fits ({reason})'}"
    )
    params = {"forced": False, "timeout": stop_timeout}
    operations.run_stop(_VmScope(ctx, vm, params, span, label))  # type: ignore[arg-type]
    return "stopped (suspended)" if vm.state == S.SUSPENDED else "stopped (no host fits)"


def recover_drain(ctx: JobContext) -> str:
    """The drain's process died: compute recovers the VM that was in flight (its domain
    decides where it runs), and the host is left ErrorInMaintenance; preparing it again
    drains what is still on it."""
    host = _current_host(ctx)
    if ctx.cancelled() and not ctx.steps:
        return _undo_submit(ctx, host)
    started = {d["vm"]: d for s, d in ctx.steps if s == "vm"}
    finished = {d["vm"] for s, d in ctx.steps if s in ("vm done", "vm failed")}
    done = [str(d["name"]) for s, d in ctx.steps if s == "vm done"]
    notes = []
    for uuid, step in started.items():
        if uuid in finished:
            continue
        with ctx.db.read() as session:
            vm = session.exec(select(VirtualMachine).where(VirtualMachine.uuid == uuid)).first()
        if vm is None:
            continue
        scope = _VmScope(ctx, vm, {}, (0, 0), f"VM {vm.name}")
        if vm.state == S.MIGRATING:
            notes.append(operations.recover_migrate(scope))  # type: ignore[arg-type]
        elif vm.state == S.STOPPING:
            notes.append(operations.recover_stop(scope))  # type: ignore[arg-type]
        else:
            notes.append(f"VM '{vm.name}' is {vm.state} ({step['action']} was under way)")
    message = (
        f"host '{host.name}' is ErrorInMaintenance: its drain stopped after "
        f"{len(done)} VM{'s' if len(done) != 1 else ''} ({', '.join(done) or 'none'})"
    )
    if notes:
        message += "; " + "; ".join(notes)
    with ctx.db.write() as session:
        row = session.get(Host, host.id)
        assert row is not None
        try:
            _set_state(
                session, row, (RS.PREPARE_FOR_MAINTENANCE,), RS.ERROR_IN_MAINTENANCE,
                what="recovering its drain",
            )  # fmt: skip
        except StateConflict:
            return f"host '{host.name}' is {row.resource_state}; nothing to undo"
        record_event(session, ctx.caller, "MAINT.PREPARE", "Host", row, message, level="ERROR")
    return message + ". Prepare it for maintenance again to drain the rest."


def _undo_submit(ctx: JobContext, host: Host) -> str:
    """The drain was cancelled before it ran: the host goes back to where it was."""
    previous = str(ctx.params.get("previous") or RS.ENABLED)
    with ctx.db.write() as session:
        row = session.get(Host, host.id)
        assert row is not None
        try:
            _set_state(session, row, (RS.PREPARE_FOR_MAINTENANCE,), previous, what="undoing")
        except StateConflict:
            return f"host '{host.name}' is {row.resource_state}; nothing to undo"
        record_event(
            session, ctx.caller, "MAINT.CANCEL", "Host", row,
            f"drain of host '{host.name}' cancelled before it ran: back to {previous}",
        )  # fmt: skip
    return f"host '{host.name}' is {previous} again; no VM was moved"


register_handler(JOB_TYPE, run_drain, recover=recover_drain)
