"""Planning, claiming and releasing capacity.

`place_vms` decides on the snapshot, then claims in one transaction: one conditional UPDATE
per host that re-checks state and limits in SQL (and bumps capacity_version), one per pool,
and the claim rows. If any UPDATE matches no row another process got there first: the
transaction rolls back, the view is re-read, and the request is decided again, so the next
candidate is tried. Nothing can overcommit a host or a pool, whatever the snapshot believed.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from engine.context import Caller
from engine.errors import InsufficientCapacity, InvalidParameter, NotFound, StateConflict
from engine.models import ClaimState, HostStatus, ResourceState, new_uuid, utcnow
from engine.placement.explain import Explanation, explain
from engine.placement.planner import Decision, decide
from engine.placement.request import PlacementRequest, Resolved, group_hosts, resolve_request
from engine.placement.snapshot import Snapshot, ZoneView, refresh_pools, snapshot_for
from engine.placement.sql import Conn, TransientConflict

# Lost races one call may suffer before it gives up (each one re-reads what it lost on).
MAX_ATTEMPTS = 100

CLAIM_HOST = f"""
UPDATE host SET
  cpu_used_mhz = cpu_used_mhz + :cpu, memory_used_bytes = memory_used_bytes + :mem,
  cpu_reserved_mhz = cpu_reserved_mhz - :rcpu,
  memory_reserved_bytes = memory_reserved_bytes - :rmem,
  capacity_version = capacity_version + 1
WHERE id = :id AND status = '{HostStatus.UP}' AND resource_state = '{ResourceState.ENABLED}'
  AND cpu_reserved_mhz >= :rcpu AND memory_reserved_bytes >= :rmem
  AND cpu_used_mhz + cpu_reserved_mhz - :rcpu + :cpu <= cpu_cores * cpu_mhz *
      (SELECT coalesce(c.cpu_overprovisioning_factor, :gcf) FROM cluster c
       WHERE c.id = host.cluster_id)
  AND memory_used_bytes + memory_reserved_bytes - :rmem + :mem <= memory_bytes *
      (SELECT coalesce(c.mem_overprovisioning_factor, :gmf) FROM cluster c
       WHERE c.id = host.cluster_id)
"""

INSERT_CLAIM = """
INSERT INTO placementclaim (uuid, vm_id, account_id, domain_id, zone_id, pod_id, cluster_id,
  host_id, cpu_count, cpu_mhz, memory_bytes, state, reserved_until, created)
VALUES (:uuid, :vm, :account, :domain, :zone, :pod, :cluster, :host, :cpu_count, :cpu, :mem,
  'used', NULL, :now)
"""

REUSE_CLAIM = """
UPDATE placementclaim SET pod_id = :pod, cluster_id = :cluster, host_id = :host,
  cpu_count = :cpu_count, cpu_mhz = :cpu, memory_bytes = :mem, state = 'used',
  reserved_until = NULL
WHERE id = :claim AND state <> 'used'
"""

CLAIM_POOL = """
UPDATE storagepool SET allocated_bytes = allocated_bytes + :size
WHERE id = :id AND status = 'Up'
  AND used_bytes <= capacity_bytes * coalesce(capacity_disable_threshold, :gct)
  AND allocated_bytes + :size <= capacity_bytes * coalesce(overprovisioning_factor, :gof)
      * coalesce(allocated_disable_threshold, :gat)
