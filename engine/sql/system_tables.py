"""The ``system.*`` tables (PROTOCOL §3.10), built on demand from the catalog, the job board,
the topic records and the live-query registry.

``SYSTEM_TABLES`` maps a table name to a builder ``(engine, session) -> (rows, types)``: an
Arrow table with exactly the §3.10 columns in their ordinal order, and the KalamType of each
column (what result schemas show). Only admins may query ``system.*`` (the query layer checks
that); the builders still mask what must never leave the engine:

- ``system.users.password_hash`` is ``"***"`` for non-admin sessions (the result layer masks
  it again for non-admins);
- ``system.storages.credentials`` is ``"***"`` (when set) for **everyone**: credentials are
  write-only once stored.

Timestamps (choice, PROTOCOL §3.10 leaves it open): every time column is ``Timestamp``
(Arrow ``timestamp[us]``, no zone). The catalog keeps Unix milliseconds; the builders scale
them by 1000, so a cell holds microseconds since the epoch like every other TIMESTAMP cell
(§3.5) and like the reference's ``system.tables`` view (``timestamp_millis() * 1000``).

``topics`` and ``topic_offsets`` come from the catalog's topic records (engine/topics/);
``live`` lists the live-query registry's subscriptions (engine/live).

Builders run on the trio thread (they read live engine state) and return immutable tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..catalog import Storage, TableDef, ViewDef
from ..session import Session
from ..types import KalamType

if TYPE_CHECKING:
    from ..engine import Engine

MASK = "***"
TEXT = KalamType("Text")
INT = KalamType("Int")
BIGINT = KalamType("BigInt")
BOOLEAN = KalamType("Boolean")
TIMESTAMP = KalamType("Timestamp")

Columns = list[tuple[str, KalamType]]
Builder = Callable[["Engine", Session], tuple[pa.Table, list[KalamType]]]

USERS_COLUMNS: Columns = [
    ("user_id", TEXT), ("password_hash", TEXT), ("role", TEXT), ("email", TEXT),
    ("auth_type", TEXT), ("auth_data", TEXT), ("storage_mode", TEXT), ("storage_id", TEXT),
    ("failed_login_attempts", INT), ("locked_until", TIMESTAMP), ("last_login_at", TIMESTAMP),
    ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP), ("last_seen", TIMESTAMP),
    ("deleted_at", TIMESTAMP),
]
NAMESPACES_COLUMNS: Columns = [
    ("namespace_id", TEXT), ("name", TEXT), ("created_at", TIMESTAMP), ("options", TEXT),
    ("table_count", INT),
]
TABLES_COLUMNS: Columns = [
    ("namespace_id", TEXT), ("table_name", TEXT), ("table_type", TEXT), ("storage_id", TEXT),
    ("version", BIGINT), ("options", TEXT), ("comment", TEXT), ("updated_at", TIMESTAMP),
    ("created_at", TIMESTAMP),
]
COLUMNS_COLUMNS: Columns = [
    ("namespace_id", TEXT), ("table_name", TEXT), ("version", BIGINT), ("column_id", BIGINT),
    ("column_name", TEXT), ("comment", TEXT), ("data_type", TEXT), ("default_value", TEXT),
    ("ordinal", BIGINT), ("nullable", BOOLEAN), ("primary_key", BOOLEAN),
    ("primary_key_pos", BIGINT),
]
STORAGES_COLUMNS: Columns = [
    ("storage_id", TEXT), ("storage_name", TEXT), ("description", TEXT),
    ("storage_type", TEXT), ("base_directory", TEXT), ("credentials", TEXT),
    ("config_json", TEXT), ("shared_tables_template", TEXT), ("user_tables_template", TEXT),
    ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP),
]
JOBS_COLUMNS: Columns = [
    ("job_id", TEXT), ("job_type", TEXT), ("status", TEXT), ("leader_status", TEXT),
    ("parameters", TEXT), ("message", TEXT), ("exception_trace", TEXT),
    ("idempotency_key", TEXT), ("queue", TEXT), ("priority", INT), ("retry_count", INT),
    ("max_retries", INT), ("memory_used", BIGINT), ("cpu_used", BIGINT),
    ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP), ("started_at", TIMESTAMP),
    ("finished_at", TIMESTAMP), ("node_id", BIGINT), ("leader_node_id", BIGINT),
]
TOPICS_COLUMNS: Columns = [
    ("topic_id", TEXT), ("name", TEXT), ("alias", TEXT), ("partitions", INT),
    ("retention_seconds", BIGINT), ("retention_max_bytes", BIGINT), ("routes", TEXT),
    ("created_at", TIMESTAMP), ("updated_at", TIMESTAMP),
]
TOPIC_OFFSETS_COLUMNS: Columns = [
    ("topic_id", TEXT), ("group_id", TEXT), ("partition_id", INT),
    ("last_acked_offset", BIGINT), ("updated_at", TIMESTAMP),
]
LIVE_COLUMNS: Columns = [
    ("live_id", TEXT), ("connection_id", TEXT), ("subscription_id", TEXT),
    ("namespace_id", TEXT), ("table_name", TEXT), ("user_id", TEXT), ("query", TEXT),
    ("options", TEXT), ("status", TEXT), ("created_at", TIMESTAMP), ("last_update", TIMESTAMP),
    ("changes", BIGINT), ("node_id", BIGINT), ("last_ping_at", TIMESTAMP),
]


def build_table(columns: Columns, rows: Iterable[tuple[Any, ...]]
                ) -> tuple[pa.Table, list[KalamType]]:
    """Rows of Python values (times in Unix **milliseconds**) → an Arrow table in the
    columns' types (times scaled to microseconds)."""
    rows = list(rows)
    arrays = []
    for i, (_, kind) in enumerate(columns):
        values = [row[i] for row in rows]
        if kind == TIMESTAMP:
            values = [None if v is None else int(v) * 1000 for v in values]
        arrays.append(pa.array(values, kind.arrow_type()))
    schema = pa.schema([pa.field(name, kind.arrow_type()) for name, kind in columns])
    return pa.Table.from_arrays(arrays, schema=schema), [kind for _, kind in columns]


