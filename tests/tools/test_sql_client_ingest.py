"""`sluice ingest`: the batching of NDJSON and Arrow files (pure), and a small file streamed
into a real server's table through `POST /v1/api/ingest/{ns}/{table}`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa

from tests.api.harness import running_server
from tests.tools.client_harness import FAST_BCRYPT, ROOT_PASSWORD, sluice
from tools.ingest import Progress, arrow_batches, arrow_rows, ndjson_batches, ndjson_rows


def _ndjson(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"id": i, "name": f"n{i}"}) + ("\n" if i % 7 else "\n\n")
                            for i in range(count)).rstrip("\n"))  # blank lines, no final \n
    return path


def _arrow(path: Path, count: int, file_format: bool) -> Path:
    table = pa.table({"id": pa.array(range(count), pa.int64()),
                      "name": [f"n{i}" for i in range(count)]})
    opener = pa.ipc.new_file if file_format else pa.ipc.new_stream
    with pa.OSFile(str(path), "wb") as sink, opener(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=9):  # batches that cut across requests
            writer.write_batch(batch)
    return path


def test_ingest__ndjson_batches__rows_and_bytes_limits(tmp_path: Path) -> None:
    path = _ndjson(tmp_path / "rows.ndjson", 25)
    assert ndjson_rows(path) == 25
    batches = list(ndjson_batches(path, batch_rows=10, batch_bytes=1 << 20))
    assert [rows for _, rows in batches] == [10, 10, 5]
    lines = b"".join(body for body, _ in batches).splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(25))
    small = list(ndjson_batches(path, batch_rows=100, batch_bytes=60))
    assert all(len(body) <= 60 for body, _ in small) and sum(r for _, r in small) == 25


def test_ingest__arrow_batches__stream_and_file_formats_recut(tmp_path: Path) -> None:
    for file_format in (False, True):
        path = _arrow(tmp_path / f"rows{file_format}.arrow", 25, file_format)
        assert arrow_rows(path) == 25
        batches = list(arrow_batches(path, batch_rows=10, batch_bytes=1 << 20))
        assert [rows for _, rows in batches] == [10, 10, 5]
        ids = [i for body, _ in batches
               for i in pa.ipc.open_stream(io.BytesIO(body)).read_all()["id"].to_pylist()]
        assert ids == list(range(25))


async def test_ingest__files_into_a_real_table(tmp_path: Path) -> None:
    # NDJSON and Arrow files in several batches each; the rows land, counted once each.
    (tmp_path / "server.toml").write_text(FAST_BCRYPT)
    home = tmp_path / "home"
    async with running_server(tmp_path, KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD) as server:
        env = {"SLUICE_PASSWORD": ROOT_PASSWORD}
        url = ("--url", server.base_url)
        run = await sluice(home, "sql", *url, "-c", "CREATE NAMESPACE app; CREATE TABLE "
                           "app.items (id BIGINT PRIMARY KEY, name TEXT) WITH (TYPE='SHARED')",
                           **env)
        assert run.code == 0, run.err
        run = await sluice(home, "ingest", "app.items", str(_ndjson(tmp_path / "a.ndjson", 25)),
                           "--batch-rows", "10", *url, **env)
        assert run.code == 0, run.err
        assert "ingested 25 of 25 rows into app.items" in run.err
        arrow = _arrow(tmp_path / "b.arrow", 40, file_format=False)
        run = await sluice(home, "ingest", "app.items", str(arrow), "--batch-rows", "16", *url,
                           **env)
        assert run.code == 1 and "ingested 0 of 40" in run.err, run  # ids 0..24 exist
        run = await sluice(home, "sql", *url, "-c", "SELECT COUNT(*) AS n FROM app.items",
                           "--format", "csv", **env)
        assert run.out.splitlines() == ["n", "25"], run
        run = await sluice(home, "ingest", "app.items", str(tmp_path / "a.ndjson"), *url,
                           "--format", "arrow", **env)
        assert run.code == 64 and "cannot read" in run.err
        run = await sluice(home, "ingest", "items", str(arrow), *url, **env)
        assert run.code == 64


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_ingest__progress_bar__drawn_on_a_terminal_only() -> None:
    screen = _Terminal()
    progress = Progress(screen, "app.items", 40)
    for sent in (0, 10, 40):
        progress.update(sent)
    progress.done()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[1] == "app.items [" + "#" * 7 + "." * 23 + "] 10/40 rows (25%)"
    assert frames[2] == "app.items [" + "#" * 30 + "] 40/40 rows (100%)\n"
    quiet = io.StringIO()
    Progress(quiet, "app.items", 40).update(10)
    assert quiet.getvalue() == ""
