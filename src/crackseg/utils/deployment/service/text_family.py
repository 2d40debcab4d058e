"""Metric families with one sample per deployment, written straight to text.

At 10,000 deployments a scrape holds ~350,000 samples. Built the generic way (a
``Sample`` named tuple and a label dict per sample, then label names checked and values
escaped per sample) that cost ~2 s of a 3 s scrape (issue 14). A :class:`TextFamily`
keeps its samples as columns (a list per label, a list of values) and
:func:`~.exposition.text_exposition` writes them with label names checked once per family,
each label value escaped once per scrape and no Python code run per line
(:func:`interleave`); :class:`ResponseHistogram` does the same for the response times.

Both families stay ordinary ``Metric`` objects: their ``samples`` are built on demand,
so ``generate_latest`` (and OpenMetrics' ``generate_latest``) write the same bytes (the tests
compare them). Labels every series of a monitor carries (``monitor_instance``) are set once
per family with ``with_labels`` and written as constant text: no cost per line.
"""

from __future__ import annotations

import re
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, chain, repeat

import prometheus_client.metrics as _pm
from prometheus_client.core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = [
    "Escaped",
    "Lines",
    "Numbers",
    "ResponseHistogram",
    "TextFamily",
    "interleave",
    "label_frame",
]

#: What a family hands the writer: its sample lines and the OpenMetrics-only lines
#: (``_created``...) by suffix, written as gauges after the family.
Lines = tuple[list[str], dict[str, list[str]]]
#: Escaped label values and formatted numbers, filled on first use (``__missing__``).
Escaped = Mapping[str, str]
Numbers = Mapping[float, str]

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def label_frame(
    sample: str, fixed: Mapping[str, str], variable: Sequence[str], esc: Escaped
) -> list[str]:
    """The constant text around a line's variable label values, in the format's label order.

    ``fixed`` labels (a histogram's ``le``, ``monitor_instance``) are written into the text;
    for n ``variable`` label names the result has n + 1 strings: the text before the first
    variable value, between each and the next, and after the last up to the sample value.
    """
    names = sorted([*fixed, *variable])
    if not names:
        return [sample + " "]
    frame: list[str] = []
    pending = sample + "{"
    for i, k in enumerate(names):
        pending += f'{"," if i else ""}{k}="'
        if k in fixed:
            pending += esc[fixed[k]] + '"'
        else:
            frame.append(pending)
            pending = '"'
    frame.append(pending + "} ")
    return frame


def _const_labels(labelnames: Sequence[str], labels: Mapping[str, str]) -> dict[str, str]:
    # A family's own label of the same name wins over the constant one.
    _check_names("x", list(labels))
    return {k: v for k, v in labels.items() if k not in labelnames}


def _check_names(name: str, labelnames: Sequence[str]) -> None:
    # Only names the text format writes without escaping: checked here once, not per sample.
    if not _METRIC.match(name):
        raise ValueError(f"metric name {name!r}: use letters, digits, '_' and ':'")
    for k in labelnames:
        if not _LABEL.match(k) or k.startswith("__"):
            raise ValueError(f"label name {k!r} of {name}: use letters, digits and '_'")


class TextFamily(Metric):
    """A gauge or counter family held as columns: one list per label, one of values.

    Columns, not a tuple per row: 350,000 row tuples kept alive through a scrape set off
    full garbage collections that cost more than writing the text (measured: 40 % of it).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        labelnames: Sequence[str],
        columns: Sequence[list[str]] | None = None,
        values: list[float] | None = None,
    ) -> None:
        if typ not in ("gauge", "counter"):
            raise ValueError(f"type {typ!r} of {name}: gauge or counter")
        _check_names(name, labelnames)
        # Not Metric.__init__: it assigns ``samples``, which is a property here.
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.unit = ""
        self._sample_name = name + "_total" if typ == "counter" else name
        self._labelnames = tuple(labelnames)
        # The text format sorts labels by name; columns keep the declared order.
        self._order = sorted(range(len(self._labelnames)), key=self._labelnames.__getitem__)
        self.columns: list[list[str]] = (
            [[] for _ in self._labelnames] if columns is None else list(columns)
        )
        self.values: list[float] = [] if values is None else values
        if len(self.columns) != len(self._labelnames):
            raise ValueError(f"{name}: {len(self._labelnames)} label columns expected")
        self.const: dict[str, str] = {}

    def with_labels(self, labels: Mapping[str, str]) -> None:
        """Give every sample these labels too (written as constant text, not per line)."""
        self.const = _const_labels(self._labelnames, labels)

    def add(self, labelvalues: Sequence[str], value: float) -> None:
        """One sample; ``labelvalues`` in the order of the family's label names."""
        for column, v in zip(self.columns, labelvalues, strict=True):
            column.append(v)
        self.values.append(value)

    def _checked(self) -> None:
        n = len(self.values)
        if any(len(c) != n for c in self.columns):
            raise ValueError(f"{self.name}: every label column needs one value per sample")

    @property
    def samples(self) -> list[Sample]:
        self._checked()
        names, n, const = self._labelnames, self._sample_name, self.const
        return [
            Sample(n, {**const, **dict(zip(names, row[:-1], strict=True))}, row[-1], None, None)
            for row in zip(*self.columns, self.values, strict=True)
        ]

    @samples.setter
    def samples(self, _: object) -> None:
        raise AttributeError("TextFamily samples are added with add() or as columns")

    def text_lines(self, esc: Escaped, num: Numbers, openmetrics: bool = False) -> Lines:
        """The family's sample lines (the writer adds HELP and TYPE); the same lines in both
        formats (a gauge or counter without ``_created``)."""
        self._checked()
        names = self._labelnames
        # name{a="x",b="y"} v: the pieces between the label values are the same every row.
        frame = label_frame(self._sample_name, self.const, names, esc)
        parts: list[str | Iterable[str]] = [frame[0]]
        for pos, i in enumerate(self._order):
            parts += [map(esc.__getitem__, self.columns[i]), frame[pos + 1]]
        parts += [map(num.__getitem__, self.values), "\n"]
        return [interleave(len(self.values), parts)], {}


