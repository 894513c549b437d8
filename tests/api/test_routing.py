"""Route templates with ``{name}`` segments (api/routing.py); the wire behaviour (404/405,
``%2F``) is covered against the real server in tests/api/test_ingest_route.py."""

from __future__ import annotations

import pytest

from api.routing import PathTemplate, path_segments

INGEST = PathTemplate.parse("/v1/api/ingest/{namespace}/{table}")


@pytest.mark.parametrize(("raw_path", "params"), [
    (b"/v1/api/ingest/app/items", {"namespace": "app", "table": "items"}),
    (b"/v1/api/ingest/%61pp/%C3%A9t%C3%A9", {"namespace": "app", "table": "\u00e9t\u00e9"}),
    (b"/v1/api/ingest/app/a%252Fb", {"namespace": "app", "table": "a%2Fb"}),  # decoded once
    (b"/v1/api/ingest/app/items?x=1", {"namespace": "app", "table": "items"}),
    (b"/v1/api/ingest/app/a%2Fb", None),  # a "/" inside a parameter
    (b"/v1/api/ingest/app/", None),  # an empty parameter
    (b"/v1/api/ingest/app/items/", None),
    (b"/v1/api/ingest/app", None),
    (b"/v1/api/%69ngest/app/items", {"namespace": "app", "table": "items"}),
])
def test_routing__template_match__raw_path_decoded_once(raw_path: bytes,
                                                        params: dict[str, str] | None) -> None:
    parts = path_segments({"raw_path": raw_path, "path": "unused"})
    assert parts is not None
    assert INGEST.match(parts) == params


def test_routing__not_utf8_or_no_raw_path() -> None:
    assert path_segments({"raw_path": b"/v1/api/ingest/app/%FF", "path": "x"}) is None
    # Without raw_path the decoded path is split and not decoded again.
    parts = path_segments({"path": "/v1/api/ingest/app/a%2Fb"})
    assert INGEST.match(parts) == {"namespace": "app", "table": "a%2Fb"}


def test_routing__template_parse__rejects_bad_templates() -> None:
    assert INGEST.names == ("namespace", "table")
    for bad in ("/a/{x}/{x}", "/a/{1x}", "/a/b{x}"):
        with pytest.raises(AssertionError):
            PathTemplate.parse(bad)
