"""Topics benchmark (issue 5): consume + ack over HTTP and the cost of publishing, next to
Redis streams, measured in the same run on the same machine.

Run: ``.venv/bin/python -m bench.topics`` (``make bench-topics``); ``--quick`` for a smoke
run, ``--help`` for options; ``bench/README.md`` (section "Topics benchmark") explains the
cells and holds a reading of one run.

One invocation:

1. ``sluice serve`` on a fresh data directory (``bench/http_server.py``: default settings,
   fsync=always, only the rate limits raised) and a root token.
2. **Pre-fill**: table ``tbench.events`` (``id BIGINT PRIMARY KEY, user_id TEXT, payload
   TEXT``, SHARED; a row is ~100 B: 8 + 9 + 80 B of values) with a topic routing its
   INSERTs, filled with ``--messages`` rows (1,000,000) through ``POST
   /v1/api/ingest/tbench/events`` as Arrow IPC bodies of 10,000 rows, one request at a time.
3. **Consume cells**, batch 1, 100 and 1,000: a fresh consumer group per round reads from
   ``Earliest``; each step is ``POST /v1/api/topics/consume`` (``limit`` = batch) then
   ``POST /v1/api/topics/ack`` of the last offset, on one keep-alive connection; the client
   parses every reply (``json.loads``) and checks that offsets are contiguous. msgs/s =
   messages / wall time of the cell; p50/p99 per consume call and per ack call.
4. **Publish cells**, 0, 1 and 3 routes: a fresh table per round with that many topics
   sourcing its INSERTs (one partition, no WHERE, ``full`` payloads); ``--publish-rows``
   rows ingested as above; rows/s. Publishing cost = 1 - rate(k routes) / rate(0 routes).
5. **Redis** (``bench/topics_redis.py``; ``--no-redis`` skips it): redis-server from
   Debian's package with ``appendfsync always``, the same rows XADDed (pipelines of 1,000),
   then ``XREADGROUP COUNT 1/100/1000`` + ``XACK`` with redis-py, a fresh group per round.

Rounds are interleaved (round 1 of every cell, then round 2, …); figures are medians over
``--repeats`` rounds; targets are checked at the end (PASS/FAIL): ≥ 200,000 msgs/s consumed
in batches of 1,000 over HTTP; publishing with 1 and with 3 routes costs ≤ 20 % of the
insert rate without routes. Report on stdout (and ``--out``), progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench import cells_json
from bench.http_api import source_revision, wait_idle
from bench.http_peers import free_port
from bench.http_server import (
    HTTP_TIMEOUT_S,
    SERVER_TOML,
    HttpError,
    ServerProcess,
    base_env,
    bearer_token,
    process_cpu_seconds,
    running_server,
    sluice_command,
    sql,
)
from bench.wal_group_commit import machine_description

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "tbench"
TABLE = "events"
TOPIC = f"{NAMESPACE}.events_topic"
SCHEMA_SQL = "(id BIGINT PRIMARY KEY, user_id TEXT, payload TEXT) WITH (TYPE = 'SHARED')"
PAYLOAD_CHARS = 80  # + an 8-byte id and a 9-character user id: ~100 B of values a row
USERS = 1000
ROWS_PER_REQUEST = 10_000  # per ingest body while filling (= EngineConfig.param_rows_max)
CONSUME_PATH = "/v1/api/topics/consume"
ACK_PATH = "/v1/api/topics/ack"
INGEST_PATH = f"/v1/api/ingest/{NAMESPACE}/{{table}}"
ARROW_TYPE = "application/vnd.apache.arrow.stream"
BATCHES = (1, 100, 1000)
ROUTE_COUNTS = (0, 1, 3)
CONSUME_TARGET_MSGS_S = 200_000  # issue 5: batches of 1,000 over HTTP
PUBLISH_COST_MAX = 0.20  # issue 5: publishing costs <= 20 % of the insert rate
ROOT_PASSWORD = "bench-root-" + os.urandom(8).hex()


def progress(text: str) -> None:
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


# ---- rows -------------------------------------------------------------------------------------

def _payload(i: int) -> str:
    return (f"event {i:012d} " + "abcdefghijklmnopqrstuvwxyz0123456789" * 3)[:PAYLOAD_CHARS]


def row_batch(first: int, count: int) -> pa.RecordBatch:
    """Rows ``first .. first+count-1`` (id = row number)."""
    ids = range(first, first + count)
    return pa.record_batch([
        pa.array(ids, pa.int64()),
        pa.array([f"user{i % USERS:05d}" for i in ids], pa.string()),
        pa.array([_payload(i) for i in ids], pa.string())], names=["id", "user_id", "payload"])


def redis_rows(first: int, count: int) -> list[dict[str, str]]:
    """The same rows as stream entries (field → value)."""
    return [{"id": str(i), "user_id": f"user{i % USERS:05d}", "payload": _payload(i)}
            for i in range(first, first + count)]


def arrow_body(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


# ---- a keep-alive client ------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection with the bearer token (the benchmark's thread)."""

    def __init__(self, server: ServerProcess, token: str) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=HTTP_TIMEOUT_S)
        self.headers = {"Authorization": f"Bearer {token}",
                        "Content-Type": "application/json"}

    def post(self, path: str, body: bytes, content_type: str | None = None
             ) -> tuple[int, bytes]:
        self.send(path, body, content_type)
        return self.receive()

    def send(self, path: str, body: bytes, content_type: str | None = None) -> None:
        """Sends a request without waiting for its reply (``receive`` reads it)."""
        headers = self.headers if content_type is None else \
            self.headers | {"Content-Type": content_type}
        self.conn.request("POST", path, body=body, headers=headers)

    def receive(self) -> tuple[int, bytes]:
        reply = self.conn.getresponse()
        return reply.status, reply.read()

    def close(self) -> None:
        """Closes the connection; the next request opens a new one."""
        self.conn.close()


