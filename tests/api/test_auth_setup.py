"""First-run setup and status over HTTP (PROTOCOL §2.2, §2.6, §9 item 3), against the real
server. A "remote" client is simulated with ``X-Forwarded-For`` from the loopback peer, which
api/http.py ``client_ip`` honours (loopback is a trusted proxy), so the request counts as
non-local exactly as a request through a local reverse proxy would."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from api.auth import issue_token
from engine.catalog import User
from tests.api.auth_client import (
    DBA,
    DBA_PASSWORD,
    INVALID,
    REMOTE,
    ROOT_PASSWORD,
    SECRET,
    auth_server,
    login,
    login_token,
    request,
    sql,
    write_config,
)
from tests.api.harness import running_server

SETUP = "/v1/api/auth/setup"
STATUS = "/v1/api/auth/status"


def setup_body(**overrides: str) -> dict[str, str]:
    return {"user": DBA, "password": DBA_PASSWORD, "root_password": ROOT_PASSWORD,
            **overrides}


async def test_auth_setup__lifecycle_and_every_refusal(tmp_path: Path) -> None:
    async with auth_server(tmp_path) as server:
        reply = await request(server, "GET", STATUS)
        assert reply.status == 200 and reply.json["needs_setup"] is True
        assert reply.json["message"].startswith("Server requires initial setup")
        # Root has no password yet: an empty password asks for setup (428, from anywhere); a
        # password is refused remotely (403) and just wrong locally (401).
        reply = await login(server, "root", "")
        assert (reply.status, reply.json) == (428, {
            "error": "setup_required",
            "message": "Server requires initial setup. Root password is not configured."})
        reply = await login(server, "root", "guess-1234", headers=REMOTE)
        assert reply.status == 403 and reply.json["error"] == "forbidden"
        assert reply.json["message"].startswith(
            "System users with empty passwords cannot authenticate remotely.")
        reply = await login(server, "root", "guess-1234")
        assert (reply.status, reply.json) == (401, INVALID)

        await _check_setup_refusals(server)

        reply = await request(server, "POST", SETUP, setup_body(email="admin@example.com"))
        assert reply.status == 200 and reply.set_cookies == []  # setup does not log in
        body = reply.json
        assert set(body) == {"user", "message"}
        assert body["message"] == ("Server setup complete. Root password configured and DBA "
                                   "user 'admin' created. Please login to continue.")
        assert body["user"]["id"] == DBA and body["user"]["role"] == "dba"
        assert body["user"]["email"] == "admin@example.com"
        assert body["user"]["created_at"].endswith("+00:00")

        reply = await request(server, "GET", STATUS)
        assert reply.json == {"needs_setup": False, "message": "Server is configured and ready."}
        reply = await request(server, "POST", SETUP, setup_body(user="admin2"))
        assert (reply.status, reply.json) == (409, {
            "error": "already_configured",
            "message": "Server has already been configured. Root password is set."})
        # Both accounts work; nothing a refused setup carried was written.
        root = await login_token(server, "root", ROOT_PASSWORD)
        assert (await login(server, DBA, DBA_PASSWORD)).json["user"]["role"] == "dba"
        reply = await sql(server, root, "SELECT user_id FROM system.users ORDER BY user_id")
        assert reply.json["results"][0]["rows"] == [["admin"], ["carol"], ["root"]]


async def _check_setup_refusals(server) -> None:
    reply = await request(server, "GET", STATUS, headers=REMOTE)
    assert (reply.status, reply.json) == (403, {
        "error": "forbidden", "message": "Setup status can only be checked from localhost"})
    reply = await request(server, "POST", SETUP, setup_body(), headers=REMOTE)
    assert (reply.status, reply.json) == (403, {
        "error": "forbidden", "message": "Server setup can only be performed from localhost"})
    cases = [
        (setup_body(password="short"), 400, "weak_password",
         "DBA user password: Password must be at least 8 characters"),
        (setup_body(password="password123"), 400, "weak_password",
         "DBA user password: Password is too common"),
        (setup_body(root_password="x" * 73), 400, "weak_password",
         "Root password: Password must be at most 72 bytes"),
        (setup_body(user="a/b"), 400, "invalid_user", "Invalid user value"),
        (setup_body(user="a..b"), 400, "invalid_user", "Invalid user value"),
        (setup_body(user="root"), 400, "invalid_user",
         "Cannot create a DBA user with user 'root'. Choose a different user."),
    ]
    for body, status, code, message in cases:
        reply = await request(server, "POST", SETUP, body)
        assert (reply.status, reply.json) == (status, {"error": code, "message": message})
    # An existing account cannot become the DBA (root's token is minted with the secret).
    root = issue_token(SECRET, User("root", "system"), "access", time.time(), 1)[0]
    assert (await sql(server, root, "CREATE USER carol WITH PASSWORD 'Carol-pw-1'")).status \
        == 200
    reply = await request(server, "POST", SETUP, setup_body(user="carol"))
    assert (reply.status, reply.json) == (409, {
        "error": "user_exists", "message": "User 'carol' already exists"})
    # Framework-style plain-text 400s: unknown field, alias clash, missing field, oversize.
    for raw in (b'{"user":"a","password":"Abcdefgh1","root_password":"Abcdefgh2","x":1}',
                b'{"user":"a","username":"a","password":"Abcdefgh1","root_password":"B1"}',
                b'{"user":"a","password":"Abcdefgh1"}',
                b'{"user":"' + b"u" * 129 + b'","password":"Abcdefgh1","root_password":"B"}',
                b"{not json"):
        reply = await request(server, "POST", SETUP, raw=raw)
        assert reply.status == 400, raw
        assert reply.header("content-type") == "text/plain; charset=utf-8"
    assert (await request(server, "GET", STATUS)).json["needs_setup"] is True


async def test_auth_setup__remote_allowed_by_config_and_username_alias(tmp_path: Path) -> None:
    async with auth_server(tmp_path, allow_remote_setup=True) as server:
        reply = await request(server, "GET", STATUS, headers=REMOTE)
        assert reply.status == 200 and reply.json["needs_setup"] is True
        body = {"username": "ops", "password": DBA_PASSWORD, "root_password": ROOT_PASSWORD}
        reply = await request(server, "POST", SETUP, body, headers=REMOTE)
        assert reply.status == 200 and reply.json["user"]["id"] == "ops"
        # Root now has a password, so a remote root login is allowed.
        reply = await login(server, "root", ROOT_PASSWORD, headers=REMOTE)
        assert reply.status == 200 and reply.json["user"]["role"] == "system"


async def test_auth_setup__root_password_from_environment(tmp_path: Path) -> None:
    # KALAMDB_ROOT_PASSWORD configures root at first start (bcrypt cost 12, fixed by the
    # bootstrap): no setup is needed, and asking for one is refused.
    write_config(tmp_path)
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET,
                              KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD) as server:
        assert (await request(server, "GET", STATUS)).json["needs_setup"] is False
        reply = await login(server, "root", ROOT_PASSWORD)
        assert reply.status == 200 and reply.json["admin_ui_access"] is True
        reply = await request(server, "POST", SETUP, setup_body())
        assert reply.status == 409 and reply.json["error"] == "already_configured"


async def test_auth_setup__concurrent_setups_create_one_dba(tmp_path: Path) -> None:
    # Two setups for the same DBA at once: exactly one does the work; the other either sees
    # the finished setup (409) or, if it passed the first checks before, gets 200 with the
    # existing user — never a 500 and never a second account.
    async with auth_server(tmp_path) as server:
        replies = []

        async def one() -> None:
            replies.append(await request(server, "POST", SETUP, setup_body()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            nursery.start_soon(one)
        done = [r for r in replies if r.status == 200
                and r.json["message"].startswith("Server setup complete.")]
        assert len(done) == 1, [(r.status, r.body) for r in replies]
        other = next(r for r in replies if r is not done[0])
        assert (other.status, other.json.get("error")) in (
            (409, "already_configured"), (200, None))
        if other.status == 200:
            assert other.json["user"]["id"] == DBA
            assert other.json["message"].startswith("Server setup already completed")
        assert (await login(server, DBA, DBA_PASSWORD)).status == 200
