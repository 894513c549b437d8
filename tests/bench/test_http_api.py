"""``bench/http_api.py`` without running it: the module imports, the argument parser keeps
its defaults and refuses nonsense, the body pieces the wrk scripts assemble are valid, and
the PASS/FAIL logic of the targets. No server, no wrk, no timing (the benchmark itself is
``make bench-http``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pyarrow as pa
import pytest

from bench import http_api, http_cells
from bench.http_load import (
    COLUMNS,
    ROW_POOL,
    ROWS_PER_ID_BLOCK,
    Body,
    arrow_body_parts,
    fragment,
    lua_script,
    row_id,
)


def test_http_api__parser_defaults_quick_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    full = http_api.parse_args([])
    assert (full.seconds, full.warmup, full.repeats, full.big_rows) == (5, 1, 3, 1_000_000)
    assert full.connections == [1, 16, 64] and full.cells == list(http_cells.KINDS)
    quick = http_api.parse_args(["--quick", "--seconds", "2", "--cells", "ceiling,insert1",
                                 "--connections", "1,4"])
    assert (quick.seconds, quick.warmup, quick.repeats, quick.big_rows) == (2, 0, 1, 20_000)
    cells = http_cells.build_cells(quick.cells, quick.connections)
    assert [c.key for c in cells] == ["ceiling-c1", "ceiling-c4", "insert1-c1", "insert1-c4"]
    for bad in (["--cells", "nope"], ["--seconds", "0"], ["--connections", "0"]):
        with pytest.raises(SystemExit) as exc:
            http_api.parse_args(bad)
        assert exc.value.code == 2
    assert "unknown cells ['nope']" in capsys.readouterr().err


def test_http_api__row_fragments_complete_valid_bodies() -> None:
    row, rid = ROW_POOL[7], row_id(3, 2, 9)
    assert rid == 5 * ROWS_PER_ID_BLOCK + 9
    line = json.loads('{"id":' + str(rid) + fragment("ndjson", row))
    assert list(line) == list(COLUMNS) and line["id"] == rid and line["payload"] == row.payload
    assert json.loads("[" + str(rid) + fragment("params", row)) == [
        rid, row.user_id, row.ts_us, row.kind, row.amount, row.flag, row.payload]
    assert fragment("literal", row).endswith(f"'{row.payload}')")
    script = lua_script(Body("literal", 100), table="bench.t", path="/v1/api/sql",
                        token="tok", base=0, expect='"row_count":%s*100[^%d]')
    assert 'wrk.headers["Authorization"] = "Bearer tok"' in script
    for placeholder in ("HEAD", "TAIL", "ROWS", "POOL", "BASE", "EXPECT", "CTYPE"):
        assert f" {placeholder}\n" not in script and f"= {placeholder}" not in script


def test_http_api__arrow_parts_take_any_ids(tmp_path: Path) -> None:
    prefix, suffix = arrow_body_parts(100, tmp_path)
    ids = b"".join(struct.pack("<q", row_id(0, 4, i)) for i in range(100))  # what Lua builds
    table = pa.ipc.open_stream(prefix.read_bytes() + ids + suffix.read_bytes()).read_all()
    assert table.column_names == list(COLUMNS) and table.num_rows == 100
    assert table["id"].to_pylist() == [row_id(0, 4, i) for i in range(100)]


def _result(kind: str, conns: int, req_s: float, **extra: object) -> http_cells.CellResult:
    rows = http_cells.KINDS[kind].rows
    sample = http_cells.Sample(req_s=req_s, rows_s=req_s * rows, p50_ms=extra.pop("p50", 1.0))
    return http_cells.CellResult(http_cells.Cell(http_cells.KINDS[kind], conns), [sample],
                                 **extra)


def test_http_api__targets_pass_fail_and_missing_routes() -> None:
    results = [_result("ceiling", 1, 1000), _result("insert1", 1, 850),
               _result("ceiling", 16, 1000), _result("insert1", 16, 700),
               _result("insert100", 16, 450), _result("pg_copy", 1, 12),
               _result("ndjson", 1, 0, missing="n/a (route missing)"),
               _result("arrow", 1, 40), _result("select", 1, 300, p50=2.5)]
    checks = http_cells.target_checks(results, 1_000_000)
    assert [name.split(" >=")[0].split(" <=")[0] for name, _, _ in checks] == [
        "single-row INSERT", "single-row INSERT", "100-row INSERT", "ingest arrow:",
        "ingest ndjson:", "PK SELECT p50"]
    assert [(measured, ok) for _, measured, ok in checks] == [
        ("850 vs 1,000 req/s = 0.85 x", True), ("700 vs 1,000 req/s = 0.70 x", False),
        ("45,000 rows/s at 16 conn(s)", True),
        ("400,000 rows/s at 1 conn(s); best COPY 120,000 rows/s (3.33 x)", True),
        ("n/a (route missing)", False), ("2.50 ms", True)]
    failed = [_result("insert100", 1, 0)]
    failed[0].samples = [http_cells.Sample(failure="3 of 9 replies were bad")]
    [(_, measured, ok)] = http_cells.target_checks(failed, 10)  # targets of cells not run: none
    assert (measured, ok) == ("cell failed: 3 of 9 replies were bad", False)


def test_http_api__profile_summary_splits_threads_and_packages() -> None:
    from bench.http_profile import package_of, summarize

    main = "_run_module_as_main (<frozen runpy>:198);serve_main (api/serve.py:80)"
    raw = "\n".join([
        f"{main};execute (engine/engine.py:106);dumps (json/encoder.py:200) 3",
        f"{main};run (trio/_core/_run.py:2532) 5",
        "_bootstrap (threading.py:1012);fdatasync (wal/_io.py:40) 2",
        "garbage line without a count"])
    assert package_of("run (/x/lib/python3.13/site-packages/trio/_core/_run.py:1)") == "trio"
    assert package_of("loads (/usr/lib/python3.13/json/__init__.py:3)") == "stdlib"
    text = summarize(raw)
    assert text.startswith("10 samples of busy threads")
    assert "| main thread (trio loop) | 8 | 80% |" in text
    assert "| worker threads (to_thread, WAL disk thread) | 2 | 20% |" in text
    assert "| trio | 5 | 50% |" in text and "| wal | 2 | 20% |" in text
    assert "| execute (engine/engine.py) | 3 | 30% |" in text  # inclusive, project only
    assert summarize("") == "py-spy recorded no samples\n"
