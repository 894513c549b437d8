"""Cold table data on disk: Arrow IPC segment files and the partition manifest, format v1.

Everything here is derived state (STYLE rule 9): a damaged file is never repaired in place;
its owner deletes the partition's cold data and replays the WAL. Blocking functions run in
worker threads (``trio.to_thread.run_sync``); all writes go through the caller's ``wal.FileIO``.

Partition directory
-------------------
One directory per partition (``tables/<ns>/<table>/`` for a SHARED table, ``.../<user>/`` for
one user's part of a USER table). The files this module owns in it:

    seg-<n>.arrow     a segment; ``n`` is 8 zero-padded decimal digits (1 .. 99999999) taken
                      from the manifest's ``next_segment_number``, so lexical order is write order
    manifest.json     the segments that are live, and the partition's checkpoint
    <name>.tmp        an unfinished atomic replace (``FileIO.replace_atomically``); readers
                      ignore it, the owner deletes it (``orphan_segments``)

Other files and directories (a USER table's per-user subdirectories) are left alone. Files
are created whole (temp -> fsync -> rename -> directory fsync) and never modified afterwards.

Segment file (integers little-endian)
-------------------------------------
    offset   size  field
    0        L     ipc          Arrow IPC *file* format (b"ARROW1" ... footer ... b"ARROW1"),
                                written by ``pyarrow.ipc.new_file`` with zstd buffer compression
    L        8     magic        b"SLSEGv01" (the digits are the format version)
    L+8      8     ipc_len      u64, = L
    L+16     4     ipc_crc      u32, CRC32C of bytes 0 .. L
    L+20     4     trailer_crc  u32, CRC32C of bytes L .. L+20 (magic, ipc_len, ipc_crc)
    file size = L + 24 exactly

The Arrow schema carries the metadata key ``b"sluice.segment"`` whose value is canonical JSON
(sorted keys, no spaces) ``{"first_lsn", "format_version": 1, "last_lsn", "max_seq", "min_seq",
"rows"}``: the ``_seq`` range of the rows, their count, and the WAL LSN range they came from.
``decode_segment`` removes the key again, so callers get back the schema they wrote.

A segment is valid when all of these hold, checked in this order; steps 1-5 run before any
byte reaches pyarrow, and the length is checked against the file size before allocating:
  1. the file size is in [24, ``SEGMENT_SIZE_MAX_BYTES``];
  2. the trailer magic matches; 3. ``trailer_crc`` matches;
  4. ``ipc_len + 24`` equals the file size; 5. ``ipc_crc`` matches;
  6. pyarrow reads the IPC file; the metadata key is present and well formed; ``rows`` equals
     the decoded row count; ``min_seq <= max_seq`` and ``first_lsn <= last_lsn``.
Anything else raises ``SegmentCorruptError(path, reason)``.

Manifest (``manifest.json``)
----------------------------
Canonical JSON in ASCII (sorted keys, no whitespace, no trailing newline):
``{"body": B, "crc32c": C}`` where ``C`` is the CRC32C of ``canonical(B)`` and ``B`` is
``{"checkpoint_lsn", "format_version": 1, "next_segment_number", "segments": [entry, ...]}``
with each entry ``{"file_name", "first_lsn", "last_lsn", "max_seq", "min_seq", "rows",
"size_bytes"}`` in ascending segment number. A manifest is valid when it parses, re-encodes
to exactly the same bytes, the CRC matches, every field has its type and range, file names
follow the naming rule, are unique and ascending, and ``next_segment_number`` is above them.
``checkpoint_lsn``: every WAL record up to this LSN that belongs to the partition is in the
listed segments; replay for the partition starts after it. An absent manifest means "no cold
data, checkpoint 0".

Flush: a multi-file step (``append_segment``)
---------------------------------------------
  1. write ``seg-<next>.arrow`` atomically;  2. write the manifest listing it, atomically.
A crash leaves one of: ``seg-N.arrow.tmp`` (before step 1's rename), an unlisted ``seg-N.arrow``
(after step 1; the checkpoint did not move, so replay rebuilds its rows), ``manifest.json.tmp``
beside either, or the finished state. On open the owner calls ``delete_orphans`` (undo) and
``check_partition``; a listed segment that is missing, corrupt or disagrees with its entry
means the owner calls ``discard_partition`` and replays the partition from the WAL.
Compaction follows the same rule: write merged segments, then a manifest without the inputs,
which then become orphans.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import crc32c as _crc32c  # a declared dependency (see pyproject); the lead allowed it in engine/
import pyarrow as pa

from wal import FileIO

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"SLSEGv01"
TRAILER = struct.Struct("<8sQII")
TRAILER_SIZE = TRAILER.size  # 24
assert TRAILER_SIZE == 24
_TRAILER_CRC_SPAN = 20  # trailer_crc covers the trailer's first 20 bytes

METADATA_KEY = b"sluice.segment"
MANIFEST_NAME = "manifest.json"
TEMP_SUFFIX = ".tmp"  # what FileIO.replace_atomically appends to an unfinished file
_SEGMENT_NAME = re.compile(r"seg-([0-9]{8})\.arrow")
SEGMENT_NUMBER_MAX = 99_999_999  # 8 digits keep lexical order equal to numeric order

# Largest segment file accepted on read or produced on write. A read holds the whole file in
# memory, and the cache holds its decoded form; flush and compaction cut segments far below
# this, so a larger file (or a length field claiming one) is damage or a bug, not data.
SEGMENT_SIZE_MAX_BYTES = 1024 * 1024 * 1024
# Largest manifest accepted: an entry is ~150 bytes, so this allows SEGMENTS_PER_MANIFEST_MAX.
MANIFEST_SIZE_MAX_BYTES = 32 * 1024 * 1024
# Segments listed in one manifest. Compaction keeps partitions to hundreds; beyond this many
# every query would open too many files, so a bigger list means something is wrong.
SEGMENTS_PER_MANIFEST_MAX = 100_000
_CRC_CHUNK_BYTES = 4 * 1024 * 1024  # streaming CRC read size in verify_segment

_META_FIELDS = ("first_lsn", "last_lsn", "max_seq", "min_seq", "rows")
_ENTRY_FIELDS = ("file_name", *_META_FIELDS, "size_bytes")
_BODY_FIELDS = ("checkpoint_lsn", "format_version", "next_segment_number", "segments")


class ColdDataCorruptError(Exception):
    """A cold-data file is damaged. Internal: the owner catches it, discards the partition's
    cold data and replays it from the WAL; it never reaches a client."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SegmentCorruptError(ColdDataCorruptError):
    """A segment file fails the validity rule in the module docstring."""


