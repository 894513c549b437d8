"""Storage, flush, compaction and job handlers (PROTOCOL §3.12).

Storages are catalog objects (STORAGE_CREATED / ALTERED / DROPPED with the ``Storage``
fields). Sluice writes every table's files under its data directory whatever its storage
says (flush does not use storages yet); a storage is still validated and recorded so
clients that manage storages keep working. Choices:
- ``BUCKET`` and ``REGION`` are kept in ``config_json`` (``{"bucket": .., "region": ..}``)
  since ``system.storages`` has no columns for them; a filesystem storage needs a PATH, a
  remote one a PATH or a BUCKET.
- Credentials are never echoed: SHOW STORAGES and system.storages show ``***`` for
  everyone; messages never include them.
- ``local`` cannot be dropped nor have its directory changed; a storage used by a table or
  a user cannot be dropped.
- STORAGE CHECK probes filesystem storages (directory exists, readable, writable; EXTENDED
  also writes and removes a probe file) and reports remote ones as ``unchecked``.

Flush and compaction are asynchronous jobs (``start_job``): the reply carries the job id and
``system.jobs`` shows progress. At most one flush (or compaction) per table is queued or
running at a time. Both refuse STREAM tables (choice for compaction: stream partitions are
rewritten whole by the eviction job). KILL JOB cancels a job that has not started; a running
one always finishes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..catalog import LOCAL_STORAGE, Storage, TableDef
from ..errors import AlreadyExists, InvalidOperation, NotFound
from ..events import CatalogEvent, Kind
from ..flush import compact_partition, flush_partition
from ..jobs import start_job
from . import statements as s
from .context import Ctx
from .ddl_table import table_partitions
from .results import StatementResult, message_result, rows_result
from .system_tables import (
    BIGINT,
    STORAGES_COLUMNS,
    TEXT,
    TIMESTAMP,
    build_table,
    sorted_tables,
    storage_row,
)

if TYPE_CHECKING:
    from ..engine import Engine
    from ..partition import Partition

DEFAULT_SHARED_TEMPLATE = "{namespace}/{tableName}"
DEFAULT_USER_TEMPLATE = "{namespace}/{tableName}/{userId}"

MANIFEST_COLUMNS = [("namespace", TEXT), ("table", TEXT), ("user_id", TEXT),
                    ("file_name", TEXT), ("rows", BIGINT), ("min_seq", BIGINT),
                    ("max_seq", BIGINT), ("first_lsn", BIGINT), ("last_lsn", BIGINT),
                    ("size_bytes", BIGINT), ("checkpoint_lsn", BIGINT)]
CHECK_COLUMNS = [("storage_id", TEXT), ("storage_type", TEXT), ("status", TEXT),
                 ("base_directory", TEXT), ("message", TEXT), ("checked_at", TIMESTAMP)]


# ---- storages ------------------------------------------------------------------------------


def _config_json(base: str | None, bucket: str | None, region: str | None) -> str | None:
    config = json.loads(base) if base else {}
    if bucket is not None:
        config["bucket"] = bucket
    if region is not None:
        config["region"] = region
    return json.dumps(config, sort_keys=True) if config else None


def _check_location(storage: Storage) -> None:
    bucket = json.loads(storage.config_json or "{}").get("bucket")
    if storage.storage_type == "filesystem" and not storage.base_directory:
        raise InvalidOperation("A filesystem storage needs PATH (or BASE_DIRECTORY)")
    if storage.storage_type != "filesystem" and not (storage.base_directory or bucket):
        raise InvalidOperation(f"A {storage.storage_type} storage needs BUCKET or PATH")


async def create_storage(ctx: Ctx, stmt: s.CreateStorage) -> StatementResult:
    now = ctx.now_ms()
    storage = Storage(
        stmt.storage_id, stmt.storage_type, stmt.name or stmt.storage_id, stmt.description,
        stmt.base_directory, stmt.credentials, _config_json(stmt.config, stmt.bucket, stmt.region),
        stmt.shared_tables_template or DEFAULT_SHARED_TEMPLATE,
        stmt.user_tables_template or DEFAULT_USER_TEMPLATE, now, now)
    _check_location(storage)

    def build() -> CatalogEvent:
        if stmt.storage_id in ctx.engine.catalog.storages:
            raise AlreadyExists(f"Storage '{stmt.storage_id}' already exists")
        return CatalogEvent(Kind.STORAGE_CREATED, asdict(storage))

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id,
                          f"Storage '{stmt.storage_id}' created successfully")


def _existing_storage(ctx: Ctx, storage_id: str) -> Storage:
    storage = ctx.engine.catalog.storages.get(storage_id)
    if storage is None:
        raise NotFound(f"Storage '{storage_id}' does not exist")
    return storage


def _altered(old: Storage, stmt: s.AlterStorage, now_ms: int) -> Storage:
    if old.storage_id == LOCAL_STORAGE and stmt.base_directory is not None:
        raise InvalidOperation("The directory of storage 'local' is the data directory and "
                               "cannot be changed")
    base_config = stmt.config if stmt.config is not None else old.config_json
    changes = {key: value for key, value in (
        ("storage_name", stmt.name), ("description", stmt.description),
        ("base_directory", stmt.base_directory), ("credentials", stmt.credentials),
        ("shared_tables_template", stmt.shared_tables_template),
        ("user_tables_template", stmt.user_tables_template)) if value is not None}
    storage = replace(old, **changes, updated_at=now_ms,
                      config_json=_config_json(base_config, stmt.bucket, stmt.region))
    _check_location(storage)
    return storage


async def alter_storage(ctx: Ctx, stmt: s.AlterStorage) -> StatementResult:
    def build() -> CatalogEvent:
        storage = _altered(_existing_storage(ctx, stmt.storage_id), stmt, ctx.now_ms())
        return CatalogEvent(Kind.STORAGE_ALTERED, asdict(storage))

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id,
                          f"Storage '{stmt.storage_id}' altered successfully")


async def drop_storage(ctx: Ctx, stmt: s.DropStorage) -> StatementResult:
    if stmt.storage_id == LOCAL_STORAGE:
        raise InvalidOperation("Storage 'local' cannot be dropped")

    def build() -> CatalogEvent | None:
        catalog = ctx.engine.catalog
        if stmt.storage_id not in catalog.storages:
            if stmt.if_exists:
                return None
            raise NotFound(f"Storage '{stmt.storage_id}' does not exist")
        tables = [t.qualified_name for t in sorted_tables(ctx.engine)
                  if t.options.storage_id == stmt.storage_id]
        users = sorted(u.user_id for u in catalog.users.values()
                       if not u.is_deleted and u.storage_id == stmt.storage_id)
        if tables or users:
            used_by = ", ".join([f"table {t}" for t in tables] + [f"user {u}" for u in users])
            raise InvalidOperation(f"Storage '{stmt.storage_id}' is in use ({used_by}) and "
                                   "cannot be dropped")
        return CatalogEvent(Kind.STORAGE_DROPPED, {"storage_id": stmt.storage_id})

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id,
                              f"Storage '{stmt.storage_id}' does not exist (skipped)")
    return message_result(ctx.session.user_id,
                          f"Storage '{stmt.storage_id}' dropped successfully")


async def show_storages(ctx: Ctx, stmt: s.ShowStorages) -> StatementResult:
    storages = ctx.engine.catalog.storages
    table, types = build_table(STORAGES_COLUMNS,
                               [storage_row(storages[key]) for key in sorted(storages)])
    return rows_result(ctx.session.user_id, table, types)


def _probe_directory(directory: Path, extended: bool) -> tuple[str, str]:
    """Worker thread: (status, message) for a filesystem storage's directory."""
    if not directory.is_dir():
        return "error", f"Directory {directory} does not exist"
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        return "error", f"Directory {directory} is not readable and writable"
    if extended:
        try:
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".sluice-check-") as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as exc:
            return "error", f"Writing a probe file in {directory} failed: {exc.strerror}"
    return "ok", "Directory is readable and writable"


