"""Support for the HTTP fuzz tests (issue 9): one real server per test, Hypothesis driven
from a worker thread with blocking HTTP calls, and the checks every fuzz test ends with.

How a fuzz test works: ``fuzz_world(tmp_path)`` starts the real server (tests/api/
ws_harness.py: first-run setup, users alice and bob, tables ``app.todos`` USER,
``app.board`` SHARED PUBLIC, ``app.vault`` SHARED private) plus a topic fed by
``app.board``; the test then runs a Hypothesis property *in a worker thread*
(``await run_property(fn)``), where ``fn`` calls ``call(...)`` — a plain ``http.client``
request — so Hypothesis can drive the running server example by example without an event
loop of its own. A property never accepts a 5xx for a client error (``assert_client_error``)
and ends with ``assert_server_well`` (health 200, no unexpected-error log line).

Seeds: every property is seeded from the run's ``--seed`` (tests/conftest.py) and a failure
carries a ``replay with --seed N`` note. Examples are bounded and the deadline is off (the
server shares two cores with everything else); ``--run-slow`` (``make test-slow``) runs
``SLOW_TIER_FACTOR`` times as many.
"""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, settings

from tests.api.harness import Server
from tests.api.ws_harness import Users, run_sql, ws_server

REQUEST_TIMEOUT_S = 15
SLOW_TIER_FACTOR = 10  # --run-slow: this many times each fuzz test's default examples
# Log lines that only an unexpected exception in a route writes (api/routes/*.py).
UNEXPECTED_LOG_MARKERS = ("failed unexpectedly", "Traceback (most recent call last)")
TOPIC = "app.board_events"
WORLD_SQL = [
    f"CREATE TOPIC {TOPIC}",
    f"ALTER TOPIC {TOPIC} ADD SOURCE app.board ON INSERT",
    "INSERT INTO app.board (id, note) VALUES (1, 'board-1'), (2, 'board-2')",
    "INSERT INTO app.vault (id, note) VALUES (1, 'vault-1')",
]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class World:
    server: Server
    users: Users


def call(server: Server, method: str, path: str, body: bytes | None = None, *,
         token: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One blocking request (run it in a worker thread). ``token`` becomes a Bearer header;
    ``headers`` are sent as given (a caller-made Content-Type wins)."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(server.host, server.port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def post_json(server: Server, path: str, data: Any, token: str | None) -> Reply:
    return call(server, "POST", path, json.dumps(data).encode(), token=token,
                headers={"Content-Type": "application/json"})


def sql_rows(server: Server, token: str, text: str) -> list[list[Any]]:
    """The rows of one SELECT that must succeed."""
    reply = post_json(server, "/v1/api/sql", {"sql": text}, token)
    assert reply.status == 200, (text, reply.status, reply.body)
    [result] = reply.json()["results"]
    return result.get("rows") or []


def count(server: Server, token: str, table: str) -> int:
    [[n]] = sql_rows(server, token, f"SELECT COUNT(*) FROM {table}")
    return int(n)


class Watched:
    """The last observed value of ``measure()`` (e.g. a row count), re-measured after every
    fuzzed request: one measurement per request instead of a before and an after."""

    def __init__(self, measure: Callable[[], object]) -> None:
        self.measure = measure
        self.last = measure()

    def after(self, refused: bool, what: object) -> None:
        """Re-measures; a refused request must have left the value unchanged."""
        now = self.measure()
        if refused:
            assert now == self.last, ("a refused request left a trace", what, self.last, now)
        self.last = now


def assert_client_error(reply: Reply, what: object) -> None:
    """A fuzzed request may succeed or be refused; it may never be a server error."""
    assert reply.status < 500, (what, reply.status, reply.body[:500])


def examples(request: pytest.FixtureRequest, default: int) -> int:
    """``default``, or ``SLOW_TIER_FACTOR`` times it in the slow tier."""
    return default * SLOW_TIER_FACTOR if request.config.getoption("--run-slow") else default


def fuzz_settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large],
                    print_blob=True)


async def run_property(fn: Callable[[], None], seed: int) -> None:
    """Runs a Hypothesis-decorated ``fn`` in a worker thread; a failure names the seed."""
    try:
        await trio.to_thread.run_sync(fn)
    except BaseException as exc:
        exc.add_note(f"replay with --seed {seed}")
        raise


def assert_server_well(server: Server) -> None:
    """Health is 200 and no route logged an unexpected exception (blocking)."""
    reply = call(server, "GET", "/health")
    assert reply.status == 200, reply.body
    log = "".join(server.stderr)
    for marker in UNEXPECTED_LOG_MARKERS:
        assert marker not in log, log[-4000:]


@contextlib.asynccontextmanager
async def fuzz_world(tmp_path: Path, **sections: dict[str, Any]) -> AsyncIterator[World]:
    sections.setdefault("rate_limit", {}).setdefault("max_queries_per_sec", 0)
    async with ws_server(tmp_path, **sections) as (server, users):
        for text in WORLD_SQL:
            await run_sql(server, users.admin, text)
        yield World(server, users)
        await trio.to_thread.run_sync(assert_server_well, server)
