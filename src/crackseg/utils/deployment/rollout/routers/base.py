"""The traffic-router interface: send weighted shares of traffic to backends, and say what
the traffic it carried did."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

__all__ = ["Backend", "Served", "TrafficRouter", "TrafficStats"]


@dataclass(frozen=True)
class Backend:
    """One upstream server and its share of traffic (weights are relative, 0 = no traffic).

    A ``backup`` backend gets no share: the router sends it a request only when every
    primary backend failed it (the previous version kept warm behind a new one).
    """

    address: str  # "127.0.0.1:8081"
    weight: int
    label: str = ""  # version or slot, for status and verification
    backup: bool = False


@dataclass(frozen=True)
class TrafficStats:
    """What the router saw of real requests to some backends over a window.

    Every attempt counts against the backend that made it: a request that failed on one
    backend and was retried on another is an error of the first and a success of the second.
    ``errors`` are 5xx answers and upstream failures (refused, reset, timed out).
    """

    requests: int
    errors: int
    window_seconds: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Served(NamedTuple):
    """One upstream attempt the router logged (see :meth:`TrafficRouter.served`)."""

    address: str  # the backend's "host:port"
    at: float  # Unix time the request ended
    error: bool  # a 5xx answer or an upstream failure (refused, reset, timed out)
    ms: float | None  # the backend's response time; None when it gave none (a timeout)
    synthetic: bool  # sent by the rollout's own load (:attr:`TrafficRouter.load_header`)


class TrafficRouter(ABC):
    """Moves real traffic between backends.

    ``apply`` must not return before the new weights are in force (validated, reloaded,
    confirmed); on failure it raises :class:`~...errors.RouterError` and leaves the previous
    configuration serving.
    """

    @abstractmethod
    def apply(self, backends: list[Backend]) -> None:
        """Route traffic to ``backends`` by weight; at least one must have weight > 0."""

    @abstractmethod
    def current(self) -> list[Backend]:
        """The backends last applied successfully."""

    @property
    def public_url(self) -> str | None:
        """Where clients send traffic, when the router serves it itself."""
        return None

    @property
    def measures_traffic(self) -> bool:
        """Whether :meth:`measure` sees real requests (the gates then judge on it)."""
        return False

    @property
    def supports_backup(self) -> bool:
        """Whether ``Backend(backup=True)`` is honoured (else backups must not be sent)."""
        return False

    def measure(self, addresses: Sequence[str], since: float) -> TrafficStats | None:
        """Requests to ``addresses`` (``host:port``) since ``since`` (Unix time), or None when
        this router cannot see traffic. Raises :class:`~...errors.RouterError` when it should
        see it but the measurement failed (a failed measurement is never "no traffic")."""
        return None

    @property
    def logs_requests(self) -> bool:
        """Whether :meth:`served` gives every request, one by one (the gates then judge the
        new version against the stable one on the requests both served at the same time)."""
        return False

    @property
    def load_header(self) -> tuple[str, str] | None:
        """The header (name, value) that marks a request as the rollout's synthetic load, so
        that :meth:`served` tells it from user traffic; None when the router cannot."""
        return None

    def served(self, addresses: Sequence[str], cursor: int) -> tuple[int, list[Served]]:
        """The attempts to ``addresses`` logged after ``cursor`` (0: all the router still
        holds), oldest first, and the cursor to pass next time, so that each attempt is read
        exactly once whatever the log's buffering. Raises :class:`~...errors.RouterError` when
        the log cannot be read or no longer holds everything after ``cursor``; routers that
        do not log requests (:attr:`logs_requests` False) raise :class:`NotImplementedError`."""
        raise NotImplementedError(f"{type(self).__name__} does not log requests one by one")

    def close(self) -> None:
        """Release what the router started."""
