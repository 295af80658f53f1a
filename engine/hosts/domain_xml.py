"""Domain XML from typed fields, built with ElementTree (never by string formatting).

Every value goes in as element text or an attribute value, which ElementTree escapes, so
a hostile name or description (`<`, `&`, quotes, `]]>`) can never become markup.
Characters XML 1.0 cannot hold at all (most C0 controls) are refused in identifiers and
stripped from free text. The VM's Stratus UUID travels in a metadata element in our own
namespace, so a domain found on a host can be tied back to its database row.
"""

from __future__ import annotations

import re
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

from engine.errors import InvalidParameter

METADATA_NS = "https://stratus.dev/xmlns/vm/1"
ET.register_namespace("stratus", METADATA_NS)

DiskFormat = Literal["qcow2", "raw"]
DISK_CACHE_MODES = ("none", "writeback", "writethrough", "directsync", "unsafe", "default")
DISK_FORMATS = ("qcow2", "raw")
MAX_DOMAIN_NAME = 64
MAX_DESCRIPTION = 1024
# XML 1.0 allows tab, LF, CR and everything from U+0020 except surrogates, FFFE and FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_TARGET = re.compile(r"^(vd|sd|hd)[a-z]{1,2}$")
# The CD-ROM drive: IDE (the "pc" machine has it), so its media can change while running.
CDROM_TARGET = "hdc"


@dataclass(frozen=True)
class DiskSpec:
    """A disk: a file (`path`) or a volume of a libvirt pool (`pool` + `volume`)."""

    target: str  # guest device: vda, vdb ...
    format: DiskFormat = "qcow2"
    path: str | None = None
    pool: str | None = None
    volume: str | None = None
    read_only: bool = False
    # Host page cache bypassed (CloudStack's KVM default): what makes live migration over
    # shared storage safe, since no dirty host cache is left behind on the source.
    cache: str = "none"


@dataclass(frozen=True)
class NicSpec:
    bridge: str
    mac: str
    model: str = "virtio"


@dataclass(frozen=True)
class DomainSpec:
    name: str  # the libvirt domain name (the VM's instance name)
    uuid: str  # the libvirt domain UUID
    vcpus: int
    memory_bytes: int
    vm_uuid: str  # the Stratus VM this domain belongs to (metadata)
    description: str = ""
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    domain_type: str = "qemu"  # 'qemu' (TCG), 'kvm', or 'test' for the test driver
    arch: str = "x86_64"
    machine: str = "pc"
    serial_console: bool = True
    vnc: bool = True
    # The CD-ROM drive: None = no drive, "" = an empty drive, else the ISO file inserted.
    # A VM's domain always gets a drive, so an ISO can be inserted while it runs.
    cdrom: str | None = None


def _label(spec: DomainSpec) -> str:
    return f"domain {spec.name!r}"


def clean_text(text: str, limit: int = MAX_DESCRIPTION) -> str:
    """Free text XML can hold: characters XML 1.0 forbids removed, line ends as parsers
    report them (a parser turns CR LF and CR into LF), length capped."""
    text = _NOT_XML.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return text[:limit]


def check_domain_name(name: object) -> str:
    text = name if isinstance(name, str) else ""
    if not text or len(text) > MAX_DOMAIN_NAME:
        raise InvalidParameter(
            f"domain name {text[:80]!r} must be 1 to {MAX_DOMAIN_NAME} characters", field="name"
        )
    if _CONTROL.search(text) or _NOT_XML.search(text) or "/" in text:
        raise InvalidParameter(
            f"domain name {text[:80]!r} contains control characters or '/'", field="name"
        )
    return text


def _check_uuid(label: str, value: str, what: str) -> str:
    try:
        return str(uuidlib.UUID(str(value)))
    except ValueError:
        raise InvalidParameter(f"{label}: {what} {value!r} is not a UUID", field=what) from None


