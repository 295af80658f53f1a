"""Host networking (engine/hosts/network.py) against the real kernel, in throwaway namespaces.

Every test works only inside network namespaces it creates (unique names, deleted in the
fixture's finalizer) and uses only documentation address ranges (192.0.2.0/24 as the
underlay, 198.51.100.0/24 as the guest side), so nothing on the machine itself is touched.
What the kernel ended up with is read back with iproute2 (`ip -j -d`), independently of
the pyroute2 code under test.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from engine.errors import AlreadyExists, InvalidParameter, NotFound, StateConflict
from engine.hosts import network
from engine.hosts.network import (
    NotSupported,
    ensure_address,
    ensure_bridge,
    ensure_tap,
    ensure_veth,
    ensure_vlan,
    ensure_vxlan,
    link_state,
    remove_link,
)
from tests.conftest import missing_part

UNDERLAY_A, UNDERLAY_B = "192.0.2.1", "192.0.2.2"  # TEST-NET-1
GUEST_A, GUEST_B = "198.51.100.1", "198.51.100.2"  # TEST-NET-2

_serial = itertools.count()


# --- namespaces and iproute2 read-back ---------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def make_netns(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Creates a uniquely named network namespace, deleted when the test ends."""
    if os.geteuid() != 0:
        missing_part("network-namespace tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
    if shutil.which("ip") is None:
        missing_part("iproute2 ('ip') is not installed")

    def make() -> str:
        name = f"stn-{os.getpid()}-{next(_serial)}"
        created = _ip("netns", "add", name, check=False)
        if created.returncode != 0:
            missing_part(f"cannot create a network namespace: {created.stderr.strip()}")
        # Deleting the namespace destroys every link in it (veth peers included).
        request.addfinalizer(lambda: _ip("netns", "delete", name, check=False))
        return name

    return make


@pytest.fixture
def ns(make_netns: Callable[[], str]) -> str:
    return make_netns()


# Parts of `ip -d link` output that the kernel changes on its own (carrier, STP timers,
# port state), not what an ensure declares.
_VOLATILE_FLAGS = {"LOWER_UP", "NO-CARRIER", "M-DOWN"}


def link_dump(netns: str) -> list[dict[str, Any]]:
    """Every link of `netns` (index, name, flags, MTU, MAC, master, kind, kind data) plus
    its IPv4 addresses, as iproute2 reports them."""
    links = json.loads(_ip("-n", netns, "-j", "-d", "link", "show").stdout)
    addrs = json.loads(_ip("-n", netns, "-j", "-4", "addr", "show").stdout)
    ipv4 = {
        a["ifname"]: sorted(f"{i['local']}/{i['prefixlen']}" for i in a.get("addr_info", []))
        for a in addrs
    }
    dump = []
    for link in links:
        info = link.get("linkinfo", {})
        data = {k: v for k, v in info.get("info_data", {}).items() if not k.endswith("_timer")}
        dump.append(
            {
                "ifindex": link["ifindex"],
                "ifname": link["ifname"],
                "flags": sorted(set(link["flags"]) - _VOLATILE_FLAGS),
                "mtu": link["mtu"],
                "address": link.get("address"),
                "master": link.get("master"),
                "kind": info.get("info_kind"),
                "data": data,
                "ipv4": ipv4.get(link["ifname"], []),
            }
        )
    return dump


def link_of(netns: str, name: str) -> dict[str, Any]:
    matches = [link for link in link_dump(netns) if link["ifname"] == name]
    assert matches, f"{name} not in namespace {netns}"
    return matches[0]


def names_in(netns: str) -> set[str]:
    return {link["ifname"] for link in link_dump(netns)}


def pings(netns: str, address: str) -> bool:
    """One ICMP echo from inside `netns` to `address`, answered within 2 s."""
    if shutil.which("ping") is None:
        missing_part("ping (iputils-ping) is not installed")
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "ping", "-n", "-c", "1", "-W", "2", address],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


def reaches(netns: str, address: str, *, attempts: int = 3) -> bool:
    """Whether any of a few single pings gets an answer.

    Used where reachability is expected: the first packet may be lost to ARP resolution
    that started before the path existed. Where it is not expected, a single `pings`
    suffices, and a `reaches` before and after proves the path is otherwise sound.
    """
    return any(pings(netns, address) for _ in range(attempts))


