"""The Engine facade: lifecycle (open → replay → serve → close), the commit paths, and the
entry point for SQL.

Every write is one WAL event queued under ``write_lock`` and made visible only once the WAL
acknowledged it. Catalog events hold the lock until then. Row transactions are *pipelined*
(``commit_rows``): under the lock the changes are applied tentatively, encoded, queued in the
WAL and sealed (``Partition.seal``); the lock may then be released while the event becomes
durable, so the next statements' events join the same group commit (one fdatasync).

The protocol that keeps this safe:

- queue order is log order: events are queued under the lock, and the WAL assigns LSNs in
  queue order and acknowledges them in that order;
- later writers see earlier staged changes (uniqueness checks, UPDATE/DELETE matching), so
  the staged state is exactly the log's order of events;
- readers see only published changes, and ``_settle`` publishes strictly in log order: the
  oldest queued transaction first, once its event is durable — whichever task notices
  first does it for everyone, before any later catalog event is applied;
- a failed append poisons the WAL, so it and everything queued after it can never become
  durable: ``_settle`` undoes all of them (newest first) and each statement raises
  ``StorageUnavailable``;
- code that needs a quiet engine (flush, compaction, retention, DDL) holds the lock and
  calls ``settle()``, which waits until nothing is queued.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import trio

from wal import FileIO, PendingAppend, Wal, WalError, open_wal

from .catalog import Catalog, TableDef
from .clock import Clock, SystemClock
from .config import EngineConfig
from .errors import InvalidOperation, StorageUnavailable
from .events import CatalogEvent, RowChange, RowsCommitted, encode
from .files import new_file_store
from .flush import partition_dir
from .ids import SEQ_EPOCH_MS, UNIX_EPOCH_MS, Snowflake
from .jobs import JobBoard
from .partition import Partition, _Staged
from .replay import ProgressFn, ReplayReport, replay_wal
from .segments import SegmentCache
from .session import Session
from .store import TableStore

log = logging.getLogger(__name__)
CATALOG_CHECKPOINT = "catalog.json"
# Row events (Arrow IPC) are stored raw: zstd level 3 took ~105 µs of the ~2 ms commit CPU
# for a 100-row event (16.8 KB → 10.4 KB), on the single hot path, to save ~6 KB of a
# sequential write the fsync costs the same for. Catalog events keep adaptive compression.
ROW_EVENTS_COMPRESSED = False


@dataclass(slots=True)
class Transaction:
    """Row changes gathered by one autocommit statement or one BEGIN…COMMIT block.

    The partitions it touched hold the changes tentatively; ``Engine.commit_rows`` makes
    them one WAL event and publishes them, or ``Engine.abort_rows`` undoes them.
    """

    changes: list[RowChange] = field(default_factory=list)
    partitions: list[Partition] = field(default_factory=list)
    explicit: bool = False  # opened by BEGIN

    def touch(self, part: Partition) -> None:
        if part not in self.partitions:
            part.begin()
            self.partitions.append(part)


@dataclass(slots=True, eq=False)
class _Queued:
    """A row transaction whose event is queued in the WAL and not yet published or undone."""

    event: RowsCommitted
    ticket: PendingAppend
    staged: list[tuple[Partition, _Staged]]
    published: bool = False
    undone: bool = False


class Engine:
    """Owns the WAL and every projection. Create with ``open_engine``.

    Task safety: all methods run on the trio thread of the run that opened the engine.
    """

    def __init__(self, data_dir: Path, config: EngineConfig, clock: Clock, io: FileIO) -> None:
        self.data_dir = data_dir
        self.config = config
        self.clock = clock
        self.io = io
        self.catalog = Catalog()
        self.store = TableStore()
        self.write_lock = trio.Lock()
        self.seq_ids = Snowflake(SEQ_EPOCH_MS, config.node_id, clock.now_ms)
        self.sql_ids = Snowflake(UNIX_EPOCH_MS, config.node_id, clock.now_ms)
        self.replay_report = ReplayReport()
        self.segment_cache = SegmentCache(config.segment_cache_max_bytes)
        self.store.loader_factory = self._segment_loader
        self.store.merge_chunks_max = config.hot_chunks_per_partition_max
        self.jobs = JobBoard()
        staging = Path(config.file_staging_dir) if config.file_staging_dir else None
        self.files = new_file_store(data_dir, staging, config.files_per_folder_max, io)
        from .topics.service import TopicService

        self.topics = TopicService(self)  # topic index, claims, consume/ack (engine/topics)
        from .live import LiveRegistry

        self.live = LiveRegistry(self)  # live-query subscriptions (engine/live)
        # Called with (event, lsn) for every published row commit, in log order, right
        # before its partitions publish it (their reader views still show the versions it
        # replaces). Synchronous and must not raise; one that does is logged and skipped so
        # that the commit still publishes (the queue of pipelined commits stays consistent).
        self.commit_listeners: list[Callable[[RowsCommitted, int], None]] = [
            self.live.on_commit, self.topics.on_commit]
        self.job_nursery: trio.Nursery | None = None
        self.checkpointed_catalog_lsn = 0
        self._checkpoint_lock = threading.Lock()  # write_catalog_checkpoint's threads
        self._wal: Wal | None = None
        self._wal_refusal_logged = False
        self._queued: deque[_Queued] = deque()  # pipelined row commits, in log order

    @property
    def wal(self) -> Wal:
        assert self._wal is not None, "the engine is not open"
        return self._wal

    @property
    def wal_dir(self) -> Path:
        return self.data_dir / "wal"

    # ---- SQL ---------------------------------------------------------------------------

    async def execute(self, session: Session, sql: str, params: list[Any] | None = None
                      ) -> list:
        """Runs a ``;``-separated batch; returns one ``StatementResult`` per reported result
        (PROTOCOL §1.3 batch semantics). Raises ``EngineError`` subclasses; on error nothing
        of the failing statement (or its open transaction) is applied."""
        from .sql.execute import execute_batch

        return await execute_batch(self, session, sql, params or [])

    # ---- commit paths --------------------------------------------------------------------

    async def commit_catalog(self, event: CatalogEvent) -> int:
        """Appends a catalog event and applies it. Caller holds ``write_lock``."""
        assert self.write_lock.locked()
        lsn = await self._append(encode(event))
        self._settle()  # every row commit queued before it is durable: publish them first
        self.catalog.apply(event, lsn)
        return lsn

    async def commit_catalog_events(self, events: Sequence[CatalogEvent]) -> list[int]:
        """``commit_catalog`` for several events in one group commit (one write, one fsync),
        applied in order; for events that are independent of each other (topic acks: after
        a crash any prefix may survive). Caller holds ``write_lock``."""
        assert self.write_lock.locked()
        assert events
        with trio.CancelScope(shield=True):  # as in _append: once queued, wait for it
            try:
                lsns = [int(x) for x in await self.wal.append_batch(
                    [encode(event) for event in events])]
            except WalError as exc:
                raise self._unavailable(exc) from exc
        self._settle()
        for event, lsn in zip(events, lsns, strict=True):
            self.catalog.apply(event, lsn)
        return lsns

    async def commit_rows(self, txn: Transaction, actor: str, *, unlock: bool = False
                          ) -> int | None:
        """Makes ``txn`` one durable event and publishes it; returns its LSN (None if the
        transaction wrote nothing). The single place row transactions are committed.

        Caller holds ``write_lock``. With ``unlock=True`` this releases it (whether it
        returns or raises) as soon as the event is queued, then waits for durability
        without it (pipelined: see the module docstring); the caller must not release it
        again. On failure every change of ``txn`` is undone and ``StorageUnavailable`` (or
        ``InvalidOperation`` for an oversized event) raised. Cancellation: before the event
        is queued it aborts ``txn``; after, the wait is shielded, because the event may
        still become durable and the projections must then show it.
        """
        assert self.write_lock.locked()
        try:
            queued = await self._queue_rows(txn, actor)
        finally:
            if unlock:
                self.write_lock.release()
        if queued is None:
            return None
        with trio.CancelScope(shield=True), contextlib.suppress(WalError):
            await queued.ticket.wait()
        self._settle()
        error = queued.ticket.error
        if error is not None:
            assert queued.undone
            raise self._unavailable(error) from error
        assert queued.published
        return int(queued.ticket.lsn)

    async def _queue_rows(self, txn: Transaction, actor: str) -> _Queued | None:
        """Under the lock: encodes ``txn``, queues its event and seals its partitions."""
        if not txn.changes:
            self.abort_rows(txn)
            return None
        event = RowsCommitted(self.clock.now_ms(), actor, tuple(txn.changes))
        try:
            payload = encode(event)
            if len(payload) > self.config.event_max_bytes:
                raise InvalidOperation(
                    f"The statement writes {len(payload)} bytes in one transaction; the limit "
                    f"is {self.config.event_max_bytes} bytes (event_max_bytes). Split it.")
            ticket = await self.wal.enqueue(payload, compress=ROW_EVENTS_COMPRESSED)
        except WalError as exc:
            self.abort_rows(txn)
            raise self._unavailable(exc) from exc
        except BaseException:
            self.abort_rows(txn)
            raise
        queued = _Queued(event, ticket, [(part, part.seal()) for part in txn.partitions])
        self._queued.append(queued)
        txn.changes.clear()
        txn.partitions.clear()
        return queued

    def _settle(self) -> None:
        """Publishes every queued row commit that is durable, oldest first; at the first
        failed one, undoes it and everything queued after it (all doomed: the WAL is
        poisoned). Synchronous, so readers never see a partial publication."""
        queued = self._queued
        while queued and queued[0].ticket.done:
            if queued[0].ticket.error is not None:
                doomed = list(queued)
                queued.clear()
                for entry in reversed(doomed):
                    for part, _ in reversed(entry.staged):
                        part.fail_staged()
                    entry.undone = True
                return
            self._publish(queued.popleft())

    def _publish(self, entry: _Queued) -> None:
        lsn, now = int(entry.ticket.lsn), self.clock.now_ms()
        for listener in self.commit_listeners:  # topics, live queries
            try:
                listener(entry.event, lsn)
            except Exception:  # a listener bug must not strand the pipelined commits
                log.exception("commit listener %r failed at LSN %d", listener, lsn)
        for part, staged in entry.staged:
            part.publish(staged, lsn)
            if not part.hot_since_ms:
                part.hot_since_ms = now
        entry.published = True

    async def settle(self) -> None:
        """Waits until no row commit is queued: each is published or undone. Call under
        ``write_lock`` (so nothing new is queued meanwhile) before relying on chunk LSNs or
        on the views being final (flush, compaction, retention, DDL). Cancellable."""
        assert self.write_lock.locked()
        while self._queued:
            with contextlib.suppress(WalError):
                await self._queued[-1].ticket.wait()
            self._settle()

    def abort_rows(self, txn: Transaction) -> None:
        for part in reversed(txn.partitions):
            part.rollback()
        txn.changes.clear()
        txn.partitions.clear()

    async def _append(self, payload: bytes) -> int:
        # Shielded: once queued, the record may become durable whatever happens to the
        # caller, and the projections must then reflect it — so wait for the outcome.
        with trio.CancelScope(shield=True):
            try:
                return int(await self.wal.append(payload))
            except WalError as exc:
                raise self._unavailable(exc) from exc

    def _unavailable(self, cause: BaseException) -> StorageUnavailable:
        """The error a write gets once the WAL refuses writes. The first one is logged: the
        WAL never retries, so the server stays unhealthy until restarted, and operators must
        see why without reading a client's error body."""
        # The I/O error that poisoned the log: the first writer to get here may hold only
        # "poisoned by an earlier I/O error".
        root = self._wal.poisoned if self._wal is not None else None
        if not self._wal_refusal_logged:
            self._wal_refusal_logged = True
            log.error("the write-ahead log refuses writes until the server is restarted: %s",
                      root or cause)
        detail = f"{cause} ({root})" if root is not None and root is not cause else cause
        return StorageUnavailable(f"The write-ahead log cannot accept writes: {detail}")

    @property
    def healthy(self) -> bool:
        return self._wal is not None and self._wal.poisoned is None

    def _segment_loader(self, table: TableDef, user_id: str | None
                        ) -> Callable[[str], pa.Table]:
        directory = partition_dir(self.data_dir, table, user_id)
        return lambda name: self.segment_cache.get(directory / name)[0]

    # ---- start-up and shutdown -----------------------------------------------------------

    def _load_and_replay(self, progress: ProgressFn | None = None) -> None:
        """Worker thread: checkpoint + manifests, then the WAL tail (see engine/replay.py)."""
        path = self.data_dir / "checkpoints" / CATALOG_CHECKPOINT
        if path.exists():
            self.catalog = Catalog.from_json(json.loads(path.read_text()))
            self.checkpointed_catalog_lsn = self.catalog.applied_lsn
        from .flush import load_cold_partitions

        load_cold_partitions(self)
        self.topics.load_indexes()  # topics: persisted offset indexes (engine/topics/)
        # Retention only releases WAL segments every projection has checkpointed, so the
        # oldest record still in the log is a safe start for all of them; each projection
        # skips what its own watermark already covers.
        self.replay_report = replay_wal(
            self.wal_dir, self.catalog, self.store, from_lsn=self.wal.first_lsn,
            record_size_max_bytes=self.config.wal.record_size_max_bytes, progress=progress,
            on_rows=self.topics.replayed)
        now = self.clock.now_ms()
        for part in self.store.partitions.values():
            self.seq_ids.advance_past(part.max_seq())
            if part.hot_rows():
                part.hot_since_ms = now

    def catalog_snapshot(self, covered_lsn: int) -> dict:
        """The catalog as of ``covered_lsn`` (call under ``write_lock``, with every event up
        to that LSN applied): replay may skip catalog events at or below it."""
        snapshot = self.catalog.to_json()
        snapshot["applied_lsn"] = covered_lsn
        return snapshot

    def write_catalog_checkpoint(self, snapshot: dict) -> None:
        """Worker thread: durably records a catalog snapshot (mode 0600: it holds password
        hashes). Thread-safe: writers are serialized (CLUSTER SNAPSHOT and the retention job
        share one temp file; issue 9 found them racing), and a snapshot older than the one
        on disk is skipped, so the checkpoint never moves backwards."""
        with self._checkpoint_lock:
            if int(snapshot["applied_lsn"]) < self.checkpointed_catalog_lsn:
                return
            directory = self.data_dir / "checkpoints"
            self.io.makedirs(directory)
            body = json.dumps(snapshot, sort_keys=True).encode()
            self.io.replace_atomically(directory / CATALOG_CHECKPOINT, body)
            os.chmod(directory / CATALOG_CHECKPOINT, 0o600)
            self.checkpointed_catalog_lsn = int(snapshot["applied_lsn"])


