"""Deciding: CloudStack's planners (cluster order) and allocators (host order), the host and
cluster filters, and storage for every volume.

The decision walks clusters in the planner's order and stops at the first one with a host
that passes every filter and pools for every volume; inside it the allocator picks the host.
Per-cluster sums (allocated fraction, largest free CPU and memory, the tags its hosts carry,
who its hosts are dedicated to) let the walk skip a cluster without looking at its hosts.

Planners (`vm.deployment.planner`, or the offering's):
- FirstFitPlanner: clusters least allocated first, by `host.capacityType.to.order.clusters`
  (CPU or RAM).
- UserDispersingPlanner: clusters where the account has the fewest running VMs first
  (ties: least allocated first).
- UserConcentratedPodPlanner: pods where the account has the most running VMs first, and
  inside a pod the least allocated cluster first.
Allocators (`vm.allocation.algorithm`): `random` (a seeded draw among the fitting hosts of
the cluster), `firstfit` (lowest host id), `userdispersing` (fewest of the account's VMs,
then lowest id), `firstfitleastconsumed` (least allocated fraction, then lowest id).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from engine.placement.request import Resolved, ResolvedVolume
from engine.placement.snapshot import ClusterView, ZoneView


@dataclass
class Decision:
    host: int  # index in the zone view
    cluster: int
    pools: list[tuple[ResolvedVolume, int]]  # volume -> pool index
    how: str  # "pinned host", "last host" or the planner's name
    reuses_reservation: bool


# --- filters ---------------------------------------------------------------------------


def cluster_open(view: ZoneView, r: Resolved, c: ClusterView) -> bool:
    """Cluster-level rules: allocation state, avoid set, disable thresholds."""
    if not (view.enabled and c.enabled and c.pod_enabled):
        return False
    if c.id in r.avoid_clusters or c.pod_id in r.avoid_pods:
        return False
    return not over_threshold(view, r, c)


def own_share(view: ZoneView, r: Resolved, c: ClusterView) -> tuple[int, int]:
    """The request's own reserved share inside cluster `c` (a restart does not add it twice)."""
    if r.reserved_host is None:
        return 0, 0
    i = view.host_index.get(r.reserved_host)
    if i is None or view.h_cluster[i] != c.index:
        return 0, 0
    return r.reserved_cpu, r.reserved_mem


def over_threshold(view: ZoneView, r: Resolved, c: ClusterView) -> str:
    """'' when under both disable thresholds, else "CPU" or "memory"."""
    own_cpu, own_mem = own_share(view, r, c)
    if not c.cpu_total or (c.cpu_alloc - own_cpu + r.cpu) / c.cpu_total > c.cpu_threshold:
        return "CPU"
    if not c.mem_total or (c.mem_alloc - own_mem + r.memory) / c.mem_total > c.mem_threshold:
        return "memory"
    return ""


def host_fits(view: ZoneView, r: Resolved, i: int) -> bool:
    """Every host-level rule (the cluster's are in `cluster_open`, storage in `choose_pools`)."""
    if not view.h_usable[i]:
        return False
    hid = view.h_id[i]
    if hid in r.avoid_hosts or (r.pinned is not None and hid != r.pinned):
        return False
    own_cpu = own_mem = 0
    if hid == r.reserved_host:
        own_cpu, own_mem = r.reserved_cpu, r.reserved_mem
    if view.h_cpu_used[i] + view.h_cpu_res[i] - own_cpu + r.cpu > view.h_cpu_cap[i]:
        return False
    if view.h_mem_used[i] + view.h_mem_res[i] - own_mem + r.memory > view.h_mem_cap[i]:
        return False
    if view.h_cores[i] < r.cpu_count or view.h_mhz[i] < r.cpu_speed:
        return False
    if r.host_tags:
        tags = view.h_tags[i]
        for tag in r.host_tags:
            if tag not in tags:
                return False
    if (view.dedicated or r.explicit) and not r.owner_ok(view.h_owner[i]):
        return False
    if hid in r.anti_hosts:
        return False
    return r.affinity_hosts is None or hid in r.affinity_hosts


