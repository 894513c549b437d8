"""WAL group-commit benchmark: durable appends/s and latency against the disk's own ceiling.

Run: ``.venv/bin/python -m bench.wal_group_commit`` (``make bench``); ``--help`` for options;
``bench/README.md`` explains every cell and column and holds a reading of one run.

One invocation measures, on one scratch directory (default: under ``bench/results/``, on the
repository's disk), interleaved round by round so machine noise spreads over every cell:

* **(a) ceiling**: N records of R bytes share one ``os.pwrite`` + ``os.fdatasync`` into a
  64 MiB file preallocated by the WAL's own ``create_segment`` (zero-filled + fsynced); no
  framing, no trio. When the file is full the offset wraps to the start (blocks stay
  allocated, as in a preallocated segment).
* **(a') thread hop**: the N=1 ceiling called through ``trio.to_thread.run_sync`` from one
  trio task, as the WAL's writer does per batch.
* **(b) append**: ``fsync=always``, default ``WalConfig``; T trio tasks each loop
  ``await wal.append(payload)``; every call timed with ``time.perf_counter`` (c).
* **(b) batch**: T tasks each loop ``await wal.append_batch(256 payloads)``; reported in
  records/s, latency per call.

Payloads are ``os.urandom`` bytes: incompressible, so the 4 KiB cells (at the default
``compress_min_bytes=4096``) pay a zstd attempt that never wins and gain nothing from it.
Every cell run gets a fresh directory (fresh WAL, fresh preallocated file) and, for trio
cells, its own ``trio.run``. Reported figures are medians over ``--repeats`` rounds; the
(d) section checks the targets against the ceiling measured in the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import datetime
import io
import math
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from bench import cells_json
from wal import FileIO, WalConfig, open_wal
from wal.format import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE
from wal.segment import create_segment

MIB = 1024 * 1024
CEILING_FILE_BYTES = 64 * MIB
BATCH_CALL_RECORDS = 256
PAYLOAD_POOL = 64  # distinct random payloads per record size
REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET_RECORDS_PER_S = 50_000  # durable appends/s at 256 appenders, 200 B
TARGET_P50_FACTOR = 2.0  # one-appender p50 <= this x one pwrite+fdatasync p50


# ---- cells and results ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Cell:
    """One measured configuration.

    ``kind`` is ``ceiling`` or ``thread`` (``width`` = records per sync), ``append`` or ``batch``
    (``width`` = concurrent appender tasks; ``per_call`` records per call).
    """

    kind: str
    record_bytes: int
    width: int
    per_call: int = 1

    @property
    def key(self) -> str:
        """A short unique name (used for directories and progress lines)."""
        return f"{self.kind}-{self.record_bytes}B-{self.width}x{self.per_call}"

    @property
    def label(self) -> str:
        """The row label in the report."""
        size = f"{self.record_bytes} B" if self.record_bytes < 1024 else (
            f"{self.record_bytes // 1024} KiB")
        if self.kind == "ceiling":
            return f"(a) ceiling: N={self.width} x {size} per pwrite+fdatasync"
        if self.kind == "thread":
            return f"(a') N={self.width} x {size} pwrite+fdatasync via trio.to_thread"
        if self.kind == "append":
            return f"(b) Sluice append, {self.width} appender(s), {size}"
        return (f"(b) Sluice append_batch({self.per_call} x {size}), "
                f"{self.width} task(s)")


def default_cells() -> list[Cell]:
    """The cells of a full run, in the order they are run within each round."""
    cells = [Cell("ceiling", size, n) for size in (200, 4096) for n in (1, 16, 256)]
    cells.append(Cell("thread", 200, 1))
    cells += [Cell("append", size, t) for size in (200, 4096) for t in (1, 16, 256)]
    cells += [Cell("batch", 200, t, BATCH_CALL_RECORDS) for t in (1, 16)]
    return cells


def matching_ceiling(cell: Cell) -> Cell | None:
    """The ceiling cell whose records-per-sync matches ``cell``'s best case, if any."""
    if cell.kind == "ceiling":
        return None
    if cell.kind in ("append", "thread"):
        return Cell("ceiling", cell.record_bytes, cell.width)
    if cell.width == 1:
        return Cell("ceiling", cell.record_bytes, cell.per_call)
    return None


