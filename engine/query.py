"""SELECT on DataFusion: a fresh context per query that holds only what the caller may read.

Steps (``prepare`` on the trio thread, ``run`` in a worker thread):
  0. expand views: a table reference that names a view becomes the view's stored query as a
     subquery aliased by the reference's alias (or the view name, with the view's column
     list as column aliases); its own references are expanded in turn, then resolved like
     any other in step 1 — with the *reader's* session (security invoker, see
     ``sql/ddl_view.py``). A view reached again along its own chain is refused ("recursive
     view"), and so is a chain longer than ``VIEW_NESTING_MAX``;
  1. resolve every table reference (CTE names excepted) in the catalog or among the system
     tables, and check the caller may read it;
  2. take the data: for USER and STREAM tables only the caller's own partition — other
     users' rows are never registered, so no SQL shape can reach them; deleted versions
     hidden unless the query mentions ``_deleted``; expired STREAM rows hidden;
  3. rewrite the AST: each table becomes a private name (``__t0`` …) keeping its alias,
     ``KDB_CURRENT_USER()``/``KDB_CURRENT_ROLE()`` become literals, the implicit ORDER BY
     primary key and the row limits of PROTOCOL §3.1 are added;
  4. run with DDL, DML and statements disabled; ``$n`` parameters are bound by DataFusion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from datafusion import SessionContext, SQLOptions
from sqlglot import exp

from .catalog import (
    DELETED_COLUMN,
    SEQ_COLUMN,
    SYSTEM_NAMESPACE,
    Catalog,
    ColumnDef,
    TableDef,
)
from .errors import InvalidOperation, InvalidSql, TableNotFound
from .partition import storage_schema
from .permissions import check_read, require_admin
from .session import Session
from .store import TableStore
from .types import KalamType, coerce_value

# Views expanded one inside another along one chain of references (a view over a view counts
# two levels); a longer chain is refused instead of expanded.
VIEW_NESTING_MAX = 16

SystemTableFn = Callable[[Session], tuple[pa.Table, list[KalamType]]]
_NO_KEY = object()


@dataclass(frozen=True, slots=True)
class RowSnapshot:
    """The committed chunks a query will read, captured on the trio thread; ``materialize``
    (pure Arrow, any thread) applies the visibility filters and the column names."""

    tables: tuple[pa.Table, ...]
    schema: pa.Schema
    names: tuple[str, ...]
    hide_deleted: bool
    seq_floor: int | None  # STREAM TTL: versions with a smaller _seq have expired

    def materialize(self) -> pa.Table:
        kept = []
        for table in self.tables:
            if self.hide_deleted:
                deleted = table.column(DELETED_COLUMN)
                if pc.any(deleted).as_py():  # most chunks hold no tombstone: no copy then
                    table = table.filter(pc.invert(deleted))
            if self.seq_floor is not None:
                table = table.filter(pc.greater_equal(table.column(SEQ_COLUMN),
                                                      self.seq_floor))
            kept.append(table)
        data = pa.concat_tables(kept) if kept else self.schema.empty_table()
        return data.rename_columns(list(self.names))


@dataclass(slots=True)
class Source:
    """One table reference resolved to the data the caller may see."""

    private_name: str
    table: TableDef | None  # None for a system table
    data: RowSnapshot | pa.Table
    types: dict[str, KalamType]  # column name -> declared type
    pk: str | None

    def rows(self) -> pa.Table:
        return self.data.materialize() if isinstance(self.data, RowSnapshot) else self.data


@dataclass(slots=True)
class PreparedQuery:
    sql: str
    sources: list[Source]
    params: dict[str, Any]
    declared: dict[str, tuple[KalamType, list[str]]] = field(default_factory=dict)
    # Primary-key point lookup answered without DataFusion: (output name, column) pairs.
    direct: list[tuple[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class QueryOptions:
    default_limit: int | None  # None: no implicit LIMIT and no cap (UPDATE/DELETE matching)
    max_limit: int | None
    implicit_order: bool = True
    include_uncommitted: bool = False  # the writer's own tentative changes (DML matching)
    show_deleted: bool | None = None  # None: only if the query mentions _deleted
    impersonating: bool = False  # EXECUTE AS USER: SHARED tables are refused
    # Views already being expanded around this query, outermost first, as (namespace, name).
    # CREATE VIEW validation passes the view being defined, so a reference back to it is
    # recursion and the nesting limit counts it.
    view_chain: tuple[tuple[str, str], ...] = ()


def prepare(tree: exp.Expression, session: Session, params: list[Any], *, catalog: Catalog,
            store: TableStore, system_tables: dict[str, SystemTableFn], now_ms: int,
            options: QueryOptions,
            id_functions: dict[str, Callable[[], Any]] | None = None) -> PreparedQuery:
    """Resolves, checks and rewrites a query. Raises TableNotFound/PermissionDenied/InvalidSql.

    ``NOW()``/``CURRENT_TIMESTAMP`` become the engine clock's ``now_ms`` (one value per
    statement, as in PostgreSQL); each call of a function in ``id_functions``
    (``SNOWFLAKE_ID``, ``UUID_V7``, ``ULID``) becomes one value generated here, on the trio
    thread (one per occurrence, not per row)."""
    tree = tree.copy()
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    # Table nodes that name a CTE, not a table: the query's own, then those inside views.
    cte_refs = {id(node) for node in tree.find_all(exp.Table)
                if not node.args.get("db") and node.name.lower() in cte_names}
    has_views = expand_views(tree, session.namespace, catalog, options.view_chain, cte_refs)
    mentions_deleted = options.show_deleted
    if mentions_deleted is None:
        mentions_deleted = any(c.name.lower() == DELETED_COLUMN for c in tree.find_all(exp.Column))
    sources: list[Source] = []
    tables = [node for node in tree.find_all(exp.Table) if id(node) not in cte_refs]
    point_keys: dict[int, Any] = {}  # id(table node) -> primary-key value
    if len(tables) == 1 and not cte_names and not has_views:
        _find_point_key(tree, tables[0], session, params, catalog, point_keys)
    for node in list(tree.find_all(exp.Table)):
        if id(node) in cte_refs:
            continue
        if not isinstance(node.this, exp.Identifier):
            raise InvalidSql("Table functions are not allowed in queries")
        source = _resolve(node, session, len(sources), catalog=catalog, store=store,
                          system_tables=system_tables, now_ms=now_ms,
                          show_deleted=mentions_deleted, options=options,
                          point_key=point_keys.get(id(node), _NO_KEY))
        sources.append(source)
        alias = node.alias or node.name
        node.replace(exp.Table(this=exp.to_identifier(source.private_name),
                               alias=exp.TableAlias(this=exp.to_identifier(alias))))
    direct = _direct_columns(tree, sources[0]) if point_keys and len(sources) == 1 else None
    _bind_context_functions(tree, session, now_ms, id_functions or {})
    # A view's output need not contain its table's key: no implicit order over views.
    if len(sources) == 1 and options.implicit_order and not has_views:
        _add_implicit_order(tree, sources[0])
    if options.default_limit is not None and options.max_limit is not None:
        tree = _apply_limits(tree, options.default_limit, options.max_limit)
    declared = {name: (t, _flags(src, name)) for src in sources for name, t in src.types.items()}
    sql = "" if direct is not None else tree.sql(dialect="postgres")
    return PreparedQuery(sql, sources, {str(i + 1): value for i, value in enumerate(params)},
                         declared, direct)


# The only arguments a point lookup's SELECT, its table reference and its LIMIT may carry.
_POINT_SELECT_ARGS = frozenset({"expressions", "from_", "where", "limit"})
_POINT_TABLE_ARGS = frozenset({"this", "db", "alias"})


def prepare_point(tree: exp.Expression, session: Session, params: list[Any], *,
                  catalog: Catalog, store: TableStore, now_ms: int, options: QueryOptions
                  ) -> PreparedQuery | None:
    """``prepare`` for the commonest query, a primary-key point lookup that needs no
    DataFusion: ``SELECT <*|c|c AS x, ...> FROM [ns.]t [AS a] WHERE <pk> = <literal|$n>
    [LIMIT n>=1]`` on a table (not a view or system table). None for anything else (the
    caller then uses ``prepare``, which answers the same query the same way, only slower).

    The tree is only read, never copied or changed (it may be shared through the statement
    cache), and the answer is the key's latest version from the index: the returned query
    has ``direct`` set, and ``run`` on it is a few microseconds of Arrow work that callers
    may do on the trio thread. Raises what ``prepare`` raises for the same query:
    PermissionDenied, or InvalidOperation for a SHARED table under EXECUTE AS USER."""
    shape = _point_shape(tree)
    if shape is None:
        return None
    node, key_column, key_node = shape
    namespace = (node.db or session.namespace).lower()
    if namespace == SYSTEM_NAMESPACE:
        return None
    table = catalog.table(namespace, node.name.lower())
    pk = table.pk if table is not None else None
    if table is None or pk is None or key_column.lower() != pk.name.lower():
        return None
    names = [*(c.name for c in table.columns), SEQ_COLUMN, DELETED_COLUMN]
    alias = node.args.get("alias")
    qualifier = alias.this if alias is not None else node.this
    direct = _output_pairs(tree.expressions, names, (_identifier_name(qualifier),))
    key = _key_value(_constant(key_node, params), pk)
    if direct is None or key is _NO_KEY:
        return None
    show_deleted = options.show_deleted
    if show_deleted is None:  # as in ``prepare``: a column named _deleted is mentioned
        mentioned = [item.this if isinstance(item, exp.Alias) else item
                     for item in tree.expressions]
        show_deleted = any(isinstance(c, exp.Column) and c.name.lower() == DELETED_COLUMN
                           for c in mentioned)
    source = _resolve(node, session, 0, catalog=catalog, store=store, system_tables={},
                      now_ms=now_ms, show_deleted=show_deleted, options=options, point_key=key)
    declared = {name: (t, _flags(source, name)) for name, t in source.types.items()}
    return PreparedQuery("", [source], {str(i + 1): v for i, v in enumerate(params)},
                         declared, direct)


def _point_shape(tree: exp.Expression
                 ) -> tuple[exp.Table, str, exp.Expression] | None:
    """(table reference, key column name, key literal or parameter) when ``tree`` is shaped
    like a point lookup (``prepare_point``); a handful of type checks, no tree walk."""
    if not isinstance(tree, exp.Select):
        return None
    if any(value for arg, value in tree.args.items() if arg not in _POINT_SELECT_ARGS):
        return None
    source, where, limit = tree.args.get("from_"), tree.args.get("where"), tree.args.get("limit")
    if not isinstance(source, exp.From) or not isinstance(where, exp.Where):
        return None
    node = source.this
    if not isinstance(node, exp.Table) or not isinstance(node.this, exp.Identifier):
        return None
    if any(value for arg, value in node.args.items() if arg not in _POINT_TABLE_ARGS):
        return None
    alias = node.args.get("alias")
    if alias is not None and (alias.columns or not isinstance(alias.this, exp.Identifier)):
        return None
    if limit is not None and not _positive_limit(limit):
        return None
    condition = where.this
    if not isinstance(condition, exp.EQ):
        return None
    for column, value in ((condition.this, condition.expression),
                          (condition.expression, condition.this)):
        if isinstance(column, exp.Column) and isinstance(column.this, exp.Identifier) \
                and not column.table and isinstance(value, exp.Literal | exp.Parameter):
            return node, column.name, value
    return None


def _positive_limit(limit: exp.Expression) -> bool:
    if not isinstance(limit, exp.Limit) or set(k for k, v in limit.args.items() if v) \
            != {"expression"}:
        return False
    value = limit.expression
    return isinstance(value, exp.Literal) and value.is_int and int(value.this) > 0


def expand_views(tree: exp.Expression, namespace: str, catalog: Catalog,
                  chain: tuple[tuple[str, str], ...], cte_refs: set[int]) -> bool:
    """Replaces, in place, every reference in ``tree`` to a view (not a table, not a CTE) by
    the view's query as an aliased subquery, recursively; ``namespace`` qualifies bare names.
    Adds the CTE references found inside views to ``cte_refs``. True if any view was found."""
    found = False
    for node in list(tree.find_all(exp.Table)):
        if id(node) in cte_refs or not isinstance(node.this, exp.Identifier):
            continue  # table functions are refused by the caller
        key = ((node.db or namespace).lower(), node.name.lower())
        if key[0] == SYSTEM_NAMESPACE or catalog.table(*key) is not None:
            continue
        if key in chain:
            path = " -> ".join(f"{ns}.{name}" for ns, name in (*chain, key))
            raise InvalidSql(f"View '{key[0]}.{key[1]}' is a recursive view ({path})")
        view = catalog.view(*key)
        if view is None:
            continue  # the caller reports TableNotFound
        if len(chain) >= VIEW_NESTING_MAX:
            raise InvalidSql(f"Views are nested more than {VIEW_NESTING_MAX} levels deep at "
                             f"'{view.qualified_name}'")
        body = parse_query(view.sql)
        # The stored query qualifies every table, so its bare names are its own CTEs.
        cte_refs.update(id(t) for t in body.find_all(exp.Table) if not t.args.get("db"))
        expand_views(body, key[0], catalog, (*chain, key), cte_refs)
        columns = [exp.to_identifier(c, quoted=True) for c in view.columns] or None
        node.replace(exp.Subquery(this=body, alias=exp.TableAlias(
            this=exp.to_identifier(node.alias or view.name), columns=columns)))
        found = True
    return found


def run(prepared: PreparedQuery) -> pa.Table:
    """Executes a prepared query (blocking: call through ``trio.to_thread.run_sync``)."""
    if prepared.direct is not None:
        (source,) = prepared.sources
        data = source.rows()
        return pa.table({out: data.column(column) for out, column in prepared.direct})
    ctx = SessionContext()
    for source in prepared.sources:
        data = source.rows()
        ctx.register_record_batches(source.private_name,
                                    [data.to_batches() or _empty_batches(data)])
    options = SQLOptions().with_allow_ddl(False).with_allow_dml(False) \
        .with_allow_statements(False)
    try:
        frame = ctx.sql_with_options(prepared.sql, options, param_values=prepared.params or None)
        return frame.to_arrow_table()
    except Exception as exc:  # DataFusion raises plain Exception subclasses
        raise InvalidSql(_clean_datafusion_message(str(exc), prepared)) from exc


def _empty_batches(table: pa.Table) -> list[pa.RecordBatch]:
    return [pa.RecordBatch.from_pylist([], schema=table.schema)]


def _resolve(node: exp.Table, session: Session, index: int, *, catalog: Catalog,
             store: TableStore, system_tables: dict[str, SystemTableFn], now_ms: int,
             show_deleted: bool, options: QueryOptions, point_key: Any) -> Source:
    namespace = (node.db or session.namespace).lower()
    name = node.name.lower()
    private = f"__t{index}"
    if namespace == SYSTEM_NAMESPACE:
        build = system_tables.get(name)
        if build is None:
            raise TableNotFound(f"Table '{namespace}.{name}' does not exist")
        require_admin(session, "system tables")
        data, types = build(session)
        return Source(private, None, data, dict(zip(data.column_names, types, strict=True)),
                      None)
    table = catalog.table(namespace, name)
    if table is None:
        raise TableNotFound(f"Table '{namespace}.{name}' does not exist")
    if options.impersonating and table.table_type == "SHARED":
        raise InvalidOperation("EXECUTE AS USER is only supported for USER and STREAM tables")
    check_read(session, table)
    data = snapshot_rows(table, store, session.user_id, now_ms, show_deleted=show_deleted,
                         include_uncommitted=options.include_uncommitted, only_key=point_key)
    types = {c.name: c.type for c in table.columns}
    types[SEQ_COLUMN] = KalamType("BigInt")
    types[DELETED_COLUMN] = KalamType("Boolean")
    return Source(private, table, data, types, table.pk.name if table.pk else None)


def visible_rows(table: TableDef, store: TableStore, user_id: str, now_ms: int, *,
                 show_deleted: bool = False, include_uncommitted: bool = False) -> pa.Table:
    """The rows of ``table`` that ``user_id`` may see, named by current column names."""
    return snapshot_rows(table, store, user_id, now_ms, show_deleted=show_deleted,
                         include_uncommitted=include_uncommitted).materialize()


def snapshot_rows(table: TableDef, store: TableStore, user_id: str, now_ms: int, *,
                  show_deleted: bool = False, include_uncommitted: bool = False,
                  only_key: Any = _NO_KEY) -> RowSnapshot:
    """What ``visible_rows`` would return, captured now and materialized later.

    ``only_key`` restricts the result to one primary-key value, looked up in the index
    instead of scanning (the query still applies its whole WHERE afterwards).
    """
    part = store.partition(table, user_id, create=False)
    if part is None:
        tables: list[pa.Table] = []
    elif only_key is not _NO_KEY and include_uncommitted:
        latest = part.latest(only_key)
        tables = [] if latest is None else [latest]
    elif only_key is not _NO_KEY:
        tables = part.visible_latest(only_key)  # never a staged (not yet durable) version
    else:
        tables = part.view(include_uncommitted=include_uncommitted)
    floor = table.expiry_seq_floor(now_ms)
    names = (*(c.name for c in table.columns), SEQ_COLUMN, DELETED_COLUMN)
    return RowSnapshot(tuple(tables), storage_schema(table), names, not show_deleted, floor)


def _find_point_key(tree: exp.Expression, node: exp.Table, session: Session,
                    params: list[Any], catalog: Catalog, found: dict[int, Any]) -> None:
    """Primary-key point lookups skip the scan: a plain single-table SELECT whose WHERE has a
    top-level ``pk = <literal or $n>`` conjunct only needs that key's latest version."""
    if not isinstance(tree, exp.Select) or tree.args.get("joins") or not tree.args.get("where"):
        return
    if any(isinstance(n, exp.Subquery | exp.Select) and n is not tree for n in tree.walk()):
        return
    table = catalog.table((node.db or session.namespace).lower(), node.name.lower())
    if table is None or table.pk is None:
        return
    pk = table.pk
    for conjunct in tree.args["where"].this.flatten() if isinstance(
            tree.args["where"].this, exp.And) else [tree.args["where"].this]:
        if not isinstance(conjunct, exp.EQ):
            continue
        for column, value in ((conjunct.this, conjunct.expression),
                              (conjunct.expression, conjunct.this)):
            if isinstance(column, exp.Column) and column.name.lower() == pk.name.lower():
                key = _key_value(_constant(value, params), pk)
                if key is not _NO_KEY:
                    found[id(node)] = key
                    return


