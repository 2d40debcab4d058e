"""What a deployment really does: request rate, error rate and latency percentiles.

:class:`PerformanceMonitor` measures from real data only. It judges on the first source
configured, in this order, and never falls back from a broken one:

1. a Prometheus server (``prometheus_url`` with PromQL ``queries``), evaluated on demand;
2. Prometheus text-format ``/metrics`` endpoints (``metrics_urls``): a request counter and a
   latency histogram; the figures are the difference between two scrapes, so they cover
   exactly the window between them;
3. the traffic router's own measurement of the requests it carried (``traffic``);
4. its health probes (:meth:`PerformanceMonitor.record_probe`), only when nothing measures
   real traffic, or when a traffic source saw no request at all in the window. Such a
   snapshot says so in :attr:`PerformanceSnapshot.note` ("judged on health probes only").

A source that fails (query error, refused scrape, unreadable router log) gives a snapshot
with :attr:`PerformanceSnapshot.error` set and no figures: the gate reads it as an
``error`` verdict. When there is not enough data for a figure it is ``None`` and
:attr:`PerformanceSnapshot.reason` says why; nothing is ever estimated or invented.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.rollout.routers.base import TrafficStats

__all__ = [
    "MAX_SCRAPE_BYTES",
    "PROBES_ONLY",
    "PerformanceMonitor",
    "PerformanceSnapshot",
    "Scrape",
    "histogram_quantile",
    "parse_prometheus_text",
    "query_prometheus",
    "query_vector",
]


MAX_SCRAPE_BYTES = 4 * 1024 * 1024
PROBES_ONLY = "judged on health probes only"


def parse_prometheus_text(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Parse the Prometheus text exposition format into ``{sample name: [(labels, value), ...]}``.

    The parsing is ``prometheus_client.parser``'s; malformed text raises :class:`ValueError`
    (a scrape that cannot be read is a failed measurement, never a partial one).

    >>> parse_prometheus_text('x_total{code="200"} 3\\n')["x_total"]
    [({'code': '200'}, 3.0)]
    """
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"malformed Prometheus text: {exc}") from exc
    return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper_bound, count)`` buckets, as PromQL computes it.

    Linear interpolation inside the bucket; ``None`` when the histogram is empty. A
    quantile falling in the ``+Inf`` bucket returns the highest finite bound.
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


@dataclass
class PerformanceSnapshot:
    """Figures over one window; a figure is ``None`` when the data does not support it."""

    source: str  # "prometheus", "metrics", "router", "probes" or "none"
    window_seconds: float
    requests: int | None = None
    errors: int | None = None
    request_rate: float | None = None
    error_rate_percent: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    probes: int = 0
    probe_failures: int = 0
    probe_p95_ms: float | None = None
    enough_data: bool = False
    reason: str | None = None
    error: str | None = None  # the measurement itself failed (scrape or query error)
    note: str | None = None  # e.g. "judged on health probes only" and why
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Scrape:
    """One read of the metrics endpoints: the counters summed over them, cumulative
    (``buckets``: upper bound in seconds to cumulative count)."""

    timestamp: float
    requests: float
    errors: float
    buckets: dict[float, float]


