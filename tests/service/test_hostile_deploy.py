"""The deploy channel under a hasty operator: two ``deploy`` commands at once each report
their own outcome (or are refused at once, naming the rollout in progress), and any version
a user can type is deployed end to end (ids derived safely) or refused before anything
starts. Real processes behind a real nginx."""

from __future__ import annotations

import fcntl
import json
import re
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.service_helpers import Running, cli, running, wait_until

SEMVER = "1.2.3+build.5"
LONG = "2.0.0-rc.1+" + "b" * 105  # 116 characters: the ids once broke past ~115


def _version_at(url: str) -> str:
    with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:
        return str(json.loads(resp.read())["version"])


def _config(tmp_path: Path, *, bake: float = 0.5, version: str = "v2") -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(
        f"""
store: {{path: history.db, flush_interval: 0.2}}
deploy:
  name: crackseg-model
  strategy: blue_green
  version: "{version}"
  stable_version: v1
  target:
    command: [{sys.executable}, -m, crackseg.utils.deployment.service.sample_service,
              --host, "{{host}}", --port, "{{port}}", --version, "{{version}}"]
    grace_period: 1
    log_dir: {tmp_path / "logs"}
  router: {{type: nginx, listen_port: 0}}
  rollout:
    check_interval: 0.2
    success_threshold: 2
    failure_threshold: 2
    health_timeout: 20
    bake_seconds: {bake}
    min_samples: 1
    keep_old_seconds: 0
    grace_period: 1
"""
    )
    return path


def _serving_url(sup: Running, version: str) -> str:
    line = wait_until(
        lambda: (
            next((x for x in sup.out if f"deployed {version}; serving at" in x), None)
            or (sup.proc.poll() is not None and f"exited: {sup.err[-5:]}")
        ),
        timeout=90,
        what=f"{version} deployed",
    )
    m = re.search(r"serving at (http://\S+)", str(line))
    assert m, line
    return m.group(1)


def test_two_deploys_at_once_each_report_their_own_outcome(tmp_path: Path, nginx_bin: str) -> None:
    cfg = _config(tmp_path, bake=6.0)  # long enough for the other command to arrive
    with running("deploy", "-c", str(cfg)) as sup:
        url = _serving_url(sup, "v2")
        wait_until(lambda: any("serving; Ctrl-C" in x for x in sup.out), 30, "serving")
        first = Running("deploy", "-c", str(cfg), "--version", "v3")
        time.sleep(1.5)  # the case itself: a second command 1.5 s into the first rollout
        started = time.monotonic()
        second = Running("deploy", "-c", str(cfg), "--version", "v4")
        assert second.wait(30) == 1, second.out + second.err
        assert time.monotonic() - started < 20  # refused at once, not after v3's rollout
        text = "\n".join(second.out)
        assert "refused: a rollout is in progress: deploy v3" in text, text
        assert "v3" not in text.replace("deploy v3", "")  # none of v3's progress
        assert first.wait(120) == 0, first.out + first.err
        assert any("deployed v3; serving at" in x for x in first.out), first.out
        assert _version_at(url) == "v3"

        # Two at the same instant: one deploys, the other is refused; each says which.
        a = Running("deploy", "-c", str(cfg), "--version", "v5")
        b = Running("deploy", "-c", str(cfg), "--version", "v6")
        codes = {"v5": a.wait(120), "v6": b.wait(120)}
        outs = {"v5": "\n".join(a.out), "v6": "\n".join(b.out)}
        assert sorted(codes.values()) == [0, 1], (codes, outs)
        winner = next(v for v, c in codes.items() if c == 0)
        loser = next(v for v, c in codes.items() if c == 1)
        assert f"deployed {winner}; serving at" in outs[winner]
        assert f"refused: a rollout is in progress: deploy {winner}" in outs[loser]
        assert f"deployed {winner}" not in outs[loser]
        assert _version_at(url) == winner


def test_a_semver_build_and_a_long_version_deploy_end_to_end(
    tmp_path: Path, nginx_bin: str
) -> None:
    cfg = _config(tmp_path, version=SEMVER)
    with running("deploy", "-c", str(cfg)) as sup:
        url = _serving_url(sup, SEMVER)
        assert _version_at(url) == SEMVER
        r = cli("deploy", "-c", str(cfg), "--version", LONG, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"deployed {LONG}; serving at" in r.stdout
        assert _version_at(url) == LONG
        r = cli("rollback", "-c", str(cfg), timeout=120)  # undoable, so it was guarded
        assert r.returncode == 0, r.stdout + r.stderr
        assert _version_at(url) == SEMVER
    r = cli("history", "-c", str(cfg), "--json")
    states = {d["version"]: d["state"] for d in json.loads(r.stdout)["deployments"]}
    assert states == {"v1": "success", SEMVER: "success", LONG: "rolled_back"}, states


def test_a_version_no_rollout_can_take_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    for bad in ("v" * 129, "v 2", "v2\n"):
        cfg = _config(tmp_path, version=bad.replace("\n", "\\n"))
        r = cli("validate", str(cfg))
        assert r.returncode == 1 and "deploy.version" in r.stderr, (bad, r.stderr)
        r = cli("deploy", "-c", str(_config(tmp_path)), "--version", bad, timeout=30)
        assert r.returncode == 1 and "--version" in r.stderr, (bad, r.stderr)
        assert not (tmp_path / "history.deploy").exists()  # no supervisor was started


def test_two_deploys_at_once_with_no_supervisor_start_one(tmp_path: Path, nginx_bin: str) -> None:
    cfg = _config(tmp_path)
    # A supervisor that is starting holds the claim: a second one gives way at once.
    state = tmp_path / "history.deploy"
    state.mkdir()
    with open(state / "supervisor.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = cli("deploy", "-c", str(cfg), timeout=30)
    assert r.returncode == 1 and "another deploy supervisor is starting" in r.stderr, r.stderr
    a = Running("deploy", "-c", str(cfg))
    b = Running("deploy", "-c", str(cfg))
    try:
        loser = wait_until(
            lambda: next((r for r in (a, b) if r.proc.poll() is not None), None),
            60,
            "one command to give way",
        )
        winner = b if loser is a else a
        assert loser.wait(10) == 1
        said = "\n".join(loser.out + loser.err)
        # Refused by the supervisor's claim, or (once the winner serves requests) as a
        # request made while its first rollout runs: either way at once, and saying why.
        assert (
            "another deploy supervisor is starting" in said
            or "refused: a rollout is in progress" in said
        ), said
        _serving_url(winner, "v2")
        assert winner.proc.poll() is None  # the one supervisor serves on
    finally:
        a.stop()
        b.stop()
