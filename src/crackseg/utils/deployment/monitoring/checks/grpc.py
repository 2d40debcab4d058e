"""gRPC checks: the standard ``grpc.health.v1.Health/Check``, as Triton, KServe and most
gRPC-only inference servers serve it.

Through ``grpcio`` and ``grpcio-health-checking`` (the optional extra
``crackseg-deploy[grpc]``; without it, a gRPC deployment is refused when it is added, naming
the extra). ``SERVING`` is healthy; ``NOT_SERVING`` and ``UNKNOWN`` are unhealthy; a
service the server does not know (``NOT_FOUND``) is unhealthy with that reason; a server
that is down reads ``connection refused``, a slow one ``timeout after 10s``, like HTTP.
``grpcs://`` speaks TLS with the deployment's ``tls`` options (``ca_file``, mTLS
``cert_file``/``key_file``); the chain's earliest expiry is read by a TLS handshake of
its own at most every :data:`EXPIRY_REFRESH_S` seconds, since grpcio does not show its
session.

Channels are kept per event loop and target in a least-recently-used table of at most
``max_channels`` (default :data:`MAX_CHANNELS`); a channel leaving it (evicted, or
:meth:`GrpcChecker.release` for a deployment no longer monitored) is closed on its own
loop, letting checks in flight on it end for up to :data:`CLOSE_GRACE_S` seconds, and
:meth:`GrpcChecker.aclose` closes the running loop's channels at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.outcome import describe
from crackseg.utils.deployment.monitoring.checks.plan import (
    GRPC_MISSING,
    CheckPlan,
    grpc_available,
    judge_connected,
    transport_failed,
    unhealthy,
)
from crackseg.utils.deployment.monitoring.checks.tls import (
    TlsOptions,
    client_context,
    handshake_expiry,
)
from crackseg.utils.deployment.redact import redact_text

__all__ = ["CLOSE_GRACE_S", "EXPIRY_REFRESH_S", "MAX_CHANNELS", "GrpcChecker"]

MAX_CHANNELS = 1024
EXPIRY_REFRESH_S = 300.0
CLOSE_GRACE_S = 10.0
_DETAIL_MAX = 200

_Target = tuple[str, TlsOptions | None]  # (url, tls): what a channel connects to


class _Held(NamedTuple):
    loop: asyncio.AbstractEventLoop
    channel: Any
    ctx: ssl.SSLContext | None  # grpcs: the context of the files the channel was made from


class GrpcChecker:
    """``grpc.health.v1.Health/Check`` per deployment, within the check's timeout.

    One channel per event loop and target, at most ``max_channels`` of them (the least
    recently used is closed to make room). :meth:`release` may be called from any thread.

    >>> GrpcChecker(max_channels=2).open_channels()
    0
    """

    def __init__(self, max_channels: int = MAX_CHANNELS) -> None:
        if max_channels < 1:
            raise ValueError("max_channels must be at least 1")
        self._max = max_channels
        # Checks run on the loop; release() comes from the thread removing a deployment.
        self._lock = threading.Lock()
        self._channels: OrderedDict[tuple[int, str, TlsOptions | None], _Held] = OrderedDict()
        self._expiry: OrderedDict[_Target, tuple[float, float | None, ssl.SSLContext]] = (
            OrderedDict()
        )
        self._closing: set[asyncio.Task[None]] = set()

    def open_channels(self) -> int:
        """How many channels are held open now (on every loop)."""
        with self._lock:
            return len(self._channels)

    async def check(self, plan: CheckPlan, timeout: float) -> HealthCheckResult:
        start = time.monotonic()
        if not grpc_available():
            return transport_failed(plan, GRPC_MISSING, 0.0, {"error_type": "missing_extra"})
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        parts = urlsplit(plan.url)
        host, port = parts.hostname or "", parts.port or 0
        details: dict[str, Any] = {}
        cert_left: float | None = None
        try:
            async with asyncio.timeout(timeout):
                # The current context of the TLS files: a new one (a rotated CA, client
                # certificate or key) gives a new channel and a new expiry reading.
                ctx = client_context(plan.tls, ("h2",)) if parts.scheme == "grpcs" else None
                if ctx is not None:
                    not_after = await self._cert_expiry(plan, ctx, host, port, timeout)
                    if not_after is not None:
                        details["cert_not_after"] = not_after
                        cert_left = not_after - time.time()
                channel = self._channel(grpc, plan, ctx, host, port)
                stub = health_pb2_grpc.HealthStub(channel)
                request = health_pb2.HealthCheckRequest(service=plan.service)
                remaining = max(0.001, timeout - (time.monotonic() - start))
                answer = await stub.Check(request, timeout=remaining)
        except grpc.RpcError as exc:
            message, kind = _rpc_failure(grpc, exc, plan.service, timeout)
            details["error_type"] = kind
            if kind in ("connection_refused", "timeout", "unavailable"):
                return transport_failed(plan, message, _ms(start), details)
            details["grpc_code"] = exc.code().name if exc.code() else "UNKNOWN"
            return unhealthy(plan, message, _ms(start), details)
        except (OSError, TimeoutError) as exc:
            message, kind = describe(exc, timeout, host)
            details["error_type"] = kind
            return transport_failed(plan, message, _ms(start), details)
        ms = _ms(start)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        details["grpc_status"] = status
        if status != "SERVING":
            return unhealthy(plan, f"gRPC health: {status}", ms, details)
        return judge_connected(plan, ms, details, cert_left)

    def _channel(
        self, grpc: Any, plan: CheckPlan, ctx: ssl.SSLContext | None, host: str, port: int
    ) -> Any:
        loop = asyncio.get_running_loop()
        key = (id(loop), plan.url, plan.tls)
        evicted: list[_Held] = []
        with self._lock:
            held = self._channels.get(key)
            if held is not None:
                if held.ctx is ctx:
                    self._channels.move_to_end(key)
                    return held.channel
                evicted.append(self._channels.pop(key))  # made from files since rewritten
        target = f"{host}:{port}"
        if ctx is not None:
            channel = grpc.aio.secure_channel(target, _credentials(grpc, plan.tls))
        else:
            channel = grpc.aio.insecure_channel(target)
        with self._lock:
            self._channels[key] = _Held(loop, channel, ctx)
            while len(self._channels) > self._max:
                evicted.append(self._channels.popitem(last=False)[1])
        for old in evicted:
            self._close_later(old)
        return channel

    def release(self, plan: CheckPlan) -> None:
        """``plan``'s target is checked by no deployment any more: close its channels (on
        their loops, from any thread) and forget its certificate expiry."""
        with self._lock:
            keys = [k for k in self._channels if k[1] == plan.url and k[2] == plan.tls]
            gone = [self._channels.pop(k) for k in keys]
            self._expiry.pop((plan.url, plan.tls), None)
        for held in gone:
            self._close_later(held)

    def _close_later(self, held: _Held) -> None:
        """Close ``held``'s channel on its own loop, without waiting here."""
        loop = held.loop
        if loop.is_closed():
            return  # its loop is gone, and with it what the channel ran on
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._start_close(held.channel)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._start_close, held.channel)

    def _start_close(self, channel: Any) -> None:
        task = asyncio.get_running_loop().create_task(_close(channel, CLOSE_GRACE_S))
        self._closing.add(task)  # a reference, so the task is not collected mid-close
        task.add_done_callback(self._closing.discard)

    async def _cert_expiry(
        self, plan: CheckPlan, ctx: ssl.SSLContext, host: str, port: int, timeout: float
    ) -> float | None:
        key = (plan.url, plan.tls)
        with self._lock:
            seen = self._expiry.get(key)
        now = time.monotonic()
        if seen is not None and seen[2] is ctx and now - seen[0] < EXPIRY_REFRESH_S:
            return seen[1]
        not_after = await handshake_expiry(host, port, ctx, timeout)
        with self._lock:
            self._expiry[key] = (now, not_after, ctx)
            self._expiry.move_to_end(key)
            while len(self._expiry) > self._max:
                self._expiry.popitem(last=False)
        return not_after

    async def aclose(self) -> None:
        """Close the running loop's channels now (checks in flight on them are cancelled),
        and wait for the closes already under way on it."""
        loop = asyncio.get_running_loop()
        with self._lock:
            keys = [k for k, held in self._channels.items() if held.loop is loop]
            gone = [self._channels.pop(k) for k in keys]
        for held in gone:
            await _close(held.channel, None)
        pending = [t for t in self._closing if t.get_loop() is loop]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def _close(channel: Any, grace: float | None) -> None:
    with contextlib.suppress(Exception):
        await channel.close(grace)


