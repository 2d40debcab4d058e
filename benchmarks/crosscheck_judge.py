"""Dev-only cross-check of the judge's error test against a published implementation.

``savvi`` (PyPI, MIT; Lindon & Malek's Dirichlet-mixture multinomial test, NeurIPS 2022)
is not a dependency: install it in a scratch environment (it pulls numpy, scipy, cvxpy)
and run, from the repository root:

    python -m venv /tmp/savvi && /tmp/savvi/bin/pip install savvi==0.3.1
    PYTHONPATH=src /tmp/savvi/bin/python benchmarks/crosscheck_judge.py

The judge itself needs none of it (the run above proves it imports on the standard
library alone). For a fixed canary share ``rho`` the split of errors between canary and
stable is a two-category multinomial with ``theta = (rho, 1 - rho)`` under "same error
rate"; savvi tests that point null with a Dirichlet mixture, the judge tests "at most
``margin`` x worse" with a discrete mixture over worse ratios. Different priors, so the
e-values differ, but on the same seeded count sequences they must agree on direction
(both grow on a canary 5 x worse, both stay small on an equal one), and their intervals
for the ratio must both hold the truth: a guard against a slipped sign or a swapped arm.
"""

from __future__ import annotations

import random
from typing import Any

from crackseg.utils.deployment.rollout.judge import ArmCounts, CanaryJudge
from crackseg.utils.deployment.rollout.judge.simulate import binomial


def main() -> int:
    import numpy as np  # dev-only: see the module doc
    from savvi.multinomial import Multinomial

    rho, looks, failures = 0.2, 300, 0
    print(
        "| ratio | seed | savvi e-value | judge e-value (worse) | savvi ratio interval "
        "| judge ratio interval |"
    )
    print("|---|---|---|---|---|---|")
    for ratio in (1.0, 5.0):
        for seed in range(5):
            rng = random.Random(seed)
            test: Any = Multinomial(0.01, np.array([rho, 1 - rho]), k=100)
            judge = CanaryJudge()
            for _ in range(looks):
                n_c, n_s = 20, 80  # a fixed share: what savvi's point null assumes
                x = binomial(n_c, 0.01 * ratio, rng)
                y = binomial(n_s, 0.01, rng)
                test.update(np.array([x, y]))
                j = judge.observe(ArmCounts(n_c, x), ArmCounts(n_s, y))
            t_lo, t_hi = test.calculate_conf_int()[0]
            # theta = rho r / (rho r + 1 - rho)  <=>  r = theta (1 - rho) / (rho (1 - theta))
            r_lo, r_hi = (t * (1 - rho) / (rho * (1 - t)) for t in (t_lo, t_hi))
            ev = j.evidence
            e_savvi, e_judge = float(test.odds), ev.e_errors
            agree = (e_savvi > 100) == (e_judge > 100)
            holds = r_lo <= ratio <= r_hi and ev.error_ratio_low <= ratio <= ev.error_ratio_high
            failures += not (agree and holds)
            print(
                f"| {ratio:g} | {seed} | {e_savvi:.3g} | {e_judge:.3g} | {r_lo:.2f}-{r_hi:.2f} "
                f"| {ev.error_ratio_low:.2f}-{ev.error_ratio_high:.2f} |"
                + ("" if agree and holds else " **disagree**")
            )
    print(f"\n{failures} disagreement(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
