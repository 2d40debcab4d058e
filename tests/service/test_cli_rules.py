"""``crackseg-monitor rules``: promtool accepts the rules, and ``promtool test rules``
shows them firing and resolving at the same check as the monitor itself."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor, HealthChecker
from crackseg.utils.deployment.models import HealthCheckResult
from tests.support.service_helpers import cli
from tests.support.wait import wait_until

CONFIG = """\
monitor: {failure_threshold: 3, success_threshold: 2}
alert_thresholds: {response_time_ms: 400}
deployments:
  - {id: api, url: "http://127.0.0.1:8080/health", check_interval: 10s}
  - id: worker
    url: "http://127.0.0.1:8081/health?token=abc"
    check_interval: 15s
    process_name: python
    failure_threshold: 1
    thresholds: {response_time_ms: 250}
"""


def _write_rules(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    config = tmp_path / "monitor.yaml"
    config.write_text(CONFIG)
    rules = tmp_path / "rules.yml"
    done = cli("rules", "-c", str(config), "-o", str(rules))
    assert done.returncode == 0, done.stderr
    return rules, yaml.safe_load(rules.read_text())


def test_rules_pass_promtool_check_with_the_configured_counts(
    tmp_path: Path, promtool_bin: str
) -> None:
    promtool = promtool_bin
    rules, data = _write_rules(tmp_path)
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    groups = {g["name"]: g for g in data["groups"]}
    assert set(groups) == {"crackseg-monitor-10s", "crackseg-monitor-15s"}
    api = {r["alert"]: r for r in groups["crackseg-monitor-10s"]["rules"]}
    # Third failure in a row = two intervals after the first; resolved at the second pass.
    assert api["health_check_failed"]["for"] == "20s"
    assert api["health_check_failed"]["keep_firing_for"] == "10s"
    assert "> 0.4" in api["high_response_time"]["expr"]
    assert "process_not_running" not in api  # no process named: the monitor does not judge it
    worker = {r["alert"]: r for r in groups["crackseg-monitor-15s"]["rules"]}
    assert worker["health_check_failed"]["for"] == "0s"
    assert "> 0.25" in worker["high_response_time"]["expr"]
    assert {"high_cpu_usage", "high_memory_usage", "process_not_running"} <= set(worker)
    assert "abc" not in rules.read_text()
    # stdout works too.
    config = tmp_path / "monitor.yaml"
    assert yaml.safe_load(cli("rules", "-c", str(config)).stdout) == data


class Scripted(HealthChecker):
    """Answers with the next of ``outcomes`` (True = healthy; then the last one forever)."""

    def __init__(self, outcomes: list[bool]) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.lock = threading.Lock()

    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        with self.lock:
            ok = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
            self.calls += 1
        if ok:
            return HealthCheckResult(True, "healthy", 5.0, details={"http_status": 200})
        return HealthCheckResult(
            False, "unhealthy", 5.0, error_message="HTTP 500", details={"http_status": 500}
        )

    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        return True


def _monitor_transitions(outcomes: list[bool]) -> dict[str, int]:
    """Run the monitor itself over ``outcomes``; the check index of its firing and resolve."""
    checker = Scripted(outcomes)
    monitor = DeploymentHealthMonitor(checker, failure_threshold=3, success_threshold=2)
    try:
        monitor.add_deployment_monitoring("api", "http://127.0.0.1:9/health", check_interval=0.1)
        monitor.start_monitoring()
        wait_until(lambda: checker.calls > len(outcomes) + 1, 30, "every scripted check")
        monitor.stop_monitoring()
        results = sorted(r.timestamp for r in monitor.get_health_history("api"))
        events = monitor.get_alert_history("api")
    finally:
        monitor.close()
    index = {ts: i for i, ts in enumerate(results)}
    return {e.state: index[e.timestamp] for e in events if e.alert_type == "health_check_failed"}


def test_promtool_fires_and_resolves_at_the_same_check_as_the_monitor(
    tmp_path: Path, promtool_bin: str
) -> None:
    promtool = promtool_bin
    outcomes = [True, True, False, False, False, False, False, True, True, True, True]
    seen = _monitor_transitions(outcomes)
    fire, resolve = seen["firing"], seen["resolved"]
    assert (fire, resolve) == (4, 8)  # third failure; second pass after them
    rules, _ = _write_rules(tmp_path)
    step = 10  # api's check_interval in CONFIG, seconds
    values = " ".join("1" if ok else "0" for ok in outcomes)
    series = 'probe_success{deployment_id="api", instance="http://127.0.0.1:8080/health"}'
    firing = [{"exp_labels": {"deployment_id": "api", "severity": "critical"},
               "exp_annotations": {"summary": "health_check_failed on api",
                                   "description": "health check failing (value 0)"}}]  # fmt: skip

    def at(check: int, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"eval_time": f"{check * step}s", "alertname": "health_check_failed",
                "exp_alerts": alerts}  # fmt: skip

    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": f"{step}s",
        "tests": [
            {
                "interval": f"{step}s",
                "input_series": [{"series": series, "values": values}],
                "alert_rule_test": [
                    at(fire - 1, []),  # not one check early...
                    at(fire, firing),  # ...but at the monitor's check
                    at(resolve - 1, firing),
                    at(resolve, []),
                ],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    t0 = time.monotonic()
    run = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - t0 < 30


def test_a_degraded_streak_fires_the_health_rule_as_a_warning(
    tmp_path: Path, promtool_bin: str
) -> None:
    """Degraded is up (probe_success 1) but the monitor warns of it: so does the rule file."""
    rules, _ = _write_rules(tmp_path)
    step = 10
    labels = 'deployment_id="api", instance="x"'
    series = [
        {"series": f"probe_success{{{labels}}}", "values": "1 1 1 1 1 1"},
        {"series": f'crackseg_deployment_status{{status="degraded", {labels}}}',
         "values": "0 1 1 1 1 0"},
    ]  # fmt: skip
    warning = [{"exp_labels": {"deployment_id": "api", "severity": "warning"},
                "exp_annotations": {"summary": "health_check_failed on api",
                                    "description": "health check degraded (value 1)"}}]  # fmt: skip
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": f"{step}s",
        "tests": [
            {
                "interval": f"{step}s",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "20s", "alertname": "health_check_failed", "exp_alerts": []},
                    {"eval_time": "30s", "alertname": "health_check_failed", "exp_alerts": warning},
                ],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    run = subprocess.run([promtool_bin, "test", "rules", str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
