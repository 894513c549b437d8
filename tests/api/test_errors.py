"""The error → HTTP status/code map of PROTOCOL §1.3, with non-admin redaction."""

from __future__ import annotations

import pytest

from api.errors import sql_error
from engine import (
    AlreadyExists,
    InvalidParameter,
    InvalidSql,
    ParamsWithBatch,
    PermissionDenied,
    StorageUnavailable,
    TableNotFound,
)


def located(exc: Exception, phase: str, index: int = 2) -> Exception:
    exc.statement_index, exc.statement_sql, exc.phase = index, "SELECT x", phase
    return exc


@pytest.mark.parametrize(("exc", "admin", "status", "code", "message"), [
    (located(TableNotFound("Table 'a.b' does not exist"), "execute"), True, 400,
     "TABLE_NOT_FOUND", "Statement 2 failed: Table 'a.b' does not exist"),
    (located(TableNotFound("Table 'a.b' does not exist"), "execute"), False, 400,
     "TABLE_NOT_FOUND", "SQL statement failed"),
    (located(InvalidSql("bad", at_classify=True), "classify"), False, 400, "INVALID_SQL",
     "SQL statement is invalid or not allowed"),
    (located(InvalidSql("bad"), "execute"), False, 400, "INVALID_SQL", "Statement 2 failed: bad"),
    (located(PermissionDenied("Admin privileges required"), "classify"), False, 403,
     "PERMISSION_DENIED", "Admin privileges required"),
    (located(AlreadyExists("Primary key violation: value '1'"), "execute"), False, 400,
     "SQL_EXECUTION_ERROR", "Statement 2 failed: Primary key violation: value '1'"),
    (InvalidParameter("Parameter $1 invalid"), False, 400, "INVALID_PARAMETER",
     "Parameter $1 invalid"),
    (ParamsWithBatch("no"), False, 400, "PARAMS_WITH_BATCH", "no"),
    (located(StorageUnavailable("log poisoned"), "execute"), False, 503, "STORAGE_UNAVAILABLE",
     "Statement 2 failed: log poisoned"),
    (RuntimeError("boom"), True, 500, "INTERNAL_ERROR", "SQL request failed"),
])
def test_sql_error__mapping_and_redaction(exc: Exception, admin: bool, status: int, code: str,
                                          message: str) -> None:
    got_status, body = sql_error(exc, is_admin=admin, took_ms=1.23456)
    assert (got_status, body["error"]["code"], body["error"]["message"]) == (status, code,
                                                                             message)
    assert body["status"] == "error" and body["results"] == [] and body["took"] == 1.235
    assert ("details" in body["error"]) == (admin and hasattr(exc, "statement_sql"))
