"""Every IPAM validation rule with bad input (typed error, message naming the ranges or
networks involved, nothing written), and the allocation rules with good input."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from helpers import events, host_spec, make_cluster, make_pod, make_zone, rejects, set_columns
from ipam_world import make_account, make_ipam_world, make_vm
from sqlalchemy import update

from engine import topology
from engine.errors import AlreadyExists, InUse, InvalidParameter, NotFound, StateConflict
from engine.ipam import management, networks, public, vni
from engine.ipam.errors import AddressExhausted
from engine.models import IpAddressState, PublicIpAddress

PUBLIC = {
    "gateway": "198.51.100.1",
    "netmask": "255.255.255.0",
    "start_ip": "198.51.100.10",
    "end_ip": "198.51.100.20",
}


def _range(cloud, **changes):
    return public.create_public_ip_range(cloud.admin, "z1", **(PUBLIC | changes))


# --- public ranges: well-formed, inside, no overlap -------------------------------------

BAD_PUBLIC = [
    pytest.param(
        {"gateway": "198.51.100.300"},
        "gateway '198.51.100.300' is not a valid IPv4",
        "gateway",
        id="gateway-malformed",
    ),
    pytest.param(
        {"netmask": "255.0.255.0"},
        "netmask '255.0.255.0' is not a valid IPv4 netmask",
        "netmask",
        id="netmask-malformed",
    ),
    pytest.param(
        {"netmask": None, "cidr": "198.51.100.7/24"},
        "has host bits set",
        "cidr",
        id="cidr-host-bits",
    ),
    pytest.param(
        {"netmask": None, "cidr": "198.51.100.0"},
        "is not in CIDR form",
        "cidr",
        id="cidr-no-prefix",
    ),
    pytest.param(
        {"netmask": "255.255.255.0", "cidr": "198.51.100.0/25"},
        "netmask 255.255.255.0 does not match CIDR 198.51.100.0/25",
        "netmask",
        id="netmask-cidr-mismatch",
    ),
    pytest.param(
        {"start_ip": "198.51.100"},
        "range start '198.51.100' is not a valid IPv4",
        "start_ip",
        id="start-malformed",
    ),
    pytest.param(
        {"end_ip": "x"}, "range end 'x' is not a valid IPv4", "end_ip", id="end-malformed"
    ),
    pytest.param(
        {"start_ip": "198.51.100.30"},
        "range start 198.51.100.30 is after its end 198.51.100.20",
        "end_ip",
        id="start-after-end",
    ),
    pytest.param(
        {"end_ip": "198.51.101.5"},
        "range 198.51.100.10-198.51.101.5 is outside its network 198.51.100.0/24",
        "end_ip",
        id="range-outside-cidr",
    ),
    pytest.param(
        {"gateway": "198.51.101.1"},
        "range 198.51.100.10-198.51.100.20 is outside its network 198.51.101.0/24",
        "start_ip",
        id="range-outside-gateway-network",
    ),
    pytest.param(
        {"netmask": None, "cidr": "198.51.100.0/24", "gateway": "198.51.101.1"},
        "gateway 198.51.101.1 is outside 198.51.100.0/24",
        "gateway",
        id="gateway-outside-cidr",
    ),
    pytest.param(
        {"gateway": "198.51.100.15"},
        "gateway 198.51.100.15 is inside the allocatable range 198.51.100.10-198.51.100.20",
        "gateway",
        id="gateway-inside-range",
    ),
    pytest.param(
        {"gateway": "198.51.100.0"},
        "gateway 198.51.100.0 is the network or broadcast address of 198.51.100.0/24",
        "gateway",
        id="gateway-network-address",
    ),
    pytest.param(
        {"start_ip": "198.51.100.0"},
        "range 198.51.100.0-198.51.100.20 includes the "
        "network or broadcast address of 198.51.100.0/24",
        "start_ip",
        id="range-includes-network-address",
    ),
    pytest.param(
        {"end_ip": "198.51.100.255"},
        "includes the network or broadcast address",
        "end_ip",
        id="range-includes-broadcast",
    ),
    pytest.param(
        {"netmask": "255.255.255.254"}, "smaller than a /30", "netmask", id="network-too-small"
    ),
    pytest.param(
        {"netmask": "8", "gateway": "10.0.0.1", "start_ip": "10.200.0.1", "end_ip": "10.201.0.1"},
        "holds 65537 addresses, more than the 65536",
        "end_ip",
        id="range-too-large",
    ),
    pytest.param(
        {"vlan": "vlan://5000"}, "vlan id 5000 is outside 1..4094", "vlan", id="vlan-out-of-range"
    ),
    pytest.param(
        {"vlan": "gre://7"},
        "must be a VLAN id, vlan://<id>, vxlan://<vni> or untagged",
        "vlan",
        id="vlan-unknown-scheme",
    ),
    pytest.param(
        {"for_system": True, "account_ref": "admin"},
        "a range for system use cannot also be dedicated",
        "for_system",
        id="system-and-dedicated",
    ),
]


@pytest.mark.parametrize(("changes", "rule", "field"), BAD_PUBLIC)
def test_public_range_rules(cloud, changes, rule, field) -> None:
    make_ipam_world(cloud)
    with rejects(cloud, InvalidParameter, rule) as info:
        _range(cloud, **changes)
    if field is not None:
        assert info.value.field == field
    assert "public IP range" in str(info.value)


OVERLAPS = [
    pytest.param(
        {"gateway": "203.0.113.1", "start_ip": "203.0.113.20", "end_ip": "203.0.113.30"},
        "range 203.0.113.20-203.0.113.30 overlaps public IP range "
        "203.0.113.10-203.0.113.20 in zone 'z1'",
        id="other-public-range",
    ),
    pytest.param(
        {"gateway": "10.1.1.1", "start_ip": "10.1.1.90", "end_ip": "10.1.1.120"},
        "overlaps pod 'rack-1' management range 10.1.1.10-10.1.1.100 in zone 'z1'",
        id="pod-management-range",
    ),
    pytest.param(
        {"gateway": "203.0.113.15", "start_ip": "203.0.113.100", "end_ip": "203.0.113.120"},
        "gateway 203.0.113.15 is inside public IP range 203.0.113.10-203.0.113.20",
        id="gateway-inside-other-range",
    ),
    pytest.param(
        {"gateway": "203.0.113.200", "start_ip": "203.0.113.1", "end_ip": "203.0.113.5"},
        "range 203.0.113.1-203.0.113.5 includes the gateway 203.0.113.1 of public IP "
        "range 203.0.113.10-203.0.113.20",
        id="covers-other-gateway",
    ),
    pytest.param(
        {"gateway": "10.9.0.1", "start_ip": "10.9.0.50", "end_ip": "10.9.0.60"},
        "overlaps shared network 'shared-1' range 10.9.0.10-10.9.0.100",
        id="shared",
    ),
    pytest.param(
        {"gateway": "10.2.0.129", "start_ip": "10.2.0.130", "end_ip": "10.2.0.140"},
        "overlaps isolated network 'iso-1' 10.2.0.0/24",
        id="isolated",
    ),
]


@pytest.mark.parametrize(("changes", "rule"), OVERLAPS)
def test_ranges_of_a_zone_never_overlap(cloud, changes, rule) -> None:
    make_ipam_world(cloud)
    networks.create_shared_network(
        cloud.admin,
        "z1",
        "shared-1",
        gateway="10.9.0.1",
        netmask="24",
        start_ip="10.9.0.10",
        end_ip="10.9.0.100",
    )
    networks.create_isolated_network(cloud.admin, "z1", "iso-1", cidr="10.2.0.0/24")
    with rejects(cloud, InvalidParameter, rule):
        _range(cloud, **(changes | {"netmask": "24"}))


def test_the_same_range_in_another_zone_is_fine(cloud) -> None:
    make_ipam_world(cloud)
    make_zone(cloud, "z2")
    rng = public.create_public_ip_range(
        cloud.admin,
        "z2",
        gateway="203.0.113.1",
        netmask="24",
        start_ip="203.0.113.10",
        end_ip="203.0.113.20",
    )
    assert rng.size == 11


def test_a_public_range_has_one_row_per_address_and_an_audit_event(cloud) -> None:
    world = make_ipam_world(cloud)
    rows = public.list_public_ips(cloud.db, range_id=world.public_range.id)
    assert [r.address for r in rows] == [f"203.0.113.{n}" for n in range(10, 21)]
    assert {r.state for r in rows} == {IpAddressState.FREE}
    assert world.public_range.isolation == "vlan" and world.public_range.vlan_tag == 100
    assert any(
        e.event_type == "VLAN.IP.RANGE.CREATE" and "203.0.113.10-203.0.113.20" in e.description
        for e in events(cloud)
    )


# --- public addresses ---------------------------------------------------------------------


def test_an_exhausted_range_raises_the_typed_error_naming_it_and_its_size(cloud) -> None:
    make_ipam_world(cloud)
    got = [public.associate_public_ip(cloud.admin, "z1").address for _ in range(11)]
    assert got == [f"203.0.113.{n}" for n in range(10, 21)]
    with rejects(cloud, AddressExhausted, "zone 'z1'", "203.0.113.10-203.0.113.20 (11 addresses)"):
        public.associate_public_ip(cloud.admin, "z1")


def test_a_zone_without_ranges_is_exhausted_from_the_start(cloud) -> None:
    make_zone(cloud)
    with rejects(cloud, AddressExhausted, "zone 'z1' has no public IP range"):
        public.associate_public_ip(cloud.admin, "z1")


@pytest.mark.parametrize(
    ("address", "error", "rule"),
    [
        ("203.0.113.99", InvalidParameter, "public address 203.0.113.99 is in no public IP range"),
        ("203.0.113.1", InvalidParameter, "203.0.113.1 is in no public IP range"),
        ("203.0.113.12", StateConflict, "public address 203.0.113.12 is already Allocated"),
        ("not-an-ip", InvalidParameter, "public address 'not-an-ip' is not a valid IPv4"),
    ],
)
def test_a_requested_public_address_must_be_in_a_range_and_free(cloud, address, error, rule):
    make_ipam_world(cloud)
    public.associate_public_ip(cloud.admin, "z1", address="203.0.113.12")
    with rejects(cloud, error, rule, field="address"):
        public.associate_public_ip(cloud.admin, "z1", address=address)


def test_dedicated_ranges_serve_first_then_domain_then_the_shared_pool(any_cloud) -> None:
    cloud = any_cloud
    make_ipam_world(cloud)  # shared pool 203.0.113.10-20
    acme = make_account(cloud, "acme", domain="customers")
    other = make_account(cloud, "other", domain="customers")
    public.create_public_ip_range(
        cloud.admin,
        "z1",
        gateway="198.51.100.1",
        netmask="24",
        start_ip="198.51.100.10",
        end_ip="198.51.100.10",
        account_ref=acme.uuid,
    )
    public.create_public_ip_range(
        cloud.admin,
        "z1",
        gateway="192.0.2.1",
        netmask="24",
        start_ip="192.0.2.10",
        end_ip="192.0.2.10",
        domain_ref="ROOT/customers/",
    )
    public.create_public_ip_range(
        cloud.admin,
        "z1",
        gateway="192.0.2.129",
        netmask="25",
        cidr="192.0.2.128/25",
        start_ip="192.0.2.130",
        end_ip="192.0.2.140",
        for_system=True,
    )
    first = public.associate_public_ip(cloud.admin, "z1", account_ref=acme.uuid)
    second = public.associate_public_ip(cloud.admin, "z1", account_ref=acme.uuid)
    third = public.associate_public_ip(cloud.admin, "z1", account_ref=acme.uuid)
    assert [first.address, second.address, third.address] == [
        "198.51.100.10",
        "192.0.2.10",
        "203.0.113.10",
    ]
    assert first.account_id == acme.id and first.state == IpAddressState.ALLOCATED
    # Another account never gets acme's range; its domain's range is taken; the pool serves.
    assert public.associate_public_ip(cloud.admin, "z1", account_ref=other.uuid).address == (
        "203.0.113.11"
    )
    # The admin account (ROOT) is served by neither dedicated range nor the system range.
    with rejects(
        cloud,
        InvalidParameter,
        "belongs to public IP range 198.51.100.10-",
        "does not serve this account",
        field="address",
    ):
        public.associate_public_ip(cloud.admin, "z1", address="198.51.100.10")
    with rejects(cloud, InvalidParameter, "for system use", field="address"):
        public.associate_public_ip(cloud.admin, "z1", address="192.0.2.135")


def test_the_first_public_address_of_an_isolated_network_is_its_source_nat(cloud) -> None:
    make_ipam_world(cloud)
    networks.create_isolated_network(cloud.admin, "z1", "net-a")
    a = public.associate_public_ip(cloud.admin, "z1", network_ref="net-a")
    b = public.associate_public_ip(cloud.admin, "z1", network_ref="net-a")
    c = public.associate_public_ip(cloud.admin, "z1")
    assert (a.source_nat, b.source_nat, c.source_nat) == (True, False, False)
    assert a.network_id == b.network_id and c.network_id is None


def test_a_public_address_for_another_accounts_network_is_refused(cloud) -> None:
    make_ipam_world(cloud)
    acme = make_account(cloud, "acme")
    networks.create_isolated_network(cloud.admin, "z1", "net-acme", account_ref=acme.uuid)
    with rejects(
        cloud,
        InvalidParameter,
        "network 'net-acme' is not an isolated network of the account",
        field="network",
    ):
        public.associate_public_ip(cloud.admin, "z1", network_ref="net-acme")


def test_release_frees_the_address_for_the_next_allocation(cloud) -> None:
    make_ipam_world(cloud)
    first = public.associate_public_ip(cloud.admin, "z1")
    public.associate_public_ip(cloud.admin, "z1")
    released = public.release_public_ip(cloud.admin, first.uuid)
    assert released.state == IpAddressState.FREE and released.account_id is None
    assert public.associate_public_ip(cloud.admin, "z1").address == first.address
    assert [e.event_type for e in events(cloud)][-3:] == [
        "NET.IPASSIGN",
        "NET.IPRELEASE",
        "NET.IPASSIGN",
    ]


def test_quarantine_holds_a_released_address_until_it_expires(any_cloud) -> None:
    cloud = any_cloud
    make_ipam_world(cloud)
    first = public.associate_public_ip(cloud.admin, "z1")
    held = public.release_public_ip(cloud.admin, first.address, quarantine_seconds=3600)
    assert held.state == IpAddressState.RELEASING and held.quarantine_until is not None
    nxt = public.associate_public_ip(cloud.admin, "z1")
    assert nxt.address != first.address
    set_columns(
        cloud,
        PublicIpAddress,
        first.uuid,
        quarantine_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert public.expire_quarantines(cloud.db) == 1
    assert public.associate_public_ip(cloud.admin, "z1").address == first.address


def test_an_exhausted_range_reuses_expired_quarantine_on_its_own(any_cloud) -> None:
    cloud = any_cloud
    make_ipam_world(cloud)
    taken = [public.associate_public_ip(cloud.admin, "z1") for _ in range(11)]
    public.release_public_ip(cloud.admin, taken[4].uuid, quarantine_seconds=60)
    with rejects(cloud, AddressExhausted, "(11 addresses)"):
        public.associate_public_ip(cloud.admin, "z1")
    set_columns(
        cloud,
        PublicIpAddress,
        taken[4].uuid,
        quarantine_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert public.associate_public_ip(cloud.admin, "z1").address == taken[4].address


@pytest.mark.parametrize("how", ["free", "reserved"])
def test_only_an_allocated_address_can_be_released(cloud, how) -> None:
    make_ipam_world(cloud)
    if how == "reserved":
        public.reserve_public_ip(cloud.admin, "z1", "203.0.113.10")
    with rejects(
        cloud,
        StateConflict,
        "public address 203.0.113.10 is",
        "only an Allocated address can be released",
    ):
        public.release_public_ip(cloud.admin, "203.0.113.10")


def test_bad_quarantine_is_refused(cloud) -> None:
    make_ipam_world(cloud)
    ip = public.associate_public_ip(cloud.admin, "z1")
    with rejects(cloud, InvalidParameter, "quarantine (seconds) must be at least 0"):
        public.release_public_ip(cloud.admin, ip.uuid, quarantine_seconds=-5)


def test_reserved_addresses_are_never_handed_out_until_unreserved(cloud) -> None:
    make_ipam_world(cloud)
    public.reserve_public_ip(cloud.admin, "z1", "203.0.113.10")
    assert public.associate_public_ip(cloud.admin, "z1").address == "203.0.113.11"
    with rejects(cloud, StateConflict, "203.0.113.10 is already Reserved"):
        public.reserve_public_ip(cloud.admin, "z1", "203.0.113.10")
    public.unreserve_public_ip(cloud.admin, "203.0.113.10")
    assert public.associate_public_ip(cloud.admin, "z1").address == "203.0.113.10"


def test_a_range_with_taken_addresses_cannot_be_deleted(any_cloud) -> None:
    cloud = any_cloud
    world = make_ipam_world(cloud)
    public.associate_public_ip(cloud.admin, "z1")
    public.reserve_public_ip(cloud.admin, "z1", "203.0.113.20")
    with rejects(
        cloud,
        InUse,
        "public IP range 203.0.113.10-203.0.113.20 has 2 addresses in "
        "use (203.0.113.10, 203.0.113.20)",
    ):
        public.delete_public_ip_range(cloud.admin, world.public_range.uuid)


def test_a_free_range_is_deleted_with_its_rows(cloud) -> None:
    world = make_ipam_world(cloud)
    public.delete_public_ip_range(cloud.admin, world.public_range.uuid)
    assert public.list_public_ips(cloud.db) == []
    assert public.list_public_ip_ranges(cloud.admin) == []
    with rejects(cloud, NotFound, "public IP range"):
        public.delete_public_ip_range(cloud.admin, world.public_range.uuid)


def test_public_ips_page_by_id_with_filters(cloud) -> None:
    make_ipam_world(cloud)
    acme = make_account(cloud, "acme")
    public.associate_public_ip(cloud.admin, "z1", account_ref=acme.uuid)
    page1 = public.list_public_ips(cloud.db, limit=4)
    page2 = public.list_public_ips(cloud.db, limit=4, after_id=page1[-1].id)
    rest = public.list_public_ips(cloud.db, limit=100, after_id=page2[-1].id)
    everything = page1 + page2 + rest
    assert len(everything) == 11 and len({r.id for r in everything}) == 11
    assert [r.address for r in public.list_public_ips(cloud.admin, account_id=acme.id)] == [
        "203.0.113.10"
    ]
    assert len(public.list_public_ips(cloud.db, state=IpAddressState.FREE)) == 10


# --- guest networks -----------------------------------------------------------------------

BAD_ISOLATED = [
    pytest.param(
        {"cidr": "10.2.0.0/33"},
        InvalidParameter,
        "cidr '10.2.0.0/33' is not a valid",
        id="cidr-malformed",
    ),
    pytest.param(
        {"cidr": "10.0.0.0/8"},
        InvalidParameter,
        "CIDR 10.0.0.0/8 must be between /16 and /29",
        id="cidr-too-large",
    ),
    pytest.param(
        {"cidr": "10.2.0.0/30"},
        InvalidParameter,
        "must be between /16 and /29",
        id="cidr-too-small",
    ),
    pytest.param(
        {"cidr": "10.2.0.0/24", "gateway": "10.2.1.1"},
        InvalidParameter,
        "gateway 10.2.1.1 is outside 10.2.0.0/24",
        id="gateway-outside",
    ),
    pytest.param(
        {"cidr": "10.2.0.0/24", "gateway": "10.2.0.255"},
        InvalidParameter,
        "gateway 10.2.0.255 is the network or broadcast address",
        id="gateway-broadcast",
    ),
    pytest.param(
        {"cidr": "10.2.0.0/24", "vm_cidr": "10.3.0.0/25"},
        InvalidParameter,
        "VM CIDR 10.3.0.0/25 is not inside the network CIDR 10.2.0.0/24",
        id="vm-cidr-outside",
    ),
    pytest.param(
        {"cidr": "10.1.1.0/24"},
        InvalidParameter,
        "CIDR 10.1.1.0-10.1.1.255 overlaps pod 'rack-1' management range",
        id="overlaps-pod-range",
    ),
    pytest.param(
        {"cidr": "203.0.113.0/24"},
        InvalidParameter,
        "overlaps public IP range 203.0.113.10-203.0.113.20",
        id="overlaps-public",
    ),
    pytest.param(
        {"vni": 4000},
        InvalidParameter,
        "zone 'z1': VNI 4000 is in none of the zone's",
        id="vni-outside-pool",
    ),
    pytest.param({"name": ""}, InvalidParameter, "network '': a name is required", id="no-name"),
]


@pytest.mark.parametrize(("changes", "error", "rule"), BAD_ISOLATED)
def test_isolated_network_rules(cloud, changes, error, rule) -> None:
    make_ipam_world(cloud)
    args = {"name": "net-x"} | changes
    with rejects(cloud, error, rule):
        networks.create_isolated_network(cloud.admin, "z1", args.pop("name"), **args)


def test_isolated_networks_may_share_a_cidr_and_each_get_their_own_vni(cloud) -> None:
    make_ipam_world(cloud)
    a = networks.create_isolated_network(cloud.admin, "z1", "net-a")
    b = networks.create_isolated_network(cloud.admin, "z1", "net-b")
    assert a.cidr == b.cidr == "10.100.0.0/24"  # the zone's guest CIDR
    assert (a.vni, b.vni) == (5000, 5001)
    with rejects(
        cloud, AlreadyExists, "network 'net-a' in zone 'z1': the name 'net-a' is already taken"
    ):
        networks.create_isolated_network(cloud.admin, "z1", "net-a")
    with rejects(cloud, StateConflict, "zone 'z1': VNI 5000 is already in use", field="vni"):
        networks.create_isolated_network(cloud.admin, "z1", "net-c", vni=5000)


def test_isolated_networks_need_an_advanced_zone_with_a_vni_pool(cloud) -> None:
    make_zone(cloud, "basic", network_type="Basic")
    with rejects(
        cloud,
        InvalidParameter,
        "network 'n': isolated networks need an Advanced zone; zone 'basic' is Basic",
        field="zone",
    ):
        networks.create_isolated_network(cloud.admin, "basic", "n")
    make_zone(cloud, "adv")
    with rejects(cloud, AddressExhausted, "zone 'adv' has no VLAN/VNI range"):
        networks.create_isolated_network(cloud.admin, "adv", "n")


def test_vnis_are_used_once_per_zone_and_exhaustion_is_typed(any_cloud) -> None:
    cloud = any_cloud
    make_ipam_world(cloud)
    for n in range(10):
        networks.create_isolated_network(cloud.admin, "z1", f"net-{n}", cidr="10.2.0.0/29")
    with rejects(
        cloud, AddressExhausted, "zone 'z1': every id of vxlan range 5000-5009 (10 ids) is in use"
    ):
        networks.create_isolated_network(cloud.admin, "z1", "one-too-many", cidr="10.2.0.0/29")
    networks.delete_network(cloud.admin, "net-3")
    again = networks.create_isolated_network(cloud.admin, "z1", "net-again", cidr="10.2.0.0/29")
    assert again.vni == 5003


@pytest.mark.parametrize(
    ("first", "last", "isolation", "rule"),
    [
        (10, 5, "vxlan", "first id 10 is after last 5"),
        (0, 5, "vxlan", "first id must be at least 1, got 0"),
        (4000, 4095, "vlan", "vlan range 4000-4095: vlan ids end at 4094"),
        (1, 70000, "vxlan", "holds 70000 ids, more than the 65536"),
        (5005, 5020, "vxlan", "vxlan range 5005-5020: overlaps vxlan range 5000-5009 of zone 'z1'"),
        (1, 5, "gre", "isolation 'gre' is not vlan or vxlan"),
    ],
)
def test_vni_range_rules(cloud, first, last, isolation, rule) -> None:
    make_ipam_world(cloud)
    with rejects(cloud, InvalidParameter, rule):
        vni.add_vni_range(cloud.admin, "z1", first, last, isolation=isolation)


def test_a_vni_range_in_use_cannot_be_deleted(cloud) -> None:
    make_ipam_world(cloud)
    networks.create_isolated_network(cloud.admin, "z1", "net-a")
    (rng,) = vni.list_vni_ranges(cloud.admin, "z1")
    with rejects(cloud, InUse, "vxlan range 5000-5009 has 1 id in use"):
        vni.delete_vni_range(cloud.admin, rng.uuid)
    networks.delete_network(cloud.admin, "net-a")
    vni.delete_vni_range(cloud.admin, rng.uuid)
    assert vni.list_vni_ranges(cloud.admin, "z1") == []


BAD_SHARED = [
    pytest.param(
        {"gateway": "10.9.0.50"},
        "gateway 10.9.0.50 is inside the allocatable range",
        id="gateway-in-range",
    ),
    pytest.param(
        {"end_ip": "10.9.1.5"},
        "range 10.9.0.10-10.9.1.5 is outside its network 10.9.0.0/24",
        id="outside-cidr",
    ),
    pytest.param(
        {"start_ip": "10.9.0.200"}, "range start 10.9.0.200 is after its end", id="reversed"
    ),
    pytest.param(
        {"gateway": "203.0.113.1", "start_ip": "203.0.113.15", "end_ip": "203.0.113.40"},
        "overlaps public IP range 203.0.113.10-203.0.113.20",
        id="overlaps-public",
    ),
    pytest.param(
        {"gateway": "10.1.1.1", "start_ip": "10.1.1.50", "end_ip": "10.1.1.150"},
        "overlaps pod 'rack-1' management range 10.1.1.10-10.1.1.100",
        id="overlaps-pod-range",
    ),
]


@pytest.mark.parametrize(("changes", "rule"), BAD_SHARED)
def test_shared_network_rules(cloud, changes, rule) -> None:
    make_ipam_world(cloud)
    args = {
        "gateway": "10.9.0.1",
        "netmask": "24",
        "start_ip": "10.9.0.10",
        "end_ip": "10.9.0.100",
    } | changes
    with rejects(cloud, InvalidParameter, "network 'shared-x'", rule):
        networks.create_shared_network(cloud.admin, "z1", "shared-x", **args)


def test_per_pod_guest_ranges_belong_to_basic_zones_and_never_overlap(cloud) -> None:
    make_ipam_world(cloud)
    with rejects(
        cloud, InvalidParameter, "per-pod guest ranges need a Basic zone; zone 'z1' is Advanced"
    ):
        networks.add_pod_guest_range(
            cloud.admin,
            "rack-1",
            gateway="10.1.1.1",
            netmask="24",
            start_ip="10.1.1.150",
            end_ip="10.1.1.200",
        )
    make_zone(cloud, "basic", network_type="Basic")
    make_pod(cloud, "basic", "b-rack-1", third_octet=7)
    make_pod(cloud, "basic", "b-rack-2", third_octet=8)
    networks.add_pod_guest_range(
        cloud.admin,
        "b-rack-1",
        gateway="10.1.7.1",
        netmask="24",
        start_ip="10.1.7.150",
        end_ip="10.1.7.200",
    )
    with rejects(
        cloud,
        InvalidParameter,
        "pod 'b-rack-2' guest range 10.1.7.180-10.1.7.220: "
        "range 10.1.7.180-10.1.7.220 overlaps shared network 'guest' range "
        "10.1.7.150-10.1.7.200 in zone 'basic'",
    ):
        networks.add_pod_guest_range(
            cloud.admin,
            "b-rack-2",
            gateway="10.1.7.1",
            netmask="24",
            start_ip="10.1.7.180",
            end_ip="10.1.7.220",
        )
    networks.add_pod_guest_range(
        cloud.admin,
        "b-rack-2",
        gateway="10.1.8.1",
        netmask="24",
        start_ip="10.1.8.150",
        end_ip="10.1.8.200",
    )
    basic_networks = networks.list_networks(cloud.db, guest_type="Shared")
    assert [n.name for n in basic_networks] == ["guest"]  # one shared network per Basic zone


def test_a_basic_zone_vm_gets_an_address_of_its_own_pod(any_cloud) -> None:
    cloud = any_cloud
    zone = make_zone(cloud, "basic", network_type="Basic")
    p1 = make_pod(cloud, "basic", "b-rack-1", third_octet=7)
    p2 = make_pod(cloud, "basic", "b-rack-2", third_octet=8)
    for pod, octet in ((p1, 7), (p2, 8)):
        networks.add_pod_guest_range(
            cloud.admin,
            pod.uuid,
            gateway=f"10.1.{octet}.1",
            netmask="24",
            start_ip=f"10.1.{octet}.150",
            end_ip=f"10.1.{octet}.151",
        )
    vm1 = make_vm(cloud, zone, pod_id=p1.id)
    vm2 = make_vm(cloud, zone, pod_id=p2.id)
    assert networks.allocate_nic(cloud.admin, vm1.uuid, "guest").address == "10.1.7.150"
    assert networks.allocate_nic(cloud.admin, vm2.uuid, "guest").address == "10.1.8.150"
    vm3 = make_vm(cloud, zone, pod_id=p1.id)
    with rejects(
        cloud,
        InvalidParameter,
        "address 10.1.8.151 is outside the allocatable range "
        "of network 'guest' (10.1.7.150-10.1.7.151",
        field="address",
    ):
        networks.allocate_nic(cloud.admin, vm3.uuid, "guest", address="10.1.8.151")
    unplaced = make_vm(cloud, zone)
    with rejects(cloud, InvalidParameter, "the VM has no pod yet"):
        networks.allocate_nic(cloud.admin, unplaced.uuid, "guest")


# --- NICs -----------------------------------------------------------------------------------


def _isolated_29(cloud):
    """net-a: 10.2.0.0/29, gateway .1 → .2-.6 allocatable."""
    world = make_ipam_world(cloud)
    net = networks.create_isolated_network(cloud.admin, "z1", "net-a", cidr="10.2.0.0/29")
    return world, net


BAD_REQUESTS = [
    pytest.param(
        "10.2.1.3",
        InvalidParameter,
        "address 10.2.1.3 is outside network 'net-a' 10.2.0.0/29",
        id="outside-cidr",
    ),
    pytest.param(
        "10.2.0.0",
        InvalidParameter,
        "address 10.2.0.0 is the network or broadcast address of 10.2.0.0/29",
        id="network-address",
    ),
    pytest.param(
        "10.2.0.7", InvalidParameter, "is the network or broadcast address", id="broadcast"
    ),
    pytest.param(
        "10.2.0.1",
        InvalidParameter,
        "address 10.2.0.1 is the gateway of network 'net-a'",
        id="gateway",
    ),
    pytest.param(
        "10.2.0.3",
        AlreadyExists,
        "address 10.2.0.3 of network 'net-a' is already Allocated by VM 'vm-",
        id="taken",
    ),
    pytest.param(
        "10.2.0.x", InvalidParameter, "address '10.2.0.x' is not a valid IPv4", id="malformed"
    ),
]


@pytest.mark.parametrize(("address", "error", "rule"), BAD_REQUESTS)
def test_a_requested_guest_address_must_be_inside_and_free(any_cloud, address, error, rule) -> None:
    cloud = any_cloud
    world, _ = _isolated_29(cloud)
    holder = make_vm(cloud, world.zone)
    networks.allocate_nic(cloud.admin, holder.uuid, "net-a", address="10.2.0.3")
    vm = make_vm(cloud, world.zone)
    with rejects(cloud, error, rule, field="address"):
        networks.allocate_nic(cloud.admin, vm.uuid, "net-a", address=address)


def test_the_reserved_part_of_a_cidr_is_never_handed_out(cloud) -> None:
    world = make_ipam_world(cloud)
    networks.create_isolated_network(
        cloud.admin, "z1", "res", cidr="10.2.0.0/28", vm_cidr="10.2.0.8/29"
    )
    vm = make_vm(cloud, world.zone)
    with rejects(
        cloud,
        InvalidParameter,
        "address 10.2.0.5 is outside the allocatable range of "
        "network 'res' (10.2.0.8-10.2.0.14; the rest is reserved)",
    ):
        networks.allocate_nic(cloud.admin, vm.uuid, "res", address="10.2.0.5")
    got = [
        networks.allocate_nic(cloud.admin, make_vm(cloud, world.zone).uuid, "res").address
        for _ in range(7)
    ]
    assert got == [f"10.2.0.{n}" for n in range(8, 15)]


def test_a_full_network_never_hands_out_network_broadcast_or_gateway(any_cloud) -> None:
    cloud = any_cloud
    world, net = _isolated_29(cloud)
    got = [
        networks.allocate_nic(cloud.admin, make_vm(cloud, world.zone).uuid, "net-a")
        for _ in range(5)
    ]
    assert [n.address for n in got] == ["10.2.0.2", "10.2.0.3", "10.2.0.4", "10.2.0.5", "10.2.0.6"]
    assert len({n.mac for n in got}) == 5 and all(n.is_default for n in got)
    sixth = make_vm(cloud, world.zone)
    with rejects(
        cloud,
        AddressExhausted,
        "network 'net-a': every address of guest range 10.2.0.2-10.2.0.6 (5 addresses) is taken",
    ):
        networks.allocate_nic(cloud.admin, sixth.uuid, "net-a")
    networks.release_nic(cloud.admin, got[2].uuid)
    again = networks.allocate_nic(cloud.admin, make_vm(cloud, world.zone).uuid, "net-a")
    assert again.address == "10.2.0.4"
    assert ipaddress.IPv4Address(again.address) in ipaddress.IPv4Network(net.cidr)


def test_nic_rules(cloud) -> None:
    world, _ = _isolated_29(cloud)
    acme = make_account(cloud, "acme")
    foreign = make_vm(cloud, world.zone, account_id=acme.id)
    with rejects(
        cloud,
        InvalidParameter,
        "network 'net-a' is an isolated network of another account",
        field="network",
    ):
        networks.allocate_nic(cloud.admin, foreign.uuid, "net-a")
    vm = make_vm(cloud, world.zone)
    networks.allocate_nic(cloud.admin, vm.uuid, "net-a")
    with rejects(cloud, AlreadyExists, "already has a NIC on network 'net-a'"):
        networks.allocate_nic(cloud.admin, vm.uuid, "net-a")
    networks.create_isolated_network(cloud.admin, "z1", "net-b", cidr="10.3.0.0/29")
    with rejects(cloud, InvalidParameter, "already has a default NIC", field="is_default"):
        networks.allocate_nic(cloud.admin, vm.uuid, "net-b", is_default=True)
    second = networks.allocate_nic(cloud.admin, vm.uuid, "net-b")
    assert second.is_default is False
    assert [n.network_id for n in networks.list_nics(cloud.admin, vm.uuid)] == [
        n.id for n in networks.list_networks(cloud.db, zone_id=world.zone.id)
    ]


def test_networks_and_ranges_in_use_cannot_be_deleted(cloud) -> None:
    world, _ = _isolated_29(cloud)
    vm = make_vm(cloud, world.zone)
    nic = networks.allocate_nic(cloud.admin, vm.uuid, "net-a")
    with rejects(cloud, InUse, "network 'net-a' still has 1 NIC"):
        networks.delete_network(cloud.admin, "net-a")
    networks.release_nic(cloud.admin, nic.uuid)
    networks.reserve_guest_ip(cloud.admin, "net-a", "10.2.0.4")
    with rejects(cloud, InUse, "network 'net-a' has 1 address in use (10.2.0.4)"):
        networks.delete_network(cloud.admin, "net-a")
    networks.unreserve_guest_ip(cloud.admin, "net-a", "10.2.0.4")
    public.associate_public_ip(cloud.admin, "z1", network_ref="net-a")
    with rejects(cloud, InUse, "network 'net-a' still has 1 public address associated"):
        networks.delete_network(cloud.admin, "net-a")
    networks.create_shared_network(
        cloud.admin,
        "z1",
        "shared",
        gateway="10.9.0.1",
        netmask="24",
        start_ip="10.9.0.10",
        end_ip="10.9.0.20",
    )
    networks.allocate_nic(cloud.admin, make_vm(cloud, world.zone).uuid, "shared")
    (shared,) = networks.list_networks(cloud.db, guest_type="Shared")
    with cloud.db.read() as session:
        from sqlmodel import select

        from engine.models import GuestIpRange

        rng = session.exec(select(GuestIpRange).where(GuestIpRange.network_id == shared.id)).one()
    with rejects(
        cloud,
        InUse,
        "guest range 10.9.0.10-10.9.0.20 of network 'shared' has 1 address in use (10.9.0.10)",
    ):
        networks.delete_guest_ip_range(cloud.admin, rng.uuid)


def test_networks_page_by_id_with_filters(cloud) -> None:
    make_ipam_world(cloud)
    acme = make_account(cloud, "acme")
    for n in range(5):
        networks.create_isolated_network(
            cloud.admin, "z1", f"n{n}", cidr="10.2.0.0/29", account_ref=acme.uuid if n % 2 else None
        )
    first = networks.list_networks(cloud.admin, limit=2)
    rest = networks.list_networks(cloud.admin, limit=10, after_id=first[-1].id)
    assert [n.name for n in first + rest] == ["n0", "n1", "n2", "n3", "n4"]
    assert [n.name for n in networks.list_networks(cloud.db, account_id=acme.id)] == ["n1", "n3"]


# --- pod management addresses ---------------------------------------------------------------


def test_management_addresses_go_to_hosts_and_skip_addresses_hosts_hold(any_cloud) -> None:
    cloud = any_cloud
    make_ipam_world(cloud)
    make_cluster(cloud)
    given = topology.add_host(cloud.admin, "c1", host_spec("h1", address="10.1.1.10"))
    new = topology.add_host(cloud.admin, "c1", host_spec("h2"))
    address = management.allocate_management_ip(cloud.admin, "rack-1", new.uuid)
    assert address == "10.1.1.11"  # .10 is h1's, given when it was added
    assert topology.get_host(cloud.admin, new.uuid).address == "10.1.1.11"
    # Idempotent for a host that already holds one.
    assert management.allocate_management_ip(cloud.admin, "rack-1", new.uuid) == "10.1.1.11"
    assert management.allocate_management_ip(cloud.admin, "rack-1", purpose="ssvm") == "10.1.1.12"
    topology.update_host(cloud.admin, given.uuid, address=None)
    management.release_management_ip(cloud.admin, "rack-1", "10.1.1.12")
    assert management.allocate_management_ip(cloud.admin, "rack-1", purpose="cpvm") == "10.1.1.10"
    # A host moved to another address (by topology) frees its old one and holds the new.
    topology.update_host(cloud.admin, new.uuid, address="10.1.1.13")
    assert management.allocate_management_ip(cloud.admin, "rack-1", purpose="a") == "10.1.1.11"
    assert management.allocate_management_ip(cloud.admin, "rack-1", purpose="b") == "10.1.1.12"
    assert management.allocate_management_ip(cloud.admin, "rack-1", purpose="c") == "10.1.1.14"


def test_management_address_rules(any_cloud) -> None:
    cloud = any_cloud
    make_zone(cloud)
    make_pod(cloud, start_ip="10.1.1.10", end_ip="10.1.1.11")
    make_cluster(cloud)
    h1 = topology.add_host(cloud.admin, "c1", host_spec("h1"))
    h2 = topology.add_host(cloud.admin, "c1", host_spec("h2"))
    h3 = topology.add_host(cloud.admin, "c1", host_spec("h3"))
    with rejects(
        cloud,
        InvalidParameter,
        "pod 'rack-1' management range 10.1.1.10-10.1.1.11: address 10.1.1.50 is outside the range",
        field="address",
    ):
        management.allocate_management_ip(cloud.admin, "rack-1", h1.uuid, address="10.1.1.50")
    management.allocate_management_ip(cloud.admin, "rack-1", h1.uuid, address="10.1.1.11")
    with rejects(cloud, AlreadyExists, "address 10.1.1.11 is already taken", field="address"):
        management.allocate_management_ip(cloud.admin, "rack-1", h2.uuid, address="10.1.1.11")
    management.allocate_management_ip(cloud.admin, "rack-1", h2.uuid)
    with rejects(
        cloud,
        AddressExhausted,
        "pod 'rack-1' management range 10.1.1.10-10.1.1.11: all 2 addresses are taken",
    ):
        management.allocate_management_ip(cloud.admin, "rack-1", h3.uuid)
    with rejects(cloud, StateConflict, "address 10.1.1.12 is not taken", field="address"):
        management.release_management_ip(cloud.admin, "rack-1", "10.1.1.12")
    # A deleted host's address is free again.
    topology.delete_host(cloud.admin, h2.uuid)
    assert management.allocate_management_ip(cloud.admin, "rack-1", h3.uuid) == "10.1.1.10"


def test_operator_changes_are_audited(cloud) -> None:
    world = make_ipam_world(cloud)
    networks.create_isolated_network(cloud.admin, "z1", "net-a")
    public.reserve_public_ip(cloud.admin, "z1", "203.0.113.15")
    public.unreserve_public_ip(cloud.admin, "203.0.113.15")
    networks.delete_network(cloud.admin, "net-a")
    public.delete_public_ip_range(cloud.admin, world.public_range.uuid)
    kinds = [e.event_type for e in events(cloud)]
    for kind in (
        "VLAN.IP.RANGE.CREATE",
        "ZONE.VNI.RANGE.ADD",
        "NETWORK.CREATE",
        "NET.IPRESERVE",
        "NET.IPUNRESERVE",
        "NETWORK.DELETE",
        "VLAN.IP.RANGE.DELETE",
    ):
        assert kind in kinds, kind


def test_rows_cannot_be_taken_twice_even_by_direct_writes(cloud) -> None:
    """The unique constraints are the last line: a second row for one address fails."""
    from sqlalchemy.exc import IntegrityError

    world, net = _isolated_29(cloud)
    vm = make_vm(cloud, world.zone)
    nic = networks.allocate_nic(cloud.admin, vm.uuid, "net-a")
    other = make_vm(cloud, world.zone)
    from engine.models import Nic

    with pytest.raises(IntegrityError), cloud.db.write() as session:
        session.add(
            Nic(
                vm_id=other.id,
                network_id=net.id,
                ip_int=nic.ip_int,
                address=nic.address,
                mac="02:00:00:00:00:01",
            )
        )
    with pytest.raises(IntegrityError), cloud.db.write() as session:
        session.execute(
            update(PublicIpAddress)
            .where(PublicIpAddress.address == "203.0.113.11")
            .values(ip_int=PublicIpAddress.ip_int - 1)
        )


def test_one_vm_on_two_networks_of_one_cidr_gets_two_macs(cloud) -> None:
    world = make_ipam_world(cloud)
    networks.create_isolated_network(cloud.admin, "z1", "iso-1", cidr="10.2.0.0/29")
    networks.create_isolated_network(cloud.admin, "z1", "iso-2", cidr="10.2.0.0/29")
    vm = make_vm(cloud, world.zone)
    first = networks.allocate_nic(cloud.admin, vm.uuid, "iso-1")
    second = networks.allocate_nic(cloud.admin, vm.uuid, "iso-2")
    assert first.address == second.address == "10.2.0.2"
    assert first.mac != second.mac
    assert all(n.mac.startswith("02:00:") for n in (first, second))


def test_what_topology_must_refuse_about_ipam_at_merge(cloud) -> None:
    """The checks engine.ipam.references offers topology.delete_zone / create_pod."""
    from engine.ipam.references import check_pod_management_range, zone_ipam_children
    from engine.models import Zone

    world = make_ipam_world(cloud)
    networks.create_isolated_network(cloud.admin, "z1", "net-a")
    with cloud.db.read() as session:
        zone = session.get(Zone, world.zone.id)
        children = dict(zone_ipam_children(session, world.zone.id))
        assert children == {
            "public IP range": (1, ["203.0.113.10-203.0.113.20"]),
            "guest network": (1, ["net-a"]),
            "VLAN/VNI range": (1, ["5000-5009"]),
        }
        with pytest.raises(InvalidParameter) as info:
            check_pod_management_range(
                session, "pod 'rack-9'", zone, "203.0.113.5", "203.0.113.12", gateway="203.0.113.1"
            )
        assert "overlaps public IP range 203.0.113.10-203.0.113.20 in zone 'z1'" in str(info.value)
        with pytest.raises(InvalidParameter) as info:
            check_pod_management_range(
                session, "pod 'rack-9'", zone, "10.100.0.10", "10.100.0.20", gateway="10.100.0.1"
            )
        assert "overlaps isolated network 'net-a' 10.100.0.0/24" in str(info.value)
        # The pod's own range (and other pods) are topology's business, not refused here.
        check_pod_management_range(
            session, "pod 'rack-1'", zone, "10.1.1.10", "10.1.1.100", gateway="10.1.1.1"
        )


def test_a_gateway_inside_the_vm_range_is_skipped_not_handed_out(cloud) -> None:
    world = make_ipam_world(cloud)
    networks.create_isolated_network(
        cloud.admin, "z1", "mid", cidr="10.2.0.0/29", gateway="10.2.0.4"
    )
    got = [
        networks.allocate_nic(cloud.admin, make_vm(cloud, world.zone).uuid, "mid").address
        for _ in range(5)
    ]
    assert got == ["10.2.0.1", "10.2.0.2", "10.2.0.3", "10.2.0.5", "10.2.0.6"]


def test_free_guest_ranges_are_deleted_and_isolated_ranges_go_with_their_network(cloud) -> None:
    from sqlmodel import select

    from engine.models import GuestIpAddress, GuestIpRange

    make_ipam_world(cloud)
    shared = networks.create_shared_network(
        cloud.admin,
        "z1",
        "shared",
        gateway="10.9.0.1",
        netmask="24",
        start_ip="10.9.0.10",
        end_ip="10.9.0.20",
    )
    iso = networks.create_isolated_network(cloud.admin, "z1", "iso", cidr="10.2.0.0/29")
    with cloud.db.read() as session:
        ranges = {r.network_id: r for r in session.exec(select(GuestIpRange))}
    with rejects(cloud, InvalidParameter, "an isolated network's range goes with the network"):
        networks.delete_guest_ip_range(cloud.admin, ranges[iso.id].uuid)
    networks.delete_guest_ip_range(cloud.admin, ranges[shared.id].uuid)
    with cloud.db.read() as session:
        left = session.exec(select(GuestIpAddress.network_id).distinct()).all()
    assert left == [iso.id]


def test_a_pod_scoped_public_range_needs_a_pod_of_its_zone(cloud) -> None:
    make_ipam_world(cloud)
    make_zone(cloud, "z2")
    make_pod(cloud, "z2", "other-rack", third_octet=9)
    with rejects(cloud, NotFound, "pod 'other-rack' does not exist in zone 'z1'", field="pod"):
        _range(cloud, pod_ref="other-rack")
    rng = _range(cloud, pod_ref="rack-1")
    assert rng.pod_id is not None
