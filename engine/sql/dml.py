"""INSERT, UPDATE and DELETE (PROTOCOL §3.7): every change is a new row version.

Each handler builds the new versions as an Arrow table in storage naming (``c<id>``,
``_seq``, ``_deleted``), applies them tentatively to the caller's partition and records a
``RowChange``; ``Ctx.write_rows`` turns the transaction into one WAL event. UPDATE and
DELETE find their rows by running ``SELECT * … WHERE <predicate>`` on DataFusion over the
writer's view (which includes the transaction's own earlier changes).
"""

from __future__ import annotations

import decimal
import itertools
import math
import os
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import trio
from sqlglot import exp

from ..catalog import DELETED_COLUMN, SEQ_COLUMN, SYSTEM_NAMESPACE, ColumnDef, TableDef
from ..errors import (
    AlreadyExists,
    InvalidOperation,
    InvalidParameter,
    InvalidSql,
    InvalidValue,
    PermissionDenied,
)
from ..events import Op, RowChange
from ..ids import ulid, uuid_v7
from ..partition import Partition, storage_schema
from ..permissions import check_write
from ..query import QueryOptions, run
from ..types import VALUE_SIZE_MAX_BYTES, coerce_value
from .context import Ctx
from .results import StatementResult, dml_result
from .select import prepare_for
from .statements import CallValue, DefaultValue, Delete, Insert, InsertValues, Param, Update

if TYPE_CHECKING:
    from ..engine import Transaction

_DEFAULT = object()  # the DEFAULT keyword in VALUES
_SYSTEM_COLUMNS = (SEQ_COLUMN, DELETED_COLUMN)
_MATCH = QueryOptions(None, None, implicit_order=False, include_uncommitted=True,
                      show_deleted=False)


# ---- INSERT --------------------------------------------------------------------------------


async def insert(ctx: Ctx, statement: Insert | InsertValues) -> StatementResult:
    if isinstance(statement, InsertValues):
        table = _writable_table(ctx, statement.namespace, statement.table)
        columns = _target_columns(table, list(statement.columns) if statement.columns else None)
        rows = _literal_rows(ctx, statement.rows, len(columns))
    else:
        node = statement.expression
        target, names = (node.this.this, [i.name for i in node.this.expressions]) \
            if isinstance(node.this, exp.Schema) else (node.this, None)
        table = _writable(ctx, target)
        columns = _target_columns(table, names)
        rows = await _source_rows(ctx, node.expression, len(columns))

    async def step(txn: Transaction) -> StatementResult:
        versions = insert_versions(ctx, txn, table, _insert_arrays(ctx, table, columns, rows),
                                   len(rows))
        return dml_result(ctx.session.user_id, "insert", versions.num_rows)

    return await ctx.write_rows(step)


def _literal_rows(ctx: Ctx, rows: tuple[tuple[Any, ...], ...], width: int) -> list[list[Any]]:
    """InsertValues rows with parameters, value functions and DEFAULT resolved. With batched
    params (an array of arrays) the single VALUES row is instantiated once per inner array."""
    for row in rows:
        if len(row) != width:
            raise InvalidSql(f"INSERT has {len(row)} values for {width} columns")
    if ctx.param_rows is not None:
        if len(rows) != 1:
            raise InvalidParameter("Batched params need an INSERT with exactly one VALUES row")
        return [[_literal(ctx, item, params) for item in rows[0]] for params in ctx.param_rows]
    if _MARKERS.isdisjoint(map(type, itertools.chain.from_iterable(rows))):
        return list(rows)  # all literals, the common bulk case (rows are read, not changed)
    return [[_literal(ctx, item, ctx.params) for item in row] for row in rows]


_MARKERS = frozenset({Param, DefaultValue, CallValue})


def _literal(ctx: Ctx, item: Any, params: list[Any]) -> Any:
    if type(item) not in _MARKERS:
        return item
    if isinstance(item, Param):
        if not 1 <= item.index <= len(params):
            raise InvalidParameter(f"Parameter ${item.index} is missing ({len(params)} given)")
        return params[item.index - 1]
    if isinstance(item, DefaultValue):
        return _DEFAULT
    if isinstance(item, CallValue):
        return _function_value(ctx, item.name)
    return item


def _writable_table(ctx: Ctx, namespace: str | None, name: str) -> TableDef:
    if ctx.namespace_of(namespace) == SYSTEM_NAMESPACE:  # not in the catalog: views
        raise PermissionDenied("System tables are read-only")
    table = ctx.table(namespace, name)
    if ctx.impersonating and table.table_type == "SHARED":  # §2.7: 400, before the role check
        raise InvalidOperation("EXECUTE AS USER is only supported for USER and STREAM tables")
    check_write(ctx.session, table)
    return table


