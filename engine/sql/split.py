"""Step 5 of PROTOCOL.md §1.3, first half: split a request's SQL into statements and unwrap each
statement's ``EXECUTE AS USER '<u>' ( ... )`` wrapper (§2.7). Classification is ``classify.py``.

Splitting uses the scanner in ``lexer.py`` (PostgreSQL lexical rules: ``''`` and ``E''`` strings,
``"..."`` identifiers, dollar quotes, ``--`` and nestable ``/* */`` comments). As in ``psql``, a
semicolon inside parentheses does not end a statement; that is what lets
``EXECUTE AS USER 'u' (SELECT 1; SELECT 2)`` reach the unwrapper and fail with INVALID_INPUT
instead of being cut in half.
"""

from __future__ import annotations

from engine.errors import BatchParseError, InvalidInput, InvalidSql
from engine.sql.lexer import LexError, Token, TokenKind, line_and_column, tokenize
from engine.sql.names import user_id_problem


def split_statements(sql: str) -> list[str]:
    """Split ``sql`` on top-level semicolons.

    Args:
        sql: the request's SQL text (one or more statements).

    Returns:
        The statements in order, each sliced from the source from its first token to its last
        (so surrounding whitespace and comments are dropped, inner comments kept). Statements
        with no tokens (``;;``, a lone comment) are dropped; an empty list means "no SQL".

    Raises:
        BatchParseError: an unterminated quote, dollar quote or block comment; the message
            names its line, column and offset.
    """
    try:
        tokens = tokenize(sql)
    except LexError as exc:
        line, column = line_and_column(sql, exc.position)
        raise BatchParseError(
            f"{exc.message} starting at line {line}, column {column} (offset {exc.position})"
        ) from exc
    return [sql[group[0].start:group[-1].end] for group in _statement_groups(tokens)]


def _statement_groups(tokens: list[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = []
    current: list[Token] = []
    depth = 0
    for token in tokens:
        if token.kind is TokenKind.PUNCT and token.value == ";" and depth == 0:
            if current:
                groups.append(current)
            current = []
            continue
        if token.kind is TokenKind.PUNCT and token.value == "(":
            depth += 1
        elif token.kind is TokenKind.PUNCT and token.value == ")":
            depth = max(depth - 1, 0)  # a stray ')' is the classifier's problem, not ours
        current.append(token)
    if current:
        groups.append(current)
    return groups


def unwrap_execute_as(statement: str) -> tuple[str | None, str]:
    """Recognise ``EXECUTE AS USER <user> ( <one statement> )``.

    The keywords are case-insensitive. ``<user>`` is a single-quoted string (``''`` escapes a
    quote), a double-quoted identifier, or a bare word; its text is kept exactly as written
    (user ids are case-sensitive) and must satisfy the user id rules of §2.1.

    Returns:
        ``(target_user, inner_sql)`` for a wrapped statement, where ``inner_sql`` is the inner
        statement's text; ``(None, statement)`` when the statement does not start with
        ``EXECUTE AS``.

    Raises:
        InvalidInput: the parentheses hold more than one statement.
        InvalidSql: (``at_classify=True``) a malformed wrapper: missing ``USER``, user or
            parentheses, text after the closing parenthesis, an empty or nested wrapper, or an
            invalid user id.
    """
    try:
        tokens = tokenize(statement)
    except LexError as exc:
        raise _malformed(exc.message) from exc
    if len(tokens) < 2 or tokens[0].upper != "EXECUTE" or tokens[1].upper != "AS":
        return None, statement
    if len(tokens) < 3 or tokens[2].upper != "USER":
        raise _malformed("EXECUTE AS must be followed by USER '<user_id>'")
    user = _target_user(tokens)
    inner = _inner_text(statement, tokens)
    inner_statements = split_statements(inner)
    if len(inner_statements) > 1:
        raise InvalidInput("EXECUTE AS USER must wrap a single SQL statement")
    if not inner_statements:
        raise _malformed("EXECUTE AS USER must wrap a SQL statement")
    inner_tokens = tokenize(inner_statements[0])
    if len(inner_tokens) >= 2 and inner_tokens[0].upper == "EXECUTE" and inner_tokens[1].upper == "AS":
        raise _malformed("EXECUTE AS USER cannot be nested")
    return user, inner_statements[0]


def _target_user(tokens: list[Token]) -> str:
    if len(tokens) < 4 or tokens[3].kind not in (TokenKind.STRING, TokenKind.QIDENT, TokenKind.WORD):
        raise _malformed("EXECUTE AS USER requires a user id")
    user = tokens[3].value
    problem = user_id_problem(user)
    if problem:
        raise _malformed(problem)
    return user


def _inner_text(statement: str, tokens: list[Token]) -> str:
    if len(tokens) < 5 or tokens[4].upper != "(":
        raise _malformed("EXECUTE AS USER '<user_id>' must be followed by ( <statement> )")
    depth = 0
    for index in range(4, len(tokens)):
        value = tokens[index].upper
        if value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            if depth == 0:
                if index != len(tokens) - 1:
                    raise _malformed("Unexpected text after EXECUTE AS USER ( ... )")
                return statement[tokens[4].end:tokens[index].start]
    raise _malformed("EXECUTE AS USER ( ... ) is missing its closing parenthesis")


def _malformed(message: str) -> InvalidSql:
    return InvalidSql(message, at_classify=True)
