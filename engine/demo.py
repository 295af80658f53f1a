"""The demo datacenter: two zones of simulated KVM hosts, described by `data/demo.toml`.

`build_demo` creates the zones, pods, clusters, storage, hosts and offerings of the demo
through the ordinary topology and offering services (they validate and record the audit
events), hosts in bulk per cluster. Each host is a libvirt test-driver host,
`test:///<data dir>/demo/nodes/<zone>/<host>.xml`, and its node file is written here so that
the test driver reports that host's own CPUs and memory.

`hosts=N` scales the demo to exactly N hosts, shared out over the clusters by their weights
(the cluster's host count in the file). The demo is deterministic: host number i of a
cluster always has the same name and shape, whatever the total.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from time import perf_counter
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from sqlalchemy import bindparam, delete, insert, not_, update
from sqlmodel import col, func, select

from engine import offerings, paths, topology
from engine.context import Caller
from engine.demo_network import (
    build_demo_networks,
    give_demo_nics,
    remove_demo_nics,
    remove_zone_ipam,
)
from engine.errors import AlreadyExists, InUse, InvalidParameter
from engine.events import record_event
from engine.models import (
    Account,
    Host,
    HostStatus,
    HostTag,
    ImageFormat,
    ImageStore,
    PowerState,
    ServiceOffering,
    StoragePool,
    Template,
    TemplateState,
    VirtualMachine,
    VmState,
    Volume,
    VolumeState,
    VolumeType,
    Zone,
    new_uuid,
)

DEMO_FILE = "demo.toml"
# Beyond this a build takes minutes and writes more node files than a demo needs.
MAX_HOSTS = 100_000
# virNodeInfo.model is char[32]: the test driver refuses a longer model name.
MAX_CPU_MODEL = 31

MIB = 2**20
GIB = 2**30
TIB = 2**40

# Zone and cluster names become directory and file names of node files.
_PATH_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_REQUIRED = object()


# --- the description -------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A kind of server: what the test driver reports for a host of this shape."""

    name: str
    cpu_model: str
    sockets: int
    cores_per_socket: int
    mhz: int
    memory_bytes: int
    tags: tuple[str, ...] = ()

    @property
    def cpu_cores(self) -> int:
        """Total cores over all sockets, as the host table stores them."""
        return self.sockets * self.cores_per_socket

    def node_xml(self) -> bytes:
        """The test driver's node file: one NUMA node, one thread per core, memory in KiB."""
        return (
            "<?xml version='1.0'?>\n"
            "<node>\n"
            "  <cpu>\n"
            f"    <mhz>{self.mhz}</mhz>\n"
            f"    <model>{escape(self.cpu_model)}</model>\n"
            f"    <active>{self.cpu_cores}</active>\n"
            "    <nodes>1</nodes>\n"
            f"    <sockets>{self.sockets}</sockets>\n"
            f"    <cores>{self.cores_per_socket}</cores>\n"
            "    <threads>1</threads>\n"
            "  </cpu>\n"
            f"  <memory>{self.memory_bytes // 1024}</memory>\n"
            "</node>\n"
        ).encode()


@dataclass(frozen=True)
class UnusualHost:
    """A host that is not simply Up and Enabled, for realism."""

    status: str = HostStatus.UP
    enabled: bool = True


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    weight: int
    shapes: tuple[Shape, ...]
    host_tags: tuple[str, ...]
    options: dict[str, Any]  # create_cluster keyword arguments
    pools: tuple[dict[str, Any], ...]  # create_storage_pool keyword arguments, with name
    unusual: dict[int, UnusualHost] = field(default_factory=dict)


@dataclass(frozen=True)
class PodPlan:
    name: str
    options: dict[str, Any]  # create_pod keyword arguments
    clusters: tuple[ClusterPlan, ...]


@dataclass(frozen=True)
class ZonePlan:
    name: str
    options: dict[str, Any]  # create_zone keyword arguments
    image_stores: tuple[dict[str, Any], ...]
    pools: tuple[dict[str, Any], ...]  # zone-wide primary storage
    pods: tuple[PodPlan, ...]

    @property
    def clusters(self) -> list[ClusterPlan]:
        return [c for p in self.pods for c in p.clusters]


@dataclass(frozen=True)
class DemoPlan:
    shapes: dict[str, Shape]
    zones: tuple[ZonePlan, ...]
    service_offerings: tuple[dict[str, Any], ...]
    disk_offerings: tuple[dict[str, Any], ...]

    @property
    def clusters(self) -> list[tuple[ZonePlan, ClusterPlan]]:
        return [(z, c) for z in self.zones for c in z.clusters]

    @property
    def default_hosts(self) -> int:
        return sum(c.weight for _, c in self.clusters)

    def host_counts(self, hosts: int | None = None) -> dict[tuple[str, str], int]:
        """Hosts per (zone, cluster): the file's counts, or `hosts` shared out by weight."""
        weights = [c.weight for _, c in self.clusters]
        counts = weights if hosts is None else share_out(check_host_total(hosts), weights)
        return {(z.name, c.name): n for (z, c), n in zip(self.clusters, counts, strict=True)}


