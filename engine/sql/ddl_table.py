"""Table DDL handlers (PROTOCOL §3.3, §3.4): CREATE / ALTER / DROP TABLE, DESCRIBE TABLE,
SHOW TABLES, SHOW STATS FOR TABLE, and the admin-only SHOW COLUMNS / DESCRIBE t.

Every catalog change is built under the engine's write lock (``Ctx.write_catalog``) against
the current catalog, so checks and the event cannot race another DDL or a write; anything
that fails raises before the event is appended (nothing reaches the WAL). ALTER TABLE's
rules live in ``ddl_alter``. Cancellation: an appended event stands (the WAL append is
shielded); a DROP cancelled while its files are being deleted may leave them on disk, which
is harmless (the table id in the path keeps them apart and their rows are unreachable).

Choices where the protocol is silent:
- Table and namespace names are stored lower-case (lookups are case-insensitive); column
  names keep the case they were written in.
- The "own namespace" rule of §3.3 (a user/service caller creating in a namespace named
  after its user id gets a USER table) applies only when no type was given.
- ``AUTO_INCREMENT``/``IDENTITY``/``SERIAL``/``BIGSERIAL``/``SMALLSERIAL`` columns get
  ``DEFAULT SNOWFLAKE_ID()`` (PROTOCOL §3.3); a Snowflake id needs 64 bits, so an integer
  column declared smaller is widened to BIGINT (DESCRIBE shows it). Non-integer types are
  refused.
- Function defaults must suit the column type (``FUNCTION_DEFAULT_KINDS``); literal defaults
  must coerce to it and are stored as written (``{"value": <JSON value>}``).
- SHARED tables always store their access level (``PRIVATE`` when not given); USER and
  STREAM tables store none.
- ``DELETED_RETENTION_HOURS`` must be a non-negative integer, then is dropped (§3.3).
- The USER/SHARED/STREAM word of ALTER/DROP TABLE is accepted and not compared with the
  table's type (§3.4: "accepted").
- DESCRIBE TABLE lists every column then ``_seq`` and ``_deleted`` with: column_name,
  ordinal_position (1-based), data_type (SQL spelling), is_nullable, is_primary_key,
  column_default (SQL text, NULL when none). HISTORY returns the current version only:
  version, created_at, updated_at, columns (JSON). Any role may DESCRIBE a table.
- SHOW STATS FOR TABLE needs read access; non-admins see only their own partition of a
  USER/STREAM table.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import trio

from ..catalog import (
    ACCESS_LEVELS,
    LOCAL_STORAGE,
    SYSTEM_NAMESPACE,
    ColumnDef,
    TableDef,
    TableOptions,
)
from ..errors import AlreadyExists, InvalidOperation, NotFound, PermissionDenied
from ..events import CatalogEvent, Kind
from ..flush import drop_table_files
from ..permissions import check_create_table, check_drop_table, check_read, require_admin
from ..types import KalamType, coerce_value, parse_type
from . import statements as s
from .context import Ctx
from .names import storage_id_problem
from .results import StatementResult, message_result, rows_result
from .system_tables import (
    BIGINT,
    BOOLEAN,
    INT,
    SYSTEM_TABLES,
    TABLES_COLUMNS,
    TEXT,
    TIMESTAMP,
    build_table,
    default_text,
    sorted_tables,
    table_row,
)

if TYPE_CHECKING:
    from ..engine import Engine
    from ..partition import Partition

log = logging.getLogger("sluice.ddl")

# More columns than this make every row event and segment needlessly wide; the reference
# has no documented cap, PostgreSQL's is 1600.
COLUMNS_PER_TABLE_MAX = 1000
# TTL_SECONDS beyond a century is a typo, and would push the _seq floor before its epoch.
TTL_SECONDS_MAX = 100 * 365 * 86_400
# Which column kinds each DEFAULT function may fill (what dml.py's values coerce into).
FUNCTION_DEFAULT_KINDS = {
    "SNOWFLAKE_ID": ("BigInt",),
    "NOW": ("Timestamp", "DateTime"),
    "UUID_V7": ("Text", "Uuid"),
    "ULID": ("Text",),
    "CURRENT_USER": ("Text",),
}
# Types whose values cannot be primary keys (not hashable, no total order).
NON_KEY_KINDS = ("Embedding",)

DESCRIBE_COLUMNS = [("column_name", TEXT), ("ordinal_position", INT), ("data_type", TEXT),
                    ("is_nullable", BOOLEAN), ("is_primary_key", BOOLEAN),
                    ("column_default", TEXT)]
HISTORY_COLUMNS = [("version", BIGINT), ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP),
                   ("columns", TEXT)]
STATS_COLUMNS = [("statistic", TEXT), ("value", TEXT)]


# ---- shared helpers (also used by ddl_namespace, ddl_alter and admin) ------------------------


def table_partitions(engine: Engine, table: TableDef) -> list[Partition]:
    """Every partition of ``table``: those in use plus cold ones read at start-up (attached
    now), each adopting the table's current schema version."""
    store = engine.store
    keys = [key for key in list(store.cold) + list(store.partitions) if key[0] == table.table_id]
    parts = []
    for _, user_id in dict.fromkeys(keys):
        part = store.partition(table, user_id, create=False)
        if part is not None:
            parts.append(part)
    return parts


