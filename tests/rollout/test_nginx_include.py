"""``deploy.router`` with ``mode: include``: the host's nginx serves, TLS from a test CA.

The test starts a real nginx master as "the host's", with its own configuration that
includes the two files the router writes; the router (built from the YAML keys, as the
service builds it) validates each change with ``nginx -t`` of that configuration, reloads
that master, and never starts or stops it. Clients reach the versions over HTTPS, verifying
the certificate against the test CA (made with the openssl CLI).
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from crackseg.utils.deployment.errors import ConfigError, RouterError
from crackseg.utils.deployment.rollout.routers.base import Backend
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.service.config import ConfigFileError, parse_config
from crackseg.utils.deployment.service.deploy_target import build_router
from tests.support.runtime import sample_target, start_instance
from tests.support.tls_ca import TestCA
from tests.support.wait import free_port, wait_until


@pytest.fixture
def test_ca(tmp_path: Path, openssl_bin: str) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1 it signed, in a folder whose name
    holds a space (the paths are quoted in nginx's configuration)."""
    d = tmp_path / "tls files"
    d.mkdir()
    ca = TestCA(openssl_bin, d)
    server = ca.issue("server")
    return {"ca": ca.cert, "server": server.cert, "server-key": server.key}


HOST_CONF = """\
# The host's own nginx: its pid file, logs and temp folders; ours are included.
pid "{root}/nginx.pid";
error_log "{root}/error.log" notice;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path "{root}/tmp/body";
    proxy_temp_path "{root}/tmp/proxy";
    fastcgi_temp_path "{root}/tmp/fastcgi";
    uwsgi_temp_path "{root}/tmp/uwsgi";
    scgi_temp_path "{root}/tmp/scgi";
    server {{ listen 127.0.0.1:{own_port}; location / {{ return 200 "the host's own site"; }} }}
    include "{include}/upstream.conf";
    include "{include}/server.conf";
}}
"""


class HostNginx:
    """The host's nginx master, started by the test from its own configuration."""

    def __init__(self, binary: str, root: Path, include: Path) -> None:
        self.root, self.conf = root, root / "nginx.conf"
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.own_port = free_port()
        self.conf.write_text(HOST_CONF.format(root=root, include=include, own_port=self.own_port))
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: (root / "nginx.pid").exists(), 20, "the host's nginx to start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _router_config(include: Path, main_config: Path, ca: dict[str, Path], port: int,
                   tls_port: int) -> dict[str, object]:  # fmt: skip
    return {
        "type": "nginx", "mode": "include", "workdir": str(include), "listen_port": port,
        "main_config": str(main_config),
        "listen_tls": {"port": tls_port, "certificate": str(ca["server"]),
                       "certificate_key": str(ca["server-key"])},
    }  # fmt: skip


def _deploy_section(router: dict[str, object]) -> dict[str, object]:
    return {"deploy": {"target": {"command": ["true"]}, "router": router}}


def _https_version(port: int, ca: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))  # verifies the chain and 127.0.0.1
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        return str(json.loads(resp.read())["version"])
    finally:
        conn.close()


@pytest.fixture
def include_rig(
    tmp_path: Path, nginx_bin: str, test_ca: dict[str, Path]
) -> Iterator[tuple[NginxRouter, HostNginx, int]]:
    include = tmp_path / "included by the host"
    port, tls_port = free_port(), free_port()
    # The router writes its files first: the host's configuration names them.
    root = tmp_path / "host"
    section = _deploy_section(_router_config(include, root / "nginx.conf", test_ca, port, tls_port))
    deploy = parse_config(section).deploy
    assert deploy is not None
    router = build_router(deploy, tmp_path / "unused")
    assert isinstance(router, NginxRouter) and not router.owns_process
    host = HostNginx(nginx_bin, root, include)
    try:
        yield router, host, tls_port
    finally:
        router.close()
        host.close()


