"""The demo datacenter's addresses: public ranges, VNI pools, guest networks, demo NICs.

`build_demo_networks` gives each demo zone what the console's IP gauges and `:ips` /
`:nets` views show, through the ordinary IPAM services (validated, audited):

- eu-west-basic (Basic): public range 198.51.100.10-250, VLAN ids 100-199, and the zone's
  shared guest network with one guest range per pod (10.21.0.0/20 for ams-r01,
  10.21.16.0/20 for ams-r02: outside the pods' management subnets 10.20.0.0/18);
- eu-central-adv (Advanced): public range 203.0.113.10-250 on VLAN 100, VXLAN VNIs
  10000-10999, and the admin account's isolated network admin-net (10.128.0.0/20, inside
  the zone's guest CIDR) with its source NAT address.

The public ranges are documentation ranges (RFC 5737), never routed anywhere.

`give_demo_nics` gives freshly inserted demo VMs a default NIC in bulk (one executemany
UPDATE of the guest address rows, one INSERT of the NICs), as long as their zone's demo
network has free addresses: about 12,000 VMs in all (4,081 per pod range, 4,093 in
admin-net); VMs beyond that have no NIC. `remove_zone_ipam` deletes a zone's IPAM rows in
bulk for the demo teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlmodel import Session, col, select

from engine.context import Caller
from engine.ipam import networks, public, vni
from engine.ipam.addressing import mac_for
from engine.models import (
    GuestIpAddress,
    GuestIpRange,
    GuestNetwork,
    GuestType,
    IpAddressState,
    Nic,
    Pod,
    PodManagementAddress,
    PublicIpAddress,
    PublicIpRange,
    Zone,
    ZoneVni,
    ZoneVniRange,
    new_uuid,
)

# zone name → what it gets. Pod ranges are (gateway, first, last, netmask).
DEMO_NETWORKS: dict[str, dict[str, Any]] = {
    "eu-west-basic": {
        "public": ("198.51.100.1", "198.51.100.10", "198.51.100.250", "255.255.255.0", None),
        "vni": ("vlan", 100, 199),
        "pod_ranges": {
            "ams-r01": ("10.21.0.1", "10.21.0.10", "10.21.15.250", "255.255.240.0"),
            "ams-r02": ("10.21.16.1", "10.21.16.10", "10.21.31.250", "255.255.240.0"),
        },
    },
    "eu-central-adv": {
        "public": ("203.0.113.1", "203.0.113.10", "203.0.113.250", "255.255.255.0", "vlan://100"),
        "vni": ("vxlan", 10000, 10999),
        "isolated": ("admin-net", "10.128.0.0/20"),
    },
}


def build_demo_networks(
    caller: Caller, zone_names: Sequence[str], say: Callable[[str], None]
) -> None:
    """Public range, VNI pool and guest networks of each named demo zone."""
    for zone_name in zone_names:
        spec = DEMO_NETWORKS.get(zone_name)
        if spec is None:
            continue
        gateway, first, last, netmask, vlan = spec["public"]
        public.create_public_ip_range(
            caller,
            zone_name,
            gateway=gateway,
            start_ip=first,
            end_ip=last,
            netmask=netmask,
            vlan=vlan,
        )
        method, low, high = spec["vni"]
        vni.add_vni_range(caller, zone_name, low, high, isolation=method)
        made = []
        for pod_name, (pod_gateway, start, end, mask) in spec.get("pod_ranges", {}).items():
            pod_uuid = _pod_uuid(caller, zone_name, pod_name)
            if pod_uuid is None:  # a scaled demo keeps every pod; be safe all the same
                continue
            networks.add_pod_guest_range(
                caller, pod_uuid, gateway=pod_gateway, start_ip=start, end_ip=end, netmask=mask
            )
            made.append(f"guest range of {pod_name}")
        if "isolated" in spec:
            name, cidr = spec["isolated"]
            net = networks.create_isolated_network(
                caller, zone_name, name, cidr=cidr, display_text="the admin's demo network"
            )
            public.associate_public_ip(caller, zone_name, network_ref=net.uuid)  # source NAT
            made.append(f"isolated network {name}")
        say(
            f"zone '{zone_name}': public range {first}-{last}, {method} {low}-{high}"
            + "".join(f", {m}" for m in made)
        )


def _pod_uuid(caller: Caller, zone_name: str, pod_name: str) -> str | None:
    with caller.db.read() as session:
        return session.exec(
            select(Pod.uuid)
            .join(Zone, col(Zone.id) == Pod.zone_id)
            .where(Zone.name == zone_name, Pod.name == pod_name)
        ).first()


_guest_table = GuestIpAddress.__table__  # type: ignore[attr-defined]
_nic_table = Nic.__table__  # type: ignore[attr-defined]


def give_demo_nics(session: Session, vms: list[dict[str, Any]], now: datetime) -> int:
    """A default NIC for each new demo VM whose zone's demo network has a free address.

    A Basic zone's VM takes an address of its own pod's guest range; an Advanced zone's
    VM one of its account's isolated network. Addresses go in address order; returns how
    many VMs got a NIC.
    """
    if not vms:
        return 0
    zone_ids = sorted({vm["zone_id"] for vm in vms})
    # (zone, pod or None, account or None) → free (row id, network, ip_int, address).
    free: dict[tuple[int, int | None, int | None], list[tuple[int, int, int, str]]] = {}
    rows = session.execute(
        select(
            GuestIpAddress.id,
            GuestIpAddress.network_id,
            GuestIpAddress.ip_int,
            GuestIpAddress.address,
            GuestNetwork.zone_id,
            GuestNetwork.guest_type,
            GuestNetwork.account_id,
            GuestIpRange.pod_id,
        )
        .join(GuestNetwork, col(GuestNetwork.id) == GuestIpAddress.network_id)
        .join(GuestIpRange, col(GuestIpRange.id) == GuestIpAddress.range_id)
        .where(
            col(GuestNetwork.zone_id).in_(zone_ids),
            GuestIpAddress.state == IpAddressState.FREE,
        )
        .order_by(col(GuestIpAddress.network_id), col(GuestIpAddress.ip_int))
    ).all()  # the demo networks hold ~12,000 free addresses in all
    for row_id, network_id, value, address, zone_id, guest_type, account_id, pod_id in rows:
        owner = account_id if guest_type == GuestType.ISOLATED else None
        free.setdefault((zone_id, pod_id, owner), []).append((row_id, network_id, value, address))
    for pool in free.values():
        pool.reverse()  # pop() from the end takes the lowest address first
    taken: list[dict[str, Any]] = []
    nics: list[dict[str, Any]] = []
    for vm in vms:
        pool = free.get((vm["zone_id"], vm["pod_id"], None)) or free.get(
            (vm["zone_id"], None, vm["account_id"])
        )
        if not pool:
            continue
        row_id, network_id, value, address = pool.pop()
        taken.append({"row": row_id, "vm": vm["id"], "at": now})
        nics.append(
            {
                "uuid": new_uuid(),
                "vm_id": vm["id"],
                "network_id": network_id,
                "ip_int": value,
                "address": address,
                "mac": mac_for(row_id),
                "is_default": True,
                "ip_version": 4,
                "created": now,
            }
        )
    if taken:
        c = _guest_table.c
        connection = session.connection()
        connection.execute(
            update(_guest_table)
            .where(c.id == bindparam("row"))
            .values(
                state=IpAddressState.ALLOCATED, vm_id=bindparam("vm"), allocated=bindparam("at")
            ),
            taken,
        )
        connection.execute(insert(_nic_table), nics)
    return len(nics)


def remove_demo_nics(session: Session, vm_ids: Any) -> None:
    """Free the guest addresses of these VMs (a SELECT of ids) and delete their NICs."""
    no_sync = {"synchronize_session": False}
    session.execute(
        update(GuestIpAddress)
        .where(col(GuestIpAddress.vm_id).in_(vm_ids))
        .values(state=IpAddressState.FREE, vm_id=None, allocated=None),
        execution_options=no_sync,
    )
    session.execute(delete(Nic).where(col(Nic.vm_id).in_(vm_ids)), execution_options=no_sync)


def remove_zone_ipam(session: Session, zone_ids: list[int]) -> None:
    """Delete every IPAM row of these zones, children before parents, in bulk."""
    no_sync = {"synchronize_session": False}
    nets = select(GuestNetwork.id).where(col(GuestNetwork.zone_id).in_(zone_ids))
    pods = select(Pod.id).where(col(Pod.zone_id).in_(zone_ids))
    for statement in (
        delete(Nic).where(col(Nic.network_id).in_(nets)),
        delete(PublicIpAddress).where(col(PublicIpAddress.zone_id).in_(zone_ids)),
        delete(PublicIpRange).where(col(PublicIpRange.zone_id).in_(zone_ids)),
        delete(ZoneVni).where(col(ZoneVni.zone_id).in_(zone_ids)),
        delete(ZoneVniRange).where(col(ZoneVniRange.zone_id).in_(zone_ids)),
        delete(GuestIpAddress).where(col(GuestIpAddress.network_id).in_(nets)),
        delete(GuestIpRange).where(col(GuestIpRange.network_id).in_(nets)),
        delete(GuestNetwork).where(col(GuestNetwork.zone_id).in_(zone_ids)),
        delete(PodManagementAddress).where(col(PodManagementAddress.pod_id).in_(pods)),
    ):
        session.execute(statement, execution_options=no_sync)
