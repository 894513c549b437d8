"""The client's pure parts: result rendering (tools/render.py), the `;` splitter
(tools/statements.py), token-store files and reply-envelope parsing (tools/client.py)."""

from __future__ import annotations

import csv
import http.server
import io
import json
import stat
import threading
import time
from pathlib import Path

import pytest

from tools import render
from tools.client import ApiError, Connection, Tokens, TokenStore, _dropped, _seconds, error_of
from tools.statements import Meta, Statement, StatementSplitter, split_script

SCHEMA = [
    {"name": "id", "data_type": "BigInt", "index": 0, "flags": ["pk", "nn", "uq"]},
    {"name": "name", "data_type": "Text", "index": 1},
    {"name": "at", "data_type": "Timestamp", "index": 2},
    {"name": "price", "data_type": {"Decimal": {"precision": 10, "scale": 2}}, "index": 3},
    {"name": "blob", "data_type": "Bytes", "index": 4},
]
ROWS = [["7012345678901", "héllo", 1_700_000_000_000_000, "12.50", [104, 105]],
        ["2", None, 1_700_000_000_123_456, None, None]]


def table_lines(rows: list[list[object]], schema: list[dict] = SCHEMA, **kw: int) -> list[str]:
    return render.render_table({"schema": schema, "rows": rows, "row_count": len(rows)},
                               **kw).splitlines()


def test_render__table__nulls_bigint_right_aligned_timestamps_iso() -> None:
    # Every line has the same display width; numbers are right-aligned, NULL is visible.
    lines = table_lines(ROWS)
    assert lines[0].split("|")[0].strip() == "id"
    assert lines[2] == (" 7012345678901 | héllo | 2023-11-14T22:13:20Z        | 12.50 | \\x6869")
    assert lines[3] == ("             2 | NULL  | 2023-11-14T22:13:20.123456Z |  NULL | NULL")
    assert lines[-2:] == ["(2 rows)", ""]


def test_render__cell_text__every_encoding_of_protocol_3_5() -> None:
    cases = [
        (None, "Text", None), (True, "Boolean", "true"), ("42", "BigInt", "42"),
        (1_700_000_000_500_000, "DateTime", "2023-11-14T22:13:20.500Z"),
        (0, "Timestamp", "1970-01-01T00:00:00Z"), (-1, "Timestamp", "1969-12-31T23:59:59.999999Z"),
        (19000, "Date", "2022-01-08"), (3_723_000_001, "Time", "01:02:03.000001"),
        ([1, 2.5], {"Embedding": 2}, "[1,2.5]"), ('{"a":1}', "Json", '{"a":1}'),
        ([255, 0], "Bytes", "\\xff00"), (10**20, "Timestamp", str(10**20)),
        ("x", {"Unknown": 1}, "x"),
    ]
    for value, data_type, expected in cases:
        assert render.cell_text(value, data_type) == expected, (value, data_type)


def test_render__table__wide_and_unicode_cells() -> None:
    # East Asian wide characters take two columns, combining marks none; control characters
    # are escaped; cells past the width cap are cut with an ellipsis.
    schema = [{"name": "t", "data_type": "Text"}, {"name": "n", "data_type": "Int"}]
    lines = table_lines([["日本語", 1], ["e\u0301te\u0301", 22], ["a\nb\tc", 3],
                         ["x" * 200, 4]], schema=schema, cell_width_max=10)
    separators = {render.display_width(line.partition("|")[0]) for line in lines[2:6]}
    assert separators == {12}, lines  # the cut cell is 10 columns wide, plus the padding
    assert lines[2:6] == [" 日本語     |  1", " e\u0301te\u0301        | 22", " a\\nb\\tc    |  3",
                          " xxxxxxxxx… |  4"]
    assert render.display_width("日本語") == 6 and render.display_width("e\u0301") == 1


def test_render__table__results_without_rows_show_the_message() -> None:
    assert render.render_table({"row_count": 2, "message": "Inserted 2 row(s)"}) == \
        "Inserted 2 row(s)\n"
    assert render.render_table({"row_count": 0}) == "OK\n"
    assert render.render_table({"schema": SCHEMA, "rows": []}).splitlines()[-2] == "(0 rows)"


def test_render__csv_and_ndjson() -> None:
    result = {"schema": SCHEMA, "rows": ROWS}
    parsed = list(csv.reader(io.StringIO(render.render_csv(result))))
    assert parsed[0] == ["id", "name", "at", "price", "blob"]
    assert parsed[2] == ["2", "", "2023-11-14T22:13:20.123456Z", "", ""]
    lines = render.render_ndjson(result).splitlines()
    assert json.loads(lines[0]) == dict(zip(["id", "name", "at", "price", "blob"], ROWS[0],
                                            strict=True))
    assert render.render_csv({"message": "x"}) == render.render_ndjson({"message": "x"}) == ""


# ---- the ';' splitter -----------------------------------------------------------------------

