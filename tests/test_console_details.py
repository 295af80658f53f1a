"""Detail screens of zone, pod, cluster, host and VM: facts, capacity, contents, hooks."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import pytest
from screens_support import (
    CLUSTER,
    GIB,
    HOST_DOWN,
    HOST_UP,
    POD,
    VM_DB,
    VM_WEB,
    ZONE,
    ScreenApp,
    build_world,
    frozen_clock,
    screen_text,
    settle,
    toasts,
)
from textual.pilot import Pilot
from textual.screen import Screen

from engine import details, topology
from engine.bootstrap import Cloud
from engine.dashboard import dashboard
from engine.details import NicLine
from engine.hosts.metrics import local_metrics
from tui.screens import details as detail_screens
from tui.screens.details import (
    ClusterDetailScreen,
    HostDetailScreen,
    PodDetailScreen,
    VmDetailScreen,
    ZoneDetailScreen,
)
from tui.screens.forms import ClusterForm, HostForm, ZoneForm


def run_screen(
    make: Callable[[], Screen[Any]],
    scenario: Callable[[ScreenApp, Pilot[Any]], Awaitable[None]],
    *,
    read_only: bool = False,
) -> None:
    async def main() -> None:
        app = ScreenApp(make, read_only=read_only)
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())


def frozen(cls: type, cloud: Cloud, uuid: str, **options: Any) -> Callable[[], Screen[Any]]:
    return lambda: cls(cloud.admin, uuid, refresh_seconds=0, clock=frozen_clock, **options)


def test_zone_detail_shows_facts_capacity_pods_storage_and_vms(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "zone eu-west" in text  # sub-title
        assert "Guest CIDR      10.8.0.0/16" in text
        assert "DNS             192.0.2.53" in text
        assert "1 pod · 1 cluster · 2 hosts (1 Up)" in text
        assert "Secondary  [" in text and "0 B / 4.0 TiB" in text
        assert "rack-1                   Enabled  10.1.0.0/24 · gateway 10.1.0.1" in text
        assert "ps-1                     Up  cluster dir /srv/primary/ps-1 · used 90%" in text
        assert "images-1                 Ready  nfs://nas-1/export/images" in text
        assert "2 VMs" in text and "web-1" in text and "db-1" in text

    run_screen(frozen(ZoneDetailScreen, cloud, ZONE), scenario)


def test_pod_detail_shows_network_and_clusters(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "pod rack-1 in eu-west" in text
        assert "Network           10.1.0.0/24 (netmask 255.255.255.0)" in text
        assert "Management range  10.1.0.10 - 10.1.0.99" in text
        assert "kvm-a                    Enabled  2 hosts, 1 Up" in text
        assert "CPU        [████░░░░░░░░░░░░░░░░]  19%" in text

    run_screen(frozen(PodDetailScreen, cloud, POD), scenario)


def test_cluster_detail_shows_tunables_hosts_and_pools(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "cluster kvm-a in eu-west / rack-1" in text
        assert "Cpu disable threshold" in text and "0.15 (cluster)" in text
        assert "0.85 (global)" in text  # memory threshold inherited
        assert "a1                       Up  Enabled · 16 cores x 2000 MHz · 64 GiB" in text
        assert "a2                       Disconnected  Enabled" in text
        assert "ps-1" in text and "2 VMs" in text

    run_screen(frozen(ClusterDetailScreen, cloud, CLUSTER), scenario)


def test_host_detail_shows_facts_capacity_and_its_vms_only(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "URI                   qemu+ssh://root@10.1.0.11/system" in text
        assert "Intel Xeon Silver 4316 · 2 sockets, 16 cores at 2000 MHz" in text
        assert "KVM · version 8.2.0 · libvirt 10.0.0" in text
        assert "Tags                  ssd" in text
        assert "CPU        [████████░░░░░░░░░░░░]  38%  ok    12.0 / 32.0 GHz" in text
        assert "used 8.0 GHz, reserved 4.0 GHz" in text
        assert "no live metrics for this host" in text
        # Only the running VM is on a1; the stopped one has no host.
        assert "1 VM" in text and "web-1" in text and "db-1" not in text

    run_screen(frozen(HostDetailScreen, cloud, HOST_UP), scenario)


def test_a_disconnected_host_says_so_in_words(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "Status                Disconnected" in text
        assert "0 VMs" in text

    run_screen(frozen(HostDetailScreen, cloud, HOST_DOWN), scenario)


def test_host_metrics_become_sparklines_refresh_by_refresh(cloud: Cloud) -> None:
    build_world(cloud)
    samples = itertools.count()
    asked: list[str] = []

    def metrics(caller: Any, host_uuid: str) -> dict[str, float]:
        asked.append(host_uuid)
        n = next(samples)
        return {"CPU %": [10.0, 50.0, 90.0, 30.0][n % 4], "memory %": 40.0}

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        for _ in range(3):
            await pilot.press("r")
            await settle(app, pilot)
        text = screen_text(app)
        assert asked and set(asked) == {HOST_UP}
        assert "CPU %      ▁▅█▃" in text and "30.0  (min 10.0, max 90.0)" in text
        assert "memory %   ▄▄▄▄" in text
        assert "no live metrics" not in text

    run_screen(frozen(HostDetailScreen, cloud, HOST_UP, metrics=metrics), scenario)


def _local_host(cloud: Cloud) -> str:
    """A host whose URI is this machine (no libvirt needed: its metrics come from psutil)."""
    (uuid,) = topology.add_hosts(
        cloud.admin,
        CLUSTER,
        [topology.HostSpec("local", "qemu:///system", 4, 2000, 16 * GIB, address="10.1.0.13")],
    )
    return uuid


def test_live_metrics_come_from_psutil_for_the_local_host_only(cloud: Cloud) -> None:
    build_world(cloud)
    local = _local_host(cloud)
    sample = details.live_host_metrics(cloud.admin, local)
    assert sample is not None and list(sample) == ["CPU %", "memory %", "load 1m", "disk %"]
    assert 0.0 <= sample["CPU %"] <= 100.0 and 0.0 < sample["memory %"] <= 100.0
    assert sample["load 1m"] >= 0.0
    # The sampler reads "/" (used of total): its use moves little between two readings.
    disk = psutil.disk_usage("/")
    assert abs(sample["disk %"] - 100.0 * disk.used / disk.total) < 2.0
    assert abs(sample["memory %"] - psutil.virtual_memory().percent) < 20.0
    assert details.live_host_metrics(cloud.admin, HOST_UP) is None  # qemu+ssh: remote
    assert details.live_host_metrics(cloud.admin, "no-such-host") is None


def test_the_local_host_screen_draws_its_metrics(cloud: Cloud) -> None:
    build_world(cloud)
    local = _local_host(cloud)
    sampler = local_metrics()
    for _ in range(3):
        sampler.sample()
    earlier = len(sampler.history())
    assert len(details.live_host_history(cloud.admin, local)) >= earlier >= 3
    assert details.live_host_history(cloud.admin, HOST_UP) == []

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        for name in ("CPU %", "memory %", "load 1m", "disk %"):
            assert f"{name:<11}" in text, name
        assert "no live metrics" not in text
        # The sparklines start from the sampler's history, then one sample per load.
        # (The screen keeps the last `size` samples; the sampler runs all session long.)
        size = app.screen.history.size
        first = len(app.screen.history.series["memory %"])
        assert first >= min(earlier, size)
        await pilot.press("r")
        await settle(app, pilot)
        assert len(app.screen.history.series["memory %"]) == min(first + 1, size)

    run_screen(frozen(HostDetailScreen, cloud, local), scenario)


def test_vm_detail_shows_state_placement_offering_volumes_and_its_events(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "State                 Running" in text
        assert "Power state           PowerOn (reported 09:26:53 UTC)" in text
        assert "Host                  a1" in text
        assert "Zone / pod / cluster  eu-west / rack-1 / kvm-a" in text
        assert "Offering              Medium" in text and "Template              debian-12" in text
        assert "nic0  web-net  02:00:00:00:00:01  10.8.1.2  (default)" in text
        assert "ROOT-101                 ROOT     Ready  20.0 GiB · device 0 · pool ps-1" in text
        assert "deployed web-1 on a1" in text and "deployed db-1" not in text
        assert "e Edit" not in text  # no edit form for VMs

    run_screen(frozen(VmDetailScreen, cloud, VM_WEB), scenario)


def test_vm_nics_come_from_the_ipam_hook(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    build_world(cloud)
    nic = NicLine(0, "guest-net-1", "02:00:00:00:00:01", ("10.8.0.12",), is_default=True)
    monkeypatch.setattr(details, "vm_nics", lambda caller, uuid: [nic] if uuid == VM_DB else [])

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        text = screen_text(app)
        assert "nic0  guest-net-1  02:00:00:00:00:01  10.8.0.12  (default)" in text
        assert "State                 Stopped" in text and "Host                  -" in text

    run_screen(frozen(VmDetailScreen, cloud, VM_DB), scenario)


def test_long_lists_show_the_first_rows_and_the_count(cloud: Cloud) -> None:
    build_world(cloud)
    zone = details.zone_detail(cloud.admin, ZONE, limit=1)
    assert zone.vms.total == 2 and [v.name for v in zone.vms.shown] == ["db-1"]
    cluster = details.cluster_detail(cloud.admin, CLUSTER, limit=1)
    assert cluster.hosts.total == 2 and [h.name for h in cluster.hosts.shown] == ["a1"]
    assert detail_screens._shown_of(2, 1, "VM") == "first 1 of 2 VMs"


def test_a_missing_object_is_a_notification(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert app.is_running
        assert any("host 'no-such-host' does not exist" in t for t in toasts(app)), toasts(app)
        assert "Not refreshed (never loaded, 1 failed)" in screen_text(app)

    run_screen(frozen(HostDetailScreen, cloud, "no-such-host"), scenario)


@pytest.mark.parametrize(
    ("screen", "uuid", "form"),
    [
        (ZoneDetailScreen, ZONE, ZoneForm),
        (ClusterDetailScreen, CLUSTER, ClusterForm),
        (HostDetailScreen, HOST_UP, HostForm),
    ],
)
def test_e_opens_the_edit_form_and_read_only_hides_it(
    cloud: Cloud, screen: type, uuid: str, form: type
) -> None:
    build_world(cloud)

    async def writable(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert "e Edit" in screen_text(app)
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, form) and app.screen.uuid == uuid
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, screen)

    async def read_only(app: ScreenApp, pilot: Pilot[Any]) -> None:
        assert "e Edit" not in screen_text(app)
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, screen)

    run_screen(frozen(screen, cloud, uuid), writable)
    run_screen(frozen(screen, cloud, uuid), read_only, read_only=True)


def test_every_binding_has_an_id() -> None:
    for binding in detail_screens.DetailScreen.BINDINGS:
        assert binding.id, f"binding {binding.key!r} has no id"  # type: ignore[union-attr]


# --- snapshots --------------------------------------------------------------------------


async def _loaded(pilot: Pilot[Any]) -> None:
    await settle(pilot.app, pilot)


def test_host_detail_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build_world(cloud)
    app = ScreenApp(frozen(HostDetailScreen, cloud, HOST_UP))
    assert snap_compare(app, terminal_size=(120, 40), run_before=_loaded)


def test_vm_detail_snapshot(cloud: Cloud, snap_compare: Any) -> None:
    build_world(cloud)
    app = ScreenApp(frozen(VmDetailScreen, cloud, VM_WEB))
    assert snap_compare(app, terminal_size=(120, 40), run_before=_loaded)


def test_detail_and_dashboard_services_on_each_backend(any_cloud: Cloud) -> None:
    """The same figures from SQLite and PostgreSQL (NULL ordering, CASE sums, joins)."""
    build_world(any_cloud)
    caller = any_cloud.admin
    board = dashboard(caller)
    assert [j.job_type for j in board.recent_jobs] == ["StopVM"]
    assert [h.name for h in board.hosts_not_up] == ["a2"]
    zone = details.zone_detail(caller, ZONE)
    assert (zone.hosts, zone.hosts_up, zone.clusters, zone.vms.total) == (2, 1, 1, 2)
    pod = details.pod_detail(caller, POD)
    assert [(c.name, c.summary) for c in pod.clusters.shown] == [("kvm-a", "2 hosts, 1 Up")]
    cluster = details.cluster_detail(caller, CLUSTER)
    assert [t.value for t in cluster.tunables] == [1.0, 1.0, 0.15, 0.85]
    host = details.host_detail(caller, HOST_UP)
    assert (host.cpu_mhz.allocated, host.cpu_mhz.total, host.tags) == (12000, 32000, ["ssd"])
    vm = details.vm_detail(caller, VM_DB)
    assert (vm.host_name, vm.last_host_name, vm.offering, vm.template) == (
        None,
        "a1",
        "Medium",
        "debian-12",
    )
    assert [(v.name, v.pool) for v in vm.volumes] == [("ROOT-102", "ps-1")]
    assert [e.description for e in vm.events] == ["deployed db-1 on a1"]
    assert vm.nics == []  # db-1 has no NIC
    web = details.vm_detail(caller, VM_WEB)
    assert web.nics == [NicLine(0, "web-net", "02:00:00:00:00:01", ("10.8.1.2",), True)]


def test_enter_walks_from_a_cluster_to_its_host_and_that_host_s_vm(cloud: Cloud) -> None:
    build_world(cloud)

    async def scenario(app: ScreenApp, pilot: Pilot[Any]) -> None:
        app.screen.query_one("#hosts").focus()
        await pilot.press("down", "enter")  # the count line is skipped: host a1
        await settle(app, pilot)
        assert isinstance(app.screen, HostDetailScreen) and app.screen.uuid == HOST_UP
        app.screen.query_one("#vms").focus()
        await pilot.press("down", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, VmDetailScreen) and app.screen.uuid == VM_WEB
        assert "Cluster > host a1 in kvm-a > VM web-1" in screen_text(app).replace(
            "Stratus > cluster kvm-a in eu-west / rack-1", "Cluster"
        )
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HostDetailScreen)

    run_screen(frozen(ClusterDetailScreen, cloud, CLUSTER), scenario)
