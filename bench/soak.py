"""The soak (issue 9, "Load and soak"): a real ``sluice serve`` under a steady mixed load for
N minutes, sampled every 10 s, judged by bench/soak_stats.py.

    .venv/bin/python -m bench.soak --minutes 10        # the slow tier runs this (tests/soak)

Load, at fixed rates (a schedule, not flat out; a late request does not make the next one
sooner than its slot):

- NDJSON ingest of 50 rows every 0.5 s into ``soak.events``, a STREAM table (TTL 30 s);
- NDJSON ingest of 20 rows every second into ``soak.items``, a USER table (flush policy
  ``rows:500,interval:5``); an UPDATE of one live row every 0.25 s; every 2 s a DELETE of
  the rows more than 2,000 ids behind (the table stays the same size);
- a SQL INSERT into ``soak.feed`` (SHARED, same flush policy) every 0.1 s, and every 5 s a
  DELETE of the rows more than 1,000 ids behind;
- a SELECT every 0.2 s (rotating: a count, a point read, a range over the feed, the stream);
- topic ``soak.feed_events`` (source: feed inserts): one consumer group long-polling
  (``timeout_seconds`` 2, up to 200 messages) and acking each batch; every consumed offset
  must follow the previous one, and at the end every acknowledged feed insert was consumed;
- one WebSocket subscriber on ``SELECT * FROM soak.feed``: every insert change must arrive,
  in id order, with nothing missing at the end;
- maintenance an operator would schedule: ``STORAGE COMPACT TABLE`` on items and feed every
  30 s (nothing compacts automatically); with ``--clear-topic`` also ``CLEAR TOPIC`` every
  60 s once the group acked everything (the feed writer pauses while the group catches up,
  so the clear drops nothing unconsumed).

The server runs with bcrypt cost 4, per-user query and per-IP limits raised far above this
load, 1 MiB WAL segments (retention frees space in small steps), ``fsync = "always"`` and
topic retention 60 s (``[topics] retention_seconds``: a topic keeps every WAL segment from
its oldest retained message on, so the 7-day default would pin the whole run's WAL).
WAL retention runs every jobs round (1 s); STREAM eviction every 60 s.

A failed limit makes ``main`` exit 1 after printing the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import trio

from bench.soak_stats import (
    SAMPLE_INTERVAL_S,
    Recorder,
    Sample,
    Windows,
    cpu_seconds,
    dir_bytes,
    latency_table,
    rss_kib,
    sample_table,
    verdict,
)
from tests.api.harness import START_TIMEOUT_S, _read_until_ready, serve_command, server_env
from tests.api.ws_client import WsClient, ws_connect
from tests.crash_server.server import Node, Reply, call

WAL_SEGMENT_BYTES = 1024 * 1024
# Topic messages older than this are trimmed and stop pinning WAL segments (the 7-day
# default would keep every segment of a 10-minute run). The group acks within a second.
TOPIC_RETENTION_S = 60
CONFIG_TOML = f"""\
[storage]
wal_segment_size_bytes = {WAL_SEGMENT_BYTES}
[auth]
bcrypt_cost = 4
[rate_limit]
max_queries_per_sec = 100000
max_requests_per_ip_per_sec = 100000
[topics]
retention_seconds = {TOPIC_RETENTION_S}
"""
STREAM_TTL_S = 30
SCHEMA = [
    "CREATE NAMESPACE soak",
    f"CREATE TABLE soak.events (id BIGINT PRIMARY KEY, kind TEXT, v DOUBLE) "
    f"WITH (TYPE='STREAM', TTL_SECONDS={STREAM_TTL_S})",
    "CREATE TABLE soak.items (id BIGINT PRIMARY KEY, v BIGINT, note TEXT) "
    "WITH (TYPE='USER', FLUSH_POLICY='rows:500,interval:5')",
    "CREATE TABLE soak.feed (id BIGINT PRIMARY KEY, note TEXT) "
    "WITH (TYPE='SHARED', FLUSH_POLICY='rows:500,interval:5')",
    "CREATE TOPIC soak.feed_events",
    "ALTER TOPIC soak.feed_events ADD SOURCE soak.feed ON INSERT",
]
TOPIC, GROUP = "soak.feed_events", "soakers"
ITEMS_KEEP, FEED_KEEP = 2000, 1000  # rows kept behind the newest id
DRAIN_TIMEOUT_S = 60.0  # after the load: consumer and subscriber catch up within this
CLEAR_WAIT_S = 30.0  # the group must ack everything within this before a CLEAR TOPIC
PING_INTERVAL_S = 3.0  # below the server's 10 s client_timeout_secs


@dataclass
class Soak:
    node: Node
    rec: Recorder
    topic_clear: bool = False
    started: float = field(default_factory=trio.current_time)
    rng: random.Random = field(default_factory=lambda: random.Random(9))
    event_id: int = 0
    item_id: int = 0  # items ingested with a 2xx (ids 1..item_id)
    feed_id: int = 0  # feed rows inserted with a 2xx (ids 1..feed_id) = topic messages
    consumed: int = 0  # next topic offset the group expects
    received: int = 0  # feed insert changes the subscriber got (ids 1..received)
    feed_lock: trio.Lock = field(default_factory=trio.Lock)
    progress: trio.Event = field(default_factory=trio.Event)  # set on each consume/change

    def now(self) -> float:
        return trio.current_time() - self.started

    async def request(self, op: str, path: str, body: bytes | dict, *,
                      content_type: str = "application/json", what: str = "") -> Reply | None:
        """One timed request; anything but a 2xx is an error of the run (``what`` says
        which request in the error)."""
        started = trio.current_time()
        reply = await call(self.node, "POST", path, body, content_type=content_type)
        self.rec.latency(op, started - self.started, (trio.current_time() - started) * 1000)
        if reply is None or not 200 <= reply.status < 300:
            detail = "no reply" if reply is None else f"{reply.status} {reply.body[:300]!r}"
            self.rec.error(f"t={self.now():.0f}s {op} {what}: {detail}")
            return None
        return reply

    async def sql(self, op: str, text: str) -> Reply | None:
        return await self.request(op, "/v1/api/sql", {"sql": text}, what=repr(text[:120]))

    def notify(self) -> None:
        self.progress.set()
        self.progress = trio.Event()


def _ndjson(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


async def ingest_events(soak: Soak) -> None:
    rows = []
    for _ in range(50):
        soak.event_id += 1
        rows.append({"id": soak.event_id, "kind": soak.rng.choice("abcd"),
                     "v": soak.rng.random()})
    await soak.request("ingest stream", "/v1/api/ingest/soak/events", _ndjson(rows),
                       content_type="application/x-ndjson")


async def ingest_items(soak: Soak) -> None:
    first = soak.item_id + 1
    rows = [{"id": i, "v": i, "note": f"item {i} " + "x" * soak.rng.randint(10, 200)}
            for i in range(first, first + 20)]
    if await soak.request("ingest user", "/v1/api/ingest/soak/items", _ndjson(rows),
                          content_type="application/x-ndjson"):
        soak.item_id = first + 19


async def update_item(soak: Soak) -> None:
    if soak.item_id > 0:
        key = soak.rng.randint(max(1, soak.item_id - ITEMS_KEEP + 1), soak.item_id)
        await soak.sql("sql update", f"UPDATE soak.items SET v = v + 1 WHERE id = {key}")


async def trim_items(soak: Soak) -> None:
    await soak.sql("sql delete", f"DELETE FROM soak.items WHERE id <= {soak.item_id - ITEMS_KEEP}")


async def insert_feed(soak: Soak) -> None:
    async with soak.feed_lock:  # held by the topic clear while the group catches up
        key = soak.feed_id + 1
        if await soak.sql("sql insert", f"INSERT INTO soak.feed (id, note) VALUES "
                                        f"({key}, 'feed row {key}')"):
            soak.feed_id = key


async def trim_feed(soak: Soak) -> None:
    await soak.sql("sql delete", f"DELETE FROM soak.feed WHERE id <= {soak.feed_id - FEED_KEEP}")


async def select(soak: Soak) -> None:
    item, feed = max(1, soak.item_id - 10), max(0, soak.feed_id - 50)
    text = soak.rng.choice([
        "SELECT COUNT(*) FROM soak.items",
        f"SELECT id, v, note FROM soak.items WHERE id = {item}",
        f"SELECT id, note FROM soak.feed WHERE id > {feed} ORDER BY id",
        "SELECT kind, COUNT(*), AVG(v) FROM soak.events GROUP BY kind",
    ])
    await soak.sql("sql select", text)


async def compact(soak: Soak) -> None:
    for table in ("soak.items", "soak.feed"):
        await soak.sql("maintenance compact", f"STORAGE COMPACT TABLE {table}")


async def clear_topic(soak: Soak) -> None:
    """With the feed writer paused: waits until the group acked every message, then clears
    the topic (nothing unconsumed is dropped; offsets keep counting)."""
    async with soak.feed_lock:
        with trio.move_on_after(CLEAR_WAIT_S):
            while soak.consumed < soak.feed_id:
                await soak.progress.wait()
        if soak.consumed < soak.feed_id:
            soak.rec.error(f"t={soak.now():.0f}s the group is {soak.feed_id - soak.consumed} "
                           f"message(s) behind after {CLEAR_WAIT_S:.0f} s")
            return
        if await soak.sql("maintenance clear topic", f"CLEAR TOPIC {TOPIC}"):
            soak.rec.count("topic clears")


async def consumer(soak: Soak) -> None:
    """Long-polls the group; offsets must follow each other from 0; acks each batch (the
    group's committed offset is ``consumed`` once the ack is answered)."""
    request = {"topic_id": TOPIC, "group_id": GROUP, "start": "Earliest", "limit": 200,
               "timeout_seconds": 2}
    while True:
        reply = await call(soak.node, "POST", "/v1/api/topics/consume", request)
        if reply is None or reply.status != 200:
            soak.rec.error(f"t={soak.now():.0f}s consume: {reply and reply.status} "
                           f"{reply and reply.body[:300]!r}")
            await trio.sleep(1)
            continue
        offsets = [m["offset"] for m in reply.json["messages"]]
        if not offsets:
            continue
        expected = list(range(soak.consumed, soak.consumed + len(offsets)))
        if offsets != expected:
            soak.rec.error(f"t={soak.now():.0f}s consume: offsets {offsets[:5]}… where "
                           f"{expected[:5]}… were due")
        if await soak.request("topic ack", "/v1/api/topics/ack", {
                "topic_id": TOPIC, "group_id": GROUP, "upto_offset": offsets[-1]}):
            soak.consumed = offsets[-1] + 1
            soak.rec.count("messages consumed", len(offsets))
            soak.notify()


def _absorb_change(soak: Soak, message: dict) -> None:
    if message.get("type") == "error":
        soak.rec.error(f"t={soak.now():.0f}s subscriber: {message}")
    if message.get("type") != "change" or message.get("change_type") != "insert":
        return
    for row in message["rows"]:
        key = int(row["id"])
        if key != soak.received + 1:
            soak.rec.error(f"t={soak.now():.0f}s subscriber: change for id {key} after "
                           f"{soak.received}")
        soak.received = key
        soak.rec.count("changes received")
    soak.notify()


async def _ping(ws: WsClient) -> None:
    while True:
        await trio.sleep(PING_INTERVAL_S)
        await ws.send({"type": "ping"})


async def subscriber(soak: Soak, task_status: trio.TaskStatus[None]) -> None:
    """Subscribes to the (still empty) feed, reports ready, then checks every change."""
    try:
        async with ws_connect(soak.node, token=soak.node.token()) as ws:  # type: ignore[arg-type]
            first = await ws.recv_json()
            assert first["type"] == "auth_success", first
            await ws.send({"type": "subscribe", "subscription": {
                "id": "feed", "sql": "SELECT * FROM soak.feed"}})
            ack = await ws.recv_json()
            assert ack["type"] == "subscription_ack", ack
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_ping, ws)
                while True:
                    _absorb_change(soak, await ws.recv_json(3600))
    except (AssertionError, OSError, trio.BrokenResourceError) as exc:
        soak.rec.error(f"t={soak.now():.0f}s subscriber failed: {exc!r}")


