"""Malformed and adversarial request bodies against the real server (issue 9): Hypothesis
builds JSON bodies for ``/v1/api/sql``, ``/v1/api/auth/login`` and the topic routes,
NDJSON and Arrow garbage for ingest, and broken multipart bodies; the server must answer
each with a client error (or a success), never a 5xx, never crash, and a refused request
must leave nothing behind: alice's row count of ``app.todos`` is re-read after every
request that could write, and a refusal must leave it unchanged (batches, where earlier
statements may stay applied by PROTOCOL §1.3, are test_fuzz_sql.py's).

How it works: tests/api/fuzz_support.py (one server per test, the property runs in a worker
thread with blocking HTTP calls, seeded from ``--seed``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, seed
from hypothesis import strategies as st

from tests.api.fuzz_support import (
    TOPIC,
    Watched,
    call,
    count,
    examples,
    fuzz_settings,
    fuzz_world,
    run_property,
)

EXAMPLES = 40  # per test; x10 with --run-slow (fuzz_support.examples)
TODOS = "app.todos"
# JSON scalars and containers, small: the point is shape, not size.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
# Byte strings no JSON parser should trip over (they are all invalid or hostile JSON).
ADVERSARIAL_JSON = [
    b"", b"{", b"}", b"null", b"[]", b'"sql"', b"{\"sql\":", b"\xef\xbb\xbf{}",
    b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"sql": NaN}', b'{"sql": Infinity}', b'{"sql": -Infinity}', b'{"sql":"\\ud800"}',
    b'{"sql":"SELECT 1","sql":"SELECT 2"}', b'{"sql":"\x00"}', b"\x00" * 64,
    b'{"sql":"SELECT 1","params":[' + b"9" * 5000 + b"]}", b'{"sql":"SELECT 1e999"}',
    b'{"sql":"SELECT $1","params":[1e999]}', b"\xff\xfe{\x00}\x00", b'{"sql":"\xc0\xaf"}',
]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain",
                 "application/problem+json", "", "multipart/form-data",
                 "application/x-www-form-urlencoded"]
SQL_TEXTS = [
    "SELECT 1", "SELECT * FROM app.todos", "INSERT INTO app.todos (id, title, done) "
    "VALUES ($1, $2, $3)", "INSERT INTO app.todos (id, title) VALUES (1, 'x'), (1, 'y')",
    "UPDATE app.todos SET title = $1 WHERE id = $2", "DELETE FROM app.todos WHERE id = $1",
    "SELECT $1, $2", "", "   ", ";", ";;", "SELECT * FROM app.vault",
]


def _field(valid: st.SearchStrategy) -> st.SearchStrategy:
    """A field's value: a valid one, any JSON, or absent (None key dropped later)."""
    return st.one_of(valid, json_values, st.just(_ABSENT))


_ABSENT = object()


