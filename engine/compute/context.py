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
    hosts: HostManager
    steps: list[tuple[str, dict[str, Any]]]

    def progress(self, percent: int, message: str) -> None: ...

    def record_step(self, step: str, **data: Any) -> None: ...
