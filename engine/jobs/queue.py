"""The persistent job queue: submitting, claiming, progress, steps and outcomes.

Every change of a job row is a compare-and-set on its state and, once running, on its
owner: a process that lost its lease (it was presumed dead and its job recovered) can no
longer write progress or an outcome over what the recovering process decided.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, event, exists, func, insert, not_, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from engine.context import Caller
from engine.db import Database
from engine.errors import InvalidParameter, NotFound, StateConflict
from engine.events import record_event
from engine.models import Job, JobState, JobStep, utcnow

log = logging.getLogger(__name__)

FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
MAX_PARAMS_BYTES = 60_000


@dataclass(frozen=True)
class _Resource:
    uuid: str | None
    name: str


def _job_resource(job: Job) -> _Resource:
    return _Resource(job.resource_uuid, job.resource_name or job.job_type)


def encode_params(caller: Caller, params: dict[str, Any] | None) -> str:
    """The job's params with who submitted it (a job runs with its submitter's rights)."""
    if params is not None and not isinstance(params, dict):
        raise InvalidParameter(f"job params must be an object, got {type(params).__name__}")
    try:
        text = json.dumps(
            {
                "params": params or {},
                "caller": {"domain_id": caller.domain_id, "is_admin": caller.is_admin},
            },
            sort_keys=True,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidParameter(f"job params are not JSON: {exc}", field="params") from None
    if len(text) > MAX_PARAMS_BYTES:
        raise InvalidParameter(
            f"job params are {len(text)} bytes; at most {MAX_PARAMS_BYTES}", field="params"
        )
    return text


def decode_params(job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, caller facts) of a job row."""
    if not job.params:
        return {}, {}
    data = json.loads(job.params)
    return data.get("params", {}), data.get("caller", {})


def caller_of(db: Database, job: Job) -> Caller:
    _, facts = decode_params(job)
    return Caller(
        db=db,
        username=job.username or "system",
        user_id=job.user_id,
        account_id=job.account_id,
        domain_id=facts.get("domain_id"),
        is_admin=bool(facts.get("is_admin", False)),
    )


def submit_job(
    caller: Caller,
    job_type: str,
    *,
    resource_type: str,
    resource_uuid: str | None,
    resource_name: str = "",
    params: dict[str, Any] | None = None,
    session: Session | None = None,
    mutating: bool | None = None,
) -> Job:
    """Queue a job (Pending) and record who asked for it.

    With `session`, the job is part of the caller's transaction: the row that enters a
    transitional state and the job that will move it out commit together or not at all.
    `mutating` defaults to what the job type's handler declared (True if unknown here).
    """
    from engine.jobs.registry import handler_for

    if not job_type or len(job_type) > 64:
        raise InvalidParameter(f"job type {job_type!r}: 1 to 64 characters", field="job_type")
    if mutating is None:
        handler = handler_for(job_type)
        mutating = handler.mutating if handler is not None else True
    job = Job(
        job_type=job_type,
        resource_type=resource_type,
        resource_uuid=resource_uuid,
        resource_name=resource_name[:255],
        account_id=caller.account_id,
        user_id=caller.user_id,
        username=caller.username,
        params=encode_params(caller, params),
        mutating=mutating,
    )
    from engine.jobs.runner import wake_runners

    if session is not None:
        _add_job(session, caller, job)
        # Runners of this process look as soon as the caller's transaction commits.
        event.listen(session, "after_commit", lambda _s: wake_runners(), once=True)
        return job
    with caller.db.write() as own:
        _add_job(own, caller, job)
    wake_runners()
    return job


def _add_job(session: Session, caller: Caller, job: Job) -> None:
    session.add(job)
    record_event(
        session,
        caller,
        job.job_type,
        job.resource_type,
        _job_resource(job),
        f"{job.job_type} submitted as job {job.uuid}",
        state="Scheduled",
    )
    session.flush()


def get_job(db: Database, uuid: str) -> Job:
    with db.read() as session:
        job = session.execute(select(Job).where(col(Job.uuid) == uuid)).scalars().first()
    if job is None:
        raise NotFound(f"job '{uuid}' does not exist", field="job")
    return job


