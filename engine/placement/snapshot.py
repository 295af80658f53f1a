"""The in-memory picture of a zone's capacity that placement decides on.

One `Snapshot` per Database per process. It holds a `Catalog` (settings, zones, offerings,
accounts: small tables) and one `ZoneView` per zone that was asked for: every host as
parallel Python lists, grouped by cluster (hosts of a cluster are one contiguous slice), and
per-cluster sums, so that a decision looks at clusters, not at every host.

Freshness, cheaply:
- SQLite: `PRAGMA data_version` changes only when *another* connection commits. Our own
  claims go through our connection and update the view in place, so while it does not
  change the view is exact and costs nothing to check.
- When it changed (or always, on PostgreSQL) the small tables are re-read and the zone's
  host fingerprint (count and sum of `capacity_version`, which every capacity or state
  change bumps) is compared with what the view expects. On a difference only the hosts
  whose capacity_version moved are re-read; the view is rebuilt when hosts came or went,
  a cluster, pod, dedication or setting changed, or more than an eighth of the hosts moved.
A view that is stale anyway (a change landed after the check) is safe: every claim
re-checks its limits in SQL, and a lost race reloads the view before the next candidate.
"""

from __future__ import annotations

import bisect
import os
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.db import Database
from engine.models import AllocationState, ClaimState, HostStatus, ResourceState
from engine.placement.sql import Conn
from engine.settings import definition

SETTINGS = (
    "cpu.overprovisioning.factor",
    "mem.overprovisioning.factor",
    "storage.overprovisioning.factor",
    "cluster.cpu.allocated.capacity.disablethreshold",
    "cluster.memory.allocated.capacity.disablethreshold",
    "pool.storage.capacity.disablethreshold",
    "pool.storage.allocated.capacity.disablethreshold",
    "capacity.skipcounting.hours",
    "host.capacityType.to.order.clusters",
    "vm.deployment.planner",
    "vm.allocation.algorithm",
    "start.retry",
)
SKIPCOUNTING = "capacity.skipcounting.hours"


@dataclass
class Offering:
    id: int
    uuid: str
    name: str
    cpu_count: int
    cpu_mhz: int
    memory_bytes: int
    host_tags: frozenset[str]
    storage_tags: frozenset[str]
    planner: str | None
    active: bool


@dataclass
class DiskOfferingRow:
    id: int
    uuid: str
    name: str
    size_bytes: int
    customized: bool
    storage_tags: frozenset[str]


@dataclass
class AccountRow:
    id: int
    uuid: str
    name: str
    domain_id: int
    domain_path: str
    state: str


@dataclass
class Catalog:
    """Small tables every request needs, read together."""

    settings: dict[str, Any]
    zones: dict[int, tuple[str, str, str]]  # id -> (uuid, name, allocation_state)
    zone_ids: dict[str, int]  # name and uuid -> id
    offerings: dict[str, Offering]  # name and uuid -> offering
    disk_offerings: dict[str, DiskOfferingRow]
    domain_paths: dict[int, str]
    skip_overrides: dict[int, int]  # cluster id -> capacity.skipcounting.hours
    accounts: dict[int, AccountRow] = field(default_factory=dict)  # filled on demand


@dataclass
class ClusterView:
    index: int
    id: int
    uuid: str
    name: str
    pod_id: int
    pod_name: str
    pod_enabled: bool
    enabled: bool
    cpu_factor: float
    mem_factor: float
    cpu_threshold: float
    mem_threshold: float
    skip_seconds: int
    start: int = 0
    end: int = 0
    usable: list[int] = field(default_factory=list)  # host indices that are Up and Enabled
    cpu_total: float = 0.0  # sum of cores x MHz x factor over the cluster's hosts
    mem_total: float = 0.0
    cpu_alloc: int = 0  # sum of used + reserved
    mem_alloc: int = 0
    max_free_cpu: float = 0.0  # over usable hosts; a request larger than this cannot fit
    max_free_mem: float = 0.0
    tags: frozenset[str] = frozenset()  # every tag some usable host carries
    pools: list[int] = field(default_factory=list)  # cluster-scope pool indices
    owners: frozenset[Any] = frozenset()  # dedication owners of its hosts (None = shared)

    def cpu_util(self) -> float:
        return self.cpu_alloc / self.cpu_total if self.cpu_total else 1.0

    def mem_util(self) -> float:
        return self.mem_alloc / self.mem_total if self.mem_total else 1.0


