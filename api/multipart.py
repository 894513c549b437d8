"""A small push parser for ``multipart/form-data`` bodies (RFC 7578 / RFC 2046 §5.1), built
for streaming: feed it the body in chunks as they arrive and it hands back events, holding
at most one chunk plus a delimiter's length (and one part's header block) in memory.

Events returned by ``MultipartParser.feed``:
    ``PartStart(name, filename, content_type)``  a part's headers were read
    ``PartData(bytes)``                          some of the current part's body
    ``PartEnd()``                                the current part is complete
``close()`` checks that the closing delimiter was seen (else ``MultipartError``).

Accepted shape: an optional preamble, then parts each introduced by ``--boundary`` CRLF,
headers, an empty line and the body; the body ends at CRLF ``--boundary``; ``--boundary--``
ends the message (the epilogue after it is ignored). Transport padding (spaces or tabs
after a delimiter) is tolerated. Each part needs a ``Content-Disposition: form-data`` header
with a ``name``; ``filename`` (or RFC 5987 ``filename*=UTF-8''…``) is optional. Header
blocks larger than ``HEADER_BLOCK_MAX_BYTES`` and more than ``PARTS_MAX`` parts are
refused, so a hostile body cannot make the parser buffer or loop without bound.

Pure and synchronous; one instance per request, not shared between tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

# One part's header block (Content-Disposition + Content-Type + a few more) is small.
HEADER_BLOCK_MAX_BYTES = 16 * 1024
# Parts per request, any kind: well above sql + params + namespace_id + the file limit.
PARTS_MAX = 1000
# RFC 2046: a boundary is 1 to 70 characters.
BOUNDARY_MAX_CHARS = 70


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)
_PARAM = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/form-data`` Content-Type."""
    params = _params(content_type)
    boundary = params.get("boundary")
    if not boundary or len(boundary) > BOUNDARY_MAX_CHARS:
        raise MultipartError("multipart/form-data needs a boundary of 1 to 70 characters")
    return boundary


def _params(value: str) -> dict[str, str]:
    """``; key=value`` parameters after the first item, keys lowercased, quotes undone."""
    semicolon = value.find(";")
    found: dict[str, str] = {}
    if semicolon < 0:
        return found
    for match in _PARAM.finditer(value, semicolon):
        raw = match.group(2).strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        found[match.group(1).lower()] = raw
    return found


class MultipartParser:
    def __init__(self, boundary: str) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        # The first delimiter may open the body with no CRLF before it.
        self._buffer = b"\r\n"
        self._state = _PREAMBLE
        self._parts = 0

    def feed(self, data: bytes) -> list[Event]:
        """Consumes ``data``; returns the events it completes. Raises ``MultipartError``."""
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        if self._state != _DONE:
            raise MultipartError("the multipart body ended before its closing boundary")

    def _step(self, events: list[Event]) -> bool:
        """Advances the state machine once; False when more input is needed."""
        if self._state == _PREAMBLE:
            return self._skip_to_delimiter()
        if self._state == _AFTER_DELIMITER:
            return self._after_delimiter()
        if self._state == _HEADERS:
            return self._headers(events)
        if self._state == _BODY:
            return self._body(events)
        self._buffer = b""  # the epilogue is ignored
        return False

    def _skip_to_delimiter(self) -> bool:
        at = self._buffer.find(self._delimiter)
        if at < 0:
            self._buffer = self._buffer[-(len(self._delimiter) - 1):]
            return False
        self._buffer = self._buffer[at + len(self._delimiter):]
        self._state = _AFTER_DELIMITER
        return True

    def _after_delimiter(self) -> bool:
        stripped = self._buffer.lstrip(b" \t")
        if len(stripped) < 2:
            if len(self._buffer) > HEADER_BLOCK_MAX_BYTES:
                raise MultipartError("malformed multipart boundary line")
            return False
        if stripped.startswith(b"--"):
            self._state, self._buffer = _DONE, b""
            return False
        if not stripped.startswith(b"\r\n"):
            raise MultipartError("malformed multipart boundary line")
        self._buffer = stripped[2:]
        self._state = _HEADERS
        return True

    def _headers(self, events: list[Event]) -> bool:
        if self._buffer.startswith(b"\r\n"):
            end, block = 2, b""
        else:
            at = self._buffer.find(b"\r\n\r\n")
            if at < 0:
                if len(self._buffer) > HEADER_BLOCK_MAX_BYTES:
                    raise MultipartError("a multipart part's headers are too large")
                return False
            end, block = at + 4, self._buffer[:at]
        if end > HEADER_BLOCK_MAX_BYTES:
            raise MultipartError("a multipart part's headers are too large")
        self._parts += 1
        if self._parts > PARTS_MAX:
            raise MultipartError(f"more than {PARTS_MAX} multipart parts")
        events.append(_part_start(block))
        self._buffer = self._buffer[end:]
        self._state = _BODY
        return True

    def _body(self, events: list[Event]) -> bool:
        at = self._buffer.find(self._delimiter)
        if at < 0:
            keep = len(self._delimiter) - 1  # a delimiter may straddle two chunks
            if len(self._buffer) > keep:
                events.append(PartData(self._buffer[:-keep]))
                self._buffer = self._buffer[-keep:]
            return False
        if at:
            events.append(PartData(self._buffer[:at]))
        events.append(PartEnd())
        self._buffer = self._buffer[at + len(self._delimiter):]
        self._state = _AFTER_DELIMITER
        return True


def _part_start(block: bytes) -> PartStart:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        key, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed multipart header line {line[:80]!r}")
        headers[key.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition", "")
    if disposition.split(";", 1)[0].strip().lower() != "form-data":
        raise MultipartError("each multipart part needs Content-Disposition: form-data")
    params = _params(disposition)
    name = params.get("name")
    if name is None:
        raise MultipartError("a multipart part has no name")
    filename = params.get("filename")
    extended = params.get("filename*")
    if extended is not None and "''" in extended:
        charset, _, encoded = extended.partition("''")
        encoding = "latin-1" if charset.strip().lower() == "iso-8859-1" else "utf-8"
        filename = unquote(encoded, encoding=encoding, errors="replace")
    return PartStart(name, filename, headers.get("content-type") or None)
