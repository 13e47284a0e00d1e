"""More structural decisions of C2 and C3 at any n (no n × n matrix); called from conditions.py.

Notation as in conditions.py: layers A^0..A^{p−1}, k(t) = (t − 1) mod p, S^1_i = A^{k(1)}_i,
S^t_i = ∪_{j ∈ A^{k(t)}_i} S^{t−1}_j, so S^t_i = F_{k(1)}(F_{k(2)}(… F_{k(t)}({i}))) with
F_k(X) = ∪_{x ∈ X} A^k_x (``push``: t sweeps over the keys of the rows reached, each
O(n · degree) from the rows' interval structure, analysis/rowsets.py). None of the
rules below needs C1 (self-loops); s is the least t with S^t = J.

C3 (``depth_by_cover``):
  * upper bound by a cover: a step t ≥ 2 and a set H of tokens such that every row of
    layer k(t) attends some h ∈ H, and S^{t−1}_h = [n] for each h ∈ H. Then
    S^t_i ⊇ S^{t−1}_h = [n] for every i: S^t = J, s ≤ t. (A hub token — column full in
    layer k(t) — is the case |H| = 1.) Evidence {"cover": {"step": t, "tokens": H}}.
  * lower bound, given C1 (S^t grows with t): one pair j ∉ S^{lo−1}_i ("missing_before");
    without C1, one pair per step: j_t ∉ S^t_{i_t} for every t < lo ("missing_each":
    [[i_1, j_1], …, [i_{lo−1}, j_{lo−1}]]).
  * refutation: a key j that no row of layer k(1) attends: every S^t_i ⊆ ∪_x A^{k(1)}_x,
    so S^t ≠ J for every t, s is infinite. Evidence {"empty_column": j}.

C3 upper bound by common columns (``common_cover``): when every row of layer k(t) attends
every token of a set C (columns full in that layer: the row-independent parts of a
union — `cols`, `summary`, global columns — read from the rows' structure), S^t_i ⊇
∪_{c ∈ C} S^{t−1}_c = F_{k(1)}(… F_{k(t−1)}(C)) for every i; when that set is [n], s ≤ t
(no C1 needed). Each F_k(X) of a non-empty X is C_k ∪ (the keys of X's rows in the rest
of the union), so the common columns' intervals (every row of deepspeed_fixed holds
n/64 of them) are never listed per row. Evidence {"common_cover": {"step": t,
"tokens": ranges}}.

C2 refutation (``split_refutation``): removing a set K of tokens from a Hamiltonian path
leaves at most |K| + 1 runs of consecutive tokens, and consecutive tokens are joined by an
edge of U. So when U's tokens outside K fall into more than |K| + 1 pieces with no edge
of U between two pieces (in either direction, rows of K ignored), there is no path. The
pieces are the weakly connected components of U − K, from the rows' intervals
(``weak_pieces``: O(n + intervals)); K = ∅, the hub tokens (global rows and columns),
or the tokens of highest degree. Evidence {"kind": "split", "removed": ranges,
"pieces": [ranges, …]}: |K| + 1 pieces listed, the tokens outside K and them a further
(non-empty) piece.

C2 (``path_families``): candidate Hamiltonian paths that structured patterns admit,
each tested step by step on the union (O(n · pattern size) per candidate): runs of a
constant step d (the residue classes mod d, ascending, descending or alternating
direction — boustrophedon), consecutive blocks of b tokens in alternating direction,
the two halves interleaved (for complements of bands), joined directly or through hub
tokens. verify expands the runs and re-checks every step.
"""
from __future__ import annotations

import time

import numpy as np

from ..ir import AnyOf, Scaled, Union
from ..primitives import Chunk, Dilated, Stride, Summary
from ..structure import ColumnResidues, Span
from .rowsets import TooManyIntervals, all_rows, row_keys, row_period

# The searches' budget is this process's CPU time, not wall time: a verdict must not depend
# on how loaded the machine is (with a wall-clock budget the same file was decided on an
# idle machine and undecided beside other jobs).
budget_clock = time.process_time


ROW_LIMIT = 1 << 24  # intervals per row_keys call


def spread(lo: np.ndarray, width: np.ndarray) -> np.ndarray:
    """lo[0] … lo[0] + width[0] − 1, lo[1] …: the integers of the intervals, concatenated."""
    width = np.asarray(width, dtype=np.int64)
    total = int(width.sum())
    ends = np.cumsum(width)
    return np.arange(total, dtype=np.int64) + np.repeat(np.asarray(lo, dtype=np.int64) - (ends - width), width)


