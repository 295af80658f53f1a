"""Primary storage space of volumes that placement did not claim (user data volumes).

Placement counts the volumes of a VM it places in its claim tables and gives that space
back on destroy. Volumes the storage services create, grow or delete on their own adjust
StoragePool.allocated_bytes here, with the same conditional UPDATE placement uses: the
pool must be Up, under its used-capacity threshold, and stay within capacity x
overprovisioning x allocated threshold, all re-checked in SQL at the moment of the claim.

A volume that placement claimed (a PlacementClaimVolume row names it) keeps its space in
the claim: growing it grows the claim's row, and deleting or detaching it takes the row
out of the claim (detached, it is a standalone volume whose space this module owns).
"""

from __future__ import annotations

from sqlalchemy import delete, text, update
from sqlmodel import Session, col, select

from engine.errors import InsufficientCapacity
from engine.models import PlacementClaimVolume, StoragePool, Volume
from engine.settings import global_values

GIB = 2**30

_CLAIM = text(
    """
UPDATE storagepool SET allocated_bytes = allocated_bytes + :size
WHERE id = :id AND status = 'Up'
  AND used_bytes <= capacity_bytes * coalesce(capacity_disable_threshold, :gct)
  AND allocated_bytes + :size <= capacity_bytes * coalesce(overprovisioning_factor, :gof)
      * coalesce(allocated_disable_threshold, :gat)
"""
)

_SETTINGS = (
    "storage.overprovisioning.factor",
    "pool.storage.capacity.disablethreshold",
    "pool.storage.allocated.capacity.disablethreshold",
)


def claim_pool_space(session: Session, pool: StoragePool, size_bytes: int, what: str) -> None:
    """Add `size_bytes` to the pool's allocation, or InsufficientCapacity saying why not."""
    if size_bytes <= 0:
        return
    values = global_values(session, list(_SETTINGS))
    changed = session.execute(
        _CLAIM,
        {
            "size": size_bytes,
            "id": pool.id,
            "gof": values["storage.overprovisioning.factor"],
            "gct": values["pool.storage.capacity.disablethreshold"],
            "gat": values["pool.storage.allocated.capacity.disablethreshold"],
        },
    ).rowcount
    if changed == 1:
        return
    current = session.get(StoragePool, pool.id, populate_existing=True)
    assert current is not None
    factor = current.overprovisioning_factor or float(values["storage.overprovisioning.factor"])
    threshold = current.allocated_disable_threshold or float(
        values["pool.storage.allocated.capacity.disablethreshold"]
    )
    limit = int(current.capacity_bytes * factor * threshold)
    if current.status != "Up":
        reason = f"it is {current.status}"
    else:
        reason = (
            f"{current.allocated_bytes // GIB} GiB of {limit // GIB} GiB allocatable are "
            f"allocated (or it is past its used-capacity threshold)"
        )
    raise InsufficientCapacity(
        f"primary storage '{current.name}': no room for {what} ({size_bytes / GIB:g} GiB): "
        f"{reason}",
        field="pool",
    )


def release_pool_space(session: Session, pool_id: int, size_bytes: int) -> None:
    if size_bytes > 0:
        session.execute(
            update(StoragePool)
            .where(col(StoragePool.id) == pool_id)
            .values(allocated_bytes=col(StoragePool.allocated_bytes) - size_bytes)
        )


def _claimed_row(session: Session, volume: Volume) -> PlacementClaimVolume | None:
    return session.exec(
        select(PlacementClaimVolume).where(PlacementClaimVolume.volume_id == volume.id)
    ).first()


def grow_volume_space(
    session: Session, volume: Volume, pool: StoragePool, extra_bytes: int, what: str
) -> None:
    """Claim the extra space of a growing volume (in its placement claim if it has one)."""
    claim_pool_space(session, pool, extra_bytes, what)
    row = _claimed_row(session, volume)
    if row is not None:
        session.execute(
            update(PlacementClaimVolume)
            .where(
                col(PlacementClaimVolume.claim_id) == row.claim_id,
                col(PlacementClaimVolume.position) == row.position,
            )
            .values(size_bytes=col(PlacementClaimVolume.size_bytes) + extra_bytes)
        )


def release_volume_space(session: Session, volume: Volume) -> None:
    """Give back the space of a volume leaving its pool (deleted): from its placement claim
    when it has one, else from the pool directly."""
    if volume.pool_id is None:
        return
    row = _claimed_row(session, volume)
    if row is not None:
        release_pool_space(session, row.pool_id, row.size_bytes)
        _drop_claim_row(session, row)
    else:
        release_pool_space(session, volume.pool_id, volume.size_bytes)


def take_out_of_claim(session: Session, volume: Volume) -> None:
    """A volume detached from its VM keeps its space, now as a standalone volume: it must
    not be given back when the VM's claim is released."""
    row = _claimed_row(session, volume)
    if row is not None:
        # The claim gave `row.size_bytes`; the volume holds `volume.size_bytes` from now on.
        release_pool_space(session, row.pool_id, row.size_bytes - volume.size_bytes)
        _drop_claim_row(session, row)


def _drop_claim_row(session: Session, row: PlacementClaimVolume) -> None:
    session.execute(
        delete(PlacementClaimVolume).where(
            col(PlacementClaimVolume.claim_id) == row.claim_id,
            col(PlacementClaimVolume.position) == row.position,
        )
    )
