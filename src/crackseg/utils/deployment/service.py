"""The long-running service: a monitor, its SQLite history, alert handlers and the web server.

:class:`MonitorService` wires the parts a :class:`~.config.MonitorConfig` describes and runs
them on one event loop (the monitor's engine and the web server share it):

- SIGTERM / SIGINT stop it cleanly: the web server closes, the engine stops, the store
  flushes its last batch and closes. Nothing recorded before the signal is lost.
- SIGHUP re-reads the configuration file. A valid file is applied in place (deployments
  added, removed or changed; thresholds; handlers; maintenance windows); a file with a
  problem is rejected as a whole, the running configuration stays, and the reasons are
  logged. Changes to ``store`` or ``server`` need a restart and say so.
- On start it prints ``serving on http://HOST:PORT`` (stdout) once the server listens.

After a ``kill -9`` the history holds everything up to the last store flush, i.e. at most
``store.flush_interval`` seconds are lost.

>>> service = MonitorService(load_config("monitor.yaml"))  # doctest: +SKIP
>>> service.run()                                           # blocks until SIGTERM
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import orjson

from .config import ConfigFileError, HandlerSpec, MonitorConfig, load_config
from .errors import ConfigError
from .health_monitoring import DeploymentHealthMonitor
from .notifiers import AlertDispatcher, AlertHandler
from .silences import MaintenanceSchedule, SilenceRegistry

__all__ = ["MonitorService", "build_handlers", "run_demo", "sidecar_path"]

logger = logging.getLogger("crackseg.utils.deployment.service")


def build_handlers(specs: list[HandlerSpec]) -> list[AlertHandler]:
    """The configured alert handlers (``notifiers.build_handlers``); a problem raises
    :class:`ConfigFileError` naming ``handlers[i].key``."""
    from .notifiers import build_handlers as build

    try:
        return build([s.spec() for s in specs])
    except ConfigError as exc:
        raise ConfigFileError("handlers", [(exc.field, exc.problem)]) from None


def sidecar_path(config: MonitorConfig, suffix: str) -> Path:
    """A file kept beside the history store (``history.db`` -> ``history.outbox.db``)."""
    path = config.store_path()
    return path.with_name(path.stem + suffix)


class MonitorService:
    """Runs the monitor, its store, handlers and web server from one configuration.

    ``config_path`` is the file SIGHUP re-reads (defaults to ``config.source``). ``out``
    receives the ``serving on ...`` line (stdout by default).
    """

    def __init__(
        self,
        config: MonitorConfig,
        *,
        config_path: str | Path | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.config = config
        source = config_path or config.source
        self.config_path = Path(source) if source else None
        self._out = out or sys.stdout
        self.monitor: DeploymentHealthMonitor | None = None
        self.url: str | None = None
        self._handlers: list[AlertHandler] = []
        self._runner: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._reloading = False
        self.silences: SilenceRegistry | None = None
        self._maintenance = MaintenanceSchedule()

    # ------------------------------------------------------------ building
    def _build_monitor(self) -> DeploymentHealthMonitor:
        from .sqlite_store import SQLiteStore

        cfg = self.config
        handlers = build_handlers(cfg.handlers)
        path = cfg.store_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(
            str(path),
            flush_interval=cfg.store.flush_interval,
            max_age_seconds=cfg.store.retention.max_age,
            max_rows_per_deployment=cfg.store.retention.max_rows,
        )
        m = cfg.monitor
        monitor = DeploymentHealthMonitor(
            store=store,
            max_history=m.max_history,
            failure_threshold=m.failure_threshold,
            success_threshold=m.success_threshold,
            repeat_interval=m.repeat_interval,
            error_rate_window=m.error_rate_window,
            default_timeout=m.default_timeout,
        )
        monitor.alert_thresholds.update(cfg.alert_thresholds.as_dict())
        # A durable outbox: notifications not yet delivered survive a restart or kill -9.
        monitor.dispatcher.close()
        monitor.dispatcher = AlertDispatcher(outbox=sidecar_path(cfg, ".outbox.db"))
        for h in handlers:
            monitor.add_alert_handler(h)
        self._handlers = handlers
        self.silences = SilenceRegistry(sidecar_path(cfg, ".silences.json"))
        monitor.add_suppressor(self.silences)
        self._maintenance = MaintenanceSchedule.from_config(cfg.maintenance)
        # Through a lambda so a reload that replaces the schedule takes effect at once.
        monitor.add_suppressor(lambda d, a, now: self._maintenance(d, a, now))
        for d in cfg.deployments:
            monitor.add_deployment_monitoring(**d.monitor_kwargs())
        return monitor

    async def _start_web(self, monitor: DeploymentHealthMonitor) -> str | None:
        server = self.config.server
        if not server.enabled:
            return None
        from .web import start_web

        token = server.token.get_secret_value() if server.token else None
        try:
            # Any: web's MonitorLike protocol declares read-only properties as attributes.
            target: Any = monitor
            runner, port = await start_web(
                target,
                server.host,
                server.port,
                token=token,
                protect_reads=server.protect_reads,
                silences=self.silences,
            )
        except OSError as exc:
            raise ConfigError(
                "server.port", f"cannot listen on {server.host}:{server.port}: {exc.strerror}"
            ) from None
        self._runner = runner
        host = f"[{server.host}]" if ":" in server.host else server.host
        return f"http://{host}:{port}"

    # ------------------------------------------------------------ running
    def run(self) -> None:
        """Run until SIGTERM or SIGINT (or :meth:`stop`); blocks. Must be called in the main thread
        for the signal handlers; elsewhere it runs without them."""
        from .engine import new_event_loop

        loop = new_event_loop()
        try:
            loop.run_until_complete(self.serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def serve(self) -> None:
        """The service on the running loop, until :meth:`stop` or a stop signal."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        monitor = self.monitor = await asyncio.to_thread(self._build_monitor)
        signals: list[signal.Signals] = []
        try:
            await monitor.start_monitoring_async()
            self.url = await self._start_web(monitor)
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.add_signal_handler(sig, self._stop.set)
                    signals.append(sig)
                self._loop.add_signal_handler(signal.SIGHUP, self.request_reload)
                signals.append(signal.SIGHUP)
            n = len(self.config.deployments)
            if self.url:
                print(f"serving on {self.url}", file=self._out, flush=True)
            logger.info(
                "monitoring %d deployment%s; history in %s%s",
                n,
                "" if n == 1 else "s",
                self.config.store_path(),
                f"; serving on {self.url}" if self.url else "",
            )
            self._ready.set()
            await self._stop.wait()
            logger.info("stopping")
        finally:
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            await self._shutdown(monitor)

    async def _shutdown(self, monitor: DeploymentHealthMonitor) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
        await monitor.stop_monitoring_async()
        # close() flushes the store's last batch and releases handlers and the checker.
        await asyncio.to_thread(monitor.close)
        logger.info("stopped; history flushed to %s", self.config.store_path())

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Block until the service serves (for callers running it in another thread)."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Ask the service to stop; safe from any thread or a signal handler."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # ------------------------------------------------------------ reloading
    def request_reload(self) -> None:
        """Re-read the configuration file in the background (what SIGHUP does)."""
        if self._loop is None or self._reloading:
            return
        self._reloading = True
        task = self._loop.create_task(self._reload_from_file())
        task.add_done_callback(lambda _t: setattr(self, "_reloading", False))

    async def _reload_from_file(self) -> None:
        if self.config_path is None:
            logger.warning("reload ignored: the configuration did not come from a file")
            return
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
            changes = await asyncio.to_thread(self.apply, new)
        except ConfigError as exc:
            lines = str(exc).splitlines()
            logger.error(
                "reload of %s rejected, keeping the running configuration: %d problem%s",
                self.config_path,
                len(lines),
                "" if len(lines) == 1 else "s",
            )
            for line in lines:
                logger.error("  %s", line)
            return
        logger.info("reloaded %s: %s", self.config_path, "; ".join(changes) or "no changes")

    def apply(self, new: MonitorConfig) -> list[str]:
        """Apply a validated configuration to the running monitor; returns what changed.

        Handlers are built first, so a handler that cannot be built rejects the whole
        configuration before anything changes.
        """
        monitor = self.monitor
        if monitor is None:
            raise RuntimeError("the service is not running")
        old = self.config
        changes: list[str] = []
        new_handlers = build_handlers(new.handlers) if new.handlers != old.handlers else None
        for section in ("store", "server"):
            if getattr(new, section) != getattr(old, section):
                changes.append(f"{section} changes need a restart (kept the running one)")
        new = new.model_copy(update={"store": old.store, "server": old.server})
        old_ids = {d.id: d for d in old.deployments}
        new_ids = {d.id: d for d in new.deployments}
        for dep_id in old_ids.keys() - new_ids.keys():
            monitor.remove_deployment_monitoring(dep_id)
            changes.append(f"removed {dep_id}")
        for dep_id, d in new_ids.items():
            if dep_id not in old_ids:
                monitor.add_deployment_monitoring(**d.monitor_kwargs())
                changes.append(f"added {dep_id}")
            elif d != old_ids[dep_id]:
                monitor.add_deployment_monitoring(**d.monitor_kwargs())
                changes.append(f"changed {dep_id}")
        if new.alert_thresholds != old.alert_thresholds:
            from .alerts import DEFAULT_THRESHOLDS

            monitor.alert_thresholds = {**DEFAULT_THRESHOLDS, **new.alert_thresholds.as_dict()}
            changes.append("alert thresholds")
        if new_handlers is not None:
            for h in self._handlers:
                monitor.remove_alert_handler(h)
                h.close()
            for h in new_handlers:
                monitor.add_alert_handler(h)
            self._handlers = new_handlers
            changes.append(f"{len(new_handlers)} handler(s)")
        if new.maintenance != old.maintenance:
            self._maintenance = MaintenanceSchedule.from_config(new.maintenance)
            changes.append("maintenance windows")
        if new.monitor != old.monitor:
            changes.append("monitor defaults apply to deployments added from now on")
        if new.log_level != old.log_level:
            logging.getLogger("crackseg").setLevel(new.log_level.upper())
            changes.append(f"log level {new.log_level}")
        self.config = new
        return changes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _demo(port: int, duration: float | None, out: TextIO, interval: float) -> None:
    import tempfile

    import psutil

    from .config import parse_config
    from .sample_service import start_sample_service

    tmp = tempfile.TemporaryDirectory(prefix="crackseg-demo-")
    services = {
        "healthy": await start_sample_service("v1"),
        "slow": await start_sample_service("v1", latency_ms=600),
        "flapping": await start_sample_service("v2"),
        "degraded": await start_sample_service("v1", degraded=True),
    }
    me = psutil.Process().name()
    urls = {name: f"{s.url}/health" for name, s in services.items()}
    urls["slow"] = f"{services['slow'].url}/predict"  # its latency is on the model route
    urls["down"] = f"http://127.0.0.1:{_free_port()}/health"  # nothing listens there
    deployments: list[dict[str, Any]] = [
        {"id": name, "url": url, "check_interval": interval} for name, url in urls.items()
    ]
    deployments[0]["process_name"] = me
    cfg = parse_config(
        {
            "deployments": deployments,
            "alert_thresholds": {"response_time_ms": 400},
            "monitor": {"failure_threshold": 2, "success_threshold": 2, "default_timeout": 3},
            "handlers": [{"type": "log"}],
            "store": {"path": f"{tmp.name}/demo.db", "flush_interval": 1},
            "server": {"port": port},
        },
        source=None,
    )
    service = MonitorService(cfg, out=out)

    async def flap() -> None:
        state = services["flapping"].state
        while True:
            await asyncio.sleep(interval * 8)
            state.fail_health = not state.fail_health

    flapper = asyncio.get_running_loop().create_task(flap())
    stopper = asyncio.get_running_loop().call_later(duration, service.stop) if duration else None
    served = asyncio.get_running_loop().create_task(service.serve())
    try:
        while not served.done() and not service._ready.is_set():
            await asyncio.wait({served}, timeout=0.05)
        if service._ready.is_set():
            print(
                f"demo: {len(urls)} sample deployments ({', '.join(urls)}), checked every "
                f"{interval:g}s; history in {tmp.name}\n"
                f"open {service.url}/ for the status page; Ctrl-C stops",
                file=out,
                flush=True,
            )
        await served
    finally:
        if stopper is not None:
            stopper.cancel()
        flapper.cancel()
        for s in services.values():
            await s.aclose()
        tmp.cleanup()


