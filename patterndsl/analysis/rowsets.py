"""The keys of many query rows as interval lists, from the primitives' row structure.

`row_keys(pattern, rows, n)` returns ``RowKeys``: for each row of ``rows`` its keys as
sorted, disjoint, non-touching half-open intervals (``own`` says which row). Atoms
(patterndsl/structure.py) become intervals — one per row for interval atoms, one per
period for periodic atoms, one per key for point atoms — and every operator is a sweep
over the interval ends counting how many operands cover each stretch: a union keeps the
stretches covered at least once, an intersection those covered by every operand, a
complement those covered by none. Time and memory O(intervals), never a row of n bools.

The conditions' structural decisions at large n (patterndsl/analysis/conditions.py)
read rows through this module.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import structure as S
from ..ir import Complement, Difference, Intersection, Union
from ..primitives import Primitive


class TooManyIntervals(Exception):
    """The rows asked for hold more intervals than the caller allowed."""


@dataclass
class RowKeys:
    m: int  # the number of rows
    own: np.ndarray  # int64 [K]: the row (0 … m − 1) of each interval
    lo: np.ndarray
    hi: np.ndarray

    def degrees(self) -> np.ndarray:
        return np.bincount(self.own, weights=self.hi - self.lo, minlength=self.m).astype(np.int64)

    def counts(self) -> np.ndarray:
        """Intervals per row."""
        return np.bincount(self.own, minlength=self.m)


def _sweep(m: int, n: int, sets: list, keep) -> RowKeys:
    """The stretches of [0, n) in each row whose cover count c (over ``sets``) has keep(c)."""
    own = np.concatenate([np.repeat(s.own, 2) for s in sets] + [np.arange(m, dtype=np.int64)] * 2)
    pos = np.concatenate([np.stack([s.lo, s.hi], axis=1).reshape(-1) for s in sets]
                         + [np.zeros(m, dtype=np.int64), np.full(m, n, dtype=np.int64)])
    step = np.concatenate([np.tile(np.array([1, -1], dtype=np.int64), s.lo.size) for s in sets]
                          + [np.zeros(2 * m, dtype=np.int64)])  # every row's ends 0 and n, covering nothing
    order = np.argsort(own * (n + 1) + pos, kind="stable")
    own, pos, step = own[order], pos[order], step[order]
    cover = np.cumsum(step)  # rows return to 0 at their end, so one running sum serves all
    # Stretch k runs from pos[k] to pos[k + 1] within a row, covered cover[k] times.
    same = own[:-1] == own[1:]
    chosen = same & (pos[:-1] < pos[1:]) & keep(cover[:-1])
    k = np.flatnonzero(chosen)
    own_k, lo_k, hi_k = own[k], pos[k], pos[k + 1]
    if k.size:  # merge stretches that touch
        joins = np.ones(k.size, dtype=bool)
        joins[1:] = (own_k[1:] != own_k[:-1]) | (lo_k[1:] != hi_k[:-1])
        first = np.flatnonzero(joins)
        last = np.append(first[1:], k.size) - 1
        own_k, lo_k, hi_k = own_k[first], lo_k[first], hi_k[last]
    return RowKeys(m, own_k, lo_k, hi_k)


def _periodic(m: int, n: int, progression, envelope=None, limit=None) -> RowKeys:
    """The keys j with (j − start) mod period < width; with ``envelope`` (lo, hi per row),
    only those inside [lo, hi) (for an intersection whose other parts lie there)."""
    period, start, width = progression
    start = np.broadcast_to(np.asarray(start, dtype=np.int64) % period, (m,))
    width = min(width, period)
    if envelope is None:
        count = np.full(m, (n - 1) // period + 2, dtype=np.int64)  # one period before 0 for the wrap
        first = np.full(m, -1, dtype=np.int64)
    else:
        env_lo, env_hi = np.maximum(envelope[0], 0), np.minimum(envelope[1], n)
        first = (env_lo - start) // period - 1
        last = (env_hi - 1 - start) // period
        count = np.where(env_lo < env_hi, np.maximum(last - first + 1, 0), 0)
    if limit is not None and int(count.sum()) > limit:  # before allocating them
        raise TooManyIntervals(int(count.sum()))
    own = np.repeat(np.arange(m, dtype=np.int64), count)
    q = np.arange(own.size, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count) + first[own]
    lo = start[own] + q * period
    hi = lo + width
    if envelope is not None:
        lo, hi = np.maximum(lo, env_lo[own]), np.minimum(hi, env_hi[own])
    return _clean(m, n, own, lo, hi)


def _envelope(keys: RowKeys):
    """(lo, hi) per row: from the first key to past the last (lo = hi = 0 for an empty row)."""
    lo = np.zeros(keys.m, dtype=np.int64)
    hi = np.zeros(keys.m, dtype=np.int64)
    if keys.own.size:  # intervals are sorted by row
        rows = np.arange(keys.m)
        first = np.searchsorted(keys.own, rows, side="left")
        last = np.searchsorted(keys.own, rows, side="right") - 1
        has = last >= first
        lo[has], hi[has] = keys.lo[first[has]], keys.hi[last[has]]
    return lo, hi


def _clean(m, n, own, lo, hi) -> RowKeys:
    """Clip to [0, n) and normalize; intervals already in order (periodic atoms, most
    points) only have their touching neighbours merged, without the sweep's sort."""
    lo, hi = np.clip(lo, 0, n), np.clip(hi, 0, n)
    good = lo < hi
    own, lo, hi = own[good], lo[good], hi[good]
    if own.size == 0:
        return RowKeys(m, own, lo, hi)
    same = own[1:] == own[:-1]
    if ((own[1:] > own[:-1]) | (same & (lo[1:] >= hi[:-1]))).all():
        joins = np.ones(own.size, dtype=bool)
        joins[1:] = ~same | (lo[1:] != hi[:-1])
        first = np.flatnonzero(joins)
        last = np.append(first[1:], own.size) - 1
        return RowKeys(m, own[first], lo[first], hi[last])
    return _sweep(m, n, [RowKeys(m, own, lo, hi)], lambda c: c >= 1)


