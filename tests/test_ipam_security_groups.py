"""Security groups: the default group, rule validation (bad input changes nothing),
membership of VMs."""

from __future__ import annotations

import pytest
from helpers import events, make_zone, rejects
from ipam_world import make_account, make_vm

from engine.errors import AlreadyExists, InUse, InvalidParameter, NotFound
from engine.ipam import security_groups as sg


@pytest.fixture
def web(cloud):
    make_zone(cloud)
    return sg.create_security_group(cloud.admin, "web", description="front ends")


def test_every_account_gets_one_default_group(cloud) -> None:
    acme = make_account(cloud, "acme")
    first = sg.default_security_group(cloud.admin, acme.uuid)
    again = sg.default_security_group(cloud.admin, acme.uuid)
    assert first.id == again.id and first.is_default and first.name == "default"
    assert first.account_id == acme.id
    assert sg.list_security_group_rules(cloud.admin, first.uuid) == []  # ingress denied


BAD_RULES = [
    pytest.param(
        {"direction": "sideways"},
        "direction 'sideways' is not ingress or egress",
        "direction",
        id="direction",
    ),
    pytest.param(
        {"protocol": "gre"},
        "protocol 'gre' is not one of tcp, udp, icmp, all",
        "protocol",
        id="protocol",
    ),
    pytest.param(
        {"start_port": None}, "a tcp rule needs a start port", "start_port", id="tcp-without-port"
    ),
    pytest.param(
        {"start_port": 0}, "start port 0 is outside 1..65535", "start_port", id="port-zero"
    ),
    pytest.param(
        {"end_port": 70000}, "end port 70000 is outside 1..65535", "end_port", id="port-too-high"
    ),
    pytest.param(
        {"start_port": 443, "end_port": 80},
        "port range 443-80 is reversed",
        "end_port",
        id="reversed-ports",
    ),
    pytest.param(
        {"start_port": "http"},
        "start port 'http' is not a whole number",
        "start_port",
        id="port-not-a-number",
    ),
    pytest.param(
        {"icmp_type": 8}, "a tcp rule takes no ICMP type or code", "icmp_type", id="tcp-with-icmp"
    ),
    pytest.param(
        {"protocol": "icmp"}, "an icmp rule takes no ports", "start_port", id="icmp-with-ports"
    ),
    pytest.param(
        {"protocol": "icmp", "start_port": None, "end_port": None, "icmp_type": 300},
        "ICMP type 300 is outside -1..255",
        "icmp_type",
        id="icmp-type",
    ),
    pytest.param(
        {"protocol": "icmp", "start_port": None, "end_port": None, "icmp_code": -2},
        "ICMP code -2 is outside -1..255",
        "icmp_code",
        id="icmp-code",
    ),
    pytest.param(
        {"protocol": "all"}, "an 'all' rule takes no ports", "start_port", id="all-with-ports"
    ),
    pytest.param(
        {"cidr": None}, "needs either a CIDR or another security group", "cidr", id="neither"
    ),
    pytest.param({"remote_group_ref": "default"}, "not both and not neither", "cidr", id="both"),
    pytest.param(
        {"cidr": "10.0.0.1/8"},
        "CIDR '10.0.0.1/8' is not a valid network",
        "cidr",
        id="cidr-host-bits",
    ),
    pytest.param(
        {"cidr": "everywhere"},
        "CIDR 'everywhere' is not a valid network",
        "cidr",
        id="cidr-malformed",
    ),
    pytest.param(
        {"cidr": None, "remote_group_ref": "nope"},
        "security group 'nope' does not exist",
        "group",
        id="unknown-group",
    ),
]


@pytest.mark.parametrize(("changes", "rule", "field"), BAD_RULES)
def test_rule_validation(cloud, web, changes, rule, field) -> None:
    sg.default_security_group(cloud.admin)
    args = {"protocol": "tcp", "start_port": 80, "end_port": 443, "cidr": "0.0.0.0/0"} | changes
    error = NotFound if field == "group" else InvalidParameter
    with rejects(cloud, error, rule, field=field):
        sg.add_security_group_rule(cloud.admin, "web", **args)


