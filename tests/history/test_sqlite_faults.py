"""When the history store loses writes the service says so, and recovery resolves it; a
damaged file is named at start-up with what to do.

The disk fills for real: the service's RLIMIT_FSIZE is lowered from outside (prlimit), so
every write to its files fails as on a full disk, then raised again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from crackseg.utils.deployment.errors import StoreError
from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from crackseg.utils.deployment.models import HealthCheckResult
from tests.support.receivers import HttpReceiver
from tests.support.service_helpers import Endpoint, cli, running
from tests.support.wait import wait_until


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _store_alerts(receiver: HttpReceiver) -> list[dict[str, object]]:
    out = []
    for req in receiver.requests:
        body = req.json()
        if body.get("alert_type") == "monitor_store_failing":
            out.append(body)
    return out


def _metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def test_full_disk_is_reported_alerted_counted_and_resolved(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    endpoint = Endpoint()
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"deployments:\n  - id: api\n    url: {endpoint.url}\n    check_interval: 0.1\n"
        "store:\n  path: history.db\n  flush_interval: 0.2\n"
        "server:\n  port: 0\n"
        f"handlers:\n  - type: webhook\n    url: {receiver.url}/hook\n"
    )
    try:
        with running("run", "-c", str(cfg)) as svc:
            url = svc.url()
            wait_until(lambda: requests.get(f"{url}/healthz", timeout=5).ok, 40, "/healthz 200")
            proc = psutil.Process(svc.proc.pid)
            limits = proc.rlimit(psutil.RLIMIT_FSIZE)
            proc.rlimit(psutil.RLIMIT_FSIZE, (1, limits[1]))  # the disk is full
            try:
                health = wait_until(
                    lambda: (
                        (r := requests.get(f"{url}/healthz", timeout=5)).status_code == 503
                        and r.json()
                    ),
                    40,
                    "/healthz 503",
                )
                assert health["status"] == "store_failing"
                assert "history.db" in health["reason"] and "disk" in health["reason"]
                fired = wait_until(lambda: _store_alerts(receiver), 40, "the store alert")
                assert fired[0]["state"] == "firing" and fired[0]["severity"] == "critical"
                assert "is losing writes" in str(fired[0]["message"])
                wait_until(
                    lambda: _metric(url, "crackseg_store_rows_lost_total") > 0, 40, "rows lost"
                )
                assert _metric(url, "crackseg_store_failing") == 1.0
            finally:
                proc.rlimit(psutil.RLIMIT_FSIZE, limits)  # space again
            wait_until(
                lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 200,
                40,
                "/healthz 200 after recovery",
            )
            resolved = wait_until(
                lambda: [a for a in _store_alerts(receiver) if a["state"] == "resolved"],
                40,
                "the resolve",
            )
            assert len(resolved) == 1 and len(_store_alerts(receiver)) == 2
            assert _metric(url, "crackseg_store_failing") == 0.0
            lost = _metric(url, "crackseg_store_rows_lost_total")
            svc.wait_log("writes again after")
        # The alert itself was kept and written once the disk took writes again.
        store = SQLiteStore(tmp_path / "history.db")
        try:
            states = [
                a.state
                for a in store.alert_history("crackseg-monitor")
                if a.alert_type == "monitor_store_failing"
            ]
        finally:
            store.close()
        assert states == ["firing", "resolved"]
        assert lost > 0
    finally:
        endpoint.close()


def _damage(path: Path) -> None:
    store = SQLiteStore(path)
    for i in range(3000):
        store.add_health(
            "api", HealthCheckResult(True, "healthy", float(i), error_message="x" * 50)
        )
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    for offset in range(2 * page, len(data) - page, 3 * page):
        data[offset : offset + page] = b"\xa5" * page  # garbage over b-tree pages
    path.write_bytes(bytes(data))


def test_a_damaged_file_is_named_at_start_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    _damage(path)
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    text = str(info.value)
    assert f"history store {path} is damaged" in text
    assert f"mv {path} {path}.damaged" in text and ".recover" in text


def test_the_service_refuses_a_damaged_store_clearly(tmp_path: Path) -> None:
    _damage(tmp_path / "history.db")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "deployments:\n  - id: api\n    url: http://127.0.0.1:9/h\n"
        "store:\n  path: history.db\nserver:\n  port: 0\n"
    )
    r = cli("run", "-c", str(cfg), timeout=60)
    assert r.returncode == 1
    assert f"history store {tmp_path / 'history.db'} is damaged" in r.stderr
    assert "Traceback" not in r.stderr