def forget_neighbours(netns: str, device: str) -> None:
    """Drops the ARP cache of `device`, so neither a stale answer nor a failed lookup in
    progress decides the next ping."""
    _ip("-n", netns, "neigh", "flush", "dev", device)


# --- bridge and VXLAN: idempotence -------------------------------------------------------


def test_bridge_and_vxlan_ensured_twice_and_removed_twice_give_the_same_state(ns: str) -> None:
    bridge = ensure_bridge("br-guest", netns=ns)
    vxlan = ensure_vxlan(
        "vx-4242", 4242, local=UNDERLAY_A, remote=UNDERLAY_B, bridge="br-guest", netns=ns
    )
    assert (bridge.outcome, vxlan.outcome) == ("created", "created")
    first = link_dump(ns)

    again_bridge = ensure_bridge("br-guest", netns=ns)
    again_vxlan = ensure_vxlan(
        "vx-4242", 4242, local=UNDERLAY_A, remote=UNDERLAY_B, bridge="br-guest", netns=ns
    )
    assert (again_bridge.outcome, again_vxlan.outcome) == ("unchanged", "unchanged")
    assert link_dump(ns) == first  # same indexes too: nothing was re-created

    # What the kernel holds is what was declared (read back with iproute2).
    br, vx = link_of(ns, "br-guest"), link_of(ns, "vx-4242")
    assert br["kind"] == "bridge" and "UP" in br["flags"]
    assert vx["kind"] == "vxlan" and "UP" in vx["flags"] and vx["master"] == "br-guest"
    assert vx["data"]["id"] == 4242
    assert vx["data"]["local"] == UNDERLAY_A and vx["data"]["remote"] == UNDERLAY_B
    assert vx["data"]["port"] == 4789
    # ... and what the functions returned agrees with it.
    assert again_vxlan.index == vx["ifindex"] and again_vxlan.master == "br-guest"
    assert (again_vxlan.vni, again_vxlan.local, again_vxlan.remote) == (
        4242,
        UNDERLAY_A,
        UNDERLAY_B,
    )
    assert again_vxlan.dstport == 4789 and again_vxlan.group is None
    assert again_bridge.index == br["ifindex"] and again_bridge.up

    assert remove_link("vx-4242", netns=ns) is True
    assert remove_link("br-guest", netns=ns) is True
    removed = link_dump(ns)
    assert names_in(ns) == {"lo"}
    assert remove_link("vx-4242", netns=ns) is False
    assert remove_link("br-guest", netns=ns) is False
    assert link_dump(ns) == removed
    assert link_state("br-guest", netns=ns) is None


def test_ensure_repairs_a_link_that_drifted(ns: str) -> None:
    ensure_bridge("br0", netns=ns)
    created = ensure_vxlan("vx0", 10, local=UNDERLAY_A, remote=UNDERLAY_B, bridge="br0", netns=ns)
    _ip("-n", ns, "link", "set", "vx0", "nomaster")
    _ip("-n", ns, "link", "set", "vx0", "down")
    _ip("-n", ns, "link", "set", "br0", "down")

    assert ensure_bridge("br0", netns=ns).outcome == "updated"
    repaired = ensure_vxlan("vx0", 10, local=UNDERLAY_A, remote=UNDERLAY_B, bridge="br0", netns=ns)
    assert repaired.outcome == "updated"
    assert repaired.index == created.index  # fixed in place, not re-created
    vx = link_of(ns, "vx0")
    assert vx["master"] == "br0" and "UP" in vx["flags"]
    assert "UP" in link_of(ns, "br0")["flags"]