def test_good_rules_are_stored_and_duplicates_refused(cloud, web) -> None:
    db_group = sg.create_security_group(cloud.admin, "db")
    tcp = sg.add_security_group_rule(
        cloud.admin, "web", protocol="TCP", start_port=443, cidr="0.0.0.0/0"
    )
    icmp = sg.add_security_group_rule(cloud.admin, "web", protocol="icmp", cidr="10.0.0.0/8")
    egress = sg.add_security_group_rule(
        cloud.admin, "db", direction="egress", protocol="all", remote_group_ref="web"
    )
    assert (tcp.start_port, tcp.end_port, tcp.protocol) == (443, 443, "tcp")
    assert (icmp.icmp_type, icmp.icmp_code) == (-1, -1)
    assert egress.remote_group_id == web.id and egress.group_id == db_group.id
    with rejects(cloud, AlreadyExists, "security group 'web' already has this ingress rule"):
        sg.add_security_group_rule(
            cloud.admin, "web", protocol="tcp", start_port=443, end_port=443, cidr="0.0.0.0/0"
        )
    with rejects(cloud, InUse, "security group 'web' is named by a rule of security group 'db'"):
        sg.delete_security_group(cloud.admin, "web")
    sg.revoke_security_group_rule(cloud.admin, egress.uuid)
    sg.delete_security_group(cloud.admin, "web")
    kinds = [e.event_type for e in events(cloud)]
    assert {
        "SG.CREATE",
        "SG.AUTH.INGRESS",
        "SG.AUTH.EGRESS",
        "SG.REVOKE.EGRESS",
        "SG.DELETE",
    } <= set(kinds)


def test_group_names_and_the_default_group_are_protected(cloud, web) -> None:
    with rejects(cloud, AlreadyExists, "the name 'web' is already taken in account 'admin'"):
        sg.create_security_group(cloud.admin, "web")
    with rejects(cloud, AlreadyExists, "(the default group)"):
        sg.create_security_group(cloud.admin, "default")
    with rejects(cloud, InvalidParameter, "security group ' ': a name is required"):
        sg.create_security_group(cloud.admin, " ")
    default = sg.default_security_group(cloud.admin)
    with rejects(cloud, InvalidParameter, "an account's default group cannot be deleted"):
        sg.delete_security_group(cloud.admin, default.uuid)


def test_vm_membership(cloud, web) -> None:
    zone = make_zone(cloud, "z2")
    vm = make_vm(cloud, zone)
    sg.add_vm_to_security_group(cloud.admin, vm.uuid)  # the default group
    sg.add_vm_to_security_group(cloud.admin, vm.uuid, "web")
    assert [g.name for g in sg.vm_security_groups(cloud.admin, vm.uuid)] == ["default", "web"]
    with rejects(cloud, AlreadyExists, "is already in security group 'web'"):
        sg.add_vm_to_security_group(cloud.admin, vm.uuid, "web")
    with rejects(cloud, InUse, "security group 'web' still has 1 VM"):
        sg.delete_security_group(cloud.admin, "web")
    acme = make_account(cloud, "acme")
    theirs = sg.create_security_group(cloud.admin, "theirs", account_ref=acme.uuid)
    with rejects(cloud, InvalidParameter, "belongs to another account", field="group"):
        sg.add_vm_to_security_group(cloud.admin, vm.uuid, theirs.uuid)
    sg.remove_vm_from_security_group(cloud.admin, vm.uuid, "web")
    with rejects(cloud, NotFound, "is not in security group 'web'"):
        sg.remove_vm_from_security_group(cloud.admin, vm.uuid, "web")
    sg.delete_security_group(cloud.admin, "web")
    assert [g.name for g in sg.vm_security_groups(cloud.admin, vm.uuid)] == ["default"]