def run_demo(
    *,
    port: int = 8080,
    duration: float | None = None,
    out: TextIO | None = None,
    interval: float = 1.0,
) -> None:
    """``crackseg-monitor demo``: sample services (healthy, slow, flapping, degraded, down), a
    monitor over them and its status page, until SIGINT/SIGTERM or ``duration`` seconds."""
    from .engine import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(_demo(port, duration, out or sys.stdout, interval))
    finally:
        loop.close()


# ---------------------------------------------------------------- deploy / rollback
class DeploySupervisor:
    """Runs rollouts from the config's ``deploy`` section and keeps what it started serving.

    The processes a rollout starts belong to this supervisor (``crackseg-monitor deploy``
    in the foreground): it serves the deployed version until SIGINT/SIGTERM, then stops
    every instance and the router. Other ``deploy`` and ``rollback`` commands on the same
    configuration hand it a request (``request.json`` + SIGUSR1 in :attr:`state_dir`) and
    follow its progress in ``events.jsonl``; ``supervisor.json`` says who runs.
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

    # -- progress ---------------------------------------------------------------------
    def emit(self, text: str, **final: Any) -> None:
        line = f"[{time.monotonic() - self._t0:6.1f}s] {text}"
        print(line, file=self._out, flush=True)
        record = {"at": time.time(), "text": line, **final}
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
            facts = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("step", "at"))
            entries.append((float(step.get("at", 0.0)), f"  {step['step']}: {facts}"[:300]))
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
            if not alive:
                return
            worker.join(0.1)

    # -- building ---------------------------------------------------------------------
    def _build(self) -> None:
        from .orchestration import DeploymentOrchestrator
        from .sqlite_store import SQLiteStore
        from .targets.process import ProcessTarget

        t = self.deploy.target
        target = ProcessTarget(
            t.command, env=t.env, cwd=t.cwd, log_dir=t.log_dir, host=t.host,
            health_path=t.health_path, default_grace_period=t.grace_period,
            version_args=t.version_args,
        )  # fmt: skip
        router: Any = None
        if self.deploy.router.type == "nginx":
            from .routers.nginx import NginxRouter

            r = self.deploy.router
            router = NginxRouter(
                r.listen_port,
                listen_host=r.listen_host,
                workdir=r.workdir or self.state_dir / "nginx",
            )
        path = self.config.store_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        monitor = DeploymentHealthMonitor(store=SQLiteStore(path))
        self.orchestrator = DeploymentOrchestrator(monitor, router=router, target=target)
        self._target, self._router, self._monitor = target, router, monitor
        monitor.start_monitoring()

    def _close(self) -> None:
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

        name = strategy or self.deploy.strategy.value
        dep_id = f"{self.deploy.name}-{version}-{uuid.uuid4().hex[:6]}"
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
        requests: queue.Queue[str] = queue.Queue()
        handlers = {
            signal.SIGTERM: lambda *_: requests.put("stop"),
            signal.SIGINT: lambda *_: requests.put("stop"),
            signal.SIGUSR1: lambda *_: requests.put("request"),
        }
        previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
        try:
            self._build()
            self._write_state()
            ok = True
            stable = self.deploy.stable_version
            if stable and stable != version:
                ok = self.deploy_version(stable, strategy)
            ok = ok and self.deploy_version(version, strategy)
            if not serve:
                return ok
            self.emit("serving; Ctrl-C stops every instance (`crackseg-monitor rollback` undoes)")
            while (item := requests.get()) != "stop":
                if item == "request":
                    self._handle_request()
            return ok
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
            self._close()

    def _handle_request(self) -> None:
        path = self.state_dir / "request.json"
        try:
            req = orjson.loads(path.read_bytes())
            path.unlink()
        except (OSError, orjson.JSONDecodeError):
            return
        if req.get("action") == "rollback":
            self.rollback()
        elif req.get("action") == "deploy":
            self.deploy_version(str(req["version"]), req.get("strategy"))


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
    """Hand ``request`` to the running supervisor and print its progress until done."""
    pid = supervisor_pid(config)
    if pid is None:
        raise ConfigError(
            "deploy", "no deploy supervisor runs for this configuration (start one with `deploy`)"
        )
    state = sidecar_path(config, ".deploy")
    events = state / "events.jsonl"
    offset = events.stat().st_size if events.exists() else 0
    tmp = state / "request.json.tmp"
    tmp.write_bytes(orjson.dumps(request))
    tmp.replace(state / "request.json")
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
                print(rec["text"], file=out, flush=True)
                if rec.get("done"):
                    return bool(rec.get("success"))
        time.sleep(0.1)
    raise ConfigError(
        "deploy", f"no answer from the deploy supervisor (pid {pid}) within {timeout:g}s"
    )
