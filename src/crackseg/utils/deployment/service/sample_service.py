"""A small model-serving stand-in, used by the demo, the tests and the benchmarks.

Run it as a program::

    python -m crackseg.utils.deployment.service.sample_service --port 8080 --version v2 \
        [--host 127.0.0.1] [--startup-delay S] [--fail-health] [--error-rate 0.3] \
        [--degraded] [--latency-ms N] [--tail-rate R --tail-ms N] [--shutdown-timeout S] \
        [--name NAME]

or in-process with :func:`start_sample_service` (returns a :class:`RunningSampleService`).

Routes (every response, errors included, carries ``X-Version: <version>``):

- ``GET /health``: 200 ``{"status": "healthy", "version", "uptime_seconds", "timestamp"}``;
  degraded: 503 ``{"status": "degraded", "issues": [...]}``; failing: 500
  ``{"status": "unhealthy", "issues": [...]}``; during the startup delay: 503 ``{"status": "starting"}``.
- ``GET|POST /predict``: ``{"version", "mask": [[0, 1, ...], ...]}`` after ``latency_ms``; with an
  error rate ``r`` exactly ``r`` of the requests (spread evenly, deterministic) answer 500;
  with a tail rate ``t`` exactly ``t`` of them (spread the same way) take ``tail_ms`` more.
  During the startup delay it answers 503.
- ``GET /version``: ``{"version": ...}``.
- ``GET /metrics``: Prometheus text: ``http_requests_total{route,method,code}``,
  ``http_request_errors_total{route}``, ``http_request_duration_seconds{route}`` (histogram),
  ``sample_service_info{version}``.
- ``POST /admin/fail?mode=unhealthy|degraded|errors|slow[&error_rate=R][&latency_ms=N]`` and
  ``POST /admin/recover`` make a live instance sick and well again (recover clears every fault).

``--name NAME`` (at most 15 characters) only labels the process: it becomes the process's
name (Linux ``/proc/PID/comm``, what ``ps`` and psutil show), so a monitor finds this
instance with ``process_name: NAME`` (see ``process_matches``).

SIGTERM or SIGINT stops accepting connections and lets in-flight requests finish (bounded by
``--shutdown-timeout``) before the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from crackseg.utils.deployment.service.serve import serve_app

__all__ = [
    "STATE_KEY",
    "RunningSampleService",
    "SampleState",
    "build_app",
    "main",
    "start_sample_service",
]

logger = logging.getLogger(__name__)

_MASK_SIZE = 4
_KNOWN_ROUTES = frozenset(
    {"/health", "/predict", "/version", "/metrics", "/admin/fail", "/admin/recover"}
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class SampleState:
    """The service's knobs; mutable at run time through the ``/admin`` routes."""

    version: str = "v1"
    startup_delay: float = 0.0
    fail_health: bool = False
    degraded: bool = False
    error_rate: float = 0.0
    latency_ms: float = 0.0
    tail_rate: float = 0.0
    tail_ms: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    _error_credit: float = 0.0
    _tail_credit: float = 0.0

    def __post_init__(self) -> None:
        _check_rate(self.error_rate)
        _check_rate(self.tail_rate)

    def next_request_lags(self) -> bool:
        """Deterministic tail: over n requests, exactly floor(n * tail_rate) take tail_ms more."""
        if self.tail_rate <= 0:
            return False
        self._tail_credit += self.tail_rate
        if self._tail_credit >= 1.0 - 1e-9:
            self._tail_credit -= 1.0
            return True
        return False

    @property
    def starting(self) -> bool:
        return time.monotonic() - self.started_at < self.startup_delay

    def next_request_fails(self) -> bool:
        """Deterministic error spreading: over n requests, exactly floor(n * error_rate) fail."""
        if self.error_rate <= 0:
            return False
        self._error_credit += self.error_rate
        if self._error_credit >= 1.0 - 1e-9:
            self._error_credit -= 1.0
            return True
        return False

    def recover(self) -> None:
        self.fail_health = False
        self.degraded = False
        self.error_rate = 0.0
        self.latency_ms = 0.0
        self.tail_rate = 0.0
        self._error_credit = 0.0


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"error_rate must be within [0, 1], got {rate}")