def cancel_queued_jobs(engine: Engine, parameters: str, reason: str) -> None:
    """Marks the queued (not yet started) jobs for ``parameters`` as cancelled."""
    for record in engine.jobs.records:
        if record.parameters == parameters and record.status == "queued":
            record.status, record.message = "cancelled", reason
            record.finished_at = engine.clock.now_ms()


async def discard_table_data(engine: Engine, table: TableDef) -> None:
    """After a TABLE_DROPPED (or NAMESPACE_DROPPED) event: ends the table's live
    subscriptions (NOT_FOUND error), cancels its queued jobs,
    forgets its partitions and deletes its files in a worker thread. A file that cannot be
    deleted is logged and left behind (the table id in its path keeps it apart from any
    later table); its rows are already unreachable."""
    engine.live.table_dropped(table)
    cancel_queued_jobs(engine, table.qualified_name, "table dropped")
    engine.store.drop_table(table.table_id)
    for key in [key for key in engine.store.cold if key[0] == table.table_id]:
        del engine.store.cold[key]
    try:
        await trio.to_thread.run_sync(drop_table_files, engine, table)
    except OSError as exc:
        log.warning("files of dropped table %s (id %d) not removed: %s",
                    table.qualified_name, table.table_id, exc)


def stored_default(name: str, kind: KalamType, default: s.ColumnDefault | None,
                   auto_id: bool = False) -> dict | None:
    """A column default as the catalog stores it; raises for a default the type cannot
    hold (InvalidOperation for functions and AUTO_INCREMENT, InvalidValue for literals)."""
    if auto_id:
        if kind.kind != "BigInt":
            raise InvalidOperation(
                f"Column '{name}' is auto-generated (AUTO_INCREMENT, IDENTITY or SERIAL) with "
                f"SNOWFLAKE_ID() values, which need type BIGINT, not {kind.sql()}; use BIGINT "
                "or BIGSERIAL")
        return {"fn": "SNOWFLAKE_ID"}
    if default is None:
        return None
    if default.kind == "function":
        function = default.function
        assert function in FUNCTION_DEFAULT_KINDS, function
        if kind.kind not in FUNCTION_DEFAULT_KINDS[function]:
            raise InvalidOperation(f"DEFAULT {default.text} cannot fill column '{name}' of "
                                   f"type {kind.sql()}")
        return {"fn": function}
    if default.value is None:
        return None
    coerce_value(default.value, kind, name)
    return {"value": default.value}


def build_column(spec: s.ColumnDef, column_id: int) -> ColumnDef:
    """A catalog column from its parsed definition (type, default, key rules checked)."""
    kind = parse_type(spec.type_text)
    if spec.auto_id and kind.kind in ("SmallInt", "Int"):
        kind = KalamType("BigInt")  # SNOWFLAKE_ID() values need 64 bits
    if spec.primary_key and kind.kind in NON_KEY_KINDS:
        raise InvalidOperation(f"Column '{spec.name}' of type {kind.sql()} cannot be a "
                               "PRIMARY KEY")
    default = stored_default(spec.name, kind, spec.default, spec.auto_id)
    return ColumnDef(column_id, spec.name, kind, nullable=spec.nullable and not spec.primary_key,
                     primary_key=spec.primary_key, default=default)


