"""Open-time recovery as a decision table.

For each segment, ``scan_segment`` stops at the first position that is not a valid frame and
reports six facts about it (``StopFacts``). ``DECISION_TABLE`` maps every combination of
those facts to exactly one outcome; ``tests/wal/test_recovery_table.py`` walks all 64
combinations. The outcomes:

  OK             a valid frame (only reached for frames, never for a stop)
  END            clean end of data: the rest of the segment is the zero-filled preallocation
  TRUNCATE_TAIL  a torn or partial write at the end of the last segment that no later frame
                 records as durable: it was never acknowledged under ``fsync=always``; the
                 bytes are copied to ``<segment>.broken-<offset>`` and zero-filled
  FAIL_CORRUPT   damage to data that was durable: refuse to open, naming segment and offset
  IMPOSSIBLE     a combination the scanner cannot produce (asserted)

Besides the table, two whole-log rules: each segment must start at the LSN after the last
frame of the previous one (a gap or overlap is FAIL_CORRUPT), and ``.tmp`` files (unfinished
segment rolls) are deleted.

What the table cannot know: if the *last* frames of the last segment are destroyed and no
later frame vouches for them, they are indistinguishable from a torn unacknowledged write and
are truncated. Only storage that loses synced data can cause that.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from . import failpoints
from ._io import FileIO
from .errors import WalCorruptionError
from .format import RECORD_SIZE_LIMIT_BYTES
from .scan import SegmentScan, StopFacts, read_segment_bytes, scan_segment
from .segment import broken_copy_path, leftover_temp_files, list_segments


class Outcome(enum.Enum):
    OK = "ok"
    END = "end"
    TRUNCATE_TAIL = "truncate_tail"
    FAIL_CORRUPT = "fail_corrupt"
    IMPOSSIBLE = "impossible"


ANY = (False, True)
T, F = (True,), (False,)


@dataclass(frozen=True, slots=True)
class Row:
    header_ok: tuple[bool, ...]
    length_ok: tuple[bool, ...]
    payload_ok: tuple[bool, ...]
    rest_zero: tuple[bool, ...]
    last_segment: tuple[bool, ...]
    vouched: tuple[bool, ...]
    outcome: Outcome
    note: str

    def matches(self, facts: tuple[bool, bool, bool, bool, bool, bool]) -> bool:
        fields = (self.header_ok, self.length_ok, self.payload_ok, self.rest_zero,
                  self.last_segment, self.vouched)
        return all(value in allowed for value, allowed in zip(facts, fields, strict=True))


_HEADER_BAD = dict(header_ok=F, length_ok=F, payload_ok=F)
_PAYLOAD_BAD = dict(header_ok=T, length_ok=ANY, payload_ok=F)

# Columns: header_ok, length_ok, payload_ok, rest_zero, last_segment, vouched.
DECISION_TABLE: tuple[Row, ...] = (
    Row(T, T, T, ANY, ANY, ANY, Outcome.OK,
        "a valid frame: header, length and payload all check"),
    Row(F, T, ANY, ANY, ANY, ANY, Outcome.IMPOSSIBLE,
        "length is only checked once the header passed"),
    Row(F, F, T, ANY, ANY, ANY, Outcome.IMPOSSIBLE,
        "the payload is only checked once the frame fits"),
    Row(T, F, T, ANY, ANY, ANY, Outcome.IMPOSSIBLE,
        "the payload is only checked once the frame fits"),
    Row(**_PAYLOAD_BAD, rest_zero=T, last_segment=ANY, vouched=ANY, outcome=Outcome.IMPOSSIBLE,
        note="a header that passes starts with a non-zero magic"),
    Row(**_HEADER_BAD, rest_zero=T, last_segment=ANY, vouched=T, outcome=Outcome.IMPOSSIBLE,
        note="a vouching frame would be non-zero"),
    Row(**_HEADER_BAD, rest_zero=T, last_segment=ANY, vouched=F, outcome=Outcome.END,
        note="clean end: the unused, zero-filled part of a preallocated segment"),
    Row(**_HEADER_BAD, rest_zero=F, last_segment=F, vouched=ANY, outcome=Outcome.FAIL_CORRUPT,
        note="damaged header in a sealed segment: it was synced before the next was created"),
    Row(**_HEADER_BAD, rest_zero=F, last_segment=T, vouched=F, outcome=Outcome.TRUNCATE_TAIL,
        note="torn header at the end of the log, never recorded as durable"),
    Row(**_HEADER_BAD, rest_zero=F, last_segment=T, vouched=T, outcome=Outcome.FAIL_CORRUPT,
        note="damaged header of a frame that a later frame records as durable"),
    Row(**_PAYLOAD_BAD, rest_zero=F, last_segment=F, vouched=ANY, outcome=Outcome.FAIL_CORRUPT,
        note="damaged frame in a sealed segment: it was synced before the next was created"),
    Row(**_PAYLOAD_BAD, rest_zero=F, last_segment=T, vouched=F, outcome=Outcome.TRUNCATE_TAIL,
        note="partial or torn frame at the end of the log, never recorded as durable"),
    Row(**_PAYLOAD_BAD, rest_zero=F, last_segment=T, vouched=T, outcome=Outcome.FAIL_CORRUPT,
        note="damaged frame that a later frame records as durable"),
)


def decide(facts: tuple[bool, bool, bool, bool, bool, bool]) -> Row:
    """The single table row matching ``facts``; asserts that exactly one matches."""
    rows = [row for row in DECISION_TABLE if row.matches(facts)]
    assert len(rows) == 1, (facts, rows)
    return rows[0]


def all_fact_combinations() -> list[tuple[bool, ...]]:
    return list(itertools.product((False, True), repeat=6))


def _facts(stop: StopFacts, last_segment: bool) -> tuple[bool, bool, bool, bool, bool, bool]:
    return (stop.header_ok, stop.length_ok, stop.payload_ok, stop.rest_zero, last_segment,
            stop.vouched)


@dataclass(frozen=True, slots=True)
class TornTail:
    segment_path: Path
    offset: int
    bytes_cut: int
    reason: str
    note: str
    copy_path: Path | None = None


@dataclass(slots=True)
class RecoveryReport:
    """What recovery found (and, after ``recover``, did)."""

    scans: list[SegmentScan] = field(default_factory=list)
    torn_tail: TornTail | None = None
    temp_files: list[Path] = field(default_factory=list)
    corruption: WalCorruptionError | None = None

    @property
    def first_lsn(self) -> int | None:
        return self.scans[0].base_lsn if self.scans else None

    @property
    def last_lsn(self) -> int:
        """LSN of the last valid record (0 for an empty log)."""
        return self.scans[-1].last_lsn if self.scans else 0


def analyze(directory: Path, *, record_size_max_bytes: int = RECORD_SIZE_LIMIT_BYTES
            ) -> RecoveryReport:
    """Read-only diagnosis of a log directory (``sluice wal verify`` and ``recover`` use it).

    Never raises for damage: corruption is reported in ``report.corruption``. Raises
    ``FileNotFoundError`` if ``directory`` does not exist.
    """
    report = RecoveryReport(temp_files=leftover_temp_files(directory))
    segments = list_segments(directory)
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        try:
            scan = scan_segment(segment.path, read_segment_bytes(segment.path),
                                record_size_max_bytes=record_size_max_bytes)
        except WalCorruptionError as exc:
            report.corruption = exc
            return report
        if report.scans and scan.base_lsn != report.scans[-1].last_lsn + 1:
            report.corruption = WalCorruptionError(
                segment.path, 0, f"segment starts at LSN {scan.base_lsn} but the previous "
                f"segment ends at LSN {report.scans[-1].last_lsn}")
            return report
        report.scans.append(scan)
        if scan.stop is None:
            continue
        row = decide(_facts(scan.stop, last))
        assert row.outcome not in (Outcome.OK, Outcome.IMPOSSIBLE), row
        if row.outcome == Outcome.FAIL_CORRUPT:
            report.corruption = WalCorruptionError(
                segment.path, scan.stop.offset, f"{scan.stop.reason} ({row.note})")
            return report
        if row.outcome == Outcome.TRUNCATE_TAIL:
            buf = read_segment_bytes(segment.path)
            used_end = len(buf.rstrip(b"\x00"))
            report.torn_tail = TornTail(segment.path, scan.stop.offset,
                                        max(0, used_end - scan.stop.offset),
                                        scan.stop.reason, row.note)
    return report


def recover(io: FileIO, directory: Path, *,
            record_size_max_bytes: int = RECORD_SIZE_LIMIT_BYTES) -> RecoveryReport:
    """Brings a log directory to a state the writer can append to, or refuses.

    Deletes unfinished-roll temp files; copies a torn tail aside and zero-fills it.
    Raises ``WalCorruptionError`` (segment, offset, reason) for anything else. Idempotent: a
    crash at any point of recovery leaves a directory that recovers the same way.
    """
    report = analyze(directory, record_size_max_bytes=record_size_max_bytes)
    if report.corruption is not None:
        raise report.corruption
    for temp in report.temp_files:
        io.unlink(temp)
    if report.temp_files:
        io.fsync_dir(directory)
    tail = report.torn_tail
    if tail is not None:
        report.torn_tail = _cut_tail(io, tail)
    return report


def _cut_tail(io: FileIO, tail: TornTail) -> TornTail:
    cut = read_segment_bytes(tail.segment_path)[tail.offset : tail.offset + tail.bytes_cut]
    copy_path = broken_copy_path(tail.segment_path, tail.offset)
    suffix = 0
    while copy_path.exists():  # an earlier, interrupted recovery of the same tail
        suffix += 1
        copy_path = broken_copy_path(tail.segment_path, tail.offset).with_name(
            f"{broken_copy_path(tail.segment_path, tail.offset).name}.{suffix}")
    io.write_new_file_durably(copy_path, cut)
    failpoints.hit("recovery.after_broken_copy")
    fd = io.open_existing(tail.segment_path)
    try:
        io.fill_zeros(fd, tail.offset, tail.bytes_cut)
        io.fdatasync(fd)
    finally:
        io.close(fd)
    return TornTail(tail.segment_path, tail.offset, tail.bytes_cut, tail.reason, tail.note,
                    copy_path)
