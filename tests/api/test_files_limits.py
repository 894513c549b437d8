"""The FILE limits without a test before (issue 7), each hit exactly at its boundary and one
past it, against the real server:

- ``api.multipart.PARTS_MAX`` (parts per multipart request, any kind): PARTS_MAX parts are
  served, one more is 400 ``INVALID_INPUT``;
- ``engine.files.SUBFOLDER_NUMBER_MAX`` (the last folder, ``f9999``): with one file per
  folder and ``f9998`` already full, the next upload goes to ``f9999`` and the one after is
  refused with 400 ``SQL_EXECUTION_ERROR``, leaving no file behind. The folder state is made
  on disk as the engine makes it — a row whose FileRef names a file in ``f9998``, and that
  file — because thousands of real uploads would be far too slow;
- ``api.upload.FILE_SIZE_ABSOLUTE_MAX_BYTES`` (100 MiB per file part, whatever
  ``files.max_size_bytes`` says — the code's contract is a clamp, not a refused config):
  with ``max_size_bytes`` and the body limit set above it, a part of exactly 100 MiB is
  stored and one of 100 MiB + 1 byte is 400 ``FILE_TOO_LARGE``. The bodies are generated
  on the fly (a generator with a Content-Length), never held whole by the test.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import trio

from api.multipart import PARTS_MAX
from api.upload import FILE_SIZE_ABSOLUTE_MAX_BYTES
from engine.files import SUBFOLDER_NUMBER_MAX, subfolder_name
from tests.api.files_client import (
    ROOT,
    FilesClient,
    Part,
    file_part,
    ref_of,
    staging_entries,
    stored_files,
)
from tests.api.harness import Server, running_server

INSERT = "INSERT INTO app.board (id, attachment) VALUES ({id}, FILE(\"f\"))"


def write_config(tmp_path: Path, extra: str = "") -> None:
    (tmp_path / "server.toml").write_text(
        "[auth]\nbcrypt_cost = 4\n[rate_limit]\nmax_queries_per_sec = 0\n" + extra)


async def setup_board(client: FilesClient) -> None:
    await client.sql("CREATE NAMESPACE app")
    await client.sql("CREATE SHARED TABLE app.board (id BIGINT PRIMARY KEY, attachment FILE)")


async def test_files_limits__parts_max__at_the_limit_served_one_more_refused(
        tmp_path: Path) -> None:
    # The sql part plus PARTS_MAX - 1 ignored parts is PARTS_MAX parts: served. One more
    # ignored part: refused while parsing, nothing staged.
    write_config(tmp_path)
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        ignored = [Part(f"note{i}", b"x") for i in range(PARTS_MAX - 1)]
        reply = await client.upload("SELECT 1 AS one", [], extra=ignored)
        assert reply.status == 200, reply.body
        assert reply.json["results"][0]["rows"] == [["1"]]  # BIGINT as a string
        reply = await client.upload("SELECT 1 AS one", [], extra=[*ignored, Part("n", b"x")])
        assert (reply.status, reply.code) == (400, "INVALID_INPUT"), reply.body
        assert f"more than {PARTS_MAX} multipart parts" in reply.json["error"]["message"]
        assert staging_entries(server.data_dir) == []


async def test_files_limits__last_folder_f9999__filled_then_uploads_refused(
        tmp_path: Path) -> None:
    # One file per folder; f9998 holds a referenced file, so the next upload takes f9999
    # (the last folder) and the one after has nowhere to go.
    write_config(tmp_path, "[files]\nmax_files_per_folder = 1\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        await setup_board(client)
        before_last = subfolder_name(SUBFOLDER_NUMBER_MAX - 1)
        ref = {"id": "12345", "sub": before_last, "name": "old.bin", "size": 3,
               "mime": "application/octet-stream", "sha256": hashlib.sha256(b"old").hexdigest()}
        text = json.dumps(ref, separators=(",", ":")).replace("'", "''")
        await client.sql(f"INSERT INTO app.board (id, attachment) VALUES (1, '{text}')")
        folder = server.data_dir / "files" / "app" / "board" / before_last
        folder.mkdir(parents=True)
        (folder / "12345-old.bin").write_bytes(b"old")
        reply = await client.upload(INSERT.format(id=2), [file_part("f", b"last", "l.bin")])
        assert reply.status == 200, reply.body
        [[cell]] = await client.rows("SELECT attachment FROM app.board WHERE id = 2")
        assert ref_of(cell)["sub"] == "f9999" == subfolder_name(SUBFOLDER_NUMBER_MAX)
        stored = stored_files(server.data_dir)
        reply = await client.upload(INSERT.format(id=3), [file_part("f", b"none", "n.bin")])
        assert (reply.status, reply.code) == (400, "SQL_EXECUTION_ERROR"), reply.body
        assert "no file folder left (f9999 is full)" in reply.json["error"]["message"]
        assert stored_files(server.data_dir) == stored
        assert len(stored) == 2
        assert staging_entries(server.data_dir) == []
        assert await client.rows("SELECT id FROM app.board ORDER BY id") == [["1"], ["2"]]


CHUNK_BYTES = 1024 * 1024


def _streamed_upload(server: Server, token: str, sql: str, size: int) -> tuple[int, dict,
                                                                                str]:
    """POSTs a multipart body whose one file part holds ``size`` generated bytes, without
    holding it; returns (status, JSON body, SHA-256 of the part)."""
    boundary = f"sluice-{uuid.uuid4().hex}"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="sql"\r\n\r\n{sql}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file:f"; '
            f'filename="big.bin"\r\n\r\n').encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = bytes(range(256)) * (CHUNK_BYTES // 256)
    hasher = hashlib.sha256()

    def body() -> Iterator[bytes]:
        yield head
        left = size
        while left:
            piece = block[:min(left, CHUNK_BYTES)]
            hasher.update(piece)
            left -= len(piece)
            yield piece
        yield tail

    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    try:
        conn.request("POST", "/v1/api/sql", body=body(), headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + size + len(tail))})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), hasher.hexdigest()
    finally:
        conn.close()


async def test_files_limits__absolute_100_mib__exactly_stored_one_byte_more_refused(
        tmp_path: Path) -> None:
    # files.max_size_bytes above the cap is clamped to it: 100 MiB passes, +1 byte does not.
    over = 2 * FILE_SIZE_ABSOLUTE_MAX_BYTES
    write_config(tmp_path, f"request_body_limit_bytes = {over + CHUNK_BYTES}\n"
                           f"[files]\nmax_size_bytes = {over}\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        await setup_board(client)
        token = client.token(ROOT)
        status, body, digest = await trio.to_thread.run_sync(
            _streamed_upload, server, token, INSERT.format(id=1), FILE_SIZE_ABSOLUTE_MAX_BYTES)
        assert status == 200, body
        [[cell]] = await client.rows("SELECT attachment FROM app.board WHERE id = 1")
        ref = ref_of(cell)
        assert (ref["size"], ref["sha256"]) == (FILE_SIZE_ABSOLUTE_MAX_BYTES, digest)
        status, body, _ = await trio.to_thread.run_sync(
            _streamed_upload, server, token, INSERT.format(id=2),
            FILE_SIZE_ABSOLUTE_MAX_BYTES + 1)
        assert (status, body["error"]["code"]) == (400, "FILE_TOO_LARGE"), body
        assert body["error"]["message"] == (
            f"File 'big.bin' exceeds maximum size of {FILE_SIZE_ABSOLUTE_MAX_BYTES} bytes")
        assert len(stored_files(server.data_dir)) == 1
        assert staging_entries(server.data_dir) == []
