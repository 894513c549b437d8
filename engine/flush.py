"""Hot rows → Arrow segment files, and segment files → partitions at start-up.

Directory per partition (under the data directory):
    tables/<ns>/<table>-<table_id>/            SHARED table
    tables/<ns>/<table>-<table_id>/<user>/     one user's part of a USER table
    streams/<ns>/<table>-<table_id>/<user>/    one user's part of a STREAM table
The table id in the name keeps a dropped table's files apart from a new table of the same
name. User ids are percent-encoded (every byte outside ``[A-Za-z0-9_-]``).

Flush (USER/SHARED): the partition's hot live versions (tombstones included) become one new
segment and the manifest's checkpoint moves to the partition's last LSN; older cold segments
are not rewritten — their superseded rows are masked again on load, because later segments'
versions supersede earlier ones key by key. Compaction merges all segments into one.
STREAM partitions are time-bucketed: a flush writes the hot rows as one segment per bucket
(``stream_bucket_ms``), drops whole segments whose newest row is past the TTL, and — only
after a hard DELETE reached cold rows — rewrites every segment, so deletes and expiry never
need tombstones.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import trio

from .catalog import SEQ_COLUMN, TableDef
from .errors import StorageUnavailable
from .partition import Partition, align, storage_schema
from .segments import (
    Manifest,
    SegmentEntry,
    SegmentMeta,
    append_segment,
    check_partition,
    delete_orphans,
    discard_partition,
    read_manifest,
    read_segment,
    segment_file_name,
    write_manifest,
    write_segment,
)

if TYPE_CHECKING:
    from .engine import Engine


# STREAM time buckets (see stream_bucket_ms).
STREAM_BUCKET_MIN_MS = 1_000
STREAM_BUCKET_MAX_MS = 3_600_000


class ColdDataLostError(Exception):
    """A segment is damaged and the WAL no longer holds its rows: refuse to open."""


@dataclass(slots=True)
class ColdPartition:
    """A partition's cold data read from disk before its table is known (replay order)."""

    directory: Path
    manifest: Manifest
    tables: list[tuple[pa.Table, SegmentMeta]] = field(default_factory=list)


def encode_user(user_id: str) -> str:
    """A user id as one safe directory name: percent-encoded, never empty, never ``.`` or
    ``..`` (quote() keeps dots, and those two names would resolve to the table directory
    or its parent)."""
    name = urllib.parse.quote(user_id, safe="_-") or "%00"
    return name.replace(".", "%2E") if name in (".", "..") else name


def decode_user(name: str) -> str:
    return urllib.parse.unquote(name)


def partition_dir(data_dir: Path, table: TableDef, user_id: str | None) -> Path:
    base = table_dirs(data_dir, table)
    return base / encode_user(user_id) if table.is_user_scoped and user_id is not None else base


def table_dirs(data_dir: Path, table: TableDef) -> Path:
    root = "streams" if table.table_type == "STREAM" else "tables"
    return data_dir / root / table.namespace / f"{table.name}-{table.table_id}"


# ---- start-up ------------------------------------------------------------------------------


def load_cold_partitions(engine: Engine) -> None:
    """Worker thread, before replay: reads every partition's manifest and segments into
    ``engine.store.cold`` keyed by (table_id, user_id). Damaged cold data is discarded when
    the WAL still holds its rows (replay rebuilds them), else ``ColdDataLostError``."""
    for directory, table_id, user_id in _partition_dirs(engine.data_dir):
        manifest = read_manifest(directory)
        delete_orphans(engine.io, directory, manifest)
        if manifest is None or not manifest.segments:
            continue
        problems = check_partition(directory, manifest)
        if problems:
            oldest = min(entry.first_lsn for entry in manifest.segments)
            if engine.wal.first_lsn > oldest:
                raise ColdDataLostError(
                    f"{directory / problems[0].file_name}: {problems[0].reason}; the WAL no "
                    f"longer holds LSN {oldest}, so these rows cannot be rebuilt")
            discard_partition(engine.io, directory)
            continue
        cold = ColdPartition(directory, manifest)
        for entry in manifest.segments:
            cold.tables.append(read_segment(directory / entry.file_name))
        engine.store.cold[(table_id, user_id)] = cold


