"""The server under test for the crash and fault suites: ``sluice serve`` as a subprocess
that a test may SIGKILL, arm with failpoints, or stop cleanly, and a tiny HTTP client.

``launch(tmp_path, failpoints=…)`` starts the server on ``tmp_path/data`` with
``tmp_path/server.toml`` (``CONFIG_TOML``: bcrypt cost 4, no per-user or per-IP rate limit,
64 KiB WAL segments so a short run rolls segments) and returns a ``Node`` once the
readiness line is printed. The caller must ``kill()``/``stop()`` it and ``aclose()`` it
(``aclose`` SIGKILLs a process still alive). Tokens are minted from the JWT secret the
server generated into its data directory (as tests/api/files_client.py does).

``call`` never raises for a dead server: it returns ``None`` (the outcome is unknown: the
request may or may not have been applied).
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from api.auth import issue_token
from engine.catalog import User
from tests.api.harness import START_TIMEOUT_S, _read_until_ready, serve_command, server_env
from wal import failpoints as fp

ROOT = User("root", "system", email="root@localhost", auth_type="Internal")
WAL_SEGMENT_BYTES = 64 * 1024  # rolls every second or so of this workload
CONFIG_TOML = f"""\
[storage]
wal_segment_size_bytes = {WAL_SEGMENT_BYTES}
fsync = "{{fsync}}"
[auth]
bcrypt_cost = 4
[rate_limit]
max_queries_per_sec = 0
enable_connection_protection = false
"""
REQUEST_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
REPLAY_TIMEOUT_S = 120.0


@dataclass
class Reply:
    status: int
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Node:
    process: trio.Process
    host: str
    port: int
    data_dir: Path
    stderr: bytearray = field(default_factory=bytearray)
    _token: str | None = None

    @property
    def log(self) -> str:
        return self.stderr.decode(errors="replace")[-4000:]

    def token(self) -> str:
        if self._token is None:
            secret = (self.data_dir / "jwt_secret").read_text().strip()
            self._token = issue_token(secret, ROOT, "access", time.time(), 24)[0]
        return self._token

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def wait(self, timeout_s: float) -> int | None:
        with trio.move_on_after(timeout_s):
            return await self.process.wait()
        return None

    async def stop(self, *, failing_with: str | None = None) -> None:
        """SIGTERM; the server must shut down cleanly (exit 0). With ``failing_with`` (a
        disk fault still armed) its log must also name that reason: the shutdown's
        checkpoint writes fail, which is reported but does not fail the shutdown."""
        self.process.send_signal(signal.SIGTERM)
        code = await self.wait(STOP_TIMEOUT_S)
        assert code == 0, f"server exited {code} on SIGTERM:\n{self.log}"
        if failing_with is not None:
            assert failing_with in self.log, f"{failing_with!r} not logged:\n{self.log}"
            assert "Traceback" not in self.log, self.log

    async def aclose(self) -> None:
        self.kill()
        await self.process.wait()


async def _drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


async def launch(nursery: trio.Nursery, tmp_path: Path, *, failpoints: str = "",
                 may_die: bool = False, fsync: str = "always") -> Node:
    """Starts the server; ``failpoints`` is a ``SLUICE_FAILPOINTS`` spec for its process,
    ``fsync`` its WAL fsync policy (a process kill keeps the page cache, so every policy
    must keep every acknowledged write).
    The stderr drain runs in ``nursery`` (it ends when the process dies). With ``may_die``
    a process that exits before it is ready (an armed point fired during start-up) is
    returned as a ``Node`` whose requests all find it gone; otherwise that raises."""
    (tmp_path / "server.toml").write_text(CONFIG_TOML.format(fsync=fsync))
    data_dir = tmp_path / "data"
    process = await trio.lowlevel.open_process(
        serve_command(), env=server_env(data_dir, SLUICE_FAILPOINTS=failpoints), cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        with trio.fail_after(START_TIMEOUT_S):
            url = await _read_until_ready(process.stderr, lines)
    except AssertionError:  # exited before the readiness line
        await process.wait()
        if not may_die:
            raise
        url = "http://127.0.0.1:1"  # nothing listens there: every call finds it gone
    except BaseException:
        process.kill()
        await process.wait()
        raise
    host, _, port = url.removeprefix("http://").rpartition(":")
    node = Node(process, host.strip("[]"), int(port), data_dir,
                bytearray("".join(lines).encode()))
    nursery.start_soon(_drain, process.stderr, node.stderr)
    return node


def _call_sync(node: Node, method: str, path: str, body: bytes | None,
               headers: dict[str, str]) -> Reply | None:
    conn = http.client.HTTPConnection(node.host, node.port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read())
    except (ConnectionError, http.client.HTTPException, OSError):
        return None  # the server died (or was never reachable): outcome unknown
    finally:
        conn.close()


async def call(node: Node, method: str, path: str, body: bytes | dict | None = None, *,
               content_type: str = "application/json", auth: bool = True) -> Reply | None:
    headers = {"Content-Type": content_type} if body is not None else {}
    if auth:
        headers["Authorization"] = f"Bearer {node.token()}"
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return await trio.to_thread.run_sync(_call_sync, node, method, path, raw, headers)


async def sql(node: Node, text: str, params: list | None = None) -> dict[str, Any]:
    """Runs SQL that must succeed; returns the JSON reply."""
    body: dict[str, Any] = {"sql": text}
    if params is not None:
        body["params"] = params
    reply = await call(node, "POST", "/v1/api/sql", body)
    assert reply is not None, f"server gone during {text!r}:\n{node.log}"
    assert reply.status == 200, (text, reply.status, reply.body[:2000])
    return reply.json


async def rows(node: Node, text: str) -> list[list[Any]]:
    return (await sql(node, text))["results"][0].get("rows", [])


async def replay_verify(data_dir: Path) -> tuple[int, str]:
    """Runs ``sluice replay --verify`` on a stopped server's directory: (exit code, output)."""
    result = await trio.run_process(
        [sys.executable, "-m", "tools.cli", "replay", "--verify", str(data_dir)],
        capture_stdout=True, capture_stderr=True, check=False,
        env=server_env(data_dir), cwd=data_dir.parent)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")[-4000:]


def failpoint_names() -> list[str]:
    """Every named failpoint, WAL and upper layers: a new one gets a crash case."""
    return sorted(fp.REGISTRY) + sorted(fp.UPPER_REGISTRY)
