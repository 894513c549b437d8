"""The WAL's exception family: one root, each error carrying where it happened."""

from __future__ import annotations

from pathlib import Path


class WalError(Exception):
    """Root of every error the WAL raises."""


class WalCorruptionError(WalError):
    """Damage that recovery must not repair: the log refuses to open.

    Carries the segment file, the byte offset inside it and a short reason, so an operator
    can look at exactly that place (``sluice wal inspect``).
    """

    def __init__(self, segment_path: Path | str, offset: int, reason: str) -> None:
        self.segment_path = Path(segment_path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.segment_path} at byte {offset}: {reason}")


class WalLockedError(WalError):
    """Another open WAL (in this or another process) holds the directory's lock."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        super().__init__(f"{self.directory} is already open by another writer (LOCK is held)")


class WalClosedError(WalError):
    """The WAL was closed; no more appends are accepted."""


class WalPoisonedError(WalError):
    """A write or fsync failed earlier; the WAL acknowledges nothing more until reopened.

    ``__cause__`` is the original ``OSError``. An fsync is never retried on the same file
    (after a failed fsync the kernel may have dropped the dirty pages, so a retry could
    report success for data that is gone).
    """


class WalIOError(WalError):
    """The write or fsync of the caller's batch failed; the records are not durable.

    ``__cause__`` is the ``OSError``. The WAL is poisoned from this point on.
    """


class RecordTooLargeError(WalError, ValueError):
    """A payload is larger than ``WalConfig.record_size_max_bytes``."""

    def __init__(self, size_bytes: int, max_bytes: int) -> None:
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes
        super().__init__(f"record of {size_bytes} bytes exceeds record_size_max_bytes={max_bytes}")
