"""``--log-format json``: every line the service logs is one JSON object a collector reads."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.support.service_helpers import Endpoint, running
from tests.support.wait import wait_until


def _records(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def test_json_lines_carry_the_deployment_and_alert_type(tmp_path: Path) -> None:
    endpoint = Endpoint(status=500, body={"status": "unhealthy"})
    try:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(
            f"deployments: [{{id: api, url: '{endpoint.url}', check_interval: 0.2,"
            " failure_threshold: 1}]\n"
            "handlers: [{type: log}]\n"
            f"server: {{port: 0}}\nstore: {{path: '{tmp_path / 'h.db'}'}}\n"
        )
        with running("--log-format", "json", "run", "-c", str(cfg), "--log-level", "info") as svc:
            svc.url()

            def alert_line() -> dict[str, Any] | None:
                return next((r for r in _records(list(svc.err)) if r.get("alert_type")), None)

            line = wait_until(alert_line, 20, "an alert's log line")
            svc.signal(signal.SIGTERM)
            assert svc.wait() == 0
        assert line["deployment_id"] == "api" and line["alert_type"] == "health_check_failed"
        assert "[FIRING] health_check_failed deployment=api" in line["message"]
        records = _records(svc.err)  # every line parses: nothing else was printed to stderr
        assert len(records) >= 3
        for r in records:
            assert {"time", "level", "logger", "message"} <= set(r), r
            assert r["time"].endswith("+00:00") and r["level"] in {"info", "warning", "error"}
    finally:
        endpoint.close()


def test_text_stays_the_default(tmp_path: Path) -> None:
    endpoint = Endpoint()
    try:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(
            f"deployments: [{{id: api, url: '{endpoint.url}'}}]\n"
            f"server: {{port: 0}}\nstore: {{path: '{tmp_path / 'h.db'}'}}\n"
        )
        with running("run", "-c", str(cfg), "--log-level", "info") as svc:
            svc.url()
            svc.signal(signal.SIGTERM)
            assert svc.wait() == 0
        assert svc.err and not svc.err[0].startswith("{"), svc.err[:2]
    finally:
        endpoint.close()
