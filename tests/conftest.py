"""Shared test plumbing. Area-specific fixtures live beside their tests (tests/support/servers.py, ...)."""

from __future__ import annotations

import os
import shutil

import pytest

# Fixtures shared by several test modules.
pytest_plugins = ["tests.support.prometheus"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of an external program a test needs: in CI its absence fails, elsewhere it skips."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but is not installed (see .ci/run)")
        pytest.skip(f"{name} not installed")
    return path
