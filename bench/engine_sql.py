"""Engine SQL benchmark: durable INSERTs, PK lookups, GROUP BY and restart/replay, with SQLite
measured side by side in the same run.

Run: ``.venv/bin/python -m bench.engine_sql``; ``--help`` for options; ``bench/README.md``
(section "Engine SQL benchmark") explains every cell and holds a reading of one run.

Everything is in-process: ``engine.execute(Session, sql, params)`` on an engine opened with
``open_engine`` (default ``WalConfig``, so ``fsync=always``: every acknowledged statement is
durable), next to stdlib ``sqlite3`` in WAL mode with ``synchronous=FULL``. Data directories
live in one scratch directory under ``bench/results/`` (the repository's disk), deleted at the
end. One invocation runs:

* **inserts**: cells of a fixed time window into a fresh engine (fresh data directory and
  table) per cell and round, rounds interleaved: 1 row per statement (``$n`` parameters) and
  100 rows per statement (literal ``VALUES``: ``params_max`` is 50), with 1 and 16 concurrent
  trio tasks; 1 row per statement into a table that already holds many one-row hot chunks;
  the engine's own commit path without SQL (``Engine.commit_rows`` of a bench-built Arrow
  batch) as a decomposition; and SQLite with 1 and 100 rows per transaction.
* **reads and restart** (once per run, ``--repeats`` inner rounds): a small and a large table
  loaded through 1000-row ``INSERT`` statements (the large one only partly: the rest goes
  through the commit path, see ``--sql-load-rows``), PK lookups of random existing ids and a
  GROUP BY with the rows hot (in memory, unflushed); close and reopen with no flush (every
  row replayed from the WAL); flush every partition and run WAL retention as the job loop
  would; reopen again (cold segments loaded) and repeat the lookups and the GROUP BY. SQLite
  loads the same rows and answers the same queries.

Figures are medians over rounds; per-statement latencies are nearest-rank percentiles of one
round, then the median over rounds. Targets are checked at the end (PASS/FAIL).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import random
import shutil
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import trio

from bench import cells_json
from bench.wal_group_commit import cpu_seconds, machine_description, percentile
from engine.config import EngineConfig
from engine.engine import Engine, Transaction, open_engine
from engine.events import Op
from engine.flush import flush_partition
from engine.jobs import retain
from engine.partition import storage_schema
from engine.replay import replay_wal
from engine.session import Session
from engine.sql.dml import _apply  # the INSERT handler's own "apply + record" step
from engine.store import TableStore
from wal import WalConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
ROOT = Session("root", "system")
# bcrypt cost 4 and a job interval of ~11 days: no background flush, retention or checkpoint
# runs during a measurement (the benchmark flushes explicitly where it says so).
CONFIG = EngineConfig(bcrypt_cost=4, jobs_interval_seconds=1_000_000)
NAMESPACE = "bench"
COLUMNS = ("id", "user_id", "ts", "kind", "amount", "flag", "payload")
SCHEMA_SQL = ("(id BIGINT PRIMARY KEY, user_id TEXT, ts TIMESTAMP, kind TEXT, amount DOUBLE, "
              "flag BOOLEAN, payload TEXT)")
INSERT_PARAMS_SQL = ("INSERT INTO {table} (id, user_id, ts, kind, amount, flag, payload) "
                     "VALUES ($1, $2, $3, $4, $5, $6, $7)")
INSERT_LITERAL_HEAD = "INSERT INTO {table} (id, user_id, ts, kind, amount, flag, payload) VALUES "
LOOKUP_SQL = "SELECT * FROM {table} WHERE id = $1"
GROUP_SQL = "SELECT kind, count(*), sum(amount) FROM {table} GROUP BY kind"
SQLITE_LOOKUP_SQL = "SELECT * FROM {table} WHERE id = ?"
KINDS = ("view", "click", "cart", "buy", "refund", "login", "logout", "search")
TS0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds (the TIMESTAMP unit)
PAYLOAD_BYTES = 100
PAYLOAD_POOL = 1024
ID_STRIDE = 1_000_000_000  # each inserting task writes ids task * ID_STRIDE + n
LOAD_ROWS_PER_STATEMENT = 1000
GROUP_RUNS_PER_ROUND = 3
TARGET_INSERT_ROWS_S = 50_000  # durable rows/s, 100-row INSERT statements, in-process
TARGET_LOOKUP_P50_MS = 3.0  # PK lookup p50 at the large table
TARGET_REPLAY_ROWS_S = 300_000  # rows replayed per second of restart

_rng = random.Random(20261127)
_ALPHABET = string.ascii_letters + string.digits
PAYLOADS = ["".join(_rng.choice(_ALPHABET) for _ in range(PAYLOAD_BYTES))
            for _ in range(PAYLOAD_POOL)]


# ---- the rows ------------------------------------------------------------------------------

def row_values(i: int) -> tuple[int, str, int, str, float, bool, str]:
    """Row ``i`` of every table: deterministic, so Sluice and SQLite hold the same data.
    ``ts`` is int microseconds (what a TIMESTAMP column stores), the payload 100 ASCII
    characters drawn from a pool of 1024 random strings."""
    return (i, f"user{i % 1000:04d}", TS0_US + i * 1000, KINDS[i % len(KINDS)],
            (i % 10_000) / 100, i % 3 == 0, PAYLOADS[i % PAYLOAD_POOL])


def literal_row(i: int) -> str:
    """Row ``i`` as a SQL ``VALUES`` tuple (strings hold no quotes)."""
    rid, user, ts, kind, amount, flag, payload = row_values(i)
    return (f"({rid}, '{user}', {ts}, '{kind}', {amount!r}, {'TRUE' if flag else 'FALSE'}, "
            f"'{payload}')")


def insert_literal_sql(table: str, first: int, count: int) -> str:
    """One INSERT of rows ``first .. first+count-1`` as literal VALUES."""
    return INSERT_LITERAL_HEAD.format(table=table) + ", ".join(
        literal_row(i) for i in range(first, first + count))


def arrow_versions(engine: Engine, table_def: Any, first: int, count: int) -> pa.Table:
    """Rows ``first ..`` as the Arrow table of new versions the INSERT handler builds
    (storage names ``c<id>``, fresh ``_seq`` values, ``_deleted`` false)."""
    schema = storage_schema(table_def)
    rows = [row_values(i) for i in range(first, first + count)]
    arrays = [pa.array([row[k] for row in rows], type=schema.field(k).type)
              for k in range(len(COLUMNS))]
    arrays.append(pa.array([engine.seq_ids.next() for _ in rows], pa.int64()))
    arrays.append(pa.array([False] * count, pa.bool_()))
    return pa.Table.from_arrays(arrays, schema=schema)


async def commit_direct(engine: Engine, table_def: Any, first: int, count: int,
                        chunk_rows: int | None = None) -> None:
    """Commits rows ``first ..`` as one durable WAL event without SQL: the same steps the
    INSERT handler runs after parsing (``_apply`` under the write lock, then
    ``Engine.commit_rows``), minus the primary-key uniqueness check. ``chunk_rows`` splits
    the rows into that many rows per change, as a transaction of that many
    ``chunk_rows``-row INSERT statements would (one hot chunk each)."""
    step = chunk_rows or count
    await engine.write_lock.acquire()
    txn = Transaction()
    try:
        part = engine.store.partition(table_def, None)
        assert part is not None
        for start in range(first, first + count, step):
            versions = arrow_versions(engine, table_def, start, min(step, first + count - start))
            _apply(txn, part, table_def, Op.INSERT, versions)
    except BaseException:
        engine.abort_rows(txn)
        engine.write_lock.release()
        raise
    # Pipelined like Ctx.write_rows: the lock is released once the event is queued.
    await engine.commit_rows(txn, ROOT.user_id, unlock=True)


async def create_table(engine: Engine, name: str) -> Any:
    """``bench.<name>`` with the benchmark schema (SHARED: created by root, no type)."""
    if NAMESPACE not in engine.catalog.namespaces:
        await engine.execute(ROOT, f"CREATE NAMESPACE {NAMESPACE}")
    await engine.execute(ROOT, f"CREATE TABLE {NAMESPACE}.{name} {SCHEMA_SQL}")
    table_def = engine.catalog.table(NAMESPACE, name)
    assert table_def is not None and table_def.table_type == "SHARED"
    return table_def


def sqlite_open(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN/COMMIT), WAL journal, synchronous=FULL
    (the WAL is fsynced at every commit)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    conn.execute("PRAGMA synchronous=FULL")
    assert mode == "wal" and conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    return conn


def sqlite_create(conn: sqlite3.Connection, name: str) -> None:
    """The same DDL text (SQLite keeps BIGINT PRIMARY KEY as a separate unique index)."""
    conn.execute(f"CREATE TABLE {name} {SCHEMA_SQL}")


def sqlite_insert(conn: sqlite3.Connection, name: str, first: int, count: int) -> None:
    """Rows ``first ..`` in one transaction (autocommit for a single row)."""
    sql = f"INSERT INTO {name} VALUES (?, ?, ?, ?, ?, ?, ?)"
    if count == 1:
        conn.execute(sql, row_values(first))
        return
    conn.execute("BEGIN")
    conn.executemany(sql, (row_values(i) for i in range(first, first + count)))
    conn.execute("COMMIT")


# ---- measuring -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Window:
    """The measured interval in ``time.perf_counter`` seconds (after the warm-up)."""

    start: float
    end: float

    @classmethod
    def after(cls, warmup: float, seconds: float) -> Window:
        now = time.perf_counter()
        return cls(now + warmup, now + warmup + seconds)


class Meter:
    """Wall time, this process's CPU time and other processes' busy cores over a span."""

    def __init__(self) -> None:
        self.busy0, self.own0 = cpu_seconds()
        self.start = time.perf_counter()

    def stop(self) -> tuple[float, float, float]:
        """(wall seconds, own CPU seconds, cores other processes kept busy)."""
        wall = time.perf_counter() - self.start
        busy1, own1 = cpu_seconds()
        own = own1 - self.own0
        others = max(0.0, (busy1 - self.busy0) - own) / wall if wall > 0 else math.nan
        return wall, own, others


@dataclass(frozen=True, slots=True)
class Sample:
    """One round of one measurement. ``rate`` is rows/s (inserts, loads, replay) and
    ``per_s`` statements (or transactions) per second; ``seconds`` a duration."""

    rate: float = math.nan
    per_s: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    seconds: float = math.nan
    cpu_ms: float = math.nan  # this process's CPU (all threads) per statement / per query
    other_cores: float = math.nan
    records_per_sync: float = math.nan  # WAL records per fdatasync in the window (Sluice)
    count: int = 0  # statements in the window, queries run, rows replayed...
    events: int = 0  # WAL events replayed


@dataclass(slots=True)
class Series:
    """All rounds of one measurement and their medians."""

    key: str
    label: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, name: str) -> float:
        values = [getattr(s, name) for s in self.samples if not math.isnan(getattr(s, name))]
        return statistics.median(values) if values else math.nan

    def spread(self, name: str) -> tuple[float, float]:
        values = [getattr(s, name) for s in self.samples if not math.isnan(getattr(s, name))]
        return (min(values), max(values)) if values else (math.nan, math.nan)


def latency_sample(latencies: list[float], meter: Meter, **extra: Any) -> Sample:
    """p50/p99 of per-operation seconds, CPU per operation and other load."""
    wall, own, others = meter.stop()
    ordered = sorted(latencies)
    return Sample(p50_ms=percentile(ordered, 0.50) * 1e3, p99_ms=percentile(ordered, 0.99) * 1e3,
                  cpu_ms=own * 1e3 / max(1, len(ordered)), other_cores=others,
                  count=len(ordered), seconds=wall, **extra)


# ---- insert cells --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InsertCell:
    """One insert configuration. ``system``: sluice (SQL), direct (commit path, no SQL) or
    sqlite; ``rows`` per statement / event / transaction; ``tasks`` concurrent trio tasks;
    ``hot_chunks``: one-row hot chunks already in the table when the window starts."""

    system: str
    rows: int
    tasks: int = 1
    hot_chunks: int = 0

    @property
    def key(self) -> str:
        return f"{self.system}-{self.rows}r-{self.tasks}t-{self.hot_chunks}c"

    @property
    def label(self) -> str:
        if self.system == "sqlite":
            how = "row per autocommit txn" if self.rows == 1 else "rows per txn (executemany)"
            return f"SQLite INSERT, {self.rows} {how}"
        if self.system == "direct":
            return (f"Sluice commit path without SQL, {self.rows} row(s) per event, "
                    f"{self.tasks} task(s)")
        form = "$n params" if self.rows == 1 else "literal VALUES"
        text = f"Sluice INSERT, {self.rows} row(s)/stmt ({form}), {self.tasks} task(s)"
        if self.hot_chunks:
            text += f", table already holding {self.hot_chunks:,} one-row hot chunks"
        return text


def insert_cells(hot_chunks: int) -> list[InsertCell]:
    """The insert cells of a run, in the order they run within each round."""
    cells = [InsertCell("sluice", 1, 1), InsertCell("sluice", 1, 16),
             InsertCell("sluice", 100, 1), InsertCell("sluice", 100, 16)]
    if hot_chunks:
        cells.append(InsertCell("sluice", 1, 1, hot_chunks))
    cells += [InsertCell("direct", 1, 1), InsertCell("direct", 100, 1),
              InsertCell("direct", 100, 16), InsertCell("sqlite", 1), InsertCell("sqlite", 100)]
    return cells


async def _inserter(engine: Engine, table_def: Any, cell: InsertCell, task: int,
                    window: Window, latencies: list[float]) -> None:
    """Inserts until the window ends; records each statement completed inside it. The SQL
    text (or Arrow batch, for ``direct``) is built before the timer starts."""
    perf, name = time.perf_counter, f"{NAMESPACE}.t"
    next_id = (task + 1) * ID_STRIDE
    params_sql = INSERT_PARAMS_SQL.format(table=name)
    while perf() < window.end:
        if cell.system == "direct":
            start = perf()
            await commit_direct(engine, table_def, next_id, cell.rows)
        else:
            if cell.rows == 1:
                sql, params = params_sql, list(row_values(next_id))
            else:
                sql, params = insert_literal_sql(name, next_id, cell.rows), None
            start = perf()
            await engine.execute(ROOT, sql, params)
        end = perf()
        next_id += cell.rows
        if window.start <= end < window.end:
            latencies.append(end - start)


async def _probe(engine: Engine, window: Window, marks: list[tuple[float, float, int, int]]
                 ) -> None:
    """(time, own CPU, WAL records, WAL syncs) at the window's start and end."""
    for edge in (window.start, window.end):
        await trio.sleep(max(0.0, edge - time.perf_counter()))
        stats = engine.wal.statistics()
        marks.append((time.perf_counter(), time.process_time(), stats.records_appended,
                      stats.syncs))


