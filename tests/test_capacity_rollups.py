"""Capacity roll-ups per zone, pod and cluster against figures worked out by hand.

Topology (zone z1; z2 is empty):

    pod p1  cluster c1  cpu factor 2.0, mem factor 1.5
                h1  8 cores x 2000 MHz, 16 GiB   used 4000 MHz + 8 GiB, reserved 1000 MHz + 2 GiB
                h2  4 cores x 2500 MHz,  8 GiB   used 2000 MHz
                ps-c1  1024 GiB, used 100 GiB, allocated 300 GiB, storage factor 3
            cluster c2  (inherits: factors 1.0)
                h3 16 cores x 3000 MHz, 64 GiB   used 12000 MHz + 32 GiB, reserved 6000 MHz
    pod p2  cluster c3  cpu factor 4.0
                h4  2 cores x 1000 MHz,  4 GiB   used 500 MHz; status Down
                ps-c3  500 GiB, used 50 GiB, allocated 200 GiB (inherits: storage factor 2)
    zone-wide  ps-z  2048 GiB, used 1024 GiB, allocated 1536 GiB (factor 2)
    image stores  sec1 1024 GiB used 100 GiB; sec2 512 GiB used 20 GiB
"""

from __future__ import annotations

import pytest
from helpers import GIB, host_spec, make_cluster, make_pod, make_zone, set_columns

from engine import topology as t
from engine.capacity import CapacityRollup, Figure, capacity_rollups, zone_capacity
from engine.errors import InvalidParameter, NotFound
from engine.models import Host, ImageStore, StoragePool
from engine.settings import update_setting


@pytest.fixture
def cloud_with_capacity(cloud):
    admin = cloud.admin
    make_zone(cloud, "z1")
    make_zone(cloud, "z2")
    make_pod(cloud, "z1", "p1", third_octet=1)
    make_pod(cloud, "z1", "p2", third_octet=2)
    make_cluster(
        cloud, "p1", "c1", cpu_overprovisioning_factor=2.0, mem_overprovisioning_factor=1.5
    )
    make_cluster(cloud, "p1", "c2")
    make_cluster(cloud, "p2", "c3", cpu_overprovisioning_factor=4)
    hosts = {
        "h1": (
            "c1",
            8,
            2000,
            16,
            dict(
                cpu_used_mhz=4000,
                cpu_reserved_mhz=1000,
                memory_used_bytes=8 * GIB,
                memory_reserved_bytes=2 * GIB,
            ),
        ),
        "h2": ("c1", 4, 2500, 8, dict(cpu_used_mhz=2000)),
        "h3": (
            "c2",
            16,
            3000,
            64,
            dict(cpu_used_mhz=12000, cpu_reserved_mhz=6000, memory_used_bytes=32 * GIB),
        ),
        "h4": ("c3", 2, 1000, 4, dict(cpu_used_mhz=500, status="Down")),
    }
    for name, (cluster, cores, mhz, gib, claimed) in hosts.items():
        host = t.add_host(
            admin, cluster, host_spec(name, cpu_cores=cores, cpu_mhz=mhz, memory_bytes=gib * GIB)
        )
        set_columns(cloud, Host, host.uuid, **claimed)
    pools = [
        ("ps-c1", {"cluster_ref": "c1", "overprovisioning_factor": 3}, 1024, 100, 300),
        ("ps-c3", {"cluster_ref": "c3"}, 500, 50, 200),
        ("ps-z", {"zone_ref": "z1"}, 2048, 1024, 1536),
    ]
    for name, where, capacity, used, allocated in pools:
        pool = t.create_storage_pool(
            admin, name, path=f"/srv/{name}", capacity_bytes=capacity * GIB, **where
        )
        set_columns(
            cloud, StoragePool, pool.uuid, used_bytes=used * GIB, allocated_bytes=allocated * GIB
        )
    for name, capacity, used in (("sec1", 1024, 100), ("sec2", 512, 20)):
        store = t.add_image_store(
            admin, "z1", name, url=f"/srv/{name}", capacity_bytes=capacity * GIB
        )
        set_columns(cloud, ImageStore, store.uuid, used_bytes=used * GIB)
    return cloud


