"""Templates and ISOs: registration (file or upload stream), copies between zones, deletion.

CloudStack keeps templates and ISOs in one table (an ISO is a template of format ISO); so
does Stratus. A template's bytes live on its zones' secondary storage, one
TemplateStoreRef per copy; compute asks `template_path_in_zone` where to read it.

Registration copies the data onto the zone's image store with its checksum verified on the
way (`transfer.copy_verified`), inspects the result with `qemu-img info` (images with a
backing or external data file are refused, `engine.hosts.images.inspect_image`), and only
then writes the Template and its TemplateStoreRef, Ready, in one transaction: bad input,
a checksum mismatch or an unsafe image leave no row and no file behind.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.db import Database
from engine.errors import (
    InUse,
    InvalidParameter,
    NotFound,
    PermissionDenied,
    StateConflict,
    StratusError,
)
from engine.events import record_event
from engine.hosts.images import inspect_image
from engine.lookup import ensure_unique_name, resolve
from engine.models import (
    ImageFormat,
    ImageStore,
    Template,
    TemplateState,
    TemplateStoreRef,
    VirtualMachine,
    VmState,
    Volume,
    Zone,
    new_uuid,
    utcnow,
)
from engine.storage import stores
from engine.storage.ostypes import check_os_type
from engine.storage.transfer import (
    Checksum,
    Progress,
    copy_verified,
    parse_checksum,
    part_path,
)
from engine.validation import check_name, check_tags, check_text

log = logging.getLogger(__name__)

TEMPLATE_FORMATS = (ImageFormat.QCOW2, ImageFormat.RAW)
ISO_MAGIC_OFFSET = 0x8001  # ISO 9660: the primary volume descriptor's "CD001"


@dataclass(frozen=True)
class TemplateRequest:
    """A validated registration: everything but the data."""

    uuid: str
    name: str
    display_text: str
    format: str  # ImageFormat value
    os_type: str
    checksum: Checksum | None
    template_tag: str | None
    bootable: bool
    is_public: bool
    featured: bool

    @property
    def is_iso(self) -> bool:
        return self.format == ImageFormat.ISO

    @property
    def label(self) -> str:
        return f"{'ISO' if self.is_iso else 'template'} '{self.name}'"


def _check_format(label: str, value: object, *, iso: bool) -> str:
    if iso:
        return ImageFormat.ISO
    text = str(value or "").strip().upper()
    if text not in TEMPLATE_FORMATS:
        raise InvalidParameter(
            f"{label}: format {str(value)[:32]!r} is not QCOW2 or RAW (an ISO is registered "
            "with register_iso)",
            field="format",
        )
    return text


def check_template_request(
    name: str,
    *,
    iso: bool = False,
    format: str = "QCOW2",
    os_type: str = "Other Linux (64-bit)",
    checksum: str | None = None,
    display_text: str = "",
    template_tag: str | None = None,
    bootable: bool = True,
    is_public: bool = False,
    featured: bool = False,
    template_uuid: str | None = None,
) -> TemplateRequest:
    """Validate everything that needs no database; InvalidParameter names the field."""
    kind = "ISO" if iso else "template"
    name = check_name(f"{kind} '{name}'", name)
    label = f"{kind} '{name}'"
    tags = check_tags(label, template_tag, field="template_tag")
    if len(tags) > 1:
        raise InvalidParameter(f"{label}: a template takes one tag", field="template_tag")
    return TemplateRequest(
        uuid=template_uuid or new_uuid(),
        name=name,
        display_text=check_text(label, display_text or name, field="display_text"),
        format=_check_format(label, format, iso=iso),
        os_type=check_os_type(label, os_type),
        checksum=parse_checksum(label, checksum),
        template_tag=tags[0] if tags else None,
        bootable=bool(bootable),
        is_public=bool(is_public),
        featured=bool(featured),
    )


def data_path(store: ImageStore, request_uuid: str, fmt: str) -> Path:
    layout = stores.secondary(store)
    if fmt == ImageFormat.ISO:
        return layout.iso_path(request_uuid)
    return layout.template_path(request_uuid, fmt)


def remove_data(path: Path) -> None:
    """Remove a template's file, its partial copy and its own directory (tolerant)."""
    for item in (path, part_path(path)):
        with contextlib.suppress(FileNotFoundError):
            item.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty: the directory is the template's own