def _key_value(raw: Any, pk: ColumnDef) -> Any:
    """``raw`` as the index holds primary-key values of ``pk``'s type, or ``_NO_KEY`` when it
    does not convert (DataFusion then reports the error, or matches nothing, as usual)."""
    if raw is _NO_KEY:
        return _NO_KEY
    try:
        key = coerce_value(raw, pk.type, pk.name)
    except Exception:
        return _NO_KEY
    return pa.array([key], pk.type.arrow_type())[0].as_py()


_DIRECT_BLOCKERS = ("joins", "group", "having", "distinct", "order", "offset", "windows",
                    "qualify", "laterals", "pivots", "with", "into", "sample", "locks")


def _direct_columns(tree: exp.Expression, source: Source) -> list[tuple[str, str]] | None:
    """For ``SELECT <*|columns> FROM t WHERE pk = <constant> [LIMIT n>=1]`` the answer is the
    key's latest version itself: the (output, column) pairs to return it without DataFusion;
    None for anything else (which DataFusion then runs over the one-row input)."""
    if not isinstance(tree, exp.Select) or source.table is None:
        return None
    if any(tree.args.get(arg) for arg in _DIRECT_BLOCKERS):
        return None
    where = tree.args.get("where")
    if where is None or not isinstance(where.this, exp.EQ):
        return None
    limit = tree.args.get("limit")
    if limit is not None and not (isinstance(limit.expression, exp.Literal)
                                  and limit.expression.is_int and int(limit.expression.this) > 0):
        return None
    return _output_pairs(tree.expressions, list(source.types), None)


