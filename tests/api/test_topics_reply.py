"""The consume reply writer (api/routes/topics.py ``consume_reply``): byte-for-byte the
compact ``json.dumps`` of the PROTOCOL §4.2 shape, for replies made of several runs."""

from __future__ import annotations

import json

from api.routes.topics import consume_reply
from engine.topics.service import ConsumeResult, MessageRun


def test_consume_reply__runs_with_and_without_user__equals_json_dumps() -> None:
    runs = [
        MessageRun(range(7, 9), ["k\u00e9\"1", None], ["eyJhIjoxfQ==", "e30="],
                   1_767_139_200_123, "al\\ice", "insert"),
        MessageRun(range(12, 13), ["3"], ["eyJiIjoyfQ=="], 1_767_139_200_999, None, "delete"),
    ]
    result = ConsumeResult("shop.orders_events", 2, runs, 13, True)
    expected = {"messages": [
        {"topic_id": "shop.orders_events", "partition_id": 2, "offset": 7,
         "payload": "eyJhIjoxfQ==", "key": "k\u00e9\"1", "timestamp_ms": 1_767_139_200_123,
         "user": "al\\ice", "op": "Insert"},
        {"topic_id": "shop.orders_events", "partition_id": 2, "offset": 8, "payload": "e30=",
         "key": None, "timestamp_ms": 1_767_139_200_123, "user": "al\\ice", "op": "Insert"},
        {"topic_id": "shop.orders_events", "partition_id": 2, "offset": 12,
         "payload": "eyJiIjoyfQ==", "key": "3", "timestamp_ms": 1_767_139_200_999,
         "op": "Delete"}],
        "next_offset": 13, "has_more": True}
    assert consume_reply(result) == json.dumps(
        expected, separators=(",", ":"), ensure_ascii=False).encode()
    empty = ConsumeResult("t.x", 0, [], 4, False)
    assert consume_reply(empty) == b'{"messages":[],"next_offset":4,"has_more":false}'
