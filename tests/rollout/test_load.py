"""Synthetic load (rollout/load.py) against a real stdlib HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.rollout.load import (
    MAX_RATE,
    SYNTHETIC_HEADER,
    LoadGenerator,
    LoadSpec,
)
from tests.support.httpd import Httpd, QuietHandler


@dataclass
class Seen:
    requests: int = 0
    marked: int = 0
    auth: list[str] = field(default_factory=list)
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with seen.lock:
                seen.requests += 1
                seen.marked += self.headers.get(SYNTHETIC_HEADER) == "1"
                if self.headers.get("Authorization"):
                    seen.auth.append(self.headers["Authorization"])
                if seen.requests >= 3:
                    seen.reached.set()
            if self.path.startswith("/slow"):
                seen.release.wait(10)  # held until the test ends: the client times out
            code = 500 if self.path.startswith("/fail") else 200
            body = b"ok"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = Httpd(Handler)
    try:
        yield f"http://{httpd.address}", seen
    finally:
        seen.release.set()  # a handler held in /slow ends before the server waits for it
        httpd.close()


def test_sends_the_planned_requests_marked_synthetic_and_counts_them(
    server: tuple[str, Seen],
) -> None:
    url, seen = server
    result = LoadGenerator(url, LoadSpec(path="/ok", rate=40, duration=0.5)).run()
    assert result.sent + result.skipped == 20
    # A tick the scheduler delivers more than one interval late is dropped, not bunched:
    # on a loaded machine a few may be.
    assert result.sent >= 15
    assert seen.requests == seen.marked == result.sent == result.ok
    assert result.statuses == {200: result.sent} and result.errors == 0
    assert len(result.latencies_ms) == result.sent
    assert 0.45 <= result.seconds < 2.5


def test_server_errors_and_timeouts_are_errors(server: tuple[str, Seen]) -> None:
    url, _ = server
    failing = LoadGenerator(url, LoadSpec(path="/fail", rate=20, duration=0.25)).run()
    assert failing.sent >= 4 and failing.errors == failing.sent and failing.ok == 0
    assert failing.statuses == {500: failing.sent}
    slow = LoadGenerator(url, LoadSpec(path="/slow", rate=10, duration=0.3, timeout=0.2)).run()
    assert slow.sent == 3 and slow.timeouts == 3 and slow.errors == 3
    assert slow.last_error == "timed out" and slow.statuses == {}


def test_requests_in_flight_are_bounded_and_never_queued(server: tuple[str, Seen]) -> None:
    url, _ = server
    spec = LoadSpec(path="/slow", rate=20, duration=0.25, timeout=0.5, concurrency=1)
    result = LoadGenerator(url, spec).run()
    assert result.sent == 1 and result.skipped == 4  # one slot, held by the slow request


def test_stop_ends_a_long_run_early(server: tuple[str, Seen]) -> None:
    url, seen = server
    gen = LoadGenerator(url, LoadSpec(path="/ok", rate=20, duration=600))
    gen.start()
    gen.start()  # idempotent
    assert seen.reached.wait(10)
    result = gen.stop()
    assert 3 <= result.sent < 200 and result.ok == result.sent


def test_slow_counts_against_thresholds(server: tuple[str, Seen]) -> None:
    url, _ = server
    spec = LoadSpec(path="/ok", rate=20, duration=0.2, thresholds_ms=(1e-6, 1e6))
    result = LoadGenerator(url, spec).run()
    assert result.slow() == (result.ok, 0)


def test_credentials_go_as_basic_auth_and_nowhere_else(server: tuple[str, Seen]) -> None:
    url, seen = server
    with_user = url.replace("http://", "http://bob:s3cret@")
    result = LoadGenerator(with_user, LoadSpec(path="/ok", rate=10, duration=0.1)).run()
    assert seen.auth == ["Basic Ym9iOnMzY3JldA=="] * result.sent
    assert "s3cret" not in repr(result.to_dict())


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        ({"path": "predict"}, "load.path"),
        ({"rate": MAX_RATE * 2}, "load.rate"),
        ({"rate": 0}, "load.rate"),
        ({"duration": 1e9}, "load.duration"),
        ({"method": "DELETE"}, "load.method"),
        ({"concurrency": 0}, "load.concurrency"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, "load.headers"),
        ({"thresholds_ms": (5.0, 1.0)}, "load.thresholds_ms"),
    ],
)
def test_bad_specs_name_the_field(kwargs: dict[str, object], field_name: str) -> None:
    with pytest.raises(ConfigError) as info:
        LoadSpec(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field_name


def test_bad_base_url() -> None:
    with pytest.raises(ConfigError, match=r"load\.base_url"):
        LoadGenerator("ftp://x", LoadSpec())
