"""C1 for every segmentation, and C2 and C3 within every packed document, at any n
(`per_segmentation`, for `patterndsl check`).

A pattern reading run-time segment ids (patterndsl/segments.py) is checked per document:
a document is a run [a, a + L) of equal ids, 1 ≤ L ≤ n, and for a pattern whose pairs
all share a segment (`within_segments`, every layer) the pairs inside a document depend
on that document only. Inside it `segment` holds and `segment_start(k)` holds exactly
when the key's rank j − a is below k; every other primitive reads the absolute (i, j).
Hence a pair (i, j) of one document depends on the segmentation only through rank(j),
which any segmentation sets to any r in [0, j] (a document starting at j − r), or
[1, j] when the document also holds j − 1. The arguments below use that, never n
evaluations of documents:

  * rank classes. A pair's value depends on rank(j) only through the tests rank(j) < k,
    so one rank per class against the thresholds k decides it for every r: the ranks
    min(j, t), t ∈ {0} ∪ {the k's} (or {1} ∪ …: at least 1). Pairs are evaluated under
    those rank vectors with every id equal (segments.with_ranks), O(n) per class.
  * the two off-diagonals. (x, x − 1) lies in a document exactly when both tokens do;
    so "every token attends its predecessor in every document" (C2's identity order)
    is the subdiagonal under every rank class of x − 1, and the reversed order the
    superdiagonal under every class of x (rank ≥ 1). Exact, any n.
  * the documents of length 2, [x − 1, x + 1): their ranks are 0 and 1, so the
    subdiagonal at rank 0 and the superdiagonal at rank 1 say which of their two
    pairs hold. Neither: that document has no Hamiltonian path (C2 fails). One of them
    missing: it is not strongly connected (C3 fails, whatever the depth).
  * the chain. Both off-diagonals under every rank class: in every document each token
    reaches both neighbours, so the union graph of every document is strongly connected
    and, with C1 in every document, s is finite there (conditions.py's theorem).
    Without `segment_start` the chain is also necessary (the documents of length 2), so
    C3 is then decided exactly by the chain.
  * document-local patterns (`document_local`: every other primitive is a function of
    j − i alone: bands, dilated, stride, logsparse). The pattern of the document
    [a, a + L) is then the top-left L × L block of the one-document pattern (every id
    equal) at n, whatever a: the documents are the prefixes of one graph. Every prefix
    is strongly connected exactly when every token x ≥ 1 attends an earlier token and
    is attended by an earlier query (induction on L: a strongly connected prefix plus
    a token with an edge each way into it is strongly connected; conversely the last
    token of [0, x + 1) needs both edges). Decided from the one-document rows
    (analysis/rowsets.py), O(n · intervals per row); the first x that lacks an edge
    names a document [0, x + 1) that is not strongly connected. And where every row is
    one interval holding its token with non-decreasing ends (interval_depth), the
    depth of a prefix grows with its length (the interval ends reached from row
    L − 1 leftwards and from row 0 rightwards move monotonically), so the worst s over
    every document is the s of the one document [0, n).
  * for n ≤ DOCUMENT_N, else undecided: every document [a, a + L) with the dense
    reference (the brute force, also what the tests compare against).

Each claim says which argument it rests on; patterndsl/verify.py re-checks it on its own.
"""
from __future__ import annotations

import numpy as np

from ..ir import Complement, Difference, Intersection, Union
from ..primitives import All, Causal, Dilated, LogSparse, Nothing, Self, Segment, SegmentStart, Stride, Window
from .. import segments as seg
from .conditions import pair_values
from .rowsets import TooManyIntervals, all_rows
from .structural import interval_depth
from .structural_deciders import union_steps

DOCUMENT_N = 32  # the brute force (every document with the dense reference) up to this n
_ROW_LIMIT = 1 << 24  # intervals held at once for the one-document rows

# Primitives whose pairs depend on j − i alone (and not on n, for |j − i| < n): inside a
# document they read the same at every start a. (tests/test_segments_check.py checks the
# consequence, document block = one-document prefix, against the dense reference.)
_SHIFT_INVARIANT = (All, Nothing, Self, Causal, Window, Dilated, Stride, LogSparse)


