"""Health rollups of :class:`~.store.SQLiteStore`: per deployment, per :data:`WIDTH`-second
bucket of time, what a range chart needs, so a 30-day range reads ~8,600 rollup rows instead
of ~260,000 health rows.

A rollup row holds the bucket's check count, its healthy/degraded/unhealthy counts, and of
its finite response times the count, min, max, sum and a sparse log histogram (bins
:data:`GROWTH` apart, so a percentile read from it is within ~4% of the measured one and
always between the bucket's min and max). The writer updates rollups in the same
transaction that inserts the health rows (:func:`record`; its connection needs
:func:`register`, which :func:`.schema.connect` does), so a crash (``kill -9``) leaves
both or neither; retention deletes the rollups of pruned time and recomputes the one bucket
it cut through from the rows left (:func:`prune`). A file from before the rollups is
backfilled once when opened (:func:`rebuild`).
"""

from __future__ import annotations

import math
import sqlite3
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["DDL", "GROWTH", "WIDTH", "buckets", "prune", "rebuild", "record", "register"]

#: Seconds per rollup bucket: divides the bucket widths of the 24 h, 7 d and 30 d ranges.
WIDTH = 300
#: Ratio between neighbouring histogram bins (half of it is the worst relative error).
GROWTH = 1.08
_FLOOR = 0.01  # ms: response times at or below it share bin 0
_MAX_BIN = 400
_LOG = math.log(GROWTH)

DDL = """
CREATE TABLE IF NOT EXISTS health_rollup (
    key_id INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, up INTEGER NOT NULL,
    degraded INTEGER NOT NULL, down INTEGER NOT NULL, rt_n INTEGER NOT NULL, rt_min REAL,
    rt_max REAL, rt_sum REAL NOT NULL, hist BLOB NOT NULL, PRIMARY KEY (key_id, bucket)
) WITHOUT ROWID;
"""

_UPSERT = (
    "INSERT INTO health_rollup (key_id, bucket, n, up, degraded, down, rt_n, rt_min, rt_max,"
    " rt_sum, hist) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (key_id, bucket) DO UPDATE SET"
    " n = n + excluded.n, up = up + excluded.up, degraded = degraded + excluded.degraded,"
    " down = down + excluded.down, rt_n = rt_n + excluded.rt_n,"
    " rt_min = min(coalesce(rt_min, excluded.rt_min), coalesce(excluded.rt_min, rt_min)),"
    " rt_max = max(coalesce(rt_max, excluded.rt_max), coalesce(excluded.rt_max, rt_max)),"
    " rt_sum = rt_sum + excluded.rt_sum, hist = rollup_hist_merge(hist, excluded.hist)"
)
# Status codes of schema.health_row (0 healthy, 1 degraded, 2 unhealthy) -> column offset.
_SHARE = {0: 0, 1: 1, 2: 2}


def _bin(v: float) -> int:
    if v <= _FLOOR:
        return 0
    return min(_MAX_BIN, 1 + int(math.log(v / _FLOOR) / _LOG))


def _value(b: int) -> float:
    # The bin's geometric middle (bin 0: its top).
    return _FLOOR if b == 0 else _FLOOR * GROWTH ** (b - 0.5)


def _decode(blob: bytes) -> dict[int, int]:
    a = array("I")
    a.frombytes(blob)
    return dict(zip(a[::2], a[1::2], strict=True))


def _encode(hist: dict[int, int]) -> bytes:
    return array("I", [x for b in sorted(hist) for x in (b, hist[b])]).tobytes()


def _merge(a: bytes | None, b: bytes | None) -> bytes:
    h = _decode(a or b"")
    for k, v in _decode(b or b"").items():
        h[k] = h.get(k, 0) + v
    return _encode(h)


class _Agg:
    __slots__ = ("counts", "hist", "rt_max", "rt_min", "rt_n", "rt_sum")

    def __init__(self) -> None:
        self.counts = [0, 0, 0, 0]  # n, up, degraded, down
        self.rt_n, self.rt_sum = 0, 0.0
        self.rt_min: float | None = None
        self.rt_max: float | None = None
        self.hist: dict[int, int] = {}

    def add(self, status: Any, rt: Any) -> None:
        self.counts[0] += 1
        share = _SHARE.get(status) if isinstance(status, int) else None
        if share is not None:
            self.counts[1 + share] += 1
        if isinstance(rt, (int, float)) and math.isfinite(rt):
            self.rt_n += 1
            self.rt_sum += rt
            self.rt_min = rt if self.rt_min is None else min(self.rt_min, rt)
            self.rt_max = rt if self.rt_max is None else max(self.rt_max, rt)
            b = _bin(rt)
            self.hist[b] = self.hist.get(b, 0) + 1


def register(conn: sqlite3.Connection) -> None:
    """Give ``conn`` the SQL function the rollup upsert merges histograms with; once, when
    it is opened (SQLite refuses to define a function while a statement runs)."""
    conn.create_function("rollup_hist_merge", 2, _merge, deterministic=True)


def _write(conn: sqlite3.Connection, aggs: dict[tuple[int, int], _Agg]) -> None:
    conn.executemany(
        _UPSERT,
        [
            (key, bucket, *a.counts, a.rt_n, a.rt_min, a.rt_max, a.rt_sum, _encode(a.hist))
            for (key, bucket), a in aggs.items()
        ],
    )


