"""The 10-minute soak (issue 9, slow tier: ``make test-slow``): bench/soak.py against a real
``sluice serve`` — zero errors, every topic offset and live change delivered in order, RSS
growth after the warm-up within 10 %, WAL + segment bytes not growing, p99 stable (limits
in bench/soak_stats.py). On failure the assertion message carries the whole report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import report, run_soak, windows
from bench.soak_stats import verdict

SOAK_MINUTES = 10.0


@pytest.mark.slow
async def test_soak__ten_minutes_of_mixed_load_stay_steady(tmp_path: Path) -> None:
    rec = await run_soak(tmp_path, SOAK_MINUTES)
    w = windows(SOAK_MINUTES, None)
    failed = verdict(rec, w)
    assert not failed, report(rec, w, failed)
    # The load really ran: the checks above saw thousands of messages and changes.
    assert rec.counts.get("messages consumed", 0) > 1000, rec.counts
    assert rec.counts.get("changes received", 0) == rec.counts["messages consumed"]
