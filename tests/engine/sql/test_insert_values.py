"""The INSERT fast path (``engine/sql/insert_values.py``): whatever it accepts must mean exactly
what the sqlglot path (``Insert``) means to the INSERT handler, and it must only refuse rows of
wrong lengths in statements the sqlglot path would have run. Golden cases live in
``tests/fixtures/sql/classify.sql`` (titles ``insert fast path: ...``)."""

from __future__ import annotations

import timeit
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from engine.errors import InvalidSql
from engine.sql.classify import _classify, classify
from engine.sql.insert_values import parse_insert_values, single_statement_span
from engine.sql.lexer import tokenize
from engine.sql.statements import CallValue, DefaultValue, Insert, InsertValues, Param

# --- the reference: what the INSERT handler makes of the sqlglot path's tree -----------------

_CALLS = {"SNOWFLAKE_ID", "UUID_V7", "ULID", "NOW", "KDB_CURRENT_USER", "KDB_CURRENT_ROLE"}


class _NotPlain(Exception):
    """The statement holds something the fast path does not accept."""


def _reference(sql: str) -> InsertValues:
    """The sqlglot path's statement in InsertValues form (as ``dml._value`` reads items)."""
    statement = _classify(sql, None, fast_insert=False)
    if not isinstance(statement, Insert):
        raise _NotPlain(type(statement).__name__)
    node = statement.expression
    if node.args.get("returning") or not isinstance(node.expression, exp.Values):
        raise _NotPlain("not INSERT ... VALUES")
    target, columns = node.this, None
    if isinstance(target, exp.Schema):
        columns = tuple(_name(identifier) for identifier in target.expressions)
        target = target.this
    namespace = _name(target.args["db"]) if target.args.get("db") else None
    rows = tuple(tuple(_item(item) for item in (row.expressions if isinstance(row, exp.Tuple)
                                                 else [row]))
                 for row in node.expression.expressions)
    return InsertValues(namespace, _name(target.this), columns, rows)


def _name(identifier: exp.Expression) -> str:
    if not isinstance(identifier, exp.Identifier):
        raise _NotPlain(f"name {identifier!r}")
    return identifier.name if identifier.quoted else identifier.name.lower()


def _item(node: exp.Expression) -> Any:
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        return int(node.this) if node.is_int else Decimal(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) \
            and not node.this.is_string:
        return -_item(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Var) and node.name.upper() == "DEFAULT":
        return DefaultValue()
    if isinstance(node, exp.Parameter):
        return Param(int(node.this.this))
    if isinstance(node, exp.CurrentTimestamp) and not node.args:
        return CallValue("NOW")
    if isinstance(node, exp.Anonymous) and str(node.this).upper() in _CALLS \
            and not node.expressions:
        return CallValue(str(node.this).upper())
    raise _NotPlain(node.sql())


def _typed(statement: InsertValues) -> tuple[Any, ...]:
    """The statement with every value tagged by its type (1 == True == Decimal(1) otherwise)."""
    rows = tuple(tuple((type(value).__name__, value) for value in row) for row in statement.rows)
    return statement.namespace, statement.table, statement.columns, rows


# --- random statements -----------------------------------------------------------------------

_PLAIN_VALUES = [
    "1", "0", "-5", "- 5", "-/* c */7", "1.5", ".5", "1.", "1e3", "-2E-3", "1.e2", "007",
    "99999999999999999999", "'x'", "''", "'it''s'", "'a\\nb'", "'\u00e9;)'", "'--x'", "TRUE",
    "false", "NULL", "DEFAULT", "default", "$1", "$12", "now()", "NOW ( )", "CURRENT_TIMESTAMP",
    "current_timestamp()", "snowflake_id()", "UUID_V7()", "ulid()", "CURRENT_USER",
    "current_user()", "CURRENT_USER_ID()", "current_role", "CURRENT_ROLE()",
]
_OTHER_VALUES = [
    "1 + 1", "-$1", "E'x'", "$$x$$", "'1'::int", "upper('a')", "(1)", "CURRENT_DATE",
    "FILE('x')", "- -1", "x", "NULL::int", "1\u00b2", "'a' 'b'", "now(1)", "$1a",
]
_PLAIN_NAMES = ["t", "T", "app", "Ab_1", '"Q"', '"MixedCase"', "e", "name", "user", "key"]
_OTHER_NAMES = ["values", "select", "null", "current_date", '"a b"', "\u00e9t\u00e9"]
_GAPS = [" ", "", "\n", " /* c */ ", " -- c\n"]
_TAILS = ["", ";", " ; ;", " -- end", " RETURNING *", " ON CONFLICT DO NOTHING", ","]


