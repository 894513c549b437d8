"""CORS (PROTOCOL §1.0, §7.2 ``[security.cors]``): the compiled policy in-process, the two
``allow_credentials`` defaults of the config loader, and the wire behaviour of preflights and
actual responses against the real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import CorsSection, load_config
from api.cors import (
    HEADERS_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    ORIGIN_NOT_ALLOWED,
    CorsPolicy,
)
from tests.api.harness import http_request, running_server
from tests.api.test_sql_route import ROOT, SECRET, token_for

APP = "https://app.example"
EVIL = "https://evil.example"
DEFAULT_METHODS = "GET, POST, PUT, DELETE, PATCH, OPTIONS"
DEFAULT_HEADERS = "Authorization, Content-Type, Accept, Origin, X-Requested-With"


def headers_of(answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in answer[1]}


def test_cors_policy__default_section__any_origin_reflected_without_credentials() -> None:
    policy = CorsPolicy(CorsSection())
    assert policy.allows(b"https://whoever.example")
    assert dict(policy.actual_headers(b"https://x.example")) == {
        b"access-control-allow-origin": b"https://x.example", b"vary": b"Origin"}


def test_cors_policy__explicit_list__exact_match_only() -> None:
    policy = CorsPolicy(CorsSection(allowed_origins=[APP]))
    assert policy.allows(APP.encode())
    for origin in (EVIL, APP + "/", APP.upper(), "https://app.example:443", "null"):
        assert not policy.allows(origin.encode()), origin
    assert CorsPolicy(CorsSection(allowed_origins=[APP, "*"])).allows(EVIL.encode())


def test_cors_policy__preflight__allowed_and_each_refusal() -> None:
    policy = CorsPolicy(CorsSection(allowed_origins=[APP], allow_credentials=True, max_age=60))
    answer = policy.preflight(APP.encode(), b"POST", b"authorization, Content-Type")
    assert (answer[0], answer[2]) == (200, b"")
    assert headers_of(answer) == {
        "content-length": "0", "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": DEFAULT_METHODS, "access-control-max-age": "60",
        "access-control-allow-headers": DEFAULT_HEADERS,
        "vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
    for args, reason in (((EVIL.encode(), b"POST", None), ORIGIN_NOT_ALLOWED),
                         ((APP.encode(), b"TRACE", None), METHOD_NOT_ALLOWED),
                         ((APP.encode(), b"POST", b"x-secret"), HEADERS_NOT_ALLOWED)):
        status, headers, body = policy.preflight(*args)
        assert (status, body.decode()) == (400, reason)
        assert not any(k.startswith(b"access-control-") for k, _ in headers)


def test_cors_policy__wildcard_headers__requested_headers_echoed() -> None:
    policy = CorsPolicy(CorsSection(allowed_headers=["*"], expose_headers=["X-Took"]))
    answer = policy.preflight(APP.encode(), b"GET", b"x-anything")
    assert headers_of(answer)["access-control-allow-headers"] == "x-anything"
    assert dict(policy.actual_headers(APP.encode()))[b"access-control-expose-headers"] == \
        b"X-Took"


def test_cors_config__allow_credentials__two_defaults(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Absent section -> false; section present without the key -> true; explicit wins.
    monkeypatch.chdir(tmp_path)  # no ./server.toml is picked up
    assert load_config(None, environ={}).security.cors.allow_credentials is False
    present = tmp_path / "present.toml"
    present.write_text('[security.cors]\nallowed_origins = ["https://a.example"]\n')
    assert load_config(present, environ={}).security.cors.allow_credentials is True
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[security.cors]\nallow_credentials = false\n")
    assert load_config(explicit, environ={}).security.cors.allow_credentials is False
    env = load_config(None, environ={"KALAMDB_SECURITY_CORS_ALLOWED_ORIGINS": f"{APP}, {EVIL}"})
    assert env.security.cors.allowed_origins == [APP, EVIL]
    assert env.security.cors.allow_credentials is False


async def test_cors__over_http__preflight_actual_and_refused(tmp_path: Path) -> None:
    (tmp_path / "server.toml").write_text(
        f'[security.cors]\nallowed_origins = ["{APP}"]\nmax_age = 600\n')
    async with running_server(tmp_path, KALAMDB_JWT_SECRET=SECRET) as server:
        preflight = {"Origin": APP, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        resp = await http_request(server, "OPTIONS", "/v1/api/sql", preflight)
        assert (resp.status, resp.body) == (200, b"")
        assert resp.headers["access-control-allow-origin"] == APP
        assert resp.headers["access-control-allow-methods"] == DEFAULT_METHODS
        assert resp.headers["access-control-allow-headers"] == DEFAULT_HEADERS
        assert resp.headers["access-control-max-age"] == "600"
        assert resp.headers["access-control-allow-credentials"] == "true"  # section present

        resp = await http_request(server, "OPTIONS", "/v1/api/sql", preflight | {"Origin": EVIL})
        assert (resp.status, resp.body.decode()) == (400, ORIGIN_NOT_ALLOWED)
        assert "access-control-allow-origin" not in resp.headers
        # Unknown paths stay 404; OPTIONS that is not a preflight stays 405.
        resp = await http_request(server, "OPTIONS", "/v1/api/nope", preflight)
        assert resp.status == 404
        resp = await http_request(server, "OPTIONS", "/v1/api/sql", {"Origin": APP})
        assert (resp.status, resp.headers["allow"]) == (405, "POST")

        auth = {"Authorization": f"Bearer {token_for(ROOT)}", "Content-Type": "application/json"}
        body = b'{"sql": "SELECT 1 AS one"}'
        resp = await http_request(server, "POST", "/v1/api/sql", auth | {"Origin": APP}, body)
        assert resp.status == 200
        assert (resp.headers["access-control-allow-origin"], resp.headers["vary"],
                resp.headers["access-control-allow-credentials"]) == (APP, "Origin", "true")
        for headers in (auth | {"Origin": EVIL}, auth):  # refused origin, no origin at all
            resp = await http_request(server, "POST", "/v1/api/sql", headers, body)
            assert resp.status == 200
            assert not any(k.startswith("access-control-") for k in resp.headers), headers
        # Error responses to an allowed origin carry the headers too (the browser can read
        # the 401 envelope).
        resp = await http_request(server, "POST", "/v1/api/sql", {"Origin": APP}, body)
        assert (resp.status, resp.headers["access-control-allow-origin"]) == (401, APP)
