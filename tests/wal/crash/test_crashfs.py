"""Self-tests of the crash tools: CrashFS keeps what was synced and may lose only what was not;
FaultyFS fails exactly the k-th call. The WAL crash tests are only as good as these."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from tests.wal.crash.crashfs import CrashFS, FaultyFS

SEEDS = range(60)


def _durable_file(fs: CrashFS, path: Path, data: bytes) -> int:
    fd = fs.create_exclusive(path)
    fs.pwrite(fd, data, 0)
    fs.fsync(fd)
    fs.fsync_dir(path.parent)
    return fd


def test_crashfs__unsynced_write__never_changes_the_bytes_around_it(
        tmp_path: Path) -> None:
    # Synced 0xAA bytes, then an unsynced 0xBB write over the middle: outside it nothing changes.
    outcomes = set()
    for seed in SEEDS:
        root = tmp_path / str(seed)
        root.mkdir()
        fs = CrashFS(root / "stash")
        fd = _durable_file(fs, root / "f", b"\xaa" * 3000)
        fs.pwrite(fd, b"\xbb" * 1000, 1000)
        fs.crash(random.Random(seed))
        data = (root / "f").read_bytes()
        assert data[:1000] == data[2000:] == b"\xaa" * 1000, (seed, fs.crash_log)
        outcomes.add(data[1000:2000].count(0xBB))
    assert {0, 1000} <= outcomes, "some seeds should drop the write and some apply it"


def test_crashfs__atomic_sectors__every_sector_is_old_or_new(tmp_path: Path) -> None:
    # A 4-sector unsynced write over synced zeros: each 512-byte sector is all-old or all-new.
    for seed in SEEDS:
        root = tmp_path / str(seed)
        root.mkdir()
        fs = CrashFS(root / "stash", atomic_sectors=True)
        fd = _durable_file(fs, root / "f", bytes(2048))
        fs.pwrite(fd, b"\xcc" * 2048, 0)
        fs.crash(random.Random(seed))
        data = (root / "f").read_bytes()
        for start in range(0, 2048, 512):
            assert data[start : start + 512] in (bytes(512), b"\xcc" * 512), (seed, fs.crash_log)


def test_crashfs__unsynced_directory_operations__may_be_undone_in_order(tmp_path: Path) -> None:
    # create, rename and unlink without fsync_dir: a crash keeps a prefix of them, never a mix.
    seen = set()
    for seed in SEEDS:
        root = tmp_path / str(seed)
        (root / "d").mkdir(parents=True)
        fs = CrashFS(root / "stash")
        fs.close(_durable_file(fs, root / "d" / "old", b"old"))
        fs.close(fs.create_exclusive(root / "d" / "a"))
        fs.rename(root / "d" / "a", root / "d" / "b")
        fs.unlink(root / "d" / "old")
        fs.crash(random.Random(seed))
        names = tuple(sorted(os.listdir(root / "d")))
        assert names in {("old",), ("a", "old"), ("b", "old"), ("b",)}, (seed, names)
        seen.add(names)
    assert len(seen) == 4


def test_crashfs__after_power_loss__every_mutating_call_fails(tmp_path: Path) -> None:
    # The instance is dead after crash(): a late writer thread cannot touch the disk image.
    fs = CrashFS(tmp_path / "stash")
    fd = _durable_file(fs, tmp_path / "f", b"x")
    fs.crash(random.Random(1))
    with pytest.raises(OSError) as caught:
        fs.pwrite(fd, b"y", 0)
    assert caught.value.errno == errno.EIO
    fs.close(fd)  # a no-op: crash() closed it already
    assert (tmp_path / "f").read_bytes() == b"x"


def test_crashfs__process_kill__pending_writes_stay_until_power_loss(tmp_path: Path) -> None:
    # A killed process leaves its unsynced write in the "page cache"; restart() can read it.
    fs = CrashFS(tmp_path / "stash")
    fd = _durable_file(fs, tmp_path / "f", b"a" * 8)
    fs.pwrite(fd, b"b" * 8, 0)
    fs.kill_at_call(1, random.Random(2))
    with pytest.raises(OSError):
        fs.fdatasync(fd)
    fs.restart()
    assert (tmp_path / "f").read_bytes() == b"b" * 8


def test_faultyfs__fails_only_the_kth_call(tmp_path: Path) -> None:
    # Call 3 (the fsync) raises ENOSPC; calls before and after work and are all recorded.
    fs = FaultyFS(fail_at=3, error=errno.ENOSPC)
    fd = fs.create_exclusive(tmp_path / "f")
    fs.pwrite(fd, b"abc", 0)
    with pytest.raises(OSError) as caught:
        fs.fsync(fd)
    assert caught.value.errno == errno.ENOSPC
    fs.fsync(fd)
    fs.close(fd)
    assert [c.method for c in fs.calls] == ["create_exclusive", "pwrite", "fsync", "fsync"]
    assert fs.failed is not None and fs.failed.index == 3
    assert not fs.open_fds