"""

INSERT_CLAIM_VOLUME = """
INSERT INTO placementclaimvolume (claim_id, position, pool_id, volume_id, size_bytes)
VALUES (:claim, :position, :pool, :volume, :size)
"""


@dataclass(frozen=True)
class VolumePlacement:
    position: int  # index in the request's volumes
    name: str
    size_bytes: int
    pool_id: int
    pool_uuid: str
    pool_name: str


@dataclass(frozen=True)
class Plan:
    """Where a VM goes. `claim_uuid` is set once the capacity is claimed (place_*)."""

    zone: str
    host_id: int
    host_uuid: str
    host_name: str
    cluster_id: int
    cluster_name: str
    pod_id: int
    pod_name: str
    volumes: tuple[VolumePlacement, ...]
    how: str  # "pinned host", "last host", or the planner that chose
    seed: int
    explanation: Explanation | None = None
    claim_uuid: str | None = None


class _Lost(Exception):
    """A conditional UPDATE matched no row: someone else took the capacity first."""

    def __init__(self, host_id: int | None = None) -> None:
        super().__init__(host_id)
        self.host_id = host_id


def _plan(
    view: ZoneView,
    r: Resolved,
    d: Decision,
    explanation: Explanation | None,
    claim_uuid: str | None = None,
) -> Plan:
    c = view.clusters[d.cluster]
    return Plan(
        zone=view.name,
        host_id=view.h_id[d.host],
        host_uuid=view.h_uuid[d.host],
        host_name=view.h_name[d.host],
        cluster_id=c.id,
        cluster_name=c.name,
        pod_id=c.pod_id,
        pod_name=c.pod_name,
        volumes=tuple(
            sorted(
                (
                    VolumePlacement(
                        v.position,
                        v.label,
                        v.size,
                        view.pools[pi].id,
                        view.pools[pi].uuid,
                        view.pools[pi].name,
                    )
                    for v, pi in d.pools
                ),
                key=lambda p: p.position,
            )
        ),
        how=d.how,
        seed=r.seed,
        explanation=explanation,
        claim_uuid=claim_uuid,
    )


def _refuse(view: ZoneView, r: Resolved, placed: int = 0, count: int = 1) -> InsufficientCapacity:
    explanation = explain(view, r, None)
    message = explanation.summary()
    if count > 1:
        message = f"placed none of {count} VMs ({placed} fit before the rest): {message}"
    err = InsufficientCapacity(message, field="zone")
    err.explanation = explanation  # type: ignore[attr-defined]
    return err


# --- public API --------------------------------------------------------------------------


def plan_vm(caller: Caller, request: PlacementRequest, *, explain_plan: bool = True) -> Plan:
    """Decide where `request` would go, with its explanation; claims nothing."""
    snap = snapshot_for(caller.db)
    with snap.lock:
        r, view = resolve_request(snap, caller, request)
        d = decide(view, r, random.Random(r.seed))
        if d is None:
            raise _refuse(view, r)
        return _plan(view, r, d, explain(view, r, d) if explain_plan else None)


def preview(caller: Caller, request: PlacementRequest) -> Plan:
    """The dry run: the plan and why, exactly as place_vm would decide now."""
    return plan_vm(caller, request, explain_plan=True)


def place_vm(caller: Caller, request: PlacementRequest, *, explain_plan: bool = False) -> Plan:
    """Decide and claim one VM's capacity (host, and pools for its volumes)."""
    vms = [request.vm] if request.vm is not None else None
    return place_vms(caller, request, count=1, vms=vms, explain_plan=explain_plan)[0]


