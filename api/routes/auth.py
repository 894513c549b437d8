"""The auth endpoints (PROTOCOL §2.2, §2.5, §2.6): setup, status, login, refresh, logout, me.

Error bodies are ``{"error": <snake code>, "message": ...}`` with the statuses of
``api.errors.AUTH_ENDPOINT_STATUS``; an unreadable request body is a plain-text 400
(``api.auth_models``). Cookies are ``api.cookies``.

Per-IP auth rate limit (PROTOCOL §1.0): login, refresh and setup each take one token from the
client IP's bucket of ``rate_limit.max_auth_requests_per_ip_per_sec`` (capacity and refill
rate both that number; loopback clients are limited too). An empty bucket is **429**
``rate_limited``. As in the reference, a body that cannot be read is refused (400) before the
bucket is consulted; refresh reads no body. Status, logout and me are not limited.

Token sources: ``/refresh`` takes the ``kalamdb_refresh`` cookie, else an
``Authorization: Bearer`` refresh token; ``/me`` takes ``Authorization: Bearer`` (scheme in
any case), else the ``kalamdb_auth`` cookie. ``/v1/api/sql`` never reads cookies.

Sluice choices where the spec is silent:
- ``/setup`` hashes with ``auth.bcrypt_cost`` (default 12, the reference's fixed cost), so a
  test configuration can make it cheap.
- ``/refresh`` also refuses a refresh token minted before a role or password change (the
  ``gen`` claim, api/auth.py) with "Token is no longer valid".
- If the lockout bookkeeping cannot be written (the WAL refuses writes), the login fails with
  500 ``internal_error`` rather than silently skipping the lockout.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from api import auth_models as models
from api.auth import AuthFailure, decode_token, issue_token, verify_access_token
from api.config import ConfigError, ServerConfig
from api.cookies import (
    AUTH_COOKIE,
    REFRESH_COOKIE,
    cleared_cookies,
    cookie,
    token_cookies,
    wants_secure,
)
from api.errors import auth_endpoint_error, too_large_body
from api.http import (
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    client_ip,
    header,
    is_localhost,
    read_body,
    send_json,
)
from api.login import INVALID_CREDENTIALS, LoginRefused, authenticate_password
from api.rate_limit import TokenBucketLimiter
from engine import EngineError
from engine.accounts import SetupOutcome, complete_setup
from engine.catalog import ROOT_USER, User
from engine.passwords import hash_password, validate_default_policy
from engine.sql.names import user_id_problem

if TYPE_CHECKING:
    from api.app import SluiceApp

log = logging.getLogger(__name__)

AUTH_RATE_LIMITED = "Too many authentication attempts. Please retry shortly."
SETUP_RATE_LIMITED = "Too many setup attempts. Please retry shortly."
SETUP_ONLY_LOCAL = "Server setup can only be performed from localhost"
STATUS_ONLY_LOCAL = "Setup status can only be checked from localhost"
AUTH_FAILED = "Authentication failed"


def new_auth_limiter(config: ServerConfig) -> TokenBucketLimiter:
    """The per-IP auth bucket table of one app (PROTOCOL §1.0)."""
    rate = config.rate_limit.max_auth_requests_per_ip_per_sec
    if rate < 1:
        raise ConfigError("rate_limit.max_auth_requests_per_ip_per_sec must be at least 1")
    return TokenBucketLimiter(rate, rate)


class _Refused(Exception):
    """A finished error answer: ``auth_endpoint_error(code, message)``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


