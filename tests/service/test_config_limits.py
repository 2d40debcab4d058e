"""One source of limits, seen from the command line: ``validate`` reports every problem of a
file in one run, and a file it accepts at the very edge of every limit is one ``run`` runs."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.service_helpers import Endpoint, cli, running

BAD = """
deployments:
  - id: api
    url: http://127.0.0.1:1/health
monitor:
  repeat_interval: 400d
  failure_threshold: 5000
  repeat_intervals: {cpu_hot: 10m}
maintenance:
  - {name: a, start: "25:00", end: "02:00"}
  - {name: b, start: "22:00", end: "23:00", timezone: Mars/Olympus}
  - {name: c, start: "22:00", end: "23:00", colour: red}
deploy:
  target: {command: "app --port {port}"}
  rollout: {bake: 1, bake_seconds: soon, replicas: two}
"""

EXPECTED = [
    "monitor.failure_threshold: must be <= 1000, got 5000",
    "monitor.repeat_interval: must be <= 31622400, got '400d'",
    "monitor.repeat_intervals['cpu_hot']: unknown alert type 'cpu_hot'; use one of",
    "maintenance[0].start: '25:00' is not a time of day; use HH:MM",
    "maintenance[1].timezone: unknown time zone 'Mars/Olympus'",
    "maintenance[2].colour: unknown key",
    "deploy.rollout.bake_seconds: must be a duration such as 30",
    "deploy.rollout.replicas: must be a whole number, got 'two'",
    "deploy.rollout.bake: unknown key; expected one of: health_check_url,",
]


def test_validate_reports_every_problem_of_every_section_in_one_run(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    r = cli("validate", str(f))
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"{f}: {len(EXPECTED)} problems", lines
    # One line each, in the file's order, none missing.
    for got, want in zip(lines[1:], EXPECTED, strict=True):
        assert want in got, (want, lines)
    assert "Traceback" not in r.stderr
    # `run` refuses the same file with the same lines, before starting anything.
    ran = cli("run", "-c", str(f), timeout=60)
    assert ran.returncode == 1
    assert ran.stderr.strip().splitlines()[1:] == lines[1:]
    assert not (tmp_path / "crackseg-monitor.db").exists()


def test_a_file_validate_accepts_at_every_limit_is_one_run_runs(tmp_path: Path) -> None:
    endpoint = Endpoint()
    try:
        f = tmp_path / "edge.yaml"
        f.write_text(
            f"""
deployments:
  - id: api
    url: {endpoint.url}
    check_interval: 0.1
    timeout: 1h
    failure_threshold: 1000
    success_threshold: 1000
    repeat_interval: 366d
monitor:
  failure_threshold: 1000
  success_threshold: 1000
  repeat_interval: 366d
  error_rate_window: 366d
  default_timeout: 1h
  max_history: 10000000
  system_metrics_interval: 366d
  repeat_intervals: {{high_cpu_usage: 366d, health_check_failed: 100ms}}
  flap_max_changes: 1000
  flap_window: 366d
maintenance:
  - {{name: nightly, start: "22:00", end: "02:00", days: [sat, sun], timezone: Europe/Berlin}}
store: {{path: hist.db, flush_interval: 1d}}
server: {{port: 0}}
"""
        )
        ok = cli("validate", str(f))
        assert ok.returncode == 0, ok.stderr
        with running("run", "-c", str(f)) as svc:
            svc.url()  # serving: the monitor was built from the file and started
            svc.signal(signal.SIGTERM)
            assert svc.wait() == 0, svc.err[-10:]
        assert not any("Traceback" in line for line in svc.err), svc.err[-10:]
    finally:
        endpoint.close()
