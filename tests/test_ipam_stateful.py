"""A Hypothesis state machine over a real SQLite file: allocate, release, reserve and
request specific addresses across two public ranges and three guest networks, checking
after every step against a model of which addresses are free.

Each example gets its own zone (so its ranges are new) in one migrated database.
"""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from ipam_world import make_vm
from sqlalchemy import func, select

from engine.bootstrap import Cloud
from engine.errors import AlreadyExists, InvalidParameter, StateConflict
from engine.ipam import networks, public, vni
from engine.ipam.errors import AddressExhausted
from engine.models import GuestIpAddress, IpAddressState, Nic, PublicIpAddress
from engine.topology import create_zone

_zones = itertools.count(1)


def _ips(first: str, last: str) -> list[str]:
    return [str(IPv4Address(n)) for n in range(int(IPv4Address(first)), int(IPv4Address(last)) + 1)]


# Public: two ranges of one /24 (gateway .1), 4 + 3 addresses.
PUBLIC_RANGES = [("203.0.113.10", "203.0.113.13"), ("203.0.113.20", "203.0.113.22")]
PUBLIC_ALLOCATABLE = [ip for first, last in PUBLIC_RANGES for ip in _ips(first, last)]
PUBLIC_CANDIDATES = [*PUBLIC_ALLOCATABLE, "203.0.113.1", "203.0.113.15", "203.0.113.255"]
# Guest: two isolated /29s sharing a CIDR (.2-.6 allocatable) and a shared range .10-.13.
GUEST = {
    "iso-a": ("10.200.0.0/29", _ips("10.200.0.2", "10.200.0.6")),
    "iso-b": ("10.200.0.0/29", _ips("10.200.0.2", "10.200.0.6")),
    "shared": ("10.9.0.0/24", _ips("10.9.0.10", "10.9.0.13")),
}
GUEST_CANDIDATES = {
    "iso-a": _ips("10.200.0.0", "10.200.0.8"),
    "iso-b": _ips("10.200.0.0", "10.200.0.8"),
    "shared": ["10.9.0.0", "10.9.0.1", "10.9.0.9", *_ips("10.9.0.10", "10.9.0.14"), "10.9.0.255"],
}


