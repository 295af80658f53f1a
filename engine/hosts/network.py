"""Host networking: bridges, VXLAN and VLAN links, taps and veth pairs, declared and reconciled.

Every `ensure_*` function states what a link should look like and makes it so: it creates
the link when it is missing, fixes what can be fixed in place (up, bridge membership),
replaces a link whose identity differs (a VXLAN with another VNI, a VLAN with another id),
and changes nothing when the link already matches. `remove_link` treats "not there" as
done. So calling any of them twice leaves the same state as calling them once.

Every function takes `netns`: the name of a network namespace under /run/netns (as made by
`ip netns add`), or None for the namespace this process runs in. A namespace that does not
exist is an error, never created behind the caller's back.

Only this package talks to pyroute2. Callers see typed engine errors whose messages name
the interface and the namespace, never a raw NetlinkError.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from engine.errors import (
    AlreadyExists,
    InvalidParameter,
    NotFound,
    StateConflict,
    StratusError,
)

IFNAME_MAX = 15  # IFNAMSIZ is 16 bytes including the terminating NUL
VXLAN_PORT = 4789  # IANA's port; Linux defaults to 8472 when none is given, so always send it
VNI_MAX = 2**24 - 1
NETNS_DIR = "/run/netns"
IFF_UP = 0x1
TUN_TYPE_TAP = 2  # IFLA_TUN_TYPE: 1 = tun, 2 = tap

# Printable ASCII without space; '/' and ':' are refused by the kernel (dev_valid_name) and
# would also break sysfs paths and alias syntax.
_IFNAME = re.compile(r"^[!-~]{1,15}$")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Outcome = Literal["created", "updated", "replaced", "unchanged"]


class HostNetworkError(StratusError):
    """The kernel refused a link or address operation; the message says which and why."""


class NotSupported(HostNetworkError):
    """This kernel lacks the feature (e.g. 802.1q VLANs); nothing was changed."""


# --- what the functions return -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LinkState:
    """One network interface as the kernel reports it after an ensure.

    `outcome` says what the call did: created, updated (up or bridge membership fixed in
    place), replaced (deleted and re-created because its identity differed) or unchanged.
    """

    name: str
    netns: str | None
    index: int
    kind: str  # "bridge", "vxlan", "vlan", "veth", "tap", "tun"; "" for plain devices
    up: bool  # administratively up (IFF_UP); carrier is the kernel's business
    master: str | None  # the bridge it is a port of
    mtu: int
    mac: str
    outcome: Outcome = "unchanged"


@dataclass(frozen=True, kw_only=True)
class VxlanState(LinkState):
    vni: int
    local: str | None
    remote: str | None  # unicast default destination
    group: str | None  # multicast group
    dstport: int
    underlay: str | None  # the device multicast traffic leaves by


@dataclass(frozen=True, kw_only=True)
class VlanState(LinkState):
    vlan_id: int
    parent: str | None


@dataclass(frozen=True, kw_only=True)
class VethState(LinkState):
    peer: str
    peer_netns: str | None


@dataclass(frozen=True, kw_only=True)
class AddressState:
    interface: str
    netns: str | None
    address: str  # "198.51.100.1/24"
    outcome: Outcome = "unchanged"


# --- validation --------------------------------------------------------------------------


def _label(name: object) -> str:
    text = name if isinstance(name, str) else str(name)
    excerpt = repr(text[:32]) + ("…" if len(text) > 32 else "")
    return f"interface {excerpt}"


def check_ifname(name: object, *, field: str = "name") -> str:
    """A Linux interface name: 1 to 15 printable ASCII characters, no '/', ':' or whitespace."""
    if not isinstance(name, str) or name == "":
        raise InvalidParameter(f"{_label(name)}: an interface name is required", field=field)
    if len(name) > IFNAME_MAX:
        raise InvalidParameter(
            f"{_label(name)}: the name is {len(name)} characters long, the limit is {IFNAME_MAX}",
            field=field,
        )
    if not _IFNAME.match(name) or "/" in name or ":" in name or name in (".", ".."):
        raise InvalidParameter(
            f"{_label(name)}: a name may hold only printable ASCII without spaces, "
            "'/' or ':', and may not be '.' or '..'",
            field=field,
        )
    return name


def check_netns_name(netns: object) -> str | None:
    if netns is None:
        return None
    if (
        not isinstance(netns, str)
        or not netns
        or len(netns) > 255
        or "/" in netns
        or netns in (".", "..")
        or not netns.isprintable()
    ):
        raise InvalidParameter(
            f"network namespace {netns!r}: a name is 1 to 255 printable characters "
            "without '/', and not '.' or '..'",
            field="netns",
        )
    return netns


def _where(netns: str | None) -> str:
    return f"namespace '{netns}'" if netns else "the host namespace"


def _check_vni(name: str, vni: object) -> int:
    if isinstance(vni, bool) or not isinstance(vni, int) or not 0 <= vni <= VNI_MAX:
        raise InvalidParameter(
            f"{_label(name)}: VNI {vni!r} is not an integer from 0 to {VNI_MAX}", field="vni"
        )
    return vni


def _check_port(name: str, port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidParameter(
            f"{_label(name)}: UDP port {port!r} is not an integer from 1 to 65535",
            field="dstport",
        )
    return port


def _check_ip(name: str, value: object, *, field: str) -> IpAddress:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise InvalidParameter(
            f"{_label(name)}: {field} {value!r} is not a valid IP address", field=field
        ) from None


# --- talking to the kernel ---------------------------------------------------------------


@contextlib.contextmanager
def _session(netns: str | None) -> Iterator[IPRoute]:
    """An rtnetlink socket in `netns`; a missing namespace is NotFound, not created."""
    if netns is not None and not os.path.exists(os.path.join(NETNS_DIR, netns)):
        raise NotFound(f"network namespace '{netns}' does not exist", field="netns")
    try:
        # flags=0: pyroute2's default O_CREAT would silently create a missing namespace.
        ipr = IPRoute(netns=netns, flags=0) if netns is not None else IPRoute()
    except FileNotFoundError:
        raise NotFound(f"network namespace '{netns}' does not exist", field="netns") from None
    except OSError as exc:
        hint = (
            " (needs root or CAP_SYS_ADMIN and CAP_NET_ADMIN)" if exc.errno == errno.EPERM else ""
        )
        raise HostNetworkError(
            f"cannot open a netlink socket in {_where(netns)}: {exc.strerror or exc}{hint}"
        ) from None
    with ipr:
        try:
            yield ipr
        except (NetlinkError, OSError) as exc:  # a failure no step above worded better
            code = exc.code if isinstance(exc, NetlinkError) else exc.errno
            raise HostNetworkError(
                f"netlink request in {_where(netns)} failed: {os.strerror(code) if code else exc}"
            ) from None


@contextlib.contextmanager
def _kernel(action: str, name: str, netns: str | None) -> Iterator[None]:
    """Turns a netlink or OS failure into a HostNetworkError naming interface and namespace."""
    try:
        yield
    except (NetlinkError, OSError) as exc:
        code = exc.code if isinstance(exc, NetlinkError) else exc.errno
        reason = os.strerror(code) if code else str(exc)
        if code == errno.EPERM:
            reason += " (needs root or CAP_NET_ADMIN)"
        raise HostNetworkError(
            f"{_label(name)} in {_where(netns)}: cannot {action}: {reason}"
        ) from None


def _get(ipr: IPRoute, name: str) -> Any | None:
    """The link's RTM_NEWLINK message, or None if no such interface."""
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _name_of(ipr: IPRoute, index: int | None) -> str | None:
    if not index:
        return None
    try:
        return ipr.link("get", index=index)[0].get("ifname")
    except NetlinkError:
        return None