async def _sluice_insert(directory: Path, cell: InsertCell, seconds: float, warmup: float
                         ) -> Sample:
    """A fresh engine and table, optional hot-chunk preload, then the timed window."""
    latencies: list[float] = []
    marks: list[tuple[float, float, int, int]] = []
    async with open_engine(directory, CONFIG) as engine:
        table_def = await create_table(engine, "t")
        if cell.hot_chunks:  # one transaction of one-row changes: one chunk per row
            await commit_direct(engine, table_def, 0, cell.hot_chunks, chunk_rows=1)
        busy0, own0 = cpu_seconds()
        window = Window.after(warmup, seconds)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_probe, engine, window, marks)
            for task in range(cell.tasks):
                nursery.start_soon(_inserter, engine, table_def, cell, task, window, latencies)
        busy1, own1 = cpu_seconds()
    (_, cpu0, rec0, sync0), (_, cpu1, rec1, sync1) = marks
    ordered = sorted(latencies)
    span = warmup + seconds
    return Sample(rate=len(ordered) * cell.rows / seconds, per_s=len(ordered) / seconds,
                  p50_ms=percentile(ordered, 0.5) * 1e3, p99_ms=percentile(ordered, 0.99) * 1e3,
                  cpu_ms=(cpu1 - cpu0) * 1e3 / max(1, len(ordered)),
                  other_cores=max(0.0, (busy1 - busy0) - (own1 - own0)) / span,
                  records_per_sync=(rec1 - rec0) / max(1, sync1 - sync0), count=len(ordered))