@dataclass
class PoolView:
    index: int
    id: int
    uuid: str
    name: str
    cluster_id: int | None  # None: zone-wide
    up: bool
    status: str
    capacity: int
    used: int
    allocated: int
    factor: float
    capacity_threshold: float
    allocated_threshold: float
    tags: frozenset[str]

    def room(self) -> float:
        """Bytes that may still be allocated before the allocated threshold."""
        return self.capacity * self.factor * self.allocated_threshold - self.allocated

    def over_used(self) -> bool:
        return self.used > self.capacity * self.capacity_threshold

    def fits(self, size: int, planned: int = 0) -> bool:
        # The same arithmetic, in the same order, as the claim's SQL re-check.
        return (
            self.up
            and not self.over_used()
            and self.allocated + planned + size
            <= self.capacity * self.factor * self.allocated_threshold
        )


class ZoneView:
    """Every host of one zone as parallel lists, sorted by (cluster, id)."""

    def __init__(self, zone_id: int, uuid: str, name: str, enabled: bool) -> None:
        self.zone_id = zone_id
        self.uuid = uuid
        self.name = name
        self.enabled = enabled
        self.clusters: list[ClusterView] = []
        self.cluster_index: dict[int, int] = {}
        self.pools: list[PoolView] = []
        self.zone_pools: list[int] = []
        self.fingerprint: tuple[int, int] = (0, 0)
        self.structure: Any = None
        self.next_expiry: datetime | None = None
        self.dedicated = False  # any dedication in the zone at all
        self.generation = -1
        self.limits: dict[str, float] | None = None  # global factors for the claim SQL
        # hosts
        self.h_id: list[int] = []
        self.h_uuid: list[str] = []
        self.h_name: list[str] = []
        self.h_cluster: list[int] = []
        self.h_cores: list[int] = []
        self.h_mhz: list[int] = []
        self.h_cpu_cap: list[float] = []
        self.h_mem_cap: list[float] = []
        self.h_cpu_used: list[int] = []
        self.h_cpu_res: list[int] = []
        self.h_mem_used: list[int] = []
        self.h_mem_res: list[int] = []
        self.h_status: list[str] = []
        self.h_rstate: list[str] = []
        self.h_usable: list[bool] = []
        self.h_tags: list[frozenset[str]] = []
        self.h_version: list[int] = []  # capacity_version as last read (or written by us)
        self.h_owner: list[Any] = []
        self.host_index: dict[Any, int] = {}  # id, uuid and name -> index
        # clusters ordered by allocated fraction, kept sorted as claims land
        self.order_cpu: list[tuple[float, int]] = []
        self.order_mem: list[tuple[float, int]] = []

    @property
    def host_count(self) -> int:
        return len(self.h_id)

    def cpu_alloc(self, i: int) -> int:
        return self.h_cpu_used[i] + self.h_cpu_res[i]

    def mem_alloc(self, i: int) -> int:
        return self.h_mem_used[i] + self.h_mem_res[i]

    # --- keeping the view in step with claims -------------------------------------------

    def apply(self, i: int, d_cpu_used: int, d_cpu_res: int, d_mem_used: int, d_mem_res: int):
        """Record a change of one host's claimed capacity (ours, or read back after a race)."""
        c = self.clusters[self.h_cluster[i]]
        old_cpu, old_mem = c.cpu_util(), c.mem_util()
        old_free_cpu = self.h_cpu_cap[i] - self.h_cpu_used[i] - self.h_cpu_res[i]
        old_free_mem = self.h_mem_cap[i] - self.h_mem_used[i] - self.h_mem_res[i]
        self.h_cpu_used[i] += d_cpu_used
        self.h_cpu_res[i] += d_cpu_res
        self.h_mem_used[i] += d_mem_used
        self.h_mem_res[i] += d_mem_res
        c.cpu_alloc += d_cpu_used + d_cpu_res
        c.mem_alloc += d_mem_used + d_mem_res
        self._reorder(self.order_cpu, old_cpu, c.cpu_util(), c.index)
        self._reorder(self.order_mem, old_mem, c.mem_util(), c.index)
        if not self.h_usable[i]:
            return
        free_cpu = self.h_cpu_cap[i] - self.h_cpu_used[i] - self.h_cpu_res[i]
        free_mem = self.h_mem_cap[i] - self.h_mem_used[i] - self.h_mem_res[i]
        # Only a shrinking host that held a maximum forces a rescan of the cluster.
        if (free_cpu < old_free_cpu and old_free_cpu >= c.max_free_cpu) or (
            free_mem < old_free_mem and old_free_mem >= c.max_free_mem
        ):
            self._cluster_free(c)
        else:
            c.max_free_cpu = max(c.max_free_cpu, free_cpu)
            c.max_free_mem = max(c.max_free_mem, free_mem)

    @staticmethod
    def _reorder(order: list[tuple[float, int]], old: float, new: float, index: int) -> None:
        if old == new:
            return
        pos = bisect.bisect_left(order, (old, index))
        if pos < len(order) and order[pos] == (old, index):
            del order[pos]
        bisect.insort(order, (new, index))

    def _cluster_free(self, c: ClusterView) -> None:
        cpu = mem = 0.0
        for i in c.usable:
            free_cpu = self.h_cpu_cap[i] - self.h_cpu_used[i] - self.h_cpu_res[i]
            free_mem = self.h_mem_cap[i] - self.h_mem_used[i] - self.h_mem_res[i]
            cpu = max(cpu, free_cpu)
            mem = max(mem, free_mem)
        c.max_free_cpu, c.max_free_mem = cpu, mem

    def set_host(
        self,
        i: int,
        status: str,
        rstate: str,
        cpu_used: int,
        cpu_res: int,
        mem_used: int,
        mem_res: int,
        version: int,
    ) -> None:
        """Overwrite one host from a fresh row (after a lost race)."""
        self.h_version[i] = version
        self.apply(
            i,
            cpu_used - self.h_cpu_used[i],
            cpu_res - self.h_cpu_res[i],
            mem_used - self.h_mem_used[i],
            mem_res - self.h_mem_res[i],
        )
        usable = status == HostStatus.UP and rstate == ResourceState.ENABLED
        self.h_status[i], self.h_rstate[i] = status, rstate
        if usable != self.h_usable[i]:
            self.h_usable[i] = usable
            c = self.clusters[self.h_cluster[i]]
            c.usable = [j for j in range(c.start, c.end) if self.h_usable[j]]
            self._cluster_free(c)


