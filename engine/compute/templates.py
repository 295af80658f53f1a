"""Where a template's file is in a zone, for the root volume of a deploy.

The storage package owns templates (`engine.storage.template_path_in_zone`); until it is
installed beside compute, the same lookup is made here from the Template, TemplateStoreRef
and ImageStore rows: a Ready copy on a file image store of the zone.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, col, select

from engine.db import Database
from engine.errors import InvalidParameter, NotFound
from engine.models import ImageStore, Template, TemplateState, TemplateStoreRef, Zone


def ready_copy(session: Session, template: Template, zone: Zone) -> TemplateStoreRef:
    """A Ready copy of the template on an image store of the zone, or InvalidParameter."""
    if template.state != TemplateState.READY or template.removed is not None:
        raise InvalidParameter(
            f"template '{template.name}' is {template.state}, not Ready", field="template"
        )
    ref = session.exec(
        select(TemplateStoreRef)
        .join(ImageStore, col(ImageStore.id) == TemplateStoreRef.store_id)
        .where(
            TemplateStoreRef.template_id == template.id,
            ImageStore.zone_id == zone.id,
            TemplateStoreRef.state == TemplateState.READY,
        )
        .order_by(col(TemplateStoreRef.store_id))
    ).first()
    if ref is None:
        raise InvalidParameter(
            f"template '{template.name}' is not Ready on any image store of zone '{zone.name}'",
            field="template",
        )
    return ref


def _store_root(store: ImageStore) -> Path:
    if store.protocol != "file" or not store.url.startswith("file://"):
        raise InvalidParameter(
            f"image store '{store.name}': {store.url} is not a local file store", field="template"
        )
    return Path(store.url[len("file://") :])


def template_file(db: Database, template_id: int, zone_id: int) -> tuple[Path, str]:
    """(path, format) of the template's Ready file in the zone, format 'qcow2' or 'raw'."""
    try:  # the storage package's own lookup, once it is installed
        from engine.storage import template_path_in_zone  # type: ignore[attr-defined]
    except ImportError:
        template_path_in_zone = None
    with db.read() as session:
        template = session.get(Template, template_id)
        zone = session.get(Zone, zone_id)
        if template is None or zone is None:
            raise NotFound(f"template #{template_id} or zone #{zone_id} no longer exists")
        if template_path_in_zone is not None:
            path, fmt = template_path_in_zone(db, template.uuid, zone.uuid)
            return Path(path), str(fmt).lower()
        ref = ready_copy(session, template, zone)
        store = session.get(ImageStore, ref.store_id)
        assert store is not None
        path = Path(ref.path)
        if not path.is_absolute():
            path = _store_root(store) / ref.path
        return path, template.format.lower()
