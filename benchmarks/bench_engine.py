"""Scheduling many deployments with the defaults a user gets, beside the client's own cost.

Each configuration runs in its own process (``--one``), pinned to one core with nginx on
another, so no run inherits another's heap, threads or sockets. Small configurations run
three times (median and range) where it matters (the client, 10,000 in memory); the other rows
once (this benchmark alone takes about 11 minutes). The window must cover one interval (10 s),
and starts once no deadline is still stretched by the load shedding of the first round.
Defaults: ``DeploymentHealthMonitor()`` as constructed by a user, no gc tuning; the 10,000
rows start with every deployment's in-memory history already at its 1,000-result bound (a
monitor after ~3 hours), so its memory and GC cost are those of a full history.

The 100,000 rows run twice: with the library's defaults, and with the service's GC policy
(``tune_gc_for_long_running()`` after the first round: labelled as tuning).

Reference in the same run: the health checker alone, 50 concurrent checks in a loop against
the same nginx, in its own process: its CPU per check is the floor the engine is measured
against (issue 14's target: engine CPU per check <= 3x the client's). A second reference
paces the checker alone like the 10,000 row (1,000 checks/s, 20 every 20 ms): a sparse
schedule wakes the loop for few answers at a time, which costs more per check than a
saturated loop, with or without the monitor around it.

Run: python benchmarks/bench_engine.py [seconds-per-run [configuration ...]]
"""

from __future__ import annotations

import asyncio
import collections
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from _nginx import Nginx

from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.http import DefaultHealthChecker
from crackseg.utils.deployment.monitoring.engine import PHASE_GRID
from crackseg.utils.deployment.monitoring.gcpolicy import tune_gc_for_long_running

INTERVAL = 10.0
ORIGINS = 200  # 127.0.0.1-200 on one port: ~200 origins, many deployments (paths) each
CONFIGS: dict[str, dict[str, Any]] = {
    "client": {"label": "health checker alone, 50 concurrent (reference)", "runs": 3},
    "client-paced": {
        "label": "health checker alone, paced like the 10,000 row (reference): 1,000 checks/s "
        f"over 10,000 URLs, {round(PHASE_GRID * 1000)} started every {PHASE_GRID * 1000:g} ms, "
        "a task each",
        "runs": 3,
    },
    "1k": {"n": 1_000, "label": "1,000 deployments, memory, defaults", "runs": 1},
    "10k": {
        "n": 10_000,
        "full": True,
        "label": "10,000, memory, defaults, full history",
        "runs": 3,
    },
    "10k-conditions": {
        "n": 10_000,
        "full": True,
        "conditions": ["[STATUS] == 200", "[BODY].status == healthy", "[RESPONSE_TIME] < 1000"],
        "label": "10,000, memory, full history, three conditions on the JSON body",
        "runs": 3,
    },
    "10k-sqlite": {
        "n": 10_000,
        "sqlite": True,
        "label": "10,000, SQLiteStore, defaults",
        "runs": 1,
    },
    "100k": {"n": 100_000, "label": "100,000 over 200 origins, memory, defaults", "runs": 3},
    "100k-gc": {
        "n": 100_000,
        "gc_policy": True,
        "label": "100,000 over 200 origins, memory, the service's GC policy (tuning)",
        "runs": 1,
    },
}
TARGETS = {
    "10k": "< 8 % CPU, all done, p99 lateness < 20 ms, no pause > 50 ms",
    "10k-conditions": "CPU per check <= 1.5x the 10k row's (issue 21)",
    "100k": "all done, p99 < 100 ms, jitter p99 < 200 ms, 0 false failures, RSS < 1.5 GB",
    "100k-gc": "the same",
}


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _rates(n: float, cpu: float, wall: float) -> dict[str, float]:
    return {"rate": n / wall, "cpu_ms": cpu * 1000 / max(n, 1), "cpu": cpu / wall * 100}


def _on_own_loop(main: Callable[[], Coroutine[Any, Any, dict[str, float]]]) -> dict[str, float]:
    from crackseg.utils.deployment.eventloop import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def run_client(port: int, seconds: float) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/health"
    proc = psutil.Process()

    async def main() -> dict[str, float]:
        checker = DefaultHealthChecker()
        done = 0
        stop = False

        async def worker() -> None:
            nonlocal done
            while not stop:
                await checker.check_health_async(url, 5)
                done += 1

        tasks = [asyncio.create_task(worker()) for _ in range(50)]
        await asyncio.sleep(0.5)
        n0, c0, t0 = done, _cpu(proc), time.monotonic()
        await asyncio.sleep(seconds)
        n, cpu, wall = done - n0, _cpu(proc) - c0, time.monotonic() - t0
        stop = True
        await asyncio.gather(*tasks)
        await checker.aclose()
        return _rates(n, cpu, wall)

    return _on_own_loop(main)


