"""``FileIO`` doubles for crash and fault tests: ``CrashFS`` (power loss and process death on real
files) and ``FaultyFS`` (an ``OSError`` on the k-th call). Both sit on the seam in
``wal/_io.py``; nothing here monkeypatches ``os``.

CrashFS model
-------------
Every write reaches the real file at once, so the WAL's readers (which bypass the seam) see what
a page cache would show. Beside that, CrashFS remembers what is *not yet durable*:

* per file, each ``pwrite``/``fill_zeros`` since the file's last ``fdatasync``/``fsync``, with the
  bytes it overwrote (read before writing) and the file size before it;
* per directory, in order, each creation (``create_exclusive``, ``makedirs``), ``rename`` and
  ``unlink`` since that directory's last ``fsync_dir``. An unlinked file is moved to a stash
  directory outside the log and only deleted when the unlink becomes durable, so a power loss
  can bring it back. A ``fsync`` of a new file does not make its name durable (POSIX).

The compound helpers (``makedirs``, ``write_new_file_durably``, ``replace_atomically``) run
``FileIO``'s own code over these primitives, so what they choose to sync is what gets tested.

``crash(rng)`` rewrites the files into one possible post-power-loss state:

1. directories: a random prefix of each directory's pending operations survives (a journaling
   file system commits metadata in order); the rest are undone, newest first;
2. contents: the file's pending writes are undone newest first, which gives its durable image;
   then each is replayed oldest first with one fate: ``applied``, ``dropped``, ``torn`` (a prefix
   of the new bytes lands), ``sectors`` (each touched sector independently new, old or garbage)
   or ``garbage`` (every touched sector holds random bytes or zeros);
3. every descriptor is closed (releasing the directory lock, as process death does) and the
   instance is dead: each later mutating call raises ``OSError(EIO)`` and ``close`` does
   nothing. It is not used again.

Not modelled: the ``LOCK`` file's creation (``lock_directory``; its existence never matters).

Knobs: ``sector_size_bytes`` (512 default). ``fates`` restricts the fates drawn (all by
default). ``atomic_sectors`` forbids partial sectors: tears fall on sector boundaries and no
sector turns to garbage. ``powersafe_overwrite`` (default True, as SQLite's
``SQLITE_IOCAP_POWERSAFE_OVERWRITE``) confines garbage to the bytes a write covered; with False,
garbage fills whole touched sectors, including neighbouring bytes that were already durable.

Triggers: ``crash_at_call(n, rng)`` loses power *during* the n-th mutating call from now (or the
n-th call of one ``method``): the call's effect is recorded as pending (a sync does nothing),
``crash`` runs, and the call raises ``OSError(EIO)``. ``kill_at_call`` kills the process
instead: the call does not happen (a ``pwrite`` lands whole, or a random prefix of it, as when a
process dies inside its write loop), pending state is kept, and every mutating call raises until
``restart()`` (a new process on the same machine: the page cache still holds everything).

Thread safety: one lock serializes every call and ``crash``, so a crash requested from the trio
thread falls between two I/O calls of the writer's worker thread.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from wal._io import FileIO

SECTOR_SIZE_BYTES = 512
FATE_WEIGHTS = {"applied": 35, "dropped": 25, "torn": 15, "sectors": 15, "garbage": 10}
FATES = tuple(FATE_WEIGHTS)
MUTATING_METHODS = ("pwrite", "fill_zeros", "fdatasync", "fsync", "rename", "unlink",
                    "fsync_dir", "create_exclusive", "open_existing", "lock_directory")
_REAL = FileIO()  # does the real work; never counted, never faulty


def _norm(path: Path | str) -> Path:
    return Path(os.path.abspath(path))


def _put(buf: bytearray, offset: int, data: bytes) -> None:
    if offset > len(buf):
        buf.extend(bytes(offset - len(buf)))
    buf[offset : offset + len(data)] = data


@dataclass(slots=True)
class _Write:
    offset: int
    data: bytes
    old: bytes  # the bytes it replaced (shorter than data where it extended the file)
    old_size: int  # the file size before it

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(eq=False, slots=True)
class _File:
    path: Path  # current name (a stash path while an unlink is pending)
    pending: list[_Write] = field(default_factory=list)


@dataclass(slots=True)
class _Trigger:
    countdown: int  # matching calls left until it fires
    action: str  # "crash" or "kill"
    rng: random.Random
    method: str | None  # only calls of this method count; None: every mutating call


@dataclass(slots=True)
class _DirOp:
    kind: str  # "create", "mkdir", "rename" or "unlink"
    path: Path  # the name created, renamed to, or removed
    file: _File | None = None  # None for mkdir
    source: Path | None = None  # rename: the old name; unlink: the stash path


class CrashFS(FileIO):
    """Simulated power loss on real files in a test directory (see the module docstring)."""

    def __init__(self, stash_dir: Path, *, sector_size_bytes: int = SECTOR_SIZE_BYTES,
                 atomic_sectors: bool = False, powersafe_overwrite: bool = True,
                 fates: tuple[str, ...] = FATES) -> None:
        assert sector_size_bytes > 0
        assert set(fates) <= set(FATES), fates
        self.fates = tuple(f for f in fates if not (atomic_sectors and f == "garbage"))
        assert self.fates, "atomic sectors cannot turn to garbage"
        self.sector_size_bytes = sector_size_bytes
        self.atomic_sectors = atomic_sectors
        self.powersafe_overwrite = powersafe_overwrite
        self.calls = 0  # mutating calls performed so far
        self.crash_log: list[str] = []  # what crash() did, for failure messages
        self._lock = threading.Lock()
        self._stash = _norm(stash_dir)
        self._stash.mkdir(parents=True, exist_ok=True)
        self._stash_count = 0
        self._files: dict[Path, _File] = {}
        self._fds: dict[int, _File] = {}
        self._lock_fds: set[int] = set()
        self._dir_ops: dict[Path, list[_DirOp]] = {}
        self._trigger: _Trigger | None = None
        self._fired_rng: random.Random | None = None
        self._down: str | None = None  # "power lost" or "process killed"

    def __repr__(self) -> str:
        return (f"CrashFS(sector_size_bytes={self.sector_size_bytes}, atomic_sectors="
                f"{self.atomic_sectors}, powersafe_overwrite={self.powersafe_overwrite})")

    # ---- test controls -------------------------------------------------------------------

    @property
    def crashed(self) -> bool:
        return self._down == "power lost"

    @property
    def killed(self) -> bool:
        return self._down == "process killed"

    def crash_at_call(self, n: int, rng: random.Random, method: str | None = None) -> None:
        """Loses power during the n-th mutating call from now (of ``method``, if given)."""
        assert n > 0
        assert method is None or method in MUTATING_METHODS, method
        self._trigger = _Trigger(n, "crash", rng, method)

    def kill_at_call(self, n: int, rng: random.Random, method: str | None = None) -> None:
        """Kills the process at the n-th mutating call from now (see ``restart``)."""
        assert n > 0
        assert method is None or method in MUTATING_METHODS, method
        self._trigger = _Trigger(n, "kill", rng, method)

    @property
    def armed(self) -> bool:
        return self._trigger is not None

    def crash(self, rng: random.Random) -> None:
        """Loses power now: rewrites the files to a post-power-loss state; the instance dies."""
        with self._lock:
            assert not self.crashed, "power was already lost"
            self._crash_locked(rng)

    def restart(self) -> None:
        """A new process after ``kill_at_call`` fired: descriptors of the old one are closed;
        pending (unsynced) state stays, as in a page cache."""
        with self._lock:
            assert not self.crashed
            self._close_all_locked()
            self._down = None
            self._trigger = None

    # ---- the seam ------------------------------------------------------------------------

    def open_existing(self, path: Path) -> int:
        path = _norm(path)
        with self._lock:
            action = self._begin("open_existing")
            if action is not None:
                self._end(action, "open_existing")
            fd = _REAL.open_existing(path)
            self._fds[fd] = self._file(path)
            return fd

    def create_exclusive(self, path: Path) -> int:
        path = _norm(path)
        with self._lock:
            action = self._begin("create_exclusive")
            if action == "kill":
                self._end(action, "create_exclusive")
            fd = _REAL.create_exclusive(path)
            file = _File(path)
            self._files[path] = file
            self._fds[fd] = file
            self._add_dir_op(_DirOp("create", path, file))
            if action is not None:
                self._end(action, "create_exclusive")
            return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        with self._lock:
            action = self._begin("pwrite")
            data = bytes(data)
            if action == "kill":  # dies right after the write, or inside its write loop
                assert self._fired_rng is not None
                if self._fired_rng.random() < 0.5:
                    data = data[: self._fired_rng.randint(0, len(data))]
            self._write_locked(fd, data, offset)
            if action is not None:
                self._end(action, "pwrite")

    def fill_zeros(self, fd: int, offset: int, length: int) -> None:
        with self._lock:
            action = self._begin("fill_zeros")
            if action != "kill":
                self._write_locked(fd, bytes(length), offset)
            if action is not None:
                self._end(action, "fill_zeros")

    def fdatasync(self, fd: int) -> None:
        self._sync(fd, "fdatasync")

    def fsync(self, fd: int) -> None:
        self._sync(fd, "fsync")

    def close(self, fd: int) -> None:
        """Closes a descriptor this instance opened; a no-op after a crash or restart closed it
        (the number may belong to another file by then)."""
        with self._lock:
            if self._fds.pop(fd, None) is not None or fd in self._lock_fds:
                self._lock_fds.discard(fd)
                _REAL.close(fd)

    def lock_directory(self, path: Path) -> int:
        with self._lock:
            action = self._begin("lock_directory")
            if action is not None:
                self._end(action, "lock_directory")
            fd = _REAL.lock_directory(path)
            self._lock_fds.add(fd)
            return fd

    def rename(self, src: Path, dst: Path) -> None:
        src, dst = _norm(src), _norm(dst)
        assert src.parent == dst.parent, "CrashFS models renames inside one directory"
        with self._lock:
            action = self._begin("rename")
            if action != "kill":
                if not src.exists():
                    raise FileNotFoundError(errno.ENOENT, "no such file", str(src))
                if dst.exists():  # replacing: the old target is unlinked first
                    self._unlink_locked(dst)
                _REAL.rename(src, dst)
                file = self._files.pop(src, None) or _File(src)
                file.path = dst
                self._files[dst] = file
                self._add_dir_op(_DirOp("rename", dst, file, source=src))
            if action is not None:
                self._end(action, "rename")

    def unlink(self, path: Path) -> None:
        path = _norm(path)
        with self._lock:
            action = self._begin("unlink")
            if action != "kill":
                self._unlink_locked(path)
            if action is not None:
                self._end(action, "unlink")

    def fsync_dir(self, path: Path) -> None:
        path = _norm(path)
        with self._lock:
            action = self._begin("fsync_dir")
            if action is not None:
                self._end(action, "fsync_dir")
            if not path.is_dir():
                raise FileNotFoundError(errno.ENOENT, "no such directory", str(path))
            for op in self._dir_ops.pop(path, []):
                if op.kind == "unlink":
                    self._forget_stashed(op)

    def makedirs(self, path: Path) -> None:
        """Records each missing level as a pending creation in its parent, then lets
        ``FileIO.makedirs`` do the work, so its own choice of what to sync is what is tested."""
        path = _norm(path)
        with self._lock:
            if self._down is not None:
                raise OSError(errno.EIO, f"CrashFS: {self._down}; makedirs refused")
            for level in reversed([path, *path.parents]):
                if not level.exists():
                    self._add_dir_op(_DirOp("mkdir", level))
        super().makedirs(path)

    # ---- bookkeeping (call with the lock held) ---------------------------------------------

    def _begin(self, method: str) -> str | None:
        """Counts one mutating call; returns the trigger action when it fires at this call."""
        if self._down is not None:
            raise OSError(errno.EIO, f"CrashFS: {self._down}; {method} refused")
        self.calls += 1
        trigger = self._trigger
        if trigger is None or trigger.method not in (None, method):
            return None
        trigger.countdown -= 1
        if trigger.countdown > 0:
            return None
        self._trigger, self._fired_rng = None, trigger.rng
        return trigger.action

    def _end(self, action: str, method: str) -> NoReturn:
        assert self._fired_rng is not None
        if action == "crash":
            self._crash_locked(self._fired_rng)
            raise OSError(errno.EIO, f"CrashFS: power lost during call {self.calls} ({method})")
        self._down = "process killed"
        raise OSError(errno.EIO, f"CrashFS: process killed at call {self.calls} ({method})")

    def _sync(self, fd: int, method: str) -> None:
        with self._lock:
            action = self._begin(method)
            if action is not None:
                self._end(action, method)
            self._fds[fd].pending.clear()

    def _file(self, path: Path) -> _File:
        file = self._files.get(path)
        if file is None:  # existed before this instance: durable
            file = self._files[path] = _File(path)
        return file

    def _write_locked(self, fd: int, data: bytes, offset: int) -> None:
        if not data:
            return
        size = os.fstat(fd).st_size
        old = os.pread(fd, len(data), offset) if offset < size else b""
        self._fds[fd].pending.append(_Write(offset, data, old, size))
        _REAL.pwrite(fd, data, offset)

    def _unlink_locked(self, path: Path) -> None:
        self._stash_count += 1
        stash = self._stash / f"{self._stash_count}-{path.name}"
        _REAL.rename(path, stash)
        file = self._files.pop(path, None) or _File(path)
        file.path = stash
        self._files[stash] = file
        self._add_dir_op(_DirOp("unlink", path, file, source=stash))

    def _forget_stashed(self, op: _DirOp) -> None:
        assert op.source is not None
        self._files.pop(op.source, None)
        op.source.unlink(missing_ok=True)

    def _add_dir_op(self, op: _DirOp) -> None:
        self._dir_ops.setdefault(op.path.parent, []).append(op)

    def _close_all_locked(self) -> None:
        for fd in [*self._fds, *self._lock_fds]:
            _REAL.close(fd)
        self._fds.clear()
        self._lock_fds.clear()

    # ---- the crash ---------------------------------------------------------------------------

    def _crash_locked(self, rng: random.Random) -> None:
        self._down = "power lost"
        self._trigger = None
        self._close_all_locked()
        for directory in sorted(self._dir_ops, key=lambda p: len(p.parts), reverse=True):
            ops = self._dir_ops[directory]
            keep = rng.randint(0, len(ops))
            for op in reversed(ops[keep:]):
                self._undo(op)
            for op in ops[:keep]:
                if op.kind == "unlink":
                    self._forget_stashed(op)
            undone = ", ".join(f"{op.kind} {op.path.name}" for op in ops[keep:]) or "nothing"
            self.crash_log.append(f"{directory.name}/: {keep} of {len(ops)} directory "
                                  f"operations kept; undone: {undone}")
        self._dir_ops.clear()
        for file in list(self._files.values()):
            if file.pending and file.path.exists():
                self._rewrite(file, rng)

    def _undo(self, op: _DirOp) -> None:
        if op.kind == "mkdir":
            shutil.rmtree(op.path, ignore_errors=True)
            for path in [p for p in self._files if p.is_relative_to(op.path)]:
                del self._files[path]
            return
        assert op.file is not None
        current = op.source if op.kind == "unlink" else op.path
        assert op.file.path == current, (op, op.file.path)
        del self._files[current]
        if op.kind == "create":
            current.unlink()
            return
        restored = op.path if op.kind == "unlink" else op.source
        assert restored is not None
        os.rename(current, restored)
        op.file.path = restored
        self._files[restored] = op.file

    def _rewrite(self, file: _File, rng: random.Random) -> None:
        buf = bytearray(file.path.read_bytes())
        for write in reversed(file.pending):  # back to the durable image
            buf[write.offset : write.offset + len(write.old)] = write.old
            del buf[write.old_size :]
        for write in file.pending:
            self.crash_log.append(f"{file.path.name}: {self._replay(buf, write, rng)}")
        file.pending.clear()
        file.path.write_bytes(bytes(buf))

    def _replay(self, buf: bytearray, write: _Write, rng: random.Random) -> str:
        """Applies one pending write with a random fate; returns what it did."""
        fate = rng.choices(self.fates, [FATE_WEIGHTS[f] for f in self.fates])[0]
        label = f"write @{write.offset}+{len(write.data)} {fate}"
        if fate == "applied":
            _put(buf, write.offset, write.data)
        elif fate == "torn":
            cut = self._tear_point(write, rng)
            _put(buf, write.offset, write.data[:cut])
            label += f" after {cut} bytes"
        elif fate == "sectors":
            marks = []
            for lo, hi in self._sector_spans(write):
                choices = ("new", "old") if self.atomic_sectors else ("new", "old", "bad")
                choice = rng.choice(choices)
                if choice == "new":
                    _put(buf, lo, write.data[lo - write.offset : hi - write.offset])
                elif choice == "bad":
                    self._garble(buf, lo, hi, write, rng)
                marks.append(choice[0])
            label += " " + "".join(marks)
        elif fate == "garbage":
            for lo, hi in self._sector_spans(write):
                self._garble(buf, lo, hi, write, rng)
        return label

    def _sector_spans(self, write: _Write) -> list[tuple[int, int]]:
        """The parts of the write inside each sector it touches."""
        size = self.sector_size_bytes
        return [(max(s * size, write.offset), min((s + 1) * size, write.end))
                for s in range(write.offset // size, (write.end - 1) // size + 1)]

    def _tear_point(self, write: _Write, rng: random.Random) -> int:
        if not self.atomic_sectors:
            return rng.randint(0, len(write.data))
        size = self.sector_size_bytes
        first_boundary = (write.offset // size + 1) * size
        points = [0, len(write.data)]
        points += [b - write.offset for b in range(first_boundary, write.end, size)]
        return rng.choice(points)

    def _garble(self, buf: bytearray, lo: int, hi: int, write: _Write, rng: random.Random) -> None:
        if not self.powersafe_overwrite:  # the whole sector, durable neighbours included
            size = self.sector_size_bytes
            lo, hi = lo - lo % size, min(lo - lo % size + size, max(write.end, len(buf)))
        noise = bytes(hi - lo) if rng.random() < 0.5 else rng.randbytes(hi - lo)
        _put(buf, lo, noise)


@dataclass(frozen=True, slots=True)
class IoCall:
    index: int  # 1-based, over the instance's life
    method: str
    path: Path | None
    occurrence: int  # 1 for the first call of this method on a file of this name, 2 next ...

    @property
    def key(self) -> tuple[str, str, int]:
        """Names the call independently of the directory and of how concurrent calls on
        other files interleave with it (the WAL prepares spare segments in the background)."""
        return self.method, self.path.name if self.path else "", self.occurrence


class FaultyFS(FileIO):
    """Real file I/O that raises ``OSError(error)`` on one chosen mutating call.

    The call is the ``fail_at``-th, or the first whose ``IoCall.key`` equals ``fail_key``.
    Counted, each call once: the ``MUTATING_METHODS`` (the nine of the seam's first version plus
    ``lock_directory``, which creates ``LOCK``); compound helpers (``write_new_file_durably``,
    ``makedirs``) count the calls they make. Only that call fails unless ``sticky`` (then every
    later call fails too, a dead disk), so a test can see whether the WAL tries again. ``calls``
    records every counted call; ``open_fds`` maps each open descriptor to its path, to catch
    leaks. Thread-safe.
    """

    def __init__(self, fail_at: int | None = None, error: int = errno.EIO, *,
                 fail_key: tuple[str, str, int] | None = None, sticky: bool = False) -> None:
        self.fail_at = fail_at
        self.fail_key = fail_key
        self.error = error
        self.sticky = sticky
        self.calls: list[IoCall] = []
        self.failed: IoCall | None = None  # the first call that raised
        self.open_fds: dict[int, Path] = {}
        self._lock = threading.Lock()
        self._occurrences: dict[tuple[str, str], int] = {}

    def calls_after_failure(self, *methods: str, path: Path | None = None) -> list[IoCall]:
        assert self.failed is not None
        return [call for call in self.calls[self.failed.index :]
                if call.method in methods and (path is None or call.path == path)]

    def close_leaked(self) -> list[Path]:
        """Closes every descriptor still open; returns their paths."""
        leaked = list(self.open_fds.items())
        for fd, _ in leaked:
            self.close(fd)
        return [path for _, path in leaked]

    def _tick(self, method: str, path: Path | None) -> None:
        with self._lock:
            name = (method, path.name if path else "")
            occurrence = self._occurrences[name] = self._occurrences.get(name, 0) + 1
            call = IoCall(len(self.calls) + 1, method, path, occurrence)
            self.calls.append(call)
            chosen = call.index == self.fail_at or call.key == self.fail_key
            if not chosen and not (self.sticky and self.failed is not None):
                return
            if self.failed is None:
                self.failed = call
        name = errno.errorcode.get(self.error, str(self.error))
        raise OSError(self.error, f"injected {name} on I/O call {call.index} ({method} {path})")

    def open_existing(self, path: Path) -> int:
        self._tick("open_existing", _norm(path))
        fd = _REAL.open_existing(path)
        self.open_fds[fd] = _norm(path)
        return fd

    def create_exclusive(self, path: Path) -> int:
        self._tick("create_exclusive", _norm(path))
        fd = _REAL.create_exclusive(path)
        self.open_fds[fd] = _norm(path)
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        self._tick("pwrite", self.open_fds.get(fd))
        _REAL.pwrite(fd, data, offset)

    def fill_zeros(self, fd: int, offset: int, length: int) -> None:
        self._tick("fill_zeros", self.open_fds.get(fd))
        _REAL.fill_zeros(fd, offset, length)

    def fdatasync(self, fd: int) -> None:
        self._tick("fdatasync", self.open_fds.get(fd))
        _REAL.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._tick("fsync", self.open_fds.get(fd))
        _REAL.fsync(fd)

    def close(self, fd: int) -> None:
        self.open_fds.pop(fd, None)
        _REAL.close(fd)

    def lock_directory(self, path: Path) -> int:
        self._tick("lock_directory", _norm(path) / "LOCK")
        fd = _REAL.lock_directory(path)
        self.open_fds[fd] = _norm(path) / "LOCK"
        return fd

    def rename(self, src: Path, dst: Path) -> None:
        self._tick("rename", _norm(dst))
        _REAL.rename(src, dst)

    def unlink(self, path: Path) -> None:
        self._tick("unlink", _norm(path))
        _REAL.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        self._tick("fsync_dir", _norm(path))
        _REAL.fsync_dir(path)
