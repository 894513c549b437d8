"""The soak's judge (bench/soak_stats.py) on made-up recordings: each issue-9 limit fails
the run when crossed and only then. No server, no timing."""

from __future__ import annotations

from bench.soak_stats import Recorder, Sample, Windows, latency_table, percentile, verdict

W = Windows(warmup_s=120, end_s=600)  # thirds: 120-280, 280-440, 440-600


def _recording(rss_end: int = 105_000, disk: tuple[int, int, int] = (50, 50, 50),
               p99_ms: tuple[float, float] = (40.0, 60.0)) -> Recorder:
    rec = Recorder()
    for t in range(0, 601, 10):
        third = 0 if t < 280 else 1 if t < 440 else 2
        rss = 100_000 if t <= 120 else 100_000 + (rss_end - 100_000) * (t - 120) // 480
        rec.samples.append(Sample(t, rss, disk[third] * 2**20, 2**20, t, 0, 1.0, t / 10))
    for t in range(120, 601):
        slow = p99_ms[0] if t < 280 else p99_ms[1]
        for k in range(100):  # one request in a hundred and a half is slow: p99 = slow
            rec.latency("sql insert", t, slow if k >= 98 else 5.0)
    return rec


def test_verdict__a_steady_run_passes() -> None:
    assert verdict(_recording(), W) == []


def test_verdict__any_error_fails() -> None:
    rec = _recording()
    rec.error("t=300s sql insert: 500 b'boom'")
    assert "1 error(s)" in verdict(rec, W)[0]


def test_verdict__rss_growth_beyond_ten_percent_fails() -> None:
    assert verdict(_recording(rss_end=109_000), W) == []
    (failed,) = verdict(_recording(rss_end=111_000), W)
    assert failed.startswith("RSS grew 11.0%")


def test_verdict__disk_growing_from_middle_to_last_third_fails() -> None:
    assert verdict(_recording(disk=(40, 60, 62)), W) == []  # bounded after retention starts
    (failed,) = verdict(_recording(disk=(40, 60, 80)), W)
    assert failed.startswith("disk grew")


def test_verdict__p99_more_than_doubling_fails() -> None:
    assert verdict(_recording(p99_ms=(40.0, 80.0)), W) == []
    (failed,) = verdict(_recording(p99_ms=(40.0, 81.0)), W)
    assert failed == "p99 rose from 40.0 ms to 81.0 ms"


def test_verdict__needs_samples_after_the_warm_up() -> None:
    rec = _recording()
    rec.samples = rec.samples[:13]  # up to t=120 only
    assert verdict(rec, W) == ["too few samples after the warm-up (1)"]


def test_latency_table__rows_per_operation_and_all() -> None:
    table = latency_table(_recording(), W)
    assert "| sql insert | 48100 |" in table and "| **all** | 48100 |" in table
    assert percentile([], 0.99) != percentile([], 0.99)  # NaN when a window is empty
