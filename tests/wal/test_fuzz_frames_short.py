"""A short run of the WAL frame fuzzer (``fuzz/wal_frames.py``) inside the default suite.

The long run is ``make fuzz`` (``python -m fuzz.wal_frames --seconds 300``). A failure names
the seed and iteration; replay it alone with ``python -m fuzz.wal_frames --seed S --replay I``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.wal_frames import main, run

SHORT_RUN_SECONDS = 3.0


def test_fuzz__wal_frames__short_seeded_run(tmp_path: Path, base_seed: int) -> None:
    # Random and mutated segments for ~3 s: every property of fuzz/wal_frames.py must hold.
    stats = run(SHORT_RUN_SECONDS, base_seed, tmp_path)
    assert stats["iterations"] > 50, stats
    assert stats["dir_clean"] and stats["dir_cut"] and stats["dir_refused"], stats
    assert stats["payload_ok"] and stats["bad_segment_header"], stats


@pytest.mark.slow
def test_fuzz__wal_frames__long_seeded_run(tmp_path: Path, base_seed: int) -> None:
    # The slow tier runs the same target for a minute.
    assert run(60.0, base_seed, tmp_path)["iterations"] > 1000


def test_fuzz__wal_frames__main_replays_one_iteration(capsys: pytest.CaptureFixture[str]) -> None:
    # The command line entry point that `make fuzz` uses: prints its seed and a summary.
    exit_code = main(["--seed", "5", "--replay", "0"])
    out = capsys.readouterr().out
    assert "--seed 5" in out
    assert exit_code in (0, 1), out
    assert ("iterations=1" in out) if exit_code == 0 else ("replay: python -m fuzz.wal_frames" in out)
