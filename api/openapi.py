"""The OpenAPI 3.1 description of the HTTP routes, served at ``GET /v1/api/openapi.json``.

The document is *generated from* THE route table (api/app.py ``ROUTES``): every row gives
one operation — its method, its path and, as the summary, the row's description — and
``OPERATIONS`` below adds what the table does not know (request and response schemas,
parameters, security), keyed by the same ``(method, path)``. ``document(routes)`` refuses
(``ValueError``) a row without an entry here and an entry without a row, so the two cannot
drift; tests/api/test_openapi.py checks that too, and the fuzzer (tests/api/
test_fuzz_openapi.py) sends what the document allows to a real server.

What the document promises and what it leaves out:
- Responses list the statuses each route can answer to a *client* (no 5xx except the 503
  of an unhealthy engine): a 500 is a bug, never a documented outcome. The router's own
  replies hold for every path and are not repeated per operation: an unknown path is an
  empty 404, another method an empty 405 with ``Allow``, and connection protection may
  answer 429 to a non-loopback client.
- Schemas describe the fields a client sends and reads; unknown request fields are
  ignored except on the auth bodies (PROTOCOL §2.6: strict), which say so with
  ``additionalProperties: false``.
- ``GET /v1/ws`` is a WebSocket upgrade; OpenAPI cannot describe the frame protocol
  (PROTOCOL §6), so only the plain-GET refusal (400) and the 101 are listed.
- The document itself is public (no auth): it holds no secret and no data, only the shape
  of the API every client library already knows.

Pure and synchronous: ``document`` builds a fresh dict (about a millisecond; the route is
not a hot one, so nothing is cached).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .http import Receive, Scope, Send

if TYPE_CHECKING:
    from .app import SluiceApp

OPENAPI_VERSION = "3.1.0"
BEARER = [{"bearer": []}]


class RouteRow(Protocol):
    method: str
    path: str
    description: str


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"text/plain": {"schema": {"type": "string"}}}}


_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_ENVELOPE = _json(_ref("ErrorEnvelope"), "error envelope (PROTOCOL §1.3)")
_AUTH_ERROR = _json(_ref("AuthError"), "auth endpoint error (PROTOCOL §2.6)")
_TOPIC_ERROR = _json(_ref("TopicError"), "topic error (PROTOCOL §4)")
_TOO_LARGE = _json(_ref("BodyTooLarge"), "the body exceeds the configured limit")
# What a bearer-authenticated route answers before it looks at the request (PROTOCOL §1.2).
_BEARER_REFUSALS = {
    "401": _json(_ref("ErrorEnvelope"), "missing, invalid or expired bearer token"),
    "403": _json(_ref("ErrorEnvelope"), "the token's user may not use this route"),
    "428": _json(_ref("ErrorEnvelope"), "the server needs its first-run setup"),
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "ErrorEnvelope": {
        "type": "object", "required": ["status", "error"],
        "properties": {
            "status": {"const": "error"}, "results": {"type": "array"},
            "took": {"type": "number"},
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": _STRING, "message": _STRING, "details": _STRING}}}},
    "AuthError": {"type": "object", "required": ["error", "message"],
                  "properties": {"error": _STRING, "message": _STRING}},
    "TopicError": {"type": "object", "required": ["error", "code"],
                   "properties": {"error": _STRING, "code": _STRING}},
    "BodyTooLarge": {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"const": "BODY_TOO_LARGE"}, "message": _STRING,
        "size_bytes": {"type": "integer"}, "max_bytes": {"type": "integer"}}},
    "Health": {"type": "object", "required": ["status"], "properties": {
        "status": {"enum": ["healthy", "unhealthy"]}, "version": _STRING,
        "api_version": _STRING, "build_date": _STRING}},
    "ClusterHealth": {"type": "object", "required": ["status", "nodes"], "properties": {
        "status": {"enum": ["healthy", "unhealthy"]}, "nodes": {"type": "array"}}},
    "SqlRequest": {
        "type": "object", "required": ["sql"],
        "properties": {
            "sql": {"type": "string", "description": "one or more statements"},
            "params": {"type": "array", "description": "$1.. values, or an array of arrays "
                                                       "(one INSERT per inner array)"},
            "namespace_id": {"type": "string", "default": "default"}}},
    "SqlMultipart": {
        "type": "object", "required": ["sql"],
        "properties": {"sql": _STRING, "params": {"type": "string",
                                                  "description": "a JSON array"},
                       "namespace_id": _STRING}},
    "SqlResponse": {"type": "object", "required": ["status", "results"], "properties": {
        "status": {"const": "success"}, "results": {"type": "array"},
        "took": {"type": "number"}}},
    "IngestResponse": {
        "type": "object", "required": ["status", "row_count", "last_seq"], "properties": {
            "status": {"const": "success"}, "row_count": {"type": "integer"},
            "last_seq": {"type": "string"}, "took": {"type": "number"}}},
    "UserInfo": {"type": "object", "required": ["id", "role"], "properties": {
        "id": _STRING, "role": _STRING, "email": _NULLABLE_STRING, "created_at": _STRING,
        "updated_at": _STRING}},
    "LoginRequest": {
        "type": "object", "required": ["user", "password"], "additionalProperties": False,
        "properties": {"user": {"type": "string", "maxLength": 128},
                       "password": {"type": "string", "maxLength": 256}}},
    "SetupRequest": {
        "type": "object", "required": ["user", "password", "root_password"],
        "additionalProperties": False,
        "properties": {"user": {"type": "string", "maxLength": 128},
                       "password": {"type": "string", "maxLength": 256},
                       "root_password": {"type": "string", "maxLength": 256},
                       "email": _NULLABLE_STRING}},
    "TokenPair": {
        "type": "object",
        "required": ["user", "access_token", "refresh_token", "expires_at"],
        "properties": {"user": _ref("UserInfo"), "admin_ui_access": {"type": "boolean"},
                       "expires_at": _STRING, "access_token": _STRING,
                       "refresh_token": _STRING, "refresh_expires_at": _STRING}},
    "Me": {"type": "object", "required": ["user"], "properties": {
        "user": _ref("UserInfo"), "admin_ui_access": {"type": "boolean"}}},
    "SetupStatus": {"type": "object", "required": ["needs_setup"], "properties": {
        "needs_setup": {"type": "boolean"}, "message": _STRING}},
    "SetupDone": {"type": "object", "required": ["user", "message"], "properties": {
        "user": _ref("UserInfo"), "message": _STRING}},
    "Message": {"type": "object", "required": ["message"], "properties": {"message": _STRING}},
    "ConsumeRequest": {
        "type": "object", "required": ["topic_id", "group_id"], "properties": {
            "topic_id": _STRING, "group_id": _STRING,
            "start": {"oneOf": [
                {"type": "string", "description": "Latest or Earliest, any case"},
                {"type": "object", "properties": {"Offset": {"type": "integer",
                                                             "minimum": 0}}}]},
            "limit": {"type": "integer", "minimum": 0, "default": 100},
            "partition_id": {"type": "integer", "minimum": 0, "default": 0},
            "timeout_seconds": {"type": "number", "minimum": 0, "default": 0,
                                "description": "long-poll seconds, at most the server's "
                                               "topic_long_poll_max_seconds"}}},
    "ConsumeResponse": {
        "type": "object", "required": ["messages", "next_offset", "has_more"], "properties": {
            "messages": {"type": "array", "items": {"type": "object"}},
            "next_offset": {"type": "integer"}, "has_more": {"type": "boolean"}}},
    "AckRequest": {
        "type": "object", "required": ["topic_id", "group_id", "upto_offset"], "properties": {
            "topic_id": _STRING, "group_id": _STRING,
            "upto_offset": {"type": "integer", "minimum": 0},
            "partition_id": {"type": "integer", "minimum": 0, "default": 0}}},
    "AckResponse": {"type": "object", "required": ["success", "acknowledged_offset"],
                    "properties": {"success": {"const": True},
                                   "acknowledged_offset": {"type": "integer"}}},
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}}


_USER_ID_QUERY = {"name": "user_id", "in": "query", "required": False,
                  "schema": {"type": "string"},
                  "description": "act on this user's partition (impersonation rules §2.7)"}


def _health(schema: str) -> dict[str, Any]:
    return {"security": [], "responses": {
        "200": _json(_ref(schema), "healthy"),
        "403": _json({"type": "object"}, "not a localhost client"),
        "503": _json(_ref(schema), "unhealthy: the WAL refuses writes")}}


def _json_body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _auth_responses(ok: str, *codes: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(_ref(ok), "success")}
    for code in codes:
        responses[code] = _AUTH_ERROR
    return responses


# (method, path) -> what the route table cannot say. Keep one entry per ROUTES row.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): _health("Health"),
    ("GET", "/v1/api/healthcheck"): _health("Health"),
    ("GET", "/v1/api/cluster/health"): _health("ClusterHealth"),
    ("GET", "/v1/api/openapi.json"): {"security": [], "responses": {
        "200": _json({"type": "object"}, "this document")}},
    ("POST", "/v1/api/sql"): {
        "security": BEARER,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("SqlRequest")},
            "multipart/form-data": {"schema": _ref("SqlMultipart")}}},
        "responses": {"200": _json(_ref("SqlResponse"), "statement results"),
                      "400": _ENVELOPE, **_BEARER_REFUSALS, "413": _TOO_LARGE,
                      "429": _json(_ref("ErrorEnvelope"), "per-user query rate exceeded"),
                      "503": _json(_ref("ErrorEnvelope"), "storage unavailable")}},
    ("GET", "/v1/files/{namespace}/{table_name}/{subfolder}/{file_id}"): {
        "security": BEARER,
        "parameters": [_path_param("namespace"), _path_param("table_name"),
                       _path_param("subfolder"), _path_param("file_id"), _USER_ID_QUERY],
        "responses": {
            "200": {"description": "the file's bytes",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
            "400": _ENVELOPE, **_BEARER_REFUSALS,
            "404": _json({"type": "object"}, "no such table or file")}},
    ("GET", "/v1/exports/{user_id}/{export_id}"): {
        "security": BEARER,
        "parameters": [_path_param("user_id"), _path_param("export_id")],
        "responses": {
            "200": {"description": "the export ZIP (EXPORT USER DATA)",
                    "content": {"application/zip": {
                        "schema": {"type": "string", "format": "binary"}}}},
            "400": _ENVELOPE, **_BEARER_REFUSALS,
            "404": _json({"type": "object"}, "no such export")}},
    ("POST", "/v1/api/ingest/{namespace}/{table}"): {
        "security": BEARER,
        "parameters": [_path_param("namespace"), _path_param("table"), _USER_ID_QUERY],
        "requestBody": {"required": True, "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "application/vnd.apache.arrow.stream": {
                "schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": _json(_ref("IngestResponse"), "rows durable"),
                      "400": _ENVELOPE, **_BEARER_REFUSALS, "413": _TOO_LARGE,
                      "503": _json(_ref("ErrorEnvelope"), "storage unavailable")}},
    ("POST", "/v1/api/auth/setup"): {
        "security": [], "requestBody": _json_body("SetupRequest"),
        "responses": {**_auth_responses("SetupDone", "403", "409", "429"),
                      "400": {"description": "unreadable body (text) or refused value",
                              "content": {"text/plain": {"schema": _STRING},
                                          "application/json": {"schema": _ref("AuthError")}}},
                      "413": _TOO_LARGE}},
    ("GET", "/v1/api/auth/status"): {
        "security": [], "responses": _auth_responses("SetupStatus", "403")},
    ("POST", "/v1/api/auth/login"): {
        "security": [], "requestBody": _json_body("LoginRequest"),
        "responses": {**_auth_responses("TokenPair", "401", "429"),
                      "400": _text("unreadable body"), "413": _TOO_LARGE}},
    ("POST", "/v1/api/auth/refresh"): {
        "security": [], "responses": _auth_responses("TokenPair", "401", "429")},
    ("POST", "/v1/api/auth/logout"): {
        "security": [], "responses": {"200": _json(_ref("Message"), "cookies cleared")}},
    ("GET", "/v1/api/auth/me"): {
        "security": BEARER, "responses": _auth_responses("Me", "401")},
    ("POST", "/v1/api/topics/consume"): {
        "security": BEARER, "requestBody": _json_body("ConsumeRequest"),
        "responses": {"200": _json(_ref("ConsumeResponse"), "messages"),
                      "400": _TOPIC_ERROR, **_BEARER_REFUSALS, "403": _TOPIC_ERROR,
                      "404": _TOPIC_ERROR, "413": _TOO_LARGE, "503": _TOPIC_ERROR}},
    ("POST", "/v1/api/topics/ack"): {
        "security": BEARER, "requestBody": _json_body("AckRequest"),
        "responses": {"200": _json(_ref("AckResponse"), "offset committed"),
                      "400": _TOPIC_ERROR, **_BEARER_REFUSALS, "403": _TOPIC_ERROR,
                      "404": _TOPIC_ERROR, "413": _TOO_LARGE, "503": _TOPIC_ERROR}},
    ("GET", "/v1/ws"): {
        "security": [], "parameters": [{"name": "compress", "in": "query", "required": False,
                                        "schema": {"type": "string"}}],
        "responses": {"101": {"description": "WebSocket upgrade (PROTOCOL §6)"},
                      "400": _text("a plain GET without the upgrade"),
                      "403": _text("Origin not allowed")}},
}


def document(routes: Iterable[RouteRow], version: str) -> dict[str, Any]:
    """The OpenAPI document of ``routes``; raises ``ValueError`` when a row has no entry in
    ``OPERATIONS`` or an entry has no row."""
    rows = list(routes)
    keys = {(row.method, row.path) for row in rows}
    missing = sorted(keys - OPERATIONS.keys())
    if missing:
        raise ValueError(f"routes without an OpenAPI description: {missing}")
    stale = sorted(OPERATIONS.keys() - keys)
    if stale:
        raise ValueError(f"OpenAPI descriptions without a route: {stale}")
    paths: dict[str, dict[str, Any]] = {}
    for row in rows:
        operation = {"summary": row.description,
                     "operationId": _operation_id(row.method, row.path),
                     **OPERATIONS[(row.method, row.path)]}
        paths.setdefault(row.path, {})[row.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Sluice HTTP API", "version": version,
                 "description": "KalamDB-compatible HTTP API of Sluice (PROTOCOL.md)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": BEARER,
    }


def _operation_id(method: str, path: str) -> str:
    words = [part.strip("{}") for part in path.split("/") if part]
    return "_".join([method.lower(), *words]).replace(".", "_")


async def openapi_json(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /v1/api/openapi.json``: public, no auth (see the module docstring)."""
    data = json.dumps(document(app.routes, app.version), separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