def _aggregate(rows: Iterable[Sequence[Any]]) -> dict[tuple[int, int], _Agg]:
    """``(key_id, ts, status, response_time_ms)`` rows by (key, bucket)."""
    aggs: dict[tuple[int, int], _Agg] = {}
    for key, ts, status, rt in rows:
        k = (key, math.floor(ts / WIDTH))
        agg = aggs.get(k)
        if agg is None:
            agg = aggs[k] = _Agg()
        agg.add(status, rt)
    return aggs


def record(conn: sqlite3.Connection, health_rows: Sequence[Sequence[Any]]) -> None:
    """Add health rows (as :func:`.schema.health_row` encodes them) to their rollups; call in
    the transaction that inserts them."""
    if health_rows:
        _write(conn, _aggregate((r[0], r[1], r[3], r[4]) for r in health_rows))


def _recompute(conn: sqlite3.Connection, key: int, first: int, last: int) -> None:
    """Rollups of buckets ``first..last`` of ``key`` afresh from its health rows."""
    conn.execute(
        "DELETE FROM health_rollup WHERE key_id = ? AND bucket BETWEEN ? AND ?", (key, first, last)
    )
    # A day at a time, each read whole before its write: bounded memory, and no statement
    # left running under the writes.
    day = 86_400 // WIDTH
    for lo in range(first, last + 1, day):
        rows = conn.execute(
            "SELECT key_id, ts, status, response_time_ms FROM health"
            " WHERE key_id = ? AND ts >= ? AND ts < ?",
            (key, lo * WIDTH, min(lo + day, last + 1) * WIDTH),
        ).fetchall()
        _write(conn, _aggregate(rows))


def rebuild(conn: sqlite3.Connection) -> None:
    """Every rollup afresh from the health rows (the upgrade of a file without rollups);
    call inside a transaction."""
    conn.execute("DELETE FROM health_rollup")
    for (key,) in conn.execute("SELECT DISTINCT key_id FROM health").fetchall():
        span = conn.execute(
            "SELECT min(ts), max(ts) FROM health WHERE key_id = ?", (key,)
        ).fetchone()
        _recompute(conn, key, math.floor(span[0] / WIDTH), math.floor(span[1] / WIDTH))


def prune(conn: sqlite3.Connection, key: int, edge: float) -> None:
    """After health rows of ``key`` older than ``edge`` were deleted: drop the rollups wholly
    before it and recompute the one it cuts through."""
    b = math.floor(edge / WIDTH)
    conn.execute("DELETE FROM health_rollup WHERE key_id = ? AND bucket < ?", (key, b))
    _recompute(conn, key, b, b)


def _rank(hist: dict[int, int], total: int, pct: int, lo: float, hi: float) -> float:
    # Nearest rank, as the range endpoint's, over the histogram; clamped to what was measured.
    rank, seen = max(1, math.ceil(pct / 100 * total)), 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return min(hi, max(lo, _value(b)))
    return hi


def buckets(
    query: Callable[[str, Sequence[Any]], list[Any]],
    deployment_id: str,
    since: float,
    width: float,
    count: int,
) -> dict[str, list[Any]] | None:
    """The columns the range endpoint's ``downsample`` makes, of ``count`` buckets of
    ``width`` seconds from ``since``, read from rollups; None when the buckets are not whole
    rollups (the caller then reads health rows)."""
    per = width / WIDTH
    if per < 1 or per != int(per) or since % WIDTH:
        return None
    per, first = int(per), int(since // WIDTH)
    rows = query(
        "SELECT bucket, n, up, degraded, down, rt_n, rt_min, rt_max, rt_sum, hist"
        " FROM health_rollup WHERE key_id = (SELECT key_id FROM keys WHERE deployment_id = ?)"
        " AND bucket >= ? AND bucket < ? ORDER BY bucket",
        (deployment_id, first, first + per * count),
    )
    groups: list[list[Any]] = [[] for _ in range(count)]
    for r in rows:
        groups[(r[0] - first) // per].append(r)
    keys = ("t", "count", "min", "max", "mean", "p50", "p95", "p99", "up", "degraded", "down")
    out: dict[str, list[Any]] = {k: [] for k in keys}
    for i, group in enumerate(groups):
        out["t"].append(round(since + i * width, 3))
        n = sum(r[1] for r in group)
        out["count"].append(n)
        rt_n = sum(r[5] for r in group)
        if rt_n:
            lo = min(r[6] for r in group if r[6] is not None)
            hi = max(r[7] for r in group if r[7] is not None)
            hist: dict[int, int] = {}
            for r in group:
                for b, c in _decode(r[9]).items():
                    hist[b] = hist.get(b, 0) + c
            out["min"].append(round(lo, 3))
            out["max"].append(round(hi, 3))
            out["mean"].append(round(math.fsum(r[8] for r in group) / rt_n, 3))
            for pct in (50, 95, 99):
                out[f"p{pct}"].append(round(_rank(hist, rt_n, pct, lo, hi), 3))
        else:
            for k in ("min", "max", "mean", "p50", "p95", "p99"):
                out[k].append(None)
        for j, k in enumerate(("up", "degraded", "down")):
            out[k].append(round(sum(r[2 + j] for r in group) / n, 4) if n else None)
    return out
