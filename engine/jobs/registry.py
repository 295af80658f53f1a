"""Which code runs each job type, and how a dead run of it is undone."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.jobs.context import JobContext

log = logging.getLogger(__name__)

# The engine's handler modules; each registers its job types when imported. A runner
# imports them all at start, so every engine process can run every job type.
HANDLER_MODULES = (
    "engine.compute.handlers",
    "engine.storage.handlers",
    "engine.hosts.handlers",
)

Run = Callable[["JobContext"], dict[str, Any] | None]
Recover = Callable[["JobContext"], str]


@dataclass(frozen=True)
class Handler:
    job_type: str
    run: Run
    recover: Recover | None
    mutating: bool


_handlers: dict[str, Handler] = {}
_loaded = False


def register_handler(
    job_type: str, run: Run, *, recover: Recover | None = None, mutating: bool = True
) -> None:
    """Make `run` the code of `job_type` jobs. `recover` undoes what a run left behind when
    its process died (it reads the recorded steps); `mutating` jobs of one resource run one
    at a time, in submission order. Registering a type again replaces it (module reloads)."""
    if not job_type or len(job_type) > 64:
        raise ValueError(f"job type {job_type!r}: 1 to 64 characters")
    _handlers[job_type] = Handler(job_type, run, recover, mutating)


def handler_for(job_type: str) -> Handler | None:
    """The handler of `job_type`, importing the engine's handler modules first if this
    process has not yet (a CLI or a console that cancels a job may run no runner)."""
    if job_type not in _handlers and not _loaded:
        load_handler_modules()
    return _handlers.get(job_type)


def registered_types() -> list[str]:
    return sorted(_handlers)


def load_handler_modules() -> None:
    """Import the engine's handler modules (those this installation has)."""
    global _loaded
    _loaded = True
    for name in HANDLER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only the handler module itself may be absent; a broken import inside it is
            # a real error and must be seen.
            if exc.name not in (name, name.rsplit(".", 1)[0]):
                raise
            log.debug("no handler module %s", name)
