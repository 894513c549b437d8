"""The per-user query rate of ``POST /v1/api/sql`` (PROTOCOL §1.0 "Rate limiter (post-auth)",
§1.3 step 2): a token bucket of ``rate_limit.max_queries_per_sec`` per user, checked after
authentication and before the body is parsed.

The server runs with a rate of 1 query/s, so a burst of back-to-back requests must hit the
limit within a few requests (each takes milliseconds, the refill takes a second)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from api.app import query_rate_limiter
from api.config import ConfigError, ServerConfig
from engine.catalog import User
from tests.api.harness import Server, http_request, running_server
from tests.api.test_sql_route import ROOT, SECRET, token_for

BURST_TRIES = 6
LIMITED = {"status": "error", "results": [], "error": {
    "code": "RATE_LIMIT_EXCEEDED", "message": "Too many queries per second. Please slow down."}}


async def send(server: Server, token: str | None, body: bytes):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await http_request(server, "POST", "/v1/api/sql", headers, body)


async def until_limited(server: Server, token: str, body: bytes) -> list[int]:
    statuses = []
    for _ in range(BURST_TRIES):
        resp = await send(server, token, body)
        statuses.append(resp.status)
        if resp.status == 429:
            parsed = json.loads(resp.body)
            assert {k: v for k, v in parsed.items() if k != "took"} == LIMITED
            assert isinstance(parsed["took"], float)
            assert resp.headers["retry-after"] == "1"
            break
    return statuses


async def test_sql_rate_limit__per_user_bucket__429_then_refill(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n"
                                          "[rate_limit]\nmax_queries_per_sec = 1\n")
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        root, select = token_for(ROOT), b'{"sql": "SELECT 1 AS one"}'
        create = b'{"sql": "CREATE USER alice WITH PASSWORD \'pw-alice-1\' ROLE user"}'
        assert (await send(server, root, create)).status == 200
        await trio.sleep(1.2)  # one token refills per second
        statuses = await until_limited(server, root, select)
        assert statuses[0] == 200 and statuses[-1] == 429, statuses

        # Another user has their own bucket.
        alice = token_for(User("alice", "user"))
        assert (await send(server, alice, select)).status == 200
        # Authentication comes first: no token is 401, never 429.
        assert (await send(server, None, select)).status == 401
        # The limit is checked before the body is parsed: a malformed body from a limited
        # user is refused with 429 (400 only when a token happened to be available).
        statuses = await until_limited(server, root, b'{"sql": ')
        assert set(statuses) <= {400, 429} and statuses[-1] == 429, statuses

        await trio.sleep(1.2)  # one token refills per second
        assert (await send(server, root, select)).status == 200


def test_query_rate_limiter__config__zero_disables_negative_refused() -> None:
    config = ServerConfig()
    limiter = query_rate_limiter(config)
    assert limiter is not None and (limiter.rate_per_sec, limiter.burst) == (100, 100)
    config.rate_limit.max_queries_per_sec = 0
    assert query_rate_limiter(config) is None
    config.rate_limit.max_queries_per_sec = -1
    with pytest.raises(ConfigError, match="max_queries_per_sec"):
        query_rate_limiter(config)
