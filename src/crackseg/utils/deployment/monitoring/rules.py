"""Alert rules and their lifecycle: fire once, repeat rarely, resolve once.

Each rule judges one observation of a deployment (a check result plus resource facts) and
answers "condition holds", "condition clear" or "cannot tell" (no data). The lifecycle turns
those answers into :class:`~..models.AlertEvent` transitions: firing after
``failure_threshold`` consecutive holds, a repeat at most every ``repeat_interval`` seconds
while it keeps holding, resolved after ``success_threshold`` consecutive clears.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from crackseg.utils.deployment.models import (
    AlertEvent,
    AlertSeverity,
    AlertState,
    HealthCheckResult,
    HealthStatus,
)
from crackseg.utils.deployment.models import ResourceMetrics as _Metrics
from crackseg.utils.deployment.monitoring.uptime import is_up

__all__ = [
    "DEFAULT_THRESHOLDS",
    "RULES",
    "AlertTracker",
    "LifecycleSettings",
    "Observation",
    "Rule",
    "RuleVerdict",
]


DEFAULT_THRESHOLDS: dict[str, float] = {
    "response_time_ms": 1000.0,
    "cpu_usage_percent": 90.0,
    "memory_usage_mb": 2048.0,
    "error_rate_percent": 5.0,
    "certificate_expiry_days": 14.0,
}


@dataclass(frozen=True, slots=True)
class LifecycleSettings:
    """How many holds fire an alert, how many clears resolve it, how often it repeats.

    ``rule_repeat_intervals`` overrides ``repeat_interval`` per alert type.
    """

    failure_threshold: int = 3
    success_threshold: int = 2
    repeat_interval: float = 3600.0
    rule_repeat_intervals: Mapping[str, float] = field(default_factory=dict)

    def repeat_for(self, alert_type: str) -> float:
        return self.rule_repeat_intervals.get(alert_type, self.repeat_interval)


@dataclass(slots=True)
class Observation:
    """What the rules judge after one check of a deployment."""

    result: HealthCheckResult
    metrics: _Metrics | None
    process_name: str | None
    process_running: bool | None
    consecutive_failures: int
    error_rate_percent: float | None


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    holds: bool
    value: float | None
    threshold: float | None
    message: str
    severity: str


class Rule(ABC):
    """One alert rule: a cheap judgement on every check, its words only on a transition.

    ``judge`` answers True (the condition holds), False (clear) or None (cannot tell);
    ``verdict`` says it with value, threshold, message and severity, and is called only when
    an alert fires, repeats or resolves. Most checks of a healthy deployment change nothing,
    and building messages for them was most of the rules' cost (issue 14).
    """

    __slots__ = ()

    @abstractmethod
    def judge(self, obs: Observation, t: Mapping[str, float]) -> bool | None: ...

    @abstractmethod
    def verdict(self, obs: Observation, t: Mapping[str, float]) -> RuleVerdict: ...


def _above(subject: str, v: float, limit: float, unit: str) -> RuleVerdict:
    """The warning verdict of a measurement ``v`` against its upper ``limit``, worded the
    same for every such rule ("<subject> 12.0 ms above 10 ms" / "... back to ...")."""
    if v > limit:
        text = f"{subject} {v:.1f}{unit} above {limit:g}{unit}"
    else:
        text = f"{subject} back to {v:.1f}{unit} (threshold {limit:g}{unit})"
    return RuleVerdict(v > limit, v, limit, text, AlertSeverity.WARNING)


class _Health(Rule):
    __slots__ = ()

    def judge(self, obs: Observation, t: Mapping[str, float]) -> bool | None:
        return not obs.result.success

    def verdict(self, obs: Observation, t: Mapping[str, float]) -> RuleVerdict:
        r = obs.result
        if r.success:
            return RuleVerdict(
                False, 0.0, None, "health check passing again", AlertSeverity.CRITICAL
            )
        severity = (
            AlertSeverity.WARNING if r.status == HealthStatus.DEGRADED else AlertSeverity.CRITICAL
        )
        return RuleVerdict(
            True,
            float(obs.consecutive_failures),
            None,
            f"health check {r.status}: {r.error_message or 'no detail'} "
            f"({obs.consecutive_failures} consecutive)",
            severity,
        )


class _ResponseTime(Rule):
    __slots__ = ()

    def judge(self, obs: Observation, t: Mapping[str, float]) -> bool | None:
        limit = t.get("response_time_ms")
        if limit is None or not is_up(obs.result.status):
            return None  # a check without an answer says nothing about speed (uptime.py)
        return obs.result.response_time_ms > limit

    def verdict(self, obs: Observation, t: Mapping[str, float]) -> RuleVerdict:
        return _above("response time", obs.result.response_time_ms, t["response_time_ms"], " ms")


class _ProcessMetric(Rule):
    __slots__ = ("key", "label", "unit")

    def __init__(self, key: str, label: str, unit: str) -> None:
        self.key, self.label, self.unit = key, label, unit

    def judge(self, obs: Observation, t: Mapping[str, float]) -> bool | None:
        limit = t.get(self.key)
        # Only a named process is judged: the whole machine's memory is not one service's.
        if limit is None or obs.metrics is None or not obs.process_name:
            return None
        return float(getattr(obs.metrics, self.key)) > limit

    def verdict(self, obs: Observation, t: Mapping[str, float]) -> RuleVerdict:
        v = float(getattr(obs.metrics, self.key))
        return _above(f"{self.label} of {obs.process_name}", v, t[self.key], self.unit)


class _ErrorRate(Rule):
    __slots__ = ()

    def judge(self, obs: Observation, t: Mapping[str, float]) -> bool | None:
        limit = t.get("error_rate_percent")
        if limit is None or obs.error_rate_percent is None:
            return None
        return obs.error_rate_percent > limit

    def verdict(self, obs: Observation, t: Mapping[str, float]) -> RuleVerdict:
        v = float(obs.error_rate_percent or 0.0)
        return _above("error rate", v, t["error_rate_percent"], "%")


class _ProcessRunning(Rule):
    __slots__ = ()

    def judge(self, obs: Observation, t: Mapping[str, float]) -> bool | None:
        if not obs.process_name or obs.process_running is None:
            return None
        return not obs.process_running

    def verdict(self, obs: Observation, t: Mapping[str, float]) -> RuleVerdict:
        running = bool(obs.process_running)
        return RuleVerdict(
            not running,
            1.0 if running else 0.0,
            None,
            f"process {obs.process_name!r} is {'running again' if running else 'not running'}",
            AlertSeverity.CRITICAL,
        )


class _CertificateExpiring(Rule):
    """The earliest certificate of the chain a TLS check saw ends within the limit (days).

    Judged on wall-clock time: a certificate's end is a calendar date. A check that saw no
    certificate (plain HTTP, no answer) cannot tell, so a failing TLS handshake neither
    fires nor resolves it.
    """

    __slots__ = ()

    def judge(self, obs: Observation, t: Mapping[str, float]) -> bool | None:
        limit = t.get("certificate_expiry_days")
        not_after = obs.result.details.get("cert_not_after")
        if limit is None or not_after is None:
            return None
        return float(not_after) - time.time() < limit * 86_400.0

    def verdict(self, obs: Observation, t: Mapping[str, float]) -> RuleVerdict:
        limit = t["certificate_expiry_days"]
        days = (float(obs.result.details["cert_not_after"]) - time.time()) / 86_400.0
        if days < limit:
            text = (
                f"TLS certificate expires in {days:.1f} days (threshold {limit:g} days)"
                if days > 0
                else f"TLS certificate expired {-days:.1f} days ago"
            )
        else:
            text = f"TLS certificate valid for {days:.1f} more days (threshold {limit:g} days)"
        severity = AlertSeverity.CRITICAL if days < 1 else AlertSeverity.WARNING
        return RuleVerdict(days < limit, round(days, 2), limit, text, severity)


RULES: dict[str, Rule] = {
    "health_check_failed": _Health(),
    "high_response_time": _ResponseTime(),
    "high_cpu_usage": _ProcessMetric("cpu_usage_percent", "CPU", "%"),
    "high_memory_usage": _ProcessMetric("memory_usage_mb", "memory", " MB"),
    "high_error_rate": _ErrorRate(),
    "process_not_running": _ProcessRunning(),
    "certificate_expiring": _CertificateExpiring(),
}


@dataclass(slots=True)
class _RuleState:
    holds: int = 0
    clears: int = 0
    firing: AlertEvent | None = None
    last_notified: float = 0.0


class AlertTracker:
    """The alert lifecycle of one deployment. Not thread-safe: its owner serialises calls."""

    __slots__ = ("_states", "deployment_id")

    def __init__(self, deployment_id: str) -> None:
        self.deployment_id = deployment_id
        self._states: dict[str, _RuleState] = {}

    def evaluate(
        self,
        obs: Observation,
        thresholds: Mapping[str, float],
        settings: LifecycleSettings,
        now_mono: float,
        now_wall: float,
    ) -> list[AlertEvent]:
        """Judge ``obs`` by every rule; return the transitions to record and notify."""
        events: list[AlertEvent] = []
        states = self._states
        for alert_type, rule in RULES.items():
            holds = rule.judge(obs, thresholds)
            if holds is None:
                continue
            st = states.get(alert_type)
            if st is None:
                if not holds:
                    continue  # nothing to track until something goes wrong
                st = states[alert_type] = _RuleState()
            event = self._step(alert_type, st, holds, rule, obs, thresholds, settings,
                               now_mono, now_wall)  # fmt: skip
            if event is not None:
                events.append(event)
            if st.firing is None and st.holds == 0:
                del states[alert_type]
        return events

    def _step(
        self,
        alert_type: str,
        st: _RuleState,
        holds: bool,
        rule: Rule,
        obs: Observation,
        thresholds: Mapping[str, float],
        settings: LifecycleSettings,
        now_mono: float,
        now_wall: float,
    ) -> AlertEvent | None:
        if holds:
            st.holds += 1
            st.clears = 0
            if st.firing is None:
                if st.holds < settings.failure_threshold:
                    return None
                started_at, repeat = now_wall, False
            elif now_mono - st.last_notified < settings.repeat_for(alert_type):
                return None
            else:
                started_at, repeat = st.firing.started_at, True
            v = rule.verdict(obs, thresholds)
            st.last_notified = now_mono
            st.firing = AlertEvent(
                self.deployment_id,
                alert_type,
                str(v.severity),
                AlertState.FIRING.value,
                v.message,
                v.value,
                v.threshold,
                started_at=started_at,
                timestamp=now_wall,
                repeat=repeat,
            )
            return st.firing
        st.holds = 0
        if st.firing is None:
            return None
        st.clears += 1
        if st.clears < settings.success_threshold:
            return None
        started = st.firing
        st.firing = None
        st.clears = 0
        v = rule.verdict(obs, thresholds)
        return AlertEvent(
            self.deployment_id,
            alert_type,
            started.severity,
            AlertState.RESOLVED.value,
            v.message,  # the clear verdict reads as resolved: "response time back to ..."
            v.value,
            v.threshold,
            started_at=started.started_at,
            timestamp=now_wall,
            resolved_at=now_wall,
        )

    def restore(self, firing: AlertEvent, last_notified: float) -> None:
        """Take back an alert that was firing before a restart or a re-add.

        ``last_notified`` (monotonic) schedules its next repeat; it keeps its ``started_at``.
        """
        self._states[firing.alert_type] = _RuleState(firing=firing, last_notified=last_notified)

    def open(self, firing: AlertEvent) -> None:
        """Track an alert raised outside the rules (flapping) with the same lifecycle."""
        self._states[firing.alert_type] = _RuleState(firing=firing)

    def close(self, alert_type: str) -> AlertEvent | None:
        """Stop tracking an alert raised by :meth:`open`; returns its firing event."""
        st = self._states.pop(alert_type, None)
        return st.firing if st is not None else None

    def firing(self, alert_type: str) -> AlertEvent | None:
        st = self._states.get(alert_type)
        return st.firing if st is not None else None

    @property
    def tracking(self) -> bool:
        """Whether any rule holds or fires now (False for nearly every healthy check)."""
        return bool(self._states)

    def firing_count(self) -> int:
        return sum(1 for st in self._states.values() if st.firing is not None)

    def active(self) -> list[AlertEvent]:
        """Alerts firing now."""
        return [st.firing for st in self._states.values() if st.firing is not None]

    def resolve_all(self, now_wall: float, reason: str) -> list[AlertEvent]:
        """Resolve every firing alert (the deployment stops being monitored)."""
        out = [
            AlertEvent(
                self.deployment_id,
                a.alert_type,
                a.severity,
                AlertState.RESOLVED.value,
                f"resolved: {reason}",
                None,
                a.threshold,
                started_at=a.started_at,
                timestamp=now_wall,
                resolved_at=now_wall,
            )
            for a in self.active()
        ]
        self._states.clear()
        return out
