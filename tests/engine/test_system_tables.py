"""The system.* tables (PROTOCOL §3.10): exact columns, types, masking, timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.clock import ManualClock
from engine.errors import PermissionDenied
from engine.session import Session
from engine.sql.system_tables import SYSTEM_TABLES
from tests.engine.harness import ALICE, DBA, ROOT, SERVICE, engine_at, sql

SPEC_COLUMNS = {
    "users": "user_id, password_hash, role, email, auth_type, auth_data, storage_mode, "
             "storage_id, failed_login_attempts, locked_until, last_login_at, created_at, "
             "updated_at, last_seen, deleted_at",
    "namespaces": "namespace_id, name, created_at, options, table_count",
    "storages": "storage_id, storage_name, description, storage_type, base_directory, "
                "credentials, config_json, shared_tables_template, user_tables_template, "
                "created_at, updated_at",
    "jobs": "job_id, job_type, status, leader_status, parameters, message, exception_trace, "
            "idempotency_key, queue, priority, retry_count, max_retries, memory_used, cpu_used, "
            "created_at, updated_at, started_at, finished_at, node_id, leader_node_id",
    "topics": "topic_id, name, alias, partitions, retention_seconds, retention_max_bytes, "
              "routes, created_at, updated_at",
    "topic_offsets": "topic_id, group_id, partition_id, last_acked_offset, updated_at",
    "live": "live_id, connection_id, subscription_id, namespace_id, table_name, user_id, query, "
            "options, status, created_at, last_update, changes, node_id, last_ping_at",
    "tables": "namespace_id, table_name, table_type, storage_id, version, options, comment, "
              "updated_at, created_at",
    "columns": "namespace_id, table_name, version, column_id, column_name, comment, data_type, "
               "default_value, ordinal, nullable, primary_key, primary_key_pos",
}
START_MS = 1_767_225_600_000


async def select_all(engine, name: str, session: Session = ROOT) -> dict:
    (result,) = await sql(engine, session, f"SELECT * FROM system.{name}")
    return result


@pytest.mark.parametrize("name", sorted(SPEC_COLUMNS))
async def test_system_table__exact_column_order(tmp_path: Path, name: str) -> None:
    async with engine_at(tmp_path) as engine:
        result = await select_all(engine, name)
        assert [f["name"] for f in result["schema"]] == SPEC_COLUMNS[name].split(", ")
        data, types = SYSTEM_TABLES[name](engine, ROOT)
        assert data.column_names == SPEC_COLUMNS[name].split(", ")
        assert [t.arrow_type() for t in types] == data.schema.types


async def test_system_tables__set_is_complete_and_admin_only(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        assert set(SYSTEM_TABLES) == set(SPEC_COLUMNS)
        for session in (ALICE, SERVICE):
            with pytest.raises(PermissionDenied):
                await sql(engine, session, "SELECT * FROM system.users")
        assert (await select_all(engine, "topics", DBA))["rows"] == []


async def test_users__hash_for_admins_masked_otherwise_and_microsecond_times(
        tmp_path: Path) -> None:
    clock = ManualClock(START_MS)
    async with engine_at(tmp_path, clock=clock) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'pw' EMAIL 'c@x.io'")
        clock.advance(5)
        await sql(engine, ROOT, "DROP USER carol")
        result = await select_all(engine, "users", DBA)
        assert [f["data_type"] for f in result["schema"]][8:10] == ["Int", "Timestamp"]
        carol = {r[0]: r for r in result["rows"]}["carol"]
        assert carol[1].startswith("$2b$")
        assert carol[2:5] == ["user", "c@x.io", "Password"]
        assert carol[11] == START_MS * 1000 and carol[14] == (START_MS + 5) * 1000
        masked, _ = SYSTEM_TABLES["users"](engine, ALICE)
        assert set(masked.column("password_hash").to_pylist()) == {"***"}


async def test_namespaces_tables_columns__reflect_the_catalog(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE TABLE app.t (id BIGINT PRIMARY "
                  "KEY, name TEXT NOT NULL DEFAULT 'x') WITH (ACCESS_LEVEL = 'PUBLIC');"
                  "ALTER TABLE app.t ADD COLUMN n INT")
        namespaces = (await select_all(engine, "namespaces"))["rows"]
        assert [(r[0], r[4]) for r in namespaces] == [("app", 1), ("default", 0)]
        (table,) = (await select_all(engine, "tables"))["rows"]
        assert table[:5] == ["app", "t", "SHARED", "local", "2"]
        assert json.loads(table[5]) == {"access_level": "PUBLIC", "storage_id": "local"}
        columns = (await select_all(engine, "columns"))["rows"]
        assert [(r[4], r[6], r[7], r[8], r[9], r[10], r[11]) for r in columns] == [
            ("id", "BIGINT", None, "1", False, True, "1"),
            ("name", "TEXT", "'x'", "2", False, False, None),
            ("n", "INT", None, "3", True, False, None)]


async def test_storages__credentials_masked_even_for_admins(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE STORAGE s TYPE 's3' BUCKET 'b' CREDENTIALS '{\"k\":\"v\"}'")
        by_id = {r[0]: r for r in (await select_all(engine, "storages"))["rows"]}
        assert by_id["s"][5] == "***" and by_id["local"][5] is None


async def test_jobs__records_with_times(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app; CREATE TABLE app.t (id INT PRIMARY KEY);"
                  "INSERT INTO app.t (id) VALUES (1); STORAGE FLUSH TABLE app.t; KILL JOB 'flush-1'")
        (job,) = (await select_all(engine, "jobs"))["rows"]
        assert job[:6] == ["flush-1", "Flush", "cancelled", None, "app.t", "killed by root"]
        assert job[14] == job[17] == START_MS * 1000 and job[16] is None
        assert job[18] == "0"  # node_id (BigInt: a string)
