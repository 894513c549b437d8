"""The topic runtime the engine owns: publishing hook, consume (claims, long-poll), ack.

``TopicService`` is created by the engine (``engine.topics``). SQL handlers and the HTTP
routes call ``consume`` and ``ack``; the commit path calls ``on_commit``. Task safety: trio
thread only (blocking reads and big renders run in worker threads).

Claims (PROTOCOL §4.2 step 4), per (topic, group, partition), in memory only:
- the first consume creates the state with ``cursor`` = committed + 1, else the ``start``
  position; afterwards the cursor wins over ``start``;
- claims pending longer than the visibility timeout are dropped and the cursor rewinds to
  the earliest of them (redelivery); the cursor never goes below committed + 1;
- messages from the cursor are returned skipping ranges still claimed, up to ``limit``;
  each returned run becomes a claim and the cursor moves past the last one.
So two consumers of one group never get the same message while claims live, and a message
is delivered twice in a group only after its claim expired without an ack.

Long-poll: with nothing to deliver, ``consume`` waits on the partition's ``changed`` event
(set by the commit path) or until the next claim expiry, at most ``timeout_seconds``.
Cancellation (client gone) simply ends the wait; claims already made stay until acked or
expired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from ..catalog import TableDef
from ..errors import EngineError, InvalidInput, NotFound, StorageUnavailable
from ..events import CatalogEvent, Kind, RowsCommitted
from ..permissions import require_service
from ..session import Session
from . import retention
from .index import PartitionIndex, Run, TopicIndex
from .reader import RecordCache, read_missing
from .render import ENCODINGS, RENDER_CHUNK_ROWS, Rendered, render_rows
from .state import TopicDef

if TYPE_CHECKING:
    from ..engine import Engine

# Consumer group ids are stored in every ack event and in system.topic_offsets.
GROUP_ID_MAX_CHARS = 256
# Renders of more messages than this run in a worker thread (JSON encoding is CPU work).
RENDER_INLINE_MAX_MESSAGES = 256


class Message(NamedTuple):  # a tuple: consume builds thousands per call
    topic_id: str
    partition_id: int
    offset: int
    key: str | None
    payload: bytes | str  # bytes; base64 text when consumed with payload_encoding="base64"
    timestamp_ms: int
    user_id: str | None  # the writer, None when unknown or no longer a user
    op: str  # insert | update | delete


@dataclass(frozen=True, slots=True)
class MessageRun:
    """Messages with consecutive offsets from one change: what they share is stored once.
    ``keys`` and ``payloads`` may be shared with the record cache: never mutate them."""

    offsets: range
    keys: Sequence[str | None]
    payloads: Sequence[bytes] | Sequence[str]
    timestamp_ms: int
    user_id: str | None  # the writer, None when unknown or no longer a user
    op: str  # insert | update | delete


@dataclass(frozen=True, slots=True)
class ConsumeResult:
    """A consume's messages, as runs (columnar, cheap to build and to serialise);
    ``messages`` gives them one tuple each."""

    topic_id: str
    partition_id: int
    runs: list[MessageRun]
    next_offset: int
    has_more: bool

    @property
    def count(self) -> int:
        return sum(len(run.offsets) for run in self.runs)

    @property
    def messages(self) -> list[Message]:
        return [Message(self.topic_id, self.partition_id, offset, key, payload,
                        run.timestamp_ms, run.user_id, run.op)
                for run in self.runs
                for offset, key, payload in zip(run.offsets, run.keys, run.payloads,
                                                strict=True)]


@dataclass(slots=True)
class _Claim:
    start: int
    end: int  # exclusive
    deadline: float  # trio time


@dataclass(slots=True)
class _GroupState:
    cursor: int
    claims: list[_Claim] = field(default_factory=list)


Start = str | int  # "latest" | "earliest" | offset


class TopicService:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.index = TopicIndex()
        self.cache = RecordCache(engine.config.topic_record_cache_max_bytes)
        self._groups: dict[tuple[str, str, int], _GroupState] = {}
        self._acks: list[_PendingAck] = []  # waiting for the write lock (see ``ack``)
        self.next_persist_at = 0.0  # trio time of the next periodic index write

    # ---- publishing -----------------------------------------------------------------------

    def on_commit(self, event: RowsCommitted, lsn: int) -> None:
        """The commit path's listener (log order, on the trio thread, as the commit becomes
        visible; not necessarily under the write lock): index the commit's messages and keep
        the fresh record for consumers."""
        if self.index.publish(event, lsn, self.engine.catalog):
            self.cache.put(lsn, event)

    def replayed(self, event: RowsCommitted, lsn: int) -> None:
        """Replay's hook (worker thread, before the engine serves)."""
        self.index.publish(event, lsn, self.engine.catalog, notify=False)

    def load_indexes(self) -> int:
        """Worker thread, at start before replay: the persisted partition indexes."""
        return retention.load_indexes(self)

    async def persist_indexes(self, *, force: bool = False) -> int:
        """Writes partition index files that are behind (see ``retention``)."""
        return await retention.persist_indexes(self, force=force)

    async def retain(self, bound: int) -> int:
        """Under the write lock: the WAL release ``bound`` lowered to what topics need
        (messages inside retention); trims the messages at or below it."""
        return await retention.retain(self, bound)

    def forget(self, topic_id: str) -> None:
        """DROP TOPIC: claims and the index go with it."""
        for key in [k for k in self._groups if k[0] == topic_id]:
            del self._groups[key]
        self.index.prune(self.engine.catalog)

    # ---- lookups ----------------------------------------------------------------------------

    def topic(self, topic_id: str) -> TopicDef:
        topic = self.engine.catalog.topics.topic(topic_id)
        if topic is None:
            raise NotFound(f"Topic '{topic_id}' does not exist")
        return topic

    def partition(self, topic: TopicDef, partition: int) -> PartitionIndex:
        if not 0 <= partition < topic.partitions:
            raise InvalidInput(f"Topic '{topic.topic_id}' has {topic.partitions} partition(s); "
                               f"partition_id {partition} does not exist")
        return self.index.partitions(topic)[partition]

    # ---- consume ----------------------------------------------------------------------------

    async def consume(self, session: Session, topic_id: str, group: str | None,
                      partition: int = 0, start: Start = "latest", limit: int = 100,
                      timeout_seconds: float = 0.0, payload_encoding: str = "bytes"
                      ) -> ConsumeResult:
        """Messages of one partition (PROTOCOL §4.2). With a group: claim-based (see the
        module docstring); without: a stateless read from ``start``. Never acks.
        ``payload_encoding="base64"`` hands out each payload as its standard base64 text
        (what the HTTP reply carries), rendered once and cached with the record.

        Raises PermissionDenied (role), NotFound (topic), InvalidInput (partition, limit,
        group), StorageUnavailable / WalCorruptionError when the log cannot be read.
        """
        require_service(session, "topic consumption")
        self._check_request(group, limit)
        if payload_encoding not in ENCODINGS:
            raise InvalidInput(f"payload_encoding must be one of {ENCODINGS}")
        config = self.engine.config
        deadline = trio.current_time() + min(max(timeout_seconds, 0.0),
                                             config.topic_long_poll_max_seconds)
        while True:
            topic = self.topic(topic_id)
            part = self.partition(topic, partition)
            if group is None:
                offsets, first = _stateless(part, start, limit)
            else:
                offsets, first = self._claim(topic, part, group, partition, start, limit)
            now = trio.current_time()
            if offsets or limit == 0 or now >= deadline:
                break
            wake_at = min(deadline, self._next_expiry(topic.topic_id, group, partition))
            with trio.move_on_at(wake_at):
                await part.changed.wait()
        runs = await self._render(topic, part, offsets, payload_encoding)
        next_offset = offsets[-1] + 1 if offsets else first
        return ConsumeResult(topic.topic_id, partition, runs, next_offset,
                             len(offsets) == limit)

    def _check_request(self, group: str | None, limit: int) -> None:
        if group is not None and not 0 < len(group) <= GROUP_ID_MAX_CHARS:
            raise InvalidInput(f"group_id must be 1..{GROUP_ID_MAX_CHARS} characters")
        if not 0 <= limit <= self.engine.config.topic_consume_limit_max:
            raise InvalidInput(f"limit must be within 0..{self.engine.config.topic_consume_limit_max}"
                               f" (topic_consume_limit_max), not {limit}")

    def _claim(self, topic: TopicDef, part: PartitionIndex, group: str, partition: int,
               start: Start, limit: int) -> tuple[list[int], int]:
        key = (topic.topic_id, group, partition)
        committed = self.engine.catalog.topics.committed(*key)
        state = self._groups.get(key)
        if state is None:
            cursor = committed + 1 if committed is not None else _position(part, start)
            state = self._groups[key] = _GroupState(cursor)
        now = trio.current_time()
        expired = [c for c in state.claims if c.deadline <= now]
        if expired:
            state.claims = [c for c in state.claims if c.deadline > now]
            state.cursor = min(state.cursor, min(c.start for c in expired))
        floor = part.base_offset if committed is None else max(part.base_offset, committed + 1)
        state.cursor = max(state.cursor, floor)
        first, offsets = state.cursor, []
        position, high = state.cursor, part.high_water
        live = sorted(state.claims, key=lambda c: c.start)
        deadline = now + self.engine.config.topic_visibility_timeout_seconds
        while len(offsets) < limit and position < high:
            blocking = next((c for c in live if c.start <= position < c.end), None)
            if blocking is not None:
                position = blocking.end
                continue
            upcoming = next((c.start for c in live if c.start > position), high)
            end = min(high, upcoming, position + limit - len(offsets))
            offsets.extend(range(position, end))
            state.claims.append(_Claim(position, end, deadline))
            position = end
        if offsets:
            state.cursor = offsets[-1] + 1
        return offsets, first

    def _next_expiry(self, topic_id: str, group: str | None, partition: int) -> float:
        state = self._groups.get((topic_id, group or "", partition))
        if state is None or not state.claims:
            return float("inf")
        return min(c.deadline for c in state.claims)

    async def _render(self, topic: TopicDef, part: PartitionIndex, offsets: list[int],
                      encoding: str) -> list[MessageRun]:
        if not offsets:
            return []
        runs = part.runs(offsets)
        records = await self._records(sorted({run.lsn for run in runs}))
        catalog = self.engine.catalog
        modes = {(r.namespace, r.table, r.op): r.payload for r in topic.routes}
        plan = _RenderPlan(runs, records, modes, encoding, catalog)
        for piece in plan.pieces():
            rendered = self.cache.rendered(*piece)
            if rendered is not None:
                plan.found[piece] = rendered
        missing = list(dict.fromkeys(p for p in plan.pieces() if p not in plan.found))
        if missing:
            rows = sum(len(key[2]) for _, key in missing)
            if rows > RENDER_INLINE_MAX_MESSAGES:
                made = await trio.to_thread.run_sync(plan.render, missing)
            else:
                made = plan.render(missing)
            for (lsn, key), rendered in made.items():
                if isinstance(key[2], range):  # chunks are shared; filtered rows are not
                    self.cache.keep_rendered(lsn, key, rendered)
        # `user` is echoed only while that user exists (PROTOCOL §4.2).
        users = {u for u in (plan.user(run) for run in runs) if u is not None}
        gone = {u for u in users if catalog.live_user(u) is None}
        return plan.assemble(gone)

    async def _records(self, lsns: list[int]) -> dict[int, RowsCommitted]:
        found = {lsn: self.cache.get(lsn) for lsn in lsns}
        missing = [lsn for lsn, record in found.items() if record is None]
        if missing:
            self.cache.misses += len(missing)
            known = {lsn: p for lsn in missing if (p := self.cache.position(lsn)) is not None}
            engine = self.engine
            got, learnt = await trio.to_thread.run_sync(
                read_missing, engine.wal_dir, missing, known, int(engine.wal.committed_lsn),
                engine.config.wal.record_size_max_bytes)
            self.cache.learn(learnt)
            for lsn, record in got.items():
                self.cache.put(lsn, record)
                found[lsn] = record
        return found  # type: ignore[return-value]

    # ---- ack ----------------------------------------------------------------------------------

    async def ack(self, session: Session, topic_id: str, group: str, partition: int,
                  upto_offset: int) -> int:
        """Commits ``upto_offset`` (inclusive) for the group (PROTOCOL §4.3): durable (a WAL
        event) and monotonic — a lower or equal offset changes nothing and still succeeds.
        Returns ``upto_offset``.

        Acks share group commits: an ack queues itself, then whoever holds the engine's
        write lock writes every queued ack in one WAL batch (one fsync), so N consumers
        acking at once cost about two fsyncs, not N. Raises PermissionDenied, NotFound,
        InvalidInput, StorageUnavailable (the WAL failed: nothing acknowledged).
        Cancellation: before another task takes the ack into its batch it is withdrawn;
        after, it stands."""
        require_service(session, "topic acknowledgment")
        self._check_request(group, 0)
        if upto_offset < 0:
            raise InvalidInput(f"upto_offset must be >= 0, not {upto_offset}")
        topic = self.topic(topic_id)
        self.partition(topic, partition)
        pending = _PendingAck((topic.topic_id, group, partition), upto_offset)
        self._acks.append(pending)
        try:
            async with self.engine.write_lock:
                if not pending.done:
                    await self._write_acks()
        except BaseException:
            if pending in self._acks:  # not taken into a batch yet: withdraw it
                self._acks.remove(pending)
            raise
        if pending.error is not None:
            raise pending.error
        state = self._groups.get(pending.key)
        if state is not None:
            state.claims = [c for c in state.claims if c.end - 1 > upto_offset]
            state.cursor = max(state.cursor, upto_offset + 1)
        return upto_offset

    async def _write_acks(self) -> None:
        """Under the write lock: every queued ack as one WAL batch, the highest offset per
        (topic, group, partition) above the committed one. A topic dropped (or shrunk)
        while an ack waited fails that ack with its NotFound / InvalidInput."""
        batch, self._acks = self._acks, []
        engine, latest = self.engine, {}
        for pending in batch:
            try:
                self.partition(self.topic(pending.key[0]), pending.key[2])
            except EngineError as exc:
                pending.error = exc
                continue
            committed = engine.catalog.topics.committed(*pending.key)
            floor = -1 if committed is None else committed
            if pending.offset > max(floor, latest.get(pending.key, -1)):
                latest[pending.key] = pending.offset
        events = [CatalogEvent(Kind.TOPIC_OFFSET_ACKED, {
            "topic_id": topic_id, "group_id": group, "partition_id": partition,
            "offset": offset, "updated_at_ms": engine.clock.now_ms()})
            for (topic_id, group, partition), offset in latest.items()]
        try:
            if events:
                await engine.commit_catalog_events(events)
        except StorageUnavailable as exc:
            for pending in batch:  # each waiter raises an error of its own
                if pending.error is None:
                    pending.error = StorageUnavailable(
                        f"The acknowledgment was not made durable: {exc}")
                    pending.error.__cause__ = exc
        finally:
            for pending in batch:
                pending.done = True


