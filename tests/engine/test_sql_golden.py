"""Golden SQL behaviour: ``tests/fixtures/sql/<area>.sql`` run through the real engine.

Each fixture file starts from a fresh engine (temporary data dir, ``ManualClock`` at
2026-01-01T00:00:00Z, bcrypt cost 4, background jobs off) and runs its blocks in order, so
state carries over from one block to the next within a file. Every block is one test case,
with the id ``<file>::<title>``.

File format
-----------
Blocks are separated by blank lines (so a block never contains an empty line). A block made
only of ``#`` lines without a title is a comment (the file header) and is skipped. A case is::

    # title: <what the case shows; unique within the file>
    # xfail: <reason>                   optional: a known engine bug; the case must fail
    # <any other # line is a comment>
    -- as: alice:user                   optional directives, before the SQL:
    -- namespace: app                     the session (default root:system) and its
    -- params: [1, "x"]                   namespace_id (default "default"); the JSON params;
    -- advance: 61                        move the wall clock forward N seconds first;
    -- elide-rows: 2                      keep only the first and last N rows of each result
    <the SQL: one or more lines, one or more ;-separated statements>
    => <expected result>

The expected result (it may continue on the following lines) is either

- the JSON list the API puts in ``results`` (``[r.to_json() for r in results]``), compared
  by value with JSON types kept apart (``"1"`` is not ``1``, ``1`` is not ``1.0`` nor
  ``true``). Placeholders stand for values that vary from run to run:
    ``"<any>"``     any value (also null)
    ``"<bigint>"``  a BigInt cell: a string of decimal digits (``_seq``, ``SNOWFLAKE_ID()``)
    ``"<uuid>"``    a canonical lower-case UUID string (``UUID_V7()``)
    ``"<ulid>"``    a 26-character Crockford base-32 ULID string
    ``"<bcrypt>"``  a bcrypt hash string
  and inside a longer string ``<any>`` matches any text (``"... Job ID: <any>"``). With
  ``-- elide-rows: N`` a longer ``rows`` list is compared as its first N rows, the string
  ``"<K rows elided>"``, and its last N rows;
- ``ERROR <ExceptionClass>: <message substring>``: the batch raised that ``EngineError``
  subclass (exactly that class) with a message containing the substring. Written
  ``ERROR <Class> (statement <n>): ...`` it also checks which statement of the batch failed.

The clock does not move unless told (``-- advance:``), so ``NOW()`` and every timestamp the
engine records are deterministic: they are written out in full, in microseconds.

Regeneration (never in CI)
--------------------------
``SLUICE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/engine/test_sql_golden.py`` rewrites
the expected part of every case whose expectation no longer matches, from the actual result
(``_seq`` cells and bcrypt hashes become placeholders). Then review every changed expectation
by hand against PROTOCOL.md before keeping it: the point of these files is that they say what
the spec says, not what the engine happens to do.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from engine.clock import ManualClock
from engine.errors import EngineError
from engine.session import Session
from engine.sql.split import split_statements
from tests.engine.harness import engine_at

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sql"
# classify.sql belongs to tests/engine/sql/test_classify.py (a different format).
FILES = sorted(p for p in FIXTURES.glob("*.sql") if p.name != "classify.sql")
REGEN_ENV = "SLUICE_REGEN_GOLDEN"
DEFAULT_SESSION = ("root", "system")
DIRECTIVE_RE = re.compile(r"^-- ([a-z][a-z-]*): ?(.*)$")
DIRECTIVES = ("as", "namespace", "params", "advance", "elide-rows")
ERROR_RE = re.compile(r"^ERROR (\w+)(?: \(statement (\d+)\))?(?:: (.*))?$", re.DOTALL)
ELIDED_RE = re.compile(r"^<(\d+) rows elided>$")

PLACEHOLDERS = {
    "<any>": lambda v: True,
    "<bigint>": lambda v: isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v) is not None,
    "<uuid>": lambda v: isinstance(v, str) and re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", v) is not None,
    "<ulid>": lambda v: isinstance(v, str) and re.fullmatch(
        r"[0-7][0-9A-HJKMNP-TV-Z]{25}", v) is not None,
    "<bcrypt>": lambda v: isinstance(v, str) and re.fullmatch(
        r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}", v) is not None,
}


# ---- fixture files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    file: str
    title: str
    session: Session
    params: list[Any] | None
    advance_seconds: int
    elide_rows: int | None
    sql: str
    expected: str  # the text after "=> " (its continuation lines joined with "\n")
    xfail: str | None
    index: int  # the block's position in the file (for regeneration)

    @property
    def id(self) -> str:
        return f"{self.file}::{self.title}"


def _blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


def parse_file(path: Path) -> list[Case]:
    cases = []
    for index, lines in enumerate(_blocks(path.read_text())):
        if all(line.startswith("#") for line in lines) and not any(
                line.startswith("# title:") for line in lines):
            continue
        cases.append(_parse_block(path.name, index, lines))
    titles = [case.title for case in cases]
    duplicates = {t for t in titles if titles.count(t) > 1}
    assert not duplicates, f"{path.name}: duplicate titles {sorted(duplicates)}"
    return cases


def _parse_block(file: str, index: int, lines: list[str]) -> Case:
    where = f"{file} block {index + 1} ({lines[0]!r})"
    titles = [ln.removeprefix("# title:").strip() for ln in lines if ln.startswith("# title:")]
    assert len(titles) == 1, f"{where}: needs exactly one '# title:' line"
    xfails = [ln.removeprefix("# xfail:").strip() for ln in lines if ln.startswith("# xfail:")]
    body = [ln for ln in lines if not ln.startswith("#")]
    directives: dict[str, str] = {}
    while body and (match := DIRECTIVE_RE.match(body[0])):
        name, value = match.groups()
        assert name in DIRECTIVES, f"{where}: unknown directive {name!r} (known: {DIRECTIVES})"
        directives[name] = value.strip()
        body.pop(0)
    arrows = [i for i, ln in enumerate(body) if ln.startswith("=>")]
    assert arrows, f"{where}: no '=> expected' line"
    sql_lines, expected_lines = body[:arrows[0]], body[arrows[0]:]
    assert sql_lines, f"{where}: no SQL"
    user, role = directives.get("as", ":".join(DEFAULT_SESSION)).split(":")
    session = Session(user, role, directives.get("namespace", "default"))
    params = json.loads(directives["params"]) if "params" in directives else None
    elide = int(directives["elide-rows"]) if "elide-rows" in directives else None
    expected = "\n".join([expected_lines[0].removeprefix("=>").strip(), *expected_lines[1:]])
    if not expected.startswith("ERROR"):
        json.loads(expected)  # fail at collection time on a malformed expectation
    return Case(file, titles[0], session, params, int(directives.get("advance", "0")), elide,
                "\n".join(sql_lines), expected, xfails[0] if xfails else None, index)


# ---- running a file --------------------------------------------------------------------------


@dataclass
class Outcome:
    results: list[dict] | None = None
    error: EngineError | None = None
    crash: str | None = None  # a traceback: anything but an EngineError is an engine bug


@dataclass
class FileRun:
    outcomes: dict[str, Outcome] = field(default_factory=dict)


async def _run_cases(cases: list[Case]) -> FileRun:
    run = FileRun()
    clock = ManualClock()
    with tempfile.TemporaryDirectory(prefix="sluice-golden-") as data_dir:
        async with engine_at(Path(data_dir), clock=clock) as engine:
            for case in cases:
                clock.advance(case.advance_seconds * 1000)
                outcome = Outcome()
                try:
                    results = await engine.execute(case.session, case.sql, case.params)
                    outcome.results = [r.to_json() for r in results]
                except EngineError as exc:
                    outcome.error = exc
                except Exception:
                    outcome.crash = traceback.format_exc()
                run.outcomes[case.title] = outcome
    return run


@functools.cache
def run_file(name: str) -> FileRun:
    """Runs a whole fixture file once per test session (cases share its state)."""
    return trio.run(_run_cases, CASES_BY_FILE[name])


# ---- comparing -------------------------------------------------------------------------------


def matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and expected in PLACEHOLDERS:
        return PLACEHOLDERS[expected](actual)
    if isinstance(expected, str) and "<any>" in expected:
        pattern = ".*".join(re.escape(part) for part in expected.split("<any>"))
        return isinstance(actual, str) and re.fullmatch(pattern, actual, re.DOTALL) is not None
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(matches(expected[k], actual[k]) for k in expected))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(matches(e, a) for e, a in zip(expected, actual, strict=True)))
    return type(expected) is type(actual) and expected == actual


def elide(results: list[dict], keep: int | None) -> list[dict]:
    if keep is None:
        return results
    out = []
    for result in results:
        rows = result.get("rows")
        if rows is not None and len(rows) > 2 * keep:
            result = {**result, "rows": [*rows[:keep], f"<{len(rows) - 2 * keep} rows elided>",
                                         *rows[len(rows) - keep:]]}
        out.append(result)
    return out


def check(case: Case, outcome: Outcome) -> str | None:
    """None when the outcome matches the case's expectation, else what went wrong."""
    if outcome.crash is not None:
        return f"the engine crashed (not an EngineError):\n{outcome.crash}"
    if case.expected.startswith("ERROR"):
        match = ERROR_RE.match(case.expected)
        assert match, f"{case.id}: malformed ERROR expectation {case.expected!r}"
        cls, index, substring = match.groups()
        if outcome.error is None:
            return f"expected {case.expected}\nbut it succeeded:\n{render_results(outcome.results)}"
        error = outcome.error
        problems = []
        if type(error).__name__ != cls:
            problems.append(f"class {type(error).__name__}, expected {cls}")
        if substring and substring.strip() not in str(error):
            problems.append(f"message lacks {substring.strip()!r}")
        if index is not None and getattr(error, "statement_index", None) != int(index):
            problems.append(f"failed at statement {getattr(error, 'statement_index', None)}, "
                            f"expected {index}")
        return (f"expected {case.expected}\ngot {render_error(case, error)}\n"
                + "; ".join(problems)) if problems else None
    if outcome.error is not None:
        return (f"expected results:\n{case.expected}\n"
                f"but it failed: {render_error(case, outcome.error)}")
    actual = elide(outcome.results, case.elide_rows)
    if matches(json.loads(case.expected), actual):
        return None
    return f"expected:\n{case.expected}\nactual:\n{render_results(actual)}"


