"""Benchmark: the console on a 10,000-host / 100,000-VM cloud, next to plain Textual.

    .venv/bin/python bench/console.py [--hosts 10000] [--vms 100000] [--keys 30]
                                      [--launches 7] [--datatable-limit 120] [--keep DIR]

Builds the database once in a temporary directory (`--keep DIR` reuses one across runs),
then drives every app headless with Textual's `run_test` and times, on the event loop:

- first paint: from creating the app to its first screen drawn (Stratus: the dashboard,
  still loading; the minimal baseline: an app showing one Label), and for Stratus also
  the time until the dashboard shows its data. Every launch runs in a fresh process (as
  an operator starts the console; imports are done before the clock starts), and the
  two apps alternate for `--launches` rounds: on this shared 2-core machine one launch
  of each swung from 28 to 64 ms between runs. The figures are the medians, the ratio
  the median of the rounds' ratios;
- key-press overhead: one key to a no-op binding in the minimal app until the screen is
  drawn again (what every timed key below also pays), and one key typed into a minimal
  app's Input (what a filter keystroke pays before any query). Keys are posted to the
  app as the terminal driver posts them, so the Pilot's own waits are not in any figure;
- VM table open: `open_view("vms")` until the first page is on screen (the row count
  follows in the background and is not included);
- page-down in the VM table: the key until the screen shows the next page (pages are
  fetched ahead in the background, waited for between keys but not timed);
- filter keystroke: the key until the rows matching the new text are on screen (the
  engine query runs in a worker thread and is included; the match count is not);
- Textual's stock DataTable given the same 100,000 rows: time to first paint, capped at
  `--datatable-limit` seconds (reported as exceeding it), and its page-down.

Prints the figures and their ratios to the baselines; the last line is one JSON object.
Targets (issue 7): first paint within 2x of the minimal app; VM table open < 300 ms;
page-down and filter < 50 ms each beyond the key-press overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Label
from textual.worker import WorkerState

SIZE = (120, 40)
FILTER_TEXT = "web-0042"


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# --- the database ------------------------------------------------------------------------


def prepare(directory: Path, hosts: int, vms: int) -> str:
    """The database at `directory` with `hosts` hosts and `vms` VMs (built if missing)."""
    os.environ["STRATUS_HOME"] = str(directory / "home")
    from engine.bootstrap import open_cloud
    from engine.demo import build_demo

    url = f"sqlite:///{directory / 'stratus.db'}"
    marker = directory / f"built-{hosts}-{vms}"
    if not marker.exists():
        started = time.perf_counter()
        cloud = open_cloud(url)
        build_demo(cloud.admin, hosts=hosts, vms=vms, replace=True)
        cloud.db.dispose()
        marker.write_text("ok")
        print(f"built {hosts:,} hosts and {vms:,} VMs in {time.perf_counter() - started:.1f} s")
    return url


# --- helpers -----------------------------------------------------------------------------


def send_key(app: App[Any], key: str) -> None:
    """Deliver a key as the terminal driver does (no Pilot waits in the timing)."""
    app.post_message(events.Key(key, key if len(key) == 1 else None))


async def painted(app: App[Any]) -> None:
    """Wait until the screen has been drawn after everything queued so far."""
    done = asyncio.Event()
    app.call_after_refresh(done.set)
    await done.wait()


async def idle(app: App[Any]) -> None:
    """Wait until no worker is pending or running."""
    while any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
        await asyncio.sleep(0.0005)


async def until(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.0005)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": ms(statistics.median(ordered)), "p95_ms": ms(p95)}


# --- baseline: a minimal app -------------------------------------------------------------


class MinimalApp(App[None]):
    BINDINGS = [Binding("x", "nothing", "Nothing", id="bench.nothing")]

    def compose(self) -> ComposeResult:
        yield Label("Hello from a minimal Textual app")

    def action_nothing(self) -> None:
        self.pressed += 1

    pressed = 0


class MinimalInputApp(App[None]):
    """The filter's own baseline: a minimal app with one Input that echoes keys."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="type here")


async def minimal_input(keys: int) -> dict[str, Any]:
    app = MinimalInputApp()
    async with app.run_test(size=SIZE):
        await painted(app)
        samples = []
        box = app.query_one(Input)
        for n in range(keys):
            t = time.perf_counter()
            before = box.value
            send_key(app, "abcdefghij"[n % 10])
            await until(lambda b=before: box.value != b)
            await painted(app)
            samples.append(time.perf_counter() - t)
    return {"key_press": summary(samples)}


