"""The judge's input through a real nginx: every request read once, per arm and per stratum,
synthetic load told from user traffic by the router's own token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.rollout.arms import ArmReader, Look, baseline
from crackseg.utils.deployment.rollout.load import LoadGenerator, LoadSpec
from crackseg.utils.deployment.rollout.routers.base import Backend
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.base import Instance
from tests.support.runtime import http_get, sample_target, start_instance
from tests.support.wait import wait_until


@pytest.fixture
def rig(
    tmp_path: Path, nginx_router: NginxRouter
) -> Iterator[tuple[NginxRouter, Instance, Instance]]:
    args = {"v1": ["--latency-ms", "2"], "v2": ["--error-rate", "0.5"]}
    router = nginx_router
    with sample_target(tmp_path, version_args=args) as target:
        v1 = start_instance(target, "v1", "blue")
        v2 = start_instance(target, "v2", "green")
        router.apply([Backend(v1.address, 1, "v1"), Backend(v2.address, 1, "v2")])
        yield router, v1, v2


def _until_total(reader: ArmReader, n: int) -> Look:
    wait_until(
        lambda: reader.look() is not None and _requests(reader.total) >= n,
        timeout=10.0,
        what=f"{n} requests in the log",
    )
    return reader.total


def _requests(look: Look) -> int:
    return look.requests("canary") + look.requests("stable")


def test_each_request_is_read_once_per_arm_and_stratum(
    rig: tuple[NginxRouter, Instance, Instance],
) -> None:
    router, v1, v2 = rig
    since = time.time()
    for _ in range(40):
        http_get(router.public_url + "/predict")
    name, token = router.load_header
    # A client that guesses the header but not the token stays a user.
    http_get_with(router.public_url + "/predict", {name: "x" * len(token)})
    sent = _synthetic(router, rate=40.0, seconds=0.5)
    reader = ArmReader(router, [v2.address], [v1.address], [-1.0, 1e9], since)
    total = _until_total(reader, 41 + sent)
    canary, stable = total.counts("user", "canary"), total.counts("user", "stable")
    assert canary.requests + stable.requests == 41
    assert total.requests("canary", "load") + total.requests("stable", "load") == sent
    # v2 fails every other request (deterministic spreading), v1 none.
    assert stable.errors == 0 and total.errors("stable") == 0
    assert canary.errors == canary.requests // 2
    # Slow requests count against each threshold (as the judge's ArmCounts).
    assert canary.slow == (canary.requests - canary.timeouts, 0)
    assert stable.slow == (stable.requests - stable.timeouts, 0)
    assert _requests(reader.look()) == 0  # nothing is read twice
    # The canary's own (shifted) thresholds, in both strata; the stable keeps its own.
    shifted = ArmReader(router, [v2.address], [v1.address], [-1.0, 1e9], since, [1e9, 2e9])
    again = _until_total(shifted, 41 + sent)
    for stratum in ("user", "load"):
        assert again.counts(stratum, "canary").slow == (0, 0)
    assert again.counts("user", "stable").slow == stable.slow
    assert again.counts("user", "canary").requests == canary.requests
    assert shifted.restart(since).canary_thresholds_ms == (1e9, 2e9)


def test_the_baseline_freezes_thresholds_from_the_stable_users_only(
    rig: tuple[NginxRouter, Instance, Instance],
) -> None:
    router, v1, _ = rig
    router.apply([Backend(v1.address, 1, "v1")])
    for _ in range(30):
        http_get(router.public_url + "/predict")
    wait_until(
        lambda: baseline(router, [v1.address]).counts.requests >= 30, timeout=10.0, what="log"
    )
    few = baseline(router, [v1.address])
    assert few.thresholds_ms == () and "p99" in few.note  # too few requests for a p99
    assert few.counts.errors == 0
    since = time.time()
    assert _synthetic(router, rate=100.0, seconds=1.0) >= 60
    reader = ArmReader(router, [], [v1.address], [], since)
    wait_until(
        lambda: (
            reader.look().requests("stable", "load") >= 0
            and reader.total.requests("stable", "load") >= 20
        ),
        timeout=10.0,
        what="the load in the log",
    )
    # The load is not the stable's user traffic: no threshold from it, no request counted.
    after = baseline(router, [v1.address])
    assert after.counts.requests == few.counts.requests and after.thresholds_ms == ()
    for _ in range(80):
        http_get(router.public_url + "/predict")
    wait_until(
        lambda: baseline(router, [v1.address]).counts.requests >= 110, timeout=10.0, what="log"
    )
    full = baseline(router, [v1.address])
    # v1 answers after 2 ms: its p50/p90/p99 are real, increasing thresholds.
    assert len(full.thresholds_ms) >= 1 and full.note == ""
    assert list(full.thresholds_ms) == sorted(set(full.thresholds_ms))
    assert len(full.counts.slow) == len(full.thresholds_ms)


def _synthetic(router: NginxRouter, *, rate: float, seconds: float) -> int:
    """Run the rollout's load generator through ``router`` with its token; requests sent."""
    name, token = router.load_header
    spec = LoadSpec(path="/predict", rate=rate, duration=seconds, headers={name: token})
    result = LoadGenerator(router.public_url, spec).run()
    assert result.errors == 0 or result.ok > 0, result
    return result.sent


def http_get_with(url: str, headers: dict[str, str]) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
