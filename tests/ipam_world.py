"""Small IPAM set-ups shared by the IPAM tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from helpers import GIB, make_pod, make_zone
from sqlmodel import select

from engine.bootstrap import Cloud
from engine.ipam import public, vni
from engine.models import Account, Domain, PublicIpRange, VirtualMachine, Zone

_vm_numbers = itertools.count(1)


@dataclass
class IpamWorld:
    zone: Zone
    public_range: PublicIpRange


def make_ipam_world(cloud: Cloud) -> IpamWorld:
    """Advanced zone z1, pod rack-1 (10.1.1.0/24, management .10-.100), public range
    203.0.113.10-.20 (gateway .1, VLAN 100), VNI range 5000-5009; guest CIDR 10.100.0.0/24."""
    zone = make_zone(cloud, guest_cidr="10.100.0.0/24")
    make_pod(cloud)
    rng = public.create_public_ip_range(
        cloud.admin,
        "z1",
        gateway="203.0.113.1",
        netmask="255.255.255.0",
        start_ip="203.0.113.10",
        end_ip="203.0.113.20",
        vlan="vlan://100",
    )
    vni.add_vni_range(cloud.admin, "z1", 5000, 5009)
    return IpamWorld(zone, rng)


def make_account(cloud: Cloud, name: str, domain: str | None = None) -> Account:
    """An account in ROOT, or in a new sub-domain `domain` of ROOT."""
    with cloud.db.write() as session:
        root = session.exec(select(Domain).where(Domain.path == "ROOT/")).one()
        parent = root
        if domain is not None:
            parent = session.exec(select(Domain).where(Domain.name == domain)).first()
            if parent is None:
                parent = Domain(name=domain, parent_id=root.id, path=f"ROOT/{domain}/")
                session.add(parent)
                session.flush()
        account = Account(name=name, domain_id=parent.id)  # type: ignore[arg-type]
        session.add(account)
        session.flush()
        return account


def make_vm(
    cloud: Cloud, zone: Zone, *, account_id: int | None = None, pod_id: int | None = None
) -> VirtualMachine:
    """A VM row (no placement or hypervisor): enough to own NICs."""
    number = next(_vm_numbers)
    with cloud.db.write() as session:
        account = session.get(Account, account_id or cloud.admin.account_id)
        assert account is not None
        vm = VirtualMachine(
            name=f"vm-{number}",
            instance_name=f"i-{account.id}-{number}-VM",
            account_id=account.id,
            domain_id=account.domain_id,
            zone_id=zone.id,
            pod_id=pod_id,
            cpu_count=1,
            cpu_mhz=1000,
            memory_bytes=GIB,
        )
        session.add(vm)
        session.flush()
        return vm
