"""What the console's security-group screen shows: each group with its rules, as text.

A read service (plain values, no front end builds its own query): groups in account then
name order, bounded, each with its rules in id order and the number of VMs in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select

from engine.context import Caller
from engine.models import Account, SecurityGroup, SecurityGroupMember, SecurityGroupRule

MAX_GROUPS = 200


@dataclass(frozen=True)
class RuleView:
    uuid: str
    direction: str
    protocol: str
    what: str  # "ports 22-22", "type -1 code -1", "all traffic"
    source: str  # a CIDR, or "group 'web'"

    @property
    def text(self) -> str:
        way = "from" if self.direction == "ingress" else "to"
        return f"{self.direction} {self.protocol} {self.what} {way} {self.source}"


@dataclass(frozen=True)
class GroupView:
    uuid: str
    name: str
    account: str
    description: str
    is_default: bool
    vms: int
    rules: list[RuleView]


def _what(rule: SecurityGroupRule) -> str:
    if rule.start_port is not None:
        return f"ports {rule.start_port}-{rule.end_port}"
    if rule.icmp_type is not None:
        return f"type {rule.icmp_type} code {rule.icmp_code}"
    return "all traffic"


def security_groups_overview(caller: Caller, *, limit: int = MAX_GROUPS) -> list[GroupView]:
    """Every group (up to `limit`) with its rules; an admin sees every account's."""
    with caller.db.read() as session:
        query = (
            select(SecurityGroup, Account.name)
            .join(Account, col(Account.id) == SecurityGroup.account_id)
            .order_by(Account.name, SecurityGroup.name, SecurityGroup.id)
            .limit(min(limit, MAX_GROUPS))
        )
        if not caller.is_admin:
            query = query.where(SecurityGroup.account_id == caller.account_id)
        groups = list(session.exec(query))
        ids = [group.id for group, _account in groups]
        names = {group.id: group.name for group, _account in groups}
        rules: dict[int, list[SecurityGroupRule]] = {}
        members: dict[int, int] = {}
        if ids:
            for rule in session.exec(
                select(SecurityGroupRule)
                .where(col(SecurityGroupRule.group_id).in_(ids))
                .order_by(SecurityGroupRule.id)
            ):
                rules.setdefault(rule.group_id, []).append(rule)
            members = dict(
                session.exec(
                    select(SecurityGroupMember.group_id, func.count())
                    .where(col(SecurityGroupMember.group_id).in_(ids))
                    .group_by(SecurityGroupMember.group_id)
                ).all()
            )
            remote_ids = {
                r.remote_group_id
                for rs in rules.values()
                for r in rs
                if r.remote_group_id is not None and r.remote_group_id not in names
            }
            if remote_ids:
                names.update(
                    session.exec(
                        select(SecurityGroup.id, SecurityGroup.name).where(
                            col(SecurityGroup.id).in_(remote_ids)
                        )
                    ).all()
                )
    return [
        GroupView(
            uuid=group.uuid,
            name=group.name,
            account=account,
            description=group.description,
            is_default=group.is_default,
            vms=members.get(group.id or 0, 0),
            rules=[
                RuleView(
                    uuid=rule.uuid,
                    direction=rule.direction,
                    protocol=rule.protocol,
                    what=_what(rule),
                    source=rule.cidr or f"group '{names.get(rule.remote_group_id, '?')}'",
                )
                for rule in rules.get(group.id or 0, [])
            ],
        )
        for group, account in groups
    ]
