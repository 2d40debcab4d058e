"""The public surface changes only on purpose: __all__ is pinned here."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import crackseg.utils.deployment as deployment
from crackseg.utils.deployment import health_monitoring, orchestration
from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.monitoring.checks.base import HealthChecker
from crackseg.utils.deployment.monitoring.resources.base import ResourceMonitor


def test_health_monitoring_all() -> None:
    assert sorted(health_monitoring.__all__) == sorted(
        [
            "DEFAULT_THRESHOLDS",
            "AlertEvent",
            "AlertHandler",
            "ConfigError",
            "DefaultHealthChecker",
            "DefaultResourceMonitor",
            "DeploymentHealthMonitor",
            "HealthCheckResult",
            "HealthChecker",
            "HealthStatus",
            "HistoryStore",
            "MemoryStore",
            "ProcessNotFoundError",
            "ResourceMetrics",
            "ResourceMonitor",
            "SQLiteStore",
        ]
    )
    for name in health_monitoring.__all__:
        assert hasattr(health_monitoring, name), name


def test_orchestration_exports_the_spec_names() -> None:
    for name in (
        "DeploymentOrchestrator",
        "AlertHandler",
        "LoggingAlertHandler",
        "DeploymentStrategy",
        "DeploymentState",
        "DeploymentMetadata",
        "DeploymentConfig",
        "DeploymentResult",
        "PerformanceMonitor",
    ):
        assert name in orchestration.__all__, name
        assert hasattr(orchestration, name), name
    # defined once: the orchestrator re-exports the notifier base, it does not redefine it
    assert orchestration.AlertHandler is AlertHandler
    assert sorted(orchestration.__all__) == sorted(
        [
            "AlertHandler",
            "ArmCounts",
            "CallbackRouter",
            "CanaryJudge",
            "DeploymentAborted",
            "DeploymentConfig",
            "DeploymentMetadata",
            "DeploymentOrchestrator",
            "DeploymentResult",
            "DeploymentState",
            "DeploymentStrategy",
            "DeploymentTarget",
            "Evidence",
            "GateResult",
            "JudgeConfig",
            "Judgement",
            "LoadSpec",
            "LoggingAlertHandler",
            "NginxRouter",
            "PerformanceMonitor",
            "PerformanceSnapshot",
            "ProcessTarget",
            "SSHHost",
            "SSHTarget",
            "TrafficRouter",
            "Verdict",
        ]
    )


def test_the_readme_imports_only_from_the_public_faces() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = readme.split("```python")[1:]
    imported = set()
    for block in blocks:
        tree = ast.parse(block.split("```")[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crackseg"):
                imported.add(node.module)
                face = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(face, alias.name), (node.module, alias.name)
    assert imported and imported <= {health_monitoring.__name__, orchestration.__name__}, imported


def test_builtins_satisfy_their_interfaces() -> None:
    hm = health_monitoring
    assert issubclass(hm.DefaultHealthChecker, HealthChecker)
    assert issubclass(hm.DefaultResourceMonitor, ResourceMonitor)
    assert issubclass(orchestration.LoggingAlertHandler, AlertHandler)
    for cls in (
        hm.DefaultHealthChecker,
        hm.DefaultResourceMonitor,
        orchestration.LoggingAlertHandler,
    ):
        assert not inspect.isabstract(cls), cls


def test_spec_signatures() -> None:
    sig = inspect.signature(
        hm_add := health_monitoring.DeploymentHealthMonitor.add_deployment_monitoring
    )
    assert list(sig.parameters)[:5] == [
        "self",
        "deployment_id",
        "health_check_url",
        "process_name",
        "check_interval",
    ]
    assert sig.parameters["check_interval"].default == 30 and hm_add is not None
    check = inspect.signature(health_monitoring.DefaultHealthChecker.check_health)
    assert check.parameters["timeout"].default == 10
    wait = inspect.signature(health_monitoring.DefaultHealthChecker.wait_for_healthy)
    assert wait.parameters["max_wait"].default == 300 and wait.parameters["interval"].default == 5


def _defined_public_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_") and n != "logger"}


def _public_modules() -> list[str]:
    root = Path(deployment.__file__).parent
    mods = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        mods.append(".".join([deployment.__name__, *parts]))
    return mods


@pytest.mark.parametrize("module_name", _public_modules())
def test_every_public_module_pins_its_surface(module_name: str) -> None:
    """Each public module's ``__all__`` names exactly what it defines publicly (and re-exports)."""
    module = importlib.import_module(module_name)
    tree = ast.parse(Path(module.__file__ or "").read_text())
    defined = _defined_public_names(tree) - {"__all__"}
    if not defined and not hasattr(module, "__all__"):
        return  # an empty package marker
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} declares no __all__"
    assert len(exported) == len(set(exported)), f"{module_name}: __all__ repeats a name"
    missing = defined - set(exported)
    assert not missing, f"{module_name}: public names not in __all__: {sorted(missing)}"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names {name!r}, which does not exist"
