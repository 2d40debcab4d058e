"""The rollout API under a hasty operator: two ``deploy`` commands at once each report their
own outcome (or are refused at once, naming the rollout in progress), and any version a
user can type is deployed end to end (ids derived safely) or refused before anything
starts. Real processes behind a real nginx, run by the service."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.service_helpers import Running, cli, running

SEMVER = "1.2.3+build.5"
LONG = "2.0.0-rc.1+" + "b" * 105  # 116 characters: the ids once broke past ~115
TOKEN = "hasty-operator-token"


def _version_at(url: str) -> str:
    with urllib.request.urlopen(f"{url}/version", timeout=5) as resp:
        return str(json.loads(resp.read())["version"])


def _config(tmp_path: Path, *, bake: float = 0.5, version: str = "v1") -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(
        f"""
store: {{path: history.db, flush_interval: 0.2}}
server: {{port: 0, token: {TOKEN}}}
deploy:
  name: crackseg-model
  strategy: blue_green
  version: "{version}"
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


@contextlib.contextmanager
def _service(cfg: Path) -> Iterator[str]:
    with running("run", "-c", str(cfg)) as svc:
        yield svc.url(60)


def _deploy(base: str, version: str) -> Running:
    return Running("deploy", "--url", base, "--version", version, CRACKSEG_MONITOR_TOKEN=TOKEN)


def _serving_url(r: Running, version: str) -> str:
    assert r.wait(120) == 0, r.out + r.err
    line = next(x for x in r.out if f"deployed {version}; serving at" in x)
    return line.split("serving at ")[1].split()[0]


def test_two_deploys_at_once_each_report_their_own_outcome(tmp_path: Path, nginx_bin: str) -> None:
    cfg = _config(tmp_path, bake=6.0)  # long enough for the other command to arrive
    with _service(cfg) as base:
        url = _serving_url(_deploy(base, "v1"), "v1")
        first = _deploy(base, "v3")
        time.sleep(1.5)  # the case itself: a second command 1.5 s into the first rollout
        started = time.monotonic()
        second = _deploy(base, "v4")
        assert second.wait(30) == 1, second.out + second.err
        assert time.monotonic() - started < 20  # refused at once, not after v3's rollout
        said = "\n".join(second.out + second.err)
        assert "HTTP 409: a rollout is in progress: deploy v3" in said, said
        assert not second.out, second.out  # nothing of v3's rollout printed as its own
        assert _serving_url(first, "v3") == url
        assert _version_at(url) == "v3"

        # Two at the same instant: one deploys, the other is refused; each says which.
        a, b = _deploy(base, "v5"), _deploy(base, "v6")
        codes = {"v5": a.wait(120), "v6": b.wait(120)}
        outs = {"v5": "\n".join(a.out + a.err), "v6": "\n".join(b.out + b.err)}
        assert sorted(codes.values()) == [0, 1], (codes, outs)
        winner = next(v for v, c in codes.items() if c == 0)
        loser = next(v for v, c in codes.items() if c == 1)
        assert f"deployed {winner}; serving at" in outs[winner]
        assert f"a rollout is in progress: deploy {winner}" in outs[loser]
        assert f"deployed {winner}" not in outs[loser]
        assert _version_at(url) == winner


def test_a_semver_build_and_a_long_version_deploy_end_to_end(
    tmp_path: Path, nginx_bin: str
) -> None:
    cfg = _config(tmp_path, version=SEMVER)
    with _service(cfg) as base:
        r = cli("deploy", "--url", base, timeout=120, CRACKSEG_MONITOR_TOKEN=TOKEN)
        assert r.returncode == 0, r.stdout + r.stderr  # the file's deploy.version
        url = r.stdout.split("serving at ")[1].split()[0]
        assert _version_at(url) == SEMVER
        r = cli("deploy", "--url", base, "--version", LONG, timeout=120,
                CRACKSEG_MONITOR_TOKEN=TOKEN)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"deployed {LONG}; serving at" in r.stdout
        assert _version_at(url) == LONG
        r = cli("rollback", "--url", base, timeout=120, CRACKSEG_MONITOR_TOKEN=TOKEN)
        assert r.returncode == 0, r.stdout + r.stderr  # undoable, so it was guarded
        assert _version_at(url) == SEMVER
    r = cli("history", "-c", str(cfg), "--json")
    states = {d["version"]: d["state"] for d in json.loads(r.stdout)["deployments"]}
    assert states == {SEMVER: "success", LONG: "rolled_back"}, states


def test_a_version_no_rollout_can_take_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    for bad in ("v" * 129, "v 2", "v2\n"):
        cfg = _config(tmp_path, version=bad.replace("\n", "\\n"))
        r = cli("validate", str(cfg))
        assert r.returncode == 1 and "deploy.version" in r.stderr, (bad, r.stderr)
        # Refused by the command itself: no service needs to answer (none does here).
        r = cli("deploy", "--url", "http://127.0.0.1:9", "--version", bad, timeout=30)
        assert r.returncode == 1 and "--version" in r.stderr, (bad, r.stderr)
