"""Server configuration: embedded defaults, server.toml, KALAMDB_* overrides, JWT secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.config import ConfigError, load_config, resolve_jwt_secret


def test_config__no_file__embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 2900)
    assert config.storage.data_path == "./data"
    assert config.engine_config().default_query_limit_rows == 50


def test_config__file_then_environment__env_wins(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('[server]\nhost = "0.0.0.0"\nport = 8080\n'
                    '[authentication]\njwt_expiry_hours = 2\n'
                    '[security.cors]\nallowed_origins = ["https://a.example"]\n'
                    '[unknown]\nwhatever = 1\n')
    config = load_config(path, environ={"KALAMDB_SERVER_PORT": "9999",
                                        "KALAMDB_ALLOW_REMOTE_SETUP": "true",
                                        "KALAMDB_SECURITY_CORS_ALLOWED_ORIGINS": "x,y"})
    assert config.server.host == "0.0.0.0" and config.server.port == 9999
    assert config.auth.jwt_expiry_hours == 2 and config.auth.allow_remote_setup is True
    assert config.security.cors.allowed_origins == ["x", "y"]


def test_config__wrong_types__error_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('[server]\nport = "not a number"\n')
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="allow_remote_setup"):
        load_config(None, environ={"KALAMDB_ALLOW_REMOTE_SETUP": "maybe"})


def test_jwt_secret__generated_once_mode_0600_and_reused(tmp_path: Path) -> None:
    config = load_config(None, environ={"KALAMDB_DATA_DIR": str(tmp_path / "data")})
    first = resolve_jwt_secret(config)
    path = tmp_path / "data" / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_jwt_secret(config) == first and len(first) >= 32


def test_jwt_secret__weak_on_public_host__refused_with_how_to_fix(tmp_path: Path) -> None:
    environ = {"KALAMDB_SERVER_HOST": "0.0.0.0", "KALAMDB_JWT_SECRET": "CHANGE_ME_IN_PRODUCTION",
               "KALAMDB_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="KALAMDB_JWT_SECRET"):
        resolve_jwt_secret(load_config(None, environ=environ))
    environ["KALAMDB_JWT_SECRET"] = "short"
    with pytest.raises(ConfigError, match="at least 32"):
        resolve_jwt_secret(load_config(None, environ=environ))
    environ["KALAMDB_SERVER_HOST"] = "127.0.0.1"
    assert resolve_jwt_secret(load_config(None, environ=environ)) == "short"


def test_config__wal_segment_size__sets_segment_and_caps_records_at_half(tmp_path: Path
                                                                       ) -> None:
    # storage.wal_segment_size_bytes (issue 9's crash tests use 128 KiB): one record, so one
    # write statement's event, may fill at most half a segment; the default keeps 16 MiB.
    path = tmp_path / "server.toml"
    path.write_text("")
    default = load_config(path, environ={}).engine_config()
    assert default.wal.segment_size_max_bytes == 64 * 1024 * 1024
    assert default.wal.record_size_max_bytes == default.event_max_bytes == 16 * 1024 * 1024
    path.write_text("[storage]\nwal_segment_size_bytes = 131072\n")
    small = load_config(path, environ={}).engine_config()
    assert small.wal.segment_size_max_bytes == 131072
    assert small.wal.record_size_max_bytes == small.event_max_bytes == 65536
