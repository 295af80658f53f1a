"""User volumes, as CloudStack has them: create, attach, detach, resize, delete.

A data volume is created from a disk offering (its size; a size of your own only when the
offering is custom) and stays Allocated, a database row on no pool, until it is first
attached. Attaching creates it on **the primary storage of the VM's root volume** (the
simplest rule that is always correct: that pool is reachable from every host the VM can
run on, since placement chose it for the VM's cluster or zone), then plugs it into the
running domain, or only records it (Volume.vm_id / device_id) for a stopped VM, whose
next define by compute includes it. A volume already on a pool attaches only to a VM that
can reach that pool (its cluster's, or a zone-wide pool).

State changes are compare-and-set (`UPDATE … WHERE id AND state AND update_count`, bumping
update_count); Creating, Resizing and Expunging exist only inside a job. Work that touches
a host runs in a job (engine/storage/handlers.py): the `submit_*` functions validate and
queue it, the `run_*` functions do it, recording steps so that a crash can be undone.
Jobs on an attached volume use the VM's UUID as their resource, so they queue behind the
VM's own start, stop or migration and never interleave with them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.db import Database
from engine.errors import (
    InUse,
    InvalidParameter,
    NotFound,
    StateConflict,
)
from engine.events import record_event
from engine.hosts import disks as host_disks
from engine.hosts import storage as host_storage
from engine.hosts.connections import HostConnection
from engine.hosts.manager import HostManager
from engine.lookup import resolve
from engine.models import (
    DiskOffering,
    Host,
    HostStatus,
    ImageFormat,
    ResourceState,
    StoragePool,
    StoragePoolTag,
    VirtualMachine,
    VmState,
    Volume,
    VolumeState,
    VolumeType,
    Zone,
    utcnow,
)
from engine.offerings import tag_list
from engine.storage import pool_space
from engine.validation import check_count, check_name

log = logging.getLogger(__name__)

GIB = 2**30
MAX_VOLUME_BYTES = 64 * 2**40
# CloudStack's device ids: 0 is the root disk, 3 the CD-ROM; data disks take the others.
DATA_DEVICE_IDS = tuple(i for i in range(1, 16) if i != 3)
ATTACHABLE_VM_STATES = (VmState.RUNNING, VmState.STOPPED)

Step = Callable[..., None]  # JobContext.record_step(step, **data)


def _no_step(_step: str, **_data: Any) -> None:
    return None


def label(volume: Volume) -> str:
    return f"volume '{volume.name}'"


def _vm_label(vm: VirtualMachine) -> str:
    return f"VM '{vm.name}'"


def cas_volume(session: Session, volume: Volume, expected: str, **values: Any) -> None:
    """Move `volume` from state `expected` (and its update_count as read) to `values`."""
    changed = session.execute(
        update(Volume)
        .where(
            col(Volume.id) == volume.id,
            col(Volume.state) == expected,
            col(Volume.update_count) == volume.update_count,
        )
        .values(update_count=col(Volume.update_count) + 1, **values)
    ).rowcount
    if changed != 1:
        current = session.get(Volume, volume.id, populate_existing=True)
        now = current.state if current is not None else "gone"
        target = values.get("state", expected)
        raise StateConflict(
            f"{label(volume)} is {now}, not {expected}: it cannot become {target} "
            "(changed by another operation)",
            field="volume",
        )
    for key, value in values.items():
        setattr(volume, key, value)
    volume.update_count += 1


def _live_volume(session: Session, ref: str) -> Volume:
    volume = resolve(session, Volume, ref, "volume", field="volume")
    if volume.removed is not None:
        raise NotFound(f"{label(volume)} was deleted", field="volume")
    return volume


def _live_vm(session: Session, ref: str) -> VirtualMachine:
    vm = resolve(session, VirtualMachine, ref, "VM", field="vm")
    if vm.removed is not None or vm.state in (VmState.EXPUNGED, VmState.EXPUNGING):
        raise NotFound(f"{_vm_label(vm)} was expunged", field="vm")
    return vm


def volume_file(pool: StoragePool, volume: Volume) -> str:
    """The volume's file on a dir pool (Volume.path is its name in the libvirt pool)."""
    return f"{pool.path.rstrip('/')}/{volume.path}"


# --- create ----------------------------------------------------------------------------


