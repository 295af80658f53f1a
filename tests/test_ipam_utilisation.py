"""Utilisation per range, network, pod and zone, on SQLite and PostgreSQL."""

from __future__ import annotations

from helpers import host_spec, make_cluster, make_pod, make_zone
from ipam_world import make_ipam_world, make_vm

from engine import topology
from engine.ipam import management, networks, public
from engine.ipam.utilisation import (
    Utilisation,
    guest_range_utilisation,
    network_utilisation,
    pod_utilisation,
    public_range_utilisation,
    zone_ip_utilisation,
)


def test_utilisation_counts_every_kind_of_address(any_cloud) -> None:
    cloud = any_cloud
    world = make_ipam_world(cloud)  # z1: public 11 addresses, pod management .10-.100 (91)
    make_cluster(cloud)
    host = topology.add_host(cloud.admin, "c1", host_spec("h1"))
    management.allocate_management_ip(cloud.admin, "rack-1", host.uuid)
    management.allocate_management_ip(cloud.admin, "rack-1", purpose="ssvm")
    public.associate_public_ip(cloud.admin, "z1")
    public.associate_public_ip(cloud.admin, "z1")
    public.reserve_public_ip(cloud.admin, "z1", "203.0.113.20")
    released = public.associate_public_ip(cloud.admin, "z1")
    public.release_public_ip(cloud.admin, released.uuid, quarantine_seconds=600)  # still taken
    net = networks.create_isolated_network(cloud.admin, "z1", "net-a", cidr="10.2.0.0/29")
    networks.allocate_nic(cloud.admin, make_vm(cloud, world.zone).uuid, "net-a")
    # Another zone (Basic) with a pod guest range, untouched.
    basic = make_zone(cloud, "basic", network_type="Basic")
    pod2 = make_pod(cloud, "basic", "b-rack", third_octet=7)
    networks.add_pod_guest_range(
        cloud.admin,
        pod2.uuid,
        gateway="10.1.7.1",
        netmask="24",
        start_ip="10.1.7.150",
        end_ip="10.1.7.199",
    )

    zones = zone_ip_utilisation(cloud.db)
    assert zones[world.zone.id] == {
        "public": Utilisation(total=11, allocated=4, free=7, percent=36.4),
        "private": Utilisation(total=91, allocated=2, free=89, percent=2.2),
        "guest": Utilisation(total=5, allocated=1, free=4, percent=20.0),
    }
    assert zones[basic.id] == {
        "public": Utilisation(0, 0, 0, 0.0),
        "private": Utilisation(total=91, allocated=0, free=91, percent=0.0),
        "guest": Utilisation(total=50, allocated=0, free=50, percent=0.0),
    }
    assert zone_ip_utilisation(cloud.admin) == zones  # a Caller works as well as a Database
    with cloud.db.read() as session:
        assert zone_ip_utilisation(session) == zones  # and so does an open session
    assert public_range_utilisation(cloud.db) == {
        world.public_range.id: Utilisation(11, 4, 7, 36.4)
    }
    assert network_utilisation(cloud.db)[net.id] == Utilisation(5, 1, 4, 20.0)
    assert sorted(u.total for u in guest_range_utilisation(cloud.db).values()) == [5, 50]
    pods = pod_utilisation(cloud.db)
    assert pods[pod2.id]["guest"] == Utilisation(50, 0, 50, 0.0)
    assert pods[world_pod_id(cloud)]["private"].allocated == 2


def world_pod_id(cloud) -> int:
    return topology.get_pod(cloud.admin, "rack-1", "z1").id  # type: ignore[return-value]


def test_a_pod_without_generated_rows_counts_the_hosts_holding_addresses(cloud) -> None:
    make_zone(cloud)
    pod = make_pod(cloud)
    make_cluster(cloud)
    topology.add_hosts(
        cloud.admin, "c1", [host_spec(f"h{n}", address=f"10.1.1.{20 + n}") for n in range(3)]
    )
    assert pod_utilisation(cloud.db)[pod.id]["private"] == Utilisation(91, 3, 88, 3.3)
    # Generating the rows (first allocation) keeps the hosts' addresses taken.
    assert management.allocate_management_ip(cloud.admin, pod.uuid, purpose="ssvm") == "10.1.1.10"
    assert pod_utilisation(cloud.db)[pod.id]["private"] == Utilisation(91, 4, 87, 4.4)
