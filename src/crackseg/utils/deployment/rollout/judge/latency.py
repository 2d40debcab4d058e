"""Latency thresholds frozen from the stable version, and slow counts against them.

The judge never estimates a quantile while it tests: it counts requests above thresholds
fixed at the start (the stable's p50, p90, p99 over its recent traffic, or Prometheus
histogram bucket bounds), so a tail-only regression shows as more canary requests above
the stable's p99, with no quantile noise in the test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from crackseg.utils.deployment.errors import ConfigError

__all__ = ["DEFAULT_QUANTILES", "count_slow", "freeze_thresholds"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


def freeze_thresholds(
    latencies_ms: Sequence[float], quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> tuple[float, ...]:
    """The stable's latency quantiles (nearest rank), ascending and distinct.

    Quantiles that fall on the same value are merged (a threshold twice would count the
    same events twice). Raises :class:`ConfigError` without enough samples to place the
    highest quantile (``1 / (1 - q)`` of them: 100 for a p99).

    >>> freeze_thresholds([float(i) for i in range(1, 101)])
    (50.0, 90.0, 99.0)
    """
    values = sorted(float(v) for v in latencies_ms if math.isfinite(v) and v >= 0)
    if any(not 0.0 < q < 1.0 for q in quantiles):
        raise ConfigError("quantiles", f"must be in (0, 1), got {list(quantiles)}")
    if not quantiles:
        return ()
    needed = math.ceil(1.0 / (1.0 - max(quantiles)) - 1e-9)
    if len(values) < needed:
        raise ConfigError(
            "latencies_ms",
            f"{len(values)} samples cannot place a p{100 * max(quantiles):g}: give at least "
            f"{needed} of the stable's response times",
        )
    out: list[float] = []
    for q in sorted(quantiles):
        v = values[max(0, math.ceil(q * len(values)) - 1)]
        if v > 0 and (not out or v > out[-1]):
            out.append(v)
    return tuple(out)


def count_slow(latencies_ms: Iterable[float], thresholds_ms: Sequence[float]) -> tuple[int, ...]:
    """How many of ``latencies_ms`` exceed each threshold (completed requests only)."""
    counts = [0] * len(thresholds_ms)
    for v in latencies_ms:
        for k, t in enumerate(thresholds_ms):
            if v > t:
                counts[k] += 1
            else:
                break  # ascending thresholds: no higher one is exceeded either
    return tuple(counts)
