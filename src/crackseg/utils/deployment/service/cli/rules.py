"""``crackseg-monitor rules -c FILE``: Prometheus alerting rules equivalent to the monitor's.

For teams that move alert evaluation into Prometheus. Each deployment gets one rule per
alert type the monitor would judge for it, over the series this service exports
(``probe_success``, ``probe_duration_seconds``, ``crackseg_*``), with its own thresholds
and counts:

- the monitor fires at the ``failure_threshold``-th failed check in a row, i.e.
  ``(failure_threshold - 1) x check_interval`` after the first one: that is the rule's
  ``for:`` (Prometheus fires once the condition has held that long);
- it resolves at the ``success_threshold``-th passing check: ``keep_firing_for:
  (success_threshold - 1) x check_interval``;
- rules are grouped by check interval and each group is evaluated at that interval.

With Prometheus scraping at the check interval, an alert then fires and resolves at the
same check as the monitor's (``promtool test rules`` proves it in the tests); a slower
scrape adds up to one scrape interval. Flapping detection and repeat notifications
have no Prometheus rule (Alertmanager's ``repeat_interval`` plays the second part).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from crackseg.utils.deployment.files import atomic_write
from crackseg.utils.deployment.monitoring.rules import DEFAULT_THRESHOLDS
from crackseg.utils.deployment.monitoring.tracked import MIN_ERROR_RATE_SAMPLES
from crackseg.utils.deployment.service.cli.support import ConfigOpt, load_or_fail
from crackseg.utils.deployment.service.config import DeploymentSettings, MonitorConfig

__all__ = ["build_rules", "prom_duration", "rules"]


def prom_duration(seconds: float) -> str:
    """A Prometheus duration: ``"30s"``, ``"1500ms"``, ``"0s"``."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _selector(dep_id: str) -> str:
    # json.dumps quotes and escapes like a PromQL string literal for every id we accept.
    return "{deployment_id=" + json.dumps(dep_id) + "}"


def _rule(
    alert: str, expr: str, d: DeploymentSettings, holds: str, severity: str, n: int, s: int
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "alert": alert,
        "expr": expr,
        "for": prom_duration((n - 1) * d.check_interval),
        # deployment_id is the series' too; naming it keeps the rules distinct for promtool.
        "labels": {"deployment_id": d.id, "severity": severity},
        "annotations": {
            "summary": f"{alert} on {{{{ $labels.deployment_id }}}}",
            "description": f"{holds} (value {{{{ $value }}}})",
        },
    }
    if s > 1:
        rule["keep_firing_for"] = prom_duration((s - 1) * d.check_interval)
    return rule


def _deployment_rules(cfg: MonitorConfig, d: DeploymentSettings) -> list[dict[str, Any]]:
    n = d.failure_threshold or cfg.monitor.failure_threshold
    s = d.success_threshold or cfg.monitor.success_threshold
    limits = {**DEFAULT_THRESHOLDS, **cfg.alert_thresholds.as_dict(), **d.thresholds.as_dict()}
    sel = _selector(d.id)
    by = "max by (deployment_id)"
    status = 'crackseg_deployment_status{status="degraded",' + sel[1:]
    out = [
        # Degraded counts as up (probe_success 1), yet the monitor warns of it on the same
        # rule, at warning severity; this is that half.
        _rule(
            "health_check_failed", f"{by} ({status}) == 1", d,
            "health check degraded", "warning", n, s,
        ),
        _rule(
            "health_check_failed", f"{by} (probe_success{sel}) == 0", d,
            "health check failing", "critical", n, s,
        ),
        _rule(
            "high_response_time",
            # The monitor judges the speed of passing checks only.
            f"{by} (probe_duration_seconds{sel}) > {limits['response_time_ms'] / 1000:g}"
            f" and on (deployment_id) {by} (probe_success{sel}) == 1",
            d, f"response time above {limits['response_time_ms']:g} ms", "warning", n, s,
        ),
    ]  # fmt: skip
    window = prom_duration(cfg.monitor.error_rate_window)
    out.append(
        _rule(
            "high_error_rate",
            f"(1 - {by} (avg_over_time(probe_success{sel}[{window}]))) * 100"
            f" > {limits['error_rate_percent']:g}"
            f" and on (deployment_id) {by} (count_over_time(probe_success{sel}[{window}]))"
            f" >= {MIN_ERROR_RATE_SAMPLES}",
            d, f"error rate above {limits['error_rate_percent']:g}%", "warning", n, s,
        )
    )  # fmt: skip
    if d.process_name:
        # Process facts are judged only for a named process, as the monitor does.
        mem = limits["memory_usage_mb"] * 1024 * 1024
        # The monitor's CPU % is the use since its previous sample: irate() of the counter,
        # over a range that holds two scrapes.
        cpu_range = prom_duration(max(4 * d.check_interval, 60.0))
        out += [
            _rule(
                "high_cpu_usage",
                f"{by} (irate(crackseg_process_cpu_seconds_total{sel}[{cpu_range}])) * 100"
                f" > {limits['cpu_usage_percent']:g}",
                d, f"CPU above {limits['cpu_usage_percent']:g}%", "warning", n, s,
            ),
            _rule(
                "high_memory_usage",
                f"{by} (crackseg_process_resident_memory_bytes{sel}) > {mem:g}",
                d, f"memory above {limits['memory_usage_mb']:g} MB", "warning", n, s,
            ),
            _rule(
                "process_not_running", f"{by} (crackseg_process_running{sel}) == 0",
                d, f"process {d.process_name!r} not running", "critical", n, s,
            ),
        ]  # fmt: skip
    if d.check.url.startswith(("https:", "grpcs:")) or (d.check.type == "tcp" and d.tls):
        days = limits["certificate_expiry_days"]
        out.append(
            _rule(
                "certificate_expiring",
                f"({by} (probe_ssl_earliest_cert_expiry{sel}) - time()) / 86400 < {days:g}",
                d, f"TLS certificate expires within {days:g} days", "warning", n, s,
            )
        )  # fmt: skip
    return out


def build_rules(cfg: MonitorConfig) -> dict[str, Any]:
    """The rule file's content: one group per check interval, evaluated at that interval."""
    groups: dict[float, list[dict[str, Any]]] = {}
    for d in cfg.deployments:
        groups.setdefault(d.check_interval, []).extend(_deployment_rules(cfg, d))
    return {
        "groups": [
            {
                "name": f"crackseg-monitor-{prom_duration(interval)}",
                "interval": prom_duration(interval),
                "rules": rules,
            }
            for interval, rules in sorted(groups.items())
        ]
    }


def rules(
    config: ConfigOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (else to stdout).")
    ] = None,
) -> None:
    """Write Prometheus alerting rules equivalent to the configured thresholds and counts.

    Check them with ``promtool check rules FILE`` and load them with ``rule_files:``.
    """
    cfg = load_or_fail(config)
    text = f"# Generated by crackseg-monitor rules from {cfg.source}.\n" + yaml.safe_dump(
        build_rules(cfg), sort_keys=False, width=1000
    )
    if output is None:
        sys.stdout.write(text)
        return
    atomic_write(output, text)
