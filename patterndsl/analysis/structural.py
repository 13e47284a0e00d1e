"""C2 and C3 at any n from the rows' structure (no n × n matrix); see conditions.py.

  * ``interval_depth``: when every row of every layer is one interval [lo_k(i), hi_k(i))
    holding i, with lo_k and hi_k non-decreasing in i (windows, causal-free bands, chunks
    and their unions and intersections), S^t_i is the interval
    [lo_{k(1)} ∘ … ∘ lo_{k(t)}(i), hi_{k(1)} ∘ … ∘ hi_{k(t)}(i)), and S^t = J exactly
    when row n − 1 reaches 0 and row 0 reaches n − 1: s exactly, by composing the ends.
  * ``layered_reach``: S^t_i for one row i given C1 (then S^t_i grows with t), by pushing
    {i} through the layers; each token's row is read once per layer.
  * ``run_witnesses``: Hamiltonian paths that structured patterns admit — the residue
    classes mod d of a dilation or stride, each ascending or descending, joined directly
    or through hub tokens (rows and columns full, e.g. global tokens).
"""
from __future__ import annotations

from array import array

import numpy as np

from ..primitives import Dilated, Global, Stride
from .rowsets import TooManyIntervals, all_rows, row_keys
from .structural_deciders import Layers


def _single_intervals(P, n, limit):
    """(lo, hi) arrays when every row of P is one interval, else None."""
    lo = np.empty(n, dtype=np.int64)
    hi = np.empty(n, dtype=np.int64)
    try:
        for rows, keys in all_rows(P, n, limit=limit):
            if keys.own.size != rows.size or (keys.counts() != 1).any():
                return None
            lo[rows], hi[rows] = keys.lo, keys.hi
    except TooManyIntervals:
        return None
    return lo, hi


def _int_array(values: np.ndarray) -> array:
    """A compact int64 array whose items index as Python ints (fast in a scalar loop)."""
    out = array("q")
    out.frombytes(np.ascontiguousarray(values, dtype=np.int64).tobytes())
    return out


