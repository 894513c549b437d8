"""The HTTP benchmark's load side: the rows, wrk's Lua scripts, and running wrk once.

Rows (``ROW_POOL``): every table of the benchmark has the columns of the engine benchmark,
``(id BIGINT PRIMARY KEY, user_id TEXT, ts TIMESTAMP, kind TEXT, amount DOUBLE,
flag BOOLEAN, payload TEXT)``. ``id`` is unique per row; the other six columns of row ``i``
of a request come from a pool of 1,024 pre-built rows (``i % 1024``) with random
100-character payloads, so the WAL's zstd sees realistic, not constant, text. PostgreSQL
gets the same rows (``bench/http_peers.py``).

Ids: a single-row request ``n`` of a run carries id ``base + n``; a multi-row request ``n``
carries ids ``(base + n) * 65536 + i`` for its rows ``i`` (at most 65,536 rows per
request). A warm-up run uses another ``base`` than the measured run, so every id in a table
is unique.

Each Lua script (generated per cell by ``lua_script``) builds every request body itself, so
bodies and ids differ per request; ``response`` counts every reply that is not 2xx, or whose
body does not match the cell's expected pattern (e.g. ``"row_count":100``), as bad, and
``done`` writes one ``BENCH_JSON {...}`` line (counts, p50/p99 in microseconds, wrk's socket
errors) and one ``BENCH_BAD <first bad body>`` line to stdout. wrk runs with ONE thread
(``-t1``): load generator and servers share the machine's cores.
"""

from __future__ import annotations

import json
import random
import re
import resource
import string
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

COLUMNS = ("id", "user_id", "ts", "kind", "amount", "flag", "payload")
COLUMNS_SQL = ", ".join(COLUMNS)
SCHEMA_SQL = ("(id BIGINT PRIMARY KEY, user_id TEXT, ts TIMESTAMP, kind TEXT, amount DOUBLE, "
              "flag BOOLEAN, payload TEXT)")
PLACEHOLDERS = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))
POOL_SIZE = 1024
PAYLOAD_BYTES = 100
ROWS_PER_ID_BLOCK = 65536  # ids of a multi-row request: (base + n) * 65536 + i
WARMUP_BASE = 1 << 24  # id base of warm-up runs (measured runs start at 0); keeps
# multi-row ids below 10**14: LuaJIT prints numbers with 14 significant digits
TS0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
KINDS = ("view", "click", "cart", "buy", "refund", "login", "logout", "search")
WRK_TIMEOUT = "60s"  # a 10,000-row request queued behind 63 others must not time out

_rng = random.Random(20261127)
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class PoolRow:
    """The six non-key columns of one pooled row (``ts`` in microseconds since the epoch)."""
    user_id: str
    ts_us: int
    kind: str
    amount: float
    flag: bool
    payload: str

    @property
    def ts_text(self) -> str:
        """``ts`` as ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC, no zone) for PostgreSQL."""
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.ts_us)
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


ROW_POOL: tuple[PoolRow, ...] = tuple(
    PoolRow(f"user{i % 1000:04d}", TS0_US + i * 1000, KINDS[i % len(KINDS)],
            (i % 10_000) / 100, i % 3 == 0,
            "".join(_rng.choice(_ALPHABET) for _ in range(PAYLOAD_BYTES)))
    for i in range(POOL_SIZE))


def row_id(base: int, request: int, index: int) -> int:
    """The id of row ``index`` of multi-row request ``request`` (see the module docstring)."""
    return (base + request) * ROWS_PER_ID_BLOCK + index


def insert_params_sql(table: str) -> str:
    return f"INSERT INTO {table} ({COLUMNS_SQL}) VALUES ({PLACEHOLDERS})"


def params_row(rid: int, row: PoolRow) -> list[object]:
    """One row as the JSON ``params`` array of ``insert_params_sql``."""
    return [rid, row.user_id, row.ts_us, row.kind, row.amount, row.flag, row.payload]


