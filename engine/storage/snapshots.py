"""Volume snapshots on secondary storage, reverts, and templates from volumes or snapshots.

A snapshot is a full, self-contained qcow2 copy of the volume (`qemu-img convert` of the
volume's file) on the zone's image store, at `SecondaryStorage.snapshot_path`. The volume
must not be in use by a running guest: a copy of a disk that is being written is not
consistent, and Stratus has no guest agent to freeze it, so a running VM's volume is
refused with "stop VM first" (a live path would need an external disk snapshot and a
block commit afterwards).

Reading the volume's file and writing the store happen on this management server, which
must reach both (the all-in-one layout, or primary and secondary storage mounted here).
Every operation is a job; the `begin_*` functions validate and make the state changes
that commit with the job, the `run_*` functions do the work and undo it on failure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.db import Database
from engine.errors import InvalidParameter, NotFound, StateConflict, StratusError
from engine.events import record_event
from engine.hosts import disks as host_disks
from engine.hosts.errors import HypervisorError
from engine.hosts.images import inspect_image
from engine.lookup import resolve
from engine.models import (
    ImageStore,
    Snapshot,
    SnapshotState,
    StoragePool,
    Template,
    VirtualMachine,
    VmState,
    Volume,
    VolumeState,
    Zone,
    utcnow,
)
from engine.storage import stores, templates
from engine.storage.transfer import Progress, file_sha256
from engine.storage.volumes import VolumeJob, cas_volume, submit_volume_job, volume_file
from engine.validation import check_name

REVERTING = "Reverting"  # a volume whose content is being replaced from a snapshot
GIB = 2**30


def _label(snapshot: Snapshot) -> str:
    return f"snapshot '{snapshot.name}'"


def cas_snapshot(session: Session, snapshot: Snapshot, expected: str, **values: Any) -> None:
    changed = session.execute(
        update(Snapshot)
        .where(
            col(Snapshot.id) == snapshot.id,
            col(Snapshot.state) == expected,
            col(Snapshot.update_count) == snapshot.update_count,
        )
        .values(update_count=col(Snapshot.update_count) + 1, **values)
    ).rowcount
    if changed != 1:
        current = session.get(Snapshot, snapshot.id, populate_existing=True)
        now = current.state if current is not None else "gone"
        raise StateConflict(
            f"{_label(snapshot)} is {now}, not {expected}: it cannot become "
            f"{values.get('state', expected)}",
            field="snapshot",
        )
    for key, value in values.items():
        setattr(snapshot, key, value)
    snapshot.update_count += 1


def _volume_for_copy(session: Session, volume_ref: str, what: str) -> tuple[Volume, StoragePool]:
    """A volume whose file may be read or replaced now: Ready, on a pool, its VM stopped."""
    volume = resolve(session, Volume, volume_ref, "volume", field="volume")
    vlabel = f"volume '{volume.name}'"
    if volume.removed is not None:
        raise NotFound(f"{vlabel} was deleted", field="volume")
    if volume.state != VolumeState.READY or volume.pool_id is None or not volume.path:
        raise StateConflict(
            f"{vlabel} is {volume.state}: {what} needs a Ready volume on primary storage",
            field="volume",
        )
    if volume.vm_id is not None:
        vm = session.get(VirtualMachine, volume.vm_id)
        if vm is not None and vm.state != VmState.STOPPED:
            raise StateConflict(
                f"{vlabel} belongs to VM '{vm.name}', which is {vm.state}: stop VM first "
                f"({what} needs a volume no guest is writing)",
                field="volume",
            )
    pool = session.get(StoragePool, volume.pool_id)
    assert pool is not None
    return volume, pool


def _queue_on(session: Session, volume: Volume) -> tuple[str, str, str]:
    """(resource type, uuid, name) a job on this volume queues on: its VM's when attached,
    so that it never runs beside the VM's start."""
    if volume.vm_id is not None:
        vm = session.get(VirtualMachine, volume.vm_id)
        if vm is not None:
            return "VirtualMachine", vm.uuid, vm.name
    return "Volume", volume.uuid, volume.name


# --- create ----------------------------------------------------------------------------