class Layers:
    """Row reads of one head's layers, with the column support of each layer cached.

    F_k(X) is read part by part of layer k's union: a part whose rows repeat with a period
    p ≤ n/2 (row_period: stride(s), summary, transpose(summary)) from its p rows alone —
    row x's keys are row (x mod p)'s, so only the residues of X matter — and the other
    parts together from their rows (`stride(4096) | window(1)` at n = 2^20 read 2^20 rows
    of 258 intervals at every step, now 4096 of 257 once and 2^20 of one)."""

    def __init__(self, patterns, n, deadline=None, c1=False):
        self.patterns = patterns
        self.c1 = c1  # every layer holds its diagonal: push reads S^t off a growth
        self.n = n
        self.p = len(patterns)
        self.deadline = deadline
        self._support: dict = {}
        self._pushed: dict = {}
        self._rows: dict = {}  # (id(pattern), rows read) → (pattern, (own, lo, hi) or None)
        self._split: dict = {}
        self._first: dict = {}
        self._growths: dict = {}
        self._slot = None  # (distinct)

    def late(self) -> bool:
        return self.deadline is not None and budget_clock() > self.deadline

    def apply(self, k, X: np.ndarray) -> np.ndarray:
        """F_k(X): the keys of the rows in X in layer k (bool [n])."""
        if X.all():
            if k not in self._support:
                self._support[k] = self._apply(k, X)
            return self._support[k].copy()
        return self._apply(k, X)

    def _every(self, P, m):
        """P's rows 0 … m − 1 as (own, lo, hi), or None when they hold too many intervals."""
        hit = self._rows.get((id(P), m))
        if hit is None or hit[0] is not P:
            own, lo, hi, total = [], [], [], 0
            try:
                batches = all_rows(P, self.n, limit=ROW_LIMIT) if m == self.n else (
                    (rows, row_keys(P, rows, self.n, ROW_LIMIT))
                    for rows in np.array_split(np.arange(m, dtype=np.int64), -(-m // (1 << 16))))
                for rows, keys in batches:
                    own.append(rows[keys.own])
                    lo.append(keys.lo)
                    hi.append(keys.hi)
                    total += keys.lo.size
                    if total > 8 * self.n + (1 << 20):
                        raise TooManyIntervals(total)
                hit = (P, tuple(np.concatenate(a) for a in (own, lo, hi)))
            except TooManyIntervals:
                hit = (P, None)
            self._rows[id(P), m] = hit
        return hit[1]

    def _all(self, k):
        """Layer k's rows as (own, lo, hi) over all tokens, or None when too many intervals."""
        return self._every(self.patterns[k], self.n)

    def _parts(self, k) -> list:
        """Layer k as [(part, p)]: the parts of its union with a row period p ≤ n/2 each, and
        the others joined into one part (p None)."""
        if k not in self._split:
            periodic, other, stack = [], [], [self.patterns[k]]
            while stack:
                node = stack.pop()
                if isinstance(node, Union):
                    stack.extend(node.parts)
                    continue
                p = row_period(node, self.n)
                (periodic if p is not None and 2 * p <= self.n else other).append((node, p))
            if not periodic:
                self._split[k] = [(self.patterns[k], None)]
            else:
                rest = [node for node, _ in other]
                self._split[k] = periodic + ([(rest[0] if len(rest) == 1 else Union(tuple(rest)), None)]
                                             if rest else [])
        return self._split[k]

    def thinnest(self, k, count=8) -> list:
        """The rows of layer k with the fewest keys (empty rows first)."""
        every = self._all(k)
        if every is None:
            return []
        own, lo, hi = every
        degree = np.bincount(own, weights=hi - lo, minlength=self.n)
        return np.argsort(degree, kind="stable")[:count].tolist()

    def _apply(self, k, X):
        n = self.n
        marks = np.zeros(n + 1, dtype=np.int64)
        for P, p in self._parts(k):
            if p is None:
                m, pick = n, X
            else:  # row x's keys are row (x mod p)'s
                m, pick = p, np.zeros(p, dtype=bool)
                pick[np.flatnonzero(X) % p] = True
            every = self._every(P, m)
            if every is not None:
                own, lo, hi = every
                chosen = pick[own]
                marks += np.bincount(lo[chosen], minlength=n + 1) - np.bincount(hi[chosen], minlength=n + 1)
                continue
            rows = np.flatnonzero(pick)
            for start in range(0, rows.size, 1 << 16):
                keys = row_keys(P, rows[start:start + (1 << 16)], n, ROW_LIMIT)
                np.add.at(marks, keys.lo, 1)
                np.add.at(marks, keys.hi, -1)
        return np.cumsum(marks[:n]) > 0

    def _keys_of(self, P, m, rows):
        """(lo, hi) of the intervals of P's rows ``rows`` (< m), from the rows read once
        (``_every``, indexed by row) or, when they hold too many intervals, read now."""
        every = self._every(P, m)
        if every is None:
            sets = [row_keys(P, rows[s:s + (1 << 16)], self.n, ROW_LIMIT) for s in range(0, rows.size, 1 << 16)]
            return (np.concatenate([ks.lo for ks in sets] + [np.zeros(0, dtype=np.int64)]),
                    np.concatenate([ks.hi for ks in sets] + [np.zeros(0, dtype=np.int64)]))
        own, lo, hi = every
        if (id(P), m) not in self._first:  # row r's intervals are first[r] … first[r + 1] − 1
            self._first[id(P), m] = np.searchsorted(own, np.arange(m + 1, dtype=np.int64))
        first = self._first[id(P), m]
        at = spread(first[rows], first[rows + 1] - first[rows])
        return lo[at], hi[at]

    def distinct(self, values: np.ndarray) -> np.ndarray:
        """The distinct tokens of ``values`` (in [0, n)) without a sort: each token's slot of
        a scratch array holds one of its positions (whichever write came last), and that
        position alone is kept."""
        if values.size < 2:
            return values
        if self._slot is None:
            self._slot = np.empty(self.n, dtype=np.int64)
        at = np.arange(values.size, dtype=np.int64)
        self._slot[values] = at
        return values[self._slot[values] == at]

    def growth(self, i: int, start: int) -> "_Growth":
        """The growth of {i} from layer ``start`` (kept: S^t for every t of its layer is
        read off it), the least recently used dropped past GROWTH_BYTES."""
        key = (int(i), int(start) % self.p)
        g = self._growths.pop(key, None)
        if g is None:
            g = _Growth(self, int(i), int(start) % self.p)
            while self._growths and (len(self._growths) + 1) * g.when.nbytes > GROWTH_BYTES:
                self._growths.pop(next(iter(self._growths)))
        self._growths[key] = g
        return g

    def grown(self, i: int, start: int, upto: int):
        """Given C1: (T, j), T the steps ≤ ``upto`` after which {i} grown from layer
        ``start`` is [n] and j a token its last step added, or T None and j a token outside
        it after ``upto`` steps; None past the deadline."""
        g = self.growth(i, start)
        if not g.run(upto):
            return None
        if g.full is not None and g.full <= upto:
            return g.full, g.last
        return None, int(np.flatnonzero((g.when < 0) | (g.when > upto))[0])

    def push(self, i: int, t: int) -> "np.ndarray | None":
        """S^t_i (bool [n]), or None past the deadline."""
        if self.c1:  # read off the growth from k(t), which only reads rows it has not read
            g = self.growth(i, (t - 1) % self.p)
            if not g.run(t):
                return None
            return (g.when >= 0) & (g.when <= t)
        key = (int(i), int(t))
        if key in self._pushed:
            return self._pushed[key]
        X = np.zeros(self.n, dtype=bool)
        X[i] = True
        for step in range(t, 0, -1):
            if self.late():
                return None
            X = self.apply((step - 1) % self.p, X)
            if not X.any():
                break
        self._pushed[key] = X
        return X


GROWTH_BYTES = 1 << 27  # the growths a Layers keeps (their step arrays, 4 or 8 bytes a token)


class _Growth:
    """Given C1 (then the set only grows): {i} pushed through layers start, start − 1, …
    (mod p), one step at a time, each step reading only the rows its layer has not read
    before, and of a part with a row period only the residues it has not read: a whole
    growth costs each row's keys once per layer, not a pass over n per step (a row's
    S^t at t in the thousands: `stride(4096) | window(1)` at n = 2^20). ``when[j]``: the
    step that added token j (0 for i, −1 not yet); ``full``: the step after which every
    token is in (None while not); ``stuck``: no step can add any more."""

    def __init__(self, layers: Layers, i: int, start: int):
        n, p = layers.n, layers.p
        self.layers, self.start = layers, start
        self.when = np.full(n, -1, dtype=np.int32 if p * n < 1 << 31 else np.int64)
        self.when[i] = 0
        self.steps, self.count, self.idle, self.last, self.read = 0, 1, 0, i, 0
        self.full = 1 if n == 1 else None
        self.stuck = False
        self.fresh = [[np.array([i], dtype=np.int64)] for _ in range(p)]  # reached, not yet read in layer k
        self.seen: dict = {}  # (layer, part) → the residues a periodic part has read

    def run(self, upto: int) -> bool:
        """Steps until ``upto`` steps are done, the set is [n] or it stops growing; False
        past the deadline."""
        L, n, p = self.layers, self.layers.n, self.layers.p
        while self.steps < upto and self.full is None and not self.stuck:
            # The clock is a system call: read after a step that read many intervals, else every 32.
            if (self.steps % 32 == 0 or self.read > 1 << 16) and L.late():
                return False
            self.steps += 1
            k = (self.start - self.steps + 1) % p
            rows = np.concatenate(self.fresh[k])
            self.fresh[k] = []
            los, his = [], []
            for index, (P, q) in enumerate(L._parts(k)):
                m, read = n, rows
                if q is not None:  # row x's keys are row (x mod q)'s
                    m, read = q, rows % q
                    done = self.seen.setdefault((k, index), np.zeros(q, dtype=bool))
                    read = L.distinct(read[~done[read]])
                    done[read] = True
                if read.size:
                    lo, hi = L._keys_of(P, m, read)
                    los.append(lo)
                    his.append(hi)
            lo = np.concatenate(los + [np.zeros(0, dtype=np.int64)])
            hi = np.concatenate(his + [np.zeros(0, dtype=np.int64)])
            width = hi - lo
            self.read = lo.size
            if int(width.sum()) <= n // 16:
                keys = spread(lo, width)
                keys = L.distinct(keys[self.when[keys] < 0])
            else:
                marks = np.bincount(lo, minlength=n + 1) - np.bincount(hi, minlength=n + 1)
                keys = np.flatnonzero((np.cumsum(marks[:n]) > 0) & (self.when < 0))
            if keys.size == 0:
                self.idle += 1
                self.stuck = self.idle >= p  # every layer read every row reached: no more to add
                continue
            self.when[keys] = self.steps
            self.count += keys.size
            self.idle, self.last = 0, int(keys[0])
            if self.count == n:
                self.full = self.steps
            for f in self.fresh:
                f.append(keys)
        return True


def _attenders(P, n, h, pair_values) -> np.ndarray:
    """Bool [n]: the rows of P that attend h."""
    rows = np.arange(n, dtype=np.int64)
    return pair_values(P, rows, np.full(n, h, dtype=np.int64), n)


def cover_set(P, n, candidates, pair_values, good=None, size=6):
    """A small set H of tokens such that every row of P attends some h ∈ H, or None;
    ``good(h)`` (when given) says whether h may be used. Greedy by rows covered, the
    candidates first, then keys of the first row left uncovered."""
    uncovered = np.ones(n, dtype=bool)
    H: list = []
    pool = list(dict.fromkeys(int(c) for c in candidates if 0 <= c < n))
    columns: dict = {}
    verdict: dict = {}
    tried_rows = 0
    while uncovered.any() and len(H) < size:
        for c in pool:
            if c not in columns:
                columns[c] = _attenders(P, n, c, pair_values)
        order = sorted((c for c in pool if c not in H and (columns[c] & uncovered).any()),
                       key=lambda c: -int((columns[c] & uncovered).sum()))
        best = None
        for c in order[:8]:
            if good is not None and c not in verdict:
                verdict[c] = good(c)
                if verdict[c] is None:
                    return None  # out of time
            if good is None or verdict[c]:
                best = c
                break
        if best is None:  # no candidate helps: take keys of the first uncovered row
            if tried_rows >= 3:
                return None
            tried_rows += 1
            i = int(np.flatnonzero(uncovered)[0])
            keys = row_keys(P, np.array([i]), n, ROW_LIMIT)
            if keys.lo.size == 0:
                return None  # an empty row: no cover exists
            fresh = [x for lo, hi in zip(keys.lo[:3], keys.hi[:3])
                     for x in (int(lo), int((lo + hi - 1) // 2), int(hi - 1)) if x not in columns]
            if not fresh:
                return None
            pool.extend(dict.fromkeys(fresh))
            continue
        H.append(best)
        uncovered &= ~columns[best]
    return H if not uncovered.any() else None


def shrinking_support(L, candidates, max_steps=None) -> "dict | None":
    """s infinite when R_m = F_{k(1)}(F_{k(2)}(… F_{k(m)}([n]))) misses a key j: S^t_i ⊆ R_t
    (F is monotone and {i} ⊆ [n]) and R_t shrinks with t (F_{k(t+1)}([n]) ⊆ [n]), so no
    S^t with t ≥ m is J; steps t < m each get a pair j_t ∉ S^t_{i_t}. The refutation
    {"holds": False, "evidence": {"support_after": {"steps": m, "key": j}, "missing_each": …}},
    or None."""
    n, p = L.n, L.p
    for m in range(2, (max_steps or min(2 * p + 2, 12)) + 1):
        X = np.ones(n, dtype=bool)
        for step in range(m, 0, -1):
            if L.late():
                return None
            X = L.apply((step - 1) % p, X)
        if X.all():
            continue
        each = _missing_pairs(L, m, candidates)
        if each is None:
            return None
        return {"holds": False, "evidence": {"support_after": {"steps": m, "key": int(np.flatnonzero(~X)[0])},
                                             "missing_each": each}}
    return None


def depth_by_cover(patterns, n, c1_ok, candidates, pair_values, deadline=None, max_step=None):
    """C3 from covers (module docstring): a finite_depth claim (holds True with bounds),
    or {"holds": False, "evidence": {"empty_column": j}}, or None."""
    p = len(patterns)
    L = Layers(patterns, n, deadline, c1=c1_ok)
    try:
        support = L.apply(0, np.ones(n, dtype=bool))
        if not support.all():
            return {"holds": False, "evidence": {"empty_column": int(np.flatnonzero(~support)[0])}}
        shrunk = None if c1_ok else shrinking_support(L, candidates)  # with C1, R_t = [n]
        if shrunk is not None:
            return shrunk
        max_step = max_step or min(4 * p + 4, 16)
        found = None
        for t in range(2, max_step + 1):
            if L.late():
                return None
            k = (t - 1) % p

            def good(c, t=t):
                X = L.push(c, t - 1)
                return None if X is None else bool(X.all())

            H = cover_set(patterns[k], n, candidates, pair_values, good)
            if H is not None:
                found = (t, H)
                break
            if L.late():
                return None
        if found is None:
            return None
        hi, H = found
        ev = {"cover": {"step": hi, "tokens": [int(h) for h in H]}}
        lo = 1
        rows = list(dict.fromkeys([0, n - 1, n // 2] + [int(c) for c in candidates if 0 <= c < n][:6]
                                  + np.linspace(0, n - 1, 16).astype(np.int64).tolist()))
        if c1_ok:
            for i in rows:
                X = L.push(i, hi - 1)
                if X is None:
                    break
                if not X.all():
                    lo = hi
                    ev["missing_before"] = [int(i), int(np.flatnonzero(~X)[0])]
                    break
        else:
            each = []
            for t in range(1, hi):
                pair = None
                for i in list(dict.fromkeys(L.thinnest((t - 1) % p) + rows)):
                    X = L.push(i, t)
                    if X is None:
                        break
                    if not X.all():
                        pair = [int(i), int(np.flatnonzero(~X)[0])]
                        break
                if pair is None:
                    break
                each.append(pair)
            lo = len(each) + 1
            if each:
                ev["missing_each"] = each
    except TooManyIntervals:
        return None
    return {"holds": True, "s": hi if lo == hi else None, "s_bounds": [lo, hi], "evidence": ev}


# ---- C3: exact s by union covers and farthest pairs ------------------------------------------


def _attended(L, k, count) -> list:
    """The ``count`` tokens that the most rows of layer k attend (column degrees from the
    rows' intervals), or [] when the rows are too costly."""
    every = L._all(k)
    if every is None:
        return []
    _, lo, hi = every
    marks = np.bincount(lo, minlength=L.n + 1) - np.bincount(hi, minlength=L.n + 1)
    degree = np.cumsum(marks[:L.n])
    return [int(x) for x in np.argsort(-degree, kind="stable")[:count]]


def union_cover_holds(L, t, H, pair_values) -> "bool | None":
    """Whether every row i of layer k(t) attends tokens of H whose S^{t−1} together are
    [n] (then S^t_i ⊇ ∪_{h ∈ H ∩ A_i} S^{t−1}_h = [n], so S^t = J; no C1 needed). Rows
    are grouped by which tokens of H they attend: one union per distinct group. None
    past the deadline."""
    n, k = L.n, (t - 1) % L.p
    rows = np.arange(n, dtype=np.int64)
    attends = np.stack([pair_values(L.patterns[k], rows, np.full(n, h, dtype=np.int64), n) for h in H])
    if not attends.any(axis=0).all():  # (before any S^{t−1}_h: a row attending no h is the usual failure)
        return False
    reach = []
    for h in H:
        X = L.push(h, t - 1)
        if X is None:
            return None
        reach.append(np.packbits(X))
    groups = np.unique(np.packbits(attends, axis=0).T, axis=0)
    reach = np.stack(reach)
    full = np.packbits(np.ones(n, dtype=bool))
    for code in groups:
        members = np.flatnonzero(np.unpackbits(code)[:len(H)])
        if not np.array_equal(np.bitwise_or.reduce(reach[members], axis=0), full):
            return False
    return True


def union_cover(L, t, pair_values, candidates, rounds=3, size=16) -> "list | None":
    """A token set H for ``union_cover_holds`` at step t, or None: the most attended
    tokens of layer k(t) and the candidates, then keys of rows left uncovered."""
    n, k = L.n, (t - 1) % L.p
    H = list(dict.fromkeys([int(c) for c in candidates if 0 <= c < n][:size // 2]
                           + _attended(L, k, size)))[:size]
    for _ in range(rounds):
        if not H or L.late():
            return None
        ok = union_cover_holds(L, t, H, pair_values)
        if ok is None:
            return None
        if ok:
            return H
        # Add keys of a row whose group fails: spread over its intervals.
        fresh = []
        for i in (0, n - 1, n // 2):
            keys = row_keys(L.patterns[k], np.array([i]), n, ROW_LIMIT)
            for lo, hi in zip(keys.lo[:4].tolist(), keys.hi[:4].tolist()):
                fresh.extend((lo, (lo + hi - 1) // 2, hi - 1))
        fresh = [x for x in dict.fromkeys(fresh) if x not in H]
        if not fresh:
            return None
        H = H + fresh[:size]
    return None


def _sample_rows(L, t, candidates) -> list:
    """Rows likely to be far from everything at step t: the thinnest of layer k(t) (the
    first layer a row's keys pass through), the ends, the middle and a spread."""
    n = L.n
    return list(dict.fromkeys(L.thinnest((t - 1) % L.p) + [0, n - 1, n // 2]
                              + [int(c) for c in candidates if 0 <= c < n][:6]
                              + np.linspace(0, n - 1, 16).astype(np.int64).tolist()))


def _missing_pairs(L, steps, candidates):
    """A pair j_t ∉ S^t_{i_t} for each step t = 1 … steps − 1 (the "missing_each" evidence),
    or None when one is not found."""
    each = []
    for t in range(1, steps):
        pair = _missing_at(L, t, candidates)
        if pair is None:
            return None
        each.append(pair)
    return each


def _missing_at(L, t, candidates) -> "list | None":
    """A pair [i, j] with j ∉ S^t_i among the sampled rows, or None (also past the deadline)."""
    for i in _sample_rows(L, t, candidates):
        X = L.push(i, t)
        if X is None:
            return None
        if not X.all():
            return [int(i), int(np.flatnonzero(~X)[0])]
    return None


def exact_depth(patterns, n, c1_ok, claim, pair_values, candidates=(), deadline=None, max_steps=64):
    """Narrow a finite_depth claim {"holds": True or None, "s_bounds": [lo, hi or None], …}
    toward exact s (an undecided one becomes decided only by a cover):
    at t = lo, either a union cover proves s ≤ t (evidence "union_cover"), or a sampled
    row i with j ∉ S^t_i proves s ≥ t + 1 (given C1 "missing_before" [i, j]; without
    C1 one pair per step, "missing_each"), and t moves on. Returns the new claim (the
    old one when nothing was gained)."""
    lo, hi = claim["s_bounds"]
    if claim.get("holds") is False or (hi is not None and lo >= hi):
        return claim
    L = Layers(patterns, n, deadline, c1=c1_ok)
    ev = dict(claim.get("evidence") or {})
    each = None
    try:
        if not c1_ok:  # the pairs for steps 1 … lo − 1, re-found (the claim may hold only missing_first)
            each = _missing_pairs(L, lo, candidates)
            if each is None:
                return claim
        new_lo, new_hi, below, cover = lo, hi, None, None
        for _ in range(max_steps):
            if (new_hi is not None and new_lo >= new_hi) or L.late():
                break
            t = max(new_lo, 2)
            if new_hi is None or t < new_hi:
                H = union_cover(L, t, pair_values, candidates)
                if H is not None:
                    new_hi, cover = t, {"step": t, "tokens": [int(h) for h in H]}
                    break
            pair = _missing_at(L, new_lo, candidates)
            if pair is None:
                break
            if c1_ok:
                below = pair
            else:
                each.append(pair)
            new_lo += 1
    except TooManyIntervals:
        return claim
    if (new_lo, new_hi) == (lo, hi) or new_hi is None:  # an undecided claim stays as it was without a cover
        return claim
    if cover is not None:
        ev["union_cover"] = cover
    if new_lo > lo:
        if c1_ok:
            ev["missing_before"] = below
        else:
            ev["missing_each"] = each
    claim = {k: v for k, v in claim.items() if k != "reason"}
    return {**claim, "holds": True, "s": new_hi if new_lo == new_hi else None, "s_bounds": [new_lo, new_hi],
            "evidence": ev}


# ---- C2: path families --------------------------------------------------------------------


def _sizes(patterns, n):
    """Steps and block sizes the pattern's primitives suggest, and a few small ones."""
    steps, blocks = {2, 3, 4, 5}, set()

    def walk(node):
        if isinstance(node, Dilated):
            steps.add(node.d)
        elif isinstance(node, Stride):
            steps.add(node.s)
        elif isinstance(node, (Chunk, Summary)):
            blocks.add(node.b)
        block = getattr(node, "block", None)
        if isinstance(block, int):
            blocks.add(block)
        for child in node.children():
            walk(child)

    for P in patterns:
        walk(P)
    return sorted(d for d in steps if 2 <= d < n and d <= 256), sorted(b for b in blocks if 2 <= b < n)


def path_families(patterns, n, hubs=()):
    """Candidate permutations γ (int64 arrays), cheapest first (module docstring)."""
    if n < 3:
        return
    idx = np.arange(n, dtype=np.int64)
    half = (n + 1) // 2
    inter = np.empty(n, dtype=np.int64)
    inter[0::2] = idx[:half]
    inter[1::2] = idx[half:]
    for g in (inter, inter[::-1], n - 1 - inter, (n - 1 - inter)[::-1]):
        yield g
    steps, blocks = _sizes(patterns, n)
    for d in steps:
        classes = [np.arange(r, n, d, dtype=np.int64) for r in range(d)]
        for order in (classes, classes[::-1]):
            for flip in ("up", "down", "zig", "zag"):
                parts = []
                for q, c in enumerate(order):
                    down = flip == "down" or (flip == "zig" and q % 2 == 1) or (flip == "zag" and q % 2 == 0)
                    parts.append(c[::-1] if down else c)
                yield np.concatenate(parts)
    for b in blocks:
        chunks = [idx[a:a + b] for a in range(0, n, b)]
        for first_down in (False, True):
            parts = [c[::-1] if (q % 2 == 1) != first_down else c for q, c in enumerate(chunks)]
            g = np.concatenate(parts)
            yield g
            yield g[::-1]
    if hubs:
        hub = np.array(sorted(set(int(h) for h in hubs if 0 <= h < n)), dtype=np.int64)
        if hub.size and hub.size < n:
            rest = idx[~np.isin(idx, hub)]
            m = rest.size
            h2 = (m + 1) // 2
            mixed = np.empty(m, dtype=np.int64)
            mixed[0::2] = rest[:h2]
            mixed[1::2] = rest[h2:]
            for body in (rest, rest[::-1], mixed, mixed[::-1]):
                yield np.concatenate([hub, body])
                yield np.concatenate([body, hub])


def union_steps(patterns, n, pair_values, i, j) -> np.ndarray:
    """Bool [m]: some layer holds (i[k], j[k])."""
    ok = np.zeros(i.size, dtype=bool)
    for P in patterns:
        todo = np.flatnonzero(~ok)
        if todo.size == 0:
            break
        ok[todo] = pair_values(P, i[todo], j[todo], n)
    return ok


def repair(patterns, n, pair_values, g, max_bad=64, deadline=None, has=None):
    """Mend the steps of γ that are not attended, one at a time: move into the gap
    (a, b) a token x with x attending a and b attending x, whose old neighbours join
    (the next attends the previous); or rotate γ when its first token attends its last.
    ``has(i, j)`` (bool arrays: U holds (i[k], j[k])) defaults to the patterns' pairs
    (a dense union's lookup is faster where one is at hand). The mended γ, or None."""
    g = np.array(g, dtype=np.int64)
    everyone = np.arange(n, dtype=np.int64)
    if has is None:
        def has(i, j):
            return union_steps(patterns, n, pair_values, i, j)
    for _ in range(2 * max_bad + 2):
        if deadline is not None and budget_clock() > deadline:
            return None
        bad = np.flatnonzero(~has(g[1:], g[:-1]))
        if bad.size == 0:
            return g
        if bad.size > max_bad:
            return None
        t = int(bad[0])
        a, b = g[t], g[t + 1]
        fits = has(everyone, np.full(n, a, dtype=np.int64)) & has(np.full(n, b, dtype=np.int64), everyone)
        fits[[a, b]] = False
        pos = np.empty(n, dtype=np.int64)
        pos[g] = np.arange(n)
        moved = False
        xs = np.flatnonzero(fits)
        if xs.size:
            s = pos[xs]
            inner = (s > 0) & (s < n - 1)
            join = np.ones(xs.size, dtype=bool)  # an end token leaves no gap behind
            if inner.any():
                join[inner] = has(g[s[inner] + 1], g[s[inner] - 1])
            pick = np.flatnonzero(join)
            if pick.size:
                x = int(xs[pick[0]])
                rest = np.delete(g, pos[x])
                at = int(np.flatnonzero(rest == a)[0]) + 1
                g = np.insert(rest, at, x)
                moved = True
        if not moved:
            if has(g[:1], g[-1:])[0]:  # g[0] attends g[−1]
                g = np.concatenate([g[t + 1:], g[:t + 1]])
            else:
                return None
    return None


def find_path(patterns, n, pair_values, hubs=(), deadline=None):
    """A candidate of ``path_families`` whose every step is attended in the union
    (``pair_values(P, i, j, n)``: conditions.py's), as an int64 array, or None: first
    as drawn, then the few with the fewest unattended steps mended by ``repair``."""
    near = []
    for g in path_families(patterns, n, hubs):
        if deadline is not None and budget_clock() > deadline:
            break
        ok = union_steps(patterns, n, pair_values, g[1:], g[:-1])
        if ok.all():
            return g
        near.append((int((~ok).sum()), len(near), g))
    for _, _, g in sorted(near, key=lambda x: x[:2])[:3]:
        mended = repair(patterns, n, pair_values, g, deadline=deadline)
        if mended is not None:
            return mended
    return None


# ---- C2: refutation by splitting U ---------------------------------------------------------


def weak_pieces(patterns, n, removed: np.ndarray, limit=None) -> "np.ndarray | None":
    """The weakly connected components of U − K (K = ``removed``, bool [n]; edges of U
    with an end in K dropped, self-loops irrelevant) as labels 0, 1, … per token, −1 on
    K; None when the rows hold too many intervals. Tokens outside K are numbered
    0 … m − 1 in order; a row's interval [lo, hi) joins its row to the first token of
    the interval outside K and each such token to the next one inside it (a difference
    array over the numbering), then one union-find pass (scipy)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keep = ~removed
    before = np.concatenate([[0], np.cumsum(keep)])  # tokens outside K before each position
    m = int(before[-1])
    labels = np.full(n, -1, dtype=np.int64)
    if m == 0:
        return labels
    chained = np.zeros(m + 1, dtype=np.int64)
    src, dst, total = [], [], 0
    limit = limit or 8 * n + (1 << 20)
    try:
        for P in patterns:
            for rows, keys in all_rows(P, n, limit=ROW_LIMIT):
                total += keys.lo.size
                if total > limit:
                    raise TooManyIntervals(total)
                own = rows[keys.own]
                a, b = before[keys.lo], before[keys.hi]
                use = keep[own] & (a < b)
                a, b, own = a[use], b[use], own[use]
                np.add.at(chained, a, 1)
                np.add.at(chained, b - 1, -1)
                src.append(before[own])
                dst.append(a)
    except TooManyIntervals:
        return None
    link = np.flatnonzero(np.cumsum(chained)[:m - 1] > 0)
    i = np.concatenate(src + [link])
    j = np.concatenate(dst + [link + 1])
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(m, m)).tocsr()
    _, comp = connected_components(graph, directed=False)
    labels[keep] = comp
    return labels


def _ranges_of_mask(mask: np.ndarray) -> list:
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def _degree_hubs(patterns, n, count=16) -> list:
    """The tokens of highest row or column degree in U's layers (self-loops included),
    from the rows' intervals; [] when they are too costly."""
    rows_deg = np.zeros(n, dtype=np.int64)
    cols = np.zeros(n + 1, dtype=np.int64)
    try:
        for P in patterns:
            for rows, keys in all_rows(P, n, limit=ROW_LIMIT):
                np.add.at(rows_deg, rows[keys.own], keys.hi - keys.lo)
                np.add.at(cols, keys.lo, 1)
                np.add.at(cols, keys.hi, -1)
    except TooManyIntervals:
        return []
    degree = np.maximum(rows_deg, np.cumsum(cols[:n]))
    order = np.argsort(-degree, kind="stable")[:count]
    return [int(x) for x in order if degree[x] > 2 * max(1, int(np.median(degree)))]


def split_refutation(patterns, n, hubs=(), deadline=None) -> "dict | None":
    """C2's "split" refutation (module docstring) for K = ∅, the hub tokens, or the tokens
    of highest degree (the first 1, 2, 4, … of them), or None."""
    if n < 3:
        return None

    def options():
        yield ()
        yield tuple(sorted(set(int(h) for h in hubs if 0 <= h < n)))
        top = _degree_hubs(patterns, n)  # (read only when the cheaper options fail)
        for c in sorted({min(c, len(top)) for c in (1, 2, 4, 8, 16)}):
            yield tuple(sorted(set(top[:c])))

    tried = set()
    for K in options():
        if deadline is not None and budget_clock() > deadline:
            return None
        if K in tried:
            continue
        tried.add(K)
        removed = np.zeros(n, dtype=bool)
        removed[list(K)] = True
        labels = weak_pieces(patterns, n, removed)
        if labels is None:
            return None
        count = int(labels.max()) + 1
        if count <= len(K) + 1:
            continue
        sizes = np.bincount(labels[labels >= 0], minlength=count)
        listed = np.argsort(sizes, kind="stable")[:len(K) + 1]  # the smallest: short ranges
        return {"kind": "split", "removed": _ranges_of_mask(removed),
                "pieces": [_ranges_of_mask(labels == q) for q in listed]}
    return None


# ---- C3: covers by common columns ----------------------------------------------------------


class _Structured:
    """A pattern given by its rows' structure (a formula over structure atoms), as
    rowsets.row_keys reads it."""

    def __init__(self, formula):
        self.formula = formula

    def row_structure(self, n):
        return self.formula

    def children(self):
        return ()


def _split_formula(f):
    """(row-independent parts, the rest or None) of a row formula whose keys are their
    union: the parts of an AnyOf that are the same interval or progression in every row
    (Span, ColumnResidues), also inside a pattern over blocks (Scaled)."""
    if isinstance(f, (Span, ColumnResidues)):
        return [f], None
    if isinstance(f, Scaled):
        common, rest = _split_formula(f.part)
        return ([Scaled(f.size, AnyOf(tuple(common)))] if common else [],
                Scaled(f.size, rest) if rest is not None else None)
    if isinstance(f, AnyOf):
        common, rest = [], []
        for part in f.parts:
            c, r = _split_formula(part)
            common += c
            if r is not None:
                rest.append(r)
        return common, (None if not rest else rest[0] if len(rest) == 1 else AnyOf(tuple(rest)))
    return [], f


def common_columns(P, n):
    """(C, R): a bool [n] mask C of keys that every row of P holds, and a pattern R (or None
    for no keys) with A_i = C ∪ R_i for every row i. C is read from the rows' structure:
    the row-independent parts of a union (possibly empty)."""
    if isinstance(P, Union):
        C, rest = np.zeros(n, dtype=bool), []
        for part in P.parts:
            c, r = common_columns(part, n)
            C |= c
            if r is not None:
                rest.append(r)
        return C, (None if not rest else rest[0] if len(rest) == 1 else Union(tuple(rest)))
    C = np.zeros(n, dtype=bool)
    if hasattr(P, "row_keys"):  # a grid's runs of keys (what row_keys reads for it): no common part read
        return C, P
    try:
        formula = P.row_structure(n)
    except NotImplementedError:  # a node without a row structure: no common part read
        return C, P
    common, rest = _split_formula(formula)
    if not common:
        return C, P
    keys = row_keys(_Structured(AnyOf(tuple(common))), np.zeros(1, dtype=np.int64), n)
    marks = np.bincount(keys.lo, minlength=n + 1) - np.bincount(keys.hi, minlength=n + 1)
    C = np.cumsum(marks[:n]) > 0
    return C, (_Structured(rest) if rest is not None else None)


def common_cover(patterns, n, max_step=8, deadline=None) -> "tuple | None":
    """(t, C) for the least t ≥ 2 (≤ max_step) at which the common columns C of layer k(t)
    reach everything in t − 1 steps (module docstring), or None."""
    p = len(patterns)
    try:
        parts = [common_columns(P, n) for P in patterns]
        if not any(C.any() for C, _ in parts):
            return None
        rest = Layers([R for _, R in parts if R is not None], n, deadline)
        index = {k: q for q, k in enumerate(k for k in range(p) if parts[k][1] is not None)}

        def apply(k, X):
            C, R = parts[k]
            if not X.any():
                return X
            return C | rest.apply(index[k], X) if R is not None else C.copy()

        for t in range(2, max_step + 1):
            C = parts[(t - 1) % p][0]
            if not C.any():
                continue
            X = C
            for step in range(t - 1, 0, -1):
                if rest.late():
                    return None
                X = apply((step - 1) % p, X)
            if X.all():
                return t, C
    except TooManyIntervals:
        return None
    return None


# ---- C3: exact s on dense masks (DENSE_N < n ≤ SEARCH_N) ---------------------------------

DENSE_WORK = 1 << 29  # bytes of packed rows gathered by dense_depth


def _or_rows(B: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Packed rows: out[r] = OR of P[x] over the x with B[r, x] (zero where B[r] is empty)."""
    out = np.zeros((B.shape[0], P.shape[1]), dtype=np.uint8)
    per = max(1, (1 << 25) // max(1, P.shape[1] * max(1, int(B.sum(axis=1).max(initial=0)))))
    for a in range(0, B.shape[0], per):
        r, x = np.nonzero(B[a:a + per])
        if r.size:
            starts = np.flatnonzero(np.concatenate([[True], r[1:] != r[:-1]]))
            out[a + r[starts]] = np.bitwise_or.reduceat(P[x], starts, axis=0)
    return out


def dense_depth(masks, c1_ok, claim, deadline=None, work=DENSE_WORK, max_steps=64) -> dict:
    """Exact s from the layers' dense masks, step by step t = 1, 2, …: at each step a
    union cover (s ≤ t: every row i of layer k(t) attends tokens of H whose S^{t−1}
    together are [n]) over a spread H of 64, 256, 1,024 tokens, then every token, where
    H = [n] is S^t itself: when it fails, a row i and a key j ∉ S^t_i (s > t). So s = t
    at the first step with a cover, with a missing pair for every step before it (given
    C1 only the last, "missing_before"; else one per step, "missing_each") and the cover
    ("union_cover"), all of which verify re-checks by its own pushes. Costs the pairs
    gathered (edges into H × n/8 bytes per step), within ``work`` and the deadline; when s
    is not reached in them, the claim with its lower bound raised by the pairs found."""
    n, p = masks[0].shape[0], len(masks)
    lo, hi = claim["s_bounds"]
    packed = [np.packbits(M, axis=1) for M in masks]
    full = np.packbits(np.ones(n, dtype=bool))
    spent, pairs, every = 0, [], None  # every: S^{t−1} of all tokens (packed)
    for t in range(1, min(hi if hi is not None else max_steps, max_steps) + 1):
        if deadline is not None and budget_clock() > deadline:
            return _raised(claim, c1_ok, pairs)
        cover = None
        if t == 1:
            every = packed[0]
        else:
            M = masks[(t - 1) % p]
            for m in (64, 256, 1024, n):
                H = np.arange(n) if m >= n else np.unique(np.linspace(0, n - 1, m).astype(np.int64))
                reach = every[H]  # S^{t−1} of H
                B = M[:, H]
                spent += int(B.sum()) * full.size
                if spent > work or (deadline is not None and budget_clock() > deadline):
                    return _raised(claim, c1_ok, pairs)
                S = _or_rows(B, reach)
                if (S == full).all():
                    cover = [int(x) for x in H]
                    break
                if m >= n:
                    if c1_ok and np.array_equal(S, every):
                        return _raised(claim, c1_ok, pairs)  # S^t = S^{t−1} given C1: it never grows to J
                    every = S  # S^t of every token
                    break
        if cover is not None:
            break
        bad = np.flatnonzero((every != full).any(axis=1))
        if bad.size == 0:  # t = 1: layer 0 is everything
            return claim if lo > 1 else {"holds": True, "s": 1, "s_bounds": [1, 1], "evidence": {"full_first": True}}
        i = int(bad[0])
        j = int(np.flatnonzero(~np.unpackbits(every[i], count=n).astype(bool))[0])
        pairs.append([i, j])
    else:
        return _raised(claim, c1_ok, pairs)
    s = t
    if not (lo <= s and (hi is None or s <= hi)):
        return claim  # (a disagreement would be a bug of one side; keep the certified bounds)
    ev = {"union_cover": {"step": s, "tokens": cover}}
    if s >= 2:
        if c1_ok:
            ev["missing_before"] = pairs[-1]
        else:
            ev["missing_each"] = pairs
    claim = {k: v for k, v in claim.items() if k != "reason"}
    return {**claim, "holds": True, "s": s, "s_bounds": [s, s], "evidence": ev}


def _raised(claim, c1_ok, pairs) -> dict:
    """The claim with s ≥ len(pairs) + 1 (the pairs j_t ∉ S^t_{i_t}, t = 1 … len(pairs)),
    when that raises its lower bound below its upper one; else the claim unchanged."""
    lo, hi = claim["s_bounds"]
    new = len(pairs) + 1
    if new <= lo or (hi is not None and new >= hi) or claim.get("holds") is False:
        return claim
    ev = {k: v for k, v in (claim.get("evidence") or {}).items()
          if k not in ("missing_first", "missing_before", "missing_each")}
    ev.update({"missing_before": pairs[-1]} if c1_ok else {"missing_each": pairs})
    return {**claim, "s_bounds": [new, hi], "evidence": ev}


# ---- exact s of one layer with C1: the diameter of U, by a BFS out of every token ---------

DISTANCE_WORK = 1 << 28  # n × (edges + n) of the BFS out of every token (scipy, in C)
_SOURCES = 256  # BFS sources per call (their distance rows: 256 × n floats)
_SAMPLED = 64  # BFS sources for a lower bound when a BFS out of every token is too much work


def _edges(pattern, n: int, max_edges: int):
    """U = A as a scipy CSR matrix (row i → its keys), or None past max_edges edges."""
    from scipy.sparse import csr_matrix

    indptr, parts, edges = [np.zeros(1, dtype=np.int64)], [], 0
    for rows, keys in all_rows(pattern, n, limit=ROW_LIMIT):
        width = keys.hi - keys.lo
        edges += int(width.sum())
        if edges > max_edges:
            return None
        parts.append(np.repeat(keys.lo - np.cumsum(width) + width, width) + np.arange(int(width.sum())))
        indptr.append(np.cumsum(np.bincount(keys.own, weights=width, minlength=rows.size)).astype(np.int64) + edges
                      - int(width.sum()))
    indices = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return csr_matrix((np.ones(indices.size, dtype=np.int8), indices, np.concatenate(indptr)), shape=(n, n))


def distance_depth(pattern, n: int, claim, max_work: int = DISTANCE_WORK) -> dict:
    """One layer A with C1 (the claim bounds-only): S^t_i is the ball of radius t out of i
    in U = A (every token attends itself), so s = max(1, the largest distance of U). When
    n × (edges + n) ≤ max_work, a BFS out of every token finds it: the evidence
    {"distances": true} is re-checked by verify the same way (its own key sets, its own
    BFS). Otherwise BFS out of _SAMPLED tokens (spread, then those farthest into the
    farthest key found, both ways): a pair at distance d > lo proves s ≥ d, with
    "missing_before" [i, j] (j ∉ S^{d−1}_i, re-checked by verify for row i alone). Returns
    the tightened claim, or ``claim`` unchanged."""
    from scipy.sparse.csgraph import shortest_path

    lo, hi = claim["s_bounds"]
    try:
        U = _edges(pattern, n, max(0, max_work // _SAMPLED - n))
    except TooManyIntervals:
        return claim
    if U is None:
        return claim
    if n * (U.nnz + n) <= max_work:
        far = 0.0
        for start in range(0, n, _SOURCES):
            d = shortest_path(U, directed=True, unweighted=True, indices=np.arange(start, min(n, start + _SOURCES)))
            far = max(far, float(d.max()))
        if not np.isfinite(far):
            return claim  # (not strongly connected: the component refutations say so, with evidence)
        s = max(1, int(far))
        if s < lo or (hi is not None and s > hi):
            return claim  # (a disagreement would be a bug of one side; keep the certified bounds)
        return {"holds": True, "s": s, "s_bounds": [s, s], "evidence": {"distances": True}}
    if n > 1 << 19:  # (the sampled distances: _SAMPLED × n floats)
        return claim
    sources = np.unique(np.linspace(0, n - 1, _SAMPLED // 2).astype(np.int64))
    d = shortest_path(U, directed=True, unweighted=True, indices=sources)
    if not np.isfinite(d).all():
        return claim
    j = int(np.argmax(d.max(axis=0)))  # the key farthest from some source: sources far into it
    into = shortest_path(U.T.tocsr(), directed=True, unweighted=True, indices=[j])[0]
    more = np.argsort(-into, kind="stable")[:_SAMPLED - sources.size]
    d2 = shortest_path(U, directed=True, unweighted=True, indices=more)
    best = max((float(d.max()), 0), (float(d2.max()), 1))
    if best[0] <= lo or (hi is not None and best[0] > hi):
        return claim
    rows_d, from_ = (d, sources) if best[1] == 0 else (d2, more)
    a, b = np.unravel_index(int(np.argmax(rows_d)), rows_d.shape)
    t = int(best[0])
    ev = {k: v for k, v in (claim.get("evidence") or {}).items()
          if k not in ("missing_first", "missing_before", "missing_each")}
    ev["missing_before"] = [int(from_[a]), int(b)]
    return {**claim, "s": t if t == hi else None, "s_bounds": [t, hi], "evidence": ev}
