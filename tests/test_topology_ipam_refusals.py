"""Topology services refuse by name what IPAM or VMs still hold (wired at the merge of both)."""

from __future__ import annotations

from helpers import make_cluster, rejects
from ipam_world import make_ipam_world, make_vm
from sqlmodel import select

from engine import topology
from engine.bootstrap import Cloud
from engine.errors import InUse, InvalidParameter
from engine.models import Host, VirtualMachine, VmState


def test_zone_with_public_ranges_and_vni_ranges_is_not_deleted(cloud: Cloud) -> None:
    make_ipam_world(cloud)
    topology.delete_pod(cloud.admin, "rack-1")
    with rejects(cloud, InUse, "zone 'z1'", "1 public IP range ('203.0.113.10-203.0.113.20')",
                 "VLAN/VNI range ('5000-5009')"):  # fmt: skip
        topology.delete_zone(cloud.admin, "z1")


def test_pod_management_range_may_not_overlap_a_public_range(cloud: Cloud) -> None:
    make_ipam_world(cloud)
    with rejects(cloud, InvalidParameter, "rack-2", "203.0.113."):
        topology.create_pod(
            cloud.admin, "z1", "rack-2", gateway="203.0.113.1", netmask="255.255.255.0",
            start_ip="203.0.113.15", end_ip="203.0.113.30",
        )  # fmt: skip


def test_host_running_a_vm_is_not_deleted_and_last_host_history_is_cleared(cloud: Cloud) -> None:
    world = make_ipam_world(cloud)
    make_cluster(cloud)
    host = topology.add_host(
        cloud.admin,
        "c1",
        topology.HostSpec(name="h1", uri="test:///h1.xml", cpu_cores=4, cpu_mhz=2000,
                          memory_bytes=2**33),
    )  # fmt: skip
    vm = make_vm(cloud, world.zone)
    with cloud.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        row.host_id = host.id
        row.last_host_id = host.id
        row.state = VmState.RUNNING
    with rejects(cloud, InUse, "host 'h1'", f"1 VM ('{vm.name}')"):
        topology.delete_host(cloud.admin, "h1")

    with cloud.db.write() as session:
        row = session.get(VirtualMachine, vm.id)
        assert row is not None
        row.host_id = None
        row.state = VmState.EXPUNGED
    topology.delete_host(cloud.admin, "h1")
    with cloud.db.read() as session:
        assert session.exec(select(Host).where(Host.name == "h1")).first() is None
        assert session.get(VirtualMachine, vm.id).last_host_id is None  # type: ignore[union-attr]
