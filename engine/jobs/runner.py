"""The worker pool of one engine process: claims runnable jobs, runs them, keeps leases.

A dispatcher thread claims as many pending jobs as there are idle workers (oldest first,
one at a time per resource), a heartbeat thread renews the leases of the jobs this process
runs, and every lease period the process looks for jobs whose owner died and recovers
them. Submitting in this process wakes the dispatcher at once; other processes' submits
are seen on the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from engine.db import Database
from engine.errors import DatabaseUnavailable, StratusError
from engine.jobs import queue
from engine.jobs.context import JobCancelled, JobContext, LeaseLost
from engine.jobs.recovery import process_owner_id, recover_orphaned_jobs
from engine.jobs.registry import handler_for, load_handler_modules, registered_types
from engine.models import Job, JobState

if TYPE_CHECKING:
    from engine.hosts.manager import HostManager

log = logging.getLogger(__name__)

_runners: weakref.WeakSet[JobRunner] = weakref.WeakSet()


def wake_runners() -> None:
    """A job was submitted in this process: let idle runners look now."""
    for runner in list(_runners):
        runner.wake()


class JobFailed(StratusError):
    """A job ended other than Succeeded; the message is the job's error."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.error or f"job {job.uuid} ended {job.state}")
        self.job = job


class JobRunner:
    def __init__(
        self,
        db: Database,
        *,
        workers: int = 4,
        hosts: HostManager | None = None,
        owner: str | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.25,
        recover_on_start: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError("a job runner needs at least one worker")
        self.db = db
        self.workers = workers
        self.hosts = hosts
        self.owner = owner or f"{process_owner_id()}:{id(self):x}"
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.recover_on_start = recover_on_start
        self.recovered: list[Job] = []
        self._pool: ThreadPoolExecutor | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._finished = threading.Condition()
        self._running = 0
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> JobRunner:
        load_handler_modules()
        if self.recover_on_start:
            self.recover()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="job")
        for target, name in ((self._dispatch, "jobs-dispatch"), (self._heartbeat, "jobs-lease")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        _runners.add(self)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; wait up to `timeout` for running jobs, then let go."""
        _runners.discard(self)
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._pool is not None:
            deadline = time.monotonic() + timeout
            with self._finished:
                while self._running and time.monotonic() < deadline:
                    self._finished.wait(0.1)
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> JobRunner:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def wake(self) -> None:
        self._wake.set()

    def recover(self) -> list[Job]:
        """Fail (after undoing) the jobs of dead owners; returns those failed now."""
        failed = recover_orphaned_jobs(
            self.db, self.owner, lease_seconds=self.lease_seconds, hosts=self.hosts
        )
        self.recovered.extend(failed)
        return failed

    # --- waiting -----------------------------------------------------------------------

    def wait(self, job_uuid: str, timeout: float = 120.0, *, raise_on_failure: bool = False) -> Job:
        """The job once it has ended (or TimeoutError naming it)."""
        deadline = time.monotonic() + timeout
        while True:
            job = queue.get_job(self.db, job_uuid)
            if job.state in queue.FINISHED:
                if raise_on_failure and job.state != JobState.SUCCEEDED:
                    raise JobFailed(job)
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"job {job_uuid} ({job.job_type}) still {job.state} after {timeout:g} s"
                    f" at {job.progress}% {job.progress_message!r}"
                )
            with self._finished:
                self._finished.wait(min(remaining, 0.05))

    # --- threads -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        next_recovery = time.monotonic() + self.lease_seconds
        while not self._stop.is_set():
            try:
                free = self.workers - self._running
                if free > 0:
                    jobs = queue.claim_jobs(
                        self.db, self.owner, self.lease_seconds, free, registered_types()
                    )
                    for job in jobs:
                        self._start(job)
                    if jobs:
                        continue  # there may be more
                if time.monotonic() >= next_recovery:
                    next_recovery = time.monotonic() + self.lease_seconds
                    self.recover()
            except DatabaseUnavailable as exc:
                log.warning("job dispatcher: %s", exc)
            except Exception:
                log.exception("job dispatcher")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                queue.renew_leases(self.db, self.owner, self.lease_seconds)
            except Exception as exc:
                log.warning("job leases of %s not renewed: %s", self.owner, exc)

    def _start(self, job: Job) -> None:
        assert self._pool is not None
        with self._finished:
            self._running += 1
        self._pool.submit(self._run, job)

    def _run(self, job: Job) -> None:
        try:
            self._execute(job)
        finally:
            with self._finished:
                self._running -= 1
                self._finished.notify_all()
            self._wake.set()

    def _execute(self, job: Job) -> None:
        assert job.id is not None
        caller = queue.caller_of(self.db, job)
        subject = f"{job.job_type} {job.resource_name or job.resource_uuid or ''}".strip()
        handler = handler_for(job.job_type)
        if handler is None:  # claimed only for registered types; a reload may drop one
            queue.finish_job(
                self.db, job, self.owner, state=JobState.FAILED, caller=caller,
                error=f"no handler for {job.job_type} jobs in this management server",
                description=f"{subject}: no handler",
            )  # fmt: skip
            return
        ctx = JobContext.for_job(
            job, self.db, owner=self.owner, lease_seconds=self.lease_seconds, hosts=self.hosts
        )
        state, result, error = JobState.SUCCEEDED, None, None
        try:
            result = handler.run(ctx)
            if result is not None and not isinstance(result, dict):
                result = {"result": result}
        except LeaseLost as exc:
            log.warning("%s", exc)
            return
        except JobCancelled as exc:
            state, error = JobState.CANCELLED, str(exc)
        except StratusError as exc:
            state, error = JobState.FAILED, str(exc)
        except Exception as exc:
            log.exception("job %s (%s)", job.uuid, job.job_type)
            state, error = JobState.FAILED, f"internal error: {type(exc).__name__}: {exc}"
        description = f"{subject}: {'succeeded' if error is None else error}"
        try:
            queue.finish_job(
                self.db, job, self.owner, state=state, result=result, error=error,
                caller=caller, description=description,
            )  # fmt: skip
        except DatabaseUnavailable as exc:
            # The lease runs out and a live process fails the job; nothing else to do.
            log.error("job %s outcome not recorded: %s", job.uuid, exc)
