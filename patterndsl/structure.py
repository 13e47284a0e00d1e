"""Per-row structure: what each primitive says about the keys of a query row.

A primitive's `row_structure(n)` (patterndsl/primitives.py) returns a small
boolean formula (`AnyOf`, `AllOf`, `Not`) over *atoms* of three kinds. Every
atom describes, for a batch of query rows, a set of keys exactly:

  * interval atoms — one half-open interval [lo_i, hi_i) ⊆ [0, n) per row:
    `Span` (the same interval in every row), `Band` (i − left ≤ j ≤ i + right),
    `Blocks` (the chunk of b holding i), `RowSet` (all keys if i ∈ R, else none),
    `RowResidues` (all keys if (i + o) mod b ≥ b − c, else none);
  * periodic atoms — j with (j − a_i) mod m < c: `Residue` (j ≡ i mod s) and
    `ColumnResidues` (j mod b ≥ b − c, a row-independent progression);
  * point atoms — an explicit, small list of distinct keys per row (`Points`,
    backed by the primitive's own `row_points`).

The exact counter (patterndsl/analysis/counts.py) combines them; it never builds
an n × n mask. Atoms are frozen dataclasses, so equal atoms from different
primitives (``window(4) & window(4)``, ``dilated(w, d) & stride(d)``) are shared.
All arithmetic here is int64; parameters are clamped to ±(n + 1) first, which
never changes the set of keys in [0, n).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .ir import AllOf, AnyOf, IndexSet, Not, Scaled  # noqa: F401  (the connectives of a row structure)


def _clamp(value: int, n: int) -> int:
    return max(-(n + 1), min(n + 1, value))


class Atom:
    kind: ClassVar[str]  # "interval", "periodic" or "points"


@dataclass(frozen=True)
class Span(Atom):
    """[lo, hi) ∩ [0, n) in every row."""

    lo: int
    hi: int
    kind: ClassVar[str] = "interval"

    def bounds(self, rows: np.ndarray, n: int):
        lo = max(0, min(n, self.lo))
        hi = max(lo, min(n, self.hi))
        return np.full(rows.shape, lo, dtype=np.int64), np.full(rows.shape, hi, dtype=np.int64)


@dataclass(frozen=True)
class Band(Atom):
    """i − left ≤ j ≤ i + right (left + right may be negative: then empty)."""

    left: int
    right: int
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        lo = np.clip(rows - _clamp(self.left, n), 0, n)
        hi = np.clip(rows + _clamp(self.right, n) + 1, 0, n)
        return lo, np.maximum(lo, hi)


@dataclass(frozen=True)
class Blocks(Atom):
    """⌊(i + offset)/b⌋ = ⌊(j + offset)/b⌋ (0 ≤ offset < b)."""

    b: int
    offset: int = 0
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        if self.offset == 0:
            b = min(self.b, n + 1)
            lo = rows // b * b
            return lo, np.minimum(lo + b, n)
        lo = (rows + self.offset) // self.b * self.b - self.offset
        return np.maximum(lo, 0), np.minimum(lo + self.b, n)


def index_member(indices: IndexSet, rows: np.ndarray) -> np.ndarray:
    """Bool [len(rows)]: rows ∈ indices, by binary search over its intervals."""
    if not indices.intervals:
        return np.zeros(rows.shape, dtype=bool)
    if len(indices.intervals) == 1:  # one interval: two comparisons, no search (hubs at n = 2^24)
        (lo, hi), = indices.intervals
        rows = np.asarray(rows)
        return (rows >= lo) & (rows < hi)
    starts = np.array([lo for lo, _ in indices.intervals], dtype=np.int64)
    ends = np.array([hi for _, hi in indices.intervals], dtype=np.int64)
    k = np.searchsorted(starts, rows, side="right") - 1
    return (k >= 0) & (rows < ends[np.maximum(k, 0)])


@dataclass(frozen=True)
class RowSet(Atom):
    """All keys in the rows i ∈ R, none elsewhere."""

    indices: IndexSet
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        return np.zeros(rows.shape, dtype=np.int64), np.where(index_member(self.indices, rows), n, 0).astype(np.int64)


@dataclass(frozen=True)
class RowResidues(Atom):
    """All keys in the rows i with (i + offset) mod b ≥ b − c, none elsewhere (`transpose` of
    `summary`: a RowSet of ⌈n/b⌉ intervals, in constant size)."""

    b: int
    c: int
    offset: int = 0
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        held = (np.asarray(rows, dtype=np.int64) + self.offset) % self.b >= self.b - self.c
        return np.zeros(held.shape, dtype=np.int64), np.where(held, n, 0).astype(np.int64)


@dataclass(frozen=True)
class Residue(Atom):
    """j ≡ i − offset (mod s)."""

    s: int
    offset: int = 0
    kind: ClassVar[str] = "periodic"

    def progression(self, rows, n):
        """(m, a, c): the keys j with (j − a) mod m < c; a is per row or a scalar."""
        return self.s, (rows - self.offset) % self.s, 1


@dataclass(frozen=True)
class ColumnResidues(Atom):
    """(j + offset) mod b ≥ b − c, the same in every row."""

    b: int
    c: int
    offset: int = 0
    kind: ClassVar[str] = "periodic"

    def progression(self, rows, n):
        return self.b, (self.b - self.c - self.offset) % self.b, self.c


@dataclass(frozen=True)
class Points(Atom):
    """An explicit list of keys per row: ``source.row_points(rows, n)`` returns int64
    [len(rows), k] with each row's keys distinct and -1 where a slot holds no key."""

    source: Any
    kind: ClassVar[str] = "points"

    def points(self, rows, n) -> np.ndarray:
        return self.source.row_points(rows, n)

    def width(self, n) -> int:
        """k, the number of slots per row."""
        return self.source.row_point_count(n)