class ManifestCorruptError(ColdDataCorruptError):
    """``manifest.json`` fails the validity rule in the module docstring."""


@dataclass(frozen=True)
class SegmentMeta:
    """What a segment holds: its ``_seq`` range, row count and source WAL LSN range."""

    min_seq: int
    max_seq: int
    rows: int
    first_lsn: int
    last_lsn: int


@dataclass(frozen=True)
class SegmentEntry:
    """One live segment as the manifest lists it."""

    file_name: str
    min_seq: int
    max_seq: int
    rows: int
    first_lsn: int
    last_lsn: int
    size_bytes: int

    @property
    def meta(self) -> SegmentMeta:
        return SegmentMeta(self.min_seq, self.max_seq, self.rows, self.first_lsn, self.last_lsn)


@dataclass(frozen=True)
class Manifest:
    """A partition's list of live segments and its checkpoint. Immutable: flushes build a new
    one (``dataclasses.replace``) and publish it with ``write_manifest``."""

    segments: tuple[SegmentEntry, ...] = ()
    checkpoint_lsn: int = 0
    next_segment_number: int = 1
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class PartitionProblem:
    """A listed segment that cannot be trusted; ``cause`` keeps the error when there is one."""

    file_name: str
    reason: str
    cause: Exception | None = None


def segment_file_name(number: int) -> str:
    """``seg-<number as 8 digits>.arrow``."""
    assert 0 < number <= SEGMENT_NUMBER_MAX, number
    return f"seg-{number:08d}.arrow"


def parse_segment_file_name(name: str) -> int | None:
    """The number in a segment file name, or None if ``name`` is not one."""
    match = _SEGMENT_NAME.fullmatch(name)
    number = int(match.group(1)) if match else 0
    return number if number > 0 else None


