"""Security groups (the model and its rules; enforcing them on hosts is a later step).

Each account has a group named "default", created the first time it is needed: no
ingress rule (ingress denied) and no egress rule (egress allowed), as in CloudStack.
A rule is ingress or egress, for tcp/udp (a port range), icmp (type and code, -1 = any)
or all, and admits either a CIDR or the members of another group.
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.errors import AlreadyExists, InUse, InvalidParameter, NotFound
from engine.events import record_event
from engine.ipam.common import caller_account
from engine.lookup import resolve
from engine.models import (
    Account,
    RuleProtocol,
    SecurityGroup,
    SecurityGroupMember,
    SecurityGroupRule,
    TrafficDirection,
    VirtualMachine,
)
from engine.validation import check_name, check_text

DEFAULT_GROUP = "default"


def group_label(group: SecurityGroup) -> str:
    return f"security group '{group.name}'"


def ensure_default_group(session: Session, account: Account) -> SecurityGroup:
    group = session.exec(
        select(SecurityGroup).where(
            SecurityGroup.account_id == account.id, col(SecurityGroup.is_default)
        )
    ).first()
    if group is None:
        group = SecurityGroup(
            name=DEFAULT_GROUP,
            description=f"default security group of account '{account.name}'",
            account_id=account.id,  # type: ignore[arg-type]
            domain_id=account.domain_id,
            is_default=True,
        )
        session.add(group)
        session.flush()
    return group


def default_security_group(caller: Caller, account_ref: str | None = None) -> SecurityGroup:
    with caller.db.write() as session:
        return ensure_default_group(session, caller_account(session, caller, account_ref))


def create_security_group(
    caller: Caller, name: str, *, account_ref: str | None = None, description: str = ""
) -> SecurityGroup:
    label = f"security group '{name}'"
    name = check_name(label, name)
    label = f"security group '{name}'"
    description = check_text(label, description, field="description")
    with caller.db.write() as session:
        account = caller_account(session, caller, account_ref)
        ensure_default_group(session, account)
        taken = session.exec(
            select(SecurityGroup.id).where(
                SecurityGroup.account_id == account.id, SecurityGroup.name == name
            )
        ).first()
        if taken is not None:
            raise AlreadyExists(
                f"{label}: the name '{name}' is already taken in account '{account.name}'"
                + (" (the default group)" if name == DEFAULT_GROUP else ""),
                field="name",
            )
        group = SecurityGroup(
            name=name,
            description=description,
            account_id=account.id,  # type: ignore[arg-type]
            domain_id=account.domain_id,
        )
        session.add(group)
        session.flush()
        record_event(
            session,
            caller,
            "SG.CREATE",
            "SecurityGroup",
            group,
            f"created security group for account '{account.name}'",
        )
    return group


def _resolve_group(session: Session, ref: str, account_id: int | None = None) -> SecurityGroup:
    scope = {"account_id": account_id} if account_id is not None else {}
    return resolve(session, SecurityGroup, ref, "security group", field="group", **scope)


def delete_security_group(caller: Caller, group_ref: str) -> None:
    with caller.db.write() as session:
        group = _resolve_group(session, group_ref)
        label = group_label(group)
        if group.is_default:
            raise InvalidParameter(
                f"{label}: an account's default group cannot be deleted", field="group"
            )
        members = session.exec(
            select(func.count()).where(SecurityGroupMember.group_id == group.id)
        ).one()
        if members:
            raise InUse(
                f"{label} still has {members} VM{'s' if members != 1 else ''}: "
                "remove them from the group first"
            )
        referenced = session.exec(
            select(SecurityGroup.name)
            .join(SecurityGroupRule, col(SecurityGroupRule.group_id) == SecurityGroup.id)
            .where(
                SecurityGroupRule.remote_group_id == group.id,
                col(SecurityGroupRule.group_id) != group.id,
            )
            .limit(1)
        ).first()
        if referenced is not None:
            raise InUse(
                f"{label} is named by a rule of security group '{referenced}': "
                "delete that rule first"
            )
        session.execute(
            delete(SecurityGroupRule).where(col(SecurityGroupRule.group_id) == group.id)
        )
        session.delete(group)
        record_event(session, caller, "SG.DELETE", "SecurityGroup", group, "deleted security group")


def _check_port(label: str, value: object, what: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise InvalidParameter(
                f"{label}: {what} {value!r} is not a whole number", field=field
            ) from None
    if not 1 <= value <= 65535:
        raise InvalidParameter(f"{label}: {what} {value} is outside 1..65535", field=field)
    return value


def _check_icmp(label: str, value: object, what: str, field: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidParameter(
            f"{label}: {what} {value!r} is not a whole number", field=field
        ) from None
    if not -1 <= number <= 255:
        raise InvalidParameter(
            f"{label}: {what} {number} is outside -1..255 (-1 = any)", field=field
        )
    return number


def add_security_group_rule(
    caller: Caller,
    group_ref: str,
    *,
    direction: str = TrafficDirection.INGRESS,
    protocol: str = RuleProtocol.TCP,
    start_port: int | None = None,
    end_port: int | None = None,
    icmp_type: int | None = None,
    icmp_code: int | None = None,
    cidr: str | None = None,
    remote_group_ref: str | None = None,
) -> SecurityGroupRule:
    with caller.db.write() as session:
        group = _resolve_group(session, group_ref)
        label = group_label(group)
        try:
            direction = TrafficDirection(str(direction).lower())
        except ValueError:
            raise InvalidParameter(
                f"{label}: direction {direction!r} is not ingress or egress", field="direction"
            ) from None
        try:
            protocol = RuleProtocol(str(protocol).lower())
        except ValueError:
            raise InvalidParameter(
                f"{label}: protocol {protocol!r} is not one of tcp, udp, icmp, all",
                field="protocol",
            ) from None
        ports: tuple[int | None, int | None] = (None, None)
        icmp: tuple[int | None, int | None] = (None, None)
        if protocol in (RuleProtocol.TCP, RuleProtocol.UDP):
            if start_port is None:
                raise InvalidParameter(
                    f"{label}: a {protocol} rule needs a start port", field="start_port"
                )
            first = _check_port(label, start_port, "start port", "start_port")
            last = _check_port(
                label, end_port if end_port is not None else first, "end port", "end_port"
            )
            if first > last:
                raise InvalidParameter(
                    f"{label}: port range {first}-{last} is reversed", field="end_port"
                )
            ports = (first, last)
            if icmp_type is not None or icmp_code is not None:
                raise InvalidParameter(
                    f"{label}: a {protocol} rule takes no ICMP type or code", field="icmp_type"
                )
        elif protocol == RuleProtocol.ICMP:
            if start_port is not None or end_port is not None:
                raise InvalidParameter(
                    f"{label}: an icmp rule takes no ports (give ICMP type and code)",
                    field="start_port",
                )
            icmp = (
                _check_icmp(
                    label, -1 if icmp_type is None else icmp_type, "ICMP type", "icmp_type"
                ),
                _check_icmp(
                    label, -1 if icmp_code is None else icmp_code, "ICMP code", "icmp_code"
                ),
            )
        elif any(v is not None for v in (start_port, end_port, icmp_type, icmp_code)):
            raise InvalidParameter(
                f"{label}: an 'all' rule takes no ports or ICMP type/code", field="start_port"
            )
        if (cidr is None) == (remote_group_ref is None):
            raise InvalidParameter(
                f"{label}: a rule needs either a CIDR or another security "
                "group, not both and not neither",
                field="cidr",
            )
        remote = None
        if cidr is not None:
            try:
                cidr = str(ipaddress.ip_network(str(cidr).strip(), strict=True))
            except ValueError:
                raise InvalidParameter(
                    f"{label}: CIDR {cidr!r} is not a valid network "
                    "(e.g. 0.0.0.0/0 or 10.1.0.0/16)",
                    field="cidr",
                ) from None
        else:
            remote = _resolve_group(session, str(remote_group_ref))
        rule = SecurityGroupRule(
            group_id=group.id,  # type: ignore[arg-type]
            direction=direction,
            protocol=protocol,
            start_port=ports[0],
            end_port=ports[1],
            icmp_type=icmp[0],
            icmp_code=icmp[1],
            cidr=cidr,
            remote_group_id=remote.id if remote else None,
        )
        duplicate = session.exec(
            select(SecurityGroupRule.id).where(
                SecurityGroupRule.group_id == group.id,
                SecurityGroupRule.direction == rule.direction,
                SecurityGroupRule.protocol == rule.protocol,
                SecurityGroupRule.start_port == rule.start_port,
                SecurityGroupRule.end_port == rule.end_port,
                SecurityGroupRule.icmp_type == rule.icmp_type,
                SecurityGroupRule.icmp_code == rule.icmp_code,
                SecurityGroupRule.cidr == rule.cidr,
                SecurityGroupRule.remote_group_id == rule.remote_group_id,
            )
        ).first()
        if duplicate is not None:
            raise AlreadyExists(f"{label} already has this {direction} rule", field="protocol")
        session.add(rule)
        session.flush()
        source = cidr if cidr else f"group '{remote.name}'"  # type: ignore[union-attr]
        record_event(
            session,
            caller,
            f"SG.AUTH.{direction.upper()}",
            "SecurityGroup",
            group,
            f"allowed {direction} {protocol} {_what(rule)} from {source}",
        )
    return rule


def _what(rule: SecurityGroupRule) -> str:
    if rule.start_port is not None:
        return f"ports {rule.start_port}-{rule.end_port}"
    if rule.icmp_type is not None:
        return f"type {rule.icmp_type} code {rule.icmp_code}"
    return "all traffic"


def revoke_security_group_rule(caller: Caller, rule_ref: str) -> None:
    with caller.db.write() as session:
        rule = session.exec(
            select(SecurityGroupRule).where(SecurityGroupRule.uuid == str(rule_ref))
        ).first()
        if rule is None:
            raise NotFound(f"security group rule '{rule_ref}' does not exist", field="rule")
        group = session.get(SecurityGroup, rule.group_id)
        assert group is not None
        session.delete(rule)
        record_event(
            session,
            caller,
            f"SG.REVOKE.{rule.direction.upper()}",
            "SecurityGroup",
            group,
            f"revoked {rule.direction} {rule.protocol} {_what(rule)}",
        )


def list_security_group_rules(caller: Caller, group_ref: str) -> list[SecurityGroupRule]:
    with caller.db.read() as session:
        group = _resolve_group(session, group_ref)
        return list(
            session.exec(
                select(SecurityGroupRule)
                .where(SecurityGroupRule.group_id == group.id)
                .order_by(SecurityGroupRule.id)
            )
        )


def add_vm_to_security_group(caller: Caller, vm_ref: str, group_ref: str | None = None) -> None:
    """Make the VM a member of the group (its account's default group when none is given)."""
    with caller.db.write() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        account = session.get(Account, vm.account_id)
        assert account is not None
        group = (
            _resolve_group(session, group_ref, account_id=vm.account_id)
            if group_ref is not None
            else ensure_default_group(session, account)
        )
        if group.account_id != vm.account_id:
            raise InvalidParameter(
                f"VM '{vm.name}': {group_label(group)} belongs to another account", field="group"
            )
        exists = session.get(SecurityGroupMember, (group.id, vm.id))
        if exists is not None:
            raise AlreadyExists(f"VM '{vm.name}' is already in {group_label(group)}", field="group")
        session.add(SecurityGroupMember(group_id=group.id, vm_id=vm.id))  # type: ignore[arg-type]
        record_event(session, caller, "SG.ASSIGN", "SecurityGroup", group, f"added VM '{vm.name}'")


def remove_vm_from_security_group(caller: Caller, vm_ref: str, group_ref: str) -> None:
    with caller.db.write() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        group = _resolve_group(session, group_ref, account_id=vm.account_id)
        member = session.get(SecurityGroupMember, (group.id, vm.id))
        if member is None:
            raise NotFound(f"VM '{vm.name}' is not in {group_label(group)}", field="group")
        session.delete(member)
        record_event(
            session, caller, "SG.REMOVE", "SecurityGroup", group, f"removed VM '{vm.name}'"
        )


def vm_security_groups(caller: Caller, vm_ref: str) -> list[SecurityGroup]:
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        return list(
            session.exec(
                select(SecurityGroup)
                .join(SecurityGroupMember, col(SecurityGroupMember.group_id) == SecurityGroup.id)
                .where(SecurityGroupMember.vm_id == vm.id)
                .order_by(SecurityGroup.name)
            )
        )
