"""An independent checker for condition certificates: it accepts only what it re-checks.

It shares no code with patterndsl.analysis. Pairs are tested with the primitives'
element predicates (``Primitive.pairs``); whole rows come from this module's own
encoding of every primitive's meaning (DESIGN.md §1) as a union of key intervals per
row, combined with union and complement only (``_KeySets``). That counter costs the
number of key intervals of each row — linear in n × degree, never an n × n mask.

Certificate schema (``patterndsl.analysis.conditions.certificate``), JSON:

    {"format": "patterndsl-certificate/2", "source_sha256": hex or null,
     "n": int, "layers": p, "heads": H,
     "prob": {"name": "softmax" | "sparsemax" | "entmax(α)", "assumption2": bool},
     "nonempty_rows": {"holds": bool | null, "empty_row": [layer, head, i] | null,
                       "evidence": [{"layer", "head", "holds",
                                     "keys": "diagonal" | [key of row i, for every i] | "counts",
                                     "empty_row": i (when holds is false)}]},
     "conditions": [{"head": h,
        "self_loops": {"holds": true} | {"holds": false, "missing": [layer, head, i]},
        "hamiltonian_path":
            {"holds": true, "witness": "identity" | "reversed" | [γ(0), …, γ(n−1)]
                                       | {"runs": [[start, stop, step], …]}}
          | {"holds": false, "refutation": {"kind": "two_start_sets" | "two_end_sets",
                                            "sets": [ranges, ranges]}
                                         | {"kind": "split", "removed": ranges, "pieces": [ranges, …]}
                                         | {"kind": "exhaustive"}}
          | {"holds": null, "reason": str},
        "finite_depth":
            {"holds": false, "unreachable": [i, j], "evidence": {"closed": ranges}}
          | {"holds": false, "evidence": {"recursion_cycles": [t0, t1]} | {"empty_rows": [i per layer]}
                                         | {"empty_column": j}
                                         | {"binary_cycle": [t0, t1], "missing_each": [[i, j], …]}
                                         | {"support_after": {"steps": m, "key": j}, "missing_each": [[i, j], …]}
                                         | {"periodic": {"root", "out": [parent of v], "period": g}}}
          | {"holds": true, "s": int | null, "s_bounds": [lo, hi],
             "evidence": {"hub": {"token", "row_step", "column_step"}, "chain": true,
                          "recursion": true, "intervals": true, "distances": true, "full_first": true,
                          "aperiodic": true,
                          "trees": {"root": r, "out": [parent of v], "in": [parent of v]},
                          "missing_first": [i, j], "missing_before": [i, j],
                          "cover": {"step": t, "tokens": [h, …]}, "union_cover": {"step": t, "tokens": [h, …]},
                          "common_cover": {"step": t, "tokens": ranges}, "full_rows": {"step": t},
                          "missing_each": [[i, j] per step < lo]}}
          | {"holds": null, "s_bounds": [lo, null], "evidence": {...}, "reason": str}}],
     "counts": optional {"per_layer": [[count of layer k, head h]], "union": [per head]}}

``ranges`` are lists of half-open [lo, hi). What each piece of evidence proves, and how
it is re-checked:
  * counts: every row's keys re-counted here, per layer and for the union of layers (a
    grid whose operand is a box of cells — window, natten, sliding_tiles, chunk, their
    meets — by the box's volume, every cell a token below n).
  * nonempty rows: every row of every layer and head re-evaluated (or, cheaper, the
    diagonal or the listed keys tested); a claimed empty row re-evaluated.
  * witness: expanded to a permutation (a run is range(start, stop, step)); every step
    γ(t) ∈ ∪_k A^k_{γ(t+1)} tested.
  * two_start_sets: two disjoint non-empty sets whose rows attend only inside themselves
    (in every layer): each must hold γ(0), so there is no Hamiltonian path.
    two_end_sets: two disjoint sets no outside row attends into: each must hold γ(n − 1).
    few_successors: every row outside "others" attends no token of "tokens" but itself, so
    each token's successor on the path lies in others; few_predecessors: every token's
    keys but itself lie in others, so each token's predecessor does; either way the
    tokens but one need distinct others: |others| < |tokens| − 1 refutes a path.
    split {"removed": ranges K, "pieces": [ranges, …] (|K| + 1 of them)}: the pieces and the
    tokens outside K and every piece (a further, non-empty piece) partition the tokens
    outside K, and no row outside K attends a token outside K of another piece (in any
    layer). A path minus K leaves at most |K| + 1 runs of consecutive tokens, each inside
    one piece (consecutive tokens are joined by an edge): |K| + 2 pieces refute a path.
    exhaustive: only for n ≤ 12, where this module searches every path itself.
  * closed: a set R whose rows attend only inside R, i ∈ R, j ∉ R: j ∉ S^t_i for all t.
  * recursion_cycles [t0, t1]: t0 < t1, t0 ≡ t1 (mod p), S^{t0} = S^{t1} and no S^t
    (t ≤ t1) is everything: the sequence is periodic from t0, so s is infinite
    (recomputed densely with packed rows: small n only).
  * hub: row h full in layer (row_step − 1) mod p, column h full in layer
    (column_step − 1) mod p, row_step < column_step: S^{column_step} = J when
    (row_step, column_step) = (1, 2), or given C1 (re-checked here). So s ≤ column_step.
  * chain: U holds (i, i−1) and (i, i+1) for all i, and C1: s ≤ p(n − 1).
  * trees: an out-tree (v ∈ A_{out[v]} in some layer) and an in-tree (in[v] ∈ A_v) of U
    rooted at r, both reaching every token: the diameter D of U is at most the sum of
    their heights, and given C1, s ≤ p·D. With one layer and no C1: s ≤ the sum of the
    heights when the root has a self-loop (walk in, wait, walk out); with "aperiodic",
    the period (below) is re-computed as 1, so A is primitive and s ≤ (n − 1)² + 1.
  * full_first: every row of layer 0 is everything: s = 1.
  * empty_rows: an empty row in every layer: every S^t has one, s is infinite.
  * periodic: one layer, an out-tree of U, and g = gcd over the edges u → v of
    depth(u) + 1 − depth(v) re-computed from every row, g ≥ 2: every cycle length is a
    multiple of g, the keys of row i in S^t lie in one class mod g: s is infinite.
  * recursion: S^t recomputed densely for t ≤ hi (small n): both bounds.
  * distances (one layer, C1): S^t_i is the ball of radius t out of i in A, so s is
    max(1, the largest distance of A), found by a BFS out of every token (scipy) on the
    edges read from this module's key sets, metered n × (edges + n): both bounds.
  * intervals: every row of every layer is one interval [lo_k(i), hi_k(i)) holding i,
    with lo_k and hi_k non-decreasing in i. Then S^t_i is an interval too, S^t = J
    exactly when S^t_{n−1} ∋ 0 and S^t_0 ∋ n − 1, and s is computed exactly by composing
    lo and hi along the layers: both bounds.
  * cover {"step": t ≥ 2, "tokens": H}: every row of layer k(t) attends a token of H, and
    S^{t−1}_x = [n] for each x ∈ H (recomputed for row x alone, without assuming C1):
    S^t_i ⊇ S^{t−1}_x = [n] for every i, so s ≤ t.
  * union_cover {"step": t ≥ 2, "tokens": H}: for every row i of layer k(t), the tokens of
    H that i attends have S^{t−1} (recomputed for each token alone, without assuming C1)
    whose union is [n]: S^t_i ⊇ that union, so s ≤ t. Each row's attended tokens are
    tested pair by pair (more than 16 tokens: read from every row's intervals); rows
    attending the same tokens share one union.
  * common_cover {"step": t ≥ 2, "tokens": ranges C}: every row of layer k(t) attends every
    token of C (counted in each row's intervals), and C pushed through layers k(t − 1), …,
    k(1) (without assuming C1) is [n]: S^t_i ⊇ ∪_{c ∈ C} S^{t−1}_c = [n], so s ≤ t.
  * support_after {"steps": m, "key": j} with missing_each (m − 1 pairs): R_m =
    F_{k(1)}(… F_{k(m)}([n])) (F_k(X) the keys of X's rows in layer k), recomputed, misses
    j; S^t_i ⊆ R_t ⊆ R_m for t ≥ m, and the pairs show S^t ≠ J for t < m: s is infinite.
  * empty_column j: no row of layer 0 attends j; every S^t_i lies in the keys of layer 0,
    so s is infinite.
  * full_rows {"step": t}: G_1, Z_1 the full and empty rows of layer 0; G_t the rows of
    layer k(t) attending a token of G_{t−1} (so S^t_i = [n]), Z_t those attending only
    tokens of Z_{t−1} (S^t_i = ∅), recomputed from every row's intervals; G_t = [n]: s ≤ t.
  * binary_cycle [t0, t1] with missing_each (t0 − 1 pairs): G_t ∪ Z_t = [n] and G_t ≠ [n]
    for t0 ≤ t ≤ t1 (every S^t known exactly), G_{t0} = G_{t1}, t1 − t0 a multiple of p:
    the states repeat from t0, and with the pairs no S^t is J: s is infinite.
  * missing_each [[i_1, j_1], …, [i_{lo−1}, j_{lo−1}]]: j_t ∉ S^t_{i_t} for every t < lo,
    each recomputed without assuming C1: so s ≥ lo.
  * missing_first: j ∉ A^0_i, so s ≥ 2. missing_before: given C1 (so S^t grows with t),
    j ∉ S^{lo−1}_i, recomputed for row i alone by pushing {i} through the layers
    k(lo − 1), …, k(1): so s ≥ lo.
Every piece of evidence present is re-checked, also where another piece (or an exact s)
already settles the claim: one false statement and the certificate is refused.
Each claim's check is metered in key intervals and pairs touched; a claim whose check
would pass ``budget`` units is listed as unchecked (``verify_report``'s "unchecked") —
never accepted. `patterndsl verify` exits 4 then (``--budget`` raises it).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import randomgen
from .grid import Grid, GridPrimitive, GridTransposed
from .ir import Blocked, Complement, Difference, Intersection, Union
from .primitives import (All, Causal, Chunk, Cols, Dilated, Global, LogSparse, Nothing, Primitive, Random, Rows,
                         Self, Stride, Summary, SummaryRows, Window)
from .primitives import Bernoulli

FORMAT = "patterndsl-certificate/2"
ASSUMPTION2 = {"softmax": True, "sparsemax": True}  # and entmax(α), α ∈ (1, 2], which the language enforces
DEFAULT_BUDGET = 1 << 31  # key intervals / pairs touched per claim
EXHAUSTIVE_N = 12  # an "exhaustive" C2 refutation is searched again up to this n
_BATCH = 1 << 15  # rows evaluated at a time
_GRID_PAIR_UNITS = 16  # a grid pair's cells and relation, as units of the budget
_LISTED_KEY_UNITS = 8  # a progression's key listed as an interval: ~80 ns (merged, intersected), not 1 unit's ~10
_DENSE_CELLS = 1 << 22  # pairs of a primitive without an encoding evaluated at once


class OverBudget(Exception):
    """A claim's check would pass the budget."""


class _Meter:
    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0

    def add(self, units) -> None:
        self.used += int(units)
        if self.used > self.budget:
            raise OverBudget(self.used)


# ---- key sets: the keys of a batch of rows as sorted, disjoint intervals ---------------


class _KeySets:
    """For m rows, the sets of keys as intervals [lo, hi) owned by row ``own`` (0 ≤ own < m),
    sorted by (own, lo), disjoint and not touching."""

    __slots__ = ("m", "own", "lo", "hi")

    def __init__(self, m, own, lo, hi):
        self.m, self.own, self.lo, self.hi = m, own, lo, hi

    @staticmethod
    def make(m, own, lo, hi, n, presorted=False):
        """Normalize any list of intervals (overlapping, possibly empty; sorted by
        (own, lo) already when ``presorted``)."""
        own = np.asarray(own, dtype=np.int64)
        lo = np.minimum(np.maximum(np.asarray(lo, dtype=np.int64), 0), n)  # np.clip, 5× faster
        hi = np.minimum(np.maximum(np.asarray(hi, dtype=np.int64), 0), n)
        keep = lo < hi
        if not keep.all():
            own, lo, hi = own[keep], lo[keep], hi[keep]
        if own.size == 0:
            return _KeySets(m, own, lo, hi)
        span = n + 1
        if not presorted:
            # One int64 key per interval (m · (n + 1) < 2^63); a stable sort merges the
            # sorted runs that unions concatenate quickly.
            key = own * span + lo
            if not (key[1:] >= key[:-1]).all():
                order = np.argsort(key, kind="stable")
                own, lo, hi = own[order], lo[order], hi[order]
        new_row = own[1:] != own[:-1]
        if (new_row | (lo[1:] >= hi[:-1])).all():
            reach = hi  # no interval overlaps the one before it: only touching ones merge
        else:
            # Running maximum of hi within each row: rows are sorted, so offset them apart.
            reach = np.maximum.accumulate(own * span + hi) - own * span
        starts = np.ones(own.size, dtype=bool)
        starts[1:] = new_row | (lo[1:] > reach[:-1])
        first = np.flatnonzero(starts)
        last = np.append(first[1:], own.size) - 1
        return _KeySets(m, own[first], lo[first], reach[last])

    def sizes(self) -> np.ndarray:
        """The number of keys of each row."""
        return np.bincount(self.own, weights=self.hi - self.lo, minlength=self.m).astype(np.int64)

    def nonempty(self) -> np.ndarray:
        out = np.zeros(self.m, dtype=bool)
        out[self.own] = True
        return out


def _union(sets: list, n: int) -> _KeySets:
    m = sets[0].m
    return _KeySets.make(m, np.concatenate([s.own for s in sets]), np.concatenate([s.lo for s in sets]),
                         np.concatenate([s.hi for s in sets]), n)


def _complement(s: _KeySets, n: int) -> _KeySets:
    """Row r's gaps, in order: [0, lo_1), [hi_1, lo_2), …, [hi_c, n) ([0, n) for an empty
    row). Row r's c_r + 1 gaps go to places first_r + r …, so each interval k writes its
    lo as the end of gap k + own_k and its hi as the start of the next: sorted already,
    no sort; only the empty gaps (an interval at 0 or at n) are dropped."""
    own, lo, hi, m = s.own, s.lo, s.hi, s.m
    at = np.arange(own.size, dtype=np.int64) + own
    out_lo = np.zeros(own.size + m, dtype=np.int64)
    out_hi = np.full(own.size + m, n, dtype=np.int64)
    out_hi[at] = lo
    out_lo[at + 1] = hi
    out_own = np.repeat(np.arange(m, dtype=np.int64), np.bincount(own, minlength=m) + 1)
    keep = out_lo < out_hi
    if keep.all():
        return _KeySets(m, out_own, out_lo, out_hi)
    return _KeySets(m, out_own[keep], out_lo[keep], out_hi[keep])


def _one_a_row(s: _KeySets) -> bool:
    """At most one interval in each row."""
    return bool((s.own[1:] > s.own[:-1]).all())


def _clipped(s: _KeySets, a: np.ndarray, b: np.ndarray) -> _KeySets:
    """Row r's intervals cut to [a_r, b_r): sorted, disjoint and apart still."""
    lo, hi = np.maximum(s.lo, a[s.own]), np.minimum(s.hi, b[s.own])
    keep = lo < hi
    if keep.all():
        return _KeySets(s.m, s.own, lo, hi)
    return _KeySets(s.m, s.own[keep], lo[keep], hi[keep])


def _intersection(sets: list, n: int) -> _KeySets:
    """The sets with at most one interval a row (causal, window, chunk, …) met as one
    interval [a_r, b_r) per row that cuts the others' intervals; any others met by
    complements (~(~A ∪ ~B))."""
    if len(sets) == 1:
        return sets[0]
    single = [s for s in sets if _one_a_row(s)]
    others = [s for s in sets if not any(s is t for t in single)]
    if not single:
        return _complement(_union([_complement(s, n) for s in sets], n), n)
    m = sets[0].m
    a, b = np.zeros(m, dtype=np.int64), np.full(m, n, dtype=np.int64)
    for s in single:
        lo, hi = np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)  # a row without one: empty
        lo[s.own], hi[s.own] = s.lo, s.hi
        a, b = np.maximum(a, lo), np.minimum(b, hi)
    if not others:
        rows = np.flatnonzero(a < b)
        return _KeySets(m, rows, a[rows], b[rows])
    rest = others[0] if len(others) == 1 else _complement(_union([_complement(s, n) for s in others], n), n)
    return _clipped(rest, a, b)


def _in_indices(indices, x: np.ndarray) -> np.ndarray:
    starts = np.array([a for a, _ in indices.intervals] or [0], dtype=np.int64)
    ends = np.array([b for _, b in indices.intervals] or [0], dtype=np.int64)
    k = np.searchsorted(starts, x, side="right") - 1
    return (k >= 0) & (x < ends[np.maximum(k, 0)])


