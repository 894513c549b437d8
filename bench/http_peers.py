"""PostgreSQL next to Sluice in the HTTP benchmark: a throw-away cluster, pgbench and COPY.

``bench/peers.sh`` installs wrk and PostgreSQL from Debian packages when they are missing and
prints where they are (``find_peers``). ``postgres_cluster`` then makes a cluster in a
temporary directory (``initdb``; as the ``postgres`` user when we run as root, because
PostgreSQL refuses to run as root), starts it with ``pg_ctl`` on a free loopback port with
``fsync=on`` and ``synchronous_commit=on`` (stock durability: a commit returns after its WAL
is fdatasync'ed), and always stops it (``pg_ctl stop -m fast``, then ``immediate``) and
deletes the directory, also when the benchmark fails or is interrupted.

Workloads (same table and rows as Sluice, ``bench/http_load.py``):

* ``run_pgbench``: single-row INSERTs, one per autocommit transaction, by pgbench with a
  custom script at C clients (``-j 1``: one client thread, like wrk's ``-t1``); ids from a
  sequence. Latency per transaction from pgbench's per-transaction log.
* ``run_copy``: ``COPY … FROM STDIN (FORMAT csv)`` of 10,000-row batches, each its own
  transaction, into a table of its own (emptied before each run), by C concurrent ``psql`` processes (each a pre-written script of batches with
  distinct ids); rows/s over the wall time of all of them, latency per COPY from ``\\timing``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.http_load import COLUMNS_SQL, POOL_SIZE, ROW_POOL, children_cpu_seconds

PEERS_SCRIPT = Path(__file__).resolve().parent / "peers.sh"
PG_USER = "postgres"
COPY_ROWS_PER_BATCH = 10_000
PG_START_TIMEOUT_S = 60
PG_COLUMNS_SQL = ("(id BIGINT PRIMARY KEY, user_id TEXT, ts TIMESTAMP, kind TEXT, "
                  "amount DOUBLE PRECISION, flag BOOLEAN, payload TEXT)")
# pgbench inserts into `events` (ids from a sequence), COPY into `copied` (emptied per run).
PG_TABLE_SQL = (f"CREATE TABLE events {PG_COLUMNS_SQL}; CREATE TABLE copied {PG_COLUMNS_SQL}; "
                "CREATE SEQUENCE event_ids;")
SETTINGS_SHOWN = ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
                  "shared_buffers", "commit_delay", "full_page_writes")


@dataclass(frozen=True, slots=True)
class Peers:
    wrk: str
    pg_bin: Path


def find_peers() -> Peers:
    """Runs ``bench/peers.sh`` (installing what is missing) and returns the paths it printed."""
    done = subprocess.run(["sh", str(PEERS_SCRIPT)], capture_output=True, text=True,
                          check=False, timeout=900)
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or "WRK" not in found or "PG_BIN" not in found:
        raise RuntimeError(f"bench/peers.sh failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return Peers(found["WRK"], Path(found["PG_BIN"]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True, slots=True)
class PgCluster:
    bin: Path
    directory: Path
    port: int

    def client_args(self) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]

    def psql(self, sql: str) -> str:
        """Runs ``sql`` with psql (tuples only, unaligned); raises on any error."""
        done = subprocess.run(
            [str(self.bin / "psql"), *self.client_args(), "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-c", sql, "postgres"],
            capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {sql[:200]!r}: {done.stderr[-1000:]}")
        return done.stdout

    def settings(self) -> str:
        """The durability-relevant settings as ``name=value`` (read back with SHOW)."""
        return ", ".join(f"{name}={self.psql(f'SHOW {name}').strip()}"
                         for name in SETTINGS_SHOWN)

    def server_pids(self) -> list[int]:
        """The postmaster and its live children."""
        text = (self.directory / "data" / "postmaster.pid").read_text().split()
        master = int(text[0])
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                                  text=True, check=False).stdout.split()
        return [master, *map(int, children)]


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *command] if os.geteuid() == 0 else command


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, PG_USER, PG_USER)


def _pg_ctl(cluster: PgCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_postgres([str(cluster.bin / "pg_ctl"), "-D", str(cluster.directory / "data"),
                      *args]),
        capture_output=True, text=True, check=False, timeout=PG_START_TIMEOUT_S + 30)


@contextlib.contextmanager
def postgres_cluster(pg_bin: Path, parent: Path) -> Iterator[PgCluster]:
    """A started throw-away cluster under ``parent/pg`` (see the module docstring)."""
    directory = parent / "pg"
    directory.mkdir()
    parent.chmod(0o755)  # the postgres user must reach its directory
    _give_to_postgres(directory)
    cluster = PgCluster(pg_bin, directory, free_port())
    try:
        init = subprocess.run(
            _as_postgres([str(pg_bin / "initdb"), "-D", str(directory / "data"), "-U", PG_USER,
                          "--auth=trust", "-E", "UTF8", "--no-sync"]),
            capture_output=True, text=True, check=False, timeout=300)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
        options = (f"-c port={cluster.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={directory} -c fsync=on "
                   f"-c synchronous_commit=on")
        start = _pg_ctl(cluster, "-l", str(directory / "server.log"), "-w", "-t",
                        str(PG_START_TIMEOUT_S), "-o", options, "start")
        if start.returncode != 0:
            log = (directory / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {start.stderr[-1000:]}\n{log}")
        cluster.psql(PG_TABLE_SQL)
        yield cluster
    finally:
        running = (directory / "data" / "postmaster.pid").exists()
        if running and _pg_ctl(cluster, "-m", "fast", "-w", "stop").returncode != 0:
            _pg_ctl(cluster, "-m", "immediate", "-w", "stop")
        shutil.rmtree(directory, ignore_errors=True)


# ---- workloads -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PgRun:
    """One pgbench or COPY run: ``transactions`` (statements), ``rows``, the window, latency
    per transaction and the client processes' CPU."""
    transactions: int
    rows: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu_s: float


