"""The verified-token cache (``api.auth.VERIFIED_TOKENS``): bounded, least recently used out
first; a cached token still expires on time; a cached token of an altered or dropped user is
refused on its next request. In-process checks use a real engine's catalog; the revocation
check also runs against a real server, with the token used (so cached) before the change."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.auth import (
    LEEWAY_SECONDS,
    TOKEN_CACHE_ENTRIES_MAX,
    VERIFIED_TOKENS,
    AuthFailure,
    VerifiedTokens,
    decode_token,
    issue_token,
    verify_access_token,
)
from engine.catalog import User
from tests.api.auth_client import (
    ROOT_PASSWORD,
    auth_server,
    create_user,
    login_token,
    set_up,
    sql,
)
from tests.engine.harness import ROOT, engine_at
from tests.engine.harness import sql as engine_sql

SECRET = "token-cache-test-secret-0123456789"
NOW = 1_800_000_000.0


def token_for(user: User, now: float = NOW, expiry_hours: int = 1) -> str:
    return issue_token(SECRET, user, "access", now, expiry_hours)[0]


def test_token_cache__bounded__least_recently_used_evicted_first() -> None:
    cache = VerifiedTokens(max_entries=3)
    for name in ("a", "b", "c"):
        cache.put(SECRET, name, {"sub": name})
    assert cache.get(SECRET, "a") == {"sub": "a"}  # "a" is now the most recently used
    cache.put(SECRET, "d", {"sub": "d"})
    assert len(cache) == 3
    assert cache.get(SECRET, "b") is None  # the least recently used went out
    assert [cache.get(SECRET, k) is not None for k in ("a", "c", "d")] == [True] * 3
    assert cache.get("another-secret", "a") is None  # keyed by secret and token
    with pytest.raises(ValueError, match="at least 1"):
        VerifiedTokens(max_entries=0)


def test_token_cache__default_bound__never_exceeded() -> None:
    VERIFIED_TOKENS.clear()
    for i in range(TOKEN_CACHE_ENTRIES_MAX + 10):
        decode_token(SECRET, token_for(User(f"u{i}", "user")), NOW)
    assert len(VERIFIED_TOKENS) == TOKEN_CACHE_ENTRIES_MAX
    VERIFIED_TOKENS.clear()


def test_token_cache__cached_token__expires_on_time() -> None:
    token = token_for(User("carol", "user"))
    exp = NOW + 3600
    assert decode_token(SECRET, token, NOW)["sub"] == "carol"
    assert VERIFIED_TOKENS.get(SECRET, token) is not None  # the next call is a cache hit
    assert decode_token(SECRET, token, exp + LEEWAY_SECONDS)["sub"] == "carol"
    with pytest.raises(AuthFailure) as caught:
        decode_token(SECRET, token, exp + LEEWAY_SECONDS + 1)
    assert caught.value.code == "TOKEN_EXPIRED"
    assert VERIFIED_TOKENS.get(SECRET, token) is None  # an expired token is dropped


def test_token_cache__forged_and_failing_tokens__never_cached() -> None:
    token = token_for(User("carol", "user"))
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(AuthFailure):
        decode_token(SECRET, forged, NOW)
    assert VERIFIED_TOKENS.get(SECRET, forged) is None
    future = token_for(User("carol", "user"), now=NOW + 3600)  # issued in the future
    with pytest.raises(AuthFailure):
        decode_token(SECRET, future, NOW)
    assert VERIFIED_TOKENS.get(SECRET, future) is None
    with pytest.raises(AuthFailure):  # the wrong secret does not reuse the entry
        decode_token("other-secret-0123456789abcdefghijklmnop", token, NOW)


def test_token_cache__claims_returned__are_the_callers_own() -> None:
    token = token_for(User("carol", "user"))
    decode_token(SECRET, token, NOW)["sub"] = "mallory"
    assert decode_token(SECRET, token, NOW)["sub"] == "carol"


async def test_token_cache__role_change_and_drop__revoke_cached_tokens(tmp_path: Path
                                                                       ) -> None:
    # verify_access_token against a real catalog: cached before each change, refused after.
    async with engine_at(tmp_path) as engine:
        await engine_sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'Carol-pw-1' ROLE user")
        user = engine.catalog.live_user("carol")
        assert user is not None
        token = token_for(user)
        assert verify_access_token(SECRET, token, engine.catalog, NOW).user_id == "carol"
        assert VERIFIED_TOKENS.get(SECRET, token) is not None
        await engine_sql(engine, ROOT, "ALTER USER carol SET ROLE service")
        with pytest.raises(AuthFailure, match="role changed"):
            verify_access_token(SECRET, token, engine.catalog, NOW)
        user = engine.catalog.live_user("carol")
        assert user is not None
        token = token_for(user)
        assert verify_access_token(SECRET, token, engine.catalog, NOW).role == "service"
        await engine_sql(engine, ROOT, "ALTER USER carol SET PASSWORD 'Carol-pw-2'")
        with pytest.raises(AuthFailure, match="generation is stale"):
            verify_access_token(SECRET, token, engine.catalog, NOW)
        user = engine.catalog.live_user("carol")
        assert user is not None
        token = token_for(user)
        assert verify_access_token(SECRET, token, engine.catalog, NOW).user_id == "carol"
        await engine_sql(engine, ROOT, "DROP USER carol")
        with pytest.raises(AuthFailure, match="unknown or deleted"):
            verify_access_token(SECRET, token, engine.catalog, NOW)


async def test_token_cache__http__used_token_then_drop_user__next_request_401(tmp_path: Path
                                                                              ) -> None:
    # The same over HTTP: carol's token answers (and is cached), then is refused at once.
    async with auth_server(tmp_path) as server:
        await set_up(server)
        root = await login_token(server, "root", ROOT_PASSWORD)
        await create_user(server, root, "carol", "Carol-pw-1")
        carol = await login_token(server, "carol", "Carol-pw-1")
        for _ in range(2):
            assert (await sql(server, carol, "SELECT 1")).status == 200
        assert (await sql(server, root, "DROP USER carol")).status == 200
        reply = await sql(server, carol, "SELECT 1")
        assert reply.status == 401
        assert reply.json["error"]["code"] == "INVALID_CREDENTIALS"