def ingest(client: Client, table: str, body: bytes, rows: int) -> None:
    """One Arrow ingest request of ``rows`` rows; raises unless all were written."""
    status, reply = client.post(INGEST_PATH.format(table=table), body, ARROW_TYPE)
    if status != 200 or json.loads(reply)["row_count"] != rows:
        raise HttpError(status, reply, f"ingesting {rows} rows into {table}")


def ingest_rows(client: Client, table: str, first: int, total: int) -> float:
    """Ingests rows ``first .. first+total-1`` in ``ROWS_PER_REQUEST`` bodies (built and
    serialised before the clock starts); returns the seconds the requests took."""
    bodies = [(arrow_body(batch), batch.num_rows) for batch in (
        row_batch(start, min(ROWS_PER_REQUEST, first + total - start))
        for start in range(first, first + total, ROWS_PER_REQUEST))]
    started = time.perf_counter()
    for body, rows in bodies:
        ingest(client, table, body, rows)
    return time.perf_counter() - started


# ---- samples and cells ------------------------------------------------------------------------

@dataclass(slots=True)
class Sample:
    rate: float = 0.0  # msgs/s or rows/s
    call_p50_ms: float = 0.0
    call_p99_ms: float = 0.0
    ack_p50_ms: float = 0.0
    ack_p99_ms: float = 0.0
    server_us: float = float("nan")  # server CPU (all threads) per message or row, µs
    count: int = 0  # messages or rows
    failure: str | None = None


@dataclass(slots=True)
class CellResult:
    key: str
    label: str
    samples: list[Sample] = field(default_factory=list)
    missing: str | None = None

    def failure(self) -> str | None:
        return next((s.failure for s in self.samples if s.failure), None)

    def median(self, name: str) -> float:
        values = [getattr(s, name) for s in self.samples if not s.failure]
        return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _consume_body(group: str, batch: int) -> bytes:
    return json.dumps({"topic_id": TOPIC, "group_id": group, "start": "Earliest",
                       "limit": batch}).encode()


def _parsed(reply: tuple[int, bytes], expected: int) -> int:
    """A consume reply parsed as a consumer would (``json.loads``); it must hold offsets
    ``expected …``. Returns the last offset."""
    status, body = reply
    if status != 200:
        raise HttpError(status, body, "consume")
    parsed = json.loads(body)
    offsets = [m["offset"] for m in parsed["messages"]]
    if not offsets or offsets != list(range(expected, expected + len(offsets))):
        raise RuntimeError(f"consume from {expected} returned offsets "
                           f"{offsets[:3]}…{offsets[-3:]} (next_offset {parsed['next_offset']})")
    return offsets[-1]


