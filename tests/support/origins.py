"""Many HTTP origins in one subprocess, counting connections and requests server-side.

``python -m tests.support.origins N`` listens on N loopback addresses (127.0.0.1, 127.0.0.2,
...; a free port each) and prints one JSON line: ``{"control": port, "origins":
[[host, port], ...]}``. Every path answers 200 ``{"status":"healthy"}`` with keep-alive,
after ``?delay=s`` seconds if given. ``GET /stats`` on the control port (127.0.0.1)
returns what it counted since the last ``GET /reset`` (which returns them too, then
starts over): connections accepted, the most
open at once, requests and the most in flight at once, in all and per origin (index
into ``origins``). It exits when its stdin closes.

"The most open at once" is exact, not one event-loop batch late: on every accept the
server first asks the kernel (poll, POLLRDHUP) which of its connections the client has
already closed, so a close followed at once by a connect never counts as two open.
:class:`Origins` starts it from a test and reads its counts.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

_BODY = b'{"status":"healthy"}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)
_GONE = select.POLLRDHUP | select.POLLHUP | select.POLLERR


class _Counts:
    def __init__(self) -> None:
        self.alive: dict[_Conn, int] = {}
        self.in_flight = 0
        self.in_flight_by: Counter[int] = Counter()
        self.reset()

    def reset(self) -> None:
        self.accepted = 0
        self.accepted_by: Counter[int] = Counter()
        self.requests = 0
        self.max_open = len(self.alive)
        self.max_open_by: Counter[int] = Counter(self.alive.values())
        self.max_in_flight = self.in_flight
        self.max_in_flight_by: Counter[int] = Counter(self.in_flight_by)

    def opened(self, conn: _Conn) -> None:
        poller = select.poll()
        fds = {}
        for other in self.alive:
            fd = other.fileno()
            if fd >= 0:
                fds[fd] = other
                poller.register(fd, _GONE)
        for fd, _ in poller.poll(0):
            self.closed(fds[fd])
        self.alive[conn] = conn.origin
        self.accepted += 1
        self.accepted_by[conn.origin] += 1
        self.max_open = max(self.max_open, len(self.alive))
        here = sum(1 for o in self.alive.values() if o == conn.origin)
        self.max_open_by[conn.origin] = max(self.max_open_by[conn.origin], here)

    def closed(self, conn: _Conn) -> None:
        self.alive.pop(conn, None)

    def started(self, origin: int) -> None:
        self.requests += 1
        self.in_flight += 1
        self.in_flight_by[origin] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_by[origin] = max(
            self.max_in_flight_by[origin], self.in_flight_by[origin]
        )

    def finished(self, origin: int) -> None:
        self.in_flight -= 1
        self.in_flight_by[origin] -= 1

    def report(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "accepted_by": dict(self.accepted_by),
            "open_now": len(self.alive),
            "max_open": self.max_open,
            "max_open_by": dict(self.max_open_by),
            "requests": self.requests,
            "max_in_flight": self.max_in_flight,
            "max_in_flight_by": dict(self.max_in_flight_by),
        }


class _Conn(asyncio.Protocol):
    def __init__(self, counts: _Counts, origin: int) -> None:
        self.counts = counts
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.busy = False

    def fileno(self) -> int:
        sock = self.transport.get_extra_info("socket") if self.transport else None
        return -1 if sock is None else int(sock.fileno())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.counts.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.counts.closed(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        if self.busy or b"\r\n\r\n" not in self.buffer:
            return
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
        delay = float(parse_qs(urlsplit(target).query).get("delay", ["0"])[0])
        self.busy = True
        self.counts.started(self.origin)
        asyncio.get_running_loop().call_later(delay, self._answer)

    def _answer(self) -> None:
        self.counts.finished(self.origin)
        self.busy = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_RESPONSE)
            self._next()


class _Control(asyncio.Protocol):
    def __init__(self, counts: _Counts) -> None:
        self.counts = counts

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        body = json.dumps(self.counts.report()).encode()
        if b"/reset" in data.split(b"\r\n", 1)[0]:
            self.counts.reset()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.transport.close()


async def _serve(n: int) -> None:
    loop = asyncio.get_running_loop()
    counts = _Counts()
    origins = []
    for i in range(n):
        host = f"127.0.{(i + 1) // 256}.{(i + 1) % 256}"
        server = await loop.create_server(
            lambda i=i: _Conn(counts, i),
            host,
            0,
            backlog=1024,  # type: ignore[misc]
        )
        origins.append([host, server.sockets[0].getsockname()[1]])
    control = await loop.create_server(lambda: _Control(counts), "127.0.0.1", 0)
    print(json.dumps({"control": control.sockets[0].getsockname()[1], "origins": origins}))
    sys.stdout.flush()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done


class Origins:
    """``with Origins(50) as srv:`` N origins in a subprocess; ``srv.url(i, path)``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.proc: subprocess.Popen[str] | None = None
        self.origins: list[tuple[str, int]] = []
        self.control = 0

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.origins", str(self.n)],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.__exit__()
            raise RuntimeError("the origins server did not start")
        info = json.loads(line)
        self.control = int(info["control"])
        self.origins = [(str(h), int(p)) for h, p in info["origins"]]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def url(self, i: int, path: str = "/health") -> str:
        host, port = self.origins[i]
        return f"http://{host}:{port}{path}"

    def stats(self) -> dict[str, Any]:
        return self._get("/stats")

    def reset(self) -> dict[str, Any]:
        return self._get("/reset")

    def _get(self, path: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.control}{path}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        for key in ("accepted_by", "max_open_by", "max_in_flight_by"):
            data[key] = {int(k): v for k, v in data[key].items()}
        return data


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
