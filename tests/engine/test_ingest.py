"""Bulk ingestion through the engine API (engine/ingest.py; issue 4): NDJSON and Arrow IPC
bodies and Arrow tables into SHARED, USER and STREAM tables, with INSERT's rules.

Each test opens a real engine on a temp dir; "nothing written" is checked both by reading
the table and by the WAL's committed LSN staying put.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import trio
import trio.testing

from engine import (
    AlreadyExists,
    EngineConfig,
    InvalidInput,
    InvalidValue,
    PermissionDenied,
    Session,
    TableNotFound,
    ingest_body,
    ingest_rows,
)
from tests.engine.harness import ALICE, BOB, DBA, ROOT, SERVICE, engine_at, rows, sql

SETUP = """
CREATE NAMESPACE app;
CREATE SHARED TABLE app.items (id BIGINT PRIMARY KEY, title TEXT NOT NULL, price DECIMAL(10,2),
  tags JSON, created TIMESTAMP DEFAULT NOW(), n SMALLINT);
CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), body TEXT,
  owner TEXT DEFAULT CURRENT_USER());
CREATE STREAM TABLE app.events (kind TEXT, n INT) WITH (TTL_SECONDS = 60);
CREATE SHARED TABLE app.kinds (id INT PRIMARY KEY, b BOOLEAN, f DOUBLE, d DATE, t TIME,
  u UUID, raw BYTES, e EMBEDDING(2), at DATETIME)
