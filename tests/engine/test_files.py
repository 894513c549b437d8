"""FILE values in the engine (engine/files.py, engine/sql/file_upload.py): the stored-name
rules of PROTOCOL §5.1, placeholder scanning and substitution, the statement checks of an
upload, folder rotation, and the sweep (orphans deleted; referenced and in-flight files
kept; tombstones do not hold a file).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
from pathlib import Path

import pytest
import trio

from engine import (
    Engine,
    InvalidInput,
    InvalidOperation,
    ManualClock,
    PermissionDenied,
    TableNotFound,
    open_engine,
)
from engine.files import (
    SANITIZED_NAME_MAX_CHARS,
    StagedFile,
    extension,
    sanitized_stem,
    stored_name,
    sweep_due,
    sweep_files,
)
from engine.sql.file_upload import (
    has_file_placeholders,
    placeholder_spans,
    substitute_placeholders,
    upload_target,
)
from tests.engine.harness import ALICE, CONFIG, ROOT, engine_at, rows, sql
from wal import FileIO


@pytest.mark.parametrize("original, expected", [
    ("Q3 Contract.pdf", "7-q3-contract.pdf"),
    ("notes_v2.TXT", "7-notes-v2.txt"),
    ("  --Hello__World--  .md", "7-hello-world.md"),
    ("résumé.docx", "7-rsum.docx"),
    ("???.png", "7.png"),
    ("archive.tar.gz", "7-archivetar.gz"),
    ("noext", "7-noext.bin"),
    (".bashrc", "7-bashrc.bin"),
    ("x.verylongext", "7-x.bin"),
    ("x.p-f", "7-x.bin"),
    ("a" * 80 + ".txt", "7-" + "a" * SANITIZED_NAME_MAX_CHARS + ".txt"),
    ("a" * 49 + " b.txt", "7-" + "a" * 49 + ".txt"),  # a dash left at the cut is trimmed
])
def test_files__stored_name__section_5_1_rules(original: str, expected: str) -> None:
    assert stored_name("7", original) == expected


def test_files__name_parts() -> None:
    assert (sanitized_stem("A B"), extension("A B")) == ("a-b", "bin")
    assert extension("file.JPEG") == "jpeg"


def test_placeholders__found_outside_strings_and_comments() -> None:
    sql = ("INSERT INTO t VALUES (FILE(\"a\"), file ( 'b.c-d' ), 'FILE(\"x\")', "
           "/* FILE('y') */ FILE(\"a\")) -- FILE('z')")
    assert [name for name, _, _ in placeholder_spans(sql)] == ["a", "b.c-d", "a"]
    assert has_file_placeholders(sql)
    assert not has_file_placeholders("SELECT 'FILE(\"x\")' -- FILE('y')")
    assert not has_file_placeholders("SELECT profile(1)")
    assert not has_file_placeholders("SELECT 'unterminated FILE('x'")
    out = substitute_placeholders(sql, {"a": '{"k":"it\'s"}', "b.c-d": "{}"})
    assert out.startswith("INSERT INTO t VALUES ('{\"k\":\"it''s\"}', '{}', 'FILE(\"x\")'")
    assert out.endswith("'{\"k\":\"it''s\"}') -- FILE('z')")


SETUP = [
    "CREATE NAMESPACE app",
    "CREATE USER TABLE app.docs (id BIGINT PRIMARY KEY, f FILE)",
    "CREATE SHARED TABLE app.board (id BIGINT PRIMARY KEY, f FILE)",
    "CREATE STREAM TABLE app.ev (id BIGINT, f FILE) WITH (TTL_SECONDS = 60)",
]


async def test_upload_target__statement_rules(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for statement in SETUP:
            await sql(engine, ROOT, statement)
        target = upload_target(engine, ROOT, "INSERT INTO app.docs (id, f) VALUES "
                                             "(1, FILE(\"a\")), (2, FILE('b')), (3, FILE(\"a\"))")
        assert (target.table.name, target.user_id, target.placeholders) == \
            ("docs", "root", ("a", "b"))
        target = upload_target(engine, ROOT, "EXECUTE AS USER 'alice' (UPDATE app.docs "
                                             "SET f = FILE(\"a\") WHERE id = 1)")
        assert target.user_id == "alice"
        assert upload_target(engine, ROOT, "INSERT INTO app.board (id, f) VALUES "
                                           "(1, FILE('a'))").user_id is None
        refusals = [
            ("INSERT INTO app.docs VALUES (1, FILE('a')); SELECT 1", InvalidInput),
            ("SELECT FILE('a')", InvalidInput),
            ("DELETE FROM app.docs WHERE f = FILE('a')", InvalidInput),
            ("INSERT INTO app.ev (id, f) VALUES (1, FILE('a'))", InvalidInput),
            ("INSERT INTO system.users (user_id) VALUES (FILE('a'))", InvalidInput),
            ("INSERT INTO app.nope (id) VALUES (FILE('a'))", TableNotFound),
            ("EXECUTE AS USER 'alice' (INSERT INTO app.board (id, f) VALUES (1, FILE('a')))",
             InvalidOperation),
        ]
        for text, error in refusals:
            with pytest.raises(error):
                upload_target(engine, ROOT, text)
        with pytest.raises(PermissionDenied):
            upload_target(engine, ALICE, "INSERT INTO app.board (id, f) VALUES (1, FILE('a'))")


def _staged(tmp_path: Path, name: str, data: bytes) -> StagedFile:
    path = tmp_path / f"staged-{name}"
    path.write_bytes(data)
    return StagedFile(path, name, len(data), "text/plain", hashlib.sha256(data).hexdigest())


async def test_files__place_rotate_and_sweep(tmp_path: Path) -> None:
    # Two files per folder; an orphan (placed, never committed) and a file whose row was
    # deleted and compacted are swept; a referenced file and an in-flight one stay.
    config = dataclasses.replace(CONFIG, files_per_folder_max=2)
    async with engine_at(tmp_path / "data", config) as engine:
        for statement in SETUP[:2]:
            await sql(engine, ROOT, statement)
        table = engine.catalog.table("app", "docs")
        placed = [await engine.files.place(engine, table, "root",
                                           _staged(tmp_path, f"{n}.txt", b"%d" % n))
                  for n in range(4)]
        assert [p.ref["sub"] for p in placed] == ["f0001", "f0001", "f0002", "f0002"]
        assert all(p.path.read_bytes() == b"%d" % n for n, p in enumerate(placed))
        for n in (0, 1):
            await sql(engine, ROOT, "INSERT INTO app.docs (id, f) VALUES ($1, $2)",
                      [n, placed[n].ref_json])
        await engine.files.finish(placed[:2], referenced=True)
        engine.files.forget([placed[2]])  # outcome unknown: the sweep decides
        assert await sweep_files(engine) == 1  # placed[2]; placed[3] is still in flight
        assert [p.path.exists() for p in placed] == [True, True, False, True]
        await engine.files.finish([placed[3]], referenced=False)
        assert not placed[3].path.exists()
        await sql(engine, ROOT, "DELETE FROM app.docs WHERE id = 0")
        assert await sweep_files(engine) == 0  # the superseded version still holds it
        assert not sweep_due(engine)  # nothing changed since: the periodic job skips
        await sql(engine, ROOT, "STORAGE COMPACT TABLE app.docs")
        await _wait_for_jobs(engine)
        assert sweep_due(engine)  # compaction replaced the chunks
        assert await sweep_files(engine) == 1
        assert [p.path.exists() for p in placed[:2]] == [False, True]
        assert await rows(engine, ROOT, "SELECT id FROM app.docs") == [["1"]]


async def _wait_for_jobs(engine: Engine) -> None:
    """Polls the job board (jobs have no completion event)."""
    with trio.fail_after(10):
        for _ in range(1001):
            if not any(r.status in ("queued", "running") for r in engine.jobs.records):
                return
            await trio.sleep(0.01)


class _CrossDeviceIO(FileIO):
    """Renames out of the staging directory fail as across filesystems (EXDEV)."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging

    def rename(self, src: Path, dst: Path) -> None:
        if src.parent == self.staging:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        super().rename(src, dst)


async def test_files__staging_on_another_filesystem__copied_then_renamed(
        tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    config = dataclasses.replace(CONFIG, file_staging_dir=str(staging))
    async with open_engine(tmp_path / "data", config, clock=ManualClock(),
                           io=_CrossDeviceIO(staging)) as engine:
        for statement in SETUP[:2]:
            await sql(engine, ROOT, statement)
        table = engine.catalog.table("app", "docs")
        placed = await engine.files.place(engine, table, "root",
                                          _staged(staging, "x.txt", b"payload"))
        assert placed.path.read_bytes() == b"payload"
        assert list(staging.iterdir()) == []  # the source is gone, no temp file is left
        assert [p.name for p in placed.path.parent.iterdir()] == [placed.path.name]
        await engine.files.finish([placed], referenced=False)
        assert not placed.path.exists()
