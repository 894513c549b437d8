"""``GET /v1/files/...`` path tricks in EVERY segment and in ``?user_id=`` (issue 9), beyond
tests/api/test_files_download.py's list: each of namespace, table_name, subfolder and
file_id gets dot segments in every encoding (plain, percent, mixed case, double-encoded,
overlong UTF-8, full-width and one-dot leaders), encoded slashes and backslashes, NUL, CR/LF,
absolute paths and a very long segment; ``?user_id=`` gets dot segments and separators from
a dba (who may otherwise name any user). A symlink planted where a file would be is not
followed. Every attempt is a 4xx that serves no byte of a file; the real path still works.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.catalog import User
from tests.api.files_client import FilesClient, file_part, ref_of, stored_files
from tests.api.harness import running_server

ALICE, DBA = User("alice", "user"), User("ops", "dba")
SETUP = [
    "CREATE NAMESPACE app",
    "CREATE USER TABLE app.docs (id BIGINT PRIMARY KEY, attachment FILE)",
    "CREATE USER alice WITH PASSWORD 'pw-alice-1' ROLE user",
    "CREATE USER ops WITH PASSWORD 'pw-ops-123' ROLE dba",
]
CONTENT = b"alice's contract, not for anyone else"
HOST_SECRET = b"HOST SECRET"
# Each replaces one whole segment.
SEGMENT_TRICKS = [
    "..", ".", "%2e%2e", "%2E%2e", ".%2e", "%2e.", "%252e%252e", "%c0%ae%c0%ae",
    "%ef%bc%8e%ef%bc%8e", "..%5c..%5c..%5cetc", "%5c", "..%2f..", "%2fetc%2fpasswd",
    "%00", "x%00.txt", "%0d%0aX-Injected:%201", "..;", "%2e%2e%3b", "~", "*",
    "x" * 5000, "%e2%80%ae", "%ff%fe", "...", "%20..", "..%20",
]
USER_ID_TRICKS = ["..", ".", "%2e%2e", "%2e", "alice%2f..", "..%2falice", "alice%00",
                  "%5c..", "../alice", "./alice", "alice/.."]


def _with(segments: list[str], index: int, value: str) -> str:
    parts = list(segments)
    parts[index] = value
    return "/v1/files/" + "/".join(parts)


async def test_files_traversal__every_segment_and_user_id__refused(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n[rate_limit]\n"
                                          "max_queries_per_sec = 0\n")
    (tmp_path / "secret.txt").write_bytes(HOST_SECRET)
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        for statement in SETUP:
            await client.sql(statement)
        reply = await client.upload("INSERT INTO app.docs (id, attachment) VALUES "
                                    "(1, FILE(\"f\"))", [file_part("f", CONTENT, "c.txt")],
                                    user=ALICE)
        assert reply.status == 200, reply.body
        [[cell]] = await client.rows("SELECT attachment FROM app.docs", ALICE)
        ref = ref_of(cell)
        segments = ["app", "docs", ref["sub"], f"{ref['id']}-c.txt"]
        real = "/v1/files/" + "/".join(segments)
        assert (await client.download(real, ALICE)).body == CONTENT
        for index in range(4):
            for trick in SEGMENT_TRICKS:
                for user in (ALICE, DBA):
                    path = _with(segments, index, trick)
                    reply = await client.download(path, user)
                    assert 400 <= reply.status < 500, (path, user, reply.status)
                    assert CONTENT not in reply.body and HOST_SECRET not in reply.body
        for trick in USER_ID_TRICKS:
            reply = await client.download(f"{real}?user_id={trick}", DBA)
            assert 400 <= reply.status < 500, (trick, reply.status, reply.body[:200])
            assert CONTENT not in reply.body
        assert (await client.download(f"{real}?user_id=alice", DBA)).body == CONTENT
        await _check_symlink(client, server.data_dir, segments, tmp_path / "secret.txt")


async def _check_symlink(client: FilesClient, data_dir: Path, segments: list[str],
                         secret: Path) -> None:
    # Only the server writes the files tree; a link planted there (by an operator mistake
    # or another process) is still not followed.
    [stored] = stored_files(data_dir)
    link = data_dir / "files" / stored.parent / "999-link.txt"
    os.symlink(secret, link)
    reply = await client.download(_with(segments, 3, "999-link.txt"), ALICE)
    assert (reply.status, reply.code) == (404, "FILE_NOT_FOUND")
    assert HOST_SECRET not in reply.body