def _writable(ctx: Ctx, node: Any) -> TableDef:
    # sqlglot accepts targets such as `(SELECT 1)` or `DELETE t` (no FROM: not a table node).
    if not isinstance(node, exp.Table) or not node.name:
        raise InvalidSql("The target of INSERT, UPDATE or DELETE must be a table name")
    return _writable_table(ctx, node.db or None, node.name)


_TARGETS_MAX = 256  # (table, column list) pairs whose resolved target columns are kept
_targets: dict[tuple[int, tuple[str, ...]], tuple[TableDef, list[ColumnDef]]] = {}


def _target_columns(table: TableDef, names: list[str] | None) -> list[ColumnDef]:
    """The INSERT's target columns, in the order named (all of them when ``names`` is None).
    A repeated statement's list is resolved once per table definition: the cache holds the
    definition itself and is used only for that very object (an ALTER or DROP/CREATE makes
    a new one). Callers must not change the returned list."""
    if names is None:
        return list(table.columns)
    key = (id(table), tuple(names))
    cached = _targets.get(key)
    if cached is not None and cached[0] is table:
        return cached[1]
    columns = _resolve_columns(table, names)
    if len(_targets) >= _TARGETS_MAX:
        _targets.clear()
    _targets[key] = (table, columns)
    return columns


def _resolve_columns(table: TableDef, names: list[str]) -> list[ColumnDef]:
    columns: list[ColumnDef] = []
    for name in names:
        column = _writable_column(table, name)
        if column in columns:
            raise InvalidSql(f"Column '{name}' is specified more than once")
        columns.append(column)
    return columns


def _writable_column(table: TableDef, name: str) -> ColumnDef:
    """The user column ``name`` of ``table`` (system columns are never written by SQL)."""
    if name.lower() in _SYSTEM_COLUMNS:
        raise InvalidOperation(f"System column '{name}' cannot be written")
    column = table.column(name)
    if column is None:
        raise InvalidOperation(f"Column '{name}' does not exist in table "
                               f"'{table.qualified_name}'")
    return column


async def _source_rows(ctx: Ctx, source: exp.Expression, width: int) -> list[list[Any]]:
    if isinstance(source, exp.Values):
        tuples = [row.expressions if isinstance(row, exp.Tuple) else [row]
                  for row in source.expressions]
        for items in tuples:
            if len(items) != width:
                raise InvalidSql(f"INSERT has {len(items)} values for {width} columns")
        if ctx.param_rows is not None:
            if len(tuples) != 1:
                raise InvalidParameter("Batched params need an INSERT with exactly one VALUES "
                                       "row")
            rows = [[_value(ctx, item, params) for item in tuples[0]]
                    for params in ctx.param_rows]
            if any(isinstance(v, exp.Expression) for row in rows for v in row):
                raise InvalidParameter("Batched params need plain values, parameters or "
                                       "DEFAULT in the VALUES row")
            return rows
        rows = [[_value(ctx, item, ctx.params) for item in items] for items in tuples]
        return await _evaluate_expressions(ctx, rows)
    if isinstance(source, exp.Query):
        prepared = prepare_for(ctx, source, _MATCH)
        result = await trio.to_thread.run_sync(_run_micros, prepared)
        if result.num_columns != width:
            raise InvalidSql(f"INSERT … SELECT returns {result.num_columns} columns for "
                             f"{width} target columns")
        return [list(row.values()) for row in result.to_pylist()]
    raise InvalidSql("INSERT needs VALUES or a SELECT")


def _value(ctx: Ctx, node: exp.Expression, params: list[Any]) -> Any:
    """A VALUES item: a literal, parameter, DEFAULT or ID function; other expressions are
    returned as-is and evaluated by DataFusion."""
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        return int(node.this) if node.is_int else decimal.Decimal(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return -_value(ctx, node.this, params)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Var) and node.name.upper() == "DEFAULT":
        return _DEFAULT
    if isinstance(node, exp.Parameter | exp.Placeholder):
        return _parameter(node, params)
    if isinstance(node, exp.CurrentTimestamp):
        return _function_value(ctx, "NOW")
    if isinstance(node, exp.Anonymous):
        name = str(node.this).upper()
        if name in ("SNOWFLAKE_ID", "UUID_V7", "ULID", "NOW", "KDB_CURRENT_USER",
                    "KDB_CURRENT_ROLE") and not node.expressions:
            return _function_value(ctx, name)
    return node


