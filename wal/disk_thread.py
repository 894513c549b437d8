"""One long-lived worker thread that runs the group-commit writer's blocking steps.

``trio.to_thread.run_sync`` spawns or reuses a pooled thread per call and goes through
several loop iterations per round trip (measured ~105 µs here); a batch's write + fdatasync
is often less than that. The writer task owns this thread instead: it is started by
``open_disk_thread`` inside the writer's lifetime and joined when that context exits, so it
never outlives its parent (structured, like a nursery child).

``run`` is *not* abortable: once a step is handed over the caller waits for its outcome,
exactly like ``trio.to_thread.run_sync`` without ``abandon_on_cancel`` — a cancellation is
delivered after the step finished. Steps run one at a time, in submission order.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

_STOP = object()


class _Step:
    __slots__ = ("args", "error", "fn", "task", "token", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.token = trio.lowlevel.current_trio_token()
        self.task = trio.lowlevel.current_task()
        self.value: Any = None
        self.error: BaseException | None = None

    def execute(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # handed back to the waiting task, never swallowed
            self.error = exc
        with contextlib.suppress(trio.RunFinishedError):  # the run died; nobody is waiting
            self.token.run_sync_soon(trio.lowlevel.reschedule, self.task)


class DiskThread:
    def __init__(self, name: str) -> None:
        self._steps: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while (step := self._steps.get()) is not _STOP:
            step.execute()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs ``fn(*args)`` in the thread and returns its result (or raises its error)."""
        step = _Step(fn, args)
        self._steps.put(step)
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        if step.error is not None:
            raise step.error
        return step.value


@contextlib.asynccontextmanager
async def open_disk_thread(name: str) -> AsyncIterator[DiskThread]:
    """Starts the thread; on exit lets queued steps finish and joins it."""
    disk = DiskThread(name)
    disk._thread.start()
    try:
        yield disk
    finally:
        disk._steps.put(_STOP)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(disk._thread.join)
