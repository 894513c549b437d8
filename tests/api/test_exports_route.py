"""``GET /v1/exports/{user_id}/{export_id}`` (PROTOCOL §1.5) against the real server: the
owner and admins download the ZIP that ``EXPORT USER DATA`` wrote; anyone else is refused;
hostile path segments are 400; a missing export is 404 ``EXPORT_NOT_FOUND``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from engine.catalog import User
from tests.api.files_client import FilesClient
from tests.api.harness import running_server

ALICE, BOB, OPS = User("alice", "user"), User("bob", "user"), User("ops", "dba")
SETUP = [
    "CREATE NAMESPACE app",
    "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)",
    "CREATE USER alice WITH PASSWORD 'pw-alice-1' ROLE user",
    "CREATE USER bob WITH PASSWORD 'pw-bob-12' ROLE user",
    "CREATE USER ops WITH PASSWORD 'pw-ops-12' ROLE dba",
]


async def test_exports__owner_and_admin_download_others_refused(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n[rate_limit]\n"
                                          "max_queries_per_sec = 0\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        for statement in SETUP:
            await client.sql(statement)
        await client.sql("INSERT INTO app.notes (id, body) VALUES (1, 'alice only')", ALICE)
        [row] = await client.rows("EXPORT USER DATA", ALICE)
        export_id, path = row[0], row[1]
        assert path == f"/v1/exports/alice/{export_id}"

        for user in (ALICE, OPS):
            reply = await client.download(path, user)
            assert reply.status == 200, reply.body
            assert reply.headers["content-type"] == "application/zip"
            assert reply.headers["content-disposition"] == \
                f'attachment; filename="{export_id}.zip"'
            with zipfile.ZipFile(io.BytesIO(reply.body)) as archive:
                contents = b"".join(archive.read(name) for name in archive.namelist())
            assert b"alice only" in contents

        reply = await client.download(path, BOB)
        assert (reply.status, reply.code) == (403, "PERMISSION_DENIED")
        reply = await client.download(path, None)
        assert reply.status == 401

        missing = await client.download("/v1/exports/alice/no-such-export", ALICE)
        assert (missing.status, missing.json) == \
            (404, {"error": "Export not found", "code": "EXPORT_NOT_FOUND"})
        for hostile in ("..", "a..b", "%5C", "%00"):
            reply = await client.download(f"/v1/exports/alice/{hostile}", ALICE)
            assert (reply.status, reply.code) == (400, "INVALID_INPUT"), (hostile, reply.body)
        # an encoded slash never reaches the handler: the router matches no route
        reply = await client.download("/v1/exports/alice/x%2Fy", ALICE)
        assert reply.status == 404 and reply.body == b""