async def check_storage(ctx: Ctx, stmt: s.CheckStorage) -> StatementResult:
    """STORAGE CHECK id [EXTENDED]: one row with the outcome (relative paths are taken
    relative to the data directory)."""
    storage = _existing_storage(ctx, stmt.storage_id)
    if storage.storage_type == "filesystem":
        directory = ctx.engine.data_dir / (storage.base_directory or "")
        status, message = await trio.to_thread.run_sync(_probe_directory, directory,
                                                          stmt.extended)
    else:
        status = "unchecked"
        message = f"Sluice does not connect to {storage.storage_type} storages yet"
    table, types = build_table(CHECK_COLUMNS, [(storage.storage_id, storage.storage_type, status,
                                                storage.base_directory, message, ctx.now_ms())])
    return rows_result(ctx.session.user_id, table, types)


# ---- flush and compaction ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Maintenance:
    """One kind of table job: its name, wording, per-partition step and "work to do" test."""

    job_type: str
    noun: str  # "flush" | "compaction"
    statement: str  # for the STREAM refusal
    step: Callable[[Engine, Partition], Awaitable[int]]
    pending: Callable[[Partition], bool]
    idle_reason: str


def _needs_compaction(part: Partition) -> bool:
    segments = part.manifest.segments if part.manifest is not None else ()
    dead_cold = any(c.cold and c.dead for c in part.chunks.values())
    return part.hot_rows() > 0 or len(segments) > 1 or dead_cold


FLUSH = Maintenance("Flush", "flush", "STORAGE FLUSH TABLE", flush_partition,
                    lambda part: part.hot_rows() > 0, "no pending writes")
COMPACT = Maintenance("Compact", "compaction", "STORAGE COMPACT TABLE", compact_partition,
                      _needs_compaction, "nothing to compact")


