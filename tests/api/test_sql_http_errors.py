"""``POST /v1/api/sql`` over HTTP, the paths the engine implements but test_sql_route.py does
not drive: batched ``params`` (an array of arrays, atomic), bad params, unknown tables,
redaction and ``details`` per role, the EXECUTE AS USER role matrix (PROTOCOL §2.7), failed
batches leaving nothing visible, oversized bodies (Content-Length and chunked) and malformed
JSON. One real server per test; users are created with SQL as root and tokens are minted
with the server's JWT secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.catalog import User
from tests.api.harness import Server, raw_exchange, running_server
from tests.api.test_sql_route import ROOT, SECRET, error_of, post, token_for

BODY_LIMIT = 4096
ROLES = {"u1": "user", "u2": "user", "s1": "service", "s2": "service", "d1": "dba",
         "d2": "dba", "y2": "system"}
ACTORS = {"root": "system", "d1": "dba", "s1": "service", "u1": "user"}
# PROTOCOL §2.7: the roles each actor role may target (an unknown id counts as "user";
# targeting oneself is always a no-op and allowed).
MAY_TARGET = {"system": {"system", "dba", "service", "user"},
              "dba": {"dba", "service", "user"}, "service": {"service", "user"}, "user": set()}
TARGETS = {"y2": "system", "d2": "dba", "s2": "service", "u2": "user", "ghost": "user"}


def token(name: str) -> str:
    return token_for(ROOT if name == "root" else User(name, ROLES[name]))


async def ok(server: Server, sql: str, who: str = "root", **extra: Any) -> dict[str, Any]:
    status, body = await post(server, {"sql": sql, **extra}, token=token(who))
    assert status == 200, (sql, body)
    return body


async def fails(server: Server, sql: str, who: str = "root", **extra: Any
                ) -> tuple[int, dict[str, Any]]:
    return error_of(*await post(server, {"sql": sql, **extra}, token=token(who)))


async def ids(server: Server, table: str, who: str = "root") -> list[int]:
    body = await ok(server, f"SELECT id FROM {table} ORDER BY id", who)
    return [int(row[0]) for row in body["results"][0]["rows"]]


async def setup(server: Server) -> None:
    users = "; ".join(f"CREATE USER {name} WITH PASSWORD 'pw-{name}-123' ROLE {role}"
                      for name, role in ROLES.items())
    await ok(server, users + "; CREATE NAMESPACE app; "
             "CREATE TABLE app.items (id BIGINT PRIMARY KEY, name TEXT NOT NULL); "
             "CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT); "
             "CREATE SHARED TABLE app.shared (id INT PRIMARY KEY, v TEXT) "
             "WITH (ACCESS_LEVEL = 'PUBLIC')")


async def test_sql_http__params_redaction_and_atomic_batches(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n")
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        await setup(server)
        await _check_batched_params(server)
        await _check_bad_params(server)
        await _check_unknown_table_and_redaction(server)
        await _check_failed_batches(server)


INSERT_ITEM = "INSERT INTO app.items (id, name) VALUES ($1, $2)"


async def _check_batched_params(server: Server) -> None:
    body = await ok(server, INSERT_ITEM, params=[[1, "a"], [2, "b"], [3, "c"]])
    assert body["results"] == [{"row_count": 3, "message": "Inserted 3 row(s)",
                                "as_user": "root"}]
    # One bad inner array rejects the whole request: nothing of it is written.
    bad_batches = {
        "object value": ([[10, "x"], [11, {"o": 1}]], "INVALID_PARAMETER"),
        "nested array value": ([[10, "x"], [11, ["n"]]], "INVALID_PARAMETER"),
        "duplicate key inside": ([[10, "x"], [10, "y"]], "SQL_EXECUTION_ERROR"),
        "existing key": ([[10, "x"], [1, "dup"]], "SQL_EXECUTION_ERROR"),
        "null into NOT NULL": ([[10, "x"], [11, None]], None),
        "too few values": ([[10, "x"], [11]], None),
    }
    for name, (params, code) in bad_batches.items():
        status, error = await fails(server, INSERT_ITEM, params=params)
        assert status == 400, (name, error)
        assert code is None or error["code"] == code, (name, error)
    assert await ids(server, "app.items") == [1, 2, 3]
    for sql in ("SELECT id FROM app.items WHERE id = $1",
                INSERT_ITEM + "; " + INSERT_ITEM):
        status, error = await fails(server, sql, params=[[1, "a"]])
        assert (status, error["code"]) == (400, "INVALID_PARAMETER"), sql


async def _check_bad_params(server: Server) -> None:
    status, error = await fails(server, INSERT_ITEM, params=[4, {"x": 1}])
    assert (status, error["code"]) == (400, "INVALID_PARAMETER")
    assert error["message"].startswith("Parameter $2 invalid")
    status, error = await fails(server, INSERT_ITEM, params=list(range(51)))
    assert (status, error["code"]) == (400, "INVALID_PARAMETER")  # execution.max_parameters
    status, error = await fails(server, INSERT_ITEM + "; " + INSERT_ITEM, params=[4, "d"])
    assert (status, error["code"]) == (400, "PARAMS_WITH_BATCH")
    status, error = await fails(server, INSERT_ITEM, params=[4])  # $2 has no value
    assert status == 400 and error["code"] in ("INVALID_PARAMETER", "SQL_EXECUTION_ERROR")
    assert await ids(server, "app.items") == [1, 2, 3]


async def _check_unknown_table_and_redaction(server: Server) -> None:
    ghost = "INSERT INTO app.ghost (id) VALUES (1)"
    for who in ("u1", "s1"):  # not admins: redacted, no details
        assert await fails(server, ghost, who) == (400, {
            "code": "TABLE_NOT_FOUND", "message": "SQL statement failed"})
    for who in ("d1", "root"):  # admins: the real message and the statement
        assert await fails(server, ghost, who) == (400, {
            "code": "TABLE_NOT_FOUND",
            "message": "Statement 1 failed: Table 'app.ghost' does not exist",
            "details": ghost})
    # A preserved message (primary key) is shown to non-admins, but never with details.
    await ok(server, "INSERT INTO app.notes (id, body) VALUES (1, 'n')", "u1")
    dup = "INSERT INTO app.notes (id, body) VALUES (1, 'again')"
    status, error = await fails(server, dup, "u1")
    assert (status, error["code"], "details" in error) == (400, "SQL_EXECUTION_ERROR", False)
    assert error["message"].startswith("Statement 1 failed: ")
    await ok(server, "INSERT INTO app.notes (id, body) VALUES (1, 'n')", "d1")
    status, error = await fails(server, dup, "d1")
    assert (status, error["details"]) == (400, dup)
    status, error = await fails(server, "SELEC x", "d1")
    assert (error["code"], error["details"]) == ("INVALID_SQL", "SELEC x")
    status, error = await fails(server, "CREATE NAMESPACE nope", "u1")
    assert (status, error["code"], "details" in error) == (403, "PERMISSION_DENIED", False)


async def _check_failed_batches(server: Server) -> None:
    # An explicit transaction that fails is rolled back as a whole.
    status, _ = await fails(server, "BEGIN; INSERT INTO app.items (id, name) VALUES (40, 'a'); "
                                    "INSERT INTO app.items (id, name) VALUES (1, 'dup'); COMMIT")
    assert status == 400
    # One multi-row INSERT with a bad row writes nothing.
    status, _ = await fails(server, "INSERT INTO app.items (id, name) VALUES (41, 'a'), "
                                    "(1, 'dup')")
    assert status == 400
    # A statement that fails to classify stops the batch before anything runs.
    status, error = await fails(server, "INSERT INTO app.items (id, name) VALUES (42, 'a'); "
                                        "SELEC nonsense")
    assert (status, error["code"]) == (400, "INVALID_SQL")
    status, error = await fails(server, "INSERT INTO app.notes (id, body) VALUES (43, 'a'); "
                                        "CREATE NAMESPACE nope", "u1")
    assert (status, error["code"]) == (403, "PERMISSION_DENIED")
    assert await ids(server, "app.items") == [1, 2, 3]
    assert await ids(server, "app.notes", "u1") == [1]
    # Without BEGIN each statement autocommits (PROTOCOL §1.3): the failing statement writes
    # nothing, earlier ones stay applied, and the error carries no partial results.
    status, _ = await fails(server, "INSERT INTO app.items (id, name) VALUES (44, 'a'); "
                                    "INSERT INTO app.items (id, name) VALUES (1, 'dup')")
    assert status == 400
    assert await ids(server, "app.items") == [1, 2, 3, 44]


async def test_sql_http__execute_as_user__role_matrix(tmp_path: Path) -> None:
    # Every actor role against every target role (plus itself and an unknown id): allowed
    # ones answer as the target; refused ones are 403 with the reason shown to everyone.
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n")
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        await setup(server)
        for actor, actor_role in ACTORS.items():
            for target, target_role in {**TARGETS, actor: actor_role}.items():
                sql = f"EXECUTE AS USER '{target}' (SELECT id FROM app.notes)"
                status, body = await post(server, {"sql": sql}, token=token(actor))
                allowed = target == actor or target_role in MAY_TARGET[actor_role]
                case = (actor, target)
                if allowed:
                    assert status == 200, (case, body)
                    assert body["results"][0]["as_user"] == target, case
                else:
                    assert (status, body["error"]["code"]) == (403, "PERMISSION_DENIED"), case
                    # PROTOCOL §2.7 gives the bare text; Sluice currently prefixes it with
                    # "Statement 1 failed: " (reported to the lead), so match the reason only.
                    assert (f"EXECUTE AS USER is not authorized: actor '{actor}' "
                            f"({actor_role}) cannot target '{target}' ({target_role})"
                            in body["error"]["message"]), case
        # The write lands in the target's partition only.
        await ok(server, "EXECUTE AS USER 'u2' (INSERT INTO app.notes (id, body) "
                         "VALUES (7, 'for u2'))", "d1")
        assert await ids(server, "app.notes", "u2") == [7]
        assert await ids(server, "app.notes", "u1") == []
        # SHARED tables are refused under EXECUTE AS.
        status, error = await fails(server, "EXECUTE AS USER 'u2' (SELECT id FROM app.shared)")
        assert (status, error["code"]) == (400, "SQL_EXECUTION_ERROR")


def raw_post(token_value: str, head: str, body: bytes) -> bytes:
    return (f"POST /v1/api/sql HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token_value}"
            f"\r\nContent-Type: application/json\r\nConnection: close\r\n{head}\r\n"
            ).encode() + body


def parse_raw(reply: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


async def test_sql_http__oversized_and_malformed_bodies(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        f"[auth]\nbcrypt_cost = 4\n[rate_limit]\nrequest_body_limit_bytes = {BODY_LIMIT}\n")
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        await ok(server, "CREATE TABLE default.t (id BIGINT PRIMARY KEY, pad TEXT)")
        root = token("root")
        # Declared too large: refused before a byte of the body is read (none is sent).
        status, body = parse_raw(await raw_exchange(
            server, raw_post(root, "Content-Length: 1000000000\r\n", b"")))
        assert (status, body["error"], body["size_bytes"], body["max_bytes"]) == (
            413, "BODY_TOO_LARGE", 1_000_000_000, BODY_LIMIT)
        # Chunked with no length: refused once the received bytes pass the limit.
        payload = json.dumps({"sql": "INSERT INTO default.t (id, pad) VALUES (1, $1)",
                              "params": ["x" * BODY_LIMIT]}).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 1000]), payload[i:i + 1000])
                          for i in range(0, len(payload), 1000)) + b"0\r\n\r\n"
        status, body = parse_raw(await raw_exchange(
            server, raw_post(root, "Transfer-Encoding: chunked\r\n", chunks)))
        assert (status, body["error"], body["max_bytes"]) == (413, "BODY_TOO_LARGE", BODY_LIMIT)
        assert BODY_LIMIT < body["size_bytes"] <= len(payload)
        assert await ids(server, "default.t") == []
        # Malformed bodies are 400 INVALID_INPUT "Invalid JSON payload: ...".
        for raw in (b"", b"null", b'{"sql": "SELECT 1",', b"\xff\xfe{}", b'{"sql": NaN}',
                    b"[" * 3000, b'{"sql": "SELECT 1", "namespace_id": 5}',
                    b'{"sql": "SELECT 1", "params": "x"}'):
            status, error = error_of(*await post(server, raw, token=root))
            assert (status, error["code"]) == (400, "INVALID_INPUT"), raw[:40]
            assert error["message"].startswith("Invalid JSON payload"), raw[:40]
