"""The per-deployment families of ``/metrics``, built from the monitor's status dicts.

One pass over the statuses fills plain rows (:class:`~.text_family.TextFamily`); the
series are listed in :mod:`.metrics`. Labels stay bounded: ``deployment_id``, the health
``status`` (four values), the uptime ``window`` (two) and a firing alert's type and severity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from crackseg.utils.deployment.models import HealthStatus
from crackseg.utils.deployment.service.text_family import TextFamily

__all__ = ["CpuSeconds", "UptimeSource", "deployment_families", "number"]

_STATUSES = tuple(st.value for st in HealthStatus)
_UNKNOWN = HealthStatus.UNKNOWN.value
_MIB = 1024.0 * 1024.0


class UptimeSource(Protocol):
    """What the families read uptime from (:class:`~..monitoring.uptime.UptimeTracker`)."""

    def uptime_many(self, deployment_ids: list[str]) -> dict[str, list[float | None]]: ...


def number(value: Any) -> float | None:
    """``value`` as a float when it is a number (bools count 0/1), else None."""
    if type(value) is float:
        return value  # the common case first: called ~10 times per deployment a scrape
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def _ids_and_values() -> tuple[list[str], list[float]]:
    return [], []


#: ``(deployment_id, pids) -> CPU seconds`` of its processes, or None (the counter of
#: :class:`~.resource_counters.ProcessCpuSeconds`).
CpuSeconds = Callable[[str, list[int]], float | None]


def deployment_families(
    statuses: Mapping[str, Mapping[str, Any]],
    uptime: UptimeSource | None,
    cpu_seconds: CpuSeconds | None = None,
) -> tuple[list[TextFamily], int]:
    """Every per-deployment family over ``statuses`` and the number of firing alerts.

    Filled as columns (plain lists of ids and of floats, no object per sample: see
    :class:`~.text_family.TextFamily`); a family with a row for every deployment shares
    the list of ids.
    """
    ids = list(statuses)
    ts_c, err_c, deg_c = (_ids_and_values() for _ in range(3))
    run_c, cpu_c, mem_c = (_ids_and_values() for _ in range(3))
    fails_v: list[float] = []
    checks_v: list[float] = []
    busy_v: list[float] = []
    status_v: list[float] = []
    alert_c: tuple[list[str], list[str], list[str]] = ([], [], [])
    status_rows = {h: [1.0 if h == st else 0.0 for st in _STATUSES] for h in _STATUSES}
    unknown_row = status_rows[_UNKNOWN]
    no_row = [0.0] * len(_STATUSES)  # a status outside the four: none of them is 1
    for dep_id, s in statuses.items():
        # Unrolled, one plain append per value: this loop runs for every deployment.
        health = s.get("health_status")
        status_v.extend(status_rows.get(health, no_row) if health else unknown_row)
        v = number(s.get("last_check"))
        if v is not None:
            ts_c[0].append(dep_id)
            ts_c[1].append(v)
        v = number(s.get("error_rate_percent"))
        if v is not None:
            err_c[0].append(dep_id)
            err_c[1].append(v / 100.0)
        v = number(s.get("degraded_percent"))
        if v is not None:
            deg_c[0].append(dep_id)
            deg_c[1].append(v / 100.0)
        fails_v.append(number(s.get("consecutive_failures")) or 0.0)
        checks_v.append(number(s.get("total_checks")) or 0.0)
        busy_v.append(number(s.get("busy_checks")) or 0.0)
        proc = s.get("process_running")
        if proc is not None:
            run_c[0].append(dep_id)
            run_c[1].append(1.0 if proc else 0.0)
        res = s.get("resource_metrics")
        if res:
            pids = res.get("pids")
            if cpu_seconds is not None and pids:
                v = cpu_seconds(dep_id, pids)
                if v is not None:
                    cpu_c[0].append(dep_id)
                    cpu_c[1].append(v)
            v = number(res.get("memory_usage_mb"))
            if v is not None:
                mem_c[0].append(dep_id)
                mem_c[1].append(v * _MIB)
        alerts = s.get("active_alerts")
        if alerts:
            for a in alerts:
                alert_c[0].append(dep_id)
                alert_c[1].append(str(a.get("alert_type", "")))
                alert_c[2].append(str(a.get("severity", "")))
    dep = ["deployment_id"]

    def fam(
        name: str, doc: str, col: tuple[list[str], list[float]], typ: str = "gauge"
    ) -> TextFamily:
        return TextFamily(name, doc, typ, dep, [col[0]], col[1])

    status_ids = [d for d in ids for _ in _STATUSES]
    status_names = list(_STATUSES) * len(ids)
    families = [
        TextFamily(
            "crackseg_deployment_status", "1 for the deployment's current health status",
            "gauge", ["deployment_id", "status"], [status_ids, status_names], status_v,
        ),
        fam("crackseg_probe_last_check_timestamp_seconds", "When the last check ran", ts_c),
        fam("crackseg_consecutive_failures", "Failed checks in a row", (ids, fails_v)),
        fam("crackseg_error_rate_ratio", "Failed share of checks in the error-rate window", err_c),
        fam("crackseg_degraded_ratio", "Degraded share of checks since monitoring began", deg_c),
        fam("crackseg_deployment_checks", "Checks done for the deployment", (ids, checks_v), "counter"),
        fam(
            "crackseg_deployment_busy_checks",
            "Checks skipped because a blocking custom checker still ran the previous one",
            (ids, busy_v), "counter",
        ),
        _uptime_family(ids, uptime),
        fam("crackseg_process_running", "1 if the deployment's process runs", run_c),
        fam(
            "crackseg_process_cpu_seconds",
            "CPU time (user and system) used by the deployment's processes", cpu_c, "counter",
        ),
        fam(
            "crackseg_process_resident_memory_bytes",
            "Memory (RSS) of the deployment's processes", mem_c,
        ),
        TextFamily(
            "crackseg_alert_active", "1 for each firing alert", "gauge",
            ["deployment_id", "alert_type", "severity"], list(alert_c), [1.0] * len(alert_c[0]),
        ),
    ]  # fmt: skip
    return families, len(alert_c[0])


def _uptime_family(ids: list[str], uptime: UptimeSource | None) -> TextFamily:
    family = TextFamily(
        "crackseg_uptime_ratio",
        "Share of checks up (healthy or degraded) over the window",
        "gauge",
        ["deployment_id", "window"],
    )
    if uptime is None:
        return family
    dep_col, window_col = family.columns
    values = family.values
    for window, pcts in uptime.uptime_many(ids).items():
        for dep_id, pct in zip(ids, pcts, strict=True):
            if pct is not None:
                dep_col.append(dep_id)
                window_col.append(window)
                values.append(pct / 100.0)
    return family
