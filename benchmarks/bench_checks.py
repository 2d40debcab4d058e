"""Health checks per second on one core, with keep-alive, against a local nginx /health.

Beside it, in the same run: wrk against the same nginx (the machine's limit), a plain
aiohttp request loop, the spec's synchronous ``check_health`` from 8 threads, and Debian's
prometheus-blackbox-exporter probing the nginx as Prometheus drives it (wrk on
/probe?target=...). Each Python client runs in its own process (``--one``), three times:
median and range. Each phase is bounded (default 3 s measured after 0.5 s warm-up).
Run: python benchmarks/bench_checks.py [seconds]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nginx import Nginx

from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.processes import free_port

CONCURRENCY = 50
WARMUP_S = 0.5
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
Row = dict[str, float | str]


async def _drive(check: Callable[[], Awaitable[bool]], seconds: float) -> Row:
    """Run CONCURRENCY workers calling ``check`` in a loop; measure after a warm-up."""
    done = failed = 0
    stop = False

    async def worker() -> None:
        nonlocal done, failed
        while not stop:
            if not await check():
                failed += 1
            done += 1

    tasks = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
    await asyncio.sleep(WARMUP_S)
    n0, f0, t0, c0 = done, failed, time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    n1, f1, t1, c1 = done, failed, time.monotonic(), time.process_time()
    stop = True
    await asyncio.wait_for(asyncio.gather(*tasks), 15)
    n, wall, cpu = n1 - n0, t1 - t0, c1 - c0
    return {
        "rate": n / wall,
        "cpu_ms": cpu * 1000 / max(n, 1),
        "cores": cpu / wall,
        "failed": float(f1 - f0),
    }


def run_ours(url: str, seconds: float, use_uvloop: bool) -> Row:
    async def main() -> Row:
        checker = DefaultHealthChecker()

        async def check() -> bool:
            return (await checker.check_health_async(url, 5)).success

        try:
            return await _drive(check, seconds)
        finally:
            await checker.aclose()

    factory = uvloop.new_event_loop if use_uvloop else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def run_aiohttp(url: str, seconds: float, use_uvloop: bool) -> Row:
    async def main() -> Row:
        timeout = aiohttp.ClientTimeout(total=5)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def check() -> bool:
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        return resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    return False

            return await _drive(check, seconds)

    factory = uvloop.new_event_loop if use_uvloop else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def run_sync(url: str, seconds: float, threads: int = 8) -> Row:
    """The spec's blocking ``check_health`` from ``threads`` threads, one checker shared."""
    checker = DefaultHealthChecker()
    done = failed = 0
    stop = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        nonlocal done, failed
        while not stop.is_set():
            ok = checker.check_health(url, 5).success
            with lock:
                done += 1
                failed += 0 if ok else 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    time.sleep(WARMUP_S)
    n0, f0, t0, c0 = done, failed, time.monotonic(), time.process_time()
    time.sleep(seconds)
    n1, f1, t1, c1 = done, failed, time.monotonic(), time.process_time()
    stop.set()
    for t in pool:
        t.join(15)
    checker.close()
    n, wall, cpu = n1 - n0, t1 - t0, c1 - c0
    return {"rate": n / wall, "cpu_ms": cpu * 1000 / max(n, 1), "cores": cpu / wall,
            "failed": float(f1 - f0)}  # fmt: skip


CLIENTS = {
    "ours-uvloop": ("**DefaultHealthChecker**, uvloop", lambda u, s: run_ours(u, s, True)),
    "ours-asyncio": ("DefaultHealthChecker, default asyncio loop", lambda u, s: run_ours(u, s, False)),
    "sync-8": ("DefaultHealthChecker.check_health (sync) from 8 threads", run_sync),
    "aiohttp-uvloop": ("plain aiohttp request loop, uvloop", lambda u, s: run_aiohttp(u, s, True)),
    "aiohttp-asyncio": ("plain aiohttp request loop, asyncio", lambda u, s: run_aiohttp(u, s, False)),
}  # fmt: skip
RUNS = 3


def _one(name: str, url: str, seconds: float) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[0]})  # each Python client runs on exactly one core
    print(json.dumps(CLIENTS[name][1](url, seconds)))


