"""``group`` and ``public``: one meaning in the library, the file and the API (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.health_monitoring import DeploymentHealthMonitor
from crackseg.utils.deployment.service.config import ConfigFileError, load_config
from tests.support.page_rig import page_rig


def test_the_file_carries_group_and_public_to_the_monitor(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        "deployments:\n"
        "  - {id: api, url: 'http://127.0.0.1:9/health', group: Platform, public: true}\n"
        "  - {id: batch, url: 'http://127.0.0.1:9/health'}\n"
    )
    cfg = load_config(path)
    kwargs = [d.monitor_kwargs() for d in cfg.deployments]
    assert [(k["group"], k["public"]) for k in kwargs] == [("Platform", True), (None, False)]
    monitor = DeploymentHealthMonitor()
    try:
        for k in kwargs:
            monitor.add_deployment_monitoring(**k)
        status = monitor.get_deployment_status("api")
        assert (status["group"], status["public"]) == ("Platform", True)
        assert monitor.monitored_deployments["batch"]["public"] is False
    finally:
        monitor.close()
    path.write_text("deployments:\n  - {id: api, url: 'http://127.0.0.1:9/h', public: 'yes'}\n")
    with pytest.raises(ConfigFileError) as err:
        load_config(path)
    assert "deployments[0].public" in str(err.value)


def test_the_library_and_the_api_refuse_a_bad_group_alike(tmp_path: Path) -> None:
    monitor = DeploymentHealthMonitor()
    try:
        with pytest.raises(ConfigError) as err:
            monitor.add_deployment_monitoring("api", "http://127.0.0.1:9/h", group="x" * 65)
        assert err.value.field == "group"
    finally:
        monitor.close()
    with page_rig(tmp_path) as rig:
        body = {"deployment_id": "api", "health_check_url": "http://127.0.0.1:9/h",
                "group": "x" * 65}  # fmt: skip
        r = requests.post(rig.server.url + "/api/v1/deployments", json=body, timeout=10)
        assert r.status_code == 400 and r.json()["field"] == "group"
        body.update(group="Platform", public=True)
        r = requests.post(rig.server.url + "/api/v1/deployments", json=body, timeout=10)
        assert r.status_code == 201 and (r.json()["group"], r.json()["public"]) == (
            "Platform",
            True,
        )
