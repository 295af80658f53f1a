"""Primary storage on a host: libvirt dir pools and their volumes.

`ensure_dir_pool` reaches "defined, built, started, autostarted" from any starting state.
Volumes are created blank, or from a template either as a full copy (libvirt clones it)
or as a thin qcow2 overlay whose backing file is the template. A template is inspected
(`images.inspect_image`) before it is used. `sync_pool_capacity` reads a pool's capacity
and allocation back into its StoragePool row.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import libvirt
from sqlalchemy import update
from sqlmodel import col, select

from engine.db import Database
from engine.errors import InvalidParameter, NotFound
from engine.hosts.connections import HostConnection
from engine.hosts.errors import HypervisorError
from engine.hosts.images import inspect_image
from engine.models import StoragePool

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class PoolInfo:
    name: str
    path: str
    active: bool
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    path: str
    format: str
    capacity_bytes: int
    allocation_bytes: int
    backing_path: str | None


def _check_name(what: str, name: str) -> str:
    if not name or len(name) > 255 or not set(name) <= _NAME_OK or name.startswith("."):
        raise InvalidParameter(
            f"{what} {name!r} must be 1-255 letters, digits, '.', '_' or '-' (not a leading '.')",
            field="name",
        )
    return name


def _pool_xml(name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = path
    return ET.tostring(pool, encoding="unicode")


def _pool_info(pool: libvirt.virStoragePool) -> PoolInfo:
    _state, capacity, allocation, available = pool.info()
    root = ET.fromstring(pool.XMLDesc(0))
    return PoolInfo(
        name=pool.name(),
        path=root.findtext("target/path") or "",
        active=bool(pool.isActive()),
        capacity_bytes=int(capacity),
        allocation_bytes=int(allocation),
        available_bytes=int(available),
    )


def ensure_dir_pool(hc: HostConnection, name: str, path: str) -> PoolInfo:
    """A started, autostarted dir pool `name` over `path` on the host (idempotent)."""
    _check_name("storage pool", name)
    if not path.startswith("/"):
        raise InvalidParameter(
            f"storage pool '{name}': path {path!r} is not absolute", field="path"
        )

    def ensure(conn: libvirt.virConnect) -> PoolInfo:
        try:
            pool = conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            pool = conn.storagePoolDefineXML(_pool_xml(name, path), 0)
        existing = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
        if existing and existing.rstrip("/") != path.rstrip("/"):
            raise InvalidParameter(
                f"storage pool '{name}' already exists on {hc.label} at {existing}, not {path}",
                field="path",
            )
        if not pool.isActive():
            pool.build(0)  # mkdir for a dir pool; harmless when it exists
            pool.create(0)
        if not pool.autostart():
            pool.setAutostart(1)
        pool.refresh(0)
        return _pool_info(pool)

    return hc.call(ensure, what=f"ensure storage pool '{name}'")


def pool_info(hc: HostConnection, name: str) -> PoolInfo:
    def read(conn: libvirt.virConnect) -> PoolInfo:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.refresh(0)
        return _pool_info(pool)

    try:
        return hc.call(read, what=f"read storage pool '{name}'")
    except HypervisorError as exc:
        if exc.code == libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise NotFound(f"{hc.label}: storage pool '{name}' does not exist") from None
        raise


def sync_pool_capacity(db: Database, hc: HostConnection, pool_uuid: str) -> PoolInfo:
    """Read the pool's capacity and allocation from the host into its StoragePool row."""
    with db.read() as session:
        row = session.exec(select(StoragePool).where(StoragePool.uuid == pool_uuid)).first()
    if row is None:
        raise NotFound(f"primary storage {pool_uuid} does not exist", field="pool")
    info = pool_info(hc, row.libvirt_pool_name)
    with db.write() as session:
        session.execute(
            update(StoragePool)
            .where(col(StoragePool.id) == row.id)
            .values(capacity_bytes=info.capacity_bytes, used_bytes=info.allocation_bytes)
        )
    return info


# --- volumes ---------------------------------------------------------------------------


def _volume_xml(
    name: str, size_bytes: int, fmt: str, *, backing: tuple[str, str] | None = None
) -> str:
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(size_bytes)
    ET.SubElement(volume, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "format", type=fmt)
    if backing is not None:
        store = ET.SubElement(volume, "backingStore")
        ET.SubElement(store, "path").text = backing[0]
        ET.SubElement(store, "format", type=backing[1])
    return ET.tostring(volume, encoding="unicode")


def _volume_info(vol: libvirt.virStorageVol) -> VolumeInfo:
    _kind, capacity, allocation = vol.info()
    root = ET.fromstring(vol.XMLDesc(0))
    fmt = root.find("target/format")
    return VolumeInfo(
        name=vol.name(),
        path=vol.path(),
        format=fmt.get("type", "raw") if fmt is not None else "raw",
        capacity_bytes=int(capacity),
        allocation_bytes=int(allocation),
        backing_path=root.findtext("backingStore/path") or None,
    )


