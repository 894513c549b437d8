"""Named failpoints: places where a test can crash the process or fail an I/O step.

Every point is listed in ``REGISTRY`` (name -> where it sits), or ``UPPER_REGISTRY`` for
points in the engine and API, so crash tests can parametrize over all of them and a new
point gets its test automatically. A point costs one
truth test of an empty dict unless something is enabled.

Enable points with the environment variable ``SLUICE_FAILPOINTS`` (read at import), e.g.
``SLUICE_FAILPOINTS="wal.before_write=exit@40,file.before_rename=raise:ENOSPC"``, or from a
test with ``enable()``/``disable()``. Each item is ``name=action[@N]``.
Actions:
  ``exit``          ``os._exit(137)`` at once: the process dies as if SIGKILLed (buffers
                    unflushed).
  ``raise``         raise ``OSError(EIO)`` at that point, as a failing disk would.
  ``raise:ERRNO``   raise ``OSError`` with that errno name, one of ``RAISE_ERRNOS`` (a full
                    disk is ``raise:ENOSPC``).
``@N`` (N >= 1) arms the point from its N-th hit on: the first N-1 hits pass, so a server
process can start up (which itself crosses WAL and file points) and do real work first; every
hit from the N-th on acts (a full disk stays full). Without ``@N`` the first hit acts.
Threads: points fire in whichever thread runs the I/O step; hits are counted under a lock;
``enable`` must be called before the work starts.
"""

from __future__ import annotations

import errno
import os
import threading

REGISTRY: dict[str, str] = {
    "wal.before_write": "group commit: a batch is encoded, nothing written yet",
    "wal.after_write_before_fsync": "group commit: batch written to the page cache, not synced",
    "wal.after_fsync_before_ack": "group commit: batch durable, no waiter woken yet",
    "segment.before_rename": "segment roll: temp file zero-filled and synced, not yet renamed",
    "segment.after_rename_before_dir_fsync": "segment roll: renamed, directory not yet synced",
    "segment.after_roll": "segment roll: new segment durable, not yet written to",
    "file.before_rename": "atomic file replace: temp file written and synced, not renamed",
    "file.after_rename_before_dir_fsync": "atomic file replace: renamed, directory not synced",
    "retention.before_unlink": "retention: about to delete a whole old segment",
    "recovery.after_broken_copy": "recovery: torn tail copied aside, not yet zero-filled",
}

# Points in the layers above the log. tests/wal/crash drives the log alone and covers
# REGISTRY; each of these is crash-tested by its own layer (files.*:
# tests/api/test_files_crash.py, parametrized over this dict).
UPPER_REGISTRY: dict[str, str] = {
    "files.after_move_before_commit": "FILE upload: file moved into place and its folder "
                                      "synced, the row's WAL event not yet queued",
}

EXIT_CODE = 137
_ACTIONS = ("exit", "raise")
# Errno names ``raise:<NAME>`` accepts: the ones storage code must expect from a disk.
RAISE_ERRNOS = ("EIO", "ENOSPC", "EDQUOT", "EROFS")
_active: dict[str, tuple[str, int]] = {}  # name -> (action, hit number that arms it)
_hits: dict[str, int] = {}
_hits_lock = threading.Lock()


def enable(name: str, action: str, *, from_hit: int = 1) -> None:
    """Arms ``name`` with ``action`` from its ``from_hit``-th hit on (counted from now)."""
    if name not in REGISTRY and name not in UPPER_REGISTRY:
        raise ValueError(f"unknown failpoint {name!r}; known: "
                         f"{sorted(REGISTRY) + sorted(UPPER_REGISTRY)}")
    kind, _, errno_name = action.partition(":")
    if kind not in _ACTIONS or (errno_name and (kind != "raise"
                                                or errno_name not in RAISE_ERRNOS)):
        raise ValueError(f"unknown failpoint action {action!r}; known: {_ACTIONS}, "
                         f"raise:<one of {RAISE_ERRNOS}>")
    if from_hit < 1:
        raise ValueError(f"failpoint {name!r}: @N needs N >= 1, got {from_hit}")
    with _hits_lock:
        _hits[name] = 0
        _active[name] = (action, from_hit)


def disable(name: str | None = None) -> None:
    """Disables one point, or all of them when ``name`` is None."""
    with _hits_lock:
        if name is None:
            _active.clear()
        else:
            _active.pop(name, None)


def hit(name: str) -> None:
    """Marks that execution reached failpoint ``name``; acts if the point is enabled."""
    if not _active:
        return
    assert name in REGISTRY or name in UPPER_REGISTRY, name
    with _hits_lock:
        armed = _active.get(name)
        if armed is None:
            return
        _hits[name] += 1
        if _hits[name] < armed[1]:
            return
    kind, _, errno_name = armed[0].partition(":")
    if kind == "exit":
        os._exit(EXIT_CODE)
    code = getattr(errno, errno_name or "EIO")
    raise OSError(code, f"{os.strerror(code)} (failpoint {name})")


def parse_spec(spec: str) -> list[tuple[str, str, int]]:
    """``"name=action[@N],…"`` -> ``[(name, action, N)]`` (action defaults to ``exit``)."""
    parsed = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, rest = item.partition("=")
        action, _, count = (rest or "exit").partition("@")
        try:
            from_hit = int(count) if count else 1
        except ValueError:
            raise ValueError(f"failpoint {name!r}: bad hit number {count!r}") from None
        parsed.append((name, action, from_hit))
    return parsed


def _load_from_environment() -> None:
    for name, action, from_hit in parse_spec(os.environ.get("SLUICE_FAILPOINTS", "")):
        enable(name, action, from_hit=from_hit)


_load_from_environment()
