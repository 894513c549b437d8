"""Bad input is refused with the right typed error and writes NOTHING (PROTOCOL §1.3).

Each case runs on a fresh engine holding a few rows in a SHARED, a USER and a STREAM table.
The test snapshots what a write could touch — the WAL's committed LSN, the catalog, and
every partition's row versions (tombstones included) — sends the bad statement, checks the
error class and message, and compares the snapshot again. Batches whose earlier statements
are good check that classify-time and param errors stop the whole request before anything
runs, and that an error inside a transaction leaves none of it behind.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from engine.errors import (
    AlreadyExists,
    BatchParseError,
    EmptySql,
    EngineError,
    InvalidInput,
    InvalidOperation,
    InvalidParameter,
    InvalidSql,
    InvalidValue,
    ParamsWithBatch,
    PermissionDenied,
    TableNotFound,
    TransactionError,
)
from engine.query import visible_rows
from engine.session import Session
from engine.types import VALUE_SIZE_MAX_BYTES
from tests.engine.harness import ALICE, CONFIG, ROOT, SERVICE, engine_at, sql
from wal import WalConfig

MIB = 1024 * 1024
# Small WAL segments: opening an engine preallocates one (64 MiB by default, ~0.2 s each).
# Values over VALUE_SIZE_MAX_BYTES are refused while coercing, before any event is built.
SMALL = dataclasses.replace(CONFIG, event_max_bytes=MIB, wal=WalConfig(
    segment_size_max_bytes=2 * MIB, record_size_max_bytes=MIB))
SQL_TEXT_MAX_BYTES = CONFIG.sql_text_max_bytes
PARAM_VALUE_MAX_BYTES = CONFIG.param_value_max_bytes
PARAMS_MAX = CONFIG.params_max

SETUP = [
    (ROOT, "CREATE NAMESPACE app; "
           "CREATE SHARED TABLE app.t (id INT PRIMARY KEY, name TEXT NOT NULL, n SMALLINT, "
           "price DECIMAL(6, 2), ok BOOLEAN, day DATE, u UUID, e EMBEDDING(2), d DOUBLE, "
           "body TEXT, raw BYTES, doc JSON); "
           "CREATE USER TABLE app.notes (id INT PRIMARY KEY, body TEXT); "
           "CREATE STREAM TABLE app.ev (kind TEXT) WITH (TTL_SECONDS = 600); "
           "INSERT INTO app.t (id, name) VALUES (1, 'one'), (2, 'two'); "
           "DELETE FROM app.t WHERE id = 2"),
    (ALICE, "INSERT INTO app.notes (id, body) VALUES (1, 'mine'); "
            "INSERT INTO app.ev (kind) VALUES ('open')"),
]


@dataclass(frozen=True)
class Bad:
    name: str
    sql: str
    error: type[EngineError]
    match: str
    params: list[Any] | None = None
    session: Session = ROOT
    xfail: str | None = None
    small_events: bool = False  # run with a 64 KiB event_max_bytes


# Text that JSON can carry but UTF-8 cannot encode (a lone UTF-16 surrogate): an HTTP client
# sending "\ud800" in its JSON body gets exactly this Python string.
LONE_SURROGATE = "\ud800"

CASES = [
    # ---- malformed SQL (classify time: nothing of the batch runs) ----
    Bad("misspelt keyword", "SELEC * FROM app.t", InvalidSql, "does not start a statement"),
    Bad("truncated insert", "INSERT INTO app.t (id, name) VALUES (3,", InvalidSql,
        "parse error"),
    Bad("good insert then garbage in one batch",
        "INSERT INTO app.t (id, name) VALUES (3, 'three'); SELEC x", InvalidSql,
        "does not start a statement"),
    Bad("good insert then unsupported statement",
        "INSERT INTO app.t (id, name) VALUES (3, 'three'); TRUNCATE app.t", InvalidSql,
        "Unsupported statement type"),
    Bad("empty request", " ;; -- nothing\n", EmptySql, "No SQL statements provided"),
    # ---- unterminated quotes (the batch cannot even be split) ----
    Bad("unterminated string", "INSERT INTO app.t (id, name) VALUES (3, 'three)",
        BatchParseError, "Unterminated string literal starting at line 1, column 41"),
    Bad("unterminated string after a good statement",
        "INSERT INTO app.t (id, name) VALUES (3, 'x');\nINSERT INTO app.t (id, name) "
        "VALUES (4, 'y)", BatchParseError, "line 2"),
    Bad("unterminated quoted identifier", 'INSERT INTO app.t (id, "name) VALUES (3, 1)',
        BatchParseError, "Unterminated quoted identifier"),
    Bad("unterminated block comment", "INSERT INTO app.t (id, name) VALUES (3, 'x') /* c",
        BatchParseError, "Unterminated block comment"),
    Bad("unterminated dollar quote", "INSERT INTO app.t (id, name) VALUES (3, $q$x)",
        BatchParseError, "Unterminated dollar-quoted string"),
    # ---- wrong types ----
    Bad("text into INT", "INSERT INTO app.t (id, name) VALUES ('three', 'x')", InvalidValue,
        "column 'id' (INT): expected an integer"),
    Bad("fraction into INT", "INSERT INTO app.t (id, name) VALUES (3.5, 'x')", InvalidValue,
        "expected an integer"),
    Bad("SMALLINT overflow", "INSERT INTO app.t (id, name, n) VALUES (3, 'x', 32768)",
        InvalidValue, "out of range for SMALLINT"),
    Bad("DECIMAL overflow", "INSERT INTO app.t (id, name, price) VALUES (3, 'x', 10000)",
        InvalidValue, "at most 4 digits before the point"),
    Bad("not a boolean", "INSERT INTO app.t (id, name, ok) VALUES (3, 'x', 'maybe')",
        InvalidValue, "expected a boolean"),
    Bad("not a date", "INSERT INTO app.t (id, name, day) VALUES (3, 'x', '2023-02-30')",
        InvalidValue, "expected a 'YYYY-MM-DD' date"),
    Bad("not a uuid", "INSERT INTO app.t (id, name, u) VALUES (3, 'x', 'nope')",
        InvalidValue, "expected a UUID"),
    Bad("embedding of the wrong size", "INSERT INTO app.t (id, name, e) VALUES (3, 'x', "
        "'[1, 2, 3]')", InvalidValue, "expected 2 numbers, got 3"),
    Bad("NaN into DOUBLE", "INSERT INTO app.t (id, name, d) VALUES (3, 'x', 'NaN')",
        InvalidValue, "column 'd'"),
    Bad("invalid JSON", "INSERT INTO app.t (id, name, doc) VALUES (3, 'x', '{oops')",
        InvalidValue, "invalid JSON text"),
    Bad("NULL into NOT NULL", "INSERT INTO app.t (id, name) VALUES (3, NULL)", InvalidValue,
        "Column 'name' cannot be null"),
    Bad("NULL primary key", "INSERT INTO app.t (id, name) VALUES (NULL, 'x')", InvalidValue,
        "Column 'id' cannot be null"),
    Bad("update to a wrong type", "UPDATE app.t SET n = 'many' WHERE id = 1", InvalidValue,
        "column 'n' (SMALLINT)"),
    Bad("update NOT NULL to NULL", "UPDATE app.t SET name = NULL WHERE id = 1", InvalidValue,
        "cannot be null"),
    Bad("second row of a multi-row insert is bad",
        "INSERT INTO app.t (id, name, n) VALUES (3, 'ok', 1), (4, 'bad', 99999)",
        InvalidValue, "out of range"),
    # ---- oversized values ----
    Bad("text one byte over the value limit",
        f"INSERT INTO app.t (id, name, body) VALUES (3, 'x', repeat('x', "
        f"{VALUE_SIZE_MAX_BYTES + 1}))", InvalidValue,
        f"value of {VALUE_SIZE_MAX_BYTES + 1} bytes exceeds the limit of "
        f"{VALUE_SIZE_MAX_BYTES} bytes"),
    Bad("text under the limit in characters but over it in UTF-8 bytes",
        f"INSERT INTO app.t (id, name, body) VALUES (3, 'x', repeat('é', "
        f"{VALUE_SIZE_MAX_BYTES // 2 + 1}))", InvalidValue, "exceeds the limit"),
    Bad("bytes over the value limit", f"INSERT INTO app.t (id, name, raw) VALUES (3, 'x', "
        f"repeat('b', {VALUE_SIZE_MAX_BYTES + 1}))", InvalidValue, "exceeds the limit"),
    Bad("update to an oversized value", f"UPDATE app.t SET body = repeat('y', "
        f"{VALUE_SIZE_MAX_BYTES + 1}) WHERE id = 1", InvalidValue, "exceeds the limit"),
    Bad("a transaction bigger than one WAL event",
        "INSERT INTO app.t (id, name, body) SELECT v, 'x', repeat('z', 30000) FROM "
        "(SELECT unnest(range(10, 14)) AS v)", InvalidOperation, "event_max_bytes",
        small_events=True),
    # ---- SQL text size ----
    Bad("SQL one byte over 1 MiB", "SELECT '" + "x" * (SQL_TEXT_MAX_BYTES - 8) + "'",
        InvalidSql, f"SQL query too long: {SQL_TEXT_MAX_BYTES + 1} bytes"),
    Bad("SQL over 1 MiB in UTF-8 bytes, not characters",
        "INSERT INTO app.t (id, name) VALUES (3, '" + "é" * (SQL_TEXT_MAX_BYTES // 2) + "')",
        InvalidSql, "SQL query too long"),
    Bad("SQL text with a lone surrogate", f"INSERT INTO app.t (id, name) VALUES (3, "
        f"'{LONE_SURROGATE}')", InvalidSql, ""),
    # ---- params ----
    Bad("one param too many", "INSERT INTO app.t (id, name) VALUES ($1, $2)",
        InvalidParameter, f"Too many parameters: {PARAMS_MAX + 1}",
        params=[3, "x"] + [0] * (PARAMS_MAX - 1)),
    Bad("an array param", "INSERT INTO app.t (id, name) VALUES ($1, $2)", InvalidParameter,
        "Parameter $2 invalid", params=[3, ["x"]]),
    Bad("an object param", "INSERT INTO app.t (id, name) VALUES ($1, $2)", InvalidParameter,
        "Parameter $1 invalid", params=[{"id": 3}, "x"]),
    Bad("a bytes param", "INSERT INTO app.t (id, name, raw) VALUES (3, 'x', $1)",
        InvalidParameter, "Parameter $1 invalid", params=[b"raw"]),
    Bad("a NaN param", "INSERT INTO app.t (id, name, d) VALUES (3, 'x', $1)",
        InvalidParameter, "not a finite number", params=[float("nan")]),
    Bad("an infinite param", "INSERT INTO app.t (id, name, d) VALUES (3, 'x', $1)",
        InvalidParameter, "not a finite number", params=[float("inf")]),
    Bad("a param one byte over 512 KiB", "INSERT INTO app.t (id, name) VALUES (3, $1)",
        InvalidParameter, f"larger than {PARAM_VALUE_MAX_BYTES} bytes",
        params=["x" * (PARAM_VALUE_MAX_BYTES + 1)]),
    Bad("a param over 512 KiB in UTF-8 bytes", "INSERT INTO app.t (id, name) VALUES (3, $1)",
        InvalidParameter, "Parameter $1 invalid", params=["é" * (PARAM_VALUE_MAX_BYTES // 2 + 1)]),
    Bad("a param with a lone surrogate", "INSERT INTO app.t (id, name) VALUES (3, $1)",
        InvalidParameter, "Parameter $1 invalid", params=["a" + LONE_SURROGATE]),
    Bad("an integer param beyond 64 bits", "SELECT $1 AS x", InvalidParameter,
        "Parameter $1 invalid", params=[2**70]),
    Bad("a missing param", "INSERT INTO app.t (id, name) VALUES ($1, $2)", InvalidParameter,
        "Parameter $2 is missing (1 given)", params=[3]),
    Bad("a param of the wrong type for its column",
        "INSERT INTO app.t (id, name) VALUES ($1, $2)", InvalidValue, "expected an integer",
        params=["three", "x"]),
    Bad("params with two statements",
        "INSERT INTO app.t (id, name) VALUES ($1, 'x'); INSERT INTO app.t (id, name) "
        "VALUES (4, 'y')", ParamsWithBatch, "multiple statements", params=[3]),
    # ---- unknown tables and columns ----
    Bad("insert into an unknown table", "INSERT INTO app.nope (id) VALUES (1)", TableNotFound,
        "Table 'app.nope' does not exist"),
    Bad("insert into an unknown namespace", "INSERT INTO nowhere.t (id) VALUES (1)",
        TableNotFound, "Table 'nowhere.t' does not exist"),
    Bad("update an unknown table", "UPDATE app.nope SET a = 1 WHERE id = 1", TableNotFound,
        "does not exist"),
    Bad("delete from an unknown table", "DELETE FROM app.nope WHERE id = 1", TableNotFound,
        "does not exist"),
    Bad("insert into an unknown column", "INSERT INTO app.t (id, name, nope) VALUES "
        "(3, 'x', 1)", InvalidOperation, "Column 'nope' does not exist"),
    Bad("update an unknown column", "UPDATE app.t SET nope = 1 WHERE id = 1",
        InvalidOperation, "Column 'nope' does not exist"),
    Bad("update filtering on an unknown column", "UPDATE app.t SET name = 'z' WHERE nope = 1",
        InvalidSql, "No field named nope"),
    Bad("delete filtering on an unknown column", "DELETE FROM app.t WHERE nope = 1",
        InvalidSql, "No field named nope"),
    Bad("insert select from an unknown table", "INSERT INTO app.t (id, name) SELECT id, name "
        "FROM app.nope", TableNotFound, "does not exist"),
    # ---- UPDATE / DELETE without WHERE ----
    Bad("update without WHERE", "UPDATE app.t SET name = 'all'", InvalidOperation,
        "UPDATE requires a WHERE clause"),
    Bad("delete without WHERE", "DELETE FROM app.t", InvalidOperation,
        "DELETE requires a WHERE clause"),
    Bad("user deletes own USER table without WHERE", "DELETE FROM app.notes",
        InvalidOperation, "DELETE requires a WHERE clause", session=ALICE),
    Bad("delete from a stream without WHERE", "DELETE FROM app.ev", InvalidOperation,
        "DELETE requires a WHERE clause", session=ALICE),
    Bad("update of a stream", "UPDATE app.ev SET kind = 'x' WHERE kind = 'open'",
        InvalidOperation, "not supported for STREAM tables", session=ALICE),
    Bad("update of the primary key", "UPDATE app.t SET id = 9 WHERE id = 1", InvalidOperation,
        "cannot modify primary key column 'id'"),
    # ---- writes to system tables ----
    Bad("insert into system.users", "INSERT INTO system.users (user_id, role) VALUES "
        "('mallory', 'system')", PermissionDenied, "System tables are read-only"),
    Bad("update system.users", "UPDATE system.users SET role = 'user' WHERE user_id = 'root'",
        PermissionDenied, "System tables are read-only"),
    Bad("delete from system.namespaces", "DELETE FROM system.namespaces WHERE "
        "namespace_id = 'app'", PermissionDenied, "System tables are read-only"),
    Bad("alter a system table", "ALTER TABLE system.users ADD COLUMN x INT",
        PermissionDenied, "System tables cannot be altered"),
    Bad("drop a system table", "DROP TABLE system.users", PermissionDenied,
        "System tables cannot be dropped"),
    Bad("create a table in system", "CREATE TABLE system.mine (id INT PRIMARY KEY)",
        InvalidOperation, "cannot be created in the 'system' namespace"),
    # ---- rules that refuse a write ----
    Bad("duplicate primary key", "INSERT INTO app.t (id, name) VALUES (3, 'x'), (1, 'dup')",
        AlreadyExists, "Primary key violation: value '1' already exists in column 'id'"),
    Bad("a plain user writes a SHARED table", "INSERT INTO app.t (id, name) VALUES (3, 'x')",
        PermissionDenied, "Write access denied", session=ALICE),
    Bad("a plain user impersonates another", "EXECUTE AS USER 'bob' (INSERT INTO app.notes "
        "(id, body) VALUES (2, 'x'))", PermissionDenied, "EXECUTE AS USER is not authorized",
        session=ALICE),
    Bad("EXECUTE AS around two statements", "EXECUTE AS USER 'alice' (INSERT INTO app.notes "
        "(id, body) VALUES (2, 'x'); DELETE FROM app.notes WHERE id = 1)", InvalidInput,
        "single SQL statement", session=SERVICE),
    Bad("role-gated statement after a good one", "INSERT INTO app.notes (id, body) VALUES "
        "(2, 'x'); CREATE NAMESPACE other", PermissionDenied, "Admin privileges",
        session=ALICE),
    # ---- transactions and DDL ----
    Bad("an error inside a transaction", "BEGIN; INSERT INTO app.t (id, name) VALUES (3, 'x'); "
        "UPDATE app.t SET name = 'y' WHERE id = 1; DELETE FROM app.t WHERE id = 1; "
        "INSERT INTO app.t (id, name) VALUES (3, 'dup'); COMMIT", AlreadyExists,
        "Primary key violation: value '3'"),
    Bad("a transaction left open", "BEGIN; INSERT INTO app.t (id, name) VALUES (3, 'x'); "
        "DELETE FROM app.t WHERE id = 1", TransactionError, "open explicit transaction"),
    Bad("DDL inside a transaction", "BEGIN; INSERT INTO app.t (id, name) VALUES (3, 'x'); "
        "CREATE SHARED TABLE app.t2 (id INT PRIMARY KEY); COMMIT", InvalidOperation,
        "not allowed inside a transaction"),
    Bad("duplicate table", "CREATE SHARED TABLE app.t (id INT PRIMARY KEY)", AlreadyExists,
        "Table app.t already exists"),
    Bad("unsupported column type", "CREATE SHARED TABLE app.t3 (id INT PRIMARY KEY, "
        "x TINYINT)", InvalidSql, "Unsupported data type: TINYINT"),
    Bad("NOT NULL column added to a table with rows", "ALTER TABLE app.t ADD COLUMN z TEXT "
        "NOT NULL", InvalidOperation, "without a DEFAULT"),
    Bad("column type change that the rows cannot take", "ALTER TABLE app.t MODIFY COLUMN "
        "name INT", InvalidOperation, "do not convert"),
]


def _param(case: Bad) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


def snapshot(engine: Engine) -> tuple[int, str, dict]:
    """Everything a write could change: the log's end, the catalog, and every partition's
    row versions (tombstones included; empty partitions are in-memory bookkeeping)."""
    rows = {}
    now_ms = engine.clock.now_ms()
    for (table_id, user_id) in sorted(engine.store.partitions, key=str):
        table = engine.catalog.tables.get(table_id)
        if table is None:
            continue
        data = visible_rows(table, engine.store, user_id or "", now_ms, show_deleted=True)
        if data.num_rows:
            rows[(table.qualified_name, user_id)] = sorted(data.to_pylist(),
                                                           key=lambda row: row["_seq"])
    catalog = json.dumps(engine.catalog.to_json(), sort_keys=True, default=str)
    return int(engine.wal.committed_lsn), catalog, rows


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
async def test_bad_input__typed_error__nothing_written(tmp_path: Path, case: Bad) -> None:
    # Snapshot, send the bad request, expect its error class and text, snapshot again.
    config = dataclasses.replace(SMALL, event_max_bytes=65536) if case.small_events else SMALL
    async with engine_at(tmp_path, config) as engine:
        for session, text in SETUP:
            await sql(engine, session, text)
        before = snapshot(engine)
        with pytest.raises(case.error) as caught:
            await engine.execute(case.session, case.sql, case.params)
        assert type(caught.value) is case.error, repr(caught.value)
        assert case.match in str(caught.value)
        after = snapshot(engine)
        assert after[0] == before[0], "the WAL grew"
        assert after[1] == before[1], "the catalog changed"
        assert after[2] == before[2], "rows changed"


async def test_sql_text__exactly_1_mib__accepted(tmp_path: Path) -> None:
    # The limit is inclusive: 1 MiB of SQL runs, one byte more is refused (a case above).
    async with engine_at(tmp_path, SMALL) as engine:
        text = "SELECT length('" + "x" * (SQL_TEXT_MAX_BYTES - 22) + "') AS n"
        assert len(text.encode()) == SQL_TEXT_MAX_BYTES
        (result,) = await sql(engine, ROOT, text)
        assert result["rows"] == [[SQL_TEXT_MAX_BYTES - 22]]


@pytest.mark.parametrize("text", [
    "INSERT INTO system.users (user_id) VALUES ('mallory')",
    "UPDATE system.users SET role = 'user' WHERE user_id = 'root'",
    "DELETE FROM system.namespaces WHERE namespace_id = 'app'",
])
async def test_bad_input__system_table_write__refused_and_nothing_written(
        tmp_path: Path, text: str) -> None:
    # Whatever error class a system-table write gets, it
    # changes nothing.
    async with engine_at(tmp_path, SMALL) as engine:
        for session, setup in SETUP:
            await sql(engine, session, setup)
        before = snapshot(engine)
        with pytest.raises(EngineError):
            await engine.execute(ROOT, text)
        assert snapshot(engine) == before


async def test_bad_input__every_case_of_the_list_then_restart__state_unchanged(
        tmp_path: Path) -> None:
    # All bad requests against one engine in a row, then a restart: replay finds exactly the
    # setup's rows (a refused request left nothing in the log either).
    async with engine_at(tmp_path, SMALL) as engine:
        for session, setup in SETUP:
            await sql(engine, session, setup)
        before = snapshot(engine)
        for case in CASES:
            if case.small_events:
                continue
            with pytest.raises(EngineError):
                await engine.execute(case.session, case.sql, case.params)
        assert snapshot(engine) == before
    async with engine_at(tmp_path, SMALL) as engine:
        after = snapshot(engine)
    # applied_lsn is the checkpoint's watermark: the clean close records the log's end.
    assert _without_watermark(after[1]) == _without_watermark(before[1])
    assert after[2] == before[2]


def _without_watermark(catalog: str) -> dict:
    data = json.loads(catalog)
    data.pop("applied_lsn")
    return data
