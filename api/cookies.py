"""The auth cookies of PROTOCOL §2.5: ``kalamdb_auth`` (access JWT) and ``kalamdb_refresh``
(refresh JWT).

Attributes, in the order the reference's cookie library writes them:
``HttpOnly; SameSite=Strict[; Secure]; Path=/; Expires=<HTTP date>`` — no ``Domain`` and no
``Max-Age`` (the reference sets only ``Expires``, to the token's expiry). ``Secure`` is set
only when ``auth.cookie_secure`` is on **and** the request came over https, so it never
appears over plain HTTP. Logout sends both cookies empty with ``Expires`` at the Unix epoch.

Parsing (``request_cookies``) is lenient: ``;``-separated ``name=value`` pairs, first one of a
name wins, malformed pairs are skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from .http import Scope, header

AUTH_COOKIE = "kalamdb_auth"
REFRESH_COOKIE = "kalamdb_refresh"
_EPOCH = datetime.fromtimestamp(0, UTC)


def wants_secure(scope: Scope, cookie_secure: bool) -> bool:
    return cookie_secure and scope.get("scheme") == "https"


def set_cookie(name: str, value: str, expires: datetime, secure: bool) -> tuple[bytes, bytes]:
    """One ``Set-Cookie`` header (name, value) for the response's header list."""
    parts = [f"{name}={value}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    parts += ["Path=/", f"Expires={format_datetime(expires.astimezone(UTC), usegmt=True)}"]
    return b"set-cookie", "; ".join(parts).encode("latin-1")


def token_cookies(access: str, access_expires: datetime, refresh: str,
                  refresh_expires: datetime, secure: bool) -> list[tuple[bytes, bytes]]:
    return [set_cookie(AUTH_COOKIE, access, access_expires, secure),
            set_cookie(REFRESH_COOKIE, refresh, refresh_expires, secure)]


def cleared_cookies(secure: bool) -> list[tuple[bytes, bytes]]:
    return [set_cookie(AUTH_COOKIE, "", _EPOCH, secure),
            set_cookie(REFRESH_COOKIE, "", _EPOCH, secure)]


def request_cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies by name (every ``Cookie`` header, first value of a name)."""
    found: dict[str, str] = {}
    for key, raw in scope.get("headers", ()):
        if key != b"cookie":
            continue
        for pair in raw.decode("latin-1").split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep and name and name not in found:
                found[name] = value.strip().strip('"')
    return found


def cookie(scope: Scope, name: str) -> str | None:
    """One request cookie; an empty value counts as absent (what logout leaves behind)."""
    if header(scope, b"cookie") is None:
        return None
    return request_cookies(scope).get(name) or None
