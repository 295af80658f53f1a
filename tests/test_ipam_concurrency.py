"""Many allocators at once: processes on one SQLite file, and several engines (processes)
on one PostgreSQL database, never hand out an address (or a NIC address) twice."""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.bootstrap import open_cloud
from engine.ipam import networks, public, vni
from engine.models import Account, Nic, PublicIpAddress, VirtualMachine
from engine.topology import create_zone


def _allocator(
    url: str, worker: int, kind: str, count: int, target: str, start: Any, results: Any
) -> None:
    """Allocate `count` public addresses (or NICs) of zone/network `target`."""
    try:
        cloud = open_cloud(url, migrate=False)
        start.wait(60)
        got = []
        for i in range(count):
            if kind == "public":
                got.append(public.associate_public_ip(cloud.admin, target).address)
            else:
                with cloud.db.write() as session:
                    account = session.get(Account, cloud.admin.account_id)
                    vm = VirtualMachine(
                        name=f"w{worker}-{i}",
                        instance_name=f"i-{worker}-{i}-VM",
                        account_id=account.id,
                        domain_id=account.domain_id,  # type: ignore[union-attr]
                        zone_id=1,
                        cpu_count=1,
                        cpu_mhz=1000,
                        memory_bytes=2**30,
                    )
                    session.add(vm)
                    session.flush()
                    vm_uuid = vm.uuid
                got.append(networks.allocate_nic(cloud.admin, vm_uuid, target).address)
        cloud.db.dispose()
        results.put((worker, got))
    except BaseException:
        results.put((worker, traceback.format_exc()))
        raise


def _run(url: str, kind: str, workers: int, count: int, target: str) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_allocator, args=(url, w, kind, count, target, start, results))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    start.set()
    outcomes = dict(results.get(timeout=900) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    failures = {w: out for w, out in outcomes.items() if isinstance(out, str)}
    assert not failures, "\n".join(f"worker {w}:\n{tb}" for w, tb in failures.items())
    assert [proc.exitcode for proc in procs] == [0] * workers
    return [address for got in outcomes.values() for address in got]


@pytest.mark.slow
def test_eight_processes_on_one_sqlite_file_never_share_an_address(sqlite_url) -> None:
    """8 processes x 500 public addresses from one /20: 4,000 distinct, nothing locked."""
    cloud = open_cloud(sqlite_url)
    zone = create_zone(cloud.admin, "z1", dns1="8.8.8.8")
    public.create_public_ip_range(
        cloud.admin,
        "z1",
        gateway="198.18.0.1",
        netmask="20",
        start_ip="198.18.0.10",
        end_ip="198.18.15.254",
    )
    got = _run(sqlite_url, "public", workers=8, count=500, target=zone.uuid)
    assert len(got) == 4000
    assert len(set(got)) == 4000
    with cloud.db.read() as session:
        allocated = session.execute(
            select(func.count(func.distinct(PublicIpAddress.address))).where(
                PublicIpAddress.state == "Allocated"
            )
        ).scalar_one()
    assert allocated == 4000
    # Allocation is lowest-first, so exactly the first 4,000 addresses are taken.
    first_free = public.list_public_ips(cloud.db, state="Free", limit=1)[0]
    assert first_free.address == "198.18.15.170"
    cloud.db.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_several_engines_on_postgres_never_share_an_address(postgres_url) -> None:
    cloud = open_cloud(postgres_url)
    zone = create_zone(cloud.admin, "z1", dns1="8.8.8.8", guest_cidr="10.200.0.0/24")
    public.create_public_ip_range(
        cloud.admin,
        "z1",
        gateway="198.18.0.1",
        netmask="22",
        start_ip="198.18.0.10",
        end_ip="198.18.3.254",
    )
    vni.add_vni_range(cloud.admin, "z1", 100, 110, isolation="vlan")
    net = networks.create_isolated_network(cloud.admin, "z1", "net-a")
    addresses = _run(postgres_url, "public", workers=4, count=150, target=zone.uuid)
    assert len(addresses) == 600 and len(set(addresses)) == 600
    nic_addresses = _run(postgres_url, "nic", workers=4, count=50, target=net.uuid)
    assert len(nic_addresses) == 200 and len(set(nic_addresses)) == 200
    with cloud.db.read() as session:
        nics = session.execute(select(func.count()).select_from(Nic)).scalar_one()
    assert nics == 200
    cloud.db.dispose()
