"""Secondary storage (image stores) as the storage services use it: where a zone's
templates, ISOs and snapshots live on disk, and the space they take.

A store's URL is `file:///path` (or a plain absolute path): a directory this management
server reaches directly (local disk or an NFS export mounted by the operator). Paths kept
in the database (TemplateStoreRef.path, Snapshot.path) are relative to the store's root.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import update
from sqlmodel import Session, col, select

from engine.errors import InsufficientCapacity, InvalidParameter, NotFound
from engine.hosts.images import SecondaryStorage, ensure_secondary_layout
from engine.models import ImageStore, Zone


def store_root(store: ImageStore) -> Path:
    label = f"image store '{store.name}'"
    if store.protocol != "file":
        raise InvalidParameter(
            f"{label}: {store.protocol} stores are not reached directly; mount the export "
            "and add it as a file:// store",
            field="store",
        )
    url = store.url
    path = unquote(urlsplit(url).path) if url.startswith("file://") else url
    if not path.startswith("/"):
        raise InvalidParameter(f"{label}: URL {url!r} is not an absolute path", field="store")
    return Path(path)


def secondary(store: ImageStore) -> SecondaryStorage:
    """The store's directory layout, created when missing."""
    return ensure_secondary_layout(store_root(store))


def absolute(store: ImageStore, relative: str) -> Path:
    return store_root(store) / relative


def relative_to_store(store: ImageStore, path: Path) -> str:
    return str(path.relative_to(store_root(store)))


def writable_store(session: Session, zone: Zone) -> ImageStore:
    """The zone's first image store (by creation) that takes new content."""
    stores = session.exec(
        select(ImageStore)
        .where(ImageStore.zone_id == zone.id, col(ImageStore.read_only).is_(False))
        .order_by(ImageStore.id)
    ).all()
    for store in stores:
        if store.protocol == "file":
            return store
    if stores:
        raise InvalidParameter(
            f"zone '{zone.name}': its image stores are {stores[0].protocol} stores; "
            "Stratus writes only to file:// stores (mount the export)",
            field="zone",
        )
    raise NotFound(
        f"zone '{zone.name}' has no writable secondary storage: add an image store first",
        field="zone",
    )


def stores_of_zone(session: Session, zone_id: int) -> list[ImageStore]:
    return list(
        session.exec(
            select(ImageStore).where(ImageStore.zone_id == zone_id).order_by(ImageStore.id)
        )
    )


def claim_store_space(session: Session, store: ImageStore, size_bytes: int, what: str) -> None:
    """Count `size_bytes` on the store; refused when a store with a capacity would overflow.

    One conditional UPDATE, so two copies racing for the last bytes cannot both win.
    """
    changed = session.execute(
        update(ImageStore)
        .where(
            col(ImageStore.id) == store.id,
            (col(ImageStore.capacity_bytes) == 0)
            | (col(ImageStore.used_bytes) + size_bytes <= col(ImageStore.capacity_bytes)),
        )
        .values(used_bytes=col(ImageStore.used_bytes) + size_bytes)
    ).rowcount
    if changed != 1:
        raise InsufficientCapacity(
            f"image store '{store.name}': no room for {what} ({size_bytes // 2**20} MiB); "
            f"{store.used_bytes // 2**20} of {store.capacity_bytes // 2**20} MiB are used",
            field="store",
        )


def release_store_space(session: Session, store_id: int, size_bytes: int) -> None:
    session.execute(
        update(ImageStore)
        .where(col(ImageStore.id) == store_id)
        .values(used_bytes=col(ImageStore.used_bytes) - size_bytes)
    )
