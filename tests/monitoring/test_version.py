"""The health body's ``version`` (the spec's health endpoint returns one): recorded with each
check result, bounded and redacted; the status shows the last one reported, and so do the
export and the history; a rollout compares it with the version it deploys."""

from __future__ import annotations

import json
from pathlib import Path

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.version import (
    MAX_VERSION_CHARS,
    compare_version,
    read_version,
)
from tests.support.monitor_servers import LiveServer


def test_the_checker_records_the_version_a_body_reports() -> None:
    cases = {
        "/spec": ('{"status": "healthy", "version": "1.0.0"}', "1.0.0"),
        "/number": ('{"status": "healthy", "version": 2}', "2"),
        "/none": ('{"status": "healthy"}', None),
        "/bool": ('{"status": "healthy", "version": true}', None),
        "/long": (json.dumps({"status": "healthy", "version": "9" * 500}), "9" * MAX_VERSION_CHARS),
        "/control": ('{"status": "healthy", "version": "1.0\\n\\u0007x"}', "1.0??x"),
        "/secret": ('{"status": "healthy", "version": "1.0 token=hunter2hunter2"}', None),
        "/degraded": ('{"status": "degraded", "version": "3.1"}', "3.1"),
    }
    checker = DefaultHealthChecker()
    try:
        with LiveServer() as server:
            for path, (body, _) in cases.items():
                server.set(path, status=503 if path == "/degraded" else 200, body=body)
            got = {}
            for path in cases:
                r = checker.check_health(server.url(path), timeout=5)
                assert r.status in ("healthy", "degraded"), (path, r)
                got[path] = r.details.get("version")
                again = checker.check_health(server.url(path), timeout=5)  # memoised reading
                assert again.details.get("version") == got[path]
    finally:
        checker.close()
    for path, (_, want) in cases.items():
        if path == "/secret":
            assert got[path] is not None and "hunter2" not in got[path], got[path]
        else:
            assert got[path] == want, (path, got[path])


def test_the_status_export_and_history_show_the_version(tmp_path: Path) -> None:
    with LiveServer() as server:
        server.set("/health", body='{"status": "healthy", "version": "1.0.0"}')
        monitor = DeploymentHealthMonitor()
        try:
            monitor.add_deployment_monitoring("svc", server.url(), check_interval=0.1)
            assert monitor.get_deployment_status("svc")["version"] is None  # no check yet
            monitor.start_monitoring()
            assert monitor.wait_for_checks("svc", 2, 15.0)
            assert monitor.get_deployment_status("svc")["version"] == "1.0.0"
            server.set("/health", body='{"status": "healthy", "version": "1.1.0"}')
            assert monitor.wait_for_checks("svc", 2, 15.0)
            assert monitor.get_deployment_status("svc")["version"] == "1.1.0"
            # An answer without one (or no answer) leaves the last version reported.
            server.set("/health", status=500, body="oops")
            assert monitor.wait_for_checks("svc", 2, 15.0)
            monitor.stop_monitoring()
            st = monitor.get_deployment_status("svc")
            assert (st["health_status"], st["version"]) == ("unhealthy", "1.1.0")
            export = json.loads(monitor.export_monitoring_data(tmp_path / "x.json").read_text())
            versions = [r.details.get("version") for r in monitor.get_health_history("svc")]
        finally:
            monitor.close()
    assert export["monitored_deployments"]["svc"]["status"]["version"] == "1.1.0"
    exported = [
        r["details"].get("version")
        for r in export["monitored_deployments"]["svc"]["health_history"]
    ]
    assert exported == versions
    assert versions[0] == "1.0.0" and "1.1.0" in versions and versions[-1] is None


def test_compare_version_names_both_and_never_passes_without_evidence() -> None:
    def result(version: str | None) -> HealthCheckResult:
        details = (
            {"http_status": 200} if version is None else {"http_status": 200, "version": version}
        )
        return HealthCheckResult(True, "healthy", 1.0, details=details)

    match = compare_version(result("2.0.0"), "2.0.0")
    assert match.matches is True
    old = compare_version(result("1.9.0"), "2.0.0")
    assert old.matches is False
    assert old.message() == "reports version 1.9.0, expected 2.0.0"
    silent = compare_version(result(None), "2.0.0")
    assert silent.matches is None  # inconclusive, not a pass
    assert "no version" in silent.message() and "2.0.0" in silent.message()
    # The expected version is read as a reported one is, so a long one still compares.
    assert compare_version(result("7" * MAX_VERSION_CHARS), "7" * 100).matches is True
    assert read_version("  v3 ") == "v3"