"""


def ndjson(*lines: dict[str, Any] | str) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                   for line in lines).encode()


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


async def test_ingest__ndjson_into_shared__defaults_types_and_one_event(tmp_path: Path) -> None:
    # BIGINT as number or string, decimals rounded, JSON objects, NOW() default per row.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        before = engine.wal.committed_lsn
        body = ndjson({"id": 1, "title": "a", "price": 1.5, "tags": {"k": [1]}},
                      {"id": "2", "title": "b", "price": "2.005", "n": 7})
        result = await ingest_body(engine, ROOT, "app", "items", body, "ndjson")
        assert result.row_count == 2 and result.last_seq > 0
        assert engine.wal.committed_lsn == before + 1  # one WAL event for the request
        got = await rows(engine, ROOT, "SELECT id, title, price, tags, n, created IS NOT NULL, "
                         "_seq FROM app.items")
        assert [r[:6] for r in got] == [["1", "a", "1.50", '{"k":[1]}', None, True],
                                        ["2", "b", "2.01", None, 7, True]]
        assert max(int(r[6]) for r in got) == result.last_seq


async def test_ingest__fast_and_slow_ndjson_paths_agree(tmp_path: Path) -> None:
    # Blank lines and CRLF (fast reader) vs a JSON-object column (slow path): same values.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        fast = b'{"id":1,"title":"x","price":"3.10"}\r\n\n{"id":2,"title":"y"}\n'
        slow = b'{"id":3,"title":"x","price":"3.10","tags":[1]}\n\n{"id":4,"title":"y"}'
        await ingest_body(engine, ROOT, "app", "items", fast, "ndjson")
        await ingest_body(engine, ROOT, "app", "items", slow, "ndjson")
        assert await rows(engine, ROOT, "SELECT id, title, price FROM app.items") == [
            ["1", "x", "3.10"], ["2", "y", None], ["3", "x", "3.10"], ["4", "y", None]]


async def test_ingest__arrow_every_kind__wire_encodings(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        data = pa.table({
            "id": pa.array([1, 2], pa.int8()), "b": [True, None], "f": [1, 2.5],
            "d": pa.array([19000, 1], pa.int32()), "t": [1_000_000, 0],
            "u": ["123e4567-e89b-12d3-a456-426614174000", None], "raw": [b"hi", b""],
            "e": [[1.0, 2.0], None], "at": pa.array([5, 6], pa.timestamp("s", "UTC"))})
        result = await ingest_body(engine, ROOT, "app", "kinds", arrow_stream(data), "arrow")
        assert result.row_count == 2
        got = await rows(engine, ROOT, "SELECT id, b, f, d, t, u, raw, e, at FROM app.kinds")
        assert got == [
            [1, True, 1.0, 19000, 1_000_000, "123e4567-e89b-12d3-a456-426614174000", [104, 105],
             [1.0, 2.0], 5_000_000],
            [2, None, 2.5, 1, 0, None, [], None, 6_000_000]]


async def test_ingest__ndjson_every_kind__wire_encodings(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        body = ndjson({"id": 1, "b": True, "f": 1, "d": 19000, "t": 5, "raw": [104, 105],
                       "u": "123e4567-e89b-12d3-a456-426614174000", "e": [1, 2], "at": 7})
        await ingest_body(engine, ROOT, "app", "kinds", body, "ndjson")
        assert await rows(engine, ROOT, "SELECT b, f, d, t, u, raw, e, at FROM app.kinds") == [
            [True, 1.0, 19000, 5, "123e4567-e89b-12d3-a456-426614174000", [104, 105],
             [1.0, 2.0], 7]]


async def test_ingest__user_table__own_partition_and_impersonation(tmp_path: Path) -> None:
    # USER rows land in the caller's partition; ?user_id= follows EXECUTE AS USER's rule.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        await sql(engine, ROOT, "CREATE USER svc WITH PASSWORD 'pw-svc-123' ROLE service")
        await ingest_body(engine, ALICE, "app", "notes", ndjson({"body": "mine"}), "ndjson")
        await ingest_body(engine, SERVICE, "app", "notes", ndjson({"id": 5, "body": "for bob"}),
                          "ndjson", user_id="bob")
        assert await rows(engine, ALICE, "SELECT body, owner FROM app.notes") == [
            ["mine", "alice"]]
        assert await rows(engine, BOB, "SELECT id, body, owner FROM app.notes") == [
            ["5", "for bob", "bob"]]
        with pytest.raises(PermissionDenied, match="cannot target 'bob'"):
            await ingest_body(engine, ALICE, "app", "notes", ndjson({"body": "x"}), "ndjson",
                              user_id="bob")
        with pytest.raises(PermissionDenied, match="cannot target 'svc'"):
            await ingest_body(engine, Session("u9", "user"), "app", "notes",
                              ndjson({"body": "x"}), "ndjson", user_id="svc")
        # DBA may target a service user; the rows are svc's.
        await ingest_body(engine, DBA, "app", "notes", ndjson({"body": "dba wrote"}), "ndjson",
                          user_id="svc")
        assert await rows(engine, Session("svc", "service"), "SELECT body, owner FROM "
                          "app.notes") == [["dba wrote", "svc"]]


async def test_ingest__stream_table_and_arrow_rows_api(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        result = await ingest_rows(engine, ALICE, "app", "events",
                                   pa.table({"KIND": ["a", "b"], "n": [1, 2]}))
        assert result.row_count == 2
        assert await rows(engine, ALICE, "SELECT kind, n FROM app.events ORDER BY n") == [
            ["a", 1], ["b", 2]]
        assert await rows(engine, BOB, "SELECT kind FROM app.events") == []


ITEM_ERRORS = [
    (b'{"id":1,"title":"a"}\n{"id":2,"title":"b"\n', InvalidInput, "Line 2: invalid JSON"),
    (b'{"id":1,"title":"a"}\n\nnull\n', InvalidInput, "Line 3: expected a JSON object"),
    (b'{"id":1,"title":"a"}{"id":2,"title":"b"}\n', InvalidInput, "Line 1: invalid JSON"),
    (ndjson({"id": 1, "title": "a"}, {"id": "x", "title": "b"}), InvalidValue,
     r"Line 2: Invalid value for column 'id' \(BIGINT\): expected an integer"),
    (ndjson({"id": 1, "title": "a", "n": 40000}), InvalidValue,
     "Line 1: .*40000 is out of range for SMALLINT"),
    (ndjson({"id": 1, "title": "a"}, {"id": 2, "title": None}), InvalidValue,
     "Line 2: Column 'title' cannot be null"),
    (ndjson({"id": 1, "title": "a"}, {"title": "b"}), InvalidValue,
     "Line 2: Column 'id' cannot be null"),
    (ndjson({"id": 7, "title": "a"}, {"id": 7, "title": "b"}), AlreadyExists,
     "Primary key violation: value '7' already exists in column 'id'"),
    (ndjson({"id": 1, "title": "dup of existing"}), AlreadyExists, "value '1' already exists"),
    (ndjson({"id": 2, "title": "a", "colour": "red"}), InvalidInput,
     "Line 1: unknown column 'colour'"),
    (ndjson({"id": 2, "title": "a", "_seq": 1}), InvalidInput,
     "Line 1: system column '_seq' cannot be written"),
    (ndjson({"id": 2, "title": "a", "ID": 3}), InvalidInput, "given more than once"),
    (ndjson({"id": 2, "title": "a", "tags": "{not json"}), InvalidValue,
     "Line 1: .*invalid JSON text"),
    (b"\n  \n", InvalidInput, "holds no rows"),
    (b'{"id":2,"title":"\xff"}\n', InvalidInput, "Line 1: not valid UTF-8"),
]


@pytest.mark.parametrize(("body", "error", "message"), ITEM_ERRORS)
async def test_ingest__ndjson_bad_body__named_error_and_nothing_written(
        tmp_path: Path, body: bytes, error: type, message: str) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (1, 'kept')")
        before = engine.wal.committed_lsn
        with pytest.raises(error, match=message):
            await ingest_body(engine, ROOT, "app", "items", body, "ndjson")
        assert engine.wal.committed_lsn == before
        assert await rows(engine, ROOT, "SELECT id, title FROM app.items") == [["1", "kept"]]


ARROW_ERRORS = [
    (b"not an arrow stream", InvalidInput, "Invalid Arrow IPC stream"),
    (pa.table({"id": [1, 2], "title": ["a", None]}), InvalidValue,
     "Row 2: Column 'title' cannot be null"),
    (pa.table({"id": [1, 2], "title": [1.5, 2.5]}), None, None),  # numbers become text
    (pa.table({"id": ["1", "x"], "title": ["a", "b"]}), InvalidValue,
     r"Row 2: Invalid value for column 'id'"),
    (pa.table({"id": [3], "title": ["a"], "nope": [1]}), InvalidInput,
     "Arrow schema: unknown column 'nope'"),
    (pa.table({"id": pa.array([], pa.int64()), "title": pa.array([], pa.utf8())}),
     InvalidInput, "holds no rows"),
    (pa.table({"id": [4], "title": ["a"], "tags": [b"{}"]}), InvalidValue,
     r"Row 1: Invalid value for column 'tags' \(JSON\)"),
    (pa.table({"id": [4], "title": ["a"], "tags": ['{"a": 1}']}), None, None),
]


@pytest.mark.parametrize(("data", "error", "message"), ARROW_ERRORS)
async def test_ingest__arrow_bodies__errors_name_row_or_column(
        tmp_path: Path, data: pa.Table | bytes, error: type | None, message: str | None) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        before = engine.wal.committed_lsn
        body = data if isinstance(data, bytes) else arrow_stream(data)
        if error is None:
            result = await ingest_body(engine, ROOT, "app", "items", body, "arrow")
            assert result.row_count == len(data)
            return
        with pytest.raises(error, match=message):
            await ingest_body(engine, ROOT, "app", "items", body, "arrow")
        assert engine.wal.committed_lsn == before
        assert await rows(engine, ROOT, "SELECT count(*) FROM app.items") == [["0"]]


async def test_ingest__who_may_write__tables_and_roles(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        body = ndjson({"id": 1, "title": "a"})
        with pytest.raises(TableNotFound, match=r"Table 'app\.nope' does not exist"):
            await ingest_body(engine, ROOT, "app", "nope", body, "ndjson")
        with pytest.raises(PermissionDenied, match="Write access denied"):
            await ingest_body(engine, ALICE, "app", "items", body, "ndjson")
        with pytest.raises(PermissionDenied, match="read-only"):
            await ingest_body(engine, ROOT, "system", "users", body, "ndjson")
        with pytest.raises(Exception, match="only supported for USER and STREAM"):
            await ingest_body(engine, ROOT, "app", "items", body, "ndjson", user_id="alice")
        with pytest.raises(InvalidInput, match="user_id must not be empty"):
            await ingest_body(engine, ROOT, "app", "items", body, "ndjson", user_id="")
        assert await rows(engine, ROOT, "SELECT count(*) FROM app.items") == [["0"]]
        await ingest_body(engine, SERVICE, "app", "items", body, "ndjson")  # service may


async def test_ingest__restart__rows_replayed_from_the_wal(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        body = "".join(json.dumps({"id": i, "title": f"t{i}"}) + "\n" for i in range(1000))
        result = await ingest_body(engine, ROOT, "app", "items", body.encode(), "ndjson")
        assert result.row_count == 1000
    async with engine_at(tmp_path) as engine:
        assert await rows(engine, ROOT, "SELECT count(*), max(id), max(_seq) FROM app.items") \
            == [["1000", "999", str(result.last_seq)]]
        with pytest.raises(AlreadyExists, match="value '999'"):
            await ingest_body(engine, ROOT, "app", "items", ndjson({"id": 999, "title": "x"}),
                              "ndjson")


async def test_ingest__compressed_arrow_stream__decoded_size_bounded_by_event_max(
        tmp_path: Path) -> None:
    # A zstd stream is small on the wire; its decoded size is checked batch by batch.
    config = EngineConfig(bcrypt_cost=4, jobs_interval_seconds=3600, event_max_bytes=1 << 20)
    data = pa.table({"id": pa.array(range(200_000), pa.int64()),
                     "title": pa.array(["t"] * 200_000)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema,
                           options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(data)
    body = sink.getvalue().to_pybytes()
    assert len(body) < 1 << 20
    async with engine_at(tmp_path, config) as engine:
        await sql(engine, ROOT, SETUP)
        with pytest.raises(InvalidInput, match="decodes to more than 1048576 bytes"):
            await ingest_body(engine, ROOT, "app", "items", body, "arrow")
        small = arrow_stream(data.slice(0, 1000))
        assert (await ingest_body(engine, ROOT, "app", "items", small, "arrow")).row_count \
            == 1000


@pytest.mark.parametrize(("alter", "expected"), [
    ("ALTER TABLE app.items ADD COLUMN extra TEXT DEFAULT 'x'", [["1", "a", "x"]]),
    ("ALTER TABLE app.items DROP COLUMN n", "was dropped from table 'app.items'"),
])
async def test_ingest__table_altered_while_decoding__converted_again_or_refused(
        tmp_path: Path, alter: str, expected: Any) -> None:
    # The ALTER queues on the write lock first; the ingest decodes against the old definition
    # and queues behind it, so it commits against the new one.
    outcome: list[Any] = []
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)

        async def run_ingest() -> None:
            try:
                outcome.append(await ingest_body(engine, ROOT, "app", "items",
                                                 ndjson({"id": 1, "title": "a", "n": 2}),
                                                 "ndjson"))
            except InvalidInput as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            await engine.write_lock.acquire()
            nursery.start_soon(sql, engine, ROOT, alter)
            await _lock_queue_reaches(engine, 1)
            nursery.start_soon(run_ingest)
            await _lock_queue_reaches(engine, 2)
            engine.write_lock.release()
        if isinstance(expected, str):
            assert expected in str(outcome[0])
            assert await rows(engine, ROOT, "SELECT count(*) FROM app.items") == [["0"]]
        else:
            assert await rows(engine, ROOT, "SELECT id, title, extra FROM app.items") == expected


async def _lock_queue_reaches(engine: Any, count: int) -> None:
    while engine.write_lock.statistics().tasks_waiting < count:
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