@dataclass(frozen=True, slots=True)
class Sample:
    """One cell run. Latency is per sync (ceiling) or per call (Sluice); busy fractions
    are the share of the window spent inside ``fdatasync`` / ``pwrite``."""

    records_per_s: float
    calls: int
    p50_ms: float
    p99_ms: float
    syncs_per_s: float
    records_per_sync: float
    sync_busy: float
    write_busy: float
    roll_busy: float = 0.0  # preparing the next segment (zero-fill + fsync), any thread
    segments_rolled: int = 0
    other_cores: float = math.nan  # cores kept busy by other processes during the cell
    cpu_us_per_record: float = math.nan  # this process's CPU (all threads) per record


@dataclass(slots=True)
class CellResult:
    """All samples of one cell and their medians."""

    cell: Cell
    samples: list[Sample] = field(default_factory=list)

    def median(self, name: str) -> float:
        """Median of one ``Sample`` field over the rounds."""
        return statistics.median(getattr(s, name) for s in self.samples)

    def spread(self, name: str) -> tuple[float, float]:
        """(min, max) of one ``Sample`` field over the rounds."""
        values = [getattr(s, name) for s in self.samples]
        return min(values), max(values)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..1); NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Window:
    """The measured interval in ``time.perf_counter`` seconds (after the warm-up)."""

    start: float
    end: float

    @classmethod
    def after(cls, warmup: float, seconds: float) -> Window:
        """The window that starts ``warmup`` seconds from now and lasts ``seconds``."""
        now = time.perf_counter()
        return cls(now + warmup, now + warmup + seconds)


def payload_pool(record_bytes: int) -> list[bytes]:
    """Distinct incompressible payloads of one size."""
    return [os.urandom(record_bytes) for _ in range(PAYLOAD_POOL)]


# ---- (a) the ceiling: raw pwrite + fdatasync on a preallocated file ------------------------

def preallocated_file(directory: Path, size_bytes: int = CEILING_FILE_BYTES) -> Path:
    """A file zero-filled and fsynced exactly as the WAL preallocates a segment."""
    directory.mkdir(parents=True, exist_ok=True)
    return create_segment(FileIO(), directory, 1, size_bytes)


