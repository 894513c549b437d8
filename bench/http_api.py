"""HTTP benchmark: Sluice's hot routes under wrk, next to the bare hypercorn-trio ASGI ceiling
and PostgreSQL, all measured in the same run on the same machine.

Run: ``.venv/bin/python -m bench.http_api`` (``make bench-http``); ``--quick`` for a smoke
run, ``--help`` for options; ``bench/README.md`` (section "HTTP benchmark") explains every
cell and column and holds a reading of one run.

One invocation: ``bench/peers.sh`` (installs wrk and PostgreSQL from Debian packages when
missing), then three servers on loopback, each started by the benchmark in a scratch
directory under ``bench/results/`` and always stopped and deleted at the end (also on
failure or Ctrl-C): ``sluice serve`` on a fresh data directory, the bare ASGI app of
``bench/asgi_ceiling.py`` on hypercorn's trio worker with Sluice's settings, and a
throw-away PostgreSQL cluster (``bench/http_peers.py``). A root token comes from
``POST /v1/api/auth/login`` (or is minted when that route is missing). Sluice then gets a
table of ``--big-rows`` rows (1,000,000) for the PK lookups. Cells, each at 1, 16 and 64
connections, rounds interleaved (round 1 of every cell, then round 2, ...):

* **ceiling**: the single-row INSERT body posted to the bare ASGI app;
* **insert1**: single-row INSERT via ``/v1/api/sql`` with ``$n`` params, unique ids;
* **insert100**: one literal ``INSERT … VALUES`` of 100 rows;
* **params1000**: ``params`` as an array of 1,000 arrays for one ``INSERT … VALUES ($1…)``;
* **ndjson** / **arrow**: ``POST /v1/api/ingest/bench/{table}`` with 10,000 rows as NDJSON
  or as an Arrow IPC stream ("n/a (route missing)" while the route answers an empty 404);
* **select**: ``SELECT * … WHERE id = $1`` with random existing ids on the big table;
* **pg_insert**: pgbench single-row INSERTs (one autocommit transaction each);
* **pg_copy**: ``COPY … FROM STDIN`` of 10,000-row batches (rows/s).

Insert cells write into a table of their own per cell and round (created before, dropped
after). Every reply must be 2xx and match the cell's expected ``row_count``, or the cell
FAILS (a fast error is not a result). Figures are medians over ``--repeats`` rounds; the
targets are checked at the end (PASS/FAIL). Report on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench import cells_json
from bench.http_cells import (
    INGEST_ROWS,
    KINDS,
    Cell,
    CellResult,
    Kind,
    Sample,
    build_cells,
    results_table,
    target_checks,
)
from bench.http_load import (
    COLUMNS,
    ROW_POOL,
    SCHEMA_SQL,
    WARMUP_BASE,
    Body,
    arrow_body_parts,
    insert_params_sql,
    lua_script,
    params_row,
    run_wrk,
)
from bench.http_peers import (
    COPY_ROWS_PER_BATCH,
    Peers,
    PgCluster,
    find_peers,
    free_port,
    postgres_cluster,
    run_copy,
    run_pgbench,
)
from bench.http_profile import find_py_spy, start_recording, summarize
from bench.http_server import (
    SERVER_TOML,
    HttpError,
    ServerProcess,
    base_env,
    bearer_token,
    ceiling_command,
    cpu_delta,
    http_call,
    process_cpu_seconds,
    running_server,
    sluice_command,
    sql,
)
from bench.wal_group_commit import cpu_seconds, machine_description

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench"
BIG_TABLE = f"{NAMESPACE}.big"
SQL_PATH = "/v1/api/sql"
INGEST_PATH = "/v1/api/ingest/{namespace}/{table}"
LOAD_ROWS_PER_REQUEST = 10_000  # = EngineConfig.param_rows_max
ROOT_PASSWORD = "bench-root-" + os.urandom(8).hex()
COPY_ROWS_PER_SECOND_GUESS = 150_000  # sizes a COPY run to about --seconds
# A cell whose connections carry many rows per request runs at least WAVES_MIN "waves" (one
# request on every connection) at this rate, so that requests complete inside the window:
# 64 connections x 10,000 rows are 640,000 rows in flight.
WAVE_ROWS_PER_SECOND_GUESS = 100_000
WAVES_MIN = 2
IDLE_CORES = 0.10  # a server below this CPU use for IDLE_PROBE_S is idle (drained)
IDLE_PROBE_S = 0.2
IDLE_WAIT_MAX_S = 60.0


# ---- the benchmark's state -------------------------------------------------------------------

@dataclass(slots=True)
class Bench:
    """Everything the cells share: options, peers, servers, token, scratch directory."""
    args: argparse.Namespace
    scratch: Path
    peers: Peers
    sluice: ServerProcess | None = None
    ceiling: ServerProcess | None = None
    pg: PgCluster | None = None
    token: str = ""
    token_source: str = ""
    ingest: str = "unknown"  # "ok" or why not
    big_rows: int = 0
    notes: list[str] = field(default_factory=list)
    py_spy: str | None = None  # --profile: record the server while the measured run lasts

    def client_prefix(self) -> list[str]:
        return ["taskset", "-c", "1"] if self.args.pin else []

    def server_prefix(self) -> list[str]:
        return ["taskset", "-c", "0"] if self.args.pin else []


def progress(text: str) -> None:
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


# ---- Sluice set-up ---------------------------------------------------------------------------

def ingest_status(bench: Bench) -> str:
    """``ok`` when ``POST /v1/api/ingest/…`` exists, else why not: an empty-bodied 404 is
    the app's unknown-path answer, i.e. the route is missing."""
    assert bench.sluice is not None
    table = "ingest_probe"
    sql(bench.sluice, bench.token, f"CREATE TABLE IF NOT EXISTS {NAMESPACE}.{table} {SCHEMA_SQL}")
    line = json.dumps(dict(zip(COLUMNS, params_row(1, ROW_POOL[1]), strict=True))) + "\n"
    status, body = http_call(bench.sluice, "POST",
                             INGEST_PATH.format(namespace=NAMESPACE, table=table),
                             line.encode(), {"Authorization": f"Bearer {bench.token}",
                                             "Content-Type": "application/x-ndjson"})
    sql(bench.sluice, bench.token, f"DROP TABLE {NAMESPACE}.{table}")
    if status == 404 and not body:
        return "n/a (route missing)"
    if status != 200:
        return f"n/a (one-row NDJSON probe answered HTTP {status}: {body[:200]!r})"
    return "ok"


