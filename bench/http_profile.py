"""Where a server process spends its time under load: py-spy samples, summed per package and
per function (``python -m bench.http_api --profile KIND``).

py-spy (``pip install py-spy``; a development tool, not a dependency of the project) attaches
to the running server by pid and samples every thread's Python stack ``PY_SPY_RATE`` times
a second without slowing it much (unlike cProfile). Idle threads (blocked in ``epoll`` or a
lock) are not sampled, so the shares are of busy time; the main thread (the trio loop) is told
apart from worker threads by the root of its stack. ``summarize`` reads py-spy's "raw"
(collapsed stacks) output: one ``frame;frame;…;frame COUNT`` line per distinct stack, each
frame ``function (path:line)``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

PY_SPY_RATE = 200  # samples per second
PROJECT = ("api", "engine", "wal", "bench", "tools")
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def find_py_spy(explicit: str | None) -> str:
    """The py-spy executable (``explicit``, else on ``PATH``); ``RuntimeError`` saying how to
    get it when missing."""
    found = explicit or shutil.which("py-spy")
    if not found:
        raise RuntimeError("--profile needs py-spy: `pip install py-spy` (into any "
                           "environment, e.g. --target /tmp/pyspy) and pass --py-spy PATH")
    return found


def start_recording(py_spy: str, pid: int, seconds: int, out: Path) -> subprocess.Popen[str]:
    """Starts ``py-spy record`` on ``pid`` for ``seconds``, writing collapsed stacks to
    ``out``; the caller waits for it."""
    return subprocess.Popen(
        [py_spy, "record", "-p", str(pid), "-d", str(seconds), "-r", str(PY_SPY_RATE),
         "-f", "raw", "-o", str(out), "--nonblocking"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def package_of(frame: str) -> str:
    """The package a frame belongs to: a project package, a third-party distribution's top
    module, ``stdlib``, or ``?``."""
    match = _FRAME.match(frame)
    path = match.group("path") if match else ""
    if not path or path.startswith("<"):
        return "stdlib"
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif re.search(r"/lib/python3\.\d+/", path):
        return "stdlib"
    top = path.lstrip("/").split("/")[0].removesuffix(".py")
    if top in PROJECT:
        return top
    return "stdlib" if top in sys.stdlib_module_names else top


def _function_of(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("path")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    return f"{match.group('function')} ({path})"


def _table(title: str, counts: Counter[str], total: int, top: int) -> list[str]:
    lines = [f"| {title} | samples | share |", "|---|---:|---:|"]
    lines += [f"| {name} | {count:,} | {count / total:.0%} |"
              for name, count in counts.most_common(top)]
    return [*lines, ""]


def summarize(raw: str, top: int = 25) -> str:
    """Markdown: self and inclusive time per package, then the top functions by self time
    and the top project functions by inclusive time."""
    self_pkg, incl_pkg, self_fn, incl_fn = Counter(), Counter(), Counter(), Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        total += count
        threads["main thread (trio loop)" if "_run_module_as_main" in frames[0]
                else "worker threads (to_thread, WAL disk thread)"] += count
        self_pkg[package_of(frames[-1])] += count
        self_fn[_function_of(frames[-1])] += count
        for package in {package_of(f) for f in frames}:
            incl_pkg[package] += count
        for function in {_function_of(f) for f in frames if package_of(f) in PROJECT}:
            incl_fn[function] += count
    if total == 0:
        return "py-spy recorded no samples\n"
    out = [f"{total:,} samples of busy threads ({PY_SPY_RATE} Hz).", ""]
    out += _table("thread", threads, total, top)
    out += _table("package (self)", self_pkg, total, top)
    out += _table("package (inclusive)", incl_pkg, total, top)
    out += _table("function (self)", self_fn, total, top)
    out += _table("project function (inclusive)", incl_fn, total, top)
    return "\n".join(out)