async def _send_error(send: Send, code: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    status, body = auth_endpoint_error(code, message)
    await send_json(send, status, body, headers)


async def _send_text(send: Send, status: int, text: str) -> None:
    data = text.encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _client_ip(app: SluiceApp, scope: Scope) -> str:
    return client_ip(scope, app.trusted_proxies)


def _rate_ok(app: SluiceApp, scope: Scope) -> bool:
    return app.auth_limiter.allow(_client_ip(app, scope), time.monotonic())


async def _read_fields(scope: Scope, receive: Receive, send: Send,
                       fields: tuple[str, ...]) -> dict[str, str | None] | None:
    """The parsed body, or None after answering 413 / plain-text 400."""
    try:
        raw = await read_body(scope, receive, models.AUTH_BODY_MAX_BYTES)
        return models.parse_body(header(scope, b"content-type"), raw, fields)
    except BodyTooLarge as exc:
        await send_json(send, 413, too_large_body(exc))
    except models.BadBody as exc:
        await _send_text(send, 400, str(exc))
    return None


def _secret(app: SluiceApp) -> str:
    secret = app.config.auth.jwt_secret
    if not secret:  # serve resolves it before the app exists; a bare app has none
        raise _Refused("internal_error", AUTH_FAILED)
    return secret


async def _send_tokens(app: SluiceApp, scope: Scope, send: Send, user: User) -> None:
    """200 with the login-shaped body and both cookies (login and refresh)."""
    secret, hours, now = _secret(app), app.config.auth.jwt_expiry_hours, time.time()
    access, access_exp = issue_token(secret, user, "access", now, hours)
    refresh, refresh_exp = issue_token(secret, user, "refresh", now, hours)
    body: dict[str, Any] = {
        "user": models.user_info(user), "admin_ui_access": models.admin_ui_access(user),
        "expires_at": models.rfc3339(access_exp), "access_token": access,
        "refresh_token": refresh, "refresh_expires_at": models.rfc3339(refresh_exp)}
    secure = wants_secure(scope, app.config.auth.cookie_secure)
    await send_json(send, 200, body, token_cookies(access, access_exp, refresh, refresh_exp,
                                                   secure))


# ---- login ---------------------------------------------------------------------------


async def login(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    fields = await _read_fields(scope, receive, send, models.LOGIN_FIELDS)
    if fields is None:
        return
    if not _rate_ok(app, scope):
        await _send_error(send, "rate_limited", AUTH_RATE_LIMITED)
        return
    user_id, password = fields["user"], fields["password"]
    assert user_id is not None and password is not None
    try:
        user = await authenticate_password(
            app.engine, user_id, password, is_local=is_localhost(_client_ip(app, scope)),
            bcrypt_cost=app.config.auth.bcrypt_cost)
        if models.admin_ui_access(user):
            log.info("admin login: user=%s role=%s ip=%s", user.user_id, user.role,
                     _client_ip(app, scope))
        await _send_tokens(app, scope, send, user)
    except (LoginRefused, _Refused) as exc:
        await _send_error(send, exc.code, exc.message)
    except EngineError:
        log.exception("login bookkeeping could not be written")
        await _send_error(send, "internal_error", AUTH_FAILED)


# ---- refresh / me / logout -----------------------------------------------------------


def _bearer(scope: Scope) -> str | None:
    """``Authorization: Bearer <token>`` as /me and /refresh read it (scheme in any case);
    None without the header. Raises ``_Refused`` for another scheme or an empty token."""
    value = header(scope, b"authorization")
    if value is None:
        return None
    if not all(ch == "\t" or " " <= ch <= "~" for ch in value):
        raise _Refused("unauthorized", "Authorization header contains invalid characters")
    scheme, _, token = value.partition(" ")
    if scheme.strip().lower() != "bearer":
        raise _Refused("unauthorized", "Authorization header must use Bearer token")
    if not token.strip():
        raise _Refused("unauthorized", "Bearer token missing")
    return token.strip()


def _refresh_user(app: SluiceApp, scope: Scope) -> User:
    token = cookie(scope, REFRESH_COOKIE) or _bearer(scope)
    if token is None:
        raise _Refused("unauthorized", "No refresh token found")
    try:
        claims = decode_token(_secret(app), token, time.time())
    except AuthFailure:
        raise _Refused("unauthorized", INVALID_CREDENTIALS) from None
    if claims.get("token_type") != "refresh":
        raise _Refused("unauthorized", "Refresh endpoint requires a refresh token")
    user = app.engine.catalog.live_user(claims["sub"])
    if user is None:
        raise _Refused("unauthorized", "User no longer valid")
    if "role" in claims and claims["role"] != user.role:
        raise _Refused("unauthorized", "Token role does not match user role")
    generation = claims.get("gen", 0)
    if isinstance(generation, bool) or generation != user.token_generation:
        raise _Refused("unauthorized", "Token is no longer valid")
    return user


async def refresh(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    if not _rate_ok(app, scope):
        await _send_error(send, "rate_limited", AUTH_RATE_LIMITED)
        return
    try:
        await _send_tokens(app, scope, send, _refresh_user(app, scope))
    except _Refused as exc:
        await _send_error(send, exc.code, exc.message)


async def me(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        token = _bearer(scope) or cookie(scope, AUTH_COOKIE)
        if token is None:
            raise _Refused("unauthorized", "No auth token found")
        try:
            user = verify_access_token(_secret(app), token, app.engine.catalog, time.time())
        except AuthFailure:
            raise _Refused("unauthorized", INVALID_CREDENTIALS) from None
    except _Refused as exc:
        await _send_error(send, exc.code, exc.message)
        return
    await send_json(send, 200, {"user": models.user_info(user),
                                "admin_ui_access": models.admin_ui_access(user)})


async def logout(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    # Tokens are stateless (PROTOCOL §2.4): logging out only clears the cookies.
    secure = wants_secure(scope, app.config.auth.cookie_secure)
    await send_json(send, 200, {"message": "Logged out successfully"}, cleared_cookies(secure))


# ---- setup / status ------------------------------------------------------------------


def _may_set_up(app: SluiceApp, scope: Scope) -> bool:
    return app.config.auth.allow_remote_setup or is_localhost(_client_ip(app, scope))


async def status(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    if not _may_set_up(app, scope):
        await _send_error(send, "forbidden", STATUS_ONLY_LOCAL)
        return
    root = app.engine.catalog.live_user(ROOT_USER)
    if root is None:
        await _send_error(send, "internal_error", "Failed to check setup status")
        return
    needs_setup = not root.password_hash
    message = ("Server requires initial setup. Call POST /v1/api/auth/setup with user, "
               "password, root_password, and optional email." if needs_setup
               else "Server is configured and ready.")
    await send_json(send, 200, {"needs_setup": needs_setup, "message": message})


def _check_setup_request(app: SluiceApp, fields: dict[str, str | None]) -> None:
    """PROTOCOL §2.2 setup steps 3-7 (before any hashing); raises ``_Refused``."""
    catalog = app.engine.catalog
    root = catalog.live_user(ROOT_USER)
    if root is None:
        raise _Refused("internal_error", "Failed to verify setup status")
    if root.password_hash:
        raise _Refused("already_configured",
                       "Server has already been configured. Root password is set.")
    for field, label in (("password", "DBA user password"), ("root_password", "Root password")):
        try:
            validate_default_policy(fields[field] or "")
        except EngineError as exc:
            raise _Refused("weak_password", f"{label}: {exc}") from None
    user_id = fields["user"] or ""
    if user_id_problem(user_id) is not None:
        raise _Refused("invalid_user", "Invalid user value")
    if user_id == ROOT_USER:
        raise _Refused("invalid_user",
                       "Cannot create a DBA user with user 'root'. Choose a different user.")
    if catalog.live_user(user_id) is not None:
        raise _Refused("user_exists", f"User '{user_id}' already exists")


def _hash_both(root_password: str, password: str, cost: int) -> tuple[str, str]:
    """Worker thread: both bcrypt hashes."""
    return hash_password(root_password, cost), hash_password(password, cost)


async def _run_setup(app: SluiceApp, fields: dict[str, str | None]) -> tuple[User, str]:
    _check_setup_request(app, fields)
    user_id, email = fields["user"] or "", fields["email"]
    root_hash, dba_hash = await trio.to_thread.run_sync(
        _hash_both, fields["root_password"] or "", fields["password"] or "",
        app.config.auth.bcrypt_cost, abandon_on_cancel=False)
    outcome, dba = await complete_setup(app.engine, root_hash, user_id, dba_hash, email)
    if outcome is SetupOutcome.DONE:
        assert dba is not None
        return dba, (f"Server setup complete. Root password configured and DBA user "
                     f"'{user_id}' created. Please login to continue.")
    existing = app.engine.catalog.live_user(user_id)
    if outcome is SetupOutcome.ALREADY_CONFIGURED and existing is not None \
            and existing.role == "dba":  # a concurrent setup made the same DBA
        return existing, (f"Server setup already completed for DBA user '{user_id}'. "
                          f"Please login to continue.")
    if outcome is SetupOutcome.USER_EXISTS:
        raise _Refused("user_exists", f"User '{user_id}' already exists")
    if outcome is SetupOutcome.ALREADY_CONFIGURED:
        raise _Refused("already_configured",
                       "Server has already been configured. Root password is set.")
    raise _Refused("internal_error", "Failed to verify setup status")


async def setup(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    fields = await _read_fields(scope, receive, send, models.SETUP_FIELDS)
    if fields is None:
        return
    if not _rate_ok(app, scope):
        await _send_error(send, "rate_limited", SETUP_RATE_LIMITED)
        return
    if not _may_set_up(app, scope):
        await _send_error(send, "forbidden", SETUP_ONLY_LOCAL)
        return
    try:
        user, message = await _run_setup(app, fields)
    except _Refused as exc:
        await _send_error(send, exc.code, exc.message)
        return
    except EngineError:
        log.exception("setup could not be written")
        await _send_error(send, "internal_error", "Failed to configure root user")
        return
    log.info("server setup completed: root password set, DBA user %r created", user.user_id)
    await send_json(send, 200, {"user": models.user_info(user), "message": message})
