"""Statements parsed by sqlglot (``read="postgres"``): queries, INSERT/UPDATE/DELETE, CREATE
VIEW, and the verdict on statements no classifier entry matches.

Before sqlglot sees the text, each ``FILE("x")``/``FILE('x')`` upload placeholder (§5; sqlglot
cannot parse ``FILE`` as a function) is replaced, token by token, with ``KDB_FILE('x')``, and
``$n`` parameters get a space after them (``_sqlglot_text``). After
parsing, the context functions are rewritten on the AST (§3.1): ``CURRENT_USER``,
``CURRENT_USER()``, ``CURRENT_USER_ID()`` -> ``KDB_CURRENT_USER()`` and ``CURRENT_ROLE``,
``CURRENT_ROLE()`` -> ``KDB_CURRENT_ROLE()``. A quoted ``"current_role"`` or a qualified
``t.current_role`` is a column and stays one.

sqlglot's failures become ``InvalidSql(at_classify=True)`` carrying ``ParseError.errors``.
``INSERT ... ON CONFLICT`` is refused here (§3.7: no upsert); UPDATE/DELETE without WHERE are
left to the executor, which owns those messages.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from engine.errors import InvalidSql
from engine.sql.cursor import Cursor, located_error
from engine.sql.lexer import Token, TokenKind
from engine.sql.names import definition_problem, reference_problem
from engine.sql.statements import CreateView, Delete, DropView, Insert, Query, Statement, Update

_DIALECT = Postgres()
_STATEMENT_TOKENS = frozenset(_DIALECT.parser_class.STATEMENT_PARSERS)
_COMMAND_TOKENS = frozenset(_DIALECT.tokenizer_class.COMMANDS) | {TokenType.COMMAND}
_CONTEXT_WORD = re.compile("current_(?:user|role)", re.IGNORECASE)
_CONTEXT_FUNCTIONS = {
    "CURRENT_USER": "KDB_CURRENT_USER", "CURRENT_USER_ID": "KDB_CURRENT_USER",
    "CURRENT_ROLE": "KDB_CURRENT_ROLE",
}
# sqlglot expression class -> statement kind for the DML/query entry points.
_DML_KINDS: dict[type[exp.Expression], type[Statement]] = {
    exp.Insert: Insert, exp.Update: Update, exp.Delete: Delete,
}


def parse_sql(sql: str, tokens: list[Token]) -> exp.Expression:
    """Parse one statement with sqlglot, after ``_sqlglot_text``'s rewrites.

    Raises:
        InvalidSql: sqlglot could not tokenize or parse it (``parse_errors`` from sqlglot).
    """
    text = _sqlglot_text(sql, tokens)
    try:
        expressions = sqlglot.parse(text, read=_DIALECT)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        message = f"SQL parse error: {first.get('description', str(exc))}"
        if "line" in first:
            message += f" (line {first['line']}, column {first['col']})"
        raise InvalidSql(message, at_classify=True, parse_errors=exc.errors) from exc
    except TokenError as exc:
        raise InvalidSql(f"SQL parse error: {exc}", at_classify=True) from exc
    parsed = [expression for expression in expressions if expression is not None]
    if len(parsed) != 1:
        raise InvalidSql("Expected exactly one SQL statement", at_classify=True)
    return parsed[0]


def rewrite_context_functions(expression: exp.Expression, sql: str | None = None
                              ) -> exp.Expression:
    """Replace the §3.1 context functions in ``expression`` (see module docstring), in place.

    ``expression`` must be a fresh tree nobody else holds (it is changed, not copied). With
    ``sql``, the text it was parsed from, the walk is skipped when the text cannot hold a
    context function (no ``current_user``/``current_role`` in any case, anywhere)."""
    if sql is not None and _CONTEXT_WORD.search(sql) is None:
        return expression
    return expression.transform(_context_function, copy=False)


def _context_function(node: exp.Expression) -> exp.Expression:
    if isinstance(node, (exp.CurrentUser, exp.CurrentUserId)):
        return exp.Anonymous(this="KDB_CURRENT_USER", expressions=[])
    if isinstance(node, exp.CurrentRole):
        return exp.Anonymous(this="KDB_CURRENT_ROLE", expressions=[])
    if isinstance(node, exp.Anonymous) and node.name.upper() in _CONTEXT_FUNCTIONS \
            and not node.expressions:
        return exp.Anonymous(this=_CONTEXT_FUNCTIONS[node.name.upper()], expressions=[])
    if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier) \
            and not node.this.quoted and node.name.upper() == "CURRENT_ROLE":
        return exp.Anonymous(this="KDB_CURRENT_ROLE", expressions=[])
    return node


def _sqlglot_text(sql: str, tokens: list[Token]) -> str:
    """The text handed to sqlglot: each ``FILE("x")``/``FILE('x')`` becomes ``KDB_FILE('x')``,
    and a space goes after each ``$n`` directly followed by another character (sqlglot
    would read ``$1,$2`` as a dollar-quoted string tagged ``1,`` and fail to tokenize).
    Parse error columns after such a ``$n`` are one further to the right per inserted space."""
    pieces: list[str] = []
    copied_to = 0
    count = len(tokens)
    for index, token in enumerate(tokens):
        if token.start < copied_to:
            continue
        if token.kind is TokenKind.PARAM:
            if token.end < len(sql) and not sql[token.end].isspace():
                pieces += [sql[copied_to:token.end], " "]
                copied_to = token.end
        elif index + 3 < count and token.upper == "FILE" and tokens[index + 1].upper == "(" \
                and tokens[index + 3].upper == ")" \
                and tokens[index + 2].kind in (TokenKind.STRING, TokenKind.QIDENT):
            escaped = tokens[index + 2].value.replace("'", "''")
            pieces += [sql[copied_to:token.start], f"KDB_FILE('{escaped}')"]
            copied_to = tokens[index + 3].end
    return "".join(pieces) + sql[copied_to:]


def parse_query_or_dml(cur: Cursor) -> Statement:
    """The whole statement (SELECT, WITH, VALUES, '(' or INSERT/UPDATE/DELETE) via sqlglot."""
    expression = rewrite_context_functions(parse_sql(cur.sql, cur.tokens), cur.sql)
    kind = _DML_KINDS.get(type(expression))
    if kind is Insert and expression.args.get("conflict"):
        raise InvalidSql("ON CONFLICT is not supported (there is no upsert)", at_classify=True)
    if kind is not None:
        return kind(expression)
    if isinstance(expression, (exp.Query, exp.Values)):
        return Query(expression)
    raise unsupported_error(cur.sql, cur.tokens, expression)


def parse_create_view(cur: Cursor) -> CreateView:
    """CREATE [OR REPLACE] VIEW [IF NOT EXISTS] [ns.]v [(cols)] AS <query>, via sqlglot."""
    create = parse_sql(cur.sql, cur.tokens)
    if not isinstance(create, exp.Create) or str(create.args.get("kind")).upper() != "VIEW" \
            or create.expression is None:
        raise InvalidSql("Invalid CREATE VIEW statement", at_classify=True)
    target = create.this
    columns: tuple[str, ...] = ()
    if isinstance(target, exp.Schema):
        columns = tuple(_identifier(column) for column in target.expressions)
        target = target.this
    assert isinstance(target, exp.Table)
    namespace = _identifier(target.args["db"]) if target.args.get("db") else None
    name = _identifier(target.this)
    for kind, value, check in (("Namespace", namespace, reference_problem),
                               ("View", name, definition_problem)):
        problem = value is not None and check(kind, value)
        if problem:
            raise InvalidSql(problem, at_classify=True)
    query = rewrite_context_functions(create.expression, cur.sql)
    return CreateView(namespace, name, query, columns, bool(create.args.get("replace")),
                      bool(create.args.get("exists")))


def _identifier(node: exp.Expression) -> str:
    if isinstance(node, exp.Identifier):
        return node.name if node.quoted else node.name.lower()
    return node.name.lower()


def parse_drop_view(cur: Cursor) -> DropView:
    """``[IF EXISTS] [ns.]v`` after DROP VIEW."""
    if_exists = cur.accept("IF", "EXISTS")
    namespace, name = cur.qualified_name("View")
    cur.expect_end()
    return DropView(namespace, name, if_exists)


def unsupported_error(sql: str, tokens: list[Token],
                      parsed: exp.Expression | None = None) -> InvalidSql:
    """The error for a statement no classifier entry accepts.

    "Unsupported statement type: <WORDS>" when sqlglot recognises a statement (or one of its
    fall-back commands); sqlglot's parse error when it starts like a statement but does not
    parse; otherwise a parse error naming the first word.
    """
    if parsed is None:
        try:
            first = _DIALECT.tokenize(_sqlglot_text(sql, tokens))[0].token_type
        except (TokenError, IndexError) as exc:
            return InvalidSql(f"SQL parse error: {exc}", at_classify=True)
        if first not in _COMMAND_TOKENS:
            if first not in _STATEMENT_TOKENS:
                word = sql[tokens[0].start:tokens[0].end]
                return located_error(sql, f"SQL parse error: '{word}' does not start a statement",
                                     tokens[0].start, tokens[0].end)
            try:
                parsed = parse_sql(sql, tokens)
            except InvalidSql as exc:
                return exc
    return InvalidSql(f"Unsupported statement type: {_label(tokens, parsed)}", at_classify=True)


def _label(tokens: list[Token], parsed: exp.Expression | None) -> str:
    words = [tokens[0].upper or tokens[0].value]
    if words[0] in ("CREATE", "DROP", "ALTER", "SHOW"):
        kind = parsed.args.get("kind") if parsed is not None else None
        if isinstance(kind, str) and kind:
            words.append(kind.upper())
        elif len(tokens) > 1 and tokens[1].kind is TokenKind.WORD:
            words.append(tokens[1].upper)
    return " ".join(words)
