"""A tiny WebSocket client for the /v1/ws tests: trio TCP + wsproto (the sans-IO library
hypercorn itself uses; pinned as a dev dependency), no extensions offered, so server frames
arrive exactly as the server wrote them (gzip binary frames included).

``async with ws_connect(server, token=...) as ws`` opens a socket (raising ``Refused`` with
the HTTP status and body when the upgrade is refused); ``ws.send(obj)`` sends JSON text,
``await ws.recv()`` returns the next ``Frame`` and ``await ws.recv_json()`` the next message
decoded (gunzipped if binary). Every wait is bounded (``wait_s``, 10 s by default).
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio
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

from tests.api.harness import Server

TIMEOUT_S = 10.0


class Refused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status} {body!r}")
        self.status, self.body = status, body


@dataclass
class Frame:
    kind: str  # "text" | "bytes" | "close"
    data: Any = None  # str or bytes
    code: int | None = None
    reason: str = ""

    def json(self) -> Any:
        if self.kind == "bytes":
            return json.loads(gzip.decompress(self.data))
        assert self.kind == "text", self
        return json.loads(self.data)


class WsClient:
    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream, self.ws = stream, ws
        self.frames: deque[Frame] = deque()
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.closed = False

    async def _pump(self) -> list[Any]:
        data = await self.stream.receive_some(65536)
        self.ws.receive_data(data or None)
        return list(self.ws.events())

    def _absorb(self, event: Any) -> None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self.frames.append(Frame("text", "".join(self._text)))
                self._text = []
        elif isinstance(event, BytesMessage):
            self._bytes.append(bytes(event.data))
            if event.message_finished:
                self.frames.append(Frame("bytes", b"".join(self._bytes)))
                self._bytes = []
        elif isinstance(event, CloseConnection):
            self.frames.append(Frame("close", code=event.code, reason=event.reason or ""))
            self.closed = True
        elif isinstance(event, Ping):
            self.ws.send(event.response())

    async def recv(self, wait_s: float = TIMEOUT_S) -> Frame:
        with trio.fail_after(wait_s):
            while not self.frames:
                if self.closed:
                    raise AssertionError("the connection is closed")
                for event in await self._pump():
                    self._absorb(event)
        return self.frames.popleft()

    async def recv_json(self, wait_s: float = TIMEOUT_S) -> dict[str, Any]:
        return (await self.recv(wait_s)).json()

    async def quiet(self, seconds: float) -> list[Frame]:
        """Frames that arrive within ``seconds`` (expects none, usually)."""
        got = []
        with trio.move_on_after(seconds):
            while True:
                got.append(await self.recv(seconds + 1))
        return got

    async def send_text(self, text: str) -> None:
        if self.closed:
            raise AssertionError(f"the server closed the connection: {list(self.frames)}")
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def send(self, message: Any) -> None:
        await self.send_text(json.dumps(message))

    async def send_bytes(self, data: bytes) -> None:
        await self.stream.send_all(self.ws.send(BytesMessage(data=data)))

    async def aclose(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                await self.stream.send_all(self.ws.send(CloseConnection(code=1000)))
        await self.stream.aclose()


async def _handshake(stream: trio.SocketStream, ws: WSConnection) -> list[Any]:
    """The events that followed the accept in the same read (the server may send its
    first frame right behind the handshake)."""
    with trio.fail_after(TIMEOUT_S):
        status, body = None, b""
        while True:
            data = await stream.receive_some(65536)
            ws.receive_data(data or None)
            events = list(ws.events())
            for index, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    return events[index + 1:]
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise Refused(status, b"")
                elif isinstance(event, RejectData):
                    body += bytes(event.data)
                    if event.body_finished:
                        raise Refused(status or 0, body)
            if not data:
                raise Refused(status or 0, body)


@contextlib.asynccontextmanager
async def ws_connect(server: Server, *, token: str | None = None, query: str = "",
                     headers: dict[str, str] | None = None) -> AsyncIterator[WsClient]:
    stream = await trio.open_tcp_stream(server.host, server.port)
    ws = WSConnection(ConnectionType.CLIENT)
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if token is not None:
        extra.append((b"authorization", f"Bearer {token}".encode()))
    target = "/v1/ws" + (f"?{query}" if query else "")
    await stream.send_all(ws.send(Request(host=f"{server.host}:{server.port}", target=target,
                                          extra_headers=extra)))
    try:
        early = await _handshake(stream, ws)
    except BaseException:
        await stream.aclose()
        raise
    client = WsClient(stream, ws)
    for event in early:
        client._absorb(event)
    try:
        yield client
    finally:
        await client.aclose()
