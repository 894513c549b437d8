"""The INSERT fast path: ``INSERT INTO [ns.]t [(col, ...)] VALUES (...), (...) ...`` whose every
item is a plain value becomes ``InsertValues`` without sqlglot (``classify`` tries it first).

Accepted items: a ``'...'`` string (``''`` escapes a quote), a number (``int`` for digits only,
else ``decimal.Decimal`` of the literal text), a negated number, TRUE/FALSE, NULL, ``$n``
(``Param``), DEFAULT (``DefaultValue``), and the argument-less calls NOW(), CURRENT_TIMESTAMP
[()], SNOWFLAKE_ID(), UUID_V7(), ULID(), CURRENT_USER [()], CURRENT_USER_ID(), CURRENT_ROLE [()]
(``CallValue``). Nothing may follow the last row but semicolons, whitespace and comments.

Anything else returns ``None`` and takes the sqlglot path (``parse_query.py``), so behaviour is
the sqlglot path's: E'' and dollar-quoted strings, expressions, casts, FILE(...), SELECT or
DEFAULT VALUES sources, ON CONFLICT, RETURNING, nested block comments, names that are not
``[A-Za-z0-9_]+`` (the ``names.reference_problem`` shape) and unquoted names sqlglot reads as
something other than a plain identifier (``_plain_to_sqlglot``). Names follow the identifier
rules of the other parsers: unquoted ones are lower-cased, quoted ones kept.

The one error raised here: rows of different lengths (against the column list, or each other
when there is none), as ``InvalidSql`` naming the row; only for a statement that is otherwise
entirely in the accepted shape.

Speed is the point (a 100-row statement in well under a millisecond): the text is matched with
compiled patterns built from the scanner's own ``SKIP_PATTERN``, a whole row per match, never
token by token. Every pattern is an exact restatement of ``lexer.py``'s rules for the
constructs it accepts; where the scanner would read the text differently (a non-ASCII digit
after a number, say) the pattern simply fails to match and the statement takes the slow path.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Any

from sqlglot import exp

from engine.errors import InvalidSql
from engine.sql.lexer import SKIP_PATTERN as _S
from engine.sql.parse_query import parse_sql, rewrite_context_functions
from engine.sql.statements import CallValue, DefaultValue, InsertValues, Param

_NAME = r'(?:[A-Za-z_][A-Za-z0-9_]*+(?![\w$])|"[A-Za-z0-9_]++")'
_NUMBER = r"(?>(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?[0-9]++)?+)"
_EMPTY_PARENS = _S + r"\(" + _S + r"\)"
_VALUE = (r"(?:'[^']*+(?:''[^']*+)*+'"
          r"|-?+" + _S + _NUMBER +
          r"|\$[0-9]++"
          r"|(?i:TRUE|FALSE|NULL|DEFAULT)(?![\w$])"
          r"|(?i:NOW|SNOWFLAKE_ID|UUID_V7|ULID|CURRENT_USER_ID)(?![\w$])" + _EMPTY_PARENS +
          r"|(?i:CURRENT_TIMESTAMP|CURRENT_USER|CURRENT_ROLE)(?![\w$])(?:" + _EMPTY_PARENS +
          r")?+)")
_HEAD_TEXT = (
    r"(?i:INSERT)(?![\w$])" + _S + r"(?i:INTO)(?![\w$])" + _S
    + r"(?P<first>" + _NAME + ")(?:" + _S + r"\." + _S + r"(?P<second>" + _NAME + "))?" + _S
    + r"(?:\((?P<columns>" + _S + _NAME + _S + r"(?:," + _S + _NAME + _S + r")*+)\)" + _S
    + r")?(?i:VALUES)(?![\w$])")
_HEAD = re.compile(_S + _HEAD_TEXT)
_ANY_ROW = _S + r"\(" + _S + _VALUE + _S + r"(?:," + _S + _VALUE + _S + r")*+\)"
_STATEMENT = re.compile(_HEAD_TEXT + _ANY_ROW + r"(?:" + _S + "," + _ANY_ROW + r")*+")
_END = re.compile(_S + r"(?:;" + _S + r")*+\Z")
_LEADING_SKIP = re.compile(_S)
_COLUMN = re.compile(_S + "(" + _NAME + ")" + _S + ",?")
_ITEM = re.compile(_S + "(" + _VALUE + ")" + _S + "([,)])")
_NEGATED = re.compile("-" + _S + "(.*)", re.DOTALL)
_CALL_WORD = re.compile(r"[A-Za-z_0-9]+")
_MAX_FAST_WIDTH = 256  # wider rows use the loose (item by item) reader

_WORDS: dict[str, Any] = {
    "TRUE": True, "FALSE": False, "NULL": None, "DEFAULT": DefaultValue(),
    "NOW": CallValue("NOW"), "CURRENT_TIMESTAMP": CallValue("NOW"),
    "SNOWFLAKE_ID": CallValue("SNOWFLAKE_ID"), "UUID_V7": CallValue("UUID_V7"),
    "ULID": CallValue("ULID"), "CURRENT_USER": CallValue("KDB_CURRENT_USER"),
    "CURRENT_USER_ID": CallValue("KDB_CURRENT_USER"), "CURRENT_ROLE": CallValue("KDB_CURRENT_ROLE"),
}
_PARAMS: dict[str, Param] = {}  # "$n" -> Param(n), shared (Params are immutable)


def single_statement_span(sql: str) -> tuple[int, int] | None:
    """The ``(start, end)`` of the statement when the whole of ``sql`` is one INSERT in this
    module's shape (rows of any lengths, names unchecked) with nothing around it but
    whitespace, comments and semicolons; else None.

    Such a text needs no scanning to be split: it is exactly one statement, and it holds no
    unterminated construct. ``split.split_with_tokens`` uses this."""
    match = _STATEMENT.match(sql, _LEADING_SKIP.match(sql).end())
    if match is None or _END.match(sql, match.end()) is None:
        return None
    return match.span()


def parse_insert_values(sql: str) -> InsertValues | None:
    """``sql`` as ``InsertValues`` if it is in this module's shape, else None.

    Raises:
        InvalidSql: the rows' lengths differ from the column list's or from each other.
    """
    parsed = _parse(sql, _HEAD.match(sql))
    if parsed is None:
        return None
    statement, _ = parsed
    _check_widths(statement.rows, statement.columns)
    return statement


def parse_whole_insert(sql: str) -> tuple[str, InsertValues] | None:
    """The request text ``sql`` as one statement, in a single pass: ``(text, statement)``
    when the whole of ``sql`` is one INSERT in this module's shape with plain names and rows
    of consistent widths (``text`` is what ``split.split_with_tokens`` would cut out, and
    ``statement`` what ``classify(text)`` returns); else None, and the caller takes the
    split-then-classify route, which reports any problem. Never raises."""
    start = _LEADING_SKIP.match(sql).end()
    parsed = _parse(sql, _HEAD.match(sql, start))
    if parsed is None:
        return None
    statement, end = parsed
    try:
        _check_widths(statement.rows, statement.columns)
    except InvalidSql:
        return None
    return sql[start:end], statement


def _parse(sql: str, head: re.Match[str] | None) -> tuple[InsertValues, int] | None:
    """The statement from ``head`` on, with its rows' widths unchecked, and the offset just
    after its last row's closing parenthesis; None if not in the shape."""
    if head is None:
        return None
    names = _names(head)
    if names is None:
        return None
    namespace, table, columns = names
    parsed = _rows(sql, head.end(), len(columns) if columns is not None else 0)
    if parsed is None:
        return None
    rows, end = parsed
    return InsertValues(namespace, table, columns, tuple(rows)), end


