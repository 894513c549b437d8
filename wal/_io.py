"""The file-I/O seam: the only module in ``wal/`` that writes, syncs, renames or deletes.

``FileIO`` is a small synchronous interface. The WAL calls it from worker threads
(``trio.to_thread.run_sync``) and from synchronous recovery. Tests substitute a subclass that
simulates power loss (dropping unsynced writes) or fails the k-th call, so no test has to
monkeypatch ``os``. Reads are not part of the seam: readers open files normally and see
whatever the (possibly simulated) disk holds.

Thread safety: an instance holds no mutable state; concurrent calls on different file
descriptors are safe. The WAL guarantees a single writer per segment file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from . import failpoints

_ZERO_CHUNK_BYTES = 1024 * 1024  # zero-fill granularity when preallocating
LOCK_NAME = "LOCK"  # held by the one process that has the log open for writing


class FileIO:
    """Real file operations on the local filesystem (the production implementation)."""

    def open_existing(self, path: Path) -> int:
        """Opens an existing file for reading and writing; returns the descriptor."""
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def create_exclusive(self, path: Path) -> int:
        """Creates a new empty file (fails if it exists); returns the descriptor."""
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        """Writes all of ``data`` at ``offset`` (loops over short writes)."""
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written

    def fill_zeros(self, fd: int, offset: int, length: int) -> None:
        """Writes ``length`` zero bytes at ``offset``: real blocks, not a sparse hole, so
        later overwrites do not have to allocate (measured 1.4-1.8x more syncs/s)."""
        zeros = bytes(min(length, _ZERO_CHUNK_BYTES))
        end = offset + length
        while offset < end:
            chunk = min(len(zeros), end - offset)
            self.pwrite(fd, zeros[:chunk] if chunk < len(zeros) else zeros, offset)
            offset += chunk

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        """Atomically renames ``src`` to ``dst`` (durable only after ``fsync_dir``)."""
        os.rename(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        """Makes creations, renames and deletions inside directory ``path`` durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_new_file_durably(self, path: Path, data: bytes) -> None:
        """Creates ``path`` with ``data``, fsyncs it and its directory."""
        fd = self.create_exclusive(path)
        try:
            self.pwrite(fd, data, 0)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.fsync_dir(path.parent)

    def lock_directory(self, path: Path) -> int:
        """Takes an exclusive, non-blocking ``flock`` on ``path/LOCK``; returns the descriptor
        that holds it (closing it releases the lock; so does process death).

        Raises ``BlockingIOError`` if another open log (any process) holds it.
        """
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def replace_atomically(self, path: Path, data: bytes) -> None:
        """Durably replaces (or creates) ``path`` with ``data``: temp file -> fsync -> rename
        -> fsync directory. A crash leaves either the old file or the new one, plus possibly
        a ``<name>.tmp`` that readers ignore and owners delete.
        """
        temp = path.with_name(path.name + ".tmp")
        if temp.exists():
            self.unlink(temp)
        fd = self.create_exclusive(temp)
        try:
            self.pwrite(fd, data, 0)
            self.fsync(fd)
        finally:
            self.close(fd)
        failpoints.hit("file.before_rename")
        self.rename(temp, path)
        failpoints.hit("file.after_rename_before_dir_fsync")
        self.fsync_dir(path.parent)

    def makedirs(self, path: Path) -> None:
        """Creates ``path`` and missing parents, then syncs the parent directory — also when
        ``path`` exists: a crashed process may have created it without that sync."""
        if not path.is_dir():
            os.makedirs(path, exist_ok=True)
        self.fsync_dir(path.parent)
