"""``POST /v1/api/sql`` (PROTOCOL §1.3), a raw-ASGI hot route.

Order: the body limit from ``Content-Length`` (413, before anything is read; PROTOCOL §1.0),
authentication (§1.2: 401/403), the per-user query rate (429 ``RATE_LIMIT_EXCEEDED``, §1.0;
one dict lookup in ``app.query_limiter``), body parsing (400 ``INVALID_INPUT``), then the
engine, whose errors are mapped by ``api.errors.sql_error``. A single statement that returns
rows gets the streamed shape of ``api/sql_rows.py`` (``"error": null``).

Request fields: ``sql`` (required string; missing or blank → 400 ``EMPTY_SQL``), ``params``
(optional array: scalars, or — Sluice extension — an array of arrays, one INSERT per inner
array; the engine validates the values) and ``namespace_id`` (optional string, default
``"default"``). Unknown fields are ignored.

A ``multipart/form-data`` body (§1.3 multipart form, §5 FILE uploads) is handed to
``api/upload.py`` before any of it is read: it is streamed, never held whole. A JSON body
whose SQL holds a ``FILE("x")`` placeholder is 400 ``INVALID_INPUT`` (§5.1 rule 1).
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from api.auth import authenticate_or_reply
from api.errors import (
    envelope_error,
    log_request_failure,
    query_rate_error,
    sql_error,
    too_large_body,
)
from api.http import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    content_length,
    header,
    read_body,
    send_json,
)
from api.sql_rows import is_single_rows_result, prepare_rows_response
from api.upload import sql_multipart
from engine import Session
from engine.catalog import DEFAULT_NAMESPACE
from engine.sql.file_upload import has_file_placeholders

if TYPE_CHECKING:
    from api.app import SluiceApp

log = logging.getLogger(__name__)


class BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def sql(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    limit = app.config.rate_limit.request_body_limit_bytes
    declared = content_length(scope)
    if declared is not None and declared > limit:
        await send_json(send, 413, too_large_body(BodyTooLarge(declared, limit)))
        return

    user = await authenticate_or_reply(app, scope, send, started)
    if user is None:
        return
    limiter = app.query_limiter
    if limiter is not None and not limiter.allow(user.user_id, time.monotonic()):
        status, body = query_rate_error(_elapsed_ms(started))
        # Retry-After is a Sluice addition (the reference sends none here): whole seconds,
        # rounded up, at least 1.
        wait_s = max(1, math.ceil(limiter.retry_after_seconds(user.user_id, time.monotonic())))
        await send_json(send, status, body, [(b"retry-after", str(wait_s).encode())])
        return

    content_type = header(scope, b"content-type")
    if _is_multipart(content_type):  # FILE uploads (§5): streamed, never read whole
        await sql_multipart(app, scope, receive, send, user, content_type, started)
        return
    try:
        raw = await read_body(scope, receive, limit)
    except BodyTooLarge as exc:
        await send_json(send, 413, too_large_body(exc))
        return

    try:
        sql_text, params, namespace = parse_request(content_type, raw)
    except BadRequest as exc:
        body = envelope_error({"code": exc.code, "message": exc.message},
                              _elapsed_ms(started))
        await send_json(send, 400, body)
        return

    session = Session(user.user_id, user.role, namespace)
    try:
        results = await app.engine.execute(session, sql_text, params)
    except Exception as exc:  # every failure becomes an envelope
        await reply_error(send, exc, session, started)
        return
    await reply_results(send, results, session, started)


async def reply_error(send: Send, exc: Exception, session: Session, started: float) -> None:
    """The error envelope for a failed execution (unexpected errors are logged)."""
    log_request_failure(log, "POST /v1/api/sql", exc)
    status, body = sql_error(exc, is_admin=session.is_admin, took_ms=_elapsed_ms(started))
    await send_json(send, status, body)


async def reply_results(send: Send, results: list, session: Session, started: float
                        ) -> None:
    """The success reply: streamed rows for a single row-returning statement (§1.3)."""
    try:
        if is_single_rows_result(results):
            rows = prepare_rows_response(results[0], _elapsed_ms(started))
        else:
            rows, payload = None, [result.to_json() for result in results]
    except Exception as exc:  # e.g. a row serialisation failure (500 INTERNAL_ERROR)
        await reply_error(send, exc, session, started)
        return
    if rows is not None:
        await rows.send(send)  # outside the try: once started, failures abort the stream
        return
    await send_json(send, 200, {"status": "success", "results": payload,
                                "took": round(_elapsed_ms(started), 3)})


def _is_multipart(content_type: str | None) -> bool:
    return content_type is not None and content_type.strip().lower().startswith(
        "multipart/form-data")


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/")
                                           and mime.endswith("+json"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_request(content_type: str | None, raw: bytes
                  ) -> tuple[str, list[Any], str]:
    """``(sql, params, namespace_id)`` of a JSON request body; raises ``BadRequest``."""
    if not _is_json(content_type):
        raise BadRequest("INVALID_INPUT", "Invalid JSON payload: Content type error")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("INVALID_INPUT", f"Invalid JSON payload: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("INVALID_INPUT",
                         "Invalid JSON payload: expected an object with a \"sql\" field")
    sql_text = data.get("sql")
    if sql_text is not None and not isinstance(sql_text, str):
        raise BadRequest("INVALID_INPUT", "Invalid JSON payload: \"sql\" must be a string")
    if sql_text is None or not sql_text.strip():
        raise BadRequest("EMPTY_SQL", "No SQL statements provided")
    params = data.get("params")
    if params is None:
        params = []
    elif not isinstance(params, list):
        raise BadRequest("INVALID_INPUT", "Invalid JSON payload: \"params\" must be an array")
    if has_file_placeholders(sql_text):  # §5.1 rule 1
        raise BadRequest("INVALID_INPUT", "FILE placeholders require multipart/form-data")
    namespace = data.get("namespace_id")
    if namespace is None:
        namespace = DEFAULT_NAMESPACE
    elif not isinstance(namespace, str):
        raise BadRequest("INVALID_INPUT",
                         "Invalid JSON payload: \"namespace_id\" must be a string")
    return sql_text, params, namespace
