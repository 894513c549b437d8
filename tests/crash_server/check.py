"""Checks on a restarted server against a ``Ledger`` (tests/crash_server/workload.py).

Each ``check_*`` returns a list of problems (empty: fine) and, where the outcome of an
in-flight operation was unknown, resolves it in the ledger to what the server kept, so the
next crash round on the same data directory starts from an exact model again.

- rows: per writer, crash.kv's rows in its id range equal the acknowledged model, or the
  model with the in-flight operation applied *whole* (a transaction or batch is never
  partly there);
- uploads: every acknowledged FILE row is there and downloads byte for byte; the in-flight
  one is there whole (row and bytes) or not at all; no other row;
- topic: a fresh group consuming from Earliest gets gap-free offsets; the messages' keys are
  exactly the acknowledged inserts plus, all or none, each in-flight operation's inserts,
  consistently with the table; no key twice;
- group offsets: the consumer group's committed offset is at least every acknowledged ack.
"""

from __future__ import annotations

import json
from typing import Any

from engine.files import stored_name
from tests.api.files_client import ref_of, stored_files
from tests.crash_server.server import Node, call, rows
from tests.crash_server.workload import GROUP, ID_STRIDE, TOPIC, Ledger, Row

PAGE_ROWS = 1000  # the server's max_query_limit


async def _kv_rows(node: Node, low: int, high: int) -> dict[int, Row]:
    found: dict[int, Row] = {}
    last = low - 1
    while True:
        page = await rows(node, f"SELECT id, v, note FROM crash.kv WHERE id > {last} AND "
                                f"id < {high} ORDER BY id LIMIT {PAGE_ROWS}")
        found.update((int(i), (str(v), n)) for i, v, n in page)
        if len(page) < PAGE_ROWS:
            return found
        last = int(page[-1][0])


async def check_rows(node: Node, ledger: Ledger) -> tuple[list[str], set[int]]:
    """Returns (problems, writers whose in-flight operation turned out applied)."""
    problems, applied = [], set()
    writers = set(ledger.models) | set(ledger.in_flight)
    for writer in sorted(writers):
        model = ledger.model(writer)
        actual = await _kv_rows(node, writer * ID_STRIDE, (writer + 1) * ID_STRIDE)
        op = ledger.in_flight.get(writer)
        with_op = dict(model)
        if op is not None:
            for key, row in op.effects.items():
                if row is None:
                    with_op.pop(key, None)
                else:
                    with_op[key] = row
        if actual == model and (op is None or actual != with_op):
            continue
        if op is not None and actual == with_op:
            applied.add(writer)
            continue
        problems.append(_row_diff(writer, model, actual, op))
    return problems, applied


def _row_diff(writer: int, model: dict[int, Row], actual: dict[int, Row], op: Any) -> str:
    missing = sorted(set(model) - set(actual))
    extra = sorted(set(actual) - set(model))
    changed = sorted(k for k in set(model) & set(actual) if model[k] != actual[k])
    op_text = "none" if op is None else f"{op.kind} touching {sorted(op.effects)}"
    return (f"writer {writer}: rows differ from the acknowledged model (in flight: {op_text}); "
            f"missing {missing[:10]}, unexpected {extra[:10]}, changed {changed[:10]}")


def resolve_rows(ledger: Ledger, applied: set[int]) -> None:
    """Folds each in-flight operation into the model (if applied) or drops it."""
    for writer, op in list(ledger.in_flight.items()):
        if writer in applied:
            model = ledger.model(writer)
            for key, row in op.effects.items():
                if row is None:
                    model.pop(key, None)
                else:
                    model[key] = row
            ledger.inserted.update(op.inserted)
    ledger.in_flight.clear()


