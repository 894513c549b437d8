"""SET / SHOW settings, CLUSTER, BACKUP / RESTORE DATABASE, EXPORT USER DATA and SHOW EXPORT
through the real engine (PROTOCOL §3.15, §1.5, §2.7, §7.3; choices in engine/sql/misc.py)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from engine.errors import InvalidOperation, NotFound, PermissionDenied
from engine.session import Session
from tests.engine.harness import ALICE, BOB, DBA, ROOT, SERVICE, engine_at, rows, sql

SETUP = """
CREATE NAMESPACE app;
CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT, n BIGINT);
CREATE SHARED TABLE app.cfg (k TEXT PRIMARY KEY, v TEXT);
CREATE STREAM TABLE app.ev (k TEXT) WITH (TTL_SECONDS = 3600)
"""
NOTES = "SELECT id, body, n FROM app.notes ORDER BY id"


async def message(engine, session, text: str) -> str:
    (result,) = await sql(engine, session, text)
    return result["message"]


async def fill(engine) -> None:
    await sql(engine, ROOT, SETUP)
    await sql(engine, ALICE, "INSERT INTO app.notes (id, body, n) VALUES (1, 'a1', 10), "
              "(2, 'a2', 20); INSERT INTO app.ev (k) VALUES ('ae')")
    await sql(engine, ALICE, "UPDATE app.notes SET body = 'a1!' WHERE id = 1")
    await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (3, 'gone'); "
              "DELETE FROM app.notes WHERE id = 3")
    await sql(engine, BOB, "INSERT INTO app.notes (id, body, n) VALUES (1, 'b1', 99)")
    await sql(engine, ROOT, "INSERT INTO app.cfg (k, v) VALUES ('mode', 'x')")


# ---- SET / SHOW ------------------------------------------------------------------------------


async def test_set_show__settings_and_limits(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app")
        with pytest.raises(InvalidOperation, match="only one is the batch's namespace"):
            await sql(engine, DBA, "SET datafusion.execution.batch_size = 10")
        assert await rows(engine, DBA, "SHOW max_query_limit_rows") == \
            [["max_query_limit_rows", "1000"]]
        assert await rows(engine, DBA, "SHOW NAMESPACE") == [["namespace", "default"]]
        everything = dict(await rows(engine, ROOT, "SHOW ALL"))
        assert everything["default_query_limit_rows"] == "50"
        assert everything["sql_text_max_bytes"] == str(1024 * 1024)
        assert everything["enforce_password_complexity"] == "false"
        assert not any("password" in name and name != "enforce_password_complexity"
                       for name in everything)
        with pytest.raises(InvalidOperation, match="known settings: namespace, default_query"):
            await sql(engine, DBA, "SHOW root_password")
        for text in ("SET x = 1", "SHOW ALL", "SHOW params_max"):
            with pytest.raises(PermissionDenied, match="Admin privileges"):
                await sql(engine, SERVICE, text)


async def test_set_namespace__is_use_for_the_rest_of_the_batch(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app")
        for switch in ("SET namespace = app", "SET NAMESPACE TO app", "USE app"):
            results = await sql(engine, ROOT, f"{switch}; SHOW namespace")
            assert results[0]["message"] == "Namespace switched to 'app'"
            assert results[1]["rows"] == [["namespace", "app"]]
        with pytest.raises(NotFound, match="Namespace 'nope' does not exist"):
            await sql(engine, DBA, "SET namespace = nope")


# ---- CLUSTER ---------------------------------------------------------------------------------


async def test_cluster__snapshot_writes_a_checkpoint_others_refused(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE NAMESPACE app")
        lsn = int(engine.wal.committed_lsn)
        text = await message(engine, DBA, "CLUSTER SNAPSHOT")
        assert text == f"Cluster snapshot created: catalog checkpoint at LSN {lsn}"
        checkpoint = json.loads((tmp_path / "checkpoints" / "catalog.json").read_text())
        assert checkpoint["applied_lsn"] == lsn == engine.checkpointed_catalog_lsn
        assert any(n["name"] == "app" for n in checkpoint["namespaces"])
        for action, word in (("PURGE UPTO 5", "PURGE"), ("TRIGGER ELECTION", "TRIGGER ELECTION"),
                             ("TRANSFER LEADER 2", "TRANSFER LEADER"), ("STEPDOWN", "STEPDOWN"),
                             ("CLEAR", "CLEAR"), ("JOIN 2 '10.0.0.2:9000' '10.0.0.2:2900'", "JOIN"),
                             ("REBALANCE", "REBALANCE")):
            with pytest.raises(InvalidOperation, match=f"single node; CLUSTER {word} does"):
                await sql(engine, ROOT, f"CLUSTER {action}")
        with pytest.raises(InvalidOperation, match="not allowed inside a transaction"):
            await sql(engine, ROOT, "BEGIN; CLUSTER SNAPSHOT; COMMIT")
        with pytest.raises(PermissionDenied):
            await sql(engine, SERVICE, "CLUSTER SNAPSHOT")


# ---- BACKUP / RESTORE ------------------------------------------------------------------------


async def test_backup_restore__round_trip_keeps_rows_and_partitions(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await fill(engine)
        before = {who.user_id: await rows(engine, who, NOTES) for who in (ALICE, BOB)}
        seqs = await rows(engine, ALICE, "SELECT _seq FROM app.notes ORDER BY id")
        assert before["alice"] == [[1, "a1!", "10"], [2, "a2", "20"]]
        text = await message(engine, DBA, "BACKUP DATABASE app TO 'app-1.arrow'")
        assert text == "Namespace 'app' backed up to 'app-1.arrow': 3 table(s), 5 row(s)"
        assert (tmp_path / "backups" / "app-1.arrow").is_file()
        await sql(engine, ROOT, "DROP NAMESPACE app CASCADE")
        text = await message(engine, DBA, "RESTORE DATABASE app FROM 'app-1.arrow'")
        assert text == "Namespace 'app' restored from 'app-1.arrow': 3 table(s), 5 row(s)"
        for who in (ALICE, BOB):
            assert await rows(engine, who, NOTES) == before[who.user_id]
        assert await rows(engine, ALICE, "SELECT _seq FROM app.notes ORDER BY id") == seqs
        assert await rows(engine, ALICE, "SELECT k FROM app.ev") == [["ae"]]
        assert await rows(engine, BOB, "SELECT k FROM app.ev") == []
        assert await rows(engine, ROOT, "SELECT k, v FROM app.cfg") == [["mode", "x"]]
        # The deleted row is not resurrected, and its key is free again.
        await sql(engine, ALICE, "INSERT INTO app.notes (id, body) VALUES (3, 'again')")
        with pytest.raises(InvalidOperation, match="already exists; RESTORE DATABASE only"):
            await sql(engine, ROOT, "RESTORE DATABASE app FROM 'app-1.arrow'")
        # Restoring under another name is a copy.
        await sql(engine, ROOT, "RESTORE DATABASE copy FROM 'app-1.arrow'")
        assert await rows(engine, BOB, "SELECT body FROM copy.notes") == [["b1"]]
    # Everything restored is in the WAL: a restart rebuilds it.
    async with engine_at(tmp_path) as engine:
        assert await rows(engine, ALICE, NOTES) == [*before["alice"], [3, "again", None]]
        assert await rows(engine, BOB, "SELECT body FROM copy.notes") == [["b1"]]


async def test_backup_restore__paths_confined_and_errors(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        for bad in ("/tmp/x", "../x", "a/b", "..", ".hidden", "a\\b", "", "x" * 129,
                    "..%2fx", "a..b"):
            with pytest.raises(InvalidOperation, match="Invalid backup path"):
                await sql(engine, ROOT, f"BACKUP DATABASE app TO '{bad}'")
            with pytest.raises(InvalidOperation, match="Invalid backup path"):
                await sql(engine, ROOT, f"RESTORE DATABASE fresh FROM '{bad}'")
        assert not (tmp_path / "backups").exists()
        with pytest.raises(NotFound, match="Backup 'missing' does not exist"):
            await sql(engine, ROOT, "RESTORE DATABASE fresh FROM 'missing'")
        (tmp_path / "backups").mkdir()
        (tmp_path / "backups" / "junk").write_bytes(b"not arrow")
        with pytest.raises(InvalidOperation, match="not a readable Sluice backup"):
            await sql(engine, ROOT, "RESTORE DATABASE fresh FROM 'junk'")
        assert "fresh" not in engine.catalog.namespaces
        with pytest.raises(NotFound, match="Namespace 'nope' does not exist"):
            await sql(engine, ROOT, "BACKUP DATABASE nope TO 'n'")
        with pytest.raises(InvalidOperation, match="'system' namespace cannot be backed up"):
            await sql(engine, ROOT, "BACKUP DATABASE system TO 's'")
        with pytest.raises(InvalidOperation, match="not allowed inside a transaction"):
            await sql(engine, ROOT, "BEGIN; RESTORE DATABASE fresh FROM 'junk'")
        for statement in ("BACKUP DATABASE app TO 'x'", "RESTORE DATABASE y FROM 'x'"):
            with pytest.raises(PermissionDenied, match="Admin privileges"):
                await sql(engine, SERVICE, statement)


# ---- EXPORT USER DATA / SHOW EXPORT ----------------------------------------------------------


async def test_export__own_rows_only_and_listed(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await fill(engine)
        (result,) = await sql(engine, ALICE, "EXPORT USER DATA")
        assert [f["name"] for f in result["schema"]] == ["export_id", "download_path",
                                                         "tables", "rows"]
        ((export_id, path, tables, count),) = result["rows"]
        assert export_id.isdigit() and path == f"/v1/exports/alice/{export_id}"
        assert (tables, count) == (2, "3")
        archive = tmp_path / "exports" / "alice" / f"{export_id}.zip"
        with zipfile.ZipFile(archive) as z:
            assert sorted(z.namelist()) == ["app/ev.ndjson", "app/notes.ndjson",
                                            "manifest.json"]
            notes = [json.loads(line) for line in z.read("app/notes.ndjson").splitlines()]
            manifest = json.loads(z.read("manifest.json"))
        assert sorted(notes, key=lambda r: r["id"]) == [
            {"id": 1, "body": "a1!", "n": "10"}, {"id": 2, "body": "a2", "n": "20"}]
        assert manifest["user_id"] == "alice" and manifest["export_id"] == export_id
        (listed,) = await rows(engine, ALICE, "SHOW EXPORT")
        assert listed[0] == export_id and listed[2] == str(archive.stat().st_size)
        assert listed[1] == engine.clock.now_ms() * 1000
        # Bob sees only his own exports; his archive holds only his row.
        assert await rows(engine, BOB, "SHOW EXPORT") == []
        ((bob_id, _, bob_tables, bob_rows),) = await rows(engine, BOB, "EXPORT USER DATA")
        assert (bob_tables, bob_rows) == (1, "1")
        with zipfile.ZipFile(tmp_path / "exports" / "bob" / f"{bob_id}.zip") as z:
            assert z.read("app/notes.ndjson") == b'{"id": 1, "body": "b1", "n": "99"}\n'
        assert [r[0] for r in await rows(engine, BOB, "SHOW EXPORT")] == [bob_id]
        # A user with no rows gets an archive with just the manifest.
        carol = Session("carol", "user")
        ((_, _, none, zero),) = await rows(engine, carol, "EXPORT USER DATA")
        assert (none, zero) == (0, "0")
