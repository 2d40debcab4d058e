"""The in-memory history store: bounded per deployment, thread-safe.

The monitor and the orchestrator write through this interface only, so the SQLite store
(:mod:`.sqlite.store`) plugs in without either knowing. Histories are bounded and kept
as compact columns (:mod:`.columns`), not one object per result.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from crackseg.utils.deployment.errors import require_positive
from crackseg.utils.deployment.history.base import HistoryStore
from crackseg.utils.deployment.history.columns import NumberColumn, ShapeColumn, TimeColumn
from crackseg.utils.deployment.models import (
    AlertEvent,
    DeploymentMetadata,
    HealthCheckResult,
    ResourceMetrics,
)

__all__ = ["HistoryStore", "MemoryStore"]


class _Timed(Protocol):
    timestamp: float


_T = TypeVar("_T", bound=_Timed)


def _window(
    rows: Iterable[_T], since: float | None, until: float | None, limit: int | None
) -> list[_T]:
    out = [
        r
        for r in rows
        if (since is None or r.timestamp >= since) and (until is None or r.timestamp <= until)
    ]
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


def _positions(
    ts: Sequence[float], since: float | None, until: float | None, limit: int | None
) -> Sequence[int]:
    """Row positions (oldest first) inside [since, until], the newest ``limit`` of them."""
    if since is None and until is None:
        pos: Sequence[int] = range(len(ts))
    else:
        pos = [
            p
            for p, t in enumerate(ts)
            if (since is None or t >= since) and (until is None or t <= until)
        ]
    if limit is not None:
        pos = pos[-limit:] if limit > 0 else []
    return pos


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def _key(name: str) -> bytes:
    return b',"' + name.encode() + b'":'


def _rows_json(
    pos: Sequence[int],
    shapes: tuple[list[int], list[Any], int],
    odd: list[Any],
    columns: list[list[float]],
    parts: Callable[[Any], tuple[bytes, bytes]],
    keys: tuple[bytes, ...],
) -> bytes:
    """A JSON array of rows: per shape a head and tail, between them the numbers of each
    column at each position, separated by ``keys`` (one fewer than the columns).

    Built run by run of rows sharing a shape, with joins only: no Python step per row.
    """
    ids, table, odd_id = shapes
    full = len(pos) == len(columns[0])
    texts = [_dumps(c if full else [c[p] for p in pos])[1:-1].split(b",") for c in columns]
    chunks: list[bytes] = []
    k = 0
    for sid, run in itertools.groupby(ids if full else [ids[p] for p in pos]):
        n = len(list(run))
        if sid == odd_id:
            chunks.extend(_dumps(odd[pos[j]]) for j in range(k, k + n))
        else:
            head, tail = parts(table[sid])
            bodies: Iterable[bytes] = texts[0][k : k + n]
            for sep, text in zip(keys, texts[1:], strict=True):
                bodies = map(sep.join, zip(bodies, text[k : k + n], strict=True))
            chunks.append(head + (tail + b"," + head).join(bodies) + tail)
        k += n
    return b"[" + b",".join(chunks) + b"]"


class _Series:
    """One deployment's bounded ring of rows, as columns; rows that do not fit kept whole."""

    __slots__ = ("cap", "head", "n", "numbers", "odd", "shapes", "ts")

    def __init__(self, cap: int, numbers: int) -> None:
        self.cap = cap
        self.n = 0
        self.head = 0  # slot of the oldest row once the ring is full
        self.ts = TimeColumn()
        self.numbers = [NumberColumn() for _ in range(numbers)]
        self.shapes = ShapeColumn(cap)
        self.odd: dict[int, Any] = {}

    def next_slot(self, ts: float) -> int:
        """Claim the slot of a new newest row with timestamp ``ts`` (evicting the oldest)."""
        if self.n < self.cap:
            self.ts.append(ts)
            self.n += 1
            return self.n - 1
        slot = self.head
        self.ts.replace_oldest(slot, ts)
        self.head = (slot + 1) % self.cap
        if self.odd:
            self.odd.pop(slot, None)
        return slot

    def add_odd(self, row: Any) -> None:
        """Keep ``row`` as it is (a subclass, an unhashable detail, a non-float value)."""
        t = row.timestamp
        slot = self.next_slot(t if type(t) is float else 0.0)
        for col in self.numbers:
            col.set(slot, 0.0)
        self.shapes.set_id(slot, self.shapes.odd)
        self.odd[slot] = row

    def columns(
        self, since: float | None, until: float | None, limit: int | None, raw: bool = False
    ) -> tuple[Sequence[int], list[float], list[list[float]], Any, list[Any]]:
        """(positions, timestamps, number columns, shapes, odd rows by position), oldest first.

        Shapes are one value per row (None for odd rows), or with ``raw`` (ids, table, odd id).
        """
        if not self.n:
            return [], [], [], [], []  # reserved, no row yet
        head = self.head if self.n == self.cap else 0
        ts = self.ts.values(head).tolist()
        odd: list[Any] = [None] * self.n if self.odd else []
        for slot, row in self.odd.items():
            p = (slot - head) % self.n
            odd[p] = row
            ts[p] = row.timestamp
        pos = _positions(ts, since, until, limit)
        if not pos:
            return pos, ts, [], [], odd
        shapes = self.shapes.raw(head) if raw else self.shapes.values(head)
        return pos, ts, [c.values(head) for c in self.numbers], shapes, odd


