"""SELECT (and EXPLAIN) handlers: prepare on the trio thread, run DataFusion in a worker
(primary-key point lookups, answered from the index, run inline)."""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

import pyarrow as pa
import trio

from ..errors import InvalidOperation
from ..ids import ulid, uuid_v7
from ..query import PreparedQuery, QueryOptions, prepare, prepare_point, run
from ..types import KalamType, type_from_arrow
from .context import Ctx
from .results import StatementResult, rows_result
from .statements import Explain, Query

if TYPE_CHECKING:
    from sqlglot import exp


def prepare_for(ctx: Ctx, tree: exp.Expression, options: QueryOptions) -> PreparedQuery:
    """Resolves and checks ``tree`` for the context's effective user."""
    from .system_tables import SYSTEM_TABLES

    engine = ctx.engine
    system = {name: partial(build, engine) for name, build in SYSTEM_TABLES.items()}
    clock = engine.clock.now_ms
    id_functions = {"SNOWFLAKE_ID": engine.sql_ids.next,
                    "UUID_V7": lambda: uuid_v7(clock, os.urandom),
                    "ULID": lambda: ulid(clock, os.urandom)}
    return prepare(tree, ctx.session, ctx.params, catalog=engine.catalog, store=engine.store,
                   system_tables=system, now_ms=ctx.now_ms(),
                   options=replace(options, impersonating=ctx.impersonating),
                   id_functions=id_functions)


async def query(ctx: Ctx, statement: Query) -> StatementResult:
    """A query's rows. A primary-key point lookup (``query.prepare_point``) is answered on
    the trio thread: reading one indexed row is far cheaper than a hop to a worker thread.
    Everything else runs DataFusion in a worker thread."""
    engine = ctx.engine
    config = engine.config
    options = QueryOptions(config.default_query_limit_rows, config.max_query_limit_rows,
                           include_uncommitted=ctx.txn is not None,
                           impersonating=ctx.impersonating)
    prepared = prepare_point(statement.expression, ctx.session, ctx.params,
                             catalog=engine.catalog, store=engine.store, now_ms=ctx.now_ms(),
                             options=options)
    if prepared is None:
        prepared = prepare_for(ctx, statement.expression, options)
    if prepared.direct is not None:
        table = run(prepared)  # one indexed row: no DataFusion, nothing blocks
    else:
        table = await trio.to_thread.run_sync(run, prepared)
    types, flags = describe_columns(prepared, table)
    return rows_result(ctx.session.user_id, table, types, flags,
                       mask_secrets=not ctx.session.is_admin)


async def explain(ctx: Ctx, statement: Explain) -> StatementResult:
    inner = statement.statement
    if not isinstance(inner, Query):
        raise InvalidOperation("EXPLAIN is only supported for SELECT statements")
    config = ctx.engine.config
    prepared = prepare_for(ctx, inner.expression, QueryOptions(
        config.default_query_limit_rows, config.max_query_limit_rows))
    keyword = "EXPLAIN ANALYZE " if statement.analyze else "EXPLAIN "
    explained = PreparedQuery(keyword + prepared.sql, prepared.sources, prepared.params,
                              prepared.declared)
    table = await trio.to_thread.run_sync(run, explained)
    table = pa.table({name: table.column(name).cast(pa.string()) for name in table.column_names})
    return rows_result(ctx.session.user_id, table, [KalamType("Text")] * table.num_columns)


def describe_columns(prepared: PreparedQuery, table: pa.Table
                     ) -> tuple[list[KalamType], list[tuple[str, ...]]]:
    """Each output column's declared type (when it is a table column whose Arrow type came
    through unchanged) or the type mapped back from Arrow, and its schema flags."""
    types, flags = [], []
    for field in table.schema:
        declared = prepared.declared.get(field.name)
        if declared is not None and declared[0].arrow_type() == field.type:
            types.append(declared[0])
            flags.append(tuple(declared[1]))
        else:
            types.append(type_from_arrow(field.type))
            flags.append(())
    return types, flags
