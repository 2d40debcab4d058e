"""The configuration file: validation messages, ``${VAR}`` substitution, secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.service.app import build_handlers
from crackseg.utils.deployment.service.config import (
    ConfigFileError,
    MonitorConfig,
    load_config,
    parse_config,
    substitute_env,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monitor.yaml"
DEP = {"id": "api", "url": "http://127.0.0.1:8080/health"}


def problems(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        parse_config(data, env=env or {})
    assert isinstance(info.value, ConfigError)  # callers catching ConfigError see it too
    return str(info.value).splitlines()


def test_defaults_and_durations() -> None:
    cfg = parse_config({"deployments": [{**DEP, "check_interval": "5m", "timeout": "500ms"}]})
    d = cfg.deployments[0]
    assert (d.check_interval, d.timeout) == (300.0, 0.5)
    assert cfg.server.host == "127.0.0.1" and cfg.server.token is None
    assert d.monitor_kwargs()["deployment_id"] == "api"
    assert d.monitor_kwargs()["thresholds"] is None


def test_every_problem_gets_one_line_naming_its_key_path() -> None:
    lines = problems(
        {
            "deployments": [
                DEP,
                {**DEP, "check_interval": -1, "failure_threshold": 0},
                {"id": "bad id!", "url": "127.0.0.1:80"},
                {**DEP, "id": "w", "thresholds": {"cpu": 90}},
            ],
            "store": {"retention": {"max_age": "1 fortnight"}},
            "server": {"port": 70000},
            "handlers": [{"type": "pager"}],
            "colour": "blue",
        }
    )
    expected = [
        "deployments[1].id: duplicate id 'api' (already used by deployments[0])",
        "deployments[1].check_interval: must be >= 0.1, got -1",
        "deployments[1].failure_threshold: must be >= 1, got 0",
        "deployments[2].id: must be 1-128 letters, digits or . _ : @ -",
        "deployments[2].url: must be an http:// or https:// URL with a host, got '127.0.0.1:80'",
        "deployments[3].thresholds.cpu: unknown key",
        "store.retention.max_age: must be a duration such as 30, '30s'",
        "server.port: must be <= 65535, got 70000",
        "handlers[0].type: must be one of 'log', 'webhook', 'slack', 'email' or 'alertmanager'",
        "colour: unknown key",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == len(expected)


def test_protect_reads_needs_a_token() -> None:
    assert problems({"server": {"protect_reads": True}}) == [
        "server: protect_reads: true needs a token to be set"
    ]


def test_unknown_keys_suggest_the_closest_name() -> None:
    (line,) = problems({"deployments": [{**DEP, "chek_interval": 5}]})
    assert line.startswith(
        "deployments[0].chek_interval: unknown key (did you mean 'check_interval'?)"
    )
    assert "expected one of: id, url, process_name, check_interval" in line


def test_env_substitution_defaults_escapes_and_missing_variables() -> None:
    data = {
        "deployments": [{"id": "api", "url": "http://${HOST:-127.0.0.1}:${PORT}/health"}],
        "server": {"token": "${TOKEN:-}", "host": "$${literal}"},
    }
    out, missing = substitute_env(data, {"PORT": "81"})
    assert missing == []
    assert out["deployments"][0]["url"] == "http://127.0.0.1:81/health"
    assert out["server"] == {"token": None, "host": "${literal}"}

    lines = problems(data, env={})
    assert lines == ["deployments[0].url: environment variable PORT is not set"]
    assert problems({"server": {"host": "${oops"}}) == [
        "server.host: malformed ${...} reference; use ${NAME} or ${NAME:-default}"
    ]


def test_secrets_never_show_in_repr_or_dumps() -> None:
    cfg = parse_config(
        {
            "deployments": [{"id": "api", "url": "http://u:pw1@127.0.0.1/health?token=tk1"}],
            "server": {"token": "${T}"},
            "handlers": [
                {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/sec2"},
                {
                    "type": "email",
                    "host": "smtp",
                    "sender": "m@b.c",
                    "recipients": ["a@b.c"],
                    "username": "u",
                    "password": "pw3",
                },
            ],
        },
        env={"T": "tok4"},
    )
    shown = repr(cfg) + str(cfg.redacted()) + cfg.model_dump_json()
    for secret in ("pw1", "tk1", "sec2", "pw3", "tok4"):
        assert secret not in shown, secret
    # The real values still reach the parts that need them.
    assert cfg.server.token is not None and cfg.server.token.get_secret_value() == "tok4"
    assert cfg.handlers[0].spec()["webhook_url"].endswith("/sec2")


def test_maintenance_and_rollout_are_checked_by_their_owners() -> None:
    lines = problems(
        {
            "maintenance": [{"name": "n", "start": "25:00", "end": "02:00"}],
            "deploy": {"target": {"command": "app --port {port}"}, "rollout": {"bake": 1}},
        }
    )
    assert lines[0] == "maintenance[0].start: '25:00' is not a time of day; use HH:MM"
    assert lines[1].startswith("deploy.rollout.bake: unknown key; expected one of:")
    cfg = parse_config(
        {
            "deploy": {
                "target": {"command": "app --port {port}"},
                "rollout": {"canary_steps": [5, 100]},
            }
        }
    )
    assert cfg.deploy is not None and cfg.deploy.target.command == ["app", "--port", "{port}"]
    assert cfg.deploy.deployment_config("v2").canary_steps == [5, 100]


def test_a_rollout_judged_from_prometheus_counters_in_the_file() -> None:
    counters = {
        "requests": 'sum(http_requests_total{instance="{instance}"})',
        "errors": 'sum(http_requests_total{instance="{instance}",code=~"5.."})',
    }
    rollout = {
        "prometheus_url": "http://127.0.0.1:9090",
        "prometheus_scrape_interval": "5s",
        "prometheus_queries": counters,
    }
    deploy = {"target": {"command": "app --port {port}"}, "rollout": rollout}
    cfg = parse_config({"deploy": deploy})
    assert cfg.deploy is not None
    judged = cfg.deploy.deployment_config("v2")
    assert judged.counts_from_prometheus and judged.prometheus_scrape_interval == 5.0
    rollout["prometheus_queries"] = {"requests": counters["requests"]}
    assert problems({"deploy": deploy})[0].startswith(
        "deploy.rollout.prometheus_queries.errors: missing: the sequential judge needs both"
    )


def test_handler_options_are_checked_on_load() -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config({"handlers": [{"type": "log"}, {"type": "webhook"}]})
    assert str(info.value).startswith("handlers[1].url: is required")


def test_files_yaml_errors_and_relative_store_paths(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("store: {path: sub/h.db}\n")
    cfg = load_config(f)
    assert cfg.store_path() == tmp_path / "sub" / "h.db"
    f.write_text("deployments: [\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(f)
    assert "invalid YAML" in str(info.value)
    f.write_text("")
    with pytest.raises(ConfigFileError, match="empty"):
        load_config(f)
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigFileError, match="must be a mapping"):
        load_config(f)


def test_the_example_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/x")
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg, MonitorConfig)
    assert [d.id for d in cfg.deployments] == ["crackseg-api", "crackseg-batch"]
    assert cfg.deploy is not None and cfg.deploy.strategy == "canary"
    for handler in build_handlers(cfg.handlers):
        handler.close()


def test_per_rule_repeat_intervals_and_flapping_settings(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "monitor:\n  repeat_intervals: {high_cpu_usage: 10m}\n  flap_max_changes: null\n"
    )
    cfg = load_config(good)
    assert cfg.monitor.repeat_intervals == {"high_cpu_usage": 600.0}
    assert cfg.monitor.flap_max_changes is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("monitor:\n  repeat_intervals: {cpu_hot: 10m}\n")
    with pytest.raises(
        ConfigError, match=r"monitor\.repeat_intervals\['cpu_hot'\]: unknown alert type 'cpu_hot'"
    ):
        load_config(bad)
