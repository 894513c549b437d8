"""Small helpers shared by WAL tests: tiny configurations and record bodies."""

from __future__ import annotations

from wal import WalConfig

# Small segments so tests roll often; record limit small enough to fit.
SMALL = WalConfig(segment_size_max_bytes=8192, record_size_max_bytes=2048,
                  compress_min_bytes=512)


def record(i: int, size: int = 24) -> bytes:
    """A deterministic, self-describing record body for index ``i``."""
    head = f"rec-{i:08d}:".encode()
    return (head + bytes((i * 7 + k) % 251 for k in range(max(0, size - len(head)))))[:max(size, len(head))]
