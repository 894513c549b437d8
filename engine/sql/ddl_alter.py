"""ALTER TABLE (PROTOCOL §3.4): one action per statement, each a new schema version.

``ACTIONS`` maps the action class to a function ``(engine, table, action) -> TableDef | None``
that returns the altered definition (version and timestamps are set by the caller) or None
for a no-op (``DROP COLUMN IF EXISTS`` on a missing column). Actions that depend on the rows
look at every partition of the table — all users of a USER table — while the write lock is
held, so no write can slip in between the check and the TABLE_ALTERED event.

Rules (choices marked):
- ADD COLUMN: the name must be new; NOT NULL without a literal DEFAULT is refused when the
  table has live rows; a literal DEFAULT also becomes the column's ``fill``, the value rows
  written before the column existed show.
- DROP COLUMN: never the primary key, never the last column.
- MODIFY COLUMN / ALTER COLUMN TYPE: every stored value (tombstones included) must cast to
  the new type (Arrow's safe cast: no overflow, no truncation), and so must the default and
  the fill. Choice: the primary key's type cannot change.
- SET NOT NULL: refused while any live row of any partition holds NULL; DROP NOT NULL is
  refused for the primary key.
- SET/DROP DEFAULT: the new default must suit the type; ``fill`` is unchanged.
- RENAME COLUMN: the new name must pass the definition rules and not be taken; storage
  names (``c<id>``) do not change, so old events and segments stay readable.
- SET TBLPROPERTIES (ACCESS_LEVEL = ...): SHARED tables only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..catalog import DELETED_COLUMN, SYSTEM_NAMESPACE, ColumnDef, TableDef
from ..errors import AlreadyExists, InvalidOperation, InvalidValue, NotFound, PermissionDenied
from ..events import CatalogEvent, Kind
from ..permissions import check_alter_table
from ..types import KalamType, coerce_value, parse_type
from . import statements as s
from .context import Ctx
from .ddl_table import (
    COLUMNS_PER_TABLE_MAX,
    FUNCTION_DEFAULT_KINDS,
    build_column,
    live_versions,
    parse_access_level,
    stored_default,
)
from .names import definition_problem
from .results import StatementResult, message_result

if TYPE_CHECKING:
    from ..engine import Engine

_ARROW_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


async def alter_table(ctx: Ctx, stmt: s.AlterTable) -> StatementResult:
    """Builds the altered definition under the lock, appends TABLE_ALTERED, then retypes the
    table's partitions."""
    namespace = ctx.namespace_of(stmt.namespace)
    if namespace == SYSTEM_NAMESPACE:
        raise PermissionDenied("System tables cannot be altered")
    altered: list[TableDef] = []

    def build() -> CatalogEvent | None:
        table = ctx.table(namespace, stmt.name)
        check_alter_table(ctx.session, table)
        new = ACTIONS[type(stmt.action)](ctx.engine, table, stmt.action)
        if new is None:
            return None
        new = replace(new, version=table.version + 1, updated_at_ms=ctx.now_ms())
        altered.append(new)
        return CatalogEvent(Kind.TABLE_ALTERED, {"table": new.to_json()})

    qualified = f"{namespace}.{stmt.name.lower()}"
    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id,
                              f"Table {qualified} unchanged: nothing to alter (skipped)")
    ctx.engine.store.retype(altered[0])
    return message_result(ctx.session.user_id, f"Table {qualified} altered successfully "
                          f"(schema version {altered[0].version})")


# ---- row checks ----------------------------------------------------------------------------


def _live(version: pa.Table) -> pa.Table:
    return version.filter(pc.invert(version.column(DELETED_COLUMN)))


def _has_live_rows(engine: Engine, table: TableDef) -> bool:
    return any(_live(v).num_rows for v in live_versions(engine, table))


def _check_no_nulls(engine: Engine, table: TableDef, column: ColumnDef) -> None:
    for version in live_versions(engine, table):
        if _live(version).column(column.storage_name).null_count:
            raise InvalidOperation(f"Cannot set column '{column.name}' NOT NULL: existing rows "
                                   "hold NULL in it")


def _check_cast(engine: Engine, table: TableDef, column: ColumnDef, target: KalamType) -> None:
    """Every stored value of ``column`` must convert to ``target`` (so must an empty array:
    a conversion Arrow cannot do at all is refused even on an empty table)."""
    arrow = target.arrow_type()
    arrays = [pa.array([], column.type.arrow_type())]
    arrays += [v.column(column.storage_name) for v in live_versions(engine, table)]
    for array in arrays:
        try:
            pc.cast(array, arrow)
        except _ARROW_CAST_ERRORS as exc:
            raise InvalidOperation(f"Cannot change column '{column.name}' from "
                                   f"{column.type.sql()} to {target.sql()}: existing values do "
                                   f"not convert ({exc})") from exc


def _check_value_fits(column: ColumnDef, target: KalamType, value: Any, what: str) -> None:
    try:
        coerce_value(value, target, column.name)
    except InvalidValue as exc:
        raise InvalidOperation(f"Cannot change column '{column.name}' to {target.sql()}: its "
                               f"{what} does not convert ({exc})") from exc


