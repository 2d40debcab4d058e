"""The sequential judge's counts read from a real Prometheus server scraping stand-in
instances (stdlib servers whose ``/metrics`` the test sets): the increase per arm per look,
a reset, failed queries, an instance Prometheus does not scrape; and the validation of the
``prometheus_queries`` keys."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.orchestration import DeploymentConfig
from crackseg.utils.deployment.rollout.counters import CounterResetError, MeasurementError
from crackseg.utils.deployment.rollout.judge import JudgeConfig, JudgeVerdict
from crackseg.utils.deployment.rollout.judging import Judging
from crackseg.utils.deployment.rollout.prom_counters import PrometheusCounterReader
from tests.support.metrics_standins import MetricsStandIn, metrics_standins, metrics_text
from tests.support.prometheus import StartPrometheus
from tests.support.wait import wait_until

QUERIES = {
    "requests": 'sum(http_requests_total{instance="{instance}",route="/predict"})',
    "errors": 'sum(http_requests_total{instance="{instance}",route="/predict",code=~"5.."})',
    "duration_bucket": (
        'sum by (le) (http_request_duration_seconds_bucket{instance="{instance}",route="/predict"})'
    ),
}


@pytest.fixture
def standins() -> Iterator[list[MetricsStandIn]]:
    with metrics_standins(3) as out:
        yield out


def _reader(base: str, queries: dict[str, str] | None = None, **kw: Any) -> PrometheusCounterReader:
    kw.setdefault("scrape_interval", 1.0)
    return PrometheusCounterReader(base, queries or QUERIES, timeout=5.0, **kw)


def _scraped(reader: PrometheusCounterReader, address: str, requests: float) -> bool:
    """True once Prometheus holds ``requests`` for ``address`` (its next scrape landed)."""
    s = reader.read(address)
    return s is not None and s.requests == requests


def test_looks_are_the_increase_per_arm_between_prometheus_scrapes_and_a_reset_raises(
    standins: list[MetricsStandIn], prometheus: StartPrometheus
) -> None:
    stable, canary, _ = standins
    stable.text = metrics_text(980, 20)
    base = prometheus([stable.address, canary.address], interval="1s")
    reader = _reader(base)
    wait_until(lambda: _scraped(reader, stable.address, 1000), 20, "the stable scraped")
    wait_until(lambda: _scraped(reader, canary.address, 0), 20, "the canary scraped")
    judging = Judging.for_counters(reader, [stable.address], JudgeConfig())
    # The thresholds are the bucket bounds of the stable's histogram, as from its /metrics.
    assert judging.baseline.thresholds_ms == (10.0, 100.0)
    assert judging.baseline.counts.requests == 1000 and judging.baseline.counts.errors == 20
    judging.start_window([canary.address], [stable.address])
    judging.look()  # the canary's starting point
    # Looks between scrapes see no increase: batches of nothing, never a guess.
    judging.look()
    assert judging.window.requests("canary") == 0
    stable.text = metrics_text(1080, 20)
    canary.text = metrics_text(70, 30)
    wait_until(lambda: _scraped(reader, canary.address, 100), 20, "the canary's 100 requests")
    wait_until(lambda: _scraped(reader, stable.address, 1100), 20, "the stable's 100 more")
    judging.look()
    view = judging.view()
    assert view["source"] == "prometheus"
    window = view["window"]["user"]
    assert window["canary"]["requests"] == 100 and window["canary"]["errors"] == 30
    assert window["stable"]["requests"] == 100 and window["stable"]["errors"] == 0
    assert window["stable"]["slow"] == [50, 5]  # 50 over 10 ms, 5 over 100 ms
    # The canary over its shifted thresholds (12, 110 ms): the next bounds, 100 ms, 1 s.
    assert judging.baseline.canary_thresholds_ms == (100.0, 1000.0)
    assert window["canary"]["slow"] == [5, 0]
    assert judging.last.evidence.canary.errors == 30  # what the judge was fed
    # The canary restarted: Prometheus holds its counters going down. Broken for good.
    canary.text = metrics_text(5, 0)
    wait_until(lambda: _scraped(reader, canary.address, 5), 20, "the restarted canary scraped")
    with pytest.raises(CounterResetError, match="went down"):
        judging.look()
    canary.text = metrics_text(50, 0)
    with pytest.raises(CounterResetError):
        judging.look()
    # The post-promotion guard reads the promoted version afresh from the same Prometheus.
    wait_until(lambda: _scraped(reader, canary.address, 50), 20, "the canary's 50 scraped")
    guard = judging.after([canary.address], 0.0)
    guard.look()  # its starting point
    canary.text = metrics_text(60, 40)
    wait_until(lambda: _scraped(reader, canary.address, 100), 20, "the canary's 50 more")
    j = guard.look()
    assert guard.view()["source"] == "prometheus" and j.evidence.mode == "one-sample"
    assert guard.view()["window"]["user"]["canary"]["errors"] == 40
    assert j.verdict is JudgeVerdict.FAILED, j.reason  # 40 of 50 failing: harm, shown


def test_failed_queries_are_measurement_errors_naming_what_failed(
    standins: list[MetricsStandIn], prometheus: StartPrometheus
) -> None:
    stable = standins[0]
    stable.text = metrics_text(90, 10)
    base = prometheus([stable.address], interval="1s")
    wait_until(lambda: _scraped(_reader(base), stable.address, 100), 20, "the stand-in scraped")
    # Prometheus answers an error (a parse error, HTTP 400): the key at fault is named.
    broken = {**QUERIES, "errors": 'sum(http_requests_total{instance="{instance}",code=~"5.."}'}
    with pytest.raises(MeasurementError, match=r"prometheus_queries\.errors: .*parse error"):
        _reader(base, broken).read(stable.address)
    # One instance's requests must be one series: several is a query to aggregate.
    several = {**QUERIES, "requests": 'http_requests_total{instance="{instance}"}'}
    with pytest.raises(MeasurementError, match="requests gives 2 series"):
        _reader(base, several).read(stable.address)
    # More errors than requests: the two queries do not count the same requests.
    unfiltered = {
        **QUERIES,
        "requests": 'sum(http_requests_total{instance="{instance}",code="500"})',
    }
    unfiltered["errors"] = 'sum(http_requests_total{instance="{instance}"})'
    with pytest.raises(MeasurementError, match="above requests"):
        _reader(base, unfiltered).read(stable.address)
    # Nobody listening where Prometheus should be.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(MeasurementError, match=r"prometheus query .* failed"):
        _reader(gone).read(stable.address)
    # A Prometheus that accepts the connection and never answers: the timeout ends it.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        url = f"http://127.0.0.1:{mute.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(MeasurementError, match="timed out"):
            PrometheusCounterReader(url, QUERIES, timeout=0.5).read(stable.address)
        assert time.monotonic() - started < 5.0


def test_an_instance_prometheus_does_not_scrape_is_no_data_then_an_error(
    standins: list[MetricsStandIn], prometheus: StartPrometheus
) -> None:
    counted, idle, unscraped = standins
    counted.text = metrics_text(10, 0)
    idle.text = "# nothing counted yet\n"
    base = prometheus([counted.address, idle.address], interval="1s")
    now = [0.0]
    reader = _reader(base, clock=lambda: now[0])
    wait_until(lambda: _scraped(reader, counted.address, 10), 20, "the stand-in scraped")
    # Scraped (up is 1) without the counter yet: an instance that served no such request.
    wait_until(lambda: _scraped(reader, idle.address, 0), 20, "the idle stand-in scraped")
    # Not a target of that Prometheus: no data yet, then, after three scrape intervals,
    # an error saying so; never a run of zeros read as an idle instance.
    assert reader.read(unscraped.address) is None
    now[0] = 2.9
    assert reader.read(unscraped.address) is None
    now[0] = 3.1
    with pytest.raises(MeasurementError, match="does not scrape this instance"):
        reader.read(unscraped.address)
    # In the baseline and in a look it adds nothing while it may still come.
    reader = _reader(base, clock=lambda: now[0])
    baseline = reader.baseline([counted.address, unscraped.address])
    assert baseline.counts.requests == 10
    assert f"no counters yet for {unscraped.address}" in baseline.note
    reader.set_arms([unscraped.address], [counted.address])
    assert reader.look().requests("canary") == 0


COUNTERS = {
    "requests": 'sum(http_requests_total{instance="{instance}"})',
    "errors": 'sum(http_requests_total{instance="{instance}",code=~"5.."})',
}


@pytest.mark.parametrize(
    ("queries", "field", "match"),
    [
        ({"requests": COUNTERS["requests"]}, "prometheus_queries.errors", "needs both"),
        ({"errors": COUNTERS["errors"]}, "prometheus_queries.requests", "needs both"),
        (
            {**COUNTERS, "duration_bucket": 'sum by (le) (h_bucket{instance="{host}"})'},
            "prometheus_queries.duration_bucket",
            r"unknown \{host\}",
        ),
        (
            {**COUNTERS, "errors": 'sum(x{instance=~"{instances}"})'},
            "prometheus_queries.errors",
            r"unknown \{instances\}",
        ),
        (
            {**COUNTERS, "errors": "sum(http_requests_total)"},
            "prometheus_queries.errors",
            r"one instance with \{instance\}",
        ),
        ({**COUNTERS, "p95_ms": "1"}, "prometheus_queries.p95_ms", "do not mix"),
        ({**COUNTERS, "p96_ms": "1"}, "prometheus_queries.p96_ms", "unknown key"),
        (
            {"error_rate_percent": 'x{instance="{instance}"}'},
            "prometheus_queries.error_rate_percent",
            r"unknown \{instance\}",
        ),
    ],
)
def test_prometheus_queries_are_checked_naming_the_key(
    queries: dict[str, str], field: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        DeploymentConfig(
            "m", "prod", prometheus_url="http://127.0.0.1:9090", prometheus_queries=queries
        )
    assert info.value.field == field


def test_counter_keys_choose_the_sequential_judge_and_rate_keys_the_snapshot_gate() -> None:
    url = "http://127.0.0.1:9090"
    judged = DeploymentConfig("m", "prod", prometheus_url=url, prometheus_queries=COUNTERS)
    assert judged.counts_from_prometheus
    rates = {
        "requests": 'sum(http_requests_total{instance=~"{instances}"})',
        "error_rate_percent": 'sum(x{instance=~"{instances}",version="{version}"})',
    }
    snapshot = DeploymentConfig("m", "prod", prometheus_url=url, prometheus_queries=rates)
    assert not snapshot.counts_from_prometheus
    with pytest.raises(ConfigError, match="prometheus_scrape_interval"):
        DeploymentConfig(
            "m", "prod", prometheus_url=url, prometheus_queries=COUNTERS,
            prometheus_scrape_interval=0,
        )  # fmt: skip


def test_version_becomes_the_instances_own_version(
    standins: list[MetricsStandIn], prometheus: StartPrometheus
) -> None:
    labelled = standins[0]
    labelled.text = 'http_requests_total{code="200",version="v7"} 5\n'
    base = prometheus([labelled.address], interval="1s")
    queries = {
        "requests": 'sum(http_requests_total{instance="{instance}",version="{version}"})',
        "errors": 'sum(http_requests_total{instance="{instance}",version="{version}",code="500"})',
    }
    own = _reader(base, queries, versions={labelled.address: "v7"})
    wait_until(lambda: _scraped(own, labelled.address, 5), 20, "the stand-in scraped")
    # Another version's counters at that address are not this one's: none counted yet.
    other = _reader(base, queries, versions={labelled.address: "v8"})
    assert _scraped(other, labelled.address, 0)
