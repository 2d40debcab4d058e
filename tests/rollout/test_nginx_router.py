"""NginxRouter against a real nginx and real sample-service processes, under load."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.rollout.routers.base import Backend, TrafficRouter
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from tests.support.runtime import LoadGenerator, http_get, sample_target, start_instance


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessTarget]:
    with sample_target(tmp_path_factory.mktemp("runtime-nginx")) as t:
        yield t


@pytest.fixture(scope="module")
def v1(target: ProcessTarget) -> Instance:
    return start_instance(target, "v1", "blue")


@pytest.fixture(scope="module")
def v2(target: ProcessTarget) -> Instance:
    return start_instance(target, "v2", "green")


@pytest.fixture
def router(nginx_router: NginxRouter) -> NginxRouter:
    return nginx_router


def _only(inst: Instance, weight: int = 100) -> list[Backend]:
    return [Backend(inst.address, weight, inst.version)]


def test_is_a_traffic_router(router: NginxRouter) -> None:
    assert isinstance(router, TrafficRouter)
    assert router.public_url == f"http://127.0.0.1:{router.listen_port}"
    assert router.generation == 0 and router.current() == []
    assert http_get(router.public_url + "/predict")[0] == 502  # no backends yet


def test_switch_back_and_forth_under_load_loses_no_request(
    router: NginxRouter, target: ProcessTarget, v2: Instance
) -> None:
    blue = start_instance(target, "v1", "blue")  # torn down below, so not the shared v1
    router.apply(_only(blue))
    with LoadGenerator(router.public_url + "/predict", rate=300, max_duration=40) as load:
        load.wait_for_requests(150)
        for inst in (v2, blue, v2):
            router.apply(_only(inst))
            switched = time.monotonic()
            load.wait_for_requests(300)
            # Requests sent once apply() returned reach the new version only.
            after = load.window(since=switched)
            assert after.total > 0 and set(after.by_version) == {inst.version}, after
        # Blue-green's last step: stop the old version while traffic flows.
        target.teardown(blue, grace_period=5)
        load.wait_for_requests(150)
    result = load.result
    assert result.failed == 0, result
    assert result.total >= 1200 and result.by_version["v1"] > 0 and result.by_version["v2"] > 0
    assert router.generation == 4 and router.current() == _only(v2)


@pytest.mark.parametrize("canary_weight", [10, 50])
def test_weighted_split_is_observed_within_5_points(
    router: NginxRouter, v1: Instance, v2: Instance, canary_weight: int
) -> None:
    router.apply(
        [Backend(v1.address, 100 - canary_weight, "v1"), Backend(v2.address, canary_weight, "v2")]
    )
    with LoadGenerator(router.public_url + "/predict", rate=400, max_duration=30) as load:
        load.wait_for_requests(600)
    result = load.result
    assert result.failed == 0, result
    assert abs(result.share("v2") - canary_weight) <= 5, result.by_version


def test_weight_zero_backends_get_no_traffic(
    router: NginxRouter, v1: Instance, v2: Instance
) -> None:
    router.apply([Backend(v1.address, 0, "v1"), Backend(v2.address, 1, "v2")])
    assert router.sample_versions(count=20) == {"v2": 20}
    assert "v1" not in router.upstream_file.read_text()


def test_large_request_bodies_pass_through(router: NginxRouter, v1: Instance) -> None:
    # Bodies over nginx's in-memory buffer go to its temp folder, which its unprivileged
    # workers must be able to write.
    router.apply(_only(v1))
    status, headers, body = http_get(
        router.public_url + "/predict", method="POST", data=b"x" * 512_000, timeout=10
    )
    assert (status, headers["X-Version"]) == (200, "v1"), body


def test_rejected_config_keeps_the_old_one_serving(router: NginxRouter, v1: Instance) -> None:
    router.apply(_only(v1))
    before = router.upstream_file.read_text()
    with pytest.raises(RouterError, match="nginx -t rejected"):
        router.apply([Backend("127.0.0.1:99999", 100, "bad")])  # invalid port: nginx -t fails
    for bad in (
        [Backend("127.0.0.1:1; include /etc/passwd", 1)],  # never reaches the config file
        [Backend(v1.address, 0)],
        [],
    ):
        with pytest.raises(RouterError):
            router.apply(bad)
    assert router.upstream_file.read_text() == before
    assert router.generation == 1 and router.current() == _only(v1)
    status, headers, _ = http_get(router.public_url + "/predict")
    assert status == 200 and headers["X-Version"] == "v1" and headers["X-Router-Generation"] == "1"


def test_backend_killed_mid_traffic_is_retried_on_the_other(
    router: NginxRouter, target: ProcessTarget, v1: Instance
) -> None:
    doomed = start_instance(target, "v2", "canary")
    router.apply([Backend(v1.address, 50, "v1"), Backend(doomed.address, 50, "v2")])
    with LoadGenerator(router.public_url + "/predict", rate=300, max_duration=30) as load:
        load.wait_for_requests(200)
        assert doomed.pid is not None
        psutil.Process(doomed.pid).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        load.wait_for_requests(400)
    target.teardown(doomed)
    result = load.result
    assert result.failed == 0, result
    after = load.window(since=killed)
    assert after.total > 0 and set(after.by_version) == {"v1"}, after


def test_close_leaves_no_nginx_process(tmp_path: Path, v1: Instance, nginx_bin: str) -> None:
    router = NginxRouter(workdir=tmp_path / "nginx")
    router.apply(_only(v1))
    master = router.pid
    assert master is not None
    procs = [psutil.Process(master), *psutil.Process(master).children()]
    assert len(procs) >= 2
    router.close()
    router.close()  # idempotent
    _gone, alive = psutil.wait_procs(procs, timeout=10)
    assert not alive
    with pytest.raises(OSError):
        http_get(router.public_url + "/health", timeout=1)
    with pytest.raises(RouterError, match="closed"):
        router.apply(_only(v1))


def test_external_nginx_mode_reloads_through_nginx_s_reload(
    router: NginxRouter, v1: Instance, v2: Instance
) -> None:
    router.apply(_only(v1))
    external = NginxRouter(
        router.listen_port,
        workdir=router.workdir,
        owns_process=False,
        main_config=router.workdir / "nginx.conf",
    )
    external.apply(_only(v2))
    assert http_get(router.public_url + "/predict")[1]["X-Version"] == "v2"
    external.close()  # starts nothing, stops nothing
    assert router.pid is not None


def test_worker_shutdown_timeout_ends_old_workers_held_by_slow_requests(
    tmp_path: Path, target: ProcessTarget, v1: Instance, nginx_bin: str
) -> None:
    slow = start_instance(target, "v2", "slow", extra_args=["--latency-ms", "8000"])
    with NginxRouter(workdir=tmp_path / "nginx", worker_shutdown_timeout="1s") as router:
        router.apply(_only(slow))
        assert router.pid is not None
        old_workers = psutil.Process(router.pid).children()
        outcome: list[object] = []
        request = threading.Thread(
            target=lambda: outcome.append(_try_get(router.public_url + "/predict", timeout=15))
        )
        request.start()
        deadline = time.monotonic() + 10
        assert slow.pid is not None
        while not any(  # the slow request has reached the backend
            c.status == psutil.CONN_ESTABLISHED for c in psutil.Process(slow.pid).net_connections()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        switched = time.monotonic()
        router.apply(_only(v1))
        _gone, alive = psutil.wait_procs(old_workers, timeout=6)
        assert not alive, "old workers outlived worker_shutdown_timeout"
        assert time.monotonic() - switched < 6  # well before the 8 s request would end
        request.join(timeout=15)
        assert outcome and outcome[0] != 200  # the held request was cut, as configured
    target.teardown(slow, grace_period=1)


def _try_get(url: str, timeout: float) -> object:
    try:
        return http_get(url, timeout=timeout)[0]
    except OSError as exc:
        return exc


def test_start_failure_is_a_router_error_and_leaves_nothing_running(
    tmp_path: Path, nginx_bin: str
) -> None:
    with pytest.raises(RouterError, match="nginx -t rejected"):
        NginxRouter(70000, workdir=tmp_path / "nginx")  # invalid port: nginx -t fails
    leftovers = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "nginx" and str(tmp_path) in " ".join(proc.info["cmdline"] or ()):
            leftovers.append(proc)
    assert not leftovers
