"""Property-based API fuzzing from the OpenAPI document (issue 9): schemathesis generates
requests for every operation of ``GET /v1/api/openapi.json`` — valid ones and, in negative
mode, ones that break the schema — and sends them to the real server with a valid bearer
token (alice's, role user, or the admin's, role dba). Each response must not be a server
error, must use a documented status and content type and match the documented schema;
afterwards the server is healthy and has logged no unexpected error.

Two tiers: a short run in the default tier (a fixed seed, so the same ~60 requests every
time, ~10 s) and a long one (2,000 requests, seeded by ``--seed``) behind ``--run-slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import given, seed
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.fuzz_support import call, fuzz_settings, fuzz_world, run_property

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
SHORT_EXAMPLES = 60
SHORT_RUN_SEED = 9  # the default tier's run is the same every time; the slow one uses --seed
# The ingest bodies: NDJSON is text, an Arrow IPC stream is bytes (schemathesis knows
# neither media type by name).
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
schemathesis.serializer.alias("application/vnd.apache.arrow.stream", "application/octet-stream")
LONG_EXAMPLES = 2000


def _strategy(schema: schemathesis.BaseSchema) -> st.SearchStrategy:
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    return st.one_of([op.ok().as_strategy(generation_mode=mode)
                      for op in schema.get_all_operations() for mode in modes])


def _bound_long_poll(case: schemathesis.Case) -> None:
    # A consume may wait up to topic_long_poll_max_seconds (300 s) for messages; the
    # fuzzer's client would time out first. Any number above the bound is sent as the bound.
    body = case.body
    if isinstance(body, dict):
        wait = body.get("timeout_seconds")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 1:
            body["timeout_seconds"] = 1


async def _fuzz(tmp_path: Path, base_seed: int, examples: int) -> None:
    async with fuzz_world(tmp_path) as world:
        server = world.server
        served = call(server, "GET", "/v1/api/openapi.json")
        schema = schemathesis.openapi.from_dict(served.json())
        tokens = [world.users.alice, world.users.admin]  # roles user and dba

        @seed(base_seed)
        @fuzz_settings(examples)
        @given(case=_strategy(schema), token=st.sampled_from(tokens))
        def property_(case: schemathesis.Case, token: str) -> None:
            _bound_long_poll(case)
            headers = {"Authorization": f"Bearer {token}"}
            response = case.call(base_url=server.base_url, headers=headers, timeout=15)
            case.validate_response(response, checks=CHECKS, headers=headers)

        await run_property(property_, base_seed)


async def test_fuzz_openapi__short_deterministic_run(tmp_path: Path) -> None:
    await _fuzz(tmp_path, SHORT_RUN_SEED, SHORT_EXAMPLES)


@pytest.mark.slow
async def test_fuzz_openapi__long_run(tmp_path: Path, base_seed: int) -> None:
    await _fuzz(tmp_path, base_seed, LONG_EXAMPLES)
