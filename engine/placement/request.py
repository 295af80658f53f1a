"""What a caller asks placement for, and its checked, id-resolved form.

`PlacementRequest` takes names or UUIDs, as the console and the API pass them.
`resolve_request` checks every field (nothing is written before it passes) and turns it
into a `Resolved` of ids and numbers that the planner works on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from engine.context import Caller
from engine.errors import InvalidParameter, NotFound, StateConflict
from engine.models import AffinityGroupType, ClaimState, OwnerState
from engine.offerings import PLANNERS
from engine.placement.snapshot import AccountRow, Catalog, Snapshot, ZoneView
from engine.placement.sql import Conn
from engine.validation import check_tags

ALLOCATORS = ("random", "firstfit", "userdispersing", "firstfitleastconsumed")


@dataclass(frozen=True)
class VolumeRequest:
    """A disk of the VM: its virtual size and the storage tags its pool must carry.

    `disk_offering` supplies size (unless customised) and tags; `pool` names the pool an
    existing volume already lives on (a restart: the host must reach it, nothing is added).
    """

    size_bytes: int = 0
    storage_tags: Sequence[str] | str = ()
    name: str = ""
    disk_offering: str | None = None
    pool: str | None = None
    volume_id: int | None = None


@dataclass(frozen=True)
class Avoid:
    """Hosts, clusters and pods a retry must not use (names or UUIDs)."""

    hosts: frozenset[str] = frozenset()
    clusters: frozenset[str] = frozenset()
    pods: frozenset[str] = frozenset()

    def adding(
        self, *, hosts: Sequence[str] = (), clusters: Sequence[str] = (), pods: Sequence[str] = ()
    ) -> Avoid:
        return Avoid(
            self.hosts | frozenset(hosts),
            self.clusters | frozenset(clusters),
            self.pods | frozenset(pods),
        )


@dataclass(frozen=True)
class PlacementRequest:
    """Where may this VM go? Either `offering`, or all of cpu_count/cpu_mhz/memory_bytes,
    or (with `vm`) neither: then the VM's own sizes, offering tags and template tag apply.

    cpu_mhz is the speed per virtual CPU. `account` defaults to the caller's account.
    `template` adds its template tag to the host tags; `template_tags` adds more.
    `vm` names the VM being placed: its claim is recorded against it, its affinity groups
    and last host apply, and a stopped VM's reserved share on its last host is reused.
    `seed` makes the random allocator repeatable; left out, a seed is drawn and reported.
    """

    zone: str
    offering: str | None = None
    cpu_count: int | None = None
    cpu_mhz: int | None = None
    memory_bytes: int | None = None
    volumes: Sequence[VolumeRequest] = ()
    account: str | None = None
    template: str | None = None
    template_tags: Sequence[str] = ()
    affinity_groups: Sequence[str] = ()
    pinned_host: str | None = None
    last_host: str | None = None
    avoid: Avoid = field(default_factory=Avoid)
    planner: str | None = None
    allocator: str | None = None
    vm: str | None = None
    seed: int | None = None

    def avoiding(
        self, *, hosts: Sequence[str] = (), clusters: Sequence[str] = (), pods: Sequence[str] = ()
    ) -> PlacementRequest:
        """The same request with more of the avoid set: what a retry after a failed start
        passes (the host or cluster that failed joins it)."""
        return replace(self, avoid=self.avoid.adding(hosts=hosts, clusters=clusters, pods=pods))


@dataclass(frozen=True)
class ResolvedVolume:
    position: int
    label: str
    size: int
    tags: frozenset[str]
    fixed_pool: int | None  # pool id of an existing volume
    volume_id: int | None


@dataclass
class Resolved:
    zone_id: int
    zone_name: str
    cpu_count: int
    cpu_speed: int
    cpu: int  # cpu_count x cpu_speed
    memory: int
    host_tags: tuple[str, ...]
    volumes: list[ResolvedVolume]
    account: AccountRow
    planner: str
    allocator: str
    order_by: str  # "CPU" or "RAM": host.capacityType.to.order.clusters
    seed: int
    start_retry: int
    anti_hosts: dict[int, str] = field(default_factory=dict)  # host id -> group name
    anti_groups: list[int] = field(default_factory=list)
    affinity_hosts: frozenset[int] | None = None
    affinity_group: str = ""
    explicit: bool = False
    pinned: int | None = None
    pinned_name: str = ""
    last_host: int | None = None
    avoid_hosts: frozenset[int] = frozenset()
    avoid_clusters: frozenset[int] = frozenset()
    avoid_pods: frozenset[int] = frozenset()
    vm_id: int | None = None
    vm_name: str = ""
    claim_id: int | None = None  # the VM's existing claim (stopped VM)
    reserved_host: int | None = None  # host id holding that claim's reserved share
    reserved_cpu: int = 0
    reserved_mem: int = 0
    account_vms: dict[int, int] | None = None  # host id -> the account's VMs there
    group_ids: list[int] = field(default_factory=list)  # groups the VM joins when placed
    group_names: dict[int, str] = field(default_factory=dict)
    affinity_requested: bool = False  # a host-affinity group is part of the request

    def owner_ok(self, owner: object) -> bool:
        """May this request use a host dedicated to `owner` (None = not dedicated)?"""
        if owner is None:
            return not self.explicit
        kind, value = owner  # type: ignore[misc]
        if kind == "account":
            return value == self.account.id
        return self.account.domain_path.startswith(value)


def _positive(label: str, value: object, field_name: str, what: str, *, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{label}: {what} {value!r} is not a whole number", field=field_name)
    if value < 0 or (value == 0 and not zero):
        raise InvalidParameter(
            f"{label}: {what} must be {'0 or more' if zero else 'positive'}, got {value}",
            field=field_name,
        )
    return value


def load_account(snap: Snapshot, catalog: Catalog, ref: str | int) -> AccountRow:
    key = ref
    if isinstance(ref, int) and ref in catalog.accounts:
        return catalog.accounts[ref]
    rows = snap.conn.rows(
        "SELECT a.id, a.uuid, a.name, a.domain_id, a.state FROM account a "
        "WHERE a.id = :id OR a.uuid = :ref OR a.name = :ref",
        {"id": ref if isinstance(ref, int) else -1, "ref": str(ref)},
    )
    if isinstance(ref, str):
        exact = [r for r in rows if r[1] == ref]
        rows = exact or rows
    if not rows:
        raise NotFound(f"account '{key}' does not exist", field="account")
    if len(rows) > 1:
        raise InvalidParameter(
            f"account name '{key}' is ambiguous; give its UUID instead", field="account"
        )
    aid, uuid, name, domain_id, state = rows[0]
    row = AccountRow(aid, uuid, name, domain_id, catalog.domain_paths.get(domain_id, ""), state)
    catalog.accounts[aid] = row
    return row


def resolve_request(
    snap: Snapshot, caller: Caller, req: PlacementRequest
) -> tuple[Resolved, ZoneView]:
    """Check `req` and resolve every reference. Raises before anything is written.

    A request that names no VM and no affinity group resolves to the same thing until
    the database changes elsewhere, so its resolution is kept for the snapshot generation
    (only the seed is drawn anew).
    """
    catalog = snap.check()
    key = None
    if req.vm is None and not req.affinity_groups:
        try:
            key = (req, caller.account_id)
            hash(key)
        except TypeError:  # lists inside the request: resolve it every time
            key = None
    if key is not None:
        cached = snap.resolved.get(key)
        if cached is not None and cached[0] == snap.generation:
            r = _clone(cached[1])
            if req.seed is None:
                r.seed = int.from_bytes(os.urandom(6), "big")
            return r, snap.zone(r.zone_id)
    r, view = _resolve(snap, catalog, caller, req)
    if key is not None and r.account_vms is None:
        if len(snap.resolved) > 256:
            snap.resolved.clear()
        snap.resolved[key] = (snap.generation, r)
        r = _clone(r)
    return r, view


def _clone(r: Resolved) -> Resolved:
    """A shallow copy, several times faster than copy.copy on a dataclass."""
    new = Resolved.__new__(Resolved)
    new.__dict__.update(r.__dict__)
    return new


def _resolve(
    snap: Snapshot, catalog: Catalog, caller: Caller, req: PlacementRequest
) -> tuple[Resolved, ZoneView]:
    zone_ref = str(req.zone or "").strip()
    if not zone_ref:
        raise InvalidParameter("a placement needs a zone", field="zone")
    zone_id = catalog.zone_ids.get(zone_ref)
    if zone_id is None:
        raise NotFound(f"zone '{zone_ref}' does not exist", field="zone")
    view = snap.zone(zone_id)
    label = f"placement in zone '{view.name}'"

    vm_row = None
    vm_sizes = None
    if req.vm is not None:
        found_vm = snap.conn.rows(
            "SELECT id, name, account_id, zone_id, state, last_host_id, cpu_count, cpu_mhz, "
            "memory_bytes, service_offering_id, template_id FROM virtualmachine "
            "WHERE uuid = :r OR instance_name = :r",
            {"r": str(req.vm)},
        )
        if not found_vm:
            raise NotFound(f"VM '{req.vm}' does not exist", field="vm")
        vm_row, vm_sizes = found_vm[0][:6], found_vm[0][6:]
        if vm_row[3] != zone_id:
            raise InvalidParameter(
                f"VM '{vm_row[1]}' belongs to another zone than '{view.name}'", field="zone"
            )

    custom = (req.cpu_count, req.cpu_mhz, req.memory_bytes)
    tags: set[str] = set()
    storage_tags: frozenset[str] = frozenset()
    planner = None
    template_ref: str | int | None = req.template
    if req.offering is None and all(v is None for v in custom) and vm_sizes is not None:
        # A VM placed again (a restart): its own sizes, and its offering's and template's
        # tags, unless the request says otherwise.
        cpu_count, cpu_speed, memory, offering_id, template_id = vm_sizes
        by_id = next((o for o in catalog.offerings.values() if o.id == offering_id), None)
        if by_id is not None:
            tags |= by_id.host_tags
            storage_tags = by_id.storage_tags
            planner = by_id.planner
        if template_ref is None and template_id is not None:
            template_ref = int(template_id)
    elif req.offering is not None:
        if any(v is not None for v in custom):
            raise InvalidParameter(
                f"{label}: give either a service offering or cpu_count, cpu_mhz and "
                "memory_bytes, not both",
                field="offering",
            )
        offering = catalog.offerings.get(str(req.offering).strip())
        if offering is None:
            raise NotFound(f"service offering '{req.offering}' does not exist", field="offering")
        if not offering.active:
            raise InvalidParameter(
                f"service offering '{offering.name}' is not active", field="offering"
            )
        cpu_count, cpu_speed, memory = offering.cpu_count, offering.cpu_mhz, offering.memory_bytes
        tags |= offering.host_tags
        storage_tags = offering.storage_tags
        planner = offering.planner
    else:
        if any(v is None for v in custom):
            raise InvalidParameter(
                f"{label}: give a service offering, or all of cpu_count, cpu_mhz and memory_bytes",
                field="offering",
            )
        cpu_count = _positive(label, req.cpu_count, "cpu_count", "CPU count")
        cpu_speed = _positive(label, req.cpu_mhz, "cpu_mhz", "CPU speed (MHz)")
        memory = _positive(label, req.memory_bytes, "memory_bytes", "memory (bytes)")

    tags.update(check_tags(label, req.template_tags, field="template_tags"))
    if template_ref is not None:
        found = snap.conn.rows(
            "SELECT template_tag, name FROM template WHERE (uuid = :r OR name = :r OR id = :i) "
            "AND removed IS NULL",
            {"r": str(template_ref), "i": template_ref if isinstance(template_ref, int) else -1},
        )
        if not found:
            raise NotFound(f"template '{req.template}' does not exist", field="template")
        if len(found) > 1:
            raise InvalidParameter(
                f"template name '{req.template}' is ambiguous; give its UUID", field="template"
            )
        if found[0][0]:
            tags.add(found[0][0])

    s = catalog.settings
    planner = req.planner or planner or s["vm.deployment.planner"]
    if planner not in PLANNERS:
        raise InvalidParameter(
            f"{label}: deployment planner {planner!r} is not one of {', '.join(PLANNERS)}",
            field="planner",
        )
    allocator = req.allocator or s["vm.allocation.algorithm"]
    if allocator not in ALLOCATORS:
        raise InvalidParameter(
            f"{label}: allocation algorithm {allocator!r} is not one of {', '.join(ALLOCATORS)}",
            field="allocator",
        )
    if req.seed is not None and (isinstance(req.seed, bool) or not isinstance(req.seed, int)):
        raise InvalidParameter(f"{label}: seed {req.seed!r} is not a whole number", field="seed")
    seed = req.seed if req.seed is not None else int.from_bytes(os.urandom(6), "big")

    # --- the VM and its account ------------------------------------------------------
    if req.account is not None:
        account = load_account(snap, catalog, str(req.account).strip())
    elif vm_row is not None:
        account = load_account(snap, catalog, vm_row[2])
    elif caller.account_id is not None:
        account = load_account(snap, catalog, caller.account_id)
    else:
        raise InvalidParameter(f"{label}: an account is required", field="account")
    if vm_row is not None and vm_row[2] != account.id:
        raise InvalidParameter(
            f"VM '{vm_row[1]}' belongs to another account than '{account.name}'", field="account"
        )
    if account.state != OwnerState.ENABLED:
        raise InvalidParameter(f"account '{account.name}' is {account.state}", field="account")

    # --- volumes (largest first, as CloudStack places them) ------------------------------
    volumes = []
    for position, vol in enumerate(req.volumes):
        vlabel = f"volume '{vol.name or position}'"
        size = vol.size_bytes
        vtags = set(check_tags(f"{label}: {vlabel}", vol.storage_tags, field="volumes"))
        if vol.disk_offering is not None:
            offering_row = catalog.disk_offerings.get(str(vol.disk_offering).strip())
            if offering_row is None:
                raise NotFound(
                    f"disk offering '{vol.disk_offering}' does not exist", field="volumes"
                )
            vtags |= offering_row.storage_tags
            if not offering_row.customized or not size:
                size = offering_row.size_bytes
        if position == 0 and vol.disk_offering is None:
            vtags |= storage_tags  # the ROOT volume takes the service offering's storage tags
        size = _positive(f"{label}: {vlabel}", size, "volumes", "size (bytes)")
        fixed = None
        if vol.pool is not None:
            pool = next((p for p in view.pools if vol.pool in (p.uuid, p.name)), None)
            if pool is None:
                raise NotFound(
                    f"{vlabel}: primary storage '{vol.pool}' is not in zone '{view.name}'",
                    field="volumes",
                )
            fixed = pool.id
        volumes.append(
            ResolvedVolume(
                position, vol.name or f"#{position}", size, frozenset(vtags), fixed, vol.volume_id
            )
        )
    volumes.sort(key=lambda v: (-v.size, v.position))

    resolved = Resolved(
        zone_id=zone_id,
        zone_name=view.name,
        cpu_count=cpu_count,
        cpu_speed=cpu_speed,
        cpu=cpu_count * cpu_speed,
        memory=memory,
        host_tags=tuple(sorted(tags)),
        volumes=volumes,
        account=account,
        planner=planner,
        allocator=allocator,
        order_by=str(s["host.capacityType.to.order.clusters"]),
        seed=seed,
        start_retry=int(s["start.retry"]),
    )

    # --- hosts, clusters and pods named by the request -----------------------------------
    def host_id(ref: str, what: str) -> int:
        i = view.host_index.get(str(ref).strip())
        if i is None:
            raise NotFound(f"{what} '{ref}' is not a host of zone '{view.name}'", field=what)
        return view.h_id[i]

    if req.pinned_host is not None:
        resolved.pinned = host_id(req.pinned_host, "pinned_host")
        resolved.pinned_name = view.h_name[view.host_index[resolved.pinned]]
    if req.last_host is not None:
        resolved.last_host = host_id(req.last_host, "last_host")
    resolved.avoid_hosts = frozenset(host_id(h, "avoid") for h in req.avoid.hosts)
    clusters: dict[str, int] = {}
    pods: dict[str, int] = {}
    if req.avoid.clusters or req.avoid.pods:
        for c in view.clusters:
            clusters[c.uuid] = clusters[c.name] = c.id
            pods[c.pod_name] = c.pod_id
    avoid_clusters, avoid_pods = set(), set()
    for ref in req.avoid.clusters:
        if ref not in clusters:
            raise NotFound(f"avoid: cluster '{ref}' is not in zone '{view.name}'", field="avoid")
        avoid_clusters.add(clusters[ref])
    for ref in req.avoid.pods:
        if ref not in pods:
            raise NotFound(f"avoid: pod '{ref}' is not in zone '{view.name}'", field="avoid")
        avoid_pods.add(pods[ref])
    resolved.avoid_clusters = frozenset(avoid_clusters)
    resolved.avoid_pods = frozenset(avoid_pods)

    if vm_row is not None:
        _resolve_vm(snap, resolved, vm_row, view)
    _resolve_groups(snap, resolved, req, view)
    if allocator == "userdispersing" or planner != "FirstFitPlanner":
        resolved.account_vms = dict(
            snap.conn.rows(
                "SELECT host_id, count(*) FROM placementclaim WHERE account_id = :a "
                "AND zone_id = :z AND state = :s GROUP BY host_id",
                {"a": account.id, "z": zone_id, "s": ClaimState.USED.value},
            )
        )
    return resolved, view


def _resolve_vm(snap: Snapshot, r: Resolved, vm_row: tuple, view: ZoneView) -> None:
    vm_id, name, _account, _zone, _state, last_host_id = vm_row
    r.vm_id, r.vm_name = vm_id, name
    claim = snap.conn.rows(
        "SELECT id, host_id, state, cpu_mhz, memory_bytes FROM placementclaim WHERE vm_id = :v",
        {"v": vm_id},
    )
    if claim:
        claim_id, host, claim_state, cpu, mem = claim[0]
        if claim_state == ClaimState.USED:
            raise StateConflict(
                f"VM '{name}' already holds capacity on a host; stop it before placing it again"
            )
        r.claim_id = claim_id
        if claim_state == ClaimState.RESERVED:
            r.reserved_host, r.reserved_cpu, r.reserved_mem = host, cpu, mem
            if r.last_host is None:
                r.last_host = host
        fixed = snap.conn.rows(
            "SELECT position, pool_id, size_bytes, volume_id FROM placementclaimvolume "
            "WHERE claim_id = :c ORDER BY position",
            {"c": claim_id},
        )
        if fixed:
            # The VM's disks already live on these pools: the host must reach them.
            r.volumes = [
                ResolvedVolume(pos, f"#{pos}", size, frozenset(), pool, vol)
                for pos, pool, size, vol in fixed
            ]
    if r.last_host is None and last_host_id is not None and last_host_id in view.host_index:
        r.last_host = last_host_id
    if r.last_host is not None and r.last_host not in view.host_index:
        r.last_host = None


def _resolve_groups(snap: Snapshot, r: Resolved, req: PlacementRequest, view: ZoneView) -> None:
    groups: dict[int, tuple[str, str]] = {}
    for ref in req.affinity_groups:
        rows = snap.conn.rows(
            "SELECT id, name, group_type FROM affinitygroup WHERE account_id = :a "
            "AND (uuid = :r OR name = :r)",
            {"a": r.account.id, "r": str(ref)},
        )
        if not rows:
            raise NotFound(
                f"affinity group '{ref}' does not exist for account '{r.account.name}'",
                field="affinity_groups",
            )
        groups[rows[0][0]] = (rows[0][1], rows[0][2])
        r.group_ids.append(rows[0][0])
    if r.vm_id is not None:
        for gid, name, gtype in snap.conn.rows(
            "SELECT g.id, g.name, g.group_type FROM affinitygroup g "
            "JOIN affinitygroupmember m ON m.group_id = g.id WHERE m.vm_id = :v",
            {"v": r.vm_id},
        ):
            groups[gid] = (name, gtype)
    for gid, (name, gtype) in sorted(groups.items()):
        r.group_names[gid] = name
        if gtype == AffinityGroupType.EXPLICIT_DEDICATION:
            r.explicit = True
            continue
        hosts = group_hosts(snap.conn, gid, r.vm_id)
        if gtype == AffinityGroupType.HOST_ANTI_AFFINITY:
            r.anti_groups.append(gid)
            for h in hosts:
                r.anti_hosts.setdefault(h, name)
        elif gtype == AffinityGroupType.HOST_AFFINITY:
            r.affinity_requested = True
            r.affinity_group = r.affinity_group or name
            if not hosts:
                continue
            # Host affinity: the group's VMs share one host; later members follow them.
            current = frozenset(hosts)
            r.affinity_hosts = current if r.affinity_hosts is None else r.affinity_hosts & current
            r.affinity_group = name


def group_hosts(conn: Conn, group_id: int, vm_id: int | None) -> set[int]:
    """Hosts where the group's other VMs run, or recently ran (their reserved share)."""
    params = {
        "g": group_id,
        "v": vm_id if vm_id is not None else -1,
        "u": ClaimState.USED.value,
        "r": ClaimState.RESERVED.value,
    }
    rows = conn.rows(
        "SELECT c.host_id FROM placementclaim c JOIN affinitygroupmember m ON m.vm_id = c.vm_id "
        "WHERE m.group_id = :g AND c.vm_id <> :v AND c.state IN (:u, :r) "
        "UNION SELECT v.host_id FROM virtualmachine v JOIN affinitygroupmember m "
        "ON m.vm_id = v.id WHERE m.group_id = :g AND v.id <> :v AND v.host_id IS NOT NULL",
        params,
    )
    return {row[0] for row in rows}
