"""The traffic-router interface: send weighted shares of traffic to backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["Backend", "TrafficRouter"]


@dataclass(frozen=True)
class Backend:
    """One upstream server and its share of traffic (weights are relative, 0 = no traffic)."""

    address: str  # "127.0.0.1:8081"
    weight: int
    label: str = ""  # version or slot, for status and verification


class TrafficRouter(ABC):
    """Moves real traffic between backends.

    ``apply`` must not return before the new weights are in force (validated, reloaded,
    confirmed); on failure it raises :class:`~..errors.RouterError` and leaves the previous
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

    def close(self) -> None:
        """Release what the router started."""
