"""Runs the ``sluice`` client commands as a user would: a subprocess with its own config and
state directories (so the token store and history are the test's), against a real server
from tests/api/harness.py. ``PtySession`` drives the interactive shell through a
pseudo-terminal (stdlib ``pty``), reading what the terminal would show."""

from __future__ import annotations

import fcntl
import os
import re
import select
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from tests.api.harness import ROOT

ROOT_PASSWORD = "root-pass-for-tests"
FAST_BCRYPT = "[auth]\nbcrypt_cost = 4\n"
EXPECT_TIMEOUT_S = 15.0


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """The parent's environment without SLUICE_*/XDG_* settings, HOME and the XDG
    directories under ``home``, the repo on PYTHONPATH, then ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLUICE_", "XDG_", "KALAMDB_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_STATE_HOME"] = str(home / "state")
    env.update(extra)
    return env


@dataclass
class Run:
    code: int
    out: str
    err: str


async def sluice(home: Path, *args: str, stdin: bytes = b"", **env: str) -> Run:
    process = await trio.run_process(
        [sys.executable, "-m", "tools.cli", *args], stdin=stdin, capture_stdout=True,
        capture_stderr=True, check=False, env=client_env(home, **env), cwd=ROOT)
    return Run(process.returncode, process.stdout.decode(), process.stderr.decode())


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


def _take_terminal() -> None:
    # In the child, after setsid: make the pty its controlling terminal, so that Ctrl-C
    # typed into it is a SIGINT, as in a real terminal.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtySession:
    """A ``sluice`` command (``PtySession(home, "sql", ...)``) on a pseudo-terminal. ``expect(text)`` waits until the screen output
    so far (escape sequences and carriage returns removed) contains ``text`` after the
    previous match, and returns what came before it. Blocking: call through
    ``trio.to_thread.run_sync``. ``close()`` kills the process if it is still running."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", *args], stdin=slave, stdout=slave,
            stderr=slave, env=client_env(home, TERM="dumb", **env), cwd=ROOT,
            start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)
        self.screen = ""
        self._seen = 0

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, text: str, timeout: float = EXPECT_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while (found := self.screen.find(text, self._seen)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} not seen; screen so far:\n{self.screen}")
        before = self.screen[self._seen:found]
        self._seen = found + len(text)
        return before

    def _read(self, timeout: float) -> bool:
        readable, _, _ = select.select([self.master], [], [], timeout)
        if not readable:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the other side closed
            return False
        self.screen += _ANSI.sub("", chunk.decode(errors="replace"))
        return bool(chunk)

    def wait(self, timeout: float = EXPECT_TIMEOUT_S) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        return self.process.wait(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
