"""The demo datacenter: built from data/demo.toml, scaled, refused, replaced, torn down."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import libvirt
import pytest
from sqlmodel import func, select

from engine import demo, topology
from engine.bootstrap import Cloud, open_cloud
from engine.capacity import capacity_rollups
from engine.errors import AlreadyExists, InUse, InvalidParameter
from engine.models import (
    Cluster,
    DiskOffering,
    Event,
    Host,
    HostTag,
    ImageStore,
    Pod,
    ServiceOffering,
    StoragePool,
    Zone,
)

MIB = 2**20


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STRATUS_HOME for this test, so node files land in tmp_path."""
    path = tmp_path / "home"
    monkeypatch.setenv("STRATUS_HOME", str(path))
    return path


@pytest.fixture
def cloud(home: Path, tmp_path: Path) -> Iterator[Cloud]:
    opened = open_cloud(f"sqlite:///{tmp_path}/s.db")
    yield opened
    opened.db.dispose()


@pytest.fixture(scope="module")
def plan() -> demo.DemoPlan:
    return demo.load_demo()


def counts(cloud: Cloud) -> dict[str, int]:
    """Rows per table, and the audit events: what 'changes nothing' compares."""
    with cloud.db.read() as session:
        return {
            model.__name__: session.exec(select(func.count()).select_from(model)).one()
            for model in (
                Zone,
                Pod,
                Cluster,
                Host,
                HostTag,
                StoragePool,
                ImageStore,
                ServiceOffering,
                DiskOffering,
                Event,
            )
        }


def demo_hosts(cloud: Cloud, plan: demo.DemoPlan) -> list[Host]:
    names = [z.name for z in plan.zones]
    with cloud.db.read() as session:
        return list(
            session.exec(
                select(Host).join(Zone, Zone.id == Host.zone_id).where(Zone.name.in_(names))  # type: ignore[attr-defined]
            )
        )


def hosts_per_cluster(cloud: Cloud) -> dict[tuple[str, str], int]:
    with cloud.db.read() as session:
        rows = session.exec(
            select(Zone.name, Cluster.name, func.count(Host.id))
            .join(Cluster, Cluster.zone_id == Zone.id)
            .outerjoin(Host, Host.cluster_id == Cluster.id)
            .group_by(Zone.name, Cluster.name)
        )
        return {(z, c): n for z, c, n in rows}


def node_files(home: Path) -> set[Path]:
    root = home / "data" / "demo" / "nodes"
    return {Path(d) / f for d, _, files in os.walk(root) for f in files}


# --- the description -------------------------------------------------------------------


def test_demo_file_describes_a_realistic_datacenter(plan: demo.DemoPlan) -> None:
    assert [z.options["network_type"] for z in plan.zones] == ["Basic", "Advanced"]
    assert 40 <= plan.default_hosts <= 60
    for zone in plan.zones:
        assert len(zone.pods) >= 2
        assert zone.image_stores
    assert len({c.weight for _, c in plan.clusters}) > 2  # clusters of different sizes
    assert len(plan.shapes) >= 4
    assert {"ssd", "gpu"} <= {t for _, c in plan.clusters for t in c.host_tags} | {
        t for s in plan.shapes.values() for t in s.tags
    }


def test_share_out_is_exact_proportional_and_deterministic() -> None:
    weights = [8, 6, 10, 0, 8, 4, 8, 4]
    for total in (1, 7, 47, 48, 1000, 10_000, 99_999):
        shares = demo.share_out(total, weights)
        assert sum(shares) == total
        assert shares[3] == 0
        for share, weight in zip(shares, weights, strict=True):
            assert abs(share - total * weight / sum(weights)) < 1
        assert shares == demo.share_out(total, weights)
    assert demo.share_out(48, weights) == weights


def test_a_typo_in_the_demo_file_is_named() -> None:
    text = (
        '[shapes.s]\ncpu_model = "X"\nsockets = 1\ncores_per_socket = 4\nmhz = 2000\n'
        "memory_gib = 8\nmemroy_gib = 8\n"
    )
    with pytest.raises(InvalidParameter, match=r"shape 's'.*memroy_gib"):
        demo.load_demo(text)


# --- building --------------------------------------------------------------------------


