"""The status page's data: heartbeats, server-side downsampled ranges and incidents, read over
HTTP from a real monitor whose history is a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.service.web.ranges import RANGES, RangeCache, downsample
from tests.support.page_rig import URL_SECRET, page_rig


def test_heartbeats_are_the_last_checks_of_every_deployment(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.add("good", "/ok", checks=3, group="Model team")
        rig.add("broken", "/bad", checks=3)
        r = requests.get(rig.server.url + "/api/v1/heartbeats?limit=2", timeout=10)
        assert r.status_code == 200
        beats = r.json()["heartbeats"]
        assert set(beats) == {"good", "broken"}
        assert beats["good"]["s"] == ["healthy", "healthy"]
        assert beats["broken"]["s"] == ["unhealthy", "unhealthy"]
        assert beats["good"]["t"] == sorted(beats["good"]["t"])
        assert all(e is None for e in beats["good"]["e"])
        assert all("500" in e for e in beats["broken"]["e"])
        assert all(r > 0 for r in beats["good"]["r"])
        assert URL_SECRET not in r.text
        bad = requests.get(rig.server.url + "/api/v1/heartbeats?limit=0", timeout=10)
        assert bad.status_code == 400 and bad.json()["field"] == "limit"
        listed = requests.get(rig.server.url + "/api/v1/deployments", timeout=10).json()
        groups = {d["deployment_id"]: d["group"] for d in listed["deployments"]}
        assert groups == {"good": "Model team", "broken": None}


def test_a_30_day_range_of_a_10s_check_is_bucketed_on_the_server(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.add("api", "/ok", check_interval=3600.0, checks=1)
        now = time.time()
        written = rig.backfill("api", now - 30 * 86_400, now - 60)
        assert written > 259_000
        t0 = time.perf_counter()
        r = requests.get(
            rig.server.url + "/api/v1/deployments/api/range?range=30d&until=" + str(now),
            timeout=30,
        )
        took = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        body = r.json()
        b = body["buckets"]
        span, n = RANGES["30d"]
        assert body["bucket_seconds"] == pytest.approx(span / n)
        assert len(b["t"]) == n and len(b["p95"]) == n and len(b["down"]) == n
        # Buckets are aligned: the range ends with the one holding `until`, so up to one
        # bucket (2 h, 720 checks) of the oldest checks falls before it.
        assert body["checks"] == sum(b["count"]) >= written - 720
        assert body["since"] <= now - 30 * 86_400 + 7200 and body["until"] >= now
        assert len(r.content) < 100 * 1024, f"{len(r.content)} bytes"
        full = [i for i, c in enumerate(b["count"]) if c > 100]
        assert len(full) >= n - 2
        i = full[len(full) // 2]
        assert b["min"][i] == 20.0 and b["max"][i] == 69.0
        assert b["min"][i] <= b["p50"][i] <= b["p95"][i] <= b["p99"][i] <= b["max"][i]
        assert b["mean"][i] == pytest.approx(44.5, abs=1.0)
        assert b["down"][i] == pytest.approx(0.01, abs=0.003)
        assert b["degraded"][i] == pytest.approx(0.01, abs=0.003)
        assert b["up"][i] + b["degraded"][i] + b["down"][i] == pytest.approx(1.0, abs=1e-3)
        # Under load this is slow; a generous bound still catches a per-row Python object path.
        assert took < 5.0, f"30-day range took {took:.2f} s"

        hour = requests.get(rig.server.url + "/api/v1/deployments/api/range?range=1h", timeout=10)
        hb = hour.json()["buckets"]
        assert len(hb["t"]) == 60 and sum(hb["count"]) >= 300


def test_an_empty_bucket_is_no_data_never_a_value(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.add("fresh", "/ok", checks=2, check_interval=0.2)
        r = requests.get(rig.server.url + "/api/v1/deployments/fresh/range?range=24h", timeout=10)
        b = r.json()["buckets"]
        assert b["count"][0] == 0 and b["mean"][0] is None and b["up"][0] is None
        assert b["count"][-1] >= 2 and b["up"][-1] == 1.0
    out = downsample([5.0, 15.0], [1.0, 3.0], ["healthy", "unhealthy"], 0.0, 20.0, 2)
    assert out["count"] == [1, 1] and out["down"] == [0.0, 1.0]


def test_range_refuses_what_it_cannot_answer(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.add("api", "/ok", checks=1)
        base = rig.server.url + "/api/v1/deployments/"
        r = requests.get(base + "api/range?range=2w", timeout=10)
        assert r.status_code == 400 and r.json()["field"] == "range" and "30d" in r.json()["detail"]
        r = requests.get(base + "nope/range?range=1h", timeout=10)
        assert r.status_code == 404 and r.json()["field"] == "deployment_id"


def test_incidents_pair_firing_and_resolve_with_what_held_them(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        rig.target.set("/flaky", status=500, body='{"status": "unhealthy"}')
        rig.add("flaky", "/flaky", checks=2, check_interval=0.2)
        rig.target.set("/flaky", status=200, body='{"status": "healthy"}')
        assert rig.monitor.wait_for_checks("flaky", 3, 15.0)
        r = requests.get(rig.server.url + "/api/v1/incidents?deployment_id=flaky", timeout=10)
        assert r.status_code == 200
        incidents = r.json()["incidents"]
        failed = [i for i in incidents if i["alert_type"] == "health_check_failed"]
        assert failed, f"the outage made no incident: {incidents}"
        inc = failed[0]
        assert inc["deployment_id"] == "flaky" and inc["title"] == "Health check failed"
        assert inc["severity"] == "critical" and "500" in inc["message"]
        assert inc["end"] is not None and inc["end"] >= inc["start"]
        assert inc["duration_seconds"] == pytest.approx(inc["end"] - inc["start"], abs=1e-3)
        assert URL_SECRET not in r.text
        later = requests.get(
            rig.server.url + f"/api/v1/incidents?since={inc['end'] + 1}", timeout=10
        ).json()
        assert all(i["end"] is None for i in later["incidents"]), "ended ones are left out"


def test_a_refresh_reads_only_the_unfinished_buckets(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "h.db", flush_interval=0.1)
    try:
        now = 1_800_000_000.0
        for i in range(3600):  # 10 hours of 10 s checks, all healthy
            store.add_health("api", HealthCheckResult(True, "healthy", 10.0, now - 36_000 + i * 10))
        store.flush()
        cache = RangeCache()
        since, until, first = cache.read(store, "api", "24h", now)
        assert until - since == 86_400 and since % 300 == 0
        assert sum(first["count"]) == 3600
        # A late row in a finished bucket is not read again; one in the filling bucket is.
        store.add_health("api", HealthCheckResult(False, "unhealthy", 99.0, now - 7200))
        store.add_health("api", HealthCheckResult(False, "unhealthy", 99.0, now))
        store.flush()
        _, _, again = cache.read(store, "api", "24h", now + 1)
        assert sum(again["count"]) == 3601 and again["down"][-1] > 0
        assert again["count"][:-1] == first["count"][:-1]
        # A new cache computes everything afresh, and agrees on the finished buckets.
        _, _, fresh = RangeCache().read(store, "api", "24h", now + 1)
        assert sum(fresh["count"]) == 3602
        assert [k for k in fresh] == [k for k in again]
    finally:
        store.close()


def test_an_incident_names_the_silence_that_held_it(tmp_path: Path) -> None:
    with page_rig(tmp_path) as rig:
        sid = rig.silences.add("quiet", None, 600, "planned upgrade", created_by="ops")
        rig.add("quiet", "/bad", checks=2)
        r = requests.get(rig.server.url + "/api/v1/incidents?deployment_id=quiet", timeout=10)
        held = [i for i in r.json()["incidents"] if i["alert_type"] == "health_check_failed"]
        assert held and any(sid in h and "planned upgrade" in h for h in held[0]["held_by"])
