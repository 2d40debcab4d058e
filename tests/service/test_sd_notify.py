"""``Type=notify``: the service tells systemd when it is ready, reloading and stopping, over
the datagram socket ``NOTIFY_SOCKET`` names (here one the test opens)."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.service.sd_notify import notify
from tests.support.service_helpers import Endpoint, running


@pytest.fixture
def manager() -> Iterator[tuple[socket.socket, str]]:
    # A short path: a UNIX socket's address is limited to ~107 bytes.
    folder = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(folder)


def _next(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_reloading_and_stopping_reach_the_manager(
    manager: tuple[socket.socket, str], tmp_path: Path
) -> None:
    sock, path = manager
    endpoint = Endpoint()
    try:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(
            f"deployments: [{{id: api, url: '{endpoint.url}'}}]\n"
            f"server: {{port: 0}}\nstore: {{path: '{tmp_path / 'h.db'}'}}\n"
        )
        with running("run", "-c", str(cfg), NOTIFY_SOCKET=path) as svc:
            ready = _next(sock)
            assert ready["READY"] == "1" and "1 deployment" in ready["STATUS"]
            svc.url()  # ready means serving
            svc.signal(signal.SIGHUP)
            reloading = _next(sock)
            assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
            assert _next(sock) == {"READY": "1"}
            svc.signal(signal.SIGTERM)
            assert _next(sock) == {"STOPPING": "1"}
            assert svc.wait() == 0
    finally:
        endpoint.close()


def test_the_abstract_namespace_and_no_manager() -> None:
    name = f"crackseg-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(64) == b"READY=1"
    assert not notify("READY=1", environ={})
    # Nobody listening: reported, never raised.
    assert not notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
