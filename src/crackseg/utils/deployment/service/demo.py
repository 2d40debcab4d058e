"""``crackseg-monitor demo`` (``make run``): the whole product in one command.

What runs, all on 127.0.0.1:

- five sample deployments: ``healthy`` (a real process of its own, so its CPU and memory
  columns show that process), ``slow`` (600 ms on its model route), ``degraded``, ``flapping``
  (fails and recovers every few checks) and ``down`` (nothing listens);
- the monitoring service over them (SQLite history in a temporary folder, the log handler)
  with its status page, API, ``/metrics``, ``/healthz`` and ``/health`` on ``--port``;
- when nginx is installed, real rollouts of the sample service through nginx within the first
  minute, under a steady trickle of requests: ``v1`` then ``v2`` blue-green (both succeed), then
  a canary of ``v3``, a bad version answering 30 % errors, which the analysis catches at its
  first step and rolls back. "Recent deployments" on the page tells their story. Without
  nginx the demo says how to install it and runs the monitoring part alone.

Ctrl-C (SIGINT) or SIGTERM stops everything it started: rollouts are aborted, instances and
nginx stopped, the history flushed, the temporary folder removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from crackseg.utils.deployment.errors import ConfigError

__all__ = ["DEFAULT_PORT", "command_prefix", "run_demo"]

#: The status page's port unless ``--port`` says otherwise.
DEFAULT_PORT = 8080
_BAD_ERROR_RATE = 0.3


def command_prefix() -> str:
    """How to type ``crackseg-monitor`` from here: the script's path as run (relative to the
    current folder when inside it, e.g. ``.venv/bin/crackseg-monitor``)."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name != "crackseg-monitor":
        candidate = Path(sys.executable).with_name("crackseg-monitor")
        if not candidate.exists():
            return f"{sys.executable} -m crackseg.utils.deployment.service.cli.main"
        script = candidate
    if shutil.which("crackseg-monitor") == str(script.resolve()):
        return "crackseg-monitor"
    path = script.absolute()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


class _Rollouts:
    """The demo's real rollouts through nginx, in a thread of their own, plus their traffic."""

    def __init__(self, workdir: Path, monitor: Any, out: TextIO) -> None:
        from crackseg.utils.deployment.rollout.orchestrator import DeploymentOrchestrator
        from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
        from crackseg.utils.deployment.rollout.targets.process import ProcessTarget

        self.out = out
        self.router = NginxRouter(
            workdir=workdir / "nginx",
            nginx_binary=shutil.which("nginx"),
            worker_shutdown_timeout="3s",
        )
        self.target = ProcessTarget.for_sample_service(
            log_dir=workdir / "instances",
            version_args={"v3": ["--error-rate", str(_BAD_ERROR_RATE)]},
            default_grace_period=3.0,
        )
        self.orchestrator = DeploymentOrchestrator(monitor, router=self.router, target=self.target)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-rollouts", daemon=True)
        self._traffic = threading.Thread(target=self._load, name="demo-traffic", daemon=True)
        self.requests = 0
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def _config(self, version: str, **kw: Any) -> Any:
        from crackseg.utils.deployment.rollout.config import DeploymentConfig

        # Short windows so the whole story fits in the first minute (the defaults bake 30 s
        # per step and keep the old version 5 min).
        base: dict[str, Any] = dict(
            version=version, check_interval=0.2, success_threshold=2, bake_seconds=4.0,
            health_timeout=20.0, metrics_path="/metrics", metrics_labels={"route": "/predict"},
            min_samples=15, keep_old_seconds=5.0, guard_seconds=10.0, grace_period=3.0,
            deploy_timeout=60.0, monitor_interval=2.0,
            # The judge promotes only on evidence of safety: at the tour's ~20 req/s a 4 s
            # bake holds too few requests, so a window may gather for up to 20 s more.
            analysis_timeout=20.0,
        )  # fmt: skip
        base.update(kw)
        return DeploymentConfig("crackseg-model", "demo", **base)

    def _say(self, text: str) -> None:
        print(f"demo: {text}", file=self.out, flush=True)

    def _deploy(self, n: int, version: str, strategy: str, what: str, **kw: Any) -> bool:
        if self._stop.is_set():
            return False
        self._say(f"rollout {n}/3: {what}")
        t0 = time.monotonic()
        result = self.orchestrator.deploy_with_strategy(self._config(version, **kw), strategy)
        took = time.monotonic() - t0
        if result.success:
            self._say(
                f"rollout {n}/3: {version} serves through {self.router.public_url} ({took:.0f}s)"
            )
        elif not self._stop.is_set():
            why = (result.metadata.rollback_reason if result.metadata else None) or (
                result.error_message
            )
            undone = "rolled back" if result.rolled_back else "failed"
            self._say(f"rollout {n}/3: {version} {undone} after {took:.0f}s: {why}")
        return bool(result.success)

    def _run(self) -> None:
        try:
            if not self._deploy(1, "v1", "blue_green", "blue-green of v1 (the first version)"):
                return
            self._traffic.start()
            self._deploy(2, "v2", "blue_green", "blue-green of v2 (a good version)")
            self._deploy(
                3, "v3", "canary",
                f"canary of v3, a bad version ({_BAD_ERROR_RATE:.0%} of its answers are errors)",
                canary_steps=[20, 50, 100],
            )  # fmt: skip
            if not self._stop.is_set():
                self._say("rollouts done: see 'Recent deployments' on the page")
        except Exception as exc:  # the demo keeps monitoring even if a rollout breaks
            if not self._stop.is_set():
                self._say(f"rollouts stopped: {type(exc).__name__}: {exc}")

    def _load(self) -> None:
        url = self.router.public_url + "/predict"
        while not self._stop.wait(0.05):  # ~20 requests a second through nginx
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                resp.read(4096)
            self.requests += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self.orchestrator.close()  # aborts a rollout in progress and waits for it
        self._thread.join(30)
        if self._traffic.is_alive():
            self._traffic.join(5)
        self.target.close(grace_period=2.0)
        self.router.close()


