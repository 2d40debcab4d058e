"""The nginx router's own measurement: its access log, read incrementally, per backend.

nginx writes one line per proxied request in a format this module owns (:data:`LOG_FORMAT`):
the request's wall time and, for every upstream attempt, the backend, its status and its
response time, and whether the request was the rollout's synthetic load (a header carrying the
router's token, which nginx maps to ``load``; anything else is ``user``).
:class:`AccessLogReader` follows the file by offset (no re-reading), survives
a reopen (a rotated file is read to its end before the new one; a truncated one is read
from the start) and keeps a bounded window of attempts per backend, from which
:meth:`AccessLogReader.measure` gives request and error counts and latency percentiles, and
:meth:`AccessLogReader.served` every attempt after a cursor (the gates' per-arm batches).
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from crackseg.utils.deployment.errors import RouterError
from crackseg.utils.deployment.rollout.routers.base import Served, TrafficStats

__all__ = [
    "LOAD_HEADER",
    "LOG_FORMAT",
    "LOG_FORMAT_NAME",
    "AccessLogReader",
    "Attempt",
    "load_token",
    "parse_line",
    "stratum_map",
]

logger = logging.getLogger("crackseg.utils.deployment.rollout.routers.nginx")

LOG_FORMAT_NAME = "crackseg_router"
# Only nginx-made values, so "|" cannot appear inside a field ($crackseg_stratum is mapped
# from the load header to "user" or "load", see stratum_map).
LOG_FORMAT = (
    "$msec|$upstream_addr|$upstream_status|$upstream_response_time|$status|$crackseg_stratum"
)
LOAD_HEADER = "X-Crackseg-Load"
_TOKEN = re.compile(r"^[A-Za-z0-9]{16,128}$")


def stratum_map(token: str) -> str:
    """The nginx ``map`` (http context) that :data:`LOG_FORMAT` needs: a request whose
    :data:`LOAD_HEADER` is ``token`` is logged as ``load``, any other as ``user`` (so a
    client cannot move its requests out of the user stratum without the token)."""
    if not _TOKEN.match(token):
        raise ValueError("the load token must be 16-128 letters or digits")
    header = "$http_" + LOAD_HEADER.lower().replace("-", "_")
    return f'map {header} $crackseg_stratum {{ default user; "{token}" load; }}'


_CHUNK = 1 << 20
_MAX_LINE = 8192

Attempt = tuple[str, bool, float | None]  # backend, error, response time in ms
_Entry = tuple[int, float, bool, float | None, bool]  # seq, time, error, ms, synthetic


def parse_line(line: str) -> tuple[float, list[Attempt], bool] | None:
    """One access-log line: its time, its upstream attempts and whether it was synthetic
    load; None if it is not ours. Lines of the earlier format (no stratum: an nginx adopted
    before its first reload) are user traffic.

    >>> parse_line("1700000000.123|10.0.0.1:80, 10.0.0.2:80|502, 200|0.001, 0.004|200|load")
    (1700000000.123, [('10.0.0.1:80', True, 1.0), ('10.0.0.2:80', False, 4.0)], True)
    """
    fields = line.rstrip("\n").split("|")
    if len(fields) not in (5, 6):
        return None
    synthetic = len(fields) == 6 and fields[5] == "load"
    try:
        ts = float(fields[0])
    except ValueError:
        return None
    # Attempts are separated by ", "; " : " separates internal redirects' groups.
    addrs, statuses, times = (f.replace(" : ", ", ").split(", ") for f in fields[1:4])
    attempts: list[Attempt] = []
    for i, addr in enumerate(addrs):
        if ":" not in addr or addr == "-":
            continue  # no upstream (a local location) or the group name (no live server)
        status = statuses[i] if i < len(statuses) else "-"
        raw = times[i] if i < len(times) else "-"
        try:
            ms: float | None = float(raw) * 1000.0
        except ValueError:
            ms = None
        attempts.append((addr, not status.isdigit() or status.startswith("5"), ms))
    return ts, attempts, synthetic


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    k = (len(values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class AccessLogReader:
    """Follows ``path`` and keeps, per backend, its last ``max_attempts`` attempts, and at
    most ``max_total`` in all (about 110 bytes each: 22 MB by default, 200 s at 1,000
    requests/s), dropping the oldest of the least recently seen backend first.

    At most ``max_backends`` backends are kept (the least recently seen is dropped).
    :meth:`poll` reads what was appended since the last call; :meth:`measure` polls first.
    A log that cannot be read raises :class:`RouterError` from both. :meth:`follow` polls
    from a thread every ``interval`` seconds, so that the window stays fresh and, past
    ``max_bytes``, the file is renamed to ``<name>.1`` and ``reopen()`` asks nginx to open
    a new one. Thread-safe.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = 60_000,
        max_backends: int = 256,
        max_total: int = 200_000,
        max_bytes: int = 64 * 1024 * 1024,
        reopen: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.max_attempts = max_attempts
        self.max_backends = max_backends
        self.max_total = max_total
        self._total = 0
        self.max_bytes = max_bytes
        self._reopen = reopen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self._inode: int | None = None
        self._partial = b""
        # per backend: (sequence number, time, error, ms, synthetic), oldest first
        self._by_backend: OrderedDict[str, deque[_Entry]] = OrderedDict()
        self._seq = 0  # attempts read so far: the cursor of :meth:`served`
        self._lost: OrderedDict[str, int] = OrderedDict()  # newest dropped sequence number
        self.lines = 0
        self.bad_lines = 0

    def skip_to_end(self) -> None:
        """Ignore what the log holds now (an adopted nginx's past traffic)."""
        with self._lock:
            self._open(at_end=True)

    def poll(self) -> int:
        """Read the lines appended since the last call; returns how many."""
        with self._lock:
            return self._poll()

    def measure(self, addresses: Sequence[str], since: float) -> TrafficStats:
        """Attempts to ``addresses`` logged at or after ``since`` (Unix time)."""
        with self._lock:
            self._poll()
            picked = [
                entry
                for addr in addresses
                for entry in self._by_backend.get(addr, ())
                if entry[1] >= since
            ]
        times = sorted(e[3] for e in picked if e[3] is not None)
        return TrafficStats(
            requests=len(picked),
            errors=sum(1 for e in picked if e[2]),
            window_seconds=max(0.0, time.time() - since),
            p50_ms=_percentile(times, 0.5),
            p95_ms=_percentile(times, 0.95),
            p99_ms=_percentile(times, 0.99),
        )

    def served(self, addresses: Sequence[str], cursor: int) -> tuple[int, list[Served]]:
        """Attempts to ``addresses`` read after ``cursor`` (see
        :meth:`~.base.TrafficRouter.served`), oldest first, and the next cursor. Raises
        :class:`RouterError` when the window dropped one of them (a gap is never read as
        "no request")."""
        with self._lock:
            self._poll()
            out: list[Served] = []
            for addr in dict.fromkeys(addresses):
                if self._lost.get(addr, 0) > cursor:
                    raise RouterError(
                        f"the access-log window no longer holds every request to {addr} "
                        f"since the last look; look more often or raise max_attempts"
                    )
                window = self._by_backend.get(addr, ())
                for k in range(len(window) - 1, -1, -1):
                    seq, ts, err, ms, synthetic = window[k]
                    if seq <= cursor:
                        break
                    out.append(Served(addr, ts, err, ms, synthetic))
            seqs = self._seq
        out.sort(key=lambda r: r.at)
        return seqs, out

    def follow(self, interval: float = 0.5) -> None:
        self._thread = threading.Thread(
            target=self._follow, args=(interval,), name="nginx-log", daemon=True
        )
        self._thread.start()

    def rotate(self) -> None:
        """Rename the file away once it passes ``max_bytes`` and have nginx reopen it."""
        try:
            if self.path.stat().st_size <= self.max_bytes or self._reopen is None:
                return
        except OSError:
            return
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._reopen()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def _follow(self, interval: float) -> None:
        failing = False
        while not self._stop.wait(interval):
            try:
                self.poll()
                self.rotate()
                failing = False
            except (RouterError, OSError) as exc:
                if not failing:
                    logger.warning("reading the nginx access log failed: %s", exc)
                failing = True

    # -- internals --------------------------------------------------------------------------
    def _open(self, *, at_end: bool = False) -> bool:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
        except FileNotFoundError:
            return False  # nginx has not written a line yet
        except OSError as exc:
            raise RouterError(f"cannot read the nginx access log {self.path}: {exc}") from exc
        self._fh, self._inode, self._partial = fh, os.fstat(fh.fileno()).st_ino, b""
        if at_end:
            fh.seek(0, os.SEEK_END)
        return True

    def _poll(self) -> int:
        if self._fh is None and not self._open():
            return 0
        assert self._fh is not None
        n = self._drain(self._fh)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return n  # rotated away; nginx reopens it on USR1, or it comes back on the next write
        except OSError as exc:
            raise RouterError(f"cannot stat the nginx access log {self.path}: {exc}") from exc
        if st.st_ino != self._inode:
            # Reopened (rotation): the old file was read to its end above; follow the new one.
            if self._open():
                n += self._drain(self._fh)
        elif st.st_size < self._fh.tell():
            self._fh.seek(0)  # truncated in place
            self._partial = b""
            n += self._drain(self._fh)
        return n

    def _drain(self, fh: IO[bytes]) -> int:
        n = 0
        while True:
            try:
                chunk = fh.read(_CHUNK)
            except OSError as exc:
                raise RouterError(f"cannot read the nginx access log {self.path}: {exc}") from exc
            if not chunk:
                return n
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            if len(self._partial) > _MAX_LINE:
                self._partial = b""  # not one of our lines: drop it rather than grow
            for raw in lines:
                self._add(raw)
                n += 1

    def _add(self, raw: bytes) -> None:
        self.lines += 1
        parsed = parse_line(raw.decode("ascii", "replace"))
        if parsed is None:
            self.bad_lines += 1
            return
        ts, attempts, synthetic = parsed
        for addr, err, ms in attempts:
            self._seq += 1
            window = self._by_backend.get(addr)
            if window is None:
                window = self._by_backend[addr] = deque(maxlen=self.max_attempts)
                while len(self._by_backend) > self.max_backends:
                    gone, dropped = self._by_backend.popitem(last=False)
                    self._total -= len(dropped)
                    if dropped:
                        self._lose(gone, dropped[-1][0])
            else:
                self._by_backend.move_to_end(addr)
            if len(window) < self.max_attempts:
                self._total += 1
            else:
                self._lose(addr, window[0][0])  # the deque drops its oldest itself
            window.append((self._seq, ts, err, ms, synthetic))
            while self._total > self.max_total:
                name, oldest = next(iter(self._by_backend.items()))
                if oldest:
                    self._lose(name, oldest.popleft()[0])
                    self._total -= 1
                else:
                    self._by_backend.popitem(last=False)

    def _lose(self, addr: str, seq: int) -> None:
        """Remember the newest attempt of ``addr`` dropped from the window (bounded)."""
        self._lost[addr] = seq
        self._lost.move_to_end(addr)
        while len(self._lost) > 2 * self.max_backends:
            self._lost.popitem(last=False)


def load_token(path: Path) -> str:
    """The router's load token, kept in its workdir (0600) so that an adopted nginx and a
    new router object agree on it."""
    try:
        token = path.read_text().strip()
        if token.isalnum() and len(token) >= 16:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token
