"""Field-by-field corruption of certificates, judged by a dense oracle.

Every leaf of every claim (and of its evidence) is changed one at a time — integers moved
by ±1 or to the ends, booleans flipped, list entries dropped or repeated, keys deleted,
evidence kinds swapped. Whenever verify accepts the changed certificate with exit 0, the
oracle below (dense masks at small n, sharing no code with verify or the analysis) must
find every claim true and every piece of evidence present valid: a corruption that makes
a claim or its evidence false may not be accepted.

The certificates come from both decision paths: the dense one (n ≤ DENSE_N) and the
structural one, forced at small n by lowering DENSE_N and SEARCH_N, so the evidence kinds
of large n (cover, union_cover, support_after, missing_each, trees, hub, …) are corrupted
where the oracle can judge them."""
from __future__ import annotations

import copy
from math import gcd

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis import conditions as C
from patterndsl.analysis.conditions import certificate, check_conditions
from patterndsl.analysis.counts import connection_counts
from patterndsl.verify import verify_report

KINDS_C2 = ("two_start_sets", "two_end_sets", "few_successors", "few_predecessors", "exhaustive", "split")


# ---- the oracle: dense masks -----------------------------------------------------------------


class Dense:
    def __init__(self, compiled, h):
        self.n, self.p = compiled.n, compiled.layers
        self.M = [compiled.dense(k, h).astype(bool) for k in range(self.p)]
        self.U = np.logical_or.reduce(self.M)
        self.c1 = all(m.diagonal().all() for m in self.M)
        self._S = [None, self.M[0].copy()]

    def S(self, t):
        """S^t (bool n × n): S^1 = A^0, S^t = A^{k(t)} S^{t−1}."""
        while len(self._S) <= t:
            t1 = len(self._S)
            self._S.append((self.M[(t1 - 1) % self.p].astype(np.int64) @ self._S[-1].astype(np.int64)) > 0)
        return self._S[t]

    def s(self):
        """The least t with S^t = J, or None (the pair (t mod p, S^t) repeats first)."""
        seen, t = set(), 1
        while True:
            if self.S(t).all():
                return t
            key = (t % self.p, self.S(t).tobytes())
            if key in seen:
                return None
            seen.add(key)
            t += 1

    def has_path(self):
        """Held–Karp over subsets (n ≤ 12): some permutation γ with γ(t) ∈ U_{γ(t+1)}."""
        n = self.n
        if n > 12:
            return None
        ends = [0] * (1 << n)  # ends[mask]: bitmask of last tokens of paths covering mask
        for v in range(n):
            ends[1 << v] |= 1 << v
        succ = [sum(1 << w for w in range(n) if self.U[w, v] and w != v) for v in range(n)]
        for mask in range(1, 1 << n):
            e = ends[mask]
            v = 0
            while e:
                if e & 1:
                    free = succ[v] & ~mask
                    while free:
                        w = (free & -free).bit_length() - 1
                        ends[mask | (1 << w)] |= 1 << w
                        free &= free - 1
                e >>= 1
                v += 1
        return ends[(1 << n) - 1] != 0


def _idx(x, n):
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < n


def _pos_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _members(ranges, n):
    if not isinstance(ranges, list):
        return None
    m = np.zeros(n, dtype=bool)
    for r in ranges:
        if not (isinstance(r, list) and len(r) == 2 and all(_pos_int(x) for x in r) and 0 <= r[0] <= r[1] <= n):
            return None
        m[r[0]:r[1]] = True
    return m


def _tree_depth(parent, root, n, edge):
    """Depths of a tree given by parent pointers (edge(parent, v) must hold), or None."""
    if not (isinstance(parent, list) and len(parent) == n and all(_pos_int(x) for x in parent)):
        return None
    if parent[root] != -1:
        return None
    depth = [None] * n
    depth[root] = 0
    for v in range(n):
        chain, x = [], v
        while depth[x] is None:
            if len(chain) > n or not (0 <= parent[x] < n) or not edge(parent[x], x):
                return None
            chain.append(x)
            x = parent[x]
        for y in reversed(chain):
            depth[y] = depth[parent[y]] + 1
    return depth


def _period(U, n, root):
    """gcd over edges u → v (v ∈ U_u) of d(u) + 1 − d(v), d the BFS depth from root."""
    d = [None] * n
    d[root], frontier = 0, [root]
    while frontier:
        nxt = []
        for u in frontier:
            for v in np.flatnonzero(U[u]).tolist():
                if d[v] is None:
                    d[v] = d[u] + 1
                    nxt.append(v)
        frontier = nxt
    if any(x is None for x in d):
        return None
    g = 0
    for u, v in zip(*np.nonzero(U)):
        g = gcd(g, abs(d[u] + 1 - d[v]))
    return g


def _missing_each_ok(D, pairs, count):
    return (isinstance(pairs, list) and len(pairs) == count
            and all(isinstance(q, list) and len(q) == 2 and all(_idx(x, D.n) for x in q) for q in pairs)
            and all(not D.S(t)[i, j] for t, (i, j) in enumerate(pairs, start=1)))


