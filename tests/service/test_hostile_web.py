"""The service's web server as an attacker meets it: malformed credentials, deeply nested
JSON, ids that need percent-encoding, and thousands of connections that never send a byte
under a 1,024-descriptor limit. The service runs as ``crackseg-monitor run``."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.service_helpers import CLI, Endpoint, Running, env, get_json, running, wait_until

TOKEN = "hostile-web-token"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


def _config(tmp_path: Path, endpoint: Endpoint) -> Path:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"deployments:\n  - id: api\n    url: {endpoint.url}\n    check_interval: 0.2\n"
        f"store:\n  path: history.db\nserver:\n  port: 0\n  token: {TOKEN}\n"
    )
    return cfg


def _raw(url: str, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``request`` as bytes; the status code and the body of the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _expected(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 0


def _send(url: str, method: str, path: str, body: Any, token: str | None = TOKEN) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


@pytest.fixture
def service(tmp_path: Path, endpoint: Endpoint) -> Iterator[tuple[Running, str]]:
    with running("run", "-c", str(_config(tmp_path, endpoint))) as svc:
        yield svc, svc.url()


def test_a_malformed_credential_is_401_never_500(service: tuple[Running, str]) -> None:
    svc, url = service
    body = b'{"deployment_id": "api", "duration_seconds": 60}'
    for credential in (b"Bearer \xff\xfe\xfd", b"Bearer \xc3(", b"\xff", b"Bearer", b"Basic \x80"):
        status, answer = _raw(
            url,
            b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + credential + b"\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body,
        )
        assert status == 401, (credential, answer)
        assert json.loads(answer)["field"] == "Authorization"
    assert not [line for line in svc.err if "Traceback" in line or "UnicodeEncodeError" in line]


def _nested(depth: int) -> str:
    """A JSON value nested ``depth`` lists deep (as text: json.dumps recurses)."""
    return "[" * depth + '"x"' + "]" * depth


def test_deeply_nested_json_is_a_400_naming_the_field(service: tuple[Running, str]) -> None:
    svc, url = service

    def silence(comment: str) -> bytes:
        return f'{{"deployment_id": "api", "duration_seconds": 60, "comment": {comment}}}'.encode()

    status, answer, _ = _send(url, "POST", "/api/v1/silences", silence(_nested(1000)))
    assert status == 400 and answer["field"] == "comment", answer
    deployment = (
        '{"deployment_id": "deep", "health_check_url": "http://127.0.0.1:1/health", '
        f'"thresholds": {{"max_response_time_ms": {_nested(1000)}}}}}'
    )
    status, answer, _ = _send(url, "POST", "/api/v1/deployments", deployment.encode())
    assert status == 400 and answer["field"] == "thresholds.max_response_time_ms", answer
    # deeper than the parser takes: still a 400, on the body
    status, answer, _ = _send(url, "POST", "/api/v1/silences", silence(_nested(5000)))
    assert status == 400 and answer["field"] == "body", answer
    # nesting within the bound is judged as usual
    status, answer, _ = _send(url, "POST", "/api/v1/silences", silence(_nested(3)))
    assert status == 400 and answer["field"] == "comment" and "string" in answer["detail"]
    assert not [line for line in svc.err if "RecursionError" in line or "Traceback" in line]


def test_ids_are_percent_encoded_in_every_location(service: tuple[Running, str]) -> None:
    _svc, url = service
    for dep_id in ("a#b", "a@b:c", "x#1.2_3-4#"):
        new = {"deployment_id": dep_id, "health_check_url": "http://127.0.0.1:1/health"}
        status, answer, headers = _send(url, "POST", "/api/v1/deployments", new)
        assert status == 201, answer
        location = headers["Location"]
        assert "#" not in location
        followed = get_json(url + location)
        assert followed["deployment_id"] == dep_id
        status, _, _ = _send(url, "DELETE", location, None)
        assert status == 204
    status, _silence, headers = _send(
        url, "POST", "/api/v1/silences", {"alert_type": "x", "duration_seconds": 60}
    )
    assert status == 201
    assert _send(url, "DELETE", headers["Location"], None)[0] == 204


def _limit_fds(n: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def test_idle_connections_are_shed_and_healthz_answers_under_ulimit_1024(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2200:
        pytest.fail(f"this test holds 2,000 sockets: raise the hard descriptor limit ({hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2200), hard))
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [*CLI, "run", "-c", str(_config(tmp_path, endpoint))],
            stdout=o, stderr=e, env=env(), preexec_fn=_limit_fds(1024),
        )  # fmt: skip
    held: list[socket.socket] = []
    try:
        url = wait_until(
            lambda: next(
                (ln.split()[-1] for ln in out.read_text().splitlines() if "serving on" in ln),
                None,
            ),
            30,
            "serving on",
        )
        parts = urlsplit(url)
        with open(f"/proc/{proc.pid}/limits") as f:
            assert any("Max open files" in line and " 1024 " in line for line in f)
        # one silent connection: shed within seconds (aiohttp alone keeps it an hour)
        lone = socket.create_connection((parts.hostname, parts.port), timeout=30)
        started = time.monotonic()
        assert lone.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 20
        lone.close()
        # a client dripping its request head is shed too
        drip = socket.create_connection((parts.hostname, parts.port), timeout=30)
        started = time.monotonic()
        drip.setblocking(False)
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                drip.send(bytes([byte]))
                if drip.recv(1) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            time.sleep(0.5)
        assert closed and time.monotonic() - started < 20
        drip.close()
        # 2,000 connections that never send a byte, while /healthz is asked
        for _ in range(2000):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect((parts.hostname, parts.port))
            held.append(s)
        deadline = time.monotonic() + 30
        answered = 0
        while time.monotonic() < deadline and answered < 5:
            assert get_json(f"{url}/healthz", timeout=10)["status"] == "ok"
            # the cap keeps the service's descriptors under its limit
            assert len(os.listdir(f"/proc/{proc.pid}/fd")) < 1000
            answered += 1
            time.sleep(0.5)
        assert answered == 5
        assert get_json(f"{url}/api/v1/deployments", timeout=10)["count"] == 1
        assert proc.poll() is None
        assert "Too many open files" not in err.read_text()
    finally:
        for s in held:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_dripped_body_is_refused_within_seconds(service: tuple[Running, str]) -> None:
    _svc, url = service
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(
            b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
        )
        started = time.monotonic()
        s.setblocking(False)
        answer = b""
        while time.monotonic() - started < 30 and b"\r\n\r\n" not in answer:
            with contextlib.suppress(BlockingIOError):
                s.send(b" ")
            with contextlib.suppress(BlockingIOError):
                answer += s.recv(4096)
            time.sleep(0.5)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 20


def test_undecodable_and_infinite_parameters_are_400_or_404_never_500(
    service: tuple[Running, str],
) -> None:
    svc, url = service
    for path, expected in (
        ("/api/v1/alerts/history?since=1e999", 400),
        ("/api/v1/alerts/history?since=nan", 400),
        ("/api/v1/alerts/history?since=%ff", 400),
        ("/api/v1/deployments/%ff", 404),
        ("/api/v1/deployments/%ff/history", 404),
        ("/api/v1/alerts?deployment_id=%ff", 200),
    ):
        status, _ = _raw(
            url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert status == expected, path
    assert not [line for line in svc.err if "Traceback" in line]
