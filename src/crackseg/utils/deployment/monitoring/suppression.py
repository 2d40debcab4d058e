"""Noise control: silences and maintenance windows (flapping lives in :mod:`.flapping`).

:class:`SilenceRegistry` and :class:`MaintenanceSchedule` are suppressors: called as
``fn(deployment_id, alert_type, wall_time)`` they return a reason when the notification
must not go out, else None, so they plug into ``monitor.add_suppressor``. The monitor
still records the alert; only the notification is held back.

>>> silences = SilenceRegistry()
>>> sid = silences.add(deployment_id="api", duration_s=600, comment="deploying", now=0)
>>> silences("api", "high_cpu_usage", 10.0).startswith("silenced")
True
>>> silences("web", "high_cpu_usage", 10.0) is None
True
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from datetime import time as dtime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.files import atomic_write

try:
    import fcntl
except ImportError:  # not POSIX: one process at a time, then
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("crackseg.utils.deployment.alerts")

__all__ = ["MaintenanceSchedule", "MaintenanceWindow", "Silence", "SilenceRegistry"]


def _matches(pattern: str | None, value: str) -> bool:
    # None matches everything; shell wildcards (canary-*) match a family of ids.
    return pattern is None or fnmatchcase(value, pattern)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Silence:
    """Hold back notifications of a deployment and/or alert type (``None`` = any; globs
    allowed) from ``starts_at`` to ``ends_at`` (wall-clock seconds)."""

    id: str
    deployment_id: str | None
    alert_type: str | None
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str | None = None

    def matches(self, deployment_id: str, alert_type: str, now: float) -> bool:
        return (
            self.starts_at <= now < self.ends_at
            and _matches(self.deployment_id, deployment_id)
            and _matches(self.alert_type, alert_type)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SilenceRegistry:
    """Silences, thread-safe, optionally kept in a JSON file (rewritten atomically).

    Several processes may share the file (the service and the command line): writers take
    a lock file, and every reader picks up a changed file before answering. Expired
    silences are dropped on the next change.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._silences: dict[str, Silence] = {}
        self._seen: tuple[int, int, int] | None = None  # the file version held in memory
        try:
            self._refresh()
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                str(self.path), f"cannot read silences ({exc}); fix or delete the file"
            ) from exc

    def _refresh(self) -> None:
        # Another process (the command line) may have changed the file: cheap to check.
        if self.path is None:
            return
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._silences, self._seen = {}, None
            return
        version = (st.st_mtime_ns, st.st_size, st.st_ino)
        if version == self._seen:
            return
        data = json.loads(self.path.read_text(encoding="utf-8"))
        self._silences = {s.id: s for s in (Silence(**item) for item in data.get("silences", []))}
        self._seen = version

    def _refresh_quietly(self) -> None:
        try:
            self._refresh()
        except (OSError, ValueError, TypeError) as exc:
            # Keep suppressing with what we had rather than fail the alert path.
            logger.warning(
                "silences file %s unreadable, keeping the last good one: %s", self.path, exc
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with self._lock:
            if self.path is None or fcntl is None:
                yield
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one writer across processes
                self._refresh_quietly()
                yield

    def add(
        self,
        deployment_id: str | None = None,
        alert_type: str | None = None,
        duration_s: float = 3600.0,
        comment: str = "",
        *,
        created_by: str | None = None,
        now: float | None = None,
    ) -> str:
        """Silence from ``now`` for ``duration_s`` seconds; returns the silence's id.

        Raises :class:`ConfigError` if ``duration_s`` is not positive.
        """
        if (
            isinstance(duration_s, bool)
            or not isinstance(duration_s, int | float)
            or duration_s <= 0
        ):
            raise ConfigError(
                "duration_s", f"must be a positive number of seconds, got {duration_s!r}"
            )
        start = time.time() if now is None else now
        silence = Silence(uuid.uuid4().hex[:12], deployment_id, alert_type, start,
                          start + float(duration_s), comment, created_by)  # fmt: skip
        with self._writing():
            self._prune(start)
            self._silences[silence.id] = silence
            self._save()
        return silence.id

    def remove(self, silence_id: str) -> bool:
        """End a silence now; False if there is no such silence."""
        with self._writing():
            found = self._silences.pop(silence_id, None) is not None
            if found:
                self._save()
        return found

    def list(self, *, include_expired: bool = False, now: float | None = None) -> list[Silence]:
        """Silences not yet ended (or all), soonest ending first."""
        now = time.time() if now is None else now
        with self._lock:
            self._refresh_quietly()
            items = [s for s in self._silences.values() if include_expired or s.ends_at > now]
        return sorted(items, key=lambda s: s.ends_at)

    def __call__(self, deployment_id: str, alert_type: str, now: float) -> str | None:
        with self._lock:
            self._refresh_quietly()
            hit = next(
                (s for s in self._silences.values() if s.matches(deployment_id, alert_type, now)),
                None,
            )
        if hit is None:
            return None
        why = f": {hit.comment}" if hit.comment else ""
        return f"silenced by {hit.id} until {_iso(hit.ends_at)}{why}"

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self._silences.items() if s.ends_at <= now]:
            del self._silences[sid]

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps({"silences": [s.to_dict() for s in self._silences.values()]}, indent=1)
        st = atomic_write(self.path, data).stat()
        self._seen = (st.st_mtime_ns, st.st_size, st.st_ino)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_day(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    text = str(value).strip().lower()[:3]
    if text in _DAYS:
        return _DAYS.index(text)
    raise ConfigError(field, f"{value!r} is not a weekday; use mon..sun or 0 (Monday)..6")


@dataclass(frozen=True)
class MaintenanceWindow:
    """A time when some deployments (``deployments``: ids or globs; empty = all) don't alert.

    Weekly: ``days`` (0 = Monday) with ``start``-``end`` local times in ``timezone``; an
    ``end`` at or before ``start`` runs past midnight into the next day. One-off:
    ``starts_at``-``ends_at`` (wall-clock seconds) instead of days and times.

    >>> w = MaintenanceWindow.from_config({"name": "nightly", "start": "22:00", "end": "02:00",
    ...                                    "days": ["sat"], "timezone": "UTC"})
    >>> w.active(datetime(2026, 11, 29, 1, 30, tzinfo=UTC).timestamp())  # Sunday 01:30
    True
    """

    name: str
    deployments: tuple[str, ...] = ()
    days: frozenset[int] = frozenset(range(7))
    start: dtime | None = None
    end: dtime | None = None
    timezone: str = "UTC"
    starts_at: float | None = None
    ends_at: float | None = None

    def applies_to(self, deployment_id: str) -> bool:
        return not self.deployments or any(_matches(p, deployment_id) for p in self.deployments)

    def active(self, now: float) -> bool:
        """Whether the window is open at wall-clock ``now``."""
        if self.starts_at is not None and self.ends_at is not None:
            return self.starts_at <= now < self.ends_at
        if self.start is None or self.end is None:
            return False
        local = datetime.fromtimestamp(now, ZoneInfo(self.timezone))
        t, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= t < self.end
        # Past midnight: the part before midnight belongs to today's window, the rest to
        # the window that opened yesterday.
        return (day in self.days and t >= self.start) or (
            (day - 1) % 7 in self.days and t < self.end
        )

    @classmethod
    def from_config(cls, spec: dict[str, Any], path: str = "maintenance") -> MaintenanceWindow:
        """``{"name", "deployments": [...], "days": ["mon", ...], "start": "HH:MM",
        "end": "HH:MM", "timezone": "Europe/Berlin"}`` or, one-off, ``{"name",
        "deployments", "start": "2026-12-01T22:00", "end": "2026-12-02T01:00",
        "timezone"}`` (ISO date-times; without an offset they are in ``timezone``)."""
        allowed = {"name", "deployments", "days", "start", "end", "timezone"}
        for key in spec:
            if key not in allowed:
                raise ConfigError(
                    f"{path}.{key}", f"unknown option; valid: {', '.join(sorted(allowed))}"
                )
        name = str(spec.get("name") or path)
        tzname = str(spec.get("timezone", "UTC"))
        try:
            tz = ZoneInfo(tzname)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{path}.timezone",
                f"unknown time zone {tzname!r}; use an IANA name like Europe/Berlin",
            ) from None
        deployments = spec.get("deployments") or ()
        if isinstance(deployments, str):
            deployments = (deployments,)
        deployments = tuple(str(d) for d in deployments)
        raw_start, raw_end = spec.get("start"), spec.get("end")
        if raw_start is None or raw_end is None:
            raise ConfigError(
                f"{path}.{'start' if raw_start is None else 'end'}",
                "is required (HH:MM, or an ISO date-time for a one-off window)",
            )
        if isinstance(raw_start, datetime) or "T" in str(raw_start) or "-" in str(raw_start):
            if "days" in spec:
                raise ConfigError(f"{path}.days", "a one-off window (ISO date-times) takes no days")
            s, e = (
                _parse_dt(v, tz, f"{path}.{k}") for k, v in (("start", raw_start), ("end", raw_end))
            )
            if e <= s:
                raise ConfigError(f"{path}.end", "must be after start")
            return cls(name, deployments, timezone=tzname, starts_at=s, ends_at=e)
        start, end = _parse_time(raw_start, f"{path}.start"), _parse_time(raw_end, f"{path}.end")
        raw_days = spec.get("days", list(range(7)))
        if isinstance(raw_days, str):
            raw_days = [raw_days]
        days = frozenset(_parse_day(d, f"{path}.days") for d in raw_days)
        if not days:
            raise ConfigError(
                f"{path}.days", "give at least one day, or leave it out for every day"
            )
        return cls(name, deployments, days, start, end, tzname)


