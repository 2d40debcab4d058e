"""The long-running service: a monitor, its SQLite history, alert handlers and the web server.

:class:`MonitorService` wires the parts a :class:`~.config.MonitorConfig` describes and runs
them on one event loop (the monitor's engine and the web server share it):

- SIGTERM / SIGINT stop it cleanly: the web server closes, the engine stops, the store
  flushes its last batch and closes. Nothing recorded before the signal is lost.
- SIGHUP re-reads the configuration file. A valid file is applied in place (deployments
  added, removed or changed; thresholds; handlers; maintenance windows); a file with a
  problem is rejected as a whole, the running configuration stays, and the reasons are
  logged. Changes to ``store``, ``server`` or ``monitor`` need a restart and say so.
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
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from crackseg.utils.deployment.delivery import AlertDispatcher, AlertHandler
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.monitoring.gcpolicy import keep_gc_frozen, tune_gc_for_long_running
from crackseg.utils.deployment.monitoring.isolation import BlockingRunner, Busy, Overdue
from crackseg.utils.deployment.monitoring.monitor import DeploymentHealthMonitor
from crackseg.utils.deployment.monitoring.suppression import MaintenanceSchedule, SilenceRegistry
from crackseg.utils.deployment.service import sd_notify
from crackseg.utils.deployment.service.config import (
    ConfigFileError,
    HandlerSpec,
    MonitorConfig,
    load_config,
)
from crackseg.utils.deployment.service.store_health import StoreWatch

__all__ = [
    "RELOAD_TIMEOUT",
    "MonitorService",
    "build_handlers",
    "report_orphaned_rows",
    "sidecar_path",
]

logger = logging.getLogger("crackseg.utils.deployment.service")

#: Longest a SIGHUP reload may spend reading and validating the file (seconds).
RELOAD_TIMEOUT = 30.0


def build_handlers(specs: list[HandlerSpec]) -> list[AlertHandler]:
    """The configured alert handlers (``delivery.build_handlers``); problems raise one
    :class:`ConfigFileError` naming every ``handlers[i].key``."""
    from crackseg.utils.deployment.delivery import build_handlers as build

    try:
        return build([s.spec() for s in specs])
    except ConfigError as exc:  # HandlerOptionsError too: every problem it holds
        raise ConfigFileError("handlers", exc.problems) from None


def report_orphaned_rows(monitor: DeploymentHealthMonitor) -> None:
    """Log outbox rows kept for handler names the configuration no longer has."""
    for key, n in monitor.dispatcher.orphaned_rows().items():
        logger.warning(
            "alert outbox holds %d undelivered notification%s for handler %r, which is not "
            "configured (renamed or removed?); they are kept, not sent elsewhere: restore "
            "the name to deliver them",
            n, "" if n == 1 else "s", key,
        )  # fmt: skip


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
        gc_policy: bool = False,
    ) -> None:
        #: Whether the service may tune the garbage collector of its process (the CLI's
        #: ``run`` does; a service embedded in another program leaves it alone).
        self.gc_policy = gc_policy
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
        self._reload_again = False  # a reload was asked for while one ran
        self._reload_task: asyncio.Task[None] | None = None
        # Reads the file in a daemon thread: a read that hangs (a FIFO, a dead network
        # mount) is given up after RELOAD_TIMEOUT and never holds the process at exit.
        self._reader = BlockingRunner(max_workers=1)
        self._stop_requested = False
        self.silences: SilenceRegistry | None = None
        #: Runs the ``deploy`` section's rollouts through the API (None without one).
        self.rollouts: Any = None
        self._maintenance = MaintenanceSchedule()

    # ------------------------------------------------------------ building
    def _build_monitor(self) -> DeploymentHealthMonitor:
        from crackseg.utils.deployment.history.sqlite.alert_state import SQLiteAlertState
        from crackseg.utils.deployment.history.sqlite.store import SQLiteStore

        cfg = self.config
        # What can fail on bad input comes first, before any thread or file is opened.
        self._maintenance = MaintenanceSchedule.from_config(cfg.maintenance_specs())
        self.silences = SilenceRegistry(sidecar_path(cfg, ".silences.json"))
        handlers = build_handlers(cfg.handlers)
        path = cfg.store_path()
        m = cfg.monitor
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            store = SQLiteStore(
                str(path),
                flush_interval=cfg.store.flush_interval,
                max_age_seconds=cfg.store.retention.max_age,
                max_rows_per_deployment=cfg.store.retention.max_rows,
            )
            # Firing alerts and who got them, in the same file: a restart pages nobody twice.
            alert_state = SQLiteAlertState(path)
        except BaseException:
            for h in handlers:
                h.close()
            raise
        monitor = DeploymentHealthMonitor(
            store=store,
            max_history=m.max_history,
            failure_threshold=m.failure_threshold,
            success_threshold=m.success_threshold,
            repeat_interval=m.repeat_interval,
            error_rate_window=m.error_rate_window,
            default_timeout=m.default_timeout,
            system_metrics_interval=m.system_metrics_interval,
            repeat_intervals=m.repeat_intervals,
            flap_max_changes=m.flap_max_changes,
            flap_window=m.flap_window,
            # A durable outbox: notifications not yet delivered survive a restart or kill -9.
            dispatcher=AlertDispatcher(outbox=sidecar_path(cfg, ".outbox.db")),
            alert_state=alert_state,
        )
        try:
            monitor.alert_thresholds.update(cfg.alert_thresholds.as_dict())
            for h in handlers:
                monitor.add_alert_handler(h)
            self._handlers = handlers
            monitor.add_suppressor(self.silences)
            # Through a lambda so a reload that replaces the schedule takes effect at once.
            monitor.add_suppressor(lambda d, a, now: self._maintenance(d, a, now))
            for d in cfg.deployments:
                monitor.add_deployment_monitoring(**d.monitor_kwargs())
            monitor.resolve_unmonitored()  # firing at the last stop, no longer configured
            report_orphaned_rows(monitor)
            if cfg.deploy is not None:
                from crackseg.utils.deployment.service.supervisor import RolloutManager

                # Undoes first what a killed service left half-way (kill -9 mid-rollout).
                self.rollouts = RolloutManager(cfg.deploy, monitor, sidecar_path(cfg, ".deploy"))
        except BaseException:
            monitor.close()
            raise
        return monitor

    async def _start_web(self, monitor: DeploymentHealthMonitor) -> str | None:
        server = self.config.server
        if not server.enabled:
            return None
        from crackseg.utils.deployment.service.web.app import start_web

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
                protect_metrics=server.protect_metrics,
                silences=self.silences,
                monitor_instance=server.monitor_instance,
                rollouts=self.rollouts,
                maintenance=lambda: self._maintenance,  # a reload replaces the schedule
                allowed_file_dirs=server.allowed_file_dirs,
            )
        except OSError as exc:
            why = str(exc.strerror or exc)
            if "in use" in why:
                why = "the address is already in use; pick another server.port"
            raise ConfigError(
                "server.port", f"cannot listen on {server.host}:{server.port}: {why}"
            ) from None
        self._runner = runner
        host = f"[{server.host}]" if ":" in server.host else server.host
        return f"http://{host}:{port}"

    # ------------------------------------------------------------ running
    def run(self) -> None:
        """Run until SIGTERM or SIGINT (or :meth:`stop`); blocks. Must be called in the main thread
        for the signal handlers; elsewhere it runs without them."""
        from crackseg.utils.deployment.eventloop import new_event_loop

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
        if self._stop_requested:
            self._stop.set()
        monitor = self.monitor = await asyncio.to_thread(self._build_monitor)
        signals: list[signal.Signals] = []
        watch: asyncio.Task[None] | None = None
        gc_keeper: asyncio.Task[None] | None = None
        try:
            await monitor.start_monitoring_async()
            if self.gc_policy:
                # The service owns its process: its deployments, long-lived, need not be
                # scanned by every full collection (docs/performance.md, full GCs).
                tune_gc_for_long_running()
                gc_keeper = self._loop.create_task(keep_gc_frozen())
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
            # A store that loses writes (disk full, damaged file) alerts through the handlers.
            watch = self._loop.create_task(StoreWatch(monitor).run())
            self._ready.set()
            sd_notify.notify("READY=1", f"STATUS=monitoring {n} deployment(s)")
            await self._stop.wait()
            logger.info("stopping")
            sd_notify.notify("STOPPING=1")
        finally:
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            if watch is not None:
                watch.cancel()
            if gc_keeper is not None:
                gc_keeper.cancel()
            task = self._reload_task
            if task is not None and not task.done():
                task.cancel()  # a slow reload must not delay the stop
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 0.5)
            await self._shutdown(monitor)

    async def _shutdown(self, monitor: DeploymentHealthMonitor) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
        if self.rollouts is not None:
            # A running rollout is aborted (it rolls back); then instances and router stop.
            await asyncio.to_thread(self.rollouts.close)
            self.rollouts = None
        await monitor.stop_monitoring_async()
        # close() flushes the store's last batch and releases handlers and the checker.
        await asyncio.to_thread(monitor.close)
        logger.info("stopped; history flushed to %s", self.config.store_path())

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Block until the service serves (for callers running it in another thread)."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Ask the service to stop; safe from any thread, even before it has started."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # ------------------------------------------------------------ reloading
    def request_reload(self) -> None:
        """Re-read the configuration file in the background (what SIGHUP does).

        A request during a reload is not lost: one more reload runs after it (the file is
        read again then, so the last signal wins, as with nginx and Prometheus).
        """
        if self._loop is None:
            return
        if self._reloading:
            self._reload_again = True
            logger.info("reload requested during a reload: it runs when this one ends")
            return
        self._reloading = True
        sd_notify.reloading()
        task = self._reload_task = self._loop.create_task(self._reload_until_current())
        task.add_done_callback(lambda _t: setattr(self, "_reloading", False))
        task.add_done_callback(lambda _t: sd_notify.notify("READY=1"))

    async def _reload_until_current(self) -> None:
        self._reload_again = True
        while self._reload_again:
            self._reload_again = False
            await self._reload_from_file()

    async def _reload_from_file(self) -> None:
        if self.config_path is None:
            logger.warning("reload ignored: the configuration did not come from a file")
            return
        try:
            new = await self._reader.call("reload", RELOAD_TIMEOUT, load_config, self.config_path)
            changes = await asyncio.to_thread(self.apply, new)
        except (Busy, Overdue):
            logger.error(
                "reload of %s: reading the file took longer than %gs; keeping the running "
                "configuration", self.config_path, RELOAD_TIMEOUT,
            )  # fmt: skip
            return
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
        except Exception as exc:  # a reload must never take the running service down
            logger.error("reload of %s failed, keeping the running configuration: %s: %s",
                         self.config_path, type(exc).__name__, exc)  # fmt: skip
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
        for section in ("store", "server", "monitor", "deploy"):
            if getattr(new, section) != getattr(old, section):
                changes.append(f"{section} changes need a restart (kept the running one)")
        new = new.model_copy(
            update={
                "store": old.store, "server": old.server, "monitor": old.monitor,
                "deploy": old.deploy,
            }
        )  # fmt: skip
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
            from crackseg.utils.deployment.monitoring.rules import DEFAULT_THRESHOLDS

            monitor.alert_thresholds = {**DEFAULT_THRESHOLDS, **new.alert_thresholds.as_dict()}
            changes.append("alert thresholds")
        if new_handlers is not None:
            for h in self._handlers:
                monitor.remove_alert_handler(h)
                h.close()
            for h in new_handlers:
                monitor.add_alert_handler(h)
            self._handlers = new_handlers
            report_orphaned_rows(monitor)
            changes.append(f"{len(new_handlers)} handler(s)")
        if new.maintenance != old.maintenance:
            self._maintenance = MaintenanceSchedule.from_config(new.maintenance_specs())
            changes.append("maintenance windows")
        if new.log_level != old.log_level:
            logging.getLogger("crackseg").setLevel(new.log_level.upper())
            changes.append(f"log level {new.log_level}")
        self.config = new
        return changes
