"""The statement classifier (``engine/sql/classify.py``): golden cases in
``tests/fixtures/sql/classify.sql`` for every statement form and error message, plus the
properties a golden line cannot show (secrets kept out of reprs and errors, error locations,
the table's longest-prefix rule, value types).

Regenerate the golden file on purpose only:
``SLUICE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/engine/sql/test_classify.py -k regenerate``
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from engine.errors import EngineError, InvalidSql
from engine.sql import statements
from engine.sql.classify import STATEMENT_CACHE, STATEMENT_PARSERS, classify
from engine.sql.lexer import LexError, tokenize
from engine.sql.parse_query import parse_sql, rewrite_context_functions
from engine.sql.statement_cache import StatementCache
from engine.sql.statements import (
    AlterStorage,
    AlterUser,
    ColumnDefault,
    CreateStorage,
    CreateTable,
    CreateUser,
    Explain,
    Insert,
    Query,
    Statement,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sql" / "classify.sql"
REGEN_ENV = "SLUICE_REGEN_GOLDEN"


@dataclass(frozen=True)
class Case:
    title: str
    sql: str
    expected: str


def _blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.split("\n\n") if block.strip()]


def load_cases(path: Path = FIXTURE) -> list[Case]:
    """Each block: ``# title: ...``, input lines, then the expected line (header blocks of
    comments only are skipped)."""
    cases = []
    for lines in _blocks(path.read_text()):
        body = [line for line in lines if not line.startswith("#")]
        if not body:
            continue
        titles = [line.removeprefix("# title:").strip() for line in lines
                  if line.startswith("# title:")]
        assert len(titles) == 1, f"block without exactly one title: {lines}"
        assert len(body) >= 2, f"block {titles[0]!r} needs input and expected lines"
        cases.append(Case(titles[0], "\n".join(body[:-1]), body[-1]))
    return cases


def render(sql: str) -> str:
    """The golden form of classifying ``sql``: a repr or ``ERROR <Class>: <message>``."""
    try:
        return repr(classify(sql))
    except EngineError as exc:
        return f"ERROR {type(exc).__name__}: {exc}"


CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.title for case in CASES])
def test_classify__golden(case: Case) -> None:
    # Each fixture block's input must classify to exactly its expected line.
    assert render(case.sql) == case.expected


def test_classify__golden__titles_are_unique() -> None:
    titles = [case.title for case in CASES]
    assert len(titles) == len(set(titles))


@pytest.mark.skipif(os.environ.get(REGEN_ENV) != "1", reason=f"set {REGEN_ENV}=1 to regenerate")
def test_classify__golden__regenerate() -> None:
    # Rewrites every block's expected line with today's output; review the diff.
    blocks = []
    for lines in _blocks(FIXTURE.read_text()):
        body = [line for line in lines if not line.startswith("#")]
        if body:
            sql = "\n".join(body[:-1])
            lines = [*lines[:-1], render(sql)]
        blocks.append("\n".join(lines))
    FIXTURE.write_text("\n\n".join(blocks) + "\n")


def test_classify__golden__covers_every_statement_kind() -> None:
    # Every Statement subclass must appear as the result of at least one golden case.
    kinds = {cls.__name__ for cls in vars(statements).values()
             if isinstance(cls, type) and issubclass(cls, Statement) and cls is not Statement}
    produced = {case.expected.split("(", 1)[0] for case in CASES}
    assert kinds - produced == set()


def test_classify__golden__covers_every_table_entry() -> None:
    # Every leading-keyword entry of the classifier table is exercised by some case.
    firsts = {tuple(word.upper() for word in case.sql.replace("(", " ( ").split()[:4])
              for case in CASES}
    for words in STATEMENT_PARSERS:
        assert any(first[:len(words)] == words for first in firsts), words


# --- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "CREATE USER alice WITH PASSWORD 'hunter2' ROLE dba",
    "ALTER USER alice SET PASSWORD 'hunter2'",
    "CREATE STORAGE s TYPE 's3' CREDENTIALS '{\"secret\": \"hunter2\"}'",
    "ALTER STORAGE s SET CREDENTIALS '{\"secret\": \"hunter2\"}'",
])
def test_classify__secrets__never_in_repr_or_str(sql: str) -> None:
    # The secret is parsed into its field but hidden from repr()/str().
    statement = classify(sql)
    assert "hunter2" not in repr(statement)
    assert "hunter2" not in str(statement)
    assert isinstance(statement, (CreateUser, AlterUser, CreateStorage, AlterStorage))
    secret = getattr(statement, "password", None) or getattr(statement, "credentials", None)
    assert "hunter2" in secret


@pytest.mark.parametrize("sql", [
    "CREATE USER alice WITH PASSWORD 'hunter2' ROLE admin",
    "CREATE USER alice WITH PASSWORD 'hunter2' bogus",
    "ALTER USER alice SET PASSWORD 'hunter2' extra",
    "CREATE STORAGE s TYPE 'ftp' CREDENTIALS '{\"secret\": \"hunter2\"}'",
    "CREATE STORAGE s CREDENTIALS 'hunter2' TYPE 's3'",
])
def test_classify__secrets__errors_carry_no_source_text(sql: str) -> None:
    # Errors in statements holding secrets keep the location but drop the context.
    with pytest.raises(InvalidSql) as caught:
        classify(sql)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.parse_errors)
    assert caught.value.parse_errors[0]["line"] == 1


# --- errors --------------------------------------------------------------------------------


def test_classify__own_parser_error__is_located_in_sqlglot_shape() -> None:
    # Hand-written parsers report the offending token the way sqlglot does.
    with pytest.raises(InvalidSql) as caught:
        classify("CREATE TABLE app.t (\n  id INT PRIMARY KEY,\n  _seq BIGINT\n)")
    error = caught.value
    assert error.at_classify
    (detail,) = error.parse_errors
    assert (detail["line"], detail["col"], detail["highlight"]) == (3, 3, "_seq")
    assert set(detail) == {"description", "line", "col", "start_context", "highlight",
                           "end_context", "into_expression"}


def test_classify__sqlglot_error__carries_sqlglot_structured_errors() -> None:
    with pytest.raises(InvalidSql) as caught:
        classify("SELECT * FROM t WHERE")
    assert caught.value.at_classify
    assert caught.value.parse_errors
    assert caught.value.parse_errors[0]["line"] == 1


@pytest.mark.parametrize("sql", ["", "   ", "-- only a comment", ";"])
def test_classify__empty_statement__is_invalid(sql: str) -> None:
    with pytest.raises(InvalidSql, match="Empty SQL statement"):
        classify(sql)


@pytest.mark.parametrize("sql", ["SELECT 'abc", 'SELECT "abc', "SELECT /* x", "SELECT $$x"])
def test_classify__unterminated_token__is_invalid_at_classify(sql: str) -> None:
    with pytest.raises(InvalidSql) as caught:
        classify(sql)
    assert caught.value.at_classify
    assert caught.value.parse_errors[0]["col"] == 8


# --- the table -----------------------------------------------------------------------------


def test_classify__table__keys_are_upper_case_words() -> None:
    for words in STATEMENT_PARSERS:
        assert words
        assert all(word == word.upper() for word in words)


def test_classify__table__longest_prefix_wins() -> None:
    # CREATE USER TABLE is a table, CREATE USER a user; SET NAMESPACE is USE, SET x a setting.
    assert type(classify("CREATE USER TABLE t (id INT PRIMARY KEY)")).__name__ == "CreateTable"
    assert type(classify("CREATE USER u WITH INTERNAL")).__name__ == "CreateUser"
    assert type(classify("SET NAMESPACE app")).__name__ == "UseNamespace"
    assert type(classify("SET x = 1")).__name__ == "SetVariable"


def test_classify__keywords_in_strings_or_quotes__do_not_match() -> None:
    with pytest.raises(InvalidSql, match="does not start a statement"):
        classify('"SELECT" 1')


# --- values --------------------------------------------------------------------------------


def test_classify__create_table__default_value_types() -> None:
    table = classify("CREATE TABLE t (id INT PRIMARY KEY, a INT DEFAULT 3, b REAL DEFAULT 0.5,"
                     " c BOOLEAN DEFAULT false, d TEXT DEFAULT NULL, e TEXT DEFAULT 'x')")
    assert isinstance(table, CreateTable)
    defaults = {column.name: column.default for column in table.columns}
    assert defaults["id"] is None
    assert [type(defaults[name].value) for name in "abce"] == [int, float, bool, str]
    assert defaults["d"] == ColumnDefault("literal", "NULL", value=None)


def test_classify__create_table__options_keep_order_and_value_types() -> None:
    table = classify("CREATE TABLE t (id INT PRIMARY KEY) WITH (storage_id = 'local',"
                     " TTL_SECONDS = 10, use_user_storage = true)")
    assert isinstance(table, CreateTable)
    assert list(table.options.items()) == [("STORAGE_ID", "local"), ("TTL_SECONDS", 10),
                                           ("USE_USER_STORAGE", "true")]


def test_classify__query__is_a_hashable_frozen_statement_with_a_sqlglot_expression() -> None:
    query = classify("SELECT CURRENT_USER")
    assert isinstance(query, Query)
    assert isinstance(query.expression, exp.Select)
    assert hash(query) == hash(classify("SELECT CURRENT_USER"))
    with pytest.raises(AttributeError):
        query.expression = None  # type: ignore[misc]


def test_classify__file_placeholder__inside_a_string_is_left_alone() -> None:
    insert = classify("INSERT INTO t (a, b) VALUES ('FILE(\"x\")', FILE(\"y\"))")
    assert isinstance(insert, Insert)
    assert insert.expression.sql(dialect="postgres") == \
        "INSERT INTO t (a, b) VALUES ('FILE(\"x\")', KDB_FILE('y'))"


def test_classify__explain__classifies_the_inner_statement() -> None:
    explain = classify("EXPLAIN VERBOSE INSERT INTO t VALUES (CURRENT_ROLE)")
    assert isinstance(explain, Explain)
    assert explain.verbose
    assert not explain.analyze
    assert isinstance(explain.statement, Insert)
    assert "KDB_CURRENT_ROLE()" in explain.statement.expression.sql()


# --- robustness ----------------------------------------------------------------------------

_WORDS = st.sampled_from([
    "(", ")", ",", ".", "=", ";", "-", "'x'", '"Q"', "1", "1.5", "$1", "abc", "x.y", "_seq",
    "NOT", "NULL", "DEFAULT", "PRIMARY", "KEY", "WITH", "TYPE", "IF", "EXISTS", "SET", "TO",
    "ON", "INSERT", "WHERE", "GROUP", "FROM", "LIMIT", "UPTO", "OFFSET", "PARTITION", "COLUMN",
    "ADD", "DROP", "TABLE", "AS", "GENERATED", "IDENTITY", "NOW", "OPTIONS", "TBLPROPERTIES",
    "IN", "NAMESPACE", "ROLE", "EMAIL", "PASSWORD", "FILE", "CURRENT_USER", "TEXT", "INT",
])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(STATEMENT_PARSERS)), st.lists(_WORDS, max_size=12))
def test_classify__token_soup__only_ever_raises_invalid_sql(
        prefix: tuple[str, ...], words: list[str]) -> None:
    # Any table prefix followed by arbitrary tokens classifies or fails with InvalidSql.
    try:
        classify(" ".join([*prefix, *words]))
    except InvalidSql as exc:
        assert exc.at_classify


# --- pre-scanned tokens ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.title for case in CASES])
def test_classify__with_tokens__same_as_scanning_here(case: Case) -> None:
    # classify(text, tokenize(text)) renders exactly the golden line.
    try:
        tokens = tokenize(case.sql)
    except LexError:
        return
    STATEMENT_CACHE.clear()
    try:
        rendered = repr(classify(case.sql, tokens))
    except EngineError as exc:
        rendered = f"ERROR {type(exc).__name__}: {exc}"
    assert rendered == case.expected


def test_classify__given_tokens__are_not_modified() -> None:
    tokens = tokenize("SELECT 1;;")
    before = list(tokens)
    classify("SELECT 1;;", tokens)
    assert tokens == before


# --- the statement cache ---------------------------------------------------------------------


def test_classify__repeated_query__same_object_from_the_cache() -> None:
    STATEMENT_CACHE.clear()
    first = classify("SELECT * FROM app.t WHERE id = $1")
    assert classify("SELECT * FROM app.t WHERE id = $1") is first
    assert classify("INSERT INTO t (a) VALUES ($1)") is classify("INSERT INTO t (a) VALUES ($1)")


@pytest.mark.parametrize("sql", [
    "INSERT INTO t (a) VALUES (1)",  # literal rows: one-off data
    "CREATE USER alice WITH PASSWORD 'hunter2' ROLE dba",  # not a hot kind (and a secret)
    "CREATE TABLE t (id INT PRIMARY KEY)",
])
def test_classify__cold_kinds__not_cached(sql: str) -> None:
    STATEMENT_CACHE.clear()
    classify(sql)
    assert len(STATEMENT_CACHE) == 0


def test_classify__errors__not_cached_and_raised_fresh() -> None:
    STATEMENT_CACHE.clear()
    errors = []
    for _ in range(2):
        with pytest.raises(InvalidSql) as caught:
            classify("SELECT * FROM t WHERE")
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert len(STATEMENT_CACHE) == 0


def test_statement_cache__bounds__least_recently_used_out() -> None:
    cache = StatementCache(max_entries=3, max_total_chars=40, max_text_chars=30)
    statements = {f"SELECT {n}": classify(f"SELECT {n}") for n in range(5)}
    for text in ["SELECT 0", "SELECT 1", "SELECT 2"]:
        cache.put(text, statements[text])
    assert cache.get("SELECT 0") is statements["SELECT 0"]  # 0 is now the most recent
    cache.put("SELECT 3", statements["SELECT 3"])
    assert cache.get("SELECT 1") is None and len(cache) == 3
    long_text = "SELECT 4" + " " * 30
    cache.put(long_text, statements["SELECT 4"])  # longer than max_text_chars: not kept
    assert cache.get(long_text) is None
    wide = "SELECT 4" + " " * 20  # 28 chars: the character budget pushes two entries out
    cache.put(wide, statements["SELECT 4"])
    assert len(cache) == 2 and cache.get(wide) is statements["SELECT 4"]


# --- context functions -------------------------------------------------------------------------


def test_rewrite_context_functions__no_context_word__tree_returned_untouched() -> None:
    tree = parse_sql("SELECT a FROM t WHERE b = 'x'", [])
    assert rewrite_context_functions(tree, "SELECT a FROM t WHERE b = 'x'") is tree


def test_rewrite_context_functions__rewrites_in_place_without_copying() -> None:
    sql = "SELECT a FROM t WHERE owner = current_user AND r = CURRENT_ROLE()"
    tree = parse_sql(sql, [])
    where = tree.args["where"]
    result = rewrite_context_functions(tree, sql)
    assert result is tree and tree.args["where"] is where
    assert result.sql() == ("SELECT a FROM t WHERE owner = KDB_CURRENT_USER() "
                            "AND r = KDB_CURRENT_ROLE()")
