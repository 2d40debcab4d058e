"""A full scrape of a real service passes ``promtool check metrics`` without a word.

The service (``crackseg-monitor run``) monitors deployments in every health state (healthy,
degraded, unhealthy, unknown: its first check still hangs) and one with a process; alerts
fire and are delivered to a webhook; the engine runs. Its ``/metrics`` in the text format
is linted by promtool (names, units, ``_total``, help), read back whole as OpenMetrics, and
checked against CHANGELOG.md's migration table: every old name gone, every new one there.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as parse_text

from crackseg.utils.deployment.service.metrics import package_version
from tests.support.monitor_servers import LiveServer
from tests.support.procs import named_process
from tests.support.receivers import HttpReceiver
from tests.support.service_helpers import ROOT, running
from tests.support.wait import wait_until

TEXT = "text/plain;version=0.0.4"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"
STATES = {"ok": "healthy", "deg": "degraded", "down": "unhealthy", "hang": "unknown"}


def _migration_table() -> list[tuple[str, list[str]]]:
    """(old name, new names) per row of CHANGELOG.md's table."""
    rows = []
    for line in (ROOT / "CHANGELOG.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`crackseg_"):
            old = cells[0].split("`")[1].split("{")[0]
            rows.append((old, re.findall(r"`([a-z_]+)`", cells[1])))
    return rows


def _config(tmp_path: Path, target: LiveServer, process: str, hook: str) -> Path:
    deployments = "".join(
        f"  - id: {dep}\n    url: {target.url('/' + dep)}\n    check_interval: 0.3\n"
        f"    timeout: {'30s' if dep == 'hang' else '2s'}\n"
        for dep in STATES
    )
    deployments += f"  - id: proc\n    url: {target.url('/ok')}\n    process_name: {process}\n"
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"deployments:\n{deployments}"
        "monitor: {failure_threshold: 1, success_threshold: 1}\n"
        f"handlers:\n  - type: log\n  - type: webhook\n    name: hook\n    url: {hook}/alerts\n"
        "store:\n  path: history.db\n"
        "server:\n  port: 0\n  monitor_instance: monitor-a\n"
    )
    return cfg


def _scrape(url: str, accept: str) -> requests.Response:
    r = requests.get(
        f"{url}/metrics", headers={"Accept": accept, "Accept-Encoding": "gzip"}, timeout=10
    )
    r.raise_for_status()
    return r


def test_a_full_scrape_passes_promtool_and_the_migration_table(
    tmp_path: Path, promtool_bin: str
) -> None:
    hook = HttpReceiver().start()
    try:
        with LiveServer() as target, named_process() as process:
            target.set("/ok", status=200, body='{"status": "healthy"}')
            target.set("/deg", status=503, body='{"status": "degraded"}')
            target.set("/down", status=500, body='{"status": "unhealthy"}')
            target.set("/hang", hang=True)
            with running("run", "-c", str(_config(tmp_path, target, process, hook.url))) as svc:
                url = svc.url()

                def states() -> dict[str, str]:
                    body = requests.get(f"{url}/api/v1/deployments", timeout=5).json()
                    return {d["deployment_id"]: d["health_status"] for d in body["deployments"]}

                wait_until(lambda: states() == {**STATES, "proc": "healthy"}, 30, "every state")
                assert hook.wait_for(1, 20), "an alert delivered to the webhook"

                def sent_and_cpu() -> bool:
                    fams = {f.name: f for f in parse_text(_scrape(url, TEXT).text)}
                    sent = [
                        s.value
                        for s in fams["crackseg_alert_notifications"].samples
                        if s.labels["result"] == "sent"
                        and s.labels["handler"].startswith("webhook:")
                    ]
                    return (
                        sent == [sent[0]]
                        and sent[0] >= 1
                        and "crackseg_process_cpu_seconds" in fams
                    )

                wait_until(sent_and_cpu, 20, "a sent notification and process CPU in /metrics")
                text = _scrape(url, TEXT)
                om = _scrape(url, OPENMETRICS)
    finally:
        hook.close()
    assert text.headers["Content-Encoding"] == "gzip"
    assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lint = subprocess.run(
        [promtool_bin, "check", "metrics"], input=text.content, capture_output=True, timeout=60
    )
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, b""), lint

    assert om.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(om.text)}  # strict parser
    samples = [s for f in families.values() for s in f.samples]
    assert {s.labels.get("monitor_instance") for s in samples} == {"monitor-a"}
    exported = {s.name for s in samples}
    ((info,),) = [families["crackseg_build_info"].samples]
    assert info.labels["version"] == package_version() and info.value == 1
    assert families["crackseg_engine_lateness_seconds"].type == "summary"
    by_state = {
        s.labels["deployment_id"]: s.labels["status"]
        for s in families["crackseg_deployment_status"].samples
        if s.value == 1
    }
    assert by_state == {**STATES, "proc": "healthy"}

    # What this promtool's lint may not know yet (newer ones flag "percent"): base units and
    # ratios only, _total on counters and nowhere else.
    for name, family in families.items():
        assert not re.search(r"_(percent|bits|ms|mb|mbps)(_|$)", name), name
        # The strict parser names a counter without _total (its samples must carry it).
        assert not name.endswith("_total"), f"{name}: a {family.type} named like a counter"

    table = _migration_table()
    assert len(table) >= 10
    for old, new in table:
        if old not in new:  # else the same name with a new type (a summary)
            assert old not in exported, old
        assert new and all(n in exported for n in new), (old, new)