# ---- structure over blocks (`blocks(B) { P }`) -------------------------------------------


def _blocks_of(n: int, size: int) -> int:
    return -(-n // size)


@dataclass(frozen=True)
class ScaledInterval(Atom):
    """The interval atom ``inner`` of a pattern over blocks of ``size``: its block interval
    [lo, hi) of block row ⌊i/size⌋ is the keys [lo·size, hi·size) ∩ [0, n)."""

    inner: Atom
    size: int
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        lo, hi = self.inner.bounds(rows // self.size, _blocks_of(n, self.size))
        return np.minimum(lo * self.size, n), np.minimum(hi * self.size, n)


@dataclass(frozen=True)
class ScaledProgression(Atom):
    """The periodic atom ``inner`` over blocks: (⌊j/B⌋ − a) mod m < c is exactly
    (j − a·B) mod m·B < c·B."""

    inner: Atom
    size: int
    kind: ClassVar[str] = "periodic"

    def progression(self, rows, n):
        m, a, c = self.inner.progression(rows // self.size, _blocks_of(n, self.size))
        return m * self.size, a * self.size, c * self.size


@dataclass(frozen=True)
class PointBlock(Atom):
    """Slot ``slot`` of the point atom ``inner`` over blocks: the one key block it names,
    as the interval of its tokens (empty where the slot holds no key)."""

    inner: Points
    slot: int
    size: int
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        keys = _block_points(self.inner, rows // self.size, _blocks_of(n, self.size))[:, self.slot]
        lo = np.where(keys >= 0, np.minimum(keys * self.size, n), 0)
        hi = np.where(keys >= 0, np.minimum(keys * self.size + self.size, n), 0)
        return lo, hi


_LAST_POINTS: dict = {}  # the last block rows' points: every slot of a point atom asks for the same


def _block_points(atom: Points, block_rows: np.ndarray, n: int) -> np.ndarray:
    """atom.points at these block rows, each distinct block row drawn once (a block of B
    query rows shares one block row)."""
    key = (atom, n, block_rows.tobytes())
    if key not in _LAST_POINTS:
        distinct, inverse = np.unique(block_rows, return_inverse=True)
        _LAST_POINTS.clear()
        _LAST_POINTS[key] = atom.points(distinct, n)[inverse.reshape(-1)]
    return _LAST_POINTS[key]


def scale(node, size: int, n: int):
    """The row structure ``node`` of a pattern over the blocks of ``size`` (of a sequence of
    n), as a formula over atoms of the tokens. A point atom becomes one interval per slot."""
    if isinstance(node, AnyOf):
        return AnyOf(tuple(scale(p, size, n) for p in node.parts))
    if isinstance(node, AllOf):
        return AllOf(tuple(scale(p, size, n) for p in node.parts))
    if isinstance(node, Not):
        return Not(scale(node.part, size, n))
    if isinstance(node, Scaled):  # blocks of blocks: ⌊⌊j/a⌋/b⌋ = ⌊j/(a·b)⌋
        return scale(node.part, size * node.size, n)
    if node.kind == "interval":
        return ScaledInterval(node, size)
    if node.kind == "periodic":
        return ScaledProgression(node, size)
    slots = node.width(_blocks_of(n, size))
    if slots == 0:
        return Span(0, 0)
    return AnyOf(tuple(PointBlock(node, t, size) for t in range(slots)))


@dataclass(frozen=True)
class Paired(Atom):
    """⌊i/q⌋ = ⌊j/k⌋ (`intervals(q, k)`): the keys t·k … t·k + k − 1 of the row's interval t = ⌊i/q⌋."""

    q: int
    k: int
    kind: ClassVar[str] = "interval"

    def bounds(self, rows, n):
        lo = np.minimum(np.asarray(rows, dtype=np.int64) // self.q * self.k, n)
        return lo, np.minimum(lo + self.k, n)


# ---- the keys outside a row structure, as runs (`random(r, avoid=P)`) ---------------------


def _interval_atoms(node, n: int, found: dict):
    """The formula ``node`` with `Scaled` parts turned into atoms over tokens, its interval
    atoms collected in ``found`` (each once); None when it has another kind of atom."""
    if isinstance(node, Scaled):
        return _interval_atoms(scale(node.part, node.size, n), n, found)
    if isinstance(node, (AnyOf, AllOf)):
        parts = [_interval_atoms(p, n, found) for p in node.parts]
        return None if any(p is None for p in parts) else type(node)(tuple(parts))
    if isinstance(node, Not):
        part = _interval_atoms(node.part, n, found)
        return None if part is None else Not(part)
    if node.kind != "interval":
        return None
    found.setdefault(node, len(found))
    return node


def _truth(node, inside: dict):
    """Bool [rows, segments]: the formula on each segment, from its atoms' truth there."""
    if isinstance(node, AnyOf):
        return np.logical_or.reduce([_truth(p, inside) for p in node.parts]) if node.parts else False
    if isinstance(node, AllOf):
        return np.logical_and.reduce([_truth(p, inside) for p in node.parts]) if node.parts else True
    if isinstance(node, Not):
        return ~_truth(node.part, inside)
    return inside[node]


def free_runs(structure, rows: np.ndarray, n: int):
    """The keys j of each row with j *not* in the row structure ``structure``, as runs:
    (starts, lengths), int64 [len(rows), S], ascending in every row, a length 0 where a run
    holds no key; None when the formula has a periodic or point atom (then the caller
    evaluates the rows). The runs are the segments between the interval atoms' ends, on
    each of which every atom, hence the formula, is constant: O(rows · atoms²), never
    rows × n."""
    found: dict = {}
    formula = _interval_atoms(structure, n, found)
    if formula is None:
        return None
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    bounds = [atom.bounds(rows, n) for atom in found]
    ends = [np.zeros(rows.size, dtype=np.int64), np.full(rows.size, n, dtype=np.int64)]
    ends += [np.clip(np.asarray(x, dtype=np.int64), 0, n) for pair in bounds for x in pair]
    cuts = np.sort(np.stack(ends, axis=1), axis=1)
    starts, stops = cuts[:, :-1], cuts[:, 1:]
    inside = {}
    for atom, (lo, hi) in zip(found, bounds):  # each segment lies inside an atom's interval or outside it
        lo, hi = np.asarray(lo, dtype=np.int64)[:, None], np.asarray(hi, dtype=np.int64)[:, None]
        inside[atom] = (lo <= starts) & (stops <= hi)
    held = np.broadcast_to(np.asarray(_truth(formula, inside), dtype=bool), starts.shape)
    return starts, np.where(held, 0, stops - starts)