class RawWriter:
    """One pwrite of a fixed buffer + one fdatasync per call, into a preallocated file;
    the offset wraps to the start when the file is full (its blocks stay allocated)."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.data = data
        self.offset = SEGMENT_HEADER_SIZE
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def __call__(self) -> tuple[float, float]:
        """Writes and syncs once; returns (seconds in pwrite, seconds in fdatasync)."""
        if self.offset + len(self.data) > CEILING_FILE_BYTES:
            self.offset = SEGMENT_HEADER_SIZE
        start = time.perf_counter()
        if os.pwrite(self.fd, self.data, self.offset) != len(self.data):
            raise OSError("short pwrite on a regular file")
        written = time.perf_counter()
        os.fdatasync(self.fd)
        self.offset += len(self.data)
        return written - start, time.perf_counter() - written

    def close(self) -> None:
        os.close(self.fd)


@dataclass(slots=True)
class _RawTally:
    """Per-sync latencies and I/O seconds of a raw loop, plus process CPU seconds from the
    first sync completed inside the window to the last."""

    latencies: list[float] = field(default_factory=list)
    write_s: float = 0.0
    sync_s: float = 0.0
    cpu_first: float = 0.0
    cpu_last: float = 0.0

    def add(self, window: Window, start: float, in_write: float, in_sync: float) -> None:
        """Records one pwrite+fdatasync that started at ``start`` and just ended."""
        end = time.perf_counter()
        if window.start <= end:
            self.cpu_last = time.process_time()
            if not self.latencies:
                self.cpu_first = self.cpu_last
            self.latencies.append(end - start)
            self.write_s, self.sync_s = self.write_s + in_write, self.sync_s + in_sync

    def sample(self, cell: Cell, seconds: float) -> Sample:
        """The sample of a ceiling (or thread-hop) cell."""
        latencies = sorted(self.latencies)
        syncs_per_s = len(latencies) / seconds
        cpu = (self.cpu_last - self.cpu_first) / max(1, (len(latencies) - 1) * cell.width)
        return Sample(records_per_s=syncs_per_s * cell.width, calls=len(latencies),
                      p50_ms=percentile(latencies, 0.50) * 1e3,
                      p99_ms=percentile(latencies, 0.99) * 1e3, syncs_per_s=syncs_per_s,
                      records_per_sync=float(cell.width), sync_busy=self.sync_s / seconds,
                      write_busy=self.write_s / seconds, cpu_us_per_record=cpu * 1e6)


def run_ceiling(directory: Path, cell: Cell, seconds: float, warmup: float) -> Sample:
    """(a): loops one pwrite of ``width`` records + one fdatasync; times each pair."""
    raw = RawWriter(preallocated_file(directory), os.urandom(cell.record_bytes * cell.width))
    tally = _RawTally()
    try:
        window = Window.after(warmup, seconds)
        while (start := time.perf_counter()) < window.end:
            tally.add(window, start, *raw())
    finally:
        raw.close()
    return tally.sample(cell, seconds)


async def _thread_hop_loop(raw: RawWriter, window: Window) -> _RawTally:
    """Calls ``raw`` through ``trio.to_thread.run_sync`` until the window ends."""
    tally = _RawTally()
    while (start := time.perf_counter()) < window.end:
        tally.add(window, start, *await trio.to_thread.run_sync(raw))
    return tally


def run_thread_hop(directory: Path, cell: Cell, seconds: float, warmup: float) -> Sample:
    """(a'): the same pwrite + fdatasync, but from one trio task through
    ``trio.to_thread.run_sync`` as the WAL's writer does: the ceiling plus the thread hop."""
    raw = RawWriter(preallocated_file(directory), os.urandom(cell.record_bytes * cell.width))
    try:
        tally = trio.run(_thread_hop_loop, raw, Window.after(warmup, seconds))
    finally:
        raw.close()
    return tally.sample(cell, seconds)


# ---- (b) + (c) Sluice: trio appender tasks on a fresh WAL ----------------------------------

class TimedFileIO(FileIO):
    """The real file I/O, adding up seconds spent in ``pwrite``, ``fdatasync`` and segment
    preparation (zero-fill + ``fsync``). Written from the WAL's worker threads, read by the
    event loop; the sums are approximate if two threads add at the same instant."""

    def __init__(self) -> None:
        self.write_s = 0.0
        self.sync_s = 0.0
        self.prealloc_s = 0.0

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        start = time.perf_counter()
        super().pwrite(fd, data, offset)
        self.write_s += time.perf_counter() - start

    def fdatasync(self, fd: int) -> None:
        start = time.perf_counter()
        super().fdatasync(fd)
        self.sync_s += time.perf_counter() - start

    def fill_zeros(self, fd: int, offset: int, length: int) -> None:
        start, write_before = time.perf_counter(), self.write_s
        super().fill_zeros(fd, offset, length)
        self.write_s = write_before
        self.prealloc_s += time.perf_counter() - start

    def fsync(self, fd: int) -> None:
        start = time.perf_counter()
        super().fsync(fd)
        self.prealloc_s += time.perf_counter() - start


@dataclass(frozen=True, slots=True)
class _Mark:
    """Writer statistics and I/O seconds at one instant."""

    at: float
    cpu: float
    records: int
    syncs: int
    rolls: int
    sync_s: float
    write_s: float
    roll_s: float

    def busy(self, earlier: _Mark, name: str) -> float:
        """Share of the time since ``earlier`` spent in the I/O named ``name``."""
        return (getattr(self, name) - getattr(earlier, name)) / (self.at - earlier.at)


@dataclass(slots=True)
class _Tally:
    """What the appender tasks and the probe of one Sluice cell collect."""

    latencies: list[float] = field(default_factory=list)
    marks: list[_Mark] = field(default_factory=list)


async def _appender(wal, cell: Cell, pool: list[bytes], task: int, window: Window,
                    tally: _Tally) -> None:
    """Appends until the window ends; records the latency of each call completed in it."""
    perf, latencies = time.perf_counter, tally.latencies
    if cell.kind == "batch":
        method = wal.append_batch
        arguments = [[pool[(task + i) % len(pool)] for i in range(cell.per_call)]]
    else:
        method, arguments = wal.append, pool[task % len(pool):] + pool[:task % len(pool)]
    i = 0
    while (start := perf()) < window.end:
        await method(arguments[i % len(arguments)])
        end = perf()
        if window.start <= end < window.end:
            latencies.append(end - start)
        i += 1


async def _probe(wal, timed_io: TimedFileIO, window: Window, tally: _Tally) -> None:
    """Snapshots the writer statistics and I/O times at the window's start and end."""
    for edge in (window.start, window.end):
        await trio.sleep(max(0.0, edge - time.perf_counter()))
        stats = wal.statistics()
        tally.marks.append(_Mark(time.perf_counter(), time.process_time(),
                                 stats.records_appended, stats.syncs,
                                 stats.segments_rolled, timed_io.sync_s, timed_io.write_s,
                                 timed_io.prealloc_s))


async def _sluice_cell(directory: Path, cell: Cell, pool: list[bytes], seconds: float,
                       warmup: float) -> Sample:
    """Opens a fresh WAL (default config, fsync=always) and runs the cell's tasks."""
    timed_io = TimedFileIO()
    tally = _Tally()
    async with open_wal(directory, WalConfig(), io=timed_io) as wal:
        window = Window.after(warmup, seconds)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_probe, wal, timed_io, window, tally)
            for task in range(cell.width):
                nursery.start_soon(_appender, wal, cell, pool, task, window, tally)
    first, last = tally.marks
    latencies = sorted(tally.latencies)
    return Sample(records_per_s=len(latencies) * cell.per_call / seconds, calls=len(latencies),
                  p50_ms=percentile(latencies, 0.50) * 1e3,
                  p99_ms=percentile(latencies, 0.99) * 1e3,
                  syncs_per_s=(last.syncs - first.syncs) / (last.at - first.at),
                  records_per_sync=(last.records - first.records) / max(1, last.syncs
                                                                         - first.syncs),
                  sync_busy=last.busy(first, "sync_s"), write_busy=last.busy(first, "write_s"),
                  roll_busy=last.busy(first, "roll_s"), segments_rolled=last.rolls - first.rolls,
                  cpu_us_per_record=(last.cpu - first.cpu) * 1e6 / max(1, last.records
                                                                        - first.records))