def test_vxlan_with_another_vni_is_replaced_and_stays_on_its_bridge(ns: str) -> None:
    ensure_bridge("br0", netns=ns)
    ensure_vxlan("vx0", 100, local=UNDERLAY_A, remote=UNDERLAY_B, bridge="br0", netns=ns)
    bridge_mac = link_of(ns, "br0")["address"]

    # No bridge given: the replacement goes back onto the bridge the old link was on.
    replaced = ensure_vxlan("vx0", 200, local=UNDERLAY_A, remote=UNDERLAY_B, netns=ns)
    assert replaced.outcome == "replaced" and replaced.vni == 200
    vx = link_of(ns, "vx0")
    assert vx["data"]["id"] == 200 and vx["master"] == "br0" and "UP" in vx["flags"]
    # The bridge kept its MAC (an unpinned bridge takes its ports'), so neighbours' ARP
    # caches stay right across the replacement.
    assert link_of(ns, "br0")["address"] == bridge_mac

    moved = ensure_vxlan("vx0", 200, local=UNDERLAY_A, remote=UNDERLAY_B, dstport=4790, netns=ns)
    assert moved.outcome == "replaced"
    assert link_of(ns, "vx0")["data"]["port"] == 4790


# --- two namespaces talking over VXLAN ---------------------------------------------------


def _vxlan_site(netns: str, *, vni: int, local: str, remote: str, guest: str) -> None:
    ensure_bridge("br-guest", netns=netns)
    ensure_vxlan("vx-guest", vni, local=local, remote=remote, bridge="br-guest", netns=netns)
    ensure_address("br-guest", f"{guest}/24", netns=netns)


def test_two_namespaces_reach_each_other_over_the_same_vni_only(
    make_netns: Callable[[], str],
) -> None:
    a, b = make_netns(), make_netns()
    # The underlay: one cable between the two "hosts".
    wire = ensure_veth("under-a", "under-b", netns=a, peer_netns=b)
    assert wire.outcome == "created" and wire.peer_netns == b
    assert link_of(b, "under-b")["kind"] == "veth"
    ensure_address("under-a", f"{UNDERLAY_A}/24", netns=a)
    ensure_address("under-b", f"{UNDERLAY_B}/24", netns=b)
    assert reaches(a, UNDERLAY_B)

    _vxlan_site(a, vni=5001, local=UNDERLAY_A, remote=UNDERLAY_B, guest=GUEST_A)
    _vxlan_site(b, vni=5001, local=UNDERLAY_B, remote=UNDERLAY_A, guest=GUEST_B)
    assert reaches(a, GUEST_B)
    assert reaches(b, GUEST_A)

    # Another VNI on one side: the underlay still works, the guest network does not.
    other = ensure_vxlan("vx-guest", 5002, local=UNDERLAY_B, remote=UNDERLAY_A, netns=b)
    assert other.outcome == "replaced"
    forget_neighbours(a, "br-guest")
    assert reaches(a, UNDERLAY_B)
    assert not pings(a, GUEST_B)

    # Back on the same VNI: reachable again, so the VNI was what separated them.
    ensure_vxlan("vx-guest", 5001, local=UNDERLAY_B, remote=UNDERLAY_A, netns=b)
    forget_neighbours(a, "br-guest")
    assert reaches(a, GUEST_B)


def test_concurrent_ensures_of_one_link_all_succeed_and_exactly_one_creates(ns: str) -> None:
    # Callers racing between look-up and add: the losers get "File exists" from the
    # kernel and must reconcile what the winner made instead of failing.
    with ThreadPoolExecutor(max_workers=6) as pool:
        bridges = list(pool.map(lambda _: ensure_bridge("br-race", netns=ns), range(6)))
        vxlans = list(
            pool.map(
                lambda _: ensure_vxlan(
                    "vx-race", 9, local=UNDERLAY_A, remote=UNDERLAY_B, bridge="br-race", netns=ns
                ),
                range(6),
            )
        )
    for made in (bridges, vxlans):
        assert [m.outcome for m in made].count("created") == 1
        assert len({m.index for m in made}) == 1
    assert link_of(ns, "vx-race")["master"] == "br-race"


# --- veth, tap, addresses ----------------------------------------------------------------