@dataclass(slots=True)
class _PendingAck:
    key: tuple[str, str, int]  # topic, group, partition
    offset: int
    done: bool = False
    error: EngineError | None = None


def _position(part: PartitionIndex, start: Start) -> int:
    if start == "earliest":
        return part.base_offset
    if start == "latest":
        return part.high_water
    assert isinstance(start, int)
    return max(start, part.base_offset)


def _stateless(part: PartitionIndex, start: Start, limit: int) -> tuple[list[int], int]:
    first = _position(part, start)
    return list(range(first, min(first + limit, part.high_water))), first


class _RenderPlan:
    """Which rendered pieces a consume needs, rendering the missing ones (pure: any thread)
    and assembling the runs. A piece is a chunk of ``RENDER_CHUNK_ROWS`` rows of one change
    (shared through the record cache) when the run's rows are consecutive, else exactly the
    run's rows (a filtered route: not kept). Piece key: (change index, mode, rows as a
    range or tuple, table id, table version, table name, encoding)."""

    def __init__(self, runs: list[Run], records: dict[int, RowsCommitted],
                 modes: dict[tuple[str, str, str], str], encoding: str, catalog: Any) -> None:
        self.runs, self.records, self.encoding = runs, records, encoding
        self.found: dict[tuple[int, tuple], Rendered] = {}
        self.tables: dict[int, TableDef | None] = {}
        self.modes: list[str] = []
        for run in runs:
            change = records[run.lsn].changes[run.change]
            if change.table_id not in self.tables:
                self.tables[change.table_id] = catalog.tables.get(change.table_id)
            table = self.tables[change.table_id]
            self.modes.append("full" if table is None else modes.get(
                (table.namespace, table.name, str(change.op)), "full"))

    def _keys(self, i: int) -> list[tuple]:
        run = self.runs[i]
        change = self.records[run.lsn].changes[run.change]
        table = self.tables[change.table_id]
        ident = ((change.table_id, table.version, table.qualified_name) if table is not None
                 else (change.table_id, 0, f"#{change.table_id}"))
        rows, size = run.rows, change.batch.num_rows
        if rows[-1] - rows[0] != len(rows) - 1:  # not consecutive: exactly these rows
            return [(run.change, self.modes[i], tuple(rows), *ident, self.encoding)]
        first, last = rows[0] // RENDER_CHUNK_ROWS, rows[-1] // RENDER_CHUNK_ROWS
        return [(run.change, self.modes[i],
                 range(k * RENDER_CHUNK_ROWS, min(size, (k + 1) * RENDER_CHUNK_ROWS)),
                 *ident, self.encoding) for k in range(first, last + 1)]

    def pieces(self) -> list[tuple[int, tuple]]:
        return [(run.lsn, key) for i, run in enumerate(self.runs) for key in self._keys(i)]

    def render(self, missing: list[tuple[int, tuple]]) -> dict[tuple[int, tuple], Rendered]:
        made = {}
        for lsn, key in missing:
            change_index, mode, rows, table_id, _, name, encoding = key
            change = self.records[lsn].changes[change_index]
            made[(lsn, key)] = self.found[(lsn, key)] = render_rows(
                change, list(rows), self.tables[table_id], name, mode, encoding)
        return made

    def user(self, run: Run) -> str | None:
        record = self.records[run.lsn]
        return record.changes[run.change].user_id or record.actor

    def assemble(self, gone: set[str]) -> list[MessageRun]:
        out = []
        for i, run in enumerate(self.runs):
            keys: list = []
            payloads: list = []
            for key in self._keys(i):
                rendered = self.found[(run.lsn, key)]
                rows = key[2]
                if isinstance(rows, tuple):
                    keys, payloads = rendered.keys, rendered.payloads
                    continue
                lo = max(run.rows[0], rows.start) - rows.start
                hi = min(run.rows[-1] + 1, rows.stop) - rows.start
                keys += rendered.keys[lo:hi]
                payloads += rendered.payloads[lo:hi]
            user = self.user(run)
            op = str(self.records[run.lsn].changes[run.change].op)
            out.append(MessageRun(run.offsets, keys, payloads, run.ts_ms,
                                  None if user in gone else user, op))
        return out
