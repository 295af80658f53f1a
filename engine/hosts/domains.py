"""Domain operations on one host: define, start, stop, pause, remove, migrate, stats.

Every function takes the host's `HostConnection` and the domain name, and each libvirt
call runs through `HostConnection.call` (timeout, typed errors). Idempotence where an
operator expects it: destroying a domain that is gone or off, shutting down a domain that
is already off, undefining one that is not there, all succeed and say so in their result.
"""

from __future__ import annotations

import contextlib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import libvirt

from engine.errors import NotFound, StateConflict
from engine.hosts.connections import HostConnection, is_simulated, libvirt_reason
from engine.hosts.domain_xml import CDROM_TARGET, cdrom_element, cdrom_of, cdrom_xml
from engine.hosts.errors import HostTimeout, HypervisorError
from engine.models import PowerState

_POWER = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.POWER_UNKNOWN,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.POWER_ON,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.POWER_ON,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.POWER_ON,  # paused keeps its memory: still on
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.POWER_ON,  # shutting down, not off yet
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.POWER_OFF,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.POWER_OFF,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.POWER_ON,
}
STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def power_state_of(state: int) -> PowerState:
    return _POWER.get(state, PowerState.POWER_UNKNOWN)


def _missing(hc: HostConnection, name: str) -> NotFound:
    return NotFound(f"{hc.label}: domain '{name}' does not exist", field="name")


def _on_domain(
    hc: HostConnection, name: str, what: str, fn: Callable[[libvirt.virDomain], object]
) -> object:
    """Run `fn(domain)` on the host; a missing domain becomes NotFound."""
    try:
        return hc.call(lambda conn: fn(conn.lookupByName(name)), what=f"{what} domain '{name}'")
    except HypervisorError as exc:
        if exc.code == libvirt.VIR_ERR_NO_DOMAIN:
            raise _missing(hc, name) from None
        raise


# --- define, start, stop ---------------------------------------------------------------


def define_domain(hc: HostConnection, xml: str) -> str:
    """Define (or redefine) a persistent domain; returns its name."""
    return hc.call(lambda conn: conn.defineXML(xml).name(), what="define domain")


def domain_state(hc: HostConnection, name: str) -> str:
    """libvirt's state name: running, paused, shutoff ..."""
    state = _on_domain(hc, name, "read the state of", lambda dom: dom.state()[0])
    return STATE_NAMES.get(int(state), "nostate")  # type: ignore[call-overload]


def power_state(hc: HostConnection, name: str) -> PowerState:
    """The domain's power state; PowerReportMissing when the host does not have it."""
    try:
        state = _on_domain(hc, name, "read the state of", lambda dom: dom.state()[0])
    except NotFound:
        return PowerState.POWER_REPORT_MISSING
    return power_state_of(int(state))  # type: ignore[call-overload]


def domain_exists(hc: HostConnection, name: str) -> bool:
    def look(conn: libvirt.virConnect) -> bool:
        try:
            conn.lookupByName(name)
            return True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise

    return hc.call(look, what=f"look up domain '{name}'")


def _tolerating(
    codes: set[int], fn: Callable[[libvirt.virDomain], object]
) -> Callable[[libvirt.virDomain], bool]:
    """Wrap `fn`: True when it ran, False when libvirt answered with a tolerated code."""

    def run(dom: libvirt.virDomain) -> bool:
        try:
            fn(dom)
            return True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in codes:
                return False
            raise

    return run


def start_domain(hc: HostConnection, name: str) -> bool:
    """Start a defined domain; False if it was already running."""

    def start(dom: libvirt.virDomain) -> bool:
        if dom.isActive():
            return False
        dom.create()
        return True

    return bool(_on_domain(hc, name, "start", start))


def destroy_domain(hc: HostConnection, name: str) -> bool:
    """Force off. False when there was nothing to do (gone or already off)."""

    def destroy(dom: libvirt.virDomain) -> bool:
        if not dom.isActive():
            return False
        return _tolerating({libvirt.VIR_ERR_OPERATION_INVALID}, lambda d: d.destroy())(dom)

    try:
        return bool(_on_domain(hc, name, "destroy", destroy))
    except NotFound:
        return False


StopOutcome = Literal["shut down", "destroyed", "already off", "gone"]


def shutdown_domain(
    hc: HostConnection, name: str, *, timeout: float = 60.0, poll: float = 0.25
) -> StopOutcome:
    """Ask the guest to shut down; destroy it if it is still on after `timeout` seconds."""
    try:
        if power_state(hc, name) == PowerState.POWER_REPORT_MISSING:
            return "gone"
        started = _on_domain(
            hc,
            name,
            "shut down",
            lambda dom: (
                dom.isActive()
                and _tolerating({libvirt.VIR_ERR_OPERATION_INVALID}, lambda d: d.shutdown())(dom)
            ),
        )
    except NotFound:
        return "gone"
    if not started:
        return "already off"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if power_state(hc, name) in (PowerState.POWER_OFF, PowerState.POWER_REPORT_MISSING):
            return "shut down"
        time.sleep(poll)
    destroy_domain(hc, name)
    return "destroyed"