def test_veth_pair_across_namespaces_is_idempotent_and_guards_the_peer_name(
    make_netns: Callable[[], str],
) -> None:
    a, b = make_netns(), make_netns()
    ensure_bridge("br0", netns=a)
    first = ensure_veth("va", "vb", netns=a, peer_netns=b, bridge="br0")
    before_a, before_b = link_dump(a), link_dump(b)
    again = ensure_veth("va", "vb", netns=a, peer_netns=b, bridge="br0")
    assert (first.outcome, again.outcome) == ("created", "unchanged")
    assert (link_dump(a), link_dump(b)) == (before_a, before_b)
    assert link_of(a, "va")["master"] == "br0"
    assert "UP" in link_of(b, "vb")["flags"]

    # A peer name taken by something that is not our peer is refused, nothing changes.
    _ip("-n", b, "link", "add", "taken", "type", "bridge")
    with pytest.raises(AlreadyExists, match=r"'taken' already exists in namespace"):
        ensure_veth("vc", "taken", netns=a, peer_netns=b)
    assert "vc" not in names_in(a)

    # Same name, another peer: the old pair is replaced, its old peer goes with it.
    moved = ensure_veth("va", "vb2", netns=a, peer_netns=b)
    assert moved.outcome == "replaced" and moved.master == "br0"
    assert "vb" not in names_in(b) and "vb2" in names_in(b)

    # Removing one end removes the pair.
    assert remove_link("va", netns=a) is True
    assert "vb2" not in names_in(b)


def test_veth_pair_within_one_namespace(ns: str) -> None:
    pair = ensure_veth("ga", "gb", netns=ns)
    assert pair.peer == "gb" and pair.peer_netns == ns and pair.kind == "veth"
    assert ensure_veth("ga", "gb", netns=ns).outcome == "unchanged"
    assert {"ga", "gb"} <= names_in(ns)


def test_tap_on_a_bridge_is_idempotent(ns: str) -> None:
    ensure_bridge("br0", netns=ns)
    tap = ensure_tap("vnet-7", bridge="br0", netns=ns)
    dump = link_dump(ns)
    again = ensure_tap("vnet-7", bridge="br0", netns=ns)
    assert (tap.outcome, again.outcome, again.kind) == ("created", "unchanged", "tap")
    assert link_dump(ns) == dump
    info = link_of(ns, "vnet-7")
    assert info["kind"] == "tun" and info["data"]["type"] == "tap"
    assert info["master"] == "br0" and "UP" in info["flags"]


def test_address_is_added_once(ns: str) -> None:
    ensure_bridge("br0", netns=ns)
    assert ensure_address("br0", f"{GUEST_A}/24", netns=ns).outcome == "created"
    assert ensure_address("br0", f"{GUEST_A}/24", netns=ns).outcome == "unchanged"
    assert link_of(ns, "br0")["ipv4"] == [f"{GUEST_A}/24"]


# --- refusals ----------------------------------------------------------------------------


BAD_NAMES = [
    ("a" * 16, "16 characters long, the limit is 15"),
    ("", "an interface name is required"),
    ("br/0", "'/'"),
    ("br 0", "without spaces"),
    ("br\t0", "without spaces"),
    ("..", "'..'"),
]

ENSURES: dict[str, Callable[[str, str], object]] = {
    "bridge": lambda name, netns: ensure_bridge(name, netns=netns),
    "vxlan": lambda name, netns: ensure_vxlan(name, 1, local=UNDERLAY_A, netns=netns),
    "vlan": lambda name, netns: ensure_vlan(name, 10, parent="lo", netns=netns),
    "tap": lambda name, netns: ensure_tap(name, netns=netns),
    "veth": lambda name, netns: ensure_veth(name, "peer0", netns=netns),
    "remove": lambda name, netns: remove_link(name, netns=netns),
}


@pytest.mark.parametrize(("bad", "rule"), BAD_NAMES, ids=[repr(b[0]) for b in BAD_NAMES])
def test_bad_interface_names_are_refused_naming_the_interface(ns: str, bad: str, rule: str) -> None:
    before = link_dump(ns)
    for what, call in ENSURES.items():
        with pytest.raises(InvalidParameter) as caught:
            call(bad, ns)
        message = str(caught.value)
        assert f"interface {bad!r}" in message, what
        assert rule in message, what
        assert caught.value.field == "name"
    # The peer and bridge names obey the same rule, and are named as such.
    with pytest.raises(InvalidParameter, match="interface") as caught:
        ensure_veth("ok0", bad, netns=ns)
    assert caught.value.field == "peer"
    with pytest.raises(InvalidParameter) as caught:
        ensure_tap("ok1", bridge=bad, netns=ns)
    assert caught.value.field == "bridge"
    assert link_dump(ns) == before


def test_fifteen_character_name_is_the_longest_accepted(ns: str) -> None:
    longest = "b" * 15
    assert ensure_bridge(longest, netns=ns).name == longest
    assert longest in names_in(ns)


