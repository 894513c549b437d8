"""``sluice ingest ns.table FILE``: streams a file of rows to ``POST /v1/api/ingest/{ns}/{table}``.

The file is sent in batches of at most ``--batch-rows`` rows and about ``--batch-bytes``
bytes (whichever fills first), each one request on one keep-alive connection, each answered
``{"status":"success","row_count":N,"last_seq":"…","took":ms}`` once its rows are durable. A
batch the server refuses stops the run (exit 1): the batches before it stay ingested (the
summary on stderr says how many rows), nothing of the refused one is written.

Formats, by extension (or ``--format``):

- ``.ndjson`` / ``.jsonl``: one JSON object per line, sent as ``application/x-ndjson``;
  blank lines are skipped. Lines are sent as they are (the server parses them).
- ``.arrow`` / ``.arrows`` / ``.ipc``: an Arrow IPC stream or file (told apart by the file
  format's ``ARROW1`` magic), re-batched and sent as Arrow IPC streams
  (``application/vnd.apache.arrow.stream``).

Progress (rows sent / total) is drawn on stderr when stderr is a terminal; the total comes
from a first pass over the file.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .cli import CliParser
from .client import EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE, ApiClient
from .connect import add_connection_arguments, guarded, open_client

NDJSON = "application/x-ndjson"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
FORMATS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".arrow": "arrow", ".arrows": "arrow",
           ".ipc": "arrow"}
BATCH_ROWS_DEFAULT = 10_000
BATCH_BYTES_DEFAULT = 4 * 1024 * 1024  # well under the server's 10 MiB request body limit
PROGRESS_BAR_WIDTH_CHARS = 30
ARROW_FILE_MAGIC = b"ARROW1"

DESCRIPTION = """\
Streams FILE into the table NAMESPACE.TABLE through the ingest endpoint, in batches, with a
progress bar on stderr. FILE is NDJSON (.ndjson, .jsonl: one JSON object per line) or Arrow
IPC (.arrow, .arrows, .ipc: stream or file format)."""


def ndjson_batches(path: Path, batch_rows: int, batch_bytes: int) -> Iterator[tuple[bytes, int]]:
    """(body, rows) pairs: runs of non-blank lines within both limits (one line always fits,
    however long; the server judges it)."""
    lines: list[bytes] = []
    size = 0
    with path.open("rb") as source:
        for line in source:
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                line += b"\n"
            if lines and (len(lines) >= batch_rows or size + len(line) > batch_bytes):
                yield b"".join(lines), len(lines)
                lines, size = [], 0
            lines.append(line)
            size += len(line)
    if lines:
        yield b"".join(lines), len(lines)


def ndjson_rows(path: Path) -> int:
    with path.open("rb") as source:
        return sum(1 for line in source if line.strip())


def _arrow_reader(path: Path) -> Any:
    import pyarrow as pa

    with path.open("rb") as probe:
        is_file = probe.read(len(ARROW_FILE_MAGIC)) == ARROW_FILE_MAGIC
    source = pa.memory_map(str(path))
    return pa.ipc.open_file(source) if is_file else pa.ipc.open_stream(source)


def _arrow_record_batches(reader: Any) -> Iterator[Any]:
    if hasattr(reader, "num_record_batches"):  # the file format
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)
    else:
        yield from reader


def arrow_rows(path: Path) -> int:
    return sum(batch.num_rows for batch in _arrow_record_batches(_arrow_reader(path)))


def arrow_batches(path: Path, batch_rows: int, batch_bytes: int) -> Iterator[tuple[bytes, int]]:
    """(IPC stream bytes, rows) pairs re-cut to the limits (at least one row each)."""
    import pyarrow as pa

    reader = _arrow_reader(path)
    pending: list[Any] = []
    rows = size = 0
    for batch in _arrow_record_batches(reader):
        row_bytes = max(1, batch.nbytes // max(1, batch.num_rows))
        offset = 0
        while offset < batch.num_rows:
            room = min(batch_rows - rows, max(1, (batch_bytes - size) // row_bytes))
            piece = batch.slice(offset, min(room, batch.num_rows - offset))
            pending.append(piece)
            rows, size, offset = rows + piece.num_rows, size + piece.nbytes, offset + piece.num_rows
            if rows >= batch_rows or size >= batch_bytes:
                yield _ipc_stream(pa, reader.schema, pending), rows
                pending, rows, size = [], 0, 0
    if pending:
        yield _ipc_stream(pa, reader.schema, pending), rows


def _ipc_stream(pa: Any, schema: Any, batches: list[Any]) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue()


class Progress:
    """A one-line bar on ``err`` when it is a terminal; silent otherwise."""

    def __init__(self, err: TextIO, label: str, total: int) -> None:
        self.err, self.label, self.total = err, label, total
        self.live = err.isatty()

    def update(self, sent: int) -> None:
        if not self.live:
            return
        share = sent / self.total if self.total else 1.0
        filled = int(share * PROGRESS_BAR_WIDTH_CHARS)
        bar = "#" * filled + "." * (PROGRESS_BAR_WIDTH_CHARS - filled)
        self.err.write(f"\r{self.label} [{bar}] {sent}/{self.total} rows ({share:.0%})")
        self.err.flush()

    def done(self) -> None:
        if self.live:
            self.err.write("\n")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def ingest_main(argv: list[str], prog: str) -> int:
    """``sluice ingest NAMESPACE.TABLE FILE [--batch-rows N]``; see the module doc."""
    parser = CliParser(prog=prog, description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    parser.add_argument("table", metavar="NAMESPACE.TABLE")
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument("--batch-rows", type=_positive, default=BATCH_ROWS_DEFAULT,
                        help="rows per request at most (default: %(default)s)")
    parser.add_argument("--batch-bytes", type=_positive, default=BATCH_BYTES_DEFAULT,
                        help="about this many bytes per request at most (default: %(default)s)")
    parser.add_argument("--format", choices=("ndjson", "arrow"),
                        help="the file's format (default: from its extension)")
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    namespace, dot, table = args.table.partition(".")
    if not dot or not namespace or not table:
        parser.error(f"the table must be NAMESPACE.TABLE, not {args.table!r}")
    kind = args.format or FORMATS.get(args.file.suffix.lower())
    if kind is None:
        parser.error(f"cannot tell the format of {args.file} from its extension "
                     f"({', '.join(FORMATS)}); use --format")
    if not args.file.is_file():
        sys.stderr.write(f"{prog}: {args.file}: not a readable file\n")
        return EXIT_USAGE
    try:
        client = open_client(args, interactive=sys.stdin.isatty())
    except ValueError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return EXIT_USAGE
    try:
        return guarded(prog, sys.stderr, lambda: _ingest(client, args, kind))
    except (OSError, ValueError) as exc:  # unreadable file; pyarrow's ArrowInvalid too
        sys.stderr.write(f"{prog}: cannot read {args.file} as {kind}: {exc}\n")
        return EXIT_USAGE
    finally:
        client.conn.close()


def _ingest(client: ApiClient, args: Any, kind: str) -> int:
    total = ndjson_rows(args.file) if kind == "ndjson" else arrow_rows(args.file)
    batches = (ndjson_batches if kind == "ndjson" else arrow_batches)(
        args.file, args.batch_rows, args.batch_bytes)
    content_type = NDJSON if kind == "ndjson" else ARROW_STREAM
    progress = Progress(sys.stderr, args.table, total)
    started = time.monotonic()
    sent, last_seq = 0, None
    progress.update(0)
    try:
        for body, rows in batches:
            reply = client.ingest(args.table, body, content_type)
            sent += int(reply.get("row_count", rows))
            last_seq = reply.get("last_seq", last_seq)
            progress.update(sent)
    finally:
        progress.done()
        seconds = time.monotonic() - started
        rate = f", {sent / seconds:,.0f} rows/s" if seconds > 0 and sent else ""
        sys.stderr.write(f"ingested {sent} of {total} rows into {args.table} in "
                         f"{seconds:.2f} s{rate}" + (f"; last _seq {last_seq}" if last_seq
                                                      else "") + "\n")
    return EXIT_OK

