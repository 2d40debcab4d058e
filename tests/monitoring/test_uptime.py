"""Uptime windows with the past hours' counts kept between reads: the same figures as summing
every hourly bucket at every read, through late results, hours turning, skewed clocks and
removals; and a scrape's read of all deployments in one call."""

from __future__ import annotations

import random

from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.uptime import UptimeTracker

HOUR = 3600.0
WINDOWS = {"24h": 24, "7d": 168}


class _Reference:
    """Every bucket summed at every read (what the tracker did before it kept past counts)."""

    def __init__(self) -> None:
        self.cells: dict[str, dict[int, list[int]]] = {}

    def add(self, dep: str, ts: float, up: bool) -> None:
        cells = self.cells.setdefault(dep, {})
        hour = int(ts // HOUR)
        if hour not in cells:
            cells[hour] = [0, 0]
            for old in [h for h in cells if h <= hour - WINDOWS["7d"]]:
                del cells[old]
        cells[hour][0] += up
        cells[hour][1] += 1

    def uptime(self, dep: str, now: float) -> dict[str, float | None]:
        hour = int(now // HOUR)
        out: dict[str, float | None] = {}
        for name, span in WINDOWS.items():
            up = total = 0
            for h, (u, t) in self.cells.get(dep, {}).items():
                if h > hour - span:
                    up += u
                    total += t
            out[name] = round(100.0 * up / total, 3) if total else None
        return out


def test_kept_past_counts_give_the_figures_of_a_full_sum() -> None:
    rng = random.Random(14)
    tracker = UptimeTracker(MemoryStore(), start=0.0)
    ref = _Reference()
    deps = ["a", "b", "c"]
    clock = 10_000 * HOUR
    reads = 0
    try:
        for _ in range(3_000):
            dep = rng.choice(deps)
            roll = rng.random()
            if roll < 0.5:  # a result now
                ts = clock
            elif roll < 0.7:  # a late one, hours back (as seeding from the store adds them)
                ts = clock - rng.uniform(0, 200) * HOUR
            elif roll < 0.75:  # a clock ahead of ours
                ts = clock + rng.uniform(0, 3) * HOUR
            elif roll < 0.77:
                tracker.forget(dep)
                ref.cells.pop(dep, None)
                continue
            else:
                clock += rng.choice([1.0, 600.0, HOUR, 5 * HOUR, 30 * HOUR])
                continue
            up = rng.random() < 0.8
            status = "healthy" if up else "unhealthy"
            tracker.observe(dep, HealthCheckResult(up, status, 1.0, ts))
            ref.add(dep, ts, up)
            for d in deps:
                assert tracker.uptime(d, now=clock) == ref.uptime(d, clock), (d, clock)
                reads += 1
        many = tracker.uptime_many(deps, now=clock)
        assert many == {name: [ref.uptime(d, clock)[name] for d in deps] for name in WINDOWS}
    finally:
        tracker.close()
    assert reads > 5_000


def test_uptime_many_reads_all_in_order_and_none_for_the_unknown() -> None:
    tracker = UptimeTracker(MemoryStore(), start=0.0)
    now = 2_000 * HOUR
    try:
        tracker.observe("up", HealthCheckResult(True, "healthy", 1.0, now - 60))
        tracker.observe("half", HealthCheckResult(True, "degraded", 1.0, now - 60))
        tracker.observe("half", HealthCheckResult(False, "unhealthy", 1.0, now - 30 * HOUR))
        many = tracker.uptime_many(["half", "never", "up"], now=now)
        assert tracker.wait_seeded(5.0)
    finally:
        tracker.close()
    assert many == {"24h": [100.0, None, 100.0], "7d": [50.0, None, 100.0]}
