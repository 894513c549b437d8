"""A tiny blocking WebSocket client for ``sluice subscribe``: a socket plus wsproto.

wsproto is the sans-IO WebSocket library hypercorn already depends on (a runtime dependency
of the server package, so the client adds none). No extensions are offered, so frames arrive
as the server wrote them: JSON text, or JSON gzipped into a binary frame (PROTOCOL §6.2),
which ``recv`` unpacks. Nothing here imports the engine or the server.

``WebSocket.open(url, token)`` connects to ``<url>/v1/ws`` (``http`` → ws, ``https`` → wss)
with ``Authorization: Bearer`` header pre-auth (§6.1) and completes the handshake, or raises
``Unreachable`` (no connection, or the upgrade refused: status and body in the message).
``send_json`` writes one text frame; ``recv(timeout)`` returns the next decoded message or
None when ``timeout`` seconds pass without one; a close from the server raises ``WsClosed``.

Owns its socket (``close()`` sends a close frame when it can, then releases it). Blocking;
a Ctrl-C during ``recv`` propagates as KeyboardInterrupt with the socket still open (the
caller's ``finally`` closes it). Not thread-safe.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import select
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from .client import CONNECT_TIMEOUT_SECONDS, Unreachable

READ_CHUNK_BYTES = 65536
WS_PATH = "/v1/ws"


class WsClosed(Unreachable):
    """The server closed the WebSocket: ``code`` and ``reason`` of its close frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"the server closed the WebSocket ({code} {reason})".strip())
        self.code, self.reason = code, reason


class WebSocket:
    """One client WebSocket (see the module doc). Build with ``WebSocket.open``."""

    def __init__(self, sock: socket.socket, ws: WSConnection) -> None:
        self._sock, self._ws = sock, ws
        self._messages: list[Any] = []
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.closed = False
        self._close: WsClosed | None = None  # raised once the messages before it are read

    @classmethod
    def open(cls, url: str, token: str) -> WebSocket:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            sock = socket.create_connection((parts.hostname, port), CONNECT_TIMEOUT_SECONDS)
            if parts.scheme == "https":
                sock = ssl.create_default_context().wrap_socket(
                    sock, server_hostname=parts.hostname)
        except OSError as exc:
            raise Unreachable(f"{parts.hostname}:{port}: {exc}") from exc
        ws = WSConnection(ConnectionType.CLIENT)
        client = cls(sock, ws)
        try:
            client._handshake(f"{parts.hostname}:{port}", token)
        except BaseException:
            sock.close()
            raise
        return client

    def _handshake(self, host: str, token: str) -> None:
        request = Request(host=host, target=WS_PATH, extra_headers=[
            (b"authorization", f"Bearer {token}".encode())])
        self._send(self._ws.send(request))
        status, body = 0, b""
        deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
        while True:
            events = self._read(deadline - time.monotonic())
            if events is None:
                raise Unreachable("no WebSocket handshake reply from the server")
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    for later in events[index + 1:]:  # a first frame right behind the accept
                        self._absorb(later)
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise Unreachable(f"WebSocket upgrade refused: HTTP {status}")
                elif isinstance(event, RejectData):
                    body += bytes(event.data)
                    if event.body_finished:
                        raise Unreachable(f"WebSocket upgrade refused: HTTP {status}: "
                                          f"{body.decode(errors='replace').strip()}")

    def _send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise Unreachable(f"the WebSocket broke: {exc}") from exc

    def _read(self, timeout: float) -> list[Any] | None:
        """Events from one read, or None when nothing arrived within ``timeout`` seconds."""
        readable, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
        if not readable:
            return None
        try:
            data = self._sock.recv(READ_CHUNK_BYTES)
        except OSError as exc:
            raise Unreachable(f"the WebSocket broke: {exc}") from exc
        self._ws.receive_data(data or None)
        events = list(self._ws.events())
        if not data and not events:
            raise WsClosed(None, "connection closed without a close frame")
        return events

    def _absorb(self, event: Any) -> None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self._messages.append(json.loads("".join(self._text)))
                self._text = []
        elif isinstance(event, BytesMessage):
            self._bytes.append(bytes(event.data))
            if event.message_finished:
                self._messages.append(json.loads(gzip.decompress(b"".join(self._bytes))))
                self._bytes = []
        elif isinstance(event, Ping):
            self._send(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self.closed = True
            with contextlib.suppress(Exception):  # answer the close, as the protocol asks
                self._send(self._ws.send(event.response()))
            self._close = WsClosed(event.code, event.reason or "")

    def recv(self, timeout: float) -> Any | None:
        """The next message (decoded JSON), or None after ``timeout`` seconds without one.

        Raises ``WsClosed`` on the server's close (after the messages before it were read),
        ``Unreachable`` if the socket breaks or a frame is not JSON (or gzipped JSON).
        """
        deadline = time.monotonic() + timeout
        while not self._messages:
            if self._close is not None:
                raise self._close
            events = self._read(deadline - time.monotonic())
            if events is None:
                return None
            for event in events:
                try:
                    self._absorb(event)
                except (ValueError, OSError) as exc:  # bad JSON, bad gzip (BadGzipFile)
                    raise Unreachable(f"a WebSocket frame is not the protocol: {exc}") from exc
        return self._messages.pop(0)

    def send_json(self, message: Any) -> None:
        self._send(self._ws.send(TextMessage(data=json.dumps(message))))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self._sock.sendall(self._ws.send(CloseConnection(code=1000)))
        self._sock.close()
