"""A token-bucket rate limiter keyed by a string (a user id, a client IP, ...).

Contract:
- ``TokenBucketLimiter(rate_per_sec, burst, keys_max=...)``: every key owns a bucket of
  capacity ``burst`` tokens that refills at ``rate_per_sec`` tokens per second. A key that
  was never seen starts with a full bucket.
- ``allow(key, now)`` takes one token and returns ``True``, or returns ``False`` (taking
  nothing) when the bucket holds less than one token.
- ``retry_after_seconds(key, now)`` says how long until ``allow`` would succeed (``0.0`` if
  it would succeed now). Callers that answer 429 use it for ``Retry-After``.
- ``now`` is passed in by the caller, in seconds, from any monotonic clock (e.g.
  ``time.monotonic()``); tests pass plain numbers. A ``now`` earlier than the last one seen
  for a key is treated as "no time passed" (never a refund, never a negative refill).

Bounded memory: at most ``keys_max`` buckets are kept. When a new key arrives and the table
is full, buckets that have refilled completely are dropped first (forgetting them changes no
answer: an absent key and a full bucket behave alike). If that does not free at least
1/8 of the table, the oldest-created buckets are dropped until it does, so a flood of
distinct keys costs amortised O(1) per new key. Dropping a bucket that was not yet full
forgives that key's debt: under a flood of more than ``keys_max`` distinct keys the limiter
fails open for the evicted keys rather than refusing unknown ones (refusing would let one
flooder lock out every new user).

Cost of ``allow`` on a known key: one dict lookup and a few float operations; nothing else
is allocated.

Thread/task safety: not thread-safe. Within one trio thread it is safe without a lock,
because ``allow`` never awaits.
"""

from __future__ import annotations

# Why 10,000: a bucket costs ~150 bytes (dict slot + a two-float list), so the table stays
# around 1.5 MB, and a single server sees far fewer distinct active users/IPs per refill
# period. The reference keeps 1,000 per-IP entries; we keep more because a key is also a user.
KEYS_MAX_DEFAULT = 10_000

# When the table is full, evict until at most this fraction of ``keys_max`` remains, so a
# sweep (O(n)) happens at most once per keys_max/8 new keys.
_KEEP_FRACTION_AFTER_SWEEP = 7 / 8


class TokenBucketLimiter:
    """Per-key token buckets; see the module docstring for the contract."""

    __slots__ = ("_buckets", "burst", "keys_max", "rate_per_sec")

    def __init__(self, rate_per_sec: float, burst: float,
                 keys_max: int = KEYS_MAX_DEFAULT) -> None:
        """Raises ``ValueError`` for a non-positive rate, a burst under one token, or a
        ``keys_max`` under one."""
        if not rate_per_sec > 0:
            raise ValueError(f"rate_per_sec must be > 0, got {rate_per_sec!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1 token, got {burst!r}")
        if keys_max < 1:
            raise ValueError(f"keys_max must be >= 1, got {keys_max!r}")
        self.rate_per_sec = float(rate_per_sec)
        self.burst = float(burst)
        self.keys_max = keys_max
        # key -> [tokens, updated_at]; a list (not a dataclass) keeps the hot path to one
        # lookup and two item writes.
        self._buckets: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> bool:
        """Take one token from ``key``'s bucket; ``False`` (nothing taken) if it is empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.keys_max:
                self._make_room(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return True
        tokens, updated_at = bucket
        if now > updated_at:
            tokens += (now - updated_at) * self.rate_per_sec
            if tokens > self.burst:
                tokens = self.burst
            bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def retry_after_seconds(self, key: str, now: float) -> float:
        """Seconds until ``allow(key, ...)`` would succeed; ``0.0`` if it would now."""
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            return 0.0
        return (1.0 - tokens) / self.rate_per_sec

    def _tokens(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        tokens, updated_at = bucket
        if now > updated_at:
            tokens += (now - updated_at) * self.rate_per_sec
        return min(tokens, self.burst)

    def _make_room(self, now: float) -> None:
        # First forget buckets that are full again (no answer changes), then, if the table
        # is still too full, the oldest-created ones (dicts keep insertion order).
        full = [key for key in self._buckets if self._tokens(key, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        keep = int(self.keys_max * _KEEP_FRACTION_AFTER_SWEEP)
        excess = len(self._buckets) - min(keep, self.keys_max - 1)
        if excess > 0:
            for key in list(self._buckets)[:excess]:
                del self._buckets[key]
        assert len(self._buckets) < self.keys_max
