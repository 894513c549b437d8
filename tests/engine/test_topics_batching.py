"""Topic consume at batch sizes (issue 5 benchmark work): runs of the partition index,
rendering in cached chunks (bytes and base64), payload JSON of awkward values, and acks
that share one group commit.

Engine tests open a real engine on a temp dir; big commits come through ``ingest_body``
(NDJSON), so one change holds more rows than ``RENDER_CHUNK_ROWS``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pyarrow as pa
import trio

from engine import ingest_body
from engine.catalog import ColumnDef, TableDef
from engine.events import Op, RowChange
from engine.topics.index import PartitionIndex
from engine.topics.reader import RecordCache
from engine.topics.render import RENDER_CHUNK_ROWS, payloads, render_rows
from engine.types import KalamType
from tests.engine.harness import ROOT, SERVICE, engine_at, sql

ROWS = 2 * RENDER_CHUNK_ROWS + 808  # three chunks, the last one partial
SETUP = [
    "CREATE NAMESPACE shop",
    "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, msg TEXT, qty INT) WITH (TYPE='SHARED')",
    "CREATE TOPIC shop.every",
    "ALTER TOPIC shop.every ADD SOURCE shop.orders ON INSERT",
    "CREATE TOPIC shop.odd",
    "ALTER TOPIC shop.odd ADD SOURCE shop.orders ON INSERT WHERE qty = 1",
]


def msg(i: int) -> str:
    return f'm"{i}\\\n%s é\t'  # quote, backslash, newline, a format marker, non-ASCII, tab


async def filled(engine) -> None:
    for text in SETUP:
        await sql(engine, ROOT, text)
    body = "".join(json.dumps({"id": i, "msg": msg(i), "qty": i % 2}) + "\n"
                   for i in range(ROWS)).encode()
    await ingest_body(engine, ROOT, "shop", "orders", body, "ndjson")


async def consume_all(engine, topic: str, group: str, batch: int, encoding: str) -> list:
    out: list = []
    while True:
        result = await engine.topics.consume(SERVICE, topic, group, 0, "earliest", batch,
                                             payload_encoding=encoding)
        out += result.messages
        await engine.topics.ack(SERVICE, topic, group, 0, result.next_offset - 1)
        if not result.has_more:
            return out


def decoded(message) -> dict:
    raw = message.payload if isinstance(message.payload, bytes) else \
        base64.b64decode(message.payload, validate=True)
    return json.loads(raw)


async def test_topics_consume__commit_bigger_than_a_chunk__every_offset_is_its_row(
        tmp_path: Path) -> None:
    # 8,999 rows in one change: batches of 1,000 (bytes) and 777 (base64) cross every chunk
    # boundary; each offset must carry its own row, key and escaped text.
    async with engine_at(tmp_path) as engine:
        await filled(engine)
        for group, batch, encoding in (("a", 1000, "bytes"), ("b", 777, "base64")):
            messages = await consume_all(engine, "shop.every", group, batch, encoding)
            assert [m.offset for m in messages] == list(range(ROWS))
            for m in messages:
                row = decoded(m)
                assert (row["id"], m.key, row["msg"], row["qty"]) == (
                    str(m.offset), str(m.offset), msg(m.offset), m.offset % 2)
                assert row["_table"] == "shop.orders"


async def test_topics_consume__filtered_route__non_consecutive_rows_render_exactly(
        tmp_path: Path) -> None:
    # WHERE qty = 1 keeps every other row: runs of non-consecutive rows are rendered as they
    # are (not cached as chunks) and still map offset n to the n-th odd id.
    async with engine_at(tmp_path) as engine:
        await filled(engine)
        messages = await consume_all(engine, "shop.odd", "g", 1000, "base64")
        assert [decoded(m)["id"] for m in messages] == [str(i) for i in range(1, ROWS, 2)]
        assert [m.key for m in messages] == [str(i) for i in range(1, ROWS, 2)]


async def test_topics_consume__second_group__served_from_cached_chunks(
        tmp_path: Path) -> None:
    # The first group renders the 3 chunks once; a second group reading the same messages
    # renders nothing; another encoding renders its own 3 chunks.
    async with engine_at(tmp_path) as engine:
        await filled(engine)
        cache = engine.topics.cache
        first = await consume_all(engine, "shop.every", "a", 1000, "bytes")
        assert cache.renders == 3
        second = await consume_all(engine, "shop.every", "b", 500, "bytes")
        assert cache.renders == 3
        assert [m.payload for m in second] == [m.payload for m in first]
        encoded = await consume_all(engine, "shop.every", "c", 1000, "base64")
        assert cache.renders == 6
        assert [base64.b64decode(m.payload) for m in encoded] == [m.payload for m in first]


async def test_topics_ack__many_at_once__share_group_commits_and_stay_monotonic(
        tmp_path: Path) -> None:
    # 30 acks started together (20 groups, and 10 out-of-order acks of one group): they are
    # written in a couple of WAL batches, not 30, and group "same" keeps its highest offset.
    async with engine_at(tmp_path) as engine:
        await filled(engine)
        wal = engine.wal
        before = wal.statistics()
        async with trio.open_nursery() as nursery:
            for g in range(20):
                nursery.start_soon(engine.topics.ack, SERVICE, "shop.every", f"g{g}", 0, g)
            for offset in (5, 9, 2, 7, 9, 1, 8, 3, 6, 4):
                nursery.start_soon(engine.topics.ack, SERVICE, "shop.every", "same", 0, offset)
        after = wal.statistics()
        assert after.syncs - before.syncs <= 3
        assert after.records_appended - before.records_appended == 21
        committed = engine.catalog.topics.committed
        assert [committed("shop.every", f"g{g}", 0) for g in range(20)] == list(range(20))
        assert committed("shop.every", "same", 0) == 9


def test_partition_index__runs__split_at_commits_changes_and_gaps() -> None:
    part = PartitionIndex(created_lsn=1, base_lsn=1, base_offset=100)
    part.extend(5, 0, [0, 1, 2], 1000)
    part.extend(5, 2, [4, 6], 1000)
    part.extend(9, 0, [3], 2000)
    runs = part.runs([100, 101, 102, 103, 104, 105])
    assert [(r.offsets, r.lsn, r.change, r.rows, r.ts_ms) for r in runs] == [
        (range(100, 103), 5, 0, [0, 1, 2], 1000), (range(103, 105), 5, 2, [4, 6], 1000),
        (range(105, 106), 9, 0, [3], 2000)]
    runs = part.runs([101, 104, 105])  # claims skipped 102-103
    assert [(r.offsets, r.rows) for r in runs] == [
        (range(101, 102), [1]), (range(104, 105), [6]), (range(105, 106), [3])]


def test_render__awkward_values__payload_is_the_json_of_the_row() -> None:
    # Names and values with '%', quotes, control characters, non-ASCII and NULLs: the
    # template-based payload must equal json.dumps of the row.
    table = TableDef(1, "app", "t", "SHARED", (
        ColumnDef(1, "id", KalamType("BigInt"), primary_key=True),
        ColumnDef(2, "100%s", KalamType("Text")),
        ColumnDef(3, "ok", KalamType("Boolean")),
        ColumnDef(4, "n", KalamType("Int"))))
    texts = ['a"b\\c', "%s %d %%", "\x00\x1f\u2028é", None]
    batch = pa.record_batch([
        pa.array([1, 2, 3, 4], pa.int64()), pa.array(texts, pa.string()),
        pa.array([True, None, False, True]), pa.array([7, None, -1, 0], pa.int32()),
        pa.array([11, 12, 13, 14], pa.int64()), pa.array([False] * 4)],
        names=["c1", "c2", "c3", "c4", "_seq", "_deleted"])
    change = RowChange(1, None, Op.INSERT, batch)
    got = payloads(change, [0, 1, 2, 3], table, "app.t", "full")
    for i, body in enumerate(got):
        expected = {"id": str(i + 1), "100%s": texts[i], "ok": [True, None, False, True][i],
                    "n": [7, None, -1, 0][i], "_seq": str(11 + i), "_deleted": False,
                    "_table": "app.t"}
        assert body == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()
    assert payloads(change, [1, 3], table, "app.t", "key") == [b'{"id":"2"}', b'{"id":"4"}']
    rendered = render_rows(change, [2, 3], table, "app.t", "full", "base64")
    assert [base64.b64decode(p) for p in rendered.payloads] == got[2:]
    assert rendered.keys == ["3", "4"]


def test_record_cache__learn__runs_merge_or_the_longer_one_wins() -> None:
    # Segment 100: a scan that peeked at its first record, then one from LSN 150 on (not
    # touching: the longer run wins), then one touching it from below (merged).
    cache = RecordCache(1 << 20)
    cache.learn([(99, 1, 900), (100, 100, 16)])
    assert (cache.position(99), cache.position(100), cache.position(150)) == (
        (1, 900), (100, 16), None)
    cache.learn([(150 + i, 100, 5000 + 10 * i) for i in range(5)])
    assert (cache.position(100), cache.position(152)) == (None, (100, 5020))
    cache.learn([(148, 100, 4980), (149, 100, 4990), (150, 100, 5000)])
    assert [cache.position(lsn) for lsn in (147, 148, 154, 155)] == [
        None, (100, 4980), (100, 5040), None]
