"""Route paths with ``{name}`` segments, e.g. ``/v1/api/ingest/{namespace}/{table}``.

Used by ``SluiceApp`` (api/app.py) for the rows of THE route table whose path has a
parameter; exact paths stay a single dict lookup there and are tried first.

Matching rules:
- The path is split on ``/`` in its **raw** (still percent-encoded) form, ``scope["raw_path"]``,
  and each segment is percent-decoded exactly once (UTF-8). So ``%2F`` never splits a
  segment, and ``%252F`` arrives as the literal text ``%2F``.
- A parameter must be non-empty and must not contain ``/`` after decoding. A path whose
  segment breaks this (``…/ingest/a%2Fb/t``), or is not UTF-8, matches no route: the reply
  is the router's empty-bodied **404**, like any unknown path. Why 404 and not 400: the
  segment cannot name any resource (namespaces, tables, file and export ids never contain
  ``/``), the router has no error envelope of its own, and handlers are thereby guaranteed
  never to see a ``/`` in a parameter (no path confusion when one is used in a file path).
- Literal segments compare with the decoded segment, as the exact-path table compares the
  decoded ``scope["path"]``.
- Without ``raw_path`` (an ASGI server that does not send it) the decoded ``scope["path"]``
  is split instead and not decoded again.

Pure and synchronous; safe to share between tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes


@dataclass(frozen=True, slots=True)
class PathTemplate:
    path: str
    segments: tuple[str | None, ...]  # a literal, or None where a parameter goes
    names: tuple[str, ...]  # the parameters, in path order

    @classmethod
    def parse(cls, path: str) -> PathTemplate:
        assert path.startswith("/"), path
        segments: list[str | None] = []
        names: list[str] = []
        for part in path[1:].split("/"):
            if part.startswith("{") and part.endswith("}"):
                name = part[1:-1]
                assert name.isidentifier() and name not in names, f"bad parameter in {path}"
                names.append(name)
                segments.append(None)
            else:
                assert "{" not in part and "}" not in part, f"bad segment in {path}"
                segments.append(part)
        return cls(path, tuple(segments), tuple(names))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The parameters if the decoded segments ``parts`` fit this template."""
        if len(parts) != len(self.segments):
            return None
        values = []
        for want, got in zip(self.segments, parts, strict=True):
            if want is None:
                if not got or "/" in got:
                    return None
                values.append(got)
            elif want != got:
                return None
        return dict(zip(self.names, values, strict=True))


def is_template(path: str) -> bool:
    return "{" in path


def path_segments(scope: dict[str, Any]) -> list[str] | None:
    """The request path's segments, each decoded once; None when one is not UTF-8."""
    raw = scope.get("raw_path")
    if raw is None:
        return scope["path"][1:].split("/")
    raw = raw.split(b"?", 1)[0]  # some servers include the query string
    try:
        return [unquote_to_bytes(part).decode("utf-8") for part in raw[1:].split(b"/")]
    except UnicodeDecodeError:
        return None
