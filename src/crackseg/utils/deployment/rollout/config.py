"""What a deployment is asked to do (:class:`DeploymentConfig`) and how it ended
(:class:`DeploymentResult`). Both are re-exported by :mod:`..orchestration`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from crackseg.utils.deployment.errors import ConfigError, ConfigProblems, require_positive
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.monitoring.spec import DEPLOYMENT_ID_PATTERN
from crackseg.utils.deployment.rollout.gate import AnalysisCriteria
from crackseg.utils.deployment.rollout.judge import JudgeConfig
from crackseg.utils.deployment.rollout.load import LoadSpec
from crackseg.utils.deployment.rollout.prom_counters import check_queries

__all__ = [
    "MAX_DEPLOYMENT_ID",
    "MAX_VERSION",
    "DeploymentConfig",
    "DeploymentResult",
    "check_version",
    "safe_id",
]

#: Longest deployment id a rollout takes: the monitor's ids hold 128 characters and the
#: replicas of a release are monitored as ``<id>#<n>``.
MAX_DEPLOYMENT_ID = 120
#: Longest version accepted (semver with build metadata, image tags, git describe...).
MAX_VERSION = 128
_VERSION = re.compile(r"[^\s\x00-\x1f\x7f]+")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._:@-]+")


def check_version(version: Any, field: str = "version") -> str:
    """``version`` if a rollout can take it: 1-128 visible characters, no spaces or
    control characters (``1.2.3+build.5`` is fine); :class:`ConfigError` naming ``field``."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ConfigError(field, f"must be visible characters without spaces, got {version!r}")
    if len(version) > MAX_VERSION:
        raise ConfigError(field, f"must be at most {MAX_VERSION} characters, got {len(version)}")
    return version


