"""``sluice sql``: an interactive SQL shell, and a script runner, against a running server.

Each statement is one ``POST /v1/api/sql`` (PROTOCOL §1.3) on one keep-alive connection,
sent with the shell's current namespace as ``namespace_id``. ``--namespace`` sets it; a
``USE ns`` / ``USE NAMESPACE ns`` / ``SET NAMESPACE ns`` that the server accepts changes it
(the server itself forgets USE between requests). Statements are split on the client
(``tools.statements``) so that each gets its own result, error and timing, and so that the
namespace follows USE.

Interactive (stdin is a terminal and neither ``-c`` nor ``-f`` is given): line editing and
a persistent history (stdlib ``readline``), statements may span lines until a ``;``, the
prompt shows ``user@namespace=>`` (``->`` while a statement continues). An error is printed
and the shell goes on; Ctrl-C clears the pending input or abandons the reply being waited
for (the statement may still complete on the server); Ctrl-D or ``\\q`` leaves.

Non-interactive (``-c SQL``, ``-f FILE``, ``-f -`` or stdin not a terminal): statements run in
order and the first error stops the run with exit code 1. Results go to stdout in the chosen
``--format``, errors to stderr as ``ERROR CODE: message``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import render
from .cli import CliParser
from .client import (
    EXIT_AUTH,
    EXIT_OK,
    EXIT_STATEMENT,
    EXIT_USAGE,
    ApiClient,
    ApiError,
    AuthError,
    Unreachable,
)
from .connect import add_connection_arguments, describe, exit_code_of, guarded, open_client
from .statements import Item, Meta, StatementSplitter, split_script

DEFAULT_NAMESPACE = "default"
HISTORY_ENTRIES_MAX = 2000  # lines kept in the history file (older ones are dropped at start)
_USE = re.compile(r"(?is)\s*(?:USE(?:\s+NAMESPACE)?|SET\s+NAMESPACE)\s+"
                  r"(\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)\s*")
_SWITCHED = re.compile(r"Namespace switched to '([^']+)'")

DESCRIPTION = """\
Runs SQL against a Sluice (or KalamDB) server: interactively with line editing, history and
multi-line statements ending in `;`, or from -c / -f / stdin for scripts.

Backslash commands (interactive and in scripts):
  \\dt [NAMESPACE]   list tables (SHOW TABLES [IN NAMESPACE])
  \\d TABLE          describe a table (DESCRIBE TABLE)
  \\dn               list namespaces (SHOW NAMESPACES)
  \\du               list users (from system.users; admins only)
  \\timing [on|off]  show the server's `took` after each statement
  \\q                quit
  \\help, \\?         this list

