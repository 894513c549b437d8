"""``POST /v1/api/ingest/{namespace}/{table}`` (issue 4) against the real server, and the
route table's ``{parameter}`` paths (api/routing.py).

The server (tests/api/harness.py) runs with no JWT secret configured, so it generates one
into its data directory; the test reads it from there and mints tokens with
``api.auth.issue_token``. A ``server.toml`` lowers the bcrypt cost and the ingest body limit.
After every rejected request the test checks, over SQL, that nothing of it is visible.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from api.auth import issue_token
from engine.catalog import User
from tests.api.harness import Server, http_request, running_server

INGEST_LIMIT = 64 * 1024
ROOT = User("root", "system", email="root@localhost", auth_type="Internal")
NDJSON = "application/x-ndjson"
ARROW = "application/vnd.apache.arrow.stream"
SETUP = [
    "CREATE NAMESPACE app",
    "CREATE SHARED TABLE app.items (id BIGINT PRIMARY KEY, title TEXT NOT NULL, "
    "price DECIMAL(10,2), created TIMESTAMP DEFAULT NOW())",
    "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), body TEXT, "
    "owner TEXT DEFAULT CURRENT_USER())",
    "CREATE STREAM TABLE app.events (kind TEXT, n INT) WITH (TTL_SECONDS = 3600)",
    "CREATE USER alice WITH PASSWORD 'pw-alice-1' ROLE user",
    "CREATE USER bob WITH PASSWORD 'pw-bob-12' ROLE user",
    "CREATE USER svc WITH PASSWORD 'pw-svc-12' ROLE service",
]


class Client:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.secret = (server.data_dir / "jwt_secret").read_text().strip()

    def token(self, user: User) -> str:
        return issue_token(self.secret, user, "access", time.time(), 1)[0]

    async def ingest(self, path: str, body: bytes, *, user: User | None = ROOT,
                     content_type: str = NDJSON, query: str = ""
                     ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": content_type}
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        resp = await http_request(self.server, "POST", f"/v1/api/ingest/{path}{query}",
                                  headers, body)
        return resp.status, json.loads(resp.body)

    async def rows(self, sql: str, user: User = ROOT) -> list[list[Any]]:
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self.token(user)}"}
        resp = await http_request(self.server, "POST", "/v1/api/sql", headers,
                                  json.dumps({"sql": sql}).encode())
        body = json.loads(resp.body)
        assert resp.status == 200, body
        return body["results"][0].get("rows", [])


def ndjson(*lines: dict[str, Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def user(name: str, role: str = "user") -> User:
    return User(name, role)


def config(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        f"[auth]\nbcrypt_cost = 4\n[rate_limit]\ningest_body_limit_bytes = {INGEST_LIMIT}\n"
        "max_queries_per_sec = 0\n")


async def test_ingest_route__formats_tables_errors_and_routing(tmp_path: Path) -> None:
    config(tmp_path)
    async with running_server(tmp_path) as server:
        client = Client(server)
        for statement in SETUP:
            await client.rows(statement)
        await _check_happy_paths(client)
        await _check_rejections(client)
        await _check_who_may_write(client)
        await _check_routing(client)


async def _check_happy_paths(client: Client) -> None:
    status, body = await client.ingest("app/items", ndjson(
        {"id": 1, "title": "a", "price": 1.5}, {"id": "2", "title": "b"}))
    assert (status, body["status"], body.get("row_count")) == (200, "success", 2), body
    assert isinstance(body["last_seq"], str) and int(body["last_seq"]) > 0
    assert isinstance(body["took"], float | int) and body["took"] >= 0
    data = pa.table({"id": [3, 4], "title": ["c", "d"], "price": ["3.25", None]})
    status, body = await client.ingest("app/items", arrow_stream(data),
                                       content_type=f"{ARROW}; charset=binary")
    assert (status, body["row_count"]) == (200, 2), body
    assert await client.rows("SELECT id, title, price, created IS NOT NULL FROM app.items") == [
        ["1", "a", "1.50", True], ["2", "b", None, True], ["3", "c", "3.25", True],
        ["4", "d", None, True]]
    # USER table: alice's rows in her partition, defaults per row; bob sees none of them.
    alice = user("alice")
    status, body = await client.ingest("app/notes", ndjson({"body": "x"}, {"body": "y"}),
                                       user=alice)
    assert (status, body["row_count"]) == (200, 2), body
    got = await client.rows("SELECT id, body, owner FROM app.notes ORDER BY body", alice)
    assert [r[1:] for r in got] == [["x", "alice"], ["y", "alice"]] and got[0][0] != got[1][0]
    assert await client.rows("SELECT body FROM app.notes", user("bob")) == []
    # STREAM table, Arrow body, as alice.
    status, _ = await client.ingest("app/events", arrow_stream(pa.table({"kind": ["k"],
                                                                        "n": [1]})),
                                    user=alice, content_type=ARROW)
    assert status == 200
    assert await client.rows("SELECT kind, n FROM app.events", alice) == [["k", 1]]
    assert await client.rows("SELECT kind FROM app.events", user("bob")) == []


REJECTED = [  # (body, content type, status, code, message fragment)
    (b'{"id":10,"title":"a"}\n{"id":11,"title":\n', NDJSON, 400, "INVALID_INPUT",
     "Line 2: invalid JSON"),
    (ndjson({"id": 10, "title": "a"}, {"id": "ten", "title": "b"}), NDJSON, 400,
     "SQL_EXECUTION_ERROR", "Line 2: Invalid value for column 'id' (BIGINT)"),
    (ndjson({"id": 10, "title": None}), NDJSON, 400, "SQL_EXECUTION_ERROR",
     "Line 1: Column 'title' cannot be null"),
    (ndjson({"id": 10, "title": "a"}, {"id": 10, "title": "b"}), NDJSON, 400,
     "SQL_EXECUTION_ERROR", "Primary key violation: value '10' already exists in column 'id'"),
    (ndjson({"id": 10, "title": "a"}, {"id": 1, "title": "b"}), NDJSON, 400,
     "SQL_EXECUTION_ERROR", "Primary key violation: value '1' already exists"),
    (ndjson({"id": 10, "title": "a", "colour": "red"}), NDJSON, 400, "INVALID_INPUT",
     "Line 1: unknown column 'colour'"),
    (arrow_stream(pa.table({"id": [10, 11], "title": ["a", None]})), ARROW, 400,
     "SQL_EXECUTION_ERROR", "Row 2: Column 'title' cannot be null"),
    (b"\x00garbage", ARROW, 400, "INVALID_INPUT", "Invalid Arrow IPC stream"),
    (ndjson({"id": 10, "title": "a"}), "application/json", 400, "INVALID_INPUT",
     "Unsupported Content-Type 'application/json'"),
    (b"", NDJSON, 400, "INVALID_INPUT", "The request body is empty"),
    (b"\n\n", NDJSON, 400, "INVALID_INPUT", "holds no rows"),
]


async def _check_rejections(client: Client) -> None:
    for body, content_type, status, code, fragment in REJECTED:
        got_status, got = await client.ingest("app/items", body, content_type=content_type)
        assert (got_status, got["status"], got["error"]["code"]) == (status, "error", code), got
        assert fragment in got["error"]["message"], got
    huge = ndjson(*({"id": 100 + i, "title": "x" * 100} for i in range(1000)))
    assert len(huge) > INGEST_LIMIT
    status, body = await client.ingest("app/items", huge)
    assert (status, body["error"], body["size_bytes"], body["max_bytes"]) == (
        413, "BODY_TOO_LARGE", len(huge), INGEST_LIMIT)
    status, body = await client.ingest("app/items", ndjson({"id": 10, "title": "a"}), user=None)
    assert (status, body["error"]["code"]) == (401, "MISSING_AUTHORIZATION")
    # Nothing of any rejected request is visible.
    assert await client.rows("SELECT count(*), max(id) FROM app.items") == [["4", "4"]]


async def _check_who_may_write(client: Client) -> None:
    alice, bob, svc = user("alice"), user("bob"), user("svc", "service")
    body = ndjson({"id": 50, "title": "t"})
    status, got = await client.ingest("app/nope", body)
    assert (status, got["error"]) == (400, {"code": "TABLE_NOT_FOUND",
                                            "message": "Table 'app.nope' does not exist"})
    status, got = await client.ingest("app/nope", body, user=alice)
    assert (status, got["error"]) == (400, {"code": "TABLE_NOT_FOUND",
                                            "message": "SQL statement failed"})
    status, got = await client.ingest("app/items", body, user=alice)
    assert (status, got["error"]["code"]) == (403, "PERMISSION_DENIED")
    # Impersonation: service -> user allowed; user -> anyone else refused.
    status, got = await client.ingest("app/notes", ndjson({"body": "from svc"}), user=svc,
                                      query="?user_id=bob")
    assert status == 200, got
    assert await client.rows("SELECT body, owner FROM app.notes", bob) == [["from svc", "bob"]]
    status, got = await client.ingest("app/notes", ndjson({"body": "sneaky"}), user=alice,
                                      query="?user_id=bob")
    assert (status, got["error"]["code"]) == (403, "PERMISSION_DENIED")
    status, got = await client.ingest("app/notes", ndjson({"body": "up"}), user=alice,
                                      query="?user_id=svc")
    assert (status, got["error"]["code"]) == (403, "PERMISSION_DENIED")
    status, got = await client.ingest("app/items", body, query="?user_id=bob")
    assert (status, got["error"]["code"]) == (400, "SQL_EXECUTION_ERROR")
    assert await client.rows("SELECT body FROM app.notes", bob) == [["from svc"]]
    assert await client.rows("SELECT count(*) FROM app.notes", svc) == [["0"]]
    assert await client.rows("SELECT count(*) FROM app.items WHERE id = 50") == [["0"]]


async def _check_routing(client: Client) -> None:
    server, body = client.server, ndjson({"id": 60, "title": "routed"})
    resp = await http_request(server, "GET", "/v1/api/ingest/app/items")
    assert (resp.status, resp.headers["allow"], resp.body) == (405, "POST", b"")
    for path in ("/v1/api/ingest/app", "/v1/api/ingest/app/items/x", "/v1/api/ingest//items",
                 "/v1/api/ingest/app%2Fitems/x", "/v1/api/ingest/app/it%2Fems",
                 "/v1/api/ingest/app/%FF", "/v1/api/nope"):
        resp = await http_request(server, "POST", path, {"Content-Type": NDJSON}, body)
        assert (resp.status, resp.body) == (404, b""), path
    resp = await http_request(server, "GET", "/v1/api/sql")
    assert (resp.status, resp.headers["allow"]) == (405, "POST")
    # Segments are decoded exactly once: %61 is "a"; %252F is the literal text "%2F".
    status, got = await client.ingest("%61pp/item%73", body)
    assert (status, got["row_count"]) == (200, 1), got
    status, got = await client.ingest("app/it%252Fems", body)
    assert (status, got["error"]["message"]) == (400, "Table 'app.it%2fems' does not exist")


async def test_ingest_route__rows_survive_a_restart(tmp_path: Path) -> None:
    # The reply comes after the WAL fsync: SIGTERM, start again, the rows are there.
    config(tmp_path)
    lines = [{"id": i, "title": f"t{i}"} for i in range(500)]
    async with running_server(tmp_path) as server:
        client = Client(server)
        for statement in SETUP[:2]:
            await client.rows(statement)
        status, body = await client.ingest("app/items", ndjson(*lines))
        assert (status, body["row_count"]) == (200, 500), body
    async with running_server(tmp_path) as server:
        client = Client(server)
        assert await client.rows("SELECT count(*), max(id), max(_seq) FROM app.items") == [
            ["500", "499", body["last_seq"]]]
