"""A verdict's evidence where people read it: /metrics (bounded labels) and one line of text,
from what the judge really returns for real counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.rollout.judge import ArmCounts, CanaryJudge
from crackseg.utils.deployment.rollout.judging import summarize
from crackseg.utils.deployment.service.evidence_metrics import (
    QUANTITIES,
    RolloutEvidenceCollector,
)


def _view(canary: ArmCounts, stable: ArmCounts) -> dict[str, object]:
    judge = CanaryJudge(thresholds_ms=[])
    j = judge.observe(canary, stable)
    for _ in range(5):
        j = judge.observe(canary, stable)
    return {"gate": "canary 10%", **j.to_dict()}


def test_the_latest_evidence_per_environment_is_a_bounded_gauge() -> None:
    store = MemoryStore()
    bad = _view(ArmCounts(100, 10), ArmCounts(900, 1))
    for n, (env, view) in enumerate([("prod", {}), ("prod", bad), ("staging", bad)]):
        meta = DeploymentMetadata(f"d{n}", target_environment=env)
        if view:
            meta.extra["evidence"] = view
        store.save_deployment(meta)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RolloutEvidenceCollector(store.deployment_records))
    text = generate_latest(registry).decode()
    assert bad["verdict"] == "failed"
    assert (
        'crackseg_rollout_verdict_info{code="worse_errors",environment="prod",verdict="failed"} 1.0'
        in text
    )
    assert 'crackseg_rollout_evidence{environment="prod",quantity="canary_errors"} 60.0' in text
    assert (
        'crackseg_rollout_evidence{environment="staging",quantity="stable_requests"} 5400.0' in text
    )
    quantities = {
        line.split('quantity="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("crackseg_rollout_evidence{")
    }
    assert quantities <= set(QUANTITIES) and "p_value" in quantities


def test_the_one_line_summary_names_the_counts_the_interval_and_what_is_missing() -> None:
    bad = summarize(_view(ArmCounts(100, 10), ArmCounts(900, 1)))
    assert bad.startswith("failed (worse_errors, two-sample): canary 60/600 errors, stable 6/5400")
    assert "the stable's (99 %)" in bad
    short = summarize(_view(ArmCounts(3, 0), ArmCounts(30, 0)))
    assert short.startswith("inconclusive (gathering") and "missing: errors" in short