def test_include_mode_serves_tls_through_the_hosts_nginx(
    include_rig: tuple[NginxRouter, HostNginx, int], tmp_path: Path, test_ca: dict[str, Path]
) -> None:
    router, host, tls_port = include_rig
    master = host.proc.pid
    with sample_target(tmp_path) as target:
        v1 = start_instance(target, "v1")
        router.apply([Backend(v1.address, 100, "v1")])
        assert _https_version(tls_port, test_ca["ca"]) == "v1"
        v2 = start_instance(target, "v2")
        router.apply([Backend(v1.address, 0, "v1"), Backend(v2.address, 100, "v2")])
        assert _https_version(tls_port, test_ca["ca"]) == "v2"
        assert router.sample_versions(count=5) == {"v2": 5}  # the plain listener too
        # The host's nginx was reloaded, never replaced; its own site still serves.
        assert host.proc.poll() is None and psutil.Process(master).is_running()
        conn = http.client.HTTPConnection("127.0.0.1", host.own_port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"the host's own site"
        conn.close()

        # Checked against the host's configuration: broken there, nothing is reloaded.
        good = host.conf.read_text()
        host.conf.write_text(good.replace("worker_processes 1;", "worker_processes 1"))
        with pytest.raises(RouterError, match=r"nginx -t of .*nginx\.conf rejected"):
            router.apply([Backend(v1.address, 100, "v1")])
        assert _https_version(tls_port, test_ca["ca"]) == "v2"
        host.conf.write_text(good)
        router.apply([Backend(v1.address, 100, "v1")])
        assert _https_version(tls_port, test_ca["ca"]) == "v1"
    router.close()
    assert host.proc.poll() is None  # the router does not own the host's nginx


def _https_status(port: int, ca: Path) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_closed_router_leaves_the_hosts_nginx_valid_and_answering_503(
    include_rig: tuple[NginxRouter, HostNginx, int],
    tmp_path: Path,
    test_ca: dict[str, Path],
    nginx_bin: str,
) -> None:
    router, host, tls_port = include_rig
    with sample_target(tmp_path) as target:
        v1 = start_instance(target, "v1")
        router.apply([Backend(v1.address, 100, "v1")])
        assert _https_version(tls_port, test_ca["ca"]) == "v1"
        router.close()  # then the version behind it stops (the target closes)
    # The host's nginx still includes our files: they must stay valid there, and say that
    # nothing is deployed rather than proxy to the stopped version (502).
    check = subprocess.run(
        [nginx_bin, "-t", "-c", str(host.conf)], capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stderr
    status, body = _https_status(tls_port, test_ca["ca"])
    assert status == 503 and b"router closed" in body, (status, body)
    assert router.sample_versions(count=3) == {"HTTP 503": 3}
    assert router.current() == []
    router.close()  # idempotent
    conn = http.client.HTTPConnection("127.0.0.1", host.own_port, timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"the host's own site"
    conn.close()
    assert host.proc.poll() is None  # reloaded, never stopped

    # The next router on the same files (a restart of the service) serves again.
    again = NginxRouter(
        router.listen_port, workdir=router.workdir, owns_process=False,
        main_config=router.main_config, listen_tls=router.listen_tls, server_snippet=True,
    )  # fmt: skip
    try:
        with sample_target(tmp_path / "again") as target:
            v2 = start_instance(target, "v2")
            again.apply([Backend(v2.address, 100, "v2")])
            assert _https_version(tls_port, test_ca["ca"]) == "v2"
    finally:
        again.close()
    assert _https_status(tls_port, test_ca["ca"])[0] == 503


def test_owned_nginx_serves_tls_too(
    tmp_path: Path, nginx_bin: str, test_ca: dict[str, Path]
) -> None:
    from crackseg.utils.deployment.rollout.routers.nginx_conf import TlsListen

    tls_port = free_port()
    tls = TlsListen(tls_port, str(test_ca["server"]), str(test_ca["server-key"]))
    with sample_target(tmp_path) as target, NginxRouter(
        workdir=tmp_path / "nginx", listen_tls=tls, worker_shutdown_timeout="2s"
    ) as router:  # fmt: skip
        v1 = start_instance(target, "v1")
        router.apply([Backend(v1.address, 100, "v1")])
        assert _https_version(tls_port, test_ca["ca"]) == "v1"


def test_router_keys_are_checked_when_the_file_is_read(
    tmp_path: Path, test_ca: dict[str, Path]
) -> None:
    with pytest.raises(ConfigFileError, match=r"deploy\.router.*needs workdir"):
        parse_config(_deploy_section({"type": "nginx", "mode": "include", "listen_port": 8000}))
    with pytest.raises(ConfigFileError, match=r"deploy\.router.*needs listen_port"):
        parse_config(_deploy_section({"type": "nginx", "mode": "include",
                                      "workdir": str(tmp_path), "listen_port": 0}))  # fmt: skip
    bad = {"port": 8443, "certificate": f"{tmp_path}/x;y.pem", "certificate_key": "k.pem"}
    with pytest.raises(ConfigFileError, match=r"deploy\.router\.listen_tls\.certificate"):
        parse_config(_deploy_section({"type": "nginx", "listen_tls": bad}))
    missing = {"port": 8443, "certificate": str(tmp_path / "none.pem"),
               "certificate_key": str(test_ca["server-key"])}  # fmt: skip
    cfg = parse_config(_deploy_section({"type": "nginx", "listen_tls": missing}))
    assert cfg.deploy is not None and cfg.deploy.router.listen_tls is not None
    with pytest.raises(ConfigError, match="not a readable file") as exc:
        cfg.deploy.router.listen_tls.tls_listen()
    assert exc.value.field == "listen_tls.certificate"
