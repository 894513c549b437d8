"""Step 5 of PROTOCOL.md §1.3, first half: split a request's SQL into statements and unwrap each
statement's ``EXECUTE AS USER '<u>' ( ... )`` wrapper (§2.7). Classification is ``classify.py``.

Splitting uses the scanner in ``lexer.py`` (PostgreSQL lexical rules: ``''`` and ``E''`` strings,
``"..."`` identifiers, dollar quotes, ``--`` and nestable ``/* */`` comments). As in ``psql``, a
semicolon inside parentheses does not end a statement; that is what lets
``EXECUTE AS USER 'u' (SELECT 1; SELECT 2)`` reach the unwrapper and fail with INVALID_INPUT
instead of being cut in half.

``split_with_tokens``/``unwrap_with_tokens`` hand each statement's tokens on to ``classify`` so a
request is scanned at most once; a request that is one plain INSERT ... VALUES is not scanned at
all (``insert_values.single_statement_span`` proves it is one well-formed statement).
"""

from __future__ import annotations

import re

from engine.errors import BatchParseError, InvalidInput, InvalidSql
from engine.sql.insert_values import single_statement_span
from engine.sql.lexer import LexError, Token, TokenKind, line_and_column, tokenize
from engine.sql.names import user_id_problem

# The statement's first word when it starts (after whitespace) with one; a statement starting
# with anything else (a comment, say) is scanned to find its first token.
_FIRST_WORD = re.compile(r"\s*+([A-Za-z_][\w$]*+)")


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
    return [text for text, _ in split_with_tokens(sql)]


def split_with_tokens(sql: str) -> list[tuple[str, list[Token] | None]]:
    """``split_statements`` that also hands out each statement's tokens, so that nothing
    downstream scans the text again: pass them to ``unwrap_with_tokens`` and ``classify``.

    Returns:
        ``(text, tokens)`` per statement: ``text`` exactly as ``split_statements`` returns it,
        ``tokens`` its tokens with offsets into ``text``; or ``None`` for "not scanned": the
        request is one INSERT ... VALUES in the shape of ``insert_values.py``, which the
        classifier's fast path reads without tokens (it scans them itself if it needs them).

    Raises:
        BatchParseError: as ``split_statements``.
    """
    span = single_statement_span(sql)
    if span is not None:
        return [(sql[span[0]:span[1]], None)]
    try:
        tokens = tokenize(sql)
    except LexError as exc:
        line, column = line_and_column(sql, exc.position)
        raise BatchParseError(
            f"{exc.message} starting at line {line}, column {column} (offset {exc.position})"
        ) from exc
    return [(sql[group[0].start:group[-1].end], _rebased(group, group[0].start))
            for group in _statement_groups(tokens)]


def _rebased(tokens: list[Token], shift: int) -> list[Token]:
    """``tokens`` with offsets ``shift`` characters earlier (into a slice of their text)."""
    if not shift:
        return tokens
    return [Token(token.kind, token.value, token.start - shift, token.end - shift)
            for token in tokens]


def _statement_groups(tokens: list[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = []
    current: list[Token] = []
    depth = 0
    for token in tokens:
        if token.kind is TokenKind.PUNCT:
            value = token.value
            if value == ";" and depth == 0:
                if current:
                    groups.append(current)
                current = []
                continue
            if value == "(":
                depth += 1
            elif value == ")":
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
            invalid user id; or a statement that cannot be scanned (only checked when it does
            not start with a plain word other than EXECUTE: the splitter has checked it).
    """
    user, inner, _ = unwrap_with_tokens(statement, None)
    return user, inner


def unwrap_with_tokens(statement: str, tokens: list[Token] | None
                       ) -> tuple[str | None, str, list[Token] | None]:
    """``unwrap_execute_as`` on a statement from ``split_with_tokens``, without scanning it
    again.

    Args:
        statement: one statement's text.
        tokens: its tokens (offsets into ``statement``), or None if not scanned: then a
            statement whose first word is not EXECUTE is returned as is, unscanned, and any
            other is scanned here.

    Returns:
        ``(target_user, inner_sql, inner_tokens)``: as ``unwrap_execute_as``, plus the inner
        statement's tokens with offsets into ``inner_sql`` (``tokens`` itself, possibly None,
        when there is no wrapper).

    Raises:
        InvalidInput, InvalidSql: as ``unwrap_execute_as``.
    """
    if tokens is None:
        first = _FIRST_WORD.match(statement)
        if first is not None and first.group(1).upper() != "EXECUTE":
            return None, statement, None
        try:
            tokens = tokenize(statement)
        except LexError as exc:
            raise _malformed(exc.message) from exc
    if len(tokens) < 2 or tokens[0].upper != "EXECUTE" or tokens[1].upper != "AS":
        return None, statement, tokens
    if len(tokens) < 3 or tokens[2].upper != "USER":
        raise _malformed("EXECUTE AS must be followed by USER '<user_id>'")
    user = _target_user(tokens)
    groups = _statement_groups(tokens[5:_closing_index(tokens)])
    if len(groups) > 1:
        raise InvalidInput("EXECUTE AS USER must wrap a single SQL statement")
    if not groups:
        raise _malformed("EXECUTE AS USER must wrap a SQL statement")
    (inner,) = groups
    if len(inner) >= 2 and inner[0].upper == "EXECUTE" and inner[1].upper == "AS":
        raise _malformed("EXECUTE AS USER cannot be nested")
    return user, statement[inner[0].start:inner[-1].end], _rebased(inner, inner[0].start)


def _target_user(tokens: list[Token]) -> str:
    if len(tokens) < 4 or tokens[3].kind not in (TokenKind.STRING, TokenKind.QIDENT, TokenKind.WORD):
        raise _malformed("EXECUTE AS USER requires a user id")
    user = tokens[3].value
    problem = user_id_problem(user)
    if problem:
        raise _malformed(problem)
    return user


def _closing_index(tokens: list[Token]) -> int:
    """The index of the ``)`` closing the wrapper's ``(`` (token 4), which must end it."""
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
                return index
    raise _malformed("EXECUTE AS USER ( ... ) is missing its closing parenthesis")


def _malformed(message: str) -> InvalidSql:
    return InvalidSql(message, at_classify=True)