def _check_size(name: str, offering: DiskOffering, size_bytes: int | None) -> int:
    what = f"volume '{name}'"
    if offering.is_customized:
        if size_bytes is None:
            raise InvalidParameter(
                f"{what}: disk offering '{offering.name}' is custom: give a size",
                field="size_bytes",
            )
        size = check_count(what, size_bytes, field="size_bytes", what="size (bytes)")
        if size < GIB or size % GIB:
            raise InvalidParameter(
                f"{what}: size must be a whole number of GiB, at least 1 GiB", field="size_bytes"
            )
        if size > MAX_VOLUME_BYTES:
            raise InvalidParameter(
                f"{what}: size must be at most {MAX_VOLUME_BYTES // 2**40} TiB",
                field="size_bytes",
            )
        return size
    if size_bytes is not None and size_bytes != offering.disk_size_bytes:
        raise InvalidParameter(
            f"{what}: disk offering '{offering.name}' has a fixed size of "
            f"{offering.disk_size_bytes // GIB} GiB; a size of your own needs a custom offering",
            field="size_bytes",
        )
    return offering.disk_size_bytes


def create_volume(
    caller: Caller,
    name: str,
    *,
    zone: str,
    disk_offering: str,
    size_bytes: int | None = None,
) -> Volume:
    """A data volume, Allocated (no pool, no file) until it is attached."""
    name = check_name(f"volume '{name}'", name)
    with caller.db.write() as session:
        zone_row = resolve(session, Zone, zone, "zone", field="zone")
        offering = resolve(session, DiskOffering, disk_offering, "disk offering", field="offering")
        if offering.state != "Active":
            raise InvalidParameter(
                f"volume '{name}': disk offering '{offering.name}' is {offering.state}",
                field="offering",
            )
        size = _check_size(name, offering, size_bytes)
        volume = Volume(
            name=name,
            account_id=caller.account_id,  # type: ignore[arg-type]
            domain_id=caller.domain_id,  # type: ignore[arg-type]
            zone_id=zone_row.id,  # type: ignore[arg-type]
            volume_type=VolumeType.DATADISK,
            disk_offering_id=offering.id,
            size_bytes=size,
            format=ImageFormat.QCOW2,
            state=VolumeState.ALLOCATED,
        )
        session.add(volume)
        session.flush()
        record_event(
            session,
            caller,
            "VOLUME.CREATE",
            "Volume",
            volume,
            f"{size // GIB} GiB from disk offering '{offering.name}' in zone '{zone_row.name}'",
        )
    return volume


def get_volume(caller: Caller, volume_ref: str) -> Volume:
    with caller.db.read() as session:
        return _live_volume(session, volume_ref)


def list_volumes(caller: Caller, *, vm: str | None = None) -> list[Volume]:
    with caller.db.read() as session:
        query = select(Volume).where(col(Volume.removed).is_(None)).order_by(Volume.name)
        if vm is not None:
            vm_row = resolve(session, VirtualMachine, vm, "VM", field="vm")
            query = query.where(Volume.vm_id == vm_row.id).order_by(Volume.device_id)
        return list(session.exec(query))


# --- where a volume goes, and which host does the work ---------------------------------


def root_pool(session: Session, vm: VirtualMachine) -> StoragePool:
    """The primary storage of the VM's root volume: where its new data volumes go."""
    pool = session.exec(
        select(StoragePool)
        .join(Volume, col(Volume.pool_id) == StoragePool.id)
        .where(
            Volume.vm_id == vm.id,
            Volume.volume_type == VolumeType.ROOT,
            col(Volume.removed).is_(None),
        )
    ).first()
    if pool is None:
        raise StateConflict(
            f"{_vm_label(vm)} has no root volume on primary storage yet: deploy it first",
            field="vm",
        )
    return pool


def _check_pool_tags(session: Session, volume: Volume, pool: StoragePool) -> None:
    if volume.disk_offering_id is None:
        return
    offering = session.get(DiskOffering, volume.disk_offering_id)
    wanted = set(tag_list(offering.storage_tags)) if offering else set()
    if not wanted:
        return
    have = set(session.exec(select(StoragePoolTag.tag).where(StoragePoolTag.pool_id == pool.id)))
    missing = sorted(wanted - have)
    if missing:
        raise InvalidParameter(
            f"{label(volume)}: disk offering '{offering.name}' needs storage tag(s) "  # type: ignore[union-attr]
            f"{', '.join(missing)}, which primary storage '{pool.name}' lacks",
            field="volume",
        )


def _reachable(pool: StoragePool, vm: VirtualMachine) -> bool:
    if pool.cluster_id is None:
        return pool.zone_id == vm.zone_id
    return pool.cluster_id == vm.cluster_id