def _demo_service_class() -> Any:
    from crackseg.utils.deployment.service.app import MonitorService

    class DemoService(MonitorService):
        """The service, closing the demo's rollouts before its monitor (they use it)."""

        before_shutdown: Any = None

        async def _shutdown(self, monitor: Any) -> None:
            if self.before_shutdown is not None:
                await asyncio.to_thread(self.before_shutdown)
            await super()._shutdown(monitor)

    return DemoService


def _nginx_missing() -> str | None:
    if shutil.which("nginx"):
        return None
    return (
        "nginx is not installed, so the rollouts are skipped and the monitoring part runs "
        "alone; install it (Debian/Ubuntu: sudo apt-get install nginx-light; macOS: brew "
        "install nginx) and run the demo again to see blue-green and canary rollouts"
    )


async def _wait_healthy(url: str, timeout: float = 20.0) -> None:
    from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker

    checker = DefaultHealthChecker()
    try:
        ok = await asyncio.to_thread(checker.wait_for_healthy, url, timeout, 0.1)
    finally:
        checker.close()
    if not ok:
        raise RuntimeError(f"the demo's sample service at {url} did not become healthy")


async def _demo(port: int, duration: float | None, out: TextIO, interval: float) -> None:
    from crackseg.utils.deployment.processes import free_port
    from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
    from crackseg.utils.deployment.service.config import parse_config
    from crackseg.utils.deployment.service.sample_service import start_sample_service

    tmp = tempfile.TemporaryDirectory(prefix="crackseg-demo-")
    work = Path(tmp.name)
    services: dict[str, Any] = {}
    own = ProcessTarget.for_sample_service(
        "--name", "demo-healthy", log_dir=work / "healthy", default_grace_period=2.0
    )
    rollouts: _Rollouts | None = None
    service: Any = None
    _DemoService = _demo_service_class()
    try:
        healthy = own.deploy("v1")
        services["slow"] = await start_sample_service("v1", latency_ms=600)
        services["flapping"] = await start_sample_service("v2")
        services["degraded"] = await start_sample_service("v1", degraded=True)
        await _wait_healthy(healthy.health_check_url)
        urls = {
            "healthy": healthy.health_check_url,
            "slow": f"{services['slow'].url}/predict",  # its latency is on the model route
            "degraded": f"{services['degraded'].url}/health",
            "flapping": f"{services['flapping'].url}/health",
            "down": f"http://127.0.0.1:{free_port()}/health",  # nothing listens there
        }
        deployments: list[dict[str, Any]] = [
            {"id": name, "url": url, "check_interval": interval} for name, url in urls.items()
        ]
        deployments[0]["process_name"] = "demo-healthy"
        cfg = parse_config(
            {
                "deployments": deployments,
                "alert_thresholds": {"response_time_ms": 400},
                "monitor": {"failure_threshold": 2, "success_threshold": 2, "default_timeout": 3},
                "handlers": [{"type": "log"}],
                "store": {"path": str(work / "demo.db"), "flush_interval": 1},
                "server": {"port": port},
            },
            source=None,
        )
        service = _DemoService(cfg, out=out)
        loop = asyncio.get_running_loop()

        async def flap() -> None:
            state = services["flapping"].state
            while True:
                await asyncio.sleep(interval * 8)
                state.fail_health = not state.fail_health

        flapper = loop.create_task(flap())
        stopper = loop.call_later(duration, service.stop) if duration else None
        served = loop.create_task(service.serve())
        try:
            while not served.done() and not service._ready.is_set():
                await asyncio.wait({served}, timeout=0.05)
            if served.done():
                exc = served.exception()
                if isinstance(exc, ConfigError) and exc.field == "server.port":
                    raise ConfigError(
                        "--port",
                        f"port {port} is in use on 127.0.0.1; pick another with --port "
                        f"(e.g. --port {port + 1 if port else 8081}; --port 0 takes any free one)",
                    ) from None
                await served
                return
            missing = _nginx_missing()
            _introduce(service.url or "", list(urls), interval, not missing, out)
            if missing:
                print(f"demo: {missing}", file=out, flush=True)
            else:
                assert service.monitor is not None
                rollouts = _Rollouts(work, service.monitor, out)
                service.before_shutdown = rollouts.close
                rollouts.start()
            await served
        finally:
            if stopper is not None:
                stopper.cancel()
            flapper.cancel()
    finally:
        if rollouts is not None:
            await asyncio.to_thread(rollouts.close)  # a no-op when the service closed them
        for s in services.values():
            await s.aclose()
        await asyncio.to_thread(own.close, 2.0)
        tmp.cleanup()
        if service is not None and service._ready.is_set():
            print("demo: stopped; everything it started is gone", file=out, flush=True)


