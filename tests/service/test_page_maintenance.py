"""Maintenance windows on the page's API: their schedule, whether open, what they hold back."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from crackseg.utils.deployment.monitoring.suppression import (
    MaintenanceSchedule,
    MaintenanceWindow,
)
from crackseg.utils.deployment.service.web.app import WebServer
from tests.support.page_rig import page_rig


def test_windows_listed_with_what_they_hold_back(tmp_path: Path) -> None:
    now = time.time()
    nightly_spec = {"name": "nightly", "days": ["sat", "sun"], "start": "22:00", "end": "02:00"}
    schedule = MaintenanceSchedule([
        MaintenanceWindow("db upgrade", ("batch-*",), starts_at=now - 60, ends_at=now + 3600),
        MaintenanceWindow.from_config(nightly_spec),
    ])  # fmt: skip
    with page_rig(tmp_path) as rig:
        rig.add("batch-eu", "/ok", checks=1)
        rig.add("api", "/ok", checks=1)
        with WebServer(rig.monitor, maintenance=lambda: schedule) as server:
            body = requests.get(server.url + "/api/v1/maintenance", timeout=10).json()
        empty = requests.get(rig.server.url + "/api/v1/maintenance", timeout=10).json()
    assert empty == {"windows": [], "count": 0, "next_cursor": None}
    assert body["count"] == 2
    upgrade, nightly = body["windows"]
    assert upgrade["active"] is True and upgrade["holding"] == ["batch-eu"]
    assert upgrade["deployments"] == ["batch-*"] and upgrade["days"] is None
    assert nightly["days"] == ["sat", "sun"] and (nightly["start"], nightly["end"]) == (
        "22:00", "02:00")  # fmt: skip
    assert nightly["deployments"] == [] and nightly["timezone"] == "UTC"