def _crc(data: bytes | memoryview, value: int = 0) -> int:
    return _crc32c.crc32c(data, value)


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _check_counts(values: dict[str, object], fields: Iterable[str]) -> None:
    """ValueError unless every field is a non-negative int (bool excluded) in range."""
    for name in fields:
        value = values[name]
        if type(value) is not int or not 0 <= value < 2**63:
            raise ValueError(f"{name} must be an int in [0, 2**63), got {value!r}")
    if values.get("min_seq", 0) > values.get("max_seq", 0):
        raise ValueError(f"min_seq {values['min_seq']} > max_seq {values['max_seq']}")
    if values.get("first_lsn", 0) > values.get("last_lsn", 0):
        raise ValueError(f"first_lsn {values['first_lsn']} > last_lsn {values['last_lsn']}")


# ---- segment encoding ------------------------------------------------------------------------


def encode_segment(table: pa.Table, meta: SegmentMeta) -> bytes:
    """Encodes ``table`` and ``meta`` as a segment file image (layout in the module docstring).

    Raises ValueError if ``meta`` is out of range or disagrees with ``table.num_rows``, if the
    schema already carries ``METADATA_KEY``, or if the result would exceed
    ``SEGMENT_SIZE_MAX_BYTES`` (it could not be read back). Pure: no I/O, thread-safe.
    """
    _check_counts(dataclasses.asdict(meta), _META_FIELDS)
    if meta.rows != table.num_rows:
        raise ValueError(f"meta.rows={meta.rows} but the table has {table.num_rows} rows")
    metadata = dict(table.schema.metadata or {})
    if METADATA_KEY in metadata:
        raise ValueError(f"schema metadata key {METADATA_KEY!r} is reserved")
    body = {"format_version": FORMAT_VERSION, **dataclasses.asdict(meta)}
    metadata[METADATA_KEY] = _canonical_json(body)
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    ipc = sink.getvalue().to_pybytes()
    if len(ipc) + TRAILER_SIZE > SEGMENT_SIZE_MAX_BYTES:
        raise ValueError(f"segment of {len(ipc) + TRAILER_SIZE} bytes exceeds "
                         f"SEGMENT_SIZE_MAX_BYTES={SEGMENT_SIZE_MAX_BYTES}")
    head = struct.pack("<8sQI", SEGMENT_MAGIC, len(ipc), _crc(ipc))
    trailer = head + struct.pack("<I", _crc(head))
    assert len(trailer) == TRAILER_SIZE
    return ipc + trailer


def _check_file_size(file_size: int, path: Path | str) -> None:
    """Rule 1 of the validity rule."""
    if file_size < TRAILER_SIZE:
        raise SegmentCorruptError(path, f"file of {file_size} bytes is shorter than the trailer")
    if file_size > SEGMENT_SIZE_MAX_BYTES:
        raise SegmentCorruptError(path, f"file of {file_size} bytes exceeds "
                                        f"SEGMENT_SIZE_MAX_BYTES={SEGMENT_SIZE_MAX_BYTES}")


def _parse_trailer(trailer: bytes, file_size: int, path: Path | str) -> tuple[int, int]:
    """Rules 2-4 (rule 1 already checked); returns ``(ipc_len, ipc_crc)``."""
    assert TRAILER_SIZE <= file_size <= SEGMENT_SIZE_MAX_BYTES
    assert len(trailer) == TRAILER_SIZE
    magic, ipc_len, ipc_crc, trailer_crc = TRAILER.unpack(trailer)
    if magic != SEGMENT_MAGIC:
        raise SegmentCorruptError(path, f"bad trailer magic {magic!r}")
    if _crc(trailer[:_TRAILER_CRC_SPAN]) != trailer_crc:
        raise SegmentCorruptError(path, "trailer CRC mismatch")
    if ipc_len + TRAILER_SIZE != file_size:
        raise SegmentCorruptError(path, f"trailer says {ipc_len} IPC bytes but the file holds "
                                        f"{file_size - TRAILER_SIZE}")
    return ipc_len, ipc_crc


def _meta_from_schema(schema: pa.Schema, path: Path | str) -> SegmentMeta:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise SegmentCorruptError(path, f"schema metadata {METADATA_KEY!r} is missing")
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or set(body) != {"format_version", *_META_FIELDS}:
            raise ValueError("not an object with exactly the metadata fields")
        if body["format_version"] != FORMAT_VERSION:
            raise ValueError(f"unknown format_version {body['format_version']!r}")
        _check_counts(body, _META_FIELDS)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SegmentCorruptError(path, f"bad segment metadata: {exc}") from exc
    return SegmentMeta(**{name: body[name] for name in _META_FIELDS})