def _kind(msg: Any) -> str:
    kind = msg.get(("linkinfo", "kind")) or ""
    if kind == "tun" and msg.get(("linkinfo", "data", "IFLA_TUN_TYPE")) == TUN_TYPE_TAP:
        return "tap"
    return kind


def _is_up(msg: Any) -> bool:
    return bool(msg["flags"] & IFF_UP)


def _base(ipr: IPRoute, msg: Any, netns: str | None, outcome: Outcome) -> dict[str, Any]:
    return {
        "name": msg.get("ifname"),
        "netns": netns,
        "index": msg["index"],
        "kind": _kind(msg),
        "up": _is_up(msg),
        "master": _name_of(ipr, msg.get("master")),
        "mtu": msg.get("mtu"),
        "mac": msg.get("address") or "",
        "outcome": outcome,
    }


def _refresh(ipr: IPRoute, name: str, netns: str | None) -> Any:
    with _kernel("read back", name, netns):
        msg = _get(ipr, name)
    if msg is None:  # someone removed it under us
        raise StateConflict(f"{_label(name)} vanished from {_where(netns)} while being set up")
    return msg


def _expect_kind(msg: Any, name: str, netns: str | None, kind: str) -> None:
    actual = _kind(msg)
    if actual != kind:
        raise StateConflict(
            f"{_label(name)} in {_where(netns)} already exists as "
            f"{'a ' + actual if actual else 'a plain device'}, not a {kind}; "
            "remove it or choose another name"
        )