def _names(head: re.Match[str]) -> tuple[str | None, str, tuple[str, ...] | None] | None:
    """``(namespace, table, columns)`` from the head, or None if a name is not plain."""
    first, second, columns_text = head.group("first", "second", "columns")
    target = [_name(first)] if second is None else [_name(first), _name(second)]
    columns = None
    if columns_text is not None:
        columns = tuple(_name(match.group(1)) for match in _columns(columns_text))
    if None in target or (columns is not None and None in columns):
        return None
    if second is None:
        return None, target[0], columns  # type: ignore[return-value]
    return target[0], target[1], columns  # type: ignore[return-value]


def _name(raw: str) -> str | None:
    if raw[0] == '"':
        return raw[1:-1]
    return raw.lower() if _plain_to_sqlglot(raw.upper()) else None


def _columns(text: str) -> list[re.Match[str]]:
    matches, pos = [], 0
    while pos < len(text):
        match = _COLUMN.match(text, pos)
        assert match is not None  # the head pattern already checked the list's shape
        matches.append(match)
        pos = match.end()
    return matches


@functools.lru_cache(maxsize=4096)
def _plain_to_sqlglot(word: str) -> bool:
    """Whether sqlglot reads the unquoted ``word`` as a plain identifier as namespace, table
    and column name of an INSERT (``values``, ``select``, ``null``, ``current_date`` ... are
    not). Asked once per word: the answer depends on sqlglot's keyword tables only."""
    sql = f"INSERT INTO {word}.{word} ({word}) VALUES (1)"
    try:
        node = rewrite_context_functions(parse_sql(sql, []))
    except InvalidSql:
        return False
    if not (isinstance(node, exp.Insert) and isinstance(node.this, exp.Schema)
            and isinstance(node.expression, exp.Values)):
        return False
    target, (column, *others) = node.this.this, node.this.expressions
    return (isinstance(target, exp.Table) and target.name == word and target.db == word
            and isinstance(column, exp.Identifier) and column.name == word and not others
            and node.expression.sql() == "VALUES (1)")


