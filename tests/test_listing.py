"""Engine listings for the console tables: keyset pages, filters, scopes, counts; demo VMs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from console_support import build, build_ipam
from sqlmodel import func, select

from engine import demo, listing
from engine.bootstrap import Cloud
from engine.errors import InvalidParameter, NotFound
from engine.models import Host, StoragePool, Template, VirtualMachine, Volume

GIB = 2**30


def names(page: listing.Page) -> list[str]:
    return [row.cells[0] for row in page.rows]


def all_vm_names(cloud: Cloud) -> list[str]:
    with cloud.db.read() as session:
        return sorted(session.exec(select(VirtualMachine.name)).all())


def test_pages_walk_every_row_once_forward_and_backward(cloud: Cloud) -> None:
    build(cloud.admin, vms=57)
    expected = all_vm_names(cloud)
    assert len(expected) == 57

    seen: list[str] = []
    page = listing.list_page(cloud.admin, "vms", limit=10)
    assert not page.more_before
    while True:
        seen += names(page)
        if not page.more_after:
            break
        page = listing.list_page(cloud.admin, "vms", after=page.rows[-1].cursor, limit=10)
    assert seen == expected

    back: list[str] = []
    page = listing.list_page(cloud.admin, "vms", from_end=True, limit=10)
    assert names(page) == expected[-10:] and page.more_before
    while True:
        back = names(page) + back
        if not page.more_before:
            break
        page = listing.list_page(cloud.admin, "vms", before=page.rows[0].cursor, limit=10)
    assert back == expected


def test_descending_and_inclusive_pages(cloud: Cloud) -> None:
    build(cloud.admin, vms=12)
    expected = all_vm_names(cloud)[::-1]
    first = listing.list_page(cloud.admin, "vms", descending=True, limit=5)
    assert names(first) == expected[:5]
    again = listing.list_page(
        cloud.admin, "vms", descending=True, after=first.rows[2].cursor, inclusive=True, limit=5
    )
    assert names(again) == expected[2:7]


def test_filter_matches_substrings_and_bang_inverts(cloud: Cloud) -> None:
    build(cloud.admin, vms=36)
    every = all_vm_names(cloud)
    web = [n for n in every if "web" in n]
    assert web and len(web) < len(every)

    page = listing.list_page(cloud.admin, "vms", filter_text="WEB", limit=100)
    assert names(page) == web  # case-insensitive
    page = listing.list_page(cloud.admin, "vms", filter_text="!web", limit=100)
    assert names(page) == [n for n in every if "web" not in n]
    assert listing.count_rows(cloud.admin, "vms", filter_text="web").rows == len(web)
    assert listing.count_rows(cloud.admin, "vms", filter_text="!web").rows == len(every) - len(web)
    # Other views search their state too; LIKE wildcards are plain characters.
    assert names(listing.list_page(cloud.admin, "hosts", filter_text="up")) == [
        "h0",
        "h1",
        "h2",
        "h3",
    ]
    assert listing.list_page(cloud.admin, "hosts", filter_text="!up").rows == []
    assert listing.list_page(cloud.admin, "vms", filter_text="%").rows == []
    assert listing.list_page(cloud.admin, "vms", filter_text="_").rows == []


def test_scope_narrows_to_a_parent(cloud: Cloud) -> None:
    build(cloud.admin, hosts=3, vms=9)
    with cloud.db.read() as session:
        host = session.exec(select(Host).where(Host.name == "h1")).one()
        on_host = sorted(
            session.exec(select(VirtualMachine.name).where(VirtualMachine.host_id == host.id))
        )
    assert len(on_host) == 3  # round-robin over three hosts
    page = listing.list_page(cloud.admin, "vms", scope={"host": host.uuid})
    assert names(page) == on_host
    assert {row.cells[3] for row in page.rows} == {"h1"}  # the Host column
    assert listing.count_rows(cloud.admin, "vms", scope={"host": host.uuid}).rows == 3
    with pytest.raises(NotFound, match="host 'nope' does not exist"):
        listing.list_page(cloud.admin, "vms", scope={"host": "nope"})
    with pytest.raises(InvalidParameter, match="cannot be narrowed to a pool"):
        listing.list_page(cloud.admin, "vms", scope={"pool": host.uuid})


def test_count_stops_at_its_cap(cloud: Cloud) -> None:
    build(cloud.admin, vms=25)
    count = listing.count_rows(cloud.admin, "vms", cap=10)
    assert (count.rows, count.capped, count.describe()) == (10, True, "10+")
    exact = listing.count_rows(cloud.admin, "vms")
    assert (exact.rows, exact.capped, exact.describe()) == (25, False, "25")


def test_every_view_lists_and_names_its_errors(cloud: Cloud) -> None:
    build(cloud.admin, vms=3)
    for name, view in listing.VIEWS.items():
        page = listing.list_page(cloud.admin, name)
        assert all(len(row.cells) == len(view.columns) for row in page.rows), name
    assert names(listing.list_page(cloud.admin, "zones")) == ["z1"]
    assert names(listing.list_page(cloud.admin, "hosts")) == ["h0", "h1", "h2", "h3"]
    assert len(listing.list_page(cloud.admin, "vols").rows) == 3
    assert listing.view_named("VM").name == "vms"  # aliases, any case
    with pytest.raises(NotFound, match="no view 'nodez'"):
        listing.list_page(cloud.admin, "nodez")
    with pytest.raises(InvalidParameter, match="column 'state' cannot be sorted"):
        listing.list_page(cloud.admin, "vms", sort="state")
    with pytest.raises(InvalidParameter, match="no column 'colour'"):
        listing.list_page(cloud.admin, "vms", sort="colour")


def test_tree_children_level_by_level(cloud: Cloud) -> None:
    build(cloud.admin, hosts=2, vms=4)
    zones = listing.tree_children(cloud.admin, "cloud")
    assert [(z.kind, z.name, z.state) for z in zones] == [("zone", "z1", "2 hosts, all Up")]
    zone_children = listing.tree_children(cloud.admin, "zone", zones[0].key)
    assert [c.kind for c in zone_children] == ["pod", "stores"]
    clusters = listing.tree_children(cloud.admin, "pod", zone_children[0].key)
    hosts = listing.tree_children(cloud.admin, "cluster", clusters[0].key)
    assert [(h.kind, h.name, h.note) for h in hosts] == [
        ("host", "h0", "2 VMs"),
        ("host", "h1", "2 VMs"),
        ("pools", "Primary storage", "1 pool"),
    ]
    cpu = hosts[0].measures[0]
    assert (cpu.label, cpu.used, cpu.total) == ("CPU", 4000.0, 32000.0)
    vms = listing.tree_children(cloud.admin, "host", hosts[0].key)
    assert [v.state for v in vms] == ["Running, PowerOn"] * 2
    pools = listing.tree_children(cloud.admin, "pools", clusters[0].key)
    assert [p.name for p in pools] == ["c1-ps1"]
    with pytest.raises(NotFound):
        listing.tree_children(cloud.admin, "host", "gone")


# --- demo VMs --------------------------------------------------------------------------


def test_demo_vms_claim_host_capacity_and_get_root_volumes(cloud: Cloud) -> None:
    build(cloud.admin, hosts=4, vms=0)
    assert demo.add_demo_vms(cloud.admin, 10) == 10
    with cloud.db.read() as session:
        hosts = session.exec(select(Host).order_by(Host.name)).all()
        for host in hosts:
            vms = session.exec(
                select(VirtualMachine).where(VirtualMachine.host_id == host.id)
            ).all()
            assert host.cpu_used_mhz == sum(v.cpu_count * v.cpu_mhz for v in vms)
            assert host.memory_used_bytes == sum(v.memory_bytes for v in vms)
            assert host.capacity_version >= 1
        assert sorted(
            len(session.exec(select(VirtualMachine.id).where(VirtualMachine.host_id == h.id)).all())
            for h in hosts
        ) == [2, 2, 3, 3]
        roots = session.exec(select(Volume).where(Volume.volume_type == "ROOT")).all()
        assert len(roots) == 10 and all(v.vm_id is not None for v in roots)
        pool = session.exec(select(StoragePool)).one()
        assert pool.allocated_bytes == sum(v.size_bytes for v in roots)
        assert session.exec(select(func.count()).select_from(Template)).one() == 2
        states = set(session.exec(select(VirtualMachine.state)).all())
        assert states == {"Running"}


def test_demo_vms_never_overfill_a_host(cloud: Cloud) -> None:
    build(cloud.admin, hosts=1, vms=0)  # 16 x 2 GHz, 64 GiB: 16 Small VMs fit on CPU
    assert demo.add_demo_vms(cloud.admin, 100) == 16
    with cloud.db.read() as session:
        host = session.exec(select(Host)).one()
        assert host.cpu_used_mhz == 32000 and host.memory_used_bytes == 32 * GIB


def test_demo_vm_count_is_checked(cloud: Cloud) -> None:
    build(cloud.admin, vms=0)
    for bad in (-1, True, "3"):
        with pytest.raises(InvalidParameter, match="count must be a whole number"):
            demo.add_demo_vms(cloud.admin, bad)  # type: ignore[arg-type]
    with cloud.db.read() as session:
        assert session.exec(select(func.count()).select_from(VirtualMachine)).one() == 0


def test_demo_build_includes_vms_and_teardown_gives_capacity_back(cloud: Cloud) -> None:
    summary = demo.build_demo(cloud.admin, hosts=6, vms=20)
    assert summary.vms == 20 and "20 VMs" in summary.describe()
    rebuilt = demo.build_demo(cloud.admin, hosts=6, replace=True)
    assert rebuilt.vms == 6 * demo.DEMO_VMS_PER_HOST
    with cloud.db.read() as session:
        assert session.exec(select(func.count()).select_from(VirtualMachine)).one() == 18
        assert session.exec(select(func.count()).select_from(Volume)).one() == 18


def test_pages_filters_and_counts_agree_on_both_backends(any_cloud: Cloud) -> None:
    build(any_cloud.admin, hosts=3, vms=24)
    expected = all_vm_names(any_cloud)
    seen: list[str] = []
    page = listing.list_page(any_cloud.admin, "vms", limit=7)
    while True:
        seen += names(page)
        if not page.more_after:
            break
        page = listing.list_page(any_cloud.admin, "vms", after=page.rows[-1].cursor, limit=7)
    assert seen == expected
    web = [n for n in expected if "web" in n]
    assert names(listing.list_page(any_cloud.admin, "vms", filter_text="WeB")) == web
    assert listing.count_rows(any_cloud.admin, "vms", filter_text="!web").rows == 24 - len(web)
    events = listing.list_page(any_cloud.admin, "events", limit=5)
    older = listing.list_page(any_cloud.admin, "events", after=events.rows[-1].cursor, limit=5)
    assert not {r.key for r in events.rows} & {r.key for r in older.rows}
    hosts = listing.tree_children(any_cloud.admin, "cluster", _cluster_uuid(any_cloud))
    assert [h.name for h in hosts] == ["h0", "h1", "h2", "Primary storage"]


def _cluster_uuid(cloud: Cloud) -> str:
    from engine.models import Cluster

    with cloud.db.read() as session:
        return session.exec(select(Cluster.uuid)).one()


# --- IPAM views --------------------------------------------------------------------------


def test_ips_view_pages_filters_and_counts_public_addresses(cloud: Cloud) -> None:
    build(cloud.admin, vms=0)
    build_ipam(cloud.admin)
    every = [f"198.51.100.{n}" for n in range(10, 41)]
    seen: list[str] = []
    page = listing.list_page(cloud.admin, "ips", limit=7)
    while True:
        seen += names(page)
        if not page.more_after:
            break
        page = listing.list_page(cloud.admin, "ips", after=page.rows[-1].cursor, limit=7)
    assert seen == every  # numeric order, one page at a time
    back = listing.list_page(cloud.admin, "ips", descending=True, limit=3)
    assert names(back) == every[::-1][:3]

    snat, second = listing.list_page(cloud.admin, "ips", filter_text="allocated").rows
    assert snat.cells[:6] == (
        "198.51.100.10",
        "Allocated",
        "z1",
        "198.51.100.10-198.51.100.40 · vlan 200",
        "admin",
        "yes",
    )
    assert snat.cells[6] != ""  # allocation time
    assert (second.cells[0], second.cells[4], second.cells[5]) == ("198.51.100.11", "admin", "")
    # The account (a joined column) is searched, and `!` keeps the unowned rows.
    assert listing.count_rows(cloud.admin, "ips", filter_text="ADMIN").rows == 2
    assert listing.count_rows(cloud.admin, "ips", filter_text="!admin").rows == 29
    assert len(listing.list_page(cloud.admin, "ips", filter_text="!admin").rows) == 29
    assert listing.count_rows(cloud.admin, "ips").rows == 31


def test_nets_view_shows_networks_and_drills_into_their_addresses(cloud: Cloud) -> None:
    build(cloud.admin, vms=1)
    build_ipam(cloud.admin)
    from engine.ipam import networks

    with cloud.db.read() as session:
        vm = session.exec(select(VirtualMachine)).one()
    networks.allocate_nic(cloud.admin, vm.uuid, "blue")
    page = listing.list_page(cloud.admin, "nets")
    assert [r.cells[:9] for r in page.rows] == [
        ("blue", "Isolated", "z1", "10.50.0.0/24", "10.50.0.1", "vxlan 6000", "admin",
         "Allocated", "1 / 253"),
        ("red", "Isolated", "z1", "10.51.0.0/24", "10.51.0.1", "vxlan 6001", "admin",
         "Allocated", "0 / 253"),
    ]  # fmt: skip
    assert names(listing.list_page(cloud.admin, "nets", descending=True)) == ["red", "blue"]
    assert names(listing.list_page(cloud.admin, "nets", filter_text="blu")) == ["blue"]
    assert listing.count_rows(cloud.admin, "nets", filter_text="!admin").rows == 0
    blue = page.rows[0].key
    view = listing.view_named("networks")
    assert (view.child, view.scope_as) == ("ips", "network")
    scoped = listing.list_page(cloud.admin, "ips", scope={"network": blue})
    assert names(scoped) == ["198.51.100.10", "198.51.100.11"]
    red = listing.list_page(cloud.admin, "ips", scope={"network": page.rows[1].key})
    assert red.rows == []


def test_vms_sort_by_created_and_volumes_by_name(cloud: Cloud) -> None:
    build(cloud.admin, vms=6)
    with cloud.db.write() as session:
        vms = session.exec(select(VirtualMachine).order_by(VirtualMachine.name)).all()
        for n, vm in enumerate(vms):  # creation order: the reverse of name order
            vm.created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=len(vms) - n)
            session.add(vm)
    by_created = listing.list_page(cloud.admin, "vms", sort="created", limit=4)
    expected = [vm.name for vm in vms][::-1]
    assert names(by_created) == expected[:4]
    rest = listing.list_page(cloud.admin, "vms", sort="created", after=by_created.rows[-1].cursor)
    assert names(rest) == expected[4:]
    volumes = names(listing.list_page(cloud.admin, "vols"))
    assert volumes == sorted(volumes) and len(volumes) == 6
    assert names(listing.list_page(cloud.admin, "vols", descending=True)) == volumes[::-1]


def test_ranges_view_shows_public_ranges_with_their_use_and_drills_into_addresses(
    cloud: Cloud,
) -> None:
    build(cloud.admin, vms=0)
    build_ipam(cloud.admin)  # 31 addresses, two of them associated to the admin's network
    page = listing.list_page(cloud.admin, "ranges")
    (row,) = page.rows
    assert row.cells[:6] == (
        "198.51.100.10-198.51.100.40",
        "z1",
        "",
        "198.51.100.1 (198.51.100.0/24)",
        "vlan 200",
        "",
    )
    assert row.cells[6] == "2 / 31 (6%)"
    from engine.ipam import public

    public.associate_public_ip(cloud.admin, "z1", network_ref="red")  # red's source NAT
    assert listing.list_page(cloud.admin, "ranges").rows[0].cells[6] == "3 / 31 (10%)"
    view = listing.view_named("ranges")
    assert (view.child, view.scope_as) == ("ips", "range")
    addresses = listing.count_rows(cloud.admin, "ips", scope={"range": row.key})
    assert addresses.rows == 31
    assert listing.count_rows(cloud.admin, "ranges", filter_text="203.0.113").rows == 0


def test_mgmt_view_shows_each_pods_management_range_and_the_addresses_hosts_hold(
    cloud: Cloud,
) -> None:
    build(cloud.admin, hosts=4, vms=0)  # p1: 10.1.0.10-99, hosts at 10.1.0.20-23
    (row,) = listing.list_page(cloud.admin, "mgmt").rows
    assert row.cells == (
        "p1",
        "z1",
        "10.1.0.1 (10.1.0.0/24)",
        "10.1.0.10-10.1.0.99",
        "4 / 90 (4%)",
        "Enabled",
    )
    with cloud.db.write() as session:
        host = session.exec(select(Host).where(Host.name == "h3")).one()
    from engine.topology import delete_host

    delete_host(cloud.admin, host.uuid)
    assert listing.list_page(cloud.admin, "mgmt").rows[0].cells[4] == "3 / 90 (3%)"
