"""Host discovery: what a libvirt host is, read from libvirt, and adding it to a cluster.

`add_host_from_uri` connects, reads the facts and stores the host through
`topology.add_host` (which validates and records the audit event), so the rules for a
host are in one place. An unreachable URI, a hypervisor a KVM cluster cannot use, or a URI
already in the topology is refused with a typed error naming the URI, and nothing is
stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import libvirt
from sqlmodel import select

from engine import topology
from engine.context import Caller
from engine.errors import AlreadyExists, InvalidParameter
from engine.hosts.connections import HostConnection, is_simulated
from engine.hosts.errors import HostUnavailable
from engine.hosts.manager import HostManager
from engine.lookup import resolve
from engine.models import Cluster, Host, Hypervisor
from engine.validation import parse_host_uri

MIB = 2**20
# The libvirt driver types (virConnectGetType) each cluster hypervisor can manage. The
# test driver stands in for KVM on simulated hosts.
DRIVERS = {Hypervisor.KVM: ("QEMU", "TEST")}


@dataclass(frozen=True)
class HostFacts:
    uri: str
    hostname: str
    driver: str  # virConnectGetType: QEMU, TEST ...
    cpu_model: str
    cpu_sockets: int  # total over NUMA nodes
    cpu_cores: int  # total cores, all sockets
    cpu_threads: int  # per core
    cpu_mhz: int
    memory_bytes: int
    hypervisor_version: str
    libvirt_version: str


def version_text(number: int) -> str:
    """libvirt's packed version (major * 1,000,000 + minor * 1,000 + release) as 9.0.0."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def read_facts(hc: HostConnection) -> HostFacts:
    def read(conn: libvirt.virConnect) -> HostFacts:
        model, memory_mib, _cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
        try:
            # getInfo rounds memory to MiB; the node's own figure (KiB) is exact.
            memory = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS).get("total")
            memory_bytes = int(memory) * 1024 if memory else int(memory_mib) * MIB
        except libvirt.libvirtError:
            memory_bytes = int(memory_mib) * MIB
        all_sockets = max(1, int(sockets) * max(1, int(nodes)))
        return HostFacts(
            uri=hc.uri,
            hostname=conn.getHostname(),
            driver=conn.getType().upper(),
            cpu_model=str(model),
            cpu_sockets=all_sockets,
            cpu_cores=all_sockets * max(1, int(cores)),
            cpu_threads=max(1, int(threads)),
            cpu_mhz=int(mhz),
            memory_bytes=memory_bytes,
            hypervisor_version=version_text(conn.getVersion()),
            libvirt_version=version_text(conn.getLibVersion()),
        )

    return hc.call(read, what="read host facts")


def check_driver(uri: str, facts: HostFacts, hypervisor: str) -> None:
    """A KVM cluster takes QEMU hosts (and test-driver stand-ins), nothing else."""
    allowed = DRIVERS.get(Hypervisor(hypervisor), ())
    if facts.driver not in allowed:
        raise InvalidParameter(
            f"host {uri}: libvirt reports hypervisor {facts.driver}, but a {hypervisor} "
            f"cluster needs {' or '.join(allowed)}",
            field="uri",
        )


def _default_name(uri: str, facts: HostFacts) -> str:
    if is_simulated(uri):
        stem = uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".xml")
        return re.sub(r"[^A-Za-z0-9._-]", "-", stem) or facts.hostname
    return facts.hostname


def host_spec_from_facts(
    uri: str,
    facts: HostFacts,
    *,
    name: str | None = None,
    address: str | None = None,
    tags: Sequence[str] = (),
) -> topology.HostSpec:
    return topology.HostSpec(
        name=name or _default_name(uri, facts),
        uri=uri,
        address=address,
        tags=tuple(tags),
        cpu_sockets=facts.cpu_sockets,
        cpu_cores=facts.cpu_cores,
        cpu_mhz=facts.cpu_mhz,
        memory_bytes=facts.memory_bytes,
        cpu_model=facts.cpu_model[:255],
        hostname=facts.hostname[:255],
        hypervisor_version=facts.hypervisor_version,
        libvirt_version=facts.libvirt_version,
    )


def _refuse_known_uri(caller: Caller, label: str, uri: str) -> None:
    with caller.db.read() as session:
        taken = session.exec(select(Host.name).where(Host.uri == uri)).first()
    if taken is not None:
        raise AlreadyExists(
            f"{label}: URI {uri} is already in the topology as host '{taken}'", field="uri"
        )


def add_host_from_uri(
    caller: Caller,
    manager: HostManager,
    cluster_ref: str,
    uri: str,
    *,
    name: str | None = None,
    address: str | None = None,
    tags: Sequence[str] = (),
) -> Host:
    """Connect to `uri`, read its facts and add it to the cluster; the host is then Up."""
    label = f"host {uri!s}"
    uri = parse_host_uri(label, uri)
    label = f"host {uri}"
    with caller.db.read() as session:
        cluster = resolve(session, Cluster, cluster_ref, "cluster", field="cluster")
    _refuse_known_uri(caller, label, uri)
    # A probe connection outside the manager: a refused host leaves nothing behind.
    probe = HostConnection(uri, timeout=manager.timeout, connect_timeout=manager.timeout)
    try:
        try:
            facts = read_facts(probe)
        except HostUnavailable as exc:
            raise HostUnavailable(f"{label} is unreachable: {exc}") from None
    finally:
        probe.close()
    check_driver(uri, facts, cluster.hypervisor)
    spec = host_spec_from_facts(uri, facts, name=name, address=address, tags=tags)
    host = topology.add_host(caller, cluster.uuid, spec)
    manager.for_host(host)  # known from now on; it connects on first use
    return host
