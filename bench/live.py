"""Live-query benchmark (issue 6): initial load, change latency, subscriptions per process.

One command, one run: ``make bench-live`` (``.venv/bin/python -m bench.live``). It starts the
real server (``python -m tools.cli serve`` through tests/api/harness.py) on a temporary data
directory and drives it with the tests' WebSocket client (trio + wsproto) from this process:

1. **Initial load**: a SHARED table of 1,000 rows and one of 100,000; time from sending
   ``subscribe`` (``options: {"batch_size": B}``) until the last ``initial_data_batch`` row
   arrived (paging with ``next_batch``), B = 1,000 and 10,000 (the page-size limit); one
   warm-up load, then ``--load-repeats`` (9; 3 with ``--quick``) measured ones: the median
   (and the minimum). The time includes the client's gunzip and ``json.loads`` of each page.
2. **Change latency**: 100 authenticated connections; 1, 100 (one per connection) and
   10,000 (100 per connection) subscriptions on one table; sequential single-row INSERTs via
   ``POST /v1/api/sql``; latency = arrival of each ``change`` frame minus the moment the INSERT's
   HTTP response was read (0 when the frame came first: the commit path queues changes
   before the response is written). p50/p99 over every frame, and over the last frame of
   each INSERT.
3. **Memory**: the server's RSS (``/proc/<pid>/status`` VmRSS) before and after the 10,000
   subscriptions, divided by 10,000.

The client shares the machine (and its cores) with the server: latencies include the
client's own scheduling. Options: ``--inserts N`` (default 50), ``--quick`` (fewer rows and
inserts, for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from bench import cells_json
from tests.api.auth_client import sql
from tests.api.ws_client import WsClient, ws_connect
from tests.api.ws_harness import run_sql, ws_server

SECTIONS = {"rate_limit": {"max_subscriptions_per_user": 50_000,
                           "max_messages_per_sec": 1_000_000,
                           "max_queries_per_sec": 1_000_000},
            # Idle benchmark sockets must not hit the heartbeat timeout between scenarios.
            "websocket": {"client_timeout_secs": 3600}}


def log(text: str) -> None:
    sys.stderr.write(text + "\n")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def fill(server, token: str, table: str, rows: int) -> None:
    await run_sql(server, token, f"CREATE TABLE app.{table} (id BIGINT PRIMARY KEY, "
                                 "note TEXT, n INT) WITH (TYPE='SHARED', ACCESS_LEVEL='PUBLIC')")
    for start in range(0, rows, 1000):
        values = ", ".join(f"({i}, 'row {i} of the benchmark', {i % 97})"
                           for i in range(start, min(rows, start + 1000)))
        await run_sql(server, token, f"INSERT INTO app.{table} VALUES {values}")


async def initial_load(ws: WsClient, table: str, batch: int, sub_id: str) -> tuple[float, int]:
    started = time.perf_counter()
    await ws.send({"type": "subscribe", "subscription": {
        "id": sub_id, "sql": f"SELECT * FROM app.{table}", "options": {"batch_size": batch}}})
    await ws.recv_json(120)  # ack
    count = 0
    while True:
        message = await ws.recv_json(120)
        count += len(message["rows"])
        control = message["batch_control"]
        if not control["has_more"]:
            break
        await ws.send({"type": "next_batch", "subscription_id": sub_id,
                       "last_seq_id": control["last_seq_id"]})
    elapsed = (time.perf_counter() - started) * 1000
    await ws.send({"type": "unsubscribe", "subscription_id": sub_id})
    return elapsed, count


class Tracker:
    """Change-frame arrivals; ``wait_for(n)`` returns once ``n`` frames arrived in total."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, float]] = []
        self.target = 0
        self.reached = trio.Event()

    def add(self, row_id: int) -> None:
        self.arrivals.append((row_id, time.perf_counter()))
        if len(self.arrivals) >= self.target:
            self.reached.set()

    async def wait_for(self, target: int, seconds: float) -> bool:
        self.target, self.reached = target, trio.Event()
        if len(self.arrivals) >= target:
            return True
        with trio.move_on_after(seconds):
            await self.reached.wait()
            return True
        return False


