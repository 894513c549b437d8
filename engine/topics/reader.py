"""Reads the WAL records topic messages point at, with an LRU of decoded records.

The commit path ``put``s each fresh event (so the hot tail never touches disk); consumers
keep their rendered messages with the record (``keep_rendered``), so a chunk of messages is
turned into JSON once however many consumes read it. A miss is
read in a worker thread (``read_missing``): records whose position is known are read with
one ``read_frame_at`` each; the others with one ``iter_frames`` pass from the first of them,
which also teaches the reader every position of the segments it reads (kept per segment,
8 bytes a record), so each segment is scanned about once.

Task safety: ``get``/``put``/``learn`` run on the trio thread; ``read_missing`` is a pure
function of its arguments (a snapshot of positions) for a worker thread.
"""

from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from wal import iter_frames, read_frame_at

from ..events import EventDecodeError, RowsCommitted, decode
from .render import Rendered


class _Entry:
    __slots__ = ("event", "nbytes", "rendered")

    def __init__(self, event: RowsCommitted, nbytes: int) -> None:
        self.event = event
        self.nbytes = nbytes
        self.rendered: dict[tuple, Rendered] = {}


class RecordCache:
    """Decoded ``RowsCommitted`` records by LSN, least recently used dropped first once
    their Arrow bytes plus the renders kept with them exceed ``max_bytes``; plus the learnt
    WAL positions.

    Renders (``Rendered`` chunks of a change's messages, keyed by whatever identifies the
    rendering: change, rows, payload mode, table version, encoding) live and die with their
    record: a record read again later is rendered again only if it was dropped meanwhile."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._records: OrderedDict[int, _Entry] = OrderedDict()
        self._bytes = 0
        # segment base LSN -> (first known LSN, frame offsets of it and the LSNs after it)
        self.positions: dict[int, tuple[int, array]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, lsn: int) -> RowsCommitted | None:
        entry = self._records.get(lsn)
        if entry is None:
            return None
        self._records.move_to_end(lsn)
        return entry.event

    def put(self, lsn: int, event: RowsCommitted) -> None:
        if lsn in self._records:
            return
        size = sum(change.batch.nbytes for change in event.changes) + 256
        self._records[lsn] = _Entry(event, size)
        self._grow(size)

    @property
    def renders(self) -> int:
        """How many renders are kept (all records)."""
        return sum(len(entry.rendered) for entry in self._records.values())

    def rendered(self, lsn: int, key: tuple) -> Rendered | None:
        """The render kept with record ``lsn`` under ``key``, if any."""
        entry = self._records.get(lsn)
        return None if entry is None else entry.rendered.get(key)

    def keep_rendered(self, lsn: int, key: tuple, rendered: Rendered) -> None:
        """Keeps ``rendered`` with record ``lsn`` (nothing happens when that record is not
        cached: a render never outlives its record)."""
        entry = self._records.get(lsn)
        if entry is None or key in entry.rendered:
            return
        entry.rendered[key] = rendered
        entry.nbytes += rendered.nbytes
        self._records.move_to_end(lsn)
        self._grow(rendered.nbytes)

    def _grow(self, size: int) -> None:
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._records) > 1:
            _, dropped = self._records.popitem(last=False)
            self._bytes -= dropped.nbytes

    def position(self, lsn: int) -> tuple[int, int] | None:
        bases = sorted(self.positions)
        i = bisect.bisect_right(bases, lsn) - 1
        if i < 0:
            return None
        start, offsets = self.positions[bases[i]]
        k = lsn - start
        return (bases[i], offsets[k]) if 0 <= k < len(offsets) else None

    def learn(self, learnt: Iterable[tuple[int, int, int]]) -> None:
        """Records (lsn, segment base, offset) triples found by a scan, in LSN order; each
        segment keeps one contiguous run of known positions: a new run that overlaps or
        touches the known one is merged with it, else the longer of the two is kept (so a
        scan that started further into a segment than its first known record still
        teaches the reader that segment)."""
        runs: dict[int, tuple[int, array]] = {}
        for lsn, base, offset in learnt:
            start, offsets = runs.setdefault(base, (lsn, array("q")))
            assert lsn == start + len(offsets), "a scan yields every record in order"
            offsets.append(offset)
        for base, (first, new) in runs.items():
            known = self.positions.get(base)
            self.positions[base] = (first, new) if known is None else _merged(known,
                                                                              (first, new))

    def forget_segments_before(self, first_lsn: int) -> None:
        """Retention deleted the segments holding LSNs below ``first_lsn``."""
        for base in [b for b in self.positions if b < first_lsn]:
            start, offsets = self.positions[base]
            if start + len(offsets) <= first_lsn:
                del self.positions[base]


def _merged(a: tuple[int, array], b: tuple[int, array]) -> tuple[int, array]:
    """Two runs of (first LSN, offsets) of one segment as one run when they overlap or
    touch (offsets of a shared LSN are the same), else the longer one."""
    (a0, a_off), (b0, b_off) = a, b
    a1, b1 = a0 + len(a_off), b0 + len(b_off)
    if b0 > a1 or a0 > b1:
        return a if len(a_off) >= len(b_off) else b
    lo, hi = min(a0, b0), max(a1, b1)
    merged = array("q", [0]) * (hi - lo)
    merged[a0 - lo:a1 - lo] = a_off
    merged[b0 - lo:b1 - lo] = b_off
    return lo, merged


def read_missing(wal_dir: Path, lsns: list[int], known: dict[int, tuple[int, int]],
                 upto_lsn: int, record_size_max_bytes: int
                 ) -> tuple[dict[int, RowsCommitted], list[tuple[int, int, int]]]:
    """Worker thread: decodes the records at ``lsns`` (sorted, distinct). ``known`` maps
    some of them to (segment base, offset). Returns the records and the positions learnt.
    Raises ``WalCorruptionError`` / ``EventDecodeError`` for damage (never skipped)."""
    out: dict[int, RowsCommitted] = {}
    unknown = []
    for lsn in lsns:
        position = known.get(lsn)
        if position is None:
            unknown.append(lsn)
            continue
        frame = read_frame_at(wal_dir, position[0], position[1],
                              record_size_max_bytes=record_size_max_bytes)
        out[lsn] = _rows(frame.payload, lsn)
    learnt: list[tuple[int, int, int]] = []
    if unknown:
        wanted, last = set(unknown), unknown[-1]
        last_segment = None
        for frame in iter_frames(wal_dir, unknown[0], upto_lsn=upto_lsn,
                                 record_size_max_bytes=record_size_max_bytes):
            if last_segment is not None and frame.segment_base_lsn != last_segment:
                break
            learnt.append((frame.lsn, frame.segment_base_lsn, frame.offset))
            if frame.lsn in wanted:
                out[frame.lsn] = _rows(frame.payload, frame.lsn)
            if frame.lsn == last:
                # The whole segment was read anyway: learn the rest of its positions, so
                # the next reads of it are single-frame reads.
                last_segment = frame.segment_base_lsn
    missing = [lsn for lsn in lsns if lsn not in out]
    if missing:
        raise EventDecodeError(f"topic index points at LSN {missing[0]}, which is no longer "
                               f"in the WAL (released by retention?)")
    return out, learnt


def _rows(payload: bytes, lsn: int) -> RowsCommitted:
    event = decode(payload)
    if not isinstance(event, RowsCommitted):
        raise EventDecodeError(f"topic index points at LSN {lsn}, which is not a row commit")
    return event
