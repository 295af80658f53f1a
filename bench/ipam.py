"""Benchmark: public address allocation as a range fills, against a raw SQLite floor.

    .venv/bin/python bench/ipam.py [--runs 300] [--service-runs 100]

For a /24, a /20 and a /16 (each its own SQLite file, WAL, synchronous=NORMAL, as the
engine opens it; four ranges of that size, filled to 0 %, 50 %, 90 % and 99 %, each
dedicated to its own account) it times, round-robin over the levels and interleaved so
machine noise hits all alike:

- allocate+commit: the engine's picking UPDATE (engine.ipam.allocation.take_next_free)
  in one engine write transaction (Database.write(): session, BEGIN IMMEDIATE, commit);
- statement: the same compiled UPDATE … RETURNING on one held sqlite3 connection,
  BEGIN IMMEDIATE … COMMIT (what the statement costs without session/pool overhead);
- raw floor: one plain sqlite3 `UPDATE … WHERE id = ?` committed on a held connection;
- service: public.associate_public_ip (resolves, dedicated-range order, audit event).

Each timed allocation is undone untimed, so the fill level stays put. Then each range is
filled completely and the typed AddressExhausted error is timed (service and primitive).
Targets: allocate+commit at 99 % within 2x of 0 %; the raw floor at least 50 % of the
allocation's speed (floor / allocation >= 0.5); the full-range error under 1 ms.
The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from engine.bootstrap import open_cloud
from engine.ipam import public
from engine.ipam.allocation import next_free_statement, take_next_free
from engine.ipam.errors import AddressExhausted
from engine.models import Account
from engine.topology import create_zone

PREFIXES = (24, 20, 16)
FILLS = (0, 50, 90, 99)
WARMUP = 20


def p50_us(values: list[float]) -> float:
    return statistics.median(values) * 1e6


def _make_accounts(cloud, count: int) -> list[Account]:
    with cloud.db.write() as session:
        domain_id = session.get(Account, cloud.admin.account_id).domain_id  # type: ignore[union-attr]
        accounts = [Account(name=f"bench-{n}", domain_id=domain_id) for n in range(count)]
        session.add_all(accounts)
        session.flush()
        return accounts


def measure_prefix(prefix: int, runs: int, service_runs: int, workdir: Path) -> dict:
    """One zone with five ranges of this size, each dedicated to its own account: four
    filled to the FILLS levels and timed round-robin (so noise hits every level alike),
    one filled completely for the typed error."""
    os.environ["STRATUS_HOME"] = str(workdir / f"home-{prefix}")
    db_file = workdir / f"ipam-{prefix}.db"
    cloud = open_cloud(f"sqlite:///{db_file}")
    zone = create_zone(cloud.admin, "bench", dns1="8.8.8.8")
    accounts = _make_accounts(cloud, len(FILLS) + 1)
    ranges = []
    started = time.perf_counter()
    for n, account in enumerate(accounts):
        network = ipaddress.IPv4Network(f"10.{n + 1}.0.0/{prefix}")
        gateway = network.network_address + 1
        ranges.append(
            public.create_public_ip_range(
                cloud.admin,
                zone.uuid,
                gateway=str(gateway),
                netmask=str(prefix),
                start_ip=str(gateway + 1),
                end_ip=str(network.broadcast_address - 1),
                account_ref=account.uuid,
            )
        )
    create_s = time.perf_counter() - started
    size = ranges[0].size
    print(
        f"/{prefix}: {len(ranges)} ranges of {size:,} addresses (with their rows) created in "
        f"{create_s:.2f} s"
    )
    levels = list(zip(FILLS, ranges, accounts, strict=False))
    full_range, full_account = ranges[-1], accounts[-1]
    with cloud.db.write() as session:
        for fill, rng, _ in levels:
            session.execute(
                text(
                    "UPDATE publicipaddress SET state='Allocated' WHERE range_id=:r AND "
                    "ip_int < :limit"
                ),
                {"r": rng.id, "limit": rng.start_int + size * fill // 100},
            )
        session.execute(
            text("UPDATE publicipaddress SET state='Allocated' WHERE range_id=:r"),
            {"r": full_range.id},
        )

    # The floor and the held connection use the engine's pragmas (WAL, synchronous=NORMAL).
    raw = sqlite3.connect(db_file, isolation_level=None)
    held = sqlite3.connect(db_file, isolation_level=None)
    for conn in (raw, held):
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=60000")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    compiled = next_free_statement("public", ("account_id", "state")).compile(
        dialect=cloud.db.engine.dialect
    )
    statement_sql = str(compiled)

    def statement_args(range_id: int) -> tuple:
        params = compiled.construct_params(
            {"pool_id": range_id, "set_account_id": 1, "set_state": "Allocated"}
        )
        return tuple(params[name] for name in compiled.positiontup)  # type: ignore[union-attr]

    floor_row = raw.execute("SELECT max(id) FROM publicipaddress").fetchone()[0]
    values = {"state": "Allocated", "account_id": cloud.admin.account_id}

    def free_again(ids: list[int]) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.executemany(
            "UPDATE publicipaddress SET state='Free', account_id=NULL, domain_id=NULL, "
            "allocated=NULL WHERE id=?",
            [(i,) for i in ids],
        )
        raw.execute("COMMIT")

    alloc: dict[int, list[float]] = {fill: [] for fill in FILLS}
    stmt = {fill: [] for fill in FILLS}
    floor = {fill: [] for fill in FILLS}
    service = {fill: [] for fill in FILLS}
    args = {fill: statement_args(rng.id) for fill, rng, _ in levels}  # type: ignore[arg-type]
    for i in range(WARMUP + runs):
        for fill, rng, account in levels:
            t0 = time.perf_counter()
            with cloud.db.write() as session:
                taken = take_next_free(session, "public", rng.id, values)  # type: ignore[arg-type]
            t1 = time.perf_counter()
            held.execute("BEGIN IMMEDIATE")
            row = held.execute(statement_sql, args[fill]).fetchone()
            held.execute("COMMIT")
            t2 = time.perf_counter()
            raw.execute("BEGIN")
            raw.execute("UPDATE publicipaddress SET source_nat=? WHERE id=?", (i % 2, floor_row))
            raw.execute("COMMIT")
            t3 = time.perf_counter()
            assert taken is not None and row is not None
            freed = [taken[0], row[0]]
            if i < WARMUP + service_runs:
                t4 = time.perf_counter()
                got = public.associate_public_ip(cloud.admin, zone.uuid, account_ref=account.uuid)
                t5 = time.perf_counter()
                assert got.ip_int >= rng.start_int and got.ip_int <= rng.end_int
                freed.append(got.id)  # type: ignore[arg-type]
                if i >= WARMUP:
                    service[fill].append(t5 - t4)
            free_again(freed)
            if i >= WARMUP:
                alloc[fill].append(t1 - t0)
                stmt[fill].append(t2 - t1)
                floor[fill].append(t3 - t2)

    figures: dict = {f"range_size_{prefix}": size}
    for fill in FILLS:
        key = f"{prefix}_{fill}pct"
        a, st, fl, sv = (
            p50_us(alloc[fill]),
            p50_us(stmt[fill]),
            p50_us(floor[fill]),
            p50_us(service[fill]),
        )
        figures[f"alloc_commit_p50_us_{key}"] = round(a, 1)
        figures[f"statement_held_conn_p50_us_{key}"] = round(st, 1)
        figures[f"raw_floor_p50_us_{key}"] = round(fl, 1)
        figures[f"floor_over_alloc_{key}"] = round(fl / a, 3)
        figures[f"floor_over_statement_{key}"] = round(fl / st, 3)
        figures[f"service_associate_p50_us_{key}"] = round(sv, 1)
        print(
            f"/{prefix} {fill:>2}% full: allocate+commit p50 {a:6.1f} us | same statement, "
            f"held conn {st:5.1f} us | raw floor {fl:5.1f} us | floor/alloc {fl / a:.2f}, "
            f"floor/statement {fl / st:.2f} | service associate {sv:7.1f} us"
        )
    for fill in FILLS[1:]:
        figures[f"alloc_{fill}pct_over_0pct_{prefix}"] = round(
            figures[f"alloc_commit_p50_us_{prefix}_{fill}pct"]
            / figures[f"alloc_commit_p50_us_{prefix}_0pct"],
            2,
        )

    # The full range: the typed error, from the service and from the bare primitive.
    errors, misses = [], []
    for i in range(WARMUP + service_runs):
        t0 = time.perf_counter()
        try:
            public.associate_public_ip(cloud.admin, zone.uuid, account_ref=full_account.uuid)
        except AddressExhausted as exc:
            assert f"({size} addresses)" in str(exc)
        else:
            raise AssertionError("a full range handed out an address")
        t1 = time.perf_counter()
        with cloud.db.write() as session:
            assert take_next_free(session, "public", full_range.id, values) is None  # type: ignore[arg-type]
        t2 = time.perf_counter()
        if i >= WARMUP:
            errors.append(t1 - t0)
            misses.append(t2 - t1)
    figures[f"full_range_error_p50_us_{prefix}"] = round(p50_us(errors), 1)
    figures[f"full_range_miss_primitive_p50_us_{prefix}"] = round(p50_us(misses), 1)
    print(
        f"/{prefix} 100% full: AddressExhausted from associate_public_ip p50 "
        f"{p50_us(errors):.1f} us; the picking statement finds nothing in "
        f"{p50_us(misses):.1f} us"
    )
    raw.close()
    held.close()
    cloud.db.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="timed allocations per level")
    parser.add_argument(
        "--service-runs", type=int, default=100, help="timed service calls per level"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="stratus-bench-ipam-"))
    print(
        f"Stratus IPAM benchmark: SQLite files in {workdir}, {os.cpu_count()} CPUs, "
        f"{args.runs} timed allocations per level"
    )
    figures: dict = {}
    try:
        for prefix in PREFIXES:
            figures.update(measure_prefix(prefix, args.runs, args.service_runs, workdir))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    worst_flatness = max(figures[f"alloc_99pct_over_0pct_{p}"] for p in PREFIXES)
    worst_floor = min(figures[f"floor_over_alloc_{p}_{f}pct"] for p in PREFIXES for f in FILLS)
    worst_stmt = min(figures[f"floor_over_statement_{p}_{f}pct"] for p in PREFIXES for f in FILLS)
    worst_error = max(figures[f"full_range_error_p50_us_{p}"] for p in PREFIXES)
    figures.update(
        {
            "worst_alloc_99pct_over_0pct": worst_flatness,
            "target_flat_within_2x_met": worst_flatness <= 2.0,
            "worst_floor_over_alloc": worst_floor,
            "target_floor_over_alloc_ge_0_5_met": worst_floor >= 0.5,
            "worst_floor_over_statement_held_conn": worst_stmt,
            "worst_full_range_error_p50_us": worst_error,
            "target_full_range_error_under_1ms_met": worst_error < 1000,
            "runs": args.runs,
        }
    )
    print(
        f"flatness: 99% / 0% full at most {worst_flatness}x (target <= 2x); floor / "
        f"allocate+commit at least {worst_floor} (target >= 0.5); floor / statement on a "
        f"held connection at least {worst_stmt}; full-range error at most "
        f"{worst_error:.0f} us (target < 1000 us)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
