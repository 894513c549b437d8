"""A token cursor for the hand-written statement parsers (``parse_*.py``).

Parsers read one statement's tokens front to back with ``accept``/``expect`` helpers. Every
failure is an ``InvalidSql(at_classify=True)`` whose ``parse_errors`` holds one entry shaped like
sqlglot's (``description``, ``line``, ``col``, ``start_context``, ``highlight``, ``end_context``,
``into_expression``) pointing at the offending token, so callers see one error shape whichever
parser failed. Not thread-safe; one cursor per statement.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.errors import InvalidSql
from engine.sql.lexer import Token, TokenKind, line_and_column
from engine.sql.names import reference_problem

_CONTEXT_CHARS = 100  # characters of source shown either side of an error, as sqlglot does


def located_error(sql: str, message: str, start: int, end: int, *,
                  redact: bool = False) -> InvalidSql:
    """An ``InvalidSql(at_classify=True)`` for ``message`` located at ``sql[start:end]``.

    With ``redact`` the error keeps its line and column but no source text (for statements
    that carry passwords or credentials).
    """
    line, column = line_and_column(sql, start)
    error = {
        "description": message,
        "line": line,
        "col": column,
        "start_context": "" if redact else sql[max(0, start - _CONTEXT_CHARS):start],
        "highlight": "" if redact else sql[start:end],
        "end_context": "" if redact else sql[end:end + _CONTEXT_CHARS],
        "into_expression": None,
    }
    return InvalidSql(message, at_classify=True, parse_errors=[error])


class Cursor:
    """Reads ``tokens`` (scanned from ``sql``) from position ``index``."""

    def __init__(self, sql: str, tokens: list[Token], index: int = 0) -> None:
        self.sql = sql
        self.tokens = tokens
        self.index = index
        self.redact = False  # set by parsers of statements that carry secrets

    # --- looking -------------------------------------------------------------------------

    def peek(self, offset: int = 0) -> Token | None:
        position = self.index + offset
        return self.tokens[position] if position < len(self.tokens) else None

    def at_end(self) -> bool:
        return self.index >= len(self.tokens)

    def looking_at(self, *words: str) -> bool:
        """Whether the next tokens are ``words`` (keywords compared upper-case, or punctuation)."""
        for offset, word in enumerate(words):
            token = self.peek(offset)
            if token is None or token.upper != word:
                return False
        return True

    # --- consuming -----------------------------------------------------------------------

    def next(self, what: str) -> Token:
        """Consume and return the next token; ``what`` names the expectation for the error."""
        token = self.peek()
        if token is None:
            raise self.error(f"Expected {what} but reached the end of the statement")
        self.index += 1
        return token

    def accept(self, *words: str) -> bool:
        """Consume ``words`` if the next tokens are exactly them."""
        if not self.looking_at(*words):
            return False
        self.index += len(words)
        return True

    def expect(self, *words: str) -> None:
        for word in words:
            if not self.accept(word):
                raise self.error(f"Expected {word}{self._found()}")

    def expect_end(self) -> None:
        if not self.at_end():
            raise self.error(f"Unexpected '{self.sql[self.peek().start:self.peek().end]}'")

    def accept_any(self, *words: str) -> str | None:
        """Consume and return the first of ``words`` that comes next, or None."""
        for word in words:
            if self.accept(word):
                return word
        return None

    # --- values --------------------------------------------------------------------------

    def identifier(self, what: str) -> str:
        """An identifier: a word folded to lower case or a quoted identifier kept as written."""
        return self._identifier_token(what)[0]

    def checked_name(self, kind: str, check: Callable[[str, str], str | None]) -> str:
        """An identifier validated by ``check(kind, name)`` (a ``names`` function)."""
        name, token = self._identifier_token(f"a {kind.lower()} name")
        self._check(check, kind, name, token)
        return name

    def qualified_name(self, kind: str = "Table",
                       check: Callable[[str, str], str | None] = reference_problem,
                       ) -> tuple[str | None, str]:
        """``[namespace.]name``: the namespace gets the reference check, the name ``check``."""
        what = f"a {kind.lower()} name"
        name, token = self._identifier_token(what)
        namespace = None
        if self.accept("."):
            self._check(reference_problem, "Namespace", name, token)
            namespace = name
            name, token = self._identifier_token(what)
            if self.looking_at("."):
                raise self.error(f"Expected {what} of the form namespace.name")
        self._check(check, kind, name, token)
        return namespace, name

    def _identifier_token(self, what: str) -> tuple[str, Token]:
        token = self.peek()
        if token is None or token.kind not in (TokenKind.WORD, TokenKind.QIDENT):
            raise self.error(f"Expected {what}{self._found()}")
        self.index += 1
        return (token.value.lower() if token.kind is TokenKind.WORD else token.value), token

    def _check(self, check: Callable[[str, str], str | None], kind: str, name: str,
               token: Token) -> None:
        problem = check(kind, name)
        if problem:
            raise self.error_at(problem, token.start, token.end)

    def string(self, what: str) -> str:
        """A string literal's content."""
        token = self.peek()
        if token is None or token.kind is not TokenKind.STRING:
            raise self.error(f"Expected {what} as a quoted string{self._found()}")
        self.index += 1
        return token.value

    def text_value(self, what: str) -> str:
        """A string literal's content, or a bare word or quoted identifier as written."""
        token = self.peek()
        if token is None or token.kind not in (TokenKind.STRING, TokenKind.WORD, TokenKind.QIDENT):
            raise self.error(f"Expected {what}{self._found()}")
        self.index += 1
        return token.value

    def integer(self, what: str, *, minimum: int = 0) -> int:
        """A non-negative integer literal (bare or quoted digits) of at least ``minimum``."""
        token = self.peek()
        if token is None or token.kind not in (TokenKind.NUMBER, TokenKind.STRING) \
                or not token.value.isdigit():
            raise self.error(f"Expected {what} as a whole number{self._found()}")
        self.index += 1
        value = int(token.value)
        if value < minimum:
            raise self.error_at(f"{what[0].upper()}{what[1:]} must be at least {minimum}",
                                token.start, token.end)
        return value

    def balanced_end(self, stop: Callable[[Cursor], bool]) -> int:
        """Advance over tokens (keeping parentheses balanced) until ``stop(self)`` holds at
        depth 0 or the statement ends; return the source offset where the skipped text ends."""
        depth = 0
        end = self.tokens[self.index - 1].end if self.index else 0
        while not self.at_end():
            token = self.peek()
            if depth == 0 and stop(self):
                break
            if token.upper == "(":
                depth += 1
            elif token.upper == ")":
                depth -= 1
                if depth < 0:
                    raise self.error("Unbalanced ')'")
            end = token.end
            self.index += 1
        if depth:
            raise self.error("Missing ')'")
        return end

    # --- errors --------------------------------------------------------------------------

    def error(self, message: str) -> InvalidSql:
        """An error located at the next token (or at the end of the statement)."""
        token = self.peek()
        if token is None:
            end = len(self.sql.rstrip())
            return self.error_at(message, end, end)
        return self.error_at(message, token.start, token.end)

    def error_at(self, message: str, start: int, end: int) -> InvalidSql:
        """An error located at ``sql[start:end]`` (redacted if ``self.redact``)."""
        return located_error(self.sql, message, start, end, redact=self.redact)

    def _found(self) -> str:
        token = self.peek()
        if token is None:
            return " but reached the end of the statement"
        return f" but found '{self.sql[token.start:token.end]}'"

