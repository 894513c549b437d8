"""``GET /v1/files/{namespace}/{table_name}/{subfolder}/{file_id}`` (issue 7, PROTOCOL §5.4)
against the real server: who may read which file (USER scope, ``?user_id=`` and the
impersonation matrix, SHARED access levels), and every malformed or hostile path — ``..``
plain and percent-encoded, encoded slashes and backslashes, NUL, absolute paths — refused
without serving a byte of anything.
"""

from __future__ import annotations

from pathlib import Path

from engine.catalog import User
from tests.api.files_client import FilesClient, file_part, ref_of, stored_files
from tests.api.harness import raw_exchange, running_server

ALICE, BOB = User("alice", "user"), User("bob", "user")
SVC, DBA = User("svc", "service"), User("ops", "dba")
SETUP = [
    "CREATE NAMESPACE app",
    "CREATE USER TABLE app.docs (id BIGINT PRIMARY KEY, attachment FILE)",
    "CREATE SHARED TABLE app.private (id BIGINT PRIMARY KEY, attachment FILE)",
    "CREATE SHARED TABLE app.open (id BIGINT PRIMARY KEY, attachment FILE) "
    "WITH (ACCESS_LEVEL = 'PUBLIC')",
    "CREATE STREAM TABLE app.events (id BIGINT, attachment FILE) WITH (TTL_SECONDS = 60)",
    "CREATE USER alice WITH PASSWORD 'pw-alice-1' ROLE user",
    "CREATE USER bob WITH PASSWORD 'pw-bob-12' ROLE user",
    "CREATE USER svc WITH PASSWORD 'pw-svc-12' ROLE service",
    "CREATE USER ops WITH PASSWORD 'pw-ops-12' ROLE dba",
]
SECRET = b"alice's secret contract"


async def _upload(client: FilesClient, table: str, user: User | None = None) -> str:
    """Uploads one file as ``user`` (root by default); returns its download path."""
    kwargs = {"user": user} if user is not None else {}
    reply = await client.upload(f"INSERT INTO app.{table} (id, attachment) VALUES (1, "
                                f"FILE(\"f\"))", [file_part("f", SECRET, "Contract.pdf")],
                                **kwargs)
    assert reply.status == 200, reply.body
    [[cell]] = await client.rows(f"SELECT attachment FROM app.{table}", **kwargs)
    ref = ref_of(cell)
    return f"/v1/files/app/{table}/{ref['sub']}/{ref['id']}-contract.pdf"


async def test_files_download__scopes_roles_and_access_levels(tmp_path: Path) -> None:
    # Alice's file: hers to read; bob (user) can neither reach it through his own scope nor
    # ask for alice's; a service or dba may target alice; SHARED follows the access level.
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n[rate_limit]\n"
                                          "max_queries_per_sec = 0\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        for statement in SETUP:
            await client.sql(statement)
        path = await _upload(client, "docs", ALICE)
        assert (await client.download(path, ALICE)).body == SECRET
        assert (await client.download(path, BOB)).code == "FILE_NOT_FOUND"
        reply = await client.download(path + "?user_id=alice", BOB)
        assert (reply.status, reply.code) == (403, "PERMISSION_DENIED")
        assert reply.json["error"]["message"] == \
            "Requested user is not allowed for the current role"
        for reader in (SVC, DBA):
            reply = await client.download(path + "?user_id=alice", reader)
            assert (reply.status, reply.body) == (200, SECRET)
        assert (await client.download(path + "?user_id=alice", ALICE)).body == SECRET
        assert (await client.download(path + "?user_id=", ALICE)).status == 400
        reply = await client.download(path, None)
        assert (reply.status, reply.code) == (401, "MISSING_AUTHORIZATION")
        private, public = await _upload(client, "private"), await _upload(client, "open")
        reply = await client.download(private, ALICE)
        assert (reply.status, reply.code) == (403, "PERMISSION_DENIED")
        assert (await client.download(private, SVC)).body == SECRET
        assert (await client.download(public, ALICE)).body == SECRET
        reply = await client.download(public + "?user_id=alice", ALICE)
        assert (reply.status, reply.code) == (400, "INVALID_INPUT")
        await _check_misses(client)


async def _check_misses(client: FilesClient) -> None:
    reply = await client.download("/v1/files/app/nope/f0001/1-a.txt")
    assert (reply.status, reply.json) == (404, {"error": "Table 'app.nope' not found"})
    reply = await client.download("/v1/files/app/docs/f0001/123-missing.txt")
    assert (reply.status, reply.json) == (404, {"error": "File not found",
                                                "code": "FILE_NOT_FOUND"})
    reply = await client.download("/v1/files/app/docs/f0001/")  # a trailing empty segment
    assert (reply.status, reply.body) == (404, b"")
    for path in ("/v1/files/app/events/f0001/1-a.txt", "/v1/files/system/users/f0001/1.txt",
                 "/v1/files/app/docs/x0001/1-a.txt", "/v1/files/app/docs/f001/1-a.txt"):
        reply = await client.download(path)
        assert (reply.status, reply.code) == (400, "INVALID_INPUT"), path


async def test_files_download__traversal_attempts__refused(tmp_path: Path) -> None:
    # A real file exists one level up from where each attempt points (the table's user
    # folder holds f0001/…); a secret sits next to the data dir. No attempt may return it.
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n")
    (tmp_path / "secret.txt").write_bytes(b"TOP SECRET")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        for statement in SETUP[:2]:
            await client.sql(statement)
        path = await _upload(client, "docs")
        name = path.rsplit("/", 1)[1]
        [stored] = stored_files(server.data_dir)
        assert stored.name == name
        refused_400 = [
            f"/v1/files/app/../f0001/{name}", "/v1/files/app/docs/f0001/..",
            f"/v1/files/../docs/f0001/{name}", f"/v1/files/app/docs/../{name}",
            f"/v1/files/app/docs/%2e%2e/{name}", "/v1/files/app/docs/f0001/%2E%2E",
            f"/v1/files/app/docs/f0001/{name}%00", f"/v1/files/app/docs/f0001/..%5C{name}",
            "/v1/files/app/docs/f0001/..%5C..%5C..%5Csecret.txt",
            "/v1/files/%2e%2e/docs/f0001/x", f"/v1/files/app/docs/%00f0001/{name}",
        ]
        for attempt in refused_400:
            reply = await client.download(attempt)
            assert (reply.status, reply.code) == (400, "INVALID_INPUT"), attempt
            assert reply.json["error"]["message"] == "Invalid file path"
        refused_404 = [  # the router: an extra segment or an encoded '/' never matches
            f"/v1/files/app/docs/../f0001/{name}", "/v1/files/app/docs/f0001/../../../x",
            "/v1/files/app/docs/f0001/..%2F..%2F..%2F..%2Fsecret.txt",
            "/v1/files/app/docs/f0001/%2Fetc%2Fpasswd", "/v1/files/%2Fetc/docs/f0001/x",
            "/v1/files/app/docs/f0001%2F..%2Ff0001/" + name,
            "/v1/files//etc/passwd/f0001/x", "/v1/files/app/docs/f0001/%252e%252e",
        ]
        for attempt in refused_404:
            reply = await client.download(attempt)
            assert reply.status in (400, 404) and SECRET not in reply.body, attempt
            assert b"TOP SECRET" not in reply.body
        raw = await raw_exchange(server, b"GET /v1/files/app/docs/f0001/" + name.encode() +
                                 b"\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert SECRET not in raw
        assert (await client.download(path)).body == SECRET  # the real path still works