def ndjson_object(rid: int, row: PoolRow) -> dict[str, object]:
    return dict(zip(COLUMNS, params_row(rid, row), strict=True))


# ---- fragments: everything of a row after its id, in each body format -----------------------

def _json_tail(row: PoolRow) -> str:
    """``,"user0001",…,"payload"`` — the params array after the id, without the bracket."""
    return "," + json.dumps(params_row(0, row)[1:], separators=(",", ":"))[1:-1]


def fragment(kind: str, row: PoolRow) -> str:
    """What follows the id of one row in the body format ``kind``."""
    if kind in ("params", "params_batch"):
        return _json_tail(row) + "]"
    if kind == "literal":
        flag = "TRUE" if row.flag else "FALSE"
        return (f", '{row.user_id}', {row.ts_us}, '{row.kind}', {row.amount!r}, {flag}, "
                f"'{row.payload}')")
    if kind == "ndjson":
        return json.dumps(ndjson_object(0, row), separators=(",", ":"))[len('{"id":0'):] + "\n"
    raise ValueError(f"no row fragment for {kind!r}")


def lua_str(text: str) -> str:
    """A Lua string literal holding ``text`` (ASCII)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# ---- Lua scripts -----------------------------------------------------------------------------

_LUA_COMMON = """
bad, bad_status, bad_body = 0, 0, ""
local threads = {}
local expect = EXPECT
local path = PATH
local base = BASE
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = CTYPE
AUTH

function setup(thread)
  table.insert(threads, thread)
end

function request()
  n = n + 1
  return wrk.format(nil, path, nil, make_body(base + n))
end

function response(status, headers, body)
  local ok = status >= 200 and status < 300
  if ok and expect and not string.find(body or "", expect) then ok = false end
  if not ok then
    bad = bad + 1
    if bad_status == 0 then
      bad_status = status
      bad_body = string.sub(body or "", 1, 400)
    end
  end
end

function done(summary, latency, requests)
  local nbad, st, bb = 0, 0, ""
  for _, t in ipairs(threads) do
    nbad = nbad + t:get("bad")
    if st == 0 and t:get("bad_status") ~= 0 then
      st = t:get("bad_status")
      bb = t:get("bad_body")
    end
  end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%.1f,"p99_us":%.1f,"mean_us":%.1f,"max_us":%.1f,"bad":%d,"bad_status":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), latency.mean, latency.max, nbad, st, e.connect, e.read, e.write,
    e.status, e.timeout))
  io.write("BENCH_BAD " .. (string.gsub(bb, "[\\r\\n]", " ")) .. "\\n")
end
"""

_LUA_POOL = "local pool = {\n%s\n}\n"

# make_body(k): k = base + n (see the module docstring for the ids).
_LUA_SINGLE = """
local head = HEAD
function make_body(k)
  return head .. k .. pool[k % POOL + 1] .. TAIL
end
"""

_LUA_MULTI = """
local head, sep, tail = HEAD, SEP, TAIL
local open = OPEN
local parts = {}
function make_body(k)
  local first = k * BLOCK
  for i = 0, ROWS - 1 do
    parts[i + 1] = open .. (first + i) .. pool[i % POOL + 1]
  end
  return head .. table.concat(parts, sep) .. tail
