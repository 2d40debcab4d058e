"""The rollout page follows a running rollout live: Chromium opens a canary's page while it
runs in a real service (nginx, sample services) and, without a reload, sees its steps grow
from the rollout's event stream until the outcome, then stops following."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from crackseg.utils.deployment.service.app import MonitorService
from crackseg.utils.deployment.service.cli.deploy import follow_events
from crackseg.utils.deployment.service.config import load_config
from tests.support.cdp import Browser

TOKEN = "page-live-token-7c2e"


def _config(tmp_path: Path, protect_reads: bool) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"""
store: {{path: {tmp_path / "history.db"}, flush_interval: 0.2}}
server: {{port: 0, token: {TOKEN}, protect_reads: {str(protect_reads).lower()}}}
deploy:
  name: crackseg-model
  environment: production
  strategy: blue_green
  version: v1
  target:
    command: [{sys.executable}, -m, crackseg.utils.deployment.service.sample_service,
              --host, "{{host}}", --port, "{{port}}", --version, "{{version}}"]
    grace_period: 1
    log_dir: {tmp_path / "logs"}
  router: {{type: nginx, listen_port: 0}}
  rollout:
    check_interval: 0.2
    success_threshold: 2
    failure_threshold: 2
    health_timeout: 20
    bake_seconds: 0.3
    min_samples: 1
    keep_old_seconds: 0
    grace_period: 1
    canary_steps: [25, 50, 100]
"""
    )
    return path


def _start(base: str, body: dict[str, object]) -> dict[str, str]:
    req = urllib.request.Request(
        base + "/api/v1/rollouts", data=json.dumps(body).encode(), method="POST"
    )
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 202
        got: dict[str, str] = json.loads(resp.read())
        return got


@pytest.mark.parametrize(("protect_reads", "via"), [(False, "events"), (True, "polling")])
async def test_the_rollout_page_follows_a_running_canary(
    tmp_path: Path, nginx_bin: str, chromium_bin: str, protect_reads: bool, via: str
) -> None:
    """Open reads: the event stream. Reads behind the token (EventSource cannot send it,
    so the stream answers 401): the page polls the story instead."""
    cfg = _config(tmp_path, protect_reads)
    service = MonitorService(load_config(cfg), out=io.StringIO())
    runner = threading.Thread(target=service.run, name="service", daemon=True)
    runner.start()
    try:
        assert service.wait_ready(30) and service.url
        base = service.url
        first = _start(base, {"version": "v1"})
        events = list(follow_events(base, first["events"], TOKEN, time.monotonic() + 120))
        assert events[-1][0] == "done"
        # A canary slow enough to watch: each of its 3 steps bakes 3 s.
        run = _start(base, {"version": "v2", "strategy": "canary",
                            "options": {"bake_seconds": 3.0}})  # fmt: skip
        async with Browser(chromium_bin, tmp_path / "profile") as browser:
            page = await browser.page(f"{base}/", width=1200, height=900)
            if protect_reads:
                await page.wait_for("!document.getElementById('token-form').hidden")
                await page.js(
                    f"document.getElementById('token-input').value = {json.dumps(TOKEN)};"
                    "document.querySelector('#token-form button').click(); true"
                )
            await page.wait_for("document.body.dataset.loaded === 'true'")
            await page.js(f"location.hash = '#/rollouts/{run['id']}'; true")
            await page.wait_for(
                f"document.getElementById('rollout').dataset.recordId === '{run['id']}'"
                " && document.getElementById('rollout').dataset.live === 'true'",
                timeout=30,
            )
            live_via = "document.getElementById('rollout').dataset.liveVia"
            await page.wait_for(f"{live_via} === '{via}'", timeout=30)
            rows = "document.querySelectorAll('#rollout-steps tr[data-step]').length"
            before = await page.js(rows)
            await page.js("window.sameDocument = true; true")
            state = "document.getElementById('rollout-state').textContent"
            assert "success" not in await page.js(state)
            # No reload from here: the stream's events redraw the page until the outcome.
            await page.wait_for(
                "document.getElementById('rollout').dataset.live === 'false'", timeout=90
            )
            assert "success" in await page.js(state)
            assert await page.js(live_via) == via, "followed the whole way as it began"
            after = await page.js(rows)
            assert after > before, (before, after)
            reason = await page.js("document.getElementById('rollout-reason').textContent")
            assert reason == "Promoted: every gate passed"
            assert await page.js("window.sameDocument === true"), "the page was reloaded"
    finally:
        service.stop()
        runner.join(120)
    assert not runner.is_alive()
