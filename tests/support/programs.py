"""The outside programs tests drive, as fixtures: asking for one is what marks a test ``service``.

Each fixture yields the program's path. ``tests/conftest.py`` adds the ``service`` marker to
every test whose fixture closure (transitively, through rigs) holds one of ``PROGRAM_FIXTURES``,
so ``-m "not service"`` deselects exactly the tests that need a program. In CI (``CI=true``) a
missing program fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of an external program a test needs: in CI its absence fails, elsewhere it skips.

    Tests ask for a program through its fixture below (so the ``service`` marker follows); call
    this directly only for a program that has no fixture yet, and add one.
    """
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI but is not installed (see .ci/run)")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_binary("nginx")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_binary("prometheus")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def alertmanager_bin() -> str:
    return require_binary("prometheus-alertmanager")


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    return require_binary("chromium")


@pytest.fixture(scope="session")
def sshd_bin() -> str:
    return require_binary("sshd")


@pytest.fixture(scope="session")
def ssh_bin() -> str:
    return require_binary("ssh")


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    return require_binary("openssl")


@pytest.fixture(scope="session")
def curl_bin() -> str:
    return require_binary("curl")


@pytest.fixture(scope="session")
def systemd_analyze_bin() -> str:
    return require_binary("systemd-analyze")


# Every fixture above: a test whose fixture closure holds one of these needs an outside program.
PROGRAM_FIXTURES = frozenset(
    {
        "nginx_bin",
        "prometheus_bin",
        "promtool_bin",
        "alertmanager_bin",
        "chromium_bin",
        "sshd_bin",
        "ssh_bin",
        "openssl_bin",
        "curl_bin",
        "systemd_analyze_bin",
    }
)
