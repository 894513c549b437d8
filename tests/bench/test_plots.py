"""The bench report's output side without running a benchmark: the ``--json`` cell format
(bench/cells_json.py), the PNG plots drawn from a small fixed sample (bench/plots.py) and
REPORT.md's table (bench/report.py). No timing, no server."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from bench import cells_json, plots, report
from bench.topics import CellResult, Sample
from bench.topics import json_cell as topics_cell

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _http(kind: str, system: str, connections: int, rate: float, p50: float) -> dict:
    return cells_json.cell(f"{kind}-c{connections}", f"{kind} label", system, group=kind,
                           x=connections, rate=rate, rate_unit="rows/s", p50_ms=p50,
                           p99_ms=p50 * 3)


SAMPLE = {
    "http": {"bench": "http", "cells": [
        _http("insert1", "sluice", 1, 900.0, 1.1), _http("insert1", "sluice", 16, 2500.0, 6.0),
        _http("pg_insert", "postgresql", 1, 1500.0, 0.6),
        _http("pg_insert", "postgresql", 16, 9000.0, 1.7),
        _http("ceiling", "asgi ceiling", 1, 4000.0, 0.2),
        _http("ceiling", "asgi ceiling", 16, 8000.0, 1.9)]},
    "live": {"bench": "live", "cells": [cells_json.cell(
        "latency-100", "change latency, 100 subscriptions", "sluice", group="change latency",
        x=100, p50_ms=0.8, p99_ms=4.2)]},
}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def test_plots__render_pngs_from_a_fixed_sample(tmp_path: Path) -> None:
    # Round-trip through the JSON files, as bench/report.py reads them.
    for name, run in SAMPLE.items():
        cells_json.write(tmp_path / f"{name}.json", run["bench"], run["cells"])
    runs = report.load_runs(tmp_path, ["http", "live", "wal"])  # wal: never ran, skipped
    assert list(runs) == ["http", "live"]
    written = plots.render_plots(runs, tmp_path / "out")
    assert [p.name for p in written] == ["throughput.png", "latency.png", "peers.png"]
    for path in written:
        width, height = _png_size(path)
        assert width >= 1000 and height >= 300, (path.name, width, height)
    # Latency: one panel per bench with p50s (two here) is taller than the one-panel case.
    one = plots.render_plots({"live": runs["live"]}, tmp_path / "one")
    assert [p.name for p in one] == ["latency.png"]  # no x-series, no peer: those skipped
    assert _png_size(one[0])[1] < _png_size(tmp_path / "out" / "latency.png")[1]


def test_plots__cells_json_nan_is_null_and_report_table_lists_every_cell(tmp_path: Path) -> None:
    cell = cells_json.cell("k", "a cell", "sluice", group="g", rate=math.nan, p50_ms=1.5,
                           metrics={"cpu": math.nan, "n": 3})
    cells_json.write(tmp_path / "x.json", "x", [cell])
    loaded = json.loads((tmp_path / "x.json").read_text())
    assert loaded["cells"][0]["rate"] is None and loaded["cells"][0]["metrics"] == {
        "cpu": None, "n": 3.0}
    text = report.render_report(SAMPLE, {"http": "exit 0 after 5 s"},
                                [tmp_path / "peers.png"], "quick (smoke) runs")
    assert "- **http**: exit 0 after 5 s — [http.md](http.md)" in text
    assert "![peers](peers.png)" in text
    assert "| insert1 label | sluice | 2,500 | rows/s | 6.00 | 18.00 |" in text
    assert "| change latency, 100 subscriptions | sluice | - |  | 0.80 | 4.20 |" in text


def test_plots__topics_cells_name_their_system_group_and_x() -> None:
    result = CellResult("redis-consume-100", "Redis XREADGROUP")
    result.samples = [Sample(rate=10.0, call_p50_ms=1.0), Sample(rate=30.0, call_p50_ms=3.0)]
    cell = topics_cell(result)
    assert (cell["system"], cell["group"], cell["x"], cell["rate"], cell["p50_ms"]) == (
        "redis", "redis-consume", 100.0, 20.0, 2.0)
    publish = topics_cell(CellResult("publish-4", "publish"))
    assert (publish["system"], publish["group"], publish["rate"], publish["rate_unit"]) == (
        "sluice", "publish", None, "rows/s")
