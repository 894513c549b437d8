"""Background jobs: flush by policy, STREAM expiry, WAL retention, catalog checkpoints —
and the job records shown in ``system.jobs``.

All jobs are tasks of the engine's job nursery (no fire-and-forget). A job failure is
recorded on its job row and logged; it never takes the engine down (the next round retries),
except a storage failure, which the engine reports through ``healthy``.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .errors import EngineError
from .files import clear_staging, sweep_due, sweep_files
from .flush import flush_partition

if TYPE_CHECKING:
    from .engine import Engine
    from .partition import Partition

log = logging.getLogger("sluice.jobs")

# Finished job rows kept for system.jobs (a bounded history, oldest dropped first).
JOB_HISTORY_MAX = 1000
# STREAM partitions are rewritten (dropping expired rows) at most this often.
STREAM_EVICTION_INTERVAL_SECONDS = 60


@dataclass(slots=True)
class JobRecord:
    job_id: str
    job_type: str
    parameters: str
    status: str = "queued"  # queued | running | completed | failed | cancelled
    message: str | None = None
    created_at: int = 0
    started_at: int | None = None
    finished_at: int | None = None


@dataclass(slots=True)
class JobBoard:
    records: deque[JobRecord] = field(default_factory=lambda: deque(maxlen=JOB_HISTORY_MAX))
    running: dict[str, JobRecord] = field(default_factory=dict)  # key -> job (one per key)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new(self, job_type: str, parameters: str, now_ms: int) -> JobRecord:
        record = JobRecord(f"{job_type.lower()}-{next(self._ids)}", job_type, parameters,
                           created_at=now_ms)
        self.records.append(record)
        return record


async def run_jobs(engine: Engine, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                   ) -> None:
    """The job loop; runs until cancelled. Starts the job nursery and reports readiness."""
    await _start_files(engine)
    async with trio.open_nursery() as nursery:
        engine.job_nursery = nursery
        task_status.started()
        last_eviction = last_release = trio.current_time()
        while True:
            await trio.sleep(engine.config.jobs_interval_seconds)
            evict = trio.current_time() - last_eviction >= STREAM_EVICTION_INTERVAL_SECONDS
            if evict:
                last_eviction = trio.current_time()
            await _round(engine, evict_streams=evict)
            if trio.current_time() - last_release >= engine.config.file_release_interval_seconds:
                last_release = trio.current_time()
                await _release_files(engine)


async def _start_files(engine: Engine) -> None:
    """Before anything is served: staging leftovers and orphaned files of a killed process
    are removed (engine/files.py). A failure is logged; the next release round retries."""
    try:
        await clear_staging(engine)
        if engine.healthy:
            await sweep_files(engine)
    except (EngineError, OSError) as exc:
        log.warning("start-up file sweep failed: %s", exc)


async def _release_files(engine: Engine) -> None:
    """Deletes files no held row version references: only once files were ever stored, and
    only when rows, placements or chunks changed since the last sweep."""
    if engine.healthy and sweep_due(engine) and await trio.Path(engine.files.root).is_dir():
        await run_job(engine, "FileRelease", "files", lambda: sweep_files(engine))


async def _round(engine: Engine, *, evict_streams: bool) -> None:
    if not engine.healthy:
        return
    for part in list(engine.store.partitions.values()):
        if _flush_due(engine, part, evict_streams):
            await run_job(engine, "Flush", part.table_def.qualified_name,
                          lambda p=part: flush_partition(engine, p))
    try:
        await retain(engine)
    except (EngineError, OSError) as exc:  # e.g. a full disk: the next round retries
        log.warning("WAL retention failed: %s", exc)


def _flush_due(engine: Engine, part: Partition, evict_streams: bool) -> bool:
    hot_rows = part.hot_rows()
    if part.table_def.table_type == "STREAM":
        return evict_streams and (hot_rows > 0 or part.needs_rewrite or bool(part.chunks))
    if hot_rows == 0:
        return False
    options = part.table_def.options
    rows_limit = options.flush_rows or engine.config.flush_rows_default
    interval_s = options.flush_interval_seconds or engine.config.flush_interval_seconds_default
    age_s = (engine.clock.now_ms() - part.hot_since_ms) / 1000 if part.hot_since_ms else 0
    return (hot_rows >= min(rows_limit, engine.config.hot_rows_per_partition_max)
            or age_s >= interval_s)


async def run_job(engine: Engine, job_type: str, parameters: str,
                  work: Callable[[], Awaitable[int]]) -> JobRecord:
    """Runs ``work`` as a recorded job and returns its record (completed or failed)."""
    record = engine.jobs.new(job_type, parameters, engine.clock.now_ms())
    await _execute(engine, record, work)
    return record


def start_job(engine: Engine, job_type: str, parameters: str,
              work: Callable[[], Awaitable[int]]) -> JobRecord:
    """Queues ``work`` in the job nursery; returns the queued record at once. A record
    marked ``cancelled`` before the job task starts is skipped (KILL JOB)."""
    record = engine.jobs.new(job_type, parameters, engine.clock.now_ms())
    engine.job_nursery.start_soon(_execute, engine, record, work)
    return record


async def _execute(engine: Engine, record: JobRecord, work: Callable[[], Awaitable[int]]
                   ) -> None:
    """Runs one job, recording its outcome; a failure is logged, never raised."""
    if record.status == "cancelled":  # KILL JOB / DROP TABLE before it started
        return
    record.status, record.started_at = "running", engine.clock.now_ms()
    try:
        rows = await work()
    except (EngineError, OSError) as exc:
        record.status, record.message = "failed", str(exc)
        log.warning("job %s (%s) failed: %s", record.job_id, record.parameters, exc)
    else:
        record.status, record.message = "completed", f"{rows} row(s)"
    record.finished_at = engine.clock.now_ms()


async def retain(engine: Engine) -> int:
    """Checkpoints the catalog, then releases the WAL segments no projection needs (nor a
    topic: engine/topics/retention.py); returns how many segments were deleted."""
    await engine.topics.persist_indexes()
    async with engine.write_lock:
        await engine.settle()  # queued row commits' chunks carry their LSNs once published
        bound = int(engine.wal.committed_lsn)
        for part in engine.store.partitions.values():
            hot = [c.first_lsn for c in part.chunks.values() if not c.cold]
            if hot:
                bound = min(bound, min(hot) - 1)
        bound = await engine.topics.retain(bound)  # may append TOPIC_TRIMMED events
        covered = int(engine.wal.committed_lsn)
        if bound + 1 <= engine.wal.first_lsn:
            return 0
        snapshot = engine.catalog_snapshot(covered)
    if covered > engine.checkpointed_catalog_lsn:
        await trio.to_thread.run_sync(engine.write_catalog_checkpoint, snapshot)
    return await engine.wal.truncate_before(bound + 1)