def document_local(pattern) -> bool:
    """Whether the pattern inside any document [a, a + L) is the top-left L × L block of
    its one-document pattern: built with set operations from the segment primitives and
    primitives that depend on j − i only."""
    if isinstance(pattern, (Segment, SegmentStart) + _SHIFT_INVARIANT):
        return True
    if isinstance(pattern, (Union, Intersection, Difference, Complement)):
        return all(document_local(child) for child in pattern.children())
    return False


def rank_classes(stack, n: int, least: int) -> list:
    """One rank t per class of a key's rank against the thresholds k of `segment_start(k)`,
    for keys of rank ≥ ``least``: the rank vectors are max(least, min(j, t))."""
    ks = {min(k, n) for p in stack for k in seg.segment_start_sizes(p)}
    return sorted({least} | {k for k in ks if k > least})


def _diagonal(stack, n: int, t: int, least: int, below: bool) -> np.ndarray:
    """Bool [n − 1], entry x − 1 for x in 1..n−1: (x, x − 1) (below) or (x − 1, x) in some
    layer, with every id equal and the key's rank max(least, min(key, t))."""
    x = np.arange(1, n, dtype=np.int64)
    queries, keys = (x, x - 1) if below else (x - 1, x)
    ranks = np.maximum(least, np.minimum(np.arange(n, dtype=np.int64), t))
    with seg.using(seg.with_ranks(np.zeros(n, dtype=np.int64), ranks)):
        return union_steps(stack, n, pair_values, queries, keys)


def _off_diagonals(stack, n: int) -> dict:
    """The subdiagonal (predecessor) and superdiagonal (successor) of the union: under
    every rank class (every document) and in the documents of length 2."""
    below = {t: _diagonal(stack, n, t, 0, True) for t in rank_classes(stack, n, 0)}
    above = {t: _diagonal(stack, n, t, 1, False) for t in rank_classes(stack, n, 1)}
    return {"predecessor": np.logical_and.reduce(list(below.values())),
            "successor": np.logical_and.reduce(list(above.values())),
            "pair_predecessor": below[0], "pair_successor": above[1],
            "ranks": {"predecessor": sorted(below), "successor": sorted(above)}}


def _first(mask: np.ndarray) -> "int | None":
    hits = np.flatnonzero(mask)
    return int(hits[0]) + 1 if hits.size else None  # entry x − 1 stands for token x


def prefix_gaps(stack, n: int):
    """For the one-document union: (the first token x ≥ 1 that attends no earlier token,
    the first that no earlier query attends), each None when there is none; or False when
    the rows hold too many intervals."""
    earlier_key = np.zeros(n, dtype=bool)
    cover = np.zeros(n + 1, dtype=np.int64)  # a difference array over the keys attended by an earlier query
    try:
        with seg.using(None):
            for pattern in stack:
                for rows, keys in all_rows(pattern, n, limit=_ROW_LIMIT):
                    row = rows[keys.own]
                    earlier_key[row[keys.lo < row]] = True
                    lo = np.maximum(keys.lo, row + 1)
                    keep = lo < keys.hi
                    cover += np.bincount(lo[keep], minlength=n + 1)[:n + 1]
                    cover -= np.bincount(keys.hi[keep], minlength=n + 1)[:n + 1]
    except TooManyIntervals:
        return False
    attended = np.cumsum(cover[:n]) > 0
    no_key = np.flatnonzero(~earlier_key[1:])
    no_query = np.flatnonzero(~attended[1:])
    return (int(no_key[0]) + 1 if no_key.size else None, int(no_query[0]) + 1 if no_query.size else None)


