"""Small topologies for placement tests, built through the topology services, plus direct
reads of what the database holds (claimed capacity per host and pool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.models import Account, AccountType, Host, PlacementClaim, StoragePool, VirtualMachine

GIB = 2**30


@dataclass
class Shape:
    cores: int = 8
    mhz: int = 2000
    memory: int = 16 * GIB
    tags: tuple[str, ...] = ()


@dataclass
class Layout:
    """pods -> clusters -> hosts; names p<i>, c<i>-<j>, h<i>-<j>-<k>."""

    zone: str = "eu-1"
    pods: int = 1
    clusters_per_pod: int = 1
    hosts_per_cluster: int = 2
    shape: Shape = field(default_factory=Shape)


def build(cloud: Cloud, layout: Layout | None = None, **kwargs: Any) -> Layout:
    layout = layout or Layout(**kwargs)
    admin = cloud.admin
    topology.create_zone(admin, layout.zone, dns1="8.8.8.8")
    for p in range(layout.pods):
        topology.create_pod(admin, layout.zone, f"p{p}", gateway=f"10.9.{p}.1",
                            netmask="255.255.255.0", start_ip=f"10.9.{p}.10",
                            end_ip=f"10.9.{p}.200")  # fmt: skip
        for c in range(layout.clusters_per_pod):
            cluster = topology.create_cluster(admin, f"p{p}", f"c{p}-{c}")
            s = layout.shape
            topology.add_hosts(
                admin,
                cluster.uuid,
                [
                    topology.HostSpec(
                        name=f"h{p}-{c}-{k}",
                        uri=f"test:///{layout.zone}/h{p}-{c}-{k}.xml",
                        cpu_cores=s.cores,
                        cpu_mhz=s.mhz,
                        memory_bytes=s.memory,
                        tags=s.tags,
                    )
                    for k in range(layout.hosts_per_cluster)
                ],
            )
    return layout


def offering(cloud: Cloud, name: str = "small", *, cpus: int = 1, mhz: int = 1000,
             memory: int = 2 * GIB, **kwargs: Any) -> str:  # fmt: skip
    offerings.create_service_offering(
        cloud.admin, name, cpu_count=cpus, cpu_mhz=mhz, memory_bytes=memory, **kwargs
    )
    return name


def hosts(cloud: Cloud) -> dict[str, Host]:
    with cloud.db.read() as session:
        return {h.name: h for h in session.execute(select(Host)).scalars()}


def pools(cloud: Cloud) -> dict[str, StoragePool]:
    with cloud.db.read() as session:
        return {p.name: p for p in session.execute(select(StoragePool)).scalars()}


def claims(cloud: Cloud) -> list[PlacementClaim]:
    with cloud.db.read() as session:
        return list(session.execute(select(PlacementClaim)).scalars())


def set_host(cloud: Cloud, name: str, **values: Any) -> None:
    """Write host columns directly (states, claimed capacity) and bump capacity_version,
    as every writer of those columns must."""
    with cloud.db.write() as session:
        result = session.execute(
            update(Host)
            .where(Host.name == name)
            .values(capacity_version=Host.capacity_version + 1, **values)
        )
        assert result.rowcount == 1


def account(cloud: Cloud, name: str) -> Account:
    with cloud.db.write() as session:
        admin = session.get(Account, cloud.admin.account_id)
        assert admin is not None
        row = Account(name=name, domain_id=admin.domain_id, account_type=AccountType.USER)
        session.add(row)
        session.flush()
        return row


def vm(
    cloud: Cloud,
    name: str,
    account_id: int | None = None,
    *,
    cpus: int = 1,
    mhz: int = 1000,
    memory: int = 2 * GIB,
    zone: str | None = None,
) -> VirtualMachine:
    """A VM row as the compute service would create it before placing it."""
    with cloud.db.write() as session:
        owner = session.get(Account, account_id or cloud.admin.account_id)
        assert owner is not None
        from engine.models import Zone

        query = select(Zone) if zone is None else select(Zone).where(Zone.name == zone)
        found = session.execute(query).scalars().first()
        assert found is not None
        row = VirtualMachine(name=name, instance_name=f"i-{name}", account_id=owner.id,
                             domain_id=owner.domain_id, zone_id=found.id, cpu_count=cpus,
                             cpu_mhz=mhz, memory_bytes=memory)  # fmt: skip
        session.add(row)
        session.flush()
        return row