# ---- rendering (failure messages and regeneration) -------------------------------------------


def _statement_count(sql: str) -> int:
    try:
        return len(split_statements(sql))
    except EngineError:  # the text cannot even be split
        return 1


def render_error(case: Case, error: EngineError) -> str:
    index = getattr(error, "statement_index", None)
    where = f" (statement {index})" if _statement_count(case.sql) > 1 and index else ""
    return f"ERROR {type(error).__name__}{where}: {error}"


def _placeholders(results: list[dict]) -> list[dict]:
    """Regeneration: volatile cells (``_seq``, bcrypt hashes) become placeholders."""
    out = []
    for result in results:
        result = json.loads(json.dumps(result))
        names = [f["name"] for f in result.get("schema", [])]
        for row in result.get("rows", []):
            if not isinstance(row, list):
                continue
            for i, cell in enumerate(row):
                if i < len(names) and names[i] == "_seq" and cell is not None:
                    row[i] = "<bigint>"
                elif isinstance(cell, str) and PLACEHOLDERS["<bcrypt>"](cell):
                    row[i] = "<bcrypt>"
        out.append(result)
    return out


def render_results(results: list[dict] | None) -> str:
    """The expected-result text: one line for short results; long ones get a line per
    schema field and per row."""
    if results is None:
        return "None"
    one_line = json.dumps(results)
    if len(one_line) <= 96:
        return one_line
    parts = []
    for result in results:
        keys = []
        for key, value in result.items():
            if key in ("schema", "rows") and value:
                items = ",\n    ".join(json.dumps(item) for item in value)
                keys.append(f'"{key}": [\n    {items}]')
            else:
                keys.append(f"{json.dumps(key)}: {json.dumps(value)}")
        parts.append("{" + ",\n  ".join(keys) + "}")
    return "[" + ",\n ".join(parts) + "]"