def _decode_ipc(ipc: bytes | memoryview, path: Path | str) -> tuple[pa.Table, SegmentMeta]:
    """Rule 6: hands CRC-checked IPC bytes to pyarrow; every Arrow error becomes corruption."""
    try:
        reader = pa.ipc.open_file(pa.py_buffer(ipc))
        table = reader.read_all()
        table.validate(full=True)  # ~25% of decode time; guards against writer bugs
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise SegmentCorruptError(path, f"Arrow IPC decode failed: {exc}") from exc
    meta = _meta_from_schema(table.schema, path)
    if meta.rows != table.num_rows:
        raise SegmentCorruptError(path, f"metadata says {meta.rows} rows, decoded "
                                        f"{table.num_rows}")
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != METADATA_KEY}
    return table.replace_schema_metadata(metadata or None), meta


def decode_segment(data: bytes, path_for_errors: Path | str) -> tuple[pa.Table, SegmentMeta]:
    """Decodes a whole segment file image; ``path_for_errors`` only labels errors.

    Returns the table (with the schema metadata it was written with) and its meta. The table
    may share memory with ``data``. Raises ``SegmentCorruptError`` for any violation of the
    validity rule, never an Arrow error. Pure, thread-safe.
    """
    _check_file_size(len(data), path_for_errors)
    ipc_len, ipc_crc = _parse_trailer(bytes(data[-TRAILER_SIZE:]), len(data), path_for_errors)
    ipc = memoryview(data)[:ipc_len]
    if _crc(ipc) != ipc_crc:
        raise SegmentCorruptError(path_for_errors, "IPC CRC mismatch")
    return _decode_ipc(ipc, path_for_errors)


# ---- segment files ---------------------------------------------------------------------------


def write_segment(io: FileIO, path: Path, table: pa.Table, meta: SegmentMeta) -> None:
    """Durably creates (or replaces) segment file ``path``; creates its directory first.

    Blocking: owners call it from a worker thread (``trio.to_thread.run_sync``). A failure
    (``OSError`` from ``io``, or ValueError from ``encode_segment``) leaves either no file at
    ``path`` (or the previous one) plus possibly ``<path>.tmp``; nothing is retried here.
    """
    data = encode_segment(table, meta)
    io.makedirs(path.parent)
    io.replace_atomically(path, data)


def _read_exact(file: BinaryIO, offset: int, length: int, path: Path) -> bytes:
    file.seek(offset)
    data = file.read(length)
    if len(data) != length:
        raise SegmentCorruptError(path, "file shrank while being read")
    return data


def _read_trailer(file: BinaryIO, path: Path) -> tuple[int, int]:
    """Rules 1-4 for an open file: size from fstat, then the last 24 bytes only."""
    size = os.fstat(file.fileno()).st_size
    _check_file_size(size, path)
    return _parse_trailer(_read_exact(file, size - TRAILER_SIZE, TRAILER_SIZE, path), size, path)


def _read_file_segment(file: BinaryIO, path: Path) -> tuple[pa.Table, SegmentMeta]:
    """Reads and decodes an open segment file; trailer first, then exactly ``ipc_len`` bytes."""
    ipc_len, ipc_crc = _read_trailer(file, path)
    ipc = _read_exact(file, 0, ipc_len, path)
    if _crc(ipc) != ipc_crc:
        raise SegmentCorruptError(path, "IPC CRC mismatch")
    return _decode_ipc(ipc, path)


def read_segment(path: Path) -> tuple[pa.Table, SegmentMeta]:
    """Reads and fully verifies segment file ``path`` (see the validity rule).

    Raises ``SegmentCorruptError`` for damage, ``FileNotFoundError``/``OSError`` when the file
    cannot be read. Blocking; thread-safe (no shared state). Memory: the file once, plus the
    decompressed table.
    """
    path = Path(path)
    with open(path, "rb") as file:
        return _read_file_segment(file, path)


