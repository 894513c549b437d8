"""Live queries in the engine (issue 6; PROTOCOL §6.4, §6.5, §3.14): the registry fed by the
commit path, predicates compiled once, the initial-load snapshot, and the SQL statements.

Each test opens a real engine on a temp dir, subscribes through ``engine.live`` with a
real ``Outbox`` (what a WebSocket connection owns) and commits with SQL; it then drains the
outbox and renders messages exactly as the connection's writer does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine import InvalidSql, NotFound, PermissionDenied
from engine.live import Change, LiveQueryError, Outbox, compile_live_query, render
from tests.engine.harness import ALICE, BOB, CONFIG, ROOT, engine_at, rows, sql

SETUP = [
    "CREATE NAMESPACE app",
    "CREATE TABLE app.todos (id BIGINT PRIMARY KEY, title TEXT, done BOOLEAN, owner TEXT) "
    "WITH (TYPE='USER')",
    "CREATE TABLE app.board (id BIGINT PRIMARY KEY, note TEXT, owner TEXT) "
    "WITH (TYPE='SHARED', ACCESS_LEVEL='PUBLIC')",
    "CREATE TABLE app.secret (id BIGINT PRIMARY KEY, note TEXT) WITH (TYPE='SHARED')",
    "CREATE TABLE app.events (id BIGINT, kind TEXT) WITH (TYPE='STREAM', TTL_SECONDS=3600)",
]


async def setup(engine) -> None:
    for text in SETUP:
        await sql(engine, ROOT, text)


def drain(outbox: Outbox) -> list[dict]:
    """Everything queued so far, rendered as the writer task renders it."""
    out = []
    while len(outbox):
        item = outbox._items.popleft()[1]
        if isinstance(item, Change):
            outbox._changes -= 1
            if item.sub.state != "closed":
                out.append(render.change(item))
        else:
            out.append(item)
    return out


def live(engine, session, sql_text, options=None, sub_id="s1", conn="c1", outbox=None):
    outbox = Outbox(64) if outbox is None else outbox
    sub = engine.live.subscribe(session, conn, sub_id, sql_text, options, outbox)
    return sub, outbox


async def test_live__insert_update_delete__change_payloads(tmp_path: Path) -> None:
    # One subscription without options is live at once; each DML becomes one change message.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        _, box = live(engine, ALICE, "SELECT * FROM app.todos")
        await sql(engine, ALICE, "INSERT INTO app.todos (id, title, done) VALUES (1, 'a', false)")
        await sql(engine, ALICE, "UPDATE app.todos SET title = 'A' WHERE id = 1")
        await sql(engine, ALICE, "DELETE FROM app.todos WHERE id = 1")
        insert, update, delete = drain(box)
    assert insert["change_type"] == "insert"
    (row,) = insert["rows"]
    assert row["id"] == "1" and row["title"] == "a" and row["_deleted"] is False
    assert isinstance(row["_seq"], str)
    (new,), (old,) = update["rows"], update["old_values"]
    assert new == {"id": "1", "_seq": new["_seq"], "title": "A", "done": False}
    assert old == {"id": "1", "_seq": row["_seq"], "title": "a"}
    assert int(new["_seq"]) > int(row["_seq"])
    assert "rows" not in delete
    (tomb,) = delete["old_values"]
    assert tomb["_deleted"] is True and tomb["title"] == "A"


async def test_live__where_and_current_user__filters_changes(tmp_path: Path) -> None:
    # The WHERE is compiled once; CURRENT_USER() is bound to the subscriber.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        _, box = live(engine, ALICE,
                      "SELECT id, note FROM app.board WHERE owner = CURRENT_USER() AND id > 1")
        for i, owner in ((1, "alice"), (2, "alice"), (3, "bob")):
            await sql(engine, ROOT, f"INSERT INTO app.board VALUES ({i}, 'n{i}', '{owner}')")
        messages = drain(box)
    assert [m["rows"] for m in messages] == [[{"id": "2", "note": "n2", "_seq":
                                                messages[0]["rows"][0]["_seq"]}]]


async def test_live__user_table__only_owner_sees_changes(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        _, alice_box = live(engine, ALICE, "SELECT * FROM app.todos", conn="ca")
        _, bob_box = live(engine, BOB, "SELECT * FROM app.todos", conn="cb")
        await sql(engine, BOB, "INSERT INTO app.todos (id, title) VALUES (7, 'bob')")
        assert drain(alice_box) == []
        assert [m["rows"][0]["title"] for m in drain(bob_box)] == ["bob"]


async def test_live__stream_delete__row_ids(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        _, box = live(engine, ALICE, "SELECT * FROM app.events")
        await sql(engine, ALICE, "INSERT INTO app.events (id, kind) VALUES (1, 'x')")
        await sql(engine, ALICE, "DELETE FROM app.events WHERE id = 1")
        insert, delete = drain(box)
    seq = insert["rows"][0]["_seq"]
    assert delete["old_values"] == [{"row_id": f"alice:{seq}"}]


async def test_live__update_in_one_transaction_twice__old_is_previous_version(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ALICE, "INSERT INTO app.todos (id, title) VALUES (1, 'a')")
        _, box = live(engine, ALICE, "SELECT id, title FROM app.todos")
        await sql(engine, ALICE, "BEGIN; UPDATE app.todos SET title = 'b' WHERE id = 1; "
                                 "UPDATE app.todos SET title = 'c' WHERE id = 1; COMMIT")
        first, second = drain(box)
    assert first["old_values"][0]["title"] == "a" and first["rows"][0]["title"] == "b"
    assert second["old_values"][0]["title"] == "b" and second["rows"][0]["title"] == "c"


async def test_live__initial_load__pages_then_buffered_changes(tmp_path: Path) -> None:
    # Registration captures the snapshot; commits during the load are delivered after it.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        for i in range(5):
            await sql(engine, ALICE, f"INSERT INTO app.todos (id, title) VALUES ({i}, 't{i}')")
        sub, box = live(engine, ALICE, "SELECT id FROM app.todos", {"batch_size": 2})
        await sql(engine, ALICE, "INSERT INTO app.todos (id, title) VALUES (99, 'late')")
        await engine.live.load(sub)
        pages = [sub.page(None)]
        while pages[-1].has_more:
            pages.append(sub.page(pages[-1].last_seq))
        assert drain(box) == []  # the late insert waits in the subscription's buffer
        sub.go_live()
        (late,) = drain(box)
    assert [p.status for p in pages] == ["loading", "loading_batch", "ready"]
    assert [r for p in pages for r in p.rows.column("c1").to_pylist()] == [0, 1, 2, 3, 4]
    assert late["rows"][0]["id"] == "99"


async def test_live__initial_load__from_and_last_rows(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        for i in range(6):
            await sql(engine, ALICE, f"INSERT INTO app.todos (id, title) VALUES ({i}, 't')")
        seqs = [int(r[0]) for r in await rows(engine, ALICE,
                                              "SELECT _seq FROM app.todos ORDER BY _seq")]
        sub, _ = live(engine, ALICE, "SELECT * FROM app.todos", {"from": seqs[2]}, "a")
        await engine.live.load(sub)
        assert sub.page(None).rows.column("c1").to_pylist() == [3, 4, 5]
        sub, _ = live(engine, ALICE, "SELECT * FROM app.todos",
                      {"batch_size": 4, "last_rows": 2}, "b")
        await engine.live.load(sub)
        page = sub.page(None)
        assert page.rows.column("c1").to_pylist() == [4, 5] and not page.has_more


async def test_live__full_outbox__subscription_dropped_with_error(tmp_path: Path) -> None:
    # A commit never waits: the change that does not fit drops the subscription.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        sub, box = live(engine, ALICE, "SELECT * FROM app.todos", outbox=Outbox(2))
        for i in range(4):
            await sql(engine, ALICE, f"INSERT INTO app.todos (id) VALUES ({i})")
        messages = drain(box)
        # Changes still queued for a dropped subscription are skipped by the writer.
        assert [m["type"] for m in messages] == ["error"]
        assert messages[-1]["code"] == "SUBSCRIPTION_FAILED"
        assert sub.state == "closed" and engine.live.by_id == {}


async def test_live__limits__per_user_and_per_connection(tmp_path: Path) -> None:
    config = replace(CONFIG, live_subscriptions_per_user_max=3,
                     live_subscriptions_per_connection_max=2)
    async with engine_at(tmp_path, config) as engine:
        await setup(engine)
        live(engine, ALICE, "SELECT * FROM app.todos", sub_id="a", conn="c1")
        live(engine, ALICE, "SELECT * FROM app.todos", sub_id="b", conn="c1")
        with pytest.raises(LiveQueryError) as per_conn:
            live(engine, ALICE, "SELECT * FROM app.todos", sub_id="c", conn="c1")
        live(engine, ALICE, "SELECT * FROM app.todos", sub_id="d", conn="c2")
        with pytest.raises(LiveQueryError) as per_user:
            live(engine, ALICE, "SELECT * FROM app.todos", sub_id="e", conn="c3")
        engine.live.close_connection("c1")
        live(engine, ALICE, "SELECT * FROM app.todos", sub_id="f", conn="c3")
    assert per_conn.value.code == "UNSUPPORTED"
    assert per_user.value.code == "SUBSCRIPTION_LIMIT_EXCEEDED"


@pytest.mark.parametrize(("text", "code"), [
    ("SELECT * FROM app.todos ORDER BY id", "INVALID_SQL"),
    ("SELECT * FROM app.todos LIMIT 3", "INVALID_SQL"),
    ("SELECT DISTINCT title FROM app.todos", "INVALID_SQL"),
    ("SELECT * FROM app.todos a JOIN app.board b ON a.id = b.id", "INVALID_SQL"),
    ("SELECT * FROM todos", "INVALID_SQL"),
    ("SELECT id, _seq FROM app.todos", "INVALID_SQL"),
    ("SELECT * FROM (SELECT * FROM app.todos) t", "INVALID_SQL"),
    ("SELECT count(*) FROM app.todos", "INVALID_SQL"),
    ("SELECT * FROM app.todos WHERE id IN (SELECT 1)", "INVALID_SQL"),
    ("SELECT nope FROM app.todos", "INVALID_SQL"),
    ("DELETE FROM app.todos", "INVALID_SQL"),
    ("SELECT * FROM app.missing", "NOT_FOUND"),
    ("SELECT * FROM system.users", "UNAUTHORIZED"),
    ("SELECT * FROM app.secret", "UNAUTHORIZED"),
])
async def test_live__refused_shapes__error_codes(tmp_path: Path, text: str, code: str) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        with pytest.raises(LiveQueryError) as caught:
            compile_live_query(text, ALICE, engine.catalog)
    assert caught.value.code == code


async def test_live__predicate__compiled_operators(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        _, box = live(engine, ALICE, "SELECT id FROM app.todos WHERE (title LIKE 'x%' OR "
                      "title ILIKE 'Y%') AND NOT done AND id BETWEEN 1 AND 10 "
                      "AND owner IS NULL AND id <> 5")
        values = [(1, "xa", False), (2, "yb", False), (3, "xc", True), (5, "xd", False),
                  (11, "xe", False), (4, "zz", False)]
        for i, title, done in values:
            await sql(engine, ALICE, f"INSERT INTO app.todos (id, title, done) VALUES "
                                     f"({i}, '{title}', {str(done).lower()})")
        got = [m["rows"][0]["id"] for m in drain(box)]
    assert got == ["1", "2"]


async def test_live__sql__subscribe_to_kill_and_system_live(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        engine.live.ws_url = "ws://127.0.0.1:1234/v1/ws"
        (result,) = await sql(engine, ALICE, "SUBSCRIBE TO app.todos WHERE done = false "
                                             "OPTIONS (last_rows = 5)")
        status, url, body, _ = result["rows"][0]
        assert (status, url) == ("active", "ws://127.0.0.1:1234/v1/ws")
        body = json.loads(body)
        assert body["sql"] == "SELECT * FROM app.todos WHERE done = false"
        assert body["id"].startswith("sub-app-todos-") and body["options"] == {"last_rows": 5}
        with pytest.raises(InvalidSql):
            await sql(engine, ALICE, "SUBSCRIBE TO app.todos WHERE nope = 1")
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "SUBSCRIBE TO app.secret")
        live(engine, ALICE, "SELECT * FROM app.todos", sub_id="s9", conn="c7")
        listed = await rows(engine, ROOT, "SELECT live_id, subscription_id, table_name, status "
                                          "FROM system.live")
        assert listed == [["alice-c7-s9", "s9", "todos", "active"]]
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "KILL LIVE QUERY 'alice-c7-s9'")
        (killed,) = await sql(engine, ROOT, "KILL LIVE QUERY 'alice-c7-s9'")
        assert killed["message"] == "Live query killed: alice-c7-s9"
        assert await rows(engine, ROOT, "SELECT live_id FROM system.live") == []
        with pytest.raises(NotFound):
            await sql(engine, ROOT, "KILL LIVE QUERY 'alice-c7-s9'")


async def test_live__render__unencodable_cell_raises(tmp_path: Path) -> None:
    # A cell JSON cannot carry raises; the connection turns that into CONVERSION_ERROR.
    import pyarrow as pa

    from engine import InvalidValue
    from engine.events import Op

    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE m")
        await sql(engine, ROOT, "CREATE TABLE m.t (id BIGINT PRIMARY KEY, d DOUBLE) "
                                "WITH (TYPE='SHARED', ACCESS_LEVEL='PUBLIC')")
        sub, _ = live(engine, ALICE, "SELECT * FROM m.t")
        table = pa.table({"c1": pa.array([1], pa.int64()), "c2": [float("nan")],
                          "_seq": pa.array([5], pa.int64()), "_deleted": [False]})
        with pytest.raises(InvalidValue):
            render.change(Change(sub, Op.INSERT, None, table, None, 5))


async def test_live__rows_json__equals_dumps_of_row_objects(tmp_path: Path) -> None:
    # The vectorized page renderer must produce exactly json.dumps of the row objects, for
    # every kind and for strings that need escaping, NULLs and non-ASCII text.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE m")
        await sql(engine, ROOT, "CREATE TABLE m.t (id BIGINT PRIMARY KEY, s SMALLINT, i INT, "
                                "b BOOLEAN, t TEXT, d DOUBLE, ts TIMESTAMP, j JSON, u UUID, "
                                "dec DECIMAL(10, 2)) WITH (TYPE='SHARED', "
                                "ACCESS_LEVEL='PUBLIC')")
        await sql(engine, ROOT, "INSERT INTO m.t VALUES "
                                "(1, 2, 3, true, 'plain é ✓', 1.5, 1700000000000000, "
                                "'{\"a\": 1}', '123e4567-e89b-12d3-a456-426614174000', 1.25), "
                                "(-9007199254740993, NULL, NULL, false, 'q\"b\\s\nnl', NULL, "
                                "NULL, NULL, NULL, NULL), "
                                "(3, -1, 0, NULL, NULL, -0.25, 0, 'null', NULL, -3.5)")
        await sql(engine, ROOT, "CREATE TABLE m.p (id BIGINT PRIMARY KEY, t TEXT) "
                                "WITH (TYPE='SHARED', ACCESS_LEVEL='PUBLIC')")
        await sql(engine, ROOT, "INSERT INTO m.p VALUES (1, 'no escapes'), (2, NULL)")
        for text in ("SELECT * FROM m.t", "SELECT t, id FROM m.t", "SELECT * FROM m.p"):
            sub, _ = live(engine, ALICE, text, {}, sub_id=text)
            await engine.live.load(sub)
            page = sub.page(None)
            assert page.rows.num_rows in (2, 3)
            for deleted in (False, True):
                expected = render.row_objects(page.rows, sub.query, deleted=deleted)
                assert render.rows_json(page.rows, sub.query, deleted=deleted) == json.dumps(
                    expected, separators=(",", ":"), ensure_ascii=False)
            assert json.loads(render.initial_batch_text(sub, page)) == render.initial_batch(
                sub, page)


async def test_live__initial_load__pages_across_chunks_with_where(tmp_path: Path) -> None:
    # Pages are cut from the snapshot's batches (slices or takes), not from a copy: across
    # several commits (chunks), updates (rows whose newest version sits in a later chunk)
    # and a WHERE that skips rows, the pages still hold exactly the matching rows by _seq.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        for start in range(0, 30, 10):
            values = ", ".join(f"({i}, 'n{i}')" for i in range(start, start + 10))
            await sql(engine, ROOT, f"INSERT INTO app.board (id, note) VALUES {values}")
        await sql(engine, ROOT, "UPDATE app.board SET note = 'moved' WHERE id IN (1, 4, 12)")
        await sql(engine, ROOT, "DELETE FROM app.board WHERE id = 6")
        for where, size in (("", 7), (" WHERE id NOT IN (0, 3, 9, 15, 21) AND id < 25", 4),
                            (" WHERE note = 'moved'", 2)):
            expected = [int(r[0]) for r in await rows(
                engine, ROOT, f"SELECT id FROM app.board{where} ORDER BY _seq")]
            sub, _ = live(engine, ALICE, f"SELECT id FROM app.board{where}",
                          {"batch_size": size}, sub_id=f"w{size}")
            await engine.live.load(sub)
            pages = [sub.page(None)]
            while pages[-1].has_more:
                pages.append(sub.page(pages[-1].last_seq))
            got = [r for p in pages for r in p.rows.column("c1").to_pylist()]
            assert got == expected and len(pages) == -(-len(expected) // size)
            seqs = [s for p in pages for s in p.rows.column("_seq").to_pylist()]
            assert seqs == sorted(seqs)
            assert sub.page(None).rows.column("c1").to_pylist() == expected[:size]  # restart


@pytest.mark.parametrize("statement", ["DROP TABLE app.board",
                                       "DROP NAMESPACE app CASCADE"])
async def test_live__dropped_table__subscriptions_get_not_found_and_leave(
        tmp_path: Path, statement: str) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ROOT, "INSERT INTO app.board (id, note) VALUES (1, 'a')")
        box = Outbox(64)
        live(engine, ALICE, "SELECT * FROM app.board", None, "live", outbox=box)
        loading, _ = live(engine, BOB, "SELECT * FROM app.board", {}, "loading", outbox=box)
        live(engine, ALICE, "SELECT * FROM app.todos", None, "todos", outbox=box)
        await sql(engine, ROOT, statement)
        listed = await rows(engine, ROOT, "SELECT subscription_id FROM system.live")
        errors = drain(box)
    assert [e["subscription_id"] for e in errors] == ["live", "loading"] + (
        ["todos"] if "NAMESPACE" in statement else [])
    assert {e["code"] for e in errors} == {"NOT_FOUND"} and loading.state == "closed"
    assert "app.board" in errors[0]["message"] and "dropped" in errors[0]["message"]
    assert listed == ([] if "NAMESPACE" in statement else [["todos"]])


async def test_live__parse_cache__bounded_and_never_mutated(tmp_path: Path) -> None:
    # The parsed tree is shared between subscriptions of one SQL text: binding
    # CURRENT_USER() for one user must not leak into another's predicate.
    import pyarrow as pa

    from engine.live.query import PARSE_CACHE_ENTRIES, _parse

    async with engine_at(tmp_path) as engine:
        await setup(engine)
        text = "SELECT id FROM app.board WHERE owner = CURRENT_USER()"
        table = engine.catalog.table("app", "board")
        names = [c.storage_name for c in table.columns]
        batch = pa.RecordBatch.from_arrays([pa.array([1, 2], pa.int64()),
                                            pa.array(["x", "y"]),
                                            pa.array([ALICE.user_id, BOB.user_id])], names)
        for session, expected in ((ALICE, [0]), (BOB, [1]), (ALICE, [0])):
            assert compile_live_query(text, session, engine.catalog).matches(batch) == expected
        assert "CURRENT_USER" in _parse(text).sql().upper()
        _parse.cache_clear()
        for n in range(PARSE_CACHE_ENTRIES + 5):
            compile_live_query(f"SELECT id FROM app.board WHERE id = {n}", ROOT, engine.catalog)
        assert _parse.cache_info().currsize == PARSE_CACHE_ENTRIES
