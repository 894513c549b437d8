"""Server configuration: embedded defaults, an optional ``server.toml`` with the reference's
section/key names (PROTOCOL §7.2), then ``KALAMDB_*`` environment overrides — in that order.

Sluice runs with no file at all (a decisions-table choice): 127.0.0.1:2900, data in ``./data``
and a JWT secret generated once and kept in ``<data>/jwt_secret`` (mode 0600).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import EngineConfig
from wal import FsyncPolicy, WalConfig

JWT_SECRET_MIN_CHARS = 32  # PROTOCOL §2.4: shorter secrets refused on non-loopback hosts
WEAK_SECRETS = frozenset({
    "CHANGE_ME_IN_PRODUCTION", "changeme", "secret", "jwt_secret", "kalamdb", "password",
    "your-secret-key", "your-256-bit-secret", "default", "test", "development",
})
JWT_SECRET_FILE = "jwt_secret"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says how to fix it."""


@dataclass(slots=True)
class ServerSection:
    host: str = "127.0.0.1"
    port: int = 2900


@dataclass(slots=True)
class StorageSection:
    data_path: str = "./data"
    fsync: str = "always"  # the WAL fsync policy: always | interval:<ms> | none
    # WAL segment size (wal.WalConfig.segment_size_max_bytes, 64 MiB). One WAL record (so one
    # write statement's event) may use at most half a segment, capped at the WAL's 16 MiB.
    # Crash tests set it small so a short run rolls segments; production has no reason to.
    wal_segment_size_bytes: int = 64 * 1024 * 1024


@dataclass(slots=True)
class AuthSection:
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_expiry_hours: int = 24
    cookie_secure: bool = True
    allow_remote_setup: bool = False
    root_password: str | None = field(default=None, repr=False)
    bcrypt_cost: int = 12
    enforce_password_complexity: bool = False


@dataclass(slots=True)
class RateLimitSection:
    # Per-user token bucket on POST /v1/api/sql (PROTOCOL §1.0): burst and refill both this
    # many queries per second; 0 turns the limit off (a Sluice choice: a zero rate would
    # refuse every query, which nobody wants).
    max_queries_per_sec: int = 100
    max_messages_per_sec: int = 50  # client text frames per WebSocket connection (§6.6)
    max_subscriptions_per_user: int = 10  # live queries per user, all connections (§6.5)
    max_auth_requests_per_ip_per_sec: int = 20
    max_requests_per_ip_per_sec: int = 200
    request_body_limit_bytes: int = 10 * 1024 * 1024
    # Bulk ingestion bodies (POST /v1/api/ingest/…, a Sluice extension): 32 MiB holds a
    # 10,000-row NDJSON body of rows up to ~3 KiB; a bigger request could not become one WAL
    # event anyway (the engine's event_max_bytes, 16 MiB of Arrow after decoding).
    ingest_body_limit_bytes: int = 32 * 1024 * 1024
    ban_duration_seconds: int = 300
    enable_connection_protection: bool = True


