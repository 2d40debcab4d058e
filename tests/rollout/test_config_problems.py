"""Every problem of a rollout's configuration in one error: the rollout's options, its
synthetic load, its judge, the nginx router's options, the targets and their hosts.

Each error keeps the first problem as ``field``/``problem`` (what callers read) and lists
every one in ``problems`` and in its text, one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crackseg.utils.deployment.errors import ConfigError, ConfigProblems
from crackseg.utils.deployment.orchestration import DeploymentConfig
from crackseg.utils.deployment.rollout.judge import JudgeConfig
from crackseg.utils.deployment.rollout.load import LoadSpec
from crackseg.utils.deployment.rollout.routers.nginx import NginxRouter
from crackseg.utils.deployment.rollout.routers.nginx_conf import TlsListen
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget
from crackseg.utils.deployment.rollout.targets.ssh import SSHHost, SSHTarget


def _raised(make: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        make(**kwargs)
    return caught.value


def _fields(err: ConfigError) -> list[str]:
    return [field for field, _ in err.problems]


def test_a_deployment_config_with_three_bad_fields_names_all_three() -> None:
    err = _raised(
        DeploymentConfig,
        artifact_id="model",
        target_environment="production",
        bake_seconds=-5,
        canary_steps=[50, 10],
        on_inconclusive="pray",
    )
    assert _fields(err) == ["bake_seconds", "canary_steps", "on_inconclusive"]
    # The first stays the error's field and problem, as callers read it.
    assert (err.field, err.problem) == ("bake_seconds", "must be >= 0, got -5")
    text = str(err).splitlines()
    assert text == [f"{field}: {what}" for field, what in err.problems]
    assert "must increase strictly, got [50, 10]" in text[1]
    assert "must be 'rollback' or 'proceed'" in text[2]


def test_problems_of_every_kind_come_together_and_in_their_sections() -> None:
    err = _raised(
        DeploymentConfig,
        artifact_id="",
        target_environment="production",
        version="v 2",
        health_check_url="ftp://x",
        replicas=0,
        max_error_rate_percent=150,
        max_latency_ratio=0.5,
        max_surge=0,
        max_unavailable=0,
        load={"path": "predict", "rate": 0, "concurrency": 999},
        judge={"alpha": 2, "margin": 0.5},
    )
    assert _fields(err) == [
        "artifact_id",
        "version",
        "health_check_url",
        "replicas",
        "max_error_rate_percent",
        "max_latency_ratio",
        "max_surge",
        "load.path",
        "load.rate",
        "load.concurrency",
        "judge.alpha",
        "judge.margin",
    ]


def test_a_pair_is_judged_only_on_values_that_are_each_valid() -> None:
    # max_unavailable is refused on its own: it is not compared with replicas as well.
    err = _raised(DeploymentConfig, artifact_id="m", target_environment="p", max_unavailable=-1)
    assert err.problems == [("max_unavailable", "must be an integer >= 0, got -1")]
    err = _raised(
        DeploymentConfig, artifact_id="m", target_environment="p", replicas=2, max_unavailable=3
    )
    assert err.problems == [("max_unavailable", "must be <= replicas (2), got 3")]


def test_load_and_judge_list_every_problem() -> None:
    err = _raised(LoadSpec, path="x", method="TRACE", rate=5000, timeout=-1, thresholds_ms=(2, 1))
    assert _fields(err) == [
        "load.path",
        "load.method",
        "load.rate",
        "load.timeout",
        "load.thresholds_ms",
    ]
    err = _raised(JudgeConfig, beta=1.5, limit_ratio=0.2, worse_ratios=(1.0,))
    assert _fields(err) == ["beta", "limit_ratio", "worse_ratios"]
    # margin refused: the ratios compared with it are not judged against a bad value.
    err = _raised(JudgeConfig, margin=0.5, worse_ratios=(1.0,))
    assert _fields(err) == ["margin"]


def test_a_target_host_a_router_cannot_take_is_refused_with_the_other_problems() -> None:
    err = _raised(ProcessTarget, command=[], host="bad host!", health_path="health")
    assert _fields(err) == ["command", "health_path", "host"]
    assert "must be an IP address (127.0.0.1, ::1) or a host name" in err.problems[2][1]
    assert ProcessTarget(["true"], host="[::1]").host == "::1"  # bare, as sockets take it
    assert ProcessTarget(["true"], host="localhost").host == "localhost"


def test_an_ssh_host_and_target_list_every_problem() -> None:
    err = _raised(SSHHost, host="build_box", user="-x", port=0)
    assert _fields(err) == ["hosts[].host", "hosts[].user", "hosts[].port"]
    assert "the router sends traffic there; or give address" in err.problems[0][1]
    # An ssh alias is fine where the router's address is given apart.
    assert SSHHost("build_box", user="me", address="10.0.0.5").service_address == "10.0.0.5"
    err = _raised(SSHHost, host="10.0.0.5", user="me", address="a;b")
    assert _fields(err) == ["hosts[].address"]
    host = SSHHost("127.0.0.1", user="me")
    err = _raised(
        SSHTarget,
        command="",
        hosts=[host, host],
        env={"1BAD": "x"},
        health_path="health",
        command_timeout=0,
        connect_timeout=-1,
    )
    assert _fields(err) == [
        "command",
        "hosts",
        "env",
        "health_path",
        "command_timeout",
        "connect_timeout",
    ]


def test_nginx_router_options_are_all_refused_before_anything_is_made(
    tmp_path: Path, nginx_bin: str
) -> None:
    workdir = tmp_path / "nginx"
    err = _raised(
        NginxRouter,
        nginx_binary=nginx_bin,
        workdir=workdir,
        owns_process=False,
        listen_host="a;b",
        confirm_timeout=0,
        fail_timeout="soon",
        max_log_bytes=-1,
    )
    assert _fields(err) == [
        "confirm_timeout",
        "max_log_bytes",
        "listen_port",
        "listen_host",
        "fail_timeout",
    ]
    assert not workdir.exists()  # nothing made, nothing written
    err = _raised(TlsListen, port=0, certificate="a;b", certificate_key=str(tmp_path / "none"))
    assert _fields(err) == [
        "listen_tls.port",
        "listen_tls.certificate",
        "listen_tls.certificate_key",
    ]


def test_problems_gather_with_prefixes_and_raise_once() -> None:
    found = ConfigProblems()
    found.raise_any()  # nothing found: nothing raised
    assert not found and found.positive("rate", 1.0)
    with found.check("judge."):
        JudgeConfig(alpha=0, beta=0)
    assert not found.positive("rate", float("nan"))
    err = _raised(found.raise_any)
    assert _fields(err) == ["judge.alpha", "judge.beta", "rate"]
    assert isinstance(err, ValueError)  # as callers catching ValueError expect