def begin_snapshot(
    session: Session, caller: Caller, volume_ref: str, name: str | None = None
) -> VolumeJob:
    """Validate, add the Snapshot (Creating) and move the volume to Snapshotting."""
    volume, _pool = _volume_for_copy(session, volume_ref, "a snapshot")
    zone = session.get(Zone, volume.zone_id)
    assert zone is not None
    store = stores.writable_store(session, zone)
    stamp = utcnow().strftime("%Y%m%d%H%M%S")
    name = check_name(
        f"snapshot of volume '{volume.name}'", name or f"{volume.name}_{stamp}", field="name"
    )
    snapshot = Snapshot(
        name=name,
        account_id=volume.account_id,
        domain_id=volume.domain_id,
        zone_id=volume.zone_id,
        volume_id=volume.id,  # type: ignore[arg-type]
        store_id=store.id,
        size_bytes=volume.size_bytes,
        state=SnapshotState.CREATING,
    )
    session.add(snapshot)
    session.flush()
    layout = stores.secondary(store)
    snapshot.path = stores.relative_to_store(
        store, layout.snapshot_path(volume.uuid, snapshot.uuid)
    )
    cas_volume(session, volume, VolumeState.READY, state=VolumeState.SNAPSHOTTING)
    record_event(
        session,
        caller,
        "SNAPSHOT.CREATE",
        "Snapshot",
        snapshot,
        f"snapshot of volume '{volume.name}' to image store '{store.name}' started",
        state="Started",
    )
    rtype, ruuid, rname = _queue_on(session, volume)
    return VolumeJob("CreateSnapshot", rtype, ruuid, rname, {"snapshot": snapshot.uuid})


def create_snapshot(caller: Caller, volume_ref: str, name: str | None = None):  # type: ignore[no-untyped-def]
    """Snapshot a volume to secondary storage: a CreateSnapshot job."""
    with caller.db.write() as session:
        return submit_volume_job(caller, session, begin_snapshot(session, caller, volume_ref, name))


def _snapshot_files(session: Session, snapshot: Snapshot) -> tuple[ImageStore, Path]:
    store = session.get(ImageStore, snapshot.store_id)
    if store is None or not snapshot.path:
        raise StateConflict(f"{_label(snapshot)} has no file on secondary storage")
    return store, stores.absolute(store, snapshot.path)


def run_snapshot(
    caller: Caller, snapshot_uuid: str, *, progress: Progress | None = None
) -> Snapshot:
    """Copy the volume into the snapshot file; BackedUp, volume Ready again. On failure the
    file is removed, the snapshot is Error with the reason, the volume Ready."""
    db = caller.db
    with db.read() as session:
        snapshot = resolve(session, Snapshot, snapshot_uuid, "snapshot", field="snapshot")
        volume = session.get(Volume, snapshot.volume_id)
        assert volume is not None
        pool = session.get(StoragePool, volume.pool_id)
        store, dest = _snapshot_files(session, snapshot)
    if snapshot.state != SnapshotState.CREATING or volume.state != VolumeState.SNAPSHOTTING:
        raise StateConflict(
            f"{_label(snapshot)} is {snapshot.state} and its volume {volume.state}: nothing to copy"
        )
    try:
        assert pool is not None
        if progress:
            progress(5, f"copying volume '{volume.name}' to image store '{store.name}'")
        host_disks.convert_image(Path(volume_file(pool, volume)), volume.format.lower(), dest)
        info = inspect_image(dest, "qcow2")
        physical = dest.stat().st_size
        with db.write() as session:
            stores.claim_store_space(session, store, physical, _label(snapshot))
            cas_snapshot(
                session,
                snapshot,
                SnapshotState.CREATING,
                state=SnapshotState.BACKED_UP,
                size_bytes=info.virtual_size_bytes,
                physical_size_bytes=physical,
            )
            cas_volume(session, volume, VolumeState.SNAPSHOTTING, state=VolumeState.READY)
            record_event(
                session,
                caller,
                "SNAPSHOT.CREATE",
                "Snapshot",
                snapshot,
                f"backed up volume '{volume.name}' ({physical // 2**20} MiB on '{store.name}')",
            )
    except BaseException as exc:
        with contextlib.suppress(Exception):
            fail_snapshot(db, snapshot.uuid, _reason(exc))
        raise
    if progress:
        progress(100, "backed up")
    return snapshot


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, StratusError) else f"{type(exc).__name__}: {exc}"


def fail_snapshot(db: Database, snapshot_uuid: str, reason: str) -> str:
    """A snapshot that did not complete (or whose process died): file removed, Error, its
    volume Ready again."""
    with db.read() as session:
        snapshot = session.exec(select(Snapshot).where(Snapshot.uuid == snapshot_uuid)).first()
        if snapshot is None or snapshot.state != SnapshotState.CREATING:
            return "the snapshot was not being created; nothing to undo"
        _store, dest = _snapshot_files(session, snapshot)
    templates.remove_data(dest)
    with db.write() as session:
        cas_snapshot(
            session,
            snapshot,
            SnapshotState.CREATING,
            state=SnapshotState.ERROR,
            error=reason[:4000],
        )
        volume = session.get(Volume, snapshot.volume_id)
        if volume is not None and volume.state == VolumeState.SNAPSHOTTING:
            cas_volume(session, volume, VolumeState.SNAPSHOTTING, state=VolumeState.READY)
    return f"removed the partial snapshot file; snapshot '{snapshot.name}' is Error"


