"""A real Prometheus (Debian ``prometheus``) for tests: temp config and storage, a free port."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support.procs import stop_group
from tests.support.servers import free_port

StartPrometheus = Callable[..., str]


def _ready(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"Prometheus at {base} not ready after {timeout:g}s")


@pytest.fixture
def prometheus(tmp_path: Path, prometheus_bin: str) -> Iterator[StartPrometheus]:
    """``start(targets, job="crackseg", interval="1s", honor_labels=False, bearer_token=None)``
    scrapes
    ``host:port`` targets' /metrics and returns Prometheus's base URL; every server started
    is stopped at teardown."""
    binary = prometheus_bin
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        targets: list[str],
        job: str = "crackseg",
        interval: str = "1s",
        honor_labels: bool = False,
        bearer_token: str | None = None,
    ) -> str:
        n = len(procs)
        config = tmp_path / f"prometheus{n}.yml"
        listed = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
            f"  evaluation_interval: {interval}\n"
            f"scrape_configs:\n  - job_name: {job}\n"
            f"    honor_labels: {'true' if honor_labels else 'false'}\n    static_configs:\n"
            f"      - targets: [{listed}]\n"
        )
        if bearer_token is not None:
            with config.open("a") as f:
                f.write(
                    f"    authorization:\n      type: Bearer\n      credentials: '{bearer_token}'\n"
                )
        port = free_port()
        with (tmp_path / f"prometheus{n}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp_path / f'tsdb{n}'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        base = f"http://127.0.0.1:{port}"
        _ready(base, 30)
        return base

    yield start
    for p in procs:
        stop_group(p)


def query_series(base: str, promql: str) -> list[tuple[dict[str, str], float]]:
    """Instant query; returns each result's labels and value."""
    r = requests.get(base + "/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return [(res["metric"], float(res["value"][1])) for res in body["data"]["result"]]


def query(base: str, promql: str) -> dict[str, float]:
    """Instant query; returns deployment_id (or "") -> value."""
    return {labels.get("deployment_id", ""): value for labels, value in query_series(base, promql)}
