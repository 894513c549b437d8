"""``GET /v1/exports/{user_id}/{export_id}`` (PROTOCOL §1.5): downloads a ZIP written by
``EXPORT USER DATA`` (engine/sql/misc.py) from ``<data>/exports/<user_id>/<export_id>.zip``.

Order: bearer authentication (§1.2: 401/403), the path check (a segment holding ``..``,
``/``, ``\\`` or NUL → 400 ``INVALID_INPUT``), ownership (only the owner or an admin, else
403 ``PERMISSION_DENIED``, both in the SQL error envelope), then the file: a missing one (or
anything that is not a regular file, e.g. a planted symlink) → 404
``{"error":"Export not found","code":"EXPORT_NOT_FOUND"}``. The body is streamed as
``application/zip`` with ``Content-Disposition: attachment; filename="<id>.zip"``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from api.auth import authenticate_or_reply
from api.errors import envelope_error
from api.http import Receive, Scope, Send, send_json
from api.routes.files import open_regular_file, stream_file
from engine import Session

if TYPE_CHECKING:
    from api.app import SluiceApp

EXPORT_NOT_FOUND = {"error": "Export not found", "code": "EXPORT_NOT_FOUND"}
_FORBIDDEN_IN_SEGMENT = ("..", "/", "\\", "\x00")


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def download(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    user = await authenticate_or_reply(app, scope, send, started)
    if user is None:
        return
    params = scope["path_params"]
    owner, export_id = params["user_id"], params["export_id"]
    if any(bad in value for value in (owner, export_id) for bad in _FORBIDDEN_IN_SEGMENT):
        await send_json(send, 400, envelope_error(
            {"code": "INVALID_INPUT", "message": "Invalid export path"}, _elapsed_ms(started)))
        return
    session = Session(user.user_id, user.role)
    if owner != session.user_id and not session.is_admin:
        await send_json(send, 403, envelope_error(
            {"code": "PERMISSION_DENIED",
             "message": "Only the owner or an admin may download this export"},
            _elapsed_ms(started)))
        return
    path = app.engine.data_dir / "exports" / owner / f"{export_id}.zip"
    try:
        fd, size = await trio.to_thread.run_sync(open_regular_file, str(path))
    except OSError:
        await send_json(send, 404, EXPORT_NOT_FOUND)
        return
    await stream_file(send, fd, size, "application/zip", "attachment", f"{export_id}.zip")