async def check_uploads(node: Node, ledger: Ledger) -> list[str]:
    problems = []
    found = {int(i): ref_of(cell) for i, cell in await rows(
        node, f"SELECT id, attachment FROM crash.docs ORDER BY id LIMIT {PAGE_ROWS}")}
    pending = ledger.upload_in_flight
    allowed = set(ledger.uploads) | ({pending.doc_id} if pending else set())
    if missing := sorted(set(ledger.uploads) - set(found)):
        problems.append(f"acknowledged uploads missing: {missing}")
    if extra := sorted(set(found) - allowed):
        problems.append(f"uploads never sent or acknowledged: {extra}")
    for doc_id, ref in found.items():
        expected = ledger.uploads.get(doc_id) or (pending.data if pending else None)
        name = stored_name(ref["id"], ref["name"])
        reply = await call(node, "GET", f"/v1/files/crash/docs/{ref['sub']}/{name}")
        if reply is None or reply.status != 200 or reply.body != expected:
            status = None if reply is None else reply.status
            problems.append(f"upload {doc_id}: download status {status}, bytes differ: "
                            f"{reply is None or reply.body != expected}")
    referenced = {f"{ref['sub']}/{stored_name(ref['id'], ref['name'])}" for ref in found.values()}
    stored = {str(path.relative_to(path.parents[1])) for path in stored_files(node.data_dir)}
    if orphans := sorted(stored - referenced):
        problems.append(f"files no row references (orphans): {orphans[:5]}")
    if pending is not None and pending.doc_id in found:
        ledger.uploads[pending.doc_id] = pending.data
    ledger.upload_in_flight = None
    return problems


async def consume_all(node: Node, group: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        reply = await call(node, "POST", "/v1/api/topics/consume", {
            "topic_id": TOPIC, "group_id": group, "start": "Earliest", "limit": 1000})
        assert reply is not None and reply.status == 200, (reply, node.log)
        page = reply.json
        messages += page["messages"]
        if not page["has_more"] or not page["messages"]:
            return messages


async def check_topic(node: Node, ledger: Ledger, applied: set[int], round_number: int
                      ) -> list[str]:
    """Call before ``resolve_rows`` (it reads the in-flight operations)."""
    problems = []
    messages = await consume_all(node, f"verify-{round_number}")
    offsets = [m["offset"] for m in messages]
    if offsets != list(range(len(offsets))):
        problems.append(f"topic offsets are not gap-free from 0: {_gaps(offsets)}")
    keys = [int(m["key"]) for m in messages]
    if len(set(keys)) != len(keys):
        problems.append(f"{len(keys) - len(set(keys))} topic messages repeat a key")
    present = set(keys)
    if missing := sorted(ledger.inserted - present):
        problems.append(f"{len(missing)} acknowledged inserts have no topic message: "
                        f"{missing[:10]}")
    maybe: set[int] = set()
    for writer, op in ledger.in_flight.items():
        mine = set(op.inserted)
        maybe |= mine
        got = mine & present
        if got and got != mine:
            problems.append(f"writer {writer} {op.kind}: only {len(got)} of {len(mine)} "
                            "inserts reached the topic")
        if mine and bool(got) != (writer in applied):
            problems.append(f"writer {writer} {op.kind}: in the topic {bool(got)}, "
                            f"in the table {writer in applied}")
    if extra := sorted(present - ledger.inserted - maybe):
        problems.append(f"topic messages for inserts never sent: {extra[:10]}")
    problems += await _check_group(node, ledger, len(messages))
    return problems


def _gaps(offsets: list[int]) -> str:
    pairs = zip([-1, *offsets], offsets, strict=False)
    return str([(a, b) for a, b in pairs if b != a + 1][:5])


async def _check_group(node: Node, ledger: Ledger, message_count: int) -> list[str]:
    found = await rows(node, "SELECT last_acked_offset FROM system.topic_offsets WHERE "
                             f"topic_id = '{TOPIC}' AND group_id = '{GROUP}'")
    committed = max((int(r[0]) for r in found), default=-1)
    problems = []
    if committed < ledger.acked_offset:
        problems.append(f"group {GROUP!r} committed offset {committed} < acknowledged ack "
                        f"{ledger.acked_offset}")
    if committed >= message_count:
        problems.append(f"group {GROUP!r} committed offset {committed} beyond the topic's "
                        f"{message_count} messages")
    ledger.acked_offset = max(ledger.acked_offset, committed)
    return problems


async def health(node: Node) -> tuple[int, dict[str, Any]]:
    reply = await call(node, "GET", "/health", auth=False)
    assert reply is not None, node.log
    return reply.status, json.loads(reply.body)
