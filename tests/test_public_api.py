"""Pins the exported surface of each package (STYLE rule 2): growing it is a decision."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "wal": {
        "FileIO", "FsyncPolicy", "Frame", "Lsn", "PendingAppend", "RecordTooLargeError",
        "RecoveryReport", "Wal",
        "WalClosedError", "WalConfig", "WalCorruptionError", "WalError", "WalIOError", "WalLockedError",
        "WalPoisonedError", "WalStatistics", "iter_frames", "open_wal", "read_frame_at",
    },
    "engine": {
        "AlreadyExists", "BatchParseError", "Clock", "EmptySql", "Engine", "EngineConfig",
        "EngineError", "IngestResult", "InvalidInput", "InvalidOperation", "InvalidParameter",
        "InvalidSql", "InvalidValue", "ManualClock", "NotFound", "ParamsWithBatch", "PermissionDenied",
        "Session", "StorageUnavailable", "SystemClock", "TableNotFound", "TransactionError",
        "ingest_body", "ingest_rows", "open_engine",
    },
    "api": set(),
}


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_public_api__exact_exported_names(package: str) -> None:
    module = importlib.import_module(package)
    public = {name for name in vars(module) if not name.startswith("_")}
    submodules = {name for name, value in vars(module).items()
                  if getattr(value, "__name__", "").startswith(f"{package}.")
                  and type(value).__name__ == "module"}
    assert public - submodules == EXPORTS[package]
