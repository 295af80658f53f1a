"""Disks of a defined or running domain: hot-plug, hot-unplug, live resize; image copies.

Data disks are attached on the SCSI bus (`sdb`, `sdc` ...): QEMU removes a SCSI disk at
once on unplug, whereas a virtio-blk (PCI) unplug waits for the guest to release the
device and never completes on a guest that does not answer (no OS, hung kernel). Hot-plug
needs the domain's ACPI PCI hotplug (`<features><acpi/>`) for the SCSI controller libvirt
adds with the first such disk; libvirt's refusal is turned into an operator's sentence.

Disks are found in the domain XML by their source file, not by target name, so a disk
attached live as `sdb` and later defined by compute under another name is still found.
`convert_image` runs `qemu-img convert` (snapshots to secondary storage, templates from
volumes, reverts), always with the source format given, never probed.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt

from engine.errors import InvalidParameter, NotFound, StateConflict
from engine.hosts.connections import HostConnection
from engine.hosts.errors import HypervisorError
from engine.hosts.images import IMAGE_FORMATS

CONVERT_TIMEOUT = 3600
UNPLUG_WAIT_SECONDS = 10.0
_TARGET_PREFIX = "sd"
MAX_SCSI_DISKS = 26


@dataclass(frozen=True)
class AttachedDisk:
    target: str
    path: str
    format: str
    live: bool  # attached to the running domain (else only to its definition)


def _disk_element(path: str, fmt: str, target: str) -> str:
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type=fmt)
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=target, bus="scsi")
    return ET.tostring(disk, encoding="unicode")


@dataclass(frozen=True)
class _Disk:
    target: str
    path: str | None  # <source file=...>
    pool: str | None  # <source pool=... volume=...> (how compute defines volumes)
    volume: str | None
    element: ET.Element

    def is_(self, path: str, pool: str | None, volume: str | None) -> bool:
        return self.path == path or (
            pool is not None and (self.pool, self.volume) == (pool, volume)
        )


def _disks(xml: str) -> list[_Disk]:
    """The disks (not CD-ROMs) of a domain XML, by file or by pool volume."""
    found = []
    for disk in ET.fromstring(xml).findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source = disk.find("source")
        target = disk.find("target")
        if source is None or target is None:
            continue
        found.append(
            _Disk(
                target=target.get("dev", ""),
                path=source.get("file"),
                pool=source.get("pool"),
                volume=source.get("volume"),
                element=disk,
            )
        )
    return found


def disk_paths(hc: HostConnection, domain: str, *, live: bool = True) -> dict[str, str]:
    """{source file, or "pool/volume": target} of the domain's disks (running or defined)."""

    def read(conn: libvirt.virConnect) -> dict[str, str]:
        dom = conn.lookupByName(domain)
        flags = 0 if live and dom.isActive() else libvirt.VIR_DOMAIN_XML_INACTIVE
        return {d.path or f"{d.pool}/{d.volume}": d.target for d in _disks(dom.XMLDesc(flags))}

    return _on(hc, domain, f"read the disks of domain '{domain}'", read)


def _on(hc: HostConnection, domain: str, what: str, fn):  # type: ignore[no-untyped-def]
    try:
        return hc.call(fn, what=what)
    except HypervisorError as exc:
        if exc.code == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFound(f"{hc.label}: domain '{domain}' does not exist", field="vm") from None
        if "does not support hotplugging" in str(exc):
            raise StateConflict(
                f"{hc.label}: domain '{domain}' cannot take or release disks while running "
                "(no ACPI PCI hotplug in its definition): stop the VM first",
                field="vm",
            ) from None
        raise


