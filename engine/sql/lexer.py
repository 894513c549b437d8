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

How: one compiled pattern (``_MASTER``) matches "skip whitespace and comments, then one token"
for the common cases, so most tokens cost one regex step. Character classes in it are ASCII;
wherever a non-ASCII character could change the outcome under ``str.isalpha``/``str.isdigit``
(a non-ASCII letter or digit starting a token, a non-ASCII digit after a number or ``$``), the
pattern declines and ``_special`` scans that one token with the Python predicates. Nested
block comments and unterminated constructs go to ``_special`` too. ``\\s`` and ``\\w`` in
Python's ``re`` are exactly ``str.isspace`` and ``str.isalnum() or '_'``, so those need no
special case.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import NamedTuple


class TokenKind(enum.Enum):
    WORD = "word"          # unquoted identifier or keyword; ``value`` is the text as written
    QIDENT = "qident"      # "quoted identifier"; ``value`` has the quotes removed and "" undone
    STRING = "string"      # '...', E'...' or $$...$$; ``value`` is the decoded content
    NUMBER = "number"      # 12, 1.5, .5, 1e10; ``value`` is the text
    PARAM = "param"        # $1; ``value`` is the text
    PUNCT = "punct"        # one character: ( ) , ; . = * + - < > ...


class Token(NamedTuple):
    """One lexical token; ``start``/``end`` are offsets into the scanned text (end exclusive).

    A named tuple (immutable, cheap to create: a statement can hold thousands of tokens)."""

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


# Whitespace and comments a token may be preceded by (block comments without a nested "/*";
# a nested one makes the pattern stop there, and ``_special`` skips it). Other modules build
# their own patterns from it (``insert_values.py``).
SKIP_PATTERN = r"(?:\s++|--[^\n]*+|/\*(?:[^*/]++|\*(?!/)|/(?!\*))*+\*/)*+"
_MASTER = re.compile(SKIP_PATTERN + r"""(?:
  (?P<punct>[^\s'"$./0-9A-Za-z_\x80-\U0010ffff]
           | /(?!\*)
           | \.(?![0-9]|[^\x00-\x7f])
           | \$(?![0-9]|[^\x00-\x7f]|(?:[A-Za-z_]\w*+)?\$))
| (?P<word>(?![eE]')[A-Za-z_][\w$]*+)
| (?P<number>(?>(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)(?:[eE][+-]?[0-9]++)?+)
             (?![^\x00-\x7f]|[eE][+-]?[^\x00-\x7f]))
| (?P<string>'[^']*+(?:''[^']*+)*+')
| (?P<param>\$[0-9]++(?![^\x00-\x7f]))
| (?P<qident>"[^"]*+(?:""[^"]*+)*+")
| (?P<estring>[eE]'(?:[^'\\]++|\\[\s\S]|'')*+')
| (?P<dollar>\$(?P<tag>(?:[A-Za-z_]\w*+)?)\$[\s\S]*?\$(?P=tag)\$)
| (?P<special>[\s\S])
| \Z)""", re.VERBOSE)
_GROUP = _MASTER.groupindex
_PUNCT, _WORD, _NUMBER, _STRING, _PARAM, _QIDENT, _ESTRING, _DOLLAR, _SPECIAL = (
    _GROUP[name] for name in ("punct", "word", "number", "string", "param", "qident",
                              "estring", "dollar", "special"))
_TAG = _GROUP["tag"]
# Groups whose token value is simply the matched text.
_SIMPLE_KINDS = {_PUNCT: TokenKind.PUNCT, _WORD: TokenKind.WORD, _NUMBER: TokenKind.NUMBER,
                 _PARAM: TokenKind.PARAM}
_WORD_REST = re.compile(r"[\w$]*")
_COMMENT_MARK = re.compile(r"/\*|\*/")
_E_ESCAPE = re.compile(r"\\([\s\S])|''")
_BACKSLASH_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}
_new_token: Callable[..., Token] = tuple.__new__  # type: ignore[assignment]


