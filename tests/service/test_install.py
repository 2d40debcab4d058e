"""The package as a platform engineer installs it: a wheel built from this checkout, installed
into a fresh virtual environment outside it, then ``--version``, ``validate`` on the examples
and a short ``run`` of the installed ``crackseg-monitor``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from crackseg.utils.deployment.version import VERSION
from tests.support.service_helpers import ROOT, Endpoint


def _clean_env(**extra: str) -> dict[str, str]:
    # Nothing of the checkout leaks in: no PYTHONPATH, no active virtual environment.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("CRACKSEG_MONITOR_CONFIG", None)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtual environment holding the built wheel."""
    base = tmp_path_factory.mktemp("install")
    assert not base.is_relative_to(ROOT)
    # Built from a copy of what the wheel is made of: setuptools writes build/ and
    # *.egg-info into the tree it builds, which must not be the checkout.
    tree = base / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(tree)],
        check=True, timeout=600, env=_clean_env(), cwd=base,
    )  # fmt: skip
    (wheel,) = dist.glob("crackseg_deploy-*.whl")
    assert wheel.name.startswith(f"crackseg_deploy-{VERSION}-")
    names = zipfile.ZipFile(wheel).namelist()
    # Namespace packages: nothing under crackseg/ or crackseg/utils/ that another
    # distribution (the CrackSeg package itself) could own.
    assert "crackseg/__init__.py" not in names and "crackseg/utils/__init__.py" not in names
    ours = [n for n in names if n.startswith("crackseg/")]
    assert ours and all(n.startswith("crackseg/utils/deployment/") for n in ours)
    assert any(n.endswith("licenses/LICENSE") for n in names)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"),
         str(wheel)],
        check=True, timeout=600, env=_clean_env(), cwd=base,
    )  # fmt: skip
    return venv / "bin"


def _run(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "crackseg-monitor"), *args], capture_output=True, text=True,
        timeout=60, env=_clean_env(**env), cwd=bin_dir.parent,
    )  # fmt: skip


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Path) -> None:
    code = "import crackseg.utils.deployment as d; print(d.__file__)"
    where = subprocess.run(
        [str(installed / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
        cwd=installed.parent,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(installed.parent)) and str(ROOT) not in where.stdout
    r = _run(installed, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"crackseg-monitor {VERSION}", r.stderr


def test_the_installed_command_validates_the_examples(installed: Path, tmp_path: Path) -> None:
    r = _run(installed, "validate", str(ROOT / "examples" / "monitor.yaml"))
    assert r.returncode == 0, r.stderr
    r = _run(
        installed, "validate", str(ROOT / "examples" / "alerting.yaml"),
        SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T000/B000/XXXX",
        MONITOR_DB=str(tmp_path / "a.db"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_the_installed_service_runs_and_says_its_version(installed: Path, tmp_path: Path) -> None:
    endpoint = Endpoint()
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        f"deployments: [{{id: api, url: '{endpoint.url}', check_interval: 0.5}}]\n"
        f"server: {{port: 0}}\nstore: {{path: '{tmp_path / 'h.db'}'}}\n"
    )
    proc = subprocess.Popen(
        [str(installed / "crackseg-monitor"), "run", "-c", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env(),
        cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it serves (or exits: then "")
        assert line.startswith("serving on "), (line, proc.poll())
        url = line.split()[-1]
        with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body == {"status": "healthy", "version": VERSION}
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        (info,) = [x for x in metrics.splitlines() if x.startswith("crackseg_build_info{")]
        assert f'version="{VERSION}"' in info and info.endswith(" 1.0"), info
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        endpoint.close()
