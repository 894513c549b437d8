"""Connection protection (PROTOCOL §1.0, api/protection.py): the per-IP request budget, the
escalating bans, the loopback exemption and the off switch. The guard is driven with explicit
``now`` values in-process, then over HTTP against the real server with a remote client
simulated by ``X-Forwarded-For`` from the loopback peer."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import ConfigError, ServerConfig
from api.protection import (
    BAN_EVERY_VIOLATIONS,
    BAN_MULTIPLIER_MAX,
    GUARD_IPS_MAX,
    ConnectionGuard,
    Verdict,
    guard_for,
)
from tests.api.auth_client import REMOTE, request
from tests.api.harness import running_server

LIMITED = Verdict("RATE_LIMIT_EXCEEDED", 1)
BANNED = Verdict("IP_BANNED", 300)


def test_protection__budget_violations_and_escalating_bans() -> None:
    guard = ConnectionGuard(rate_per_sec=2, ban_duration_seconds=300)
    ip, now = "203.0.113.7", 1000.0
    assert [guard.check(ip, now) for _ in range(3)] == [None, None, LIMITED]
    assert guard.check(ip, now + 0.5) is None  # one token back after half a second
    # Nine more violations: the tenth bans for 300 s.
    assert [guard.check(ip, now + 0.5) for _ in range(BAN_EVERY_VIOLATIONS - 1)] == \
        [LIMITED] * (BAN_EVERY_VIOLATIONS - 1)
    assert guard.check(ip, now + 0.5) == BANNED
    assert guard.check(ip, now + 300.49) == BANNED
    assert guard.check("203.0.113.8", now + 1) is None  # other addresses are not affected
    # After the ban: the 20th violation bans for twice as long.
    later = now + 300.5
    assert guard.check(ip, later) is None and guard.check(ip, later) is None
    assert [guard.check(ip, later) for _ in range(BAN_EVERY_VIOLATIONS)] == \
        [LIMITED] * BAN_EVERY_VIOLATIONS
    assert guard.check(ip, later + 599.9) == BANNED
    assert guard.check(ip, later + 600.1) is None


def test_protection__ban_multiplier_caps_at_six() -> None:
    guard = ConnectionGuard(rate_per_sec=1, ban_duration_seconds=10)
    ip, now = "198.51.100.1", 0.0
    for round_ in range(1, BAN_MULTIPLIER_MAX + 3):
        guard.check(ip, now)  # the one token of this round
        for _ in range(BAN_EVERY_VIOLATIONS):
            assert guard.check(ip, now) == Verdict("RATE_LIMIT_EXCEEDED", 1)
        duration = 10 * min(round_, BAN_MULTIPLIER_MAX)
        assert guard.check(ip, now + duration - 0.01) == Verdict("IP_BANNED", 10)
        now += duration + 1  # past the ban, with a full bucket again


def test_protection__loopback_exempt_memory_bounded_and_config() -> None:
    guard = ConnectionGuard(rate_per_sec=1, ban_duration_seconds=300)
    for ip in ("127.0.0.1", "127.8.9.1", "::1"):
        assert all(guard.check(ip, 0.0) is None for _ in range(50))
    for n in range(GUARD_IPS_MAX + 50):  # every address violates once
        ip = f"10.0.{n // 256}.{n % 256}"
        guard.check(ip, 0.0)
        guard.check(ip, 0.0)
    assert len(guard.violations) <= GUARD_IPS_MAX and len(guard.buckets) <= GUARD_IPS_MAX
    config = ServerConfig()
    assert guard_for(config) is not None
    config.rate_limit.enable_connection_protection = False
    assert guard_for(config) is None
    config.rate_limit.enable_connection_protection = True
    config.rate_limit.max_requests_per_ip_per_sec = 0
    with pytest.raises(ConfigError, match="max_requests_per_ip_per_sec"):
        guard_for(config)


async def test_protection__over_http_limit_then_ban(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        "[rate_limit]\nmax_requests_per_ip_per_sec = 1\nban_duration_seconds = 300\n")
    async with running_server(tmp_path) as server:
        replies = [await request(server, "GET", "/v1/api/auth/status", headers=REMOTE)
                   for _ in range(14)]
        assert replies[0].status == 403  # let through: status is localhost-only
        limited = [r for r in replies if r.status == 429 and r.json["error"] ==
                   "RATE_LIMIT_EXCEEDED"]
        banned = [r for r in replies if r.status == 429 and r.json["error"] == "IP_BANNED"]
        assert limited and banned, [r.status for r in replies]
        assert limited[0].header("retry-after") == "1"
        assert limited[0].header("x-ratelimit-reset") == "1"
        assert limited[0].json["retry_after_seconds"] == 1
        assert banned[0].header("retry-after") == "300"
        assert banned[0].json["retry_after_seconds"] == 300
        # Loopback is exempt, another address has its own budget.
        statuses = [(await request(server, "GET", "/health")).status for _ in range(5)]
        assert statuses == [200] * 5
        other = await request(server, "GET", "/health", headers={"X-Forwarded-For": "192.0.2.9"})
        assert other.status == 403  # passed the guard; health is localhost-only


async def test_protection__off_switch(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        "[rate_limit]\nmax_requests_per_ip_per_sec = 1\nenable_connection_protection = false\n")
    async with running_server(tmp_path) as server:
        statuses = {(await request(server, "GET", "/health", headers=REMOTE)).status
                    for _ in range(8)}
        assert statuses == {403}, statuses  # never 429
