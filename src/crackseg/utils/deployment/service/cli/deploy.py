"""``crackseg-monitor deploy`` / ``rollback``: clients of the running service's rollout API.

The service (``crackseg-monitor run`` with a ``deploy`` section) runs the rollouts; these
commands ask it (``POST /api/v1/rollouts``, ``POST /api/v1/environments/{env}/rollback``)
and follow that one rollout's events (``GET /api/v1/rollouts/{id}/events``) until it ends:
state changes and steps as lines, bake and guard windows as progress bars on a terminal.
Each command reports its own rollout's outcome; one asked while another runs is refused
at once, naming the rollout in progress. Exit 0 when it succeeded, 1 otherwise.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import orjson
import typer

from crackseg.utils.deployment.service.cli.support import (
    ConfigOpt,
    TokenOpt,
    Unreachable,
    UrlOpt,
    api_request,
    fail,
    out,
    service_address,
)

__all__ = [
    "MAX_LINE",
    "MAX_RECONNECTS",
    "READ_TIMEOUT_S",
    "TokenFileOpt",
    "WindowProgress",
    "deploy",
    "follow_events",
    "rollback",
]

#: Longest wait for one line of an event stream (the service sends a heartbeat every 15 s).
READ_TIMEOUT_S = 45.0
#: Longest line of an event stream read (an event's ``data``).
MAX_LINE = 256 * 1024
#: Times a dropped event stream is followed again (from the last event received).
MAX_RECONNECTS = 20

TokenFileOpt = Annotated[
    Path | None,
    typer.Option(help="File holding the API token (trailing newline ignored).", exists=False),
]


class WindowProgress:
    """Bake and guard windows as progress bars on a terminal (rich), else as lines at each
    quarter (so logs stay readable)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}
        self._quarters: dict[str, int] = {}
        self._progress: Any = None
        if stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                TimeRemainingColumn(),
                # Labels come from the service: printed as written, never read as markup.
                console=Console(file=stream, markup=False, emoji=False, highlight=False),
                transient=True,
            )

    def update(self, label: str, elapsed: float, total: float) -> None:
        with self._lock:
            if self._progress is not None:
                if label not in self._tasks:
                    if not self._tasks:
                        self._progress.start()
                    self._tasks[label] = self._progress.add_task(label, total=total)
                self._progress.update(self._tasks[label], completed=elapsed)
                return
            quarter = int(4 * elapsed / total) if total > 0 else 4
            if quarter < self._quarters.get(label, 0):
                self._quarters[label] = 0  # a new window under the same label
            if quarter > self._quarters.get(label, 0):
                self._quarters[label] = quarter
                out.print(f"  {label}: {25 * quarter}% of {total:g} s", markup=False)

    def line(self, text: str) -> None:
        """Print ``text`` above the bars (printed beside them, a line would break them)."""
        with self._lock:
            if self._progress is not None and self._tasks:
                self._progress.console.print(text)
            else:
                out.print(text, markup=False)

    def close(self) -> None:
        with self._lock:
            if self._progress is not None and self._tasks:
                self._progress.stop()
            self._tasks.clear()


def _read_token(token: str | None, token_file: Path | None) -> str | None:
    if token_file is None:
        return token
    try:
        return token_file.read_text().rstrip("\r\n")
    except OSError as exc:
        fail(f"--token-file: cannot read {token_file}: {exc.strerror or exc}")


