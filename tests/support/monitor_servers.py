"""A real HTTP server on 127.0.0.1 in a background thread, whose answers tests can change live.

Sync tests drive the monitor's thread API, so the server cannot share their (absent) loop.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Behaviour:
    status: int = 200
    body: str = '{"status": "healthy"}'
    delay: float = 0.0
    hang: bool = False
    cycle: tuple[int, ...] = ()  # statuses served in turn, one per request


class LiveServer:
    """``url(path)`` serves whatever ``set(path, ...)`` last said; counts hits per path."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.behaviours: dict[str, Behaviour] = {}
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = port
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def set(self, path: str, **kw: Any) -> None:
        with self._lock:
            self.behaviours[path] = Behaviour(**kw)

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._lock:
            b = self.behaviours.get(path, Behaviour())
            self.hits[path] = self.hits.get(path, 0) + 1
        if b.cycle:
            return web.Response(
                status=b.cycle[(self.hits[path] - 1) % len(b.cycle)],
                text=b.body,
                content_type="application/json",
            )
        if b.hang:
            await asyncio.Event().wait()
        if b.delay:
            await asyncio.sleep(b.delay)
        return web.Response(status=b.status, text=b.body, content_type="application/json")

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        # Hanging handlers outlive cleanup: end them so the loop closes quietly.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
