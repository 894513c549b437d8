"""/v1/ws error codes and limits (issue 6; PROTOCOL §6.2, §6.5, §6.6): each refusal a
client can cause, against the real server with a real WebSocket client."""

from __future__ import annotations

from pathlib import Path

from tests.api.ws_client import WsClient, ws_connect
from tests.api.ws_harness import run_sql, subscribe_message, ws_server

LIMITS = {"security": {"max_ws_message_size": 4096},
          "rate_limit": {"max_messages_per_sec": 20}}


async def error_for(ws: WsClient, sub_id: str, text: str, options=None) -> dict:
    await ws.send(subscribe_message(sub_id, text, options))
    message = await ws.recv_json()
    assert message["type"] == "error", message
    return message


async def test_ws_errors__subscribe_refusals__codes(tmp_path: Path) -> None:
    async with ws_server(tmp_path, **LIMITS) as (server, users), \
            ws_connect(server, token=users.alice) as ws:
        await ws.recv_json()
        cases = [
            ("  ", "SELECT * FROM app.todos", None, "invalid_subscription",
             "INVALID_SUBSCRIPTION_ID"),
            ("a", "SELECT * FROM app.todos ORDER BY id", None, "a", "INVALID_SQL"),
            ("b", "SELECT * FROM todos", None, "b", "INVALID_SQL"),
            ("c", "SELECT id, _seq FROM app.todos", None, "c", "INVALID_SQL"),
            ("d", "SELECT * FROM app.missing", None, "d", "NOT_FOUND"),
            ("e", "SELECT * FROM system.users", None, "e", "UNAUTHORIZED"),
            ("f", "SELECT * FROM app.vault", None, "f", "UNAUTHORIZED"),
            ("g", "SELECT * FROM app.todos", {"batch_size": 2, "last_rows": 3}, "g",
             "UNSUPPORTED"),
        ]
        for sub_id, text, options, reported, code in cases:
            error = await error_for(ws, sub_id, text, options)
            assert (error["subscription_id"], error["code"]) == (reported, code), error
        await ws.send({"type": "next_batch", "subscription_id": "zz"})
        error = await ws.recv_json()
        assert (error["subscription_id"], error["code"]) == ("zz", "BATCH_FETCH_FAILED")
        await ws.send_text("x" * 5000)  # over max_ws_message_size: refused, still open
        error = await ws.recv_json()
        assert (error["subscription_id"], error["code"]) == ("protocol",
                                                              "MESSAGE_TOO_LARGE")
        await ws.send_bytes(b"\x00\x01")
        error = await ws.recv_json()
        assert (error["subscription_id"], error["code"]) == ("protocol", "UNSUPPORTED_DATA")
        await ws.send(subscribe_message("ok", "SELECT * FROM app.todos", None))
        assert (await ws.recv_json())["type"] == "subscription_ack"


async def test_ws_errors__rate_limit_and_invalid_messages(tmp_path: Path) -> None:
    async with ws_server(tmp_path, **LIMITS) as (server, users):
        async with ws_connect(server, token=users.alice) as ws:
            await ws.recv_json()
            for _ in range(40):  # the bucket holds 20
                await ws.send({"type": "ping"})
            error = await ws.recv_json()
            assert (error["subscription_id"], error["code"]) == ("rate_limit",
                                                                  "RATE_LIMIT_EXCEEDED")
        async with ws_connect(server, token=users.alice) as ws:
            await ws.recv_json()
            await ws.send_text("{not json")
            close = await ws.recv()
            assert close.code == 1011 and close.reason.startswith("Invalid message: ")
        async with ws_connect(server, token=users.alice) as ws:
            await ws.recv_json()
            await ws.send(subscribe_message("s", "SELECT * FROM app.todos", {"from": "12"}))
            assert (await ws.recv()).code == 1011  # from must be a number (§6.3)


async def test_ws_limits__per_user_across_connections(tmp_path: Path) -> None:
    async with ws_server(tmp_path) as (server, users), \
            ws_connect(server, token=users.bob) as one, \
            ws_connect(server, token=users.bob) as two:
        for ws in (one, two):
            await ws.recv_json()
        for i in range(10):
            ws = one if i % 2 else two
            await ws.send(subscribe_message(f"s{i}", "SELECT * FROM app.todos", None))
            assert (await ws.recv_json())["type"] == "subscription_ack"
        error = await error_for(one, "s10", "SELECT * FROM app.todos")
        assert (error["code"], error["message"]) == ("SUBSCRIPTION_LIMIT_EXCEEDED",
                                                     "Maximum subscriptions reached")
        # Same connection: the unsubscribe is handled before the next subscribe.
        await one.send({"type": "unsubscribe", "subscription_id": "s1"})
        await one.send(subscribe_message("s11", "SELECT * FROM app.todos", None))
        assert (await one.recv_json())["type"] == "subscription_ack"


async def test_ws_limits__per_connection_and_slow_subscriber_dropped(tmp_path: Path) -> None:
    sections = {"rate_limit": {"max_subscriptions_per_user": 500,
                               "max_messages_per_sec": 10_000},
                "websocket": {"notification_queue_max_messages": 1}}
    async with ws_server(tmp_path, **sections) as (server, users), \
            ws_connect(server, token=users.alice) as ws:
        await ws.recv_json()
        for i in range(100):
            await ws.send(subscribe_message(f"s{i}", "SELECT * FROM app.board", None))
            assert (await ws.recv_json())["type"] == "subscription_ack"
        error = await error_for(ws, "s100", "SELECT * FROM app.board")
        assert error["code"] == "UNSUPPORTED"
        assert error["message"] == "Maximum subscriptions (100) per connection exceeded"
        # One commit, 100 matching subscriptions, room for one change: the other 99
        # are dropped with an error instead of the commit waiting.
        await run_sql(server, users.admin, "INSERT INTO app.board VALUES (1, 'x')")
        messages = [await ws.recv_json() for _ in range(100)]
        assert sorted(m["type"] for m in messages) == ["change"] + ["error"] * 99
        assert {m["code"] for m in messages if m["type"] == "error"} == {
            "SUBSCRIPTION_FAILED"}
