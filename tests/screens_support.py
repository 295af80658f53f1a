"""Support for the dashboard, detail and form tests: a host app, a frozen world, screen text.

`ScreenApp` pushes one screen (as StratusApp will) and carries a `config` with the
read-only flag, like StratusApp. `build_world` makes a small cloud with fixed names, fixed
UUIDs and fixed timestamps, so snapshots of it never change: zone eu-west → pod rack-1 →
cluster kvm-a (hosts a1 Up with two VMs, a2 Disconnected) with pool ps-1 nearly full,
an image store, jobs and events; IPAM: public range 203.0.113.10-29 with five addresses
reserved, the admin's isolated network web-net (10.8.1.0/24) where web-1 has its NIC.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets._toast import Toast

from engine import topology
from engine.bootstrap import Cloud
from engine.context import Caller
from engine.ipam import networks, public, vni
from engine.models import (
    Event,
    GuestNetwork,
    Host,
    Job,
    ServiceOffering,
    StoragePool,
    Template,
    VirtualMachine,
    Volume,
)
from engine.offerings import create_service_offering

GIB = 2**30
T0 = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


def frozen_clock() -> datetime:
    return T0 + timedelta(minutes=30)


@dataclass
class AppConfig:
    read_only: bool = False


class ScreenApp(App[None]):
    """A bare app that opens `make_screen()` the way StratusApp opens its screens."""

    def __init__(self, make_screen: Callable[[], Screen[Any]], *, read_only: bool = False):
        super().__init__()
        self.make_screen = make_screen
        self.config = AppConfig(read_only=read_only)
        self.dismissed: list[Any] = []

    def get_default_screen(self) -> Screen[Any]:
        screen: Screen[Any] = Screen()
        screen.crumb = "Stratus"  # type: ignore[attr-defined]  # the breadcrumbs' first name
        return screen

    def on_mount(self) -> None:
        self.push_screen(self.make_screen(), self.dismissed.append)


async def settle(app: App[Any], pilot: Pilot[Any]) -> None:
    """Let workers start, finish, and their messages land."""
    for _ in range(3):
        await pilot.pause()
        await app.workers.wait_for_complete()
    await pilot.pause()


def screen_text(app: App[Any]) -> str:
    """What the terminal shows, as text rows (read back from the app's SVG screenshot)."""
    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for match in re.finditer(
        r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg
    ):
        x, y, text = float(match[1]), float(match[2]), html.unescape(match[3])
        rows.setdefault(y, []).append((x, text))
    lines = []
    for y in sorted(rows):
        line = ""
        for x, text in sorted(rows[y]):
            line = line.ljust(round(x / 12.2)) + text
        lines.append(line.replace("\xa0", " ").rstrip())
    return "\n".join(lines)


def toasts(app: App[Any]) -> list[str]:
    return [str(toast.render()) for toast in app.screen.query(Toast)]


# --- a frozen world ----------------------------------------------------------------------


@dataclass
class World:
    zone: str
    pod: str
    cluster: str
    host_up: str
    host_down: str
    pool: str
    vm_web: str
    vm_db: str


def _fixed_uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def build_world(cloud: Cloud) -> World:
    caller: Caller = cloud.admin
    zone = topology.create_zone(caller, "eu-west", dns1="192.0.2.53", guest_cidr="10.8.0.0/16")
    pod = topology.create_pod(
        caller, zone.uuid, "rack-1", gateway="10.1.0.1", netmask="255.255.255.0",
        start_ip="10.1.0.10", end_ip="10.1.0.99",
    )  # fmt: skip
    public.create_public_ip_range(
        caller, zone.uuid, gateway="203.0.113.1", netmask="255.255.255.0",
        start_ip="203.0.113.10", end_ip="203.0.113.29", vlan="vlan://100",
    )  # fmt: skip
    for last in range(10, 15):
        public.reserve_public_ip(caller, zone.uuid, f"203.0.113.{last}")
    vni.add_vni_range(caller, zone.uuid, 5000, 5009)
    networks.create_isolated_network(caller, zone.uuid, "web-net", cidr="10.8.1.0/24")
    cluster = topology.create_cluster(caller, pod.uuid, "kvm-a", cpu_disable_threshold=0.15)
    a1, _a2 = topology.add_hosts(
        caller,
        cluster.uuid,
        [
            topology.HostSpec(
                name="a1", uri="qemu+ssh://root@10.1.0.11/system", cpu_cores=16, cpu_mhz=2000,
                memory_bytes=64 * GIB, cpu_sockets=2, address="10.1.0.11", tags=("ssd",),
                cpu_model="Intel Xeon Silver 4316", hostname="a1.example.net",
            ),
            topology.HostSpec(
                name="a2", uri="qemu+ssh://root@10.1.0.12/system", cpu_cores=16, cpu_mhz=2000,
                memory_bytes=64 * GIB, address="10.1.0.12", status="Disconnected",
            ),
        ],
    )  # fmt: skip
    pool = topology.create_storage_pool(
        caller, "ps-1", path="/srv/primary/ps-1", cluster_ref=cluster.uuid,
        capacity_bytes=1000 * GIB,
    )  # fmt: skip
    topology.add_image_store(
        caller, zone.uuid, "images-1", url="nfs://nas-1/export/images", capacity_bytes=4096 * GIB
    )
    offering = create_service_offering(
        caller, "Medium", cpu_count=2, cpu_mhz=2000, memory_bytes=4 * GIB
    )
    with cloud.db.write() as session:
        session.execute(update(StoragePool).where(StoragePool.uuid == pool.uuid).values(
            used_bytes=900 * GIB, allocated_bytes=300 * GIB))  # fmt: skip
        session.execute(update(Host).where(Host.uuid == a1).values(
            cpu_used_mhz=8000, cpu_reserved_mhz=4000, memory_used_bytes=8 * GIB,
            memory_reserved_bytes=4 * GIB, last_seen=T0, hypervisor_version="8.2.0",
            libvirt_version="10.0.0"))  # fmt: skip
        template = Template(
            name="debian-12", account_id=caller.account_id, domain_id=caller.domain_id,
            size_bytes=8 * GIB, state="Ready", created=T0,
        )  # fmt: skip
        session.add(template)
        session.flush()
        host = session.execute(select(Host).where(Host.uuid == a1)).scalar_one()
        pool_id = _id(session, StoragePool, pool.uuid)
        offering_id = _id(session, ServiceOffering, offering.uuid)
        for n, (name, state, power) in enumerate(
            [("web-1", "Running", "PowerOn"), ("db-1", "Stopped", "PowerOff")], start=101
        ):
            vm = VirtualMachine(
                uuid=_fixed_uuid(n), name=name, display_name=name.upper(),
                instance_name=f"i-2-{n}-VM", account_id=caller.account_id,
                domain_id=caller.domain_id, zone_id=host.zone_id, pod_id=host.pod_id,
                cluster_id=host.cluster_id, host_id=host.id if state == "Running" else None,
                last_host_id=host.id,
                service_offering_id=offering_id, template_id=template.id, cpu_count=2,
                cpu_mhz=2000, memory_bytes=4 * GIB, state=state, power_state=power,
                power_state_updated=T0, created=T0,
            )  # fmt: skip
            session.add(vm)
            session.flush()
            if name == "web-1":
                web_net = session.execute(
                    select(GuestNetwork).where(GuestNetwork.name == "web-net")
                ).scalar_one()
                networks.add_nic(session, vm, web_net)
            session.add(Volume(
                uuid=_fixed_uuid(n + 100), name=f"ROOT-{n}", account_id=caller.account_id,
                domain_id=caller.domain_id, zone_id=vm.zone_id, pool_id=pool_id, vm_id=vm.id,
                device_id=0, volume_type="ROOT", template_id=template.id, size_bytes=20 * GIB,
                state="Ready", created=T0,
            ))  # fmt: skip
            session.add(Event(
                uuid=_fixed_uuid(n + 200), username="admin", event_type="VM.CREATE",
                resource_type="VirtualMachine", resource_uuid=vm.uuid, resource_name=name,
                description=f"deployed {name} on a1",
            ))  # fmt: skip
        session.add(Job(
            uuid=_fixed_uuid(301), job_type="StartVM", resource_type="VirtualMachine",
            resource_uuid=_fixed_uuid(102), resource_name="db-1", username="admin",
            state="Running", progress=40, progress_message="defining the domain", created=T0,
            started=T0,
        ))  # fmt: skip
        session.add(Job(
            uuid=_fixed_uuid(302), job_type="StopVM", resource_type="VirtualMachine",
            resource_uuid=_fixed_uuid(101), resource_name="web-1", username="admin",
            state="Failed", progress=100, error="host a2 is Disconnected", created=T0,
            finished=T0 + timedelta(seconds=5),
        ))  # fmt: skip
    freeze(cloud)
    return World(ZONE, POD, CLUSTER, HOST_UP, HOST_DOWN, POOL, VM_WEB, VM_DB)


def _id(session: Any, model: Any, uuid: str) -> int:
    return session.execute(select(model.id).where(model.uuid == uuid)).scalar_one()


def freeze(cloud: Cloud) -> None:
    """Fixed UUIDs for the topology and fixed times for every event, in id order."""
    from engine.models import Cluster, ImageStore, Pod, Zone

    with cloud.db.write() as session:
        for base, model in ((1, Zone), (11, Pod), (21, Cluster), (31, Host), (41, StoragePool),
                            (51, ImageStore)):  # fmt: skip
            ids = list(session.execute(select(model.id).order_by(model.id)).scalars())
            for offset, row_id in enumerate(ids):
                session.execute(
                    update(model).where(model.id == row_id).values(uuid=_fixed_uuid(base + offset))
                )
        ids = list(session.execute(select(Event.id).order_by(Event.id)).scalars())
        for n, row_id in enumerate(ids):
            session.execute(
                update(Event)
                .where(Event.id == row_id)
                .values(created=T0 + timedelta(seconds=10 * n), uuid=_fixed_uuid(900 + n))
            )


# After freeze(): the fixed UUIDs of build_world's objects.
ZONE = _fixed_uuid(1)
POD = _fixed_uuid(11)
CLUSTER = _fixed_uuid(21)
HOST_UP = _fixed_uuid(31)
HOST_DOWN = _fixed_uuid(32)
POOL = _fixed_uuid(41)
STORE = _fixed_uuid(51)
VM_WEB = _fixed_uuid(101)
VM_DB = _fixed_uuid(102)
