"""SQL fuzzing over HTTP (issue 9): statements from a small Hypothesis grammar and mutated
statements of the golden fixtures (tests/fixtures/sql/*.sql) go to ``POST /v1/api/sql`` as
alice (role user) and as the admin (role dba). Every answer is a success or a 4xx — never a
500 — and after a refused single statement (a multi-row INSERT included) nothing of it is
visible: alice's ``app.todos`` count, the
``app.board`` count and the sizes of ``system.tables``, ``system.namespaces`` and
``system.users`` are the same before and after.

The admin only runs texts without a destructive keyword (DROP, ALTER, …), so the world the
checks look at stays in place; alice runs everything (her role refuses what it must).

How it works: tests/api/fuzz_support.py (one server per test, the property runs in a worker
thread with blocking HTTP calls, seeded from ``--seed``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, seed
from hypothesis import strategies as st

from engine import EngineError
from engine.sql.split import split_statements
from tests.api.fuzz_support import (
    Watched,
    World,
    call,
    examples,
    fuzz_settings,
    fuzz_world,
    post_json,
    run_property,
    sql_rows,
)

EXAMPLES = 40  # per test; x10 with --run-slow (fuzz_support.examples)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sql"
DESTRUCTIVE = re.compile(r"\b(DROP|ALTER|DELETE|UPDATE|TRUNCATE|KILL|FLUSH|COMPACT|CLEAR|"
                         r"RESTORE|BACKUP|EXECUTE|STORAGE|CONSUME|ACK)\b", re.IGNORECASE)
SNAPSHOT_SQL = ("SELECT COUNT(*) FROM app.board; SELECT COUNT(*) FROM system.tables; "
                "SELECT COUNT(*) FROM system.namespaces; SELECT COUNT(*) FROM system.users")


def golden_statements() -> list[str]:
    """Every statement of the golden fixtures (classify.sql has another format)."""
    statements: list[str] = []
    for path in sorted(FIXTURES.glob("*.sql")):
        if path.name == "classify.sql":
            continue
        for block in path.read_text().split("\n\n"):
            lines = []
            for line in block.splitlines():
                if line.startswith("=>"):
                    break
                if not line.startswith(("#", "-- ")):
                    lines.append(line)
            text = "\n".join(lines).strip()
            if not text:
                continue
            try:
                statements += [s for s in split_statements(text) if s.strip()]
            except EngineError:  # a fixture that shows a batch the splitter refuses
                statements.append(text)
    return statements


GOLDEN = golden_statements()
NOISE = ["'", '"', "(", ")", ";", "--", "/*", "*/", "$1", "$0", "$99999999999", "\x00",
         "NULL", "SELECT", ",", "\\", "é", "\u202e", "9" * 40, "*", " FROM ", " JOIN ",
         "''", "E'\\x", "::", "[", "]", "{", "}", "`", "\t", "\n", " UNION SELECT ",
         " WHERE ", "(SELECT 1)", "1e400", "-", "%", "?", "@@", "system.users"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(GOLDEN))
    for _ in range(draw(st.integers(1, 3))):
        size = len(text)
        at = draw(st.integers(0, size))
        end = draw(st.integers(at, min(size, at + 12)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "truncate", "swap"]))
        if op == "delete":
            text = text[:at] + text[end:]
        elif op == "insert":
            text = text[:at] + draw(st.sampled_from(NOISE)) + text[at:]
        elif op == "duplicate":
            text = text[:end] + text[at:end] + text[end:]
        elif op == "truncate":
            text = text[:at]
        else:
            words = text.split(" ")
            i, j = draw(st.integers(0, len(words) - 1)), draw(st.integers(0, len(words) - 1))
            words[i], words[j] = words[j], words[i]
            text = " ".join(words)
    return text


# A small SQL grammar over the world's tables, with hostile literals.
literals = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=False).map(repr),
    st.text(max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(["NULL", "TRUE", "FALSE", "'1e999'", "1e999", "-0", "$1", "$2",
                     "NOW()", "CAST('x' AS BIGINT)", "1/0", "'\\'", "X'zz'"]))
tables = st.sampled_from(["app.todos", "app.board", "app.vault", "system.users",
                          "system.tables", "app.nope", "todos", "system.live"])
columns = st.sampled_from(["id", "title", "done", "note", "_seq", "_deleted", "*", "nope",
                           "COUNT(*)", "user_id", "password_hash"])
expressions = st.recursive(
    st.one_of(literals, columns),
    lambda sub: st.tuples(sub, st.sampled_from(["=", "<", "+", "||", "AND", "OR", "LIKE",
                                                "IS", "IN"]), sub)
    .map(lambda t: f"({t[0]} {t[1]} {t[2]})"), max_leaves=4)


@st.composite
def grammar_sql(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["select", "insert", "update", "delete", "batch"]))
    table = draw(tables)
    if kind == "select":
        return (f"SELECT {draw(columns)}, {draw(expressions)} FROM {table} "
                f"WHERE {draw(expressions)} LIMIT {draw(literals)}")
    if kind == "insert":  # several rows, one of them possibly bad: all or nothing
        rows = draw(st.lists(st.lists(literals, min_size=1, max_size=4), min_size=1,
                             max_size=3))
        values = ", ".join("(" + ", ".join(row) + ")" for row in rows)
        return f"INSERT INTO {table} (id, title, done) VALUES {values}"
    if kind == "update":
        return f"UPDATE {table} SET {draw(columns)} = {draw(expressions)} WHERE {draw(expressions)}"
    if kind == "delete":
        return f"DELETE FROM {table} WHERE {draw(expressions)}"
    # A batch whose first statement succeeds alone: if the second one fails while it
    # runs, the first stays applied (PROTOCOL §1.3: no implicit transaction).
    return (f"INSERT INTO app.todos (id, title) VALUES ({draw(st.integers(0, 99))}, 'b'); "
            f"{draw(grammar_sql())}")


def _snapshot(world: World) -> tuple[int, ...]:
    reply = post_json(world.server, "/v1/api/sql", {"sql": SNAPSHOT_SQL}, world.users.admin)
    assert reply.status == 200, reply.body
    counts = [int(r["rows"][0][0]) for r in reply.json()["results"]]
    [[todos]] = sql_rows(world.server, world.users.alice, "SELECT COUNT(*) FROM app.todos")
    return (int(todos), *counts)


def _run(world: World, state: Watched, text: str, token: str, params: list) -> None:
    reply = post_json(world.server, "/v1/api/sql", {"sql": text, "params": params}, token)
    assert reply.status < 500, (text, reply.status, reply.body[:400])
    assert reply.json()["status"] == ("success" if reply.status == 200 else "error")
    state.after(reply.status != 200 and _statement_count(text) == 1, text)


def _statement_count(text: str) -> int:
    """How many statements the server splits ``text`` into (1 if it cannot split it).
    Only a single statement is all-or-nothing: in a batch, statements that ran before the
    failing one stay applied (PROTOCOL §1.3 "Batch execution semantics")."""
    try:
        return len([s for s in split_statements(text) if s.strip()]) or 1
    except EngineError:
        return 1


def _fuzz(world: World, base_seed: int, statements: st.SearchStrategy[str], count: int):
    state = Watched(lambda: _snapshot(world))

    @seed(base_seed)
    @fuzz_settings(count)
    @given(text=statements, as_admin=st.booleans(),
           params=st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()),
                           max_size=2))
    def property_(text: str, as_admin: bool, params: list) -> None:
        admin = as_admin and not DESTRUCTIVE.search(text)
        _run(world, state, text, world.users.admin if admin else world.users.alice,
             params)
    return property_


async def test_fuzz_sql__mutated_golden__4xx_and_no_trace(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    assert len(GOLDEN) > 500  # the fixtures were found and split
    async with fuzz_world(tmp_path) as world:
        await run_property(_fuzz(world, base_seed, mutated(), examples(request, EXAMPLES)),
                           base_seed)
        assert call(world.server, "GET", "/health").status == 200


async def test_fuzz_sql__grammar__4xx_and_no_trace(
        tmp_path: Path, base_seed: int, request: pytest.FixtureRequest) -> None:
    async with fuzz_world(tmp_path) as world:
        await run_property(_fuzz(world, base_seed, grammar_sql(),
                                 examples(request, EXAMPLES)), base_seed)
