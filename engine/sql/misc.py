"""Miscellaneous statements (PROTOCOL §3.15, §1.5, §2.7, §7.3): SET / SHOW settings, CLUSTER,
BACKUP / RESTORE DATABASE, EXPORT USER DATA and SHOW EXPORT.

Role checks ran at classify time (``plan.PREFLIGHT``): SET, SHOW <name>, SHOW ALL, CLUSTER,
BACKUP and RESTORE are admin only; EXPORT USER DATA and SHOW EXPORT are open to every role and
always act on the effective user's own data (``ctx.session``). Blocking file work runs in
``trio.to_thread.run_sync``. Choices where the spec is silent:

Settings
- Settings are not kept across HTTP requests (neither are they in the reference, whose
  DataFusion session lives for one request). The one setting that affects a batch is its
  namespace: ``SET NAMESPACE app`` / ``SET namespace = app`` is classified as ``USE app``
  (``parse_admin``) and switches the rest of the batch. Every other ``SET <name>`` reaching
  ``set_variable`` is InvalidOperation naming that one supported form.
- ``SHOW <name>`` / ``SHOW ALL`` return rows ``(name, value)`` (both Text) of the effective
  settings: the session's ``namespace`` and the engine limits listed in ``SHOWN_LIMITS`` —
  an allow-list, so a secret added to ``EngineConfig`` later (like ``root_password``) is
  never shown. Names are case-insensitive; an unknown name is InvalidOperation listing the
  known ones.

CLUSTER (§7.3, decisions table: Sluice is a single node that is its own healthy leader)
- ``CLUSTER SNAPSHOT`` writes a catalog checkpoint (the node's only snapshot-able state
  outside segment files) under the write lock and replies with the LSN it covers. It is
  refused inside an explicit transaction, whose batch already holds the write lock.
- Every other action (PURGE, TRIGGER ELECTION, TRANSFER LEADER, STEPDOWN, CLEAR, JOIN,
  REBALANCE) is InvalidOperation "Sluice runs as a single node; CLUSTER <action> does not
  apply". LIST/STATUS never get here (refused as CLI-only by the parser).

BACKUP / RESTORE DATABASE
- SQL must never reach arbitrary host paths: the path is a *file name* inside
  ``<data_dir>/backups/`` (letters, digits, ``.``, ``_``, ``-``; not starting with ``.``; at
  most 128 characters). Absolute paths, ``..`` and separators are InvalidOperation.
- A backup is one Arrow IPC file, written atomically (``replace_atomically``; an existing
  backup of the same name is replaced). Its schema metadata ``sluice.backup`` holds JSON:
  format version, namespace, description and every table definition (catalog JSON). Each
  record is one table partition: ``table`` name, ``user_id`` (null for SHARED) and ``rows``,
  an Arrow IPC stream of that partition's latest live versions in storage layout (tombstones
  and expired STREAM rows are left out, ``_seq`` kept). The file is built in memory, so a
  backup is bounded by RAM (fine for the sizes Sluice targets today).
- RESTORE recreates the namespace, which must not exist (and may not be ``system``), under
  the name in the statement (it may differ from the backed-up one), with the same table
  definitions (new table ids) and re-inserts the rows through the normal commit path: one
  transaction per table partition (split only when one would exceed ``event_max_bytes``),
  so everything is in the WAL and replays. User partitions are preserved; ``_seq`` values
  are preserved (STREAM expiry keeps counting from the original write) and the ``_seq``
  generator is advanced past them. The whole restore holds the write lock, so no other
  writer sees or touches a half-restored namespace; if it fails midway (e.g. the WAL fails)
  what was committed stays and ``DROP NAMESPACE … CASCADE`` removes it. The file is read
  and fully validated before anything is written.

EXPORT USER DATA / SHOW EXPORT (§1.5)
- Writes ``<data_dir>/exports/<user_id>/<export_id>.zip`` atomically. ``export_id`` is a
  Snowflake id (decimal digits: safe in a path and URL, ordered by creation time, which
  SHOW EXPORT decodes from it). The ZIP holds ``manifest.json`` (user, export id, creation
  time, tables with row counts) and one ``<namespace>/<table>.ndjson`` per USER or STREAM
  table in which the user has live rows: one JSON object per row, keyed by column name,
  cells in the §3.5 JSON encoding (BigInt as strings, timestamps in microseconds), system
  columns left out.
- The reply is one row: ``export_id``, ``download_path`` (``/v1/exports/<user>/<id>``),
  ``tables``, ``rows``. SHOW EXPORT lists the user's exports, newest first: ``export_id``,
  ``created_at``, ``size_bytes``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import trio

from ..catalog import SYSTEM_NAMESPACE, TableDef
from ..errors import InvalidOperation, NotFound
from ..events import CatalogEvent, Kind, Op, RowChange
from ..ids import UNIX_EPOCH_MS, snowflake_fields
from ..partition import storage_schema
from ..query import RowSnapshot, snapshot_rows
from ..types import table_to_json_rows
from . import statements as s
from .context import Ctx
from .ddl_table import table_partitions
from .names import user_id_problem
from .results import StatementResult, message_result, rows_result
from .system_tables import BIGINT, INT, TEXT, TIMESTAMP, build_table

if TYPE_CHECKING:
    from ..engine import Engine

# ---- SET / SHOW ------------------------------------------------------------------------------

SHOWN_LIMITS = (
    "default_query_limit_rows", "max_query_limit_rows", "sql_text_max_bytes", "params_max",
    "param_value_max_bytes", "param_rows_max", "event_max_bytes", "flush_rows_default",
    "flush_interval_seconds_default", "hot_rows_per_partition_max",
    "hot_chunks_per_partition_max", "segment_cache_max_bytes", "jobs_interval_seconds",
    "enforce_password_complexity", "node_id",
)
SETTING_COLUMNS = [("name", TEXT), ("value", TEXT)]


async def set_variable(ctx: Ctx, stmt: s.SetVariable) -> StatementResult:
    raise InvalidOperation(f"SET {stmt.name.lower()} is not supported: settings last for one "
                           "request and the only one is the batch's namespace, set with "
                           "SET NAMESPACE <ns> (or USE <ns>)")


def _settings(ctx: Ctx) -> list[tuple[str, str]]:
    config = ctx.engine.config
    shown = [("namespace", ctx.session.namespace)]
    for name in SHOWN_LIMITS:
        value = getattr(config, name)
        shown.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return shown


async def show_variable(ctx: Ctx, stmt: s.ShowVariable) -> StatementResult:
    name = stmt.name.lower()
    found = [item for item in _settings(ctx) if item[0] == name]
    if not found:
        known = ", ".join(n for n, _ in _settings(ctx))
        raise InvalidOperation(f"Unknown setting '{name}'; known settings: {known}")
    return rows_result(ctx.session.user_id, *build_table(SETTING_COLUMNS, found))


async def show_all(ctx: Ctx, stmt: s.ShowAll) -> StatementResult:
    return rows_result(ctx.session.user_id, *build_table(SETTING_COLUMNS, _settings(ctx)))


# ---- CLUSTER ---------------------------------------------------------------------------------


async def cluster_command(ctx: Ctx, stmt: s.ClusterCommand) -> StatementResult:
    if stmt.action != "SNAPSHOT":
        raise InvalidOperation(f"Sluice runs as a single node; CLUSTER {stmt.action} does not "
                               "apply")
    if ctx.txn is not None:
        raise InvalidOperation("CLUSTER SNAPSHOT is not allowed inside a transaction; COMMIT "
                               "or ROLLBACK first")
    engine = ctx.engine
    async with engine.write_lock:
        covered = int(engine.wal.committed_lsn)
        snapshot = engine.catalog_snapshot(covered)
        await trio.to_thread.run_sync(engine.write_catalog_checkpoint, snapshot)
    return message_result(ctx.session.user_id,
                          f"Cluster snapshot created: catalog checkpoint at LSN {covered}")


# ---- BACKUP / RESTORE ------------------------------------------------------------------------

BACKUP_FORMAT = 1
BACKUP_META_KEY = b"sluice.backup"
_BACKUP_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_BACKUP_SCHEMA = pa.schema([pa.field("table", pa.string(), nullable=False),
                            pa.field("user_id", pa.string()),
                            pa.field("rows", pa.large_binary(), nullable=False)])


def backup_path(engine: Engine, name: str) -> Path:
    """``<data_dir>/backups/<name>``; anything but a plain file name is InvalidOperation."""
    if not _BACKUP_NAME_RE.fullmatch(name) or ".." in name:
        raise InvalidOperation(
            f"Invalid backup path '{name}': SQL may only name a backup file inside the data "
            "directory's backups/ folder (a file name of letters, digits, '.', '_' and '-'; "
            "no absolute path, no '..', no separators)")
    return engine.data_dir / "backups" / name


def _namespace_to_back_up(namespace: str) -> str:
    name = namespace.lower()
    if name == SYSTEM_NAMESPACE:
        raise InvalidOperation("The 'system' namespace cannot be backed up or restored")
    return name


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _write_backup(engine: Engine, path: Path, meta: dict,
                  parts: list[tuple[TableDef, str | None, RowSnapshot]]) -> int:
    """Worker thread: materializes the snapshots and writes the file; returns the rows."""
    names, users, blobs, total = [], [], [], 0
    for table, user_id, snapshot in parts:
        rows = snapshot.materialize()
        if not rows.num_rows:
            continue
        rows = rows.rename_columns(storage_schema(table).names)
        names.append(table.name)
        users.append(user_id)
        blobs.append(_ipc(rows))
        total += rows.num_rows
    schema = _BACKUP_SCHEMA.with_metadata({BACKUP_META_KEY: json.dumps(meta).encode()})
    data = pa.Table.from_arrays([pa.array(names, pa.string()), pa.array(users, pa.string()),
                                 pa.array(blobs, pa.large_binary())], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(data)
    engine.io.makedirs(path.parent)
    engine.io.replace_atomically(path, sink.getvalue().to_pybytes())
    return total


async def backup_database(ctx: Ctx, stmt: s.BackupDatabase) -> StatementResult:
    engine = ctx.engine
    namespace = _namespace_to_back_up(stmt.namespace)
    path = backup_path(engine, stmt.path)
    ctx.require_namespace(namespace)
    tables = engine.catalog.tables_in(namespace)
    meta = {"format": BACKUP_FORMAT, "namespace": namespace,
            "description": engine.catalog.namespaces[namespace].description,
            "created_at_ms": ctx.now_ms(), "tables": [t.to_json() for t in tables]}
    now = ctx.now_ms()
    parts = [(table, part.user_id, snapshot_rows(table, engine.store, part.user_id, now))
             for table in tables for part in table_partitions(engine, table)]
    rows = await trio.to_thread.run_sync(_write_backup, engine, path, meta, parts)
    return message_result(ctx.session.user_id,
                          f"Namespace '{namespace}' backed up to '{stmt.path}': "
                          f"{len(tables)} table(s), {rows} row(s)")


def _read_backup(path: Path) -> tuple[dict, list[tuple[str, str | None, pa.Table]]]:
    """Worker thread: the backup's metadata and its partitions, or InvalidOperation."""
    try:
        with pa.memory_map(str(path)) as source:
            data = pa.ipc.open_file(source).read_all()
        meta = json.loads((data.schema.metadata or {})[BACKUP_META_KEY])
        if meta.get("format") != BACKUP_FORMAT:
            raise ValueError(f"unsupported backup format {meta.get('format')!r}")
        parts = []
        for name, user_id, blob in zip(data.column("table").to_pylist(),
                                       data.column("user_id").to_pylist(),
                                       data.column("rows").to_pylist(), strict=True):
            parts.append((name, user_id, pa.ipc.open_stream(blob).read_all()))
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise NotFound(f"Backup '{path.name}' does not exist") from None
        raise InvalidOperation(f"Backup '{path.name}' is not a readable Sluice backup: "
                               f"{exc}") from None
    return meta, parts


