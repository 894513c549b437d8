"""Read-only WAL tools: ``sluice wal inspect``, ``sluice wal verify`` and ``sluice wal dump``.

Nothing here writes, renames, truncates or repairs a file: repair is recovery's job when the
log is opened (``open_wal``, ``sluice wal init``). The diagnosis is ``wal.recovery.analyze``,
the decision table recovery itself uses, so ``verify`` predicts exactly what the next open
will do: exit 0 (opens as is), 1 (cuts a torn tail), 2 (refuses to open).

Each ``*_main(argv, prog) -> int`` is a ``tools.cli`` command target: it parses its own
arguments, writes its report to stdout and problems with its input to stderr, and returns an
exit code (``tools.cli.EXIT_*``). A missing, non-directory or segment-less DIR exits 3.

Reading a live log is safe but racy: a record being written at that moment can show up as a
torn tail. Segments are read whole, one at a time (``wal.scan.read_segment_bytes``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from engine.events import describe as describe_event
from engine.events import event_kind_name
from wal import Frame, WalCorruptionError, iter_frames
from wal.format import (
    BROKEN_SUFFIX,
    FRAME_HEADER_SIZE,
    FrameHeader,
    decode_frame_header,
    decode_payload,
    parse_segment_name,
    segment_name,
)
from wal.recovery import RecoveryReport, analyze
from wal.scan import SegmentScan, StopFacts, read_segment_bytes, scan_segment
from wal.segment import SegmentFile, broken_copy_path, list_segments

from .cli import (
    EXIT_CODES_HELP,
    EXIT_CORRUPT,
    EXIT_NOT_A_WAL,
    EXIT_OK,
    EXIT_TORN_TAIL,
    EXIT_USAGE,
    CliParser,
)

FRAMES_SHOWN_DEFAULT = 50  # inspect: frame-table rows; a 64 MiB segment can hold ~1M frames
DUMP_RECORDS_DEFAULT = 20  # dump: records per run; page on with --from
DUMP_BYTES_DEFAULT = 256  # dump (hex): payload bytes shown per record; records reach 16 MiB
_HEX_ROW_BYTES = 16

SEGMENT_COLUMNS = ("SEGMENT", "BASE LSN", "FRAMES", "LAST LSN", "USED / SIZE", "STATUS")
FRAME_COLUMNS = ("SEGMENT", "OFFSET", "LSN", "STORED", "RAW", "CODEC", "CRC", "TYPE")
_NUMERIC_COLUMNS = frozenset({1, 2, 3, 4})  # right-aligned in both tables


# ---- commands ------------------------------------------------------------------------------

def inspect_main(argv: list[str], prog: str) -> int:
    """``sluice wal inspect DIR [--frames N] [--segment BASE]``: segment table, frame table
    and the verdict. Exits 0 whatever the log's state (``verify`` is the check), or 3."""
    parser = _parser(prog, "Lists the segments of a log (base LSN, frames, last LSN, used "
                     "bytes, status) and its frames (position, LSN, lengths, codec, CRC), "
                     "then the verdict of `sluice wal verify`. Read-only.")
    parser.add_argument("--frames", type=_count, default=FRAMES_SHOWN_DEFAULT, metavar="N",
                        help=f"frame-table rows to show (0 = all; default "
                        f"{FRAMES_SHOWN_DEFAULT})")
    parser.add_argument("--segment", type=_segment_base, metavar="BASE",
                        help="only the segment with this base LSN (or file name)")
    args = parser.parse_args(argv)
    return _run(prog, args.directory, lambda d: _inspect(prog, d, args.frames, args.segment))


def verify_main(argv: list[str], prog: str) -> int:
    """``sluice wal verify DIR``: exit 0 clean, 1 torn tail, 2 corrupt, 3 not a log."""
    parser = _parser(prog, "Checks every frame of a log with recovery's decision table and "
                     "says what the next open would do. Read-only: nothing is repaired.")
    return _run(prog, parser.parse_args(argv).directory, _verify)


