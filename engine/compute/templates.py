"""Templates as a deploy needs them: Ready in the VM's zone (checked before anything is
written), and the file to copy into the root volume (from engine.storage)."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, col, select

from engine.db import Database
from engine.errors import InvalidParameter, NotFound
from engine.models import ImageStore, Template, TemplateState, TemplateStoreRef, Zone
from engine.storage import template_path_in_zone


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


def template_file(db: Database, template_id: int, zone_id: int) -> tuple[Path, str]:
    """(path, format) of the template's Ready file in the zone (the storage service's
    lookup), format 'qcow2' or 'raw'."""
    with db.read() as session:
        template = session.get(Template, template_id)
        zone = session.get(Zone, zone_id)
        if template is None or zone is None:
            raise NotFound(f"template #{template_id} or zone #{zone_id} no longer exists")
    path, fmt = template_path_in_zone(db, template.uuid, zone.uuid)
    return Path(path), str(fmt).lower()
