"""`sluice subscribe`: a live query against a real server over /v1/ws (PROTOCOL §6): the
initial rows (gzip binary frames included), then a live insert, update and delete; the
server's error for a bad query; table output; and Ctrl-C ending the command with exit 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from tests.api.harness import ROOT, running_server
from tests.tools.client_harness import FAST_BCRYPT, ROOT_PASSWORD, client_env, sluice

READ_TIMEOUT_S = 15


class Lines:
    """Reads whole lines from a child's stdout, each awaited with a bound."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.buffer = b""

    async def take(self, count: int) -> list[str]:
        with trio.fail_after(READ_TIMEOUT_S):
            while self.buffer.count(b"\n") < count:
                chunk = await self.stream.receive_some(65536)
                assert chunk, f"stdout closed; so far: {self.buffer!r}"
                self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n", count)
        return [line.decode() for line in lines]


async def _sql(home: Path, url: tuple[str, str], env: dict[str, str], statement: str) -> None:
    run = await sluice(home, "sql", *url, "-c", statement, **env)
    assert run.code == 0, run.err


def _strip_seq(line: str) -> dict[str, Any]:
    """A JSON output line with the `_seq` cells (server-chosen) checked and removed."""
    data = json.loads(line)
    for part in ("row", "old"):
        if part in data:
            assert int(data[part].pop("_seq")) > 0
    return data


async def test_subscribe__initial_rows_then_live_changes_then_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(FAST_BCRYPT)
    home = tmp_path / "home"
    async with running_server(tmp_path, KALAMDB_ROOT_PASSWORD=ROOT_PASSWORD) as server:
        env = {"SLUICE_PASSWORD": ROOT_PASSWORD}
        url = ("--url", server.base_url)
        await _sql(home, url, env, (
            "CREATE NAMESPACE app; CREATE TABLE app.items (id BIGINT PRIMARY KEY, name TEXT) "
            "WITH (TYPE='SHARED'); INSERT INTO app.items (id, name) VALUES (1, 'a'), (2, 'b')"))
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tools.cli", "subscribe",
             "SELECT id, name FROM app.items WHERE id > 0", *url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(home, **env),
            cwd=ROOT)
        try:
            lines = Lines(process)
            initial = [_strip_seq(line) for line in await lines.take(2)]
            assert initial == [{"change": "initial", "row": {"id": "1", "name": "a"}},
                               {"change": "initial", "row": {"id": "2", "name": "b"}}]
            await _sql(home, url, env, "INSERT INTO app.items (id, name) VALUES (3, 'c')")
            assert _strip_seq((await lines.take(1))[0]) == {
                "change": "insert", "row": {"id": "3", "name": "c"}}
            await _sql(home, url, env, "UPDATE app.items SET name = 'C' WHERE id = 3")
            assert _strip_seq((await lines.take(1))[0]) == {
                "change": "update", "row": {"id": "3", "name": "C"},
                "old": {"id": "3", "name": "c"}}
            await _sql(home, url, env, "DELETE FROM app.items WHERE id = 3")
            deleted = _strip_seq((await lines.take(1))[0])
            assert deleted["change"] == "delete" and "row" not in deleted
            assert deleted["old"]["id"] == "3" and deleted["old"]["name"] == "C"
            process.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await _check_table_format_and_errors(home, url, env)


async def _check_table_format_and_errors(home: Path, url: tuple[str, str],
                                         env: dict[str, str]) -> None:
    # A query the server refuses: its code and message on stderr, exit 1, nothing on stdout.
    run = await sluice(home, "subscribe", "SELECT * FROM app.items ORDER BY id", *url, **env)
    assert run.code == 1, run
    assert "INVALID_SQL" in run.err and "ORDER BY" in run.err and run.out == ""
    run = await sluice(home, "subscribe", "SELECT * FROM app.nope", *url, **env)
    assert run.code == 1 and "NOT_FOUND" in run.err, run
    # Unreachable server: exit 5.
    run = await sluice(home, "subscribe", "SELECT * FROM app.items", "--url",
                       "http://127.0.0.1:1", **env)
    assert run.code == 5, run
    # Initial data over 512 bytes arrives as a gzip binary frame (PROTOCOL §6.2): unpacked.
    values = ", ".join(f"({i}, '{'x' * 30}')" for i in range(10, 50))
    await _sql(home, url, env, f"INSERT INTO app.items (id, name) VALUES {values}")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tools.cli", "subscribe", "SELECT * FROM app.items", *url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(home, **env), cwd=ROOT)
    try:
        rows = [json.loads(line) for line in await Lines(process).take(42)]
        assert [int(r["row"]["id"]) for r in rows] == [1, 2, *range(10, 50)]
        assert {r["change"] for r in rows} == {"initial"}
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # --format table with --last-rows: the header, then only the newest row.
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tools.cli", "subscribe", "SELECT id, name FROM app.items",
         "--format", "table", "--last-rows", "1", *url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env(home, **env), cwd=ROOT)
    try:
        header, rule, row = await Lines(process).take(3)
        assert [cell.strip() for cell in header.split(" | ")][:3] == ["change", "id", "name"]
        assert header.startswith("change   | id       | "), header  # padded to 8 columns
        assert set(rule) <= {"-", "+"}
        assert [cell.strip() for cell in row.split(" | ")][:3] == ["initial", "49", "x" * 30]
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
