"""Topic definitions and consumer-group offsets: the part of the catalog that topic events
build (``Kind.TOPIC_*``), checkpointed with the catalog.

``TopicCatalog.apply`` is deterministic (times and ids travel in the events) and is called by
``Catalog.apply`` with the event's LSN, which the topic records keep:

- ``TopicDef.created_lsn`` and ``Route.added_lsn``: a commit at LSN L publishes to a topic
  only if L is after both — so an index rebuilt by replaying old log records (with the
  *current* catalog loaded from a checkpoint) indexes exactly what publishing live did.
- ``PartitionBase``: messages of commits after ``base_lsn`` are numbered from
  ``base_offset``. CLEAR TOPIC and retention trims move it forward (offsets never restart:
  committed group offsets stay meaningful), so a rebuild numbers offsets as before.

Offsets (``TOPIC_OFFSET_ACKED``) are monotonic: applying keeps the larger value, so applying
an ack twice or late is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..events import Kind

# PROTOCOL §3.13: topics are created with 7 days / 1 GiB of retention.
RETENTION_SECONDS_DEFAULT = 7 * 24 * 3600
RETENTION_MAX_BYTES_DEFAULT = 1024 * 1024 * 1024

TOPIC_KINDS = frozenset({Kind.TOPIC_CREATED, Kind.TOPIC_SOURCE_ADDED, Kind.TOPIC_DROPPED,
                         Kind.TOPIC_CLEARED, Kind.TOPIC_OFFSET_ACKED, Kind.TOPIC_TRIMMED})


@dataclass(frozen=True, slots=True)
class Route:
    """``ALTER TOPIC … ADD SOURCE``: rows of ``namespace.table`` changed by ``op`` (insert |
    update | delete) that satisfy ``where`` (SQL text, None = all) become messages."""

    namespace: str
    table: str
    op: str
    where: str | None
    payload: str  # key | full | diff
    added_lsn: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"table": f"{self.namespace}.{self.table}", "op": self.op, "where": self.where,
                "payload": self.payload}


@dataclass(frozen=True, slots=True)
class PartitionBase:
    base_lsn: int  # commits at or below this LSN are not (or no longer) messages
    base_offset: int  # the offset of the first message after base_lsn


@dataclass(frozen=True, slots=True)
class TopicDef:
    topic_id: str  # "namespace.name"
    namespace: str
    name: str
    partitions: int
    created_at_ms: int
    updated_at_ms: int
    created_lsn: int
    routes: tuple[Route, ...] = ()
    bases: tuple[PartitionBase, ...] = ()
    retention_seconds: int = RETENTION_SECONDS_DEFAULT
    retention_max_bytes: int = RETENTION_MAX_BYTES_DEFAULT

    def to_json(self) -> dict[str, Any]:
        return {"topic_id": self.topic_id, "namespace": self.namespace, "name": self.name,
                "partitions": self.partitions, "created_at_ms": self.created_at_ms,
                "updated_at_ms": self.updated_at_ms, "created_lsn": self.created_lsn,
                "routes": [{**r.to_json(), "namespace": r.namespace, "table": r.table,
                            "added_lsn": r.added_lsn} for r in self.routes],
                "bases": [[b.base_lsn, b.base_offset] for b in self.bases],
                "retention_seconds": self.retention_seconds,
                "retention_max_bytes": self.retention_max_bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicDef:
        routes = tuple(Route(r["namespace"], r["table"], r["op"], r["where"], r["payload"],
                             int(r["added_lsn"])) for r in data["routes"])
        bases = tuple(PartitionBase(int(lsn), int(offset)) for lsn, offset in data["bases"])
        return cls(data["topic_id"], data["namespace"], data["name"], int(data["partitions"]),
                   int(data["created_at_ms"]), int(data["updated_at_ms"]),
                   int(data["created_lsn"]), routes, bases, int(data["retention_seconds"]),
                   int(data["retention_max_bytes"]))


@dataclass(frozen=True, slots=True)
class GroupOffset:
    offset: int  # last acknowledged offset (inclusive)
    updated_at_ms: int


OffsetKey = tuple[str, str, int]  # (topic_id, group_id, partition_id)


@dataclass(slots=True)
class TopicCatalog:
    topics: dict[str, TopicDef] = field(default_factory=dict)
    offsets: dict[OffsetKey, GroupOffset] = field(default_factory=dict)
    version: int = 0  # bumped by every change except acks (routing caches key on it)

    def topic(self, topic_id: str) -> TopicDef | None:
        return self.topics.get(topic_id.lower())

    def committed(self, topic_id: str, group_id: str, partition: int) -> int | None:
        entry = self.offsets.get((topic_id, group_id, partition))
        return None if entry is None else entry.offset

    def apply(self, kind: Kind, body: dict[str, Any], lsn: int) -> None:
        _APPLY[kind](self, body, lsn)
        if kind != Kind.TOPIC_OFFSET_ACKED:
            self.version += 1

    def _created(self, body: dict[str, Any], lsn: int) -> None:
        partitions = int(body["partitions"])
        self.topics[body["topic_id"]] = TopicDef(
            body["topic_id"], body["namespace"], body["name"], partitions,
            int(body["created_at_ms"]), int(body["created_at_ms"]), lsn,
            bases=tuple(PartitionBase(lsn, 0) for _ in range(partitions)),
            # Events written before retention was configurable carry no values: defaults.
            retention_seconds=int(body.get("retention_seconds", RETENTION_SECONDS_DEFAULT)),
            retention_max_bytes=int(body.get("retention_max_bytes",
                                             RETENTION_MAX_BYTES_DEFAULT)))

    def _source_added(self, body: dict[str, Any], lsn: int) -> None:
        topic = self.topics[body["topic_id"]]
        route = Route(body["namespace"], body["table"], body["op"], body.get("where"),
                      body["payload"], lsn)
        self.topics[topic.topic_id] = replace(topic, routes=(*topic.routes, route),
                                              updated_at_ms=int(body["updated_at_ms"]))

    def _dropped(self, body: dict[str, Any], lsn: int) -> None:
        topic_id = body["topic_id"]
        self.topics.pop(topic_id, None)
        for key in [k for k in self.offsets if k[0] == topic_id]:
            del self.offsets[key]

    def _rebased(self, body: dict[str, Any], lsn: int) -> None:
        """CLEAR and TRIM: ``offsets[p]`` is partition p's new low offset, for commits after
        ``upto_lsn`` (CLEAR: this event's own LSN)."""
        topic = self.topics[body["topic_id"]]
        upto = int(body.get("upto_lsn", lsn))
        bases = list(topic.bases)
        for partition, offset in enumerate(body["offsets"]):
            if offset is not None and int(offset) >= bases[partition].base_offset:
                bases[partition] = PartitionBase(max(upto, bases[partition].base_lsn),
                                                 int(offset))
        self.topics[topic.topic_id] = replace(topic, bases=tuple(bases),
                                              updated_at_ms=int(body["updated_at_ms"]))

    def _acked(self, body: dict[str, Any], lsn: int) -> None:
        key = (body["topic_id"], body["group_id"], int(body["partition_id"]))
        old = self.offsets.get(key)
        offset = int(body["offset"])
        if old is None or offset > old.offset:
            self.offsets[key] = GroupOffset(offset, int(body["updated_at_ms"]))

    def to_json(self) -> dict[str, Any]:
        return {"topics": [t.to_json() for t in self.topics.values()],
                "offsets": [[*key, value.offset, value.updated_at_ms]
                            for key, value in self.offsets.items()]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TopicCatalog:
        state = cls()
        for item in (data or {}).get("topics", ()):
            topic = TopicDef.from_json(item)
            state.topics[topic.topic_id] = topic
        for topic_id, group_id, partition, offset, updated in (data or {}).get("offsets", ()):
            state.offsets[(topic_id, group_id, int(partition))] = GroupOffset(int(offset),
                                                                              int(updated))
        return state


_APPLY = {
    Kind.TOPIC_CREATED: TopicCatalog._created,
    Kind.TOPIC_SOURCE_ADDED: TopicCatalog._source_added,
    Kind.TOPIC_DROPPED: TopicCatalog._dropped,
    Kind.TOPIC_CLEARED: TopicCatalog._rebased,
    Kind.TOPIC_TRIMMED: TopicCatalog._rebased,
    Kind.TOPIC_OFFSET_ACKED: TopicCatalog._acked,
}
assert set(_APPLY) == TOPIC_KINDS
