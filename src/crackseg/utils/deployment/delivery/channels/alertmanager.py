"""Alerts pushed to a Prometheus Alertmanager (``POST <url>/api/v2/alerts``).

Alertmanager does the rest: grouping, deduplication, routing, inhibition, silences. An
alert is identified by its labels (``alertname`` = alert type, ``deployment_id``,
``severity``, ``monitor``); several monitors sending the same labels share one alert.

Alertmanager forgets an alert whose ``endsAt`` has passed, so, like Prometheus, firing
alerts carry ``endsAt = now + 4 * resend_interval`` and a background thread re-sends every
firing alert each ``resend_interval`` (keep it below Alertmanager's ``resolve_timeout``,
5 min by default). If this monitor dies the alert expires on its own a few intervals
later. A resolved notice is sent with ``endsAt`` = the time it resolved and stops the
re-sending.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.options import (
    Facts,
    check_url,
    host_of,
    http_post,
    iso8601,
    opt_num,
    reject_unknown,
    scrub,
    take_secret,
)
from crackseg.utils.deployment.errors import ConfigError, NotifierError, require_positive
from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["AlertmanagerHandler"]

logger = logging.getLogger("crackseg.utils.deployment.alerts")


class AlertmanagerHandler(AlertHandler):
    """Pushes alerts to Alertmanager and keeps firing ones alive until they resolve.

    ``resend_stats()`` reports the background re-sends (they bypass the dispatcher's
    retries: the next interval is the retry).

    >>> h = AlertmanagerHandler("http://127.0.0.1:9093", resend_interval=30)
    >>> h.name
    'alertmanager:127.0.0.1:9093'
    >>> h.close()
    """

    kind = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        resend_interval: float = 60.0,
        timeout: float = 10.0,
        monitor: str = "crackseg-monitor",
        labels: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        generator_url: str | None = None,
        key: str | None = None,
    ) -> None:
        self._base = check_url(url, "url").rstrip("/")
        self._endpoint = f"{self._base}/api/v2/alerts"
        require_positive("resend_interval", resend_interval)
        require_positive("timeout", timeout)
        self.resend_interval = resend_interval
        self.timeout = timeout
        self.monitor = monitor
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self.generator_url = generator_url
        self.key = key
        self._active: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resent = 0
        self._resend_failed = 0
        self._resend_error: str | None = None

    @classmethod
    def from_config(cls, spec: dict[str, Any], path: str = "handler") -> AlertmanagerHandler:
        """``{"url" | "url_env", "resend_interval", "timeout", "monitor", "labels": {...},
        "headers": {...}, "generator_url", "key"}``."""
        spec = dict(spec)
        url = take_secret(spec, "url", path, required=True)
        allowed = (
            "resend_interval",
            "timeout",
            "monitor",
            "labels",
            "headers",
            "generator_url",
            "key",
        )
        reject_unknown(spec, allowed, path)
        check_url(url, f"{path}.url")
        for field in ("labels", "headers"):
            value = spec.get(field) or {}
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{path}.{field}", "must map names to string values")
        try:
            return cls(
                str(url),
                resend_interval=opt_num(spec, "resend_interval", 60.0, path),
                timeout=opt_num(spec, "timeout", 10.0, path),
                monitor=str(spec.get("monitor", "crackseg-monitor")),
                labels=spec.get("labels"),
                headers=spec.get("headers"),
                generator_url=spec.get("generator_url"),
                key=spec.get("key"),
            )
        except ConfigError as exc:
            field = exc.field if exc.field.startswith(f"{path}.") else f"{path}.{exc.field}"
            raise ConfigError(field, exc.problem) from None

    @property
    def name(self) -> str:
        return f"alertmanager:{host_of(self._base)}"

    def secrets(self) -> tuple[str, ...]:
        return (self._base, *(v for k, v in self._headers.items() if k != "Content-Type"))

    def alert(
        self, alert_type: str, metadata: DeploymentMetadata, kwargs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One alert in Alertmanager's v2 API shape (``endsAt`` set for resolved only)."""
        f = Facts(alert_type, metadata.deployment_id, kwargs)
        labels = {
            **self.labels,
            "alertname": alert_type,
            "deployment_id": f.deployment_id,
            "severity": f.severity,
            "monitor": self.monitor,
        }
        annotations = {"summary": f"{alert_type} on {f.deployment_id}"}
        if f.message:
            annotations["description"] = f.message
        if f.value is not None:
            annotations["value"] = str(f.value)
        if f.threshold is not None:
            annotations["threshold"] = str(f.threshold)
        body: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": iso8601(f.started_at or f.timestamp),
        }
        if f.resolved:
            body["endsAt"] = iso8601(f.timestamp)
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return body

    def send_alert(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        body = self.alert(alert_type, metadata, kwargs)
        ident = (body["labels"]["deployment_id"], alert_type)
        with self._lock:
            if "endsAt" in body:
                previous = self._active.pop(ident, None)
                if previous is not None:
                    # Same labels as the firing alert, or Alertmanager would see another alert.
                    body["labels"], body["startsAt"] = previous["labels"], previous["startsAt"]
            else:
                self._active[ident] = body
                self._ensure_thread()
        self._post([self._stamped(body)])

    def _stamped(self, alert: dict[str, Any]) -> dict[str, Any]:
        if "endsAt" in alert:
            return alert
        return {**alert, "endsAt": iso8601(time.time() + 4 * self.resend_interval)}

    def _post(self, alerts: list[dict[str, Any]]) -> None:
        body = json.dumps(alerts, separators=(",", ":")).encode()
        http_post(self._endpoint, body, self._headers, self.timeout, what="alertmanager")

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(
                target=self._resend_loop, name=f"alertmanager-resend-{self.key or ''}", daemon=True
            )
            self._thread.start()

    def _resend_loop(self) -> None:
        while not self._stop.wait(self.resend_interval):
            with self._lock:
                alerts = [self._stamped(a) for a in self._active.values()]
            if not alerts:
                continue
            try:
                self._post(alerts)
                self._resent += len(alerts)
            except NotifierError as exc:
                self._resend_failed += 1
                self._resend_error = scrub(str(exc), self.secrets())
                logger.warning(
                    "alert handler %s: re-send failed: %s", self.name, self._resend_error
                )

    def active(self) -> list[dict[str, Any]]:
        """The firing alerts being kept alive."""
        with self._lock:
            return [dict(a) for a in self._active.values()]

    def extra_stats(self) -> dict[str, Any]:
        return {"resend": self.resend_stats()}

    def resend_stats(self) -> dict[str, Any]:
        """``{"active", "resent", "failed", "last_error"}`` of the re-send loop."""
        with self._lock:
            active = len(self._active)
        return {
            "active": active,
            "resent": self._resent,
            "failed": self._resend_failed,
            "last_error": self._resend_error,
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1.0)
