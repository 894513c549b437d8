"""The HTTP benchmark's cells and how they are judged: the workloads (``KINDS``), one cell
per workload and connection count, the samples of its runs, the results table and the
targets (PASS/FAIL). Pure data and formatting: nothing here starts a server or runs wrk
(``bench/http_api.py`` does).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.http_load import Body
from bench.http_peers import COPY_ROWS_PER_BATCH

INGEST_ROWS = 10_000
TARGET_INSERT1_CEILING_RATIO = 0.8
TARGET_INSERT100_ROWS_S = 40_000
TARGET_ARROW_ROWS_S = 300_000
TARGET_NDJSON_ROWS_S = 100_000
TARGET_SELECT_P50_MS = 3.0
TARGET_SELECT_ROWS = 1_000_000


# ---- cells -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Kind:
    """A workload: label, what wrk sends (``None``: PostgreSQL), rows per request, the
    content type, and the route (``sql`` or ``ingest``)."""
    name: str
    label: str
    body: Body | None
    rows: int
    content_type: str = "application/json"
    route: str = "sql"


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("ceiling", "bare ASGI ceiling (single-row INSERT body, JSON parsed)", Body("json"), 1),
    Kind("insert1", "Sluice single-row INSERT ($n params)", Body("params"), 1),
    Kind("pg_insert", "PostgreSQL pgbench single-row INSERT", None, 1),
    Kind("insert100", "Sluice 100-row INSERT (literal VALUES)", Body("literal", 100), 100),
    Kind("params1000", "Sluice params batch, 1,000 rows", Body("params_batch", 1000), 1000),
    Kind("ndjson", "Sluice ingest, 10,000-row NDJSON", Body("ndjson", INGEST_ROWS), INGEST_ROWS,
         "application/x-ndjson", "ingest"),
    Kind("arrow", "Sluice ingest, 10,000-row Arrow IPC stream", Body("arrow", INGEST_ROWS),
         INGEST_ROWS, "application/vnd.apache.arrow.stream", "ingest"),
    Kind("pg_copy", "PostgreSQL COPY, 10,000-row batches", None, COPY_ROWS_PER_BATCH),
    Kind("select", "Sluice PK SELECT (random ids, big table)", Body("select"), 1),
)}


@dataclass(frozen=True, slots=True)
class Cell:
    kind: Kind
    connections: int

    @property
    def key(self) -> str:
        return f"{self.kind.name}-c{self.connections}"


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured run of a cell. ``failure`` says why it is not a result (then the rates
    are 0). CPU figures are cores (CPU seconds per second of the window)."""
    req_s: float = 0.0
    rows_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    server_cores: float = float("nan")
    client_cores: float = float("nan")
    other_cores: float = float("nan")
    failure: str | None = None


@dataclass(slots=True)
class CellResult:
    cell: Cell
    samples: list[Sample] = field(default_factory=list)
    missing: str | None = None  # e.g. "n/a (route missing)"

    @property
    def failure(self) -> str | None:
        return next((s.failure for s in self.samples if s.failure), None)

    def median(self, name: str) -> float:
        values = [getattr(s, name) for s in self.samples if not s.failure]
        return statistics.median(values) if values else float("nan")

    @property
    def ok(self) -> bool:
        return bool(self.samples) and self.failure is None and self.missing is None


def build_cells(kinds: Sequence[str], connections: Sequence[int]) -> list[Cell]:
    return [Cell(KINDS[name], c) for name in KINDS if name in kinds for c in connections]


# ---- table and targets ----------------------------------------------------------------------------------

def _n(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}"


def _ms(value: float) -> str:
    return "-" if value != value else (f"{value:.2f}" if value < 100 else f"{value:.0f}")