def per_segmentation(compiled) -> list:
    """Per head, the conditions that hold for EVERY segmentation (patterndsl/segments.py), for `patterndsl check`:

    * ``self_loops``: (i, i) in every layer for every ids. On the diagonal `segment` holds
      and `segment_start(k)` reads only rank(i), which any segmentation sets to any r ≤ i
      (a document starting at i − r): decided exactly from the rank vectors min(i, t),
      t ∈ {0} ∪ {the k's} (one per class of rank(i) against the thresholds k). A failure
      names the position and rank;
    * ``hamiltonian_path`` / ``finite_depth`` within each packed document (a run of equal
      ids), for a pattern whose pairs all share a segment (within_segments; every layer),
      decided at any n from structure: the module docstring states the
      arguments (rank classes, the off-diagonals, the documents of length 2, the chain,
      documents as prefixes of one pattern) and a brute force over every document for
      small n. Else ``holds: None``: not decided for every segmentation, with the reason.
    """
    n, layers = compiled.n, compiled.layers
    out = []
    for h in range(compiled.heads):
        stack = [compiled.patterns[k][h] for k in range(layers)]
        self_loops = self_loops_every(stack, n)
        out.append({"head": h, "self_loops": self_loops, **per_document(stack, n, self_loops)})
    return out


def self_loops_every(stack, n: int) -> dict:
    positions = np.arange(n, dtype=np.int64)
    sizes = sorted({0} | {min(k, n) for p in stack for k in seg.segment_start_sizes(p)})
    for t in sizes:
        ranks_t = np.minimum(positions, t)
        with seg.using(seg.with_ranks(np.zeros(n, dtype=np.int64), ranks_t)):
            for layer, pattern in enumerate(stack):
                diagonal = np.asarray(pattern.pairs(positions, positions, n), dtype=bool)
                if not diagonal.all():
                    i = int(np.flatnonzero(~diagonal)[0])
                    return {"holds": False, "missing": [layer, i, int(ranks_t[i])],
                            "why": f"layer {layer} lacks ({i}, {i}) when position {i} has rank {int(ranks_t[i])} "
                                   f"in its segment (a document starting at {i - int(ranks_t[i])})"}
    return {"holds": True, "ranks": sizes,
            "why": "every layer holds (i, i) for every rank of i in its segment"}


def per_document(stack, n: int, self_loops: dict) -> dict:
    """{"hamiltonian_path": claim, "finite_depth": claim} within every document of every
    segmentation; ``self_loops`` is the C1 claim for every segmentation (segments.py)."""
    if not all(seg.within_segments(p) for p in stack):
        undecided = "not decided for every segmentation: some layer connects pairs across segments"
        return {"hamiltonian_path": {"holds": None, "reason": undecided},
                "finite_depth": {"holds": None, "reason": undecided}}
    diagonals = _off_diagonals(stack, n) if n > 1 else None
    return {"hamiltonian_path": _order(stack, n, diagonals),
            "finite_depth": _depth(stack, n, diagonals, self_loops["holds"] is True)}


def _order(stack, n: int, d) -> dict:
    if d is None or d["predecessor"].all():
        return {"holds": True, "witness": "identity", "ranks": d["ranks"]["predecessor"] if d else [0],
                "why": "in every document each token attends its predecessor (for every rank of it)"}
    if d["successor"].all():
        return {"holds": True, "witness": "reversed", "ranks": d["ranks"]["successor"],
                "why": "in every document each token attends its successor (for every rank of it)"}
    x = _first(~d["pair_predecessor"] & ~d["pair_successor"])
    if x is not None:
        return {"holds": False, "document": [x - 1, 2],
                "why": f"in the document [{x - 1}, {x + 1}) neither token attends the other: no Hamiltonian path"}
    # (the brute force below decides C2 by these same two orders: nothing more for small n)
    return {"holds": None, "reason": "not decided for every segmentation: neither the identity nor the reversed "
                                     "order holds in every document, and every document of length 2 has a path"}


def _refuted(a: int, length: int, i: int, j: int) -> dict:
    return {"holds": False, "document": [a, length], "unreachable": [i, j],
            "why": f"in the document [{a}, {a + length}) query {i} never receives token {j}"}


