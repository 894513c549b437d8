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

    def __post_init__(self) -> None:
        if not 0 < self.default_query_limit_rows <= self.max_query_limit_rows:
            raise ValueError("need 0 < default_query_limit_rows <= max_query_limit_rows")
        if not 4 <= self.bcrypt_cost <= 31:
            raise ValueError("bcrypt_cost must be within 4..31")
        if not 0 <= self.node_id < 1024:
            raise ValueError("node_id must fit 10 bits (0..1023)")
        if self.event_max_bytes > self.wal.record_size_max_bytes:
            raise ValueError("event_max_bytes may not exceed the WAL's record_size_max_bytes")
