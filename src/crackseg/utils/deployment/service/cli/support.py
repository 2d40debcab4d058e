"""Plumbing of :mod:`.main`: one-line errors, the API client, reading the stored history."""

from __future__ import annotations

import http.client
import math
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import orjson
import typer
from rich.console import Console
from rich.text import Text

from crackseg.utils.deployment.service import logs
from crackseg.utils.deployment.service.config import MonitorConfig, load_config, parse_duration
from crackseg.utils.deployment.service.logs import LogFormat

__all__ = [
    "COLORS",
    "DEFAULT_SERVICE_URL",
    "LOG_FORMAT",
    "MAX_API_BYTES",
    "MAX_PAGES",
    "CliError",
    "ConfigOpt",
    "JsonOpt",
    "TokenOpt",
    "Unreachable",
    "UrlOpt",
    "api_list",
    "api_request",
    "err",
    "fail",
    "format_uptime",
    "load_or_fail",
    "offline_monitor",
    "out",
    "parse_since",
    "print_json",
    "service_address",
    "setup_logging",
    "status_rows_from_store",
    "styled",
    "when",
]

# Text from peers, the API and the store is printed as written: no console markup or emoji
# codes are read in it (a Location ``/[link=...]x[/link]`` must show its target, and a
# stray ``[/bold]`` must not raise). Colour is given as Text styles (see :func:`styled`).
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
MAX_API_BYTES = 16 * 1024 * 1024
COLORS = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "unknown": "dim"}


class CliError(Exception):
    """An error shown to the user as one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Unreachable(CliError):
    """No service answers at the URL."""


def styled(text: str, style: str) -> Text:
    """``text`` as written, shown in ``style`` (e.g. ``"green"``)."""
    return Text(text, style=style)


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
    sys.stdout.flush()


def load_or_fail(path: Path | None) -> MonitorConfig:
    if path is None:
        fail("no configuration file: pass -c FILE (or set CRACKSEG_MONITOR_CONFIG)")
    return load_config(path)


#: ``--log-format`` of this invocation (set by the top-level option before any command runs).
LOG_FORMAT: list[LogFormat] = ["text"]


def setup_logging(level: str) -> None:
    """Log ``level`` and above to stderr in the ``--log-format`` asked for."""
    logs.setup_logging(level, LOG_FORMAT[0])


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    ago = time.time() - ts
    if ago < 120:
        return f"{ago:.0f}s ago"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_uptime(percent: float | None) -> str:
    """Uptime as the page shows it: one decimal, rounded down (99.96 % is not 100.0 %)."""
    if percent is None:
        return "-"
    return f"{math.floor(percent * 10 + 1e-9) / 10:.1f} %"


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
    from crackseg.utils.deployment.delivery.deadline import SendDeadline
    from crackseg.utils.deployment.delivery.options import watched_opener

    # One deadline for the whole answer: a peer dripping it byte by byte is cut.
    deadline = SendDeadline(2 * timeout)
    try:
        with deadline, watched_opener(deadline).open(req, timeout=timeout) as resp:
            raw = resp.read(MAX_API_BYTES)
        if deadline.expired:
            raise TimeoutError("timed out")
    except urllib.error.HTTPError as exc:
        try:
            detail = orjson.loads(exc.read(64 * 1024))
            message = detail.get("detail") or exc.reason  # RFC 9457 problem details
            if detail.get("field"):
                message = f"{detail['field']}: {message}"
        except (orjson.JSONDecodeError, AttributeError):
            message = exc.reason
        if exc.code == 401:
            message = f"{message} (pass --token or set CRACKSEG_MONITOR_TOKEN)"
        raise CliError(f"{method} {path}: HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = "timed out" if deadline.expired else getattr(exc, "reason", exc)
        raise Unreachable(f"no service answers at {base} ({reason})") from None
    return orjson.loads(raw) if raw else None


#: Most pages :func:`api_list` follows (of 1,000 rows each).
MAX_PAGES = 50


def api_list(base: str, path: str, key: str, *, token: str | None = None) -> list[Any]:
    """Every row of the paged list ``key`` at ``path``, following ``next_cursor`` (at most
    :data:`MAX_PAGES` pages); errors as :func:`api_request`."""
    rows: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        query = "?limit=1000" + (f"&cursor={quote(cursor, safe='')}" if cursor else "")
        page = api_request(base, path + query, token=token)
        rows.extend(page[key])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return rows


#: Where ``status`` looks for a service when given neither ``--url`` nor ``-c``: the demo's and
#: the default server's address.
DEFAULT_SERVICE_URL = "http://127.0.0.1:8080"


def service_address(
    config: Path | None, url: str | None, token: str | None
) -> tuple[str, str | None]:
    """Base URL and token of the service named by ``--url``, the config's ``server``, or
    (given neither) :data:`DEFAULT_SERVICE_URL`."""
    if url is not None:
        return url, token
    if config is None:
        return DEFAULT_SERVICE_URL, token
    cfg = load_or_fail(config)
    host = cfg.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    tok = token or (cfg.server.token.get_secret_value() if cfg.server.token else None)
    return f"http://{host}:{cfg.server.port}", tok


def status_rows_from_store(cfg: MonitorConfig) -> list[dict[str, Any]]:
    from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
    from crackseg.utils.deployment.monitoring.uptime import is_up

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
                        round(100.0 * sum(is_up(x.status) for x in day) / len(day), 3)
                        if day
                        else None
                    ),
                    "total_checks": len(day),
                    "active_alerts": list(active.values()),
                }
            )
    finally:
        store.close()
    return rows


def offline_monitor(cfg: MonitorConfig) -> Any:
    """A stopped monitor over the configured SQLite history (for export and history)."""
    from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
    from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor

    path = cfg.store_path()
    if not path.exists():
        fail(f"no history at {path} (has the service run with this configuration?)")
    monitor = DeploymentHealthMonitor(store=SQLiteStore(str(path)))
    for d in cfg.deployments:
        monitor.add_deployment_monitoring(**d.monitor_kwargs())
    return monitor


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Service configuration file.", envvar="CRACKSEG_MONITOR_CONFIG"
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Base URL of a running service's web server (default http://127.0.0.1:8080).",
        envvar="CRACKSEG_MONITOR_URL",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(help="API token (else the config's).", envvar="CRACKSEG_MONITOR_TOKEN"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
