"""The real FileIO seam: atomic replace and the directory lock."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from wal import FileIO, failpoints


def test_replace_atomically__creates_then_replaces(tmp_path: Path) -> None:
    io, path = FileIO(), tmp_path / "manifest.json"
    io.replace_atomically(path, b"one")
    io.replace_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_replace_atomically__fails_before_rename__old_content_kept(tmp_path: Path) -> None:
    # An I/O error between fsync and rename leaves the old file intact; a retry succeeds.
    io, path = FileIO(), tmp_path / "manifest.json"
    io.replace_atomically(path, b"old")
    failpoints.enable("file.before_rename", "raise")
    try:
        with pytest.raises(OSError):
            io.replace_atomically(path, b"new")
    finally:
        failpoints.disable()
    assert path.read_bytes() == b"old"
    io.replace_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert not path.with_name("manifest.json.tmp").exists()


def test_lock_directory__second_lock__blocked_until_released(tmp_path: Path) -> None:
    io = FileIO()
    fd = io.lock_directory(tmp_path)
    with pytest.raises(BlockingIOError):
        io.lock_directory(tmp_path)
    io.close(fd)
    io.close(io.lock_directory(tmp_path))


def test_failpoints__unknown_name_or_action__rejected() -> None:
    with pytest.raises(ValueError, match="unknown failpoint"):
        failpoints.enable("no.such.point", "exit")
    with pytest.raises(ValueError, match="action"):
        failpoints.enable("wal.before_write", "explode")


def test_failpoints__raise_errno_from_nth_hit__earlier_hits_pass_later_all_raise() -> None:
    # "raise:ENOSPC@3": hits 1 and 2 pass, the 3rd and every later one raise ENOSPC (a disk
    # stays full); the spec parser reads the same form from SLUICE_FAILPOINTS.
    assert failpoints.parse_spec("wal.before_write=raise:ENOSPC@3, file.before_rename") == [
        ("wal.before_write", "raise:ENOSPC", 3), ("file.before_rename", "exit", 1)]
    failpoints.enable("wal.before_write", "raise:ENOSPC", from_hit=3)
    try:
        failpoints.hit("wal.before_write")
        failpoints.hit("wal.before_write")
        for _ in range(2):
            with pytest.raises(OSError) as caught:
                failpoints.hit("wal.before_write")
            assert caught.value.errno == errno.ENOSPC
            assert "failpoint wal.before_write" in str(caught.value)
    finally:
        failpoints.disable()
    failpoints.hit("wal.before_write")  # disabled: passes


def test_failpoints__bad_errno_or_hit_number__rejected() -> None:
    with pytest.raises(ValueError, match="action"):
        failpoints.enable("wal.before_write", "raise:EWHATEVER")
    with pytest.raises(ValueError, match="action"):
        failpoints.enable("wal.before_write", "exit:EIO")
    with pytest.raises(ValueError, match="N >= 1"):
        failpoints.enable("wal.before_write", "exit", from_hit=0)
    with pytest.raises(ValueError, match="hit number"):
        failpoints.parse_spec("wal.before_write=exit@soon")