def _ack_body(group: str, offset: int) -> bytes:
    return json.dumps({"topic_id": TOPIC, "group_id": group, "upto_offset": offset}).encode()


def _check_ack(reply: tuple[int, bytes], offset: int) -> None:
    status, body = reply
    if status != 200 or json.loads(body).get("acknowledged_offset") != offset:
        raise HttpError(status, body, f"ack of {offset}")


@dataclass(slots=True)
class _Loop:
    """One consume cell's client: ``clients[0]`` consumes, acks go on ``clients[1]`` when
    pipelined (else on ``clients[0]``). Per-call times are send → reply read."""
    clients: tuple[Client, Client]
    group: str
    batch: int
    pipelined: bool
    consume_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    ack_in_flight: tuple[int, float] | None = None  # (offset, sent at)

    def send_consume(self) -> float:
        self.clients[0].send(CONSUME_PATH, _consume_body(self.group, self.batch))
        return time.perf_counter()

    def send_ack(self, offset: int) -> None:
        acker = self.clients[1] if self.pipelined else self.clients[0]
        acker.send(ACK_PATH, _ack_body(self.group, offset))
        self.ack_in_flight = (offset, time.perf_counter())

    def finish_ack(self) -> None:
        if self.ack_in_flight is not None:
            offset, sent = self.ack_in_flight
            acker = self.clients[1] if self.pipelined else self.clients[0]
            _check_ack(acker.receive(), offset)
            self.ack_ms.append((time.perf_counter() - sent) * 1e3)
            self.ack_in_flight = None


def consume_cell(clients: tuple[Client, Client], group: str, batch: int, seconds: float,
                 limit: int, *, pipelined: bool = False) -> Sample:
    """Consume + ack of every batch of ``batch`` messages from offset 0, for ``seconds`` or
    about ``limit`` messages (timed from the first send to the last ack reply).

    Sequential: consume, parse, ack, wait for the ack, next. Pipelined (what a client after
    throughput does; the claims make it safe): as soon as a consume reply is read the next
    consume is sent, then the reply is parsed and its ack sent on the second connection,
    whose reply is read one batch later — the server works on the next batch and the ack
    while the client parses."""
    loop = _Loop(clients, group, batch, pipelined)
    done = 0
    started = sent = loop.send_consume()
    while True:
        reply = clients[0].receive()
        loop.consume_ms.append((time.perf_counter() - sent) * 1e3)
        more = done + batch < limit and time.perf_counter() - started < seconds
        if more and pipelined:
            sent = loop.send_consume()
        last = _parsed(reply, done)
        loop.finish_ack()  # pipelined: the previous batch's ack
        loop.send_ack(last)
        if not pipelined:
            loop.finish_ack()
        done = last + 1
        if not more:
            break
        if not pipelined:
            sent = loop.send_consume()
    loop.finish_ack()
    wall = time.perf_counter() - started
    return Sample(done / wall, percentile(loop.consume_ms, 0.5),
                  percentile(loop.consume_ms, 0.99), percentile(loop.ack_ms, 0.5),
                  percentile(loop.ack_ms, 0.99), count=done)


def publish_cell(client: Client, token_sql: Callable[[str], Any], routes: int, round_no: int,
                 rows: int, pid: int) -> Sample:
    """``rows`` rows ingested into a fresh table with ``routes`` topics sourcing it; the
    server's (``pid``) CPU is counted over the ingest requests only."""
    table = f"pub_r{routes}_n{round_no}"
    topics = [f"{NAMESPACE}.pub_r{routes}_n{round_no}_t{k}" for k in range(routes)]
    token_sql(f"CREATE TABLE {NAMESPACE}.{table} {SCHEMA_SQL}")
    for topic in topics:
        token_sql(f"CREATE TOPIC {topic}")
        token_sql(f"ALTER TOPIC {topic} ADD SOURCE {NAMESPACE}.{table} ON INSERT")
    try:
        before = process_cpu_seconds([pid])[pid]
        seconds = ingest_rows(client, table, 0, rows)
        used = process_cpu_seconds([pid])[pid] - before
    finally:
        for topic in topics:
            token_sql(f"DROP TOPIC {topic}")
        token_sql(f"DROP TABLE {NAMESPACE}.{table}")
    return Sample(rows / seconds, server_us=used * 1e6 / rows, count=rows)