def _spans(m, n, pieces) -> _KeySets:
    """The same intervals in every row."""
    pieces = list(pieces)
    own = np.repeat(np.arange(m, dtype=np.int64), len(pieces))
    lo = np.tile(np.array([a for a, _ in pieces] or [0], dtype=np.int64)[:len(pieces)], m)
    hi = np.tile(np.array([b for _, b in pieces] or [0], dtype=np.int64)[:len(pieces)], m)
    return _KeySets.make(m, own, lo, hi, n)


def _points(m, n, keys: np.ndarray) -> _KeySets:
    """Keys [m, k], -1 or out of range for no key."""
    keys = np.sort(np.where((keys >= 0) & (keys < n), keys, n), axis=1)  # no key: n, an empty interval
    own = np.repeat(np.arange(m, dtype=np.int64), keys.shape[1])
    flat = keys.reshape(-1)
    return _KeySets.make(m, own, flat, flat + 1, n, presorted=True)


def _progression(m, n, first, step, last, meter) -> _KeySets:
    """Keys first_i, first_i + step, … ≤ last_i per row (0 ≤ first_i)."""
    count = np.maximum(0, (last - first) // step + 1)
    meter.add(count.sum() * _LISTED_KEY_UNITS)
    own = np.repeat(np.arange(m, dtype=np.int64), count)
    offset = np.arange(own.size, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    keys = np.repeat(first, count) + offset * step
    return _KeySets.make(m, own, keys, keys + 1, n, presorted=True)


def _limit(value: int, n: int) -> int:
    """Distances beyond n change nothing inside [0, n)."""
    return max(-(n + 1), min(n + 1, value))


def _primitive_keys(node: Primitive, rows: np.ndarray, n: int, meter: _Meter) -> _KeySets:
    m = rows.size
    every = np.arange(m, dtype=np.int64)
    if isinstance(node, Bernoulli):  # its own hash, below, over whole rows
        meter.add(m * n)
        own, keys = np.nonzero(_bernoulli_rows(node, rows, n))
        return _KeySets.make(m, own, keys, keys + 1, n)
    if isinstance(node, All):
        return _KeySets(m, every, np.zeros(m, dtype=np.int64), np.full(m, n, dtype=np.int64))
    if isinstance(node, Nothing):
        return _KeySets.make(m, [], [], [], n)
    if isinstance(node, Self):
        return _KeySets(m, every, rows.copy(), rows + 1)
    if isinstance(node, Causal):
        return _KeySets(m, every, np.zeros(m, dtype=np.int64), rows + 1)
    if isinstance(node, Window):
        return _KeySets.make(m, every, rows - _limit(node.left, n), rows + _limit(node.right, n) + 1, n)
    if isinstance(node, Chunk):  # ⌊(i + o)/b⌋ = ⌊(j + o)/b⌋
        o = getattr(node, "offset", 0)
        b = min(node.b, n + 1) if o == 0 else node.b
        start = (rows + o) // b * b - o
        return _KeySets.make(m, every, start, start + b, n)
    if getattr(node, "name", None) == "intervals":  # ⌊i/q⌋ = ⌊j/k⌋: keys t·k … t·k + k − 1, t = ⌊i/q⌋
        start = rows // node.q * node.k
        return _KeySets.make(m, every, np.minimum(start, n), np.minimum(start + node.k, n), n)
    if isinstance(node, Dilated):
        d, reach = min(node.d, n + 1), min(node.w * node.d, n + 1)
        if d == 1:
            return _KeySets.make(m, every, rows - reach, rows + reach + 1, n)
        span = reach // d * d  # the farthest multiple of d within reach
        return _progression(m, n, np.maximum(rows - span, rows % d), d, np.minimum(rows + span, n - 1), meter)
    if isinstance(node, Stride):  # (i − j − o) mod s = 0: j ≡ i − o (mod s)
        o = getattr(node, "offset", 0)
        s = min(node.s, n + 1) if o == 0 else node.s
        if s == 1:
            return _KeySets(m, every, np.zeros(m, dtype=np.int64), np.full(m, n, dtype=np.int64))
        return _progression(m, n, (rows - o) % s, s, np.full(m, n - 1, dtype=np.int64), meter)
    if isinstance(node, Summary):  # (j + o) mod b ≥ b − c
        if node.c >= node.b:
            return _spans(m, n, [(0, n)])
        o = getattr(node, "offset", 0) % node.b
        chunks = -(-(n + o) // node.b)
        meter.add(chunks * m)
        ends = np.arange(1, chunks + 1, dtype=np.int64) * node.b - o
        lo = np.tile(np.maximum(ends - node.c, 0), m)
        hi = np.tile(np.minimum(ends, n), m)
        return _KeySets.make(m, np.repeat(np.arange(m, dtype=np.int64), chunks), lo, hi, n, presorted=True)
    if isinstance(node, SummaryRows):  # transpose(summary): the rows (i + o) mod b ≥ b − c hold every key
        meter.add(m)
        full = np.flatnonzero(node.held_rows(rows))
        return _KeySets(m, full, np.zeros(full.size, dtype=np.int64), np.full(full.size, n, dtype=np.int64))
    if isinstance(node, (Global, Rows, Cols)):
        inside = _in_indices(node.indices, rows) if not isinstance(node, Cols) else np.zeros(m, dtype=bool)
        full = np.flatnonzero(inside)
        meter.add(m * max(1, len(node.indices.intervals)))
        parts = [_KeySets(m, full, np.zeros(full.size, dtype=np.int64), np.full(full.size, n, dtype=np.int64))]
        if not isinstance(node, Rows):
            parts.append(_spans(m, n, node.indices.intervals))
        return _union(parts, n)
    if isinstance(node, LogSparse):
        powers = [1 << t for t in range(max(n - 1, 0).bit_length())]
        offsets = np.array([0] + powers + [-p for p in powers], dtype=np.int64)
        meter.add(m * offsets.size)
        return _points(m, n, rows[:, None] + offsets[None, :])
    if isinstance(node, Random) and getattr(node, "avoid", None) is None:  # (with avoid: by rows below)
        meter.add(m * min(node.r, n))
        return _points(m, n, randomgen.key_sets(node.seed, rows, n, node.r))
    if getattr(node, "reads_segments", False) and _no_segment_ids():
        # one document (every id equal): `segment` holds at every key, `segment_start(k)` at j < k
        last = n if type(node).__name__ == "Segment" else min(int(node.k), n)
        return _KeySets.make(m, every, np.zeros(m, dtype=np.int64), np.full(m, last, dtype=np.int64), n)
    # A primitive without an encoding here: its element predicate over whole rows, a few rows
    # at a time, each row's keys kept as its runs (intervals): the memory is that of the key
    # sets, not of m × n pairs (`segment` at n = 2^20 is one interval per row, not 2^20 keys).
    meter.add(m * n)
    keys = np.arange(n, dtype=np.int64)[None, :]
    owns, los, his = ([np.zeros(0, dtype=np.int64)] for _ in range(3))
    step = max(1, _DENSE_CELLS // max(n, 1))
    for start in range(0, m, step):
        batch = rows[start:start + step]
        dense = np.broadcast_to(np.asarray(node.predicate(batch[:, None], keys, n), dtype=bool), (batch.size, n))
        edges = np.diff(dense, axis=1, prepend=False, append=False)  # True where a run starts or ends
        own, at = np.nonzero(edges)
        owns.append(own[0::2] + start)  # each run: its start, then the key after its end
        los.append(at[0::2])
        his.append(at[1::2])
    return _KeySets(m, *(np.concatenate(parts).astype(np.int64) for parts in (owns, los, his)))


def _no_segment_ids() -> bool:
    from .segments import current

    return current() is None


# bernoulli(p, q, seed=s), from the README's definition (not patterndsl.randomgen's code):
# two lanes of eight rounds x ← ((x ⊕ v ⊕ C) · A) mod 65521, fed i mod 2^16, ⌊i/2^16⌋, 0,
# j mod 2^16, ⌊j/2^16⌋, a seed word, 0, 0; h = (a mod 2^15)·2^15 + b mod 2^15, and the
# pair holds when h·q < p·2^30.
_B_LANES = (((31321, 0x9E37), (24593, 0x79B9), (30011, 0x7F4A), (27449, 0x7C15),
             (19183, 0xBF58), (28277, 0x476D), (22921, 0x1CE4), (25117, 0xE5B9)),
            ((29573, 0x94D0), (25819, 0x49BB), (32603, 0x1331), (21001, 0x11EB),
             (26951, 0x2545), (23827, 0xF491), (31079, 0x4F6C), (20507, 0xDD1D)))


def _splitmix(x: int) -> int:
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def _bernoulli_hash(seed: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    z = _splitmix(seed)
    words = [(z >> shift) & 0xFFFF for shift in (0, 16, 32, 48)]
    i, j = np.asarray(i, dtype=np.uint64), np.asarray(j, dtype=np.uint64)
    out = []
    for lane, (start, word) in zip(_B_LANES, ((words[0], words[2]), (words[1], words[3]))):
        fed = (i & 0xFFFF, i >> 16, 0, j & 0xFFFF, j >> 16, word, 0, 0)
        x = np.uint64(start)
        for (a, c), v in zip(lane, fed):
            x = (x ^ np.uint64(c) ^ np.asarray(v, dtype=np.uint64)) * np.uint64(a) % np.uint64(65521)
        out.append(x & np.uint64(0x7FFF))
    return (out[0] << np.uint64(15)) | out[1]


def _bernoulli_rows(node, rows: np.ndarray, n: int) -> np.ndarray:
    """Bool [len(rows), n]: the keys of each row."""
    i, j = np.asarray(rows, dtype=np.int64)[:, None], np.arange(n, dtype=np.int64)[None, :]
    return _bernoulli_at(node, i, j)


def _bernoulli_at(node, i, j) -> np.ndarray:
    if getattr(node, "swapped", False):
        i, j = j, i
    if node.p == 0:
        return np.zeros(np.broadcast_shapes(np.shape(i), np.shape(j)), dtype=bool)
    # h·q < p·2^30 ⇔ h ≤ ⌊(p·2^30 − 1)/q⌋ for integers h ≥ 0 and p ≥ 1
    top = ((node.p << 30) - 1) // node.q
    return _bernoulli_hash(node.seed, i, j) <= np.uint64(min(top, (1 << 30)))


def _keys(node, rows: np.ndarray, n: int, meter: _Meter) -> _KeySets:
    """The keys of every row in ``rows`` (int64) of the pattern ``node``."""
    if isinstance(node, Primitive):
        out = _primitive_keys(node, rows, n, meter)
    elif isinstance(node, Union):
        out = _union([_keys(p, rows, n, meter) for p in node.parts], n)
    elif isinstance(node, Intersection):
        out = _intersection([_keys(p, rows, n, meter) for p in node.parts], n)
    elif isinstance(node, Difference):
        out = _intersection([_keys(node.left, rows, n, meter),
                             _complement(_keys(node.right, rows, n, meter), n)], n)
    elif isinstance(node, Complement):
        out = _complement(_keys(node.operand, rows, n, meter), n)
    elif isinstance(node, Grid):
        out = _grid_keys(node, rows, n, meter)
    elif isinstance(node, Blocked):
        brows, back = _block_rows(rows, node.block)
        out = _scaled(_keys(node.operand, brows, -(-n // node.block), meter), back, node.block, n)
    else:  # any other node answers for itself: its predicate over whole rows
        meter.add(rows.size * n)
        dense = np.asarray(node.predicate(rows[:, None], np.arange(n, dtype=np.int64)[None, :], n), dtype=bool)
        own, keys = np.nonzero(dense)
        out = _KeySets.make(rows.size, own, keys, keys + 1, n)
    meter.add(out.lo.size + rows.size)
    return out


def _block_rows(rows: np.ndarray, block: int):
    """(the distinct block rows ⌊r/B⌋, sorted; each row's place among them), as np.unique's
    return_inverse; without its sort when the rows come sorted (every batch of the counts)."""
    q = rows // block
    if q.size and (q[1:] >= q[:-1]).all():
        new = np.ones(q.size, dtype=bool)
        new[1:] = q[1:] != q[:-1]
        return q[new], np.cumsum(new) - 1
    return np.unique(q, return_inverse=True)


def _scaled(inner: _KeySets, back: np.ndarray, block: int, n: int) -> _KeySets:
    """`blocks(B) { P }`: (i, j) holds exactly when (⌊i/B⌋, ⌊j/B⌋) is in P (README), so row
    r's keys are block row back[r]'s key intervals [lo, hi) of P read as tokens
    [lo·B, min(hi·B, n)): intervals stay sorted, disjoint and apart."""
    per = np.bincount(inner.own, minlength=inner.m).astype(np.int64)
    first = np.cumsum(per) - per
    count = per[back]
    own = np.repeat(np.arange(back.size, dtype=np.int64), count)
    at = np.repeat(first[back] - np.cumsum(count) + count, count) + np.arange(own.size, dtype=np.int64)
    return _KeySets(back.size, own, inner.lo[at] * block, np.minimum(inner.hi[at] * block, n))


def _constant(node) -> bool:
    """Whether every row of ``node`` has the same keys (read from its structure only)."""
    if isinstance(node, (All, Nothing, Summary, Cols)):
        return True
    if isinstance(node, (Union, Intersection)):
        return all(_constant(part) for part in node.parts)
    if isinstance(node, Difference):
        return _constant(node.left) and _constant(node.right)
    if isinstance(node, Complement):
        return _constant(node.operand)
    if isinstance(node, Blocked):
        return _constant(node.operand)
    return False


def _split(node, rows: np.ndarray, n: int, meter: _Meter):
    """The keys of ``rows`` as (K, V): row r's keys are K ∪ V_r, K (a bool mask over the
    keys, or None for none) the same for every row. A union's row-independent parts
    (summary, cols, … : `_constant`) are evaluated for one row only, so a row costs its
    own few intervals, not the thousands of a summary's."""
    mask, V, prog = _split3(node, rows, n, meter)
    if prog is not None:
        V = _union([V, _listed(prog, n, meter)], n)
    return mask, V


_SPLITS: list = []  # the last few (node, rows, n, segment ids, split): a batch's layer met again (|A ∩ B|) is not re-read


def _split3(node, rows: np.ndarray, n: int, meter: _Meter):
    """(K, V, P): `_split`'s K and V, and P, None or one long progression per row
    (`_long_progression`), row r's keys being K ∪ V_r ∪ P_r. The same node and rows
    array (the very objects) as one of the last few calls: that answer, read again."""
    from .segments import current

    ids = current()  # (segment primitives read the ids in force)
    for seen, at, size, under, out in _SPLITS:
        if seen is node and at is rows and size == n and under is ids:
            return out
    out = _split3_new(node, rows, n, meter)
    if len(_SPLITS) >= 8:
        del _SPLITS[0]
    _SPLITS.append((node, rows, n, ids, out))
    return out


def _split3_new(node, rows: np.ndarray, n: int, meter: _Meter):
    m = rows.size
    if _constant(node):
        def every_row():
            keys = _keys(node, np.zeros(1, dtype=np.int64), n, meter)
            meter.add(n // 64 + 1)
            marks = np.zeros(n + 1, dtype=np.int64)
            np.add.at(marks, keys.lo, 1)
            np.add.at(marks, keys.hi, -1)
            return np.cumsum(marks[:n]) > 0

        return _remember(("constant", node, n), (), every_row), _KeySets.make(m, [], [], [], n), None
    if isinstance(node, Union):
        parts = [_split3(part, rows, n, meter) for part in node.parts]
        masks = [mask for mask, _, _ in parts if mask is not None]
        progs = [prog for _, _, prog in parts if prog is not None]
        listed = [V for _, V, _ in parts] + [_listed(prog, n, meter) for prog in progs[1:]]
        return _combined(masks, np.logical_or) if masks else None, _union(listed, n), (progs[0] if progs else None)
    if isinstance(node, Blocked):
        nb = -(-n // node.block)
        brows, back = _block_rows(rows, node.block)
        mask, inner = _split(node.operand, brows, nb, meter)
        if mask is not None:
            mask = _remember(("blocks", id(mask), node.block, n), (mask,), lambda: np.repeat(mask, node.block)[:n])
        return mask, _scaled(inner, back, node.block, n), None
    prog = _long_progression(node, rows, n)
    if prog is not None:
        meter.add(m)
        return None, _KeySets.make(m, [], [], [], n), prog
    return None, _keys(node, rows, n, meter), None


_LONG = 64  # a stride or dilation with at least this many keys a row is counted by arithmetic, not listed


def _long_progression(node, rows, n):
    """(s, r, a, b): row x's keys of `stride` or `dilated` (the same keys as _primitive_keys
    lists) as those in [a_x, b_x) congruent to r_x mod s; None for other nodes or few keys."""
    if isinstance(node, Stride):
        o = getattr(node, "offset", 0)
        s = min(node.s, n + 1) if o == 0 else node.s
        if s > 1 and n // s >= _LONG:
            return s, (rows - o) % s, np.zeros(rows.size, dtype=np.int64), np.full(rows.size, n, dtype=np.int64)
    if isinstance(node, Dilated) and node.d > 1:
        d, reach = min(node.d, n + 1), min(node.w * node.d, n + 1)
        span = reach // d * d
        if span // d >= _LONG:
            return d, rows % d, np.maximum(rows - span, 0), np.minimum(rows + span, n - 1) + 1
    return None


def _listed(prog, n, meter) -> _KeySets:
    s, r, a, b = prog
    return _progression(r.size, n, a + (r - a) % s, s, b - 1, meter)


def _in_class(r, s, lo, hi) -> np.ndarray:
    """#{x ∈ [lo, hi): x ≡ r (mod s)} (0 when hi ≤ lo)."""
    return np.where(hi > lo, (hi - 1 - r) // s - (lo - 1 - r) // s, 0)


def _class_prefix(mask: np.ndarray, s: int) -> np.ndarray:
    """Q[x] = #{y < x: y ∈ mask, y ≡ x (mod s)} for 0 ≤ x < (⌊n/s⌋ + 2)·s."""
    padded = np.zeros((mask.size // s + 2) * s, dtype=np.int64)
    padded[:mask.size] = mask
    return (np.cumsum(padded.reshape(-1, s), axis=0) - padded.reshape(-1, s)).reshape(-1)


def _class_mask_count(Q, r, s, lo, hi) -> np.ndarray:
    """#{x ∈ mask ∩ [lo, hi): x ≡ r (mod s)}, from Q = _class_prefix(mask, s)."""
    hi = np.maximum(lo, hi)
    return Q[hi + (r - hi) % s] - Q[lo + (r - lo) % s]


def _split3_sizes(mask, V: _KeySets, prog, meter) -> np.ndarray:
    """|K ∪ V_x ∪ P_x| = |K ∪ V_x| + |P_x| − |P_x ∩ V_x| − |P_x ∩ K| + |P_x ∩ K ∩ V_x|, by
    arithmetic on each row's few intervals (V disjoint: _KeySets)."""
    sizes = _split_sizes(mask, V)
    if prog is None:
        return sizes
    s, r, a, b = prog
    meter.add(V.lo.size + r.size)
    own = V.own
    lo, hi = np.maximum(V.lo, a[own]), np.minimum(V.hi, b[own])
    sizes = sizes + _in_class(r, s, a, b) - np.bincount(own, weights=_in_class(r[own], s, lo, hi),
                                                        minlength=V.m).astype(np.int64)
    if mask is not None:
        meter.add(mask.size // 64 + 1)
        Q = _class_prefix(mask, s)
        sizes = sizes - _class_mask_count(Q, r, s, a, b) + np.bincount(
            own, weights=_class_mask_count(Q, r[own], s, lo, hi), minlength=V.m).astype(np.int64)
    return sizes


def _measure(ks: _KeySets, cum: np.ndarray) -> np.ndarray:
    """Per row, Σ over its intervals of cum[hi] − cum[lo] (cum a prefix count over the keys)."""
    return np.bincount(ks.own, weights=cum[ks.hi] - cum[ks.lo], minlength=ks.m).astype(np.int64)


_MASKS: dict = {}  # row-independent masks, made once: a `_constant` node's, prefix counts, combinations


def _remember(key, keep, make):
    hit = _MASKS.get(key)
    if hit is None or not all(a is b for a, b in zip(hit[0], keep)):
        if len(_MASKS) >= 16:
            _MASKS.clear()
        hit = _MASKS[key] = (keep, make())
    return hit[1]


def _prefix(mask: np.ndarray) -> np.ndarray:
    return _remember(("prefix", id(mask)), (mask,), lambda: np.concatenate([[0], np.cumsum(mask, dtype=np.int64)]))


def _combined(masks: list, how) -> np.ndarray:
    """how.reduce(masks), computed once for the same (row-independent) masks."""
    if len(masks) == 1:
        return masks[0]
    return _remember((how.__name__, *map(id, masks)), tuple(masks), lambda: how.reduce(masks))


def _hits(ch, k, h, rows, C: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """|A^k_r ∩ C| for each row r (cum = _prefix(C)): |K ∩ C| + |V_r ∩ C| − |V_r ∩ K ∩ C|."""
    mask, V = _split(ch.layer(k, h), np.asarray(rows, dtype=np.int64), ch.n, ch.meter)
    if mask is None:
        return _measure(V, cum)
    both = mask & C
    ch.meter.add(ch.n // 64 + 1)
    return int(both.sum()) + _measure(V, cum) - _measure(V, _prefix(both))


def _batches(rows: np.ndarray):
    for start in range(0, rows.size, _BATCH):
        yield rows[start:start + _BATCH]


_BERNOULLI_PAIR_UNITS = 4  # its hash: two lanes of eight rounds of numpy passes


def _pair_units(node) -> int:
    """Units of the budget for testing one pair of ``node`` (`_pairs`): one a primitive, a
    grid's _GRID_PAIR_UNITS, a bernoulli's hash _BERNOULLI_PAIR_UNITS; a combination the
    sum of its parts (an upper bound: a union stops at the first part that holds)."""
    if isinstance(node, Bernoulli):
        return _BERNOULLI_PAIR_UNITS
    if isinstance(node, Grid):
        return _GRID_PAIR_UNITS
    if isinstance(node, (Union, Intersection)):
        return sum(_pair_units(part) for part in node.parts)
    if isinstance(node, Difference):
        return _pair_units(node.left) + _pair_units(node.right)
    if isinstance(node, (Complement, Blocked)):
        return _pair_units(node.operand)
    return 1


def _pairs(node, i, j, n) -> np.ndarray:
    """Bool [m]: (i[k], j[k]) in the pattern; a union stops at the first part that holds a
    pair, an intersection at the first that lacks it."""
    if isinstance(node, Bernoulli):
        return _bernoulli_at(node, np.asarray(i), np.asarray(j)).reshape(-1)
    if isinstance(node, Grid):
        return _grid_pairs(node, i, j, n)
    if isinstance(node, Primitive):
        return np.asarray(node.pairs(i, j, n), dtype=bool)
    if isinstance(node, Blocked):
        return _pairs(node.operand, np.asarray(i) // node.block, np.asarray(j) // node.block, -(-n // node.block))
    if isinstance(node, Complement):
        return ~_pairs(node.operand, i, j, n)
    if isinstance(node, Difference):
        parts, wanted = (node.left, Complement(node.right)), True
    elif isinstance(node, (Union, Intersection)):
        parts, wanted = node.parts, isinstance(node, Intersection)
    else:
        return np.asarray(node.pairs(i, j, n), dtype=bool)  # any other node (blocks { }) answers for itself
    out = np.full(i.size, wanted)
    for part in parts:
        open_ = np.flatnonzero(out == wanted)  # pairs the parts so far have not settled
        if open_.size == 0:
            break
        out[open_] = _pairs(part, i[open_], j[open_], n)
    return out


# ---- grids: this module's own reading of the grid constructs (README, issue 12) ----------
# Nothing of patterndsl/grid.py's evaluation is used: the cell of a token comes from the
# documented orders (raster; tile by tile, raster inside a tile; rank of the Z-code), the
# relation from the table's formulas. Only the nodes' parameters are read.

_MORTON_ORDERS: dict = {}


def _verify_morton_order(dims: tuple) -> np.ndarray:
    """int64 [cells]: the raster rank of the t-th cell when cells go by the rank of their
    Z-code (the coordinates' bits interleaved, the column's lowest)."""
    if dims not in _MORTON_ORDERS:
        cells = int(np.prod(dims))
        coords = np.unravel_index(np.arange(cells, dtype=np.int64), dims)
        bits = max(int(d - 1).bit_length() for d in dims)
        if bits * len(dims) <= 62:  # the codes as int64, bit by bit over all cells at once
            code = np.zeros(cells, dtype=np.int64)
            for b in range(bits):
                for place, axis in enumerate(range(len(dims) - 1, -1, -1)):  # the column first
                    code |= ((coords[axis].astype(np.int64) >> b) & 1) << (b * len(dims) + place)
            order = np.argsort(code, kind="stable").astype(np.int64)
        else:
            codes = []
            for t in range(cells):
                code = 0
                for b in range(bits):
                    for place, axis in enumerate(range(len(dims) - 1, -1, -1)):  # the column first
                        code |= ((int(coords[axis][t]) >> b) & 1) << (b * len(dims) + place)
                codes.append(code)
            order = np.array(sorted(range(cells), key=codes.__getitem__), dtype=np.int64)
        if len(_MORTON_ORDERS) >= 8:
            _MORTON_ORDERS.clear()
        _MORTON_ORDERS[dims] = order
    return _MORTON_ORDERS[dims]


def _grid_cells(node, t, n):
    """(inside, coordinates per axis (frame first), raster rank) of tokens t in ``node``'s grid."""
    t = np.asarray(t, dtype=np.int64)
    dims, cells = tuple(node.dims), int(np.prod(node.dims))
    local = t - node.offset
    inside = (local >= 0) & (local < cells) & (t < n)
    local = np.where(inside, local, 0)
    if node.order == "morton":
        rank = _verify_morton_order(dims)[local]
        coords = list(np.unravel_index(rank, dims))
    elif node.tile is not None:
        tile = tuple(node.tile)
        tiles = tuple(d // s for d, s in zip(dims, tile))
        per_tile = int(np.prod(tile))
        which = np.unravel_index(local // per_tile, tiles)
        within = np.unravel_index(local % per_tile, tile)
        coords = [w * s + x for w, s, x in zip(which, tile, within)]
        rank = np.ravel_multi_index(coords, dims)
    else:
        coords, rank = list(np.unravel_index(local, dims)), local
    return inside, [np.asarray(c, dtype=np.int64) for c in coords], np.asarray(rank, dtype=np.int64)


def _natten_holds(x, y, k, length):
    """y among NATTEN's keys of x: [c − ⌊k/2⌋, c + ⌊(k−1)/2⌋], c = clamp(x, ⌊k/2⌋, L − 1 − ⌊(k−1)/2⌋)."""
    if k >= length:
        return np.ones(np.broadcast(x, y).shape, dtype=bool)
    centre = np.clip(x, k // 2, length - 1 - (k - 1) // 2)
    return (y >= centre - k // 2) & (y <= centre + (k - 1) // 2)


def _grid_relation(node, a, b, ra, rb, dims, tile):
    """Bool: cells a and b (coordinates, raster ranks ra, rb) related by the operand ``node``."""
    if isinstance(node, Union):
        return np.logical_or.reduce([_grid_relation(p, a, b, ra, rb, dims, tile) for p in node.parts])
    if isinstance(node, Intersection):
        return np.logical_and.reduce([_grid_relation(p, a, b, ra, rb, dims, tile) for p in node.parts])
    if isinstance(node, Difference):
        return (_grid_relation(node.left, a, b, ra, rb, dims, tile)
                & ~_grid_relation(node.right, a, b, ra, rb, dims, tile))
    if isinstance(node, Complement):
        return ~_grid_relation(node.operand, a, b, ra, rb, dims, tile)
    if isinstance(node, GridTransposed):
        return _grid_relation(node.operand, b, a, rb, ra, dims, tile)
    if not isinstance(node, GridPrimitive):  # 1D patterns apply to the raster ranks
        return _pairs(node, ra, rb, int(np.prod(dims)))
    name, values = node.name, tuple(getattr(node, "values", ()))
    if name in ("window2d", "window3d"):
        return np.logical_and.reduce([np.abs(x - y) <= r for x, y, r in zip(a, b, values)])
    if name in ("natten", "natten3d"):
        return np.logical_and.reduce([_natten_holds(x, y, k, d) for x, y, k, d in zip(a, b, values, dims)])
    if name in ("sliding_tiles", "sliding_tiles3d"):
        return np.logical_and.reduce([_natten_holds(x // s, y // s, k, d // s)
                                      for x, y, k, d, s in zip(a, b, values, dims, tile)])
    if name in ("chunk2d", "chunk3d"):
        shifts = tuple(node.shifts) or (0,) * len(dims)
        return np.logical_and.reduce([np.floor_divide(x - s, size) == np.floor_divide(y - s, size)
                                      for x, y, size, s in zip(a, b, values, shifts)])
    if name == "stride2d":
        return np.logical_and.reduce([(x - y) % s == 0 for x, y, s in zip(a, b, values)])
    if name == "manhattan":
        return np.abs(a[0] - b[0]) + np.abs(a[1] - b[1]) <= node.d
    if name == "euclid":
        return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 <= node.d ** 2
    raise ValueError(f"verify does not know the grid primitive {name}")  # refused, never trusted


def _grid_pairs(node, i, j, n) -> np.ndarray:
    """Bool [m]: (i[k], j[k]) in the grid node, by this module's own evaluation."""
    inside_i, a, ra = _grid_cells(node, i, n)
    inside_j, b, rb = _grid_cells(node, j, n)
    out = inside_i & inside_j
    todo = np.flatnonzero(out)
    if todo.size:
        out[todo] = _grid_relation(node.operand, [x[todo] for x in a], [y[todo] for y in b], ra[todo], rb[todo],
                                   tuple(node.dims), node.tile)
    return out


def _grid_keys(node, rows: np.ndarray, n: int, meter: _Meter) -> _KeySets:
    """The keys of ``rows`` in the grid node: each row inside the grid against every token
    of the grid (rows × cells pairs, metered at _GRID_PAIR_UNITS each: a pair costs a few
    dozen numpy passes, and at one unit each the budget of one claim was 100 s of CPU)."""
    tokens = np.arange(node.offset, min(n, node.offset + int(np.prod(node.dims))), dtype=np.int64)
    inside = np.flatnonzero((rows >= node.offset) & (rows < node.offset + tokens.size))
    meter.add(inside.size * tokens.size * _GRID_PAIR_UNITS)
    step = max(1, _BATCH // max(1, tokens.size))
    own, keys = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for start in range(0, inside.size, step):
        part = inside[start:start + step]
        i, j = np.repeat(rows[part], tokens.size), np.tile(tokens, part.size)
        held = _grid_pairs(node, i, j, n)
        own.append(np.repeat(part, tokens.size)[held])
        keys.append(j[held])
    keys = np.concatenate(keys)
    return _KeySets.make(rows.size, np.concatenate(own), keys, keys + 1, n)


_BOX_NAMES = ("window2d", "window3d", "natten", "natten3d", "sliding_tiles", "sliding_tiles3d", "chunk2d", "chunk3d")


def _grid_box(node, a, dims, tile):
    """Per axis (lo, hi): the cells b related to cell a by the operand ``node`` are exactly
    the box ∏ [lo, hi) (the same formulas as `_grid_relation`, solved for b), or None
    for an operand that is not such a box (1D patterns but all and self, stride2d,
    manhattan, euclid, transpose, |, -, ~)."""
    if isinstance(node, Intersection):
        boxes = [_grid_box(p, a, dims, tile) for p in node.parts]
        if any(box is None for box in boxes):
            return None
        return [(np.max([box[x][0] for box in boxes], axis=0), np.min([box[x][1] for box in boxes], axis=0))
                for x in range(len(dims))]
    if isinstance(node, All):
        return [(np.zeros_like(x), np.full_like(x, d)) for x, d in zip(a, dims)]
    if isinstance(node, Self):
        return [(x, x + 1) for x in a]
    if not isinstance(node, GridPrimitive) or node.name not in _BOX_NAMES:
        return None
    values = tuple(getattr(node, "values", ()))
    if len(values) != len(dims):
        return None
    name, out = node.name, []
    if name.startswith("sliding_tiles") and (tile is None or len(tile) != len(dims) or min(tile) < 1):
        return None
    shifts = tuple(getattr(node, "shifts", ()) or ()) or (0,) * len(dims)
    if name.startswith("chunk") and (len(shifts) != len(dims) or min(values) < 1):
        return None
    for axis, (x, d, v) in enumerate(zip(a, dims, values)):
        if name.startswith("window"):  # |x − y| ≤ v
            lo, hi = x - v, x + v + 1
        elif name.startswith("natten") or name.startswith("sliding_tiles"):
            s = tile[axis] if name.startswith("sliding_tiles") else 1
            length, at = (d // s, x // s)
            if v >= length:  # every key (y // s < length or not)
                lo, hi = np.zeros_like(x), np.full_like(x, d)
            else:  # y // s in [c − ⌊v/2⌋, c + ⌊(v − 1)/2⌋]
                centre = np.clip(at, v // 2, length - 1 - (v - 1) // 2)
                lo, hi = (centre - v // 2) * s, (centre + (v - 1) // 2 + 1) * s
        else:  # chunk: ⌊(x − t)/v⌋ = ⌊(y − t)/v⌋
            start = np.floor_divide(x - shifts[axis], v) * v + shifts[axis]
            lo, hi = start, start + v
        out.append((np.maximum(lo, 0), np.minimum(hi, d)))
    return out


def _box_grid(node, n: int) -> bool:
    """A grid that `_grid_box_sizes` counts: its operand a box; every cell a token below n,
    or the grid in raster or tile order (its tokens below n are its first cells in that order)."""
    if not isinstance(node, Grid) or node.offset < 0:
        return False
    if node.offset + int(np.prod(node.dims)) > n and node.order == "morton":
        return False
    probe = [np.zeros(1, dtype=np.int64) for _ in node.dims]
    return _grid_box(node.operand, probe, tuple(node.dims), None if node.tile is None else tuple(node.tile)) is not None


def _ranked_below(box, shape, step, L):
    """(Σ over the cells t of a grid ``shape`` whose raster rank is below L of ∏ over the axes
    of |box_a ∩ [t_a·step_a, (t_a + 1)·step_a)|, the digits of L in that grid). L's digits
    one axis at a time: the cells whose first digits equal L's and whose next is below it."""
    total = np.zeros(np.shape(L), dtype=np.int64)
    weight = np.ones(np.shape(L), dtype=np.int64)
    widths = [np.maximum(hi - lo, 0) for lo, hi in box]
    rem, digits = np.asarray(L, dtype=np.int64), []
    for axis, ((lo, hi), s) in enumerate(zip(box, step)):
        stride = int(np.prod(shape[axis + 1:]))
        digit, rem = rem // stride, rem % stride
        digits.append(digit)
        rest = np.ones_like(total)
        for w in widths[axis + 1:]:
            rest = rest * w
        total = total + weight * np.maximum(np.minimum(hi, digit * s) - lo, 0) * rest
        weight = weight * np.maximum(np.minimum(hi, (digit + 1) * s) - np.maximum(lo, digit * s), 0)
    return total, digits


def _grid_box_sizes(node, rows: np.ndarray, n: int, meter: _Meter) -> "np.ndarray | None":
    """The number of keys of each row of a grid whose operand is a box of cells
    (`_grid_box`): ∏ (hi − lo) for the rows inside the grid, 0 outside; None when the
    operand is no box. A grid past n holds its first L = n − offset cells (in raster or tile
    order): the box's cells of raster rank below L, or those in the tiles of rank below
    ⌊L/T⌋ (T cells a tile) and those of tile ⌊L/T⌋ ranked below L mod T inside it."""
    if not _box_grid(node, n):
        return None
    dims, cells = tuple(node.dims), int(np.prod(node.dims))
    tile = None if node.tile is None else tuple(node.tile)
    meter.add(rows.size * (len(dims) + 1) * (1 if node.offset + cells <= n else 4))
    inside, a, _ = _grid_cells(node, rows, n)
    box = _grid_box(node.operand, a, dims, tile)
    if node.offset + cells <= n:
        sizes = np.ones(rows.size, dtype=np.int64)
        for lo, hi in box:
            sizes *= np.maximum(hi - lo, 0)
    elif tile is None:
        sizes = _ranked_below(box, dims, (1,) * len(dims), np.full(rows.size, n - node.offset))[0]
    else:
        per_tile = int(np.prod(tile))
        L = np.full(rows.size, n - node.offset, dtype=np.int64)
        whole, t = _ranked_below(box, tuple(d // s for d, s in zip(dims, tile)), tile, L // per_tile)
        within = [(np.clip(lo - ta * s, 0, s), np.clip(hi - ta * s, 0, s)) for (lo, hi), ta, s in zip(box, t, tile)]
        sizes = whole + _ranked_below(within, tile, (1,) * len(dims), L % per_tile)[0]
    return np.where(inside, sizes, 0)


# ---- the checker --------------------------------------------------------------------------


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _index(x, n) -> bool:
    return _int(x) and 0 <= x < n


def _members(ranges, n) -> np.ndarray:
    if not isinstance(ranges, list):
        raise ValueError("ranges must be a list of [lo, hi)")
    out = np.zeros(n, dtype=bool)
    for r in ranges:
        if not (isinstance(r, list) and len(r) == 2 and _int(r[0]) and _int(r[1]) and 0 <= r[0] < r[1] <= n):
            raise ValueError(f"bad range {r!r}")
        out[r[0]:r[1]] = True
    return out


class _Claims:
    """The checks of one certificate; each claim is checked under its own meter."""

    def __init__(self, compiled, budget):
        self.c = compiled
        self.n = compiled.n
        self.p = compiled.layers
        self.budget = budget
        self.failures: list[str] = []
        self.unchecked: list[str] = []
        self.meter = _Meter(budget)
        self._c1: dict = {}
        self._diagonals: dict = {}

    def run(self, name, check, *args):
        """Run one claim's check; it returns a failure text or None."""
        self.meter = _Meter(self.budget)
        try:
            why = check(*args)
        except OverBudget as exc:
            self.unchecked.append(f"{name}: needs more than the budget of {self.budget:,} units "
                                  f"(passed it at {exc.args[0]:,})")
            return
        if why:
            self.failures.append(f"{name}: {why}")

    def layer(self, k, h):
        return self.c.patterns[k][h]

    def has(self, k, h, i, j) -> np.ndarray:
        i = np.asarray(i, dtype=np.int64).reshape(-1)
        j = np.asarray(j, dtype=np.int64).reshape(-1)
        node = self.layer(k, h)
        self.meter.add(max(i.size, j.size) * _pair_units(node))
        return np.asarray(_pairs(node, i, j, self.n), dtype=bool)

    def union_has(self, h, i, j) -> np.ndarray:
        """Whether some layer holds (i, j): each layer asked only about the pairs the layers
        before it lack."""
        i, j = (np.asarray(x, dtype=np.int64).reshape(-1) for x in np.broadcast_arrays(i, j))
        out = np.zeros(i.size, dtype=bool)
        for k in range(self.p):
            open_ = np.flatnonzero(~out)
            if open_.size == 0:
                break
            out[open_] = self.has(k, h, i[open_], j[open_])
        return out

    def diagonal(self, k, h) -> bool:
        """Whether layer k of head h holds every (i, i); read once per pattern (the same
        pattern in several heads, C1 and the nonempty rows' diagonal evidence)."""
        from .segments import current

        node = self.layer(k, h)
        if current() is not None:  # (segment primitives read the ids in force)
            idx = np.arange(self.n, dtype=np.int64)
            return bool(self.has(k, h, idx, idx).all())
        if node not in self._diagonals:
            idx = np.arange(self.n, dtype=np.int64)
            self._diagonals[node] = bool(self.has(k, h, idx, idx).all())
        return self._diagonals[node]

    def rows(self, k, h, rows) -> _KeySets:
        return _keys(self.layer(k, h), np.asarray(rows, dtype=np.int64), self.n, self.meter)

    def c1(self, h) -> bool:
        """C1 for head h, decided here (a claim may rest on it)."""
        if h not in self._c1:
            self._c1[h] = all(self.diagonal(k, h) for k in range(self.p))
        return self._c1[h]

    def full_row(self, k, h, i) -> bool:
        ks = self.rows(k, h, [i])
        return bool(ks.sizes()[0] == self.n)

    def leaves(self, h, X: np.ndarray, rows_of=None) -> bool:
        """Whether a row of ``rows_of`` (default X) attends outside X ∪ {itself} in some layer."""
        inside = X.copy()
        cum = np.concatenate([[0], np.cumsum(inside)])
        for k in range(self.p):
            for rows in _batches(np.flatnonzero(X if rows_of is None else rows_of)):
                ks = self.rows(k, h, rows)
                token = rows[ks.own]
                own_outside = ((ks.lo <= token) & (token < ks.hi) & ~inside[token]).astype(np.int64)
                outside = (ks.hi - ks.lo) - (cum[ks.hi] - cum[ks.lo]) - own_outside
                if outside.any():
                    return True
        return False

    def attends_into(self, h, X: np.ndarray, rows_of) -> bool:
        """Whether a row of ``rows_of`` attends a token of X other than itself."""
        cum = np.concatenate([[0], np.cumsum(X)])
        for k in range(self.p):
            for rows in _batches(np.flatnonzero(rows_of)):
                ks = self.rows(k, h, rows)
                token = rows[ks.own]
                own_inside = ((ks.lo <= token) & (token < ks.hi) & X[token]).astype(np.int64)
                if ((cum[ks.hi] - cum[ks.lo]) - own_inside).any():
                    return True
        return False

    def dense(self, k, h) -> np.ndarray:
        """The bool n × n mask of one layer, from the key sets (small n only)."""
        n = self.n
        self.meter.add(n * n // 8 + n)
        out = np.zeros((n, n), dtype=bool)
        for rows in _batches(np.arange(n, dtype=np.int64)):
            ks = self.rows(k, h, rows)
            own, keys = _expand(ks)
            out[rows[own], keys] = True
        return out

    def recursion(self, h, upto, keep=()):
        """Runs S^1, …, S^upto (rows packed 64 keys a uint64 word; S^{t+1}_i is the OR of the
        rows S^t_j, j ∈ A^{k(t+1)}_i): (the steps t with S^t = J, {t: S^t for t in keep}).
        A step reads each key's row of S (metered keys × words), or, where cheaper (dense
        layers), builds per 8 keys j the 256 ORs of their rows of S and reads one of them
        per row ((n/8 + 1)·(256 + n) × words)."""
        n, p = self.n, self.p
        words = max(1, -(-n // 64))
        layers = []
        for k in range(p):
            rows_of, keys_of = [], []
            for rows in _batches(np.arange(n, dtype=np.int64)):
                own, keys = _expand(self.rows(k, h, rows))
                rows_of.append(rows[own])
                keys_of.append(keys)
            rows_k, keys_k = np.concatenate(rows_of), np.concatenate(keys_of)
            tabled = (n // 8 + 1) * (256 + n) < rows_k.size
            if tabled:  # the layer's rows as bytes: bit b of byte c of row i is key 8c + b
                self.meter.add(n * n // 8 + n)
                mask = np.zeros((n, n), dtype=bool)
                mask[rows_k, keys_k] = True
                layers.append((True, np.packbits(mask, axis=1, bitorder="little")))
                del mask
            else:
                layers.append((False, (rows_k, keys_k)))

        def packed(mask):
            out = np.zeros((mask.shape[0], words * 8), dtype=np.uint8)
            out[:, :-(-n // 8)] = np.packbits(mask, axis=1, bitorder="little")
            return out.view(np.uint64)

        full_row = packed(np.ones((1, n), dtype=bool))[0]
        tabled, first_layer = layers[0]
        if tabled:
            S = np.zeros((n, words * 8), dtype=np.uint8)
            S[:, :first_layer.shape[1]] = first_layer
            S = S.view(np.uint64)
        else:
            first = np.zeros((n, n), dtype=bool)
            first[first_layer[0], first_layer[1]] = True
            S = packed(first)
            del first
        full, kept = [], {}
        for t in range(1, upto + 1):
            if t > 1:
                tabled, layer = layers[(t - 1) % p]
                new = np.zeros_like(S)
                if tabled:
                    self.meter.add((n // 8 + 1) * (256 + n) * words + n)
                    table = np.zeros((256, words), dtype=np.uint64)
                    for c in range(layer.shape[1]):
                        for b in range(8):
                            j = 8 * c + b
                            table[1 << b:2 << b] = table[:1 << b] | (S[j] if j < n else np.uint64(0))
                        new |= table[layer[:, c]]
                else:
                    rows_k, keys_k = layer
                    self.meter.add(rows_k.size * words + n)
                    if rows_k.size:
                        starts = np.flatnonzero(np.concatenate([[True], rows_k[1:] != rows_k[:-1]]))
                        ends = np.append(starts[1:], rows_k.size)
                        per = max(1, (1 << 22) // words)  # gather about 32 MiB at a time
                        a = 0
                        while a < starts.size:  # whole rows per slice
                            b = max(a + 1, int(np.searchsorted(ends, starts[a] + per, side="right")))
                            lo, hi = starts[a], ends[b - 1]
                            new[rows_k[starts[a:b]]] = np.bitwise_or.reduceat(S[keys_k[lo:hi]], starts[a:b] - lo,
                                                                               axis=0)
                            a = b
                S = new
            if (S == full_row).all():
                full.append(t)
            if t in keep:
                kept[t] = S.copy()
            if full and not keep:
                break
        return full, kept


def _expand(ks: _KeySets):
    """(row index within the batch, key) of every key."""
    lengths = ks.hi - ks.lo
    own = np.repeat(ks.own, lengths)
    keys = np.repeat(ks.lo, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return own, keys


# ---- per claim -----------------------------------------------------------------------------


_COUNT_ENTRIES = 1 << 17  # intervals per batch of the count re-check (its arrays then stay in cache)


def _count_batches(ch: _Claims, h, n: int):
    """Rows 0..n-1 in batches of about _COUNT_ENTRIES intervals over all layers (the width
    measured on the first rows), at most _BATCH rows: 2–3× faster than _BATCH rows for
    patterns with hundreds of keys per row (random)."""
    probe = np.unique(np.linspace(0, n - 1, min(n, 256)).astype(np.int64))  # (spread: `summary & causal` widens)
    width = max(1, sum(_width(ch.layer(k, h), probe, n, ch.meter) for k in range(ch.p)
                       if not (ch.p == 1 and _box_grid(ch.layer(k, h), n))) // max(1, probe.size))
    step = max(256, min(_BATCH, _COUNT_ENTRIES // width))
    for start in range(0, n, step):
        ch.meter.add(_BATCH_UNITS)
        yield np.arange(start, min(n, start + step), dtype=np.int64)


_BATCH_UNITS = 1 << 14  # a batch's fixed cost (~100 numpy calls of a few µs), as units of the budget


def _width(node, rows: np.ndarray, n: int, meter: _Meter) -> int:
    """The key intervals the count of ``rows`` lists (the intervals of `_split3`'s V; an
    intersection's parts but the row-independent ones): a long progression counted by
    arithmetic lists none of its keys."""
    if isinstance(node, Intersection):
        return sum(_width(part, rows, n, meter) for part in node.parts if not _constant(part))
    return int(_split3(node, rows, n, meter)[1].lo.size)


_PADDED_INTERVALS = 8  # a row's other keys as at most this many intervals: tested key by key, column by column


def _row_sizes(node, rows: np.ndarray, n: int, meter: _Meter) -> np.ndarray:
    """The number of keys of each row in ``rows``. A union with one `random(r)` part (no
    avoid) is counted as |others| + k − |random keys inside the others|: the k random keys
    of a row are distinct (DESIGN.md §1), so they are tested against the other parts' few
    intervals, never merged with them (merging them was most of verify's time for bigbird).
    Any other pattern: the sizes of its key sets."""
    if isinstance(node, Union):
        randoms = [p for p in node.parts if isinstance(p, Random) and getattr(p, "avoid", None) is None]
        others = [p for p in node.parts if not any(p is q for q in randoms)]
        if len(randoms) == 1 and others:
            rest = _union([_keys(p, rows, n, meter) for p in others], n)
            per_row = np.bincount(rest.own, minlength=rows.size)
            width = int(per_row.max()) if rest.own.size else 0
            if width <= _PADDED_INTERVALS:
                source = randoms[0]
                meter.add(rows.size * min(source.r, n) * max(1, width))
                keys = randomgen.key_sets(source.seed, rows, n, source.r).view(np.uint64)
                first = np.searchsorted(rest.own, np.arange(rows.size), side="left")
                slot = np.arange(rest.own.size) - first[rest.own]  # the interval's place in its row
                lo = np.zeros((rows.size, max(1, width)), dtype=np.int64)
                size = np.zeros_like(lo)
                lo[rest.own, slot] = rest.lo
                size[rest.own, slot] = rest.hi - rest.lo
                inside = np.zeros(keys.shape, dtype=bool)
                for t in range(width):  # lo ≤ key < hi as one unsigned comparison
                    inside |= (keys - lo[:, t:t + 1].view(np.uint64)) < size[:, t:t + 1].view(np.uint64)
                return rest.sizes() + keys.shape[1] - inside.sum(axis=1)
    if isinstance(node, Intersection):
        return _meet_sizes(node.parts, rows, n, meter)
    if isinstance(node, Grid):  # an operand that is a box of cells: its volume
        sizes = _grid_box_sizes(node, rows, n, meter)
        if sizes is not None:
            return sizes
    return _split3_sizes(*_split3(node, rows, n, meter), meter)


def _meet_sizes(parts, rows: np.ndarray, n: int, meter: _Meter) -> np.ndarray:
    """|∩ parts| for each row, nested intersections flattened: the row-independent parts
    as one mask K_c, one part that splits as K_s ∪ V_r (a union with row-independent
    parts: `_split`), the others' key sets intersected as W_r. With X_r = V_r ∩ W_r (a
    row's few intervals), |K_c ∩ (K_s ∪ V_r) ∩ W_r| = |K_c ∩ K_s ∩ W_r| + |K_c ∩ X_r| −
    |K_c ∩ K_s ∩ X_r|, each from prefix counts of a mask: `summary(l, c) & causal` or
    phi3's `blocks(64) { window(15, 0) | summary(8, 1) } & causal` cost a row's own
    intervals, not the summary's thousands."""
    flat, todo = [], list(parts)
    while todo:
        part = todo.pop()
        if isinstance(part, Intersection):
            todo.extend(part.parts)
        else:
            flat.append(part)
    fixed = [part for part in flat if _constant(part)]
    rest = [part for part in flat if not _constant(part)]
    Kc = _combined([_split(part, rows[:1], n, meter)[0] for part in fixed], np.logical_and) if fixed else None
    Ks, V = None, None
    for at, part in enumerate(rest):
        if isinstance(part, (Union, Blocked)):
            mask, V_part = _split(part, rows, n, meter)
            if mask is not None:
                Ks, V = mask, V_part
                rest = rest[:at] + rest[at + 1:]
                break
    prog = None
    if Ks is None:  # one long progression P (stride, dilated) met with few intervals: by arithmetic
        for at, part in enumerate(rest):
            prog = _long_progression(part, rows, n)
            if prog is not None:
                rest = rest[:at] + rest[at + 1:]
                meter.add(rows.size)
                break
    W = _intersection([_keys(part, rows, n, meter) for part in rest], n) if rest else _spans(rows.size, n, [(0, n)])
    meter.add(n // 64 + 1)
    if prog is not None:  # |Kc ∩ W_x ∩ P_x|: per interval of W_x, its keys ≡ r_x (mod s) in [a_x, b_x)
        s, r, a, b = prog
        own = W.own
        meter.add(W.lo.size + rows.size)
        lo, hi = np.maximum(W.lo, a[own]), np.minimum(W.hi, b[own])
        if Kc is None:
            per = _in_class(r[own], s, lo, hi)
        else:
            per = _class_mask_count(_remember(("class", id(Kc), s), (Kc,), lambda: _class_prefix(Kc, s)),
                                    r[own], s, lo, hi)
        return np.bincount(own, weights=per, minlength=W.m).astype(np.int64)
    if Ks is None:
        return W.sizes() if Kc is None else _measure(W, _prefix(Kc))
    both = Ks if Kc is None else _combined([Kc, Ks], np.logical_and)
    X = _intersection([V, W], n)
    return _measure(W, _prefix(both)) + (X.sizes() if Kc is None else _measure(X, _prefix(Kc))) - _measure(X, _prefix(both))


def _split_sizes(mask, V: _KeySets) -> np.ndarray:
    """|K ∪ V_r| = |K| + |V_r| − |V_r ∩ K| for each row (K = mask, or none)."""
    if mask is None:
        return V.sizes()
    return int(mask.sum()) + V.sizes() - _measure(V, _prefix(mask))


def _check_counts(ch: _Claims, counts) -> str | None:
    if not isinstance(counts, dict):
        return "malformed counts"
    per_layer, union = counts.get("per_layer"), counts.get("union")
    if not (isinstance(per_layer, list) and len(per_layer) == ch.p
            and all(isinstance(r, list) and len(r) == ch.c.heads for r in per_layer)
            and isinstance(union, list) and len(union) == ch.c.heads):
        return "counts need one entry per layer and head, and one union per head"
    n = ch.n
    totals = [[0] * ch.c.heads for _ in range(ch.p)]
    unions = [0] * ch.c.heads
    done: dict = {}
    for h in range(ch.c.heads):
        key = tuple(ch.layer(k, h) for k in range(ch.p))
        if key not in done:
            layer_totals, union_total = [0] * ch.p, 0
            for rows in _count_batches(ch, h, n):
                if ch.p == 1:
                    sizes = int(_row_sizes(ch.layer(0, h), rows, n, ch.meter).sum())
                    layer_totals[0] += sizes
                    union_total += sizes
                    continue
                sizes = [_row_sizes(ch.layer(k, h), rows, n, ch.meter) for k in range(ch.p)]
                for k in range(ch.p):
                    layer_totals[k] += int(sizes[k].sum())
                if ch.p == 2:  # |A ∪ B| = |A| + |B| − |A ∩ B|, the meet counted like one layer
                    union_total += int((sizes[0] + sizes[1] - _meet_sizes([ch.layer(0, h), ch.layer(1, h)], rows,
                                                                          n, ch.meter)).sum())
                    continue
                sets = [_split(ch.layer(k, h), rows, n, ch.meter) for k in range(ch.p)]
                masks = [mask for mask, _ in sets if mask is not None]
                union_total += int(_split_sizes(_combined(masks, np.logical_or) if masks else None,
                                                _union([V for _, V in sets], n)).sum())
            done[key] = (layer_totals, union_total)
        layer_totals, union_total = done[key]
        for k in range(ch.p):
            totals[k][h] = layer_totals[k]
        unions[h] = union_total
    for k in range(ch.p):
        for h in range(ch.c.heads):
            if per_layer[k][h] != totals[k][h]:
                return f"layer {k}, head {h} has {totals[k][h]:,} connections, not {per_layer[k][h]!r}"
    for h in range(ch.c.heads):
        if union[h] != unions[h]:
            return f"the union of head {h} has {unions[h]:,} connections, not {union[h]!r}"
    return None


def _empty_rows(ch: _Claims, k, h):
    """The first empty row of layer k, head h, or None (every row re-evaluated)."""
    for rows in _batches(np.arange(ch.n, dtype=np.int64)):
        has = ch.rows(k, h, rows).nonempty()
        if not has.all():
            return int(rows[np.flatnonzero(~has)[0]])
    return None


def _check_nonempty_entry(ch: _Claims, ev) -> str | None:
    n = ch.n
    if not isinstance(ev, dict):
        return "malformed evidence"
    k, h = ev.get("layer"), ev.get("head")
    if not (_index(k, ch.p) and _index(h, ch.c.heads)):
        return "no such layer or head"
    holds = ev.get("holds")
    if holds is False:
        i = ev.get("empty_row")
        if not _index(i, n):
            return "malformed empty row"
        if ch.rows(k, h, [i]).nonempty()[0]:
            return f"row {i} is not empty"
        return None
    if holds is not True:
        return "holds must be true or false"
    keys = ev.get("keys")
    idx = np.arange(n, dtype=np.int64)
    if keys == "diagonal":
        if not ch.diagonal(k, h):
            return "the diagonal is not in the pattern"
    elif isinstance(keys, list):
        if not (len(keys) == n and all(_index(x, n) for x in keys)):
            return "malformed keys"
        if not ch.has(k, h, idx, np.array(keys, dtype=np.int64)).all():
            return "a listed key is not in its row"
    elif keys == "counts":
        empty = _empty_rows(ch, k, h)
        if empty is not None:
            return f"row {empty} is empty"
    else:
        return "malformed keys"
    return None


def _check_nonempty(ch: _Claims, claim) -> None:
    if not isinstance(claim, dict):
        ch.failures.append("nonempty_rows: malformed")
        return
    evidence = claim.get("evidence")
    if not isinstance(evidence, list):
        ch.failures.append("nonempty_rows: malformed evidence")
        return
    for number, ev in enumerate(evidence):
        ch.run(f"nonempty_rows evidence {number}", _check_nonempty_entry, ch, ev)
    holds = claim.get("holds")
    good = [ev for ev in evidence if isinstance(ev, dict)]
    if holds is True:
        covered = {(ev.get("layer"), ev.get("head")) for ev in good if ev.get("holds") is True}
        if covered != {(k, h) for k in range(ch.p) for h in range(ch.c.heads)} or claim.get("empty_row") is not None:
            ch.failures.append("nonempty_rows: true, but the evidence does not cover every layer and head")
    elif holds is False:
        er = claim.get("empty_row")
        if not (isinstance(er, list) and len(er) == 3 and _index(er[0], ch.p) and _index(er[1], ch.c.heads)
                and _index(er[2], ch.n)):
            ch.failures.append("nonempty_rows: malformed empty_row")
            return

        def empty():
            return None if not ch.rows(er[0], er[1], [er[2]]).nonempty()[0] else f"row {er} is not empty"

        ch.run("nonempty_rows", empty)
    elif holds is not None:
        ch.failures.append("nonempty_rows: holds must be true, false or null")


def _check_self_loops(ch: _Claims, h, claim) -> str | None:
    holds = claim.get("holds")
    if holds is True:
        if not ch.c1(h):
            return "some layer lacks a self-loop"
        return None
    if holds is False:
        m = claim.get("missing")
        if not (isinstance(m, list) and len(m) == 3 and _index(m[0], ch.p) and m[1] == h and _index(m[2], ch.n)):
            return "malformed missing index"
        if ch.has(m[0], h, [m[2]], [m[2]])[0]:
            return f"({m[2]}, {m[2]}) is in layer {m[0]}"
        return None
    return None if holds is None else "holds must be true, false or null"


def _witness(w, n) -> "np.ndarray | str":
    if w == "identity":
        return np.arange(n, dtype=np.int64)
    if w == "reversed":
        return np.arange(n - 1, -1, -1, dtype=np.int64)
    if isinstance(w, list):
        if not all(_int(x) for x in w):
            return "malformed witness"
        g = np.array(w, dtype=np.int64)
    elif isinstance(w, dict) and isinstance(w.get("runs"), list) and set(w) == {"runs"}:
        parts, total = [], 0
        for run in w["runs"]:
            if not (isinstance(run, list) and len(run) == 3 and all(_int(x) for x in run) and run[2] != 0):
                return "malformed run"
            size = len(range(*run))
            total += size
            if total > n:
                return "the runs hold more than n tokens"
            parts.append(np.arange(*run, dtype=np.int64))
        g = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    else:
        return "malformed witness"
    if g.size != n or (g.size and (g.min() < 0 or g.max() >= n)) or np.bincount(g, minlength=n).max(initial=1) != 1:
        return "the witness is not a permutation of the n tokens"
    return g


def _hamiltonian_brute(union: np.ndarray) -> bool:
    n = union.shape[0]
    reach = [0] * (1 << n)
    for v in range(n):
        reach[1 << v] = 1 << v
    for mask in range(1, 1 << n):
        for last in range(n):
            if reach[mask] >> last & 1:
                for v in range(n):
                    if not mask >> v & 1 and union[v, last]:
                        reach[mask | 1 << v] |= 1 << v
    return reach[(1 << n) - 1] != 0


def _check_hamiltonian(ch: _Claims, h, claim) -> str | None:
    n = ch.n
    holds = claim.get("holds")
    if holds is True:
        g = _witness(claim.get("witness"), n)
        if isinstance(g, str):
            return g
        ch.meter.add(n * ch.p)
        if not ch.union_has(h, g[1:], g[:-1]).all():
            return "the witness has a step that is not attended"
        return None
    if holds is None:
        return None
    if holds is not False:
        return "holds must be true, false or null"
    ref = claim.get("refutation")
    kind = ref.get("kind") if isinstance(ref, dict) else None
    if kind in ("two_start_sets", "two_end_sets"):
        sets = ref.get("sets")
        if not (isinstance(sets, list) and len(sets) == 2):
            return "needs two sets"
        try:
            X = [_members(r, n) for r in sets]
        except ValueError as exc:
            return str(exc)
        if (X[0] & X[1]).any() or not X[0].any() or not X[1].any():
            return "needs two disjoint non-empty sets"
        for x in X:
            if kind == "two_start_sets" and ch.leaves(h, x):
                return "a start set attends outside itself"
            if kind == "two_end_sets" and ch.attends_into(h, x, rows_of=~x):
                return "an end set is attended from outside"
        return None
    if kind in ("few_successors", "few_predecessors"):
        try:
            X, Y = _members(ref.get("tokens"), n), _members(ref.get("others"), n)
        except ValueError as exc:
            return str(exc)
        if not Y.sum() < X.sum() - 1:
            return "needs fewer others than tokens − 1"
        if kind == "few_predecessors":
            if ch.leaves(h, Y, rows_of=X):
                return "a token attends outside the others"
        elif ch.attends_into(h, X, rows_of=~Y):
            return "a row outside the others attends into the tokens"
        return None
    if kind == "split":
        return _check_split(ch, h, ref)
    if kind == "exhaustive":
        if n > EXHAUSTIVE_N:
            return f"an exhaustive refutation is accepted only for n ≤ {EXHAUSTIVE_N}"
        union = np.logical_or.reduce([ch.dense(k, h) for k in range(ch.p)])
        if _hamiltonian_brute(union):
            return "a Hamiltonian path exists"
        return None
    return "unknown refutation"


def _check_split(ch: _Claims, h, ref) -> str | None:
    """The "split" refutation (module docstring): each row outside K, interval by interval,
    holds only tokens of K and of its own piece — the tokens of its piece inside
    [lo, hi) counted by binary search over the tokens sorted by (piece, position)."""
    n = ch.n
    pieces = ref.get("pieces")
    if not isinstance(pieces, list) or set(ref) != {"kind", "removed", "pieces"}:
        return "a split needs exactly removed and pieces"
    try:
        removed = _members(ref.get("removed"), n)
        sets = [_members(r, n) for r in pieces]
    except ValueError as exc:
        return str(exc)
    if len(sets) != int(removed.sum()) + 1:
        return "a split lists one piece more than the tokens removed"
    label = np.zeros(n, dtype=np.int64)  # 0: the further piece
    label[removed] = -1
    for q, x in enumerate(sets, start=1):
        if not x.any():
            return "an empty piece"
        if (label[x] != 0).any():
            return "the pieces overlap each other or the removed tokens"
        label[x] = q
    if not (label == 0).any():
        return "the further piece (outside the removed tokens and the pieces) is empty"
    kept = label >= 0
    outside = np.concatenate([[0], np.cumsum(kept)])
    tokens = np.flatnonzero(kept)
    order = np.sort(label[tokens] * (n + 1) + tokens)  # (piece, position), as one key
    ch.meter.add(n)
    for k in range(ch.p):
        for rows in _batches(tokens):
            ks = ch.rows(k, h, rows)
            mine = label[rows[ks.own]] * (n + 1)
            same = np.searchsorted(order, mine + ks.hi) - np.searchsorted(order, mine + ks.lo)
            if ((outside[ks.hi] - outside[ks.lo]) != same).any():
                return "a row attends a token of another piece"
    return None


def _check_unreachable(ch: _Claims, h, claim, ev) -> str | None:
    n = ch.n
    if "recursion_cycles" in ev:
        cycle = ev["recursion_cycles"]
        if not (isinstance(cycle, list) and len(cycle) == 2 and all(_int(t) for t in cycle)
                and 1 <= cycle[0] < cycle[1] and (cycle[1] - cycle[0]) % ch.p == 0):
            return "recursion_cycles needs [t0, t1] with 1 ≤ t0 < t1 and t1 − t0 a multiple of the layers"
        t0, t1 = cycle
        full, kept = ch.recursion(h, t1, keep=(t0, t1))
        if full:
            return f"S^{full[0]} is everything"
        if not np.array_equal(kept[t0], kept[t1]):
            return f"S^{t0} differs from S^{t1}"
        return None
    if "binary_cycle" in ev:
        return _check_binary_cycle(ch, h, ev["binary_cycle"], ev.get("missing_each"))
    if "empty_rows" in ev:
        rows = ev["empty_rows"]
        if not (isinstance(rows, list) and len(rows) == ch.p and all(_index(i, n) for i in rows)):
            return "empty_rows needs one token per layer"
        for k, i in enumerate(rows):
            if ch.rows(k, h, [i]).nonempty()[0]:
                return f"row {i} of layer {k} is not empty"
        return None
    if "periodic" in ev:
        return _check_periodic(ch, h, ev["periodic"])
    if "empty_column" in ev:
        return _check_empty_column(ch, h, ev["empty_column"])
    if "support_after" in ev:
        return _check_support_after(ch, h, ev["support_after"], ev.get("missing_each"))
    pair = claim.get("unreachable")
    try:
        R = _members(ev.get("closed"), n)
    except ValueError as exc:
        return str(exc)
    if not (isinstance(pair, list) and len(pair) == 2 and all(_index(x, n) for x in pair)):
        return "malformed unreachable pair"
    i, j = pair
    if not R[i] or R[j]:
        return "the pair does not leave the closed set"
    if ch.leaves(h, R):
        return "a row of the closed set attends outside it"
    return None


def _period(ch: _Claims, h, depth: np.ndarray) -> int:
    """gcd over the edges u → v of U of depth(u) + 1 − depth(v), every row re-read."""
    g = 0
    for k in range(ch.p):
        for rows in _batches(np.arange(ch.n, dtype=np.int64)):
            ks = ch.rows(k, h, rows)
            ch.meter.add((ks.hi - ks.lo).sum())
            own, keys = _expand(ks)
            g = int(np.gcd.reduce(np.append(np.abs(depth[rows[own]] + 1 - depth[keys]), g)))
            if g == 1:
                return 1
    return g


def _check_periodic(ch: _Claims, h, claim) -> str | None:
    """One layer, an out-tree reaching every token, and every cycle length a multiple of
    g ≥ 2: row i's keys in S^t all lie in the class depth(i) + t mod g, never all of [n]."""
    if ch.p != 1:
        return "periodic evidence is for one layer"
    if not (isinstance(claim, dict) and _index(claim.get("root"), ch.n)):
        return "malformed periodic evidence"
    root = claim["root"]
    depth = _tree(ch, h, claim.get("out"), root, forward=True)
    if isinstance(depth, str):
        return depth
    g = _period(ch, h, depth)
    if g < 2 or g != claim.get("period"):
        return f"the period is {g}, not {claim.get('period')!r}"
    return None


def _depth_by_intervals(ch: _Claims, h) -> "int | None | str":
    """The exact s when every row of every layer is one interval holding i with
    non-decreasing ends (module docstring); a text when that does not hold."""
    n, p = ch.n, ch.p
    lows, highs = [], []
    for k in range(p):
        lo = np.empty(n, dtype=np.int64)
        hi = np.empty(n, dtype=np.int64)
        for rows in _batches(np.arange(n, dtype=np.int64)):
            ks = ch.rows(k, h, rows)
            if ks.own.size != rows.size or not np.array_equal(ks.own, np.arange(rows.size)):
                return f"a row of layer {k} is not one interval"
            lo[rows], hi[rows] = ks.lo, ks.hi
        idx = np.arange(n)
        if (lo > idx).any() or (hi <= idx).any():
            return f"a row of layer {k} does not hold its own token"
        if (np.diff(lo) < 0).any() or (np.diff(hi) < 0).any():
            return f"the rows of layer {k} are not monotone"
        lows.append(lo)
        highs.append(hi - 1)  # the last key
    # L_t(n−1) = lo_{k(1)} ∘ … ∘ lo_{k(t)} (n − 1); with t = q·p + r: F^q ∘ G_r.
    ch.meter.add(p * n)

    def compose(maps, order):
        out = np.arange(n, dtype=np.int64)
        for k in order:  # the innermost map is applied first
            out = maps[k][out]
        return out

    best = None
    for maps, goal in ((lows, 0), (highs, n - 1)):
        F = compose(maps, range(p - 1, -1, -1))
        steps_for = []
        for r in range(p):
            x = int(compose(maps, range(r - 1, -1, -1))[n - 1 if goal == 0 else 0])
            q = 0
            F_list = F.tolist()
            ch.meter.add(n)
            while x != goal and q <= n:
                nxt = F_list[x]
                if nxt == x:
                    q = None
                    break
                x, q = nxt, q + 1
            steps_for.append(q)
        best = steps_for if best is None else [None if a is None or b is None else max(a, b)
                                              for a, b in zip(best, steps_for)]
    candidates = [q * p + r for r, q in enumerate(best) if q is not None and q * p + r >= 1]
    if not candidates:
        # r = 0 needs q ≥ 1 (t = 0 is not a step); try the next round.
        candidates = [max(q, 1) * p for r, q in enumerate(best) if r == 0 and q is not None]
    return min(candidates) if candidates else None


_SOURCES = 256  # BFS sources at a time (their distances: 256 × n floats)


def _depth_by_distances(ch: _Claims, h) -> "int | None | str":
    """One layer with C1: S^t_i is the ball of radius t out of i in A, so s = max(1, the
    largest distance) (None: some pair unreachable, s infinite). A's edges from this
    module's key sets, a BFS out of every token (scipy's, in C), metered n × (edges + n)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    n = ch.n
    if ch.p != 1:
        return "it needs one layer"
    if not ch.c1(h):
        return "it needs C1, which fails"
    ch.meter.add(n * n)
    first, lo, hi = _layer_keys(ch, 0, h)
    width = hi - lo
    ch.meter.add(n * int(width.sum()))
    indptr = np.concatenate([[0], np.cumsum(width)])[first]
    A = csr_matrix((np.ones(int(width.sum()), dtype=np.int8), _spread(lo, width), indptr), shape=(n, n))
    far = 0.0
    for start in range(0, n, _SOURCES):
        far = max(far, float(shortest_path(A, directed=True, unweighted=True,
                                           indices=np.arange(start, min(n, start + _SOURCES))).max()))
    return max(1, int(far)) if np.isfinite(far) else None


_STEPS_KEPT = 64  # beyond this many steps, S^t_i reads every row's intervals once and keeps them


def _layer_keys(ch: _Claims, k, h):
    """Every row's keys of one layer as intervals grouped by row: (first, lo, hi), row i's
    intervals at first[i]:first[i + 1] (read once, kept for the certificate's claims)."""
    cache = ch.__dict__.setdefault("_layer_keys", {})
    if (k, h) not in cache:
        n, firsts, los, his, seen = ch.n, [], [], [], 0
        for rows in _batches(np.arange(n, dtype=np.int64)):
            ks = ch.rows(k, h, rows)
            firsts.append(np.searchsorted(ks.own, np.arange(rows.size)) + seen)
            los.append(ks.lo)
            his.append(ks.hi)
            seen += ks.lo.size
        cache[k, h] = (np.concatenate(firsts + [[seen]]).astype(np.int64), np.concatenate(los), np.concatenate(his))
    return cache[k, h]


def _spread(lo: np.ndarray, width: np.ndarray) -> np.ndarray:
    """The integers of the intervals [lo, lo + width), concatenated."""
    return np.repeat(lo - np.cumsum(width) + width, width) + np.arange(int(width.sum()))


def _row_after(ch: _Claims, h, i, steps) -> np.ndarray:
    """S^{steps}_i given C1: {i} pushed through layers k(steps), …, k(1). With C1 the set
    only grows, so each row is expanded once per layer (from every row's intervals, read
    once: a step costs its new rows' keys, not a pass over n)."""
    n, p = ch.n, ch.p
    X = np.zeros(n, dtype=bool)
    X[i] = True
    done = [np.zeros(n, dtype=bool) for _ in range(p)]
    fresh = [np.array([i], dtype=np.int64) for _ in range(p)]  # reached, not yet expanded in layer k
    for t in range(steps, 0, -1):
        k = (t - 1) % p
        new = fresh[k][~done[k][fresh[k]]]
        done[k][new] = True
        if steps > _STEPS_KEPT:
            first, lo, hi = _layer_keys(ch, k, h)
            at = _spread(first[new], first[new + 1] - first[new])
            ch.meter.add(at.size + 1)
            lo, hi = lo[at], hi[at]
        else:  # a few steps: only the rows reached are read
            sets = [ch.rows(k, h, rows) for rows in _batches(new)]
            lo = np.concatenate([ks.lo for ks in sets] + [np.zeros(0, dtype=np.int64)])
            hi = np.concatenate([ks.hi for ks in sets] + [np.zeros(0, dtype=np.int64)])
        width = hi - lo
        if int(width.sum()) <= n // 16:
            keys = _spread(lo, width)
            keys = np.unique(keys[~X[keys]])
        else:
            marks = np.zeros(n + 1, dtype=np.int64)
            np.add.at(marks, lo, 1)
            np.add.at(marks, hi, -1)
            keys = np.flatnonzero((np.cumsum(marks[:n]) > 0) & ~X)
        X[keys] = True
        fresh = [np.concatenate([f[~done[m][f]], keys]) for m, f in enumerate(fresh)]
        if keys.size == 0 and all(f.size == 0 for f in fresh):
            break  # nothing new to expand in any layer: S^t_i stays as it is
        if X.all():
            break
    return X


def _row_after_any(ch: _Claims, h, i, steps) -> np.ndarray:
    """S^{steps}_i without assuming C1: {i} pushed through layers k(steps), …, k(1), every
    row reached read again at each step."""
    X = np.zeros(ch.n, dtype=bool)
    X[i] = True
    return _set_after_any(ch, h, X, steps)


def _set_after_any(ch: _Claims, h, X: np.ndarray, steps) -> np.ndarray:
    """∪_{i ∈ X} S^{steps}_i: the set X pushed through layers k(steps), …, k(1)."""
    n, p = ch.n, ch.p
    for t in range(steps, 0, -1):
        k = (t - 1) % p
        ch.meter.add(n // 64 + 1)
        marks = np.zeros(n + 1, dtype=np.int64)
        common = np.zeros(n, dtype=bool)
        for rows in _batches(np.flatnonzero(X)):
            mask, ks = _split(ch.layer(k, h), rows, n, ch.meter)
            if mask is not None:
                common |= mask
            np.add.at(marks, ks.lo, 1)
            np.add.at(marks, ks.hi, -1)
        X = (np.cumsum(marks[:n]) > 0) | common
        if not X.any():
            break
    return X


def _check_cover(ch: _Claims, h, cover) -> "int | str":
    """{"step": t, "tokens": H}, t ≥ 2: every row of layer k(t) attends a token of H and
    S^{t−1}_x = [n] for each x ∈ H, so S^t_i ⊇ S^{t−1}_x = [n] for every i: s ≤ t (no C1
    needed). Returns t, or why not."""
    n, p = ch.n, ch.p
    if not isinstance(cover, dict):
        return "malformed cover"
    t, H = cover.get("step"), cover.get("tokens")
    if not (_int(t) and t >= 2 and isinstance(H, list) and H and all(_index(x, n) for x in H)):
        return "malformed cover"
    k = (t - 1) % p
    inside = np.zeros(n, dtype=bool)
    inside[H] = True
    cum = np.concatenate([[0], np.cumsum(inside)])
    for rows in _batches(np.arange(n, dtype=np.int64)):
        ks = ch.rows(k, h, rows)
        hits = np.bincount(ks.own, weights=cum[ks.hi] - cum[ks.lo], minlength=rows.size)
        if (hits == 0).any():
            return f"row {int(rows[np.flatnonzero(hits == 0)[0]])} of layer {k} attends no cover token"
    for x in H:
        if not _row_after_any(ch, h, x, t - 1).all():
            return f"S^{t - 1} of cover token {x} is not everything"
    return t


def _check_common_cover(ch: _Claims, h, cover) -> "int | str":
    """{"step": t, "tokens": ranges C}, t ≥ 2: every row of layer k(t) attends every token
    of C, and C pushed through layers k(t − 1), …, k(1) (without assuming C1) is [n]:
    S^t_i ⊇ ∪_{c ∈ C} S^{t−1}_c = [n] for every i, so s ≤ t. Returns t, or why not."""
    n, p = ch.n, ch.p
    t = cover.get("step") if isinstance(cover, dict) else None
    if not (_int(t) and t >= 2 and set(cover) == {"step", "tokens"}):
        return "malformed common_cover"
    try:
        C = _members(cover["tokens"], n)
    except ValueError as exc:
        return str(exc)
    size = int(C.sum())
    if size == 0:
        return "an empty common_cover"
    k = (t - 1) % p
    cum = _prefix(C)
    for rows in _batches(np.arange(n, dtype=np.int64)):
        hits = _hits(ch, k, h, rows, C, cum)
        if (hits != size).any():
            return f"row {int(rows[np.flatnonzero(hits != size)[0]])} of layer {k} misses a common_cover token"
    if not _set_after_any(ch, h, C, t - 1).all():
        return f"the common_cover tokens' S^{t - 1} is not everything"
    return t


def _check_union_cover(ch: _Claims, h, cover) -> "int | str":
    """{"step": t, "tokens": H}, t ≥ 2: for every row i of layer k(t), the tokens of H
    that i attends have S^{t−1} (recomputed for each token alone, without assuming C1)
    whose union is [n]; then S^t_i ⊇ that union, so S^t = J and s ≤ t. Rows are grouped
    by the tokens of H they attend (pair by pair, or from the rows' intervals: _attends). Returns t, or why not."""
    n, p = ch.n, ch.p
    if not isinstance(cover, dict):
        return "malformed union_cover"
    t, H = cover.get("step"), cover.get("tokens")
    if not (_int(t) and t >= 2 and isinstance(H, list) and H and all(_index(x, n) for x in H)
            and len(set(H)) == len(H)):
        return "malformed union_cover"
    k = (t - 1) % p
    attends = _attends(ch, k, h, H)
    reached = np.stack([_row_after_any(ch, h, x, t - 1) for x in H])
    ch.meter.add(n * len(H))
    for code in np.unique(attends.T, axis=0):
        if not reached[code].any(axis=0).all():
            row = int(np.flatnonzero((attends.T == code).all(axis=1))[0])
            return f"the union_cover tokens row {row} of layer {k} attends do not reach everything in {t - 1} steps"
    return t


def _attends(ch: _Claims, k, h, H) -> np.ndarray:
    """Bool [len(H), n]: whether row i of layer k attends token H[x]. Few tokens pair by
    pair; many (a union cover over hundreds or all tokens) from every row's intervals,
    read once: the tokens of H inside each interval, marked by a difference array."""
    n = ch.n
    rows = np.arange(n, dtype=np.int64)
    if len(H) <= 16:
        return np.stack([ch.has(k, h, rows, np.full(n, x, dtype=np.int64)) for x in H])
    order = np.argsort(np.asarray(H, dtype=np.int64), kind="stable")
    sorted_h = np.asarray(H, dtype=np.int64)[order]
    first, lo, hi = _layer_keys(ch, k, h)
    ch.meter.add(lo.size + n * len(H))
    owner = np.repeat(rows, np.diff(first))
    a, b = np.searchsorted(sorted_h, lo), np.searchsorted(sorted_h, hi)
    marks = np.zeros((n, len(H) + 1), dtype=np.int32)
    np.add.at(marks, (owner, a), 1)
    np.add.at(marks, (owner, b), -1)
    inside = np.cumsum(marks[:, :len(H)], axis=1) > 0  # row i attends sorted_h[x]
    out = np.empty((len(H), n), dtype=bool)
    out[order] = inside.T
    return out


def _binary_states(ch: _Claims, h, steps) -> list:
    """[(G_t, Z_t) for t = 1 … steps]: G_1, Z_1 the full and empty rows of layer 0;
    G_t the rows of layer k(t) attending a token of G_{t−1} (S^t ⊇ S^{t−1}_j = [n]),
    Z_t those attending only tokens of Z_{t−1} (S^t = ∅); read from every row's intervals."""
    n, p = ch.n, ch.p
    G = Z = None
    states = []
    for t in range(1, steps + 1):
        k = (t - 1) % p
        X = np.ones(n, dtype=bool) if t == 1 else G
        Y = np.ones(n, dtype=bool) if t == 1 else ~Z
        in_x = np.concatenate([[0], np.cumsum(X)])
        in_y = np.concatenate([[0], np.cumsum(Y)])
        hits_x, hits_y = np.zeros(n), np.zeros(n)
        for rows in _batches(np.arange(n, dtype=np.int64)):
            ks = ch.rows(k, h, rows)
            ch.meter.add(ks.lo.size + 1)
            hits_x[rows] = np.bincount(ks.own, weights=in_x[ks.hi] - in_x[ks.lo], minlength=rows.size)
            hits_y[rows] = np.bincount(ks.own, weights=in_y[ks.hi] - in_y[ks.lo], minlength=rows.size)
        G, Z = (hits_x == n, hits_y == 0) if t == 1 else (hits_x > 0, hits_y == 0)
        states.append((G, Z))
    return states


def _check_full_rows(ch: _Claims, h, full) -> "int | str":
    """{"step": t}: G_t (``_binary_states``) is every row, so S^t = J: s ≤ t (no C1 needed)."""
    t = full.get("step") if isinstance(full, dict) else None
    if not (_int(t) and 1 <= t <= 4096):
        return "malformed full_rows"
    if not _binary_states(ch, h, t)[-1][0].all():
        return f"full_rows: some row of S^{t} is not shown to be everything"
    return t


def _check_binary_cycle(ch: _Claims, h, cycle, pairs) -> "str | None":
    """[t0, t1]: for t0 ≤ t ≤ t1 every row is in G_t or Z_t (S^t known exactly) and
    G_t ≠ [n]; t1 − t0 a positive multiple of p and G_{t0} = G_{t1}: from t0 on the states
    repeat, no S^t is J; with one missing pair per step t < t0, s is infinite."""
    if not (isinstance(cycle, list) and len(cycle) == 2 and all(_int(t) for t in cycle)
            and 1 <= cycle[0] < cycle[1] <= 4096 and (cycle[1] - cycle[0]) % ch.p == 0):
        return "binary_cycle needs [t0, t1] with 1 ≤ t0 < t1 and t1 − t0 a multiple of the layers"
    t0, t1 = cycle
    if t0 > 1 or pairs is not None:
        why = _check_missing_each(ch, h, pairs, t0)
        if why:
            return why
    states = _binary_states(ch, h, t1)
    for t in range(t0, t1 + 1):
        G, Z = states[t - 1]
        if not (G | Z).all():
            return f"binary_cycle: S^{t} is not known exactly from full and empty rows"
        if G.all():
            return f"binary_cycle: S^{t} is everything"
    if not np.array_equal(states[t0 - 1][0], states[t1 - 1][0]):
        return f"binary_cycle: the full rows of S^{t0} and S^{t1} differ"
    return None


def _check_missing_each(ch: _Claims, h, pairs, lo) -> "str | None":
    """[[i_t, j_t] for t = 1 … lo − 1] with j_t ∉ S^t_{i_t}: no S^t (t < lo) is J, s ≥ lo."""
    n = ch.n
    if not (isinstance(pairs, list) and len(pairs) == lo - 1
            and all(isinstance(q, list) and len(q) == 2 and all(_index(x, n) for x in q) for q in pairs)):
        return f"missing_each needs one pair per step 1 … {lo - 1}"
    for t, (i, j) in enumerate(pairs, start=1):
        if _row_after_any(ch, h, i, t)[j]:
            return f"the missing_each pair {[i, j]} is in S^{t}"
    return None


def _check_support_after(ch: _Claims, h, support, pairs) -> "str | None":
    """{"steps": m ≥ 2, "key": j}: R_m = F_{k(1)}(… F_{k(m)}([n])) recomputed from every row
    reached (F_k(X): the keys of X's rows in layer k) misses j. S^t_i ⊆ R_t ⊆ R_m for t ≥ m,
    so no such S^t is J; with one missing pair for each t < m (missing_each), s is infinite."""
    n, p = ch.n, ch.p
    if not isinstance(support, dict):
        return "malformed support_after"
    m, j = support.get("steps"), support.get("key")
    if not (_int(m) and m >= 2 and _index(j, n)):
        return "malformed support_after"
    why = _check_missing_each(ch, h, pairs, m)
    if why:
        return why
    X = np.ones(n, dtype=bool)
    for t in range(m, 0, -1):
        marks = np.zeros(n + 1, dtype=np.int64)
        for rows in _batches(np.flatnonzero(X)):
            ks = ch.rows((t - 1) % p, h, rows)
            np.add.at(marks, ks.lo, 1)
            np.add.at(marks, ks.hi, -1)
        X = np.cumsum(marks[:n]) > 0
    if X[j]:
        return f"key {j} is in R_{m}"
    return None


def _check_empty_column(ch: _Claims, h, j) -> "str | None":
    """No row of layer k(1) = 0 attends j: every S^t_i ⊆ ∪_x A^0_x misses j, s is infinite."""
    if not _index(j, ch.n):
        return "malformed empty_column"
    for rows in _batches(np.arange(ch.n, dtype=np.int64)):
        ks = ch.rows(0, h, rows)
        if ((ks.lo <= j) & (j < ks.hi)).any():
            return f"column {j} of layer 0 is attended"
    return None


def _depths(parent: np.ndarray, root: int) -> "np.ndarray | None":
    """Hops from every token to the root along ``parent``; None unless it is a tree."""
    jump = np.where(np.arange(parent.size) == root, root, parent)
    hops = (np.arange(parent.size) != root).astype(np.int64)
    for _ in range(parent.size.bit_length() + 1):  # after k rounds, jump is the 2^k-th ancestor
        hops, jump = hops + hops[jump], jump[jump]
    return hops if (jump == root).all() else None


def _tree(ch: _Claims, h, parent, r, forward) -> "np.ndarray | str":
    """The depths of a tree of U rooted at r (forward: v ∈ A_{parent[v]}, else
    parent[v] ∈ A_v), or why it is not one."""
    n = ch.n
    name = "out" if forward else "in"
    if not (isinstance(parent, list) and len(parent) == n and all(_int(x) for x in parent)):
        return f"malformed {name} tree"
    parent = np.array(parent, dtype=np.int64)
    others = np.flatnonzero(np.arange(n) != r)
    if parent[r] != -1 or (parent[others] < 0).any() or (parent[others] >= n).any():
        return f"the {name} tree's parents are not tokens (the root's is -1)"
    ch.meter.add(n * ch.p)
    i, j = (parent[others], others) if forward else (others, parent[others])
    if not ch.union_has(h, i, j).all():
        return f"an edge of the {name} tree is not attended"
    depth = _depths(parent, r)
    if depth is None:
        return f"the {name} tree does not reach the root from every token"
    return depth


def _tree_diameter_bound(ch: _Claims, h, trees) -> "int | str":
    """max depth_in + max depth_out of two trees rooted at r (out: v ∈ A_{out[v]}; in:
    in[v] ∈ A_v): every pair (i, j) is joined by i → … → r → … → j."""
    if not (isinstance(trees, dict) and _index(trees.get("root"), ch.n)):
        return "malformed trees"
    total = 0
    for name, forward in (("out", True), ("in", False)):
        depth = _tree(ch, h, trees.get(name), trees["root"], forward)
        if isinstance(depth, str):
            return depth
        total += int(depth.max())
    return max(1, total)


def _range_max(values: np.ndarray):
    """A sparse table of ``values``: query(lo, hi) is max(values[lo:hi]) for hi > lo, vectorised."""
    table = [values]
    while 2 ** len(table) <= values.size:
        half = 2 ** (len(table) - 1)
        table.append(np.maximum(table[-1][:-half], table[-1][half:]))

    def query(lo, hi):
        k = np.floor(np.log2(hi - lo)).astype(np.int64)
        out = np.empty(lo.size, dtype=values.dtype)
        for level in np.unique(k):
            at = k == level
            out[at] = np.maximum(table[level][lo[at]], table[level][hi[at] - 2 ** level])
        return out
    return query


def _check_dominated(ch: _Claims, h, dom) -> "tuple[int, int] | str":
    """One layer with C1: every row contains the row of some r in R, so S^t_i ⊇ S^t_r
    (S^t_i = ∪_{j ∈ A_i} S^{t−1}_j), and S^t = J exactly when every r reaches all tokens
    (analysis/dominance.py). (upper, lower): s is at most the deepest out-tree of U rooted
    at an r; and at least the deepest of those whose depths d are U's distances from r —
    no edge u → v skips a level (d(v) ≤ d(u) + 1, range maxima over each row's intervals)."""
    n = ch.n
    R, out = (dom.get("rows"), dom.get("out")) if isinstance(dom, dict) else (None, None)
    if not (isinstance(R, list) and R and all(_index(r, n) for r in R) and len(set(R)) == len(R)
            and isinstance(out, list) and len(out) == len(R)):
        return "malformed dominated evidence"
    if ch.p != 1 or not ch.c1(h):
        return "dominated rows bound s only for one layer with C1"
    upper, lower = 1, 1
    for r, parent in zip(R, out):
        depth = _tree(ch, h, parent, r, forward=True)
        if isinstance(depth, str):
            return depth
        upper = max(upper, int(depth.max()))
        query, exact = _range_max(depth), True
        for rows in _batches(np.arange(n, dtype=np.int64)):
            ks = ch.rows(0, h, rows)
            ch.meter.add(ks.lo.size * max(1, n.bit_length() // 8))
            if (query(ks.lo, ks.hi) > depth[rows[ks.own]] + 1).any():
                exact = False
                break
        if exact:
            lower = max(lower, int(depth.max()))
    covered = np.zeros(n, dtype=bool)
    for r in R:
        base = ch.rows(0, h, [r])
        cum = np.concatenate([[0], np.cumsum(_members([[int(a), int(b)] for a, b in zip(base.lo, base.hi)], n))])
        size = int(cum[n])
        for rows in _batches(np.arange(n, dtype=np.int64)):
            ks = ch.rows(0, h, rows)
            shared = np.bincount(ks.own, weights=cum[ks.hi] - cum[ks.lo], minlength=rows.size)
            covered[rows] |= shared == size
    if not covered.all():
        return f"row {int(np.flatnonzero(~covered)[0])} contains the row of no dominating row"
    return upper, lower


def _check_depth(ch: _Claims, h, claim) -> str | None:
    n = ch.n
    holds = claim.get("holds")
    ev = claim.get("evidence") or {}
    if not isinstance(ev, dict):
        return "malformed evidence"
    if holds is False:
        return _check_unreachable(ch, h, claim, ev)
    if holds not in (True, None):
        return "holds must be true, false or null"
    bounds, s = claim.get("s_bounds"), claim.get("s")
    if not (isinstance(bounds, list) and len(bounds) == 2 and _int(bounds[0])
            and (bounds[1] is None or _int(bounds[1]))):
        return "malformed s_bounds"
    lo, hi = bounds
    if holds is None:
        if hi is not None or s is not None:
            return "an undecided depth claims no upper bound and no s"
    else:
        if s is not None and not (_int(s) and s == lo == hi):
            return "s disagrees with s_bounds"
        if hi is None:
            return "holds true without an upper bound"
    if lo < 1 or (hi is not None and hi < lo):
        return "bounds out of order"
    exact = None
    if ev.get("full_first") is True:
        exact = None if any(ch.rows(0, h, rows).sizes().min() < n for rows in _batches(np.arange(n, dtype=np.int64))) else 1
        if exact is None:
            return "layer 0 is not everything"
    elif ev.get("intervals") is True or ev.get("distances") is True:
        kind = "intervals" if ev.get("intervals") is True else "distances"
        exact = (_depth_by_intervals if kind == "intervals" else _depth_by_distances)(ch, h)
        if isinstance(exact, str):
            return f"{kind} evidence does not hold: " + exact
        if exact is None:
            return "s is infinite"
    elif ev.get("recursion") is True:
        if hi is None:
            return "recursion evidence needs an upper bound"
        banded = _depth_by_intervals(ch, h) if ch.c1(h) else "no C1"  # much cheaper when it applies
        if not isinstance(banded, str):
            exact = banded if banded is not None else "infinite"
        else:
            full, _ = ch.recursion(h, hi)
            if not full:
                return f"S^{hi} is not everything"
            exact = full[0]
        if exact == "infinite":
            return "s is infinite"
    if exact is not None and not (lo <= exact and (hi is None or exact <= hi)):
        return f"s = {exact}, outside the claimed [{lo}, {hi}]"
    # Every piece of evidence present is re-checked, even where an exact s already settles
    # the bounds: a certificate carrying one false statement is not accepted.
    proved = _upper_evidence(ch, h, ev)
    if isinstance(proved, str):
        return proved
    if exact is not None:
        if proved is not None and proved > hi:
            return f"the evidence proves s ≤ {proved}, not s ≤ {hi}"
    elif hi is not None:
        if proved is None:
            return "no evidence for the upper bound"
        if proved > hi:
            return f"the evidence proves s ≤ {proved}, not s ≤ {hi}"
    below = _lower_evidence(ch, h, ev, lo)
    if isinstance(below, str):
        return below
    if exact is None and lo > below:
        return f"no evidence for the lower bound {lo}"
    return None


def _upper_evidence(ch: _Claims, h, ev) -> "int | None | str":
    """The least upper bound on s that the upper-bound evidence present proves (None when
    there is none), or why a piece of it is false."""
    n, p = ch.n, ch.p
    proved = None
    hub = ev.get("hub")
    if hub is not None:
        t, b, a = (hub.get("token"), hub.get("row_step"), hub.get("column_step")) if isinstance(hub, dict) else (None,) * 3
        if not (_index(t, n) and _int(b) and _int(a) and 1 <= b < a):
            return "malformed hub"
        if not ((b, a) == (1, 2) or ch.c1(h)):
            return "a hub beyond steps (1, 2) needs C1, which fails"
        if not ch.full_row((b - 1) % p, h, t):
            return f"row {t} is not full in layer {(b - 1) % p}"
        if not ch.has((a - 1) % p, h, np.arange(n), np.full(n, t)).all():
            return f"column {t} is not full in layer {(a - 1) % p}"
        proved = a
    if "chain" in ev:
        i = np.arange(1, n)
        if not (ev["chain"] is True and ch.c1(h) and ch.union_has(h, i, i - 1).all() and ch.union_has(h, i - 1, i).all()):
            return "chain evidence does not hold"
        proved = min(proved or p * max(n - 1, 1), p * max(n - 1, 1))
    for name, check in (("cover", _check_cover), ("union_cover", _check_union_cover),
                        ("common_cover", _check_common_cover)):
        if ev.get(name) is not None:
            step = check(ch, h, ev[name])
            if isinstance(step, str):
                return step
            proved = min(proved or step, step)
    if ev.get("full_rows") is not None:
        step = _check_full_rows(ch, h, ev["full_rows"])
        if isinstance(step, str):
            return step
        proved = min(proved or step, step)
    if ev.get("dominated") is not None:
        bound = _check_dominated(ch, h, ev["dominated"])
        if isinstance(bound, str):
            return bound
        proved = min(proved or bound[0], bound[0])
    if "aperiodic" in ev and ev["aperiodic"] is not True:
        return "malformed aperiodic"
    trees = ev.get("trees")
    if trees is not None:
        diameter = _tree_diameter_bound(ch, h, trees)
        if isinstance(diameter, str):
            return diameter
        if ch.c1(h):
            bound = p * diameter
        elif p == 1 and ch.has(0, h, [trees["root"]], [trees["root"]])[0]:
            bound = diameter  # walk to the root, wait on its self-loop, walk on
        elif p == 1 and ev.get("aperiodic") is True:
            depth = _tree(ch, h, trees["out"], trees["root"], forward=True)
            if _period(ch, h, depth) != 1:
                return "U is periodic"
            bound = (n - 1) ** 2 + 1  # primitive: Wielandt
        else:
            return "trees bound s only given C1, a self-loop at the root, or aperiodicity (one layer)"
        proved = min(proved or bound, bound)
    return proved


def _lower_evidence(ch: _Claims, h, ev, lo) -> "int | str":
    """The lower bound on s that the lower-bound evidence present proves (1 without any),
    or why a piece of it is false. missing_each and missing_before speak of lo itself."""
    n = ch.n
    below = 1
    if "missing_first" in ev:
        mf = ev["missing_first"]
        if not (isinstance(mf, list) and len(mf) == 2 and all(_index(x, n) for x in mf)):
            return "malformed missing_first"
        if ch.has(0, h, [mf[0]], [mf[1]])[0]:
            return "the missing_first pair is in layer 0"
        below = 2
    if "missing_each" in ev:
        why = _check_missing_each(ch, h, ev["missing_each"], lo)
        if why:
            return why
        below = max(below, lo)
    if ev.get("dominated") is not None:
        bound = _check_dominated(ch, h, ev["dominated"])
        if isinstance(bound, str):
            return bound
        below = max(below, bound[1])
    if "missing_before" in ev:
        mb = ev["missing_before"]
        if not (isinstance(mb, list) and len(mb) == 2 and all(_index(x, n) for x in mb) and lo >= 2):
            return "malformed missing_before"
        if not ch.c1(h):
            return "missing_before proves a lower bound only given C1, which fails"
        if _row_after(ch, h, mb[0], lo - 1)[mb[1]]:
            return f"the missing_before pair is in S^{lo - 1}"
        below = max(below, lo)
    return below


# ---- the report ------------------------------------------------------------------------------


def source_digest(compiled) -> "str | None":
    text = getattr(compiled.source, "text", None)
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if isinstance(text, str) else None


# The fields every certificate written by `check --certificate` has ("counts" is optional).
REQUIRED_FIELDS = ("format", "source_sha256", "n", "layers", "heads", "prob", "nonempty_rows", "conditions")


def certificate_shape_problem(cert) -> "str | None":
    """Why ``cert`` cannot be a certificate at all (not a JSON object, or missing fields,
    named), before any claim is read; None when it has every field it needs."""
    if not isinstance(cert, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(cert), "a number" if isinstance(cert, (int, float)) else type(cert).__name__)
        return (f"certificate: not a JSON object but {kind}; a certificate is the object "
                f"`patterndsl check --certificate` writes, with the fields {', '.join(REQUIRED_FIELDS)}")
    missing = [name for name in REQUIRED_FIELDS if name not in cert]
    if len(missing) == len(REQUIRED_FIELDS):
        return (f"certificate: the object has none of the fields a certificate needs "
                f"({', '.join(REQUIRED_FIELDS)}): is it a file `patterndsl check --certificate` wrote?")
    if missing:
        return (f"certificate: missing the field{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(a certificate needs {', '.join(REQUIRED_FIELDS)})")
    return None


def verify_report(source_or_compiled, cert, max_work: int = DEFAULT_BUDGET) -> dict:
    """Re-check every claim of ``cert``: {"failures": [...], "unchecked": [...]}. A
    certificate is accepted only when both are empty; "unchecked" lists the claims whose
    check would pass ``max_work`` units (raise it to check them)."""
    from .compiled import CompiledPattern, compile as compile_source

    def refuse(why):
        return {"failures": [why], "unchecked": []}

    problem = certificate_shape_problem(cert)
    if problem:
        return refuse(problem)
    if cert.get("format") != FORMAT:
        return refuse(f"format: the certificate is {cert.get('format')!r}; this checker reads {FORMAT!r}")
    n = cert.get("n")
    if not (_int(n) and n >= 1):
        return refuse("n: missing or not a positive integer")
    if isinstance(source_or_compiled, CompiledPattern):
        compiled = source_or_compiled
        if compiled.n != n:
            return refuse(f"n: the certificate is for n = {n}, the pattern is compiled for {compiled.n}")
    else:
        is_text = not isinstance(source_or_compiled, str) or "\n" in source_or_compiled \
            or not Path(source_or_compiled).is_file()
        compiled = compile_source(source_or_compiled if is_text else Path(source_or_compiled), n)
    digest = source_digest(compiled)
    if cert.get("source_sha256") != digest:
        return refuse(f"source_sha256: the certificate was made for another source "
                      f"({cert.get('source_sha256')!r}, this one is {digest!r})")
    ch = _Claims(compiled, max_work)
    if cert.get("layers") != compiled.layers or cert.get("heads") != compiled.heads:
        return refuse("shape: layers/heads differ from the source")
    prob = cert.get("prob") if isinstance(cert.get("prob"), dict) else {}
    expected = str(compiled.prob or "softmax")
    if prob.get("name") != expected:
        ch.failures.append(f"prob: name {prob.get('name')!r}, the file says {expected!r}")
    elif prob.get("assumption2") is not ASSUMPTION2.get(expected, expected.startswith("entmax(")):
        ch.failures.append("prob: wrong Assumption 2 verdict")
    _check_nonempty(ch, cert.get("nonempty_rows"))
    if "counts" in cert:
        ch.run("counts", _check_counts, ch, cert["counts"])
    conditions = cert.get("conditions")
    if not (isinstance(conditions, list) and all(isinstance(c, dict) for c in conditions)
            and [c.get("head") for c in conditions] == list(range(compiled.heads))):
        ch.failures.append("conditions: need one entry per head, in order")
        return {"failures": ch.failures, "unchecked": ch.unchecked}
    for c in conditions:
        h = c["head"]
        for name, check in (("self_loops", _check_self_loops), ("hamiltonian_path", _check_hamiltonian),
                            ("finite_depth", _check_depth)):
            claim = c.get(name)
            if not isinstance(claim, dict):
                ch.failures.append(f"head {h}: {name}: missing")
                continue
            ch.run(f"head {h}: {name}", check, ch, h, claim)
    if "segments" in cert:  # claims for every segmentation (patterndsl/analysis/segment_conditions.py per_segmentation)
        _check_segment_claims(ch, cert["segments"])
    return {"failures": ch.failures, "unchecked": ch.unchecked}


# ---- claims for every segmentation (run-time segment ids) -----------------------------------
# Re-checked here with this module's own evaluator under chosen ids (the primitives read
# them through patterndsl.segments.using). A document is a run [a, a + L) of equal ids; for
# a pattern whose pairs all share a segment its pairs depend on that document only, and a
# pair (i, j) of it on the ids only through rank(j) = j − a, and that only through the tests
# rank(j) < k of `segment_start(k)`: one rank per class against the thresholds k stands for
# every rank. What each claim rests on, and how it is re-checked:
#   * self_loops: the diagonal under one rank vector min(i, t) per class.
#   * hamiltonian_path identity (reversed): (x, x − 1) ((x − 1, x)) in some layer under every
#     rank class of the key (rank ≥ 1 for x: x − 1 shares its document): every document holds
#     the order. A failure names a document of at most EXHAUSTIVE_N tokens, searched here.
#   * finite_depth "chain": both off-diagonals under every rank class and C1 (re-checked): in
#     every document each token reaches both neighbours. "prefixes": every primitive but the
#     segment ones depends on j − i alone (checked on the IR), so each document is a prefix of
#     the one-document pattern; there every token x ≥ 1 attends an earlier token and is
#     attended by an earlier query (re-counted from every row's keys), so every prefix is
#     strongly connected (induction on its length); with C1. A claimed s (worst over every
#     document) needs the prefixes and monotone interval rows: it is the s of [0, n),
#     recomputed exactly. No evidence: every document is evaluated (small n). A failure names
#     a document and a pair, re-evaluated in that document.


def _shares_segment(node) -> bool:
    """Every pair of ``node`` shares a segment (checked here on the IR, independently)."""
    if type(node).__name__ in ("Segment", "SegmentStart") or isinstance(node, Nothing):
        return True
    if isinstance(node, Intersection):
        return any(_shares_segment(p) for p in node.parts)
    if isinstance(node, Union):
        return bool(node.parts) and all(_shares_segment(p) for p in node.parts)
    if isinstance(node, Difference):
        return _shares_segment(node.left)
    return False


def _depends_on_offset_only(node) -> bool:
    """Every primitive of ``node`` but the segment ones is a function of j − i (independently)."""
    if type(node).__name__ in ("Segment", "SegmentStart"):
        return True
    if isinstance(node, (All, Nothing, Self, Causal, Window, Dilated, Stride, LogSparse)):
        return True
    if isinstance(node, (Union, Intersection, Difference, Complement)):
        return all(_depends_on_offset_only(p) for p in node.children())
    return False


def _thresholds(node, found: set) -> set:
    if type(node).__name__ == "SegmentStart":
        found.add(int(node.k))
    for child in node.children():
        _thresholds(child, found)
    return found


def _ids_with_ranks(n: int, ranks):
    from .segments import Segmentation

    seg = Segmentation.__new__(Segmentation)  # every id equal, the ranks as given
    seg.ids, seg.ranks = np.zeros(n, dtype=np.int64), np.asarray(ranks, dtype=np.int64)
    return seg


def _document_ids(n: int, a: int, length: int) -> np.ndarray:
    ids = np.arange(1, n + 1, dtype=np.int64)
    ids[a:a + length] = 0
    return ids


class _OneDocument(_Claims):
    """The claims' file read for one document (every id equal) with whole rows cheap:
    `segment` as `all`, `segment_start(k)` as cols(0..k) — their meanings without ids."""

    def __init__(self, ch: _Claims):
        self.__dict__.update(ch.__dict__)  # the same file, n and meter
        self._read: dict = {}

    def layer(self, k, h):
        if (k, h) not in self._read:
            from .ir import IndexSet
            from .segments import static_pattern

            def read(node):
                if type(node).__name__ == "SegmentStart":
                    return Cols(IndexSet.of([(0, int(node.k))], self.n))
                return All()

            self._read[k, h] = static_pattern(self.c.patterns[k][h], read, read)
        return self._read[k, h]


def _check_segment_claims(ch: _Claims, claims) -> None:
    if not (isinstance(claims, dict) and isinstance(claims.get("every_segmentation"), list)
            and [c.get("head") if isinstance(c, dict) else None for c in claims["every_segmentation"]]
            == list(range(ch.c.heads))):
        ch.failures.append("segments: need one entry per head, in order")
        return
    for c in claims["every_segmentation"]:
        h = c["head"]
        for name, check in (("self_loops", _check_segment_self_loops), ("hamiltonian_path", _check_segment_order),
                            ("finite_depth", _check_segment_depth)):
            claim = c.get(name)
            if not (isinstance(claim, dict) and "holds" in claim and (claim["holds"] is None or claim["holds"] is True
                                                                    or claim["holds"] is False)):
                ch.failures.append(f"segments: head {h}: {name}: missing or malformed")
            elif claim["holds"] is not None:
                ch.run(f"segments: head {h}: {name}", check, ch, h, claim)


def _check_segment_self_loops(ch: _Claims, h, claim) -> "str | None":
    from .segments import using

    n, idx = ch.n, np.arange(ch.n, dtype=np.int64)
    if claim["holds"] is False:
        m = claim.get("missing")
        if not (isinstance(m, list) and len(m) == 3 and _index(m[0], ch.p) and _index(m[1], n)
                and _int(m[2]) and 0 <= m[2] <= m[1]):
            return "malformed missing [layer, position, rank]"
        ranks = np.zeros(n, dtype=np.int64)
        ranks[m[1]] = m[2]
        with using(_ids_with_ranks(n, ranks)):
            if ch.has(m[0], h, [m[1]], [m[1]])[0]:
                return f"({m[1]}, {m[1]}) is in layer {m[0]} at rank {m[2]}"
        return None
    found: set = set()
    for k in range(ch.p):
        _thresholds(ch.layer(k, h), found)
    for t in sorted({0} | {min(k, n) for k in found}):  # one rank per class of rank(i) against the k's
        with using(_ids_with_ranks(n, np.minimum(idx, t))):
            for k in range(ch.p):
                if not ch.has(k, h, idx, idx).all():
                    return f"layer {k} lacks a self-loop for some rank (≤ {t})"
    return None


def _neighbour_order(ch: _Claims, h, below: bool) -> "int | None":
    """The first x ≥ 1 whose pair (x, x − 1) (below) or (x − 1, x) is missing from the union
    for some rank of the key (one per class against the k's; ≥ 1 for x), or None."""
    from .segments import using

    n = ch.n
    found: set = set()
    for k in range(ch.p):
        _thresholds(ch.layer(k, h), found)
    least = 0 if below else 1
    x = np.arange(1, n, dtype=np.int64)
    queries, keys = (x, x - 1) if below else (x - 1, x)
    for t in sorted({least} | {k for k in found if k > least}):
        ranks = np.maximum(least, np.minimum(np.arange(n, dtype=np.int64), t))
        with using(_ids_with_ranks(n, ranks)):
            missing = np.flatnonzero(~ch.union_has(h, queries, keys))
        if missing.size:
            return int(missing[0]) + 1
    return None


def _document_union(ch: _Claims, h, a: int, length: int) -> np.ndarray:
    from .segments import using

    local = np.arange(length, dtype=np.int64)
    i, j = np.repeat(local, length), np.tile(local, length)
    with using(_document_ids(ch.n, a, length)):
        return ch.union_has(h, a + i, a + j).reshape(length, length)


def _document(doc, n) -> bool:
    return (isinstance(doc, list) and len(doc) == 2 and all(_int(x) for x in doc) and doc[1] >= 1
            and 0 <= doc[0] and doc[0] + doc[1] <= n)


def _check_segment_order(ch: _Claims, h, claim) -> "str | None":
    if not all(_shares_segment(ch.layer(k, h)) for k in range(ch.p)):
        return "some layer connects pairs across segments: no per-document claim"
    if claim["holds"] is False:
        doc = claim.get("document")
        if not _document(doc, ch.n) or doc[1] > EXHAUSTIVE_N:
            return f"a refutation names a document of at most {EXHAUSTIVE_N} tokens [start, length]"
        if _hamiltonian_brute(_document_union(ch, h, *doc)):
            return f"the document [{doc[0]}, {doc[0] + doc[1]}) has a Hamiltonian path"
        return None
    witness = claim.get("witness")
    if witness not in ("identity", "reversed"):
        return "witness must be identity or reversed"
    x = _neighbour_order(ch, h, below=witness == "identity")
    if x is not None:
        return f"the {witness} order fails at token {x} (for some rank of it in its document)"
    return None


def _reach(union: np.ndarray, start: int) -> np.ndarray:
    seen = np.zeros(union.shape[0], dtype=bool)
    seen[start] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = union[frontier].any(axis=0) & ~seen
        seen |= frontier
    return seen


def _prefix_gap(ch: _Claims, h) -> "int | None":
    """In the one-document union: the first x ≥ 1 that attends no earlier token or that no
    earlier query attends, or None (every row's keys, in batches)."""
    n, view = ch.n, _OneDocument(ch)
    earlier_key = np.zeros(n, dtype=bool)
    cover = np.zeros(n + 1, dtype=np.int64)
    for k in range(ch.p):
        for rows in _batches(np.arange(n, dtype=np.int64)):
            ks = view.rows(k, h, rows)
            row = rows[ks.own]
            earlier_key[row[ks.lo < row]] = True
            lo = np.maximum(ks.lo, row + 1)  # the keys of row y beyond y
            keep = lo < ks.hi
            cover += np.bincount(lo[keep], minlength=n + 1)[:n + 1] - np.bincount(ks.hi[keep], minlength=n + 1)[:n + 1]
    ok = earlier_key & (np.cumsum(cover[:n]) > 0)
    bad = np.flatnonzero(~ok[1:])
    return int(bad[0]) + 1 if bad.size else None


def _check_segment_depth(ch: _Claims, h, claim) -> "str | None":
    if not all(_shares_segment(ch.layer(k, h)) for k in range(ch.p)):
        return "some layer connects pairs across segments: no per-document claim"
    if claim["holds"] is False:
        doc, pair = claim.get("document"), claim.get("unreachable")
        if not (_document(doc, ch.n) and isinstance(pair, list) and len(pair) == 2
                and all(_int(x) and doc[0] <= x < doc[0] + doc[1] for x in pair)):
            return "malformed document or unreachable pair"
        a, length = doc
        ch.meter.add(length * length)
        if _reach(_document_union(ch, h, a, length), pair[0] - a)[pair[1] - a]:
            return f"token {pair[1]} reaches query {pair[0]} in the document [{a}, {a + length})"
        return None
    evidence = claim.get("evidence")
    if evidence is not None:
        if not (isinstance(evidence, dict) and set(evidence) <= {"chain", "prefixes"} and evidence):
            return "evidence must be chain or prefixes"
        if _check_segment_self_loops(ch, h, {"holds": True}) is not None:
            return "C1 does not hold in every document"
        if "chain" in evidence:
            for below, name in ((True, "predecessor"), (False, "successor")):
                x = _neighbour_order(ch, h, below)
                if x is not None:
                    return f"the chain lacks token {x}'s {name} (for some rank in its document)"
        if "prefixes" in evidence:  # (each piece present is checked, also beside the chain)
            if not all(_depends_on_offset_only(ch.layer(k, h)) for k in range(ch.p)):
                return "prefixes: a layer holds a primitive that depends on more than j − i"
            x = _prefix_gap(ch, h)
            if x is not None:
                return f"prefixes: token {x} lacks an edge to or from the earlier tokens"
        s = claim.get("s")
        if s is not None:
            if not (_int(s) and s >= 1):
                return "s must be a positive integer"
            if not all(_depends_on_offset_only(ch.layer(k, h)) for k in range(ch.p)):
                return "s: the documents are not prefixes of one pattern"
            exact = _depth_by_intervals(_OneDocument(ch), h)
            if exact != s:
                return f"s: the worst document has s = {exact}, not {s}" if not isinstance(exact, str) \
                    else f"s: {exact}"
        return None
    if claim.get("s") is not None:
        return "a claimed s needs the prefixes evidence"
    for a, length, masks in _documents(ch, h):
        if not all(np.diagonal(m).all() for m in masks):
            return f"a layer lacks a self-loop in the document [{a}, {a + length})"
        union = np.logical_or.reduce(masks)
        if not (_reach(union, 0).all() and _reach(union.T, 0).all()):
            return f"the union graph is not strongly connected in the document [{a}, {a + length})"
    return None


def _documents(ch: _Claims, h):
    """(a, length, masks [layers][L, L]) for every document [a, a + L), with this module's evaluator."""
    from .segments import using

    n = ch.n
    for length in range(1, n + 1):
        local = np.arange(length, dtype=np.int64)
        i, j = np.repeat(local, length), np.tile(local, length)
        for a in range(n - length + 1):
            with using(_document_ids(n, a, length)):
                yield a, length, [ch.has(k, h, a + i, a + j).reshape(length, length) for k in range(ch.p)]


def verify_certificate(source_or_compiled, cert, max_work: int = DEFAULT_BUDGET) -> list[str]:
    """The failed claims of ``cert`` and, as failures too, those left unchecked
    (empty: every claim was checked and holds)."""
    report = verify_report(source_or_compiled, cert, max_work)
    return report["failures"] + [f"unchecked: {u}" for u in report["unchecked"]]

