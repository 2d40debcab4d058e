"""The service as a process, alerting to a real webhook receiver: kill -9 and restart page
nobody twice, SIGHUP keeps firing alerts, removing a deployment resolves its alert."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.receivers import HttpReceiver
from tests.support.service_helpers import Endpoint, get_json, running, wait_until

HEALTH = "health_check_failed"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint(status=503)
    yield ep
    ep.close()


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    r = HttpReceiver().start()
    yield r
    r.close()


def _config(
    tmp_path: Path, hook: HttpReceiver, deps: dict[str, str], threshold: int = 1000
) -> Path:
    body = "".join(
        f"  - id: {d}\n    url: {u}\n    check_interval: 0.1\n"
        f"    thresholds:\n      response_time_ms: {threshold}\n"
        for d, u in deps.items()
    )
    path = tmp_path / "monitor.yaml"
    path.write_text(
        f"deployments:\n{body}"
        "alert_thresholds:\n  error_rate_percent: 100\n"
        "monitor:\n  failure_threshold: 1\n  success_threshold: 1\n"
        f"handlers:\n  - type: webhook\n    url: {hook.url}/hook\n"
        "store:\n  path: history.db\n  flush_interval: 0.2\nserver:\n  port: 0\n"
    )
    return path


def _health(hook: HttpReceiver) -> list[dict[str, object]]:
    return [b for b in (r.json() for r in hook.accepted()) if b["alert_type"] == HEALTH]


def _checks(url: str, dep: str) -> int:
    deps = get_json(f"{url}/api/v1/deployments")["deployments"]
    return int(next(d for d in deps if d["deployment_id"] == dep)["total_checks"])


def test_kill_9_while_firing_then_restart_sends_no_second_firing_and_one_resolve(
    tmp_path: Path, endpoint: Endpoint, hook: HttpReceiver
) -> None:
    cfg = _config(tmp_path, hook, {"api": endpoint.url})
    with running("run", "-c", str(cfg)) as svc:
        svc.url()
        wait_until(lambda: len(_health(hook)) == 1, what="the firing delivered")
        svc.proc.kill()
        svc.wait()
    (fired,) = _health(hook)
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()
        first = _checks(url, "api")
        wait_until(lambda: _checks(url, "api") >= first + 10, what="ten checks after restart")
        (active,) = [a for a in get_json(f"{url}/api/v1/alerts")["alerts"]
                     if a["alert_type"] == HEALTH]  # fmt: skip
        assert active["started_at"] == fired["started_at"]
        assert [b["state"] for b in _health(hook)] == ["firing"]
        endpoint.status = 200
        wait_until(lambda: len(_health(hook)) == 2, what="the resolve")
        resolved = _health(hook)[1]
        assert resolved["state"] == "resolved" and resolved["started_at"] == fired["started_at"]
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
    assert len(_health(hook)) == 2


def test_sighup_with_a_changed_threshold_keeps_the_alert_and_removal_resolves_it(
    tmp_path: Path, endpoint: Endpoint, hook: HttpReceiver
) -> None:
    cfg = _config(tmp_path, hook, {"api": endpoint.url, "other": endpoint.url})
    with running("run", "-c", str(cfg)) as svc:
        url = svc.url()
        wait_until(lambda: len(_health(hook)) == 2, what="both firings delivered")
        _config(tmp_path, hook, {"api": endpoint.url, "other": endpoint.url}, threshold=500)
        svc.signal(signal.SIGHUP)
        svc.wait_log("changed api")
        before = _checks(url, "api")
        wait_until(lambda: _checks(url, "api") >= before + 5, what="five checks after reload")
        assert [b["state"] for b in _health(hook)] == ["firing", "firing"]
        _config(tmp_path, hook, {"other": endpoint.url})
        svc.signal(signal.SIGHUP)
        svc.wait_log("removed api")
        wait_until(lambda: len(_health(hook)) == 3, what="the resolve of api")
        last = _health(hook)[2]
        assert (last["deployment_id"], last["state"]) == ("api", "resolved")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == 0
    assert len(_health(hook)) == 3
