"""Yun et al.'s Assumption 1 (and 2) for a compiled file, per head, with evidence.

Notation (DESIGN.md §3). For head h the file has p layer patterns A^0..A^{p-1}
(``compiled.patterns[k][h]``); A^k_i is the set of keys that query i attends to in
layer k. The recursion is S^1_i = A^{k(1)}_i, S^t_i = ∪_{j ∈ A^{k(t)}_i} S^{t−1}_j with
k(t) = (t − 1) mod p; as boolean matrices S^t = M_t M_{t−1} … M_1 with M_t = A^{k(t)}.
The union graph U has an edge i → j ("i attends to j in some layer").

Conditions:
  C1  i ∈ A^k_i for every k and i (checked on the diagonal only: O(n · size)).
  C2  a permutation γ with γ(t) ∈ ∪_k A^k_{γ(t+1)}: every token after the first attends to
      its predecessor.
  C3  a finite s with S^s_i = [n] for all i; we report the least such s.

Theorem (used for C3). Given C1, a finite s exists exactly when U is strongly connected.
  (⇒, C1 not needed) j ∈ S^t_i means there is a walk i = v_t, v_{t−1}, …, v_0 = j with
  v_{r−1} ∈ A^{k(r)}_{v_r}: every step is an edge of U, so S^s = [n] for all i makes every
  j reachable from every i in U.
  (⇐) With C1 every M_t ⊇ I. Hence (i) S^{t+1} = M_{t+1} S^t ⊇ S^t: S^t is monotone in t,
  so once S^s = J (all ones) it stays J; and (ii) for any t_1 > t_2 > … > t_L in [1, t],
  S^t ⊇ M_{t_1} M_{t_2} … M_{t_L} (replace the other factors by I). If U has a path
  i = u_0 → u_1 → … → u_L = j whose q-th edge lies in layer κ_q, split [1, L·p] into L
  blocks of p consecutive steps, the q-th block from the top holding every layer once,
  and pick in block q the step t with k(t) = κ_q: the product of the picked factors
  contains (i, j), so j ∈ S^{L·p}_i. With D the diameter of U (D ≤ n − 1), S^{p·D} = J:
  s ≤ p·D ≤ p(n − 1).  □
  Also (no C1 needed): dist_U(i, j) ≤ s for every pair, so s ≥ diameter(U) ≥ any BFS
  eccentricity; and s = 1 exactly when A^0 = J.

What is certified, and how (all without an n × n mask for large n):
  * pairs of the pattern are tested with the primitives' element predicates evaluated at
    single pairs (``Primitive.pairs``): the diagonal (C1), the two off-diagonals (C2
    witnesses "identity"/"reversed"; C3's chain argument), one column (hubs);
  * C3 strong connectivity: a chain (U holds (i, i−1) and (i, i+1) for all i), or a hub
    token h with column h full in one layer and row h full in one layer; refutations by a
    closed set R (no row of R attends outside R, in any layer): R = [0, m) or [m, n) for
    candidate m taken from the pattern's index sets, tested with the exact counter
    (analysis.counts) on ``P & rows(R) & cols(outside)``; then (i ∈ R, j ∉ R) is a pair
    with j ∉ S^t_i for every t;
  * C3 bounds: hub rule — if row h is full in layer k(b) and column h full in layer k(a),
    a > b, then S^a = J provided every other factor contains I (C1), or with no condition
    when (b, a) = (1, 2): S^2_i ⊇ S^1_h = [n]. The chain gives s ≤ p(n − 1) (given C1).
    s ≥ 2 from one pair missing in A^0;
  * for n ≤ DENSE_N the dense masks are built and everything is decided exactly: SCCs,
    the recursion iterated with packed rows (monotone with C1; without C1 the states are
    hashed, so a repeated state proves s infinite), Hamiltonian path by exhaustive search
    (n ≤ EXHAUSTIVE_N) or a budgeted DFS; refutations of C2 by two disjoint sets that are
    closed under attending (each must hold γ(0)) or under being attended (each must
    hold γ(n−1)).
  * above DENSE_N, from the rows' structure (analysis/rowsets.py: key intervals per row,
    never a row of n bools): U's SCCs, sources and sinks on a segment-tree graph
    (analysis/graph.py) give the closed-set refutations of C2 and C3; counting
    refutations of C2 (a set X whose successors, or predecessors, all lie in a set Y
    with |Y| < |X| − 1); witnesses from residue runs joined through hubs, or, up to SEARCH_N, a
    search on U's arc lists (a walk extended by Warnsdorff's rule and rotated when stuck)
    with a maximum matching's Hall set as a counting refutation (few_successors); exact s for monotone interval rows
    (analysis/structural.py), else bounds from BFS trees of U (s ≤ p·(height in + height
    out), given C1) and from S^t of a few rows; without C1: A^0 = J (s = 1), an empty
    row in every layer, or, with one layer, U's period (> 1: infinite; 1: primitive).
  * at any n, with or without C1 (analysis/structural_deciders.py): s ≤ t by a cover (every
    row of layer k(t) attends a token whose S^{t−1} is everything), or by common columns
    (every row of layer k(t) attends all of C, the row-independent parts of a union, and
    C reaches everything in t − 1 steps), s ≥ lo by one missing pair per step without C1;
    s infinite when a column of layer 0 is never attended; C2 witnesses from path
    families (interleaved halves, step-d runs, alternating blocks, hubs) mended by moving
    tokens into unattended gaps (also the dense greedy walk's stuck end); C2 refuted by a
    split: U minus k tokens (hubs, highest degree) in more than k + 1 weak pieces.
  * layered, mostly full or empty rows (analysis/layered_deciders.py): the rows of S^t known
    to be [n] or ∅, step by step: s ≤ t when all are [n], s infinite when the known state
    covers every row and repeats; C2 by chains through U's few partial rows.
Anything not decided within the budget is ``holds: None`` — never a guess.
"""
from __future__ import annotations

import hashlib
import time

import numpy as np

from ..ir import Complement, Difference, IndexSet, Intersection, Pattern, Union
from ..primitives import Cols, Global, Primitive, Rows
from .. import randomgen
from ..probability import assumption2  # the argument for each map is in its docstring
from ..reference import evaluate
from .counts import row_degrees
from .dominance import dominated_depth
from .graph import TooLarge, UnionGraph, tree_depths
from .rowsets import TooManyIntervals, row_keys
from .structural import as_runs, counting_refutation, hub_tokens, interval_depth, layered_reach, run_witnesses
from .layered_deciders import binary_depth, chain_path
from .structural_deciders import (budget_clock, common_cover, dense_depth, depth_by_cover, distance_depth, exact_depth,
                                  find_path, repair, split_refutation)

FORMAT = "patterndsl-certificate/2"  # read by patterndsl/verify.py, which documents it
DENSE_N = 2048  # build dense masks and decide exactly up to this n
SEARCH_N = 8192  # above DENSE_N, a dense union for the Hamiltonian path search up to this n
EXHAUSTIVE_N = 12  # exhaustive Hamiltonian path search up to this n


# ---- elementwise evaluation -----------------------------------------------------------


_PAIR_CHUNK = 1 << 16  # pairs per chunk: numpy's temporaries stay in cache (3–4× faster at n = 2^24)