def _sqlite_insert(directory: Path, cell: InsertCell, seconds: float, warmup: float) -> Sample:
    """A fresh SQLite database and table, then the timed window (one connection)."""
    directory.mkdir(parents=True, exist_ok=True)
    conn = sqlite_open(directory / "bench.db")
    try:
        sqlite_create(conn, "t")
        perf, latencies, next_id = time.perf_counter, [], ID_STRIDE
        busy0, own0 = cpu_seconds()
        window = Window.after(warmup, seconds)
        cpu0 = cpu1 = 0.0
        while (start := perf()) < window.end:
            sqlite_insert(conn, "t", next_id, cell.rows)
            end = perf()
            next_id += cell.rows
            if window.start <= end < window.end:
                cpu1 = time.process_time()
                if not latencies:
                    cpu0 = cpu1
                latencies.append(end - start)
        busy1, own1 = cpu_seconds()
    finally:
        conn.close()
    ordered = sorted(latencies)
    return Sample(rate=len(ordered) * cell.rows / seconds, per_s=len(ordered) / seconds,
                  p50_ms=percentile(ordered, 0.5) * 1e3, p99_ms=percentile(ordered, 0.99) * 1e3,
                  cpu_ms=(cpu1 - cpu0) * 1e3 / max(1, len(ordered) - 1),
                  other_cores=max(0.0, (busy1 - busy0) - (own1 - own0)) / (warmup + seconds),
                  count=len(ordered))


