"""``GET /v1/files/{namespace}/{table_name}/{subfolder}/{file_id}`` (PROTOCOL §5.4).

Order: bearer authentication (§1.2: 401/403); the path (400 ``INVALID_INPUT`` "Invalid file
path" when a segment holds ``..``, ``/``, ``\\`` or NUL, or the subfolder is not ``f`` and
four digits — the router already refuses an encoded ``/`` with its empty 404); STREAM and
SYSTEM tables (400 ``INVALID_INPUT``); the table (404 ``{"error": "Table 'ns.t' not
found"}``); the scope:
- USER table: the caller's own folder, or ``?user_id=X``'s when the impersonation matrix
  (§2.7) lets the caller's role target X's role (else 403 ``PERMISSION_DENIED`` "Requested
  user is not allowed for the current role"); an empty ``user_id`` is 400;
- SHARED table: the access level must allow reading (403), and ``user_id`` is 400;
then the file (404 ``{"error":"File not found","code":"FILE_NOT_FOUND"}``).

Success: 200 with the bytes, streamed in ``DOWNLOAD_CHUNK_BYTES`` reads on a worker thread
(memory stays bounded); ``Content-Type`` from the ``file_id`` extension (the stored MIME is
not used, as in the reference), ``Content-Disposition: inline; filename="<file_id>"`` with
``"``, CR, LF and NUL removed, and ``Content-Length``. A file deleted between the check and
the read is still served whole (the open descriptor keeps it).
"""

from __future__ import annotations

import mimetypes
import os
import stat
import time
from typing import TYPE_CHECKING

import trio

from api.auth import authenticate_or_reply
from api.errors import file_download_error
from api.http import Scope, Send, query_param, send_json
from engine import PermissionDenied, Session
from engine.catalog import SYSTEM_NAMESPACE, TableDef
from engine.files import SUBFOLDER
from engine.permissions import can_read_shared, check_impersonation

if TYPE_CHECKING:
    from api.app import SluiceApp
    from api.http import Receive

# Bytes read from disk and sent per ASGI message: large enough to keep syscalls and thread
# hops few, small enough that a download costs little memory.
DOWNLOAD_CHUNK_BYTES = 256 * 1024
_FORBIDDEN_IN_SEGMENT = ("..", "/", "\\", "\x00")
_UNSAFE_IN_FILENAME = frozenset('"\r\n\x00')
_USER_NOT_ALLOWED = "Requested user is not allowed for the current role"


class _Refused(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _check_path(params: dict[str, str]) -> None:
    for value in params.values():
        if any(bad in value for bad in _FORBIDDEN_IN_SEGMENT):
            raise _Refused("INVALID_INPUT", "Invalid file path")
    if not SUBFOLDER.fullmatch(params["subfolder"]):
        raise _Refused("INVALID_INPUT", "Invalid file path")


def _scope_user(app: SluiceApp, session: Session, table: TableDef, requested: str | None
                ) -> str | None:
    """The partition owner whose folder is read; raises ``_Refused``."""
    if table.table_type == "SHARED":
        if requested is not None:
            raise _Refused("INVALID_INPUT", "user_id is only allowed for USER tables")
        if not can_read_shared(session, table):
            raise _Refused("PERMISSION_DENIED", f"Access denied to shared table "
                                                f"'{table.qualified_name}'")
        return None
    if requested is None:
        return session.user_id
    if not requested.strip():
        raise _Refused("INVALID_INPUT", "user_id must not be empty")
    target = app.engine.catalog.live_user(requested)
    try:
        check_impersonation(session, requested, target.role if target else "user")
    except PermissionDenied:
        raise _Refused("PERMISSION_DENIED", _USER_NOT_ALLOWED) from None
    return requested


def _resolve(app: SluiceApp, scope: Scope, session: Session) -> tuple[str, str]:
    """``(absolute path, file_id)`` of the requested file; raises ``_Refused``."""
    params = scope["path_params"]
    _check_path(params)
    namespace, name = params["namespace"].lower(), params["table_name"].lower()
    if namespace == SYSTEM_NAMESPACE:
        raise _Refused("INVALID_INPUT", "Files of SYSTEM tables cannot be downloaded")
    table = app.engine.catalog.table(namespace, name)
    if table is None:
        raise _Refused("TABLE_NOT_FOUND", f"Table '{namespace}.{name}' not found")
    if table.table_type == "STREAM":
        raise _Refused("INVALID_INPUT", "Files of STREAM tables cannot be downloaded")
    user_id = _scope_user(app, session, table, query_param(scope, "user_id"))
    directory = app.engine.files.table_dir(table, user_id)
    return str(directory / params["subfolder"] / params["file_id"]), params["file_id"]


def open_regular_file(path: str) -> tuple[int, int]:
    """Worker thread: an open descriptor on a regular file and its size."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileNotFoundError(path)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


async def download(app: SluiceApp, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    user = await authenticate_or_reply(app, scope, send, started)
    if user is None:
        return
    try:
        path, file_id = _resolve(app, scope, Session(user.user_id, user.role))
        try:
            fd, size = await trio.to_thread.run_sync(open_regular_file, path)
        except OSError:  # missing, a directory, a symlink: nothing to serve
            raise _Refused("FILE_NOT_FOUND") from None
    except _Refused as exc:
        await send_json(send, *file_download_error(exc.code, exc.message,
                                                   _elapsed_ms(started)))
        return
    mime = mimetypes.guess_type(file_id, strict=False)[0] or "application/octet-stream"
    await stream_file(send, fd, size, mime, "inline", file_id)


async def stream_file(send: Send, fd: int, size: int, content_type: str, disposition: str,
                      filename: str) -> None:
    """Sends an open regular file as a 200 response in ``DOWNLOAD_CHUNK_BYTES`` pieces
    (bounded memory) and closes ``fd`` whatever happens. ``disposition`` is ``inline`` or
    ``attachment``; ``filename`` is sanitized for the header."""
    shown = "".join(c for c in filename if c not in _UNSAFE_IN_FILENAME)
    try:
        await _stream(send, fd, size, content_type, f'{disposition}; filename="{shown}"')
    finally:
        await trio.to_thread.run_sync(os.close, fd)


async def _stream(send: Send, fd: int, size: int, content_type: str, disposition: str
                  ) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-disposition", disposition.encode()),
        (b"content-length", str(size).encode()),
    ]})
    offset = 0
    while offset < size:
        chunk = await trio.to_thread.run_sync(os.pread, fd, min(DOWNLOAD_CHUNK_BYTES,
                                                                size - offset), offset)
        if not chunk:  # truncated meanwhile: the client sees a short body and the length
            break
        offset += len(chunk)
        await send({"type": "http.response.body", "body": chunk, "more_body": offset < size})
    if offset < size:
        return
    if size == 0:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
