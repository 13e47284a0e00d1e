"""C3 and C2 for layered patterns whose rows are mostly full (or empty), at any n.

C3 by full and empty rows (no C1 needed). Let G_t ⊆ {i : S^t_i = [n]} and
Z_t ⊆ {i : S^t_i = ∅} be: G_1 the full rows of layer 0, Z_1 its empty rows, and for t ≥ 2
  G_t = {i : A^{k(t)}_i ∩ G_{t−1} ≠ ∅}   (S^t_i ⊇ S^{t−1}_j = [n] for such a j),
  Z_t = {i : A^{k(t)}_i ⊆ Z_{t−1}}       (S^t_i is a union of empty sets).
  * G_t = [n]: s ≤ t (evidence "full_rows" {"step": t}).
  * when G_t ∪ Z_t = [n] the state of S^t is known exactly (every row is [n] or ∅), and so
    is every later one, which depends only on G_t and the layer: G_{t0} = G_{t1} with
    t0 ≡ t1 (mod p), G_t ≠ [n] for t0 ≤ t ≤ t1, and a missing pair for each t < t0 make
    s infinite (evidence "binary_cycle" [t0, t1] with "missing_each").
Lower bounds: a row of Z_t is a pair [i, 0] missing at step t; otherwise a few rows
outside G_t are pushed (structural_deciders.Layers.push), as missing_each wants.
verify.py recomputes G_t and Z_t from every row's intervals.

C2 by few partial rows: let C be the rows of U (the union of layers) that are not full.
Every token outside C may follow any token. Give each c ∈ C a distinct predecessor
pred(c) ∈ U_c \\ {c} (a bipartite matching, by augmenting paths) such that following pred
never cycles; then each token outside C heads a chain x, c_1, c_2, … (c_{q+1} the token
whose predecessor is c_q), and the chains in any order are a Hamiltonian path. The path
is an ordinary witness, checked pair by pair by verify.py.
"""
from __future__ import annotations

import numpy as np

from .rowsets import TooManyIntervals, all_rows, row_keys
from .structural_deciders import Layers, budget_clock

ROW_LIMIT = 1 << 24
MAX_STEPS = 64
MAX_PARTIAL = 4096  # partial rows of U for the C2 chains


def _layer_rows(patterns, n):
    """Per layer (own, lo, hi) over all rows, or None when there are too many intervals."""
    out = []
    try:
        for P in patterns:
            own, lo, hi, total = [], [], [], 0
            for rows, keys in all_rows(P, n, limit=ROW_LIMIT):
                own.append(rows[keys.own])
                lo.append(keys.lo)
                hi.append(keys.hi)
                total += keys.lo.size
                if total > 8 * n + (1 << 20):
                    return None
            out.append(tuple(np.concatenate(a) if a else np.zeros(0, dtype=np.int64) for a in (own, lo, hi)))
    except TooManyIntervals:
        return None
    return out


def _hits(rows, n, X):
    """Per row, how many of its keys lie in X."""
    own, lo, hi = rows
    cum = np.concatenate([[0], np.cumsum(X)])
    return np.bincount(own, weights=cum[hi] - cum[lo], minlength=n)


def binary_states(patterns, n, steps):
    """[(G_t, Z_t) for t = 1 … steps] (module docstring), or None when rows are too costly."""
    rows = _layer_rows(patterns, n)
    if rows is None:
        return None
    p = len(patterns)
    deg = _hits(rows[0], n, np.ones(n, dtype=bool))
    G, Z = deg == n, deg == 0
    states, last = [(G, Z)], steps
    for t in range(2, steps + 1):
        r = rows[(t - 1) % p]
        G, Z = _hits(r, n, G) > 0, _hits(r, n, ~Z) == 0
        states.append((G, Z))
        if last == steps and t > p and all(np.array_equal(a, b) for a, b in zip(states[-1], states[-1 - p])):
            # (G_t, Z_t) = (G_{t−p}, Z_{t−p}) at the same layer: periodic from t − p on, so a state's
            # next repeat (binary_depth's cycle) is listed once p − 1 more steps are
            last = min(steps, t + p - 1)
        if t >= last:
            break
    return states


