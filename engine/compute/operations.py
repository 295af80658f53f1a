"""VM operations: start, stop, reboot, destroy, recover, expunge, migrate, change offering.

Each operation that touches a hypervisor is a job on the VM (its uuid is the job's
resource, so mutating jobs of one VM run one at a time, in submission order). Submitting
checks the VM exists and — when no other job of the VM is queued, so its state is what
the job will find — that its state allows the operation; nothing is written on refusal.
The job itself moves the VM with compare-and-set transitions (engine.compute.states).

A failed start returns the VM to Stopped; a stop that fails leaves it Running if its
domain still runs. Destroy keeps the volumes: the VM is recoverable (`recover_vm`) until
`expunge.delay` seconds have passed, then `expunge_due` expunges it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from engine.compute import cleanup
from engine.compute.context import StepContext, hosts_of, step_done
from engine.compute.deploy import DeployRequest, load_vm, vm_sizes
from engine.compute.domain import attached_volumes, domain_xml
from engine.compute.states import require_state, set_reason, transition
from engine.context import Caller
from engine.errors import InvalidParameter, NotFound, StateConflict, StratusError
from engine.events import record_event
from engine.hosts import domains, storage
from engine.hosts.guests import guest_domain_type, migration_flags
from engine.lookup import resolve
from engine.models import (
    Account,
    Host,
    HostStatus,
    Job,
    JobState,
    PlacementClaim,
    PowerState,
    ResourceState,
    ServiceOffering,
    VirtualMachine,
    VmLifecycle,
    VmState,
    Zone,
    utcnow,
)
from engine.offerings import tag_list
from engine.placement import Avoid, PlacementRequest, place_vm, preview
from engine.settings import effective_value

if TYPE_CHECKING:
    from engine.hosts.connections import HostConnection

log = logging.getLogger("stratus.compute")

S = VmState

# job type → (states the VM may be in when the job runs, what the operation is called)
OPERATIONS: dict[str, tuple[frozenset[str], str]] = {
    "StartVM": (frozenset({S.STOPPED}), "start"),
    # A suspended VM is stopped by forcing its domain off (a paused guest cannot shut down).
    "StopVM": (frozenset({S.RUNNING, S.SUSPENDED}), "stop"),
    "RebootVM": (frozenset({S.RUNNING}), "reboot"),
    # Starting: only a VM whose DeployVM job was cancelled before it ran (no job of the
    # VM is queued or running when this is checked).
    "DestroyVM": (frozenset({S.RUNNING, S.SUSPENDED, S.STOPPED, S.ERROR, S.STARTING}), "destroy"),
    "ExpungeVM": (frozenset({S.DESTROYED, S.ERROR}), "expunge"),
    "MigrateVM": (frozenset({S.RUNNING}), "migrate"),
    "SuspendVM": (frozenset({S.RUNNING}), "suspend"),
    "ResumeVM": (frozenset({S.SUSPENDED}), "resume"),
    # engine.compute.isos
    "AttachISO": (frozenset({S.RUNNING, S.SUSPENDED, S.STOPPED}), "attaching an ISO"),
    "DetachISO": (frozenset({S.RUNNING, S.SUSPENDED, S.STOPPED}), "ejecting its ISO"),
}

STOP_TIMEOUT = 60.0  # seconds a graceful stop waits before forcing the domain off


# --- submitting --------------------------------------------------------------------------


def _queued_jobs(session: Session, vm_uuid: str) -> int:
    return session.exec(
        select(func.count())
        .select_from(Job)
        .where(
            Job.resource_uuid == vm_uuid,
            col(Job.state).in_([JobState.PENDING, JobState.RUNNING]),
        )
    ).one()


def submit_operation(
    caller: Caller, job_type: str, vm_ref: str, params: dict[str, Any] | None = None
) -> Job:
    """Check the VM and submit its `job_type` job (see OPERATIONS)."""
    from engine.jobs import submit_job

    allowed, what = OPERATIONS[job_type]
    with caller.db.write() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        if vm.removed is not None or vm.state == S.EXPUNGED:
            raise NotFound(f"VM '{vm.name}' was expunged", field="vm")
        if _queued_jobs(session, vm.uuid) == 0:
            require_state(vm, allowed, what)
        return submit_job(
            caller,
            job_type,
            resource_type="VirtualMachine",
            resource_uuid=vm.uuid,
            resource_name=vm.name,
            params=params or {},
            session=session,
        )


def start_vm(caller: Caller, vm_ref: str) -> Job:
    return submit_operation(caller, "StartVM", vm_ref)


def stop_vm(
    caller: Caller, vm_ref: str, *, forced: bool = False, timeout: float = STOP_TIMEOUT
) -> Job:
    if timeout <= 0:
        raise InvalidParameter(f"stop timeout {timeout!r} must be positive", field="timeout")
    return submit_operation(caller, "StopVM", vm_ref, {"forced": forced, "timeout": timeout})


def reboot_vm(caller: Caller, vm_ref: str) -> Job:
    return submit_operation(caller, "RebootVM", vm_ref)


def destroy_vm(caller: Caller, vm_ref: str, *, expunge: bool = False) -> Job:
    return submit_operation(caller, "DestroyVM", vm_ref, {"expunge": expunge})


def expunge_vm(caller: Caller, vm_ref: str) -> Job:
    return submit_operation(caller, "ExpungeVM", vm_ref)


def migrate_vm(caller: Caller, vm_ref: str, host_ref: str) -> Job:
    """Live-migrate a Running VM to another host of its cluster. The target is checked
    (same cluster, Up and Enabled, capacity for the VM) before the job is submitted, and
    again by the job before anything moves."""
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        target = resolve(session, Host, host_ref, "host", field="host")
    check_migration_target(caller, vm, target)
    return submit_operation(caller, "MigrateVM", vm.uuid, {"host": target.uuid})


def check_migration_target(caller: Caller, vm: VirtualMachine, target: Host) -> None:
    """migrate_vm's rules for a target host (another host of the VM's cluster, Up and
    Enabled, with room for the VM's sizes); a typed error naming the broken one."""
    with caller.db.read() as session:
        _check_target(session, vm, target)
    _check_target_capacity(caller, vm, target)


