"""The status page at 1,000 deployments: page weight, time to first render in headless
Chromium, and the size and time of a 30-day range of a 10 s check.

Run: python benchmarks/bench_page.py   (needs chromium on PATH)
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.cdp import Browser  # noqa: E402

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor  # noqa: E402
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore  # noqa: E402
from crackseg.utils.deployment.models import HealthCheckResult  # noqa: E402
from crackseg.utils.deployment.monitoring.suppression import SilenceRegistry  # noqa: E402
from crackseg.utils.deployment.service.web.app import WebServer  # noqa: E402
from crackseg.utils.deployment.service.web.ranges import (  # noqa: E402
    columns,
    downsample,
    health_points,
    window,
)

DEPLOYMENTS = 1000
DAY = 86_400.0
#: What the page reads for its first render (app.js refresh(), then the deployment view).
FIRST_RENDER = [
    "/", "/static/app.css", "/static/heartbeat.js", "/static/charts.js", "/static/ranges.js",
    "/static/panels.js", "/static/rollout.js",
    "/static/app.js", "/api/v1/deployments", "/api/v1/alerts", "/api/v1/deploys?limit=15",
    "/api/v1/notifications?limit=20", "/api/v1/heartbeats?limit=60",
    "/api/v1/incidents?limit=200", "/api/v1/silences",
    "/api/v1/deployments/d0000/range?range=24h", "/api/v1/deployments/d0000/history?limit=120",
]  # fmt: skip


def _target() -> tuple[str, threading.Event]:
    """A tiny health endpoint on its own loop thread (the checks need something to answer)."""
    ready, stop, box = threading.Event(), threading.Event(), {}

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/health", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["port"] = runner.addresses[0][1]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await runner.cleanup()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(10)
    return f"http://127.0.0.1:{box['port']}/health", stop


def _backfill(store: SQLiteStore, dep: str, days: float, every: float) -> int:
    now = time.time()
    n = int(days * DAY / every)
    for i in range(n):
        st = "unhealthy" if i % 500 == 0 else "healthy"
        store.add_health(
            dep, HealthCheckResult(st == "healthy", st, 20.0 + i % 40, now - (n - i) * every)
        )
    store.flush()
    return n


def _weight(base: str) -> tuple[int, int]:
    """Bytes of the first render's requests as sent with and without gzip."""
    raw = gz = 0
    for path in FIRST_RENDER:
        for enc, acc in (("identity", "raw"), ("gzip", "gz")):
            r = requests.get(base + path, headers={"Accept-Encoding": enc}, stream=True, timeout=30)
            body = r.raw.read(decode_content=False)
            assert r.status_code == 200, (path, r.status_code)
            if acc == "raw":
                raw += len(body)
            else:
                gz += len(body)
    return raw, gz