def host_for(session: Session, *, vm: VirtualMachine | None, pool: StoragePool) -> Host:
    """The host that does a volume's work: the VM's host when it runs; else its last host,
    else the first Up, Enabled host that reaches the pool."""
    ids = [i for i in ((vm.host_id, vm.last_host_id) if vm else ()) if i is not None]
    for host_id in ids:
        host = session.get(Host, host_id)
        if host is not None and host.status == HostStatus.UP:
            return host
    if vm is not None and vm.state == VmState.RUNNING:
        raise StateConflict(f"{_vm_label(vm)} is Running but its host is not Up", field="vm")
    query = select(Host).where(
        Host.status == HostStatus.UP, Host.resource_state == ResourceState.ENABLED
    )
    if pool.cluster_id is not None:
        query = query.where(Host.cluster_id == pool.cluster_id)
    else:
        query = query.where(Host.zone_id == pool.zone_id)
    host = session.exec(query.order_by(Host.id).limit(1)).first()
    if host is None:
        raise StateConflict(
            f"primary storage '{pool.name}': no Up host reaches it to do the work", field="pool"
        )
    return host


def _connection(hosts: HostManager, host: Host, pool: StoragePool) -> HostConnection:
    hc = hosts.for_host(host)
    if pool.pool_type == "dir":
        host_storage.ensure_dir_pool(hc, pool.libvirt_pool_name, pool.path)
    return hc


# --- attach ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeJob:
    """What a volume job needs: its type, the resource it queues on, and its params."""

    job_type: str
    resource_type: str
    resource_uuid: str
    resource_name: str
    params: dict[str, Any]


def check_attach(session: Session, volume_ref: str, vm_ref: str) -> tuple[Volume, VirtualMachine]:
    volume = _live_volume(session, volume_ref)
    vm = _live_vm(session, vm_ref)
    what = label(volume)
    if volume.volume_type != VolumeType.DATADISK:
        raise InvalidParameter(f"{what} is a root volume; only data volumes attach", field="volume")
    if volume.vm_id is not None:
        other = session.get(VirtualMachine, volume.vm_id)
        raise InUse(
            f"{what} is already attached to VM '{other.name if other else volume.vm_id}'",
            field="volume",
        )
    if volume.state not in (VolumeState.ALLOCATED, VolumeState.READY):
        raise StateConflict(f"{what} is {volume.state}; it attaches when Allocated or Ready")
    if vm.state not in ATTACHABLE_VM_STATES:
        raise StateConflict(
            f"{_vm_label(vm)} is {vm.state}; volumes attach to a Running or Stopped VM",
            field="vm",
        )
    if volume.zone_id != vm.zone_id:
        raise InvalidParameter(f"{what} and {_vm_label(vm)} are in different zones", field="vm")
    if volume.account_id != vm.account_id:
        raise InvalidParameter(
            f"{what} and {_vm_label(vm)} belong to different accounts", field="vm"
        )
    used = _used_device_ids(session, vm)
    if not [d for d in DATA_DEVICE_IDS if d not in used]:
        raise StateConflict(
            f"{_vm_label(vm)} already has {len(DATA_DEVICE_IDS)} data volumes", field="vm"
        )
    if volume.pool_id is not None:
        pool = session.get(StoragePool, volume.pool_id)
        assert pool is not None
        if not _reachable(pool, vm):
            raise InvalidParameter(
                f"{what} is on primary storage '{pool.name}', which {_vm_label(vm)} cannot "
                "reach (another cluster): migrate the volume first",
                field="volume",
            )
    else:
        pool = root_pool(session, vm)
        _check_pool_tags(session, volume, pool)
    return volume, vm


def _used_device_ids(session: Session, vm: VirtualMachine) -> set[int]:
    return {
        d
        for d in session.exec(
            select(Volume.device_id).where(Volume.vm_id == vm.id, col(Volume.removed).is_(None))
        )
        if d is not None
    }


def begin_attach(session: Session, volume_ref: str, vm_ref: str) -> VolumeJob:
    """Validate an attach (nothing written) and say which job does it."""
    volume, vm = check_attach(session, volume_ref, vm_ref)
    return VolumeJob(
        "AttachVolume",
        "VirtualMachine",
        vm.uuid,
        vm.name,
        {"volume": volume.uuid, "vm": vm.uuid},
    )


