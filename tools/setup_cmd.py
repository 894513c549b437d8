"""``sluice setup``: the first-run bootstrap of a server (PROTOCOL §2.2).

Asks ``GET /v1/api/auth/status`` whether the server still needs setup, then sends
``POST /v1/api/auth/setup`` with the root password and a first DBA account (user, password,
optional e-mail). Both endpoints answer only local clients unless the server allows remote
setup. Setup does not log anyone in; ``sluice sql --user <dba>`` does that next.

Passwords come from ``$SLUICE_ROOT_PASSWORD`` / ``$SLUICE_DBA_PASSWORD``, else from prompts
on the terminal, each typed twice. Without a terminal and without the variables the command
stops with a usage error rather than hang. The server checks the password policy (8 to 72 bytes,
not a common password) and answers 400 ``weak_password``; the prompts check only that the two
entries match and are not empty, so the server stays the one judge of the policy.
"""

from __future__ import annotations

import getpass
import json
import os
import sys

from .cli import CliParser
from .client import (
    DEFAULT_URL,
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_STATEMENT,
    EXIT_USAGE,
    Connection,
    Unreachable,
    error_of,
)
from .connect import guarded

DESCRIPTION = """\
Bootstraps a new server: sets the root password and creates the first DBA user, through
POST /v1/api/auth/setup (allowed from localhost only, unless the server sets
auth.allow_remote_setup). Run it once, right after the first `sluice serve`.

Passwords: $SLUICE_ROOT_PASSWORD and $SLUICE_DBA_PASSWORD, or typed twice at the prompts.
Exits 0 also when the server was already set up (saying so), 1 when the server refuses
(a weak password, an existing user)."""


class SetupAborted(Exception):
    pass


def _password(label: str, variable: str) -> str:
    from_env = os.environ.get(variable)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise SetupAborted(f"no terminal to ask for the {label}; set ${variable}")
    while True:
        first = getpass.getpass(f"{label}: ")
        if not first:
            sys.stderr.write("empty; try again\n")
            continue
        if getpass.getpass(f"{label} (again): ") == first:
            return first
        sys.stderr.write("the two entries differ; try again\n")


def _ask(label: str, default: str | None) -> str | None:
    if not sys.stdin.isatty():
        return default
    shown = f" [{default}]" if default else ""
    answer = input(f"{label}{shown}: ").strip()
    return answer or default


def setup_main(argv: list[str], prog: str) -> int:
    """``sluice setup [--url URL] [--user DBA] [--email E]``; see the module doc."""
    parser = CliParser(prog=prog, description=DESCRIPTION, epilog=EXIT_CODES_HELP)
    parser.add_argument("--url", default=os.environ.get("SLUICE_URL", DEFAULT_URL),
                        help="server URL (default: $SLUICE_URL or %(default)s)")
    parser.add_argument("--user", help="the DBA user to create (asked when omitted on a "
                                       "terminal; default dba)")
    parser.add_argument("--email", help="the DBA user's e-mail (optional)")
    args = parser.parse_args(argv)
    try:
        conn = Connection(args.url)
    except ValueError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return EXIT_USAGE
    try:
        return guarded(prog, sys.stderr, lambda: _setup(prog, conn, args.user, args.email))
    except SetupAborted as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return EXIT_USAGE
    finally:
        conn.close()


def _setup(prog: str, conn: Connection, user: str | None, email: str | None) -> int:
    status = conn.request("GET", "/v1/api/auth/status")
    if status.status != 200 or not isinstance(status.body, dict):
        raise error_of(status.status, status.body)
    if not status.body.get("needs_setup"):
        sys.stdout.write(f"{conn.url} is already set up: {status.body.get('message', '')}\n")
        return EXIT_OK
    user = user or _ask("DBA user name", "dba")
    assert user is not None
    if email is None:
        email = _ask("DBA e-mail (optional)", None)
    payload = {"user": user, "password": _password(f"password for {user}",
                                                    "SLUICE_DBA_PASSWORD"),
               "root_password": _password("root password", "SLUICE_ROOT_PASSWORD")}
    if email:
        payload["email"] = email
    reply = conn.request("POST", "/v1/api/auth/setup", json.dumps(payload).encode(),
                         {"Content-Type": "application/json"})
    if reply.status == 200 and isinstance(reply.body, dict):
        sys.stdout.write(f"{reply.body.get('message', 'setup complete')}\n"
                         f"next: sluice sql --url {conn.url} --user {user}\n")
        return EXIT_OK
    if not isinstance(reply.body, dict) and reply.status < 300:
        raise Unreachable("the server's setup reply is not a JSON object")
    error = error_of(reply.status, reply.body)
    sys.stderr.write(f"{prog}: setup refused: {error.code}: {error.message}\n")
    return EXIT_STATEMENT
