"""Latency of the web API for the status of 1,000 deployments (GET /api/v1/deployments),
and of a Prometheus scrape (GET /metrics) at 10,000 deployments beside the same at 1,000.

The service's layout: monitor engine and web server share one event loop (in a thread here),
checking 1,000 deployments of a real sample service (a subprocess) every 10 s while the
API is measured. Load comes from ``wrk`` (one connection, keep-alive, so each figure is one
request's latency) in its own process; without wrk, a sequential Python client. The 10,000
deployments run in a process of their own (``--metrics 10000``).

Run: python benchmarks/bench_api.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.processes import free_port
from crackseg.utils.deployment.service.web.app import start_web

DEPLOYMENTS = 1_000
#: The listing measured: every deployment in one page (the API's largest; the default is 100).
LISTING = f"/api/v1/deployments?limit={DEPLOYMENTS}"
METRICS_DEPLOYMENTS = 10_000
INTERVAL = 10.0
DURATION = 8  # seconds of wrk per endpoint


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


class Service:
    """Monitor + web server on one loop in a background thread (as the service runs them)."""

    def __init__(self, target: str, deployments: int = DEPLOYMENTS) -> None:
        self.monitor = DeploymentHealthMonitor()
        for i in range(deployments):
            self.monitor.add_deployment_monitoring(
                f"svc-{i:04d}", f"{target}/health?d={i}", check_interval=INTERVAL
            )
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await self.monitor.start_monitoring_async()
        runner, self.port = await start_web(self.monitor)
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await self.monitor.stop_monitoring_async()

    def __enter__(self) -> Service:
        self.thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)
        self.monitor.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url: str) -> dict[str, float]:
    """p50/p99 in ms and requests/s of one keep-alive connection for DURATION seconds."""
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{DURATION}s", "--latency", "--timeout", "10s", url],
        capture_output=True, text=True, timeout=DURATION + 30, check=True,
    ).stdout  # fmt: skip
    pct = {
        m.group(1): float(m.group(2)) * _UNITS[m.group(3)]
        for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"^\s*(\d+) requests in", out, re.M)
    if rps is None or n is None or "50" not in pct or "99" not in pct:
        raise RuntimeError(f"wrk printed no latency for {url}: {out[-500:]}")
    # A failed or timed-out request is a broken measurement, not a fast one.
    errors = re.search(r"Socket errors:.*", out)
    if re.search(r"Non-2xx or 3xx responses", out) or (
        errors and any(int(x) for x in re.findall(r"\d+", errors.group(0)))
    ):
        raise RuntimeError(f"wrk saw failed requests on {url}: {out[-500:]}")
    return {"p50": pct["50"], "p99": pct["99"], "rps": float(rps.group(1)), "n": float(n.group(1))}


def run_python(url: str) -> dict[str, float]:
    """Fallback without wrk: sequential urllib requests for DURATION seconds."""
    times: list[float] = []
    end = time.monotonic() + DURATION
    while time.monotonic() < end:
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "p50": statistics.median(times),
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))],
        "rps": len(times) / DURATION,
        "n": float(len(times)),
    }


def client() -> tuple[Any, str]:
    """wrk when installed (make bench installs it), else the sequential Python client."""
    if shutil.which("wrk"):
        return run_wrk, "wrk -t1 -c1 --latency"
    return run_python, "sequential urllib (wrk not installed)"


def sample_service() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crackseg.utils.deployment.service.sample_service", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    target = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: urllib.request.urlopen(target + "/health", timeout=2).status == 200,
                   20, "the sample service")  # fmt: skip
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    return proc, target


def all_checked(m: DeploymentHealthMonitor, timeout: float) -> None:
    wait_until(
        lambda: all(s["total_checks"] for s in m.get_all_deployment_statuses().values()),
        timeout,
        "a first check of every deployment",
    )


def measure_metrics(svc: Service) -> dict[str, float]:
    """GET /metrics: one cold scrape (timed alone), then the client's latency figures."""
    url = f"http://127.0.0.1:{svc.port}/metrics"
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    cold_ms = (time.perf_counter() - t0) * 1000
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    run, _ = client()
    return {**run(url), "cold_ms": cold_ms, "bytes": float(len(body)), "samples": float(samples)}