class MemoryStore:
    """Bounded in-memory history: the library's default store.

    ``max_history`` bounds health results and resource samples per deployment,
    ``max_alerts`` the alert events, ``max_deployments`` the deployment records.

    Results and samples are kept as compact columns (:mod:`.columns`), about 35 KiB per
    deployment for a full default history, and become :class:`HealthCheckResult` and
    :class:`ResourceMetrics` again when read: a read returns new objects equal to those added.
    Repeated ``details`` dicts and ``pids`` tuples are shared between the rows read; treat
    them as read-only.
    """

    def __init__(
        self, max_history: int = 1000, max_alerts: int = 10_000, max_deployments: int = 10_000
    ) -> None:
        require_positive("max_history", max_history)
        self.max_history = max_history
        self._lock = threading.Lock()
        self._health: dict[str, _Series] = {}
        self._resources: dict[str, _Series] = {}
        self._alerts: deque[AlertEvent] = deque(maxlen=max_alerts)
        self._deployments: dict[str, DeploymentMetadata] = {}
        self._max_deployments = max_deployments
        self._details: dict[tuple[tuple[str, object], ...], dict[str, Any]] = {}

    def reserve(self, deployment_id: str) -> None:
        """Make a deployment's history before its first result (the monitor, when it is added).

        Why: made by its first check, on the check loop, a history's objects (a dozen per
        deployment) were promoted by the collector as the first round ran, and at 100,000
        deployments they set off a full collection of ~1 s in the middle of it.
        """
        with self._lock:
            if deployment_id not in self._health:
                self._health[deployment_id] = _Series(self.max_history, 1)

    def add_health(self, deployment_id: str, result: HealthCheckResult) -> None:
        r = result
        with self._lock:
            s = self._health.get(deployment_id)
            if s is None:
                s = self._health[deployment_id] = _Series(self.max_history, 1)
            rt, ts, ok, status = r.response_time_ms, r.timestamp, r.success, r.status
            if not (
                type(r) is HealthCheckResult
                and type(rt) is float
                and type(ts) is float
                and type(ok) is bool
            ):
                s.add_odd(r)
                return
            d = r.details
            shapes = s.shapes
            try:
                items = tuple(d.items()) if d else ()
                key = (ok, status, type(status), r.error_message, items)
                sid = shapes.find(key)  # before the slot is claimed: it raises if unhashable
            except (TypeError, AttributeError):  # an unhashable detail: keep the result whole
                s.add_odd(r)
                return
            slot = s.next_slot(ts)
            s.numbers[0].set(slot, rt)
            if sid is None:
                shared = self._shared(items, d)
                shapes.set(slot, key, lambda: (ok, status, r.error_message, shared))
            else:
                shapes.set_id(slot, sid)

    def _shared(self, items: tuple[tuple[str, object], ...], d: dict[str, Any]) -> dict[str, Any]:
        # Nearly every result carries the same small details ({"http_status": 200}): one
        # dict for all deployments instead of one each.
        shared = self._details.get(items)
        if shared is None:
            shared = dict(d)
            if len(items) <= 4 and len(self._details) < 1024:
                self._details[items] = shared
        return shared

    def add_resource(self, deployment_id: str, metrics: ResourceMetrics) -> None:
        m = metrics
        with self._lock:
            s = self._resources.get(deployment_id)
            if s is None:
                s = self._resources[deployment_id] = _Series(self.max_history, 4)
            vals = (m.cpu_usage_percent, m.memory_usage_mb, m.disk_usage_percent, m.network_io_mbps)
            pids = m.pids
            if not (
                type(m) is ResourceMetrics
                and type(m.timestamp) is float
                and all(type(v) is float for v in vals)
                and type(pids) is tuple
            ):
                s.add_odd(m)
                return
            key = (m.process_name, m.process_count, pids)
            try:
                hash(key)
            except TypeError:
                s.add_odd(m)
                return
            slot = s.next_slot(m.timestamp)
            for col, v in zip(s.numbers, vals, strict=True):
                col.set(slot, v)
            s.shapes.set(slot, key, lambda: key)

    def add_alert(self, event: AlertEvent) -> None:
        with self._lock:
            self._alerts.append(event)

    def _columns(
        self,
        series: dict[str, _Series],
        deployment_id: str,
        since: float | None,
        until: float | None,
        limit: int | None,
        raw: bool = False,
    ) -> tuple[Sequence[int], list[float], list[list[float]], Any, list[Any]]:
        """:meth:`_Series.columns` of one deployment's rows, read under the lock; no number
        columns (empty) when it has no row in the window or none at all."""
        with self._lock:
            s = series.get(deployment_id)
            return s.columns(since, until, limit, raw) if s is not None else ([], [], [], [], [])

    def health_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[HealthCheckResult]:
        pos, ts, nums, shapes, odd = self._columns(self._health, deployment_id, since, until, limit)
        if not nums:
            return []
        rts = nums[0]
        out: list[HealthCheckResult] = []
        append = out.append
        for p in pos:
            shape = shapes[p]
            if shape is None:
                append(odd[p])
            else:
                ok, status, error, details = shape
                append(HealthCheckResult(ok, status, rts[p], ts[p], error, details))
        return out

    def health_points(
        self, deployment_id: str, since: float | None = None, until: float | None = None
    ) -> tuple[list[float], list[float], list[str]]:
        """Timestamps, response times and statuses of the results in [since, until], oldest
        first: the range charts' read, without building a result per row."""
        pos, ts, nums, shapes, odd = self._columns(self._health, deployment_id, since, until, None)
        if not nums:
            return [], [], []
        rts = nums[0]
        out_t = [ts[p] for p in pos]
        out_r = [rts[p] if shapes[p] is not None else odd[p].response_time_ms for p in pos]
        out_s = [shapes[p][1] if shapes[p] is not None else odd[p].status for p in pos]
        return out_t, out_r, out_s

    def resource_history(
        self,
        deployment_id: str,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[ResourceMetrics]:
        pos, ts, nums, shapes, odd = self._columns(
            self._resources, deployment_id, since, until, limit
        )
        if not nums:
            return []
        cpu, mem, disk, net = nums
        out: list[ResourceMetrics] = []
        append = out.append
        for p in pos:
            shape = shapes[p]
            if shape is None:
                append(odd[p])
            else:
                name, count, pids = shape
                append(ResourceMetrics(cpu[p], mem[p], disk[p], net[p], ts[p], name, count, pids))
        return out

    # -- the export's fast path: the rows of health_history/resource_history as JSON bytes,
    # straight from the columns (identical to orjson.dumps of the objects; no object made).
    def _health_history_json(self, deployment_id: str, since: float | None = None) -> bytes:
        pos, ts, nums, shapes, odd = self._columns(
            self._health, deployment_id, since, None, None, raw=True
        )
        if not nums:
            return b"[]"

        def parts(shape: tuple[Any, ...]) -> tuple[bytes, bytes]:
            ok, status, error, details = shape
            head = _dumps({"success": ok, "status": status})[:-1] + b',"response_time_ms":'
            tail = b',"error_message":' + _dumps(error) + b',"details":' + _dumps(details) + b"}"
            return head, tail

        return _rows_json(pos, shapes, odd, [nums[0], ts], parts, (b',"timestamp":',))

    def _resource_history_json(self, deployment_id: str, since: float | None = None) -> bytes:
        pos, ts, nums, shapes, odd = self._columns(
            self._resources, deployment_id, since, None, None, raw=True
        )
        if not nums:
            return b"[]"

        def parts(shape: tuple[Any, ...]) -> tuple[bytes, bytes]:
            name, count, pids = shape
            tail = _dumps({"process_name": name, "process_count": count, "pids": pids})
            return b'{"cpu_usage_percent":', b"," + tail[1:]

        keys = ("memory_usage_mb", "disk_usage_percent", "network_io_mbps", "timestamp")
        return _rows_json(pos, shapes, odd, [*nums, ts], parts, tuple(_key(k) for k in keys))

    def alert_history(
        self,
        deployment_id: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[AlertEvent]:
        with self._lock:
            rows = [
                a for a in self._alerts if deployment_id is None or a.deployment_id == deployment_id
            ]
        return _window(rows, since, None, limit)

    def save_deployment(self, metadata: DeploymentMetadata) -> None:
        with self._lock:
            self._deployments.pop(metadata.deployment_id, None)
            self._deployments[metadata.deployment_id] = metadata
            while len(self._deployments) > self._max_deployments:
                self._deployments.pop(next(iter(self._deployments)))

    def deployment_records(self, artifact_id: str | None = None) -> list[DeploymentMetadata]:
        with self._lock:
            rows = list(self._deployments.values())
        rows.sort(key=lambda m: m.start_time)
        return [m for m in rows if artifact_id is None or m.artifact_id == artifact_id]

    def forget(self, deployment_id: str) -> None:
        with self._lock:
            self._health.pop(deployment_id, None)
            self._resources.pop(deployment_id, None)

    def flush(self) -> None:
        """Nothing to flush: memory is the store."""

    def close(self) -> None:
        """Nothing to release."""