def run_insert_cell(directory: Path, cell: InsertCell, seconds: float, warmup: float) -> Sample:
    """One cell in ``directory`` (created fresh, deleted afterwards)."""
    try:
        if cell.system == "sqlite":
            return _sqlite_insert(directory, cell, seconds, warmup)
        return trio.run(_sluice_insert, directory, cell, seconds, warmup)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_insert_rounds(scratch: Path, cells: Sequence[InsertCell], seconds: float,
                      warmup: float, repeats: int, progress: Callable[[str], None]
                      ) -> list[Series]:
    """Every cell once per round, ``repeats`` rounds."""
    series = [Series(cell.key, cell.label) for cell in cells]
    for round_no in range(1, repeats + 1):
        for number, (cell, result) in enumerate(zip(cells, series, strict=True)):
            sample = run_insert_cell(scratch / f"ins-r{round_no}-{number:02d}-{cell.key}",
                                     cell, seconds, warmup)
            result.samples.append(sample)
            progress(f"round {round_no}/{repeats} {cell.key}: {sample.rate:,.0f} rows/s, "
                     f"{sample.per_s:,.1f} stmt/s, p50 {sample.p50_ms:.2f} ms, p99 "
                     f"{sample.p99_ms:.2f} ms, CPU {sample.cpu_ms:.2f} ms/stmt, other load "
                     f"{sample.other_cores:.2f}\n")
    return series


# ---- reads and restart ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReadSizes:
    small: int
    large: int
    sql_load_rows: int  # of the large table, through SQL; the rest through the commit path
    lookups: int  # per table per round
    repeats: int


def lookup_ids(rows: int, count: int, round_no: int, table: str) -> list[int]:
    """Random existing ids, the same for Sluice and SQLite in a given round."""
    rng = random.Random(f"{table}-{round_no}")
    return [rng.randrange(rows) for _ in range(count)]


