"""The Engine facade: lifecycle (open → replay → serve → close), the commit paths, and the
entry point for SQL.

Every write is one WAL event appended under ``write_lock`` and applied to the projections
only once the WAL acknowledged it (see ``Partition`` for how row changes stay tentative
until then). Holding the lock across the append keeps the projections in log order; the
WAL's group commit still batches the appends of other writers (topics, acks) behind it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import trio

from wal import FileIO, Wal, WalError, open_wal

from .catalog import Catalog, TableDef
from .clock import Clock, SystemClock
from .config import EngineConfig
from .errors import InvalidOperation, StorageUnavailable
from .events import CatalogEvent, RowChange, RowsCommitted, encode
from .flush import partition_dir
from .ids import SEQ_EPOCH_MS, UNIX_EPOCH_MS, Snowflake
from .jobs import JobBoard
from .partition import Partition
from .replay import ProgressFn, ReplayReport, replay_wal
from .segments import SegmentCache
from .session import Session
from .store import TableStore

CATALOG_CHECKPOINT = "catalog.json"


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
        self.job_nursery: trio.Nursery | None = None
        self.checkpointed_catalog_lsn = 0
        self._wal: Wal | None = None

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
        self.catalog.apply(event, lsn)
        return lsn

    async def commit_rows(self, txn: Transaction, actor: str) -> int | None:
        """Makes ``txn`` one durable event and publishes it; returns its LSN (None if the
        transaction wrote nothing). Caller holds ``write_lock``. On failure every change is
        undone and ``StorageUnavailable`` raised."""
        assert self.write_lock.locked()
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
            lsn = await self._append(payload)
        except BaseException:
            self.abort_rows(txn)
            raise
        now = self.clock.now_ms()
        for part in txn.partitions:
            part.commit(lsn)
            if not part.hot_since_ms:
                part.hot_since_ms = now
        txn.changes.clear()
        txn.partitions.clear()
        return lsn

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
                raise StorageUnavailable(f"The write-ahead log cannot accept writes: {exc}") \
                    from exc

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
        # Retention only releases WAL segments every projection has checkpointed, so the
        # oldest record still in the log is a safe start for all of them; each projection
        # skips what its own watermark already covers.
        self.replay_report = replay_wal(
            self.wal_dir, self.catalog, self.store, from_lsn=self.wal.first_lsn,
            record_size_max_bytes=self.config.wal.record_size_max_bytes, progress=progress)
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
        hashes)."""
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
            snapshot = engine.catalog_snapshot(int(wal.committed_lsn))
            await trio.to_thread.run_sync(engine.write_catalog_checkpoint, snapshot)
        engine._wal = None
