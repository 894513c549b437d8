"""The injected clock: the only way engine code learns the time.

``SystemClock`` reads the real clocks; tests pass ``ManualClock`` (wall time they set) and
run under ``trio.testing.MockClock`` for timers. No other engine module reads wall time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock Unix time in milliseconds (row timestamps, TTL, snowflake ids)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A wall clock that only moves when told to (tests)."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00:00Z
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        assert ms >= 0
        self._now_ms += ms

    def set(self, now_ms: int) -> None:
        self._now_ms = now_ms