def verify_segment(path: Path) -> SegmentMeta:
    """Checks the trailer and IPC CRC by streaming (bounded memory), then reads only the schema
    to return the segment's meta. Raises like ``read_segment``; blocking, thread-safe."""
    path = Path(path)
    with open(path, "rb") as file:
        ipc_len, ipc_crc = _read_trailer(file, path)
        file.seek(0)
        crc, remaining = 0, ipc_len
        while remaining:
            chunk = file.read(min(remaining, _CRC_CHUNK_BYTES))
            if not chunk:
                raise SegmentCorruptError(path, "file shrank while being read")
            crc, remaining = _crc(chunk, crc), remaining - len(chunk)
        if crc != ipc_crc:
            raise SegmentCorruptError(path, "IPC CRC mismatch")
        try:
            schema = pa.ipc.open_file(pa.PythonFile(file, mode="r"), footer_offset=ipc_len).schema
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise SegmentCorruptError(path, f"Arrow IPC footer unreadable: {exc}") from exc
    return _meta_from_schema(schema, path)


# ---- manifest --------------------------------------------------------------------------------


def _check_manifest_body(body: object) -> Manifest:
    """ValueError/TypeError unless ``body`` satisfies the manifest validity rule."""
    if not isinstance(body, dict) or set(body) != set(_BODY_FIELDS):
        raise ValueError("body does not have exactly the manifest fields")
    if body["format_version"] != FORMAT_VERSION:
        raise ValueError(f"unknown format_version {body['format_version']!r}")
    _check_counts(body, ("checkpoint_lsn", "next_segment_number"))
    raw_entries = body["segments"]
    if not isinstance(raw_entries, list) or len(raw_entries) > SEGMENTS_PER_MANIFEST_MAX:
        raise ValueError("segments is not a list of at most SEGMENTS_PER_MANIFEST_MAX")
    entries, previous = [], 0
    for raw in raw_entries:
        if not isinstance(raw, dict) or set(raw) != set(_ENTRY_FIELDS):
            raise ValueError("a segment entry does not have exactly the entry fields")
        _check_counts(raw, (*_META_FIELDS, "size_bytes"))
        number = parse_segment_file_name(raw["file_name"]) if type(raw["file_name"]) is str else None
        if number is None or number <= previous:
            raise ValueError(f"file name {raw['file_name']!r} is invalid or out of order")
        entries.append(SegmentEntry(**raw))
        previous = number
    if not previous < body["next_segment_number"] <= SEGMENT_NUMBER_MAX + 1:
        raise ValueError(f"next_segment_number {body['next_segment_number']} is not above "
                         f"the listed segments")
    return Manifest(tuple(entries), body["checkpoint_lsn"], body["next_segment_number"])


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest file's bytes. Raises ValueError if ``manifest`` is not valid. Pure."""
    body = json.loads(_canonical_json(dataclasses.asdict(manifest)))  # tuples become lists
    _check_manifest_body(body)
    return _canonical_json({"body": body, "crc32c": _crc(_canonical_json(body))})


def decode_manifest(data: bytes, path_for_errors: Path | str) -> Manifest:
    """Parses and verifies manifest bytes; raises ``ManifestCorruptError``. Pure."""
    if len(data) > MANIFEST_SIZE_MAX_BYTES:
        raise ManifestCorruptError(path_for_errors, f"{len(data)} bytes exceeds "
                                                    f"MANIFEST_SIZE_MAX_BYTES")
    try:
        document = json.loads(data.decode("ascii"))
        if not isinstance(document, dict) or set(document) != {"body", "crc32c"}:
            raise ValueError("top level is not {body, crc32c}")
        if _canonical_json(document) != data:
            raise ValueError("not in canonical form")
        if type(document["crc32c"]) is not int:
            raise ValueError("crc32c is not an int")
        if _crc(_canonical_json(document["body"])) != document["crc32c"]:
            raise ValueError("CRC mismatch")
        return _check_manifest_body(document["body"])
    except (ValueError, TypeError, RecursionError) as exc:
        raise ManifestCorruptError(path_for_errors, str(exc)) from exc


def write_manifest(io: FileIO, directory: Path, manifest: Manifest) -> None:
    """Durably replaces ``directory/manifest.json`` (creating the directory if needed).

    Blocking. On failure (``OSError`` from ``io``) the previous manifest is intact, plus
    possibly ``manifest.json.tmp``. Raises ValueError for an invalid ``manifest``.
    """
    data = encode_manifest(manifest)
    io.makedirs(directory)
    io.replace_atomically(directory / MANIFEST_NAME, data)


