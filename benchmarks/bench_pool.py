"""Connection pools across many origins: bounded fds, and what the bound costs per check.

One nginx worker listens on 200 loopback addresses (127.0.0.1-200, one port), pinned to
its own core; each client runs in its own process (``--one``) pinned to another, three
times (median and range). Rows:

* ``burst``: 100,000 deployments over 200 origins (500 paths each), all checked at
  once with the library's defaults (``DefaultHealthChecker()``): every check must
  succeed and the process's file descriptors (psutil) must stay within
  ``max_connections`` (a quarter of ``ulimit -n``) plus a few;
* ``spread``: 50 concurrent checks cycling over the 200 origins (x 5 paths) for a few
  seconds, defaults (the bound is not reached): CPU per check;
* ``spread-bound-40``: the same with ``max_connections=40`` (tuning, labelled): the total
  binds, so most checks first close the least recently used idle connection of another
  origin and connect.

Run: python benchmarks/bench_pool.py [seconds]
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nginx import Nginx

from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker

ORIGINS = 200
PATHS = 500
SPREAD_PATHS = 5
CONCURRENCY = 50
WARMUP_S = 0.5
RUNS = 3
HOSTS = [f"127.0.0.{i}" for i in range(1, ORIGINS + 1)]
Row = dict[str, float]


def _urls(port: int, paths: int = PATHS) -> list[str]:
    # Interleaved by origin, as a monitor's schedule spreads deployments of one host.
    return [f"http://{h}:{port}/health?d={j}" for j in range(paths) for h in HOSTS]


async def _burst(port: int) -> Row:
    checker = DefaultHealthChecker()
    # One check first: the loop creates a descriptor or two of its own on first use.
    if not (await checker.check_health_async(f"http://{HOSTS[0]}:{port}/health", 5)).success:
        raise RuntimeError("nginx does not answer")
    await checker.release_loop()
    proc = psutil.Process()
    base = proc.num_fds()
    peak = base
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.num_fds())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    urls = _urls(port)
    t0, c0 = time.monotonic(), time.process_time()
    try:
        results = await asyncio.gather(*(checker.check_health_async(u, 30) for u in urls))
    finally:
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        stop.set()
        await sampler
        await checker.aclose()
    ok = sum(r.success for r in results)
    return {
        "checks": float(len(results)),
        "failed": float(len(results) - ok),
        "wall_s": wall,
        "cpu_ms": cpu * 1000 / len(results),
        "fds_added": float(peak - base),
        "bound": float(checker.max_connections),
    }


async def _spread(port: int, seconds: float, max_connections: int | None) -> Row:
    checker = DefaultHealthChecker(max_connections=max_connections)
    # Few paths per origin, so every URL is checked again and again as in the monitor's
    # steady state (100,000 would each be new within a few seconds: parsing, not pooling).
    urls = _urls(port, SPREAD_PATHS)
    done = failed = 0
    stop = False

    async def worker(start: int) -> None:
        nonlocal done, failed
        i = start
        while not stop:
            if not (await checker.check_health_async(urls[i % len(urls)], 5)).success:
                failed += 1
            done += 1
            i += CONCURRENCY

    tasks = [asyncio.create_task(worker(k)) for k in range(CONCURRENCY)]
    await asyncio.sleep(WARMUP_S)
    n0, f0, t0, c0 = done, failed, time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    n1, f1, t1, c1 = done, failed, time.monotonic(), time.process_time()
    stop = True
    await asyncio.wait_for(asyncio.gather(*tasks), 15)
    await checker.aclose()
    n = n1 - n0
    return {
        "rate": n / (t1 - t0),
        "cpu_ms": (c1 - c0) * 1000 / max(n, 1),
        "failed": float(f1 - f0),
        "bound": float(checker.max_connections),
    }


MODES = {
    "burst": ("100,000 deployments over 200 origins, all at once, defaults", None),
    "spread": (f"{CONCURRENCY} concurrent over 200 origins, defaults", None),
    "spread-bound-40": (
        f"{CONCURRENCY} concurrent over 200 origins, `max_connections=40` (tuning)",
        40,
    ),
}


def _one(mode: str, port: int, seconds: float) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[0]})
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        if mode == "burst":
            row = runner.run(_burst(port))
        else:
            row = runner.run(_spread(port, seconds, MODES[mode][1]))
    print(json.dumps(row))


def _spawn(mode: str, port: int, seconds: float) -> Row:
    out = subprocess.run(
        [sys.executable, __file__, "--one", mode, str(port), str(seconds)],
        capture_output=True, text=True, timeout=seconds + 300, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed (exit {out.returncode}): {out.stderr[-1500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _one(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    cores = sorted(os.sched_getaffinity(0))
    server_cpus = {cores[1]} if len(cores) > 1 else None
    rows: dict[str, list[Row]] = {}
    with Nginx(listen_hosts=HOSTS, worker_connections=30_000, cpus=server_cpus) as nginx:
        for mode in MODES:
            rows[mode] = [_spawn(mode, nginx.port, seconds) for _ in range(RUNS)]
    print(report(rows, seconds))


def report(rows: dict[str, list[Row]], seconds: float) -> str:
    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[mode])

    def span(mode: str, key: str, spec: str) -> str:
        values = [r[key] for r in rows[mode]]
        return f"{format(min(values), spec)}-{format(max(values), spec)}"

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    burst = rows["burst"]
    lines = [
        "## Connection pools across many origins (bench_pool.py)\n",
        f"Command: `python benchmarks/bench_pool.py {seconds:g}`. One nginx worker on "
        f"{ORIGINS} loopback addresses (one port), pinned to its own core; each client in "
        f"its own process on another core, {RUNS} runs (median, range). `ulimit -n` "
        f"{soft}. Load average at the end: "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + ".\n",
        "| run | checks | failed | wall s (range) | CPU ms per check (range) | fds added, peak | bound (`max_connections`) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {MODES['burst'][0]} | {med('burst', 'checks'):,.0f} | "
        f"{sum(r['failed'] for r in burst):.0f} | {med('burst', 'wall_s'):.1f} "
        f"({span('burst', 'wall_s', '.1f')}) | {med('burst', 'cpu_ms'):.3f} "
        f"({span('burst', 'cpu_ms', '.3f')}) | {max(r['fds_added'] for r in burst):,.0f} | "
        f"{med('burst', 'bound'):,.0f} |",
        "",
        "| run | checks/s (median) | range | CPU ms per check (range) | failed | bound |",
        "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for mode in ("spread", "spread-bound-40"):
        lines.append(
            f"| {MODES[mode][0]} | {med(mode, 'rate'):,.0f} | {span(mode, 'rate', ',.0f')} | "
            f"{med(mode, 'cpu_ms'):.3f} ({span(mode, 'cpu_ms', '.3f')}) | "
            f"{sum(r['failed'] for r in rows[mode]):.0f} | {med(mode, 'bound'):,.0f} |"
        )
    fds_ok = all(r["fds_added"] <= r["bound"] for r in burst)
    lines.append(
        f"\nfds within the bound in every burst run: "
        f"**{'yes' if fds_ok else 'NO'}**; every check succeeded: "
        f"**{'yes' if not any(r['failed'] for rs in rows.values() for r in rs) else 'NO'}**. "
        "A burst queues most checks behind the per-origin and total limits, so its CPU per "
        "check includes waiting in line (and parsing each URL once); the spread rows are "
        "the steady state."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
