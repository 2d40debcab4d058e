"""The Prometheus text and OpenMetrics formats, written fast: the library's bytes.

``prometheus_client.generate_latest`` spends ~15 µs a sample validating and escaping every
label name and value again; at 10,000 deployments a scrape holds ~400,000 samples and took
4-7 s (issue 14). :func:`text_exposition` writes the identical text with label strings and
values escaped once per scrape: names are checked once per family, label values once per
distinct value. The per-deployment families (:mod:`.text_family`) hand over their text
whole. A family whose names need UTF-8 escaping, or with exemplars, goes through the library.

:func:`negotiate` answers a scrape as the library's own exposition does (its
``choose_encoder`` reads ``Accept``, its ``gzip_accepted`` reads ``Accept-Encoding``), with
the fast writer behind both formats: Prometheus asks for OpenMetrics first, so the slow path
would otherwise be the one every real scrape takes.

:class:`LabelledRegistry` gives every series of a registry the same labels
(``monitor_instance``: which monitor of a pair wrote it).
"""

from __future__ import annotations

import copy
import gzip
import re
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.openmetrics import exposition as _om_exposition
from prometheus_client.utils import floatToGoString

__all__ = ["GZIP_LEVEL", "LabelledRegistry", "negotiate", "text_exposition"]

#: zlib level of a gzip-encoded scrape: 1 compresses metric text ~10x at ~5x the speed of
#: the library's default 9 (26 MB at 10,000 deployments would otherwise cost seconds).
GZIP_LEVEL = 1

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_TYPES = {"counter": ("_total", "counter"), "info": ("_info", "gauge")}
_RENAMED = {"stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _doc(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class LabelledRegistry(CollectorRegistry):
    """A :class:`CollectorRegistry` whose every series also carries ``labels``.

    ``labels`` may be replaced until the first scrape (the web face learns its bound port
    after the registry is built). A family's own label of the same name wins. Families of
    :mod:`.text_family` take the labels as constant text; others are copied with the labels
    added to each sample.
    """

    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        super().__init__(auto_describe=False)
        self.labels: dict[str, str] = dict(labels or {})

    def collect(self) -> Iterator[Metric]:
        labels = dict(self.labels)
        for metric in super().collect():
            if not labels:
                yield metric
                continue
            with_labels = getattr(metric, "with_labels", None)
            if with_labels is not None:
                with_labels(labels)
                yield metric
                continue
            labelled = copy.copy(metric)
            labelled.samples = [s._replace(labels={**labels, **s.labels}) for s in metric.samples]
            yield labelled


def negotiate(
    registry: Any, accept: str | None, accept_encoding: str | None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers answering a scrape with these request headers.

    The format and its content type are ``prometheus_client``'s choice (OpenMetrics when
    asked for, else the text format 0.0.4), written by :func:`text_exposition`; gzip when
    ``Accept-Encoding`` allows it.
    """
    encoder, content_type = choose_encoder(accept or "")
    openmetrics = content_type.startswith("application/openmetrics-text")
    if "escaping=" in content_type and "escaping=underscores" not in content_type:
        body = bytes(encoder(registry))  # names escaped otherwise: the library's business
    else:
        body = text_exposition(registry, openmetrics=openmetrics)
    headers = {"Content-Type": content_type}
    if gzip_accepted(accept_encoding or ""):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def _library(registry: Any, openmetrics: bool) -> bytes:
    if openmetrics:
        return bytes(_om_exposition.generate_latest(registry))  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))


def text_exposition(registry: Any, openmetrics: bool = False) -> bytes:
    """``generate_latest(registry)`` (or OpenMetrics' ``generate_latest``), byte for byte,
    in a fraction of its time."""
    families = list(registry.collect())
    if not all(_METRIC.match(m.name) for m in families):
        return _library(_Families(families), openmetrics)
    labels_ok: dict[str, bool] = {}
    esc = _Escaped()
    num = _Numbers()
    out: list[str] = []
    append = out.append

    def line(s: Any) -> str:
        if s.exemplar is not None or s.native_histogram is not None:
            raise _Fallback
        labels = s.labels
        if labels:
            parts = []
            items = sorted(labels.items()) if len(labels) > 1 else labels.items()
            for k, v in items:
                ok = labels_ok.get(k)
                if ok is None:
                    ok = labels_ok[k] = bool(_LABEL.match(k))
                if not ok:
                    raise _Fallback
                parts.append(f'{k}="{esc[v]}"')
            labelstr = "{" + ",".join(parts) + "}"
        else:
            labelstr = ""
        text = num[s.value]
        if s.timestamp is not None:
            if openmetrics:
                return f"{s.name}{labelstr} {text} {s.timestamp}\n"
            return f"{s.name}{labelstr} {text} {int(float(s.timestamp) * 1000):d}\n"
        return f"{s.name}{labelstr} {text}\n"

    try:
        for metric in families:
            if openmetrics:
                mname, mtype = metric.name, metric.type
                append(f"# HELP {mname} {_escape(metric.documentation)}\n# TYPE {mname} {mtype}\n")
                if metric.unit:
                    append(f"# UNIT {mname} {metric.unit}\n")
            else:
                suffix, mtype = _TYPES.get(
                    metric.type, ("", _RENAMED.get(metric.type, metric.type))
                )
                mname = metric.name + suffix
                append(f"# HELP {mname} {_doc(metric.documentation)}\n# TYPE {mname} {mtype}\n")
            om: dict[str, list[str]] = {}
            text_lines = getattr(metric, "text_lines", None)
            if text_lines is not None:
                # A TextFamily: its names were checked when it was made (text_family.py).
                lines_, om = text_lines(esc, num, openmetrics)
                out.extend(lines_)
            else:
                # The text format moves OpenMetrics-only samples into gauges of their own.
                special = {} if openmetrics else {metric.name + x: x for x in _OM_SUFFIXES}
                for s in metric.samples:
                    x = special.get(s.name)
                    if x is not None:
                        om.setdefault(x, []).append(line(s))
                    else:
                        append(line(s))
            doc = _doc(metric.documentation)
            for x, lines in sorted(om.items()):
                append(f"# HELP {metric.name}{x} {doc}\n# TYPE {metric.name}{x} gauge\n")
                out.extend(lines)
    except _Fallback:
        return _library(_Families(families), openmetrics)
    if openmetrics:
        append("# EOF\n")
    return "".join(out).encode("utf-8")


class _Families:
    """The families of one collection, handed to the library without collecting twice."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class _Escaped(dict[str, str]):
    """Label value -> its escaped text, each distinct value escaped once per scrape."""

    def __missing__(self, v: str) -> str:
        ev = self[v] = _escape(v)
        return ev


class _Numbers(dict[float, str]):
    """Sample value -> its text (Go's spelling, as ``floatToGoString``).

    Only whole numbers are kept (counts and flags repeat across a scrape; timestamps and
    durations do not), so the cache stays small and a lookup usually hits.
    """

    def __missing__(self, value: float) -> str:
        if type(value) is not float:
            value = float(value)
        text = repr(value)
        dot = text.find(".")
        if dot > 6 and value > 0:
            # floatToGoString's rule, inlined (timestamps take it: 10,000 a scrape): Go
            # writes exponents sooner than Python.
            mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
            text = f"{mantissa}e+{dot - 1:02d}"
        elif dot < 0:
            text = floatToGoString(value)  # type: ignore[no-untyped-call]  # inf, nan, 1e-05
        if value.is_integer() and len(self) < 4096:
            self[value] = text
        return text


class _Fallback(Exception):
    """A label name the fast path does not write (UTF-8 escaping) or an exemplar: use the
    library."""