def _percentile_ms(latencies_ms: list[float], q: float) -> float:
    if not latencies_ms:
        return float("nan")
    ordered = sorted(latencies_ms)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _pgbench_script(directory: Path) -> Path:
    row = ROW_POOL[1]
    script = directory / "insert.sql"
    script.write_text(
        f"\\set r random(0, {POOL_SIZE - 1})\n"
        f"INSERT INTO events ({COLUMNS_SQL}) VALUES (nextval('event_ids'), 'user' || :r, "
        f"TIMESTAMP '{row.ts_text}' + :r * INTERVAL '1 millisecond', '{row.kind}', "
        f"{row.amount!r}, {'TRUE' if row.flag else 'FALSE'}, '{row.payload}');\n")
    return script


def run_pgbench(cluster: PgCluster, work: Path, clients: int, seconds: int) -> PgRun:
    """pgbench single-row INSERTs at ``clients`` clients for ``seconds`` (see the module
    docstring); raises if pgbench fails or reports failed transactions."""
    work.mkdir(parents=True, exist_ok=True)
    script = _pgbench_script(work)
    cpu0 = children_cpu_seconds()
    done = subprocess.run(
        [str(cluster.bin / "pgbench"), *cluster.client_args(), "-n", "-M", "prepared",
         "-c", str(clients), "-j", "1", "-T", str(seconds), "-f", str(script), "-l",
         "--log-prefix", str(work / "txn"), "postgres"],
        capture_output=True, text=True, check=False, timeout=seconds + 120, cwd=work)
    cpu = children_cpu_seconds() - cpu0
    if done.returncode != 0 or "failed transactions: 0 " not in done.stdout:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stdout[-1500:]}"
                           f"{done.stderr[-1500:]}")
    latencies = []
    for log in work.glob("txn*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1000)
        log.unlink()
    tps_line = next(x for x in done.stdout.splitlines() if x.startswith("number of transactions"))
    count = int(tps_line.split(":")[1].split()[0])
    return PgRun(count, count, float(seconds), _percentile_ms(latencies, 50),
                 _percentile_ms(latencies, 99), cpu)


def _copy_script(path: Path, first_id: int, batches: int) -> None:
    """``batches`` COPY statements of 10,000 rows each, ids from ``first_id``, as a psql
    script (each COPY is its own autocommit transaction)."""
    lines = ["\\timing on\n"]
    head = f"COPY copied ({COLUMNS_SQL}) FROM STDIN WITH (FORMAT csv);\n"
    rows = [f",{r.user_id},{r.ts_text},{r.kind},{r.amount!r},{'t' if r.flag else 'f'},"
            f"{r.payload}\n" for r in ROW_POOL]
    next_id = first_id
    for _ in range(batches):
        lines.append(head)
        lines += [f"{next_id + i}{rows[i % POOL_SIZE]}" for i in range(COPY_ROWS_PER_BATCH)]
        lines.append("\\.\n")
        next_id += COPY_ROWS_PER_BATCH
    path.write_text("".join(lines))


def run_copy(cluster: PgCluster, work: Path, clients: int, rows_total: int) -> PgRun:
    """COPY of at least ``rows_total`` rows in 10,000-row batches by ``clients`` concurrent
    psql processes into an emptied table; raises if any psql fails."""
    work.mkdir(parents=True, exist_ok=True)
    batches = max(1, -(-rows_total // (COPY_ROWS_PER_BATCH * clients)))
    scripts = []
    for client in range(clients):
        scripts.append(work / f"copy{client}.sql")
        _copy_script(scripts[-1], client * batches * COPY_ROWS_PER_BATCH, batches)
    cluster.psql("TRUNCATE copied; CHECKPOINT")
    cpu0, started = children_cpu_seconds(), time.perf_counter()
    processes = [subprocess.Popen(
        [str(cluster.bin / "psql"), *cluster.client_args(), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-f", str(script), "postgres"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for script in scripts]
    outputs = [process.communicate(timeout=900) for process in processes]
    seconds = time.perf_counter() - started
    cpu = children_cpu_seconds() - cpu0
    for process, (_, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"psql COPY failed ({process.returncode}): {err[-1500:]}")
    latencies = [float(line.split()[1]) for out, _ in outputs for line in out.splitlines()
                 if line.startswith("Time: ")]
    shutil.rmtree(work, ignore_errors=True)
    count = batches * clients
    return PgRun(count, count * COPY_ROWS_PER_BATCH, seconds, _percentile_ms(latencies, 50),
                 _percentile_ms(latencies, 99), cpu)