def _parameter(node: exp.Expression, params: list[Any]) -> Any:
    text = node.this.this if isinstance(node.this, exp.Literal) else str(node.this)
    if not str(text).isdigit():
        raise InvalidParameter(f"Unsupported parameter placeholder {node.sql()}")
    index = int(text)
    if not 1 <= index <= len(params):
        raise InvalidParameter(f"Parameter ${index} is missing ({len(params)} given)")
    return params[index - 1]


def _function_value(ctx: Ctx, name: str) -> Any:
    engine = ctx.engine
    if name == "NOW":
        return engine.clock.now_ms() * 1000  # microseconds: the Timestamp unit
    if name == "SNOWFLAKE_ID":
        return engine.sql_ids.next()
    if name == "UUID_V7":
        return uuid_v7(engine.clock.now_ms, os.urandom)
    if name == "ULID":
        return ulid(engine.clock.now_ms, os.urandom)
    if name == "KDB_CURRENT_ROLE":
        return ctx.session.role
    return ctx.session.user_id  # CURRENT_USER


async def _evaluate_expressions(ctx: Ctx, rows: list[list[Any]]) -> list[list[Any]]:
    """Evaluates the non-literal VALUES items with one DataFusion query (constants only)."""
    pending = [(r, c) for r, row in enumerate(rows) for c, v in enumerate(row)
               if isinstance(v, exp.Expression)]
    if not pending:
        return rows
    select = exp.select(*[rows[r][c].as_(f"v{i}") for i, (r, c) in enumerate(pending)])
    prepared = prepare_for(ctx, select, _MATCH)
    result = (await trio.to_thread.run_sync(_run_micros, prepared)).to_pylist()[0]
    for i, (r, c) in enumerate(pending):
        rows[r][c] = result[f"v{i}"]
    return rows


def _insert_arrays(ctx: Ctx, table: TableDef, columns: list[ColumnDef],
                   rows: list[list[Any]]) -> list[pa.Array]:
    """The new rows' user columns, built column by column: given values, else defaults;
    coerced and checked (a fast vectorised path for the common types, ``coerce_value``
    otherwise)."""
    position = {column.id: i for i, column in enumerate(columns)}
    given = list(zip(*rows, strict=True)) if rows else [()] * len(columns)  # column-wise
    arrays = []
    for column in table.columns:
        i = position.get(column.id)
        values = [_DEFAULT] * len(rows) if i is None else list(given[i])
        if _DEFAULT in values:  # identity first: plain values never equal the marker
            values = [_default(ctx, column) if v is _DEFAULT else v for v in values]
        arrays.append(_column_array(column, values))
    return arrays


def insert_versions(ctx: Ctx, txn: Transaction, table: TableDef, arrays: list[pa.Array],
                    count: int) -> pa.Table:
    """The INSERT tail shared by SQL INSERT and bulk ingestion (engine/ingest.py): makes
    ``count`` new versions of ``arrays`` (the user columns in table order, already coerced
    and NOT NULL-checked) with a fresh ``_seq`` each, refuses a primary key that is live in
    the effective user's partition or repeats among them (``AlreadyExists``), and adds them
    tentatively to ``txn``. Returns the versions. Caller holds the write lock."""
    part = ctx.engine.store.partition(table, ctx.session.user_id)
    assert part is not None
    versions = _with_system_columns(ctx, table, arrays, count, deleted=False)
    _check_unique(part, table, versions, ctx.now_ms())
    _apply(txn, part, table, Op.INSERT, versions)
    return versions


# Column kinds whose plain Python values pyarrow converts exactly as coerce_value would; any
# other value (or a conversion error) takes the per-value path, which owns the messages.
_FAST_KINDS: dict[str, frozenset[type]] = {
    "BigInt": frozenset({int}), "Int": frozenset({int}), "SmallInt": frozenset({int}),
    "Text": frozenset({str}), "Double": frozenset({int, float}),
    "Float": frozenset({int, float}), "Boolean": frozenset({bool}),
    "Timestamp": frozenset({int}), "DateTime": frozenset({int}),  # int µs since the epoch
}
_FAST_TEXT_CHARS_MAX = VALUE_SIZE_MAX_BYTES // 4  # UTF-8 is at most 4 bytes a character


