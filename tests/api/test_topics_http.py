"""``POST /v1/api/topics/consume`` and ``/ack`` through the real server (issue 5; PROTOCOL
§4.2, §4.3, §9 items 15-16 and the long-poll decision).

The server runs with a known JWT secret (tokens minted with ``api.auth.issue_token``) and a
1-second visibility timeout (``KALAMDB_TOPIC_VISIBILITY_TIMEOUT_SECS``); root creates the
schema, a service user and a plain user with SQL.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import trio

from api.auth import issue_token
from engine.catalog import User
from tests.api.harness import Server, http_request, running_server

SECRET = "sluice-topics-secret-" + "0123456789abcdef" * 4
ENV = {"KALAMDB_JWT_SECRET": SECRET, "KALAMDB_TOPIC_VISIBILITY_TIMEOUT_SECS": "1"}
ROOT = User("root", "system", email="root@localhost", auth_type="Internal")
SCHEMA = [
    "CREATE NAMESPACE shop",
    "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, msg TEXT) WITH (TYPE='SHARED')",
    "CREATE TOPIC shop.orders_events",
    "ALTER TOPIC shop.orders_events ADD SOURCE shop.orders ON INSERT",
    "CREATE USER svc WITH PASSWORD 'pw-svc-123' ROLE service",
    "CREATE USER alice WITH PASSWORD 'pw-alice-1' ROLE user",
]


def token(user: User) -> str:
    return issue_token(SECRET, user, "access", time.time(), 1)[0]




async def post(server: Server, path: str, body: bytes | dict[str, Any], bearer: str | None
               ) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await http_request(server, "POST", path, headers, raw)
    return resp.status, json.loads(resp.body)


async def run_sql(server: Server, text: str) -> dict[str, Any]:
    status, body = await post(server, "/v1/api/sql", {"sql": text}, token(ROOT))
    assert status == 200, body
    return body


async def consume(server: Server, bearer: str, **fields: Any) -> tuple[int, Any]:
    request = {"topic_id": "shop.orders_events", "group_id": "billing"} | fields
    return await post(server, "/v1/api/topics/consume", request, bearer)


async def ack(server: Server, bearer: str, **fields: Any) -> tuple[int, Any]:
    request = {"topic_id": "shop.orders_events", "group_id": "billing"} | fields
    return await post(server, "/v1/api/topics/ack", request, bearer)


def offsets(body: dict[str, Any]) -> list[int]:
    return [m["offset"] for m in body["messages"]]


async def test_topics_http__round_trip_groups_errors_and_long_poll(tmp_path: Path) -> None:
    async with running_server(tmp_path, **ENV) as server:
        for text in SCHEMA:
            await run_sql(server, text)
        svc = token(User("svc", "service"))
        await _round_trip_shape(server, svc)
        await _errors_and_roles(server, svc)
        await _groups_inclusive_monotonic_latest(server, svc)
        await _redelivery_after_visibility_timeout(server, svc)
        await _long_poll(server, svc)
        await _disconnect_ends_the_long_poll(server, svc)


async def _round_trip_shape(server: Server, svc: str) -> None:
    await run_sql(server, "INSERT INTO shop.orders (id, msg) VALUES (7012, 'hi')")
    status, body = await consume(server, svc, start="Earliest", limit=50, partition_id=0)
    assert status == 200
    [message] = body["messages"]
    assert list(message) == ["topic_id", "partition_id", "offset", "payload", "key",
                             "timestamp_ms", "user", "op"]
    assert {k: message[k] for k in ("topic_id", "partition_id", "offset", "key", "user", "op")
            } == {"topic_id": "shop.orders_events", "partition_id": 0, "offset": 0,
                  "key": "7012", "user": "root", "op": "Insert"}
    row = json.loads(base64.b64decode(message["payload"], validate=True))
    assert row == {"id": "7012", "msg": "hi", "_seq": row["_seq"], "_deleted": False,
                   "_table": "shop.orders"}
    assert isinstance(message["timestamp_ms"], int) and message["timestamp_ms"] > 1.7e12
    assert (body["next_offset"], body["has_more"]) == (1, False)
    await run_sql(server, "INSERT INTO shop.orders (id, msg) VALUES (1, 'a'), (2, 'b')")


async def _errors_and_roles(server: Server, svc: str) -> None:
    alice = token(User("alice", "user"))
    assert await consume(server, alice) == (403, {
        "error": "Topic consumption requires service, dba, or system role", "code": "FORBIDDEN"})
    assert await ack(server, alice, upto_offset=0) == (403, {
        "error": "Topic acknowledgment requires service, dba, or system role",
        "code": "FORBIDDEN"})
    assert await consume(server, svc, topic_id="shop.nope") == (404, {
        "error": "Topic 'shop.nope' does not exist", "code": "NOT_FOUND"})
    assert await ack(server, svc, topic_id="shop.nope", upto_offset=1) == (404, {
        "error": "Topic 'shop.nope' does not exist", "code": "NOT_FOUND"})
    for bad in (b"{not json", b"[1]", {"topic_id": "shop.orders_events"},
                {"topic_id": "shop.orders_events", "group_id": "g", "start": "Sometime"},
                {"topic_id": "shop.orders_events", "group_id": "g", "limit": -1},
                {"topic_id": "shop.orders_events", "group_id": "g", "timeout_seconds": "5"}):
        status, body = await post(server, "/v1/api/topics/consume", bad, svc)
        assert (status, body["code"]) == (400, "BAD_REQUEST"), bad
    status, body = await ack(server, svc)  # upto_offset is required
    assert (status, body["code"]) == (400, "BAD_REQUEST")
    status, body = await consume(server, svc, partition_id=3)
    assert (status, body["code"]) == (400, "BAD_REQUEST")
    status, body = await consume(server, None)
    assert status == 401 and body["error"]["code"] == "MISSING_AUTHORIZATION"


async def _groups_inclusive_monotonic_latest(server: Server, svc: str) -> None:
    # Offsets 0..2 exist. Claims: two consumes without ack get disjoint ranges.
    assert offsets((await consume(server, svc, group_id="g1", start="Earliest", limit=2))[1]) \
        == [0, 1]
    status, body = await consume(server, svc, group_id="g1", limit=2)
    assert (status, offsets(body), body["next_offset"], body["has_more"]) == (
        200, [2], 3, False)
    assert await ack(server, svc, group_id="g1", upto_offset=1) == (
        200, {"success": True, "acknowledged_offset": 1})
    assert await ack(server, svc, group_id="g1", upto_offset=0) == (  # lower: unchanged
        200, {"success": True, "acknowledged_offset": 0})
    body = await run_sql(server, "SELECT group_id, last_acked_offset FROM system.topic_offsets "
                                 "WHERE group_id = 'g1'")
    assert body["results"][0]["rows"] == [["g1", "1"]]
    # Latest skips history; {"Offset": n} starts at n.
    status, body = await consume(server, svc, group_id="late", start="Latest")
    assert (body["messages"], body["next_offset"]) == ([], 3)
    status, body = await consume(server, svc, group_id="from1", start={"offset": 1})
    assert offsets(body) == [1, 2]


async def _redelivery_after_visibility_timeout(server: Server, svc: str) -> None:
    first = (await consume(server, svc, group_id="slow", start="Earliest", limit=3))[1]
    assert offsets(first) == [0, 1, 2]
    assert offsets((await consume(server, svc, group_id="slow"))[1]) == []  # all claimed
    await trio.sleep(1.3)  # the 1-second visibility timeout passes without an ack
    assert offsets((await consume(server, svc, group_id="slow"))[1]) == [0, 1, 2]


async def _long_poll(server: Server, svc: str) -> None:
    started = trio.current_time()
    status, body = await consume(server, svc, group_id="poll", start="Latest",
                                 timeout_seconds=1)
    assert (status, body["messages"]) == (200, []) and trio.current_time() - started >= 1
    replies = []

    async def waiter() -> None:
        replies.append(await consume(server, svc, group_id="poll", timeout_seconds=4))

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.5)
        assert replies == []
        await run_sql(server, "INSERT INTO shop.orders (id, msg) VALUES (50, 'wake')")
    [(status, body)] = replies
    assert [m["key"] for m in body["messages"]] == ["50"]
    assert trio.current_time() - started < 4


async def _disconnect_ends_the_long_poll(server: Server, svc: str) -> None:
    # A client that leaves a long-poll must not keep a claim on the next message: right
    # after it left, a new message goes to the next consumer of the group at once.
    await consume(server, svc, group_id="gone", start="Latest")
    request = json.dumps({"topic_id": "shop.orders_events", "group_id": "gone",
                          "timeout_seconds": 30}).encode()
    head = (f"POST /v1/api/topics/consume HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {svc}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(request)}\r\n\r\n")
    stream = await trio.open_tcp_stream(server.host, server.port)
    await stream.send_all(head.encode() + request)
    await trio.sleep(0.3)
    await stream.aclose()
    await trio.sleep(0.3)
    await run_sql(server, "INSERT INTO shop.orders (id, msg) VALUES (60, 'after')")
    status, body = await consume(server, svc, group_id="gone")
    assert (status, [m["key"] for m in body["messages"]]) == (200, ["60"])


async def test_topics_http__restart__offsets_survive_and_deleted_index_is_rebuilt(
        tmp_path: Path) -> None:
    async with running_server(tmp_path, **ENV) as server:
        for text in SCHEMA:
            await run_sql(server, text)
        svc = token(User("svc", "service"))
        await run_sql(server, "INSERT INTO shop.orders (id, msg) VALUES "
                      + ", ".join(f"({i}, 'm{i}')" for i in range(10)))
        status, body = await consume(server, svc, start="Earliest", limit=4)
        assert offsets(body) == [0, 1, 2, 3]
        await ack(server, svc, upto_offset=3)
        await consume(server, svc, limit=2)  # claimed, never acked
        before = (await consume(server, svc, group_id="all", start="Earliest"))[1]
    index_files = list((tmp_path / "data" / "topics").rglob("*.idx"))
    assert index_files
    for path in index_files:
        path.unlink()
    async with running_server(tmp_path, **ENV) as server:
        svc = token(User("svc", "service"))
        # Claims died with the process; the committed offset 3 wins over "Latest".
        status, body = await consume(server, svc, start="Latest", limit=100)
        assert (status, offsets(body)) == (200, [4, 5, 6, 7, 8, 9])
        after = (await consume(server, svc, group_id="all2", start="Earliest"))[1]
        assert after["messages"] == before["messages"]