def run_attach(
    caller: Caller,
    hosts: HostManager,
    volume_uuid: str,
    vm_uuid: str,
    *,
    step: Step = _no_step,
) -> Volume:
    """Create the volume on the root volume's pool if it is only Allocated, plug it into
    the running domain (stopped VM: recorded only), then record the attachment. Any
    failure undoes what was done before it."""
    db = caller.db
    done: list[tuple[str, dict[str, Any]]] = []

    def did(name: str, **data: Any) -> None:
        done.append((name, data))
        step(name, **data)

    started = False
    try:
        with db.write() as session:
            volume, vm = check_attach(session, volume_uuid, vm_uuid)
            if volume.state == VolumeState.ALLOCATED:
                pool = root_pool(session, vm)
                pool_space.claim_pool_space(session, pool, volume.size_bytes, label(volume))
                cas_volume(
                    session,
                    volume,
                    VolumeState.ALLOCATED,
                    state=VolumeState.CREATING,
                    pool_id=pool.id,
                    path=f"{volume.uuid}.qcow2",
                )
            else:
                pool = session.get(StoragePool, volume.pool_id)
            host = host_for(session, vm=vm, pool=pool)  # type: ignore[arg-type]
        started = True
        assert pool is not None
        if volume.state == VolumeState.CREATING:
            did("pool_claimed", volume=volume.uuid, pool=pool.id, size=volume.size_bytes)
            hc = _connection(hosts, host, pool)
            host_storage.create_volume(
                hc, pool.libvirt_pool_name, volume.path or "", volume.size_bytes, "qcow2"
            )
            did("volume_created", volume=volume.uuid, host=host.id, pool=pool.id)
            with db.write() as session:
                cas_volume(session, volume, VolumeState.CREATING, state=VolumeState.READY)
        path = volume_file(pool, volume)
        if vm.state == VmState.RUNNING:
            hc = hosts.for_host(host)
            host_disks.attach_disk(
                hc,
                vm.instance_name,
                path,
                volume.format.lower(),
                pool=pool.libvirt_pool_name,
                volume=volume.path,
            )
            did("disk_attached", volume=volume.uuid, host=host.id, pool=pool.id,
                domain=vm.instance_name, path=path)  # fmt: skip
        with db.write() as session:
            fresh_vm = _live_vm(session, vm.uuid)
            if fresh_vm.state != vm.state:
                raise StateConflict(
                    f"{_vm_label(vm)} went from {vm.state} to {fresh_vm.state} during the attach"
                )
            used = _used_device_ids(session, fresh_vm)
            device = next(d for d in DATA_DEVICE_IDS if d not in used)
            cas_volume(session, volume, VolumeState.READY, vm_id=vm.id, device_id=device)
            record_event(
                session,
                caller,
                "VOLUME.ATTACH",
                "Volume",
                volume,
                f"attached to {_vm_label(vm)} as device {device}"
                + (" (live)" if vm.state == VmState.RUNNING else ""),
            )
        return volume
    except BaseException:
        if started:
            with contextlib.suppress(Exception):
                undo_attach(db, hosts, volume_uuid, vm_uuid, done)
        raise


def undo_attach(
    db: Database,
    hosts: HostManager,
    volume_uuid: str,
    vm_uuid: str,
    steps: list[tuple[str, dict[str, Any]]],
) -> str:
    """Undo an attach that did not complete (also the AttachVolume job's crash recovery).

    Side effects that happened but were not recorded yet are found from the state: a
    volume still Creating was made by this attach (only an attach sets it), and the disk
    is unplugged from a running VM whenever the database does not say it is attached
    (unplugging an absent disk does nothing). An attach whose last write committed (the
    volume names the VM) is complete and left alone."""
    with db.read() as session:
        volume = session.exec(select(Volume).where(Volume.uuid == volume_uuid)).first()
        vm = session.exec(select(VirtualMachine).where(VirtualMachine.uuid == vm_uuid)).first()
        pool = session.get(StoragePool, volume.pool_id) if volume and volume.pool_id else None
        vm_host = session.get(Host, vm.host_id) if vm and vm.host_id else None
        pool_host = None
        if pool is not None:
            with contextlib.suppress(StateConflict):
                pool_host = host_for(session, vm=vm, pool=pool)
    if volume is None or vm is None:
        return "the volume or the VM is gone; nothing to undo"
    if volume.vm_id == vm.id and volume.state == VolumeState.READY:
        return "the attach had completed; nothing to undo"
    undone: list[str] = []
    if pool is not None and vm_host is not None and vm.state == VmState.RUNNING:
        with contextlib.suppress(NotFound):
            if host_disks.detach_disk(
                hosts.for_host(vm_host),
                vm.instance_name,
                volume_file(pool, volume),
                pool=pool.libvirt_pool_name,
                volume=volume.path,
            ):
                undone.append("unplugged the disk")
    created = volume.state == VolumeState.CREATING or any(
        name == "volume_created" for name, _ in steps
    )
    if created and pool is not None:
        if pool_host is not None and volume.path:
            hc = _connection(hosts, pool_host, pool)
            if host_storage.delete_volume(hc, pool.libvirt_pool_name, volume.path):
                undone.append("deleted the new volume file")
        with db.write() as session:
            current = session.get(Volume, volume.id)
            if current is not None and current.vm_id is None and current.pool_id is not None:
                pool_space.release_pool_space(session, current.pool_id, current.size_bytes)
                cas_volume(
                    session, current, current.state, state=VolumeState.ALLOCATED, pool_id=None,
                    path=None,
                )  # fmt: skip
                undone.append("gave the pool space back (volume Allocated again)")
    return "; ".join(undone) or "nothing to undo"