def safe_id(*parts: str) -> str:
    """A deployment id from ``parts`` (e.g. name, version, a random suffix) that the monitor
    takes whatever they hold: other characters become ``_``, each part is shortened, and
    the whole fits :data:`MAX_DEPLOYMENT_ID`. The record keeps the version as written.

    >>> safe_id("api", "1.2.3+build.5", "ab12cd")
    'api-1.2.3_build.5-ab12cd'
    """
    room = max(8, (MAX_DEPLOYMENT_ID - len(parts) + 1) // max(1, len(parts)))
    cleaned = [(_UNSAFE_ID.sub("_", p).strip("_") or "x")[:room] for p in parts]
    joined = "-".join(cleaned)[:MAX_DEPLOYMENT_ID]
    return joined if joined[0].isalnum() else f"d{joined[: MAX_DEPLOYMENT_ID - 1]}"


_CRITERIA = AnalysisCriteria()


@dataclass
class DeploymentConfig:
    """One rollout of ``artifact_id`` (at ``version``) to ``target_environment``.

    Times are seconds. Health: a new instance passes its gate after ``success_threshold``
    consecutive healthy probes (every ``check_interval``) within ``health_timeout``, and
    fails after ``failure_threshold`` consecutive failed probes. With ``require_version``, a
    healthy answer counts only if its body reports ``version`` (the spec's health endpoint
    does): another version fails the gate at once, naming both (a deploy that started the
    old build); no version reported never passes it.

    Traffic analysis is the sequential judge (:mod:`.judge`, settings ``judge``: a
    :class:`~.judge.JudgeConfig` or a mapping of its fields; by default its absolute error
    limit is ``max_error_rate_percent``) wherever counts per arm can be read at every look:
    from a Prometheus server that scrapes the instances (``prometheus_url`` with the counter
    keys of ``prometheus_queries``, below; :mod:`.prom_counters`), else from the router's
    log where it logs every request (nginx), else from the instances' own counters
    (``metrics_path``: request and error counters and latency-histogram buckets per arm,
    ``metrics_labels`` selecting samples, e.g. ``{"route": "/predict"}``; see
    :mod:`.counters`). It judges the new version's requests, errors and slow requests (over
    thresholds frozen from the stable's traffic before the switch) against the stable's
    serving beside it, or against its figures from before the switch where none does;
    evidence carries across steps; evidence of harm rolls back at once, a step passes only on
    evidence of safety, and the verdict with its evidence (and its ``source``) goes into the
    record (``extra["evidence"]``, and each gate step).

    ``prometheus_queries`` with counters: ``requests`` and ``errors`` (both, or neither),
    optionally ``duration_bucket``, each the cumulative counter of ONE instance, where
    ``{instance}`` becomes its ``host:port`` (the ``instance`` label Prometheus gives the
    target) and ``{version}`` its version::

        requests: sum(http_requests_total{instance="{instance}"})
        errors: sum(http_requests_total{instance="{instance}",code=~"5.."})
        duration_bucket: sum by (le) (http_request_duration_seconds_bucket{instance="{instance}"})

    (``up``, optional, says whether Prometheus scrapes it: default ``max(up{instance=
    "{instance}"})``). An instance Prometheus has not scraped yet adds nothing to a look;
    one still without data after 3 ``prometheus_scrape_interval`` is a failed measurement.

    Otherwise (``prometheus_queries`` with the rate keys alone, no counts; the record notes
    that the judge was not used and how to switch) traffic analysis judges
    ``max_error_rate_percent``, ``max_p95_latency_ms`` and, against the stable version,
    ``max_error_rate_delta_percent`` (points) and ``max_latency_ratio`` (beyond
    ``latency_slack_ms``), once ``min_samples`` requests are seen, on a fixed-threshold
    snapshot: request figures from the Prometheus server (the rate keys as in
    :class:`~.analysis.PerformanceMonitor`, where ``{instances}`` becomes a regex of the
    judged instances' ``host:port`` and ``{version}`` the version), else from the traffic
    router's own measurement (:meth:`~.routers.base.TrafficRouter.measure`), else, where
    nothing measures real traffic, from the health probes (the verdict then says "judged on
    health probes only"; so does a step that saw no request).
    A measurement that fails is an ``error`` verdict, never a pass:
    ``consecutive_error_limit`` of them in a row roll back. Not enough data at the end of a
    window (``inconclusive``): wait up to ``analysis_timeout`` more (default: one more
    ``bake_seconds``), then ``on_inconclusive``: ``"rollback"``, the default (fail closed:
    users were served and the evidence stayed short, so nothing shows the version is safe),
    or ``"proceed"``. Every wait is bounded by ``deploy_timeout``. ``load`` (a
    :class:`~.load.LoadSpec` or a mapping of its fields) sends a synthetic request at a rate
    through the router during each analysis, logged apart from user traffic: evidence for a
    service with little traffic.

    Once it serves, the deployment is handed to the health monitor (started if it was not),
    checked every ``monitor_interval`` seconds. For ``guard_seconds`` after promotion (0:
    off) the monitor's alerts on it and the router's error rate roll it back by themselves.
    The replaced version's instances are kept warm ``keep_old_seconds`` (default: the guard
    window, at least 60 s; a router with backups keeps them as the new version's backup) for
    an instant rollback, then stopped with ``grace_period``.

    >>> DeploymentConfig("crackseg-model", "production", version="v2").canary_steps
    [10, 25, 50, 100]
    """

    artifact_id: str
    target_environment: str
    version: str | None = None
    deployment_id: str | None = None
    health_check_url: str | None = None
    health_check_path: str = "/health"
    metrics_path: str | None = None
    metrics_labels: dict[str, str] = field(default_factory=dict)
    prometheus_url: str | None = None
    prometheus_queries: dict[str, str] = field(default_factory=dict)
    prometheus_scrape_interval: float = 15.0
    health_timeout: float = 60.0
    check_interval: float = 1.0
    probe_timeout: float = 2.0
    success_threshold: int = 2
    failure_threshold: int = 2
    bake_seconds: float = 30.0
    canary_steps: list[int] = field(default_factory=lambda: [10, 25, 50, 100])
    # The analysis defaults are AnalysisCriteria's: one place to change them.
    max_error_rate_percent: float = _CRITERIA.max_error_rate_percent
    max_p95_latency_ms: float | None = _CRITERIA.max_p95_latency_ms
    max_error_rate_delta_percent: float = _CRITERIA.max_error_rate_delta_percent
    max_latency_ratio: float = _CRITERIA.max_latency_ratio
    latency_slack_ms: float = _CRITERIA.latency_slack_ms
    min_samples: int = _CRITERIA.min_samples
    analysis_timeout: float | None = None
    on_inconclusive: str = "rollback"
    require_version: bool = False
    load: LoadSpec | None = None
    judge: JudgeConfig | None = None
    consecutive_error_limit: int = 4
    guard_seconds: float = 300.0
    replicas: int = 1
    max_surge: int = 1
    max_unavailable: int = 0
    keep_old_seconds: float | None = None
    grace_period: float = 10.0
    deploy_timeout: float = 600.0
    monitor_interval: float = 30.0
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every problem is found in one run: each check keeps its problem and the next runs.
        found = ConfigProblems()
        for name in ("artifact_id", "target_environment"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                found.add(name, "must be a non-empty string, e.g. 'crackseg-model'")
        if self.version is None:
            self.version = self.artifact_id
        else:
            with found.check():
                check_version(self.version)
        if self.deployment_id is not None and (
            not isinstance(self.deployment_id, str)
            or not re.match(DEPLOYMENT_ID_PATTERN, self.deployment_id)
            or len(self.deployment_id) > MAX_DEPLOYMENT_ID
        ):
            found.add(
                "deployment_id",
                f"must be 1-{MAX_DEPLOYMENT_ID} letters, digits or . _ : @ - # (starting with a "
                f"letter or digit), got {self.deployment_id!r}",
            )
        for name in ("health_check_url", "prometheus_url"):
            value = getattr(self, name)
            if value is not None and not str(value).startswith(("http://", "https://")):
                found.add(name, "must start with http:// or https://")
        if self.prometheus_url and not self.prometheus_queries:
            found.add(
                "prometheus_queries",
                "give requests and errors (counters of one instance: the sequential judge), "
                "or error_rate_percent or p95_ms (the snapshot gate)",
            )
        if not isinstance(self.prometheus_queries, dict):
            found.add("prometheus_queries", "must be a mapping of key to PromQL")
        else:
            with found.check():
                check_queries(self.prometheus_queries)
        with found.check():
            require_positive("prometheus_scrape_interval", self.prometheus_scrape_interval)
        for name in ("health_check_path", "metrics_path"):
            value = getattr(self, name)
            if value is not None and not str(value).startswith("/"):
                found.add(name, f"must start with '/', e.g. '/{value}'")
        self._validate_numbers(found)
        self._validate_rates(found)
        self._validate_rolling(found)
        with found.check():
            self._validate_steps()
        with found.check():
            self.load = _load_spec(cast(Any, self.load))
        with found.check():
            self.judge = _judge_config(cast(Any, self.judge))
        if self.on_inconclusive not in ("rollback", "proceed"):
            found.add("on_inconclusive", "must be 'rollback' or 'proceed'")
        found.raise_any()

    def _validate_numbers(self, found: ConfigProblems) -> None:
        for name in (
            "health_timeout",
            "check_interval",
            "probe_timeout",
            "deploy_timeout",
            "monitor_interval",
        ):
            with found.check():
                require_positive(name, getattr(self, name))
        for name in ("bake_seconds", "grace_period", "guard_seconds"):
            with found.check():
                require_positive(name, getattr(self, name), allow_zero=True)
        for name in ("keep_old_seconds", "analysis_timeout"):
            if getattr(self, name) is not None:
                with found.check():
                    require_positive(name, getattr(self, name), allow_zero=True)
        for name in (
            "success_threshold",
            "failure_threshold",
            "min_samples",
            "replicas",
            "consecutive_error_limit",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                found.add(name, f"must be an integer >= 1, got {value!r}")

    def _validate_rates(self, found: ConfigProblems) -> None:
        for name in ("max_error_rate_percent", "max_error_rate_delta_percent"):
            value = getattr(self, name)
            with found.check():
                require_positive(name, value, allow_zero=True)
                if value > 100:
                    raise ConfigError(name, f"is a percentage: use 0..100, got {value}")
        if self.max_p95_latency_ms is not None:
            with found.check():
                require_positive("max_p95_latency_ms", self.max_p95_latency_ms)
        with found.check():
            require_positive("latency_slack_ms", self.latency_slack_ms, allow_zero=True)
        with found.check():
            require_positive("max_latency_ratio", self.max_latency_ratio)
            if self.max_latency_ratio < 1:
                raise ConfigError("max_latency_ratio", "must be >= 1 (1 = no slower than stable)")

    def _validate_rolling(self, found: ConfigProblems) -> None:
        counts = True
        for name in ("max_surge", "max_unavailable"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                found.add(name, f"must be an integer >= 0, got {value!r}")
                counts = False
        if not counts:  # the pairs below compare values already refused
            return
        if self.max_surge == 0 and self.max_unavailable == 0:
            found.add(
                "max_surge", "max_surge and max_unavailable cannot both be 0: set max_surge=1"
            )
        replicas = self.replicas
        if isinstance(replicas, int) and self.max_unavailable > replicas:
            found.add(
                "max_unavailable",
                f"must be <= replicas ({replicas}), got {self.max_unavailable}",
            )

    def _validate_steps(self) -> None:
        steps = self.canary_steps
        if not isinstance(steps, list) or not steps:
            raise ConfigError("canary_steps", "must be a non-empty list such as [10, 25, 50, 100]")
        prev = 0
        for step in steps:
            if isinstance(step, bool) or not isinstance(step, int) or not 0 < step <= 100:
                raise ConfigError("canary_steps", f"weights are integers in 1..100, got {step!r}")
            if step <= prev:
                raise ConfigError("canary_steps", f"must increase strictly, got {steps}")
            prev = step
        if steps[-1] != 100:
            raise ConfigError("canary_steps", f"must end with 100 (full traffic), got {steps}")

    @property
    def criteria(self) -> AnalysisCriteria:
        return AnalysisCriteria(
            max_error_rate_percent=self.max_error_rate_percent,
            max_p95_latency_ms=self.max_p95_latency_ms,
            max_error_rate_delta_percent=self.max_error_rate_delta_percent,
            max_latency_ratio=self.max_latency_ratio,
            latency_slack_ms=self.latency_slack_ms,
            min_samples=self.min_samples,
        )

    @property
    def counts_from_prometheus(self) -> bool:
        """True when the Prometheus server gives counters (``requests`` and ``errors``), so
        the sequential judge decides from it."""
        return bool(self.prometheus_url) and check_queries(self.prometheus_queries)

    @property
    def judge_config(self) -> JudgeConfig:
        """The sequential judge's settings: ``judge`` when given, else its defaults with
        ``max_error_rate_percent`` as the absolute error limit."""
        if self.judge is not None:
            return self.judge
        # The judge's limit is a fraction strictly inside (0, 1).
        limit = min(max(self.max_error_rate_percent / 100.0, 1e-6), 1.0 - 1e-6)
        return JudgeConfig(max_error_rate=limit)

    @property
    def effective_keep_old_seconds(self) -> float:
        """``keep_old_seconds``, or by default the guard window (at least 60 s)."""
        if self.keep_old_seconds is not None:
            return self.keep_old_seconds
        return max(60.0, self.guard_seconds)

    @property
    def effective_analysis_timeout(self) -> float:
        return self.bake_seconds if self.analysis_timeout is None else self.analysis_timeout


@dataclass
class DeploymentResult:
    """How a deployment ended. ``success`` is True only when the new version serves.

    ``rolled_back`` tells a failure that was undone (traffic back on the previous
    version) from one that could not be; ``metadata`` is the full record.
    """

    success: bool
    deployment_id: str
    artifact_id: str
    target_environment: str
    deployment_url: str | None = None
    health_check_url: str | None = None
    error_message: str | None = None
    rolled_back: bool = False
    metadata: DeploymentMetadata | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "deployment_id": self.deployment_id,
            "artifact_id": self.artifact_id,
            "target_environment": self.target_environment,
            "deployment_url": self.deployment_url,
            "health_check_url": self.health_check_url,
            "error_message": self.error_message,
            "rolled_back": self.rolled_back,
            "metadata": self.metadata.to_dict() if self.metadata else None,
        }


def _fields(name: str, known: Iterable[str], value: Any, example: str) -> dict[str, Any]:
    """A section given as a mapping of a dataclass's fields, checked for unknown keys."""
    if not isinstance(value, dict):
        raise ConfigError(name, f"must be a mapping such as {example}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ConfigError(name, f"unknown field(s) {unknown}; use {', '.join(known)}")
    return dict(value)


def _load_spec(value: Any) -> LoadSpec | None:
    """``load`` as given: a :class:`LoadSpec`, or a mapping of its fields (a YAML section,
    whose ``body`` is text)."""
    if value is None or isinstance(value, LoadSpec):
        return value
    fields = _fields("load", LoadSpec.__dataclass_fields__, value, "{path: /predict, rate: 5}")
    if isinstance(fields.get("body"), str):
        fields["body"] = fields["body"].encode()
    if "thresholds_ms" in fields:
        fields["thresholds_ms"] = tuple(fields["thresholds_ms"])
    return LoadSpec(**fields)


def _judge_config(value: Any) -> JudgeConfig | None:
    """``judge`` as given: a :class:`JudgeConfig`, or a mapping of its fields."""
    if value is None or isinstance(value, JudgeConfig):
        return value
    fields = _fields("judge", JudgeConfig.__dataclass_fields__, value, "{alpha: 0.01}")
    try:
        return JudgeConfig(**fields)
    except ConfigError as exc:
        raise ConfigError.of((f"judge.{where}", what) for where, what in exc.problems) from None
