"""One table partition's rows: the whole of a SHARED table, or one user's part of a USER or
STREAM table.

Storage model: row *versions* live in immutable Arrow chunks (hot chunks from recent
commits, cold chunks loaded from flushed segments). Columns are named by storage name
(``c<id>``, ``_seq``, ``_deleted``). A version superseded by a newer one (or removed from a
stream) is masked by its row index in the chunk's ``dead`` set — never rewritten.
For tables with a primary key, ``pk_loc`` maps each key to its latest version (including
tombstones, which are versions with ``_deleted = true``).

Changes are *tentative* first: ``begin()`` freezes the view readers get, the statement or
transaction applies its changes (recording undo steps), then ``commit()`` publishes them
once the WAL made the event durable, or ``rollback()`` undoes them. Readers therefore never
see uncommitted data, and a failed statement leaves nothing behind.

Task safety: mutated only from the trio thread, under the engine's write lock. ``view()``
returns immutable Arrow tables that worker threads may use freely.
"""

from __future__ import annotations

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


def storage_schema(table_def: TableDef) -> pa.Schema:
    fields = [pa.field(c.storage_name, c.type.arrow_type(), nullable=True)
              for c in table_def.columns]
    fields.append(pa.field(SEQ_COLUMN, pa.int64(), nullable=False))
    fields.append(pa.field(DELETED_COLUMN, pa.bool_(), nullable=False))
    return pa.schema(fields)


def align(table: pa.Table, table_def: TableDef) -> pa.Table:
    """``table`` (versions written under any earlier schema) in the current storage schema:
    added columns filled, dropped ones left out, changed types cast."""
    schema = storage_schema(table_def)
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
        self._undo: list[Callable[[], None]] | None = None
        self._pending_chunks: list[Chunk] = []
        self.manifest = None  # engine.segments.Manifest of the cold data, once flushed
        self.needs_rewrite = False  # STREAM: cold rows were deleted; next flush rewrites
        self.hot_since_ms = 0  # wall time the oldest unflushed change was committed
        # Segment file name -> decoded rows, through the engine's budgeted cache (None: cold
        # chunks stay resident, e.g. in tools that rebuild without a cache).
        self.segment_loader: Callable[[str], pa.Table] | None = None
        self.merge_chunks_max = MERGE_CHUNKS_MAX

    # ---- reading ---------------------------------------------------------------------

    def view(self, *, include_uncommitted: bool = False) -> list[pa.Table]:
        """The latest versions (tombstones included), as immutable tables: the committed
        state for readers, or — for the writer inside its own transaction — the state with
        its tentative changes."""
        if self._frozen is not None and not include_uncommitted:
            return self._frozen
        tables = [chunk.live(self.table_def) for chunk in self.chunks.values()]
        return [t for t in tables if t.num_rows]

    @property
    def in_transaction(self) -> bool:
        """True while tentative changes are pending (between begin and commit/rollback)."""
        return self._undo is not None

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

    def is_live_key(self, key: Any) -> bool:
        loc = self.pk_loc.get(key)
        return loc is not None and not loc[2]

    # ---- tentative changes -----------------------------------------------------------

    def begin(self) -> None:
        """Freezes the readers' view; later changes are undoable until commit/rollback."""
        if self._undo is None:
            self._frozen = self.view()
            self._undo = []

    def commit(self, lsn: int) -> None:
        """Publishes the tentative changes, stamping new chunks with their WAL ``lsn``."""
        for chunk in self._pending_chunks:
            chunk.first_lsn = chunk.last_lsn = lsn
        if self._pending_chunks:
            self.last_lsn = max(self.last_lsn, lsn)
        self._frozen, self._undo, self._pending_chunks = None, None, []
        self._merge_small_hot_chunks()

    def rollback(self) -> None:
        undo, self._undo, self._frozen = self._undo or [], None, None
        self._pending_chunks = []
        for step in reversed(undo):
            step()

    def _record(self, step: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(step)

    def append_versions(self, versions: pa.Table, lsn: int | None, *, cold: bool = False,
                        segment: str | None = None) -> None:
        """Adds row versions; each supersedes the previous version of its key.

        ``lsn=None`` inside ``begin()``: tentative, stamped by ``commit(lsn)``. Replay passes
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
            self._record(lambda: self.chunks.pop(chunk_id))
        else:
            self.last_lsn = max(self.last_lsn, lsn)
        pk = self.table_def.pk
        if pk is not None:
            keys = versions.column(pk.storage_name).to_pylist()
            deleted = versions.column(DELETED_COLUMN).to_pylist()
            if lsn is None:
                for row, (key, is_deleted) in enumerate(zip(keys, deleted, strict=True)):
                    self._supersede(key, (chunk_id, row, is_deleted))
            else:
                self._index_permanently(chunk_id, keys, deleted)
        if lsn is not None:
            self._merge_small_hot_chunks()

    def _index_permanently(self, chunk_id: int, keys: list[Any], deleted: list[bool]) -> None:
        """Replay's bulk form of ``_supersede``: nothing to undo, so no closures."""
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
        small = [cid for cid, c in self.chunks.items()
                 if not c.cold and c.num_rows < MERGE_SMALL_CHUNK_ROWS]
        if len(small) <= self.merge_chunks_max or self._undo is not None:
            return
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
        if pk is not None:
            keys = merged.column(pk.storage_name).to_pylist()
            deleted = merged.column(DELETED_COLUMN).to_pylist()
            for row, key in enumerate(keys):
                self.pk_loc[key] = (chunk_id, row, deleted[row])

    def _supersede(self, key: Any, loc: tuple[int, int, bool]) -> None:
        old = self.pk_loc.get(key)
        self.pk_loc[key] = loc
        if old is None:
            self._record(lambda: self.pk_loc.pop(key))
            return
        old_chunk = self.chunks[old[0]]
        old_chunk.kill(old[1])

        def undo() -> None:
            self.pk_loc[key] = old
            old_chunk.revive(old[1])

        self._record(undo)

    def remove_by_seq(self, seqs: Iterable[int]) -> int:
        """Masks the versions whose ``_seq`` is listed (STREAM delete and expiry)."""
        wanted = pa.array(sorted(set(seqs)), pa.int64())
        removed = 0
        for chunk in self.chunks.values():
            found = pc.is_in(chunk.table.column(SEQ_COLUMN), value_set=wanted)
            hits = [row for row in pc.indices_nonzero(found).to_pylist() if row not in chunk.dead]
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
        rewrite wrote to the named segment files. Not undoable: call outside ``begin()``."""
        assert self._undo is None
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
