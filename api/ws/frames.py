"""WebSocket frames of PROTOCOL §6.2/§6.3: client messages checked, server messages encoded.

Client → server: JSON text. ``parse_client(text)`` returns the message dict with its fields
checked, or raises ``ProtocolViolation`` (the connection then closes with **1011**
"Invalid message: …", as the reference does for text it cannot deserialize):
- ``authenticate``: ``method`` "jwt", ``token`` a string, ``protocol`` optional (a
  decisions-table choice; the reference requires it) with ``serialization`` json|msgpack and
  ``compression`` gzip|none;
- ``subscribe``: ``subscription`` {``id`` string, ``sql`` string, ``options`` object or
  null}; numeric options (``batch_size``, ``last_rows``, ``from``/``from_seq_id``) must be
  JSON integers;
- ``next_batch``: ``subscription_id`` string, ``last_seq_id`` integer or absent/null;
- ``unsubscribe``: ``subscription_id`` string;
- ``ping``: nothing else.

Server → client: compact JSON text; with compression on (the default; ``?compress=false``
turns it off) a message of at least ``GZIP_MIN_BYTES`` whose gzip is smaller goes out as a
gzip **binary** frame instead. Pure functions; ``encode`` of a large message is CPU work, so
callers run it in a worker thread above ``ENCODE_INLINE_MAX_BYTES`` (or encode in the
worker thread that rendered the message, and queue the result as ``Encoded``).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

GZIP_MIN_BYTES = 512  # PROTOCOL §6.2
# gzip level 6: zlib's default, the reference's (flate2 default); level 9 costs ~2x the
# CPU for a few percent.
GZIP_LEVEL = 6
# Above ENCODE_INLINE_MAX_BYTES (initial pages, big changes) level 1: for 100 KB of row JSON
# it is ~4x faster than level 6 (0.45 vs 1.8 ms here) for output ~8 % larger.
GZIP_LEVEL_LARGE = 1
# JSON bodies longer than this are compressed in a worker thread (about 0.5 ms of CPU).
ENCODE_INLINE_MAX_BYTES = 64 * 1024

_DEFAULT_PROTOCOL = {"serialization": "json", "compression": "gzip"}
_OPTION_INTS = ("batch_size", "last_rows", "from", "from_seq_id")


class ProtocolViolation(ValueError):
    """Text that is not a valid client message; the reason goes into the close frame."""


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise ProtocolViolation(reason)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _authenticate(message: dict[str, Any]) -> None:
    _require(message.get("method") == "jwt", "authenticate.method must be \"jwt\"")
    _require(isinstance(message.get("token"), str), "authenticate.token must be a string")
    protocol = message.get("protocol")
    if protocol is None:
        message["protocol"] = dict(_DEFAULT_PROTOCOL)
        return
    _require(isinstance(protocol, dict), "authenticate.protocol must be an object")
    _require(protocol.get("serialization", "json") in ("json", "msgpack"),
             "protocol.serialization must be json or msgpack")
    _require(protocol.get("compression", "gzip") in ("gzip", "none"),
             "protocol.compression must be gzip or none")


def _subscribe(message: dict[str, Any]) -> None:
    sub = message.get("subscription")
    _require(isinstance(sub, dict), "subscribe.subscription must be an object")
    _require(isinstance(sub.get("id"), str), "subscription.id must be a string")
    _require(isinstance(sub.get("sql"), str), "subscription.sql must be a string")
    options = sub.get("options")
    _require(options is None or isinstance(options, dict),
             "subscription.options must be an object or null")
    for key in _OPTION_INTS:
        value = (options or {}).get(key)
        _require(value is None or _is_int(value), f"options.{key} must be an integer")


def _next_batch(message: dict[str, Any]) -> None:
    _require(isinstance(message.get("subscription_id"), str),
             "next_batch.subscription_id must be a string")
    last = message.get("last_seq_id")
    _require(last is None or _is_int(last), "next_batch.last_seq_id must be an integer")


def _unsubscribe(message: dict[str, Any]) -> None:
    _require(isinstance(message.get("subscription_id"), str),
             "unsubscribe.subscription_id must be a string")


_CHECKS = {"authenticate": _authenticate, "subscribe": _subscribe, "next_batch": _next_batch,
           "unsubscribe": _unsubscribe, "ping": lambda message: None}


def parse_client(text: str) -> dict[str, Any]:
    """The checked client message; raises ``ProtocolViolation``."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolViolation(f"not JSON: {exc.msg}") from None
    except RecursionError:  # issue 9: "[[[…" deeper than the interpreter's stack
        raise ProtocolViolation("not JSON: nested too deeply") from None
    _require(isinstance(message, dict), "a message must be a JSON object")
    kind = message.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    _require(check is not None, f"unknown message type {kind!r}")
    assert check is not None
    check(message)
    return message


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A message already encoded (``encode``'s event), queued for the writer to send as is."""

    event: dict[str, Any]


def encode(message: dict[str, Any] | str, compress: bool) -> dict[str, Any]:
    """The ASGI ``websocket.send`` event for ``message`` (a dict, or its JSON text)."""
    text = message if isinstance(message, str) else dumps(message)
    if compress and len(text) >= GZIP_MIN_BYTES:  # chars ≤ bytes: a cheap first test
        data = text.encode()
        level = GZIP_LEVEL if len(data) <= ENCODE_INLINE_MAX_BYTES else GZIP_LEVEL_LARGE
        packed = zlib.compress(data, level, wbits=31)  # wbits 31: a gzip member (RFC 1952)
        if len(packed) < len(data):
            return {"type": "websocket.send", "bytes": packed}
    return {"type": "websocket.send", "text": text}
