"""Secrets from files (``*_file``, ``server.token_file``): how Docker secrets, Kubernetes and
systemd's ``LoadCredential=`` pass them. Read once, trailing newline stripped, never shown."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from crackseg.utils.deployment.delivery import AlertDispatcher, RetryPolicy, build_handler
from crackseg.utils.deployment.delivery.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import HttpReceiver
from tests.support.service_helpers import Endpoint, cli, running

URL_SECRET = "hooktoken-1f2e3d"
SIGNING_SECRET = "s1gn-4b5c6d"
TOKEN = "bearer-7a8b9c"


def _secret(path: Path, value: str) -> str:
    path.write_text(value + "\n")  # as `echo` and most secret stores write it
    path.chmod(0o600)
    return str(path)


def test_a_handler_takes_its_secrets_from_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = HttpReceiver().start()
    d = AlertDispatcher(retry=RetryPolicy(initial=0.05, max_delay=0.1, max_age=5))
    try:
        handler = build_handler(
            {
                "type": "webhook",
                "url_file": _secret(tmp_path / "url", f"{receiver.url}/hook/{URL_SECRET}"),
                "secret_file": _secret(tmp_path / "signing", SIGNING_SECRET),
            }
        )
        d.add_handler(handler)
        d.dispatch("health_check_failed", DeploymentMetadata("api"), state="firing")
        assert d.wait_idle(10)
        (req,) = receiver.accepted()
        # The newline is gone: the path and the signature are the secrets themselves.
        assert req.path == f"/hook/{URL_SECRET}"
        ts, sig = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
        mac = hmac.new(SIGNING_SECRET.encode(), ts.encode() + b"." + req.body, hashlib.sha256)
        assert sig == f"sha256={mac.hexdigest()}"
        shown = repr(handler) + handler.name + handler.target + json.dumps(d.stats(), default=str)
        for secret in (URL_SECRET, SIGNING_SECRET):
            assert secret not in shown + caplog.text, secret
    finally:
        d.close()
        receiver.close()


def test_the_file_names_unreadable_secret_files_and_runs_with_readable_ones(
    tmp_path: Path,
) -> None:
    endpoint, receiver = Endpoint(), HttpReceiver().start()
    try:
        token_file = _secret(tmp_path / "token", TOKEN)
        url_file = _secret(tmp_path / "hook", f"{receiver.url}/hook/{URL_SECRET}")
        good = tmp_path / "good.yaml"
        good.write_text(
            f"deployments: [{{id: api, url: '{endpoint.url}', check_interval: 0.2}}]\n"
            f"handlers: [{{type: webhook, url_file: '{url_file}'}}]\n"
            f"server: {{port: 0, token_file: '{token_file}'}}\n"
            f"store: {{path: '{tmp_path / 'h.db'}'}}\n"
        )
        ok = cli("validate", str(good))
        assert ok.returncode == 0, ok.stderr
        assert TOKEN not in ok.stdout + ok.stderr and URL_SECRET not in ok.stdout + ok.stderr

        bad = tmp_path / "bad.yaml"
        bad.write_text(
            good.read_text()
            .replace(token_file, str(tmp_path / "missing-token"))
            .replace(url_file, str(tmp_path))  # a directory: unreadable as a file
        )
        r = cli("validate", str(bad))
        assert r.returncode == 1
        lines = r.stderr.splitlines()
        assert f"  server.token_file: cannot read {tmp_path / 'missing-token'}: " in "\n".join(
            lines
        ), lines
        assert any(
            line.startswith(f"  handlers[0].url_file: cannot read {tmp_path}: ") for line in lines
        ), lines

        with running("run", "-c", str(good), "--log-level", "debug") as svc:
            url = svc.url()
            body = json.dumps({"deployment_id": "api", "duration_seconds": 60}).encode()

            def post(token: str | None) -> int:
                req = urllib.request.Request(
                    f"{url}/api/v1/silences", data=body, method="POST",
                    headers={"Content-Type": "application/json"}
                    | ({"Authorization": f"Bearer {token}"} if token else {}),
                )  # fmt: skip
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        return int(resp.status)
                except urllib.error.HTTPError as exc:
                    return int(exc.code)

            assert post(None) == 401
            assert post(TOKEN[:-1]) == 401
            assert post(TOKEN) == 201  # the file's newline is not part of the token
        logs = "\n".join(svc.out + svc.err)
        assert TOKEN not in logs and URL_SECRET not in logs
    finally:
        endpoint.close()
        receiver.close()
