"""``POST /v1/api/ingest/{namespace}/{table}``: bulk ingestion (issue 4, a Sluice extension),
a raw-ASGI hot route like ``POST /v1/api/sql``.

Order: the body limit from ``Content-Length`` (413 ``BODY_TOO_LARGE``, before anything is
read; ``rate_limit.ingest_body_limit_bytes``), bearer authentication (PROTOCOL §1.2:
401/403), the content type, ``?user_id=``, the body (413 again if it grows past the limit
while being read; empty → 400), then the engine (``engine.ingest_body``), whose errors are
mapped by ``api.errors.sql_error`` exactly as for SQL: 400 ``TABLE_NOT_FOUND``, 403
``PERMISSION_DENIED``, 400 ``SQL_EXECUTION_ERROR`` for a bad value, NULL into NOT NULL or
a primary key violation, 400 ``INVALID_INPUT`` for a malformed body or unknown column.

Bodies: ``Content-Type: application/x-ndjson`` (one JSON object per line) or
``application/vnd.apache.arrow.stream`` (an Arrow IPC stream); parameters after ``;`` are
ignored. Any other type is **400** ``INVALID_INPUT`` (not 415): the SQL endpoint answers a
wrong content type with 400 ``INVALID_INPUT`` (§1.3 step 3) and the reference never sends
415, so clients already handle this shape.

Success: ``{"status":"success","row_count":N,"last_seq":"<_seq of the last row>",
"took":ms}`` — ``last_seq`` is a string like every BIGINT on the wire (§3.5). The rows are
durable (one WAL event) before the reply; a rejected request wrote nothing.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from api.auth import authenticate_or_reply
from api.errors import envelope_error, log_request_failure, sql_error, too_large_body
from api.http import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    content_length,
    header,
    query_param,
    read_body,
    send_json,
)
from engine import IngestResult, Session, ingest_body

if TYPE_CHECKING:
    from api.app import SluiceApp

log = logging.getLogger(__name__)

# MIME type -> the engine's body format.
FORMATS = {
    "application/x-ndjson": "ndjson",
    "application/vnd.apache.arrow.stream": "arrow",
}


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def _bad_request(send: Send, message: str, started: float) -> None:
    body = envelope_error({"code": "INVALID_INPUT", "message": message}, _elapsed_ms(started))
    await send_json(send, 400, body)


async def ingest(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    limit = app.config.rate_limit.ingest_body_limit_bytes
    declared = content_length(scope)
    if declared is not None and declared > limit:
        await send_json(send, 413, too_large_body(BodyTooLarge(declared, limit)))
        return
    user = await authenticate_or_reply(app, scope, send, started)
    if user is None:
        return
    content_type = (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    body_format = FORMATS.get(content_type)
    if body_format is None:
        await _bad_request(send, f"Unsupported Content-Type '{content_type}': send "
                                 f"{' or '.join(FORMATS)}", started)
        return
    try:
        raw = await read_body(scope, receive, limit)
    except BodyTooLarge as exc:
        await send_json(send, 413, too_large_body(exc))
        return
    if not raw:
        await _bad_request(send, "The request body is empty", started)
        return
    await _run(app, scope, send, Session(user.user_id, user.role), raw, body_format, started)


async def _run(app: SluiceApp, scope: Scope, send: Send, session: Session, raw: bytes,
               body_format: str, started: float) -> None:
    params = scope["path_params"]
    try:
        result: IngestResult = await ingest_body(
            app.engine, session, params["namespace"], params["table"], raw, body_format,
            user_id=query_param(scope, "user_id"))
    except Exception as exc:  # every failure becomes an envelope
        log_request_failure(log, "POST /v1/api/ingest", exc)
        status, body = sql_error(exc, is_admin=session.is_admin, took_ms=_elapsed_ms(started))
        await send_json(send, status, body)
        return
    await send_json(send, 200, {"status": "success", "row_count": result.row_count,
                                "last_seq": str(result.last_seq),
                                "took": round(_elapsed_ms(started), 3)})
