"""What compute's job code needs from the job it runs in (engine.jobs.JobContext has it)."""

from __future__ import annotations

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