async def minimal_app(keys: int) -> dict[str, Any]:
    started = time.perf_counter()
    app = MinimalApp()
    async with app.run_test(size=SIZE):
        await until(lambda: bool(app.screen.query(Label)))
        await painted(app)
        first_paint = time.perf_counter() - started
        samples = []
        for _ in range(keys):
            t = time.perf_counter()
            before = app.pressed
            send_key(app, "x")
            await until(lambda b=before: app.pressed > b)
            await painted(app)
            samples.append(time.perf_counter() - t)
    return {"first_paint_ms": ms(first_paint), "key_press": summary(samples)}


async def minimal_launch() -> dict[str, float]:
    started = time.perf_counter()
    app = MinimalApp()
    async with app.run_test(size=SIZE):
        await until(lambda: bool(app.screen.query(Label)))
        await painted(app)
        first_paint = time.perf_counter() - started
    return {"first_paint_ms": ms(first_paint)}


# --- Stratus -----------------------------------------------------------------------------


async def stratus_launch(url: str) -> dict[str, Any]:
    """Launch to the dashboard's first frame, then to its data (one fresh process each)."""
    from engine.bootstrap import open_cloud
    from engine.config import default_config
    from tui.app import StratusApp

    cloud = open_cloud(url, migrate=False)
    config = replace(default_config(), refresh_seconds=0)
    started = time.perf_counter()
    app = StratusApp(cloud.admin, config)
    figures: dict[str, Any] = {}
    async with app.run_test(size=SIZE):
        first = app.screen
        await until(lambda: first.is_mounted)
        await painted(app)
        figures["first_paint_ms"] = ms(time.perf_counter() - started)
        figures["first_screen"] = type(first).__name__
        await until(lambda: getattr(first, "loads", 0) >= 1)
        await painted(app)
        figures["first_data_ms"] = ms(time.perf_counter() - started)
    cloud.db.dispose()
    return figures


