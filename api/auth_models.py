"""Request and response shapes of the auth endpoints (PROTOCOL §2.2, §2.6).

Requests are JSON objects read like the reference's strict deserializer: the body must be
``application/json`` (or ``+json``), an object, with no unknown fields; ``username`` is an
alias of ``user`` (giving both is a duplicate field); every field is a string (``email`` may
be null); ``user`` is at most ``USER_MAX_BYTES`` and each password at most
``PASSWORD_MAX_BYTES`` (UTF-8). Any violation is ``BadBody``, which the routes answer with the
framework-style **400 plain-text** body the reference sends, not a JSON error.

Responses: ``user_info`` is the ``UserInfo`` object (``id``, ``role``, ``email``,
``created_at``, ``updated_at``); times are RFC 3339 in UTC written as chrono's
``to_rfc3339`` writes them (``+00:00`` suffix, fractional seconds only when non-zero).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from engine.catalog import User

USER_MAX_BYTES = 128  # PROTOCOL §2.1: the setup/login body caps the user id ...
PASSWORD_MAX_BYTES = 256  # ... and each password.
# Auth bodies are a few hundred bytes at most; anything beyond this is not a login.
AUTH_BODY_MAX_BYTES = 16 * 1024

LOGIN_FIELDS = ("user", "password")
SETUP_FIELDS = ("user", "password", "root_password", "email")
_OPTIONAL = frozenset({"email"})
_PASSWORDS = frozenset({"password", "root_password"})


class BadBody(Exception):
    """An unreadable auth request body; the message is the plain-text 400 body."""


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/")
                                           and mime.endswith("+json"))


def parse_body(content_type: str | None, raw: bytes, fields: tuple[str, ...]
               ) -> dict[str, str | None]:
    """The request's ``fields`` (``user`` resolved from its alias); raises ``BadBody``."""
    if not _is_json(content_type):
        raise BadBody("Content type error: expected application/json")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadBody(f"Json deserialize error: {exc}") from None
    if not isinstance(data, dict):
        raise BadBody("Json deserialize error: expected a JSON object")
    if "user" in data and "username" in data:
        raise BadBody("Json deserialize error: duplicate field `user` (alias `username`)")
    if "username" in data:
        data["user"] = data.pop("username")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadBody(f"Json deserialize error: unknown field `{unknown[0]}`, expected one "
                      f"of {', '.join(f'`{f}`' for f in fields)}")
    values: dict[str, str | None] = {}
    for name in fields:
        values[name] = _field(data, name)
    return values


def _field(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        if name in _OPTIONAL:
            return None
        raise BadBody(f"Json deserialize error: missing field `{name}`")
    if not isinstance(value, str):
        raise BadBody(f"Json deserialize error: field `{name}` must be a string")
    size = len(value.encode())
    if name == "user" and size > USER_MAX_BYTES:
        raise BadBody(f"Json deserialize error: `user` is longer than {USER_MAX_BYTES} bytes")
    if name in _PASSWORDS and size > PASSWORD_MAX_BYTES:
        raise BadBody(f"Json deserialize error: `{name}` is longer than "
                      f"{PASSWORD_MAX_BYTES} bytes")
    return value


def rfc3339(moment: datetime) -> str:
    """``2026-05-01T09:00:00+00:00``, with ``.mmm`` or ``.uuuuuu`` only when non-zero."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micros = moment.microsecond
    if micros % 1000 == 0 and micros:
        text += f".{micros // 1000:03d}"
    elif micros:
        text += f".{micros:06d}"
    return text + "+00:00"


def rfc3339_ms(unix_ms: int) -> str:
    seconds, millis = divmod(unix_ms, 1000)  # integer maths: no float rounding
    return rfc3339(datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000))


def user_info(user: User) -> dict[str, Any]:
    return {"id": user.user_id, "role": user.role, "email": user.email,
            "created_at": rfc3339_ms(user.created_at),
            "updated_at": rfc3339_ms(user.updated_at)}


def admin_ui_access(user: User) -> bool:
    return user.role in ("dba", "system")
