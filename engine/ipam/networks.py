"""Guest networks, their address ranges, and the NICs that take addresses from them.

- A Basic zone has exactly one shared guest network; its addresses come from guest
  ranges set per pod, and a VM takes an address from its own pod's ranges.
- An Advanced zone has shared networks (an operator-given range) and isolated networks
  owned by an account: a CIDR (the zone's guest CIDR by default), a gateway, optionally
  a VM CIDR (the rest of the CIDR is reserved for machines outside Stratus) and a VNI
  from the zone's pool.

Every allocatable guest address is a row created with its range, so a NIC takes the
lowest free row with one picking UPDATE, and UNIQUE(network, address) on both the rows
and the NICs backs it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.db import Database
from engine.errors import AlreadyExists, InUse, InvalidParameter, NotFound, StateConflict
from engine.events import record_event
from engine.ipam.addressing import (
    check_no_overlap,
    ip_int,
    ip_text,
    mac_for,
    parse_subnet,
    span_text,
    zone_spans,
)
from engine.ipam.allocation import take_exact, take_from_pools
from engine.ipam.common import Named, caller_account, insert_rows, now
from engine.ipam.errors import AddressExhausted
from engine.ipam.vni import release_vni, take_vni
from engine.lookup import ensure_unique_name, resolve
from engine.models import (
    GuestIpAddress,
    GuestIpRange,
    GuestNetwork,
    GuestType,
    IpAddressState,
    IsolationMethod,
    NetworkType,
    Nic,
    Pod,
    PublicIpAddress,
    VirtualMachine,
    Zone,
)
from engine.validation import check_name, check_text, parse_cidr, parse_ipv4

# Isolated networks: a /16 at most (rows are generated per address), a /29 at least.
ISOLATED_PREFIX_RANGE = (16, 29)
IN_USE = (IpAddressState.ALLOCATED, IpAddressState.ALLOCATING, IpAddressState.RESERVED)


def network_label(network: GuestNetwork) -> str:
    return f"network '{network.name}'"


def _address_rows(rng: GuestIpRange, skip: set[int]) -> list[dict[str, Any]]:
    return [
        {
            "range_id": rng.id,
            "network_id": rng.network_id,
            "ip_int": value,
            "address": ip_text(value),
            "state": IpAddressState.FREE,
        }
        for value in range(rng.start_int, rng.end_int + 1)
        if value not in skip
    ]


def _add_range(
    session: Session,
    network: GuestNetwork,
    *,
    gateway: str,
    network_cidr: ipaddress.IPv4Network,
    start: int,
    end: int,
    pod_id: int | None = None,
    skip: set[int] | None = None,
) -> GuestIpRange:
    rng = GuestIpRange(
        network_id=network.id,  # type: ignore[arg-type]
        pod_id=pod_id,
        gateway=gateway,
        netmask=str(network_cidr.netmask),
        cidr=str(network_cidr),
        start_ip=ip_text(start),
        end_ip=ip_text(end),
        start_int=start,
        end_int=end,
        size=0,
    )
    session.add(rng)
    session.flush()
    rows = _address_rows(rng, skip or set())
    rng.size = len(rows)
    insert_rows(session, GuestIpAddress.__table__, rows)
    session.add(rng)
    return rng


def _new_network_name(session: Session, zone: Zone, name: str) -> tuple[str, str]:
    label = f"network '{name}'"
    name = check_name(label, name)
    label = f"network '{name}'"
    ensure_unique_name(
        session, GuestNetwork, f"{label} in zone '{zone.name}'", name, zone_id=zone.id
    )
    return name, label


def _require_zone_type(label: str, zone: Zone, wanted: NetworkType, what: str) -> None:
    if zone.network_type != wanted:
        article = "an" if wanted == NetworkType.ADVANCED else "a"
        raise InvalidParameter(
            f"{label}: {what} need {article} {wanted} zone; zone '{zone.name}' is "
            f"{zone.network_type}",
            field="zone",
        )


# --- isolated networks -----------------------------------------------------------------


def create_isolated_network(
    caller: Caller,
    zone_ref: str,
    name: str,
    *,
    account_ref: str | None = None,
    cidr: str | None = None,
    gateway: str | None = None,
    vm_cidr: str | None = None,
    vni: int | None = None,
    display_text: str = "",
) -> GuestNetwork:
    """An account's isolated network with its VNI and its guest address rows."""
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        name, label = _new_network_name(session, zone, name)
        display_text = check_text(label, display_text, field="display_text")
        _require_zone_type(label, zone, NetworkType.ADVANCED, "isolated networks")
        account = caller_account(session, caller, account_ref)
        net = parse_cidr(label, cidr or zone.guest_cidr or "10.1.1.0/24", field="cidr")
        low, high = ISOLATED_PREFIX_RANGE
        if not low <= net.prefixlen <= high:
            raise InvalidParameter(
                f"{label}: CIDR {net} must be between /{low} and /{high}", field="cidr"
            )
        gw = parse_ipv4(
            label, gateway or str(net.network_address + 1), field="gateway", what="gateway"
        )
        if gw not in net:
            raise InvalidParameter(f"{label}: gateway {gw} is outside {net}", field="gateway")
        if gw in (net.network_address, net.broadcast_address):
            raise InvalidParameter(
                f"{label}: gateway {gw} is the network or broadcast address of {net}",
                field="gateway",
            )
        vm_net = net
        if vm_cidr is not None:
            vm_net = parse_cidr(label, vm_cidr, field="vm_cidr")
            if not vm_net.subnet_of(net):
                raise InvalidParameter(
                    f"{label}: VM CIDR {vm_net} is not inside the network CIDR {net}",
                    field="vm_cidr",
                )
        start = max(int(vm_net.network_address), int(net.network_address) + 1)
        end = min(int(vm_net.broadcast_address), int(net.broadcast_address) - 1)
        # A gateway at either end of the VM range shortens it; inside, its row is skipped.
        start += start == int(gw)
        end -= end == int(gw)
        if start > end:
            raise InvalidParameter(
                f"{label}: VM CIDR {vm_net} leaves no address for VMs in {net}", field="vm_cidr"
            )
        check_no_overlap(
            label,
            zone_spans(session, zone.id),
            int(net.network_address),  # type: ignore[arg-type]
            int(net.broadcast_address),
            what="CIDR",
            zone_name=zone.name,
            gateway=str(gw),
            isolated=True,
        )
        network = GuestNetwork(
            name=name,
            display_text=display_text,
            zone_id=zone.id,  # type: ignore[arg-type]
            guest_type=GuestType.ISOLATED,
            account_id=account.id,
            domain_id=account.domain_id,
            cidr=str(net),
            gateway=str(gw),
            netmask=str(net.netmask),
            vm_cidr=str(vm_net) if vm_cidr is not None else None,
            isolation=IsolationMethod.VXLAN,
        )
        session.add(network)
        session.flush()
        network.vni = take_vni(
            session,
            zone,
            network_id=network.id,
            account_id=account.id,  # type: ignore[arg-type]
            requested=vni,
        )
        rng = _add_range(
            session,
            network,
            gateway=str(gw),
            network_cidr=net,
            start=start,
            end=end,
            skip={int(gw)},
        )
        session.add(network)
        record_event(
            session,
            caller,
            "NETWORK.CREATE",
            "Network",
            network,
            f"created isolated network {net} (VNI {network.vni}, {rng.size} guest addresses) "
            f"for account '{account.name}' in zone '{zone.name}'",
        )
    return network


