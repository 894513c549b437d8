"""Servers of the HTTP benchmark: ``sluice serve`` and the bare ASGI ceiling as subprocesses,
plus the few blocking HTTP calls the benchmark makes itself (login, DDL, loading rows).

``running_server`` starts a command with its stderr in a log file, waits for the readiness
line (``… serving on http://HOST:PORT``), yields a ``ServerProcess`` and always stops it
(SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``), also on errors and Ctrl-C. Servers run in
their own session, so a Ctrl-C in the terminal reaches only the benchmark, which then stops
them in order.

Sluice runs exactly as ``sluice serve`` (``python -m tools.cli serve``) on a fresh data
directory (``KALAMDB_DATA_DIR``, ``KALAMDB_SERVER_PORT``, ``KALAMDB_ROOT_PASSWORD``) with a
``server.toml`` that only raises the rate limits (``SERVER_TOML``): the per-user query
bucket (100/s by default) would otherwise answer 429 to any load test. Everything else —
fsync=always, body limit, bcrypt cost — is the default.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY = re.compile(r"serving on http://(\S+):(\d+)")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 300.0  # loading 10,000 rows in one request on a busy machine
SERVER_TOML = """\
# Written by bench/http_api.py: only the rate limits differ from the defaults.
[rate_limit]
max_queries_per_sec = 10000000
max_requests_per_ip_per_sec = 10000000
max_auth_requests_per_ip_per_sec = 1000
"""
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class ServerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    host: str = ""
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _wait_ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = READY.search(server.log.read_text(errors="replace"))
        if match:
            server.host, server.port = match.group(1).strip("[]"), int(match.group(2))
            return
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited {server.process.returncode} before it was "
                               f"ready:\n{server.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} not ready after {START_TIMEOUT_S:g} s:\n"
                       f"{server.log_tail()}")


def _stop(server: ServerProcess) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_server(name: str, command: Sequence[str], *, env: dict[str, str], cwd: Path,
                   log: Path) -> Iterator[ServerProcess]:
    """A started server (see the module docstring); stopped when the block exits."""
    with open(log, "wb") as stderr:
        process = subprocess.Popen(list(command), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
    server = ServerProcess(name, process, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)
    if server.process.returncode not in (0, -signal.SIGKILL):
        sys.stderr.write(f"bench: {name} exited {server.process.returncode}:\n"
                         f"{server.log_tail()}\n")


def base_env(**extra: str) -> dict[str, str]:
    """This environment minus any ``KALAMDB_*``, the repository on ``PYTHONPATH``, plus
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KALAMDB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env | extra


def sluice_command(prefix: Sequence[str] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "tools.cli", "serve"]


def ceiling_command(port: int, prefix: Sequence[str] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "bench.asgi_ceiling", "--port", str(port)]


def process_cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU of each live pid (all its threads) plus that of its reaped
    children (so a PostgreSQL backend that exited still counts in its postmaster)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = sum(int(x) for x in fields[11:15]) / ticks  # utime stime cutime cstime
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``process_cpu_seconds`` snapshots (new pids count in
    full)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# ---- blocking HTTP calls (set-up, not measured) -----------------------------------------------

class HttpError(RuntimeError):
    def __init__(self, status: int, body: bytes, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:500]!r}")
        self.status = status
        self.body = body


def http_call(server: ServerProcess, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def post_json(server: ServerProcess, path: str, payload: Any, token: str | None = None
              ) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return http_call(server, "POST", path, json.dumps(payload).encode(), headers)


def sql(server: ServerProcess, token: str, text: str, params: list[Any] | None = None
        ) -> dict[str, Any]:
    """Runs SQL through ``/v1/api/sql``; raises ``HttpError`` unless it answers 200."""
    payload: dict[str, Any] = {"sql": text}
    if params is not None:
        payload["params"] = params
    status, body = post_json(server, "/v1/api/sql", payload, token)
    if status != 200:
        raise HttpError(status, body, text[:120])
    return json.loads(body)


def bearer_token(server: ServerProcess, data_dir: Path, password: str) -> tuple[str, str]:
    """(access token for root, how it was obtained). ``POST /v1/api/auth/login`` when the
    route answers 200; else (route missing: 404/405) a token minted with the server's own
    ``api.auth.issue_token`` and the data directory's ``jwt_secret`` file, as the tests do."""
    status, body = post_json(server, "/v1/api/auth/login",
                             {"username": "root", "password": password})
    if status == 200:
        return json.loads(body)["access_token"], "POST /v1/api/auth/login"
    if status not in (404, 405):
        raise HttpError(status, body, "login as root")
    from api.auth import issue_token
    from engine.catalog import User

    secret = (data_dir / "jwt_secret").read_text().strip()
    root = User("root", "system", email="root@localhost", auth_type="Internal")
    token = issue_token(secret, root, "access", time.time(), 24)[0]
    return token, f"minted with api.auth.issue_token (login answered {status})"
