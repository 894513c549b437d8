"""Shared pytest setup: trio mode (pyproject), the slow tier and replayable seeds."""

from __future__ import annotations

import os
import random

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the slow tier")
    parser.addoption("--seed", type=int, default=None,
                     help="base seed for randomized tests (printed on failure)")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--seed") is None:
        config.option.seed = int(os.environ.get("SLUICE_TEST_SEED", random.randrange(2**32)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow tier: run with --run-slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str:
    return f"sluice base seed: --seed {config.getoption('--seed')}"


@pytest.fixture
def base_seed(request: pytest.FixtureRequest) -> int:
    """The run's base seed; a failing randomized test must print the seed it used."""
    return request.config.getoption("--seed")
