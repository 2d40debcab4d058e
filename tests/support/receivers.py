"""Real receivers on 127.0.0.1 for the notifier tests: HTTP, SMTP, Alertmanager.

Each runs for real (sockets, TLS, a child process) and is stopped by its ``close()``;
the fixtures in the test files make sure that happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from multidict import CIMultiDict

from tests.support.servers import self_signed_cert as self_signed_cert
from tests.support.wait import free_port as free_port
from tests.support.wait import poll as wait_until


@dataclass
class Recorded:
    method: str
    path: str
    headers: CIMultiDict[str]  # case-insensitive, like HTTP
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """An aiohttp server in its own thread that records every request.

    ``down()`` closes the listening socket (clients get "connection refused"), ``up()``
    listens again on the same port. The answer's status is the next of ``statuses`` if
    any, else ``responder(request)`` if set, else ``status``.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.status = 200
        self.statuses: list[int] = []
        self.responder: Callable[[Recorded], int] | None = None
        self.delay = 0.0  # seconds to sit on each request before answering (cut short by close)
        self.port = 0
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.delay)
        rec = Recorded(request.method, request.path_qs, CIMultiDict(request.headers), body)
        with self._cond:
            self.requests.append(rec)
            if self.statuses:
                status = self.statuses.pop(0)
            elif self.responder is not None:
                status = self.responder(rec)
            else:
                status = self.status
            rec.status = status
            self._cond.notify_all()
        return web.Response(status=status, text="ok" if status < 300 else f"error {status}")

    async def _start_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def _setup(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._start_site()

    def start(self) -> HttpReceiver:
        self._thread.start()
        self._call(self._setup())
        return self

    def down(self) -> None:
        assert self._site is not None
        self._call(self._site.stop())

    def up(self) -> None:
        self._call(self._start_site())

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests arrived in total."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout)

    def accepted(self) -> list[Recorded]:
        """The requests answered 2xx, in arrival order."""
        with self._cond:
            return [r for r in self.requests if 200 <= r.status < 300]

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._closing.set)
        if self._runner is not None:
            self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class _MailHandler:
    def __init__(self, sink: SmtpReceiver) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.sink.cond:
            self.sink.messages.append(msg)
            self.sink.logins.append(session.login_data)
            self.sink.cond.notify_all()
        return "250 OK"


class SmtpReceiver:
    """An aiosmtpd server. ``tls``: None, ``"starttls"`` or ``"tls"`` (implicit) with the
    given certificate; ``users``: accepted logins (login required when given)."""

    def __init__(
        self,
        *,
        tls: str | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[Any] = []
        self.cond = threading.Condition()
        self.port = free_port()
        self.users = users or {}
        kwargs: dict[str, Any] = {}
        context = None
        if tls is not None:
            assert certfile is not None and keyfile is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certfile, keyfile)
        if tls == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        elif tls == "tls":
            kwargs.update(ssl_context=context)
        if self.users:
            kwargs.update(
                # aiosmtpd only counts STARTTLS as TLS; implicit TLS is encrypted all the same.
                authenticator=self._auth,
                auth_required=True,
                auth_require_tls=tls == "starttls",
            )
        #: The server's TLS context: ``load_cert_chain`` on it re-issues the certificate new
        #: connections see.
        self.context = context
        self.controller = Controller(
            _MailHandler(self), hostname="127.0.0.1", port=self.port, **kwargs
        )

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and self.users.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False, auth_data=data)

    def start(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.messages) >= count, timeout)

    def close(self) -> None:
        self.controller.stop()


class AlertmanagerProcess:
    """A real ``prometheus-alertmanager`` on a free port, clustering off, null receiver."""

    CONFIG = "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n"

    def __init__(self, binary: str, workdir: Path) -> None:
        self.port = free_port()
        config = workdir / "alertmanager.yml"
        config.write_text(self.CONFIG)
        (workdir / "data").mkdir()
        self.log = (workdir / "alertmanager.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as r:
                return int(r.status), r.read(1 << 20)
        except OSError:
            return 0, b""

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return wait_until(
            lambda: self.proc.poll() is None and self._get("/-/ready")[0] == 200, timeout, 0.1
        )

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (``/api/v2/alerts``)."""
        status, body = self._get("/api/v2/alerts")
        assert status == 200, status
        result: list[dict[str, Any]] = json.loads(body)
        return result

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
