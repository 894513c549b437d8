"""``POST /v1/api/auth/login`` over HTTP (PROTOCOL §2.3, §2.5, §2.6, §1.0 auth rate limit),
against the real server: the response and cookie shapes, every refusal, the lockout after five
failures (and that it survives a restart on the same data directory), and the per-IP auth
bucket."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import jwt

from tests.api.auth_client import (
    DBA,
    DBA_PASSWORD,
    INVALID,
    REMOTE,
    ROOT_PASSWORD,
    SECRET,
    auth_server,
    create_user,
    login,
    login_token,
    request,
    set_up,
)

LOGIN = "/v1/api/auth/login"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
COOKIE = re.compile(r"^(kalamdb_auth|kalamdb_refresh)=([^;]*); HttpOnly; SameSite=Strict; "
                    r"Path=/; Expires=(\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT)$")


def _hours_from_now(text: str) -> float:
    return (datetime.fromisoformat(text).timestamp() - time.time()) / 3600


async def test_auth_login__success_shape_cookies_and_claims(tmp_path: Path) -> None:
    async with auth_server(tmp_path) as server:
        await set_up(server)
        reply = await request(server, "POST", LOGIN, {"username": DBA, "password": DBA_PASSWORD})
        assert reply.status == 200
        body = reply.json
        assert list(body) == ["user", "admin_ui_access", "expires_at", "access_token",
                              "refresh_token", "refresh_expires_at"]
        assert set(body["user"]) == {"id", "role", "email", "created_at", "updated_at"}
        assert (body["user"]["id"], body["user"]["role"], body["user"]["email"]) == (
            DBA, "dba", None)
        assert body["admin_ui_access"] is True
        for key in ("expires_at", "refresh_expires_at"):
            assert RFC3339.match(body[key]), body[key]
        assert RFC3339.match(body["user"]["created_at"])
        assert 23.9 < _hours_from_now(body["expires_at"]) <= 24
        assert 167.9 < _hours_from_now(body["refresh_expires_at"]) <= 168
        for kind in ("access", "refresh"):
            claims = jwt.decode(body[f"{kind}_token"], SECRET, algorithms=["HS256"])
            assert (claims["iss"], claims["sub"], claims["role"], claims["token_type"]) == (
                "kalamdb", DBA, "dba", kind)
            assert claims["email"] is None and claims["exp"] > claims["iat"]
        # Two cookies, exactly the reference's attributes; no Secure over plain HTTP.
        cookies = {}
        for raw in reply.set_cookies:
            match = COOKIE.match(raw)
            assert match, raw
            cookies[match.group(1)] = (match.group(2), match.group(3))
        assert cookies["kalamdb_auth"][0] == body["access_token"]
        assert cookies["kalamdb_refresh"][0] == body["refresh_token"]
        # A plain user has no admin UI access.
        root = await login_token(server, "root", ROOT_PASSWORD)
        await create_user(server, root, "carol", "Carol-pw-1")
        reply = await login(server, "carol", "Carol-pw-1")
        assert reply.status == 200 and reply.json["admin_ui_access"] is False


async def test_auth_login__refusals(tmp_path: Path) -> None:
    async with auth_server(tmp_path) as server:
        await set_up(server)
        root = await login_token(server, "root", ROOT_PASSWORD)
        await create_user(server, root, "carol", "Carol-pw-1")
        reply = await request(server, "POST", "/v1/api/sql", {
            "sql": """CREATE USER gh WITH OAUTH '{"provider":"github","subject":"1"}'"""},
            token=root)
        assert reply.status == 200, reply.body
        for user, password in (("carol", "wrong-pw"), ("nobody", "Carol-pw-1"), ("carol", ""),
                               ("", "x"), ("gh", "anything")):
            reply = await login(server, user, password)
            assert (reply.status, reply.json) == (401, INVALID), (user, password)
        for raw, content_type in (
                (b'{"user":"carol","password":"x","extra":1}', "application/json"),
                (b'{"user":"carol","username":"carol","password":"x"}', "application/json"),
                (b'{"user":"carol"}', "application/json"),
                (b'{"user":"' + b"c" * 129 + b'","password":"x"}', "application/json"),
                (b'{"user":"carol","password":"' + b"p" * 257 + b'"}', "application/json"),
                (b'{"user":"carol","password":5}', "application/json"),
                (b'["carol","x"]', "application/json"),
                (b'{"user":"carol","password":"Carol-pw-1"}', "text/plain")):
            reply = await request(server, "POST", LOGIN, raw=raw,
                                  headers={"Content-Type": content_type})
            assert reply.status == 400, raw
            assert reply.header("content-type") == "text/plain; charset=utf-8"
        reply = await request(server, "POST", LOGIN, raw=b"{" + b" " * 20000 + b"}")
        assert reply.status == 413 and reply.json["error"] == "BODY_TOO_LARGE"
        # The refusals above were not counted towards a lockout of carol... except the
        # two wrong passwords (2 < 5), so she still logs in.
        assert (await login(server, "carol", "Carol-pw-1")).status == 200


async def test_auth_login__lockout_after_five_failures_survives_restart(tmp_path: Path
                                                                       ) -> None:
    locked = {"error": "account_locked", "message": "15 minute(s)"}
    async with auth_server(tmp_path) as server:
        await set_up(server)
        root = await login_token(server, "root", ROOT_PASSWORD)
        await create_user(server, root, "carol", "Carol-pw-1")
        await create_user(server, root, "dave", "Dave-pw-1")
        # A success resets the count: 4 failures, success, 4 failures never lock dave.
        for _ in range(2):
            for _ in range(4):
                assert (await login(server, "dave", "bad")).status == 401
            assert (await login(server, "dave", "Dave-pw-1")).status == 200
        for _ in range(5):
            reply = await login(server, "carol", "bad")
            assert (reply.status, reply.json) == (401, INVALID)
        reply = await login(server, "carol", "Carol-pw-1")  # the right password
        assert (reply.status, reply.json) == (401, locked)
        assert (await login(server, "dave", "Dave-pw-1")).status == 200  # others unaffected
    async with auth_server(tmp_path) as server:  # same data dir: replayed from the WAL
        reply = await login(server, "carol", "Carol-pw-1")
        assert (reply.status, reply.json) == (401, locked)
        assert (await login(server, "dave", "Dave-pw-1")).status == 200


async def test_auth_login__per_ip_rate_limit(tmp_path: Path) -> None:
    # A bucket of one request per second per IP: of a quick burst, at most the first one or
    # two get through; another client IP has its own bucket; status/logout/me are not limited.
    async with auth_server(tmp_path, auth_rate=1) as server:
        replies = [await request(server, "POST", "/v1/api/auth/setup", {
            "user": DBA, "password": DBA_PASSWORD, "root_password": ROOT_PASSWORD})
            for _ in range(5)]
        assert replies[0].status == 200
        limited = [r for r in replies if r.status == 429]
        assert limited and all(r.json == {
            "error": "rate_limited",
            "message": "Too many setup attempts. Please retry shortly."} for r in limited)
        for path in ("/v1/api/auth/login", "/v1/api/auth/refresh"):
            replies = [await login(server, DBA, DBA_PASSWORD) if path.endswith("login")
                       else await request(server, "POST", path) for _ in range(5)]
            limited = [r for r in replies if r.status == 429]
            assert limited and all(r.json == {
                "error": "rate_limited",
                "message": "Too many authentication attempts. Please retry shortly."}
                for r in limited), path
        reply = await login(server, DBA, DBA_PASSWORD, headers=REMOTE)
        assert reply.status == 200
        for method, path in (("GET", "/v1/api/auth/status"), ("POST", "/v1/api/auth/logout"),
                             ("GET", "/v1/api/auth/me")):
            statuses = {(await request(server, method, path)).status for _ in range(5)}
            assert 429 not in statuses, path
