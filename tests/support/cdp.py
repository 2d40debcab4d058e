"""Headless Chromium driven over the DevTools protocol, for tests that act on a page (click,
type, hover, read the DOM) at a chosen width and colour scheme. One browser per ``async
with``; its whole process group is gone on exit. Everything waits on a condition evaluated
in the page, with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.procs import stop_group

_LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class Browser:
    """``async with Browser(binary, profile) as b: page = await b.page(url, width=390)``."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.binary, self.profile = binary, profile
        self._proc: subprocess.Popen[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        cmd = [
            self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}", "about:blank",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        url = await asyncio.wait_for(asyncio.to_thread(self._ws_url), 30)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._ws = await self._http.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read())
        return self

    def _ws_url(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            m = _LISTENING.search(raw.decode(errors="replace"))
            if m:
                return m.group(1)
        raise RuntimeError("chromium exited before it listened for DevTools")

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            data = json.loads(msg.data)
            fut = self._waiting.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def send(self, method: str, session: str | None = None, **params: Any) -> Any:
        """One DevTools command; its result, or RuntimeError with the protocol's error."""
        assert self._ws is not None
        i = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[i] = fut
        msg: dict[str, Any] = {"id": i, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        await self._ws.send_str(json.dumps(msg))
        data = await asyncio.wait_for(fut, 30)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data.get("result", {})

    async def page(
        self, url: str, *, width: int = 1400, height: int = 1800, dark: bool = False
    ) -> Page:
        """A new tab at ``url``, ``width`` x ``height`` CSS pixels (a phone under 600)."""
        target = await self.send("Target.createTarget", url="about:blank")
        got = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = Page(self, got["sessionId"])
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=width < 600,
        )  # fmt: skip
        scheme = [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]
        await page.call("Emulation.setEmulatedMedia", features=scheme)
        await page.call("Page.enable")
        await page.call("Page.navigate", url=url)
        return page

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            await asyncio.to_thread(stop_group, self._proc, signal.SIGKILL, 5)


class Page:
    """One tab: evaluate JavaScript, wait for a condition, take a screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    async def call(self, method: str, **params: Any) -> Any:
        return await self.browser.send(method, self.session, **params)

    async def js(self, expression: str) -> Any:
        """The value of ``expression`` (awaited if a promise); RuntimeError if it threw."""
        got = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in got:
            raise RuntimeError(f"{expression[:80]!r} threw: {got['exceptionDetails']}")
        return got["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy; its value. TimeoutError naming it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await self.js(expression)
            except RuntimeError:
                value = None  # the page is still loading: its scripts are not there yet
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {expression!r}")
            await asyncio.sleep(0.1)  # a poll interval, not a wait for something to happen

    async def screenshot(self, path: Path, *, full: bool = True) -> bytes:
        """A PNG of the whole page (or only the viewport), also written to ``path``."""
        got = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=full)
        data = base64.b64decode(got["data"])
        path.write_bytes(data)
        return data