def _bridge_index(ipr: IPRoute, bridge: str | None, name: str, netns: str | None) -> int | None:
    """The index of `bridge`, which must exist and be a bridge; None when no bridge asked."""
    if bridge is None:
        return None
    msg = _get(ipr, bridge)
    if msg is None:
        raise NotFound(
            f"{_label(name)}: bridge '{bridge}' does not exist in {_where(netns)}",
            field="bridge",
        )
    if _kind(msg) != "bridge":
        raise InvalidParameter(
            f"{_label(name)}: '{bridge}' in {_where(netns)} is not a bridge", field="bridge"
        )
    return msg["index"]


def _settle(
    ipr: IPRoute,
    msg: Any,
    name: str,
    netns: str | None,
    *,
    master: int | None,
    outcome: Outcome,
) -> tuple[Any, Outcome]:
    """Brings the link up and into `master` (if given); returns the fresh message."""
    changes: dict[str, Any] = {}
    if master is not None and msg.get("master") != master:
        changes["master"] = master
    if not _is_up(msg):
        changes["state"] = "up"
    if changes:
        with _kernel("set " + " and ".join(changes), name, netns):
            ipr.link("set", index=msg["index"], **changes)
        if outcome == "unchanged":
            outcome = "updated"
        msg = _refresh(ipr, name, netns)
    return msg, outcome


def _delete(ipr: IPRoute, msg: Any, name: str, netns: str | None) -> None:
    try:
        ipr.link("del", index=msg["index"])
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            with _kernel("delete", name, netns):
                raise


