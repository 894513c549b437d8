"""The single-statement-returning-rows response of ``POST /v1/api/sql`` (PROTOCOL §1.3):
``schema`` always present, ``rows``, ``row_count``, ``as_user``, then ``"took"`` and
``"error": null`` at the end, in exactly that order; small results in one body with
Content-Length, results over ``SQL_STREAM_CHUNK_ROWS`` rows streamed chunked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from api.sql_rows import SQL_STREAM_CHUNK_ROWS
from engine.catalog import User
from tests.api.harness import Server, http_request, running_server
from tests.api.test_sql_route import ROOT, SECRET, token_for

ROWS_TOTAL = 2 * SQL_STREAM_CHUNK_ROWS + 37  # three chunks, the last one partial


async def call(server: Server, token: str, body: dict[str, Any]):
    resp = await http_request(server, "POST", "/v1/api/sql", {
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json.dumps(body).encode())
    assert resp.status == 200, resp.body
    return resp, json.loads(resp.body)


async def test_sql_rows__single_select__shape_order_and_streaming(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        f"[auth]\nbcrypt_cost = 4\n[limits]\nmax_query_limit = {ROWS_TOTAL}\n")
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        root = token_for(ROOT)
        await call(server, root, {"sql": "CREATE TABLE default.t (id BIGINT PRIMARY KEY, "
                                         "v TEXT, f DOUBLE)"})
        await call(server, root, {"sql": "INSERT INTO default.t (id, v, f) VALUES ($1, $2, $3)",
                                  "params": [[i, f"v\u00e9{i}", i / 4] for i in range(ROWS_TOTAL)]})
        await _check_small_result(server, root)
        await _check_chunking(server, root)
        await _check_other_shapes(server, root)


async def _check_small_result(server: Server, root: str) -> None:
    resp, body = await call(server, root, {"sql": "SELECT id, v FROM default.t WHERE id < 2 "
                                                  "ORDER BY id"})
    assert resp.body.startswith(b'{"status":"success","results":[{"schema":[{"name":"id",')
    assert resp.body.endswith(b',"error":null}')
    assert int(resp.headers["content-length"]) == len(resp.body)
    assert list(body) == ["status", "results", "took", "error"] and body["error"] is None
    [result] = body["results"]
    assert list(result) == ["schema", "rows", "row_count", "as_user"]
    assert (result["rows"], result["row_count"], result["as_user"]) == (
        [["0", "v\u00e90"], ["1", "v\u00e91"]], 2, "root")
    # An empty result still carries its schema.
    _, body = await call(server, root, {"sql": "SELECT id FROM default.t WHERE id < 0"})
    assert body["results"] == [{"schema": [{"name": "id", "data_type": "BigInt", "index": 0,
                                            "flags": ["pk", "nn", "uq"]}],
                                "rows": [], "row_count": 0, "as_user": "root"}]


async def _check_chunking(server: Server, root: str) -> None:
    for limit, streamed in ((SQL_STREAM_CHUNK_ROWS, False), (SQL_STREAM_CHUNK_ROWS + 1, True),
                            (ROWS_TOTAL, True)):
        resp, body = await call(server, root, {
            "sql": f"SELECT id, v, f FROM default.t ORDER BY id LIMIT {limit}"})
        assert ("content-length" not in resp.headers) == streamed, limit
        assert (resp.headers.get("transfer-encoding") == "chunked") == streamed, limit
        [result] = body["results"]
        assert result["row_count"] == len(result["rows"]) == limit
        assert result["rows"] == [[str(i), f"v\u00e9{i}", i / 4] for i in range(limit)]
        assert body["error"] is None and list(body) == ["status", "results", "took", "error"]


async def _check_other_shapes(server: Server, root: str) -> None:
    # Several statements, DML and DDL keep the non-streamed envelope: no "error" key.
    for sql in ("SELECT 1 AS a; SELECT 2 AS b", "INSERT INTO default.t (id, v, f) VALUES "
                "(-1, 'x', 0)", "CREATE NAMESPACE other"):
        _, body = await call(server, root, {"sql": sql})
        assert "error" not in body, sql
    # Impersonated SELECT: streamed shape with as_user = the target.
    await call(server, root, {"sql": "CREATE USER TABLE default.notes (id INT PRIMARY KEY)"})
    await call(server, root, {"sql": "CREATE USER bob WITH PASSWORD 'pw-bob-12' ROLE user"})
    _, body = await call(server, root, {"sql": "EXECUTE AS USER 'bob' "
                                               "(SELECT id FROM default.notes)"})
    assert (body["results"][0]["as_user"], body["error"]) == ("bob", None)
    _, body = await call(server, token_for(User("bob", "user")),
                         {"sql": "SELECT id FROM default.notes"})
    assert (body["results"][0]["as_user"], body["results"][0]["rows"]) == ("bob", [])