def _column_array(column: ColumnDef, values: list[Any]) -> pa.Array:
    allowed = _FAST_KINDS.get(column.type.kind)
    kinds = set(map(type, values))
    if column.type.kind in ("Double", "Float") and decimal.Decimal in kinds:
        # Decimal literals (every non-integer number in SQL text) become floats, as
        # coerce_value would convert them; non-finite values take the checked path.
        values = [float(v) if type(v) is decimal.Decimal and v.is_finite() else v
                  for v in values]
        kinds = set(map(type, values))
    if allowed is not None and _fast_ok(column, values, kinds, allowed):
        try:
            return pa.array(values, type=column.type.arrow_type())
        except (pa.ArrowException, OverflowError, UnicodeError):
            pass
    return pa.array([_checked(column, v) for v in values], type=column.type.arrow_type())


def _fast_ok(column: ColumnDef, values: list[Any], kinds: set[type],
             allowed: frozenset[type]) -> bool:
    """Whether pyarrow may convert ``values`` (whose types are ``kinds``) directly: only
    allowed types, NULL only where permitted, finite floats, texts within the size limit.
    Set and ``map`` operations, so the common case costs no Python step per value."""
    if type(None) in kinds:
        if not column.nullable or column.primary_key:
            return False
        kinds = kinds - {type(None)}
        values = [v for v in values if v is not None]
    if not kinds <= allowed:
        return False
    try:
        if float in kinds and not all(map(math.isfinite, values)):
            return False
    except OverflowError:  # an int beyond float range next to floats: the checked path
        return False
    return str not in kinds or max(map(len, values)) <= _FAST_TEXT_CHARS_MAX


def _default(ctx: Ctx, column: ColumnDef) -> Any:
    if column.default is None:
        return None
    if "fn" in column.default:
        return _function_value(ctx, column.default["fn"])
    return column.default.get("value")


def _checked(column: ColumnDef, value: Any) -> Any:
    if value is not None:
        value = coerce_value(value, column.type, column.name)
    if value is None and (not column.nullable or column.primary_key):
        raise InvalidValue(f"Column '{column.name}' cannot be null")
    return value


def _versions(ctx: Ctx, table: TableDef, rows: list[list[Any]], *, deleted: bool = False
              ) -> pa.Table:
    arrays = [pa.array([row[i] for row in rows], type=column.type.arrow_type())
              for i, column in enumerate(table.columns)]
    return _with_system_columns(ctx, table, arrays, len(rows), deleted=deleted)


_FLAGS = {flag: pa.scalar(flag, pa.bool_()) for flag in (False, True)}  # built once


def _with_system_columns(ctx: Ctx, table: TableDef, arrays: list[pa.Array], count: int, *,
                         deleted: bool) -> pa.Table:
    """New versions: the user columns plus a fresh ``_seq`` each and ``_deleted``."""
    seqs = pa.array(ctx.engine.seq_ids.next_many(count), pa.int64())
    flags = pa.repeat(_FLAGS[deleted], count)
    return pa.Table.from_arrays([*arrays, seqs, flags], schema=storage_schema(table))


def _check_unique(part: Partition, table: TableDef, versions: pa.Table, now_ms: int) -> None:
    pk = table.pk
    if pk is None:
        return
    keys = versions.column(pk.storage_name).to_pylist()
    if part.pk_loc.keys().isdisjoint(keys) and len(set(keys)) == len(keys):
        return  # the common case, without a Python step per key: no key is indexed or repeated
    seen: set[Any] = set()
    for key in keys:
        if key in seen or (part.is_live_key(key) and not _expired(part, table, key, now_ms)):
            raise AlreadyExists(f"Primary key violation: value '{_show(key)}' already exists "
                                f"in column '{pk.name}'")
        seen.add(key)


def _expired(part: Partition, table: TableDef, key: Any, now_ms: int) -> bool:
    """A STREAM row older than TTL_SECONDS: no query sees it, so it holds no key (§3.9)."""
    floor = table.expiry_seq_floor(now_ms)
    if floor is None:
        return False
    latest = part.latest(key)
    assert latest is not None
    return latest.column(SEQ_COLUMN)[0].as_py() < floor


def _show(key: Any) -> str:
    if isinstance(key, bytes):
        return key.hex()
    return str(key)


def _apply(txn: Transaction, part: Partition, table: TableDef, op: Op, versions: pa.Table,
           assigned: tuple[int, ...] | None = None) -> None:
    txn.touch(part)
    part.append_versions(versions, None)
    batch = versions.combine_chunks().to_batches()[0] if versions.num_rows else None
    if batch is not None:
        txn.changes.append(RowChange(table.table_id, part.user_id, op, batch, assigned))