def _partition_dirs(data_dir: Path) -> list[tuple[Path, int, str | None]]:
    found = []
    for root in ("tables", "streams"):
        for ns_dir in _subdirs(data_dir / root):
            for table_dir in _subdirs(ns_dir):
                _, _, id_text = table_dir.name.rpartition("-")
                if not id_text.isdigit():
                    continue
                table_id = int(id_text)
                if (table_dir / "manifest.json").exists():
                    found.append((table_dir, table_id, None))
                found += [(user_dir, table_id, decode_user(user_dir.name))
                          for user_dir in _subdirs(table_dir)]
    return found


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(path) if e.is_dir())
    except FileNotFoundError:
        return []


def attach_cold(part: Partition, cold: ColdPartition) -> None:
    """Loads a partition's segments as cold chunks (in write order, so later versions mask
    earlier ones) and sets its checkpoint."""
    for entry, (table, meta) in zip(cold.manifest.segments, cold.tables, strict=True):
        part.append_versions(table, meta.last_lsn, cold=True, segment=entry.file_name)
        part.make_lazy(entry.file_name)
    cold.tables.clear()
    part.checkpoint_lsn = cold.manifest.checkpoint_lsn
    part.manifest = cold.manifest


# ---- flush and compaction ------------------------------------------------------------------


async def flush_partition(engine: Engine, part: Partition) -> int:
    """Writes the partition's hot rows to a segment; returns the rows flushed (0: nothing to
    do). Takes the write lock and settles queued commits, so no tentative change is in flight
    while chunks move."""
    async with engine.write_lock:
        await engine.settle()  # no queued (not yet durable) chunk may reach a segment
        if not _registered(engine, part):
            return 0
        if part.table_def.table_type == "STREAM":
            return await _flush_stream(engine, part)
        hot = [(cid, c) for cid, c in part.chunks.items() if not c.cold]
        if not hot:
            return 0
        live = [align(c.table, part.table_def) if not c.dead else c.live(part.table_def)
                for _, c in hot]
        data = pa.concat_tables(live).combine_chunks()
        first = min(c.first_lsn for _, c in hot)
        last = part.last_lsn
        meta = _meta(data, first, last)
        directory = partition_dir(engine.data_dir, part.table_def, part.user_id)
        try:
            manifest = await trio.to_thread.run_sync(
                append_segment, engine.io, directory, part.manifest, data, meta, last)
        except OSError as exc:
            raise StorageUnavailable(f"flush of {directory} failed: {exc}") from exc
        part.replace_chunks([cid for cid, _ in hot], [(data, manifest.segments[-1].file_name)],
                            last)
        part.manifest = manifest
        part.checkpoint_lsn = last
        return data.num_rows


async def compact_partition(engine: Engine, part: Partition) -> int:
    """Merges every segment (and hot rows) into one segment of latest versions only."""
    async with engine.write_lock:
        await engine.settle()
        if not part.chunks or not _registered(engine, part):
            return 0
        data = _live_table(part, list(part.chunks.values()), drop_expired_before=None)
        await _publish(engine, part, list(part.chunks), [data], kept=())
        return data.num_rows


def _registered(engine: Engine, part: Partition) -> bool:
    """Whether ``part`` is still the store's partition: a job that waited for the write lock
    while DROP TABLE/NAMESPACE ran must not write files for the dropped table."""
    return engine.store.partitions.get((part.table_def.table_id, part.user_id)) is part