# --- detach ----------------------------------------------------------------------------


def check_detach(session: Session, volume_ref: str) -> tuple[Volume, VirtualMachine]:
    volume = _live_volume(session, volume_ref)
    what = label(volume)
    if volume.vm_id is None:
        raise StateConflict(f"{what} is not attached to a VM", field="volume")
    if volume.volume_type == VolumeType.ROOT:
        raise InvalidParameter(f"{what} is a root volume; it cannot be detached", field="volume")
    vm = session.get(VirtualMachine, volume.vm_id)
    assert vm is not None
    if vm.state not in ATTACHABLE_VM_STATES:
        raise StateConflict(
            f"{_vm_label(vm)} is {vm.state}; volumes detach from a Running or Stopped VM",
            field="vm",
        )
    if volume.state != VolumeState.READY:
        raise StateConflict(f"{what} is {volume.state}, not Ready", field="volume")
    return volume, vm


def begin_detach(session: Session, volume_ref: str) -> VolumeJob:
    volume, vm = check_detach(session, volume_ref)
    return VolumeJob(
        "DetachVolume", "VirtualMachine", vm.uuid, vm.name, {"volume": volume.uuid, "vm": vm.uuid}
    )


def run_detach(
    caller: Caller, hosts: HostManager, volume_uuid: str, *, step: Step = _no_step
) -> Volume:
    """Unplug the volume from its running VM (or from a stopped VM's definition, when the
    domain is defined on its last host) and record it detached."""
    db = caller.db
    with db.read() as session:
        volume, vm = check_detach(session, volume_uuid)
        pool = session.get(StoragePool, volume.pool_id) if volume.pool_id else None
        host = None
        if pool is not None:
            with contextlib.suppress(StateConflict):
                host = host_for(session, vm=vm, pool=pool)
    if pool is not None and host is not None:
        hc = hosts.for_host(host)
        try:
            if host_disks.detach_disk(
                hc,
                vm.instance_name,
                volume_file(pool, volume),
                pool=pool.libvirt_pool_name,
                volume=volume.path,
            ):
                step("disk_detached", volume=volume.uuid, host=host.id)
        except NotFound:
            if vm.state == VmState.RUNNING:
                raise
            # A stopped VM whose domain is not defined: only the database knows the disk.
    elif vm.state == VmState.RUNNING:
        raise StateConflict(f"{_vm_label(vm)} is Running but no host of it answers", field="vm")
    with db.write() as session:
        pool_space.take_out_of_claim(session, volume)
        cas_volume(session, volume, VolumeState.READY, vm_id=None, device_id=None)
        record_event(
            session, caller, "VOLUME.DETACH", "Volume", volume, f"detached from {_vm_label(vm)}"
        )
    return volume


# --- resize ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResizePlan:
    volume: Volume
    new_size: int
    offering_id: int | None