def list_jobs(
    db: Database,
    *,
    resource_uuid: str | None = None,
    states: tuple[str, ...] | None = None,
    limit: int = 100,
) -> list[Job]:
    """Newest first."""
    query = select(Job).order_by(col(Job.id).desc()).limit(limit)
    if resource_uuid is not None:
        query = query.where(col(Job.resource_uuid) == resource_uuid)
    if states:
        query = query.where(col(Job.state).in_(states))
    with db.read() as session:
        return list(session.execute(query).scalars())


def job_steps(db: Database, job_id: int) -> list[tuple[str, dict[str, Any]]]:
    with db.read() as session:
        rows = session.execute(
            select(JobStep.step, JobStep.data)
            .where(col(JobStep.job_id) == job_id)
            .order_by(col(JobStep.seq))
        ).all()
    return [(step, json.loads(data)) for step, data in rows]


def cancel_job(caller: Caller, uuid: str) -> Job:
    """A pending job is cancelled at once, and what its submit left (a VM in Starting) is
    undone by its type's recover hook; a running one is asked to stop (its handler checks
    between steps and undoes what it did)."""
    cancelled_pending = False
    with caller.db.write() as session:
        job = session.execute(select(Job).where(col(Job.uuid) == uuid)).scalars().first()
        if job is None:
            raise NotFound(f"job '{uuid}' does not exist", field="job")
        if job.state in FINISHED:
            raise StateConflict(f"job '{uuid}' ({job.job_type}) already ended: {job.state}")
        if job.state == JobState.PENDING:
            changed = session.execute(
                update(Job)
                .where(col(Job.id) == job.id, col(Job.state) == JobState.PENDING)
                .values(state=JobState.CANCELLED, finished=utcnow(), error="cancelled")
            ).rowcount
            if changed:
                job.state, job.error = JobState.CANCELLED, "cancelled"
                record_event(
                    session,
                    caller,
                    job.job_type,
                    job.resource_type,
                    _job_resource(job),
                    f"{job.job_type} job {job.uuid} cancelled before it started",
                )
                cancelled_pending = True
    if cancelled_pending:
        return _undo_submit(caller.db, job)
    with caller.db.write() as session:
        if job.state == JobState.PENDING:  # a runner took it meanwhile: ask it to stop
            job = session.execute(select(Job).where(col(Job.id) == job.id)).scalars().one()
        session.execute(
            update(Job)
            .where(col(Job.id) == job.id, col(Job.state) == JobState.RUNNING)
            .values(cancel_requested=True)
        )
        job.cancel_requested = True
        record_event(
            session,
            caller,
            job.job_type,
            job.resource_type,
            _job_resource(job),
            f"cancellation of {job.job_type} job {job.uuid} requested",
        )
    return job


def _undo_submit(db: Database, job: Job) -> Job:
    """A job cancelled before it ran is, for what its submit left behind, a job whose
    process died before its first step: the same recover hook takes it back."""
    from engine.jobs.context import JobContext
    from engine.jobs.registry import handler_for

    handler = handler_for(job.job_type)
    if handler is None or handler.recover is None:
        return job
    ctx = JobContext.for_job(
        job, db, owner="", lease_seconds=30.0, hosts=None, recovering=True, cancelled=True
    )
    try:
        undone = handler.recover(ctx).strip()
    except Exception as exc:  # the job stays cancelled; the message says what is left
        log.exception("undoing the submit of cancelled job %s", job.uuid)
        undone = f"undoing its submit failed ({type(exc).__name__}: {exc}); check by hand"
    job.error = f"cancelled before it started; {undone}"[:4096]
    with db.write() as session:
        session.execute(update(Job).where(col(Job.id) == job.id).values(error=job.error))
    return job


# --- what runners do ----------------------------------------------------------------------


def _blocked_by_earlier() -> Any:
    """True for a pending mutating job whose resource has an earlier mutating job still
    pending or running: it waits its turn."""
    other = aliased(Job)
    return and_(
        col(Job.mutating),
        col(Job.resource_uuid).is_not(None),
        exists(
            select(other.id).where(
                other.resource_uuid == Job.resource_uuid,
                other.mutating,
                or_(
                    other.state == JobState.RUNNING,
                    and_(other.state == JobState.PENDING, other.id < Job.id),
                ),
            )
        ),
    )