class Snapshot:
    """The per-process, per-Database cache; all use is under `lock`."""

    def __init__(self, db: Database) -> None:
        self.conn = Conn(db)
        self.lock = self.conn.lock
        self.catalog: Catalog | None = None
        self.zones: dict[int, ZoneView] = {}
        self.data_version: int | None = None
        self.pid = os.getpid()
        # Bumped whenever something may have changed elsewhere; a view checked at the
        # current generation is up to date.
        self.generation = 0
        self.resolved: dict[Any, tuple[int, Any]] = {}  # request -> (generation, Resolved)

    # --- freshness ----------------------------------------------------------------------

    def changed_elsewhere(self) -> bool:
        version = self.conn.data_version()
        if version is None:
            return True  # PostgreSQL: no cheap signal, check every time
        if version != self.data_version:
            self.data_version = version
            return True
        return False

    def check(self, *, force: bool = False) -> Catalog:
        """Start of every call: one cheap look at whether anything changed elsewhere."""
        if force or self.catalog is None or self.changed_elsewhere():
            self.catalog = load_catalog(self.conn)
            self.generation += 1
        return self.catalog

    def fresh_catalog(self) -> Catalog:
        """The catalog as of the last `check()` of this call."""
        return self.catalog if self.catalog is not None else self.check()

    def zone(self, zone_id: int, *, force: bool = False) -> ZoneView:
        """The zone's view, re-read when anything changed since it was built."""
        catalog = self.check(force=True) if force else self.fresh_catalog()
        view = self.zones.get(zone_id)
        if view is not None and not force and view.generation == self.generation:
            return view
        structure = zone_structure(self.conn, catalog, zone_id)
        fingerprint = host_fingerprint(self.conn, zone_id)
        if (
            view is None
            or force
            or view.structure != structure
            or view.fingerprint[0] != fingerprint[0]
            or (view.fingerprint != fingerprint and not refresh_hosts(self.conn, view))
        ):
            view = load_zone(self.conn, catalog, zone_id, structure, fingerprint)
            self.zones[zone_id] = view
        else:
            view.fingerprint = fingerprint
            refresh_pools(self.conn, catalog, view)
        view.generation = self.generation
        return view