class AddressMachine(RuleBasedStateMachine):
    cloud: Cloud

    public_ips = Bundle("public_ips")
    nics = Bundle("nics")

    def __init__(self) -> None:
        super().__init__()
        admin = self.cloud.admin
        self.zone = create_zone(
            admin, f"hz-{next(_zones)}", dns1="8.8.8.8", guest_cidr="10.200.0.0/24"
        )
        for first, last in PUBLIC_RANGES:
            public.create_public_ip_range(
                admin,
                self.zone.uuid,
                gateway="203.0.113.1",
                netmask="24",
                start_ip=first,
                end_ip=last,
            )
        vni.add_vni_range(admin, self.zone.uuid, 100, 101, isolation="vlan")
        self.networks = {
            "iso-a": networks.create_isolated_network(
                admin, self.zone.uuid, "iso-a", cidr="10.200.0.0/29"
            ),
            "iso-b": networks.create_isolated_network(
                admin, self.zone.uuid, "iso-b", cidr="10.200.0.0/29"
            ),
            "shared": networks.create_shared_network(
                admin,
                self.zone.uuid,
                "shared",
                gateway="10.9.0.1",
                netmask="24",
                start_ip="10.9.0.10",
                end_ip="10.9.0.13",
            ),
        }
        # The model: what is taken (allocated or reserved) where.
        self.public_taken: dict[str, str] = {}  # address → state
        self.guest_taken: dict[str, dict[str, str]] = {name: {} for name in GUEST}

    # --- public addresses -------------------------------------------------------------

    def _public_free(self) -> list[str]:
        return [ip for ip in PUBLIC_ALLOCATABLE if ip not in self.public_taken]

    @rule(target=public_ips)
    def associate(self):
        free = self._public_free()
        if not free:
            with pytest.raises(AddressExhausted) as info:
                public.associate_public_ip(self.cloud.admin, self.zone.uuid)
            assert "203.0.113.10-203.0.113.13 (4 addresses)" in str(info.value)
            return None
        row = public.associate_public_ip(self.cloud.admin, self.zone.uuid)
        assert row.address == free[0]  # the lowest free of the first range with room
        self.public_taken[row.address] = IpAddressState.ALLOCATED
        return row.address

    @rule(target=public_ips, address=st.sampled_from(PUBLIC_CANDIDATES))
    def request_public(self, address):
        if address not in PUBLIC_ALLOCATABLE:
            with pytest.raises(InvalidParameter):
                public.associate_public_ip(self.cloud.admin, self.zone.uuid, address=address)
            return None
        if address in self.public_taken:
            with pytest.raises(StateConflict):
                public.associate_public_ip(self.cloud.admin, self.zone.uuid, address=address)
            return None
        row = public.associate_public_ip(self.cloud.admin, self.zone.uuid, address=address)
        assert row.address == address
        self.public_taken[address] = IpAddressState.ALLOCATED
        return address

    @rule(address=st.sampled_from(PUBLIC_ALLOCATABLE))
    def reserve_public(self, address):
        if address in self.public_taken:
            with pytest.raises(StateConflict):
                public.reserve_public_ip(self.cloud.admin, self.zone.uuid, address)
        else:
            public.reserve_public_ip(self.cloud.admin, self.zone.uuid, address)
            self.public_taken[address] = IpAddressState.RESERVED

    @rule(address=consumes(public_ips))
    def release_public(self, address):
        if address is None or self.public_taken.get(address) != IpAddressState.ALLOCATED:
            return
        row = self._public_row(address)
        public.release_public_ip(self.cloud.admin, row.uuid)
        del self.public_taken[address]

    def _public_row(self, address: str) -> PublicIpAddress:
        with self.cloud.db.read() as session:
            return session.exec(
                select(PublicIpAddress).where(
                    PublicIpAddress.zone_id == self.zone.id, PublicIpAddress.address == address
                )
            ).scalar_one()

    # --- guest addresses --------------------------------------------------------------

    def _guest_free(self, name: str) -> list[str]:
        return [ip for ip in GUEST[name][1] if ip not in self.guest_taken[name]]

    @rule(target=nics, name=st.sampled_from(sorted(GUEST)))
    def allocate_nic(self, name):
        vm = make_vm(self.cloud, self.zone)
        free = self._guest_free(name)
        if not free:
            with pytest.raises(AddressExhausted) as info:
                networks.allocate_nic(self.cloud.admin, vm.uuid, self.networks[name].uuid)
            assert f"network '{name}'" in str(info.value)
            return None
        nic = networks.allocate_nic(self.cloud.admin, vm.uuid, self.networks[name].uuid)
        assert nic.address == free[0]
        self.guest_taken[name][nic.address] = IpAddressState.ALLOCATED
        return (name, nic.uuid, nic.address)

    @rule(target=nics, data=st.data(), name=st.sampled_from(sorted(GUEST)))
    def request_nic(self, data, name):
        address = data.draw(st.sampled_from(GUEST_CANDIDATES[name]))
        vm = make_vm(self.cloud, self.zone)
        network = self.networks[name].uuid
        if address not in GUEST[name][1]:
            with pytest.raises(InvalidParameter):
                networks.allocate_nic(self.cloud.admin, vm.uuid, network, address=address)
            return None
        if address in self.guest_taken[name]:
            with pytest.raises(AlreadyExists):
                networks.allocate_nic(self.cloud.admin, vm.uuid, network, address=address)
            return None
        nic = networks.allocate_nic(self.cloud.admin, vm.uuid, network, address=address)
        self.guest_taken[name][address] = IpAddressState.ALLOCATED
        return (name, nic.uuid, nic.address)

    @rule(data=st.data(), name=st.sampled_from(sorted(GUEST)))
    def reserve_guest(self, data, name):
        address = data.draw(st.sampled_from(GUEST[name][1]))
        if address in self.guest_taken[name]:
            with pytest.raises(AlreadyExists):
                networks.reserve_guest_ip(self.cloud.admin, self.networks[name].uuid, address)
        else:
            networks.reserve_guest_ip(self.cloud.admin, self.networks[name].uuid, address)
            self.guest_taken[name][address] = IpAddressState.RESERVED

    @rule(nic=consumes(nics))
    def release_nic(self, nic):
        if nic is None:
            return
        name, uuid, address = nic
        networks.release_nic(self.cloud.admin, uuid)
        del self.guest_taken[name][address]

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def public_rows_match_the_model(self):
        with self.cloud.db.read() as session:
            rows = session.execute(
                select(PublicIpAddress.address, PublicIpAddress.state).where(
                    PublicIpAddress.zone_id == self.zone.id,
                    PublicIpAddress.state != IpAddressState.FREE,
                )
            ).all()
        assert dict(rows) == self.public_taken
        assert set(dict(rows)) <= set(PUBLIC_ALLOCATABLE)

    @invariant()
    def guest_rows_and_nics_match_the_model(self):
        with self.cloud.db.read() as session:
            for name, network in self.networks.items():
                rows = dict(
                    session.execute(
                        select(GuestIpAddress.address, GuestIpAddress.state).where(
                            GuestIpAddress.network_id == network.id,
                            GuestIpAddress.state != IpAddressState.FREE,
                        )
                    ).all()
                )
                assert rows == self.guest_taken[name]
                nic_addresses = (
                    session.execute(select(Nic.address).where(Nic.network_id == network.id))
                    .scalars()
                    .all()
                )
                assert len(nic_addresses) == len(set(nic_addresses))  # no duplicates
                allocated = {a for a, s in rows.items() if s == IpAddressState.ALLOCATED}
                assert set(nic_addresses) == allocated
                assert set(nic_addresses) <= set(GUEST[name][1])  # never net/bcast/gateway
                total = session.execute(
                    select(func.count()).where(GuestIpAddress.network_id == network.id)
                ).scalar_one()
                assert total == len(GUEST[name][1])


def test_addresses_follow_the_model(cloud) -> None:
    AddressMachine.cloud = cloud
    run_state_machine_as_test(
        AddressMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
