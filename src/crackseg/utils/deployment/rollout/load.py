"""Synthetic load for a canary's analysis: one configured request, at a bounded rate, for a
bounded time (like Flagger's load tester), so a low-traffic service still gives its judge
evidence.

:class:`LoadGenerator` sends :class:`LoadSpec`'s request to a base URL (the router, so the
requests take the same path as users'), each marked with the header
:data:`SYNTHETIC_HEADER` so the router's measurement can count them apart from user
traffic, and counts its own results (:class:`LoadResult`). Everything is bounded: the rate
(:data:`MAX_RATE`), the duration (:data:`MAX_DURATION`), the requests in flight
(``concurrency``; a send that finds every slot busy is counted as ``skipped``, never
queued), each request's time (``timeout``), the body read back (:data:`MAX_BODY`) and
the latencies kept (:data:`MAX_SAMPLES`). Pacing is on the monotonic clock, so a
stalled tick is not followed by a burst. Threads and ``http.client`` (keep-alive, one
connection per worker, no proxy): the rollout code around it is synchronous.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import math
import threading
import time
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from crackseg.utils.deployment.errors import ConfigError, ConfigProblems, require_positive

__all__ = [
    "MAX_BODY",
    "MAX_DURATION",
    "MAX_RATE",
    "MAX_SAMPLES",
    "SYNTHETIC_HEADER",
    "LoadGenerator",
    "LoadResult",
    "LoadSpec",
]

SYNTHETIC_HEADER = "X-Crackseg-Synthetic"
MAX_RATE = 1000.0
MAX_DURATION = 3600.0
MAX_BODY = 1 << 20
MAX_SAMPLES = 10_000
_METHODS = ("GET", "HEAD", "POST", "PUT")


@dataclass(frozen=True)
class LoadSpec:
    """The request to send and how much of it.

    ``path`` (with its query) is appended to the base URL; ``rate`` is requests per
    second, ``duration`` seconds; ``thresholds_ms`` (ascending), when given, are counted
    against as the judge's slow counts are (:meth:`LoadResult.slow`).

    >>> LoadSpec(path="/predict", rate=2, duration=60).requests_planned
    120
    """

    path: str = "/"
    method: str = "GET"
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    rate: float = 1.0
    duration: float = 60.0
    timeout: float = 2.0
    concurrency: int = 8
    thresholds_ms: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        found = ConfigProblems()  # every problem in one error
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            found.add("load.path", f"must start with '/', e.g. '/predict', got {self.path!r}")
        if self.method not in _METHODS:
            found.add("load.method", f"must be one of {', '.join(_METHODS)}")
        if not isinstance(self.body, bytes) or len(self.body) > MAX_BODY:
            found.add("load.body", f"must be bytes of at most {MAX_BODY}")
        for name, top in (("rate", MAX_RATE), ("duration", MAX_DURATION), ("timeout", 60.0)):
            value = getattr(self, name)
            with found.check():
                require_positive(f"load.{name}", value)
                if value > top:
                    found.add(f"load.{name}", f"must be at most {top:g}, got {value}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            found.add("load.concurrency", "must be an integer")
        elif not 1 <= self.concurrency <= 256:
            found.add("load.concurrency", f"must be in 1..256, got {self.concurrency}")
        if any(b <= a for a, b in itertools.pairwise(self.thresholds_ms)):
            found.add("load.thresholds_ms", "must increase")
        if any(any(c in str(k) + str(v) for c in "\r\n") for k, v in self.headers.items()):
            found.add("load.headers", "a header name or value holds a line break")
        found.raise_any()

    @property
    def requests_planned(self) -> int:
        return math.floor(self.rate * self.duration + 1e-9)


@dataclass
class LoadResult:
    """What the synthetic requests got. ``errors`` are 5xx answers and transport failures
    (timeouts included, also counted in ``timeouts``); ``skipped`` sends found every
    connection busy. ``latencies_ms`` holds the first :data:`MAX_SAMPLES` completed."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    slow_counts: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    last_error: str | None = None
    seconds: float = 0.0

    def slow(self) -> tuple[int, ...]:
        """Completed requests above each of the spec's thresholds."""
        return tuple(self.slow_counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "skipped": self.skipped,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "slow": list(self.slow_counts),
            "last_error": self.last_error,
            "seconds": self.seconds,
        }


