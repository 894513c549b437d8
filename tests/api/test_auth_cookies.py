"""The pure parts of the auth endpoints: cookie attributes and the ``Secure`` rule
(PROTOCOL §2.5; the HTTP tests run over plain HTTP, where ``Secure`` never appears), cookie
parsing, RFC 3339 times and the strict body reader (api/auth_models.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.auth_models import BadBody, parse_body, rfc3339, rfc3339_ms
from api.cookies import cookie, set_cookie, wants_secure

EXPIRES = datetime(2026, 5, 5, 9, 0, 0, tzinfo=UTC)


def test_auth_cookies__secure_only_over_https_when_configured() -> None:
    assert wants_secure({"scheme": "https"}, cookie_secure=True)
    assert not wants_secure({"scheme": "https"}, cookie_secure=False)
    assert not wants_secure({"scheme": "http"}, cookie_secure=True)
    assert set_cookie("kalamdb_auth", "tok", EXPIRES, secure=True) == (
        b"set-cookie", b"kalamdb_auth=tok; HttpOnly; SameSite=Strict; Secure; Path=/; "
                       b"Expires=Tue, 05 May 2026 09:00:00 GMT")
    assert b"Secure" not in set_cookie("kalamdb_auth", "tok", EXPIRES, secure=False)[1]


def test_auth_cookies__request_parsing() -> None:
    scope = {"headers": [(b"cookie", b"a=1; kalamdb_auth=tok.en.x; kalamdb_auth=second"),
                         (b"cookie", b"kalamdb_refresh=\"r\"; junk")]}
    assert cookie(scope, "kalamdb_auth") == "tok.en.x"  # the first of a name wins
    assert cookie(scope, "kalamdb_refresh") == "r"
    assert cookie(scope, "missing") is None
    assert cookie({"headers": [(b"cookie", b"kalamdb_auth=")]}, "kalamdb_auth") is None
    assert cookie({"headers": []}, "kalamdb_auth") is None


def test_auth_models__rfc3339_like_chrono() -> None:
    assert rfc3339(EXPIRES) == "2026-05-05T09:00:00+00:00"
    assert rfc3339_ms(1_767_225_600_123) == "2026-01-01T00:00:00.123+00:00"
    assert rfc3339_ms(1_767_225_600_000) == "2026-01-01T00:00:00+00:00"
    assert rfc3339(EXPIRES.replace(microsecond=5)) == "2026-05-05T09:00:00.000005+00:00"


def test_auth_models__strict_body() -> None:
    fields = ("user", "password")
    assert parse_body("application/json; charset=utf-8",
                      b'{"username":"a","password":"p"}', fields) == {"user": "a",
                                                                     "password": "p"}
    setup = ("user", "password", "root_password", "email")
    assert parse_body("application/json", b'{"user":"a","password":"p","root_password":"r",'
                      b'"email":null}', setup)["email"] is None
    for content_type, raw in (
            ("application/json", b'{"user":"a","password":"p","x":0}'),
            ("application/json", b'{"user":"a","username":"a","password":"p"}'),
            ("application/json", b'{"user":"' + "é".encode() * 65 + b'","password":"p"}'),
            ("application/json", b"NaN"),
            (None, b'{"user":"a","password":"p"}')):
        with pytest.raises(BadBody):
            parse_body(content_type, raw, fields)


def test_auth_login__dummy_hash_is_a_real_hash_of_its_cost() -> None:
    # The precomputed default-cost dummy must stay a valid cost-12 bcrypt hash, or unknown
    # users would be answered faster than known ones.
    from api.login import _DUMMY_SECRET, _dummy_hash
    from engine.passwords import check_password

    for cost in (4, 12):
        assert _dummy_hash(cost).startswith(f"$2b${cost:02d}$")
        assert check_password(_DUMMY_SECRET, _dummy_hash(cost))