def _parse_time(value: Any, field: str) -> dtime:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 22:00 as the base-60 number 1320.
        return dtime(value // 60, value % 60)
    try:
        return dtime.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(field, f"{value!r} is not a time of day; use HH:MM") from None


def _parse_dt(value: Any, tz: ZoneInfo, field: str) -> float:
    if isinstance(value, datetime):  # YAML already parsed it
        return (value if value.tzinfo else value.replace(tzinfo=tz)).timestamp()
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            field, f"{value!r} is not an ISO date-time like 2026-12-01T22:00"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).timestamp()


class MaintenanceSchedule:
    """A suppressor over maintenance windows: a reason while one covers the deployment."""

    def __init__(self, windows: Iterable[MaintenanceWindow] = ()) -> None:
        self.windows = list(windows)

    @classmethod
    def from_config(
        cls, specs: list[dict[str, Any]], path: str = "maintenance"
    ) -> MaintenanceSchedule:
        return cls(MaintenanceWindow.from_config(s, f"{path}[{i}]") for i, s in enumerate(specs))

    def active_windows(self, deployment_id: str, now: float) -> list[MaintenanceWindow]:
        return [w for w in self.windows if w.applies_to(deployment_id) and w.active(now)]

    def __call__(self, deployment_id: str, alert_type: str, now: float) -> str | None:
        hits = self.active_windows(deployment_id, now)
        return f"maintenance window {hits[0].name!r}" if hits else None
