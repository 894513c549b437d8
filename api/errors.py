"""The only place that turns errors into HTTP statuses and KalamDB error envelopes
(PROTOCOL.md §1.2, §1.3 and the decisions table).

Non-admins see redacted messages where the reference redacts them, and never ``details``.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from typing import Any

from api.http import BodyTooLarge
from engine import (
    AlreadyExists,
    BatchParseError,
    EmptySql,
    EngineError,
    InvalidInput,
    InvalidOperation,
    InvalidParameter,
    InvalidSql,
    InvalidValue,
    NotFound,
    ParamsWithBatch,
    PermissionDenied,
    StorageUnavailable,
    TableNotFound,
    TransactionError,
)

REDACTED_INVALID_SQL = "SQL statement is invalid or not allowed"
REDACTED_FAILED = "SQL statement failed"
REDACTED_INTERNAL = "SQL request failed"
# A disk failing under a request (e.g. staging or moving an uploaded FILE) is a storage
# outage, 503 like a poisoned WAL, not a 500 bug (issue 9 fault injection).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS})


def is_disk_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def log_request_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """How a failed request is logged: engine errors are the client's (not logged); a disk
    error is one warning line (an outage the operator must see, not a bug); anything else
    is a bug, logged with its traceback."""
    if isinstance(exc, EngineError):
        return
    if is_disk_error(exc):
        logger.warning("%s failed: storage unavailable: %s", what, exc)
    else:
        logger.error("%s failed unexpectedly", what, exc_info=exc)


@dataclass(frozen=True, slots=True)
class Mapping:
    status: int
    code: str
    redact_for_non_admin: str | None = None  # the public text, when redacted


# Most specific class first: the first isinstance match wins.
_ENGINE_ERRORS: tuple[tuple[type[EngineError], Mapping], ...] = (
    (PermissionDenied, Mapping(403, "PERMISSION_DENIED")),
    (TableNotFound, Mapping(400, "TABLE_NOT_FOUND", REDACTED_FAILED)),
    (InvalidParameter, Mapping(400, "INVALID_PARAMETER")),
    (ParamsWithBatch, Mapping(400, "PARAMS_WITH_BATCH")),
    (BatchParseError, Mapping(400, "BATCH_PARSE_ERROR")),
    (EmptySql, Mapping(400, "EMPTY_SQL")),
    (InvalidInput, Mapping(400, "INVALID_INPUT")),
    (StorageUnavailable, Mapping(503, "STORAGE_UNAVAILABLE")),
    (NotFound, Mapping(400, "SQL_EXECUTION_ERROR")),
    (AlreadyExists, Mapping(400, "SQL_EXECUTION_ERROR")),
    (InvalidOperation, Mapping(400, "SQL_EXECUTION_ERROR")),
    (InvalidValue, Mapping(400, "SQL_EXECUTION_ERROR")),
    (TransactionError, Mapping(400, "SQL_EXECUTION_ERROR")),
)


def sql_error(exc: BaseException, *, is_admin: bool, took_ms: float
              ) -> tuple[int, dict[str, Any]]:
    """The status and error envelope of ``POST /v1/api/sql`` for ``exc``."""
    if isinstance(exc, InvalidSql):
        classify = exc.at_classify or getattr(exc, "phase", None) == "classify"
        mapping = Mapping(400, "INVALID_SQL", REDACTED_INVALID_SQL if classify else None)
    elif isinstance(exc, EngineError):
        mapping = next((m for cls, m in _ENGINE_ERRORS if isinstance(exc, cls)),
                       Mapping(400, "SQL_EXECUTION_ERROR", REDACTED_FAILED))
    elif is_disk_error(exc):
        mapping = Mapping(503, "STORAGE_UNAVAILABLE")
    else:
        mapping = Mapping(500, "INTERNAL_ERROR", REDACTED_INTERNAL)
    message = str(exc) if isinstance(exc, EngineError) else REDACTED_INTERNAL
    if mapping.code == "STORAGE_UNAVAILABLE" and not isinstance(exc, EngineError):
        message = f"Storage unavailable: {os.strerror(exc.errno)}"  # no paths echoed
    index = getattr(exc, "statement_index", None)
    if index is not None and getattr(exc, "phase", None) == "execute":
        message = f"Statement {index} failed: {message}"
    if not is_admin and mapping.redact_for_non_admin is not None:
        message = mapping.redact_for_non_admin
    error: dict[str, Any] = {"code": mapping.code, "message": message}
    statement = getattr(exc, "statement_sql", None)
    if is_admin and statement is not None:
        error["details"] = statement
    return mapping.status, envelope_error(error, took_ms)


def too_large_body(exc: BodyTooLarge) -> dict[str, Any]:
    """The 413 ``BODY_TOO_LARGE`` body (PROTOCOL §1.0)."""
    return {"error": "BODY_TOO_LARGE",
            "message": f"Request body too large: {exc.size_bytes} bytes exceeds the limit "
                       f"of {exc.max_bytes} bytes",
            "size_bytes": exc.size_bytes, "max_bytes": exc.max_bytes}


def envelope_error(error: dict[str, Any], took_ms: float) -> dict[str, Any]:
    return {"status": "error", "results": [], "took": round(took_ms, 3), "error": error}


# PROTOCOL §1.2: the bearer extractor's public codes and messages.
AUTH_ERRORS: dict[str, tuple[int, str]] = {
    "MISSING_AUTHORIZATION": (401, "Authentication required"),
    "TOKEN_EXPIRED": (401, "Invalid credentials"),
    "INVALID_CREDENTIALS": (401, "Invalid credentials"),
    "REMOTE_ACCESS_DENIED": (403, "Access denied"),
    "INSUFFICIENT_PERMISSIONS": (403, "Insufficient permissions"),
    "SETUP_REQUIRED": (428, "Server requires initial setup"),
    "ACCOUNT_LOCKED": (401, "Account locked"),
    "AUTHENTICATION_ERROR": (500, "Authentication failed"),
}


def bearer_error(code: str, took_ms: float) -> tuple[int, dict[str, Any]]:
    status, message = AUTH_ERRORS[code]
    return status, envelope_error({"code": code, "message": message}, took_ms)


# PROTOCOL §1.0 "Rate limiter (post-auth)": the per-user query bucket of POST /v1/api/sql.
QUERY_RATE_MESSAGE = "Too many queries per second. Please slow down."


def query_rate_error(took_ms: float) -> tuple[int, dict[str, Any]]:
    return 429, envelope_error({"code": "RATE_LIMIT_EXCEEDED", "message": QUERY_RATE_MESSAGE},
                               took_ms)


# PROTOCOL §2.2/§2.6: the auth endpoints' own error body ``{"error": <snake code>,
# "message": ...}`` and the status of each code.
AUTH_ENDPOINT_STATUS: dict[str, int] = {
    "unauthorized": 401,
    "account_locked": 401,
    "forbidden": 403,
    "already_configured": 409,
    "user_exists": 409,
    "weak_password": 400,
    "invalid_user": 400,
    "setup_required": 428,
    "rate_limited": 429,
    "internal_error": 500,
}


def auth_endpoint_error(code: str, message: str) -> tuple[int, dict[str, Any]]:
    return AUTH_ENDPOINT_STATUS[code], {"error": code, "message": message}


# PROTOCOL §1.0 connection protection (api/protection.py): both refusals are 429.
PROTECTION_MESSAGES: dict[str, str] = {
    "RATE_LIMIT_EXCEEDED": "Too many requests from this address. Please slow down.",
    "IP_BANNED": "This address is temporarily banned after repeated rate-limit violations.",
}


def protection_error(code: str, retry_after_seconds: int) -> tuple[int, dict[str, Any]]:
    return 429, {"error": code, "message": PROTECTION_MESSAGES[code],
                 "retry_after_seconds": retry_after_seconds}


# PROTOCOL §4.2-§4.3: the topic endpoints' error body ``{"error": <message>, "code": ...}``.
# BAD_REQUEST (a malformed body) is a Sluice choice: the reference answers with its
# framework's plain-text 400; we keep the topic routes' JSON shape.
_TOPIC_ERRORS: tuple[tuple[type[EngineError], int, str], ...] = (
    (PermissionDenied, 403, "FORBIDDEN"),
    (NotFound, 404, "NOT_FOUND"),
    (InvalidInput, 400, "BAD_REQUEST"),
    (StorageUnavailable, 503, "STORAGE_UNAVAILABLE"),
)


def topic_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and body of a failed ``/v1/api/topics/*`` request; anything unexpected is a
    500 ``INTERNAL_ERROR`` (its text is not echoed)."""
    for cls, status, code in _TOPIC_ERRORS:
        if isinstance(exc, cls):
            return status, {"error": str(exc), "code": code}
    return 500, {"error": "Topic request failed", "code": "INTERNAL_ERROR"}