def interleave(rows: int, parts: Sequence[str | Iterable[str]]) -> str:
    """``rows`` lines, each the concatenation of ``parts`` in turn: a ``str`` part is the same
    in every line, any other part gives one string per line.

    The lines are written by slice assignment into one list and one ``join``: no Python
    code runs per line (a comprehension of f-strings took three times as long).
    """
    k = len(parts)
    buf: list[str] = [""] * (rows * k)
    for i, part in enumerate(parts):
        buf[i::k] = [part] * rows if isinstance(part, str) else part
    return "".join(buf)


class ResponseHistogram:
    """Per-deployment response-time histogram: plain bucket counts, rendered as text.

    ``prometheus_client.Histogram`` with a ``deployment_id`` label keeps a child object per
    deployment (a lock and value object per bucket) and builds 18 ``Sample``\\ s per
    deployment at every scrape; here a deployment is one list of counts.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        _check_names(name, ["deployment_id", "le"])
        self.name = name
        self.documentation = documentation
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        # deployment id -> [bucket counts..., sum, created]
        self._cells: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, deployment_id: str, seconds: float) -> None:
        """Count one observation (fast, thread-safe)."""
        i = bisect_left(self._bounds, seconds)  # first bound >= seconds, as le means
        with self._lock:
            cell = self._cells.get(deployment_id)
            if cell is None:
                cell = self._cells[deployment_id] = [0.0] * len(self._bounds) + [0.0, time.time()]
            cell[i] += 1.0
            cell[-2] += seconds

    def remove(self, deployment_id: str) -> None:
        with self._lock:
            self._cells.pop(deployment_id, None)

    def deployments(self) -> list[str]:
        with self._lock:
            return list(self._cells)

    def family(self) -> _HistogramFamily:
        """A snapshot for one scrape: the ids and one flat list of every cell's numbers."""
        with self._lock:
            ids = list(self._cells)
            flat = list(chain.from_iterable(self._cells.values()))
        return _HistogramFamily(self, ids, flat, getattr(_pm, "_use_created", True))


class _HistogramFamily(Metric):
    def __init__(
        self, owner: ResponseHistogram, ids: list[str], flat: list[float], created: bool
    ) -> None:
        self.name = owner.name
        self.documentation = owner.documentation
        self.type = "histogram"
        self.unit = ""
        self._le = owner._le
        self._ids = ids
        self._flat = flat
        self._created = created
        self.const: dict[str, str] = {}

    def with_labels(self, labels: Mapping[str, str]) -> None:
        """Give every sample these labels too (written as constant text, not per line)."""
        self.const = _const_labels(("deployment_id", "le"), labels)

    def _cells(self) -> Iterator[tuple[str, list[float], float, float]]:
        """Per deployment: id, cumulative bucket counts, sum, created."""
        n, flat = len(self._le), self._flat
        stride = n + 2
        for i, dep in enumerate(self._ids):
            base = i * stride
            yield dep, list(accumulate(flat[base : base + n])), flat[base + n], flat[base + n + 1]

    @property
    def samples(self) -> list[Sample]:
        out = []
        const = self.const
        for dep, counts, total, created in self._cells():
            for le, c in zip(self._le, counts, strict=True):
                labels = {**const, "deployment_id": dep, "le": le}
                out.append(Sample(self.name + "_bucket", labels, c))
            d = {**const, "deployment_id": dep}
            out.append(Sample(self.name + "_count", d, counts[-1]))
            out.append(Sample(self.name + "_sum", d, total))
            if self._created:
                out.append(Sample(self.name + "_created", d, created))
        return out

    @samples.setter
    def samples(self, _: object) -> None:
        raise AttributeError("a histogram snapshot is read-only")

    def text_lines(self, esc: Escaped, num: Numbers, openmetrics: bool = False) -> Lines:
        """Per deployment its bucket lines, ``_count`` and ``_sum``; ``_created`` follows
        them in OpenMetrics, and is a gauge family of its own in the text format."""
        name, const, dep = self.name, self.const, ["deployment_id"]
        # Every line is 'prefix, id, middle, value': only the id and the value vary.
        frames = [label_frame(f"{name}_bucket", {**const, "le": le}, dep, esc) for le in self._le]
        frames += [label_frame(f"{name}{x}", const, dep, esc) for x in ("_count", "_sum")]
        created_frame = label_frame(f"{name}_created", const, dep, esc)
        inline = openmetrics and self._created
        if inline:
            frames.append(created_frame)
        per = len(frames)
        ids = [esc[d] for d in self._ids]
        values: list[str] = []
        extend, number = values.extend, num.__getitem__
        created: list[str] = []
        for _, counts, total, at in self._cells():
            extend(map(number, counts))
            values += [number(counts[-1]), number(total)]
            if inline:
                values.append(number(at))
            else:
                created.append(number(at))
        lines = interleave(
            len(ids) * per,
            [[f[0] for f in frames] * len(ids), list(chain.from_iterable(repeat(e, per) for e in ids)),
             [f[1] for f in frames] * len(ids), values, "\n"],
        )  # fmt: skip
        if inline or not self._created or not ids:
            return [lines], {}
        at_lines = interleave(len(ids), [created_frame[0], ids, created_frame[1], created, "\n"])
        return [lines], {"_created": [at_lines]}