The token from a login is kept per user and URL in $XDG_CONFIG_HOME/sluice/tokens.json
(mode 0600) and refreshed when it expires; history is kept in
$XDG_STATE_HOME/sluice/history (default ~/.local/state/sluice/history)."""

QUIT = "quit"


@dataclass
class Shell:
    """Runs items against ``client``; holds the namespace and the output options."""

    client: ApiClient
    out: TextIO
    err: TextIO
    format: str = "table"
    namespace: str = DEFAULT_NAMESPACE
    timing: bool = False

    def run(self, item: Item) -> bool | str:
        """Runs one statement or backslash command: True if it succeeded, False if it
        failed (the error is written to ``err``), ``QUIT`` for ``\\q``. Auth and connection
        failures propagate."""
        if isinstance(item, Meta):
            return self.meta(item)
        return self.statement(item.text)

    def statement(self, sql: str) -> bool:
        try:
            envelope = self.client.sql(sql, self.namespace)
        except ApiError as exc:
            self.err.write(describe(exc) + "\n")
            return False
        self._follow_use(sql, envelope)
        self.out.write(self._render(envelope))
        return True

    def _follow_use(self, sql: str, envelope: dict) -> None:
        match = _USE.fullmatch(sql)
        if match is None:
            return
        results = envelope.get("results") or [{}]
        switched = _SWITCHED.search(str(results[-1].get("message", "")))
        self.namespace = switched.group(1) if switched else match.group(1).strip('"')

    def _render(self, envelope: dict) -> str:
        results = envelope.get("results") or []
        if self.format == "json":
            return render.render_envelope(envelope)
        if self.format == "csv":
            return "\n".join(filter(None, (render.render_csv(r) for r in results)))
        if self.format == "ndjson":
            return "".join(render.render_ndjson(r) for r in results)
        text = "".join(render.render_table(r) for r in results)  # tables end with a blank line
        return text + (render.took_text(envelope.get("took")) if self.timing else "")

    def meta(self, meta: Meta) -> bool | str:
        entry = META_COMMANDS.get(meta.command)
        if entry is None:
            self.err.write(f"unknown command {meta.command}; \\help lists them\n")
            return False
        return entry.run(self, meta.argument)

    def prompt(self, continuing: bool) -> str:
        head = f"{self.client.user}@{self.namespace}"
        return f"{' ' * len(head)}-> " if continuing else f"{head}=> "


@dataclass(frozen=True, slots=True)
class MetaCommand:
    run: Callable[[Shell, str], bool | str]
    help: str


def _list_tables(shell: Shell, arg: str) -> bool:
    return shell.statement(f"SHOW TABLES IN {arg}" if arg else "SHOW TABLES")


def _describe(shell: Shell, arg: str) -> bool:
    if not arg:
        return _list_tables(shell, "")
    return shell.statement(f"DESCRIBE TABLE {arg}")


def _timing(shell: Shell, arg: str) -> bool:
    if arg.lower() not in ("", "on", "off"):
        shell.err.write("\\timing takes on, off or nothing (toggle)\n")
        return False
    shell.timing = (not shell.timing) if not arg else arg.lower() == "on"
    shell.err.write(f"Timing is {'on' if shell.timing else 'off'}.\n")
    return True


def _help(shell: Shell, arg: str) -> bool:
    width = max(map(len, META_COMMANDS))
    shell.out.write("".join(f"  {name:<{width}}  {entry.help}\n"
                            for name, entry in META_COMMANDS.items()))
    shell.out.write("  SQL statements end with ';' and may span lines.\n")
    return True


META_COMMANDS: dict[str, MetaCommand] = {
    "\\dt": MetaCommand(_list_tables, "[NAMESPACE]  list tables"),
    "\\d": MetaCommand(_describe, "TABLE  describe a table"),
    "\\dn": MetaCommand(lambda s, _: s.statement("SHOW NAMESPACES"), "list namespaces"),
    "\\du": MetaCommand(lambda s, _: s.statement(
        "SELECT user_id, role, email, auth_type, created_at FROM system.users "
        "WHERE deleted_at IS NULL ORDER BY user_id"), "list users (admins only)"),
    "\\timing": MetaCommand(_timing, "[on|off]  show the server's time per statement"),
    "\\q": MetaCommand(lambda s, _: QUIT, "quit"),
    "\\help": MetaCommand(_help, "this list"),
    "\\?": MetaCommand(_help, "this list"),
}


# ---- non-interactive ------------------------------------------------------------------------

def run_script(shell: Shell, text: str) -> int:
    """Runs every item of ``text``; stops at the first failure (exit 1)."""
    for item in split_script(text):
        outcome = shell.run(item)
        if outcome == QUIT:
            break
        if outcome is False:
            return EXIT_STATEMENT
    return EXIT_OK


# ---- interactive ----------------------------------------------------------------------------

def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sluice" / "history"


def _encode(entry: str) -> str:
    return entry.replace("\\", "\\\\").replace("\n", "\\n")


def _decode(line: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), line)


class History:
    """The readline history, loaded from and appended to ``path`` one entry per line
    (newlines inside a multi-line statement are escaped), trimmed to HISTORY_ENTRIES_MAX at
    start. Without readline (some platforms) it does nothing. File errors are ignored: a
    shell without history still works."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            import readline
        except ImportError:
            self._readline = None
            return
        self._readline = readline
        readline.set_auto_history(False)
        with contextlib.suppress(OSError):
            lines = path.read_text(encoding="utf-8").splitlines()[-HISTORY_ENTRIES_MAX:]
            for line in lines:
                readline.add_history(_decode(line))
            path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    def add(self, entry: str) -> None:
        if self._readline is None or not entry.strip():
            return
        self._readline.add_history(entry)
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(_encode(entry) + "\n")