def _object(**fields: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    def build(values: dict[str, Any], extra: dict[str, Any]) -> bytes:
        body = {k: v for k, v in values.items() if v is not _ABSENT} | extra
        return json.dumps(body).encode()
    return st.builds(build, st.fixed_dictionaries({k: _field(v) for k, v in fields.items()}),
                     st.dictionaries(st.text(max_size=6), json_values, max_size=2))


def bodies(**fields: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """Raw bytes, any JSON, a hostile literal, or the route's object with fields swapped."""
    return st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                     st.sampled_from(ADVERSARIAL_JSON), _object(**fields))


async def test_fuzz_http__sql_json_bodies__client_errors_only_nothing_half_written(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    async with fuzz_world(tmp_path) as world:
        server, alice = world.server, world.users.alice
        todos = Watched(lambda: count(server, alice, TODOS))

        @seed(base_seed)
        @fuzz_settings(examples(request, EXAMPLES))
        @given(body=bodies(sql=st.sampled_from(SQL_TEXTS), params=st.lists(json_values,
                                                                          max_size=4),
                           namespace_id=st.sampled_from(["app", "default", "", "../x"])),
               content_type=st.sampled_from(CONTENT_TYPES))
        def property_(body: bytes, content_type: str) -> None:
            reply = call(server, "POST", "/v1/api/sql", body, token=alice,
                         headers={"Content-Type": content_type})
            assert reply.status < 500, (body[:300], reply.status, reply.body[:300])
            assert reply.headers.get("content-type") == "application/json", reply.headers
            todos.after(reply.status != 200, body)

        await run_property(property_, base_seed)


async def test_fuzz_http__login_bodies__400_text_or_401_never_5xx(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    async with fuzz_world(tmp_path) as world:
        server = world.server

        @seed(base_seed)
        @fuzz_settings(examples(request, EXAMPLES))
        @given(body=bodies(user=st.sampled_from(["alice", "root", "", "a" * 200]),
                           password=st.sampled_from(["x", "", "User-pass-42"]),
                           username=st.just("bob")),
               content_type=st.sampled_from(CONTENT_TYPES))
        def property_(body: bytes, content_type: str) -> None:
            reply = call(server, "POST", "/v1/api/auth/login", body,
                         headers={"Content-Type": content_type})
            assert reply.status in (200, 400, 401, 413), (body[:300], reply.status,
                                                          reply.body[:300])
            if reply.status == 400:
                assert reply.headers["content-type"].startswith("text/plain")

        await run_property(property_, base_seed)


async def test_fuzz_http__topic_bodies__client_errors_only(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    async with fuzz_world(tmp_path) as world:
        server, admin = world.server, world.users.admin
        offsets = st.integers(min_value=-2, max_value=2**70)
        consume = bodies(topic_id=st.sampled_from([TOPIC, "app.nope", ""]),
                         group_id=st.sampled_from(["g", "", "x" * 300]),
                         start=st.sampled_from(["Latest", "earliest", {"Offset": 0},
                                                {"offset": -1}, {"Offset": 2**70}]),
                         limit=offsets, partition_id=offsets,
                         timeout_seconds=st.sampled_from([0, 0.1, -1, "1", True]))
        ack = bodies(topic_id=st.sampled_from([TOPIC, "app.nope"]), group_id=st.just("g"),
                     upto_offset=offsets, partition_id=offsets)

        @seed(base_seed)
        @fuzz_settings(examples(request, EXAMPLES))
        @given(route=st.sampled_from(["consume", "ack"]), data=st.data())
        def property_(route: str, data: st.DataObject) -> None:
            body = data.draw(consume if route == "consume" else ack)
            reply = call(server, "POST", f"/v1/api/topics/{route}", body, token=admin,
                         headers={"Content-Type": "application/json"})
            assert reply.status < 500, (route, body[:300], reply.status, reply.body[:300])
            if reply.status != 200:
                assert set(reply.json()) == {"error", "code"}, reply.body

        await run_property(property_, base_seed)


def _arrow_stream(table: pa.Table, cut: int | None = None) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    return data if cut is None else data[:cut]


ROW = st.fixed_dictionaries({"id": _field(st.integers(0, 10**6)),
                             "title": _field(st.text(max_size=10)),
                             "done": _field(st.booleans())})
ndjson = st.lists(st.one_of(ROW.map(lambda r: json.dumps({k: v for k, v in r.items()
                                                          if v is not _ABSENT})),
                            json_values.map(json.dumps), st.text(max_size=30)),
                  min_size=0, max_size=5).map(lambda lines: "\n".join(lines).encode())
arrow_tables = st.builds(
    lambda ids, names: pa.table({"id": pa.array(ids, pa.int64()),
                                 names: pa.array([str(i) for i in ids])}),
    st.lists(st.integers(-5, 5), min_size=1, max_size=4),
    st.sampled_from(["title", "done", "nope", "_seq", "id2"]))
arrow_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(_arrow_stream, arrow_tables, st.none() | st.integers(0, 400)),
    st.builds(lambda t, i, b: (lambda d: d[:i] + bytes([b]) + d[i + 1:])(_arrow_stream(t)),
              arrow_tables, st.integers(0, 300), st.integers(0, 255)))


async def test_fuzz_http__ingest_garbage__refused_and_nothing_written(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    async with fuzz_world(tmp_path) as world:
        server, alice = world.server, world.users.alice
        todos = Watched(lambda: count(server, alice, TODOS))

        @seed(base_seed)
        @fuzz_settings(examples(request, EXAMPLES))
        @given(kind=st.sampled_from(["ndjson", "arrow"]), data=st.data(),
               query=st.sampled_from(["", "?user_id=", "?user_id=bob", "?user_id=alice",
                                      "?user_id=%00", "?user_id=.."]))
        def property_(kind: str, data: st.DataObject, query: str) -> None:
            body = data.draw(ndjson if kind == "ndjson" else arrow_bodies)
            media = "application/x-ndjson" if kind == "ndjson" else \
                "application/vnd.apache.arrow.stream"
            reply = call(server, "POST", f"/v1/api/ingest/app/todos{query}", body,
                         token=alice, headers={"Content-Type": media})
            assert reply.status < 500, (kind, body[:300], reply.status, reply.body[:300])
            todos.after(reply.status != 200, body)

        await run_property(property_, base_seed)


def _multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for name, value in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                .encode() + value + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


INSERT = b"INSERT INTO app.todos (id, title) VALUES ($1, 'mp')"
multipart_cases = st.builds(
    lambda boundary, header_boundary, parts, cut, pad: (
        header_boundary, _multipart(boundary, parts)[:cut] + pad),
    st.sampled_from(["b", "x" * 70, "sluice-boundary"]),
    st.sampled_from(["b", "x" * 70, "x" * 71, "other", "", "sluice-boundary", '"b"']),
    st.lists(st.tuples(st.sampled_from(["sql", "params", "namespace_id", "file:f",
                                        "x" * 20_000]),
                       st.sampled_from([INSERT, b"[7]", b"[", b"app", b"SELECT 1",
                                        b"", b"\x00\xff",
                                        b"[" * 50_000 + b"]" * 50_000])), max_size=4),
    st.none() | st.integers(0, 400),
    st.sampled_from([b"", b"\r\n", b"--", b"garbage"]))


async def test_fuzz_http__multipart_bodies__refused_cleanly(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    async with fuzz_world(tmp_path) as world:
        server, alice = world.server, world.users.alice
        todos = Watched(lambda: count(server, alice, TODOS))

        @seed(base_seed)
        @fuzz_settings(examples(request, EXAMPLES))
        @given(case=multipart_cases)
        def property_(case: tuple[str, bytes]) -> None:
            header_boundary, body = case
            reply = call(server, "POST", "/v1/api/sql", body, token=alice, headers={
                "Content-Type": f"multipart/form-data; boundary={header_boundary}"})
            assert reply.status < 500, (case, reply.status, reply.body[:300])
            todos.after(reply.status != 200, case)

        await run_property(property_, base_seed)