def _check_iso(label: str, path: Path) -> None:
    with path.open("rb") as data:
        data.seek(ISO_MAGIC_OFFSET)
        magic = data.read(5)
    if magic != b"CD001":
        raise InvalidParameter(
            f"{label}: the data is not an ISO 9660 image (no CD001 descriptor)", field="source"
        )


def _image_sizes(request: TemplateRequest, path: Path) -> tuple[int, int]:
    """(virtual size, physical size); refuses data that is not what it claims to be."""
    physical = path.stat().st_size
    if request.is_iso:
        _check_iso(request.label, path)
        return physical, physical
    info = inspect_image(path, request.format.lower())
    return info.virtual_size_bytes, physical


def _check_may_read_files(caller: Caller, label: str) -> None:
    # A path names a file on the management server itself: only an administrator may have
    # one read (anyone else uploads the data as a stream).
    if not caller.is_admin:
        raise PermissionDenied(
            f"{label}: only an administrator may register from a file on the management "
            "server; upload the data instead",
            field="source",
        )


def _open_source(
    caller: Caller, label: str, source: str | Path | BinaryIO
) -> tuple[BinaryIO, int | None, bool]:
    """(stream, size if known, whether we opened it and must close it)."""
    if isinstance(source, str | Path):
        _check_may_read_files(caller, label)
        path = Path(source)
        if not path.is_absolute():
            raise InvalidParameter(f"{label}: source {str(source)!r} is not an absolute path",
                                   field="source")  # fmt: skip
        if not path.is_file():
            raise NotFound(f"{label}: source {str(source)!r}: no such file", field="source")
        return path.open("rb"), path.stat().st_size, True
    if not hasattr(source, "read"):
        raise InvalidParameter(
            f"{label}: source must be a file path or a readable binary stream", field="source"
        )
    return source, None, False