# ---- the run --------------------------------------------------------------------------------

@dataclass(slots=True)
class Bench:
    args: argparse.Namespace
    scratch: Path
    sluice: ServerProcess | None = None
    token: str = ""
    notes: list[str] = field(default_factory=list)
    redis: Any = None  # a topics_redis.RedisPeer unless --no-redis
    clients: tuple[Client, Client] | None = None  # consume (and ack); pipelined acks

    @contextlib.contextmanager
    def connected(self) -> Iterator[tuple[Client, Client]]:
        assert self.sluice is not None
        self.clients = (Client(self.sluice, self.token), Client(self.sluice, self.token))
        try:
            yield self.clients
        finally:
            for client in self.clients:
                client.close()

    def sql(self, text: str) -> Any:
        assert self.sluice is not None
        return sql(self.sluice, self.token, text)


@contextlib.contextmanager
def started(bench: Bench) -> Iterator[Bench]:
    """Starts Sluice (and Redis unless ``--no-redis``); stops them when the block exits."""
    with contextlib.ExitStack() as stack:
        directory = bench.scratch / "sluice"
        directory.mkdir()
        (directory / "server.toml").write_text(SERVER_TOML)
        env = base_env(KALAMDB_DATA_DIR=str(directory / "data"),
                       KALAMDB_SERVER_PORT=str(free_port()),
                       KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD)
        progress("starting sluice serve")
        bench.sluice = stack.enter_context(running_server(
            "sluice serve", sluice_command(), env=env, cwd=directory,
            log=bench.scratch / "sluice.log"))
        bench.token, source = bearer_token(bench.sluice, directory / "data", ROOT_PASSWORD)
        bench.notes.append(f"token: {source}")
        if not bench.args.no_redis:
            from bench.topics_redis import find_redis, redis_server

            progress("checking redis-server (bench/peers.sh redis) and starting it")
            bench.redis = stack.enter_context(redis_server(
                find_redis(), bench.scratch / "redis", bench.scratch / "redis.log"))
        yield bench


def prefill(bench: Bench, client: Client) -> None:
    args = bench.args
    bench.sql(f"CREATE NAMESPACE IF NOT EXISTS {NAMESPACE}")
    bench.sql(f"CREATE TABLE {NAMESPACE}.{TABLE} {SCHEMA_SQL}")
    bench.sql(f"CREATE TOPIC {TOPIC}")
    bench.sql(f"ALTER TOPIC {TOPIC} ADD SOURCE {NAMESPACE}.{TABLE} ON INSERT")
    progress(f"pre-filling {TOPIC} with {args.messages:,} messages")
    seconds = ingest_rows(client, TABLE, 0, args.messages)
    bench.notes.append(f"pre-fill: {args.messages:,} rows ingested (Arrow, {ROWS_PER_REQUEST:,}"
                       f" rows a request) into a table with 1 route in {seconds:.1f} s "
                       f"({args.messages / seconds:,.0f} rows/s)")
    if bench.redis is not None:
        from bench.topics_redis import fill

        progress(f"redis: XADD {args.messages:,} entries")
        seconds = fill(bench.redis, redis_rows, args.messages, progress)
        bench.notes.append(f"redis pre-fill: {args.messages:,} XADDs in pipelines of 1,000 "
                           f"in {seconds:.1f} s ({args.messages / seconds:,.0f} msgs/s)")


def _redis_sample(bench: Bench, batch: int, round_no: int) -> Sample:
    from bench.topics_redis import consume

    run = consume(bench.redis, f"g{batch}-r{round_no}", batch, bench.args.seconds,
                  bench.args.messages)
    if run.failure:
        return Sample(failure=run.failure)
    return Sample(run.messages / run.seconds, percentile(run.read_ms, 0.5),
                  percentile(run.read_ms, 0.99), percentile(run.ack_ms, 0.5),
                  percentile(run.ack_ms, 0.99), count=run.messages)