def run_sluice(directory: Path, cell: Cell, seconds: float, warmup: float) -> Sample:
    """One Sluice cell in its own ``trio.run``."""
    pool = payload_pool(cell.record_bytes)
    return trio.run(_sluice_cell, directory, cell, pool, seconds, warmup)


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, incl. steal; CPU seconds of this
    process, all threads). The difference over an interval is other processes' load."""
    try:
        with open("/proc/stat", encoding="utf-8") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return math.nan, math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal; no guest
    own = os.times()
    return busy, own.user + own.system


def run_cell(directory: Path, cell: Cell, seconds: float, warmup: float) -> Sample:
    """Runs one cell in ``directory`` (created fresh) and deletes it afterwards; the sample
    carries the average number of cores other processes kept busy meanwhile."""
    busy0, own0, start = *cpu_seconds(), time.perf_counter()
    try:
        if cell.kind == "ceiling":
            sample = run_ceiling(directory, cell, seconds, warmup)
        elif cell.kind == "thread":
            sample = run_thread_hop(directory, cell, seconds, warmup)
        else:
            sample = run_sluice(directory, cell, seconds, warmup)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    busy1, own1 = cpu_seconds()
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (time.perf_counter() - start)
    return dataclasses.replace(sample, other_cores=others)


def run_rounds(scratch: Path, cells: Sequence[Cell], seconds: float, warmup: float,
               repeats: int, progress: Callable[[str], None]) -> list[CellResult]:
    """Runs every cell once per round, ``repeats`` rounds, each run in a fresh directory."""
    results = [CellResult(cell) for cell in cells]
    for round_no in range(1, repeats + 1):
        for number, result in enumerate(results):
            directory = scratch / f"r{round_no}-{number:02d}-{result.cell.key}"
            sample = run_cell(directory, result.cell, seconds, warmup)
            result.samples.append(sample)
            progress(f"round {round_no}/{repeats} {result.cell.key}: "
                     f"{sample.records_per_s:,.0f} rec/s, p50 {sample.p50_ms:.3f} ms, "
                     f"CPU {sample.cpu_us_per_record:.1f} us/rec, "
                     f"other load {sample.other_cores:.2f} cores\n")
    return results


