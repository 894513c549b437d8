"""Group commit: the single writer task that owns the active segment.

Appenders put a ``_Pending`` on a bounded memory channel and wait on its event. The writer
takes what is queued (up to ``batch_records_max`` / ``batch_bytes_max``), assigns LSNs,
encodes the frames, writes them with one call and syncs once (per the fsync policy), then
wakes every waiter. The encode/write/sync step runs in one worker thread call, so the event
loop stays free while the disk works and the next batch queues up behind it.

A failed write or sync poisons the writer: the batch's waiters get ``WalIOError``, every later
append gets ``WalPoisonedError``, and nothing is written or synced again (an fsync is never
retried on the same file).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio
import zstandard

from . import failpoints
from ._io import FileIO
from .config import WalConfig
from .disk_thread import DiskThread, open_disk_thread
from .errors import WalClosedError, WalIOError, WalPoisonedError
from .format import FRAME_CODEC_OFFSET, SEGMENT_HEADER_SIZE, Codec, encode_frame
from .segment import SPARE_NAME, ActiveSegment, activate_spare, create_segment, prepare_spare

# Adaptive compression: give up trying after this many large records in a row that zstd
# could not shrink, then retry one in this many (data may become compressible again).
_COMPRESS_MISSES_MAX = 8
_COMPRESS_RETRY_EVERY = 64


class _Pending:
    """One append call waiting for its records to be written (and synced)."""

    __slots__ = ("compress", "done", "error", "first_lsn", "payloads", "size_bytes")

    def __init__(self, payloads: Sequence[bytes], size_bytes: int, compress: bool = True
                 ) -> None:
        self.payloads = payloads
        self.size_bytes = size_bytes
        self.compress = compress  # False: the appender knows zstd does not pay for these
        self.first_lsn = 0
        self.error: BaseException | None = None
        self.done = trio.Event()


@dataclass(slots=True)
class WriterStatistics:
    records: int = 0
    batches: int = 0
    syncs: int = 0
    bytes_written: int = 0
    segments_rolled: int = 0


class _SingleWriterGuard:
    """Raises if two batch writes ever overlap (a bug, not a condition to wait out)."""

    __slots__ = ("_busy",)

    def __init__(self) -> None:
        self._busy = False

    def __enter__(self) -> None:
        if self._busy:
            raise RuntimeError("two WAL batch writes overlapped; the writer must be single")
        self._busy = True

    def __exit__(self, *exc_info: object) -> None:
        self._busy = False


class GroupCommitWriter:
    """Owns the active segment and the LSN counter. Create through ``open_wal``.

    Task safety: ``submit`` may be called from any number of trio tasks of the same run;
    ``run`` must be started exactly once (by ``open_wal``'s nursery).
    """

    def __init__(self, io: FileIO, directory: Path, config: WalConfig,
                 active: ActiveSegment, last_lsn: int) -> None:
        self._io = io
        self._directory = directory
        self._config = config
        self._active = active
        self._next_lsn = last_lsn + 1
        self._durable_lsn = last_lsn  # open_wal syncs the recovered segment first
        self.committed_lsn = last_lsn  # highest acknowledged LSN
        self.poisoned: WalPoisonedError | None = None
        self.statistics = WriterStatistics()
        self._send, self._receive = trio.open_memory_channel[_Pending](config.append_queue_max)
        self._progress = trio.Event()
        self._guard = _SingleWriterGuard()
        self._compressor = zstandard.ZstdCompressor(level=config.zstd_level)
        self._sync_deadline = math.inf
        # A zero-filled spare segment prepared ahead of the roll by ``_keep_spare_ready``,
        # so the writer only writes a header and renames when the active segment fills.
        self._spare: Path | None = None
        self._spare_lock = threading.Lock()
        self._spare_wanted = trio.Event()
        self._disk: DiskThread | None = None  # set by run(); the batch steps run there
        self._compress_misses = 0

    # ---- appender side -------------------------------------------------------------------

    async def submit(self, payloads: Sequence[bytes], size_bytes: int) -> int:
        """Queues records and waits until they are acknowledged; returns the first LSN."""
        return await self.wait(await self.enqueue(payloads, size_bytes))

    async def enqueue(self, payloads: Sequence[bytes], size_bytes: int, *,
                      compress: bool = True) -> _Pending:
        """Queues records without waiting for them; ``wait`` on the result for the outcome.

        Records get LSNs in queue order, and batches complete in LSN order: when one
        ``_Pending`` is done, every one queued before it is done too (and failed if it
        failed: a failure poisons the writer, so everything queued after fails as well).
        Cancellation before the record is queued raises and queues nothing. ``compress=False``
        stores the records raw (no zstd attempt), whatever their size.
        """
        if self.poisoned is not None:
            raise WalPoisonedError("the WAL is poisoned by an earlier I/O error") from (
                self.poisoned.__cause__)
        pending = _Pending(payloads, size_bytes, compress)
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            # Queue without yielding when there is room: a yield here costs a reschedule per
            # append and keeps the event loop busy while the writer thread needs the GIL.
            try:
                self._send.send_nowait(pending)
            except trio.WouldBlock:
                await self._send.send(pending)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise WalClosedError("the WAL is closed") from None
        return pending

    @staticmethod
    async def wait(pending: _Pending) -> int:
        """Waits for a queued ``pending``; returns its first LSN or raises its error."""
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.first_lsn

    async def wait_for_commit_after(self, lsn: int) -> int:
        """Waits until some LSN greater than ``lsn`` is acknowledged; returns the newest."""
        while self.committed_lsn <= lsn:
            if self.poisoned is not None:
                raise WalPoisonedError("the WAL is poisoned") from self.poisoned.__cause__
            await self._progress.wait()
        return self.committed_lsn

    def close_input(self) -> None:
        """No more appends; ``run`` finishes what is queued, syncs and returns."""
        self._send.close()

    # ---- writer task ---------------------------------------------------------------------

    async def run(self) -> None:
        """The writer loop. Returns after ``close_input`` once the queue is drained.

        On cancellation the batch being written finishes first (the disk thread's steps are
        not abandoned), then the task exits without the final sync.
        """
        async with open_disk_thread("sluice-wal-writer") as disk:
            self._disk = disk
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_spare_ready)
                async with self._receive:
                    await self._writer_loop()
                nursery.cancel_scope.cancel()
            await disk.run(self._close_sync)

    async def _writer_loop(self) -> None:
        while True:
            with trio.move_on_at(self._sync_deadline) as timer:
                try:
                    first = await self._receive.receive()
                except trio.EndOfChannel:
                    return
            if timer.cancelled_caught:
                await self._interval_sync()
                continue
            await self._commit(self._drain_batch(first))
            if self._active.end_offset * 2 > self._active.size_bytes:
                self._spare_wanted.set()

    async def _keep_spare_ready(self) -> None:
        """Prepares the next segment's file in the background once the active one is half
        full. A failure here is not fatal: the roll then creates the segment itself."""
        while True:
            await self._spare_wanted.wait()
            self._spare_wanted = trio.Event()
            with self._spare_lock:
                if self._spare is not None or self.poisoned is not None:
                    continue
            spare_path = self._directory / SPARE_NAME
            try:
                await trio.to_thread.run_sync(
                    prepare_spare, self._io, spare_path, self._config.segment_size_max_bytes)
            except OSError:
                continue
            with self._spare_lock:
                self._spare = spare_path

    def _drain_batch(self, first: _Pending) -> list[_Pending]:
        batch, records, size = [first], len(first.payloads), first.size_bytes
        while records < self._config.batch_records_max and size < self._config.batch_bytes_max:
            try:
                pending = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(pending)
            records += len(pending.payloads)
            size += pending.size_bytes
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        if self.poisoned is None:
            try:
                await self._disk.run(self._write_batch_sync, batch)
            except OSError as exc:
                self._poison(exc, batch)
            else:
                self.committed_lsn = self._next_lsn - 1
                if not self._config.fsync.acks_after_sync and math.isinf(self._sync_deadline):
                    self._arm_sync_timer()
        for pending in batch:
            if self.poisoned is not None and pending.error is None:
                pending.error = WalPoisonedError("the WAL is poisoned by an earlier I/O error")
                pending.error.__cause__ = self.poisoned.__cause__
            pending.done.set()
        self._signal_progress()

    def _poison(self, exc: OSError, batch: list[_Pending]) -> None:
        self.poisoned = WalPoisonedError(f"WAL poisoned by an I/O error: {exc}")
        self.poisoned.__cause__ = exc
        for pending in batch:
            error = WalIOError(f"records not durable: {exc}")
            error.__cause__ = exc
            pending.error = error

    def _arm_sync_timer(self) -> None:
        if self._config.fsync.kind == "interval":
            self._sync_deadline = trio.current_time() + self._config.fsync.interval_ms / 1000

    async def _interval_sync(self) -> None:
        self._sync_deadline = math.inf
        if self.poisoned is not None or self._durable_lsn == self._next_lsn - 1:
            return
        try:
            await self._disk.run(self._sync_active_sync)
        except OSError as exc:
            self._poison(exc, [])
            self._signal_progress()

    def _signal_progress(self) -> None:
        event, self._progress = self._progress, trio.Event()
        event.set()

    # ---- worker-thread side (never touches trio objects) ---------------------------------

    def _write_batch_sync(self, batch: list[_Pending]) -> None:
        with self._guard:
            lsn, durable = self._next_lsn, self._durable_lsn
            buf = bytearray()
            for pending in batch:
                pending.first_lsn = lsn
                for payload in pending.payloads:
                    frame = self._encode(lsn, durable, payload, pending.compress)
                    if len(buf) + len(frame) > self._active.remaining_bytes:
                        self._write_and_roll(buf, lsn)
                        buf, durable = bytearray(), self._durable_lsn
                    buf += frame
                    lsn += 1
            failpoints.hit("wal.before_write")
            self._active.write(buf)
            failpoints.hit("wal.after_write_before_fsync")
            self._next_lsn = lsn
            self.statistics.records += lsn - batch[0].first_lsn
            self.statistics.batches += 1
            self.statistics.bytes_written += len(buf)
            if self._config.fsync.acks_after_sync:
                self._sync_active_sync()
                failpoints.hit("wal.after_fsync_before_ack")

    def _encode(self, lsn: int, durable: int, payload: bytes, compress: bool = True) -> bytes:
        """Encodes a frame, trying zstd only while it pays: after ``_COMPRESS_MISSES_MAX``
        large records in a row that did not shrink, only every ``_COMPRESS_RETRY_EVERY``-th
        large record is tried (about 10 µs saved per incompressible 4 KiB record)."""
        large = compress and len(payload) >= self._config.compress_min_bytes
        try_it = large and (self._compress_misses < _COMPRESS_MISSES_MAX
                            or lsn % _COMPRESS_RETRY_EVERY == 0)
        frame = encode_frame(lsn, durable, payload,
                             compressor=self._compressor if try_it else None,
                             compress_min_bytes=self._config.compress_min_bytes)
        if try_it:
            compressed = frame[FRAME_CODEC_OFFSET] == Codec.ZSTD
            self._compress_misses = 0 if compressed else self._compress_misses + 1
        return frame

    def _write_and_roll(self, buf: bytearray, next_base_lsn: int) -> None:
        """Finishes the active segment durably, then creates the next one.

        The old segment is synced before the new one exists, so recovery may trust that
        every frame in a segment that has a successor was durable.
        """
        if buf:
            self._active.write(buf)
            self.statistics.bytes_written += len(buf)
        self._active.sync()
        self.statistics.syncs += 1
        self._durable_lsn = next_base_lsn - 1
        self._active.close()
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            path = activate_spare(self._io, spare, next_base_lsn)
        else:
            path = create_segment(self._io, self._directory, next_base_lsn,
                                  self._config.segment_size_max_bytes)
        self._active = ActiveSegment(self._io, path, next_base_lsn, SEGMENT_HEADER_SIZE,
                                     self._config.segment_size_max_bytes)
        self.statistics.segments_rolled += 1

    def _sync_active_sync(self) -> None:
        target = self._next_lsn - 1
        self._active.sync()
        self.statistics.syncs += 1
        self._durable_lsn = target

    def _close_sync(self) -> None:
        try:
            if self.poisoned is None and self._durable_lsn < self._next_lsn - 1:
                self._sync_active_sync()
        finally:
            self._active.close()
            with self._spare_lock:
                self._spare = None
            spare = self._directory / SPARE_NAME  # prepared or half-prepared: not needed
            if spare.exists():
                self._io.unlink(spare)

    @property
    def active_segment_base_lsn(self) -> int:
        return self._active.base_lsn
