"""A small client for the auth tests: JSON requests against a real server
(tests/api/harness.py) that keep every response header — repeated ``Set-Cookie`` headers
included, which ``harness.http_request`` folds into one.

``auth_server(tmp_path, **toml)`` starts the server with a known JWT secret and a
``server.toml`` holding bcrypt cost 4 (fast hashes) and a generous per-IP auth rate unless a
test asks for another; ``set_up(server)`` runs the first-run setup and returns nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from tests.api.harness import Server, running_server

SECRET = "sluice-auth-test-secret-" + "0123456789abcdef" * 4
ROOT_PASSWORD = "Root-pass-42"
DBA = "admin"
DBA_PASSWORD = "Admin-pass-42"
REMOTE = {"X-Forwarded-For": "203.0.113.7"}  # a loopback peer forwarding a non-local client
INVALID = {"error": "unauthorized", "message": "Invalid credentials"}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    @property
    def json(self) -> Any:
        assert self.header("content-type") == "application/json", self.headers
        return json.loads(self.body)


def _request_sync(server: Server, method: str, path: str, headers: dict[str, str],
                  body: bytes | None) -> Reply:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


async def request(server: Server, method: str, path: str, body: Any = None, *,
                  headers: dict[str, str] | None = None, raw: bytes | None = None,
                  token: str | None = None) -> Reply:
    """``body`` is sent as JSON (``raw`` as is); ``token`` becomes a Bearer header."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return await trio.to_thread.run_sync(_request_sync, server, method, path, all_headers,
                                         data)


async def login(server: Server, user: str, password: str, **kwargs: Any) -> Reply:
    return await request(server, "POST", "/v1/api/auth/login",
                         {"user": user, "password": password}, **kwargs)


async def login_token(server: Server, user: str, password: str) -> str:
    reply = await login(server, user, password)
    assert reply.status == 200, reply.body
    return reply.json["access_token"]


async def sql(server: Server, token: str, text: str) -> Reply:
    return await request(server, "POST", "/v1/api/sql", {"sql": text}, token=token)


async def set_up(server: Server) -> None:
    reply = await request(server, "POST", "/v1/api/auth/setup", {
        "user": DBA, "password": DBA_PASSWORD, "root_password": ROOT_PASSWORD})
    assert reply.status == 200, reply.body


async def create_user(server: Server, root_token: str, user: str, password: str,
                      role: str = "user") -> None:
    reply = await sql(server, root_token,
                      f"CREATE USER {user} WITH PASSWORD '{password}' ROLE {role}")
    assert reply.status == 200, reply.body


def write_config(tmp_path: Path, auth_rate: int = 10_000, **auth: Any) -> None:
    lines = ["[auth]", "bcrypt_cost = 4"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in auth.items()]
    lines += ["[rate_limit]", f"max_auth_requests_per_ip_per_sec = {auth_rate}"]
    (tmp_path / "server.toml").write_text("\n".join(lines) + "\n")


@contextlib.asynccontextmanager
async def auth_server(tmp_path: Path, auth_rate: int = 10_000, **auth: Any
                      ) -> AsyncIterator[Server]:
    write_config(tmp_path, auth_rate, **auth)
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        yield server
