"""The demo's addresses: public ranges, VNIs, guest networks, demo VM NICs, teardown."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from engine import demo
from engine.bootstrap import Cloud, open_cloud
from engine.dashboard import dashboard
from engine.demo_network import DEMO_NETWORKS
from engine.models import (
    GuestIpAddress,
    GuestIpRange,
    GuestNetwork,
    IpAddressState,
    Nic,
    Pod,
    PodManagementAddress,
    PublicIpAddress,
    PublicIpRange,
    VirtualMachine,
    Zone,
    ZoneVni,
    ZoneVniRange,
)

IPAM_TABLES = (
    PublicIpRange,
    PublicIpAddress,
    ZoneVniRange,
    ZoneVni,
    GuestNetwork,
    GuestIpRange,
    GuestIpAddress,
    Nic,
    PodManagementAddress,
)


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    monkeypatch.setenv("STRATUS_HOME", str(tmp_path / "home"))
    opened = open_cloud(f"sqlite:///{tmp_path}/s.db")
    yield opened
    opened.db.dispose()


def ipam_counts(cloud: Cloud) -> dict[str, int]:
    with cloud.db.read() as session:
        return {
            m.__name__: session.exec(select(func.count()).select_from(m)).one() for m in IPAM_TABLES
        }


def test_demo_zones_get_public_ranges_vnis_and_guest_networks(cloud: Cloud) -> None:
    summary = demo.build_demo(cloud.admin)
    with cloud.db.read() as session:
        zones = {z.name: z for z in session.exec(select(Zone))}
        basic, adv = zones["eu-west-basic"], zones["eu-central-adv"]
        ranges = {r.zone_id: r for r in session.exec(select(PublicIpRange))}
        assert (ranges[basic.id].start_ip, ranges[basic.id].end_ip) == (
            "198.51.100.10",
            "198.51.100.250",
        )
        assert (ranges[adv.id].start_ip, ranges[adv.id].vlan_tag) == ("203.0.113.10", 100)
        vnis = {(r.zone_id, r.isolation, r.first_vni, r.last_vni) for r in
                session.exec(select(ZoneVniRange))}  # fmt: skip
        assert vnis == {(basic.id, "vlan", 100, 199), (adv.id, "vxlan", 10000, 10999)}

        nets = {n.zone_id: n for n in session.exec(select(GuestNetwork))}
        assert nets[basic.id].guest_type == "Shared"
        assert nets[adv.id].guest_type == "Isolated" and nets[adv.id].name == "admin-net"
        assert nets[adv.id].account_id == cloud.admin.account_id
        assert nets[adv.id].vni is not None and 10000 <= nets[adv.id].vni <= 10999
        pod_ranges = {
            pod: (r.start_ip, r.end_ip)
            for r, pod in session.exec(
                select(GuestIpRange, Pod.name).join(Pod, col(Pod.id) == GuestIpRange.pod_id)
            )
        }
        assert pod_ranges == {
            pod: (start, end)
            for pod, (_gw, start, end, _mask) in DEMO_NETWORKS["eu-west-basic"][
                "pod_ranges"
            ].items()
        }
        snat = session.exec(select(PublicIpAddress).where(PublicIpAddress.source_nat)).one()
        assert (snat.network_id, snat.state) == (nets[adv.id].id, "Allocated")

        # Every demo VM has one default NIC: its pod's range (Basic) or admin-net.
        vms = {vm.id: vm for vm in session.exec(select(VirtualMachine))}
        nics = list(session.exec(select(Nic)))
        assert summary.vms == len(vms) == len(nics) and all(n.is_default for n in nics)
        assert Counter(n.vm_id for n in nics) == Counter(dict.fromkeys(vms, 1))
        pods = {p.id: p.name for p in session.exec(select(Pod))}
        for nic in nics:
            vm = vms[nic.vm_id]
            if vm.zone_id == adv.id:
                assert nic.network_id == nets[adv.id].id
                assert ipaddress.ip_address(nic.address) in ipaddress.ip_network("10.128.0.0/20")
            else:
                start, end = pod_ranges[pods[vm.pod_id]]
                low, high = ipaddress.ip_address(start), ipaddress.ip_address(end)
                assert low <= ipaddress.ip_address(nic.address) <= high
        allocated = select(GuestIpAddress).where(GuestIpAddress.state == IpAddressState.ALLOCATED)
        taken = {(a.network_id, a.address): a.vm_id for a in session.exec(allocated)}
        assert taken == {(n.network_id, n.address): n.vm_id for n in nics}

    figures = {z.name: z.ip_utilisation for z in dashboard(cloud.admin).zones}
    adv_vms = sum(1 for vm in vms.values() if vm.zone_id == adv.id)
    assert figures["eu-central-adv"]["public"].allocated == 1  # the source NAT address
    assert figures["eu-central-adv"]["public"].total == 241
    assert figures["eu-central-adv"]["guest"].allocated == adv_vms
    assert figures["eu-west-basic"]["guest"].allocated == len(vms) - adv_vms


def test_demo_vms_beyond_the_free_addresses_get_no_nic(cloud: Cloud) -> None:
    demo.build_demo(cloud.admin, hosts=8, vms=0)
    with cloud.db.write() as session:
        # Leave two free addresses in each guest range (three ranges: two pods, admin-net).
        for rng in session.exec(select(GuestIpRange)).all():
            keep = select(GuestIpAddress.id).where(GuestIpAddress.range_id == rng.id)
            keep = keep.order_by(GuestIpAddress.ip_int).limit(2)
            session.execute(
                update(GuestIpAddress)
                .where(
                    GuestIpAddress.range_id == rng.id,
                    col(GuestIpAddress.id).not_in(keep),
                )
                .values(state=IpAddressState.RESERVED)
            )
    lines: list[str] = []
    assert demo.add_demo_vms(cloud.admin, 40, progress=lines.append) == 40
    with cloud.db.read() as session:
        per_range = Counter(
            session.exec(
                select(GuestIpAddress.range_id).where(
                    GuestIpAddress.state == IpAddressState.ALLOCATED
                )
            )
        )
        nics = session.exec(select(func.count()).select_from(Nic)).one()
    assert sorted(per_range.values()) == [2, 2, 2] and nics == 6
    assert any("6 with a NIC; 34 without a NIC (demo networks full)" in line for line in lines)


def test_replace_and_teardown_remove_the_demo_addresses(cloud: Cloud) -> None:
    demo.build_demo(cloud.admin, hosts=8)
    first = ipam_counts(cloud)
    assert first["Nic"] == 8 * demo.DEMO_VMS_PER_HOST and first["PublicIpAddress"] == 482
    demo.build_demo(cloud.admin, hosts=8, replace=True)
    assert ipam_counts(cloud) == first  # nothing left over, nothing doubled
    demo.teardown_demo(cloud.admin, list(DEMO_NETWORKS))
    assert set(ipam_counts(cloud).values()) == {0}
    with cloud.db.read() as session:
        assert session.exec(select(func.count()).select_from(Zone)).one() == 0