def check_host_total(hosts: object) -> int:
    if isinstance(hosts, bool) or not isinstance(hosts, int):
        raise InvalidParameter(
            f"demo: the host count must be a whole number, got {hosts!r}", field="hosts"
        )
    if hosts < 1:
        raise InvalidParameter(
            f"demo: the host count must be at least 1, got {hosts}", field="hosts"
        )
    if hosts > MAX_HOSTS:
        raise InvalidParameter(
            f"demo: the host count must be at most {MAX_HOSTS:,}, got {hosts:,}", field="hosts"
        )
    return hosts


def share_out(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights`, exactly, by largest remainder.

    Ties go to the earlier weight, so the result is deterministic; a zero weight gets 0.
    """
    whole = sum(weights)
    if whole <= 0:
        raise InvalidParameter("demo: every cluster has weight 0; nothing can hold hosts")
    counts = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(counts)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        counts[i] += 1
    return counts


class _Table:
    """A TOML table read key by key; keys left unread are typos and are reported."""

    def __init__(self, where: str, data: object) -> None:
        if not isinstance(data, dict):
            raise _bad(where, "must be a table")
        self.where = where
        self.data = data
        self.read: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.read.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise _bad(self.where, f"'{key}' is missing")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            value = None  # a bool is an int to isinstance; never accept it as a number
        if not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise _bad(self.where, f"'{key}' must be {names}, got {self.data[key]!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        if not all(isinstance(v, str) for v in values):
            raise _bad(self.where, f"'{key}' must be a list of strings")
        return tuple(values)

    def tables(self, key: str, what: str) -> list[_Table]:
        items = self.get(key, list, [])
        return [_Table(f"{self.where}, {what} #{i + 1}", item) for i, item in enumerate(items)]

    def pick(self, keys: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
        """The optional keys present, checked by type, as keyword arguments."""
        return {k: self.get(k, t) for k, t in keys.items() if k in self.data}

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise _bad(self.where, f"unknown key{'s' if len(unknown) > 1 else ''} {unknown}")


def _bad(where: str, message: str) -> InvalidParameter:
    return InvalidParameter(f"demo file data/{DEMO_FILE}: {where}: {message}")


def _safe_name(table: _Table, kind: str) -> str:
    name = table.get("name", str)
    if not _PATH_SAFE.match(name):
        raise _bad(
            table.where,
            f"{kind} name {name!r} must be letters, digits, '.', '_' and '-' (it names files)",
        )
    return name


def _capacity(table: _Table) -> int:
    tib = table.get("capacity_tib", (int, float), None)
    gib = table.get("capacity_gib", (int, float), None)
    if (tib is None) == (gib is None):
        raise _bad(table.where, "give exactly one of 'capacity_tib' and 'capacity_gib'")
    return int(tib * TIB) if tib is not None else int(gib * GIB)


_NUMBER = (int, float)
_POOL_KEYS = {
    "pool_type": str,
    "server": str,
    "overprovisioning_factor": _NUMBER,
    "capacity_disable_threshold": _NUMBER,
    "allocated_disable_threshold": _NUMBER,
    "enabled": bool,
}


def _pool(table: _Table) -> dict[str, Any]:
    pool = {
        "name": table.get("name", str),
        "path": table.get("path", str),
        "capacity_bytes": _capacity(table),
        "tags": list(table.strings("tags")),
        **table.pick(_POOL_KEYS),
    }
    table.done()
    return pool


def _shape(name: str, table: _Table) -> Shape:
    if not _PATH_SAFE.match(name):
        raise _bad(table.where, "a shape name must be letters, digits, '.', '_' and '-'")
    shape = Shape(
        name=name,
        cpu_model=table.get("cpu_model", str),
        sockets=table.get("sockets", int),
        cores_per_socket=table.get("cores_per_socket", int),
        mhz=table.get("mhz", int),
        memory_bytes=int(table.get("memory_gib", _NUMBER) * GIB),
        tags=table.strings("tags"),
    )
    table.done()
    if len(shape.cpu_model) > MAX_CPU_MODEL:
        raise _bad(table.where, f"cpu_model is longer than {MAX_CPU_MODEL} characters")
    if min(shape.sockets, shape.cores_per_socket, shape.mhz, shape.memory_bytes) < 1:
        raise _bad(table.where, "sockets, cores_per_socket, mhz and memory_gib must be positive")
    return shape


_CLUSTER_KEYS = {
    "cpu_overprovisioning_factor": _NUMBER,
    "mem_overprovisioning_factor": _NUMBER,
    "cpu_disable_threshold": _NUMBER,
    "mem_disable_threshold": _NUMBER,
    "enabled": bool,
}


def _cluster(table: _Table, shapes: dict[str, Shape]) -> ClusterPlan:
    name = _safe_name(table, "cluster")
    weight = table.get("hosts", int)
    if weight < 0:
        raise _bad(table.where, f"'hosts' must be 0 or more, got {weight}")
    shape_names = table.strings("shapes")
    if not shape_names:
        raise _bad(table.where, "'shapes' must name at least one shape")
    missing = [s for s in shape_names if s not in shapes]
    if missing:
        raise _bad(table.where, f"unknown shape(s) {missing}; defined: {sorted(shapes)}")
    unusual = {}
    for entry in table.tables("unusual_hosts", "unusual host"):
        number = entry.get("host", int)
        if number < 1:
            raise _bad(entry.where, f"'host' is a 1-based host number, got {number}")
        status = entry.get("status", str, HostStatus.UP)
        if status not in {s.value for s in HostStatus}:
            raise _bad(entry.where, f"status {status!r} is not a host status")
        unusual[number] = UnusualHost(status=status, enabled=entry.get("enabled", bool, True))
        entry.done()
    plan = ClusterPlan(
        name=name,
        weight=weight,
        shapes=tuple(shapes[s] for s in shape_names),
        host_tags=table.strings("host_tags"),
        options=table.pick(_CLUSTER_KEYS),
        pools=tuple(_pool(t) for t in table.tables("pools", "primary storage")),
        unusual=unusual,
    )
    table.done()
    return plan


def _pod(table: _Table, shapes: dict[str, Shape]) -> PodPlan:
    plan = PodPlan(
        name=table.get("name", str),
        options={
            "gateway": table.get("gateway", str),
            "start_ip": table.get("start_ip", str),
            **table.pick({"netmask": str, "end_ip": str, "cidr": str, "enabled": bool}),
        },
        clusters=tuple(_cluster(t, shapes) for t in table.tables("clusters", "cluster")),
    )
    table.done()
    return plan


_ZONE_KEYS = {
    "description": str,
    "dns2": str,
    "internal_dns1": str,
    "internal_dns2": str,
    "guest_cidr": str,
    "network_domain": str,
    "enabled": bool,
}


def _zone(table: _Table, shapes: dict[str, Shape]) -> ZonePlan:
    name = _safe_name(table, "zone")
    stores = []
    for store in table.tables("image_stores", "image store"):
        stores.append(
            {
                "name": store.get("name", str),
                "url": store.get("url", str),
                "capacity_bytes": _capacity(store),
            }
        )
        store.done()
    plan = ZonePlan(
        name=name,
        options={
            "network_type": table.get("network_type", str),
            "dns1": table.get("dns1", str),
            **table.pick(_ZONE_KEYS),
        },
        image_stores=tuple(stores),
        pools=tuple(_pool(t) for t in table.tables("pools", "zone-wide primary storage")),
        pods=tuple(_pod(t, shapes) for t in table.tables("pods", "pod")),
    )
    table.done()
    clusters = [c.name for c in plan.clusters]
    twice = sorted({c for c in clusters if clusters.count(c) > 1})
    if twice:
        # Host names start with the cluster name and name the node files of the zone.
        raise _bad(table.where, f"cluster names {twice} appear twice in the zone")
    return plan


def _offering(table: _Table, units: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """An offering's keyword arguments; `<x>_mib`/`<x>_gib` keys become byte counts."""
    result: dict[str, Any] = {}
    for key in list(table.data):
        value = table.get(key, (str, int, float, bool, list))
        for suffix, (target, unit) in units.items():
            if key == suffix:
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise _bad(table.where, f"'{key}' must be a number")
                key, value = target, int(value * unit)
        result[key] = value
    if "name" not in result:
        raise _bad(table.where, "'name' is missing")
    return result


def load_demo(text: str | None = None) -> DemoPlan:
    """Read and check the demo description (the shipped `data/demo.toml` by default)."""
    if text is None:
        text = resources.files("data").joinpath(DEMO_FILE).read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParameter(f"demo file data/{DEMO_FILE} is not valid TOML: {exc}") from None
    top = _Table("top level", raw)
    shapes_table = _Table("shapes", top.get("shapes", dict))
    shapes = {
        name: _shape(name, _Table(f"shape '{name}'", shapes_table.get(name, dict)))
        for name in list(shapes_table.data)
    }
    zones = tuple(_zone(t, shapes) for t in top.tables("zones", "zone"))
    if not zones:
        raise _bad("top level", "no zones")
    names = [z.name for z in zones]
    if len(set(names)) != len(names):
        raise _bad("top level", f"zone names repeat: {names}")
    plan = DemoPlan(
        shapes=shapes,
        zones=zones,
        service_offerings=tuple(
            _offering(t, {"memory_mib": ("memory_bytes", MIB)})
            for t in top.tables("service_offerings", "service offering")
        ),
        disk_offerings=tuple(
            _offering(t, {"size_gib": ("disk_size_bytes", GIB)})
            for t in top.tables("disk_offerings", "disk offering")
        ),
    )
    top.done()
    if plan.default_hosts < 1:
        raise _bad("top level", "the clusters hold no hosts (every 'hosts' is 0)")
    return plan


# --- building --------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSummary:
    zones: int
    pods: int
    clusters: int
    hosts: int
    storage_pools: int
    image_stores: int
    service_offerings: int
    disk_offerings: int
    seconds: float
    # Hosts left without a management address because a scaled build filled a pod's range.
    hosts_without_address: int = 0
    # Demo zones that were torn down first (replace=True).
    replaced_zones: tuple[str, ...] = ()
    # Running demo VMs (database rows) spread over the hosts.
    vms: int = 0

    def describe(self) -> str:
        """'2 zones, 5 pods, …' for a summary line."""
        counts = [
            (self.zones, "zone"),
            (self.pods, "pod"),
            (self.clusters, "cluster"),
            (self.hosts, "host"),
            (self.vms, "VM"),
            (self.storage_pools, "storage pool"),
            (self.image_stores, "image store"),
            (self.service_offerings, "service offering"),
            (self.disk_offerings, "disk offering"),
        ]
        parts = [f"{n} {noun}{'' if n == 1 else 's'}" for n, noun in counts]
        if self.hosts_without_address:
            parts.append(f"{self.hosts_without_address} without a management address")
        return ", ".join(parts)


def demo_dir() -> Path:
    return paths.data_dir().absolute() / "demo"


def nodes_dir() -> Path:
    """Where the node files of the simulated hosts live: `<dir>/<zone>/<host>.xml`."""
    return demo_dir() / "nodes"


def build_demo(
    caller: Caller,
    *,
    hosts: int | None = None,
    replace: bool = False,
    vms: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Create the demo datacenter; with `hosts`, scaled to exactly that many hosts.

    A database that already has a demo zone raises AlreadyExists, unless `replace` is set:
    then the demo zones (and only they) are torn down first. A build that fails part-way
    removes what it created.
    """
    started = perf_counter()
    say = progress or (lambda _line: None)
    plan = load_demo()
    counts = plan.host_counts(hosts)
    present = _present_zones(caller, [z.name for z in plan.zones])
    if present and not replace:
        raise AlreadyExists(
            f"zone '{present[0]}' already exists: the demo is already built; "
            "use --replace to rebuild it",
            field="zone",
        )
    if present:
        removed = teardown_demo(caller, present)
        say(
            f"removed the old demo: {len(present)} zone{'s' if len(present) > 1 else ''}, "
            f"{removed} hosts ({perf_counter() - started:.1f} s)"
        )

    built: list[str] = []
    totals = dict.fromkeys(("pods", "clusters", "hosts", "pools", "stores", "no_address"), 0)
    node_files = _NodeFiles(demo_dir() / "shapes")
    try:
        for zone in plan.zones:
            zone_started = perf_counter()
            _build_zone(caller, zone, counts, totals, built, node_files)
            n_hosts = sum(counts[(zone.name, c.name)] for c in zone.clusters)
            say(
                f"zone '{zone.name}' ({zone.options['network_type']}): {len(zone.pods)} pods, "
                f"{len(zone.clusters)} clusters, {n_hosts} hosts "
                f"({perf_counter() - zone_started:.1f} s)"
            )
        build_demo_networks(caller, built, say)
        service, disk = _build_offerings(caller, plan, say)
        wanted_vms = DEMO_VMS_PER_HOST * totals["hosts"] if vms is None else vms
        made_vms = add_demo_vms(caller, wanted_vms, progress=say)
    except Exception:
        # Undo what this build created; the original error is the one to report.
        with suppress(Exception):
            teardown_demo(caller, built)
        node_files.remove_written()
        raise
    if totals["no_address"]:
        say(f"{totals['no_address']} hosts have no management address (pod ranges are full)")
    summary = DemoSummary(
        zones=len(plan.zones),
        pods=totals["pods"],
        clusters=totals["clusters"],
        hosts=totals["hosts"],
        storage_pools=totals["pools"],
        image_stores=totals["stores"],
        service_offerings=service,
        disk_offerings=disk,
        seconds=perf_counter() - started,
        hosts_without_address=totals["no_address"],
        replaced_zones=tuple(present),
        vms=made_vms,
    )
    say(
        f"demo built: {summary.zones} zones, {summary.pods} pods, {summary.clusters} clusters, "
        f"{summary.hosts} hosts in {summary.seconds:.1f} s"
    )
    return summary


def _present_zones(caller: Caller, names: list[str]) -> list[str]:
    with caller.db.read() as session:
        found = set(session.exec(select(Zone.name).where(col(Zone.name).in_(names))))
    return [n for n in names if n in found]


def _placeholders(text: str) -> str:
    return text.replace("{demo}", str(demo_dir()))


def _build_zone(
    caller: Caller,
    plan: ZonePlan,
    counts: dict[tuple[str, str], int],
    totals: dict[str, int],
    built: list[str],
    node_files: _NodeFiles,
) -> None:
    zone = topology.create_zone(caller, plan.name, **plan.options)
    built.append(zone.name)
    for store in plan.image_stores:
        url = _placeholders(store["url"])
        if url.startswith("/"):
            Path(url).mkdir(parents=True, exist_ok=True)
        topology.add_image_store(
            caller, zone.uuid, store["name"], url=url, capacity_bytes=store["capacity_bytes"]
        )
        totals["stores"] += 1
    for pool in plan.pools:
        _create_pool(caller, pool, zone_ref=zone.uuid)
        totals["pools"] += 1
    node_dir = nodes_dir() / zone.name
    node_dir.mkdir(parents=True, exist_ok=True)
    uri_prefix = "test://" + quote(str(node_dir)) + "/"
    domain = plan.options.get("network_domain")
    for pod_plan in plan.pods:
        pod = topology.create_pod(caller, zone.uuid, pod_plan.name, **pod_plan.options)
        totals["pods"] += 1
        addresses = _management_addresses(pod.start_ip, pod.end_ip)
        for cluster_plan in pod_plan.clusters:
            cluster = topology.create_cluster(
                caller, pod.uuid, cluster_plan.name, **cluster_plan.options
            )
            totals["clusters"] += 1
            for pool in cluster_plan.pools:
                _create_pool(caller, pool, cluster_ref=cluster.uuid)
                totals["pools"] += 1
            count = counts[(plan.name, cluster_plan.name)]
            specs, files = _host_specs(cluster_plan, count, uri_prefix, domain, addresses)
            node_files.write(node_dir, files)
            topology.add_hosts(caller, cluster.uuid, specs)
            totals["hosts"] += count
            totals["no_address"] += sum(1 for s in specs if s.address is None)


def _create_pool(caller: Caller, pool: dict[str, Any], **where: str) -> None:
    options = dict(pool)
    name = options.pop("name")
    options["path"] = _placeholders(options["path"])
    if options.get("pool_type", "dir") == "dir":
        Path(options["path"]).mkdir(parents=True, exist_ok=True)
    topology.create_storage_pool(caller, name, **options, **where)


def _management_addresses(start_ip: str, end_ip: str) -> Iterator[str]:
    """The pod's management range in order; its clusters' hosts take addresses from it."""
    first = int(ipaddress.IPv4Address(start_ip))
    last = int(ipaddress.IPv4Address(end_ip))
    return (str(ipaddress.IPv4Address(n)) for n in range(first, last + 1))


def _host_specs(
    plan: ClusterPlan,
    count: int,
    uri_prefix: str,
    domain: str | None,
    addresses: Iterator[str],
) -> tuple[list[topology.HostSpec], list[tuple[str, Shape]]]:
    """The cluster's hosts, and the (node file name, shape) of each."""
    width = max(3, len(str(count)))
    tags = [tuple(sorted({*shape.tags, *plan.host_tags})) for shape in plan.shapes]
    normal = UnusualHost()
    specs, files = [], []
    for number in range(1, count + 1):
        name = f"{plan.name}-h{number:0{width}d}"
        which = (number - 1) % len(plan.shapes)
        shape = plan.shapes[which]
        files.append((f"{name}.xml", shape))
        state = plan.unusual.get(number, normal)
        specs.append(
            topology.HostSpec(
                name=name,
                uri=f"{uri_prefix}{quote(name)}.xml",
                cpu_cores=shape.cpu_cores,
                cpu_mhz=shape.mhz,
                memory_bytes=shape.memory_bytes,
                cpu_sockets=shape.sockets,
                address=next(addresses, None),
                tags=tags[which],
                cpu_model=shape.cpu_model,
                hostname=f"{name}.{domain}" if domain else name,
                status=state.status,
                enabled=state.enabled,
            )
        )
    return specs, files


class _NodeFiles:
    """Writes node files: one real file per shape, and per host a hard link to it.

    Every host of a shape has the same node XML, and creating ten thousand inodes is what
    makes writing ten thousand small files slow: on this project's 2-core test machine,
    under load, plain writes took 4 to 7 s per 10,000 files and hard links 0.2 s. Each host
    still has its own path (its URI). A shape's file is replaced, never rewritten in place,
    so links made from an older version keep their content; nothing else writes node files.
    Where hard links are not possible (another filesystem, the link limit) a host gets a
    plain copy.
    """

    def __init__(self, shapes_dir: Path) -> None:
        self.shapes_dir = shapes_dir
        self._sources: dict[str, str] = {}
        self.written: list[str] = []

    def _source(self, shape: Shape) -> str:
        source = self._sources.get(shape.name)
        if source is None:
            self.shapes_dir.mkdir(parents=True, exist_ok=True)
            source = str(self.shapes_dir / f"{shape.name}.xml")
            _write_file(f"{source}.new", shape.node_xml())
            os.replace(f"{source}.new", source)
            self._sources[shape.name] = source
        return source

    def write(self, directory: Path, files: list[tuple[str, Shape]]) -> None:
        for name, shape in files:
            path = f"{directory}/{name}"
            source = self._source(shape)
            with suppress(FileNotFoundError):
                os.unlink(path)  # a leftover may link an older shape file: never write into it
            try:
                os.link(source, path)
            except OSError:
                _write_file(path, shape.node_xml())
            self.written.append(path)

    def remove_written(self) -> None:
        for path in self.written:
            with suppress(OSError):
                os.unlink(path)


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _build_offerings(caller: Caller, plan: DemoPlan, say: Callable[[str], None]) -> tuple[int, int]:
    """Create the offerings the database lacks; ones with the same name are kept as they are."""
    have = {o.name for o in offerings.list_service_offerings(caller)}
    created_service = 0
    for spec in plan.service_offerings:
        if spec["name"] not in have:
            offerings.create_service_offering(caller, **spec)
            created_service += 1
    have = {o.name for o in offerings.list_disk_offerings(caller)}
    created_disk = 0
    for spec in plan.disk_offerings:
        if spec["name"] not in have:
            offerings.create_disk_offering(caller, **spec)
            created_disk += 1
    service, disk = len(plan.service_offerings), len(plan.disk_offerings)
    say(
        f"offerings: {service} service ({created_service} created, "
        f"{service - created_service} already there), {disk} disk ({created_disk} created, "
        f"{disk - created_disk} already there)"
    )
    return service, disk


# --- tearing down ----------------------------------------------------------------------


def teardown_demo(caller: Caller, zone_names: Sequence[str]) -> int:
    """Remove the named demo zones bottom-up; returns how many hosts went.

    The hosts go in one bulk transaction with one audit event per zone (the demo owns
    them); storage, clusters, pods and zones go through their delete services. Refuses,
    before changing anything, when a zone holds a host that is not a simulated one, a host
    or pool that carries VMs, or an image store with data. Offerings are kept: they are
    global and other zones may use them.
    """
    if not zone_names:
        return 0
    with caller.db.write() as session:
        zones = list(session.exec(select(Zone).where(col(Zone.name).in_(list(zone_names)))))
        ids = [z.id for z in zones]
        names = {z.id: z.name for z in zones}
        in_zones = col(Host.zone_id).in_(ids)
        foreign = session.exec(
            select(Host.zone_id, Host.name, Host.uri)
            .where(in_zones, not_(col(Host.uri).startswith("test:")))
            .limit(1)
        ).first()
        if foreign is not None:
            raise InUse(
                f"zone '{names[foreign[0]]}' has host '{foreign[1]}' ({foreign[2]}), which is "
                "not a simulated demo host: not tearing the demo down; remove that host first"
            )
        _remove_demo_vms(session, ids)  # the demo's own VMs go with it
        remove_zone_ipam(session, ids)  # addresses and networks before their zones
        claimed = (
            Host.cpu_used_mhz
            + Host.cpu_reserved_mhz
            + Host.memory_used_bytes
            + Host.memory_reserved_bytes
        )
        busy = session.exec(
            select(Host.zone_id, Host.name).where(in_zones, claimed > 0).limit(1)
        ).first()
        if busy is not None:
            raise InUse(
                f"zone '{names[busy[0]]}': host '{busy[1]}' still carries VMs: "
                "not tearing the demo down; stop or destroy them first"
            )
        full = (
            session.exec(
                select(StoragePool.zone_id, StoragePool.name)
                .where(col(StoragePool.zone_id).in_(ids), StoragePool.allocated_bytes > 0)
                .limit(1)
            ).first()
            or session.exec(
                select(ImageStore.zone_id, ImageStore.name)
                .where(col(ImageStore.zone_id).in_(ids), ImageStore.used_bytes > 0)
                .limit(1)
            ).first()
        )
        if full is not None:
            raise InUse(
                f"zone '{names[full[0]]}': storage '{full[1]}' still holds data: "
                "not tearing the demo down; delete its volumes, templates or snapshots first"
            )
        per_zone = dict(
            session.exec(
                select(Host.zone_id, func.count()).where(in_zones).group_by(Host.zone_id)
            ).all()
        )
        uris = list(session.exec(select(Host.uri).where(in_zones)))
        no_sync = {"synchronize_session": False}
        session.execute(
            delete(HostTag).where(col(HostTag.host_id).in_(select(Host.id).where(in_zones))),
            execution_options=no_sync,
        )
        session.execute(delete(Host).where(in_zones), execution_options=no_sync)
        for zone in zones:
            if per_zone.get(zone.id):
                record_event(
                    session,
                    caller,
                    "HOST.DELETE",
                    "Zone",
                    zone,
                    f"removed {per_zone[zone.id]} demo hosts (demo teardown)",
                )
    for zone in zones:
        for pool in topology.list_storage_pools(caller, zone_ref=zone.uuid):
            topology.delete_storage_pool(caller, pool.uuid)
        for store in topology.list_image_stores(caller, zone.uuid):
            topology.delete_image_store(caller, store.uuid)
        for cluster in topology.list_clusters(caller, zone_ref=zone.uuid):
            topology.delete_cluster(caller, cluster.uuid)
        for pod in topology.list_pods(caller, zone.uuid):
            topology.delete_pod(caller, pod.uuid)
        topology.delete_zone(caller, zone.uuid)
    _remove_node_files(uris)
    return len(uris)


def _remove_node_files(uris: list[str]) -> None:
    """Delete the node files the removed hosts used, if they are the demo's own."""
    root = nodes_dir()
    dirs = set()
    for uri in uris:
        path = Path(unquote(urlsplit(uri).path))
        if path.parent.parent == root:
            path.unlink(missing_ok=True)
            dirs.add(path.parent)
    for directory in dirs:
        with suppress(OSError):
            directory.rmdir()  # only when empty


# --- demo VMs --------------------------------------------------------------------------
# Rows only: the VMs exist in the database (Running on their hosts, with ROOT volumes and
# the host capacity they claim), not on any hypervisor. They give the console and the
# placement code realistic numbers to show and to work around; `teardown_demo` removes
# them with their zones.

DEMO_VMS_PER_HOST = 3
DEMO_VM_PREFIX = "demo-"  # instance names of demo VMs start with it
DEMO_TEMPLATES = (
    ("demo-ubuntu-22.04", "Ubuntu 22.04 (64-bit)", 20 * GIB),
    ("demo-rocky-9", "Rocky Linux 9 (64-bit)", 30 * GIB),
)
# Offerings the demo VMs use in turn (names from data/demo.toml); missing ones are skipped.
DEMO_VM_OFFERINGS = ("Tiny", "Small", "Medium", "Small")
DEMO_VM_ROLES = ("web", "api", "db", "cache", "batch", "ci")
_VM_CHUNK = 20_000


def add_demo_vms(
    caller: Caller, count: int, *, progress: Callable[[str], None] | None = None
) -> int:
    """Insert `count` Running VMs spread over the Up hosts, in bulk; returns how many.

    Each VM takes its offering's CPU and memory on its host (cpu_used_mhz,
    memory_used_bytes, capacity_version bumped), never beyond the host's physical
    capacity, and gets a ROOT volume on its cluster's primary storage (or the zone's).
    One audit event records the batch. Hosts that are full are skipped; when every host
    is full fewer VMs are inserted than asked.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidParameter(f"demo VMs: count must be a whole number >= 0, not {count!r}")
    if count > 10 * MAX_HOSTS:
        raise InvalidParameter(f"demo VMs: at most {10 * MAX_HOSTS} VMs, not {count}")
    say = progress or (lambda _line: None)
    started = perf_counter()
    with caller.db.write() as session:
        offers = _demo_offerings(session)
        if count and not offers:
            raise InvalidParameter(
                "demo VMs: none of the service offerings "
                f"{', '.join(DEMO_VM_OFFERINGS)} exists; build the demo first"
            )
        templates = _demo_templates(session, caller)
        hosts = session.execute(
            select(
                Host.id,
                Host.zone_id,
                Host.pod_id,
                Host.cluster_id,
                Host.cpu_mhz * Host.cpu_cores - Host.cpu_used_mhz - Host.cpu_reserved_mhz,
                Host.memory_bytes - Host.memory_used_bytes - Host.memory_reserved_bytes,
            )
            .where(Host.status == HostStatus.UP, Host.resource_state == "Enabled")
            .order_by(Host.id)
        ).all()
        pools = _demo_pools(session)
        next_id = int(session.execute(select(func.max(VirtualMachine.id))).scalar() or 0) + 1
        volume_id = int(session.execute(select(func.max(Volume.id))).scalar() or 0) + 1
        free = {h[0]: [int(h[4]), int(h[5])] for h in hosts}
        claimed: dict[int, list[int]] = {}
        allocated: dict[int, int] = {}
        vms: list[dict[str, Any]] = []
        volumes: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        account_id = caller.account_id or _admin_account(session)
        domain_id = caller.domain_id or 1
        full_hosts = 0
        turn = 0
        while len(vms) < count and hosts and full_hosts < len(hosts):
            host = hosts[turn % len(hosts)]
            offer = offers[len(vms) % len(offers)]
            turn += 1
            cpu = offer.cpu_count * offer.cpu_mhz
            room = free[host[0]]
            if room[0] < cpu or room[1] < offer.memory_bytes:
                full_hosts += 1
                continue
            full_hosts = 0
            room[0] -= cpu
            room[1] -= offer.memory_bytes
            used = claimed.setdefault(host[0], [0, 0])
            used[0] += cpu
            used[1] += offer.memory_bytes
            vm_id = next_id + len(vms)
            number = len(vms) + 1
            template_id, template_size = templates[number % len(templates)]
            name = f"{DEMO_VM_ROLES[number % len(DEMO_VM_ROLES)]}-{number:06d}"
            vms.append(
                {
                    "id": vm_id,
                    "uuid": new_uuid(),
                    "name": name,
                    "display_name": name,
                    "instance_name": f"{DEMO_VM_PREFIX}i-{account_id}-{vm_id}-VM",
                    "account_id": account_id,
                    "domain_id": domain_id,
                    "zone_id": host[1],
                    "pod_id": host[2],
                    "cluster_id": host[3],
                    "host_id": host[0],
                    "last_host_id": host[0],
                    "service_offering_id": offer.id,
                    "template_id": template_id,
                    "cpu_count": offer.cpu_count,
                    "cpu_mhz": offer.cpu_mhz,
                    "memory_bytes": offer.memory_bytes,
                    "state": VmState.RUNNING,
                    "power_state": PowerState.POWER_ON,
                    "power_state_updated": now,
                    "ha_enabled": offer.offer_ha,
                    "update_count": 0,
                    "created": now,
                }
            )
            pool_id = pools.get(("cluster", host[3])) or pools.get(("zone", host[1]))
            if pool_id is not None:
                allocated[pool_id] = allocated.get(pool_id, 0) + template_size
            volumes.append(
                {
                    "id": volume_id + len(volumes),
                    "uuid": new_uuid(),
                    "name": f"ROOT-{vm_id}",
                    "account_id": account_id,
                    "domain_id": domain_id,
                    "zone_id": host[1],
                    "pool_id": pool_id,
                    "vm_id": vm_id,
                    "device_id": 0,
                    "volume_type": VolumeType.ROOT,
                    "template_id": template_id,
                    "size_bytes": template_size,
                    "format": ImageFormat.QCOW2,
                    "path": f"ROOT-{vm_id}.qcow2",
                    "state": VolumeState.READY,
                    "update_count": 0,
                    "created": now,
                }
            )
        connection = session.connection()
        for start in range(0, len(vms), _VM_CHUNK):
            # Core executemany: no ORM objects for a hundred thousand rows.
            connection.execute(insert(_vm_table), vms[start : start + _VM_CHUNK])
            connection.execute(insert(_volume_table), volumes[start : start + _VM_CHUNK])
        if claimed:
            connection.execute(
                _claim(+1), [{"host": h, "cpu": c, "memory": m} for h, (c, m) in claimed.items()]
            )
        if allocated:
            connection.execute(
                _allocate(+1), [{"pool": p, "size": s} for p, s in allocated.items()]
            )
        with_nics = give_demo_nics(session, vms, now)
        if vms:
            record_event(
                session,
                caller,
                "VM.CREATE",
                "VirtualMachine",
                None,
                f"demo: {len(vms)} Running VMs on {len(claimed)} hosts (database rows only)",
            )
    nic_note = (
        ""
        if with_nics == len(vms)
        else f"; {len(vms) - with_nics} without a NIC (demo networks full)"
    )
    say(
        f"{len(vms)} demo VMs on {len(claimed)} hosts, {with_nics} with a NIC{nic_note} "
        f"({perf_counter() - started:.1f} s)"
    )
    return len(vms)


_vm_table = VirtualMachine.__table__  # type: ignore[attr-defined]
_volume_table = Volume.__table__  # type: ignore[attr-defined]
_host_table = Host.__table__  # type: ignore[attr-defined]
_pool_table = StoragePool.__table__  # type: ignore[attr-defined]


def _claim(sign: int) -> Any:
    """Core UPDATE (executemany) adding (sign +1) or giving back (-1) a host's VM claims."""
    c = _host_table.c
    return (
        update(_host_table)
        .where(c.id == bindparam("host"))
        .values(
            cpu_used_mhz=c.cpu_used_mhz + sign * bindparam("cpu"),
            memory_used_bytes=c.memory_used_bytes + sign * bindparam("memory"),
            capacity_version=c.capacity_version + 1,
        )
    )


def _allocate(sign: int) -> Any:
    c = _pool_table.c
    return (
        update(_pool_table)
        .where(c.id == bindparam("pool"))
        .values(allocated_bytes=c.allocated_bytes + sign * bindparam("size"))
    )


def _demo_offerings(session: Any) -> list[Any]:
    found = {
        o.name: o
        for o in session.exec(
            select(ServiceOffering).where(col(ServiceOffering.name).in_(DEMO_VM_OFFERINGS))
        )
    }
    return [found[n] for n in DEMO_VM_OFFERINGS if n in found]


def _admin_account(session: Any) -> int:
    account = session.exec(select(Account.id).order_by(Account.id)).first()
    if account is None:
        raise InvalidParameter("demo VMs: the database has no account to own them")
    return int(account)


def _demo_templates(session: Any, caller: Caller) -> list[tuple[int, int]]:
    """The demo templates' (id, size), created Ready when missing."""
    account_id = caller.account_id or _admin_account(session)
    out = []
    for name, os_type, size in DEMO_TEMPLATES:
        template = session.exec(
            select(Template).where(Template.account_id == account_id, Template.name == name)
        ).first()
        if template is None:
            template = Template(
                name=name,
                display_text=f"{os_type} (demo)",
                account_id=account_id,
                domain_id=caller.domain_id or 1,
                os_type=os_type,
                size_bytes=size,
                physical_size_bytes=size // 4,
                is_public=True,
                featured=True,
                state=TemplateState.READY,
            )
            session.add(template)
            session.flush()
        out.append((int(template.id), int(template.size_bytes)))
    return out


def _demo_pools(session: Any) -> dict[tuple[str, int], int]:
    """The first pool of each cluster (cluster scope) and each zone (zone scope)."""
    pools: dict[tuple[str, int], int] = {}
    for pool_id, zone_id, cluster_id in session.execute(
        select(StoragePool.id, StoragePool.zone_id, StoragePool.cluster_id).order_by(StoragePool.id)
    ):
        if cluster_id is not None:
            pools.setdefault(("cluster", cluster_id), pool_id)
        else:
            pools.setdefault(("zone", zone_id), pool_id)
    return pools


def _remove_demo_vms(session: Any, zone_ids: list[int]) -> int:
    """Delete the demo VMs of these zones with their volumes, giving back what they took."""
    in_zones = col(VirtualMachine.zone_id).in_(zone_ids)
    demo = col(VirtualMachine.instance_name).startswith(DEMO_VM_PREFIX)
    claims = session.execute(
        select(
            VirtualMachine.host_id,
            func.sum(VirtualMachine.cpu_count * VirtualMachine.cpu_mhz),
            func.sum(VirtualMachine.memory_bytes),
            func.count(),
        )
        .where(in_zones, demo, VirtualMachine.host_id.is_not(None))  # type: ignore[union-attr]
        .group_by(VirtualMachine.host_id)
    ).all()
    if not claims:
        return 0
    vm_ids = select(VirtualMachine.id).where(in_zones, demo)
    sizes = session.execute(
        select(Volume.pool_id, func.sum(Volume.size_bytes))
        .where(col(Volume.vm_id).in_(vm_ids), Volume.pool_id.is_not(None))  # type: ignore[union-attr]
        .group_by(Volume.pool_id)
    ).all()
    no_sync = {"synchronize_session": False}
    remove_demo_nics(session, vm_ids)
    session.execute(delete(Volume).where(col(Volume.vm_id).in_(vm_ids)), execution_options=no_sync)
    session.execute(delete(VirtualMachine).where(in_zones, demo), execution_options=no_sync)
    connection = session.connection()
    connection.execute(
        _claim(-1), [{"host": h, "cpu": int(c), "memory": int(m)} for h, c, m, _n in claims]
    )
    if sizes:
        connection.execute(_allocate(-1), [{"pool": p, "size": int(s)} for p, s in sizes])
    return sum(int(n) for *_rest, n in claims)
