"""SQL side of :mod:`.store`: schema, row encoding and decoding, retention passes.

Deployment ids are stored once in ``keys`` and rows refer to them by integer, and known
health statuses are small integers: together they roughly halve a health row's bytes.
Alert events, rare, are kept whole as JSON beside the columns queries filter on.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from crackseg.utils.deployment.errors import StoreError
from crackseg.utils.deployment.history.sqlite import rollups
from crackseg.utils.deployment.models import AlertEvent, HealthCheckResult, ResourceMetrics

__all__ = [
    "ALERT_COLUMNS",
    "HEALTH_COLUMNS",
    "INSERT_ALERT",
    "INSERT_HEALTH",
    "INSERT_RESOURCE",
    "RESOURCE_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "UPSERT_DEPLOYMENT",
    "ReaderPool",
    "advice",
    "alert_from_row",
    "alert_row",
    "connect",
    "damaged",
    "health_from_row",
    "health_points_from_rows",
    "health_row",
    "init_schema",
    "insert_health",
    "prune_steps",
    "resource_from_row",
    "resource_row",
    "select_sql",
]


#: 2: health rollups (:mod:`.rollups`), backfilled from the health rows on upgrade from 1.
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (key_id INTEGER PRIMARY KEY, deployment_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY, key_id INTEGER NOT NULL, ts REAL NOT NULL, success INTEGER NOT NULL,
    status NOT NULL, response_time_ms REAL NOT NULL, error_message TEXT, details BLOB);
CREATE INDEX IF NOT EXISTS health_key_ts_points ON health (key_id, ts, status, response_time_ms);
DROP INDEX IF EXISTS health_key_ts;
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY, key_id INTEGER NOT NULL, ts REAL NOT NULL, cpu REAL NOT NULL,
    memory_mb REAL NOT NULL, disk REAL NOT NULL, net_mbps REAL NOT NULL, process_name TEXT,
    process_count INTEGER, pids BLOB);
CREATE INDEX IF NOT EXISTS resources_key_ts ON resources (key_id, ts);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, key_id INTEGER NOT NULL, ts REAL NOT NULL, alert_type TEXT NOT NULL,
    state TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_key_ts ON alerts (key_id, ts);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE TABLE IF NOT EXISTS deployments (
    deployment_id TEXT PRIMARY KEY, artifact_id TEXT NOT NULL, start_time REAL NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS deployments_artifact ON deployments (artifact_id, start_time);
"""
SCHEMA += rollups.DDL

INSERT_HEALTH = (
    "INSERT INTO health (key_id, ts, success, status, response_time_ms, error_message, details)"
    " VALUES (?,?,?,?,?,?,?)"
)
INSERT_RESOURCE = (
    "INSERT INTO resources (key_id, ts, cpu, memory_mb, disk, net_mbps, process_name,"
    " process_count, pids) VALUES (?,?,?,?,?,?,?,?,?)"
)
INSERT_ALERT = "INSERT INTO alerts (key_id, ts, alert_type, state, data) VALUES (?,?,?,?,?)"
UPSERT_DEPLOYMENT = (
    "INSERT INTO deployments (deployment_id, artifact_id, start_time, data) VALUES (?,?,?,?)"
    " ON CONFLICT (deployment_id) DO UPDATE SET artifact_id = excluded.artifact_id,"
    " start_time = excluded.start_time, data = excluded.data"
)
HEALTH_COLUMNS = "success, status, response_time_ms, ts, error_message, details"
RESOURCE_COLUMNS = "cpu, memory_mb, disk, net_mbps, ts, process_name, process_count, pids"
ALERT_COLUMNS = "data"

_JSON_OPTS = orjson.OPT_NON_STR_KEYS
_STATUS_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2, "unknown": 3}
_STATUS_NAMES = {v: k for k, v in _STATUS_CODES.items()}