def regenerate(path: Path) -> int:
    """Rewrites the expectation of every failing case of ``path`` (xfail cases are kept);
    returns how many changed."""
    cases = {case.index: case for case in parse_file(path)}
    run = run_file(path.name)
    blocks, changed = _blocks(path.read_text()), 0
    out = []
    for index, lines in enumerate(blocks):
        case = cases.get(index)
        if case is not None and case.xfail is None:
            outcome = run.outcomes[case.title]
            if check(case, outcome) is not None:
                arrow = next(i for i, ln in enumerate(lines) if ln.startswith("=>"))
                if outcome.results is not None:
                    text = render_results(_placeholders(elide(outcome.results,
                                                               case.elide_rows)))
                elif outcome.error is not None:  # the first line is enough as a substring
                    text = render_error(case, outcome.error).splitlines()[0]
                else:
                    text = "CRASH " + outcome.crash.strip().splitlines()[-1]
                lines = [*lines[:arrow], f"=> {text}"]
                changed += 1
        out.append("\n".join(lines))
    path.write_text("\n\n".join(out) + "\n")
    return changed


CASES_BY_FILE = {path.name: parse_file(path) for path in FILES}
CASES = [case for cases in CASES_BY_FILE.values() for case in cases]


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@functools.cache
def _regenerated(name: str) -> int:
    return regenerate(FIXTURES / name)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_sql_golden(case: Case) -> None:
    # The file ran once, in order, on a fresh engine; this block's outcome must match.
    if os.environ.get(REGEN_ENV) == "1":
        changed = _regenerated(case.file)
        pytest.skip(f"regenerated {case.file}: {changed} expectation(s) rewritten; review them")
    problem = check(case, run_file(case.file).outcomes[case.title])
    assert problem is None, f"{case.id}\nSQL:\n{case.sql}\n{problem}"
