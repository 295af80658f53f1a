"""What the console tests share: a small cloud with VMs, a frozen clock, a console runner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from textual.pilot import Pilot
from textual.widgets._toast import Toast
from textual.worker import WorkerState

from engine import demo
from engine.bootstrap import Cloud
from engine.config import default_config
from engine.context import Caller
from engine.ipam import networks, public, vni
from engine.models import Host, VirtualMachine
from engine.offerings import create_service_offering
from engine.topology import (
    HostSpec,
    add_hosts,
    add_image_store,
    create_cluster,
    create_pod,
    create_storage_pool,
    create_zone,
)
from tui.app import StratusApp

GIB = 2**30
FROZEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def frozen_clock() -> datetime:
    return FROZEN


def build(
    caller: Caller, *, hosts: int = 4, vms: int = 30, pool_path: str = "/tmp/stratus-pool"
) -> None:
    """Zone z1 → pod p1 → cluster c1 (hosts h0..) with a pool; Small offering; VMs."""
    create_zone(caller, "z1", dns1="192.0.2.53")
    create_pod(
        caller,
        "z1",
        "p1",
        gateway="10.1.0.1",
        netmask="255.255.255.0",
        start_ip="10.1.0.10",
        end_ip="10.1.0.99",
    )
    create_cluster(caller, "p1", "c1")
    add_image_store(
        caller, "z1", "z1-sec1", url="nfs://192.0.2.10/export/sec1", capacity_bytes=4000 * GIB
    )
    create_storage_pool(
        caller, "c1-ps1", cluster_ref="c1", path=pool_path, capacity_bytes=1000 * GIB
    )
    add_hosts(
        caller,
        "c1",
        [
            HostSpec(
                name=f"h{i}",
                uri=f"test:///nodes/h{i}.xml",
                cpu_cores=16,
                cpu_mhz=2000,
                memory_bytes=64 * GIB,
                address=f"10.1.0.{20 + i}",
            )
            for i in range(hosts)
        ],
    )
    create_service_offering(caller, "Small", cpu_count=1, cpu_mhz=2000, memory_bytes=2 * GIB)
    demo.add_demo_vms(caller, vms)


def build_ipam(caller: Caller) -> None:
    """IPAM in build()'s zone z1: public range 198.51.100.10-.40 (VLAN 200), VNIs
    6000-6009, the admin's isolated networks blue (10.50.0.0/24, with a source NAT address
    and a second address) and red (10.51.0.0/24); VM vm-0001... gets a NIC on blue."""
    public.create_public_ip_range(
        caller,
        "z1",
        gateway="198.51.100.1",
        netmask="255.255.255.0",
        start_ip="198.51.100.10",
        end_ip="198.51.100.40",
        vlan="vlan://200",
    )
    vni.add_vni_range(caller, "z1", 6000, 6009)
    networks.create_isolated_network(caller, "z1", "blue", cidr="10.50.0.0/24")
    networks.create_isolated_network(caller, "z1", "red", cidr="10.51.0.0/24")
    public.associate_public_ip(caller, "z1", network_ref="blue")  # source NAT
    public.associate_public_ip(caller, "z1", network_ref="blue")


def freeze_times(cloud: Cloud) -> None:
    """Every host and VM created at FROZEN (snapshots show creation times)."""
    with cloud.db.write() as session:
        session.execute(update(Host).values(created=FROZEN))
        session.execute(update(VirtualMachine).values(created=FROZEN, power_state_updated=FROZEN))


async def settle(app: StratusApp, pilot: Pilot) -> None:
    """Let workers start and finish and their messages land (twice: loads start loads)."""
    for _ in range(2):
        await pilot.pause()
        # Not workers.wait_for_complete(): it raises for an exclusive worker that a newer
        # one replaced (cancelled), which is normal here.
        for _ in range(3000):
            if not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
                break
            await asyncio.sleep(0.01)
        await pilot.pause()


def console(cloud: Cloud, **config: Any) -> StratusApp:
    """A console on `cloud`, live refresh off unless `refresh_seconds` is given."""
    settings = replace(default_config(), **{"refresh_seconds": 0, **config})
    return StratusApp(cloud.admin, settings, clock=frozen_clock)


def run_console(
    cloud: Cloud,
    scenario: Callable[[StratusApp, Pilot], Awaitable[None]],
    *,
    size: tuple[int, int] = (120, 40),
    **config: Any,
) -> None:
    async def main() -> None:
        app = console(cloud, **config)
        async with app.run_test(size=size, notifications=True) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())


async def go(app: StratusApp, pilot: Pilot, command: str) -> None:
    """Type `:command` and Enter, and wait for the view to load."""
    await pilot.press("colon", *command, "enter")
    await settle(app, pilot)


def toasts(app: StratusApp) -> list[str]:
    return [toast.render().plain for toast in app.screen.query(Toast)]
