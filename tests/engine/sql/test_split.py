"""Splitting a request into statements and unwrapping EXECUTE AS USER
(``engine/sql/split.py``, PROTOCOL.md §1.3 step 5 and §2.7)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import BatchParseError, InvalidInput, InvalidSql
from engine.sql.classify import classify
from engine.sql.lexer import tokenize
from engine.sql.split import (
    split_statements,
    split_with_tokens,
    unwrap_execute_as,
    unwrap_with_tokens,
)

# --- split_statements ----------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT 1", ["SELECT 1"]),
    ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("  SELECT 1 ;\n\n SELECT 2 ;  ", ["SELECT 1", "SELECT 2"]),
    ("SELECT 1;;;SELECT 2;", ["SELECT 1", "SELECT 2"]),
    ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
    ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", "SELECT 2"]),
    ('SELECT "a;""b"; SELECT 2', ['SELECT "a;""b"', "SELECT 2"]),
    (r"SELECT E'a\';b'; SELECT 2", [r"SELECT E'a\';b'", "SELECT 2"]),
    (r"SELECT e'\\'; SELECT 2", [r"SELECT e'\\'", "SELECT 2"]),
    ("SELECT $$a;b$$; SELECT 2", ["SELECT $$a;b$$", "SELECT 2"]),
    ("SELECT $fn$ $$ ; $x$ $fn$; SELECT 2", ["SELECT $fn$ $$ ; $x$ $fn$", "SELECT 2"]),
    ("SELECT $1; SELECT $2", ["SELECT $1", "SELECT $2"]),
    ("SELECT 1 -- a; comment\n; SELECT 2", ["SELECT 1", "SELECT 2"]),
    ("SELECT /* a; /* nested; */ still; */ 1; SELECT 2",
     ["SELECT /* a; /* nested; */ still; */ 1", "SELECT 2"]),
    ("-- only a comment", []),
    ("/* c */ ; ; -- x", []),
    ("", []),
    ("SELECT (1; 2); SELECT 3", ["SELECT (1; 2)", "SELECT 3"]),
    ("SELECT 1); SELECT 2", ["SELECT 1)", "SELECT 2"]),
    ("a'b'", ["a'b'"]),  # a word glued to a string is not an E-string
])
def test_split__respects_quotes_comments_and_parentheses(sql: str, expected: list[str]) -> None:
    assert split_statements(sql) == expected


def test_split__statement_keeps_inner_comments_and_drops_outer_ones() -> None:
    sql = "/* lead */ SELECT /* in */ 1 -- tail\n;"
    assert split_statements(sql) == ["SELECT /* in */ 1"]


@pytest.mark.parametrize(("sql", "what", "line", "column", "offset"), [
    ("SELECT 'abc", "Unterminated string literal", 1, 8, 7),
    ("SELECT 1;\nSELECT \"abc", "Unterminated quoted identifier", 2, 8, 17),
    ("SELECT E'abc\\'", "Unterminated string literal", 1, 8, 7),
    ("SELECT $$abc$", "Unterminated dollar-quoted string", 1, 8, 7),
    ("SELECT $t$abc$u$", "Unterminated dollar-quoted string", 1, 8, 7),
    ("SELECT /* a /* b */", "Unterminated block comment", 1, 8, 7),
])
def test_split__unterminated__batch_parse_error_with_position(
        sql: str, what: str, line: int, column: int, offset: int) -> None:
    with pytest.raises(BatchParseError) as caught:
        split_statements(sql)
    assert str(caught.value) == (
        f"{what} starting at line {line}, column {column} (offset {offset})")


_FRAGMENTS = st.sampled_from([
    "1", "'a;b'", "'it''s'", '"x;y"', "$$;$$", "$q$ ; $q$", r"E'\';'", "/* ; */ 2",
    "(3; 4)", "$1", "col", "-- ;\n 5",
])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_FRAGMENTS, min_size=1, max_size=5), min_size=1, max_size=5))
def test_split__joined_statements__round_trip(statements: list[list[str]]) -> None:
    # Statements built from tricky fragments, joined with ';', split back unchanged.
    texts = ["SELECT " + " ".join(fragments) + " x" for fragments in statements]
    assert split_statements(";\n".join(texts)) == texts


# --- unwrap_execute_as ---------------------------------------------------------------------


@pytest.mark.parametrize(("statement", "user", "inner"), [
    ("EXECUTE AS USER 'alice' (SELECT * FROM t)", "alice", "SELECT * FROM t"),
    ("execute as user 'alice' ( SELECT 1 )", "alice", "SELECT 1"),
    ("EXECUTE AS USER alice (SELECT 1)", "alice", "SELECT 1"),
    ("EXECUTE AS USER Alice (SELECT 1)", "Alice", "SELECT 1"),
    ('EXECUTE AS USER "Alice" (SELECT 1)', "Alice", "SELECT 1"),
    ("EXECUTE AS USER 'o''brien' (SELECT 1)", "o'brien", "SELECT 1"),
    ("EXECUTE AS USER 'a' (SELECT ')'; )", "a", "SELECT ')'"),
    ("EXECUTE AS USER 'a' (INSERT INTO t VALUES ((1), (2)))", "a",
     "INSERT INTO t VALUES ((1), (2))"),
    ("EXECUTE AS USER 'a' (\n  -- why\n  SELECT 1\n)", "a", "SELECT 1"),
])
def test_unwrap__wrapper__returns_user_and_inner_statement(
        statement: str, user: str, inner: str) -> None:
    assert unwrap_execute_as(statement) == (user, inner)


@pytest.mark.parametrize("statement", [
    "SELECT 1", "EXECUTE prepared_plan", "EXECUTE", "select 'EXECUTE AS USER a (x)'"])
def test_unwrap__no_wrapper__returns_statement_unchanged(statement: str) -> None:
    assert unwrap_execute_as(statement) == (None, statement)


def test_unwrap__several_inner_statements__invalid_input() -> None:
    # The batch splitter keeps the parenthesised body whole, so this reaches the unwrapper.
    (statement,) = split_statements("EXECUTE AS USER 'a' (SELECT 1; SELECT 2);")
    with pytest.raises(InvalidInput, match="EXECUTE AS USER must wrap a single SQL statement"):
        unwrap_execute_as(statement)


@pytest.mark.parametrize(("statement", "message"), [
    ("EXECUTE AS 'a' (SELECT 1)", "EXECUTE AS must be followed by USER '<user_id>'"),
    ("EXECUTE AS USER", "EXECUTE AS USER requires a user id"),
    ("EXECUTE AS USER (SELECT 1)", "EXECUTE AS USER requires a user id"),
    ("EXECUTE AS USER 'a' SELECT 1", "must be followed by ( <statement> )"),
    ("EXECUTE AS USER 'a' (SELECT 1", "missing its closing parenthesis"),
    ("EXECUTE AS USER 'a' (SELECT 1) extra", "Unexpected text after EXECUTE AS USER"),
    ("EXECUTE AS USER 'a' ()", "EXECUTE AS USER must wrap a SQL statement"),
    ("EXECUTE AS USER 'a' ( ; )", "EXECUTE AS USER must wrap a SQL statement"),
    ("EXECUTE AS USER 'a' (EXECUTE AS USER 'b' (SELECT 1))", "cannot be nested"),
    ("EXECUTE AS USER '' (SELECT 1)", "User id cannot be empty"),
    ("EXECUTE AS USER '../x' (SELECT 1)", "User id cannot contain"),
    ("EXECUTE AS USER '" + "u" * 129 + "' (SELECT 1)", "User id is too long (129 bytes"),
])
def test_unwrap__malformed__invalid_sql_at_classify(statement: str, message: str) -> None:
    with pytest.raises(InvalidSql, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        unwrap_execute_as(statement)
    assert caught.value.at_classify


def test_unwrap__end_to_end__split_unwrap_classify() -> None:
    # The §1.3 step-5 pipeline: split, unwrap each statement, classify the inner text.
    sql = "SELECT 1; EXECUTE AS USER 'bob' (SELECT * FROM app.t WHERE owner = CURRENT_USER);"
    results = []
    for statement in split_statements(sql):
        user, inner = unwrap_execute_as(statement)
        results.append((user, repr(classify(inner))))
    assert results == [
        (None, "Query(expression=<SELECT 1>)"),
        ("bob", "Query(expression=<SELECT * FROM app.t WHERE owner = KDB_CURRENT_USER()>)"),
    ]


# --- scanning once: split_with_tokens / unwrap_with_tokens ------------------------------------

_BATCH_FRAGMENTS = st.sampled_from([
    "SELECT 1", "SELECT 'a;b', $1", "  SELECT (1; 2)", "/* lead */ SELECT x -- tail\n",
    "INSERT INTO t VALUES (1, 'a;b')", "INSERT INTO t (a,b) VALUES ($1,$2),($3,$4)",
    "insert into t values (1) /* c */", "INSERT INTO t VALUES (1 + 1)", "",
    "EXECUTE AS USER 'a' (SELECT 1)", "EXECUTE AS USER 'a' ( INSERT INTO t VALUES (1) ; )",
    " E'\\';' ", "$$;$$",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(_BATCH_FRAGMENTS, min_size=1, max_size=4), st.sampled_from([";", ";\n", " ; "]))
def test_split_with_tokens__texts_as_split_statements_and_tokens_as_scanning_them(
        fragments: list[str], separator: str) -> None:
    sql = separator.join(fragments)
    pieces = split_with_tokens(sql)
    assert [text for text, _ in pieces] == split_statements(sql)
    for text, tokens in pieces:
        if tokens is None:  # only for a lone INSERT the classifier reads without tokens
            assert len(pieces) == 1 and text.upper().startswith("INSERT")
        else:
            assert tokens == tokenize(text)


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES (1)", "  INSERT INTO t (a) VALUES ('x;y');; -- done\n",
    "/* c */ insert into app.t values ($1,$2), ($3,$4);",
])
def test_split_with_tokens__lone_plain_insert__is_not_scanned(sql: str) -> None:
    ((text, tokens),) = split_with_tokens(sql)
    assert tokens is None
    scanned = [token for token in tokenize(sql) if token.upper != ";"]
    assert text == sql[scanned[0].start:scanned[-1].end]


@pytest.mark.parametrize("statement", [
    "EXECUTE AS USER 'alice' (SELECT * FROM t)",
    "EXECUTE AS USER 'a' (\n  -- why\n  SELECT 1 ;; \n)",
    "EXECUTE AS USER 'a' (INSERT INTO t VALUES ((1), (2)))",
    "SELECT 1", "/* c */ SELECT 1", "EXECUTE prepared_plan",
])
def test_unwrap_with_tokens__as_unwrap_execute_as__inner_tokens_as_scanning_inner(
        statement: str) -> None:
    for given_tokens in (tokenize(statement), None):
        user, inner, inner_tokens = unwrap_with_tokens(statement, given_tokens)
        assert (user, inner) == unwrap_execute_as(statement)
        if inner_tokens is not None or given_tokens is not None:
            assert inner_tokens == tokenize(inner)


def test_unwrap_with_tokens__unscanned_plain_statement__stays_unscanned() -> None:
    assert unwrap_with_tokens("INSERT INTO t VALUES (1)", None) == (
        None, "INSERT INTO t VALUES (1)", None)


def test_unwrap_with_tokens__unscanned_wrapper__is_scanned_and_checked() -> None:
    with pytest.raises(InvalidSql, match="cannot be nested"):
        unwrap_with_tokens("EXECUTE AS USER 'a' (EXECUTE AS USER 'b' (SELECT 1))", None)
    with pytest.raises(InvalidSql, match="Unterminated string literal"):
        unwrap_with_tokens("EXECUTE AS USER 'a", None)


def test_split_unwrap_classify__with_tokens__same_statements_as_without() -> None:
    sql = ("SELECT 1; EXECUTE AS USER 'bob' (SELECT * FROM app.t WHERE owner = CURRENT_USER);"
           " INSERT INTO app.t (a,b) VALUES ($1,$2); UPDATE app.t SET a=$1,b=$2 WHERE id=$3")
    with_tokens = []
    for text, tokens in split_with_tokens(sql):
        user, inner, inner_tokens = unwrap_with_tokens(text, tokens)
        with_tokens.append((user, repr(classify(inner, inner_tokens))))
    without = [(user, repr(classify(inner)))
               for user, inner in map(unwrap_execute_as, split_statements(sql))]
    assert with_tokens == without
