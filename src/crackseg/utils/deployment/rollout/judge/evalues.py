"""The e-processes the canary judge is made of (stdlib :mod:`math` only).

Three kinds, all kept as running sums of logs, so that one look costs the same after
10 batches as after 10,000.

**Split of events** (:class:`SplitEvidence`). In batch *s* the canary served ``n_C`` of
the ``n_C + n_B`` requests, ``rho = n_C / (n_C + n_B)``. If the canary's event rate
(errors, or requests slower than a threshold) is ``r`` times the stable's, and routing
does not depend on whether a request will fail, then given that an event happened it is
the canary's with probability::

    θ(r, rho) = rhor / (rhor + 1 - rho)            (the logistic of log r + logit rho)

so ``x`` canary events out of ``k = x + y`` are Binomial(k, θ(r, rho)) whatever the
stable's own rate is, and whatever it does during the rollout (load, a bad upstream), as
long as it hits both arms alike. For a grid of ratios ``r_i`` the log-likelihood
``l_i = Σ_s x_s log θ(r_i, rho_s) + y_s log(1 - θ(r_i, rho_s))`` is kept up to a term common
to every ``i`` (``x log rho + y log(1 - rho)``), which cancels in every ratio: per batch
``l_i += x log r_i - k log(1 + rho(r_i - 1))``, one ``log`` per grid point.

*Worse* (null ``r ≤ m``): ``E_t = mean_j exp(l_j - l_m)`` over alternatives ``r_j > m``.
Each term is a product of likelihood ratios, a nonnegative martingale with mean 1 under
``r = m``; under ``r < m`` each factor's expectation
``θ·θ_j/θ_m + (1 - θ)(1 - θ_j)/(1 - θ_m)`` is linear and increasing in ``θ``, equal to 1
at ``θ_m``, and ``θ`` is increasing in ``r``: a supermartingale. So the whole composite
null is covered, a mixture of such processes is one too, and Ville's inequality gives
``P(∃t: E_t ≥ 1/a) ≤ a`` however often one looks and whenever one stops. ``rho`` is per
batch, so evidence carries across weight steps. *Not worse than r_max* (null
``r ≥ r_max``) is the mirror image, with alternatives below ``r_max``.

Departure from the design note: the note's binomial split is exact for Poisson traffic or
per-request random routing. Conditional on the routed counts (nginx's round robin fixes
them) the canary's share of ``k`` events under ``r = 1`` is hypergeometric, and for a
convex function (``x ↦ c^x`` is one) its expectation is at most the binomial's
(Hoeffding 1963, Theorem 4): the e-process stays a supermartingale. For ``r`` near the
margin the exact conditional law is Fisher's noncentral hypergeometric with odds ratio
``m(1 - p_B)/(1 - m p_B)``, a shift of ``(m - 1)p_B`` relative: negligible at the error
rates where the test is used, and covered by the margin (see :mod:`.config`).

The anytime-valid interval for ``r`` inverts the same likelihoods: for each grid point
``r_i``, ``E_t(r_i) = mean_j exp(l_j - l_i)`` (a uniform mixture over the whole grid) is
an e-process for the point null ``r = r_i``, so ``{r_i : E_t(r_i) < 1/a}`` misses the
true ratio with probability at most ``a`` at any time. ``l`` is concave in ``log r``
(a logistic likelihood), so the set is an interval; it is reported widened to the next
grid points (steps of 2^(1/3), 26 %) on each side.

**One-sample** (:meth:`SplitEvidence.add_one_sample`), when no stable serves at the same
time: the canary's own ``x`` errors in ``n`` requests against a frozen reference rate
``p``, with the alternatives ``r_i p`` on the same grid, so the same ``l`` continues (a
product of conditional likelihood ratios, each with expectation ≤ 1 under the null, is
still a supermartingale). The reference is measured, not known: the *worse* test uses an
upper bound of it (``p_hi``, conservative for an abort), the *not worse* test a lower
bound (``p_lo``, conservative for a promotion), each from :func:`rate_bound`.

**Rate below a limit** (:class:`BelowLimit`): the canary's own rate ``p`` against a
limit ``L_s`` that may change from batch to batch (it follows the stable's measured
rate): ``E_t = mean_j Π_s c_j^{x_s} ((1 - c_j L_s)/(1 - L_s))^{n_s - x_s}`` over fractions
``c_j < 1``. Each factor is the likelihood ratio of Bernoulli(``c_j L_s``) against
Bernoulli(``L_s``): expectation 1 at ``p = L_s`` and below 1 for ``p > L_s``, so under
"``p ≥ L_s`` in every batch" it is a supermartingale. ``L_s`` depends only on the stable's
data, independent of the canary's given the rates, so conditioning on it is allowed.

References: S. Lindon, C. Sanden, V. Shirikian, "Rapid Regression Detection in Software
Deployments through Sequential Testing", KDD 2022; M. Lindon, A. Malek, "Anytime-Valid
Inference for Multinomial Count Data", NeurIPS 2022; J. Ville, "Étude critique de la
notion de collectif", 1939; W. Hoeffding, "Probability inequalities for sums of bounded
random variables", JASA 1963.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "BelowLimit",
    "RatioGrid",
    "SplitEvidence",
    "StitchedLowerBound",
    "kl_bernoulli",
    "log_mean_exp",
    "rate_bound",
    "ratio_estimate",
    "ratio_interval",
    "requests_to_show_below",
    "theta",
]

# A probability is kept this far from 0 and 1 so that a log never sees 0.
_EPS = 1e-12


def theta(ratio: float, share: float) -> float:
    """P(an event is the canary's | an event happened), canary rate ``ratio`` x stable's.

    >>> theta(1.0, 0.1)
    0.1
    >>> round(theta(20.0, 0.1), 3)
    0.69
    """
    return share * ratio / (share * ratio + 1.0 - share)


def log_mean_exp(values: Sequence[float]) -> float:
    """``log(mean(exp(v)))`` without overflow (log-sum-exp); ``-inf`` for no values."""
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


def kl_bernoulli(p: float, q: float) -> float:
    """Kullback-Leibler divergence KL(Bernoulli(p) ‖ Bernoulli(q)), in nats."""
    q = min(max(q, _EPS), 1.0 - _EPS)
    out = 0.0
    if p > 0:
        out += p * math.log(p / q)
    if p < 1:
        out += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return out


def rate_bound(events: int, trials: int, delta: float, *, upper: bool) -> float:
    """A Chernoff (KL) confidence bound on a binomial rate, one-sided at level ``delta``.

    The upper bound is the largest ``q ≥ x/n`` with ``n·KL(x/n ‖ q) ≤ log(1/δ)``, the lower
    the smallest ``q ≤ x/n``; ``P(p > upper) ≤ δ`` by the Chernoff bound. For a reference
    frozen once, not a sequence, so a fixed-sample bound is the right one. No trials:
    ``1.0`` (upper) or ``0.0`` (lower).
    """
    if trials <= 0:
        return 1.0 if upper else 0.0
    p_hat = events / trials
    budget = math.log(1.0 / delta) / trials
    lo, hi = (p_hat, 1.0) if upper else (0.0, p_hat)
    if upper and events == trials:
        return 1.0
    if not upper and events == 0:
        return 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        inside = kl_bernoulli(p_hat, mid) <= budget
        if upper:
            lo, hi = (mid, hi) if inside else (lo, mid)
        else:
            lo, hi = (lo, mid) if inside else (mid, hi)
    return hi if upper else lo


class StitchedLowerBound:
    """A lower confidence bound on a growing binomial sample that holds at every look.

    Recomputed only when the trials first pass 16, 32, 64, ... (the ``j``-th time at level
    ``delta * 6 / (pi^2 (j+1)^2)``, which sum to ``delta``: a union bound over
    :func:`rate_bound` at those points, a "stitched" bound), and held in between. The
    trials at which it is computed depend on routing only, not on which requests fail, so
    each fixed-sample bound applies. Cheap: about log2(n) bisections in a whole rollout.
    """

    __slots__ = ("delta", "index", "next_trials", "value")

    def __init__(self, delta: float) -> None:
        self.delta = delta
        self.index = 0
        self.next_trials = 16
        self.value = 0.0

    def update(self, events: int, trials: int) -> float:
        """The bound given the totals so far."""
        if trials >= self.next_trials:
            level = self.delta * 6.0 / (math.pi**2 * (self.index + 1) ** 2)
            self.value = rate_bound(events, trials, level, upper=False)
            self.index += 1
            while self.next_trials <= trials:
                self.next_trials *= 2
        return self.value


def requests_to_show_below(rate: float, limit: float, log_e: float, log_target: float) -> float:
    """How many more requests a rate-below-limit e-process needs, if the rate stays ``rate``.

    An estimate, documented as such: the best alternative's log-likelihood ratio grows on
    average by ``KL(rate ‖ limit)`` per request (the mixture pays about its weight, already
    in ``log_e``), so ``(log_target - log_e) / KL``. ``inf`` when ``rate ≥ limit`` (no
    amount of traffic at this rate shows it below the limit).
    """
    if log_e >= log_target:
        return 0.0
    if rate >= limit:
        return math.inf
    return (log_target - log_e) / kl_bernoulli(rate, limit)


class RatioGrid:
    """The ratios ``r`` an event split is tracked at, and which of them play which part.

    ``margin`` is the *worse* test's null ``m``; ``worse`` its alternatives (all > m);
    ``max_ratio`` and ``better`` (all < max_ratio) the *not worse* test's, when given;
    ``fine`` adds the 2^(k/3) ladder from 1/64 to 128 the interval is read on. Stored in
    that order (null, worse, max, better, ladder) so every test reads a slice; a ratio may
    appear twice (the same likelihood, kept twice: cheaper than an index).
    """

    __slots__ = ("better", "log_points", "points", "sorted_unique", "worse")

    def __init__(
        self,
        margin: float,
        worse: Sequence[float],
        *,
        max_ratio: float | None = None,
        better: Sequence[float] = (),
        fine: bool = False,
    ) -> None:
        if any(r <= margin for r in worse):
            raise ValueError(f"alternatives of the worse test must exceed the margin {margin}")
        if max_ratio is not None and any(r >= max_ratio for r in better):
            raise ValueError(f"alternatives of the not-worse test must be below {max_ratio}")
        points = [margin, *worse]
        self.worse = slice(1, 1 + len(worse))
        self.better = slice(0, 0)
        if max_ratio is not None:
            points += [max_ratio, *better]
            self.better = slice(self.worse.stop + 1, self.worse.stop + 1 + len(better))
        if fine:
            points += [2.0 ** (k / 3) for k in range(-18, 22)]
        self.points: tuple[float, ...] = tuple(points)
        self.log_points: tuple[float, ...] = tuple(math.log(r) for r in points)
        first: dict[float, int] = {}
        for i, r in enumerate(points):
            first.setdefault(r, i)
        self.sorted_unique: tuple[int, ...] = tuple(first[r] for r in sorted(first))

    def denominators(self, share: float) -> list[float]:
        """``log(1 + rho(r_i - 1))`` for every point: the part of log theta that depends on r."""
        return [math.log1p(share * (r - 1.0)) for r in self.points]


class SplitEvidence:
    """Running log-likelihoods of the canary/stable split of one kind of event.

    ``ll`` holds the two-sample part (shared by every test); the one-sample parts are
    kept apart because the *worse* and *not worse* tests use different bounds of the
    reference (``hi``/``lo``). Not thread-safe.
    """

    __slots__ = ("grid", "ll", "one_hi", "one_lo")

    def __init__(self, grid: RatioGrid) -> None:
        self.grid = grid
        self.ll = [0.0] * len(grid.points)
        self.one_hi: list[float] | None = None
        self.one_lo: list[float] | None = None

    def add_split(self, canary_events: int, events: int, denominators: list[float]) -> None:
        """One two-sample batch: ``canary_events`` of ``events``, ``grid.denominators(rho)``.

        Per point, log theta_i up to the common term: ``x log r_i - k log(1 + rho(r_i - 1))``.
        The caller skips batches without events, or where one arm served every request
        (rho 0 or 1: the split is certain whatever r is, nothing to learn).
        """
        x, k = canary_events, events
        self.ll = [
            a + x * lr - k * d
            for a, lr, d in zip(self.ll, self.grid.log_points, denominators, strict=True)
        ]

    def add_one_sample(self, events: int, trials: int, p_hi: float, p_lo: float) -> None:
        """One one-sample batch against a reference rate bounded by ``[p_lo, p_hi]``."""
        fails = trials - events
        null = self.grid.points[0]
        parts: list[list[float] | None] = []
        for ref, acc in ((p_hi, self.one_hi), (p_lo, self.one_lo)):
            acc = acc if acc is not None else [0.0] * len(self.grid.points)
            # A reference at 0 says nothing about a ratio (every r*0 is 0), and one at
            # which even the null is certain failure neither: that side learns nothing.
            if ref > 0.0 and null * ref < 1.0:
                qs = [min(r * ref, 1.0 - _EPS) for r in self.grid.points]
                acc = [
                    a + events * math.log(q) + fails * math.log1p(-q)
                    for a, q in zip(acc, qs, strict=True)
                ]
            parts.append(acc)
        # New lists, never changed in place: a snapshot may hold the old ones.
        self.one_hi, self.one_lo = parts

    @classmethod
    def restore(
        cls,
        grid: RatioGrid,
        state: tuple[list[float], list[float] | None, list[float] | None],
    ) -> SplitEvidence:
        """An evidence over ``state`` (from :meth:`state`), read-only by convention."""
        out = cls(grid)
        out.ll, out.one_hi, out.one_lo = state
        return out

    def state(self) -> tuple[list[float], list[float] | None, list[float] | None]:
        """The lists as they are now; updates replace them, so holding them is a snapshot."""
        return self.ll, self.one_hi, self.one_lo

    def worse_ll(self) -> list[float]:
        """The log-likelihoods the *worse* test reads (one-sample part on the upper bound)."""
        if self.one_hi is None:
            return self.ll
        return [a + b for a, b in zip(self.ll, self.one_hi, strict=True)]

    def better_ll(self) -> list[float]:
        """The log-likelihoods the *not worse* test reads (one-sample part on the lower bound)."""
        if self.one_lo is None:
            return self.ll
        return [a + b for a, b in zip(self.ll, self.one_lo, strict=True)]

    def log_e_worse(self) -> float:
        """log E of "the canary's rate is more than ``margin`` x the stable's"."""
        ll = self.worse_ll()
        return log_mean_exp(ll[self.grid.worse]) - ll[0]

    def log_e_not_worse(self) -> float:
        """log E of "the canary's rate is less than ``max_ratio`` x the stable's"."""
        g = self.grid
        if g.better.stop == 0:
            return 0.0
        ll = self.better_ll()
        return log_mean_exp(ll[g.better]) - ll[g.better.start - 1]


def ratio_estimate(grid: RatioGrid, worse_ll: Sequence[float]) -> float | None:
    """The grid ratio of highest likelihood (None before any event)."""
    if max(worse_ll) == min(worse_ll):
        return None
    return grid.points[max(grid.sorted_unique, key=worse_ll.__getitem__)]


def ratio_interval(
    grid: RatioGrid, worse_ll: Sequence[float], better_ll: Sequence[float], alpha: float
) -> tuple[float, float]:
    """Anytime-valid ``1 - alpha`` interval for the ratio: ``(low, high)``.

    ``low`` is 0.0 and ``high`` ``inf`` where the data exclude nothing on that side; the
    lower end is read on the *worse* likelihoods, the upper on the *not worse* ones (each
    conservative on its side in one-sample mode), and each is widened to the next grid
    point outside the set.
    """
    order = grid.sorted_unique
    pts = [grid.points[i] for i in order]
    lo_ll = [worse_ll[i] for i in order]
    hi_ll = [better_ll[i] for i in order]
    cut = math.log(1.0 / alpha)
    lo_mix, hi_mix = log_mean_exp(lo_ll), log_mean_exp(hi_ll)
    first = next((i for i, v in enumerate(lo_ll) if lo_mix - v < cut), 0)
    last = next((i for i in range(len(pts) - 1, -1, -1) if hi_mix - hi_ll[i] < cut), -1)
    low = pts[first - 1] if first > 0 else 0.0
    high = pts[last + 1] if 0 <= last < len(pts) - 1 else math.inf
    return low, high


class BelowLimit:
    """ "The canary's own rate is below a (moving) limit": a mixture over fractions of it.

    ``E_t = mean_j Π_s (q_js/L_s)^{x_s} ((1 - q_js)/(1 - L_s))^{n_s - x_s}`` with
    ``q_js = c_j L_s`` (see the module doc). With ``above=True`` it is the mirror test,
    "the rate is above the limit" (fractions above 1, ``q`` capped below 1), used when
    there is no baseline at all. The per-fraction terms are kept for the last limit seen,
    so a limit that does not move costs no ``log`` (the judge rounds its limits down to
    1 % steps for that). ``la`` is replaced on every update, never changed in place.
    """

    __slots__ = ("_limit", "_terms", "above", "fractions", "la")

    # A healthy canary sits at 1/10 to 1/5 of a limit of 10x its stable's rate, at about
    # 1/4 of one of 4x its stable's share above a threshold.
    BELOW: tuple[float, ...] = (0.6, 0.3, 0.15, 0.07, 0.03, 0.01)
    ABOVE: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

    def __init__(self, *, above: bool = False) -> None:
        self.above = above
        self.fractions = self.ABOVE if above else self.BELOW
        self.la = [0.0] * len(self.fractions)
        self._limit = -1.0
        self._terms: list[tuple[float, float]] = []

    def add(self, events: int, trials: int, limit: float) -> None:
        """One batch of the canary's ``events`` in ``trials`` requests against ``limit``
        (0 < limit < 1)."""
        if limit != self._limit:
            base = math.log1p(-limit)
            qs = [min(c * limit, 1.0 - _EPS) for c in self.fractions]
            self._terms = [(math.log(q / limit), math.log1p(-q) - base) for q in qs]
            self._limit = limit
        fails = trials - events
        self.la = [
            a + events * t1 + fails * t2 for a, (t1, t2) in zip(self.la, self._terms, strict=True)
        ]

    def log_e(self) -> float:
        return log_mean_exp(self.la)

    def crossed(self, log_threshold: float) -> bool:
        """Whether log E reached ``log_threshold``; the max bounds it, so most looks are cheap."""
        return max(self.la) >= log_threshold and log_mean_exp(self.la) >= log_threshold