end
"""

# Arrow: prefix .. id buffer .. suffix. Ids are k * 65536 + i with i < 65536, so the two low
# bytes (little-endian) come from i and the six high bytes from k.
_LUA_ARROW = """
local function slurp(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end
local prefix, suffix = slurp(PREFIX), slurp(SUFFIX)
local low = {}
for i = 0, ROWS - 1 do low[i + 1] = string.char(i % 256, math.floor(i / 256)) end
local parts = {}
function make_body(k)
  local bytes, v = {}, k
  for b = 1, 6 do
    bytes[b] = v % 256
    v = math.floor(v / 256)
  end
  local high = string.char(unpack(bytes))
  for i = 1, ROWS do parts[i] = low[i] .. high end
  return prefix .. table.concat(parts) .. suffix
end
"""

_LUA_SELECT = """
math.randomseed(SEED)
local head = HEAD
function make_body(k)
  return head .. math.random(0, ROWS - 1) .. "]}"
end
"""


@dataclass(frozen=True, slots=True)
class Body:
    """What a cell sends: ``kind`` is one of ``json`` (the ceiling: the single-row body),
    ``params`` (one row, ``$n`` params), ``literal`` (one INSERT, literal VALUES),
    ``params_batch`` (array of arrays), ``ndjson``, ``arrow`` or ``select`` (random PK
    lookups among ``rows`` ids)."""
    kind: str
    rows: int = 1


def _substitute(template: str, values: dict[str, object]) -> str:
    """Replaces the upper-case words of ``template`` named in ``values``, in one pass (an
    inserted value is never scanned again)."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, values)) + r")\b")
    return pattern.sub(lambda match: str(values[match.group(1)]), template)


def _body_lua(body: Body, table: str, arrow_files: tuple[Path, Path] | None,
              seed: int) -> str:
    """The ``make_body`` part of the script (and the pool it needs)."""
    values: dict[str, object] = {"POOL": POOL_SIZE, "ROWS": body.rows, "BLOCK": ROWS_PER_ID_BLOCK}
    if body.kind == "select":
        head = json.dumps({"sql": f"SELECT * FROM {table} WHERE id = $1"})[:-1] + ',"params":['
        return _substitute(_LUA_SELECT, values | {"HEAD": lua_str(head), "SEED": seed})
    if body.kind == "arrow":
        assert arrow_files is not None
        return _substitute(_LUA_ARROW, values | {"PREFIX": lua_str(str(arrow_files[0])),
                                                 "SUFFIX": lua_str(str(arrow_files[1]))})
    frag_kind = "params" if body.kind == "json" else body.kind
    pool = _LUA_POOL % ",\n".join(lua_str(fragment(frag_kind, row)) for row in ROW_POOL)
    if body.kind in ("json", "params"):
        head = json.dumps({"sql": insert_params_sql(table)})[:-1] + ',"params":['
        return pool + _substitute(_LUA_SINGLE, values | {"HEAD": lua_str(head),
                                                         "TAIL": lua_str("}")})
    shapes = {
        "literal": (json.dumps({"sql": f"INSERT INTO {table} ({COLUMNS_SQL}) VALUES "})[:-2],
                    ", ", '"}', "("),
        "params_batch": (json.dumps({"sql": insert_params_sql(table)})[:-1] + ',"params":[',
                         ",", "]}", "["),
        "ndjson": ("", "", "", '{"id":'),
    }
    head, sep, tail, open_ = shapes[body.kind]
    return pool + _substitute(_LUA_MULTI, values | {
        "HEAD": lua_str(head), "SEP": lua_str(sep), "TAIL": lua_str(tail),
        "OPEN": lua_str(open_)})


def lua_script(body: Body, *, table: str, path: str, token: str | None, base: int,
               expect: str | None, content_type: str = "application/json",
               arrow_files: tuple[Path, Path] | None = None, seed: int = 1) -> str:
    """The whole wrk script of one run (see the module docstring)."""
    auth = (f'wrk.headers["Authorization"] = {lua_str("Bearer " + token)}' if token else "")
    common = _substitute(_LUA_COMMON, {
        "EXPECT": lua_str(expect) if expect else "nil", "PATH": lua_str(path), "BASE": base,
        "CTYPE": lua_str(content_type), "AUTH": auth})
    return _body_lua(body, table, arrow_files, seed) + common


