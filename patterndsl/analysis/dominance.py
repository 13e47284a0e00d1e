"""C3's exact s for one layer with self-loops, from a few rows that every row contains.

With one layer A (so S^t_i is the set of tokens i reaches in at most t steps, given C1:
the ball of radius t around i in U), a row i whose keys contain the keys of row r has
S^t_i = ∪_{j ∈ A_i} S^{t−1}_j ⊇ ∪_{j ∈ A_r} S^{t−1}_j = S^t_r for every t ≥ 1. So when
every row contains the row of some r in a small set R (each r contains its own),
S^t = J exactly when S^t_r = [n] for every r in R, and

    s = max over r in R of ecc(r),  ecc(r) = the largest distance from r in U,

read off shortest-path trees out of each r (analysis/graph.py, no n × n matrix). The
certificate carries R and the trees: verify re-checks that every row contains a row of
R, that each tree is a tree of U (an upper bound: every token within its depth) and that
no edge of U skips a level of it (so its depths are the distances: the lower bound). `segment & (causal | window(-2, 2) | segment_start(2))` without ids (rows
[0, i] ∪ {i + 2} ∪ {0, 1}): R = {0, 1}, s = 32,768 at n = 65,536, where the layered
search for a lower bound ran out of time at s ≥ 4 (tree bound 32,769).
"""
from __future__ import annotations

import numpy as np

from .graph import tree_depths
from .rowsets import TooManyIntervals, all_rows, row_keys

MAX_ROWS = 16  # the most rows of R (each costs a shortest-path tree)
_LIMIT = 1 << 24  # intervals read at once


def _undominated(pattern, n: int, base: int) -> "np.ndarray | None":
    """The rows whose keys do not contain the keys of row ``base``, or None when a sample
    of rows already holds MAX_ROWS of them."""
    keys = row_keys(pattern, np.array([base], dtype=np.int64), n, limit=_LIMIT)
    inside = np.zeros(n + 1, dtype=np.int64)
    np.add.at(inside, keys.lo, 1)
    np.add.at(inside, keys.hi, -1)
    cum = np.concatenate([[0], np.cumsum(np.cumsum(inside)[:n] > 0)])  # keys of base in [0, x)
    size = int(cum[n])

    def left_out(rows, ks):
        shared = np.bincount(ks.own, weights=cum[ks.hi] - cum[ks.lo], minlength=rows.size)
        return rows[shared < size]

    sample = np.unique(np.linspace(0, n - 1, 4 * MAX_ROWS).astype(np.int64))
    if left_out(sample, row_keys(pattern, sample, n, limit=_LIMIT)).size >= MAX_ROWS:
        return None  # (rows of the sample already left out: too many, before reading every row)
    out = [left_out(rows, ks) for rows, ks in all_rows(pattern, n, limit=_LIMIT)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def dominating_rows(pattern, n: int, bases=None) -> "list | None":
    """A set R (sorted, at most MAX_ROWS) such that every row contains the row of some
    r ∈ R, or None when the bases tried leave more rows out."""
    for base in dict.fromkeys(bases if bases is not None else (0, n - 1, n // 2)):
        try:
            left = _undominated(pattern, n, base)
        except TooManyIntervals:
            return None
        if left is not None and left.size < MAX_ROWS:
            return sorted({base} | set(left.tolist()))
    return None


def dominated_depth(pattern, n: int, graph) -> "dict | None":
    """The finite_depth claim with s exact (one layer, C1, U strongly connected, ``graph``
    its UnionGraph), or None when no small R is found."""
    R = dominating_rows(pattern, n)
    if R is None:
        return None
    trees, s = [], 1  # (shortest-path trees: their depths are the distances, both bounds)
    for r in R:
        parent = graph.tree(r)
        if parent is None:
            return None
        trees.append(parent.tolist())
        s = max(s, int(tree_depths(parent, r).max()))
    return {"holds": True, "s": s, "s_bounds": [s, s], "evidence": {"dominated": {"rows": R, "out": trees}}}
