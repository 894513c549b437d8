"""What the soak (bench/soak.py) records and how it judges a run.

``Recorder`` collects every request's latency (seconds since the start, milliseconds), every
error (a non-2xx reply, a lost connection, an offset gap, a missing or out-of-order change)
and a ``Sample`` every ``SAMPLE_INTERVAL_S``. ``verdict`` splits the run after the warm-up
into thirds (A, B, C) and applies the issue-9 limits below; ``table`` renders the samples
and the per-operation latencies as Markdown. Nothing here touches the server.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_INTERVAL_S = 10.0
# Issue 9: RSS at the end may exceed RSS at the end of the warm-up by at most 10 %.
RSS_GROWTH_MAX = 0.10
# Disk (WAL + segments) "bounded": the last third's mean may exceed the middle third's by at
# most 20 %. Linear growth from empty over a 10-minute run with a 2-minute warm-up gives
# ~44 %; a sawtooth held down by retention stays within a few percent.
DISK_GROWTH_MAX = 0.20
# Issue 9: p99 of the last third at most twice the p99 of the first post-warm-up third.
P99_RATIO_MAX = 2.0


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_kib: int
    wal_bytes: int
    segment_bytes: int
    requests: int
    errors: int
    load1: float  # the machine's 1-minute load average (shared, noisy machine)
    cpu_s: float  # server process CPU seconds (user + system) so far


@dataclass
class Recorder:
    latencies: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # checked items (rows, messages…)
    server_problems: list[str] = field(default_factory=list)  # server log excerpts

    def latency(self, op: str, t: float, ms: float) -> None:
        self.latencies.setdefault(op, []).append((t, ms))

    def error(self, text: str) -> None:
        self.errors.append(text[:600])

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def dir_bytes(path: Path) -> int:
    """Bytes of regular files under ``path`` (files vanishing mid-walk are skipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Windows:
    """[warm-up end, end of A), [A, B), [B, end] in seconds since the start."""

    warmup_s: float
    end_s: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        third = (self.end_s - self.warmup_s) / 3
        return self.warmup_s, self.warmup_s + third, self.warmup_s + 2 * third, self.end_s

    def third(self, index: int, t: float) -> bool:
        b = self.bounds
        return b[index] <= t < b[index + 1] or (index == 2 and t == b[3])


def _window_p99(rec: Recorder, w: Windows, index: int) -> float:
    return percentile([ms for v in rec.latencies.values() for t, ms in v if w.third(index, t)],
                      0.99)


def verdict(rec: Recorder, w: Windows) -> list[str]:
    """The failed limits (empty: the run passed). Assumes samples span the whole run."""
    failed = [f"{len(rec.errors)} error(s), first: {rec.errors[:5]}"] if rec.errors else []
    after = [s for s in rec.samples if s.t >= w.warmup_s]
    if len(after) < 3:
        return [*failed, f"too few samples after the warm-up ({len(after)})"]
    growth = after[-1].rss_kib / after[0].rss_kib - 1
    if growth > RSS_GROWTH_MAX:
        failed.append(f"RSS grew {growth:.1%} after the warm-up "
                      f"({after[0].rss_kib} → {after[-1].rss_kib} KiB)")
    mid = [s.wal_bytes + s.segment_bytes for s in after if w.third(1, s.t)]
    last = [s.wal_bytes + s.segment_bytes for s in after if w.third(2, s.t)]
    if mid and last and sum(last) / len(last) > (1 + DISK_GROWTH_MAX) * sum(mid) / len(mid):
        failed.append(f"disk grew: mean {sum(mid) / len(mid):,.0f} B (middle third) → "
                      f"{sum(last) / len(last):,.0f} B (last third)")
    first_p99, last_p99 = _window_p99(rec, w, 0), _window_p99(rec, w, 2)
    if last_p99 > P99_RATIO_MAX * first_p99:
        failed.append(f"p99 rose from {first_p99:.1f} ms to {last_p99:.1f} ms")
    return failed


def sample_table(rec: Recorder) -> str:
    lines = ["| t (s) | RSS (MiB) | WAL (MiB) | segments (MiB) | requests | errors | load1 "
             "| server CPU (s) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in rec.samples:
        lines.append(f"| {s.t:.0f} | {s.rss_kib / 1024:.1f} | {s.wal_bytes / 2**20:.2f} | "
                     f"{s.segment_bytes / 2**20:.2f} | {s.requests} | {s.errors} | "
                     f"{s.load1:.2f} | {s.cpu_s:.0f} |")
    return "\n".join(lines)


def latency_table(rec: Recorder, w: Windows) -> str:
    lines = ["| operation | requests | p50 A (ms) | p99 A (ms) | p50 C (ms) | p99 C (ms) |",
             "|---|---:|---:|---:|---:|---:|"]
    everything: dict[int, list[float]] = {0: [], 2: []}
    for op, values in sorted(rec.latencies.items()):
        cells = []
        for index in (0, 2):
            window = [ms for t, ms in values if w.third(index, t)]
            everything[index] += window
            cells += [f"{percentile(window, 0.5):.1f}", f"{percentile(window, 0.99):.1f}"]
        lines.append(f"| {op} | {len(values)} | {' | '.join(cells)} |")
    cells = [f"{percentile(everything[i], q):.1f}" for i in (0, 2) for q in (0.5, 0.99)]
    lines.append(f"| **all** | {rec.requests} | {' | '.join(cells)} |")
    return "\n".join(lines)
