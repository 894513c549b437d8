"""Bulk ingestion: many rows into one table as ONE atomic, durable WAL event (issue 4,
``POST /v1/api/ingest/{namespace}/{table}``).

The rules are INSERT's (PROTOCOL §3.7), imported from engine/sql/dml.py rather than restated
(hence the two underscored imports, ``_writable_table`` and ``_default``):
- who may write: ``_writable_table`` (SHARED by role and access level, system tables never,
  impersonation only into USER/STREAM tables) and ``permissions.impersonated`` (the
  ``EXECUTE AS USER`` role rule) for ``user_id``;
- where: the effective user's partition (USER/STREAM), or the table (SHARED);
- values: ``coerce_value`` semantics (engine/ingest_cast.py), column defaults (§3.6), NOT
  NULL and primary key non-null;
- uniqueness and the commit: ``dml.insert_versions`` (fresh ``_seq`` per row, PK unique
  against live rows and within the request) and ``Engine.commit_rows`` (one WAL event,
  durable before it returns; nothing applied on failure).

Choices (the spec is silent): a NULL — JSON ``null``, a key missing from an NDJSON line, or a
null Arrow value — in a column that has a DEFAULT takes the default; a column absent from the
whole input takes it for every row. (The vectorised NDJSON reader cannot tell a missing key
from ``null``, and both formats should mean the same thing.)
ID-function defaults (SNOWFLAKE_ID, UUID_V7, ULID) are evaluated per row; NOW() and
CURRENT_USER() once per request (see ``_default_fill``).

Decoding and type conversion run in a worker thread against the table definition read
before the write lock; under the lock the definition is read again and, if an ALTER TABLE
changed it meanwhile, the input is converted again. Defaults are evaluated under the lock on
the trio thread (the id generators are not thread-safe).

Cancellation: before the commit nothing is written; once ``commit_rows`` queued the event
it completes shielded (see ``Engine._append``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc
import trio

from .catalog import SEQ_COLUMN, ColumnDef, TableDef
from .errors import InvalidInput, InvalidValue
from .ingest_cast import conform_column
from .ingest_decode import Decoded, conform, decode_arrow_stream, decode_ndjson, input_column
from .permissions import impersonated
from .session import Session
from .sql.context import Ctx
from .sql.dml import _default, _writable_table, insert_versions
from .types import coerce_value

if TYPE_CHECKING:
    from .engine import Engine, Transaction

IngestFormat = Literal["ndjson", "arrow"]
_PER_ROW_FUNCTIONS = frozenset({"SNOWFLAKE_ID", "UUID_V7", "ULID"})


@dataclass(frozen=True, slots=True)
class IngestResult:
    row_count: int
    last_seq: int  # the ``_seq`` of the last row written (every row's is smaller)


async def ingest_rows(engine: Engine, session: Session, namespace: str, table_name: str,
                      rows: pa.Table, *, user_id: str | None = None) -> IngestResult:
    """Inserts every row of ``rows`` (fields named like the table's columns, any Arrow types
    that convert) into ``namespace.table_name`` as ``session`` — or, with ``user_id``, as
    that user, when the caller's role may impersonate them — atomically and durably.

    Raises ``TableNotFound``, ``PermissionDenied``, ``InvalidInput`` (unknown, system or
    repeated column; no rows), ``InvalidValue`` ("Row N: …"; NULL into NOT NULL),
    ``AlreadyExists`` (primary key), ``InvalidOperation`` (event too large),
    ``StorageUnavailable``. On any error nothing is written.
    """
    ctx = _context(engine, session, user_id)
    table = _writable_table(ctx, namespace, table_name)
    try:
        rows.validate(full=True)  # e.g. invalid UTF-8 in a string column
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"Invalid Arrow data: {str(exc)[:200]}") from None
    columns, seen = [], set()
    for name, values in zip(rows.column_names, rows.columns, strict=True):
        column = input_column(table, name, "Input")
        if column.id in seen:
            raise InvalidInput(f"Input: column '{column.name}' is given more than once")
        seen.add(column.id)
        columns.append((column, values))
    decoded = Decoded(columns, rows.num_rows, lambda row: f"Row {row + 1}")
    return await _commit(ctx, namespace, table_name, table, decoded)


async def ingest_body(engine: Engine, session: Session, namespace: str, table_name: str,
                      body: bytes, body_format: IngestFormat, *, user_id: str | None = None
                      ) -> IngestResult:
    """``ingest_rows`` of a request body: NDJSON (errors name the 1-based line) or an Arrow IPC
    stream (errors name the row or column); see engine/ingest_decode.py for the formats.
    Raises what ``ingest_rows`` raises, and ``InvalidInput`` for a malformed body."""
    ctx = _context(engine, session, user_id)
    table = _writable_table(ctx, namespace, table_name)  # refuse before decoding
    assert body_format in ("ndjson", "arrow"), body_format
    if body_format == "ndjson":
        decoded = await trio.to_thread.run_sync(decode_ndjson, table, body)
    else:
        limit = engine.config.event_max_bytes
        decoded = await trio.to_thread.run_sync(decode_arrow_stream, table, body, limit)
    return await _commit(ctx, namespace, table_name, table, decoded)


def _context(engine: Engine, session: Session, user_id: str | None) -> Ctx:
    if user_id is not None and not user_id:
        raise InvalidInput("user_id must not be empty")
    effective = session if user_id in (None, session.user_id) else \
        impersonated(engine.catalog, session, user_id)
    return Ctx(engine, effective, session, [])


async def _commit(ctx: Ctx, namespace: str, table_name: str, table: TableDef,
                  decoded: Decoded) -> IngestResult:
    if decoded.num_rows == 0:
        raise InvalidInput("The request holds no rows")
    converted = await trio.to_thread.run_sync(conform, table, decoded)

    async def step(txn: Transaction) -> IngestResult:
        current = _writable_table(ctx, namespace, table_name)  # the catalog may have moved
        same = (current.table_id, current.version) == (table.table_id, table.version)
        values = converted if same else conform(current, _realigned(current, decoded))
        arrays = [_with_defaults(ctx, column, values.get(column.id), decoded)
                  for column in current.columns]
        versions = insert_versions(ctx, txn, current, arrays, decoded.num_rows)
        return IngestResult(versions.num_rows, versions.column(SEQ_COLUMN)[-1].as_py())

    return await ctx.write_rows(step)


def _realigned(table: TableDef, decoded: Decoded) -> Decoded:
    """The input against a newer definition of its table (columns matched by id)."""
    by_id = {column.id: column for column in table.columns}
    columns = []
    for column, values in decoded.columns:
        if column.id not in by_id:
            raise InvalidInput(f"Column '{column.name}' was dropped from table "
                               f"'{table.qualified_name}' during the request")
        columns.append((by_id[column.id], values))
    return Decoded(columns, decoded.num_rows, decoded.locate)


def _with_defaults(ctx: Ctx, column: ColumnDef, values: pa.Array | None,
                   decoded: Decoded) -> pa.Array:
    """``values`` (None: the column was not given) with NULLs replaced by the column's
    default; then the NOT NULL check."""
    count = decoded.num_rows
    if values is None:
        values = pa.nulls(count, column.type.arrow_type())
    missing = values.null_count
    if missing and column.default is not None:
        fill = _default_fill(ctx, column, missing, decoded)
        values = fill if missing == count else pc.replace_with_mask(
            values, pc.is_null(values), fill)
    if values.null_count and (not column.nullable or column.primary_key):
        row = pc.index(pc.is_null(values), True).as_py()
        raise InvalidValue(f"{decoded.locate(row)}: Column '{column.name}' cannot be null")
    return values


def _default_fill(ctx: Ctx, column: ColumnDef, count: int, decoded: Decoded) -> pa.Array:
    """``count`` values of ``column``'s default. The id functions run once per row (every
    row gets its own id, §3.6); NOW() and CURRENT_USER() once per request — the request is
    one transaction, and PostgreSQL's now() is likewise the transaction's time."""
    assert column.default is not None
    if column.default.get("fn") in _PER_ROW_FUNCTIONS:
        raw = pa.array([_default(ctx, column) for _ in range(count)])
        return conform_column(column, raw, decoded.locate)
    value = coerce_value(_default(ctx, column), column.type, column.name)
    return pa.repeat(pa.scalar(value, type=column.type.arrow_type()), count)
