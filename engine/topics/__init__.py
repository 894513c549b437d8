"""Topics: change streams from tables, as views over the WAL (PROTOCOL §3.13, §4).

Design
------
- **Definitions** (topics, routes, consumer-group offsets) are catalog events
  (``Kind.TOPIC_*``) applied by ``state.TopicCatalog`` inside the catalog, so replay and the
  catalog checkpoint rebuild them. Acks are ``TOPIC_OFFSET_ACKED`` events, appended under
  the engine's write lock like every catalog event; applying keeps the larger offset.
- **The index** (``index.py``): per topic partition, offset n → (WAL LSN, change index, row
  index, commit time) of the source row change. No copy of row data. Entries are appended in
  commit order by ``Engine.commit_rows`` (one commit listener, called in log order as each commit becomes visible) and, at start,
  by replay for the log tail the persisted index does not cover.
- **Routes** (``index.py``): a committed change of table T by op O goes to every route on
  (T, O); the route's WHERE is compiled once per table version into a vectorized Arrow
  predicate (``where.py``) and evaluated over the whole batch. Partition of a row =
  ``zlib.crc32(key text, UTF-8) % partitions`` where the key text is the primary-key cell
  in its JSON encoding (a string as is, other values as compact JSON); a table without a
  primary key hashes the row's ``full`` payload JSON instead. CRC-32 (zlib) is stable across
  processes, platforms and Python versions.
- **Payloads** (``render.py``): UTF-8 JSON of the row (PROTOCOL §3.5 cell encoding).
  ``full``: every column + ``_seq``, ``_deleted`` + ``"_table": "ns.table"``; ``key``: the
  primary-key column(s) only (``_seq`` for a table without one), no ``_table``; ``diff``: for
  UPDATE the key, the columns the statement assigned, the system columns and ``_table``;
  for INSERT/DELETE it equals ``full``. Rendering uses the table's *current* schema (renamed
  columns appear under their new name; dropped ones are left out).
- **Reading** (``reader.py``): consume maps offsets to runs (consecutive offsets from one
  change, found by bisecting the index) and reads those records from the WAL (positions
  learnt once per segment, then single-frame reads), with an LRU of decoded records; the
  commit path puts each fresh event in the LRU, so the hot tail is served without touching
  disk. Messages are rendered in chunks of ``RENDER_CHUNK_ROWS`` rows of a change — one
  ``%``-template format per row, and for HTTP the base64 text too — and the chunks are kept
  with their record in the LRU, so every consume (and every group) reading them slices
  ready lists. A consume returns runs (``ConsumeResult.runs``; ``.messages`` gives tuples),
  which the HTTP reply formats with what a run shares written once.
- **Acks** share group commits: queued acks are written by whichever ack holds the write
  lock, all in one WAL batch (``Engine.commit_catalog_events``).
- **Groups and claims** (``service.py``): in-memory claims per (topic, group, partition)
  with the visibility timeout; repeated consumes without ack get disjoint ranges; expired
  claims rewind the cursor (redelivery). Claims are lost on restart; acks are durable.
- **Long-poll**: a consume with nothing to deliver waits on the partition's ``trio.Event``,
  set by the commit path when it appends to that partition (no polling), or until a claim
  expires, up to ``timeout_seconds``.
- **Persistence** (``persist.py``): each partition's index is written to
  ``topics/<topic_id>/<partition>.idx`` (temp → fsync → rename through the engine's FileIO)
  with the LSN it covers; a missing or damaged file is rebuilt by replaying the WAL.
- **Retention** (``retention.py``): WAL segments are released only up to the oldest
  message still inside its topic's retention — by time (7 days by default) and by bytes
  (the newest WAL segments fitting 1 GiB by default; both set at CREATE TOPIC from the
  config); messages before the released point are trimmed by a ``TOPIC_TRIMMED`` event, so
  a rebuild (from a file that is behind, or from nothing) numbers offsets exactly as before.

This package's ``__init__`` imports nothing (the catalog imports ``state`` at start-up).
"""