def register_template(
    caller: Caller,
    name: str,
    *,
    zone: str,
    source: str | Path | BinaryIO,
    format: str = "QCOW2",
    os_type: str = "Other Linux (64-bit)",
    checksum: str | None = None,
    display_text: str = "",
    template_tag: str | None = None,
    bootable: bool = True,
    is_public: bool = False,
    featured: bool = False,
    size_bytes: int | None = None,
    template_uuid: str | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Template:
    """Register a template from a local file or an upload stream onto `zone`'s secondary
    storage; Ready when this returns. `size_bytes` is the stream's length when known (for
    progress)."""
    request = check_template_request(
        name,
        format=format,
        os_type=os_type,
        checksum=checksum,
        display_text=display_text,
        template_tag=template_tag,
        bootable=bootable,
        is_public=is_public,
        featured=featured,
        template_uuid=template_uuid,
    )
    return _register(caller, request, zone, source, size_bytes, progress, cancelled)


def register_iso(
    caller: Caller,
    name: str,
    *,
    zone: str,
    source: str | Path | BinaryIO,
    os_type: str = "Other Linux (64-bit)",
    checksum: str | None = None,
    display_text: str = "",
    bootable: bool = True,
    is_public: bool = False,
    featured: bool = False,
    size_bytes: int | None = None,
    template_uuid: str | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Template:
    """Register an ISO (format ISO) as `register_template` does a template."""
    request = check_template_request(
        name,
        iso=True,
        os_type=os_type,
        checksum=checksum,
        display_text=display_text,
        bootable=bootable,
        is_public=is_public,
        featured=featured,
        template_uuid=template_uuid,
    )
    return _register(caller, request, zone, source, size_bytes, progress, cancelled)


def _register(
    caller: Caller,
    request: TemplateRequest,
    zone_ref: str,
    source: str | Path | BinaryIO,
    size_bytes: int | None,
    progress: Progress | None,
    cancelled: Callable[[], bool] | None,
) -> Template:
    label = request.label
    with caller.db.read() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        store = stores.writable_store(session, zone)
        check_name_free(session, caller, request)
    stream, known_size, owned = _open_source(caller, label, source)
    dest = data_path(store, request.uuid, request.format)
    if dest.exists():
        raise StateConflict(f"{label}: {dest} already exists on image store '{store.name}'")
    try:
        copied = copy_verified(
            stream,
            dest,
            label=label,
            expected=request.checksum,
            total_bytes=known_size or size_bytes,
            progress=progress,
            cancelled=cancelled,
        )
    finally:
        if owned:
            stream.close()
    try:
        virtual, physical = _image_sizes(request, dest)
        with caller.db.write() as session:
            check_name_free(session, caller, request)
            template = add_ready_template(
                session,
                caller,
                request,
                store,
                dest,
                virtual=virtual,
                physical=physical,
                sha256=copied.sha256,
                how=f"registered {request.format} {virtual // 2**20} MiB ({request.os_type})",
            )
    except BaseException:
        remove_data(dest)
        raise
    return template


def add_ready_template(
    session: Session,
    caller: Caller,
    request: TemplateRequest,
    store: ImageStore,
    path: Path,
    *,
    virtual: int,
    physical: int,
    sha256: str,
    how: str,
) -> Template:
    """The rows of a template whose verified file is at `path` on `store`: the Template
    and its store copy, both Ready, the store's space counted, and the audit event."""
    stores.claim_store_space(session, store, physical, request.label)
    template = Template(
        uuid=request.uuid,
        name=request.name,
        display_text=request.display_text,
        account_id=caller.account_id,  # type: ignore[arg-type]
        domain_id=caller.domain_id,  # type: ignore[arg-type]
        format=request.format,
        os_type=request.os_type,
        size_bytes=virtual,
        physical_size_bytes=physical,
        checksum=f"sha256:{sha256}",
        template_tag=request.template_tag,
        bootable=request.bootable,
        is_public=request.is_public,
        featured=request.featured,
        state=TemplateState.READY,
    )
    session.add(template)
    session.flush()
    session.add(
        TemplateStoreRef(
            template_id=template.id,  # type: ignore[arg-type]
            store_id=store.id,  # type: ignore[arg-type]
            path=stores.relative_to_store(store, path),
            state=TemplateState.READY,
            progress=100,
            size_bytes=virtual,
            physical_size_bytes=physical,
        )
    )
    zone = session.get(Zone, store.zone_id)
    record_event(
        session,
        caller,
        "ISO.CREATE" if request.is_iso else "TEMPLATE.CREATE",
        "Iso" if request.is_iso else "Template",
        template,
        f"{how} on image store '{store.name}' of zone '{zone.name if zone else store.zone_id}'",
    )
    return template


def check_name_free(session: Session, caller: Caller, request: TemplateRequest) -> None:
    ensure_unique_name(session, Template, request.label, request.name, account_id=caller.account_id)


# --- register from a large local file, as a job ----------------------------------------


def submit_register_template(caller: Caller, name: str, *, zone: str, path: str, **options: Any):  # type: ignore[no-untyped-def]
    """Register from a (large) local file in a RegisterTemplate job; returns the Job.

    What can be checked without copying is checked now (the same errors as
    register_template); the job copies, verifies and writes the rows.
    """
    from engine.jobs import submit_job

    iso = bool(options.pop("iso", False))
    request = check_template_request(name, iso=iso, **_request_options(options))
    label = request.label
    _check_may_read_files(caller, label)
    source = Path(path)
    if not source.is_absolute() or not source.is_file():
        raise NotFound(f"{label}: source {path!r}: no such file (absolute path)", field="source")
    with caller.db.write() as session:
        zone_row = resolve(session, Zone, zone, "zone", field="zone")
        stores.writable_store(session, zone_row)
        check_name_free(session, caller, request)
        params = {
            "name": request.name,
            "zone": zone_row.uuid,
            "path": str(source),
            "iso": iso,
            "template_uuid": request.uuid,
            **{k: v for k, v in options.items() if v is not None},
        }
        return submit_job(
            caller,
            "RegisterIso" if iso else "RegisterTemplate",
            resource_type="Iso" if iso else "Template",
            resource_uuid=request.uuid,
            resource_name=request.name,
            params=params,
            session=session,
        )


OPTION_NAMES = (
    "format", "os_type", "checksum", "display_text", "template_tag", "bootable", "is_public",
    "featured",
)  # fmt: skip


def _request_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise InvalidParameter(
            f"template registration: unknown option(s) {', '.join(unknown)}", field=unknown[0]
        )
    return {k: v for k, v in options.items() if v is not None}


def run_register(caller: Caller, params: dict[str, Any], progress: Progress | None,
                 cancelled: Callable[[], bool] | None) -> Template:  # fmt: skip
    """The RegisterTemplate / RegisterIso job's work."""
    options = {k: v for k, v in params.items() if k in OPTION_NAMES}
    if params.get("iso"):
        options.pop("format", None)
        options.pop("template_tag", None)
        return register_iso(
            caller,
            params["name"],
            zone=params["zone"],
            source=params["path"],
            template_uuid=params["template_uuid"],
            progress=progress,
            cancelled=cancelled,
            **options,
        )
    return register_template(
        caller,
        params["name"],
        zone=params["zone"],
        source=params["path"],
        template_uuid=params["template_uuid"],
        progress=progress,
        cancelled=cancelled,
        **options,
    )


def remove_registration_leftovers(db: Database, params: dict[str, Any]) -> str:
    """Recover a registration whose process died: remove the partial file when no
    Template row was committed (a committed one is complete and stays)."""
    uuid = params.get("template_uuid", "")
    with db.read() as session:
        if session.exec(select(Template.id).where(Template.uuid == uuid)).first() is not None:
            return "the template had been registered; nothing to undo"
        zone = session.exec(select(Zone).where(Zone.uuid == params.get("zone"))).first()
        candidates = stores.stores_of_zone(session, zone.id) if zone and zone.id else []
    fmt = ImageFormat.ISO if params.get("iso") else str(params.get("format", "QCOW2")).upper()
    removed = 0
    for store in candidates:
        with contextlib.suppress(StratusError):
            path = data_path(store, uuid, fmt)
            if path.exists() or part_path(path).exists():
                remove_data(path)
                removed += 1
    return f"removed the partial copy of template {uuid}" if removed else "no partial copy left"


# --- lookups compute uses --------------------------------------------------------------


def template_path_in_zone(db: Database, template_ref: str, zone_ref: str) -> tuple[Path, str]:
    """The file of the template's Ready copy in the zone and its format ("qcow2", "raw",
    "iso"); NotFound / StateConflict saying why when there is none."""
    with db.read() as session:
        template = _live_template(session, template_ref)
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        rows = session.exec(
            select(TemplateStoreRef, ImageStore)
            .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
            .where(TemplateStoreRef.template_id == template.id, ImageStore.zone_id == zone.id)
            .order_by(ImageStore.id)
        ).all()
    label = _label(template)
    if template.state != TemplateState.READY:
        raise StateConflict(f"{label} is {template.state}, not Ready", field="template")
    for ref, store in rows:
        if ref.state == TemplateState.READY:
            return stores.absolute(store, ref.path), template.format.lower()
    if rows:
        ref = rows[0][0]
        detail = f" ({ref.progress}%)" if ref.state == TemplateState.DOWNLOADING else ""
        raise StateConflict(
            f"{label} is not Ready in zone '{zone.name}': its copy there is {ref.state}{detail}",
            field="template",
        )
    raise NotFound(
        f"{label} is not on the secondary storage of zone '{zone.name}': copy it there first",
        field="template",
    )


def _label(template: Template) -> str:
    return f"{'ISO' if template.format == ImageFormat.ISO else 'template'} '{template.name}'"


def _live_template(session: Session, ref: str) -> Template:
    template = resolve(session, Template, ref, "template", field="template")
    if template.removed is not None:
        raise NotFound(f"{_label(template)} was deleted", field="template")
    return template


def get_template(caller: Caller, template_ref: str) -> Template:
    with caller.db.read() as session:
        return _live_template(session, template_ref)


def list_templates(
    caller: Caller, *, zone: str | None = None, isos: bool | None = None
) -> list[Template]:
    """Live templates (isos=False), ISOs (True) or both (None), optionally those in a zone."""
    with caller.db.read() as session:
        query = select(Template).where(col(Template.removed).is_(None)).order_by(Template.name)
        if isos is not None:
            is_iso = col(Template.format) == ImageFormat.ISO
            query = query.where(is_iso if isos else ~is_iso)
        if zone is not None:
            zone_row = resolve(session, Zone, zone, "zone", field="zone")
            query = query.where(
                col(Template.id).in_(
                    select(TemplateStoreRef.template_id)
                    .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
                    .where(ImageStore.zone_id == zone_row.id)
                )
            )
        return list(session.exec(query))


def template_copies(caller: Caller, template_ref: str) -> list[tuple[TemplateStoreRef, ImageStore]]:
    with caller.db.read() as session:
        template = _live_template(session, template_ref)
        return list(
            session.exec(
                select(TemplateStoreRef, ImageStore)
                .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
                .where(TemplateStoreRef.template_id == template.id)
                .order_by(ImageStore.id)
            ).all()
        )


# --- copy to another zone --------------------------------------------------------------


@dataclass(frozen=True)
class CopyTarget:
    template_uuid: str
    template_name: str
    store_uuid: str
    zone_name: str


def prepare_template_copy(
    session: Session, caller: Caller, template_ref: str, zone_ref: str
) -> CopyTarget:
    """Validate a copy and mark the destination copy Downloading (0%), in `session`."""
    template = _live_template(session, template_ref)
    label = _label(template)
    zone = resolve(session, Zone, zone_ref, "zone", field="zone")
    if template.state != TemplateState.READY:
        raise StateConflict(f"{label} is {template.state}, not Ready", field="template")
    refs = session.exec(
        select(TemplateStoreRef, ImageStore)
        .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
        .where(TemplateStoreRef.template_id == template.id)
    ).all()
    if not any(ref.state == TemplateState.READY for ref, _ in refs):
        raise StateConflict(f"{label} has no Ready copy to copy from", field="template")
    in_zone = [ref for ref, store in refs if store.zone_id == zone.id]
    for ref in in_zone:
        if ref.state in (TemplateState.READY, TemplateState.DOWNLOADING):
            raise StateConflict(
                f"{label} is already {ref.state} in zone '{zone.name}'", field="zone"
            )
    store = stores.writable_store(session, zone)
    path = stores.relative_to_store(store, data_path(store, template.uuid, template.format))
    existing = next((ref for ref in in_zone if ref.store_id == store.id), None)
    if existing is not None:  # an earlier copy failed: start again
        changed = session.execute(
            update(TemplateStoreRef)
            .where(
                col(TemplateStoreRef.template_id) == template.id,
                col(TemplateStoreRef.store_id) == store.id,
                col(TemplateStoreRef.state) == existing.state,
            )
            .values(state=TemplateState.DOWNLOADING, progress=0, error=None, path=path)
        ).rowcount
        if changed != 1:
            raise StateConflict(f"{label}: its copy in zone '{zone.name}' changed meanwhile")
    else:
        session.add(
            TemplateStoreRef(
                template_id=template.id,  # type: ignore[arg-type]
                store_id=store.id,  # type: ignore[arg-type]
                path=path,
                state=TemplateState.DOWNLOADING,
                progress=0,
                size_bytes=template.size_bytes,
            )
        )
    record_event(
        session,
        caller,
        "ISO.COPY" if template.format == ImageFormat.ISO else "TEMPLATE.COPY",
        "Template",
        template,
        f"copy to image store '{store.name}' of zone '{zone.name}' started",
        state="Started",
    )
    return CopyTarget(template.uuid, template.name, store.uuid, zone.name)


def copy_template(caller: Caller, template_ref: str, zone_ref: str):  # type: ignore[no-untyped-def]
    """Copy a template or ISO to another zone's secondary storage: a CopyTemplate job."""
    from engine.jobs import submit_job

    with caller.db.write() as session:
        target = prepare_template_copy(session, caller, template_ref, zone_ref)
        return submit_job(
            caller,
            "CopyTemplate",
            resource_type="Template",
            resource_uuid=target.template_uuid,
            resource_name=target.template_name,
            params={"template": target.template_uuid, "store": target.store_uuid},
            session=session,
        )


def run_template_copy(
    caller: Caller,
    template_uuid: str,
    store_uuid: str,
    *,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Copy the bytes of a Ready copy to the destination store (chunked, with progress),
    re-verify the template's checksum, and mark the destination copy Ready. On failure the
    partial file is removed and the destination copy is left in Error with the reason."""
    db = caller.db
    with db.read() as session:
        template = resolve(session, Template, template_uuid, "template", field="template")
        dest_store = resolve(session, ImageStore, store_uuid, "image store", field="store")
        dest_ref = session.get(TemplateStoreRef, (template.id, dest_store.id))
        source = session.exec(
            select(TemplateStoreRef, ImageStore)
            .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
            .where(
                TemplateStoreRef.template_id == template.id,
                TemplateStoreRef.state == TemplateState.READY,
            )
            .order_by(ImageStore.id)
        ).first()
    label = _label(template)
    if dest_ref is None or dest_ref.state != TemplateState.DOWNLOADING:
        state = dest_ref.state if dest_ref else "missing"
        raise StateConflict(f"{label}: its copy on '{dest_store.name}' is {state}, not Downloading")
    dest = stores.absolute(dest_store, dest_ref.path)
    try:
        if source is None:
            raise StateConflict(f"{label} has no Ready copy to copy from")
        src = stores.absolute(source[1], source[0].path)
        expected = parse_checksum(label, template.checksum)
        shown = [0]

        def report(percent: int, message: str) -> None:
            if progress is not None:
                progress(percent, message)
            if percent - shown[0] >= 10 or percent == 100:
                shown[0] = percent
                _set_ref(db, template.id, dest_store.id, progress=percent)  # type: ignore[arg-type]

        with src.open("rb") as stream:
            copied = copy_verified(
                stream,
                dest,
                label=f"{label} copy to '{dest_store.name}'",
                expected=expected,
                total_bytes=src.stat().st_size,
                progress=report,
                cancelled=cancelled,
            )
        with db.write() as session:
            stores.claim_store_space(session, dest_store, copied.size_bytes, label)
            changed = session.execute(
                update(TemplateStoreRef)
                .where(
                    col(TemplateStoreRef.template_id) == template.id,
                    col(TemplateStoreRef.store_id) == dest_store.id,
                    col(TemplateStoreRef.state) == TemplateState.DOWNLOADING,
                )
                .values(
                    state=TemplateState.READY,
                    progress=100,
                    size_bytes=template.size_bytes,
                    physical_size_bytes=copied.size_bytes,
                    error=None,
                )
            ).rowcount
            if changed != 1:
                raise StateConflict(f"{label}: its copy on '{dest_store.name}' changed meanwhile")
            record_event(
                session,
                caller,
                "TEMPLATE.COPY",
                "Template",
                template,
                f"copied to image store '{dest_store.name}' ({copied.size_bytes // 2**20} MiB, "
                "checksum verified)",
            )
    except BaseException as exc:
        remove_data(dest)
        reason = str(exc) if isinstance(exc, StratusError) else f"{type(exc).__name__}: {exc}"
        _set_ref(db, template.id, dest_store.id, state=TemplateState.ERROR, error=reason[:4000])  # type: ignore[arg-type]
        raise
    return {"template": template.uuid, "store": dest_store.uuid, "bytes": copied.size_bytes}


def _set_ref(db: Database, template_id: int, store_id: int, **values: Any) -> None:
    with db.write() as session:
        session.execute(
            update(TemplateStoreRef)
            .where(
                col(TemplateStoreRef.template_id) == template_id,
                col(TemplateStoreRef.store_id) == store_id,
            )
            .values(**values)
        )


def fail_interrupted_copy(db: Database, template_uuid: str, store_uuid: str) -> str:
    """Recover a copy whose process died: partial file removed, the copy marked Error."""
    with db.read() as session:
        template = session.exec(select(Template).where(Template.uuid == template_uuid)).first()
        store = session.exec(select(ImageStore).where(ImageStore.uuid == store_uuid)).first()
        ref = session.get(TemplateStoreRef, (template.id, store.id)) if template and store else None
    if template is None or store is None or ref is None or ref.state != TemplateState.DOWNLOADING:
        return "no copy in progress to undo"
    remove_data(stores.absolute(store, ref.path))
    _set_ref(
        db,
        template.id,  # type: ignore[arg-type]
        store.id,  # type: ignore[arg-type]
        state=TemplateState.ERROR,
        error="the copy was interrupted (its management server stopped)",
    )
    return f"removed the partial copy on image store '{store.name}'"


# --- deletion --------------------------------------------------------------------------


def template_users(session: Session, template: Template) -> list[str]:
    """What still uses a template: live VMs (deployed from it or with it as ISO), volumes
    made from it, as "VM 'web-1'" / "volume 'ROOT-7'"."""
    users: list[str] = []
    vms = session.exec(
        select(VirtualMachine.name)
        .where(
            (col(VirtualMachine.template_id) == template.id)
            | (col(VirtualMachine.iso_id) == template.id),
            col(VirtualMachine.removed).is_(None),
            col(VirtualMachine.state) != VmState.EXPUNGED,
        )
        .order_by(VirtualMachine.name)
        .limit(6)
    ).all()
    users += [f"VM '{name}'" for name in vms]
    volumes = session.exec(
        select(Volume.name)
        .where(Volume.template_id == template.id, col(Volume.removed).is_(None))
        .order_by(Volume.name)
        .limit(6)
    ).all()
    users += [f"volume '{name}'" for name in volumes]
    return users


def delete_template(caller: Caller, template_ref: str, *, zone: str | None = None) -> None:
    """Delete a template or ISO (from every zone, or only from `zone`): refused while a VM
    or volume uses it; its files and store copies are removed."""
    with caller.db.write() as session:
        template = _live_template(session, template_ref)
        label = _label(template)
        users = template_users(session, template)
        if users:
            more = " and more" if len(users) > 5 else ""
            raise InUse(
                f"{label} is in use by {', '.join(users[:5])}{more}: destroy and expunge "
                "them first",
                field="template",
            )
        refs = session.exec(
            select(TemplateStoreRef, ImageStore)
            .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
            .where(TemplateStoreRef.template_id == template.id)
        ).all()
        if zone is not None:
            zone_row = resolve(session, Zone, zone, "zone", field="zone")
            refs = [(r, s) for r, s in refs if s.zone_id == zone_row.id]
            if not refs:
                raise NotFound(f"{label} is not in zone '{zone_row.name}'", field="zone")
        busy = [s.name for r, s in refs if r.state == TemplateState.DOWNLOADING]
        if busy:
            raise StateConflict(
                f"{label} is being copied to image store '{busy[0]}': wait for the copy",
                field="template",
            )
        files = [stores.absolute(store, ref.path) for ref, store in refs]
        for ref, store in refs:
            if ref.state == TemplateState.READY:
                stores.release_store_space(session, store.id, ref.physical_size_bytes)  # type: ignore[arg-type]
            session.execute(
                delete(TemplateStoreRef).where(
                    col(TemplateStoreRef.template_id) == template.id,
                    col(TemplateStoreRef.store_id) == store.id,
                )
            )
        remaining = session.exec(
            select(TemplateStoreRef.store_id).where(TemplateStoreRef.template_id == template.id)
        ).first()
        where = "everywhere"
        if remaining is None and not _referenced(session, template):
            session.delete(template)  # nothing points at it: its name is free again
        elif remaining is None:
            template.removed = utcnow()
            template.state = TemplateState.INACTIVE
            session.add(template)
        else:
            where = f"in zone '{zone}'"
        record_event(
            session,
            caller,
            "ISO.DELETE" if template.format == ImageFormat.ISO else "TEMPLATE.DELETE",
            "Template",
            template,
            f"deleted {where} ({len(files)} cop{'y' if len(files) == 1 else 'ies'})",
        )
    for path in files:
        remove_data(path)


def _referenced(session: Session, template: Template) -> bool:
    """Whether any row (even of an expunged VM) still points at the template."""
    vm = session.exec(
        select(VirtualMachine.id)
        .where(
            (col(VirtualMachine.template_id) == template.id)
            | (col(VirtualMachine.iso_id) == template.id)
        )
        .limit(1)
    ).first()
    volume = session.exec(
        select(Volume.id).where(Volume.template_id == template.id).limit(1)
    ).first()
    return vm is not None or volume is not None
