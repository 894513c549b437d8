"""The only place that turns errors into HTTP statuses and KalamDB error envelopes
(PROTOCOL.md §1.2, §1.3 and the decisions table).

Non-admins see redacted messages where the reference redacts them, and never ``details``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    else:
        mapping = Mapping(500, "INTERNAL_ERROR", REDACTED_INTERNAL)
    message = str(exc) if isinstance(exc, EngineError) else REDACTED_INTERNAL
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