# ---- running wrk -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk run: completed requests, the window, latency and everything that went wrong.
    ``bad`` counts non-2xx replies and 2xx replies that did not match the expected body;
    ``socket_errors`` wrk's connect/read/write errors and timeouts."""
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    bad: int
    bad_status: int
    bad_body: str
    socket_errors: int
    client_cpu_s: float

    @property
    def failure(self) -> str | None:
        """Why the run is not a result (``None`` when every reply was good)."""
        if self.requests == 0:
            return "no request completed"
        if self.bad:
            return (f"{self.bad} of {self.requests} replies were bad (first: HTTP "
                    f"{self.bad_status} {self.bad_body[:200]!r})")
        if self.socket_errors:
            return f"{self.socket_errors} socket errors or timeouts"
        return None


def children_cpu_seconds() -> float:
    """User + system CPU of this process's reaped children (wrk, pgbench, psql)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_wrk_output(stdout: str, client_cpu_s: float) -> WrkRun:
    """The ``BENCH_JSON``/``BENCH_BAD`` lines of a run; ``ValueError`` when missing."""
    data, bad_body = None, ""
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
        elif line.startswith("BENCH_BAD "):
            bad_body = line.removeprefix("BENCH_BAD ")
    if data is None:
        raise ValueError(f"wrk printed no BENCH_JSON line:\n{stdout[-2000:]}")
    socket_errors = sum(data[k] for k in ("connect", "read", "write", "timeout"))
    return WrkRun(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000,
                  data["p99_us"] / 1000, data["bad"], data["bad_status"], bad_body,
                  socket_errors, client_cpu_s)


def run_wrk(wrk: str, url: str, script: Path, connections: int, seconds: int,
            prefix: Sequence[str] = ()) -> WrkRun:
    """Runs ``wrk -t1`` once against ``url`` (``prefix``: e.g. a ``taskset`` command)."""
    cpu0 = children_cpu_seconds()
    done = subprocess.run(
        [*prefix, wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", WRK_TIMEOUT,
         "-s", str(script), url],
        capture_output=True, text=True, check=False, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr[-2000:]}")
    return parse_wrk_output(done.stdout, children_cpu_seconds() - cpu0)


# ---- the Arrow body --------------------------------------------------------------------------

def arrow_body_parts(rows: int, directory: Path) -> tuple[Path, Path]:
    """An Arrow IPC stream of ``rows`` rows (ids ``0 .. rows-1``, pooled columns; ``ts`` as
    ``timestamp[us]``) cut around its ``id`` data buffer into ``arrow.prefix`` and
    ``arrow.suffix`` in ``directory`` (written once). The Lua script puts each request's
    ids between the two: the stream is uncompressed and the buffer a fixed 8 x ``rows``
    bytes, so every other byte of the message stays valid."""
    prefix, suffix = directory / "arrow.prefix", directory / "arrow.suffix"
    if prefix.exists() and suffix.exists():
        return prefix, suffix
    import pyarrow as pa

    assert rows <= ROWS_PER_ID_BLOCK
    pooled = [ROW_POOL[i % POOL_SIZE] for i in range(rows)]
    ids = pa.array(range(rows), pa.int64())
    batch = pa.record_batch([
        ids, pa.array([r.user_id for r in pooled], pa.string()),
        pa.array([r.ts_us for r in pooled], pa.timestamp("us")),
        pa.array([r.kind for r in pooled], pa.string()),
        pa.array([r.amount for r in pooled], pa.float64()),
        pa.array([r.flag for r in pooled], pa.bool_()),
        pa.array([r.payload for r in pooled], pa.string())], names=list(COLUMNS))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    body = sink.getvalue().to_pybytes()
    needle = ids.buffers()[1].to_pybytes()
    offset = body.find(needle)
    if offset < 0 or body.find(needle, offset + 1) >= 0:
        raise RuntimeError("cannot locate the id buffer in the Arrow stream")
    prefix.write_bytes(body[:offset])
    suffix.write_bytes(body[offset + len(needle):])
    return prefix, suffix
