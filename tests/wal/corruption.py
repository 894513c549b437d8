"""A tiny harness for corruption tests: build a small log once, then damage copies of it.

    h = CorruptionHarness(tmp_path, SMALL)
    await h.build([record(i) for i in range(1, 21)])   # one append (one fsync) per record
    h.fresh_copy()                                      # pristine bytes into h.work
    h.corrupt(frame=3, how="flip_bit", bit=7)           # or truncate(), zero_from(), ...
    reopened = await h.reopen(append=[b"more"])        # open_wal on the copy

Building goes through the real async writer, so the frames carry the ``durable_lsn`` values
the writer really records. Damage is applied to plain bytes on disk, and ``reopen`` runs the
real ``open_wal`` (recovery included) with ``NO_SYNC_IO``: these tests are about what recovery
makes of the bytes on disk, not about power loss, so fsyncs are skipped to keep thousands of
reopens within a few seconds.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wal import WalConfig, iter_frames, open_wal
from wal._io import FileIO
from wal.format import BROKEN_SUFFIX, TEMP_SUFFIX, parse_segment_name
from wal.recovery import RecoveryReport, Row, analyze, decide
from wal.scan import scan_segment
from wal.segment import list_segments


class NoSyncIO(FileIO):
    """Real files, but syncs are no-ops (nothing here simulates power loss)."""

    def fsync(self, fd: int) -> None:
        pass

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: Path) -> None:
        pass


NO_SYNC_IO = NoSyncIO()


@dataclass(frozen=True, slots=True)
class FrameSpan:
    """Where one frame of the built log lies: segment index and byte range [start, end)."""

    lsn: int
    durable_lsn: int  # what the writer recorded as durable when it wrote this frame
    segment: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Reopened:
    """What a successful reopen served: payloads before and after the appends."""

    payloads: list[bytes]
    report: RecoveryReport
    appended_lsns: list[int]


class CorruptionHarness:
    """Builds a log in ``root/source`` once; every ``fresh_copy`` resets ``root/work``."""

    def __init__(self, root: Path, config: WalConfig) -> None:
        self.config = config
        self.source = root / "source"
        self.work = root / "work"
        self.payloads: list[bytes] = []
        self.frames: list[FrameSpan] = []
        self.pristine: list[tuple[str, bytes]] = []  # (segment file name, bytes), log order

    async def build(self, payloads: Sequence[bytes], *, batch: int = 1) -> None:
        """Appends ``payloads`` (``batch`` per group commit) and records the frame layout."""
        async with open_wal(self.source, self.config, io=NO_SYNC_IO) as wal:
            for i in range(0, len(payloads), batch):
                await wal.append_batch(payloads[i : i + batch])
        self.payloads = list(payloads)
        names = sorted(p.name for p in self.source.iterdir() if parse_segment_name(p.name))
        self.pristine = [(name, (self.source / name).read_bytes()) for name in names]
        for index, (name, buf) in enumerate(self.pristine):
            scan = scan_segment(Path(name), buf)
            assert scan.stop is None or scan.stop.rest_zero, scan.stop
            self.frames += [FrameSpan(h.lsn, h.durable_lsn, index, o, o + h.frame_size)
                            for o, h in scan.frames]
        assert [f.lsn for f in self.frames] == list(range(1, len(payloads) + 1))

    # ---- the damaged copy ------------------------------------------------------------------

    def fresh_copy(self) -> Path:
        """Replaces everything in ``work`` with the pristine segments; returns ``work``."""
        self.work.mkdir(parents=True, exist_ok=True)
        for path in self.work.iterdir():
            path.unlink()
        for name, buf in self.pristine:
            (self.work / name).write_bytes(buf)
        return self.work

    def segment_path(self, segment: int = -1) -> Path:
        return self.work / self.pristine[segment][0]

    def used_end(self, segment: int = -1) -> int:
        """First byte after the last frame of a pristine segment."""
        spans = [f for f in self.frames if f.segment == segment % len(self.pristine)]
        return spans[-1].end if spans else 32

    def frame(self, lsn: int) -> FrameSpan:
        return self.frames[lsn - 1]

    def corrupt(self, *, frame: int | None = None, how: str = "flip_bit", bit: int = 0,
                offset: int | None = None, data: bytes = b"", length: int = 0,
                segment: int = -1) -> None:
        """Damages the copy. ``frame`` (an LSN) makes ``offset``/``bit`` relative to it.

        how: ``flip_bit`` (bit number ``bit`` from ``offset``), ``write`` (``data`` at
        ``offset``), ``zero`` (``length`` zero bytes at ``offset``), ``zero_from`` (zeros from
        ``offset`` to the end of the file).
        """
        if frame is not None:
            segment = self.frame(frame).segment
            offset = self.frame(frame).start + (offset or 0)
        assert offset is not None
        path = self.segment_path(segment)
        buf = bytearray(path.read_bytes())
        if how == "flip_bit":
            buf[offset + bit // 8] ^= 1 << (bit % 8)
        elif how == "write":
            buf[offset : offset + len(data)] = data
        elif how == "zero":
            buf[offset : offset + length] = bytes(length)
        elif how == "zero_from":
            buf[offset:] = bytes(len(buf) - offset)
        else:
            raise ValueError(f"unknown damage {how!r}")
        path.write_bytes(bytes(buf))

    def truncate(self, length: int, segment: int = -1) -> None:
        """Cuts the copy's segment file to ``length`` bytes (a short file, not zeros)."""
        with open(self.segment_path(segment), "r+b") as f:
            f.truncate(length)

    def append_bytes(self, data: bytes, segment: int = -1) -> None:
        """Appends ``data`` past the current end of the segment file."""
        with open(self.segment_path(segment), "ab") as f:
            f.write(data)

    # ---- looking at the result -------------------------------------------------------------

    def analyze(self) -> tuple[RecoveryReport, list[tuple[Path, Row]]]:
        """Read-only recovery diagnosis of the copy, with the decision-table row of every
        segment whose frames stopped before its end (in log order)."""
        report = analyze(self.work)
        last_path = list_segments(self.work)[-1].path
        rows = []
        for scan in report.scans:
            stop = scan.stop
            if stop is not None:
                facts = (stop.header_ok, stop.length_ok, stop.payload_ok, stop.rest_zero,
                         scan.path == last_path, stop.vouched)
                rows.append((scan.path, decide(facts)))
        return report, rows

    def broken_copies(self) -> list[Path]:
        return sorted(p for p in self.work.iterdir() if BROKEN_SUFFIX in p.name)

    def temp_files(self) -> list[Path]:
        return sorted(p for p in self.work.iterdir() if p.name.endswith(TEMP_SUFFIX))

    def read_back(self) -> tuple[RecoveryReport, list[bytes]]:
        """The synchronous half of a reopen, read-only: recovery's diagnosis and every record
        ``iter_frames`` serves (cheaper than ``reopen`` for a second look at a repaired log)."""
        return analyze(self.work), [frame.payload for frame in iter_frames(self.work)]

    async def reopen(self, *, append: Sequence[bytes] = ()) -> Reopened:
        """Runs ``open_wal`` on the copy, reads every record, then appends ``append``.

        Raises whatever ``open_wal`` raises (``WalCorruptionError`` when it refuses).
        """
        async with open_wal(self.work, self.config, io=NO_SYNC_IO) as wal:
            payloads = [frame.payload for frame in wal.read_from(1)]
            lsns = [await wal.append(body) for body in append]
            return Reopened(payloads, wal.recovery_report, lsns)


def seeded_rng(base_seed: int, salt: str) -> random.Random:
    """A PRNG for one test, derived from the run's ``--seed`` and the test's name."""
    return random.Random(f"{base_seed}:{salt}")


@contextlib.contextmanager
def replay_note(base_seed: int, test: str) -> Iterator[None]:
    """Adds ``replay with ... --seed N`` to any failure raised inside the block."""
    try:
        yield
    except Exception as exc:
        exc.add_note(f"replay with: pytest '{test}' --seed {base_seed}")
        raise