# PROTOCOL §5.1/§5.3: a multipart upload refused while its body is read or checked. All are
# 400 in the SQL envelope (INVALID_MIME_TYPE too: the decisions table; the reference leaks a
# 500). MISSING_FILE (a placeholder with no part) is a code the reference declares but never
# emits (§10 item 14); Sluice uses it rather than failing later in the parser.
UPLOAD_ERROR_CODES = frozenset({
    "INVALID_INPUT", "EMPTY_SQL", "INVALID_PARAMETER", "FILE_TOO_LARGE", "TOO_MANY_FILES",
    "INVALID_MIME_TYPE", "MISSING_FILE",
})


def upload_error(code: str, message: str, took_ms: float) -> tuple[int, dict[str, Any]]:
    assert code in UPLOAD_ERROR_CODES, code
    return 400, envelope_error({"code": code, "message": message}, took_ms)


# PROTOCOL §5.4: the download route's refusals. Table and file misses have their own small
# bodies; the rest use the SQL envelope.
def file_download_error(code: str, message: str, took_ms: float
                        ) -> tuple[int, dict[str, Any]]:
    if code == "TABLE_NOT_FOUND":
        return 404, {"error": message}
    if code == "FILE_NOT_FOUND":
        return 404, {"error": "File not found", "code": "FILE_NOT_FOUND"}
    status = {"INVALID_INPUT": 400, "PERMISSION_DENIED": 403}[code]
    return status, envelope_error({"code": code, "message": message}, took_ms)
