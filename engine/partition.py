"""One table partition's rows: the whole of a SHARED table, or one user's part of a USER or
STREAM table.

Storage model: row *versions* live in immutable Arrow chunks (hot chunks from recent
commits, cold chunks loaded from flushed segments). Columns are named by storage name
(``c<id>``, ``_seq``, ``_deleted``). A version superseded by a newer one (or removed from a
stream) is masked by its row index in the chunk's ``dead`` set — never rewritten.
For tables with a primary key, ``pk_loc`` maps each key to its latest version (including
tombstones, which are versions with ``_deleted = true``).

Changes are *tentative* first: ``begin()`` freezes the view readers get, the statement or
transaction applies its changes (recording undo steps), then either ``rollback()`` undoes
them, or ``seal()`` closes them once their WAL event is queued. Sealed changes are *staged*:
still invisible to readers, but seen by later writers (uniqueness, UPDATE/DELETE matching),
because the log orders them before anything queued later. Several transactions may be
staged at once (pipelined commits: the engine releases its write lock while the WAL makes
them durable, so they share an fsync). The engine then, strictly in log order:

- ``publish(staged, lsn)`` once the event is durable: the readers' view moves to the state
  right after that transaction (``_Staged.view_after``, captured when the next transaction
  began), or to the live state when nothing else is staged or open;
- ``fail_staged()`` when an append failed: the log is poisoned, so every staged transaction
  is doomed and all are undone, newest first. If a transaction is open at that moment (its
  undo steps sit on top of the staged ones), the undo waits for its ``rollback``/``seal``.

Readers therefore never see data that is not durable, they see commits in log order, and a
failed statement leaves nothing behind. Chunks that staged or open changes refer to (their
own new chunks, and older chunks whose rows they masked) are *pinned*: merging leaves them
alone, so every undo step stays valid.

Task safety: mutated only from the trio thread; ``begin``/``seal``/``rollback`` under the
engine's write lock, ``publish``/``fail_staged`` in log order by the engine's commit path.
``view()`` returns immutable Arrow tables that worker threads may use freely.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .catalog import DELETED_COLUMN, SEQ_COLUMN, TableDef
from .types import coerce_value

# A hot chunk smaller than this is "small"; more than MERGE_CHUNKS_MAX small chunks in a
# partition are merged into one, so scans and DataFusion never see thousands of tiny batches
# and begin()/view() stay O(a few dozen chunks).
MERGE_SMALL_CHUNK_ROWS = 4096
MERGE_CHUNKS_MAX = 32


@dataclass(slots=True)
class Chunk:
    """Row versions from one commit (hot) or one segment file (cold).

    A cold chunk does not hold its rows: ``load`` fetches them through the engine's
    segment cache, which keeps decoded segments within a memory budget; only the row count,
    the dead-row set and the primary-key index entries stay resident.
    """

    data: pa.Table | None
    cold: bool  # loaded from (or written to) a segment file
    first_lsn: int
    last_lsn: int
    segment: str | None = None  # the segment file holding a cold chunk
    load: Callable[[], pa.Table] | None = None
    num_rows: int = 0
    dead: set[int] = field(default_factory=set)
    generation: int = 0  # bumped on every change of ``dead``
    _cache: tuple[int, int, pa.Table] | None = None  # (schema version, generation, table)

    def __post_init__(self) -> None:
        if self.data is not None:
            self.num_rows = self.data.num_rows

    @property
    def table(self) -> pa.Table:
        if self.data is not None:
            return self.data
        assert self.load is not None
        return self.load()

    def kill(self, row: int) -> None:
        self.dead.add(row)
        self.generation += 1

    def revive(self, row: int) -> None:
        self.dead.discard(row)
        self.generation += 1

    def live(self, table_def: TableDef) -> pa.Table:
        """Live rows aligned to the table's current columns (cached per schema version for
        resident chunks; a lazy cold chunk is recomputed so the cache budget holds)."""
        key = (table_def.version, self.generation)
        if self._cache is not None and self._cache[:2] == key:
            return self._cache[2]
        table = self.table
        if self.dead:
            table = table.filter(keep_mask(table.num_rows, self.dead))
        aligned = align(table, table_def)
        if self.data is not None:
            self._cache = (*key, aligned)
        return aligned


def keep_mask(length: int, dead: set[int]) -> pa.BooleanArray:
    """A boolean array that is false exactly at the ``dead`` row indices (O(dead) Python)."""
    bitmap = bytearray(b"\xff") * ((length + 7) // 8)
    for row in dead:
        bitmap[row >> 3] &= ~(1 << (row & 7)) & 0xFF
    return pa.BooleanArray.from_buffers(pa.bool_(), length, [None, pa.py_buffer(bitmap)])


_SCHEMA_CACHE_MAX = 256  # distinct column layouts whose storage schema is kept built
_schema_cache: dict[tuple, pa.Schema] = {}


def storage_schema(table_def: TableDef) -> pa.Schema:
    """The storage schema of ``table_def``'s columns (built once per column layout: every
    write and every aligned read needs it)."""
    key = tuple((c.id, c.type) for c in table_def.columns)
    schema = _schema_cache.get(key)
    if schema is None:
        fields = [pa.field(c.storage_name, c.type.arrow_type(), nullable=True)
                  for c in table_def.columns]
        fields.append(pa.field(SEQ_COLUMN, pa.int64(), nullable=False))
        fields.append(pa.field(DELETED_COLUMN, pa.bool_(), nullable=False))
        schema = pa.schema(fields)
        if len(_schema_cache) >= _SCHEMA_CACHE_MAX:
            _schema_cache.clear()
        _schema_cache[key] = schema
    return schema


def align(table: pa.Table, table_def: TableDef) -> pa.Table:
    """``table`` (versions written under any earlier schema) in the current storage schema:
    added columns filled, dropped ones left out, changed types cast."""
    schema = storage_schema(table_def)
    if table.schema is schema or table.schema.equals(schema):
        return table  # written under the current columns (every new write): nothing to do
    present = set(table.column_names)
    arrays = []
    for column, target in zip(table_def.columns, schema, strict=False):
        if column.storage_name in present:
            array = table.column(column.storage_name)
            if array.type != target.type:
                array = pc.cast(array, target.type)
        else:
            fill = None if column.fill is None else coerce_value(column.fill, column.type,
                                                                 column.name)
            array = pa.array([fill] * table.num_rows, target.type)
        arrays.append(array)
    arrays.append(table.column(SEQ_COLUMN))
    arrays.append(table.column(DELETED_COLUMN) if DELETED_COLUMN in present
                  else pa.array([False] * table.num_rows, pa.bool_()))
    return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(slots=True, eq=False)
class _Staged:
    """One transaction's sealed changes to a partition, queued in the WAL, not yet durable."""

    undo: list[Callable[[], None]]
    chunks: list[Chunk]  # its new chunks, stamped with the LSN on publish
    pins: set[int]  # ids of older chunks its undo steps refer to
    keys: set[Any]  # primary keys whose index entry it changed
    view_after: list[pa.Table] | None = None  # readers' view once published (see begin)