# --- delete ----------------------------------------------------------------------------


def begin_delete_snapshot(session: Session, caller: Caller, snapshot_ref: str) -> VolumeJob:
    snapshot = _live_snapshot(session, snapshot_ref)
    if snapshot.state not in (SnapshotState.BACKED_UP, SnapshotState.ERROR):
        raise StateConflict(
            f"{_label(snapshot)} is {snapshot.state}; wait for its operation to finish",
            field="snapshot",
        )
    previous = snapshot.state
    cas_snapshot(session, snapshot, previous, state=SnapshotState.DESTROYING)
    return VolumeJob(
        "DeleteSnapshot",
        "Snapshot",
        snapshot.uuid,
        snapshot.name,
        {"snapshot": snapshot.uuid, "was": previous},
    )


def delete_snapshot(caller: Caller, snapshot_ref: str):  # type: ignore[no-untyped-def]
    """Delete a snapshot and its file: a DeleteSnapshot job."""
    with caller.db.write() as session:
        return submit_volume_job(
            caller, session, begin_delete_snapshot(session, caller, snapshot_ref)
        )


def _live_snapshot(session: Session, ref: str) -> Snapshot:
    snapshot = resolve(session, Snapshot, ref, "snapshot", field="snapshot")
    if snapshot.removed is not None or snapshot.state == SnapshotState.DESTROYED:
        raise NotFound(f"{_label(snapshot)} was deleted", field="snapshot")
    return snapshot


def run_delete_snapshot(caller: Caller, snapshot_uuid: str, was: str) -> Snapshot:
    """Remove the file (tolerating one already gone), give the store space back, Destroyed.
    Idempotent, so crash recovery runs it again."""
    db = caller.db
    with db.read() as session:
        snapshot = resolve(session, Snapshot, snapshot_uuid, "snapshot", field="snapshot")
        if snapshot.state != SnapshotState.DESTROYING:
            raise StateConflict(f"{_label(snapshot)} is {snapshot.state}, not Destroying")
        store, path = _snapshot_files(session, snapshot)
    templates.remove_data(path)
    with db.write() as session:
        if was == SnapshotState.BACKED_UP:
            stores.release_store_space(session, store.id, snapshot.physical_size_bytes)  # type: ignore[arg-type]
        cas_snapshot(
            session,
            snapshot,
            SnapshotState.DESTROYING,
            state=SnapshotState.DESTROYED,
            removed=utcnow(),
        )
        record_event(session, caller, "SNAPSHOT.DELETE", "Snapshot", snapshot, "deleted")
    return snapshot


def list_snapshots(caller: Caller, *, volume: str | None = None) -> list[Snapshot]:
    with caller.db.read() as session:
        query = select(Snapshot).where(col(Snapshot.removed).is_(None)).order_by(Snapshot.id)
        if volume is not None:
            row = resolve(session, Volume, volume, "volume", field="volume")
            query = query.where(Snapshot.volume_id == row.id)
        return list(session.exec(query))


def get_snapshot(caller: Caller, snapshot_ref: str) -> Snapshot:
    with caller.db.read() as session:
        return _live_snapshot(session, snapshot_ref)


# --- revert ----------------------------------------------------------------------------


def begin_revert(session: Session, caller: Caller, snapshot_ref: str) -> VolumeJob:
    snapshot = _live_snapshot(session, snapshot_ref)
    if snapshot.state != SnapshotState.BACKED_UP:
        raise StateConflict(f"{_label(snapshot)} is {snapshot.state}, not BackedUp")
    volume_row = session.get(Volume, snapshot.volume_id)
    assert volume_row is not None
    volume, _pool = _volume_for_copy(session, volume_row.uuid, "a revert")
    cas_volume(session, volume, VolumeState.READY, state=REVERTING)
    record_event(
        session,
        caller,
        "SNAPSHOT.REVERT",
        "Snapshot",
        snapshot,
        f"revert of volume '{volume.name}' started",
        state="Started",
    )
    rtype, ruuid, rname = _queue_on(session, volume)
    return VolumeJob("RevertSnapshot", rtype, ruuid, rname, {"snapshot": snapshot.uuid})