# --- shared networks -------------------------------------------------------------------


def create_shared_network(
    caller: Caller,
    zone_ref: str,
    name: str,
    *,
    gateway: str,
    start_ip: str,
    end_ip: str | None = None,
    netmask: str | None = None,
    cidr: str | None = None,
    vni: int | None = None,
    display_text: str = "",
) -> GuestNetwork:
    """An Advanced zone's shared network: an operator-given range of one subnet."""
    with caller.db.write() as session:
        zone = resolve(session, Zone, zone_ref, "zone", field="zone")
        name, label = _new_network_name(session, zone, name)
        display_text = check_text(label, display_text, field="display_text")
        _require_zone_type(
            label, zone, NetworkType.ADVANCED, "shared networks with their own range"
        )
        subnet = parse_subnet(
            label, gateway=gateway, netmask=netmask, cidr=cidr, start_ip=start_ip, end_ip=end_ip
        )
        check_no_overlap(
            label,
            zone_spans(session, zone.id),
            subnet.start,
            subnet.end,  # type: ignore[arg-type]
            what="range",
            zone_name=zone.name,
            gateway=subnet.gateway,
        )
        network = GuestNetwork(
            name=name,
            display_text=display_text,
            zone_id=zone.id,  # type: ignore[arg-type]
            guest_type=GuestType.SHARED,
            cidr=subnet.cidr,
            gateway=subnet.gateway,
            netmask=subnet.netmask,
            isolation=IsolationMethod.VLAN if vni is not None else IsolationMethod.UNTAGGED,
        )
        session.add(network)
        session.flush()
        if vni is not None:
            network.vni = take_vni(
                session,
                zone,
                network_id=network.id,
                account_id=None,  # type: ignore[arg-type]
                requested=vni,
            )
        _add_range(
            session,
            network,
            gateway=subnet.gateway,
            network_cidr=subnet.network,
            start=subnet.start,
            end=subnet.end,
        )
        session.add(network)
        record_event(
            session,
            caller,
            "NETWORK.CREATE",
            "Network",
            network,
            f"created shared network {subnet.cidr}, range {subnet.span} in zone '{zone.name}'",
        )
    return network


