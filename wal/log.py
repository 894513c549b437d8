"""The ``Wal`` facade: open (with recovery), append, read, wait, retention, close."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

import trio

from ._io import FileIO
from .config import WalConfig
from .errors import RecordTooLargeError, WalClosedError, WalIOError, WalLockedError
from .format import SEGMENT_HEADER_SIZE
from .group_commit import GroupCommitWriter, _Pending
from .recovery import RecoveryReport, recover
from .scan import Frame, iter_frames
from .segment import ActiveSegment, create_segment, delete_segment, list_segments

Lsn = NewType("Lsn", int)


@dataclass(frozen=True, slots=True)
class WalStatistics:
    first_lsn: int
    committed_lsn: int
    segments: int
    records_appended: int
    batches: int
    syncs: int
    bytes_written: int
    segments_rolled: int
    poisoned: bool


class PendingAppend:
    """A record queued by ``Wal.enqueue``, not yet known to be acknowledged.

    Records are acknowledged in the order they were queued: once ``done`` is true for one,
    it is true for every record queued before it, and if any of those failed, this one
    failed too (a failure poisons the log). Task safety: trio thread of the owning run.
    """

    __slots__ = ("_pending",)

    def __init__(self, pending: _Pending) -> None:
        self._pending = pending

    @property
    def done(self) -> bool:
        """True once the record is acknowledged or has failed (never un-done)."""
        return self._pending.done.is_set()

    @property
    def lsn(self) -> Lsn:
        """The record's LSN; only meaningful once ``done`` and ``error`` is None."""
        assert self._pending.done.is_set()
        return Lsn(self._pending.first_lsn)

    @property
    def error(self) -> BaseException | None:
        """The ``WalError`` the record failed with once ``done``; None while pending or on
        success."""
        return self._pending.error if self._pending.done.is_set() else None

    async def wait(self) -> Lsn:
        """Waits until the record is acknowledged; returns its LSN or raises its
        ``WalIOError``/``WalPoisonedError``. Cancellable: the record's fate does not depend
        on anyone waiting."""
        return Lsn(await GroupCommitWriter.wait(self._pending))


class Wal:
    """An open write-ahead log. Obtain one from ``open_wal``; it is closed when that context
    exits. Task safety: any number of trio tasks of the owning run may append, read and wait
    concurrently."""

    def __init__(self, directory: Path, config: WalConfig, io: FileIO,
                 writer: GroupCommitWriter, report: RecoveryReport) -> None:
        self.directory = directory
        self.config = config
        self.recovery_report = report
        self._io = io
        self._writer = writer
        self._closed = False

    async def append(self, payload: bytes) -> Lsn:
        """Appends one record; returns its LSN once acknowledged.

        Under ``fsync=always`` that means durable. Raises ``RecordTooLargeError`` (nothing
        queued), ``WalPoisonedError``/``WalIOError`` after an I/O failure, ``WalClosedError``.
        Cancellation: if cancelled after the record was queued, the record may still become
        durable; callers that must know use an idempotency key in the payload.
        """
        return Lsn(await self._writer.submit((self._checked(payload),), len(payload)))

    async def enqueue(self, payload: bytes, *, compress: bool = True) -> PendingAppend:
        """Queues one record and returns without waiting for it to be acknowledged.

        Pipelining: a caller may queue under its own lock (fixing the record's place in the
        log) and wait after releasing it, so the next caller's record joins the same group
        commit. The record's LSN follows every record queued before it. Raises like
        ``append`` for what is known at queue time (``RecordTooLargeError``,
        ``WalPoisonedError``, ``WalClosedError``); the outcome comes from ``wait``.
        Cancellation: raises before the record is queued, or returns the queued record.
        ``compress=False`` stores the record raw, skipping the zstd attempt (for payloads
        the caller knows compress too little to pay for the CPU); readers see no difference.
        """
        return PendingAppend(await self._writer.enqueue(
            (self._checked(payload),), len(payload), compress=compress))

    async def append_batch(self, payloads: Sequence[bytes]) -> list[Lsn]:
        """Appends many records with consecutive LSNs in one group commit; returns the LSNs.

        All are acknowledged together. After a crash a *prefix* of the batch may survive:
        all-or-nothing across records is the engine's job (a commit record at the end).
        """
        if not payloads:
            raise ValueError("append_batch needs at least one payload")
        checked = [self._checked(payload) for payload in payloads]
        first = await self._writer.submit(checked, sum(map(len, checked)))
        return [Lsn(first + i) for i in range(len(checked))]

    def _checked(self, payload: bytes) -> bytes:
        if self._closed:
            raise WalClosedError("the WAL is closed")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"a WAL payload must be bytes, not {type(payload).__name__}")
        if len(payload) > self.config.record_size_max_bytes:
            raise RecordTooLargeError(len(payload), self.config.record_size_max_bytes)
        return bytes(payload)

    @property
    def committed_lsn(self) -> Lsn:
        """The highest acknowledged LSN (0 when the log is empty)."""
        return Lsn(self._writer.committed_lsn)

    @property
    def first_lsn(self) -> Lsn:
        """The oldest LSN still in the log (retention moves it forward)."""
        segments = list_segments(self.directory)
        return Lsn(segments[0].base_lsn if segments else 1)

    def segment_sizes(self) -> list[tuple[int, int]]:
        """``(base LSN, bytes on disk)`` of every segment, oldest first; the last one is the
        active segment. Segments are preallocated, so a size is what the file holds on the
        disk, not the bytes of its records. Stats files in the calling thread."""
        return [(seg.base_lsn, seg.path.stat().st_size)
                for seg in list_segments(self.directory)]

    @property
    def poisoned(self) -> BaseException | None:
        """The I/O error that poisoned the WAL, or None while healthy."""
        return None if self._writer.poisoned is None else self._writer.poisoned.__cause__

    def read_from(self, lsn: int) -> Iterator[Frame]:
        """Synchronous iterator of acknowledged records with LSN >= ``lsn``, in order.

        Bounded by the acknowledged LSN at the time of the call. Does file reads in the
        calling thread: from trio, wrap bulk reads in ``trio.to_thread.run_sync``.
        """
        return iter_frames(self.directory, lsn, upto_lsn=self.committed_lsn,
                           record_size_max_bytes=self.config.record_size_max_bytes)

    async def wait_for_commit_after(self, lsn: int) -> Lsn:
        """Waits until an LSN greater than ``lsn`` is acknowledged; returns the newest.

        Woken by the commit path (no polling). Cancellable at any time.
        """
        return Lsn(await self._writer.wait_for_commit_after(lsn))

    async def truncate_before(self, lsn: int) -> int:
        """Deletes whole segments whose records all have LSN < ``lsn``; returns how many.

        The active segment is never deleted. Readers must not be iterating the deleted range.
        """
        active_base = self._writer.active_segment_base_lsn
        segments = list_segments(self.directory)
        doomed = [seg for seg, nxt in itertools.pairwise(segments)
                  if nxt.base_lsn <= lsn and seg.base_lsn < active_base]
        for segment in doomed:
            try:
                await trio.to_thread.run_sync(delete_segment, self._io, segment)
            except OSError as exc:
                raise WalIOError(f"retention could not delete {segment.path}: {exc}") from exc
        return len(doomed)

    def statistics(self) -> WalStatistics:
        stats = self._writer.statistics
        return WalStatistics(
            first_lsn=self.first_lsn, committed_lsn=self.committed_lsn,
            segments=len(list_segments(self.directory)), records_appended=stats.records,
            batches=stats.batches, syncs=stats.syncs, bytes_written=stats.bytes_written,
            segments_rolled=stats.segments_rolled, poisoned=self._writer.poisoned is not None)

    def _close_input(self) -> None:
        self._closed = True
        self._writer.close_input()