def launch_in_child(which: str, url: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--launch-only", which, "--url", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def launches(url: str, rounds: int) -> dict[str, Any]:
    """First paint of the minimal app and of Stratus, alternating, each in a new process."""
    minimal, stratus_paint, stratus_data, ratios = [], [], [], []
    first_screen = ""
    for _ in range(rounds):
        m = launch_in_child("minimal", url)["first_paint_ms"]
        s = launch_in_child("stratus", url)
        minimal.append(m)
        stratus_paint.append(s["first_paint_ms"])
        stratus_data.append(s["first_data_ms"])
        first_screen = s["first_screen"]
        ratios.append(s["first_paint_ms"] / m)
    return {
        "minimal_ms": minimal,
        "stratus_ms": stratus_paint,
        "stratus_data_ms": stratus_data,
        "minimal_first_paint_ms": round(statistics.median(minimal), 1),
        "stratus_first_paint_ms": round(statistics.median(stratus_paint), 1),
        "stratus_first_data_ms": round(statistics.median(stratus_data), 1),
        "ratio": statistics.median(ratios),
        "data_ratio": statistics.median(d / m for d, m in zip(stratus_data, minimal, strict=True)),
        "first_screen": first_screen,
    }


async def stratus(url: str, keys: int) -> dict[str, Any]:
    from engine.bootstrap import open_cloud
    from engine.config import default_config
    from tui.app import StratusApp
    from tui.screens.resources import ResourceScreen

    cloud = open_cloud(url, migrate=False)
    config = replace(default_config(), refresh_seconds=0)
    started = time.perf_counter()
    app = StratusApp(cloud.admin, config)
    figures: dict[str, Any] = {}
    async with app.run_test(size=SIZE) as pilot:
        first = app.screen
        await until(lambda: first.is_mounted)
        await painted(app)
        figures["first_paint_ms"] = ms(time.perf_counter() - started)
        figures["first_screen"] = type(first).__name__
        # The same screen once its data is in (the dashboard's engine query done).
        await until(lambda: getattr(first, "loads", 0) >= 1)
        await painted(app)
        figures["first_data_ms"] = ms(time.perf_counter() - started)

        opens = []
        for _ in range(5):
            t = time.perf_counter()
            app.open_view("vms")
            await until(lambda: isinstance(app.screen, ResourceScreen) and bool(app.screen.rows))
            await painted(app)
            opens.append(time.perf_counter() - t)
            screen = app.screen
            await idle(app)  # the row count follows the rows; not part of the figure
            app.pop_screen()
            await pilot.pause()
        figures["vm_table_open"] = summary(opens)
        figures["vm_rows_counted"] = screen.count.describe() if screen.count else "not yet"

        app.open_view("vms")
        await until(lambda: isinstance(app.screen, ResourceScreen) and bool(app.screen.rows))
        await idle(app)
        await painted(app)
        screen = app.screen
        assert isinstance(screen, ResourceScreen)
        downs = []
        for _ in range(keys):
            t = time.perf_counter()
            before = screen.table.cursor_row
            send_key(app, "pagedown")
            await until(lambda b=before: screen.table.cursor_row != b)
            await painted(app)
            downs.append(time.perf_counter() - t)
            # The next page loads in the background near the window's end; let it land
            # before the next key so that every key finds the same state.
            await idle(app)
        figures["page_down"] = summary(downs)
        figures["page_down_reached_row"] = screen.cursor_row.cells[0] if screen.cursor_row else ""

        await pilot.press("home")
        await idle(app)
        await pilot.press("slash")
        await pilot.pause()
        strokes = []
        for char in FILTER_TEXT:
            loads = screen.loads
            t = time.perf_counter()
            send_key(app, char)
            await until(lambda n=loads: screen.loads > n)  # this keystroke's rows are shown
            await painted(app)
            strokes.append(time.perf_counter() - t)
            await idle(app)  # the count of matches follows; not part of the figure
        figures["filter_keystroke"] = summary(strokes)
        figures["filter_matches"] = screen.count.describe() if screen.count else "?"
    cloud.db.dispose()
    return figures


# --- baseline: Textual's DataTable with every row ------------------------------------------


def all_vm_rows(url: str) -> tuple[list[str], list[tuple[str, ...]]]:
    from engine import listing
    from engine.bootstrap import open_cloud

    cloud = open_cloud(url, migrate=False)
    rows: list[tuple[str, ...]] = []
    page = listing.list_page(cloud.admin, "vms", limit=listing.MAX_PAGE)
    while True:
        rows.extend(r.cells for r in page.rows)
        if not page.more_after:
            break
        page = listing.list_page(
            cloud.admin, "vms", after=page.rows[-1].cursor, limit=listing.MAX_PAGE
        )
    cloud.db.dispose()
    return [label for _id, label, _s in listing.column_labels("vms")], rows


class StockTableApp(App[None]):
    def __init__(self, labels: list[str], rows: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.labels, self.rows = labels, rows

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*self.labels)
        table.add_rows(self.rows)
        table.focus()


async def stock_datatable(url: str, keys: int) -> dict[str, Any]:
    labels, rows = all_vm_rows(url)
    started = time.perf_counter()
    app = StockTableApp(labels, rows)
    figures: dict[str, Any] = {"rows": len(rows)}
    async with app.run_test(size=SIZE):
        await painted(app)
        figures["first_paint_ms"] = ms(time.perf_counter() - started)
        table = app.query_one(DataTable)
        downs = []
        for _ in range(min(keys, 10)):
            t = time.perf_counter()
            before = table.cursor_row
            send_key(app, "pagedown")
            await until(lambda b=before: table.cursor_row != b)
            await painted(app)
            downs.append(time.perf_counter() - t)
        figures["page_down"] = summary(downs)
    return figures


def stock_in_child(url: str, limit: float, keys: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--stock-datatable-only", url, "--keys", str(keys)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return {"rows": None, "first_paint_ms": None, "first_paint_exceeded_s": limit}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=30, help="timed key presses per figure")
    parser.add_argument(
        "--launches", type=int, default=7, help="first-paint rounds (a fresh process each)"
    )
    parser.add_argument("--datatable-limit", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the database here")
    parser.add_argument("--stock-datatable-only", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--launch-only", choices=["minimal", "stratus"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.launch_only == "minimal":
        print(json.dumps(asyncio.run(minimal_launch())))
        return 0
    if args.launch_only == "stratus":
        print(json.dumps(asyncio.run(stratus_launch(args.url))))
        return 0
    if args.stock_datatable_only:
        # Run in a child process: its event loop blocks while the DataTable measures rows,
        # so only the parent's timeout can cap it.
        print(json.dumps(asyncio.run(stock_datatable(args.stock_datatable_only, args.keys))))
        return 0

    directory = args.keep or Path(tempfile.mkdtemp(prefix="stratus-bench-console-"))
    directory.mkdir(parents=True, exist_ok=True)
    url = prepare(directory, args.hosts, args.vms)

    paints = launches(url, args.launches)
    minimal = asyncio.run(minimal_app(args.keys))
    typing = asyncio.run(minimal_input(args.keys))
    console = asyncio.run(stratus(url, args.keys))
    stock = stock_in_child(url, args.datatable_limit, args.keys)

    overhead = minimal["key_press"]["p50_ms"]
    ratio_paint = paints["ratio"]
    beyond_down = console["page_down"]["p50_ms"] - overhead
    beyond_filter = console["filter_keystroke"]["p50_ms"] - overhead
    typing_overhead = typing["key_press"]["p50_ms"]
    beyond_typing = console["filter_keystroke"]["p50_ms"] - typing_overhead
    print(f"database: {args.hosts:,} hosts, {args.vms:,} VMs ({directory})")
    print(
        f"minimal app      first paint {paints['minimal_first_paint_ms']:8.1f} ms median of "
        f"{args.launches} launches {paints['minimal_ms']}"
    )
    print(f"minimal app      key press   {overhead:8.1f} ms p50 (the overhead of a key)")
    print(f"minimal Input    keystroke   {typing_overhead:8.1f} ms p50 (a key echoed by an Input)")
    print(
        f"stratus          first paint {paints['stratus_first_paint_ms']:8.1f} ms "
        f"({paints['first_screen']}) median of {args.launches} launches "
        f"{paints['stratus_ms']}; {ratio_paint:.2f}x minimal (median of the rounds' "
        "ratios; target <= 2x)"
    )
    print(
        f"stratus          with data   {paints['stratus_first_data_ms']:8.1f} ms "
        f"= {paints['data_ratio']:.2f}x minimal"
    )
    print(
        f"                 (one launch in this process, after the minimal apps: first paint "
        f"{console['first_paint_ms']:.1f} ms, with data {console['first_data_ms']:.1f} ms)"
    )
    print(
        f"stratus          VM table    {console['vm_table_open']['p50_ms']:8.1f} ms p50, "
        f"{console['vm_table_open']['p95_ms']:.1f} p95 (target < 300 ms)"
    )
    print(
        f"stratus          page-down   {console['page_down']['p50_ms']:8.1f} ms p50, "
        f"{console['page_down']['p95_ms']:.1f} p95; {beyond_down:+.1f} ms beyond a key "
        "(target < 50)"
    )
    print(
        f"stratus          filter key  {console['filter_keystroke']['p50_ms']:8.1f} ms p50, "
        f"{console['filter_keystroke']['p95_ms']:.1f} p95; {beyond_filter:+.1f} ms beyond a "
        f"key (target < 50), {beyond_typing:+.1f} ms beyond an Input keystroke; "
        f"'{FILTER_TEXT}' matches {console['filter_matches']}"
    )
    if stock["first_paint_ms"] is None:
        print(
            f"stock DataTable  first paint > {args.datatable_limit:.0f} s with "
            f"{args.vms:,} rows (gave up; includes reading the rows)"
        )
    else:
        stock_ratio = stock["first_paint_ms"] / paints["stratus_first_paint_ms"]
        print(
            f"stock DataTable  first paint {stock['first_paint_ms']:8.1f} ms with "
            f"{stock['rows']:,} rows = {stock_ratio:.1f}x "
            f"stratus; page-down {stock['page_down']['p50_ms']:.1f} ms p50"
        )
    result = {
        "hosts": args.hosts,
        "vms": args.vms,
        "minimal_first_paint_ms": paints["minimal_first_paint_ms"],
        "minimal_key_press_p50_ms": overhead,
        "first_paint_launches": args.launches,
        "stratus_first_screen": paints["first_screen"],
        "stratus_first_paint_ms": paints["stratus_first_paint_ms"],
        "first_paint_ratio_to_minimal": round(ratio_paint, 2),
        "stratus_first_data_ms": paints["stratus_first_data_ms"],
        "first_data_ratio_to_minimal": round(paints["data_ratio"], 2),
        "stratus_first_paint_in_process_ms": console["first_paint_ms"],
        "vm_table_open_p50_ms": console["vm_table_open"]["p50_ms"],
        "vm_table_open_p95_ms": console["vm_table_open"]["p95_ms"],
        "page_down_p50_ms": console["page_down"]["p50_ms"],
        "page_down_p95_ms": console["page_down"]["p95_ms"],
        "page_down_beyond_key_press_ms": round(beyond_down, 1),
        "filter_keystroke_p50_ms": console["filter_keystroke"]["p50_ms"],
        "filter_keystroke_p95_ms": console["filter_keystroke"]["p95_ms"],
        "filter_beyond_key_press_ms": round(beyond_filter, 1),
        "minimal_input_keystroke_p50_ms": typing_overhead,
        "filter_beyond_input_keystroke_ms": round(beyond_typing, 1),
        "stock_datatable_rows": stock["rows"],
        "stock_datatable_first_paint_ms": stock["first_paint_ms"],
        "stock_datatable_gave_up_after_s": stock.get("first_paint_exceeded_s"),
        "stock_datatable_page_down_p50_ms": stock.get("page_down", {}).get("p50_ms"),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
