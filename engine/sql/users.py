"""User management SQL (PROTOCOL §3.11, §2.1-2.3): CREATE / ALTER / DROP USER.

Role rules: CREATE/DROP USER are admin-only and ALTER USER is admin-only except a user
changing their own password (checked at classify time, ``plan.PREFLIGHT``). On top of that:
- only a ``system`` caller may create a ``system`` user or grant the ``system`` role;
- choice: only a ``system`` caller may alter or drop a user whose role is ``system`` (else
  a dba could take over ``root`` by changing its password);
- ``root`` cannot be dropped and keeps its role; nobody can drop themselves.

Passwords are checked with ``validate_for_user_sql`` and hashed with bcrypt in a worker
thread (cost ``config.bcrypt_cost``) before the write lock is taken. Neither a password nor
a hash ever appears in a message, an error or a log line.

Choices:
- Re-creating the id of a soft-deleted user is allowed: the new account replaces the old
  record, and its ``token_generation`` continues past the old one's, so tokens issued to the
  deleted account stay invalid.
- A role or password change bumps ``token_generation`` (tokens minted before stop working);
  an email change does not.
- OAuth accounts have no password: SET PASSWORD on one is refused. ``INTERNAL`` accounts
  start with an empty hash (they cannot log in with a password until one is set).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import trio

from ..catalog import ROOT_USER, User
from ..errors import AlreadyExists, InvalidOperation, NotFound, PermissionDenied
from ..events import CatalogEvent, Kind
from ..passwords import hash_password, validate_for_user_sql
from ..session import Session
from . import statements as s
from .context import Ctx
from .results import StatementResult, message_result

AUTH_TYPES = {"password": "Password", "oauth": "OAuth", "internal": "Internal"}


async def _hashed(ctx: Ctx, password: str) -> str:
    config = ctx.engine.config
    validate_for_user_sql(password, enforce_complexity=config.enforce_password_complexity)
    return await trio.to_thread.run_sync(hash_password, password, config.bcrypt_cost)


def _require_system_for(session: Session, target_role: str, verb: str) -> None:
    if target_role == "system" and session.role != "system":
        raise PermissionDenied(f"Only a system user can {verb} a user with the system role")


async def create_user(ctx: Ctx, stmt: s.CreateUser) -> StatementResult:
    """CREATE USER: a new account (USER_CREATED); see the module docstring for the rules."""
    _require_system_for(ctx.session, stmt.role, "create")
    if ctx.engine.catalog.live_user(stmt.user_id) is not None:  # skip bcrypt when doomed
        raise AlreadyExists(f"User '{stmt.user_id}' already exists")
    password_hash = ""
    if stmt.auth_type == "password":
        assert stmt.password is not None
        password_hash = await _hashed(ctx, stmt.password)

    def build() -> CatalogEvent:
        catalog = ctx.engine.catalog
        if catalog.live_user(stmt.user_id) is not None:
            raise AlreadyExists(f"User '{stmt.user_id}' already exists")
        previous = catalog.users.get(stmt.user_id)
        generation = previous.token_generation + 1 if previous is not None else 0
        now = ctx.now_ms()
        user = User(stmt.user_id, stmt.role, password_hash, stmt.email,
                    AUTH_TYPES[stmt.auth_type], stmt.oauth if stmt.auth_type == "oauth" else None,
                    created_at=now, updated_at=now, token_generation=generation)
        return CatalogEvent(Kind.USER_CREATED, asdict(user))

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id, f"User '{stmt.user_id}' created")


def _check_alter(session: Session, user: User, stmt: s.AlterUser) -> None:
    _require_system_for(session, user.role, "alter")
    if stmt.role is not None:
        _require_system_for(session, stmt.role, "grant the system role to")
        if user.user_id == ROOT_USER and stmt.role != "system":
            raise InvalidOperation("The role of the root user cannot be changed")
    if stmt.password is not None and user.auth_type == "OAuth":
        raise InvalidOperation(f"User '{user.user_id}' signs in with OAuth and has no password")


def _live_user(ctx: Ctx, user_id: str) -> User:
    user = ctx.engine.catalog.live_user(user_id)
    if user is None:
        raise NotFound(f"User '{user_id}' does not exist")
    return user


async def alter_user(ctx: Ctx, stmt: s.AlterUser) -> StatementResult:
    """ALTER USER ... SET PASSWORD | ROLE | EMAIL (USER_ALTERED)."""
    _check_alter(ctx.session, _live_user(ctx, stmt.user_id), stmt)
    password_hash = None
    if stmt.password is not None:
        password_hash = await _hashed(ctx, stmt.password)

    def build() -> CatalogEvent:
        user = _live_user(ctx, stmt.user_id)  # again, under the lock
        _check_alter(ctx.session, user, stmt)
        changes: dict = {"updated_at": ctx.now_ms()}
        if stmt.email is not None:
            changes["email"] = stmt.email
        if stmt.role is not None and stmt.role != user.role:
            changes["role"] = stmt.role
        if password_hash is not None:
            changes["password_hash"] = password_hash
        if "role" in changes or "password_hash" in changes:
            changes["token_generation"] = user.token_generation + 1
        return CatalogEvent(Kind.USER_ALTERED, asdict(replace(user, **changes)))

    await ctx.write_catalog(build)
    return message_result(ctx.session.user_id, f"User '{stmt.user_id}' updated")


async def drop_user(ctx: Ctx, stmt: s.DropUser) -> StatementResult:
    """DROP USER [IF EXISTS]: a soft delete (USER_DROPPED sets ``deleted_at``)."""
    if stmt.user_id == ROOT_USER:
        raise InvalidOperation("The root user cannot be dropped")
    if stmt.user_id == ctx.session.user_id:
        raise InvalidOperation("You cannot drop your own user")

    def build() -> CatalogEvent | None:
        user = ctx.engine.catalog.live_user(stmt.user_id)
        if user is None:
            if stmt.if_exists:
                return None
            raise NotFound(f"User '{stmt.user_id}' does not exist")
        _require_system_for(ctx.session, user.role, "drop")
        return CatalogEvent(Kind.USER_DROPPED, {"user_id": user.user_id,
                                                "deleted_at": ctx.now_ms()})

    if await ctx.write_catalog(build) is None:
        return message_result(ctx.session.user_id,
                              f"User '{stmt.user_id}' does not exist (skipped)")
    return message_result(ctx.session.user_id, f"User '{stmt.user_id}' dropped (soft delete)")
