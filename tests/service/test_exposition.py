"""/metrics: the fast writer gives the library's bytes in both formats (text and OpenMetrics),
with the monitor_instance label on every series, and every documented series is there."""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as om
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service import metrics
from crackseg.utils.deployment.service.exposition import text_exposition
from crackseg.utils.deployment.service.metrics import build_registry
from tests.support.monitor_servers import LiveServer
from tests.support.procs import named_process


def _checked_monitor(target: LiveServer, proc: str) -> DeploymentHealthMonitor:
    target.set("/ok", status=200, body='{"status": "healthy"}')
    target.set("/down", status=500, body='{"status": "unhealthy"}')
    m = DeploymentHealthMonitor(failure_threshold=1)
    m.add_alert_handler(LoggingAlertHandler())
    m.add_deployment_monitoring("web.a:1@x", target.url('/ok?q=\\"n'), check_interval=0.1)
    m.add_deployment_monitoring("db", target.url("/down"), process_name=proc, check_interval=0.1)
    return m


def test_fast_writer_gives_generate_latest_bytes_and_every_documented_series() -> None:
    # A process of its own to watch: a fresh CI machine runs no other "python" (the monitor
    # never matches itself), and the per-process series are written only for a live one.
    with LiveServer() as target, named_process("crackseg_exposition") as proc:
        m = _checked_monitor(target, proc)
        try:
            registry, _ = build_registry(m, monitor_instance='host-a:90"1')
            m.start_monitoring()
            assert m.wait_for_checks("db", 3) and m.wait_for_checks("web.a:1@x", 3)
            m.stop_monitoring()
            # One collection written four ways (CPU and network counters move between two).
            snapshot = _Snapshot(list(registry.collect()))
            fast = text_exposition(snapshot)
            assert fast == generate_latest(snapshot)
            fast_om = text_exposition(snapshot, openmetrics=True)
            assert fast_om == om.generate_latest(snapshot)  # type: ignore[no-untyped-call]
        finally:
            m.close()
    assert fast_om.endswith(b"# EOF\n")
    families = list(text_string_to_metric_families(fast_om.decode()))
    # Every sample of every family names the monitor that wrote it.
    assert {s.labels.get("monitor_instance") for f in families for s in f.samples} == {
        'host-a:90"1'
    }
    text = fast.decode()
    documented = set(re.findall(r"``(crackseg_[a-z_]+)", metrics.__doc__ or ""))
    assert len(documented) > 20
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    missing = {
        name
        for name in documented
        if name not in exported and name.removesuffix("_total") + "_total" not in exported
    }
    assert not missing, f"documented but not exported: {sorted(missing)}"
    sample = r'\{monitor_instance="host-a:90\\"1"\} (\S+)$'
    due = re.search(r"^crackseg_engine_checks_due_total" + sample, text, re.M)
    done = re.search(r"^crackseg_engine_checks_total" + sample, text, re.M)
    assert due and done and float(due.group(1)) >= float(done.group(1)) >= 6


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class _Utf8Labels(Collector):
    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "odd_labels", "label names the fast path does not write", labels=["ä"]
        )
        g.add_metric(["x"], 1.0)
        yield g


def test_names_needing_escaping_go_through_the_library() -> None:
    registry = CollectorRegistry()
    registry.register(_Utf8Labels())
    assert text_exposition(registry) == generate_latest(registry)
    assert text_exposition(registry, openmetrics=True) == om.generate_latest(registry)  # type: ignore[no-untyped-call]
