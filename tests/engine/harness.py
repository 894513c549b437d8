"""A tiny harness for engine tests: open an engine on a temp dir, run SQL as someone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from engine.clock import ManualClock
from engine.config import EngineConfig
from engine.engine import Engine, open_engine
from engine.session import Session

ROOT = Session("root", "system")
DBA = Session("dba1", "dba")
SERVICE = Session("svc", "service")
ALICE = Session("alice", "user")
BOB = Session("bob", "user")

# bcrypt cost 4 keeps user tests fast; jobs effectively off unless a test runs them.
CONFIG = EngineConfig(bcrypt_cost=4, jobs_interval_seconds=3600)


@contextlib.asynccontextmanager
async def engine_at(path: Path, config: EngineConfig = CONFIG,
                    clock: ManualClock | None = None) -> AsyncIterator[Engine]:
    async with open_engine(path, config, clock=clock or ManualClock()) as engine:
        yield engine


async def sql(engine: Engine, session: Session, text: str, params: list[Any] | None = None
              ) -> list[dict[str, Any]]:
    """The batch's results as the JSON objects the API would send."""
    return [r.to_json() for r in await engine.execute(session, text, params)]


async def rows(engine: Engine, session: Session, text: str, params: list[Any] | None = None
               ) -> list[list[Any]]:
    (result,) = await sql(engine, session, text, params)
    return result["rows"]
