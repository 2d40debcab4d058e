"""The judge's input from the instances' own Prometheus counters (``metrics_path``).

Where the router does not log every request, each instance's ``/metrics`` still counts
them: a request counter labelled with the status code and a latency histogram
(:meth:`~.analysis.PerformanceMonitor.scrape` parses both, with the rollout's
``metrics_labels`` filter). Read at every look, the increase of each instance's counters
since the previous look, summed per arm (``canary``: the new version's instances,
``stable``: the ones it replaces), is exactly one batch of the judge's
:class:`~.judge.ArmCounts`, in the ``user`` stratum (the counters cannot tell the
rollout's synthetic load apart, nor see a request that never completed: ``timeouts`` is 0).
What turns counters into looks is :class:`IncreaseReader`; where one instance's counters
are read is its subclass's :meth:`~IncreaseReader.read`: :class:`CounterReader` scrapes the
instance itself, :class:`~.prom_counters.PrometheusCounterReader` asks a Prometheus server
that scrapes it.

Latency slow events come from the histogram: the thresholds are bucket bounds, frozen from
the stable instances' histogram before the first look, so a request over a threshold is
counted exactly (``+Inf`` minus the bucket), never interpolated. For each of the stable's
p50, p90 and p99 the bound is the lower edge of the bucket holding it: the stable exceeds
it at least 50 %, 10 %, 1 % of the time, so a healthy canary can be shown no worse within
a bounded number of requests (the upper edge may be exceeded almost never, and "not worse
than almost never" takes thousands of requests to show, so every healthy canary of a fast
service would fail closed). A quantile in the first bucket (lower edge 0) gives no
threshold; where even the p99 is there (a service faster than the histogram resolves),
latency is not judged from counters and the baseline's note says so. The canary's
requests are counted above the smallest bucket bound at or above each threshold plus its
latency margin (:func:`canary_bucket_thresholds`; more lenient than ``t + d``, so the
judge's null still holds); where only ``+Inf`` is left, no canary request counts as slow
for that threshold and the note says the histogram cannot resolve it.

A counter that goes down (the process restarted, or another one answers at that address)
makes the increase meaningless: :class:`CounterResetError`, and every later look of this
reader raises it too, so the window ends ``error`` rather than being judged on counts
that miss whatever happened around the restart. An instance's first read is its starting
point: requests it served before it became an arm are not counted.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

from crackseg.utils.deployment.errors import DeploymentError
from crackseg.utils.deployment.rollout.analysis import (
    PerformanceMonitor,
    Scrape,
    histogram_quantile,
)
from crackseg.utils.deployment.rollout.arms import Baseline, Look
from crackseg.utils.deployment.rollout.judge import ArmCounts, JudgeConfig
from crackseg.utils.deployment.rollout.judge.latency import DEFAULT_QUANTILES

__all__ = [
    "CounterReader",
    "CounterResetError",
    "IncreaseReader",
    "MeasurementError",
    "bucket_thresholds",
    "canary_bucket_thresholds",
]


class MeasurementError(DeploymentError):
    """A metrics endpoint could not be read: the look is a failed measurement."""


class CounterResetError(MeasurementError):
    """A counter went down between two reads: the increase is not a measurement."""


def bucket_thresholds(
    buckets: dict[float, float], quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> tuple[float, ...]:
    """Bucket bounds (in ms, ascending, distinct) for each quantile of cumulative
    ``buckets`` (bound in seconds to count): the lower edge of the bucket holding it, none
    for a quantile in the first bucket (see the module doc); empty without enough
    observations to place the highest quantile (``1 / (1 - q)``, as
    :func:`~.judge.freeze_thresholds`). A quantile in ``+Inf`` gives the highest finite bound.

    >>> bucket_thresholds({0.01: 50.0, 0.1: 95.0, 1.0: 100.0, math.inf: 100.0})
    (10.0, 100.0)
    >>> bucket_thresholds({0.001: 100.0, 0.01: 100.0, math.inf: 100.0})
    ()
    """
    finite = sorted(b for b in buckets if math.isfinite(b))
    total = max(buckets.values(), default=0.0)
    if not finite or not quantiles or total < 1.0 / (1.0 - max(quantiles)) - 1e-9:
        return ()
    out: list[float] = []
    for q in quantiles:
        v = histogram_quantile(q, sorted(buckets.items()))
        if v is None:
            continue
        below = [b for b in finite if b < v]
        if below and below[-1] * 1000.0 not in out:
            out.append(below[-1] * 1000.0)
    return tuple(sorted(out))


def canary_bucket_thresholds(
    buckets: dict[float, float], shifted_ms: Sequence[float]
) -> tuple[float, ...]:
    """For each of the canary's shifted thresholds (ms), the smallest finite bucket bound
    (ms) at or above it, ``inf`` where there is none (no canary request counts as slow).

    >>> canary_bucket_thresholds({0.005: 1.0, 0.01: 2.0, math.inf: 3.0}, [3.0, 5.0, 12.0])
    (5.0, 5.0, inf)
    """
    finite = sorted(b * 1000.0 for b in buckets if math.isfinite(b))
    out = []
    for t in shifted_ms:
        # A bound equal to t up to float noise (5 ms read back from 0.005 s) is at t.
        at = [b for b in finite if b >= t or math.isclose(b, t, rel_tol=1e-9)]
        out.append(at[0] if at else math.inf)
    return tuple(out)


def _unresolved(thresholds_ms: Sequence[float], canary_ms: Sequence[float]) -> str:
    above = [f"{t:g} ms" for t, c in zip(thresholds_ms, canary_ms, strict=True) if math.isinf(c)]
    if not above:
        return ""
    return (
        f"the histogram cannot resolve the canary's latency margin above {', '.join(above)} "
        "(no finite bucket at or above it): no canary request counts as slow there"
    )


def _bucket(buckets: dict[float, float], bound: float) -> float:
    """The cumulative count at ``bound`` (seconds), matching a key equal up to float noise
    (a bound in ms divided back by 1000)."""
    if bound in buckets:
        return buckets[bound]
    for b, c in buckets.items():
        if math.isclose(b, bound, rel_tol=1e-9):
            return c
    return 0.0


_NO_THRESHOLDS = (
    "no latency thresholds: fewer than 100 stable requests in the histogram, or its p99 "
    "within the first bucket (latency not judged from counters)"
)


def _counts(now: Scrape, before: Scrape, thresholds_ms: Sequence[float]) -> ArmCounts:
    requests, errors = now.requests - before.requests, now.errors - before.errors
    inf_now, inf_before = now.buckets.get(math.inf, 0.0), before.buckets.get(math.inf, 0.0)
    slow: list[int] = []
    for t in thresholds_ms:
        if math.isinf(t):
            slow.append(0)  # no bucket left at the canary's shifted threshold
            continue
        b = t / 1000.0
        under = _bucket(now.buckets, b) - _bucket(before.buckets, b)
        slow.append(round((inf_now - inf_before) - under))
    if requests < 0 or errors < 0 or any(s < 0 for s in slow) or inf_now < inf_before:
        raise CounterResetError("counters went down between two reads (process restarted?)")
    return ArmCounts(round(requests), round(errors), tuple(slow), 0)


class IncreaseReader(ABC):
    """Cuts cumulative counters into looks, like :class:`~.arms.ArmReader` does the
    router's log; a subclass says where one instance's counters are read
    (:meth:`read`). :meth:`set_arms` names the arms by address. The canary's slow requests
    are counted above ``canary_thresholds_ms`` (bucket bounds, ``inf`` for none; default
    the stable's ``thresholds_ms``), set by :meth:`baseline`. Not thread-safe."""

    #: Where the counts come from, as the gate's details and the evidence name it.
    source = "metrics"

    def __init__(
        self, thresholds_ms: Sequence[float] = (), canary_thresholds_ms: Sequence[float] = ()
    ) -> None:
        self.thresholds_ms = tuple(thresholds_ms)
        self.canary_thresholds_ms = tuple(canary_thresholds_ms) or self.thresholds_ms
        self.arm_of: dict[str, str] = {}
        self.total = Look(len(self.thresholds_ms))
        self._last: dict[str, Scrape] = {}
        self._broken: str | None = None

    @abstractmethod
    def read(self, address: str) -> Scrape | None:
        """One instance's cumulative counters now, or None when its source holds none yet
        (the instance then adds nothing to this look, and its first read is its starting
        point); raises :class:`MeasurementError` when the source cannot be read."""

    @abstractmethod
    def restart(self, since: float) -> IncreaseReader:
        """A reader of the same instances and thresholds counting from its first look
        (``since`` is implied: counters carry no time)."""

    def set_arms(self, canary: Sequence[str], stable: Sequence[str]) -> None:
        self.arm_of = {a: "stable" for a in stable} | {a: "canary" for a in canary}

    def baseline(self, stable: Sequence[str], config: JudgeConfig | None = None) -> Baseline:
        """Thresholds and one-sample reference from the ``stable`` instances' counters so
        far (their whole life), which also become their starting point; the canary's
        thresholds are the bucket bounds at or above ``config``'s shifted ones (none given:
        the stable's, no latency margin). Raises :class:`MeasurementError`."""
        reads = {a: s for a in stable if (s := self.read(a)) is not None}
        total = Scrape(0.0, 0.0, 0.0, {})
        for s in reads.values():
            total.requests += s.requests
            total.errors += s.errors
            for b, c in s.buckets.items():
                total.buckets[b] = total.buckets.get(b, 0.0) + c
        thresholds = bucket_thresholds(total.buckets)
        canary = thresholds
        if config is not None:
            canary = canary_bucket_thresholds(total.buckets, config.canary_thresholds(thresholds))
        notes = [n for n in (_unresolved(thresholds, canary),) if n]
        if not thresholds:
            notes.append(_NO_THRESHOLDS)
        if unread := [a for a in stable if a not in reads]:
            notes.append(f"no counters yet for {', '.join(unread)} (counted from their first read)")
        note = "; ".join(notes)
        self.thresholds_ms, self.canary_thresholds_ms = thresholds, canary
        self.total = Look(len(thresholds))
        self._last.update(reads)
        counts = _counts(total, Scrape(0.0, 0.0, 0.0, {}), thresholds)
        return Baseline(thresholds, counts, 0.0, note, canary)

    def look(self) -> Look:
        """The increase since the previous look, per arm; raises :class:`MeasurementError`
        (nothing is kept from a failed look: the next one covers its interval)."""
        if self._broken is not None:
            raise CounterResetError(self._broken)
        reads = {a: s for a in self.arm_of if (s := self.read(a)) is not None}
        batch = Look(len(self.thresholds_ms))
        for address, now in reads.items():
            before = self._last.get(address)
            if before is None:
                continue
            arm = self.arm_of[address]
            th = self.canary_thresholds_ms if arm == "canary" else self.thresholds_ms
            try:
                c = _counts(now, before, th)
            except CounterResetError as exc:
                self._broken = f"{address}: {exc}"
                raise CounterResetError(self._broken) from None
            t = batch.tally("user", arm)
            t.requests += c.requests
            t.errors += c.errors
            t.slow = [a + b for a, b in zip(t.slow, c.slow, strict=True)]
        self._last.update(reads)
        self.total.merge(batch)
        return batch


class CounterReader(IncreaseReader):
    """The instances' own ``/metrics``: ``urls`` maps an instance's address to its metrics
    URL (:meth:`register` adds more), ``label_filter`` keeps the matching samples."""

    def __init__(
        self,
        urls: dict[str, str],
        thresholds_ms: Sequence[float] = (),
        *,
        label_filter: dict[str, str] | None = None,
        timeout: float = 2.0,
        canary_thresholds_ms: Sequence[float] = (),
    ) -> None:
        super().__init__(thresholds_ms, canary_thresholds_ms)
        self.urls = dict(urls)
        self.label_filter = dict(label_filter or {})
        self.timeout = timeout

    def register(self, urls: dict[str, str]) -> None:
        self.urls.update(urls)

    def restart(self, since: float) -> CounterReader:
        del since
        return CounterReader(
            self.urls,
            self.thresholds_ms,
            label_filter=self.label_filter,
            timeout=self.timeout,
            canary_thresholds_ms=self.canary_thresholds_ms,
        )

    def read(self, address: str) -> Scrape:
        """One instance's counters now (never None: an endpoint that answers holds them);
        raises :class:`MeasurementError`."""
        url = self.urls.get(address)
        if url is None:
            raise MeasurementError(f"no metrics URL for {address}")
        pm = PerformanceMonitor([url], label_filter=self.label_filter, timeout=self.timeout)
        scrape = pm.last_scrape() if pm.scrape() else None
        if scrape is None:
            raise MeasurementError(pm.last_error or f"no metrics from {address}")
        return scrape