def check_resize(
    session: Session,
    volume_ref: str,
    *,
    size_bytes: int | None = None,
    disk_offering: str | None = None,
) -> ResizePlan:
    volume = _live_volume(session, volume_ref)
    what = label(volume)
    if (size_bytes is None) == (disk_offering is None):
        raise InvalidParameter(
            f"{what}: give either a new size (custom offering) or a new disk offering",
            field="size_bytes",
        )
    if volume.state not in (VolumeState.ALLOCATED, VolumeState.READY):
        raise StateConflict(f"{what} is {volume.state}; it resizes when Allocated or Ready")
    offering_id = volume.disk_offering_id
    if disk_offering is not None:
        offering = resolve(session, DiskOffering, disk_offering, "disk offering", field="offering")
        if offering.is_customized:
            raise InvalidParameter(
                f"{what}: disk offering '{offering.name}' is custom; give a size instead",
                field="offering",
            )
        new_size = offering.disk_size_bytes
        offering_id = offering.id
    else:
        current = (
            session.get(DiskOffering, volume.disk_offering_id) if volume.disk_offering_id else None
        )
        if volume.volume_type == VolumeType.DATADISK and (
            current is None or not current.is_customized
        ):
            shown = f"'{current.name}'" if current else "(none)"
            raise InvalidParameter(
                f"{what}: its disk offering {shown} is not custom: give a new disk offering",
                field="size_bytes",
            )
        new_size = check_count(what, size_bytes, field="size_bytes", what="size (bytes)")
        if new_size % GIB:
            raise InvalidParameter(
                f"{what}: size must be a whole number of GiB", field="size_bytes"
            )
    if new_size < volume.size_bytes:
        raise InvalidParameter(
            f"{what}: cannot shrink from {volume.size_bytes // GIB} GiB to {new_size // GIB} GiB "
            "(only growing is safe for the guest's file system)",
            field="size_bytes",
        )
    if new_size == volume.size_bytes:
        raise InvalidParameter(f"{what} is already {new_size // GIB} GiB", field="size_bytes")
    if new_size > MAX_VOLUME_BYTES:
        raise InvalidParameter(f"{what}: size must be at most 64 TiB", field="size_bytes")
    if volume.vm_id is not None:
        vm = session.get(VirtualMachine, volume.vm_id)
        if vm is not None and vm.state not in ATTACHABLE_VM_STATES:
            raise StateConflict(f"{_vm_label(vm)} is {vm.state}; resize when Running or Stopped")
    return ResizePlan(volume, new_size, offering_id)


def begin_resize(
    session: Session,
    caller: Caller,
    volume_ref: str,
    *,
    size_bytes: int | None = None,
    disk_offering: str | None = None,
) -> Volume | VolumeJob:
    """Grow a volume. An Allocated volume (no file yet) changes at once and is returned;
    for one on a pool, the ResizeVolume job to run."""
    plan = check_resize(session, volume_ref, size_bytes=size_bytes, disk_offering=disk_offering)
    volume = plan.volume
    if volume.state != VolumeState.ALLOCATED:
        return _resize_job(session, volume, plan)
    old = volume.size_bytes
    cas_volume(
        session,
        volume,
        VolumeState.ALLOCATED,
        size_bytes=plan.new_size,
        disk_offering_id=plan.offering_id,
    )
    record_event(
        session,
        caller,
        "VOLUME.RESIZE",
        "Volume",
        volume,
        f"grown from {old // GIB} GiB to {plan.new_size // GIB} GiB (not created yet)",
    )
    return volume


def _resize_job(session: Session, volume: Volume, plan: ResizePlan) -> VolumeJob:
    params = {"volume": volume.uuid, "size": plan.new_size, "offering": plan.offering_id}
    if volume.vm_id is not None:
        vm = session.get(VirtualMachine, volume.vm_id)
        assert vm is not None
        return VolumeJob("ResizeVolume", "VirtualMachine", vm.uuid, vm.name, params)
    return VolumeJob("ResizeVolume", "Volume", volume.uuid, volume.name, params)


def run_resize(
    caller: Caller,
    hosts: HostManager,
    volume_uuid: str,
    new_size: int,
    offering_id: int | None = None,
    *,
    step: Step = _no_step,
) -> Volume:
    """Claim the extra pool space, grow the file (blockResize for a running VM's disk,
    libvirt's volume resize otherwise), then record the size. A failure gives the space
    back and leaves the volume Ready at its old size."""
    db = caller.db
    with db.write() as session:
        volume = _live_volume(session, volume_uuid)
        if volume.state != VolumeState.READY or volume.pool_id is None:
            raise StateConflict(f"{label(volume)} is {volume.state}, not Ready on a pool")
        if new_size <= volume.size_bytes:
            raise InvalidParameter(
                f"{label(volume)}: cannot shrink or keep its size ({volume.size_bytes // GIB} "
                f"GiB -> {new_size // GIB} GiB)",
                field="size_bytes",
            )
        pool = session.get(StoragePool, volume.pool_id)
        assert pool is not None
        vm = session.get(VirtualMachine, volume.vm_id) if volume.vm_id else None
        extra = new_size - volume.size_bytes
        pool_space.grow_volume_space(session, volume, pool, extra, f"growing {label(volume)}")
        old = volume.size_bytes
        cas_volume(session, volume, VolumeState.READY, state=VolumeState.RESIZING)
        host = host_for(session, vm=vm, pool=pool)
    step("space_claimed", volume=volume.uuid, pool=pool.id, extra=extra, old=old)
    try:
        path = volume_file(pool, volume)
        if vm is not None and vm.state == VmState.RUNNING:
            host_disks.block_resize(hosts.for_host(host), vm.instance_name, path, new_size)
        else:
            hc = _connection(hosts, host, pool)
            host_storage.resize_volume(hc, pool.libvirt_pool_name, volume.path or "", new_size)
        with db.write() as session:
            values: dict[str, Any] = {"state": VolumeState.READY, "size_bytes": new_size}
            if offering_id is not None:
                values["disk_offering_id"] = offering_id
            cas_volume(session, volume, VolumeState.RESIZING, **values)
            record_event(
                session,
                caller,
                "VOLUME.RESIZE",
                "Volume",
                volume,
                f"grown from {old // GIB} GiB to {new_size // GIB} GiB"
                + (" (live)" if vm is not None and vm.state == VmState.RUNNING else ""),
            )
    except BaseException:
        with contextlib.suppress(Exception):
            undo_resize(db, volume.uuid, pool.id, extra)  # type: ignore[arg-type]
        raise
    return volume