async def _first_render(binary: str, url: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as profile:
            async with Browser(binary, Path(profile)) as browser:
                page = await browser.page(url)
                await page.wait_for(
                    "document.querySelectorAll('tr.row').length === 1000 &&"
                    " performance.getEntriesByName('first-render').length", timeout=120
                )  # fmt: skip
                ms = await page.js("performance.getEntriesByName('first-render')[0].startTime")
                times.append(float(ms))
    return times


def main() -> None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium is not installed")
    url, stop = _target()
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "h.db", max_queue=2_000_000, batch_size=20_000)
        monitor = DeploymentHealthMonitor(store=store)
        for d in range(DEPLOYMENTS):
            monitor.add_deployment_monitoring(f"d{d:04d}", url, check_interval=10.0,
                                              group=f"team {d % 8}", public=d % 2 == 0)  # fmt: skip
        # Every deployment an hour of 10 s history (the heartbeat bars fill); d0000 30 days.
        rows = sum(_backfill(store, f"d{d:04d}", 1 / 24, 10.0) for d in range(1, DEPLOYMENTS))
        rows += _backfill(store, "d0000", 30, 10.0)
        monitor.start_monitoring()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # each checked once (their phases spread over 10 s)
            statuses = monitor.get_all_deployment_statuses().values()
            if all(st["last_check"] is not None for st in statuses):
                break
            time.sleep(0.5)
        try:
            with WebServer(monitor, silences=SilenceRegistry()) as server:
                base = server.url
                raw, gz = _weight(base)
                api = base + "/api/v1/deployments/d0000/range?range=30d"
                cold, size = [], 0
                for k in range(5):
                    # Each with an explicit end: the uncached path, every row read.
                    t0 = time.perf_counter()
                    r = requests.get(f"{api}&until={time.time() - k}", timeout=60)
                    cold.append((time.perf_counter() - t0) * 1000)
                    size = len(r.content)
                checks = r.json()["checks"]
                # In-process, the same run: the read before rollups (every health row, then
                # downsampled) beside the rollup read the endpoint now makes.
                from_rows, from_rollups = [], []
                for k in range(5):
                    first, last, width = window("30d", time.time() - k)
                    since, end = first * width, (last + 1) * width
                    t0 = time.perf_counter()
                    downsample(*health_points(store, "d0000", since, end), since, end, 360)
                    from_rows.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    columns(store, "d0000", since, width, 360)
                    from_rollups.append((time.perf_counter() - t0) * 1000)
                requests.get(api, timeout=60)  # the page's first read fills the cache
                warm = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    requests.get(api, timeout=60)
                    warm.append((time.perf_counter() - t0) * 1000)
                render = asyncio.run(_first_render(binary, base + "/", 3))
                pub = requests.get(base + "/status.json", timeout=60)
                pub_size = len(pub.content)
                pub_view = pub.json()
                pub_listed = sum(len(g["deployments"]) for g in pub_view["groups"])
                pub_total = pub_view["deployments_total"]
        finally:
            monitor.close()
            stop.set()
    load = " / ".join(f"{x:.2f}" for x in __import__("os").getloadavg())
    print("## Status page at 1,000 deployments (bench_page.py)\n")
    print(
        "Command: `python benchmarks/bench_page.py`. 1,000 deployments checked every 10 s "
        f"(a local endpoint) with a SQLite history of {rows:,} rows: an hour of 10 s checks "
        "each, 30 days for one; 8 groups, half public. The page, its scripts and every API "
        "read of its first render; time to first render is Chromium's `performance.mark` "
        "when the table of 1,000 rows with their heartbeat bars is drawn (ms from navigation "
        f"start, median of 3 cold browsers). Load average at the end: {load}.\n"
    )
    print("| figure | value | target |")
    print("|---|---|---|")
    print(
        f"| page weight of the first render ({len(FIRST_RENDER)} requests) | "
        f"{raw / 1024:.0f} KiB; {gz / 1024:.0f} KiB as a browser gets it (gzip: the "
        "deployments, heartbeats and public view are compressed) | |"
    )
    print(
        f"| time to first render, 1,000 deployments | {statistics.median(render):.0f} ms "
        f"({min(render):.0f}-{max(render):.0f}) | |"
    )
    print(
        f"| 30-day range of a 10 s check ({checks:,} checks, 360 buckets), JSON | "
        f"{size / 1024:.1f} KiB | < 100 KiB: **{'met' if size < 100 * 1024 else 'not met'}** |"
    )
    for label, took in (("first read (from the rollups, over HTTP)", cold),
                        ("the page's refresh (finished buckets cached)", warm),
                        ("in-process read of every health row (before rollups)", from_rows),
                        ("in-process read of the rollups", from_rollups)):  # fmt: skip
        med = statistics.median(took)
        print(
            f"| 30-day range, {label}: time to answer (median, range) | {med:.0f} ms "
            f"({min(took):.0f}-{max(took):.0f}) | < 200 ms: **{'met' if med < 200 else 'not met'}** |"
        )
    print(
        f"| public view /status.json, {pub_total} public deployments ({pub_listed} listed: "
        f"the view is capped) | {pub_size / 1024:.0f} KiB | |"
    )


if __name__ == "__main__":
    main()