def _existing(table: TableDef, name: str) -> ColumnDef:
    column = table.column(name)
    if column is None:
        raise NotFound(f"Column '{name}' does not exist in table {table.qualified_name}")
    return column


def _with_column(table: TableDef, column: ColumnDef) -> TableDef:
    return replace(table, columns=tuple(column if c.id == column.id else c
                                        for c in table.columns))


# ---- actions -------------------------------------------------------------------------------


def _add_column(engine: Engine, table: TableDef, action: s.AddColumn) -> TableDef:
    spec = action.column
    if table.column(spec.name) is not None:
        raise AlreadyExists(f"Column '{spec.name}' already exists in table "
                            f"{table.qualified_name}")
    if len(table.columns) >= COLUMNS_PER_TABLE_MAX:
        raise InvalidOperation(f"A table may have at most {COLUMNS_PER_TABLE_MAX} columns")
    column = build_column(spec, table.next_column_id)
    fill = column.default.get("value") if column.default and "value" in column.default else None
    if not column.nullable and fill is None and _has_live_rows(engine, table):
        raise InvalidOperation(f"Cannot add NOT NULL column '{spec.name}' without a DEFAULT "
                               f"value: table {table.qualified_name} already has rows")
    column = replace(column, fill=fill)
    return replace(table, columns=(*table.columns, column),
                   next_column_id=table.next_column_id + 1)


def _drop_column(engine: Engine, table: TableDef, action: s.DropColumn) -> TableDef | None:
    column = table.column(action.name)
    if column is None and action.if_exists:
        return None
    column = _existing(table, action.name)
    if column.primary_key:
        raise InvalidOperation(f"Cannot drop primary key column '{column.name}'")
    if len(table.columns) == 1:
        raise InvalidOperation(f"Cannot drop column '{column.name}': it is the only column of "
                               f"table {table.qualified_name}")
    return replace(table, columns=tuple(c for c in table.columns if c.id != column.id))


def _modify_column(engine: Engine, table: TableDef, action: s.ModifyColumn) -> TableDef:
    column = _existing(table, action.name)
    target = parse_type(action.type_text)
    if column.primary_key:
        if target != column.type:
            raise InvalidOperation(f"Cannot change the type of primary key column "
                                   f"'{column.name}'")
        if action.nullable:
            raise InvalidOperation(f"Primary key column '{column.name}' cannot be NULL")
    if target != column.type:
        _check_cast(engine, table, column, target)
        _check_default_fits(column, target)
        if column.fill is not None:
            _check_value_fits(column, target, column.fill, "fill value for older rows")
    nullable = column.nullable if action.nullable is None else action.nullable
    if not nullable and column.nullable:
        _check_no_nulls(engine, table, column)
    return _with_column(table, replace(column, type=target, nullable=nullable))


def _check_default_fits(column: ColumnDef, target: KalamType) -> None:
    default = column.default
    if default is None:
        return
    if "fn" in default:
        if target.kind not in FUNCTION_DEFAULT_KINDS[default["fn"]]:
            raise InvalidOperation(f"Cannot change column '{column.name}' to {target.sql()}: "
                                   f"its DEFAULT {default['fn']}() cannot fill that type; drop "
                                   "the default first")
    else:
        _check_value_fits(column, target, default.get("value"), "DEFAULT value")


def _set_nullable(engine: Engine, table: TableDef, action: s.SetColumnNullable) -> TableDef:
    column = _existing(table, action.name)
    if action.nullable and column.primary_key:
        raise InvalidOperation(f"Primary key column '{column.name}' cannot be NULL")
    if not action.nullable and column.nullable:
        _check_no_nulls(engine, table, column)
    return _with_column(table, replace(column, nullable=action.nullable))


def _set_default(engine: Engine, table: TableDef, action: s.SetColumnDefault) -> TableDef:
    column = _existing(table, action.name)
    default = stored_default(column.name, column.type, action.default)
    return _with_column(table, replace(column, default=default))


def _rename_column(engine: Engine, table: TableDef, action: s.RenameColumn) -> TableDef:
    column = _existing(table, action.old_name)
    problem = definition_problem("Column", action.new_name)
    if problem:
        raise InvalidOperation(problem)
    other = table.column(action.new_name)
    if other is not None and other.id != column.id:
        raise AlreadyExists(f"Column '{action.new_name}' already exists in table "
                            f"{table.qualified_name}")
    return _with_column(table, replace(column, name=action.new_name))


def _set_properties(engine: Engine, table: TableDef, action: s.SetTableProperties) -> TableDef:
    assert set(action.properties) <= {"ACCESS_LEVEL"}, action.properties
    if table.table_type != "SHARED":
        raise InvalidOperation(f"ACCESS_LEVEL is only valid for SHARED tables, not "
                               f"{table.table_type}")
    level = parse_access_level(action.properties["ACCESS_LEVEL"])
    return replace(table, options=replace(table.options, access_level=level))


ACTIONS: dict[type, Callable[[Engine, TableDef, Any], TableDef | None]] = {
    s.AddColumn: _add_column,
    s.DropColumn: _drop_column,
    s.ModifyColumn: _modify_column,
    s.SetColumnNullable: _set_nullable,
    s.SetColumnDefault: _set_default,
    s.RenameColumn: _rename_column,
    s.SetTableProperties: _set_properties,
}
