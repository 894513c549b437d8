"""``sluice serve``, the route table and the health endpoints (PROTOCOL §1.0, §1.1, §1.6).

Most tests drive the real server in a subprocess (tests/api/harness.py); a few call
``SluiceApp`` in-process with a stand-in engine for states a live server cannot easily reach
(a poisoned WAL).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from api import serve as serve_module
from api.app import ROUTES, SluiceApp
from api.config import ServerConfig
from tests.api.harness import (
    ROOT,
    http_request,
    raw_exchange,
    running_server,
    serve_command,
    server_env,
)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# An empty SETTINGS frame: what an HTTP/2 client sends right after the preface.
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
HEALTH_KEYS = {"status", "version", "api_version", "build_date"}


async def test_serve__health_routes_and_refused_h2c(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        for path in ("/health", "/v1/api/healthcheck"):
            resp = await http_request(server, "GET", path)
            assert resp.status == 200
            assert resp.headers["content-type"] == "application/json"
            body = json.loads(resp.body)
            assert set(body) == HEALTH_KEYS
            assert body["status"] == "healthy"
            assert body["api_version"] == "v1"
            assert "server" not in resp.headers

        resp = await http_request(server, "GET", "/v1/api/cluster/health")
        assert resp.status == 200
        cluster = json.loads(resp.body)
        assert cluster["status"] == "healthy"
        assert (cluster["node_id"], cluster["is_leader"], cluster["is_cluster_mode"]) == (
            1, True, False)
        assert cluster["last_applied"] >= 3  # the first-start bootstrap events
        [node] = cluster["nodes"]
        assert node["api_addr"] == f"{server.host}:{server.port}"
        assert (node["role"], node["status"], node["is_self"]) == ("leader", "active", True)
        assert isinstance(node["memory_usage_mb"], int) and node["memory_usage_mb"] > 0

        # §1.0: a loopback peer's X-Forwarded-For is used, so a remote value is non-local.
        remote = {"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}
        resp = await http_request(server, "GET", "/health", remote)
        assert (resp.status, json.loads(resp.body)) == (
            403, {"error": "Access denied. Health endpoint is localhost-only."})
        resp = await http_request(server, "GET", "/v1/api/cluster/health",
                                  {"X-Real-IP": "198.51.100.4"})
        assert (resp.status, json.loads(resp.body)) == (
            403, {"error": "Access denied. Cluster health is localhost-only."})
        # A forwarded value claiming to be local is ignored: the peer (loopback) counts.
        resp = await http_request(server, "GET", "/health", {"X-Forwarded-For": "127.0.0.1"})
        assert resp.status == 200

        resp = await http_request(server, "GET", "/no/such/route")
        assert (resp.status, resp.body) == (404, b"")
        resp = await http_request(server, "POST", "/health")
        assert (resp.status, resp.body, resp.headers["allow"]) == (405, b"", "GET")

        await _check_h2c_is_refused(server)
        assert server.process.returncode is None


async def _check_h2c_is_refused(server: Any) -> None:
    # Upgrade: h2c is ignored: an ordinary HTTP/1.1 reply, no 101.
    reply = await raw_exchange(server, (
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"), quiet_s=0.5)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b"101" not in reply.split(b"\r\n")[0]

    # The prior-knowledge preface is not HTTP/2 either: a 4xx or a closed connection.
    reply = await raw_exchange(server, H2_PREFACE + H2_SETTINGS, quiet_s=0.5)
    if reply:
        status = int(reply.split(b" ", 2)[1])
        assert reply.startswith(b"HTTP/1.1 ") and 400 <= status < 500, reply[:200]

    # A burst of h2c clients that hang up mid-exchange must not take the process down.
    async def hang_up(payload: bytes) -> None:
        stream = await trio.open_tcp_stream(server.host, server.port)
        with trio.move_on_after(0.05):
            await stream.send_all(payload)
            await stream.receive_some(1)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(40):
            upgrade = (b"GET /v1/api/cluster/health HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            nursery.start_soon(hang_up, H2_PREFACE + H2_SETTINGS if i % 2 else upgrade)
    resp = await http_request(server, "GET", "/health")
    assert resp.status == 200


async def test_serve__sigterm_exits_0_and_releases_the_data_dir(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        assert (await http_request(server, "GET", "/health")).status == 200
    # running_server asserted exit code 0 after SIGTERM; the LOCK must be free again.
    assert any("stopped" in line for line in server.stderr)
    from engine import open_engine

    config = ServerConfig()
    with trio.fail_after(10):
        async with open_engine(server.data_dir, config.engine_config()) as engine:
            assert engine.healthy
            assert int(engine.wal.committed_lsn) >= 3


async def _run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return await trio.run_process(
        serve_command(*args), env=server_env(tmp_path / "data", **env), cwd=tmp_path,
        capture_stdout=True, capture_stderr=True, check=False)


async def test_serve__refuses_a_weak_secret_on_a_public_host(tmp_path: Path) -> None:
    result = await _run_cli(tmp_path, KALAMDB_SERVER_HOST="0.0.0.0",
                            KALAMDB_JWT_SECRET="CHANGE_ME_IN_PRODUCTION")
    assert result.returncode == 2, result.stderr
    assert b"KALAMDB_JWT_SECRET" in result.stderr
    assert b"serving on" not in result.stderr


async def test_serve__print_config_masks_secrets(tmp_path: Path) -> None:
    secret, password = "s3cret-" + "x" * 40, "hunter2-root-password"
    result = await _run_cli(tmp_path, "--print-config", KALAMDB_JWT_SECRET=secret,
                            KALAMDB_ROOT_PASSWORD=password, KALAMDB_SERVER_PORT="3123")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert secret not in out and password not in out
    assert 'jwt_secret = "***"' in out and 'root_password = "***"' in out
    assert "[server]" in out and "port = 3123" in out and "[security.cors]" in out
    assert not (tmp_path / "data").exists()  # printing writes nothing


def test_serve__usage_error_is_64() -> None:
    result = subprocess.run(serve_command("--bogus"), cwd=ROOT, capture_output=True,
                            check=False, timeout=30)
    assert result.returncode == 64


def test_refuse_h2c__pinned_to_the_tested_hypercorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module.metadata, "version", lambda name: "0.19.0")
    with pytest.raises(RuntimeError, match=r"0\.18\.0"):
        serve_module.refuse_h2c()


# ---- in-process: SluiceApp with a stand-in engine -----------------------------------------

def _engine(*, healthy: bool, lsn: int = 7) -> Any:
    return SimpleNamespace(healthy=healthy, wal=SimpleNamespace(committed_lsn=lsn))


async def _call(app: SluiceApp, method: str, path: str,
                client: tuple[str, int] = ("127.0.0.1", 5555)) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "client": client}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_app__poisoned_wal_is_503_unhealthy() -> None:
    app = SluiceApp(_engine(healthy=False), ServerConfig())
    status, body = await _call(app, "GET", "/health")
    assert status == 503 and json.loads(body)["status"] == "unhealthy"
    status, body = await _call(app, "GET", "/v1/api/cluster/health")
    doc = json.loads(body)
    assert status == 503 and doc["status"] == "unhealthy"
    assert doc["nodes"][0]["status"] == "offline"


async def test_app__peer_rules() -> None:
    app = SluiceApp(_engine(healthy=True), ServerConfig())
    assert (await _call(app, "GET", "/health", ("::1", 1)))[0] == 200
    # Other 127.x addresses are not "localhost" (§1.0).
    assert (await _call(app, "GET", "/health", ("127.0.0.2", 1)))[0] == 403
    assert (await _call(app, "GET", "/health", ("10.1.2.3", 1)))[0] == 403
    status, body = await _call(app, "GET", "/v1/api/cluster/health")
    assert status == 200 and json.loads(body)["last_applied"] == 7


async def test_app__lifespan_is_acknowledged() -> None:
    app = SluiceApp(_engine(healthy=True), ServerConfig())
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_app__route_table_is_unique() -> None:
    keys = [(route.method, route.path) for route in ROUTES]
    assert len(keys) == len(set(keys))
    assert {path for _, path in keys} == {
        "/health", "/v1/api/healthcheck", "/v1/api/cluster/health", "/v1/api/sql",
        "/v1/api/ingest/{namespace}/{table}", "/v1/api/auth/setup", "/v1/api/auth/status",
        "/v1/api/auth/login", "/v1/api/auth/refresh", "/v1/api/auth/logout",
        "/v1/api/auth/me", "/v1/api/topics/consume", "/v1/api/topics/ack",
        "/v1/files/{namespace}/{table_name}/{subfolder}/{file_id}",
        "/v1/exports/{user_id}/{export_id}", "/v1/ws",
        "/v1/api/openapi.json"}
