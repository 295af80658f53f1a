"""What an engine process runs besides its front end: a connection to every host (events,
periodic resync, reconnect with backoff) and the job runner that executes queued work.

The console and `stratus serve` both run one. Several processes may run one each against
a shared PostgreSQL database: jobs are claimed under leases, so each runs exactly once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlmodel import col, select

from engine.db import Database
from engine.errors import StratusError
from engine.hosts.manager import RESYNC_SECONDS, HostManager, ResyncReport
from engine.jobs import JobRunner
from engine.models import Host

log = logging.getLogger("stratus.server")


@dataclass(frozen=True)
class ServerStatus:
    owner: str
    workers: int
    hosts: int
    recovered_jobs: int


class ManagementServer:
    def __init__(
        self,
        db: Database,
        *,
        workers: int = 4,
        resync_seconds: float = RESYNC_SECONDS,
        lease_seconds: float = 30.0,
        connect_hosts: bool = True,
        expunge_interval: float | None = None,
    ) -> None:
        self.db = db
        self.hosts = HostManager(db)
        self.runner = JobRunner(db, workers=workers, hosts=self.hosts, lease_seconds=lease_seconds)
        self.resync_seconds = resync_seconds
        self.connect_hosts = connect_hosts
        self._connecting: threading.Thread | None = None
        self._host_count = 0
        self._stop = threading.Event()
        self._expunger: threading.Thread | None = None
        self.expunge_interval = expunge_interval

    def start(self) -> ServerStatus:
        """Start the job runner (recovering jobs of dead processes first), then connect to
        every host in the background: one unreachable host must not hold up the rest."""
        self.runner.start()
        if self.connect_hosts:
            with self.db.read() as session:
                hosts = list(session.exec(select(Host).order_by(col(Host.id))))
            self._host_count = len(hosts)
            self._connecting = threading.Thread(
                target=self._connect_all, args=(hosts,), name="connect-hosts", daemon=True
            )
            self._connecting.start()
            self.hosts.start_resync(self.resync_seconds)
        self._expunger = threading.Thread(target=self._expunge_loop, name="expunge", daemon=True)
        self._expunger.start()
        return self.status()

    def _expunge_loop(self) -> None:
        """CloudStack's expunge thread: every `expunge.interval` s, queue the expunge of
        each VM destroyed more than `expunge.delay` s ago."""
        from engine.accounts import admin_caller
        from engine.compute import expunge_due
        from engine.settings import effective_value

        caller = admin_caller(self.db)
        while True:
            interval = self.expunge_interval
            if interval is None:
                try:
                    with self.db.read() as session:
                        interval = float(effective_value(session, "expunge.interval"))
                except StratusError as exc:
                    log.warning("expunge interval not read: %s", exc)
                    interval = 60.0
            if self._stop.wait(max(1.0, interval)):
                return
            try:
                queued = expunge_due(caller)
            except StratusError as exc:
                log.warning("expunge thread: %s", exc)
                continue
            if queued:
                log.info("expunge thread: queued %d expunges", len(queued))

    def status(self) -> ServerStatus:
        return ServerStatus(
            owner=self.runner.owner,
            workers=self.runner.workers,
            hosts=self._host_count,
            recovered_jobs=len(self.runner.recovered),
        )

    def _connect_all(self, hosts: list[Host]) -> None:
        for host in hosts:
            hc = self.hosts.for_host(host)
            try:
                hc.connect()
            except StratusError as exc:
                # Marks the host Disconnected and keeps trying with backoff.
                hc.lose(str(exc))

    def reconcile(self) -> list[ResyncReport]:
        """Resync every connected host now: power states applied, drift reported."""
        return self.hosts.resync_all()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.runner.stop(timeout)
        self.hosts.close()

    def __enter__(self) -> ManagementServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