class PerformanceMonitor:
    """Measures request rate, error rate and latency of one deployment (one or more instances).

    ``metrics_urls`` are Prometheus text endpoints whose counters are summed;
    ``request_metric`` is a counter of requests labelled with the first of
    ``status_labels`` present (a status
    starting with ``5``, or any value listed in ``error_statuses``, counts as an error);
    ``latency_metric`` is a histogram in seconds. ``label_filter`` keeps only samples
    whose labels match (e.g. ``{"route": "/predict"}``). ``queries`` maps ``requests``
    (the sample count ``min_samples`` is checked against), ``request_rate``,
    ``error_rate_percent``, ``p50_ms``, ``p95_ms``, ``p99_ms`` to PromQL evaluated on
    ``prometheus_url``; a query without data leaves its figure ``None``. ``traffic(since)``
    returns the router's :class:`TrafficStats` for the judged backends since a Unix time
    (None: the router cannot see traffic). Thread-safe.

    >>> pm = PerformanceMonitor()
    >>> pm.snapshot(min_samples=5).enough_data
    False
    """

    def __init__(
        self,
        metrics_urls: list[str] | None = None,
        *,
        prometheus_url: str | None = None,
        queries: dict[str, str] | None = None,
        request_metric: str = "http_requests_total",
        latency_metric: str = "http_request_duration_seconds",
        status_labels: tuple[str, ...] = ("code", "status"),
        error_statuses: tuple[str, ...] = (),
        label_filter: dict[str, str] | None = None,
        timeout: float = 2.0,
        max_probes: int = 10_000,
        max_scrapes: int = 1_000,
        traffic: Callable[[float], TrafficStats | None] | None = None,
    ) -> None:
        self.metrics_urls = list(metrics_urls or [])
        self.prometheus_url = prometheus_url.rstrip("/") if prometheus_url else None
        self.queries = dict(queries or {})
        self.request_metric = request_metric
        self.latency_metric = latency_metric
        self.status_labels = status_labels
        self.error_statuses = error_statuses
        self.label_filter = dict(label_filter or {})
        self.timeout = timeout
        self._lock = threading.Lock()
        self._probes: deque[HealthCheckResult] = deque(maxlen=max_probes)
        self._scrapes: deque[Scrape] = deque(maxlen=max_scrapes)
        self.traffic = traffic
        self.created = time.time()
        self.last_error: str | None = None  # of the latest scrape; None once one succeeds

    # -- probes -----------------------------------------------------------------------
    def record_probe(self, result: HealthCheckResult) -> None:
        """Count one health probe (its success and response time)."""
        with self._lock:
            self._probes.append(result)

    # -- Prometheus text endpoints ----------------------------------------------------
    def scrape(self) -> bool:
        """Read every metrics URL once and keep the summed counters; False on any failure.

        A failed scrape keeps nothing (a partial sum would read as a drop in traffic) and
        sets :attr:`last_error`.
        """
        if not self.metrics_urls:
            return False
        total = Scrape(time.time(), 0.0, 0.0, {})
        for url in self.metrics_urls:
            try:
                self._add_scrape(total, parse_prometheus_text(_get(url, self.timeout)))
            except Exception as exc:
                self.last_error = f"scrape of {_redact(url)} failed: {type(exc).__name__}: {exc}"
                return False
        with self._lock:
            self._scrapes.append(total)
        self.last_error = None
        return True

    def last_scrape(self) -> Scrape | None:
        """The latest successful :meth:`scrape`, or None."""
        with self._lock:
            return self._scrapes[-1] if self._scrapes else None

    def _matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.label_filter.items())

    def _add_scrape(
        self, into: Scrape, families: dict[str, list[tuple[dict[str, str], float]]]
    ) -> None:
        for labels, value in families.get(self.request_metric, []):
            if not self._matches(labels):
                continue
            into.requests += value
            status = next((labels[k] for k in self.status_labels if k in labels), "")
            if status.startswith("5") or status in self.error_statuses:
                into.errors += value
        for labels, value in families.get(self.latency_metric + "_bucket", []):
            if not self._matches(labels) or "le" not in labels:
                continue
            bound = float(labels["le"])
            into.buckets[bound] = into.buckets.get(bound, 0.0) + value

    # -- snapshot ---------------------------------------------------------------------
    def snapshot(self, since: float | None = None, *, min_samples: int = 20) -> PerformanceSnapshot:
        """Figures for the window from ``since`` (Unix time; default: all data) to now.

        The source is the first one configured (see the module doc); a failed one gives an
        ``error`` snapshot. ``enough_data`` is True when at least ``min_samples`` requests
        (or probes) back the figures.
        """
        with self._lock:
            probes = [p for p in self._probes if since is None or p.timestamp >= since]
            scrapes = [s for s in self._scrapes if since is None or s.timestamp >= since]
        snap = PerformanceSnapshot("none", 0.0)
        self._fill_probes(snap, probes)
        if self.prometheus_url and self.queries:
            self._fill_prometheus(snap)
        elif self.metrics_urls:
            snap.source = "metrics"
            if self.last_error is not None:
                snap.error = self.last_error
            elif len(scrapes) >= 2:
                self._fill_scrapes(snap, scrapes[0], scrapes[-1])
            else:
                snap.reason = "fewer than two metrics scrapes in the window"
        elif self.traffic is not None:
            self._fill_traffic(snap, self.created if since is None else since)
        if snap.error is not None:
            return self._finish(snap, min_samples)
        if snap.source == "none":
            self._judge_on_probes(snap, probes, "nothing measures real traffic")
        elif snap.requests == 0 and snap.reason is None:
            self._judge_on_probes(
                snap, probes, f"no request through the {snap.source} in the window"
            )
        return self._finish(snap, min_samples)

    def _fill_traffic(self, snap: PerformanceSnapshot, since: float) -> None:
        assert self.traffic is not None
        try:
            stats = self.traffic(since)
        except Exception as exc:
            snap.source = "router"
            snap.error = f"router measurement failed: {type(exc).__name__}: {exc}"
            return
        if stats is None:
            return
        snap.source = "router"
        snap.window_seconds = stats.window_seconds
        snap.requests, snap.errors = stats.requests, stats.errors
        if stats.requests:
            snap.error_rate_percent = 100.0 * stats.errors / stats.requests
        if stats.window_seconds > 0:
            snap.request_rate = stats.requests / stats.window_seconds
        snap.p50_ms, snap.p95_ms, snap.p99_ms = stats.p50_ms, stats.p95_ms, stats.p99_ms

    @staticmethod
    def _judge_on_probes(
        snap: PerformanceSnapshot, probes: list[HealthCheckResult], why: str
    ) -> None:
        snap.note = f"{PROBES_ONLY} ({why})"
        snap.source = "probes"
        snap.window_seconds = time.time() - probes[0].timestamp if probes else 0.0
        snap.requests = len(probes)
        snap.errors = snap.probe_failures
        snap.error_rate_percent = 100.0 * snap.probe_failures / len(probes) if probes else None
        times = [p.response_time_ms for p in probes]
        snap.p50_ms, snap.p95_ms, snap.p99_ms = (
            _percentile(times, 0.5),
            _percentile(times, 0.95),
            _percentile(times, 0.99),
        )
        snap.request_rate = len(probes) / snap.window_seconds if snap.window_seconds > 0 else None

    @staticmethod
    def _finish(snap: PerformanceSnapshot, min_samples: int) -> PerformanceSnapshot:
        if snap.error is not None:
            snap.enough_data = False
            return snap
        n = snap.requests or 0
        snap.enough_data = n >= min_samples
        if snap.source == "prometheus" and snap.requests is None:
            # Without a "requests" query the sample count is unknown: data is data.
            snap.enough_data = snap.error_rate_percent is not None or snap.p95_ms is not None
        if not snap.enough_data and snap.reason is None:
            snap.reason = f"{n} samples in the window, {min_samples} needed"
        elif snap.enough_data:
            snap.reason = None
        return snap

    @staticmethod
    def _fill_probes(snap: PerformanceSnapshot, probes: list[HealthCheckResult]) -> None:
        snap.probes = len(probes)
        snap.probe_failures = sum(1 for p in probes if not p.success)
        snap.probe_p95_ms = _percentile([p.response_time_ms for p in probes], 0.95)

    @staticmethod
    def _fill_scrapes(snap: PerformanceSnapshot, first: Scrape, last: Scrape) -> None:
        snap.source = "metrics"
        snap.window_seconds = last.timestamp - first.timestamp
        requests = last.requests - first.requests
        errors = last.errors - first.errors
        if requests < 0 or errors < 0:
            # A counter went down: the process restarted, the delta means nothing.
            snap.reason = "counters were reset between scrapes (process restarted)"
            snap.requests = 0
            return
        snap.requests, snap.errors = int(requests), int(errors)
        if snap.window_seconds > 0:
            snap.request_rate = requests / snap.window_seconds
        if requests > 0:
            snap.error_rate_percent = 100.0 * errors / requests
        delta = [(b, c - first.buckets.get(b, 0.0)) for b, c in last.buckets.items()]
        for q, name in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
            v = histogram_quantile(q, delta)
            setattr(snap, name, None if v is None else v * 1000.0)

    def _fill_prometheus(self, snap: PerformanceSnapshot) -> None:
        assert self.prometheus_url is not None
        snap.source = "prometheus"
        values: dict[str, float | None] = {}
        for key, promql in self.queries.items():
            try:
                values[key] = query_prometheus(self.prometheus_url, promql, self.timeout)
            except Exception as exc:
                snap.error = f"prometheus query {key!r} failed: {type(exc).__name__}: {exc}"
                return
        snap.request_rate = values.get("request_rate")
        snap.error_rate_percent = values.get("error_rate_percent")
        snap.p50_ms, snap.p95_ms, snap.p99_ms = (
            values.get("p50_ms"),
            values.get("p95_ms"),
            values.get("p99_ms"),
        )
        req = values.get("requests")
        if req is not None:
            snap.requests = int(req)
            if snap.error_rate_percent is not None:
                snap.errors = round(req * snap.error_rate_percent / 100.0)
        elif snap.error_rate_percent is None:
            snap.reason = "the Prometheus queries returned no data"


