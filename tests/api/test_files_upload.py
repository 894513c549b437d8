"""FILE uploads through multipart ``POST /v1/api/sql`` (issue 7, PROTOCOL §5.1-§5.3) against
the real server: the round trip (bytes and SHA-256 back through ``GET /v1/files/…``), the
stored-name and folder rules, and every refusal — after each refusal the ``files/`` tree and
the staging directory must hold nothing new.

A ``server.toml`` lowers the limits so each path is cheap to reach: 64 KiB per file, three
files per request, two files per folder, and an allow-list of MIME types.
"""

from __future__ import annotations

from pathlib import Path

from engine.catalog import User
from tests.api.files_client import (
    ROOT,
    FilesClient,
    Part,
    file_part,
    ref_of,
    sha256,
    staging_entries,
    stored_files,
)
from tests.api.harness import running_server

FILE_LIMIT_BYTES = 64 * 1024
ALICE = User("alice", "user")
SETUP = [
    "CREATE NAMESPACE app",
    "CREATE USER TABLE app.docs (id BIGINT PRIMARY KEY, title TEXT, attachment FILE)",
    "CREATE SHARED TABLE app.board (id BIGINT PRIMARY KEY, attachment FILE) "
    "WITH (ACCESS_LEVEL = 'PUBLIC')",
    "CREATE STREAM TABLE app.events (id BIGINT, attachment FILE) WITH (TTL_SECONDS = 3600)",
    "CREATE USER alice WITH PASSWORD 'pw-alice-1' ROLE user",
]


def write_config(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        "[auth]\nbcrypt_cost = 4\n[rate_limit]\nmax_queries_per_sec = 0\n"
        f"[files]\nmax_size_bytes = {FILE_LIMIT_BYTES}\nmax_files_per_request = 3\n"
        "max_files_per_folder = 2\n"
        'allowed_mime_types = ["text/*", "application/pdf", "application/octet-stream"]\n')


async def test_files__upload_download_round_trip__bytes_hash_names_and_folders(
        tmp_path: Path) -> None:
    # One file per INSERT into a USER table; the cell is the FileRef, the download gives the
    # same bytes; the third file opens folder f0002 (two per folder in this config).
    write_config(tmp_path)
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        for statement in SETUP:
            await client.sql(statement)
        payloads = [b"%PDF-1.4 contract " * 100, b"second\x00\xff binary", b"third file"]
        names = ["Q3 Contract.pdf", "notes_v2.TXT", "weird name?.tar.gz.zip-part"]
        for n, (data, name) in enumerate(zip(payloads, names, strict=True), start=1):
            reply = await client.upload(
                f'INSERT INTO app.docs (id, title, attachment) VALUES ({n}, \'t\', '
                f'FILE("doc"))', [file_part("doc", data, name)])
            assert reply.status == 200, reply.body
            assert reply.json["results"][0]["message"] == "Inserted 1 row(s)"
        rows = await client.rows("SELECT id, attachment FROM app.docs ORDER BY id")
        refs = [ref_of(cell) for _, cell in rows]
        assert [r["sub"] for r in refs] == ["f0001", "f0001", "f0002"]
        assert [r["name"] for r in refs] == names
        assert [r["size"] for r in refs] == [len(p) for p in payloads]
        assert [r["sha256"] for r in refs] == [sha256(p) for p in payloads]
        assert [r["mime"] for r in refs] == ["application/pdf", "text/plain",
                                              "application/octet-stream"]
        stored = [f"{refs[0]['id']}-q3-contract.pdf", f"{refs[1]['id']}-notes-v2.txt",
                  f"{refs[2]['id']}-weird-nametargz.bin"]
        assert stored_files(server.data_dir) == [
            Path("app/docs/root") / ref["sub"] / name for ref, name in zip(refs, stored,
                                                                           strict=True)]
        for ref, name, data in zip(refs, stored, payloads, strict=True):
            reply = await client.download(f"/v1/files/app/docs/{ref['sub']}/{name}")
            assert reply.status == 200, reply.body
            assert reply.body == data and sha256(reply.body) == ref["sha256"]
            assert reply.headers["content-disposition"] == f'inline; filename="{name}"'
            assert reply.headers["content-length"] == str(len(data))
        assert (await client.download(f"/v1/files/app/docs/f0001/{stored[0]}")
                ).headers["content-type"] == "application/pdf"
        await _check_more_upload_shapes(client, server.data_dir)
        assert staging_entries(server.data_dir) == []


