"""I/O errors by countdown (TESTING.md section F): fail each mutating call of a fixed workload in
turn, with ENOSPC and with EIO, and check what the WAL promises about I/O errors.

The workload (sequential, so each append is its own group-commit batch) starts from a template
log with a torn tail and a leftover ``.tmp`` file, so open runs the whole recovery (delete temp,
copy the tail aside, zero-fill it, sync); then appends single records and batches across
several segment rolls (the spare segment is prepared in the background), deletes old segments
with ``truncate_before``, and closes.

A dry run with a never-failing ``FaultyFS`` lists the workload's calls. The fault run for call k
fails the call with k's ``IoCall.key`` (method, file name, occurrence): the same call even if
the background spare preparation interleaves differently with the writer than in the dry run.

What must hold for every k (``fault_problems``):
  * open fails only with ``OSError``/``WalError``; so does anything else that raises (leaving
    the context: the close deletes an unused spare segment, which can fail too);
  * the append whose batch hit the error raises ``WalIOError`` caused by that errno; every later
    append raises ``WalPoisonedError``; ``wal.poisoned`` is that errno; nothing is acknowledged
    after the failure;
  * after poisoning, no segment file is written, synced or renamed into place again;
  * a failure outside the writer does not poison: retention (``truncate_before`` raises it) and
    preparing the spare segment (absorbed by design: the roll then creates the segment itself);
  * reopening with the real FileIO recovers a clean prefix holding every acknowledged record.
A separate countdown checks that no file descriptor is left open whatever fails.
"""

from __future__ import annotations

import errno
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.wal.crash.crashfs import FaultyFS
from tests.wal.crash.payloads import (
    check_recovered,
    describe,
    digest,
    make_payload,
    make_torn_log,
    read_back,
)
from tests.wal.harness import SMALL
from wal import (
    FsyncPolicy,
    Wal,
    WalConfig,
    WalError,
    WalIOError,
    WalPoisonedError,
    open_wal,
)

SEED = 7  # payload identity only: this workload has no randomness
CONFIG = replace(SMALL, segment_size_max_bytes=4096)  # rolls every ~10 records
TEMPLATE_RECORDS = 13  # one full segment and a few records in the next
ERRNOS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}
# (kind, body sizes): two rolls, a truncation, and a spare segment to delete at close. Records
# stay small after a segment is half full, so the background spare is ready long before the
# roll needs it (a late spare would change which calls the roll makes).
WORKLOAD: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("append", (300,)), ("append", (400,)), ("append", (500,)),
    ("batch", (200, 900, 150)),
    *[("append", (100 + 10 * i,)) for i in range(4)],
    ("truncate", ()),
    ("batch", (100, 100, 100, 100)),
    ("batch", (1200, 1500)),
    *[("append", (150 + 10 * (i % 5),)) for i in range(12)],
    *[("append", (100,)) for _ in range(12)],
)
SEGMENT_WRITES = ("pwrite", "fill_zeros", "fdatasync", "fsync", "rename")


@dataclass(slots=True)
class FaultRun:
    """What the workload saw with one injected fault."""

    open_error: BaseException | None = None
    exit_error: BaseException | None = None
    steps: list[tuple[str, BaseException | None]] = field(default_factory=list)
    acked: dict[int, str] = field(default_factory=dict)
    poisoned: BaseException | None = None
    truncate_lsn: int | None = None


async def _step(wal: Wal, kind: str, sizes: tuple[int, ...], call: int, run: FaultRun) -> None:
    payloads = [make_payload(SEED, call, i, len(sizes), size) for i, size in enumerate(sizes)]
    try:
        if kind == "append":
            lsns = [await wal.append(payloads[0])]
        elif kind == "batch":
            lsns = await wal.append_batch(payloads)
        else:
            run.truncate_lsn = wal.committed_lsn
            await wal.truncate_before(run.truncate_lsn)
            lsns = []
    except (WalError, OSError) as exc:
        run.steps.append((kind, exc))
        return
    run.steps.append((kind, None))
    run.acked.update((lsn, digest(p)) for lsn, p in zip(lsns, payloads, strict=True))