def choose_pools(
    view: ZoneView, r: Resolved, c: ClusterView
) -> tuple[list[tuple[ResolvedVolume, int]] | None, ResolvedVolume | None]:
    """A pool for every volume, largest first, counting what this plan already put on each
    pool: cluster-scope pools before zone-wide ones, the one with the most room first.
    Returns (assignments, None) or (None, the volume that found no pool)."""
    if not r.volumes:
        return [], None
    planned: dict[int, int] = {}
    result = []
    for v in r.volumes:
        if v.fixed_pool is not None:
            p = next((p for p in view.pools if p.id == v.fixed_pool), None)
            if p is None or p.cluster_id not in (None, c.id) or not p.up:
                return None, v
            result.append((v, p.index))
            continue
        chosen = None
        for scope in (c.pools, view.zone_pools):
            best, best_room = None, -1.0
            for pi in scope:
                p = view.pools[pi]
                if v.tags <= p.tags and p.fits(v.size, planned.get(pi, 0)):
                    room = p.room() - planned.get(pi, 0)
                    if room > best_room:
                        best, best_room = pi, room
            if best is not None:
                chosen = best
                break
        if chosen is None:
            return None, v
        planned[chosen] = planned.get(chosen, 0) + v.size
        result.append((v, chosen))
    return result, None


# --- orders ----------------------------------------------------------------------------


def _util(view: ZoneView, r: Resolved, c: ClusterView) -> float:
    return c.cpu_util() if r.order_by == "CPU" else c.mem_util()


def cluster_order(view: ZoneView, r: Resolved) -> Iterator[tuple[float, int]]:
    """(score, cluster index) in the order the planner tries them; lower score first."""
    if r.planner == "FirstFitPlanner":
        yield from view.order_cpu if r.order_by == "CPU" else view.order_mem
        return
    counts = r.account_vms or {}
    per_cluster: dict[int, int] = {}
    per_pod: dict[int, int] = {}
    for host_id, n in counts.items():
        i = view.host_index.get(host_id)
        if i is None:
            continue
        c = view.clusters[view.h_cluster[i]]
        per_cluster[c.index] = per_cluster.get(c.index, 0) + n
        per_pod[c.pod_id] = per_pod.get(c.pod_id, 0) + n
    if r.planner == "UserDispersingPlanner":
        keyed = [
            ((per_cluster.get(c.index, 0), _util(view, r, c), c.index), c.index)
            for c in view.clusters
        ]
        for key, index in sorted(keyed):
            yield float(key[0]), index
    else:  # UserConcentratedPodPlanner
        keyed = [
            ((-per_pod.get(c.pod_id, 0), c.pod_id, _util(view, r, c), c.index), c.index)
            for c in view.clusters
        ]
        for key, index in sorted(keyed):
            yield float(key[0]), index


def host_score(view: ZoneView, r: Resolved, i: int) -> float:
    """The allocator's key for host `i` (lower goes first); random draws are not keys."""
    if r.allocator == "userdispersing":
        return float((r.account_vms or {}).get(view.h_id[i], 0))
    if r.allocator == "firstfitleastconsumed":
        if r.order_by == "CPU":
            return view.cpu_alloc(i) / view.h_cpu_cap[i] if view.h_cpu_cap[i] else 1.0
        return view.mem_alloc(i) / view.h_mem_cap[i] if view.h_mem_cap[i] else 1.0
    return float(view.h_id[i])


RANDOM_TRIES = 8


