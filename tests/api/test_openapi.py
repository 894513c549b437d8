"""The OpenAPI description (api/openapi.py, issue 9): generated from THE route table, so a
row without a description — or a description without a row — fails here; served publicly
at ``GET /v1/api/openapi.json``; a valid OpenAPI 3.1 document (schemathesis loads it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis

from api.app import ROUTES
from api.openapi import OPERATIONS, document
from tests.api.harness import http_request, running_server


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    description: str


def test_openapi__every_route_row_described_and_every_description_a_row() -> None:
    doc = document(ROUTES, "0")
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert described == {(r.method, r.path) for r in ROUTES} == set(OPERATIONS)
    for row in ROUTES:
        operation = doc["paths"][row.path][row.method.lower()]
        assert operation["summary"] == row.description
        for status in operation["responses"]:
            assert status in ("101", "503") or int(status) < 500, (row.path, status)


def test_openapi__drift__refused() -> None:
    with pytest.raises(ValueError, match="routes without an OpenAPI description"):
        document([*ROUTES, Row("DELETE", "/v1/api/sql", "new")], "0")
    with pytest.raises(ValueError, match="OpenAPI descriptions without a route"):
        document(ROUTES[1:], "0")


def test_openapi__valid_document__every_operation_loads() -> None:
    schema = schemathesis.openapi.from_dict(document(ROUTES, "0"))
    schema.validate()
    labels = {op.ok().label for op in schema.get_all_operations()}
    assert labels == {f"{r.method} {r.path}" for r in ROUTES}


async def test_openapi__served_without_auth(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        reply = await http_request(server, "GET", "/v1/api/openapi.json")
        assert reply.status == 200
        assert reply.headers["content-type"] == "application/json"
        served = json.loads(reply.body)
        assert served["openapi"] == "3.1.0"
        assert served["paths"] == document(ROUTES, served["info"]["version"])["paths"]
        assert served["paths"]["/v1/api/openapi.json"]["get"]["security"] == []
        assert (await http_request(server, "POST", "/v1/api/openapi.json")).status == 405
