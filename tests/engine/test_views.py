"""Views (engine/sql/ddl_view.py): security-invoker reads, recursion and nesting limits,
persistence across restarts. Creation rules and messages are in tests/fixtures/sql/views.sql."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.catalog import Catalog
from engine.errors import InvalidSql, PermissionDenied
from engine.events import CatalogEvent, Kind
from engine.query import VIEW_NESTING_MAX, expand_views, parse_query
from tests.engine.harness import ALICE, BOB, DBA, ROOT, SERVICE, engine_at, rows, sql

SCHEMA = ("CREATE NAMESPACE app; "
          "CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT, n INT); "
          "CREATE SHARED TABLE app.secret (id INT PRIMARY KEY, v TEXT); "
          "CREATE SHARED TABLE app.tags (id INT PRIMARY KEY, label TEXT) "
          "WITH (ACCESS_LEVEL = 'PUBLIC')")


async def _setup(engine) -> None:
    await sql(engine, ROOT, SCHEMA)
    await sql(engine, ROOT, "INSERT INTO app.secret VALUES (1, 's'); "
                            "INSERT INTO app.tags VALUES (1, 'red'), (2, 'blue'), (3, 'green')")
    for session in (ALICE, BOB):
        me = session.user_id
        await sql(engine, session, f"INSERT INTO app.notes VALUES (1, '{me} a', 1), "
                                   f"(2, '{me} b', 5), (3, '{me} c', 9)")


async def test_view__user_table__each_reader_sees_only_own_rows(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await _setup(engine)
        await sql(engine, ROOT, "CREATE VIEW app.busy AS SELECT id, body, CURRENT_USER() AS who "
                                "FROM app.notes WHERE n > 1")
        for session in (ALICE, BOB):
            me = session.user_id
            assert await rows(engine, session, "SELECT * FROM app.busy ORDER BY id") == [
                [2, f"{me} b", me], [3, f"{me} c", me]]
            # Joined with a table and filtered outside the view.
            assert await rows(engine, session,
                              "SELECT b.body, t.label FROM app.busy b JOIN app.tags t "
                              "ON t.id = b.id WHERE t.label <> 'green'") == [[f"{me} b", "blue"]]
        # The creating admin's own partition is empty: the view does not carry its rights.
        assert await rows(engine, ROOT, "SELECT count(*) FROM app.busy") == [["0"]]


async def test_view__private_shared_and_system_tables__need_the_readers_own_rights(
        tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await _setup(engine)
        await sql(engine, ROOT, "CREATE VIEW app.hidden AS SELECT v FROM app.secret; "
                                "CREATE VIEW app.who AS SELECT user_id FROM system.users")
        with pytest.raises(PermissionDenied, match=r"app\.secret"):
            await sql(engine, ALICE, "SELECT * FROM app.hidden")
        assert await rows(engine, SERVICE, "SELECT * FROM app.hidden") == [["s"]]
        with pytest.raises(PermissionDenied, match="system tables"):
            await sql(engine, ALICE, "SELECT * FROM app.who")
        with pytest.raises(PermissionDenied, match="system tables"):
            await sql(engine, SERVICE, "SELECT * FROM app.who")
        assert await rows(engine, DBA, "SELECT * FROM app.who") == [["root"]]


async def test_view__ctes_inside_and_outside__do_not_leak(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await _setup(engine)
        # The view's CTE is named like a real table; the reader's bare "tags" is the table.
        await sql(engine, ROOT, "CREATE VIEW app.v AS WITH tags AS (SELECT 2 AS id) "
                                "SELECT id FROM tags")
        in_app = replace(ALICE, namespace="app")
        assert await rows(engine, in_app, "SELECT t.label FROM app.v JOIN tags t "
                                          "ON t.id = v.id") == [["blue"]]
        # An outer CTE named like the view wins over it.
        assert await rows(engine, in_app, "WITH v AS (SELECT 7 AS id) SELECT id FROM v") == [["7"]]


async def test_view__in_dml_subquery__is_read_as_the_writer(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await _setup(engine)
        await sql(engine, ROOT, "CREATE VIEW app.big AS SELECT id FROM app.notes WHERE n > 4")
        await sql(engine, ALICE, "DELETE FROM app.notes WHERE id IN (SELECT id FROM app.big)")
        assert await rows(engine, ALICE, "SELECT id FROM app.notes") == [[1]]
        assert await rows(engine, BOB, "SELECT count(*) FROM app.notes") == [["3"]]


async def test_view__nesting_limit(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await _setup(engine)
        await sql(engine, ROOT, "CREATE VIEW app.v0 AS SELECT id FROM app.tags")
        for level in range(1, VIEW_NESTING_MAX):
            await sql(engine, ROOT, f"CREATE VIEW app.v{level} AS SELECT id FROM app.v{level - 1}")
        deepest = f"app.v{VIEW_NESTING_MAX - 1}"
        assert await rows(engine, ALICE, f"SELECT count(*) FROM {deepest}") == [["3"]]
        with pytest.raises(InvalidSql, match=f"more than {VIEW_NESTING_MAX} levels"):
            await sql(engine, ROOT, f"CREATE VIEW app.too_deep AS SELECT id FROM {deepest}")


def test_expand_views__cycle_already_in_the_catalog__is_refused() -> None:
    # Creation refuses cycles; reading still guards against one (e.g. a hand-edited log).
    catalog = Catalog()
    for lsn, (name, target) in enumerate([("a", "b"), ("b", "a")], start=1):
        catalog.apply(CatalogEvent(Kind.VIEW_CREATED, {
            "namespace": "app", "name": name, "sql": f"SELECT * FROM app.{target}",
            "columns": [], "created_at_ms": 0}), lsn)
    with pytest.raises(InvalidSql, match=r"recursive view \(app.a -> app.b -> app.a\)"):
        expand_views(parse_query("SELECT * FROM app.a"), "default", catalog, (), set())


async def test_view__survives_restart_by_checkpoint_and_by_full_replay(tmp_path: Path) -> None:
    expected = [[1, "red"], [3, "green"]]
    async with engine_at(tmp_path) as engine:
        await _setup(engine)
        await sql(engine, ROOT, "CREATE VIEW app.odd (k, name) AS SELECT id, label FROM app.tags "
                                "WHERE id % 2 = 1; "
                                "CREATE VIEW app.gone AS SELECT 1 AS one; DROP VIEW app.gone")
    async with engine_at(tmp_path) as engine:  # the catalog checkpoint written at close
        assert await rows(engine, ALICE, "SELECT * FROM app.odd ORDER BY k") == expected
        assert engine.catalog.view("app", "gone") is None
    (tmp_path / "checkpoints" / "catalog.json").unlink()
    async with engine_at(tmp_path) as engine:  # every catalog event replayed from the WAL
        assert await rows(engine, ALICE, "SELECT * FROM app.odd ORDER BY k") == expected
        assert sorted(engine.catalog.views) == [("app", "odd")]


async def test_view__goes_with_its_namespace(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await _setup(engine)
        await sql(engine, ROOT, "CREATE VIEW app.odd AS SELECT id FROM app.tags; "
                                "DROP NAMESPACE app CASCADE; CREATE NAMESPACE app")
        assert engine.catalog.views == {}
        await sql(engine, ROOT, "CREATE VIEW app.odd AS SELECT 1 AS one")


def test_catalog_checkpoint__round_trips_views_and_reads_old_checkpoints() -> None:
    catalog = Catalog()
    catalog.apply(CatalogEvent(Kind.NAMESPACE_CREATED, {"name": "app", "created_at_ms": 5}), 1)
    catalog.apply(CatalogEvent(Kind.VIEW_CREATED, {
        "namespace": "app", "name": "v", "sql": "SELECT 1 AS one", "columns": ["x"],
        "created_at_ms": 7}), 2)
    data = catalog.to_json()
    assert Catalog.from_json(data).views == catalog.views
    del data["views"]  # written before views existed
    assert Catalog.from_json(data).views == {}
