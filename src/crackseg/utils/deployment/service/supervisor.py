"""``crackseg-monitor deploy`` / ``rollback``: rollouts from the config's ``deploy`` section.

A :class:`DeploySupervisor` owns what a rollout starts (instances, nginx) and keeps it
serving in the foreground; later ``deploy`` / ``rollback`` commands on the same file talk
to it through its state folder (``<store>.deploy/``): ``supervisor.json`` (who runs),
``requests/<time>-<id>.json`` plus SIGUSR1 (what to do: one file per request, so two
commands at once never share a slot), ``events.jsonl`` (progress, one JSON per line, each
naming the request it answers). One rollout at a time: a request that arrives while one
runs is refused at once, naming the rollout in progress.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.rollout.judging import summarize
from crackseg.utils.deployment.service.app import sidecar_path
from crackseg.utils.deployment.service.config import MonitorConfig

__all__ = ["DeploySupervisor", "WindowProgress", "send_request", "supervisor_pid"]


# A gate note's evidence, shown as one summary line rather than as raw facts.
_EVIDENCE_KEYS = frozenset(
    {"step", "at", "evidence", "judge_verdict", "judge_code", "alpha", "baseline", "window"}
)


class WindowProgress:
    """Bake and guard windows as progress bars on a terminal (rich), else as lines at each
    quarter (so ``events.jsonl`` and logs stay readable). Called from rollout threads."""

    def __init__(self, out: TextIO, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}
        self._quarters: dict[str, int] = {}
        self._evidence: dict[str, str] = {}
        self._progress: Any = None
        if out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[evidence]}"),
                console=Console(file=out, markup=False, emoji=False),
                transient=True,
            )

    def update(self, label: str, elapsed: float, total: float) -> None:
        with self._lock:
            if self._progress is not None:
                if label not in self._tasks:
                    if not self._tasks:
                        self._progress.start()
                    self._tasks[label] = self._progress.add_task(
                        label, total=total, evidence=self._evidence.get(label, "")
                    )
                self._progress.update(self._tasks[label], completed=elapsed)
                return
            quarter = int(4 * elapsed / total) if total > 0 else 4
            if quarter < self._quarters.get(label, 0):
                self._quarters[label] = 0  # a new window under the same label
            if quarter > self._quarters.get(label, 0):
                self._quarters[label] = quarter
                evidence = self._evidence.get(label)
                self._emit(
                    f"  {label}: {25 * quarter}% of {total:g} s"
                    + (f"; {evidence}" if evidence else "")
                )

    def evidence(self, label: str, text: str) -> None:
        """The judge's evidence so far in window ``label``, shown beside its bar."""
        with self._lock:
            self._evidence[label] = text
            if self._progress is not None and label in self._tasks:
                self._progress.update(self._tasks[label], evidence=text)

    def finish(self) -> None:
        """One rollout's windows are over (the guard's, in the background, go on)."""
        with self._lock:
            for label in [k for k in self._tasks if k != "guard"]:
                if self._progress is not None:
                    self._progress.remove_task(self._tasks.pop(label))
            self._quarters = {k: v for k, v in self._quarters.items() if k == "guard"}
            self._evidence = {k: v for k, v in self._evidence.items() if k == "guard"}

    def close(self) -> None:
        with self._lock:
            if self._progress is not None and self._tasks:
                self._progress.stop()
            self._tasks.clear()


