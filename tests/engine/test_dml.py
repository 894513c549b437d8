"""INSERT / UPDATE / DELETE and SELECT through the real engine (PROTOCOL §3.5-3.8)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from engine.errors import (
    AlreadyExists,
    InvalidOperation,
    InvalidParameter,
    InvalidValue,
    ParamsWithBatch,
    PermissionDenied,
    TableNotFound,
    TransactionError,
)
from tests.engine.harness import ALICE, BOB, ROOT, SERVICE, engine_at, rows, sql

SETUP = """
CREATE NAMESPACE app;
CREATE SHARED TABLE app.items (id BIGINT PRIMARY KEY, title TEXT NOT NULL, price DECIMAL(10,2),
  tags JSON, created TIMESTAMP DEFAULT NOW());
CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT, owner TEXT DEFAULT CURRENT_USER());
CREATE STREAM TABLE app.events (kind TEXT, n INT) WITH (TTL_SECONDS = 60)
"""


async def setup(engine) -> None:
    await sql(engine, ROOT, SETUP)


async def test_insert__multi_row__counts_and_reads_back_with_encodings(tmp_path: Path) -> None:
    # BigInt as string, Decimal with its scale, implicit ORDER BY pk.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        (result,) = await sql(engine, ROOT, "INSERT INTO app.items (id, title, price) VALUES "
                              "(2, 'b', 2.5), (1, 'a', 10)")
        assert result == {"row_count": 2, "message": "Inserted 2 row(s)", "as_user": "root"}
        (result,) = await sql(engine, ROOT, "SELECT id, title, price FROM app.items")
        assert result["rows"] == [["1", "a", "10.00"], ["2", "b", "2.50"]]
        assert result["schema"][0] == {"name": "id", "data_type": "BigInt", "index": 0,
                                       "flags": ["pk", "nn", "uq"]}
        assert result["schema"][2]["data_type"] == {"Decimal": {"precision": 10, "scale": 2}}


async def test_insert__duplicate_pk__violation_and_nothing_written(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (1, 'a')")
        before = engine.wal.committed_lsn
        with pytest.raises(AlreadyExists, match="Primary key violation: value '1' already "
                           "exists in column 'id'"):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (3, 'c'), (1, 'x')")
        with pytest.raises(AlreadyExists, match="value '4'"):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (4, 'c'), (4, 'x')")
        assert engine.wal.committed_lsn == before
        assert await rows(engine, ROOT, "SELECT id FROM app.items") == [["1"]]


async def test_insert__not_null_and_bad_type__typed_errors(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        with pytest.raises(InvalidValue, match="title"):
            await sql(engine, ROOT, "INSERT INTO app.items (id) VALUES (1)")
        with pytest.raises(InvalidValue):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES ('x', 'a')")
        with pytest.raises(InvalidOperation, match="nope"):
            await sql(engine, ROOT, "INSERT INTO app.items (id, nope) VALUES (1, 'a')")
        with pytest.raises(TableNotFound):
            await sql(engine, ROOT, "INSERT INTO app.missing (id) VALUES (1)")


async def test_delete__soft__hidden_then_visible_with_deleted_filter_and_reinsert(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (1, 'a'), (2, 'b')")
        (result,) = await sql(engine, ROOT, "DELETE FROM app.items WHERE id = 1")
        assert result["message"] == "Deleted 1 row(s)"
        assert await rows(engine, ROOT, "SELECT id FROM app.items") == [["2"]]
        assert await rows(engine, ROOT,
                          "SELECT id, _deleted FROM app.items WHERE _deleted = true") == [
            ["1", True]]
        await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (1, 'again')")
        assert await rows(engine, ROOT, "SELECT title FROM app.items WHERE id = 1") == [["again"]]
        with pytest.raises(InvalidOperation, match="WHERE"):
            await sql(engine, ROOT, "DELETE FROM app.items")


async def test_update__rules_and_values(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ROOT, "INSERT INTO app.items (id, title, price) VALUES (1, 'a', 1)")
        (result,) = await sql(engine, ROOT, "UPDATE app.items SET price = price + 1, "
                              "title = 'b' WHERE id = 1")
        assert result["message"] == "Updated 1 row(s)"
        assert await rows(engine, ROOT, "SELECT title, price FROM app.items") == [["b", "2.00"]]
        (result,) = await sql(engine, ROOT, "UPDATE app.items SET title = 'z' WHERE id = 9")
        assert result["message"] == "Updated 0 row(s)"
        with pytest.raises(InvalidOperation, match="UPDATE requires a WHERE clause"):
            await sql(engine, ROOT, "UPDATE app.items SET title = 'z'")
        with pytest.raises(InvalidOperation, match="primary key column 'id'"):
            await sql(engine, ROOT, "UPDATE app.items SET id = 5 WHERE id = 1")
        with pytest.raises(InvalidValue):
            await sql(engine, ROOT, "UPDATE app.items SET title = NULL WHERE id = 1")


async def test_user_table__two_users_same_pk__each_sees_only_own_rows(tmp_path: Path) -> None:
    # USER partitions are physical: joins, subqueries and CTEs never reach the other user.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (1, 'alice-1')")
        await sql(engine, BOB, "INSERT INTO app.notes (id, body) VALUES (1, 'bob-1'), (2, 'b2')")
        assert await rows(engine, ALICE, "SELECT body, owner FROM app.notes") == [
            ["alice-1", "alice"]]
        queries = [
            "SELECT n.body FROM app.notes n JOIN app.notes m ON n.id = m.id",
            "SELECT body FROM app.notes WHERE id IN (SELECT id FROM app.notes)",
            "WITH x AS (SELECT * FROM app.notes) SELECT body FROM x",
            "SELECT body FROM app.notes UNION ALL SELECT body FROM app.notes",
        ]
        for query in queries:
            assert {r[0] for r in await rows(engine, ALICE, query)} == {"alice-1"}, query
        assert await rows(engine, BOB, "SELECT count(*) FROM app.notes") == [["2"]]
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "SELECT * FROM system.users")


async def test_execute_as__service_reads_users_partition(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (1, 'mine')")
        (result,) = await sql(engine, SERVICE,
                              "EXECUTE AS USER 'alice' (SELECT body FROM app.notes)")
        assert result["rows"] == [["mine"]] and result["as_user"] == "alice"
        with pytest.raises(PermissionDenied, match="EXECUTE AS USER is not authorized"):
            await sql(engine, ALICE, "EXECUTE AS USER 'bob' (SELECT * FROM app.notes)")
        with pytest.raises(InvalidOperation, match="only supported for USER and STREAM"):
            await sql(engine, SERVICE, "EXECUTE AS USER 'alice' (SELECT * FROM app.items)")


async def test_shared_table__user_role__private_read_and_any_write_refused(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "SELECT * FROM app.items")
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "INSERT INTO app.items (id, title) VALUES (1, 'a')")
        await sql(engine, ROOT, "CREATE SHARED TABLE app.pub (id INT PRIMARY KEY) "
                  "WITH (ACCESS_LEVEL = 'PUBLIC')")
        await sql(engine, SERVICE, "INSERT INTO app.pub (id) VALUES (7)")
        assert await rows(engine, ALICE, "SELECT id FROM app.pub") == [[7]]


async def test_stream__no_update_hard_delete_and_ttl(tmp_path: Path) -> None:
    from engine.clock import ManualClock

    clock = ManualClock()
    async with engine_at(tmp_path, clock=clock) as engine:
        await setup(engine)
        await sql(engine, ALICE, "INSERT INTO app.events (kind, n) VALUES ('a', 1), ('b', 2)")
        with pytest.raises(InvalidOperation, match="UPDATE is not supported for STREAM"):
            await sql(engine, ALICE, "UPDATE app.events SET n = 3 WHERE n = 1")
        await sql(engine, ALICE, "DELETE FROM app.events WHERE n = 1")
        assert await rows(engine, ALICE, "SELECT kind FROM app.events") == [["b"]]
        assert await rows(engine, ALICE, "SELECT kind FROM app.events WHERE _deleted = true") == []
        clock.advance(61_000)
        assert await rows(engine, ALICE, "SELECT kind FROM app.events") == []
        assert await rows(engine, BOB, "SELECT kind FROM app.events") == []


async def test_params__bound_by_datafusion_and_checked(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES ($1, $2)", [5, "p"])
        assert await rows(engine, ROOT, "SELECT title FROM app.items WHERE id = $1", [5]) == [
            ["p"]]
        assert await rows(engine, ROOT, "SELECT title FROM app.items WHERE title = $1",
                          ["x' OR '1'='1"]) == []
        with pytest.raises(ParamsWithBatch):
            await sql(engine, ROOT, "SELECT 1; SELECT 2", [1])
        with pytest.raises(InvalidParameter):
            await sql(engine, ROOT, "SELECT $1", [[1, 2]])
        with pytest.raises(InvalidParameter, match=r"\$2"):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES ($1, $2)", [6])


async def test_batch__dml_summed__first_error_aborts_keeping_earlier(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        results = await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (1, 'a'); "
                            "SELECT id FROM app.items; INSERT INTO app.items (id, title) VALUES "
                            "(2, 'b'); DELETE FROM app.items WHERE id = 2")
        assert [r.get("message") for r in results] == [None, "Inserted 2 row(s)",
                                                       "Deleted 1 row(s)"]
        with pytest.raises(AlreadyExists) as caught:
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (3, 'c'); "
                      "INSERT INTO app.items (id, title) VALUES (1, 'dup')")
        assert caught.value.statement_index == 2
        assert await rows(engine, ROOT, "SELECT id FROM app.items") == [["1"], ["3"]]


async def test_transaction__commit_is_one_event__rollback_and_open_end_undo(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        before = engine.wal.committed_lsn
        await sql(engine, ROOT, "BEGIN; INSERT INTO app.items (id, title) VALUES (1, 'a'); "
                  "UPDATE app.items SET title = 'b' WHERE id = 1; COMMIT")
        assert engine.wal.committed_lsn == before + 1
        assert await rows(engine, ROOT, "SELECT title FROM app.items") == [["b"]]
        await sql(engine, ROOT, "BEGIN; DELETE FROM app.items WHERE id = 1; ROLLBACK")
        with pytest.raises(TransactionError, match="open explicit transaction"):
            await sql(engine, ROOT, "BEGIN; INSERT INTO app.items (id, title) VALUES (2, 'x')")
        with pytest.raises(AlreadyExists):
            await sql(engine, ROOT, "BEGIN; INSERT INTO app.items (id, title) VALUES (3, 'x'); "
                      "INSERT INTO app.items (id, title) VALUES (1, 'dup'); COMMIT")
        assert await rows(engine, ROOT, "SELECT id, title FROM app.items") == [["1", "b"]]
        assert engine.wal.committed_lsn == before + 1


async def test_select__limits_default_50_and_cap_1000(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        values = ", ".join(f"({i}, 't{i}')" for i in range(1200))
        await sql(engine, ROOT, f"INSERT INTO app.items (id, title) VALUES {values}")
        assert len(await rows(engine, ROOT, "SELECT id FROM app.items")) == 50
        assert len(await rows(engine, ROOT, "SELECT id FROM app.items LIMIT 5000")) == 1000
        first = await rows(engine, ROOT, "SELECT id FROM app.items LIMIT 3")
        assert first == [["0"], ["1"], ["2"]]


async def test_restart__rows_and_catalog_survive_replay(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (1, 'a'), (2, 'b')")
        await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (1, 'n')")
        await sql(engine, ROOT, "UPDATE app.items SET title = 'bb' WHERE id = 2")
        await sql(engine, ROOT, "DELETE FROM app.items WHERE id = 1")
    async with engine_at(tmp_path) as engine:
        assert await rows(engine, ROOT, "SELECT id, title FROM app.items") == [["2", "bb"]]
        assert await rows(engine, ALICE, "SELECT body FROM app.notes") == [["n"]]
        with pytest.raises(AlreadyExists):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (2, 'x')")


async def test_select__pk_point_lookup__same_answers_as_a_scan(tmp_path: Path) -> None:
    # Point lookups are answered from the key index (and without DataFusion for plain
    # projections); every shape must agree with what a scan would return.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (1, 'a'), (2, 'b')")
        await sql(engine, ROOT, "DELETE FROM app.items WHERE id = 2")
        cases = {
            "SELECT id, title FROM app.items WHERE id = 1": [["1", "a"]],
            "SELECT title AS t FROM app.items WHERE id = $1": [["a"]],
            "SELECT * FROM app.items WHERE 1 = id": None,
            "SELECT title FROM app.items WHERE id = 2": [],
            "SELECT id, _deleted FROM app.items WHERE id = 2 AND _deleted = true": [["2", True]],
            "SELECT upper(title) FROM app.items WHERE id = 1": [["A"]],
            "SELECT title FROM app.items WHERE id = 1 AND title = 'zzz'": [],
            "SELECT title FROM app.items WHERE id = '1'": [["a"]],
            "SELECT title FROM app.items WHERE id = 3": [],
        }
        for query, expected in cases.items():
            got = await rows(engine, ROOT, query, [1] if "$1" in query else None)
            scan = await rows(engine, ROOT, query.replace("WHERE", "WHERE id + 0 = id AND"),
                              [1] if "$1" in query else None)
            assert got == scan, query
            if expected is not None:
                assert got == expected, query
        (result,) = await sql(engine, ROOT, "SELECT id, title FROM app.items WHERE id = 1")
        assert [f["name"] for f in result["schema"]] == ["id", "title"]
        assert result["schema"][0]["flags"] == ["pk", "nn", "uq"]


async def test_params__array_of_arrays__one_insert_per_row_one_event(tmp_path: Path) -> None:
    # Batched params: the single VALUES row runs once per inner array, atomically.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        before = engine.wal.committed_lsn
        (result,) = await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES ($1, $2)",
                              [[i, f"t{i}"] for i in range(500)])
        assert result["message"] == "Inserted 500 row(s)"
        assert engine.wal.committed_lsn == before + 1
        assert await rows(engine, ROOT, "SELECT count(*) FROM app.items") == [["500"]]
        with pytest.raises(AlreadyExists, match="value '7'"):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES ($1, $2)",
                      [[1000, "new"], [7, "dup"]])
        assert await rows(engine, ROOT, "SELECT count(*) FROM app.items") == [["500"]]
        with pytest.raises(InvalidParameter, match="only supported for a single INSERT"):
            await sql(engine, ROOT, "SELECT $1", [[1], [2]])
        with pytest.raises(InvalidParameter, match=r"Parameter \$1 invalid"):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES ($1, $2)",
                      [[1, "a"], 2])
        with pytest.raises(InvalidValue, match="title"):
            await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES ($1, $2)",
                      [[2000, "ok"], [2001, None]])
        assert engine.wal.committed_lsn == before + 1


async def test_insert__fast_column_path__same_coercions_and_errors(tmp_path: Path) -> None:
    # Vectorised columns must behave exactly like per-value coercion, errors included.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE SHARED TABLE app.n "
                  "(id INT PRIMARY KEY, small SMALLINT, d DOUBLE, flag BOOLEAN, s TEXT)")
        await sql(engine, ROOT, "INSERT INTO app.n (id, small, d, flag, s) VALUES "
                  "(1, 2, 1.5, true, 'x'), ('2', '3', 2, 'false', 42)")
        assert await rows(engine, ROOT, "SELECT id, small, d, flag, s FROM app.n") == [
            [1, 2, 1.5, True, "x"], [2, 3, 2.0, False, "42"]]
        with pytest.raises(InvalidValue, match="small"):
            await sql(engine, ROOT, "INSERT INTO app.n (id, small) VALUES (3, 40000)")
        with pytest.raises(InvalidValue, match="id"):
            await sql(engine, ROOT, "INSERT INTO app.n (id) VALUES (3000000000)")


async def test_insert__cached_statement_text__follows_drop_create_and_alter(tmp_path: Path) -> None:
    # The statement cache is keyed by SQL text; the table is resolved at execution, so a
    # cached INSERT must follow DROP/CREATE and ALTER TABLE of its target.
    insert = "INSERT INTO app.c (id, a) VALUES ($1, $2)"
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; "
                  "CREATE SHARED TABLE app.c (id BIGINT PRIMARY KEY, a TEXT)")
        await sql(engine, ROOT, insert, [1, "x"])
        await sql(engine, ROOT, "DROP TABLE app.c; "
                  "CREATE SHARED TABLE app.c (id TEXT PRIMARY KEY, a INT NOT NULL)")
        await sql(engine, ROOT, insert, ["k", 5])
        with pytest.raises(InvalidValue, match="'a'"):
            await sql(engine, ROOT, insert, ["m", None])
        assert await rows(engine, ROOT, "SELECT id, a FROM app.c") == [["k", 5]]
        await sql(engine, ROOT, "ALTER TABLE app.c ADD COLUMN b TEXT DEFAULT 'd'")
        await sql(engine, ROOT, insert, ["l", 6])
        assert await rows(engine, ROOT, "SELECT id, a, b FROM app.c") == [
            ["k", 5, "d"], ["l", 6, "d"]]  # existing rows take the fill too
        await sql(engine, ROOT, "ALTER TABLE app.c DROP COLUMN a")
        with pytest.raises(InvalidOperation, match="'a' does not exist") as caught:
            await sql(engine, ROOT, insert, ["n", 7])
        assert (caught.value.statement_index, caught.value.statement_sql) == (1, insert)


async def test_insert__one_request_one_insert__located_errors_and_staged_keys(
        tmp_path: Path) -> None:
    # A request that is one literal INSERT (read without splitting) still reports its text
    # and index, and keys of staged (not yet durable) inserts count for uniqueness.
    async with engine_at(tmp_path) as engine:
        await setup(engine)
        text = "INSERT INTO app.items (id, title) VALUES (1, 'a'), (1, 'b')"
        with pytest.raises(AlreadyExists, match="value '1'") as caught:
            await sql(engine, ROOT, f"  {text} ;; -- done")
        assert (caught.value.statement_index, caught.value.statement_sql) == (1, text)
        outcomes: list[str] = []

        async def insert_100() -> None:
            try:
                await sql(engine, ROOT, "INSERT INTO app.items (id, title) VALUES (100, 'x')")
                outcomes.append("ok")
            except AlreadyExists:
                outcomes.append("exists")

        async with trio.open_nursery() as nursery:
            for _ in range(8):  # while the first is staged, the others must see its key
                nursery.start_soon(insert_100)
        assert sorted(outcomes) == ["exists"] * 7 + ["ok"]
        assert await rows(engine, ROOT, "SELECT id FROM app.items") == [["100"]]