def _check_target_capacity(caller: Caller, vm: VirtualMachine, target: Host) -> None:
    """InsufficientCapacity (saying why) when the target cannot take the VM's sizes."""
    with caller.db.read() as session:
        zone = session.get(Zone, vm.zone_id)
        account = session.get(Account, vm.account_id)
        assert zone is not None and account is not None
    preview(
        caller,
        PlacementRequest(
            zone=zone.uuid,
            cpu_count=vm.cpu_count,
            cpu_mhz=vm.cpu_mhz,
            memory_bytes=vm.memory_bytes,
            account=account.uuid,
            pinned_host=target.uuid,
        ),
    )


# --- shared job pieces -------------------------------------------------------------------


def _vm(ctx: StepContext) -> VirtualMachine:
    with ctx.db.read() as session:
        return load_vm(session, ctx.resource_uuid)


def _move(
    ctx: StepContext,
    vm: VirtualMachine,
    expected: Any,
    new: str,
    what: str,
    event: str | None = None,
    description: str = "",
    **values: Any,
) -> None:
    with ctx.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        transition(session, row, expected, new, what=what, **values)
        if event:
            record_event(session, ctx.caller, event, "VirtualMachine", row, description)
    vm.state = new
    for key, value in values.items():
        setattr(vm, key, value)


def _connection(ctx: StepContext, host_id: int) -> HostConnection:
    with ctx.db.read() as session:
        return cleanup.connection_to(hosts_of(ctx), session, host_id)


def _host(ctx: StepContext, host_id: int) -> Host:
    with ctx.db.read() as session:
        host = session.get(Host, host_id)
    if host is None:
        raise NotFound(f"host #{host_id} no longer exists", field="host")
    return host


