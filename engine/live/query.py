"""A live query's SQL, checked and compiled once (PROTOCOL §6.5 "Validation" and "Live
filtering").

Allowed shape: ``SELECT <columns | *> FROM namespace.table [WHERE condition]`` and nothing
else. Each refusal is a ``LiveQueryError`` carrying the WebSocket error code of §6.5:

- ``INVALID_SQL``: not a SELECT; WITH, ORDER BY, LIMIT, OFFSET, GROUP BY, HAVING, DISTINCT,
  JOINs, several tables, subqueries, a table without its namespace, anything but plain
  column names in the select list, an explicit ``_seq``/``_deleted`` there, an unknown
  column, a WHERE condition the live filter cannot evaluate;
- ``UNAUTHORIZED``: the ``system`` namespace for non-admins, a SHARED table whose access
  level the caller lacks;
- ``UNSUPPORTED``: ``system`` tables for admins (they are not change-tracked);
- ``NOT_FOUND``: an unknown table.

The WHERE condition is compiled by the topics' vectorized compiler (engine/topics/where.py:
``pyarrow.compute`` over whole Arrow batches, never a query per change) after
``CURRENT_USER``/``CURRENT_USER()``/``CURRENT_USER_ID()`` are replaced by the subscriber's
id. Sluice choice where the reference is lenient: a condition that cannot be compiled is
refused with ``INVALID_SQL`` instead of silently delivering every change unfiltered. The
same predicate filters the initial load, so both phases agree on which rows match.

Parsing is cached: ``PARSE_CACHE_ENTRIES`` distinct SQL texts keep their checked sqlglot
tree (read only; the WHERE is copied before binding), because clients subscribe with the
same few texts and sqlglot's parse is most of a subscribe's cost (~0.6 ms).

Pure and synchronous (trio thread, reads the catalog).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from ..catalog import DELETED_COLUMN, SEQ_COLUMN, SYSTEM_NAMESPACE, Catalog, ColumnDef, TableDef
from ..errors import EngineError
from ..permissions import can_read_shared
from ..session import Session
from ..topics.where import Predicate, compile_where

_FORBIDDEN_CLAUSES = (("with_", "WITH"), ("with", "WITH"), ("order", "ORDER BY"),
                      ("limit", "LIMIT"), ("offset", "OFFSET"), ("group", "GROUP BY"),
                      ("having", "HAVING"), ("distinct", "DISTINCT"), ("joins", "JOIN"),
                      ("qualify", "QUALIFY"), ("windows", "WINDOW"))


PARSE_CACHE_ENTRIES = 256  # distinct subscription SQL texts whose parsed tree is kept


class LiveQueryError(EngineError):
    """A refused subscription; ``code`` is the WebSocket error code of PROTOCOL §6.5."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class LiveQuery:
    table: TableDef
    columns: tuple[ColumnDef, ...]  # projected columns in select-list order
    star: bool  # SELECT *: rows also carry _deleted
    predicate: Predicate | None  # None: no WHERE

    def matches(self, batch: pa.RecordBatch) -> list[int]:
        """Indices of the rows of ``batch`` (storage column names) the WHERE accepts."""
        if self.predicate is None:
            return list(range(batch.num_rows))
        return self.predicate(batch)


def _invalid(reason: str) -> LiveQueryError:
    return LiveQueryError("INVALID_SQL", f"Invalid SQL: {reason}")


def compile_live_query(sql: str, session: Session, catalog: Catalog) -> LiveQuery:
    """Checks ``sql`` for ``session`` and compiles it; raises ``LiveQueryError``."""
    select = _parse(sql)
    table = _table(select, session, catalog)
    star, columns = _projection(select, table)
    where = select.args.get("where")
    predicate = None if where is None else _predicate(where.this, table, session)
    return LiveQuery(table, columns, star, predicate)