def dump_main(argv: list[str], prog: str) -> int:
    """``sluice wal dump DIR [--from LSN] [--limit N] [--json] [--bytes N]``: payloads.

    Prints valid records only. If the log is corrupt before ``--limit`` records were shown,
    the error follows on stderr and the exit code is 2.
    """
    parser = _parser(prog, "Prints record payloads in LSN order: hex with an ASCII preview, "
                     "or with --json one JSON object per line (lsn, segment, offset, length, "
                     "stored_length, compressed, payload_hex). Stops at the end of valid "
                     "data. Read-only.")
    parser.add_argument("--from", dest="from_lsn", type=_lsn, default=1, metavar="LSN",
                        help="first LSN to print (default: the first in the log)")
    parser.add_argument("--limit", type=_count, default=DUMP_RECORDS_DEFAULT, metavar="N",
                        help=f"records to print (0 = all; default {DUMP_RECORDS_DEFAULT})")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--bytes", dest="bytes_max", type=_count, default=DUMP_BYTES_DEFAULT,
                        metavar="N", help=f"hex: payload bytes shown per record (0 = all; "
                        f"default {DUMP_BYTES_DEFAULT}); --json always prints all")
    args = parser.parse_args(argv)
    return _run(prog, args.directory, lambda d: _dump(prog, d, args))


# ---- shared plumbing -----------------------------------------------------------------------

def _parser(prog: str, description: str) -> CliParser:
    parser = CliParser(prog=prog, description=description, epilog=EXIT_CODES_HELP)
    parser.add_argument("directory", type=Path, metavar="DIR",
                        help="the log directory (holds <base LSN>.wal segment files)")
    return parser


def _run(prog: str, directory: Path, command: Callable[[Path], int]) -> int:
    """Runs ``command`` on a directory that holds a log; exit 3 (stderr) if it does not."""
    try:
        reason = _not_a_wal(directory)
        if reason is None:
            return command(directory)
    except BrokenPipeError:
        raise
    except OSError as exc:
        reason = f"cannot read it: {exc}"
    sys.stderr.write(f"{prog}: not a WAL directory: {directory} ({reason})\n")
    return EXIT_NOT_A_WAL


def _not_a_wal(directory: Path) -> str | None:
    if not directory.exists():
        return "it does not exist"
    if not directory.is_dir():
        return "it is not a directory"
    if not list_segments(directory):
        return "it holds no segment files named <20-digit base LSN>.wal"
    return None


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a count >= 0, not {text!r}")
    return int(text)


