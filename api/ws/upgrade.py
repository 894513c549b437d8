"""The ``GET /v1/ws`` upgrade (PROTOCOL §6.1): origin rules, query options, header pre-auth.

- Origin (``security.cors.allowed_origins``): an empty list or ``*`` allows any; a present
  ``Origin`` must match exactly, else **403** "Origin not allowed"; a missing one is refused
  (403 "Origin header required") only with ``security.strict_ws_origin_check``.
- ``?compress=false`` (any case) turns gzip frames off for this connection.
- ``Authorization: Bearer <jwt>`` on the upgrade authenticates at once: the first frame is
  ``auth_success``, or ``auth_error`` then close 1008.

Refusals before the handshake use the ASGI "websocket.http.response" extension (hypercorn
has it) so the client sees the status and text; without it, a plain close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from ..auth import AuthFailure, bearer_token
from ..cors import request_origin
from ..http import Receive, Scope, Send, header
from .connection import Connection
from .messages import authenticate_token

if TYPE_CHECKING:
    from ..app import SluiceApp


async def _refuse(scope: Scope, send: Send, status: int, text: str) -> None:
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = text.encode()
    await send({"type": "websocket.http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "websocket.http.response.body", "body": body})


def _origin_problem(app: SluiceApp, scope: Scope) -> str | None:
    origin = request_origin(scope)
    if origin is None:
        if app.config.security.strict_ws_origin_check:
            return "Origin header required"
        return None
    return None if app.cors.allows(origin) else "Origin not allowed"


def _compress(scope: Scope) -> bool:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return not any(v.strip().lower() == "false" for v in query.get("compress", []))


async def websocket(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    """The route handler: one call per connection, returns when it is closed."""
    if scope["type"] != "websocket":  # a plain GET without the upgrade
        body = b"WebSocket upgrade required"
        await send({"type": "http.response.start", "status": 400, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    event = await receive()
    if event["type"] != "websocket.connect":
        return  # the client left before the handshake
    if app.shutdown.is_set():
        await _refuse(scope, send, 503, "Server is shutting down")
        return
    problem = _origin_problem(app, scope)
    if problem is not None:
        await _refuse(scope, send, 403, problem)
        return
    await send({"type": "websocket.accept"})
    conn = Connection(app, scope, receive, send, _compress(scope))
    authorization = header(scope, b"authorization")
    if authorization is not None:
        conn.auth_started = True
        try:
            token = bearer_token(authorization)
        except AuthFailure:
            token = ""
        authenticate_token(conn, token, {})
    await conn.run()
