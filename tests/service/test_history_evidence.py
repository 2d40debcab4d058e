"""`crackseg-monitor history` shows each rollout's verdict with its evidence."""

from __future__ import annotations

from pathlib import Path

from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.rollout.judge import ArmCounts, CanaryJudge
from tests.support.service_helpers import cli


def test_history_lists_the_rollouts_evidence(tmp_path: Path) -> None:
    judge = CanaryJudge(thresholds_ms=[])
    for _ in range(6):
        j = judge.observe(ArmCounts(100, 10), ArmCounts(900, 1))
    store = SQLiteStore(str(tmp_path / "history.db"))
    meta = DeploymentMetadata("bad-v3", artifact_id="m", strategy="canary", state="rolled_back")
    meta.extra["evidence"] = {"gate": "canary 10%", **j.to_dict()}
    store.save_deployment(meta)
    store.close()
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"store: {{path: {tmp_path / 'history.db'}}}\ndeployments: []\n")
    r = cli("history", "-c", str(cfg), COLUMNS="400")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "bad-v3" in x)
    assert "canary 10%: failed (worse_errors, two-sample): canary 60/600 errors" in line
    assert "stable 6/5400" in line and "the stable's (99 %)" in line
