"""The task-free check path: the interface a checker offers the monitor's engine to start a
check without an asyncio task (and to be trusted to bound its own time).

Declared here, beside :class:`~.base.HealthChecker` and apart from it: a custom checker
implements the ABC only; the default HTTP checker implements both. The engine starts
checks on this path when the checker is a :class:`TaskFreeChecker` whose
:meth:`~TaskFreeChecker.task_free` is true, and falls back to ``check_health_async`` in a
task otherwise (and whenever :meth:`~TaskFreeChecker.start_check` declines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks.plan import CheckPlan

__all__ = ["TaskFreeChecker", "task_free"]

_P = TypeVar("_P")


@runtime_checkable
class TaskFreeChecker(Protocol[_P]):
    """A checker whose checks can start without a task, carried by a reusable probe."""

    def task_free(self) -> bool:
        """Whether :meth:`start_check` gives exactly what ``check_health_async`` would, and
        every check bounds its own time (no outer timer needed). False, for instance, when
        a subclass overrides ``check_health_async``: its override must run."""

    def probe(
        self,
        done: Callable[[HealthCheckResult], None],
        url: str | None = None,
        plan: CheckPlan | None = None,
    ) -> _P:
        """A reusable carrier of one deployment's checks, whose results go to ``done`` (on
        the loop); with ``url`` the URL is parsed now, with the caller's objects; with
        ``plan``, its checks send and judge that deployment's own check."""

    def start_check(self, probe: _P, url: str, timeout: float) -> bool:
        """Start a check of ``url`` on the running loop carried by ``probe``; False when it
        cannot start so (then await ``check_health_async``). ``done`` gets the result."""


def task_free(checker: object) -> TaskFreeChecker[object] | None:
    """``checker`` as a :class:`TaskFreeChecker` if its checks may take that path, else None."""
    if isinstance(checker, TaskFreeChecker) and checker.task_free():
        return checker
    return None