def _missing(L, t, G, Z):
    """A pair [i, j] with j ∉ S^t_i: a row of Z_t, or a pushed row outside G_t; or None."""
    if Z.any():
        return [int(np.flatnonzero(Z)[0]), 0]
    for i in np.flatnonzero(~G)[:8]:
        X = L.push(int(i), t)
        if X is None:
            return None
        if not X.all():
            return [int(i), int(np.flatnonzero(~X)[0])]
    return None


def binary_depth(patterns, n, deadline=None, max_steps=MAX_STEPS) -> "dict | None":
    """A finite_depth claim from full and empty rows (exact s, bounds, or infinite), or None."""
    p = len(patterns)
    states = binary_states(patterns, n, max_steps)
    if states is None:
        return None
    L = Layers(patterns, n, deadline)
    each: list = []
    seen: dict = {}
    try:
        for t, (G, Z) in enumerate(states, start=1):
            if G.all():
                lo = len(each) + 1
                ev = {"full_rows": {"step": t}}
                if each:
                    ev["missing_each"] = each
                return {"holds": True, "s": t if lo == t else None, "s_bounds": [lo, t], "evidence": ev}
            if (G | Z).all():
                key = ((t - 1) % p, G.tobytes())
                if key in seen:
                    t0 = seen[key]
                    if len(each) < t0 - 1:
                        return None
                    ev = {"binary_cycle": [t0, t]}
                    if t0 > 1:
                        ev["missing_each"] = each[:t0 - 1]
                    return {"holds": False, "evidence": ev}
                seen[key] = t
            if len(each) == t - 1 and (budget_clock() <= deadline if deadline is not None else True):
                pair = _missing(L, t, G, Z)
                if pair is not None:
                    each.append(pair)
    except TooManyIntervals:
        return None
    return None


def chain_path(patterns, n, deadline=None) -> "np.ndarray | None":
    """A Hamiltonian path of U from chains through its few partial rows (module docstring), or None."""
    if n < 2:
        return None
    rows = _layer_rows(patterns, n)
    if rows is None:
        return None
    full = np.zeros(n, dtype=bool)
    for r in rows:
        full |= _hits(r, n, np.ones(n, dtype=bool)) == n
    C = np.flatnonzero(~full)
    if C.size == 0 or C.size > MAX_PARTIAL or C.size == n:
        return None
    keys = {}
    for P in patterns:
        ks = row_keys(P, C, n, ROW_LIMIT)
        for o, a, b in zip(ks.own.tolist(), ks.lo.tolist(), ks.hi.tolist()):
            keys.setdefault(int(C[o]), set()).update(range(a, min(b, a + 4 * MAX_PARTIAL)))
    in_c = set(C.tolist())
    cand = {}
    for c in C.tolist():
        ks = keys.get(c, set()) - {c}
        outside = [x for x in ks if x not in in_c][:2 * MAX_PARTIAL]
        cand[c] = outside + sorted(x for x in ks if x in in_c)
        if not cand[c]:
            return None
    pred: dict = {}
    owner: dict = {}

    def cycles(c, x):
        y = x  # would pred(c) = x close a loop through the preds?
        for _ in range(len(pred) + 1):  # (an augmenting path may have closed a loop elsewhere: stop)
            if y == c:
                return True
            if y not in pred:
                return False
            y = pred[y]
        return True

    def augment(c, visited):
        for x in cand[c]:
            if x in visited or cycles(c, x):
                continue
            visited.add(x)
            if x not in owner or augment(owner[x], visited):
                old = pred.get(c)
                if old is not None and owner.get(old) == c:
                    del owner[old]
                pred[c], owner[x] = x, c
                return True
        return False

    for c in C.tolist():
        if deadline is not None and budget_clock() > deadline:
            return None
        try:
            if not augment(c, set()):
                return None
        except RecursionError:  # an augmenting path deeper than Python's stack: no chains
            return None
    nxt = {x: c for c, x in pred.items()}
    path, used = [], np.zeros(n, dtype=bool)
    for x in np.flatnonzero(full).tolist():
        if used[x]:
            continue
        y = x
        while y is not None and not used[y]:
            path.append(y)
            used[y] = True
            y = nxt.get(y)
    if len(path) != n:
        return None
    return np.array(path, dtype=np.int64)
