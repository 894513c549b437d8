"""Topics through the engine (issue 5; PROTOCOL §3.13, §4): publishing, routes, payload
modes, partitions, consumer groups, claims, long-poll, SQL CONSUME/ACK, system tables.

Each test opens a real engine on a temp dir and drives it with SQL plus the topic service
(``engine.topics``) that the HTTP routes call.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from engine import AlreadyExists, InvalidInput, InvalidSql, NotFound, PermissionDenied
from engine.topics.service import Message
from tests.engine.harness import ALICE, CONFIG, DBA, ROOT, SERVICE, engine_at, rows, sql

SETUP = [
    "CREATE NAMESPACE shop",
    "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, msg TEXT, qty INT) WITH (TYPE='SHARED')",
    "CREATE TOPIC shop.events",
]


async def setup(engine, *routes: str, partitions: int = 1) -> None:
    statements = SETUP if partitions == 1 else [*SETUP[:2], f"CREATE TOPIC shop.events "
                                                           f"PARTITIONS {partitions}"]
    for text in [*statements, *routes]:
        await sql(engine, ROOT, text)


def body(message: Message) -> dict:
    return json.loads(message.payload)


async def consume(engine, group: str | None = "g", start="earliest", limit=100, partition=0,
                  wait_s=0.0):
    return await engine.topics.consume(SERVICE, "shop.events", group, partition, start, limit,
                                       wait_s)


async def test_topics__round_trip__insert_becomes_message_with_table_and_writer(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id, msg, qty) VALUES (7012, 'hi', 2)")
        result = await consume(engine)
        [message] = result.messages
        assert (message.offset, message.key, message.op, message.user_id) == (
            0, "7012", "insert", "root")
        assert body(message) == {"id": "7012", "msg": "hi", "qty": 2, "_deleted": False,
                                 "_seq": body(message)["_seq"], "_table": "shop.orders"}
        assert list(body(message)) == ["id", "msg", "qty", "_seq", "_deleted", "_table"]
        assert message.timestamp_ms == engine.clock.now_ms()
        assert (result.next_offset, result.has_more) == (1, False)
        # SQL CONSUME shows the same message, op lower-case, payload as bytes.
        [row] = await rows(engine, SERVICE, "CONSUME FROM shop.events FROM EARLIEST")
        assert row[:4] == ["shop.events", 0, "0", "7012"] and row[6:] == ["root", "insert"]
        assert bytes(row[4]) == message.payload


async def test_topics__ddl_errors_and_roles(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        with pytest.raises(AlreadyExists):
            await sql(engine, ROOT, "CREATE TOPIC shop.events")
        with pytest.raises(NotFound):
            await sql(engine, ROOT, "CREATE TOPIC nowhere.t")
        with pytest.raises(AlreadyExists):
            await sql(engine, ROOT, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        with pytest.raises(InvalidSql, match="nope"):
            await sql(engine, ROOT, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON UPDATE "
                                    "WHERE nope = 1")
        with pytest.raises(NotFound):
            await sql(engine, ROOT, "ALTER TOPIC shop.missing ADD SOURCE shop.orders ON INSERT")
        for session in (SERVICE, ALICE):
            with pytest.raises(PermissionDenied):
                await sql(engine, session, "CREATE TOPIC shop.other")
        await sql(engine, DBA, "CREATE TOPIC shop.other")
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "CONSUME FROM shop.events")
        with pytest.raises(PermissionDenied):
            await engine.topics.consume(ALICE, "shop.events", "g")
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "ACK shop.events GROUP 'g' UPTO OFFSET 1")
        with pytest.raises(NotFound):
            await sql(engine, SERVICE, "CONSUME FROM shop.nope")
        with pytest.raises(InvalidInput):
            await consume(engine, partition=1)
        with pytest.raises(InvalidInput):
            await consume(engine, limit=CONFIG.topic_consume_limit_max + 1)
        await consume(engine, limit=CONFIG.topic_consume_limit_max)  # the limit itself is fine
        with pytest.raises(InvalidInput):
            await engine.topics.ack(SERVICE, "shop.events", "g", 0, -1)
        # A source table that does not exist yet is accepted (as the reference does).
        await sql(engine, ROOT, "ALTER TOPIC shop.other ADD SOURCE later ON DELETE")
        [[routes]] = await rows(engine, ROOT, "SELECT routes FROM system.topics "
                                              "WHERE topic_id = 'shop.other'")
        assert json.loads(routes) == [{"table": "default.later", "op": "delete", "where": None,
                                       "payload": "full"}]


async def test_topics__groups__claims_disjoint_ack_inclusive_and_monotonic(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id, qty) VALUES "
                  + ", ".join(f"({i}, {i})" for i in range(10)))
        first = await consume(engine, limit=4)
        second = await consume(engine, limit=4)  # no ack: the next range, not the same one
        assert [m.offset for m in first.messages] == [0, 1, 2, 3]
        assert [m.offset for m in second.messages] == [4, 5, 6, 7]
        assert (first.has_more, second.next_offset) == (True, 8)
        other = await consume(engine, group="other", limit=3)  # groups are independent
        assert [m.offset for m in other.messages] == [0, 1, 2]
        assert await engine.topics.ack(SERVICE, "shop.events", "g", 0, 5) == 5
        assert await engine.topics.ack(SERVICE, "shop.events", "g", 0, 2) == 2  # lower: no-op
        assert await rows(engine, ROOT, "SELECT group_id, partition_id, last_acked_offset "
                                        "FROM system.topic_offsets ORDER BY group_id") == [
            ["g", 0, "5"]]
        rest = await consume(engine, limit=100)
        assert [m.offset for m in rest.messages] == [8, 9]
        assert (rest.next_offset, rest.has_more) == (10, False)
        empty = await consume(engine)
        assert (empty.messages, empty.next_offset) == ([], 10)
        nothing = await consume(engine, group="third", limit=0)
        assert (nothing.messages, nothing.has_more) == ([], True)  # has_more = (len == limit)


async def test_topics__start_positions__latest_skips_history_earliest_and_offset(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id) VALUES (1), (2), (3)")
        latest = await consume(engine, group="late", start="latest")
        assert (latest.messages, latest.next_offset) == ([], 3)
        await sql(engine, ROOT, "INSERT INTO shop.orders (id) VALUES (4)")
        after = await consume(engine, group="late", start="earliest")  # the cursor wins
        assert [m.key for m in after.messages] == ["4"]
        from_two = await consume(engine, group="mid", start=2)
        assert [m.offset for m in from_two.messages] == [2, 3]
        assert [m.offset for m in (await consume(engine, group=None, start=1)).messages] == [
            1, 2, 3]
        # SQL CONSUME with a group auto-acks the last returned offset and resumes after it.
        got = await rows(engine, SERVICE, "CONSUME FROM shop.events GROUP 'sql' FROM EARLIEST "
                                          "LIMIT 2")
        assert [r[2] for r in got] == ["0", "1"]
        assert await rows(engine, ROOT, "SELECT last_acked_offset FROM system.topic_offsets "
                                        "WHERE group_id = 'sql'") == [["1"]]
        got = await rows(engine, SERVICE, "CONSUME FROM shop.events GROUP 'sql' LIMIT 5")
        assert [r[2] for r in got] == ["2", "3"]
        [ack] = await sql(engine, SERVICE, "ACK shop.events GROUP 'sql' UPTO OFFSET 9")
        assert ack["rows"] == [["shop.events", "sql", 0, "9"]]
        assert [s["name"] for s in ack["schema"]] == ["topic", "group_id", "partition",
                                                      "committed_offset"]


async def test_topics__visibility_timeout__unacked_claims_are_redelivered(tmp_path: Path
                                                                          ) -> None:
    config = replace(CONFIG, topic_visibility_timeout_seconds=0.3)
    async with engine_at(tmp_path, config) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id) VALUES (1), (2), (3), (4)")
        first = await consume(engine, limit=2)
        await engine.topics.ack(SERVICE, "shop.events", "g", 0, 0)  # offset 1 stays unacked
        second = await consume(engine, limit=2)
        assert [m.offset for m in first.messages + second.messages] == [0, 1, 2, 3]
        assert (await consume(engine)).messages == []  # everything is claimed
        await trio.sleep(0.5)
        again = await consume(engine)
        # Offsets 1..3 were never acked: their claims expired, so they come back (not 0).
        assert [m.offset for m in again.messages] == [1, 2, 3]
        # A long-poll with everything claimed wakes when a claim expires, not at its end.
        started = trio.current_time()
        redelivered = await consume(engine, wait_s=20)
        assert [m.offset for m in redelivered.messages] == [1, 2, 3]
        assert trio.current_time() - started < 20


async def test_topics__long_poll__returns_early_on_a_new_message_else_times_out(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        started = trio.current_time()
        empty = await consume(engine, start="latest", wait_s=0.3)
        assert empty.messages == [] and trio.current_time() - started >= 0.3
        got = []

        async def wait_for_one() -> None:
            got.append(await consume(engine, group="poll", start="latest", wait_s=30))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_one)
            await trio.sleep(0.2)
            assert got == []  # still waiting
            await sql(engine, ROOT, "INSERT INTO shop.orders (id) VALUES (42)")
        [result] = got
        assert [m.key for m in result.messages] == ["42"]
        assert trio.current_time() - started < 30


async def test_topics__partitions__crc32_of_the_key_in_commit_order(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT",
                    partitions=4)
        await sql(engine, ROOT, "INSERT INTO shop.orders (id) VALUES "
                  + ", ".join(f"({i})" for i in range(40)))
        seen = []
        for partition in range(4):
            result = await consume(engine, partition=partition)
            keys = [int(m.key) for m in result.messages]
            assert keys == sorted(keys)  # commit order inside a partition
            assert [m.offset for m in result.messages] == list(range(len(keys)))
            assert all(zlib.crc32(str(k).encode()) % 4 == partition for k in keys)
            seen += keys
        assert sorted(seen) == list(range(40))
        [[partitions]] = await rows(engine, ROOT, "SELECT partitions FROM system.topics")
        assert partitions == 4


async def test_topics__route_where_filters_are_evaluated(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT WHERE "
                            "(qty > 2 AND msg LIKE 'a%') OR id IN (100, 101) OR msg IS NULL")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id, msg, qty) VALUES "
                  "(1, 'apple', 5), (2, 'apple', 1), (3, 'berry', 9), (100, 'x', 0), "
                  "(4, NULL, 1), (5, 'avocado', NULL)")
        assert [m.key for m in (await consume(engine)).messages] == ["1", "100", "4"]


async def test_topics__where_filters__between_not_and_literal_types(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT WHERE "
                            "qty BETWEEN 2 AND 4 AND NOT (msg = 'skip') AND id <> -1")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id, msg, qty) VALUES "
                  "(1, 'a', 2), (2, 'skip', 3), (3, 'b', 5), (4, 'c', 4), (-1, 'd', 3)")
        assert [m.key for m in (await consume(engine)).messages] == ["1", "4"]
        with pytest.raises(InvalidSql, match="IN needs a list of constants"):
            await sql(engine, ROOT, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON UPDATE "
                                    "WHERE qty IN (SELECT 1)")
        with pytest.raises(InvalidSql, match="no kernel"):
            await sql(engine, ROOT, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON UPDATE "
                                    "WHERE msg > qty")
        with pytest.raises(InvalidSql, match="not a boolean"):
            await sql(engine, ROOT, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON UPDATE "
                                    "WHERE qty + 1")
        with pytest.raises(InvalidSql, match="Unsupported expression"):
            await sql(engine, ROOT, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON UPDATE "
                                    "WHERE upper(msg) = 'A'")


async def test_topics__payload_modes__key_full_diff_and_delete_tombstones(tmp_path: Path
                                                                          ) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine,
                    "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT "
                    "WITH (payload = 'key')",
                    "ALTER TOPIC shop.events ADD SOURCE shop.orders ON UPDATE "
                    "WITH (payload = 'diff')",
                    "ALTER TOPIC shop.events ADD SOURCE shop.orders ON DELETE")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id, msg, qty) VALUES (1, 'a', 2)")
        await sql(engine, ROOT, "UPDATE shop.orders SET qty = 3 WHERE id = 1")
        await sql(engine, ROOT, "DELETE FROM shop.orders WHERE id = 1")
        insert, update, delete = (await consume(engine)).messages
        assert body(insert) == {"id": "1"}
        assert [insert.op, update.op, delete.op] == ["insert", "update", "delete"]
        assert set(body(update)) == {"id", "qty", "_seq", "_deleted", "_table"}
        assert (body(update)["qty"], body(update)["_table"]) == (3, "shop.orders")
        assert body(delete)["_deleted"] is True and body(delete)["msg"] == "a"


async def test_topics__clear_and_drop(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id) VALUES (1), (2)")
        await sql(engine, ROOT, "CLEAR TOPIC shop.events")
        await sql(engine, ROOT, "INSERT INTO shop.orders (id) VALUES (3)")
        [message] = (await consume(engine)).messages
        assert (message.offset, message.key) == (2, "3")  # offsets keep counting
        await sql(engine, ROOT, "DROP TOPIC shop.events")
        with pytest.raises(NotFound):
            await consume(engine)
        assert await rows(engine, ROOT, "SELECT * FROM system.topics") == []
        assert await rows(engine, ROOT, "SELECT * FROM system.topic_offsets") == []
        # A new topic of the same name starts from scratch.
        await sql(engine, ROOT, "CREATE TOPIC shop.events")
        assert (await consume(engine)).messages == []


async def test_topics__a_group_never_gets_a_message_twice_without_expiry(
        tmp_path: Path, base_seed: int) -> None:
    # Three consumers of one group race with a writer; each acks what it got. Every
    # message is delivered exactly once (claims never expire within the test).
    import random

    rng = random.Random(base_seed)
    async with engine_at(tmp_path) as engine:
        await setup(engine, "ALTER TOPIC shop.events ADD SOURCE shop.orders ON INSERT")
        delivered: list[int] = []

        async def consumer() -> None:
            for _ in range(30):
                result = await consume(engine, limit=rng.randint(1, 4), wait_s=0.05)
                delivered.extend(m.offset for m in result.messages)
                if result.messages and rng.random() < 0.5:
                    await engine.topics.ack(SERVICE, "shop.events", "g", 0,
                                            result.messages[-1].offset)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(consumer)
            for i in range(40):
                await sql(engine, ROOT, f"INSERT INTO shop.orders (id) VALUES ({i})")
                await trio.lowlevel.checkpoint()
        assert len(delivered) == len(set(delivered)), f"--seed {base_seed}"
        assert sorted(delivered) == list(range(len(delivered)))


async def test_topics__user_table__writer_is_the_owner_until_the_user_is_dropped(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for text in ("CREATE NAMESPACE app",
                     "CREATE USER alice WITH PASSWORD 'pw-alice-1' ROLE user",
                     "CREATE TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT) "
                     "WITH (TYPE='USER')",
                     "CREATE TOPIC app.notes_events",
                     "ALTER TOPIC app.notes_events ADD SOURCE app.notes ON INSERT"):
            await sql(engine, ROOT, text)
        await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (1, 'mine')")
        read = engine.topics.consume  # a stateless read from the start
        [message] = (await read(SERVICE, "app.notes_events", None, 0, "earliest")).messages
        assert (message.user_id, body(message)["_table"]) == ("alice", "app.notes")
        await sql(engine, ROOT, "DROP USER alice")
        [message] = (await read(SERVICE, "app.notes_events", None, 0, "earliest")).messages
        assert message.user_id is None  # echoed only while the user exists (§4.2)
        with pytest.raises(InvalidInput, match="group_id"):
            await read(SERVICE, "app.notes_events", "g" * 257)


async def test_topics__table_without_primary_key__hash_of_the_full_payload(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for text in ("CREATE NAMESPACE logs",
                     "CREATE TABLE logs.lines (body TEXT) WITH (TYPE='STREAM', TTL_SECONDS=3600)",
                     "CREATE TOPIC logs.feed PARTITIONS 3",
                     "ALTER TOPIC logs.feed ADD SOURCE logs.lines ON INSERT "
                     "WHERE _deleted = false WITH (payload = 'key')",
                     "CREATE TOPIC logs.whole PARTITIONS 3",
                     "ALTER TOPIC logs.whole ADD SOURCE logs.lines ON INSERT"):
            await sql(engine, ROOT, text)
        await sql(engine, ROOT, "INSERT INTO logs.lines (body) VALUES "
                  + ", ".join(f"('line {i}')" for i in range(12)))
        seen = 0
        for partition in range(3):
            full = await engine.topics.consume(SERVICE, "logs.whole", None, partition,
                                               "earliest")
            keyed = await engine.topics.consume(SERVICE, "logs.feed", None, partition,
                                                "earliest")
            for message in full.messages:
                assert message.key is None
                assert zlib.crc32(message.payload) % 3 == partition
            # `key` mode without a primary key carries `_seq`, and lands where `full` does.
            assert [body(m) for m in keyed.messages] == [
                {"_seq": body(m)["_seq"]} for m in full.messages]
            seen += len(full.messages)
        assert seen == 12
