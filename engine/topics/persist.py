"""The persisted topic index: one file per topic partition, derived and disposable.

File ``<data>/topics/<topic_id>/<partition>.idx``, version 1 (integers little-endian)::

    offset  size  field
    0       4     magic b"STIX"
    4       1     format version (1)
    5       3     zero
    8       8     created_lsn: the topic incarnation (TOPIC_CREATED's LSN)
    16      8     base_lsn: commits at or below it are not messages of this file
    24      8     base_offset: the offset of the first entry
    32      8     covered_lsn: every commit at or below it is in the file (or matched nothing)
    40      8     N: number of entries
    48      4     CRC32C of bytes 0..47 followed by the body
    52      4     zero
    56      ...   body: N x i64 LSN, then N x i32 change index, N x i32 row index,
                  N x i64 commit time (ms)

Validity: exact size ``56 + 24 * N``, magic, version and CRC. A file that fails any check, or
belongs to another incarnation of the topic, is deleted and the partition is rebuilt from
the WAL (STYLE rule 9: never repaired in place). Written with ``FileIO.replace_atomically``
(temp → fsync → rename → directory fsync), so a crash leaves the old or the new file.
"""

from __future__ import annotations

import logging
import shutil
import struct
import sys
from array import array
from pathlib import Path

import crc32c as _crc32c

from wal import FileIO

from .index import PartitionIndex

log = logging.getLogger("sluice.topics")

MAGIC = b"STIX"
VERSION = 1
_HEADER = struct.Struct("<4sB3xQQQQQ")  # magic, version, created, base_lsn, base_off, cov, N
_CRC = struct.Struct("<I4x")
HEADER_SIZE = _HEADER.size + _CRC.size
ENTRY_SIZE = 8 + 4 + 4 + 8
assert HEADER_SIZE == 56


def topics_dir(data_dir: Path) -> Path:
    return data_dir / "topics"


def index_path(data_dir: Path, topic_id: str, partition: int) -> Path:
    return topics_dir(data_dir) / topic_id / f"{partition}.idx"


def _little(values: array) -> bytes:
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def encode(part: PartitionIndex, covered_lsn: int) -> bytes:
    count = len(part.lsns)
    head = _HEADER.pack(MAGIC, VERSION, part.created_lsn, part.base_lsn, part.base_offset,
                        covered_lsn, count)
    body = b"".join(_little(a) for a in (part.lsns, part.changes, part.rows, part.times))
    crc = _crc32c.crc32c(head + body)
    return head + _CRC.pack(crc) + body


def decode(data: bytes) -> PartitionIndex | str:
    """The partition stored in ``data``, or the reason it is invalid."""
    if len(data) < HEADER_SIZE:
        return "shorter than the header"
    magic, version, created, base_lsn, base_offset, covered, count = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        return "bad magic or version"
    if len(data) != HEADER_SIZE + ENTRY_SIZE * count:
        return f"size {len(data)} does not match {count} entries"
    (crc,) = _CRC.unpack_from(data, _HEADER.size)
    if _crc32c.crc32c(data[:_HEADER.size] + data[HEADER_SIZE:]) != crc:
        return "CRC mismatch"
    part = PartitionIndex(created, base_lsn, base_offset, skip_upto=covered,
                          persisted_lsn=covered)
    position = HEADER_SIZE
    for values, width in ((part.lsns, 8), (part.changes, 4), (part.rows, 4), (part.times, 8)):
        values.frombytes(data[position:position + width * count])
        if sys.byteorder != "little":
            values.byteswap()
        position += width * count
    return part


def load(data_dir: Path, io: FileIO, topic_id: str, partition: int, created_lsn: int
         ) -> PartitionIndex | None:
    """Worker thread: the persisted partition, or None (missing, damaged — then deleted —
    or from another incarnation of the topic)."""
    path = index_path(data_dir, topic_id, partition)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    part = decode(data)
    if isinstance(part, str) or part.created_lsn != created_lsn:
        reason = part if isinstance(part, str) else "another incarnation of the topic"
        log.warning("topic index %s is unusable (%s); rebuilding it from the WAL", path, reason)
        io.unlink(path)
        return None
    return part


def save(data_dir: Path, io: FileIO, topic_id: str, partition: int, data: bytes) -> None:
    """Worker thread: durably replaces the partition's file."""
    path = index_path(data_dir, topic_id, partition)
    io.makedirs(path.parent)
    io.replace_atomically(path, data)


def remove_topic_files(data_dir: Path, topic_id: str) -> None:
    """Worker thread: DROP TOPIC deletes the (derived) index files; a crash before this
    leaves files that the next start ignores (no such topic) and removes."""
    shutil.rmtree(topics_dir(data_dir) / topic_id, ignore_errors=True)
