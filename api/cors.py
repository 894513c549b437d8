"""CORS (PROTOCOL §1.0, §7.2 ``[security.cors]``), applied once in ``SluiceApp`` dispatch.

Policy, as the reference's CORS layer behaves:
- Origins: an empty ``allowed_origins`` or one containing ``"*"`` allows every origin;
  otherwise only exact matches. An allowed origin is *reflected* in
  ``Access-Control-Allow-Origin`` (never a literal ``*``).
- Preflight = ``OPTIONS`` on a known route with ``Origin`` and
  ``Access-Control-Request-Method``. Answered here, before any handler, with 200 and an
  empty body: allow-origin, ``Access-Control-Allow-Methods`` (the configured list),
  ``Access-Control-Allow-Headers`` (the configured list; with ``"*"`` in it, the requested
  headers are echoed), ``Access-Control-Max-Age``, ``Access-Control-Allow-Credentials: true``
  when configured, and ``Vary``. A disallowed origin, method or requested header gets 400 with
  a plain-text reason and no CORS headers.
- Actual responses to an allowed ``Origin`` get allow-origin, ``Vary: Origin``, credentials
  and ``Access-Control-Expose-Headers`` when configured. A disallowed origin is served
  normally but without CORS headers, so the browser withholds the response from the page.
- Requests without ``Origin`` are not touched (the hot path pays only the header scan).

``allow_private_network`` is parsed by the reference but never applied; Sluice ignores it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .http import Scope, Send

if TYPE_CHECKING:
    from .config import CorsSection

# The reasons of a refused preflight (status 400, plain text); the texts are ours.
ORIGIN_NOT_ALLOWED = "Origin is not allowed to make this request"
METHOD_NOT_ALLOWED = "Requested method is not allowed"
HEADERS_NOT_ALLOWED = "One or more request headers are not allowed"
PREFLIGHT_REFUSED_STATUS = 400

_PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class CorsPolicy:
    """``[security.cors]`` compiled once into header values; immutable after ``__init__``
    and safe to share between tasks."""

    def __init__(self, section: CorsSection) -> None:
        origins = [o.strip() for o in section.allowed_origins if o.strip()]
        self.any_origin = not origins or "*" in origins
        self.origins = frozenset(origins)
        self.methods = frozenset(m.strip().upper() for m in section.allowed_methods
                                 if m.strip())
        methods_value = ", ".join(m.strip().upper() for m in section.allowed_methods
                                  if m.strip())
        headers = [h.strip() for h in section.allowed_headers if h.strip()]
        self.any_header = "*" in headers
        self.headers_lower = frozenset(h.lower() for h in headers)
        self.credentials = section.allow_credentials
        common: list[tuple[bytes, bytes]] = []
        if self.credentials:
            common.append((b"access-control-allow-credentials", b"true"))
        expose = ", ".join(h.strip() for h in section.expose_headers if h.strip())
        # What every actual response to an allowed origin carries besides the origin.
        self._actual = [*common, (b"vary", b"Origin")]
        if expose:
            self._actual.append((b"access-control-expose-headers", expose.encode()))
        self._preflight = [*common, (b"access-control-allow-methods", methods_value.encode()),
                           (b"access-control-max-age", str(int(section.max_age)).encode()),
                           (b"vary", _PREFLIGHT_VARY)]
        self._allow_headers = None if self.any_header else ", ".join(headers).encode()

    def allows(self, origin: bytes) -> bool:
        return self.any_origin or origin.decode("latin-1") in self.origins

    def actual_headers(self, origin: bytes) -> list[tuple[bytes, bytes]]:
        """Headers for a normal response to an allowed ``origin``."""
        return [(b"access-control-allow-origin", origin), *self._actual]

    def preflight(self, origin: bytes, method: bytes, requested: bytes | None
                  ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """``(status, headers, body)`` of the answer to a preflight."""
        if not self.allows(origin):
            return _refused(ORIGIN_NOT_ALLOWED)
        if method.decode("latin-1") not in self.methods:
            return _refused(METHOD_NOT_ALLOWED)
        names = [n.strip().lower() for n in (requested or b"").decode("latin-1").split(",")]
        if not self.any_header and any(n and n not in self.headers_lower for n in names):
            return _refused(HEADERS_NOT_ALLOWED)
        headers = [(b"access-control-allow-origin", origin), *self._preflight]
        allow_headers = requested if self.any_header else self._allow_headers
        if allow_headers:
            headers.append((b"access-control-allow-headers", allow_headers))
        return 200, [(b"content-length", b"0"), *headers], b""


def _refused(reason: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = reason.encode()
    return PREFLIGHT_REFUSED_STATUS, [(b"content-type", b"text/plain; charset=utf-8"),
                                      (b"content-length", str(len(body)).encode())], body


def request_origin(scope: Scope) -> bytes | None:
    """The raw ``Origin`` header, or None. A plain loop: this runs on every request."""
    for key, value in scope["headers"]:
        if key == b"origin":
            return value
    return None


def header_bytes(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def is_preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and \
        header_bytes(scope, b"access-control-request-method") is not None


async def answer_preflight(policy: CorsPolicy, scope: Scope, origin: bytes, send: Send
                           ) -> None:
    method = header_bytes(scope, b"access-control-request-method") or b""
    requested = header_bytes(scope, b"access-control-request-headers")
    status, headers, body = policy.preflight(origin, method, requested)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that appends ``extra`` to the response start (the handler is unaware)."""

    async def send_with_headers(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return send_with_headers