def run_client_paced(port: int, seconds: float) -> dict[str, float]:
    """The checker at the 10,000 row's traffic shape, without the monitor around it."""
    urls = [f"http://127.0.0.{1 + i % ORIGINS}:{port}/health?d={i}" for i in range(10_000)]
    proc = psutil.Process()
    step = PHASE_GRID  # the monitor's wake-ups at 1,000 checks/s
    batch = round(1000 * step)

    async def main() -> dict[str, float]:
        checker = DefaultHealthChecker()
        loop = asyncio.get_running_loop()
        done = 0
        times: list[float] = []

        async def one(url: str) -> None:
            nonlocal done
            result = await checker.check_health_async(url, 10)
            done += 1
            if t0:
                times.append(result.response_time_ms)

        tasks: set[asyncio.Task[None]] = set()
        i, nxt = 0, time.monotonic()
        warm_until = nxt + INTERVAL + 1.0  # every URL once: connections made, targets parsed
        t0 = c0 = n0 = 0.0
        while True:
            now = time.monotonic()
            if not t0 and now >= warm_until:
                t0, c0, n0 = now, _cpu(proc), float(done)
            if t0 and now >= t0 + seconds:
                break
            for _ in range(batch):
                task = loop.create_task(one(urls[i % len(urls)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            nxt += step
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
        n, cpu, wall = done - n0, _cpu(proc) - c0, time.monotonic() - t0
        await asyncio.gather(*tasks)
        await checker.aclose()
        return _rates(n, cpu, wall) | _response_times(times)

    return _on_own_loop(main)


def _response_times(ms: list[float]) -> dict[str, float]:
    """Median and p99 of the response times recorded: what a burst of starts adds to them."""
    ms = sorted(ms)
    if not ms:
        return {}
    return {"rt50": ms[len(ms) // 2], "rt99": ms[int(0.99 * (len(ms) - 1))]}


def _prefill(monitor: DeploymentHealthMonitor, n: int) -> None:
    """Every deployment's history at its bound: one filled through add_health, copied (fast)."""
    store = monitor.store
    per = store.max_history  # type: ignore[attr-defined]
    t0 = time.time() - per * INTERVAL
    for k in range(per):
        store.add_health(
            "d0", HealthCheckResult(True, "healthy", 1.0 + k % 5 * 0.25, t0 + k * INTERVAL,
                                    None, {"http_status": 200}),
        )  # fmt: skip
    template = store._health["d0"]  # type: ignore[attr-defined]
    for i in range(1, n):
        store._health[f"d{i}"] = _clone(template)  # type: ignore[attr-defined]


def _clone(series: Any) -> Any:
    """A copy of one deployment's column series with its own buffers (deepcopy is 10x slower)."""
    c = copy.copy(series)
    c.ts = copy.copy(series.ts)
    c.ts._deltas = series.ts._deltas[:]
    c.numbers = [copy.copy(col) for col in series.numbers]
    for col, old in zip(c.numbers, series.numbers, strict=True):
        col._a = old._a[:]
    c.shapes = copy.copy(series.shapes)
    c.shapes._ids = series.shapes._ids[:]
    c.shapes._table = list(series.shapes._table)
    c.shapes._index = dict(series.shapes._index)
    c.odd = {}
    return c


class _FullCollections:
    """Durations of the full (generation 2) garbage collections while it listens."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        elif info["generation"] == 2:
            self.seconds.append(time.perf_counter() - self._t)

    def stop(self) -> None:
        gc.callbacks.remove(self._cb)


def run_monitor(cfg: dict[str, Any], port: int, seconds: float, tmp: str) -> dict[str, float]:
    n = int(cfg["n"])
    proc = psutil.Process()
    store = SQLiteStore(Path(tmp) / "history.db") if cfg.get("sqlite") else None
    monitor = DeploymentHealthMonitor(store=store)  # the library's defaults
    check: dict[str, Any] = {"conditions": cfg["conditions"]} if cfg.get("conditions") else {}
    for i in range(n):
        monitor.add_deployment_monitoring(
            f"d{i}", f"http://127.0.0.{1 + i % ORIGINS}:{port}/health?d={i}",
            check_interval=INTERVAL, **check,
        )  # fmt: skip
    if cfg.get("full"):
        _prefill(monitor, n)
    monitor.start_monitoring()
    # One whole round first: first checks start 1,000 a second (n ms for n deployments).
    time.sleep(max(INTERVAL, n / 1000.0) + 2.0)
    if cfg.get("gc_policy"):
        tune_gc_for_long_running()  # what the service applies once its deployments are in
    # Measure the monitor keeping up, not shedding load: stalls of the first round (its
    # histories being started) stretch intervals for a while after it.
    # Deadlines set while intervals were stretched stay out for up to 8 intervals; the
    # window starts once every deployment's next check is due within one interval.
    settle = time.monotonic() + 120.0
    while time.monotonic() < settle and (
        monitor.engine_stats()["interval_stretch"] > 1.0
        or max(s.due for s in list(monitor._engine._slots.values())) - time.monotonic()
        > INTERVAL + 0.5
    ):
        time.sleep(1.0)
    stretch0 = float(monitor.engine_stats()["interval_stretch"])
    monitor._engine.reset_stats()
    pauses = _FullCollections()
    cpu0, t0, wall0 = _cpu(proc), time.monotonic(), time.time()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    cpu = _cpu(proc) - cpu0
    pauses.stop()
    stats = monitor.engine_stats()
    rss = proc.memory_info().rss / 2**20
    monitor.stop_monitoring()
    gaps: list[float] = []
    times: list[float] = []
    false_failures = 0
    errors: collections.Counter[str] = collections.Counter()
    for i in range(n):
        rows = monitor.get_health_history(f"d{i}", since=wall0)
        for r in rows:
            if not r.success:
                false_failures += 1
                errors[str(r.error_message)[:60]] += 1
        times += [r.response_time_ms for r in rows]
        ts = [r.timestamp for r in rows]
        gaps += [abs(b - a - INTERVAL) for a, b in itertools.pairwise(ts)]
    monitor.close()
    gaps.sort()
    done = stats["checks_done"]
    return {
        "cpu": cpu / wall * 100.0,
        "cpu_ms": cpu * 1000.0 / max(done, 1),
        "due": stats["checks_due"],
        "done": done,
        "p99": stats["lateness_p99_ms"] or 0.0,
        "max": stats["lateness_max_ms"] or 0.0,
        "stall": stats.get("loop_lag_max_ms") or 0.0,
        "jitter": gaps[int(0.99 * (len(gaps) - 1))] * 1000.0 if gaps else 0.0,
        "false": float(false_failures),
        "aside": float(stats.get("checks_discarded_overload", 0)),
        "rss": rss,
        "stretch": max(stretch0, float(stats["interval_stretch"])),
        "gc2": float(len(pauses.seconds)),
        "gc2_max": max(pauses.seconds, default=0.0) * 1000.0,
        "errors": "; ".join(f"{n} x {e}" for e, n in errors.most_common(3)),  # type: ignore[dict-item]
    } | _response_times(times)


def _one(name: str, port: int, seconds: float) -> None:
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[0]})  # the monitor gets one core
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CONFIGS[name]
        row = (
            run_client(port, seconds)
            if name == "client"
            else run_client_paced(port, seconds)
            if name == "client-paced"
            else run_monitor(cfg, port, seconds, tmp)
        )
    print(json.dumps(row))


def _spawn(name: str, port: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, str(port), str(seconds)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {out.returncode}): {out.stderr[-1500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _fmt(values: list[float], spec: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, spec)
    return f"{format(med, spec)} ({format(min(values), spec)}-{format(max(values), spec)})"


def _rt(rs: list[dict[str, float]]) -> str:
    if any("rt50" not in r for r in rs):
        return ""
    return f"{_fmt([r['rt50'] for r in rs], '.2f')} / {_fmt([r['rt99'] for r in rs], '.2f')} ms"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        _one(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 12.0
    wanted = set(sys.argv[2:]) | {"client", "client-paced"} if len(sys.argv) > 2 else set(CONFIGS)
    cores = sorted(os.sched_getaffinity(0))
    listen = [f"127.0.0.{h}" for h in range(1, ORIGINS + 1)]
    results: dict[str, list[dict[str, float]]] = {}
    with Nginx(listen_hosts=listen, cpus={cores[-1]} if len(cores) > 1 else None) as nginx:
        for name, cfg in CONFIGS.items():
            if name in wanted:
                results[name] = [_spawn(name, nginx.port, seconds) for _ in range(cfg["runs"])]
    client_ms = statistics.median(r["cpu_ms"] for r in results["client"])
    print("## Scheduling many deployments (bench_engine.py)\n")
    print(
        f"Command: `python benchmarks/bench_engine.py {seconds:g}`. Each row is a fresh process "
        f"pinned to one core (nginx on another), deployments at a {INTERVAL:g} s interval over "
        f"{ORIGINS} loopback addresses of one nginx, measured for {seconds:g} s after one whole "
        "round; `DeploymentHealthMonitor()` defaults, no gc tuning. Median (range) of the runs. "
        "The machine is shared with other work: compare within a run. Load average at the end: "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + ".\n"
    )
    print(
        "| configuration | runs | CPU % of one core | CPU ms per check | x client | done / due | "
        "p99 lateness | max lateness | longest loop stall | full GCs (longest) | gap jitter p99 | "
        "false failures (set aside) | response time p50 / p99 | RSS | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    c = results["client"]
    print(
        f"| {CONFIGS['client']['label']}: {_fmt([r['rate'] for r in c], ',.0f')} checks/s | "
        f"{len(c)} | {_fmt([r['cpu'] for r in c], '.0f')} | {_fmt([r['cpu_ms'] for r in c], '.3f')} "
        "| 1 | | | | | | | | | | |"
    )
    paced = results.get("client-paced")
    if paced:
        ratio = [r["cpu_ms"] / client_ms for r in paced]
        print(
            f"| {CONFIGS['client-paced']['label']} | {len(paced)} | "
            f"{_fmt([r['cpu'] for r in paced], '.1f')} | {_fmt([r['cpu_ms'] for r in paced], '.3f')} | "
            f"{_fmt(ratio, '.1f')} | | | | | | | | {_rt(paced)} | | |"
        )
    for name, cfg in CONFIGS.items():
        if name in ("client", "client-paced") or name not in results:
            continue
        rs = results[name]
        ratio = [r["cpu_ms"] / client_ms for r in rs]
        print(
            f"| {cfg['label']} | {len(rs)} | {_fmt([r['cpu'] for r in rs], '.1f')} | "
            f"{_fmt([r['cpu_ms'] for r in rs], '.3f')} | {_fmt(ratio, '.1f')} | "
            f"{_fmt([r['done'] for r in rs], ',.0f')} / {_fmt([r['due'] for r in rs], ',.0f')} | "
            f"{_fmt([r['p99'] for r in rs], '.1f')} ms | {_fmt([r['max'] for r in rs], '.0f')} ms | "
            f"{_fmt([r['stall'] for r in rs], '.0f')} ms | "
            f"{_fmt([r.get('gc2', 0.0) for r in rs], '.0f')} ({_fmt([r.get('gc2_max', 0.0) for r in rs], '.0f')} ms) | "
            f"{_fmt([r['jitter'] for r in rs], '.0f')} ms | "
            f"{_fmt([r['false'] for r in rs], '.0f')} ({_fmt([r.get('aside', 0.0) for r in rs], '.0f')}) | {_rt(rs)} | {_fmt([r['rss'] for r in rs], '.0f')} MB | "
            f"{TARGETS.get(name, '')} |"
        )
    print(
        "\nx client: the engine's CPU per check over the checker's alone at 50 concurrent "
        "(target <= 3); the paced reference is the checker alone at the 10,000 row's "
        "traffic shape, whose sparse wake-ups cost more per check than a saturated loop's. "
        "False failures: failed checks of healthy targets recorded against them; set aside: "
        "failures the monitor recognised as its own (its loop stalled) and did not record. "
        "CPU % below 100 with lateness rising means the core was not the monitor's alone "
        "(see the load average). Gap jitter: |time between a deployment's consecutive results "
        "- interval|. Response time: as recorded in the results (the paced reference: as its "
        "checks returned them), what starting a grid step's checks together adds to them."
    )

    for name, rs in results.items():
        shed = [r.get("stretch", 1.0) for r in rs if r.get("stretch", 1.0) > 1.0]
        if shed:
            print(
                f"\nIn `{name}` the monitor shed load (intervals stretched up to {max(shed):.2f}x)."
            )
        seen = [str(r["errors"]) for r in rs if r.get("errors")]
        if seen:
            print(f"\nFailures recorded in `{name}`: " + " | ".join(seen))


if __name__ == "__main__":
    main()
