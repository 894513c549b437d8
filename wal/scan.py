"""Synchronous, trio-free reading of segments: scanning for recovery and tools, and a frame
iterator for replay and consumers. Never writes.

Thread safety: every function here is pure over the bytes it reads; call from any thread.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WalCorruptionError
from .format import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    RECORD_SIZE_LIMIT_BYTES,
    SEGMENT_HEADER_SIZE,
    FrameHeader,
    decode_frame_header,
    decode_payload,
    decode_segment_header,
    payload_ok,
    segment_name,
)
from .segment import SegmentFile, list_segments


@dataclass(frozen=True, slots=True)
class Frame:
    """One record read back from the log."""

    lsn: int
    payload: bytes
    segment_base_lsn: int
    offset: int  # byte offset of the frame header inside its segment
    stored_len: int
    compressed: bool


@dataclass(frozen=True, slots=True)
class StopFacts:
    """What is at the first position of a segment that is not a valid frame."""

    offset: int
    expected_lsn: int
    reason: str
    header_ok: bool
    length_ok: bool
    payload_ok: bool
    rest_zero: bool
    vouched: bool  # a later valid-looking header records this LSN as already durable


@dataclass(slots=True)
class SegmentScan:
    path: Path
    base_lsn: int
    size_bytes: int
    frames: list[tuple[int, FrameHeader]] = field(default_factory=list)  # (offset, header)
    end_offset: int = SEGMENT_HEADER_SIZE  # first byte after the last valid frame
    stop: StopFacts | None = None  # None: the valid frames end exactly at the file end

    @property
    def last_lsn(self) -> int:
        """LSN of the last valid frame, or base_lsn - 1 when the segment holds none."""
        return self.frames[-1][1].lsn if self.frames else self.base_lsn - 1


def read_segment_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def scan_segment(
    path: Path, buf: bytes, *, record_size_max_bytes: int = RECORD_SIZE_LIMIT_BYTES
) -> SegmentScan:
    """Walks the frames of one segment image and describes where valid data stops.

    Raises ``WalCorruptionError`` when the segment header itself is invalid (a named segment
    always had a synced header: it is created as a temp file and renamed).
    """
    base = decode_segment_header(buf)
    if isinstance(base, str):
        raise WalCorruptionError(path, 0, base)
    scan = SegmentScan(path, base, len(buf))
    view = memoryview(buf)
    offset, expected = SEGMENT_HEADER_SIZE, base
    while offset < len(buf):
        header = decode_frame_header(buf, offset, record_size_max_bytes=record_size_max_bytes)
        if isinstance(header, FrameHeader) and header.lsn != expected:
            header = f"frame LSN {header.lsn} where {expected} was expected"
        if isinstance(header, str):
            scan.stop = _stop_facts(buf, offset, expected, header, header_ok=False)
            break
        end = offset + header.frame_size
        if end > len(buf):
            scan.stop = _stop_facts(buf, offset, expected, "frame extends past segment end",
                                    header_ok=True)
            break
        if not payload_ok(header, view[offset + FRAME_HEADER_SIZE : end]):
            scan.stop = _stop_facts(buf, offset, expected, "payload CRC mismatch",
                                    header_ok=True, length_ok=True)
            break
        scan.frames.append((offset, header))
        offset, expected = end, expected + 1
    scan.end_offset = offset
    return scan


def _stop_facts(
    buf: bytes, offset: int, expected: int, reason: str, *, header_ok: bool, length_ok: bool = False
) -> StopFacts:
    rest_zero = buf.count(0, offset) == len(buf) - offset
    return StopFacts(
        offset=offset,
        expected_lsn=expected,
        reason=reason,
        header_ok=header_ok,
        length_ok=length_ok,
        payload_ok=False,
        rest_zero=rest_zero,
        vouched=not rest_zero and _later_frame_vouches(buf, offset + 1, expected),
    )


def _later_frame_vouches(buf: bytes, start: int, lsn: int) -> bool:
    """True if a frame header after ``start`` (found by its magic, header CRC valid) says
    that ``lsn`` was already durable when it was written."""
    position = buf.find(FRAME_MAGIC, start)
    while position != -1:
        header = decode_frame_header(buf, position)
        if isinstance(header, FrameHeader) and header.lsn > lsn and header.durable_lsn >= lsn:
            return True
        position = buf.find(FRAME_MAGIC, position + 1)
    return False


def iter_frames(
    directory: Path | str,
    from_lsn: int = 1,
    *,
    upto_lsn: int | None = None,
    record_size_max_bytes: int = RECORD_SIZE_LIMIT_BYTES,
) -> Iterator[Frame]:
    """Yields the records with ``from_lsn <= lsn <= upto_lsn`` in LSN order.

    Needs no event loop (tools, replay). With ``upto_lsn=None`` it reads until the valid data
    ends. With a bound (a live log's last acknowledged LSN) damage or a missing record before
    the bound raises ``WalCorruptionError``; bytes after the bound are never interpreted, so
    reading while the writer appends is safe. Frames older than the log's first segment
    (removed by retention) are simply not yielded; check ``first_lsn`` when that matters.
    """
    directory = Path(directory)
    segments = list_segments(directory)
    bases = [segment.base_lsn for segment in segments]
    start = max(0, bisect.bisect_right(bases, from_lsn) - 1)
    previous: SegmentScan | None = None
    for segment in segments[start:]:
        if upto_lsn is not None and segment.base_lsn > upto_lsn:
            return
        buf = read_segment_bytes(segment.path)
        scan = scan_segment(segment.path, buf, record_size_max_bytes=record_size_max_bytes)
        if previous is not None and scan.base_lsn != previous.last_lsn + 1:
            _raise_segment_discontinuity(previous, scan)
        view = memoryview(buf)
        for offset, header in scan.frames:
            if header.lsn < from_lsn:
                continue
            if upto_lsn is not None and header.lsn > upto_lsn:
                return
            yield _frame(segment, view, offset, header)
        previous = scan
        if upto_lsn is not None and scan.last_lsn < upto_lsn and segment is segments[-1]:
            stop = scan.stop
            raise WalCorruptionError(segment.path, scan.end_offset,
                                     f"record {scan.last_lsn + 1} is acknowledged but unreadable"
                                     + (f": {stop.reason}" if stop else ""))


def _raise_segment_discontinuity(previous: SegmentScan, scan: SegmentScan) -> None:
    """Names the real damage: a damaged sealed segment, else the gap itself."""
    stop = previous.stop
    if stop is not None and not stop.rest_zero:
        raise WalCorruptionError(previous.path, stop.offset,
                                 f"{stop.reason} (record {previous.last_lsn + 1} unreadable; "
                                 f"the next segment starts at LSN {scan.base_lsn})")
    raise WalCorruptionError(scan.path, 0, f"segment starts at LSN {scan.base_lsn}, previous "
                             f"segment ended at LSN {previous.last_lsn}")


def read_frame_at(
    directory: Path | str, segment_base_lsn: int, offset: int, *,
    record_size_max_bytes: int = RECORD_SIZE_LIMIT_BYTES,
) -> Frame:
    """Reads the single frame at a known position (for indexes that store positions).

    Raises ``WalCorruptionError`` if there is no valid frame at that position.
    """
    path = Path(directory) / segment_name(segment_base_lsn)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(offset)
        head = f.read(FRAME_HEADER_SIZE)
        header = decode_frame_header(head, 0, record_size_max_bytes=record_size_max_bytes)
        if isinstance(header, str):
            raise WalCorruptionError(path, offset, header)
        if offset + header.frame_size > size:
            raise WalCorruptionError(path, offset, "frame extends past segment end")
        stored = f.read(header.stored_len)
    if not payload_ok(header, stored):
        raise WalCorruptionError(path, offset, "payload CRC mismatch")
    return _frame(SegmentFile(segment_base_lsn, path), memoryview(head + stored), 0, header,
                  offset_in_segment=offset)


def _frame(segment: SegmentFile, view: memoryview, offset: int, header: FrameHeader,
           offset_in_segment: int | None = None) -> Frame:
    stored = view[offset + FRAME_HEADER_SIZE : offset + header.frame_size]
    try:
        payload = decode_payload(header, stored)
    except ValueError as exc:
        raise WalCorruptionError(segment.path, offset if offset_in_segment is None
                                 else offset_in_segment, str(exc)) from exc
    return Frame(
        lsn=header.lsn,
        payload=payload,
        segment_base_lsn=segment.base_lsn,
        offset=offset if offset_in_segment is None else offset_in_segment,
        stored_len=header.stored_len,
        compressed=header.codec != 0,
    )
