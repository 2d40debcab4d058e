"""The judge's input from a Prometheus server that scrapes the instances (``prometheus_url``
with the counter keys of ``prometheus_queries``).

Prometheus stores the instances' raw counters, so it can give what the sequential judge
needs: cumulative counts per instance, cut into looks exactly as :mod:`.counters` cuts the
instances' own ``/metrics`` (:class:`~.counters.IncreaseReader`: the increase per arm per
look, resets, the thresholds frozen from the stable's histogram buckets). Three PromQL
queries name one instance's counters, ``{instance}`` standing for its ``host:port`` (the
``instance`` label Prometheus gives a target) and ``{version}`` for its version:

- ``requests``: its requests so far, one series, e.g.
  ``sum(http_requests_total{instance="{instance}",route="/predict"})``;
- ``errors``: its failed requests so far, e.g.
  ``sum(http_requests_total{instance="{instance}",route="/predict",code=~"5.."})``; no
  series while ``requests`` has one is 0 errors (a counter labelled with a 5xx code exists
  only after the first one);
- ``duration_bucket`` (optional, for latency): its histogram, one series per ``le``, e.g.
  ``sum by (le) (http_request_duration_seconds_bucket{instance="{instance}"})``;
- ``up`` (optional; default :data:`DEFAULT_UP`): whether Prometheus scrapes it.

The keys of one instance go to Prometheus as one query, so they come from the same scrape
(a query sees a scrape whole or not at all): requests, errors and buckets agree.

Staleness: Prometheus scrapes every ``scrape_interval`` seconds, so between two scrapes
the increase is zero; the judge takes such batches of nothing as they are. An instance
whose ``requests`` has no series is one of two things. Scraped (``up`` is 1), it has
served no such request yet: its counters are 0. Not scraped yet (no ``up``: a target
Prometheus has not discovered or scraped yet; ``up`` 0: its scrape fails) it has no data
yet: it adds nothing to the look, and a read that finds it later is its starting point;
but after :data:`STALE_SCRAPES` scrape intervals without data it is a
:class:`~.counters.MeasurementError` saying that Prometheus does not scrape it, never a
run of zeros read as an idle instance. A failed query (Prometheus unreachable, too slow,
answering an error or no query result, several series where one is due, errors above
requests) is a :class:`~.counters.MeasurementError` too: the look is an ``error``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.rollout.analysis import Scrape, query_vector
from crackseg.utils.deployment.rollout.counters import IncreaseReader, MeasurementError

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_UP",
    "RATE_KEYS",
    "STALE_SCRAPES",
    "PrometheusCounterReader",
    "check_queries",
]

#: The keys of ``prometheus_queries`` that give one instance's counters (``{instance}``).
COUNT_KEYS = ("requests", "errors", "duration_bucket", "up")
#: The snapshot gate's keys: figures over all the judged instances (``{instances}``),
#: beside its ``requests`` (their sample count).
RATE_KEYS = ("request_rate", "error_rate_percent", "p50_ms", "p95_ms", "p99_ms")
#: Whether Prometheus scrapes an instance, unless ``prometheus_queries`` says otherwise.
DEFAULT_UP = 'max(up{instance="{instance}"})'
#: Scrape intervals an instance may stay without data before that is an error.
STALE_SCRAPES = 3

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
_KEY = "crackseg_key"  # the label that tells the keys apart in the one query


def check_queries(queries: Mapping[str, str]) -> bool:
    """True when ``queries`` (``prometheus_queries``) give counters, so the sequential
    judge decides; False when they give the snapshot gate's rates. Raises
    :class:`ConfigError` naming the key: a key neither set knows, ``requests`` or
    ``errors`` without the other, the two sets mixed, a placeholder other than
    ``{instance}`` (counter keys), ``{instances}`` (rate keys) and ``{version}``.

    >>> check_queries({"requests": 'sum(x{instance="{instance}"})',
    ...                "errors": 'sum(x{instance="{instance}",code=~"5.."})'})
    True
    >>> check_queries({"error_rate_percent": 'rate_of(x{instance=~"{instances}"})'})
    False
    """
    if not queries:
        return False
    known = (*COUNT_KEYS, *RATE_KEYS)
    for key, q in queries.items():
        if key not in known:
            raise ConfigError(f"prometheus_queries.{key}", f"unknown key; use {', '.join(known)}")
        if not isinstance(q, str) or not q.strip():
            raise ConfigError(f"prometheus_queries.{key}", "must be a non-empty PromQL string")
    rates = [k for k in RATE_KEYS if k in queries]
    counts = "errors" in queries or "duration_bucket" in queries or not rates
    if counts and rates:
        raise ConfigError(
            f"prometheus_queries.{rates[0]}",
            "the counter keys (requests, errors, duration_bucket) and the rate keys "
            f"({', '.join(RATE_KEYS)}) do not mix: with requests and errors the "
            f"sequential judge decides; drop {', '.join(rates)}",
        )
    if counts:
        for key in ("requests", "errors"):
            if key not in queries:
                raise ConfigError(
                    f"prometheus_queries.{key}",
                    "missing: the sequential judge needs both requests and errors, cumulative "
                    'counters of one instance, e.g. sum(http_requests_total{instance="{instance}"})',
                )
    if not counts and "up" in queries:
        raise ConfigError("prometheus_queries.up", "only with the counter keys requests, errors")
    for key, q in queries.items():
        per_instance = counts or key == "up"
        allowed = ("instance", "version") if per_instance else ("instances", "version")
        for name in _PLACEHOLDER.findall(q):
            if name not in allowed:
                shown = ", ".join("{" + a + "}" for a in allowed)
                raise ConfigError(f"prometheus_queries.{key}", f"unknown {{{name}}}: use {shown}")
        if per_instance and key != "up" and "{instance}" not in q:
            raise ConfigError(
                f"prometheus_queries.{key}",
                'must select one instance with {instance}, e.g. instance="{instance}"',
            )
    return counts


class PrometheusCounterReader(IncreaseReader):
    """One instance's counters from the Prometheus server at ``prometheus_url``, through
    ``queries`` (the counter keys of :func:`check_queries`); ``versions`` maps an instance's
    address to its version (:meth:`register` adds more). ``scrape_interval`` is how often
    that Prometheus scrapes the instances (the bound on "no data yet"); ``timeout`` bounds
    each query; ``clock`` is monotonic seconds. Not thread-safe.

    >>> r = PrometheusCounterReader("http://127.0.0.1:9090", {
    ...     "requests": 'sum(http_requests_total{instance="{instance}"})',
    ...     "errors": 'sum(http_requests_total{instance="{instance}",code=~"5.."})'})
    >>> r.source
    'prometheus'
    """

    source = "prometheus"

    def __init__(
        self,
        prometheus_url: str,
        queries: Mapping[str, str],
        versions: Mapping[str, str] | None = None,
        thresholds_ms: Sequence[float] = (),
        *,
        scrape_interval: float = 15.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        canary_thresholds_ms: Sequence[float] = (),
    ) -> None:
        super().__init__(thresholds_ms, canary_thresholds_ms)
        if not check_queries(queries):
            raise ConfigError("prometheus_queries", "give requests and errors (counters)")
        self.prometheus_url = prometheus_url
        self.queries = {"up": DEFAULT_UP, **queries}
        self.versions = dict(versions or {})
        self.scrape_interval = scrape_interval
        self.timeout = timeout
        self.clock = clock
        self._missing_since: dict[str, float] = {}

    def register(self, versions: Mapping[str, str]) -> None:
        self.versions.update(versions)

    def restart(self, since: float) -> PrometheusCounterReader:
        del since
        return PrometheusCounterReader(
            self.prometheus_url,
            self.queries,
            self.versions,
            self.thresholds_ms,
            scrape_interval=self.scrape_interval,
            timeout=self.timeout,
            clock=self.clock,
            canary_thresholds_ms=self.canary_thresholds_ms,
        )

    def read(self, address: str) -> Scrape | None:
        """The instance's counters at its latest scrape; None while Prometheus has none yet
        (see the module doc); raises :class:`MeasurementError`."""
        found = self._query(address)
        requests = self._single(found, "requests", address)
        if requests is None:
            up = self._single(found, "up", address)
            if up != 1.0:
                self._missing(address, up)
                return None
            requests = 0.0  # scraped, and no such request counted yet
        self._missing_since.pop(address, None)
        errors = self._single(found, "errors", address) or 0.0
        if errors > requests:
            raise MeasurementError(
                f"{address}: errors ({errors:g}) above requests ({requests:g}): the two "
                "queries must count the same requests"
            )
        buckets: dict[float, float] = {}
        for labels, value in found.get("duration_bucket", []):
            try:
                bound = float(labels["le"])
            except (KeyError, ValueError):
                raise MeasurementError(
                    f"{address}: duration_bucket gives a series without a numeric le: "
                    "aggregate it by le, e.g. sum by (le) (...)"
                ) from None
            if bound in buckets or not math.isfinite(value):
                raise MeasurementError(
                    f"{address}: duration_bucket gives le={labels['le']} twice or not a "
                    "count: aggregate it by le, e.g. sum by (le) (...)"
                )
            buckets[bound] = value
        return Scrape(time.time(), requests, errors, buckets)

    def _query(self, address: str) -> dict[str, list[tuple[dict[str, str], float]]]:
        # One query for every key: Prometheus evaluates it over one view of its storage,
        # so the counts of a scrape are seen all or none (no errors without their requests).
        parts = {k: self._promql(k, address) for k in COUNT_KEYS if k in self.queries}
        joined = " or ".join(
            f'label_replace(({q}), "{_KEY}", "{k}", "", "")' for k, q in parts.items()
        )
        try:
            series = query_vector(self.prometheus_url, joined, self.timeout)
        except Exception as exc:  # unreachable, too slow, an error: a failed measurement
            raise MeasurementError(self._why(parts, address, exc)) from None
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for labels, value in series:
            key = labels.pop(_KEY, "")
            labels.pop("__name__", None)
            found.setdefault(key, []).append((labels, value))
        return found

    def _why(self, parts: dict[str, str], address: str, exc: Exception) -> str:
        """What failed: Prometheus, or the keys whose queries fail alone while others
        pass (named, so the message says which to fix)."""
        head = f"prometheus query for {address} failed"
        if isinstance(exc, ValueError):
            failing: list[str] = []
            for key, q in parts.items():
                try:
                    query_vector(self.prometheus_url, q, self.timeout)
                except Exception as alone:
                    failing.append(f"prometheus_queries.{key}: {alone}")
            if failing and len(failing) < len(parts):
                return f"{head}: " + "; ".join(failing)
        return f"{head}: {type(exc).__name__}: {exc}"

    def _promql(self, key: str, address: str) -> str:
        # A PromQL string literal: a backslash or a quote in the address is escaped.
        literal = address.replace("\\", "\\\\").replace('"', '\\"')
        version = self.versions.get(address, "").replace("\\", "\\\\").replace('"', '\\"')
        return self.queries[key].replace("{instance}", literal).replace("{version}", version)

    @staticmethod
    def _single(
        found: dict[str, list[tuple[dict[str, str], float]]], key: str, address: str
    ) -> float | None:
        series = found.get(key, [])
        if len(series) > 1:
            raise MeasurementError(
                f"{address}: {key} gives {len(series)} series, one is due: aggregate it, "
                "e.g. sum(...)"
            )
        if not series:
            return None
        value = series[0][1]
        if not math.isfinite(value) or value < 0:
            raise MeasurementError(f"{address}: {key} is {value!r}, not a count")
        return value

    def _missing(self, address: str, up: float | None) -> None:
        now = self.clock()
        since = self._missing_since.setdefault(address, now)
        bound = STALE_SCRAPES * self.scrape_interval
        if now - since < bound:
            return
        state = "no up series" if up is None else f"up is {up:g}"
        raise MeasurementError(
            f"{address}: no data in Prometheus for {now - since:.0f} s ({state}): it does not "
            "scrape this instance, or not under instance=host:port (its target list, or "
            "prometheus_scrape_interval if it scrapes less often)"
        )
