"""Servers and users for the /v1/ws tests: ``ws_server(tmp_path, **sections)`` starts the
real server with a known JWT secret, bcrypt cost 4 and the given ``server.toml`` sections
(``{"websocket": {"auth_timeout_secs": 1}}`` …), runs the first-run setup and creates the
users alice and bob; ``Users`` holds their access tokens and the admin's."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.api.auth_client import (
    DBA,
    DBA_PASSWORD,
    SECRET,
    create_user,
    login_token,
    set_up,
    sql,
)
from tests.api.harness import Server, running_server

PASSWORD = "User-pass-42"
SCHEMA = [
    "CREATE NAMESPACE app",
    "CREATE TABLE app.todos (id BIGINT PRIMARY KEY, title TEXT, done BOOLEAN) "
    "WITH (TYPE='USER')",
    "CREATE TABLE app.board (id BIGINT PRIMARY KEY, note TEXT) "
    "WITH (TYPE='SHARED', ACCESS_LEVEL='PUBLIC')",
    "CREATE TABLE app.vault (id BIGINT PRIMARY KEY, note TEXT) WITH (TYPE='SHARED')",
]


@dataclass
class Users:
    admin: str
    alice: str
    bob: str


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    merged: dict[str, dict[str, Any]] = {"auth": {"bcrypt_cost": 4},
                                         "rate_limit": {"max_auth_requests_per_ip_per_sec":
                                                        10_000}}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    lines = []
    for name, values in merged.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def ws_server(tmp_path: Path, **sections: dict[str, Any]
                    ) -> AsyncIterator[tuple[Server, Users]]:
    (tmp_path / "server.toml").write_text(_toml(sections))
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        await set_up(server)
        admin = await login_token(server, DBA, DBA_PASSWORD)
        for user in ("alice", "bob"):
            await create_user(server, admin, user, PASSWORD)
        for text in SCHEMA:
            reply = await sql(server, admin, text)
            assert reply.status == 200, reply.body
        users = Users(admin, await login_token(server, "alice", PASSWORD),
                      await login_token(server, "bob", PASSWORD))
        yield server, users


async def run_sql(server: Server, token: str, text: str) -> Any:
    reply = await sql(server, token, text)
    assert reply.status == 200, reply.body
    return reply.json


def auth_message(token: str) -> dict[str, Any]:
    return {"type": "authenticate", "method": "jwt", "token": token}


def subscribe_message(sub_id: str, text: str, options: Any = None, *,
                      with_options: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": sub_id, "sql": text}
    if with_options:
        body["options"] = options
    return {"type": "subscribe", "subscription": body}
