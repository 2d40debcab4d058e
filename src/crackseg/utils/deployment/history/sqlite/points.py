"""The range charts' read of :class:`~.store.SQLiteStore`, as a mixin (the store's module is
at its size limit): a deployment's health rows as three columns, no result object per row."""

from __future__ import annotations

from typing import Any, Protocol, cast

from crackseg.utils.deployment.history.sqlite import schema as sql

__all__ = ["HealthPoints"]


class _Selects(Protocol):
    def _select(
        self,
        table: str,
        columns: str,
        deployment_id: str | None,
        since: float | None,
        until: float | None,
        limit: int | None,
    ) -> list[tuple[Any, ...]]: ...


class HealthPoints:
    """Adds :meth:`health_points` to a store with ``_select`` (see :class:`~.store.SQLiteStore`)."""

    def health_points(
        self, deployment_id: str, since: float | None = None, until: float | None = None
    ) -> tuple[list[float], list[float], list[str]]:
        """Timestamps, response times and statuses of the health rows in [since, until],
        oldest first (the covering index ``health_key_ts_points`` answers it alone)."""
        cols = "ts, response_time_ms, status"
        rows = cast(_Selects, self)._select("health", cols, deployment_id, since, until, None)
        return sql.health_points_from_rows(rows)