# ---- profiling one cell --------------------------------------------------------------------

def profile_cell(scratch: Path, cell: Cell, seconds: float, warmup: float,
                 top: int = 30) -> tuple[Sample, str]:
    """Runs ``cell`` once under cProfile (all threads, Python >= 3.12); returns the sample
    and the top functions by own time and by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        sample = run_cell(scratch / f"profile-{cell.key}", cell, seconds, warmup)
    finally:
        profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    text.write("== own time by package (wall clock, both threads) ==\n")
    text.write(self_time_by_package(stats))
    stats.strip_dirs()
    text.write("\n== by own time (tottime) ==\n")
    stats.sort_stats("tottime").print_stats(top)
    text.write("== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    return sample, text.getvalue()


def _package_of(filename: str, function: str) -> str:
    """A coarse owner for one profiled function: a package or a kind of C call."""
    if filename == "~":
        if any(name in function for name in ("fdatasync", "pwrite", "fsync")):
            return "disk syscalls (pwrite, fdatasync, fsync)"
        if "epoll" in function or "socket" in function:
            return "event-loop waits (epoll, wakeup socket)"
        return "other C built-ins (crc32c, struct, len, locks, ...)"
    for package in ("trio", "outcome", "wal", "bench", "zstandard"):
        if f"/{package}/" in filename or filename.startswith(f"<attrs generated methods "
                                                             f"{package}."):
            return package
    return "other Python (stdlib)"


def self_time_by_package(stats: pstats.Stats) -> str:
    """Own (exclusive) time summed per package, largest first, as text lines."""
    totals: dict[str, float] = {}
    for (filename, _line, function), row in stats.stats.items():  # type: ignore[attr-defined]
        owner = _package_of(filename, function)
        totals[owner] = totals.get(owner, 0.0) + row[2]
    whole = sum(totals.values()) or 1.0
    return "".join(f"{seconds:8.3f} s {seconds / whole * 100:5.1f} %  {owner}\n"
                   for owner, seconds in sorted(totals.items(), key=lambda kv: -kv[1]))


# ---- machine description -------------------------------------------------------------------

def _first_line_value(path: str, key: str) -> str:
    """The value of the first ``key: value`` (or ``key=value``) line of a text file."""
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                name, _, value = line.partition(":" if ":" in line else "=")
                if name.strip() == key:
                    return value.strip().strip('"')
    except OSError:
        pass
    return "unknown"


def mount_of(path: Path) -> tuple[str, str, str, str]:
    """(mount point, device, filesystem type, options) of the mount holding ``path``."""
    real = str(path.resolve())
    best = ("/", "unknown", "unknown", "")
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            for line in handle:
                device, point, fstype, options = line.split()[:4]
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best[0]):
                    best = (point, device, fstype, options)
    except OSError:
        pass
    return best


def source_revision() -> str:
    """The repository's HEAD commit, flagged when ``wal/`` has uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, check=False, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""
    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--", "wal")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return f"{head}" + (" + uncommitted changes in wal/" if dirty else " (wal/ clean)")


def machine_description(scratch: Path) -> list[tuple[str, str]]:
    """Labelled facts about the machine and the scratch directory's filesystem."""
    point, device, fstype, options = mount_of(scratch)
    usage = shutil.disk_usage(scratch)
    mem_kib = _first_line_value("/proc/meminfo", "MemTotal").split()[0]
    try:
        cpus = f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable"
    except AttributeError:
        cpus = f"{os.cpu_count()} logical"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{_first_line_value('/proc/cpuinfo', 'model name')} ({cpus})"),
        ("memory", f"{int(mem_kib) / MIB:.1f} GiB" if mem_kib.isdigit() else "unknown"),
        ("os / kernel", f"{_first_line_value('/etc/os-release', 'PRETTY_NAME')} / "
                        f"{platform.release()}"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}, "
                   f"trio {trio.__version__}"),
        ("scratch", f"{scratch} on {device} ({fstype}, mounted at {point}, "
                    f"{options}); {usage.free / 2**30:.0f} GiB free"),
        ("sluice revision", source_revision()),
        ("load average at start", load),
    ]


# ---- report --------------------------------------------------------------------------------

def _fmt_rate(value: float) -> str:
    """A rate with thousands separators and no decimals."""
    return f"{value:,.0f}"


