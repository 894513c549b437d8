"""Step 5 of PROTOCOL.md §1.3, second half: classify one statement (§3.1).

One table, ``STATEMENT_PARSERS``, maps leading keyword sequences to parser functions; the
longest matching sequence wins (``CREATE USER TABLE`` before ``CREATE USER``). Keywords are
matched case-insensitively on our own tokens (``lexer.py``), so a quoted ``"select"`` or a
string never matches. Queries and DML go to sqlglot (``parse_query.py``); KalamDB's own
statements to the hand-written parsers in ``parse_*.py``. sqlglot's ``Parser`` is never
subclassed (STYLE rule 4: it would break the compiled ``sqlglot[c]`` build).

A statement no entry matches is refused: "Unsupported statement type: ..." when sqlglot
recognises it as some other statement, a parse error otherwise.

Before the table: a plain ``INSERT ... VALUES`` (literals, ``$n``, DEFAULT, value functions)
is read by ``insert_values.py`` into ``InsertValues`` without tokens or sqlglot; and results
are cached by text (``STATEMENT_CACHE``, ``statement_cache.py``).

Role checks are not made here: the executor makes them, with the messages of §2.7.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from engine.errors import InvalidSql
from engine.sql.cursor import Cursor, located_error
from engine.sql.insert_values import parse_insert_values, parse_whole_insert
from engine.sql.lexer import LexError, Token, TokenKind, tokenize
from engine.sql.parse_admin import (
    parse_alter_namespace,
    parse_alter_storage,
    parse_alter_user,
    parse_check_storage,
    parse_compact_all,
    parse_compact_table,
    parse_create_namespace,
    parse_create_storage,
    parse_create_user,
    parse_drop_namespace,
    parse_drop_storage,
    parse_drop_user,
    parse_flush_all,
    parse_flush_table,
    parse_kill_job,
    parse_show_manifest,
    parse_show_namespaces,
    parse_show_storages,
    parse_use_namespace,
)
from engine.sql.parse_misc import (
    parse_backup,
    parse_begin,
    parse_cluster,
    parse_commit,
    parse_datafusion_describe,
    parse_export_user_data,
    parse_restore,
    parse_rollback,
    parse_set_variable,
    parse_show_all,
    parse_show_columns,
    parse_show_export,
    parse_show_variable,
)
from engine.sql.parse_query import (
    parse_create_view,
    parse_drop_view,
    parse_query_or_dml,
    unsupported_error,
)
from engine.sql.parse_table import (
    parse_alter_table,
    parse_create_table,
    parse_describe_table,
    parse_drop_table,
    parse_show_stats,
    parse_show_tables,
)
from engine.sql.parse_topic import (
    parse_ack,
    parse_alter_topic,
    parse_clear_topic,
    parse_consume,
    parse_create_topic,
    parse_drop_topic,
    parse_kill_live_query,
    parse_subscribe,
)
from engine.sql.statement_cache import StatementCache
from engine.sql.statements import Delete, Explain, Insert, Query, Statement, Update

# Classified statements by text (see ``statement_cache.py`` for what is kept).
STATEMENT_CACHE = StatementCache()


def classify(statement: str, tokens: list[Token] | None = None) -> Statement:
    """Classify and parse one statement (already split and unwrapped).

    Args:
        statement: one SQL statement; trailing semicolons are ignored.
        tokens: ``tokenize(statement)`` if the caller has it (``split.split_with_tokens``),
            so the text is not scanned again; None to scan here when needed. The list is
            not modified.

    Returns:
        A frozen dataclass from ``statements.py``. A plain ``INSERT ... VALUES`` comes back
        as ``InsertValues`` (``insert_values.py``, no sqlglot); queries and other DML hold
        sqlglot trees that callers must copy before changing. Results of the hot kinds are
        cached by text (``STATEMENT_CACHE``), so the same text may return the same object.

    Raises:
        InvalidSql: (``at_classify=True``) the statement is empty, holds several statements,
            cannot be scanned or parsed, breaks a naming rule, or is of an unsupported type.
            ``parse_errors`` locates the problem (sqlglot's shape) where there is a location.
            Also (``at_classify=False``) an INSERT whose VALUES rows have the wrong lengths.
    """
    cached = STATEMENT_CACHE.get(statement)
    if cached is not None:
        return cached
    result = _classify(statement, tokens, fast_insert=True)
    STATEMENT_CACHE.put(statement, result)
    return result


def classify_whole(sql: str) -> tuple[str, Statement] | None:
    """A whole request text that is exactly one statement, classified without splitting:
    ``(text, statement)`` as ``split.split_with_tokens`` + ``unwrap_with_tokens`` +
    ``classify`` would give them (no EXECUTE AS wrapper), or None to take that route.

    Two cheap cases: ``sql`` is a cached statement text (a cache key is always the exact
    text of one split, unwrapped statement, so splitting ``sql`` would give it back), or
    ``sql`` is one INSERT in ``insert_values.py``'s shape (read in one pass: no separate
    splitting pass over its rows). Never raises: anything doubtful returns None."""
    cached = STATEMENT_CACHE.find(sql)
    if cached is not None:
        return sql, cached
    whole = parse_whole_insert(sql)
    if whole is not None:
        STATEMENT_CACHE.put(*whole)
    return whole


def _classify(statement: str, tokens: list[Token] | None, *, fast_insert: bool) -> Statement:
    if fast_insert and (tokens is None or (tokens and tokens[0].upper == "INSERT")):
        insert = parse_insert_values(statement)
        if insert is not None:
            return insert
    if tokens is None:
        try:
            tokens = tokenize(statement)
        except LexError as exc:
            raise located_error(statement, exc.message, exc.position,
                                exc.position + 1) from exc
    end = len(tokens)
    while end and tokens[end - 1].upper == ";":
        end -= 1
    if not end:
        raise InvalidSql("Empty SQL statement", at_classify=True)
    if end != len(tokens):
        tokens = tokens[:end]
    for token in tokens:
        if token.kind is TokenKind.PUNCT and token.value == ";":
            raise located_error(statement, "Expected a single SQL statement", token.start,
                                token.end)
    for length in range(min(_PREFIX_MAX_WORDS, len(tokens)), 0, -1):
        parser = STATEMENT_PARSERS.get(tuple(token.upper for token in tokens[:length]))
        if parser is not None:
            return parser(Cursor(statement, tokens, length))
    raise unsupported_error(statement, tokens)


def _parse_explain(cur: Cursor) -> Explain:
    """``[ANALYZE] [VERBOSE] <query or DML>``; the inner statement is classified too."""
    analyze = cur.accept("ANALYZE")
    verbose = cur.accept("VERBOSE")
    start = cur.peek()
    if start is None:
        raise cur.error("Expected a statement after EXPLAIN")
    # Not the InsertValues fast path: EXPLAIN needs the sqlglot tree.
    inner = _classify(cur.sql[start.start:cur.tokens[-1].end], None, fast_insert=False)
    if not isinstance(inner, (Query, Insert, Update, Delete)):
        raise cur.error("EXPLAIN supports SELECT, INSERT, UPDATE and DELETE statements only")
    return Explain(inner, analyze, verbose)


# The classifier table: leading keywords (upper case; "(" for a parenthesised query) -> parser.
# Each parser gets a cursor positioned after the keywords. Keep related forms together.
STATEMENT_PARSERS: dict[tuple[str, ...], Callable[[Cursor], Statement]] = {
    # queries and DML (§3.1, §3.7, §3.8): whole statement to sqlglot
    ("SELECT",): parse_query_or_dml,
    ("WITH",): parse_query_or_dml,
    ("VALUES",): parse_query_or_dml,
    ("(",): parse_query_or_dml,
    ("INSERT",): parse_query_or_dml,
    ("UPDATE",): parse_query_or_dml,
    ("DELETE",): parse_query_or_dml,
    # transactions (§1.3)
    ("BEGIN",): parse_begin,
    ("START", "TRANSACTION"): parse_begin,
    ("COMMIT",): parse_commit,
    ("ROLLBACK",): parse_rollback,
    # namespaces (§3.2, §3.1)
    ("CREATE", "NAMESPACE"): parse_create_namespace,
    ("DROP", "NAMESPACE"): parse_drop_namespace,
    ("ALTER", "NAMESPACE"): parse_alter_namespace,
    ("SHOW", "NAMESPACES"): parse_show_namespaces,
    ("USE",): parse_use_namespace,
    ("USE", "NAMESPACE"): parse_use_namespace,
    ("SET", "NAMESPACE"): parse_use_namespace,
    # tables (§3.3, §3.4)
    ("CREATE", "TABLE"): parse_create_table,
    ("CREATE", "USER", "TABLE"): partial(parse_create_table, table_type="USER"),
    ("CREATE", "SHARED", "TABLE"): partial(parse_create_table, table_type="SHARED"),
    ("CREATE", "STREAM", "TABLE"): partial(parse_create_table, table_type="STREAM"),
    ("ALTER", "TABLE"): parse_alter_table,
    ("ALTER", "USER", "TABLE"): partial(parse_alter_table, table_type="USER"),
    ("ALTER", "SHARED", "TABLE"): partial(parse_alter_table, table_type="SHARED"),
    ("ALTER", "STREAM", "TABLE"): partial(parse_alter_table, table_type="STREAM"),
    ("DROP", "TABLE"): parse_drop_table,
    ("DROP", "USER", "TABLE"): partial(parse_drop_table, table_type="USER"),
    ("DROP", "SHARED", "TABLE"): partial(parse_drop_table, table_type="SHARED"),
    ("DROP", "STREAM", "TABLE"): partial(parse_drop_table, table_type="STREAM"),
    ("DESCRIBE", "TABLE"): parse_describe_table,
    ("DESC", "TABLE"): parse_describe_table,
    ("SHOW", "TABLES"): parse_show_tables,
    ("SHOW", "STATS"): parse_show_stats,
    ("CREATE", "VIEW"): parse_create_view,
    ("CREATE", "OR", "REPLACE", "VIEW"): parse_create_view,
    ("DROP", "VIEW"): parse_drop_view,
    # users (§3.11)
    ("CREATE", "USER"): parse_create_user,
    ("ALTER", "USER"): parse_alter_user,
    ("DROP", "USER"): parse_drop_user,
    # storage, flush, compaction, jobs (§3.12)
    ("CREATE", "STORAGE"): parse_create_storage,
    ("ALTER", "STORAGE"): parse_alter_storage,
    ("DROP", "STORAGE"): parse_drop_storage,
    ("SHOW", "STORAGES"): parse_show_storages,
    ("STORAGE", "CHECK"): parse_check_storage,
    ("STORAGE", "FLUSH", "TABLE"): parse_flush_table,
    ("STORAGE", "FLUSH", "ALL"): parse_flush_all,
    ("STORAGE", "COMPACT", "TABLE"): parse_compact_table,
    ("STORAGE", "COMPACT", "ALL"): parse_compact_all,
    ("SHOW", "MANIFEST"): parse_show_manifest,
    ("KILL", "JOB"): parse_kill_job,
    # topics (§3.13)
    ("CREATE", "TOPIC"): parse_create_topic,
    ("ALTER", "TOPIC"): parse_alter_topic,
    ("DROP", "TOPIC"): parse_drop_topic,
    ("CLEAR", "TOPIC"): parse_clear_topic,
    ("CONSUME", "FROM"): parse_consume,
    ("ACK",): parse_ack,
    # live queries (§3.14)
    ("SUBSCRIBE", "TO"): parse_subscribe,
    ("KILL", "LIVE", "QUERY"): parse_kill_live_query,
    # miscellaneous (§3.15) and DataFusion meta commands (§2.7)
    ("BACKUP", "DATABASE"): parse_backup,
    ("RESTORE", "DATABASE"): parse_restore,
    ("EXPORT", "USER", "DATA"): parse_export_user_data,
    ("SHOW", "EXPORT"): parse_show_export,
    ("CLUSTER",): parse_cluster,
    ("EXPLAIN",): _parse_explain,
    ("SET",): parse_set_variable,
    ("SHOW", "ALL"): parse_show_all,
    ("SHOW", "COLUMNS"): parse_show_columns,
    ("SHOW",): parse_show_variable,
    ("DESCRIBE",): parse_datafusion_describe,
    ("DESC",): parse_datafusion_describe,
}
_PREFIX_MAX_WORDS = max(len(words) for words in STATEMENT_PARSERS)
