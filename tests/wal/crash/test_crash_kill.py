"""kill -9 during group commit (TESTING.md section D): a child process (``child_appender.py``)
appends with 32 concurrent tasks and prints each LSN only after ``append`` returned; it dies at a
failpoint (``os._exit(137)``) or from a SIGKILL at a seeded random moment. The parent then reopens
the directory and checks that every printed LSN is back with the same payload digest and that
the log is a contiguous, undamaged prefix.

A process kill keeps the OS page cache, so this covers process crashes under every fsync policy;
power loss is ``test_crash_powerloss.py``'s job.

Every failpoint in ``wal.failpoints.REGISTRY`` gets a test. The child arms append/roll points
after 40 acknowledged appends; other points need the matching operation driven, chosen by name
prefix in ``SCENARIOS`` (a new point with a new prefix fails loudly until it gets one).
"""

from __future__ import annotations

import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from tests.wal.crash.payloads import check_recovered, describe, make_torn_log, read_back
from tests.wal.harness import SMALL
from wal import failpoints

CHILD = Path(__file__).with_name("child_appender.py")
VENV_PYTHON = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
ARM_AFTER_ACKS = 40
CHILD_TIMEOUT_SECONDS = 30
KILL_DELAY_MAX_SECONDS = 0.4
# Failpoint name prefix -> what the child must do to reach it ("append": plain appends and rolls).
SCENARIOS = {"wal.": "append", "segment.": "append", "retention.": "retention",
             "recovery.": "recovery", "file.": "replace"}
RANDOM_KILLS = 3
SLOW_RANDOM_KILLS = 50


@dataclass(slots=True)
class ChildRun:
    returncode: int | None
    lines: list[str]  # complete protocol lines (a line cut by the kill is dropped)
    stderr: str
    acked: dict[int, str] = field(default_factory=dict)
    truncated: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for line in self.lines:
            word, *rest = line.split()
            if word == "ack":
                self.acked[int(rest[0])] = rest[1]
            elif word == "truncate":
                self.truncated.append(int(rest[0]))
            elif word == "replace":
                self.replaced.append(int(rest[0]))

    def describe(self) -> str:
        return (f"exit status {self.returncode}; {len(self.acked)} acknowledged; last lines "
                f"{self.lines[-3:]}; stderr:\n{self.stderr[-3000:]}")


async def _drain(stream: trio.abc.ReceiveStream, into: bytearray, acked: trio.Event) -> None:
    async for chunk in stream:
        into += chunk
        if b"ack " in chunk:
            acked.set()


async def run_child(directory: Path, *args: str, failpoints_env: str = "",
                    kill_after_first_ack: float | None = None) -> ChildRun:
    """Runs the child until it exits (or SIGKILLs it ``kill_after_first_ack`` seconds after its
    first acknowledged append); returns what it printed."""
    env = {**os.environ, "SLUICE_FAILPOINTS": failpoints_env}
    command = [PYTHON, str(CHILD), str(directory), *args]
    process = await trio.lowlevel.open_process(command, stdout=-1, stderr=-1, env=env)
    out, err, acked = bytearray(), bytearray(), trio.Event()
    async with trio.open_nursery() as nursery:
        assert process.stdout is not None and process.stderr is not None
        nursery.start_soon(_drain, process.stdout, out, acked)
        nursery.start_soon(_drain, process.stderr, err, trio.Event())
        with trio.move_on_after(CHILD_TIMEOUT_SECONDS):
            if kill_after_first_ack is not None:
                await acked.wait()
                await trio.sleep(kill_after_first_ack)
                process.kill()
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode().split("\n")[:-1]  # drops the unfinished last line (or the final "")
    return ChildRun(process.returncode, lines, err.decode(errors="replace"))


