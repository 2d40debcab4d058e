"""``server.protect_metrics: true``: /metrics needs the token; a real Prometheus sends it with
``authorization`` in its scrape config and scrapes, one without it is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from crackseg.utils.deployment.service.config import ConfigFileError, parse_config
from tests.support.prometheus import StartPrometheus, query
from tests.support.service_helpers import running
from tests.support.wait import wait_until

TOKEN = "metrics-token-4f2a"


def test_protect_metrics_needs_a_token() -> None:
    with pytest.raises(ConfigFileError, match="protect_metrics: true needs a token"):
        parse_config({"server": {"protect_metrics": True}})


def test_prometheus_scrapes_protected_metrics_with_its_token(
    tmp_path: Path, prometheus: StartPrometheus
) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "deployments:\n  - id: api\n    url: http://127.0.0.1:9/health\n    check_interval: 0.5\n"
        "store:\n  path: history.db\n"
        "server:\n  port: 0\n  token: ${T}\n  protect_metrics: true\n"
    )
    with running("run", "-c", str(cfg), T=TOKEN) as svc:
        url = svc.url()
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.get(f"{url}/metrics", headers=wrong, timeout=5).status_code == 401
        ok = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert ok.status_code == 200 and "crackseg_monitor_up" in ok.text
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200  # stays open

        target = url.removeprefix("http://")
        with_token = prometheus([target], job="with", bearer_token=TOKEN)
        without = prometheus([target], job="without")
        up = wait_until(lambda: query(with_token, 'up{job="with"}'), 20, "a scrape")
        assert up == {"": 1.0}
        probe = wait_until(lambda: query(with_token, "probe_success"), 20, "series")
        assert probe == {"api": 0.0}
        refused = wait_until(lambda: query(without, 'up{job="without"}'), 20, "a refusal")
        assert refused == {"": 0.0}
        assert TOKEN not in "\n".join(svc.err)  # the token never reaches the log