def _credentials(grpc: Any, tls: TlsOptions | None) -> Any:
    """Channel credentials from the deployment's TLS options (files read here, once per
    channel: a rewritten file gives a new channel; a missing file was refused when the
    deployment was added)."""
    if tls is None:
        return grpc.ssl_channel_credentials()
    root = _read(tls.ca_file)
    chain = _read(tls.cert_file)
    key = _read(tls.key_file) if tls.key_file else chain
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key if chain else None, certificate_chain=chain
    )


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def _rpc_failure(grpc: Any, exc: Any, service: str, timeout: float) -> tuple[str, str]:
    code = exc.code()
    detail = redact_text(str(exc.details() or ""))[:_DETAIL_MAX]
    if code == grpc.StatusCode.NOT_FOUND:
        return f"gRPC health: unknown service {service!r} (NOT_FOUND)", "unknown_service"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"timeout after {timeout:g}s", "timeout"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "the server does not serve grpc.health.v1.Health (UNIMPLEMENTED)", "unimplemented"
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = detail.lower()
        if "connection refused" in lowered:
            return "connection refused", "connection_refused"
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered:
            return f"TLS error: {detail}", "tls"
        return f"gRPC unavailable: {detail}", "unavailable"
    name = code.name if code is not None else "UNKNOWN"
    return f"gRPC error {name}: {detail}", "grpc_error"


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0