class _Metrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total",
            "Requests handled, by route, method and status code.",
            ("route", "method", "code"),
            registry=self.registry,
        )
        self.errors = Counter(
            "http_request_errors_total",
            "Requests answered with a 5xx status, by route.",
            ("route",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer a request, by route.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        info = Gauge(
            "sample_service_info",
            "Always 1; labels the version.",
            ("version",),
            registry=self.registry,
        )
        info.labels(version=version).set(1)


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATE_KEY: web.AppKey[SampleState] = web.AppKey("state", SampleState)
_METRICS_KEY: web.AppKey[_Metrics] = web.AppKey("metrics", _Metrics)


@web.middleware
async def _instrument(request: web.Request, handler: _Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    metrics = request.app[_METRICS_KEY]
    route = request.path if request.path in _KNOWN_ROUTES else "other"  # bounded label values
    start = time.monotonic()

    def record(code: int) -> None:
        metrics.requests.labels(route=route, method=request.method, code=str(code)).inc()
        if code >= 500:
            metrics.errors.labels(route=route).inc()
        metrics.latency.labels(route=route).observe(time.monotonic() - start)

    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405...: aiohttp wants these raised, not returned
        exc.headers["X-Version"] = state.version
        record(exc.status)
        raise
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, route)
        response = web.json_response({"error": "internal error"}, status=500)
    response.headers["X-Version"] = state.version
    record(response.status)
    return response


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    base = {"version": state.version, "timestamp": time.time()}
    if state.starting:
        return web.json_response({"status": "starting", **base}, status=503)
    if state.fail_health:
        issues = ["model not loaded (fail-health is set)"]
        return web.json_response({"status": "unhealthy", "issues": issues, **base}, status=500)
    if state.degraded:
        issues = ["running on a fallback model (degraded is set)"]
        return web.json_response({"status": "degraded", "issues": issues, **base}, status=503)
    uptime = round(time.monotonic() - state.started_at, 3)
    return web.json_response({"status": "healthy", "uptime_seconds": uptime, **base})


async def _predict(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if state.starting:
        return web.json_response({"error": "starting", "version": state.version}, status=503)
    if request.method == "POST":
        # Bounded by the app's client_max_size; the content is not used by this stand-in.
        await request.read()
    delay = state.latency_ms + (state.tail_ms if state.next_request_lags() else 0.0)
    if delay > 0:
        await asyncio.sleep(delay / 1000.0)
    if state.next_request_fails():
        return web.json_response(
            {"error": "inference failed (error-rate)", "version": state.version}, status=500
        )
    mask = [[(row + col) % 2 for col in range(_MASK_SIZE)] for row in range(_MASK_SIZE)]
    return web.json_response({"version": state.version, "mask": mask})


async def _version(request: web.Request) -> web.Response:
    return web.json_response({"version": request.app[STATE_KEY].version})


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _state_view(state: SampleState) -> dict[str, object]:
    return {
        "version": state.version,
        "fail_health": state.fail_health,
        "degraded": state.degraded,
        "error_rate": state.error_rate,
        "latency_ms": state.latency_ms,
    }


async def _admin_fail(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    mode = request.query.get("mode", "unhealthy")
    try:
        if mode == "unhealthy":
            state.fail_health = True
        elif mode == "degraded":
            state.degraded = True
        elif mode == "errors":
            rate = float(request.query.get("error_rate", "1.0"))
            _check_rate(rate)
            state.error_rate = rate
        elif mode == "slow":
            state.latency_ms = max(0.0, float(request.query.get("latency_ms", "1000")))
        else:
            raise ValueError(f"mode must be unhealthy, degraded, errors or slow, got {mode!r}")
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(_state_view(state))


async def _admin_recover(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.recover()
    return web.json_response(_state_view(state))


def build_app(state: SampleState) -> web.Application:
    """The aiohttp application serving ``state`` (one Prometheus registry per app)."""
    app = web.Application(middlewares=[_instrument], client_max_size=1 << 20)
    app[STATE_KEY] = state
    app[_METRICS_KEY] = _Metrics(state.version)
    app.router.add_get("/health", _health)
    app.router.add_route("GET", "/predict", _predict)
    app.router.add_route("POST", "/predict", _predict)
    app.router.add_get("/version", _version)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/admin/fail", _admin_fail)
    app.router.add_post("/admin/recover", _admin_recover)
    return app


@dataclass
class RunningSampleService:
    """An in-process sample service; ``aclose()`` shuts it down gracefully."""

    runner: web.AppRunner
    host: str
    port: int
    state: SampleState

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def aclose(self) -> None:
        await self.runner.cleanup()


async def start_sample_service(
    version: str = "v1",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_delay: float = 0.0,
    fail_health: bool = False,
    degraded: bool = False,
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    shutdown_timeout: float = 10.0,
    tail_rate: float = 0.0,
    tail_ms: float = 0.0,
) -> RunningSampleService:
    """Start the service on the running loop and return once it listens (port 0 = any free port)."""
    state = SampleState(
        version=version,
        startup_delay=startup_delay,
        fail_health=fail_health,
        degraded=degraded,
        error_rate=error_rate,
        latency_ms=latency_ms,
        tail_rate=tail_rate,
        tail_ms=tail_ms,
    )
    runner, bound_port = await serve_app(
        build_app(state), host, port, shutdown_timeout=shutdown_timeout
    )
    return RunningSampleService(runner=runner, host=host, port=bound_port, state=state)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m crackseg.utils.deployment.service.sample_service",
        description="A model-serving stand-in with a version label and fault knobs.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", default="v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--startup-delay", type=float, default=0.0, metavar="S")
    parser.add_argument("--fail-health", action="store_true")
    parser.add_argument("--degraded", action="store_true")
    parser.add_argument("--error-rate", type=float, default=0.0, metavar="R")
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="N")
    parser.add_argument("--tail-rate", type=float, default=0.0, metavar="R")
    parser.add_argument("--tail-ms", type=float, default=0.0, metavar="N")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="S")
    parser.add_argument(
        "--name", default=None, help="the process's name, for process_name: NAME (<= 15 chars)"
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate must be within [0, 1]")
    if not 0.0 <= args.tail_rate <= 1.0 or args.tail_ms < 0:
        parser.error("--tail-rate must be within [0, 1] and --tail-ms >= 0")
    if args.name is not None and not 0 < len(args.name.encode()) <= 15:
        parser.error("--name must be 1 to 15 bytes (the kernel's limit for a process name)")
    return args


def _set_process_name(name: str) -> None:
    """Rename this process (Linux ``prctl(PR_SET_NAME)``); elsewhere the name stays."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, name.encode(), 0, 0, 0)  # 15: PR_SET_NAME


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service = await start_sample_service(
        args.version,
        host=args.host,
        port=args.port,
        startup_delay=args.startup_delay,
        fail_health=args.fail_health,
        degraded=args.degraded,
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        shutdown_timeout=args.shutdown_timeout,
        tail_rate=args.tail_rate,
        tail_ms=args.tail_ms,
    )
    print(f"sample_service {args.version} listening on {service.url}", flush=True)
    await stop.wait()
    print("sample_service: signal received, finishing in-flight requests", flush=True)
    await service.aclose()
    print("sample_service: stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m crackseg.utils.deployment.service.sample_service``; returns the exit code."""
    args = _parse_args(argv)
    if args.name:
        _set_process_name(args.name)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        runner_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    else:
        runner_factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=runner_factory) as r:
        r.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
