"""One handler, several Alertmanagers: each gets every alert; one peer down is no failure."""

from __future__ import annotations

import pytest

from crackseg.utils.deployment.delivery import AlertmanagerHandler
from crackseg.utils.deployment.errors import ConfigError, NotifierError
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.receivers import HttpReceiver
from tests.support.wait import free_port


def test_every_alert_goes_to_each_peer_with_identical_labels() -> None:
    a, b = HttpReceiver().start(), HttpReceiver().start()
    first = AlertmanagerHandler([a.url, b.url], resend_interval=30)
    second = AlertmanagerHandler([a.url, b.url], resend_interval=30)
    try:
        assert first.name == f"alertmanager:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        for h in (first, second):
            h.send_alert("process_not_running", DeploymentMetadata("web"), state="firing")
        assert a.wait_for(2) and b.wait_for(2)
        bodies = [r.json()[0] for r in a.requests + b.requests]
        # The same identity from both monitors, so a cluster holds one alert.
        assert len({tuple(sorted(x["labels"].items())) for x in bodies}) == 1
        assert bodies[0]["labels"]["monitor"] == "crackseg-monitor"
        assert "monitor_instance" in bodies[0]["annotations"]
    finally:
        first.close()
        second.close()
        a.close()
        b.close()


def test_one_peer_down_still_delivers_all_down_raises() -> None:
    up = HttpReceiver().start()
    dead = f"http://127.0.0.1:{free_port()}"
    handler = AlertmanagerHandler([dead, up.url], resend_interval=30, timeout=2)
    try:
        handler.send_alert("process_not_running", DeploymentMetadata("web"), state="firing")
        assert up.wait_for(1)
        assert handler.resend_stats()["partial"] == 1
        up.status = 503
        with pytest.raises(NotifierError) as err:
            handler.send_alert("process_not_running", DeploymentMetadata("w2"), state="firing")
        assert not err.value.permanent and "HTTP 503" in str(err.value)
    finally:
        handler.close()
        up.close()


def test_config_takes_a_list_or_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    h = AlertmanagerHandler.from_config({"url": ["http://127.0.0.1:1", "http://127.0.0.1:2"]})
    assert h.urls == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    h.close()
    monkeypatch.setenv("AM_PEERS", "http://127.0.0.1:1, http://127.0.0.1:2")
    h = AlertmanagerHandler.from_config({"url_env": "AM_PEERS"})
    assert h.urls == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    h.close()
    with pytest.raises(ConfigError, match=r"handler\.url\[1\]"):
        AlertmanagerHandler.from_config({"url": ["http://127.0.0.1:1", "ftp://x"]})
    with pytest.raises(ConfigError, match="same Alertmanager twice"):
        AlertmanagerHandler(["http://127.0.0.1:1", "http://127.0.0.1:1/"])
    with pytest.raises(ConfigError, match="non-empty list"):
        AlertmanagerHandler.from_config({"url": []})