def parse_access_level(value: Any) -> str:
    level = str(value).upper()
    if level not in ACCESS_LEVELS:
        raise InvalidOperation(f"Invalid ACCESS_LEVEL '{value}'. Supported: "
                               + ", ".join(ACCESS_LEVELS))
    return level


# ---- CREATE TABLE ------------------------------------------------------------------------------


def _int_option(key: str, value: Any, minimum: int, maximum: int) -> int:
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or not minimum <= int(text) <= maximum:
        raise InvalidOperation(f"{key} must be an integer between {minimum} and {maximum}, "
                               f"not '{value}'")
    return int(text)


def _flag_option(key: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise InvalidOperation(f"{key} must be true or false, not '{value}'")
    return text in ("true", "1")


# Options and the table types they are valid for (§3.3).
_OPTION_TYPES = {
    "TTL_SECONDS": ("STREAM",),
    "ACCESS_LEVEL": ("SHARED",),
    "FLUSH_POLICY": ("USER", "SHARED"),
    "STORAGE_ID": ("USER", "SHARED"),
    "USE_USER_STORAGE": ("USER",),
}


def table_options(stmt: s.CreateTable, table_type: str) -> TableOptions:
    """Validates the WITH options for ``table_type`` (storage existence is checked under the
    lock) and returns what the catalog stores."""
    options = stmt.options
    for key, valid_for in _OPTION_TYPES.items():
        if key in options and table_type not in valid_for:
            raise InvalidOperation(f"{key} is only valid for {' and '.join(valid_for)} tables, "
                                   f"not {table_type}")
    ttl_seconds = None
    if table_type == "STREAM":
        if "TTL_SECONDS" not in options:
            raise InvalidOperation("STREAM tables require TTL_SECONDS: WITH (TTL_SECONDS = n)")
        ttl_seconds = _int_option("TTL_SECONDS", options["TTL_SECONDS"], 1, TTL_SECONDS_MAX)
    access_level = None
    if table_type == "SHARED":
        access_level = parse_access_level(options.get("ACCESS_LEVEL", "PRIVATE"))
    storage_id = str(options.get("STORAGE_ID", LOCAL_STORAGE))
    problem = storage_id_problem(storage_id)
    if problem:
        raise InvalidOperation(problem)
    use_user_storage = _flag_option("USE_USER_STORAGE", options.get("USE_USER_STORAGE", "false"))
    if "DELETED_RETENTION_HOURS" in options:
        _int_option("DELETED_RETENTION_HOURS", options["DELETED_RETENTION_HOURS"], 0, 2**31 - 1)
    policy = stmt.flush_policy
    return TableOptions(access_level, ttl_seconds, policy.row_limit if policy else None,
                        policy.interval_seconds if policy else None, storage_id,
                        use_user_storage)


def _table_type(ctx: Ctx, stmt: s.CreateTable, namespace: str) -> str:
    if stmt.table_type is not None:
        return stmt.table_type
    session = ctx.session
    if session.role in ("user", "service") and namespace == session.user_id:
        return "USER"
    return "SHARED"


def _columns(stmt: s.CreateTable) -> tuple[ColumnDef, ...]:
    if len(stmt.columns) > COLUMNS_PER_TABLE_MAX:
        raise InvalidOperation(f"A table may have at most {COLUMNS_PER_TABLE_MAX} columns")
    columns = tuple(build_column(spec, i) for i, spec in enumerate(stmt.columns, start=1))
    assert sum(c.primary_key for c in columns) <= 1
    return columns


async def create_table(ctx: Ctx, stmt: s.CreateTable) -> StatementResult:
    """CREATE TABLE: checks role, options and columns, then (under the lock) the namespace,
    the name and the storage; appends TABLE_CREATED."""
    namespace, name = ctx.namespace_of(stmt.namespace), stmt.name.lower()
    table_type = _table_type(ctx, stmt, namespace)
    check_create_table(ctx.session, table_type)
    if namespace == SYSTEM_NAMESPACE:
        raise InvalidOperation("Tables cannot be created in the 'system' namespace")
    options = table_options(stmt, table_type)
    columns = _columns(stmt)
    if table_type != "STREAM" and not any(c.primary_key for c in columns):
        raise InvalidOperation("USER and SHARED tables require a single-column PRIMARY KEY")

    def build() -> CatalogEvent | None:
        catalog = ctx.engine.catalog
        if namespace not in catalog.namespaces:
            raise InvalidOperation(f"Namespace '{namespace}' does not exist. Create it first "
                                   f"with CREATE NAMESPACE {namespace}")
        if catalog.table(namespace, name) is not None:
            if stmt.if_not_exists:
                return None
            raise AlreadyExists(f"Table {namespace}.{name} already exists")
        if options.storage_id not in catalog.storages:
            raise NotFound(f"Storage '{options.storage_id}' does not exist")
        now = ctx.now_ms()
        table = TableDef(ctx.engine.seq_ids.next(), namespace, name, table_type, columns,
                         options, 1, len(columns) + 1, now, now)
        return CatalogEvent(Kind.TABLE_CREATED, {"table": table.to_json()})

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id,
                              f"Table {namespace}.{name} already exists (skipped)")
    return message_result(ctx.session.user_id, f"CREATE TABLE via Raft consensus: "
                          f"{table_type} table {namespace}.{name} created successfully")


