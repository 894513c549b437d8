"""I/O errors at the storage seam of a running server (issue 9, "fault injection"): failpoints
with action ``raise:<ERRNO>`` (wal/failpoints.py) make the N-th and every later pass through
one I/O step fail as a full or broken disk would, in the ``sluice serve`` process, while the
workload of tests/crash_server/workload.py runs.

WAL faults (a write or an fsync of the log, a segment roll) poison the log: the failing
requests answer 503 ``STORAGE_UNAVAILABLE``, ``/health`` turns 503, every later write is
refused the same way and reads still serve everything acknowledged; the server still stops
cleanly. A request that got the 503 has an unknown outcome (its bytes may have reached the
file before the fsync failed, so a restart may find it): all or nothing, like a request cut
by a crash. Faults in derived files (a flushed Arrow segment, an uploaded file) do not poison
the log — the WAL still holds every row, so the server keeps acknowledging writes: a failed
flush is a ``failed`` row in ``system.jobs`` naming the error, a failed upload a 503
``STORAGE_UNAVAILABLE``. After
the fault clears (restart unarmed), everything acknowledged is back and ``sluice replay
--verify`` agrees.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import trio

from tests.crash_server import check
from tests.crash_server.cycle import Run, restart_and_check, setup
from tests.crash_server.server import Node, call, launch, rows
from tests.crash_server.workload import Workload

WORKLOAD_TIMEOUT_S = 30.0
DERIVED_RUN_S = 2.0  # workload time with derived-file faults armed
WAL_CASES = [
    pytest.param("wal.before_write", "ENOSPC", 25, id="wal-write-ENOSPC"),
    pytest.param("wal.after_write_before_fsync", "EIO", 40, id="wal-fsync-EIO",
                 marks=pytest.mark.slow),
    pytest.param("wal.before_write", "EIO", 60, id="wal-write-EIO", marks=pytest.mark.slow),
    pytest.param("wal.after_write_before_fsync", "ENOSPC", 25, id="wal-fsync-ENOSPC",
                 marks=pytest.mark.slow),
    pytest.param("segment.before_rename", "ENOSPC", 2, id="wal-roll-ENOSPC",
                 marks=pytest.mark.slow),
]


def seed_of(base_seed: int) -> int:
    return int(os.environ.get("SLUICE_CRASH_SEED") or base_seed)


async def _run_until_writers_stop(node: Node, workload: Workload) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(workload.run)
        with trio.fail_after(WORKLOAD_TIMEOUT_S):
            await workload.writers_stopped.wait()
        nursery.cancel_scope.cancel()


async def _refused(node: Node, method: str, path: str, body: dict) -> tuple[int, str]:
    reply = await call(node, method, path, body)
    assert reply is not None, node.log
    data = reply.json
    error = data.get("error")
    return reply.status, (error.get("code") if isinstance(error, dict) else data.get("code"))


async def _check_poisoned(node: Node, run: Run) -> list[str]:
    """While the fault lasts: 503s with a clear code, health 503, reads intact."""
    problems = []
    if not any("STORAGE_UNAVAILABLE" in line for line in run.ledger.unknown):
        problems.append(f"no 503 STORAGE_UNAVAILABLE among failures: {run.ledger.unknown[:3]}")
    status, body = await check.health(node)
    if (status, body.get("status")) != (503, "unhealthy"):
        problems.append(f"/health while the WAL is poisoned: {status} {body}")
    later = [("POST", "/v1/api/sql", {"sql": "INSERT INTO crash.kv (id, v, note) VALUES "
                                             "(999999999, 1, 'late')"}),
             # a group that never acked: its first ack must be written to the log
             ("POST", "/v1/api/topics/ack", {"topic_id": "crash.kv_events",
                                             "group_id": "late", "upto_offset": 0})]
    for method, path, body in later:
        outcome = await _refused(node, method, path, body)
        if outcome != (503, "STORAGE_UNAVAILABLE"):
            problems.append(f"a later write {path} answered {outcome}")
    found, _ = await check.check_rows(node, run.ledger)
    return problems + [f"while poisoned: {p}" for p in found]


@pytest.mark.parametrize(("failpoint", "errno_name", "from_hit"), WAL_CASES)
async def test_fault_server__wal_io_error__503_unhealthy_nothing_acknowledged_lost(
        tmp_path: Path, base_seed: int, failpoint: str, errno_name: str, from_hit: int
        ) -> None:
    # The log fails from the N-th pass through the point on; writers stop at their 503.
    run = Run(tmp_path, seed_of(base_seed))
    await setup(run)
    async with trio.open_nursery() as nursery:
        node = await launch(nursery, tmp_path,
                            failpoints=f"{failpoint}=raise:{errno_name}@{from_hit}")
        try:
            workload = Workload(node, run.ledger, run.seed, outcome_unknown_statuses=
                                frozenset({503}))
            await _run_until_writers_stop(node, workload)
            assert not run.ledger.unexpected, run.fail(str(run.ledger.unexpected[:5]))
            problems = await _check_poisoned(node, run)
            assert not problems, run.fail("\n  ".join(problems) + "\n" + node.log)
            await node.stop()
        finally:
            await node.aclose()
    # The 503 names the cause, and so does the server's log (once).
    reason = os.strerror(getattr(errno, errno_name))
    assert any(reason in line for line in run.ledger.unknown), run.ledger.unknown[:3]
    server_log = node.stderr.decode(errors="replace")
    assert server_log.count("the write-ahead log refuses writes") == 1, node.log
    assert reason in server_log, node.log
    await restart_and_check(run)


async def _failed_flush_jobs(node: Node) -> list[str]:
    found = await rows(node, "SELECT job_type, status, message FROM system.jobs")
    return [str(message) for job_type, status, message in found
            if job_type == "Flush" and status == "failed"]


async def test_fault_server__segment_and_file_write_errors__log_keeps_acknowledging(
        tmp_path: Path, base_seed: int) -> None:
    # Flushed segments fail with ENOSPC and uploads with EIO from their 2nd attempt on; the
    # writers keep being acknowledged, health stays 200, and a restart loses nothing.
    run = Run(tmp_path, seed_of(base_seed))
    await setup(run)
    spec = "file.before_rename=raise:ENOSPC@2,files.after_move_before_commit=raise:EIO@2"
    async with trio.open_nursery() as nursery:
        node = await launch(nursery, tmp_path, failpoints=spec)
        try:
            workload = Workload(node, run.ledger, run.seed,
                                outcome_unknown_statuses=frozenset({503}))
            with trio.move_on_after(DERIVED_RUN_S):
                await workload.run()
            assert not run.ledger.unexpected, run.fail(str(run.ledger.unexpected[:5]))
            uploads = [line for line in run.ledger.unknown if line.startswith("upload")]
            assert uploads and ": 503 " in uploads[0], run.ledger.unknown
            assert "STORAGE_UNAVAILABLE" in uploads[0], uploads
            failed = await _failed_flush_jobs(node)
            assert any("No space left on device" in m for m in failed), failed
            assert (await check.health(node))[0] == 200
            problems, _ = await check.check_rows(node, run.ledger)
            assert not problems, run.fail(str(problems))
            # Shutdown writes topic indexes and a checkpoint onto the still-full disk: that
            # fails, is logged, and the shutdown stays clean (the log holds everything).
            await node.stop(failing_with=os.strerror(errno.ENOSPC))
        finally:
            await node.aclose()
    await restart_and_check(run)
