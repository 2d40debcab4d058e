"""``crackseg-monitor deploy`` / ``rollback`` / ``history`` driving real processes behind nginx."""

from __future__ import annotations

import json
import re
import signal
import sys
import urllib.request
from pathlib import Path

from tests.support.service_helpers import Running, cli, running, wait_until


def _version_at(url: str) -> str:
    with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:
        return str(json.loads(resp.read())["version"])


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(
        f"""
store: {{path: history.db, flush_interval: 0.2}}
deploy:
  name: crackseg-model
  strategy: blue_green
  version: v2
  stable_version: v1
  target:
    command: [{sys.executable}, -m, crackseg.utils.deployment.service.sample_service,
              --host, "{{host}}", --port, "{{port}}", --version, "{{version}}"]
    grace_period: 2
    log_dir: {tmp_path / "logs"}
    version_args: {{v3: [--fail-health]}}
  router: {{type: nginx, listen_port: 0}}
  rollout:
    check_interval: 0.2
    success_threshold: 2
    failure_threshold: 2
    health_timeout: 20
    bake_seconds: 0.5
    min_samples: 1
    keep_old_seconds: 0
    grace_period: 2
"""
    )
    return path


def _serving_url(sup: Running) -> str:
    line = wait_until(
        lambda: (
            next((x for x in sup.out if "deployed v2; serving at" in x), None)
            or (sup.proc.poll() is not None and f"exited: {sup.err[-5:]}")
        ),
        timeout=60,
        what="v2 deployed",
    )
    m = re.search(r"serving at (http://\S+)", str(line))
    assert m, line
    return m.group(1)


def test_deploy_rollback_and_a_failed_deploy_step_by_step(tmp_path: Path, nginx_bin: str) -> None:
    cfg = _config(tmp_path)
    with running("deploy", "-c", str(cfg)) as sup:
        url = _serving_url(sup)
        assert _version_at(url) == "v2"
        text = "\n".join(sup.out)
        # Progress is shown step by step, the stable version first.
        assert text.index("deploy v1") < text.index("deployed v1") < text.index("deploy v2")
        assert "state health_checking" in text and "route: backends=" in text
        assert "  bake: 100% of " in text  # the bake window, quarter by quarter

        r = cli("rollback", "-c", str(cfg), timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "state rolling_back" in r.stdout and "rolled back" in r.stdout
        assert _version_at(url) == "v1"

        # v3 fails its health gate: the rollout is undone and v1 keeps serving.
        r = cli("deploy", "-c", str(cfg), "--version", "v3", timeout=90)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "deploy of v3 failed (rolled back)" in r.stdout
        assert _version_at(url) == "v1"

        sup.signal(signal.SIGTERM)
        assert sup.wait(30) == 0
    # Everything the supervisor started is gone with it.
    try:
        _version_at(url)
        raise AssertionError("the router still serves after the supervisor stopped")
    except OSError:
        pass
    r = cli("history", "-c", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    states = {d["version"]: d["state"] for d in json.loads(r.stdout)["deployments"]}
    assert states == {"v1": "success", "v2": "rolled_back", "v3": "rolled_back"}


def test_rollback_without_a_supervisor_is_one_clear_line(tmp_path: Path) -> None:
    r = cli("rollback", "-c", str(_config(tmp_path)))
    assert r.returncode == 1
    assert r.stderr.startswith("error: deploy: no deploy supervisor runs for this configuration")
    assert len(r.stderr.strip().splitlines()) == 1


def test_deploy_needs_a_deploy_section(tmp_path: Path) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text("deployments: []\n")
    r = cli("deploy", "-c", str(cfg))
    assert r.returncode == 1 and "no deploy section" in r.stderr
