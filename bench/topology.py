"""Benchmark: building the demo datacenter, and capacity roll-ups over its hosts.

    .venv/bin/python bench/topology.py [--hosts 10000] [--baseline-hosts 1000] [--runs 50]

Each size gets a fresh SQLite file and STRATUS_HOME in a temporary directory. For each it
measures the time to build the demo with that many hosts, then the p50 and p95 of
`capacity_rollups` at zone, pod and cluster level, and of the raw sqlite3 GROUP BY over
the host table that the zone roll-up boils down to. The baseline size runs in the same
process so the scaling ratios compare like with like. The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine.bootstrap import open_cloud
from engine.capacity import capacity_rollups
from engine.demo import build_demo

LEVELS = ("zone", "pod", "cluster")
WARMUP = 3

# The host part of the zone roll-up (engine/capacity.py), as plain SQL.
RAW_ZONE_ROLLUP = """
SELECT h.zone_id,
       count(*),
       sum(CASE WHEN h.status = 'Up' THEN 1 ELSE 0 END),
       sum(CAST(h.cpu_cores * h.cpu_mhz AS REAL) * coalesce(c.cpu_overprovisioning_factor, 1.0)),
       sum(h.cpu_used_mhz),
       sum(h.cpu_reserved_mhz),
       sum(CAST(h.memory_bytes AS REAL) * coalesce(c.mem_overprovisioning_factor, 1.0)),
       sum(h.memory_used_bytes),
       sum(h.memory_reserved_bytes),
       sum(h.cpu_cores)
FROM host h JOIN cluster c ON c.id = h.cluster_id
GROUP BY h.zone_id
"""


def timings_ms(fn: Callable[[], object], runs: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    result = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        result.append((time.perf_counter() - started) * 1000)
    return result


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def measure(hosts: int, runs: int, workdir: Path) -> dict[str, float]:
    """Build a demo of `hosts` hosts in its own database and time the roll-ups over it."""
    home = workdir / f"home-{hosts}"
    os.environ["STRATUS_HOME"] = str(home)
    db_file = workdir / f"stratus-{hosts}.db"
    cloud = open_cloud(f"sqlite:///{db_file}")
    raw = sqlite3.connect(db_file)
    figures: dict[str, float] = {}
    try:
        started = time.perf_counter()
        summary = build_demo(cloud.admin, hosts=hosts)
        build_s = time.perf_counter() - started
        assert summary.hosts == hosts
        figures[f"demo_build_s_{hosts}_hosts"] = round(build_s, 3)
        print(
            f"{hosts:>7,} hosts  build the demo: {build_s:6.2f} s "
            f"({summary.zones} zones, {summary.pods} pods, {summary.clusters} clusters, "
            f"{hosts / build_s:,.0f} hosts/s)"
        )
        assert sum(r[1] for r in raw.execute(RAW_ZONE_ROLLUP).fetchall()) == hosts

        # The zone roll-up and its raw query alternate, so that load from elsewhere on the
        # machine hits both alike and their ratio stays meaningful.
        service_ms: list[float] = []
        raw_ms: list[float] = []
        for i in range(WARMUP + runs):
            started = time.perf_counter()
            capacity_rollups(cloud.admin, "zone")
            middle = time.perf_counter()
            raw.execute(RAW_ZONE_ROLLUP).fetchall()
            ended = time.perf_counter()
            if i >= WARMUP:
                service_ms.append((middle - started) * 1000)
                raw_ms.append((ended - middle) * 1000)
        by_level = {"zone": service_ms}
        for level in LEVELS[1:]:
            by_level[level] = timings_ms(
                lambda level=level: capacity_rollups(cloud.admin, level), runs
            )
        for level, times in by_level.items():
            figures[f"capacity_rollup_{level}_p50_ms_{hosts}_hosts"] = round(p50(times), 3)
            figures[f"capacity_rollup_{level}_p95_ms_{hosts}_hosts"] = round(p95(times), 3)
            print(
                f"{hosts:>7,} hosts  capacity_rollups({level!r}):{' ' * (9 - len(level))}"
                f"p50 {p50(times):6.2f} ms, p95 {p95(times):6.2f} ms over {runs} runs"
            )
    finally:
        raw.close()
        cloud.db.dispose()

    figures[f"raw_group_by_p50_ms_{hosts}_hosts"] = round(p50(raw_ms), 3)
    figures[f"raw_group_by_p95_ms_{hosts}_hosts"] = round(p95(raw_ms), 3)
    ratio = p50(service_ms) / p50(raw_ms)
    figures[f"rollup_vs_raw_ratio_{hosts}_hosts"] = round(ratio, 2)
    print(
        f"{hosts:>7,} hosts  raw sqlite3 GROUP BY (zone): p50 {p50(raw_ms):6.2f} ms, "
        f"p95 {p95(raw_ms):6.2f} ms; the zone roll-up service takes {ratio:.1f}x that"
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000, help="demo size (default 10000)")
    parser.add_argument(
        "--baseline-hosts", type=int, default=1_000, help="baseline size (default 1000)"
    )
    parser.add_argument("--runs", type=int, default=50, help="timed runs per figure")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="stratus-bench-"))
    print(f"Stratus topology benchmark: SQLite files in {workdir}, {os.cpu_count()} CPUs")
    try:
        base = measure(args.baseline_hosts, args.runs, workdir)
        big = measure(args.hosts, args.runs, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    n, b = args.hosts, args.baseline_hosts
    figures = {**big, **base}
    figures[f"demo_build_scaling_{n}_vs_{b}"] = round(
        big[f"demo_build_s_{n}_hosts"] / base[f"demo_build_s_{b}_hosts"], 2
    )
    for level in LEVELS:
        key = f"capacity_rollup_{level}_p50_ms"
        figures[f"{key}_scaling_{n}_vs_{b}"] = round(
            big[f"{key}_{n}_hosts"] / base[f"{key}_{b}_hosts"], 2
        )
    figures["rollup_vs_raw_ratio"] = big[f"rollup_vs_raw_ratio_{n}_hosts"]
    figures["runs"] = args.runs
    rollups = ", ".join(
        f"{level} roll-up {figures[f'capacity_rollup_{level}_p50_ms_scaling_{n}_vs_{b}']}x"
        for level in LEVELS
    )
    build = figures[f"demo_build_scaling_{n}_vs_{b}"]
    print(f"scaling {b:,} -> {n:,} hosts ({n / b:g}x): build {build}x, {rollups}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