def interval_depth(patterns, n: int, limit: int = 1 << 24):
    """The exact s (an int), or None (s infinite), or False (the rows are not monotone
    intervals holding their own token)."""
    ends = []
    idx = np.arange(n, dtype=np.int64)
    sample = np.unique(np.linspace(0, n - 1, 17).astype(np.int64))
    for P in patterns:  # a few rows first: most patterns fail here, cheaply
        try:
            keys = row_keys(P, sample, n, limit=4 * sample.size)
        except TooManyIntervals:
            return False
        if keys.own.size != sample.size or (keys.counts() != 1).any():
            return False
    for P in patterns:
        pair = _single_intervals(P, n, limit)
        if pair is None:
            return False
        lo, hi = pair
        if (lo > idx).any() or (hi <= idx).any() or (np.diff(lo) < 0).any() or (np.diff(hi) < 0).any():
            return False
        ends.append((_int_array(lo), _int_array(hi - 1)))
    p = len(patterns)

    def reaches(t):
        """S^t = J: the maps of layers k(t), …, k(1) take n − 1 to 0 and 0 to n − 1."""
        x, y = n - 1, 0
        for step in range(t, 0, -1):
            lo, last = ends[(step - 1) % p]
            x, y = lo[x], last[y]
        return x == 0 and y == n - 1

    if p == 1:
        lo, last = ends[0]
        x, y, t = n - 1, 0, 1
        x, y = lo[x], last[y]
        while not (x == 0 and y == n - 1):
            nx, ny = lo[x], last[y]
            if (nx, ny) == (x, y):
                return None
            x, y, t = nx, ny, t + 1
        return t
    # Monotone in t (every row holds its token): the least t by doubling, then bisection.
    bound = p * max(n - 1, 1)
    if not reaches(bound):
        return None
    low, high = 0, 1
    while high < bound and not reaches(high):
        low, high = high, min(bound, 2 * high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


_LAST: list = []  # [Layers] of the last call: a check asks for several rows of the same layers


def layered_reach(patterns, n: int, i: int, upto: int, limit: int = 1 << 24, deadline=None):
    """(t, j): t the least step ≤ upto with S^t_i = [n] (None if not by upto), j a token
    not in S^{t−1}_i (None when t = 1). Needs C1 (so S^t_i grows with t). S^t_i is {i}
    grown through layers k(t), k(t − 1), …: for each start layer r one growth
    (Layers.grown, each row read once per layer) gives the steps T_r after which it is
    [n], so S^t_i = [n] for the t ≡ r + 1 (mod p) with t ≥ T_r, and t is the least of
    those. None when the ``deadline`` (budget_clock) passes."""
    p = len(patterns)
    if _LAST and _LAST[0].n == n and len(_LAST[0].patterns) == p and all(
            a is b for a, b in zip(_LAST[0].patterns, patterns)):
        layers = _LAST[0]
        layers.deadline = deadline
    else:
        layers = Layers(list(patterns), n, deadline, c1=True)  # each layer's rows read once, then indexed
        _LAST[:] = [layers]
    best, ends = None, {}
    try:
        for r in range(p):
            cap = upto if best is None else min(upto, best - 1)
            if cap < 1:
                return 1, None
            grown = layers.grown(i, r, cap)
            if grown is None:
                return None
            ends[r] = grown
            T = grown[0]
            if T is not None:
                t = T + (r + 1 - T) % p  # the least t ≥ T with k(t) = r
                if t <= upto and (best is None or t < best):
                    best = t
    except TooManyIntervals:
        return None
    if best is None:  # the growth from k(upto) is not [n] after upto steps
        return None, ends[(upto - 1) % p][1]
    if best == 1:
        return 1, None
    # The growth from k(best − 1) is not [n] after best − 1 steps: its token j is outside
    # (added later, or never).
    return best, ends[(best - 2) % p][1]


def _moduli(patterns, n):
    found = set()

    def walk(node):
        if isinstance(node, Dilated):
            found.add(min(node.d, n))
        elif isinstance(node, Stride):
            found.add(min(node.s, n))
        for child in node.children():
            walk(child)

    for P in patterns:
        walk(P)
    return sorted(d for d in found if 2 <= d <= 64)


def hub_tokens(patterns, n, limit=8):
    """Tokens whose row and column are full in some layer (global tokens, say)."""
    found = []

    def walk(node):
        if isinstance(node, Global):
            for lo, hi in node.indices.intervals:
                found.extend(range(lo, min(hi, lo + limit)))
        for child in node.children():
            walk(child)

    for P in patterns:
        walk(P)
    return sorted(set(x for x in found if 0 <= x < n))[:limit]


def run_witnesses(patterns, n):
    """Candidate permutations γ (int64 arrays), cheapest first."""
    hubs = hub_tokens(patterns, n)
    for d in _moduli(patterns, n):
        if d >= n:
            continue
        for order in (list(range(d)), list(range(d - 1, -1, -1))):
            for ascending in (True, False):
                for use_hubs in ((False, True) if hubs else (False,)):
                    classes = []
                    for r in order:
                        members = np.arange(r, n, d, dtype=np.int64)
                        if use_hubs:
                            members = members[~np.isin(members, hubs)]
                        classes.append(members if ascending else members[::-1])
                    if use_hubs:
                        joins = hubs[:len(classes) - 1]
                        lead = np.array(hubs[len(classes) - 1:], dtype=np.int64)
                        parts = [lead]
                        for q, members in enumerate(classes):
                            parts.append(members)
                            if q < len(joins):
                                parts.append(np.array([joins[q]], dtype=np.int64))
                    else:
                        parts = classes
                    yield np.concatenate(parts)


def as_runs(g: np.ndarray) -> list:
    """γ as [[start, stop, step], …], greedy arithmetic runs (range(start, stop, step))."""
    n = g.size
    if n == 1:
        return [[int(g[0]), int(g[0]) + 1, 1]]
    d = np.diff(g)
    change = np.flatnonzero(d[1:] != d[:-1]) + 1  # d is constant on [change[q], change[q + 1])
    runs, k = [], 0
    while k < n:
        if k == n - 1:
            runs.append([int(g[k]), int(g[k]) + 1, 1])
            break
        q = np.searchsorted(change, k, side="right")
        end = int(change[q]) if q < change.size else n - 1  # the run's last element
        step = int(d[k])
        runs.append([int(g[k]), int(g[end]) + step, step])
        k = end + 1
    return runs


def _without_self(rows, keys):
    """The intervals of ``keys`` with each row's own token cut out: (token, lo, hi)."""
    token = rows[keys.own]
    inside = (keys.lo <= token) & (token < keys.hi)
    lo = np.concatenate([keys.lo[~inside], keys.lo[inside], token[inside] + 1])
    hi = np.concatenate([keys.hi[~inside], token[inside], keys.hi[inside]])
    own = np.concatenate([token[~inside], token[inside], token[inside]])
    keep = lo < hi
    return own[keep], lo[keep], hi[keep]


def counting_refutation(patterns, n, limit=1 << 24):
    """A set X of tokens and a set Y with |Y| < |X| − 1 such that every x ∈ X has all its
    successors or all its predecessors (other than itself) in Y — a Hamiltonian path
    gives the tokens of X but one distinct ones there. As a refutation dict, or None.

    X is chosen by in- or out-degree (self excluded) at most c, for c = 0, 1, 2, 4, …."""
    indeg = np.zeros(n + 1, dtype=np.int64)
    outdeg = np.zeros(n, dtype=np.int64)
    try:
        for P in patterns:
            for rows, keys in all_rows(P, n, limit=limit):
                own, lo, hi = _without_self(rows, keys)
                np.add.at(indeg, lo, 1)
                np.add.at(indeg, hi, -1)
                np.add.at(outdeg, own, hi - lo)
    except TooManyIntervals:
        return None
    indeg = np.cumsum(indeg[:n])  # an upper bound when layers overlap: only picks X
    for c in (0, 1, 2, 4, 8, 16, 64):
        for kind, degree in (("few_successors", indeg), ("few_predecessors", outdeg)):
            X = degree <= c
            if X.sum() < 3:
                continue
            Y = np.zeros(n + 1, dtype=np.int64)
            marked = np.zeros(n, dtype=bool)
            cum = np.concatenate([[0], np.cumsum(X)])
            for P in patterns:
                if kind == "few_successors":  # the rows attending into X (not only themselves)
                    for rows, keys in all_rows(P, n, limit=limit):
                        own, lo, hi = _without_self(rows, keys)
                        marked[own[cum[hi] - cum[lo] > 0]] = True
                else:  # the keys of X's rows, themselves excluded
                    for rows, keys in all_rows(P, n, limit=limit):
                        own, lo, hi = _without_self(rows, keys)
                        pick = X[own]
                        np.add.at(Y, lo[pick], 1)
                        np.add.at(Y, hi[pick], -1)
            if kind == "few_predecessors":
                marked = np.cumsum(Y[:n]) > 0
            if marked.sum() < X.sum() - 1:
                return {"kind": kind, "tokens": _ranges_of(X), "others": _ranges_of(marked)}
    return None


def _ranges_of(mask: np.ndarray) -> list:
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
