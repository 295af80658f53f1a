"""Live metrics of the local host (qemu:///system) via psutil, sampled in the background.

A sampler thread reads CPU %, memory, load, disk use and I/O, and network rates every
`interval` seconds and keeps the last `history` samples in memory: the console draws its
sparklines from `history()` and its gauges from `latest()`. Rates are per second over the
interval between two samples, so the first sample has none.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import psutil

HISTORY = 120
INTERVAL = 2.0


@dataclass(frozen=True)
class HostSample:
    taken: float  # time.time()
    cpu_percent: float
    memory_total_bytes: int
    memory_used_bytes: int
    memory_percent: float
    load_1: float
    load_5: float
    load_15: float
    disk_path: str
    disk_total_bytes: int
    disk_used_bytes: int
    disk_read_bytes_per_s: float | None
    disk_write_bytes_per_s: float | None
    net_rx_bytes_per_s: float | None
    net_tx_bytes_per_s: float | None


class LocalMetrics:
    """Samples this machine; `start()` runs the sampler thread, `sample()` one reading."""

    def __init__(self, *, interval: float = INTERVAL, history: int = HISTORY, disk_path: str = "/"):
        self.interval = interval
        self.disk_path = disk_path
        self._samples: deque[HostSample] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[float, object, object] | None = None
        psutil.cpu_percent(None)  # prime: the first call has nothing to compare with

    def sample(self) -> HostSample:
        now = time.monotonic()
        disk_io = psutil.disk_io_counters()
        net_io = psutil.net_io_counters()
        rates: dict[str, float | None] = dict.fromkeys(("dr", "dw", "rx", "tx"))
        if self._last is not None:
            then, old_disk, old_net = self._last
            span = max(now - then, 1e-6)
            if disk_io is not None and old_disk is not None:
                rates["dr"] = (disk_io.read_bytes - old_disk.read_bytes) / span  # type: ignore[attr-defined]
                rates["dw"] = (disk_io.write_bytes - old_disk.write_bytes) / span  # type: ignore[attr-defined]
            if net_io is not None and old_net is not None:
                rates["rx"] = (net_io.bytes_recv - old_net.bytes_recv) / span  # type: ignore[attr-defined]
                rates["tx"] = (net_io.bytes_sent - old_net.bytes_sent) / span  # type: ignore[attr-defined]
        self._last = (now, disk_io, net_io)
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self.disk_path)
        load = os.getloadavg()
        sample = HostSample(
            taken=time.time(),
            cpu_percent=psutil.cpu_percent(None),
            memory_total_bytes=memory.total,
            memory_used_bytes=memory.total - memory.available,
            memory_percent=memory.percent,
            load_1=load[0],
            load_5=load[1],
            load_15=load[2],
            disk_path=self.disk_path,
            disk_total_bytes=disk.total,
            disk_used_bytes=disk.used,
            disk_read_bytes_per_s=rates["dr"],
            disk_write_bytes_per_s=rates["dw"],
            net_rx_bytes_per_s=rates["rx"],
            net_tx_bytes_per_s=rates["tx"],
        )
        with self._lock:
            self._samples.append(sample)
        return sample

    def latest(self) -> HostSample | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def history(self) -> list[HostSample]:
        with self._lock:
            return list(self._samples)

    def start(self) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while True:
                self.sample()
                if self._stop.wait(self.interval):
                    return

        self._thread = threading.Thread(target=loop, name="host-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 1)
            self._thread = None


_local: LocalMetrics | None = None
_local_lock = threading.Lock()


def local_metrics() -> LocalMetrics:
    """The process-wide sampler of this machine, started on first use."""
    global _local
    with _local_lock:
        if _local is None:
            _local = LocalMetrics()
            _local.start()
        return _local


def is_local(uri: str) -> bool:
    """A host this process runs on: its metrics come from psutil."""
    return uri in ("qemu:///system", "qemu:///session")