def basic_zone_network(session: Session, zone: Zone) -> GuestNetwork | None:
    return session.exec(
        select(GuestNetwork).where(
            GuestNetwork.zone_id == zone.id, GuestNetwork.guest_type == GuestType.SHARED
        )
    ).first()


def add_pod_guest_range(
    caller: Caller,
    pod_ref: str,
    *,
    gateway: str,
    start_ip: str,
    end_ip: str | None = None,
    netmask: str | None = None,
    network_name: str = "guest",
) -> GuestIpRange:
    """A Basic zone's guest range for one pod; the zone's one shared network is created
    with the first range."""
    with caller.db.write() as session:
        pod = resolve(session, Pod, pod_ref, "pod", field="pod")
        zone = session.get(Zone, pod.zone_id)
        assert zone is not None
        label = f"pod '{pod.name}' guest range {start_ip}-{end_ip or start_ip}"
        _require_zone_type(label, zone, NetworkType.BASIC, "per-pod guest ranges")
        subnet = parse_subnet(
            label, gateway=gateway, netmask=netmask, start_ip=start_ip, end_ip=end_ip
        )
        label = f"pod '{pod.name}' guest range {subnet.span}"
        check_no_overlap(
            label,
            zone_spans(session, zone.id),
            subnet.start,
            subnet.end,  # type: ignore[arg-type]
            what="range",
            zone_name=zone.name,
            gateway=subnet.gateway,
        )
        network = basic_zone_network(session, zone)
        if network is None:
            name, _ = _new_network_name(session, zone, network_name)
            network = GuestNetwork(
                name=name,
                zone_id=zone.id,  # type: ignore[arg-type]
                guest_type=GuestType.SHARED,
                isolation=IsolationMethod.UNTAGGED,
                display_text=f"the guest network of Basic zone '{zone.name}'",
            )
            session.add(network)
            session.flush()
            record_event(
                session,
                caller,
                "NETWORK.CREATE",
                "Network",
                network,
                f"created the shared guest network of Basic zone '{zone.name}'",
            )
        rng = _add_range(
            session,
            network,
            gateway=subnet.gateway,
            network_cidr=subnet.network,
            start=subnet.start,
            end=subnet.end,
            pod_id=pod.id,
        )
        record_event(
            session,
            caller,
            "VLAN.IP.RANGE.CREATE",
            "GuestIpRange",
            Named(rng.uuid, label),
            f"added {label} ({rng.size} addresses) to {network_label(network)}",
        )
    return rng


def _in_use_message(session: Session, label: str, where: Any) -> None:
    count = session.exec(
        select(func.count()).where(where, col(GuestIpAddress.state).in_(IN_USE))
    ).one()
    if count:
        shown = list(
            session.exec(
                select(GuestIpAddress.address)
                .where(where, col(GuestIpAddress.state).in_(IN_USE))
                .order_by(GuestIpAddress.ip_int)
                .limit(3)
            )
        )
        raise InUse(
            f"{label} has {count} address{'es' if count != 1 else ''} in use "
            f"({', '.join(shown)}{' …' if count > len(shown) else ''}): release them first"
        )