# ---- users, namespaces, storages -----------------------------------------------------------


def users(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """Every user, soft-deleted ones included (``deleted_at`` set), by user id."""
    rows = []
    for user in sorted(engine.catalog.users.values(), key=lambda u: u.user_id):
        secret = user.password_hash if session.is_admin else MASK
        rows.append((user.user_id, secret, user.role, user.email, user.auth_type,
                     user.auth_data, user.storage_mode, user.storage_id,
                     user.failed_login_attempts, user.locked_until, user.last_login_at,
                     user.created_at, user.updated_at, user.last_seen, user.deleted_at))
    return build_table(USERS_COLUMNS, rows)


def namespaces(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """Every namespace by name; ``options`` is ``{"description": ...}`` JSON when one is set."""
    catalog = engine.catalog
    rows = []
    for name in sorted(catalog.namespaces):
        namespace = catalog.namespaces[name]
        options = (json.dumps({"description": namespace.description})
                   if namespace.description is not None else None)
        rows.append((name, name, namespace.created_at_ms, options,
                     len(catalog.tables_in(name))))
    return build_table(NAMESPACES_COLUMNS, rows)


def storage_row(storage: Storage) -> tuple[Any, ...]:
    """One ``system.storages`` / SHOW STORAGES row; credentials masked (never echoed)."""
    credentials = None if storage.credentials is None else MASK
    return (storage.storage_id, storage.storage_name, storage.description,
            storage.storage_type, storage.base_directory, credentials, storage.config_json,
            storage.shared_tables_template, storage.user_tables_template, storage.created_at,
            storage.updated_at)


def storages(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    rows = [storage_row(engine.catalog.storages[key]) for key in sorted(engine.catalog.storages)]
    return build_table(STORAGES_COLUMNS, rows)


# ---- tables and columns --------------------------------------------------------------------


def table_options_json(table: TableDef) -> str:
    """The options that apply to the table's type, as sorted JSON (system.tables.options)."""
    options = asdict(table.options)
    relevant = {
        "USER": ("storage_id", "use_user_storage", "flush_rows", "flush_interval_seconds"),
        "SHARED": ("storage_id", "access_level", "flush_rows", "flush_interval_seconds"),
        "STREAM": ("ttl_seconds",),
    }[table.table_type]
    return json.dumps({key: options[key] for key in relevant if options[key] is not None},
                      sort_keys=True)


def table_row(table: TableDef) -> tuple[Any, ...]:
    storage_id = None if table.table_type == "STREAM" else table.options.storage_id
    return (table.namespace, table.name, table.table_type, storage_id, table.version,
            table_options_json(table), None, table.updated_at_ms, table.created_at_ms)


def sorted_tables(engine: Engine, namespace: str | None = None) -> list[TableDef]:
    tables = engine.catalog.tables.values()
    return sorted((t for t in tables if namespace is None or t.namespace == namespace),
                  key=lambda t: (t.namespace, t.name))


def view_row(view: ViewDef) -> tuple[Any, ...]:
    """A view in system.tables: table_type ``VIEW``, no storage, version 1, and its
    definition (stored SQL, column list) as the options JSON."""
    options = json.dumps({"columns": list(view.columns), "sql": view.sql}, sort_keys=True)
    return (view.namespace, view.name, "VIEW", None, 1, options, None, view.created_at_ms,
            view.created_at_ms)


def tables(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """Tables and views, ordered by namespace then name."""
    rows = [table_row(t) for t in sorted_tables(engine)]
    rows += [view_row(v) for v in engine.catalog.views.values()]
    return build_table(TABLES_COLUMNS, sorted(rows, key=lambda row: (row[0], row[1])))


def default_text(default: dict | None) -> str | None:
    """A stored column default as SQL text: ``NOW()``, ``'abc'``, ``42``, ``TRUE``."""
    if default is None:
        return None
    if "fn" in default:
        return f"{default['fn']}()"
    value = default.get("value")
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def columns(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """One row per user-defined column (system columns ``_seq``/``_deleted`` are left out, as
    the reference's view does), ``data_type`` in its SQL spelling."""
    rows = []
    for table in sorted_tables(engine):
        for ordinal, column in enumerate(table.columns, start=1):
            rows.append((table.namespace, table.name, table.version, column.id, column.name,
                         None, column.type.sql(), default_text(column.default), ordinal,
                         column.nullable, column.primary_key,
                         1 if column.primary_key else None))
    return build_table(COLUMNS_COLUMNS, rows)


# ---- jobs and the registries still to come --------------------------------------------------


def jobs(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """The job board's history (bounded), oldest first."""
    node_id = engine.config.node_id
    rows = []
    for job in engine.jobs.records:
        updated = max(t for t in (job.created_at, job.started_at, job.finished_at)
                      if t is not None)
        rows.append((job.job_id, job.job_type, job.status, None, job.parameters, job.message,
                     None, None, "default", 0, 0, 0, None, None, job.created_at, updated,
                     job.started_at, job.finished_at, node_id, node_id))
    return build_table(JOBS_COLUMNS, rows)


def topics(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """Every topic by id; ``routes`` is a JSON array of {table, op, where, payload}."""
    rows = []
    for topic in sorted(engine.catalog.topics.topics.values(), key=lambda t: t.topic_id):
        routes = json.dumps([r.to_json() for r in topic.routes])
        rows.append((topic.topic_id, topic.name, None, topic.partitions,
                     topic.retention_seconds, topic.retention_max_bytes, routes,
                     topic.created_at_ms, topic.updated_at_ms))
    return build_table(TOPICS_COLUMNS, rows)


def topic_offsets(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """Committed consumer-group offsets (inclusive), by topic, group and partition."""
    offsets = engine.catalog.topics.offsets
    rows = [(*key, offsets[key].offset, offsets[key].updated_at_ms) for key in sorted(offsets)]
    return build_table(TOPIC_OFFSETS_COLUMNS, rows)


def live(engine: Engine, session: Session) -> tuple[pa.Table, list[KalamType]]:
    """Registered live queries (engine/live), by live_id."""
    return build_table(LIVE_COLUMNS, engine.live.rows())


SYSTEM_TABLES: dict[str, Builder] = {
    "users": users,
    "namespaces": namespaces,
    "tables": tables,
    "columns": columns,
    "storages": storages,
    "jobs": jobs,
    "topics": topics,
    "topic_offsets": topic_offsets,
    "live": live,
}
