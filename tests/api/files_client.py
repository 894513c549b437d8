"""A small client for the FILE tests (issue 7) against the real server: multipart bodies,
SQL over JSON, downloads, and views of the data directory's ``files/`` and staging trees.

Tokens are minted with ``api.auth.issue_token`` from the secret the server generated into
its data directory (as tests/api/test_ingest_route.py does).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from api.auth import issue_token
from engine.catalog import User
from tests.api.harness import Server

ROOT = User("root", "system", email="root@localhost", auth_type="Internal")
REQUEST_TIMEOUT_SECONDS = 60


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        body = self.json
        error = body.get("error")
        return error.get("code") if isinstance(error, dict) else body.get("code")


@dataclass(frozen=True)
class Part:
    """One multipart part: ``file:<name>`` parts carry a filename and a content type."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


def file_part(placeholder: str, data: bytes, filename: str | None = None,
              content_type: str | None = None) -> Part:
    return Part(f"file:{placeholder}", data, filename, content_type)


def multipart(parts: list[Part], boundary: str | None = None) -> tuple[bytes, str]:
    """``(body, content type)`` of a multipart/form-data request holding ``parts``."""
    boundary = boundary or f"sluice-{uuid.uuid4().hex}"
    chunks = []
    for part in parts:
        disposition = f'form-data; name="{part.name}"'
        if part.filename is not None:
            disposition += f'; filename="{part.filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if part.content_type is not None:
            head += f"Content-Type: {part.content_type}\r\n"
        chunks += [head.encode(), b"\r\n", part.data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _request_sync(server: Server, method: str, path: str, headers: dict[str, str],
                  body: bytes | None) -> Reply:
    conn = http.client.HTTPConnection(server.host, server.port,
                                      timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class FilesClient:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.secret = (server.data_dir / "jwt_secret").read_text().strip()

    def token(self, user: User) -> str:
        return issue_token(self.secret, user, "access", time.time(), 1)[0]

    async def request(self, method: str, path: str, *, user: User | None = ROOT,
                      headers: dict[str, str] | None = None, body: bytes | None = None
                      ) -> Reply:
        all_headers = dict(headers or {})
        if user is not None:
            all_headers["Authorization"] = f"Bearer {self.token(user)}"
        return await trio.to_thread.run_sync(_request_sync, self.server, method, path,
                                             all_headers, body)

    async def sql(self, sql: str, user: User = ROOT, *, ok: bool = True) -> Reply:
        reply = await self.request("POST", "/v1/api/sql", user=user,
                                   headers={"Content-Type": "application/json"},
                                   body=json.dumps({"sql": sql}).encode())
        if ok:
            assert reply.status == 200, (sql, reply.status, reply.body)
        return reply

    async def rows(self, sql: str, user: User = ROOT) -> list[list[Any]]:
        return (await self.sql(sql, user)).json["results"][0].get("rows", [])

    async def upload(self, sql: str | None, parts: list[Part], user: User | None = ROOT,
                     extra: list[Part] | None = None) -> Reply:
        fields = [] if sql is None else [Part("sql", sql.encode())]
        body, content_type = multipart([*fields, *(extra or []), *parts])
        return await self.request("POST", "/v1/api/sql", user=user,
                                  headers={"Content-Type": content_type}, body=body)

    async def download(self, path: str, user: User | None = ROOT) -> Reply:
        return await self.request("GET", path, user=user)


def ref_of(cell: str) -> dict[str, Any]:
    ref = json.loads(cell)
    assert list(ref) == ["id", "sub", "name", "size", "mime", "sha256"], ref
    return ref


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_files(data_dir: Path) -> list[Path]:
    """Every file under ``<data>/files``, relative to it."""
    root = data_dir / "files"
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) \
        if root.exists() else []


def staging_entries(data_dir: Path) -> list[str]:
    staging = data_dir / "tmp"
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []
