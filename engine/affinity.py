"""What the console's `:affinity` screen shows: each affinity group with its live VMs.

A read service (plain values): groups in account then name order, bounded, each with its
members that are not expunged (name, state, host) in name order. An admin sees every
account's groups, anyone else their own account's. Changes go through
engine.placement.groups (create, add/remove a VM, delete: refused while VMs are in it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from engine.context import Caller
from engine.models import Account, AffinityGroup, AffinityGroupMember, Host, VirtualMachine

MAX_GROUPS = 200
MAX_MEMBERS = 50  # per group, shown; `vms` still counts them all


@dataclass(frozen=True)
class MemberView:
    name: str
    state: str
    host: str | None


@dataclass(frozen=True)
class AffinityGroupView:
    uuid: str
    name: str
    group_type: str
    account: str
    description: str
    vms: int
    members: tuple[MemberView, ...]

    @property
    def hosts(self) -> int:
        """Distinct hosts its VMs run on (anti-affinity: one each; affinity: one)."""
        return len({m.host for m in self.members if m.host is not None})


def affinity_groups_overview(caller: Caller, *, limit: int = MAX_GROUPS) -> list[AffinityGroupView]:
    with caller.db.read() as session:
        query = (
            select(AffinityGroup, Account.name)
            .join(Account, col(Account.id) == AffinityGroup.account_id)
            .order_by(col(Account.name), col(AffinityGroup.name), col(AffinityGroup.id))
            .limit(min(limit, MAX_GROUPS))
        )
        if not caller.is_admin:
            query = query.where(AffinityGroup.account_id == caller.account_id)
        groups = list(session.exec(query))
        members: dict[int, list[MemberView]] = {}
        ids = [group.id for group, _account in groups]
        if ids:
            rows = session.exec(
                select(AffinityGroupMember.group_id, VirtualMachine, Host.name)
                .join(VirtualMachine, col(VirtualMachine.id) == AffinityGroupMember.vm_id)
                .outerjoin(Host, col(Host.id) == VirtualMachine.host_id)
                .where(
                    col(AffinityGroupMember.group_id).in_(ids),
                    col(VirtualMachine.removed).is_(None),
                )
                .order_by(col(VirtualMachine.name), col(VirtualMachine.id))
            )
            for group_id, vm, host in rows:
                members.setdefault(group_id, []).append(MemberView(vm.name, vm.state, host))
        return [
            AffinityGroupView(
                group.uuid,
                group.name,
                group.group_type,
                account,
                group.description,
                len(members.get(group.id, [])),  # type: ignore[arg-type]
                tuple(members.get(group.id, [])[:MAX_MEMBERS]),  # type: ignore[arg-type]
            )
            for group, account in groups
        ]
