"""Every validation rule of the topology services, with bad input: the call raises the
specific typed error, its message names the object and the rule, `err.field` names the
parameter, and the database (every table, the audit log included) is left unchanged.

The pod rules and host uniqueness run on SQLite and PostgreSQL (`any_cloud`); the rest on
SQLite.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from helpers import (
    GIB,
    MIB,
    db_snapshot,
    events,
    host_spec,
    make_cluster,
    make_pod,
    make_world,
    make_zone,
    rejects,
    set_columns,
)

from engine import topology as t
from engine.errors import AlreadyExists, InUse, InvalidParameter, NotFound, StateConflict
from engine.models import Host, ImageStore, ResourceState, StoragePool, StoragePoolStatus

# --- names (shared by every create service) ----------------------------------------------

BAD_NAMES = [
    pytest.param("", "a name is required", id="empty"),
    pytest.param("   ", "a name is required", id="blank"),
    pytest.param("x" * 256, "name is 256 characters long, the limit is 255", id="too-long"),
    pytest.param("bad\x00name", "name contains control characters", id="nul"),
    pytest.param("tab\tname", "name contains control characters", id="tab"),
    pytest.param("line\nbreak", "name contains control characters", id="newline"),
    pytest.param("del\x7f", "name contains control characters", id="del"),
]


def _create_named(kind: str, cloud, name: str) -> None:
    admin = cloud.admin
    if kind == "zone":
        t.create_zone(admin, name, dns1="8.8.8.8")
    elif kind == "pod":
        t.create_pod(admin, "z1", name, gateway="10.1.9.1", netmask="24", start_ip="10.1.9.10")
    elif kind == "cluster":
        t.create_cluster(admin, "rack-1", name)
    elif kind == "host":
        t.add_host(admin, "c1", host_spec(name, uri="test:///hosts/new.xml"))
    elif kind == "primary storage":
        t.create_storage_pool(admin, name, path="/srv/new", cluster_ref="c1")
    elif kind == "image store":
        t.add_image_store(admin, "z1", name, url="/srv/secondary-new")
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["zone", "pod", "cluster", "host", "primary storage", "image store"]
)
@pytest.mark.parametrize(("name", "rule"), BAD_NAMES)
def test_bad_names_are_rejected_everywhere(cloud, kind: str, name: str, rule: str) -> None:
    make_world(cloud)
    with rejects(cloud, InvalidParameter, f"{kind} '", rule, field="name"):
        _create_named(kind, cloud, name)


def test_names_are_stripped(cloud) -> None:
    zone = make_zone(cloud, "  padded  ")
    assert zone.name == "padded"


def test_a_name_of_exactly_255_characters_is_accepted(cloud) -> None:
    assert make_zone(cloud, "z" * 255).name == "z" * 255


# --- zones -------------------------------------------------------------------------------


def test_zone_duplicate_name(cloud) -> None:
    make_zone(cloud, "z1")
    with rejects(cloud, AlreadyExists, "zone 'z1'", "the name 'z1' is already taken", field="name"):
        make_zone(cloud, "z1", dns1="1.1.1.1")


@pytest.mark.parametrize("network_type", ["Hybrid", "", "Adv", "None"])
def test_zone_network_type_must_be_basic_or_advanced(cloud, network_type: str) -> None:
    with rejects(
        cloud,
        InvalidParameter,
        "zone 'z1'",
        f"network type {network_type!r} is not Basic or Advanced",
        field="network_type",
    ):
        make_zone(cloud, "z1", network_type=network_type)


@pytest.mark.parametrize("network_type", ["basic", "ADVANCED", "Basic", "advanced"])
def test_zone_network_type_is_case_insensitive(cloud, network_type: str) -> None:
    zone = make_zone(cloud, "z1", network_type=network_type)
    assert zone.network_type == network_type.capitalize()


@pytest.mark.parametrize(
    ("key", "what", "value"),
    [
        ("dns1", "DNS 1", "8.8.8"),
        ("dns1", "DNS 1", "dns.google"),
        ("dns2", "DNS 2", "1.1.1.256"),
        ("internal_dns1", "internal DNS 1", "10.0.0.1/24"),
        ("internal_dns2", "internal DNS 2", "fd00::zz"),
    ],
)
def test_zone_dns_must_be_ip_addresses(cloud, key: str, what: str, value: str) -> None:
    kwargs: dict[str, Any] = {"dns1": "8.8.8.8", key: value}
    with rejects(
        cloud,
        InvalidParameter,
        "zone 'z1'",
        f"{what} {value!r} is not a valid IP address",
        field=key,
    ):
        t.create_zone(cloud.admin, "z1", **kwargs)


@pytest.mark.parametrize("dns1", ["", None])
def test_zone_needs_dns1(cloud, dns1: str | None) -> None:
    with rejects(cloud, InvalidParameter, "zone 'z1'", "DNS 1 is required", field="dns1"):
        t.create_zone(cloud.admin, "z1", dns1=dns1)  # type: ignore[arg-type]


def test_zone_internal_dns_defaults_to_dns1_and_ipv6_dns_is_allowed(cloud) -> None:
    zone = make_zone(cloud, "z1", dns1="2001:4860:4860::8888")
    assert zone.internal_dns1 == "2001:4860:4860::8888"


@pytest.mark.parametrize(
    ("cidr", "rule"),
    [
        ("10.1.1.0", "'10.1.1.0' is not in CIDR form"),
        ("10.1.1.5/24", "'10.1.1.5/24' has host bits set"),
        ("10.1.1.0/33", "'10.1.1.0/33' is not a valid IPv4 CIDR"),
        ("fd00::/64", "'fd00::/64' is not a valid IPv4 CIDR"),
        ("banana/8", "'banana/8' is not a valid IPv4 CIDR"),
    ],
)
def test_advanced_zone_guest_cidr_must_be_a_cidr(cloud, cidr: str, rule: str) -> None:
    with rejects(cloud, InvalidParameter, "zone 'z1'", f"guest_cidr {rule}", field="guest_cidr"):
        make_zone(cloud, "z1", network_type="Advanced", guest_cidr=cidr)


@pytest.mark.parametrize(
    "cidr",
    [
        "8.8.8.0/24",
        "100.64.0.0/24",  # shared address space (carrier-grade NAT)
        # Python's is_private also covers loopback, link-local, documentation and reserved
        # space; none of them is RFC 1918 and none can carry guest networks.
        "127.0.0.0/24",
        "169.254.0.0/16",
        "192.0.2.0/24",
        "240.0.0.0/8",
    ],
)
def test_advanced_zone_guest_cidr_must_be_rfc1918(cloud, cidr: str) -> None:
    with rejects(
        cloud,
        InvalidParameter,
        "zone 'z1'",
        f"guest CIDR {cidr} is not a private (RFC 1918) network",
        field="guest_cidr",
    ):
        make_zone(cloud, "z1", network_type="Advanced", guest_cidr=cidr)


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "172.16.0.0/12", "192.168.10.0/24"])
def test_advanced_zone_accepts_rfc1918_guest_cidrs(cloud, cidr: str) -> None:
    assert make_zone(cloud, "z1", guest_cidr=cidr).guest_cidr == cidr


def test_advanced_zone_gets_a_default_guest_cidr(cloud) -> None:
    assert make_zone(cloud, "z1").guest_cidr == "10.1.1.0/24"


def test_basic_zone_has_no_guest_cidr(cloud) -> None:
    with rejects(
        cloud,
        InvalidParameter,
        "zone 'z1'",
        "a Basic zone has no guest CIDR",
        field="guest_cidr",
    ):
        make_zone(cloud, "z1", network_type="Basic", guest_cidr="10.1.0.0/16")
    assert make_zone(cloud, "z1", network_type="Basic").guest_cidr is None


@pytest.mark.parametrize(
    ("kwargs", "rule", "field"),
    [
        ({"description": "d" * 1025}, "description is 1025 characters long", "description"),
        ({"description": "bell\x07"}, "description contains control characters", "description"),
        (
            {"network_domain": "n" * 256},
            "network_domain is 256 characters long, the limit is 255",
            "network_domain",
        ),
        (
            {"network_domain": "a\x1bb"},
            "network_domain contains control characters",
            "network_domain",
        ),
    ],
)
def test_zone_text_fields(cloud, kwargs: dict[str, Any], rule: str, field: str) -> None:
    with rejects(cloud, InvalidParameter, "zone 'z1'", rule, field=field):
        make_zone(cloud, "z1", **kwargs)


def test_update_zone_to_a_duplicate_name(cloud) -> None:
    make_zone(cloud, "z1")
    make_zone(cloud, "z2")
    with rejects(cloud, AlreadyExists, "zone 'z2'", "the name 'z1' is already taken", field="name"):
        t.update_zone(cloud.admin, "z2", name="z1")


def test_update_zone_renaming_to_its_own_name_is_fine(cloud) -> None:
    make_zone(cloud, "z1")
    assert t.update_zone(cloud.admin, "z1", name="z1", description="same").description == "same"


@pytest.mark.parametrize("new_type", ["Basic", "basic"])
def test_update_zone_network_type_while_pods_exist(cloud, new_type: str) -> None:
    make_zone(cloud, "z1")
    make_pod(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "zone 'z1'",
        "the network type cannot change while the zone has pods",
        field="network_type",
    ):
        t.update_zone(cloud.admin, "z1", network_type=new_type)


@pytest.mark.parametrize("new_type", ["Basic", "basic"])
def test_update_empty_advanced_zone_to_basic_drops_the_guest_cidr(cloud, new_type: str) -> None:
    """The type is case-insensitive on create; it must be on update too."""
    make_zone(cloud, "z1", guest_cidr="10.5.0.0/16")
    zone = t.update_zone(cloud.admin, "z1", network_type=new_type)
    assert (zone.network_type, zone.guest_cidr) == ("Basic", None)


@pytest.mark.parametrize(
    ("changes", "error", "fragments", "field"),
    [
        ({"dns1": "nope"}, InvalidParameter, ["DNS 1 'nope' is not a valid IP address"], "dns1"),
        ({"dns1": ""}, InvalidParameter, ["DNS 1 is required"], "dns1"),
        ({"guest_cidr": "10.0.0.1/8"}, InvalidParameter, ["has host bits set"], "guest_cidr"),
        ({"guest_cidr": "8.8.0.0/16"}, InvalidParameter, ["not a private"], "guest_cidr"),
        ({"network_type": "Hybrid"}, InvalidParameter, ["'Hybrid'"], "network_type"),
        ({"name": ""}, InvalidParameter, ["a name is required"], "name"),
        ({"name": "x\x00"}, InvalidParameter, ["control characters"], "name"),
    ],
)
def test_update_zone_validates_like_create(
    cloud, changes: dict[str, Any], error: type, fragments: list[str], field: str
) -> None:
    make_zone(cloud, "z1")
    with rejects(cloud, error, "zone 'z1'", *fragments, field=field):
        t.update_zone(cloud.admin, "z1", **changes)


def test_unknown_zone_is_not_found(cloud) -> None:
    with rejects(cloud, NotFound, "zone 'nowhere' does not exist", field="zone"):
        t.update_zone(cloud.admin, "nowhere", description="x")
    with rejects(cloud, NotFound, "zone 'nowhere' does not exist", field="zone"):
        make_pod(cloud, "nowhere")


# --- pods (SQLite and PostgreSQL) --------------------------------------------------------

# rack-1 is 10.1.1.0/24, gateway .1, management .10-.200. Each case creates pod 'rack-2'.
POD_CASES = [
    pytest.param(
        {"gateway": "10.1.2.256"},
        ["gateway '10.1.2.256' is not a valid IPv4 address"],
        "gateway",
        id="gateway-not-an-address",
    ),
    pytest.param(
        {"gateway": "fd00::1"},
        ["gateway 'fd00::1' is not a valid IPv4 address"],
        "gateway",
        id="gateway-ipv6",
    ),
    pytest.param(
        {"netmask": "255.0.255.0"},
        ["netmask '255.0.255.0' is not a valid IPv4 netmask"],
        "netmask",
        id="netmask-not-contiguous",
    ),
    pytest.param(
        {"netmask": "33"}, ["netmask '33' is not a valid IPv4 netmask"], "netmask", id="netmask-33"
    ),
    pytest.param(
        {"netmask": "mask"},
        ["netmask 'mask' is not a valid IPv4 netmask"],
        "netmask",
        id="netmask-word",
    ),
    pytest.param(
        {"netmask": "255.255.255.254", "start_ip": "10.1.2.1", "end_ip": "10.1.2.1"},
        ["netmask /31 is outside /8../30"],
        "netmask",
        id="prefix-31",
    ),
    pytest.param({"netmask": "/32"}, ["netmask /32 is outside /8../30"], "netmask", id="prefix-32"),
    pytest.param(
        {"netmask": "254.0.0.0"}, ["netmask /7 is outside /8../30"], "netmask", id="prefix-7"
    ),
    pytest.param(
        {"netmask": None, "cidr": "10.0.0.0/7"},
        ["netmask /7 is outside /8../30"],
        "netmask",
        id="cidr-prefix-7",
    ),
    pytest.param(
        {"netmask": None},
        ["a netmask or a CIDR is required"],
        "netmask",
        id="no-netmask-no-cidr",
    ),
    pytest.param(
        {"gateway": "10.1.2.0"},
        ["gateway 10.1.2.0 is the network or broadcast address of 10.1.2.0/24"],
        "gateway",
        id="gateway-is-network",
    ),
    pytest.param(
        {"gateway": "10.1.2.255"},
        ["gateway 10.1.2.255 is the network or broadcast address of 10.1.2.0/24"],
        "gateway",
        id="gateway-is-broadcast",
    ),
    pytest.param(
        {"gateway": "10.1.3.1", "netmask": None, "cidr": "10.1.2.0/24"},
        ["pod 'rack-2': gateway 10.1.3.1 is outside 10.1.2.0/24"],
        "gateway",
        id="gateway-outside-cidr",
    ),
    pytest.param(
        {"netmask": None, "cidr": "10.1.2.5/24"},
        ["cidr '10.1.2.5/24' has host bits set"],
        "cidr",
        id="cidr-host-bits",
    ),
    pytest.param(
        {"netmask": None, "cidr": "10.1.2.0"},
        ["cidr '10.1.2.0' is not in CIDR form"],
        "cidr",
        id="cidr-no-prefix",
    ),
    pytest.param(
        {"netmask": "255.255.0.0", "cidr": "10.1.2.0/24"},
        ["netmask 255.255.0.0 does not match CIDR 10.1.2.0/24"],
        "netmask",
        id="netmask-mismatches-cidr",
    ),
    pytest.param(
        {"start_ip": "10.1.2.x"},
        ["management range start '10.1.2.x' is not a valid IPv4 address"],
        "start_ip",
        id="start-not-an-address",
    ),
    pytest.param(
        {"end_ip": "10.1.2"},
        ["management range end '10.1.2' is not a valid IPv4 address"],
        "end_ip",
        id="end-not-an-address",
    ),
    pytest.param(
        {"start_ip": "10.1.2.50", "end_ip": "10.1.2.10"},
        ["management range start 10.1.2.50 is after its end 10.1.2.10"],
        "end_ip",
        id="start-after-end",
    ),
    pytest.param(
        {"start_ip": "10.1.2.10", "end_ip": "10.1.3.5"},
        ["management range 10.1.2.10-10.1.3.5 is outside the pod network 10.1.2.0/24"],
        "end_ip",
        id="end-outside-network",
    ),
    pytest.param(
        {"start_ip": "10.0.255.250", "end_ip": "10.1.2.20"},
        ["management range 10.0.255.250-10.1.2.20 is outside the pod network 10.1.2.0/24"],
        "start_ip",
        id="start-outside-network",
    ),
    pytest.param(
        {"start_ip": "10.1.2.0", "end_ip": "10.1.2.20"},
        ["management range 10.1.2.0-10.1.2.20 includes the network or broadcast address"],
        "start_ip",
        id="range-includes-network",
    ),
    pytest.param(
        {"start_ip": "10.1.2.200", "end_ip": "10.1.2.255"},
        ["management range 10.1.2.200-10.1.2.255 includes the network or broadcast address"],
        "end_ip",
        id="range-includes-broadcast",
    ),
    pytest.param(
        {"gateway": "10.1.2.20"},
        ["gateway 10.1.2.20 is inside the management range 10.1.2.10-10.1.2.100"],
        "gateway",
        id="gateway-inside-range",
    ),
    pytest.param(
        {"gateway": "10.1.2.10", "start_ip": "10.1.2.10", "end_ip": None},
        ["gateway 10.1.2.10 is inside the management range 10.1.2.10-10.1.2.10"],
        "gateway",
        id="single-address-range-is-gateway",
    ),
    pytest.param(
        {
            "gateway": "10.1.1.129",
            "netmask": "255.255.255.128",
            "start_ip": "10.1.1.150",
            "end_ip": "10.1.1.160",
        },
        [
            "management range 10.1.1.150-10.1.1.160 overlaps pod 'rack-1' "
            "range 10.1.1.10-10.1.1.200 in zone 'z1'"
        ],
        "start_ip",
        id="range-overlaps-other-pod-range",
    ),
    pytest.param(
        {
            "gateway": "10.1.1.129",
            "netmask": "255.255.255.128",
            "start_ip": "10.1.1.210",
            "end_ip": "10.1.1.220",
        },
        [
            "network 10.1.1.128/25 overlaps pod 'rack-1' network 10.1.1.0/24 in zone 'z1'",
            "pods of a zone need distinct CIDRs",
        ],
        "netmask",
        id="network-inside-other-pod-network",
    ),
    pytest.param(
        {
            "gateway": "10.1.0.1",
            "netmask": "255.255.0.0",
            "start_ip": "10.1.2.10",
            "end_ip": "10.1.2.20",
        },
        ["network 10.1.0.0/16 overlaps pod 'rack-1' network 10.1.1.0/24 in zone 'z1'"],
        "netmask",
        id="network-contains-other-pod-network",
    ),
]


def _pod_zone(cloud) -> None:
    make_zone(cloud, "z1")
    make_pod(cloud, end_ip="10.1.1.200")


def _rack2(cloud, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "gateway": "10.1.2.1",
        "netmask": "255.255.255.0",
        "start_ip": "10.1.2.10",
        "end_ip": "10.1.2.100",
    }
    kwargs.update(overrides)
    return t.create_pod(cloud.admin, "z1", "rack-2", **kwargs)


@pytest.mark.parametrize(("overrides", "fragments", "field"), POD_CASES)
def test_pod_network_rules(
    any_cloud, overrides: dict[str, Any], fragments: list[str], field: str
) -> None:
    _pod_zone(any_cloud)
    with rejects(any_cloud, InvalidParameter, "pod 'rack-2'", *fragments, field=field):
        _rack2(any_cloud, **overrides)


def test_pod_network_good_variants(any_cloud) -> None:
    """Positive controls for the rules above: each of these is a valid pod."""
    _pod_zone(any_cloud)
    assert _rack2(any_cloud, netmask="24").cidr == "10.1.2.0/24"
    pod = t.create_pod(
        any_cloud.admin,
        "z1",
        "rack-3",
        gateway="10.1.3.1",
        cidr="10.1.3.0/24",
        start_ip="10.1.3.2",
        end_ip="10.1.3.254",
    )
    assert (pod.netmask, pod.cidr) == ("255.255.255.0", "10.1.3.0/24")
    pod = t.create_pod(
        any_cloud.admin,
        "z1",
        "rack-4",
        gateway="10.1.4.1",
        netmask="255.255.255.252",
        start_ip="10.1.4.2",
    )
    assert (pod.cidr, pod.start_ip, pod.end_ip) == ("10.1.4.0/30", "10.1.4.2", "10.1.4.2")
    # The gateway may also sit above the range.
    assert (
        t.create_pod(
            any_cloud.admin,
            "z1",
            "rack-5",
            gateway="10.1.5.254",
            netmask="/24",
            start_ip="10.1.5.1",
            end_ip="10.1.5.253",
        ).gateway
        == "10.1.5.254"
    )


def test_pod_duplicate_name_in_zone(any_cloud) -> None:
    _pod_zone(any_cloud)
    with rejects(
        any_cloud,
        AlreadyExists,
        "pod 'rack-1' in zone 'z1'",
        "the name 'rack-1' is already taken",
        field="name",
    ):
        make_pod(any_cloud, "z1", "rack-1", third_octet=2)


def test_same_pod_name_and_cidr_in_another_zone_are_fine(any_cloud) -> None:
    _pod_zone(any_cloud)
    make_zone(any_cloud, "z2")
    pod = make_pod(any_cloud, "z2", "rack-1", end_ip="10.1.1.200")
    assert (pod.name, pod.cidr) == ("rack-1", "10.1.1.0/24")
    assert {p.zone_id for p in t.list_pods(any_cloud.admin)} == {
        t.get_zone(any_cloud.admin, "z1").id,
        t.get_zone(any_cloud.admin, "z2").id,
    }


def test_pod_in_unknown_zone(any_cloud) -> None:
    with rejects(any_cloud, NotFound, "zone 'z9' does not exist", field="zone"):
        make_pod(any_cloud, "z9")


def test_update_pod_that_would_strand_a_host(any_cloud) -> None:
    world = make_world(any_cloud)  # h1 has address 10.1.1.150
    with rejects(
        any_cloud,
        InvalidParameter,
        "pod 'rack-1'",
        "network 10.1.1.0/25 would leave hosts outside it",
        "h1 (10.1.1.150)",
        field="netmask",
    ):
        t.update_pod(any_cloud.admin, world.pod.uuid, netmask="255.255.255.128")
    # A change that keeps the host inside is fine, and the pod does not clash with itself.
    pod = t.update_pod(any_cloud.admin, world.pod.uuid, end_ip="10.1.1.120")
    assert (pod.cidr, pod.end_ip) == ("10.1.1.0/24", "10.1.1.120")


@pytest.mark.parametrize(
    ("changes", "error", "fragments", "field"),
    [
        (
            {"cidr": "10.1.2.0/24", "gateway": "10.1.2.1"},
            InvalidParameter,
            ["management range 10.1.1.10-10.1.1.100 is outside the pod network 10.1.2.0/24"],
            "start_ip",
        ),
        (
            {"gateway": "10.1.1.50"},
            InvalidParameter,
            ["gateway 10.1.1.50 is inside the management range 10.1.1.10-10.1.1.100"],
            "gateway",
        ),
        (
            {"netmask": "255.255.0.0"},
            InvalidParameter,
            ["network 10.1.0.0/16 overlaps pod 'rack-2' network 10.1.2.0/24 in zone 'z1'"],
            "netmask",
        ),
        (
            {"name": "rack-2"},
            AlreadyExists,
            ["in zone 'z1'", "the name 'rack-2' is already taken"],
            "name",
        ),
        ({"name": " "}, InvalidParameter, ["a name is required"], "name"),
    ],
)
def test_update_pod_validates_like_create(
    any_cloud, changes: dict[str, Any], error: type, fragments: list[str], field: str
) -> None:
    make_zone(any_cloud, "z1")
    pod = make_pod(any_cloud)
    make_pod(any_cloud, name="rack-2", third_octet=2)
    with rejects(any_cloud, error, "pod 'rack-1'", *fragments, field=field):
        t.update_pod(any_cloud.admin, pod.uuid, **changes)


# --- clusters ----------------------------------------------------------------------------

CLUSTER_WHAT = {
    "cpu_overprovisioning_factor": "CPU overprovisioning factor",
    "mem_overprovisioning_factor": "memory overprovisioning factor",
    "cpu_disable_threshold": "CPU allocated-capacity disable threshold",
    "mem_disable_threshold": "memory allocated-capacity disable threshold",
}
BAD_FACTORS = [
    (0.5, "must be at least 1.0, got 0.5"),
    (0, "must be at least 1.0, got 0"),
    (-2, "must be at least 1.0, got -2"),
    (0.999, "must be at least 1.0, got 0.999"),
    (float("nan"), "must be at least 1.0, got nan"),
    (float("inf"), "must be at least 1.0, got inf"),
    ("lots", "'lots' is not a number"),
    ("", "'' is not a number"),
    ([2], "[2] is not a number"),
]
BAD_THRESHOLDS = [
    (0, "must be above 0 and at most 1, got 0"),
    (-0.1, "must be above 0 and at most 1, got -0.1"),
    (1.01, "must be above 0 and at most 1, got 1.01"),
    (float("nan"), "must be above 0 and at most 1, got nan"),
    ("high", "'high' is not a number"),
]
CLUSTER_TUNABLE_CASES = [
    pytest.param(key, value, rule, id=f"{key}={value!r}")
    for key in ("cpu_overprovisioning_factor", "mem_overprovisioning_factor")
    for value, rule in BAD_FACTORS
] + [
    pytest.param(key, value, rule, id=f"{key}={value!r}")
    for key in ("cpu_disable_threshold", "mem_disable_threshold")
    for value, rule in BAD_THRESHOLDS
]


@pytest.mark.parametrize(("key", "value", "rule"), CLUSTER_TUNABLE_CASES)
def test_cluster_factor_and_threshold_rules(cloud, key: str, value: Any, rule: str) -> None:
    make_zone(cloud)
    make_pod(cloud)
    with rejects(cloud, InvalidParameter, "cluster 'c1'", CLUSTER_WHAT[key], rule, field=key):
        make_cluster(cloud, **{key: value})


@pytest.mark.parametrize(("key", "value", "rule"), CLUSTER_TUNABLE_CASES)
def test_update_cluster_factor_and_threshold_rules(cloud, key: str, value: Any, rule: str) -> None:
    world = make_world(cloud)
    with rejects(cloud, InvalidParameter, "cluster 'c1'", CLUSTER_WHAT[key], rule, field=key):
        t.update_cluster(cloud.admin, world.cluster.uuid, **{key: value})


def test_cluster_good_tunables_are_stored(cloud) -> None:
    make_zone(cloud)
    make_pod(cloud)
    cluster = make_cluster(
        cloud,
        cpu_overprovisioning_factor="2.5",
        mem_overprovisioning_factor=1,
        cpu_disable_threshold=1,
        mem_disable_threshold=0.01,
    )
    assert (
        cluster.cpu_overprovisioning_factor,
        cluster.mem_overprovisioning_factor,
        cluster.cpu_disable_threshold,
        cluster.mem_disable_threshold,
    ) == (2.5, 1.0, 1.0, 0.01)


@pytest.mark.parametrize("hypervisor", ["XenServer", "vmware", "", "kvm2"])
def test_cluster_hypervisor_must_be_kvm(cloud, hypervisor: str) -> None:
    make_zone(cloud)
    make_pod(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "cluster 'c1'",
        f"hypervisor {hypervisor!r} is not supported",
        field="hypervisor",
    ):
        make_cluster(cloud, hypervisor=hypervisor)
    assert make_cluster(cloud, hypervisor="kvm").hypervisor == "KVM"


def test_cluster_duplicate_name_in_pod(cloud) -> None:
    world = make_world(cloud)
    with rejects(
        cloud,
        AlreadyExists,
        "cluster 'c1' in pod 'rack-1'",
        "the name 'c1' is already taken",
        field="name",
    ):
        make_cluster(cloud, world.pod.uuid, "c1")
    make_pod(cloud, name="rack-2", third_octet=2)
    assert make_cluster(cloud, "rack-2", "c1").name == "c1"


def test_update_cluster_to_a_duplicate_name(cloud) -> None:
    make_world(cloud)
    other = make_cluster(cloud, "rack-1", "c2")
    with rejects(
        cloud, AlreadyExists, "cluster 'c2'", "the name 'c1' is already taken", field="name"
    ):
        t.update_cluster(cloud.admin, other.uuid, name="c1")


def test_cluster_in_unknown_pod(cloud) -> None:
    make_zone(cloud)
    with rejects(cloud, NotFound, "pod 'nope' does not exist", field="pod"):
        make_cluster(cloud, "nope")
    make_pod(cloud)
    make_zone(cloud, "z2")
    # The pod exists, but not in the zone given.
    with rejects(cloud, NotFound, "pod 'rack-1' does not exist", field="pod"):
        t.create_cluster(cloud.admin, "rack-1", "c1", zone_ref="z2")


# --- hosts -------------------------------------------------------------------------------

BAD_URIS = [
    pytest.param("", "a libvirt URI is required", id="empty"),
    pytest.param("   ", "a libvirt URI is required", id="blank"),
    pytest.param("qemu:///sys tem", "contains spaces or control characters", id="space"),
    pytest.param("qemu:///sys\ttem", "contains spaces or control characters", id="tab"),
    pytest.param("http://kvm1/system", "has scheme 'http'", id="http"),
    pytest.param("kvm1.example.org", "has scheme '(none)'", id="no-scheme"),
    pytest.param("xen:///system", "has scheme 'xen'", id="xen"),
    pytest.param("qemu:///wrong", "must end in /system or /session", id="qemu-wrong-path"),
    pytest.param("qemu+ssh://kvm1/", "must end in /system or /session", id="ssh-no-path"),
    pytest.param(
        "qemu+ssh:///system", "uses a remote transport but names no host", id="ssh-no-host"
    ),
    pytest.param(
        "qemu+tcp:///session", "uses a remote transport but names no host", id="tcp-no-host"
    ),
    pytest.param(
        "qemu://kvm1/system",
        "is a local transport and must not name a host (use qemu+ssh://kvm1/system)",
        id="local-with-host",
    ),
    pytest.param("test:///", "must name a test-driver node file", id="test-no-path"),
    pytest.param("test:", "must name a test-driver node file", id="test-bare"),
    pytest.param("test://node/x.xml", "must name a test-driver node file", id="test-with-host"),
    pytest.param("qemu+ssh://kvm1:port/system", "has an invalid port", id="port-word"),
    pytest.param("qemu+ssh://kvm1:70000/system", "has an invalid port", id="port-too-big"),
]


@pytest.mark.parametrize(("uri", "rule"), BAD_URIS)
def test_host_uri_rules(cloud, uri: str, rule: str) -> None:
    make_world(cloud)
    with rejects(cloud, InvalidParameter, "host 'h2'", rule, field="uri"):
        t.add_host(cloud.admin, "c1", host_spec("h2", uri=uri))


@pytest.mark.parametrize(
    "uri",
    [
        "test:///default",
        "test:///var/lib/stratus/nodes/n1.xml",
        "qemu:///system",
        "qemu:///session",
        "qemu+ssh://root@kvm1/system",
        "qemu+tcp://kvm1:16509/system",
        "qemu+tls://kvm1.example.org/system",
    ],
)
def test_host_uri_good_forms(cloud, uri: str) -> None:
    make_world(cloud)
    assert t.add_host(cloud.admin, "c1", host_spec("h2", uri=uri)).uri == uri


def test_host_uri_surrounding_whitespace_is_stripped(cloud) -> None:
    make_world(cloud)
    assert t.add_host(cloud.admin, "c1", host_spec("h2", uri=" qemu:///system\n")).uri == (
        "qemu:///system"
    )


def test_host_duplicate_uri_in_topology(any_cloud) -> None:
    world = make_world(any_cloud)
    # Even in another cluster of another pod: a URI is one host, wherever it is.
    make_pod(any_cloud, name="rack-2", third_octet=2)
    make_cluster(any_cloud, "rack-2", "c2")
    with rejects(
        any_cloud,
        AlreadyExists,
        f"host URI {world.host.uri} is already in the topology as host 'h1'",
        field="uri",
    ):
        t.add_host(any_cloud.admin, "c2", host_spec("h2", uri=world.host.uri))


def test_host_duplicate_uri_in_one_bulk_call_writes_nothing(any_cloud) -> None:
    make_world(any_cloud)
    specs = [
        host_spec("h2"),
        host_spec("h3", uri="test:///hosts/same.xml"),
        host_spec("h4"),
        host_spec("h5", uri="test:///hosts/same.xml"),
    ]
    with rejects(
        any_cloud,
        AlreadyExists,
        "host 'h5': URI test:///hosts/same.xml is given twice",
        field="uri",
    ):
        t.add_hosts(any_cloud.admin, "c1", specs)
    assert [h.name for h in t.list_hosts(any_cloud.admin)] == ["h1"]


def test_host_duplicate_name_in_one_bulk_call_writes_nothing(any_cloud) -> None:
    make_world(any_cloud)
    specs = [host_spec("h2"), host_spec("h2", uri="test:///hosts/other.xml")]
    with rejects(any_cloud, AlreadyExists, "host 'h2': the name is given twice", field="name"):
        t.add_hosts(any_cloud.admin, "c1", specs)


def test_host_bulk_with_one_bad_spec_writes_nothing(any_cloud) -> None:
    make_world(any_cloud)
    specs = [host_spec(f"n{i}", tags=["ssd"]) for i in range(20)]
    specs[13] = host_spec("n13", cpu_mhz=0)
    with rejects(
        any_cloud,
        InvalidParameter,
        "host 'n13': CPU speed (MHz) must be at least 1, got 0",
        field="cpu_mhz",
    ):
        t.add_hosts(any_cloud.admin, "c1", specs)


def test_host_duplicate_name_in_cluster(any_cloud) -> None:
    make_world(any_cloud)
    with rejects(
        any_cloud,
        AlreadyExists,
        "host 'h1': the name is already taken in cluster 'c1'",
        field="name",
    ):
        t.add_host(any_cloud.admin, "c1", host_spec("h1", uri="test:///hosts/other.xml"))
    # The same name in another cluster is a different host.
    make_cluster(any_cloud, "rack-1", "c2")
    assert t.add_host(any_cloud.admin, "c2", host_spec("h1", uri="test:///x.xml")).name == "h1"


HOST_COUNTS = {
    "cpu_cores": "CPU cores",
    "cpu_sockets": "CPU sockets",
    "cpu_mhz": "CPU speed (MHz)",
    "memory_bytes": "memory (bytes)",
}


@pytest.mark.parametrize("key", list(HOST_COUNTS))
@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (0, "must be at least 1, got 0"),
        (-4, "must be at least 1, got -4"),
        ("eight", "'eight' is not a whole number"),
        (2.5, "2.5 is not a whole number"),
        (None, "None is not a whole number"),
        (True, "True is not a whole number"),
    ],
)
def test_host_count_rules(cloud, key: str, value: Any, rule: str) -> None:
    make_world(cloud)
    with rejects(cloud, InvalidParameter, "host 'h2'", f"{HOST_COUNTS[key]} {rule}", field=key):
        t.add_host(cloud.admin, "c1", host_spec("h2", **{key: value}))


def test_host_cores_cannot_be_fewer_than_sockets(cloud) -> None:
    make_world(cloud)
    with rejects(
        cloud, InvalidParameter, "host 'h2'", "2 cores cannot fill 4 sockets", field="cpu_cores"
    ):
        t.add_host(cloud.admin, "c1", host_spec("h2", cpu_cores=2, cpu_sockets=4))
    host = t.add_host(cloud.admin, "c1", host_spec("h2", cpu_cores="4", cpu_sockets="4"))
    assert (host.cpu_cores, host.cpu_sockets) == (4, 4)


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("10.1.1", "address '10.1.1' is not a valid IPv4 address"),
        ("fd00::5", "address 'fd00::5' is not a valid IPv4 address"),
        ("kvm1", "address 'kvm1' is not a valid IPv4 address"),
        ("10.9.9.9", "address 10.9.9.9 is outside its pod network 10.1.1.0/24"),
        ("10.1.2.1", "address 10.1.2.1 is outside its pod network 10.1.1.0/24"),
    ],
)
def test_host_address_rules(cloud, address: str, rule: str) -> None:
    world = make_world(cloud)
    with rejects(cloud, InvalidParameter, "host 'h2'", rule, field="address"):
        t.add_host(cloud.admin, "c1", host_spec("h2", address=address))
    with rejects(cloud, InvalidParameter, "host 'h1'", rule, field="address"):
        t.update_host(cloud.admin, world.host.uuid, address=address)


@pytest.mark.parametrize(
    ("tags", "bad"),
    [
        (["ssd", "a,b"], "'a,b'"),
        (["has space"], "'has space'"),
        ("ssd, has space", "'has space'"),
        (["x" * 64], "'" + "x" * 64 + "'"),
        (["-leading"], "'-leading'"),
        (["ünïcode"], "'ünïcode'"),
        (["semi;colon"], "'semi;colon'"),
    ],
)
def test_host_tag_rules(cloud, tags: Any, bad: str) -> None:
    world = make_world(cloud)
    with rejects(cloud, InvalidParameter, "host 'h2'", f"tag {bad} may hold only", field="tags"):
        t.add_host(cloud.admin, "c1", host_spec("h2", tags=tags))
    with rejects(cloud, InvalidParameter, "host 'h1'", f"tag {bad} may hold only", field="tags"):
        t.update_host(cloud.admin, world.host.uuid, tags=tags)


def test_host_tags_are_normalised(cloud) -> None:
    make_world(cloud)
    host = t.add_host(cloud.admin, "c1", host_spec("h2", tags="ssd, gpu,ssd,,x" + "y" * 62))
    assert t.host_tags(cloud.admin, host.uuid) == sorted(["gpu", "ssd", "x" + "y" * 62])


def test_host_status_must_be_a_host_status(cloud) -> None:
    make_world(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "host 'h2'",
        "status 'Sleeping' is not a host status",
        field="status",
    ):
        t.add_host(cloud.admin, "c1", host_spec("h2", status="Sleeping"))


def test_host_in_unknown_cluster(cloud) -> None:
    make_world(cloud)
    with rejects(cloud, NotFound, "cluster 'c9' does not exist", field="cluster"):
        t.add_host(cloud.admin, "c9", host_spec("h2"))


def test_update_host_to_a_duplicate_name(cloud) -> None:
    make_world(cloud)
    h2 = t.add_host(cloud.admin, "c1", host_spec("h2"))
    with rejects(cloud, AlreadyExists, "host 'h2'", "the name 'h1' is already taken", field="name"):
        t.update_host(cloud.admin, h2.uuid, name="h1")


@pytest.mark.parametrize(
    ("state", "call", "source", "target"),
    [
        (ResourceState.MAINTENANCE, "enable", "Disabled", "Enabled"),
        (ResourceState.PREPARE_FOR_MAINTENANCE, "enable", "Disabled", "Enabled"),
        (ResourceState.ERROR_IN_MAINTENANCE, "enable", "Disabled", "Enabled"),
        (ResourceState.MAINTENANCE, "disable", "Enabled", "Disabled"),
        (ResourceState.PREPARE_FOR_MAINTENANCE, "disable", "Enabled", "Disabled"),
    ],
)
def test_host_enable_disable_state_conflicts(
    cloud, state: str, call: str, source: str, target: str
) -> None:
    world = make_world(cloud)
    set_columns(cloud, Host, world.host.uuid, resource_state=state)
    service = t.enable_host if call == "enable" else t.disable_host
    with rejects(
        cloud,
        StateConflict,
        f"host 'h1' is {state}; only a host that is {source} can become {target}",
    ):
        service(cloud.admin, world.host.uuid)


def test_host_enable_disable_round_trip(cloud) -> None:
    world = make_world(cloud)
    assert t.disable_host(cloud.admin, world.host.uuid).resource_state == "Disabled"
    before = db_snapshot(cloud)
    # Disabling a disabled host is a no-op: no write, no event.
    assert t.disable_host(cloud.admin, world.host.uuid).resource_state == "Disabled"
    assert db_snapshot(cloud) == before
    assert t.enable_host(cloud.admin, world.host.uuid).resource_state == "Enabled"


@pytest.mark.parametrize(
    "column", ["cpu_used_mhz", "cpu_reserved_mhz", "memory_used_bytes", "memory_reserved_bytes"]
)
def test_delete_host_with_capacity_in_use(cloud, column: str) -> None:
    world = make_world(cloud)
    set_columns(cloud, Host, world.host.uuid, **{column: 512 * MIB})
    with rejects(cloud, InUse, "host 'h1' still carries VMs", field=None):
        t.delete_host(cloud.admin, world.host.uuid)


def test_delete_host_in_use_message_shows_memory(cloud) -> None:
    world = make_world(cloud)
    set_columns(
        cloud, Host, world.host.uuid, memory_used_bytes=512 * MIB, memory_reserved_bytes=GIB
    )
    with rejects(cloud, InUse, "512 MiB memory used, 1024 MiB reserved"):
        t.delete_host(cloud.admin, world.host.uuid)


def test_delete_host_removes_its_tags(any_cloud) -> None:
    world = make_world(any_cloud)
    t.update_host(any_cloud.admin, world.host.uuid, tags=["ssd", "gpu"])
    t.delete_host(any_cloud.admin, world.host.uuid)
    after = db_snapshot(any_cloud)
    assert (after["host"].rows, after["hosttag"].rows) == (0, 0)


# --- primary storage ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "rule", "field"),
    [
        ({"pool_type": "iscsi"}, "pool type 'iscsi' is not one of dir, nfs", "pool_type"),
        ({"pool_type": "rbd"}, "pool type 'rbd' is not one of dir, nfs", "pool_type"),
        ({"path": "srv/pool"}, "path 'srv/pool' must be absolute", "path"),
        ({"path": ""}, "path '' must be absolute", "path"),
        ({"path": "/srv/\x00pool"}, "path contains control characters", "path"),
        ({"pool_type": "nfs"}, "an NFS pool needs a server", "server"),
        ({"pool_type": "NFS", "server": ""}, "an NFS pool needs a server", "server"),
        (
            {"pool_type": "nfs", "server": "n" * 256},
            "server is 256 characters long, the limit is 255",
            "server",
        ),
        (
            {"overprovisioning_factor": 0.5},
            "storage overprovisioning factor must be at least 1.0, got 0.5",
            "overprovisioning_factor",
        ),
        (
            {"overprovisioning_factor": float("nan")},
            "storage overprovisioning factor must be at least 1.0, got nan",
            "overprovisioning_factor",
        ),
        (
            {"capacity_disable_threshold": 1.5},
            "capacity disable threshold must be above 0 and at most 1, got 1.5",
            "capacity_disable_threshold",
        ),
        (
            {"allocated_disable_threshold": 0},
            "allocated-capacity disable threshold must be above 0 and at most 1, got 0",
            "allocated_disable_threshold",
        ),
        (
            {"capacity_bytes": -1},
            "capacity (bytes) must be at least 0, got -1",
            "capacity_bytes",
        ),
        ({"capacity_bytes": "1T"}, "capacity (bytes) '1T' is not a whole number", "capacity_bytes"),
        ({"tags": ["fast disk"]}, "tag 'fast disk' may hold only", "tags"),
    ],
)
def test_primary_storage_rules(cloud, kwargs: dict[str, Any], rule: str, field: str) -> None:
    make_world(cloud)
    values: dict[str, Any] = {"path": "/srv/ps2", "cluster_ref": "c1"} | kwargs
    with rejects(cloud, InvalidParameter, "primary storage 'ps2'", rule, field=field):
        t.create_storage_pool(cloud.admin, "ps2", **values)


def test_primary_storage_needs_a_zone_or_cluster(cloud) -> None:
    make_world(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "primary storage 'ps1'",
        "a zone or a cluster is required",
        field="zone",
    ):
        t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1")


def test_primary_storage_cluster_not_in_the_zone(cloud) -> None:
    world = make_world(cloud)
    make_zone(cloud, "z2")
    with rejects(
        cloud,
        InvalidParameter,
        "primary storage 'ps1'",
        "cluster 'c1' is not in zone 'z2'",
        field="cluster",
    ):
        t.create_storage_pool(
            cloud.admin, "ps1", path="/srv/ps1", zone_ref="z2", cluster_ref=world.cluster.uuid
        )


def test_primary_storage_unknown_zone_or_cluster(cloud) -> None:
    make_world(cloud)
    with rejects(cloud, NotFound, "zone 'z9' does not exist", field="zone"):
        t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", zone_ref="z9")
    with rejects(cloud, NotFound, "cluster 'c9' does not exist", field="cluster"):
        t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c9")


def test_primary_storage_duplicate_name_in_zone(cloud) -> None:
    make_world(cloud)
    t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    # Cluster scope and zone scope share the zone's namespace.
    with rejects(
        cloud,
        AlreadyExists,
        "primary storage 'ps1' in zone 'z1'",
        "the name 'ps1' is already taken",
        field="name",
    ):
        t.create_storage_pool(cloud.admin, "ps1", path="/srv/other", zone_ref="z1")
    make_zone(cloud, "z2")
    assert t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", zone_ref="z2").name == "ps1"


@pytest.mark.parametrize(
    "where",
    [
        {"cluster_ref": "c1"},
        {"zone_ref": "z1"},
        {"zone_ref": "z1", "pool_type": "nfs", "server": "filer1"},
    ],
)
def test_primary_storage_duplicate_path(cloud, where: dict[str, Any]) -> None:
    make_world(cloud)
    t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps", **where)
    with rejects(
        cloud,
        AlreadyExists,
        "primary storage 'ps2'",
        "path /srv/ps is already primary storage 'ps1' here",
        field="path",
    ):
        t.create_storage_pool(cloud.admin, "ps2", path="/srv/ps", **where)


def test_primary_storage_same_nfs_path_on_another_server_is_fine(cloud) -> None:
    make_world(cloud)
    t.create_storage_pool(
        cloud.admin, "ps1", path="/export", zone_ref="z1", pool_type="nfs", server="filer1"
    )
    pool = t.create_storage_pool(
        cloud.admin, "ps2", path="/export", zone_ref="z1", pool_type="nfs", server="filer2"
    )
    assert (pool.scope, pool.server) == ("ZONE", "filer2")


def test_update_primary_storage_rules(cloud) -> None:
    make_world(cloud)
    pool = t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    t.create_storage_pool(cloud.admin, "ps2", path="/srv/ps2", cluster_ref="c1")
    admin = cloud.admin
    with rejects(cloud, AlreadyExists, "primary storage 'ps1'", "'ps2' is already taken"):
        t.update_storage_pool(admin, pool.uuid, name="ps2")
    with rejects(
        cloud,
        InvalidParameter,
        "primary storage 'ps1'",
        "at least 1.0, got 0.9",
        field="overprovisioning_factor",
    ):
        t.update_storage_pool(admin, pool.uuid, overprovisioning_factor=0.9)
    with rejects(
        cloud,
        InvalidParameter,
        "primary storage 'ps1'",
        "at most 1, got 2",
        field="capacity_disable_threshold",
    ):
        t.update_storage_pool(admin, pool.uuid, capacity_disable_threshold=2)
    with rejects(
        cloud,
        InvalidParameter,
        "primary storage 'ps1'",
        "at least 0, got -5",
        field="capacity_bytes",
    ):
        t.update_storage_pool(admin, pool.uuid, capacity_bytes=-5)
    with rejects(cloud, InvalidParameter, "primary storage 'ps1'", "tag 'a b'", field="tags"):
        t.update_storage_pool(admin, pool.uuid, tags=["ok", "a b"])


def test_delete_primary_storage_with_allocated_bytes(cloud) -> None:
    make_world(cloud)
    pool = t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    set_columns(cloud, StoragePool, pool.uuid, allocated_bytes=5 * GIB)
    with rejects(
        cloud, InUse, "primary storage 'ps1' still holds volumes (5 GiB allocated)", field=None
    ):
        t.delete_storage_pool(cloud.admin, pool.uuid)


@pytest.mark.parametrize(
    ("status", "call", "source"),
    [
        (StoragePoolStatus.MAINTENANCE, "enable", "Disabled"),
        (StoragePoolStatus.DOWN, "enable", "Disabled"),
        (StoragePoolStatus.PREPARE_FOR_MAINTENANCE, "disable", "Up"),
    ],
)
def test_primary_storage_enable_disable_state_conflicts(
    cloud, status: str, call: str, source: str
) -> None:
    make_world(cloud)
    pool = t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    set_columns(cloud, StoragePool, pool.uuid, status=status)
    service = t.enable_storage_pool if call == "enable" else t.disable_storage_pool
    with rejects(
        cloud, StateConflict, f"primary storage 'ps1' is {status}; only a pool that is {source}"
    ):
        service(cloud.admin, pool.uuid)


# --- image stores ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "srv/secondary",
        "",
        "http://store/secondary",
        "https://store/secondary",
        "nfs://filer",
        "nfs://filer/",
        "nfs:///export",
        "file:///",
        "file://relative/path",
        "smb://filer/share",
    ],
)
def test_image_store_url_rules(cloud, url: str) -> None:
    make_zone(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "image store 'sec1'",
        f"URL {url!r} must be an absolute path, file:///path or nfs://server/path",
        field="url",
    ):
        t.add_image_store(cloud.admin, "z1", "sec1", url=url)


def test_image_store_url_control_characters(cloud) -> None:
    make_zone(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "image store 'sec1'",
        "url contains control characters",
        field="url",
    ):
        t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/se\x1bc")


@pytest.mark.parametrize(
    ("url", "stored", "protocol"),
    [
        ("/srv/secondary", "file:///srv/secondary", "file"),
        ("file:///srv/secondary", "file:///srv/secondary", "file"),
        ("nfs://filer/export/secondary", "nfs://filer/export/secondary", "nfs"),
    ],
)
def test_image_store_good_urls(cloud, url: str, stored: str, protocol: str) -> None:
    make_zone(cloud)
    store = t.add_image_store(cloud.admin, "z1", "sec1", url=url)
    assert (store.url, store.protocol) == (stored, protocol)


def test_image_store_duplicate_name_and_url_in_zone(cloud) -> None:
    make_zone(cloud)
    t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/sec1")
    with rejects(
        cloud,
        AlreadyExists,
        "image store 'sec1' in zone 'z1'",
        "the name 'sec1' is already taken",
        field="name",
    ):
        t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/other")
    # The same place, spelled as a file URL, is the same store.
    with rejects(
        cloud,
        AlreadyExists,
        "image store 'sec2'",
        "file:///srv/sec1 is already image store 'sec1' of zone 'z1'",
        field="url",
    ):
        t.add_image_store(cloud.admin, "z1", "sec2", url="file:///srv/sec1")
    make_zone(cloud, "z2")
    assert t.add_image_store(cloud.admin, "z2", "sec1", url="/srv/sec1").name == "sec1"


def test_image_store_capacity_rule(cloud) -> None:
    make_zone(cloud)
    with rejects(
        cloud,
        InvalidParameter,
        "image store 'sec1'",
        "capacity (bytes) must be at least 0, got -1",
        field="capacity_bytes",
    ):
        t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/sec1", capacity_bytes=-1)


def test_update_image_store_rules(cloud) -> None:
    make_zone(cloud)
    store = t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/sec1")
    t.add_image_store(cloud.admin, "z1", "sec2", url="/srv/sec2")
    with rejects(
        cloud, AlreadyExists, "image store 'sec1'", "'sec2' is already taken", field="name"
    ):
        t.update_image_store(cloud.admin, store.uuid, name="sec2")
    with rejects(
        cloud,
        InvalidParameter,
        "image store 'sec1'",
        "'big' is not a whole number",
        field="capacity_bytes",
    ):
        t.update_image_store(cloud.admin, store.uuid, capacity_bytes="big")


def test_delete_image_store_with_used_bytes(cloud) -> None:
    make_zone(cloud)
    store = t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/sec1")
    set_columns(cloud, ImageStore, store.uuid, used_bytes=300 * MIB)
    with rejects(cloud, InUse, "image store 'sec1' still holds 300 MiB", field=None):
        t.delete_image_store(cloud.admin, store.uuid)


# --- fields that cannot change -----------------------------------------------------------

FIXED_FIELDS = [
    pytest.param(t.update_zone, "zone", "z1", "allocation_state", id="zone"),
    pytest.param(t.update_pod, "pod", "rack-1", "zone_id", id="pod"),
    pytest.param(t.update_cluster, "cluster", "c1", "hypervisor", id="cluster"),
    pytest.param(t.update_host, "host", "h1", "uri", id="host"),
    pytest.param(t.update_storage_pool, "primary storage", "ps1", "path", id="pool"),
    pytest.param(t.update_image_store, "image store", "sec1", "url", id="image-store"),
]


def _fixed_field_world(cloud) -> None:
    make_world(cloud)
    t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/sec1")


@pytest.mark.parametrize(("service", "kind", "name", "fixed"), FIXED_FIELDS)
def test_update_of_a_fixed_field_is_rejected(cloud, service, kind, name, fixed) -> None:
    _fixed_field_world(cloud)
    with rejects(cloud, InvalidParameter, kind, f"{fixed} cannot be changed", field=fixed):
        service(cloud.admin, name, **{fixed: "x"})


@pytest.mark.parametrize(("service", "kind", "name", "fixed"), FIXED_FIELDS)
def test_update_of_a_fixed_field_names_the_object(cloud, service, kind, name, fixed) -> None:
    """House rule 3: the message names the object, not only its kind."""
    _fixed_field_world(cloud)
    with rejects(cloud, InvalidParameter, f"{kind} '{name}'", f"{fixed} cannot be changed"):
        service(cloud.admin, name, **{fixed: "x"})


# --- deletion of containers --------------------------------------------------------------


def test_delete_zone_with_children_names_them(cloud) -> None:
    make_zone(cloud)
    make_pod(cloud, name="b", third_octet=2)
    make_pod(cloud, name="a", third_octet=1)
    t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/sec1")
    t.create_storage_pool(cloud.admin, "zps", path="/srv/zps", zone_ref="z1")
    with rejects(
        cloud,
        InUse,
        "zone 'z1' still has 2 pods ('a', 'b'), 1 image store ('sec1') and "
        "1 zone-wide primary storage pool ('zps'): delete or move them first",
        field=None,
    ):
        t.delete_zone(cloud.admin, "z1")


def test_delete_zone_with_many_pods_says_how_many_more(cloud) -> None:
    make_zone(cloud)
    for i in range(7):
        make_pod(cloud, name=f"p{i}", third_octet=i + 1)
    with rejects(
        cloud, InUse, "zone 'z1' still has 7 pods ('p0', 'p1', 'p2', 'p3', 'p4' and 2 more)"
    ):
        t.delete_zone(cloud.admin, "z1")


def test_delete_pod_with_clusters(cloud) -> None:
    make_world(cloud)
    make_cluster(cloud, "rack-1", "c0")
    with rejects(cloud, InUse, "pod 'rack-1' still has 2 clusters ('c0', 'c1')", field=None):
        t.delete_pod(cloud.admin, "rack-1")


def test_delete_cluster_with_hosts_and_pools(cloud) -> None:
    make_world(cloud)
    t.add_hosts(cloud.admin, "c1", [host_spec(f"h{i}") for i in range(2, 9)])
    t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    with rejects(
        cloud,
        InUse,
        "cluster 'c1' still has 8 hosts ('h1', 'h2', 'h3', 'h4', 'h5' and 3 more) and "
        "1 primary storage pool ('ps1')",
    ):
        t.delete_cluster(cloud.admin, "c1")


def test_deleting_children_first_then_containers_succeeds_with_events(cloud) -> None:
    world = make_world(cloud)
    pool = t.create_storage_pool(cloud.admin, "ps1", path="/srv/ps1", cluster_ref="c1")
    store = t.add_image_store(cloud.admin, "z1", "sec1", url="/srv/sec1")
    admin = cloud.admin
    t.delete_host(admin, world.host.uuid)
    t.delete_storage_pool(admin, pool.uuid)
    t.delete_cluster(admin, world.cluster.uuid)
    t.delete_pod(admin, world.pod.uuid)
    t.delete_image_store(admin, store.uuid)
    t.delete_zone(admin, world.zone.uuid)
    tail = [
        (e.event_type, e.username, e.resource_uuid, e.resource_name) for e in events(cloud)[-6:]
    ]
    assert tail == [
        ("HOST.DELETE", "admin", world.host.uuid, "h1"),
        ("STORAGE.POOL.DELETE", "admin", pool.uuid, "ps1"),
        ("CLUSTER.DELETE", "admin", world.cluster.uuid, "c1"),
        ("POD.DELETE", "admin", world.pod.uuid, "rack-1"),
        ("IMAGE.STORE.DELETE", "admin", store.uuid, "sec1"),
        ("ZONE.DELETE", "admin", world.zone.uuid, "z1"),
    ]
    after = db_snapshot(cloud)
    for table in ("zone", "pod", "cluster", "host", "storagepool", "imagestore"):
        assert after[table].rows == 0, table


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        (t.delete_zone, "zone"),
        (t.delete_pod, "pod"),
        (t.delete_cluster, "cluster"),
        (t.delete_host, "host"),
        (t.delete_storage_pool, "primary storage"),
        (t.delete_image_store, "image store"),
    ],
)
def test_delete_unknown_object(cloud, service, kind: str) -> None:
    make_world(cloud)
    ref = str(uuid.uuid4())
    with rejects(cloud, NotFound, f"{kind} '{ref}' does not exist"):
        service(cloud.admin, ref)


# --- the helper itself -------------------------------------------------------------------


def test_rejects_notices_a_write_before_the_error(cloud) -> None:
    """Control: a call that writes (and commits) before raising fails `rejects`."""
    make_zone(cloud, "z1")
    with (
        pytest.raises(AssertionError, match=r"changed tables \['event', 'zone'\]"),
        rejects(cloud, InvalidParameter, "boom"),
    ):
        t.update_zone(cloud.admin, "z1", description="changed")
        raise InvalidParameter("boom")


def test_rejects_insists_on_the_exact_error_type(cloud) -> None:
    make_zone(cloud, "z1")
    with (
        pytest.raises(AssertionError, match="expected InvalidParameter, got AlreadyExists"),
        rejects(cloud, InvalidParameter),
    ):
        make_zone(cloud, "z1")