_snapshots: weakref.WeakKeyDictionary[Database, Snapshot] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def snapshot_for(db: Database) -> Snapshot:
    """The process's snapshot for `db` (a forked child gets its own connection)."""
    with _registry_lock:
        snap = _snapshots.get(db)
        if snap is None or snap.pid != os.getpid():
            snap = Snapshot(db)
            _snapshots[db] = snap
            weakref.finalize(db, snap.conn.close)
        return snap


# --- loading ---------------------------------------------------------------------------


def _tags(text: str | None) -> frozenset[str]:
    return frozenset(t for t in (text or "").split(",") if t)


def load_catalog(conn: Conn) -> Catalog:
    settings: dict[str, Any] = {}
    rows = {
        name: (value, default)
        for name, value, default in conn.rows(
            "SELECT name, value, default_value FROM configuration"
        )
    }
    for name in SETTINGS:
        d = definition(name)
        value, default = rows.get(name, (None, d.default))
        settings[name] = d.parse(value if value is not None else (default or d.default))
    zones, zone_ids = {}, {}
    for zid, uuid, name, state in conn.rows("SELECT id, uuid, name, allocation_state FROM zone"):
        zones[zid] = (uuid, name, state)
        zone_ids[uuid] = zone_ids[name] = zid
    offerings = {}
    for row in conn.rows(
        "SELECT id, uuid, name, cpu_count, cpu_mhz, memory_bytes, host_tags, storage_tags, "
        "deployment_planner, state FROM serviceoffering"
    ):
        o = Offering(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            _tags(row[6]),
            _tags(row[7]),
            row[8],
            row[9] == "Active",
        )
        offerings[o.uuid] = offerings[o.name] = o
    disk_offerings = {}
    for row in conn.rows(
        "SELECT id, uuid, name, disk_size_bytes, is_customized, storage_tags FROM diskoffering"
    ):
        d = DiskOfferingRow(row[0], row[1], row[2], row[3], bool(row[4]), _tags(row[5]))
        disk_offerings[d.uuid] = disk_offerings[d.name] = d
    domain_paths = dict(conn.rows("SELECT id, path FROM domain"))
    d = definition(SKIPCOUNTING)
    skip = {
        scope_id: int(d.parse(value))
        for scope_id, value in conn.rows(
            "SELECT scope_id, value FROM configurationoverride "
            "WHERE name = :name AND scope_type = 'cluster'",
            {"name": SKIPCOUNTING},
        )
    }
    return Catalog(settings, zones, zone_ids, offerings, disk_offerings, domain_paths, skip)