def test_default_demo_matches_the_file(cloud: Cloud, plan: demo.DemoPlan, home: Path) -> None:
    lines: list[str] = []
    summary = demo.build_demo(cloud.admin, progress=lines.append)

    zones = plan.zones
    assert summary.zones == 2
    assert summary.pods == sum(len(z.pods) for z in zones)
    assert summary.clusters == len(plan.clusters)
    assert summary.hosts == plan.default_hosts
    assert summary.storage_pools == sum(
        len(z.pools) + sum(len(c.pools) for c in z.clusters) for z in zones
    )
    assert summary.image_stores == sum(len(z.image_stores) for z in zones)
    assert summary.service_offerings == len(plan.service_offerings)
    assert summary.disk_offerings == len(plan.disk_offerings)
    assert any("zone 'eu-west-basic'" in line and "hosts" in line for line in lines)

    with cloud.db.read() as session:
        by_type = {z.network_type: z for z in session.exec(select(Zone))}
        assert set(by_type) == {"Basic", "Advanced"}
        assert by_type["Advanced"].guest_cidr and by_type["Advanced"].dns1
        assert by_type["Basic"].guest_cidr is None
        pods = list(session.exec(select(Pod)))
        assert len({(p.zone_id, p.cidr) for p in pods}) == len(pods)
        factors = {c.cpu_overprovisioning_factor for c in session.exec(select(Cluster))}
        assert len(factors) > 2
        assert session.exec(select(func.count()).select_from(StoragePool)).one() == (
            summary.storage_pools
        )
        assert session.exec(select(func.count()).select_from(ServiceOffering)).one() == (
            summary.service_offerings
        )
        tags = Counter(session.exec(select(HostTag.tag)))
    assert hosts_per_cluster(cloud) == plan.host_counts()
    assert tags["gpu"] > 0 and tags["ssd"] > 0

    hosts = demo_hosts(cloud, plan)
    assert Counter(h.status for h in hosts if h.status != "Up") == Counter(
        u.status for _, c in plan.clusters for u in c.unusual.values() if u.status != "Up"
    )
    assert any(h.resource_state == "Disabled" for h in hosts)
    assert len({h.uri for h in hosts}) == len(hosts)
    assert all(h.address for h in hosts)
    assert len(node_files(home)) == len(hosts)