def _load_request(bench: Bench, first: int, count: int) -> None:
    """Rows ``first .. first+count-1`` (ids = row numbers) in one request: an Arrow ingest
    body when the route exists and ``count`` is a full ingest body, else a params batch."""
    assert bench.sluice is not None
    if bench.ingest == "ok" and count == INGEST_ROWS:
        prefix, suffix = arrow_body_parts(INGEST_ROWS, bench.scratch)
        ids = pa.array(range(first, first + count), pa.int64()).buffers()[1]
        body = prefix.read_bytes() + ids.to_pybytes()[:8 * count] + suffix.read_bytes()
        status, reply = http_call(
            bench.sluice, "POST", INGEST_PATH.format(namespace=NAMESPACE, table="big"), body,
            {"Authorization": f"Bearer {bench.token}",
             "Content-Type": KINDS["arrow"].content_type})
        if status != 200:
            raise HttpError(status, reply, "loading the big table through ingest")
        return
    batch = [params_row(i, ROW_POOL[i % len(ROW_POOL)]) for i in range(first, first + count)]
    sql(bench.sluice, bench.token, insert_params_sql(BIG_TABLE), batch)


def load_big_table(bench: Bench, rows: int) -> None:
    """Creates ``bench.big`` with ids ``0 .. rows-1``, 10,000 rows per request (Arrow
    ingest when available, else params batches), one request at a time."""
    assert bench.sluice is not None
    sql(bench.sluice, bench.token, f"CREATE TABLE {BIG_TABLE} {SCHEMA_SQL}")
    started = time.perf_counter()
    for first in range(0, rows, LOAD_ROWS_PER_REQUEST):
        _load_request(bench, first, min(LOAD_ROWS_PER_REQUEST, rows - first))
        if first // LOAD_ROWS_PER_REQUEST % 20 == 19:
            progress(f"loaded {first + LOAD_ROWS_PER_REQUEST:,} of {rows:,} rows")
    seconds = time.perf_counter() - started
    bench.big_rows = rows
    how = "Arrow ingest" if bench.ingest == "ok" else "params batches"
    bench.notes.append(f"{BIG_TABLE}: {rows:,} rows loaded through {LOAD_ROWS_PER_REQUEST:,}-row "
                       f"{how} in {seconds:.1f} s ({rows / seconds:,.0f} rows/s, one request "
                       f"at a time)")


