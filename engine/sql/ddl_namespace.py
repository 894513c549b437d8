"""Namespace handlers (PROTOCOL §3.1, §3.2): CREATE / DROP / ALTER NAMESPACE, SHOW
NAMESPACES and USE.

Namespace names are stored lower-case. Role checks (admin only for CREATE/DROP/ALTER) ran
at classify time (``plan.PREFLIGHT``). Choices:
- DROP NAMESPACE refuses a namespace that still has tables unless CASCADE is given (a
  Sluice decision; the reference drops them either way). With CASCADE one NAMESPACE_DROPPED
  event removes the namespace and its tables from the catalog; their partitions and files
  are then discarded like DROP TABLE's.
- ``default`` and ``system`` can never be dropped (the parser already refuses every
  reserved name; the handler checks again).
- CREATE NAMESPACE IF NOT EXISTS on an existing namespace succeeds with
  "Namespace 'x' already exists" (the reference's text) and writes nothing.
"""

from __future__ import annotations

from ..catalog import DEFAULT_NAMESPACE, SYSTEM_NAMESPACE, TableDef
from ..errors import AlreadyExists, InvalidOperation, NotFound
from ..events import CatalogEvent, Kind
from . import statements as s
from .context import Ctx
from .ddl_table import discard_table_data
from .results import StatementResult, message_result, rows_result
from .system_tables import namespaces

UNDROPPABLE = (DEFAULT_NAMESPACE, SYSTEM_NAMESPACE)


async def create_namespace(ctx: Ctx, stmt: s.CreateNamespace) -> StatementResult:
    name = stmt.name.lower()

    def build() -> CatalogEvent | None:
        if name in ctx.engine.catalog.namespaces or name == SYSTEM_NAMESPACE:
            if stmt.if_not_exists:
                return None
            raise AlreadyExists(f"Namespace '{name}' already exists")
        return CatalogEvent(Kind.NAMESPACE_CREATED, {"name": name,
                                                     "created_at_ms": ctx.now_ms()})

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id, f"Namespace '{name}' already exists")
    return message_result(ctx.session.user_id, f"Namespace '{name}' created successfully")


async def drop_namespace(ctx: Ctx, stmt: s.DropNamespace) -> StatementResult:
    """Drops a namespace (and, with CASCADE, its tables and their data)."""
    name = stmt.name.lower()
    if name in UNDROPPABLE:
        raise InvalidOperation(f"Namespace '{name}' is reserved and cannot be dropped")
    dropped: list[TableDef] = []

    def build() -> CatalogEvent | None:
        catalog = ctx.engine.catalog
        if name not in catalog.namespaces:
            if stmt.if_exists:
                return None
            raise NotFound(f"Namespace '{name}' does not exist")
        tables = catalog.tables_in(name)
        if tables and not stmt.cascade:
            raise InvalidOperation(
                f"Namespace '{name}' contains {len(tables)} table(s); drop them first or use "
                f"DROP NAMESPACE {name} CASCADE")
        dropped.extend(tables)
        return CatalogEvent(Kind.NAMESPACE_DROPPED, {"name": name})

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id,
                              f"Namespace '{name}' does not exist (skipped)")
    for table in dropped:
        await discard_table_data(ctx.engine, table)
    suffix = f" with {len(dropped)} table(s)" if dropped else ""
    return message_result(ctx.session.user_id, f"Namespace '{name}' dropped successfully{suffix}")


async def alter_namespace(ctx: Ctx, stmt: s.AlterNamespace) -> StatementResult:
    """ALTER NAMESPACE n SET DESCRIPTION '...'."""
    name = stmt.name.lower()

    def build() -> CatalogEvent:
        if name not in ctx.engine.catalog.namespaces:
            raise NotFound(f"Namespace '{name}' does not exist")
        return CatalogEvent(Kind.NAMESPACE_ALTERED, {"name": name,
                                                     "description": stmt.description})

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id, f"Namespace '{name}' altered successfully")


async def show_namespaces(ctx: Ctx, stmt: s.ShowNamespaces) -> StatementResult:
    """Every namespace, with the system.namespaces columns (any role may list them)."""
    table, types = namespaces(ctx.engine, ctx.session)
    return rows_result(ctx.session.user_id, table, types)


async def use_namespace(ctx: Ctx, stmt: s.UseNamespace) -> StatementResult:
    """Checks the namespace exists; ``execute.py`` applies it to the rest of the batch only
    (later HTTP requests must send ``namespace_id`` themselves, §3.1)."""
    name = stmt.name.lower()
    ctx.require_namespace(name)
    return message_result(ctx.session.user_id, f"Namespace switched to '{name}'")
