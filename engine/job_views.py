"""What the console's jobs panel shows: running and pending jobs, then the newest finished.

Plain values for the front ends: `job_panel` reads one bounded page of each kind (newest
first, the `ix_job_state_created` index) plus their counts, and turns a job's JSON result
into one readable line. No front end builds its own job query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from engine.context import Caller
from engine.errors import InvalidParameter
from engine.models import Job, JobState

ACTIVE = (JobState.PENDING, JobState.RUNNING)
FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
MAX_LINES = 500


@dataclass(frozen=True)
class JobView:
    uuid: str
    job_type: str
    resource_type: str
    resource_uuid: str | None
    resource_name: str
    username: str
    state: str
    progress: int
    progress_message: str
    result: str  # the result as one line ("" when none)
    result_data: dict[str, Any]  # the result itself (JSON object; {} when none)
    error: str
    created: datetime
    started: datetime | None
    finished: datetime | None
    cancel_requested: bool

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def subject(self) -> str:
        """ "AddHost Host kvm-9" — what the job acts on."""
        name = self.resource_name or self.resource_uuid or ""
        return f"{self.job_type} {self.resource_type} {name}".strip()


@dataclass(frozen=True)
class JobPanel:
    active: list[JobView]  # running, then pending; newest first
    active_total: int
    finished: list[JobView]  # newest first
    finished_total: int


def result_line(result: str | None, *, width: int = 200) -> str:
    """A job's JSON result as `key=value, …` (or the text as it is when not JSON)."""
    if not result:
        return ""
    try:
        data = json.loads(result)
    except ValueError:
        return result[:width]
    if isinstance(data, dict):
        text = ", ".join(f"{key}={_short(value)}" for key, value in data.items())
    else:
        text = _short(data)
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(value: object) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _data(result: str | None) -> dict[str, Any]:
    try:
        data = json.loads(result) if result else {}
    except ValueError:
        return {"result": result}
    return data if isinstance(data, dict) else {"result": data}


def _view(job: Job) -> JobView:
    return JobView(
        uuid=job.uuid,
        job_type=job.job_type,
        resource_type=job.resource_type,
        resource_uuid=job.resource_uuid,
        resource_name=job.resource_name,
        username=job.username,
        state=job.state,
        progress=job.progress,
        progress_message=job.progress_message,
        result=result_line(job.result),
        result_data=_data(job.result),
        error=job.error or "",
        created=job.created,
        started=job.started,
        finished=job.finished,
        cancel_requested=job.cancel_requested,
    )


def job_panel(caller: Caller, *, active_limit: int = 50, finished_limit: int = 50) -> JobPanel:
    """Active jobs (Running before Pending, newest first) and the newest finished ones."""
    for name, limit in (("active_limit", active_limit), ("finished_limit", finished_limit)):
        if not 0 <= limit <= MAX_LINES:
            raise InvalidParameter(f"jobs panel: {name} {limit} is outside 0..{MAX_LINES}")
    running_first = (col(Job.state) == JobState.RUNNING).desc()
    with caller.db.read() as session:
        active = list(
            session.execute(
                select(Job)
                .where(col(Job.state).in_(ACTIVE))
                .order_by(running_first, col(Job.id).desc())
                .limit(active_limit)
            ).scalars()
        )
        finished = list(
            session.execute(
                select(Job)
                .where(col(Job.state).in_(FINISHED))
                .order_by(col(Job.id).desc())
                .limit(finished_limit)
            ).scalars()
        )
        counts: dict[str, int] = {
            state: count
            for state, count in session.execute(
                select(Job.state, func.count()).group_by(Job.state)
            ).all()
        }
    return JobPanel(
        active=[_view(job) for job in active],
        active_total=sum(counts.get(state, 0) for state in ACTIVE),
        finished=[_view(job) for job in finished],
        finished_total=sum(counts.get(state, 0) for state in FINISHED),
    )


def job_view(caller: Caller, uuid: str) -> JobView:
    """One job, for the panel's detail line and for watching a submitted job."""
    from engine.jobs import get_job

    return _view(get_job(caller.db, uuid))