def reboot_domain(hc: HostConnection, name: str) -> None:
    _require_running(hc, name, "reboot")
    _on_domain(hc, name, "reboot", lambda dom: dom.reboot(0))


def suspend_domain(hc: HostConnection, name: str) -> None:
    _require_running(hc, name, "suspend")
    _on_domain(hc, name, "suspend", lambda dom: dom.suspend())


def resume_domain(hc: HostConnection, name: str) -> None:
    state = domain_state(hc, name)
    if state != "paused":
        raise StateConflict(f"{hc.label}: domain '{name}' is {state}, not paused; cannot resume")
    _on_domain(hc, name, "resume", lambda dom: dom.resume())


CdromChange = Literal["live", "definition"]


def change_cdrom(hc: HostConnection, name: str, path: str | None) -> CdromChange:
    """Insert the ISO file `path` into the domain's CD-ROM drive (None: eject).

    A running domain's media changes at once and in its definition (updateDeviceFlags,
    live + config); a stopped one's definition only. A domain defined without a drive
    cannot get one while it runs (IDE does not hot-plug): StateConflict says so. The test
    driver has no updateDeviceFlags: there the persistent definition is rewritten, which
    the simulated domain takes at its next start (returns "definition")."""

    def change(dom: libvirt.virDomain) -> CdromChange:
        active = bool(dom.isActive())
        if cdrom_of(dom.XMLDesc(0)) is None:
            raise StateConflict(
                f"{hc.label}: domain '{name}' has no CD-ROM drive ({CDROM_TARGET}); it gets "
                "one when the VM is next started",
                field="vm",
            )
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if active:
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        try:
            dom.updateDeviceFlags(cdrom_xml(path), flags)
            return "live" if active else "definition"
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT or not is_simulated(hc.uri):
                raise
        root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        devices = root.find("devices")
        assert devices is not None
        for old in devices.findall("disk[@device='cdrom']"):
            devices.remove(old)
        devices.append(cdrom_element(path))
        dom.connect().defineXML(ET.tostring(root, encoding="unicode"))
        return "definition"

    return _on_domain(hc, name, "change the CD-ROM of", change)  # type: ignore[return-value]


def domain_xml_of(hc: HostConnection, name: str, *, inactive: bool = False) -> str:
    """The domain's XML as libvirt has it: live, or its persistent definition."""
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return str(_on_domain(hc, name, "read the XML of", lambda dom: dom.XMLDesc(flags)))


def _require_running(hc: HostConnection, name: str, what: str) -> None:
    state = domain_state(hc, name)
    if state not in ("running", "blocked"):
        raise StateConflict(f"{hc.label}: domain '{name}' is {state}; cannot {what} it")


def undefine_domain(hc: HostConnection, name: str) -> bool:
    """Remove the definition (a running domain stays until it stops). False if not there."""
    flags = (
        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    )

    def undefine(dom: libvirt.virDomain) -> None:
        try:
            dom.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            # Drivers without the flags (the test driver) take the plain call.
            if exc.get_error_code() not in (
                libvirt.VIR_ERR_NO_SUPPORT,
                libvirt.VIR_ERR_INVALID_ARG,
            ):
                raise
            dom.undefine()

    try:
        _on_domain(hc, name, "undefine", undefine)
    except NotFound:
        return False
    return True


def list_domains(hc: HostConnection) -> dict[str, PowerState]:
    """Every domain on the host, by name, with its power state."""
    return hc.call(
        lambda conn: {dom.name(): power_state_of(dom.state()[0]) for dom in conn.listAllDomains(0)},
        what="list domains",
    )


@dataclass(frozen=True)
class DomainOwner:
    """A domain as reconciliation sees it: its power state and the Stratus VM it carries."""

    name: str
    power: PowerState
    vm_uuid: str | None  # from our metadata; None for a domain that is not ours


def list_domain_owners(hc: HostConnection) -> dict[str, DomainOwner]:
    """Every domain on the host with the VM UUID in its Stratus metadata."""
    from engine.hosts.domain_xml import vm_uuid_of

    def read(conn: libvirt.virConnect) -> dict[str, DomainOwner]:
        found = {}
        for dom in conn.listAllDomains(0):
            try:
                vm_uuid = vm_uuid_of(dom.XMLDesc(0))
            except (libvirt.libvirtError, ET.ParseError):
                vm_uuid = None  # gone meanwhile, or XML we cannot read: not claimed as ours
            found[dom.name()] = DomainOwner(dom.name(), power_state_of(dom.state()[0]), vm_uuid)
        return found

    return hc.call(read, what="list domains and their owners")


# --- migration -------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationProgress:
    percent: int
    processed_bytes: int
    total_bytes: int
    elapsed_seconds: float