def test_missing_namespace_is_not_found_and_not_created() -> None:
    name = f"stn-absent-{os.getpid()}"
    with pytest.raises(NotFound, match=f"network namespace '{name}' does not exist"):
        ensure_bridge("br0", netns=name)
    with pytest.raises(NotFound):
        remove_link("br0", netns=name)
    assert not os.path.exists(os.path.join(network.NETNS_DIR, name))


def test_bad_namespace_name_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="network namespace") as caught:
        ensure_bridge("br0", netns="../etc")
    assert caught.value.field == "netns"


def test_a_link_of_another_kind_is_a_conflict_and_left_alone(ns: str) -> None:
    _ip("-n", ns, "link", "add", "br0", "type", "bridge")
    before = link_dump(ns)
    with pytest.raises(StateConflict, match=r"'br0' in namespace '.*' already exists as a bridge"):
        ensure_tap("br0", netns=ns)
    with pytest.raises(StateConflict, match="not a vxlan"):
        ensure_vxlan("br0", 1, local=UNDERLAY_A, netns=ns)
    assert link_dump(ns) == before


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"vni": 2**24}, "vni", "VNI 16777216 is not an integer from 0 to 16777215"),
        ({"vni": -1}, "vni", "VNI -1"),
        ({"dstport": 0}, "dstport", "UDP port 0"),
        ({"local": "not-an-ip"}, "local", "local 'not-an-ip' is not a valid IP address"),
        ({"remote": "2001:db8::2"}, "remote", "not of the same IP version"),
        ({"remote": "239.1.1.1"}, "remote", "is a multicast address"),
        ({"group": UNDERLAY_B}, "group", "is not a multicast address"),
        ({"group": "239.1.1.1"}, "underlay", "needs an underlay device"),
        ({"group": "239.1.1.1", "remote": UNDERLAY_B}, "group", "not both"),
        ({"bridge": "no-such-br"}, "bridge", "bridge 'no-such-br' does not exist in namespace"),
        ({"bridge": "lo"}, "bridge", "is not a bridge"),
    ],
)
def test_bad_vxlan_parameters_are_refused_and_nothing_is_created(
    ns: str, kwargs: dict[str, Any], field: str, fragment: str
) -> None:
    spec: dict[str, Any] = {"vni": 7, "local": UNDERLAY_A, **kwargs}
    before = link_dump(ns)
    with pytest.raises((InvalidParameter, NotFound)) as caught:
        ensure_vxlan("vx0", netns=ns, **spec)
    assert fragment in str(caught.value)
    assert "interface 'vx0'" in str(caught.value)
    assert caught.value.field == field
    assert link_dump(ns) == before


# --- 802.1q VLAN -------------------------------------------------------------------------


def kernel_has_8021q(netns: str) -> bool:
    """Asks the kernel through iproute2 (not the code under test) for a VLAN link."""
    _ip("-n", netns, "link", "add", "probe-br", "type", "bridge")
    made = _ip("-n", netns, "link", "add", "link", "probe-br", "name", "probe.9", "type", "vlan",
               "id", "9", check=False)  # fmt: skip
    _ip("-n", netns, "link", "delete", "probe-br", check=False)  # takes probe.9 with it
    return made.returncode == 0


def test_vlan_without_kernel_support_is_a_clear_error(ns: str) -> None:
    if kernel_has_8021q(ns):
        pytest.skip("this kernel supports 802.1q; the refusal cannot happen here")
    ensure_bridge("br0", netns=ns)
    before = link_dump(ns)
    with pytest.raises(NotSupported) as caught:
        ensure_vlan("br0.10", 10, parent="br0", netns=ns)
    message = str(caught.value)
    assert "802.1q VLAN interfaces are not supported on this kernel" in message
    assert "'br0.10'" in message and f"namespace '{ns}'" in message
    assert link_dump(ns) == before