def interactive(shell: Shell, history: History) -> int:
    """The read-eval-print loop; returns an exit code when the user leaves."""
    splitter = StatementSplitter()
    lines: list[str] = []
    while True:
        try:
            entered = input(shell.prompt(splitter.pending))
        except EOFError:
            shell.out.write("\n")
            return EXIT_OK
        except KeyboardInterrupt:
            shell.out.write("^C\n")
            splitter.finish()
            lines.clear()
            continue
        for line in entered.split("\n"):
            lines.append(line)
            items = splitter.feed(line)
            if items and not splitter.pending:
                history.add("\n".join(lines).strip())
                lines.clear()
            for item in items:
                if _interactive_step(shell, item) == QUIT:
                    return EXIT_OK
        if not splitter.pending:
            lines.clear()


def _interactive_step(shell: Shell, item: Item) -> bool | str:
    try:
        return shell.run(item)
    except (AuthError, Unreachable) as exc:
        shell.err.write(describe(exc) + "\n")
        return False
    except KeyboardInterrupt:
        shell.err.write("cancelled: the reply was abandoned (the statement may still "
                        "complete on the server)\n")
        return False


# ---- the command ----------------------------------------------------------------------------

def _parser(prog: str) -> CliParser:
    from .client import EXIT_CODES_HELP

    parser = CliParser(prog=prog, description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-c", "--command", metavar="SQL",
                        help="run these statements (and backslash commands), then exit")
    source.add_argument("-f", "--file", metavar="FILE",
                        help="run the statements in FILE ('-' for stdin), then exit")
    parser.add_argument("--namespace", "-n", default=DEFAULT_NAMESPACE,
                        help="namespace for unqualified names, sent as namespace_id "
                             "(default: %(default)s); USE changes it")
    parser.add_argument("--format", choices=render.FORMATS, default="table",
                        help="output format (default: %(default)s)")
    parser.add_argument("--timing", action="store_true",
                        help="print the server's `took` after each statement (table format; "
                             "on by default in the interactive shell)")
    add_connection_arguments(parser)
    return parser


def sql_main(argv: list[str], prog: str) -> int:
    """``sluice sql``; returns the exit code (see ``tools.client.EXIT_CODES_HELP``)."""
    args = _parser(prog).parse_args(argv)
    is_interactive = args.command is None and args.file is None and sys.stdin.isatty()
    script: str | None = None
    if args.command is not None:
        script = args.command
    elif args.file is not None:
        try:
            script = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(
                encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            sys.stderr.write(f"{prog}: cannot read {args.file}: {exc}\n")
            return EXIT_USAGE
    elif not is_interactive:
        script = sys.stdin.read()
    try:
        client = open_client(args, interactive=is_interactive)
    except ValueError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return EXIT_USAGE
    shell = Shell(client, sys.stdout, sys.stderr, args.format, args.namespace,
                  timing=args.timing or is_interactive)
    try:
        if script is not None:
            return guarded(prog, sys.stderr, lambda: run_script(shell, script))
        return _start_interactive(prog, shell)
    finally:
        client.conn.close()


def _start_interactive(prog: str, shell: Shell) -> int:
    try:
        shell.client.authenticate()
    except (AuthError, Unreachable, ApiError) as exc:
        sys.stderr.write(f"{prog}: {describe(exc)}\n")
        return exit_code_of(exc)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_AUTH
    shell.out.write(f"sluice sql: {shell.client.conn.url} as {shell.client.user}. "
                    "Type \\help for help, \\q to quit.\n")
    history = History(history_path())
    return interactive(shell, history)

