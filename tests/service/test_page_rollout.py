"""A rollout's page: its steps, the new version's traffic over time, the judge's evidence per
look and the rollback reason, from a record kept in the real SQLite store (API and Chromium)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import requests

from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.cdp import Browser
from tests.support.page_rig import PageRig, page_rig

SECRET = "rollout-secret-77aa"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _canary_rolled_back(rig: PageRig) -> DeploymentMetadata:
    """A canary of v3 rolled back at its second look, recorded as the strategies record."""
    t0 = time.time() - 120
    meta = DeploymentMetadata("deploy-0007", "crackseg-unet:v3", "canary", version="v3")
    meta.start_time = t0
    meta.set_state("in_progress")
    meta.extra["steps"] = [
        {"step": "route", "at": t0 + 1, "backends": ["v2@127.0.0.1:8001=100"]},
        {"step": "route", "at": t0 + 5, "backends": ["v2@127.0.0.1:8001=90", "v3@127.0.0.1:8002=10"]},
        {"step": "gate", "at": t0 + 20, "gate": "canary 10%", "verdict": "inconclusive",
         "reason": "gathering", "evidence": {"canary": {"requests": 40, "errors": 6},
                                             "stable": {"requests": 360, "errors": 2},
                                             "p_value": 0.2}},
        {"step": "gate", "at": t0 + 35, "gate": "canary 10%", "verdict": "failed",
         "reason": f"error rate 30% vs 0.5% (http://admin:{SECRET}@10.0.0.1/)",
         "evidence": {"canary": {"requests": 90, "errors": 27},
                      "stable": {"requests": 810, "errors": 4}, "p_value": 0.001}},
        {"step": "route", "at": t0 + 36, "backends": ["v2@127.0.0.1:8001=100"]},
    ]  # fmt: skip
    meta.extra["env"] = {"API_TOKEN": SECRET}  # free-form: must never reach the page
    meta.rollback_reason = "canary gate failed: error rate 30% vs 0.5%"
    meta.set_state("rolled_back", meta.rollback_reason)
    meta.end_time = t0 + 40
    rig.monitor.store.save_deployment(meta)
    return meta


def test_rollout_api_tells_weights_steps_and_evidence(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        meta = _canary_rolled_back(rig)
        r = requests.get(rig.server.url + "/api/v1/rollouts/deploy-0007", timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert SECRET not in r.text and "API_TOKEN" not in r.text
        assert body["record"]["state"] == "rolled_back"
        assert [w["new_percent"] for w in body["weights"]] == [0.0, 10.0, 0.0]
        assert [s["step"] for s in body["steps"]] == ["route", "route", "gate", "gate", "route"]
        assert body["steps"][3]["verdict"] == "failed"
        assert [(lk["canary"]["errors"], lk["stable"]["requests"]) for lk in body["looks"]] == [
            (6, 360), (27, 810)]  # fmt: skip
        assert body["looks"][1]["p_value"] == 0.001
        assert body["record"]["start_time"] == meta.start_time
        missing = requests.get(rig.server.url + "/api/v1/rollouts/nope", timeout=10)
        assert missing.status_code == 404 and missing.json()["field"] == "id"


async def test_rollout_page_shows_the_rolled_back_canary(tmp_path: Path, chromium_bin: str) -> None:
    with page_rig(tmp_path) as rig:
        _canary_rolled_back(rig)
        rig.add("api", "/ok", checks=1)
        async with Browser(chromium_bin, tmp_path / "profile") as browser:
            page = await browser.page(rig.server.url + "/", width=1200, height=900)
            await page.wait_for("document.body.dataset.loaded === 'true'")
            await page.js(
                "document.querySelector('tr[data-record-id=\"deploy-0007\"] a').click(); true"
            )
            await page.wait_for(
                "document.getElementById('rollout').dataset.recordId === 'deploy-0007'"
            )
            reason = await page.js("document.getElementById('rollout-reason').textContent")
            assert reason == "Rolled back because canary gate failed: error rate 30% vs 0.5%"
            steps = await page.js(
                "[...document.querySelectorAll('#rollout-steps tr')].map(t => t.dataset.verdict || t.dataset.step)"
            )
            assert steps == ["route", "route", "inconclusive", "failed", "route"]
            # Both charts drew something: pixels differ from the empty canvas.
            drawn = await page.js(
                "['chart-weights', 'chart-looks'].map(id => { const c = document.getElementById(id);"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n })"
            )
            assert all(n > 2000 for n in drawn), drawn
            dom = await page.js("document.documentElement.outerHTML")
            assert SECRET not in dom and "API_TOKEN" not in dom
            await page.js("document.getElementById('rollout').scrollIntoView(); true")
            shot = await page.screenshot(tmp_path / "rollout.png", full=False)
            assert shot[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("CRACKSEG_UPDATE_SCREENSHOTS") == "1":
                SHOTS.mkdir(parents=True, exist_ok=True)
                tmp = SHOTS / f".rollout.{os.getpid()}.tmp"
                tmp.write_bytes(shot)
                os.replace(tmp, SHOTS / "rollout_page.png")  # readers see old or new, whole
