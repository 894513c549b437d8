"""A large FILE upload and download with bounded memory (issue 7): the limits are raised to
48 MiB in ``server.toml`` and a 24 MiB file goes up through multipart ``POST /v1/api/sql`` and
back through ``GET /v1/files/…``. The server's peak resident memory is measured from
``/proc/<pid>/status``: the peak (``VmHWM``) is reset through ``/proc/<pid>/clear_refs``
just before the transfer, and its growth over the resident size before it must stay far
below the file's size — a server that buffered the body or the file whole would exceed it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.api.files_client import FilesClient, file_part, ref_of, sha256, stored_files
from tests.api.harness import running_server

FILE_BYTES = 24 * 1024 * 1024
LIMIT_BYTES = 48 * 1024 * 1024
# Peak RSS growth allowed during the round trip: a third of the file. Streaming needs a few
# chunks (and the allocator's slack); one whole copy of the file would be 24 MiB.
RSS_GROWTH_MAX_BYTES = FILE_BYTES // 3


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} missing from /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS


async def test_files_large__24_mib_round_trip__bounded_server_memory(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        f"[auth]\nbcrypt_cost = 4\n[rate_limit]\nrequest_body_limit_bytes = {LIMIT_BYTES}\n"
        f"[files]\nmax_size_bytes = {LIMIT_BYTES}\n")
    data = random.Random(7).randbytes(FILE_BYTES)
    async with running_server(tmp_path) as server:
        client = FilesClient(server)
        await client.sql("CREATE NAMESPACE app")
        await client.sql("CREATE SHARED TABLE app.blobs (id BIGINT PRIMARY KEY, body FILE)")
        pid = server.process.pid
        # Warm up both paths with a small file so imports and caches are not counted.
        await client.upload("INSERT INTO app.blobs (id, body) VALUES (0, FILE(\"f\"))",
                            [file_part("f", b"warm-up", "w.bin")])
        before_kib = _status_kib(pid, "VmRSS")
        _reset_peak(pid)
        reply = await client.upload("INSERT INTO app.blobs (id, body) VALUES (1, FILE(\"f\"))",
                                    [file_part("f", data, "big.bin")])
        assert reply.status == 200, reply.body
        [[cell]] = await client.rows("SELECT body FROM app.blobs WHERE id = 1")
        ref = ref_of(cell)
        assert (ref["size"], ref["sha256"]) == (FILE_BYTES, sha256(data))
        reply = await client.download(f"/v1/files/app/blobs/{ref['sub']}/{ref['id']}-big.bin")
        assert reply.status == 200 and len(reply.body) == FILE_BYTES
        assert sha256(reply.body) == ref["sha256"]
        growth = (_status_kib(pid, "VmHWM") - before_kib) * 1024
        assert growth < RSS_GROWTH_MAX_BYTES, (
            f"server peak RSS grew {growth / 2**20:.1f} MiB for a "
            f"{FILE_BYTES / 2**20:.0f} MiB file")
        stored = server.data_dir / "files" / "app" / "blobs" / ref["sub"] / \
            f"{ref['id']}-big.bin"
        assert os.path.getsize(stored) == FILE_BYTES
        assert len(stored_files(server.data_dir)) == 2
