"""CREATE / ALTER / DROP USER through the real engine (PROTOCOL §3.11, §2.1-2.3, §2.7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.errors import AlreadyExists, InvalidOperation, InvalidSql, NotFound, PermissionDenied
from engine.passwords import check_password
from engine.session import Session
from tests.engine.harness import ALICE, CONFIG, DBA, ROOT, SERVICE, engine_at, sql

CAROL = Session("carol", "user")


async def message(engine, session, text: str) -> str:
    (result,) = await sql(engine, session, text)
    return result["message"]


async def test_create_user__password_hashed_and_never_echoed(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        text = await message(engine, ROOT, "CREATE USER carol WITH PASSWORD 'S3cret!pw' "
                             "ROLE service EMAIL 'c@example.com'")
        assert text == "User 'carol' created"
        user = engine.catalog.live_user("carol")
        assert (user.role, user.email, user.auth_type) == ("service", "c@example.com", "Password")
        assert user.password_hash.startswith("$2b$04$")
        assert check_password("S3cret!pw", user.password_hash)
        assert "S3cret" not in repr(user) and user.token_generation == 0
        await sql(engine, ROOT, "CREATE USER 'dave' WITH PASSWORD 'x'")
        assert engine.catalog.live_user("dave").role == "user"


async def test_create_user__oauth_and_internal(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, """CREATE USER gh WITH OAUTH '{"provider":"github","subject":"42"}'""")
        await sql(engine, ROOT, "CREATE USER robot WITH INTERNAL ROLE service")
        gh, robot = engine.catalog.live_user("gh"), engine.catalog.live_user("robot")
        assert (gh.auth_type, gh.password_hash) == ("OAuth", "")
        assert gh.auth_data == '{"provider":"github","subject":"42"}'
        assert (robot.auth_type, robot.role, robot.password_hash) == ("Internal", "service", "")
        with pytest.raises(InvalidOperation, match="OAuth"):
            await sql(engine, ROOT, "ALTER USER gh SET PASSWORD 'pw'")


async def test_create_user__duplicate_and_failed_write_nothing(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'pw'")
        before = engine.wal.committed_lsn
        with pytest.raises(AlreadyExists, match="User 'carol' already exists"):
            await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'other'")
        with pytest.raises(AlreadyExists, match="User 'root' already exists"):
            await sql(engine, ROOT, "CREATE USER root WITH PASSWORD 'other'")
        with pytest.raises(InvalidSql):
            await sql(engine, ROOT, "CREATE USER 'a/b' WITH PASSWORD 'pw'")
        assert engine.wal.committed_lsn == before


async def test_create_user__roles(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        for session in (ALICE, SERVICE):
            with pytest.raises(PermissionDenied):
                await sql(engine, session, "CREATE USER x WITH PASSWORD 'pw'")
        with pytest.raises(PermissionDenied, match="system role"):
            await sql(engine, DBA, "CREATE USER x WITH PASSWORD 'pw' ROLE system")
        await sql(engine, DBA, "CREATE USER x WITH PASSWORD 'pw' ROLE dba")
        await sql(engine, ROOT, "CREATE USER y WITH PASSWORD 'pw' ROLE system")
        assert engine.catalog.live_user("y").role == "system"


async def test_create_user__complexity_enforced_when_configured(tmp_path: Path) -> None:
    config = EngineConfig(bcrypt_cost=4, jobs_interval_seconds=3600,
                          enforce_password_complexity=True)
    async with engine_at(tmp_path, config) as engine:
        for weak, reason in (("short1!", "at least 8"), ("password", "too common"),
                             ("alllower1!", "upper-case"), ("NoDigits!!", "digit")):
            with pytest.raises(InvalidOperation, match=reason):
                await sql(engine, ROOT, f"CREATE USER u WITH PASSWORD '{weak}'")
        await sql(engine, ROOT, "CREATE USER u WITH PASSWORD 'Str0ng!pass'")
    async with engine_at(tmp_path / "lax") as engine:
        await sql(engine, ROOT, "CREATE USER u WITH PASSWORD 'x'")
        with pytest.raises(InvalidOperation, match="at most 72 bytes"):
            await sql(engine, ROOT, "CREATE USER v WITH PASSWORD '" + "x" * 73 + "'")


async def test_alter_user__password_and_role_bump_token_generation(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'one'")
        assert await message(engine, DBA, "ALTER USER carol SET PASSWORD 'two'") == \
            "User 'carol' updated"
        user = engine.catalog.live_user("carol")
        assert check_password("two", user.password_hash) and user.token_generation == 1
        await sql(engine, DBA, "ALTER USER carol SET ROLE service")
        assert engine.catalog.live_user("carol").token_generation == 2
        await sql(engine, DBA, "ALTER USER carol SET EMAIL 'c@x.io'")
        user = engine.catalog.live_user("carol")
        assert (user.role, user.email, user.token_generation) == ("service", "c@x.io", 2)
        with pytest.raises(NotFound, match="User 'nobody' does not exist"):
            await sql(engine, DBA, "ALTER USER nobody SET EMAIL 'e'")


async def test_alter_user__self_password_only_for_plain_users(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'one';"
                  "CREATE USER alice WITH PASSWORD 'a'")
        await sql(engine, CAROL, "ALTER USER carol SET PASSWORD 'mine'")
        assert check_password("mine", engine.catalog.live_user("carol").password_hash)
        before = engine.wal.committed_lsn
        for text in ("ALTER USER alice SET PASSWORD 'x'", "ALTER USER carol SET ROLE dba",
                     "ALTER USER carol SET EMAIL 'e'"):
            with pytest.raises(PermissionDenied):
                await sql(engine, CAROL, text)
        assert engine.wal.committed_lsn == before


async def test_alter_user__system_role_rules(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'one'")
        with pytest.raises(PermissionDenied, match="system role"):
            await sql(engine, DBA, "ALTER USER carol SET ROLE system")
        with pytest.raises(PermissionDenied, match="system role"):
            await sql(engine, DBA, "ALTER USER root SET PASSWORD 'taken-over'")
        with pytest.raises(InvalidOperation, match="role of the root user"):
            await sql(engine, ROOT, "ALTER USER root SET ROLE dba")
        await sql(engine, ROOT, "ALTER USER carol SET ROLE system; ALTER USER root SET PASSWORD 'r'")
        assert engine.catalog.live_user("carol").role == "system"
        assert check_password("r", engine.catalog.live_user("root").password_hash)


async def test_drop_user__soft_delete_and_rules(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'one';"
                  "CREATE USER sys2 WITH PASSWORD 'x' ROLE system")
        assert await message(engine, DBA, "DROP USER carol") == "User 'carol' dropped (soft delete)"
        assert engine.catalog.live_user("carol") is None
        assert engine.catalog.users["carol"].deleted_at == engine.clock.now_ms()
        with pytest.raises(NotFound, match="User 'carol' does not exist"):
            await sql(engine, DBA, "DROP USER carol")
        assert await message(engine, DBA, "DROP USER IF EXISTS carol") == \
            "User 'carol' does not exist (skipped)"
        with pytest.raises(InvalidOperation, match="root user cannot be dropped"):
            await sql(engine, ROOT, "DROP USER root")
        with pytest.raises(InvalidOperation, match="your own user"):
            await sql(engine, DBA, "DROP USER dba1")
        with pytest.raises(PermissionDenied, match="system role"):
            await sql(engine, DBA, "DROP USER sys2")
        with pytest.raises(PermissionDenied):
            await sql(engine, SERVICE, "DROP USER sys2")


async def test_create_user__recreate_dropped_id__old_tokens_stay_invalid(tmp_path: Path) -> None:
    async with engine_at(tmp_path) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'one';"
                  "ALTER USER carol SET PASSWORD 'two'; DROP USER carol")
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'three' ROLE dba")
        user = engine.catalog.live_user("carol")
        assert (user.role, user.deleted_at, user.token_generation) == ("dba", None, 2)


@pytest.mark.parametrize("via", ["checkpoint", "wal_replay"])
async def test_restart__users_survive(tmp_path: Path, via: str) -> None:
    async with engine_at(tmp_path, CONFIG) as engine:
        await sql(engine, ROOT, "CREATE USER carol WITH PASSWORD 'one' ROLE service;"
                  "ALTER USER carol SET PASSWORD 'two'; CREATE USER gone WITH PASSWORD 'x';"
                  "DROP USER gone")
        before = dict(engine.catalog.users)
    if via == "wal_replay":
        (tmp_path / "checkpoints" / "catalog.json").unlink()
    async with engine_at(tmp_path, CONFIG) as engine:
        assert engine.catalog.users == before
        assert check_password("two", engine.catalog.live_user("carol").password_hash)
        assert engine.catalog.live_user("gone") is None
