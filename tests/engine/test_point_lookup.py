"""Primary-key point lookups answered from the index (``engine.query.prepare_point``): which
shapes take the fast path, and that every shape answers exactly what a scan through
DataFusion answers (rows, column names, types, flags, errors), for SHARED and USER tables,
deleted rows, parameters, impersonation, permissions and open transactions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlglot

from engine.query import QueryOptions, prepare_point
from engine.session import Session
from tests.engine.harness import ALICE, BOB, ROOT, engine_at, rows, sql

SETUP = """
CREATE NAMESPACE app;
CREATE SHARED TABLE app.items (id BIGINT PRIMARY KEY, title TEXT NOT NULL, price DECIMAL(10,2));
CREATE SHARED TABLE app.private (id BIGINT PRIMARY KEY, v TEXT);
CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT);
CREATE STREAM TABLE app.events (kind TEXT, n INT) WITH (TTL_SECONDS = 60);
CREATE VIEW app.items_view AS SELECT id, title FROM app.items;
INSERT INTO app.items (id, title, price) VALUES (1, 'a', 1.5), (2, 'b', 2), (3, 'c', NULL);
DELETE FROM app.items WHERE id = 2
"""
OPTIONS = QueryOptions(50, 1000)


async def answer(engine: Any, session: Session, query: str, params: list[Any] | None
                 ) -> Any:
    """The results as the API would send them, or the error's class name."""
    try:
        return await sql(engine, session, query, params)
    except Exception as exc:
        return type(exc).__name__


def as_scan(query: str) -> str:
    # A conjunct the point-lookup shape does not accept: the same query through DataFusion.
    return query.replace(" WHERE ", " WHERE id + 0 = id AND ", 1)


def takes_fast_path(engine: Any, query: str, params: list[Any] | None = None,
                    session: Session = ROOT) -> bool:
    tree = sqlglot.parse_one(query, read="postgres")
    prepared = prepare_point(tree, session, params or [], catalog=engine.catalog,
                             store=engine.store, now_ms=engine.clock.now_ms(), options=OPTIONS)
    return prepared is not None and prepared.direct is not None


async def test_point_lookup__fast_path__only_for_plain_key_lookups(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        fast = ["SELECT * FROM app.items WHERE id = 1",
                "SELECT id, title AS t FROM app.items AS i WHERE 1 = id LIMIT 1",
                "SELECT i.title FROM app.items i WHERE id = $1",
                "SELECT _seq, _deleted FROM app.items WHERE id = '1'"]
        slow = ["SELECT upper(title) FROM app.items WHERE id = 1",  # an expression
                "SELECT * FROM app.items WHERE id = 1 AND title = 'a'",  # two conjuncts
                "SELECT * FROM app.items WHERE title = 'a'",  # not the key
                "SELECT * FROM app.items WHERE id = 1 ORDER BY title",
                "SELECT * FROM app.items WHERE id = 1 LIMIT 0",
                "SELECT * FROM app.items WHERE id = 1.5",  # not a key value
                "SELECT * FROM app.items WHERE id = $2",  # no such parameter
                "SELECT x.title FROM app.items AS i WHERE id = 1",  # unknown qualifier
                "SELECT title, title FROM app.items WHERE id = 1",  # repeated output name
                "SELECT * FROM app.items_view WHERE id = 1",  # a view
                "SELECT * FROM app.events WHERE kind = 'a'",  # no primary key
                "SELECT * FROM system.users WHERE user_id = 'root'",
                "SELECT DISTINCT id FROM app.items WHERE id = 1",
                "WITH c AS (SELECT 1) SELECT * FROM app.items WHERE id = 1"]
        for query in fast:
            assert takes_fast_path(engine, query, [1]), query
        for query in slow:
            assert not takes_fast_path(engine, query, [1]), query


async def test_point_lookup__every_shape__same_answer_as_a_scan(tmp_path: Path) -> None:
    # Each query runs as written (fast path or not) and as a scan; results must be equal.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        cases: list[tuple[str, list[Any] | None]] = [
            ("SELECT * FROM app.items WHERE id = 1", None),
            ("SELECT title AS MyTitle, id AS \"Key\" FROM app.items WHERE id = 1", None),
            ("SELECT i.title, i.price FROM app.items AS i WHERE id = $1", [3]),
            ("SELECT title FROM app.items WHERE id = $1", ["1"]),
            ("SELECT title FROM app.items WHERE id = $1", [None]),
            ("SELECT * FROM app.items WHERE id = 2", None),  # deleted: hidden
            ("SELECT id, _deleted FROM app.items WHERE id = 2", None),  # mentioned: shown
            ("SELECT title FROM app.items WHERE id = 9", None),
            ("SELECT title FROM app.items WHERE id = 1 LIMIT 5", None),
            ("SELECT nope FROM app.items WHERE id = 1", None),  # DataFusion's error
            ("SELECT items.title FROM app.items WHERE id = 1", None),
            ("SELECT title FROM app.items WHERE id = 'x'", None),
        ]
        for query, params in cases:
            got = await answer(engine, ROOT, query, params)
            assert got == await answer(engine, ROOT, as_scan(query), params), query
        (result,) = await sql(engine, ROOT, "SELECT title AS MyTitle, id AS \"Key\" "
                                            "FROM app.items WHERE id = 1")
        assert [f["name"] for f in result["schema"]] == ["mytitle", "Key"]