def _atom(atom, rows: np.ndarray, n: int, limit=None) -> RowKeys:
    m = rows.size
    if atom.kind == "interval":
        lo, hi = atom.bounds(rows, n)
        return _clean(m, n, np.arange(m, dtype=np.int64), np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64))
    if atom.kind == "periodic":
        return _periodic(m, n, atom.progression(rows, n), limit=limit)
    # Ascending within each row (logsparse lists i − 1, i − 2, i − 4, …): then `_clean` only
    # merges neighbours instead of sorting every row's points in one argsort.
    keys = np.sort(np.asarray(atom.points(rows, n), dtype=np.int64), axis=1)
    own = np.repeat(np.arange(m, dtype=np.int64), keys.shape[1])
    flat = keys.reshape(-1)
    good = (flat >= 0) & (flat < n)
    return _clean(m, n, own[good], flat[good], flat[good] + 1)


def _formula(node, rows, n, limit) -> RowKeys:
    if isinstance(node, S.AnyOf):
        return _combine([_formula(p, rows, n, limit) for p in node.parts], rows.size, n, "any")
    if isinstance(node, S.AllOf):
        periodic = [p for p in node.parts if getattr(p, "kind", None) == "periodic"]
        others = [_formula(p, rows, n, limit) for p in node.parts if getattr(p, "kind", None) != "periodic"]
        if periodic and others:  # the periodic parts only where the others can hold keys
            lo, hi = _envelope(others[0])
            for o in others[1:]:
                o_lo, o_hi = _envelope(o)
                lo, hi = np.maximum(lo, o_lo), np.minimum(hi, o_hi)
            others += [_checked(_periodic(rows.size, n, p.progression(rows, n), (lo, hi), limit), limit)
                       for p in periodic]
            return _combine(others, rows.size, n, "all")
        return _combine([_formula(p, rows, n, limit) for p in node.parts], rows.size, n, "all")
    if isinstance(node, S.Not):
        return _combine([_formula(node.part, rows, n, limit)], rows.size, n, "none")
    if isinstance(node, S.Scaled):  # a pattern over blocks: its atoms over tokens
        return _formula(S.scale(node.part, node.size, n), rows, n, limit)
    return _checked(_atom(node, rows, n, limit), limit)


