"""``crackseg-monitor status``, ``resources`` and ``export``: reading what the monitor knows.

>>> # crackseg-monitor status --url http://127.0.0.1:8080
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crackseg.utils.deployment.service.cli.support import (
    COLORS,
    ConfigOpt,
    JsonOpt,
    TokenOpt,
    Unreachable,
    UrlOpt,
    api_list,
    fail,
    format_uptime,
    load_or_fail,
    offline_monitor,
    out,
    parse_since,
    print_json,
    service_address,
    status_rows_from_store,
    styled,
    when,
)

__all__ = ["export", "resources", "status"]


def status(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deployments' status, response time, uptime and active alerts.

    Read from a running service's API (--url, else the -c file's server, else
    http://127.0.0.1:8080, where `make run` serves), or from the stored history (with -c)
    when none runs.
    """
    source = "service"
    base, tok = service_address(config, url, token)
    try:
        rows = api_list(base, "/api/v1/deployments", "deployments", token=tok)
    except Unreachable as exc:
        if config is None:
            fail(
                f"{exc}; start one (make run), name its address with --url URL, or read a "
                "configuration's stored history with -c FILE"
            )
        if url is not None:
            raise
        rows = status_rows_from_store(load_or_fail(config))
        source = "store"
    if as_json:
        print_json({"source": source, "deployments": rows})
        return
    table = Table(title=f"Deployments ({'live' if source == 'service' else 'from history'})")
    for col in ("deployment", "status", "response", "uptime 24h", "checks", "last check", "alerts"):
        table.add_column(
            col, justify="right" if col in ("response", "uptime 24h", "checks") else "left"
        )
    for r in rows:
        st = r.get("health_status", "unknown")
        uptime = r.get("uptime_24h_percent", r.get("uptime_percent"))
        rt = r.get("response_time_ms")
        alerts = ", ".join(a.get("alert_type", "?") for a in r.get("active_alerts") or ())
        table.add_row(
            str(r["deployment_id"]),
            styled(str(st), COLORS.get(st, "white")),
            f"{rt:.1f} ms" if rt is not None else "-",
            format_uptime(uptime),
            str(r.get("total_checks", "-")),
            when(r.get("last_check")),
            styled(alerts, "red") if alerts else "-",
        )
    out.print(table)


def resources(
    process: Annotated[
        str | None, typer.Option(help="Process name (else the whole machine).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """CPU, memory, disk and network use of the machine or of one process."""
    from crackseg.utils.deployment.monitoring.resources.psutil_monitor import DefaultResourceMonitor

    mon = DefaultResourceMonitor()
    sample = mon.get_process_metrics if process else mon.get_system_metrics
    args = (process,) if process else ()
    sample(*args)  # rates need two samples: the first sets the baseline
    time.sleep(0.5)
    m = sample(*args)
    if as_json:
        print_json(m.to_dict())
        return
    table = Table(title=f"Resources of {process!r}" if process else "Resources of this machine")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("CPU", f"{m.cpu_usage_percent:.1f} %")
    table.add_row("memory", f"{m.memory_usage_mb:.1f} MB")
    table.add_row("disk", f"{m.disk_usage_percent:.1f} %")
    table.add_row("network", f"{m.network_io_mbps:.3f} Mbps")
    if m.process_count is not None:
        table.add_row("processes", f"{m.process_count} (pids {', '.join(map(str, m.pids))})")
    out.print(table)


def export(
    path: Annotated[Path, typer.Argument(help="JSON file to write.")],
    config: ConfigOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Only data after this: 2h, 7d, an ISO time or Unix time.")
    ] = None,
) -> None:
    """Export the stored history (health, resources, alerts, configuration) as JSON."""
    cfg = load_or_fail(config)
    start = parse_since(since)
    monitor = offline_monitor(cfg)
    try:
        written = monitor.export_monitoring_data(path, since=start)
    finally:
        monitor.close()
    out.print(f"wrote {written} ({written.stat().st_size:,} bytes)", markup=False)