def _figures(r: CapacityRollup) -> dict[str, tuple[float, float, float]]:
    return {
        name: (fig.total, fig.used, fig.reserved)
        for name, fig in (
            ("cpu", r.cpu_mhz),
            ("mem", r.memory_bytes),
            ("cores", r.cpu_cores),
            ("primary_used", r.primary_used_bytes),
            ("primary_allocated", r.primary_allocated_bytes),
            ("secondary", r.secondary_bytes),
        )
    }


def _by_name(rollups: list[CapacityRollup]) -> dict[str, CapacityRollup]:
    return {r.name: r for r in rollups}


G = float(GIB)
NONE = (0.0, 0.0, 0.0)

# Worked out by hand from the module docstring.
CLUSTERS = {
    "c1": {
        "cpu": ((8 * 2000 + 4 * 2500) * 2.0, 4000 + 2000, 1000),  # 52000
        "mem": ((16 + 8) * 1.5 * G, 8 * G, 2 * G),  # 36 GiB
        "cores": (12, 0, 0),
        "primary_used": (1024 * G, 100 * G, 0),
        "primary_allocated": (1024 * 3 * G, 300 * G, 0),
        "secondary": NONE,
    },
    "c2": {
        "cpu": (16 * 3000 * 1.0, 12000, 6000),  # 48000
        "mem": (64 * G, 32 * G, 0),
        "cores": (16, 0, 0),
        "primary_used": NONE,
        "primary_allocated": NONE,
        "secondary": NONE,
    },
    "c3": {
        "cpu": (2 * 1000 * 4.0, 500, 0),  # 8000
        "mem": (4 * G, 0, 0),
        "cores": (2, 0, 0),
        "primary_used": (500 * G, 50 * G, 0),
        "primary_allocated": (500 * 2 * G, 200 * G, 0),
        "secondary": NONE,
    },
}
PODS = {
    "p1": {
        "cpu": (100000, 18000, 7000),
        "mem": (100 * G, 40 * G, 2 * G),
        "cores": (28, 0, 0),
        # Zone-wide pools belong to no pod.
        "primary_used": (1024 * G, 100 * G, 0),
        "primary_allocated": (3072 * G, 300 * G, 0),
        "secondary": NONE,
    },
    "p2": CLUSTERS["c3"],
}
ZONE = {
    "cpu": (108000, 18500, 7000),
    "mem": (104 * G, 40 * G, 2 * G),
    "cores": (30, 0, 0),
    "primary_used": ((1024 + 500 + 2048) * G, (100 + 50 + 1024) * G, 0),
    "primary_allocated": ((3072 + 1000 + 4096) * G, (300 + 200 + 1536) * G, 0),
    "secondary": ((1024 + 512) * G, 120 * G, 0),
}


def _approx(expected: dict[str, tuple]) -> dict[str, tuple]:
    return {k: tuple(pytest.approx(float(x)) for x in v) for k, v in expected.items()}


def test_cluster_rollups(cloud_with_capacity) -> None:
    rollups = _by_name(capacity_rollups(cloud_with_capacity.admin, "cluster"))
    assert sorted(rollups) == ["c1", "c2", "c3"]
    for name, expected in CLUSTERS.items():
        assert _figures(rollups[name]) == _approx(expected), name
    assert [(rollups[n].hosts, rollups[n].hosts_up) for n in ("c1", "c2", "c3")] == [
        (2, 2),
        (1, 1),
        (1, 0),
    ]


def test_pod_rollups(cloud_with_capacity) -> None:
    rollups = _by_name(capacity_rollups(cloud_with_capacity.admin, "pod"))
    assert sorted(rollups) == ["p1", "p2"]
    for name, expected in PODS.items():
        assert _figures(rollups[name]) == _approx(expected), name


def test_zone_rollup(cloud_with_capacity) -> None:
    z1 = zone_capacity(cloud_with_capacity.admin, "z1")
    assert _figures(z1) == _approx(ZONE)
    assert (z1.level, z1.name, z1.hosts, z1.hosts_up) == ("zone", "z1", 4, 3)
    assert _by_name(capacity_rollups(cloud_with_capacity.admin, "zone"))["z1"] == z1