def revert_snapshot(caller: Caller, snapshot_ref: str):  # type: ignore[no-untyped-def]
    """Replace the volume's content with the snapshot's (its VM stopped): a job."""
    with caller.db.write() as session:
        return submit_volume_job(caller, session, begin_revert(session, caller, snapshot_ref))


def run_revert(caller: Caller, snapshot_uuid: str, *, progress: Progress | None = None) -> Volume:
    """Write the snapshot into a new file beside the volume's and swap it in (the old
    content stays intact until the new one is complete); a volume grown since the
    snapshot keeps its size. The volume ends Ready whatever happens."""
    db = caller.db
    with db.read() as session:
        snapshot = resolve(session, Snapshot, snapshot_uuid, "snapshot", field="snapshot")
        _store, source = _snapshot_files(session, snapshot)
        volume = session.get(Volume, snapshot.volume_id)
        assert volume is not None
        pool = session.get(StoragePool, volume.pool_id)
        assert pool is not None
    if volume.state != REVERTING:
        raise StateConflict(f"volume '{volume.name}' is {volume.state}, not {REVERTING}")
    target = Path(volume_file(pool, volume))
    fresh = target.with_name(target.name + ".revert")
    try:
        if progress:
            progress(5, f"writing snapshot '{snapshot.name}' into volume '{volume.name}'")
        host_disks.convert_image(source, "qcow2", fresh, volume.format.lower())
        if volume.size_bytes > snapshot.size_bytes:
            _grow_file(fresh, volume.format.lower(), volume.size_bytes)
        with contextlib.suppress(OSError):
            stat = target.stat()
            os.chown(fresh, stat.st_uid, stat.st_gid)
            os.chmod(fresh, stat.st_mode & 0o7777)
        fresh.replace(target)
        with db.write() as session:
            cas_volume(session, volume, REVERTING, state=VolumeState.READY)
            record_event(
                session,
                caller,
                "SNAPSHOT.REVERT",
                "Snapshot",
                snapshot,
                f"volume '{volume.name}' reverted to the snapshot",
            )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        with contextlib.suppress(Exception):
            end_revert(db, volume.uuid)
        raise
    return volume


def end_revert(db: Database, volume_uuid: str) -> str:
    """A revert that did not complete: the volume (whose file was swapped only if the new
    content was complete) goes back to Ready."""
    with db.write() as session:
        volume = session.exec(select(Volume).where(Volume.uuid == volume_uuid)).first()
        if volume is None or volume.state != REVERTING:
            return "the volume was not being reverted"
        pool = session.get(StoragePool, volume.pool_id) if volume.pool_id else None
        cas_volume(session, volume, REVERTING, state=VolumeState.READY)
    if pool is not None and volume.path:
        # New content that was not swapped in yet (the old content is intact).
        for suffix in (".revert", ".revert.part"):
            with contextlib.suppress(FileNotFoundError):
                Path(volume_file(pool, volume) + suffix).unlink()
    return f"volume '{volume.name}' is Ready again"


