"""The ``sluice`` command line: one table of subcommands, each imported only when it runs.

``COMMANDS`` maps a command path (``("wal", "inspect")``) to a ``"module:function"`` string
and a one-line help. ``main`` matches the longest path at the front of argv, imports that
module with ``importlib`` and calls ``function(argv_rest, prog) -> int``; the target parses
its own options. Keeping targets as strings means ``sluice wal ...`` never imports the engine
or the HTTP stack, ``sluice serve`` never imports the WAL tools, and ``tools/`` itself
depends only on ``wal`` (and ``engine.events``); the client commands (``sql``, ``setup``,
``ingest``, ``consume``, ``subscribe``) speak HTTP (and WebSocket) to a server and import
none of ``wal``, ``engine``, ``api``. New commands are new rows.

Exit codes are shared by every command (``EXIT_*``). argparse's usual code 2 for usage errors
is moved to 64 (sysexits' EX_USAGE) so that 2 always means "the log is corrupt". The client
commands add theirs in ``tools.client`` (1 a refused statement, 5 server unreachable, 6
authentication failed), chosen not to collide with 2-4.

Everything writes through ``sys.stdout.write`` / ``sys.stderr.write``: reports to stdout,
problems with the input to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from wal import RecoveryReport

EXIT_OK = 0
EXIT_TORN_TAIL = 1  # verify: a torn tail that the next open will cut
EXIT_CORRUPT = 2  # damage to durable data: the log refuses to open
EXIT_NOT_A_WAL = 3  # DIR is missing, not a directory, holds no segments, or is unreadable
EXIT_IN_USE = 4  # init: another process has the log open (its LOCK is held)
EXIT_USAGE = 64  # bad arguments (sysexits EX_USAGE)
EXIT_BROKEN_PIPE = 141  # stdout closed early (`sluice wal dump DIR | head`): 128 + SIGPIPE

EXIT_CODES_HELP = """\
exit codes:
  0   success (verify: the log is clean)
  1   verify: a torn tail, which the next open cuts (kept in <segment>.broken-<offset>)
  2   corruption of durable data: the log refuses to open (segment, byte offset, reason)
  3   not a WAL directory: DIR is missing, not a directory, holds no <base LSN>.wal
      segment files, or cannot be read
  4   init: another process has the log open (its LOCK is held)
  64  usage error"""


class CliParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors exit with ``EXIT_USAGE`` (not 2)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True, slots=True)
class Command:
    target: str  # "module:function"; function(argv: list[str], prog: str) -> int
    help: str


# The one command table. Targets are strings, imported only when their command runs.
COMMANDS: dict[tuple[str, ...], Command] = {
    ("wal", "inspect"): Command("tools.wal_inspect:inspect_main",
                                "list segments and frames (read-only)"),
    ("wal", "verify"): Command("tools.wal_inspect:verify_main",
                               "check a log: exit 0 clean, 1 torn tail, 2 corrupt (read-only)"),
    ("wal", "dump"): Command("tools.wal_inspect:dump_main",
                             "print record payloads as hex or JSON lines (read-only)"),
    ("wal", "init"): Command("tools.cli:wal_init_main",
                             "open (creating if missing) and recover a log, then close it"),
    ("replay",): Command("engine.replay_cli:replay_main",
                         "rebuild projections from the log alone, or verify them against it"),
    ("serve",): Command("api.serve:serve_main",
                        "run the HTTP server (KalamDB API) on the configured host and port"),
    ("sql",): Command("tools.sql_shell:sql_main",
                      "interactive SQL shell, or run -c SQL / -f FILE against a server"),
    ("setup",): Command("tools.setup_cmd:setup_main",
                        "first-run bootstrap of a server: root and DBA passwords"),
    ("ingest",): Command("tools.ingest:ingest_main",
                         "stream an NDJSON or Arrow IPC file into a table"),
    ("consume",): Command("tools.consume:consume_main",
                          "read a topic as a consumer group: one JSON line per message"),
    ("subscribe",): Command("tools.subscribe:subscribe_main",
                            "live query over /v1/ws: initial rows, then each change"),
}
GROUPS: dict[tuple[str, ...], str] = {
    (): "Sluice: a stream-first, event-sourced storage engine.",
    ("wal",): "write-ahead log tools (only `init` writes; nothing here repairs a log)",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one ``sluice`` command and returns its exit code (the console script exits with it).

    Args:
        argv: the arguments after the program name; ``None`` reads ``sys.argv[1:]``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        path = _command_path(args)
        if path is None:
            return _group(args)
        command = _load(COMMANDS[path].target)
        return command(args[len(path):], " ".join(("sluice", *path)))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return _exit_code(exc.code)
    except BrokenPipeError:
        _detach_stdout()
        return EXIT_BROKEN_PIPE


def _command_path(args: list[str]) -> tuple[str, ...] | None:
    """The longest command path at the front of ``args``, or None if none matches."""
    matches = [path for path in COMMANDS if tuple(args[: len(path)]) == path]
    return max(matches, key=len, default=None)


def _group(args: list[str]) -> int:
    """Handles argv that names no command: help, --version, or a usage error."""
    node = max((path for path in GROUPS if tuple(args[: len(path)]) == path), key=len)
    parser = _group_parser(node)
    rest = args[len(node):]
    if not rest:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    parser.parse_args(rest)  # exits: every valid command word was matched before
    raise AssertionError(f"argv {args} parsed but matches no command")


def _group_parser(node: tuple[str, ...]) -> CliParser:
    parser = CliParser(prog=" ".join(("sluice", *node)), description=GROUPS[node],
                       epilog=EXIT_CODES_HELP)
    if not node:
        parser.add_argument("--version", action="version", version=f"sluice {_version()}")
    children: dict[str, str] = {}
    for path, command in COMMANDS.items():
        if path[: len(node)] == node and len(path) > len(node):
            child = path[: len(node) + 1]
            children.setdefault(child[-1], command.help if child == path else GROUPS[child])
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                required=True)
    for name, help_text in children.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _load(target: str) -> Callable[[list[str], str], int]:
    module_name, _, function_name = target.partition(":")
    assert module_name, target
    assert function_name, target
    return getattr(importlib.import_module(module_name), function_name)


def _version() -> str:
    try:
        return metadata.version("sluice")
    except metadata.PackageNotFoundError:  # running from a tree that was never installed
        return "unknown"


def _exit_code(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _detach_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor behind stdout (tests)
        pass


# ---- sluice wal init: the only command that writes ----------------------------------------
# It lives here rather than in tools.wal_inspect so that module stays strictly read-only.
# Every write it causes is made by ``open_wal`` (recovery), none by this code.

INIT_DESCRIPTION = """\
Opens the write-ahead log in DIR with the default configuration, creating DIR and the first
segment if they are missing, and runs recovery: leftover .tmp files are deleted, and a torn
tail of the last segment is copied to <segment>.broken-<offset> and zero-filled. Then closes
the log and prints what recovery did. Corruption of durable data is never repaired: the log
is not opened, nothing is changed, and the command exits 2."""


def wal_init_main(argv: list[str], prog: str) -> int:
    """``sluice wal init DIR``: open (creating if missing) and recover a log, then close it.

    Returns ``EXIT_OK``, ``EXIT_CORRUPT`` (nothing changed) or ``EXIT_NOT_A_WAL`` (DIR is a
    file, cannot be created, or is a non-empty directory holding other files and no log).
    """
    parser = CliParser(prog=prog, description=INIT_DESCRIPTION, epilog=EXIT_CODES_HELP)
    parser.add_argument("directory", type=Path, metavar="DIR", help="the log directory")
    directory: Path = parser.parse_args(argv).directory
    refusal = _init_refusal(directory)
    if refusal is not None:
        sys.stderr.write(f"{prog}: not a WAL directory: {refusal}\n")
        return EXIT_NOT_A_WAL
    import trio  # imported here, like wal: `sluice --help` and other commands stay fast

    from wal import WalCorruptionError, WalLockedError

    try:
        report, segments = trio.run(_open_and_close, directory)
    except WalCorruptionError as exc:
        sys.stderr.write(f"{prog}: corrupt: {exc.segment_path} at byte {exc.offset}: "
                         f"{exc.reason}\n{prog}: the log was not opened and nothing was "
                         f"changed; look with `sluice wal inspect {directory}`\n")
        return EXIT_CORRUPT
    except WalLockedError as exc:
        sys.stderr.write(f"{prog}: {exc}; stop that process first\n")
        return EXIT_IN_USE
    except OSError as exc:
        sys.stderr.write(f"{prog}: cannot open a log in {directory}: {exc}\n")
        return EXIT_NOT_A_WAL
    sys.stdout.write("".join(f"{line}\n" for line in _init_lines(directory, report, segments)))
    return EXIT_OK


def _init_refusal(directory: Path) -> str | None:
    """Why ``init`` must not create a log in ``directory``, or None if it may."""
    from wal.format import BROKEN_SUFFIX, TEMP_SUFFIX, parse_segment_name

    if not directory.is_dir():
        return None  # created by open_wal (a file in the way fails there, as an OSError)
    names = [entry.name for entry in os.scandir(directory)]
    if any(parse_segment_name(name) is not None for name in names):
        return None
    others = sorted(name for name in names
                    if not name.endswith(TEMP_SUFFIX) and BROKEN_SUFFIX not in name)
    if not others:
        return None
    return (f"{directory} holds other files ({', '.join(others[:3])}"
            f"{', …' if len(others) > 3 else ''}) and no segments; refusing to create a log")


async def _open_and_close(directory: Path) -> tuple[RecoveryReport, list[Path]]:
    from wal import open_wal
    from wal.segment import list_segments

    async with open_wal(directory) as wal:
        report = wal.recovery_report
    return report, [segment.path for segment in list_segments(directory)]


def _init_lines(directory: Path, report: RecoveryReport, segments: list[Path]) -> list[str]:
    assert segments, "open_wal always leaves at least one segment"
    lines = [f"log:       {directory.resolve()}"]
    if not report.scans:
        lines.append(f"created:   {segments[0].name} ({segments[0].stat().st_size} bytes)")
    span = segments[0].name if len(segments) == 1 else f"{segments[0].name} .. {segments[-1].name}"
    lines.append(f"segments:  {len(segments)} ({span})")
    lines.append(f"last LSN:  {report.last_lsn}" + ("" if report.last_lsn else " (empty log)"))
    tail = report.torn_tail
    if tail is None:
        lines.append("tail:      clean")
    else:
        lines.append(f"tail:      cut {tail.bytes_cut} bytes at byte {tail.offset} of "
                     f"{tail.segment_path.name} ({tail.reason})")
        lines.append(f"           copy kept in {tail.copy_path}")
    for temp in report.temp_files:
        lines.append(f"deleted:   {temp.name} (an unfinished segment roll or spare)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