# ---- ALTER / DROP TABLE --------------------------------------------------------------------


async def alter_table(ctx: Ctx, stmt: s.AlterTable) -> StatementResult:
    """ALTER TABLE: one action, a new schema version (rules in ``ddl_alter``)."""
    from .ddl_alter import alter_table as run_alter

    return await run_alter(ctx, stmt)


async def drop_table(ctx: Ctx, stmt: s.DropTable) -> StatementResult:
    """DROP TABLE: deregisters the table (TABLE_DROPPED), then removes its data."""
    namespace, name = ctx.namespace_of(stmt.namespace), stmt.name.lower()
    require_admin(ctx.session, "DROP TABLE")
    if namespace == SYSTEM_NAMESPACE:
        raise PermissionDenied("System tables cannot be dropped")
    dropped: list[TableDef] = []

    def build() -> CatalogEvent | None:
        table = ctx.engine.catalog.table(namespace, name)
        if table is None:
            if stmt.if_exists:
                return None
            ctx.table(namespace, name)  # raises TableNotFound with the protocol's wording
        assert table is not None
        check_drop_table(ctx.session, table)
        dropped.append(table)
        return CatalogEvent(Kind.TABLE_DROPPED, {"table_id": table.table_id})

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id,
                              f"Table {namespace}.{name} does not exist (skipped)")
    await discard_table_data(ctx.engine, dropped[0])
    return message_result(ctx.session.user_id, f"Table {namespace}.{name} dropped successfully")


# ---- DESCRIBE / SHOW ---------------------------------------------------------------------------


def _describe_rows(table: TableDef) -> list[tuple[Any, ...]]:
    rows = [(c.name, i, c.type.sql(), c.nullable, c.primary_key, default_text(c.default))
            for i, c in enumerate(table.columns, start=1)]
    n = len(rows)
    rows.append(("_seq", n + 1, "BIGINT", False, False, None))
    rows.append(("_deleted", n + 2, "BOOLEAN", False, False, "FALSE"))
    return rows


def _describe(ctx: Ctx, namespace: str | None, name: str) -> StatementResult:
    """One row per column (see the module docstring); system tables for admins."""
    ns = ctx.namespace_of(namespace)
    if ns == SYSTEM_NAMESPACE and name.lower() in SYSTEM_TABLES:
        require_admin(ctx.session, "system tables")
        data, types = SYSTEM_TABLES[name.lower()](ctx.engine, ctx.session)
        rows = [(field.name, i, kind.sql(), True, False, None)
                for i, (field, kind) in enumerate(zip(data.schema, types, strict=True), 1)]
    else:
        rows = _describe_rows(ctx.table(ns, name))
    table, types = build_table(DESCRIBE_COLUMNS, rows)
    return rows_result(ctx.session.user_id, table, types)


