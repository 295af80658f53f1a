"""Affinity groups (per account) and dedication of zones, pods, clusters and hosts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlmodel import Session

from engine.context import Caller
from engine.errors import AlreadyExists, InvalidParameter, NotFound, StateConflict
from engine.events import record_event
from engine.lookup import resolve
from engine.models import (
    Account,
    AffinityGroup,
    AffinityGroupMember,
    AffinityGroupType,
    Cluster,
    Dedication,
    DedicationScope,
    Domain,
    Host,
    Pod,
    VirtualMachine,
    Zone,
)
from engine.validation import check_name, check_text

_SCOPES = {
    DedicationScope.ZONE: Zone,
    DedicationScope.POD: Pod,
    DedicationScope.CLUSTER: Cluster,
    DedicationScope.HOST: Host,
}


def _account(session: Session, caller: Caller, ref: str | None) -> Account:
    if ref is None:
        if caller.account_id is None:
            raise InvalidParameter("an account is required", field="account")
        account = session.get(Account, caller.account_id)
        assert account is not None
        return account
    return resolve(session, Account, ref, "account", field="account")


def create_affinity_group(
    caller: Caller,
    name: str,
    group_type: str,
    *,
    account: str | None = None,
    description: str = "",
) -> AffinityGroup:
    """A group of the account's VMs: "host anti-affinity", "host affinity" or
    "ExplicitDedication" (CloudStack's type names)."""
    label = f"affinity group '{name}'"
    name = check_name(label, name)
    label = f"affinity group '{name}'"
    types = [t.value for t in AffinityGroupType]
    if group_type not in types:
        raise InvalidParameter(
            f"{label}: type {group_type!r} is not one of {', '.join(types)}", field="group_type"
        )
    description = check_text(label, description, field="description")
    with caller.db.write() as session:
        owner = _account(session, caller, account)
        taken = session.execute(
            select(AffinityGroup.id).where(
                AffinityGroup.account_id == owner.id, AffinityGroup.name == name
            )
        ).first()
        if taken is not None:
            raise AlreadyExists(
                f"{label}: the name is already taken for account '{owner.name}'", field="name"
            )
        group = AffinityGroup(
            name=name,
            group_type=group_type,
            account_id=owner.id,
            domain_id=owner.domain_id,
            description=description,
        )
        session.add(group)
        session.flush()
        record_event(
            session,
            caller,
            "AG.CREATE",
            "AffinityGroup",
            group,
            f"created {group_type} group for account '{owner.name}'",
        )
        return group


def add_vm_to_affinity_group(caller: Caller, group_ref: str, vm_ref: str) -> None:
    with caller.db.write() as session:
        group = resolve(session, AffinityGroup, group_ref, "affinity group", field="group")
        vm = session.execute(
            select(VirtualMachine).where(
                (VirtualMachine.uuid == vm_ref) | (VirtualMachine.instance_name == vm_ref)
            )
        ).scalar_one_or_none()
        if vm is None:
            raise NotFound(f"VM '{vm_ref}' does not exist", field="vm")
        if vm.account_id != group.account_id:
            raise InvalidParameter(
                f"affinity group '{group.name}': VM '{vm.name}' belongs to another account",
                field="vm",
            )
        if session.get(AffinityGroupMember, (group.id, vm.id)) is None:
            session.add(AffinityGroupMember(group_id=group.id, vm_id=vm.id))
            record_event(
                session, caller, "AG.UPDATE", "AffinityGroup", group, f"added VM '{vm.name}'"
            )


def remove_vm_from_affinity_group(caller: Caller, group_ref: str, vm_ref: str) -> None:
    """The VM leaves the group (placement stops applying the group's rule to it)."""
    with caller.db.write() as session:
        group = resolve(session, AffinityGroup, group_ref, "affinity group", field="group")
        vm = session.execute(
            select(VirtualMachine).where(
                (VirtualMachine.uuid == vm_ref) | (VirtualMachine.instance_name == vm_ref)
            )
        ).scalar_one_or_none()
        if vm is None:
            raise NotFound(f"VM '{vm_ref}' does not exist", field="vm")
        member = session.get(AffinityGroupMember, (group.id, vm.id))
        if member is None:
            raise NotFound(
                f"affinity group '{group.name}': VM '{vm.name}' is not in it", field="vm"
            )
        session.delete(member)
        record_event(
            session, caller, "AG.UPDATE", "AffinityGroup", group, f"removed VM '{vm.name}'"
        )


def delete_affinity_group(caller: Caller, group_ref: str) -> None:
    """Delete a group that no live VM is in (an expunged VM's membership goes with it):
    deleting it under running VMs would silently drop the rule they were placed by."""
    with caller.db.write() as session:
        group = resolve(session, AffinityGroup, group_ref, "affinity group", field="group")
        live = list(
            session.execute(
                select(VirtualMachine.name)
                .join(AffinityGroupMember, AffinityGroupMember.vm_id == VirtualMachine.id)
                .where(
                    AffinityGroupMember.group_id == group.id,
                    VirtualMachine.removed.is_(None),  # type: ignore[union-attr]
                )
                .order_by(VirtualMachine.name)
            ).scalars()
        )
        if live:
            shown = ", ".join(live[:5]) + (f" and {len(live) - 5} more" if len(live) > 5 else "")
            raise StateConflict(
                f"affinity group '{group.name}' still has {len(live)} VM"
                f"{'s' if len(live) != 1 else ''} ({shown}); remove them from it first",
                field="group",
            )
        session.execute(delete(AffinityGroupMember).where(AffinityGroupMember.group_id == group.id))
        session.delete(group)
        record_event(session, caller, "AG.DELETE", "AffinityGroup", group, "deleted group")


@dataclass(frozen=True)
class _Named:
    name: str
    uuid: str | None


def dedicate(
    caller: Caller,
    scope: str,
    ref: str,
    *,
    account: str | None = None,
    domain: str | None = None,
) -> Dedication:
    """Reserve a zone, pod, cluster or host to one account, or to a domain and its
    sub-domains: only their VMs may be placed there."""
    try:
        kind = DedicationScope(scope)
    except ValueError:
        raise InvalidParameter(
            f"dedication scope {scope!r} is not one of zone, pod, cluster, host", field="scope"
        ) from None
    if (account is None) == (domain is None):
        raise InvalidParameter(
            f"dedicate {kind.value} '{ref}': give exactly one of account or domain",
            field="account",
        )
    with caller.db.write() as session:
        obj = resolve(session, _SCOPES[kind], ref, kind.value, field="ref")
        zone_id = obj.id if kind == DedicationScope.ZONE else obj.zone_id  # type: ignore[attr-defined]
        taken = session.execute(
            select(Dedication.id).where(Dedication.scope == kind, Dedication.scope_id == obj.id)  # type: ignore[attr-defined]
        ).first()
        if taken is not None:
            raise AlreadyExists(
                f"{kind.value} '{obj.name}' is already dedicated",
                field="ref",  # type: ignore[attr-defined]
            )
        row = Dedication(scope=kind, scope_id=obj.id, zone_id=zone_id)  # type: ignore[attr-defined]
        if account is not None:
            owner = resolve(session, Account, account, "account", field="account")
            row.account_id = owner.id
            whom = f"account '{owner.name}'"
        else:
            dom = (
                session.execute(
                    select(Domain).where(
                        (Domain.uuid == domain) | (Domain.path == domain) | (Domain.name == domain)
                    )
                )
                .scalars()
                .first()
            )
            if dom is None:
                raise NotFound(f"domain '{domain}' does not exist", field="domain")
            row.domain_id = dom.id
            whom = f"domain '{dom.path}'"
        session.add(row)
        session.flush()
        record_event(
            session,
            caller,
            "DEDICATE.RESOURCE",
            kind.value.capitalize(),
            _Named(obj.name, obj.uuid),  # type: ignore[attr-defined]
            f"dedicated {kind.value} to {whom}",
        )
        return row


def release_dedication(caller: Caller, scope: str, ref: str) -> None:
    with caller.db.write() as session:
        kind = DedicationScope(scope)
        obj = resolve(session, _SCOPES[kind], ref, kind.value, field="ref")
        row = session.execute(
            select(Dedication).where(Dedication.scope == kind, Dedication.scope_id == obj.id)  # type: ignore[attr-defined]
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"{kind.value} '{obj.name}' is not dedicated", field="ref")  # type: ignore[attr-defined]
        session.delete(row)
        record_event(
            session,
            caller,
            "RELEASE.DEDICATED.RESOURCE",
            kind.value.capitalize(),
            _Named(obj.name, obj.uuid),  # type: ignore[attr-defined]
            f"released dedication of {kind.value}",
        )
