"""The WAL's configuration: fsync policy and every limit, units last, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass

from .format import FRAME_HEADER_SIZE, RECORD_SIZE_LIMIT_BYTES, SEGMENT_HEADER_SIZE

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FsyncPolicy:
    """When appends become durable, and what an acknowledgment promises.

    ``always``         (default) each group-commit batch is written and ``fdatasync``ed
                       before any append in it returns: an acknowledged record survives
                       process crashes and power loss.
    ``interval:<ms>``  appends return once written to the OS page cache; the writer syncs at
                       most ``<ms>`` after the first unsynced write. Acknowledged records
                       survive a process crash; a power loss can lose roughly the last
                       ``<ms>`` of them (never a record in the middle: recovery keeps a prefix).
    ``none``           appends return once written to the page cache; syncs happen only when
                       a segment rolls and on clean close. Survives process crashes only.

    Storage assumption (as SQLite's POWERSAFE_OVERWRITE): a write torn by power loss damages
    only the bytes it was writing, never other bytes of the same sector. Each batch starts
    right after the previous one, often inside the same sector; storage that garbles a whole
    sector on a torn write could take the end of the previous, acknowledged batch with it.
    """

    kind: str
    interval_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        text = text.strip().lower()
        if text in ("always", "none"):
            return cls(text)
        name, _, value = text.partition(":")
        if name == "interval" and value.isdigit() and 1 <= int(value) <= 60_000:
            return cls("interval", int(value))
        raise ValueError(f"fsync policy must be 'always', 'none' or 'interval:<1-60000 ms>', "
                         f"not {text!r}")

    def __str__(self) -> str:
        return f"interval:{self.interval_ms}" if self.kind == "interval" else self.kind

    @property
    def acks_after_sync(self) -> bool:
        return self.kind == "always"


@dataclass(frozen=True, slots=True)
class WalConfig:
    fsync: FsyncPolicy = FsyncPolicy("always")
    # 64 MiB: big enough that rolls (a zero-fill + fsync) are rare, small enough that
    # retention frees space in useful steps and recovery reads one segment in well under 1 s.
    segment_size_max_bytes: int = 64 * MIB
    # One record (raw, before compression). Checked on append and before allocating on read;
    # a batch of rows bigger than this must be split by the caller.
    record_size_max_bytes: int = 16 * MIB
    # Records in one group-commit write. Bounds the latency one batch adds to the next.
    batch_records_max: int = 4096
    # Bytes in one group-commit write (~256 KiB-1 MiB is where fdatasync throughput flattens).
    batch_bytes_max: int = 4 * MIB
    # Appends queued for the writer before ``append`` waits (backpressure to callers).
    append_queue_max: int = 4096
    # Payloads at least this long are zstd-compressed when that makes them smaller; below it
    # the CPU cost outweighs the bytes saved.
    compress_min_bytes: int = 4096
    zstd_level: int = 3

    def __post_init__(self) -> None:
        positive = ("segment_size_max_bytes", "record_size_max_bytes", "batch_records_max",
                    "batch_bytes_max", "append_queue_max", "compress_min_bytes")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.record_size_max_bytes > RECORD_SIZE_LIMIT_BYTES:
            raise ValueError(f"record_size_max_bytes may be at most {RECORD_SIZE_LIMIT_BYTES}")
        smallest = SEGMENT_HEADER_SIZE + FRAME_HEADER_SIZE + self.record_size_max_bytes
        if self.segment_size_max_bytes < smallest:
            raise ValueError(f"segment_size_max_bytes must hold the segment header and one "
                             f"largest frame: at least {smallest}")
        if not 1 <= self.zstd_level <= 22:
            raise ValueError("zstd_level must be within 1..22")
        if not isinstance(self.fsync, FsyncPolicy):
            raise TypeError("fsync must be a FsyncPolicy (use FsyncPolicy.parse)")
