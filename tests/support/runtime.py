"""Runtime test helpers: sample services as real processes, an nginx router, a bounded load generator.

Usage (sync tests; the load runs on its own event loop in a thread)::

    with sample_target(tmp_path) as target, NginxRouter(workdir=tmp_path / "nginx") as router:
        v1 = start_instance(target, "v1")
        router.apply([Backend(v1.address, 100, "v1")])
        with LoadGenerator(router.public_url + "/predict", rate=300) as load:
            load.wait_for_requests(200)
            ...                                   # switch traffic, deploy, roll back
        result = load.result                      # LoadResult: by_version, failed, failures, ...
        assert result.failed == 0
        window = load.window(t0, t1)              # answers to requests sent between two times
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from crackseg.utils.deployment.rollout.targets.base import Instance
from crackseg.utils.deployment.rollout.targets.process import ProcessTarget

__all__ = [
    "LoadGenerator",
    "LoadResult",
    "http_get",
    "sample_target",
    "start_instance",
    "wait_healthy",
]

_MAX_RECORDS = 200_000
_MAX_FAILURE_NOTES = 50


def http_get(
    url: str, *, method: str = "GET", timeout: float = 2.0, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body up to 64 KiB); errors raise."""
    if method == "POST" and data is None:
        data = b""
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read(65536)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read(65536)


def wait_healthy(url: str, *, timeout: float = 20.0, status: int = 200) -> None:
    """Poll ``url`` until it answers ``status``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = http_get(url, timeout=1.0)[0]
            if last == status:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last!r})")


@contextlib.contextmanager
def sample_target(tmp_path: Path, *flags: str, **kwargs: Any) -> Iterator[ProcessTarget]:
    """A ProcessTarget running the sample service (logs under tmp_path/logs); closed on exit."""
    kwargs.setdefault("log_dir", tmp_path / "logs")
    kwargs.setdefault("default_grace_period", 5.0)
    target = ProcessTarget.for_sample_service(*flags, **kwargs)
    try:
        yield target
    finally:
        target.close()


def start_instance(
    target: ProcessTarget, version: str, environment: str = "", *, healthy: bool = True, **kw: Any
) -> Instance:
    """Deploy ``version`` and (``healthy=True``) wait until its /health answers 200."""
    instance = target.deploy(version, environment=environment, **kw)
    if healthy:
        try:
            wait_healthy(instance.health_check_url)
        except AssertionError:
            log = Path(instance.log_path or "").read_text(errors="replace")[-2000:]
            raise AssertionError(
                f"{instance.instance_id} never became healthy; log:\n{log}"
            ) from None
    return instance


@dataclass
class LoadResult:
    """What the load generator saw; ``failed`` counts non-2xx answers and transport errors."""

    by_version: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failed: int = 0
    retries: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)

    def share(self, version: str) -> float:
        """Percent of successful answers that came from ``version``."""
        ok = sum(self.by_version.values())
        return 100.0 * self.by_version[version] / ok if ok else 0.0


class LoadGenerator:
    """Steady, bounded GET load on ``url`` from its own thread and event loop.

    ``concurrency`` workers share one keep-alive connection pool and one schedule of ``rate``
    requests per second; the run stops at :meth:`stop` or after ``max_duration`` seconds.
    Each answer is recorded with its time, status and ``X-Version``. Like browsers and HTTP
    libraries, a GET whose reused connection is closed under it is retried once (counted in
    ``retries``); a second failure counts as failed.
    """

    def __init__(
        self,
        url: str,
        *,
        rate: float = 300.0,
        concurrency: int = 8,
        max_duration: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.rate = rate
        self.concurrency = concurrency
        self.max_duration = max_duration
        self.timeout = timeout
        # (monotonic time sent, status or 0 for a transport error, version or "")
        self.records: list[tuple[float, int, str]] = []
        self.retries = 0
        self.failure_notes: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_error: BaseException | None = None
        self._fresh: aiohttp.ClientSession | None = None

    def start(self) -> LoadGenerator:
        self._thread = threading.Thread(target=self._run, name="load-generator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 10.0)
            assert not self._thread.is_alive(), "load generator did not stop"
        if self._loop_error is not None:
            raise AssertionError(f"load generator crashed: {self._loop_error!r}")
        return self.result

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def result(self) -> LoadResult:
        return self.window()

    def window(self, since: float | None = None, until: float | None = None) -> LoadResult:
        """Answers to requests sent between two ``time.monotonic()`` values (default: all).

        Requests are placed by the time they were first sent, so "sent after the switch"
        needs no margin for requests still in flight during it.
        """
        res = LoadResult(retries=self.retries, failures=list(self.failure_notes))
        for t, status, version in list(self.records):
            if (since is not None and t < since) or (until is not None and t > until):
                continue
            res.total += 1
            res.statuses[status] += 1
            if 200 <= status < 300:
                res.by_version[version] += 1
            else:
                res.failed += 1
        return res

    def wait_for_requests(self, count: int, timeout: float = 20.0) -> None:
        """Block until ``count`` answers were recorded since this call."""
        start = len(self.records)
        deadline = time.monotonic() + timeout
        while len(self.records) - start < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {len(self.records) - start} of {count} answers in {timeout}s"
                )
            if self._thread is not None and not self._thread.is_alive():
                raise AssertionError(f"load generator ended early: {self._loop_error!r}")
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by stop()
            self._loop_error = exc

    async def _main(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        fresh_connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            aiohttp.ClientSession(connector=fresh_connector, timeout=timeout) as fresh,
        ):
            # Retry lives here, once and counted, rather than also inside aiohttp. Like
            # browsers, the retry goes out on a new connection: after an nginx reload every
            # idle keep-alive connection of the old worker closes at once, so another pooled
            # one may be closing too.
            for s in (session, fresh):
                if hasattr(s, "_retry_connection"):
                    s._retry_connection = False
            self._fresh = fresh
            start = time.monotonic()
            slots = iter(range(10**9))
            workers = [
                asyncio.create_task(self._worker(session, start, slots))
                for _ in range(self.concurrency)
            ]
            await asyncio.gather(*workers)

    async def _worker(
        self, session: aiohttp.ClientSession, start: float, slots: Iterator[int]
    ) -> None:
        end = start + self.max_duration
        while not self._stop.is_set():
            due = start + next(slots) / self.rate
            now = time.monotonic()
            if due >= end:
                return
            if due > now:
                await asyncio.sleep(due - now)
            sent = time.monotonic()
            status, version = await self._one(session)
            if len(self.records) < _MAX_RECORDS:
                self.records.append((sent, status, version))

    async def _one(self, session: aiohttp.ClientSession) -> tuple[int, str]:
        for attempt in (1, 2):
            try:
                client = session if attempt == 1 or self._fresh is None else self._fresh
                async with client.get(self.url) as resp:
                    await resp.content.read(65536)
                    version = resp.headers.get("X-Version", "")
                    if not 200 <= resp.status < 300:
                        self._note(f"HTTP {resp.status} from {version or '?'}")
                    return resp.status, version
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 1 and not isinstance(exc, aiohttp.ClientConnectorError):
                    self.retries += 1  # a reused connection closed under us: retry once
                    continue
                self._note(exc)
                return 0, ""
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._note(exc)
                return 0, ""
        raise AssertionError("unreachable")

    def _note(self, what: BaseException | str) -> None:
        if len(self.failure_notes) < _MAX_FAILURE_NOTES:
            text = what if isinstance(what, str) else f"{type(what).__name__}: {what}"
            self.failure_notes.append(f"{time.monotonic():.3f} {text}")