def stream_bucket_ms(ttl_seconds: int) -> int:
    """Width of a STREAM time bucket: a quarter of the TTL, between 1 s and 1 h, so a
    bucket expires as a whole soon after its newest row does."""
    return max(STREAM_BUCKET_MIN_MS, min(STREAM_BUCKET_MAX_MS, ttl_seconds * 1000 // 4))


async def _flush_stream(engine: Engine, part: Partition) -> int:
    """STREAM flush: hot rows go to one segment per time bucket; whole segments past the TTL
    are dropped; after a hard delete of cold rows every segment is rewritten."""
    floor = part.table_def.expiry_seq_floor(engine.clock.now_ms()) or 0
    entries = part.manifest.segments if part.manifest else ()
    expired = {e.file_name for e in entries if e.max_seq < floor}
    sources = [cid for cid, c in part.chunks.items() if part.needs_rewrite or not c.cold]
    if not sources and not expired:
        return 0
    rewritten = {part.chunks[cid].segment for cid in sources}
    kept = tuple(e for e in entries if e.file_name not in expired | rewritten)
    drop = sources + [cid for cid, c in part.chunks.items() if c.segment in expired]
    data = _live_table(part, [part.chunks[cid] for cid in sources], drop_expired_before=floor)
    buckets = _split_buckets(data, stream_bucket_ms(part.table_def.options.ttl_seconds or 0))
    await _publish(engine, part, drop, buckets, kept=kept)
    return data.num_rows


def _split_buckets(data: pa.Table, bucket_ms: int) -> list[pa.Table]:
    if data.num_rows == 0:
        return []
    bucket = pc.divide(pc.shift_right(data.column(SEQ_COLUMN), 22), bucket_ms)
    return [data.filter(pc.equal(bucket, value)) for value in pc.unique(bucket).to_pylist()]


async def _publish(engine: Engine, part: Partition, drop: list[int], tables: list[pa.Table],
                   *, kept: tuple[SegmentEntry, ...]) -> None:
    """Writes ``tables`` as new segments, then a manifest listing ``kept`` + them with the
    checkpoint at the partition's last LSN; swaps the dropped chunks for the written ones."""
    directory = partition_dir(engine.data_dir, part.table_def, part.user_id)
    old = part.manifest or Manifest()
    number, entries, written = old.next_segment_number, list(kept), []
    first_lsn = min((part.chunks[cid].first_lsn for cid in drop), default=1)
    for table in (t for t in tables if t.num_rows):
        meta = _meta(table, first_lsn, part.last_lsn)
        name = segment_file_name(number)
        number += 1
        await trio.to_thread.run_sync(write_segment, engine.io, directory / name, table, meta)
        size = (directory / name).stat().st_size
        entries.append(SegmentEntry(name, meta.min_seq, meta.max_seq, meta.rows,
                                    meta.first_lsn, meta.last_lsn, size))
        written.append((table, name))
    manifest = Manifest(tuple(entries), max(part.last_lsn, old.checkpoint_lsn), number)
    await trio.to_thread.run_sync(_publish_manifest, engine, directory, manifest)
    part.replace_chunks(drop, written, part.last_lsn)
    part.manifest = manifest
    part.checkpoint_lsn = manifest.checkpoint_lsn
    part.needs_rewrite = False
    # Only now that no chunk refers to the superseded segments may they go: queries load
    # cold chunks lazily while they are prepared on the trio thread, so deleting before the
    # swap let a query prepared in between read a file that was already gone (found by the
    # soak: FileNotFoundError → 500).
    await trio.to_thread.run_sync(delete_orphans, engine.io, directory, manifest)


def _publish_manifest(engine: Engine, directory: Path, manifest: Manifest) -> None:
    engine.io.makedirs(directory)
    write_manifest(engine.io, directory, manifest)


def _live_table(part: Partition, chunks: list, drop_expired_before: int | None) -> pa.Table:
    tables = [c.live(part.table_def) for c in chunks]
    if not tables:
        return storage_schema(part.table_def).empty_table()
    data = pa.concat_tables(tables).combine_chunks()
    if drop_expired_before is not None:
        data = data.filter(pc.greater_equal(data.column(SEQ_COLUMN), drop_expired_before))
    return data


def _meta(data: pa.Table, first_lsn: int, last_lsn: int) -> SegmentMeta:
    seqs = data.column(SEQ_COLUMN)
    return SegmentMeta(int(pc.min(seqs).as_py() or 0), int(pc.max(seqs).as_py() or 0),
                       data.num_rows, max(first_lsn, 1), max(last_lsn, first_lsn, 1))


def drop_table_files(engine: Engine, table: TableDef) -> None:
    """Worker thread: removes every file of a dropped table (its rows stay in the WAL
    until retention, and replay skips them because the table is gone)."""
    import shutil

    directory = table_dirs(engine.data_dir, table)
    if directory.exists():
        shutil.rmtree(directory)
        engine.io.fsync_dir(directory.parent)