def _grow_file(path: Path, fmt: str, size_bytes: int) -> None:
    done = subprocess.run(
        ["qemu-img", "resize", "-q", "-f", fmt, str(path), str(size_bytes)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise HypervisorError(f"qemu-img resize {path}: {' '.join(done.stderr.split())}")


# --- templates from a volume or a snapshot ---------------------------------------------


@dataclass(frozen=True)
class _Source:
    kind: str  # "volume" | "snapshot"
    uuid: str


def begin_template_from(
    session: Session,
    caller: Caller,
    name: str,
    *,
    volume: str | None = None,
    snapshot: str | None = None,
    **options: Any,
) -> VolumeJob:
    """Validate a template made from a volume (its VM stopped) or a snapshot."""
    if (volume is None) == (snapshot is None):
        raise InvalidParameter(
            f"template '{name}': give a volume or a snapshot to make it from", field="volume"
        )
    request = templates.check_template_request(name, **options)
    templates.check_name_free(session, caller, request)
    if snapshot is not None:
        snap = _live_snapshot(session, snapshot)
        if snap.state != SnapshotState.BACKED_UP:
            raise StateConflict(f"{_label(snap)} is {snap.state}, not BackedUp", field="snapshot")
        zone = session.get(Zone, snap.zone_id)
        source = _Source("snapshot", snap.uuid)
        queue = ("Snapshot", snap.uuid, snap.name)
    else:
        vol, _pool = _volume_for_copy(session, volume or "", "a template")
        zone = session.get(Zone, vol.zone_id)
        cas_volume(session, vol, VolumeState.READY, state=VolumeState.SNAPSHOTTING)
        source = _Source("volume", vol.uuid)
        queue = _queue_on(session, vol)
    assert zone is not None
    stores.writable_store(session, zone)
    params = {
        "name": request.name,
        "template_uuid": request.uuid,
        "source": source.kind,
        "source_uuid": source.uuid,
        "zone": zone.uuid,
        **{k: v for k, v in options.items() if v is not None},
    }
    return VolumeJob("CreateTemplate", queue[0], queue[1], queue[2], params)


def create_template_from(
    caller: Caller,
    name: str,
    *,
    volume: str | None = None,
    snapshot: str | None = None,
    **options: Any,
):  # type: ignore[no-untyped-def]
    """A new template (Ready on the zone's image store) from a volume or a snapshot: a
    CreateTemplate job. Options are register_template's (os_type, display_text ...)."""
    with caller.db.write() as session:
        job = begin_template_from(
            session, caller, name, volume=volume, snapshot=snapshot, **options
        )
        return submit_volume_job(caller, session, job)


def run_template_from(
    caller: Caller, params: dict[str, Any], *, progress: Progress | None = None
) -> Template:
    db = caller.db
    options = {k: v for k, v in params.items() if k in templates.OPTION_NAMES}
    request = templates.check_template_request(
        params["name"], template_uuid=params["template_uuid"], **options
    )
    with db.read() as session:
        zone = resolve(session, Zone, params["zone"], "zone", field="zone")
        store = stores.writable_store(session, zone)
        if params["source"] == "snapshot":
            snap = resolve(session, Snapshot, params["source_uuid"], "snapshot", field="snapshot")
            _s, source = _snapshot_files(session, snap)
            source_format, what = "qcow2", f"snapshot '{snap.name}'"
            volume = None
        else:
            volume = resolve(session, Volume, params["source_uuid"], "volume", field="volume")
            pool = session.get(StoragePool, volume.pool_id)
            assert pool is not None
            source = Path(volume_file(pool, volume))
            source_format, what = volume.format.lower(), f"volume '{volume.name}'"
    dest = templates.data_path(store, request.uuid, request.format)
    try:
        if volume is not None and volume.state != VolumeState.SNAPSHOTTING:
            raise StateConflict(f"volume '{volume.name}' is {volume.state}, not Snapshotting")
        if progress:
            progress(5, f"copying {what} to image store '{store.name}'")
        host_disks.convert_image(source, source_format, dest, request.format.lower())
        info = inspect_image(dest, request.format.lower())
        physical = dest.stat().st_size
        digest = file_sha256(dest)
        with db.write() as session:
            templates.check_name_free(session, caller, request)
            template = templates.add_ready_template(
                session,
                caller,
                request,
                store,
                dest,
                virtual=info.virtual_size_bytes,
                physical=physical,
                sha256=digest,
                how=f"created from {what}",
            )
            if volume is not None:
                cas_volume(session, volume, VolumeState.SNAPSHOTTING, state=VolumeState.READY)
    except BaseException:
        templates.remove_data(dest)
        if volume is not None:
            with contextlib.suppress(Exception):
                end_template_from(db, params)
        raise
    if progress:
        progress(100, "template Ready")
    return template


def end_template_from(db: Database, params: dict[str, Any]) -> str:
    """A template from a volume that did not complete: its volume Ready again (the
    partial file is removed by the caller, or here after a crash)."""
    done = []
    with db.read() as session:
        committed = session.exec(
            select(Template.id).where(Template.uuid == params.get("template_uuid"))
        ).first()
        zone = session.exec(select(Zone).where(Zone.uuid == params.get("zone"))).first()
        candidates = stores.stores_of_zone(session, zone.id) if zone and zone.id else []
    if committed is None:
        for store in candidates:
            with contextlib.suppress(StratusError):
                fmt = str(params.get("format") or "QCOW2").upper()
                templates.remove_data(templates.data_path(store, params["template_uuid"], fmt))
        done.append("removed any partial template file")
    if params.get("source") == "volume":
        with db.write() as session:
            volume = session.exec(
                select(Volume).where(Volume.uuid == params.get("source_uuid"))
            ).first()
            if volume is not None and volume.state == VolumeState.SNAPSHOTTING:
                cas_volume(session, volume, VolumeState.SNAPSHOTTING, state=VolumeState.READY)
                done.append(f"volume '{volume.name}' is Ready again")
    return "; ".join(done) or "nothing to undo"