async def test_point_lookup__user_table__own_partition_only(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (1, 'alice')")
        await sql(engine, BOB, "INSERT INTO app.notes (id, body) VALUES (1, 'bob'), (2, 'b2')")
        query = "SELECT body FROM app.notes WHERE id = 1"
        assert takes_fast_path(engine, query, session=ALICE)
        assert await rows(engine, ALICE, query) == [["alice"]]
        assert await rows(engine, BOB, query) == [["bob"]]
        assert await rows(engine, ALICE, "SELECT body FROM app.notes WHERE id = 2") == []
        as_alice = "EXECUTE AS USER 'alice' (SELECT body FROM app.notes WHERE id = 1)"
        assert await rows(engine, ROOT, as_alice) == [["alice"]]


async def test_point_lookup__refusals__same_as_a_scan(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        await sql(engine, ROOT, "CREATE USER alice WITH PASSWORD 'Alice-pass-1' ROLE user")
        for session, query in (
                (ALICE, "SELECT * FROM app.private WHERE id = 1"),  # PRIVATE shared table
                (ROOT, "EXECUTE AS USER 'alice' (SELECT * FROM app.items WHERE id = 1)"),
                (ROOT, "SELECT * FROM app.missing WHERE id = 1")):
            got = await answer(engine, session, query, None)
            assert isinstance(got, str), query
            assert got == await answer(engine, session, as_scan(query), None), query


async def test_point_lookup__in_transaction__sees_own_changes(tmp_path: Path) -> None:
    # Inside BEGIN … the writer's own tentative rows are visible; others see them on COMMIT.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        results = await engine.execute(ROOT, (
            "BEGIN; INSERT INTO app.items (id, title) VALUES (7, 'new'); "
            "UPDATE app.items SET title = 'A' WHERE id = 1; "
            "SELECT title FROM app.items WHERE id = 7; SELECT title FROM app.items WHERE id = 1; "
            "DELETE FROM app.items WHERE id = 3; SELECT title FROM app.items WHERE id = 3; "
            "ROLLBACK"))
        selects = [r.to_json()["rows"] for r in results if r.table is not None]
        assert selects == [[["new"]], [["A"]], []]
        assert await rows(engine, ROOT, "SELECT title FROM app.items WHERE id = 7") == []
        assert await rows(engine, ROOT, "SELECT title FROM app.items WHERE id = 1") == [["a"]]
        assert await rows(engine, ROOT, "SELECT title FROM app.items WHERE id = 3") == [["c"]]
