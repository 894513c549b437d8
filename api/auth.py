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

Only the internal issuer is trusted: external (OIDC) issuers are out of scope, so any other
``iss`` is an untrusted issuer (401 ``INVALID_CREDENTIALS``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt

from .http import Scope, header

if TYPE_CHECKING:
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


def decode_token(secret: str, token: str, now: float) -> dict[str, Any]:
    """The verified claims of an internal token (any ``token_type``); raises
    ``AuthFailure`` (``TOKEN_EXPIRED`` for an expired one, else ``INVALID_CREDENTIALS``)."""
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
    _check_times(claims, now)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthFailure("INVALID_CREDENTIALS", "missing subject")
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
