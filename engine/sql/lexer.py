"""A small hand-written SQL scanner with PostgreSQL's lexical rules for the parts that matter
when splitting a batch and recognising KalamDB statements.

What it knows (and nothing else):

- ``'...'`` strings, ``''`` escapes a quote; ``E'...'``/``e'...'`` strings additionally take
  backslash escapes (``\\'``, ``\\n``, ``\\t``, ``\\\\``; other escaped characters stand for
  themselves).
- ``"..."`` quoted identifiers, ``""`` escapes a quote.
- ``$$...$$`` and ``$tag$...$tag$`` dollar-quoted strings (tag: ``[A-Za-z_][A-Za-z0-9_]*``).
  ``$<digits>`` is a positional parameter, not a dollar quote.
- ``-- ...`` line comments and ``/* ... */`` block comments, which nest as in PostgreSQL.
- words (``[A-Za-z_][A-Za-z0-9_$]*``, non-ASCII letters included), numbers, and single
  punctuation characters. Operators are not grouped (``<=`` is two tokens): statement text is
  always re-sliced from the source, so nothing downstream needs operator tokens.

Comments and whitespace produce no tokens. Every token keeps its ``start``/``end`` offsets in the
source so callers slice the original text (``sql[tok.start:tok.end]``) rather than rebuild it.

An unterminated string, quoted identifier, dollar quote or block comment raises ``LexError``
with the offset where the construct began. Callers translate it into their layer's error
(``BatchParseError`` when splitting, ``InvalidSql`` when classifying).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TokenKind(enum.Enum):
    WORD = "word"          # unquoted identifier or keyword; ``value`` is the text as written
    QIDENT = "qident"      # "quoted identifier"; ``value`` has the quotes removed and "" undone
    STRING = "string"      # '...', E'...' or $$...$$; ``value`` is the decoded content
    NUMBER = "number"      # 12, 1.5, .5, 1e10; ``value`` is the text
    PARAM = "param"        # $1; ``value`` is the text
    PUNCT = "punct"        # one character: ( ) , ; . = * + - < > ...


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; ``start``/``end`` are offsets into the scanned text (end exclusive)."""

    kind: TokenKind
    value: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        """The keyword spelling: upper-cased text for WORD, the character for PUNCT, else ''."""
        if self.kind is TokenKind.WORD:
            return self.value.upper()
        if self.kind is TokenKind.PUNCT:
            return self.value
        return ""


class LexError(ValueError):
    """The text cannot be scanned; ``position`` is the offset where the bad construct began."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def line_and_column(text: str, position: int) -> tuple[int, int]:
    """The 1-based line and column of ``position`` in ``text``."""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


_BACKSLASH_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}


def tokenize(text: str) -> list[Token]:
    """Scan ``text`` into tokens, skipping whitespace and comments.

    Raises:
        LexError: an unterminated string, quoted identifier, dollar quote or block comment.
    """
    tokens: list[Token] = []
    pos = 0
    length = len(text)
    while pos < length:
        ch = text[pos]
        if ch.isspace():
            pos += 1
        elif text.startswith("--", pos):
            newline = text.find("\n", pos)
            pos = length if newline < 0 else newline + 1
        elif text.startswith("/*", pos):
            pos = _skip_block_comment(text, pos)
        else:
            token = _scan_token(text, pos)
            tokens.append(token)
            pos = token.end
    return tokens


def _scan_token(text: str, pos: int) -> Token:
    ch = text[pos]
    if ch == "'":
        return _scan_quoted(text, pos, pos, TokenKind.STRING, "'", backslashes=False)
    if ch == '"':
        return _scan_quoted(text, pos, pos, TokenKind.QIDENT, '"', backslashes=False)
    if ch in "eE" and text.startswith("'", pos + 1):
        return _scan_quoted(text, pos, pos + 1, TokenKind.STRING, "'", backslashes=True)
    if ch == "$":
        return _scan_dollar(text, pos)
    if ch.isalpha() or ch == "_":
        end = pos + 1
        while end < len(text) and (text[end].isalnum() or text[end] in "_$"):
            end += 1
        return Token(TokenKind.WORD, text[pos:end], pos, end)
    if ch.isdigit() or (ch == "." and text[pos + 1:pos + 2].isdigit()):
        return _scan_number(text, pos)
    return Token(TokenKind.PUNCT, ch, pos, pos + 1)


def _skip_block_comment(text: str, start: int) -> int:
    depth = 0
    pos = start
    while pos < len(text):
        if text.startswith("/*", pos):
            depth += 1
            pos += 2
        elif text.startswith("*/", pos):
            depth -= 1
            pos += 2
            if depth == 0:
                return pos
        else:
            pos += 1
    raise LexError("Unterminated block comment", start)


def _scan_quoted(text: str, start: int, quote_at: int, kind: TokenKind, quote: str, *,
                 backslashes: bool) -> Token:
    # ``start`` is where the token begins (the E of E'..'), ``quote_at`` the opening quote.
    parts: list[str] = []
    pos = quote_at + 1
    while pos < len(text):
        ch = text[pos]
        if backslashes and ch == "\\" and pos + 1 < len(text):
            escaped = text[pos + 1]
            parts.append(_BACKSLASH_ESCAPES.get(escaped, escaped))
            pos += 2
        elif ch == quote:
            if text.startswith(quote, pos + 1):
                parts.append(quote)
                pos += 2
            else:
                return Token(kind, "".join(parts), start, pos + 1)
        else:
            parts.append(ch)
            pos += 1
    what = "quoted identifier" if kind is TokenKind.QIDENT else "string literal"
    raise LexError(f"Unterminated {what}", start)


def _scan_dollar(text: str, pos: int) -> Token:
    end = pos + 1
    if end < len(text) and text[end].isdigit():
        while end < len(text) and text[end].isdigit():
            end += 1
        return Token(TokenKind.PARAM, text[pos:end], pos, end)
    if end < len(text) and (text[end].isalpha() or text[end] == "_"):
        while end < len(text) and (text[end].isalnum() or text[end] == "_"):
            end += 1
    if not text.startswith("$", end):
        return Token(TokenKind.PUNCT, "$", pos, pos + 1)
    delimiter = text[pos:end + 1]
    body_start = end + 1
    close = text.find(delimiter, body_start)
    if close < 0:
        raise LexError("Unterminated dollar-quoted string", pos)
    return Token(TokenKind.STRING, text[body_start:close], pos, close + len(delimiter))


def _scan_number(text: str, pos: int) -> Token:
    end = pos
    while end < len(text) and text[end].isdigit():
        end += 1
    if text.startswith(".", end):
        end += 1
        while end < len(text) and text[end].isdigit():
            end += 1
    if end < len(text) and text[end] in "eE":
        exponent = end + 1
        if exponent < len(text) and text[exponent] in "+-":
            exponent += 1
        if exponent < len(text) and text[exponent].isdigit():
            end = exponent
            while end < len(text) and text[end].isdigit():
                end += 1
    return Token(TokenKind.NUMBER, text[pos:end], pos, end)