def _restored_tables(ctx: Ctx, namespace: str, meta: dict) -> dict[str, TableDef]:
    """The backed-up definitions moved to ``namespace`` with new table ids (name -> def)."""
    tables = {}
    for item in meta["tables"]:
        table = TableDef.from_json({**item, "table_id": ctx.engine.seq_ids.next(),
                                    "namespace": namespace})
        if table.options.storage_id not in ctx.engine.catalog.storages:
            raise NotFound(f"Storage '{table.options.storage_id}' of table '{table.name}' "
                           "does not exist")
        tables[table.name] = table
    return tables


def _checked_rows(tables: dict[str, TableDef], parts: list[tuple[str, str | None, pa.Table]]
                  ) -> list[tuple[TableDef, str | None, pa.Table]]:
    checked = []
    for name, user_id, rows in parts:
        table = tables.get(name)
        if table is None or (user_id is None) == table.is_user_scoped:
            raise InvalidOperation(f"Backup holds rows of an unknown partition: {name!r}, "
                                   f"{user_id!r}")
        schema = storage_schema(table)
        if not rows.schema.equals(schema):
            raise InvalidOperation(f"Backup rows of table '{name}' do not match its definition")
        checked.append((table, user_id, rows.sort_by("_seq")))
    return checked


def _slices(rows: pa.Table, max_bytes: int) -> list[pa.Table]:
    """``rows`` in pieces whose Arrow size stays well within one WAL event."""
    per_row = max(1, rows.nbytes // max(1, rows.num_rows))
    step = max(1, max_bytes // 2 // per_row)
    return [rows.slice(i, step) for i in range(0, rows.num_rows, step)]


async def restore_database(ctx: Ctx, stmt: s.RestoreDatabase) -> StatementResult:
    from ..engine import Transaction

    engine = ctx.engine
    namespace = _namespace_to_back_up(stmt.namespace)
    path = backup_path(engine, stmt.path)
    if ctx.txn is not None:
        raise InvalidOperation("RESTORE DATABASE is not allowed inside a transaction; COMMIT "
                               "or ROLLBACK first")
    meta, parts = await trio.to_thread.run_sync(_read_backup, path)
    total = 0
    async with engine.write_lock:
        if namespace in engine.catalog.namespaces:
            raise InvalidOperation(f"Namespace '{namespace}' already exists; RESTORE DATABASE "
                                   "only restores into a new namespace (drop it first)")
        try:
            tables = _restored_tables(ctx, namespace, meta)
            checked = _checked_rows(tables, parts)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidOperation(f"Backup '{stmt.path}' has invalid table definitions: "
                                   f"{exc}") from None
        await engine.commit_catalog(CatalogEvent(Kind.NAMESPACE_CREATED, {
            "name": namespace, "created_at_ms": ctx.now_ms(),
            "description": meta.get("description")}))
        for table in tables.values():
            await engine.commit_catalog(CatalogEvent(Kind.TABLE_CREATED,
                                                     {"table": table.to_json()}))
        for table, user_id, rows in checked:
            if rows.num_rows:
                engine.seq_ids.advance_past(rows.column("_seq")[-1].as_py())
            for piece in _slices(rows, engine.config.event_max_bytes):
                part = engine.store.partition(table, user_id)
                assert part is not None
                txn = Transaction()
                try:
                    txn.touch(part)
                    part.append_versions(piece, None)
                    batch = piece.combine_chunks().to_batches()[0]
                    txn.changes.append(RowChange(table.table_id, user_id, Op.INSERT, batch))
                    await engine.commit_rows(txn, ctx.session.user_id)
                except BaseException:
                    engine.abort_rows(txn)
                    raise
                total += piece.num_rows
    return message_result(ctx.session.user_id,
                          f"Namespace '{namespace}' restored from '{stmt.path}': "
                          f"{len(tables)} table(s), {total} row(s)")


# ---- EXPORT USER DATA / SHOW EXPORT ----------------------------------------------------------

EXPORT_COLUMNS = [("export_id", TEXT), ("download_path", TEXT), ("tables", INT),
                  ("rows", BIGINT)]
SHOW_EXPORT_COLUMNS = [("export_id", TEXT), ("created_at", TIMESTAMP), ("size_bytes", BIGINT)]


def _export_dir(ctx: Ctx) -> Path:
    user_id = ctx.session.user_id
    if user_id_problem(user_id) or user_id in (".", ""):
        raise InvalidOperation(f"User id '{user_id}' cannot name an export directory")
    return ctx.engine.data_dir / "exports" / user_id


def _write_export(engine: Engine, path: Path, manifest: dict,
                  parts: list[tuple[TableDef, RowSnapshot]]) -> tuple[int, int]:
    """Worker thread: builds the ZIP in memory and writes it atomically; (tables, rows)."""
    buffer, tables, total = io.BytesIO(), 0, 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for table, snapshot in parts:
            rows = snapshot.materialize()
            rows = rows.select(list(range(len(table.columns))))  # without _seq, _deleted
            if not rows.num_rows:
                continue
            names = rows.column_names
            lines = [json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False)
                     for row in table_to_json_rows(rows, [c.type for c in table.columns])]
            archive.writestr(f"{table.namespace}/{table.name}.ndjson", "\n".join(lines) + "\n")
            manifest["tables"].append({"namespace": table.namespace, "table": table.name,
                                       "table_type": table.table_type,
                                       "rows": rows.num_rows})
            tables, total = tables + 1, total + rows.num_rows
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    engine.io.makedirs(path.parent)
    engine.io.replace_atomically(path, buffer.getvalue())
    return tables, total


async def export_user_data(ctx: Ctx, stmt: s.ExportUserData) -> StatementResult:
    engine, user_id = ctx.engine, ctx.session.user_id
    directory = _export_dir(ctx)
    export_id = str(engine.sql_ids.next())
    now = ctx.now_ms()
    parts = [(table, snapshot_rows(table, engine.store, user_id, now))
             for table in sorted(engine.catalog.tables.values(),
                                 key=lambda t: (t.namespace, t.name))
             if table.is_user_scoped]
    manifest: dict[str, Any] = {"user_id": user_id, "export_id": export_id,
                                "created_at_ms": now, "tables": []}
    tables, rows = await trio.to_thread.run_sync(
        _write_export, engine, directory / f"{export_id}.zip", manifest, parts)
    row = (export_id, f"/v1/exports/{user_id}/{export_id}", tables, rows)
    return rows_result(user_id, *build_table(EXPORT_COLUMNS, [row]))


def _list_exports(directory: Path) -> list[tuple[str, int, int]]:
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob("*.zip"):
        if path.stem.isdigit():
            created_ms = snowflake_fields(int(path.stem), UNIX_EPOCH_MS)[0]
            found.append((path.stem, created_ms, path.stat().st_size))
    return sorted(found, key=lambda item: int(item[0]), reverse=True)


async def show_export(ctx: Ctx, stmt: s.ShowExport) -> StatementResult:
    found = await trio.to_thread.run_sync(_list_exports, _export_dir(ctx))
    return rows_result(ctx.session.user_id, *build_table(SHOW_EXPORT_COLUMNS, found))