def _claim_state(db: Any, vm: VirtualMachine) -> str | None:
    with db.read() as session:
        claim = session.exec(select(PlacementClaim).where(PlacementClaim.vm_id == vm.id)).first()
        return claim.state if claim is not None else None


def _note(ctx: StepContext, vm: VirtualMachine, reason: str, **values: Any) -> None:
    with ctx.db.write() as session:
        set_reason(session, vm.id, reason, **values)  # type: ignore[arg-type]


# --- start -------------------------------------------------------------------------------


def _place_for_start(ctx: StepContext, vm: VirtualMachine, avoid: list[str]) -> Host:
    with ctx.db.read() as session:
        zone = session.get(Zone, vm.zone_id)
        account = session.get(Account, vm.account_id)
        assert zone is not None and account is not None
    plan = place_vm(
        ctx.caller,
        PlacementRequest(
            zone=zone.uuid, vm=vm.uuid, account=account.uuid, avoid=Avoid(hosts=frozenset(avoid))
        ),
        explain_plan=True,
    )
    summary = plan.explanation.summary() if plan.explanation is not None else plan.how
    step_done(ctx, vm, "placed", host_id=plan.host_id, host=plan.host_name, how=plan.how)
    ctx.progress(20, f"placed on host '{plan.host_name}' ({plan.how}): {summary}")
    _note(ctx, vm, "", placement_summary=summary)
    return _host(ctx, plan.host_id)


def _define_and_start(ctx: StepContext, vm: VirtualMachine, host: Host) -> None:
    hc = _connection(ctx, host.id)  # type: ignore[arg-type]
    with ctx.db.read() as session:
        row = session.get(VirtualMachine, vm.id)
        xml = domain_xml(session, row, guest_domain_type(hc))  # type: ignore[arg-type]
    domains.define_domain(hc, xml)
    step_done(ctx, vm, "defined", host_id=host.id, name=vm.instance_name)
    ctx.progress(60, f"domain defined on host '{host.name}'")
    domains.start_domain(hc, vm.instance_name)
    step_done(ctx, vm, "started", host_id=host.id)


def _stop_here(ctx: StepContext, vm: VirtualMachine, host_ids: list[int]) -> list[str]:
    """Force the domain off on these hosts and hand a used claim back (to reserved)."""
    done = []
    for host_id in dict.fromkeys(host_ids):
        try:
            if domains.destroy_domain(_connection(ctx, host_id), vm.instance_name):
                done.append(f"domain forced off on host #{host_id}")
        except StratusError as exc:
            done.append(f"could not force the domain off on host #{host_id}: {exc}")
    if _claim_state(ctx.db, vm) == "used":
        done += cleanup.release_claim(ctx.caller, vm, "stop")
    return done


