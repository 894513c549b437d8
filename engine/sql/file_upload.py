"""The statement side of a FILE upload (PROTOCOL §5.1): which table and partition the files
go to, which ``FILE("x")`` placeholders the SQL holds, and the SQL with each placeholder
replaced by its FileRef as a single-quoted string literal.

Rules checked by ``upload_target``, before any file is moved (each an ``EngineError`` the API
maps like any SQL error):
- exactly one statement, else ``InvalidInput`` "File uploads require a single SQL statement";
- ``EXECUTE AS USER`` is allowed: the impersonation is checked here (``PermissionDenied``)
  and the files go to the target user's folder; on a SHARED table it is ``InvalidOperation``;
- the statement is an INSERT or UPDATE (a placeholder anywhere else could never be stored:
  ``InvalidInput``);
- the table exists (``TableNotFound``), is neither a SYSTEM nor a STREAM table
  (``InvalidInput``), and the effective session may write it (``PermissionDenied``).

Pure apart from catalog reads; trio thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlglot import exp

from ..catalog import SYSTEM_NAMESPACE, TableDef
from ..errors import (
    BatchParseError,
    EmptySql,
    InvalidInput,
    InvalidOperation,
    TableNotFound,
)
from ..permissions import check_write, impersonated
from ..session import Session
from .classify import classify
from .lexer import LexError, Token, TokenKind, tokenize
from .split import split_with_tokens, unwrap_with_tokens
from .statements import Insert, InsertValues, Statement, Update

if TYPE_CHECKING:
    from ..engine import Engine

# Cheap pre-check on the JSON hot path: only text matching this is tokenized.
_MAYBE_PLACEHOLDER = re.compile(r"file\s*\(", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UploadTarget:
    table: TableDef
    user_id: str | None  # the partition's owner for a USER table; None for SHARED
    placeholders: tuple[str, ...]  # distinct names, in order of first use


def placeholder_spans(sql: str) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of each ``FILE("name")``/``FILE('name')`` (function name in any
    case) outside comments and strings. Raises ``LexError`` for text that cannot be scanned."""
    tokens = tokenize(sql)
    spans = []
    for index in range(len(tokens) - 3):
        word, open_, name, close = tokens[index:index + 4]
        if _is_placeholder(word, open_, name, close):
            spans.append((name.value, word.start, close.end))
    return spans


def _is_placeholder(word: Token, open_: Token, name: Token, close: Token) -> bool:
    return (word.kind is TokenKind.WORD and word.upper == "FILE" and open_.upper == "("
            and name.kind in (TokenKind.STRING, TokenKind.QIDENT) and close.upper == ")")


def has_file_placeholders(sql: str) -> bool:
    """Whether ``sql`` holds a placeholder (False for text the lexer rejects: the normal
    path reports that error)."""
    if _MAYBE_PLACEHOLDER.search(sql) is None:
        return False
    try:
        return bool(placeholder_spans(sql))
    except LexError:
        return False


def substitute_placeholders(sql: str, refs: dict[str, str]) -> str:
    """``sql`` with each placeholder replaced by ``'<refs[name]>'`` (quotes doubled).
    Every placeholder must have a ref (``upload_target`` listed them)."""
    pieces, copied_to = [], 0
    for name, start, end in placeholder_spans(sql):
        pieces += [sql[copied_to:start], "'" + refs[name].replace("'", "''") + "'"]
        copied_to = end
    return "".join(pieces) + sql[copied_to:]


def upload_target(engine: Engine, session: Session, sql: str) -> UploadTarget:
    """Checks the statement of a multipart request against the rules in the module
    docstring and returns where its files go. Raises ``EngineError`` subclasses."""
    pieces = split_with_tokens(sql)
    if not pieces:
        raise EmptySql("No SQL statements provided")
    if len(pieces) > 1:
        raise InvalidInput("File uploads require a single SQL statement")
    text, tokens = pieces[0]
    target_user, inner, inner_tokens = unwrap_with_tokens(text, tokens)
    statement = classify(inner, inner_tokens)
    effective = session if target_user is None else \
        impersonated(engine.catalog, session, target_user)
    table = _target_table(engine, statement, effective.namespace)
    if target_user is not None and table.table_type == "SHARED":
        raise InvalidOperation("EXECUTE AS USER is only supported for USER and STREAM tables")
    check_write(effective, table)
    try:
        names = [name for name, _, _ in placeholder_spans(sql)]
    except LexError as exc:  # split_with_tokens may not have scanned it
        raise BatchParseError(f"{exc.message} (offset {exc.position})") from exc
    return UploadTarget(table, effective.user_id if table.table_type == "USER" else None,
                        tuple(dict.fromkeys(names)))


def _target_table(engine: Engine, statement: Statement, default_namespace: str) -> TableDef:
    if isinstance(statement, InsertValues):
        namespace, name = statement.namespace, statement.table
    elif isinstance(statement, Insert | Update):
        node = statement.expression.this
        if isinstance(node, exp.Schema):
            node = node.this
        if not isinstance(node, exp.Table):
            raise InvalidInput("File uploads need an INSERT or UPDATE of a table")
        namespace, name = node.db or None, node.name
    else:
        raise InvalidInput("FILE placeholders are only allowed in an INSERT or UPDATE "
                           "statement")
    namespace = (namespace or default_namespace).lower()
    if namespace == SYSTEM_NAMESPACE:
        raise InvalidInput("File uploads are not supported on SYSTEM tables")
    table = engine.catalog.table(namespace, name)
    if table is None:
        raise TableNotFound(f"Table '{namespace}.{name.lower()}' does not exist")
    if table.table_type == "STREAM":
        raise InvalidInput(f"File uploads are not supported on STREAM table "
                           f"'{table.qualified_name}'")
    return table