def depth_problem(D, claim):
    """Why the finite_depth claim or one of its pieces of evidence is false, or None."""
    n, p, truth = D.n, D.p, D.s()
    ev = claim.get("evidence") or {}
    holds = claim.get("holds")
    if holds is False:
        if truth is not None:
            return f"s = {truth}, not infinite"
        pair = claim.get("unreachable")
        if pair is not None and not (isinstance(pair, list) and len(pair) == 2 and all(_idx(x, n) for x in pair)
                                     and not any(D.S(t)[pair[0], pair[1]] for t in range(1, p * n + 2))):
            return "the unreachable pair is reached"
        if "closed" in ev:
            R = _members(ev["closed"], n)
            if R is None or pair is None or not R[pair[0]] or R[pair[1]] or D.U[R][:, ~R].any():
                return "the closed set is not closed or the pair does not leave it"
        if "empty_rows" in ev:
            rows = ev["empty_rows"]
            if not (isinstance(rows, list) and len(rows) == p and all(_idx(i, n) for i in rows)
                    and all(not D.M[k][i].any() for k, i in enumerate(rows))):
                return "empty_rows are not empty"
        if "empty_column" in ev and not (_idx(ev["empty_column"], n) and not D.M[0][:, ev["empty_column"]].any()):
            return "the empty column is attended"
        if "support_after" in ev:
            sa = ev["support_after"]
            m, j = (sa.get("steps"), sa.get("key")) if isinstance(sa, dict) else (None, None)
            if not (_pos_int(m) and m >= 2 and _idx(j, n) and _missing_each_ok(D, ev.get("missing_each"), m - 1)):
                return "support_after: malformed or a missing_each pair is reached"
            X = np.ones(n, dtype=bool)
            for t in range(m, 0, -1):
                X = D.M[(t - 1) % p][X].any(axis=0)
            if X[j]:
                return "support_after: the key is in R_m"
        if "periodic" in ev:
            per = ev["periodic"]
            root = per.get("root") if isinstance(per, dict) else None
            if not (p == 1 and _idx(root, n) and _tree_depth(per.get("out"), root, n, lambda a, b: D.U[a, b])
                    is not None and per.get("period") == _period(D.U, n, root) and per.get("period", 0) >= 2):
                return "periodic evidence is false"
        if "recursion_cycles" in ev:
            cyc = ev["recursion_cycles"]
            if not (isinstance(cyc, list) and len(cyc) == 2 and all(_pos_int(t) for t in cyc)
                    and 1 <= cyc[0] < cyc[1] and (cyc[1] - cyc[0]) % p == 0
                    and np.array_equal(D.S(cyc[0]), D.S(cyc[1]))):
                return "recursion_cycles is false"
        return None
    bounds, s = claim.get("s_bounds"), claim.get("s")
    if not (isinstance(bounds, list) and len(bounds) == 2 and _pos_int(bounds[0])
            and (bounds[1] is None or _pos_int(bounds[1]))):
        return "malformed bounds"
    lo, hi = bounds
    if holds is None:
        if hi is not None or s is not None or (truth is not None and truth < lo):
            return "an undecided claim with a false lower bound or an upper bound"
    elif holds is True:
        if truth is None or not (lo <= truth <= (hi if hi is not None else -1)):
            return f"s = {truth}, outside [{lo}, {hi}]"
        if s is not None and s != truth:
            return f"s = {truth}, not {s}"
        if s is None and lo == hi:
            pass  # bounds that meet without s: still true
    else:
        return "holds is not a boolean or null"
    # Evidence present must be true, whatever else proves the claim; together the upper
    # bounds it proves must reach hi.
    uppers = []
    if "missing_first" in ev:
        mf = ev["missing_first"]
        if not (isinstance(mf, list) and len(mf) == 2 and all(_idx(x, n) for x in mf) and not D.M[0][mf[0], mf[1]]):
            return "missing_first is attended"
    if "missing_before" in ev:
        mb = ev["missing_before"]
        if not (isinstance(mb, list) and len(mb) == 2 and all(_idx(x, n) for x in mb) and D.c1
                and lo >= 2 and not D.S(lo - 1)[mb[0], mb[1]]):
            return "missing_before is false"
    if "missing_each" in ev and not _missing_each_ok(D, ev["missing_each"], lo - 1):
        return "missing_each is false"
    for name in ("cover", "union_cover"):
        if name in ev:
            cv = ev[name]
            t, H = (cv.get("step"), cv.get("tokens")) if isinstance(cv, dict) else (None, None)
            if not (_pos_int(t) and t >= 2 and isinstance(H, list) and H and all(_idx(x, n) for x in H)):
                return f"malformed {name}"
            uppers.append(t)
            A, full = D.M[(t - 1) % p], D.S(t - 1).all(axis=1)
            if name == "cover":
                if not (A[:, H].any(axis=1).all() and full[H].all()):
                    return "the cover is false"
            else:
                reach = D.S(t - 1)[H]  # |H| × n
                if not all(reach[A[i, H]].any(axis=0).all() for i in range(n)):
                    return "the union cover is false"
    if "common_cover" in ev:  # (in the block of refute11's cases at the end)
        why = common_cover_problem(D, ev["common_cover"], uppers)
        if why:
            return why
    if "hub" in ev:
        hub = ev["hub"]
        t, b, a = (hub.get("token"), hub.get("row_step"), hub.get("column_step")) if isinstance(hub, dict) else (None,) * 3
        if not (_idx(t, n) and _pos_int(b) and _pos_int(a) and 1 <= b < a and ((b, a) == (1, 2) or D.c1)
                and D.M[(b - 1) % p][t].all() and D.M[(a - 1) % p][:, t].all()):
            return "the hub is false"
        uppers.append(a)
    if ev.get("chain") is True:
        i = np.arange(1, n)
        if not (D.c1 and D.U[i, i - 1].all() and D.U[i - 1, i].all()):
            return "the chain is false"
        uppers.append(p * max(n - 1, 1))
    if ev.get("full_first") is True and not D.M[0].all():
        return "layer 0 is not everything"
    if ev.get("intervals") is True:
        for m in D.M:
            for i in range(n):
                keys = np.flatnonzero(m[i])
                if not (keys.size and keys[-1] - keys[0] + 1 == keys.size and keys[0] <= i <= keys[-1]):
                    return "a row is not one interval holding its token"
            lows = [np.flatnonzero(m[i])[0] for i in range(n)]
            highs = [np.flatnonzero(m[i])[-1] for i in range(n)]
            if any(np.diff(lows) < 0) or any(np.diff(highs) < 0):
                return "the rows are not monotone"
    if "trees" in ev:
        tr = ev["trees"]
        root = tr.get("root") if isinstance(tr, dict) else None
        if not _idx(root, n):
            return "malformed trees"
        dout = _tree_depth(tr.get("out"), root, n, lambda a, b: D.U[a, b])
        din = _tree_depth(tr.get("in"), root, n, lambda a, b: D.U[b, a])
        if dout is None or din is None:
            return "a tree is not a tree of U"
        diameter = max(1, max(dout) + max(din))
        if D.c1:
            bound = p * diameter
        elif p == 1 and D.M[0][root, root]:
            bound = diameter
        elif p == 1 and ev.get("aperiodic") is True and _period(D.U, n, root) == 1:
            bound = (n - 1) ** 2 + 1
        else:
            return "the trees bound nothing here"
        uppers.append(bound)
    exact = ev.get("recursion") is True or ev.get("intervals") is True or ev.get("full_first") is True
    if hi is not None and not exact and (not uppers or min(uppers) > hi):
        return f"the evidence proves s ≤ {min(uppers) if uppers else None}, not ≤ {hi}"
    return None


def path_problem(D, claim):
    n = D.n
    holds = claim.get("holds")
    if holds is True:
        w = claim.get("witness")
        if w == "identity":
            g = list(range(n))
        elif w == "reversed":
            g = list(range(n - 1, -1, -1))
        elif isinstance(w, dict) and set(w) == {"runs"} and isinstance(w["runs"], list):
            try:
                g = [x for a, b, d in w["runs"] for x in range(a, b, d)]
            except (TypeError, ValueError):
                return "malformed runs"
        elif isinstance(w, list):
            g = w
        else:
            return "malformed witness"
        if sorted(g) != list(range(n)) or not all(D.U[g[t + 1], g[t]] for t in range(n - 1)):
            return "the witness is not a Hamiltonian path"
        return None
    if holds is None:
        return None
    if holds is not False:
        return "holds is not a boolean or null"
    ref = claim.get("refutation") if isinstance(claim.get("refutation"), dict) else {}
    kind = ref.get("kind")
    truth = D.has_path()
    if truth:
        return "a Hamiltonian path exists"
    off = D.U & ~np.eye(n, dtype=bool)
    if kind in ("two_start_sets", "two_end_sets"):
        sets = ref.get("sets")
        if not (isinstance(sets, list) and len(sets) == 2):
            return "malformed sets"
        X, Y = _members(sets[0], n), _members(sets[1], n)
        if X is None or Y is None or not X.any() or not Y.any() or (X & Y).any():
            return "the sets are empty or overlap"
        for Z in (X, Y):
            if kind == "two_start_sets" and off[Z][:, ~Z].any():
                return "a start set's row attends outside it"
            if kind == "two_end_sets" and off[~Z][:, Z].any():
                return "an end set is attended from outside"
        return None
    if kind in ("few_successors", "few_predecessors"):
        X, Y = _members(ref.get("tokens"), n), _members(ref.get("others"), n)
        if X is None or Y is None:
            return "malformed counting sets"
        if kind == "few_successors" and off[~Y][:, X].any():
            return "a row outside others attends a token"
        if kind == "few_predecessors" and off[X][:, ~Y].any():
            return "a token attends outside others"
        if not Y.sum() < X.sum() - 1:
            return "the counting does not refute"
        return None
    if kind == "exhaustive":
        return None if truth is False else "exhaustive above n = 12"
    if kind == "split":
        return split_problem(D, ref)  # (in the block of split cases at the end)
    return "unknown refutation"


