"""Concurrent writers against the server under test, each keeping an exact model of what
the server acknowledged, so a check after a crash knows what must be there.

Every writer owns a disjoint id range of ``crash.kv`` (id = writer * ID_STRIDE + n) and sends
one request at a time, so its model is exact: an operation's ``effects`` (id -> row, or None
for a delete) are applied to the model only when the server answered 2xx. The request that
was in flight when the server died (no reply) is the writer's ``in_flight`` operation: it
must afterwards be either wholly applied or wholly absent. Operation kinds: single-row and
multi-row INSERT, UPDATE and DELETE (``WHERE id IN``), BEGIN…COMMIT batches mixing all three,
a ``params`` array-of-arrays INSERT, and NDJSON bodies to ``/v1/api/ingest/crash/kv``.

Besides the writers: a consumer of topic ``crash.kv_events`` (sourced from crash.kv inserts)
that acks what it consumed (``acked_offset`` is the highest 2xx ack), an uploader of FILE
rows into ``crash.docs``, and a maintenance task that runs ``STORAGE FLUSH TABLE`` and
``CLUSTER SNAPSHOT`` (segment flushes and checkpoints: the ``file.*`` failpoints).

Any non-2xx reply while the server lives is a finding: it lands in ``Ledger.unexpected``.
With ``outcome_unknown_statuses`` (the fault tests) such replies (503 from a poisoned WAL)
are instead unknown outcomes, like a dead connection.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio

from tests.api.files_client import Part, file_part, multipart
from tests.crash_server.server import Node, Reply, call

ID_STRIDE = 10**6
NAMESPACE = "crash"
TOPIC, GROUP = "crash.kv_events", "g"
SCHEMA = [
    "CREATE NAMESPACE crash",
    "CREATE SHARED TABLE crash.kv (id BIGINT PRIMARY KEY, v BIGINT, note TEXT)",
    "CREATE USER TABLE crash.docs (id BIGINT PRIMARY KEY, attachment FILE)",
]
TOPIC_SCHEMA = [
    f"CREATE TOPIC {TOPIC}",
    f"ALTER TOPIC {TOPIC} ADD SOURCE crash.kv ON INSERT",
]
# Flushing both tables lets WAL retention release segments (a hot row pins its LSN).
MAINTENANCE = ("STORAGE FLUSH TABLE crash.kv", "STORAGE FLUSH TABLE crash.docs",
               "CLUSTER SNAPSHOT")
MAINTENANCE_WEIGHTS = (4, 2, 2)
KINDS = ("insert", "insert_multi", "update", "delete", "txn", "params", "ingest")
KIND_WEIGHTS = (3, 2, 3, 1, 2, 2, 2)
Row = tuple[str, str]  # (v as the wire's string, note)


@dataclass
class Op:
    writer: int
    kind: str
    effects: dict[int, Row | None]
    inserted: tuple[int, ...]  # ids this op inserts (each becomes one topic message)
    method: str
    path: str
    body: bytes
    content_type: str = "application/json"


@dataclass
class Upload:
    doc_id: int
    data: bytes


@dataclass
class Ledger:
    """What the server acknowledged, and what was in flight when it died."""

    models: dict[int, dict[int, Row]] = field(default_factory=dict)  # writer -> id -> row
    next_ids: dict[int, int] = field(default_factory=dict)  # writer -> next id (never reused)
    in_flight: dict[int, Op] = field(default_factory=dict)
    inserted: set[int] = field(default_factory=set)  # acknowledged inserts (topic messages)
    acks: int = 0
    acked_offset: int = -1
    uploads: dict[int, bytes] = field(default_factory=dict)
    upload_in_flight: Upload | None = None
    maintenance: int = 0
    unexpected: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # 5xx replies treated as unknown

    def model(self, writer: int) -> dict[int, Row]:
        return self.models.setdefault(writer, {})


def _note(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits + " ",
                               k=rng.randint(8, 160)))


def _row(rng: random.Random) -> Row:
    return str(rng.randrange(-(2**62), 2**62)), _note(rng)


def _values(rows: dict[int, Row | None]) -> str:
    return ", ".join(f"({i}, {v}, '{n}')" for i, (v, n) in rows.items())  # type: ignore[misc]


class OpMaker:
    """Builds writer ``writer``'s next operation from its model (never sends anything)."""

    def __init__(self, writer: int, seed: int, ledger: Ledger) -> None:
        self.writer, self.ledger = writer, ledger
        self.rng = random.Random(f"{seed}/writer/{writer}")
        ledger.next_ids.setdefault(writer, writer * ID_STRIDE + 1)

    def fresh(self, count: int) -> dict[int, Row | None]:
        """New ids, never used before by this writer in any round: a deleted id is never
        inserted again, so each topic message's key names one insert."""
        first = self.ledger.next_ids[self.writer]
        self.ledger.next_ids[self.writer] = first + count
        return {i: _row(self.rng) for i in range(first, first + count)}

    def existing(self, count: int, exclude: Iterable[int] = ()) -> list[int]:
        pool = sorted(set(self.ledger.model(self.writer)) - set(exclude))
        return self.rng.sample(pool, min(count, len(pool)))

    def sql_op(self, kind: str, statements: list[str], effects: dict[int, Row | None],
               inserted: Iterable[int], params: list | None = None) -> Op:
        body: dict = {"sql": "; ".join(statements)}
        if params is not None:
            body["params"] = params
        return Op(self.writer, kind, effects, tuple(inserted), "POST", "/v1/api/sql",
                  json.dumps(body).encode())

    def next_op(self) -> Op:
        kind = self.rng.choices(KINDS, KIND_WEIGHTS)[0]
        if kind in ("update", "delete") and not self.ledger.model(self.writer):
            kind = "insert"
        return getattr(self, f"_{kind}")()

    def _insert(self) -> Op:
        rows = self.fresh(1)
        return self.sql_op("insert", [f"INSERT INTO crash.kv (id, v, note) VALUES "
                                      f"{_values(rows)}"], rows, rows)

    def _insert_multi(self) -> Op:
        rows = self.fresh(self.rng.randint(2, 6))
        return self.sql_op("insert_multi", [f"INSERT INTO crash.kv (id, v, note) VALUES "
                                            f"{_values(rows)}"], rows, rows)

    def _update_statement(self, ids: list[int]) -> tuple[str, dict[int, Row | None]]:
        v, note = _row(self.rng)
        in_list = ", ".join(map(str, ids))
        return (f"UPDATE crash.kv SET v = {v}, note = '{note}' WHERE id IN ({in_list})",
                dict.fromkeys(ids, (v, note)))

    def _update(self) -> Op:
        statement, effects = self._update_statement(self.existing(self.rng.randint(1, 3)))
        return self.sql_op("update", [statement], effects, ())

    def _delete(self) -> Op:
        ids = self.existing(self.rng.randint(1, 2))
        statement = f"DELETE FROM crash.kv WHERE id IN ({', '.join(map(str, ids))})"
        return self.sql_op("delete", [statement], dict.fromkeys(ids), ())

    def _txn(self) -> Op:
        rows = self.fresh(self.rng.randint(1, 4))
        statements = ["BEGIN", f"INSERT INTO crash.kv (id, v, note) VALUES {_values(rows)}"]
        effects: dict[int, Row | None] = dict(rows)
        updated = self.existing(2)
        if updated:
            statement, changes = self._update_statement(updated)
            statements.append(statement)
            effects.update(changes)
        deleted = self.existing(1, exclude=updated)
        if deleted:
            statements.append(f"DELETE FROM crash.kv WHERE id = {deleted[0]}")
            effects[deleted[0]] = None
        statements.append("COMMIT")
        return self.sql_op("txn", statements, effects, rows)

    def _params(self) -> Op:
        rows = self.fresh(self.rng.randint(2, 20))
        params = [[i, v, n] for i, (v, n) in rows.items()]  # type: ignore[misc]
        return self.sql_op("params", ["INSERT INTO crash.kv (id, v, note) VALUES ($1, $2, $3)"],
                           rows, rows, params)

    def _ingest(self) -> Op:
        rows = self.fresh(self.rng.randint(5, 80))
        body = "".join(json.dumps({"id": i, "v": int(v), "note": n}) + "\n"
                       for i, (v, n) in rows.items())  # type: ignore[misc]
        return Op(self.writer, "ingest", rows, tuple(rows), "POST",
                  "/v1/api/ingest/crash/kv", body.encode(), "application/x-ndjson")