def delete_guest_ip_range(caller: Caller, range_ref: str) -> None:
    with caller.db.write() as session:
        rng = session.exec(select(GuestIpRange).where(GuestIpRange.uuid == str(range_ref))).first()
        if rng is None:
            raise NotFound(f"guest IP range '{range_ref}' does not exist", field="range")
        network = session.get(GuestNetwork, rng.network_id)
        assert network is not None
        label = f"guest range {rng.start_ip}-{rng.end_ip} of {network_label(network)}"
        _in_use_message(session, label, GuestIpAddress.range_id == rng.id)
        if network.guest_type == GuestType.ISOLATED:
            raise InvalidParameter(
                f"{label}: an isolated network's range goes with the network; delete the network",
                field="range",
            )
        session.execute(delete(GuestIpAddress).where(col(GuestIpAddress.range_id) == rng.id))
        session.delete(rng)
        record_event(
            session,
            caller,
            "VLAN.IP.RANGE.DELETE",
            "GuestIpRange",
            Named(rng.uuid, label),
            f"deleted {label}",
        )


def delete_network(caller: Caller, network_ref: str) -> None:
    """Refused while a NIC, an allocated or reserved guest address, or a public address
    still belongs to the network."""
    with caller.db.write() as session:
        network = resolve(session, GuestNetwork, network_ref, "network", field="network")
        label = network_label(network)
        nics = session.exec(select(func.count()).where(Nic.network_id == network.id)).one()
        if nics:
            raise InUse(
                f"{label} still has {nics} NIC{'s' if nics != 1 else ''}: remove them first"
            )
        _in_use_message(session, label, GuestIpAddress.network_id == network.id)
        public = session.exec(
            select(func.count()).where(PublicIpAddress.network_id == network.id)
        ).one()
        if public:
            raise InUse(
                f"{label} still has {public} public address{'es' if public != 1 else ''}"
                " associated: release them first"
            )
        if network.vni is not None:
            release_vni(session, network.zone_id, network.vni)
        session.execute(delete(GuestIpAddress).where(col(GuestIpAddress.network_id) == network.id))
        session.execute(delete(GuestIpRange).where(col(GuestIpRange.network_id) == network.id))
        session.delete(network)
        record_event(session, caller, "NETWORK.DELETE", "Network", network, "deleted network")


# --- NICs ------------------------------------------------------------------------------


def _ranges_for(session: Session, network: GuestNetwork, vm: VirtualMachine) -> list[GuestIpRange]:
    query = select(GuestIpRange).where(GuestIpRange.network_id == network.id)
    if network.cidr is None:  # a Basic zone: the VM's own pod's ranges
        if vm.pod_id is None:
            raise InvalidParameter(
                f"VM '{vm.name}': a Basic zone address comes from the VM's pod, and the VM "
                "has no pod yet (place it first)",
                field="vm",
            )
        query = query.where(GuestIpRange.pod_id == vm.pod_id)
    return list(session.exec(query.order_by(GuestIpRange.start_int)))


def _refuse_guest_address(
    session: Session,
    label: str,
    network: GuestNetwork,
    ranges: list[GuestIpRange],
    value: int,
) -> None:
    text = ip_text(value)
    if network.cidr is not None:
        cidr = ipaddress.IPv4Network(network.cidr)
        if ipaddress.IPv4Address(value) not in cidr:
            raise InvalidParameter(
                f"{label}: address {text} is outside {network_label(network)} {cidr}",
                field="address",
            )
        if value in (int(cidr.network_address), int(cidr.broadcast_address)):
            raise InvalidParameter(
                f"{label}: address {text} is the network or broadcast address of {cidr}",
                field="address",
            )
    gateways = {r.gateway for r in ranges} | ({network.gateway} if network.gateway else set())
    if text in gateways:
        raise InvalidParameter(
            f"{label}: address {text} is the gateway of {network_label(network)}",
            field="address",
        )
    if not any(r.start_int <= value <= r.end_int for r in ranges):
        spans = ", ".join(span_text(r.start_int, r.end_int) for r in ranges) or "none"
        raise InvalidParameter(
            f"{label}: address {text} is outside the allocatable range of "
            f"{network_label(network)} ({spans}; the rest is reserved)",
            field="address",
        )
    row = session.exec(
        select(GuestIpAddress).where(
            GuestIpAddress.network_id == network.id, GuestIpAddress.ip_int == value
        )
    ).first()
    holder = ""
    if row is not None and row.vm_id is not None:
        vm = session.get(VirtualMachine, row.vm_id)
        holder = f" by VM '{vm.name}'" if vm else ""
    state = row.state if row is not None else "taken"
    raise AlreadyExists(
        f"{label}: address {text} of {network_label(network)} is already {state}{holder}",
        field="address",
    )


