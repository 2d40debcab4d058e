"""/metrics over many deployments: valid text (prometheus_client's parser reads it back),
every documented family, one series per deployment that matches its status, secrets masked,
removed deployments gone; busy checks, skipped/missed checks and coalesced deliveries exported;
the column families write the library's bytes for odd values and labels.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as om
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from crackseg.utils.deployment.delivery.channels.log import LoggingAlertHandler
from crackseg.utils.deployment.health_monitoring import (
    DeploymentHealthMonitor,
    HealthChecker,
    HealthCheckResult,
)
from crackseg.utils.deployment.service import metrics
from crackseg.utils.deployment.service.exposition import LabelledRegistry, text_exposition
from crackseg.utils.deployment.service.metrics import build_registry
from crackseg.utils.deployment.service.text_family import ResponseHistogram, TextFamily
from tests.support.monitor_servers import LiveServer
from tests.support.procs import named_process
from tests.support.wait import wait_until

N = 1_000
SECRET = "s3cr3t-t0ken"


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.name, s.labels, s.value) for s in fam.samples]
    return out


def _documented() -> set[str]:
    names = set(re.findall(r"``(crackseg_[a-z_]+)", metrics.__doc__ or ""))
    names |= {"probe_success", "probe_duration_seconds", "probe_http_status_code"}
    # The parser names a counter family without its _total suffix.
    return {n.removesuffix("_total") for n in names}


def test_many_deployments_parse_back_whole_and_match_their_statuses(promtool_bin: str) -> None:
    # A real process of our own: a fresh CI machine runs no other "python" to watch.
    with LiveServer() as target, named_process("crackseg_metrics_many") as proc:
        target.set("/ok", status=200, body='{"status": "healthy"}')
        target.set("/down", status=500, body='{"status": "unhealthy"}')
        m = DeploymentHealthMonitor(failure_threshold=1)
        m.add_alert_handler(LoggingAlertHandler())
        try:
            registry, _ = build_registry(m)
            ids = [f"svc-{i:04d}.eu:a@b#{i % 7}" for i in range(N)]
            for i, dep in enumerate(ids):
                path = "/down" if i % 5 == 0 else "/ok"
                url = target.url(f"{path}?d={i}&token={SECRET}").replace(
                    "http://", f"http://user:{SECRET}@"
                )
                m.add_deployment_monitoring(
                    dep, url, check_interval=2.0, process_name=proc if i < 3 else None
                )
            m.start_monitoring()
            wait_until(
                lambda: all(s["total_checks"] for s in m.get_all_deployment_statuses().values()),
                60,
                "a first check of every deployment",
            )
            m.stop_monitoring()  # a still state: statuses and scrape see the same numbers
            statuses = m.get_all_deployment_statuses()
            # One collection written twice (process CPU seconds move between two).
            snapshot = _Yield(*registry.collect())
            body = text_exposition(snapshot)
            assert body == generate_latest(snapshot)
            m.remove_deployment_monitoring(ids[0])
            after_removal = text_exposition(registry).decode()
        finally:
            m.close()
    text = body.decode()
    assert SECRET not in text
    fams = _families(text)  # raises on anything that is not valid text format
    missing = _documented() - set(fams)
    assert not missing, f"documented but not exported: {sorted(missing)}"

    def per_deployment(family: str, sample: str | None = None) -> dict[str, float]:
        rows = [(lab, v) for name, lab, v in fams[family] if sample is None or name == sample]
        values = {lab["deployment_id"]: v for lab, v in rows}
        assert len(values) == len(rows), f"{family}: one sample per deployment"
        return values

    checks = per_deployment("crackseg_deployment_checks")
    assert checks == {d: float(s["total_checks"]) for d, s in statuses.items()}
    assert per_deployment("crackseg_deployment_busy_checks") == dict.fromkeys(ids, 0.0)
    success = per_deployment("probe_success")
    assert success == {d: float(s["health_status"] == "healthy") for d, s in statuses.items()}
    assert sum(v == 0.0 for v in success.values()) >= N // 5
    # The deployments with a process: its CPU seconds (a counter) and memory, no one else.
    assert set(per_deployment("crackseg_process_cpu_seconds")) == set(ids[:3])
    assert set(per_deployment("crackseg_process_resident_memory_bytes")) == set(ids[:3])
    counts = per_deployment(
        "crackseg_probe_response_time_seconds", "crackseg_probe_response_time_seconds_count"
    )
    assert counts == checks  # every check observed once
    status_rows = Counter(lab["deployment_id"] for _, lab, _ in fams["crackseg_deployment_status"])
    assert set(status_rows.values()) == {4} and len(status_rows) == N
    instances = {lab["instance"] for _, lab, _ in fams["probe_duration_seconds"]}
    assert len(instances) == N and all("user:***@" in u for u in instances)
    alerts = Counter(lab["deployment_id"] for _, lab, _ in fams["crackseg_alert_active"])
    assert set(alerts) == {d for d, s in statuses.items() if s["active_alerts"]}
    (active,) = fams["crackseg_active_alerts"]
    assert active[2] == sum(len(s["active_alerts"]) for s in statuses.values()) > 0
    results = {lab["result"] for _, lab, _ in fams["crackseg_alert_notifications"]}
    assert results == {"sent", "failed", "retried", "dead_lettered", "coalesced", "dropped"}
    # A removed deployment leaves every family (the histogram and uptime included).
    assert f'"{ids[0]}"' not in after_removal and f'"{ids[1]}"' in after_removal
    # Prometheus's own parser reads it too: exit 3 is lint advice only, 1 a parse error.
    check = subprocess.run(
        [promtool_bin, "check", "metrics"],
        input=body, capture_output=True, timeout=60,
    )  # fmt: skip
    assert check.returncode in (0, 3) and b"error" not in check.stdout + check.stderr, check


class _BlockingChecker(HealthChecker):
    """A synchronous custom checker that holds its thread until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def check_health(self, url: str, timeout: int = 10) -> HealthCheckResult:
        self.release.wait()
        return HealthCheckResult(True, "healthy", 1.0)

    def wait_for_healthy(self, url: str, max_wait: int = 300, interval: int = 5) -> bool:
        return True