def connect(path: str, busy_timeout: float = 10.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=NORMAL,
    waiting up to ``busy_timeout`` seconds for another connection's lock."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    rollups.register(conn)
    return conn


def advice(error: str, path: str) -> str:
    """What to do about a SQLite write error on ``path``, in words."""
    text = error.lower()
    if "full" in text:
        return "free space on the disk that holds it"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return f"the file is damaged: stop the service, move {path} aside and start again"
    if "readonly" in text or "read-only" in text or "permission" in text:
        return f"make {path} and its folder writable by this service"
    if "i/o" in text:
        return f"a write to {path} failed: is its disk full, failing or gone?"
    return f"writes to {path} fail; see the service log"


def damaged(path: str, problem: str) -> StoreError:
    """The error for a damaged store file: which file, what SQLite found, what to do."""
    return StoreError(
        f"history store {path} is damaged ({problem}). Stop the service and move the file "
        f"aside (mv {path} {path}.damaged; also its -wal and -shm files): the service then "
        f"starts with an empty history. To save what is readable: "
        f"sqlite3 {path}.damaged .recover | sqlite3 {path}"
    )


def init_schema(path: str) -> None:
    """Create the tables if missing; refuse a file written by a newer schema or one that
    fails SQLite's quick integrity check (``PRAGMA quick_check``: the b-trees, not every
    index entry; well under a second for a few hundred MB)."""
    try:
        conn = connect(path)
        try:
            found = [r[0] for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
            if found != ["ok"]:
                raise damaged(path, "; ".join(str(f) for f in found)[:300])
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise StoreError(
                    f"{path}: schema version {version} is not supported "
                    f"(this version reads {SCHEMA_VERSION})"
                )
            conn.executescript(SCHEMA)
            if version < 2:  # rows written before the rollups: roll them up once
                conn.execute("BEGIN IMMEDIATE")
                rollups.rebuild(conn)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error as e:
        if "malformed" in str(e) or "not a database" in str(e):
            raise damaged(path, str(e)) from e
        raise StoreError(f"cannot open history store {path}: {e}") from e


class ReaderPool:
    """Read-only connections, reused across calls and threads (one user at a time each)."""

    def __init__(self, path: str, max_idle: int = 4) -> None:
        self.path = path
        self.max_idle = max_idle
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query; :class:`StoreError` when closed or when SQLite fails."""
        with self._lock:
            if self._closed:
                raise StoreError(f"SQLiteStore({self.path}) is closed: cannot read after close()")
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = connect(self.path)
                conn.execute("PRAGMA query_only=ON")
            return conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"reading history store {self.path} failed: {e}") from e
        finally:
            if conn is not None:
                with self._lock:
                    if self._closed or len(self._idle) >= self.max_idle:
                        conn.close()
                    else:
                        self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def insert_health(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert encoded health rows (:func:`health_row`) and add them to their rollups; call
    inside the writer's transaction, so a crash keeps both or neither."""
    conn.executemany(INSERT_HEALTH, rows)
    rollups.record(conn, rows)


def health_row(key: int, h: HealthCheckResult) -> tuple[Any, ...]:
    details = orjson.dumps(h.details, default=str, option=_JSON_OPTS) if h.details else None
    status = _STATUS_CODES.get(h.status, h.status)
    return (key, h.timestamp, int(h.success), status, h.response_time_ms, h.error_message, details)


def resource_row(key: int, m: ResourceMetrics) -> tuple[Any, ...]:
    pids = orjson.dumps(list(m.pids)) if m.pids else None
    return (
        *(key, m.timestamp, m.cpu_usage_percent, m.memory_usage_mb, m.disk_usage_percent),
        *(m.network_io_mbps, m.process_name, m.process_count, pids),
    )


def alert_row(key: int, a: AlertEvent) -> tuple[Any, ...]:
    # Alerts are rare: the whole event as JSON keeps fields added to AlertEvent later.
    data = orjson.dumps(a.to_dict(), default=str, option=_JSON_OPTS)
    return (key, a.timestamp, a.alert_type, a.state, data)


def health_from_row(r: tuple[Any, ...]) -> HealthCheckResult:
    success, status, rt, ts, err, details = r
    status = _STATUS_NAMES.get(status, str(status)) if isinstance(status, int) else str(status)
    return HealthCheckResult(
        bool(success), status, rt, ts, err, orjson.loads(details) if details else {}
    )


def health_points_from_rows(
    rows: list[tuple[Any, ...]],
) -> tuple[list[float], list[float], list[str]]:
    """``(ts, response_time_ms, status)`` rows as three columns, statuses by name."""
    if not rows:
        return [], [], []
    ts, rt, codes = zip(*rows, strict=True)
    names = _STATUS_NAMES
    return list(ts), list(rt), [names.get(c, str(c)) for c in codes]


def resource_from_row(r: tuple[Any, ...]) -> ResourceMetrics:
    cpu, mem, disk, net, ts, name, count, pids = r
    return ResourceMetrics(
        cpu, mem, disk, net, ts, name, count, tuple(orjson.loads(pids)) if pids else ()
    )


_ALERT_FIELDS = frozenset(f.name for f in dataclasses.fields(AlertEvent))


def alert_from_row(r: tuple[Any, ...]) -> AlertEvent:
    data = orjson.loads(r[0])
    data["notified"] = tuple(data.get("notified") or ())  # JSON made the tuple a list
    return AlertEvent(**{k: v for k, v in data.items() if k in _ALERT_FIELDS})


def select_sql(
    table: str,
    columns: str,
    deployment_id: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """A time-window query; with ``limit`` it returns the newest rows, newest first."""
    where: list[str] = []
    args: list[Any] = []
    if deployment_id is not None:
        where.append("key_id = (SELECT key_id FROM keys WHERE deployment_id = ?)")
        args.append(deployment_id)
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if until is not None:
        where.append("ts <= ?")
        args.append(until)
    sql = f"SELECT {columns} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit is None:
        sql += " ORDER BY ts, id"
    else:
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(limit)
    return sql, args


def prune_steps(
    conn: sqlite3.Connection,
    max_age_seconds: float | None,
    max_rows: int | None,
    batch: int,
    keys_per_step: int = 200,
) -> Iterator[int]:
    """One retention pass in small transactions, yielding the rows deleted by each.

    Works per deployment through the ``(key_id, ts)`` indexes, so a pass costs about the
    rows it keeps and deletes, never a scan of whole tables. Between two yields no
    transaction is open, so the caller can commit other rows on the same connection.
    Age applies to health, resource and alert rows; ``max_rows`` to health and resources;
    health rollups follow the health rows (:func:`.rollups.prune`).
    """
    keys = [r[0] for r in conn.execute("SELECT key_id FROM keys").fetchall()]
    cutoff = None if max_age_seconds is None else time.time() - max_age_seconds
    budget = batch
    conn.execute("BEGIN IMMEDIATE")
    for examined, key in enumerate(keys, 1):
        for table in ("health", "resources", "alerts"):
            bounds: list[tuple[str, tuple[Any, ...]]] = []
            if cutoff is not None:
                bounds.append(("ts < ?", (cutoff,)))
            if max_rows is not None and table != "alerts":
                edge = conn.execute(
                    f"SELECT ts, id FROM {table} WHERE key_id = ? "
                    "ORDER BY ts DESC, id DESC LIMIT 1 OFFSET ?",
                    (key, max_rows),
                ).fetchone()
                if edge is not None:  # edge is the newest row to delete
                    bounds.append(("(ts < ? OR (ts = ? AND id <= ?))", (edge[0], *edge)))
            for cond, args in bounds:
                while True:
                    budget -= conn.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                        f"WHERE key_id = ? AND {cond} ORDER BY ts, id LIMIT ?)",
                        (key, *args, budget),
                    ).rowcount
                    if budget > 0:
                        break
                    conn.execute("COMMIT")
                    yield batch
                    budget = batch
                    conn.execute("BEGIN IMMEDIATE")
            if table == "health" and bounds:
                rollups.prune(conn, key, max(args[0] for _, args in bounds))
        if examined % keys_per_step == 0:
            conn.execute("COMMIT")
            yield batch - budget
            budget = batch
            conn.execute("BEGIN IMMEDIATE")
    conn.execute("COMMIT")
    yield batch - budget
