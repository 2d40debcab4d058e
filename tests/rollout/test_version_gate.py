"""``require_version``: a deploy whose new instances report another version (it started the
old build) is caught at the health gate with both versions named; one reporting none never
passes it. Real sample-service processes behind a callback router."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.orchestration import (
    DeploymentConfig,
    DeploymentOrchestrator,
    DeploymentStrategy,
    Verdict,
)
from crackseg.utils.deployment.rollout.gate import judge_probes
from crackseg.utils.deployment.rollout.routers.callback import CallbackRouter
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget

_SAMPLE = "crackseg.utils.deployment.service.sample_service"


def _config(version: str, **kw: Any) -> DeploymentConfig:
    return DeploymentConfig(
        "crackseg-model", "prod", version=version, check_interval=0.05, success_threshold=1,
        bake_seconds=0.3, health_timeout=5.0, grace_period=3.0, deploy_timeout=60.0,
        keep_old_seconds=30.0, **kw,
    )  # fmt: skip


@pytest.fixture
def stale_build(tmp_path: Path) -> Iterator[ProcessTarget]:
    """A target whose 'v2' starts the v1 build: the mistake the gate is there to catch."""
    command = [sys.executable, "-m", _SAMPLE, "--host", "{host}", "--port", "{port}"]
    target = ProcessTarget(
        [*command, "--version", "v1"], log_dir=tmp_path / "logs", default_grace_period=3.0
    )
    try:
        yield target
    finally:
        target.close()


def test_a_new_instance_reporting_the_old_version_fails_the_health_gate(
    stale_build: ProcessTarget,
) -> None:
    orchestrator = DeploymentOrchestrator(router=CallbackRouter(), target=stale_build)
    try:
        first = orchestrator.deploy_with_strategy(_config("v1"), DeploymentStrategy.BLUE_GREEN)
        assert first.success, first.error_message
        result = orchestrator.deploy_with_strategy(
            _config("v2", require_version=True), DeploymentStrategy.BLUE_GREEN
        )
        assert not result.success
        assert "reports version v1, expected v2" in (result.error_message or "")
        # Without the requirement the same stale build goes out: the option is what catches it.
        unchecked = orchestrator.deploy_with_strategy(_config("v2"), DeploymentStrategy.BLUE_GREEN)
        assert unchecked.success, unchecked.error_message
    finally:
        orchestrator.close()


def _healthy(version: str | None) -> HealthCheckResult:
    details = {"http_status": 200} | ({"version": version} if version else {})
    return HealthCheckResult(True, "healthy", 3.0, details=details)


def test_a_healthy_answer_without_a_version_never_passes_a_required_gate() -> None:
    probes = [_healthy(None)] * 5
    g = judge_probes(probes, success_threshold=2, failure_threshold=2, expected_version="v2")
    assert g.verdict is Verdict.INCONCLUSIVE and "reports no version" in g.reason
    g = judge_probes(
        [_healthy("v2")] * 2, success_threshold=2, failure_threshold=2, expected_version="v2"
    )
    assert g.passed
    assert judge_probes(probes, success_threshold=2, failure_threshold=2).passed