def run_start(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    previous_host = vm.last_host_id
    _move(ctx, vm, S.STOPPED, S.STARTING, "start it")
    with ctx.db.read() as session:
        retries = int(effective_value(session, "start.retry"))
    failures: list[str] = []
    avoid: list[str] = []
    tried: list[int] = []
    try:
        while True:
            try:
                host = _place_for_start(ctx, vm, avoid)
            except StratusError as exc:
                if failures:
                    raise StateConflict(
                        f"VM '{vm.name}': start failed on {'; '.join(failures)}; "
                        f"no other host: {exc}"
                    ) from exc
                raise
            tried.append(host.id)  # type: ignore[arg-type]
            if previous_host is not None and previous_host != host.id:
                # The definition follows the VM: none is left on the host it left.
                try:
                    domains.undefine_domain(_connection(ctx, previous_host), vm.instance_name)
                except StratusError as exc:
                    log.warning("VM '%s': old definition kept: %s", vm.name, exc)
            try:
                _define_and_start(ctx, vm, host)
                break
            except StratusError as exc:
                failures.append(f"host '{host.name}' ({exc})")
                _stop_here(ctx, vm, [host.id])  # type: ignore[list-item]
                ctx.record_step("retry", failed_host=host.name, reason=str(exc))
                if len(failures) > retries:
                    raise StateConflict(
                        f"VM '{vm.name}': start failed on {'; '.join(failures)}; "
                        f"start.retry ({retries}) exhausted"
                    ) from exc
                avoid.append(host.uuid)
                previous_host = host.id
    except BaseException as exc:
        undone = _stop_here(ctx, vm, tried)
        reason = str(exc) if isinstance(exc, StratusError) else f"internal error: {exc!r}"
        _move(
            ctx,
            vm,
            S.STARTING,
            S.STOPPED,
            "fail its start",
            "VM.START",
            f"start of VM '{vm.name}' failed: {reason}",
            host_id=None,
            power_state=PowerState.POWER_OFF,
        )
        _note(ctx, vm, reason)
        if undone:
            log.info("VM '%s': after a failed start: %s", vm.name, "; ".join(undone))
        raise
    _move(
        ctx,
        vm,
        S.STARTING,
        S.RUNNING,
        "finish its start",
        "VM.START",
        f"VM '{vm.name}' started on host '{host.name}'",
        host_id=host.id,
        last_host_id=host.id,
        power_state=PowerState.POWER_ON,
        power_state_updated=utcnow(),
    )
    ctx.progress(100, f"running on host '{host.name}'")
    return {"vm": vm.uuid, "host": host.name, "retries": len(failures)}


def recover_start(ctx: StepContext) -> str:
    vm = _vm(ctx)
    hosts = [int(d["host_id"]) for _s, d in ctx.steps if "host_id" in d]
    undone = _stop_here(ctx, vm, hosts)
    try:
        _move(
            ctx,
            vm,
            S.STARTING,
            S.STOPPED,
            "recover a dead start",
            host_id=None,
            power_state=PowerState.POWER_OFF,
        )
    except StateConflict as exc:
        return f"{exc}; {'; '.join(undone) or 'nothing undone'}"
    _note(ctx, vm, "the process starting it died")
    return f"VM '{vm.name}' is Stopped; " + ("; ".join(undone) or "nothing to undo")


# --- stop, reboot --------------------------------------------------------------------------


def _finish_stop(ctx: StepContext, vm: VirtualMachine, host_id: int | None, how: str) -> None:
    if _claim_state(ctx.db, vm) == "used":
        cleanup.release_claim(ctx.caller, vm, "stop")
    ctx.record_step("released")
    _move(
        ctx,
        vm,
        S.STOPPING,
        S.STOPPED,
        "finish its stop",
        "VM.STOP",
        f"VM '{vm.name}' stopped ({how})",
        host_id=None,
        last_host_id=host_id,
        power_state=PowerState.POWER_OFF,
        power_state_updated=utcnow(),
    )


def run_stop(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    host_id = vm.host_id
    was_suspended = vm.state == S.SUSPENDED
    _move(ctx, vm, (S.RUNNING, S.SUSPENDED), S.STOPPING, "stop it")
    # A paused guest cannot answer the ACPI power button: its domain is forced off.
    forced = bool(ctx.params.get("forced")) or was_suspended
    timeout = float(ctx.params.get("timeout") or STOP_TIMEOUT)
    try:
        if host_id is None:
            how = "it had no host"
        else:
            hc = _connection(ctx, host_id)
            ctx.progress(
                30, "forcing the domain off" if forced else "asking the guest to shut down"
            )
            if forced:
                how = (
                    "forced off" if domains.destroy_domain(hc, vm.instance_name) else "already off"
                )
            else:
                how = domains.shutdown_domain(hc, vm.instance_name, timeout=timeout)
    except BaseException:
        _settle_failed_stop(ctx, vm, host_id)
        raise
    step_done(ctx, vm, "off", host_id=host_id, how=how)
    _finish_stop(ctx, vm, host_id, how)
    ctx.progress(100, f"stopped ({how})")
    return {"vm": vm.uuid, "how": how}


def _settle_failed_stop(ctx: StepContext, vm: VirtualMachine, host_id: int | None) -> None:
    """After a stop (or destroy) failed half-way the host decides: a domain still on keeps
    the VM Running; one that is off makes it Stopped."""
    power = PowerState.POWER_UNKNOWN
    if host_id is not None:
        try:
            power = domains.power_state(_connection(ctx, host_id), vm.instance_name)
        except StratusError as exc:
            log.warning("VM '%s': power state unknown after a failed stop: %s", vm.name, exc)
    if power in (PowerState.POWER_OFF, PowerState.POWER_REPORT_MISSING):
        _finish_stop(ctx, vm, host_id, "found off after a failed stop")
    else:
        _move(ctx, vm, S.STOPPING, _on_state(ctx, vm, host_id), "give up its stop")


def _on_state(ctx: StepContext, vm: VirtualMachine, host_id: int | None) -> str:
    """The state of a VM whose domain is on: Suspended when the domain is paused."""
    if host_id is not None:
        try:
            if domains.domain_state(_connection(ctx, host_id), vm.instance_name) == "paused":
                return S.SUSPENDED
        except StratusError as exc:
            log.warning("VM '%s': domain state unknown: %s", vm.name, exc)
    return S.RUNNING


def recover_stop(ctx: StepContext) -> str:
    vm = _vm(ctx)
    host_id = vm.host_id
    power = PowerState.POWER_OFF
    if host_id is not None:
        power = domains.power_state(_connection(ctx, host_id), vm.instance_name)
    if power == PowerState.POWER_ON:
        back = _on_state(ctx, vm, host_id)
        _move(ctx, vm, S.STOPPING, back, "recover a dead stop")
        return f"VM '{vm.name}' still runs: back to {back}"
    _finish_stop(ctx, vm, host_id, "found off after its job died")
    return f"VM '{vm.name}' was off: Stopped, capacity moved to reserved"


def run_reboot(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    # Running → Running: a reboot must find the VM Running and bumps its update_count,
    # so a concurrent change is noticed.
    _move(ctx, vm, S.RUNNING, S.RUNNING, "reboot it")
    if vm.host_id is None:
        raise StateConflict(f"VM '{vm.name}' is Running but has no host")
    domains.reboot_domain(_connection(ctx, vm.host_id), vm.instance_name)
    with ctx.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        record_event(
            session, ctx.caller, "VM.REBOOT", "VirtualMachine", row, f"VM '{vm.name}' rebooted"
        )
    ctx.progress(100, "rebooted")
    return {"vm": vm.uuid}


# --- destroy, recover, expunge --------------------------------------------------------------


def run_destroy(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    if vm.state == S.STARTING:
        # Jobs of one VM run one at a time, so no deploy is running: its DeployVM job was
        # cancelled before it started. Nothing was placed or made; the VM goes.
        _move(ctx, vm, S.STARTING, S.ERROR, "destroy it", host_id=None)
        _note(ctx, vm, "its deploy was cancelled before it ran")
    if vm.state == S.ERROR or ctx.params.get("expunge"):
        if vm.state != S.ERROR:
            _destroy(ctx, vm)
        return run_expunge(ctx)
    _destroy(ctx, vm)
    return {"vm": vm.uuid, "state": S.DESTROYED}


def _destroy(ctx: StepContext, vm: VirtualMachine) -> None:
    host_id = vm.host_id or vm.last_host_id
    if vm.state in (S.RUNNING, S.SUSPENDED):
        _move(ctx, vm, (S.RUNNING, S.SUSPENDED), S.STOPPING, "destroy it")
        expected = S.STOPPING
    else:
        expected = S.STOPPED
    try:
        if host_id is not None:
            hc = _connection(ctx, host_id)
            domains.destroy_domain(hc, vm.instance_name)
            domains.undefine_domain(hc, vm.instance_name)
    except BaseException:
        if expected == S.STOPPING:
            _settle_failed_stop(ctx, vm, host_id)
        raise
    if host_id is not None:
        step_done(ctx, vm, "undefined", host_id=host_id)
    if _claim_state(ctx.db, vm) == "used":
        cleanup.release_claim(ctx.caller, vm, "stop")
    with ctx.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        transition(
            session,
            row,
            expected,
            S.DESTROYED,
            what="destroy it",
            host_id=None,
            last_host_id=host_id,
            power_state=PowerState.POWER_OFF,
        )
        set_reason(session, vm.id, "", destroyed=utcnow())  # type: ignore[arg-type]
        record_event(
            session,
            ctx.caller,
            "VM.DESTROY",
            "VirtualMachine",
            row,
            f"VM '{vm.name}' destroyed (recoverable until expunged)",
        )
    vm.state = S.DESTROYED
    ctx.progress(100, "destroyed")


def recover_destroy(ctx: StepContext) -> str:
    vm = _vm(ctx)
    if vm.state == S.EXPUNGING:
        return recover_expunge(ctx)
    if vm.state == S.STOPPING:
        _move(ctx, vm, S.STOPPING, S.STOPPED, "recover a dead destroy", host_id=None)
        return f"VM '{vm.name}' left Stopped; destroy it again"
    return f"VM '{vm.name}' is {vm.state}; nothing to undo"


def recover_vm(caller: Caller, vm_ref: str) -> VirtualMachine:
    """Destroyed → Stopped (CloudStack's recoverVirtualMachine): no hypervisor work."""
    with caller.db.write() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        require_state(vm, {S.DESTROYED}, "recover")
        transition(session, vm, S.DESTROYED, S.STOPPED, what="recover it")
        set_reason(session, vm.id, "", destroyed=None)  # type: ignore[arg-type]
        record_event(
            session, caller, "VM.RECOVER", "VirtualMachine", vm, f"VM '{vm.name}' recovered"
        )
    return vm


def run_expunge(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    _move(ctx, vm, (S.DESTROYED, S.ERROR), S.EXPUNGING, "expunge it")
    return _expunge(ctx, vm)


def _expunge(ctx: StepContext, vm: VirtualMachine) -> dict[str, Any]:
    host_ids = [h for h in (vm.host_id, vm.last_host_id) if h is not None]
    done, failed = cleanup.take_everything_back(
        ctx.caller, hosts_of(ctx), vm.uuid, host_ids=host_ids
    )
    summary = cleanup.describe(done, failed)
    ctx.record_step("taken back", summary=summary)
    if failed:
        _move(ctx, vm, S.EXPUNGING, S.DESTROYED, "give up its expunge")
        raise StateConflict(f"VM '{vm.name}': expunge incomplete: {summary}")
    _move(
        ctx,
        vm,
        S.EXPUNGING,
        S.EXPUNGED,
        "finish its expunge",
        "VM.EXPUNGE",
        f"VM '{vm.name}' expunged: {summary}",
        removed=utcnow(),
    )
    ctx.progress(100, "expunged")
    return {"vm": vm.uuid, "undone": summary}


def recover_expunge(ctx: StepContext) -> str:
    """An expunge is finished forward: everything it removes is removed idempotently."""
    vm = _vm(ctx)
    if vm.state != S.EXPUNGING:
        return f"VM '{vm.name}' is {vm.state}; nothing to undo"
    result = _expunge(ctx, vm)
    return f"expunge of VM '{vm.name}' finished: {result['undone']}"


def expunge_due(caller: Caller) -> list[Job]:
    """Submit an ExpungeVM job for each VM destroyed more than `expunge.delay` s ago (what
    CloudStack's expunge thread does every `expunge.interval` s)."""
    with caller.db.read() as session:
        delay = int(effective_value(session, "expunge.delay"))
        cutoff = utcnow() - timedelta(seconds=delay)
        due = list(
            session.exec(
                select(VirtualMachine.uuid)
                .join(VmLifecycle, col(VmLifecycle.vm_id) == VirtualMachine.id)
                .where(
                    VirtualMachine.state == S.DESTROYED,
                    col(VmLifecycle.destroyed).is_not(None),
                    col(VmLifecycle.destroyed) <= cutoff,
                )
            )
        )
        # A VM whose expunge (or any job) is already queued is left to it.
        due = [uuid for uuid in due if _queued_jobs(session, uuid) == 0]
    return [expunge_vm(caller, uuid) for uuid in due]


# --- migrate ---------------------------------------------------------------------------------


def _check_target(session: Session, vm: VirtualMachine, target: Host) -> None:
    label = f"VM '{vm.name}'"
    if vm.host_id == target.id:
        raise InvalidParameter(f"{label} already runs on host '{target.name}'", field="host")
    if vm.cluster_id is not None and target.cluster_id != vm.cluster_id:
        raise InvalidParameter(
            f"{label}: host '{target.name}' is in another cluster; live migration stays "
            "within the VM's cluster (its disks are on the cluster's storage)",
            field="host",
        )
    if target.status != HostStatus.UP or target.resource_state != ResourceState.ENABLED:
        raise InvalidParameter(
            f"{label}: host '{target.name}' is {target.status}/{target.resource_state}, "
            "not Up and Enabled",
            field="host",
        )


def run_migrate(ctx: StepContext) -> dict[str, Any]:
    vm = _vm(ctx)
    with ctx.db.read() as session:
        target = resolve(session, Host, str(ctx.params["host"]), "host", field="host")
        _check_target(session, vm, target)
        zone = session.get(Zone, vm.zone_id)
        account = session.get(Account, vm.account_id)
        assert zone is not None and account is not None
    source_id = vm.host_id
    if source_id is None:
        raise StateConflict(f"VM '{vm.name}' is Running but has no host")
    # The target's capacity is checked again before anything moves.
    _check_target_capacity(ctx.caller, vm, target)
    _move(ctx, vm, S.RUNNING, S.MIGRATING, "migrate it")
    source = _host(ctx, source_id)
    try:
        # Claim on the target first: the source share becomes a reservation that the
        # placement on the pinned target gives back.
        cleanup.release_claim(ctx.caller, vm, "stop")
        place_vm(
            ctx.caller,
            PlacementRequest(
                zone=zone.uuid, vm=vm.uuid, account=account.uuid, pinned_host=target.uuid
            ),
        )
        step_done(ctx, vm, "claimed", host_id=target.id, source_id=source_id)
        src, dst = _connection(ctx, source_id), _connection(ctx, target.id)  # type: ignore[arg-type]
        # The domain names its disks by pool: the target must know the (shared) pools.
        with ctx.db.read() as session:
            pools = {p.libvirt_pool_name: p for _v, p in attached_volumes(session, vm)}
        for pool_name, pool in pools.items():
            storage.ensure_dir_pool(dst, pool_name, pool.path)
        flags = migration_flags(
            shared_dir_storage=any(p.pool_type == "dir" for p in pools.values())
        )
        domains.migrate_domain(
            src,
            dst,
            vm.instance_name,
            flags=flags,
            progress=lambda p: ctx.progress(10 + p.percent * 85 // 100, f"migrating: {p.percent}%"),
        )
        step_done(ctx, vm, "migrated", host_id=target.id)
    except BaseException:
        # The domain is still on the source: the claim goes back there.
        if _claim_state(ctx.db, vm) == "used":
            cleanup.release_claim(ctx.caller, vm, "stop")
        try:
            place_vm(
                ctx.caller,
                PlacementRequest(
                    zone=zone.uuid, vm=vm.uuid, account=account.uuid, pinned_host=source.uuid
                ),
            )
        except StratusError as exc:
            log.error("VM '%s': claim not restored on its source host: %s", vm.name, exc)
        _move(ctx, vm, S.MIGRATING, S.RUNNING, "give up its migration", host_id=source_id)
        raise
    _move(
        ctx,
        vm,
        S.MIGRATING,
        S.RUNNING,
        "finish its migration",
        "VM.MIGRATE",
        f"VM '{vm.name}' migrated from '{source.name}' to '{target.name}'",
        host_id=target.id,
        last_host_id=target.id,
    )
    ctx.progress(100, f"running on host '{target.name}'")
    return {"vm": vm.uuid, "from": source.name, "to": target.name}


def recover_migrate(ctx: StepContext) -> str:
    """Where does the domain run now? The VM goes back to Running there."""
    vm = _vm(ctx)
    if vm.state != S.MIGRATING:
        return f"VM '{vm.name}' is {vm.state}; nothing to undo"
    candidates = [h for h in (vm.host_id,) if h is not None] + [
        int(d["host_id"]) for _s, d in ctx.steps if "host_id" in d
    ]
    for host_id in dict.fromkeys(candidates):
        try:
            power = domains.power_state(_connection(ctx, host_id), vm.instance_name)
        except StratusError:
            continue
        if power == PowerState.POWER_ON:
            _move(
                ctx,
                vm,
                S.MIGRATING,
                S.RUNNING,
                "recover a dead migration",
                host_id=host_id,
                last_host_id=host_id,
            )
            return f"VM '{vm.name}' runs on host #{host_id}: back to Running there"
    _move(ctx, vm, S.MIGRATING, S.STOPPED, "recover a dead migration", host_id=None)
    if _claim_state(ctx.db, vm) == "used":
        cleanup.release_claim(ctx.caller, vm, "stop")
    return f"VM '{vm.name}' runs nowhere: Stopped"


# --- change offering -------------------------------------------------------------------------


def change_offering(
    caller: Caller,
    vm_ref: str,
    offering_ref: str,
    *,
    cpu_count: int | None = None,
    cpu_mhz: int | None = None,
    memory_bytes: int | None = None,
) -> VirtualMachine:
    """A Stopped VM gets a new service offering's sizes (CloudStack's scale of a stopped
    VM), refused when no host of its zone could run it. A customized offering takes the
    VM's own sizes within its limits (its defaults for those not given)."""
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        offering = resolve(session, ServiceOffering, offering_ref, "offering", field="offering")
        zone = session.get(Zone, vm.zone_id)
        account = session.get(Account, vm.account_id)
        assert zone is not None and account is not None
    require_state(vm, {S.STOPPED}, "change offering")
    if offering.state != "Active" or offering.is_system:
        raise InvalidParameter(
            f"VM '{vm.name}': service offering '{offering.name}' is not an active user offering",
            field="offering",
        )
    wanted = DeployRequest(
        vm.name, "", offering.uuid, "", cpu_count=cpu_count, cpu_mhz=cpu_mhz,
        memory_bytes=memory_bytes,
    )  # fmt: skip
    sizes = vm_sizes(f"VM '{vm.name}'", offering, wanted)
    # Raises InsufficientCapacity (naming what excluded each host) when nothing fits.
    if offering.is_customized:
        # The VM's own sizes; the offering still brings its host tags and planner.
        request = PlacementRequest(
            zone=zone.uuid,
            cpu_count=sizes[0],
            cpu_mhz=sizes[1],
            memory_bytes=sizes[2],
            account=account.uuid,
            template_tags=tuple(tag_list(offering.host_tags)),
            planner=offering.deployment_planner,
        )
    else:
        request = PlacementRequest(zone=zone.uuid, offering=offering.uuid, account=account.uuid)
    preview(caller, request)
    with caller.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        transition(
            session,
            row,
            S.STOPPED,
            S.STOPPED,
            what="change its offering",
            service_offering_id=offering.id,
            cpu_count=sizes[0],
            cpu_mhz=sizes[1],
            memory_bytes=sizes[2],
        )
        record_event(
            session,
            caller,
            "VM.UPGRADE",
            "VirtualMachine",
            row,
            f"VM '{vm.name}' now has offering '{offering.name}'",
        )
    return row