def certificate_problem(compiled, cert):
    """Why some claim of ``cert`` is false, or None (the fields verify_report compares
    with the source — format, hash, shape, prob — are left to tests/test_verify.py)."""
    n, p = compiled.n, compiled.layers
    dense = [Dense(compiled, h) for h in range(compiled.heads)]
    if "counts" in cert:
        counts = cert["counts"]
        want_layer = [[int(D.M[k].sum()) for D in dense] for k in range(p)]
        if counts.get("per_layer") != want_layer or counts.get("union") != [int(D.U.sum()) for D in dense]:
            return "counts"
    ne = cert["nonempty_rows"]
    every = all(D.M[k].any(axis=1).all() for D in dense for k in range(p))
    if ne.get("holds") is True and not every:
        return "nonempty rows: an empty row exists"
    if ne.get("holds") is False:
        er = ne.get("empty_row")
        if not (isinstance(er, list) and len(er) == 3 and _idx(er[0], p) and _idx(er[1], len(dense))
                and _idx(er[2], n) and not dense[er[1]].M[er[0]][er[2]].any()):
            return "nonempty rows: the empty row is not empty"
    for ev in ne.get("evidence") or []:
        k, h = ev.get("layer"), ev.get("head")
        if not (_idx(k, p) and _idx(h, len(dense))):
            return "nonempty evidence: malformed"
        M = dense[h].M[k]
        if ev.get("holds") is True:
            keys = ev.get("keys")
            if keys == "diagonal" and not M.diagonal().all():
                return "nonempty evidence: the diagonal is not attended"
            if isinstance(keys, list) and not (len(keys) == n and all(_idx(x, n) for x in keys)
                                               and all(M[i, x] for i, x in enumerate(keys))):
                return "nonempty evidence: a key is not attended"
            if keys == "counts" and not M.any(axis=1).all():
                return "nonempty evidence: an empty row"
        elif ev.get("holds") is False and not (_idx(ev.get("empty_row"), n) and not M[ev["empty_row"]].any()):
            return "nonempty evidence: the row is not empty"
    for h, cond in enumerate(cert["conditions"]):
        D = dense[h]
        c1 = cond["self_loops"]
        if c1.get("holds") is True and not D.c1:
            return f"head {h}: C1 fails"
        if c1.get("holds") is False:
            m = c1.get("missing")
            if not (isinstance(m, list) and len(m) == 3 and _idx(m[0], p) and m[1] == h and _idx(m[2], n)
                    and not D.M[m[0]][m[2], m[2]]):
                return f"head {h}: the missing self-loop is there"
        why = path_problem(D, cond["hamiltonian_path"]) or depth_problem(D, cond["finite_depth"])
        if why:
            return f"head {h}: {why}"
    return None


# ---- corruptions -------------------------------------------------------------------------------


def _leaf_changes(value, n):
    """Replacement values for one leaf."""
    if isinstance(value, bool):
        return [not value, None]
    if isinstance(value, int):
        return sorted({value + 1, value - 1, 0, n - 1, n} - {value})
    if value is None:
        return [0, True]
    if isinstance(value, str):
        if value in KINDS_C2:
            return [k for k in KINDS_C2 if k != value]
        return [v for v in ("identity", "reversed", "diagonal", "counts") if v != value]
    return []