def place_vms(
    caller: Caller,
    request: PlacementRequest,
    *,
    count: int,
    vms: Sequence[str] | None = None,
    explain_plan: bool = False,
) -> list[Plan]:
    """Place `count` VMs of the same request in one transaction: all of them, or none.

    `vms` (optional) names the VMs, one per placement; their claims are recorded against
    them and they join the request's affinity groups. VMs of one anti-affinity group in
    the same call go to different hosts; of one host-affinity group, to the same host.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidParameter(
            f"count must be a positive whole number, got {count!r}", field="count"
        )
    if count > 1 and request.vm is not None:
        raise InvalidParameter(
            f"the request names VM '{request.vm}'; bulk placements name their VMs in vms=",
            field="vms",
        )
    if vms is not None and len(vms) != count:
        raise InvalidParameter(f"{len(vms)} VMs given for count {count}", field="vms")
    snap = snapshot_for(caller.db)
    with snap.lock:
        base, view = resolve_request(
            snap, caller, request if count == 1 else replace(request, vm=None)
        )
        requests = [base]
        if count > 1:
            if len(set(vms or ())) != len(vms or ()):
                raise InvalidParameter("a VM is named twice", field="vms")
            for ref in vms or [None] * count:
                r, _ = (
                    resolve_request(snap, caller, replace(request, vm=ref, seed=base.seed))
                    if ref is not None
                    else (base, view)
                )
                if r.claim_id is not None:
                    raise StateConflict(f"VM '{r.vm_name}' already holds a claim; place it alone")
                requests.append(r)
            requests = requests[1:]
        if len(requests) == 1:
            return _place(snap, requests, explain_plan)
        # A bulk call makes thousands of small objects; the cyclic collector would walk
        # the whole snapshot (every host) again and again meanwhile. Nothing here makes
        # cycles, so it can wait until the call returns.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return _place(snap, requests, explain_plan)
        finally:
            if was_enabled:
                gc.enable()


def _place(snap: Snapshot, requests: list[Resolved], explain_plan: bool) -> list[Plan]:
    base = requests[0]
    attempts = 0
    avoid: set[int] = set()
    while True:
        view = snap.zone(base.zone_id)
        if view.next_expiry is not None and view.next_expiry <= utcnow():
            expire_reservations(snap, base.zone_id)
            view = snap.zone(base.zone_id, force=True)
        rng = random.Random(base.seed)
        decisions: list[tuple[Resolved, Decision]] = []
        explanations: list[Explanation | None] = []
        undo: list[tuple] = []
        try:
            for k, r0 in enumerate(requests):
                r = _with_bulk_groups(r0, view, decisions)
                if avoid:
                    r = replace(r, avoid_hosts=r.avoid_hosts | avoid)
                d = decide(view, r, rng)
                if d is None:
                    raise _refuse(view, r, k, len(requests))
                decisions.append((r, d))
                # Explained on the view the decision saw, before it takes its share.
                explanations.append(explain(view, r, d) if explain_plan else None)
                undo.append(_apply(view, r, d, +1))
        except InsufficientCapacity:
            for entry in reversed(undo):
                _unapply(view, entry)
            raise
        try:
            claim_uuids = _claim(snap.conn, view, decisions)
        except (_Lost, TransientConflict) as lost:
            for entry in reversed(undo):
                _unapply(view, entry)
            attempts += 1
            if attempts > MAX_ATTEMPTS:
                raise StateConflict(
                    f"zone '{view.name}': placement lost {MAX_ATTEMPTS} races in a row to other "
                    "writers; try again"
                ) from None
            lost_host = lost.host_id if isinstance(lost, _Lost) else None
            if lost_host is not None and not _reread_host(snap.conn, view, lost_host):
                # The row is what the snapshot believed, yet SQL refused it: a rounding
                # difference on a limit. Do not try that host again in this call.
                avoid.add(lost_host)
            snap.check(force=attempts % 10 == 0)
            requests = [_refresh_groups(snap, r) for r in requests]
            continue
        except BaseException:
            for entry in reversed(undo):
                _unapply(view, entry)
            raise
        _count_own_updates(view, decisions)
        return [
            _plan(view, r, d, e, u)
            for (r, d), e, u in zip(decisions, explanations, claim_uuids, strict=True)
        ]


def _with_bulk_groups(
    r: Resolved, view: ZoneView, done: list[tuple[Resolved, Decision]]
) -> Resolved:
    """Affinity among the VMs of one bulk call, which the database does not know yet."""
    if not done or (not r.anti_groups and not r.affinity_requested):
        return r
    hosts = {view.h_id[d.host] for _, d in done}
    changes: dict[str, Any] = {}
    if r.anti_groups:
        name = r.group_names.get(r.anti_groups[0], "?")
        changes["anti_hosts"] = {**dict.fromkeys(hosts, name), **r.anti_hosts}
    if r.affinity_hosts is None and r.affinity_requested:
        changes["affinity_hosts"] = frozenset(hosts)
    return replace(r, **changes) if changes else r


def _count_own_updates(view: ZoneView, decisions: list[tuple[Resolved, Decision]]) -> None:
    """Our claim bumped capacity_version once per host UPDATE: so does the view, so that
    the next freshness check does not take our own writes for someone else's."""
    updated = [view.h_id[i] for i in {d.host for _, d in decisions}]
    updated += list(
        {
            r.reserved_host
            for r, d in decisions
            if r.reserved_host is not None and not d.reuses_reservation
        }
    )
    for hid in updated:
        i = view.host_index.get(hid)
        if i is not None:
            view.h_version[i] += 1
    view.fingerprint = (view.fingerprint[0], view.fingerprint[1] + len(updated))


