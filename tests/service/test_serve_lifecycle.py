"""The service as a process: start, status, SIGTERM flush, kill -9 durability, SIGHUP reload, demo."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from tests.support.service_helpers import Endpoint, cli, get_json, running, wait_until


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


def _config(
    tmp_path: Path, deployments: dict[str, str], *, flush: float = 0.2, extra: str = ""
) -> Path:
    deps = "".join(
        f"  - id: {dep_id}\n    url: {url}\n    check_interval: 0.1\n"
        for dep_id, url in deployments.items()
    )
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"deployments:\n{deps}store:\n  path: history.db\n  flush_interval: {flush}\n"
        f"server:\n  port: 0\n{extra}"
    )
    return path


def _statuses(url: str) -> dict[str, dict]:
    return {d["deployment_id"]: d for d in get_json(f"{url}/api/v1/deployments")["deployments"]}


def _checks(url: str, dep_id: str) -> int:
    return int(_statuses(url)[dep_id]["total_checks"])


def test_status_json_against_a_running_service_and_from_the_store_after_it(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    cfg = _config(tmp_path, {"api": endpoint.url})
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()
        wait_until(lambda: _checks(url, "api") >= 3, what="three checks")
        r = cli("status", "--json", "--url", url)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["source"] == "service"
        (row,) = data["deployments"]
        assert row["deployment_id"] == "api" and row["health_status"] == "healthy"
        assert row["response_time_ms"] > 0 and row["uptime_24h_percent"] == 100.0
        table = cli("status", "--url", url)
        assert table.returncode == 0 and "api" in table.stdout and "healthy" in table.stdout
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
    # No service answers now (port 0 in the file): status falls back to the history.
    r = cli("status", "--json", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["source"] == "store"
    assert data["deployments"][0]["health_status"] == "healthy"
    assert data["deployments"][0]["total_checks"] >= 3


def test_sigterm_flushes_the_store(tmp_path: Path, endpoint: Endpoint) -> None:
    # A flush interval far beyond the test: only the shutdown flush can write the rows.
    cfg = _config(tmp_path, {"api": endpoint.url}, flush=600)
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()
        seen = wait_until(lambda: (n := _checks(url, "api")) >= 5 and n, what="five checks")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
        assert any("history flushed" in line for line in svc.err), svc.err[-5:]
    store = SQLiteStore(tmp_path / "history.db")
    try:
        assert len(store.health_history("api")) >= seen
    finally:
        store.close()
    # `export` reads the same history.
    r = cli("export", str(tmp_path / "export.json"), "-c", str(cfg), "--since", "1h")
    assert r.returncode == 0, r.stderr
    exported = json.loads((tmp_path / "export.json").read_text())
    assert len(exported["monitored_deployments"]["api"]["health_history"]) >= seen


def test_kill_9_loses_at_most_the_last_flush_interval(tmp_path: Path, endpoint: Endpoint) -> None:
    flush = 0.2
    cfg = _config(tmp_path, {"api": endpoint.url}, flush=flush)
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()
        wait_until(lambda: _checks(url, "api") >= 20, what="twenty checks")
        killed_at = time.time()
        svc.proc.kill()
        svc.wait()
    # Restart on the same file: the history written before the kill is there.
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()
        rows = get_json(f"{url}/api/v1/deployments/api/history?until={killed_at}&limit=10000")
        before = [r["timestamp"] for r in rows["health"]]
        assert len(before) >= 15
        # Everything older than one flush interval (plus scheduling slack) survived.
        assert max(before) >= killed_at - flush - 1.5
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0


def test_sighup_applies_a_good_file_and_keeps_the_running_config_on_a_bad_one(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    cfg = _config(tmp_path, {"api": endpoint.url})
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()
        wait_until(lambda: _checks(url, "api") >= 1, what="first check")

        _config(tmp_path, {"api": endpoint.url, "worker": endpoint.url})
        svc.signal(signal.SIGHUP)
        wait_until(lambda: "worker" in _statuses(url), what="worker after reload")
        svc.wait_log("added worker")
        wait_until(lambda: _checks(url, "worker") >= 2, what="worker checked")

        cfg.write_text(cfg.read_text().replace("check_interval: 0.1", "check_interval: 0", 1))
        svc.signal(signal.SIGHUP)
        svc.wait_log("rejected, keeping the running configuration")
        svc.wait_log("deployments[0].check_interval: must be >= 0.1")
        assert set(_statuses(url)) == {"api", "worker"}
        before = _checks(url, "api")
        wait_until(lambda: _checks(url, "api") > before, what="checks go on")

        _config(tmp_path, {"worker": endpoint.url})
        svc.signal(signal.SIGHUP)
        wait_until(lambda: set(_statuses(url)) == {"worker"}, what="api removed")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0


def test_the_token_guards_writes_and_never_shows(tmp_path: Path, endpoint: Endpoint) -> None:
    cfg = _config(tmp_path, {"api": endpoint.url}, extra="  token: ${TEST_TOKEN}\n")
    with running("run", "-c", str(cfg), TEST_TOKEN="hunter2-token") as svc:
        url = svc.url()
        r = cli("silence", "add", "--deployment", "api", "--duration", "10m", "--url", url)
        assert r.returncode == 1 and "HTTP 401" in r.stderr
        r = cli(
            "silence", "add", "--deployment", "api", "--duration", "10m", "--url", url,
            CRACKSEG_MONITOR_TOKEN="hunter2-token",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        listed = cli("silence", "list", "--json", "--url", url)
        (silence,) = json.loads(listed.stdout)
        assert silence["deployment_id"] == "api" and silence["ends_at"] > time.time() + 500
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
        assert "hunter2-token" not in "\n".join(svc.out + svc.err)


def test_demo_serves_the_status_page_until_stopped() -> None:
    with running("demo", "--port", "0", "--duration", "120") as demo:
        url = demo.url()
        with urllib.request.urlopen(f"{url}/", timeout=5) as resp:
            assert resp.status == 200 and b"<html" in resp.read(65536).lower()

        def settled() -> bool:
            s = {d: v["health_status"] for d, v in _statuses(url).items()}
            return s.get("healthy") == "healthy" and s.get("down") == "unhealthy"

        wait_until(settled, what="demo statuses")
        assert {"healthy", "slow", "flapping", "degraded", "down"} <= set(_statuses(url))
        demo.signal(signal.SIGTERM)
        assert demo.wait() == 0


def test_demo_duration_bounds_the_run() -> None:
    started = time.monotonic()
    r = cli("demo", "--port", "0", "--duration", "1", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "serving on http://127.0.0.1:" in r.stdout
    assert time.monotonic() - started < 30