def test_percent_is_used_plus_reserved_over_total(cloud_with_capacity) -> None:
    z1 = zone_capacity(cloud_with_capacity.admin, "z1")
    assert z1.cpu_mhz.percent == pytest.approx((18500 + 7000) / 108000 * 100)
    assert z1.memory_bytes.percent == pytest.approx(42 / 104 * 100)
    assert z1.primary_allocated_bytes.percent == pytest.approx(2036 / 8168 * 100)
    assert z1.secondary_bytes.percent == pytest.approx(120 / 1536 * 100)
    assert z1.cpu_mhz.free == pytest.approx(108000 - 25500)
    assert Figure(10.0, 8.0, 4.0).free == 0.0  # overcommitted: no negative free space


def test_rollups_within_a_parent(cloud_with_capacity) -> None:
    admin = cloud_with_capacity.admin
    assert [r.name for r in capacity_rollups(admin, "pod", within_ref="z1")] == ["p1", "p2"]
    assert [r.name for r in capacity_rollups(admin, "pod", within_ref="z2")] == []
    assert [r.name for r in capacity_rollups(admin, "cluster", within_ref="p1")] == ["c1", "c2"]
    assert [r.name for r in capacity_rollups(admin, "cluster", within_ref="z1")] == [
        "c1",
        "c2",
        "c3",
    ]
    with pytest.raises(InvalidParameter) as info:
        capacity_rollups(admin, "zone", within_ref="z1")
    assert info.value.field == "within"
    with pytest.raises(NotFound) as not_found:
        capacity_rollups(admin, "pod", within_ref="nowhere")
    assert "zone 'nowhere' does not exist" in str(not_found.value)


def test_a_cluster_override_changes_the_rollup(cloud_with_capacity) -> None:
    admin = cloud_with_capacity.admin
    c2 = t.get_cluster(admin, "c2")
    update_setting(
        admin, "cpu.overprovisioning.factor", "3", scope_type="cluster", scope_uuid=c2.uuid
    )
    update_setting(
        admin, "mem.overprovisioning.factor", "2", scope_type="cluster", scope_uuid=c2.uuid
    )
    clusters = _by_name(capacity_rollups(admin, "cluster"))
    assert clusters["c2"].cpu_mhz.total == pytest.approx(16 * 3000 * 3)
    assert clusters["c2"].memory_bytes.total == pytest.approx(128 * G)
    assert clusters["c1"].cpu_mhz.total == pytest.approx(52000)  # untouched
    assert zone_capacity(admin, "z1").cpu_mhz.total == pytest.approx(52000 + 144000 + 8000)


def test_a_global_value_changes_only_inheriting_clusters(cloud_with_capacity) -> None:
    admin = cloud_with_capacity.admin
    update_setting(admin, "cpu.overprovisioning.factor", "1.25")
    update_setting(admin, "storage.overprovisioning.factor", "4")
    clusters = _by_name(capacity_rollups(admin, "cluster"))
    assert [clusters[n].cpu_mhz.total for n in ("c1", "c2", "c3")] == pytest.approx(
        [52000, 48000 * 1.25, 8000]
    )
    # ps-c1 keeps its own factor 3; ps-c3 and ps-z inherit the new 4.
    assert clusters["c3"].primary_allocated_bytes.total == pytest.approx(2000 * G)
    assert zone_capacity(admin, "z1").primary_allocated_bytes.total == pytest.approx(
        (3072 + 2000 + 8192) * G
    )


def test_an_empty_zone_gives_zeros(cloud_with_capacity) -> None:
    z2 = zone_capacity(cloud_with_capacity.admin, "z2")
    assert (z2.hosts, z2.hosts_up) == (0, 0)
    assert _figures(z2) == {
        name: NONE
        for name in ("cpu", "mem", "cores", "primary_used", "primary_allocated", "secondary")
    }
    assert z2.cpu_mhz.percent == 0.0
    assert z2.memory_bytes.free == 0.0


def test_rollups_of_a_cloud_without_zones(cloud) -> None:
    assert capacity_rollups(cloud.admin, "zone") == []
    assert capacity_rollups(cloud.admin, "cluster") == []


def test_zone_capacity_of_an_unknown_zone(cloud) -> None:
    with pytest.raises(NotFound) as info:
        zone_capacity(cloud.admin, "z9")
    assert (str(info.value), info.value.field) == ("zone 'z9' does not exist", "zone")
