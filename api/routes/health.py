"""Health endpoints (PROTOCOL §1.6): ``GET /health``, ``GET /v1/api/healthcheck`` and
``GET /v1/api/cluster/health``, all localhost-only by the §1.0 rules (the client IP is the
peer, or the forwarded address when the peer is loopback or a trusted proxy; only exactly
127.0.0.1, ::1 or localhost count as local).

Sluice choice: when the engine is unhealthy (its WAL is poisoned after a failed write or
fsync, so no write can be acknowledged) both endpoints answer **503** with
``"status": "unhealthy"`` (the cluster document also marks the node ``offline``), so load
balancers and probes take the process out of rotation; the reference has no such state.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

from api.http import Receive, Scope, Send, client_ip, is_localhost, send_json

if TYPE_CHECKING:
    from api.app import SluiceApp

API_VERSION = "v1"
# No build pipeline stamps a date yet; a fixed string keeps the body deterministic.
BUILD_DATE = "unknown"
HEALTH_FORBIDDEN = {"error": "Access denied. Health endpoint is localhost-only."}
CLUSTER_FORBIDDEN = {"error": "Access denied. Cluster health is localhost-only."}


def _is_local(app: SluiceApp, scope: Scope) -> bool:
    return is_localhost(client_ip(scope, app.trusted_proxies))


async def health(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    if not _is_local(app, scope):
        await send_json(send, 403, HEALTH_FORBIDDEN)
        return
    healthy = app.engine.healthy
    await send_json(send, 200 if healthy else 503, {
        "status": "healthy" if healthy else "unhealthy", "version": app.version,
        "api_version": API_VERSION, "build_date": BUILD_DATE})


async def cluster_health(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    if not _is_local(app, scope):
        await send_json(send, 403, CLUSTER_FORBIDDEN)
        return
    body = cluster_document(app)
    await send_json(send, 200 if body["status"] == "healthy" else 503, body)


def cluster_document(app: SluiceApp) -> dict[str, Any]:
    """Standalone Sluice is a one-node cluster whose only node is the leader (decisions
    table: ``cluster``)."""
    healthy = app.engine.healthy
    uptime = max(0.0, time.monotonic() - app.started_monotonic)
    last_applied = int(app.engine.wal.committed_lsn) if healthy else None
    node = {
        "node_id": 1, "role": "leader", "status": "active" if healthy else "offline",
        "api_addr": app.api_addr, "is_self": True, "is_leader": True,
        "replication_lag": None, "catchup_progress_pct": None, "hostname": app.hostname,
        "memory_usage_mb": memory_usage_mb(), "cpu_usage_percent": cpu_usage_percent(uptime),
        "uptime_seconds": int(uptime), "uptime_human": uptime_human(int(uptime)),
    }
    return {
        "status": "healthy" if healthy else "unhealthy", "version": app.version,
        "build_date": BUILD_DATE, "is_cluster_mode": False, "cluster_id": "", "node_id": 1,
        "is_leader": True, "total_groups": 1, "groups_leading": 1, "current_term": 1,
        "last_applied": last_applied, "millis_since_quorum_ack": None, "nodes": [node],
    }


def memory_usage_mb() -> int:
    """Resident set size in MiB: /proc/self/statm where it exists (Linux), else the peak
    RSS from getrusage (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // (1024 * 1024) if sys.platform == "darwin" else peak // 1024


def cpu_usage_percent(uptime_seconds: float) -> float:
    """Average CPU use of this process since it started (user + system time / uptime)."""
    if uptime_seconds <= 0:
        return 0.0
    return round(100.0 * time.process_time() / uptime_seconds, 1)


def uptime_human(seconds: int) -> str:
    """``"2m"``, ``"1h 5m"``, ``"3d 4h"``: the two largest non-zero units (``"0s"`` at 0)."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2]) or "0s"
