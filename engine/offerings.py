"""Service offerings (CPU, speed, memory, host tags) and disk offerings (size, storage tags)."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from engine import custom_sizes
from engine.context import Caller
from engine.errors import InvalidParameter
from engine.events import record_event
from engine.lookup import apply_rename, ensure_unique_name, reject_unknown_fields, resolve
from engine.models import DiskOffering, ServiceOffering
from engine.validation import check_count, check_name, check_tags, check_text

PLANNERS = ("FirstFitPlanner", "UserDispersingPlanner", "UserConcentratedPodPlanner")
PROVISIONING_TYPES = ("thin", "sparse", "fat")
MIB = 2**20
GIB = 2**30


def tag_list(tags: str) -> list[str]:
    """The tags of an offering as a list (they are stored comma-separated)."""
    return [t for t in tags.split(",") if t]


def _check_planner(label: str, planner: str | None) -> str | None:
    if planner in (None, ""):
        return None
    if planner not in PLANNERS:
        raise InvalidParameter(
            f"{label}: deployment planner {planner!r} is not one of {', '.join(PLANNERS)}",
            field="deployment_planner",
        )
    return planner


def create_service_offering(
    caller: Caller,
    name: str,
    *,
    cpu_count: int,
    cpu_mhz: int,
    memory_bytes: int,
    display_text: str = "",
    host_tags: list[str] | str | None = None,
    storage_tags: list[str] | str | None = None,
    offer_ha: bool = False,
    limit_cpu_use: bool = False,
    deployment_planner: str | None = None,
    customized: bool = False,
    min_cpu_count: int | None = None,
    max_cpu_count: int | None = None,
    min_cpu_mhz: int | None = None,
    max_cpu_mhz: int | None = None,
    min_memory_bytes: int | None = None,
    max_memory_bytes: int | None = None,
) -> ServiceOffering:
    """A service offering. `customized`: each VM gives its own sizes within the min/max
    limits (engine.custom_sizes); cpu_count, cpu_mhz and memory_bytes are then defaults."""
    name = check_name(f"service offering '{name}'", name)
    label = f"service offering '{name}'"
    offering = ServiceOffering(
        name=name,
        display_text=check_text(label, display_text or name, field="display_text"),
        cpu_count=check_count(label, cpu_count, field="cpu_count", what="CPU count"),
        cpu_mhz=check_count(label, cpu_mhz, field="cpu_mhz", what="CPU speed (MHz)"),
        memory_bytes=check_count(label, memory_bytes, field="memory_bytes", what="memory (bytes)"),
        host_tags=",".join(check_tags(label, host_tags, field="host_tags")),
        storage_tags=",".join(check_tags(label, storage_tags, field="storage_tags")),
        offer_ha=bool(offer_ha),
        limit_cpu_use=bool(limit_cpu_use),
        deployment_planner=_check_planner(label, deployment_planner),
    )
    if offering.memory_bytes < 32 * MIB:
        raise InvalidParameter(
            f"{label}: memory must be at least 32 MiB, got {offering.memory_bytes // MIB} MiB",
            field="memory_bytes",
        )
    limits = {
        "cpu_count": (min_cpu_count, max_cpu_count),
        "cpu_mhz": (min_cpu_mhz, max_cpu_mhz),
        "memory_bytes": (min_memory_bytes, max_memory_bytes),
    }
    if customized:
        custom_sizes.check_limits(
            label, (offering.cpu_count, offering.cpu_mhz, offering.memory_bytes), limits
        )
        offering.is_customized = True
        for field, (low, high) in limits.items():
            setattr(offering, f"min_{field}", low)
            setattr(offering, f"max_{field}", high)
    elif any(v is not None for pair in limits.values() for v in pair):
        raise InvalidParameter(
            f"{label}: size limits are for a customized offering only", field="customized"
        )
    with caller.db.write() as session:
        ensure_unique_name(session, ServiceOffering, label, name)
        session.add(offering)
        session.flush()
        record_event(
            session,
            caller,
            "SERVICE.OFFERING.CREATE",
            "ServiceOffering",
            offering,
            f"{offering.cpu_count} x {offering.cpu_mhz} MHz, {offering.memory_bytes // MIB} MiB",
        )
    return offering


SERVICE_OFFERING_FIELDS = {"name", "display_text", "host_tags", "storage_tags", "state"}


def update_service_offering(caller: Caller, offering_ref: str, **changes: Any) -> ServiceOffering:
    """Rename, retag or (de)activate; sizes are fixed once VMs may use the offering."""
    with caller.db.write() as session:
        offering = resolve(
            session, ServiceOffering, offering_ref, "service offering", field="offering"
        )
        label = f"service offering '{offering.name}'"
        reject_unknown_fields(label, changes, SERVICE_OFFERING_FIELDS)
        apply_rename(session, offering, label, changes)
        if "display_text" in changes:
            offering.display_text = check_text(label, changes["display_text"], field="display_text")
        for key in ("host_tags", "storage_tags"):
            if key in changes:
                setattr(offering, key, ",".join(check_tags(label, changes[key], field=key)))
        if "state" in changes:
            offering.state = _check_offering_state(label, changes["state"])
        session.add(offering)
        record_event(
            session,
            caller,
            "SERVICE.OFFERING.EDIT",
            "ServiceOffering",
            offering,
            f"changed {', '.join(sorted(changes))}",
        )
    return offering


def _check_offering_state(label: str, state: str) -> str:
    if state not in ("Active", "Inactive"):
        raise InvalidParameter(f"{label}: state {state!r} is not Active or Inactive", field="state")
    return state


def list_service_offerings(caller: Caller, *, active_only: bool = False) -> list[ServiceOffering]:
    with caller.db.read() as session:
        query = select(ServiceOffering).order_by(
            ServiceOffering.cpu_count, ServiceOffering.memory_bytes, ServiceOffering.name
        )
        if active_only:
            query = query.where(ServiceOffering.state == "Active")
        return list(session.exec(query))


def get_service_offering(caller: Caller, offering_ref: str) -> ServiceOffering:
    with caller.db.read() as session:
        return resolve(session, ServiceOffering, offering_ref, "service offering", field="offering")


def delete_service_offering(caller: Caller, offering_ref: str) -> None:
    with caller.db.write() as session:
        offering = resolve(
            session, ServiceOffering, offering_ref, "service offering", field="offering"
        )
        session.delete(offering)
        record_event(
            session,
            caller,
            "SERVICE.OFFERING.DELETE",
            "ServiceOffering",
            offering,
            "deleted service offering",
        )


def create_disk_offering(
    caller: Caller,
    name: str,
    *,
    disk_size_bytes: int = 0,
    is_customized: bool = False,
    display_text: str = "",
    storage_tags: list[str] | str | None = None,
    provisioning_type: str = "thin",
) -> DiskOffering:
    name = check_name(f"disk offering '{name}'", name)
    label = f"disk offering '{name}'"
    size = check_count(
        label, disk_size_bytes, field="disk_size_bytes", what="disk size (bytes)", minimum=0
    )
    if not is_customized and size < 1 * GIB:
        raise InvalidParameter(
            f"{label}: a fixed-size disk offering needs a size of at least 1 GiB "
            "(or make it customized)",
            field="disk_size_bytes",
        )
    provisioning_type = str(provisioning_type).lower()
    if provisioning_type not in PROVISIONING_TYPES:
        raise InvalidParameter(
            f"{label}: provisioning type {provisioning_type!r} is not one of "
            f"{', '.join(PROVISIONING_TYPES)}",
            field="provisioning_type",
        )
    offering = DiskOffering(
        name=name,
        display_text=check_text(label, display_text or name, field="display_text"),
        disk_size_bytes=0 if is_customized else size,
        is_customized=bool(is_customized),
        storage_tags=",".join(check_tags(label, storage_tags, field="storage_tags")),
        provisioning_type=provisioning_type,
    )
    with caller.db.write() as session:
        ensure_unique_name(session, DiskOffering, label, name)
        session.add(offering)
        session.flush()
        shown = "custom size" if is_customized else f"{size // GIB} GiB"
        record_event(session, caller, "DISK.OFFERING.CREATE", "DiskOffering", offering, shown)
    return offering


def list_disk_offerings(caller: Caller) -> list[DiskOffering]:
    with caller.db.read() as session:
        return list(
            session.exec(
                select(DiskOffering).order_by(DiskOffering.disk_size_bytes, DiskOffering.name)
            )
        )


def delete_disk_offering(caller: Caller, offering_ref: str) -> None:
    with caller.db.write() as session:
        offering = resolve(session, DiskOffering, offering_ref, "disk offering", field="offering")
        session.delete(offering)
        record_event(
            session,
            caller,
            "DISK.OFFERING.DELETE",
            "DiskOffering",
            offering,
            "deleted disk offering",
        )