def zone_structure(conn: Conn, catalog: Catalog, zone_id: int) -> Any:
    """Everything of the zone, besides hosts, that decisions depend on (small tables)."""
    return (
        catalog.zones.get(zone_id),
        tuple(
            conn.rows(
                "SELECT id, name, allocation_state FROM pod WHERE zone_id = :z ORDER BY id",
                {"z": zone_id},
            )
        ),
        tuple(
            conn.rows(
                "SELECT id, uuid, name, pod_id, allocation_state, cpu_overprovisioning_factor, "
                "mem_overprovisioning_factor, cpu_disable_threshold, mem_disable_threshold "
                "FROM cluster WHERE zone_id = :z ORDER BY id",
                {"z": zone_id},
            )
        ),
        tuple(
            conn.rows(
                "SELECT scope, scope_id, account_id, domain_id FROM dedication "
                "WHERE zone_id = :z ORDER BY id",
                {"z": zone_id},
            )
        ),
        tuple(sorted(catalog.settings.items())),
        tuple(sorted(catalog.skip_overrides.items())),
    )


def host_fingerprint(conn: Conn, zone_id: int) -> tuple[int, int]:
    count, total = conn.execute(
        "SELECT count(*), coalesce(sum(capacity_version), 0) FROM host WHERE zone_id = :z",
        {"z": zone_id},
    ).fetchone()
    return int(count), int(total)


def load_zone(
    conn: Conn, catalog: Catalog, zone_id: int, structure: Any, fingerprint: tuple[int, int]
) -> ZoneView:
    zone_row, pods, clusters, dedications, _, _ = structure
    if zone_row is None:
        raise LookupError(zone_id)
    s = catalog.settings
    view = ZoneView(zone_id, zone_row[0], zone_row[1], zone_row[2] == AllocationState.ENABLED)
    view.structure = structure
    view.fingerprint = fingerprint
    pod_info = {pid: (name, state == AllocationState.ENABLED) for pid, name, state in pods}
    for cid, uuid, name, pod_id, state, cf, mf, ct, mt in clusters:
        pod_name, pod_enabled = pod_info.get(pod_id, ("?", False))
        c = ClusterView(
            index=len(view.clusters),
            id=cid,
            uuid=uuid,
            name=name,
            pod_id=pod_id,
            pod_name=pod_name,
            pod_enabled=pod_enabled,
            enabled=state == AllocationState.ENABLED,
            cpu_factor=float(cf if cf is not None else s["cpu.overprovisioning.factor"]),
            mem_factor=float(mf if mf is not None else s["mem.overprovisioning.factor"]),
            cpu_threshold=float(
                ct if ct is not None else s["cluster.cpu.allocated.capacity.disablethreshold"]
            ),
            mem_threshold=float(
                mt if mt is not None else s["cluster.memory.allocated.capacity.disablethreshold"]
            ),
            skip_seconds=int(catalog.skip_overrides.get(cid, s[SKIPCOUNTING])),
        )
        view.cluster_index[cid] = c.index
        view.clusters.append(c)

    owners: dict[tuple[str, int], Any] = {}
    for scope, scope_id, account_id, domain_id in dedications:
        owner = (
            ("account", account_id)
            if account_id is not None
            else ("domain", catalog.domain_paths.get(domain_id, ""))
        )
        owners[(scope, scope_id)] = owner
    view.dedicated = bool(owners)
    zone_owner = owners.get(("zone", zone_id))

    tags: dict[int, set[str]] = {}
    for host_id, tag in conn.rows(
        "SELECT t.host_id, t.tag FROM hosttag t JOIN host h ON h.id = t.host_id "
        "WHERE h.zone_id = :z",
        {"z": zone_id},
    ):
        tags.setdefault(host_id, set()).add(tag)
    empty: frozenset[str] = frozenset()
    rows = conn.rows(
        "SELECT id, uuid, name, cluster_id, pod_id, cpu_cores, cpu_mhz, memory_bytes, status, "
        "resource_state, cpu_used_mhz, cpu_reserved_mhz, memory_used_bytes, "
        "memory_reserved_bytes, capacity_version FROM host WHERE zone_id = :z "
        "ORDER BY cluster_id, id",
        {"z": zone_id},
    )
    last_cluster = None
    for hid, uuid, name, cid, pod_id, cores, mhz, mem, status, rstate, cu, cr, mu, mr, ver in rows:
        ci = view.cluster_index.get(cid)
        if ci is None:
            continue
        c = view.clusters[ci]
        i = len(view.h_id)
        if cid != last_cluster:
            c.start = i
            last_cluster = cid
        c.end = i + 1
        view.h_id.append(hid)
        view.h_uuid.append(uuid)
        view.h_name.append(name)
        view.h_cluster.append(ci)
        view.h_cores.append(cores)
        view.h_mhz.append(mhz)
        view.h_cpu_cap.append(cores * mhz * c.cpu_factor)
        view.h_mem_cap.append(mem * c.mem_factor)
        view.h_cpu_used.append(cu)
        view.h_cpu_res.append(cr)
        view.h_mem_used.append(mu)
        view.h_mem_res.append(mr)
        view.h_status.append(status)
        view.h_rstate.append(rstate)
        usable = status == HostStatus.UP and rstate == ResourceState.ENABLED
        view.h_usable.append(usable)
        host_tags = frozenset(tags[hid]) if hid in tags else empty
        view.h_tags.append(host_tags)
        owner = (
            owners.get(("host", hid))
            or owners.get(("cluster", cid))
            or owners.get(("pod", pod_id))
            or zone_owner
        )
        view.h_owner.append(owner)
        view.h_version.append(ver)
        view.host_index[hid] = view.host_index[uuid] = i
        view.host_index.setdefault(name, i)
        c.cpu_total += view.h_cpu_cap[i]
        c.mem_total += view.h_mem_cap[i]
        c.cpu_alloc += cu + cr
        c.mem_alloc += mu + mr
    for c in view.clusters:
        c.usable = [i for i in range(c.start, c.end) if view.h_usable[i]]
        c.tags = frozenset().union(*(view.h_tags[i] for i in c.usable)) if c.usable else empty
        c.owners = frozenset(view.h_owner[i] for i in range(c.start, c.end))
        view._cluster_free(c)
    view.order_cpu = sorted((c.cpu_util(), c.index) for c in view.clusters)
    view.order_mem = sorted((c.mem_util(), c.index) for c in view.clusters)
    refresh_pools(conn, catalog, view)
    return view


