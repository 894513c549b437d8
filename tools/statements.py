"""Splits typed or scripted SQL into complete statements and backslash commands.

``StatementSplitter.feed(line)`` takes one input line at a time (as a shell reads them) and
returns the items it completed: ``Statement(text)`` for SQL ended by a ``;`` outside quotes
and comments, ``Meta(command, argument)`` for a backslash command written at the start of a
statement (``\\d items``, which ends at the end of its line, at a ``;`` or at the next
backslash, so ``\\dt; \\dn`` is two commands). ``finish()`` hands back whatever
text is still pending (a script's last statement without ``;``).

What counts as quoted or commented, so that a ``;`` inside it does not end a statement:

- ``'...'`` strings with ``''`` as an escaped quote; ``E'...'`` strings also take ``\\'``;
- ``"..."`` identifiers with ``""`` as an escaped quote;
- ``$$...$$`` and ``$tag$...$tag$`` dollar-quoted strings;
- ``-- ...`` comments to the end of the line, and ``/* ... */`` comments, which nest (as in
  PostgreSQL).

A statement holding only whitespace and comments is dropped, so ``;;`` or a trailing comment
sends nothing. Statement text keeps the user's spelling (comments included) without the
terminating ``;``. The splitter is pure (no I/O) and not thread-safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$]")


@dataclass(frozen=True, slots=True)
class Statement:
    text: str  # without the terminating ';', stripped


@dataclass(frozen=True, slots=True)
class Meta:
    command: str  # "\\d", "\\dt", "\\q", ...
    argument: str  # the rest of the line, stripped ("" when none)


Item = Statement | Meta


class StatementSplitter:
    """Accumulates lines until statements complete; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._buffer: list[str] = []  # the pending statement's text, in pieces
        self._substantive = False  # pending text has something besides blanks and comments
        self._state = "normal"  # normal | quote | equote | ident | dollar | block
        self._dollar_tag = ""
        self._block_depth = 0

    @property
    def pending(self) -> bool:
        """True when a statement has begun but is not yet complete (the shell's `->` prompt)."""
        return self._substantive or self._state != "normal"

    def feed(self, line: str) -> list[Item]:
        """Consumes one line (with or without its newline) and returns the completed items."""
        line = line.rstrip("\n")
        items: list[Item] = []
        i = 0
        while i < len(line):
            if line[i] == "\\" and not self.pending:
                end = _meta_end(line, i + 1)
                items.append(_meta(line[i:end]))
                self._buffer.clear()  # blanks and comments before the command
                i = end + 1 if line.startswith(";", end) else end
                continue
            i, done = self._step(line, i)
            if done:
                statement = self._take()
                if statement is not None:
                    items.append(statement)
        self._buffer.append("\n")
        if self._state == "normal" and not self._substantive:
            self._buffer.clear()  # blank lines and closed comments between statements
        return items

    def finish(self) -> Statement | None:
        """The pending statement at end of input (no ``;`` needed), or None; then resets."""
        statement = self._take() if self._substantive else None
        self._reset()
        return statement

    def _reset(self) -> None:
        self._buffer.clear()
        self._substantive = False
        self._state = "normal"
        self._block_depth = 0

    def _take(self) -> Statement | None:
        text = "".join(self._buffer).strip()
        substantive = self._substantive
        self._buffer.clear()
        self._substantive = False
        return Statement(text) if substantive and text else None

    def _step(self, line: str, i: int) -> tuple[int, bool]:
        """Consumes the token at ``line[i]``; returns the next index and whether a ``;``
        ended the statement (the ``;`` is not kept)."""
        state = self._state
        if state == "normal":
            return self._step_normal(line, i)
        if state == "block":
            return self._step_block(line, i), False
        if state == "dollar":
            end = line.find(f"${self._dollar_tag}$", i)
            if end < 0:
                self._buffer.append(line[i:])
                return len(line), False
            stop = end + len(self._dollar_tag) + 2
            self._buffer.append(line[i:stop])
            self._state = "normal"
            return stop, False
        return self._step_quoted(line, i), False

    def _step_normal(self, line: str, i: int) -> tuple[int, bool]:
        ch = line[i]
        if ch == ";":
            return i + 1, True
        if line.startswith("--", i):
            self._buffer.append(line[i:])
            return len(line), False
        if line.startswith("/*", i):
            self._state, self._block_depth = "block", 1
            self._buffer.append("/*")
            return i + 2, False
        self._buffer.append(ch)
        if ch.isspace():
            return i + 1, False
        self._substantive = True
        if ch == "'":
            escaped = i > 0 and line[i - 1] in "eE" and (i < 2 or not _IDENT_CHAR.match(line[i - 2]))
            self._state = "equote" if escaped else "quote"
        elif ch == '"':
            self._state = "ident"
        elif ch == "$" and (i == 0 or not _IDENT_CHAR.match(line[i - 1])):
            match = _DOLLAR_TAG.match(line, i)
            if match:
                self._state, self._dollar_tag = "dollar", match.group(1) or ""
                self._buffer.append(match.group(0)[1:])
                return match.end(), False
        return i + 1, False

    def _step_block(self, line: str, i: int) -> int:
        if line.startswith("/*", i):
            self._block_depth += 1
            self._buffer.append("/*")
            return i + 2
        if line.startswith("*/", i):
            self._block_depth -= 1
            self._buffer.append("*/")
            if self._block_depth == 0:
                self._state = "normal"
            return i + 2
        self._buffer.append(line[i])
        return i + 1

    def _step_quoted(self, line: str, i: int) -> int:
        quote = '"' if self._state == "ident" else "'"
        ch = line[i]
        if self._state == "equote" and ch == "\\" and i + 1 < len(line):
            self._buffer.append(line[i:i + 2])
            return i + 2
        self._buffer.append(ch)
        if ch != quote:
            return i + 1
        if line.startswith(quote, i + 1):  # doubled quote: an escaped quote character
            self._buffer.append(quote)
            return i + 2
        self._state = "normal"
        return i + 1


def _meta_end(line: str, start: int) -> int:
    """Where a backslash command that starts before ``start`` ends: at the next ``\\`` or
    ``;`` or the end of the line."""
    ends = [pos for pos in (line.find("\\", start), line.find(";", start)) if pos >= 0]
    return min(ends, default=len(line))


def _meta(line: str) -> Meta:
    command, _, argument = line.strip().partition(" ")
    return Meta(command, argument.strip().rstrip(";").strip())


def split_script(text: str) -> list[Item]:
    """Every item of a whole script, the last statement's ``;`` being optional."""
    splitter = StatementSplitter()
    items: list[Item] = []
    for line in text.splitlines():
        items += splitter.feed(line)
    last = splitter.finish()
    if last is not None:
        items.append(last)
    return items
