"""Connection options shared by the client commands (``sql``, ``ingest``, ``consume``).

``add_connection_arguments(parser)`` adds ``--url``, ``--user``, ``--token`` and
``--no-store``; ``open_client(args, interactive)`` builds the ``ApiClient``;
``guarded(prog, err, call)`` runs a command body and turns the client's errors into the exit
codes of ``tools.client`` (the message goes to ``err``).

Where the settings come from, first match wins:

- URL: ``--url``, ``$SLUICE_URL``, ``http://127.0.0.1:2900``;
- user: ``--user``, ``$SLUICE_USER``, ``root``;
- password (only when a login is needed): ``$SLUICE_PASSWORD``, else a prompt on the terminal
  when stdin is one, else none (an authentication failure, exit 6);
- token: ``--token`` / ``$SLUICE_TOKEN`` (used as is, never stored), else the token store.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import TextIO

from .client import (
    DEFAULT_URL,
    EXIT_AUTH,
    EXIT_INTERRUPTED,
    EXIT_STATEMENT,
    EXIT_UNREACHABLE,
    ApiClient,
    ApiError,
    AuthError,
    Connection,
    TokenStore,
    Unreachable,
)

DEFAULT_USER = "root"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--url", default=os.environ.get("SLUICE_URL", DEFAULT_URL),
                       help="server URL (default: $SLUICE_URL or %(default)s)")
    group.add_argument("--user", "-u", default=os.environ.get("SLUICE_USER", DEFAULT_USER),
                       help="user to log in as (default: $SLUICE_USER or root); the password "
                            "comes from $SLUICE_PASSWORD or a prompt")
    group.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"),
                       help="use this access token (default: $SLUICE_TOKEN) instead of "
                            "logging in; it is never stored")
    group.add_argument("--no-store", action="store_true",
                       help="neither read nor write the token store")


def password_source(user: str, interactive: bool) -> Callable[[], str | None]:
    def source() -> str | None:
        from_env = os.environ.get("SLUICE_PASSWORD")
        if from_env is not None:
            return from_env
        if interactive and sys.stdin.isatty():
            return getpass.getpass(f"Password for {user}: ")
        return None
    return source


def open_client(args: argparse.Namespace, interactive: bool) -> ApiClient:
    """The client for ``args`` (see the module doc); a bad ``--url`` is a ``ValueError``."""
    conn = Connection(args.url)
    store = None if args.no_store or args.token else TokenStore()
    return ApiClient(conn, args.user, password=password_source(args.user, interactive),
                     store=store, token=args.token)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"ERROR {exc.code}: {exc.message}"
    if isinstance(exc, AuthError):
        return f"authentication failed: {exc}"
    if isinstance(exc, Unreachable):
        return f"cannot reach the server: {exc}"
    return str(exc)


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, Unreachable):
        return EXIT_UNREACHABLE
    return EXIT_STATEMENT


def guarded(prog: str, err: TextIO, call: Callable[[], int]) -> int:
    """Runs ``call``; a client error or Ctrl-C is reported on ``err`` as its exit code."""
    try:
        return call()
    except (ApiError, AuthError, Unreachable) as exc:
        err.write(f"{prog}: {describe(exc)}\n")
        return exit_code_of(exc)
    except KeyboardInterrupt:
        err.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