class ReadResults:
    """Series keyed by name, created on first use, in insertion order."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}

    def add(self, key: str, label: str, sample: Sample) -> Sample:
        self.series.setdefault(key, Series(key, label)).samples.append(sample)
        return sample

    def get(self, key: str) -> Series | None:
        return self.series.get(key)


async def _sluice_lookups(engine: Engine, table: str, ids: list[int]) -> Sample:
    perf, sql, latencies = time.perf_counter, LOOKUP_SQL.format(table=table), []
    meter = Meter()
    for key in ids:
        start = perf()
        (result,) = await engine.execute(ROOT, sql, [key])
        latencies.append(perf() - start)
        assert result.row_count == 1, (key, result.row_count)
    return latency_sample(latencies, meter)


async def _sluice_group(engine: Engine, table: str, expected_rows: int) -> Sample:
    perf, sql, latencies = time.perf_counter, GROUP_SQL.format(table=table), []
    meter = Meter()
    for _ in range(GROUP_RUNS_PER_ROUND):
        start = perf()
        (result,) = await engine.execute(ROOT, sql)
        latencies.append(perf() - start)
    counts = sum(int(row[1]) for row in result.to_json()["rows"])
    assert counts == expected_rows, (counts, expected_rows)
    return latency_sample(latencies, meter)


async def _sql_load(engine: Engine, table: str, first: int, count: int) -> Sample:
    """Rows through 1000-row literal INSERT statements (text built before the timer)."""
    meter = Meter()
    elapsed, statements = 0.0, 0
    for start in range(first, first + count, LOAD_ROWS_PER_STATEMENT):
        sql = insert_literal_sql(table, start, min(LOAD_ROWS_PER_STATEMENT,
                                                   first + count - start))
        begin = time.perf_counter()
        await engine.execute(ROOT, sql)
        elapsed += time.perf_counter() - begin
        statements += 1
    _, own, others = meter.stop()
    return Sample(rate=count / elapsed, per_s=statements / elapsed, seconds=elapsed,
                  cpu_ms=own * 1e3 / statements, other_cores=others, count=count)


async def _direct_load(engine: Engine, table_def: Any, first: int, count: int) -> Sample:
    """Rows through the commit path, 1000 rows per event (batch built inside the timer)."""
    meter = Meter()
    events = 0
    for start in range(first, first + count, LOAD_ROWS_PER_STATEMENT):
        await commit_direct(engine, table_def, start,
                            min(LOAD_ROWS_PER_STATEMENT, first + count - start))
        events += 1
    wall, own, others = meter.stop()
    return Sample(rate=count / wall, per_s=events / wall, seconds=wall,
                  cpu_ms=own * 1e3 / max(1, events), other_cores=others, count=count)


async def _reads(engine: Engine, sizes: ReadSizes, results: ReadResults, state: str,
                 round_no: int, progress: Callable[[str], None]) -> None:
    """One round of lookups on both tables and the GROUP BY on the large one."""
    for table, rows in (("small", sizes.small), ("large", sizes.large)):
        ids = lookup_ids(rows, sizes.lookups, round_no, table)
        sample = results.add(f"lookup-{table}-{state}", f"{table} {state}",
                             await _sluice_lookups(engine, f"{NAMESPACE}.{table}", ids))
        progress(f"  sluice lookup {table} ({rows:,} rows) {state}: p50 {sample.p50_ms:.2f} ms,"
                 f" p99 {sample.p99_ms:.2f} ms\n")
    sample = results.add(f"group-{state}", state,
                         await _sluice_group(engine, f"{NAMESPACE}.large", sizes.large))
    progress(f"  sluice GROUP BY {state}: {sample.p50_ms:.1f} ms\n")


async def _timed_open(directory: Path) -> tuple[float, Any]:
    """Seconds for ``open_engine`` to yield (recovery, cold load, replay, bootstrap)."""
    start = time.perf_counter()
    manager = open_engine(directory, CONFIG)
    engine = await manager.__aenter__()
    return time.perf_counter() - start, (manager, engine)


async def sluice_reads(directory: Path, sizes: ReadSizes, results: ReadResults,
                       progress: Callable[[str], None]) -> None:
    """Load, hot reads, replay restarts, flush + retention, cold restarts and reads."""
    total = sizes.small + sizes.large
    async with open_engine(directory, CONFIG) as engine:
        await create_table(engine, "small")
        large_def = await create_table(engine, "large")
        sample = results.add("load-sql-small", "small", await _sql_load(
            engine, f"{NAMESPACE}.small", 0, sizes.small))
        progress(f"  sluice SQL load small: {sample.rate:,.0f} rows/s\n")
        sql_rows = min(sizes.sql_load_rows, sizes.large)
        if sql_rows:
            sample = results.add("load-sql-large", "large", await _sql_load(
                engine, f"{NAMESPACE}.large", 0, sql_rows))
            progress(f"  sluice SQL load large (first {sql_rows:,}): {sample.rate:,.0f} rows/s\n")
        if sizes.large > sql_rows:
            sample = results.add("load-direct-large", "large", await _direct_load(
                engine, large_def, sql_rows, sizes.large - sql_rows))
            progress(f"  sluice commit-path load large: {sample.rate:,.0f} rows/s\n")
        for round_no in range(1, sizes.repeats + 1):
            await _reads(engine, sizes, results, "hot", round_no, progress)

    flush_sample = None
    for round_no in range(1, sizes.repeats + 1):  # restart with every row in the WAL only
        seconds, (manager, engine) = await _timed_open(directory)
        try:
            report = engine.replay_report
            assert report.rows == total, (report.rows, total)
            sample = results.add("restart-replay", "no flush", Sample(
                rate=report.rows / seconds, seconds=seconds, count=report.rows,
                events=report.events))
            progress(f"  restart, no flush: {seconds:.2f} s, {report.rows:,} rows in "
                     f"{report.events:,} events, {sample.rate:,.0f} rows/s\n")
            if round_no == sizes.repeats:
                meter = Meter()
                flushed = 0
                for part in list(engine.store.partitions.values()):
                    flushed += await flush_partition(engine, part)
                flush_wall, _, others = meter.stop()
                deleted = await retain(engine)
                flush_sample = Sample(rate=flushed / flush_wall, seconds=flush_wall,
                                      count=flushed, events=deleted, other_cores=others)
                progress(f"  flush: {flushed:,} rows in {flush_wall:.2f} s; retention deleted "
                         f"{deleted} WAL segment(s)\n")
        finally:
            await manager.__aexit__(None, None, None)
    if flush_sample is not None:
        results.add("flush", "flush", flush_sample)

    for round_no in range(1, sizes.repeats + 1):  # restart from cold segments
        seconds, (manager, engine) = await _timed_open(directory)
        try:
            report = engine.replay_report
            results.add("restart-cold", "after flush", Sample(
                rate=math.nan, seconds=seconds, count=report.rows, events=report.events))
            progress(f"  restart after flush: {seconds:.2f} s ({report.rows:,} rows in "
                     f"{report.events:,} events still replayed)\n")
            for table, rows in (("small", sizes.small), ("large", sizes.large)):
                start = time.perf_counter()
                await engine.execute(ROOT, LOOKUP_SQL.format(table=f"{NAMESPACE}.{table}"),
                                     [rows // 2])
                results.add(f"first-lookup-{table}", table,
                            Sample(seconds=time.perf_counter() - start))
            await _reads(engine, sizes, results, "cold", round_no, progress)
        finally:
            await manager.__aexit__(None, None, None)


def sqlite_reads(path: Path, sizes: ReadSizes, results: ReadResults,
                 progress: Callable[[str], None]) -> None:
    """SQLite: load both tables (1000 rows per transaction), lookups and GROUP BY."""
    conn = sqlite_open(path)
    try:
        for table, rows in (("small", sizes.small), ("large", sizes.large)):
            sqlite_create(conn, table)
            meter = Meter()
            for start in range(0, rows, LOAD_ROWS_PER_STATEMENT):
                sqlite_insert(conn, table, start, min(LOAD_ROWS_PER_STATEMENT, rows - start))
            wall, own, others = meter.stop()
            sample = results.add(f"sqlite-load-{table}", table, Sample(
                rate=rows / wall, seconds=wall, other_cores=others, count=rows,
                cpu_ms=own * 1e3 * LOAD_ROWS_PER_STATEMENT / rows))
            progress(f"  sqlite load {table}: {sample.rate:,.0f} rows/s\n")
        perf = time.perf_counter
        for round_no in range(1, sizes.repeats + 1):
            for table, rows in (("small", sizes.small), ("large", sizes.large)):
                sql, latencies = SQLITE_LOOKUP_SQL.format(table=table), []
                meter = Meter()
                for key in lookup_ids(rows, sizes.lookups, round_no, table):
                    start = perf()
                    found = conn.execute(sql, (key,)).fetchall()
                    latencies.append(perf() - start)
                    assert len(found) == 1
                results.add(f"sqlite-lookup-{table}", table, latency_sample(latencies, meter))
            latencies = []
            meter = Meter()
            for _ in range(GROUP_RUNS_PER_ROUND):
                start = perf()
                found = conn.execute(GROUP_SQL.format(table="large")).fetchall()
                latencies.append(perf() - start)
            assert sum(row[1] for row in found) == sizes.large
            sample = results.add("sqlite-group", "large", latency_sample(latencies, meter))
            progress(f"  sqlite round {round_no}: GROUP BY {sample.p50_ms:.1f} ms\n")
    finally:
        conn.close()


def run_reads(scratch: Path, sizes: ReadSizes, progress: Callable[[str], None]) -> ReadResults:
    """The read/restart phase for both systems; the data directories are deleted after."""
    results = ReadResults()
    sluice_dir, sqlite_dir = scratch / "reads-sluice", scratch / "reads-sqlite"
    try:
        trio.run(sluice_reads, sluice_dir, sizes, results, progress)
    finally:
        shutil.rmtree(sluice_dir, ignore_errors=True)
    try:
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        sqlite_reads(sqlite_dir / "bench.db", sizes, results, progress)
    finally:
        shutil.rmtree(sqlite_dir, ignore_errors=True)
    return results


# ---- profiling -----------------------------------------------------------------------------

PROFILE_KINDS = ("insert1", "insert100", "insert100x16", "direct100", "lookup", "group",
                 "replay")


def _package_of(filename: str) -> str:
    """A coarse owner of one profiled function."""
    if filename == "~":
        return "C built-ins (pyarrow, datafusion, os, ...)"
    for package in ("engine/sql", "engine", "wal", "sqlglot", "trio", "pyarrow", "datafusion",
                    "outcome", "bench"):
        if f"/{package}/" in filename:
            return package
    return "other Python (stdlib, ...)"


def profile_text(profiler: cProfile.Profile, top: int = 35) -> str:
    """Own time per package, then the top functions by own and by cumulative time."""
    stats = pstats.Stats(profiler, stream=(text := io.StringIO()))
    totals: dict[str, float] = {}
    for (filename, _line, _function), row in stats.stats.items():  # type: ignore[attr-defined]
        owner = _package_of(filename)
        totals[owner] = totals.get(owner, 0.0) + row[2]
    whole = sum(totals.values()) or 1.0
    text.write("== own time by package ==\n")
    text.write("".join(f"{seconds:8.3f} s {seconds / whole * 100:5.1f} %  {owner}\n"
                       for owner, seconds in sorted(totals.items(), key=lambda kv: -kv[1])))
    stats.strip_dirs()
    text.write("\n== by own time (tottime) ==\n")
    stats.sort_stats("tottime").print_stats(top)
    text.write("== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


async def _profile_reads(directory: Path, kind: str, rows: int, lookups: int,
                         profiler: cProfile.Profile) -> str:
    """Loads ``rows`` through the commit path, then profiles lookups, GROUP BY or replay."""
    async with open_engine(directory, CONFIG) as engine:
        table_def = await create_table(engine, "large")
        for start in range(0, rows, LOAD_ROWS_PER_STATEMENT):
            await commit_direct(engine, table_def, start, min(LOAD_ROWS_PER_STATEMENT,
                                                              rows - start))
        if kind in ("lookup", "group"):
            ids = lookup_ids(rows, lookups, 1, "large")
            sql = GROUP_SQL if kind == "group" else LOOKUP_SQL
            runs = ids if kind == "lookup" else [None] * 10
            start = time.perf_counter()
            profiler.enable()
            for key in runs:
                await engine.execute(ROOT, sql.format(table=f"{NAMESPACE}.large"),
                                     [key] if key is not None else None)
            profiler.disable()
            return (f"{len(runs)} queries on {rows:,} hot rows, "
                    f"{(time.perf_counter() - start) / len(runs) * 1e3:.2f} ms each\n")
    # replay: the same synchronous call open_engine makes in its worker thread, here in
    # the main thread so the profiler sees all of it
    from engine.catalog import Catalog

    start = time.perf_counter()
    profiler.enable()
    report = replay_wal(directory / "wal", Catalog(), TableStore(), from_lsn=1,
                        record_size_max_bytes=WalConfig().record_size_max_bytes)
    profiler.disable()
    seconds = time.perf_counter() - start
    return (f"replay_wal of {report.rows:,} rows in {report.events:,} events: {seconds:.2f} s, "
            f"{report.rows / seconds:,.0f} rows/s (under the profiler)\n")


def run_profile(scratch: Path, kind: str, args: argparse.Namespace) -> str:
    """Runs one measurement under cProfile; returns the report text."""
    profiler = cProfile.Profile()
    directory = scratch / f"profile-{kind}"
    try:
        if kind.startswith(("insert", "direct")):
            rows = 100 if "100" in kind else 1
            cell = InsertCell("direct" if kind.startswith("direct") else "sluice", rows,
                              16 if kind.endswith("x16") else 1)
            profiler.enable()
            sample = trio.run(_sluice_insert, directory, cell, args.seconds, args.warmup)
            profiler.disable()
            head = (f"{cell.label}: {sample.rate:,.0f} rows/s, {sample.per_s:,.1f} stmt/s, p50 "
                    f"{sample.p50_ms:.2f} ms (slowed by the profiler; includes engine "
                    f"open/close)\n")
        else:
            head = trio.run(_profile_reads, directory, kind, args.rows_large, args.lookups,
                            profiler)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return f"# cProfile: {kind}\n\n{head}\n{profile_text(profiler)}"


# ---- report --------------------------------------------------------------------------------

def _n(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    r = a / b
    return f"{r:.3f}" if r < 0.1 else f"{r:.2f}" if r < 100 else f"{r:,.0f}"


def insert_table(series: Sequence[Series]) -> str:
    """One row per insert cell; the ratio compares rows/s with SQLite at the same rows per
    statement/transaction."""
    sqlite = {s.key.split("-")[1]: s for s in series if s.key.startswith("sqlite")}
    lines = ["| cell | rows/s (median) | min - max | statements/s | p50 ms | p99 ms | "
             "CPU ms/stmt | WAL records/sync | rows/s vs SQLite same rows/txn | other load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in series:
        lo, hi = s.spread("rate")
        peer = sqlite.get(s.key.split("-")[1])
        ratio = "-" if s.key.startswith("sqlite") or peer is None else _ratio(
            s.median("rate"), peer.median("rate"))
        lines.append(f"| {s.label} | **{_n(s.median('rate'))}** | {_n(lo)} - {_n(hi)} | "
                     f"{_n(s.median('per_s'), 1)} | {_ms(s.median('p50_ms'))} | "
                     f"{_ms(s.median('p99_ms'))} | {_ms(s.median('cpu_ms'))} | "
                     f"{_n(s.median('records_per_sync'), 1)} | {ratio} | "
                     f"{_n(s.median('other_cores'), 2)} |")
    return "\n".join(lines)


def load_table(results: ReadResults, sizes: ReadSizes) -> str:
    rows = [("load-sql-small", f"Sluice: 1000-row literal INSERT statements, small table "
                               f"({sizes.small:,} rows)"),
            ("load-sql-large", f"Sluice: 1000-row literal INSERT statements, large table "
                               f"(first {min(sizes.sql_load_rows, sizes.large):,} rows)"),
            ("load-direct-large", "Sluice: commit path without SQL, 1000 rows per event, "
                                  f"large table (remaining "
                                  f"{max(0, sizes.large - sizes.sql_load_rows):,} rows)"),
            ("sqlite-load-small", "SQLite: executemany, 1000 rows per txn, small table"),
            ("sqlite-load-large", "SQLite: executemany, 1000 rows per txn, large table")]
    lines = ["| load | rows | seconds | rows/s | CPU ms per 1000 rows | other load |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, label in rows:
        s = results.get(key)
        if s is None:
            continue
        lines.append(f"| {label} | {_n(s.median('count'))} | {_n(s.median('seconds'), 2)} | "
                     f"**{_n(s.median('rate'))}** | {_ms(s.median('cpu_ms'))} | "
                     f"{_n(s.median('other_cores'), 2)} |")
    return "\n".join(lines)


def read_table(results: ReadResults, sizes: ReadSizes) -> str:
    lines = ["| query | rows in table | Sluice hot: p50 / p99 ms | Sluice cold: p50 / p99 ms | "
             "SQLite: p50 / p99 ms | p50 ratio Sluice hot / SQLite | p50 ratio Sluice cold / "
             "SQLite | Sluice CPU ms/query (hot) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def pair(key: str) -> tuple[str, float]:
        s = results.get(key)
        if s is None:
            return "-", math.nan
        return f"{_ms(s.median('p50_ms'))} / {_ms(s.median('p99_ms'))}", s.median("p50_ms")

    items = [("PK lookup `SELECT * ... WHERE id = $1`", "small", sizes.small, "lookup-small",
              "sqlite-lookup-small"),
             ("PK lookup `SELECT * ... WHERE id = $1`", "large", sizes.large, "lookup-large",
              "sqlite-lookup-large"),
             ("`SELECT kind, count(*), sum(amount) ... GROUP BY kind`", "large", sizes.large,
              "group", "sqlite-group")]
    for label, _table, rows, key, peer in items:
        hot, hot50 = pair(f"{key}-hot")
        cold, cold50 = pair(f"{key}-cold")
        lite, lite50 = pair(peer)
        cpu = results.get(f"{key}-hot")
        lines.append(f"| {label} | {rows:,} | {hot} | {cold} | {lite} | {_ratio(hot50, lite50)} "
                     f"| {_ratio(cold50, lite50)} | "
                     f"{_ms(cpu.median('cpu_ms')) if cpu else '-'} |")
    return "\n".join(lines)


def restart_table(results: ReadResults) -> str:
    lines = ["| restart | seconds (median) | min - max | WAL events replayed | rows replayed | "
             "rows/s |", "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("restart-replay", "reopen, no flush: every row replayed from the WAL"),
                       ("restart-cold", "reopen after flush + retention: cold segments loaded"
                                        " (and what is left of the WAL replayed)")):
        s = results.get(key)
        if s is None:
            continue
        lo, hi = s.spread("seconds")
        lines.append(f"| {label} | **{_n(s.median('seconds'), 2)}** | {_n(lo, 2)} - {_n(hi, 2)}"
                     f" | {_n(s.median('events'))} | {_n(s.median('count'))} | "
                     f"{_n(s.median('rate'))} |")
    flush = results.get("flush")
    if flush is not None:
        lines.append(f"| (flush_partition of every partition, once; then retention deleted "
                     f"{_n(flush.median('events'))} WAL segment(s)) | "
                     f"{_n(flush.median('seconds'), 2)} | - | - | {_n(flush.median('count'))} "
                     f"flushed | {_n(flush.median('rate'))} |")
    for table in ("small", "large"):
        first = results.get(f"first-lookup-{table}")
        if first is not None:
            lines.append(f"| (first lookup on the {table} table after the restart: attaches its "
                         f"cold segments) | {_n(first.median('seconds'), 3)} | - | - | - | - |")
    return "\n".join(lines)


def target_checks(inserts: Sequence[Series], reads: ReadResults, sizes: ReadSizes
                  ) -> list[tuple[str, str, bool]]:
    """(target, measured, passed)."""
    checks = []
    hundred = [s for s in inserts if s.key.startswith("sluice-100r-")]
    if hundred:
        best = max(hundred, key=lambda s: s.median("rate"))
        rate = best.median("rate")
        checks.append((f">= {TARGET_INSERT_ROWS_S:,} durable rows/s, 100-row INSERT statements,"
                       f" in-process", f"{rate:,.0f} rows/s (best cell: {best.label})",
                       rate >= TARGET_INSERT_ROWS_S))
    for state in ("hot", "cold"):
        s = reads.get(f"lookup-large-{state}")
        if s is not None:
            p50 = s.median("p50_ms")
            checks.append((f"PK lookup p50 <= {TARGET_LOOKUP_P50_MS:g} ms at {sizes.large:,} "
                           f"rows ({state})", f"{p50:.2f} ms", p50 <= TARGET_LOOKUP_P50_MS))
    s = reads.get("restart-replay")
    if s is not None:
        rate = s.median("rate")
        note = "" if sizes.large >= 1_000_000 else (
            "; with fewer than 1M rows the fixed start-up cost dominates: judge this target "
            "at the default size")
        checks.append((f"replay >= {TARGET_REPLAY_ROWS_S:,} rows/s (rows replayed / restart "
                       f"time, no flush)", f"{rate:,.0f} rows/s ({_n(s.median('count'))} rows "
                       f"in {s.median('seconds'):.2f} s{note})", rate >= TARGET_REPLAY_ROWS_S))
    return checks


def source_revision() -> str:
    """HEAD, flagged when ``engine/``, ``wal/`` or ``bench/`` have uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, check=False, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""
    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = [p for p in ("engine", "wal", "bench") if git("status", "--porcelain", "--", p)]
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return head + (f" + uncommitted changes in {', '.join(d + '/' for d in dirty)}" if dirty
                   else " (engine/, wal/, bench/ clean)")


