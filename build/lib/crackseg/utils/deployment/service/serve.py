"""Serve an aiohttp application on the running loop: one way, for the web face and the sample service."""

from __future__ import annotations

from aiohttp import web

__all__ = ["serve_app"]


async def serve_app(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0: any free port); return the runner and the bound port.

    Stop with ``await runner.cleanup()``. A failed bind cleans up before it raises.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