class Partition:
    """Row versions of one partition; see the module docstring for the model."""

    def __init__(self, table_def: TableDef, user_id: str | None) -> None:
        self.table_def = table_def
        self.user_id = user_id
        self.chunks: dict[int, Chunk] = {}
        self.pk_loc: dict[Any, tuple[int, int, bool]] = {}  # key -> (chunk, row, deleted)
        self.checkpoint_lsn = 0  # versions up to this LSN are in segment files
        self.last_lsn = 0
        self._next_chunk_id = 0
        self._frozen: list[pa.Table] | None = None
        self._undo: list[Callable[[], None]] | None = None  # the open transaction's steps
        self._pending_chunks: list[Chunk] = []  # the open transaction's new chunks
        self._pins: set[int] = set()  # older chunks the open transaction's undo refers to
        self._keys: set[Any] = set()  # primary keys the open transaction re-pointed
        self._staged: deque[_Staged] = deque()  # sealed, not yet durable; oldest first
        self._doomed = False  # a failure arrived while a transaction was open
        self.manifest = None  # engine.segments.Manifest of the cold data, once flushed
        self.needs_rewrite = False  # STREAM: cold rows were deleted; next flush rewrites
        self.hot_since_ms = 0  # wall time the oldest unflushed change was committed
        # Segment file name -> decoded rows, through the engine's budgeted cache (None: cold
        # chunks stay resident, e.g. in tools that rebuild without a cache).
        self.segment_loader: Callable[[str], pa.Table] | None = None
        self.merge_chunks_max = MERGE_CHUNKS_MAX
        # (chunk ids handed out, small hot chunks found) at the last merge scan: only new
        # chunks add small ones, so until enough were created no scan can find too many.
        self._merge_seen = (0, 0)

    # ---- reading ---------------------------------------------------------------------

    def view(self, *, include_uncommitted: bool = False) -> list[pa.Table]:
        """The latest versions (tombstones included), as immutable tables: the durable state
        for readers, or — for writers, under the write lock — the state with every staged and
        open change."""
        if self._frozen is not None and not include_uncommitted:
            return self._frozen
        return self._live_view()

    def _live_view(self) -> list[pa.Table]:
        tables = [chunk.live(self.table_def) for chunk in self.chunks.values()]
        return [t for t in tables if t.num_rows]

    @property
    def in_transaction(self) -> bool:
        """True while changes that readers must not see exist (open or staged)."""
        return self._undo is not None or bool(self._staged)

    def max_seq(self) -> int:
        """The largest ``_seq`` of any version held (0 when empty)."""
        seqs = [pc.max(c.table.column(SEQ_COLUMN)).as_py() for c in self.chunks.values()
                if c.num_rows]
        return max(seqs, default=0)

    def hot_rows(self) -> int:
        return sum(c.num_rows - len(c.dead) for c in self.chunks.values() if not c.cold)

    def latest(self, key: Any) -> pa.Table | None:
        """The latest version (maybe a tombstone) of ``key`` as a one-row aligned table."""
        loc = self.pk_loc.get(key)
        if loc is None:
            return None
        chunk = self.chunks[loc[0]]
        return align(chunk.table.slice(loc[1], 1), self.table_def)

    def visible_latest(self, key: Any) -> list[pa.Table]:
        """What a reader sees of ``key``: its latest durable version (maybe a tombstone) as
        one-row tables, or an empty list. The index answers unless an open or staged change
        re-pointed the key; then the readers' view is searched."""
        if self.in_transaction and (key in self._keys
                                    or any(key in staged.keys for staged in self._staged)):
            pk = self.table_def.pk
            assert pk is not None
            found = [t.filter(pc.equal(t.column(pk.storage_name), key)) for t in self.view()]
            return [t for t in found if t.num_rows]
        latest = self.latest(key)
        return [] if latest is None else [latest]

    def is_live_key(self, key: Any) -> bool:
        loc = self.pk_loc.get(key)
        return loc is not None and not loc[2]

    # ---- tentative changes -----------------------------------------------------------

    def begin(self) -> None:
        """Opens a transaction: later changes are undoable until ``rollback``/``seal``. The
        readers' view stays what it is (the durable state); with staged changes pending, the
        state after the newest of them is captured as the view to publish with it."""
        if self._undo is not None:
            return
        if self._staged:
            last = self._staged[-1]
            if last.view_after is None:
                last.view_after = self._live_view()
        else:
            self._frozen = self._live_view()
        self._undo, self._pending_chunks, self._pins, self._keys = [], [], set(), set()

    def seal(self) -> _Staged:
        """Closes the open transaction once its WAL event is queued: its changes become
        staged, to be published by ``publish`` (or undone by ``fail_staged``)."""
        assert self._undo is not None, "seal() without begin()"
        staged = _Staged(self._undo, self._pending_chunks, self._pins, self._keys)
        self._undo, self._pending_chunks, self._pins, self._keys = None, [], set(), set()
        self._staged.append(staged)
        if self._doomed:  # an append before it failed: it cannot become durable either
            self._undo_staged()
        return staged

    def publish(self, staged: _Staged, lsn: int) -> None:
        """Makes the oldest staged transaction visible, stamping its chunks with ``lsn``.
        Called in log order, once its event is durable."""
        assert self._staged and self._staged[0] is staged, "publish out of log order"
        self._staged.popleft()
        for chunk in staged.chunks:
            chunk.first_lsn = chunk.last_lsn = lsn
        if staged.chunks:
            self.last_lsn = max(self.last_lsn, lsn)
        if staged.view_after is not None:  # a later transaction is staged or open
            self._frozen = staged.view_after
        else:
            assert not self._staged and self._undo is None
            self._frozen = None
        self._merge_small_hot_chunks()

    def rollback(self) -> None:
        """Undoes the open transaction (and, after a failure, every staged one)."""
        undo, self._undo = self._undo or [], None
        self._pending_chunks, self._pins, self._keys = [], set(), set()
        for step in reversed(undo):
            step()
        if self._doomed:
            self._undo_staged()
        elif self._staged:
            self._staged[-1].view_after = None  # the state after it is the live one again
        else:
            self._frozen = None

    def fail_staged(self) -> None:
        """A WAL append failed: undoes every staged transaction (none can become durable
        once the log is poisoned), newest first — after the open one, if any, is undone."""
        if self._undo is not None:
            self._doomed = True
            return
        self._undo_staged()

    def _undo_staged(self) -> None:
        assert self._undo is None
        while self._staged:
            staged = self._staged.pop()
            for step in reversed(staged.undo):
                step()
        self._frozen, self._doomed = None, False

    def _record(self, step: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(step)

    def append_versions(self, versions: pa.Table, lsn: int | None, *, cold: bool = False,
                        segment: str | None = None) -> None:
        """Adds row versions; each supersedes the previous version of its key.

        ``lsn=None`` inside ``begin()``: tentative, stamped by ``publish``. Replay passes
        the event's LSN and no ``begin()``: permanent at once.
        """
        if versions.num_rows == 0:
            return
        assert (lsn is None) == (self._undo is not None), "tentative iff inside begin()"
        chunk_id = self._next_chunk_id
        self._next_chunk_id += 1
        chunk = Chunk(versions, cold, lsn or 0, lsn or 0, segment)
        self.chunks[chunk_id] = chunk
        if lsn is None:
            self._pending_chunks.append(chunk)
            self._pins.add(chunk_id)
            self._record(lambda: self.chunks.pop(chunk_id))
        else:
            self.last_lsn = max(self.last_lsn, lsn)
        pk = self.table_def.pk
        if pk is not None:
            keys = versions.column(pk.storage_name).to_pylist()
            flags = versions.column(DELETED_COLUMN)  # (true_count: no compute-kernel call)
            any_set = flags.null_count or any(c.true_count for c in flags.chunks)
            deleted = flags.to_pylist() if any_set else [False] * len(keys)
            if lsn is None:
                self._index_tentatively(chunk_id, keys, deleted)
            else:
                self._index_permanently(chunk_id, keys, deleted)
        if lsn is not None:
            self._merge_small_hot_chunks()

    def _index_tentatively(self, chunk_id: int, keys: list[Any], deleted: list[bool]) -> None:
        """Points each key at its new version, recording undo steps: one for all keys that
        were absent (the common INSERT case), one per superseded version (pinning its
        chunk). The bulk step is recorded first, so it runs last: a key repeated within the
        batch is restored to its earlier row, then removed."""
        pk_loc, chunks = self.pk_loc, self.chunks
        self._keys.update(keys)
        unique = set(keys)
        if len(unique) == len(keys) and pk_loc.keys().isdisjoint(unique):
            # The common INSERT: every key is new and distinct: one bulk step, no Python
            # step per key beyond building the index entries.
            pk_loc.update(zip(keys, zip([chunk_id] * len(keys), range(len(keys)), deleted,
                                        strict=True), strict=True))
            self._record(lambda: [pk_loc.pop(key) for key in keys])
            return
        added: list[Any] = []
        self._record(lambda: [pk_loc.pop(key) for key in added])
        for row, key in enumerate(keys):
            old = pk_loc.get(key)
            pk_loc[key] = (chunk_id, row, deleted[row])
            if old is None:
                added.append(key)
                continue
            chunks[old[0]].kill(old[1])
            self._pins.add(old[0])
            self._record(functools.partial(self._restore, key, old))

    def _restore(self, key: Any, old: tuple[int, int, bool]) -> None:
        self.pk_loc[key] = old
        self.chunks[old[0]].revive(old[1])

    def _index_permanently(self, chunk_id: int, keys: list[Any], deleted: list[bool]) -> None:
        """Replay's form of ``_index_tentatively``: nothing to undo, so no closures."""
        pk_loc, chunks = self.pk_loc, self.chunks
        for row, key in enumerate(keys):
            old = pk_loc.get(key)
            if old is not None:
                chunks[old[0]].kill(old[1])
            pk_loc[key] = (chunk_id, row, deleted[row])

    def _merge_small_hot_chunks(self) -> None:
        """Keeps the chunk count bounded: once more than ``merge_chunks_max`` small hot
        chunks exist, their live rows become one chunk. Each row is merged at most once
        (a merged chunk is no longer small), so the cost is amortised O(1) per row."""
        if self._undo is not None or len(self.chunks) <= self.merge_chunks_max:
            return  # (small chunks are a subset of all chunks: too few to merge)
        seen_id, seen_small = self._merge_seen
        if seen_small + self._next_chunk_id - seen_id <= self.merge_chunks_max:
            return  # too few chunks were created since the last scan: no O(chunks) scan
        small_all = [cid for cid, c in self.chunks.items()
                     if not c.cold and c.num_rows < MERGE_SMALL_CHUNK_ROWS]
        self._merge_seen = (self._next_chunk_id, len(small_all))
        pinned = self._pins.union(*(staged.pins for staged in self._staged))
        small = [cid for cid in small_all if cid not in pinned]
        if len(small) <= self.merge_chunks_max:
            return
        self._merge_seen = (self._next_chunk_id, len(small_all) - len(small))
        parts = [self.chunks[cid] for cid in small]
        merged = pa.concat_tables([c.live(self.table_def) for c in parts]).combine_chunks()
        first = min(c.first_lsn for c in parts)
        last = max(c.last_lsn for c in parts)
        for cid in small:
            del self.chunks[cid]
        chunk_id = self._next_chunk_id
        self._next_chunk_id += 1
        self.chunks[chunk_id] = Chunk(merged, False, first, last)
        pk = self.table_def.pk
        if pk is not None:  # a merged chunk holds each key once (only live versions)
            keys = merged.column(pk.storage_name).to_pylist()
            deleted = merged.column(DELETED_COLUMN).to_pylist()
            self.pk_loc.update(zip(keys, zip([chunk_id] * len(keys), range(len(keys)),
                                             deleted, strict=True), strict=True))

    def remove_by_seq(self, seqs: Iterable[int]) -> int:
        """Masks the versions whose ``_seq`` is listed (STREAM delete and expiry)."""
        wanted = pa.array(sorted(set(seqs)), pa.int64())
        removed = 0
        for cid, chunk in self.chunks.items():
            found = pc.is_in(chunk.table.column(SEQ_COLUMN), value_set=wanted)
            hits = [row for row in pc.indices_nonzero(found).to_pylist() if row not in chunk.dead]
            if hits and self._undo is not None:
                self._pins.add(cid)
            for row in hits:
                chunk.kill(row)
                self._record(lambda c=chunk, r=row: c.revive(r))
            if hits and chunk.cold:
                self.needs_rewrite = True
            removed += len(hits)
        return removed

    def replace_chunks(self, chunk_ids: list[int], written: list[tuple[pa.Table, str]],
                       lsn: int) -> None:
        """Replaces chunks by cold chunks holding exactly what a flush, compaction or stream
        rewrite wrote to the named segment files. Not undoable: call with nothing open or
        staged (the engine's ``settle``)."""
        assert self._undo is None
        assert not self._staged
        for cid in chunk_ids:
            del self.chunks[cid]
        if not any(not c.cold for c in self.chunks.values()):
            self.hot_since_ms = 0
        pk = self.table_def.pk
        for table, segment in written:
            if table.num_rows == 0:
                continue
            chunk_id = self._next_chunk_id
            self._next_chunk_id += 1
            self.chunks[chunk_id] = self._cold_chunk(table, lsn, segment)
            if pk is None:
                continue
            keys = table.column(pk.storage_name).to_pylist()
            deleted = table.column(DELETED_COLUMN).to_pylist()
            for row, (key, is_deleted) in enumerate(zip(keys, deleted, strict=True)):
                self.pk_loc[key] = (chunk_id, row, is_deleted)

    def _cold_chunk(self, table: pa.Table, lsn: int, segment: str) -> Chunk:
        if self.segment_loader is None:
            return Chunk(table, True, lsn, lsn, segment)
        loader = self.segment_loader
        return Chunk(None, True, lsn, lsn, segment, load=lambda: loader(segment),
                     num_rows=table.num_rows)

    def make_lazy(self, segment: str) -> None:
        """Lets the segment cache own the rows of the cold chunk loaded from ``segment``."""
        if self.segment_loader is None:
            return
        loader = self.segment_loader
        for chunk in self.chunks.values():
            if chunk.segment == segment and chunk.data is not None:
                chunk.load, chunk.data, chunk._cache = (lambda: loader(segment)), None, None

    def retype(self, table_def: TableDef) -> None:
        """Adopts a new schema version (ALTER TABLE); chunks re-align lazily."""
        previous = self.table_def
        self.table_def = table_def
        self._record(lambda: setattr(self, "table_def", previous))
