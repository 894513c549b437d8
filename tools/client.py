"""The HTTP side of the ``sluice`` client commands: one connection, JSON calls, stored tokens.

``Connection(url)`` keeps ONE keep-alive ``http.client`` connection to the server and
reconnects when the server has closed it while idle (checked before each request, so a
request is never sent twice). ``ApiClient`` adds the KalamDB calls the tools need: SQL
(PROTOCOL §1.3), login / refresh / setup / status (§2.6, §2.2), ingest, topics consume / ack
(§4.2, §4.3). Nothing here imports the engine or the server: the client speaks HTTP only.

Errors, one root (``ClientError``), each mapped by the commands to an exit code:

- ``Unreachable``: no connection, or the connection broke, or the reply is not the
  protocol (not JSON): ``EXIT_UNREACHABLE``.
- ``AuthError``: login refused, no password available, a token the server rejects even after
  a refresh and a new login: ``EXIT_AUTH``.
- ``ApiError``: the server answered with an error envelope (status, code, message):
  ``EXIT_STATEMENT``.

Tokens (``TokenStore``) live in ``$XDG_CONFIG_HOME/sluice/tokens.json`` (default
``~/.config/sluice/``), one entry per ``user@url``: the access and refresh tokens with their
expiry times. The directory is created 0700 and the file is written 0600 through a temporary
file and a rename, so a reader never sees half a file and the tokens are never readable by
others, whatever the umask. Only ``sluice sql`` and friends of the same user write it; two
clients writing at once keep whichever wrote last (each entry is a cache: a lost one costs a
login).

Not thread-safe: one ``ApiClient`` per thread. Blocking calls; Ctrl-C (KeyboardInterrupt)
during a request closes the connection (its state is unknown) and propagates.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

DEFAULT_URL = "http://127.0.0.1:2900"
CONNECT_TIMEOUT_SECONDS = 10.0  # connecting, and each read of a short call
SQL_TIMEOUT_SECONDS = 3600.0  # a statement may legitimately run long (a big flush or scan)
TOKEN_EXPIRY_MARGIN_SECONDS = 60  # refresh a token this long before it expires
TOKEN_FILE_MODE = 0o600
TOKEN_DIR_MODE = 0o700

EXIT_OK = 0
EXIT_STATEMENT = 1  # the server refused a statement (or an ingest, consume, setup request)
EXIT_UNREACHABLE = 5  # no connection, connection lost, or a reply that is not the protocol
EXIT_AUTH = 6  # login refused, no password, or a token the server keeps rejecting
EXIT_USAGE = 64  # bad arguments (the same code as every sluice command)
EXIT_INTERRUPTED = 130  # Ctrl-C in a non-interactive run (128 + SIGINT)

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the server refused a statement or request (its error code and message on stderr)
  5    cannot reach the server, the connection broke, or the reply is not the protocol
  6    authentication failed: wrong password, no password available, or a token refused
  64   usage error
  130  interrupted (Ctrl-C)"""


class ClientError(Exception):
    """Root of the client's errors."""


class Unreachable(ClientError):
    pass


class AuthError(ClientError):
    pass


class ApiError(ClientError):
    """An error reply: HTTP ``status``, the envelope's ``code`` and ``message``, and the raw
    ``body`` (the parsed JSON, or None)."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


def error_of(status: int, body: Any) -> ApiError:
    """The error carried by a non-2xx reply, whichever of the server's envelopes it uses:
    SQL (``{"error": {"code", "message"}}``), auth (``{"error": code, "message"}``) or topics
    (``{"error": message, "code"}``)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return ApiError(status, str(error.get("code", "ERROR")),
                            str(error.get("message", "")), body)
        if isinstance(error, str) and "code" in body:
            return ApiError(status, str(body["code"]), error, body)
        if isinstance(error, str):
            return ApiError(status, error, str(body.get("message", "")), body)
    text = body if isinstance(body, str) else ""
    return ApiError(status, f"HTTP_{status}", text.strip() or http.client.responses.get(
        status, "error"), body)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any  # parsed JSON, or the text when the reply is not JSON


