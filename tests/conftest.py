"""Shared test plumbing. Rigs and helpers live in tests/support/; outside programs are the
fixtures of tests/support/programs.py, and asking for one marks the test ``service``."""

from __future__ import annotations

import os

import pytest

# Every web server the suite starts (in this process or a child) holds each answer to its
# documented model and answers 500 when they differ: the API document cannot drift.
os.environ["CRACKSEG_CHECK_ANSWERS"] = "1"

# The helpers' asserts get pytest's messages too; it must run before they are imported.
pytest.register_assert_rewrite("tests.support")

from tests.support.programs import IN_CI as IN_CI  # noqa: E402
from tests.support.programs import PROGRAM_FIXTURES  # noqa: E402
from tests.support.programs import require_binary as require_binary  # noqa: E402

# Fixtures shared by several test modules.
pytest_plugins = [
    "tests.support.programs",
    "tests.support.prometheus",
    "tests.support.nginx",
    "tests.support.sshd",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The marker follows from the fixtures, so it cannot drift from what a test really needs.
    for item in items:
        if PROGRAM_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.service)
