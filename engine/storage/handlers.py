"""The storage job types: what each runs, and how a run whose process died is undone.

Imported by every JobRunner at start (engine.jobs.registry.HANDLER_MODULES).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from engine.errors import StratusError
from engine.hosts.manager import HostManager
from engine.jobs import JobContext, register_handler
from engine.models import Snapshot, Volume
from engine.storage import snapshots, templates, volumes


def _hosts(ctx: JobContext) -> HostManager:
    if ctx.hosts is None:
        raise StratusError(f"job {ctx.job_type}: this job runner has no host manager")
    return ctx.hosts


# --- templates -------------------------------------------------------------------------


def _register(ctx: JobContext) -> dict[str, Any]:
    template = templates.run_register(ctx.caller, ctx.params, ctx.progress, ctx.cancelled)
    return {"template": template.uuid, "size_bytes": template.size_bytes}


def _register_recover(ctx: JobContext) -> str:
    return templates.remove_registration_leftovers(ctx.db, ctx.params)


def _copy(ctx: JobContext) -> dict[str, Any]:
    return templates.run_template_copy(
        ctx.caller,
        ctx.params["template"],
        ctx.params["store"],
        progress=ctx.progress,
        cancelled=ctx.cancelled,
    )


def _copy_recover(ctx: JobContext) -> str:
    return templates.fail_interrupted_copy(ctx.db, ctx.params["template"], ctx.params["store"])


# --- volumes ---------------------------------------------------------------------------


def _attach(ctx: JobContext) -> dict[str, Any]:
    ctx.progress(10, "creating or attaching the volume")
    volume = volumes.run_attach(
        ctx.caller, _hosts(ctx), ctx.params["volume"], ctx.params["vm"], step=ctx.record_step
    )
    return {"volume": volume.uuid, "device_id": volume.device_id, "pool_id": volume.pool_id}


def _attach_recover(ctx: JobContext) -> str:
    return volumes.undo_attach(
        ctx.db, _hosts(ctx), ctx.params["volume"], ctx.params["vm"], ctx.steps
    )


def _detach(ctx: JobContext) -> dict[str, Any]:
    volume = volumes.run_detach(ctx.caller, _hosts(ctx), ctx.params["volume"], step=ctx.record_step)
    return {"volume": volume.uuid}


def _detach_recover(ctx: JobContext) -> str:
    # Nothing transitional: the volume stayed attached in the database; running the
    # detach again finishes it (unplugging is idempotent).
    return "the volume is still attached in the database; detach it again"


def _resize(ctx: JobContext) -> dict[str, Any]:
    volume = volumes.run_resize(
        ctx.caller,
        _hosts(ctx),
        ctx.params["volume"],
        int(ctx.params["size"]),
        ctx.params.get("offering"),
        step=ctx.record_step,
    )
    return {"volume": volume.uuid, "size_bytes": volume.size_bytes}


def _resize_recover(ctx: JobContext) -> str:
    for name, data in ctx.steps:
        if name == "space_claimed":
            return volumes.undo_resize(ctx.db, data["volume"], data["pool"], data["extra"])
    return "nothing had been claimed"


def _delete(ctx: JobContext) -> dict[str, Any]:
    volume = volumes.run_delete(ctx.caller, _hosts(ctx), ctx.params["volume"])
    return {"volume": volume.uuid}


def _delete_recover(ctx: JobContext) -> str:
    # Deleting is idempotent: finish it rather than leave the volume Expunging.
    try:
        volumes.run_delete(ctx.caller, _hosts(ctx), ctx.params["volume"])
    except StratusError as exc:
        return volumes.fail_stuck_volume(ctx.db, ctx.params["volume"], str(exc))
    return "finished deleting the volume"


# --- snapshots and templates from them -------------------------------------------------


def _snapshot(ctx: JobContext) -> dict[str, Any]:
    snapshot = snapshots.run_snapshot(ctx.caller, ctx.params["snapshot"], progress=ctx.progress)
    return {"snapshot": snapshot.uuid, "physical_size_bytes": snapshot.physical_size_bytes}


def _snapshot_recover(ctx: JobContext) -> str:
    return snapshots.fail_snapshot(
        ctx.db, ctx.params["snapshot"], "interrupted: its management server stopped"
    )


def _delete_snapshot(ctx: JobContext) -> dict[str, Any]:
    snapshot = snapshots.run_delete_snapshot(ctx.caller, ctx.params["snapshot"], ctx.params["was"])
    return {"snapshot": snapshot.uuid}


def _delete_snapshot_recover(ctx: JobContext) -> str:
    snapshots.run_delete_snapshot(ctx.caller, ctx.params["snapshot"], ctx.params["was"])
    return "finished deleting the snapshot"


def _revert(ctx: JobContext) -> dict[str, Any]:
    volume = snapshots.run_revert(ctx.caller, ctx.params["snapshot"], progress=ctx.progress)
    return {"volume": volume.uuid}


def _revert_recover(ctx: JobContext) -> str:
    with ctx.db.read() as session:
        row = session.exec(
            select(Volume.uuid)
            .join(Snapshot, Snapshot.volume_id == Volume.id)
            .where(Snapshot.uuid == ctx.params["snapshot"])
        ).first()
    return snapshots.end_revert(ctx.db, row) if row else "the volume is gone"


def _template_from(ctx: JobContext) -> dict[str, Any]:
    template = snapshots.run_template_from(ctx.caller, ctx.params, progress=ctx.progress)
    return {"template": template.uuid, "size_bytes": template.size_bytes}


def _template_from_recover(ctx: JobContext) -> str:
    return snapshots.end_template_from(ctx.db, ctx.params)


register_handler("RegisterTemplate", _register, recover=_register_recover)
register_handler("RegisterIso", _register, recover=_register_recover)
register_handler("CopyTemplate", _copy, recover=_copy_recover)
register_handler("AttachVolume", _attach, recover=_attach_recover)
register_handler("DetachVolume", _detach, recover=_detach_recover)
register_handler("ResizeVolume", _resize, recover=_resize_recover)
register_handler("DeleteVolume", _delete, recover=_delete_recover)
register_handler("CreateSnapshot", _snapshot, recover=_snapshot_recover)
register_handler("DeleteSnapshot", _delete_snapshot, recover=_delete_snapshot_recover)
register_handler("RevertSnapshot", _revert, recover=_revert_recover)
register_handler("CreateTemplate", _template_from, recover=_template_from_recover)