def _apply(view: ZoneView, r: Resolved, d: Decision, sign: int) -> tuple:
    rcpu = r.reserved_cpu if d.reuses_reservation else 0
    rmem = r.reserved_mem if d.reuses_reservation else 0
    view.apply(d.host, sign * r.cpu, -sign * rcpu, sign * r.memory, -sign * rmem)
    old = None
    if r.reserved_host is not None and not d.reuses_reservation:
        old = view.host_index.get(r.reserved_host)
        if old is not None:
            view.apply(old, 0, -sign * r.reserved_cpu, 0, -sign * r.reserved_mem)
    pools = []
    for v, pi in d.pools:
        if v.fixed_pool is None:
            view.pools[pi].allocated += sign * v.size
            pools.append((pi, v.size))
    return (d.host, r.cpu, rcpu, r.memory, rmem, old, r.reserved_cpu, r.reserved_mem, pools)


def _unapply(view: ZoneView, entry: tuple) -> None:
    host, cpu, rcpu, mem, rmem, old, old_cpu, old_mem, pools = entry
    view.apply(host, -cpu, rcpu, -mem, rmem)
    if old is not None:
        view.apply(old, 0, old_cpu, 0, old_mem)
    for pi, size in pools:
        view.pools[pi].allocated -= size


def _global_limits(view: ZoneView) -> dict[str, float]:
    """The global factors and thresholds the claim SQL falls back to (a cluster's or a
    pool's own value, when set, wins inside the statement)."""
    if view.limits is not None:
        return view.limits
    s = dict(view.structure[4])
    view.limits = {
        "gcf": float(s["cpu.overprovisioning.factor"]),
        "gmf": float(s["mem.overprovisioning.factor"]),
        "gof": float(s["storage.overprovisioning.factor"]),
        "gct": float(s["pool.storage.capacity.disablethreshold"]),
        "gat": float(s["pool.storage.allocated.capacity.disablethreshold"]),
    }
    return view.limits