def render_report(machine: Sequence[tuple[str, str]], settings: str, inserts: Sequence[Series],
                  reads: ReadResults | None, sizes: ReadSizes, seconds: float) -> str:
    out = ["# Sluice engine SQL benchmark", ""]
    out += [f"- **{name}**: {value}" for name, value in machine]
    wal = WalConfig()
    out += [f"- **settings**: {settings}",
            f"- **engine**: EngineConfig(bcrypt_cost=4, jobs_interval_seconds=1e6: no background"
            f" flush/retention), default WalConfig (fsync={wal.fsync}, zstd level "
            f"{wal.zstd_level} from {wal.compress_min_bytes} B); SQLite {sqlite3.sqlite_version}"
            f" (journal_mode=WAL, synchronous=FULL)",
            f"- **wall time of the run**: {seconds:.0f} s", ""]
    if inserts:
        out += ["### Durable inserts (SHARED table, 7 columns, ~100 B payload)", "",
                insert_table(inserts), "",
                "Latency per statement (Sluice) or per transaction (SQLite), from just before "
                "`execute` to its return; the SQL text is built before the timer. CPU ms/stmt: "
                "this process's CPU (all threads) per statement in the window. WAL records/sync:"
                " WAL records per fdatasync in the window (group commit). other load: cores "
                "busy in other processes.", ""]
    if reads is not None:
        out += ["### Loading the read tables", "", load_table(reads, sizes), "",
                "### Reads", "", read_table(reads, sizes), "",
                "hot: rows in memory, never flushed. cold: after `flush_partition` + retention "
                "and a restart (segments read at start-up). SQLite: same process, warm page "
                f"cache. p50/p99 over {sizes.lookups} lookups (random existing ids) or "
                f"{GROUP_RUNS_PER_ROUND} GROUP BY runs per round, median over rounds.", "",
                "### Restart", "", restart_table(reads), ""]
    checks = target_checks(inserts, reads or ReadResults(), sizes)
    if checks:
        out += ["### Targets", "", "| target | measured | result |", "|---|---|---|"]
        out += [f"| {name} | {measured} | **{'PASS' if ok else 'FAIL'}** |"
                for name, measured, ok in checks]
    return "\n".join(out) + "\n"


