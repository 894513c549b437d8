"""Account state that login and setup change (PROTOCOL §2.2, §2.3): failed-login counting,
lockout, and the first-run setup of ``root`` plus a DBA user.

Every change is a ``USER_ALTERED`` / ``USER_CREATED`` catalog event appended under the
engine's ``write_lock`` through ``Engine.commit_catalog`` — the same path CREATE/ALTER USER
take (engine/sql/users.py) — so replay rebuilds lockouts and a restart keeps them.

Lockout rules (the reference's login tracker):
- ``LOGIN_FAILURES_MAX`` consecutive failures lock the account for ``LOCKOUT_DURATION_MS``;
- while locked every attempt is refused, even with the right password, and is not counted
  (callers check ``lock_remaining_ms`` before verifying the password);
- a failure after a lock has expired starts a new count at 1;
- a success resets the counter and the lock and stamps ``last_login_at`` — and writes
  nothing at all when there was nothing to reset, so an ordinary login costs no WAL write.

Times are the engine clock's Unix milliseconds (``engine.clock.now_ms()``), so tests move
them with ``ManualClock``. All functions run on the engine's trio thread; the WAL append is
shielded (``Engine._append``), so a cancelled caller may still have its event applied. Errors:
``StorageUnavailable`` when the WAL cannot accept writes; nothing is applied then.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from enum import Enum
from typing import TYPE_CHECKING

from .catalog import LOCAL_STORAGE, ROOT_USER, User
from .events import CatalogEvent, Kind

if TYPE_CHECKING:
    from .engine import Engine

# PROTOCOL §2.3: five consecutive failures lock the account ...
LOGIN_FAILURES_MAX = 5
# ... for fifteen minutes.
LOCKOUT_DURATION_MS = 15 * 60 * 1000


def lock_remaining_ms(user: User, now_ms: int) -> int:
    """How long ``user`` stays locked (0 when not locked)."""
    if user.locked_until is None:
        return 0
    return max(0, user.locked_until - now_ms)


async def _alter(engine: Engine, user: User, **changes: object) -> User:
    assert engine.write_lock.locked()
    altered = replace(user, **changes)
    await engine.commit_catalog(CatalogEvent(Kind.USER_ALTERED, asdict(altered)))
    return altered


async def record_login_failure(engine: Engine, user_id: str) -> User | None:
    """Counts one failed password check for ``user_id``; locks the account when the count
    reaches ``LOGIN_FAILURES_MAX``. Returns the updated user (None if it no longer exists,
    and then nothing is written)."""
    async with engine.write_lock:
        user = engine.catalog.live_user(user_id)
        if user is None:
            return None
        now = engine.clock.now_ms()
        expired = user.locked_until is not None and user.locked_until <= now
        attempts = (0 if expired else user.failed_login_attempts) + 1
        locked_until = now + LOCKOUT_DURATION_MS if attempts >= LOGIN_FAILURES_MAX else None
        return await _alter(engine, user, failed_login_attempts=attempts,
                            locked_until=locked_until)


async def record_login_success(engine: Engine, user_id: str) -> User | None:
    """Resets the failure count and lock after a successful login (writing only if there is
    something to reset). Returns the current user (None if it no longer exists)."""
    async with engine.write_lock:
        user = engine.catalog.live_user(user_id)
        if user is None or (user.failed_login_attempts == 0 and user.locked_until is None):
            return user
        return await _alter(engine, user, failed_login_attempts=0, locked_until=None,
                            last_login_at=engine.clock.now_ms())


class SetupOutcome(Enum):
    DONE = "done"
    ALREADY_CONFIGURED = "already_configured"  # root already has a password
    USER_EXISTS = "user_exists"  # the DBA id is taken by a live user
    NO_ROOT = "no_root"  # bootstrap never ran: a broken data dir


async def complete_setup(engine: Engine, root_password_hash: str, dba_id: str,
                         dba_password_hash: str, email: str | None
                         ) -> tuple[SetupOutcome, User | None]:
    """First-run setup (PROTOCOL §2.2 step 8): gives ``root`` its password and creates the
    DBA user (role ``dba``, storage ``local``), as two events under one hold of the write
    lock. The caller validated the input and hashed both passwords (bcrypt, worker thread);
    the preconditions are checked again here, under the lock, so two concurrent setups
    cannot both succeed. Returns the outcome and, on ``DONE``, the DBA user.

    Root is written first: a crash between the two events leaves a server whose root can
    log in (and create the DBA by SQL) rather than one that can never be set up again.
    """
    assert root_password_hash and dba_password_hash
    async with engine.write_lock:
        catalog = engine.catalog
        root = catalog.live_user(ROOT_USER)
        if root is None:
            return SetupOutcome.NO_ROOT, None
        if root.password_hash:
            return SetupOutcome.ALREADY_CONFIGURED, None
        if catalog.live_user(dba_id) is not None:
            return SetupOutcome.USER_EXISTS, None
        now = engine.clock.now_ms()
        await _alter(engine, root, password_hash=root_password_hash, auth_data=None,
                     updated_at=now, token_generation=root.token_generation + 1)
        previous = catalog.users.get(dba_id)  # a soft-deleted account: continue its gen
        dba = User(dba_id, "dba", dba_password_hash, email, "Password",
                   storage_id=LOCAL_STORAGE, created_at=now, updated_at=now,
                   token_generation=0 if previous is None else previous.token_generation + 1)
        await engine.commit_catalog(CatalogEvent(Kind.USER_CREATED, asdict(dba)))
        return SetupOutcome.DONE, dba
