"""A bounded cache of classified statements by text, so a repeated statement (the usual case
for ``$n``-parameterised queries and DML) skips scanning and parsing.

Classification is a pure function of the text, and statements are frozen dataclasses. Only
the hot kinds are kept: queries, INSERT (both forms), UPDATE and DELETE. The sqlglot trees
inside them are shared by every caller that classifies the same text, so callers must copy a
tree before changing it (``query.prepare`` and the DML handlers do; ``query.prepare_point``
only reads it). Not kept: errors (an exception is mutated as it propagates: traceback, the
executor's statement index), other statements (rare, and some carry secrets),
``InsertValues`` whose text holds no ``$`` (literal rows are one-off data that would only push
useful entries out; the fast path re-reads them cheaply), and texts longer than
``max_text_chars``.

Bounds: ``max_entries`` statements and ``max_total_chars`` characters of text, least recently
used first out. Text length is the proxy for memory: a sqlglot tree takes ~160 bytes per
character of its statement, so the defaults hold at most ~40 MiB of trees (typical statements
are a few hundred characters: 1,024 of them fit). A lock makes it safe to use
from several threads, though the engine classifies on the trio thread only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from engine.sql.statements import Delete, Insert, InsertValues, Query, Statement, Update

_CACHED_KINDS = (Query, Insert, InsertValues, Update, Delete)


class StatementCache:
    """An LRU map from statement text to its classified ``Statement``."""

    def __init__(self, max_entries: int = 1024, max_total_chars: int = 256 * 1024,
                 max_text_chars: int = 16 * 1024) -> None:
        self.max_entries = max_entries
        self.max_total_chars = max_total_chars
        self.max_text_chars = max_text_chars
        self._entries: OrderedDict[str, Statement] = OrderedDict()
        self._total_chars = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, text: str) -> Statement | None:
        """The cached statement for ``text`` (now the most recently used), or None."""
        with self._lock:
            statement = self._entries.get(text)
            if statement is None:
                self.misses += 1
                return None
            self._entries.move_to_end(text)
            self.hits += 1
            return statement

    def find(self, text: str) -> Statement | None:
        """``get`` for a guess (the executor tries a whole request text first): a miss is
        not counted, as the text may not be a statement at all."""
        with self._lock:
            statement = self._entries.get(text)
            if statement is not None:
                self._entries.move_to_end(text)
                self.hits += 1
            return statement

    def put(self, text: str, statement: Statement) -> None:
        """Remember ``statement`` for ``text`` if it is worth keeping (module docstring)."""
        if not self._worth_keeping(text, statement):
            return
        with self._lock:
            if text in self._entries:
                return
            self._entries[text] = statement
            self._total_chars += len(text)
            while len(self._entries) > self.max_entries \
                    or self._total_chars > self.max_total_chars:
                evicted, _ = self._entries.popitem(last=False)
                self._total_chars -= len(evicted)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._total_chars = 0

    def _worth_keeping(self, text: str, statement: Statement) -> bool:
        if len(text) > self.max_text_chars or not isinstance(statement, _CACHED_KINDS):
            return False
        return not isinstance(statement, InsertValues) or "$" in text
