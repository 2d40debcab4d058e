"""Channel options a receiver would refuse at every send are refused on load instead, naming
the handler and the option: Alertmanager label names and values (against Alertmanager's own
rule, checked on a real Alertmanager), HTTP headers, and mail header values."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from crackseg.utils.deployment.delivery.channels.alertmanager import AlertmanagerHandler
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import AlertmanagerProcess
from tests.support.service_helpers import cli


def _config(tmp_path: Path, labels: str) -> Path:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "deployments:\n  - id: api\n    url: http://127.0.0.1:1/health\n"
        "handlers:\n  - type: alertmanager\n    url: http://127.0.0.1:9093\n"
        f"    labels: {labels}\n"
    )
    return cfg


@pytest.mark.parametrize(
    ("labels", "name"),
    [
        ("{team-name: ops}", "team-name"),
        ("{1team: ops}", "1team"),
        ('{"team name": ops}', "team name"),
        ('{team: "bad \\udc80 value"}', "team"),
    ],
)
def test_validate_refuses_a_label_alertmanager_refuses(
    tmp_path: Path, labels: str, name: str
) -> None:
    r = cli("validate", str(_config(tmp_path, labels)))
    assert r.returncode == 1, r.stdout
    assert "handlers[0]" in r.stderr and f"labels.{name}" in r.stderr, r.stderr


def test_validate_accepts_good_labels(tmp_path: Path) -> None:
    r = cli("validate", str(_config(tmp_path, "{team_name: ops, _tier: 'gold ☆'}")))
    assert r.returncode == 0, r.stderr


def test_the_library_refuses_them_too() -> None:
    with pytest.raises(ConfigError) as caught:
        AlertmanagerHandler("http://127.0.0.1:9093", labels={"team-name": "ops"})
    assert caught.value.field == "labels.team-name"


def test_the_rule_is_alertmanagers(tmp_path: Path, alertmanager_bin: str) -> None:
    """What we accept, a real Alertmanager accepts; what we refuse, it answers 400."""
    am = AlertmanagerProcess(alertmanager_bin, tmp_path)
    try:
        assert am.wait_ready()
        handler = AlertmanagerHandler(am.url, labels={"team_name": "ops", "_tier": "gold ☆"})
        try:
            handler.send_alert("high_cpu_usage", DeploymentMetadata("api"), message="m")
        finally:
            handler.close()
        assert any(a["labels"].get("team_name") == "ops" for a in am.alerts())
        refused = [{"labels": {"alertname": "x", "team-name": "ops"}}]
        req = urllib.request.Request(
            f"{am.url}/api/v2/alerts", data=json.dumps(refused).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(req, timeout=10)
        assert caught.value.code == 400
    finally:
        am.close()


@pytest.mark.parametrize("kind", ["webhook", "alertmanager"])
def test_validate_refuses_headers_http_cannot_send(tmp_path: Path, kind: str) -> None:
    """Sibling of the labels: a header http.client refuses at send time was retried until
    dead-lettered; now it is named on load (its value never shown: it may be a secret)."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"handlers:\n  - type: {kind}\n    url: http://127.0.0.1:9/x\n"
        '    headers: {"X Bad": "v", "X-Token": "s3cret\\ninjected: 1", "X-Uni": "日本"}\n'
    )
    r = cli("validate", str(cfg))
    assert r.returncode == 1, r.stdout
    for name in ("X Bad", "X-Token", "X-Uni"):
        assert f"handlers[0].headers.{name}" in r.stderr, r.stderr
    assert "s3cret" not in r.stderr


def test_validate_refuses_mail_headers_with_a_line_break(tmp_path: Path) -> None:
    """A line break in the sender, a recipient or the subject prefix would add headers
    (``Bcc: ...``); every send failed with it. Named on load."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "handlers:\n  - type: email\n    host: 127.0.0.1\n    security: none\n"
        '    sender: "m@example.com"\n    recipients: ["o@example.com\\nBcc: x@evil.example"]\n'
        '    subject_prefix: "[ops]\\r\\nBcc: x@evil.example"\n'
    )
    r = cli("validate", str(cfg))
    assert r.returncode == 1, r.stdout
    assert "handlers[0].recipients[0]" in r.stderr and "handlers[0].subject_prefix" in r.stderr