@dataclass
class Workload:
    """Runs all tasks against ``node`` until it dies (callers may also cancel ``run``)."""

    node: Node
    ledger: Ledger
    seed: int
    writers: int = 4
    topics: bool = True
    outcome_unknown_statuses: frozenset[int] = frozenset()
    first_ack: trio.Event = field(default_factory=trio.Event)
    dead: trio.Event = field(default_factory=trio.Event)  # a request found the server gone
    writers_stopped: trio.Event = field(default_factory=trio.Event)
    _writers_running: int = 0

    def _classify(self, reply: Reply | None, what: str) -> bool | None:
        """True: acknowledged; None: outcome unknown (stop this task); False: rejected."""
        if reply is not None and 200 <= reply.status < 300:
            self.first_ack.set()
            return True
        if reply is None:
            self.dead.set()
            return None
        if reply.status in self.outcome_unknown_statuses:
            self.ledger.unknown.append(f"{what}: {reply.status} {reply.body[:300]!r}")
            return None
        self.ledger.unexpected.append(f"{what}: {reply.status} {reply.body[:500]!r}")
        return False

    async def writer(self, number: int) -> None:
        self._writers_running += 1
        try:
            await self._write(number)
        finally:
            self._writers_running -= 1
            if not self._writers_running:
                self.writers_stopped.set()

    async def _write(self, number: int) -> None:
        maker, model = OpMaker(number, self.seed, self.ledger), self.ledger.model(number)
        while True:
            op = maker.next_op()
            self.ledger.in_flight[number] = op
            reply = await call(self.node, op.method, op.path, op.body,
                               content_type=op.content_type)
            outcome = self._classify(reply, f"writer {number} {op.kind}")
            if outcome is None:
                return
            del self.ledger.in_flight[number]
            if outcome:
                for key, row in op.effects.items():
                    if row is None:
                        model.pop(key, None)
                    else:
                        model[key] = row
                self.ledger.inserted.update(op.inserted)

    async def consumer(self) -> None:
        rng = random.Random(f"{self.seed}/consumer")
        request = {"topic_id": TOPIC, "group_id": GROUP, "start": "Earliest"}
        while True:
            reply = await call(self.node, "POST", "/v1/api/topics/consume",
                               request | {"limit": rng.randint(1, 40)})
            if not self._classify(reply, "consume"):
                return
            messages = reply.json["messages"]
            if not messages:
                await trio.sleep(0.02)
                continue
            upto = messages[-1]["offset"]
            reply = await call(self.node, "POST", "/v1/api/topics/ack",
                               {"topic_id": TOPIC, "group_id": GROUP, "upto_offset": upto})
            if not self._classify(reply, "ack"):
                return
            self.ledger.acks += 1
            self.ledger.acked_offset = max(self.ledger.acked_offset, upto)

    async def uploader(self) -> None:
        rng = random.Random(f"{self.seed}/uploader")
        next_id = max(self.ledger.uploads, default=0) + 1
        while True:
            data = rng.randbytes(rng.randint(1, 8192))
            self.ledger.upload_in_flight = Upload(next_id, data)
            insert = f"INSERT INTO crash.docs (id, attachment) VALUES ({next_id}, FILE(\"f\"))"
            body, content_type = multipart([Part("sql", insert.encode()),
                                            file_part("f", data, f"doc{next_id}.bin")])
            reply = await call(self.node, "POST", "/v1/api/sql", body,
                               content_type=content_type)
            outcome = self._classify(reply, f"upload {next_id}")
            if outcome is None:
                return
            self.ledger.upload_in_flight = None
            if outcome:
                self.ledger.uploads[next_id] = data
            next_id += 1
            await trio.sleep(rng.uniform(0.02, 0.15))

    async def maintenance(self) -> None:
        rng = random.Random(f"{self.seed}/maintenance")
        while True:
            await trio.sleep(rng.uniform(0.1, 0.4))
            text = rng.choices(MAINTENANCE, MAINTENANCE_WEIGHTS)[0]
            reply = await call(self.node, "POST", "/v1/api/sql", {"sql": text})
            outcome = self._classify(reply, text)
            if reply is None:
                return
            # A failed CLUSTER SNAPSHOT (a disk fault) changes no data: keep going.
            self.ledger.maintenance += bool(outcome)

    async def run(self) -> None:
        """Every task runs until its first request without an answer (server dead)."""
        async with trio.open_nursery() as nursery:
            for number in range(self.writers):
                nursery.start_soon(self.writer, number)
            if self.topics:
                nursery.start_soon(self.consumer)
            nursery.start_soon(self.uploader)
            nursery.start_soon(self.maintenance)
