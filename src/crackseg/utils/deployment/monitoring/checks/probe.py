"""One deployment's HTTP check in flight on the task-free path, reused for each next one.

Nothing per check for the GC to promote (see ``FastClient.start``): the probe carries the
check's target, its start and deadline, and hands the result to ``done`` on the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from crackseg.utils.deployment.models import HealthCheckResult
from crackseg.utils.deployment.monitoring.checks._fastclient import Exchange, FastClient, Target
from crackseg.utils.deployment.monitoring.checks._fastconn import FastResponse
from crackseg.utils.deployment.monitoring.checks.outcome import (
    answer,
    failed,
    is_redirect,
    settled,
)
from crackseg.utils.deployment.monitoring.checks.redirects import follow
from crackseg.utils.deployment.monitoring.checks.request import RequestPolicy

__all__ = ["Probe"]


class Probe(Exchange):
    """A reusable carrier of one check at a time (:meth:`launch`), answered into ``done``."""

    __slots__ = ("busy", "done_fn", "fast", "policy", "start", "target", "timeout")

    def __init__(self, policy: RequestPolicy, done: Callable[[HealthCheckResult], None]) -> None:
        super().__init__()
        self.policy = policy
        self.done_fn = done
        self.busy = False
        self.fast: FastClient | None = None
        self.target: Target | None = None
        self.timeout = 0.0
        self.start = 0.0

    def launch(self, fast: FastClient, target: Target, timeout: float) -> bool:
        """Start a check of ``target`` on ``fast`` if a connection is idle there; whether it
        started. False too while this probe's check still runs on that client."""
        if self.busy and self.fast is fast:
            return False  # its check still runs here (busy on an earlier loop: that one ended)
        self.fast, self.target, self.timeout = fast, target, timeout
        self.start = time.monotonic()
        policy = self.policy
        self.busy = fast.start(target.host, target.port, target.request, policy.body_bound,
                               fast.loop.time() + timeout, policy.tls(target), self)  # fmt: skip
        return self.busy

    def answered(self, outcome: FastResponse | BaseException) -> None:
        target, start, fast = self.target, self.start, self.fast
        assert target is not None and fast is not None
        if isinstance(outcome, BaseException):
            self._done(failed(outcome, self.timeout, target.host, start, 0, self.policy.plan))
        elif is_redirect(outcome) and self.policy.follow_redirects:
            task = asyncio.get_running_loop().create_task(
                follow(self.policy, fast, target, outcome, start, self.deadline, self.timeout)
            )
            task.add_done_callback(lambda t: self._done(settled(t, start)))
        else:
            self._done(answer(outcome, start, 0, self.policy.plan))

    def _done(self, result: HealthCheckResult) -> None:
        self.busy = False
        self.target = None
        self.done_fn(result)
