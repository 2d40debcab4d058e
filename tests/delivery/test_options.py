"""Handler options as models: durations as strings, every problem in one run, stable names
that the outbox follows (reordering routes nothing elsewhere, a rename is reported)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.delivery import AlertDispatcher, RetryPolicy, build_handlers
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.service.app import build_handlers as service_handlers
from crackseg.utils.deployment.service.app import report_orphaned_rows
from crackseg.utils.deployment.service.config import ConfigFileError, parse_config
from tests.support.receivers import HttpReceiver


@pytest.fixture
def receivers() -> Iterator[tuple[HttpReceiver, HttpReceiver]]:
    a, b = HttpReceiver().start(), HttpReceiver().start()
    yield a, b
    a.close()
    b.close()


def test_durations_as_strings_and_a_retry_policy_per_handler() -> None:
    cfg = parse_config(
        {"handlers": [
            {"type": "alertmanager", "url": "http://127.0.0.1:9093", "resend_interval": "30s",
             "timeout": "500ms"},
            {"type": "webhook", "url": "http://127.0.0.1:9/hook", "timeout": "2s",
             "retry": {"initial": "1s", "max_delay": "30s", "max_age": "1h"}},
            {"type": "slack", "webhook_url": "https://hooks.slack.com/services/T/B/x",
             "retry": {"max_age": "10m"}},
        ]}
    )  # fmt: skip
    am, hook, slack = service_handlers(cfg.handlers)
    try:
        assert am.resend_interval == 30.0 and am.timeout == 0.5  # type: ignore[attr-defined]
        assert hook.timeout == 2.0  # type: ignore[attr-defined]
        assert hook.retry == RetryPolicy(initial=1.0, max_delay=30.0, max_age=3600.0)
        assert slack.retry == RetryPolicy(max_age=600.0)
        assert am.retry is None  # the dispatcher's default policy
    finally:
        for h in (am, hook, slack):
            h.close()


def test_three_bad_handlers_give_three_messages_in_one_run() -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(
            {"handlers": [
                {"type": "webhook", "url": "http://x", "timout": 3},
                {"type": "log"},
                {"type": "alertmanager", "url": "http://am", "resend_interval": "often"},
                {"type": "email", "host": "smtp", "sender": "m@x", "recipients": []},
            ]}
        )  # fmt: skip
    assert [where for where, _ in info.value.problems] == [
        "handlers[0].timout", "handlers[2].resend_interval", "handlers[3].recipients",
    ]  # fmt: skip
    text = str(info.value)
    assert "did you mean 'timeout'?" in text and "'30s'" in text


def test_outbox_rows_follow_the_name_not_the_position(
    tmp_path: Path, receivers: tuple[HttpReceiver, HttpReceiver], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = receivers
    specs = [{"type": "webhook", "url": a.url + "/a"}, {"type": "webhook", "url": b.url + "/b",
                                                       "name": "ops-b"}]  # fmt: skip
    a.status = b.status = 503
    path = tmp_path / "outbox.db"
    d = AlertDispatcher(outbox=path, retry=RetryPolicy(initial=0.05, max_delay=0.1))
    for h in build_handlers(specs):
        d.add_handler(h)
    d.dispatch("high_error_rate", DeploymentMetadata("api"), state="firing", message="m")
    assert a.wait_for(1) and b.wait_for(1)
    d.close()
    a.status = b.status = 200
    # Reordered, and the second one renamed: its rows stay for the old name, reported.
    specs = [{**specs[1], "name": "ops-b2"}, specs[0]]
    d = AlertDispatcher(outbox=path, retry=RetryPolicy(initial=0.05, max_delay=0.1))
    try:
        for h in build_handlers(specs):
            d.add_handler(h)
        assert d.wait_idle(10)
        assert [r.path for r in a.accepted()] == ["/a"] and b.accepted() == []
        assert d.orphaned_rows() == {"ops-b": 1}

        class Monitor:
            dispatcher = d

        with caplog.at_level(logging.WARNING):
            report_orphaned_rows(Monitor())  # type: ignore[arg-type]
        assert "'ops-b'" in caplog.text and "renamed or removed" in caplog.text
    finally:
        d.close()