async def describe_table(ctx: Ctx, stmt: s.DescribeTable) -> StatementResult:
    if not stmt.history:
        return _describe(ctx, stmt.namespace, stmt.name)
    table = ctx.table(stmt.namespace, stmt.name)
    columns = [{"name": c.name, "data_type": c.type.sql(), "nullable": c.nullable,
                "primary_key": c.primary_key, "default": default_text(c.default)}
               for c in table.columns]
    data, types = build_table(HISTORY_COLUMNS, [(table.version, table.created_at_ms,
                                                 table.updated_at_ms, json.dumps(columns))])
    return rows_result(ctx.session.user_id, data, types)


async def show_columns(ctx: Ctx, stmt: s.ShowColumns) -> StatementResult:
    """SHOW COLUMNS FROM t (admin only, checked at classify time): as DESCRIBE TABLE."""
    return _describe(ctx, stmt.namespace, stmt.table)


async def datafusion_describe(ctx: Ctx, stmt: s.DataFusionDescribe) -> StatementResult:
    """DESCRIBE t (admin only, checked at classify time): as DESCRIBE TABLE."""
    return _describe(ctx, stmt.namespace, stmt.name)


async def show_tables(ctx: Ctx, stmt: s.ShowTables) -> StatementResult:
    """SHOW TABLES [IN ns]: the system.tables columns; ``IN system`` lists the system tables."""
    if stmt.namespace is None:
        rows = [table_row(t) for t in sorted_tables(ctx.engine)]
    else:
        namespace = stmt.namespace.lower()
        ctx.require_namespace(namespace)
        if namespace == SYSTEM_NAMESPACE:
            rows = [(SYSTEM_NAMESPACE, name, "SYSTEM", None, 1, "{}", None, None, None)
                    for name in sorted(SYSTEM_TABLES)]
        else:
            rows = [table_row(t) for t in sorted_tables(ctx.engine, namespace)]
    data, types = build_table(TABLES_COLUMNS, rows)
    return rows_result(ctx.session.user_id, data, types)


def _partition_stats(parts: list[Partition]) -> list[tuple[str, int]]:
    hot = sum(p.hot_rows() for p in parts)
    cold = sum(c.num_rows - len(c.dead) for p in parts for c in p.chunks.values() if c.cold)
    segments = [e for p in parts if p.manifest is not None for e in p.manifest.segments]
    return [("partitions", len(parts)), ("hot_rows", hot), ("cold_rows", cold),
            ("segments", len(segments)), ("segment_bytes", sum(e.size_bytes for e in segments)),
            ("last_flushed_lsn", max((p.checkpoint_lsn for p in parts), default=0)),
            ("last_write_lsn", max((p.last_lsn for p in parts), default=0))]


async def show_table_stats(ctx: Ctx, stmt: s.ShowTableStats) -> StatementResult:
    """SHOW STATS FOR TABLE t: (statistic, value) rows over every partition — all users for
    admins, only the caller's own partition of a USER/STREAM table for everyone else. Row
    counts are row *versions* currently held (latest per key, tombstones included)."""
    table = ctx.table(stmt.namespace, stmt.name)
    check_read(ctx.session, table)
    parts = table_partitions(ctx.engine, table)
    if table.is_user_scoped and not ctx.session.is_admin:
        parts = [p for p in parts if p.user_id == ctx.session.user_id]
    stats: list[tuple[str, Any]] = [("table_type", table.table_type),
                                    ("schema_version", table.version),
                                    ("columns", len(table.columns))]
    stats += _partition_stats(parts)
    data, types = build_table(STATS_COLUMNS, [(k, str(v)) for k, v in stats])
    return rows_result(ctx.session.user_id, data, types)


def live_versions(engine: Engine, table: TableDef) -> list[pa.Table]:
    """The latest version of every row in every partition (tombstones included), aligned to
    the table's current schema (call under the write lock for a consistent picture)."""
    return [t for part in table_partitions(engine, table) for t in part.view()]
