"""Long-lived libvirt connections: one per host URI, shared by every thread.

libvirt's default event loop runs in one daemon thread (started once, before the first
connection opens, as keepalive and events need it). Every libvirt call goes through
`HostConnection.call`, which runs it on the connection's small, bounded executor and waits
with a timeout, so a hung host never blocks a caller forever: the caller gets a
`HostTimeout` naming the host.

A connection that closes (libvirt's close callback), fails a call with a connection-level
error or times out is *lost*: the host is marked Disconnected in the database, a
reconnect thread retries with exponential backoff, and if the host stays away longer than
the grace period it becomes Alert. On every (re)connect the callbacks are registered
again and the manager's `on_connected` work runs (status Up, re-define the domains of a
simulated host, resync power states).

Connections are opened lazily, on the first call: the demo may have 10,000 hosts.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

import libvirt

from engine.hosts.errors import HostTimeout, HostUnavailable, HypervisorError

if TYPE_CHECKING:
    from engine.hosts.manager import HostManager

log = logging.getLogger("stratus.hosts")

T = TypeVar("T")

CALL_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
# libvirt keepalive: a probe every 5 s, the connection is closed after 3 unanswered ones.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
WORKERS_PER_HOST = 4

# Error codes that mean "the connection is gone", not "the operation was refused".
_CONNECTION_ERRORS = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
}
_CONNECTION_DOMAINS = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE}

_loop_lock = threading.Lock()
_loop_started = False


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours become typed exceptions."""


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread, once."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(_quiet, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # one bad callback must not stop every host's events
                    log.exception("libvirt event loop iteration failed")

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def is_simulated(uri: str) -> bool:
    """A libvirt test-driver host (each connection has private, in-memory state)."""
    return uri.startswith("test:")


class DaemonPool:
    """A bounded pool of daemon threads running libvirt calls.

    Not a ThreadPoolExecutor: its workers are joined when the interpreter exits, so one
    call stuck on a dead host would keep the process from ever exiting.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._max = workers
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future, Callable[..., object], tuple] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("pool closed")
            if self._idle == 0 and self._threads < self._max:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
            self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Refuse new work, cancel what has not started; running calls finish alone."""
        with self._lock:
            self._closed = True
            threads = self._threads
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in range(threads):
            self._queue.put(None)