@asynccontextmanager
async def open_wal(directory: Path | str, config: WalConfig | None = None, *,
                   io: FileIO | None = None) -> AsyncIterator[Wal]:
    """Opens (creating if needed) and recovers the log in ``directory``; yields a ``Wal``.

    Recovery runs first (see ``wal.recovery``): a torn tail is cut and kept aside, anything
    worse raises ``WalCorruptionError`` and nothing is served. The group-commit writer runs
    in a nursery owned by this context; on exit, queued appends are finished, the active
    segment is synced and closed. ``io`` substitutes the file-I/O seam (tests).
    """
    directory = Path(directory)
    config = config or WalConfig()
    io = io or FileIO()
    lock_fd, writer, report = await trio.to_thread.run_sync(_open_sync, io, directory, config)
    wal = Wal(directory, config, io, writer, report)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            try:
                yield wal
            finally:
                wal._close_input()
    finally:
        io.close(lock_fd)


def _open_sync(io: FileIO, directory: Path, config: WalConfig
               ) -> tuple[int, GroupCommitWriter, RecoveryReport]:
    io.makedirs(directory)
    try:
        lock_fd = io.lock_directory(directory)
    except BlockingIOError as exc:
        raise WalLockedError(directory) from exc
    try:
        report = recover(io, directory, record_size_max_bytes=config.record_size_max_bytes)
        # A crashed process may have renamed a segment into place (or created this directory)
        # without the directory sync that makes the name durable: sync before anything new is
        # acknowledged in those files.
        io.fsync_dir(directory)
        if not report.scans:
            path = create_segment(io, directory, 1, config.segment_size_max_bytes)
            active = ActiveSegment(io, path, 1, SEGMENT_HEADER_SIZE,
                                   config.segment_size_max_bytes)
        else:
            last = report.scans[-1]
            active = ActiveSegment(io, last.path, last.base_lsn, last.end_offset,
                                   last.size_bytes)
            # Frames recovered from the page cache of a crashed process are made durable
            # before anything new vouches for them (new frames record durable_lsn >= them).
            try:
                active.sync()
            except BaseException:
                active.close()
                raise
    except BaseException:
        io.close(lock_fd)
        raise
    return lock_fd, GroupCommitWriter(io, directory, config, active, report.last_lsn), report
