"""``sluice consume TOPIC --group G``: reads a topic as a consumer group, one JSON line per message.

Each round is ``POST /v1/api/topics/consume`` (PROTOCOL §4.2) on one keep-alive connection,
then (unless ``--no-ack``) ``POST /v1/api/topics/ack`` up to the last offset printed (§4.3),
after stdout was flushed, so a message is acknowledged only once it was written: delivery is
at least once (a crash between print and ack prints it again next time).

``--from earliest|latest|N`` applies only when the group has no committed offset yet (the
server resumes a group after its last ack). Without ``--follow`` the command reads until a
reply is empty or not full (the backlog at that moment) and exits; with ``--follow`` it keeps
long-polling (``timeout_seconds``, which Sluice honours) until Ctrl-C, which exits 0.

Output line: ``{"topic_id", "partition_id", "offset", "key", "op", "user", "timestamp_ms",
"payload"}`` where ``payload`` is the decoded base64: the JSON value when the bytes are UTF-8
JSON (a row, as topics publish), else the UTF-8 text, else ``payload_base64`` keeps the bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from typing import Any

from .cli import CliParser
from .client import (
    CONNECT_TIMEOUT_SECONDS,
    EXIT_CODES_HELP,
    EXIT_OK,
    ApiClient,
    ApiError,
)
from .connect import add_connection_arguments, guarded, open_client

LIMIT_DEFAULT = 100  # messages per consume call (the server's default too)
POLL_SECONDS_DEFAULT = 10  # long-poll wait per call with --follow

DESCRIPTION = """\
Consumes TOPIC (NAMESPACE.NAME) as consumer group GROUP and prints one JSON object per
message on stdout, acknowledging as it goes (--no-ack only peeks: the group's committed
offset does not move). Needs a service, dba or system user."""


def decode_payload(encoded: Any) -> dict[str, Any]:
    """``{"payload": value}`` for a base64 payload (see the module doc for the rules)."""
    if not isinstance(encoded, str):
        return {"payload": encoded}
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return {"payload_base64": encoded}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"payload_base64": encoded}
    try:
        return {"payload": json.loads(text)}
    except ValueError:
        return {"payload": text}


def message_line(message: dict[str, Any]) -> str:
    fields = {name: message.get(name) for name in
              ("topic_id", "partition_id", "offset", "key", "op", "user", "timestamp_ms")}
    return json.dumps(fields | decode_payload(message.get("payload")), ensure_ascii=False)


def _start(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("earliest", "latest"):
        return lowered.capitalize()
    try:
        offset = int(text)
    except ValueError:
        raise ValueError(f"--from takes earliest, latest or an offset, not {text!r}") from None
    if offset < 0:
        raise ValueError("--from offset must be >= 0")
    return {"Offset": offset}


def _nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def consume_main(argv: list[str], prog: str) -> int:
    """``sluice consume TOPIC --group G ...``; see the module doc."""
    parser = CliParser(prog=prog, description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    parser.add_argument("topic", metavar="TOPIC")
    parser.add_argument("--group", "-g", required=True, help="consumer group id")
    parser.add_argument("--from", dest="start", default="latest",
                        help="earliest, latest (default) or an offset: where a group "
                             "without a committed offset starts")
    parser.add_argument("--follow", action="store_true",
                        help="keep waiting for new messages until Ctrl-C")
    parser.add_argument("--no-ack", action="store_true", help="do not acknowledge (peek)")
    parser.add_argument("--partition", type=_nonnegative, default=0)
    parser.add_argument("--limit", type=_nonnegative, default=LIMIT_DEFAULT,
                        help="messages per request (default: %(default)s)")
    parser.add_argument("--max-messages", type=_nonnegative,
                        help="stop after this many messages")
    parser.add_argument("--poll-seconds", type=_nonnegative, default=POLL_SECONDS_DEFAULT,
                        help="long-poll wait per request with --follow (default: %(default)s)")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    try:
        start = _start(args.start)
        client = open_client(args, interactive=sys.stdin.isatty())
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return guarded(prog, sys.stderr, lambda: _consume(client, args, start))
    finally:
        client.conn.close()


def _consume(client: ApiClient, args: Any, start: Any) -> int:
    request = {"topic_id": args.topic, "group_id": args.group, "start": start,
               "limit": args.limit, "partition_id": args.partition,
               "timeout_seconds": args.poll_seconds if args.follow else 0}
    printed = 0
    try:
        while args.max_messages is None or printed < args.max_messages:
            if args.max_messages is not None:
                request["limit"] = min(args.limit, args.max_messages - printed)
            reply = client.success(client.post_json(
                "/v1/api/topics/consume", request,
                timeout=request["timeout_seconds"] + CONNECT_TIMEOUT_SECONDS))
            messages = reply.get("messages") or []
            for message in messages:
                sys.stdout.write(message_line(message) + "\n")
            sys.stdout.flush()
            printed += len(messages)
            if messages and not args.no_ack:
                _ack(client, args, messages[-1]["offset"])
            if not args.follow and (not messages or not reply.get("has_more")):
                break
    except KeyboardInterrupt:
        if not args.follow:
            raise
    return EXIT_OK


def _ack(client: ApiClient, args: Any, offset: Any) -> None:
    reply = client.post_json("/v1/api/topics/ack", {
        "topic_id": args.topic, "group_id": args.group, "partition_id": args.partition,
        "upto_offset": int(offset)})
    body = client.success(reply)
    if body.get("success") is False:
        raise ApiError(reply.status, "ACK_FAILED", json.dumps(body), body)