class LoadGenerator:
    """Sends ``spec``'s request to ``base_url`` at its rate, for its duration.

    :meth:`run` blocks; :meth:`start` runs it in a thread and :meth:`stop` ends it early
    (both idempotent). :meth:`result` is a consistent copy at any time.
    """

    def __init__(self, base_url: str, spec: LoadSpec) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("load.base_url", "must be an http:// or https:// URL with a host")
        self.spec = spec
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._target = parts.path.rstrip("/") + spec.path
        self._headers = {**spec.headers, SYNTHETIC_HEADER: "1"}
        if parts.username or parts.password:
            # Credentials in the URL go as basic auth, never into a message.
            user = urllib.parse.unquote(parts.username or "")
            pw = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{pw}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._lock = threading.Lock()
        self._result = LoadResult(slow_counts=[0] * len(spec.thresholds_ms))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = threading.local()

    # -- control ----------------------------------------------------------------------
    def start(self) -> None:
        """Run in a background thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self.run, name="crackseg-load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> LoadResult:
        """Stop sending, wait for the requests in flight (each bounded by its timeout)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout if timeout is not None else self.spec.timeout + 1.0)
        return self.result()

    def result(self) -> LoadResult:
        with self._lock:
            r = self._result
            return LoadResult(
                r.sent,
                r.ok,
                r.errors,
                r.timeouts,
                r.skipped,
                dict(r.statuses),
                list(r.slow_counts),
                list(r.latencies_ms),
                r.last_error,
                r.seconds,
            )

    def run(self) -> LoadResult:
        """Send for ``spec.duration`` seconds (or until :meth:`stop`), then return the result."""
        spec = self.spec
        interval = 1.0 / spec.rate
        slots = threading.BoundedSemaphore(spec.concurrency)
        start = time.monotonic()
        with ThreadPoolExecutor(spec.concurrency, thread_name_prefix="crackseg-load") as pool:
            for i in range(spec.requests_planned):
                due = start + i * interval
                # Sleep to the next send time; a late tick sends once, not a burst.
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                if time.monotonic() - due > interval:
                    with self._lock:
                        self._result.skipped += 1
                    continue
                if not slots.acquire(blocking=False):
                    with self._lock:
                        self._result.skipped += 1
                    continue
                with self._lock:
                    self._result.sent += 1
                pool.submit(self._send, slots)
        with self._lock:
            self._result.seconds = time.monotonic() - start
        return self.result()

    # -- one request ------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.spec.timeout)
            self._local.conn = conn
        return conn

    def _send(self, slots: threading.BoundedSemaphore) -> None:
        t0 = time.monotonic()
        status: int | None = None
        timed_out = False
        error: str | None = None
        try:
            conn = self._connection()
            try:
                conn.request(
                    self.spec.method,
                    self._target,
                    body=self.spec.body or None,
                    headers=self._headers,
                )
                resp = conn.getresponse()
                resp.read(MAX_BODY)
                status = resp.status
                if resp.will_close:
                    self._drop()
            except TimeoutError:
                timed_out, error = True, "timed out"
                self._drop()
            except (OSError, http.client.HTTPException) as exc:
                error = type(exc).__name__
                self._drop()
        finally:
            slots.release()
        self._record(status, timed_out, error, (time.monotonic() - t0) * 1000.0)

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _record(self, status: int | None, timed_out: bool, error: str | None, ms: float) -> None:
        with self._lock:
            r = self._result
            if status is not None:
                r.statuses[status] = r.statuses.get(status, 0) + 1
                if status >= 500:
                    r.errors += 1
                else:
                    r.ok += 1
                if len(r.latencies_ms) < MAX_SAMPLES:
                    r.latencies_ms.append(ms)
                for k, t in enumerate(self.spec.thresholds_ms):
                    if ms <= t:
                        break
                    r.slow_counts[k] += 1
            else:
                r.errors += 1
                r.timeouts += int(timed_out)
                r.last_error = error