async def _check_more_upload_shapes(client: FilesClient, data_dir: Path) -> None:
    # Two placeholders in one statement, single quotes, an unused part (dropped), params,
    # namespace_id, EXECUTE AS USER, an UPDATE, and a multipart form with no placeholder.
    before = len(stored_files(data_dir))
    reply = await client.upload(
        "INSERT INTO docs (id, title, attachment) VALUES ($1, 'a', FILE('a-1.x')), "
        "(11, 'b', file(\"b\"))",
        [file_part("a-1.x", b"A", "a.txt", "text/plain"), file_part("b", b"B", "b.txt"),
         file_part("unused", b"U", "u.txt")],
        extra=[Part("params", b"[10]"), Part("namespace_id", b"app")])
    assert reply.status == 200, reply.body
    assert len(stored_files(data_dir)) == before + 2
    reply = await client.upload(
        "EXECUTE AS USER 'alice' (INSERT INTO app.docs (id, attachment) VALUES (1, "
        "FILE(\"x\")))", [file_part("x", b"alice's", "mine.txt")])
    assert reply.status == 200, reply.body
    assert reply.json["results"][0]["as_user"] == "alice"
    assert [p for p in stored_files(data_dir) if p.parts[2] == "alice"]
    reply = await client.upload("UPDATE app.docs SET attachment = FILE(\"n\") WHERE id = 2",
                                [file_part("n", b"new", "new.txt")])
    assert (reply.status, reply.json["results"][0]["message"]) == (200, "Updated 1 row(s)")
    [[cell]] = await client.rows("SELECT attachment FROM app.docs WHERE id = 2")
    assert ref_of(cell)["sha256"] == sha256(b"new")
    reply = await client.upload("SELECT 40 + 2 AS x; SELECT 1", [file_part("z", b"z")])
    assert reply.status == 200, reply.body
    assert len(reply.json["results"]) == 2


async def test_files__refusals__status_code_and_nothing_left_behind(tmp_path: Path) -> None:
    # Each refused upload answers the §5.1/§5.3 status and code, and leaves no file, no
    # staging directory and no row.
    write_config(tmp_path)
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        for statement in SETUP:
            await client.sql(statement)
        await client.sql("INSERT INTO app.docs (id, title) VALUES (1, 'taken')")
        insert = "INSERT INTO app.docs (id, attachment) VALUES (5, FILE(\"f\"))"
        one = [file_part("f", b"data", "f.txt")]
        cases = [
            (insert + "; SELECT 1", one, ROOT, 400, "INVALID_INPUT"),
            (insert, [file_part(f"p{i}", b"x") for i in range(4)], ROOT, 400,
             "TOO_MANY_FILES"),
            (insert, [file_part("f", b"x" * (FILE_LIMIT_BYTES + 1), "big.txt")], ROOT,
             400, "FILE_TOO_LARGE"),
            (insert, [file_part("f", b"PK..", "a.zip", "application/zip")], ROOT, 400,
             "INVALID_MIME_TYPE"),
            (insert, [file_part("other", b"x")], ROOT, 400, "MISSING_FILE"),
            (insert.replace("app.docs", "app.events"), one, ROOT, 400, "INVALID_INPUT"),
            ("INSERT INTO system.users (user_id) VALUES (FILE(\"f\"))", one, ROOT, 400,
             "INVALID_INPUT"),
            (insert.replace("app.docs", "app.nope"), one, ROOT, 400, "TABLE_NOT_FOUND"),
            ("SELECT FILE(\"f\")", one, ROOT, 400, "INVALID_INPUT"),
            (insert.replace("(5,", "(1,"), one, ROOT, 400, "SQL_EXECUTION_ERROR"),
            ("INSERT INTO app.board (id, attachment) VALUES (1, FILE(\"f\"))", one, ALICE,
             403, "PERMISSION_DENIED"),
            ("EXECUTE AS USER 'root' (" + insert + ")", one, ALICE, 403, "PERMISSION_DENIED"),
            (None, one, ROOT, 400, "EMPTY_SQL"),
            ("   ", one, ROOT, 400, "EMPTY_SQL"),
            ("UPDATE app.docs SET attachment = FILE(\"f\") WHERE id = 999", one, ROOT,
             200, None),
        ]
        for sql, parts, user, status, code in cases:
            reply = await client.upload(sql, parts, user=user)
            assert (reply.status, reply.code if code else None) == (status, code), \
                (sql, reply.body)
            assert stored_files(server.data_dir) == [], sql
            assert staging_entries(server.data_dir) == [], sql
        await _check_body_refusals(client, server.data_dir)
        assert await client.rows("SELECT id FROM app.docs") == [["1"]]



async def _check_body_refusals(client: FilesClient, data_dir: Path) -> None:
    # Bad params, a JSON body with a placeholder, a truncated body, a missing boundary.
    reply = await client.upload("INSERT INTO app.docs (id, attachment) VALUES ($1, "
                                "FILE(\"f\"))", [file_part("f", b"x")],
                                extra=[Part("params", b'{"a": 1}')])
    assert (reply.status, reply.code) == (400, "INVALID_PARAMETER")
    assert reply.json["error"]["message"] == "Params must be a JSON array"
    reply = await client.sql("INSERT INTO app.docs (id, attachment) VALUES (7, "
                             "FILE('f'))", ok=False)
    assert (reply.status, reply.code) == (400, "INVALID_INPUT")
    assert reply.json["error"]["message"] == "FILE placeholders require multipart/form-data"
    body = b'--B\r\nContent-Disposition: form-data; name="sql"\r\n\r\nSELECT 1\r\n--B'
    for content_type in ("multipart/form-data; boundary=B", "multipart/form-data"):
        reply = await client.request("POST", "/v1/api/sql", body=body,
                                     headers={"Content-Type": content_type})
        assert (reply.status, reply.code) == (400, "INVALID_INPUT"), reply.body
    assert stored_files(data_dir) == []
    assert staging_entries(data_dir) == []