def tokenize(text: str) -> list[Token]:
    """Scan ``text`` into tokens, skipping whitespace and comments.

    Raises:
        LexError: an unterminated string, quoted identifier, dollar quote or block comment.
    """
    tokens: list[Token] = []
    append = tokens.append
    simple_kind = _SIMPLE_KINDS.get
    pos = 0
    while True:
        for match in _MASTER.finditer(text, pos):
            group = match.lastindex
            if group is None:  # the end (after trailing whitespace and comments)
                return tokens
            start, end = match.span(group)
            kind = simple_kind(group)
            if kind is not None:
                append(_new_token(Token, (kind, text[start:end], start, end)))
            elif group == _STRING:
                value = text[start + 1:end - 1]
                if "''" in value:
                    value = value.replace("''", "'")
                append(_new_token(Token, (TokenKind.STRING, value, start, end)))
            elif group == _SPECIAL:
                pos = _special(text, start, append)
                break
            else:
                append(_quoted(match, group, text, start, end))
        else:
            return tokens


def _quoted(match: re.Match[str], group: int, text: str, start: int, end: int) -> Token:
    """A quoted identifier, E-string or dollar-quoted string matched by ``_MASTER``."""
    if group == _QIDENT:
        return Token(TokenKind.QIDENT, text[start + 1:end - 1].replace('""', '"'), start, end)
    if group == _ESTRING:
        value = _E_ESCAPE.sub(_e_escape, text[start + 2:end - 1])
        return Token(TokenKind.STRING, value, start, end)
    assert group == _DOLLAR
    tag = len(match.group(_TAG)) + 2
    return Token(TokenKind.STRING, text[start + tag:end - tag], start, end)


def _e_escape(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if escaped is None:
        return "'"
    return _BACKSLASH_ESCAPES.get(escaped, escaped)


def _special(text: str, pos: int, append: Callable[[Token], None]) -> int:
    """Scan what ``_MASTER`` declined at ``pos``; append its token (if any), return the end.

    That is: a nested block comment, an unterminated construct (raises), a dollar sign, number
    or word whose meaning depends on non-ASCII characters, or a non-ASCII character."""
    ch = text[pos]
    if text.startswith("/*", pos):
        return _skip_block_comment(text, pos)
    if ch == "'" or (ch in "eE" and text.startswith("'", pos + 1)):
        raise LexError("Unterminated string literal", pos)
    if ch == '"':
        raise LexError("Unterminated quoted identifier", pos)
    if ch == "$":
        token = _scan_dollar(text, pos)
    elif ch.isdigit() or (ch == "." and text[pos + 1:pos + 2].isdigit()):
        end = _number_end(text, pos)
        token = Token(TokenKind.NUMBER, text[pos:end], pos, end)
    elif ch.isalpha() or ch == "_":
        end = _WORD_REST.match(text, pos + 1).end()
        token = Token(TokenKind.WORD, text[pos:end], pos, end)
    else:
        token = Token(TokenKind.PUNCT, ch, pos, pos + 1)
    append(token)
    return token.end


def _skip_block_comment(text: str, start: int) -> int:
    """The end of the (possibly nested) block comment opening at ``start``."""
    depth = 0
    for mark in _COMMENT_MARK.finditer(text, start):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    raise LexError("Unterminated block comment", start)


def _scan_dollar(text: str, pos: int) -> Token:
    end = _digits_end(text, pos + 1)
    if end > pos + 1:
        return Token(TokenKind.PARAM, text[pos:end], pos, end)
    if end < len(text) and (text[end].isalpha() or text[end] == "_"):
        end += 1
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


def _digits_end(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isdigit():
        pos += 1
    return pos


def _number_end(text: str, pos: int) -> int:
    end = _digits_end(text, pos)
    if text.startswith(".", end):
        end = _digits_end(text, end + 1)
    if end < len(text) and text[end] in "eE":
        exponent = end + 1
        if exponent < len(text) and text[exponent] in "+-":
            exponent += 1
        if exponent < len(text) and text[exponent].isdigit():
            end = _digits_end(text, exponent)
    return end
