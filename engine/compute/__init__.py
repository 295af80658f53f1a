"""The VM lifecycle: deploy with undo, operations, and the VM state machine.

Public API (services take a `Caller`; hypervisor work runs as jobs, see engine.jobs):

- `deploy_vm(caller, DeployRequest(name, zone, offering, template, networks=[...],
  disk_offerings=[...], ip_address=None)) -> (VirtualMachine, Job)`: validates, creates the
  VM (Starting) and its DeployVM job in one transaction. The job places the VM
  (engine.placement, explanation kept in VmLifecycle.placement_summary), gives it a NIC per
  network (engine.ipam), creates its root volume from the template and its data volumes on
  the chosen pools, defines and starts its domain. A failed step undoes every finished one
  (domain, volumes, NICs, claim) and leaves the VM in Error with the reason
  (VmLifecycle.state_reason); a failed start is retried on another host (`start.retry`).
- `start_vm`, `stop_vm(forced=, timeout=)`, `reboot_vm`, `destroy_vm(expunge=)`,
  `expunge_vm`, `migrate_vm(vm, host)` -> Job; `recover_vm` (Destroyed → Stopped) and
  `change_offering` (Stopped) are immediate; `expunge_due` submits the expunges that
  `expunge.delay` makes due.
- `vm_lifecycle(caller, vm) -> VmLifecycleView`: the reason of its Error or failed start,
  its placement explanation, when it was destroyed and until when it is recoverable.
- `states.transition`: the compare-and-set every state change goes through.

Modules: deploy.py (validate, steps, undo, recover), operations.py, cleanup.py (taking a
VM's resources back, idempotently), domain.py (domain XML from the rows), states.py,
templates.py (a template's file in a zone), pause.py, isos.py, queries.py (also the
volume choices and `console_target` the console uses), context.py (what a job gives a
step, the test hooks), handlers.py (job registrations).
"""

from engine.compute.deploy import DeployFailed, DeployRequest, deploy_vm
from engine.compute.isos import attach_iso, detach_iso
from engine.compute.operations import (
    change_offering,
    destroy_vm,
    expunge_due,
    expunge_vm,
    migrate_vm,
    reboot_vm,
    recover_vm,
    start_vm,
    stop_vm,
)
from engine.compute.pause import resume_vm, suspend_vm
from engine.compute.queries import VmLifecycleView, vm_lifecycle

__all__ = [
    "DeployFailed",
    "DeployRequest",
    "VmLifecycleView",
    "attach_iso",
    "change_offering",
    "deploy_vm",
    "destroy_vm",
    "detach_iso",
    "expunge_due",
    "expunge_vm",
    "migrate_vm",
    "reboot_vm",
    "recover_vm",
    "resume_vm",
    "start_vm",
    "stop_vm",
    "suspend_vm",
    "vm_lifecycle",
]
