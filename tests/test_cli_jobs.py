"""`stratus jobs` and `stratus serve`: a headless engine that recovers jobs of stopped
processes and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from cli.main import main
from engine.bootstrap import open_cloud
from engine.jobs import get_job, submit_job
from engine.models import Job, JobState, utcnow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def queue_jobs(url: str) -> tuple[Job, Job]:
    cloud = open_cloud(url)
    try:
        pending = submit_job(
            cloud.admin, "StopVM", resource_type="VirtualMachine", resource_uuid="vm-p",
            resource_name="web-1",
        )  # fmt: skip
        orphan = submit_job(
            cloud.admin, "StartVM", resource_type="VirtualMachine", resource_uuid="vm-o",
            resource_name="db-1",
        )  # fmt: skip
        with cloud.db.write() as session:  # a process on another machine ran it, then died
            session.execute(
                update(Job)
                .where(Job.id == orphan.id)
                .values(state=JobState.RUNNING, owner="gone-machine:77:1", progress=40,
                        lease_expires=utcnow() - timedelta(seconds=5))
            )  # fmt: skip
        return pending, orphan
    finally:
        cloud.db.dispose()


def test_jobs_lists_shows_and_cancels(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    pending, orphan = queue_jobs(url)
    assert main(["jobs", "--db", url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(orphan.uuid) and "StartVM" in out[0] and "Running 40%" in out[0]
    assert out[1].startswith(pending.uuid) and "web-1" in out[1] and out[1].endswith("Pending")

    assert main(["jobs", "--db", url, "--cancel", pending.uuid]) == 0
    assert capsys.readouterr().out.strip() == f"job {pending.uuid} (StopVM) cancelled"
    assert main(["jobs", "--db", url, "--active"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [orphan.uuid]

    assert main(["jobs", "--db", url, pending.uuid]) == 0
    shown = capsys.readouterr().out
    assert "error: cancelled" in shown and "by admin" in shown

    assert main(["jobs", "--db", url, "--cancel", pending.uuid]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"stratus: error: job '{pending.uuid}' (StopVM) already ended: Cancelled"
    assert main(["jobs", "--db", url, "no-such-job"]) == 1
    assert "job 'no-such-job' does not exist" in capsys.readouterr().err


def test_serve_recovers_orphans_runs_and_stops_on_sigterm(url: str, tmp_path: Path) -> None:
    _pending, orphan = queue_jobs(url)
    env = {**os.environ, "STRATUS_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--db", url, "--workers", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "stratus serve: 2 job workers, 0 hosts" in banner, banner
        assert "failed 1 jobs left by stopped processes" in banner
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping" in out and "Traceback" not in err
    cloud = open_cloud(url)
    try:
        recovered = get_job(cloud.db, orphan.uuid)
    finally:
        cloud.db.dispose()
    assert recovered.state == JobState.FAILED
    assert "gone-machine:77:1" in (recovered.error or "")
    assert "StartVM of VirtualMachine 'db-1' was interrupted" in (recovered.error or "")
