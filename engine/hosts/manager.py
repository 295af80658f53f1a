"""The host manager: every host's connection, and what the database learns from them.

One `HostManager` per management-server process keeps one `HostConnection` per URI,
opened lazily. It turns what the connections report into database changes:

- connected → host Up (and `last_seen`); a simulated (test-driver) host first gets back
  the domains the database places on it, started when the database says Running; then
  the host's power states are resynced;
- lost → host Disconnected; still lost after the grace period → Alert;
- a domain lifecycle event → that VM's power state, re-read from the host when written (a
  late event never writes a stale state). A stop is looked at only after a short debounce
  and only if no start followed, so a guest reboot (STOPPED then STARTED) never flaps the
  state;
- `resync_host` / `start_resync` read every domain's state and correct what an event
  missed. Only the power state (what the hypervisor reports) is written; a VM's `state`
  is intent (ARCHITECTURE rule 7), so where the two disagree the resync reports drift
  and leaves the deciding to an operator or a job. A host's domains are never changed
  by a resync.

Database writes happen on one writer thread, never on libvirt's event loop thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import libvirt
from sqlalchemy import update
from sqlmodel import col, select

from engine.db import Database
from engine.errors import StratusError
from engine.hosts import domains
from engine.hosts.connections import (
    CALL_TIMEOUT,
    HostConnection,
    is_simulated,
)
from engine.hosts.domain_xml import DiskSpec, DomainSpec, build_domain_xml
from engine.hosts.metrics import LocalMetrics, is_local, local_metrics
from engine.models import (
    Host,
    HostStatus,
    PowerState,
    StoragePool,
    VirtualMachine,
    VmState,
    Volume,
    utcnow,
)

log = logging.getLogger("stratus.hosts")

DEBOUNCE_SECONDS = 2.0
ALERT_AFTER_SECONDS = 60.0
RESYNC_SECONDS = 60.0

_STOP_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED,
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN,
    libvirt.VIR_DOMAIN_EVENT_CRASHED,
}
_START_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_STARTED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED,
}
# VMs that have a place on a host; the rest have no domain to look for.
_PLACED_STATES = (
    VmState.RUNNING,
    VmState.SUSPENDED,
    VmState.STARTING,
    VmState.STOPPING,
    VmState.STOPPED,
    VmState.MIGRATING,
)

# The power state a VM in a stable state should have; transitional states belong to a job.
_EXPECTED_POWER = {
    VmState.RUNNING: PowerState.POWER_ON,
    VmState.SUSPENDED: PowerState.POWER_ON,  # paused keeps its memory: libvirt says on
    VmState.STOPPED: PowerState.POWER_OFF,
}


@dataclass(frozen=True)
class Drift:
    """One disagreement between a host and the database, with what shows it."""

    kind: str  # "missing" | "unknown" | "elsewhere"
    domain: str  # the domain's name on the host (the VM's instance name when missing)
    vm_uuid: str | None
    vm_name: str | None
    evidence: str


@dataclass
class ResyncReport:
    """What a resync found on one host. Domains are matched to VMs by the VM UUID in
    their Stratus metadata, not by name: a renamed domain is still found, and a domain
    that merely has a VM's name is not taken for it."""

    host: str
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # name, before, after
    missing: list[str] = field(default_factory=list)  # in the database, not on the host
    # Domains without Stratus metadata: not ours, left alone and not counted as drift.
    unmanaged: list[str] = field(default_factory=list)
    # Intent and power disagree (name, state, power state): a Running VM that is off, a
    # Stopped one that is on. Reported for an operator or a job to act on; the VM's state
    # is intent and a resync never rewrites it.
    drift: list[tuple[str, str, str]] = field(default_factory=list)
    # VMs missing here, and domains carrying our metadata that the database does not place
    # here, each with its evidence. Reported, never deleted or redefined.
    evidence: list[Drift] = field(default_factory=list)

    @property
    def unknown(self) -> list[str]:
        return [d.domain for d in self.evidence if d.kind != "missing"]