def refresh_hosts(conn: Conn, view: ZoneView) -> bool:
    """Re-read only the hosts whose capacity_version moved (another process claimed or
    released on them, or changed their state or tags). False when too much changed, or a
    host came or went: then the caller rebuilds the view."""
    versions = conn.rows(
        "SELECT id, capacity_version FROM host WHERE zone_id = :z", {"z": view.zone_id}
    )
    index, known = view.host_index, view.h_version
    changed = []
    for hid, version in versions:
        i = index.get(hid)
        if i is None:
            return False
        if known[i] != version:
            changed.append(hid)
    if len(changed) > max(64, view.host_count // 8):
        return False
    if not changed:
        return True
    clusters: set[int] = set()
    for start in range(0, len(changed), 500):
        chunk = changed[start : start + 500]
        marks = ",".join(str(int(h)) for h in chunk)  # ints from the database: safe to inline
        tags: dict[int, set[str]] = {}
        for host_id, tag in conn.rows(
            f"SELECT host_id, tag FROM hosttag WHERE host_id IN ({marks})"
        ):
            tags.setdefault(host_id, set()).add(tag)
        for row in conn.rows(
            "SELECT id, cluster_id, cpu_cores, cpu_mhz, memory_bytes, status, resource_state, "
            "cpu_used_mhz, cpu_reserved_mhz, memory_used_bytes, memory_reserved_bytes, "
            f"capacity_version FROM host WHERE id IN ({marks})"
        ):
            hid, cid, cores, mhz, mem, status, rstate, cu, cr, mu, mr, version = row
            i = index[hid]
            c = view.clusters[view.h_cluster[i]]
            if c.id != cid:
                return False  # moved to another cluster: rebuild
            view.h_cores[i], view.h_mhz[i] = cores, mhz
            view.h_cpu_cap[i] = cores * mhz * c.cpu_factor
            view.h_mem_cap[i] = mem * c.mem_factor
            view.h_cpu_used[i], view.h_cpu_res[i] = cu, cr
            view.h_mem_used[i], view.h_mem_res[i] = mu, mr
            view.h_status[i], view.h_rstate[i] = status, rstate
            view.h_usable[i] = status == HostStatus.UP and rstate == ResourceState.ENABLED
            view.h_tags[i] = frozenset(tags.get(hid, ()))
            view.h_version[i] = version
            clusters.add(c.index)
    for ci in clusters:
        c = view.clusters[ci]
        hosts = range(c.start, c.end)
        c.cpu_total = sum(view.h_cpu_cap[i] for i in hosts)
        c.mem_total = sum(view.h_mem_cap[i] for i in hosts)
        c.cpu_alloc = sum(view.h_cpu_used[i] + view.h_cpu_res[i] for i in hosts)
        c.mem_alloc = sum(view.h_mem_used[i] + view.h_mem_res[i] for i in hosts)
        c.usable = [i for i in hosts if view.h_usable[i]]
        c.tags = frozenset().union(*(view.h_tags[i] for i in c.usable)) if c.usable else frozenset()
        view._cluster_free(c)
    view.order_cpu = sorted((c.cpu_util(), c.index) for c in view.clusters)
    view.order_mem = sorted((c.mem_util(), c.index) for c in view.clusters)
    return True


def refresh_pools(conn: Conn, catalog: Catalog, view: ZoneView) -> None:
    """Pools are few: re-read them whole with every check."""
    s = catalog.settings
    tags: dict[int, set[str]] = {}
    for pool_id, tag in conn.rows(
        "SELECT t.pool_id, t.tag FROM storagepooltag t JOIN storagepool p ON p.id = t.pool_id "
        "WHERE p.zone_id = :z",
        {"z": view.zone_id},
    ):
        tags.setdefault(pool_id, set()).add(tag)
    view.pools = []
    view.zone_pools = []
    for c in view.clusters:
        c.pools = []
    for row in conn.rows(
        "SELECT id, uuid, name, cluster_id, status, capacity_bytes, used_bytes, allocated_bytes, "
        "overprovisioning_factor, capacity_disable_threshold, allocated_disable_threshold "
        "FROM storagepool WHERE zone_id = :z ORDER BY id",
        {"z": view.zone_id},
    ):
        pid, uuid, name, cid, status, cap, used, alloc, f, ct, at = row
        p = PoolView(
            index=len(view.pools),
            id=pid,
            uuid=uuid,
            name=name,
            cluster_id=cid,
            up=status == "Up",
            status=status,
            capacity=cap,
            used=used,
            allocated=alloc,
            factor=float(f if f is not None else s["storage.overprovisioning.factor"]),
            capacity_threshold=float(
                ct if ct is not None else s["pool.storage.capacity.disablethreshold"]
            ),
            allocated_threshold=float(
                at if at is not None else s["pool.storage.allocated.capacity.disablethreshold"]
            ),
            tags=frozenset(tags.get(pid, ())),
        )
        view.pools.append(p)
        if cid is None:
            view.zone_pools.append(p.index)
        elif cid in view.cluster_index:
            view.clusters[view.cluster_index[cid]].pools.append(p.index)
    expiry = conn.execute(
        "SELECT min(reserved_until) FROM placementclaim WHERE zone_id = :z AND state = :s",
        {"z": view.zone_id, "s": ClaimState.RESERVED.value},
    ).fetchone()[0]
    view.next_expiry = conn.read_timestamp(expiry)