def _identifier_name(node: exp.Identifier) -> str:
    # DataFusion folds unquoted identifiers to lower case, as PostgreSQL does.
    return node.this if node.quoted else node.this.lower()


def _output_pairs(items: list[exp.Expression], names: list[str],
                  qualifiers: tuple[str, ...] | None) -> list[tuple[str, str]] | None:
    """The (output name, column) pairs of a projection of plain columns (``*``, ``c``,
    ``c AS x``) over a table with columns ``names``; None for any other projection, an
    unknown column or a repeated output name (DataFusion then runs or reports it).
    ``qualifiers``: the names a qualified column may use (``t.c``); None accepts any."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, exp.Star) and not any(item.args.values()):
            pairs += [(name, name) for name in names]
            continue
        column = item.this if isinstance(item, exp.Alias) else item
        if not isinstance(column, exp.Column) or not isinstance(column.this, exp.Identifier):
            return None
        if column.args.get("db") or column.args.get("catalog"):
            return None
        qualifier = column.args.get("table")
        if qualifier is not None and qualifiers is not None and (
                not isinstance(qualifier, exp.Identifier)
                or _identifier_name(qualifier) not in qualifiers):
            return None
        name = _identifier_name(column.this)
        if name not in names:
            return None  # let DataFusion report the unknown column
        output = name
        if isinstance(item, exp.Alias):
            alias = item.args.get("alias")
            if not isinstance(alias, exp.Identifier):
                return None
            output = _identifier_name(alias)
        pairs.append((output, name))
    if len({out for out, _ in pairs}) != len(pairs):
        return None
    return pairs


def _constant(node: exp.Expression, params: list[Any]) -> Any:
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else (int(node.this) if node.is_int else _NO_KEY)
    if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal):
        index = int(node.this.this)
        return params[index - 1] if 1 <= index <= len(params) else _NO_KEY
    return _NO_KEY


def _bind_context_functions(tree: exp.Expression, session: Session, now_ms: int,
                            id_functions: dict[str, Callable[[], Any]]) -> None:
    values = {"KDB_CURRENT_USER": session.user_id, "KDB_CURRENT_ROLE": session.role}
    for func in list(tree.find_all(exp.Anonymous)):
        name = str(func.this).upper()
        value = values.get(name)
        if value is not None:
            func.replace(exp.Literal.string(value))
        elif name in id_functions and not func.expressions:
            generated = id_functions[name]()
            func.replace(exp.Literal.number(generated) if isinstance(generated, int)
                         else exp.Literal.string(generated))
    for node in list(tree.find_all(exp.CurrentTimestamp)):
        node.replace(exp.func("to_timestamp_micros", exp.Literal.number(now_ms * 1000)))


def _add_implicit_order(tree: exp.Expression, source: Source) -> None:
    """PROTOCOL §3.1: no ORDER BY → by primary key (or ``_seq``), for plain single-table
    selects whose output still has that column (not aggregates or DISTINCT)."""
    if not isinstance(tree, exp.Select) or tree.args.get("order") or source.table is None:
        return
    if tree.args.get("group") or tree.args.get("distinct") or _has_aggregate(tree):
        return
    key = source.pk or SEQ_COLUMN
    tree.order_by(exp.column(key), copy=False)


def _has_aggregate(select: exp.Select) -> bool:
    return any(isinstance(node, exp.AggFunc) for e in select.expressions for node in e.walk())


def _apply_limits(tree: exp.Expression, default_limit: int, max_limit: int) -> exp.Expression:
    """PROTOCOL §3.1: no LIMIT → ``default_limit``; any LIMIT capped at ``max_limit``."""
    if not isinstance(tree, exp.Query):
        return tree
    limit = tree.args.get("limit")
    if limit is None:
        tree.set("limit", exp.Limit(expression=exp.Literal.number(default_limit)))
        return tree
    value = limit.expression
    if isinstance(value, exp.Literal) and value.is_int:
        if int(value.this) > max_limit:
            limit.set("expression", exp.Literal.number(max_limit))
        return tree
    # A non-literal LIMIT (e.g. $1) is capped by wrapping the query.
    return exp.select("*").from_(exp.Subquery(
        this=tree, alias=exp.TableAlias(this=exp.to_identifier("__capped")))).limit(max_limit)


def _flags(source: Source, name: str) -> list[str]:
    if source.table is None:
        return []
    column = source.table.column(name)
    if column is None:
        return []  # _seq and _deleted carry no flags (PROTOCOL §1.3 wire example)
    flags = []
    if column.primary_key:
        flags += ["pk", "nn", "uq"]
    elif not column.nullable:
        flags.append("nn")
    return flags


def _clean_datafusion_message(message: str, prepared: PreparedQuery) -> str:
    """DataFusion names our private tables; show the user's names instead."""
    for source in prepared.sources:
        if source.table is not None:
            message = message.replace(source.private_name, source.table.qualified_name)
    return message.strip()


def parse_query(sql: str) -> exp.Expression:
    try:
        return sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.ParseError as exc:
        raise InvalidSql(str(exc), at_classify=True, parse_errors=exc.errors) from exc
