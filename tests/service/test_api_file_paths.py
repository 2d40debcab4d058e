"""Files a deployment added through the API may name: its TLS files must lie under
``server.allowed_file_dirs`` (none listed: refused), whatever links or ``..`` say, with the
same answer whether a file outside exists or not, and no error echoes a file's contents.
The operator's own configuration file names any file. Against the real service and API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.service_helpers import cli, running
from tests.support.tls_ca import TestCA
from tests.support.tls_server import SwappableTlsServer, server_context
from tests.support.wait import wait_until

TOKEN = "file-paths-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "SECRET-LINE-do-not-echo-7f3a"


def _post(base: str, dep_id: str, url: str, **tls: Any) -> requests.Response:
    body = {"deployment_id": dep_id, "health_check_url": url, "tls": tls}
    return requests.post(f"{base}/api/v1/deployments", json=body, headers=AUTH, timeout=10)


def _refused(r: requests.Response, field: str, words: str) -> None:
    assert r.status_code == 400, r.text
    problem = r.json()
    assert problem["field"] == field, problem
    assert words in problem["detail"], problem


@dataclass
class Files:
    ca: TestCA  # its files in the allowed directory
    allowed: Path
    elsewhere: Path
    outside: Path  # a copy of the CA outside the allowed directory
    client_cert: Path
    client_key: Path


@pytest.fixture
def files(openssl_bin: str, tmp_path: Path) -> Files:
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    ca = TestCA(openssl_bin, allowed)
    client = ca.issue("client", client=True)
    outside = elsewhere / "ca.pem"
    outside.write_bytes(ca.cert.read_bytes())
    (allowed / "link.pem").symlink_to(outside)
    (allowed / "secret.pem").write_text(f"{SECRET}\n")
    return Files(ca, allowed, elsewhere, outside, client.cert, client.key)


def test_the_service_takes_files_only_under_its_allowed_dirs(files: Files, tmp_path: Path) -> None:
    ca = str(files.ca.cert)
    server = SwappableTlsServer(server_context(files.ca, "server", client_ca=files.ca.cert))
    cfg = tmp_path / "monitor.yaml"
    # The operator's file names a CA outside the allowed directory: that is its right.
    cfg.write_text(
        "deployments:\n"
        f"  - {{id: from-file, url: '{server.url}', check_interval: 3600,\n"
        f"     tls: {{ca_file: '{files.outside}', cert_file: '{files.client_cert}',\n"
        f"            key_file: '{files.client_key}'}}}}\n"
        f"store: {{path: '{tmp_path / 'history.db'}'}}\n"
        f"server: {{port: 0, token: {TOKEN}, allowed_file_dirs: ['{files.allowed}']}}\n"
    )
    try:
        with running("run", "-c", str(cfg)) as svc:
            base = svc.url()
            setting = "server.allowed_file_dirs"
            outside, missing = files.outside, files.elsewhere / "missing.pem"
            first = _post(base, "a", server.url, ca_file=str(outside))
            _refused(first, "tls.ca_file", setting)
            # Whether the file exists or not, the same answer: no way to probe the disk.
            again = _post(base, "a", server.url, ca_file=str(missing))
            assert again.json()["detail"] == first.json()["detail"]
            _refused(_post(base, "a", server.url, ca_file=str(files.allowed / "link.pem")),
                     "tls.ca_file", "symbolic links resolved")  # fmt: skip
            dotted = f"{files.allowed}/../elsewhere/ca.pem"
            _refused(_post(base, "a", server.url, ca_file=dotted), "tls.ca_file", setting)
            _refused(_post(base, "a", server.url, ca_file="allowed/ca.pem"), "tls.ca_file",
                     "absolute")  # fmt: skip
            _refused(_post(base, "a", server.url, ca_file=ca,
                           cert_file=str(outside)), "tls.cert_file", setting)  # fmt: skip
            _refused(_post(base, "a", server.url, ca_file=ca,
                           cert_file=str(files.client_cert), key_file="/etc/shadow"),
                     "tls.key_file", setting)  # fmt: skip

            # A file inside that is not what it should be: named, its contents never shown.
            for field in ("ca_file", "cert_file"):
                tls = {"ca_file": ca, field: str(files.allowed / "secret.pem")}
                r = _post(base, "s", server.url, **tls)
                assert r.status_code == 400 and r.json()["field"] == f"tls.{field}", r.text
                assert SECRET not in r.text

            # Inside the allowed directory: taken, and the check speaks mTLS with them.
            r = _post(base, "api", server.url, ca_file=ca,
                      cert_file=str(files.client_cert), key_file=str(files.client_key))  # fmt: skip
            assert r.status_code == 201, r.text
            wait_until(lambda: requests.get(f"{base}/api/v1/deployments/api", timeout=5)
                       .json()["health_status"] == "healthy", 20, "healthy over mTLS")  # fmt: skip
            status = requests.get(f"{base}/api/v1/deployments/from-file", timeout=5).json()
            assert status["deployment_id"] == "from-file"
            assert SECRET not in "\n".join(svc.out + svc.err)
    finally:
        server.stop()


def test_without_allowed_dirs_file_paths_are_refused_through_the_api(
    files: Files,
) -> None:
    monitor = DeploymentHealthMonitor()
    try:
        with WebServer(monitor, token=TOKEN) as server:
            r = _post(server.url, "a", "https://127.0.0.1:9/health", ca_file=str(files.ca.cert))
            _refused(r, "tls.ca_file", "refused through the API")
            assert "server.allowed_file_dirs" in r.json()["detail"]
            assert "a" not in monitor.monitored_deployments
            # TLS options without files stay open to the API.
            r = _post(server.url, "b", "https://127.0.0.1:9/health", verify=False)
            assert r.status_code == 201, r.text
    finally:
        monitor.close()


def test_a_relative_allowed_dir_is_a_config_error_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("server: {allowed_file_dirs: [certs]}\n")
    done = cli("validate", str(cfg))
    assert done.returncode != 0
    text = done.stdout + done.stderr
    assert "server.allowed_file_dirs" in text and "absolute" in text, text
