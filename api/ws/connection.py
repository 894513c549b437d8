"""One WebSocket connection of ``GET /v1/ws`` (PROTOCOL §6): its tasks and its state.

Tasks, all in one nursery owned by ``Connection.run`` (none outlives the socket):
- the **reader** receives frames, enforces the per-message limits (size, rate, binary) and
  dispatches each client message to ``api/ws/messages.py``, one at a time;
- the **writer** is the only task that sends: it drains the connection's ``Outbox`` (acks,
  pages — already rendered and encoded in a worker thread as ``frames.Encoded`` —, errors,
  live changes queued by the engine's commit path, and the final close);
- the **watchdog** wakes every ``websocket.heartbeat_interval_secs`` and closes a socket
  that has not started authenticating within ``auth_timeout_secs`` (auth_error, 1008) or
  has been silent longer than ``client_timeout_secs`` (1000 "Heartbeat timeout"). Silence
  means no ASGI event: WebSocket ping frames do not count (hypercorn answers them without
  telling the application), only messages such as ``{"type":"ping"}`` do.

Closing: ``close(code, reason)`` queues the close frame behind what is already queued;
the writer sends it and cancels the nursery. A client disconnect cancels it too. On exit
every subscription of the connection is unregistered (``system.live`` forgets it at once).

Cancellation: the whole connection is one cancel scope; nothing survives it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from engine.live import Change, Outbox, OutboxClosed, Subscription, render

from ..http import Receive, Scope, Send, client_ip
from ..rate_limit import TokenBucketLimiter
from . import frames

if TYPE_CHECKING:
    from engine.catalog import User

    from ..app import SluiceApp


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Connection:
    def __init__(self, app: SluiceApp, scope: Scope, receive: Receive, send: Send,
                 compress: bool) -> None:
        config = app.config
        self.app, self.scope, self._receive, self._send = app, scope, receive, send
        self.compress = compress
        self.connection_id = uuid.uuid4().hex[:12]
        self.outbox = Outbox(config.websocket.notification_queue_max_messages)
        self.user: User | None = None
        self.auth_started = False
        self.subs: dict[str, Subscription] = {}
        self.client_ip = client_ip(scope, app.trusted_proxies)
        rate = config.rate_limit.max_messages_per_sec
        self._rate = TokenBucketLimiter(rate, rate) if rate > 0 else None
        self.opened_at = self.last_seen = trio.current_time()
        self._nursery: trio.Nursery | None = None

    @property
    def engine(self) -> Any:
        return self.app.engine

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._watchdog)
                nursery.start_soon(self._reader)
                nursery.start_soon(self._on_shutdown)
        finally:
            self.outbox.close()
            self.engine.live.close_connection(self.connection_id)

    # ---- outgoing ------------------------------------------------------------------------

    def put(self, message: dict[str, Any] | frames.Encoded) -> None:
        self.outbox.put(message)

    def error(self, subscription_id: str, code: str, message: str) -> None:
        self.put({"type": "error", "subscription_id": subscription_id, "code": code,
                  "message": message})

    def close(self, code: int, reason: str) -> None:
        self.outbox.put(_Close(code, reason))

    async def _writer(self) -> None:
        try:
            while True:
                item = await self.outbox.get()
                if isinstance(item, _Close):
                    await self._send({"type": "websocket.close", "code": item.code,
                                      "reason": item.reason})
                    break
                if isinstance(item, frames.Encoded):  # rendered and encoded in a worker
                    await self._send(item.event)
                    continue
                if isinstance(item, Change):
                    item = self._render(item)
                    if item is None:
                        continue
                await self._send_message(item)
        except OutboxClosed:
            pass
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    def _render(self, change: Change) -> str | None:
        if change.sub.state == "closed":
            return None  # unsubscribed, killed or dropped after this was queued
        try:
            return render.change_text(change)
        except Exception as exc:  # e.g. a column dropped by ALTER TABLE since subscribing
            change.sub.fail("CONVERSION_ERROR", f"Row conversion failed: {exc}")
            return None

    async def _send_message(self, message: dict[str, Any] | str) -> None:
        if self.compress and _roughly_large(message):
            event = await trio.to_thread.run_sync(frames.encode, message, True)
        else:
            event = frames.encode(message, self.compress)
        await self._send(event)

    # ---- incoming ------------------------------------------------------------------------

    async def _reader(self) -> None:
        from .messages import HANDLERS

        limit = self.app.config.security.max_ws_message_size
        while True:
            event = await self._receive()
            if event["type"] == "websocket.disconnect":
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return
            self.last_seen = trio.current_time()
            text = event.get("text")
            if text is None:
                self.error("protocol", "UNSUPPORTED_DATA", "Binary not supported")
                continue
            if len(text) > limit or len(text.encode()) > limit:
                self.error("protocol", "MESSAGE_TOO_LARGE",
                           f"Message too large: the limit is {limit} bytes")
                continue
            if self._rate is not None and not self._rate.allow("c", time.monotonic()):
                self.error("rate_limit", "RATE_LIMIT_EXCEEDED",
                           "Too many messages per second; message dropped")
                continue
            try:
                message = frames.parse_client(text)
            except frames.ProtocolViolation as exc:
                self.close(1011, f"Invalid message: {exc}"[:120])
                return
            await HANDLERS[message["type"]](self, message)

    async def _on_shutdown(self) -> None:
        await self.app.shutdown.wait()
        self.close(1001, "Server shutting down")

    async def _watchdog(self) -> None:
        ws = self.app.config.websocket
        while True:
            await trio.sleep(ws.heartbeat_interval_secs)
            now = trio.current_time()
            if self.user is None and not self.auth_started and \
                    now - self.opened_at > ws.auth_timeout_secs:
                self.put({"type": "auth_error", "message": "Authentication timeout - no auth "
                          "message received within 3 seconds"})
                self.close(1008, "Authentication timeout")
                return
            if now - self.last_seen > ws.client_timeout_secs:
                self.close(1000, "Heartbeat timeout")
                return


def _roughly_large(message: dict[str, Any] | str) -> bool:
    """Worth compressing in a worker thread (more than ``ENCODE_INLINE_MAX_BYTES``)?"""
    if isinstance(message, str):
        return len(message) > frames.ENCODE_INLINE_MAX_BYTES
    rows = message.get("rows") or message.get("old_values") or ()
    return len(rows) > 200  # ~64 KiB of JSON for typical rows