def first_pick(view: ZoneView, r: Resolved, c: ClusterView, rng: random.Random) -> int | None:
    """The allocator's first choice in cluster `c`, or None when no host of it fits.

    `random` draws a host of the cluster and keeps it if it fits (a few times) before it
    lists the fitting hosts and draws among them: either way every fitting host is equally
    likely, and a cluster with room is usually decided after one or two host checks.
    """
    usable = c.usable
    if r.allocator == "random":
        n = len(usable)
        for _ in range(RANDOM_TRIES):
            i = usable[rng.randrange(n)]
            if host_fits(view, r, i):
                return i
        fits = [i for i in usable if host_fits(view, r, i)]
        return fits[rng.randrange(len(fits))] if fits else None
    if r.allocator == "firstfit":
        return next((i for i in usable if host_fits(view, r, i)), None)
    fits = [i for i in usable if host_fits(view, r, i)]
    if not fits:
        return None
    return min(fits, key=lambda i: (host_score(view, r, i), view.h_id[i]))


def more_picks(
    view: ZoneView, r: Resolved, c: ClusterView, first: int, rng: random.Random, k: int
) -> list[tuple[int, float]]:
    """The allocator's next `k` choices in cluster `c` after `first`, with their scores."""
    fits = [i for i in c.usable if i != first and host_fits(view, r, i)]
    if r.allocator == "random":
        picked = []
        while fits and len(picked) < k:
            j = rng.randrange(len(fits))
            picked.append((fits[j], float(len(picked) + 1)))
            fits[j] = fits[-1]
            fits.pop()
        return picked
    if r.allocator == "firstfit":
        return [(i, float(view.h_id[i])) for i in fits[:k]]
    scored = sorted((host_score(view, r, i), view.h_id[i], i) for i in fits)
    return [(i, score) for score, _, i in scored[:k]]


def first_score(view: ZoneView, r: Resolved, i: int) -> float:
    if r.allocator == "random":
        return 0.0
    return host_score(view, r, i)


# --- the decision ----------------------------------------------------------------------


def cluster_may_fit(view: ZoneView, r: Resolved, c: ClusterView) -> bool:
    """Cheap necessary conditions, before looking at any host of the cluster."""
    if not c.usable:
        return False
    own_cpu, own_mem = own_share(view, r, c)
    if c.max_free_cpu + own_cpu < r.cpu or c.max_free_mem + own_mem < r.memory:
        return False
    if r.host_tags and not c.tags.issuperset(r.host_tags):
        return False
    if (view.dedicated or r.explicit) and not any(r.owner_ok(o) for o in c.owners):
        return False
    return cluster_open(view, r, c)


def walk(
    view: ZoneView, r: Resolved, rng: random.Random
) -> Iterator[tuple[float, int, list[tuple[ResolvedVolume, int]], int]]:
    """(cluster score, cluster, pools, host) for each cluster, in planner order, that can
    take the request; the host is the allocator's first choice there. The decision is the
    first; the explanation lists a few more."""
    for score, ci in cluster_order(view, r):
        c = view.clusters[ci]
        if not cluster_may_fit(view, r, c):
            continue
        pools, _ = choose_pools(view, r, c)
        if pools is None:
            continue
        i = first_pick(view, r, c, rng)
        if i is not None:
            yield score, ci, pools, i


def decide(view: ZoneView, r: Resolved, rng: random.Random) -> Decision | None:
    """The host (and pools) this request gets on `view`, or None when nothing fits."""
    for special, how in ((r.pinned, "pinned host"), (r.last_host, "last host")):
        if special is None:
            continue
        i = view.host_index.get(special)
        if i is None:
            continue
        c = view.clusters[view.h_cluster[i]]
        if cluster_open(view, r, c) and host_fits(view, r, i):
            pools, _ = choose_pools(view, r, c)
            if pools is not None:
                return Decision(i, c.index, pools, how, view.h_id[i] == r.reserved_host)
        if how == "pinned host":
            return None  # a pinned host is the only candidate
    for _, ci, pools, i in walk(view, r, rng):
        return Decision(i, ci, pools, r.planner, view.h_id[i] == r.reserved_host)
    return None