@functools.lru_cache(maxsize=PARSE_CACHE_ENTRIES)
def _parse(sql: str) -> exp.Select:
    """The checked SELECT of ``sql`` (cached: callers must not modify it)."""
    try:
        parsed = sqlglot.parse(sql, read="postgres")
    except (ParseError, TokenError) as exc:
        raise _invalid(str(exc).splitlines()[0]) from exc
    statements = [p for p in parsed if p is not None]
    if len(statements) != 1:
        raise _invalid("a subscription is exactly one SELECT statement")
    select = statements[0]
    if not isinstance(select, exp.Select):
        raise _invalid("a subscription must be a SELECT query")
    for key, name in _FORBIDDEN_CLAUSES:
        if select.args.get(key):
            raise _invalid(f"Subscription query does not support {name}. Use "
                           "SELECT <columns> FROM namespace.table [WHERE ...]")
    if any(select.find_all(exp.Subquery, exp.Union)) or \
            len(list(select.find_all(exp.Select))) > 1:
        raise _invalid("Subscription query does not support subqueries")
    return select


def _table(select: exp.Select, session: Session, catalog: Catalog) -> TableDef:
    source = select.args.get("from_") or select.args.get("from")
    node = source.this if source is not None else None
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        raise _invalid("Subscription query needs exactly one table: FROM namespace.table")
    if not node.db:
        raise _invalid("Query must use namespace.table format")
    namespace, name = node.db.lower(), node.name.lower()
    if namespace == SYSTEM_NAMESPACE:
        if not session.is_admin:
            raise LiveQueryError("UNAUTHORIZED", "Access denied: system tables require the "
                                 "DBA or System role")
        raise LiveQueryError("UNSUPPORTED", "Live queries on system tables are not supported")
    table = catalog.table(namespace, name)
    if table is None:
        raise LiveQueryError("NOT_FOUND", f"Not found: Table not found: {namespace}.{name}")
    if table.table_type == "SHARED" and not can_read_shared(session, table):
        raise LiveQueryError("UNAUTHORIZED", f"Access denied to shared table "
                             f"'{table.qualified_name}'")
    return table


def _projection(select: exp.Select, table: TableDef) -> tuple[bool, tuple[ColumnDef, ...]]:
    items = select.expressions
    if len(items) == 1 and isinstance(items[0], exp.Star):
        return True, table.columns
    columns: list[ColumnDef] = []
    for item in items:
        if not isinstance(item, exp.Column) or not isinstance(item.this, exp.Identifier):
            raise _invalid(f"Subscription select list supports column names only, not "
                           f"'{item.sql()}'")
        name = item.name
        if name.lower() in (SEQ_COLUMN, DELETED_COLUMN):
            raise _invalid(f"'{name}' must not be selected explicitly: _seq is added to "
                           "every row automatically")
        column = table.column(name)
        if column is None:
            raise _invalid(f"Column '{name}' does not exist in table "
                           f"'{table.qualified_name}'")
        columns.append(column)
    return False, tuple(columns)


def _bind_current_user(node: exp.Expression, user_id: str) -> exp.Expression:
    if isinstance(node, exp.CurrentUser | exp.CurrentUserId) or (
            isinstance(node, exp.Anonymous) and not node.expressions
            and node.name.upper() in ("CURRENT_USER", "CURRENT_USER_ID", "KDB_CURRENT_USER")):
        return exp.Literal.string(user_id)
    return node


def _predicate(condition: exp.Expression, table: TableDef, session: Session) -> Predicate:
    bound = condition.copy().transform(_bind_current_user, session.user_id)
    for column in bound.find_all(exp.Column):
        if column.table:  # the topics compiler refuses qualified names; allow t.col and ns.t.col
            column.set("table", None)
            column.set("db", None)
    try:
        return compile_where(bound.sql(dialect="postgres"), table)
    except EngineError as exc:
        message = str(exc).replace(" in a topic route WHERE", "").replace(
            "a topic route WHERE", "a live query WHERE")
        raise _invalid(f"{message} (live query WHERE supports comparisons, AND/OR/NOT, "
                       "IS NULL, IN, BETWEEN, LIKE/ILIKE and arithmetic)") from exc
