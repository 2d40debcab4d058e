"""Silences, maintenance windows and flap detection (pure suppressors, wall-clock driven)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.monitoring.flapping import FlapDetector
from crackseg.utils.deployment.monitoring.suppression import (
    MaintenanceSchedule,
    MaintenanceWindow,
    SilenceRegistry,
)

T0 = 1_800_000_000.0


def _at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: str = "UTC") -> float:
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).timestamp()


def test_silence_by_deployment_type_and_glob_for_its_duration() -> None:
    reg = SilenceRegistry()
    by_dep = reg.add(deployment_id="api", duration_s=600, comment="deploying v2", now=T0)
    reg.add(alert_type="high_cpu_usage", duration_s=60, now=T0)
    reg.add(deployment_id="canary-*", alert_type="high_error_rate", duration_s=60, now=T0)
    reason = reg("api", "health_check_failed", T0 + 10)
    assert reason is not None and by_dep in reason and "deploying v2" in reason
    assert reg("web", "high_cpu_usage", T0 + 59) is not None
    assert reg("web", "high_cpu_usage", T0 + 60) is None  # ended
    assert reg("canary-7", "high_error_rate", T0) is not None
    assert reg("canary-7", "high_cpu_usage", T0 + 61) is None
    assert reg("web", "health_check_failed", T0) is None
    assert reg("api", "health_check_failed", T0 - 1) is None  # not started yet
    assert [s.id for s in reg.list(now=T0 + 100)] == [by_dep]
    assert reg.remove(by_dep) and not reg.remove(by_dep)
    assert reg("api", "health_check_failed", T0 + 10) is None


def test_silences_persist_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "silences.json"
    reg = SilenceRegistry(path)
    sid = reg.add(deployment_id="api", duration_s=3600, comment="upgrade", created_by="ops")
    data = json.loads(path.read_text())
    assert data["silences"][0]["id"] == sid and data["silences"][0]["created_by"] == "ops"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".silences-")]  # no temp
    again = SilenceRegistry(path)
    assert [s.to_dict() for s in again.list()] == [s.to_dict() for s in reg.list()]
    assert again.remove(sid)
    assert SilenceRegistry(path).list() == []
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="fix or delete"):
        SilenceRegistry(path)


def test_two_processes_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "silences.json"
    service, cli = SilenceRegistry(path), SilenceRegistry(path)  # as if in two processes
    now = time.time()
    sid = cli.add(deployment_id="api", duration_s=600, comment="from the command line")
    assert "from the command line" in str(service("api", "x", now + 1))
    kept = service.add(alert_type="high_cpu_usage", duration_s=600)  # keeps cli's silence
    assert {s.id for s in cli.list()} == {sid, kept}
    assert service.remove(sid) and not cli.remove(sid)
    assert cli("api", "x", now + 1) is None and cli("db", "high_cpu_usage", now + 1) is not None
    path.write_text("{torn")  # a broken file: keep suppressing with the last good state
    assert cli("db", "high_cpu_usage", now + 1) is not None


def test_silence_duration_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="duration_s"):
        SilenceRegistry().add(deployment_id="api", duration_s=0)


def test_weekly_window_in_a_time_zone_including_past_midnight() -> None:
    # Saturday 22:00 to Sunday 02:00 Berlin time.
    w = MaintenanceWindow.from_config(
        {"name": "weekend", "days": ["sat"], "start": "22:00", "end": "02:00",
         "timezone": "Europe/Berlin", "deployments": ["api", "batch-*"]}
    )  # fmt: skip
    berlin = "Europe/Berlin"
    assert w.active(_at(2026, 11, 28, 22, 0, berlin))  # Saturday 22:00
    assert w.active(_at(2026, 11, 29, 1, 59, berlin))  # Sunday 01:59
    assert not w.active(_at(2026, 11, 29, 2, 0, berlin))
    assert not w.active(_at(2026, 11, 28, 21, 59, berlin))
    assert not w.active(_at(2026, 11, 29, 22, 30, berlin))  # Sunday evening: not a window day
    assert w.active(_at(2026, 11, 28, 22, 30, "UTC"))  # 23:30 in Berlin (UTC+1)
    assert not w.active(_at(2026, 11, 28, 20, 30, "UTC"))  # 21:30 in Berlin
    schedule = MaintenanceSchedule([w])
    assert schedule("api", "health_check_failed", _at(2026, 11, 28, 23, 0, berlin)) == (
        "maintenance window 'weekend'"
    )
    assert schedule("batch-3", "x", _at(2026, 11, 28, 23, 0, berlin)) is not None
    assert schedule("web", "x", _at(2026, 11, 28, 23, 0, berlin)) is None


def test_one_off_window_and_yaml_values() -> None:
    specs = yaml.safe_load(
        """
        - name: migration
          start: 2026-12-01T22:00:00
          end: 2026-12-02T01:00:00
          timezone: America/New_York
        - name: daily-backup
          start: 03:00
          end: 03:30
        """
    )
    schedule = MaintenanceSchedule.from_config(specs)
    ny = "America/New_York"
    assert schedule("any", "x", _at(2026, 12, 1, 23, 0, ny)) == "maintenance window 'migration'"
    assert schedule("any", "x", _at(2026, 12, 2, 1, 0, ny)) is None
    assert schedule("any", "x", _at(2026, 12, 7, 3, 15)) == "maintenance window 'daily-backup'"
    assert schedule("any", "x", _at(2026, 12, 7, 3, 30)) is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"start": "22:00"}, "maintenance.end"),
        ({"start": "25:00", "end": "01:00"}, "maintenance.start"),
        ({"start": "22:00", "end": "01:00", "days": ["someday"]}, "maintenance.days"),
        ({"start": "22:00", "end": "01:00", "timezone": "Mars/Olympus"}, "maintenance.timezone"),
        ({"start": "2026-12-02T00:00", "end": "2026-12-01T00:00"}, "maintenance.end"),
        ({"start": "22:00", "end": "01:00", "weekdays": ["mon"]}, "maintenance.weekdays"),
    ],
)
def test_window_config_errors_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        MaintenanceWindow.from_config(spec)
    assert err.value.field == field


def test_flapping_needs_more_than_n_changes_within_the_window() -> None:
    flaps = FlapDetector(max_changes=3, window_s=60)
    statuses = ["healthy", "unhealthy", "healthy", "unhealthy", "healthy"]
    assert [flaps.record("api", s, T0 + i) for i, s in enumerate(statuses)] == [
        False, False, False, False, True,
    ]  # fmt: skip
    assert flaps.record("api", "healthy", T0 + 10)  # not a change, still flapping
    assert flaps.is_flapping("api", T0 + 60.5)  # the changes at 1..4 s are all in the window
    assert not flaps.is_flapping("api", T0 + 61)  # the one at 1 s left it
    assert not flaps.record("other", "unhealthy", T0)
    # Changes spread wider than the window never count as flapping.
    slow = FlapDetector(max_changes=1, window_s=10)
    assert not any(slow.record("a", s, T0 + 20 * i) for i, s in enumerate("abababab"))
    flaps.forget("api")
    assert not flaps.is_flapping("api", T0 + 5)


def test_registry_and_schedule_plug_in_as_suppressors() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
    silences = SilenceRegistry()
    silences.add(deployment_id="web", duration_s=60, now=now)
    window = MaintenanceWindow("noon", deployments=("api",), starts_at=now - 1, ends_at=now + 1)
    suppressors: list[Callable[[str, str, float], str | None]] = [
        silences,
        MaintenanceSchedule([window]),
    ]

    def reason(dep: str, at: float) -> str | None:
        return next((r for fn in suppressors if (r := fn(dep, "high_cpu_usage", at))), None)

    assert reason("api", now) == "maintenance window 'noon'"
    assert str(reason("web", now)).startswith("silenced by ")
    assert reason("db", now) is None
    assert reason("api", now + 1) is None
