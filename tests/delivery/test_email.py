"""E-mail delivery to a real aiosmtpd server: plain, STARTTLS and implicit TLS, with login."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crackseg.utils.deployment.delivery import (
    AlertDispatcher,
    EmailHandler,
    RetryPolicy,
    build_handler,
)
from crackseg.utils.deployment.models import DeploymentMetadata
from crackseg.utils.deployment.tlstrust import RESTAT_S
from tests.support.receivers import SmtpReceiver, free_port, self_signed_cert
from tests.support.tls_ca import TestCA

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

FAST = RetryPolicy(initial=0.02, max_delay=0.1, max_attempts=3)
USERS = {"monitor": "Sm7p-Pa55word"}


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory, openssl_bin: str) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"), openssl_bin)


def _deliver(handler: EmailHandler, **kwargs: object) -> AlertDispatcher:
    d = AlertDispatcher(retry=FAST)
    d.add_handler(handler)
    d.dispatch(
        "health_check_failed",
        DeploymentMetadata("my-deployment", version="1.4.2"),
        **{
            "severity": "critical",
            "state": "firing",
            "message": "HTTP 503 from /health <b>down</b>",
            "value": 3,
            "threshold": 3,
            "started_at": 1_700_000_000.0,
            **kwargs,
        },
    )
    assert d.wait_idle(15)
    return d


def _smtp(**kwargs: object) -> Iterator[SmtpReceiver]:
    server = SmtpReceiver(**kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()


def test_plain_smtp_with_login_delivers_both_parts() -> None:
    for server in _smtp(users=USERS):
        handler = build_handler(
            {"type": "email", "host": "127.0.0.1", "port": server.port, "security": "none",
             "sender": "monitor@example.com", "recipients": ["ops@example.com", "dev@example.com"],
             "username": "monitor", "password": USERS["monitor"]}
        )  # fmt: skip
        assert isinstance(handler, EmailHandler)
        d = _deliver(handler)
        d.close()
        assert server.wait_for(1)
        (msg,) = server.messages
        assert msg["Subject"] == "[FIRING] critical health_check_failed on my-deployment"
        assert msg["To"] == "ops@example.com, dev@example.com"
        assert msg["X-CrackSeg-Event-Id"]
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        assert plain is not None and html is not None
        text, markup = plain.get_content(), html.get_content()
        assert "my-deployment" in text and "value 3 (threshold 3)" in text
        assert "2023-11-14T22:13:20.000Z" in text and "1.4.2" in text
        assert "&lt;b&gt;down&lt;/b&gt;" in markup and "<b>down</b>" not in markup
        login = server.logins[0]  # aiosmtpd keeps the login name or the whole pair
        assert getattr(login, "login", login) == b"monitor"


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_tls_modes_with_login(mode: str, cert: tuple[Path, Path]) -> None:
    certfile, keyfile = cert
    for server in _smtp(tls=mode, certfile=certfile, keyfile=keyfile, users=USERS):
        handler = build_handler(
            {"type": "email", "host": "127.0.0.1", "port": server.port, "security": mode,
             "tls_ca_file": str(certfile), "sender": "monitor@example.com",
             "recipients": "ops@example.com", "username": "monitor",
             "password": USERS["monitor"], "subject_prefix": "[prod] "}
        )  # fmt: skip
        assert isinstance(handler, EmailHandler)
        d = _deliver(handler, state="resolved")
        d.close()
        assert server.wait_for(1)
        assert server.messages[0]["Subject"] == (
            "[prod] [RESOLVED] critical health_check_failed on my-deployment"
        )


def test_untrusted_certificate_is_a_permanent_failure(cert: tuple[Path, Path]) -> None:
    certfile, keyfile = cert
    for server in _smtp(tls="starttls", certfile=certfile, keyfile=keyfile):
        handler = EmailHandler(
            "127.0.0.1", server.port, sender="m@example.com", recipients=["o@example.com"]
        )  # the system trust store does not know the test's certificate
        d = _deliver(handler)
        d.close()
        (dead,) = d.dead_letters()
        assert dead["attempts"] == 1 and "certificate not trusted" in dead["last_error"]
        assert not server.messages


def test_wrong_password_is_permanent_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for server in _smtp(users=USERS):
        handler = EmailHandler(
            "127.0.0.1", server.port, sender="m@example.com", recipients=["o@example.com"],
            username="monitor", password="Wr0ng-Secret-Pw", security="none",
        )  # fmt: skip
        d = _deliver(handler)
        d.close()
        (dead,) = d.dead_letters()
        assert dead["attempts"] == 1 and "refused the login (535)" in dead["last_error"]
        exported = caplog.text + json.dumps([d.stats(), dead]) + repr(handler)
        assert "Wr0ng-Secret-Pw" not in exported and not server.messages


def test_server_down_is_retried_then_dead_lettered() -> None:
    handler = EmailHandler(
        "127.0.0.1", free_port(), sender="m@example.com", recipients=["o@example.com"],
        security="none", timeout=2,
    )  # fmt: skip
    d = _deliver(handler)
    d.close()
    (dead,) = d.dead_letters()
    assert dead["attempts"] == 3 and "ConnectionRefusedError" in dead["last_error"]


def test_a_rotated_ca_file_is_trusted_by_the_next_message(openssl_bin: str, tmp_path: Path) -> None:
    """The CA file renamed over the old one (cert-manager) while the server's certificate
    is re-issued by the new CA: messages fail until the file is rotated, then go through."""
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = TestCA(openssl_bin, tmp_path / "old"), TestCA(openssl_bin, tmp_path / "new")
    first, second = old.issue("smtp"), new.issue("smtp")
    trust = tmp_path / "trust.pem"
    trust.write_bytes(old.cert.read_bytes())
    for server in _smtp(tls="tls", certfile=first.cert, keyfile=first.key):
        handler = build_handler(
            {"type": "email", "host": "127.0.0.1", "port": server.port, "security": "tls",
             "tls_ca_file": str(trust), "sender": "m@example.com", "recipients": "o@example.com"}
        )  # fmt: skip
        assert isinstance(handler, EmailHandler)
        _deliver(handler).close()
        assert server.wait_for(1)

        assert server.context is not None
        server.context.load_cert_chain(second.cert, second.key)  # re-issued by the new CA
        d = _deliver(handler)
        d.close()
        (dead,) = d.dead_letters()
        assert "certificate not trusted" in dead["last_error"]

        staged = tmp_path / ".trust.pem.new"
        staged.write_bytes(new.cert.read_bytes())
        os.replace(staged, trust)
        deadline = time.monotonic() + RESTAT_S + 10
        while True:
            d = _deliver(handler)
            d.close()
            if not d.dead_letters():
                break
            assert time.monotonic() < deadline, d.dead_letters()
        assert server.wait_for(2)
