"""Bugs the issue-9 fuzzers found, pinned as plain scenarios (issue 9).

Each is an ordinary test now that all of them are fixed. A bug found but not yet fixed is
pinned with ``xfail(strict=True)`` (the day the fix lands the test passes, strict xfail
turns that into a failure, and whoever fixed it removes the marker).
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.api.files_client import FilesClient
from tests.api.fuzz_support import call
from tests.api.harness import running_server
from tests.api.ws_client import ws_connect
from tests.api.ws_harness import ws_server

# JSON nested deeper than Python's recursion limit: json.loads raises RecursionError, which
# is not a ValueError.
DEEP_JSON = "[" * 50_000 + "]" * 50_000

DML_TARGET_NOT_A_TABLE = [
    "INSERT INTO (id, app.t v) VALUES (1, 'a')",  # found by test_fuzz_sql, --seed 2
    "INSERT INTO (SELECT 1) VALUES (1)",
    "DELETE FROM (SELECT 1) WHERE 1 = 1",
    "DELETE app.items WHERE id = 1",  # found by mutating tests/fixtures/sql/dml.sql
]


async def test_issue9__dml_target_not_a_table__400_not_500(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        for statement in ("CREATE NAMESPACE app",
                          "CREATE TABLE app.items (id BIGINT PRIMARY KEY) WITH (TYPE='SHARED')"):
            await client.sql(statement)
        statuses = {}
        for text in DML_TARGET_NOT_A_TABLE:
            reply = await client.sql(text, ok=False)
            statuses[text] = (reply.status, json.loads(reply.body)["error"]["code"])
        assert all(status == 400 for status, _ in statuses.values()), statuses


async def test_issue9__deep_json__multipart_params_and_ws_frame__refused_cleanly(
        tmp_path: Path) -> None:
    # Found by hand after the fuzzers' hostile-JSON list: both escaped as RecursionError
    # (multipart: an empty-bodied 500; WebSocket: hypercorn's "Error in ASGI Framework"
    # and a bare 1011). Fixed in api/upload.py and api/ws/frames.py.
    async with ws_server(tmp_path) as (server, users):
        boundary = "deep"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"sql\"\r\n\r\n"
                f"SELECT $1\r\n--{boundary}\r\nContent-Disposition: form-data; "
                f"name=\"params\"\r\n\r\n{DEEP_JSON}\r\n--{boundary}--\r\n").encode()
        reply = await trio.to_thread.run_sync(lambda: call(
            server, "POST", "/v1/api/sql", body, token=users.alice,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        assert (reply.status, reply.json()["error"]["code"]) == (400, "INVALID_PARAMETER")
        async with ws_connect(server, token=users.alice) as ws:
            assert (await ws.recv_json())["type"] == "auth_success"
            await ws.send_text('{"type":"ping","x":' + DEEP_JSON + "}")
            close = await ws.recv()
            assert (close.kind, close.code) == ("close", 1011), close
            assert close.reason == "Invalid message: not JSON: nested too deeply"
        log = "".join(server.stderr)
        assert "Error in ASGI Framework" not in log and "Traceback" not in log, log[-2000:]


async def test_issue9__deep_json_in_admin_statements__400_not_500(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        statuses = []
        for text in (f"CREATE USER gh WITH OAUTH '{DEEP_JSON}'",
                     f"CREATE STORAGE s TYPE filesystem NAME 'x' BASE_DIRECTORY '/tmp/x' "
                     f"CONFIG '{DEEP_JSON}'"):
            statuses.append((await client.sql(text, ok=False)).status)
        assert statuses == [400, 400], statuses