def attach_disk(
    hc: HostConnection,
    domain: str,
    path: str,
    fmt: str,
    *,
    pool: str | None = None,
    volume: str | None = None,
) -> AttachedDisk:
    """Attach the file `path` to the domain: live and persistent when it runs, persistent
    only when it is defined and off. Idempotent: a disk already there (by its file, or by
    its libvirt `pool` and `volume` names) is reported, not attached twice."""
    if fmt not in IMAGE_FORMATS:
        raise InvalidParameter(f"disk {path}: format {fmt!r} is not qcow2 or raw", field="format")
    if not path.startswith("/"):
        raise InvalidParameter(f"disk {path!r}: the path must be absolute", field="path")

    def attach(conn: libvirt.virConnect) -> AttachedDisk:
        dom = conn.lookupByName(domain)
        active = bool(dom.isActive())
        xml = dom.XMLDesc(0 if active else libvirt.VIR_DOMAIN_XML_INACTIVE)
        disks = _disks(xml)
        for disk in disks:
            if disk.is_(path, pool, volume):
                return AttachedDisk(disk.target, path, fmt, active)
        used = {disk.target for disk in disks}
        free = [
            f"{_TARGET_PREFIX}{chr(ord('a') + i)}"
            for i in range(1, MAX_SCSI_DISKS)
            if f"{_TARGET_PREFIX}{chr(ord('a') + i)}" not in used
        ]
        if not free:
            raise StateConflict(f"{hc.label}: domain '{domain}' has no free SCSI disk slot")
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0
        if active:
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        dom.attachDeviceFlags(_disk_element(path, fmt, free[0]), flags)
        return AttachedDisk(free[0], path, fmt, active)

    return _on(hc, domain, f"attach {path} to domain '{domain}'", attach)


def detach_disk(
    hc: HostConnection,
    domain: str,
    path: str,
    *,
    pool: str | None = None,
    volume: str | None = None,
    wait: float = UNPLUG_WAIT_SECONDS,
) -> bool:
    """Detach the disk from the domain (live, then its definition): found by its file
    `path`, or by its libvirt `pool` and `volume` names. False when it was not attached.
    The definition is changed only once the live unplug completed, so a guest that holds
    on to the disk leaves the domain as it was (StateConflict)."""

    def live_detach(conn: libvirt.virConnect) -> bool:
        dom = conn.lookupByName(domain)
        if not dom.isActive():
            return False
        for disk in _disks(dom.XMLDesc(0)):
            if disk.is_(path, pool, volume):
                dom.detachDeviceFlags(
                    ET.tostring(disk.element, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE
                )
                return True
        return False

    def still_live(conn: libvirt.virConnect) -> bool:
        dom = conn.lookupByName(domain)
        return bool(dom.isActive()) and any(
            d.is_(path, pool, volume) for d in _disks(dom.XMLDesc(0))
        )

    def config_detach(conn: libvirt.virConnect) -> bool:
        dom = conn.lookupByName(domain)
        if not dom.isPersistent():
            return False
        for disk in _disks(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
            if disk.is_(path, pool, volume):
                dom.detachDeviceFlags(
                    ET.tostring(disk.element, encoding="unicode"),
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG,
                )
                return True
        return False

    what = f"detach {path} from domain '{domain}'"
    was_live = _on(hc, domain, what, live_detach)
    if was_live:
        deadline = time.monotonic() + wait
        while _on(hc, domain, what, still_live):
            if time.monotonic() > deadline:
                raise StateConflict(
                    f"{hc.label}: the guest of domain '{domain}' did not release disk {path} "
                    f"within {wait:g} s; the disk stays attached (stop the VM to detach it)",
                    field="volume",
                )
            time.sleep(0.1)
    in_config = _on(hc, domain, what, config_detach)
    return bool(was_live or in_config)


def block_resize(hc: HostConnection, domain: str, path: str, size_bytes: int) -> None:
    """Grow a disk of a running domain (QEMU resizes the image and tells the guest)."""

    def resize(conn: libvirt.virConnect) -> None:
        dom = conn.lookupByName(domain)
        dom.blockResize(path, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)

    _on(hc, domain, f"resize disk {path} of domain '{domain}'", resize)


def convert_image(source: Path, source_format: str, dest: Path, dest_format: str = "qcow2") -> None:
    """`qemu-img convert` into `<dest>.part`, renamed into place when complete; the
    destination is self-contained (no backing file), whatever the source's chain."""
    for fmt in (source_format, dest_format):
        if fmt not in IMAGE_FORMATS:
            raise InvalidParameter(f"image {source}: format {fmt!r} is not qcow2 or raw")
    if not source.is_file():
        raise NotFound(f"image {source}: no such file", field="path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        done = subprocess.run(
            ["qemu-img", "convert", "-q", "-f", source_format, "-O", dest_format,
             str(source), str(part)],
            capture_output=True, text=True, timeout=CONVERT_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            reason = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            raise HypervisorError(f"qemu-img convert {source} -> {dest}: {reason}")
        part.replace(dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
