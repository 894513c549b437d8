"""``POST /v1/api/sql`` (PROTOCOL §1.3) and its bearer authentication (§1.2, §2.4).

The wire behaviour is driven against the real server (tests/api/harness.py) with a known
``KALAMDB_JWT_SECRET`` so the test mints tokens with ``api.auth.issue_token``; a
``server.toml`` lowers the bcrypt cost and the body limit to keep it fast. Token validation
edge cases (leeway, claims) are also checked in-process against a bare ``Catalog``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from api.auth import AuthFailure, bearer_token, issue_token, verify_access_token
from engine.catalog import Catalog, User
from tests.api.harness import Server, http_request, running_server

SECRET = "sluice-test-secret-" + "0123456789abcdef" * 4
SQL_PATH = "/v1/api/sql"
BODY_LIMIT = 65536
ROOT = User("root", "system", email="root@localhost", auth_type="Internal")
INVALID = {"code": "INVALID_CREDENTIALS", "message": "Invalid credentials"}
PROBE = "INSERT INTO default.items (id, name) VALUES (100, 'intruder')"


def token_for(user: User, token_type: str = "access", now: float | None = None,
              hours: int = 1) -> str:
    return issue_token(SECRET, user, token_type, time.time() if now is None else now,
                       hours)[0]


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "root", "iss": "kalamdb", "exp": now + 3600, "iat": now,
            "email": "root@localhost", "role": "system", "token_type": "access"}
    return {k: v for k, v in (base | overrides).items() if v is not None}


async def post(server: Server, body: bytes | dict[str, Any], *, token: str | None = None,
               authorization: str | None = None, content_type: str = "application/json"
               ) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await http_request(server, "POST", SQL_PATH, headers, raw)
    assert resp.headers["content-type"] == "application/json"
    return resp.status, json.loads(resp.body)


def error_of(status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert body["status"] == "error" and body["results"] == []
    assert isinstance(body["took"], float | int) and body["took"] >= 0
    return status, body["error"]


async def test_sql_route__success_errors_and_auth(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        f"[auth]\nbcrypt_cost = 4\n[rate_limit]\nrequest_body_limit_bytes = {BODY_LIMIT}\n")
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        root = token_for(ROOT)
        await _check_success_shapes(server, root)
        alice = await _check_error_envelopes(server, root)
        await _check_request_errors(server, root)
        await _check_auth_failures(server, root, alice)
        # Nothing a rejected request carried was written.
        status, body = await post(server, {"sql": "SELECT id FROM default.items WHERE id = 100"},
                                  token=root)
        assert status == 200 and body["results"][0]["rows"] == []


async def _check_success_shapes(server: Server, root: str) -> None:
    status, body = await post(server, {
        "sql": "CREATE TABLE default.items (id BIGINT PRIMARY KEY, name TEXT)",
        "ignored_field": True}, token=root)
    assert status == 200 and body["status"] == "success"
    assert isinstance(body["took"], float) and round(body["took"], 3) == body["took"]
    [ddl] = body["results"]
    assert ddl["row_count"] == 0 and ddl["as_user"] == "root" and "rows" not in ddl

    status, body = await post(server, {
        "sql": "INSERT INTO default.items (id, name) VALUES ($1, $2)",
        "params": [7012345678901, "hello"], "namespace_id": "default"}, token=root)
    assert (status, body["results"]) == (200, [
        {"row_count": 1, "message": "Inserted 1 row(s)", "as_user": "root"}])

    status, body = await post(server, {"sql": "INSERT INTO items (id, name) VALUES (2, 'b'); "
                                              "UPDATE items SET name = 'c' WHERE id = 2"},
                              token=root)
    assert status == 200
    assert [r["message"] for r in body["results"]] == ["Inserted 1 row(s)", "Updated 1 row(s)"]

    status, body = await post(server, {"sql": "SELECT id, name FROM default.items ORDER BY id"},
                              token=root)
    assert status == 200
    [result] = body["results"]
    assert result["schema"] == [
        {"name": "id", "data_type": "BigInt", "index": 0, "flags": ["pk", "nn", "uq"]},
        {"name": "name", "data_type": "Text", "index": 1}]
    assert result["rows"] == [["2", "c"], ["7012345678901", "hello"]]  # BigInt as strings
    assert (result["row_count"], result["as_user"]) == (2, "root")


async def _check_error_envelopes(server: Server, root: str) -> str:
    status, body = await post(server, {"sql": "CREATE USER alice WITH PASSWORD 'pw-alice-1' "
                                              "ROLE user"}, token=root)
    assert status == 200, body
    alice = token_for(User("alice", "user"))
    missing = {"sql": "SELECT * FROM default.nope"}
    assert error_of(*await post(server, missing, token=root)) == (400, {
        "code": "TABLE_NOT_FOUND",
        "message": "Statement 1 failed: Table 'default.nope' does not exist",
        "details": "SELECT * FROM default.nope"})
    assert error_of(*await post(server, missing, token=alice)) == (400, {
        "code": "TABLE_NOT_FOUND", "message": "SQL statement failed"})
    bad = {"sql": "SELEC nonsense"}
    status, error = error_of(*await post(server, bad, token=root))
    assert (status, error["code"], error["details"]) == (400, "INVALID_SQL", "SELEC nonsense")
    assert error_of(*await post(server, bad, token=alice)) == (400, {
        "code": "INVALID_SQL", "message": "SQL statement is invalid or not allowed"})
    status, error = error_of(*await post(server, {"sql": "CREATE NAMESPACE evil"},
                                         token=alice))
    assert (status, error["code"], "details" in error) == (403, "PERMISSION_DENIED", False)
    status, error = error_of(*await post(server, {"sql": "SELECT 1; SELECT 2", "params": [1]},
                                         token=root))
    assert (status, error["code"]) == (400, "PARAMS_WITH_BATCH")
    status, error = error_of(*await post(server, {"sql": PROBE.replace("100", "7012345678901")},
                                         token=root))
    assert (status, error["code"]) == (400, "SQL_EXECUTION_ERROR")
    assert error["details"].startswith("INSERT INTO default.items")
    return alice


async def _check_request_errors(server: Server, root: str) -> None:
    for body in ({}, {"sql": "   "}, {"sql": None}):
        assert error_of(*await post(server, body, token=root)) == (400, {
            "code": "EMPTY_SQL", "message": "No SQL statements provided"})
    status, error = error_of(*await post(server, b'{"sql": "SELECT 1",', token=root))
    assert (status, error["code"]) == (400, "INVALID_INPUT")
    assert error["message"].startswith("Invalid JSON payload: ")
    for body in ({"sql": 5}, {"sql": "SELECT 1", "params": {"a": 1}}, [1]):
        status, error = error_of(*await post(server, body, token=root))
        assert (status, error["code"]) == (400, "INVALID_INPUT")
    assert error_of(*await post(server, {"sql": PROBE}, token=root,
                                content_type="text/plain")) == (400, {
        "code": "INVALID_INPUT", "message": "Invalid JSON payload: Content type error"})
    status, error = error_of(*await post(server, {"sql": PROBE}, token=root,
                                         content_type="multipart/form-data; boundary=x"))
    assert (status, error["code"]) == (400, "INVALID_INPUT")
    assert "multipart" in error["message"]
    huge = json.dumps({"sql": PROBE, "pad": "x" * BODY_LIMIT}).encode()
    status, body = await post(server, huge, token=root)
    assert (status, body["error"], body["size_bytes"], body["max_bytes"]) == (
        413, "BODY_TOO_LARGE", len(huge), BODY_LIMIT)
    assert isinstance(body["message"], str)


async def _check_auth_failures(server: Server, root: str, alice: str) -> None:
    for sql in ("CREATE USER carol WITH PASSWORD 'pw-carol-1' ROLE user",
                "CREATE USER dave WITH PASSWORD 'pw-dave-1' ROLE user"):
        assert (await post(server, {"sql": sql}, token=root))[0] == 200
    carol, dave = token_for(User("carol", "user")), token_for(User("dave", "user"))
    assert (await post(server, {"sql": "SELECT 1"}, token=dave))[0] == 200
    for sql in ("DROP USER carol", "ALTER USER dave SET ROLE dba"):
        assert (await post(server, {"sql": sql}, token=root))[0] == 200

    probe = {"sql": PROBE}
    assert error_of(*await post(server, probe)) == (401, {
        "code": "MISSING_AUTHORIZATION", "message": "Authentication required"})
    rejected = {
        "basic": "Basic cm9vdDpwdw==",
        "lowercase bearer": f"bearer {root}",
        "empty bearer": "Bearer   ",
        "other scheme": f"Token {root}",
        "expired": "Bearer " + token_for(ROOT, now=time.time() - 3 * 3600, hours=1),
        "refresh as access": "Bearer " + token_for(ROOT, "refresh"),
        "alg none": "Bearer " + jwt.encode(claims(), None, algorithm="none"),
        "HS512": "Bearer " + jwt.encode(claims(), SECRET, algorithm="HS512"),
        "wrong secret": "Bearer " + jwt.encode(claims(), "another-secret-" * 4,
                                               algorithm="HS256"),
        "forged signature": "Bearer " + root[:-4] + ("AAAA" if root[-4:] != "AAAA" else "BBBB"),
        "wrong issuer": "Bearer " + jwt.encode(claims(iss="evil"), SECRET, algorithm="HS256"),
        "deleted user": f"Bearer {carol}",
        "role changed": f"Bearer {dave}",
        "garbage": "Bearer not-a-jwt",
    }
    for name, authorization in rejected.items():
        status, error = error_of(*await post(server, probe, authorization=authorization))
        expected = {"code": "TOKEN_EXPIRED", "message": "Invalid credentials"} \
            if name == "expired" else INVALID
        assert (status, error) == (401, expected), name


# ---- in-process token validation -------------------------------------------------------


def _catalog(*users: User) -> Catalog:
    catalog = Catalog()
    for user in users:
        catalog.users[user.user_id] = user
    return catalog


def test_verify_access_token__leeway_and_claims() -> None:
    alice = User("alice", "user", email="a@example.com", token_generation=2)
    catalog = _catalog(alice)
    now = 1_767_139_200.0
    token, expires_at = issue_token(SECRET, alice, "access", now, 24)
    assert expires_at.timestamp() == now + 24 * 3600
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert {k: payload[k] for k in ("sub", "iss", "email", "role", "token_type")} == {
        "sub": "alice", "iss": "kalamdb", "email": "a@example.com", "role": "user",
        "token_type": "access"}
    assert payload["exp"] - payload["iat"] == 24 * 3600
    refresh, refresh_expiry = issue_token(SECRET, alice, "refresh", now, 24)
    assert refresh_expiry.timestamp() == now + 7 * 24 * 3600

    assert verify_access_token(SECRET, token, catalog, now) == alice
    expiry = now + 24 * 3600
    assert verify_access_token(SECRET, token, catalog, expiry + 59) == alice  # leeway
    with pytest.raises(AuthFailure) as info:
        verify_access_token(SECRET, token, catalog, expiry + 61)
    assert info.value.code == "TOKEN_EXPIRED"
    assert verify_access_token(SECRET, token, catalog, now - 59) == alice  # iat leeway

    def code(token: str, at: float = now, cat: Catalog = catalog) -> str:
        with pytest.raises(AuthFailure) as failure:
            verify_access_token(SECRET, token, cat, at)
        return failure.value.code

    assert code(token, now - 61) == "INVALID_CREDENTIALS"  # iat in the future
    assert code(refresh) == "INVALID_CREDENTIALS"
    base = claims(sub="alice", role="user", iat=int(now), exp=int(now) + 3600, gen=2)
    sign = lambda **kw: jwt.encode(base | kw, SECRET, algorithm="HS256")  # noqa: E731
    assert verify_access_token(SECRET, sign(nbf=int(now) + 50), catalog, now) == alice
    assert code(sign(nbf=int(now) + 120)) == "INVALID_CREDENTIALS"
    assert code(sign(sub="")) == "INVALID_CREDENTIALS"
    assert code(sign(token_type=None)) == "INVALID_CREDENTIALS"
    assert code(sign(role="dba")) == "INVALID_CREDENTIALS"
    assert code(sign(gen=1)) == "INVALID_CREDENTIALS"  # issued before a password change
    assert code(sign(sub="bob")) == "INVALID_CREDENTIALS"
    gone = User("alice", "user", token_generation=2, deleted_at=1)
    assert code(sign(), cat=_catalog(gone)) == "INVALID_CREDENTIALS"
    assert code(jwt.encode({k: v for k, v in base.items() if k != "exp"}, SECRET,
                           algorithm="HS256")) == "INVALID_CREDENTIALS"


def test_bearer_token__header_rules() -> None:
    with pytest.raises(AuthFailure) as info:
        bearer_token(None)
    assert info.value.code == "MISSING_AUTHORIZATION"
    assert bearer_token("Bearer  abc.def.ghi ") == "abc.def.ghi"
    for value in ("Bearer abc\x7f", "Bearer ab\x01c", "Bearer ab\xe9c", "  basic abc",
                  "BASIC abc", "bearer abc", "BEARER abc", "Bearer", "Digest abc"):
        with pytest.raises(AuthFailure) as info:
            bearer_token(value)
        assert info.value.code == "INVALID_CREDENTIALS", value