class DeploySupervisor:
    """Runs rollouts from the config's ``deploy`` section and keeps what it started serving.

    The processes a rollout starts belong to this supervisor (``crackseg-monitor deploy``
    in the foreground): it serves the deployed version until SIGINT/SIGTERM, then stops
    every instance and the router. Other ``deploy`` and ``rollback`` commands on the same
    configuration hand it a request (a file in ``requests/`` + SIGUSR1 in :attr:`state_dir`) and
    follow its progress in ``events.jsonl``; ``supervisor.json`` says who runs.

    >>> DeploySupervisor(load_config("monitor.yaml")).run("v2")  # doctest: +SKIP
    """

    def __init__(self, config: MonitorConfig, out: TextIO | None = None) -> None:
        if config.deploy is None:
            raise ConfigError("deploy", "the configuration has no deploy section")
        self.config = config
        self.deploy = config.deploy
        self.state_dir = sidecar_path(config, ".deploy")
        self._out = out or sys.stdout
        self._t0 = time.monotonic()
        self.orchestrator: Any = None
        self.current: str | None = None
        self._bars = WindowProgress(self._out, self.emit)
        self._emit_lock = threading.Lock()
        #: The action running (its worker thread, request id and what it does), if any.
        self._action: tuple[threading.Thread, str | None, str] | None = None

    # -- progress ---------------------------------------------------------------------
    def emit(self, text: str, *, request: str | None = None, **final: Any) -> None:
        """Print ``text`` and append it to ``events.jsonl`` for the request it answers
        (``request``, else the running action's)."""
        line = f"[{time.monotonic() - self._t0:6.1f}s] {text}"
        action = self._action
        owner = request if request is not None else (action[1] if action else None)
        record = {"at": time.time(), "text": line, "request": owner, **final}
        with self._emit_lock:
            print(line, file=self._out, flush=True)
            with open(self.state_dir / "events.jsonl", "ab") as f:
                f.write(orjson.dumps(record) + b"\n")

    def _entries(self, dep_id: str) -> list[tuple[float, str]]:
        """The record's state changes and steps as ``(time, line)``, in time order."""
        meta = self.orchestrator.get_deployment_status(dep_id)
        entries: list[tuple[float, str]] = []
        if meta is None:
            return entries
        for c in list(meta.state_history):
            reason = f": {c.reason}" if c.reason else ""
            entries.append((c.timestamp, f"state {c.state}{reason}"))
        for step in list(meta.extra.get("steps", [])):
            if step.get("step") == "look":
                continue  # the judge's brief notes: shown live beside the bars instead
            facts = ", ".join(f"{k}={v}" for k, v in step.items() if k not in _EVIDENCE_KEYS)
            at = float(step.get("at", 0.0))
            entries.append((at, f"  {step['step']}: {facts}"[:300]))
            if isinstance(step.get("evidence"), dict):
                view = {
                    "verdict": step.get("judge_verdict"),
                    "code": step.get("judge_code"),
                    "evidence": step["evidence"],
                }
                entries.append((at, f"    evidence: {summarize(view)}"))
        return sorted(entries)

    def _follow(self, dep_id: str, worker: threading.Thread) -> None:
        """Start ``worker`` and print the record's new entries until it ends."""
        seen = set(self._entries(dep_id))  # a rollback's record already holds its rollout
        worker.start()
        while True:
            alive = worker.is_alive()
            for entry in self._entries(dep_id):
                if entry not in seen:
                    seen.add(entry)
                    self.emit(entry[1])
            meta = self.orchestrator.get_deployment_status(dep_id)
            live = meta.extra.get("live_evidence") if meta is not None else None
            if isinstance(live, dict):
                self._bars.evidence(str(live.get("label")), str(live.get("text")))
            if not alive:
                return
            worker.join(0.1)

    # -- building ---------------------------------------------------------------------
    def _build(self) -> None:
        from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
        from crackseg.utils.deployment.rollout.orchestrator import DeploymentOrchestrator
        from crackseg.utils.deployment.service.deploy_target import build_target

        target = build_target(self.deploy)
        router: Any = None
        if self.deploy.router.type == "nginx":
            from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter

            r = self.deploy.router
            router = NginxRouter(
                r.listen_port,
                listen_host=r.listen_host,
                workdir=r.workdir or self.state_dir / "nginx",
            )
        path = self.config.store_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        monitor = DeploymentHealthMonitor(store=SQLiteStore(path))
        self.orchestrator = DeploymentOrchestrator(
            monitor, router=router, target=target, progress=self._bars.update
        )
        for meta in self.orchestrator.recovered:
            self.emit(f"undid interrupted rollout {meta.deployment_id}: {meta.state}")
        self._target, self._router, self._monitor = target, router, monitor
        monitor.start_monitoring()

    def _close(self) -> None:
        self._bars.close()
        if self.orchestrator is not None:
            self.orchestrator.close()
            self._target.close()
            if self._router is not None:
                self._router.close()
            self._monitor.close()
        with contextlib.suppress(OSError):
            (self.state_dir / "supervisor.json").unlink()

    # -- actions ----------------------------------------------------------------------
    def deploy_version(self, version: str, strategy: str | None = None) -> bool:
        import uuid

        from crackseg.utils.deployment.rollout.config import safe_id

        name = strategy or self.deploy.strategy.value
        # The id the monitor registers: any version the config accepts fits in it.
        dep_id = safe_id(self.deploy.name, version, uuid.uuid4().hex[:6])
        rollout = self.deploy.deployment_config(version, dep_id)
        self.emit(f"deploy {version} to {self.deploy.environment} with {name} ({dep_id})")
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["result"] = self.orchestrator.deploy_with_strategy(rollout, name)
            except Exception as exc:
                box["error"] = exc

        worker = threading.Thread(target=work, name="deploy", daemon=True)
        self._follow(dep_id, worker)
        self._bars.finish()
        if "error" in box:
            self.emit(f"deploy failed: {box['error']}", done=True, success=False)
            return False
        result = box["result"]
        if result.success:
            self.current = dep_id
            where = self._router.public_url if self._router is not None else result.deployment_url
            self.emit(f"deployed {version}; serving at {where}", done=True, success=True)
        else:
            undone = "rolled back" if result.rolled_back else "NOT rolled back"
            self.emit(
                f"deploy of {version} failed ({undone}): {result.error_message}",
                done=True,
                success=False,
            )
        self._write_state()
        return bool(result.success)

    def rollback(self) -> bool:
        if self.current is None:
            self.emit(
                "nothing to roll back: no deployment by this supervisor", done=True, success=False
            )
            return False
        dep_id = self.current
        self.emit(f"rollback {dep_id}")
        box: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: box.update(result=self.orchestrator.manual_rollback(dep_id)), daemon=True
        )
        self._follow(dep_id, worker)
        result = box.get("result")
        if result is not None and result.success:
            meta = self.orchestrator.get_deployment_status(dep_id)
            self.current = meta.previous_deployment_id if meta else None
            self.emit(f"rolled back {dep_id}; previous version serves", done=True, success=True)
            self._write_state()
            return True
        why = result.error_message if result is not None else "rollback raised"
        self.emit(f"rollback failed: {why}", done=True, success=False)
        return False

    def _write_state(self) -> None:
        data = {"pid": os.getpid(), "current": self.current, "config": self.config.source}
        tmp = self.state_dir / "supervisor.json.tmp"
        tmp.write_bytes(orjson.dumps(data))
        tmp.replace(self.state_dir / "supervisor.json")

    def run(self, version: str, strategy: str | None = None, serve: bool = True) -> bool:
        """Deploy ``version`` (after ``stable_version`` when set), then serve until stopped."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = self._claim()
        (self.state_dir / "events.jsonl").unlink(missing_ok=True)  # one run's progress only
        shutil.rmtree(self.state_dir / "requests", ignore_errors=True)  # a dead run's
        (self.state_dir / "requests").mkdir()
        requests: queue.Queue[str] = queue.Queue()
        handlers = {
            signal.SIGTERM: lambda *_: requests.put("stop"),
            signal.SIGINT: lambda *_: requests.put("stop"),
            signal.SIGUSR1: lambda *_: requests.put("request"),
        }
        previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
        outcome: list[bool] = []

        def first_rollouts() -> None:
            ok = True
            stable = self.deploy.stable_version
            if stable and stable != version:
                ok = self.deploy_version(stable, strategy)
            outcome.append(ok and self.deploy_version(version, strategy))
            if serve:
                self.emit(
                    "serving; Ctrl-C stops every instance (`crackseg-monitor rollback` undoes)"
                )

        try:
            self._build()
            self._write_state()
            if not serve:
                first_rollouts()
                return outcome[0]
            # In a worker, so that requests arriving meanwhile are answered at once.
            self._start_action(first_rollouts, None, f"deploy {version}")
            while (item := requests.get()) != "stop":
                if item == "request":
                    self._take_requests()
            return bool(outcome and outcome[0])
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
            action = self._action
            if action is not None:
                action[0].join()  # a rollout is never cut half-way: it ends, then we stop
            try:
                self._close()
            finally:
                os.close(lock)  # releases the claim (so does the process's death)

    def _claim(self) -> int:
        """Hold ``supervisor.lock`` for this run: two ``deploy`` commands started at once
        with no supervisor would both become one (two nginx, one state folder)."""
        fd = os.open(self.state_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                "deploy",
                "another deploy supervisor is starting or runs for this configuration; "
                "run the command again once it serves (it then takes the request)",
            ) from None
        return fd

    def _start_action(self, work: Callable[[], Any], request: str | None, what: str) -> None:
        def run() -> None:
            try:
                work()
            except Exception as exc:  # an action's failure must not kill the supervisor
                self.emit(f"{what} failed: {exc}", done=True, success=False)
            finally:
                self._action = None

        thread = threading.Thread(target=run, name="supervisor-action", daemon=True)
        self._action = (thread, request, what)
        thread.start()

    def _take_requests(self) -> None:
        """Start the oldest pending request; refuse the others while a rollout runs."""
        folder = self.state_dir / "requests"
        for path in sorted(folder.glob("*.json")):
            try:
                req = orjson.loads(path.read_bytes())
                path.unlink()
            except (OSError, orjson.JSONDecodeError):
                continue
            rid = str(req.get("id") or path.stem)
            action = self._action
            if action is not None:
                _thread, owner, what = action
                by = f" (request {owner})" if owner else ""
                self.emit(
                    f"refused: a rollout is in progress: {what}{by}; run the command again "
                    "once it ends",
                    request=rid, done=True, success=False,
                )  # fmt: skip
                continue
            if req.get("action") == "rollback":
                self._start_action(self.rollback, rid, "rollback")
            elif req.get("action") == "deploy":
                version, strategy = str(req.get("version")), req.get("strategy")
                work = functools.partial(self.deploy_version, version, strategy)
                self._start_action(work, rid, f"deploy {version}")
            else:
                self.emit(f"unknown request {req.get('action')!r}", request=rid, done=True,
                          success=False)  # fmt: skip


def supervisor_pid(config: MonitorConfig) -> int | None:
    """The pid of the running deploy supervisor of ``config``, if one runs."""
    try:
        data = orjson.loads((sidecar_path(config, ".deploy") / "supervisor.json").read_bytes())
        pid = int(data["pid"])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, KeyError, orjson.JSONDecodeError):
        return None


def send_request(
    config: MonitorConfig, request: dict[str, Any], out: TextIO, timeout: float
) -> bool:
    """Hand ``request`` to the running supervisor and print its progress until done.

    Only the progress of this request is printed, and its outcome returned: another
    command's rollout is never taken for this one's. A request made while a rollout runs is
    refused at once by the supervisor, naming that rollout (False).
    """
    import uuid

    pid = supervisor_pid(config)
    if pid is None:
        raise ConfigError(
            "deploy", "no deploy supervisor runs for this configuration (start one with `deploy`)"
        )
    state = sidecar_path(config, ".deploy")
    events = state / "events.jsonl"
    offset = events.stat().st_size if events.exists() else 0
    rid = uuid.uuid4().hex[:12]
    folder = state / "requests"
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{rid}.tmp"
    tmp.write_bytes(orjson.dumps({**request, "id": rid}))
    tmp.replace(folder / f"{time.time_ns():020d}-{rid}.json")
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        if events.exists():
            with open(events, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                rec = orjson.loads(line)
                if rec.get("request") != rid:
                    continue  # another command's progress, or the guard's
                print(rec["text"], file=out, flush=True)
                if rec.get("done"):
                    return bool(rec.get("success"))
        try:
            os.kill(pid, 0)
        except OSError:
            raise ConfigError("deploy", f"the deploy supervisor (pid {pid}) exited") from None
        time.sleep(0.1)
    raise ConfigError(
        "deploy", f"no answer from the deploy supervisor (pid {pid}) within {timeout:g}s"
    )
