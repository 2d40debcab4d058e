"""SQLite history: the service's durable :class:`~..base.HistoryStore`.

One writer thread owns the only write connection. ``add_*`` calls append to an in-memory
queue and return (no disk I/O on the caller's thread, so a check never waits on the disk);
the writer commits the queue in one transaction every ``flush_interval`` seconds or every
``batch_size`` rows, whichever comes first. Reads use their own connections (WAL mode lets
them run beside the writer) and see committed rows; call :meth:`SQLiteStore.flush` first
to read your own writes.

Durability: WAL with ``synchronous=NORMAL``. A ``kill -9`` of the process loses at most the
rows queued since the last commit (about ``flush_interval`` seconds); a clean
:meth:`~SQLiteStore.close` loses nothing. Only a power loss or OS crash can also lose the
last committed transactions.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from crackseg.utils.deployment.errors import StoreError, require_positive
from crackseg.utils.deployment.history.sqlite import schema as sql
from crackseg.utils.deployment.history.sqlite.identity import FileIdentity
from crackseg.utils.deployment.history.sqlite.points import HealthPoints
from crackseg.utils.deployment.history.write_behind import WriteBehind
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)

__all__ = ["SQLiteStore", "log"]

log = logging.getLogger(__name__)

_open_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """At interpreter exit, commit what stores left open still hold (the writer is a daemon)."""
    for store in list(_open_stores):
        with contextlib.suppress(Exception):
            store.close()


_BUSY_ATTEMPTS = 6  # x the 10 s busy timeout: how long another process may lock the file
_RETRY_MAX = 10_000  # alerts and deployment records kept for retry while writes fail


class SQLiteStore(WriteBehind[tuple[list[tuple[str, str, Any]], int]], HealthPoints):
    """Health results, resource samples, alert events and deployment records in one SQLite file.

    Args:
        path: the database file (created with its schema if missing).
        flush_interval: seconds between commits of queued rows (> 0).
        batch_size: commit sooner once this many rows are queued.
        max_queue: bound on queued health results and resource samples. When it is full the
            *oldest* queued health/resource rows are dropped and counted (``stats()["dropped"]``).
            Alert events and deployment records are never dropped (their queue has no count
            bound: they arrive at human rates, and losing one would lose an incident or a
            rollout).
        max_age_seconds: delete health, resource and alert rows older than this (wall clock).
        max_rows_per_deployment: keep at most this many health results and as many resource
            samples per deployment (the newest).
        prune_interval: seconds between retention passes. The writer deletes in transactions
            of at most ``prune_batch`` rows and commits queued rows between them, so pruning
            never stalls writes for long. Deployment records are never pruned.

    ``forget(deployment_id)`` is a no-op: SQLite history outlives monitoring (retention
    removes it). ``flush()`` blocks until every row queued before it is committed; ``close()``
    flushes, stops the writer and is idempotent; writes after it raise :class:`StoreError`.
    Stores still open at interpreter exit are closed (flushed) by an ``atexit`` hook.
    ``prune()`` runs a retention pass now; ``stats()`` counts rows written, dropped, pruned.

    >>> import tempfile, os
    >>> store = SQLiteStore(os.path.join(tempfile.mkdtemp(), "h.db"))
    >>> store.add_health("api", HealthCheckResult(True, "healthy", 1.0)); store.flush()
    >>> [r.status for r in store.health_history("api")]
    ['healthy']
    >>> store.close()
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 2000,
        max_queue: int = 200_000,
        max_age_seconds: float | None = None,
        max_rows_per_deployment: int | None = None,
        prune_interval: float = 60.0,
        prune_batch: int = 1000,
    ) -> None:
        for name, value in (
            ("flush_interval", flush_interval), ("batch_size", batch_size),
            ("max_queue", max_queue), ("prune_interval", prune_interval),
            ("prune_batch", prune_batch), ("max_age_seconds", max_age_seconds),
            ("max_rows_per_deployment", max_rows_per_deployment),
        ):  # fmt: skip
            if value is not None:
                require_positive(name, value)
        self.path = str(path)
        self.flush_interval = float(flush_interval)
        self.batch_size = int(batch_size)
        self.max_queue = int(max_queue)
        self.max_age_seconds = max_age_seconds
        self.max_rows_per_deployment = max_rows_per_deployment
        self.prune_interval = float(prune_interval)
        self.prune_batch = int(prune_batch)
        sql.init_schema(self.path)
        self.file_identity = FileIdentity(self.path)  # see service.store_health
        super().__init__("sqlite-store-writer")
        self._bulk: deque[tuple[str, str, Any]] = deque()  # droppable: health, resources
        self._keep: deque[tuple[str, str, Any]] = deque()  # never dropped: alerts, deployments
        self._seq = 0  # rows queued so far (dropped ones included)
        self._done = 0  # every row up to this seq is committed (or dropped)
        self._wanted = 0  # highest seq a flush() waits for
        self._prune_requested = 0
        self._prune_done = 0
        self._closed = False
        # Deployment records saved but not yet committed, so reads see them at once.
        self._pending_deployments: dict[str, tuple[int, bytes]] = {}
        self._stats = dict.fromkeys(
            ("written", "dropped", "pruned", "commits", "write_errors", "bad_rows", "rows_lost"), 0
        )
        # (reason, since): set while commits fail, cleared by the next one that succeeds.
        self._failure: tuple[str, float] | None = None
        self._readers = sql.ReaderPool(self.path)
        self._keys: dict[str, int] = {}
        # The writer thread's own: its connection, commit and retention schedule.
        self._conn: sqlite3.Connection | None = None
        self._retention = max_age_seconds is not None or max_rows_per_deployment is not None
        self._next_commit = self._next_prune = time.monotonic()
        self._pruning: Iterator[int] | None = None
        self._prune_target = 0
        self._start()
        _open_stores.add(self)

    # -- writes (enqueue only) -----------------------------------------------------------

    def _enqueue(self, queue: deque[tuple[str, str, Any]], item: tuple[str, str, Any]) -> int:
        with self._cond:
            if self._closing:
                raise StoreError(f"SQLiteStore({self.path}) is closed: cannot write after close()")
            if (dead := self._dead()) is not None:
                raise StoreError(f"SQLiteStore({self.path}): {dead}")
            if queue is self._bulk and len(queue) >= self.max_queue:
                queue.popleft()
                self._stats["dropped"] += 1
                if (
                    self._stats["dropped"] in (1, 10, 100, 1000)
                    or not self._stats["dropped"] % 10000
                ):
                    log.warning(
                        "history store queue full (%d rows): dropped %d oldest rows so far",
                        self.max_queue,
                        self._stats["dropped"],
                    )
            queue.append(item)
            self._seq += 1
            queued = len(self._bulk) + len(self._keep)
            # Wake the writer on the first row (an idle writer sleeps without a commit
            # deadline) and when a batch is full; not on every row.
            if queued == 1 or queued >= self.batch_size:
                self._cond.notify_all()
            return self._seq

    def reserve(self, deployment_id: str) -> None:
        """Nothing to make ahead: rows go to the database (MemoryStore makes a history here)."""

    def add_health(self, deployment_id: str, result: HealthCheckResult) -> None:
        self._enqueue(self._bulk, ("h", deployment_id, result))

    def add_resource(self, deployment_id: str, metrics: ResourceMetrics) -> None:
        self._enqueue(self._bulk, ("r", deployment_id, metrics))

    def add_alert(self, event: AlertEvent) -> None:
        self._enqueue(self._keep, ("a", event.deployment_id, event))

    def save_deployment(self, metadata: DeploymentMetadata) -> None:
        """Queue an upsert by ``deployment_id``; visible to :meth:`deployment_records` at once."""
        data = orjson.dumps(
            metadata.to_dict(), default=str, option=orjson.OPT_NON_STR_KEYS
        )  # now: the caller keeps mutating metadata
        row = (metadata.deployment_id, metadata.artifact_id, metadata.start_time, data)
        with self._cond:
            seq = self._enqueue(self._keep, ("d", metadata.deployment_id, row))
            self._pending_deployments[metadata.deployment_id] = (seq, data)

    def forget(self, deployment_id: str) -> None:
        """No-op: SQLite history is kept after monitoring stops; retention prunes it."""

    # -- writer thread ----------------------------------------------------------------------

    def _begin(self) -> None:
        self._conn = sql.connect(self.path)
        self._next_commit = time.monotonic() + self.flush_interval
        self._next_prune = time.monotonic() + self.prune_interval

    def _end(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _pending(self) -> bool:
        return bool(self._bulk or self._keep)

    def _due(self, now: float) -> float | None:
        queued = len(self._bulk) + len(self._keep)
        if (
            self._wanted > self._done
            or queued >= self.batch_size
            or (queued and now >= self._next_commit)
            or self._pruning is not None
            or self._prune_requested > self._prune_done
            or (self._retention and now >= self._next_prune)
        ):
            return 0.0
        deadlines = [self._next_prune] if self._retention else []
        if queued:
            deadlines.append(self._next_commit)
        return min(deadlines) - now if deadlines else None

    def _take(self) -> tuple[list[tuple[str, str, Any]], int]:
        items = list(self._keep) + list(self._bulk)
        self._keep.clear()
        self._bulk.clear()
        return items, self._seq

    def _write(self, batch: tuple[list[tuple[str, str, Any]], int]) -> None:
        """Commit the batch (failures are counted and kept, see :meth:`_commit`), then
        advance retention by one small step unless closing."""
        conn, (items, seq) = self._conn, batch
        assert conn is not None  # opened by _begin, on this thread
        if items:
            self._commit(conn, items, seq)
            self._next_commit = time.monotonic() + self.flush_interval
        elif seq > self._done:  # everything queued was dropped
            with self._cond:
                self._done = seq
        if self._closing:
            return
        if self._pruning is None and (
            self._prune_requested > self._prune_done
            or (self._retention and time.monotonic() >= self._next_prune)
        ):
            self._pruning = sql.prune_steps(
                conn, self.max_age_seconds, self.max_rows_per_deployment, self.prune_batch
            )
            self._prune_target = self._prune_requested
        if self._pruning is not None and self._prune_step(conn, self._pruning):
            self._pruning = None
            self._next_prune = time.monotonic() + self.prune_interval
            with self._cond:
                self._prune_done = self._prune_target

    def _key(self, conn: sqlite3.Connection, deployment_id: str) -> int:
        key = self._keys.get(deployment_id)
        if key is None:
            conn.execute("INSERT OR IGNORE INTO keys (deployment_id) VALUES (?)", (deployment_id,))
            row = conn.execute(
                "SELECT key_id FROM keys WHERE deployment_id = ?", (deployment_id,)
            ).fetchone()
            key = self._keys[deployment_id] = int(row[0])
        return key

    def _commit(
        self, conn: sqlite3.Connection, items: list[tuple[str, str, Any]], seq: int
    ) -> None:
        ok, error = False, "unknown"
        for attempt in range(_BUSY_ATTEMPTS):
            try:
                written = self._transaction(conn, items)
                ok = True
                break
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self._keys.clear()  # ids inserted by the rolled-back transaction are gone
                error = str(e)
                busy = getattr(e, "sqlite_errorcode", None) in (
                    sqlite3.SQLITE_BUSY,
                    sqlite3.SQLITE_LOCKED,
                )
                if not busy or attempt == _BUSY_ATTEMPTS - 1:
                    break
                # Another process holds the file longer than the busy timeout: keep the batch.
                log.warning(
                    "history store %s is locked; retrying a batch of %d rows", self.path, len(items)
                )
        kept: list[tuple[str, str, Any]] = []
        if not ok:
            # Alerts and deployment records are retried with the next batch (at human rates
            # they wait cheaply); health and resource rows of the batch are lost, and counted.
            kept = [it for it in items if it[0] in ("a", "d")][-_RETRY_MAX:]
            lost = len(items) - len(kept)
            reason = f"{error}; {sql.advice(error, self.path)}"
            with self._cond:
                first = self._failure is None
                self._stats["rows_lost"] += lost
                self._keep.extendleft(reversed(kept))
                if first:
                    self._failure = (reason, time.time())
            if first or not self._stats["write_errors"] % 100:
                log.error(
                    "history store %s is losing writes: %s (%d rows lost so far)",
                    self.path, reason, self._stats["rows_lost"],
                )  # fmt: skip
        with self._cond:
            self._done = seq
            if ok:
                self._stats["written"] += written
                self._stats["bad_rows"] += len(items) - written
                self._stats["commits"] += 1
                if self._failure is not None:
                    log.warning(
                        "history store %s writes again after %.0f s; %d rows were lost",
                        self.path, time.time() - self._failure[1], self._stats["rows_lost"],
                    )  # fmt: skip
                    self._failure = None
            else:
                self._stats["write_errors"] += 1
                self._error = StoreError(f"writing {len(items)} rows failed: {error}")
            retried = {dep for kind, dep, _ in kept if kind == "d"}
            for dep_id, (dep_seq, _) in list(self._pending_deployments.items()):
                if dep_seq <= seq and dep_id not in retried:
                    del self._pending_deployments[dep_id]
            self._cond.notify_all()

    def _transaction(self, conn: sqlite3.Connection, items: list[tuple[str, str, Any]]) -> int:
        """Insert ``items`` in one transaction; returns the rows written (unencodable skipped)."""
        rows: dict[str, list[tuple[Any, ...]]] = {"h": [], "r": [], "a": [], "d": []}
        encoders: dict[str, Callable[[int, Any], tuple[Any, ...]]] = {
            "h": sql.health_row,
            "r": sql.resource_row,
            "a": sql.alert_row,
        }
        conn.execute("BEGIN IMMEDIATE")
        for kind, dep, obj in items:
            if kind == "d":
                rows["d"].append(obj)
                continue
            try:
                rows[kind].append(encoders[kind](self._key(conn, dep), obj))
            except (TypeError, ValueError) as e:  # e.g. details that JSON cannot hold
                log.error("history store: skipped a %s row of %r: %s", kind, dep, e)
        sql.insert_health(conn, rows["h"])
        conn.executemany(sql.INSERT_RESOURCE, rows["r"])
        conn.executemany(sql.INSERT_ALERT, rows["a"])
        conn.executemany(sql.UPSERT_DEPLOYMENT, rows["d"])
        conn.execute("COMMIT")
        return sum(len(v) for v in rows.values())

    def _prune_step(self, conn: sqlite3.Connection, pruning: Iterator[int]) -> bool:
        """Advance a retention pass by one small transaction; True when the pass is over."""
        try:
            deleted = next(pruning, None)
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.error("history store: retention pass failed: %s", e)
            return True
        if deleted is None:
            return True
        with self._cond:
            self._stats["pruned"] += deleted
        return False

    # -- flush / close / stats ----------------------------------------------------------------

    def flush(self) -> None:
        """Block until every row queued before this call is committed (or dropped).

        Raises:
            StoreError: a batch failed to commit meanwhile (its rows are lost; see the log),
                or the writer thread died.
        """
        with self._cond:
            if self._closed:
                return
            target, errors = self._seq, self._stats["write_errors"]
            self._wanted = max(self._wanted, target)
            self._cond.notify_all()
            self._wait(lambda: self._done >= target)
            if self._stats["write_errors"] > errors:
                raise StoreError(f"history store {self.path}: {self._error}")

    def prune(self) -> None:
        """Run a full retention pass now and block until it is done."""
        with self._cond:
            if self._closing:
                raise StoreError(f"SQLiteStore({self.path}) is closed")
            self._prune_requested += 1
            target = self._prune_requested
            self._cond.notify_all()
            self._wait(lambda: self._prune_done >= target)

    def close(self) -> None:
        """Commit everything queued, stop the writer, close connections. Idempotent."""
        with self._cond:
            if self._closed:
                return
        _open_stores.discard(self)
        self._stop()
        with self._cond:
            self._closed = True
        self._readers.close()

    def health(self) -> dict[str, Any]:
        """Whether writes succeed: ``ok``, ``reason`` (error and what to do) and ``since``
        while they fail, and ``rows_lost`` so far. Cheap: for every ``/healthz``."""
        with self._cond:
            failure = self._failure
            if failure is None and (dead := self._dead()) is not None:
                failure = (str(dead), time.time())
            return {
                "ok": failure is None,
                "reason": failure[0] if failure else None,
                "since": failure[1] if failure else None,
                "rows_lost": self._stats["rows_lost"],
            }

    def stats(self) -> dict[str, int]:
        """Rows queued, written, dropped and pruned; commits, write errors and rows lost to
        failed commits so far."""
        with self._cond:
            return {**self._stats, "queued": len(self._bulk) + len(self._keep)}

    # -- reads --------------------------------------------------------------------------------

    def _select(
        self,
        table: str,
        columns: str,
        deployment_id: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
    ) -> list[tuple[Any, ...]]:
        if limit is not None and limit <= 0:
            return []
        query, args = sql.select_sql(table, columns, deployment_id, since, until, limit)
        rows = self._readers.query(query, args)
        return rows if limit is None else rows[::-1]

    def health_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HealthCheckResult]:
        rows = self._select("health", sql.HEALTH_COLUMNS, deployment_id, since, until, limit)
        return [sql.health_from_row(r) for r in rows]

    def resource_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[ResourceMetrics]:
        rows = self._select("resources", sql.RESOURCE_COLUMNS, deployment_id, since, until, limit)
        return [sql.resource_from_row(r) for r in rows]

    def alert_history(
        self,
        deployment_id: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        rows = self._select("alerts", sql.ALERT_COLUMNS, deployment_id, since, None, limit)
        return [sql.alert_from_row(r) for r in rows]

    def deployment_records(self, artifact_id: str | None = None) -> list[DeploymentMetadata]:
        """Deployment records, oldest ``start_time`` first, including saves not yet committed."""
        with self._cond:
            pending = {k: v[1] for k, v in self._pending_deployments.items()}
        query, args = "SELECT deployment_id, data FROM deployments", []
        if artifact_id is not None:
            query += " WHERE artifact_id = ?"
            args.append(artifact_id)
        rows = dict(self._readers.query(query, args))
        rows.update(pending)
        records = [DeploymentMetadata.from_dict(orjson.loads(d)) for d in rows.values()]
        records = [m for m in records if artifact_id is None or m.artifact_id == artifact_id]
        records.sort(key=lambda m: m.start_time)
        return records