def read_manifest(directory: Path) -> Manifest | None:
    """The partition's manifest, or None when there is none (no cold data, checkpoint 0).

    Raises ``ManifestCorruptError`` when it is damaged (read at most
    ``MANIFEST_SIZE_MAX_BYTES + 1`` bytes). Blocking, thread-safe.
    """
    path = Path(directory) / MANIFEST_NAME
    try:
        with open(path, "rb") as file:
            data = file.read(MANIFEST_SIZE_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    return decode_manifest(data, path)


# ---- partition lifecycle ---------------------------------------------------------------------


def append_segment(io: FileIO, directory: Path, manifest: Manifest | None, table: pa.Table,
                   meta: SegmentMeta, checkpoint_lsn: int) -> Manifest:
    """The flush step: writes the next segment, then a manifest listing it with the checkpoint
    raised to ``checkpoint_lsn``; returns that manifest.

    ``manifest`` is the current one (None for none yet). Raises ValueError when
    ``meta.first_lsn`` is not after the current checkpoint or ``checkpoint_lsn`` is below
    ``meta.last_lsn``. On ``OSError`` the outcome is unknown, as after a crash (the manifest
    may already be replaced; see "Flush" in the module docstring): the caller keeps its hot
    rows and, before retrying, redoes the open steps (``read_manifest``, ``delete_orphans``).
    Blocking; the caller is the partition's single writer.
    """
    manifest = manifest or Manifest()
    if meta.first_lsn <= manifest.checkpoint_lsn:
        raise ValueError(f"first_lsn {meta.first_lsn} is not after checkpoint "
                         f"{manifest.checkpoint_lsn}")
    if checkpoint_lsn < meta.last_lsn:
        raise ValueError(f"checkpoint_lsn {checkpoint_lsn} < last_lsn {meta.last_lsn}")
    if manifest.next_segment_number > SEGMENT_NUMBER_MAX:
        raise ValueError("segment numbers are exhausted; compact into a new partition")
    name = segment_file_name(manifest.next_segment_number)
    data = encode_segment(table, meta)
    io.makedirs(directory)
    io.replace_atomically(directory / name, data)
    entry = SegmentEntry(name, meta.min_seq, meta.max_seq, meta.rows, meta.first_lsn,
                         meta.last_lsn, len(data))
    new = dataclasses.replace(manifest, segments=(*manifest.segments, entry),
                              checkpoint_lsn=checkpoint_lsn,
                              next_segment_number=manifest.next_segment_number + 1)
    write_manifest(io, directory, new)
    return new


def orphan_segments(directory: Path, manifest: Manifest | None) -> list[Path]:
    """Files of ours in ``directory`` that ``manifest`` does not list: unlisted ``seg-*.arrow``
    and every ``seg-*.arrow.tmp`` / ``manifest.json.tmp``. Sorted; foreign files are ignored.
    Read-only; the owner deletes them (``delete_orphans``) before using the partition."""
    listed = {entry.file_name for entry in (manifest.segments if manifest else ())}
    try:
        names = [p.name for p in Path(directory).iterdir() if p.is_file()]
    except FileNotFoundError:
        return []
    orphans = []
    for name in names:
        base = name.removesuffix(TEMP_SUFFIX)
        if parse_segment_file_name(base) is None and base != MANIFEST_NAME:
            continue  # not ours
        is_temp = name != base
        if is_temp or (name != MANIFEST_NAME and name not in listed):
            orphans.append(Path(directory) / name)
    return sorted(orphans)


def delete_orphans(io: FileIO, directory: Path, manifest: Manifest | None) -> list[Path]:
    """Deletes ``orphan_segments`` durably (one directory fsync); returns what it deleted.
    Blocking; call it before any new flush into the partition. Raises ``OSError`` from ``io``."""
    orphans = orphan_segments(directory, manifest)
    for path in orphans:
        io.unlink(path)
    if orphans:
        io.fsync_dir(Path(directory))
    return orphans


def discard_partition(io: FileIO, directory: Path) -> None:
    """Deletes the partition's cold data (manifest first, then segments and temp files), so a
    crash midway leaves no manifest and only orphans. Foreign files stay. Blocking."""
    path = Path(directory) / MANIFEST_NAME
    if path.exists():
        io.unlink(path)
        io.fsync_dir(path.parent)
    delete_orphans(io, directory, None)


def check_partition(directory: Path, manifest: Manifest) -> list[PartitionProblem]:
    """Verifies every segment ``manifest`` lists: present, of the listed size, valid (trailer,
    full CRC, schema metadata) and with the listed meta. Returns the problems in manifest
    order, empty when all is well; any problem means the partition's cold data must be
    discarded and replayed. Raises ``OSError`` other than a missing file (a disk fault is not
    damage a rebuild could fix). Blocking; reads every byte in bounded memory."""
    problems = []
    for entry in manifest.segments:
        path = Path(directory) / entry.file_name
        try:
            size = path.stat().st_size
            if size != entry.size_bytes:
                problems.append(PartitionProblem(entry.file_name, f"size {size} bytes, "
                                                 f"manifest says {entry.size_bytes}"))
                continue
            meta = verify_segment(path)
        except FileNotFoundError as exc:
            problems.append(PartitionProblem(entry.file_name, "missing", exc))
            continue
        except SegmentCorruptError as exc:
            problems.append(PartitionProblem(entry.file_name, exc.reason, exc))
            continue
        if meta != entry.meta:
            problems.append(PartitionProblem(entry.file_name, f"segment meta {meta} differs "
                                             f"from the manifest entry"))
    return problems


# ---- decoded-segment cache -------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentCacheStatistics:
    hits: int
    misses: int
    evictions: int
    entries: int
    resident_bytes: int  # sum of table.nbytes of the cached tables
    budget_bytes: int


@dataclass
class _CacheEntry:
    identity: tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns)
    table: pa.Table
    meta: SegmentMeta
    nbytes: int