def _claim(conn: Conn, view: ZoneView, decisions: list[tuple[Resolved, Decision]]) -> list[str]:
    """The claim transaction. Raises _Lost (rolled back) when a re-check fails."""
    g = _global_limits(view)
    host_rows: dict[int, dict[str, Any]] = {}
    releases: dict[int, list[int]] = {}
    pool_rows: dict[int, int] = {}
    for r, d in decisions:
        hid = view.h_id[d.host]
        row = host_rows.setdefault(
            hid,
            {
                "id": hid,
                "cpu": 0,
                "mem": 0,
                "rcpu": 0,
                "rmem": 0,
                "gcf": g["gcf"],
                "gmf": g["gmf"],
            },
        )
        row["cpu"] += r.cpu
        row["mem"] += r.memory
        if d.reuses_reservation:
            row["rcpu"] += r.reserved_cpu
            row["rmem"] += r.reserved_mem
        elif r.reserved_host is not None:
            old = releases.setdefault(r.reserved_host, [0, 0])
            old[0] += r.reserved_cpu
            old[1] += r.reserved_mem
        for v, pi in d.pools:
            if v.fixed_pool is None:
                pid = view.pools[pi].id
                pool_rows[pid] = pool_rows.get(pid, 0) + v.size
    now = conn.timestamp(utcnow())
    uuids = []
    claim_rows = []
    for r, d in decisions:
        c = view.clusters[d.cluster]
        uuid = new_uuid()
        uuids.append(uuid)
        claim_rows.append(
            {
                "uuid": uuid,
                "vm": r.vm_id,
                "account": r.account.id,
                "domain": r.account.domain_id,
                "zone": view.zone_id,
                "pod": c.pod_id,
                "cluster": c.id,
                "host": view.h_id[d.host],
                "cpu_count": r.cpu_count,
                "cpu": r.cpu,
                "mem": r.memory,
                "now": now,
                "claim": r.claim_id,
            }
        )
    with conn.transaction():
        _check_groups(conn, view, decisions)
        # Rows are locked in one global order (hosts by id, then pools by id), the order
        # release and expiry use too: two engines claiming overlapping hosts then queue
        # behind each other instead of deadlocking on PostgreSQL.
        for hid in sorted(host_rows.keys() | releases.keys()):
            row = host_rows.get(hid)
            if row is not None and conn.execute(CLAIM_HOST, row).rowcount != 1:
                raise _Lost(hid)
            if hid in releases:
                cpu, mem = releases[hid]
                conn.execute(
                    "UPDATE host SET cpu_reserved_mhz = cpu_reserved_mhz - :cpu, "
                    "memory_reserved_bytes = memory_reserved_bytes - :mem, "
                    "capacity_version = capacity_version + 1 WHERE id = :id",
                    {"id": hid, "cpu": cpu, "mem": mem},
                )
        for pid, size in sorted(pool_rows.items()):
            if conn.execute(CLAIM_POOL, {"id": pid, "size": size, **g}).rowcount != 1:
                raise _Lost(None)
        volume_rows: list[dict[str, Any]] = []
        plain = []
        for (r, d), row in zip(decisions, claim_rows, strict=True):
            new_volumes = [(v, pi) for v, pi in d.pools if v.fixed_pool is None]
            if r.claim_id is not None:
                if conn.execute(REUSE_CLAIM, row).rowcount != 1:
                    raise StateConflict(f"VM '{r.vm_name}' was placed by someone else meanwhile")
                claim_id = r.claim_id
            elif new_volumes:
                claim_id = _insert_returning_id(conn, row)
            else:
                plain.append(row)
                continue
            volume_rows.extend(
                {
                    "claim": claim_id,
                    "position": v.position,
                    "pool": view.pools[pi].id,
                    "volume": v.volume_id,
                    "size": v.size,
                }
                for v, pi in new_volumes
            )
        if len(plain) == 1:
            conn.execute(INSERT_CLAIM, plain[0])
        else:
            conn.executemany(INSERT_CLAIM, plain)
        conn.executemany(INSERT_CLAIM_VOLUME, volume_rows)
        _join_groups(conn, decisions)
    return uuids


def _insert_returning_id(conn: Conn, row: dict[str, Any]) -> int:
    if conn.is_sqlite:
        return int(conn.execute(INSERT_CLAIM, row).lastrowid)
    return int(conn.execute(INSERT_CLAIM + " RETURNING id", row).fetchone()[0])


def _check_groups(conn: Conn, view: ZoneView, decisions: list[tuple[Resolved, Decision]]) -> None:
    """Affinity re-checked inside the claim transaction, with the groups locked (PostgreSQL)
    so two engines cannot put two members of one anti-affinity group on one host."""
    groups = sorted({g for r, _ in decisions for g in r.anti_groups})
    if not groups:
        return
    if not conn.is_sqlite:  # SQLite: BEGIN IMMEDIATE already serialises writers
        for g in groups:
            conn.execute("SELECT id FROM affinitygroup WHERE id = :g FOR UPDATE", {"g": g})
    for r, d in decisions:
        hid = view.h_id[d.host]
        for g in r.anti_groups:
            if hid in group_hosts(conn, g, r.vm_id):
                raise _Lost(hid)