async def take_sample(soak: Soak) -> None:
    data, pid = soak.node.data_dir, soak.node.process.pid

    def measure() -> tuple[int, int, int, float]:
        segments = dir_bytes(data / "tables") + dir_bytes(data / "streams")
        return rss_kib(pid), dir_bytes(data / "wal"), segments, cpu_seconds(pid)

    rss, wal, segments, cpu = await trio.to_thread.run_sync(measure)
    soak.rec.samples.append(Sample(soak.now(), rss, wal, segments, soak.rec.requests,
                                   len(soak.rec.errors), os.getloadavg()[0], cpu))


async def every(interval_s: float, action: Callable[[], Awaitable[None]], until: float,
                ) -> None:
    """Runs ``action`` on a fixed schedule (slot k at k * interval) until ``until``
    (trio time); a slot that is late does not make the next one earlier than its time."""
    next_at = trio.current_time()
    while next_at < until:
        await action()
        next_at += interval_s
        await trio.sleep_until(max(next_at, trio.current_time()))


def schedule(soak: Soak) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
    plan = [(0.5, ingest_events), (1.0, ingest_items), (0.25, update_item), (2.0, trim_items),
            (0.1, insert_feed), (5.0, trim_feed), (0.2, select),
            (SAMPLE_INTERVAL_S, take_sample), (30.0, compact)]
    if soak.topic_clear:
        plan.append((60.0, clear_topic))
    return [(interval, lambda fn=fn: fn(soak)) for interval, fn in plan]


