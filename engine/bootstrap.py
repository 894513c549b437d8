"""First-start objects (PROTOCOL §2.2): the ``default`` namespace, the ``root`` user (role
system, password from configuration or empty) and the ``local`` storage. Each is written as
a normal catalog event, so replay reproduces them; on later starts nothing is written."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .catalog import DEFAULT_NAMESPACE, LOCAL_STORAGE, ROOT_USER
from .events import CatalogEvent, Kind
from .passwords import hash_password

if TYPE_CHECKING:
    from .engine import Engine


async def bootstrap(engine: Engine) -> None:
    catalog, now = engine.catalog, engine.clock.now_ms()
    async with engine.write_lock:
        if DEFAULT_NAMESPACE not in catalog.namespaces:
            await engine.commit_catalog(CatalogEvent(Kind.NAMESPACE_CREATED, {
                "name": DEFAULT_NAMESPACE, "created_at_ms": now}))
        if LOCAL_STORAGE not in catalog.storages:
            await engine.commit_catalog(CatalogEvent(Kind.STORAGE_CREATED, {
                "storage_id": LOCAL_STORAGE, "storage_type": "filesystem",
                "storage_name": "Local filesystem", "base_directory": str(engine.data_dir),
                "created_at": now, "updated_at": now}))
        if ROOT_USER not in catalog.users:
            password = engine.config.root_password
            hashed = "" if not password else await trio.to_thread.run_sync(
                hash_password, password, 12)
            await engine.commit_catalog(CatalogEvent(Kind.USER_CREATED, {
                "user_id": ROOT_USER, "role": "system", "password_hash": hashed,
                "email": "root@localhost", "auth_type": "Internal", "created_at": now,
                "updated_at": now}))