def build_cells(bench: Bench) -> list[tuple[CellResult, Callable[[int], Sample]]]:
    """Every cell with the function that measures one round of it."""
    args, clients = bench.args, bench.clients
    assert clients is not None
    assert bench.sluice is not None
    sluice_pid = bench.sluice.process.pid
    cells: list[tuple[CellResult, Callable[[int], Sample]]] = []
    for batch in args.batches:
        cells.append((CellResult(f"sluice-consume-{batch}",
                                 f"Sluice HTTP consume + ack, batch {batch:,}"),
                      lambda r, b=batch: consume_cell(clients, f"g{b}-r{r}", b, args.seconds,
                                                      args.messages)))
        if batch == max(args.batches):
            cells.append((CellResult(
                f"sluice-pipelined-{batch}",
                f"Sluice HTTP consume + ack, batch {batch:,}, pipelined (next consume and "
                f"this ack in flight while the client parses)"),
                lambda r, b=batch: consume_cell(clients, f"p{b}-r{r}", b, args.seconds,
                                                args.messages, pipelined=True)))
        result = CellResult(f"redis-consume-{batch}",
                            f"Redis XREADGROUP COUNT {batch:,} + XACK")
        if bench.redis is None:
            result.missing = "n/a (--no-redis)"
        cells.append((result, lambda r, b=batch: _redis_sample(bench, b, r)))
    for routes in ROUTE_COUNTS:
        cells.append((CellResult(f"publish-{routes}",
                                 f"Sluice ingest into a table with {routes} route(s)"),
                      lambda r, k=routes: publish_cell(clients[0], bench.sql, k, r,
                                                       args.publish_rows, sluice_pid)))
    return cells


def _with_server_cpu(bench: Bench, key: str, measure: Callable[[int], Sample],
                     round_no: int) -> Sample:
    """``measure(round_no)`` with ``server_us`` filled in: the CPU the cell's server (Sluice, or
    redis-server) used per message or row — steadier than rates on a shared machine."""
    assert bench.sluice is not None
    assert bench.clients is not None
    for client in bench.clients:  # fresh connections: the server closes idle ones (keep-
        client.close()            # alive timeout), and a failed cell may leave one unread
    pid = bench.redis.process.pid if key.startswith("redis") else bench.sluice.process.pid
    wait_idle(lambda: [bench.sluice.process.pid])  # background jobs (flush) left by the last
    before = process_cpu_seconds([pid]).get(pid, 0.0)
    sample = measure(round_no)
    used = process_cpu_seconds([pid]).get(pid, 0.0) - before
    if not sample.failure and sample.count and sample.server_us != sample.server_us:
        sample.server_us = used * 1e6 / sample.count
    return sample


def run_rounds(bench: Bench) -> list[CellResult]:
    cells = build_cells(bench)
    consume = [c for c in cells if not c[0].key.startswith("publish")]
    publish = [c for c in cells if c[0].key.startswith("publish")]
    for round_no in range(1, bench.args.repeats + 1):
        shift = (round_no - 1) % len(publish)  # no publish cell always runs first
        for result, measure in consume + publish[shift:] + publish[:shift]:
            if result.missing:
                continue
            try:
                sample = _with_server_cpu(bench, result.key, measure, round_no)
            except Exception as exc:  # a bad reply fails this cell, not the benchmark
                sample = Sample(failure=f"{type(exc).__name__}: {exc}")
            result.samples.append(sample)
            if sample.failure:
                progress(f"round {round_no} {result.key}: CELL FAILED: {sample.failure}")
            else:
                progress(f"round {round_no}/{bench.args.repeats} {result.key}: "
                         f"{sample.rate:,.0f}/s, call p50 {sample.call_p50_ms:.2f} ms")
    return [result for result, _ in cells]


# ---- report -------------------------------------------------------------------------------------

