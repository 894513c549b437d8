"""Multipart ``POST /v1/api/sql``: FILE uploads (PROTOCOL §1.3 multipart form, §5.1, §5.3).

The body is parsed as it arrives (api/multipart.py); memory stays bounded whatever the file
sizes. Parts:
- ``sql`` (required; missing or blank → 400 ``EMPTY_SQL``), ``params`` (a JSON array as
  text, else 400 ``INVALID_PARAMETER`` "Params must be a JSON array"), ``namespace_id``;
- ``file:<placeholder>``: streamed into ``<staging>/upload-<hex>-<user>/part-<n>`` with its
  size and SHA-256 computed on the way. Refused while streaming: the ``max_files_per_request
  + 1``-th file part (400 ``TOO_MANY_FILES``), a part past ``max_size_bytes`` (or the
  absolute 100 MiB; 400 ``FILE_TOO_LARGE``), a MIME type outside ``allowed_mime_types``
  (400 ``INVALID_MIME_TYPE``, checked from the part's headers before its body is read), the
  same placeholder twice (400 ``INVALID_INPUT``);
- anything else is read past and ignored.
The MIME type is the part's Content-Type, else guessed from the file name, else
``application/octet-stream``; the original name is the part's filename, else the
placeholder. The whole body is also held to ``rate_limit.request_body_limit_bytes`` (413).

Then: no ``FILE("x")`` placeholder → the parts are dropped and the SQL runs as a normal
batch (a multipart form is just another transport). Otherwise the statement is checked
(engine/sql/file_upload.py: one INSERT/UPDATE of a USER/SHARED table the caller may write), a
placeholder without a part is 400 ``MISSING_FILE``, parts no placeholder uses are dropped,
and the used files are placed and the statement run by the protocol of engine/files.py.
The statement runs shielded from cancellation: once a file is placed, its outcome must be
known to keep or delete the file. The staging directory is removed whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import trio

from api.errors import upload_error
from api.http import BodyTooLarge, Receive, Scope, Send, send_json
from api.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart, boundary_of
from engine import EngineError, Session, StorageUnavailable
from engine.catalog import DEFAULT_NAMESPACE
from engine.files import STAGING_PREFIX, PlacedFile, StagedFile
from engine.flush import encode_user
from engine.sql.file_upload import (
    has_file_placeholders,
    substitute_placeholders,
    upload_target,
)

if TYPE_CHECKING:
    from api.app import SluiceApp
    from engine.catalog import User

log = logging.getLogger(__name__)

# PROTOCOL §1.0/§5.3: no file part may exceed this, whatever files.max_size_bytes says.
FILE_SIZE_ABSOLUTE_MAX_BYTES = 100 * 1024 * 1024
FILE_PART_PREFIX = "file:"
DEFAULT_MIME = "application/octet-stream"


class Rejected(Exception):
    """A 400 the upload answers with (``code`` is one of errors.UPLOAD_ERROR_CODES)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class _OpenPart:
    kind: str  # "file", "field" or "ignored"
    name: str
    staged_path: Path | None = None
    original: str = ""
    mime: str = ""
    handle: BinaryIO | None = None
    hasher: Any = None
    size: int = 0
    text: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class UploadForm:
    """What a multipart body held: the text fields and the staged files by placeholder."""

    staging: Path  # this request's directory; the caller removes it
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, StagedFile] = field(default_factory=dict)
    _part: _OpenPart | None = None
    _file_parts: int = 0


def mime_allowed(mime: str, allowed: list[str]) -> bool:
    """§5.1 step 3: no list allows all; else an exact entry or a ``type/*`` prefix."""
    if not allowed:
        return True
    essence = mime.split(";", 1)[0].strip().lower()
    for entry in (a.strip().lower() for a in allowed):
        if entry in ("*", "*/*") or entry == essence or (
                entry.endswith("/*") and essence.startswith(entry[:-1])):
            return True
    return False


