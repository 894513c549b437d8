"""Child process for ``test_crash_kill.py``: appends to a WAL from many concurrent tasks until it
is killed (SIGKILL from the parent, or a failpoint's ``os._exit(137)``).

Usage: child_appender.py DIRECTORY --seed N [--fsync always] [--appenders 32]
       [--failpoint NAME --after N] [--retention] [--replace STATE_FILE] [--max-seconds 20]

``--failpoint`` enables that failpoint (action ``exit``) once N appends are acknowledged, so it
fires in the middle of real work instead of while the log opens. ``--retention`` runs
``truncate_before`` every few dozen records; ``--replace`` rewrites STATE_FILE with
``FileIO.replace_atomically`` every few dozen records. (Failpoints in recovery are enabled by
the parent through ``SLUICE_FAILPOINTS`` instead.)

Protocol on stdout: one line per fact, written only after the fact and flushed at once, so every
complete line the parent reads is true even if the process dies right after writing it:
    open <committed_lsn>   the WAL is open; recovery kept records up to <committed_lsn>
    ack <lsn> <digest>     an append returned: <lsn> is acknowledged (digest: payloads.digest)
    armed <failpoint>      the failpoint was just enabled
    truncate <lsn>         truncate_before(<lsn>) is about to run
    replace <n>            STATE_FILE is about to be replaced by b"state <n>"
Exit status: 137 from a failpoint; 3 if nothing killed it within --max-seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

import trio

from tests.wal.crash.payloads import digest, make_call
from tests.wal.harness import SMALL
from wal import FsyncPolicy, Wal, failpoints, open_wal
from wal._io import FileIO

RETENTION_EVERY_RECORDS = 40
REPLACE_EVERY_RECORDS = 25
NOT_KILLED_EXIT_CODE = 3


class Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.acked = 0
        self.armed = False

    def emit(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def acknowledged(self, lsns: list[int], payloads: list[bytes]) -> None:
        pairs = zip(lsns, payloads, strict=True)
        self.emit("".join(f"ack {lsn} {digest(payload)}\n" for lsn, payload in pairs))
        self.acked += len(lsns)
        if self.args.failpoint and not self.armed and self.acked >= self.args.after:
            # Safe while the writer thread runs: one dict store, read under the GIL.
            failpoints.enable(self.args.failpoint, "exit")
            self.armed = True
            self.emit(f"armed {self.args.failpoint}\n")

    async def appender(self, wal: Wal, task: int) -> None:
        rng = random.Random(f"{self.args.seed}/{task}")
        for n in range(10**9):
            payloads = make_call(self.args.seed, task * 10**6 + n, rng)
            if len(payloads) == 1:
                lsns = [await wal.append(payloads[0])]
            else:
                lsns = await wal.append_batch(payloads)
            self.acknowledged(lsns, payloads)

    async def retention(self, wal: Wal) -> None:
        while True:
            lsn = await wal.wait_for_commit_after(wal.committed_lsn + RETENTION_EVERY_RECORDS)
            self.emit(f"truncate {lsn - 5}\n")
            await wal.truncate_before(lsn - 5)

    async def replace(self, wal: Wal, state: Path) -> None:
        io = FileIO()
        for n in range(10**9):
            await wal.wait_for_commit_after(wal.committed_lsn + REPLACE_EVERY_RECORDS)
            self.emit(f"replace {n}\n")
            await trio.to_thread.run_sync(io.replace_atomically, state, b"state %d" % n)

    async def run(self) -> int:
        args = self.args
        config = dataclasses.replace(SMALL, fsync=FsyncPolicy.parse(args.fsync))
        with trio.move_on_after(args.max_seconds):
            async with open_wal(args.directory, config) as wal:
                self.emit(f"open {wal.committed_lsn}\n")
                async with trio.open_nursery() as nursery:
                    for task in range(args.appenders):
                        nursery.start_soon(self.appender, wal, task)
                    if args.retention:
                        nursery.start_soon(self.retention, wal)
                    if args.replace:
                        nursery.start_soon(self.replace, wal, args.replace)
        return NOT_KILLED_EXIT_CODE


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--fsync", default="always")
    parser.add_argument("--appenders", type=int, default=32)
    parser.add_argument("--failpoint", choices=sorted(failpoints.REGISTRY))
    parser.add_argument("--after", type=int, default=0, help="acknowledged appends before arming")
    parser.add_argument("--retention", action="store_true")
    parser.add_argument("--replace", type=Path, metavar="STATE_FILE")
    parser.add_argument("--max-seconds", type=float, default=20.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(trio.run(Child(parse_args(sys.argv[1:])).run))