class SegmentCache:
    """LRU cache of decoded segments, bounded by the sum of ``table.nbytes``.

    Keyed by path and validated by file identity on every ``get``, so a segment replaced under
    the same name (a rewrite after a crash) is reloaded, never served stale. A table larger
    than the whole budget is returned but not kept.

    Thread safety: every method may be called from any thread (queries run in worker threads);
    one lock guards the map and counters, and decoding runs outside it. Two threads missing the
    same segment at once may both decode it; one result is kept. Returned tables are immutable
    and shared; callers must not rely on them staying cached.
    """

    def __init__(self, budget_bytes: int) -> None:
        if type(budget_bytes) is not int or budget_bytes < 0:
            raise ValueError(f"budget_bytes must be a non-negative int, got {budget_bytes!r}")
        self._budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, _CacheEntry] = OrderedDict()
        self._resident_bytes = 0
        self._hits = self._misses = self._evictions = 0

    def get(self, path: Path) -> tuple[pa.Table, SegmentMeta]:
        """The decoded segment at ``path``, from the cache or via a verified read.

        Raises like ``read_segment`` (``SegmentCorruptError``, ``FileNotFoundError``); a
        failed read caches nothing. Blocking on a miss.
        """
        path = Path(path)
        with open(path, "rb") as file:
            stat = os.fstat(file.fileno())
            identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            with self._lock:
                entry = self._entries.get(path)
                if entry is not None and entry.identity == identity:
                    self._entries.move_to_end(path)
                    self._hits += 1
                    return entry.table, entry.meta
                self._misses += 1
            table, meta = _read_file_segment(file, path)
        self._insert(path, _CacheEntry(identity, table, meta, table.nbytes))
        return table, meta

    def _insert(self, path: Path, entry: _CacheEntry) -> None:
        with self._lock:
            self._drop_locked(path)
            if entry.nbytes > self._budget_bytes:
                return
            self._entries[path] = entry
            self._resident_bytes += entry.nbytes
            while self._resident_bytes > self._budget_bytes:
                victim = next(iter(self._entries))
                self._drop_locked(victim)
                self._evictions += 1
            assert self._resident_bytes >= 0

    def _drop_locked(self, path: Path) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self._resident_bytes -= entry.nbytes

    def invalidate(self, path: Path) -> None:
        """Forgets ``path`` (call after deleting or discarding a segment)."""
        with self._lock:
            self._drop_locked(Path(path))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._resident_bytes = 0

    def statistics(self) -> SegmentCacheStatistics:
        with self._lock:
            return SegmentCacheStatistics(self._hits, self._misses, self._evictions,
                                          len(self._entries), self._resident_bytes,
                                          self._budget_bytes)
