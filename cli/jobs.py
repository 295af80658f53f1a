"""`stratus serve` and `stratus jobs`: run the engine headless, and look at its jobs."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from datetime import datetime

from engine.config import Config
from engine.models import Job


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _line(job: Job) -> str:
    target = job.resource_name or job.resource_uuid or "-"
    status = f"{job.state} {job.progress}%" if job.state == "Running" else job.state
    return f"{job.uuid}  {_when(job.created)}  {job.job_type:<16} {target:<24} {status}"


def cmd_serve(args: argparse.Namespace, config: Config, database_url: str) -> int:
    from engine.bootstrap import open_cloud
    from engine.server import ManagementServer

    cloud = open_cloud(database_url)
    server = ManagementServer(cloud.db, workers=args.workers)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        status = server.start()
        recovered = (
            f"; failed {status.recovered_jobs} jobs left by stopped processes"
            if status.recovered_jobs
            else ""
        )
        print(
            f"stratus serve: {status.workers} job workers, {status.hosts} hosts{recovered}; "
            f"owner {status.owner}. Ctrl-C or SIGTERM stops.",
            flush=True,
        )
        stop.wait()
        print("stratus serve: stopping: waiting for running jobs", flush=True)
        return 0
    finally:
        server.stop()
        cloud.db.dispose()


def cmd_jobs(args: argparse.Namespace, config: Config, database_url: str) -> int:
    from engine.bootstrap import open_cloud
    from engine.jobs import cancel_job, get_job, list_jobs

    cloud = open_cloud(database_url)
    try:
        if args.cancel:
            job = cancel_job(cloud.admin, args.cancel)
            what = "cancelled" if job.state == "Cancelled" else "asked to stop"
            print(f"job {job.uuid} ({job.job_type}) {what}")
            return 0
        if args.uuid:
            job = get_job(cloud.db, args.uuid)
            print(_line(job))
            print(f"  by {job.username or '-'}; started {_when(job.started)}; "
                  f"finished {_when(job.finished)}; owner {job.owner or '-'}")  # fmt: skip
            if job.progress_message:
                print(f"  progress: {job.progress}% {job.progress_message}")
            if job.result:
                print(f"  result: {json.dumps(json.loads(job.result), sort_keys=True)}")
            if job.error:
                print(f"  error: {job.error}")
            return 0
        states = ("Pending", "Running") if args.active else None
        jobs = list_jobs(cloud.db, states=states, limit=args.limit)
        if not jobs:
            print("no jobs" if not args.active else "no pending or running jobs")
        for job in jobs:
            print(_line(job))
        return 0
    finally:
        cloud.db.dispose()
