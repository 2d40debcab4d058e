"""The service's disk is bounded by default: retention by age and rows, no machine rows."""

from __future__ import annotations

from pathlib import Path

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.service.config import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_ROWS,
    parse_config,
)
from tests.support.monitor_servers import LiveServer
from tests.support.procs import named_process

DEP = {"id": "api", "url": "http://127.0.0.1:9/health"}


def test_retention_is_on_by_default_and_null_turns_it_off() -> None:
    cfg = parse_config({"deployments": [DEP]})
    assert cfg.store.retention.max_age == DEFAULT_MAX_AGE == 7 * 86400
    assert cfg.store.retention.max_rows == DEFAULT_MAX_ROWS == 8640
    off = parse_config({"deployments": [DEP], "store": {"retention": {"max_age": None}}})
    assert off.store.retention.max_age is None and off.store.retention.max_rows == 8640


def test_machine_samples_are_not_stored_under_each_deployment(tmp_path: Path) -> None:
    with LiveServer() as target, named_process() as proc:
        store = SQLiteStore(tmp_path / "h.db")
        m = DeploymentHealthMonitor(store=store)
        try:
            m.add_deployment_monitoring("plain", target.url(), check_interval=0.1)
            m.add_deployment_monitoring("proc", target.url(), process_name=proc, check_interval=0.1)
            m.start_monitoring()
            assert m.wait_for_checks("plain", 3) and m.wait_for_checks("proc", 3)
            m.stop_monitoring()
            assert len(store.health_history("plain")) >= 3
            assert store.resource_history("plain") == []  # the machine's, not this one's
            assert len(store.resource_history("proc")) >= 3
            assert store.resource_history("proc")[0].process_name == proc
        finally:
            m.close()
