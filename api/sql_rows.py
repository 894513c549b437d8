"""The response of ``POST /v1/api/sql`` when the request was one statement that returns rows
(PROTOCOL §1.3, "Single statement that returns rows").

Wire shape, byte for byte in this field order (the reference writes it as a prefix, the rows,
and a suffix)::

    {"status":"success","results":[{"schema":[...],"rows":[[...],...],"row_count":N,
     "as_user":"u"}],"took":T,"error":null}

Unlike other results, ``schema`` is present even when empty, ``message`` is never present,
and the envelope always ends with ``"error":null``. ``took`` is measured when the response
starts, before the rows are encoded.

Streaming: rows are JSON-encoded ``SQL_STREAM_CHUNK_ROWS`` at a time from the (already
materialised) Arrow table, so the encoded copy held in memory is one chunk. A result that
fits in one chunk is sent as one body with ``Content-Length``; a larger one is sent as ASGI
``more_body`` chunks (HTTP/1.1 chunked transfer encoding). The first chunk is encoded before
the status line is sent, so an encoding failure there is still a clean 500 envelope; a
failure in a later chunk can only abort the connection (the status is already on the wire).
Cancellation: a client that goes away makes ``send`` raise; nothing is left to clean up.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .http import JSON_HEADERS, Send

# Why 500: a chunk of 500 typical rows is tens of KB of JSON — small enough to bound memory
# per request, large enough that per-chunk overhead (one ASGI send, one socket write) stays
# negligible; results up to this size (PK lookups, the default LIMIT of 50) go out in one send.
SQL_STREAM_CHUNK_ROWS = 500


def is_single_rows_result(results: list[Any]) -> bool:
    """True when the engine reported exactly one result and it carries rows (a batch of
    several statements always reports more than one, or only DDL/DML summaries)."""
    return len(results) == 1 and results[0].table is not None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _rows_chunk(result: Any, offset: int) -> str:
    """Rows ``offset .. offset+SQL_STREAM_CHUNK_ROWS`` as comma-joined JSON arrays."""
    part = dataclasses.replace(result, table=result.table.slice(offset, SQL_STREAM_CHUNK_ROWS))
    return ",".join(_dumps(row) for row in part.json_rows())


def prefix_of(result: Any) -> str:
    schema = _dumps([f.to_json() for f in result.schema])
    return f'{{"status":"success","results":[{{"schema":{schema},"rows":['


def suffix_of(result: Any, took_ms: float) -> str:
    return (f'],"row_count":{result.row_count},"as_user":{_dumps(result.as_user)}}}],'
            f'"took":{_dumps(round(took_ms, 3))},"error":null}}')


@dataclasses.dataclass(slots=True)
class RowsResponse:
    """A prepared response: the prefix and first chunk are already encoded."""

    result: Any
    head: bytes
    tail: bytes

    async def send(self, send: Send) -> None:
        """Sends the whole 200 response. Errors after the status line abort the connection
        (they propagate; the caller must not try to send an error envelope)."""
        total = self.result.table.num_rows
        if total <= SQL_STREAM_CHUNK_ROWS:
            body = self.head + self.tail  # the whole body (``tail`` is empty then)
            await send({"type": "http.response.start", "status": 200, "headers": [
                *JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [*JSON_HEADERS]})
        await send({"type": "http.response.body", "body": self.head, "more_body": True})
        for offset in range(SQL_STREAM_CHUNK_ROWS, total, SQL_STREAM_CHUNK_ROWS):
            chunk = "," + _rows_chunk(self.result, offset)
            await send({"type": "http.response.body", "body": chunk.encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": self.tail})


def prepare_rows_response(result: Any, took_ms: float) -> RowsResponse:
    """Encodes the prefix and the first chunk of rows; raises what the encoding raises. A
    result that fits in one chunk (every point lookup) is encoded whole, in one
    ``json.dumps`` of the envelope: the same bytes, fewer calls."""
    if result.table.num_rows <= SQL_STREAM_CHUNK_ROWS:
        body = _dumps({"status": "success", "results": [{
            "schema": [f.to_json() for f in result.schema], "rows": result.json_rows(),
            "row_count": result.row_count, "as_user": result.as_user}],
            "took": round(took_ms, 3), "error": None})
        return RowsResponse(result, body.encode(), b"")
    head = prefix_of(result) + _rows_chunk(result, 0)
    return RowsResponse(result, head.encode(), suffix_of(result, took_ms).encode())