def _checked(keys: RowKeys, limit) -> RowKeys:
    if limit is not None and keys.lo.size > limit:
        raise TooManyIntervals(keys.lo.size)
    return keys


def _at_most_one_per_row(keys: RowKeys) -> bool:
    return bool((keys.own[1:] > keys.own[:-1]).all())


def _clipped(keys: RowKeys, lo: np.ndarray, hi: np.ndarray, n: int) -> RowKeys:
    """``keys`` intersected with the one interval [lo, hi) of each row: every interval
    clipped to it (they stay sorted and disjoint), without a sweep."""
    return _clean(keys.m, n, keys.own, np.maximum(keys.lo, lo[keys.own]), np.minimum(keys.hi, hi[keys.own]))


def _combine(sets, m, n, how) -> RowKeys:
    if how == "any":
        return _sweep(m, n, sets, lambda c: c >= 1)
    if how == "all":
        # Operands with at most one interval per row (causal, a window) intersect to one
        # interval per row; the others are clipped to it, in O(intervals) (`logsparse &
        # causal` at n = 2^24 spent most of check in the sweep's sort).
        single = [s for s in sets if _at_most_one_per_row(s)]
        if single:
            lo, hi = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
            first = single[0]
            lo[first.own], hi[first.own] = first.lo, first.hi
            for s in single[1:]:
                s_lo, s_hi = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
                s_lo[s.own], s_hi[s.own] = s.lo, s.hi
                lo, hi = np.maximum(lo, s_lo), np.minimum(hi, s_hi)
            rest = [s for s in sets if not any(s is t for t in single)]
            if not rest:
                return _clean(m, n, np.arange(m, dtype=np.int64), lo, hi)
            inner = rest[0] if len(rest) == 1 else _sweep(m, n, rest, lambda c: c == len(rest))
            return _clipped(inner, lo, hi, n)
        k = len(sets)
        return _sweep(m, n, sets, lambda c: c == k)
    return _sweep(m, n, sets, lambda c: c == 0)


# Public for patterndsl/grid.py, which combines the runs of its grids' rows the same way.
combine = _combine