@pytest.mark.parametrize(("script", "expected"), [
    ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
    ("SELECT 'a;b'; SELECT 'it''s;'", ["SELECT 'a;b'", "SELECT 'it''s;'"]),
    ('SELECT "x;y" FROM t;', ['SELECT "x;y" FROM t']),
    ("SELECT 1 -- not; the end\n;", ["SELECT 1 -- not; the end"]),
    ("SELECT /* a; /* nested; */ still; */ 1;", ["SELECT /* a; /* nested; */ still; */ 1"]),
    ("SELECT $$a;b$$, $tag$c;$$;d$tag$;", ["SELECT $$a;b$$, $tag$c;$$;d$tag$"]),
    ("SELECT E'a\\';b';", ["SELECT E'a\\';b'"]),
    ("SELECT 'a\\';b';", ["SELECT 'a\\'", "b';"]),  # standard strings: a backslash is literal
    (";; -- only a comment\n/* and another */;", []),
    ("SELECT 1", ["SELECT 1"]),  # the last statement's ';' is optional in a script
    ("SELECT\n  'multi\nline';", ["SELECT\n  'multi\nline'"]),
])
def test_statements__split_respects_quotes_and_comments(script: str, expected: list[str]
                                                         ) -> None:
    assert [item.text for item in split_script(script) if isinstance(item, Statement)] == \
        expected


def test_statements__typed_line_by_line__pending_until_the_semicolon() -> None:
    splitter = StatementSplitter()
    assert splitter.feed("SELECT 'open") == [] and splitter.pending
    assert splitter.feed("still;open'") == [] and splitter.pending
    assert splitter.feed("AS x; SELECT") == [Statement("SELECT 'open\nstill;open'\nAS x")]
    assert splitter.pending
    assert splitter.feed("2;") == [Statement("SELECT\n2")] and not splitter.pending
    assert splitter.feed("   ") == [] and not splitter.pending
    assert splitter.feed("-- a comment alone") == [] and not splitter.pending


def test_statements__backslash_commands() -> None:
    assert split_script("\\dt\n\\d items;\\dn\nSELECT 1;\\timing on") == [
        Meta("\\dt", ""), Meta("\\d", "items"), Meta("\\dn", ""), Statement("SELECT 1"),
        Meta("\\timing", "on")]
    splitter = StatementSplitter()
    splitter.feed("SELECT 1,")
    assert splitter.feed("'\\d';") == [Statement("SELECT 1,\n'\\d'")]  # inside a statement


# ---- client pieces --------------------------------------------------------------------------

def test_client__token_store__mode_0600_atomic_and_per_user_and_url(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "cfg" / "sluice")
    tokens = Tokens("a1", 2e9, "r1", 2.5e9)
    store.save("root", "http://h:1/", tokens)
    store.save("alice", "http://h:1", Tokens("a2", 2e9, None, None))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.load("root", "http://h:1") == tokens
    assert store.load("root", "http://h:2") is None
    store.save("root", "http://h:1", None)
    assert store.load("root", "http://h:1") is None and store.load("alice", "http://h:1")
    assert [p.name for p in store.path.parent.iterdir()] == ["tokens.json"]  # no temp left
    store.path.write_text("{not json")
    assert store.load("alice", "http://h:1") is None  # a damaged cache is an empty one


def test_client__tokens_from_login_reply__rfc3339_with_nanoseconds() -> None:
    tokens = Tokens.from_login({"access_token": "a", "refresh_token": "r",
                                "expires_at": "2026-05-05T10:00:00.123456789+00:00",
                                "refresh_expires_at": "2026-05-11T10:00:00Z"})
    assert tokens.expires_at == pytest.approx(_seconds("2026-05-05T10:00:00.123456+00:00"))
    assert tokens.usable(tokens.expires_at - 61) and not tokens.usable(tokens.expires_at - 59)
    assert tokens.refreshable(tokens.expires_at)
    assert _seconds("garbage") == 0.0 and _seconds("2026-05-05T10:00:00") == 0.0


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"status": "error", "error": {"code": "INVALID_SQL", "message": "bad"}}, "INVALID_SQL",
     "bad"),
    ({"error": "unauthorized", "message": "Invalid credentials"}, "unauthorized",
     "Invalid credentials"),
    ({"error": "Topic 'x' does not exist", "code": "NOT_FOUND"}, "NOT_FOUND",
     "Topic 'x' does not exist"),
    ("plain text 400", "HTTP_400", "plain text 400"),
    (None, "HTTP_400", "Bad Request"),
])
def test_client__error_of__each_envelope(body: object, code: str, message: str) -> None:
    error = error_of(400, body)
    assert isinstance(error, ApiError)
    assert (error.status, error.code, error.message) == (400, code, message)


def test_client__connection__reconnects_after_the_server_closed_an_idle_connection() -> None:
    # A server that closes every connection right after its reply (without saying so): the
    # next request notices the closed socket before sending and opens a new connection.
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = json.dumps({"peer_port": self.client_address[1]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conn = Connection(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        first = conn.request("GET", "/")
        deadline = time.monotonic() + 5
        while not _dropped(conn._conn) and time.monotonic() < deadline:
            time.sleep(0.01)
        second = conn.request("GET", "/")
        assert first.status == second.status == 200
        assert first.body["peer_port"] != second.body["peer_port"]  # a new connection
    finally:
        conn.close()
        server.shutdown()
        server.server_close()
        thread.join()