def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def results_table(results: Sequence[CellResult]) -> str:
    lines = ["| cell | msgs/s or rows/s | call p50 / p99 ms | ack p50 / p99 ms "
             "| server CPU µs per msg or row |", "|---|---:|---:|---:|---:|"]
    for r in results:
        if r.missing or r.failure():
            lines.append(f"| {r.label} | {r.missing or 'FAILED: ' + str(r.failure())} | | | |")
            continue
        ack = "" if r.key.startswith("publish") else \
            f"{_ms(r.median('ack_p50_ms'))} / {_ms(r.median('ack_p99_ms'))}"
        call = "" if r.key.startswith("publish") else \
            f"{_ms(r.median('call_p50_ms'))} / {_ms(r.median('call_p99_ms'))}"
        lines.append(f"| {r.label} | {r.median('rate'):,.0f} | {call} | {ack} "
                     f"| {r.median('server_us'):.2f} |")
    return "\n".join(lines)


def target_checks(results: Sequence[CellResult]) -> list[tuple[str, str, bool]]:
    by_key = {r.key: r for r in results if not r.missing and not r.failure()}
    checks = []
    for key, how in (("sluice-consume-1000", "sequential client"),
                     ("sluice-pipelined-1000", "pipelined client")):
        cell = by_key.get(key)
        if cell is not None:
            rate = cell.median("rate")
            checks.append((f"HTTP consume + ack, batches of 1,000 ≥ {CONSUME_TARGET_MSGS_S:,} "
                           f"msgs/s ({how})", f"{rate:,.0f} msgs/s",
                           rate >= CONSUME_TARGET_MSGS_S))
    base = by_key.get("publish-0")
    for routes in ROUTE_COUNTS[1:]:
        cell = by_key.get(f"publish-{routes}")
        if base is None or cell is None:
            continue
        cost = 1 - cell.median("rate") / base.median("rate")
        cpu = cell.median("server_us") / base.median("server_us") - 1
        checks.append((f"publishing cost with {routes} route(s) ≤ {PUBLISH_COST_MAX:.0%} of "
                       f"the insert rate", f"{cost:.1%} ({cell.median('rate'):,.0f} vs "
                       f"{base.median('rate'):,.0f} rows/s); server CPU per row "
                       f"{cpu:+.1%}", cost <= PUBLISH_COST_MAX))
    return checks


def render_report(bench: Bench, facts: Sequence[tuple[str, str]], settings: str,
                  results: Sequence[CellResult]) -> str:
    out = ["# Sluice topics benchmark", ""]
    out += [f"- **{name}**: {value}" for name, value in facts]
    out += [f"- **settings**: {settings}"]
    out += [f"- **note**: {note}" for note in bench.notes]
    out += ["", results_table(results), "",
            "msgs/s: messages consumed and acked per second of wall time, one client process "
            "on keep-alive connections, parsing every reply (json.loads; redis-py for Redis); "
            "calls in sequence unless pipelined. call p50/p99: per consume (XREADGROUP) call, "
            "send to reply read; ack: per ack (XACK) call (pipelined: its reply is read one "
            "batch later, so this includes the overlap). rows/s: rows ingested per second "
            "(10,000-row Arrow bodies, one request at a time).", "",
            "| target | measured | result |", "|---|---|---|"]
    checks = target_checks(results)
    out += [f"| {name} | {measured} | **{'PASS' if ok else 'FAIL'}** |"
            for name, measured, ok in checks]
    if not checks:
        out.append("| (none measured) | | |")
    return "\n".join(out) + "\n"


def describe(bench: Bench) -> list[tuple[str, str]]:
    from importlib import metadata

    facts = [(name, source_revision() if name == "sluice revision" else value)
             for name, value in machine_description(bench.scratch)]
    peer = bench.redis.version() if bench.redis is not None else "not run (--no-redis)"
    facts.append(("peers", f"hypercorn {metadata.version('hypercorn')} (trio worker); {peer}"))
    return facts


