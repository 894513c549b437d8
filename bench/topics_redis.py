"""Redis streams next to Sluice's topics in the topics benchmark (``bench/topics.py``).

``bench/peers.sh redis`` installs ``redis-server`` from Debian packages when it is missing
and prints its path (``find_redis``). ``redis_server`` starts it on a free loopback port in a
scratch directory with ``appendonly yes`` and ``appendfsync always`` (every write command is
fsynced to the append-only file before the reply: the durability Sluice gives a commit or an
ack), snapshots off, and always stops it (``SHUTDOWN NOSAVE``, then SIGKILL) and leaves the
directory to the caller.

The client is redis-py (the ``bench`` extra in pyproject.toml; without hiredis, like a
default install), used the way an application would: XADD through a non-transactional
pipeline of ``FILL_PIPELINE`` commands; consumption with ``XREADGROUP … COUNT n STREAMS s >``
followed by one ``XACK`` of the returned ids, from a fresh consumer group per round.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.http_peers import PEERS_SCRIPT, free_port

STREAM = "events"
FILL_PIPELINE = 1_000  # XADDs per pipeline round trip while pre-filling
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
CONFIG = """\
# Written by bench/topics.py: durable like Sluice (fsync before every reply).
port {port}
bind 127.0.0.1
dir {directory}
appendonly yes
appendfsync always
save ""
daemonize no
protected-mode yes
logfile ""
"""


def find_redis() -> str:
    """Runs ``bench/peers.sh redis`` (installing redis-server when missing); its path."""
    done = subprocess.run(["sh", str(PEERS_SCRIPT), "redis"], capture_output=True, text=True,
                          check=False, timeout=900)
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or "REDIS_SERVER" not in found:
        raise RuntimeError(f"bench/peers.sh redis failed ({done.returncode}):\n"
                           f"{done.stderr[-2000:]}")
    return found["REDIS_SERVER"]


def client_module() -> Any:
    """The redis-py module, or ``RuntimeError`` saying how to install it."""
    try:
        import redis
    except ImportError as exc:
        raise RuntimeError("the Redis peer needs redis-py: `.venv/bin/pip install -e "
                           "'.[bench]'` (make bench-topics does it)") from exc
    return redis


@dataclass(slots=True)
class RedisPeer:
    server: str
    process: subprocess.Popen[bytes]
    port: int
    client: Any

    def version(self) -> str:
        info = self.client.info("server")
        persistence = self.client.config_get("appendfsync")
        return (f"Redis {info['redis_version']} (appendonly yes, appendfsync "
                f"{persistence['appendfsync']}), redis-py {client_module().__version__}")


def _stop(process: subprocess.Popen[bytes], client: Any) -> None:
    if process.poll() is None:
        with contextlib.suppress(Exception):  # the connection drops as the server exits
            client.shutdown(nosave=True)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def redis_server(server: str, directory: Path, log: Path) -> Iterator[RedisPeer]:
    """A started redis-server with its data in ``directory`` (created, deleted after)."""
    redis = client_module()
    directory.mkdir(parents=True)
    port = free_port()
    config = directory / "redis.conf"
    config.write_text(CONFIG.format(port=port, directory=directory))
    with open(log, "wb") as out:
        process = subprocess.Popen([server, str(config)], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n"
                                       f"{log.read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.05)
        yield RedisPeer(server, process, port, client)
    finally:
        _stop(process, client)
        client.close()
        shutil.rmtree(directory, ignore_errors=True)


def fill(peer: RedisPeer, rows: Callable[[int, int], list[dict[str, str]]], total: int,
         progress: Callable[[str], None]) -> float:
    """XADDs ``total`` rows (``rows(first, count)`` gives their fields) in pipelines of
    ``FILL_PIPELINE``; returns the seconds it took."""
    started = time.perf_counter()
    for first in range(0, total, FILL_PIPELINE):
        pipe = peer.client.pipeline(transaction=False)
        for fields in rows(first, min(FILL_PIPELINE, total - first)):
            pipe.xadd(STREAM, fields)
        pipe.execute()
        if first % 100_000 == 0 and first:
            progress(f"redis: {first:,} of {total:,} XADDs")
    return time.perf_counter() - started


@dataclass(slots=True)
class ConsumeRun:
    messages: int
    seconds: float
    read_ms: list[float]
    ack_ms: list[float]
    failure: str | None = None


def consume(peer: RedisPeer, group: str, count: int, seconds: float, limit: int
            ) -> ConsumeRun:
    """A fresh group from the stream's start: ``XREADGROUP COUNT count`` + ``XACK`` of its
    ids, until ``seconds`` pass or ``limit`` messages were read."""
    client = peer.client
    client.xgroup_create(STREAM, group, id="0")
    read_ms: list[float] = []
    ack_ms: list[float] = []
    done = 0
    started = time.perf_counter()
    try:
        while done < limit and time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            reply = client.xreadgroup(group, "c1", {STREAM: ">"}, count=count)
            t1 = time.perf_counter()
            entries = reply[0][1] if reply else []
            if not entries:
                return ConsumeRun(done, t1 - started, read_ms, ack_ms,
                                  f"XREADGROUP returned nothing after {done:,} messages")
            acked = client.xack(STREAM, group, *[entry_id for entry_id, _ in entries])
            t2 = time.perf_counter()
            if acked != len(entries):
                return ConsumeRun(done, t2 - started, read_ms, ack_ms,
                                  f"XACK acknowledged {acked} of {len(entries)}")
            done += len(entries)
            read_ms.append((t1 - t0) * 1e3)
            ack_ms.append((t2 - t1) * 1e3)
        return ConsumeRun(done, time.perf_counter() - started, read_ms, ack_ms)
    finally:
        client.xgroup_destroy(STREAM, group)
