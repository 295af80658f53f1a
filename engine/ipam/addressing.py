"""IPv4 address arithmetic and the range rules every IPAM service shares.

Addresses are handled as integers (what the `ip_int` columns hold); a range is an
inclusive [start, end] pair. Rules raise InvalidParameter naming the object (`label`)
and the other range involved.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlmodel import Session, select

from engine.errors import InvalidParameter
from engine.models import GuestIpRange, GuestNetwork, GuestType, Pod, PublicIpRange
from engine.validation import parse_cidr, parse_ipv4, parse_netmask

# Largest range whose rows one call may generate: a /16 (65,536 addresses).
MAX_RANGE_SIZE = 65_536


def ip_text(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def span_text(start: int, end: int) -> str:
    return f"{ip_text(start)}-{ip_text(end)}"


@dataclass(frozen=True)
class Subnet:
    """A validated gateway + network, and the allocatable range inside it."""

    gateway: str
    network: ipaddress.IPv4Network
    start: int
    end: int

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)

    @property
    def cidr(self) -> str:
        return str(self.network)

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def span(self) -> str:
        return span_text(self.start, self.end)


def parse_subnet(
    label: str,
    *,
    gateway: object,
    netmask: object | None = None,
    cidr: object | None = None,
    start_ip: object,
    end_ip: object | None = None,
    what: str = "range",
    max_size: int = MAX_RANGE_SIZE,
) -> Subnet:
    """Gateway, network and [start, end]: well-formed, start <= end, the range inside the
    network and clear of its network and broadcast addresses, the gateway inside the
    network and outside the range."""
    gw = parse_ipv4(label, gateway, field="gateway", what="gateway")
    if cidr is not None:
        network = parse_cidr(label, cidr, field="cidr")
        if netmask is not None and parse_netmask(label, netmask) != network.prefixlen:
            raise InvalidParameter(
                f"{label}: netmask {netmask} does not match CIDR {network}", field="netmask"
            )
    elif netmask is not None:
        network = ipaddress.IPv4Network(f"{gw}/{parse_netmask(label, netmask)}", strict=False)
    else:
        raise InvalidParameter(f"{label}: a netmask or a CIDR is required", field="netmask")
    if network.prefixlen > 30:
        raise InvalidParameter(
            f"{label}: network {network} is smaller than a /30 and holds no usable range",
            field="netmask",
        )
    if gw not in network:
        raise InvalidParameter(f"{label}: gateway {gw} is outside {network}", field="gateway")
    if gw in (network.network_address, network.broadcast_address):
        raise InvalidParameter(
            f"{label}: gateway {gw} is the network or broadcast address of {network}",
            field="gateway",
        )
    start = parse_ipv4(label, start_ip, field="start_ip", what=f"{what} start")
    end = parse_ipv4(
        label, end_ip if end_ip is not None else start_ip, field="end_ip", what=f"{what} end"
    )
    if start > end:
        raise InvalidParameter(
            f"{label}: {what} start {start} is after its end {end}", field="end_ip"
        )
    for addr, fld in ((start, "start_ip"), (end, "end_ip")):
        if addr not in network:
            raise InvalidParameter(
                f"{label}: {what} {start}-{end} is outside its network {network}", field=fld
            )
    if start == network.network_address or end == network.broadcast_address:
        raise InvalidParameter(
            f"{label}: {what} {start}-{end} includes the network or broadcast address of {network}",
            field="start_ip" if start == network.network_address else "end_ip",
        )
    if start <= gw <= end:
        raise InvalidParameter(
            f"{label}: gateway {gw} is inside the allocatable {what} {start}-{end}",
            field="gateway",
        )
    size = int(end) - int(start) + 1
    if size > max_size:
        raise InvalidParameter(
            f"{label}: {what} {start}-{end} holds {size} addresses, more than the "
            f"{max_size} one range may hold",
            field="end_ip",
        )
    return Subnet(str(gw), network, int(start), int(end))


@dataclass(frozen=True)
class Span:
    """Something that occupies addresses in a zone: a range, or an isolated network."""

    describe: str
    start: int
    end: int
    isolated: bool = False  # an isolated network's CIDR (isolated by its own VNI)
    gateway: str | None = None
    pod_id: int | None = None  # set for a pod's management range


def zone_spans(
    session: Session,
    zone_id: int,
    *,
    exclude_public_range: int | None = None,
    exclude_guest_range: int | None = None,
) -> list[Span]:
    """Every address span of a zone: pod management ranges, public ranges, guest ranges
    of shared networks and the CIDRs of isolated networks. Ranges are few, so this walks
    ranges, never addresses."""
    spans = [
        Span(
            f"pod '{p.name}' management range {p.start_ip}-{p.end_ip}",
            ip_int(p.start_ip),
            ip_int(p.end_ip),
            gateway=p.gateway,
            pod_id=p.id,
        )
        for p in session.exec(select(Pod).where(Pod.zone_id == zone_id))
    ]
    spans += [
        Span(f"public IP range {r.start_ip}-{r.end_ip}", r.start_int, r.end_int, gateway=r.gateway)
        for r in session.exec(select(PublicIpRange).where(PublicIpRange.zone_id == zone_id))
        if r.id != exclude_public_range
    ]
    rows = session.exec(
        select(GuestIpRange, GuestNetwork)
        .join(GuestNetwork, GuestNetwork.id == GuestIpRange.network_id)
        .where(GuestNetwork.zone_id == zone_id)
    )
    for rng, net in rows:
        if rng.id == exclude_guest_range:
            continue
        if net.guest_type == GuestType.ISOLATED:
            cidr = ipaddress.IPv4Network(net.cidr)
            spans.append(
                Span(
                    f"isolated network '{net.name}' {cidr}",
                    int(cidr.network_address),
                    int(cidr.broadcast_address),
                    isolated=True,
                )
            )
        else:
            spans.append(
                Span(
                    f"shared network '{net.name}' range {rng.start_ip}-{rng.end_ip}",
                    rng.start_int,
                    rng.end_int,
                    gateway=rng.gateway,
                )
            )
    return spans


def check_no_overlap(
    label: str,
    spans: list[Span],
    start: int,
    end: int,
    *,
    what: str,
    zone_name: str,
    gateway: str | None = None,
    isolated: bool = False,
) -> None:
    """Refuse a new span that overlaps another of the zone, or whose gateway lies inside an
    allocatable range. Isolated networks may share CIDRs with each other (their VNIs keep
    them apart, as CloudStack's default guest CIDR is shared by every isolated network)."""
    gw = ip_int(gateway) if gateway else None
    for span in spans:
        if isolated and span.isolated:
            continue
        if start <= span.end and span.start <= end:
            raise InvalidParameter(
                f"{label}: {what} {span_text(start, end)} overlaps {span.describe} "
                f"in zone '{zone_name}'",
                field="start_ip",
            )
        if gw is not None and not span.isolated and span.start <= gw <= span.end:
            raise InvalidParameter(
                f"{label}: gateway {gateway} is inside {span.describe} in zone '{zone_name}'",
                field="gateway",
            )
        if span.gateway is not None and start <= ip_int(span.gateway) <= end:
            raise InvalidParameter(
                f"{label}: {what} {span_text(start, end)} includes the gateway "
                f"{span.gateway} of {span.describe} in zone '{zone_name}'",
                field="start_ip",
            )


def mac_for(address_row_id: int) -> str:
    """A locally administered MAC (02:00:…) from the guest address row's id: unique across
    every network, so a VM with NICs on two networks of one CIDR gets two MACs."""
    octets = [0x02, 0x00, *(address_row_id % 2**32).to_bytes(4, "big")]
    return ":".join(f"{o:02x}" for o in octets)