# ---- command line -------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` only changes defaults the user did not set."""
    parser = argparse.ArgumentParser(prog="python -m bench.topics",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int,
                        help="messages pre-filled (default 1,000,000; quick 100,000)")
    parser.add_argument("--seconds", type=float,
                        help="seconds per consume cell at most (default 5; quick 1)")
    parser.add_argument("--publish-rows", type=int,
                        help="rows per publish cell (default 200,000; quick 50,000)")
    parser.add_argument("--repeats", type=int, help="rounds over all cells (default 3; quick 1)")
    parser.add_argument("--batches", type=_ints, default=list(BATCHES),
                        help="comma-separated consume batch sizes (default 1,100,1000)")
    parser.add_argument("--quick", action="store_true", help="smoke run, about 2 minutes")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis peer")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the table: consume + ack in batches of the largest "
                             "--batches size for --seconds with py-spy recording the server")
    parser.add_argument("--py-spy", help="the py-spy executable for --profile (default: on PATH)")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="also write the cells' numbers here "
                        "(bench/cells_json.py; read by bench/report.py)")
    parser.add_argument("--scratch-parent", type=Path, default=REPO_ROOT / "bench" / "results",
                        help="where the temporary scratch dir is made (default bench/results)")
    args = parser.parse_args(argv)
    defaults = dict(messages=(100_000, 1_000_000), seconds=(1.0, 5.0),
                    publish_rows=(50_000, 200_000), repeats=(1, 3))
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if (args.messages < max(args.batches) or args.seconds <= 0 or args.repeats < 1
            or args.publish_rows < 1 or min(args.batches) < 1):
        parser.error("--messages must hold one batch; --seconds, --repeats, --publish-rows "
                     "and --batches must be positive")
    return args


def run(args: argparse.Namespace, scratch: Path) -> str:
    started_at = time.perf_counter()
    bench = Bench(args, scratch)
    with started(bench):
        assert bench.sluice is not None
        facts = describe(bench)
        with bench.connected() as clients:
            prefill(bench, clients[0])
            results = run_rounds(bench)
    if args.json is not None:
        cells_json.write(args.json, "topics", [json_cell(r) for r in results])
    settings = (f"{args.messages:,} messages pre-filled; consume cells at most "
                f"{args.seconds:g} s each, batches {','.join(map(str, args.batches))}; "
                f"{args.publish_rows:,} rows per publish cell; {args.repeats} round(s) "
                f"interleaved, medians; server and client not pinned; wall time "
                f"{time.perf_counter() - started_at:.0f} s; load average at end "
                + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return render_report(bench, facts, settings, results)


def json_cell(result: CellResult) -> dict:
    """One cell for ``--json`` (bench/cells_json.py): x = batch size or route count."""
    group, _, x = result.key.rpartition("-")  # sluice-consume-100, redis-..., publish-4
    return cells_json.cell(result.key, result.label,
                           "redis" if group.startswith("redis") else "sluice", group=group,
                           x=int(x), rate=result.median("rate"),
                           rate_unit="rows/s" if group == "publish" else "msgs/s",
                           p50_ms=None if group == "publish" else result.median("call_p50_ms"),
                           p99_ms=None if group == "publish" else result.median("call_p99_ms"),
                           metrics=cells_json.medians(result))


def run_profile(args: argparse.Namespace, scratch: Path) -> str:
    """``--profile``: one consume cell (the largest batch) with py-spy on the server."""
    from bench.http_profile import find_py_spy, start_recording, summarize

    py_spy = find_py_spy(args.py_spy)
    args.no_redis = True
    bench, batch = Bench(args, scratch), max(args.batches)
    with started(bench):
        assert bench.sluice is not None
        with bench.connected() as clients:
            prefill(bench, clients[0])
            progress(f"profiling consume + ack, batch {batch:,}, for {args.seconds:g} s")
            recorder = start_recording(py_spy, bench.sluice.process.pid,
                                       max(1, round(args.seconds)), scratch / "py-spy.txt")
            sample = consume_cell(clients, "profiled", batch, args.seconds, args.messages)
            recorder.communicate(timeout=args.seconds + 60)
    return (f"# py-spy profile of the Sluice server: consume + ack, batch {batch:,}\n\n"
            f"{sample.rate:,.0f} msgs/s, consume p50 {sample.call_p50_ms:.2f} ms, ack p50 "
            f"{sample.ack_p50_ms:.2f} ms (py-spy slows the server a little)\n\n"
            + summarize((scratch / "py-spy.txt").read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; the report goes to stdout (and ``--out``), progress to stderr.
    Exit status 1 when a cell failed (a bad reply), else 0 — FAILed targets included."""
    args = parse_args(argv)
    args.scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="topics-bench-", dir=args.scratch_parent))
    try:
        report = run_profile(args, scratch) if args.profile else run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    return 1 if "| FAILED: " in report else 0


if __name__ == "__main__":
    sys.exit(main())
