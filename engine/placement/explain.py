"""Why a placement went where it went, or why nothing fit.

`explain()` runs every host of the zone through the filters in a fixed order and charges
each excluded host to the first filter that refused it, so the counts add up to the zone's
hosts. It then lists the winner and the runners-up in the order the planner and allocator
would try them, with their scores. It looks at every host, so the fast path only calls it
for previews, refusals, and when the caller asks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine.models import ResourceState
from engine.placement.planner import (
    Decision,
    choose_pools,
    first_score,
    more_picks,
    over_threshold,
    walk,
)
from engine.placement.request import Resolved
from engine.placement.snapshot import ZoneView

EXAMPLES = 3
RUNNERS_UP = 4
MAINTENANCE = {
    ResourceState.MAINTENANCE,
    ResourceState.PREPARE_FOR_MAINTENANCE,
    ResourceState.ERROR_IN_MAINTENANCE,
}
# The filters, in the order a host meets them.
FILTERS = (
    "zone enabled",
    "pod enabled",
    "cluster enabled",
    "pinned host",
    "avoid set",
    "host status",
    "resource state",
    "dedication",
    "host tags",
    "host cores",
    "host speed",
    "cluster threshold",
    "cpu",
    "memory",
    "anti-affinity",
    "host affinity",
    "storage",
)


def human_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            text = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            return f"{text} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class FilterResult:
    filter: str  # one of FILTERS
    reason: str  # reads after a count: "lack 8 GiB free memory"
    excluded: int
    examples: tuple[str, ...]  # a few host names


@dataclass(frozen=True)
class Candidate:
    host: str
    cluster: str
    pod: str
    cluster_score: float  # the planner's key for the cluster; lower is tried first
    host_score: float  # the allocator's key (random: the draw's rank); lower first


@dataclass(frozen=True)
class Explanation:
    zone: str
    hosts: int
    fitting: int
    planner: str
    allocator: str
    seed: int
    filters: tuple[FilterResult, ...]
    winner: Candidate | None
    runners_up: tuple[Candidate, ...] = ()
    how: str = ""  # "pinned host", "last host" or the planner
    notes: tuple[str, ...] = field(default_factory=tuple)

    def excluded(self, filter_name: str) -> int:
        return sum(f.excluded for f in self.filters if f.filter == filter_name)

    def summary(self) -> str:
        """One line: "zone 'eu-1': 0 of 120 hosts fit: 80 lack 8 GiB free memory, ..."."""
        if not self.hosts:
            return f"zone '{self.zone}' has no hosts"
        parts = [
            f"{f.excluded} {f.reason}"
            for f in sorted(
                (f for f in self.filters if f.excluded),
                key=lambda f: (-f.excluded, FILTERS.index(f.filter)),
            )
        ]
        text = f"zone '{self.zone}': {self.fitting} of {self.hosts} hosts fit"
        if parts:
            text += ": " + ", ".join(parts)
        if self.winner is not None:
            text += f"; chose host '{self.winner.host}' in cluster '{self.winner.cluster}'"
        return text


def _reason(view: ZoneView, r: Resolved, i: int) -> tuple[str, str] | None:
    """(filter, reason) of the first host-level filter that refuses host `i`, else None."""
    c = view.clusters[view.h_cluster[i]]
    hid = view.h_id[i]
    if not view.enabled:
        return "zone enabled", f"are in disabled zone '{view.name}'"
    if not c.pod_enabled:
        return "pod enabled", f"are in disabled pod '{c.pod_name}'"
    if not c.enabled:
        return "cluster enabled", "are in a disabled cluster"
    if r.pinned is not None and hid != r.pinned:
        return "pinned host", f"are not the pinned host '{r.pinned_name}'"
    if hid in r.avoid_hosts or c.id in r.avoid_clusters or c.pod_id in r.avoid_pods:
        return "avoid set", "are in the avoid set"
    if view.h_status[i] != "Up":
        return "host status", f"are {view.h_status[i]}"
    rstate = view.h_rstate[i]
    if rstate in MAINTENANCE:
        return "resource state", "in maintenance"
    if rstate != ResourceState.ENABLED:
        return "resource state", f"are {rstate.lower()}"
    if (view.dedicated or r.explicit) and not r.owner_ok(view.h_owner[i]):
        if view.h_owner[i] is None:
            return "dedication", f"are not dedicated to account '{r.account.name}'"
        return "dedication", "are dedicated to another account or domain"
    for tag in r.host_tags:
        if tag not in view.h_tags[i]:
            return "host tags", f"lack tag '{tag}'"
    if view.h_cores[i] < r.cpu_count:
        return "host cores", f"have fewer than {r.cpu_count} cores"
    if view.h_mhz[i] < r.cpu_speed:
        return "host speed", f"are slower than {r.cpu_speed} MHz"
    over = over_threshold(view, r, c)
    if over:
        threshold = c.cpu_threshold if over == "CPU" else c.mem_threshold
        return (
            "cluster threshold",
            f"are in clusters over the {over} disable threshold ({threshold:g})",
        )
    own_cpu = r.reserved_cpu if hid == r.reserved_host else 0
    own_mem = r.reserved_mem if hid == r.reserved_host else 0
    if view.h_cpu_used[i] + view.h_cpu_res[i] - own_cpu + r.cpu > view.h_cpu_cap[i]:
        return "cpu", f"lack {r.cpu} MHz free CPU"
    if view.h_mem_used[i] + view.h_mem_res[i] - own_mem + r.memory > view.h_mem_cap[i]:
        return "memory", f"lack {human_bytes(r.memory)} free memory"
    if hid in r.anti_hosts:
        return "anti-affinity", f"run a VM of anti-affinity group '{r.anti_hosts[hid]}'"
    if r.affinity_hosts is not None and hid not in r.affinity_hosts:
        return "host affinity", f"are not the host of affinity group '{r.affinity_group}'"
    return None


def explain(view: ZoneView, r: Resolved, decision: Decision | None) -> Explanation:
    counts: dict[tuple[str, str], list] = {}
    passing: dict[int, list[int]] = {}  # cluster index -> hosts passing host filters
    for i in range(view.host_count):
        why = _reason(view, r, i)
        if why is None:
            passing.setdefault(view.h_cluster[i], []).append(i)
            continue
        entry = counts.setdefault(why, [0, []])
        entry[0] += 1
        if len(entry[1]) < EXAMPLES:
            entry[1].append(view.h_name[i])
    storage_ok: dict[int, list] = {}
    for ci, hosts in passing.items():
        pools, failed = choose_pools(view, r, view.clusters[ci])
        if pools is not None:
            storage_ok[ci] = hosts
            continue
        assert failed is not None
        tags = f", tags {','.join(sorted(failed.tags))}" if failed.tags else ""
        why = (
            "storage",
            f"reach no primary storage with room for volume '{failed.label}' "
            f"({human_bytes(failed.size)}{tags})",
        )
        entry = counts.setdefault(why, [0, []])
        entry[0] += len(hosts)
        for i in hosts:
            if len(entry[1]) < EXAMPLES:
                entry[1].append(view.h_name[i])
    filters = []
    for name in FILTERS:
        found = [(reason, v) for (f, reason), v in counts.items() if f == name]
        if not found:
            filters.append(FilterResult(name, "", 0, ()))
        for reason, (n, examples) in sorted(found):
            filters.append(FilterResult(name, reason, n, tuple(examples)))
    fitting = sum(len(h) for h in storage_ok.values())

    ranked = _ranking(view, r, decision)
    winner = ranked[0] if ranked and decision is not None else None
    return Explanation(
        zone=view.name,
        hosts=view.host_count,
        fitting=fitting,
        planner=r.planner,
        allocator=r.allocator,
        seed=r.seed,
        filters=tuple(filters),
        winner=winner,
        runners_up=tuple(ranked[1:] if winner is not None else ranked[:RUNNERS_UP]),
        how=decision.how if decision is not None else "",
    )


def _ranking(view: ZoneView, r: Resolved, decision: Decision | None) -> list[Candidate]:
    """The winner first, then the hosts the planner would have tried next (the same walk,
    with the same seed, as the decision)."""
    rng = random.Random(r.seed)
    ranked: list[Candidate] = []
    seen: set[int] = set()

    def add(i: int, cluster_score: float, score: float) -> None:
        if i in seen:
            return
        seen.add(i)
        c = view.clusters[view.h_cluster[i]]
        ranked.append(Candidate(view.h_name[i], c.name, c.pod_name, cluster_score, score))

    if decision is not None and decision.how in ("pinned host", "last host"):
        add(decision.host, 0.0, 0.0)
        if decision.how == "pinned host":
            return ranked
    for cluster_score, ci, _, first in walk(view, r, rng):
        add(first, cluster_score, first_score(view, r, first))
        want = RUNNERS_UP + 1 - len(ranked)
        for i, score in more_picks(view, r, view.clusters[ci], first, rng, want):
            add(i, cluster_score, score)
        if len(ranked) > RUNNERS_UP:
            break
    return ranked[: RUNNERS_UP + 1]
