"""What "up" means, and uptime windows per deployment (the share of checks up over 24 h, 7 d).

:func:`is_up` is the one definition of "up" used everywhere a check is counted: the
status's ``uptime_percent``, the 24 h / 7 d windows of the API, page and ``/metrics``,
``crackseg-monitor status`` read from the stored history, the error rate (an error is a
check that is not up), ``probe_success`` (1 when up), and
the response-time rule (a time is judged when an answer came). A check is up when its
answer was healthy or degraded: degraded is "answering, impaired" (a partial outage, not
downtime); an unhealthy answer, a timeout or a refused connection is down. Degraded has its
own share beside (:func:`is_degraded`: ``degraded_percent``), and still alerts
(``health_check_failed`` at warning severity). ``unknown`` (no check yet) is never counted.

:class:`UptimeTracker` is fed by the monitor's result listener (see :mod:`..service.metrics`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from crackseg.utils.deployment.models import HealthCheckResult, HealthStatus

__all__ = ["UP_STATUSES", "UptimeTracker", "is_degraded", "is_up"]

_HOUR = 3600.0
_WINDOWS = {"24h": 24, "7d": 168}


#: The check statuses that count as up.
UP_STATUSES = frozenset({HealthStatus.HEALTHY.value, HealthStatus.DEGRADED.value})


def is_up(status: str) -> bool:
    """Whether a check whose status is ``status`` counts as up (healthy or degraded).

    >>> is_up("degraded"), is_up("unhealthy")
    (True, False)
    """
    return status in UP_STATUSES


def is_degraded(status: str) -> bool:
    """Whether a check whose status is ``status`` answered impaired: up, and its own share.

    >>> is_degraded("degraded"), is_degraded("healthy")
    (True, False)
    """
    return status == _DEGRADED


_DEGRADED = HealthStatus.DEGRADED.value


class UptimeTracker:
    """Share of checks that were up (healthy or degraded) per deployment, over 24 h and 7 d.

    Counts live in hourly buckets, so a window covers between 23-24 h (167-168 h) of the
    most recent history: the current hour is partial. Results from ``start`` on come from
    :meth:`observe`; older ones from the store, read once per deployment by a background
    thread the first time its uptime is asked for. Until that read is done the figures
    cover only the checks since ``start`` (reading a week of SQLite history for 1,000
    deployments takes a while, and no request should wait for it). Thread-safe.
    """

    def __init__(self, store: Any, start: float | None = None) -> None:
        self._store = store
        self._start = time.time() if start is None else start
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[int, list[int]]] = {}
        # Per deployment, the counts of the hours before the current one, per window: a
        # week of hourly buckets is 168 cells, summed again at every read they cost ~130 ms
        # a scrape at 10,000 deployments. (hour they were summed for, [up, total] * windows)
        self._past: dict[str, tuple[int, list[int]]] = {}
        self._latest: dict[str, int] = {}
        self._seeded: set[str] = set()
        self._pending: deque[str] = deque()
        self._queued: set[str] = set()
        self._worker: threading.Thread | None = None
        self._closed = False

    def observe(self, deployment_id: str, result: HealthCheckResult) -> None:
        """Count one result (called from the monitor's result listener; must stay fast)."""
        if result.timestamp < self._start:
            return  # the store already holds it, seeding will count it
        with self._lock:
            self._add(deployment_id, result.timestamp, is_up(result.status))

    def _add(self, deployment_id: str, ts: float, up: bool) -> None:
        buckets = self._buckets.setdefault(deployment_id, {})
        hour = int(ts // _HOUR)
        past = self._past.get(deployment_id)
        if past is not None and hour < past[0]:
            del self._past[deployment_id]  # an earlier hour changed (seeding, a late result)
        if hour > self._latest.get(deployment_id, hour - 1):
            self._latest[deployment_id] = hour
        cell = buckets.get(hour)
        if cell is None:
            cell = buckets[hour] = [0, 0]
            for old in [h for h in buckets if h <= hour - _WINDOWS["7d"]]:
                del buckets[old]
                self._past.pop(deployment_id, None)
        cell[0] += up
        cell[1] += 1

    def _request_seed(self, deployment_id: str) -> None:
        with self._lock:
            if self._closed or deployment_id in self._seeded or deployment_id in self._queued:
                return
            self._queued.add(deployment_id)
            self._pending.append(deployment_id)
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._seed_all, name="crackseg-uptime-seed", daemon=True
                )
                self._worker.start()

    def _seed_all(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._pending:
                    self._worker = None
                    return
                deployment_id = self._pending.popleft()
            since = self._start - _WINDOWS["7d"] * _HOUR
            try:
                rows = self._store.health_history(deployment_id, since=since, until=self._start)
            except Exception:
                rows = []  # a store hiccup must not break the status page; live counts remain
            with self._lock:
                self._queued.discard(deployment_id)
                if deployment_id in self._seeded:
                    continue
                self._seeded.add(deployment_id)
                for r in rows:
                    if r.timestamp < self._start:
                        self._add(deployment_id, r.timestamp, is_up(r.status))

    def wait_seeded(self, timeout: float = 10.0) -> bool:
        """Wait until every requested store read is done (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._worker is None:
                    return True
            time.sleep(0.01)
        return False

    def uptime(self, deployment_id: str, now: float | None = None) -> dict[str, float | None]:
        """``{"24h": percent | None, "7d": percent | None}``; None when no check in the window."""
        many = self.uptime_many([deployment_id], now)
        return {name: column[0] for name, column in many.items()}

    def uptime_many(
        self, deployment_ids: list[str], now: float | None = None
    ) -> dict[str, list[float | None]]:
        """:meth:`uptime` of many deployments under one lock: ``{"24h": [percent | None per
        id, in order], "7d": [...]}`` (columns: a scrape reads every deployment)."""
        for dep_id in deployment_ids:
            if dep_id not in self._seeded:
                self._request_seed(dep_id)
        hour = int((time.time() if now is None else now) // _HOUR)
        out: dict[str, list[float | None]] = {name: [] for name in _WINDOWS}
        columns = list(enumerate(out.values()))
        with self._lock:
            buckets, pasts, latest = self._buckets, self._past, self._latest
            for dep_id in deployment_ids:
                cells = buckets.get(dep_id)
                if not cells:
                    for _, column in columns:
                        column.append(None)
                    continue
                past = pasts.get(dep_id)
                if past is None or past[0] != hour:
                    past = pasts[dep_id] = (hour, _past_counts(cells, hour, past))
                counts = past[1]
                # The current hour (and any later one a skewed clock stamped) is read live,
                # the same for every window.
                if latest.get(dep_id, hour) > hour:
                    live_up = sum(c[0] for h, c in cells.items() if h >= hour)
                    live_total = sum(c[1] for h, c in cells.items() if h >= hour)
                else:
                    live_up, live_total = cells.get(hour) or (0, 0)
                for i, column in columns:
                    total = counts[2 * i + 1] + live_total
                    up = counts[2 * i] + live_up
                    column.append(round(100.0 * up / total, 3) if total else None)
        return out

    def forget(self, deployment_id: str) -> None:
        """Drop the counts of a deployment no longer monitored."""
        with self._lock:
            self._buckets.pop(deployment_id, None)
            self._past.pop(deployment_id, None)
            self._latest.pop(deployment_id, None)
            self._seeded.discard(deployment_id)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background store reads (the one in progress finishes)."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            worker.join(timeout)


def _past_counts(
    cells: dict[int, list[int]], hour: int, before: tuple[int, list[int]] | None
) -> list[int]:
    """[up, total] per window over the hours before ``hour``.

    From the counts ``before`` of an hour or two ago, the windows move: the hours that became
    past come in, the oldest go out (O(windows), not O(cells): every deployment's hour turns
    at the same scrape). Otherwise every cell is summed.
    """
    spans = list(_WINDOWS.values())
    if before is not None and 0 < hour - before[0] <= 2:
        sums = list(before[1])
        for p in range(before[0], hour):  # hour p + 1: p becomes past, p + 1 - span leaves
            came = cells.get(p)
            for i, span in enumerate(spans):
                went = cells.get(p + 1 - span)
                sums[2 * i] += (came[0] if came else 0) - (went[0] if went else 0)
                sums[2 * i + 1] += (came[1] if came else 0) - (went[1] if went else 0)
        return sums
    sums = []
    for span in spans:
        low = hour - span
        up = total = 0
        for h, (u, t) in cells.items():
            if low < h < hour:
                up += u
                total += t
        sums += (up, total)
    return sums
