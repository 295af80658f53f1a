"""A small cloud for the compute tests: one zone, one cluster of test-driver (or real)
hosts, a dir pool, an image store holding a real qcow2 template, a shared guest network
and a tiny offering; plus what the tests read back (volumes, NICs, claims, domains)."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import col, select

from engine import offerings, topology
from engine.bootstrap import Cloud
from engine.hosts import domains, storage
from engine.hosts.manager import HostManager
from engine.ipam.networks import create_shared_network
from engine.ipam.vni import add_vni_range
from engine.models import (
    GuestIpAddress,
    Host,
    ImageStore,
    IpAddressState,
    Nic,
    PlacementClaim,
    StoragePool,
    Template,
    VirtualMachine,
    Volume,
    Zone,
)
from engine.settings import update_setting
from engine.storage.templates import register_template
from tests.hosts_helpers import MIB, node_uri

TEMPLATE_SIZE = 32 * MIB


@dataclass
class ComputeWorld:
    cloud: Cloud
    zone: str
    hosts: list[Host]
    pool: StoragePool
    template: Template
    network: str
    offering: str


def make_template(cloud: Cloud, store: ImageStore, directory: Path, name: str = "tiny") -> Template:
    """A qcow2 made with qemu-img, registered through the storage service (checksum
    verified, image checked) onto the zone of `store`: Ready when this returns."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(TEMPLATE_SIZE)], check=True
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with cloud.db.read() as session:
        zone = session.get(Zone, store.zone_id)
        assert zone is not None
    return register_template(
        cloud.admin,
        name,
        zone=zone.name,
        source=path,
        checksum=f"sha256:{digest}",
        is_public=True,
    )


def make_compute_world(
    cloud: Cloud,
    root: Path,
    *,
    hosts: int = 2,
    uris: list[str] | None = None,
    memory_mib: int = 64,
    vni: int | None = None,
    instance_suffix: str | None = None,
) -> ComputeWorld:
    """zone z1 (Advanced) → pod rack-1 → cluster c1 → `hosts` test-driver hosts (or the
    given URIs), pool 'primary' over root/primary, image store over root/secondary with
    template 'tiny', shared network 'guest' 10.50.0.0/24 (.10-.20), offering 'tiny'."""
    admin = cloud.admin
    if instance_suffix is not None:  # domain names unique on a libvirtd shared by test runs
        update_setting(admin, "instance.name", instance_suffix)
    topology.create_zone(admin, "z1", dns1="8.8.8.8", guest_cidr="10.100.0.0/16")
    topology.create_pod(
        admin,
        "z1",
        "rack-1",
        gateway="10.1.1.1",
        netmask="255.255.255.0",
        start_ip="10.1.1.10",
        end_ip="10.1.1.100",
    )
    cluster = topology.create_cluster(admin, "rack-1", "c1")
    uris = uris or [node_uri(root, f"node{i}") for i in range(hosts)]
    added = topology.add_hosts(
        admin,
        cluster.uuid,
        [
            topology.HostSpec(
                name=f"h{i}", uri=uri, cpu_cores=8, cpu_mhz=2000, memory_bytes=16 * 2**30
            )
            for i, uri in enumerate(uris)
        ],
    )
    (root / "primary").mkdir(parents=True, exist_ok=True)
    pool = topology.create_storage_pool(
        admin,
        "primary",
        path=str(root / "primary"),
        cluster_ref=cluster.uuid,
        capacity_bytes=100 * 2**30,
    )
    (root / "secondary").mkdir(parents=True, exist_ok=True)
    store = topology.add_image_store(admin, "z1", "sec1", url=str(root / "secondary"))
    template = make_template(cloud, store, root / "secondary" / "template")
    if vni is not None:  # the network's NICs then plug into bridge brvx<vni>
        add_vni_range(admin, "z1", vni, vni, isolation="vlan")
    create_shared_network(
        admin,
        "z1",
        "guest",
        gateway="10.50.0.1",
        netmask="255.255.255.0",
        start_ip="10.50.0.10",
        end_ip="10.50.0.20",
        vni=vni,
    )
    offerings.create_service_offering(
        admin, "tiny", cpu_count=1, cpu_mhz=500, memory_bytes=memory_mib * MIB
    )
    del added
    return ComputeWorld(cloud, "z1", host_rows(cloud), pool, template, "guest", "tiny")


# --- what the tests read back ---------------------------------------------------------


def vm_by_name(cloud: Cloud, name: str) -> VirtualMachine:
    with cloud.db.read() as session:
        return session.exec(select(VirtualMachine).where(VirtualMachine.name == name)).one()


def live_volumes(cloud: Cloud, vm_id: int | None = None) -> list[Volume]:
    with cloud.db.read() as session:
        query = select(Volume).where(col(Volume.removed).is_(None))
        if vm_id is not None:
            query = query.where(Volume.vm_id == vm_id)
        return list(session.exec(query))


def nics(cloud: Cloud) -> list[Nic]:
    with cloud.db.read() as session:
        return list(session.exec(select(Nic)))


def taken_addresses(cloud: Cloud) -> list[str]:
    with cloud.db.read() as session:
        return list(
            session.exec(
                select(GuestIpAddress.address).where(GuestIpAddress.state != IpAddressState.FREE)
            )
        )


def claims(cloud: Cloud) -> list[PlacementClaim]:
    with cloud.db.read() as session:
        return list(session.exec(select(PlacementClaim)))


def host_rows(cloud: Cloud) -> list[Host]:
    with cloud.db.read() as session:
        return list(session.exec(select(Host).order_by(col(Host.id))))


def pool_row(cloud: Cloud) -> StoragePool:
    with cloud.db.read() as session:
        return session.exec(select(StoragePool)).one()


def host_usage(cloud: Cloud) -> list[tuple[int, int, int, int]]:
    """(cpu used, cpu reserved, memory used, memory reserved) per host."""
    return [
        (h.cpu_used_mhz, h.cpu_reserved_mhz, h.memory_used_bytes, h.memory_reserved_bytes)
        for h in host_rows(cloud)
    ]


def domains_everywhere(manager: HostManager, hosts: list[Host]) -> dict[str, list[str]]:
    """Domain names per host name (i-… ones: those Stratus made)."""
    found = {}
    for host in hosts:
        hc = manager.for_host(host)
        found[host.name] = sorted(n for n in domains.list_domains(hc) if n.startswith("i-"))
    return found


def pool_files(manager: HostManager, hosts: list[Host], pool: StoragePool) -> dict[str, list[str]]:
    """Volume names in the pool, as each host's libvirt sees them."""
    found = {}
    for host in hosts:
        hc = manager.for_host(host)
        storage.ensure_dir_pool(hc, pool.libvirt_pool_name, pool.path)
        found[host.name] = sorted(v.name for v in storage.list_volumes(hc, pool.libvirt_pool_name))
    return found


class DirectContext:
    """Runs a compute job function in the test's thread, recording steps in memory (used
    until the job runner is available on this branch)."""

    def __init__(
        self, cloud: Cloud, hosts: HostManager, resource_uuid: str, params: dict | None = None
    ) -> None:
        self.job_uuid = "direct"
        self.db = cloud.db
        self.caller = cloud.admin
        self.hosts = hosts
        self.resource_uuid = resource_uuid
        self.params = params or {}
        self.steps: list[tuple[str, dict]] = []
        self.messages: list[tuple[int, str]] = []

    def progress(self, percent: int, message: str) -> None:
        self.messages.append((percent, message))

    def record_step(self, step: str, **data: object) -> None:
        self.steps.append((step, dict(data)))