class LinkStatus(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    CLOSED = "closed"  # closed on purpose; no reconnect


def libvirt_reason(exc: BaseException) -> str:
    if isinstance(exc, libvirt.libvirtError):
        return exc.get_error_message() or str(exc)
    return str(exc) or type(exc).__name__


class HostConnection:
    """One libvirt connection to one URI, with its executor, callbacks and reconnect loop."""

    def __init__(
        self,
        uri: str,
        *,
        manager: HostManager | None = None,
        host_id: int | None = None,
        host_name: str | None = None,
        timeout: float = CALL_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        alert_after: float = 60.0,
        workers: int = WORKERS_PER_HOST,
    ) -> None:
        self.uri = uri
        self.manager = manager
        self.host_id = host_id
        self.host_name = host_name
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.alert_after = alert_after
        self.status = LinkStatus.DISCONNECTED
        self.disconnected_since: float | None = None
        self.alerted = False
        self.connects = 0  # successful (re)connects, for observers and tests
        self._conn: libvirt.virConnect | None = None
        self._callback_ids: list[int] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._reconnecting = False
        self._workers = workers
        self._executor = self._new_executor()

    def _new_executor(self) -> DaemonPool:
        return DaemonPool(self._workers, f"libvirt-{self.host_name or 'host'}")

    @property
    def label(self) -> str:
        return f"host '{self.host_name}' ({self.uri})" if self.host_name else f"libvirt {self.uri}"

    @property
    def connected(self) -> bool:
        return self.status == LinkStatus.CONNECTED

    # --- opening -----------------------------------------------------------------------

    def connect(self) -> libvirt.virConnect:
        """The open connection, opening it first if needed (HostUnavailable if it cannot)."""
        with self._lock:
            if self.status == LinkStatus.CLOSED:
                raise HostUnavailable(f"{self.label}: the connection was closed")
            if self._conn is not None:
                return self._conn
            conn = self._open()
            self._conn = conn
            self.status = LinkStatus.CONNECTED
            self.disconnected_since = None
            self.alerted = False
            self.connects += 1
        log.info("%s: connected", self.label)
        if self.manager is not None:
            self.manager.on_connected(self)
        return conn

    def _open(self) -> libvirt.virConnect:
        ensure_event_loop()
        future = self._executor.submit(libvirt.open, self.uri)
        try:
            conn = future.result(self.connect_timeout)
        except FutureTimeout:
            raise HostTimeout(
                f"{self.label}: libvirt did not answer within {self.connect_timeout:g} s"
            ) from None
        except libvirt.libvirtError as exc:
            raise HostUnavailable(f"{self.label}: cannot connect: {libvirt_reason(exc)}") from None
        if conn is None:  # older bindings return None instead of raising
            raise HostUnavailable(f"{self.label}: cannot connect")
        try:
            self._register(conn)
        except libvirt.libvirtError as exc:
            conn.close()
            raise HostUnavailable(
                f"{self.label}: cannot watch the connection: {libvirt_reason(exc)}"
            ) from None
        return conn

    def _register(self, conn: libvirt.virConnect) -> None:
        if not is_simulated(self.uri):
            # Keepalive needs the event loop; it is what notices a silent network cut.
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError:
            if not is_simulated(self.uri):
                raise  # the test driver has nothing to close; a real host must have it
        self._callback_ids = [
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
            )
        ]

    # --- calls -------------------------------------------------------------------------

    def call(
        self, fn: Callable[[libvirt.virConnect], T], *, what: str, timeout: float | None = None
    ) -> T:
        """Run `fn(conn)` on the executor; HostTimeout after `timeout` seconds.

        libvirt errors become HypervisorError (with libvirt's error code), or, when the
        connection itself failed, HostUnavailable and the host is marked lost.
        """
        conn = self._connect_or_lose()
        limit = self.timeout if timeout is None else timeout
        try:
            future: Future[T] = self._executor.submit(fn, conn)
        except RuntimeError:  # the executor was replaced or closed by a loss just now
            raise HostUnavailable(f"{self.label}: {what}: the connection was lost") from None
        try:
            return future.result(limit)
        except FutureTimeout:
            self.lose(f"{what} timed out")
            raise HostTimeout(f"{self.label}: {what} did not answer within {limit:g} s") from None
        except libvirt.libvirtError as exc:
            if self._is_connection_failure(exc, conn):
                self.lose(f"{what}: {libvirt_reason(exc)}")
                raise HostUnavailable(
                    f"{self.label}: {what} failed, connection lost: {libvirt_reason(exc)}"
                ) from None
            raise HypervisorError(
                f"{self.label}: {what}: {libvirt_reason(exc)}", code=exc.get_error_code()
            ) from None

    def _connect_or_lose(self) -> libvirt.virConnect:
        try:
            return self.connect()
        except HostUnavailable as exc:
            if self.host_id is not None:
                self.lose(str(exc))  # a known host: start the reconnect loop
            raise

    def _is_connection_failure(self, exc: libvirt.libvirtError, conn: libvirt.virConnect) -> bool:
        if exc.get_error_code() not in _CONNECTION_ERRORS and (
            exc.get_error_domain() not in _CONNECTION_DOMAINS
        ):
            return False
        try:
            return not conn.isAlive()
        except libvirt.libvirtError:
            return True

    # --- losing and regaining ----------------------------------------------------------

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        # Runs on the event loop thread: only hand work off, never block here.
        names = {
            libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
            libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "end of file",
            libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timeout",
            libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed by client",
        }
        if reason == libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT:
            return
        self.lose(f"connection closed ({names.get(reason, reason)})")

    def _on_lifecycle(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, _o: object
    ) -> None:
        if self.manager is not None:
            self.manager.on_lifecycle(self, dom.name(), event, detail)

    def lose(self, reason: str) -> None:
        """Mark the connection lost (idempotent) and start reconnecting with backoff."""
        with self._lock:
            if self.status == LinkStatus.CLOSED:
                return
            old, self._conn = self._conn, None
            was_connected = self.status == LinkStatus.CONNECTED
            self.status = LinkStatus.DISCONNECTED
            if self.disconnected_since is None:
                self.disconnected_since = time.monotonic()
            start = not self._reconnecting
            self._reconnecting = True
            if old is not None:
                # Calls stuck on the dead connection keep their threads; new calls (and the
                # reconnect) get fresh ones instead of queueing behind them.
                stuck, self._executor = self._executor, self._new_executor()
                stuck.shutdown()
        if old is not None:
            threading.Thread(target=self._discard, args=(old,), daemon=True).start()
        if not (was_connected or start):
            return
        log.warning("%s: lost: %s", self.label, reason)
        if self.manager is not None:
            self.manager.on_disconnected(self, reason)
        if start:
            threading.Thread(
                target=self._reconnect_loop, name=f"reconnect-{self.host_name}", daemon=True
            ).start()

    def _discard(self, conn: libvirt.virConnect) -> None:
        # Closing a dead connection can block until libvirt gives up on it.
        for undo in (
            *(lambda cid=cid: conn.domainEventDeregisterAny(cid) for cid in self._callback_ids),
            conn.unregisterCloseCallback,
            conn.close,
        ):
            with contextlib.suppress(libvirt.libvirtError):
                undo()

    def _reconnect_loop(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            with self._lock:
                # Checked under the lock that lose() takes, so a loss right after a
                # reconnect either sees this loop running or starts a new one.
                if self.status != LinkStatus.DISCONNECTED or self._stop.is_set():
                    self._reconnecting = False
                    return
            if self.disconnected_since is not None and not self.alerted:
                # Never sleep past the moment the host should turn Alert.
                due = self.disconnected_since + self.alert_after - time.monotonic()
                delay = max(0.05, min(delay, due))
            self._stop.wait(delay)
            self._check_alert()
            try:
                self.connect()
            except HostUnavailable as exc:
                log.info("%s: reconnect failed: %s", self.label, exc)
                delay = min(delay * 2, BACKOFF_MAX)

    def _check_alert(self) -> None:
        since = self.disconnected_since
        if since is None or self.alerted or time.monotonic() - since < self.alert_after:
            return
        self.alerted = True
        if self.manager is not None:
            self.manager.on_alert(self)

    def close(self) -> None:
        """Close for good: no reconnect, pending calls finish, new ones are refused."""
        self._stop.set()
        with self._lock:
            old, self._conn = self._conn, None
            self.status = LinkStatus.CLOSED
        if old is not None:
            self._discard(old)
        self._executor.shutdown()