MIGRATE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER  # the source daemon talks to the destination itself
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    | libvirt.VIR_MIGRATE_AUTO_CONVERGE  # a busy guest must still finish
)


def migrate_domain(
    source: HostConnection,
    destination: HostConnection,
    name: str,
    *,
    timeout: float = 600.0,
    poll: float = 0.5,
    progress: Callable[[MigrationProgress], None] | None = None,
    flags: int = MIGRATE_FLAGS,
) -> None:
    """Live-migrate `name` from `source` to `destination`, aborting after `timeout` s.

    migrateToURI3 blocks for the whole migration, so it runs in its own thread (not the
    bounded executor) while this thread polls the job's statistics for `progress`.
    """
    if not destination.connected:
        destination.connect()  # fail early, and with the destination's name, if it is down
    _require_running(source, name, "migrate")
    outcome: dict[str, BaseException | None] = {}
    dom = source.call(lambda c: c.lookupByName(name), what=f"look up domain '{name}'")
    params = {libvirt.VIR_MIGRATE_PARAM_DEST_NAME: name}

    def run() -> None:
        try:
            dom.migrateToURI3(destination.uri, params, flags)
            outcome["error"] = None
        except libvirt.libvirtError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"migrate-{name}", daemon=True)
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        worker.join(poll)
        elapsed = time.monotonic() - started
        if worker.is_alive() and elapsed > timeout:
            try:
                source.call(lambda _c: dom.abortJob(), what=f"abort the migration of '{name}'")
            finally:
                worker.join(30)
            raise HostTimeout(
                f"{source.label}: migration of domain '{name}' to {destination.label} did not "
                f"finish within {timeout:g} s and was aborted"
            )
        if progress is not None and worker.is_alive():
            try:
                stats = source.call(
                    lambda _c: dom.jobStats(), what=f"read the migration of '{name}'"
                )
            except HypervisorError:
                continue  # the job may finish between two polls
            total = int(stats.get("data_total", 0))
            done = int(stats.get("data_processed", 0))
            percent = min(99, done * 100 // total) if total else 0
            progress(MigrationProgress(percent, done, total, elapsed))
    error = outcome.get("error")
    if error is not None:
        raise HypervisorError(
            f"{source.label}: migration of domain '{name}' to {destination.label} failed: "
            f"{libvirt_reason(error)}",
            code=error.get_error_code() if isinstance(error, libvirt.libvirtError) else None,
        )
    if progress is not None:
        progress(MigrationProgress(100, 0, 0, time.monotonic() - started))


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockCounters:
    read_requests: int
    read_bytes: int
    write_requests: int
    write_bytes: int


@dataclass(frozen=True)
class InterfaceCounters:
    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int


@dataclass(frozen=True)
class DomainStats:
    name: str
    state: str
    cpu_time_ns: int
    vcpus: int
    memory_bytes: int  # current balloon size
    max_memory_bytes: int
    rss_bytes: int | None
    block: dict[str, BlockCounters] = field(default_factory=dict)
    interfaces: dict[str, InterfaceCounters] = field(default_factory=dict)


def domain_stats(hc: HostConnection, name: str) -> DomainStats:
    def read(dom: libvirt.virDomain) -> DomainStats:
        state, max_kib, kib, vcpus, cpu_ns = dom.info()
        rss = None
        if dom.isActive():
            try:
                rss_kib = dom.memoryStats().get("rss")
                rss = rss_kib * 1024 if rss_kib is not None else None
            except libvirt.libvirtError:
                rss = None
        root = ET.fromstring(dom.XMLDesc(0))
        block: dict[str, BlockCounters] = {}
        interfaces: dict[str, InterfaceCounters] = {}
        if dom.isActive():
            for target in root.findall("devices/disk/target"):
                dev = target.get("dev")
                if dev:
                    with contextlib.suppress(libvirt.libvirtError):  # no counters kept: left out
                        rq, rb, wq, wb, _errs = dom.blockStats(dev)
                        block[dev] = BlockCounters(rq, rb, wq, wb)
            for nic in root.findall("devices/interface"):
                target = nic.find("target")
                mac = nic.find("mac")
                dev = target.get("dev") if target is not None else None
                dev = dev or (mac.get("address") if mac is not None else None)
                if dev:
                    with contextlib.suppress(libvirt.libvirtError):  # no counters kept: left out
                        rx_b, rx_p, _re, _rd, tx_b, tx_p, _te, _td = dom.interfaceStats(dev)
                        interfaces[dev] = InterfaceCounters(rx_b, rx_p, tx_b, tx_p)
        return DomainStats(
            name=name,
            state=STATE_NAMES.get(state, "nostate"),
            cpu_time_ns=int(cpu_ns),
            vcpus=int(vcpus),
            memory_bytes=int(kib) * 1024,
            max_memory_bytes=int(max_kib) * 1024,
            rss_bytes=rss,
            block=block,
            interfaces=interfaces,
        )

    return _on_domain(hc, name, "read statistics of", read)  # type: ignore[return-value]