def undo_resize(db: Database, volume_uuid: str, pool_id: int, extra: int) -> str:
    """A resize that did not complete: space given back, volume Ready at its old size.
    (Should the file have grown already, it is only larger than recorded: harmless.)"""
    with db.write() as session:
        volume = session.exec(select(Volume).where(Volume.uuid == volume_uuid)).first()
        if volume is None or volume.state != VolumeState.RESIZING:
            return "the resize had completed or was already undone"
        pool = session.get(StoragePool, pool_id)
        assert pool is not None
        pool_space.release_pool_space(session, pool_id, extra)
        _shrink_claim_row(session, volume, extra)
        cas_volume(session, volume, VolumeState.RESIZING, state=VolumeState.READY)
    return "gave the extra pool space back; the volume is Ready at its old size"


def _shrink_claim_row(session: Session, volume: Volume, extra: int) -> None:
    from engine.models import PlacementClaimVolume

    session.execute(
        update(PlacementClaimVolume)
        .where(col(PlacementClaimVolume.volume_id) == volume.id)
        .values(size_bytes=col(PlacementClaimVolume.size_bytes) - extra)
    )


# --- delete ----------------------------------------------------------------------------


def check_delete(session: Session, volume_ref: str) -> Volume:
    volume = _live_volume(session, volume_ref)
    what = label(volume)
    if volume.vm_id is not None:
        vm = session.get(VirtualMachine, volume.vm_id)
        raise InUse(
            f"{what} is attached to VM '{vm.name if vm else volume.vm_id}': detach it first",
            field="volume",
        )
    if volume.volume_type == VolumeType.ROOT:
        raise InvalidParameter(
            f"{what} is a root volume: it goes when its VM is expunged", field="volume"
        )
    if volume.state not in (VolumeState.ALLOCATED, VolumeState.READY, VolumeState.ERROR):
        raise StateConflict(f"{what} is {volume.state}; wait for its operation to finish")
    return volume


def begin_delete(session: Session, caller: Caller, volume_ref: str) -> Volume | VolumeJob:
    """Delete a detached data volume. One never created (Allocated) goes at once and is
    returned; one on a pool is moved to Expunging and its DeleteVolume job returned."""
    volume = check_delete(session, volume_ref)
    if volume.pool_id is None:
        cas_volume(session, volume, volume.state, state=VolumeState.EXPUNGED, removed=utcnow())
        record_event(session, caller, "VOLUME.DELETE", "Volume", volume, "deleted")
        return volume
    cas_volume(session, volume, volume.state, state=VolumeState.EXPUNGING)
    return VolumeJob("DeleteVolume", "Volume", volume.uuid, volume.name, {"volume": volume.uuid})


def run_delete(caller: Caller, hosts: HostManager, volume_uuid: str) -> Volume:
    """Remove an Expunging volume's file through libvirt (tolerating one already gone),
    give its pool space back and mark it Expunged. Safe to run again after a crash."""
    db = caller.db
    with db.read() as session:
        volume = resolve(session, Volume, volume_uuid, "volume", field="volume")
        if volume.state != VolumeState.EXPUNGING:
            raise StateConflict(f"{label(volume)} is {volume.state}, not Expunging")
        pool = session.get(StoragePool, volume.pool_id) if volume.pool_id else None
        host = host_for(session, vm=None, pool=pool) if pool is not None else None
    if pool is not None and host is not None and volume.path:
        host_storage.delete_volume(
            _connection(hosts, host, pool), pool.libvirt_pool_name, volume.path
        )
    with db.write() as session:
        pool_space.release_volume_space(session, volume)
        cas_volume(session, volume, VolumeState.EXPUNGING, state=VolumeState.EXPUNGED,
                   removed=utcnow())  # fmt: skip
        record_event(
            session,
            caller,
            "VOLUME.DELETE",
            "Volume",
            volume,
            f"deleted from primary storage '{pool.name}'" if pool else "deleted",
        )
    return volume


