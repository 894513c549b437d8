"""The ASGI application and THE route table.

``ROUTES`` below is the only place URLs live: every HTTP endpoint Sluice serves is one
``Route(method, path, handler, description)`` row, and ``SluiceApp`` dispatches
``(method, path)`` through it to a plain ASGI handler
``async def handler(app, scope, receive, send)`` (``app`` is the ``SluiceApp``: its engine,
configuration and process facts). Handlers live in ``api/routes/``.

For now the table holds the health endpoints (PROTOCOL §1.6), ``POST /v1/api/sql``
(§1.3), the auth endpoints (§2.6) and the topic endpoints (§4); later issues add the rest
of PROTOCOL §1.1 (files, exports, WebSocket) as new rows.

A path may hold ``{name}`` segments (api/routing.py: each decoded once, never containing
``/``); the handler finds them in ``scope["path_params"]``. Exact paths are one dict lookup
and are tried first; templates only when that misses.

Outside the table (PROTOCOL §1.0): an unknown path is an empty-bodied 404 (the reference's
framework default), a known path with another method is an empty-bodied 405 with ``Allow``;
lifespan messages are answered; a WebSocket connection goes to the ``GET`` row of its path
(only ``/v1/ws``, api/ws/), any other path's is closed.
CORS (api/cors.py) wraps the whole table: preflights of known paths are answered here and
responses to an allowed ``Origin`` get the CORS headers.
Then connection protection (api/protection.py: the per-client-IP request budget and bans)
runs for every request, before routing and authentication; loopback clients skip it.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import trio

from . import cors, openapi, protection, routing
from .config import ConfigError, ServerConfig
from .http import Receive, Scope, Send, client_ip
from .rate_limit import TokenBucketLimiter
from .routes import auth, exports, files, health, ingest, sql, topics
from .ws import websocket

if TYPE_CHECKING:
    from engine import Engine

Handler = Callable[["SluiceApp", Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    description: str


# THE route table (PROTOCOL §1.1). Add endpoints here and nowhere else.
ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", health.health, "server health, localhost-only (§1.6)"),
    Route("GET", "/v1/api/healthcheck", health.health, "alias of /health (§1.6)"),
    Route("GET", "/v1/api/cluster/health", health.cluster_health,
          "one-node cluster document, localhost-only (§1.6)"),
    Route("POST", "/v1/api/sql", sql.sql, "execute SQL, bearer-authenticated (§1.2, §1.3)"),
    Route("GET", "/v1/exports/{user_id}/{export_id}", exports.download,
          "download an EXPORT USER DATA zip, owner or admin (§1.5)"),
    Route("GET", "/v1/files/{namespace}/{table_name}/{subfolder}/{file_id}", files.download,
          "download a FILE column's file, streamed (§5.4)"),
    Route("POST", "/v1/api/ingest/{namespace}/{table}", ingest.ingest,
          "bulk ingestion: NDJSON or Arrow IPC stream, one atomic durable event (issue 4)"),
    Route("POST", "/v1/api/auth/setup", auth.setup,
          "first-run setup: root password + DBA user; localhost unless allowed (§2.2)"),
    Route("GET", "/v1/api/auth/status", auth.status, "does the server need setup? (§2.2)"),
    Route("POST", "/v1/api/auth/login", auth.login, "password login: token pair + cookies (§2.6)"),
    Route("POST", "/v1/api/auth/refresh", auth.refresh,
          "new token pair from a refresh token (cookie or Bearer) (§2.6)"),
    Route("POST", "/v1/api/auth/logout", auth.logout, "clears the auth cookies (§2.6)"),
    Route("GET", "/v1/api/auth/me", auth.me, "the caller, from Bearer or cookie (§2.6)"),
    Route("POST", "/v1/api/topics/consume", topics.consume,
          "topic messages for a consumer group; long-poll (§4.2)"),
    Route("POST", "/v1/api/topics/ack", topics.ack, "commit a group's offset (§4.3)"),
    Route("GET", "/v1/ws", websocket, "live queries over WebSocket (§6); api/ws/"),
    Route("GET", "/v1/api/openapi.json", openapi.openapi_json,
          "this table as an OpenAPI 3.1 document; public, no auth (issue 9, api/openapi.py)"),
)


def package_version() -> str:
    try:
        return metadata.version("sluice")
    except metadata.PackageNotFoundError:  # a tree that was never installed
        return "unknown"


def trusted_proxy_networks(config: ServerConfig) -> list[ipaddress._BaseNetwork]:
    """``security.trusted_proxy_ranges`` parsed; a bad entry is a ``ConfigError``."""
    networks = []
    for entry in config.security.trusted_proxy_ranges:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ConfigError(f"security.trusted_proxy_ranges: {entry!r}: {exc}") from exc
    return networks


def query_rate_limiter(config: ServerConfig) -> TokenBucketLimiter | None:
    """The per-user ``POST /v1/api/sql`` bucket (PROTOCOL §1.0): burst and refill of
    ``rate_limit.max_queries_per_sec``; None when that is 0 (off)."""
    rate = config.rate_limit.max_queries_per_sec
    if rate < 0:
        raise ConfigError(f"rate_limit.max_queries_per_sec must be >= 0, got {rate}")
    return TokenBucketLimiter(rate, rate) if rate else None


class SluiceApp:
    """The ASGI app: ``SluiceApp(engine, config)``; ``api_addr`` is set by the server once
    the socket is bound (it defaults to the configured host:port)."""

    def __init__(self, engine: Engine, config: ServerConfig,
                 routes: tuple[Route, ...] = ROUTES) -> None:
        self.engine = engine
        self.config = config
        self.routes = routes  # described by GET /v1/api/openapi.json
        self.trusted_proxies = trusted_proxy_networks(config)
        self.cors = cors.CorsPolicy(config.security.cors)
        self.query_limiter = query_rate_limiter(config)
        self.auth_limiter = auth.new_auth_limiter(config)  # per client IP (§1.0)
        self.guard = protection.guard_for(config)  # per-IP budget and bans (§1.0)
        self.version = package_version()
        self.hostname = socket.gethostname()
        self.started_monotonic = time.monotonic()
        # Set when the server starts draining (api/serve.py): WebSockets close with 1001.
        self.shutdown = trio.Event()
        host = config.server.host
        self.api_addr = f"[{host}]:{config.server.port}" if ":" in host else \
            f"{host}:{config.server.port}"
        self._table: dict[str, dict[str, Handler]] = {}
        # Rows with {parameters}: (template, method -> handler), tried after the exact paths.
        self._templates: list[tuple[routing.PathTemplate, dict[str, Handler]]] = []
        for route in routes:
            methods = self._template_methods(route.path) if routing.is_template(route.path) \
                else self._table.setdefault(route.path, {})
            assert route.method not in methods, f"duplicate route {route.method} {route.path}"
            methods[route.method] = route.handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._dispatch(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await self._dispatch_websocket(scope, receive, send)

    async def _dispatch_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The upgrade is a GET: the table's GET row for the path handles it (origin rules
        # and all are the handler's, PROTOCOL §6.1); other paths are refused.
        handler = self._table.get(scope["path"], {}).get("GET")
        if handler is not websocket:
            await send({"type": "websocket.close", "code": 1000})
            return
        await handler(self, scope, receive, send)

    @property
    def api_addr(self) -> str:
        return self._api_addr

    @api_addr.setter
    def api_addr(self, value: str) -> None:
        # SUBSCRIBE TO answers with this server's real WebSocket URL (decisions table).
        self._api_addr = value
        live = getattr(self.engine, "live", None)  # absent in stand-in engines of unit tests
        if live is not None:
            live.ws_url = f"ws://{value}/v1/ws"

    def _template_methods(self, path: str) -> dict[str, Handler]:
        for template, methods in self._templates:
            if template.path == path:
                return methods
        methods = {}
        self._templates.append((routing.PathTemplate.parse(path), methods))
        return methods

    def _match_template(self, scope: Scope) -> dict[str, Handler] | None:
        """The methods of the first template the path fits; sets ``scope["path_params"]``."""
        parts = routing.path_segments(scope)
        if parts is None:
            return None
        for template, methods in self._templates:
            params = template.match(parts)
            if params is not None:
                scope["path_params"] = params
                return methods
        return None

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = self._table.get(scope["path"])
        if methods is None and self._templates:
            methods = self._match_template(scope)
        origin = cors.request_origin(scope)
        if origin is not None:
            if methods is not None and cors.is_preflight(scope):
                await cors.answer_preflight(self.cors, scope, origin, send)
                return
            if self.cors.allows(origin):
                send = cors.with_headers(send, self.cors.actual_headers(origin))
        if self.guard is not None and await self.guard.refuse(
                client_ip(scope, self.trusted_proxies), send):
            return
        if methods is None:
            await _empty(send, 404)
            return
        handler = methods.get(scope["method"])
        if handler is None:
            allow = ", ".join(sorted(methods)).encode()
            await _empty(send, 405, [(b"allow", allow)])
            return
        await handler(self, scope, receive, send)


async def _empty(send: Send, status: int, headers: list[tuple[bytes, bytes]] | None = None
                 ) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", b"0"), *(headers or [])]})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    # The engine is opened and closed around the server (api/serve.py), so there is nothing
    # to do here but acknowledge.
    while True:
        message: dict[str, Any] = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
