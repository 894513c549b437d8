"""Connection protection (PROTOCOL §1.0): a per-client-IP request budget with escalating bans,
checked for every HTTP request before routing and authentication.

Rules (config ``[rate_limit]``):
- off entirely when ``enable_connection_protection`` is false (``guard_for`` returns None);
- loopback clients (the resolved client IP of api/http.py ``client_ip`` is 127.0.0.0/8 or
  ``::1``) are never limited;
- every other IP has a token bucket of capacity ``max_requests_per_ip_per_sec`` refilled at
  that rate (api/rate_limit.py). An empty bucket is a *violation*: **429**
  ``RATE_LIMIT_EXCEEDED`` with ``Retry-After: 1``;
- every ``BAN_EVERY_VIOLATIONS``-th violation bans the IP for ``ban_duration_seconds`` *
  min(violations / 10, ``BAN_MULTIPLIER_MAX``); while banned every request is **429**
  ``IP_BANNED`` with ``Retry-After`` = the configured ban duration (as the reference does),
  and the bucket is not consulted.

The body-size rule of the same middleware is enforced by the routes that read bodies
(``read_body`` with ``request_body_limit_bytes`` or a smaller per-route limit).

Bounded memory: at most ``GUARD_IPS_MAX`` IPs are tracked in each table (buckets,
violation counts, bans); when a table is full the oldest entry is forgotten (a forgotten IP
starts afresh — the limiter fails open under a flood of distinct IPs rather than refusing
newcomers). Not thread-safe; safe on the one trio thread because nothing here awaits except
sending the reply.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .config import ConfigError, ServerConfig
from .errors import protection_error
from .http import Send, send_json
from .rate_limit import TokenBucketLimiter

BAN_EVERY_VIOLATIONS = 10  # PROTOCOL §1.0: every 10th violation bans ...
BAN_MULTIPLIER_MAX = 6  # ... for ban_duration * min(violations/10, 6)
GUARD_IPS_MAX = 1000  # the reference's per-IP cache holds 1,000 entries
RETRY_AFTER_SECONDS = 1  # a token comes back within a second at any allowed rate


@lru_cache(maxsize=4096)
def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


def _remember(table: dict[str, Any], key: str, value: Any) -> None:
    if key not in table and len(table) >= GUARD_IPS_MAX:
        del table[next(iter(table))]  # the oldest entry (dicts keep insertion order)
    table[key] = value


@dataclass(frozen=True, slots=True)
class Verdict:
    code: str  # "RATE_LIMIT_EXCEEDED" | "IP_BANNED"
    retry_after_seconds: int


class ConnectionGuard:
    """Per-IP request budget and bans; ``check(ip, now)`` with ``now`` in monotonic seconds."""

    def __init__(self, rate_per_sec: int, ban_duration_seconds: int) -> None:
        if rate_per_sec < 1 or ban_duration_seconds < 0:
            raise ValueError("rate_per_sec must be >= 1 and ban_duration_seconds >= 0")
        self.buckets = TokenBucketLimiter(rate_per_sec, rate_per_sec, keys_max=GUARD_IPS_MAX)
        self.ban_duration_seconds = ban_duration_seconds
        self.violations: dict[str, int] = {}
        self.banned_until: dict[str, float] = {}

    def check(self, ip: str, now: float) -> Verdict | None:
        """None when the request may proceed, else why not."""
        if _is_loopback(ip):
            return None
        until = self.banned_until.get(ip)
        if until is not None:
            if now < until:
                return Verdict("IP_BANNED", self.ban_duration_seconds)
            del self.banned_until[ip]
        if self.buckets.allow(ip, now):
            return None
        count = self.violations.get(ip, 0) + 1
        _remember(self.violations, ip, count)
        if count % BAN_EVERY_VIOLATIONS == 0:
            multiplier = min(count // BAN_EVERY_VIOLATIONS, BAN_MULTIPLIER_MAX)
            _remember(self.banned_until, ip, now + self.ban_duration_seconds * multiplier)
        return Verdict("RATE_LIMIT_EXCEEDED", RETRY_AFTER_SECONDS)

    async def refuse(self, ip: str, send: Send) -> bool:
        """Answers 429 and returns True when the request from ``ip`` must not proceed."""
        verdict = self.check(ip, time.monotonic())
        if verdict is None:
            return False
        status, body = protection_error(verdict.code, verdict.retry_after_seconds)
        retry = str(verdict.retry_after_seconds).encode()
        headers = [(b"retry-after", retry)]
        if verdict.code == "RATE_LIMIT_EXCEEDED":
            headers.append((b"x-ratelimit-reset", retry))
        await send_json(send, status, body, headers)
        return True


def guard_for(config: ServerConfig) -> ConnectionGuard | None:
    """The app's guard from ``[rate_limit]``; None when protection is disabled."""
    section = config.rate_limit
    if not section.enable_connection_protection:
        return None
    if section.max_requests_per_ip_per_sec < 1:
        raise ConfigError("rate_limit.max_requests_per_ip_per_sec must be at least 1 (or set "
                          "enable_connection_protection = false)")
    if section.ban_duration_seconds < 0:
        raise ConfigError("rate_limit.ban_duration_seconds must be >= 0")
    return ConnectionGuard(section.max_requests_per_ip_per_sec, section.ban_duration_seconds)
