"""One segment file: naming, listing, creation by temp + rename, appending, deletion.

Every function here is synchronous; the WAL runs them in worker threads. All writes go
through the ``FileIO`` seam. Ownership: an ``ActiveSegment`` owns its file descriptor and is
used by exactly one writer at a time (the group-commit task); ``close`` releases it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import failpoints
from ._io import FileIO
from .format import (
    BROKEN_SUFFIX,
    SEGMENT_HEADER_SIZE,
    TEMP_SUFFIX,
    encode_segment_header,
    parse_segment_name,
    segment_name,
)


@dataclass(frozen=True, slots=True)
class SegmentFile:
    base_lsn: int
    path: Path


def list_segments(directory: Path) -> list[SegmentFile]:
    """The segment files of a log directory in log order (ignores temp and broken files)."""
    found = []
    for entry in os.scandir(directory):
        base = parse_segment_name(entry.name)
        if base is not None and entry.is_file():
            found.append(SegmentFile(base, Path(entry.path)))
    found.sort(key=lambda segment: segment.base_lsn)
    return found


def leftover_temp_files(directory: Path) -> list[Path]:
    """Temp files of unfinished segment rolls (safe to delete: never renamed, never used)."""
    return sorted(Path(e.path) for e in os.scandir(directory) if e.name.endswith(TEMP_SUFFIX))


def broken_copy_path(segment: Path, offset: int) -> Path:
    return segment.with_name(f"{segment.name}{BROKEN_SUFFIX}{offset}")


SPARE_NAME = "spare" + TEMP_SUFFIX


def create_segment(io: FileIO, directory: Path, base_lsn: int, size_bytes: int) -> Path:
    """Creates segment ``base_lsn`` durably and returns its path (see ``activate_spare``)."""
    temp = directory / (segment_name(base_lsn) + TEMP_SUFFIX)
    return activate_spare(io, prepare_spare(io, temp, size_bytes), base_lsn)


def prepare_spare(io: FileIO, temp: Path, size_bytes: int) -> Path:
    """Creates ``temp`` zero-filled to ``size_bytes`` and synced; returns it.

    This is the slow half of a roll (writing and syncing the whole segment), so the writer
    can do it ahead of time. A crash leaves only a ``.tmp`` file, deleted on open.
    """
    assert size_bytes > SEGMENT_HEADER_SIZE
    if temp.exists():  # left by an earlier attempt that failed midway
        io.unlink(temp)
    fd = io.create_exclusive(temp)
    try:
        io.fill_zeros(fd, 0, size_bytes)
        io.fsync(fd)
    finally:
        io.close(fd)
    return temp


def activate_spare(io: FileIO, spare: Path, base_lsn: int) -> Path:
    """Turns a prepared spare into segment ``base_lsn`` and returns the segment's path.

    Steps: header -> fsync -> rename -> fsync directory. A crash before the rename leaves a
    ``.tmp`` file; after it, a complete and empty segment.
    """
    final = spare.with_name(segment_name(base_lsn))
    fd = io.open_existing(spare)
    try:
        io.pwrite(fd, encode_segment_header(base_lsn), 0)
        io.fsync(fd)
    finally:
        io.close(fd)
    failpoints.hit("segment.before_rename")
    io.rename(spare, final)
    failpoints.hit("segment.after_rename_before_dir_fsync")
    io.fsync_dir(final.parent)
    failpoints.hit("segment.after_roll")
    return final


def delete_segment(io: FileIO, segment: SegmentFile) -> None:
    """Deletes a whole segment durably (retention)."""
    failpoints.hit("retention.before_unlink")
    io.unlink(segment.path)
    io.fsync_dir(segment.path.parent)


class ActiveSegment:
    """The segment the writer appends to. Not thread-safe: one writer at a time."""

    def __init__(self, io: FileIO, path: Path, base_lsn: int, end_offset: int, size_bytes: int):
        assert SEGMENT_HEADER_SIZE <= end_offset <= size_bytes
        self.path = path
        self.base_lsn = base_lsn
        self.end_offset = end_offset
        self.size_bytes = size_bytes
        self._io = io
        self._fd: int | None = io.open_existing(path)

    @property
    def remaining_bytes(self) -> int:
        return self.size_bytes - self.end_offset

    def write(self, data: bytes | bytearray) -> int:
        """Writes ``data`` at the end of the used part; returns the offset it starts at."""
        assert self._fd is not None
        assert len(data) <= self.remaining_bytes
        offset = self.end_offset
        # Advance first: if the write fails the WAL is poisoned and this segment is never
        # written again, so the offset must not be reused for a retry.
        self.end_offset += len(data)
        self._io.pwrite(self._fd, data, offset)
        return offset

    def sync(self) -> None:
        assert self._fd is not None
        self._io.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._io.close(fd)
