"""What the server does with each client message (PROTOCOL §6.3-§6.5): ``HANDLERS`` maps a
message ``type`` to its handler ``async (connection, message) -> None``.

Handlers only queue replies on the connection's outbox (the writer sends them). Ordering
guarantee for a subscription: ack, then initial pages, then buffered changes, then live
ones — ``Subscription.go_live`` runs right after the last page is queued, with no
checkpoint in between.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from engine import EngineError, Session
from engine.live import InitialRows, LiveQueryError, Page, Subscription, render

from ..auth import AuthFailure, verify_access_token
from . import frames

if TYPE_CHECKING:
    from .connection import Connection

Handler = Callable[["Connection", dict[str, Any]], Awaitable[None]]

AUTH_FAILED = "Authentication failed"
RATE_LIMITED = "Too many authentication attempts. Please retry shortly."


def authenticate_token(conn: Connection, token: str, protocol: dict[str, Any]) -> None:
    """Verifies ``token`` (also used for header pre-auth) and queues ``auth_success``, or
    ``auth_error`` and close 1008. The per-IP auth bucket of §1.0 applies (loopback too)."""
    app = conn.app
    if not app.auth_limiter.allow(conn.client_ip, time.monotonic()):
        conn.put({"type": "auth_error", "message": RATE_LIMITED})
        conn.close(1008, AUTH_FAILED)
        return
    try:
        user = verify_access_token(app.config.auth.jwt_secret, token, app.engine.catalog,
                                   time.time())
    except AuthFailure:
        conn.put({"type": "auth_error", "message": "Invalid credentials"})
        conn.close(1008, AUTH_FAILED)
        return
    if conn.user is not None and conn.user.user_id != user.user_id:
        # Another identity on a socket with subscriptions: their rows must not mix.
        for sub in list(conn.subs.values()):
            sub.close()
        conn.subs.clear()
    conn.user = user
    # Only JSON frames are spoken (msgpack is out of scope): say so in the echo.
    conn.put({"type": "auth_success", "user": user.user_id, "role": user.role,
              "protocol": {"serialization": "json",
                           "compression": protocol.get("compression", "gzip")}})


async def _authenticate(conn: Connection, message: dict[str, Any]) -> None:
    conn.auth_started = True
    authenticate_token(conn, message["token"], message["protocol"])


def _session(conn: Connection) -> Session:
    assert conn.user is not None
    return Session(conn.user.user_id, conn.user.role)


async def _subscribe(conn: Connection, message: dict[str, Any]) -> None:
    if conn.user is None:
        conn.error("subscribe", "AUTH_REQUIRED", "Authentication required before subscribing")
        return
    body = message["subscription"]
    sub_id, sql, options = body["id"].strip(), body["sql"], body.get("options")
    if not sub_id:
        conn.error("invalid_subscription", "INVALID_SUBSCRIPTION_ID",
                   "Subscription id must not be blank")
        return
    live = conn.engine.live
    try:
        sub = live.subscribe(_session(conn), conn.connection_id, sub_id, sql, options,
                             conn.outbox)
    except LiveQueryError as exc:
        conn.error(sub_id, exc.code, exc.message)
        return
    except EngineError as exc:
        conn.error(sub_id, "SUBSCRIPTION_FAILED", f"Subscription failed: {exc}")
        return
    for name in [k for k, s in conn.subs.items() if s.state == "closed"]:
        del conn.subs[name]  # dropped or killed meanwhile: forget them
    conn.subs[sub_id] = sub
    if sub.state == "live":  # no options: no initial data, changes flow from now on
        conn.put(render.ack(sub, None))
        return
    job = live.initial_job(sub)
    await _send_page(conn, sub, None, job)


def _page_frame(sub: Subscription, initial: InitialRows, after: int | None, batch_num: int,
                compress: bool) -> tuple[Page, frames.Encoded]:
    """Worker thread: cut the page and render and encode its message (pure: the
    subscription fields it reads never change after subscribing)."""
    page = initial.page(after, batch_num, sub.batch_size, sub.last_rows)
    text = render.initial_batch_text(sub, page)
    return page, frames.Encoded(frames.encode(text, compress))


async def _send_page(conn: Connection, sub: Subscription, after: int | None,
                     job: Callable[[], InitialRows] | None) -> None:
    """Queues the next initial page (with the ack before batch 0); goes live after the
    last one. With ``job`` (the first page) the initial load runs first, in the same
    worker thread as the page's rendering and compression: one thread hop per page. The
    subscription keeps buffering meanwhile."""
    initial, batch_num = sub.initial, sub.batches_sent

    def work() -> tuple[InitialRows, Page, frames.Encoded]:
        rows = job() if job is not None else initial
        assert rows is not None
        return rows, *_page_frame(sub, rows, after, batch_num, conn.compress)

    try:
        initial, page, frame = await trio.to_thread.run_sync(work)
    except EngineError as exc:
        sub.fail("SUBSCRIPTION_FAILED", f"Initial load failed: {exc}")
        return
    except Exception as exc:  # a cell JSON cannot carry, a column dropped meanwhile, …
        sub.fail("CONVERSION_ERROR", f"Row conversion failed: {exc}")
        return
    if sub.state != "loading":
        return  # dropped meanwhile (buffer overflow, unsubscribe, kill, DROP TABLE)
    if job is not None:
        sub.loaded(initial)
        conn.put(render.ack(sub, page))
    sub.batches_sent = batch_num + 1
    conn.put(frame)
    if not page.has_more:
        sub.go_live()


async def _next_batch(conn: Connection, message: dict[str, Any]) -> None:
    if conn.user is None:
        return  # ignored before auth, without a reply (§6.3)
    sub_id = message["subscription_id"]
    sub = conn.subs.get(sub_id)
    if sub is None or sub.state != "loading" or sub.initial is None:
        conn.error(sub_id, "BATCH_FETCH_FAILED",
                   f"No initial load in progress for subscription '{sub_id}'")
        return
    await _send_page(conn, sub, message.get("last_seq_id"), None)


async def _unsubscribe(conn: Connection, message: dict[str, Any]) -> None:
    if conn.user is None:
        return
    sub = conn.subs.pop(message["subscription_id"], None)
    if sub is not None:
        sub.close()


async def _ping(conn: Connection, message: dict[str, Any]) -> None:
    # Liveness was refreshed when the frame arrived; system.live shows the ping time.
    # WebSocket-level ping frames never get here: hypercorn answers them itself and passes
    # nothing over ASGI, so only this message (or any other) keeps a connection alive.
    now = conn.engine.clock.now_ms()
    for sub in conn.subs.values():
        sub.last_ping_ms = now


HANDLERS: dict[str, Handler] = {
    "authenticate": _authenticate,
    "subscribe": _subscribe,
    "next_batch": _next_batch,
    "unsubscribe": _unsubscribe,
    "ping": _ping,
}
