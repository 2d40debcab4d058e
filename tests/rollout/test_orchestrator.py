"""Orchestrator pieces without nginx: config validation, gate verdicts, metrics parsing,
history, manual rollback, abort, alerts, plain deployment functions (real processes)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.errors import ConfigError, DeploymentError
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.orchestration import (
    AlertHandler,
    DeploymentConfig,
    DeploymentMetadata,
    DeploymentOrchestrator,
    DeploymentResult,
    DeploymentState,
    DeploymentStrategy,
    PerformanceMonitor,
    PerformanceSnapshot,
    Verdict,
)
from crackseg.utils.deployment.rollout.analysis import histogram_quantile, parse_prometheus_text
from crackseg.utils.deployment.rollout.gate import AnalysisCriteria, judge_analysis, judge_probes
from crackseg.utils.deployment.rollout.routers.callback import CallbackRouter
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from tests.support.runtime import http_get, sample_target, start_instance


def fast(version: str, **kw: Any) -> DeploymentConfig:
    base: dict[str, Any] = dict(
        version=version,
        check_interval=0.05,
        success_threshold=1,
        bake_seconds=0.3,
        health_timeout=15.0,
        keep_old_seconds=30.0,
        grace_period=3.0,
        deploy_timeout=60.0,
    )
    base.update(kw)
    env = base.pop("target_environment", "prod")
    return DeploymentConfig("crackseg-model", env, **base)


class Collect(AlertHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, DeploymentMetadata, dict[str, Any]]] = []

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        self.events.append((alert_type, metadata, kwargs))

    def types(self, deployment_id: str) -> list[str]:
        return [t for t, m, _ in self.events if m.deployment_id == deployment_id]


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"artifact_id": ""}, "artifact_id"),
        ({"target_environment": " "}, "target_environment"),
        ({"canary_steps": [10, 5, 100]}, "canary_steps"),
        ({"canary_steps": [10, 50]}, "canary_steps"),
        ({"canary_steps": [0, 100]}, "canary_steps"),
        ({"max_surge": 0, "max_unavailable": 0}, "max_surge"),
        ({"replicas": 2, "max_unavailable": 3}, "max_unavailable"),
        ({"replicas": 0}, "replicas"),
        ({"max_error_rate_percent": 150}, "max_error_rate_percent"),
        ({"bake_seconds": -1}, "bake_seconds"),
        ({"health_timeout": 0}, "health_timeout"),
        ({"health_check_path": "health"}, "health_check_path"),
        ({"health_check_url": "localhost:8080/health"}, "health_check_url"),
        ({"on_inconclusive": "pray"}, "on_inconclusive"),
        ({"max_latency_ratio": 0.5}, "max_latency_ratio"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"artifact_id": "m", "target_environment": "prod", **kwargs}
    with pytest.raises(ConfigError) as err:
        DeploymentConfig(**args)
    assert err.value.field == field
    assert field in str(err.value)


def test_config_defaults() -> None:
    c = DeploymentConfig("model", "prod")
    assert c.version == "model"
    assert c.canary_steps == [10, 25, 50, 100]
    assert c.criteria.min_samples == c.min_samples


def test_unknown_strategy_and_missing_launcher_are_config_errors() -> None:
    with DeploymentOrchestrator() as orch:
        with pytest.raises(ConfigError, match="strategy"):
            orch.deploy_with_strategy(fast("v1"), "big_bang", lambda c, **k: None)
        with pytest.raises(ConfigError, match="deployment_func"):
            orch.deploy_with_strategy(fast("v1"), DeploymentStrategy.RECREATE)


# ---------------------------------------------------------------- gate verdicts
def _probe(ok: bool, ms: float = 1.0) -> HealthCheckResult:
    return HealthCheckResult(
        ok, "healthy" if ok else "unhealthy", ms, error_message=None if ok else "HTTP 500"
    )


def test_judge_probes_uses_the_consecutive_tail() -> None:
    kw = {"success_threshold": 2, "failure_threshold": 3}
    assert judge_probes([], **kw).verdict is Verdict.INCONCLUSIVE
    assert judge_probes([_probe(False), _probe(True)], **kw).verdict is Verdict.INCONCLUSIVE
    assert judge_probes([_probe(False), _probe(True), _probe(True)], **kw).passed
    fails = judge_probes([_probe(True), *[_probe(False)] * 3], **kw)
    assert fails.failed and "3 consecutive" in fails.reason and "HTTP 500" in fails.reason


def _snap(
    requests: int, errors: int, p95: float | None = 5.0, min_samples: int = 20
) -> PerformanceSnapshot:
    s = PerformanceSnapshot("metrics", 1.0, requests=requests, errors=errors, p95_ms=p95)
    s.error_rate_percent = 100.0 * errors / requests if requests else None
    s.enough_data = requests >= min_samples
    s.reason = None if s.enough_data else "few"
    return s


def test_judge_analysis_verdicts() -> None:
    crit = AnalysisCriteria(max_error_rate_percent=5.0, max_p95_latency_ms=100.0, min_samples=20)
    assert judge_analysis(_snap(5, 0), None, crit).verdict is Verdict.INCONCLUSIVE
    # 3 errors in 5 requests: even 15 more successes could not bring it under 5 %: fail now.
    early = judge_analysis(_snap(5, 3), None, crit)
    assert early.failed and "error rate" in early.reason
    assert judge_analysis(_snap(100, 1), None, crit).passed
    assert judge_analysis(_snap(100, 10), None, crit).failed
    slow = judge_analysis(_snap(100, 0, p95=250.0), None, crit)
    assert slow.failed and "p95" in slow.reason
    # Against the stable version: 4 % is under the absolute 5 % but 4 points over stable's 0 %.
    strict = AnalysisCriteria(max_error_rate_percent=5.0, max_error_rate_delta_percent=2.0)
    assert judge_analysis(_snap(100, 4), _snap(100, 0), strict).failed
    assert judge_analysis(_snap(100, 4), _snap(100, 3), strict).passed
    latency = judge_analysis(_snap(100, 0, p95=90.0), _snap(100, 0, p95=20.0), crit)
    assert latency.failed and "vs stable" in latency.reason
    broken = PerformanceSnapshot("none", 0.0, error="scrape failed: refused")
    assert judge_analysis(broken, None, crit).verdict is Verdict.ERROR


# ---------------------------------------------------------------- performance
def test_histogram_quantile_interpolates_like_promql() -> None:
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.55)
    assert histogram_quantile(0.5, []) is None
    assert parse_prometheus_text('# HELP x\nx_total{code="500",route="/p"} 2.0\n') == {
        "x_total": [({"code": "500", "route": "/p"}, 2.0)]
    }
    # A scrape that cannot be read is a failed measurement, never a partial one.
    with pytest.raises(ValueError, match="malformed"):
        parse_prometheus_text('x_total{code="500"} 2.0\nbad line\n')


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ProcessTarget]:
    with sample_target(tmp_path, version_args={"v3": ["--fail-health"]}) as t:
        yield t


def test_performance_monitor_measures_real_metrics(target: ProcessTarget) -> None:
    inst = start_instance(target, "v1")
    assert http_get(inst.url + "/admin/fail?mode=errors&error_rate=0.25", method="POST")[0] == 200
    pm = PerformanceMonitor([inst.url + "/metrics"], label_filter={"route": "/predict"})
    assert pm.snapshot(min_samples=1).enough_data is False
    assert pm.scrape()
    for _ in range(40):
        http_get(inst.url + "/predict")
    assert pm.scrape()
    snap = pm.snapshot(min_samples=40)
    assert (snap.source, snap.requests, snap.errors) == ("metrics", 40, 10)
    assert snap.error_rate_percent == pytest.approx(25.0)
    assert snap.p95_ms is not None and 0 < snap.p95_ms < 1000
    assert snap.enough_data and snap.request_rate and snap.request_rate > 0

    dead = PerformanceMonitor(["http://127.0.0.1:1/metrics"], timeout=0.5)
    assert not dead.scrape()
    bad = dead.snapshot()
    assert bad.error is not None and not bad.enough_data and bad.requests is None

    probes = PerformanceMonitor()
    for ok in (True, True, False, True):
        probes.record_probe(_probe(ok, 2.0))
    s = probes.snapshot(min_samples=4)
    assert (s.source, s.requests, s.errors, s.enough_data) == ("probes", 4, 1, True)


# ---------------------------------------------------------------- orchestrator with real processes
@pytest.fixture
def orch(target: ProcessTarget) -> Iterator[tuple[DeploymentOrchestrator, CallbackRouter, Collect]]:
    router = CallbackRouter()
    collect = Collect()
    o = DeploymentOrchestrator(router=router, target=target)
    o.add_alert_handler(collect)
    try:
        yield o, router, collect
    finally:
        o.close()


def _routed(router: CallbackRouter) -> list[str]:
    return [b.label for b in router.current()]


def test_blue_green_then_manual_rollback(
    orch: tuple[DeploymentOrchestrator, CallbackRouter, Collect], target: ProcessTarget
) -> None:
    o, router, collect = orch
    r1 = o.deploy_with_strategy(fast("v1"), DeploymentStrategy.BLUE_GREEN)
    assert r1.success, r1.error_message
    r2 = o.deploy_with_strategy(fast("v2"), DeploymentStrategy.BLUE_GREEN)
    assert r2.success, r2.error_message
    assert _routed(router) == ["v2"]
    env = o.get_environment("prod")
    assert env["current"]["version"] == "v2" and env["previous"]["version"] == "v1"
    assert env["current"]["slot"] != env["previous"]["slot"]
    # Automatic health monitoring moved from v1 to v2.
    assert r2.deployment_id in o.health_monitor.monitored_deployments
    assert r1.deployment_id not in o.health_monitor.monitored_deployments
    t0 = time.monotonic()
    rb = o.manual_rollback(r2.deployment_id)
    assert rb.success and rb.rolled_back, rb.error_message
    assert time.monotonic() - t0 < 5.0  # the old slot was kept alive: one router change
    assert _routed(router) == ["v1"]
    assert http_get(f"http://{router.current()[0].address}/version")[2] == b'{"version": "v1"}'
    meta = o.get_deployment_status(r2.deployment_id)
    assert meta is not None and meta.state == DeploymentState.ROLLED_BACK.value
    assert meta.rollback_reason == "manual rollback requested"
    assert [i for i in target.instances() if "-v2-" in i] == []  # v2 stopped
    # Rollback has a target again (v1 serves; nothing before it).
    assert o.manual_rollback(r1.deployment_id).success is False
    history = o.get_deployment_history("crackseg-model")
    assert [m.deployment_id for m in history] == [r1.deployment_id, r2.deployment_id]
    states = [s.state for s in history[1].state_history]
    assert states[0] == "in_progress" and states[-1] == "rolled_back" and "success" in states
    assert o.health_monitor.dispatcher.wait_idle(5.0)
    assert collect.types(r2.deployment_id) == [
        "deployment_started",
        "deployment_success",
        "rollback_triggered",
        "rollback_completed",
    ]


def test_failed_health_gate_rolls_back_and_keeps_previous(
    orch: tuple[DeploymentOrchestrator, CallbackRouter, Collect], target: ProcessTarget
) -> None:
    o, router, collect = orch
    assert o.deploy_with_strategy(fast("v2"), "blue_green").success
    t0 = time.monotonic()
    r3 = o.deploy_with_strategy(fast("v3", health_timeout=2.0), "blue_green")
    assert time.monotonic() - t0 < 10.0
    assert not r3.success and r3.rolled_back
    assert r3.error_message and "health gate failed" in r3.error_message
    assert r3.metadata is not None and r3.metadata.rollback_reason == r3.error_message
    assert _routed(router) == ["v2"]
    assert [i for i in target.instances() if "-v3-" in i] == []
    assert o.get_environment("prod")["current"]["version"] == "v2"
    assert o.health_monitor.dispatcher.wait_idle(5.0)
    assert collect.types(r3.deployment_id) == [
        "deployment_started",
        "rollback_triggered",
        "rollback_completed",
        "deployment_failure",
    ]
    failure = next(kw for t, _, kw in collect.events if t == "deployment_failure")
    assert failure["severity"] == "critical" and failure["state"] == "firing"


def test_abort_from_another_thread_rolls_back_promptly(
    orch: tuple[DeploymentOrchestrator, CallbackRouter, Collect],
) -> None:
    o, router, _ = orch
    assert o.deploy_with_strategy(fast("v1"), "blue_green").success
    cfg = fast("v2", deployment_id="dep-abort", bake_seconds=60.0)
    out: list[DeploymentResult] = []
    th = threading.Thread(target=lambda: out.append(o.deploy_with_strategy(cfg, "blue_green")))
    th.start()
    deadline = time.monotonic() + 20
    while True:  # wait until it bakes on v2
        meta = o.get_deployment_status("dep-abort")
        if meta is not None and "switched_at" in meta.extra:
            break
        assert time.monotonic() < deadline, "never switched"
        time.sleep(0.02)
    with pytest.raises(DeploymentError, match="in progress"):
        o.deploy_with_strategy(fast("v9"), "blue_green")
    t0 = time.monotonic()
    assert o.abort("dep-abort")
    th.join(15)
    assert not th.is_alive()
    assert time.monotonic() - t0 < 5.0
    assert not out[0].success and out[0].rolled_back
    assert "aborted" in (out[0].error_message or "")
    assert _routed(router) == ["v1"]
    assert o.abort("dep-abort") is False


def test_plain_deployment_function_gets_its_slot(tmp_path: Path, target: ProcessTarget) -> None:
    calls: list[dict[str, Any]] = []

    def deploy(config: DeploymentConfig, **kwargs: Any) -> dict[str, Any]:
        calls.append(dict(kwargs))
        inst = target.deploy(str(config.version), environment=kwargs["environment"])
        return {"deployment_url": inst.url, "teardown": lambda: target.teardown(inst, 2.0)}

    with DeploymentOrchestrator(router=CallbackRouter()) as o:
        assert o.deploy_with_strategy(fast("v1"), "blue_green", deploy, team="vision").success
        assert o.deploy_with_strategy(fast("v2", canary_steps=[50, 100]), "canary", deploy).success
        r = o.deploy_with_strategy(
            fast("v4", replicas=2, max_surge=1, max_unavailable=0), "rolling", deploy
        )
        assert r.success, r.error_message
    assert calls[0] == {"environment": "blue", "team": "vision"}
    assert calls[1] == {"environment": "canary", "traffic_percentage": 50}
    assert [c.get("replica_index") for c in calls[2:]] == [0, 1]
    assert all(c["total_replicas"] == 2 and c["environment"] == "prod" for c in calls[2:])


def test_plain_function_result_forms_and_bad_answers(target: ProcessTarget) -> None:
    inst = start_instance(target, "v1")
    with DeploymentOrchestrator() as o:
        r = o.deploy_with_strategy(
            fast("v1"),
            "recreate",
            lambda c, **k: DeploymentResult(
                True, "x", "m", "prod", inst.url, inst.health_check_url
            ),
        )
        assert r.success and r.health_check_url == inst.health_check_url
        r2 = o.deploy_with_strategy(
            fast("v1", target_environment="staging"), "recreate", lambda c, **k: None
        )
        assert not r2.success and "no URL" in (r2.error_message or "")
    # The user's function owns teardown: the instance still runs.
    assert target.is_alive(inst)
    with urllib.request.urlopen(inst.health_check_url, timeout=2) as resp:
        assert resp.status == 200


def test_public_face_re_exports_the_handlers() -> None:
    from crackseg.utils.deployment import orchestration
    from crackseg.utils.deployment.delivery.base import AlertHandler as BaseHandler
    from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler

    assert orchestration.AlertHandler is BaseHandler  # re-exported, not redefined
    assert orchestration.LoggingAlertHandler is LoggingAlertHandler
    # The surface itself is pinned once, in tests/test_public_api.py.


def test_recreate_failure_starts_the_old_version_again(
    orch: tuple[DeploymentOrchestrator, CallbackRouter, Collect], target: ProcessTarget
) -> None:
    o, router, _ = orch
    _ = o.deploy_with_strategy(fast("v1"), "recreate")
    v2 = o.deploy_with_strategy(fast("v2"), "recreate")
    assert v2.success and _routed(router) == ["v2"]
    assert [i for i in target.instances() if "-v1-" in i] == []  # recreate stops the old first
    bad = o.deploy_with_strategy(fast("v3", health_timeout=1.5), "recreate")
    assert not bad.success and bad.rolled_back
    assert _routed(router) == ["v2"]
    address = router.current()[0].address
    assert http_get(f"http://{address}/version")[2] == b'{"version": "v2"}'
    assert o.get_environment("prod")["current"]["instances"] == [address]


def test_rolling_failure_restores_retired_replicas(
    orch: tuple[DeploymentOrchestrator, CallbackRouter, Collect], target: ProcessTarget
) -> None:
    o, router, _ = orch
    rolling = dict(replicas=2, max_surge=0, max_unavailable=1)
    assert o.deploy_with_strategy(fast("v1", **rolling), "rolling").success
    assert _routed(router) == ["v1", "v1"]
    bad = o.deploy_with_strategy(fast("v3", health_timeout=1.5, **rolling), "rolling")
    assert not bad.success and bad.rolled_back
    assert bad.metadata is not None
    retired = [s for s in bad.metadata.extra["steps"] if s["step"] == "route"]
    assert retired and retired[0]["backends"][0].startswith("v1@")  # one v1 was drained
    assert _routed(router) == ["v1", "v1"]
    for b in router.current():
        assert http_get(f"http://{b.address}/health")[0] == 200
    assert len([i for i in target.instances() if "-v1-" in i]) == 2
    assert [i for i in target.instances() if "-v3-" in i] == []


def test_manual_rollback_restarts_a_stopped_previous_version(
    orch: tuple[DeploymentOrchestrator, CallbackRouter, Collect], target: ProcessTarget
) -> None:
    o, router, _ = orch
    assert o.deploy_with_strategy(fast("v1"), "blue_green").success
    r2 = o.deploy_with_strategy(fast("v2", keep_old_seconds=0.0), "blue_green")
    assert r2.success
    deadline = time.monotonic() + 10
    while [i for i in target.instances() if "-v1-" in i]:
        assert time.monotonic() < deadline, "old slot never stopped"
        time.sleep(0.02)
    n_changes = len(router.history)
    rb = o.manual_rollback(r2.deployment_id)
    assert rb.success, rb.error_message
    assert _routed(router) == ["v1"] and len(router.history) == n_changes + 1
    assert http_get(f"http://{router.current()[0].address}/version")[2] == b'{"version": "v1"}'
    assert [i for i in target.instances() if "-v2-" in i] == []


def test_monitor_alerts_and_deployment_events_share_one_delivery(
    orch: tuple[DeploymentOrchestrator, CallbackRouter, Collect],
) -> None:
    o, _, collect = orch
    r = o.deploy_with_strategy(fast("v1", monitor_interval=0.1), "blue_green")
    assert r.success and r.health_check_url
    o.start_health_monitoring()
    try:
        assert o.health_monitor.wait_for_checks(r.deployment_id, count=2, timeout=10)
        assert o.get_deployment_health_status(r.deployment_id)["health_status"] == "healthy"
        assert r.deployment_id in o.get_all_health_statuses()
        assert (
            http_get(
                r.health_check_url.replace("/health", "/admin/fail?mode=unhealthy"), method="POST"
            )[0]
            == 200
        )
        deadline = time.monotonic() + 10
        while "health_check_failed" not in collect.types(r.deployment_id):
            assert time.monotonic() < deadline, collect.types(r.deployment_id)
            time.sleep(0.02)
    finally:
        o.stop_health_monitoring()
    kinds = collect.types(r.deployment_id)
    assert kinds[:2] == ["deployment_started", "deployment_success"]


def test_manual_rollback_with_a_plain_function_probes_before_trusting(
    target: ProcessTarget,
) -> None:
    started: dict[str, list[Any]] = {}

    def deploy(config: DeploymentConfig, **kwargs: Any) -> str:
        inst = target.deploy(str(config.version), environment=kwargs["environment"])
        started.setdefault(str(config.version), []).append(inst)
        return inst.url

    router = CallbackRouter()
    with DeploymentOrchestrator(router=router) as o:
        assert o.deploy_with_strategy(fast("v1"), "blue_green", deploy).success
        r2 = o.deploy_with_strategy(fast("v2"), "blue_green", deploy)
        assert r2.success
        # The user stopped v1 themselves: the orchestrator cannot know but by looking.
        target.teardown(started["v1"][0], 2.0)
        rb = o.manual_rollback(r2.deployment_id)
        assert rb.success, rb.error_message
    assert len(started["v1"]) == 2  # started again through the user's function
    assert _routed(router) == ["v1"]
    assert router.current()[0].address == started["v1"][1].address
    assert target.is_alive(started["v2"][0])  # teardown of v2 is the user's


def test_history_persists_through_a_sqlite_store(tmp_path: Path, target: ProcessTarget) -> None:
    from crackseg.utils.deployment.history.sqlite.store import SQLiteStore

    store = SQLiteStore(tmp_path / "history.db")
    try:
        with DeploymentOrchestrator(store=store, router=CallbackRouter(), target=target) as o:
            assert o.health_monitor.store is store
            ok = o.deploy_with_strategy(fast("v1"), "blue_green")
            bad = o.deploy_with_strategy(fast("v3", health_timeout=1.0), "blue_green")
            assert ok.success and not bad.success
        store.flush()
    finally:
        store.close()
    reopened = SQLiteStore(tmp_path / "history.db")
    try:
        records = {m.deployment_id: m for m in reopened.deployment_records("crackseg-model")}
    finally:
        reopened.close()
    assert records[ok.deployment_id].state == "success"
    failed = records[bad.deployment_id]
    assert failed.state == "rolled_back" and failed.rollback_reason == bad.error_message
    assert failed.previous_deployment_id == ok.deployment_id
    assert [s.state for s in failed.state_history][-2:] == ["rolling_back", "rolled_back"]
    assert any(s["step"] == "gate" for s in failed.extra["steps"])
