"""A sequential canary judge: counts in, a verdict and its evidence out.

Pure (stdlib ``math`` only, no I/O, no clock), so a test, a notebook or another router can
feed it counts. The method is anytime-valid testing with e-processes (Lindon, Sanden,
Shirikian, KDD 2022; Lindon & Malek, NeurIPS 2022): the chance of a false rollback stays
under ``alpha`` however often the judge looks, and a regression is caught as soon as the
evidence is there. :mod:`.evalues` has the derivation, :mod:`.config` the promises and
their numbers, :mod:`.judge` the decisions.

>>> judge = CanaryJudge(thresholds_ms=[120.0, 300.0, 900.0])
>>> j = judge.observe(ArmCounts(100, 9, (50, 10, 1)), ArmCounts(900, 1, (450, 90, 9)))
>>> j.verdict.value, j.code.value
('failed', 'worse_errors')
"""

from __future__ import annotations

from crackseg.utils.deployment.rollout.judge.config import JudgeConfig
from crackseg.utils.deployment.rollout.judge.evidence import (
    ArmCounts,
    Evidence,
    Judgement,
    JudgeVerdict,
    ReasonCode,
)
from crackseg.utils.deployment.rollout.judge.judge import CanaryJudge
from crackseg.utils.deployment.rollout.judge.latency import (
    DEFAULT_QUANTILES,
    count_slow,
    freeze_thresholds,
)

__all__ = [
    "DEFAULT_QUANTILES",
    "ArmCounts",
    "CanaryJudge",
    "Evidence",
    "JudgeConfig",
    "JudgeVerdict",
    "Judgement",
    "ReasonCode",
    "count_slow",
    "freeze_thresholds",
]