@st.composite
def _statement(draw: st.DrawFn) -> tuple[str, bool]:
    """An INSERT text and whether every part of it is one the fast path accepts."""
    plain = True

    def pick(good: list[str], bad: list[str]) -> str:
        nonlocal plain
        if draw(st.integers(0, 9)) == 0:
            plain = False
            return draw(st.sampled_from(bad))
        return draw(st.sampled_from(good))

    gap = st.sampled_from(_GAPS)
    width = draw(st.integers(1, 4))
    target = pick(_PLAIN_NAMES, _OTHER_NAMES)
    if draw(st.booleans()):
        target = pick(_PLAIN_NAMES, _OTHER_NAMES) + draw(gap) + "." + draw(gap) + target
    columns = ""
    if draw(st.booleans()):
        names = [pick(_PLAIN_NAMES, _OTHER_NAMES) for _ in range(width)]
        columns = "(" + ("," + draw(gap)).join(names) + ")" + draw(gap)
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        size = width if draw(st.integers(0, 5)) else draw(st.integers(1, 4))
        values = [pick(_PLAIN_VALUES, _OTHER_VALUES) for _ in range(size)]
        rows.append("(" + draw(gap) + ("," + draw(gap)).join(values) + draw(gap) + ")")
    tail = draw(st.sampled_from(_TAILS))
    plain = plain and tail in ("", ";", " ; ;", " -- end")
    keywords = draw(st.sampled_from(["INSERT INTO", "insert into", "Insert/**/Into"]))
    after_target = draw(gap) if columns else draw(st.sampled_from([g for g in _GAPS if g]))
    sql = (f"{keywords} {target}{after_target}{columns}VALUES{draw(gap)}"
           + ("," + draw(gap)).join(rows) + tail)
    return sql, plain


@settings(max_examples=1500, deadline=None)
@given(_statement())
def test_fast_path__random_inserts__same_meaning_as_the_sqlglot_path(
        case: tuple[str, bool]) -> None:
    sql, plain = case
    try:
        fast = parse_insert_values(sql)
    except InvalidSql as exc:
        # Refused for row lengths: the sqlglot path reads the same plain rows, lengths differ.
        reference = _reference(sql)
        widths = {len(row) for row in reference.rows}
        assert len(widths | ({len(reference.columns)} if reference.columns else set())) > 1
        assert "values" in str(exc).lower()
        return
    if fast is None:
        assert not plain, sql  # everything in it is accepted: it must not fall back
        return
    assert plain, sql
    assert _typed(fast) == _typed(_reference(sql)), sql


@settings(max_examples=500, deadline=None)
@given(_statement(), st.sampled_from(["", "  ", "\n-- lead\n", "/* a */ "]),
       st.sampled_from(["", " ", ";", "; -- tail\n", ";;"]))
def test_single_statement_span__agrees_with_the_scanner(
        case: tuple[str, bool], before: str, after: str) -> None:
    # When the shape check says "one statement", scanning and splitting says the same.
    from engine.sql.split import _statement_groups

    sql = before + case[0] + after
    span = single_statement_span(sql)
    if span is None:
        return
    groups = _statement_groups(tokenize(sql))
    assert [sql[group[0].start:group[-1].end] for group in groups] == [sql[span[0]:span[1]]]


# --- properties a golden line cannot show -----------------------------------------------------


def test_fast_path__values_have_the_handler_types() -> None:
    statement = parse_insert_values("INSERT INTO t VALUES (1, 1.0, -0.0, 1e2, 'x', TRUE, $2)")
    assert statement is not None
    (row,) = statement.rows
    assert [type(value) for value in row] == [int, Decimal, Decimal, Decimal, str, bool, Param]
    assert row[2] == Decimal("0.0")  # -Decimal, as the handler negates sqlglot's literal
    assert row[6] == Param(2)


def test_fast_path__statement_is_hashable_and_frozen() -> None:
    statement = classify("INSERT INTO t (a) VALUES ($1), (DEFAULT)")
    assert isinstance(statement, InsertValues)
    assert hash(statement) == hash(parse_insert_values("INSERT INTO t (a) VALUES ($1), (DEFAULT)"))
    with pytest.raises(AttributeError):
        statement.rows = ()  # type: ignore[misc]


