"""Releasing files (issue 7): a file whose row was deleted, or whose FILE value was replaced
by an UPDATE, stays on disk while a held row version still references it, and is deleted by
the release job once compaction dropped those versions; files still referenced stay; a
dropped table's files go. ``files.release_interval_seconds = 1`` makes the job run every
jobs round.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.api.files_client import FilesClient, file_part, ref_of, stored_files
from tests.api.harness import running_server

RELEASE_WAIT_SECONDS = 10
INSERT = "INSERT INTO app.docs (id, attachment) VALUES ({id}, FILE(\"f\"))"


async def _names(client: FilesClient) -> dict[str, str]:
    """Row id -> stored file name, from the FileRefs."""
    rows = await client.rows("SELECT id, attachment FROM app.docs")
    return {row_id: f"{ref_of(cell)['id']}-{row_id}.txt" for row_id, cell in rows}


async def _wait_until_gone(data_dir: Path, names: set[str]) -> None:
    """Polls the files tree (the release job signals nothing a client can wait on)."""
    with trio.fail_after(RELEASE_WAIT_SECONDS):
        for _ in range(RELEASE_WAIT_SECONDS * 10 + 1):
            if not names & {p.name for p in stored_files(data_dir)}:
                return
            await trio.sleep(0.1)


async def test_files_release__delete_update_then_compaction__old_files_released(
        tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        "[auth]\nbcrypt_cost = 4\n[files]\nrelease_interval_seconds = 1\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        await client.sql("CREATE NAMESPACE app")
        await client.sql("CREATE USER TABLE app.docs (id BIGINT PRIMARY KEY, attachment FILE)")
        for n in (1, 2, 3):
            reply = await client.upload(INSERT.format(id=n),
                                        [file_part("f", b"v%d" % n, f"{n}.txt")])
            assert reply.status == 200, reply.body
        first = await _names(client)
        reply = await client.upload("UPDATE app.docs SET attachment = FILE(\"f\") WHERE id = 2",
                                    [file_part("f", b"v2 new", "2.txt")])
        assert reply.status == 200, reply.body
        await client.sql("DELETE FROM app.docs WHERE id = 1")
        current = await _names(client)
        await trio.sleep(2.5)  # release rounds run; superseded versions are still held
        on_disk = {p.name for p in stored_files(server.data_dir)}
        assert on_disk == {*first.values(), current["2"]}
        await client.sql("STORAGE COMPACT TABLE app.docs")
        await _wait_until_gone(server.data_dir, {first["1"], first["2"]})
        assert {p.name for p in stored_files(server.data_dir)} == {current["2"], current["3"]}
        for row_id, body in (("2", b"v2 new"), ("3", b"v3")):
            [sub] = {p.parts[-2] for p in stored_files(server.data_dir)
                     if p.name == current[row_id]}
            reply = await client.download(f"/v1/files/app/docs/{sub}/{current[row_id]}")
            assert (reply.status, reply.body) == (200, body)
        await client.sql("DROP TABLE app.docs")
        await _wait_until_gone(server.data_dir, set(current.values()))
        assert stored_files(server.data_dir) == []