def _spawn(name: str, url: str, seconds: float) -> Row:
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, url, str(seconds)],
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {out.returncode}): {out.stderr[-1500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _median(runs: list[Row]) -> Row:
    """Median of each figure, with the range of the rate as text."""
    row: Row = {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}
    rates = [float(r["rate"]) for r in runs]
    row["range"] = f"{min(rates):,.0f}-{max(rates):,.0f}"
    return row


def _wrk(url: str, seconds: float, connections: int, cpus: set[int] | None) -> float:
    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        preexec_fn=pin,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no rate: {out[-500:]}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} non-2xx answers from {url}")
    return float(m.group(1))


def run_blackbox(target: str, seconds: float) -> Row | str:
    if not os.path.exists(BLACKBOX):
        return "not installed"
    if not shutil.which("wrk"):
        return "wrk not installed (drives the exporter)"
    tmp = Path(tempfile.mkdtemp(prefix="crackseg-bbe-"))
    cfg = tmp / "blackbox.yml"
    cfg.write_text(
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n"
        "    http:\n      preferred_ip_protocol: ip4\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [BLACKBOX, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        query = urllib.parse.urlencode({"target": target, "module": "http_2xx"})
        probe = f"http://127.0.0.1:{port}/probe?{query}"
        deadline = time.monotonic() + 15
        while True:
            try:
                body = urllib.request.urlopen(probe, timeout=5).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return "did not start"
                time.sleep(0.1)
        if "probe_success 1" not in body:
            return "probe failed"
        ps = psutil.Process(proc.pid)
        c0, t0 = sum(ps.cpu_times()[:2]), time.monotonic()
        rate = _wrk(probe, seconds, CONCURRENCY, None)
        cpu, wall = sum(ps.cpu_times()[:2]) - c0, time.monotonic() - t0
        return {"rate": rate, "cpu_ms": cpu * 1000 / max(rate * wall, 1), "cores": cpu / wall}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _one(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    cores = sorted(os.sched_getaffinity(0))
    client_cpus = {cores[0]} if len(cores) > 1 else None
    server_cpus = {cores[1]} if len(cores) > 1 else None
    rows: list[tuple[str, Row | str]] = []
    with Nginx(workers=1, cpus=server_cpus) as nginx:
        url = nginx.url("/health")
        wrk: Row | str = "not installed"
        if shutil.which("wrk"):
            wrk = {"rate": _wrk(url, seconds, CONCURRENCY, client_cpus)}
        rows.append((f"wrk -t1 -c{CONCURRENCY} (C, the machine's limit)", wrk))
        for name, (label, _) in CLIENTS.items():
            rows.append((label, _median([_spawn(name, url, seconds) for _ in range(RUNS)])))
        rows.append(
            (
                f"prometheus-blackbox-exporter, wrk -c{CONCURRENCY} on /probe (all cores)",
                run_blackbox(url, seconds),
            )
        )
    print(report(rows, seconds, client_cpus is not None))


def report(rows: list[tuple[str, Row | str]], seconds: float, pinned: bool) -> str:
    def fmt(row: Row | str, key: str, spec: str) -> str:
        if isinstance(row, str):
            return row if key == "rate" else "-"
        value = row.get(key)
        if key == "per_cpu_s" and row.get("cpu_ms"):
            value = 1000 / float(row["cpu_ms"])
        return "-" if value is None else format(float(value), spec)

    lines = [
        "## Health checks per second (bench_checks.py)\n",
        f"Command: `python benchmarks/bench_checks.py {seconds:g}`. One nginx worker serving "
        "`location /health { return 200 '{\"status\":\"healthy\"}'; }` on 127.0.0.1"
        + (", pinned to its own core; each Python client and wrk pinned to one other core" if pinned else "")
        + f". Keep-alive, {CONCURRENCY} concurrent checks, each phase {seconds:g} s after a "
        f"{WARMUP_S:g} s warm-up, all measured in this run. CPU is the client process's "
        "(for the exporter: the exporter's, on all cores); checks per CPU-second is the "
        "one-core ceiling it implies. Load average at the end: "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (other work on the machine lowers the rates, not the CPU cost).\n",
        "| client | checks/s (median) | range of 3 runs | CPU ms per check | checks per CPU-second | cores used | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, row in rows:
        span = row.get("range", "") if isinstance(row, dict) else ""
        lines.append(
            f"| {name} | {fmt(row, 'rate', ',.0f')} | {span} | {fmt(row, 'cpu_ms', '.3f')} | "
            f"{fmt(row, 'per_cpu_s', ',.0f')} | {fmt(row, 'cores', '.2f')} | "
            f"{fmt(row, 'failed', '.0f')} |"
        )
    ours, sync, aio = rows[1][1], rows[3][1], rows[4][1]
    if isinstance(ours, dict) and isinstance(aio, dict):
        rate = float(ours["rate"])
        verdict = "met" if rate >= 10_000 else "NOT met"
        lines.append(
            f"\nTarget >= 10,000 checks/s on one core: **{verdict}** ({rate:,.0f}/s, "
            f"{rate / float(aio['rate']):.1f}x the plain aiohttp loop's rate, "
            f"{float(aio['cpu_ms']) / float(ours['cpu_ms']):.1f}x less CPU per check; both on "
            "uvloop). Rates depend on what else the machine runs; CPU per check does not."
        )
    if isinstance(ours, dict) and isinstance(sync, dict):
        share = float(sync["rate"]) / float(ours["rate"]) * 100
        lines.append(
            f"\nSynchronous `check_health` from 8 threads: {share:.0f} % of the async rate "
            f"(target >= 40 %: **{'met' if share >= 40 else 'NOT met'}**)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