def _join_groups(conn: Conn, decisions: list[tuple[Resolved, Decision]]) -> None:
    rows = [
        {"g": g, "v": r.vm_id} for r, _ in decisions if r.vm_id is not None for g in r.group_ids
    ]
    if not rows:
        return
    existing = {
        (g, v)
        for g, v in conn.rows(
            "SELECT group_id, vm_id FROM affinitygroupmember WHERE vm_id IN ("
            + ",".join(str(int(row["v"])) for row in rows)
            + ")"
        )
    }
    conn.executemany(
        "INSERT INTO affinitygroupmember (group_id, vm_id) VALUES (:g, :v)",
        [row for row in rows if (row["g"], row["v"]) not in existing],
    )


def _reread_host(conn: Conn, view: ZoneView, host_id: int) -> bool:
    """Bring one host of the view up to date; True if the database differed."""
    i = view.host_index.get(host_id)
    if i is None:
        return True
    row = conn.execute(
        "SELECT status, resource_state, cpu_used_mhz, cpu_reserved_mhz, memory_used_bytes, "
        "memory_reserved_bytes, capacity_version FROM host WHERE id = :id",
        {"id": host_id},
    ).fetchone()
    if row is None:
        return True
    known = (
        view.h_status[i],
        view.h_rstate[i],
        view.h_cpu_used[i],
        view.h_cpu_res[i],
        view.h_mem_used[i],
        view.h_mem_res[i],
        view.h_version[i],
    )
    view.set_host(i, *row)
    return tuple(row) != known


def _refresh_groups(snap: Snapshot, r: Resolved) -> Resolved:
    if not r.anti_groups:
        return r
    anti: dict[int, str] = {}
    names = r.group_names
    for g in r.anti_groups:
        for h in group_hosts(snap.conn, g, r.vm_id):
            anti.setdefault(h, names.get(g, "?"))
    return replace(r, anti_hosts=anti)


# --- releasing ---------------------------------------------------------------------------


def release_capacity(caller: Caller, vm: Any = None, *, on: str, claim: str | None = None) -> None:
    """Give back what a VM's placement claimed.

    on="stop": the host share moves from used to reserved on the same (last) host for
    `capacity.skipcounting.hours` seconds (the cluster's value if overridden), so the VM
    can restart there; its volumes keep their pool space. on="destroy": the host share
    (used or reserved) and the pool space of its volumes are given back, the claim is gone.
    `vm` is a VM UUID, instance name or row; `claim` a claim UUID for VM-less placements.
    """
    if on not in ("stop", "destroy"):
        raise InvalidParameter(f"release on {on!r}: expected 'stop' or 'destroy'", field="on")
    snap = snapshot_for(caller.db)
    conn = snap.conn
    with snap.lock:
        if claim is not None:
            where, params, label = "c.uuid = :r", {"r": claim}, f"claim '{claim}'"
        else:
            ref = getattr(vm, "uuid", vm)
            where = (
                "c.vm_id = (SELECT id FROM virtualmachine WHERE uuid = :r OR instance_name = :r)"
            )
            params, label = {"r": str(ref)}, f"VM '{getattr(vm, 'name', ref)}'"
        catalog = snap.check()
        with conn.transaction():
            row = conn.execute(
                "SELECT c.id, c.host_id, c.cluster_id, c.zone_id, c.cpu_mhz, c.memory_bytes, "
                f"c.state FROM placementclaim c WHERE {where}",
                params,
            ).fetchone()
            if row is None:
                raise NotFound(f"{label} holds no placement claim", field="vm")
            claim_id, host_id, cluster_id, zone_id, cpu, mem, state = row
            host_updates = state != ClaimState.DISKS
            if on == "stop":
                if state != ClaimState.USED:
                    raise StateConflict(f"{label} is not running on a host (claim is {state})")
                seconds = int(
                    catalog.skip_overrides.get(
                        cluster_id, catalog.settings["capacity.skipcounting.hours"]
                    )
                )
                if seconds > 0:
                    until = conn.timestamp(utcnow() + timedelta(seconds=seconds))
                    conn.execute(
                        "UPDATE host SET cpu_used_mhz = cpu_used_mhz - :cpu, "
                        "cpu_reserved_mhz = cpu_reserved_mhz + :cpu, "
                        "memory_used_bytes = memory_used_bytes - :mem, "
                        "memory_reserved_bytes = memory_reserved_bytes + :mem, "
                        "capacity_version = capacity_version + 1 WHERE id = :id",
                        {"id": host_id, "cpu": cpu, "mem": mem},
                    )
                    conn.execute(
                        "UPDATE placementclaim SET state = 'reserved', reserved_until = :u "
                        "WHERE id = :c",
                        {"c": claim_id, "u": until},
                    )
                else:
                    _give_back_host(conn, host_id, cpu, mem, 0, 0)
                    conn.execute(
                        "UPDATE placementclaim SET state = 'disks' WHERE id = :c", {"c": claim_id}
                    )
            else:
                if state == ClaimState.USED:
                    _give_back_host(conn, host_id, cpu, mem, 0, 0)
                elif state == ClaimState.RESERVED:
                    _give_back_host(conn, host_id, 0, 0, cpu, mem)
                for pool_id, size in conn.rows(
                    "SELECT pool_id, size_bytes FROM placementclaimvolume WHERE claim_id = :c "
                    "ORDER BY pool_id",
                    {"c": claim_id},
                ):
                    conn.execute(
                        "UPDATE storagepool SET allocated_bytes = allocated_bytes - :s "
                        "WHERE id = :p",
                        {"s": size, "p": pool_id},
                    )
                conn.execute(
                    "DELETE FROM placementclaimvolume WHERE claim_id = :c", {"c": claim_id}
                )
                conn.execute("DELETE FROM placementclaim WHERE id = :c", {"c": claim_id})
        # Our own write: keep the view exact without a reload.
        view = snap.zones.get(zone_id)
        if view is not None and host_id in view.host_index:
            _reread_host(conn, view, host_id)  # takes its capacity_version too
            if host_updates:
                view.fingerprint = (view.fingerprint[0], view.fingerprint[1] + 1)
            refresh_pools(conn, snap.catalog or catalog, view)


