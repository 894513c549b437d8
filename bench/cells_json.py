"""The machine-readable side output of the benchmarks (``--json FILE``), read by bench/report.py.

One file per bench run: ``{"bench": NAME, "cells": [CELL, ...]}`` where each CELL is

    {"key": unique name, "label": the report's row label,
     "system": "sluice" or the peer measured next to it ("ceiling", "sqlite", "postgresql",
               "redis", ...),
     "group": cells that belong on one curve (a workload), "x": its abscissa (connections,
               appenders, batch size, subscriptions) or null,
     "rate": the headline throughput (median over rounds) or null, "rate_unit": e.g. "rows/s",
     "p50_ms", "p99_ms": latency medians or null,
     "metrics": every numeric field of the bench's samples, median over rounds}

NaN becomes null. Writing is atomic enough for a report (write then rename).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def medians(result: Any) -> dict[str, float | None]:
    """Every numeric sample field's median (``result.median(name)``); {} without samples."""
    samples = [s for s in getattr(result, "samples", []) if not getattr(s, "failure", None)]
    if not samples:
        return {}
    names = [f.name for f in dataclasses.fields(samples[0])
             if _number(getattr(samples[0], f.name)) is not None
             or isinstance(getattr(samples[0], f.name), float)]
    return {name: _number(result.median(name)) for name in names}


def cell(key: str, label: str, system: str, *, group: str, x: float | None = None,
         rate: float | None = None, rate_unit: str = "", p50_ms: float | None = None,
         p99_ms: float | None = None, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"key": key, "label": label, "system": system, "group": group, "x": _number(x),
            "rate": _number(rate), "rate_unit": rate_unit, "p50_ms": _number(p50_ms),
            "p99_ms": _number(p99_ms),
            "metrics": {name: value if isinstance(value, str) else _number(value)
                        for name, value in (metrics or {}).items()}}


def write(path: Path, bench: str, cells: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps({"bench": bench, "cells": list(cells)}, indent=1) + "\n",
                    encoding="utf-8")
    os.replace(temp, path)