def _positions(length):
    return sorted({0, 1, length // 2, length - 2, length - 1} & set(range(length)))


def corruptions(cert):
    """(path, corrupted certificate): one leaf changed, one key deleted, or one list entry
    dropped or repeated, anywhere in nonempty_rows, counts and the conditions."""
    n = cert["n"]
    out = []

    def at(c, path):
        for key in path:
            c = c[key]
        return c

    def visit(path, value):
        if isinstance(value, dict):
            for key in value:
                visit(path + [key], value[key])
                c = copy.deepcopy(cert)
                del at(c, path)[key]
                out.append((path + [key, "deleted"], c))
            return
        if isinstance(value, list):
            for i in _positions(len(value)):
                visit(path + [i], value[i])
            if value:
                for change in ("dropped", "repeated"):
                    c = copy.deepcopy(cert)
                    target = at(c, path)
                    target.append(copy.deepcopy(target[-1])) if change == "repeated" else target.pop()
                    out.append((path + [change], c))
            return
        for new in _leaf_changes(value, n):
            c = copy.deepcopy(cert)
            at(c, path[:-1])[path[-1]] = new
            out.append((path + [repr(new)], c))

    for top in ("nonempty_rows", "counts", "conditions"):
        if top in cert:
            visit([top], cert[top])
    return out


def make_certificate(compiled, budget=2.0):
    results = check_conditions(compiled, budget_seconds=budget)
    return certificate(compiled, results, connection_counts(compiled))


def no_false_claim_accepted(compiled, cert, problem, corrupted):
    """How many corruptions of ``cert`` verify refuses, asserting that it accepts the
    analyzer's own and no corruption whose claims the oracle (``problem``: why a certificate
    is false, or None) finds false."""
    why = problem(cert)
    assert why is None, f"the oracle rejects the analyzer's own certificate: {why}"
    report = verify_report(compiled, cert)
    assert not report["failures"] and not report["unchecked"], report
    rejected = 0
    for path, bad in corrupted(cert):
        report = verify_report(compiled, bad)
        if report["failures"] or report["unchecked"]:
            rejected += 1
            continue
        why = problem(bad)
        assert why is None, f"verify accepted {path}: {why}"
    return rejected


def assert_no_false_claim_accepted(compiled, cert):
    return no_false_claim_accepted(compiled, cert, lambda c: certificate_problem(compiled, c), corruptions)


@pytest.fixture
def structural(monkeypatch):
    """The large-n decision path at small n (no dense masks, no dense search)."""
    monkeypatch.setattr(C, "DENSE_N", 0)
    monkeypatch.setattr(C, "SEARCH_N", 0)


# Patterns whose structural certificates carry every evidence kind of the large-n path.
EVIDENCE_CASES = [
    ("window(1)", 9),                                   # intervals
    ("window(1) | global(0)", 10),                      # hub, missing_first
    ("layers {\ncausal\n~causal | self\n}", 8),           # cover / union_cover, missing_before
    ("layers {\nwindow(2)\nstride(3)\n}", 12),
    ("~self", 7),                                       # no C1: trees, missing_each
    ("window(1, 0) - self | global(0) - self", 9),      # no C1, hub through token 0
    ("layers {\nglobal(0) - self\nwindow(1)\n}", 8),      # support / cover without C1
    ("layers {\ncols(0..3)\nall\n}", 8),                  # support_after: R_m misses keys
    ("layers {\ncols(0..3) | rows(0..3)\ncols(2..6)\n}", 9),
    ("causal - self", 6),                               # empty_rows / empty_column
    ("stride(2) - self", 8),                            # periodic
    ("window(1, 0) - self | window(0, 1) - self", 7),   # periodic (bipartite path)
    ("causal | global(3)", 11),
    ("chunk(3) | global(0)", 10),
    ("~causal | self", 7),
    ("window(2) & ~self | global(0..2)", 10),
    ("summary(4, 1) | window(1)", 12),
    ("layers {\nwindow(1)\nglobal(0)\n}", 9),
    ("rows(0..2) | cols(0..2) | self", 8),              # closed sets
    ("chunk(4)", 8),
    ("layers {\n~self - rows(0..1)\n~self - rows(1..2)\n}", 7),  # empty_rows; recursion_cycles densely
    ("layers {\nwindow(1) - self\ncols(0..2)\n}", 8),           # support_after with missing_each
    ("cols(2..8) | self", 8),                                       # two_end_sets
    ("cols(3..8) | self | rows(0..1)", 8),                          # few_successors; exhaustive densely
]


@pytest.mark.parametrize("source, n", EVIDENCE_CASES)
def test_structural_certificates_resist_corruption(structural, source, n):
    compiled = patterndsl.compile(source, n)
    assert assert_no_false_claim_accepted(compiled, make_certificate(compiled)) > 0


@pytest.mark.parametrize("source, n", EVIDENCE_CASES)
def test_dense_certificates_resist_corruption(source, n):
    compiled = patterndsl.compile(source, n)
    assert assert_no_false_claim_accepted(compiled, make_certificate(compiled)) > 0


def evidence_kinds(cert):
    kinds = set()
    for cond in cert["conditions"]:
        kinds |= set(cond["finite_depth"].get("evidence") or {})
        ref = cond["hamiltonian_path"].get("refutation")
        if isinstance(ref, dict):
            kinds.add(ref["kind"])
    return kinds


def test_the_cases_cover_every_evidence_kind(monkeypatch):
    """The corruption cases above reach every evidence kind verify dispatches on."""
    seen = set()
    for source, n in EVIDENCE_CASES:
        seen |= evidence_kinds(make_certificate(patterndsl.compile(source, n)))
    monkeypatch.setattr(C, "DENSE_N", 0)
    monkeypatch.setattr(C, "SEARCH_N", 0)
    for source, n in EVIDENCE_CASES:
        seen |= evidence_kinds(make_certificate(patterndsl.compile(source, n)))
    want = {"recursion", "recursion_cycles", "missing_before", "closed", "intervals", "hub", "missing_first",
            "cover", "union_cover", "support_after", "missing_each", "trees", "empty_rows", "empty_column",
            "periodic", "two_start_sets", "two_end_sets"}
    assert want <= seen, want - seen


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.files(), S.sizes(min_n=2, max_n=9), st.booleans())
def test_random_certificates_resist_corruption(source, n, large_path):
    compiled = patterndsl.compile(source, n)
    if large_path:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(C, "DENSE_N", 0)
            mp.setattr(C, "SEARCH_N", 0)
            cert = make_certificate(compiled)
    else:
        cert = make_certificate(compiled)
    assert_no_false_claim_accepted(compiled, cert)


def test_few_predecessors_counts_only_the_others():
    """A path 0 ← 1 ← … ← 4 (window(1, 0)): every token's keys lie among the tokens
    themselves, none in "others" — that refutes nothing (each predecessor is a token)."""
    compiled = patterndsl.compile("window(1, 0)", 5)
    cert = make_certificate(compiled)
    cert["conditions"][0]["hamiltonian_path"] = {
        "holds": False, "refutation": {"kind": "few_predecessors", "tokens": [[0, 5]], "others": []}}
    assert certificate_problem(compiled, cert) is not None
    assert verify_report(compiled, cert)["failures"]


def test_every_lower_bound_piece_is_checked():
    """missing_first and missing_before both present: a false missing_before is refused
    even though missing_first alone proves the claimed lo = 2."""
    compiled = patterndsl.compile("window(1) | global(0)", 10)
    cert = make_certificate(compiled)
    fd = cert["conditions"][0]["finite_depth"]
    assert fd["s_bounds"] == [2, 2]
    fd["evidence"]["missing_before"] = [0, 5]  # row 0 is full in layer 0: S^1_0 holds 5
    assert certificate_problem(compiled, cert) is not None
    assert verify_report(compiled, cert)["failures"]


# ---- refute11: the "split" refutation of C2, the "common_cover" bound of C3 -------------------


def split_problem(D, ref):
    """Why a "split" refutation is invalid, on the dense union, or None: K and |K| + 1 listed
    pieces, disjoint and non-empty, a non-empty further piece, and no edge of U between
    tokens outside K of different pieces."""
    n = D.n
    if set(ref) != {"kind", "removed", "pieces"} or not isinstance(ref.get("pieces"), list):
        return "malformed split"
    K = _members(ref["removed"], n)
    pieces = [_members(r, n) for r in ref["pieces"]]
    if K is None or any(x is None for x in pieces) or len(pieces) != K.sum() + 1:
        return "malformed split"
    label = np.where(K, -1, 0)
    for q, x in enumerate(pieces, start=1):
        if not x.any() or (label[x] != 0).any():
            return "a piece is empty or overlaps"
        label[x] = q
    if not (label == 0).any():
        return "no further piece"
    i, j = np.nonzero(D.U)
    cross = (label[i] >= 0) & (label[j] >= 0) & (label[i] != label[j])
    return "an edge joins two pieces" if cross.any() else None


SPLIT_CASES = [
    ("chunk(3) | global(n - 1..n)", 10),   # structural: split (dense: exhaustive at n ≤ 12)
    ("chunk(3) | global(n - 1..n)", 14),   # dense and structural: split
    ("chunk(4) | global(0..2)", 20),
    ("layers {\nchunk(2)\ncols(0) | rows(0)\n}", 13),
]


@pytest.mark.parametrize("source, n", SPLIT_CASES)
@pytest.mark.parametrize("large_path", [False, True])
def test_split_certificates_resist_corruption(monkeypatch, source, n, large_path):
    if large_path:
        monkeypatch.setattr(C, "DENSE_N", 0)
        monkeypatch.setattr(C, "SEARCH_N", 0)
    compiled = patterndsl.compile(source, n)
    cert = make_certificate(compiled)
    if large_path or n > 12:
        assert cert["conditions"][0]["hamiltonian_path"]["refutation"]["kind"] == "split"
    assert assert_no_false_claim_accepted(compiled, cert) > 0


def test_split_refuses_a_false_partition():
    """Hand-made splits of chunk(3) | global(n − 1..n) at n = 14 that are false: a piece cut
    across a chunk, the hub left in, one piece too few; and window(1) (which has a path)
    cut into singletons around one removed token."""
    compiled = patterndsl.compile("chunk(3) | global(n - 1..n)", 14)
    cert = make_certificate(compiled)
    good = cert["conditions"][0]["hamiltonian_path"]["refutation"]
    assert verify_report(compiled, cert)["failures"] == []
    bad = [
        {"kind": "split", "removed": [[13, 14]], "pieces": [[[0, 2]], [[3, 6]]]},   # 0..1 cut from 2
        {"kind": "split", "removed": [], "pieces": [[[0, 3]]]},                    # the hub joins all
        {"kind": "split", "removed": [[13, 14]], "pieces": [[[0, 3]]]},            # one piece too few
        {**good, "removed": [[12, 14]]},                                           # a piece overlaps K
    ]
    for ref in bad:
        c = copy.deepcopy(cert)
        c["conditions"][0]["hamiltonian_path"]["refutation"] = ref
        assert verify_report(compiled, c)["failures"], ref
    window = patterndsl.compile("window(1)", 6)
    c = make_certificate(window)
    c["conditions"][0]["hamiltonian_path"] = {
        "holds": False, "refutation": {"kind": "split", "removed": [[2, 3]], "pieces": [[[0, 1]], [[1, 2]]]}}
    assert verify_report(window, c)["failures"]


def common_cover_problem(D, cover, uppers):
    """Why a common_cover is false on the dense masks, or None (its step appended to uppers):
    every row of layer k(t) holds every token of C, and the rows S^{t−1}_c, c ∈ C, cover [n]."""
    p = D.p
    t = cover.get("step") if isinstance(cover, dict) else None
    C = _members(cover.get("tokens"), D.n) if isinstance(cover, dict) else None
    if not (_pos_int(t) and t >= 2 and C is not None and C.any() and set(cover) == {"step", "tokens"}):
        return "malformed common_cover"
    uppers.append(t)
    if not D.M[(t - 1) % p][:, C].all():
        return "a row misses a common_cover token"
    return None if D.S(t - 1)[C].any(axis=0).all() else "the common_cover tokens do not reach everything"


COMMON_CASES = [
    ("chunk(4) | summary(4, 1)", 12),
    ("blocks(2) { chunk(4) | summary(4, 1) }", 16),
    ("layers {\nchunk(4) | summary(4, 1)\nwindow(1)\n}", 12),
    ("chunk(3) - self | summary(3, 1)", 9),
]


@pytest.fixture
def cover_path(structural, monkeypatch):
    """The large-n path with the dominating-rows decider off: these one-layer patterns would
    get s from it (analysis/dominance.py) before the common-columns cover is tried."""
    monkeypatch.setattr(C, "dominated_depth", lambda *args: None)


@pytest.mark.parametrize("source, n", COMMON_CASES)
def test_common_cover_certificates_resist_corruption(cover_path, source, n):
    compiled = patterndsl.compile(source, n)
    cert = make_certificate(compiled)
    assert "common_cover" in cert["conditions"][0]["finite_depth"]["evidence"]
    assert assert_no_false_claim_accepted(compiled, cert) > 0


def test_common_cover_refuses_false_tokens(cover_path):
    """chunk(4) | summary(4, 1) at n = 12: a common_cover naming a token that some row does
    not attend, or tokens whose S^1 is not everything, is refused."""
    compiled = patterndsl.compile("chunk(4) | summary(4, 1)", 12)
    cert = make_certificate(compiled)
    fd = cert["conditions"][0]["finite_depth"]
    assert fd["evidence"]["common_cover"] == {"step": 2, "tokens": [[3, 4], [7, 8], [11, 12]]}
    for tokens in ([[2, 4], [7, 8], [11, 12]], [[3, 4], [7, 8]]):
        bad = copy.deepcopy(cert)
        bad["conditions"][0]["finite_depth"]["evidence"]["common_cover"]["tokens"] = tokens
        assert certificate_problem(compiled, bad) is not None
        assert verify_report(compiled, bad)["failures"], tokens


# ---- shared work (certseg11) ----------------------------------------------------------------------
# A corrupted certificate differs from the analyzer's in one field, so most of verify's claim
# checks repeat the original's: each check (`_Claims.run`) is a pure function of the compiled
# pattern, the budget and its arguments (it returns a text; only `run` records it), so its
# outcome is kept per (pattern, claim) and replayed — verify_report still sees every claim of
# every corrupted certificate, in order. The oracle's dense masks and powers S^t are built once
# per pattern and head. (Appended: this file is append-only; the functions above read the
# module's `Dense` at call time.)

import json  # noqa: E402

import patterndsl.verify as V  # noqa: E402

WORK = {"claim checks": 0, "claim checks run": 0, "oracles": 0}
_OUTCOMES: dict = {}
_ORACLES: dict = {}
_DenseOracle = Dense


def _shared_oracle(compiled, h):
    key = (id(compiled), h)
    if key not in _ORACLES:
        WORK["oracles"] += 1
        _ORACLES[key] = (compiled, _DenseOracle(compiled, h))  # the compiled kept: its id stays its own
    return _ORACLES[key][1]


Dense = _shared_oracle  # noqa: F811 (certificate_problem reads it)


def _claim_key(ch, name, check, args):
    if not args or args[0] is not ch:
        return None  # a closure (nonempty_rows' empty row): cheap, run as is
    try:
        text = json.dumps(args[1:], sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return (id(ch.c), ch.budget, name, check.__module__, check.__qualname__, text)


def _replaying_run(self, name, check, *args):
    WORK["claim checks"] += 1
    key = _claim_key(self, name, check, args)
    if key is None or key not in _OUTCOMES:
        WORK["claim checks run"] += 1
        failures, unchecked = len(self.failures), len(self.unchecked)
        _ORIGINAL_RUN(self, name, check, *args)
        if key is not None:
            _OUTCOMES[key] = (self.c, self.failures[failures:], self.unchecked[unchecked:])
        return
    _, failed, skipped = _OUTCOMES[key]
    self.failures.extend(failed)
    self.unchecked.extend(skipped)


_ORIGINAL_RUN = V._Claims.run


@pytest.fixture(autouse=True, scope="module")
def _share_work():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(V._Claims, "run", _replaying_run)
        yield
    _OUTCOMES.clear()
    _ORACLES.clear()


# ---- claims for every segmentation (certseg11) ----------------------------------------------------
# `check` on a pattern reading segment ids adds `segments.every_segmentation`: per head, C1 for
# every segmentation and C2/C3 within every packed document (patterndsl/analysis/
# segment_conditions.py). The oracle here evaluates the dense reference under EVERY
# segmentation of n ≤ 7 positions into packed documents (the 2^(n−1) compositions, ids
# 0, 0, 1, 1, 1, 2, …) and judges each claim on every document of each: a Hamiltonian path by
# Held–Karp, s by iterating S^t in the document (Dense above, on the document's block). The
# `ranks`, `why` and `reason` fields are explanations, not claims.

from patterndsl import segments as SEG  # noqa: E402
from patterndsl.analysis.check import check  # noqa: E402
from patterndsl.reference import dense_mask  # noqa: E402


class _Block(_DenseOracle):
    """Dense's S^t, s and Held–Karp on one document's blocks (one per layer)."""

    def __init__(self, masks):
        self.n, self.p, self.M = masks[0].shape[0], len(masks), masks
        self.U = np.logical_or.reduce(masks)
        self.c1 = all(m.diagonal().all() for m in masks)
        self._S = [None, masks[0].copy()]


class EverySegmentation:
    """Per head: every (segmentation, document) of n positions with the document's blocks."""

    def __init__(self, compiled):
        n, p = compiled.n, compiled.layers
        self.n = n
        self.diagonals = []  # (ranks, [layer][head] diagonal) per segmentation
        self.documents = [dict() for _ in range(compiled.heads)]  # h -> {(a, L): [_Block per segmentation]}
        for cuts in range(1 << (n - 1)):
            ids = np.cumsum([0] + [(cuts >> b) & 1 for b in range(n - 1)])
            with SEG.using(ids):
                masks = [[dense_mask(compiled.patterns[k][h], n) for h in range(compiled.heads)] for k in range(p)]
            ranks = SEG.ranks(ids)
            self.diagonals.append((ranks, [[m.diagonal().copy() for m in row] for row in masks]))
            starts = [0] + [b + 1 for b in range(n - 1) if (cuts >> b) & 1] + [n]
            for a, b in zip(starts, starts[1:]):
                for h in range(compiled.heads):
                    self.documents[h].setdefault((a, b - a), []).append(
                        _Block([masks[k][h][a:b, a:b] for k in range(p)]))
        one = [[dense_mask(compiled.patterns[k][h], n) for h in range(compiled.heads)] for k in range(p)]
        self.one_document = [[one[k][h] for k in range(p)] for h in range(compiled.heads)]

    def blocks(self, h):
        return [(doc, block) for doc, blocks in self.documents[h].items() for block in blocks]


def _self_loops_problem(E, h, claim):
    holds = claim.get("holds")
    every = all(d[k][h].all() for _, d in E.diagonals for k in range(len(d)))
    if holds is True:
        return None if every else "C1 fails for some segmentation"
    if holds is False:
        m = claim.get("missing")
        if not (isinstance(m, list) and len(m) == 3 and all(_pos_int(x) for x in m)):
            return "malformed missing"
        k, i, r = m
        if not any(0 <= k < len(d) and 0 <= i < E.n and ranks[i] == r and not d[k][h][i]
                   for ranks, d in E.diagonals):
            return f"no segmentation gives position {i} rank {r} without its self-loop in layer {k}"
    return None


def _doc_ok(doc, n):
    return isinstance(doc, list) and len(doc) == 2 and all(_pos_int(x) for x in doc) and doc[1] >= 1 \
        and doc[0] >= 0 and doc[0] + doc[1] <= n


def _order_problem(E, h, claim):
    holds = claim.get("holds")
    blocks = E.blocks(h)
    if holds is True:
        w = claim.get("witness")
        if w not in ("identity", "reversed"):
            return "malformed witness"
        for (a, length), B in blocks:
            x = np.arange(1, length)
            if not (B.U[x, x - 1] if w == "identity" else B.U[x - 1, x]).all():
                return f"the {w} order fails in the document [{a}, {a + length})"
        return None
    if holds is False:
        doc = claim.get("document")
        if not (_doc_ok(doc, E.n) and any(not B.has_path() for B in E.documents[h][tuple(doc)])):
            return f"the document {doc} has a Hamiltonian path in every segmentation"
    return None


def _strongly_connected(U):
    def reach(M):
        seen = np.zeros(M.shape[0], dtype=bool)
        seen[0] = True
        for _ in range(M.shape[0]):
            seen = seen | M[seen].any(axis=0)
        return seen.all()
    return reach(U) and reach(U.T)


def _segment_depth_problem(E, h, claim):
    holds = claim.get("holds")
    blocks = E.blocks(h)
    depths = [B.s() for _, B in blocks]
    if holds is False:
        doc, pair = claim.get("document"), claim.get("unreachable")
        if not (_doc_ok(doc, E.n) and isinstance(pair, list) and len(pair) == 2
                and all(_pos_int(x) and doc[0] <= x < doc[0] + doc[1] for x in pair)):
            return "malformed document or pair"
        a = doc[0]
        for B in E.documents[h][tuple(doc)]:
            U, seen = B.U, np.zeros(B.n, dtype=bool)
            seen[pair[0] - a] = True
            for _ in range(B.n):
                seen = seen | U[seen].any(axis=0)
            if not seen[pair[1] - a]:
                return None
        return f"query {pair[0]} reaches token {pair[1]} in the document {doc}"
    if holds is not True:
        return None
    if any(d is None for d in depths):
        return "some document has infinite depth"
    s = claim.get("s")
    if s is not None and s != max(depths):
        return f"the worst document has s = {max(depths)}, not {s}"
    ev = claim.get("evidence")
    if ev is None:
        return None
    if not isinstance(ev, dict):
        return "malformed evidence"
    if "chain" in ev:
        for (a, length), B in blocks:
            x = np.arange(1, length)
            if not (B.c1 and B.U[x, x - 1].all() and B.U[x - 1, x].all()):
                return f"no chain with self-loops in the document [{a}, {a + length})"
    if ev.get("prefixes"):
        one = E.one_document[h]
        for (a, length), B in blocks:
            if not (B.c1 and all(np.array_equal(m, o[:length, :length]) for m, o in zip(B.M, one))
                    and _strongly_connected(B.U)):
                return f"the document [{a}, {a + length}) is not a strongly connected prefix with self-loops"
    return None


def segment_problem(E, claims):
    """Why some claim for every segmentation is false, or None."""
    for c in claims["every_segmentation"]:
        h = c["head"]
        for name, judge in (("self_loops", _self_loops_problem), ("hamiltonian_path", _order_problem),
                            ("finite_depth", _segment_depth_problem)):
            claim = c.get(name)
            why = judge(E, h, claim) if isinstance(claim, dict) else None
            if why:
                return f"head {h}: {name}: {why}"
    return None


def segment_corruptions(cert):
    """corruptions() of the `segments` part (it visits the claims under a top key it knows)."""
    for path, bad in corruptions({"n": cert["n"], "conditions": cert["segments"]}):
        changed = dict(cert)
        changed["segments"] = bad["conditions"]
        yield ["segments"] + path[1:], changed


def assert_no_false_segment_claim_accepted(compiled, cert):
    E = EverySegmentation(compiled)
    return no_false_claim_accepted(compiled, cert, lambda c: segment_problem(E, c["segments"]), segment_corruptions)


SEGMENT_CASES = [
    ("segment & causal", 6),                                              # identity; C3 fails in [x − 1, x + 1)
    ("segment & (causal | window(-2, 2))", 6),
    ("segment & window(1)", 6),                                           # chain, worst s
    ("segment & (causal | window(-2, 2) | segment_start(2))", 7),         # prefixes
    ("segment & (causal | segment_start(2))", 6),                         # a prefix that is not connected
    ("segment & self", 5),                                                # no path in [x − 1, x + 1)
    ("segment & (~causal | self)", 5),                                    # reversed
    ("segment & (window(1) - segment_start(1))", 5),                      # C1 fails at rank 0
    ("segment & (window(1) | segment_start(2))", 6),                      # chain, rows not intervals
    ("segment & (causal | window(-2, 2) | segment_start(2) | rows(0))", 6),  # every document (brute force)
    ("segment & (window(1, 0) | segment_start(3) | window(-3, 3))", 7),
    ("layers {\nsegment & causal\nsegment & (~causal | self)\n}", 6),      # two layers: chain, s = 2
    ("causal | segment_start(1)", 5),                                     # pairs across segments
    ("heads {\n0: segment & window(1)\n1: segment & (causal | segment_start(2))\n}", 5),
]


@pytest.mark.parametrize("source, n", SEGMENT_CASES)
def test_segment_certificates_resist_corruption(source, n):
    compiled = patterndsl.compile(source, n)
    cert = check(compiled, budget_seconds=2.0)[1]
    assert assert_no_false_claim_accepted(compiled, cert) > 0
    assert assert_no_false_segment_claim_accepted(compiled, cert) > 0


def test_segment_claims_resist_transplants():
    """Each claim of every segment certificate above put in place of the same claim of every
    other (one field cannot turn a refutation into `prefixes` evidence or a worst s, a claim
    from another pattern can): verify accepts none that the oracle finds false."""
    certs = []
    for source, n in SEGMENT_CASES:
        compiled = patterndsl.compile(source, n)
        certs.append((compiled, check(compiled, budget_seconds=2.0)[1]))
    pool = {name: {json.dumps(c[name], sort_keys=True) for _, cert in certs
                   for c in cert["segments"]["every_segmentation"]}
            for name in ("self_loops", "hamiltonian_path", "finite_depth")}
    judged = rejected = 0
    for compiled, cert in certs:
        E = EverySegmentation(compiled)
        for h in range(compiled.heads):
            for name, texts in pool.items():
                for text in sorted(texts):
                    bad = copy.deepcopy(cert)
                    bad["segments"]["every_segmentation"][h][name] = json.loads(text)
                    report = verify_report(compiled, bad)
                    judged += 1
                    if report["failures"] or report["unchecked"]:
                        rejected += 1
                        continue
                    why = segment_problem(E, bad["segments"])
                    assert why is None, f"verify accepted {compiled.source}: head {h}: {name} = {text}: {why}"
    assert 0 < rejected < judged


def test_segment_evidence_beside_the_chain_is_checked():
    """`prefixes` added beside a true chain is re-checked too: cols(2) is not a function of
    j − i, so the documents are not prefixes of one pattern (the oracle agrees)."""
    compiled = patterndsl.compile("segment & (window(1) | cols(2))", 6)
    cert = check(compiled, budget_seconds=2.0)[1]
    depth = cert["segments"]["every_segmentation"][0]["finite_depth"]
    assert "chain" in depth["evidence"]
    depth["evidence"]["prefixes"] = True
    assert segment_problem(EverySegmentation(compiled), cert["segments"]) is not None
    assert verify_report(compiled, cert)["failures"]


@pytest.mark.parametrize("holds", ["deleted", 0, 1, "true"])
def test_segment_claim_without_a_boolean_verdict_is_malformed(holds):
    compiled = patterndsl.compile("segment & causal", 5)
    cert = check(compiled, budget_seconds=2.0)[1]
    claim = cert["segments"]["every_segmentation"][0]["hamiltonian_path"]
    if holds == "deleted":
        del claim["holds"]
    else:
        claim["holds"] = holds
    assert any("missing or malformed" in f for f in verify_report(compiled, cert)["failures"])


# ---- `dominated` evidence (analysis/dominance.py; certseg11) -------------------------------------
# One layer with C1: every row contains the row of some r in R, and out-trees of U rooted at
# the r bound s by their deepest depth. Judged densely here, then the rest of the claim by
# depth_problem above with the upper bound marked as proved.

_depth_problem_before = depth_problem


def _dominated_bound(D, dom):
    R, out = (dom.get("rows"), dom.get("out")) if isinstance(dom, dict) else (None, None)
    if not (isinstance(R, list) and R and all(_idx(r, D.n) for r in R) and isinstance(out, list)
            and len(out) == len(R) and D.p == 1 and D.c1):
        return "malformed dominated evidence, or not one layer with C1"
    A = D.M[0]
    if not all(any((A[i] >= A[r]).all() for r in R) for i in range(D.n)):
        return "a row contains the row of no r in R"
    depths = [_tree_depth(parent, r, D.n, lambda a, b: D.U[a, b]) for r, parent in zip(R, out)]
    if any(d is None for d in depths):
        return "an out-tree is not a tree of U"
    return max(1, max(max(d) for d in depths))


def depth_problem(D, claim):  # noqa: F811 (certificate_problem reads it)
    ev = claim.get("evidence")
    if not (isinstance(ev, dict) and "dominated" in ev):
        return _depth_problem_before(D, claim)
    bound = _dominated_bound(D, ev["dominated"])
    if isinstance(bound, str):
        return bound
    hi = (claim.get("s_bounds") or [None, None])[-1] if isinstance(claim.get("s_bounds"), list) else None
    if claim.get("holds") is True and _pos_int(hi) and bound > hi:
        return f"the dominated rows prove s ≤ {bound}, not ≤ {hi}"
    rest = dict(claim, evidence={**{k: v for k, v in ev.items() if k != "dominated"}, "recursion": True})
    return _depth_problem_before(D, rest)


DOMINATED_CASES = [
    ("causal | window(-2, 2) | cols(0..2)", 9),  # the one-document rows of segment & (… | segment_start(2))
    ("causal | window(-3, 3) | cols(0..1)", 10),
    ("causal | stride(3) | self", 9),
]


@pytest.mark.parametrize("source, n", DOMINATED_CASES)
def test_dominated_certificates_resist_corruption(structural, source, n):
    compiled = patterndsl.compile(source, n)
    cert = make_certificate(compiled)
    assert "dominated" in cert["conditions"][0]["finite_depth"]["evidence"]
    assert cert["conditions"][0]["finite_depth"]["s"] == _DenseOracle(compiled, 0).s()
    assert assert_no_false_claim_accepted(compiled, cert) > 0


_CAUSAL_PARTS = st.sampled_from(["self", "window(1, 0)", "window(-2, 2)", "window(-3, 3)", "cols(0..2)",
                                 "cols(0..1)", "stride(3)", "global(0)", "rows(0..2)", "window(0, 2)"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_CAUSAL_PARTS, min_size=1, max_size=4, unique=True), st.integers(2, 24))
def test_dominated_depth_is_the_dense_depth(parts, n):
    """Wherever the structural path claims s from dominating rows, it is the dense s (causal
    in every pattern: its rows [0, i] make rows contain others)."""
    compiled = patterndsl.compile(" | ".join(["causal"] + parts), n)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "DENSE_N", 0)
        mp.setattr(C, "SEARCH_N", 0)
        cert = make_certificate(compiled)
    depth = cert["conditions"][0]["finite_depth"]
    if "dominated" in (depth.get("evidence") or {}):
        assert depth["s"] == _DenseOracle(compiled, 0).s()
        assert certificate_problem(compiled, cert) is None
        assert verify_report(compiled, cert) == {"failures": [], "unchecked": []}


_SEGMENT_LEAVES = st.one_of(S.token_free_sources(), st.builds(lambda k: f"segment_start({k})", st.integers(0, 4)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(max_depth=2, leaves=_SEGMENT_LEAVES), st.integers(2, 6), st.booleans())
def test_random_segment_certificates_resist_corruption(inner, n, within):
    """`segment & (…)` (pairs within documents) or the bare pattern, over random leaves and
    `segment_start(k)`: every claim for every segmentation true, none corrupted accepted."""
    source = f"segment & ({inner})" if within else inner
    compiled = patterndsl.compile(source, n)
    if not compiled.uses_segments:
        return
    assert_no_false_segment_claim_accepted(compiled, check(compiled, budget_seconds=2.0)[1])


# ---- exact s on dense masks above DENSE_N (structural_deciders.dense_depth) ----------------
# Its claims are s = t with a union cover at step t (often over every token) and a missing
# pair per step before it (no C1) or the last one (C1): each corrupted alone is refused.

DENSE_DEPTH_CASES = [("random(12, seed=5)", 2049), ("random(4, seed=9) | self | window(1)", 2100)]


def _dense_push(M, i, t):
    x = np.zeros(M.shape[0], dtype=bool)
    x[i] = True
    for _ in range(t):
        x = M[x].any(axis=0)
    return x


@pytest.fixture(scope="module", params=DENSE_DEPTH_CASES, ids=[s for s, _ in DENSE_DEPTH_CASES])
def dense_depth_cert(request):
    source, n = request.param
    compiled = patterndsl.compile(source, n)
    cert = certificate(compiled, check_conditions(compiled, budget_seconds=2))
    fd = cert["conditions"][0]["finite_depth"]
    assert "union_cover" in fd["evidence"] and fd["s"] is not None and fd["s"] >= 3
    assert verify_report(compiled, cert) == {"failures": [], "unchecked": []}
    return compiled, cert


def _dense_depth_corruptions(compiled, fd):
    """(name, corrupted finite_depth claim) for each field of a dense_depth claim."""
    s, ev, M = fd["s"], fd["evidence"], compiled.dense(0, 0)
    tokens = ev["union_cover"]["tokens"]
    out = []
    lower = copy.deepcopy(fd)  # s − 1 with a cover at step s − 1
    lower["s"], lower["s_bounds"] = s - 1, [s - 1, s - 1]
    lower["evidence"]["union_cover"]["step"] = s - 1
    if "missing_each" in ev:
        lower["evidence"]["missing_each"] = ev["missing_each"][:-1]
    else:
        i, _ = ev["missing_before"]
        lower["evidence"]["missing_before"] = [i, int(np.flatnonzero(~_dense_push(M, i, s - 2))[0])]
    out.append(("s - 1", lower))
    higher = copy.deepcopy(fd)  # s + 1 with one more (false) missing pair
    higher["s"], higher["s_bounds"] = s + 1, [s + 1, s + 1]
    higher["evidence"]["union_cover"]["step"] = s + 1
    if "missing_each" in ev:
        higher["evidence"]["missing_each"] = ev["missing_each"] + [[0, 0]]
    else:
        higher["evidence"]["missing_before"] = [0, 1]
    out.append(("s + 1", higher))
    for name, H in (("one token", tokens[:1]), ("half the tokens", tokens[::2]), ("duplicate", tokens + tokens[:1]),
                    ("out of range", tokens[:-1] + [compiled.n])):
        bad = copy.deepcopy(fd)
        bad["evidence"]["union_cover"]["tokens"] = H
        out.append((name, bad))
    pairs = ev.get("missing_each") or [ev["missing_before"]]
    for t, (i, _) in enumerate(pairs, start=1 if "missing_each" in ev else s - 1):
        bad = copy.deepcopy(fd)
        inside = [i, int(np.flatnonzero(_dense_push(M, i, t))[0])]  # a pair S^t holds
        if "missing_each" in ev:
            bad["evidence"]["missing_each"][t - 1] = inside
        else:
            bad["evidence"]["missing_before"] = inside
        out.append((f"pair at step {t}", bad))
    return out


def test_dense_depth_certificates_resist_corruption(dense_depth_cert):
    compiled, cert = dense_depth_cert
    fd = cert["conditions"][0]["finite_depth"]
    cases = _dense_depth_corruptions(compiled, fd)
    assert len(cases) >= 7
    for name, claim in cases:
        bad = copy.deepcopy(cert)
        bad["conditions"][0]["finite_depth"] = claim
        report = verify_report(compiled, bad)
        assert report["failures"] or report["unchecked"], name
        assert report["failures"], (name, report)


# ---- hard11: full_rows and binary_cycle (analysis/layered_deciders.py) -------------------------

from patterndsl.analysis.layered_deciders import binary_depth  # noqa: E402

_depth_problem_before_binary = depth_problem


def depth_problem(D, claim):  # noqa: F811 (certificate_problem reads it)
    """full_rows {"step": t}: S^t = J on the dense masks; binary_cycle: s infinite, and its
    missing_each pairs missing. The rest of the claim as before (with the upper bound from
    the recursion)."""
    ev = claim.get("evidence")
    if not (isinstance(ev, dict) and ("full_rows" in ev or "binary_cycle" in ev)):
        return _depth_problem_before_binary(D, claim)
    if "binary_cycle" in ev:
        if claim.get("holds") is not False or D.s() is not None:
            return "binary_cycle: s is finite"
        cyc = ev["binary_cycle"]
        if not (isinstance(cyc, list) and len(cyc) == 2 and all(_pos_int(t) for t in cyc) and cyc[0] < cyc[1]):
            return "malformed binary_cycle"
        if "missing_each" in ev and not _missing_each_ok(D, ev["missing_each"], cyc[0] - 1):
            return "a missing_each pair is reached"
        return None
    full = ev["full_rows"]
    t = full.get("step") if isinstance(full, dict) else None
    if not (_pos_int(t) and D.S(t).all()):
        return "full_rows: S^t is not everything"
    hi = (claim.get("s_bounds") or [None, None])[-1] if isinstance(claim.get("s_bounds"), list) else None
    if claim.get("holds") is True and _pos_int(hi) and t > hi:
        return f"full_rows proves s ≤ {t}, not ≤ {hi}"
    rest = dict(claim, evidence={**{k: v for k, v in ev.items() if k != "full_rows"}, "recursion": True})
    return _depth_problem_before_binary(D, rest)


BINARY_CASES = [
    ("layers {\n~(rows(2..4) & random(n - 1, seed=16))\n~rows(5..7)\n}", 12),  # binary_cycle
    ("layers {\n~(rows(2..4) & random(n - 1, seed=16))\nself\n}", 12),         # full_rows, s = 5
    ("layers {\n~(rows(1..3) & ~cols(1..3))\n~rows(1..2)\n}", 12),              # full_rows, s = 3
    ("layers {\n~(rows(2..4) & random(n - 1, seed=3))\ncausal\n}", 10),           # full_rows, s = 2
    ("layers {\n~(rows(1..4) & random(n - 1, seed=7))\n~global(5..7)\n}", 10),     # binary_cycle
]


@pytest.mark.parametrize("source, n", BINARY_CASES)
def test_binary_certificates_resist_corruption(structural, source, n):
    """The analyzer's certificate with head 0's finite_depth claim replaced by the
    full/empty-rows argument: the dense truth agrees, and no single corruption is accepted."""
    compiled = patterndsl.compile(source, n)
    cert = make_certificate(compiled)
    claim = binary_depth([compiled.patterns[k][0] for k in range(compiled.layers)], n)
    assert claim is not None
    truth = Dense(compiled, 0).s()
    assert (truth is None) if claim["holds"] is False else claim["s"] == truth
    cert["conditions"][0]["finite_depth"] = claim
    assert assert_no_false_claim_accepted(compiled, cert) > 0


# ---- exact20: "distances" (one layer, C1: s = U's largest distance, a BFS out of every token) ----

from patterndsl.analysis.structural_deciders import distance_depth  # noqa: E402


def _distances_problem(compiled, cert):
    """The oracle with "distances" read as exact evidence: one layer, C1, and s (both
    bounds) the dense truth; the rest of the certificate as certificate_problem reads it."""
    claim = cert["conditions"][0]["finite_depth"] if isinstance(cert.get("conditions"), list) else None
    ev = claim.get("evidence") if isinstance(claim, dict) else None
    if not (isinstance(ev, dict) and "distances" in ev):
        return certificate_problem(compiled, cert)
    D = Dense(compiled, 0)
    if ev["distances"] is not True or D.p != 1 or not D.c1:
        return "distances evidence is false here"
    truth = D.s()
    if claim.get("holds") is not True or truth is None or claim.get("s_bounds") != [truth, truth]:
        return f"s = {truth}, not {claim.get('s_bounds')}"
    rest = copy.deepcopy(cert)
    rest["conditions"][0]["finite_depth"] = dict(claim, evidence={**{k: v for k, v in ev.items() if k != "distances"},
                                                                   "recursion": True})
    return certificate_problem(compiled, rest)


DISTANCE_CASES = [
    ("(dilated(2, 3) - ~causal) | (cols(n - 1) & stride(2)) | window(1, 2)", 23),
    ("window(1, 3)", 17),
    ("logsparse | window(0, 1)", 30),
    ("window(2, 0) | cols(n - 1) | self", 19),
]


@pytest.mark.parametrize("source, n", DISTANCE_CASES)
def test_distance_certificates_resist_corruption(source, n):
    compiled = patterndsl.compile(source, n)
    cert = make_certificate(compiled)
    claim = distance_depth(compiled.patterns[0][0], n, {"holds": True, "s": None, "s_bounds": [1, None]})
    assert claim.get("evidence") == {"distances": True} and claim["s"] == Dense(compiled, 0).s()
    cert["conditions"][0]["finite_depth"] = claim
    assert no_false_claim_accepted(compiled, cert, lambda c: _distances_problem(compiled, c), corruptions) > 0


def test_distances_evidence_needs_one_layer_with_self_loops():
    for source, n in (("layers {\nwindow(1)\nwindow(2)\n}", 12), ("window(1) - self | rows(0..2)", 12)):
        compiled = patterndsl.compile(source, n)
        cert = make_certificate(compiled)
        cert["conditions"][0]["finite_depth"] = {"holds": True, "s": 6, "s_bounds": [6, 6],
                                                 "evidence": {"distances": True}}
        assert verify_report(compiled, cert)["failures"]
