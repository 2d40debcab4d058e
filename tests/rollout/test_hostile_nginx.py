"""Every value written into nginx's configuration is quoted or refused: a router in a folder
whose path has a space serves (real ``nginx -t``, real nginx, real backend); ``;``, ``{``,
``}`` or a line break are refused naming the setting and never written; ``listen_host: ::1``
is served as ``[::1]:PORT``."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.rollout.routers.base import Backend
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.base import Instance
from tests.support.service_helpers import cli


def _serve(host: str) -> tuple[ThreadingHTTPServer, str]:
    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b'{"status": "healthy"}'
            self.send_response(200)
            self.send_header("X-Version", "v1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = Server((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, Instance("i", "v1", host, server.server_address[1]).address


@pytest.fixture
def backend() -> Iterator[str]:
    server, address = _serve("127.0.0.1")
    yield address
    server.shutdown()
    server.server_close()


@pytest.fixture
def backend6() -> Iterator[str]:
    server, address = _serve("::1")
    yield address
    server.shutdown()
    server.server_close()


def _get(host: str, port: int, path: str = "/predict") -> tuple[int, str | None]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Version")
    finally:
        conn.close()


def test_a_router_in_a_folder_with_a_space_serves(
    tmp_path: Path, backend: str, nginx_bin: str
) -> None:
    nginx = nginx_bin
    workdir = tmp_path / "my rollouts" / "nginx dir"
    with NginxRouter(workdir=workdir, worker_shutdown_timeout="2s") as router:
        router.apply([Backend(backend, 100, "v1")])  # runs nginx -t on the candidate
        assert _get("127.0.0.1", router.listen_port) == (200, "v1")
        out = subprocess.run(
            [nginx, "-t", "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert f'"{workdir}/nginx.pid"' in (workdir / "nginx.conf").read_text()
        assert router.measure([backend], 0.0) is not None  # the access log at a spaced path


@pytest.mark.parametrize("bad", [";", "{", "}", "\n", '"', "$"])
def test_a_folder_nginx_would_read_as_configuration_is_refused(
    tmp_path: Path, bad: str, nginx_bin: str
) -> None:
    workdir = tmp_path / f"a{bad}b" / "nginx"
    with pytest.raises(ConfigError) as caught:
        NginxRouter(workdir=workdir)
    assert caught.value.field == "workdir"
    assert "nginx would read it as configuration" in caught.value.problem
    assert not workdir.exists()  # nothing made, nothing written


@pytest.mark.parametrize("port", [0, None])
def test_ipv6_loopback_is_served_in_brackets(
    tmp_path: Path, backend: str, backend6: str, port: int | None, nginx_bin: str
) -> None:
    if port is None:
        from crackseg.utils.deployment.processes import free_port

        port = free_port("::1")
    with NginxRouter(port, listen_host="::1", workdir=tmp_path / "nginx") as router:
        assert router.public_url == f"http://[::1]:{router.listen_port}"
        assert port == 0 or router.listen_port == port
        router.apply([Backend(backend, 100, "v1")])
        assert _get("::1", router.listen_port) == (200, "v1")
        assert backend6.startswith("[::1]:")  # an instance on ::1 is an upstream nginx takes
        router.apply([Backend(backend6, 100, "v1")])
        assert _get("::1", router.listen_port) == (200, "v1")


@pytest.mark.parametrize("host", ["a;b", "127.0.0.1; include /etc/passwd", "x y", "[::1", ""])
def test_a_listen_host_nginx_cannot_take_is_refused(
    tmp_path: Path, host: str, nginx_bin: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        NginxRouter(listen_host=host, workdir=tmp_path / "nginx")
    assert caught.value.field == "listen_host"
    assert not (tmp_path / "nginx" / "nginx.conf").exists()


def _deploy_config(tmp_path: Path, router: str) -> Path:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "deploy:\n  target:\n    command: [python, -m, http.server, '{port}']\n"
        f"  router:\n    type: nginx\n{router}"
    )
    return cfg


def test_validate_names_listen_host_and_workdir(tmp_path: Path) -> None:
    r = cli("validate", str(_deploy_config(tmp_path, "    listen_host: 'a;b'\n")))
    assert r.returncode == 1 and "deploy.router.listen_host" in r.stderr, r.stderr
    r = cli("validate", str(_deploy_config(tmp_path, "    workdir: '/tmp/x;y'\n")))
    assert r.returncode == 1 and "deploy.router.workdir" in r.stderr, r.stderr
    r = cli("validate", str(_deploy_config(tmp_path, "    listen_host: '::1'\n")))
    assert r.returncode == 0, r.stderr
    r = cli("validate", str(_deploy_config(tmp_path, "    workdir: '/tmp/with space'\n")))
    assert r.returncode == 0, r.stderr
