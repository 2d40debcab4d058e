"""``crackseg-monitor``: the service, one-off checks, status, history and rollouts from a shell.

Exit codes: 0 success (``check``: healthy), 1 failure (``check``: unhealthy), 2 degraded
(``check`` only; usage errors also exit 2, as with every click program), 130 interrupted.
Errors print one line (``error: ...``) and no traceback; ``CRACKSEG_DEBUG=1`` shows it.

>>> # crackseg-monitor check http://127.0.0.1:8080/health --timeout 2
>>> # crackseg-monitor run -c examples/monitor.yaml
"""

from __future__ import annotations

import logging
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.table import Table

from .config import MonitorConfig, load_config, parse_duration
from .errors import ConfigError, CrackSegDeploymentError

__all__ = ["app", "main"]

app = typer.Typer(
    name="crackseg-monitor",
    help="Monitor deployments' health, run the monitoring service, and drive safe rollouts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
silence_app = typer.Typer(help="Silence alerts on a running service (through its API).")
app.add_typer(silence_app, name="silence")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
MAX_API_BYTES = 16 * 1024 * 1024
_COLORS = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "unknown": "dim"}

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Service configuration file.", envvar="CRACKSEG_MONITOR_CONFIG"
    ),
]
UrlOpt = Annotated[
    str | None, typer.Option("--url", help="Base URL of a running service's web server.")
]
TokenOpt = Annotated[
    str | None,
    typer.Option(help="API token (else the config's).", envvar="CRACKSEG_MONITOR_TOKEN"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class CliError(Exception):
    """An error shown to the user as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(CliError):
    """No service answers at the URL."""


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
    sys.stdout.flush()


def _load(path: Path | None) -> MonitorConfig:
    if path is None:
        fail("no configuration file: pass -c FILE (or set CRACKSEG_MONITOR_CONFIG)")
    return load_config(path)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    ago = time.time() - ts
    if ago < 120:
        return f"{ago:.0f}s ago"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_since(value: str | None) -> float | None:
    """A Unix time from ``1h`` (ago), ``2026-01-31T12:00`` (ISO) or ``1767225600`` (epoch)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None and number > 1e8:
        return number
    try:
        return time.time() - float(parse_duration(value))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"--since: expected a duration ago (30m, 2h, 7d), an ISO time or a Unix time, got {value!r}"
        )
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


# -------------------------------------------------------------------- API client
def api_request(
    base: str,
    path: str,
    *,
    token: str | None = None,
    method: str = "GET",
    body: Any = None,
    timeout: float = 5.0,
) -> Any:
    """Call a running service's JSON API; errors become :class:`CliError` with its message."""
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read(MAX_API_BYTES)
    except urllib.error.HTTPError as exc:
        try:
            detail = orjson.loads(exc.read(64 * 1024))
            message = detail.get("error") or exc.reason
            if detail.get("field"):
                message = f"{detail['field']}: {message}"
        except (orjson.JSONDecodeError, AttributeError):
            message = exc.reason
        if exc.code == 401:
            message = f"{message} (pass --token or set CRACKSEG_MONITOR_TOKEN)"
        raise CliError(f"{method} {path}: HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"no service answers at {base} ({reason})") from None
    return orjson.loads(raw) if raw else None


def _service(config: Path | None, url: str | None, token: str | None) -> tuple[str, str | None]:
    """Base URL and token of the service named by ``--url`` or the config's ``server``."""
    if url is not None:
        return url, token
    cfg = _load(config)
    host = cfg.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    tok = token or (cfg.server.token.get_secret_value() if cfg.server.token else None)
    return f"http://{host}:{cfg.server.port}", tok


# -------------------------------------------------------------------- commands
@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")],
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error (else the file's).")
    ] = None,
) -> None:
    """Run the service: monitor, SQLite history and web server. SIGTERM/SIGINT stop it,
    SIGHUP reloads the file."""
    from .service import MonitorService

    cfg = load_config(config)
    _setup_logging(log_level or cfg.log_level)
    MonitorService(cfg, config_path=config).run()


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Configuration file to check.")]) -> None:
    """Check a configuration file (including alert handlers) without starting anything."""
    from .config import ConfigFileError
    from .service import build_handlers

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


@app.command()
def check(
    url: Annotated[str, typer.Argument(help="Health endpoint, e.g. http://127.0.0.1:8080/health")],
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds before giving up.")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """One health check. Exit 0 healthy, 1 unhealthy, 2 degraded (a Docker HEALTHCHECK)."""
    from .http_checker import DefaultHealthChecker

    if not url.startswith(("http://", "https://")):
        fail(f"URL: must start with http:// or https://, got {url!r}")
    checker = DefaultHealthChecker()
    try:
        result = checker.check_health(url, timeout)
    finally:
        checker.close()
    if as_json:
        _print_json(result.to_dict())
    else:
        color = _COLORS.get(result.status, "white")
        code = result.details.get("http_status")
        line = f"[{color}]{result.status}[/] {result.response_time_ms:.1f} ms"
        if code is not None:
            line += f" HTTP {code}"
        if result.error_message:
            line += f" - {result.error_message}"
        out.print(line)
    raise typer.Exit({"healthy": 0, "degraded": 2}.get(result.status, 1))


@app.command()
def wait(
    url: Annotated[str, typer.Argument(help="Health endpoint to wait for.")],
    max_wait: Annotated[
        float, typer.Option(min=0, help="Give up after this many seconds.")
    ] = 300.0,
    interval: Annotated[float, typer.Option(min=0.01, help="Seconds between checks.")] = 5.0,
) -> None:
    """Wait until URL is healthy, showing a spinner and the elapsed time. Exit 0 or 1."""
    from .http_checker import DefaultHealthChecker

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
    out.print(f"[green]healthy[/] after {elapsed:.1f}s ({result.response_time_ms:.1f} ms)")


def _status_rows_from_store(cfg: MonitorConfig) -> list[dict[str, Any]]:
    from .sqlite_store import SQLiteStore

    path = cfg.store_path()
    if not path.exists():
        fail(f"no service answers and there is no history yet at {path}")
    store = SQLiteStore(str(path))
    rows: list[dict[str, Any]] = []
    try:
        day_ago = time.time() - 86400
        for d in cfg.deployments:
            last = store.health_history(d.id, limit=1)
            day = store.health_history(d.id, since=day_ago)
            active: dict[str, dict[str, Any]] = {}
            for ev in store.alert_history(d.id, since=time.time() - 7 * 86400):
                if ev.state == "firing":
                    active[ev.alert_type] = ev.to_dict()
                else:
                    active.pop(ev.alert_type, None)
            r = last[-1] if last else None
            rows.append(
                {
                    "deployment_id": d.id,
                    "health_status": r.status if r else "unknown",
                    "response_time_ms": r.response_time_ms if r else None,
                    "last_check": r.timestamp if r else None,
                    "last_error": r.error_message if r else None,
                    "uptime_24h_percent": (
                        round(100.0 * sum(x.success for x in day) / len(day), 3) if day else None
                    ),
                    "total_checks": len(day),
                    "active_alerts": list(active.values()),
                }
            )
    finally:
        store.close()
    return rows


@app.command()
def status(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deployments' status, response time, uptime and active alerts: from a running service,
    or from the store (with -c) when none runs."""
    source = "service"
    base, tok = _service(config, url, token)
    try:
        rows = api_request(base, "/api/v1/deployments", token=tok)["deployments"]
    except Unreachable:
        if url is not None or config is None:
            raise
        rows = _status_rows_from_store(_load(config))
        source = "store"
    if as_json:
        _print_json({"source": source, "deployments": rows})
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
            f"[{_COLORS.get(st, 'white')}]{st}[/]",
            f"{rt:.1f} ms" if rt is not None else "-",
            f"{uptime:.2f} %" if uptime is not None else "-",
            str(r.get("total_checks", "-")),
            _when(r.get("last_check")),
            f"[red]{alerts}[/]" if alerts else "-",
        )
    out.print(table)


@app.command()
def resources(
    process: Annotated[
        str | None, typer.Option(help="Process name (else the whole machine).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """CPU, memory, disk and network use of the machine or of one process."""
    from .psutil_monitor import DefaultResourceMonitor

    mon = DefaultResourceMonitor()
    sample = mon.get_process_metrics if process else mon.get_system_metrics
    args = (process,) if process else ()
    sample(*args)  # rates need two samples: the first sets the baseline
    time.sleep(0.5)
    m = sample(*args)
    if as_json:
        _print_json(m.to_dict())
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


def _offline_monitor(cfg: MonitorConfig) -> Any:
    """A stopped monitor over the configured SQLite history (for export and history)."""
    from .health_monitoring import DeploymentHealthMonitor
    from .sqlite_store import SQLiteStore

    path = cfg.store_path()
    if not path.exists():
        fail(f"no history at {path} (has the service run with this configuration?)")
    monitor = DeploymentHealthMonitor(store=SQLiteStore(str(path)))
    for d in cfg.deployments:
        monitor.add_deployment_monitoring(**d.monitor_kwargs())
    return monitor


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="JSON file to write.")],
    config: ConfigOpt = None,
    since: Annotated[
        str | None, typer.Option(help="Only data after this: 2h, 7d, an ISO time or Unix time.")
    ] = None,
) -> None:
    """Export the stored history (health, resources, alerts, configuration) as JSON."""
    cfg = _load(config)
    start = parse_since(since)
    monitor = _offline_monitor(cfg)
    try:
        written = monitor.export_monitoring_data(path, since=start)
    finally:
        monitor.close()
    out.print(f"wrote {written} ({written.stat().st_size:,} bytes)", markup=False)


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
    cfg = _load(config)
    start = parse_since(since)
    monitor = _offline_monitor(cfg)
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
        _print_json({"health": rows, "alerts": alerts, "deployments": records})
        return
    if deployment is not None:
        table = Table(title=f"Health checks of {deployment} (newest last)")
        for col in ("time", "status", "response", "error"):
            table.add_column(col)
        for r in rows:
            st = r["status"]
            table.add_row(
                _when(r["timestamp"]),
                f"[{_COLORS.get(st, 'white')}]{st}[/]",
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
                m["strategy"], m["state"], _when(m["start_time"]),
            )  # fmt: skip
        out.print(table)
    if alerts:
        table = Table(title="Alert events")
        for col in ("time", "deployment", "alert", "state", "message"):
            table.add_column(col)
        for a in alerts:
            table.add_row(
                _when(a["timestamp"]), a["deployment_id"], a["alert_type"], a["state"], a["message"]
            )
        out.print(table)


@silence_app.command("add")
def silence_add(
    duration: Annotated[str, typer.Option(help="How long: 30m, 2h, 1d.")],
    deployment: Annotated[str | None, typer.Option(help="Deployment to silence.")] = None,
    alert_type: Annotated[str | None, typer.Option(help="Alert type to silence.")] = None,
    comment: Annotated[str, typer.Option(help="Why (shown in the API).")] = "",
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Silence a deployment's alerts, one alert type, or both, for a while."""
    if deployment is None and alert_type is None:
        fail("give --deployment, --alert-type or both")
    try:
        seconds = float(parse_duration(duration))
    except ValueError as exc:
        fail(f"--duration: {exc}")
    base, tok = _service(config, url, token)
    body = {"duration_seconds": seconds, "comment": comment, "created_by": "cli"}
    body.update({k: v for k, v in (("deployment_id", deployment), ("alert_type", alert_type)) if v})
    s = api_request(base, "/api/v1/silences", token=tok, method="POST", body=body)
    out.print(f"silenced: {s.get('id', s.get('silence_id', '?'))}", markup=False)


@silence_app.command("list")
def silence_list(
    config: ConfigOpt = None, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """The silences in force."""
    base, tok = _service(config, url, token)
    rows = api_request(base, "/api/v1/silences", token=tok)["silences"]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Silences")
    for col in ("id", "deployment", "alert type", "ends", "comment"):
        table.add_column(col)
    for s in rows:
        ends = s.get("ends_at") or s.get("expires_at")
        table.add_row(
            str(s.get("id", s.get("silence_id", "?"))), str(s.get("deployment_id") or "*"),
            str(s.get("alert_type") or "*"), _when(ends) if isinstance(ends, float | int) else str(ends),
            str(s.get("comment") or ""),
        )  # fmt: skip
    out.print(table)


@silence_app.command("remove")
def silence_remove(
    silence_id: Annotated[str, typer.Argument(help="Id from `silence list`.")],
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """End a silence now."""
    base, tok = _service(config, url, token)
    api_request(base, f"/api/v1/silences/{silence_id}", token=tok, method="DELETE")
    out.print(f"removed silence {silence_id}", markup=False)


@app.command()
def deploy(
    config: ConfigOpt = None,
    version: Annotated[
        str | None, typer.Option(help="Version to deploy (else deploy.version).")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="blue_green, canary, rolling or recreate (else the file's).")
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Keep serving after the rollout (else stop everything and exit).")
    ] = True,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait on a running supervisor.")
    ] = 900,
) -> None:
    """Roll out a version with the config's deploy section, step by step. Without a running
    supervisor this process becomes it (serving until Ctrl-C); with one, it is asked to deploy."""
    from .models import DeploymentStrategy
    from .service import DeploySupervisor, send_request, supervisor_pid

    cfg = _load(config)
    if cfg.deploy is None:
        fail(f"{cfg.source}: no deploy section (see examples/monitor.yaml)")
    chosen = version or cfg.deploy.version
    if not chosen:
        fail("no version: pass --version or set deploy.version")
    if strategy is not None and strategy not in {s.value for s in DeploymentStrategy}:
        fail(f"--strategy: must be one of {', '.join(s.value for s in DeploymentStrategy)}")
    if supervisor_pid(cfg) is not None:
        request = {"action": "deploy", "version": chosen, "strategy": strategy}
        ok = send_request(cfg, request, sys.stdout, timeout)
    else:
        _setup_logging("warning")
        ok = DeploySupervisor(cfg).run(chosen, strategy, serve=serve)
    raise typer.Exit(0 if ok else 1)


@app.command()
def rollback(
    config: ConfigOpt = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the rollback.")] = 300,
) -> None:
    """Undo the last rollout of the running deploy supervisor: traffic back on the previous
    version, the new one stopped. Progress is shown step by step."""
    from .service import send_request

    cfg = _load(config)
    if cfg.deploy is None:
        fail(f"{cfg.source}: no deploy section (see examples/monitor.yaml)")
    ok = send_request(cfg, {"action": "rollback"}, sys.stdout, timeout)
    raise typer.Exit(0 if ok else 1)


@app.command()
def demo(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Status page port (0: any).")] = 8080,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (else Ctrl-C).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "warning",
) -> None:
    """Start sample services (healthy, slow, flapping, degraded, down) and a monitor with its
    status page on them; runs until Ctrl-C or SIGTERM."""
    from .service import run_demo

    _setup_logging(log_level)
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