def test_every_host_reports_its_own_shape_through_libvirt(
    cloud: Cloud, plan: demo.DemoPlan
) -> None:
    demo.build_demo(cloud.admin)
    seen_shapes = set()
    for host in demo_hosts(cloud, plan):
        assert host.uri.startswith("test:///")
        path = Path(unquote(urlsplit(host.uri).path))
        assert path.is_absolute() and path.is_file()
        conn = libvirt.open(host.uri)
        try:
            model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
        finally:
            conn.close()
        assert model == host.cpu_model
        assert memory_mib == host.memory_bytes // MIB
        assert cpus == host.cpu_cores
        assert nodes * sockets * cores * threads == host.cpu_cores
        assert (sockets, threads) == (host.cpu_sockets, 1)
        assert mhz == host.cpu_mhz
        seen_shapes.add((model, cpus, mhz, memory_mib))
    used = {
        (s.cpu_model, s.cpu_cores, s.mhz, s.memory_bytes // MIB)
        for _, c in plan.clusters
        if c.weight
        for s in c.shapes
    }
    assert seen_shapes == used


def test_scaled_demo_has_exactly_that_many_hosts_in_every_weighted_cluster(
    cloud: Cloud, plan: demo.DemoPlan, home: Path
) -> None:
    summary = demo.build_demo(cloud.admin, hosts=1000)
    assert summary.hosts == 1000
    per_cluster = hosts_per_cluster(cloud)
    assert sum(per_cluster.values()) == 1000
    assert per_cluster == plan.host_counts(1000)
    for zone, cluster in plan.clusters:
        if cluster.weight:
            assert per_cluster[(zone.name, cluster.name)] > 0
        else:
            assert per_cluster[(zone.name, cluster.name)] == 0
    assert len(node_files(home)) == 1000


@pytest.mark.parametrize("bad", [0, -5, True, "ten", demo.MAX_HOSTS + 1])
def test_a_bad_host_count_is_refused_before_anything_is_written(
    cloud: Cloud, home: Path, bad: object
) -> None:
    before = counts(cloud)
    with pytest.raises(InvalidParameter, match="host count"):
        demo.build_demo(cloud.admin, hosts=bad)  # type: ignore[arg-type]
    assert counts(cloud) == before
    assert not node_files(home)


def test_fewer_hosts_than_clusters(cloud: Cloud) -> None:
    assert demo.build_demo(cloud.admin, hosts=1).hosts == 1
    assert sum(hosts_per_cluster(cloud).values()) == 1


def test_building_over_an_existing_demo_is_refused_and_changes_nothing(
    cloud: Cloud, home: Path
) -> None:
    demo.build_demo(cloud.admin)
    before, files = counts(cloud), node_files(home)
    with pytest.raises(AlreadyExists, match=r"zone 'eu-west-basic' already exists.*--replace"):
        demo.build_demo(cloud.admin, hosts=500)
    assert counts(cloud) == before
    assert node_files(home) == files


def test_replace_rebuilds_the_demo_and_leaves_other_zones_alone(
    cloud: Cloud, plan: demo.DemoPlan, home: Path, tmp_path: Path
) -> None:
    admin = cloud.admin
    demo.build_demo(admin)
    other = topology.create_zone(admin, "lab", dns1="10.0.0.2")
    pod = topology.create_pod(
        admin, "lab", "lab-r1", gateway="10.9.0.1", netmask="24", start_ip="10.9.0.10"
    )
    cluster = topology.create_cluster(admin, pod.uuid, "lab-c1")
    (tmp_path / "lab-node.xml").write_bytes(plan.shapes["epyc-7763"].node_xml())
    lab_host = topology.add_host(
        admin,
        cluster.uuid,
        topology.HostSpec(
            name="lab-h1",
            uri=f"test://{tmp_path}/lab-node.xml",
            cpu_cores=64,
            cpu_mhz=2450,
            memory_bytes=512 * 2**30,
        ),
    )

    lines: list[str] = []
    summary = demo.build_demo(admin, hosts=10, replace=True, progress=lines.append)

    assert summary.hosts == 10
    assert summary.replaced_zones == ("eu-west-basic", "eu-central-adv")
    assert any(line.startswith("removed the old demo") for line in lines)
    assert len(demo_hosts(cloud, plan)) == 10
    assert len(node_files(home)) == 10  # the 48 old node files are gone, 10 new ones
    with cloud.db.read() as session:
        kept = session.get(Zone, other.id)
        assert kept is not None and kept.uuid == other.uuid
        assert session.get(Host, lab_host.id) is not None
        assert session.exec(select(func.count()).select_from(Zone)).one() == 3
    assert (tmp_path / "lab-node.xml").exists()


def test_replace_refuses_a_demo_zone_holding_a_real_host(cloud: Cloud) -> None:
    admin = cloud.admin
    demo.build_demo(admin)
    cluster = topology.list_clusters(admin, zone_ref="eu-central-adv")[0]
    topology.add_host(
        admin,
        cluster.uuid,
        topology.HostSpec(
            name="real-1",
            uri="qemu+ssh://root@kvm1/system",
            cpu_cores=8,
            cpu_mhz=2000,
            memory_bytes=2**34,
        ),
    )
    before = counts(cloud)
    with pytest.raises(InUse, match=r"real-1.*not a simulated demo host"):
        demo.build_demo(admin, replace=True)
    assert counts(cloud) == before


def test_a_failed_build_removes_what_it_created(
    cloud: Cloud, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_add_hosts = topology.add_hosts
    calls = []

    def failing(caller, cluster_ref, specs):  # type: ignore[no-untyped-def]
        calls.append(cluster_ref)
        if len(calls) == 6:
            raise InvalidParameter("injected failure")
        return real_add_hosts(caller, cluster_ref, specs)

    monkeypatch.setattr(topology, "add_hosts", failing)
    before = counts(cloud)
    with pytest.raises(InvalidParameter, match="injected failure"):
        demo.build_demo(cloud.admin, hosts=200)
    after = counts(cloud)
    assert {k: v for k, v in after.items() if k != "Event"} == {
        k: v for k, v in before.items() if k != "Event"
    }
    assert not node_files(home)


# --- capacity --------------------------------------------------------------------------


def test_capacity_rollups_equal_sums_over_the_hosts(cloud: Cloud, plan: demo.DemoPlan) -> None:
    demo.build_demo(cloud.admin, hosts=300)
    with cloud.db.read() as session:
        clusters = {c.id: c for c in session.exec(select(Cluster))}
        pools = list(session.exec(select(StoragePool)))
        stores = list(session.exec(select(ImageStore)))
    hosts = demo_hosts(cloud, plan)
    rollups = {r.name: r for r in capacity_rollups(cloud.admin, "zone")}
    for zone in plan.zones:
        rollup = rollups[zone.name]
        mine = [h for h in hosts if h.zone_id == rollup.id]
        cpu = sum(
            h.cpu_cores * h.cpu_mhz * (clusters[h.cluster_id].cpu_overprovisioning_factor or 1.0)
            for h in mine
        )
        memory = sum(
            h.memory_bytes * (clusters[h.cluster_id].mem_overprovisioning_factor or 1.0)
            for h in mine
        )
        assert rollup.hosts == len(mine)
        assert rollup.hosts_up == sum(h.status == "Up" for h in mine)
        assert rollup.cpu_mhz.total == pytest.approx(cpu)
        assert rollup.memory_bytes.total == pytest.approx(memory)
        assert rollup.cpu_cores.total == sum(h.cpu_cores for h in mine)
        assert rollup.primary_used_bytes.total == sum(
            p.capacity_bytes for p in pools if p.zone_id == rollup.id
        )
        assert rollup.secondary_bytes.total == sum(
            s.capacity_bytes for s in stores if s.zone_id == rollup.id
        )


def test_a_second_database_rebuilds_over_existing_node_files(
    cloud: Cloud, home: Path, tmp_path: Path
) -> None:
    demo.build_demo(cloud.admin, hosts=100)
    second = open_cloud(f"sqlite:///{tmp_path}/second.db")
    try:
        assert demo.build_demo(second.admin, hosts=200).hosts == 200
        with second.db.read() as session:
            hosts = list(session.exec(select(Host)))
    finally:
        second.db.dispose()
    assert len(node_files(home)) == 200
    for host in hosts[::17]:
        conn = libvirt.open(host.uri)
        try:
            assert conn.getInfo()[2] == host.cpu_cores
        finally:
            conn.close()
