"""The one redactor: every text that leaves the process goes through redact.py."""

from __future__ import annotations

import pytest

from crackseg.utils.deployment.delivery import options
from crackseg.utils.deployment.redact import (
    MASK,
    is_secret_key,
    redact_text,
    redact_url,
    redact_value,
)
from crackseg.utils.deployment.service import config_parse
from crackseg.utils.deployment.service.web import api

SECRET = "s3cr3t-value-91"


@pytest.mark.parametrize(
    "name", ["token", "api_key", "X-Api-Key", "Authorization", "Cookie", "routing_key", "sig"]
)
def test_secret_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["status", "next", "page", "url", "timeout"])
def test_plain_names(name: str) -> None:
    assert not is_secret_key(name)


@pytest.mark.parametrize(
    "text",
    [
        f"http://user:{SECRET}@h/health",
        f"HTTP 302 redirect to https://other/login?token={SECRET}&next=/",
        f"HTTP 302 redirect to /login?access_token={SECRET}",
        f"https://h/cb#access_token={SECRET}",
        f"request failed: Authorization: Bearer {SECRET}",
        f"Cookie: session={SECRET}",
        f"retry with api_key={SECRET} refused",
    ],
)
def test_redact_text_masks(text: str) -> None:
    out = redact_text(text)
    assert SECRET not in out and MASK in out


def test_known_secrets_and_url_paths() -> None:
    text = f"POST https://hooks.slack.com/services/T0/B0/{SECRET} failed: {SECRET}"
    assert redact_text(text, [SECRET]) == (
        "POST https://hooks.slack.com/services/T0/B0/*** failed: ***"
    )
    assert redact_text(text, url_paths=False).startswith("POST https://hooks.slack.com/*** ")


def test_harmless_text_unchanged() -> None:
    for text in ("HTTP 503", "service reports degraded (HTTP 503)", "timeout after 2s"):
        assert redact_text(text) == text
    assert redact_url("http://h:8/health?x=1") == "http://h:8/health?x=1"


def test_redact_value_structured() -> None:
    data = {"url": f"https://h/T/{SECRET}", "headers": {"X-Api-Key": SECRET}, "n": 3}
    out = redact_value("", data)
    assert SECRET not in repr(out) and out["n"] == 3


def test_every_former_redactor_is_the_one() -> None:
    """The four redactors of old now share one list and one implementation."""
    assert config_parse.redact_value is redact_value
    text = f"GET http://h/x?token={SECRET} failed"
    assert SECRET not in api.scrub_text(text)
    assert SECRET not in options.scrub(text)
    assert options.scrub(text) == redact_text(text, url_paths=False)
    assert api.scrub_text(text) == redact_text(text)
    assert api.scrub_text(None) is None