def _check_positive(label: str, value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameter(f"{label}: {what} must be a positive whole number", field=what)
    return value


def validate(spec: DomainSpec) -> None:
    """Refuse a spec that would not make a valid, safe domain; name the field at fault."""
    check_domain_name(spec.name)
    label = _label(spec)
    _check_uuid(label, spec.uuid, "uuid")
    _check_uuid(label, spec.vm_uuid, "vm_uuid")
    _check_positive(label, spec.vcpus, "vcpus")
    if _check_positive(label, spec.memory_bytes, "memory_bytes") < 2**20:
        raise InvalidParameter(f"{label}: memory must be at least 1 MiB", field="memory_bytes")
    for what, value in (
        ("domain_type", spec.domain_type),
        ("arch", spec.arch),
        ("machine", spec.machine),
    ):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise InvalidParameter(f"{label}: {what} {value!r} is not valid", field=what)
    targets = set()
    for disk in spec.disks:
        if not _TARGET.match(disk.target):
            raise InvalidParameter(
                f"{label}: disk target {disk.target!r} is not valid", field="disks"
            )
        if disk.target in targets:
            raise InvalidParameter(
                f"{label}: disk target {disk.target} is used twice", field="disks"
            )
        targets.add(disk.target)
        if disk.cache not in DISK_CACHE_MODES:
            raise InvalidParameter(
                f"{label}: disk {disk.target} cache mode {disk.cache!r} is not one of "
                f"{', '.join(DISK_CACHE_MODES)}",
                field="disks",
            )
        if disk.format not in DISK_FORMATS:
            raise InvalidParameter(
                f"{label}: disk {disk.target} format {disk.format!r} is not qcow2 or raw",
                field="disks",
            )
        by_file = disk.path is not None
        by_pool = disk.pool is not None or disk.volume is not None
        if by_file == by_pool:
            raise InvalidParameter(
                f"{label}: disk {disk.target} needs a file path or a pool and volume, not both",
                field="disks",
            )
        for what, value in (("path", disk.path), ("pool", disk.pool), ("volume", disk.volume)):
            if value is not None and (
                not value or _CONTROL.search(value) or _NOT_XML.search(value)
            ):
                raise InvalidParameter(
                    f"{label}: disk {disk.target} {what} {value!r} is empty or has control "
                    "characters",
                    field="disks",
                )
        if disk.path is not None and not disk.path.startswith("/"):
            raise InvalidParameter(
                f"{label}: disk {disk.target} path {disk.path!r} is not absolute", field="disks"
            )
        if by_pool and not (disk.pool and disk.volume):
            raise InvalidParameter(
                f"{label}: disk {disk.target} needs both a pool and a volume", field="disks"
            )
    if spec.cdrom:
        if _CONTROL.search(spec.cdrom) or _NOT_XML.search(spec.cdrom):
            raise InvalidParameter(
                f"{label}: CD-ROM file {spec.cdrom!r} has control characters", field="cdrom"
            )
        if not spec.cdrom.startswith("/"):
            raise InvalidParameter(
                f"{label}: CD-ROM file {spec.cdrom!r} is not absolute", field="cdrom"
            )
    if spec.cdrom is not None and CDROM_TARGET in targets:
        raise InvalidParameter(
            f"{label}: disk target {CDROM_TARGET} is the CD-ROM drive's", field="disks"
        )
    for nic in spec.nics:
        if not _MAC.match(nic.mac):
            raise InvalidParameter(
                f"{label}: MAC {nic.mac!r} is not lower-case aa:bb:cc:dd:ee:ff", field="nics"
            )
        if not _IFNAME.match(nic.bridge):
            raise InvalidParameter(
                f"{label}: bridge {nic.bridge!r} is not an interface name (at most 15 "
                "letters, digits, '.', '_' or '-')",
                field="nics",
            )
        if not re.fullmatch(r"[a-z0-9-]{1,32}", nic.model):
            raise InvalidParameter(f"{label}: NIC model {nic.model!r} is not valid", field="nics")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def build_domain_xml(spec: DomainSpec) -> str:
    """The domain XML for `spec` (validated first)."""
    validate(spec)
    domain = ET.Element("domain", type=spec.domain_type)
    _sub(domain, "name", spec.name)
    _sub(domain, "uuid", str(uuidlib.UUID(spec.uuid)))
    description = clean_text(spec.description)
    if description:
        _sub(domain, "description", description)
    metadata = _sub(domain, "metadata")
    vm = _sub(metadata, f"{{{METADATA_NS}}}vm")
    _sub(vm, f"{{{METADATA_NS}}}uuid", str(uuidlib.UUID(spec.vm_uuid)))
    _sub(domain, "memory", str(spec.memory_bytes // 1024), unit="KiB")
    _sub(domain, "vcpu", str(spec.vcpus))
    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch=spec.arch, machine=spec.machine)
    _sub(os_el, "boot", dev="hd")
    if spec.cdrom:  # an inserted ISO boots when the disk does not
        _sub(os_el, "boot", dev="cdrom")
    # ACPI: the power button a graceful shutdown presses, and PCI/SCSI hot-plug of disks.
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")
    devices = _sub(domain, "devices")
    for disk in spec.disks:
        kind = "file" if disk.path is not None else "volume"
        el = _sub(devices, "disk", type=kind, device="disk")
        _sub(el, "driver", name="qemu", type=disk.format, cache=disk.cache)
        if disk.path is not None:
            _sub(el, "source", file=disk.path)
        else:
            _sub(el, "source", pool=disk.pool or "", volume=disk.volume or "")
        bus = {"vd": "virtio", "sd": "scsi", "hd": "ide"}[disk.target[:2]]
        _sub(el, "target", dev=disk.target, bus=bus)
        if disk.read_only:
            _sub(el, "readonly")
    if spec.cdrom is not None:
        devices.append(cdrom_element(spec.cdrom or None))
    for nic in spec.nics:
        el = _sub(devices, "interface", type="bridge")
        _sub(el, "mac", address=nic.mac)
        _sub(el, "source", bridge=nic.bridge)
        _sub(el, "model", type=nic.model)
    if spec.serial_console:
        serial = _sub(devices, "serial", type="pty")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
    if spec.vnc:
        # Only on the host's loopback: the console is reached through an SSH tunnel or proxy.
        graphics = _sub(
            devices, "graphics", type="vnc", port="-1", autoport="yes", listen="127.0.0.1"
        )
        _sub(graphics, "listen", type="address", address="127.0.0.1")
    return ET.tostring(domain, encoding="unicode")


def cdrom_element(path: str | None) -> ET.Element:
    """The CD-ROM drive with `path` inserted (None: empty), as a domain's device list and
    libvirt's updateDeviceFlags take it."""
    el = ET.Element("disk", type="file", device="cdrom")
    _sub(el, "driver", name="qemu", type="raw")
    if path:
        _sub(el, "source", file=path)
    _sub(el, "target", dev=CDROM_TARGET, bus="ide")
    _sub(el, "readonly")
    return el


def cdrom_xml(path: str | None) -> str:
    return ET.tostring(cdrom_element(path), encoding="unicode")


def cdrom_of(xml: str) -> str | None:
    """What a domain's CD-ROM drive holds: None without a drive, "" when empty."""
    for el in ET.fromstring(xml).findall("devices/disk[@device='cdrom']"):
        source = el.find("source")
        return (source.get("file") or "") if source is not None else ""
    return None


def vm_uuid_of(xml: str) -> str | None:
    """The Stratus VM UUID in a domain's XML (None for a domain that is not ours)."""
    root = ET.fromstring(xml)
    found = root.find(f"metadata/{{{METADATA_NS}}}vm/{{{METADATA_NS}}}uuid")
    return found.text if found is not None else None


def parse_domain_xml(xml: str) -> DomainSpec:
    """Read back what `build_domain_xml` writes (also works on libvirt's expanded XML)."""
    root = ET.fromstring(xml)

    def text(path: str, default: str = "") -> str:
        found = root.find(path)
        return found.text or "" if found is not None else default

    memory = root.find("memory")
    unit = memory.get("unit", "KiB") if memory is not None else "KiB"
    scale = {"b": 1, "bytes": 1, "KiB": 1024, "MiB": 2**20, "GiB": 2**30}.get(unit, 1024)
    disks = []
    for el in root.findall("devices/disk"):
        if el.get("device") == "cdrom":
            continue  # read into `cdrom`
        source = el.find("source")
        driver = el.find("driver")
        target = el.find("target")
        src = source.attrib if source is not None else {}
        disks.append(
            DiskSpec(
                target=target.get("dev", "") if target is not None else "",
                format=(driver.get("type", "raw") if driver is not None else "raw"),  # type: ignore[arg-type]
                path=src.get("file"),
                pool=src.get("pool"),
                volume=src.get("volume"),
                read_only=el.find("readonly") is not None,
                cache=(driver.get("cache", "default") if driver is not None else "default"),
            )
        )
    nics = []
    for el in root.findall("devices/interface"):
        mac, source, model = el.find("mac"), el.find("source"), el.find("model")
        nics.append(
            NicSpec(
                bridge=source.get("bridge", "") if source is not None else "",
                mac=mac.get("address", "") if mac is not None else "",
                model=model.get("type", "") if model is not None else "",
            )
        )
    os_type = root.find("os/type")
    return DomainSpec(
        name=text("name"),
        uuid=text("uuid"),
        vcpus=int(text("vcpu", "0") or 0),
        memory_bytes=int(text("memory", "0") or 0) * scale,
        vm_uuid=vm_uuid_of(xml) or "",
        description=text("description"),
        disks=tuple(disks),
        nics=tuple(nics),
        domain_type=root.get("type", ""),
        arch=os_type.get("arch", "") if os_type is not None else "",
        machine=os_type.get("machine", "") if os_type is not None else "",
        serial_console=root.find("devices/serial") is not None,
        vnc=root.find("devices/graphics[@type='vnc']") is not None,
        cdrom=cdrom_of(xml),
    )
