"""The generic token-bucket limiter (api/rate_limit.py): refill, burst, retry-after, and the
bounded key table. Time is passed explicitly, so these tests never sleep."""

from __future__ import annotations

import pytest

from api.rate_limit import KEYS_MAX_DEFAULT, TokenBucketLimiter


def take(limiter: TokenBucketLimiter, key: str, now: float, n: int) -> list[bool]:
    return [limiter.allow(key, now) for _ in range(n)]


def test_rate_limit__burst_then_refuse__at_one_instant() -> None:
    limiter = TokenBucketLimiter(rate_per_sec=2, burst=3)
    assert take(limiter, "alice", 10.0, 5) == [True, True, True, False, False]


def test_rate_limit__refill__one_token_per_interval() -> None:
    # 2 tokens/s: after the burst is spent, half a second buys exactly one more request.
    limiter = TokenBucketLimiter(rate_per_sec=2, burst=2)
    assert take(limiter, "a", 0.0, 3) == [True, True, False]
    assert take(limiter, "a", 0.25, 1) == [False]
    assert take(limiter, "a", 0.5, 2) == [True, False]


def test_rate_limit__refill__capped_at_burst_after_long_idle() -> None:
    limiter = TokenBucketLimiter(rate_per_sec=10, burst=2)
    take(limiter, "a", 0.0, 2)
    assert take(limiter, "a", 1_000.0, 3) == [True, True, False]


def test_rate_limit__keys__are_independent() -> None:
    limiter = TokenBucketLimiter(rate_per_sec=1, burst=1)
    assert take(limiter, "alice", 0.0, 2) == [True, False]
    assert take(limiter, "bob", 0.0, 1) == [True]


def test_rate_limit__retry_after__time_to_next_token() -> None:
    limiter = TokenBucketLimiter(rate_per_sec=4, burst=1)
    assert limiter.retry_after_seconds("a", 0.0) == 0.0  # unknown key: a full bucket
    assert limiter.allow("a", 0.0)
    assert not limiter.allow("a", 0.0)
    assert limiter.retry_after_seconds("a", 0.0) == pytest.approx(0.25)
    assert limiter.retry_after_seconds("a", 0.1) == pytest.approx(0.15)
    assert limiter.retry_after_seconds("a", 0.25) == 0.0


def test_rate_limit__clock_goes_backwards__no_refund_and_no_debt() -> None:
    limiter = TokenBucketLimiter(rate_per_sec=1, burst=1)
    assert limiter.allow("a", 5.0)
    assert not limiter.allow("a", 4.0)  # an earlier "now" refills nothing
    assert limiter.allow("a", 6.0)  # ... and did not push the next token further away


def test_rate_limit__refused_call__takes_nothing() -> None:
    # Hammering an empty bucket must not delay the next token.
    limiter = TokenBucketLimiter(rate_per_sec=1, burst=1)
    assert limiter.allow("a", 0.0)
    assert take(limiter, "a", 0.5, 100) == [False] * 100
    assert limiter.allow("a", 1.0)


def test_rate_limit__keys_max__full_buckets_evicted_first() -> None:
    # At the limit, buckets that have refilled are forgotten; busy ones keep their debt.
    limiter = TokenBucketLimiter(rate_per_sec=1, burst=1, keys_max=4)
    for key in ("idle1", "idle2", "idle3"):
        limiter.allow(key, 0.0)
    limiter.allow("busy", 9.5)
    assert len(limiter) == 4
    assert limiter.allow("new", 10.0)
    assert len(limiter) == 2  # busy + new; the idle three were full again
    assert not limiter.allow("busy", 10.0)


def test_rate_limit__keys_max__flood_of_busy_keys__bounded_and_oldest_dropped() -> None:
    limiter = TokenBucketLimiter(rate_per_sec=1, burst=1, keys_max=64)
    for i in range(1_000):
        assert limiter.allow(f"k{i}", 0.0)
        assert len(limiter) <= 64
    # The most recent key is still tracked (refused), the first ones were forgotten.
    assert not limiter.allow("k999", 0.0)
    assert limiter.allow("k0", 0.0)


@pytest.mark.parametrize(("rate", "burst", "keys_max"), [
    (0, 1, 10), (-1, 1, 10), (1, 0.5, 10), (1, 1, 0),
])
def test_rate_limit__bad_arguments__value_error(rate: float, burst: float,
                                                keys_max: int) -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate_per_sec=rate, burst=burst, keys_max=keys_max)


def test_rate_limit__default_keys_max__is_named() -> None:
    assert TokenBucketLimiter(1, 1).keys_max == KEYS_MAX_DEFAULT