# ---- UPDATE and DELETE ----------------------------------------------------------------------


async def update(ctx: Ctx, statement: Update) -> StatementResult:
    node = statement.expression
    table = _writable(ctx, node.this)
    if table.table_type == "STREAM":
        raise InvalidOperation("UPDATE is not supported for STREAM tables")
    where = node.args.get("where")
    if where is None:
        raise InvalidOperation("UPDATE requires a WHERE clause")
    assignments = _assignments(table, node.expressions)

    async def step(txn: Transaction) -> StatementResult:
        select = exp.select("*", *[value.copy().as_(f"__set{i}")
                                   for i, (_, value) in enumerate(assignments)])
        matched = await _match(ctx, select, node.this, where)
        changed = {column.id: f"__set{i}" for i, (column, _) in enumerate(assignments)}
        rows = []
        for record in matched.to_pylist():
            rows.append([_checked(c, record[changed[c.id]]) if c.id in changed
                         else record[c.name] for c in table.columns])
        part = ctx.engine.store.partition(table, ctx.session.user_id)
        assert part is not None
        # `assigned`: the SET columns, for topics' `diff` payloads (engine/topics/render.py)
        _apply(txn, part, table, Op.UPDATE, _versions(ctx, table, rows), tuple(changed))
        return dml_result(ctx.session.user_id, "update", len(rows))

    return await ctx.write_rows(step)


def _assignments(table: TableDef, items: list[exp.Expression]
                 ) -> list[tuple[ColumnDef, exp.Expression]]:
    if not items:
        raise InvalidSql("UPDATE needs at least one assignment")
    result: list[tuple[ColumnDef, exp.Expression]] = []
    for item in items:
        if not isinstance(item, exp.EQ) or not isinstance(item.this, exp.Column):
            raise InvalidSql(f"Unsupported assignment: {item.sql()}")
        name = item.this.name
        column = _writable_column(table, name)
        if column.primary_key:
            raise InvalidOperation(f"UPDATE cannot modify primary key column '{column.name}'")
        if any(c.id == column.id for c, _ in result):
            raise InvalidSql(f"Column '{name}' is assigned more than once")
        result.append((column, item.expression))
    return result


async def delete(ctx: Ctx, statement: Delete) -> StatementResult:
    node = statement.expression
    table = _writable(ctx, node.this)
    where = node.args.get("where")
    if where is None:
        raise InvalidOperation("DELETE requires a WHERE clause")

    async def step(txn: Transaction) -> StatementResult:
        matched = await _match(ctx, exp.select("*"), node.this, where)
        part = ctx.engine.store.partition(table, ctx.session.user_id)
        assert part is not None
        if table.table_type == "STREAM":
            seqs = matched.column(SEQ_COLUMN).combine_chunks()
            txn.touch(part)
            part.remove_by_seq(seqs.to_pylist())
            if len(seqs):
                batch = pa.record_batch([seqs], names=[SEQ_COLUMN])
                txn.changes.append(RowChange(table.table_id, part.user_id, Op.DELETE, batch))
            return dml_result(ctx.session.user_id, "delete", len(seqs))
        rows = [[record[c.name] for c in table.columns] for record in matched.to_pylist()]
        _apply(txn, part, table, Op.DELETE, _versions(ctx, table, rows, deleted=True))
        return dml_result(ctx.session.user_id, "delete", len(rows))

    return await ctx.write_rows(step)


def _run_micros(prepared) -> pa.Table:
    """``run`` with nanosecond timestamps and times (what DataFusion computes) truncated to
    the microseconds storage holds; ``to_pylist()`` cannot convert a value that is not a
    whole number of microseconds."""
    table = run(prepared)
    for i, f in enumerate(table.schema):
        if (pa.types.is_timestamp(f.type) or pa.types.is_time64(f.type)) and f.type.unit == "ns":
            target = (pa.timestamp("us", f.type.tz) if pa.types.is_timestamp(f.type)
                      else pa.time64("us"))
            table = table.set_column(i, pa.field(f.name, target),
                                     table.column(i).cast(target, safe=False))
    return table


async def _match(ctx: Ctx, select: exp.Select, target: exp.Table, where: exp.Where
                 ) -> pa.Table:
    """The current rows of ``target`` matching ``where`` (plus any extra select columns)."""
    select = select.from_(target.copy()).where(where.this.copy())
    prepared = prepare_for(ctx, select, _MATCH)
    return await trio.to_thread.run_sync(_run_micros, prepared)
