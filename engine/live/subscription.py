"""One live subscription: its state machine, buffering during the initial load, and paging.

States: ``loading`` → ``live`` → ``closed`` (or ``loading`` → ``closed``).

- ``loading``: registered, so every commit that matches is captured — into ``pending``
  (at most ``buffer_max`` changes), not the outbox, because the client must first get the
  ack and the initial pages.
- ``go_live()`` (after the last page was queued): pending changes whose ``_seq`` lies above
  the snapshot's high-water mark are queued in commit order, then later changes go straight
  to the outbox. Nothing is queued between the last page and them, so the client sees
  pages, then buffered changes, then live ones: no gap (registration happened before the
  snapshot was taken) and no duplicate (the high-water mark filter; in practice the
  registration and the snapshot happen in one synchronous step, so nothing is both).
- ``closed``: unsubscribed, killed, disconnected or failed; changes still queued for it are
  skipped by the writer.

A change that does not fit (the outbox or the pending buffer is full) fails the
subscription: it is removed from the registry and an ``error`` message is queued — a commit
never waits for a socket.

Task safety: trio thread only; ``deliver`` never awaits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..catalog import SEQ_COLUMN
from ..events import Op
from ..query import RowSnapshot
from ..session import Session
from .outbox import Outbox
from .query import LiveQuery

if TYPE_CHECKING:
    from .registry import LiveRegistry


@dataclass(slots=True, eq=False)
class Change:
    """Matching rows of one table change for one subscription, rendered by the writer."""

    sub: Subscription
    op: Op
    user_id: str | None  # the partition owner (STREAM row ids)
    new: pa.Table  # aligned versions (storage names); a STREAM delete: only _seq
    old: pa.Table | None  # UPDATE: the previous versions of those keys (aligned)
    seq_max: int
    # Shared by every subscription with the same SQL and user in one commit: the rendered
    # message (after its subscription_id) is encoded once for all of them.
    shared: dict[str, Any] | None = None


@dataclass(slots=True)
class Page:
    rows: pa.Table  # aligned storage names, ordered by _seq
    batch_num: int
    has_more: bool

    @property
    def last_seq(self) -> int | None:
        if not self.rows.num_rows:
            return None
        return int(self.rows.column(SEQ_COLUMN)[-1].as_py())

    @property
    def status(self) -> str:
        if not self.has_more:
            return "ready"
        return "loading" if self.batch_num == 0 else "loading_batch"

    def batch_control(self) -> dict[str, Any]:
        return {"batch_num": self.batch_num, "has_more": self.has_more,
                "status": self.status, "last_seq_id": self.last_seq}


@dataclass(frozen=True, slots=True)
class InitialRows:
    """An initial load's matching rows in ``_seq`` order, without copying them.

    ``batches`` are the snapshot's record batches (storage names; zero-copy views of the
    partition's chunks, so they cost memory only if the partition replaces those chunks
    meanwhile); ``chunk``/``local`` say where each matching row is, ``seqs`` is its ``_seq``
    — 16 bytes per matching row. A page is cut out on demand (``page``): a slice when its
    rows are contiguous in one batch (the usual case: rows are stored in commit order),
    else a take from the few batches it touches. Immutable, so pages can be cut in a
    worker thread.
    """

    batches: tuple[pa.RecordBatch, ...]
    chunk: pa.Array  # int32: index into ``batches`` of each matching row, by _seq ascending
    local: pa.Array  # int64: the row's index in that batch
    seqs: pa.Array  # int64: the row's _seq, ascending
    schema: pa.Schema
    high: int  # largest _seq in the snapshot (tombstones and non-matching rows included)

    def __len__(self) -> int:
        return len(self.seqs)

    def page(self, after_seq: int | None, batch_num: int, batch_size: int,
             last_rows: int | None) -> Page:
        """Batch ``batch_num``: the rows after ``after_seq`` (None: from the start), at
        most ``batch_size``; with ``last_rows`` the first batch is the newest rows only."""
        total = len(self.seqs)
        start = 0 if after_seq is None or not total else \
            int(pc.sum(pc.less_equal(self.seqs, after_seq)).as_py())
        if last_rows is not None and batch_num == 0:
            low, high, has_more = max(start, total - last_rows), total, False
        else:
            low, high = start, min(total, start + batch_size)
            has_more = high < total
        return Page(self._rows(low, high), batch_num, has_more)

    def _rows(self, low: int, high: int) -> pa.Table:
        count = high - low
        if count <= 0:
            return self.schema.empty_table()
        chunk, local = self.chunk.slice(low, count), self.local.slice(low, count)
        first, begin = chunk[0].as_py(), local[0].as_py()
        if local[-1].as_py() - begin == count - 1 and pc.all(pc.equal(chunk, first)).as_py() \
                and (count == 1 or pc.all(pc.greater(local.slice(1), local.slice(0, count - 1))
                                          ).as_py()):
            return pa.Table.from_batches([self.batches[first].slice(begin, count)])
        parts, where = [], []
        for index in pc.unique(chunk).to_pylist():
            positions = pc.indices_nonzero(pc.equal(chunk, index))
            parts.append(self.batches[index].take(pc.take(local, positions)))
            where.append(positions)
        gathered = pa.Table.from_batches(parts, self.schema).combine_chunks()
        return gathered.take(pc.sort_indices(pa.chunked_array(where)))


@dataclass(slots=True, eq=False)
class Subscription:
    live_id: str
    connection_id: str
    subscription_id: str
    session: Session
    sql: str
    query: LiveQuery
    options: dict[str, Any] | None
    outbox: Outbox
    buffer_max: int
    created_ms: int
    state: str = "loading"
    pending: list[Change] = field(default_factory=list)
    changes: int = 0  # changes delivered (system.live)
    last_update_ms: int = 0
    last_ping_ms: int | None = None  # the connection's last {"type":"ping"} (system.live)
    snapshot_seq: int = 0  # high-water mark of the initial snapshot
    batch_size: int = 1000
    last_rows: int | None = None
    initial: InitialRows | None = None  # the initial load's matching rows, while loading
    snapshot: RowSnapshot | None = None  # captured at registration, until ``load`` ran
    from_seq: int | None = None  # options.from: only rows after it
    batches_sent: int = 0
    registry: LiveRegistry | None = None

    @property
    def user_id(self) -> str:
        return self.session.user_id

    @property
    def options_json(self) -> str:
        return json.dumps(self.options or {}, separators=(",", ":"), sort_keys=True)

    def deliver(self, change: Change, now_ms: int) -> None:
        """The commit path: buffer (loading) or queue (live) ``change``; never waits."""
        if self.state == "loading":
            if len(self.pending) >= self.buffer_max:
                self.fail("SUBSCRIPTION_FAILED", f"Subscription '{self.subscription_id}' fell "
                          f"more than {self.buffer_max} changes behind during its initial "
                          "load and was dropped")
                return
            self.pending.append(change)
        elif self.state == "live":
            if not self.outbox.offer(change):
                self.fail("SUBSCRIPTION_FAILED", f"Subscription '{self.subscription_id}' fell "
                          f"more than {self.outbox.capacity} messages behind and was "
                          "dropped; resubscribe with options.from to resume")
                return
        else:
            return
        self.changes += 1
        self.last_update_ms = now_ms

    def loaded(self, initial: InitialRows) -> None:
        """The initial load's rows are ready (``LiveRegistry.initial_job``'s result);
        ignored unless still loading."""
        if self.state == "loading":
            self.initial, self.snapshot_seq = initial, initial.high

    def page(self, after_seq: int | None) -> Page:
        """The next initial page: rows after ``after_seq`` (None: from the start)."""
        assert self.initial is not None, "no initial load in progress"
        page = self.initial.page(after_seq, self.batches_sent, self.batch_size,
                                 self.last_rows)
        self.batches_sent += 1
        return page

    def go_live(self) -> None:
        """After the last initial page was queued: flush the buffer, then deliver live."""
        if self.state != "loading":
            return
        self.state = "live"
        self.initial = None
        pending, self.pending = self.pending, []
        for change in pending:
            if change.seq_max <= self.snapshot_seq:
                continue  # already in the snapshot
            if not self.outbox.offer(change):
                self.fail("SUBSCRIPTION_FAILED", f"Subscription '{self.subscription_id}' fell "
                          "too far behind after its initial load and was dropped")
                return

    def fail(self, code: str, message: str) -> None:
        """Drops the subscription and tells the client why (control message: always fits)."""
        if self.state == "closed":
            return
        self.outbox.put({"type": "error", "subscription_id": self.subscription_id,
                         "code": code, "message": message})
        self.close()

    def close(self) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self.pending.clear()
        self.initial = None
        self.snapshot = None
        if self.registry is not None:
            self.registry.forget(self)
