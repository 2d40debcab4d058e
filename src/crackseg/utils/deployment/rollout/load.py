"""Synthetic load during a rollout's analysis: evidence for a service with little traffic.

Like Flagger's load tester, a rollout may send a configured request at a steady rate while
its new version is judged (:class:`LoadSpec`, ``DeploymentConfig.load``). The requests go
through the traffic router, so they are split between the arms like user traffic (the
two-sample test then works on them too), and they carry the router's load header
(:attr:`~.routers.base.TrafficRouter.load_header`), so that the router logs them apart from
user requests and the evidence says which is which. Bounded in rate, duration, concurrency,
body and time per request; what it receives is read and thrown away (the router's log, not
this client, is the measurement).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crackseg.utils.deployment.errors import ConfigError, require_positive

__all__ = ["MAX_LOAD_RATE", "MAX_LOAD_SECONDS", "LoadSpec", "SyntheticLoad"]

logger = logging.getLogger("crackseg.utils.deployment.orchestration")

MAX_LOAD_RATE = 200.0  # requests per second
MAX_LOAD_SECONDS = 3600.0
_MAX_BODY = 64 * 1024
_MAX_READ = 1024 * 1024
_WORKERS = 4


@dataclass(frozen=True)
class LoadSpec:
    """The synthetic request of a rollout: ``method`` ``path`` (with its query) on the
    router's public URL, ``rate`` requests per second for at most ``duration`` seconds of
    each analysis window (default: the whole window), each bounded by ``timeout``.

    >>> LoadSpec(path="/predict", rate=5).rate
    5.0
    """

    path: str = "/"
    rate: float = 1.0
    duration: float | None = None
    method: str = "GET"
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ConfigError(
                "load.path", f"must start with '/', e.g. '/predict', got {self.path!r}"
            )
        if any(c in self.path for c in "\r\n "):
            raise ConfigError("load.path", "must not contain spaces or line breaks")
        require_positive("load.rate", self.rate)
        if self.rate > MAX_LOAD_RATE:
            raise ConfigError("load.rate", f"at most {MAX_LOAD_RATE:g} requests/s, got {self.rate}")
        object.__setattr__(self, "rate", float(self.rate))
        if self.duration is not None:
            require_positive("load.duration", self.duration)
            if self.duration > MAX_LOAD_SECONDS:
                raise ConfigError("load.duration", f"at most {MAX_LOAD_SECONDS:g} s")
        require_positive("load.timeout", self.timeout)
        if self.method not in ("GET", "HEAD", "POST", "PUT"):
            raise ConfigError("load.method", f"use GET, HEAD, POST or PUT, got {self.method!r}")
        if len(self.body.encode()) > _MAX_BODY:
            raise ConfigError("load.body", f"at most {_MAX_BODY} bytes")
        for name, value in self.headers.items():
            if not name.isascii() or any(c in f"{name}{value}" for c in "\r\n"):
                raise ConfigError("load.headers", f"header {name!r} must be one ASCII line")

    @classmethod
    def of(cls, value: LoadSpec | Mapping[str, Any] | None) -> LoadSpec | None:
        """A spec from itself or a mapping of its fields (a YAML ``load:`` section)."""
        if value is None or isinstance(value, LoadSpec):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError("load", "must be a mapping such as {path: /predict, rate: 5}")
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise ConfigError("load", f"unknown field(s) {sorted(unknown)}; use {known}")
        return cls(**dict(value))

    def to_dict(self) -> dict[str, Any]:
        """For the record: header values are left out (they may hold credentials)."""
        return {
            "path": self.path,
            "rate": self.rate,
            "duration": self.duration,
            "method": self.method,
            "headers": sorted(self.headers),
        }


class SyntheticLoad:
    """Sends ``spec`` to ``base_url`` from a few threads until :meth:`stop` or ``seconds``.

    ``marker`` is the router's load header. ``sent``/``failed`` count requests and transport
    failures (for the record; the router's log is the evidence). Use as a context manager.
    """

    def __init__(
        self,
        spec: LoadSpec,
        base_url: str,
        marker: tuple[str, str] | None,
        seconds: float,
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError("load", f"the router's public URL {base_url!r} is not http(s)")
        self.spec = spec
        self._url = url
        self._headers = {**spec.headers, **({marker[0]: marker[1]} if marker else {})}
        self.seconds = min(seconds, spec.duration or seconds)
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._t0 = self._next = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> SyntheticLoad:
        self._t0 = self._next = time.monotonic()
        workers = max(1, min(_WORKERS, round(self.spec.rate)))
        for k in range(workers):
            t = threading.Thread(target=self._run, name=f"rollout-load-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.spec.timeout + 1.0)

    def __enter__(self) -> SyntheticLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def view(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "sent": self.sent, "failed": self.failed}

    def _slot(self) -> float | None:
        """The monotonic time of this worker's next request, or None when the run is over."""
        with self._lock:
            at = self._next
            self._next += 1.0 / self.spec.rate
        return None if at - self._t0 >= self.seconds else at

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        body = self.spec.body.encode() if self.spec.body else None
        target = self.spec.path
        try:
            while not self._stop.is_set():
                at = self._slot()
                if at is None or self._stop.wait(max(0.0, at - time.monotonic())):
                    return
                if conn is None:
                    conn = self._connect()
                try:
                    conn.request(self.spec.method, target, body=body, headers=self._headers)
                    with conn.getresponse() as resp:
                        resp.read(_MAX_READ)
                        if resp.will_close:
                            conn.close()
                            conn = None
                    ok = True
                except (OSError, http.client.HTTPException):
                    ok = False
                    if conn is not None:
                        conn.close()
                    conn = None
                with self._lock:
                    self.sent += 1
                    self.failed += not ok
        finally:
            if conn is not None:
                conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        cls = (
            http.client.HTTPSConnection
            if self._url.scheme == "https"
            else http.client.HTTPConnection
        )
        return cls(self._url.hostname or "", self._url.port, timeout=self.spec.timeout)
