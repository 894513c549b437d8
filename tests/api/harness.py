"""Runs the REAL server (``python -m tools.cli serve``) in a subprocess for HTTP tests.

``running_server(tmp_path)`` picks a free port, points ``KALAMDB_DATA_DIR`` at a temporary
directory, waits for the readiness line on stderr and yields a ``Server`` (base URL, data
dir, collected stderr). On exit it sends SIGTERM and asserts exit code 0 within a timeout.

``http_request`` is a tiny stdlib ``http.client`` call run in a worker thread; ``raw_exchange``
writes raw bytes to a socket (for h2c and other malformed traffic) and returns what comes
back before the peer closes or goes quiet.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"serving on (http://\S+) ")
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


@dataclass
class Server:
    base_url: str
    host: str
    port: int
    data_dir: Path
    process: trio.Process
    stderr: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The parent's environment minus any KALAMDB_*, plus the repo on PYTHONPATH (the
    package is importable whatever the state of the editable install)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALAMDB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["KALAMDB_DATA_DIR"] = str(data_dir)
    env["KALAMDB_SERVER_PORT"] = str(free_port())
    env.update(overrides)
    return env


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.cli", "serve", *args]


async def _read_until_ready(stream: trio.abc.ReceiveStream, lines: list[str]) -> str:
    buffer = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise AssertionError("server exited before it was ready:\n" + "".join(lines))
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace") + "\n"
            lines.append(line)
            match = READY.search(line)
            if match:
                return match.group(1)


async def _drain(stream: trio.abc.ReceiveStream, lines: list[str]) -> None:
    while chunk := await stream.receive_some(65536):
        lines.append(chunk.decode(errors="replace"))


@contextlib.asynccontextmanager
async def running_server(tmp_path: Path, **env_overrides: str) -> AsyncIterator[Server]:
    data_dir = tmp_path / "data"
    process = await trio.lowlevel.open_process(
        serve_command(), env=server_env(data_dir, **env_overrides), cwd=tmp_path,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        assert process.stderr is not None
        with trio.fail_after(START_TIMEOUT_S):
            url = await _read_until_ready(process.stderr, lines)
        host, _, port = url.removeprefix("http://").rpartition(":")
        server = Server(url, host.strip("[]"), int(port), data_dir, process, lines)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, process.stderr, lines)
            yield server
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(STOP_TIMEOUT_S):
                code = await process.wait()
        assert code == 0, f"server exited {code}:\n{''.join(lines)}"
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    version: int  # 11 for HTTP/1.1


def _request_sync(server: Server, method: str, path: str, headers: dict[str, str],
                  body: bytes | None = None) -> Response:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body,
                        resp.version)
    finally:
        conn.close()


async def http_request(server: Server, method: str, path: str,
                       headers: dict[str, str] | None = None, body: bytes | None = None
                       ) -> Response:
    return await trio.to_thread.run_sync(_request_sync, server, method, path, headers or {},
                                         body)


async def raw_exchange(server: Server, data: bytes, quiet_s: float = 1.0) -> bytes:
    """Sends ``data`` and collects the reply until the server closes the connection or
    stays silent for ``quiet_s`` seconds."""
    stream = await trio.open_tcp_stream(server.host, server.port)
    received = b""
    async with stream:
        await stream.send_all(data)
        while True:
            with trio.move_on_after(quiet_s) as scope:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:  # reset by the server
                    chunk = b""
            if scope.cancelled_caught or not chunk:
                return received
            received += chunk
