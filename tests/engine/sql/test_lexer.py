"""The scanner (``engine/sql/lexer.py``): the compiled-pattern scanner must produce exactly the
tokens (kinds, values, offsets) and errors of the original character-by-character scanner,
which is kept below as the reference (``_reference_tokenize``; test code only)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.sql.lexer import LexError, Token, TokenKind, tokenize

# --- the reference: the original scanner, verbatim apart from names ---------------------------

_BACKSLASH_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}


def _reference_tokenize(text: str) -> list[Token]:
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
            pos = _ref_skip_block_comment(text, pos)
        else:
            token = _ref_scan_token(text, pos)
            tokens.append(token)
            pos = token.end
    return tokens


def _ref_scan_token(text: str, pos: int) -> Token:
    ch = text[pos]
    if ch == "'":
        return _ref_scan_quoted(text, pos, pos, TokenKind.STRING, "'", backslashes=False)
    if ch == '"':
        return _ref_scan_quoted(text, pos, pos, TokenKind.QIDENT, '"', backslashes=False)
    if ch in "eE" and text.startswith("'", pos + 1):
        return _ref_scan_quoted(text, pos, pos + 1, TokenKind.STRING, "'", backslashes=True)
    if ch == "$":
        return _ref_scan_dollar(text, pos)
    if ch.isalpha() or ch == "_":
        end = pos + 1
        while end < len(text) and (text[end].isalnum() or text[end] in "_$"):
            end += 1
        return Token(TokenKind.WORD, text[pos:end], pos, end)
    if ch.isdigit() or (ch == "." and text[pos + 1:pos + 2].isdigit()):
        return _ref_scan_number(text, pos)
    return Token(TokenKind.PUNCT, ch, pos, pos + 1)


def _ref_skip_block_comment(text: str, start: int) -> int:
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


def _ref_scan_quoted(text: str, start: int, quote_at: int, kind: TokenKind, quote: str, *,
                     backslashes: bool) -> Token:
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


def _ref_scan_dollar(text: str, pos: int) -> Token:
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


def _ref_scan_number(text: str, pos: int) -> Token:
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


# --- comparing the two ------------------------------------------------------------------------


def _outcome(scan, text: str) -> object:
    """The token list as plain tuples, or the error's message and position."""
    try:
        return [(token.kind, token.value, token.start, token.end) for token in scan(text)]
    except LexError as exc:
        return ("LexError", exc.message, exc.position)


def _assert_same(text: str) -> None:
    assert _outcome(tokenize, text) == _outcome(_reference_tokenize, text), repr(text)


# Characters chosen to hit every branch: quotes and their escapes, dollar quotes and tags,
# comment openers and closers, number parts, and non-ASCII letters, digits (decimal and not),
# numerics and whitespace, where str.isalpha/str.isdigit and the ASCII pattern could disagree.
_CHARS = [
    *"aeEx_Z09.+-$'\"\\/*;,()= \n\t", "\u00b2", "\u0663", "\u00e9", "\u4e00", "\u00bd",
    "\u00a0", "\u2003", "\u1680", "\x00", "\x1c", "\u2460", "\U0001d7d8", "\u0301",
]
_FRAGMENTS = ["$$", "$a$", "$tag$", "$1", "$12", "E'", "e'", "''", '""', "/*", "*/", "--",
              "1.5", "1e5", "1e+", ".5", "\\'", "select", "\u00e9t\u00e9", "$\u00e9$",
              "1\u00b2", "$\u0663", "1e\u0663", ".\u00b2", "\u00e9'x'"]
_TEXT = st.lists(st.one_of(st.sampled_from(_CHARS), st.sampled_from(_FRAGMENTS)),
                 max_size=30).map("".join)


@settings(max_examples=3000, deadline=None)
@given(_TEXT)
@example("SELECT 'a''b', E'x\\'y\\n', \"q\"\"d\", $t$ $ $t$, $1, 1.5e-3, .5 -- c\n/* /* n */ */ x")
@example("1e\u00b2 1.\u00b2 $1\u00b2 $\u00b2 .\u00b2 \u00b2 \u00e9 \u00bd \u4e00x "
         "$\u00e9$ $\u00e9$")
@example("/* a /*/ b */ */ 'x''")
def test_tokenize__random_text__same_tokens_and_errors_as_the_reference(text: str) -> None:
    _assert_same(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_tokenize__arbitrary_unicode__same_as_the_reference(text: str) -> None:
    _assert_same(text)


@pytest.mark.parametrize("text", [
    "", " ", "--", "-- x", "/**/", "/* */ /* /* */ */", "'", "'a", "'a''", "E'", "e'a\\",
    "E'a\\'", '"', '"a""', "$", "$$", "$a", "$a$", "$a$ $b$", "$1$", "$1a", "$_$x$_$",
    "a$b$c", "1.", "1.e5", "1e", "1e-", "1e-5x", "..5", "1..2", "x.5", "\u00b2", "$\u00b2",
    "1\u0663", "\u0663.5", "\u00e9'x'", "E'\\\n'", "U&'x'", "a--b\nc", "a/*b*/c", "*/",
    "/* unterminated", "/* /* */", "SELECT 1;", "\u00a0SELECT\u2003",
])
def test_tokenize__edge_cases__same_as_the_reference(text: str) -> None:
    _assert_same(text)


def test_tokenize__tokens_are_immutable_tuples_with_offsets() -> None:
    (word, string) = tokenize("  abc 'x''y'")
    assert word == Token(TokenKind.WORD, "abc", 2, 5)
    assert (string.kind, string.value, string.start, string.end) == (TokenKind.STRING, "x'y", 6, 12)
    assert word.upper == "ABC" and string.upper == ""
    with pytest.raises(AttributeError):
        word.value = "other"  # type: ignore[misc]
