"""What a running job's handler sees: its parameters, who asked, progress and steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.context import Caller
from engine.db import Database
from engine.errors import StratusError
from engine.jobs import queue
from engine.models import Job

if TYPE_CHECKING:
    from engine.hosts.manager import HostManager

# Progress is written at most this often (the last value of a burst is kept for the next
# write); a step change of message or 100 % is written at once.
PROGRESS_INTERVAL = 0.25


class LeaseLost(StratusError):
    """This process no longer owns the job: it was presumed dead and the job recovered."""


class JobCancelled(StratusError):
    """The operator cancelled the job while it ran; the handler undid what it did."""


@dataclass
class JobContext:
    job_id: int
    job_uuid: str
    job_type: str
    resource_uuid: str | None
    resource_name: str
    params: dict[str, Any]
    db: Database
    caller: Caller
    owner: str
    lease_seconds: float
    hosts: HostManager | None = None
    steps: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    recovering: bool = False
    _last_write: float = 0.0
    _last_message: str = ""
    _cancel: bool = False

    @classmethod
    def for_job(
        cls,
        job: Job,
        db: Database,
        *,
        owner: str,
        lease_seconds: float,
        hosts: HostManager | None,
        recovering: bool = False,
        cancelled: bool = False,
    ) -> JobContext:
        """The context a handler (or, `recovering`, its recover hook) gets for `job`;
        `cancelled`: the job was cancelled (for a recover hook: before it ever ran)."""
        assert job.id is not None
        params, _ = queue.decode_params(job)
        return cls(
            job_id=job.id,
            job_uuid=job.uuid,
            job_type=job.job_type,
            resource_uuid=job.resource_uuid,
            resource_name=job.resource_name,
            params=params,
            db=db,
            caller=queue.caller_of(db, job),
            owner=owner,
            lease_seconds=lease_seconds,
            hosts=hosts,
            steps=queue.job_steps(db, job.id) if recovering else [],
            recovering=recovering,
            _cancel=cancelled,
        )

    def progress(self, percent: int, message: str) -> None:
        """Report how far the job is (0-100) and what it is doing; renews the lease."""
        percent = max(0, min(100, int(percent)))
        now = time.monotonic()
        if (
            message == self._last_message
            and percent < 100
            and now - self._last_write < PROGRESS_INTERVAL
        ):
            return
        self._last_write, self._last_message = now, message
        ours, cancel = queue.write_progress(
            self.db, self.job_id, self.owner, percent, message, self.lease_seconds
        )
        if not ours and not self.recovering:
            raise LeaseLost(
                f"job {self.job_uuid} ({self.job_type}) was taken over by another process"
            )
        self._cancel = self._cancel or cancel

    def record_step(self, step: str, **data: Any) -> None:
        """Commit, now, that `step` was done (with what undo needs to know)."""
        queue.append_step(self.db, self.job_id, self.owner, step, data)
        self.steps.append((step, data))

    def cancelled(self) -> bool:
        """Whether the operator asked this job to stop (as of the last progress write)."""
        return self._cancel

    def check_cancelled(self) -> None:
        if self._cancel:
            raise JobCancelled(f"job {self.job_uuid} ({self.job_type}) was cancelled")
