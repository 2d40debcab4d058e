"""MemoryStore keeps columns, not objects: what is read back equals what was added, exactly."""

from __future__ import annotations

import random
import struct
import tracemalloc
from collections import deque
from dataclasses import dataclass
from typing import Any

from crackseg.utils.deployment.history.columns import NumberColumn, TimeColumn
from crackseg.utils.deployment.history.memory import MemoryStore
from crackseg.utils.deployment.models import HealthCheckResult, ResourceMetrics


def _same(a: list[Any], b: list[Any]) -> bool:
    """Equal, with floats compared by bit pattern (NaN, -0.0 and every last bit count)."""

    def key(row: Any) -> tuple[Any, ...]:
        return tuple(
            ("f", struct.pack("=d", v)) if type(v) is float else (type(v).__name__, v)
            for v in (getattr(row, f) for f in row.__slots__)
        )

    return [type(r) for r in a] == [type(r) for r in b] and [key(r) for r in a] == [
        key(r) for r in b
    ]


@dataclass(slots=True)
class _Odd(HealthCheckResult):
    """A subclass: kept whole, read back as itself."""


def _random_result(rng: random.Random, t: float) -> HealthCheckResult:
    kind = rng.random()
    rt = rng.choice([1.5, 12.3456, rng.uniform(0, 50), -0.0, 1e12, float("inf")])
    if kind < 0.05:
        return _Odd(True, "healthy", rt, t)
    if kind < 0.08:
        return HealthCheckResult(True, "healthy", 5, t)  # an int: kept whole, stays an int
    if kind < 0.1:
        return HealthCheckResult(False, "unhealthy", rt, t, "x", {"nested": {"a": 1}})
    ok = kind < 0.8
    err = None if ok else rng.choice(["HTTP 500", f"timeout {rng.randint(0, 3000)}"])
    details: dict[str, Any] = {"http_status": 200 if ok else 500} if rng.random() < 0.9 else {}
    return HealthCheckResult(ok, "healthy" if ok else "unhealthy", rt, t, err, details)


def test_random_sequences_read_back_exactly() -> None:
    rng = random.Random(7)
    for cap in (1, 2, 5, 64):
        store = MemoryStore(max_history=cap)
        ref: deque[HealthCheckResult] = deque(maxlen=cap)
        rref: deque[ResourceMetrics] = deque(maxlen=cap)
        t = 1.7e9 + rng.random()
        for i in range(400):
            # mostly seconds apart, sometimes hours (the compact time form gives up), or back
            t += rng.choice([10.0, 0.001 * rng.random(), 7200.0, -3.0]) if i % 50 else 1e6
            r = _random_result(rng, t)
            store.add_health("d", r)
            ref.append(r)
            m = ResourceMetrics(
                round(rng.uniform(0, 100), 2), rng.uniform(0, 1e6), 40.1, round(rng.random(), 4),
                t, rng.choice([None, "svc"]), rng.choice([None, 1, 3]),
                rng.choice([(), (1, 2), (1, 3)]),
            )  # fmt: skip
            store.add_resource("d", m)
            rref.append(m)
            if i % 37 == 0 or i > 390:
                assert _same(store.health_history("d"), list(ref)), (cap, i)
                assert _same(store.resource_history("d"), list(rref)), (cap, i)
        stamps = sorted(r.timestamp for r in ref)
        lo, hi = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
        for q in (
            (None, None, 3),
            (lo, None, None),
            (None, hi, 2),
            (lo, hi, None),
            (None, None, 0),
        ):
            want = [
                r
                for r in ref
                if (q[0] is None or r.timestamp >= q[0]) and (q[1] is None or r.timestamp <= q[1])
            ]
            if q[2] is not None:
                want = want[-q[2] :] if q[2] else []
            assert _same(store.health_history("d", *q), want), q


def test_columns_stay_compact_for_ordinary_values_and_upgrade_when_needed() -> None:
    t = TimeColumn()
    for i in range(10):
        t.append(1.7e9 + i * 10.123)
    assert t._abs is None  # 4-byte deltas
    t.append(1.7e9 + 1e6)  # a gap of ~11 days: doubles from now on
    assert t._abs is not None and t.values(0)[-1] == 1.7e9 + 1e6
    n = NumberColumn()
    for v in (1.5, 40.1, 0.0001, 214748.0):
        n.set(len(n._a), v)
    assert n._a.typecode == "i"
    n.set(4, 1 / 3)
    assert n._a.typecode == "d" and n.values(0) == [1.5, 40.1, 0.0001, 214748.0, 1 / 3]


def test_full_default_history_is_small() -> None:
    tracemalloc.start()
    store = MemoryStore()
    t0 = 1.7e9
    for d in range(20):
        for i in range(1000):
            t = t0 + 10 * i
            store.add_health(
                f"d{d}",
                HealthCheckResult(True, "healthy", 1.5 + i % 7, t, None, {"http_status": 200}),
            )
            store.add_resource(
                f"d{d}", ResourceMetrics(12.5, 256.0, 40.1, 0.8, t, "svc", 1, (1234,))
            )
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert used / 20 < 40 * 1024, f"{used / 20 / 1024:.1f} KiB per deployment"
    h = store.health_history("d3")
    assert len(h) == 1000 and h[-1] == HealthCheckResult(
        True, "healthy", 1.5 + 999 % 7, t0 + 9990, None, {"http_status": 200}
    )


def test_export_json_is_what_the_objects_serialise_to() -> None:
    import orjson

    rng = random.Random(3)
    store = MemoryStore(max_history=50)
    t = 1.7e9
    for i in range(120):
        t += 10.0 if i % 40 else 5000.0
        store.add_health("d", _random_result(rng, t))
        store.add_resource(
            "d", ResourceMetrics(1.25, rng.uniform(0, 9), 3.0, 0.5, t, "svc", 2, (1, i % 3))
        )
        store.add_resource("d", ResourceMetrics(1, 2, 3, 4, t))  # ints: kept whole
    opt = orjson.OPT_SERIALIZE_NUMPY
    for since in (None, t - 200):
        assert store._health_history_json("d", since) == orjson.dumps(
            store.health_history("d", since), option=opt
        )
        assert store._resource_history_json("d", since) == orjson.dumps(
            store.resource_history("d", since), option=opt
        )
    assert store._health_history_json("nobody") == b"[]"
    assert store._health_history_json("d", t + 1) == b"[]"
