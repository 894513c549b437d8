"""Named failpoints: places where a test can crash the process or fail an I/O step.

Every point is listed in ``REGISTRY`` (name -> where it sits), so crash tests can
parametrize over all of them and a new point gets its test automatically. A point costs one
truth test of an empty dict unless something is enabled.

Enable points with the environment variable ``SLUICE_FAILPOINTS`` (read at import), e.g.
``SLUICE_FAILPOINTS="wal.before_fsync=exit"``, or from a test with ``enable()``/``disable()``.
Actions:
  ``exit``   ``os._exit(137)`` at once: the process dies as if SIGKILLed (buffers unflushed).
  ``raise``  raise ``OSError(EIO)`` at that point, as a failing disk would.
Threads: points fire in whichever thread runs the I/O step; ``enable`` is not thread-safe and
must be called before the work starts.
"""

from __future__ import annotations

import errno
import os

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

EXIT_CODE = 137
_ACTIONS = ("exit", "raise")
_active: dict[str, str] = {}


def enable(name: str, action: str) -> None:
    if name not in REGISTRY:
        raise ValueError(f"unknown failpoint {name!r}; known: {sorted(REGISTRY)}")
    if action not in _ACTIONS:
        raise ValueError(f"unknown failpoint action {action!r}; known: {_ACTIONS}")
    _active[name] = action


def disable(name: str | None = None) -> None:
    """Disables one point, or all of them when ``name`` is None."""
    if name is None:
        _active.clear()
    else:
        _active.pop(name, None)


def hit(name: str) -> None:
    """Marks that execution reached failpoint ``name``; acts if the point is enabled."""
    if not _active:
        return
    assert name in REGISTRY, name
    action = _active.get(name)
    if action == "exit":
        os._exit(EXIT_CODE)
    if action == "raise":
        raise OSError(errno.EIO, f"failpoint {name}")


def _load_from_environment() -> None:
    spec = os.environ.get("SLUICE_FAILPOINTS", "").strip()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        enable(name, action or "exit")


_load_from_environment()