def _depth(stack, n: int, d, c1: bool) -> dict:
    if d is not None:
        x = _first(~d["pair_predecessor"])
        y = _first(~d["pair_successor"])
        if x is not None and (y is None or x <= y):
            return _refuted(x - 1, 2, x, x - 1)
        if y is not None:
            return _refuted(y - 1, 2, y - 1, y)
    no_c1 = {"holds": None, "reason": "not decided for every segmentation: C1 does not hold in every document"}
    if d is None or (d["predecessor"].all() and d["successor"].all()):
        if not c1:
            return no_c1
        return {"holds": True, "s": (s := _prefix_depth(stack, n)),
                "evidence": {"chain": {"predecessor": d["ranks"]["predecessor"] if d else [0],
                                       "successor": d["ranks"]["successor"] if d else [1]}},
                "why": "in every document each token attends both neighbours (for every rank): strongly connected, "
                       "with self-loops in every layer" + _worst(s)}
    # (here some `segment_start` is read: without one, the rank classes are those of the documents of
    # length 2, so a missing chain pair was refuted above)
    if all(document_local(p) for p in stack):
        gaps = prefix_gaps(stack, n)
        if gaps is not False:
            no_key, no_query = gaps
            if no_key is not None and (no_query is None or no_key <= no_query):
                return _refuted(0, no_key + 1, no_key, 0)
            if no_query is not None:
                return _refuted(0, no_query + 1, 0, no_query)
            if not c1:
                return no_c1
            s = _prefix_depth(stack, n)
            return {"holds": True, "s": s, "evidence": {"prefixes": True},
                    "why": "every document is a prefix of the one-document pattern, and there each token attends an "
                           "earlier one and is attended by an earlier query: every prefix is strongly connected"
                           + _worst(s)}
    if n <= DOCUMENT_N:
        return _brute(stack, n)["finite_depth"]
    return {"holds": None, "reason": "not decided for every segmentation: neither the chain holds in every document "
                                     "nor is every document a prefix of one pattern"}


def _worst(s) -> str:
    return "" if s is None else f"; the worst document is the longest, [0, n): s = {s}"


def _prefix_depth(stack, n: int) -> "int | None":
    """The worst s over every document, when the pattern is document-local and its
    one-document rows are monotone intervals holding their token; else None."""
    if not all(document_local(p) for p in stack):
        return None
    with seg.using(None):
        s = interval_depth(stack, n)
    return s if isinstance(s, int) and not isinstance(s, bool) else None


# ---- the brute force: every document with the dense reference ------------------------------


def _brute(stack, n: int) -> dict:
    from ..reference import dense_mask

    identity = reversed_ = c1 = connected = True
    unreachable = None
    for length in range(1, n + 1):
        for start in range(0, n - length + 1):
            with seg.using(seg.one_document(n, start, length)):
                masks = [dense_mask(p, n)[start:start + length, start:start + length] for p in stack]
            union = np.logical_or.reduce(masks)
            steps = np.arange(1, length)
            identity &= bool(union[steps, steps - 1].all())
            reversed_ &= bool(union[steps - 1, steps].all())
            c1 &= all(bool(np.diagonal(m).all()) for m in masks)
            if connected:
                pair = unreachable_pair(union)
                if pair is not None:
                    connected, unreachable = False, [start, length, start + pair[0], start + pair[1]]
    if identity or reversed_:
        c2 = {"holds": True, "witness": "identity" if identity else "reversed",
              "why": "in every document each token attends its " + ("predecessor" if identity else "successor")}
    else:
        c2 = {"holds": None, "reason": "not decided for every segmentation: no identity or reversed order "
                                       "in every document"}
    if not connected:
        c3 = _refuted(*unreachable)
    elif c1:
        c3 = {"holds": True, "why": "in every document: self-loops in every layer and a strongly connected "
                                    "union graph"}
    else:
        c3 = {"holds": None, "reason": "not decided for every segmentation: some document lacks a self-loop"}
    return {"hamiltonian_path": c2, "finite_depth": c3}


def unreachable_pair(union: np.ndarray):
    """(i, j) local: j not reachable from i in the graph ``union`` (i → j when union[i, j]),
    or None when it is strongly connected."""
    size = union.shape[0]
    for matrix, flip in ((union, False), (union.T, True)):
        seen = np.zeros(size, dtype=bool)
        seen[0] = True
        frontier = seen.copy()
        while frontier.any():
            frontier = matrix[frontier].any(axis=0) & ~seen
            seen |= frontier
        if not seen.all():
            j = int(np.flatnonzero(~seen)[0])
            return (j, 0) if flip else (0, j)
    return None
