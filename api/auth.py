"""JWT issue and verification (PROTOCOL §2.4) and the "Bearer session" extractor (§1.2).

Tokens are HS256, issuer ``kalamdb``, with the claims ``sub``, ``iss``, ``exp``, ``iat``,
``email`` (null when absent), ``role`` (lowercase) and ``token_type`` (``access`` or
``refresh``). Access tokens live ``auth.jwt_expiry_hours``; refresh tokens 7 times that.

Sluice extension: tokens also carry ``gen``, the user's ``token_generation`` at issue time. A
role or password change (or re-creating a deleted user id) bumps the stored generation, so
older tokens stop working (engine/sql/users.py). A token without ``gen`` counts as
generation 0. The reference's role-mismatch rule (§2.4 step 5) is checked as well.

Verification takes ``now`` (Unix seconds) explicitly so it is testable without sleeping:
pyjwt checks the signature, algorithm and issuer; the time claims are checked here with the
60 s leeway.

Verified signatures are cached (``VERIFIED_TOKENS``, at most ``TOKEN_CACHE_ENTRIES_MAX``
tokens): a repeated token skips pyjwt, while the time claims and the live user, role and
generation are still checked on every request, so expiry and revocation stay immediate.

Only the internal issuer is trusted: external (OIDC) issuers are out of scope, so any other
``iss`` is an untrusted issuer (401 ``INVALID_CREDENTIALS``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt

from .errors import bearer_error
from .http import Scope, Send, header, send_json

if TYPE_CHECKING:
    from api.app import SluiceApp
    from engine.catalog import Catalog, User

ISSUER = "kalamdb"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 60
REFRESH_MULTIPLIER = 7
TOKEN_TYPES = ("access", "refresh")


class AuthFailure(Exception):
    """A rejected credential; ``code`` is the public code of PROTOCOL §1.2 (a key of
    ``api.errors.AUTH_ERRORS``). ``reason`` is the internal cause, never sent to clients."""

    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(f"{code}: {reason}" if reason else code)
        self.code = code
        self.reason = reason


def issue_token(secret: str, user: User, token_type: str, now: float, expiry_hours: int
                ) -> tuple[str, datetime]:
    """A signed token for ``user`` and its expiry (an aware UTC datetime)."""
    if token_type not in TOKEN_TYPES:
        raise ValueError(f"unknown token type {token_type!r}")
    hours = expiry_hours * (REFRESH_MULTIPLIER if token_type == "refresh" else 1)
    iat = int(now)
    exp = iat + hours * 3600
    claims: dict[str, Any] = {
        "sub": user.user_id, "iss": ISSUER, "exp": exp, "iat": iat, "email": user.email,
        "role": user.role, "token_type": token_type, "gen": user.token_generation,
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return token, datetime.fromtimestamp(exp, UTC)


class VerifiedTokens:
    """A bounded LRU map from ``(secret, token)`` to the claims pyjwt verified for it, so a
    client that sends the same token with every request pays for base64, JSON and the HMAC
    (~150 us) once. Only tokens whose signature verified are put in, so forged or garbage
    tokens cannot fill it; the key is the whole token, signature included.

    What it does not remember: the time checks (``decode_token`` repeats them on every hit,
    so ``exp`` is honoured to the second) and anything about the user (``verify_access_token``
    checks the live user, role and token generation on every request, so a deleted user, a
    role change or a password change revokes cached tokens immediately).

    Bound: ``max_entries`` tokens, least recently used out first; an entry is about 1 KiB
    (the token and its claims). A lock makes it safe from several threads, though the API
    calls it from the trio thread only."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, secret: str, token: str) -> dict[str, Any] | None:
        """The cached claims (the caller must not change them), now most recently used."""
        key = (secret, token)
        with self._lock:
            claims = self._entries.get(key)
            if claims is not None:
                self._entries.move_to_end(key)
            return claims

    def put(self, secret: str, token: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._entries[(secret, token)] = claims
            self._entries.move_to_end((secret, token))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def discard(self, secret: str, token: str) -> None:
        with self._lock:
            self._entries.pop((secret, token), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Why 4,096: more distinct live tokens than a single node sees in use at once (each client
# reuses its access token until it expires), at ~1 KiB each: ~4 MiB at most.
TOKEN_CACHE_ENTRIES_MAX = 4096
VERIFIED_TOKENS = VerifiedTokens(TOKEN_CACHE_ENTRIES_MAX)


def decode_token(secret: str, token: str, now: float) -> dict[str, Any]:
    """The verified claims of an internal token (any ``token_type``), a fresh dict the
    caller owns; raises ``AuthFailure`` (``TOKEN_EXPIRED`` for an expired one, else
    ``INVALID_CREDENTIALS``). Signatures already verified come from ``VERIFIED_TOKENS``;
    the time claims are checked against ``now`` on every call."""
    cached = VERIFIED_TOKENS.get(secret, token)
    if cached is not None:
        try:
            _check_times(cached, now)
        except AuthFailure:
            VERIFIED_TOKENS.discard(secret, token)
            raise
        return dict(cached)
    claims = _verify_signature(secret, token)
    _check_times(claims, now)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthFailure("INVALID_CREDENTIALS", "missing subject")
    VERIFIED_TOKENS.put(secret, token, claims)
    return dict(claims)


def _verify_signature(secret: str, token: str) -> dict[str, Any]:
    """pyjwt's checks: well-formed, trusted issuer, HS256, valid signature."""
    try:
        header_fields = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthFailure("INVALID_CREDENTIALS", f"malformed token: {exc}") from None
    if not isinstance(unverified, dict) or unverified.get("iss") != ISSUER:
        raise AuthFailure("INVALID_CREDENTIALS", "untrusted issuer")
    if header_fields.get("alg") != ALGORITHM:
        raise AuthFailure("INVALID_CREDENTIALS", "algorithm not allowed")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False})
    except jwt.PyJWTError as exc:
        raise AuthFailure("INVALID_CREDENTIALS", f"invalid token: {exc}") from None
    return claims


def _number(claims: dict[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise AuthFailure("INVALID_CREDENTIALS", f"missing claim {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthFailure("INVALID_CREDENTIALS", f"claim {name} is not a number")
    return float(value)


def _check_times(claims: dict[str, Any], now: float) -> None:
    exp = _number(claims, "exp", required=True)
    iat = _number(claims, "iat", required=True)
    nbf = _number(claims, "nbf", required=False)
    assert exp is not None and iat is not None
    if nbf is not None and nbf > now + LEEWAY_SECONDS:
        raise AuthFailure("INVALID_CREDENTIALS", "token not yet valid (nbf)")
    if iat > now + LEEWAY_SECONDS:
        raise AuthFailure("INVALID_CREDENTIALS", "token issued in the future (iat)")
    if exp < now - LEEWAY_SECONDS:
        raise AuthFailure("TOKEN_EXPIRED", "token expired")


def verify_access_token(secret: str, token: str, catalog: Catalog, now: float) -> User:
    """The live user an access token authenticates (PROTOCOL §2.4 steps 1-5)."""
    claims = decode_token(secret, token, now)
    if claims.get("token_type") != "access":
        raise AuthFailure("INVALID_CREDENTIALS", "not an access token")
    user = catalog.live_user(claims["sub"])
    if user is None:
        raise AuthFailure("INVALID_CREDENTIALS", "unknown or deleted user")
    if claims.get("role") != user.role:
        raise AuthFailure("INVALID_CREDENTIALS", "role changed since the token was issued")
    generation = claims.get("gen", 0)
    if isinstance(generation, bool) or generation != user.token_generation:
        raise AuthFailure("INVALID_CREDENTIALS", "token generation is stale")
    return user


def _visible(value: str) -> bool:
    # What the reference's HeaderValue::to_str accepts: visible ASCII, space and tab.
    return all(ch == "\t" or " " <= ch <= "~" for ch in value)


def bearer_token(value: str | None) -> str:
    """The token of an ``Authorization`` header value, by PROTOCOL §1.2 steps 1-4."""
    if value is None:
        raise AuthFailure("MISSING_AUTHORIZATION")
    if not _visible(value):
        raise AuthFailure("INVALID_CREDENTIALS", "non-visible characters in the header")
    if value.lstrip().lower().startswith("basic "):
        raise AuthFailure("INVALID_CREDENTIALS", "basic auth is not accepted here")
    if not value.startswith("Bearer"):  # case-sensitive on this path
        raise AuthFailure("INVALID_CREDENTIALS", "unsupported authorization scheme")
    token = value[len("Bearer"):].strip()
    if not token:
        raise AuthFailure("INVALID_CREDENTIALS", "empty bearer token")
    return token


def bearer_session(scope: Scope, secret: str, catalog: Catalog, now: float) -> User:
    """PROTOCOL §1.2: the user behind the request's ``Authorization: Bearer`` header. Cookies
    are not consulted. Raises ``AuthFailure``."""
    token = bearer_token(header(scope, b"authorization"))
    return verify_access_token(secret, token, catalog, now)


async def authenticate_or_reply(app: SluiceApp, scope: Scope, send: Send, started: float
                                ) -> User | None:
    """The bearer routes' first step (PROTOCOL §1.2): the live user behind the request, or
    None once the 401/403 envelope has been sent (``took`` counts from ``started``, a
    ``time.perf_counter()`` reading)."""
    secret = app.config.auth.jwt_secret
    try:
        if not secret:
            raise AuthFailure("AUTHENTICATION_ERROR", "no JWT secret configured")
        return bearer_session(scope, secret, app.engine.catalog, time.time())
    except AuthFailure as exc:
        took_ms = (time.perf_counter() - started) * 1000.0
        await send_json(send, *bearer_error(exc.code, took_ms))
        return None