# ---- command line --------------------------------------------------------------------------

def json_cells(inserts: Sequence[Series], reads: ReadResults | None) -> list[dict]:
    """The cells for ``--json`` (bench/cells_json.py): rows/s where measured, else per s."""
    cells = []
    for series, label in [(s, s.label) for s in inserts] + [
            (s, f"{s.key} ({s.label})") for s in (reads.series.values() if reads else [])]:
        system = "sqlite" if series.key.startswith("sqlite") else "sluice"
        rate, unit = series.median("rate"), "rows/s"
        if math.isnan(rate):
            rate, unit = series.median("per_s"), "per s"
        cells.append(cells_json.cell(
            series.key, label, system, group=series.key.split("-")[0], rate=rate,
            rate_unit=unit, p50_ms=series.median("p50_ms"), p99_ms=series.median("p99_ms"),
            metrics=cells_json.medians(series)))
    return cells


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` only changes defaults the user did not set."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine_sql",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rows-large", type=int, help="rows of the large table "
                                                       "(default 1,000,000; quick 50,000)")
    parser.add_argument("--rows-small", type=int, help="rows of the small table "
                                                       "(default 10,000; quick 2,000)")
    parser.add_argument("--sql-load-rows", type=int,
                        help="rows of the large table loaded through 1000-row INSERT "
                             "statements; the rest goes through the commit path without SQL "
                             "(default 20,000; quick 2,000)")
    parser.add_argument("--hot-chunks", type=int,
                        help="one-row hot chunks preloaded for the hot-chunk INSERT cell; 0 "
                             "skips the cell (default 10,000 = the default flush_rows; "
                             "quick 2,000)")
    parser.add_argument("--seconds", type=float, help="measured seconds per insert cell "
                                                      "(default 3; quick 1)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each insert "
                                                     "cell (default 1; quick 0.5)")
    parser.add_argument("--lookups", type=int, help="PK lookups per table per round "
                                                    "(default 300; quick 50)")
    parser.add_argument("--repeats", type=int, help="rounds (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run under a minute")
    parser.add_argument("--only", choices=("inserts", "reads"),
                        help="run only the insert cells or only the read/restart phase")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="also write the cells' numbers here "
                        "(bench/cells_json.py; read by bench/report.py)")
    parser.add_argument("--scratch-parent", type=Path, default=REPO_ROOT / "bench" / "results",
                        help="where the temporary scratch dir is made (default bench/results)")
    parser.add_argument("--profile", choices=PROFILE_KINDS,
                        help="instead of the tables: run one measurement under cProfile (insert"
                             " kinds use --seconds; lookup/group/replay load --rows-large rows "
                             "through the commit path first)")
    args = parser.parse_args(argv)
    defaults = dict(rows_large=(50_000, 1_000_000), rows_small=(2_000, 10_000),
                    sql_load_rows=(2_000, 20_000), hot_chunks=(2_000, 10_000),
                    seconds=(1.0, 3.0), warmup=(0.5, 1.0), lookups=(50, 300), repeats=(1, 3))
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if (args.rows_large < 1 or args.rows_small < 1 or args.sql_load_rows < 0
            or args.hot_chunks < 0 or args.seconds <= 0 or args.warmup < 0 or args.lookups < 1
            or args.repeats < 1):
        parser.error("sizes and counts must be positive (--sql-load-rows/--hot-chunks >= 0)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark (or one profile); the report goes to stdout, progress to stderr."""
    args = parse_args(argv)
    args.scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="engine-bench-", dir=args.scratch_parent))
    started = time.perf_counter()
    sizes = ReadSizes(args.rows_small, args.rows_large, args.sql_load_rows, args.lookups,
                      args.repeats)
    try:
        machine = [(name, source_revision() if name == "sluice revision" else value)
                   for name, value in machine_description(scratch)]
        if args.profile:
            report = run_profile(scratch, args.profile, args)
        else:
            inserts = [] if args.only == "reads" else run_insert_rounds(
                scratch, insert_cells(args.hot_chunks), args.seconds, args.warmup,
                args.repeats, sys.stderr.write)
            reads = None if args.only == "inserts" else run_reads(scratch, sizes,
                                                                   sys.stderr.write)
            settings = (f"inserts: {args.seconds:g} s measured per cell after {args.warmup:g} s "
                        f"warm-up, fresh data directory per cell; {args.repeats} round(s), "
                        f"medians; tables of {args.rows_small:,} and {args.rows_large:,} rows; "
                        f"{args.lookups} lookups per table per round; load average at end "
                        + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
            report = render_report(machine, settings, inserts, reads, sizes,
                                   time.perf_counter() - started)
            if args.json is not None:
                cells_json.write(args.json, "engine", json_cells(inserts, reads))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