class FormReader:
    """Streams one multipart body into an ``UploadForm`` (the module docstring's rules)."""

    def __init__(self, app: SluiceApp, staging: Path) -> None:
        files = app.config.files
        self.max_files = files.max_files_per_request
        self.max_size = min(files.max_size_bytes, FILE_SIZE_ABSOLUTE_MAX_BYTES)
        self.allowed = files.allowed_mime_types
        self.body_limit = app.config.rate_limit.request_body_limit_bytes
        self.form = UploadForm(staging)

    async def read(self, receive: Receive, boundary: str) -> UploadForm:
        """Reads the body to its end. Raises ``Rejected``, ``BodyTooLarge`` or
        ``MultipartError``; any open staging file is closed either way."""
        parser, total = MultipartParser(boundary), 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise MultipartError("the client disconnected mid-body")
                chunk = message.get("body", b"")
                total += len(chunk)
                if total > self.body_limit:
                    raise BodyTooLarge(total, self.body_limit)
                for event in parser.feed(chunk):
                    await self._on_event(event)
                if not message.get("more_body", False):
                    break
            parser.close()
        finally:
            part = self.form._part
            if part is not None and part.handle is not None:
                await trio.to_thread.run_sync(part.handle.close)
        return self.form

    async def _on_event(self, event: PartStart | PartData | PartEnd) -> None:
        if isinstance(event, PartStart):
            self.form._part = await self._open(event)
        elif isinstance(event, PartData):
            await self._write(self.form._part, event.data)
        else:
            await self._close(self.form._part)
            self.form._part = None

    async def _open(self, start: PartStart) -> _OpenPart:
        if not start.name.startswith(FILE_PART_PREFIX):
            kind = "field" if start.name in ("sql", "params", "namespace_id") else "ignored"
            return _OpenPart(kind, start.name)
        placeholder = start.name[len(FILE_PART_PREFIX):]
        self.form._file_parts += 1
        if self.form._file_parts > self.max_files:
            raise Rejected("TOO_MANY_FILES", f"Too many files: at most {self.max_files} file "
                                             f"parts per request")
        if placeholder in self.form.files:
            raise Rejected("INVALID_INPUT", f"File part '{start.name}' appears more than once")
        original = os.path.basename((start.filename or "").replace("\\", "/")) or placeholder
        mime = (start.content_type or "").strip() or \
            mimetypes.guess_type(original, strict=False)[0] or DEFAULT_MIME
        if not mime_allowed(mime, self.allowed):
            raise Rejected("INVALID_MIME_TYPE", f"MIME type '{mime}' of file '{original}' is "
                                                f"not allowed")
        path = self.form.staging / f"part-{self.form._file_parts}"
        handle = await trio.to_thread.run_sync(open, path, "xb")
        return _OpenPart("file", placeholder, path, original, mime, handle, hashlib.sha256())

    async def _write(self, part: _OpenPart | None, data: bytes) -> None:
        assert part is not None
        part.size += len(data)
        if part.kind == "field":
            part.text += data
        elif part.kind == "file":
            if part.size > self.max_size:
                raise Rejected("FILE_TOO_LARGE", f"File '{part.original}' exceeds maximum "
                                                 f"size of {self.max_size} bytes")
            await trio.to_thread.run_sync(_write_and_hash, part.handle, part.hasher, data)

    async def _close(self, part: _OpenPart | None) -> None:
        assert part is not None
        if part.kind == "field":
            self.form.fields[part.name] = part.text.decode("utf-8", errors="replace")
        elif part.kind == "file":
            await trio.to_thread.run_sync(part.handle.close)
            part.handle = None
            self.form.files[part.name] = StagedFile(part.staged_path, part.original, part.size,
                                                    part.mime, part.hasher.hexdigest())


def _write_and_hash(handle: BinaryIO, hasher: Any, data: bytes) -> None:
    handle.write(data)
    hasher.update(data)