def take_guest_address(
    session: Session,
    network: GuestNetwork,
    vm: VirtualMachine,
    *,
    address: str | None = None,
    state: str = IpAddressState.ALLOCATED,
) -> tuple[int, int, str]:
    """An address of the network for the VM (the requested one or the next free), inside
    the caller's transaction: (address row id, address as an integer, dotted text)."""
    label = f"VM '{vm.name}'"
    ranges = _ranges_for(session, network, vm)
    values = {"state": state, "vm_id": vm.id, "allocated": now()}
    if address is not None:
        value = int(parse_ipv4(label, address, field="address", what="address"))
        row_id = (
            take_exact(session, "guest", {"network_id": network.id}, value, values)
            if any(r.start_int <= value <= r.end_int for r in ranges)
            else None
        )
        if row_id is None:
            _refuse_guest_address(session, label, network, ranges, value)
        return row_id, value, ip_text(value)  # type: ignore[return-value]
    taken = take_from_pools(session, "guest", [r.id for r in ranges], values)  # type: ignore[misc]
    if taken is None:
        if not ranges:
            raise AddressExhausted(
                f"{network_label(network)} has no guest range"
                + (" for the VM's pod" if network.cidr is None else "")
            )
        listed = ", ".join(f"{r.start_ip}-{r.end_ip} ({r.size} addresses)" for r in ranges)
        raise AddressExhausted(
            f"{network_label(network)}: every address of guest range"
            f"{'s' if len(ranges) > 1 else ''} {listed} is taken"
        )
    return taken[1], ip_int(taken[2]), taken[2]


def release_guest_address(session: Session, network_id: int, value: int) -> None:
    session.execute(
        update(GuestIpAddress)
        .where(col(GuestIpAddress.network_id) == network_id, col(GuestIpAddress.ip_int) == value)
        .values(state=IpAddressState.FREE, vm_id=None, allocated=None)
    )


def add_nic(
    session: Session,
    vm: VirtualMachine,
    network: GuestNetwork,
    *,
    address: str | None = None,
    is_default: bool | None = None,
) -> Nic:
    """Give the VM a NIC on the network, inside the caller's transaction (deploy uses it)."""
    label = f"VM '{vm.name}'"
    if network.zone_id != vm.zone_id:
        raise InvalidParameter(
            f"{label}: {network_label(network)} is in another zone than the VM", field="network"
        )
    if network.guest_type == GuestType.ISOLATED and network.account_id != vm.account_id:
        raise InvalidParameter(
            f"{label}: {network_label(network)} is an isolated network of another account",
            field="network",
        )
    existing = list(session.exec(select(Nic).where(Nic.vm_id == vm.id)))
    if any(n.network_id == network.id for n in existing):
        raise AlreadyExists(
            f"{label} already has a NIC on {network_label(network)}", field="network"
        )
    if is_default is None:
        is_default = not existing
    if is_default and any(n.is_default for n in existing):
        raise InvalidParameter(f"{label} already has a default NIC", field="is_default")
    row_id, value, text = take_guest_address(session, network, vm, address=address)
    nic = Nic(
        vm_id=vm.id,
        network_id=network.id,
        ip_int=value,
        address=text,  # type: ignore[arg-type]
        mac=mac_for(row_id),
        is_default=is_default,
    )
    session.add(nic)
    session.flush()
    return nic