async def receiver(ws: WsClient, tracker: Tracker) -> None:
    while True:
        message = await ws.recv_json(3600)
        if message["type"] == "change":
            tracker.add(int(message["rows"][0]["id"]))
        elif message["type"] == "error":
            log(f"error frame: {message}")


async def subscribe_many(clients: list[WsClient], per_connection: int, prefix: str) -> None:
    for c, ws in enumerate(clients):
        for k in range(per_connection):
            await ws.send({"type": "subscribe", "subscription": {
                "id": f"{prefix}{c}-{k}", "sql": "SELECT * FROM app.feed WHERE n >= 0"}})
        for _ in range(per_connection):
            assert (await ws.recv_json(60))["type"] == "subscription_ack"


def _stats(arrivals: list[tuple[int, float]], origin: dict[int, float]) -> tuple[float, ...]:
    frames = [max(0.0, (t - origin[i]) * 1000) for i, t in arrivals if i in origin]
    last: dict[int, float] = {}
    for i, t in arrivals:
        last[i] = max(last.get(i, 0.0), t)
    lasts = [max(0.0, (t - origin[i]) * 1000) for i, t in last.items() if i in origin]
    return pct(frames, 0.5), pct(frames, 0.99), pct(lasts, 0.5), pct(lasts, 0.99)


async def latency(server, admin: str, clients: list[WsClient], subs: int, inserts: int,
                  first_id: int) -> dict[str, object]:
    """Closed loop: one INSERT, wait for its ``subs`` change frames, the next INSERT. Each
    frame is timed from the request being sent and from its acknowledgment (HTTP response
    read)."""
    tracker = Tracker()
    sent: dict[int, float] = {}
    acks: dict[int, float] = {}
    async with trio.open_nursery() as nursery:
        for ws in clients:
            nursery.start_soon(receiver, ws, tracker)
        for n, i in enumerate(range(first_id, first_id + inserts), start=1):
            sent[i] = time.perf_counter()
            await sql(server, admin, f"INSERT INTO app.feed VALUES ({i}, 'x', 1)")
            acks[i] = time.perf_counter()
            if not await tracker.wait_for(n * subs, 30):
                log(f"insert {i}: only {len(tracker.arrivals)} of {n * subs} frames")
                break
        nursery.cancel_scope.cancel()
    arrivals = tracker.arrivals
    return {"frames": len(arrivals), "expected": subs * inserts,
            "sent": _stats(arrivals, sent), "ack": _stats(arrivals, acks)}


async def run(args: argparse.Namespace) -> None:
    big = 10_000 if args.quick else 100_000
    inserts = 20 if args.quick else args.inserts
    with tempfile.TemporaryDirectory(prefix="live-bench-") as scratch:
        async with ws_server(Path(scratch), **SECTIONS) as (server, users):
            await run_sql(server, users.admin, "CREATE TABLE app.feed (id BIGINT PRIMARY KEY,"
                                               " note TEXT, n INT) WITH (TYPE='SHARED', "
                                               "ACCESS_LEVEL='PUBLIC')")
            print(f"# Live-query benchmark\n\nmachine: {platform.processor() or platform.machine()}"
                  f", {os.cpu_count()} cores, Python {platform.python_version()}")
            # Latency and memory first, on a fresh server: the big initial loads would
            # leave freed memory behind that hides the per-subscription cost in the RSS.
            cells: list[dict] = []  # for --json (bench/cells_json.py)
            await latency_section(server, users, inserts, cells)
            log("filling tables …")
            await fill(server, users.admin, "small", 1000)
            await fill(server, users.admin, "big", big)
            repeats = 3 if args.quick else args.load_repeats
            print(f"\n## Initial load (subscribe → last initial row received), median of "
                  f"{repeats} loads\n")
            print("| rows | batch_size | pages | ms | min ms |\n|---|---|---|---|---|")
            async with ws_connect(server, token=users.alice) as ws:
                await ws.recv_json()
                for table, rows in (("small", 1000), ("big", big)):
                    for batch in (1000, 10_000):
                        await initial_load(ws, table, batch, "warm")  # warm caches
                        times = []
                        for n in range(repeats):
                            ms, count = await initial_load(ws, table, batch,
                                                           f"l{table}{batch}-{n}")
                            assert count == rows, (count, rows)
                            times.append(ms)
                        ms = statistics.median(times)
                        print(f"| {rows:,} | {batch:,} | {-(-rows // batch)} | {ms:.1f} "
                              f"| {min(times):.1f} |")
                        cells.append(cells_json.cell(
                            f"initial-{rows}-{batch}", f"initial load, {rows:,} rows, "
                            f"batch_size {batch:,}", "sluice", group=f"initial-{rows}",
                            x=batch, rate=rows / ms * 1000 if ms else None,
                            rate_unit="rows/s", metrics={"ms": ms}))
    if args.json is not None:
        cells_json.write(args.json, "live", cells)


