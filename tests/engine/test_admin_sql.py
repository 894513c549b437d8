"""Storages, flush, compaction, SHOW MANIFEST and KILL JOB through the real engine
(PROTOCOL §3.12, §2.7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from engine import open_engine
from engine.clock import ManualClock
from engine.errors import AlreadyExists, InvalidOperation, InvalidSql, NotFound, PermissionDenied
from tests.engine.harness import ALICE, CONFIG, DBA, ROOT, SERVICE, engine_at, rows, sql
from wal import FileIO

SETUP = """
CREATE NAMESPACE app;
CREATE TABLE app.t (id INT PRIMARY KEY, name TEXT);
CREATE USER TABLE app.u (id INT PRIMARY KEY);
CREATE STREAM TABLE app.e (k TEXT) WITH (TTL_SECONDS = 60)
"""


async def message(engine, session, text: str) -> str:
    (result,) = await sql(engine, session, text)
    return result["message"]


async def wait_jobs(engine, timeout_s: float = 10) -> None:
    """Polls the job board until no job is queued or running (jobs have no completion event)."""
    with trio.fail_after(timeout_s):
        for _ in range(int(timeout_s / 0.01) + 1):
            if not any(r.status in ("queued", "running") for r in engine.jobs.records):
                return
            await trio.sleep(0.01)


def _probe_files(directory: Path) -> list[Path]:
    return list(directory.glob(".sluice-check-*"))


def job(engine, job_id: str):
    return next(r for r in engine.jobs.records if r.job_id == job_id)


def job_id_of(text: str) -> str:
    return text.rsplit("Job ID: ", 1)[1]


# ---- storages --------------------------------------------------------------------------------


async def test_storage__create_show_alter_drop(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        text = await message(engine, DBA, "CREATE STORAGE s3main TYPE 's3' NAME 'Main' "
                             "BUCKET 'b1' REGION 'eu-west-1' CREDENTIALS '{\"key\":\"SECRET\"}' "
                             "CONFIG '{\"endpoint\":\"http://minio\"}'")
        assert text == "Storage 's3main' created successfully" and "SECRET" not in text
        with pytest.raises(AlreadyExists, match="Storage 's3main' already exists"):
            await sql(engine, DBA, "CREATE STORAGE s3main TYPE 's3' BUCKET 'x'")
        (result,) = await sql(engine, ALICE, "SHOW STORAGES")
        assert [f["name"] for f in result["schema"]][:6] == [
            "storage_id", "storage_name", "description", "storage_type", "base_directory",
            "credentials"]
        local, s3 = result["rows"]
        assert (local[0], local[5]) == ("local", None)
        assert s3[:6] == ["s3main", "Main", None, "s3", None, "***"]
        assert json.loads(s3[6]) == {"bucket": "b1", "endpoint": "http://minio",
                                     "region": "eu-west-1"}
        assert "SECRET" not in json.dumps(result)
        await sql(engine, DBA, "ALTER STORAGE s3main SET DESCRIPTION 'cold tier'")
        assert engine.catalog.storages["s3main"].description == "cold tier"
        assert engine.catalog.storages["s3main"].credentials == '{"key":"SECRET"}'
        assert await message(engine, DBA, "DROP STORAGE s3main") == \
            "Storage 's3main' dropped successfully"
        assert await message(engine, DBA, "DROP STORAGE IF EXISTS s3main") == \
            "Storage 's3main' does not exist (skipped)"
        with pytest.raises(NotFound, match="Storage 's3main' does not exist"):
            await sql(engine, DBA, "ALTER STORAGE s3main SET DESCRIPTION 'x'")


async def test_storage__rules(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        with pytest.raises(PermissionDenied):
            await sql(engine, SERVICE, "CREATE STORAGE x TYPE 'filesystem' PATH '/tmp'")
        with pytest.raises(InvalidOperation, match="needs PATH"):
            await sql(engine, DBA, "CREATE STORAGE x TYPE 'filesystem'")
        with pytest.raises(InvalidOperation, match="needs BUCKET or PATH"):
            await sql(engine, DBA, "CREATE STORAGE x TYPE 'gcs'")
        with pytest.raises(InvalidOperation, match="Storage 'local' cannot be dropped"):
            await sql(engine, DBA, "DROP STORAGE local")
        with pytest.raises(InvalidOperation, match="cannot be changed"):
            await sql(engine, DBA, "ALTER STORAGE local SET PATH '/elsewhere'")
        await sql(engine, DBA, f"CREATE STORAGE fs TYPE 'filesystem' PATH '{tmp_path}';"
                  "CREATE NAMESPACE app;"
                  "CREATE TABLE app.t (id INT PRIMARY KEY) WITH (STORAGE_ID = 'fs')")
        before = engine.wal.committed_lsn
        with pytest.raises(InvalidOperation, match=r"in use \(table app.t\)"):
            await sql(engine, DBA, "DROP STORAGE fs")
        assert engine.wal.committed_lsn == before


async def test_storage_check__filesystem_probe_and_remote_unchecked(tmp_path: Path) -> None:
    async with engine_at(tmp_path / "data") as engine:
        await sql(engine, DBA, f"CREATE STORAGE fs TYPE 'filesystem' PATH '{tmp_path}';"
                  f"CREATE STORAGE gone TYPE 'filesystem' PATH '{tmp_path / 'missing'}';"
                  "CREATE STORAGE s3 TYPE 's3' BUCKET 'b'")
        (result,) = await sql(engine, DBA, "STORAGE CHECK fs EXTENDED")
        assert [f["name"] for f in result["schema"]] == [
            "storage_id", "storage_type", "status", "base_directory", "message", "checked_at"]
        assert result["rows"][0][2] == "ok"
        assert _probe_files(tmp_path) == []
        assert (await rows(engine, DBA, "STORAGE CHECK gone"))[0][2] == "error"
        assert (await rows(engine, DBA, "STORAGE CHECK s3"))[0][2] == "unchecked"
        assert (await rows(engine, ROOT, "STORAGE CHECK local"))[0][2] == "ok"
        with pytest.raises(NotFound):
            await sql(engine, DBA, "STORAGE CHECK nope")
        with pytest.raises(PermissionDenied):
            await sql(engine, SERVICE, "STORAGE CHECK local")


# ---- flush -----------------------------------------------------------------------------------


async def test_flush_table__async_job_then_segments_in_manifest(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        assert await message(engine, SERVICE, "STORAGE FLUSH TABLE app.t") == \
            "Storage flush skipped: no pending writes for table 'app.t'"
        await sql(engine, ROOT, "INSERT INTO app.t (id, name) VALUES (1, 'a'), (2, 'b')")
        text = await message(engine, SERVICE, "STORAGE FLUSH TABLE app.t")
        assert text.startswith("Storage flush started for table 'app.t'. Job ID: ")
        await wait_jobs(engine)
        record = job(engine, job_id_of(text))
        assert (record.job_type, record.status, record.message) == ("Flush", "completed",
                                                                     "2 row(s)")
        (manifest,) = await rows(engine, DBA, "SHOW MANIFEST")
        assert manifest[:3] == ["app", "t", None] and manifest[3].startswith("seg-")
        assert manifest[4] == "2"  # rows (BigInt: a string)
        assert manifest[10] == manifest[8]  # checkpoint_lsn == the segment's last_lsn
        assert await rows(engine, ROOT, "SELECT id FROM app.t") == [[1], [2]]


async def test_flush_table__rules(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        with pytest.raises(PermissionDenied):
            await sql(engine, ALICE, "STORAGE FLUSH TABLE app.t")
        with pytest.raises(InvalidOperation, match="STORAGE FLUSH TABLE is not supported for "
                           "STREAM tables"):
            await sql(engine, ROOT, "STORAGE FLUSH TABLE app.e")
        with pytest.raises(NotFound):
            await sql(engine, ROOT, "STORAGE FLUSH TABLE app.nope")
        await sql(engine, ROOT, "INSERT INTO app.t (id) VALUES (1)")
        first, second = await sql(engine, ROOT, "STORAGE FLUSH TABLE app.t;"
                                  "STORAGE FLUSH TABLE app.t")
        assert "a flush is already queued or running" in second["message"]
        assert job_id_of(first["message"]) in second["message"]
        await wait_jobs(engine)


async def test_flush_all__every_user_and_shared_table_with_writes(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP + "; CREATE NAMESPACE other;"
                  "CREATE TABLE other.x (id INT PRIMARY KEY)")
        assert await message(engine, ROOT, "STORAGE FLUSH ALL") == \
            "Storage flush skipped: no pending writes"
        await sql(engine, ROOT, "INSERT INTO app.t (id) VALUES (1); INSERT INTO other.x (id) "
                  "VALUES (1); INSERT INTO app.e (k) VALUES ('s')")
        await sql(engine, ALICE, "INSERT INTO app.u (id) VALUES (1)")
        text = await message(engine, SERVICE, "STORAGE FLUSH ALL IN app")
        assert text.startswith("Storage flush started for 2 table(s) in namespace 'app'. Job IDs:")
        await wait_jobs(engine)
        tables = sorted((r[1], r[2]) for r in await rows(engine, ROOT, "SHOW MANIFEST"))
        assert tables == [("t", None), ("u", "alice")]
        assert "1 table(s)" in await message(engine, SERVICE, "STORAGE FLUSH ALL")
        with pytest.raises(NotFound):
            await sql(engine, SERVICE, "STORAGE FLUSH ALL IN nope")
        await wait_jobs(engine)


# ---- compaction ------------------------------------------------------------------------------


async def test_compact_table__merges_segments(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP)
        for i in range(2):
            await sql(engine, ROOT, f"INSERT INTO app.t (id) VALUES ({i})")
            await sql(engine, ROOT, "STORAGE FLUSH TABLE app.t")
            await wait_jobs(engine)
        await sql(engine, ROOT, "DELETE FROM app.t WHERE id = 0")
        assert len(await rows(engine, ROOT, "SHOW MANIFEST")) == 2
        text = await message(engine, SERVICE, "STORAGE COMPACT TABLE app.t")
        assert text.startswith("Storage compaction started for table 'app.t'. Job ID: ")
        await wait_jobs(engine)
        assert job(engine, job_id_of(text)).status == "completed"
        assert len(await rows(engine, ROOT, "SHOW MANIFEST")) == 1
        assert await rows(engine, ROOT, "SELECT id FROM app.t") == [[1]]
        assert await message(engine, SERVICE, "STORAGE COMPACT TABLE app.t") == \
            "Storage compaction skipped: nothing to compact for table 'app.t'"
        with pytest.raises(InvalidOperation, match="STORAGE COMPACT TABLE is not supported"):
            await sql(engine, ROOT, "STORAGE COMPACT TABLE app.e")
        assert await message(engine, ROOT, "STORAGE COMPACT ALL") == \
            "Storage compaction skipped: nothing to compact"


# ---- jobs ------------------------------------------------------------------------------------


async def test_kill_job__queued_is_cancelled_and_never_runs(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP + "; INSERT INTO app.t (id) VALUES (1)")
        flush, kill = await sql(engine, ROOT, "STORAGE FLUSH TABLE app.t; KILL JOB 'flush-1'")
        assert job_id_of(flush["message"]) == "flush-1"
        assert kill["message"] == "Job killed: flush-1"
        await wait_jobs(engine)
        assert job(engine, "flush-1").status == "cancelled"
        assert await rows(engine, ROOT, "SHOW MANIFEST") == []
        with pytest.raises(InvalidOperation, match="already finished"):
            await sql(engine, ROOT, "KILL JOB 'flush-1'")
        with pytest.raises(NotFound, match="Job 'nope' not found"):
            await sql(engine, ROOT, "KILL JOB 'nope'")
        with pytest.raises(PermissionDenied):
            await sql(engine, SERVICE, "KILL JOB 'flush-1'")
        jobs = await rows(engine, ROOT, "SELECT job_id, status FROM system.jobs")
        assert jobs == [["flush-1", "cancelled"]]


async def test_drop_table__flush_waiting_for_the_lock_writes_nothing(tmp_path: Path) -> None:
    # The flush job starts, waits for the write lock DROP TABLE holds, then finds its
    # partition gone: no segment is written for the dropped table.
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, SETUP + "; INSERT INTO app.t (id) VALUES (1)")
        await sql(engine, ROOT, "STORAGE FLUSH TABLE app.t; DROP TABLE app.t")
        await wait_jobs(engine)
        record = job(engine, "flush-1")
        assert (record.status, record.message) == ("completed", "0 row(s)")
        assert not any((tmp_path / "tables" / "app").glob("t-*"))


async def test_show_manifest__admin_only_and_invalid_sql(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        with pytest.raises(PermissionDenied):
            await sql(engine, SERVICE, "SHOW MANIFEST")
        with pytest.raises(InvalidSql):
            await sql(engine, ROOT, "STORAGE FLUSH TABLES app.t")


class _UnlinkWatch(FileIO):
    """The real filesystem, plus a check on every unlink of a segment file: no chunk of any
    partition may still refer to it (a query prepared then would load a missing file)."""

    def __init__(self) -> None:
        self.engine = None
        self.violations: list[str] = []
        self.unlinked: list[str] = []

    def unlink(self, path: Path) -> None:
        if self.engine is not None and path.suffix != ".json":
            for part in self.engine.store.partitions.values():
                if any(chunk.segment == path.name for chunk in part.chunks.values()):
                    self.violations.append(str(path))
            self.unlinked.append(path.name)
        super().unlink(path)


async def test_compaction__superseded_segments_deleted_only_after_the_chunk_swap(
        tmp_path: Path) -> None:
    # Found by the soak (issue 9): a SELECT prepared between the orphan deletion and the
    # chunk swap read a deleted segment (500).
    io = _UnlinkWatch()
    async with open_engine(tmp_path, CONFIG, clock=ManualClock(), io=io) as engine:
        io.engine = engine
        await sql(engine, ROOT, SETUP)
        for i in range(3):
            await sql(engine, ROOT, f"INSERT INTO app.t (id) VALUES ({i})")
            await sql(engine, ROOT, "STORAGE FLUSH TABLE app.t")
            await wait_jobs(engine)
        await sql(engine, ROOT, "STORAGE COMPACT TABLE app.t")
        await wait_jobs(engine)
        assert len(await rows(engine, ROOT, "SHOW MANIFEST")) == 1
        assert len(io.unlinked) >= 3, io.unlinked  # the three superseded segments
        assert io.violations == []
        assert await rows(engine, ROOT, "SELECT id FROM app.t") == [[0], [1], [2]]