def _lsn(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected an LSN >= 1, not {text!r}")
    return int(text)


def _segment_base(text: str) -> int:
    base = parse_segment_name(text) if text.endswith(".wal") else None
    return base if base is not None else _lsn(text)


def _out(lines: Iterable[str]) -> None:
    sys.stdout.write("".join(f"{line}\n" for line in lines))


def _table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    """Aligned columns, two spaces apart; numeric columns right-aligned."""
    cells = [header, *(tuple(str(cell) for cell in row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.rjust(width) if i in _NUMERIC_COLUMNS else cell.ljust(width)
                      for i, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in cells]


# ---- verify (and inspect's verdict) --------------------------------------------------------

def _verify(directory: Path) -> int:
    report = analyze(directory)
    code, lines = _verdict(report)
    _out(lines + _side_files(directory, report))
    return code


def _verdict(report: RecoveryReport) -> tuple[int, list[str]]:
    """The exit code and report lines for what the next open of the log would do."""
    records = _records_text(report)
    corruption = report.corruption
    if corruption is not None:
        return EXIT_CORRUPT, [
            f"corrupt: {corruption.segment_path} at byte {corruption.offset}",
            f"  reason: {corruption.reason}",
            f"  the log refuses to open; valid before it: {records}"]
    tail = report.torn_tail
    if tail is not None:
        copy = broken_copy_path(tail.segment_path, tail.offset).name
        return EXIT_TORN_TAIL, [
            f"torn tail: {tail.segment_path} at byte {tail.offset}",
            f"  {tail.bytes_cut} bytes would be cut on the next open (kept in {copy})",
            f"  reason: {tail.reason}",
            f"  rule:   {tail.note}",
            f"  valid:  {records}"]
    return EXIT_OK, [f"clean: {len(report.scans)} segment(s), {records}"]


def _records_text(report: RecoveryReport) -> str:
    first, last = report.first_lsn, report.last_lsn
    if first is None or last < first:
        return "no records"
    return f"records {first}..{last} ({last - first + 1})"


def _side_files(directory: Path, report: RecoveryReport) -> list[str]:
    lines = [f"temp file: {path} (an unfinished segment roll or the writer's spare; deleted "
             f"on the next open)" for path in report.temp_files]
    copies = sorted(entry.path for entry in os.scandir(directory) if BROKEN_SUFFIX in entry.name)
    lines += [f"torn-tail copy: {path} (bytes cut by an earlier recovery)" for path in copies]
    return lines


# ---- inspect -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _SegmentView:
    segment: SegmentFile
    scan: SegmentScan | None  # None: the segment header itself is invalid
    status: str


def _inspect(prog: str, directory: Path, frames_max: int, only_base: int | None) -> int:
    report = analyze(directory)
    views = _segment_views(directory, report)
    if only_base is not None:
        views = [view for view in views if view.segment.base_lsn == only_base]
        if not views:
            sys.stderr.write(f"{prog}: no segment with base LSN {only_base} in {directory}\n")
            return EXIT_USAGE
    lines = _table(SEGMENT_COLUMNS, [_segment_row(view) for view in views])
    rows = _frame_rows(views)
    lines += ["", *_table(FRAME_COLUMNS, list(islice(rows, frames_max or None)))]
    more = sum(1 for _ in rows)
    if more:
        lines.append(f"… {more} more rows (--frames N shows N, --frames 0 all)")
    lines += ["", *_verdict(report)[1], *_side_files(directory, report)]
    _out(lines)
    return EXIT_OK


def _segment_views(directory: Path, report: RecoveryReport) -> list[_SegmentView]:
    """Every segment with its scan and status. Segments that ``analyze`` did not reach
    (after a corruption) are scanned here on their own, so their frames still show."""
    checked = {scan.path.name: scan for scan in report.scans}
    views = []
    for segment in list_segments(directory):
        scan = checked.get(segment.path.name) or _scan_alone(segment.path)
        status = _status(segment, scan, report, checked=segment.path.name in checked)
        views.append(_SegmentView(segment, scan, status))
    return views


def _scan_alone(path: Path) -> SegmentScan | None:
    try:
        return scan_segment(path, read_segment_bytes(path))
    except WalCorruptionError:
        return None


def _status(segment: SegmentFile, scan: SegmentScan | None, report: RecoveryReport, *,
            checked: bool) -> str:
    corruption, tail = report.corruption, report.torn_tail
    if corruption is not None and corruption.segment_path.name == segment.path.name:
        return f"CORRUPT at byte {corruption.offset}"
    if tail is not None and tail.segment_path.name == segment.path.name:
        return f"torn tail at byte {tail.offset}"
    if not checked:
        return "bad header" if scan is None else "unchecked (after the corruption)"
    assert scan is not None
    return "full" if scan.stop is None else "ok"


def _segment_row(view: _SegmentView) -> tuple[object, ...]:
    scan, name = view.scan, view.segment.path.name
    if scan is None:
        size = view.segment.path.stat().st_size
        return (name, view.segment.base_lsn, "-", "-", f"- / {size}", view.status)
    last = scan.last_lsn if scan.frames else "-"
    return (name, scan.base_lsn, len(scan.frames), last, f"{scan.end_offset} / {scan.size_bytes}",
            view.status)


def _frame_rows(views: list[_SegmentView]) -> Iterator[tuple[object, ...]]:
    """One row per valid frame, plus one for the first invalid position of a segment unless
    that is the clean, zero-filled end."""
    for view in views:
        if view.scan is None:
            continue
        name = view.segment.path.name
        for offset, header in view.scan.frames:
            codec = header.codec.name.lower()
            yield (name, offset, header.lsn, header.stored_len, header.raw_len, codec, "ok",
                   _frame_type(view.segment.path, offset, header))
        stop = view.scan.stop
        if stop is not None and not stop.rest_zero:
            yield _stop_row(view.segment.path, stop)


def _frame_type(path: Path, offset: int, header: FrameHeader) -> str:
    """The engine event kind the record holds (read from its first payload bytes)."""
    with open(path, "rb") as f:
        f.seek(offset + FRAME_HEADER_SIZE)
        stored = f.read(header.stored_len if header.codec else min(header.stored_len, 8))
    try:
        payload = decode_payload(header, stored) if header.codec else stored
    except ValueError:
        return "?"
    return event_kind_name(payload)


def _stop_row(path: Path, stop: StopFacts) -> tuple[object, ...]:
    with open(path, "rb") as f:
        f.seek(stop.offset)
        head = f.read(FRAME_HEADER_SIZE)
    header = decode_frame_header(head, 0)
    what = f"<- {stop.reason}"
    if isinstance(header, str):
        return (path.name, stop.offset, "-", "-", "-", "-", "-", what)
    crc = "FAIL" if stop.length_ok else "-"  # length_ok: the payload CRC was checked
    return (path.name, stop.offset, header.lsn, header.stored_len, header.raw_len,
            header.codec.name.lower(), crc, what)


# ---- dump ----------------------------------------------------------------------------------

def _dump(prog: str, directory: Path, args: argparse.Namespace) -> int:
    report = analyze(directory)
    shown, error = 0, report.corruption
    try:
        # Bounded by the last valid LSN: bytes after it (damage, a torn tail) are never read.
        for frame in iter_frames(directory, args.from_lsn, upto_lsn=report.last_lsn):
            if args.limit and shown == args.limit:
                if not args.json:
                    _out([f"… more records follow (--from {frame.lsn})"])
                return EXIT_OK
            _out([_json_line(frame)] if args.json else _hex_lines(frame, args.bytes_max))
            shown += 1
    except WalCorruptionError as exc:
        error = exc
    if args.limit and shown == args.limit:
        return EXIT_OK  # whatever lies after the window (damage, a torn tail) was not asked for
    if error is not None:
        sys.stderr.write(f"{prog}: corrupt: {error.segment_path} at byte {error.offset}: "
                         f"{error.reason}\n")
        return EXIT_CORRUPT
    if not shown:
        sys.stderr.write(f"{prog}: no records from LSN {args.from_lsn}; the log holds "
                         f"{_records_text(report)}\n")
    if report.torn_tail is not None:
        sys.stderr.write(f"{prog}: note: the torn tail at byte {report.torn_tail.offset} of "
                         f"{report.torn_tail.segment_path.name} is not shown\n")
    return EXIT_OK


def _json_line(frame: Frame) -> str:
    return json.dumps({
        "lsn": frame.lsn, "segment": segment_name(frame.segment_base_lsn),
        "offset": frame.offset, "length": len(frame.payload),
        "stored_length": frame.stored_len, "compressed": frame.compressed,
        "event": describe_event(frame.payload), "payload_hex": frame.payload.hex()})


def _hex_lines(frame: Frame, bytes_max: int) -> list[str]:
    """A ``hexdump -C``-style block: offset, 16 bytes in hex, printable ASCII."""
    stored = f"zstd, {frame.stored_len} stored" if frame.compressed else "raw"
    lines = [f"LSN {frame.lsn}  {segment_name(frame.segment_base_lsn)} byte {frame.offset}  "
             f"{len(frame.payload)} bytes ({stored})", f"  event: {describe_event(frame.payload)}"]
    shown = frame.payload[:bytes_max] if bytes_max else frame.payload
    for start in range(0, len(shown), _HEX_ROW_BYTES):
        chunk = shown[start : start + _HEX_ROW_BYTES]
        hex_text = f"{chunk[:8].hex(' ')}  {chunk[8:].hex(' ')}".rstrip()
        ascii_text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"  {start:08x}  {hex_text:<48}  |{ascii_text}|")
    if len(shown) < len(frame.payload):
        lines.append(f"  … {len(frame.payload) - len(shown)} more bytes (--bytes 0 shows all)")
    return [*lines, ""]