def _introduce(url: str, names: list[str], interval: float, rollouts: bool, out: TextIO) -> None:
    cli = command_prefix()
    # status finds a service on 127.0.0.1:8080 by itself; elsewhere it needs the address.
    where = "" if url.endswith(f":{DEFAULT_PORT}") else f" --url {url}"
    lines = [
        f"demo: {len(names)} sample deployments ({', '.join(names)}), checked every {interval:g}s",
        f"demo: status page: {url}/",
    ]
    if rollouts:
        lines.append(
            "demo: rollouts through nginx in the next minute: v1 and v2 blue-green, then a "
            "canary of a bad v3 that is rolled back"
        )
    lines += [
        "demo: try, in another terminal:",
        f"  {cli} status{where}                        # the deployments' table",
        f"  {cli} check {url}/health   # exit 0 when healthy",
        f"  curl -s {url}/metrics | grep crackseg_host_",
        f"  {cli} --help",
        "demo: Ctrl-C stops everything",
    ]
    print("\n".join(lines), file=out, flush=True)


def run_demo(
    *,
    port: int = DEFAULT_PORT,
    duration: float | None = None,
    out: TextIO | None = None,
    interval: float = 1.0,
) -> None:
    """Run the demo (see the module docstring) until SIGINT/SIGTERM or ``duration`` seconds.

    Raises :class:`ConfigError` on field ``--port`` when the port is taken.
    """
    from crackseg.utils.deployment.eventloop import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(_demo(port, duration, out or sys.stdout, interval))
    finally:
        loop.close()