class _Raced(Exception):
    """Another caller created the link between our look-up and our add."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _settles_races(ensure: Callable[_P, _R]) -> Callable[_P, _R]:
    """Runs an ensure once more if another caller created the link concurrently: the
    second run finds it and reconciles it like any existing link."""

    @functools.wraps(ensure)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return ensure(*args, **kwargs)
        except _Raced:
            try:
                return ensure(*args, **kwargs)
            except _Raced:
                raise StateConflict(
                    f"{_label(args[0] if args else kwargs.get('name'))}: other callers keep "
                    "creating and removing it; try again"
                ) from None

    return wrapper


def _create(ipr: IPRoute, name: str, netns: str | None, what: str, **spec: Any) -> None:
    """`ip link add`; "File exists" means a concurrent creator won, which `_settles_races`
    handles by reconciling what it made."""
    try:
        ipr.link("add", ifname=name, **spec)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            raise _Raced from None
        with _kernel(f"create {what}", name, netns):
            raise


# --- bridges -----------------------------------------------------------------------------


@_settles_races
def ensure_bridge(name: str, *, netns: str | None = None) -> LinkState:
    """A Linux bridge named `name`, up.

    A bridge this function creates keeps its MAC address whatever ports come and go; an
    existing bridge is only brought up, its other settings are its owner's.
    """
    check_ifname(name)
    netns = check_netns_name(netns)
    with _session(netns) as ipr:
        with _kernel("look up", name, netns):
            msg = _get(ipr, name)
        outcome: Outcome = "unchanged"
        if msg is None:
            _create(ipr, name, netns, "bridge", kind="bridge")
            outcome = "created"
            msg = _refresh(ipr, name, netns)
            # A bridge whose MAC was never set takes the lowest MAC of its ports, so adding
            # or replacing a port (a VXLAN with a new VNI, a guest's tap) would change the
            # address its neighbours have cached. Setting it, to the random one it has,
            # pins it.
            with _kernel("pin the MAC address", name, netns):
                ipr.link("set", index=msg["index"], address=msg.get("address"))
            msg = _refresh(ipr, name, netns)
        else:
            _expect_kind(msg, name, netns, "bridge")
        msg, outcome = _settle(ipr, msg, name, netns, master=None, outcome=outcome)
        return LinkState(**_base(ipr, msg, netns, outcome))


# --- VXLAN -------------------------------------------------------------------------------


def _vxlan_state(ipr: IPRoute, msg: Any, netns: str | None, outcome: Outcome) -> VxlanState:
    data = msg.get(("linkinfo", "data"))
    get = data.get_attr if data is not None else (lambda _key: None)
    destination = get("IFLA_VXLAN_GROUP") or get("IFLA_VXLAN_GROUP6")
    multicast = destination is not None and ipaddress.ip_address(destination).is_multicast
    return VxlanState(
        **_base(ipr, msg, netns, outcome),
        vni=get("IFLA_VXLAN_ID"),
        local=get("IFLA_VXLAN_LOCAL") or get("IFLA_VXLAN_LOCAL6"),
        remote=None if multicast else destination,
        group=destination if multicast else None,
        dstport=get("IFLA_VXLAN_PORT"),
        underlay=_name_of(ipr, get("IFLA_VXLAN_LINK")),
    )


@_settles_races
def ensure_vxlan(
    name: str,
    vni: int,
    *,
    local: str,
    remote: str | None = None,
    group: str | None = None,
    dstport: int = VXLAN_PORT,
    bridge: str | None = None,
    underlay: str | None = None,
    netns: str | None = None,
) -> VxlanState:
    """A VXLAN link with VNI `vni` sourcing from `local`, up, a port of `bridge` if given.

    Flooded traffic (ARP, unknown unicast) goes to `remote` (a unicast peer) or to the
    multicast `group` (which needs `underlay`, the device to join the group on); with
    neither, the kernel only sends where its FDB says. A link of that name whose VNI,
    addresses, port or underlay differ is replaced (the kernel cannot change them in
    place) and re-attached to `bridge`, or to the bridge it was a port of.
    """
    check_ifname(name)
    netns = check_netns_name(netns)
    vni = _check_vni(name, vni)
    dstport = _check_port(name, dstport)
    local_ip = _check_ip(name, local, field="local")
    if remote is not None and group is not None:
        raise InvalidParameter(
            f"{_label(name)}: give a unicast remote or a multicast group, not both",
            field="group",
        )
    destination = None
    if remote is not None:
        destination = _check_ip(name, remote, field="remote")
        if destination.is_multicast:
            raise InvalidParameter(
                f"{_label(name)}: remote {remote} is a multicast address; pass it as group",
                field="remote",
            )
    if group is not None:
        destination = _check_ip(name, group, field="group")
        if not destination.is_multicast:
            raise InvalidParameter(
                f"{_label(name)}: group {group} is not a multicast address", field="group"
            )
        if underlay is None:
            raise InvalidParameter(
                f"{_label(name)}: a multicast group needs an underlay device to join it on",
                field="underlay",
            )
    if destination is not None and destination.version != local_ip.version:
        raise InvalidParameter(
            f"{_label(name)}: local {local_ip} and {'remote' if remote else 'group'} "
            f"{destination} are not of the same IP version",
            field="remote" if remote else "group",
        )
    if bridge is not None:
        check_ifname(bridge, field="bridge")
    if underlay is not None:
        check_ifname(underlay, field="underlay")

    six = local_ip.version == 6
    spec: dict[str, Any] = {
        "vxlan_id": vni,
        "vxlan_port": dstport,
        ("vxlan_local6" if six else "vxlan_local"): str(local_ip),
    }
    if destination is not None:
        spec["vxlan_group6" if six else "vxlan_group"] = str(destination)

    with _session(netns) as ipr:
        with _kernel("look up", name, netns):
            master = _bridge_index(ipr, bridge, name, netns)
            underlay_index = None
            if underlay is not None:
                found = _get(ipr, underlay)
                if found is None:
                    raise NotFound(
                        f"{_label(name)}: underlay device '{underlay}' does not exist "
                        f"in {_where(netns)}",
                        field="underlay",
                    )
                underlay_index = found["index"]
                spec["vxlan_link"] = underlay_index
            msg = _get(ipr, name)

        outcome: Outcome = "unchanged"
        if msg is not None:
            _expect_kind(msg, name, netns, "vxlan")
            now = _vxlan_state(ipr, msg, netns, outcome)
            wanted = (
                vni,
                str(local_ip),
                str(destination) if destination is not None else None,
                dstport,
                underlay,
            )
            if (now.vni, now.local, now.remote or now.group, now.dstport, now.underlay) != wanted:
                if master is None:  # keep it where it was
                    master = msg.get("master")
                _delete(ipr, msg, name, netns)
                msg, outcome = None, "replaced"
        if msg is None:
            _create(ipr, name, netns, f"vxlan (VNI {vni})", kind="vxlan", **spec)
            outcome = "created" if outcome == "unchanged" else outcome
            msg = _refresh(ipr, name, netns)
        msg, outcome = _settle(ipr, msg, name, netns, master=master, outcome=outcome)
        return _vxlan_state(ipr, msg, netns, outcome)


# --- 802.1q VLAN -------------------------------------------------------------------------


@_settles_races
def ensure_vlan(
    name: str,
    vlan_id: int,
    *,
    parent: str,
    bridge: str | None = None,
    netns: str | None = None,
) -> VlanState:
    """An 802.1q VLAN link tagging `vlan_id` on `parent`, up, a port of `bridge` if given.

    A kernel built without 802.1q (no 8021q module) answers with NotSupported. A link of
    that name on another parent or with another id is replaced.
    """
    check_ifname(name)
    netns = check_netns_name(netns)
    check_ifname(parent, field="parent")
    if bridge is not None:
        check_ifname(bridge, field="bridge")
    if isinstance(vlan_id, bool) or not isinstance(vlan_id, int) or not 1 <= vlan_id <= 4094:
        raise InvalidParameter(
            f"{_label(name)}: VLAN id {vlan_id!r} is not an integer from 1 to 4094",
            field="vlan_id",
        )
    with _session(netns) as ipr:
        with _kernel("look up", name, netns):
            master = _bridge_index(ipr, bridge, name, netns)
            parent_msg = _get(ipr, parent)
            if parent_msg is None:
                raise NotFound(
                    f"{_label(name)}: parent device '{parent}' does not exist in {_where(netns)}",
                    field="parent",
                )
            msg = _get(ipr, name)
        outcome: Outcome = "unchanged"
        if msg is not None:
            _expect_kind(msg, name, netns, "vlan")
            current = (msg.get(("linkinfo", "data", "IFLA_VLAN_ID")), msg.get("link"))
            if current != (vlan_id, parent_msg["index"]):
                if master is None:
                    master = msg.get("master")
                _delete(ipr, msg, name, netns)
                msg, outcome = None, "replaced"
        if msg is None:
            try:
                ipr.link("add", ifname=name, kind="vlan", link=parent_msg["index"], vlan_id=vlan_id)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise _Raced from None
                # The kernel answers an unknown link kind with EOPNOTSUPP.
                if exc.code == errno.EOPNOTSUPP:
                    raise NotSupported(
                        "802.1q VLAN interfaces are not supported on this kernel "
                        f"(creating {_label(name)} on '{parent}' in {_where(netns)}); "
                        "load the 8021q module or use VXLAN"
                    ) from None
                with _kernel(f"create vlan {vlan_id} on '{parent}'", name, netns):
                    raise
            outcome = "created" if outcome == "unchanged" else outcome
            msg = _refresh(ipr, name, netns)
        msg, outcome = _settle(ipr, msg, name, netns, master=master, outcome=outcome)
        return VlanState(
            **_base(ipr, msg, netns, outcome),
            vlan_id=msg.get(("linkinfo", "data", "IFLA_VLAN_ID")),
            parent=_name_of(ipr, msg.get("link")),
        )


# --- tap and veth ------------------------------------------------------------------------


@_settles_races
def ensure_tap(name: str, *, bridge: str | None = None, netns: str | None = None) -> LinkState:
    """A persistent tap device, up, a port of `bridge` if given.

    Without a process attached it has no carrier; a hypervisor opens it by name.
    """
    check_ifname(name)
    netns = check_netns_name(netns)
    if bridge is not None:
        check_ifname(bridge, field="bridge")
    with _session(netns) as ipr:
        with _kernel("look up", name, netns):
            master = _bridge_index(ipr, bridge, name, netns)
            msg = _get(ipr, name)
        outcome: Outcome = "unchanged"
        if msg is None:
            _create(ipr, name, netns, "tap", kind="tuntap", mode="tap")
            outcome = "created"
            msg = _refresh(ipr, name, netns)
        else:
            _expect_kind(msg, name, netns, "tap")
        msg, outcome = _settle(ipr, msg, name, netns, master=master, outcome=outcome)
        return LinkState(**_base(ipr, msg, netns, outcome))


def _is_peer_of(candidate: Any | None, msg: Any) -> bool:
    """Whether `candidate` is a veth whose other end has the index of `msg`.

    IFLA_LINK of a veth is its peer's index in the peer's namespace, so each end names the
    other; we check both directions.
    """
    return (
        candidate is not None
        and _kind(candidate) == "veth"
        and candidate.get("link") == msg["index"]
        and msg.get("link") == candidate["index"]
    )


@_settles_races
def ensure_veth(
    name: str,
    peer: str,
    *,
    netns: str | None = None,
    peer_netns: str | None = None,
    bridge: str | None = None,
) -> VethState:
    """A veth pair `name` (in `netns`) <-> `peer` (in `peer_netns`), both ends up.

    `peer_netns` None means the same namespace as `name`. (For a pair between the host
    namespace and a named one, call with netns=None and peer_netns=the named one.)

    `bridge` (in `netns`) takes `name` as a port. A `name` that is a veth with some other
    peer is replaced; a `peer` name already taken by something else is an error, since
    it is not ours to delete.
    """
    check_ifname(name)
    check_ifname(peer, field="peer")
    netns = check_netns_name(netns)
    peer_netns = check_netns_name(peer_netns) if peer_netns is not None else netns
    if bridge is not None:
        check_ifname(bridge, field="bridge")
    if peer == name and peer_netns == netns:
        raise InvalidParameter(
            f"{_label(name)}: a veth pair needs two names, or two namespaces", field="peer"
        )
    with _session(netns) as ipr, _session(peer_netns) as peer_ipr:
        with _kernel("look up", name, netns):
            master = _bridge_index(ipr, bridge, name, netns)
            msg = _get(ipr, name)
        with _kernel("look up", peer, peer_netns):
            peer_msg = _get(peer_ipr, peer)
        outcome: Outcome = "unchanged"
        if msg is not None:
            _expect_kind(msg, name, netns, "veth")
            if not _is_peer_of(peer_msg, msg):
                if master is None:
                    master = msg.get("master")
                _delete(ipr, msg, name, netns)  # takes its old peer with it
                msg, outcome = None, "replaced"
                with _kernel("look up", peer, peer_netns):
                    peer_msg = _get(peer_ipr, peer)
        if msg is None:
            if peer_msg is not None:
                raise AlreadyExists(
                    f"{_label(peer)} already exists in {_where(peer_netns)} and is not "
                    f"the peer of '{name}'; remove it or choose another peer name",
                    field="peer",
                )
            peer_spec: dict[str, Any] = {"ifname": peer}
            if peer_netns is not None and peer_netns != netns:
                peer_spec["net_ns_fd"] = os.path.join(NETNS_DIR, peer_netns)
            _create(ipr, name, netns, f"veth pair with '{peer}'", kind="veth", peer=peer_spec)
            outcome = "created" if outcome == "unchanged" else outcome
            msg = _refresh(ipr, name, netns)
        peer_msg = _refresh(peer_ipr, peer, peer_netns)
        if not _is_up(peer_msg):
            with _kernel("set up", peer, peer_netns):
                peer_ipr.link("set", index=peer_msg["index"], state="up")
            outcome = "updated" if outcome == "unchanged" else outcome
        msg, outcome = _settle(ipr, msg, name, netns, master=master, outcome=outcome)
        return VethState(**_base(ipr, msg, netns, outcome), peer=peer, peer_netns=peer_netns)


# --- addresses ---------------------------------------------------------------------------


def ensure_address(name: str, address: str, *, netns: str | None = None) -> AddressState:
    """`address` ("198.51.100.1/24") assigned to interface `name`; others are left alone."""
    check_ifname(name)
    netns = check_netns_name(netns)
    try:
        iface = ipaddress.ip_interface(str(address).strip())
    except ValueError:
        raise InvalidParameter(
            f"{_label(name)}: address {address!r} is not an address with a prefix length "
            "like 198.51.100.1/24",
            field="address",
        ) from None
    with _session(netns) as ipr:
        with _kernel("look up", name, netns):
            msg = _get(ipr, name)
        if msg is None:
            raise NotFound(f"{_label(name)} does not exist in {_where(netns)}", field="name")
        with _kernel("list addresses", name, netns):
            present = {
                (a.get("address"), a["prefixlen"]) for a in ipr.addr("dump", index=msg["index"])
            }
        outcome: Outcome = "unchanged"
        if (str(iface.ip), iface.network.prefixlen) not in present:
            try:
                ipr.addr(
                    "add",
                    index=msg["index"],
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                )
                outcome = "created"
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # a concurrent caller added it: same end state
                    with _kernel(f"add address {iface.with_prefixlen}", name, netns):
                        raise
        return AddressState(
            interface=name, netns=netns, address=iface.with_prefixlen, outcome=outcome
        )


# --- removal and queries -----------------------------------------------------------------


def remove_link(name: str, *, netns: str | None = None) -> bool:
    """Deletes the interface; True if it existed, False if it was already gone.

    Removing one end of a veth pair removes both ends.
    """
    check_ifname(name)
    netns = check_netns_name(netns)
    with _session(netns) as ipr:
        with _kernel("look up", name, netns):
            msg = _get(ipr, name)
        if msg is None:
            return False
        _delete(ipr, msg, name, netns)
        return True


def link_state(name: str, *, netns: str | None = None) -> LinkState | None:
    """The interface as it is now, or None if it does not exist."""
    check_ifname(name)
    netns = check_netns_name(netns)
    with _session(netns) as ipr, _kernel("look up", name, netns):
        msg = _get(ipr, name)
        if msg is None:
            return None
        return LinkState(**_base(ipr, msg, netns, "unchanged"))
