"""`stratus init --all-in-one`: this machine as a one-host cloud.

Checks that libvirtd answers, then makes sure that there are a zone, a pod, a cluster and
a host for `qemu:///system` (its facts read from libvirt), a dir pool as primary storage
(defined and started in libvirt too), a directory as secondary storage and the guest
bridge. Each step first looks for what it would create, so a second run changes nothing
and says so. The topology services do the validation and write the audit events.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import psutil
from sqlmodel import select

from engine import topology
from engine.context import Caller
from engine.hosts.connections import HostConnection, is_simulated
from engine.hosts.errors import HostUnavailable
from engine.hosts.facts import check_driver, host_spec_from_facts, read_facts
from engine.hosts.images import ensure_secondary_layout
from engine.hosts.manager import HostManager
from engine.hosts.storage import ensure_dir_pool, sync_pool_capacity
from engine.models import Cluster, Host, ImageStore, Pod, StoragePool, Zone

DEFAULT_URI = "qemu:///system"
DEFAULT_BRIDGE = "cloudbr0"
FALLBACK_NETWORK = ipaddress.IPv4Network("192.168.100.0/24")


@dataclass
class AllInOneResult:
    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    host_uuid: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.created)

    def describe(self) -> str:
        if not self.created:
            return "this machine is already an all-in-one cloud; nothing changed"
        return "created " + ", ".join(self.created)


def default_storage_root() -> Path:
    # qemu runs as libvirt-qemu and must reach the disks: not under root's home.
    if os.geteuid() == 0:
        return Path("/var/lib/stratus")
    from engine import paths

    return paths.data_dir()


def _default_gateway() -> ipaddress.IPv4Address | None:
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            raw = int(fields[2], 16)
            return ipaddress.IPv4Address(socket.ntohl(raw))
    return None


def local_network() -> tuple[str, str, str | None]:
    """(gateway, pod CIDR, this host's address) from the interface of the default route."""
    gateway = _default_gateway()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family != socket.AF_INET or not addr.netmask:
                continue
            iface = ipaddress.IPv4Interface(f"{addr.address}/{addr.netmask}")
            network = iface.network
            if iface.ip.is_loopback or not 8 <= network.prefixlen <= 30:
                continue
            if gateway is not None and gateway in network and gateway != iface.ip:
                return str(gateway), str(network), str(iface.ip)
    hosts = list(FALLBACK_NETWORK.hosts())
    return str(hosts[0]), str(FALLBACK_NETWORK), None


def _dns() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                ip = ipaddress.ip_address(parts[1])
                if ip.version == 4 and not ip.is_loopback:
                    return str(ip)
    except (OSError, ValueError):
        pass
    return "8.8.8.8"


def init_all_in_one(
    caller: Caller,
    manager: HostManager,
    *,
    uri: str = DEFAULT_URI,
    zone_name: str = "local",
    pod_name: str = "pod-1",
    cluster_name: str = "cluster-1",
    primary_path: str | None = None,
    secondary_path: str | None = None,
    bridge: str = DEFAULT_BRIDGE,
    netns: str | None = None,
    ensure_bridge: Callable[..., Any] | None = None,
) -> AllInOneResult:
    result = AllInOneResult()
    root = default_storage_root()
    primary = primary_path or str(root / "primary")
    secondary = secondary_path or str(root / "secondary")

    # 1. libvirtd must answer before anything is written.
    probe = HostConnection(uri, timeout=manager.timeout, connect_timeout=manager.timeout)
    try:
        facts = read_facts(probe)
    except HostUnavailable as exc:
        raise HostUnavailable(
            f"all-in-one: libvirtd does not answer at {uri} ({exc}); start it "
            "(systemctl start libvirtd, or libvirtd -d) and run this again"
        ) from None
    finally:
        probe.close()

    # 2. zone, pod, cluster, host: reuse the host's own when it is already there.
    with caller.db.read() as session:
        host = session.exec(select(Host).where(Host.uri == uri)).first()
        cluster = session.get(Cluster, host.cluster_id) if host else None
    if host is not None and cluster is not None:
        result.present.append(f"host '{host.name}' ({uri})")
    else:
        cluster = _ensure_cluster(caller, result, zone_name, pod_name, cluster_name)
        check_driver(uri, facts, cluster.hypervisor)
        spec = host_spec_from_facts(uri, facts)
        host = topology.add_host(caller, cluster.uuid, spec)
        result.created.append(f"host '{host.name}' ({uri}, {facts.cpu_cores} cores)")
    result.host_uuid = host.uuid
    hc = manager.for_host(host)

    # 3. primary storage: the database row, then the libvirt pool over it.
    with caller.db.read() as session:
        pool = session.exec(
            select(StoragePool).where(
                StoragePool.cluster_id == cluster.id, StoragePool.path == primary
            )
        ).first()
    if pool is None:
        pool = topology.create_storage_pool(
            caller, "primary", path=primary, cluster_ref=cluster.uuid
        )
        result.created.append(f"primary storage 'primary' ({primary})")
    else:
        result.present.append(f"primary storage '{pool.name}'")
    existed = _pool_defined(hc, pool.libvirt_pool_name)
    ensure_dir_pool(hc, pool.libvirt_pool_name, primary)
    # A test-driver host keeps pools in memory only: its pool is re-made on every connect.
    if not existed and not is_simulated(uri):
        result.created.append(f"libvirt pool '{pool.libvirt_pool_name}'")
    sync_pool_capacity(caller.db, hc, pool.uuid)

    # 4. secondary storage.
    url = f"file://{secondary}"
    with caller.db.read() as session:
        store = session.exec(
            select(ImageStore).where(ImageStore.zone_id == cluster.zone_id, ImageStore.url == url)
        ).first()
    if store is None:
        topology.add_image_store(caller, _zone_uuid(caller, cluster), "secondary", url=url)
        result.created.append(f"secondary storage 'secondary' ({secondary})")
    else:
        result.present.append(f"secondary storage '{store.name}'")
    ensure_secondary_layout(secondary)

    # 5. the guest bridge.
    if ensure_bridge is None:
        from engine.hosts.network import ensure_bridge
    state = ensure_bridge(bridge, netns=netns)
    if getattr(state, "outcome", "unchanged") == "created":
        result.created.append(f"bridge {bridge}")
    else:
        result.present.append(f"bridge {bridge}")
    return result


def _zone_uuid(caller: Caller, cluster: Cluster) -> str:
    with caller.db.read() as session:
        zone = session.get(Zone, cluster.zone_id)
        assert zone is not None
        return zone.uuid


def _pool_defined(hc: HostConnection, name: str) -> bool:
    def look(conn: libvirt.virConnect) -> bool:
        try:
            conn.storagePoolLookupByName(name)
            return True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return False
            raise

    return hc.call(look, what=f"look up storage pool '{name}'")


def _ensure_cluster(
    caller: Caller, result: AllInOneResult, zone_name: str, pod_name: str, cluster_name: str
) -> Cluster:
    with caller.db.read() as session:
        zone = session.exec(select(Zone).where(Zone.name == zone_name)).first()
    if zone is None:
        zone = topology.create_zone(caller, zone_name, dns1=_dns())
        result.created.append(f"zone '{zone_name}'")
    else:
        result.present.append(f"zone '{zone_name}'")
    with caller.db.read() as session:
        pod = session.exec(select(Pod).where(Pod.zone_id == zone.id, Pod.name == pod_name)).first()
    if pod is None:
        gateway, cidr, address = local_network()
        network = ipaddress.IPv4Network(cidr)
        hosts = [ip for ip in network.hosts() if str(ip) != gateway]
        start = address or str(hosts[0])
        pod = topology.create_pod(
            caller, zone.uuid, pod_name, gateway=gateway, cidr=cidr, start_ip=start, end_ip=start
        )
        result.created.append(f"pod '{pod_name}' ({cidr})")
    else:
        result.present.append(f"pod '{pod_name}'")
    with caller.db.read() as session:
        cluster = session.exec(
            select(Cluster).where(Cluster.pod_id == pod.id, Cluster.name == cluster_name)
        ).first()
    if cluster is None:
        cluster = topology.create_cluster(caller, pod.uuid, cluster_name)
        result.created.append(f"cluster '{cluster_name}'")
    else:
        result.present.append(f"cluster '{cluster_name}'")
    return cluster