def metrics_only(deployments: int) -> None:
    """``--metrics N``: a service of its own with N deployments; prints the figures as JSON."""
    sample, target = sample_service()
    try:
        with Service(target, deployments) as svc:
            all_checked(svc.monitor, 120)
            row = measure_metrics(svc)
            row["checks"] = float(svc.monitor.engine_stats().get("checks_done", 0))
    finally:
        os.killpg(sample.pid, signal.SIGTERM)
        sample.wait(15)
    print(json.dumps(row))


def metrics_row(label: str, r: dict[str, float]) -> str:
    return (
        f"| {label} ({r['samples']:,.0f} samples, {r['bytes'] / 2**20:.1f} MiB) | "
        f"{r['p50']:.0f} ms | {r['p99']:.0f} ms | {r['rps']:.1f} | {r['n']:.0f} requests; first "
        f"(cold) scrape {r['cold_ms']:.0f} ms |"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--metrics":
        metrics_only(int(sys.argv[2]))
        return
    sample, target = sample_service()
    try:
        with Service(target) as svc:
            m = svc.monitor
            all_checked(m, 60)
            base = f"http://127.0.0.1:{svc.port}"
            t0 = time.perf_counter()
            # One page of all 1,000 (the largest page; the default page is 100).
            with urllib.request.urlopen(base + LISTING, timeout=30) as r:
                size = len(r.read())
            cold_ms = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            for _ in range(20):
                m.get_all_deployment_statuses()
            statuses_ms = (time.perf_counter() - t0) * 1000 / 20
            run, tool = client()
            listing = run(base + LISTING)
            single = run(base + "/api/v1/deployments/svc-0500")
            healthz = run(base + "/healthz")
            metrics_small = measure_metrics(svc)
            checks = m.engine_stats().get("checks_done", 0)
    finally:
        os.killpg(sample.pid, signal.SIGTERM)
        sample.wait(15)
    # Its own process: 10,000 deployments' engine and memory must not share the 1,000's.
    big = subprocess.run(
        [sys.executable, __file__, "--metrics", str(METRICS_DEPLOYMENTS)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    metrics_big = json.loads(big.stdout.strip().splitlines()[-1])

    print("## Web API latency (bench_api.py)\n")
    print(
        f"Command: `python benchmarks/bench_api.py` — {DEPLOYMENTS:,} deployments of a local "
        f"sample service checked every {INTERVAL:g} s on the same loop as the web server "
        f"({checks:,} checks done by the end); load from {tool}, {DURATION} s per endpoint. "
        f"The /metrics row at {METRICS_DEPLOYMENTS:,} deployments comes from a process of its "
        f"own, the same service with {METRICS_DEPLOYMENTS:,} deployments every {INTERVAL:g} s "
        f"({metrics_big['checks']:,.0f} checks done), scraped the same way. Load average at "
        "the end: " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + ".\n"
    )
    print("| request | p50 | p99 | req/s | reference |")
    print("|---|---|---|---|---|")
    print(
        f"| GET {LISTING} (status of {DEPLOYMENTS:,}; {size / 1024:.0f} KiB JSON) | "
        f"{listing['p50']:.1f} ms | {listing['p99']:.1f} ms | {listing['rps']:.0f} | "
        f"in-process `get_all_deployment_statuses()` alone: {statuses_ms:.1f} ms; first "
        f"(cold) request: {cold_ms:.0f} ms |"
    )
    print(
        f"| GET /api/v1/deployments/{{id}} | {single['p50']:.2f} ms | {single['p99']:.2f} ms | "
        f"{single['rps']:.0f} | |"
    )
    print(
        f"| GET /healthz (the server's floor) | {healthz['p50']:.2f} ms | "
        f"{healthz['p99']:.2f} ms | {healthz['rps']:.0f} | |"
    )
    print(metrics_row(f"GET /metrics at {DEPLOYMENTS:,} deployments", metrics_small))
    print(metrics_row(f"GET /metrics at {METRICS_DEPLOYMENTS:,} deployments", metrics_big))
    p99 = metrics_big["p99"]
    print(
        f"\nTarget: /metrics at {METRICS_DEPLOYMENTS:,} deployments under 1 s: "
        f"**{'met' if p99 < 1000 else 'NOT met'}** (p99 {p99:.0f} ms, "
        f"{p99 / max(metrics_small['p99'], 1e-9):.1f}x the p99 at {DEPLOYMENTS:,})."
    )


if __name__ == "__main__":
    main()