async def latency_section(server, users, inserts: int, cells: list[dict]) -> None:
    print("\n## Change latency (closed loop: INSERT, all its frames, next INSERT), 100 "
          "connections\n")
    print("Each cell: p50 / p99 ms over every change frame, then over the last frame of each "
          "INSERT.\n")
    print("| subscriptions | frames | from INSERT sent | from INSERT acknowledged |"
          " last frame, from sent | last frame, from ack |\n|---|---|---|---|---|---|")
    async with trio.open_nursery() as nursery:
        clients: list[WsClient] = []
        ready = trio.Event()

        async def hold(index: int) -> None:
            async with ws_connect(server, token=users.alice) as ws:
                await ws.recv_json()
                clients.append(ws)
                if len(clients) == 100:
                    ready.set()
                await trio.sleep_forever()

        for index in range(100):
            nursery.start_soon(hold, index)
        await ready.wait()
        base = rss_kib(server.process.pid)
        next_id = 0
        for subs, per_conn, conns in ((1, 1, 1), (100, 1, 100), (10_000, 100, 100)):
            for ws in clients:  # start each scenario from zero subscriptions
                for key in list(getattr(ws, "_subs", [])):
                    await ws.send({"type": "unsubscribe", "subscription_id": key})
                ws._subs = []  # type: ignore[attr-defined]
            await trio.sleep(0.2)
            await subscribe_many(clients[:conns], per_conn, f"s{subs}-")
            for c, ws in enumerate(clients[:conns]):
                ws._subs = [f"s{subs}-{c}-{k}" for k in range(per_conn)]  # type: ignore
            held = rss_kib(server.process.pid)
            stats = await latency(server, users.admin, clients[:conns], subs, inserts, next_id)
            next_id += inserts
            sent, ack = stats["sent"], stats["ack"]
            print(f"| {subs:,} | {stats['frames']:,}/{stats['expected']:,} "
                  f"| {sent[0]:.2f} / {sent[1]:.2f} | {ack[0]:.2f} / {ack[1]:.2f} "
                  f"| {sent[2]:.2f} / {sent[3]:.2f} | {ack[2]:.2f} / {ack[3]:.2f} |")
            cells.append(cells_json.cell(
                f"latency-{subs}", f"change latency from INSERT sent, {subs:,} "
                "subscription(s)", "sluice", group="change latency", x=subs,
                p50_ms=sent[0], p99_ms=sent[1], metrics={
                    "ack_p50_ms": ack[0], "ack_p99_ms": ack[1], "frames": stats["frames"],
                    "expected": stats["expected"]}))
        per_sub = (held - base) * 1024 / 10_000
        print(f"\n## Subscriptions held\n\n10,000 subscriptions on 100 connections: server RSS "
              f"{base / 1024:.1f} MiB → {held / 1024:.1f} MiB, about {per_sub:,.0f} bytes per "
              "subscription.")
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inserts", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--load-repeats", type=int, default=9,
                        help="measured initial loads per cell (median reported)")
    parser.add_argument("--json", type=Path, help="also write the cells' numbers here "
                        "(bench/cells_json.py; read by bench/report.py)")
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
