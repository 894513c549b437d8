"""View handlers (PROTOCOL §2.7, §3.4 "CREATE VIEW (admin only)"): CREATE / DROP VIEW, and
the guards that keep table statements off views.

Semantics (the protocol only says CREATE VIEW is admin only; the rest are Sluice choices):

- ``CREATE [OR REPLACE] VIEW [IF NOT EXISTS] [ns.]v [(cols)] AS <query>``: admin only
  (``plan.PREFLIGHT``, checked again here for the effective session). The namespace must
  exist and may not be ``system``. Views and tables share one name space per namespace: a
  view may not take a table's name, nor a table a view's (both checked under the write
  lock). An existing view: error (AlreadyExists), unless IF NOT EXISTS (nothing written,
  "... already exists (skipped)") or OR REPLACE (the definition is replaced); the two may
  not be combined. ``$n`` parameters are not allowed in the query.
- Validation at creation: the query is prepared and run with ``LIMIT 0`` *as the creating
  admin*, so unknown tables (TableNotFound), unknown columns (InvalidSql), unreadable
  tables (PermissionDenied) and a reference back to the view being defined, directly or
  through other views ("recursive view", InvalidSql) fail the statement. A column list must
  name every output column exactly once.
- Storage: one VIEW_CREATED catalog event holding the query as PostgreSQL SQL text with
  every table reference qualified by the creating session's namespace (bare names mean
  what they meant at creation), the column list and the creation time; VIEW_DROPPED removes
  it. Views therefore survive restarts (WAL replay and catalog checkpoints) and go away with
  their namespace (DROP NAMESPACE).
- Reading (``query.prepare``): a reference to a view is replaced by its query as a subquery
  aliased by the reference's alias (or the view name), the column list renaming its output
  columns; the tables inside are resolved with the **reader's** session and permissions
  (security invoker): a USER table inside a view shows only the reader's own partition, a
  PRIVATE shared table or ``system.*`` inside a view is refused to a role that could not
  read it directly, and ``CURRENT_USER()``/``NOW()`` are the reader's. Views nest at most
  ``query.VIEW_NESTING_MAX`` levels; no implicit ORDER BY is added over a view.
- A view whose tables or views were dropped later stays defined; reading it fails with
  TableNotFound (dropping is not refused for dependants).
- ``DROP VIEW [IF EXISTS] [ns.]v``: admin only. On a table name it fails and points to DROP
  TABLE (even with IF EXISTS); DROP/ALTER TABLE on a view name fails and points to DROP VIEW.
- Views are read-only: INSERT/UPDATE/DELETE naming a view fail with InvalidOperation
  "Views are read-only".
- ``system.tables`` lists views with ``table_type`` ``VIEW`` (``system_tables.view_row``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import trio
from sqlglot import exp

from ..catalog import SYSTEM_NAMESPACE, ViewDef
from ..errors import AlreadyExists, InvalidOperation, InvalidSql, NotFound, PermissionDenied
from ..events import CatalogEvent, Kind
from ..permissions import require_admin
from ..query import QueryOptions, expand_views, run
from . import ddl_table, dml
from . import statements as s
from .context import Ctx
from .results import StatementResult, message_result
from .select import prepare_for

Handler = Callable[[Ctx, Any], Any]


async def create_view(ctx: Ctx, stmt: s.CreateView) -> StatementResult:
    namespace, name = ctx.namespace_of(stmt.namespace), stmt.name.lower()
    qualified = f"{namespace}.{name}"
    require_admin(ctx.session, "CREATE VIEW")
    if namespace == SYSTEM_NAMESPACE:
        raise PermissionDenied("Views cannot be created in the 'system' namespace")
    if stmt.or_replace and stmt.if_not_exists:
        raise InvalidSql("CREATE VIEW cannot combine OR REPLACE and IF NOT EXISTS")
    ctx.require_namespace(namespace)
    query = stmt.query.copy()
    if any(isinstance(node, exp.Parameter | exp.Placeholder) for node in query.walk()):
        raise InvalidSql("A view's query cannot use parameters ($n)")
    _qualify(query, ctx.namespace_of(None))
    output = await _probe_columns(ctx, query, (namespace, name))
    columns = stmt.columns
    if columns and len(columns) != len(output):
        raise InvalidSql(f"View '{qualified}' names {len(columns)} column(s) but its query "
                         f"returns {len(output)}")
    names = columns or tuple(output)
    if len({n.lower() for n in names}) != len(names):
        raise InvalidSql(f"View '{qualified}' has duplicate column names: {', '.join(names)}")
    sql = query.sql(dialect="postgres")
    replaced: list[bool] = []

    def build() -> CatalogEvent | None:
        catalog = ctx.engine.catalog
        if namespace not in catalog.namespaces:
            raise NotFound(f"Namespace '{namespace}' does not exist")
        if catalog.table(namespace, name) is not None:
            raise AlreadyExists(f"'{qualified}' is a table; a view cannot have the same name")
        if catalog.view(namespace, name) is not None:
            if stmt.if_not_exists:
                return None
            if not stmt.or_replace:
                raise AlreadyExists(f"View '{qualified}' already exists")
            replaced.append(True)
        # Again under the lock: another view may have been replaced since the probe.
        check = query.copy()  # qualified: its bare names are its own CTEs
        expand_views(check, namespace, catalog, ((namespace, name),),
                     {id(t) for t in check.find_all(exp.Table) if not t.args.get("db")})
        view = ViewDef(namespace, name, sql, tuple(columns), ctx.now_ms())
        return CatalogEvent(Kind.VIEW_CREATED, view.to_json())

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id,
                              f"View {qualified} already exists (skipped)")
    verb = "replaced" if replaced else "created"
    return message_result(ctx.session.user_id, f"View {qualified} {verb} successfully")


async def drop_view(ctx: Ctx, stmt: s.DropView) -> StatementResult:
    namespace, name = ctx.namespace_of(stmt.namespace), stmt.name.lower()
    qualified = f"{namespace}.{name}"
    require_admin(ctx.session, "DROP VIEW")

    def build() -> CatalogEvent | None:
        catalog = ctx.engine.catalog
        if catalog.view(namespace, name) is None:
            if catalog.table(namespace, name) is not None or namespace == SYSTEM_NAMESPACE:
                raise InvalidOperation(f"'{qualified}' is a table, not a view; use DROP TABLE")
            if stmt.if_exists:
                return None
            raise NotFound(f"View '{qualified}' does not exist")
        return CatalogEvent(Kind.VIEW_DROPPED, {"namespace": namespace, "name": name})

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id, f"View {qualified} does not exist (skipped)")
    return message_result(ctx.session.user_id, f"View {qualified} dropped successfully")


def _qualify(query: exp.Expression, namespace: str) -> None:
    """Gives every bare table reference (CTE names excepted) ``namespace``, in place."""
    cte_names = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    for node in query.find_all(exp.Table):
        if not node.args.get("db") and node.name.lower() not in cte_names \
                and isinstance(node.this, exp.Identifier):
            node.set("db", exp.to_identifier(namespace))


async def _probe_columns(ctx: Ctx, query: exp.Expression, view: tuple[str, str]) -> list[str]:
    """Prepares (as the creating session) and runs the query with LIMIT 0: its output column
    names, or the error reading it would raise."""
    probe = exp.select("*").from_(exp.Subquery(
        this=query.copy(), alias=exp.TableAlias(this=exp.to_identifier("__view")))).limit(0)
    prepared = prepare_for(ctx, probe, QueryOptions(None, None, implicit_order=False,
                                                    view_chain=(view,)))
    table = await trio.to_thread.run_sync(run, prepared)
    return list(table.column_names)


# ---- table statements that name a view ----------------------------------------------------


def _refuse_view(ctx: Ctx, namespace: str | None, name: str, message: str) -> None:
    ns = ctx.namespace_of(namespace)
    catalog = ctx.engine.catalog
    if catalog.table(ns, name) is None and catalog.view(ns, name) is not None:
        raise InvalidOperation(message.format(name=f"{ns}.{name.lower()}"))


class _ViewNameGuard(Ctx):
    """A Ctx whose catalog writes first refuse a name a view holds (under the write lock)."""

    __slots__ = ("guarded_name",)

    async def write_catalog(self, build: Callable[[], CatalogEvent | None]) -> int | None:
        def checked() -> CatalogEvent | None:
            namespace, name = self.guarded_name
            if self.engine.catalog.view(namespace, name) is not None:
                raise AlreadyExists(f"'{namespace}.{name}' is a view; a table cannot have the "
                                    f"same name")
            return build()

        return await Ctx.write_catalog(self, checked)


async def create_table(ctx: Ctx, stmt: s.CreateTable) -> StatementResult:
    guarded = _ViewNameGuard(**{f.name: getattr(ctx, f.name) for f in fields(Ctx)})
    guarded.guarded_name = (ctx.namespace_of(stmt.namespace), stmt.name.lower())
    return await ddl_table.create_table(guarded, stmt)


async def drop_table(ctx: Ctx, stmt: s.DropTable) -> StatementResult:
    _refuse_view(ctx, stmt.namespace, stmt.name, "'{name}' is a view, not a table; "
                                                 "use DROP VIEW")
    return await ddl_table.drop_table(ctx, stmt)


async def alter_table(ctx: Ctx, stmt: s.AlterTable) -> StatementResult:
    _refuse_view(ctx, stmt.namespace, stmt.name, "'{name}' is a view; views cannot be "
                                                 "altered (use CREATE OR REPLACE VIEW)")
    return await ddl_table.alter_table(ctx, stmt)


def _dml_target(statement: s.Statement) -> tuple[str | None, str] | None:
    if isinstance(statement, s.InsertValues):
        return statement.namespace, statement.table
    node = getattr(statement, "expression", None)
    target = node.this if node is not None else None
    if isinstance(target, exp.Schema):
        target = target.this
    if isinstance(target, exp.Table) and isinstance(target.this, exp.Identifier):
        return (target.db or None), target.name
    return None


def read_only(handler: Handler) -> Handler:
    """Wraps a DML handler: a target that names a view is refused."""

    async def guarded(ctx: Ctx, statement: Any) -> StatementResult:
        target = _dml_target(statement)
        if target is not None:
            _refuse_view(ctx, *target, "Views are read-only: '{name}' is a view")
        return await handler(ctx, statement)

    return guarded


insert, update, delete = read_only(dml.insert), read_only(dml.update), read_only(dml.delete)
