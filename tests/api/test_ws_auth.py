"""/v1/ws authentication, timeouts and the upgrade rules (issue 6; PROTOCOL §6.1, §6.4,
§6.6) against the real server with a real WebSocket client (tests/api/ws_client.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from tests.api.harness import http_request
from tests.api.ws_client import Refused, ws_connect
from tests.api.ws_harness import auth_message, subscribe_message, ws_server

FAST = {"websocket": {"auth_timeout_secs": 1, "client_timeout_secs": 2,
                      "heartbeat_interval_secs": 1}}


async def test_ws_auth__in_band_header_bad_token_and_order(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users):
        async with ws_connect(server) as ws:
            # subscribe before authenticating → AUTH_REQUIRED; next_batch is ignored
            await ws.send({"type": "next_batch", "subscription_id": "x"})
            await ws.send(subscribe_message("s1", "SELECT * FROM app.todos"))
            error = await ws.recv_json()
            assert error == {"type": "error", "subscription_id": "subscribe",
                             "code": "AUTH_REQUIRED", "message": error["message"]}
            await ws.send(auth_message(users.alice))  # no "protocol": defaults (decision)
            assert await ws.recv_json() == {
                "type": "auth_success", "user": "alice", "role": "user",
                "protocol": {"serialization": "json", "compression": "gzip"}}
            await ws.send({**auth_message(users.alice),
                           "protocol": {"serialization": "json", "compression": "none"}})
            again = await ws.recv_json()
            assert again["type"] == "auth_success"
            assert again["protocol"]["compression"] == "none"
        async with ws_connect(server) as ws:
            await ws.send(auth_message(users.alice + "x"))
            assert await ws.recv_json() == {"type": "auth_error",
                                            "message": "Invalid credentials"}
            close = await ws.recv()
            assert (close.kind, close.code, close.reason) == ("close", 1008,
                                                              "Authentication failed")
        async with ws_connect(server, token=users.bob) as ws:  # header pre-auth
            first = await ws.recv_json()
            assert (first["type"], first["user"]) == ("auth_success", "bob")
        async with ws_connect(server, token="nonsense") as ws:
            assert (await ws.recv_json())["type"] == "auth_error"
            assert (await ws.recv()).code == 1008


async def test_ws_auth__timeouts__auth_and_heartbeat(tmp_path: Path) -> None:
    async with ws_server(tmp_path, **FAST) as (server, users):
        async with ws_connect(server) as ws:  # silent: the auth timeout fires
            assert await ws.recv_json(5) == {
                "type": "auth_error",
                "message": "Authentication timeout - no auth message received within 3 seconds"}
            close = await ws.recv(5)
            assert (close.code, close.reason) == (1008, "Authentication timeout")
        async with ws_connect(server) as ws:  # authenticated, then pings keep it open
            await ws.send(auth_message(users.alice))
            assert (await ws.recv_json())["type"] == "auth_success"
            for _ in range(4):
                await trio.sleep(1)
                await ws.send({"type": "ping"})  # no reply, only liveness
            assert ws.frames == type(ws.frames)() and not ws.closed
            close = await ws.recv(6)  # then silence: closed after client_timeout_secs
            assert (close.kind, close.code, close.reason) == ("close", 1000,
                                                              "Heartbeat timeout")


async def test_ws_upgrade__origin_rules(tmp_path: Path) -> None:
    sections = {"security": {"strict_ws_origin_check": True},
                "security.cors": {"allowed_origins": ["http://good.example"]}}
    async with ws_server(tmp_path, **sections) as (server, users):
        with pytest.raises(Refused) as evil:
            async with ws_connect(server, headers={"Origin": "http://evil.example"}):
                pass
        assert (evil.value.status, evil.value.body) == (403, b"Origin not allowed")
        with pytest.raises(Refused) as missing:
            async with ws_connect(server):
                pass
        assert (missing.value.status, missing.value.body) == (403, b"Origin header required")
        async with ws_connect(server, token=users.alice,
                              headers={"Origin": "http://good.example"}) as ws:
            assert (await ws.recv_json())["type"] == "auth_success"
        plain = await http_request(server, "GET", "/v1/ws")
        assert plain.status == 400


async def test_ws_shutdown__open_socket_closed_with_1001(tmp_path: Path) -> None:
    # SIGTERM starts the drain: open sockets get 1001 at once instead of waiting for the
    # graceful timeout to cut them.
    async with ws_server(tmp_path) as (server, users), \
            ws_connect(server, token=users.alice) as ws:
        await ws.recv_json()
        server.process.send_signal(signal.SIGTERM)
        close = await ws.recv(3)
        assert (close.code, close.reason) == (1001, "Server shutting down")
        with trio.fail_after(5):
            assert await server.process.wait() == 0
