"""The ASGI application and THE route table.

``ROUTES`` below is the only place URLs live: every HTTP endpoint Sluice serves is one
``Route(method, path, handler, description)`` row, and ``SluiceApp`` dispatches
``(method, path)`` through it to a plain ASGI handler
``async def handler(app, scope, receive, send)`` (``app`` is the ``SluiceApp``: its engine,
configuration and process facts). Handlers live in ``api/routes/``.

For now the table holds the health endpoints (PROTOCOL §1.6) and ``POST /v1/api/sql``
(§1.3); later issues add the rest of
PROTOCOL §1.1 (auth, files, exports, topics, WebSocket) as new rows.

Outside the table (PROTOCOL §1.0): an unknown path is an empty-bodied 404 (the reference's
framework default), a known path with another method is an empty-bodied 405 with ``Allow``;
lifespan messages are answered; WebSocket connections are refused until ``/v1/ws`` exists.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from .config import ConfigError, ServerConfig
from .http import Receive, Scope, Send
from .routes import health, sql

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


class SluiceApp:
    """The ASGI app: ``SluiceApp(engine, config)``; ``api_addr`` is set by the server once
    the socket is bound (it defaults to the configured host:port)."""

    def __init__(self, engine: Engine, config: ServerConfig,
                 routes: tuple[Route, ...] = ROUTES) -> None:
        self.engine = engine
        self.config = config
        self.trusted_proxies = trusted_proxy_networks(config)
        self.version = package_version()
        self.hostname = socket.gethostname()
        self.started_monotonic = time.monotonic()
        host = config.server.host
        self.api_addr = f"[{host}]:{config.server.port}" if ":" in host else \
            f"{host}:{config.server.port}"
        self._table: dict[str, dict[str, Handler]] = {}
        for route in routes:
            methods = self._table.setdefault(route.path, {})
            assert route.method not in methods, f"duplicate route {route.method} {route.path}"
            methods[route.method] = route.handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._dispatch(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = self._table.get(scope["path"])
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
