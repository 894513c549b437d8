"""A connection's outgoing queue: bounded for live changes, never blocking the producer.

``Outbox(capacity)`` is what the commit path hands live changes to (``offer``) and what the
connection's single writer task drains (``get``). Why not a trio memory channel: the commit
path must never wait, and when a change does not fit, the subscription is dropped with an
error that must still reach the client — so control messages (acks, pages, errors, close)
go in with ``put`` even when the change budget is used up. Control messages are bounded by
their producers (one reader task per connection, rate-limited; one error per subscription).

Ordering: one FIFO for everything, so a subscription's ack, pages and changes leave in the
order they were queued.

Task safety: trio thread only. ``offer``/``put`` never checkpoint; ``get`` is the only
awaiting call and is meant for exactly one task (the writer). ``close`` wakes it with
``OutboxClosed``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import trio


class OutboxClosed(Exception):
    """The connection is going away; nothing more will be delivered."""


class Outbox:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[tuple[bool, Any]] = deque()  # (counts against capacity, item)
        self._changes = 0  # queued items that count against the capacity
        self._lot = trio.lowlevel.ParkingLot()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Any) -> bool:
        """Queues a live change; False (nothing queued) when ``capacity`` changes wait."""
        if self.closed:
            return True  # nobody will read it: dropping is the same as delivering
        if self._changes >= self.capacity:
            return False
        self._items.append((True, item))
        self._changes += 1
        self._lot.unpark_all()
        return True

    def put(self, item: Any) -> None:
        """Queues a control message (ack, page, error, close) regardless of the budget."""
        if self.closed:
            return
        self._items.append((False, item))
        self._lot.unpark_all()

    async def get(self) -> Any:
        """The oldest item; waits while empty. Raises ``OutboxClosed`` once closed."""
        while not self._items:
            if self.closed:
                raise OutboxClosed
            await self._lot.park()
        counted, item = self._items.popleft()
        if counted:
            self._changes -= 1
        return item

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._changes = 0
        self._lot.unpark_all()