def fail_stuck_volume(db: Database, volume_uuid: str, reason: str) -> str:
    """Crash recovery for a volume job: a volume left Resizing goes back to Ready (see
    undo_resize for the space); one left Creating goes to Error."""
    with db.write() as session:
        volume = session.exec(select(Volume).where(Volume.uuid == volume_uuid)).first()
        if volume is None:
            return "the volume is gone"
        if volume.state == VolumeState.CREATING:
            cas_volume(session, volume, VolumeState.CREATING, state=VolumeState.ERROR)
            return f"volume '{volume.name}' was Creating: now Error ({reason})"
    return "nothing to move"


# --- the public entry points: validate, then queue the job -----------------------------


def submit_volume_job(caller: Caller, session: Session, job: VolumeJob):  # type: ignore[no-untyped-def]
    """Queue `job` in the caller's transaction (so a state change and its job commit
    together); returns the Job row."""
    from engine.jobs import submit_job

    return submit_job(
        caller,
        job.job_type,
        resource_type=job.resource_type,
        resource_uuid=job.resource_uuid,
        resource_name=job.resource_name,
        params=job.params,
        session=session,
    )


def attach_volume(caller: Caller, volume_ref: str, vm_ref: str):  # type: ignore[no-untyped-def]
    """Attach a data volume to a VM: an AttachVolume job (queued behind the VM's jobs)."""
    with caller.db.write() as session:
        return submit_volume_job(caller, session, begin_attach(session, volume_ref, vm_ref))


def detach_volume(caller: Caller, volume_ref: str):  # type: ignore[no-untyped-def]
    """Detach a data volume from its VM: a DetachVolume job."""
    with caller.db.write() as session:
        return submit_volume_job(caller, session, begin_detach(session, volume_ref))


def resize_volume(
    caller: Caller,
    volume_ref: str,
    *,
    size_bytes: int | None = None,
    disk_offering: str | None = None,
):  # type: ignore[no-untyped-def]
    """Grow a volume: done at once (the Volume) when it has no file yet, else a
    ResizeVolume job."""
    with caller.db.write() as session:
        result = begin_resize(
            session, caller, volume_ref, size_bytes=size_bytes, disk_offering=disk_offering
        )
        if isinstance(result, Volume):
            return result
        return submit_volume_job(caller, session, result)


def delete_volume(caller: Caller, volume_ref: str):  # type: ignore[no-untyped-def]
    """Delete a detached data volume: at once (the Volume) when it has no file, else a
    DeleteVolume job (the volume is Expunging meanwhile)."""
    with caller.db.write() as session:
        result = begin_delete(session, caller, volume_ref)
        if isinstance(result, Volume):
            return result
        return submit_volume_job(caller, session, result)


# --- what compute needs to define a VM's domain -----------------------------------------


@dataclass(frozen=True)
class VmDisk:
    """A disk of a VM as its domain should have it."""

    volume_uuid: str
    device_id: int
    target: str  # vda for the root disk; sdb, sdc ... (SCSI, hot-pluggable) for data disks
    path: str
    format: str  # qcow2 | raw


def disk_target(volume_type: str, device_id: int) -> str:
    """The guest device of a volume: the root disk on virtio, data disks on SCSI (see
    engine/hosts/disks.py for why), lettered by CloudStack's device id."""
    if volume_type == VolumeType.ROOT:
        return "vda"
    return f"sd{chr(ord('a') + device_id)}"


def vm_disks(db: Database, vm_ref: str) -> list[VmDisk]:
    """The VM's volumes that have a file (Ready, on a pool), root first, by device id."""
    with db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        rows = session.exec(
            select(Volume, StoragePool)
            .join(StoragePool, col(StoragePool.id) == Volume.pool_id)
            .where(Volume.vm_id == vm.id, col(Volume.removed).is_(None))
            .order_by(Volume.device_id)
        ).all()
    return [
        VmDisk(
            volume_uuid=volume.uuid,
            device_id=volume.device_id or 0,
            target=disk_target(volume.volume_type, volume.device_id or 0),
            path=volume_file(pool, volume),
            format="raw" if volume.format.lower() == "raw" else "qcow2",
        )
        for volume, pool in rows
        if volume.path and volume.state not in (VolumeState.ALLOCATED, VolumeState.EXPUNGED)
    ]