@dataclass(slots=True)
class CorsSection:
    allowed_origins: list[str] = field(default_factory=list)
    allowed_methods: list[str] = field(default_factory=lambda: [
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    allowed_headers: list[str] = field(default_factory=lambda: [
        "Authorization", "Content-Type", "Accept", "Origin", "X-Requested-With"])
    expose_headers: list[str] = field(default_factory=list)
    # PROTOCOL §1.0: false when [security.cors] is absent, true when the section is present
    # but omits the key (the reference's two defaults); _apply_file implements the second.
    allow_credentials: bool = False
    max_age: int = 3600  # seconds a browser may cache a preflight answer


@dataclass(slots=True)
class SecuritySection:
    trusted_proxy_ranges: list[str] = field(default_factory=list)
    cors: CorsSection = field(default_factory=CorsSection)
    # PROTOCOL §6.1: a WebSocket upgrade without Origin is refused only when this is set.
    strict_ws_origin_check: bool = False
    # PROTOCOL §6.6: a larger client text frame gets MESSAGE_TOO_LARGE (socket stays open).
    max_ws_message_size: int = 1024 * 1024


@dataclass(slots=True)
class WebsocketSection:
    """PROTOCOL §6.6 timeouts (seconds), plus one Sluice limit."""

    auth_timeout_secs: int = 3  # no authenticate within this → auth_error, close 1008
    client_timeout_secs: int = 10  # silence longer than this → close 1000
    heartbeat_interval_secs: int = 5  # how often the timeouts are checked
    # Live changes queued per connection for its writer (the reference uses 128); a
    # subscription whose change does not fit is dropped with an error, because a commit
    # never waits for a socket. 1024 absorbs a burst of one change for each of a
    # connection's 100 subscriptions ten times over.
    notification_queue_max_messages: int = 1024


@dataclass(slots=True)
class LimitsSection:
    default_query_limit: int = 50
    max_query_limit: int = 1000


@dataclass(slots=True)
class ExecutionSection:
    max_parameters: int = 50
    max_parameter_size_bytes: int = 512 * 1024


@dataclass(slots=True)
class TopicsSection:
    visibility_timeout_secs: int = 60
    # Sluice: the retention CREATE TOPIC gives a new topic (PROTOCOL §3.13 defaults;
    # enforced by engine/topics/retention.py).
    retention_seconds: int = 7 * 24 * 3600
    retention_bytes: int = 1024 * 1024 * 1024


@dataclass(slots=True)
class FilesSection:
    """PROTOCOL §5.3/§7.2 ``[files]``: FILE uploads (api/upload.py, engine/files.py)."""

    max_size_bytes: int = 25 * 1024 * 1024  # per file part; 400 FILE_TOO_LARGE beyond
    max_files_per_request: int = 20  # file parts per request; 400 TOO_MANY_FILES beyond
    max_files_per_folder: int = 5000  # files per fNNNN folder before the next one starts
    allowed_mime_types: list[str] = field(default_factory=list)  # [] = any; "type/*" ok
    # Where parts are staged while they arrive; "" = <storage.data_path>/tmp (the
    # reference's ./data/tmp). Keep it on the data directory's filesystem (moves are renames).
    staging_path: str = ""
    # Sluice: how often files no row version references any more are deleted.
    release_interval_seconds: int = 60


@dataclass(slots=True)
class ServerConfig:
    server: ServerSection = field(default_factory=ServerSection)
    storage: StorageSection = field(default_factory=StorageSection)
    auth: AuthSection = field(default_factory=AuthSection)
    rate_limit: RateLimitSection = field(default_factory=RateLimitSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    execution: ExecutionSection = field(default_factory=ExecutionSection)
    topics: TopicsSection = field(default_factory=TopicsSection)
    websocket: WebsocketSection = field(default_factory=WebsocketSection)
    files: FilesSection = field(default_factory=FilesSection)

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_path)

    def engine_config(self) -> EngineConfig:
        segment = self.storage.wal_segment_size_bytes
        wal = WalConfig(fsync=FsyncPolicy.parse(self.storage.fsync),
                        segment_size_max_bytes=segment,
                        record_size_max_bytes=min(WalConfig().record_size_max_bytes, segment // 2))
        return EngineConfig(
            wal=wal, event_max_bytes=wal.record_size_max_bytes,
            default_query_limit_rows=self.limits.default_query_limit,
            max_query_limit_rows=self.limits.max_query_limit,
            params_max=self.execution.max_parameters,
            param_value_max_bytes=self.execution.max_parameter_size_bytes,
            bcrypt_cost=self.auth.bcrypt_cost,
            enforce_password_complexity=self.auth.enforce_password_complexity,
            root_password=self.auth.root_password,
            topic_visibility_timeout_seconds=self.topics.visibility_timeout_secs,
            topic_retention_seconds_default=self.topics.retention_seconds,
            topic_retention_max_bytes_default=self.topics.retention_bytes,
            live_subscriptions_per_user_max=self.rate_limit.max_subscriptions_per_user,
            files_per_folder_max=self.files.max_files_per_folder,
            file_staging_dir=self.files.staging_path or None,
            file_release_interval_seconds=self.files.release_interval_seconds,
        )


# Environment variable -> (section, key). Applied after the file.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "KALAMDB_SERVER_HOST": ("server", "host"),
    "KALAMDB_SERVER_PORT": ("server", "port"),
    "KALAMDB_DATA_DIR": ("storage", "data_path"),
    "KALAMDB_ROOT_PASSWORD": ("auth", "root_password"),
    "KALAMDB_JWT_SECRET": ("auth", "jwt_secret"),
    "KALAMDB_JWT_EXPIRY_HOURS": ("auth", "jwt_expiry_hours"),
    "KALAMDB_COOKIE_SECURE": ("auth", "cookie_secure"),
    "KALAMDB_ALLOW_REMOTE_SETUP": ("auth", "allow_remote_setup"),
    "KALAMDB_RATE_LIMIT_AUTH_REQUESTS_PER_IP_PER_SEC": (
        "rate_limit", "max_auth_requests_per_ip_per_sec"),
    "KALAMDB_TOPIC_VISIBILITY_TIMEOUT_SECS": ("topics", "visibility_timeout_secs"),
    "KALAMDB_VISIBILITY_TIMEOUT_SECS": ("topics", "visibility_timeout_secs"),
    "KALAMDB_SECURITY_CORS_ALLOWED_ORIGINS": ("security.cors", "allowed_origins"),
    "KALAMDB_SECURITY_TRUSTED_PROXY_RANGES": ("security", "trusted_proxy_ranges"),
    "KALAMDB_TRUSTED_PROXY_RANGES": ("security", "trusted_proxy_ranges"),
}
_SECTION_ALIASES = {"authentication": "auth"}


def load_config(path: Path | None = None, environ: dict[str, str] | None = None
                ) -> ServerConfig:
    """Defaults ← ``path`` (or ``./server.toml`` if present) ← environment. Raises
    ``ConfigError`` naming the bad key. A missing file is fine (the embedded default)."""
    config = ServerConfig()
    if path is None and Path("server.toml").is_file():
        path = Path("server.toml")
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        _apply_file(config, data, str(path))
    for name, (section, key) in ENV_OVERRIDES.items():
        value = (environ if environ is not None else os.environ).get(name)
        if value is not None:
            _set(config, section, key, value, origin=name)
    return config


def _apply_file(config: ServerConfig, data: dict[str, Any], origin: str) -> None:
    for section, values in data.items():
        section = _SECTION_ALIASES.get(section, section)
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        for key, value in values.items():
            if isinstance(value, dict):  # e.g. [security.cors]
                if f"{section}.{key}" == "security.cors" and "allow_credentials" not in value:
                    config.security.cors.allow_credentials = True  # the serde default
                for sub_key, sub_value in value.items():
                    _set(config, f"{section}.{key}", sub_key, sub_value, origin=origin)
            else:
                _set(config, section, key, value, origin=origin)


def _section(config: ServerConfig, dotted: str) -> Any:
    target: Any = config
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(target) or not hasattr(target, part):
            return None
        target = getattr(target, part)
    return target if dataclasses.is_dataclass(target) else None


def _set(config: ServerConfig, section: str, key: str, value: Any, *, origin: str) -> None:
    """Sets a known key, converting strings from the environment; unknown keys are ignored
    (the reference has many sections Sluice does not use yet) but wrong types are errors."""
    target = _section(config, section)
    if target is None or key not in {f.name for f in dataclasses.fields(target)}:
        return
    current = getattr(target, key)
    try:
        setattr(target, key, _convert(value, current, key))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {section}.{key}: {exc}") from exc


def _convert(value: Any, current: Any, key: str) -> Any:
    if isinstance(current, bool) or key in ("cookie_secure", "allow_remote_setup"):
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, not {value!r}")
    if isinstance(current, int):
        if isinstance(value, bool):
            raise TypeError("expected an integer")
        return int(value)
    if isinstance(current, list):
        return value if isinstance(value, list) else [v.strip() for v in str(value).split(",")
                                                      if v.strip()]
    return None if value is None else str(value)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_jwt_secret(config: ServerConfig) -> str:
    """The JWT secret: configured, else read from (or generated once into) the data dir.

    Raises ``ConfigError`` when bound to a non-loopback host with a short or known-weak
    secret, saying how to fix it.
    """
    secret = config.auth.jwt_secret
    if not secret:
        secret = _stored_secret(config.data_dir)
    if not is_loopback(config.server.host) and (
            len(secret) < JWT_SECRET_MIN_CHARS or secret in WEAK_SECRETS):
        raise ConfigError(
            f"refusing to listen on {config.server.host} with a weak JWT secret: set "
            f"KALAMDB_JWT_SECRET (or auth.jwt_secret in server.toml) to at least "
            f"{JWT_SECRET_MIN_CHARS} random characters, e.g. "
            f"`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    return secret


def _stored_secret(data_dir: Path) -> str:
    path = data_dir / JWT_SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    return secret