def query_prometheus(base_url: str, promql: str, timeout: float = 2.0) -> float | None:
    """Evaluate an instant PromQL query; the first sample's value, or None for no data/NaN."""
    series = query_vector(base_url, promql, timeout)
    if not series:
        return None
    value = series[0][1]
    return None if math.isnan(value) or math.isinf(value) else value


def query_vector(
    base_url: str, promql: str, timeout: float = 2.0
) -> list[tuple[dict[str, str], float]]:
    """Evaluate an instant PromQL query: each series' labels and value (a scalar is one
    series without labels; NaN and infinities are kept). Raises :class:`ValueError` when
    Prometheus answers an error or something that is no query result, :class:`OSError` when
    it cannot be reached within ``timeout``."""
    url = f"{base_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    body: Any
    try:
        body = json.loads(_get(url, timeout))
    except urllib.error.HTTPError as exc:
        # Prometheus says why a query failed in a JSON body beside its 4xx/5xx status.
        with exc:
            raw = exc.read(MAX_SCRAPE_BYTES)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or "error" not in body:
            raise
    if not isinstance(body, dict):
        raise ValueError("prometheus answered no JSON object")
    if body.get("status") != "success":
        raise ValueError(f"prometheus answered {body.get('status')}: {body.get('error')}")
    try:
        data, result = body["data"], body["data"]["result"]
        if data.get("resultType") == "scalar":
            return [({}, float(result[1]))]
        return [(dict(r.get("metric") or {}), float(r["value"][1])) for r in result or []]
    except (TypeError, KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(f"prometheus answered no query result: {exc!r}") from None


# No proxy: these are the deployment's own endpoints, often on 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float) -> str:
    with _OPENER.open(url, timeout=timeout) as resp:
        body: bytes = resp.read(MAX_SCRAPE_BYTES + 1)
    if len(body) > MAX_SCRAPE_BYTES:
        raise ValueError(f"answer larger than {MAX_SCRAPE_BYTES} bytes")
    return body.decode("utf-8", "replace")


def _redact(url: str) -> str:
    """Drop user info and query from a URL before it goes into a message."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
