"""Jobs whose owner died: found, taken over, undone and failed with a clear message."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

import psutil
from sqlalchemy import or_, select, update
from sqlmodel import col

from engine.db import Database
from engine.jobs import queue
from engine.jobs.context import JobContext
from engine.jobs.registry import handler_for
from engine.models import Job, JobState, utcnow

log = logging.getLogger(__name__)

_HOSTNAME = socket.gethostname()


def process_owner_id() -> str:
    """This process as a job owner: host, pid and the pid's start time (a reused pid
    after a crash is then not mistaken for the process that died)."""
    pid = os.getpid()
    return f"{_HOSTNAME}:{pid}:{int(psutil.Process(pid).create_time())}"


def owner_is_dead(owner: str) -> bool:
    """True when `owner` ran on this machine and that process is gone. An owner on another
    machine is judged by its lease alone."""
    try:
        # "host:pid:start" then, for a runner, ":<runner>" (several runners per process).
        hostname, pid_text, started_text = owner.split(":")[:3]
        pid, started = int(pid_text), int(started_text)
    except ValueError:
        return False
    if hostname != _HOSTNAME:
        return False
    try:
        return int(psutil.Process(pid).create_time()) != started
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def orphaned_jobs(db: Database, me: str) -> list[Job]:
    """Running jobs of other owners that are dead: lease run out, or process gone."""
    now = utcnow()
    with db.read() as session:
        rows = list(
            session.execute(
                select(Job).where(
                    col(Job.state) == JobState.RUNNING,
                    or_(col(Job.owner).is_(None), col(Job.owner) != me),
                )
            ).scalars()
        )
    return [
        job
        for job in rows
        if job.owner is None
        or job.lease_expires is None
        or job.lease_expires <= now
        or owner_is_dead(job.owner)
    ]


def recover_orphaned_jobs(
    db: Database, me: str, *, lease_seconds: float = 30.0, hosts: object | None = None
) -> list[Job]:
    """Fail every job whose owner died, after its handler undid what the dead run did.

    The job is first taken over (owner := me, compare-and-set on the dead owner), so two
    recovering processes never undo the same job twice. Returns the jobs failed here.
    """
    failed: list[Job] = []
    for job in orphaned_jobs(db, me):
        with db.write() as session:
            taken = session.execute(
                update(Job)
                .where(
                    col(Job.id) == job.id,
                    col(Job.state) == JobState.RUNNING,
                    col(Job.owner) == job.owner
                    if job.owner is not None
                    else col(Job.owner).is_(None),
                )
                .values(owner=me, lease_expires=utcnow() + timedelta(seconds=lease_seconds))
            ).rowcount
        if not taken:
            continue
        dead = job.owner or "an unknown process"
        message = _undo(db, job, me, lease_seconds, hosts)
        error = (
            f"{job.job_type} of {job.resource_type} '{job.resource_name or job.resource_uuid}' "
            f"was interrupted: the management server process running it ({dead}) stopped "
            f"before it finished. {message}"
        )
        caller = queue.caller_of(db, job)
        if queue.finish_job(
            db, job, me, state=JobState.FAILED, error=error, caller=caller, description=error
        ):
            job.state, job.error = JobState.FAILED, error
            failed.append(job)
            log.warning("recovered job %s: %s", job.uuid, error)
    return failed


def _undo(db: Database, job: Job, me: str, lease_seconds: float, hosts: object | None) -> str:
    handler = handler_for(job.job_type)
    if handler is None or handler.recover is None:
        return (
            f"No recovery is registered for {job.job_type} jobs in this process: check "
            f"{job.resource_type} '{job.resource_name or job.resource_uuid}' by hand."
        )
    ctx = JobContext.for_job(
        job,
        db,
        owner=me,
        lease_seconds=lease_seconds,
        hosts=hosts,
        recovering=True,  # type: ignore[arg-type]
    )
    try:
        return handler.recover(ctx).strip() or "Nothing needed undoing."
    except Exception as exc:  # the job must still end Failed, with why its undo failed
        log.exception("recovering job %s", job.uuid)
        return f"Undoing what it did failed ({type(exc).__name__}: {exc}); check by hand."
