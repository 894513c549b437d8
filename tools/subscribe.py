"""``sluice subscribe "SELECT … FROM ns.t [WHERE …]"``: prints a live query's rows and changes.

Authenticates like ``sluice sql`` (stored token, refresh, or a login; ``tools.connect``),
opens ``/v1/ws`` with the token as header pre-auth (PROTOCOL §6.1), subscribes with options
(so the server sends the initial data, §6.5), pages through the initial batches with
``next_batch``, then prints each change until Ctrl-C, which exits 0. A JSON ``ping`` goes out
every ``PING_INTERVAL_SECONDS`` because the server never pings and drops a silent client
after ``websocket.client_timeout_secs`` (10 s, §6.6).

Output, one line per row, flushed per message:

- ``--format json`` (default): ``{"change": "initial"|"insert"|"update"|"delete", "row":
  {...}, "old": {...}}``: ``row`` is the new row (absent for a delete), ``old`` the old values
  the server sent (updates: the changed columns; deletes: the tombstone). Cells are the
  server's JSON encoding (§3.5: BigInt as strings), passed through unchanged.
- ``--format table``: a header from the subscription's schema, then one ``|``-separated line
  per row with the change kind first (an update shows its new values; a delete its old).

Errors: an ``error`` message from the server (bad SQL, unknown table, no access, limits)
prints ``ERROR CODE: message`` on stderr and exits 1; the server closing the socket exits 5;
authentication failures exit 6 (``tools.client``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from .cli import CliParser
from .client import EXIT_CODES_HELP, EXIT_OK, ApiClient, ApiError, AuthError
from .connect import add_connection_arguments, guarded, open_client
from .render import NULL_TEXT, cell_text
from .ws import WebSocket, WsClosed

PING_INTERVAL_SECONDS = 4.0  # well under the server's 10 s client timeout (§6.6)
SUBSCRIPTION_ID = "sluice-cli"
TABLE_COLUMN_WIDTH_MIN = 8  # characters per column in --format table (wider cells widen it)
AUTH_FAILED_CLOSE_CODE = 1008  # the server's close after auth_error (§6.4)

DESCRIPTION = """\
Subscribes to a live query over the server's WebSocket (/v1/ws) and prints its current rows,
then every insert, update and delete as it happens, one line each, until Ctrl-C (exit 0).
The query is SELECT <columns|*> FROM namespace.table [WHERE ...] (no ORDER BY, LIMIT, JOIN,
GROUP BY)."""


def _nonnegative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def subscribe_main(argv: list[str], prog: str) -> int:
    """``sluice subscribe SQL ...``; see the module doc."""
    parser = CliParser(prog=prog, description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    parser.add_argument("sql", metavar="SQL", help="SELECT ... FROM namespace.table [WHERE ...]")
    parser.add_argument("--from", dest="from_seq", type=_nonnegative, metavar="SEQ",
                        help="initial rows only after this _seq (exclusive)")
    parser.add_argument("--last-rows", type=_nonnegative, metavar="N",
                        help="initial rows: only the newest N")
    parser.add_argument("--no-initial", action="store_true",
                        help="skip the initial rows: print changes only")
    parser.add_argument("--format", choices=("json", "table"), default="json")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    try:
        client = open_client(args, interactive=sys.stdin.isatty())
    except ValueError as exc:
        parser.error(str(exc))
    printer = Printer(args.format)
    try:
        return guarded(prog, sys.stderr, lambda: _run(client, args, printer))
    finally:
        client.conn.close()


def _options(args: Any) -> dict[str, Any] | None:
    if args.no_initial:
        return None  # no options: the server sends no initial data (§6.5)
    options: dict[str, Any] = {}
    if args.from_seq is not None:
        options["from"] = args.from_seq
    if args.last_rows is not None:
        options["last_rows"] = args.last_rows
    return options


def _connect(client: ApiClient) -> WebSocket:
    """An authenticated socket; a rejected stored token is replaced once (refresh/login)."""
    for force in (False, True):
        ws = WebSocket.open(client.conn.url, client.authenticate(force=force))
        try:
            first = ws.recv(timeout=10.0)
        except WsClosed as exc:
            ws.close()
            if exc.code == AUTH_FAILED_CLOSE_CODE and not force:
                continue
            raise
        if isinstance(first, dict) and first.get("type") == "auth_success":
            return ws
        ws.close()
        if not (isinstance(first, dict) and first.get("type") == "auth_error") or force:
            raise AuthError(f"the WebSocket refused the token: {first!r}")
    raise AssertionError("unreachable")


def _run(client: ApiClient, args: Any, printer: Printer) -> int:
    ws = _connect(client)
    try:
        ws.send_json({"type": "subscribe", "subscription": {
            "id": SUBSCRIPTION_ID, "sql": args.sql, "options": _options(args)}})
        last_sent = time.monotonic()
        while True:
            wait = PING_INTERVAL_SECONDS - (time.monotonic() - last_sent)
            message = ws.recv(timeout=wait) if wait > 0 else None
            if message is None:
                ws.send_json({"type": "ping"})
                last_sent = time.monotonic()
                continue
            reply = _handle(message, printer)
            if reply is not None:
                ws.send_json(reply)
                last_sent = time.monotonic()
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how a subscription ends
    finally:
        ws.close()


def _handle(message: Any, printer: Printer) -> dict[str, Any] | None:
    """Prints one server message; returns the message to send back (``next_batch``) or None.
    An ``error`` raises ``ApiError``."""
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == "error":
        raise ApiError(0, str(message.get("code", "ERROR")), str(message.get("message", "")),
                       message)
    if kind == "subscription_ack":
        printer.schema(message.get("schema") or [])
    elif kind == "initial_data_batch":
        rows = message.get("rows") or []
        for row in rows:
            printer.row("initial", row, None)
        control = message.get("batch_control") or {}
        if control.get("has_more") and rows:
            # _seq is a string cell; next_batch wants a JSON number (§6.4).
            return {"type": "next_batch", "subscription_id": SUBSCRIPTION_ID,
                    "last_seq_id": int(rows[-1]["_seq"])}
    elif kind == "change":
        change = str(message.get("change_type"))
        rows = message.get("rows") or []
        olds = message.get("old_values") or []
        for index in range(max(len(rows), len(olds))):
            printer.row(change, rows[index] if index < len(rows) else None,
                        olds[index] if index < len(olds) else None)
    printer.flush()
    return None


class Printer:
    """Writes rows to stdout as JSON lines or table lines (see the module doc)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.columns: list[dict[str, Any]] = []
        self.widths: list[int] = []

    def schema(self, columns: list[dict[str, Any]]) -> None:
        self.columns = [c for c in columns if isinstance(c, dict) and "name" in c]
        if self.fmt != "table":
            return
        names = ["change", *(str(c["name"]) for c in self.columns)]
        self.widths = [max(TABLE_COLUMN_WIDTH_MIN, len(name)) for name in names]
        self._line(names)
        sys.stdout.write("-+-".join("-" * width for width in self.widths) + "\n")

    def row(self, change: str, row: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if self.fmt == "json":
            line: dict[str, Any] = {"change": change}
            if row is not None:
                line["row"] = row
            if old is not None:
                line["old"] = old
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            return
        shown = row if row is not None else old or {}
        cells = [change]
        for column in self.columns:
            name = column["name"]
            text = cell_text(shown[name], column.get("data_type")) if name in shown else ""
            cells.append(NULL_TEXT if text is None else text)
        self._line(cells)

    def _line(self, cells: list[str]) -> None:
        self.widths += [TABLE_COLUMN_WIDTH_MIN] * (len(cells) - len(self.widths))
        sys.stdout.write(" | ".join(cell.ljust(width) for cell, width
                                    in zip(cells, self.widths, strict=False)).rstrip() + "\n")

    @staticmethod
    def flush() -> None:
        sys.stdout.flush()