def test_fast_path__row_length_errors_are_not_redacted() -> None:
    # The same message (and visibility) as the handler's check for the sqlglot path.
    with pytest.raises(InvalidSql, match="INSERT has 1 values for 2 columns") as caught:
        classify("INSERT INTO t (a, b) VALUES (1)")
    assert not caught.value.at_classify


def test_fast_path__explain_keeps_the_sqlglot_tree() -> None:
    explain = classify("EXPLAIN INSERT INTO t (a) VALUES (1)")
    assert isinstance(explain.statement, Insert)  # type: ignore[attr-defined]


def test_fast_path__hundred_rows__well_under_a_millisecond() -> None:
    # 100 rows x 7 values (strings, ints, decimals, booleans) as in bench/engine_sql.py.
    rows = ", ".join(f"({i}, 'user{i:04d}', {1767225600000000 + i}, 'view', {i / 100!r}, "
                     f"{'TRUE' if i % 3 else 'FALSE'}, '{'x' * 100}')" for i in range(100))
    sql = f"INSERT INTO bench.events (id, user_id, ts, kind, amount, flag, payload) VALUES {rows}"
    assert len(parse_insert_values(sql).rows) == 100  # type: ignore[union-attr]
    best = min(timeit.repeat(lambda: parse_insert_values(sql), number=20, repeat=5)) / 20
    assert best < 0.005  # ~0.5 ms on the development machine; generous for slow CI


# --- the whole-request path (``parse_whole_insert``, ``classify_whole``) ---------------------


@settings(max_examples=500, deadline=None)
@given(_statement(), st.sampled_from(["", "  ", "\n-- lead\n", "/* a */ "]),
       st.sampled_from(["", " ", ";", "; -- tail\n", ";;", " /* ) */"]))
def test_parse_whole_insert__same_text_and_statement_as_split_then_classify(
        case: tuple[str, bool], before: str, after: str) -> None:
    # One pass must give exactly what splitting, then classifying, gives; else None.
    from engine.sql.insert_values import parse_whole_insert
    from engine.sql.split import split_with_tokens

    sql = before + case[0] + after
    whole = parse_whole_insert(sql)
    if whole is None:
        return
    text, statement = whole
    assert [piece for piece, _ in split_with_tokens(sql)] == [text]
    assert _classify(text, None, fast_insert=True) == statement
    assert case[1]  # only statements the fast path fully accepts come back


@pytest.mark.parametrize("sql", [
    "INSERT INTO t (a, b) VALUES (1)",  # row too short: the general route reports it
    "INSERT INTO t VALUES (1, 2), (3)",
    "INSERT INTO t (a) VALUES (1); INSERT INTO t (a) VALUES (2)",  # two statements
    "INSERT INTO t (a) VALUES (1) RETURNING *",
    "INSERT INTO values (a) VALUES (1)",  # not a plain name
    "SELECT 1",
])
def test_parse_whole_insert__anything_else__none(sql: str) -> None:
    from engine.sql.insert_values import parse_whole_insert

    assert parse_whole_insert(sql) is None


def test_parse_whole_insert__comment_with_parenthesis_inside_last_row__exact_text() -> None:
    from engine.sql.insert_values import parse_whole_insert

    sql = " INSERT INTO t (a, b) VALUES (1, 'x' /* ) */ ) -- tail )\n;"
    assert parse_whole_insert(sql) == (
        "INSERT INTO t (a, b) VALUES (1, 'x' /* ) */ )",
        InsertValues(None, "t", ("a", "b"), ((1, "x"),)))
    loose = "INSERT INTO t VALUES (1, 'x' /* ) */ ), (2, 'y') ;"  # no column list
    assert parse_whole_insert(loose)[0] == loose[:-2]  # type: ignore[index]


def test_classify_whole__cached_text__same_object_without_parsing() -> None:
    from engine.sql.classify import STATEMENT_CACHE, classify_whole

    STATEMENT_CACHE.clear()
    sql = "INSERT INTO app.t (id, a) VALUES ($1, $2)"
    text, first = classify_whole(sql)  # type: ignore[misc]
    assert text == sql and first == classify(sql)
    assert classify_whole(sql) == (sql, first) and classify_whole(sql)[1] is first  # type: ignore[index]
    query = "SELECT * FROM app.t WHERE id = $1"
    assert classify_whole(query) is None  # not cached yet, not an INSERT
    cached = classify(query)
    assert classify_whole(query) == (query, cached)
    misses = STATEMENT_CACHE.misses
    assert classify_whole("SELECT 2") is None
    assert STATEMENT_CACHE.misses == misses  # a guess that fails is not a miss