@contextlib.asynccontextmanager
async def open_engine(data_dir: Path | str, config: EngineConfig | None = None, *,
                      clock: Clock | None = None, io: FileIO | None = None,
                      progress: ProgressFn | None = None) -> AsyncIterator[Engine]:
    """Opens the data directory: WAL recovery, checkpoints, replay, first-start bootstrap;
    then runs background jobs until the context exits. On exit the jobs stop, a catalog
    checkpoint is written and the WAL is closed cleanly."""
    data_dir = Path(data_dir)
    config = config or EngineConfig()
    engine = Engine(data_dir, config, clock or SystemClock(), io or FileIO())
    await trio.to_thread.run_sync(engine.io.makedirs, data_dir)
    async with open_wal(engine.wal_dir, config.wal, io=engine.io) as wal:
        engine._wal = wal
        await trio.to_thread.run_sync(engine._load_and_replay, progress)
        from .bootstrap import bootstrap

        await bootstrap(engine)
        from .jobs import run_jobs

        async with trio.open_nursery() as nursery:
            await nursery.start(run_jobs, engine)
            try:
                yield engine
            finally:
                nursery.cancel_scope.cancel()
        if engine.healthy:
            await _save_derived_state(engine, int(wal.committed_lsn))
        engine._wal = None


async def _save_derived_state(engine: Engine, covered_lsn: int) -> None:
    """Shutdown's topic indexes and catalog checkpoint. Both are derived from the WAL (the
    next start rebuilds what is missing), so a disk error here is reported in one log line
    and the shutdown stays clean: nothing acknowledged depends on these files."""
    try:
        await engine.topics.persist_indexes(force=True)  # topics: no tail to replay
        snapshot = engine.catalog_snapshot(covered_lsn)
        await trio.to_thread.run_sync(engine.write_catalog_checkpoint, snapshot)
    except OSError as exc:
        log.error("could not save checkpoints at shutdown (the next start replays the log "
                  "instead): %s", exc)
