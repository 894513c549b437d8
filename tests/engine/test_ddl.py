"""Namespace and table DDL through the real engine (PROTOCOL §3.1-3.4, §2.7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from engine.errors import (
    AlreadyExists,
    InvalidOperation,
    InvalidSql,
    InvalidValue,
    NotFound,
    PermissionDenied,
    TableNotFound,
)
from engine.flush import load_cold_partitions
from tests.engine.harness import ALICE, BOB, DBA, ROOT, SERVICE, engine_at, rows, sql


async def one(engine, session, text: str) -> dict:
    (result,) = await sql(engine, session, text)
    return result


async def message(engine, session, text: str) -> str:
    return (await one(engine, session, text))["message"]


async def wait_jobs(engine, timeout_s: float = 10) -> None:
    """Polls the job board until no job is queued or running (jobs have no completion event)."""
    with trio.fail_after(timeout_s):
        for _ in range(int(timeout_s / 0.01) + 1):
            if not any(r.status in ("queued", "running") for r in engine.jobs.records):
                return
            await trio.sleep(0.01)


# ---- namespaces ------------------------------------------------------------------------------


async def test_namespace__create_duplicate_and_if_not_exists(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        assert await message(engine, ROOT, "CREATE NAMESPACE app") == \
            "Namespace 'app' created successfully"
        before = engine.wal.committed_lsn
        with pytest.raises(AlreadyExists, match="Namespace 'app' already exists"):
            await sql(engine, ROOT, "CREATE NAMESPACE App")
        assert await message(engine, ROOT, "CREATE NAMESPACE IF NOT EXISTS app") == \
            "Namespace 'app' already exists"
        assert engine.wal.committed_lsn == before
        names = await rows(engine, ALICE, "SHOW NAMESPACES")
        assert [(r[0], r[4]) for r in names] == [("app", 0), ("default", 0)]


async def test_namespace__role_user_and_service__refused_at_classify(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for session in (ALICE, SERVICE):
            with pytest.raises(PermissionDenied):
                await sql(engine, session, "CREATE NAMESPACE app")
        await sql(engine, DBA, "CREATE NAMESPACE app")


async def test_namespace__drop_rules(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        with pytest.raises(NotFound, match="Namespace 'nope' does not exist"):
            await sql(engine, ROOT, "DROP NAMESPACE nope")
        assert await message(engine, ROOT, "DROP NAMESPACE IF EXISTS nope") == \
            "Namespace 'nope' does not exist (skipped)"
        for reserved in ("default", "system"):
            with pytest.raises(InvalidSql, match="reserved"):
                await sql(engine, ROOT, f"DROP NAMESPACE {reserved}")
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE TABLE app.a (id INT PRIMARY KEY);"
                  "CREATE TABLE app.b (id INT PRIMARY KEY)")
        before = engine.wal.committed_lsn
        with pytest.raises(InvalidOperation, match=r"contains 2 table\(s\).*CASCADE"):
            await sql(engine, ROOT, "DROP NAMESPACE app")
        assert engine.wal.committed_lsn == before
        await sql(engine, ROOT, "DROP TABLE app.a; DROP TABLE app.b; DROP NAMESPACE app")
        assert "app" not in engine.catalog.namespaces


async def test_namespace__drop_cascade__tables_partitions_and_files_go(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE TABLE app.t (id INT PRIMARY KEY);"
                  "CREATE USER TABLE app.u (id INT PRIMARY KEY)")
        await sql(engine, ROOT, "INSERT INTO app.t (id) VALUES (1)")
        await sql(engine, ALICE, "INSERT INTO app.u (id) VALUES (1)")
        await sql(engine, ROOT, "STORAGE FLUSH ALL IN app")
        await wait_jobs(engine)
        assert (tmp_path / "tables" / "app").exists()
        assert await message(engine, ROOT, "DROP NAMESPACE app CASCADE") == \
            "Namespace 'app' dropped successfully with 2 table(s)"
        assert engine.catalog.tables == {} and engine.store.partitions == {}
        assert list((tmp_path / "tables" / "app").iterdir()) == []
        with pytest.raises(TableNotFound):
            await sql(engine, ROOT, "SELECT * FROM app.t")


async def test_namespace__alter_description_shows_in_options(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        with pytest.raises(NotFound):
            await sql(engine, ROOT, "ALTER NAMESPACE app SET DESCRIPTION 'x'")
        await sql(engine, ROOT, "CREATE NAMESPACE app")
        assert await message(engine, ROOT, "ALTER NAMESPACE app SET DESCRIPTION 'Main app'") == \
            "Namespace 'app' altered successfully"
        (app, _) = await rows(engine, ROOT, "SHOW NAMESPACES")
        assert json.loads(app[3]) == {"description": "Main app"}


async def test_use__checks_existence_and_switches_rest_of_batch(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        with pytest.raises(NotFound, match="Namespace 'nope' does not exist"):
            await sql(engine, ALICE, "USE nope")
        await sql(engine, ROOT, "CREATE NAMESPACE app")
        results = await sql(engine, ROOT, "USE app; CREATE TABLE t (id INT PRIMARY KEY)")
        assert results[0]["message"] == "Namespace switched to 'app'"
        assert engine.catalog.table("app", "t") is not None
        assert (await one(engine, ALICE, "SET NAMESPACE app"))["message"] == \
            "Namespace switched to 'app'"


# ---- CREATE TABLE ----------------------------------------------------------------------------


async def test_create_table__type_resolution(tmp_path: Path) -> None:
    # No type → SHARED; a user/service in the namespace named after it → USER.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE NAMESPACE alice; CREATE NAMESPACE svc")
        await sql(engine, ROOT, "CREATE TABLE app.s (id INT PRIMARY KEY);"
                  "CREATE TABLE app.t (id INT PRIMARY KEY) WITH (TYPE = 'USER');"
                  "CREATE STREAM TABLE app.e (k TEXT) WITH (TTL_SECONDS = 10)")
        await sql(engine, ALICE, "CREATE TABLE alice.notes (id INT PRIMARY KEY)")
        await sql(engine, SERVICE, "CREATE TABLE svc.jobs (id INT PRIMARY KEY)")
        await sql(engine, ROOT, "CREATE TABLE alice.shared_one (id INT PRIMARY KEY)")
        types = {f"{t.namespace}.{t.name}": t.table_type for t in engine.catalog.tables.values()}
        assert types == {"app.s": "SHARED", "app.t": "USER", "app.e": "STREAM",
                         "alice.notes": "USER", "svc.jobs": "USER", "alice.shared_one": "SHARED"}
        with pytest.raises(PermissionDenied, match="SHARED"):
            await sql(engine, ALICE, "CREATE TABLE app.x (id INT PRIMARY KEY)")


async def test_create_table__preconditions_and_messages(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        with pytest.raises(InvalidOperation, match=r"Namespace 'app' does not exist\. Create it "
                           r"first"):
            await sql(engine, ROOT, "CREATE TABLE app.t (id INT PRIMARY KEY)")
        with pytest.raises(InvalidOperation, match="'system' namespace"):
            await sql(engine, ROOT, "CREATE TABLE system.t (id INT PRIMARY KEY)")
        await sql(engine, ROOT, "CREATE NAMESPACE app")
        assert (await message(engine, ROOT, "CREATE TABLE app.t (id INT PRIMARY KEY)")
                ).startswith("CREATE TABLE via Raft consensus:")
        with pytest.raises(AlreadyExists, match=r"Table app\.t already exists"):
            await sql(engine, ROOT, "CREATE TABLE app.T (id INT PRIMARY KEY)")
        assert await message(engine, ROOT, "CREATE TABLE IF NOT EXISTS app.t (x INT PRIMARY KEY)") \
            == "Table app.t already exists (skipped)"
        assert [c.name for c in engine.catalog.table("app", "t").columns] == ["id"]


@pytest.mark.parametrize(("ddl", "error", "text"), [
    ("CREATE STREAM TABLE app.e (k TEXT)", InvalidOperation, "require TTL_SECONDS"),
    ("CREATE STREAM TABLE app.e (k TEXT) WITH (TTL_SECONDS = 0)", InvalidOperation,
     "TTL_SECONDS must be an integer"),
    ("CREATE STREAM TABLE app.e (k TEXT) WITH (TTL_SECONDS = 'abc')", InvalidOperation,
     "TTL_SECONDS must be an integer"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY) WITH (TTL_SECONDS = 5)", InvalidOperation,
     "TTL_SECONDS is only valid for STREAM"),
    ("CREATE USER TABLE app.t (id INT PRIMARY KEY) WITH (ACCESS_LEVEL = 'PUBLIC')",
     InvalidOperation, "ACCESS_LEVEL is only valid for SHARED"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY) WITH (ACCESS_LEVEL = 'OPEN')", InvalidOperation,
     "Invalid ACCESS_LEVEL 'OPEN'"),
    ("CREATE STREAM TABLE app.e (k TEXT) WITH (TTL_SECONDS = 5, FLUSH_POLICY = 'rows:10')",
     InvalidOperation, "FLUSH_POLICY is only valid for USER and SHARED"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY) WITH (STORAGE_ID = 'nowhere')", NotFound,
     "Storage 'nowhere' does not exist"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY) WITH (USE_USER_STORAGE = true)", InvalidOperation,
     "USE_USER_STORAGE is only valid for USER"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY) WITH (DELETED_RETENTION_HOURS = -1)",
     InvalidOperation, "DELETED_RETENTION_HOURS must be an integer"),
    ("CREATE TABLE app.t (id TEXT AUTO_INCREMENT PRIMARY KEY)", InvalidOperation, "need type BIGINT"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY, n INT DEFAULT 'abc')", InvalidValue,
     "Invalid value for column 'n'"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY, at TEXT DEFAULT NOW())", InvalidOperation,
     r"DEFAULT NOW\(\) cannot fill column 'at' of type TEXT"),
    ("CREATE TABLE app.t (id EMBEDDING(3) PRIMARY KEY)", InvalidOperation,
     "cannot be a PRIMARY KEY"),
    ("CREATE TABLE app.t (id INT PRIMARY KEY, x TINYINT)", InvalidSql, "Unsupported"),
])
async def test_create_table__invalid__typed_error_and_nothing_written(
        tmp_path: Path, ddl: str, error: type, text: str) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app")
        before = engine.wal.committed_lsn
        with pytest.raises(error, match=text):
            await sql(engine, ROOT, ddl)
        assert engine.wal.committed_lsn == before
        assert engine.catalog.tables == {}


async def test_create_table__options_columns_and_defaults_stored(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE STORAGE s3a TYPE 's3' BUCKET 'b'")
        await sql(engine, ROOT, """CREATE TABLE app.t (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL
            DEFAULT 'anon', at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, who TEXT DEFAULT CURRENT_USER,
            n INT DEFAULT -3, ok BOOLEAN DEFAULT TRUE) WITH (STORAGE_ID = 's3a',
            FLUSH_POLICY = 'rows:100,interval:30', DELETED_RETENTION_HOURS = 24)""")
        table = engine.catalog.table("app", "t")
        assert [(c.id, c.name, c.nullable, c.default) for c in table.columns] == [
            (1, "id", False, {"fn": "SNOWFLAKE_ID"}), (2, "name", False, {"value": "anon"}),
            (3, "at", True, {"fn": "NOW"}), (4, "who", True, {"fn": "CURRENT_USER"}),
            (5, "n", True, {"value": -3}), (6, "ok", True, {"value": True})]
        assert table.next_column_id == 7 and table.version == 1
        options = table.options
        assert (options.access_level, options.storage_id, options.flush_rows,
                options.flush_interval_seconds) == ("PRIVATE", "s3a", 100, 30)
        await sql(engine, ROOT, "CREATE USER TABLE app.u (id INT PRIMARY KEY) "
                  "WITH (USE_USER_STORAGE = true)")
        user_table = engine.catalog.table("app", "u")
        assert user_table.options.access_level is None and user_table.options.use_user_storage
        assert table.table_id != user_table.table_id


async def test_create_table__pk_forced_not_null(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE TABLE app.t (id INT, "
                  "PRIMARY KEY (id))")
        assert engine.catalog.table("app", "t").pk.nullable is False
        with pytest.raises(InvalidSql, match="Primary key column 'id' cannot be NULL"):
            await sql(engine, ROOT, "CREATE TABLE app.u (id INT NULL PRIMARY KEY)")


# ---- ALTER TABLE -----------------------------------------------------------------------------


SETUP = ("CREATE NAMESPACE app; CREATE TABLE app.t (id INT PRIMARY KEY, name TEXT, code TEXT);"
         "INSERT INTO app.t (id, name, code) VALUES (1, 'a', '12'), (2, NULL, '7')")


async def test_alter__add_column__fill_and_not_null_rules(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        assert await message(engine, ROOT, "ALTER TABLE app.t ADD COLUMN n INT DEFAULT 5") == \
            "Table app.t altered successfully (schema version 2)"
        await sql(engine, ROOT, "INSERT INTO app.t (id, n) VALUES (3, 9)")
        assert await rows(engine, ROOT, "SELECT n FROM app.t") == [[5], [5], [9]]
        before = engine.wal.committed_lsn
        with pytest.raises(InvalidOperation, match="NOT NULL column 'm' without a DEFAULT"):
            await sql(engine, ROOT, "ALTER TABLE app.t ADD COLUMN m INT NOT NULL")
        with pytest.raises(AlreadyExists, match="Column 'Name' already exists"):
            await sql(engine, ROOT, 'ALTER TABLE app.t ADD COLUMN "Name" TEXT')
        assert engine.wal.committed_lsn == before
        await sql(engine, ROOT, "CREATE TABLE app.empty (id INT PRIMARY KEY);"
                  "ALTER TABLE app.empty ADD COLUMN m INT NOT NULL")
        assert engine.catalog.table("app", "empty").column("m").nullable is False


async def test_alter__drop_and_rename_column(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        with pytest.raises(InvalidOperation, match="Cannot drop primary key column 'id'"):
            await sql(engine, ROOT, "ALTER TABLE app.t DROP COLUMN id")
        with pytest.raises(NotFound, match="Column 'nope' does not exist"):
            await sql(engine, ROOT, "ALTER TABLE app.t DROP COLUMN nope")
        assert "skipped" in await message(engine, ROOT,
                                          "ALTER TABLE app.t DROP COLUMN IF EXISTS nope")
        await sql(engine, ROOT, "ALTER TABLE app.t DROP COLUMN code")
        await sql(engine, ROOT, "ALTER TABLE app.t RENAME COLUMN name TO title")
        (result,) = await sql(engine, ROOT, "SELECT id, title FROM app.t")
        assert result["rows"] == [[1, "a"], [2, None]]
        with pytest.raises(AlreadyExists):
            await sql(engine, ROOT, "ALTER TABLE app.t RENAME COLUMN title TO id")
        with pytest.raises(InvalidSql, match="reserved"):
            await sql(engine, ROOT, "ALTER TABLE app.t RENAME COLUMN title TO _key")
        assert engine.catalog.table("app", "t").version == 3


async def test_alter__modify_type__casts_checked(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        await sql(engine, ROOT, "ALTER TABLE app.t MODIFY COLUMN code BIGINT")
        assert await rows(engine, ROOT, "SELECT code FROM app.t") == [["12"], ["7"]]
        await sql(engine, ROOT, "INSERT INTO app.t (id, name) VALUES (3, 'x')")
        with pytest.raises(InvalidOperation, match="Cannot change column 'name' from TEXT to INT"):
            await sql(engine, ROOT, "ALTER TABLE app.t ALTER COLUMN name TYPE INT")
        with pytest.raises(InvalidOperation, match="type of primary key column 'id'"):
            await sql(engine, ROOT, "ALTER TABLE app.t MODIFY COLUMN id BIGINT")
        with pytest.raises(InvalidOperation, match="existing values do not convert"):
            await sql(engine, ROOT, "ALTER TABLE app.t MODIFY COLUMN code EMBEDDING(2)")
        with pytest.raises(InvalidOperation, match="Cannot change column 'code' from BIGINT "
                           "to SMALLINT"):
            await sql(engine, ROOT, "UPDATE app.t SET code = 100000 WHERE id = 1;"
                      "ALTER TABLE app.t MODIFY COLUMN code SMALLINT")


async def test_alter__set_not_null__checks_every_users_partition(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE USER TABLE app.u "
                  "(id INT PRIMARY KEY, note TEXT)")
        await sql(engine, ALICE, "INSERT INTO app.u (id, note) VALUES (1, 'x')")
        await sql(engine, BOB, "INSERT INTO app.u (id, note) VALUES (1, NULL)")
        before = engine.wal.committed_lsn
        with pytest.raises(InvalidOperation, match="Cannot set column 'note' NOT NULL"):
            await sql(engine, ROOT, "ALTER TABLE app.u ALTER COLUMN note SET NOT NULL")
        assert engine.wal.committed_lsn == before
        await sql(engine, BOB, "DELETE FROM app.u WHERE id = 1")
        await sql(engine, ALICE, "ALTER USER TABLE app.u ALTER COLUMN note SET NOT NULL")
        with pytest.raises(InvalidOperation, match="Primary key column 'id' cannot be NULL"):
            await sql(engine, ROOT, "ALTER TABLE app.u ALTER COLUMN id DROP NOT NULL")
        await sql(engine, ROOT, "ALTER TABLE app.u ALTER COLUMN note DROP NOT NULL")
        assert engine.catalog.table("app", "u").column("note").nullable


async def test_alter__set_and_drop_default(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        await sql(engine, ROOT, "ALTER TABLE app.t ALTER COLUMN name SET DEFAULT 'zed'")
        await sql(engine, ROOT, "INSERT INTO app.t (id) VALUES (3)")
        with pytest.raises(InvalidOperation, match="cannot fill"):
            await sql(engine, ROOT, "ALTER TABLE app.t ALTER COLUMN name SET DEFAULT NOW()")
        await sql(engine, ROOT, "ALTER TABLE app.t ALTER COLUMN name DROP DEFAULT")
        await sql(engine, ROOT, "INSERT INTO app.t (id) VALUES (4)")
        assert await rows(engine, ROOT, "SELECT name FROM app.t WHERE id > 2") == [["zed"], [None]]


async def test_alter__access_level__shared_only_and_changes_reads(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP + "; CREATE USER TABLE app.u (id INT PRIMARY KEY)")
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "SELECT * FROM app.t")
        await sql(engine, ROOT, "ALTER TABLE app.t SET TBLPROPERTIES (ACCESS_LEVEL = 'PUBLIC')")
        assert len(await rows(engine, ALICE, "SELECT id FROM app.t")) == 2
        with pytest.raises(InvalidOperation, match="ACCESS_LEVEL is only valid for SHARED"):
            await sql(engine, ROOT, "ALTER TABLE app.u SET TBLPROPERTIES (ACCESS_LEVEL = 'DBA')")


async def test_alter__roles(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP + "; CREATE USER TABLE app.u (id INT PRIMARY KEY)")
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "ALTER TABLE app.t ADD COLUMN x INT")
        await sql(engine, SERVICE, "ALTER TABLE app.t ADD COLUMN x INT")
        await sql(engine, ALICE, "ALTER TABLE app.u ADD COLUMN y INT")
        with pytest.raises(PermissionDenied, match="System tables cannot be altered"):
            await sql(engine, ROOT, "ALTER TABLE system.users ADD COLUMN z INT")
        with pytest.raises(TableNotFound):
            await sql(engine, ROOT, "ALTER TABLE app.nope ADD COLUMN z INT")


# ---- DROP TABLE ------------------------------------------------------------------------------


async def test_drop_table__rules_data_and_files(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        with pytest.raises(PermissionDenied):
            await sql(engine, SERVICE, "DROP TABLE app.t")
        with pytest.raises(TableNotFound):
            await sql(engine, ROOT, "DROP TABLE app.nope")
        assert await message(engine, ROOT, "DROP TABLE IF EXISTS app.nope") == \
            "Table app.nope does not exist (skipped)"
        await sql(engine, ROOT, "STORAGE FLUSH TABLE app.t")
        await wait_jobs(engine)
        table = engine.catalog.table("app", "t")
        directory = tmp_path / "tables" / "app" / f"t-{table.table_id}"
        assert directory.exists()
        assert await message(engine, DBA, "DROP SHARED TABLE app.t") == \
            "Table app.t dropped successfully"
        assert not directory.exists() and not list(engine.store.partitions_of(table.table_id))
        await sql(engine, ROOT, "CREATE TABLE app.t (id INT PRIMARY KEY)")
        assert await rows(engine, ROOT, "SELECT * FROM app.t") == []
        with pytest.raises(PermissionDenied, match="System tables cannot be dropped"):
            await sql(engine, ROOT, "DROP TABLE system.users")


# ---- DESCRIBE / SHOW -------------------------------------------------------------------------


async def test_describe_table__columns_then_system_columns(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE TABLE app.t (id BIGINT PRIMARY KEY "
                  "AUTO_INCREMENT, price DECIMAL(10,2) NOT NULL DEFAULT 1.5, label TEXT "
                  "DEFAULT 'it''s')")
        (result,) = await sql(engine, ALICE, "DESCRIBE TABLE app.t")
        assert [f["name"] for f in result["schema"]] == [
            "column_name", "ordinal_position", "data_type", "is_nullable", "is_primary_key",
            "column_default"]
        assert result["rows"] == [
            ["id", 1, "BIGINT", False, True, "SNOWFLAKE_ID()"],
            ["price", 2, "DECIMAL(10, 2)", False, False, "1.5"],
            ["label", 3, "TEXT", True, False, "'it''s'"],
            ["_seq", 4, "BIGINT", False, False, None],
            ["_deleted", 5, "BOOLEAN", False, False, "FALSE"]]
        history = await rows(engine, ROOT, "DESC TABLE app.t HISTORY")
        assert history[0][0] == "1" and len(json.loads(history[0][3])) == 3
        with pytest.raises(TableNotFound):
            await sql(engine, ROOT, "DESCRIBE TABLE app.nope")


async def test_show_columns_and_datafusion_describe__admin_only(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        expected = await rows(engine, ROOT, "DESCRIBE TABLE app.t")
        assert await rows(engine, DBA, "SHOW COLUMNS FROM t IN app") == expected
        assert await rows(engine, DBA, "DESCRIBE app.t") == expected
        for text in ("SHOW COLUMNS FROM app.t", "DESCRIBE app.t"):
            with pytest.raises(PermissionDenied):
                await sql(engine, SERVICE, text)
        users = await rows(engine, ROOT, "DESCRIBE TABLE system.users")
        assert users[1][:3] == ["password_hash", 2, "TEXT"]


async def test_show_tables__all_or_in_namespace(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE NAMESPACE b;"
                  "CREATE TABLE app.t (id INT PRIMARY KEY);"
                  "CREATE STREAM TABLE b.e (k TEXT) WITH (TTL_SECONDS = 9)")
        (result,) = await sql(engine, ALICE, "SHOW TABLES")
        assert [r[:4] for r in result["rows"]] == [["app", "t", "SHARED", "local"],
                                                    ["b", "e", "STREAM", None]]
        assert json.loads(result["rows"][1][5]) == {"ttl_seconds": 9}
        assert [r[1] for r in await rows(engine, ALICE, "SHOW TABLES IN b")] == ["e"]
        assert "users" in [r[1] for r in await rows(engine, ROOT, "SHOW TABLES IN system")]
        with pytest.raises(NotFound):
            await sql(engine, ALICE, "SHOW TABLES IN nope")


async def test_show_stats__counts_hot_and_cold(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        stats = dict(await rows(engine, ROOT, "SHOW STATS FOR TABLE app.t"))
        assert (stats["hot_rows"], stats["cold_rows"], stats["segments"]) == ("2", "0", "0")
        await sql(engine, ROOT, "STORAGE FLUSH TABLE app.t")
        await wait_jobs(engine)
        stats = dict(await rows(engine, ROOT, "SHOW STATS FOR TABLE app.t"))
        assert (stats["hot_rows"], stats["cold_rows"], stats["segments"]) == ("0", "2", "1")
        assert stats["last_flushed_lsn"] == stats["last_write_lsn"] != "0"
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "SHOW STATS FOR TABLE app.t")
        # USER tables: non-admins count their own partition only.
        await sql(engine, ROOT, "CREATE USER TABLE app.u (id INT PRIMARY KEY)")
        await sql(engine, ALICE, "INSERT INTO app.u (id) VALUES (1), (2)")
        await sql(engine, BOB, "INSERT INTO app.u (id) VALUES (1)")
        mine = dict(await rows(engine, BOB, "SHOW STATS FOR TABLE app.u"))
        every = dict(await rows(engine, DBA, "SHOW STATS FOR TABLE app.u"))
        assert (mine["hot_rows"], every["hot_rows"], every["partitions"]) == ("1", "3", "2")


# ---- persistence -----------------------------------------------------------------------------


DDL_HISTORY = """
CREATE NAMESPACE app; CREATE NAMESPACE gone;
CREATE TABLE app.t (id INT PRIMARY KEY, name TEXT);
INSERT INTO app.t (id, name) VALUES (1, 'a');
ALTER TABLE app.t ADD COLUMN n INT DEFAULT 7;
ALTER TABLE app.t RENAME COLUMN name TO title;
CREATE TABLE app.dropped (id INT PRIMARY KEY);
DROP TABLE app.dropped;
ALTER NAMESPACE app SET DESCRIPTION 'd';
DROP NAMESPACE gone;
CREATE STORAGE s3a TYPE 's3' BUCKET 'b' CREDENTIALS '{"k": "v"}';
CREATE STORAGE tmp TYPE 'filesystem' PATH '/tmp';
ALTER STORAGE s3a SET DESCRIPTION 'cold';
DROP STORAGE tmp
"""


@pytest.mark.parametrize("via", ["checkpoint", "wal_replay"])
async def test_restart__catalog_survives(tmp_path: Path, via: str) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, DDL_HISTORY)
        described = await rows(engine, ROOT, "DESCRIBE TABLE app.t")
        version = engine.catalog.table("app", "t").version
        storages = dict(engine.catalog.storages)
    if via == "wal_replay":
        (tmp_path / "checkpoints" / "catalog.json").unlink()
    async with engine_at(tmp_path) as engine:
        assert sorted(engine.catalog.namespaces) == ["app", "default"]
        assert engine.catalog.namespaces["app"].description == "d"
        assert await rows(engine, ROOT, "DESCRIBE TABLE app.t") == described
        assert engine.catalog.table("app", "t").version == version
        assert engine.catalog.table("app", "dropped") is None
        assert engine.catalog.storages == storages and sorted(storages) == ["local", "s3a"]
        assert await rows(engine, ROOT, "SELECT id, title, n FROM app.t") == [[1, "a", 7]]


async def test_restart__alter_checks_see_flushed_rows(tmp_path: Path) -> None:
    # After a restart the rows come from segment files (plus the WAL tail); ALTER's row
    # checks must still find them in every user's partition.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE USER TABLE app.u "
                  "(id INT PRIMARY KEY, note TEXT)")
        await sql(engine, BOB, "INSERT INTO app.u (id, note) VALUES (1, NULL)")
        await sql(engine, ROOT, "STORAGE FLUSH TABLE app.u")
        await wait_jobs(engine)
    async with engine_at(tmp_path) as engine:
        # As if retention had released the WAL: the partition only exists as cold files.
        engine.store.partitions.clear()
        load_cold_partitions(engine)
        assert len(engine.store.cold) == 1
        with pytest.raises(InvalidOperation, match="NOT NULL"):
            await sql(engine, ROOT, "ALTER TABLE app.u ALTER COLUMN note SET NOT NULL")
        with pytest.raises(InvalidOperation, match="already has rows"):
            await sql(engine, ROOT, "ALTER TABLE app.u ADD COLUMN n INT NOT NULL")
        assert await rows(engine, BOB, "SELECT id, note FROM app.u") == [[1, None]]
