"""``crackseg-monitor``: the service, one-off checks, status, history and rollouts from a shell.

Exit codes: 0 success (``check``: healthy, and degraded unless ``--no-degraded-ok``), 1
failure (``check``: unhealthy), 2 usage errors (as with every click program), 130
interrupted. ``check`` never exits 2 for a health answer: Docker reserves it.
Errors print one line (``error: ...``) and no traceback; ``CRACKSEG_DEBUG=1`` shows it.

>>> # crackseg-monitor check http://127.0.0.1:8080/health --timeout 2
>>> # crackseg-monitor run -c examples/monitor.yaml
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crackseg.utils.deployment.errors import ConfigError, CrackSegDeploymentError
from crackseg.utils.deployment.service.cli.deploy import deploy, rollback
from crackseg.utils.deployment.service.cli.inspect import export, resources, status
from crackseg.utils.deployment.service.cli.rules import rules
from crackseg.utils.deployment.service.cli.schema import schema
from crackseg.utils.deployment.service.cli.silence import silence_app
from crackseg.utils.deployment.service.cli.support import (
    COLORS,
    CliError,
    ConfigOpt,
    JsonOpt,
    err,
    fail,
    load_or_fail,
    offline_monitor,
    out,
    parse_since,
    print_json,
    setup_logging,
    styled,
    when,
)
from crackseg.utils.deployment.service.cli.top_options import top_options
from crackseg.utils.deployment.service.config import load_config

__all__ = [
    "app",
    "check",
    "demo",
    "deploy",
    "export",
    "history",
    "main",
    "resources",
    "rollback",
    "run",
    "status",
    "validate",
    "wait",
]

app = typer.Typer(
    name="crackseg-monitor",
    help="Monitor deployments' health, run the monitoring service, and drive safe rollouts.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(silence_app, name="silence")
app.command()(rules)
app.command()(deploy)
app.command()(rollback)
app.command()(schema)


app.callback()(top_options)


# -------------------------------------------------------------------- commands
@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")],
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error (else the file's).")
    ] = None,
) -> None:
    """Run the service: monitor, SQLite history and web server.

    SIGTERM or SIGINT stop it cleanly (the store is flushed); SIGHUP reloads the file.
    """
    from crackseg.utils.deployment.service.app import MonitorService

    cfg = load_config(config)
    setup_logging(log_level or cfg.log_level)
    MonitorService(cfg, config_path=config, gc_policy=True).run()


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Configuration file to check.")],
    explain: Annotated[
        bool, typer.Option("--explain", help="Show each deployment's check as it will run.")
    ] = False,
) -> None:
    """Check a configuration file (including alert handlers) without starting anything.

    ``--explain`` prints each deployment's check as compiled: type, URL, method and
    conditions (a preset's expansion), with secrets masked.
    """
    from crackseg.utils.deployment.service.app import build_handlers
    from crackseg.utils.deployment.service.config import ConfigFileError

    try:
        cfg = load_config(file)
        for handler in build_handlers(cfg.handlers):
            handler.close()
    except ConfigFileError as exc:
        n = len(exc.problems)
        err.print(f"{file}: {n} problem{'s' if n != 1 else ''}", markup=False)
        for where, what in exc.problems:
            err.print(f"  {where}: {what}", markup=False)
        raise typer.Exit(1) from None
    out.print(
        f"{file}: OK ({len(cfg.deployments)} deployment(s), {len(cfg.handlers)} handler(s), "
        f"server {cfg.server.host}:{cfg.server.port}, store {cfg.store_path()})",
        markup=False,
    )
    if explain:
        for d in cfg.deployments:
            out.print(json.dumps({"id": d.id, **d.check.explain()}, indent=2), markup=False)


@app.command()
def check(
    url: Annotated[str, typer.Argument(help="Health endpoint, e.g. http://127.0.0.1:8080/health")],
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds before giving up.")] = 10.0,
    degraded_ok: Annotated[
        bool,
        typer.Option("--degraded-ok/--no-degraded-ok", help="Whether degraded exits 0 (else 1)."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """One health check. Exit 0 healthy, 1 unhealthy; degraded exits 0 with --degraded-ok
    (the default), 1 with --no-degraded-ok. A Docker HEALTHCHECK or a Kubernetes exec probe:
    ``crackseg-monitor check http://127.0.0.1:8080/health --timeout 3``."""
    from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker

    if not url.startswith(("http://", "https://")):
        fail(f"URL: must start with http:// or https://, got {url!r}")
    checker = DefaultHealthChecker()
    try:
        result = checker.check_health(url, timeout)
    finally:
        checker.close()
    if as_json:
        print_json(result.to_dict())
    else:
        code = result.details.get("http_status")
        line = styled(result.status, COLORS.get(result.status, "white"))
        line.append(f" {result.response_time_ms:.1f} ms")
        if code is not None:
            line.append(f" HTTP {code}")
        if result.error_message:
            line.append(f" - {result.error_message}")
        out.print(line)
    ok = result.status == "healthy" or (result.status == "degraded" and degraded_ok)
    raise typer.Exit(0 if ok else 1)


@app.command()
def wait(
    url: Annotated[str, typer.Argument(help="Health endpoint to wait for.")],
    max_wait: Annotated[
        float, typer.Option(min=0, help="Give up after this many seconds.")
    ] = 300.0,
    interval: Annotated[float, typer.Option(min=0.01, help="Seconds between checks.")] = 5.0,
) -> None:
    """Wait until URL is healthy, showing a spinner and the elapsed time. Exit 0 or 1."""
    from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker

    if not url.startswith(("http://", "https://")):
        fail(f"URL: must start with http:// or https://, got {url!r}")
    checker = DefaultHealthChecker()
    start = time.monotonic()
    deadline = start + max_wait
    last = "no answer yet"
    try:
        with err.status(f"waiting for {url}") as spinner:
            while True:
                left = deadline - time.monotonic()
                result = checker.check_health(url, max(0.05, min(interval, left, 30.0)))
                elapsed = time.monotonic() - start
                if result.success:
                    break
                last = f"{result.status}: {result.error_message or ''}".strip(": ")
                spinner.update(f"waiting for {url} - {elapsed:.1f}s elapsed - last: {last}")
                if time.monotonic() + interval > deadline:
                    err.print(f"not healthy after {elapsed:.1f}s (last: {last})", markup=False)
                    raise typer.Exit(1)
                time.sleep(interval)
    finally:
        checker.close()
    line = styled("healthy", "green")
    line.append(f" after {elapsed:.1f}s ({result.response_time_ms:.1f} ms)")
    out.print(line)


# status, resources and export live in cli/inspect.py; registered here to keep --help's order.
for _command in (status, resources, export):
    app.command()(_command)


@app.command()
def history(
    deployment: Annotated[
        str | None, typer.Argument(help="Monitored deployment (else: rollouts and alerts).")
    ] = None,
    config: ConfigOpt = None,
    since: Annotated[str | None, typer.Option(help="2h, 7d, an ISO time or Unix time.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest rows to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Stored health checks of one deployment, or the rollout records and recent alerts."""
    cfg = load_or_fail(config)
    start = parse_since(since)
    monitor = offline_monitor(cfg)
    try:
        if deployment is not None:
            if deployment not in {d.id for d in cfg.deployments}:
                fail(f"{deployment!r} is not a deployment of {cfg.source}")
            rows = [
                r.to_dict()
                for r in monitor.get_health_history(deployment, since=start, limit=limit)
            ]
            alerts = [
                a.to_dict() for a in monitor.get_alert_history(deployment, since=start, limit=limit)
            ]
            records: list[dict[str, Any]] = []
        else:
            rows = []
            alerts = [
                a.to_dict() for a in monitor.get_alert_history(None, since=start, limit=limit)
            ]
            records = [m.to_dict() for m in monitor.store.deployment_records()][-limit:]
    finally:
        monitor.close()
    if as_json:
        print_json({"health": rows, "alerts": alerts, "deployments": records})
        return
    if deployment is not None:
        table = Table(title=f"Health checks of {deployment} (newest last)")
        for col in ("time", "status", "response", "error"):
            table.add_column(col)
        for r in rows:
            st = r["status"]
            table.add_row(
                when(r["timestamp"]),
                styled(str(st), COLORS.get(st, "white")),
                f"{r['response_time_ms']:.1f} ms",
                r.get("error_message") or "",
            )
        out.print(table)
    else:
        table = Table(title="Rollouts")
        for col in ("deployment", "artifact", "version", "strategy", "state", "started"):
            table.add_column(col)
        for m in records:
            table.add_row(
                m["deployment_id"], m["artifact_id"], str(m.get("version") or "-"),
                m["strategy"], m["state"], when(m["start_time"]),
            )  # fmt: skip
        out.print(table)
    if alerts:
        table = Table(title="Alert events")
        for col in ("time", "deployment", "alert", "state", "message"):
            table.add_column(col)
        for a in alerts:
            table.add_row(
                when(a["timestamp"]), a["deployment_id"], a["alert_type"], a["state"], a["message"]
            )
        out.print(table)


@app.command()
def demo(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Status page port (0: any free one).")
    ] = 8080,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (else Ctrl-C).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
) -> None:
    """The whole product at once: sample services, the monitor, its page and real rollouts.

    Starts healthy, slow, degraded, flapping and down services, the monitoring service and its
    status page on --port, and (with nginx installed) blue-green and canary rollouts of the
    sample service through nginx; prints the page's address and what to try next, and runs
    until Ctrl-C or SIGTERM (or --duration seconds).
    """
    from crackseg.utils.deployment.service.demo import run_demo

    setup_logging(log_level)
    run_demo(port=port, duration=duration)


def main() -> None:
    """Entry point of ``crackseg-monitor``."""
    debug = os.environ.get("CRACKSEG_DEBUG", "") not in ("", "0")
    try:
        app()
    except CliError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.code)
    except ConfigError as exc:
        lines = str(exc).splitlines()
        err.print(
            f"error: {lines[0]}" if len(lines) == 1 else "error: invalid configuration",
            markup=False,
        )
        for line in lines[1:] if len(lines) == 1 else lines:
            err.print(f"  {line}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except (CrackSegDeploymentError, OSError) as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        err.print(
            f"error: {type(exc).__name__}: {exc} (CRACKSEG_DEBUG=1 shows the traceback)",
            markup=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
