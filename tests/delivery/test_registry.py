"""Handlers built from config data: the registry, errors that name the key, no secrets shown."""

from __future__ import annotations

from typing import Any

import pytest

from crackseg.utils.deployment.delivery import (
    HANDLER_TYPES,
    AlertHandler,
    build_handler,
    build_handlers,
)
from crackseg.utils.deployment.errors import ConfigError

SPECS: dict[str, dict[str, Any]] = {
    "log": {"type": "log"},
    "webhook": {"type": "webhook", "url": "https://hooks.example.com/x/SECRETPATH?token=SECRETQ",
                "secret": "SECRETHMAC", "headers": {"Authorization": "Bearer SECRETHDR"}},
    "slack": {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/SECRETSLACK"},
    "email": {"type": "email", "host": "smtp.example.com", "sender": "a@example.com",
              "recipients": ["b@example.com"], "username": "u", "password": "SECRETPW"},
    "alertmanager": {"type": "alertmanager", "url": "https://user:SECRETAM@am.example.com:9093"},
}  # fmt: skip


def test_every_registered_kind_builds_a_handler_without_showing_secrets() -> None:
    assert set(HANDLER_TYPES) == set(SPECS)
    for kind, spec in SPECS.items():
        handler = build_handler(dict(spec))
        try:
            assert isinstance(handler, AlertHandler) and handler.kind == kind
            assert isinstance(handler, HANDLER_TYPES[kind])
            shown = handler.name + repr(handler) + str(handler)
            assert "SECRET" not in shown, shown
        finally:
            handler.close()


def test_default_names_follow_kind_and_target_and_duplicates_are_refused() -> None:
    specs = [SPECS["webhook"], SPECS["slack"], {**SPECS["log"], "name": "audit"}]
    names = [h.key for h in build_handlers(specs)]
    assert names == ["webhook:hooks.example.com", "slack:hooks.slack.com", "audit"]
    assert [h.key for h in build_handlers(specs[::-1])] == names[::-1]  # not by position
    with pytest.raises(ConfigError) as err:
        build_handlers([SPECS["webhook"], {**SPECS["log"], "name": "k"}, SPECS["webhook"]])
    assert err.value.field == "handlers[2].name" and "handlers[0]" in err.value.problem
    assert "distinct name" in err.value.problem
    assert "SECRET" not in str(err.value)


@pytest.mark.parametrize(
    ("spec", "field", "hint"),
    [
        ({"type": "pager"}, "alerts.type", "one of log, webhook"),
        ({"type": "webhook"}, "alerts.url", "url_env"),
        ({"type": "webhook", "url": "ftp://x"}, "alerts.url", "http:// or https://"),
        ({"type": "webhook", "url": "http://x", "retries": 3}, "alerts.retries", "did you mean 'retry'"),
        ({"type": "webhook", "url": "http://x", "headers": {"A": 1}}, "alerts.headers.A", "string"),
        ({"type": "slack", "webhook_url_env": "NO_SUCH_VAR_4711"}, "alerts.webhook_url_env", "not set"),
        ({"type": "email", "host": "h", "sender": "s"}, "alerts.recipients", "missing"),
        ({"type": "email", "host": "h", "sender": "s", "recipients": ["r"], "security": "ssl"},
         "alerts.security", "'starttls', 'tls' or 'none'"),
        ({"type": "email", "host": "h", "sender": "s", "recipients": ["r"], "username": "u"},
         "alerts.password", "both"),
        ({"type": "alertmanager", "url": "http://am", "resend_interval": 0},
         "alerts.resend_interval", "> 0"),
        ({"type": "log", "key": ""}, "alerts.key", "not be empty"),
        ({"type": "log", "name": "has space"}, "alerts.name", "letters, digits"),
        ({"type": "webhook", "url": "http://x", "retry": {"max_age": "forever"}},
         "alerts.retry.max_age", "duration"),
        ({"type": "webhook", "url": "http://x", "retry": {"max_ages": "1h"}},
         "alerts.retry.max_ages", "did you mean 'max_age'"),
        ({"type": "log", "send_resolved": "no"}, "alerts.send_resolved", "true or false"),
        ({"type": "email", "host": "h", "sender": "s", "recipients": ["r"], "port": "smtp"},
         "alerts.port", "number"),
        ({"type": "email", "host": "h", "sender": "s", "recipients": ["r"],
          "tls_ca_file": "/nonexistent/ca.pem"}, "alerts.tls_ca_file", "PEM"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key_and_the_fix(
    spec: dict[str, object], field: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as err:
        build_handler(spec, "alerts")
    assert err.value.field == field
    assert hint in err.value.problem


def test_secrets_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/ENVSECRET")
    handler = build_handler({"type": "slack", "webhook_url_env": "TEST_SLACK_URL"})
    assert "ENVSECRET" not in repr(handler) and "ENVSECRET" in "".join(handler.secrets())
    with pytest.raises(ConfigError, match="not both"):
        build_handler({"type": "webhook", "url": "http://x", "url_env": "TEST_SLACK_URL"})