# ---- running one cell ------------------------------------------------------------------------

def _expect(kind: Kind) -> str:
    """The Lua pattern a good reply body must contain."""
    return f'"row_count":%s*{kind.rows}[^%d]'


def _cell_table(cell: Cell, round_no: int) -> str:
    return BIG_TABLE if cell.kind.name == "select" else \
        f"{NAMESPACE}.{cell.kind.name}_c{cell.connections}_r{round_no}"


def _script(bench: Bench, cell: Cell, table: str, base: int, name: str) -> Path:
    kind = cell.kind
    assert kind.body is not None
    body = Body(kind.body.kind, bench.big_rows) if kind.name == "select" else kind.body
    path = (INGEST_PATH.format(namespace=NAMESPACE, table=table.split(".")[1])
            if kind.route == "ingest" else SQL_PATH)
    arrow = None
    if kind.name == "arrow":
        arrow = arrow_body_parts(kind.rows, bench.scratch)
    script = bench.scratch / f"{name}.lua"
    script.write_text(lua_script(body, table=table, path=path, token=bench.token, base=base,
                                 expect=_expect(kind), content_type=kind.content_type,
                                 arrow_files=arrow, seed=base + 1))
    return script


def cell_seconds(cell: Cell, seconds: int) -> int:
    """The measured window of ``cell``: ``seconds``, or longer for big requests on many
    connections (see ``WAVE_ROWS_PER_SECOND_GUESS``)."""
    wave = -(-cell.connections * cell.kind.rows // WAVE_ROWS_PER_SECOND_GUESS)
    return max(seconds, WAVES_MIN * wave)


def wait_idle(pids: Callable[[], list[int]]) -> float:
    """Waits until the servers stop using CPU (requests a finished wrk run left in flight
    are done); returns the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < IDLE_WAIT_MAX_S:
        before = process_cpu_seconds(pids())
        time.sleep(IDLE_PROBE_S)
        if cpu_delta(before, process_cpu_seconds(pids())) < IDLE_CORES * IDLE_PROBE_S:
            break
    return time.perf_counter() - started


def _measured(pids: Callable[[], list[int]], run: Callable[[], Any]
              ) -> tuple[Any, float, float, float]:
    """Runs ``run()``; returns its result, the wall seconds, the servers' CPU seconds and
    the CPU seconds of processes other than the servers, the clients and this one."""
    busy0, own0 = cpu_seconds()
    server0, started = process_cpu_seconds(pids()), time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    server = cpu_delta(server0, process_cpu_seconds(pids()))
    busy1, own1 = cpu_seconds()
    others = (busy1 - busy0) - (own1 - own0) - server - result.client_cpu_s
    return result, wall, server, max(0.0, others)


def run_http_cell(bench: Bench, cell: Cell, round_no: int) -> Sample:
    """One run of a wrk cell: warm-up, measured window, cleanup."""
    server = bench.ceiling if cell.kind.name == "ceiling" else bench.sluice
    assert server is not None
    table = _cell_table(cell, round_no)
    creates = cell.kind.name not in ("ceiling", "select")
    if creates:
        sql(server, bench.token, f"CREATE TABLE {table} {SCHEMA_SQL}")
    url, args, pids = server.url + "/", bench.args, lambda: [server.process.pid]
    seconds = cell_seconds(cell, args.seconds)
    try:
        if args.warmup > 0:
            warm = run_wrk(bench.peers.wrk, url, _script(bench, cell, table, WARMUP_BASE, "warm"),
                           cell.connections, args.warmup, bench.client_prefix())
            wait_idle(pids)
            if warm.failure and warm.requests:  # none completing in a short warm-up is fine
                return Sample(failure=f"warm-up: {warm.failure}")
        script = _script(bench, cell, table, 0, "measure")
        recorder = None if bench.py_spy is None else start_recording(
            bench.py_spy, server.process.pid, seconds, bench.scratch / "py-spy.txt")
        run, wall, server_s, others = _measured(
            pids, lambda: run_wrk(bench.peers.wrk, url, script, cell.connections, seconds,
                                  bench.client_prefix()))
        if recorder is not None:
            recorder.communicate(timeout=seconds + 60)
    finally:
        wait_idle(pids)
        if creates:
            sql(server, bench.token, f"DROP TABLE {table}")
    if run.failure:
        return Sample(failure=run.failure)
    req_s = run.requests / run.seconds
    return Sample(req_s, req_s * cell.kind.rows, run.p50_ms, run.p99_ms, server_s / wall,
                  run.client_cpu_s / wall, others / wall)


def run_pg_cell(bench: Bench, cell: Cell, round_no: int) -> Sample:
    """One run of a PostgreSQL cell (pgbench or COPY)."""
    pg, args = bench.pg, bench.args
    assert pg is not None
    work = bench.scratch / f"pg-{cell.key}-r{round_no}"
    if cell.kind.name == "pg_insert":
        job = lambda: run_pgbench(pg, work, cell.connections, args.seconds)  # noqa: E731
    else:
        rows = max(cell.connections * COPY_ROWS_PER_BATCH,
                   int(args.seconds * COPY_ROWS_PER_SECOND_GUESS))
        job = lambda: run_copy(pg, work, cell.connections, rows)  # noqa: E731
    try:
        if cell.kind.name == "pg_insert" and args.warmup > 0:
            run_pgbench(pg, work, cell.connections, args.warmup)
        run, wall, server_s, others = _measured(pg.server_pids, job)
    except RuntimeError as exc:
        return Sample(failure=str(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Sample(run.transactions / run.seconds, run.rows / run.seconds, run.p50_ms,
                  run.p99_ms, server_s / wall, run.client_cpu_s / wall, others / wall)


def run_cell(bench: Bench, cell: Cell, round_no: int) -> Sample:
    """One run of any cell; whatever goes wrong fails this cell, not the benchmark."""
    try:
        if cell.kind.body is None:
            return run_pg_cell(bench, cell, round_no)
        return run_http_cell(bench, cell, round_no)
    except Exception as exc:  # wrk, pgbench, psql or the set-up SQL failed
        return Sample(failure=f"{type(exc).__name__}: {exc}")


def _missing(bench: Bench, cell: Cell) -> str | None:
    if cell.kind.route == "ingest" and bench.ingest != "ok":
        return bench.ingest
    if cell.kind.body is None and bench.pg is None:
        return "n/a (--no-postgres)"
    return None


def run_rounds(bench: Bench, cells: Sequence[Cell]) -> list[CellResult]:
    results = [CellResult(cell, missing=_missing(bench, cell)) for cell in cells]
    for round_no in range(1, bench.args.repeats + 1):
        for result in results:
            if result.missing:
                continue
            sample = run_cell(bench, result.cell, round_no)
            result.samples.append(sample)
            if sample.failure:
                progress(f"round {round_no} {result.cell.key}: CELL FAILED: {sample.failure}")
            else:
                progress(f"round {round_no}/{bench.args.repeats} {result.cell.key}: "
                         f"{sample.req_s:,.0f} req/s, {sample.rows_s:,.0f} rows/s, p50 "
                         f"{sample.p50_ms:.2f} ms, p99 {sample.p99_ms:.2f} ms, server "
                         f"{sample.server_cores:.2f} / client {sample.client_cores:.2f} / other "
                         f"{sample.other_cores:.2f} cores")
    return results


def render_report(bench: Bench, machine: Sequence[tuple[str, str]], settings: str,
                  results: Sequence[CellResult]) -> str:
    out = ["# Sluice HTTP benchmark", ""]
    out += [f"- **{name}**: {value}" for name, value in machine]
    out += [f"- **settings**: {settings}", f"- **token**: {bench.token_source}",
            f"- **ingest route**: {bench.ingest}"]
    out += [f"- **note**: {note}" for note in bench.notes]
    out += ["", results_table(results), "",
            "req/s and rows/s: completed requests (rows) per second of the measured window; "
            "p50/p99: per request as wrk sees it (per transaction for pgbench, per 10,000-row "
            "COPY for PostgreSQL COPY). req/s vs ceiling: over the bare ASGI ceiling at the "
            "same connections. server CPU: cores used by the server process (PostgreSQL: the "
            "postmaster and its backends); load-gen CPU: cores used by wrk (pgbench, psql); "
            f"other load: cores busy in other processes, out of the machine's {os.cpu_count()}"
            ". The load generator and the servers share those cores.", "",
            "| target | measured | result |", "|---|---|---|"]
    out += [f"| {name} | {measured} | **{'PASS' if ok else 'FAIL'}** |"
            for name, measured, ok in target_checks(results, bench.big_rows)]
    return "\n".join(out) + "\n"


def source_revision() -> str:
    """HEAD, flagged when ``api/``, ``engine/``, ``wal/`` or ``bench/`` have changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, check=False, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""
    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = [p for p in ("api", "engine", "wal", "bench")
                 if git("status", "--porcelain", "--", p)]
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return head + (f" + uncommitted changes in {', '.join(d + '/' for d in dirty)}" if dirty
                   else " (api/, engine/, wal/, bench/ clean)")


def describe_machine(bench: Bench) -> list[tuple[str, str]]:
    from importlib import metadata

    wrk_version = subprocess.run([bench.peers.wrk, "--version"], capture_output=True,
                                 text=True, check=False).stdout.split("[")[0].strip()
    facts = [(name, source_revision() if name == "sluice revision" else value)
             for name, value in machine_description(bench.scratch)]
    facts.append(("peers", f"{wrk_version} (1 thread); hypercorn "
                           f"{metadata.version('hypercorn')} (trio worker); PostgreSQL: "
                           + (bench.pg.settings() if bench.pg else "not run")))
    return facts


# ---- command line ----------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` only changes defaults the user did not set."""
    parser = argparse.ArgumentParser(prog="python -m bench.http_api",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, help="measured seconds per cell, whole "
                                                    "seconds for wrk (default 5; quick 1)")
    parser.add_argument("--warmup", type=int, help="unmeasured seconds before each cell, 0 "
                                                   "for none (default 1; quick 0)")
    parser.add_argument("--repeats", type=int, help="rounds over all cells (default 3; quick 1)")
    parser.add_argument("--big-rows", type=int, help="rows of the PK SELECT table "
                                                     "(default 1,000,000; quick 20,000)")
    parser.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated connection counts (default 1,16,64)")
    parser.add_argument("--cells", type=lambda s: s.split(","),
                        help=f"comma-separated workloads (default all: {','.join(KINDS)})")
    parser.add_argument("--quick", action="store_true", help="smoke run, about 2 minutes")
    parser.add_argument("--no-postgres", action="store_true",
                        help="skip PostgreSQL (wrk is still installed when missing)")
    parser.add_argument("--pin", action="store_true",
                        help="pin servers to CPU 0 and wrk/pgbench/psql to CPU 1 (taskset)")
    parser.add_argument("--profile", choices=[k for k, v in KINDS.items() if v.body],
                        help="instead of the table: run that one cell (first --connections "
                             "value, default 16) with py-spy recording the server")
    parser.add_argument("--py-spy", help="the py-spy executable for --profile (default: on PATH)")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="also write the cells' numbers here "
                        "(bench/cells_json.py; read by bench/report.py)")
    parser.add_argument("--scratch-parent", type=Path, default=REPO_ROOT / "bench" / "results",
                        help="where the temporary scratch dir is made (default bench/results)")
    args = parser.parse_args(argv)
    conns = [16] if args.profile else [1, 16, 64]
    defaults = dict(seconds=(1, 5), warmup=(0, 1), repeats=(1, 3),
                    big_rows=(20_000, 1_000_000), connections=(conns, conns),
                    cells=(list(KINDS), list(KINDS)))
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    unknown = set(args.cells) - set(KINDS)
    if unknown:
        parser.error(f"unknown cells {sorted(unknown)}; choose from {','.join(KINDS)}")
    if (args.seconds < 1 or args.warmup < 0 or args.repeats < 1 or args.big_rows < 1
            or not args.connections or min(args.connections) < 1):
        parser.error("--seconds/--repeats/--big-rows/--connections must be >= 1, "
                     "--warmup >= 0")
    return args