def _give_back_host(conn: Conn, host_id: int, cpu: int, mem: int, rcpu: int, rmem: int) -> None:
    conn.execute(
        "UPDATE host SET cpu_used_mhz = cpu_used_mhz - :cpu, "
        "memory_used_bytes = memory_used_bytes - :mem, "
        "cpu_reserved_mhz = cpu_reserved_mhz - :rcpu, "
        "memory_reserved_bytes = memory_reserved_bytes - :rmem, "
        "capacity_version = capacity_version + 1 WHERE id = :id",
        {"id": host_id, "cpu": cpu, "mem": mem, "rcpu": rcpu, "rmem": rmem},
    )


def expire_reservations(snap_or_caller: Any, zone_id: int | None = None) -> int:
    """End the reservations of stopped VMs whose capacity.skipcounting time has passed:
    their reserved share on the host is given back (their volumes keep their pools)."""
    snap = (
        snap_or_caller if isinstance(snap_or_caller, Snapshot) else snapshot_for(snap_or_caller.db)
    )
    conn = snap.conn
    ended = 0
    with snap.lock, conn.transaction():
        query = (
            "SELECT id, host_id, cpu_mhz, memory_bytes FROM placementclaim "
            "WHERE state = 'reserved' AND reserved_until <= :now"
        )
        order = " ORDER BY host_id, id"  # the claim's lock order: no deadlock with placers
        params: dict[str, Any] = {"now": conn.timestamp(utcnow())}
        if zone_id is not None:
            query += " AND zone_id = :z"
            params["z"] = zone_id
        for claim_id, host_id, cpu, mem in conn.rows(query + order, params):
            changed = conn.execute(
                "UPDATE placementclaim SET state = 'disks', reserved_until = NULL "
                "WHERE id = :c AND state = 'reserved'",
                {"c": claim_id},
            ).rowcount
            if changed:
                _give_back_host(conn, host_id, 0, 0, cpu, mem)
                ended += 1
    return ended