def claim_jobs(
    db: Database, owner: str, lease_seconds: float, limit: int, types: list[str]
) -> list[Job]:
    """Take up to `limit` runnable pending jobs of `types` for `owner`, oldest first."""
    if limit <= 0 or not types:
        return []
    now = utcnow()
    claimed: list[Job] = []
    with db.read() as session:
        candidates = list(
            session.execute(
                select(Job.id)
                .where(
                    col(Job.state) == JobState.PENDING,
                    col(Job.job_type).in_(types),
                    not_(_blocked_by_earlier()),
                )
                .order_by(col(Job.id))
                .limit(limit * 4)
            ).scalars()
        )
    for job_id in candidates:
        if len(claimed) >= limit:
            break
        with db.write() as session:
            # Re-checked in the UPDATE itself: another runner may have taken this job, or
            # an earlier job of the same resource may have been submitted meanwhile.
            changed = session.execute(
                update(Job)
                .where(
                    col(Job.id) == job_id,
                    col(Job.state) == JobState.PENDING,
                    not_(_blocked_by_earlier()),
                )
                .values(
                    state=JobState.RUNNING,
                    owner=owner,
                    lease_expires=now + timedelta(seconds=lease_seconds),
                    started=now,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if changed:
                job = session.execute(select(Job).where(col(Job.id) == job_id)).scalars().one()
                claimed.append(job)
    return claimed


def renew_leases(db: Database, owner: str, lease_seconds: float) -> int:
    with db.write() as session:
        return session.execute(
            update(Job)
            .where(col(Job.owner) == owner, col(Job.state) == JobState.RUNNING)
            .values(lease_expires=utcnow() + timedelta(seconds=lease_seconds))
        ).rowcount


def write_progress(
    db: Database, job_id: int, owner: str, percent: int, message: str, lease_seconds: float
) -> tuple[bool, bool]:
    """(still ours, cancellation requested)."""
    with db.write() as session:
        changed = session.execute(
            update(Job)
            .where(
                col(Job.id) == job_id,
                col(Job.owner) == owner,
                col(Job.state) == JobState.RUNNING,
            )
            .values(
                progress=percent,
                progress_message=message[:1024],
                lease_expires=utcnow() + timedelta(seconds=lease_seconds),
            )
        ).rowcount
        cancel = session.execute(
            select(Job.cancel_requested).where(col(Job.id) == job_id)
        ).scalar_one_or_none()
    return bool(changed), bool(cancel)


def append_step(db: Database, job_id: int, owner: str, step: str, data: dict[str, Any]) -> None:
    from engine.jobs.context import LeaseLost

    text = json.dumps(data, sort_keys=True, default=str)
    with db.write() as session:
        mine = session.execute(
            select(Job.id).where(
                col(Job.id) == job_id,
                col(Job.owner) == owner,
                col(Job.state) == JobState.RUNNING,
            )
        ).scalar_one_or_none()
        if mine is None:
            raise LeaseLost(f"job {job_id} is no longer this process's (its lease was taken)")
        seq = session.execute(
            select(func.coalesce(func.max(JobStep.seq), 0)).where(col(JobStep.job_id) == job_id)
        ).scalar_one()
        session.execute(
            insert(JobStep).values(job_id=job_id, seq=seq + 1, step=step[:64], data=text)
        )


def finish_job(
    db: Database,
    job: Job,
    owner: str,
    *,
    state: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    caller: Caller,
    description: str,
) -> bool:
    """Record the outcome (and its audit event) if the job is still ours."""
    values: dict[str, Any] = {
        "state": state,
        "finished": utcnow(),
        "result": json.dumps(result, sort_keys=True, default=str) if result is not None else None,
        "error": error[:4096] if error else None,
        "lease_expires": None,
    }
    if state == JobState.SUCCEEDED:
        values["progress"] = 100
    with db.write() as session:
        changed = session.execute(
            update(Job)
            .where(
                col(Job.id) == job.id,
                col(Job.owner) == owner,
                col(Job.state) == JobState.RUNNING,
            )
            .values(**values)
        ).rowcount
        if changed:
            record_event(
                session,
                caller,
                job.job_type,
                job.resource_type,
                _job_resource(job),
                description[:4096],
                level="INFO" if state == JobState.SUCCEEDED else "ERROR",
                state="Completed" if state == JobState.SUCCEEDED else "Failed",
            )
    return bool(changed)


def lease_deadline(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