class Connection:
    """One keep-alive HTTP/1.1 connection to ``url`` (``http://host:port`` or https).

    Owns its socket; ``close()`` releases it. A request on a connection the server closed
    while idle reconnects first; a connection that breaks during a request raises
    ``Unreachable`` (and is reset), never retries, since the request may have run.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is not None and _dropped(self._conn):
            self.close()
        if self._conn is None:
            factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = factory(self._host, self._port, timeout=CONNECT_TIMEOUT_SECONDS)
        if self._conn.sock is None:
            self._conn.connect()  # within CONNECT_TIMEOUT_SECONDS, whatever the reply's
        self._conn.sock.settimeout(timeout)  # then the call's own reply timeout
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                timeout: float = CONNECT_TIMEOUT_SECONDS) -> Reply:
        """Sends one request and reads the whole reply (JSON parsed when it is JSON)."""
        try:
            conn = self._connection(timeout)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Unreachable(f"{self.url}: {_describe(exc)}") from exc
        except BaseException:
            self.close()  # interrupted mid-request: the connection's state is unknown
            raise
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return Reply(resp.status, parsed)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when the peer closed an idle keep-alive connection (readable means EOF or junk)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is `sluice serve` running there?)"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without replying"
    return str(exc) or type(exc).__name__


# ---- the token store ------------------------------------------------------------------------

def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sluice"


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    expires_at: float  # Unix seconds
    refresh_token: str | None
    refresh_expires_at: float | None

    @classmethod
    def from_login(cls, body: dict[str, Any]) -> Tokens:
        """From a login/refresh reply (§2.6); a reply without a token is an ``AuthError``."""
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise AuthError("the server's login reply carries no access_token")
        refresh = body.get("refresh_token")
        return cls(access, _seconds(body.get("expires_at")),
                   refresh if isinstance(refresh, str) and refresh else None,
                   _seconds(body.get("refresh_expires_at")) if refresh else None)

    def usable(self, now: float) -> bool:
        return now < self.expires_at - TOKEN_EXPIRY_MARGIN_SECONDS

    def refreshable(self, now: float) -> bool:
        return (self.refresh_token is not None and self.refresh_expires_at is not None
                and now < self.refresh_expires_at - TOKEN_EXPIRY_MARGIN_SECONDS)


def _seconds(stamp: Any) -> float:
    """Unix seconds of an RFC 3339 stamp (nanosecond fractions allowed); 0 if unreadable."""
    if not isinstance(stamp, str):
        return 0.0
    head, dot, rest = stamp.partition(".")
    if dot:  # Python's parser takes at most 6 fractional digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        stamp = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return moment.timestamp() if moment.tzinfo else 0.0


class TokenStore:
    """Tokens per ``user@url`` in ``directory/tokens.json`` (mode 0600); see the module doc."""

    FILE_NAME = "tokens.json"

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or config_dir()) / self.FILE_NAME

    @staticmethod
    def key(user: str, url: str) -> str:
        return f"{user}@{url.rstrip('/')}"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: a cache, so start empty (a login rebuilds it)
        return data if isinstance(data, dict) else {}

    def load(self, user: str, url: str) -> Tokens | None:
        entry = self._read().get(self.key(user, url))
        if not isinstance(entry, dict):
            return None
        try:
            return Tokens(str(entry["access_token"]), float(entry["expires_at"]),
                          entry.get("refresh_token"), entry.get("refresh_expires_at"))
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, user: str, url: str, tokens: Tokens | None) -> None:
        """Stores (or with None forgets) the entry; the file is replaced atomically."""
        data = self._read()
        key = self.key(user, url)
        if tokens is None:
            data.pop(key, None)
        else:
            data[key] = {"access_token": tokens.access_token, "expires_at": tokens.expires_at,
                         "refresh_token": tokens.refresh_token,
                         "refresh_expires_at": tokens.refresh_expires_at}
        self.path.parent.mkdir(mode=TOKEN_DIR_MODE, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".tokens-", dir=self.path.parent)
        try:
            os.fchmod(fd, TOKEN_FILE_MODE)  # mkstemp already uses 0600; say it explicitly
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


# ---- the API calls --------------------------------------------------------------------------

PasswordSource = Callable[[], str | None]


class ApiClient:
    """The KalamDB calls over one ``Connection``, authenticated as ``user``.

    Authentication order: a fixed ``token`` (``--token``) if given; else the stored token if
    still valid; else a refresh with the stored refresh token; else a login with the password
    from ``password()`` (None → ``AuthError``). A 401 on a call re-runs that order once,
    skipping the token that failed.
    """

    def __init__(self, conn: Connection, user: str, *, password: PasswordSource,
                 store: TokenStore | None = None, token: str | None = None) -> None:
        self.conn = conn
        self.user = user
        self._password = password
        self._store = store
        self._fixed_token = token
        self._token: str | None = token

    # -- authentication --

    def authenticate(self, force: bool = False) -> str:
        """Returns a bearer token, logging in or refreshing as needed (see the class doc)."""
        if self._fixed_token is not None:
            if force:
                raise AuthError("the server refused the given token")
            return self._fixed_token
        if self._token is not None and not force:
            return self._token
        now = time.time()
        stored = self._store.load(self.user, self.conn.url) if self._store else None
        if stored is not None and stored.usable(now) and not force:
            self._token = stored.access_token
            return self._token
        if stored is not None and stored.refreshable(now):
            tokens = self._refresh(stored)
            if tokens is not None:
                return self._keep(tokens)
        return self._keep(self.login())

    def _keep(self, tokens: Tokens) -> str:
        if self._store is not None:
            self._store.save(self.user, self.conn.url, tokens)
        self._token = tokens.access_token
        return self._token

    def _refresh(self, stored: Tokens) -> Tokens | None:
        assert stored.refresh_token is not None
        reply = self.conn.request("POST", "/v1/api/auth/refresh", b"", {
            "Authorization": f"Bearer {stored.refresh_token}"})
        if reply.status == 200 and isinstance(reply.body, dict):
            return Tokens.from_login(reply.body)
        if reply.status in (401, 403):
            return None  # expired, revoked or a changed role: log in again
        raise error_of(reply.status, reply.body)

    def login(self) -> Tokens:
        """``POST /v1/api/auth/login``; refusals (401/403/428) become ``AuthError``."""
        password = self._password()
        if password is None:
            raise AuthError(f"no password for {self.user!r}: set SLUICE_PASSWORD or run "
                            "interactively")
        reply = self.post_json("/v1/api/auth/login", {"user": self.user, "password": password},
                               auth=False)
        if reply.status == 200 and isinstance(reply.body, dict):
            return Tokens.from_login(reply.body)
        error = error_of(reply.status, reply.body)
        if reply.status == 404:
            raise AuthError(f"the server at {self.conn.url} has no login endpoint (404)")
        if reply.status in (400, 401, 403, 428):
            raise AuthError(f"login as {self.user!r} refused: {error.code}: {error.message}")
        raise error

    def logout(self) -> None:
        """Forgets the stored tokens of this user@url (tokens are stateless server-side)."""
        if self._store is not None:
            self._store.save(self.user, self.conn.url, None)
        self._token = None

    # -- calls --

    def post_json(self, path: str, payload: Any, *, auth: bool = True,
                  timeout: float = CONNECT_TIMEOUT_SECONDS) -> Reply:
        """POSTs JSON; with ``auth``, bearer-authenticated and retried once after a 401."""
        return self.post(path, json.dumps(payload).encode(), "application/json", auth=auth,
                         timeout=timeout)

    def post(self, path: str, body: bytes, content_type: str, *, auth: bool = True,
             timeout: float = CONNECT_TIMEOUT_SECONDS) -> Reply:
        headers = {"Content-Type": content_type}
        if not auth:
            return self.conn.request("POST", path, body, headers, timeout)
        headers["Authorization"] = f"Bearer {self.authenticate()}"
        reply = self.conn.request("POST", path, body, headers, timeout)
        if reply.status == 401:
            headers["Authorization"] = f"Bearer {self.authenticate(force=True)}"
            reply = self.conn.request("POST", path, body, headers, timeout)
            if reply.status == 401:
                error = error_of(reply.status, reply.body)
                raise AuthError(f"the server refused the new token: {error.code}")
        return reply

    def sql(self, sql: str, namespace: str | None = None) -> dict[str, Any]:
        """Runs SQL (§1.3) and returns the success envelope; errors raise ``ApiError``."""
        payload: dict[str, Any] = {"sql": sql}
        if namespace:
            payload["namespace_id"] = namespace
        reply = self.post_json("/v1/api/sql", payload, timeout=SQL_TIMEOUT_SECONDS)
        return self.success(reply)

    def ingest(self, table: str, body: bytes, content_type: str) -> dict[str, Any]:
        """``POST /v1/api/ingest/{ns}/{table}`` with NDJSON or an Arrow IPC stream."""
        namespace, _, name = table.partition(".")
        path = f"/v1/api/ingest/{quote(namespace, safe='')}/{quote(name, safe='')}"
        reply = self.post(path, body, content_type, timeout=SQL_TIMEOUT_SECONDS)
        if reply.status == 404 and not isinstance(reply.body, dict):  # the router's bare 404
            raise ApiError(404, "NOT_FOUND", f"the server at {self.conn.url} has no ingest "
                           "endpoint (POST /v1/api/ingest/{ns}/{table})")
        return self.success(reply)

    @staticmethod
    def success(reply: Reply) -> dict[str, Any]:
        """The reply's JSON object when it is a success, else its ``ApiError``."""
        if not isinstance(reply.body, dict):
            if 200 <= reply.status < 300:
                raise Unreachable(f"the server's reply is not a JSON object (HTTP "
                                  f"{reply.status})")
            raise error_of(reply.status, reply.body)
        if reply.status >= 300 or reply.body.get("status") == "error":
            raise error_of(reply.status, reply.body)
        return reply.body