def _interrupt_on_signals() -> None:
    """SIGTERM (and SIGINT, even where the shell started us with it ignored) raise
    ``KeyboardInterrupt``, so every server is stopped by its context manager."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def started(bench: Bench) -> Iterator[Bench]:
    """Starts PostgreSQL, the ceiling and Sluice; stops all of them when the block exits."""
    with contextlib.ExitStack() as stack:
        if not bench.args.no_postgres:
            progress("starting PostgreSQL")
            bench.pg = stack.enter_context(postgres_cluster(bench.peers.pg_bin, bench.scratch))
        directory = bench.scratch / "sluice"
        directory.mkdir()
        (directory / "server.toml").write_text(SERVER_TOML)
        env = base_env(KALAMDB_DATA_DIR=str(directory / "data"),
                       KALAMDB_SERVER_PORT=str(free_port()),
                       KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD)
        progress("starting sluice serve and the ASGI ceiling")
        bench.sluice = stack.enter_context(running_server(
            "sluice serve", sluice_command(bench.server_prefix()), env=env, cwd=directory,
            log=bench.scratch / "sluice.log"))
        bench.ceiling = stack.enter_context(running_server(
            "ASGI ceiling", ceiling_command(free_port(), bench.server_prefix()), env=base_env(),
            cwd=bench.scratch, log=bench.scratch / "ceiling.log"))
        bench.token, bench.token_source = bearer_token(bench.sluice, directory / "data",
                                                       ROOT_PASSWORD)
        sql(bench.sluice, bench.token, f"CREATE NAMESPACE IF NOT EXISTS {NAMESPACE}")
        yield bench


def run(args: argparse.Namespace, scratch: Path) -> str:
    started_at = time.perf_counter()
    progress("checking peers (bench/peers.sh)")
    bench = Bench(args, scratch, find_peers())
    cells = build_cells(args.cells, args.connections)
    with started(bench):
        machine = describe_machine(bench)
        bench.ingest = ingest_status(bench)
        progress(f"ingest route: {bench.ingest}")
        if "select" in args.cells:
            progress(f"loading {args.big_rows:,} rows into {BIG_TABLE}")
            load_big_table(bench, args.big_rows)
        results = run_rounds(bench, cells)
    if args.json is not None:
        cells_json.write(args.json, "http", [json_cell(r) for r in results])
    pinning = ("servers pinned to CPU 0, clients to CPU 1" if args.pin
               else "servers and clients not pinned")
    settings = (f"{args.seconds} s measured per cell after {args.warmup} s warm-up, "
                f"{args.repeats} round(s) interleaved, medians; connections "
                f"{','.join(map(str, args.connections))}; cells with many rows in flight "
                f"run longer (at least {WAVES_MIN} requests per connection at "
                f"{WAVE_ROWS_PER_SECOND_GUESS:,} rows/s); {pinning}; wall time "
                f"{time.perf_counter() - started_at:.0f} s; load average at end "
                + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return render_report(bench, machine, settings, results)


def json_cell(result: CellResult) -> dict:
    """One cell for ``--json`` (bench/cells_json.py): x = connections."""
    kind = result.cell.kind
    system = ("postgresql" if kind.name.startswith("pg_") else
              "asgi ceiling" if kind.name == "ceiling" else "sluice")
    return cells_json.cell(result.cell.key, f"{kind.label}, {result.cell.connections} conn",
                           system, group=kind.name,
                           x=result.cell.connections, rate=result.median("rows_s"),
                           rate_unit="rows/s", p50_ms=result.median("p50_ms"),
                           p99_ms=result.median("p99_ms"), metrics=cells_json.medians(result))


def run_profile(args: argparse.Namespace, scratch: Path) -> str:
    """``--profile KIND``: one run of that cell, py-spy recording the server meanwhile."""
    args.no_postgres = True
    bench = Bench(args, scratch, find_peers(), py_spy=find_py_spy(args.py_spy))
    cell = Cell(KINDS[args.profile], args.connections[0])
    with started(bench):
        bench.ingest = ingest_status(bench)
        if _missing(bench, cell):
            raise SystemExit(f"bench: cannot profile {cell.key}: {_missing(bench, cell)}")
        if args.profile == "select":
            load_big_table(bench, args.big_rows)
        progress(f"profiling {cell.key} for {args.seconds} s")
        sample = run_http_cell(bench, cell, 1)
    if sample.failure:
        raise SystemExit(f"bench: {cell.key} failed: {sample.failure}")
    raw = (scratch / "py-spy.txt").read_text()
    return (f"# py-spy profile of the Sluice server: {cell.kind.label}, {cell.connections} "
            f"conn(s)\n\n{sample.req_s:,.0f} req/s, {sample.rows_s:,.0f} rows/s, p50 "
            f"{sample.p50_ms:.2f} ms, server CPU {sample.server_cores:.2f} cores, other load "
            f"{sample.other_cores:.2f} cores (py-spy slows the server a little)\n\n"
            + summarize(raw))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; the report goes to stdout (and ``--out``), progress to stderr.
    Exit status 1 when a cell failed (any bad reply), 130 when interrupted, else 0 — FAILed
    targets included."""
    args = parse_args(argv)
    _interrupt_on_signals()
    args.scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="http-bench-", dir=args.scratch_parent))
    try:
        report = run_profile(args, scratch) if args.profile else run(args, scratch)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the servers are stopped by now
        progress("interrupted; servers stopped, scratch directory removed")
        return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    return 1 if "| FAILED: " in report else 0


if __name__ == "__main__":
    sys.exit(main())
