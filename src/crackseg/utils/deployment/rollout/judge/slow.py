"""Latency evidence over every threshold at once (:class:`SlowEvidence`).

The tests are those of :mod:`.evalues` (the split of events, the rate below a limit),
applied to "slow" events: requests above a threshold frozen from the stable, and requests
that timed out, which are slow for every threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from crackseg.utils.deployment.rollout.judge.evalues import BelowLimit

__all__ = ["SlowEvidence"]

_EPS = 1e-12


class SlowEvidence:
    """Latency, every threshold at once: "slower than the stable" and "not much slower".

    *Slower* (per threshold ``k``): the split test of :mod:`.evalues` on slow events, with
    a **plug-in alternative instead of a grid**. Departure from the design note (a grid
    mixture per threshold, as for errors): ten thresholds x a grid is ten list updates a
    look, over the 50 us budget in Python; the plug-in costs two logs. Each batch's
    factor is the likelihood ratio of ``theta(r_a, rho)`` against ``theta(m, rho)``, with
    ``r_a`` the canary/stable ratio of slow shares *before* the batch (half an event added
    to each arm) clipped to ``[m, max_alt]``: a predictable alternative above ``m`` keeps
    every factor's expectation <= 1 under the null (the linearity argument of
    :mod:`.evalues`), so the product is a test supermartingale (the predictable plug-in
    method; e.g. Waudby-Smith & Ramdas, "Estimating means of bounded random variables by
    betting", JRSS-B 2024). It must not use the batch it bets on: the stable's events of
    that batch are ``k - x``. The judge averages the thresholds' e-values (an
    average of e-processes on one filtration is one).

    *Not much slower* (per threshold): the canary's share above ``tau_k`` below
    ``limits[k]`` (:class:`~.evalues.BelowLimit`), where the caller sets the limits from the
    stable's shares; a limit of 1 (or more) has nothing to show and is skipped.
    """

    __slots__ = ("below", "limits", "log_margin", "log_slower", "margin", "max_alt", "shown")

    def __init__(self, thresholds: int, margin: float, max_alt: float = 50.0) -> None:
        self.margin = margin
        self.log_margin = math.log(margin)
        self.max_alt = max_alt
        self.log_slower = [0.0] * thresholds
        self.below = [BelowLimit() for _ in range(thresholds)]
        self.limits: list[float | None] = [None] * thresholds
        # Set by the judge once a threshold's "not much slower" crossed its bound (latched).
        self.shown = [False] * thresholds

    def add_split(
        self,
        canary: tuple[list[int], int],
        stable: tuple[list[int], int],
        share: float,
        before_canary: tuple[list[int], int],
        before_stable: tuple[list[int], int],
    ) -> None:
        """One two-sample batch: ``(events per threshold, requests)`` of each arm in the
        batch and before it; ``share`` is rho, strictly inside (0, 1)."""
        m, log_m, cap = self.margin, self.log_margin, self.max_alt
        null_den = math.log1p(share * (m - 1.0))
        xs = canary[0]
        ys = stable[0]
        c0, n_c0 = before_canary
        s0, n_s0 = before_stable
        log_slower = self.log_slower
        for i, x in enumerate(xs):
            events = x + ys[i]
            if not events:
                continue
            alt = ((c0[i] + 0.5) / (n_c0 + 1)) / ((s0[i] + 0.5) / (n_s0 + 1))
            if alt <= m:
                continue  # a bet at the null (factor 1): nothing is staked
            alt = min(alt, cap)
            log_slower[i] += x * (math.log(alt) - log_m) - events * (
                math.log1p(share * (alt - 1.0)) - null_den
            )

    def add_one_sample(
        self,
        canary: tuple[list[int], int],
        before_canary: tuple[list[int], int],
        ref_hi: Sequence[float],
    ) -> None:
        """One one-sample batch against the reference's shares (upper bounds ``ref_hi``).

        The bet is the canary's share so far (before the batch) against the null's ``q0 =
        margin * ref_hi``: a ratio over the reference's point estimate, multiplied back by
        its upper bound, would bet on a share well above the canary's (3.5 x 1 % read as
        3.5 x 2.2 %), and a bet above the truth loses even when the truth is above q0: a
        p99 share of 3.5 % against 1 % was never aborted."""
        m, cap = self.margin, self.max_alt
        xs, n = canary
        c0, n0 = before_canary
        for i, x in enumerate(xs):
            q0 = m * ref_hi[i]
            if not 0.0 < q0 < 1.0:
                continue
            alt = ((c0[i] + 0.5) / (n0 + 1)) / ref_hi[i]
            if alt <= m:
                continue
            q = min(min(alt, cap) * ref_hi[i], 1.0 - _EPS)
            self.log_slower[i] += x * math.log(q / q0) + (n - x) * (
                math.log1p(-q) - math.log1p(-q0)
            )

    def add_below(self, canary: tuple[list[int], int]) -> None:
        """The canary's share above each threshold against its limit, this batch (skipped
        where already shown: a latched crossing needs no more evidence)."""
        xs, n = canary
        shown, below = self.shown, self.below
        for i, limit in enumerate(self.limits):
            if limit is not None and limit < 1.0 and not shown[i]:
                below[i].add(xs[i], n, limit)
