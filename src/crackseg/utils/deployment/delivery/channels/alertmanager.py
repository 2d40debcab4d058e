"""Alerts pushed to a Prometheus Alertmanager (``POST <url>/api/v2/alerts``).

Alertmanager does the rest: grouping, deduplication, routing, inhibition, silences. An
alert is identified by its labels (``alertname`` = alert type, ``deployment_id``,
``severity``, ``monitor``); several monitors sending the same labels share one alert.
``monitor`` names the configuration the monitors share, not one process, so a pair of
monitors yields one alert; which process sent it is the ``monitor_instance`` annotation
(annotations are not part of an alert's identity).

Given several URLs (the peers of an Alertmanager cluster) every alert goes to each of
them, as Prometheus does: the cluster's gossiped notification log makes the receiver see
it once. A send succeeds when at least one peer took it; a peer that missed it gets it
again with the next re-send.

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
import os
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crackseg.utils.deployment.delivery.base import AlertHandler
from crackseg.utils.deployment.delivery.handler_options import (
    Duration,
    HandlerOptions,
    header_problems,
    secret_problems,
    secret_value,
    url_problems,
)
from crackseg.utils.deployment.delivery.options import (
    Facts,
    check_url,
    host_of,
    http_post,
    iso8601,
    scrub,
)
from crackseg.utils.deployment.errors import ConfigError, NotifierError, require_positive
from crackseg.utils.deployment.models import DeploymentMetadata

__all__ = ["LABEL_NAME", "AlertmanagerHandler", "AlertmanagerOptions", "label_problems"]

logger = logging.getLogger("crackseg.utils.deployment.alerts")


class AlertmanagerOptions(HandlerOptions):
    """``{type: alertmanager, url (one or a list of a cluster's peers) | url_env
    (comma-separated), resend_interval, timeout, monitor, labels, headers, generator_url}``."""

    url: str | list[str] | None = None
    url_env: str | None = None
    resend_interval: Duration = 60.0
    timeout: Duration = 10.0
    monitor: str = "crackseg-monitor"
    labels: dict[str, str] = {}
    headers: dict[str, str] = {}
    generator_url: str | None = None

    def urls(self) -> list[str]:
        if isinstance(self.url, list):
            return list(self.url)
        raw = str(secret_value(self.url, self.url_env) or "")
        return [u.strip() for u in raw.split(",")] if "," in raw else [raw]

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if isinstance(self.url, list):
            if self.url_env is not None:
                return [*out, ("url", "give either url or url_env, not both")]
            if not self.url:
                return [*out, ("url", "must be a non-empty list of URLs")]
        else:
            out += secret_problems("url", self.url, self.url_env, required=True)
        if out:
            return out
        urls = self.urls()
        for i, u in enumerate(urls):
            out += url_problems("url" if len(urls) == 1 else f"url[{i}]", u)
        return out + label_problems(self.labels, self.monitor) + header_problems(self.headers)


#: Alertmanager's rule for a label name; it answers 400 to any alert breaking it.
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def label_problems(labels: Mapping[str, str], monitor: str) -> list[tuple[str, str]]:
    """``(field, problem)`` for each label Alertmanager would refuse (every alert of the
    handler would be dead-lettered with HTTP 400)."""
    out: list[tuple[str, str]] = []
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(name):
            out.append((
                f"labels.{name}",
                "Alertmanager refuses this label name: use letters, digits and _ "
                "(not starting with a digit), e.g. team_name",
            ))  # fmt: skip
        elif name.startswith("__"):
            out.append((f"labels.{name}", "names starting with __ are reserved by Alertmanager"))
        if not _utf8(value):
            out.append((f"labels.{name}", "the value must be valid UTF-8 text"))
    if not _utf8(monitor):
        out.append(("monitor", "must be valid UTF-8 text (it is sent as a label value)"))
    return out


def _utf8(value: Any) -> bool:
    try:
        str(value).encode("utf-8")
    except UnicodeError:
        return False
    return True


class AlertmanagerHandler(AlertHandler):
    """Pushes alerts to Alertmanager and keeps firing ones alive until they resolve.

    ``resend_stats()`` reports the background re-sends (they bypass the dispatcher's
    retries: the next interval is the retry).

    >>> h = AlertmanagerHandler("http://127.0.0.1:9093", resend_interval=30)
    >>> h.name
    'alertmanager:127.0.0.1:9093'
    >>> h.close()
    >>> AlertmanagerHandler(["http://127.0.0.1:9093", "http://127.0.0.1:9094"]).name
    'alertmanager:127.0.0.1:9093,127.0.0.1:9094'
    """

    kind = "alertmanager"

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        resend_interval: float = 60.0,
        timeout: float = 10.0,
        monitor: str = "crackseg-monitor",
        labels: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        generator_url: str | None = None,
        key: str | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ConfigError("url", "give at least one Alertmanager URL")
        self._bases = [check_url(u, f"url[{i}]" if len(urls) > 1 else "url").rstrip("/")
                       for i, u in enumerate(urls)]  # fmt: skip
        if len(set(self._bases)) != len(self._bases):
            raise ConfigError("url", "lists the same Alertmanager twice")
        self._base = self._bases[0]
        self._endpoints = [f"{b}/api/v2/alerts" for b in self._bases]
        # One thread per peer so a peer that hangs until the timeout delays no other.
        self._pool = (
            ThreadPoolExecutor(len(urls), thread_name_prefix="alertmanager-post")
            if len(urls) > 1
            else None
        )
        self._partial = 0
        require_positive("resend_interval", resend_interval)
        require_positive("timeout", timeout)
        self.resend_interval = resend_interval
        self.timeout = timeout
        self.monitor = monitor
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        for field, problem in label_problems(self.labels, monitor) + header_problems(
            dict(headers or {})
        ):
            raise ConfigError(field, problem)
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

    Options = AlertmanagerOptions

    @classmethod
    def from_options(cls, opts: AlertmanagerOptions) -> AlertmanagerHandler:
        urls = opts.urls()
        return cls(
            urls[0] if len(urls) == 1 else urls,
            resend_interval=opts.resend_interval,
            timeout=opts.timeout,
            monitor=opts.monitor,
            labels=opts.labels,
            headers=opts.headers,
            generator_url=opts.generator_url,
        )

    @property
    def target(self) -> str:
        return ",".join(host_of(b) for b in self._bases)

    @property
    def name(self) -> str:
        return "alertmanager:" + ",".join(host_of(b) for b in self._bases)

    @property
    def urls(self) -> list[str]:
        """The Alertmanagers every alert goes to."""
        return list(self._bases)

    def secrets(self) -> tuple[str, ...]:
        return (*self._bases, *(v for k, v in self._headers.items() if k != "Content-Type"))

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
        annotations = {
            "summary": f"{alert_type} on {f.deployment_id}",
            "monitor_instance": self.instance,
        }
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

    def restore_firing(self, alert_type: str, metadata: DeploymentMetadata, **kwargs: Any) -> None:
        """Keep re-sending a firing alert sent before a restart, with its labels and start."""
        body = self.alert(alert_type, metadata, {**kwargs, "state": "firing"})
        with self._lock:
            self._active[(body["labels"]["deployment_id"], alert_type)] = body
            self._ensure_thread()

    def _stamped(self, alert: dict[str, Any]) -> dict[str, Any]:
        if "endsAt" in alert:
            return alert
        return {**alert, "endsAt": iso8601(time.time() + 4 * self.resend_interval)}

    def _post(self, alerts: list[dict[str, Any]]) -> None:
        body = json.dumps(alerts, separators=(",", ":")).encode()
        if self._pool is None:
            http_post(self._endpoints[0], body, self._headers, self.timeout, what="alertmanager")
            return
        futures = [
            self._pool.submit(http_post, e, body, self._headers, self.timeout, what="alertmanager")
            for e in self._endpoints
        ]
        errors: list[NotifierError] = []
        for future in futures:
            try:
                future.result()
            except NotifierError as exc:
                errors.append(exc)
        if len(errors) == len(futures):
            raise NotifierError(
                "; ".join(str(e) for e in errors), permanent=all(e.permanent for e in errors)
            )
        if errors:
            # Delivered: the cluster has it and gossips it; the peer that missed it gets
            # the next re-send.
            with self._lock:
                self._partial += 1
            logger.warning(
                "alert handler %s: %d of %d Alertmanagers missed a send: %s",
                self.name, len(errors), len(futures),
                scrub("; ".join(str(e) for e in errors), self.secrets()),
            )  # fmt: skip

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
        """``{"active", "resent", "failed", "last_error", "partial"}`` of the re-send loop;
        ``partial`` counts sends some (not all) of several Alertmanagers missed."""
        with self._lock:
            active = len(self._active)
            partial = self._partial
        return {
            "active": active,
            "partial": partial,
            "resent": self._resent,
            "failed": self._resend_failed,
            "last_error": self._resend_error,
        }

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1.0)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