def row_keys(pattern, rows, n: int, limit: "int | None" = None) -> RowKeys:
    """The keys of each row of ``rows`` (int64) as interval lists; raises TooManyIntervals
    when an intermediate result holds more than ``limit`` intervals."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)

    def walk(node, rows):
        m = rows.size
        if isinstance(node, Primitive):
            return _formula(node.row_structure(n), rows, n, limit)
        if isinstance(node, Union):
            out = _combine([walk(p, rows) for p in node.parts], m, n, "any")
        elif isinstance(node, (Intersection, Difference)):
            out = _meet(node, rows, n, walk)
        elif isinstance(node, Complement):
            out = _combine([walk(node.operand, rows)], m, n, "none")
        else:  # any other node (blocks { }, grid { }) states its rows' structure itself
            runs = node.row_keys(rows, n) if hasattr(node, "row_keys") else None  # a grid's runs of keys
            return _checked(runs, limit) if runs is not None else _formula(node.row_structure(n), rows, n, limit)
        return _checked(out, limit)

    return walk(pattern, rows)


def _meet(node, rows, n: int, walk) -> RowKeys:
    """An intersection (or a difference: its left side minus its right), the operands that
    list points (random, logsparse) last, each operand read only on the rows that still hold
    keys: `rows(45..75) & random(n - 1)` draws 30 rows, not n rows of n − 1 keys."""
    m = rows.size
    if isinstance(node, Difference):
        steps = [(node.left, False), (node.right, True)]
    else:
        steps = sorted(((p, False) for p in node.parts), key=lambda step: _lists_points(step[0]))
    out = None
    for part, removed in steps:
        alive = np.arange(m, dtype=np.int64) if out is None else _distinct_rows(out)
        if alive.size == 0:
            return out
        keys = walk(part, rows[alive])
        keys = RowKeys(m, alive[keys.own], keys.lo, keys.hi)
        if removed:  # rows outside `alive` get every key here, and none from `out`
            keys = _combine([keys], m, n, "none")
        out = keys if out is None else _combine([out, keys], m, n, "all")
    return out


def _distinct_rows(keys: RowKeys) -> np.ndarray:
    """The rows holding intervals: ``own`` is sorted, so its distinct values are where it
    changes (np.unique sorted it again: 13% of `check` of logsparse & causal at 2^20)."""
    own = keys.own
    first = np.ones(own.size, dtype=bool)
    first[1:] = own[1:] != own[:-1]
    return own[first]


def _lists_points(node) -> bool:
    stack = [node]
    while stack:
        node = stack.pop()
        if getattr(node, "point_backed", False):
            return True
        stack.extend(node.children())
    return False


_ALL: dict = {}  # the last few patterns' rows (one check reads them for several rules)
_ALL_KEPT = 4
_ALL_INTERVALS = 1 << 22  # keep a pattern's rows only when they hold at most this many intervals


def all_rows(pattern, n: int, limit: "int | None" = None, batch: int = 1 << 16):
    """(rows, RowKeys) for every row of [0, n), a batch at a time (read-only arrays)."""
    key = (id(pattern), n, batch)
    hit = _ALL.get(key)
    if hit is not None and hit[0] is pattern:
        yield from hit[1]
        return
    kept, total = [], 0
    for start in range(0, n, batch):
        rows = np.arange(start, min(n, start + batch), dtype=np.int64)
        keys = row_keys(pattern, rows, n, limit)
        for a in (rows, keys.own, keys.lo, keys.hi):
            a.setflags(write=False)
        total += keys.lo.size
        if kept is not None:
            kept.append((rows, keys))
            if total > _ALL_INTERVALS:
                kept = None
        yield rows, keys
    if kept is not None:
        if len(_ALL) >= _ALL_KEPT:
            _ALL.pop(next(iter(_ALL)))
        _ALL[key] = (pattern, kept)


def row_period(pattern, n: int) -> "int | None":
    """A p with the keys of row i depending on i mod p only (row i + p holds row i's keys),
    or None when none is known from the structure: 1 for a pattern the same in every row
    (summary), s for stride(s). The union graph (analysis/graph.py) then reads p rows, not n
    (summary(4096, 2) at n = 2^20 held 2^28 intervals over its n rows, 256 over one)."""
    def lcm(periods):
        out = 1
        for p in periods:
            if p is None:
                return None
            out = int(np.lcm(out, p))
        return out

    def formula(node):
        if isinstance(node, (S.AnyOf, S.AllOf)):
            return lcm(formula(p) for p in node.parts)
        if isinstance(node, S.Not):
            return formula(node.part)
        if isinstance(node, S.Scaled):
            return formula(S.scale(node.part, node.size, n))
        if isinstance(node, (S.Span, S.ColumnResidues)):
            return 1
        if isinstance(node, S.Residue):
            return node.s
        if isinstance(node, S.RowResidues):
            return node.b
        if isinstance(node, (S.ScaledInterval, S.ScaledProgression)):  # block row ⌊i/size⌋
            inner = formula(node.inner)
            return None if inner is None else inner * node.size
        return None

    def walk(node):
        if isinstance(node, Primitive):
            return formula(node.row_structure(n))
        if isinstance(node, Union):
            return lcm(walk(p) for p in node.parts)
        if isinstance(node, (Intersection, Difference)):
            return lcm(walk(p) for p in node.children())
        if isinstance(node, Complement):
            return walk(node.operand)
        if hasattr(node, "row_keys") or not hasattr(node, "row_structure"):
            return None  # a grid's runs of keys
        return formula(node.row_structure(n))  # blocks { }, as row_keys reads it

    return walk(pattern)
