"""WebSocket frame fuzzing on ``/v1/ws`` (issue 9; PROTOCOL §6.2, §6.3, §6.6): one fuzzed
frame per fresh connection — garbage text and binary, oversized text, invalid JSON, objects
of unknown types and known types with wrong fields — then the answer must be the one the
protocol names:
- binary → error ``UNSUPPORTED_DATA``, oversized → error ``MESSAGE_TOO_LARGE``; the socket
  stays open and still serves a subscription;
- text that is not a valid client message → close **1011** "Invalid message: …";
- a valid message → whatever it asks for; the socket stays usable (or closes 1008 after a
  failed ``authenticate``).
The server never drops the TCP connection without a close frame, and is healthy at the end.

How it works: the Hypothesis property runs in a worker thread (tests/api/fuzz_support.py)
and drives the async client (tests/api/ws_client.py) through ``trio.from_thread.run``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, seed
from hypothesis import strategies as st

from tests.api.fuzz_support import examples, fuzz_settings, fuzz_world, run_property
from tests.api.harness import Server
from tests.api.ws_client import WsClient, ws_connect
from tests.api.ws_harness import subscribe_message

EXAMPLES = 50  # x10 with --run-slow (fuzz_support.examples)
MESSAGE_MAX = 4096
SECTIONS = {"security": {"max_ws_message_size": MESSAGE_MAX},
            "rate_limit": {"max_messages_per_sec": 10_000}}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=10)
TYPES = ["authenticate", "subscribe", "next_batch", "unsubscribe", "ping", "pong", "",
         "SUBSCRIBE", "change", None, 1]
FIELDS = ["method", "token", "protocol", "subscription", "subscription_id", "last_seq_id",
          "id", "sql", "options"]
VALID = [
    {"type": "ping"},
    {"type": "subscribe", "subscription": {"id": "f", "sql": "SELECT * FROM app.todos"}},
    {"type": "subscribe", "subscription": {"id": "f", "sql": "SELECT * FROM app.vault"}},
    {"type": "subscribe", "subscription": {"id": "f", "sql": "SELECT password_hash FROM "
                                                              "system.users"}},
    {"type": "next_batch", "subscription_id": "nope"},
    {"type": "unsubscribe", "subscription_id": "nope"},
    {"type": "authenticate", "method": "jwt", "token": "x.y.z"},
]
frames = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=64)),
    st.tuples(st.just("text"), st.text(max_size=64)),
    st.tuples(st.just("text"), json_values.map(json.dumps)),
    st.tuples(st.just("text"), st.sampled_from(VALID).map(json.dumps)),
    st.tuples(st.just("text"), st.builds(
        lambda kind, extra: json.dumps({"type": kind, **extra}), st.sampled_from(TYPES),
        st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3))),
    st.tuples(st.just("text"), st.integers(MESSAGE_MAX + 1, 3 * MESSAGE_MAX).map(
        lambda n: json.dumps({"type": "ping", "pad": "x" * n}))),
)


def _is_client_message(text: str) -> bool:
    """What api/ws/frames.py accepts (re-stated here, by the protocol's rules)."""
    from api.ws.frames import ProtocolViolation, parse_client
    try:
        parse_client(text)
    except ProtocolViolation:
        return False
    return True


async def _probe_outcome(ws: WsClient) -> dict[str, Any] | int:
    """The ack of the ``probe`` subscription, or the close code if the socket closes."""
    while True:
        frame = await ws.recv()
        if frame.kind == "close":
            return frame.code or 0
        message = frame.json()
        if message.get("type") == "subscription_ack" and \
                message.get("subscription_id") == "probe":
            return message


async def _exchange(server: Server, token: str, kind: str, data: Any) -> None:
    async with ws_connect(server, token=token) as ws:
        assert (await ws.recv_json())["type"] == "auth_success"
        if kind == "bytes":
            await ws.send_bytes(data)
            error = await ws.recv_json()
            assert (error["type"], error["code"]) == ("error", "UNSUPPORTED_DATA"), error
        elif len(data.encode()) > MESSAGE_MAX:
            await ws.send_text(data)
            error = await ws.recv_json()
            assert (error["type"], error["code"]) == ("error", "MESSAGE_TOO_LARGE"), error
        elif not _is_client_message(data):
            await ws.send_text(data)
            close = await ws.recv()  # nothing may come before the close
            assert close.kind == "close", (data, close)
            assert close.code == 1011 and close.reason.startswith("Invalid message: "), close
            return
        else:
            await ws.send_text(data)
        # The socket still works: a probe subscription is acknowledged, or — after a
        # failed re-authentication — the socket was closed with 1008.
        await ws.send(subscribe_message("probe", "SELECT * FROM app.todos", None))
        outcome = await _probe_outcome(ws)
        assert isinstance(outcome, dict) or outcome == 1008, (data, outcome)


async def test_fuzz_ws__frames__named_errors_and_close_codes(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    async with fuzz_world(tmp_path, **SECTIONS) as world:
        server, alice = world.server, world.users.alice

        @seed(base_seed)
        @fuzz_settings(examples(request, EXAMPLES))
        @given(frame=frames)
        def property_(frame: tuple[str, Any]) -> None:
            trio.from_thread.run(_exchange, server, alice, *frame)

        await run_property(property_, base_seed)