def test_vlan_is_created_once_and_replaced_on_another_id(ns: str) -> None:
    if not kernel_has_8021q(ns):
        pytest.skip("802.1q VLAN not supported by this kernel")
    ensure_bridge("trunk", netns=ns)
    ensure_bridge("br-v10", netns=ns)
    first = ensure_vlan("trunk.10", 10, parent="trunk", bridge="br-v10", netns=ns)
    dump = link_dump(ns)
    again = ensure_vlan("trunk.10", 10, parent="trunk", bridge="br-v10", netns=ns)
    assert (first.outcome, again.outcome) == ("created", "unchanged")
    assert link_dump(ns) == dump
    vlan = link_of(ns, "trunk.10")
    assert vlan["kind"] == "vlan" and vlan["data"]["id"] == 10 and vlan["master"] == "br-v10"
    other = ensure_vlan("trunk.10", 11, parent="trunk", netns=ns)
    assert other.outcome == "replaced" and other.vlan_id == 11 and other.parent == "trunk"
    assert link_of(ns, "trunk.10")["master"] == "br-v10"


def test_vlan_id_out_of_range_is_refused(ns: str) -> None:
    with pytest.raises(InvalidParameter, match="VLAN id 4095 is not an integer from 1 to 4094"):
        ensure_vlan("v0", 4095, parent="lo", netns=ns)


def test_multicast_and_ipv6_vxlans_read_back_and_stay_unchanged(ns: str) -> None:
    ensure_veth("under0", "under1", netns=ns)
    ensure_address("under0", f"{UNDERLAY_A}/24", netns=ns)
    ensure_address("under0", "2001:db8::1/64", netns=ns)  # IPv6 documentation range

    group = ensure_vxlan(
        "vx-mc", 300, local=UNDERLAY_A, group="239.1.1.1", underlay="under0", netns=ns
    )
    assert (group.group, group.remote, group.underlay) == ("239.1.1.1", None, "under0")
    again = ensure_vxlan(
        "vx-mc", 300, local=UNDERLAY_A, group="239.1.1.1", underlay="under0", netns=ns
    )
    assert again.outcome == "unchanged"
    mc = link_of(ns, "vx-mc")["data"]
    assert mc["group"] == "239.1.1.1" and mc["link"] == "under0"

    six = ensure_vxlan("vx-v6", 301, local="2001:db8::1", remote="2001:db8::2", netns=ns)
    assert (six.local, six.remote) == ("2001:db8::1", "2001:db8::2")
    again6 = ensure_vxlan("vx-v6", 301, local="2001:db8::1", remote="2001:db8::2", netns=ns)
    assert again6.outcome == "unchanged"
    v6 = link_of(ns, "vx-v6")["data"]
    assert v6["local6"] == "2001:db8::1" and v6["remote6"] == "2001:db8::2" and v6["id"] == 301


# --- without privileges ------------------------------------------------------------------

_UNPRIVILEGED_CALL = """
from engine.hosts.network import HostNetworkError, ensure_bridge
try:
    ensure_bridge({name!r}, netns={netns!r})
except HostNetworkError as exc:
    print("HostNetworkError:", exc)
"""


@pytest.mark.parametrize("in_namespace", [False, True], ids=["host-namespace", "named-namespace"])
def test_without_privileges_the_error_is_typed_and_says_what_is_needed(
    ns: str, in_namespace: bool
) -> None:
    """A child process stripped of CAP_NET_ADMIN and CAP_SYS_ADMIN (still uid 0, so it can
    read the code): the kernel refuses to create a link (host namespace) or to enter a
    namespace, and the caller gets a HostNetworkError saying what is needed."""
    if shutil.which("setpriv") is None:
        missing_part("setpriv (util-linux) is not installed")
    name = f"stnp{os.getpid() % 100000}"
    script = _UNPRIVILEGED_CALL.format(name=name, netns=ns if in_namespace else None)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(network.__file__))))
    done = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin,-sys_admin", "--inh-caps=-net_admin,-sys_admin",
         sys.executable, "-c", script],
        capture_output=True, text=True, cwd=root,
    )  # fmt: skip
    if "HostNetworkError" not in done.stdout:
        _ip("link", "delete", name, check=False)  # in case it was created after all
    assert done.returncode == 0, done.stderr
    assert "needs root or CAP_" in done.stdout
    where = f"namespace '{ns}'" if in_namespace else "the host namespace"
    assert where in done.stdout
    if not in_namespace:
        assert f"interface '{name}'" in done.stdout and "cannot create bridge" in done.stdout
    assert name not in names_in(ns)