def _result_row(result: CellResult, by_key: dict[str, CellResult]) -> str:
    """One markdown table row: medians, throughput spread and the ratio to the ceiling."""
    lo, hi = result.spread("records_per_s")
    ceiling = matching_ceiling(result.cell)
    ratio = "-"
    if ceiling is not None and ceiling.key in by_key:
        ratio = f"{result.median('records_per_s') / by_key[ceiling.key].median('records_per_s'):.2f}"
    busy = (f"{result.median('sync_busy') * 100:.0f} / {result.median('write_busy') * 100:.0f}"
            f" / {result.median('roll_busy') * 100:.0f} % ({result.median('segments_rolled'):g})")
    return (f"| {result.cell.label} | **{_fmt_rate(result.median('records_per_s'))}** | "
            f"{_fmt_rate(lo)} - {_fmt_rate(hi)} | {_fmt_rate(result.median('syncs_per_s'))} | "
            f"{result.median('records_per_sync'):.1f} | {result.median('p50_ms'):.3f} | "
            f"{result.median('p99_ms'):.3f} | {result.median('cpu_us_per_record'):.1f} | "
            f"{busy} | {ratio} | "
            f"{result.median('other_cores'):.2f} |")


def results_table(results: Sequence[CellResult]) -> str:
    """The main markdown table: one row per cell, medians over the rounds."""
    by_key = {r.cell.key: r for r in results}
    lines = [
        "| cell | records/s (median) | min - max | syncs/s | records/sync | p50 ms | p99 ms "
        "| CPU us/record | % in fdatasync / pwrite / seg. prep (rolls) | (d) vs ceiling "
        "| other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_result_row(result, by_key) for result in results]
    return "\n".join(lines)


def target_checks(results: Sequence[CellResult]) -> list[tuple[str, str, bool]]:
    """(target, measured, passed) for the two group-commit targets (when their cells ran)."""
    by_key = {r.cell.key: r for r in results}
    checks = []
    many = by_key.get(Cell("append", 200, 256).key)
    if many is not None:
        rate = many.median("records_per_s")
        checks.append((f">= {TARGET_RECORDS_PER_S:,} durable appends/s, 256 appenders, 200 B",
                       f"{rate:,.0f} /s", rate >= TARGET_RECORDS_PER_S))
    one, sync = by_key.get(Cell("append", 200, 1).key), by_key.get(Cell("ceiling", 200, 1).key)
    if one is not None and sync is not None:
        p50, limit = one.median("p50_ms"), TARGET_P50_FACTOR * sync.median("p50_ms")
        checks.append((f"p50 at 1 appender <= {TARGET_P50_FACTOR:g} x one pwrite+fdatasync "
                       f"p50 (a, N=1: {sync.median('p50_ms'):.3f} ms)",
                       f"{p50:.3f} ms = {p50 / sync.median('p50_ms'):.2f} x "
                       f"(limit {limit:.3f} ms)",
                       p50 <= limit))
    return checks


def render_report(machine: Sequence[tuple[str, str]], results: Sequence[CellResult],
                  settings: str) -> str:
    """The whole markdown report: machine, settings, the table, the target checks."""
    config = WalConfig()
    out = ["# Sluice WAL group-commit benchmark", ""]
    out += [f"- **{name}**: {value}" for name, value in machine]
    out += [f"- **settings**: {settings}",
            f"- **WalConfig**: default (fsync={config.fsync}, batch_records_max="
            f"{config.batch_records_max}, batch_bytes_max={config.batch_bytes_max // MIB} MiB, "
            f"segment {config.segment_size_max_bytes // MIB} MiB, compress_min_bytes="
            f"{config.compress_min_bytes}); frame header {FRAME_HEADER_SIZE} B per record",
            "", results_table(results), "",
            "Latency: per pwrite+fdatasync for (a) and (a'); per `append`/`append_batch` call "
            "for (b). records/sync for Sluice: records / fdatasyncs inside the window (the "
            "group-commit batch size). % in fdatasync / pwrite / seg. prep: share of the "
            "window spent inside each call (seg. prep = zero-filling + fsyncing the next "
            "64 MiB segment, in whichever thread does it), and the number of segment rolls "
            "in the window. "
            "CPU us/record: this process's CPU time (all threads, user + system) per "
            "record in the window. "
            "(d) vs ceiling: records/s over the ceiling (a) with N = appenders "
            "(N = 256 for one append_batch task; no match for 16 batch tasks). "
            "other load: cores kept busy by other processes during the cell (from "
            "/proc/stat, including VM steal), out of the machine's "
            f"{os.cpu_count()}.", "",
            "| (d) target | measured | result |", "|---|---|---|"]
    out += [f"| {name} | {measured} | **{'PASS' if ok else 'FAIL'}** |"
            for name, measured, ok in target_checks(results)]
    return "\n".join(out) + "\n"


# ---- command line --------------------------------------------------------------------------

def json_cell(result: CellResult) -> dict:
    """One cell for ``--json`` (bench/cells_json.py): x = records per sync or appenders."""
    cell = result.cell
    system = "sluice" if cell.kind in ("append", "batch") else cell.kind
    return cells_json.cell(cell.key, cell.label, system,
                           group=f"{cell.kind} {cell.record_bytes} B", x=cell.width,
                           rate=result.median("records_per_s"), rate_unit="records/s",
                           p50_ms=result.median("p50_ms"), p99_ms=result.median("p99_ms"),
                           metrics=cells_json.medians(result))


def parse_cell(text: str) -> Cell:
    """``KIND:BYTES:WIDTH[:PER_CALL]`` -> ``Cell`` (for ``--profile``)."""
    parts = text.split(":")
    try:
        kind, numbers = parts[0], [int(x) for x in parts[1:]]
        per_call = numbers[2] if len(numbers) > 2 else (
            BATCH_CALL_RECORDS if kind == "batch" else 1)
        if kind not in ("append", "batch", "ceiling", "thread") or len(numbers) not in (2, 3):
            raise ValueError(text)
        return Cell(kind, numbers[0], numbers[1], per_call)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not KIND:BYTES:TASKS[:PER_CALL]: {text!r}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` only changes defaults the user did not set."""
    parser = argparse.ArgumentParser(prog="python -m bench.wal_group_commit",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="measured seconds per cell (default 3)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each cell "
                                                     "(default 0.5)")
    parser.add_argument("--repeats", type=int, help="rounds over all cells (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 0.5 s per cell, 0.1 s warm-up, 1 round")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--json", type=Path, help="also write the cells' numbers here "
                        "(bench/cells_json.py; read by bench/report.py)")
    parser.add_argument("--scratch-parent", type=Path, default=REPO_ROOT / "bench" / "results",
                        help="where the temporary scratch dir is made (default bench/results)")
    parser.add_argument("--profile", nargs="?", const="append:200:256", metavar="CELL",
                        type=parse_cell,
                        help="instead: run one cell once under cProfile and print the top "
                             "functions; CELL is KIND:BYTES:TASKS[:PER_CALL] with KIND "
                             "append, batch, ceiling or thread (default append:200:256)")
    args = parser.parse_args(argv)
    quick = (0.5, 0.1, 1) if args.quick else (3.0, 0.5, 3)
    args.seconds = quick[0] if args.seconds is None else args.seconds
    args.warmup = quick[1] if args.warmup is None else args.warmup
    args.repeats = quick[2] if args.repeats is None else args.repeats
    if args.seconds <= 0 or args.warmup < 0 or args.repeats < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --repeats >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark (or the profile) and writes the report to stdout."""
    args = parse_args(argv)
    args.scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=args.scratch_parent))
    try:
        machine = machine_description(scratch)
        if args.profile:
            sample, text = profile_cell(scratch, args.profile, args.seconds, args.warmup)
            report = (f"# cProfile of {args.profile.label} (slowed by the profiler)\n\n"
                      f"{sample.records_per_s:,.0f} rec/s, {sample.records_per_sync:.1f} "
                      f"records/sync, p50 {sample.p50_ms:.3f} ms\n\n{text}")
        else:
            results = run_rounds(scratch, default_cells(), args.seconds, args.warmup,
                                 args.repeats, sys.stderr.write)
            settings = (f"{args.seconds:g} s measured per cell after {args.warmup:g} s warm-up, "
                        f"{args.repeats} round(s), medians; load average at end "
                        + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
            report = render_report(machine, results, settings)
            if args.json is not None:
                cells_json.write(args.json, "wal", [json_cell(r) for r in results])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
