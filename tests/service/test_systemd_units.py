"""contrib/systemd: the units pass ``systemd-analyze verify`` without a warning, say what
the issue asks of them, and the configuration they describe validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.service_helpers import ROOT, cli

UNITS = ROOT / "contrib" / "systemd"
INSTALLED = "/opt/crackseg/bin/crackseg-monitor"


def _verify(analyze: str, folder: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze, "verify", "--man=no", *(f"./{u}" for u in units)],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def units(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this checkout's crackseg-monitor (not
    # one first on PATH: another checkout's, a pipx install).
    exe = str(Path(sys.executable).with_name("crackseg-monitor"))
    for unit in ("crackseg-monitor.service", "crackseg-monitor@.service"):
        text = (UNITS / unit).read_text()
        assert INSTALLED in text, unit
        (tmp_path / unit).write_text(text.replace(INSTALLED, exe))
    return tmp_path


def test_the_units_verify_without_a_warning(units: Path, systemd_analyze_bin: str) -> None:
    r = _verify(
        systemd_analyze_bin, units, "crackseg-monitor.service", "crackseg-monitor@models.service"
    )
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    # The check can fail: a typo is reported.
    broken = units / "broken.service"
    broken.write_text((units / "crackseg-monitor.service").read_text().replace(
        "Type=notify", "Type=notifyy"))  # fmt: skip
    assert "notifyy" in _verify(systemd_analyze_bin, units, "broken.service").stderr


@pytest.mark.parametrize("unit", ["crackseg-monitor.service", "crackseg-monitor@.service"])
def test_the_units_say_how_the_service_runs(unit: str) -> None:
    lines = set((UNITS / unit).read_text().splitlines())
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
    ):
        assert line in lines, (unit, line)
    state = [x for x in lines if x.startswith("StateDirectory=crackseg-monitor")]
    credential = [x for x in lines if x.startswith("LoadCredential=token:/etc/crackseg/")]
    assert state and credential, unit


def test_the_configuration_the_units_describe_validates(tmp_path: Path) -> None:
    state, credentials = tmp_path / "state", tmp_path / "credentials"
    state.mkdir()
    credentials.mkdir()
    (credentials / "token").write_text("t0ken\n")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "deployments: [{id: api, url: 'http://127.0.0.1:8080/health'}]\n"
        'store: {path: "${STATE_DIRECTORY}/history.db"}\n'
        'server: {token_file: "${CREDENTIALS_DIRECTORY}/token"}\n'
    )
    r = cli("validate", str(cfg), STATE_DIRECTORY=str(state),
            CREDENTIALS_DIRECTORY=str(credentials))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert str(state / "history.db") in r.stdout and "t0ken" not in r.stdout
