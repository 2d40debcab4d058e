"""Compact, lossless columns for the in-memory history: a few bytes a value, not an object.

As one object per result a full default history (1,000 results and 1,000 samples) cost about
220 KiB per deployment; as columns it costs a sixth of that (docs/performance.md). Every
encoding is exact: a value that does not fit the compact form upgrades its column to plain
doubles, never rounds. A bounded ring of ``capacity`` rows, overwritten oldest first.

- :class:`TimeColumn`: timestamps as the difference of their IEEE-754 bit patterns from the
  previous one (4 bytes while consecutive rows are less than ~8 minutes apart at today's
  epoch), else doubles.
- :class:`NumberColumn`: floats with at most four decimals (what the resource monitor and most
  response times produce) as scaled 32-bit integers, else doubles.
- :class:`ShapeColumn`: everything else of a row (status, error, details, process, pids) as
  an index into a small table of the distinct combinations seen, shared between rows.
"""

from __future__ import annotations

import itertools
import math
import struct
from array import array
from collections.abc import Hashable
from typing import Any

__all__ = ["SCALE", "NumberColumn", "ShapeColumn", "TimeColumn", "ring_order"]

#: Decimal scale of :class:`NumberColumn`'s integer form: four decimals kept exactly.
SCALE = 10_000
_I32 = 2**31 - 1
_DOUBLE = struct.Struct("=d")
_BITS = struct.Struct("=q")


def _bits(x: float) -> int:
    return int(_BITS.unpack(_DOUBLE.pack(x))[0])


def ring_order(seq: Any, head: int) -> Any:
    """``seq`` (slot order) rotated into row order, oldest first (a copy)."""
    return seq[head:] + seq[:head] if head else seq[:]


class TimeColumn:
    """Timestamps, delta-encoded on their bit patterns (exact); doubles when a gap is too big."""

    __slots__ = ("_abs", "_base", "_deltas", "_last")

    def __init__(self) -> None:
        self._deltas: array[int] = array("i")
        self._abs: array[float] | None = None
        self._base = 0  # bit pattern of the oldest row
        self._last = 0  # bit pattern of the newest row

    def __len__(self) -> int:
        return len(self._abs) if self._abs is not None else len(self._deltas)

    def append(self, x: float) -> None:
        if self._abs is not None:
            self._abs.append(x)
            return
        b = _bits(x)
        if not self._deltas:
            self._base = b
            self._deltas.append(0)
        else:
            d = b - self._last
            if not -_I32 <= d <= _I32:
                self._to_abs(0)
                assert self._abs is not None
                self._abs.append(x)
                return
            self._deltas.append(d)
        self._last = b

    def replace_oldest(self, head: int, x: float) -> None:
        """Overwrite the oldest row (slot ``head``) with a new newest ``x``."""
        if self._abs is not None:
            self._abs[head] = x
            return
        deltas = self._deltas
        b = _bits(x)
        n = len(deltas)
        if n == 1:
            self._base = self._last = b
            return
        d = b - self._last
        if not -_I32 <= d <= _I32:
            self._to_abs(head)
            assert self._abs is not None
            self._abs[head] = x
            return
        self._base += deltas[(head + 1) % n]  # the next row becomes the oldest
        deltas[head] = d
        self._last = b

    def values(self, head: int) -> array[float]:
        """Every timestamp, oldest first."""
        if self._abs is not None:
            return ring_order(self._abs, head)  # type: ignore[no-any-return]
        seq = ring_order(self._deltas, head)
        bits = array("q", itertools.accumulate(itertools.chain((self._base,), seq[1:])))
        out: array[float] = array("d")
        out.frombytes(bits.tobytes())
        return out

    def _to_abs(self, head: int) -> None:
        ordered = self.values(head)
        n = len(ordered)
        self._abs = ring_order(ordered, (n - head) % n) if n else ordered
        self._deltas = array("i")


class NumberColumn:
    """Floats as integers scaled by :data:`SCALE` while that is exact; doubles after that."""

    __slots__ = ("_a",)

    def __init__(self) -> None:
        self._a: array[Any] = array("i")

    def set(self, slot: int, x: float) -> None:
        """Write ``x`` at ``slot`` (``slot == len`` appends)."""
        a = self._a
        if a.typecode == "i":
            n = round(x * SCALE) if math.isfinite(x) else None
            if n is not None and -_I32 <= n <= _I32 and n / SCALE == x and (n or x.hex()[0] != "-"):
                if slot == len(a):
                    a.append(n)
                else:
                    a[slot] = n
                return
            a = self._a = array("d", [v / SCALE for v in a])
        if slot == len(a):
            a.append(x)
        else:
            a[slot] = x

    def values(self, head: int) -> list[float]:
        seq = ring_order(self._a, head)
        if self._a.typecode == "i":
            return [v / SCALE for v in seq]
        return seq.tolist()  # type: ignore[no-any-return]


class ShapeColumn:
    """Per row, an index into a table of the distinct shapes seen (bounded by compaction)."""

    __slots__ = ("_ids", "_index", "_limit", "_table")

    #: The index marking a row kept whole elsewhere (see :class:`.memory.MemoryStore`).
    ODD = 0xFFFF

    def __init__(self, capacity: int) -> None:
        self._ids: array[int] = array("H" if capacity < 0xFFF0 // 2 else "I")
        self._table: list[Any] = []
        self._index: dict[Hashable, int] = {}
        # Compacting when the table is twice the rows keeps it amortised O(1) per row.
        self._limit = 2 * capacity + 16

    @property
    def odd(self) -> int:
        return self.ODD if self._ids.typecode == "H" else 0xFFFFFFFF

    def find(self, key: Hashable) -> int | None:
        """The id of shape ``key`` if seen (TypeError if ``key`` is unhashable)."""
        return self._index.get(key)

    def set(self, slot: int, key: Hashable, make: Any) -> None:
        """Point ``slot`` at the shape ``key`` (``make()`` builds its value when new)."""
        i = self._index.get(key)
        if i is None:
            if len(self._table) >= self._limit:
                self._compact(slot)
            i = len(self._table)
            self._table.append(make())
            self._index[key] = i
        self.set_id(slot, i)

    def set_id(self, slot: int, i: int) -> None:
        if slot == len(self._ids):
            self._ids.append(i)
        else:
            self._ids[slot] = i

    def values(self, head: int) -> list[Any]:
        """The shape of each row, oldest first (None for odd rows)."""
        table, odd = self._table, self.odd
        return [table[i] if i != odd else None for i in ring_order(self._ids, head)]

    def raw(self, head: int) -> tuple[list[int], list[Any], int]:
        """(each row's shape id oldest first, the table, the odd id): for bulk readers."""
        return ring_order(self._ids, head).tolist(), self._table, self.odd

    def _compact(self, freeing: int) -> None:
        ids, odd = self._ids, self.odd
        live = sorted({i for k, i in enumerate(ids) if i != odd and k != freeing})
        remap = {old: new for new, old in enumerate(live)}
        keys = {i: k for k, i in self._index.items()}
        self._table = [self._table[i] for i in live]
        self._index = {keys[i]: remap[i] for i in live}
        for k, i in enumerate(ids):
            ids[k] = remap.get(i, odd)
