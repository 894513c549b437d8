"""A result of at most ``SQL_STREAM_CHUNK_ROWS`` rows is encoded in one ``json.dumps`` of the
whole envelope; its bytes must be exactly those of the prefix + rows + suffix composition
that larger (streamed) results use. Results come from a real engine."""

from __future__ import annotations

from pathlib import Path

from api.sql_rows import (
    SQL_STREAM_CHUNK_ROWS,
    _rows_chunk,
    prefix_of,
    prepare_rows_response,
    suffix_of,
)
from tests.engine.harness import ALICE, ROOT, engine_at

SETUP = """
CREATE NAMESPACE app;
CREATE SHARED TABLE app.t (id BIGINT PRIMARY KEY, v TEXT, f DOUBLE, ts TIMESTAMP, d DECIMAL(8,3),
  ok BOOLEAN) WITH (ACCESS_LEVEL = 'PUBLIC');
INSERT INTO app.t (id, v, f, ts, d, ok) VALUES (1, 'h\u00e9 "q" \\ end', 0.25, 1700000000000000,
  12.5, true), (2, NULL, NULL, NULL, NULL, NULL)
"""


def composed(result, took_ms: float) -> bytes:
    return (prefix_of(result) + _rows_chunk(result, 0) + suffix_of(result, took_ms)).encode()


async def test_sql_rows__one_chunk__single_dumps_same_bytes_as_composed(tmp_path: Path
                                                                        ) -> None:
    async with engine_at(tmp_path) as engine:
        await engine.execute(ROOT, SETUP)
        queries = [(ROOT, "SELECT * FROM app.t"), (ROOT, "SELECT * FROM app.t WHERE id = 1"),
                   (ALICE, "SELECT v AS \"Vé\", id FROM app.t WHERE id = 3"),
                   (ROOT, "SELECT count(*) AS n, 'x' AS s FROM app.t"),
                   (ROOT, f"SELECT * FROM app.t LIMIT {SQL_STREAM_CHUNK_ROWS}")]
        for session, query in queries:
            (result,) = await engine.execute(session, query)
            for took in (0.0, 1.23456, 17.0):
                response = prepare_rows_response(result, took)
                assert response.head + response.tail == composed(result, took), query
