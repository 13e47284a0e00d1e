"""An independent, deliberately simple checker for condition certificates.

It shares no code with patterndsl.analysis: it compiles the source, and tests pairs
with the primitives' element predicates (``Primitive.pairs``, i.e. ``predicate`` at
single pairs) and whole rows with the dense reference (``reference.evaluate``).

Certificate schema (``patterndsl.analysis.conditions.certificate``), JSON:

    {"format": "patterndsl-certificate/1", "source_sha256": hex or null,
     "n": int, "layers": p, "heads": H,
     "prob": {"name": "softmax" | "sparsemax", "assumption2": bool},
     "nonempty_rows": {"holds": bool | null, "empty_row": [layer, head, i] | null,
                       "evidence": [{"layer", "head", "holds",
                                     "keys": "diagonal" | [key of row i, for every i] | "counts",
                                     "empty_row": i (when holds is false)}]},
     "conditions": [{"head": h,
        "self_loops": {"holds": true} | {"holds": false, "missing": [layer, head, i]},
        "hamiltonian_path":
            {"holds": true, "witness": "identity" | "reversed" | [γ(0), …, γ(n−1)]}
          | {"holds": false, "refutation": {"kind": "two_start_sets" | "two_end_sets",
                                            "sets": [ranges, ranges]} | {"kind": "exhaustive"}}
          | {"holds": null, "reason": str},
        "finite_depth":
            {"holds": false, "unreachable": [i, j], "evidence": {"closed": ranges}}
          | {"holds": false, "evidence": {"recursion_cycles": true}}
          | {"holds": true, "s": int | null, "s_bounds": [lo, hi | null],
             "evidence": {"hub": {"token", "row_step", "column_step"}, "chain": true,
                          "recursion": true, "missing_first": [i, j], "missing_before": [i, j]}}
          | {"holds": null, ...}}],
     "counts": optional {"per_layer", "union"}}

``ranges`` are lists of half-open [lo, hi). What each piece of evidence proves:
  * two_start_sets: two disjoint sets whose rows attend only inside themselves (in every
    layer): each must contain γ(0), so no Hamiltonian path. two_end_sets: two disjoint sets
    no outside row attends into: each must contain γ(n − 1).
  * closed: a set R whose rows attend only inside R, i ∈ R, j ∉ R: j ∉ S^t_i for all t.
  * hub: row h full in layer (row_step − 1) mod p, column h full in layer
    (column_step − 1) mod p, row_step < column_step: S^{column_step} = J when
    (row_step, column_step) = (1, 2), or given C1 (which is then checked). So s ≤ column_step.
  * chain: U holds (i, i−1) and (i, i+1) for all i, and C1: s ≤ p(n − 1).
  * missing_first: j ∉ A^0_i, so s ≥ 2. missing_before: j ∉ S^{s−1}_i (recomputed for row i
    alone, by propagating the set {i} through layers k(s−1), …, k(1)), so s ≥ lo.
  * recursion: S^s = J recomputed densely (small n only).
Checks whose cost would exceed ``max_work`` predicate evaluations are listed as unchecked
by ``verify_report`` (not failures); ``verify_certificate`` returns the failures only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .ir import Complement, Difference, Intersection, Union
from .primitives import Primitive
from .reference import evaluate

ASSUMPTION2 = {"softmax": True, "sparsemax": True}


def _pairs(node, i, j, n):
    if isinstance(node, Primitive):
        return node.pairs(i, j, n)
    if isinstance(node, Union):
        out = _pairs(node.parts[0], i, j, n)
        for part in node.parts[1:]:
            out = out | _pairs(part, i, j, n)
        return out
    if isinstance(node, Intersection):
        out = _pairs(node.parts[0], i, j, n)
        for part in node.parts[1:]:
            out = out & _pairs(part, i, j, n)
        return out
    if isinstance(node, Difference):
        return _pairs(node.left, i, j, n) & ~_pairs(node.right, i, j, n)
    if isinstance(node, Complement):
        return ~_pairs(node.operand, i, j, n)
    return node.pairs(i, j, n)  # any other node (blocks { }) answers for itself


def _has(pattern, i, j, n):
    return _pairs(pattern, np.asarray(i, dtype=np.int64).reshape(-1), np.asarray(j, dtype=np.int64).reshape(-1), n)


def _rows(pattern, rows, n):
    out = []
    rows = np.asarray(rows, dtype=np.int64)
    step = max(1, (1 << 22) // max(1, n))
    for s in range(0, rows.size, step):
        out.append(evaluate(pattern, rows[s:s + step], n))
    return np.concatenate(out) if out else np.zeros((0, n), dtype=bool)


def _members(ranges, n):
    out = np.zeros(n, dtype=bool)
    for lo, hi in ranges:
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= n):
            raise ValueError(f"bad range {[lo, hi]}")
        out[lo:hi] = True
    return out


class _Checker:
    def __init__(self, compiled, max_work):
        self.c = compiled
        self.n = compiled.n
        self.max_work = max_work
        self.failures: list[str] = []
        self.unchecked: list[str] = []

    def fail(self, claim, why):
        self.failures.append(f"{claim}: {why}")

    def affordable(self, claim, work):
        if work > self.max_work:
            self.unchecked.append(f"{claim}: needs about {work} evaluations")
            return False
        return True

    def layer(self, k, h):
        return self.c.patterns[k][h]

    def diagonal_ok(self, k, h):
        idx = np.arange(self.n)
        return bool(_has(self.layer(k, h), idx, idx, self.n).all())

    def union_pairs(self, h, i, j):
        out = np.zeros(len(i), dtype=bool)
        for k in range(self.c.layers):
            out |= _has(self.layer(k, h), i, j, self.n)
        return out


def _index(x, n):
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < n


def _check_nonempty(ch: _Checker, cert):
    n, c = ch.n, ch.c
    claim = cert.get("nonempty_rows") or {}
    evidence = claim.get("evidence") or []
    covered = set()
    found_empty = None
    for ev in evidence:
        k, h = ev.get("layer"), ev.get("head")
        name = f"nonempty_rows[layer {k}, head {h}]"
        if not (isinstance(k, int) and isinstance(h, int) and 0 <= k < c.layers and 0 <= h < c.heads):
            ch.fail(name, "no such layer/head")
            continue
        covered.add((k, h))
        P = ch.layer(k, h)
        if ev.get("holds") is False:
            i = ev.get("empty_row")
            if not _index(i, n) or _rows(P, [i], n).any():
                ch.fail(name, f"row {i} is not empty")
            elif found_empty is None:
                found_empty = [k, h, i]
            continue
        keys = ev.get("keys")
        if keys == "diagonal":
            if not ch.diagonal_ok(k, h):
                ch.fail(name, "the diagonal is not in the pattern")
        elif keys == "counts":
            ch.unchecked.append(f"{name}: rests on the exact counter")
        elif isinstance(keys, list) and len(keys) == n and all(_index(x, n) for x in keys):
            if not _has(P, np.arange(n), np.array(keys, dtype=np.int64), n).all():
                ch.fail(name, "a listed key is not in its row")
        else:
            ch.fail(name, "malformed keys")
    holds = claim.get("holds")
    if holds is True:
        if covered != {(k, h) for k in range(c.layers) for h in range(c.heads)}:
            ch.fail("nonempty_rows", "evidence does not cover every layer and head")
        if found_empty is not None or any(ev.get("holds") is not True for ev in evidence):
            ch.fail("nonempty_rows", "claims true but evidence shows an empty row")
    elif holds is False:
        er = claim.get("empty_row")
        if not (isinstance(er, list) and len(er) == 3 and isinstance(er[0], int) and isinstance(er[1], int)
                and 0 <= er[0] < c.layers and 0 <= er[1] < c.heads and _index(er[2], n)):
            ch.fail("nonempty_rows", "malformed empty_row")
        elif _rows(ch.layer(er[0], er[1]), [er[2]], n).any():
            ch.fail("nonempty_rows", f"row {er[2]} of layer {er[0]}, head {er[1]} is not empty")


def _check_self_loops(ch, h, claim):
    name = f"head {h}: self_loops"
    if claim.get("holds") is True:
        for k in range(ch.c.layers):
            if not ch.diagonal_ok(k, h):
                ch.fail(name, f"layer {k} lacks a self-loop")
                return False
        return True
    if claim.get("holds") is False:
        m = claim.get("missing")
        if not (isinstance(m, list) and len(m) == 3 and isinstance(m[0], int) and 0 <= m[0] < ch.c.layers
                and m[1] == h and _index(m[2], ch.n)):
            ch.fail(name, "malformed missing index")
        elif _has(ch.layer(m[0], h), [m[2]], [m[2]], ch.n)[0]:
            ch.fail(name, f"({m[2]}, {m[2]}) is in layer {m[0]}")
        return False
    return None


def _hamiltonian_brute(union):
    n = union.shape[0]
    full = (1 << n) - 1
    reach = [0] * (1 << n)
    for v in range(n):
        reach[1 << v] = 1 << v
    for mask in range(1, full + 1):
        for last in range(n):
            if reach[mask] >> last & 1:
                for v in range(n):
                    if not mask >> v & 1 and union[v, last]:
                        reach[mask | 1 << v] |= 1 << v
    return reach[full] != 0


def _check_hamiltonian(ch, h, claim):
    n, name = ch.n, f"head {h}: hamiltonian_path"
    holds = claim.get("holds")
    if holds is True:
        w = claim.get("witness")
        if w == "identity":
            i = np.arange(1, n)
            ok = ch.union_pairs(h, i, i - 1).all()
        elif w == "reversed":
            i = np.arange(0, n - 1)
            ok = ch.union_pairs(h, i, i + 1).all()
        elif isinstance(w, list) and len(w) == n and all(_index(x, n) for x in w) and len(set(w)) == n:
            g = np.array(w, dtype=np.int64)
            ok = ch.union_pairs(h, g[1:], g[:-1]).all()
        else:
            ch.fail(name, "malformed witness")
            return
        if not ok:
            ch.fail(name, f"witness {w if isinstance(w, str) else 'list'} has a step that is not attended")
    elif holds is False:
        ref = claim.get("refutation") or {}
        kind = ref.get("kind")
        if kind in ("two_start_sets", "two_end_sets"):
            try:
                sets = [_members(r, n) for r in ref.get("sets", [])]
            except (ValueError, TypeError) as exc:
                ch.fail(name, str(exc))
                return
            if len(sets) != 2 or (sets[0] & sets[1]).any() or not sets[0].any() or not sets[1].any():
                ch.fail(name, "needs two disjoint non-empty sets")
                return
            for X in sets:
                members = np.flatnonzero(X)
                if kind == "two_start_sets":
                    if not ch.affordable(name, members.size * n * ch.c.layers):
                        continue
                    for k in range(ch.c.layers):
                        rows = _rows(ch.layer(k, h), members, n)
                        if rows[:, ~X].any():
                            ch.fail(name, "a start set attends outside itself")
                            return
                else:
                    outside = np.flatnonzero(~X)
                    if not ch.affordable(name, members.size * outside.size * ch.c.layers):
                        continue
                    I = np.repeat(outside, members.size)
                    J = np.tile(members, outside.size)
                    if ch.union_pairs(h, I, J).any():
                        ch.fail(name, "an end set is attended from outside")
                        return
        elif kind == "exhaustive":
            if n > 12:
                ch.unchecked.append(f"{name}: exhaustive refutation for n > 12")
                return
            union = np.zeros((n, n), dtype=bool)
            for k in range(ch.c.layers):
                union |= _rows(ch.layer(k, h), np.arange(n), n)
            if _hamiltonian_brute(union):
                ch.fail(name, "a Hamiltonian path exists")
        else:
            ch.fail(name, "unknown refutation")


def _row_set_after(ch, h, i, steps):
    """S^{steps}_i for the single row i: {i} pushed through layers k(steps), …, k(1)."""
    n, p = ch.n, ch.c.layers
    X = np.zeros(n, dtype=bool)
    X[i] = True
    for t in range(steps, 0, -1):
        X = _rows(ch.layer((t - 1) % p, h), np.flatnonzero(X), n).any(axis=0)
    return X


def _dense_recursion(ch, h, upto):
    n, p = ch.n, ch.c.layers
    masks = [_rows(ch.layer(k, h), np.arange(n), n).astype(np.float32) for k in range(p)]
    S = masks[0] > 0
    states = [S]
    for t in range(2, upto + 1):
        S = (masks[(t - 1) % p] @ S.astype(np.float32)) > 0
        states.append(S)
    return states


def _check_depth(ch, h, claim, c1_verified):
    n, p, name = ch.n, ch.c.layers, f"head {h}: finite_depth"
    holds = claim.get("holds")
    ev = claim.get("evidence") or {}
    if holds is False:
        if ev.get("recursion_cycles"):
            if ch.affordable(name, 10 * p * n ** 5):
                ch.unchecked.append(f"{name}: recursion cycle not re-checked")
            return
        pair = claim.get("unreachable")
        try:
            R = _members(ev.get("closed", []), n)
        except (ValueError, TypeError) as exc:
            ch.fail(name, str(exc))
            return
        if not (isinstance(pair, list) and len(pair) == 2 and all(_index(x, n) for x in pair)):
            ch.fail(name, "malformed unreachable pair")
            return
        i, j = pair
        if not R[i] or R[j]:
            ch.fail(name, "the pair does not leave the closed set")
            return
        members = np.flatnonzero(R)
        if ch.affordable(name, members.size * n * p):
            for k in range(p):
                if _rows(ch.layer(k, h), members, n)[:, ~R].any():
                    ch.fail(name, f"the closed set is left in layer {k}")
                    return
        return
    if holds is not True:
        return
    bounds = claim.get("s_bounds")
    s = claim.get("s")
    if not (isinstance(bounds, list) and len(bounds) == 2 and isinstance(bounds[0], int)
            and (bounds[1] is None or isinstance(bounds[1], int))):
        ch.fail(name, "malformed s_bounds")
        return
    lo, hi = bounds
    if s is not None and not (s == lo == hi):
        ch.fail(name, "s disagrees with s_bounds")
        return
    if hi is None:
        ch.fail(name, "holds true without an upper bound")
        return
    if lo < 1 or hi < lo:
        ch.fail(name, "bounds out of order")
        return
    # Upper bound.
    proved_hi = None
    hub = ev.get("hub")
    if isinstance(hub, dict):
        t, b, a = hub.get("token"), hub.get("row_step"), hub.get("column_step")
        if _index(t, n) and isinstance(b, int) and isinstance(a, int) and 1 <= b < a:
            row_ok = _rows(ch.layer((b - 1) % p, h), [t], n).all()
            col_ok = _has(ch.layer((a - 1) % p, h), np.arange(n), np.full(n, t), n).all()
            if row_ok and col_ok and ((b, a) == (1, 2) or c1_verified):
                proved_hi = a
            else:
                ch.fail(name, "hub evidence does not hold")
        else:
            ch.fail(name, "malformed hub")
    if ev.get("chain") is True:
        i = np.arange(1, n)
        if c1_verified and ch.union_pairs(h, i, i - 1).all() and ch.union_pairs(h, i - 1, i).all():
            proved_hi = min(proved_hi or p * max(n - 1, 1), p * max(n - 1, 1))
        else:
            ch.fail(name, "chain evidence does not hold")
    states = None
    if ev.get("recursion") is True:
        if ch.affordable(name, hi * n ** 3):
            states = _dense_recursion(ch, h, hi)
            if states[hi - 1].all():
                proved_hi = hi
            else:
                ch.fail(name, f"S^{hi} is not everything")
                return
    if proved_hi is None:
        if not ch.unchecked or not ch.unchecked[-1].startswith(name):
            ch.fail(name, "no evidence for the upper bound")
        return
    if proved_hi > hi:
        ch.fail(name, f"upper bound {hi} is below what the evidence proves ({proved_hi})")
    # Lower bound.
    if lo >= 2:
        mb = ev.get("missing_before")
        mf = ev.get("missing_first")
        if lo == 2 and isinstance(mf, list) and len(mf) == 2 and all(_index(x, n) for x in mf):
            if _has(ch.layer(0, h), [mf[0]], [mf[1]], n)[0]:
                ch.fail(name, "missing_first pair is in layer 0")
        elif isinstance(mb, list) and len(mb) == 2 and all(_index(x, n) for x in mb):
            if states is not None:
                if states[lo - 2][mb[0], mb[1]]:
                    ch.fail(name, f"missing_before pair is in S^{lo - 1}")
            elif ch.affordable(name, (lo - 1) * n * n):
                if _row_set_after(ch, h, mb[0], lo - 1)[mb[1]]:
                    ch.fail(name, f"missing_before pair is in S^{lo - 1}")
        else:
            ch.fail(name, f"no evidence for the lower bound {lo}")


def verify_report(source_or_compiled, cert: dict, max_work: int = 1 << 30) -> dict:
    """{"failures": [...], "unchecked": [...]}: every claim of ``cert`` re-checked."""
    from .compiled import CompiledPattern, compile as compile_source

    if not isinstance(cert, dict):
        return {"failures": ["certificate: not an object"], "unchecked": []}
    n = cert.get("n")
    if isinstance(source_or_compiled, CompiledPattern):
        compiled = source_or_compiled
        if compiled.n != n:
            return {"failures": [f"n: certificate is for n = {n}, pattern is compiled for {compiled.n}"],
                    "unchecked": []}
    else:
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            return {"failures": ["n: missing or not a positive integer"], "unchecked": []}
        compiled = compile_source(source_or_compiled if not isinstance(source_or_compiled, str) or "\n" in source_or_compiled
                                  or not Path(source_or_compiled).is_file() else Path(source_or_compiled), n)
    ch = _Checker(compiled, max_work)
    if cert.get("layers") != compiled.layers or cert.get("heads") != compiled.heads:
        ch.fail("shape", "layers/heads differ from the source")
        return {"failures": ch.failures, "unchecked": ch.unchecked}
    prob = cert.get("prob") or {}
    expected = compiled.prob or "softmax"
    if prob.get("name") != expected:
        ch.fail("prob", f"name {prob.get('name')!r}, the file says {expected!r}")
    elif prob.get("assumption2") != ASSUMPTION2.get(expected):
        ch.fail("prob", "wrong Assumption 2 verdict")
    _check_nonempty(ch, cert)
    conditions = cert.get("conditions")
    if not isinstance(conditions, list) or [c.get("head") if isinstance(c, dict) else None
                                            for c in conditions] != list(range(compiled.heads)):
        ch.fail("conditions", "need one entry per head, in order")
        return {"failures": ch.failures, "unchecked": ch.unchecked}
    for c in conditions:
        h = c["head"]
        c1 = _check_self_loops(ch, h, c.get("self_loops") or {})
        _check_hamiltonian(ch, h, c.get("hamiltonian_path") or {})
        _check_depth(ch, h, c.get("finite_depth") or {}, c1 is True)
    return {"failures": ch.failures, "unchecked": ch.unchecked}


def verify_certificate(source_or_compiled, cert: dict, max_work: int = 1 << 30) -> list[str]:
    """The failed claims of ``cert`` (empty: every checked claim holds)."""
    return verify_report(source_or_compiled, cert, max_work)["failures"]
