"""Login bookkeeping and first-run setup through the real engine (engine/accounts.py,
PROTOCOL §2.2, §2.3). A ``ManualClock`` moves the wall time, so the 15-minute lockout is
tested without waiting; reopening the engine on the same directory proves that every change
is a replayed WAL event."""

from __future__ import annotations

from pathlib import Path

from engine.accounts import (
    LOCKOUT_DURATION_MS,
    LOGIN_FAILURES_MAX,
    SetupOutcome,
    complete_setup,
    lock_remaining_ms,
    record_login_failure,
    record_login_success,
)
from engine.clock import ManualClock
from engine.passwords import hash_password
from tests.engine.harness import ROOT, engine_at, sql

HASH = hash_password("Correct-h0rse", 4)


async def test_accounts__five_failures_lock_for_fifteen_minutes_and_survive_reopen(
        tmp_path: Path) -> None:
    clock = ManualClock()
    async with engine_at(tmp_path, clock=clock) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'pw'")
        for attempt in range(1, LOGIN_FAILURES_MAX):
            user = await record_login_failure(engine, "carol")
            assert user.failed_login_attempts == attempt and user.locked_until is None
        user = await record_login_failure(engine, "carol")
        assert user.failed_login_attempts == LOGIN_FAILURES_MAX
        assert lock_remaining_ms(user, clock.now_ms()) == LOCKOUT_DURATION_MS == 15 * 60_000
    async with engine_at(tmp_path, clock=clock) as engine:  # replayed from the WAL
        user = engine.catalog.live_user("carol")
        assert user.failed_login_attempts == LOGIN_FAILURES_MAX
        clock.advance(LOCKOUT_DURATION_MS - 1)
        assert lock_remaining_ms(user, clock.now_ms()) == 1
        clock.advance(1)
        assert lock_remaining_ms(user, clock.now_ms()) == 0
        # A failure after the lock expired starts a new count.
        user = await record_login_failure(engine, "carol")
        assert (user.failed_login_attempts, user.locked_until) == (1, None)


async def test_accounts__success_resets_and_writes_only_when_needed(tmp_path: Path) -> None:
    clock = ManualClock()
    async with engine_at(tmp_path, clock=clock) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'pw'")
        lsn = engine.wal.committed_lsn
        user = await record_login_success(engine, "carol")
        assert user.last_login_at is None and engine.wal.committed_lsn == lsn  # no write
        await record_login_failure(engine, "carol")
        clock.advance(5000)
        user = await record_login_success(engine, "carol")
        assert (user.failed_login_attempts, user.locked_until) == (0, None)
        assert user.last_login_at == clock.now_ms()
        assert await record_login_failure(engine, "nobody") is None
        assert await record_login_success(engine, "nobody") is None


async def test_accounts__setup_sets_root_and_creates_dba_once(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        root_before = engine.catalog.live_user("root")
        assert root_before.password_hash == ""
        outcome, dba = await complete_setup(engine, HASH, "admin", HASH, "a@example.com")
        assert outcome is SetupOutcome.DONE
        assert (dba.role, dba.storage_id, dba.email) == ("dba", "local", "a@example.com")
        root = engine.catalog.live_user("root")
        assert root.password_hash == HASH
        assert root.token_generation == root_before.token_generation + 1
        lsn = engine.wal.committed_lsn
        again = await complete_setup(engine, HASH, "admin2", HASH, None)
        assert again == (SetupOutcome.ALREADY_CONFIGURED, None)
        assert engine.wal.committed_lsn == lsn and "admin2" not in engine.catalog.users
    async with engine_at(tmp_path) as engine:
        assert engine.catalog.live_user("admin").role == "dba"
        assert engine.catalog.live_user("root").password_hash == HASH


async def test_accounts__setup_refuses_an_existing_user(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'pw'")
        lsn = engine.wal.committed_lsn
        assert await complete_setup(engine, HASH, "carol", HASH, None) == (
            SetupOutcome.USER_EXISTS, None)
        assert engine.wal.committed_lsn == lsn
        assert engine.catalog.live_user("root").password_hash == ""