async def _caught_up(soak: Soak) -> None:
    with trio.move_on_after(DRAIN_TIMEOUT_S):
        while soak.consumed < soak.feed_id or soak.received < soak.feed_id:
            await soak.progress.wait()
    for what, got in (("consumed", soak.consumed), ("received", soak.received)):
        if got != soak.feed_id:
            soak.rec.error(f"{what} {got} of {soak.feed_id} feed inserts "
                           f"{DRAIN_TIMEOUT_S:.0f} s after the load stopped")


async def drive(soak: Soak, duration_s: float) -> None:
    """The load for ``duration_s``, then the readers catch up and are checked."""
    async with trio.open_nursery() as readers:
        await readers.start(subscriber, soak)
        readers.start_soon(consumer, soak)
        soak.started = trio.current_time()
        until = soak.started + duration_s
        async with trio.open_nursery() as load:  # every task stops at `until` by itself
            for interval, action in schedule(soak):
                load.start_soon(every, interval, action, until)
        await take_sample(soak)
        await _caught_up(soak)
        readers.cancel_scope.cancel()


async def start_server(nursery: trio.Nursery, workdir: Path) -> Node:
    """``sluice serve`` on ``workdir/data`` with CONFIG_TOML; its stderr drains in
    ``nursery``. The caller stops it (``Node.stop``) and must ``aclose`` it."""
    (workdir / "server.toml").write_text(CONFIG_TOML)
    data_dir = workdir / "data"
    process = await trio.lowlevel.open_process(
        serve_command(), env=server_env(data_dir), cwd=workdir, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        with trio.fail_after(START_TIMEOUT_S):
            url = await _read_until_ready(process.stderr, lines)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    host, _, port = url.removeprefix("http://").rpartition(":")
    node = Node(process, host.strip("[]"), int(port), data_dir,
                bytearray("".join(lines).encode()))
    nursery.start_soon(_drain, process.stderr, node.stderr)
    return node


async def _drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


async def run_soak(workdir: Path, minutes: float, *, topic_clear: bool = False) -> Recorder:
    """Starts a server in ``workdir``, loads it for ``minutes``, stops it (exit 0 required,
    else an error of the run) and returns what was recorded."""
    rec = Recorder()
    async with trio.open_nursery() as nursery:
        node = await start_server(nursery, workdir)
        try:
            for text in SCHEMA:
                reply = await call(node, "POST", "/v1/api/sql", {"sql": text})
                assert reply is not None and reply.status == 200, (text, reply)
            await drive(Soak(node, rec, topic_clear), minutes * 60)
            try:
                await node.stop()
            except AssertionError as exc:
                rec.error(f"shutdown: {exc}")
        finally:
            await node.aclose()
            (workdir / "server.log").write_bytes(node.stderr)
    rec.server_problems = _problems(node.stderr.decode(errors="replace"))
    return rec


def _problems(log: str) -> list[str]:
    """The server's warnings, errors and tracebacks (its log is kept in server.log)."""
    keep, lines = False, []
    for line in log.splitlines():
        if "Traceback" in line or "ERROR" in line or "WARNING" in line:
            keep = True
        elif not line.startswith((" ", "\t")) and "Error" not in line:
            keep = False
        if keep:
            lines.append(line)
    return lines


def windows(minutes: float, warmup_s: float | None) -> Windows:
    duration = minutes * 60
    return Windows(min(120.0, duration / 5) if warmup_s is None else warmup_s, duration)


def report(rec: Recorder, w: Windows, failed: list[str]) -> str:
    a, b, c, end = w.bounds
    lines = [f"machine: {os.cpu_count()} CPUs (shared), load average at the end "
             f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
             f"warm-up 0-{a:.0f} s; third A {a:.0f}-{b:.0f} s, B {b:.0f}-{c:.0f} s, "
             f"C {c:.0f}-{end:.0f} s", "", sample_table(rec), "", latency_table(rec, w), "",
             "checked: " + ", ".join(f"{k} {v}" for k, v in sorted(rec.counts.items())),
             f"errors: {len(rec.errors)}", *[f"  {e}" for e in rec.errors[:20]],
             f"server log warnings/errors: {len(rec.server_problems)} line(s)",
             *[f"  {line}" for line in rec.server_problems[:60]], "",
             "verdict: " + ("PASS" if not failed else "FAIL"), *[f"  - {f}" for f in failed]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=None,
                        help="default: 2 minutes, or a fifth of a shorter run")
    parser.add_argument("--clear-topic", action="store_true",
                        help="also CLEAR TOPIC every 60 s once the group acked everything")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    with TemporaryDirectory(prefix="sluice-soak-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rec = trio.run(lambda: run_soak(workdir, args.minutes,
                                        topic_clear=args.clear_topic))
    w = windows(args.minutes, args.warmup_seconds)
    failed = verdict(rec, w)
    sys.stdout.write(f"soak of {args.minutes:g} min started {started}\n"
                     f"{report(rec, w, failed)}\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