def _c(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def _ratio(result: CellResult, by_key: dict[str, CellResult]) -> str:
    ceiling = by_key.get(f"ceiling-c{result.cell.connections}")
    if result.cell.kind.body is None or result.cell.kind.name == "ceiling" or ceiling is None \
            or not ceiling.ok:
        return "-"
    return f"{result.median('req_s') / ceiling.median('req_s'):.2f}"


def results_table(results: Sequence[CellResult]) -> str:
    by_key = {r.cell.key: r for r in results}
    lines = ["| cell | conns | req/s | rows/s | p50 ms | p99 ms | req/s vs ceiling | server CPU "
             "| load-gen CPU | other load |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        head = f"| {r.cell.kind.label} | {r.cell.connections} |"
        if r.missing or r.failure:
            lines.append(f"{head} {r.missing or 'FAILED: ' + (r.failure or '')[:300]} "
                         "| | | | | | | | |")
            continue
        lines.append(f"{head} **{_n(r.median('req_s'))}** | {_n(r.median('rows_s'))} | "
                     f"{_ms(r.median('p50_ms'))} | {_ms(r.median('p99_ms'))} | "
                     f"{_ratio(r, by_key)} | {_c(r.median('server_cores'))} | "
                     f"{_c(r.median('client_cores'))} | {_c(r.median('other_cores'))} |")
    return "\n".join(lines)


def _best(results: Sequence[CellResult], kind: str, name: str = "rows_s"
          ) -> tuple[float, CellResult | None]:
    good = [r for r in results if r.cell.kind.name == kind and r.ok]
    if not good:
        return float("nan"), None
    best = max(good, key=lambda r: r.median(name))
    return best.median(name), best


def _why_not(results: Sequence[CellResult], kind: str) -> str:
    cells = [r for r in results if r.cell.kind.name == kind]
    if not cells:
        return "not run"
    return next((r.missing or f"cell failed: {(r.failure or '')[:120]}" for r in cells
                 if not r.ok), "not run")


def _insert1_checks(results: Sequence[CellResult]) -> list[tuple[str, str, bool]]:
    by_key, checks = {r.cell.key: r for r in results}, []
    for r in results:
        if r.cell.kind.name != "insert1":
            continue
        name = (f"single-row INSERT >= {TARGET_INSERT1_CEILING_RATIO:g} x ceiling req/s at "
                f"{r.cell.connections} conn(s)")
        ceiling = by_key.get(f"ceiling-c{r.cell.connections}")
        if not r.ok or ceiling is None or not ceiling.ok:
            checks.append((name, r.missing or r.failure or "ceiling cell missing", False))
            continue
        ratio = r.median("req_s") / ceiling.median("req_s")
        checks.append((name, f"{r.median('req_s'):,.0f} vs {ceiling.median('req_s'):,.0f} "
                             f"req/s = {ratio:.2f} x", ratio >= TARGET_INSERT1_CEILING_RATIO))
    return checks


def _ingest_check(results: Sequence[CellResult], kind: str, target: float
                  ) -> tuple[str, str, bool]:
    name = f"ingest {kind}: >= {target:,.0f} rows/s and ahead of PostgreSQL COPY"
    rate, best = _best(results, kind)
    if best is None:
        return name, _why_not(results, kind), False
    copy, copy_best = _best(results, "pg_copy")
    measured = f"{rate:,.0f} rows/s at {best.cell.connections} conn(s)"
    if copy_best is None:
        return name, measured + "; COPY: " + _why_not(results, "pg_copy"), False
    measured += f"; best COPY {copy:,.0f} rows/s ({rate / copy:.2f} x)"
    return name, measured, rate >= target and rate > copy


def target_checks(results: Sequence[CellResult], big_rows: int) -> list[tuple[str, str, bool]]:
    checks = _insert1_checks(results)
    name = f"100-row INSERT >= {TARGET_INSERT100_ROWS_S:,} rows/s (best conns)"
    rate, best = _best(results, "insert100")
    checks.append((name, f"{rate:,.0f} rows/s at {best.cell.connections} conn(s)" if best
                   else _why_not(results, "insert100"),
                   best is not None and rate >= TARGET_INSERT100_ROWS_S))
    checks.append(_ingest_check(results, "arrow", TARGET_ARROW_ROWS_S))
    checks.append(_ingest_check(results, "ndjson", TARGET_NDJSON_ROWS_S))
    one = next((r for r in results if r.cell.key == "select-c1"), None)
    name = (f"PK SELECT p50 <= {TARGET_SELECT_P50_MS:g} ms at 1 conn, {big_rows:,}-row table"
            + ("" if big_rows >= TARGET_SELECT_ROWS else
               f" (below {TARGET_SELECT_ROWS:,} rows: judge at the default size)"))
    if one is None or not one.ok:
        checks.append((name, _why_not(results, "select"), False))
    else:
        p50 = one.median("p50_ms")
        checks.append((name, f"{p50:.2f} ms", p50 <= TARGET_SELECT_P50_MS))
    return [check for check in checks if check[1] != "not run"]  # e.g. --cells left it out
