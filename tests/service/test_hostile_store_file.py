"""The store file deleted (or replaced) under a running service is a store fault like any
other: ``/healthz`` 503 with the reason, ``crackseg_store_failing`` 1, and the
``monitor_store_failing`` alert through the handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from crackseg.utils.deployment.history.sqlite.store import SQLiteStore
from tests.support.receivers import HttpReceiver
from tests.support.service_helpers import Endpoint, running
from tests.support.wait import wait_until


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _failing(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "crackseg_store_failing":
                return float(sample.value)
    raise AssertionError("crackseg_store_failing not in /metrics")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_file_gone_under_the_service_is_reported(
    tmp_path: Path, receiver: HttpReceiver, how: str
) -> None:
    endpoint = Endpoint()
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"deployments:\n  - id: api\n    url: {endpoint.url}\n    check_interval: 0.1\n"
        "store:\n  path: h.db\n  flush_interval: 0.2\nserver:\n  port: 0\n"
        f"handlers:\n  - type: webhook\n    url: {receiver.url}/hook\n"
    )
    try:
        with running("run", "-c", str(cfg)) as svc:
            url = svc.url()
            wait_until(lambda: requests.get(f"{url}/healthz", timeout=5).ok, 40, "/healthz 200")
            assert _failing(url) == 0.0
            for f in tmp_path.glob("h.db*"):  # rm h.db*
                f.unlink()
            if how == "replaced":
                SQLiteStore(tmp_path / "h.db").close()  # a new, empty file at the path
            health = wait_until(
                lambda: (
                    (r := requests.get(f"{url}/healthz", timeout=5)).status_code == 503 and r.json()
                ),
                40,
                "/healthz 503",
            )
            assert health["status"] == "store_failing"
            assert "h.db" in health["reason"] and how in health["reason"]
            assert _failing(url) == 1.0

            def alerted() -> list[dict[str, object]]:
                return [
                    body
                    for body in (req.json() for req in receiver.requests)
                    if body.get("alert_type") == "monitor_store_failing"
                ]

            (fired,) = wait_until(alerted, 40, "the store alert")
            assert fired["state"] == "firing" and fired["severity"] == "critical"
            assert how in str(fired["message"])
    finally:
        endpoint.close()
