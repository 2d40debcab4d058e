"""Every problem of a ``deploy`` section in one run, on each path: ``crackseg-monitor
validate`` (a real subprocess of the CLI) lists them by YAML path, the library names the
same ones, and ``POST /api/v1/rollouts`` answers them all in one problem document."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.orchestration import DeploymentConfig
from crackseg.utils.deployment.service.config import ConfigFileError, load_config
from tests.support.service_helpers import cli, running

TOKEN = "every-problem-token"

# Bad values in each part of the section: rollout (types and values together), router,
# target, a host; and one good section beside it that must not be blamed.
BAD_DEPLOY = """
deployments:
  - {id: api, url: "http://127.0.0.1:9/health"}
deploy:
  target:
    command: [echo, hi]
    host: "bad host!"
    grace_period: 0
  router:
    type: nginx
    listen_host: "no;pe"
    listen_port: 70000
  rollout:
    canary_steps: [50, 10]
    max_error_rate_percent: 150
    bake_seconds: soon
    replicas: 2
    max_unavailable: 5
  hosts:
    - {host: build_box, user: deploy}
"""

EXPECTED = [
    ("deploy.target.host", "must be an IP address (127.0.0.1, ::1) or a host name, got 'bad host!'"),
    ("deploy.target.grace_period", "must be > 0, got 0"),
    ("deploy.router.listen_host", "must be an IP address (127.0.0.1, ::1) or a host name, got 'no;pe'"),
    ("deploy.router.listen_port", "must be <= 65535, got 70000"),
    ("deploy.rollout.bake_seconds", "must be a duration"),
    ("deploy.rollout.max_error_rate_percent", "is a percentage: use 0..100, got 150"),
    ("deploy.rollout.max_unavailable", "must be <= replicas (2), got 5"),
    ("deploy.rollout.canary_steps", "must increase strictly, got [50, 10]"),
    ("deploy.hosts[0].host", "got 'build_box': the router sends traffic there; or give address"),
]  # fmt: skip


def test_validate_lists_every_problem_of_the_deploy_section_in_one_run(tmp_path: Path) -> None:
    f = tmp_path / "monitor.yaml"
    f.write_text(BAD_DEPLOY)
    r = cli("validate", str(f))
    assert r.returncode == 1, r.stdout
    lines = r.stderr.splitlines()
    assert lines[0] == f"{f}: {len(EXPECTED)} problems", r.stderr
    got = [line.strip().split(": ", 1) for line in lines[1:]]
    assert [where for where, _ in got] == [where for where, _ in EXPECTED], r.stderr
    for (_, what), (_, expected) in zip(got, EXPECTED, strict=True):
        assert expected in what, r.stderr


def test_the_file_and_the_library_name_the_same_problems_of_the_rollout(tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "canary_steps": [50, 10],
        "max_error_rate_percent": 150.5,
        "replicas": 2,
        "max_unavailable": 5,
        "on_inconclusive": "pray",
    }
    with pytest.raises(ConfigError) as lib:
        DeploymentConfig("service", "production", version="v1", **options)
    f = tmp_path / "monitor.yaml"
    f.write_text("deploy:\n  target: {command: [echo]}\n  rollout: " + json.dumps(options) + "\n")
    with pytest.raises(ConfigFileError) as file:
        load_config(f)
    assert file.value.problems == [(f"deploy.rollout.{k}", v) for k, v in lib.value.problems]
    assert len(file.value.problems) == 4


def _post(base: str, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    req = urllib.request.Request(
        base + "/api/v1/rollouts", data=json.dumps(body).encode(), method="POST"
    )
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_the_rollouts_api_answers_every_problem_of_a_request(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"""
store: {{path: {tmp_path / "history.db"}}}
server: {{port: 0, token: {TOKEN}}}
deploy:
  target:
    command: [{sys.executable}, -m, crackseg.utils.deployment.service.sample_service,
              --host, "{{host}}", --port, "{{port}}", --version, "{{version}}"]
    log_dir: {tmp_path / "logs"}
  rollout: {{replicas: 2}}
"""
    )
    with running("run", "-c", str(cfg)) as svc:
        base = svc.url()
        body = {
            "version": "v 2",
            "strategy": "sideways",
            "options": {
                "bake_seconds": "soon",
                "canary_steps": [50, 10],
                "max_unavailable": 5,
                "nope": 1,
            },
        }
        status, kind, doc = _post(base, body)
        assert status == 400 and kind.startswith("application/problem+json"), doc
        fields = [e["field"] for e in doc["errors"]]
        assert fields == [
            "version",
            "strategy",
            "options.bake_seconds",
            "options.nope",
            "options.max_unavailable",
            "options.canary_steps",
        ], doc
        # The first is the answer's own field and detail, which says how many more there are.
        assert doc["field"] == "version"
        first = doc["errors"][0]["detail"]
        assert doc["detail"] == f"{first} (and 5 more problems: see errors)"
        details = {e["field"]: e["detail"] for e in doc["errors"]}
        assert details["strategy"].startswith("unknown 'sideways'; use one of")
        assert details["options.max_unavailable"] == "must be <= replicas (2), got 5"
        assert details["options.nope"].startswith("unknown key")
        # A small body with many bad keys gets a bounded answer that says so.
        status, _, doc = _post(base, {"version": "v2", **{f"k{i}": i for i in range(80)}})
        assert status == 400 and len(doc["errors"]) == 50, doc
        assert doc["detail"].endswith(
            "(and 79 more problems: see errors, which lists the first 50)"
        )
        # One problem: the answer is as it always was, without a list.
        status, _, doc = _post(base, {"version": "v2", "options": {"canary_steps": [10]}})
        assert status == 400 and "errors" not in doc, doc
        assert doc["field"] == "options.canary_steps", doc
        assert doc["detail"] == "must end with 100 (full traffic), got [10]", doc
