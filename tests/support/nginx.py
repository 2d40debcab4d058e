"""The one nginx rig of the tests: a real ``NginxRouter`` (Debian's nginx) in the test's
temporary folder, started, and closed (no nginx process left) at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter

# Long enough for an in-flight keep-alive request to finish across a reload, short enough
# that a test's teardown does not wait on a held connection.
WORKER_SHUTDOWN_TIMEOUT = "5s"


@pytest.fixture
def nginx_router(tmp_path: Path, nginx_bin: str) -> Iterator[NginxRouter]:
    """A started router on a free port with its files under ``tmp_path / "nginx"``."""
    with NginxRouter(
        workdir=tmp_path / "nginx", worker_shutdown_timeout=WORKER_SHUTDOWN_TIMEOUT
    ) as router:
        yield router
