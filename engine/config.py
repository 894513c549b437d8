"""Every engine limit and interval in one place, units last, each with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from wal import WalConfig

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class EngineConfig:
    wal: WalConfig = field(default_factory=WalConfig)
    # PROTOCOL §3.1: a SELECT without LIMIT returns at most this many rows …
    default_query_limit_rows: int = 50
    # … and no SELECT returns more than this, whatever its LIMIT says.
    max_query_limit_rows: int = 1000
    # PROTOCOL §1.3 step 4: longer SQL text is refused before parsing.
    sql_text_max_bytes: int = 1 * MIB
    # PROTOCOL §1.3: `params` limits (count and per-value size).
    params_max: int = 50
    param_value_max_bytes: int = 512 * 1024
    # Batched params (an array of arrays for one INSERT): rows per request; all of them
    # become one WAL event, so event_max_bytes bounds them too.
    param_rows_max: int = 10_000
    # bcrypt cost for CREATE/ALTER USER (PROTOCOL §2.3: default 12; tests lower it).
    bcrypt_cost: int = 12
    # PROTOCOL §2.3: CREATE/ALTER USER apply the complexity policy only when enabled.
    enforce_password_complexity: bool = False
    # Root's password at first start (None = empty hash: setup required).
    root_password: str | None = None
    # Snowflake node id (10 bits) embedded in _seq and SNOWFLAKE_ID() values.
    node_id: int = 0
    # A table partition's hot (in-memory, unflushed) rows beyond which a flush is forced,
    # whatever the table's FLUSH_POLICY says: bounds memory and replay time.
    hot_rows_per_partition_max: int = 200_000
    # Server-wide default FLUSH_POLICY (PROTOCOL §8: 10000 rows / 300 s).
    flush_rows_default: int = 10_000
    flush_interval_seconds_default: int = 300
    # How often background jobs look for work (flush policy, TTL eviction, retention).
    jobs_interval_seconds: float = 1.0
    # Decoded Arrow segments kept in memory for queries.
    segment_cache_max_bytes: int = 512 * MIB
    # Hot-chunk merge: more small (< 4096-row) chunks than this in a partition are merged
    # into one, so scans, DataFusion and begin() never see thousands of tiny batches.
    hot_chunks_per_partition_max: int = 32
    # Largest single WAL event a write statement may produce (must fit one WAL record).
    event_max_bytes: int = 16 * MIB
    # Topics (engine/topics/). PROTOCOL §4.2: unacked claims return after this long.
    topic_visibility_timeout_seconds: float = 60.0
    # Messages one consume call may return (bounds the reply and the records it reads).
    topic_consume_limit_max: int = 10_000
    # Longest long-poll a consume may ask for (`timeout_seconds` is capped to it).
    topic_long_poll_max_seconds: float = 300.0
    # Decoded WAL records kept for consumers (the hot tail is served from memory).
    topic_record_cache_max_bytes: int = 64 * MIB
    # How often each topic partition's index is written to disk (bounds the WAL tail a
    # restart replays for topics, and the WAL segments topics hold).
    topic_index_persist_interval_seconds: float = 30.0
    # PROTOCOL §3.13: the retention a topic gets at CREATE TOPIC (recorded in its event, so
    # a later change of these applies to new topics only): messages older than this …
    topic_retention_seconds_default: int = 7 * 24 * 3600
    # … or whose WAL segments, counted from the newest back, exceed this many bytes are
    # trimmed and their segments released (engine/topics/retention.py).
    topic_retention_max_bytes_default: int = 1024 * MIB
    # FILE uploads (engine/files.py). PROTOCOL §5.1 step 5: files per fNNNN folder before
    # the next folder starts (keeps directories small enough to list).
    files_per_folder_max: int = 5000
    # Where the API stages upload parts (None: <data>/tmp, the reference's ./data/tmp); the
    # same filesystem as <data>/files keeps the final move a rename.
    file_staging_dir: str | None = None
    # How often unreferenced files are looked for and deleted (a full scan of the FILE
    # columns of every held row version, under the write lock: not every jobs round).
    file_release_interval_seconds: float = 60.0
    # Live queries (engine/live, PROTOCOL §6.5). Per user across connections (the API sets
    # it from rate_limit.max_subscriptions_per_user) …
    live_subscriptions_per_user_max: int = 10
    # … and per connection (a fixed constant in the reference).
    live_subscriptions_per_connection_max: int = 100
    # Changes buffered per subscription while its initial load is paged out (reference: 1024).
    live_load_buffer_changes_max: int = 1024
    # Rows per initial page a client may ask for (options.batch_size; default 1000): bounds
    # one message's size.
    live_batch_size_max_rows: int = 10_000

    def __post_init__(self) -> None:
        if not 0 < self.default_query_limit_rows <= self.max_query_limit_rows:
            raise ValueError("need 0 < default_query_limit_rows <= max_query_limit_rows")
        if not 4 <= self.bcrypt_cost <= 31:
            raise ValueError("bcrypt_cost must be within 4..31")
        if not 0 <= self.node_id < 1024:
            raise ValueError("node_id must fit 10 bits (0..1023)")
        if self.topic_visibility_timeout_seconds <= 0:
            raise ValueError("topic_visibility_timeout_seconds must be positive")
        if self.topic_retention_seconds_default < 1 or self.topic_retention_max_bytes_default < 1:
            raise ValueError("topic retention (seconds and bytes) must be at least 1")
        if self.event_max_bytes > self.wal.record_size_max_bytes:
            raise ValueError("event_max_bytes may not exceed the WAL's record_size_max_bytes")
