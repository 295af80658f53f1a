"""What compute's job code needs from the job it runs in (engine.jobs.JobContext has it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.context import Caller
from engine.db import Database
from engine.hosts.manager import HostManager


class StepContext(Protocol):
    job_uuid: str
    db: Database
    caller: Caller
    params: dict[str, Any]
    resource_uuid: str | None
    hosts: HostManager | None
    steps: list[tuple[str, dict[str, Any]]]

    def progress(self, percent: int, message: str) -> None: ...

    def record_step(self, step: str, **data: Any) -> None: ...


_fallback: dict[int, HostManager] = {}


def hosts_of(ctx: StepContext) -> HostManager:
    """The runner's host manager; a runner started without one gets one per database
    (kept for the process: connections are long-lived)."""
    if ctx.hosts is not None:
        return ctx.hosts
    manager = _fallback.get(id(ctx.db))
    if manager is None:
        manager = _fallback[id(ctx.db)] = HostManager(ctx.db)
    return manager


# Called as hook(step, vm) right after a compute job records a step. Tests use it to fail
# or block a job at a chosen step (fault injection, kill -9); production leaves it empty.
STEP_HOOKS: list[Callable[[str, Any], None]] = []


def step_done(
    ctx: StepContext, vm: Any, step: str, *, cancellable: bool = False, **data: Any
) -> None:
    """Record `step` (committed at once), run the hooks and, for a `cancellable` job (one
    that undoes what it did when it fails), honour an operator's cancel."""
    ctx.record_step(step, **data)
    for hook in list(STEP_HOOKS):
        hook(step, vm)
    check_cancelled = getattr(ctx, "check_cancelled", None)
    if cancellable and check_cancelled is not None:
        check_cancelled()