async def run_workload(directory: Path, io: FaultyFS, config: WalConfig = CONFIG) -> FaultRun:
    run = FaultRun()
    entered = False
    try:
        async with open_wal(directory, config, io=io) as wal:
            entered = True
            for number, (kind, sizes) in enumerate(WORKLOAD):
                await _step(wal, kind, sizes, 1000 + number, run)
            run.poisoned = wal.poisoned
    except Exception as exc:
        if entered:
            run.exit_error = exc
        else:
            run.open_error = exc
    return run


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _caused_by(exc: BaseException | None, error: int) -> bool:
    """True if ``exc`` is, or was raised because of, an OSError with ``error``."""
    while exc is not None:
        if any(isinstance(leaf, OSError) and leaf.errno == error for leaf in _leaves(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _step_problems(run: FaultRun, error: int) -> list[str]:
    problems, failed_append = [], None
    for number, (kind, exc) in enumerate(run.steps):
        if kind == "truncate":
            if exc is not None and not _caused_by(exc, error):
                problems.append(f"step {number} (truncate) raised {exc!r}, not the injected error")
        elif failed_append is None and exc is not None:
            failed_append = number
            if not (isinstance(exc, WalIOError) and _caused_by(exc, error)):
                problems.append(f"step {number} ({kind}) raised {exc!r}; expected WalIOError "
                                f"caused by the injected error")
        elif failed_append is not None and not isinstance(exc, WalPoisonedError):
            problems.append(f"step {number} ({kind}) after the failed append "
                            f"{'was acknowledged' if exc is None else f'raised {exc!r}'}; "
                            f"expected WalPoisonedError")
    if failed_append is None and run.poisoned is not None:
        problems.append(f"wal.poisoned is {run.poisoned!r} but no append failed")
    if failed_append is not None and not _caused_by(run.poisoned, error):
        problems.append(f"wal.poisoned is {run.poisoned!r}; expected the injected OSError")
    return problems


def fault_problems(run: FaultRun, fs: FaultyFS, error: int) -> list[str]:
    """Checks a fault run against the I/O-error contract (module docstring)."""
    problems = []
    for label, exc in (("open_wal", run.open_error), ("closing", run.exit_error)):
        wrong = [leaf for leaf in _leaves(exc) if not isinstance(leaf, OSError | WalError)] if (
            exc is not None) else []
        if wrong:
            problems.append(f"{label} raised {wrong!r}, not OSError/WalError")
    if run.open_error is None:
        problems += _step_problems(run, error)
    if run.poisoned is not None:
        late = [call for call in fs.calls_after_failure(*SEGMENT_WRITES)
                if call.path is not None and call.path.suffix == ".wal"]
        problems += [f"after poisoning: {call.method} {call.path.name} (call {call.index})"
                     for call in late]
    return problems


def _timing_dependent(call: object, run_directory: Path) -> bool:
    path = getattr(call, "path", None)
    if path is None:
        return False
    return path.name == "spare.tmp" or path.name.endswith(".wal.tmp") or path == run_directory


async def countdown(tmp_path: Path, error: int,
                    check: Callable[[FaultRun, FaultyFS, int], list[str]], *,
                    reopen: bool = True) -> None:
    """Fails each call of the workload in turn (see module docstring); runs ``check`` on each
    run and, with ``reopen``, checks the reopened log; fails listing every bad call."""
    template = tmp_path / "template"
    template_records = await make_torn_log(template, CONFIG, seed=SEED, records=TEMPLATE_RECORDS)
    dry = FaultyFS()
    dry_run = await run_workload(_fresh_copy(template, tmp_path / "dry"), dry)
    assert dry_run.open_error is None and dry_run.exit_error is None, dry_run
    assert all(exc is None for _, exc in dry_run.steps), dry_run.steps
    failures, not_fired = [], []
    for call in dry.calls:
        directory = _fresh_copy(template, tmp_path / f"k{call.index}")
        fs = FaultyFS(fail_key=call.key, error=error)
        run = await run_workload(directory, fs)
        if fs.failed is None:
            not_fired.append(call)
        problems = check(run, fs, error)
        fs.close_leaked()  # leaks are the no-descriptor-leaks test's business
        if reopen:
            frames, first_lsn = await read_back(directory, CONFIG)
            acked = {**template_records, **run.acked}
            problems += check_recovered(frames, seed=SEED, acked=acked, durable=acked,
                                        first_lsn=first_lsn)
            if first_lsn > (run.truncate_lsn or 1):
                problems.append(f"first LSN {first_lsn} but truncate_before({run.truncate_lsn})")
        if problems:
            failures.append(f"call {call.index} {call.key} failed with "
                            f"{errno.errorcode[error]}:\n{describe(problems)}")
        shutil.rmtree(directory.parent)
    assert not failures, f"{len(failures)} of {len(dry.calls)} calls:\n" + "\n".join(failures[:8])
    # Two families of calls depend on timing or on the run's directory name, not on the WAL:
    # a roll either uses the spare prepared in the background (spare.tmp) or creates its
    # segment itself (<base>.wal.tmp), and the first sync of the run directory's parent names
    # that directory. Every other call of the dry run must fire in its own fault run.
    unexpected = [call for call in not_fired if not _timing_dependent(call, tmp_path / "dry")]
    assert not unexpected, f"faults that never fired: {unexpected}"


def _fresh_copy(template: Path, root: Path) -> Path:
    shutil.copytree(template, root / "wal")
    return root / "wal"


def leak_problems(run: FaultRun, fs: FaultyFS, error: int) -> list[str]:
    return [f"descriptor left open on {path.name}" for path in fs.close_leaked()]


@pytest.mark.parametrize("error", sorted(ERRNOS))
async def test_fault_countdown__every_io_call_fails_once__error_contract_holds(
        tmp_path: Path, error: str) -> None:
    # For each of the workload's ~100 mutating calls: fail it, check errors, poisoning, reopen.
    await countdown(tmp_path, ERRNOS[error], fault_problems)


async def test_fault_countdown__every_io_call_fails_once__no_descriptor_leaks(
        tmp_path: Path) -> None:
    # Same countdown (EIO): after open_wal fails or its context exits, no descriptor is open.
    await countdown(tmp_path, errno.EIO, leak_problems, reopen=False)


class _HoldAfterWrite(FaultyFS):
    """Holds the writer inside its first ``pwrite`` after ``armed`` is set, until ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        super().pwrite(fd, data, offset)
        if self.armed:
            self.armed = False
            self.holding.set()
            assert self.release.wait(10)


async def test_fault__fsync_fails__every_waiter_in_the_batch_gets_wal_io_error(
        tmp_path: Path) -> None:
    # Append 0's write is held while appends 1-7 queue into one batch; that batch's fdatasync
    # fails: all seven get WalIOError, later appends WalPoisonedError, the sync is never retried.
    fs = _HoldAfterWrite()
    outcomes: dict[int, int | BaseException] = {}

    async def append(i: int) -> None:
        try:
            outcomes[i] = await wal.append(make_payload(SEED, i, 0, 1, 50))
        except WalError as exc:
            outcomes[i] = exc

    async with open_wal(tmp_path / "wal", SMALL, io=fs) as wal:
        fs.armed = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, 0)
            await trio.to_thread.run_sync(fs.holding.wait, 10)
            fs.fail_at = len(fs.calls) + 3  # its fdatasync, the next batch's pwrite, fdatasync
            for i in range(1, 8):
                nursery.start_soon(append, i)
            await trio.testing.wait_all_tasks_blocked()
            fs.release.set()
        with pytest.raises(WalPoisonedError):
            await wal.append(b"after")
        assert _caused_by(wal.poisoned, errno.EIO)
    assert fs.failed is not None and fs.failed.method == "fdatasync"
    assert outcomes[0] == 1
    assert all(isinstance(outcomes[i], WalIOError) for i in range(1, 8)), outcomes
    assert not fs.calls_after_failure(*SEGMENT_WRITES, path=fs.failed.path)


async def test_fault__interval_sync_fails__next_append_poisoned_and_sync_not_retried(
        tmp_path: Path) -> None:
    # fsync=interval:1 acknowledges before syncing; the background sync fails (EIO): waiters
    # for progress and later appends get WalPoisonedError; nothing is synced again.
    fs = FaultyFS()
    config = replace(SMALL, fsync=FsyncPolicy.parse("interval:1"))
    async with open_wal(tmp_path / "wal", config, io=fs) as wal:
        fs.fail_at = len(fs.calls) + 2  # the append's pwrite, then the interval fdatasync
        assert await wal.append(b"unsynced") == 1
        with trio.fail_after(10), pytest.raises(WalPoisonedError):
            await wal.wait_for_commit_after(1)
        with pytest.raises(WalPoisonedError):
            await wal.append(b"refused")
    assert fs.failed is not None and fs.failed.method == "fdatasync"
    assert not fs.calls_after_failure(*SEGMENT_WRITES)
    frames, _ = await read_back(tmp_path / "wal")
    assert [frame.payload for frame in frames] == [b"unsynced"]  # still in the page cache


async def test_fault__final_sync_at_close_fails__closing_reports_it(tmp_path: Path) -> None:
    # fsync=none acknowledges unsynced records; the sync at close fails: leaving open_wal must
    # raise (OSError/WalError, maybe in a group) instead of pretending the records are durable.
    fs = FaultyFS()
    config = replace(SMALL, fsync=FsyncPolicy.parse("none"))
    raised: BaseException | None = None
    try:
        async with open_wal(tmp_path / "wal", config, io=fs) as wal:
            for i in range(3):
                await wal.append(make_payload(SEED, i, 0, 1, 50))
            fs.fail_at = len(fs.calls) + 1  # the close's fdatasync
    except Exception as exc:
        raised = exc
    assert fs.failed is not None and fs.failed.method == "fdatasync"
    assert raised is not None and _caused_by(raised, errno.EIO), raised
    assert all(isinstance(leaf, OSError | WalError) for leaf in _leaves(raised)), raised
    assert not fs.open_fds
