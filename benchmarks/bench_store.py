"""SQLiteStore: health results written per second and database bytes per million results.

Prints one Markdown section. Run: ``.venv/bin/python benchmarks/bench_store.py [ROWS]``.
"""

from __future__ import annotations

import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.history.sqlite import schema as sql
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.service.config import DEFAULT_MAX_AGE, DEFAULT_MAX_ROWS

DEPLOYMENTS = 10_000


def _results(n: int) -> list[tuple[str, HealthCheckResult]]:
    """``n`` results as 10,000 deployments checked every 10 s would produce them."""
    rng = random.Random(42)
    t0 = time.time() - n / (DEPLOYMENTS / 10)
    out = []
    for i in range(n):
        ok = rng.random() > 0.02
        out.append(
            (
                f"deployment-{i % DEPLOYMENTS:05d}",
                HealthCheckResult(
                    success=ok,
                    status="healthy" if ok else "unhealthy",
                    response_time_ms=round(rng.uniform(0.5, 40.0), 3),
                    timestamp=t0 + i / (DEPLOYMENTS / 10),
                    error_message=None if ok else "HTTP 500",
                    details={"http_status": 200 if ok else 500},
                ),
            )
        )
    return out


def _store_run(path: Path, rows: list[tuple[str, HealthCheckResult]]) -> tuple[float, float]:
    """(rows/s from first add to committed, µs per add_health on the caller's thread)."""
    store = SQLiteStore(path)
    try:
        t0 = time.perf_counter()
        for dep, r in rows:
            store.add_health(dep, r)
        t_add = time.perf_counter() - t0
        store.flush()
        t_all = time.perf_counter() - t0
        assert store.stats()["written"] == len(rows) and store.stats()["dropped"] == 0
    finally:
        store.close()
    return len(rows) / t_all, t_add / len(rows) * 1e6


def _raw_run(path: Path, rows: list[tuple[str, HealthCheckResult]]) -> float:
    """rows/s of plain executemany into the same schema in one transaction (the floor cost)."""
    sql.init_schema(str(path))
    conn = sql.connect(str(path))
    try:
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO keys (key_id, deployment_id) VALUES (?, ?)",
            [(i, f"deployment-{i:05d}") for i in range(DEPLOYMENTS)],
        )
        conn.executemany(
            sql.INSERT_HEALTH,
            [sql.health_row(int(dep[-5:]), r) for dep, r in rows],
        )
        conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - t0)
    finally:
        conn.close()


def _memory_add_us(rows: list[tuple[str, HealthCheckResult]]) -> float:
    mem = MemoryStore(max_history=1000)
    t0 = time.perf_counter()
    for dep, r in rows:
        mem.add_health(dep, r)
    return (time.perf_counter() - t0) / len(rows) * 1e6


def _prune_run(path: Path, keep: int) -> tuple[float, int, float]:
    """(seconds for a retention pass, rows pruned, longest add+flush while it ran in ms)."""
    store = SQLiteStore(path, max_rows_per_deployment=keep)
    try:
        t0 = time.perf_counter()
        pruner = threading.Thread(target=store.prune)
        pruner.start()
        worst = 0.0
        probe = HealthCheckResult(True, "healthy", 1.0)
        while pruner.is_alive():
            t = time.perf_counter()
            store.add_health("probe", probe)
            store.flush()
            worst = max(worst, time.perf_counter() - t)
        pruner.join()
        return time.perf_counter() - t0, store.stats()["pruned"], worst * 1e3
    finally:
        store.close()


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rows = _results(n)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [_store_run(Path(tmp) / f"store{i}.db", rows) for i in range(3)]
        rate = statistics.median(r[0] for r in runs)
        add_us = statistics.median(r[1] for r in runs)
        raw_rate = statistics.median(_raw_run(Path(tmp) / f"raw{i}.db", rows) for i in range(3))
        mem_us = _memory_add_us(rows)
        db = Path(tmp) / "store0.db"
        size = db.stat().st_size + sum(
            p.stat().st_size for p in (Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()
        )
        jsonl = sum(len(orjson.dumps(r.to_dict())) + 1 for _, r in rows)
        store = SQLiteStore(db)
        try:
            q_t = []
            for i in range(200):
                t0 = time.perf_counter()
                store.health_history(f"deployment-{i * 37 % DEPLOYMENTS:05d}", limit=100)
                q_t.append(time.perf_counter() - t0)
            query_us = statistics.median(q_t) * 1e6
        finally:
            store.close()
        prune_s, pruned, worst_ms = _prune_run(db, keep=2)

    per_million = size / n * 1e6
    print("## History store (SQLiteStore)\n")
    print(f"Command: `.venv/bin/python benchmarks/bench_store.py {n}`  ")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}. {n:,} health results "
        f"spread over {DEPLOYMENTS:,} deployments (WAL, synchronous=NORMAL, default batching); "
        "medians of 3 runs.\n"
    )
    print("| figure | SQLiteStore | reference (same run) |")
    print("|---|---|---|")
    print(
        f"| health results written per second (first add to committed) | {rate:,.0f} | "
        f"plain `executemany` into the same schema, one transaction: {raw_rate:,.0f} |"
    )
    print(
        f"| µs per `add_health` on the caller's thread | {add_us:.2f} | "
        f"`MemoryStore.add_health`: {mem_us:.2f} |"
    )
    print(
        f"| database bytes per million results (from {n:,}) | {per_million / 1e6:,.1f} MB | "
        f"JSON lines of the same results: {jsonl / n:,.1f} MB |"
    )
    print(f"| µs per `health_history(id, limit=100)` | {query_us:,.0f} | |")
    print(
        f"| retention pass to 2 rows per deployment: {pruned:,} rows deleted | "
        f"{prune_s:,.2f} s | longest add + `flush()` meanwhile: {worst_ms:,.0f} ms |"
    )
    print(
        "\nAt 10,000 deployments checked every 10 s the monitor produces 1,000 results/s; "
        f"the store's write rate is {rate / 1000:,.0f}x that."
    )
    bound = DEFAULT_MAX_ROWS * DEPLOYMENTS * per_million / 1e6
    print(
        f"\nThe service's default retention ({DEFAULT_MAX_AGE / 86400:g} days, "
        f"{DEFAULT_MAX_ROWS:,} rows per deployment) bounds 10,000 deployments at 10 s to "
        f"{DEFAULT_MAX_ROWS * DEPLOYMENTS / 1e6:,.1f} M health rows: about "
        f"{bound / 2**30:,.1f} GiB at the bytes per row measured here (without it: "
        f"{1000 * 86400 * per_million / 1e6 / 2**30:,.1f} GiB more each day). Resource rows are "
        "stored only for deployments with a process (the machine's metrics are not copied "
        "under each deployment), bounded the same way."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
