"""``sluice serve [--config server.toml] [--print-config]``: run the HTTP server.

Start-up order: configuration (file, then ``KALAMDB_*`` overrides), the JWT secret check, the
engine (WAL recovery and replay), then hypercorn's trio server in the same nursery, bound to
``server.host:server.port``. When the socket listens, one readiness line goes to stderr::

    sluice: serving on http://127.0.0.1:2900 (data ./data, LSN 3)

SIGINT or SIGTERM starts a graceful shutdown: stop accepting, let in-flight requests finish
(up to hypercorn's graceful timeout), then close the engine (checkpoint, WAL closed, LOCK
released) and exit 0. A second signal during shutdown cancels the server at once.

Exit codes: 0 stopped cleanly; 2 unusable configuration or a corrupt log (the message says
which); 4 the data directory is in use by another process; 64 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from wal import WalCorruptionError, WalLockedError

from .app import SluiceApp, trusted_proxy_networks
from .config import ConfigError, ServerConfig, load_config, resolve_jwt_secret

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_IN_USE = 4
EXIT_USAGE = 64
SECRET_KEYS = frozenset({"jwt_secret", "root_password"})
HYPERCORN_VERSION = "0.18.0"  # refuse_h2c() patches this version's internals
GRACEFUL_TIMEOUT_SECONDS = 5.0
KEEP_ALIVE_TIMEOUT_SECONDS = 75.0  # PROTOCOL §1.0 (performance.keepalive_timeout)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def serve_main(argv: list[str], prog: str) -> int:
    """Entry point of ``sluice serve`` (see the module docstring for exit codes)."""
    parser = _Parser(prog=prog, description="Run the Sluice HTTP server (KalamDB API).")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="server.toml (default: ./server.toml if present, else built-in "
                             "defaults); KALAMDB_* environment variables override it")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration (secrets masked) and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.print_config:
            sys.stdout.write("".join(f"{line}\n" for line in config_lines(config)))
            return EXIT_OK
        config.auth.jwt_secret = resolve_jwt_secret(config)
        trusted_proxy_networks(config)  # validate before opening anything
    except ConfigError as exc:
        sys.stderr.write(f"{prog}: configuration error: {exc}\n")
        return EXIT_CONFIG
    refuse_h2c()
    quiet_sql_parser_log()
    try:
        trio.run(_serve, config, prog)
    except WalCorruptionError as exc:
        sys.stderr.write(f"{prog}: the log is corrupt: {exc.segment_path} at byte "
                         f"{exc.offset}: {exc.reason}; nothing was changed\n")
        return EXIT_CONFIG
    except WalLockedError as exc:
        sys.stderr.write(f"{prog}: {exc}; is another server running on this data dir?\n")
        return EXIT_IN_USE
    return EXIT_OK


async def _serve(config: ServerConfig, prog: str) -> None:
    from engine import open_engine  # heavy (pyarrow, datafusion): only when serving

    async with open_engine(config.data_dir, config.engine_config()) as engine:
        app = SluiceApp(engine, config)
        shutdown, stopped = app.shutdown, trio.Event()  # WebSockets watch app.shutdown
        async with trio.open_nursery() as nursery:
            server_scope = trio.CancelScope()
            await nursery.start(_watch_signals, shutdown, server_scope)
            binds = await nursery.start(_run_server, app, config, shutdown, stopped,
                                        server_scope)
            url = binds[0] if binds else f"http://{app.api_addr}"
            app.api_addr = url.removeprefix("http://")
            sys.stderr.write(f"{prog.split()[0]}: serving on {url} (data {config.data_dir}, "
                             f"LSN {int(engine.wal.committed_lsn)})\n")
            sys.stderr.flush()
            await stopped.wait()  # hypercorn has drained after a signal (or stopped itself)
            nursery.cancel_scope.cancel()  # the signal watcher
        sys.stderr.write(f"{prog.split()[0]}: stopped; closing the engine\n")


async def _run_server(app: SluiceApp, config: ServerConfig, shutdown: trio.Event,
                      stopped: trio.Event, server_scope: trio.CancelScope,
                      task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                      ) -> None:
    try:
        with server_scope:
            await serve(app, hypercorn_config(config), shutdown_trigger=shutdown.wait,
                        task_status=task_status)
    finally:
        stopped.set()


async def _watch_signals(shutdown: trio.Event, server_scope: trio.CancelScope,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                         ) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            if shutdown.is_set():
                server_scope.cancel()  # second signal: stop now
            shutdown.set()


def quiet_sql_parser_log() -> None:
    """sqlglot warns "'<the whole statement>' contains unsupported syntax" for SQL it parses
    as a bare command, and with no logging configured that text went to stderr verbatim —
    passwords of a mistyped ``CREATE USER … WITH PASSWORD '…'`` included (issue 9: secrets
    never logged). The caller already gets the parse error; the log gets nothing."""
    logging.getLogger("sqlglot").setLevel(logging.ERROR)


def hypercorn_config(config: ServerConfig) -> HypercornConfig:
    hc = HypercornConfig()
    host = config.server.host
    hc.bind = [f"[{host}]:{config.server.port}" if ":" in host else
               f"{host}:{config.server.port}"]
    hc.include_server_header = False
    hc.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_SECONDS
    hc.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    hc.accesslog = None
    return hc


def refuse_h2c() -> None:
    """Makes hypercorn's HTTP/1.1 protocol never switch to HTTP/2 (h2c).

    hypercorn switches a cleartext connection to HTTP/2 whenever a request carries
    ``Upgrade: h2c`` or the connection opens with the ``PRI * HTTP/2.0`` preface, and no
    setting turns that off. Its trio HTTP/2 send path can then raise
    ``trio.BusyResourceError`` out of ``serve()`` when clients hang up mid-stream, which kills
    the whole process (bench/HTTP-HOTPATH.md). HTTP/2 is out of scope (decisions table), so
    ``H11Protocol._check_protocol`` — the only place that raises the switch exceptions — is
    replaced with a no-op: ``Upgrade: h2c`` is ignored (h11 treats the refused upgrade as a
    normal request and the reply is HTTP/1.1) and the preface stays HTTP/1.x: ``PRI *``
    matches no route (404) and the ``SM`` line after it is a malformed request (400, then
    the connection closes). The patch touches a private method,
    so it is pinned to the exact hypercorn version it was written and tested against.
    """
    from hypercorn.protocol import h11 as hypercorn_h11

    installed = metadata.version("hypercorn")
    if installed != HYPERCORN_VERSION:
        raise RuntimeError(
            f"refuse_h2c() patches hypercorn {HYPERCORN_VERSION} internals but {installed} is "
            f"installed; re-check H11Protocol._check_protocol and update the pin")

    async def _never_switch_protocol(self: Any, event: Any) -> None:
        return None

    hypercorn_h11.H11Protocol._check_protocol = _never_switch_protocol  # type: ignore[method-assign]


def config_lines(config: ServerConfig) -> list[str]:
    """The effective configuration as TOML-like lines; secrets shown as ``"***"``."""
    lines: list[str] = []
    _section_lines(config, "", lines)
    return lines


def _section_lines(section: Any, name: str, lines: list[str]) -> None:
    nested = []
    if name:
        lines.append(f"[{name}]")
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if dataclasses.is_dataclass(value):
            nested.append((field.name, value))
        elif value is None:
            lines.append(f"# {field.name} is not set")
        elif field.name in SECRET_KEYS:
            lines.append(f'{field.name} = "***"')
        else:
            lines.append(f"{field.name} = {json.dumps(value)}")
    for child_name, child in nested:
        if name:
            lines.append("")
        _section_lines(child, f"{name}.{child_name}" if name else child_name, lines)