def _check_volume(name: str, size_bytes: int, fmt: str) -> None:
    _check_name("volume", name)
    if fmt not in ("qcow2", "raw"):
        raise InvalidParameter(
            f"volume '{name}': format {fmt!r} is not qcow2 or raw", field="format"
        )
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 2**20:
        raise InvalidParameter(f"volume '{name}': size must be at least 1 MiB", field="size_bytes")


def _in_pool(hc: HostConnection, pool: str, what: str, fn):  # type: ignore[no-untyped-def]
    def run(conn: libvirt.virConnect):  # type: ignore[no-untyped-def]
        return fn(conn.storagePoolLookupByName(pool))

    try:
        return hc.call(run, what=what)
    except HypervisorError as exc:
        if exc.code == libvirt.VIR_ERR_NO_STORAGE_POOL:
            raise NotFound(f"{hc.label}: storage pool '{pool}' does not exist") from None
        if exc.code == libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise NotFound(f"{hc.label}: {what}: no such volume in pool '{pool}'") from None
        raise


def create_volume(
    hc: HostConnection, pool: str, name: str, size_bytes: int, fmt: str = "qcow2"
) -> VolumeInfo:
    """A blank volume (thin where the format allows)."""
    _check_volume(name, size_bytes, fmt)
    xml = _volume_xml(name, size_bytes, fmt)
    return _in_pool(
        hc, pool, f"create volume '{name}'", lambda p: _volume_info(p.createXML(xml, 0))
    )


def create_volume_from_template(
    hc: HostConnection,
    pool: str,
    name: str,
    template_path: str,
    template_format: str,
    *,
    size_bytes: int | None = None,
    linked: bool = False,
) -> VolumeInfo:
    """A volume holding the template: a full qcow2 copy, or (`linked`) a qcow2 overlay
    backed by the template file. The template is inspected first and refused if unsafe."""
    image = inspect_image(template_path, template_format)
    size = max(size_bytes or 0, image.virtual_size_bytes)
    _check_volume(name, size, "qcow2")
    if linked:
        xml = _volume_xml(name, size, "qcow2", backing=(template_path, image.format))
        return _in_pool(
            hc, pool, f"create volume '{name}'", lambda p: _volume_info(p.createXML(xml, 0))
        )
    source_pool = _template_pool_name(template_path)

    def clone(target: libvirt.virStoragePool) -> VolumeInfo:
        conn = target.connect()
        # The template is cloned through a pool over its own directory, so a remote host
        # reading secondary storage from its own mount works the same as a local one.
        src_dir = str(Path(template_path).parent)
        try:
            src = conn.storagePoolLookupByName(source_pool)
        except libvirt.libvirtError:
            src = conn.storagePoolCreateXML(_pool_xml(source_pool, src_dir), 0)
        src.refresh(0)
        template = src.storageVolLookupByName(Path(template_path).name)
        xml = _volume_xml(name, size, "qcow2")
        return _volume_info(target.createXMLFrom(xml, template, 0))

    return _in_pool(hc, pool, f"copy template into volume '{name}'", clone)


def _template_pool_name(template_path: str) -> str:
    digest = hashlib.sha256(str(Path(template_path).parent).encode()).hexdigest()[:12]
    return f"stratus-tmpl-{digest}"


def resize_volume(hc: HostConnection, pool: str, name: str, size_bytes: int) -> VolumeInfo:
    """Grow a volume (shrinking would cut a guest's filesystem: refused)."""

    def resize(p: libvirt.virStoragePool) -> VolumeInfo:
        vol = p.storageVolLookupByName(name)
        current = vol.info()[1]
        if size_bytes < current:
            raise InvalidParameter(
                f"volume '{name}': cannot shrink from {current} to {size_bytes} bytes",
                field="size_bytes",
            )
        if size_bytes > current:
            vol.resize(size_bytes, 0)
        return _volume_info(vol)

    return _in_pool(hc, pool, f"resize volume '{name}'", resize)


def delete_volume(hc: HostConnection, pool: str, name: str) -> bool:
    """Delete a volume; False when it was already gone."""

    def delete(p: libvirt.virStoragePool) -> bool:
        try:
            vol = p.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise
        vol.delete(0)
        return True

    return _in_pool(hc, pool, f"delete volume '{name}'", delete)


def list_volumes(hc: HostConnection, pool: str) -> list[VolumeInfo]:
    def read(p: libvirt.virStoragePool) -> list[VolumeInfo]:
        if p.isActive():
            p.refresh(0)
        return sorted((_volume_info(v) for v in p.listAllVolumes(0)), key=lambda v: v.name)

    return _in_pool(hc, pool, "list volumes", read)
