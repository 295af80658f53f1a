"""Long work as persisted jobs, run by a worker pool under heartbeat-renewed leases.

    register_handler("StopVM", run, recover=undo)     # at import of a handlers module
    job = submit_job(caller, "StopVM", resource_type="VirtualMachine",
                     resource_uuid=vm.uuid, resource_name=vm.name, params={...})
    with JobRunner(db, workers=4, hosts=manager) as runner:
        done = runner.wait(job.uuid)

- A job is Pending, then Running in exactly one process (the owner, whose lease the
  heartbeat renews), then Succeeded, Failed or Cancelled. Mutating jobs of one resource
  run one at a time in submission order; the rest run in parallel.
- A handler reports `ctx.progress(percent, message)` and commits `ctx.record_step(...)`
  after each side effect, so that when its process dies, the process that finds the job
  (any runner, at start and every lease period) can run the type's `recover` hook on the
  recorded steps and fail the job with a message that says what was undone.
- StratusError messages become the job's error as they are; any other exception is an
  "internal error" with its type (the traceback goes to the log, never to an operator).
- Submits and outcomes are audit events (event_type = the job type).
"""

from engine.jobs.context import JobCancelled, JobContext, LeaseLost
from engine.jobs.queue import cancel_job, get_job, job_steps, list_jobs, submit_job
from engine.jobs.recovery import process_owner_id, recover_orphaned_jobs
from engine.jobs.registry import handler_for, register_handler, registered_types
from engine.jobs.runner import JobFailed, JobRunner

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobRunner",
    "LeaseLost",
    "cancel_job",
    "get_job",
    "handler_for",
    "job_steps",
    "list_jobs",
    "process_owner_id",
    "recover_orphaned_jobs",
    "register_handler",
    "registered_types",
    "submit_job",
]
