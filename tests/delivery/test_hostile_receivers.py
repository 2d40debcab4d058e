"""Receivers that drip their answer: every channel's send ends within about twice its
timeout, whatever the peer does (status line, headers, endless ``100 Continue``, SMTP
``250-`` lines after EHLO), against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from crackseg.utils.deployment.delivery.channels.alertmanager import AlertmanagerHandler
from crackseg.utils.deployment.delivery.channels.email import EmailHandler
from crackseg.utils.deployment.delivery.channels.slack import SlackHandler
from crackseg.utils.deployment.delivery.channels.webhook import WebhookHandler
from crackseg.utils.deployment.errors import NotifierError
from crackseg.utils.deployment.models import DeploymentMetadata
from tests.support.wait import free_port

TIMEOUT = 1.0
#: A send must end within about twice its timeout; the rest is room for a loaded machine.
BOUND = 2 * TIMEOUT + 3.0

Drip = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_head(r: asyncio.StreamReader) -> None:
    await r.readuntil(b"\r\n\r\n")


async def _drip_forever(w: asyncio.StreamWriter, first: bytes, unit: bytes) -> None:
    """``first``, then ``unit`` every 0.1 s for 20 s (a bound, so a regression fails, not hangs)."""
    w.write(first)
    end = time.monotonic() + 20
    while not w.is_closing() and time.monotonic() < end:
        await w.drain()
        await asyncio.sleep(0.1)
        w.write(unit)


async def _status_line(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await _read_head(r)
    await _drip_forever(w, b"HTTP/1.1 200 ", b"O")


async def _header(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await _read_head(r)
    await _drip_forever(w, b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")


async def _many_headers(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await _read_head(r)
    await _drip_forever(w, b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n")


async def _continues(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await _read_head(r)
    await _drip_forever(w, b"", b"HTTP/1.1 100 Continue\r\n\r\n")


async def _body(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await _read_head(r)
    await _drip_forever(w, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b" ")


class DripServer:
    """A TCP server on 127.0.0.1 (own loop thread) answering every connection with ``drip``."""

    def __init__(self, drip: Drip) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(drip), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _start(self, drip: Drip) -> asyncio.Server:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await drip(r, w)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

        return await asyncio.start_server(handle, "127.0.0.1", 0)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _http_handlers(base: str) -> list[Any]:
    return [
        WebhookHandler(f"{base}/hook", timeout=TIMEOUT),
        SlackHandler(f"{base}/services/T0/B0/x", timeout=TIMEOUT),
        AlertmanagerHandler(base, timeout=TIMEOUT),
    ]


def _send_timed(handler: Any) -> tuple[float, NotifierError]:
    started = time.monotonic()
    with pytest.raises(NotifierError) as caught:
        handler.send_alert(
            "high_error_rate", DeploymentMetadata("api"), severity="critical", message="m"
        )
    return time.monotonic() - started, caught.value


@pytest.mark.parametrize(
    "drip",
    [_status_line, _header, _many_headers, _continues, _body],
    ids=["status-line", "header", "many-headers", "100-continue", "body"],
)
def test_every_http_channel_ends_within_twice_its_timeout(drip: Drip) -> None:
    server = DripServer(drip)
    try:
        for handler in _http_handlers(f"http://127.0.0.1:{server.port}"):
            try:
                took, error = _send_timed(handler)
            finally:
                handler.close()
            assert took < BOUND, (handler.name, took)
            assert "timed out" in str(error), (handler.name, str(error))
            assert not error.permanent
    finally:
        server.close()


class _DrippingEhlo(SMTP):
    async def smtp_EHLO(self, hostname: str) -> None:
        for _ in range(200):  # 20 s, or until the client hangs up
            await self.push("250-still-going")
            await asyncio.sleep(0.1)


class _DrippingGreeting(SMTP):
    async def _handle_client(self) -> None:
        for _ in range(200):
            await self.push("220-welcome")
            await asyncio.sleep(0.1)


class _Dripping(Controller):
    def __init__(self, server_class: type[SMTP], **kw: Any) -> None:
        self.server_class = server_class
        super().__init__(object(), **kw)

    def factory(self) -> SMTP:
        return self.server_class(self.handler, **self.SMTP_kwargs)


@pytest.fixture(params=[_DrippingEhlo, _DrippingGreeting], ids=["ehlo", "greeting"])
def dripping_smtp(request: pytest.FixtureRequest) -> Iterator[int]:
    port = free_port()
    controller = _Dripping(request.param, hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


@pytest.mark.parametrize("security", ["none", "starttls"])
def test_email_ends_within_twice_its_timeout_when_replies_drip(
    dripping_smtp: int, security: str
) -> None:
    handler = EmailHandler(
        "127.0.0.1", dripping_smtp, sender="m@example.com", recipients=["o@example.com"],
        security=security, timeout=TIMEOUT,
    )  # fmt: skip
    took, error = _send_timed(handler)
    assert took < BOUND, took
    assert "timed out" in str(error), str(error)
