"""Job types the job-queue tests run: real handlers, registered on import (also by the
subprocess the crash test kills)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from engine.errors import InvalidParameter
from engine.jobs import JobContext, register_handler

# (job uuid, "start"|"end", monotonic time), appended by Record jobs.
timeline: list[tuple[str, str, float]] = []
timeline_lock = threading.Lock()
# Jobs of type Meet wait here until two of them run at the same time.
meeting = threading.Barrier(2)


def _record(ctx: JobContext) -> dict[str, Any]:
    with timeline_lock:
        timeline.append((ctx.job_uuid, "start", time.monotonic()))
    for pct in (25, 50, 75):
        ctx.progress(pct, f"working {pct}")
        time.sleep(float(ctx.params.get("sleep", 0.02)))
    with timeline_lock:
        timeline.append((ctx.job_uuid, "end", time.monotonic()))
    return {"echo": ctx.params.get("echo")}


def _meet(ctx: JobContext) -> dict[str, Any]:
    meeting.wait(timeout=10)  # BrokenBarrierError if the other never comes
    return {"met": True}


def _refuse(ctx: JobContext) -> None:
    raise InvalidParameter(f"volume '{ctx.resource_name}': size must grow, not shrink")


def _crash(ctx: JobContext) -> None:
    raise ZeroDivisionError("division by zero")


def _cancellable(ctx: JobContext) -> None:
    Path(ctx.params["ready"]).write_text("running")
    for _ in range(500):
        ctx.progress(10, "waiting to be cancelled")
        ctx.check_cancelled()
        time.sleep(0.02)


def _make_files(ctx: JobContext) -> None:
    """Creates files one step at a time, then blocks until killed (the crash test)."""
    for name in ctx.params["files"]:
        Path(name).write_text("made by a job")
        ctx.record_step("file", path=name)
    Path(ctx.params["ready"]).write_text("ready")
    time.sleep(600)


def _undo_files(ctx: JobContext) -> str:
    removed = []
    for step, data in reversed(ctx.steps):
        if step == "file":
            Path(data["path"]).unlink(missing_ok=True)
            removed.append(Path(data["path"]).name)
    return f"Removed {len(removed)} files: {', '.join(removed)}."


register_handler("Record", _record)
register_handler("Meet", _meet)
register_handler("Refuse", _refuse)
register_handler("Crash", _crash)
register_handler("Cancellable", _cancellable)
register_handler("MakeFiles", _make_files, recover=_undo_files)
register_handler("ReadOnly", _record, mutating=False)