async def check_reopened(directory: Path, child: ChildRun, seed: int,
                         earlier: dict[int, str] | None = None) -> None:
    """Reopens the log in this process; every acknowledged record (printed by the child, or
    ``earlier``) must be back and the log must be a clean prefix."""
    acked = {**(earlier or {}), **child.acked}
    frames, first_lsn = await read_back(directory)
    problems = check_recovered(frames, seed=seed, acked=acked, durable=acked,
                               first_lsn=first_lsn)
    if first_lsn > max(child.truncated, default=1):
        problems.append(f"first LSN {first_lsn}, but retention only ran up to "
                        f"{max(child.truncated, default=1)}")
    assert not problems, (f"seed {seed} (replay: --seed {seed}); child {child.describe()}\n"
                          f"{describe(problems)}")


def scenario_of(failpoint: str) -> str:
    prefixes = [prefix for prefix in SCENARIOS if failpoint.startswith(prefix)]
    assert prefixes, f"failpoint {failpoint!r} has no scenario: add its prefix to SCENARIOS"
    return SCENARIOS[prefixes[0]]


@pytest.mark.parametrize("failpoint", sorted(failpoints.REGISTRY))
async def test_kill__at_each_failpoint__acknowledged_records_survive(
        tmp_path: Path, base_seed: int, failpoint: str) -> None:
    # The child reaches the failpoint mid-workload and exits 137; the reopened log keeps every
    # record whose LSN it printed.
    scenario, directory = scenario_of(failpoint), tmp_path / "wal"
    args = ["--seed", str(base_seed), "--fsync", "always"]
    earlier: dict[int, str] = {}
    if scenario == "recovery":  # a torn tail for recovery to cut; the point fires while opening
        earlier = await make_torn_log(directory, SMALL, seed=base_seed, records=30)
    else:
        args += ["--failpoint", failpoint, "--after", str(ARM_AFTER_ACKS)]
    if scenario == "retention":
        args.append("--retention")
    if scenario == "replace":
        args += ["--replace", str(tmp_path / "state")]
    child = await run_child(directory, *args,
                            failpoints_env=f"{failpoint}=exit" if scenario == "recovery" else "")
    assert child.returncode == failpoints.EXIT_CODE, (
        f"{failpoint}, seed {base_seed} (replay: --seed {base_seed}): {child.describe()}")
    await check_reopened(directory, child, base_seed, earlier)
    if scenario == "recovery":  # the interrupted recovery's copy stays; the reopen adds its own
        assert len(list(directory.glob("*.broken-*"))) == 2, sorted(os.listdir(directory))
    if scenario == "replace":
        _check_state_file(tmp_path / "state", child.replaced)


def _check_state_file(state: Path, replaced: list[int]) -> None:
    """An interrupted atomic replace leaves the previous content or the new one, whole."""
    assert replaced, "the child never replaced the state file"
    allowed = {b"state %d" % n for n in replaced[-2:]}
    if len(replaced) == 1:
        assert not state.exists() or state.read_bytes() in allowed
    else:
        assert state.read_bytes() in allowed, (state.read_bytes(), replaced[-2:])


def _random_kill_params() -> list[object]:
    return [pytest.param(i, marks=[pytest.mark.slow] if i >= RANDOM_KILLS else [])
            for i in range(RANDOM_KILLS + SLOW_RANDOM_KILLS)]


@pytest.mark.parametrize("index", _random_kill_params())
async def test_kill__sigkill_at_a_random_moment__acknowledged_records_survive(
        tmp_path: Path, base_seed: int, index: int) -> None:
    # The seed picks the fsync policy, retention on/off and a delay after the first ack; then
    # SIGKILL. Whatever the child printed must be in the reopened log.
    seed = (base_seed + index) % 2**32
    rng = random.Random(seed)
    args = ["--seed", str(seed), "--fsync", rng.choice(["always", "interval:5", "none"])]
    if rng.random() < 0.5:
        args.append("--retention")
    delay = rng.uniform(0, KILL_DELAY_MAX_SECONDS)
    child = await run_child(tmp_path / "wal", *args, kill_after_first_ack=delay)
    assert child.returncode == -signal.SIGKILL, (
        f"seed {seed} (replay: --seed {seed}) {args}: {child.describe()}")
    await check_reopened(tmp_path / "wal", child, seed)