def _rows(sql: str, pos: int, width: int) -> tuple[list[tuple[Any, ...]], int] | None:
    """The converted rows from ``pos`` (just after VALUES) and the offset just after the
    last row's ``)``, or None if not in the shape.

    Rows of ``width`` items (the first row's width when 0) are read a row per match; a row
    that does not match sends the rest to ``_loose_rows``, which reads item by item."""
    rows: list[tuple[Any, ...]] = []
    if not width:
        first = _loose_row(sql, pos)
        if first is None:
            return None
        row, close, pos = first
        rows.append(row)
        width = len(row)
        if not sql.startswith(",", pos):
            return (rows, close) if _END.match(sql, pos) else None
        pos += 1
    if width > _MAX_FAST_WIDTH:
        return _loose_rows(sql, pos, rows)
    match_row = _row_pattern(width).match
    raw: list[tuple[str, ...]] = []  # matched item texts, converted a column at a time
    while True:
        match = match_row(sql, pos)
        if match is None:
            return _loose_rows(sql, pos, rows + _convert_rows(raw))
        raw.append(match.groups())
        pos = match.end()
        if not sql.startswith(",", pos):
            if _END.match(sql, pos) is None:
                return None
            # the row's `)`: after the last item and the skippable text following it
            close = _LEADING_SKIP.match(sql, match.end(width)).end() + 1
            return rows + _convert_rows(raw), close
        pos += 1


def _convert_rows(raw: list[tuple[str, ...]]) -> list[tuple[Any, ...]]:
    """``_convert`` of every item, a column at a time (the same values)."""
    if not raw:
        return []
    columns = [_convert_column(texts) for texts in zip(*raw, strict=True)]
    return list(zip(*columns, strict=True))


_DIGITS = frozenset("0123456789")


def _convert_column(texts: tuple[str, ...]) -> list[Any]:
    """One column's items. A column of plain strings (no ``''`` escape) or of digit-only
    numbers — the bulk of real inserts — converts without a Python call per item."""
    heads = {text[0] for text in texts}
    if heads == {"'"} and "''" not in "\x00".join(texts):
        return [text[1:-1] for text in texts]
    if heads <= _DIGITS:
        try:
            return list(map(int, texts))  # "1.5" or "1e5" raise: _convert gives a Decimal
        except ValueError:
            pass
    return list(map(_convert, texts))


@functools.lru_cache(maxsize=64)
def _row_pattern(width: int) -> re.Pattern[str]:
    """``( v, v, ... )`` with exactly ``width`` items, one group per item."""
    item = _S + "(" + _VALUE + ")" + _S
    return re.compile(_S + r"\(" + ",".join([item] * width) + r"\)" + _S)


def _loose_rows(sql: str, pos: int, rows: list[tuple[Any, ...]]
                ) -> tuple[list[tuple[Any, ...]], int] | None:
    """Rows of any width from ``pos`` appended to ``rows`` (widths are checked later), and
    the offset just after the last row's ``)``."""
    while True:
        parsed = _loose_row(sql, pos)
        if parsed is None:
            return None
        row, close, pos = parsed
        rows.append(row)
        if not sql.startswith(",", pos):
            return (rows, close) if _END.match(sql, pos) else None
        pos += 1


def _loose_row(sql: str, pos: int) -> tuple[tuple[Any, ...], int, int] | None:
    """One ``( v, ... )`` row of any width from ``pos``: its values, the offset just after
    its ``)`` and the offset after the whitespace and comments following it; None if not in
    the shape."""
    opening = _LEADING_SKIP.match(sql, pos).end()
    if not sql.startswith("(", opening):
        return None
    values = []
    pos = opening + 1
    while True:
        item = _ITEM.match(sql, pos)
        if item is None:
            return None
        values.append(_convert(item.group(1)))
        pos = item.end()
        if item.group(2) == ")":
            return tuple(values), pos, _LEADING_SKIP.match(sql, pos).end()


def _convert(text: str) -> Any:
    """The value of one matched item (its first character tells its kind)."""
    first = text[0]
    if first == "'":
        value = text[1:-1]
        return value.replace("''", "'") if "''" in value else value
    if first in "0123456789.":
        return int(text) if text.isdigit() else Decimal(text)
    if first == "$":
        param = _PARAMS.get(text)
        if param is None:
            param = Param(int(text[1:]))
            if len(text) <= 5:  # $1 .. $9999 are shared; others are rare
                _PARAMS[text] = param
        return param
    if first == "-":
        return -_convert(_NEGATED.match(text).group(1))
    word = text.upper()
    if word not in _WORDS:  # a call with its parentheses: keep the name
        word = _CALL_WORD.match(word).group()
    return _WORDS[word]


def _check_widths(rows: tuple[tuple[Any, ...], ...] | list[tuple[Any, ...]], columns: tuple[str, ...] | None) -> None:
    width = len(columns) if columns is not None else len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) == width:
            continue
        if columns is not None:
            raise InvalidSql(f"INSERT has {len(row)} values for {width} columns")
        raise InvalidSql(f"VALUES lists must all be the same length: row {number} has "
                         f"{len(row)} values, row 1 has {width}")
