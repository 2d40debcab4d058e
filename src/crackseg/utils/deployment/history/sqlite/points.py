"""The range charts' reads of :class:`~.store.SQLiteStore`, as a mixin (the store's module is
at its size limit): a deployment's health rows as three columns, no result object per row,
and whole buckets from the health rollups (:mod:`.rollups`)."""

from __future__ import annotations

from typing import Any, Protocol, cast

from crackseg.utils.deployment.history.sqlite import rollups
from crackseg.utils.deployment.history.sqlite import schema as sql

__all__ = ["HealthPoints"]


class _Selects(Protocol):
    _readers: sql.ReaderPool

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
    """Adds :meth:`health_points` and :meth:`health_buckets` to a store with ``_select`` and
    ``_readers`` (see :class:`~.store.SQLiteStore`)."""

    def health_points(
        self, deployment_id: str, since: float | None = None, until: float | None = None
    ) -> tuple[list[float], list[float], list[str]]:
        """Timestamps, response times and statuses of the health rows in [since, until],
        oldest first (the covering index ``health_key_ts_points`` answers it alone)."""
        cols = "ts, response_time_ms, status"
        rows = cast(_Selects, self)._select("health", cols, deployment_id, since, until, None)
        return sql.health_points_from_rows(rows)

    def health_buckets(
        self, deployment_id: str, since: float, width: float, count: int
    ) -> dict[str, list[Any]] | None:
        """``count`` buckets of ``width`` seconds from ``since``, the columns the range
        endpoint's ``downsample`` makes, from the rollups; None unless they are whole rollup
        buckets (:data:`.rollups.WIDTH`). Percentiles are within ~4% of the measured ones."""
        readers = cast(_Selects, self)._readers
        return rollups.buckets(readers.query, deployment_id, since, width, count)