def test_busy_checks_and_the_engines_skipped_checks_are_exported() -> None:
    checker = _BlockingChecker()
    m = DeploymentHealthMonitor(checker)
    try:
        registry, _ = build_registry(m)
        m.add_deployment_monitoring(
            "slow", "http://127.0.0.1:9/slow", check_interval=0.2, timeout=0.2
        )
        m.start_monitoring()
        wait_until(lambda: m.get_deployment_status("slow")["busy_checks"] >= 2, 10, "busy checks")
        checker.release.set()
        m.stop_monitoring()
        busy = m.get_deployment_status("slow")["busy_checks"]
        stats = m.engine_stats()
        fams = _families(text_exposition(registry).decode())
    finally:
        checker.release.set()
        m.close()
    assert fams["crackseg_deployment_busy_checks"] == [
        ("crackseg_deployment_busy_checks_total", {"deployment_id": "slow"}, float(busy))
    ]
    for key, family in (
        ("checks_skipped_busy", "crackseg_engine_checks_skipped_busy"),
        ("checks_missed", "crackseg_engine_checks_missed"),
        ("checks_cancelled", "crackseg_engine_checks_cancelled"),
        ("checks_due", "crackseg_engine_checks_due"),
    ):
        ((_, _, value),) = fams[family]
        assert value == float(stats[key]), family


class _OddValues(Collector):
    """Text families with the values and label values the writer must spell as the library."""

    VALUES = (0.0, 1.0, -1.0, 1e-05, 0.1 + 0.2, 123456.7, 1234567.8, 1764633000.125,
              2.0**53, 1e22, -5e300, float("inf"), float("-inf"), float("nan"), 7)  # fmt: skip
    LABELS = ('a"b', "back\\slash", "new\nline", "ünï", "", "plain")

    def __init__(self) -> None:
        self.hist = ResponseHistogram("odd_hist", "a histogram", (0.001, 0.5, 1.0))
        for v in (0.0, 0.001, 0.0011, 0.5, 1.0, 7.5, 1e9):
            self.hist.observe('d"1', v)
        self.hist.observe("d2", 0.2)

    def collect(self) -> Iterator[Metric]:
        for n_labels in (0, 1, 2, 3):
            names = ["zeta", "alpha", "mid"][:n_labels]
            fam = TextFamily(f"odd_{n_labels}", "doc with \\ and\nnewline", "gauge", names)
            for i, v in enumerate(self.VALUES):
                fam.add([self.LABELS[(i + k) % len(self.LABELS)] for k in range(n_labels)], v)
            yield fam
        counter = TextFamily("odd_counter", "a counter", "counter", ["deployment_id"])
        counter.add(["x"], 3.0)
        yield counter
        yield self.hist.family()


@pytest.mark.parametrize("instance", [None, 'a"b\\c\nd'])
def test_text_families_write_the_librarys_bytes_for_odd_values_and_labels(
    instance: str | None,
) -> None:
    # Labelled as the service labels them (a constant label, here with every character the
    # format escapes), and in both formats.
    registry = LabelledRegistry({"monitor_instance": instance} if instance else None)
    registry.register(_OddValues())
    fast = text_exposition(registry)
    assert fast == generate_latest(registry)
    fast_om = text_exposition(registry, openmetrics=True)
    assert fast_om == om.generate_latest(registry)  # type: ignore[no-untyped-call]
    assert fast_om.count(b"odd_hist_created{") == 2  # inline in each deployment's rows
    fams = _families(fast.decode())
    assert {lab["alpha"] for _, lab, _ in fams["odd_2"]} >= {'a"b', "new\nline", "ünï"}
    buckets = {lab["le"]: v for name, lab, v in fams["odd_hist"] if name == "odd_hist_bucket"
               and lab["deployment_id"] == 'd"1'}  # fmt: skip
    assert buckets == {"0.001": 2.0, "0.5": 4.0, "1.0": 5.0, "+Inf": 7.0}


def test_a_text_family_refuses_names_it_cannot_write_and_ragged_columns() -> None:
    with pytest.raises(ValueError, match="label name 'ä'"):
        TextFamily("ok_name", "doc", "gauge", ["ä"])
    with pytest.raises(ValueError, match="metric name"):
        TextFamily("bad-name", "doc", "gauge", [])
    fam = TextFamily("ragged", "doc", "gauge", ["a", "b"], [["x", "y"], ["z"]], [1.0, 2.0])
    registry = CollectorRegistry()
    registry.register(_Yield(fam))
    with pytest.raises(ValueError, match="one value per sample"):
        text_exposition(registry)


class _Yield(Collector):
    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families
