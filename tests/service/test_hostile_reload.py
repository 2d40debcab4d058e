"""A SIGHUP during a reload is never lost: the reload asked for during another runs after
it, so the running configuration ends equal to the file (the last signal wins)."""

from __future__ import annotations

import signal
import time
import urllib.error
from pathlib import Path

from tests.support.service_helpers import get_json, running, wait_until

N = 4000


def _write(path: Path, extra: str) -> None:
    deps = "".join(
        f"  - id: d{i}\n    url: http://127.0.0.1:9/health\n    check_interval: 1h\n"
        for i in range(N)
    )
    text = (
        f"deployments:\n{deps}  - id: {extra}\n    url: http://127.0.0.1:9/health\n"
        "    check_interval: 1h\nstore:\n  path: history.db\nserver:\n  port: 0\n"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # the service reads either file whole, never half of one


def _monitored(url: str, dep_id: str) -> bool:
    try:
        get_json(f"{url}/api/v1/deployments/{dep_id}", timeout=10)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise
    return True


def test_a_sighup_during_a_reload_runs_after_it(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    _write(cfg, "first")
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url(timeout=120)
        _write(cfg, "second")
        svc.signal(signal.SIGHUP)
        time.sleep(0.1)  # the case itself: a second change 0.1 s into the first reload
        _write(cfg, "third")
        svc.signal(signal.SIGHUP)
        wait_until(
            lambda: _monitored(url, "third") and not _monitored(url, "second"),
            120,
            "the third file applied",
        )
        # ...and it stays so: no reload of an older file comes after
        time.sleep(1.0)
        assert _monitored(url, "third") and not _monitored(url, "first")
        svc.signal(signal.SIGTERM)
        assert svc.wait(60) == 0
