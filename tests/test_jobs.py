"""The persistent job queue: outcomes, one-at-a-time per resource, leases, cancellation and
recovery of jobs whose process was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import job_handlers
import pytest
from helpers import rejects
from sqlalchemy import select, text, update

from engine.bootstrap import Cloud
from engine.errors import InvalidParameter, StateConflict
from engine.jobs import (
    JobContext,
    JobFailed,
    JobRunner,
    LeaseLost,
    cancel_job,
    get_job,
    job_steps,
    list_jobs,
    submit_job,
)
from engine.jobs.queue import claim_jobs
from engine.models import Event, Job, JobState, utcnow

TESTS = Path(__file__).parent


def submit(cloud: Cloud, job_type: str, resource: str | None = "vm-1", **params: object) -> Job:
    return submit_job(
        cloud.admin,
        job_type,
        resource_type="VirtualMachine",
        resource_uuid=resource,
        resource_name=f"name-of-{resource}",
        params=params,
    )


def events_of(cloud: Cloud, job_type: str) -> list[tuple[str, str, str]]:
    with cloud.db.read() as session:
        rows = session.execute(
            select(Event.state, Event.level, Event.description)
            .where(Event.event_type == job_type)
            .order_by(Event.id)
        ).all()
    return [tuple(r) for r in rows]


def test_a_job_runs_to_success_with_its_result_progress_and_audit_trail(any_cloud: Cloud) -> None:
    job = submit(any_cloud, "Record", echo="hello")
    assert get_job(any_cloud.db, job.uuid).state == JobState.PENDING
    with JobRunner(any_cloud.db, workers=2) as runner:
        done = runner.wait(job.uuid, timeout=30)
    assert done.state == JobState.SUCCEEDED
    assert json.loads(done.result or "null") == {"echo": "hello"}
    assert done.progress == 100 and done.error is None
    assert done.started is not None and done.finished is not None
    assert done.owner == runner.owner
    states = [state for state, _, _ in events_of(any_cloud, "Record")]
    assert states == ["Scheduled", "Completed"]


def test_failures_keep_the_services_message_and_never_a_traceback(cloud: Cloud) -> None:
    refused = submit(cloud, "Refuse", resource="vol-1")
    crashed = submit(cloud, "Crash", resource="vol-2")
    with JobRunner(cloud.db) as runner:
        refused_done = runner.wait(refused.uuid, timeout=30)
        crashed_done = runner.wait(crashed.uuid, timeout=30)
        with pytest.raises(JobFailed, match="must grow, not shrink"):
            runner.wait(refused.uuid, raise_on_failure=True)
    assert refused_done.state == JobState.FAILED
    assert refused_done.error == "volume 'name-of-vol-1': size must grow, not shrink"
    assert crashed_done.state == JobState.FAILED
    assert crashed_done.error == "internal error: ZeroDivisionError: division by zero"
    assert "Traceback" not in (crashed_done.error or "")
    failed = events_of(cloud, "Crash")[-1]
    assert failed[:2] == ("Failed", "ERROR") and "ZeroDivisionError" in failed[2]


def test_mutating_jobs_of_one_resource_run_one_at_a_time_in_order(any_cloud: Cloud) -> None:
    """Six jobs for one VM on two runners (two owners, as two engine processes would be)
    with four workers each: never two at once, in submission order."""
    job_handlers.timeline.clear()
    jobs = [submit(any_cloud, "Record", resource="vm-x", sleep=0.03) for _ in range(6)]
    with JobRunner(any_cloud.db, workers=4) as a, JobRunner(any_cloud.db, workers=4) as b:
        for job in jobs:
            assert a.wait(job.uuid, timeout=60).state == JobState.SUCCEEDED
    owners = {get_job(any_cloud.db, j.uuid).owner for j in jobs}
    assert owners <= {a.owner, b.owner}
    order = [(uuid, kind) for uuid, kind, _ in job_handlers.timeline]
    # Strictly start, end, start, end ... and in the order they were submitted.
    assert order == [(j.uuid, kind) for j in jobs for kind in ("start", "end")]


def test_jobs_of_different_resources_run_at_the_same_time(cloud: Cloud) -> None:
    job_handlers.meeting.reset()
    first = submit(cloud, "Meet", resource="vm-a")
    second = submit(cloud, "Meet", resource="vm-b")
    with JobRunner(cloud.db, workers=2) as runner:
        # Each waits at a two-party barrier: both succeed only if they ran concurrently.
        assert runner.wait(first.uuid, timeout=30).state == JobState.SUCCEEDED
        assert runner.wait(second.uuid, timeout=30).state == JobState.SUCCEEDED


def test_a_non_mutating_job_does_not_wait_for_the_resource(cloud: Cloud) -> None:
    blocker = submit(cloud, "Record", resource="vm-q")
    reader = submit(cloud, "ReadOnly", resource="vm-q")
    assert reader.mutating is False
    with cloud.db.write() as session:  # the blocker is running elsewhere, alive
        session.execute(
            update(Job)
            .where(Job.id == blocker.id)
            .values(
                state=JobState.RUNNING,
                owner="elsewhere:1:1",
                lease_expires=utcnow() + timedelta(hours=1),
            )
        )
    taken = claim_jobs(cloud.db, "me", 30, 5, ["Record", "ReadOnly"])
    assert [j.uuid for j in taken] == [reader.uuid]
    later = submit(cloud, "Record", resource="vm-q")
    assert claim_jobs(cloud.db, "me", 30, 5, ["Record"]) == []  # waits for the blocker
    assert get_job(cloud.db, later.uuid).state == JobState.PENDING


def test_bad_params_are_refused_and_nothing_is_written(cloud: Cloud) -> None:
    with rejects(cloud, InvalidParameter, "job params are not JSON", field="params"):
        submit(cloud, "Record", when=object())
    with rejects(cloud, InvalidParameter, "job params are", "at most"):
        submit(cloud, "Record", blob="x" * 70_000)


def test_a_job_submitted_in_a_rolled_back_transaction_never_exists(cloud: Cloud) -> None:
    with pytest.raises(RuntimeError), cloud.db.write() as session:
        submit_job(
            cloud.admin, "Record", resource_type="VirtualMachine", resource_uuid="vm-r",
            session=session,
        )  # fmt: skip
        raise RuntimeError("the VM row failed validation")
    assert list_jobs(cloud.db, resource_uuid="vm-r") == []


def test_cancelling_a_pending_and_a_running_job(cloud: Cloud, tmp_path: Path) -> None:
    pending = submit(cloud, "Record", resource="vm-c")
    assert cancel_job(cloud.admin, pending.uuid).state == JobState.CANCELLED
    with pytest.raises(StateConflict, match="already ended: Cancelled"):
        cancel_job(cloud.admin, pending.uuid)
    ready = tmp_path / "ready"
    running = submit(cloud, "Cancellable", resource="vm-c", ready=str(ready))
    with JobRunner(cloud.db) as runner:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        cancel_job(cloud.admin, running.uuid)
        done = runner.wait(running.uuid, timeout=30)
    assert done.state == JobState.CANCELLED
    assert "was cancelled" in (done.error or "")


def test_a_process_that_lost_its_lease_cannot_write_over_the_recovery(cloud: Cloud) -> None:
    job = submit(cloud, "Record", resource="vm-l")
    (taken,) = claim_jobs(cloud.db, "old-owner", 30, 1, ["Record"])
    assert taken.id is not None
    ctx = JobContext(
        job_id=taken.id, job_uuid=taken.uuid, job_type="Record", resource_uuid="vm-l",
        resource_name="", params={}, db=cloud.db, caller=cloud.admin, owner="old-owner",
        lease_seconds=30,
    )  # fmt: skip
    ctx.record_step("made", thing=1)
    with cloud.db.write() as session:  # another process took the job over
        session.execute(update(Job).where(Job.id == job.id).values(owner="new-owner"))
    with pytest.raises(LeaseLost, match="taken over"):
        ctx.progress(60, "still going")
    with pytest.raises(LeaseLost):
        ctx.record_step("made", thing=2)
    assert job_steps(cloud.db, taken.id) == [("made", {"thing": 1})]
    assert get_job(cloud.db, job.uuid).progress == 0


def test_expired_leases_of_other_machines_are_recovered_live_ones_are_not(cloud: Cloud) -> None:
    expired = submit(cloud, "Record", resource="vm-e1")
    alive = submit(cloud, "Record", resource="vm-e2")
    with cloud.db.write() as session:
        for job, lease in ((expired, -5), (alive, 3600)):
            session.execute(
                update(Job)
                .where(Job.id == job.id)
                .values(state=JobState.RUNNING, owner="other-machine:4242:1",
                        lease_expires=utcnow() + timedelta(seconds=lease))
            )  # fmt: skip
    runner = JobRunner(cloud.db, workers=1)
    assert [j.uuid for j in runner.recover()] == [expired.uuid]
    failed = get_job(cloud.db, expired.uuid)
    assert failed.state == JobState.FAILED
    assert "other-machine:4242:1" in (failed.error or "")
    assert "stopped before it finished" in (failed.error or "")
    assert get_job(cloud.db, alive.uuid).state == JobState.RUNNING


def test_a_killed_process_is_recovered_on_restart_and_its_steps_undone(
    any_cloud: Cloud, tmp_path: Path
) -> None:
    """A real engine process runs a job that has made two files, and is killed -9; the
    next runner to start fails the job, undoes the files and says so."""
    files = [str(tmp_path / "disk-a"), str(tmp_path / "disk-b")]
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        import job_handlers
        from engine.bootstrap import open_cloud
        from engine.jobs import JobRunner, submit_job
        cloud = open_cloud({any_cloud.db.url!r}, migrate=False)
        JobRunner(cloud.db, workers=1).start()
        submit_job(cloud.admin, "MakeFiles", resource_type="Volume", resource_uuid="vol-k",
                   resource_name="data-1", params={{"files": {files!r}, "ready": {str(ready)!r}}})
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "the engine process died before its job ran"
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(Path(f).exists() for f in files)
    (job,) = list_jobs(any_cloud.db, resource_uuid="vol-k")
    assert job.state == JobState.RUNNING  # as the dead process left it

    with JobRunner(any_cloud.db, workers=1) as runner:
        assert [j.uuid for j in runner.recovered] == [job.uuid]
    done = get_job(any_cloud.db, job.uuid)
    assert done.state == JobState.FAILED
    assert done.error is not None
    assert "MakeFiles of Volume 'data-1' was interrupted" in done.error
    assert f":{proc.pid}:" in done.error  # names the process that died
    assert "Removed 2 files: disk-b, disk-a." in done.error
    assert not any(Path(f).exists() for f in files)
    assert events_of(any_cloud, "MakeFiles")[-1][:2] == ("Failed", "ERROR")


def test_job_rows_are_plain_json_for_the_console(cloud: Cloud) -> None:
    job = submit(cloud, "Record", resource="vm-j", echo=[1, 2])
    with cloud.db.read() as session:
        raw = session.execute(text("SELECT params FROM job WHERE id = :i"), {"i": job.id}).scalar()
    assert json.loads(raw)["params"] == {"echo": [1, 2]}