class HostManager:
    def __init__(
        self,
        db: Database | None,
        *,
        timeout: float = CALL_TIMEOUT,
        alert_after: float = ALERT_AFTER_SECONDS,
        debounce: float = DEBOUNCE_SECONDS,
    ) -> None:
        self.db = db
        self.timeout = timeout
        self.alert_after = alert_after
        self.debounce = debounce
        self._connections: dict[str, HostConnection] = {}
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hosts-db")
        self._pending_stops: dict[tuple[str, str], threading.Timer] = {}
        # Recent power-state writes (uri, domain, power state), newest last: what the
        # console's event view shows and what tests inspect.
        self.power_log: deque[tuple[str, str, str]] = deque(maxlen=1000)
        self._resync_stop = threading.Event()
        self._resync_thread: threading.Thread | None = None

    # --- connections -------------------------------------------------------------------

    def connection(
        self, uri: str, *, host_id: int | None = None, host_name: str | None = None
    ) -> HostConnection:
        """The one connection for `uri` (created, not opened: it opens on first use)."""
        with self._lock:
            hc = self._connections.get(uri)
            if hc is None:
                hc = HostConnection(
                    uri,
                    manager=self,
                    host_id=host_id,
                    host_name=host_name,
                    timeout=self.timeout,
                    alert_after=self.alert_after,
                )
                self._connections[uri] = hc
            elif host_id is not None and hc.host_id is None:
                hc.host_id, hc.host_name = host_id, host_name
            return hc

    def for_host(self, host: Host) -> HostConnection:
        return self.connection(host.uri, host_id=host.id, host_name=host.name)

    def host_connection(self, host_ref: str) -> HostConnection:
        """The connection of the host with this UUID or name."""
        from engine.lookup import resolve

        assert self.db is not None
        with self.db.read() as session:
            host = resolve(session, Host, host_ref, "host", field="host")
        return self.for_host(host)

    def live_metrics(self, uri: str) -> LocalMetrics | None:
        """psutil metrics (latest and history) for a host this process runs on, else None.

        Sampling starts on the first request, in a background thread.
        """
        return local_metrics() if is_local(uri) else None

    def forget(self, uri: str) -> None:
        with self._lock:
            hc = self._connections.pop(uri, None)
        if hc is not None:
            hc.close()

    def close(self) -> None:
        self._resync_stop.set()
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
            timers, self._pending_stops = list(self._pending_stops.values()), {}
        for timer in timers:
            timer.cancel()
        for hc in connections:
            hc.close()
        self._writer.shutdown(wait=True)

    def flush(self) -> None:
        """Wait until every database write queued so far is done."""
        self._writer.submit(lambda: None).result()

    # --- what connections report -------------------------------------------------------

    def on_connected(self, hc: HostConnection) -> None:
        if hc.host_id is None or self.db is None:
            return
        self._set_host_status(hc, HostStatus.UP, seen=True)
        try:
            if is_simulated(hc.uri):
                self.restore_simulated_domains(hc)
            self.resync_host(hc)
        except StratusError as exc:
            log.warning("%s: after connect: %s", hc.label, exc)

    def on_disconnected(self, hc: HostConnection, reason: str) -> None:
        if hc.host_id is not None and self.db is not None:
            self._writer.submit(self._set_host_status, hc, HostStatus.DISCONNECTED)

    def on_alert(self, hc: HostConnection) -> None:
        if hc.host_id is not None and self.db is not None:
            self._writer.submit(
                self._set_host_status, hc, HostStatus.ALERT, only_from=(HostStatus.DISCONNECTED,)
            )

    def on_lifecycle(self, hc: HostConnection, name: str, event: int, _detail: int) -> None:
        # On libvirt's event thread: schedule, never write here.
        key = (hc.uri, name)
        if event in _START_EVENTS:
            with self._lock:
                timer = self._pending_stops.pop(key, None)
            if timer is not None:
                timer.cancel()  # a reboot: the stop never reaches the database
            self._writer.submit(self._apply_power, hc, name, PowerState.POWER_ON)
        elif event in _STOP_EVENTS:
            timer = threading.Timer(self.debounce, self._stop_confirmed, (hc, name))
            timer.daemon = True
            with self._lock:
                old = self._pending_stops.pop(key, None)
                self._pending_stops[key] = timer
            if old is not None:
                old.cancel()
            timer.start()
        elif event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
            self._writer.submit(self._apply_power, hc, name, PowerState.POWER_REPORT_MISSING)

    def _stop_confirmed(self, hc: HostConnection, name: str) -> None:
        with self._lock:
            timer = self._pending_stops.pop((hc.uri, name), None)
        if timer is None:
            return  # a start came in first
        self._writer.submit(self._apply_power, hc, name, PowerState.POWER_OFF)

    def pending_stops(self) -> int:
        with self._lock:
            return len(self._pending_stops)

    # --- database writes ---------------------------------------------------------------

    def _set_host_status(
        self,
        hc: HostConnection,
        status: HostStatus,
        *,
        seen: bool = False,
        only_from: tuple[HostStatus, ...] | None = None,
    ) -> None:
        assert self.db is not None and hc.host_id is not None
        values: dict[str, object] = {"status": status}
        if seen:
            values["last_seen"] = utcnow()
        with self.db.write() as session:
            query = update(Host).where(col(Host.id) == hc.host_id)
            if only_from is not None:
                query = query.where(col(Host.status).in_(only_from))
            else:
                query = query.where(col(Host.status) != status)
            changed = session.execute(
                query.values(**values, capacity_version=Host.capacity_version + 1)
            ).rowcount
            if not changed and seen:
                session.execute(
                    update(Host).where(col(Host.id) == hc.host_id).values(last_seen=utcnow())
                )
        if changed:
            log.info("%s: status %s", hc.label, status)

    def _apply_power(self, hc: HostConnection, name: str, hint: PowerState) -> None:
        """Write the domain's power state as the host reports it *now*.

        The event only says which domain to look at: re-reading the state means a late or
        reordered event can never write a stale state over a newer one.
        """
        if hc.host_id is None or self.db is None or not hc.connected:
            return
        try:
            power = domains.power_state(hc, name)
        except StratusError as exc:
            log.info(
                "%s: power state of '%s' not read (%s): event %s dropped", hc.label, name, exc, hint
            )
            return
        with self.db.write() as session:
            changed = session.execute(
                update(VirtualMachine)
                .where(
                    col(VirtualMachine.host_id) == hc.host_id,
                    col(VirtualMachine.instance_name) == name,
                    col(VirtualMachine.power_state) != power,
                )
                .values(power_state=power, power_state_updated=utcnow())
            ).rowcount
        if changed:
            self.power_log.append((hc.uri, name, power))

    # --- resync and simulated hosts ----------------------------------------------------

    def _placed_vms(self, hc: HostConnection) -> list[VirtualMachine]:
        assert self.db is not None
        with self.db.read() as session:
            return list(
                session.exec(
                    select(VirtualMachine)
                    .where(
                        VirtualMachine.host_id == hc.host_id,
                        col(VirtualMachine.removed).is_(None),
                        col(VirtualMachine.state).in_(_PLACED_STATES),
                    )
                    .order_by(VirtualMachine.id)
                )
            )

    def resync_host(self, hc: HostConnection) -> ResyncReport:
        """Read every domain from the host, apply power-state changes to the database and
        report drift (with evidence). Never touches a domain."""
        report = ResyncReport(host=hc.label)
        if hc.host_id is None or self.db is None:
            return report
        actual = domains.list_domain_owners(hc)
        vms = self._placed_vms(hc)
        by_uuid = {d.vm_uuid: d for d in actual.values() if d.vm_uuid is not None}
        report.unmanaged = sorted(n for n, d in actual.items() if d.vm_uuid is None)
        with self.db.write() as session:
            for vm in vms:
                found = by_uuid.get(vm.uuid)
                power = found.power if found is not None else PowerState.POWER_REPORT_MISSING
                if found is None:
                    report.missing.append(vm.instance_name)
                    report.evidence.append(self._missing(hc, vm, actual))
                expected = _EXPECTED_POWER.get(VmState(vm.state))
                if expected is not None and power != expected:
                    report.drift.append((vm.instance_name, vm.state, power))
                if vm.power_state == power:
                    continue
                changed = session.execute(
                    update(VirtualMachine)
                    .where(
                        col(VirtualMachine.id) == vm.id,
                        col(VirtualMachine.power_state) == vm.power_state,
                    )
                    .values(power_state=power, power_state_updated=utcnow())
                ).rowcount
                if changed:
                    report.changed.append((vm.instance_name, vm.power_state, power))
        placed = {vm.uuid for vm in vms}
        strangers = [d for d in actual.values() if d.vm_uuid and d.vm_uuid not in placed]
        report.evidence.extend(self._strangers(hc, strangers))
        for name, _before, after in report.changed:
            self.power_log.append((hc.uri, name, after))
        if report.changed or report.evidence:
            log.info(
                "%s: resync changed %d, missing %d, unknown %d",
                hc.label,
                len(report.changed),
                len(report.missing),
                len(report.unknown),
            )
        for drift in report.evidence:
            log.warning("%s: drift (%s): %s", hc.label, drift.kind, drift.evidence)
        return report

    @staticmethod
    def _missing(
        hc: HostConnection, vm: VirtualMachine, actual: dict[str, domains.DomainOwner]
    ) -> Drift:
        evidence = (
            f"VM '{vm.name}' ({vm.uuid}, {vm.state}) is placed on {hc.label}, which has no "
            f"domain carrying its UUID among its {len(actual)} domains"
        )
        namesake = actual.get(vm.instance_name)
        if namesake is not None:
            owner = (
                "no Stratus metadata"
                if namesake.vm_uuid is None
                else f"the metadata of VM {namesake.vm_uuid}"
            )
            evidence += f"; a domain named '{vm.instance_name}' exists but carries {owner}"
        return Drift("missing", vm.instance_name, vm.uuid, vm.name, evidence)

    def _strangers(self, hc: HostConnection, strangers: list[domains.DomainOwner]) -> list[Drift]:
        if not strangers:
            return []
        assert self.db is not None
        uuids = [d.vm_uuid for d in strangers]
        with self.db.read() as session:
            rows = {
                vm.uuid: (vm, host_name)
                for vm, host_name in session.exec(
                    select(VirtualMachine, Host.name)
                    .join(Host, col(Host.id) == VirtualMachine.host_id, isouter=True)
                    .where(col(VirtualMachine.uuid).in_(uuids))
                )
            }
        found = []
        for d in sorted(strangers, key=lambda d: d.name):
            head = f"domain '{d.name}' on {hc.label} ({d.power}) carries Stratus metadata for VM"
            known = rows.get(d.vm_uuid or "")
            if known is None:
                found.append(
                    Drift(
                        "unknown",
                        d.name,
                        d.vm_uuid,
                        None,
                        f"{head} {d.vm_uuid}, which this database does not know",
                    )
                )
                continue
            vm, host_name = known
            if vm.removed is not None or vm.state == VmState.EXPUNGED:
                where = f"which was expunged ({vm.state}, removed {vm.removed or 'unknown'})"
                kind = "unknown"
            elif host_name is None:
                where = f"which the database has {vm.state} on no host"
                kind = "unknown"
            else:
                where = f"which the database places on host '{host_name}' ({vm.state})"
                kind = "elsewhere"
            found.append(
                Drift(kind, d.name, vm.uuid, vm.name, f"{head} '{vm.name}' ({vm.uuid}), {where}")
            )
        return found

    def resync_all(self) -> list[ResyncReport]:
        """Resync every host that is connected now (lazy hosts stay closed)."""
        with self._lock:
            connected = [hc for hc in self._connections.values() if hc.connected]
        reports = []
        for hc in connected:
            try:
                reports.append(self.resync_host(hc))
            except StratusError as exc:
                log.warning("%s: resync failed: %s", hc.label, exc)
        return reports

    def start_resync(self, every: float = RESYNC_SECONDS) -> None:
        """Resync connected hosts periodically in a daemon thread (once per manager)."""
        if self._resync_thread is not None:
            return

        def loop() -> None:
            while not self._resync_stop.wait(every):
                self.resync_all()

        self._resync_thread = threading.Thread(target=loop, name="hosts-resync", daemon=True)
        self._resync_thread.start()

    def restore_simulated_domains(self, hc: HostConnection) -> list[str]:
        """Re-define on a test-driver host the domains the database places there.

        A test-driver connection starts empty; this is what lets the demo survive a
        restart. Domains the database says are Running (or Starting) are started too.
        """
        if not is_simulated(hc.uri):
            raise StratusError(f"{hc.label}: only simulated hosts get their domains re-defined")
        vms = self._placed_vms(hc)
        if not vms:
            return []
        present = domains.list_domains(hc)
        disks = self._disks_of(vms)
        restored = []
        for vm in vms:
            if vm.instance_name not in present:
                spec = DomainSpec(
                    name=vm.instance_name,
                    uuid=vm.uuid,
                    vm_uuid=vm.uuid,
                    vcpus=vm.cpu_count,
                    memory_bytes=vm.memory_bytes,
                    description=vm.display_name or vm.name,
                    disks=tuple(disks.get(vm.id or 0, ())),
                    domain_type="test",
                    vnc=False,
                )
                domains.define_domain(hc, build_domain_xml(spec))
                restored.append(vm.instance_name)
            if vm.state in (VmState.RUNNING, VmState.STARTING, VmState.SUSPENDED):
                domains.start_domain(hc, vm.instance_name)
            if (
                vm.state == VmState.SUSPENDED
                and domains.domain_state(hc, vm.instance_name) != "paused"
            ):
                domains.suspend_domain(hc, vm.instance_name)
        return restored

    def _disks_of(self, vms: list[VirtualMachine]) -> dict[int, list[DiskSpec]]:
        assert self.db is not None
        ids = [vm.id for vm in vms if vm.id is not None]
        disks: dict[int, list[DiskSpec]] = {}
        with self.db.read() as session:
            rows = session.exec(
                select(Volume, StoragePool)
                .join(StoragePool, col(StoragePool.id) == Volume.pool_id)
                .where(col(Volume.vm_id).in_(ids), col(Volume.removed).is_(None))
                .order_by(Volume.vm_id, Volume.device_id)
            )
            for volume, pool in rows:
                if not volume.path or volume.vm_id is None:
                    continue
                taken = disks.setdefault(volume.vm_id, [])
                taken.append(
                    DiskSpec(
                        target=f"vd{chr(ord('a') + len(taken))}",
                        format="raw" if volume.format.lower() == "raw" else "qcow2",
                        path=f"{pool.path.rstrip('/')}/{volume.path}",
                    )
                )
        return disks
