"""Password authentication for ``POST /v1/api/auth/login`` (PROTOCOL §2.2, §2.3).

``authenticate_password`` follows the reference's order: blank or unknown or deleted user →
``unauthorized``; a locked account → ``account_locked`` (before the password is looked at,
so the right password does not help); an OAuth account → ``unauthorized``; ``root`` with no
password configured and an empty password → ``setup_required`` (428); a system account with
no password asked for from a non-local client → ``forbidden`` (403); a non-system account
with no password → ``unauthorized`` (not counted); otherwise bcrypt decides, and a wrong
password is counted towards the lockout (engine/accounts.py).

Timing: every ``unauthorized`` path spends one bcrypt verification — against a dummy hash of
the configured cost when there is no real hash to check — so a caller cannot tell an unknown
user from a wrong password by the response time. (A locked account answers without bcrypt,
as in the reference; its existence is not secret to someone who just locked it.)

bcrypt runs in a worker thread (``trio.to_thread.run_sync``, not abandoned on cancel: the
thread finishes its few hundred milliseconds and the result is dropped).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import trio

from engine.accounts import (
    lock_remaining_ms,
    record_login_failure,
    record_login_success,
)
from engine.catalog import ROOT_USER, User
from engine.passwords import check_password, hash_password

if TYPE_CHECKING:
    from engine import Engine

INVALID_CREDENTIALS = "Invalid credentials"
SETUP_REQUIRED = "Server requires initial setup. Root password is not configured."
REMOTE_EMPTY_PASSWORD = (
    "System users with empty passwords cannot authenticate remotely. Set a password with: "
    "ALTER USER root SET PASSWORD '...' (or run the setup from localhost).")
# What the dummy hash hashes. The dummy only burns bcrypt time when there is no real hash to
# check; its result is ignored, so guessing this text gains nothing.
_DUMMY_SECRET = "sluice: no such account: timing equaliser"
# The dummy hash at the default cost (12), precomputed so that even the first unknown-user
# login costs one bcrypt check, not two; other costs are hashed once, lazily.
_DUMMY_HASHES = {12: "$2b$12$qV0ias/.M8IJOTplnpXHm.eqS.JtVitjt0J6kz3SeRiMOqu8D1n5m"}


class LoginRefused(Exception):
    """A refused login; ``code`` is a key of ``api.errors.AUTH_ENDPOINT_STATUS``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@functools.cache
def _dummy_hash(cost: int) -> str:
    return _DUMMY_HASHES.get(cost) or hash_password(_DUMMY_SECRET, cost)


def _verify(password: str, hashed: str, cost: int) -> bool:
    """Worker thread: bcrypt check; with no password or no hash, an equally slow check
    against the dummy hash that always fails."""
    if not password or not hashed:
        check_password(password or "-", _dummy_hash(cost))
        return False
    return check_password(password, hashed)


async def verify_password(password: str, hashed: str, cost: int) -> bool:
    return await trio.to_thread.run_sync(_verify, password, hashed, cost,
                                         abandon_on_cancel=False)


async def _refuse_slowly(cost: int) -> LoginRefused:
    await verify_password("", "", cost)
    return LoginRefused("unauthorized", INVALID_CREDENTIALS)


def _check_password_rules(user: User, password: str, is_local: bool) -> None:
    if user.user_id == ROOT_USER and not user.password_hash and not password:
        raise LoginRefused("setup_required", SETUP_REQUIRED)
    system_internal = user.role == "system" and user.auth_type == "Internal"
    if system_internal and not is_local and not user.password_hash:
        raise LoginRefused("forbidden", REMOTE_EMPTY_PASSWORD)


async def authenticate_password(engine: Engine, user_id: str, password: str, *,
                                is_local: bool, bcrypt_cost: int) -> User:
    """The user ``user_id``/``password`` authenticate, with the lockout bookkeeping written
    through the engine. Raises ``LoginRefused``; ``EngineError`` (e.g.
    ``StorageUnavailable``) if the bookkeeping cannot be written."""
    user = engine.catalog.live_user(user_id) if user_id.strip() else None
    if user is None:
        raise await _refuse_slowly(bcrypt_cost)
    remaining_ms = lock_remaining_ms(user, engine.clock.now_ms())
    if remaining_ms:
        raise LoginRefused("account_locked", f"{math.ceil(remaining_ms / 60_000)} minute(s)")
    if user.auth_type == "OAuth":
        raise await _refuse_slowly(bcrypt_cost)
    _check_password_rules(user, password, is_local)
    system_internal = user.role == "system" and user.auth_type == "Internal"
    if not system_internal and not user.password_hash:
        raise await _refuse_slowly(bcrypt_cost)
    if not await verify_password(password, user.password_hash, bcrypt_cost):
        await record_login_failure(engine, user.user_id)
        raise LoginRefused("unauthorized", INVALID_CREDENTIALS)
    current = await record_login_success(engine, user.user_id)
    if current is None:  # dropped while bcrypt ran
        raise LoginRefused("unauthorized", INVALID_CREDENTIALS)
    return current
