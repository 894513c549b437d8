"""A FILE upload killed between the file move and the row's commit (issue 7): the server dies
at each ``files.*`` failpoint (``os._exit(137)``, as a SIGKILL would) in the middle of an
upload; after a restart there is no orphaned file, no leftover staging directory, no row
for the lost upload, and every earlier committed upload still downloads byte for byte (no
dangling reference). Parametrized over ``wal.failpoints.UPPER_REGISTRY``, so a new
``files.*`` point gets this test automatically.
"""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path

import pytest
import trio

from tests.api.files_client import FilesClient, file_part, ref_of, staging_entries, stored_files
from tests.api.harness import (
    START_TIMEOUT_S,
    _read_until_ready,
    running_server,
    serve_command,
    server_env,
)
from wal import failpoints

FILE_POINTS = sorted(name for name in failpoints.UPPER_REGISTRY if name.startswith("files."))
KEPT, LOST = b"committed before the crash", b"in flight when the server died"
INSERT = "INSERT INTO app.docs (id, attachment) VALUES ({id}, FILE(\"f\"))"


async def _upload_until_killed(tmp_path: Path, failpoint: str) -> None:
    """Runs the server with ``failpoint`` armed and uploads; the server must die (137)."""
    process = await trio.lowlevel.open_process(
        serve_command(), env=server_env(tmp_path / "data",
                                        SLUICE_FAILPOINTS=f"{failpoint}=exit"),
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        with trio.fail_after(START_TIMEOUT_S):
            url = await _read_until_ready(process.stderr, lines)
        host, _, port = url.removeprefix("http://").rpartition(":")
        client = FilesClient(_Address(tmp_path / "data", host, int(port)))
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            await client.upload(INSERT.format(id=2), [file_part("f", LOST, "lost.txt")])
        with trio.fail_after(10):
            code = await process.wait()
        assert code == failpoints.EXIT_CODE, "".join(lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


class _Address:
    """Enough of harness.Server for FilesClient."""

    def __init__(self, data_dir: Path, host: str, port: int) -> None:
        self.data_dir, self.host, self.port = data_dir, host, port


@pytest.mark.parametrize("failpoint", FILE_POINTS)
async def test_files_crash__killed_between_move_and_commit__no_orphan_no_dangling_row(
        tmp_path: Path, failpoint: str) -> None:
    (tmp_path / "server.toml").write_text("[auth]\nbcrypt_cost = 4\n")
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        await client.sql("CREATE NAMESPACE app")
        await client.sql("CREATE USER TABLE app.docs (id BIGINT PRIMARY KEY, attachment FILE)")
        reply = await client.upload(INSERT.format(id=1), [file_part("f", KEPT, "kept.txt")])
        assert reply.status == 200, reply.body
        [kept] = stored_files(server.data_dir)
    await _upload_until_killed(tmp_path, failpoint)
    # The move happened and nothing cleaned up: the orphan and the staging dir are there.
    assert len(stored_files(tmp_path / "data")) == 2
    assert len(staging_entries(tmp_path / "data")) == 1
    async with running_server(tmp_path) as server:
        assert stored_files(server.data_dir) == [kept]
        assert staging_entries(server.data_dir) == []
        client = FilesClient(server)
        rows = await client.rows("SELECT id, attachment FROM app.docs")
        assert [row[0] for row in rows] == ["1"]
        ref = ref_of(rows[0][1])
        reply = await client.download(f"/v1/files/app/docs/{ref['sub']}/{kept.name}")
        assert (reply.status, reply.body) == (200, KEPT)
        # The lost upload can simply be retried; it lands next to the kept file.
        reply = await client.upload(INSERT.format(id=2), [file_part("f", LOST, "lost.txt")])
        assert reply.status == 200, reply.body
        assert len(stored_files(server.data_dir)) == 2
