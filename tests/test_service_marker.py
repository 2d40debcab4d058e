"""The ``service`` marker is true by construction: a test that asks for an outside program (a
fixture of tests/support/programs.py, directly or through a rig) carries it, and
``-m "not service"`` leaves out every such test. Checked on a child pytest's collection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.support.programs import PROGRAM_FIXTURES

ROOT = Path(__file__).resolve().parents[1]
NGINX_TESTS = "tests/rollout/test_nginx_router.py"


def _collect(tmp_path: Path, *args: str) -> dict[str, dict[str, Any]]:
    out = tmp_path / f"collected-{len(list(tmp_path.iterdir()))}.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            "-p", "tests.support.collection_report", *args,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CRACKSEG_COLLECTION_REPORT": str(out)},
    )  # fmt: skip
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: nothing selected
    report: dict[str, dict[str, Any]] = orjson.loads(out.read_bytes())
    return report


def test_nginx_tests_carry_the_marker_directly_and_through_their_rig(tmp_path: Path) -> None:
    report = _collect(tmp_path, NGINX_TESTS)
    direct = report[f"{NGINX_TESTS}::test_close_leaves_no_nginx_process"]
    assert "nginx_bin" in direct["fixtures"] and "service" in direct["markers"]
    # router -> nginx_router -> nginx_bin: the closure is transitive.
    via_rig = report[f"{NGINX_TESTS}::test_is_a_traffic_router"]
    assert {"router", "nginx_router", "nginx_bin"} <= set(via_rig["fixtures"])
    assert "service" in via_rig["markers"]
    assert _collect(tmp_path, NGINX_TESTS, "-m", "not service") == {}


def test_not_service_leaves_out_every_test_that_uses_a_program(tmp_path: Path) -> None:
    everything = _collect(tmp_path, "tests")
    needing = {k for k, v in everything.items() if PROGRAM_FIXTURES & set(v["fixtures"])}
    marked = {k for k, v in everything.items() if "service" in v["markers"]}
    assert len(needing) > 100  # nginx, Prometheus, Alertmanager, Chromium, sshd, openssl, ...
    assert marked == needing  # nothing marked by hand that needs no program
    kept = _collect(tmp_path, "tests", "-m", "not service")
    assert set(kept) == set(everything) - needing


def test_no_test_file_writes_the_marker_by_hand() -> None:
    hand_written = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if "mark." + "service" in p.read_text()
    ]
    assert hand_written == []