def _active_job(engine: Engine, job_type: str, parameters: str) -> str | None:
    for record in engine.jobs.records:
        if (record.job_type == job_type and record.parameters == parameters
                and record.status in ("queued", "running")):
            return record.job_id
    return None


def _work(engine: Engine, table_id: int, kind: Maintenance) -> Callable[[], Awaitable[int]]:
    async def work() -> int:
        table = engine.catalog.tables.get(table_id)
        if table is None:  # dropped before the job ran
            return 0
        rows = 0
        for part in table_partitions(engine, table):
            rows += await kind.step(engine, part)
        return rows

    return work


def _start(engine: Engine, table: TableDef, kind: Maintenance) -> tuple[str, str | None]:
    """("started"|"active"|"idle", job id) for one table."""
    name = table.qualified_name
    active = _active_job(engine, kind.job_type, name)
    if active is not None:
        return "active", active
    if not any(kind.pending(part) for part in table_partitions(engine, table)):
        return "idle", None
    record = start_job(engine, kind.job_type, name, _work(engine, table.table_id, kind))
    return "started", record.job_id


async def _table_job(ctx: Ctx, stmt: s.FlushTable | s.CompactTable, kind: Maintenance
                     ) -> StatementResult:
    table = ctx.table(stmt.namespace, stmt.name)
    if table.table_type == "STREAM":
        raise InvalidOperation(f"{kind.statement} is not supported for STREAM tables")
    name = table.qualified_name
    outcome, job_id = _start(ctx.engine, table, kind)
    if outcome == "active":
        text = (f"Storage {kind.noun} skipped for table '{name}': a {kind.noun} is already "
                f"queued or running (Job ID: {job_id})")
    elif outcome == "idle":
        text = f"Storage {kind.noun} skipped: {kind.idle_reason} for table '{name}'"
    else:
        text = f"Storage {kind.noun} started for table '{name}'. Job ID: {job_id}"
    return message_result(ctx.session.user_id, text)


async def _all_job(ctx: Ctx, namespace: str | None, kind: Maintenance) -> StatementResult:
    where = ""
    if namespace is not None:
        namespace = namespace.lower()
        ctx.require_namespace(namespace)
        where = f" in namespace '{namespace}'"
    started = []
    for table in sorted_tables(ctx.engine, namespace):
        if table.table_type != "STREAM":
            outcome, job_id = _start(ctx.engine, table, kind)
            if outcome == "started":
                started.append(job_id)
    if not started:
        return message_result(ctx.session.user_id,
                              f"Storage {kind.noun} skipped: {kind.idle_reason}{where}")
    return message_result(ctx.session.user_id, f"Storage {kind.noun} started for "
                          f"{len(started)} table(s){where}. Job IDs: {', '.join(started)}")


async def flush_table(ctx: Ctx, stmt: s.FlushTable) -> StatementResult:
    return await _table_job(ctx, stmt, FLUSH)


async def flush_all(ctx: Ctx, stmt: s.FlushAll) -> StatementResult:
    return await _all_job(ctx, stmt.namespace, FLUSH)


async def compact_table(ctx: Ctx, stmt: s.CompactTable) -> StatementResult:
    return await _table_job(ctx, stmt, COMPACT)


async def compact_all(ctx: Ctx, stmt: s.CompactAll) -> StatementResult:
    return await _all_job(ctx, stmt.namespace, COMPACT)


# ---- manifest and jobs ---------------------------------------------------------------------


async def show_manifest(ctx: Ctx, stmt: s.ShowManifest) -> StatementResult:
    """One row per live segment of every partition (admin only, checked at classify time)."""
    rows = []
    for table in sorted_tables(ctx.engine):
        parts = sorted(table_partitions(ctx.engine, table), key=lambda p: p.user_id or "")
        for part in parts:
            if part.manifest is None:
                continue
            for entry in part.manifest.segments:
                rows.append((table.namespace, table.name, part.user_id, entry.file_name,
                             entry.rows, entry.min_seq, entry.max_seq, entry.first_lsn,
                             entry.last_lsn, entry.size_bytes, part.manifest.checkpoint_lsn))
    table, types = build_table(MANIFEST_COLUMNS, rows)
    return rows_result(ctx.session.user_id, table, types)


async def kill_job(ctx: Ctx, stmt: s.KillJob) -> StatementResult:
    """KILL JOB 'id': cancels a queued job; running and finished ones cannot be killed."""
    engine = ctx.engine
    record = next((r for r in engine.jobs.records if r.job_id == stmt.job_id), None)
    if record is None:
        raise NotFound(f"Job '{stmt.job_id}' not found")
    if record.status == "running":
        raise InvalidOperation(f"Job '{stmt.job_id}' is running and cannot be cancelled")
    if record.status != "queued":
        raise InvalidOperation(f"Job '{stmt.job_id}' has already finished ({record.status})")
    record.status, record.message = "cancelled", f"killed by {ctx.session.user_id}"
    record.finished_at = engine.clock.now_ms()
    return message_result(ctx.session.user_id, f"Job killed: {stmt.job_id}")