def form_request(form: UploadForm) -> tuple[str, list[Any], str]:
    """``(sql, params, namespace_id)`` from the text parts; raises ``Rejected``."""
    sql_text = form.fields.get("sql")
    if sql_text is None or not sql_text.strip():
        raise Rejected("EMPTY_SQL", "No SQL statements provided")
    params: Any = []
    if form.fields.get("params", "").strip():
        try:
            params = json.loads(form.fields["params"])
        except (ValueError, RecursionError):  # issue 9: "[[[…" used to escape as a 500
            params = None
        if not isinstance(params, list):
            raise Rejected("INVALID_PARAMETER", "Params must be a JSON array")
    namespace = form.fields.get("namespace_id", "").strip() or DEFAULT_NAMESPACE
    return sql_text, params, namespace


async def sql_multipart(app: SluiceApp, scope: Scope, receive: Receive, send: Send,
                        user: User, content_type: str, started: float) -> None:
    """The multipart branch of ``POST /v1/api/sql`` (after authentication and the rate
    limit); replies in every case, after this request's staging directory is gone."""
    staging = app.engine.files.staging_dir / \
        f"{STAGING_PREFIX}{uuid.uuid4().hex}-{encode_user(user.user_id)}"
    try:
        reply = await _handle(app, receive, user, content_type, started, staging)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(shutil.rmtree, staging, True)
    await reply(send)


Reply = Callable[[Send], Awaitable[None]]


async def _handle(app: SluiceApp, receive: Receive, user: User, content_type: str,
                  started: float, staging: Path) -> Reply:
    from api.errors import too_large_body
    from api.routes.sql import reply_error, reply_results

    def send_error(status: int, body: dict[str, Any]) -> Reply:
        return lambda send: send_json(send, status, body)

    try:
        await trio.to_thread.run_sync(os.makedirs, staging)
        form = await FormReader(app, staging).read(receive, boundary_of(content_type))
        sql_text, params, namespace = form_request(form)
        session = Session(user.user_id, user.role, namespace)
        try:
            results = await _execute(app, session, form, sql_text, params)
        except Rejected:
            raise
        except Exception as exc:  # every other failure becomes an envelope
            failure = exc
        else:
            return lambda send: reply_results(send, results, session, started)
        return lambda send: reply_error(send, failure, session, started)
    except Rejected as exc:
        return send_error(*upload_error(exc.code, exc.message, _elapsed_ms(started)))
    except MultipartError as exc:
        return send_error(*upload_error("INVALID_INPUT", f"Invalid multipart body: {exc}",
                                        _elapsed_ms(started)))
    except BodyTooLarge as exc:
        return send_error(413, too_large_body(exc))


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


async def _execute(app: SluiceApp, session: Session, form: UploadForm, sql_text: str,
                   params: list[Any]) -> list:
    """Places the used files, runs the statement and settles the files' fate (the protocol
    of engine/files.py). Raises what the engine raises, or ``Rejected``."""
    engine = app.engine
    if not has_file_placeholders(sql_text):  # unused parts are dropped with the staging dir
        return await engine.execute(session, sql_text, params)
    target = upload_target(engine, session, sql_text)
    missing = [name for name in target.placeholders if name not in form.files]
    if missing:
        raise Rejected("MISSING_FILE", f"No file part 'file:{missing[0]}' for placeholder "
                                       f"FILE(\"{missing[0]}\")")
    placed: list[PlacedFile] = []
    outcome = "failed"
    try:
        for name in target.placeholders:
            placed.append(await engine.files.place(engine, target.table, target.user_id,
                                                   form.files[name]))
        refs = {name: item.ref_json for name, item in zip(target.placeholders, placed,
                                                            strict=True)}
        with trio.CancelScope(shield=True):
            results = await engine.execute(session, substitute_placeholders(sql_text, refs),
                                           params)
        outcome = "kept" if any(r.dml is None or r.row_count for r in results) else "failed"
        return results
    except StorageUnavailable:
        outcome = "unknown"  # the event may be in the log: the restart sweep decides
        raise
    except EngineError:
        raise
    except BaseException:
        outcome = "unknown"
        raise
    finally:
        if outcome == "unknown":
            engine.files.forget(placed)
        else:
            await engine.files.finish(placed, referenced=outcome == "kept")