def pair_values(pattern: Pattern, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Bool [m]: (i[k], j[k]) ∈ pattern, evaluating unions and intersections lazily."""
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if i.size > _PAIR_CHUNK:
        i, j = np.broadcast_arrays(i, j)
        out = np.empty(i.shape, dtype=bool)
        flat_i, flat_j, flat = i.reshape(-1), j.reshape(-1), out.reshape(-1)
        for start in range(0, flat.size, _PAIR_CHUNK):
            flat[start:start + _PAIR_CHUNK] = _pair_values(pattern, flat_i[start:start + _PAIR_CHUNK],
                                                           flat_j[start:start + _PAIR_CHUNK], n)
        return out
    return _pair_values(pattern, i, j, n)


def _pair_values(pattern: Pattern, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    if i.size == 0:
        return np.zeros(0, dtype=bool)
    if isinstance(pattern, Primitive):
        return pattern.pairs(i, j, n)
    if isinstance(pattern, Union):
        out = np.zeros(i.size, dtype=bool)
        for part in _cheap_first(pattern.parts):
            todo = np.flatnonzero(~out)
            if todo.size == 0:
                break
            out[todo] = _pair_values(part, i[todo], j[todo], n)
        return out
    if isinstance(pattern, Intersection):
        out = np.ones(i.size, dtype=bool)
        for part in _cheap_first(pattern.parts):
            todo = np.flatnonzero(out)
            if todo.size == 0:
                break
            out[todo] = _pair_values(part, i[todo], j[todo], n)
        return out
    if isinstance(pattern, Difference):
        out = _pair_values(pattern.left, i, j, n)
        todo = np.flatnonzero(out)
        out[todo] = ~_pair_values(pattern.right, i[todo], j[todo], n)
        return out
    if isinstance(pattern, Complement):
        return ~_pair_values(pattern.operand, i, j, n)
    return pattern.pairs(i, j, n)  # any other node (blocks { }) answers for itself


def _cheap_first(parts):
    """A union's or intersection's parts, the smallest subtrees first and drawn points
    (random) last: each part is evaluated only where the result is still open, so
    `sparse(h) & causal` asks causal first and its blocks only where causal holds."""
    return sorted(parts, key=lambda part: (bool(getattr(part, "point_backed", False)), part.size()))


def _index_candidates(pattern: Pattern, n: int, out: set) -> None:
    if isinstance(pattern, (Global, Rows, Cols)):
        for lo, hi in pattern.indices.intervals:
            out.update((lo, hi - 1, hi))
    for child in pattern.children():
        _index_candidates(child, n, out)


def _candidates(patterns, n, limit=12) -> list[int]:
    found: set = set()
    for p in patterns:
        _index_candidates(p, n, found)
    ordered = sorted(x for x in found if 0 <= x < n)
    extra = [x for x in (0, n - 1, n // 2) if x not in found]
    return (ordered[:limit] + extra)[: limit + 3]


_ROWS: dict = {}  # the last few dense rows (hub rows are asked for by several rules of one check)
_ROWS_KEPT = 4


def _row(pattern, i, n) -> np.ndarray:
    key = (id(pattern), int(i), n)
    hit = _ROWS.get(key)
    if hit is not None and hit[0] is pattern:
        return hit[1]
    row = evaluate(pattern, np.array([i]), n)[0]
    row.setflags(write=False)
    if len(_ROWS) >= _ROWS_KEPT:
        _ROWS.pop(next(iter(_ROWS)))
    _ROWS[key] = (pattern, row)
    return row


_ROW_LIMIT = 1 << 10  # intervals of one row read through rowsets: at least this, else n / 16


def _row_intervals(pattern, i, n) -> tuple[np.ndarray, np.ndarray]:
    """Row i's keys as sorted, disjoint, non-touching intervals [lo, hi) (rowsets.row_keys,
    O(intervals) from the row structure: phi3_small's row at n = 2^24 is 2^15 intervals,
    its dense row 2^24 predicate evaluations), from the dense row past max(_ROW_LIMIT, n / 16)
    intervals (an interval costs more than a predicate evaluation)."""
    try:
        keys = row_keys(pattern, np.array([i], dtype=np.int64), n, limit=max(_ROW_LIMIT, n >> 4))
        return keys.lo, keys.hi
    except TooManyIntervals:
        row = np.concatenate([[False], _row(pattern, i, n), [False]])
        edges = np.flatnonzero(row[1:] != row[:-1])
        return edges[0::2], edges[1::2]


def _row_full(pattern, i, n) -> bool:
    lo, hi = _row_intervals(pattern, i, n)
    return lo.size == 1 and lo[0] == 0 and hi[0] == n


def _column_full(pattern, h, n) -> bool:
    step = 1 << 20
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step), dtype=np.int64)
        if not pair_values(pattern, rows, np.full(rows.size, h, dtype=np.int64), n).all():
            return False
    return True


# ---- dense helpers (n ≤ DENSE_N) --------------------------------------------------------


def _dense(pattern, n) -> np.ndarray:
    return evaluate(pattern, np.arange(n), n)


def _sccs(union: np.ndarray):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    count, labels = connected_components(csr_matrix(union), directed=True, connection="strong")
    return count, labels


def _closed_component(union: np.ndarray, labels: np.ndarray, count: int, transpose: bool = False):
    """The smallest strongly connected components closed under attending (no edge from
    the component to outside it), or, with transpose, under being attended."""
    graph = union.T if transpose else union
    comp_rows = [np.flatnonzero(labels == c) for c in range(count)]
    closed = []
    for c, members in enumerate(comp_rows):
        inside = labels == c
        if not graph[members][:, ~inside].any():
            closed.append(members)
    return sorted(closed, key=len)


def _ranges(indices) -> list[list[int]]:
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    if indices.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.concatenate([[indices[0]], indices[breaks + 1]])
    ends = np.concatenate([indices[breaks], [indices[-1]]]) + 1
    return [[int(a), int(b)] for a, b in zip(starts, ends)]


def _hamiltonian_exhaustive(union: np.ndarray):
    """A path γ (list) with union[γ(t+1), γ(t)] for all t, or None (exact; n ≤ ~14)."""
    n = union.shape[0]
    if n == 0:
        return []
    full = (1 << n) - 1
    # reach[mask] = bitset of last vertices of a path visiting exactly mask.
    prev_of = [int(sum(1 << j for j in range(n) if union[i, j] and j != i)) for i in range(n)]
    reach = [0] * (1 << n)
    for v in range(n):
        reach[1 << v] = 1 << v
    for mask in range(1, full + 1):
        ends = reach[mask]
        if not ends:
            continue
        for v in range(n):
            if not mask >> v & 1 and prev_of[v] & ends:
                reach[mask | 1 << v] |= 1 << v
    if not reach[full]:
        return None
    path, mask = [], full
    last = (reach[full] & -reach[full]).bit_length() - 1
    while True:
        path.append(last)
        rest = mask & ~(1 << last)
        if not rest:
            break
        cand = prev_of[last] & reach[rest]
        last = (cand & -cand).bit_length() - 1
        mask = rest
    return path[::-1]


def _hamiltonian_dfs(union: np.ndarray, deadline: float):
    """A budgeted DFS (Warnsdorff order): a path, or None if none found in time."""
    n = union.shape[0]
    succ = []
    for v in range(n):  # who attends v
        if v % 64 == 0 and budget_clock() > deadline:
            return None
        succ.append(np.flatnonzero(union[:, v] & (np.arange(n) != v)).tolist())
    outdeg = np.array([len(s) for s in succ])
    for start in np.argsort(outdeg, kind="stable")[: min(n, 8)]:
        path, used = [int(start)], np.zeros(n, dtype=bool)
        used[start] = True
        stack = [iter(sorted(succ[start], key=lambda w: outdeg[w]))]
        steps = 0
        while stack:
            steps += 1
            if (steps % 1024 == 0 or n > 256) and budget_clock() > deadline:
                return None
            if len(path) == n:
                return path
            nxt = next((w for w in stack[-1] if not used[w]), None)
            if nxt is None:
                stack.pop()
                used[path.pop()] = False
                continue
            used[nxt] = True
            path.append(nxt)
            stack.append(iter(sorted(succ[nxt], key=lambda w: outdeg[w])))
    return None


def pack_rows(mask: np.ndarray) -> np.ndarray:
    """Bool rows packed 64 keys a word (uint64, key j at bit j % 64 of word j // 64)."""
    rows, n = mask.shape
    words = max(1, -(-n // 64))
    out = np.zeros((rows, words * 8), dtype=np.uint8)
    out[:, :-(-n // 8)] = np.packbits(mask, axis=1, bitorder="little")
    return out.view(np.uint64)


def unpack_rows(packed: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(packed.view(np.uint8), axis=1, count=n, bitorder="little").astype(bool)


_GATHER_WEIGHT = 4  # a gathered row costs about this many contiguous ones (measured: 7 ms vs 0.9 ms a step)
_MAX_DIAGONALS = 256


class PackedLayer:
    """One layer's mask for the products S ↦ A·S on packed rows (row i of A·S = OR of
    the rows S_j, j ∈ A_i), the cheapest of three ways (cost(): words of a row of S read per
    word of a row; the work of one product is cost() × words):
      * "gather": the rows S_j of every key (nnz(A));
      * "diagonals": for each offset d of a key j = i + d, the shifted S ORed into the rows
        that hold it (n per offset; few offsets: banded layers);
      * "tables" (the four Russians): per 8 keys of A the 256 ORs of their 8 rows of S,
        then one table row per row of A ((n/8 + 1)·(256 + n): dense layers)."""

    def __init__(self, mask: np.ndarray):
        self.n = n = mask.shape[0]
        rows, cols = np.nonzero(mask)
        self.nnz = int(rows.size)
        costs = {"gather": _GATHER_WEIGHT * self.nnz, "tables": (n // 8 + 1) * (256 + n)}
        offsets = None
        if self.nnz <= _MAX_DIAGONALS * n:
            offsets = np.unique(cols - rows)
            if offsets.size <= _MAX_DIAGONALS:
                costs["diagonals"] = int(offsets.size) * n
        self.kind = min(costs, key=costs.get)
        self.work = costs[self.kind]
        if self.kind == "tables":
            self.bytes = np.packbits(mask, axis=1, bitorder="little")  # n × ⌈n/8⌉ chunk indices
        elif self.kind == "diagonals":
            self.diagonals = []
            for d in offsets.tolist():
                has = np.zeros(n, dtype=bool)
                has[rows[cols - rows == d]] = True
                self.diagonals.append((d, has[:, None]))
        else:
            self.rows, self.cols = rows, cols
            self.starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]])) if rows.size else rows

    def cost(self) -> int:
        return self.work

    def times(self, S: np.ndarray) -> np.ndarray:
        n, words = self.n, S.shape[1]
        out = np.zeros_like(S)
        if self.kind == "tables":
            table = np.zeros((256, words), dtype=S.dtype)
            for c in range(self.bytes.shape[1]):
                column = self.bytes[:, c]
                if not column.any():
                    continue
                for k in range(8):
                    j = 8 * c + k
                    if j < n:
                        np.bitwise_or(table[:1 << k], S[j], out=table[1 << k:2 << k])
                    else:
                        table[1 << k:2 << k] = table[:1 << k]
                out |= table[column]
            return out
        if self.kind == "diagonals":
            for d, has in self.diagonals:  # row i ORs in S_{i+d} where (i, i + d) ∈ A
                if d >= 0:
                    np.bitwise_or(out[:n - d], S[d:], out=out[:n - d], where=has[:n - d])
                else:
                    np.bitwise_or(out[-d:], S[:n + d], out=out[-d:], where=has[-d:])
            return out
        if self.nnz == 0:
            return out
        per = max(1, (1 << 22) // words)  # gather about 32 MiB at a time
        starts, rows, cols = self.starts, self.rows, self.cols
        a = 0
        while a < starts.size:  # whole rows per slice
            b = max(a + 1, int(np.searchsorted(starts, starts[a] + per, side="right")))
            lo = starts[a]
            hi = starts[b] if b < starts.size else rows.size
            out[rows[starts[a:b]]] = np.bitwise_or.reduceat(S[cols[lo:hi]], starts[a:b] - lo, axis=0)
            a = b
        return out


def _packed_iteration(masks: list, c1: bool, deadline: float, limit: int, work: "int | None" = None,
                      layers: "list | None" = None):
    """Iterate S^t (S^1 = A^0, S^t = A^{k(t)}·S^{t−1}, k(t) = (t − 1) mod p); returns (s, S^{s−1}
    packed or None) when S^s = J, (None, ("cycle", t0, t1)) when S^{t1} repeats S^{t0} with
    t0 ≡ t1 (mod p) (so S^t ≠ J forever), (None, None) when out of time, steps or ``work``
    (words read by the products, PackedLayer.cost)."""
    n = masks[0].shape[0]
    p = len(masks)
    layers = layers or [PackedLayer(m) for m in masks]
    full_row = pack_rows(np.ones((1, n), dtype=bool))[0]
    S = pack_rows(masks[0])
    seen: dict = {}
    t = 1
    spent = 0
    previous = None
    while True:
        if (S == full_row).all():
            return t, previous
        if not c1:
            key = (t % p, hashlib.sha1(S.tobytes()).digest())
            if key in seen:
                return None, ("cycle", seen[key], t)
            seen[key] = t
        layer = layers[t % p]
        spent += layer.cost() * S.shape[1]
        if t >= limit or budget_clock() > deadline or (work is not None and spent > work):
            return None, None
        t += 1
        previous, S = S, layer.times(S)


# ---- the check --------------------------------------------------------------------------


def _self_loops(patterns, head, n):
    idx = np.arange(n, dtype=np.int64)
    for k, p in enumerate(patterns):
        diag = pair_values(p, idx, idx, n)
        if not diag.all():
            return {"holds": False, "missing": [k, head, int(np.flatnonzero(~diag)[0])]}, None
    return {"holds": True}, None


@randomgen.drawn_once()  # each random operand's rows drawn once per check
def check_conditions(compiled, budget_seconds: float = 10.0) -> dict:
    """Assumption 1 (C1–C3, per head) and 2, and non-empty rows, of a CompiledPattern.

    Returns {"n", "layers", "heads", "nonempty_rows", "empty_row", "conditions": [per head
    {"head", "self_loops", "hamiltonian_path", "finite_depth"}], "prob": {"name",
    "assumption2"}}; each condition has "holds" (True/False/None) and its evidence
    (see module docstring and ``certificate``)."""
    from ..errors import require_compiled

    require_compiled(compiled, "check_conditions()")
    wall_start, start = time.perf_counter(), budget_clock()
    n, p, H = compiled.n, compiled.layers, compiled.heads
    per_head_budget = budget_seconds / max(1, H)
    conditions = []
    done: dict = {}
    empty_row = None
    nonempty_evidence = []
    for h in range(H):
        patterns = [compiled.patterns[k][h] for k in range(p)]
        key = tuple(patterns)
        deadline = min(start + budget_seconds, budget_clock() + per_head_budget)
        if key not in done:
            done[key] = _check_head(patterns, n, deadline)
        res = done[key]
        c1 = dict(res["self_loops"])
        if "missing" in c1:
            c1["missing"] = [c1["missing"][0], h, c1["missing"][2]]
        conditions.append({"head": h, "self_loops": c1, "hamiltonian_path": res["hamiltonian_path"],
                           "finite_depth": res["finite_depth"]})
        for k, ev in enumerate(res["nonempty"]):
            nonempty_evidence.append({"layer": k, "head": h, **ev})
            if ev.get("empty_row") is not None and empty_row is None:
                empty_row = [k, h, ev["empty_row"]]
    if any(ev.get("holds") is None for ev in nonempty_evidence) and empty_row is None:
        nonempty = None
    else:
        nonempty = empty_row is None
    prob = compiled.prob or "softmax"
    return {"n": n, "layers": p, "heads": H, "nonempty_rows": nonempty, "empty_row": empty_row,
            "nonempty_evidence": nonempty_evidence, "conditions": conditions,
            "prob": {"name": prob, "assumption2": assumption2(prob),
                     "declared": compiled.prob is not None},
            "seconds": time.perf_counter() - wall_start}


def _nonempty(pattern, n, diag_ok, hubs) -> dict:
    """Evidence that every row of one pattern has a key: 'diagonal', or explicit keys."""
    if diag_ok:
        return {"holds": True, "keys": "diagonal"}
    idx = np.arange(n, dtype=np.int64)
    key = np.full(n, -1, dtype=np.int64)
    for cand in ([idx, idx - 1, idx + 1] + [np.full(n, c, dtype=np.int64) for c in hubs]):
        todo = np.flatnonzero((key < 0) & (cand >= 0) & (cand < n))
        if todo.size == 0:
            continue
        hit = pair_values(pattern, todo, cand[todo], n)
        key[todo[hit]] = cand[todo[hit]]
    rest = np.flatnonzero(key < 0)
    if rest.size and rest.size * n <= (1 << 26):
        step = max(1, (1 << 22) // max(1, n))
        for s0 in range(0, rest.size, step):
            rows = rest[s0:s0 + step]
            block = evaluate(pattern, rows, n)
            has = block.any(axis=1)
            if not has.all():
                return {"holds": False, "empty_row": int(rows[np.flatnonzero(~has)[0]])}
            key[rows] = block.argmax(axis=1)
        rest = rest[:0]
    if rest.size:
        deg = row_degrees(pattern, n)
        empty = np.flatnonzero(deg == 0)
        if empty.size:
            return {"holds": False, "empty_row": int(empty[0])}
        return {"holds": True, "keys": "counts"}
    return {"holds": True, "keys": key.tolist()}


def _check_head(patterns, n, deadline) -> dict:
    gaps = [_diagonal_gap(P, n) for P in patterns]
    c1_ok = all(gap is None for gap in gaps)
    if c1_ok:
        c1 = {"holds": True}
    else:
        k = next(k for k, gap in enumerate(gaps) if gap is not None)
        c1 = {"holds": False, "missing": [k, None, gaps[k]]}
    hubs = _candidates(patterns, n)
    nonempty = [_nonempty(P, n, gap is None, hubs) for P, gap in zip(patterns, gaps)]

    if n <= DENSE_N:
        c2, c3 = _dense_conditions(patterns, n, c1_ok, deadline)
    else:
        c2, c3 = _large_conditions(patterns, n, c1_ok, hubs, deadline)
    return {"self_loops": c1, "hamiltonian_path": c2, "finite_depth": c3, "nonempty": nonempty}


_OFFDIAGONAL_ROWS = 1 << 20  # rows per slice of `_offdiagonals` and `_diagonal_gap`


def _offdiagonals(patterns, n):
    """(U holds (i, i−1) for all i ≥ 1, U holds (i, i+1) for all i < n − 1), a slice of rows
    at a time: a side is no longer asked once a slice lacks one of its pairs, and a pair no
    longer once a layer holds it."""
    open_sides = {-1: True, 1: True}  # key offset: (i, i − 1) below the diagonal, (i − 1, i) above
    for start in range(1, n, _OFFDIAGONAL_ROWS):
        i = np.arange(start, min(n, start + _OFFDIAGONAL_ROWS), dtype=np.int64)
        for side in [s for s, ok in open_sides.items() if ok]:
            rows, keys = (i, i - 1) if side < 0 else (i - 1, i)
            missing = np.ones(i.size, dtype=bool)
            for P in patterns:
                todo = np.flatnonzero(missing)
                if todo.size == 0:
                    break
                missing[todo] = ~pair_values(P, rows[todo], keys[todo], n)
            open_sides[side] = not missing.any()
        if not any(open_sides.values()):
            break
    return open_sides[-1], open_sides[1]


def _diagonal_gap(pattern, n) -> "int | None":
    """The first i with (i, i) ∉ pattern, or None (C1 holds for it), a slice at a time."""
    for start in range(0, n, _OFFDIAGONAL_ROWS):
        i = np.arange(start, min(n, start + _OFFDIAGONAL_ROWS), dtype=np.int64)
        missing = np.flatnonzero(~pair_values(pattern, i, i, n))
        if missing.size:
            return start + int(missing[0])
    return None


def _offdiagonal_witness(lower: bool, upper: bool) -> dict | None:
    """C2's cheap witnesses: every token attends to the one before it (identity) or after it."""
    if lower:
        return {"holds": True, "witness": "identity"}
    if upper:
        return {"holds": True, "witness": "reversed"}
    return None


def _hub_bound(patterns, n, c1_ok, hubs):
    """The best hub rule: (hi, h, b, a) with S^a = J, or None."""
    p = len(patterns)
    best = None
    for h in hubs:
        row_full = [_row_full(P, h, n) for P in patterns]
        if not any(row_full):
            continue
        col_full = [_column_full(P, h, n) for P in patterns]
        if not any(col_full):
            continue
        for b in range(1, p + 1):
            if not row_full[(b - 1) % p]:
                continue
            for a in range(b + 1, b + p + 1):
                if col_full[(a - 1) % p]:
                    if (b, a) != (1, 2) and not c1_ok:
                        break
                    if best is None or a < best[0]:
                        best = (a, int(h), b, a)
                    break
    return best


def _missing_in_first(patterns, n, hubs):
    """A pair (i, j) with j ∉ A^0_i (so s ≥ 2), from a few candidate rows, or None."""
    for i in hubs + [1, n - 2]:
        if 0 <= i < n:
            lo, hi = _row_intervals(patterns[0], i, n)
            if not (lo.size == 1 and lo[0] == 0 and hi[0] == n):  # the first key outside lo[0]..hi[0]
                return [int(i), 0 if lo.size == 0 or lo[0] > 0 else int(hi[0])]
    return None


def _union_graph(patterns, n):
    """U as a segment-tree graph (analysis/graph.py), or None when it would be too large."""
    try:
        return UnionGraph(patterns, n)
    except (TooLarge, TooManyIntervals):
        return None


def _component_refutations(graph, n):
    """(C2 refutation or None, C3 refutation or None) from U's SCCs."""
    labels, sinks, sources = graph.components()
    c2 = c3 = None
    if len(sinks) >= 2:  # each set attends only inside itself: each must hold γ(0)
        c2 = {"holds": False, "refutation": {"kind": "two_start_sets",
                                              "sets": [_ranges(np.flatnonzero(labels == c)) for c in sinks[:2]]}}
    elif len(sources) >= 2:  # no row outside attends into it: each must hold γ(n − 1)
        c2 = {"holds": False, "refutation": {"kind": "two_end_sets",
                                              "sets": [_ranges(np.flatnonzero(labels == c)) for c in sources[:2]]}}
    if labels.min() != labels.max():
        inside = labels == sinks[0]
        i, j = int(np.flatnonzero(inside)[0]), int(np.flatnonzero(~inside)[0])
        c3 = {"holds": False, "unreachable": [i, j], "evidence": {"closed": _ranges(np.flatnonzero(inside))}}
    return c2, c3


def _structured_path(patterns, n):
    """A Hamiltonian path from the families of analysis/structural.py, as runs, or None."""
    for g in run_witnesses(patterns, n):
        if _union_steps_hold(patterns, n, g):
            return {"holds": True, "witness": {"runs": as_runs(g)}}
    return None


def _large_conditions(patterns, n, c1_ok, hubs, deadline=None):
    p = len(patterns)
    lower, upper = _offdiagonals(patterns, n)
    graph = None
    # C2
    c2 = _offdiagonal_witness(lower, upper) or _structured_path(patterns, n)
    # C3
    hub = _hub_bound(patterns, n, c1_ok, hubs)
    missing = _missing_in_first(patterns, n, hubs)
    lo = 2 if missing is not None else 1
    first_ev = {"missing_first": missing} if missing is not None else {}
    c3 = None
    if hub is not None and hub[0] == lo:
        hi, h, b, a = hub
        c3 = {"holds": True, "s": hi, "s_bounds": [lo, hi],
              "evidence": {"hub": {"token": h, "row_step": b, "column_step": a}, **first_ev}}
    elif c1_ok and (exact := interval_depth(patterns, n)) is not False:
        if exact is None:  # monotone intervals that never reach: not strongly connected
            graph = _union_graph(patterns, n)
            c3 = _component_refutations(graph, n)[1] if graph is not None else None
        else:
            c3 = {"holds": True, "s": exact, "s_bounds": [exact, exact], "evidence": {"intervals": True}}
    if c3 is None:
        upper_ev = None
        if hub is not None:
            hi, h, b, a = hub
            upper_ev = ({"hub": {"token": h, "row_step": b, "column_step": a}}, hi)
        else:
            if lower and upper and c1_ok:
                upper_ev = ({"chain": True}, p * (n - 1))
            graph = graph or _union_graph(patterns, n)
            if graph is not None:
                c3 = _component_refutations(graph, n)[1]
                if c3 is None and c1_ok:
                    trees = _tree_bound(graph, n, p)
                    if trees is not None and (upper_ev is None or trees[1] < upper_ev[1]):
                        upper_ev = trees
                    if p == 1:  # s exactly from a few rows every row contains (analysis/dominance.py)
                        c3 = dominated_depth(patterns[0], n, graph)
            elif upper_ev is not None:
                pass
            elif (closed := _closed_interval(patterns, n, hubs)) is not None:
                lo_r, hi_r = closed
                c3 = {"holds": False, "unreachable": [lo_r, hi_r if hi_r < n else lo_r - 1],
                      "evidence": {"closed": [[lo_r, hi_r]]}}
        if c3 is None and upper_ev is not None:
            ev, hi = upper_ev
            lo, ev = _lower_bound(patterns, n, hi, lo, ev, first_ev, c1_ok,
                                  max(deadline or 0.0, budget_clock() + 0.5))  # a slice even when late
            c3 = {"holds": True, "s": hi if lo == hi else None, "s_bounds": [lo, hi], "evidence": ev}
        elif c3 is None and not c1_ok:
            c3 = _without_self_loops(patterns, n, graph, lo, first_ev)
        if c3 is None:
            c3 = _cover_depth(patterns, n, c1_ok, hubs, deadline, first_ev)
        if c3 is None:
            reason = ("strongly connected but C1 fails: undecided" if graph is not None or (lower and upper)
                      else "undecided within budget")
            c3 = {"holds": None, "s": None, "s_bounds": [lo, None], "reason": reason, "evidence": first_ev}
    if c3.get("holds") is not False and c3.get("s") is None:
        c3 = _common_cover_claim(patterns, n, c3, deadline)
    if c3.get("holds") is not False and c3.get("s") is None:
        c3 = _binary_claim(patterns, n, c3, deadline)
    if c3.get("holds") is not False and c3.get("s") is None and n <= SEARCH_N:  # s on the dense masks
        c3 = dense_depth([_dense(P, n) for P in patterns], c1_ok, c3, max(deadline or 0.0, budget_clock() + 1.0))
    if c3.get("holds") is not False and c3.get("s") is None:  # bounds only, or undecided
        c3 = exact_depth(patterns, n, c1_ok, c3, pair_values, hubs, max(deadline or 0.0, budget_clock() + 0.5))
    if c3.get("holds") is not False and c3.get("s") is None and n <= SEARCH_N:  # S^t on packed rows, when cheap (last: the other deciders keep their evidence)
        c3 = _recursion_above_dense(patterns, n, c1_ok, c3, deadline)
    if c3.get("holds") is True and c3.get("s") is None and len(patterns) == 1 and c1_ok:
        c3 = distance_depth(patterns[0], n, c3)  # bounds only: s = U's largest distance (a BFS from each token)
    if c2 is None:
        graph = graph or _union_graph(patterns, n)
        if graph is not None:
            c2 = _component_refutations(graph, n)[0]
    if c2 is None and (refutation := (counting_refutation(patterns, n)
                                      or split_refutation(patterns, n, hub_tokens(patterns, n),
                                                       max(deadline or 0.0, budget_clock() + 0.3)))) is not None:
        c2 = {"holds": False, "refutation": refutation}
    if c2 is None and n <= SEARCH_N and deadline is not None:
        c2 = _searched_path(patterns, n, deadline)
    if c2 is None:
        path = find_path(patterns, n, pair_values, hub_tokens(patterns, n),
                         max(deadline or 0.0, budget_clock() + 0.5))  # a slice even when the others ran late
        if path is not None:
            c2 = {"holds": True, "witness": {"runs": as_runs(path)}}
    if c2 is None and (path := chain_path(patterns, n, max(deadline or 0.0, budget_clock() + 0.5))) is not None \
            and _union_steps_hold(patterns, n, path):
        c2 = {"holds": True, "witness": {"runs": as_runs(path)}}
    if c2 is None:
        c2 = {"holds": None, "reason": "undecided (no structural witness or refutation)"}
    return c2, c3


_LOWER_EVIDENCE = ("missing_first", "missing_before", "missing_each")


def _union_steps_hold(patterns, n, g) -> bool:
    """Every token of g after the first attends its predecessor in some layer."""
    ok = np.zeros(n - 1, dtype=bool)
    for P in patterns:
        todo = np.flatnonzero(~ok)
        if todo.size == 0:
            break
        ok[todo] = pair_values(P, g[1:][todo], g[:-1][todo], n)
    return bool(ok.all())


def _binary_claim(patterns, n, claim, deadline):
    """A bounds-only or undecided C3 claim replaced by the full/empty-rows argument
    (analysis/layered_deciders.py) when that decides more: s infinite, or a tighter s."""
    found = binary_depth(patterns, n, max(deadline or 0.0, budget_clock() + 0.5))
    if found is None:
        return claim
    if found["holds"] is False:
        return found
    if found["holds"] is False or claim.get("holds") is None or found["s"] is not None:
        return found
    (lo, hi), (new_lo, new_hi) = claim["s_bounds"], found["s_bounds"]
    return found if new_lo >= lo and new_hi <= hi and (new_lo, new_hi) != (lo, hi) else claim


def _common_cover_claim(patterns, n, claim, deadline):
    """A bounds-only or undecided C3 claim tightened by a cover of common columns
    (structural_deciders.common_cover): s ≤ t. Its upper-bound evidence is replaced, the
    lower-bound evidence kept; the claim unchanged when no better t is found."""
    lo, hi = claim["s_bounds"]
    found = common_cover(patterns, n, max_step=min(8, hi - 1) if hi is not None else 8,
                         deadline=max(deadline or 0.0, budget_clock() + 0.5))
    if found is None or found[0] < lo:  # (t < lo would contradict the lower bound's evidence)
        return claim
    t, C = found
    ev = {k: v for k, v in (claim.get("evidence") or {}).items() if k in _LOWER_EVIDENCE}
    ev["common_cover"] = {"step": t, "tokens": _ranges(np.flatnonzero(C))}
    return {"holds": True, "s": t if t == lo else None, "s_bounds": [lo, t], "evidence": ev}


def _cover_depth(patterns, n, c1_ok, hubs, deadline, first_ev):
    """C3 by a cover (analysis/structural_deciders.py): bounds, or an empty column's refutation."""
    deadline = max(deadline or 0.0, budget_clock() + 0.3)  # a slice even when the others ran late
    c3 = depth_by_cover(patterns, n, c1_ok, hubs, pair_values, deadline)
    if c3 is None or c3["holds"] is not True:
        return c3
    lo, hi = c3["s_bounds"]
    if lo == 1 and hi >= 2 and first_ev:  # j ∉ A^0_i: s ≥ 2
        c3["evidence"].update(first_ev)
        c3["s_bounds"] = [2, hi]
        c3["s"] = hi if hi == 2 else None
    return c3


def _searched_path(patterns, n, deadline):
    """C2 on U's dense mask (n ≤ SEARCH_N: at most 64 MiB, the reference evaluates rows in
    bulk), as a witness or a refutation, or None:
      * U's arcs as successor / predecessor lists (``_arc_lists``; up to ARC_LIMIT arcs);
      * a maximum matching of each token to a distinct successor: a Hamiltonian path matches
        all tokens but its last, so a matching of n − 2 or fewer gives, by König, a Hall set X
        whose successors all lie in Y = N(X), |Y| ≤ |X| − 2 (a ``few_successors`` refutation,
        which verify re-checks on the key sets);
      * else the walk with rotations (``_rotation_path``) on the lists;
      * then (too many arcs, or no path found) the greedy walk and the DFS on the mask."""
    union = np.zeros((n, n), dtype=bool)
    for P in patterns:
        union |= _dense(P, n)
    arcs = _arc_lists(union)
    path = None
    if arcs is not None:
        refutation = _matching_refutation(n, arcs)
        if refutation is not None:
            return {"holds": False, "refutation": refutation}
        path = _rotation_path(n, arcs, max(deadline, budget_clock() + 0.8))  # its own slice
        del arcs
    if path is None:
        path = _greedy_path(union, budget_clock() + 0.5)  # its own slice: the union above may have used the budget
    if path is None:
        path = _hamiltonian_dfs(union, min(deadline, budget_clock() + 0.5))
    return {"holds": True, "witness": {"runs": as_runs(np.array(path, dtype=np.int64))}} if path is not None else None


ARC_LIMIT = 1 << 23  # arcs of U kept as lists by _arc_lists (two int32 copies: 64 MiB, U's dense mask at SEARCH_N)


def _arc_lists(union: np.ndarray, limit=ARC_LIMIT):
    """U's arcs x → y (y ≠ x attends x: union[y, x]) as CSR (succ_ptr, succ, pred_ptr, pred):
    succ[succ_ptr[x]:succ_ptr[x + 1]] are the tokens attending x, pred[pred_ptr[y]:pred_ptr[y + 1]]
    the keys of row y, itself excluded; None past ``limit`` arcs."""
    from scipy.sparse import csr_matrix

    n = union.shape[0]
    idx = np.arange(n)
    diagonal = union[idx, idx].copy()
    union[idx, idx] = False
    try:
        if np.count_nonzero(union) > limit:
            return None
        y, x = np.nonzero(union)
    finally:
        union[idx, idx] = diagonal
    x = x.astype(np.int32)
    pred_ptr = np.concatenate([[0], np.cumsum(np.bincount(y, minlength=n))]).astype(np.int64)
    # row-major order, each row's keys sorted: CSR of the keys; its transpose (a counting sort) the successors
    by_column = csr_matrix((np.ones(x.size, dtype=np.int8), x, pred_ptr), shape=(n, n)).tocsc()
    return by_column.indptr.astype(np.int64), by_column.indices.astype(np.int32), pred_ptr, x


def _matching_refutation(n, arcs):
    """A ``few_successors`` refutation from a maximum matching x → σ(x) (σ(x) a distinct
    successor of x) of size ≤ n − 2, or None. X: the tokens reached from the unmatched ones
    by alternating paths (any successor, then its partner); Y = N(X) holds only matched
    tokens (else an augmenting path), each the partner of one in X: |Y| = |X| − unmatched."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    succ_ptr, succ, _, _ = arcs
    graph = csr_matrix((np.ones(succ.size, dtype=np.int8), succ, succ_ptr), shape=(n, n))
    partner_of = maximum_bipartite_matching(graph, perm_type="column")  # x → σ(x) or −1
    free = np.flatnonzero(partner_of < 0)
    if free.size < 2:
        return None
    matched_to = np.full(n, -1, dtype=np.int64)  # y → x with σ(x) = y
    has = partner_of >= 0
    matched_to[partner_of[has]] = np.flatnonzero(has)
    X = np.zeros(n, dtype=bool)
    Y = np.zeros(n, dtype=bool)
    X[free] = True
    frontier = free
    while frontier.size:
        starts, stops = succ_ptr[frontier], succ_ptr[frontier + 1]
        sizes = stops - starts
        at = np.repeat(starts - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes) + np.arange(sizes.sum())
        ys = np.unique(succ[at])
        ys = ys[~Y[ys]]
        Y[ys] = True
        nxt = matched_to[ys]
        if (nxt < 0).any():  # an augmenting path: the matching was not maximum (never)
            return None
        nxt = nxt[~X[nxt]]
        X[nxt] = True
        frontier = nxt
    if not Y.sum() < X.sum() - 1:
        return None
    return {"kind": "few_successors", "tokens": _ranges(np.flatnonzero(X)), "others": _ranges(np.flatnonzero(Y))}


def _rotation_path(n, arcs, deadline, seed=0, max_rotations=None):
    """A Hamiltonian path of U by extension and rotation, or None when none is found in time.

    The path v_0 … v_k grows at its end by Warnsdorff's rule (the unused successor with the
    fewest unused successors). Stuck (every successor of v_k on the path), it is rotated to
    get a new end: for an arc v_k → v_p (p ≥ 1) and an arc v_{p−1} → v_j (j > p), the path
    A C B with A = v_0 … v_{p−1}, B = v_p … v_{j−1}, C = v_j … v_k keeps every step an arc
    (v_{p−1} → v_j, v_k → v_p) and ends at v_{j−1}; an arc v_k → v_0 closes a cycle, cut
    anywhere. A rotation whose new end has an unused successor is taken first, else a
    random one; the two ends take turns (the path reversed on U's reverse) and a walk that
    runs out of rotations restarts from another token (seeded: the result is deterministic)."""
    succ_ptr, succ, pred_ptr, pred = arcs
    if n == 0:
        return []
    if n == 1:
        return [0]
    rng = np.random.default_rng(seed)
    max_rotations = max_rotations or 40 * n
    out_deg = np.diff(succ_ptr)
    in_deg = np.diff(pred_ptr)
    lists = [(succ_ptr, succ), (pred_ptr, pred)]
    starts = np.argsort(in_deg + rng.random(n), kind="stable")  # few predecessors: a likely v_0
    for attempt in range(8):
        start = int(starts[attempt % n]) if attempt < 4 else int(rng.integers(n))
        pos = np.full(n, -1, dtype=np.int64)
        free = [out_deg.copy(), in_deg.copy()]  # unused successors / predecessors of each token
        path = [start]
        pos[start] = 0

        def use(v):
            free[0][pred[pred_ptr[v]:pred_ptr[v + 1]]] -= 1
            free[1][succ[succ_ptr[v]:succ_ptr[v + 1]]] -= 1

        use(start)
        side = 0  # 0: U's arcs, the path as it is; 1: reversed (arcs y → x), the path reversed
        rotations = 0
        while len(path) < n:
            if budget_clock() > deadline:
                return None
            ptr, adj = lists[side]
            end = path[-1]
            out = adj[ptr[end]:ptr[end + 1]]
            new = out[pos[out] < 0]
            if new.size:
                counts = free[side][new]
                v = int(new[np.argmin(counts + rng.random(new.size))])
                pos[v] = len(path)
                path.append(v)
                use(v)
                continue
            if free[1 - side][path[0]] > 0:  # the other end can still grow
                side = 1 - side
                path.reverse()
                pos[path] = np.arange(len(path))
                continue
            rotations += 1
            if rotations > max_rotations:
                break
            k = len(path) - 1
            moves = []
            if out.size and pos[out].min() == 0:  # v_k → v_0: a cycle; cut it after a token with an unused successor
                on = np.array(path, dtype=np.int64)
                cut = np.flatnonzero(free[side][on] > 0)
                if cut.size:
                    j = int(cut[rng.integers(cut.size)])
                    path = path[j + 1:] + path[:j + 1]
                    pos[path] = np.arange(len(path))
                    continue
            for p in pos[out].tolist():
                if p < 1 or p > k - 1:
                    continue
                a = path[p - 1]
                nxt = adj[ptr[a]:ptr[a + 1]]
                js = pos[nxt]
                js = js[js > p]
                moves.extend((p, j) for j in js.tolist())
            if not moves:
                side = 1 - side
                path.reverse()
                pos[path] = np.arange(len(path))
                continue
            ends = np.array([path[j - 1] for _, j in moves], dtype=np.int64)
            good = np.flatnonzero(free[side][ends] > 0)
            p, j = moves[int(good[rng.integers(good.size)]) if good.size else int(rng.integers(len(moves)))]
            path = path[:p] + path[j:] + path[p:j]
            pos[path[p:]] = np.arange(p, len(path))
            if rng.random() < 0.1:
                side = 1 - side
                path.reverse()
                pos[path] = np.arange(len(path))
        else:
            return path[::-1] if side else path
    return None


def _greedy_path(union: np.ndarray, deadline: float, max_left: int = 64):
    """Warnsdorff's rule without backtracking, from a few starts: next comes the unused
    token attending the current one that the fewest tokens attend. O(n²) per start. A
    walk stuck with at most ``max_left`` tokens unused gets them appended and its
    unattended steps mended (structural_deciders.repair: tokens moved into the gaps),
    which finishes dense random digraphs, where the walk's last steps run dry."""
    n = union.shape[0]
    attended_by = union.sum(axis=0) - union.diagonal()  # how many rows attend each token

    def has(i, j):
        return union[i, j]

    for start in np.argsort(attended_by, kind="stable")[:4]:
        unused = np.ones(n, dtype=bool)
        path = [int(start)]
        unused[start] = False
        while len(path) < n:
            candidates = np.flatnonzero(union[:, path[-1]] & unused)
            if candidates.size == 0 or budget_clock() > deadline:
                break
            nxt = int(candidates[np.argmin(attended_by[candidates])])
            path.append(nxt)
            unused[nxt] = False
        if len(path) == n:
            return path
        if n - len(path) <= max_left and budget_clock() <= deadline:
            g = repair(None, n, None, path + np.flatnonzero(unused).tolist(), max_bad=2 * max_left,
                       deadline=deadline, has=has)
            if g is not None:
                return g.tolist()
    return None


def _without_self_loops(patterns, n, graph, lo, first_ev):
    """C3 when C1 fails (then S^t need not grow with t):
      * A^0 = J: s = 1;
      * every layer has an empty row: every S^t has one, s is infinite;
      * one layer, U strongly connected with period g (the gcd of its cycle lengths):
        g > 1 puts the keys of row i in S^t into one class mod g, s infinite; g = 1 makes
        A primitive: with a self-loop at a token v, S^t = J once t ≥ dist(·, v) +
        dist(v, ·) (walk to v, wait there, walk on); else Wielandt's s ≤ (n − 1)² + 1."""
    degrees = [row_degrees(P, n) for P in patterns]  # the exact counter: no interval lists
    if (degrees[0] == n).all():
        return {"holds": True, "s": 1, "s_bounds": [1, 1], "evidence": {"full_first": True}}
    empty = [np.flatnonzero(d == 0) for d in degrees]
    if all(e.size for e in empty):
        return {"holds": False, "evidence": {"empty_rows": [int(e[0]) for e in empty]}}
    if len(patterns) != 1 or graph is None:
        return None
    idx = np.arange(n, dtype=np.int64)
    loops = np.flatnonzero(pair_values(patterns[0], idx, idx, n))
    root = int(loops[0]) if loops.size else 0
    out_tree, in_tree = graph.tree(root), graph.tree(root, reverse=True)
    if out_tree is None or in_tree is None:
        return None
    try:
        period = graph.period(out_tree, root, patterns)
    except TooManyIntervals:
        return None
    if period > 1:
        return {"holds": False, "evidence": {"periodic": {"root": root, "out": out_tree.tolist(), "period": period}}}
    trees = {"root": root, "out": out_tree.tolist(), "in": in_tree.tolist()}
    if loops.size:
        hi = max(1, int(tree_depths(out_tree, root).max()) + int(tree_depths(in_tree, root).max()))
        return {"holds": True, "s": hi if hi == lo else None, "s_bounds": [min(lo, hi), hi],
                "evidence": {"trees": trees, **first_ev}}
    hi = (n - 1) ** 2 + 1
    return {"holds": True, "s": hi if hi == lo else None, "s_bounds": [min(lo, hi), hi],
            "evidence": {"trees": trees, "aperiodic": True, **first_ev}}


def _tree_bound(graph, n, p):
    """Given C1 and U strongly connected: BFS trees out of and into token 0 bound the
    diameter D ≤ depth_in + depth_out, and s ≤ p·D (the theorem above)."""
    out_tree, in_tree = graph.tree(0), graph.tree(0, reverse=True)
    if out_tree is None or in_tree is None:
        return None
    d_out, d_in = tree_depths(out_tree, 0), tree_depths(in_tree, 0)
    hi = p * max(1, int(d_out.max()) + int(d_in.max()))
    return {"trees": {"root": 0, "out": out_tree.tolist(), "in": in_tree.tolist()}}, hi


def _lower_bound(patterns, n, hi, lo, ev, first_ev, c1_ok, deadline=None):
    """The best lower bound on s: S^t of a few rows computed layer by layer (C1), within
    the deadline (each row that passes it is left out: the bound only tightens s_bounds)."""
    ev = dict(ev)
    best = (lo, first_ev)
    if c1_ok and hi > 2:
        for i in dict.fromkeys([0, n - 1, n // 2]):
            found = layered_reach(patterns, n, i, hi, deadline=deadline)
            if found is None:
                continue
            t, gap = found
            if t is not None and gap is not None and t > best[0]:
                best = (t, {"missing_before": [i, gap]})
    ev.update(best[1])
    return best[0], ev


def _closed_interval(patterns, n, hubs):
    """An interval R = [0, m) or [m, n), 0 < m < n, that no row of R leaves, or None."""
    if n < 2:
        return None
    cands = sorted({m for m in hubs + [1, n - 1] if 0 < m < n})
    for m in cands:
        for lo, hi in ((0, m), (m, n)):
            inside = IndexSet.of([(lo, hi)], n)
            outside = IndexSet.of([(0, lo), (hi, n)], n)
            ok = True
            for P in patterns:
                if hi - lo == 1:
                    keys_lo, keys_hi = _row_intervals(P, lo, n)
                    if (keys_lo < lo).any() or (keys_hi > hi).any():
                        ok = False
                        break
                    continue
                probe = Intersection((P, Rows(inside), Cols(outside)))
                if row_degrees(probe, n).any():
                    ok = False
                    break
            if ok:
                return lo, hi
    return None


def _dense_conditions(patterns, n, c1_ok, deadline):
    masks = [_dense(P, n) for P in patterns]
    union = np.logical_or.reduce(masks)
    eye = np.eye(n, dtype=bool)
    count, labels = _sccs(union)
    lower, upper = _offdiagonals(patterns, n)
    # ---- C2
    c2 = _offdiagonal_witness(lower, upper)
    if c2 is None:
        off = union & ~eye
        sources = _closed_component(off, labels, count)  # attend only inside
        sinks = _closed_component(off, labels, count, transpose=True)  # attended only from inside
        if len(sources) >= 2:
            c2 = {"holds": False, "refutation": {"kind": "two_start_sets",
                                                  "sets": [_ranges(sources[0]), _ranges(sources[1])]}}
        elif len(sinks) >= 2:
            c2 = {"holds": False, "refutation": {"kind": "two_end_sets",
                                                  "sets": [_ranges(sinks[0]), _ranges(sinks[1])]}}
        elif n <= EXHAUSTIVE_N:
            path = _hamiltonian_exhaustive(union)
            c2 = ({"holds": True, "witness": path} if path is not None else
                  {"holds": False, "refutation": {"kind": "exhaustive"}})
        else:
            path = _greedy_path(union, min(deadline, budget_clock() + 0.5))
            if path is None:
                path = _hamiltonian_dfs(union, min(deadline, budget_clock() + 0.5))
            if path is None:  # the structural families, mended (analysis/structural_deciders.py)
                found = find_path(patterns, n, pair_values, hub_tokens(patterns, n),
                                  max(deadline, budget_clock() + 0.3))
                path = found.tolist() if found is not None else None
            refutation = (counting_refutation(patterns, n)
                          or split_refutation(patterns, n, hub_tokens(patterns, n), max(deadline, budget_clock() + 0.3))
                          if path is None else None)
            c2 = ({"holds": True, "witness": path} if path is not None else
                  {"holds": False, "refutation": refutation} if refutation is not None else
                  {"holds": None, "reason": "undecided within budget"})
    # ---- C3
    if count > 1:
        closed = _closed_component(union, labels, count)[0]
        inside = np.zeros(n, dtype=bool)
        inside[closed] = True
        i, j = int(closed[0]), int(np.flatnonzero(~inside)[0])
        c3 = {"holds": False, "unreachable": [i, j], "evidence": {"closed": _ranges(closed)}}
        return c2, c3
    c3 = _recursion_claim(masks, c1_ok, deadline)
    if c3 is not None:
        return c2, c3
    # Out of budget: fall back to the certified structural bounds (hub, chain).
    _, c3 = _large_conditions(patterns, n, c1_ok, _candidates(patterns, n))
    if c3.get("holds") is not True:
        c3 = {"holds": None, "s": None, "s_bounds": [1, None], "reason": "undecided within budget"}
    return c2, c3


def _recursion_claim(masks, c1_ok, deadline, limit=None, work=None, layers=None):
    """C3 by iterating S^t on the dense masks (packed rows): s exactly ("recursion"), or
    infinite by a repeated state ("recursion_cycles"); None out of time or steps."""
    n, p = masks[0].shape[0], len(masks)
    if limit is None:
        limit = p * max(n - 1, 1) if c1_ok else 10 * p * n * n
    s, why = _packed_iteration(masks, c1_ok, deadline, limit, work, layers)
    if s is not None:
        ev = {"recursion": True}
        if s >= 2 and c1_ok:  # a pair missing from S^{s−1} bounds s below only given C1 (verify checks it)
            before = unpack_rows(why, n)
            i, j = np.argwhere(~before)[0]
            ev["missing_before"] = [int(i), int(j)]
        return {"holds": True, "s": s, "s_bounds": [s, s], "evidence": ev}
    if isinstance(why, tuple):  # S^{t0} = S^{t1}, t0 ≡ t1 (mod p), never J before
        return {"holds": False, "evidence": {"recursion_cycles": [why[1], why[2]]}}
    return None


RECURSION_WORK = 1 << 30  # words read by the dense recursion above DENSE_N (PackedLayer.cost; verify re-runs it)


def _recursion_above_dense(patterns, n, c1_ok, claim, deadline):
    """For DENSE_N < n ≤ SEARCH_N, a claim without exact s settled by the dense recursion
    (S^t = A^{k(t)}·S^{t−1} on packed rows, the four Russians' tables for dense layers)
    when its work for the steps the claim allows (all of them up to hi, or as many as
    RECURSION_WORK pays for) is small. Without C1, S^t is not monotone; s is the first t
    with S^t = J (with one layer it stays J after: A·J = J when no row of A is empty); a
    repeated state (t0 ≡ t1 mod p) proves s infinite."""
    lo, hi = claim.get("s_bounds") or [1, None]
    words = -(-n // 64)
    need = max(lo, 2) - 1  # products up to the lower bound at least
    optimistic = sum(min(int(row_degrees(P, n).sum()), (n // 8 + 1) * (256 + n)) for P in patterns) // len(patterns)
    if max(1, optimistic) * words * need > RECURSION_WORK:
        return claim  # not even the lower bound is within the work (before building the masks)
    masks = [_dense(P, n) for P in patterns]
    layers = [PackedLayer(m) for m in masks]
    per_step = max(1, sum(L.cost() for L in layers) * words // len(layers))
    if per_step * need > RECURSION_WORK:
        return claim
    steps = 1 + RECURSION_WORK // per_step
    if hi is not None:
        steps = min(steps, hi)
    found = _recursion_claim(masks, c1_ok, max(deadline or 0.0, budget_clock() + 1.0), limit=steps,
                             work=RECURSION_WORK, layers=layers)
    if found is None or (found["holds"] is False and claim.get("holds") is True):
        return claim  # (a contradiction would be a bug of one side; keep the certified bounds)
    if found["holds"] is True and not lo <= found["s"] <= (hi or found["s"]):
        return claim
    return found


# ---- certificates -----------------------------------------------------------------------


def certificate(compiled, results: dict, counts: "dict | None" = None) -> dict:
    """A JSON-serialisable certificate of ``results`` (from ``check_conditions``); the
    schema is documented in patterndsl/verify.py, which checks it."""
    text = getattr(compiled.source, "text", None)
    cert = {
        "format": FORMAT,
        "source_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest() if isinstance(text, str) else None,
        "n": results["n"], "layers": results["layers"], "heads": results["heads"],
        "prob": {"name": results["prob"]["name"], "assumption2": results["prob"]["assumption2"]},
        "nonempty_rows": {"holds": results["nonempty_rows"], "empty_row": results["empty_row"],
                          "evidence": [dict(ev) for ev in results["nonempty_evidence"]]},
        "conditions": [],
    }
    for c in results["conditions"]:
        cert["conditions"].append({
            "head": c["head"],
            "self_loops": dict(c["self_loops"]),
            "hamiltonian_path": {k: v for k, v in c["hamiltonian_path"].items()},
            "finite_depth": {k: v for k, v in c["finite_depth"].items()},
        })
    if counts is not None:
        cert["counts"] = {"per_layer": counts["per_layer"], "union": counts["union"]}
    return cert