def allocate_nic(
    caller: Caller,
    vm_ref: str,
    network_ref: str,
    *,
    address: str | None = None,
    is_default: bool | None = None,
) -> Nic:
    with caller.db.write() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        network = resolve(
            session, GuestNetwork, network_ref, "network", field="network", zone_id=vm.zone_id
        )
        nic = add_nic(session, vm, network, address=address, is_default=is_default)
        record_event(
            session,
            caller,
            "NIC.CREATE",
            "Nic",
            Named(nic.uuid, nic.address),
            f"VM '{vm.name}' got {nic.address} on {network_label(network)}",
        )
    return nic


def remove_nic(session: Session, nic: Nic) -> None:
    release_guest_address(session, nic.network_id, nic.ip_int)
    session.delete(nic)


def release_nic(caller: Caller, nic_ref: str) -> None:
    with caller.db.write() as session:
        nic = session.exec(select(Nic).where(Nic.uuid == str(nic_ref))).first()
        if nic is None:
            raise NotFound(f"NIC '{nic_ref}' does not exist", field="nic")
        remove_nic(session, nic)
        record_event(
            session,
            caller,
            "NIC.DELETE",
            "Nic",
            Named(nic.uuid, nic.address),
            f"released {nic.address}",
        )


def reserve_guest_ip(caller: Caller, network_ref: str, address: str) -> GuestIpAddress:
    """Hold a free guest address back from VMs (Reserved)."""
    with caller.db.write() as session:
        network = resolve(session, GuestNetwork, network_ref, "network", field="network")
        label = network_label(network)
        value = int(parse_ipv4(label, address, field="address", what="address"))
        row_id = take_exact(
            session,
            "guest",
            {"network_id": network.id},
            value,
            {"state": IpAddressState.RESERVED, "allocated": now()},
        )
        if row_id is None:
            ranges = list(
                session.exec(select(GuestIpRange).where(GuestIpRange.network_id == network.id))
            )
            _refuse_guest_address(session, label, network, ranges, value)
        row = session.get(GuestIpAddress, row_id)
        assert row is not None
        record_event(
            session,
            caller,
            "NET.IPRESERVE",
            "Network",
            network,
            f"reserved guest address {row.address}",
        )
    return row


def unreserve_guest_ip(caller: Caller, network_ref: str, address: str) -> None:
    with caller.db.write() as session:
        network = resolve(session, GuestNetwork, network_ref, "network", field="network")
        label = network_label(network)
        value = int(parse_ipv4(label, address, field="address", what="address"))
        changed = session.execute(
            update(GuestIpAddress)
            .where(
                col(GuestIpAddress.network_id) == network.id,
                col(GuestIpAddress.ip_int) == value,
                col(GuestIpAddress.state) == IpAddressState.RESERVED,
            )
            .values(state=IpAddressState.FREE, allocated=None)
        ).rowcount
        if changed != 1:
            raise StateConflict(
                f"{label}: address {ip_text(value)} is not Reserved", field="address"
            )
        record_event(
            session,
            caller,
            "NET.IPUNRESERVE",
            "Network",
            network,
            f"unreserved guest address {ip_text(value)}",
        )


def list_nics(caller: Caller, vm_ref: str) -> list[Nic]:
    with caller.db.read() as session:
        vm = resolve(session, VirtualMachine, vm_ref, "VM", field="vm")
        return list(session.exec(select(Nic).where(Nic.vm_id == vm.id).order_by(Nic.id)))


def list_networks(
    db: Database | Caller,
    *,
    zone_id: int | None = None,
    guest_type: str | None = None,
    account_id: int | None = None,
    after_id: int | None = None,
    limit: int = 500,
) -> list[GuestNetwork]:
    """Guest networks in id order, keyset-paged: pass the last id seen as `after_id`."""
    database = db.db if isinstance(db, Caller) else db
    with database.read() as session:
        query = select(GuestNetwork).order_by(GuestNetwork.id).limit(limit)
        if zone_id is not None:
            query = query.where(GuestNetwork.zone_id == zone_id)
        if guest_type is not None:
            query = query.where(GuestNetwork.guest_type == guest_type)
        if account_id is not None:
            query = query.where(GuestNetwork.account_id == account_id)
        if after_id is not None:
            query = query.where(col(GuestNetwork.id) > after_id)
        return list(session.exec(query))
