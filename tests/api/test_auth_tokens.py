"""Tokens over HTTP (PROTOCOL §1.2, §2.4-§2.6): refresh, me, logout; access vs refresh
tokens; expired, forged, ``alg: none`` and foreign-issuer tokens; Basic auth; and tokens that
stop working when their user is altered or dropped. Real server; tokens are minted with
``api.auth.issue_token`` and the server's secret where a test needs one it cannot log in for
(an expired token is minted with a ``now`` in the past)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jwt

from api.auth import issue_token
from engine.catalog import User
from tests.api.auth_client import (
    ROOT_PASSWORD,
    SECRET,
    Reply,
    auth_server,
    create_user,
    login,
    login_token,
    request,
    set_up,
    sql,
)

REFRESH = "/v1/api/auth/refresh"
ME = "/v1/api/auth/me"
LOGOUT = "/v1/api/auth/logout"
CAROL = User("carol", "user")  # as created: role user, token generation 0


def unauthorized(message: str) -> tuple[int, dict[str, str]]:
    return 401, {"error": "unauthorized", "message": message}


def answer(reply: Reply) -> tuple[int, dict]:
    return reply.status, reply.json


def sql_error(reply: Reply) -> tuple[int, str]:
    assert reply.json["status"] == "error"
    return reply.status, reply.json["error"]["code"]


async def test_auth_tokens__refresh_me_logout(tmp_path: Path) -> None:
    async with auth_server(tmp_path) as server:
        await set_up(server)
        root = await login_token(server, "root", ROOT_PASSWORD)
        await create_user(server, root, "carol", "Carol-pw-1")
        pair = (await login(server, "carol", "Carol-pw-1")).json
        access, refresh = pair["access_token"], pair["refresh_token"]
        # Refresh from a Bearer refresh token, then from the refresh cookie: a new pair.
        reply = await request(server, "POST", REFRESH, token=refresh)
        assert reply.status == 200 and reply.json["user"]["id"] == "carol"
        assert len(reply.set_cookies) == 2
        assert (await sql(server, reply.json["access_token"], "SELECT 1")).status == 200
        reply = await request(server, "POST", REFRESH,
                              headers={"Cookie": f"theme=dark; kalamdb_refresh={refresh}"})
        assert reply.status == 200 and reply.json["refresh_token"]
        # The refresh endpoint wants a refresh token, from its cookie or a Bearer header.
        assert answer(await request(server, "POST", REFRESH, token=access)) == unauthorized(
            "Refresh endpoint requires a refresh token")
        assert answer(await request(server, "POST", REFRESH, headers={
            "Cookie": f"kalamdb_auth={access}"})) == unauthorized("No refresh token found")
        assert answer(await request(server, "POST", REFRESH, headers={
            "Authorization": "Basic Y2Fyb2w6eA=="})) == unauthorized(
            "Authorization header must use Bearer token")
        assert answer(await request(server, "POST", REFRESH, token="not.a.jwt")) == \
            unauthorized("Invalid credentials")
        # A refresh token is not an access token, on /v1/api/sql or /me.
        assert sql_error(await sql(server, refresh, "SELECT 1")) == (401, "INVALID_CREDENTIALS")
        assert answer(await request(server, "GET", ME, token=refresh)) == unauthorized(
            "Invalid credentials")
        await _check_me(server, access)
        # Logout clears both cookies and always succeeds; tokens are stateless, so a copied
        # access token keeps working.
        reply = await request(server, "POST", LOGOUT)
        assert answer(reply) == (200, {"message": "Logged out successfully"})
        assert sorted(reply.set_cookies) == [
            f"{name}=; HttpOnly; SameSite=Strict; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
            for name in ("kalamdb_auth", "kalamdb_refresh")]
        assert (await request(server, "GET", ME, token=access)).status == 200


async def _check_me(server, access: str) -> None:
    expected = {"user": {"id": "carol", "role": "user", "email": None},
                "admin_ui_access": False}
    for headers in ({"Authorization": f"bearer {access}"}, {"Cookie": f"kalamdb_auth={access}"}):
        reply = await request(server, "GET", ME, headers=headers)
        assert reply.status == 200, headers
        body = reply.json
        assert {k: body["user"][k] for k in ("id", "role", "email")} == expected["user"]
        assert body["admin_ui_access"] is False
    assert answer(await request(server, "GET", ME)) == unauthorized("No auth token found")
    basic = "Basic " + base64.b64encode(b"carol:Carol-pw-1").decode()
    assert answer(await request(server, "GET", ME, headers={"Authorization": basic})) == \
        unauthorized("Authorization header must use Bearer token")
    assert answer(await request(server, "GET", ME, headers={"Authorization": "Bearer "})) == \
        unauthorized("Bearer token missing")
    # /v1/api/sql is Bearer-only: the cookie is not consulted, Basic is refused.
    reply = await request(server, "POST", "/v1/api/sql", {"sql": "SELECT 1"},
                          headers={"Cookie": f"kalamdb_auth={access}"})
    assert sql_error(reply) == (401, "MISSING_AUTHORIZATION")
    reply = await request(server, "POST", "/v1/api/sql", {"sql": "SELECT 1"},
                          headers={"Authorization": basic})
    assert sql_error(reply) == (401, "INVALID_CREDENTIALS")


async def test_auth_tokens__expired_forged_none_and_foreign_tokens(tmp_path: Path) -> None:
    async with auth_server(tmp_path) as server:
        await set_up(server)
        root = await login_token(server, "root", ROOT_PASSWORD)
        await create_user(server, root, "carol", "Carol-pw-1")
        now = time.time()
        good = issue_token(SECRET, CAROL, "access", now, 1)[0]
        assert (await sql(server, good, "SELECT 1")).status == 200  # the minting is right
        expired = issue_token(SECRET, CAROL, "access", now - 3 * 3600, 1)[0]
        expired_refresh = issue_token(SECRET, CAROL, "refresh", now - 30 * 3600, 1)[0]
        claims = jwt.decode(good, SECRET, algorithms=["HS256"])
        forged = jwt.encode(claims, "another-secret-" + "x" * 40, algorithm="HS256")
        unsigned = jwt.encode(claims, None, algorithm="none")
        foreign = jwt.encode(claims | {"iss": "evil.example"}, SECRET, algorithm="HS256")
        assert sql_error(await sql(server, expired, "SELECT 1")) == (401, "TOKEN_EXPIRED")
        for token in (forged, unsigned, foreign):
            assert sql_error(await sql(server, token, "SELECT 1")) == (
                401, "INVALID_CREDENTIALS")
        for token in (expired, forged, unsigned, foreign):
            assert answer(await request(server, "GET", ME, token=token)) == unauthorized(
                "Invalid credentials")
        assert answer(await request(server, "POST", REFRESH, token=expired_refresh)) == \
            unauthorized("Invalid credentials")


async def test_auth_tokens__alter_and_drop_user_invalidate_old_tokens(tmp_path: Path) -> None:
    async with auth_server(tmp_path) as server:
        await set_up(server)
        root = await login_token(server, "root", ROOT_PASSWORD)
        await create_user(server, root, "carol", "Carol-pw-1")
        # Password change: the old access and refresh tokens stop working.
        old = (await login(server, "carol", "Carol-pw-1")).json
        assert (await sql(server, root, "ALTER USER carol SET PASSWORD 'Carol-pw-2'")).status \
            == 200
        assert sql_error(await sql(server, old["access_token"], "SELECT 1")) == (
            401, "INVALID_CREDENTIALS")
        assert answer(await request(server, "POST", REFRESH, token=old["refresh_token"])) == \
            unauthorized("Token is no longer valid")
        assert (await login(server, "carol", "Carol-pw-1")).status == 401
        # Role change: the same.
        old = (await login(server, "carol", "Carol-pw-2")).json
        assert (await sql(server, root, "ALTER USER carol SET ROLE service")).status == 200
        assert sql_error(await sql(server, old["access_token"], "SELECT 1")) == (
            401, "INVALID_CREDENTIALS")
        assert answer(await request(server, "POST", REFRESH, token=old["refresh_token"])) == \
            unauthorized("Token role does not match user role")
        fresh = (await login(server, "carol", "Carol-pw-2")).json
        assert fresh["user"]["role"] == "service"
        assert (await sql(server, fresh["access_token"], "SELECT 1")).status == 200
        # Drop: every token of the account is refused, and it cannot log in.
        assert (await sql(server, root, "DROP USER carol")).status == 200
        assert sql_error(await sql(server, fresh["access_token"], "SELECT 1")) == (
            401, "INVALID_CREDENTIALS")
        assert answer(await request(server, "GET", ME, token=fresh["access_token"])) == \
            unauthorized("Invalid credentials")
        assert answer(await request(server, "POST", REFRESH, token=fresh["refresh_token"])) \
            == unauthorized("User no longer valid")
        assert (await login(server, "carol", "Carol-pw-2")).status == 401
