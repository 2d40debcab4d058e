"""What each environment serves: its releases, and old slots kept alive for instant rollback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from crackseg.utils.deployment.rollout.context import Release
from crackseg.utils.deployment.rollout.routers.base import TrafficRouter
from crackseg.utils.deployment.rollout.targets.base import Instance

__all__ = ["MAX_RELEASES", "BeforeStop", "Environment", "drop_backups"]


logger = logging.getLogger("crackseg.utils.deployment.orchestration")

MAX_RELEASES = 20

BeforeStop = Callable[[list[Instance]], None]


@dataclass
class Environment:
    """Releases of one environment, oldest first: ``current`` serves, ``previous`` is the
    rollback target. ``lock`` allows one deployment at a time. Thread-safe."""

    name: str
    releases: list[Release] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _standby: dict[str, tuple[threading.Timer, Release, list[Instance], BeforeStop | None]] = field(
        default_factory=dict
    )
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def current(self) -> Release | None:
        with self._guard:
            return self.releases[-1] if self.releases else None

    @property
    def previous(self) -> Release | None:
        with self._guard:
            return self.releases[-2] if len(self.releases) > 1 else None

    def push(self, release: Release) -> None:
        with self._guard:
            self.releases.append(release)
            del self.releases[:-MAX_RELEASES]

    def pop(self) -> Release | None:
        with self._guard:
            return self.releases.pop() if self.releases else None

    def keep_standby(
        self,
        release: Release,
        instances: list[Instance],
        seconds: float,
        grace: float,
        before_stop: BeforeStop | None = None,
    ) -> None:
        """Stop ``instances`` of ``release`` after ``seconds`` unless :meth:`claim_standby`
        takes them; ``before_stop(instances)`` runs first (take them out of the router)."""
        timer = threading.Timer(seconds, self._stop_standby, (release.deployment_id, grace))
        timer.daemon = True
        with self._guard:
            self._standby[release.deployment_id] = (timer, release, instances, before_stop)
        timer.start()

    def claim_standby(self, release: Release) -> None:
        """Keep a kept-alive release running (a rollback is about to use it)."""
        with self._guard:
            kept = self._standby.pop(release.deployment_id, None)
        if kept is not None:
            kept[0].cancel()

    def release_standby(self, grace: float) -> None:
        """Stop every kept-alive old slot now (a new deployment supersedes them)."""
        with self._guard:
            ids = list(self._standby)
        for deployment_id in ids:
            self._stop_standby(deployment_id, grace)

    def _stop_standby(self, deployment_id: str, grace: float) -> None:
        with self._guard:
            kept = self._standby.pop(deployment_id, None)
            if kept is None:
                return
            timer, release, instances, before_stop = kept
            # From now on a rollback must not count on these: they are going away.
            release.instances = [i for i in release.instances if i not in instances]
        timer.cancel()
        if before_stop is not None:
            try:
                before_stop(instances)
            except Exception:
                logger.exception("could not take the old slot out of the router")
        for inst in instances:
            try:
                release.launcher.stop(inst, grace)
            except Exception:
                logger.exception("could not stop %s", inst.instance_id)


def drop_backups(router: TrafficRouter, instances: list[Instance]) -> None:
    """Take kept-warm old ``instances`` out of ``router`` (where they are backups) before
    they stop."""
    gone = {i.address for i in instances}
    current = router.current()
    keep = [b for b in current if not (b.backup and b.address in gone)]
    if len(keep) != len(current) and keep:
        router.apply(keep)