def follow_events(
    base: str, path: str, token: str | None, deadline: float
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` of a server-sent event stream until ``done`` (included); a
    dropped stream is followed again from the last event id, at most
    :data:`MAX_RECONNECTS` times. :class:`~.support.CliError` past ``deadline``."""
    last = 0
    failures = 0
    while True:
        if time.monotonic() > deadline:
            fail(f"no outcome within the timeout; follow it with GET {path}")
        req = urllib.request.Request(base.rstrip("/") + path)
        req.add_header("Accept", "text/event-stream")
        req.add_header("Last-Event-ID", str(last))
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=READ_TIMEOUT_S) as resp:
                kind, data = "message", b""
                while time.monotonic() < deadline:
                    raw = resp.readline(MAX_LINE)
                    if not raw:
                        break  # the stream ended: follow it again
                    line = raw.rstrip(b"\r\n")
                    if line.startswith(b"id:"):
                        last = int(line[3:].strip() or 0)
                    elif line.startswith(b"event:"):
                        kind = line[6:].strip().decode()
                    elif line.startswith(b"data:"):
                        data += line[5:].strip()
                    elif not line:  # the end of an event (or of a comment)
                        if data:
                            failures = 0
                            yield kind, orjson.loads(data)
                            if kind == "done":
                                return
                        kind, data = "message", b""
        except urllib.error.HTTPError as exc:
            fail(f"GET {path}: HTTP {exc.code}: {exc.reason}")
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
            pass
        failures += 1
        if failures > MAX_RECONNECTS:
            raise Unreachable(f"lost the event stream of {path} at {base}")
        time.sleep(min(2.0, 0.2 * failures))


def _show(kind: str, data: dict[str, Any], bars: WindowProgress, t0: float) -> None:
    stamp = f"[{time.monotonic() - t0:6.1f}s]"
    if kind == "progress":
        bars.update(str(data["label"]), float(data["elapsed"]), float(data["total"]))
    elif kind == "state":
        reason = f": {data['reason']}" if data.get("reason") else ""
        bars.line(f"{stamp} state {data.get('state')}{reason}")
    elif kind == "step":
        facts = ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("step", "at"))
        bars.line(f"{stamp}   {data.get('step')}: {facts}"[:300])


def _follow(base: str, accepted: dict[str, Any], token: str | None, timeout: float) -> bool:
    """Print one run's progress until it ends; whether it succeeded."""
    bars = WindowProgress(sys.stdout)
    t0 = time.monotonic()
    outcome: dict[str, Any] = {}
    try:
        for kind, data in follow_events(base, accepted["events"], token, t0 + timeout):
            if kind == "done":
                outcome = data
            else:
                _show(kind, data, bars, t0)
    finally:
        bars.close()
    version = accepted.get("version")
    if accepted.get("kind") == "rollback":
        if outcome.get("success"):
            out.print(f"rolled back {accepted['deployment_id']}; previous version serves",
                      markup=False)  # fmt: skip
        else:
            out.print(f"rollback failed: {outcome.get('error')}", markup=False)
    elif outcome.get("success"):
        out.print(f"deployed {version}; serving at {outcome.get('serving_at')}", markup=False)
    else:
        undone = "rolled back" if outcome.get("rolled_back") else "NOT rolled back"
        out.print(f"deploy of {version} failed ({undone}): {outcome.get('error')}", markup=False)
    return bool(outcome.get("success"))


def _ask(base: str, path: str, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = api_request(base, path, token=token, method="POST", body=body,
                                             timeout=30.0)  # fmt: skip
    except Unreachable as exc:
        fail(f"{exc}; rollouts are run by the service: start it (crackseg-monitor run -c FILE) "
             "or name it with --url")  # fmt: skip
    return answer


def deploy(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    version: Annotated[
        str | None, typer.Option(help="Version to deploy (else the service's deploy.version).")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="blue_green, canary, rolling or recreate (else the file's).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to follow the rollout before giving up.")
    ] = 900,
) -> None:
    """Roll out a version through the running service, following it step by step.

    Asks the service at --url (else the -c file's server) to deploy and prints that
    rollout's progress. Exit 0 when the new version serves, 1 when it failed or was refused.
    """
    from crackseg.utils.deployment.models import DeploymentStrategy
    from crackseg.utils.deployment.rollout.config import check_version

    if version is not None:
        check_version(version, "--version")  # refused here, before anything is asked
    if strategy is not None and strategy not in {s.value for s in DeploymentStrategy}:
        fail(f"--strategy: must be one of {', '.join(s.value for s in DeploymentStrategy)}")
    base, tok = service_address(config, url, _read_token(token, token_file))
    body = {k: v for k, v in (("version", version), ("strategy", strategy)) if v is not None}
    accepted = _ask(base, "/api/v1/rollouts", tok, body)
    what = f"deploy {accepted.get('version')}"
    out.print(f"{what} to {accepted.get('environment')} with {accepted.get('strategy')} "
              f"({accepted['id']})", markup=False)  # fmt: skip
    raise typer.Exit(0 if _follow(base, accepted, tok, timeout) else 1)


def rollback(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    token_file: TokenFileOpt = None,
    environment: Annotated[
        str | None, typer.Option(help="Environment to roll back (else the -c file's).")
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the rollback.")] = 300,
) -> None:
    """Undo the last rollout through the running service: the previous version serves again.

    Progress is shown step by step. Exit 0 when the previous version serves, else 1.
    """
    env = environment
    if env is None and config is not None:
        from crackseg.utils.deployment.service.cli.support import load_or_fail

        cfg = load_or_fail(config)
        env = cfg.deploy.environment if cfg.deploy is not None else None
    env = env or "production"
    base, tok = service_address(config, url, _read_token(token, token_file))
    from urllib.parse import quote

    accepted = _ask(base, f"/api/v1/environments/{quote(env, safe='')}/rollback", tok, {})
    out.print(f"rollback {accepted['deployment_id']} ({accepted['id']})", markup=False)
    raise typer.Exit(0 if _follow(base, accepted, tok, timeout) else 1)
