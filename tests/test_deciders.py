"""The deciders of patterndsl/analysis/structural_deciders.py (covers, missing_each,
empty columns, path families and their repair) against brute force on dense boolean
matrices, at n in 2,049 … 4,099 (above DENSE_N, where conditions.py calls them), and
verify's checks of their evidence against corruptions."""
from __future__ import annotations

import copy
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis import conditions
from patterndsl.analysis.conditions import certificate, check_conditions, pair_values
from patterndsl.analysis.structural import hub_tokens
from patterndsl.analysis.rowsets import row_keys
from patterndsl.analysis.structural_deciders import (common_columns, common_cover, dense_depth, depth_by_cover,
                                                     find_path, repair, split_refutation, weak_pieces)
from patterndsl.verify import verify_report
from test_structural import assert_row_keys_match_the_reference


def _masks(compiled, h=0):
    return [compiled.dense(k, h) for k in range(compiled.layers)]


def _depths(masks, upto):
    """[S^1 = J, …, S^upto = J] by dense products (S^t = M_t S^{t−1}; small n only)."""
    p = len(masks)
    S = masks[0].astype(np.float32)
    out = [bool((S > 0).all())]
    for t in range(2, upto + 1):
        S = (masks[(t - 1) % p].astype(np.float32) @ S > 0).astype(np.float32)
        out.append(bool((S > 0).all()))
    return out


def _row_after(masks, i, t):
    """S^t_i on the dense masks: {i} pushed through layers k(t), …, k(1)."""
    x = np.zeros(masks[0].shape[0], dtype=bool)
    x[i] = True
    for step in range(t, 0, -1):
        x = masks[(step - 1) % len(masks)][x].any(axis=0)
    return x


def _assert_depth_claim(compiled, fd, h=0):
    """A finite_depth claim against the dense masks: by the recursion's products at small
    n; above, each step of its argument (cover rows, S^{t−1} of the cover tokens, the
    missing pairs) by dense row pushes, O(t · n²)."""
    masks = _masks(compiled, h)
    n = compiled.n
    ev = fd.get("evidence") or {}
    if fd["holds"] is True:
        lo, hi = fd["s_bounds"]
        if n <= 400:
            full = _depths(masks, hi)
            assert (full[hi - 1] if "cover" in ev else any(full)), (fd, full)  # S^t = J, some t ≤ hi
            assert not any(full[:lo - 1]), (fd, full)  # none before lo
            if fd["s"] is not None:
                assert full.index(True) + 1 == fd["s"]
            return
        if "cover" in ev:
            t, H = ev["cover"]["step"], ev["cover"]["tokens"]
            assert t >= hi and masks[(t - 1) % len(masks)][:, H].any(axis=1).all()
            assert all(_row_after(masks, x, t - 1).all() for x in H)
        if "union_cover" in ev:  # every row's attended tokens of H reach everything together
            t, H = ev["union_cover"]["step"], ev["union_cover"]["tokens"]
            assert t == hi
            reached = np.stack([_row_after(masks, x, t - 1) for x in H])
            attends = masks[(t - 1) % len(masks)][:, H]
            assert all(reached[row].any(axis=0).all() for row in attends)
        if "missing_before" in ev and lo > 1 and "missing_each" not in ev:
            i, j = ev["missing_before"]
            assert not _row_after(masks, i, lo - 1)[j]
        if ev.get("recursion"):
            full = _depths(masks, hi)
            assert full[hi - 1] and not any(full[:lo - 1])
        for t, (i, j) in enumerate(ev.get("missing_each", []), start=1):
            assert not _row_after(masks, i, t)[j]
    elif fd["holds"] is False and "empty_column" in ev:
        assert not masks[0][:, ev["empty_column"]].any()


def _path(witness, n):
    if witness == "identity":
        return np.arange(n)
    if witness == "reversed":
        return np.arange(n)[::-1]
    if isinstance(witness, dict):
        return np.array([x for a, b, d in witness["runs"] for x in range(a, b, d)])
    return np.array(witness)


def _assert_path(compiled, g, h=0):
    n = compiled.n
    union = np.logical_or.reduce(_masks(compiled, h))
    assert sorted(np.asarray(g).tolist()) == list(range(n))
    assert union[g[1:], g[:-1]].all()


def _patterns(compiled, h=0):
    return [compiled.patterns[k][h] for k in range(compiled.layers)]


COVERS = [  # (source, n, exact s or None): C1 fails in each, the union is strongly connected
    ("layers {\n causal | window(341) | cols(0..52)\n global(0..2) | ~window(909)\n window(1)\n}\n", 2049, 4),
    ("layers {\n rows(1, 1572)\n (rows(0..4, 1572) | causal) - ~window(56, 0)\n global(0..56)\n}\n", 2100, 3),
    ("layers {\n chunk(16)\n ~(window(0, 3) | dilated(11, 4))\n random(2, seed=72)\n}\n", 2190, None),
    ("layers {\n logsparse - (window(1) - summary(16, 2))\n ~logsparse\n}\n", 2049, None),
    ("layers {\n ~self\n all\n}\n", 2100, None),  # s = 2: no single token's S^1 is everything
]


@pytest.mark.parametrize("source, n, s", COVERS)
def test_cover_depth_against_dense_recursion(source, n, s):
    compiled = patterndsl.compile(source, n)
    patterns = _patterns(compiled)
    fd = depth_by_cover(patterns, n, False, conditions._candidates(patterns, n), pair_values)
    assert fd is not None and fd["holds"] is True and "cover" in fd["evidence"], fd
    if s is not None:
        assert fd["s"] == s, fd
    _assert_depth_claim(compiled, fd)
    results = check_conditions(compiled)
    got = results["conditions"][0]["finite_depth"]
    assert got["holds"] is True
    _assert_depth_claim(compiled, got)
    assert verify_report(compiled, certificate(compiled, results)) == {"failures": [], "unchecked": []}


def test_empty_column_refutes_depth():
    source = "layers {\n ~cols(5)\n all\n}\n"  # strongly connected, yet no S^t holds key 5
    compiled = patterndsl.compile(source, 2049)
    results = check_conditions(compiled)
    fd = results["conditions"][0]["finite_depth"]
    assert fd["holds"] is False and fd["evidence"] == {"empty_column": 5}
    assert not compiled.dense(0, 0)[:, 5].any()
    cert = certificate(compiled, results)
    assert verify_report(compiled, cert) == {"failures": [], "unchecked": []}
    bad = copy.deepcopy(cert)
    bad["conditions"][0]["finite_depth"]["evidence"]["empty_column"] = 6
    assert verify_report(compiled, bad)["failures"]


PATHS = [("~logsparse", 2100), ("~(segment_start(2) - random(144, seed=8847))", 2049),
         ("cols(2046..2050) | rows(0..4, 2049) | stride(7)", 2050), ("~window(144)", 2049),
         ("layers {\n ~window(4, 1)\n ~(chunk(64) | logsparse)\n}\n", 2064)]


@pytest.mark.parametrize("source, n", PATHS)
def test_path_families_against_the_dense_union(source, n):
    compiled = patterndsl.compile(source, n)
    g = find_path(_patterns(compiled), n, pair_values)
    assert g is not None
    _assert_path(compiled, g)
    results = check_conditions(compiled)
    hp = results["conditions"][0]["hamiltonian_path"]
    assert hp["holds"] is True
    _assert_path(compiled, _path(hp["witness"], n))
    assert verify_report(compiled, certificate(compiled, results)) == {"failures": [], "unchecked": []}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(), S.sizes(min_n=3, max_n=60), st.randoms(use_true_random=False))
def test_repair_returns_only_paths(source, n, rnd):
    compiled = patterndsl.compile(source, n)
    g = np.arange(n)
    rnd.shuffle(g)
    mended = repair(_patterns(compiled), n, pair_values, g, max_bad=n)
    if mended is not None:
        _assert_path(compiled, mended)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.files(), st.integers(2049, 2200))
def test_large_n_decisions_against_dense_matrices(source, n):
    """Files drawn at n above DENSE_N: every C2 witness is a path of the dense union, and
    every C3 claim from a cover holds by the dense recursion (when its bound is small)."""
    compiled = patterndsl.compile(source, n)
    results = check_conditions(compiled, budget_seconds=2)
    for h, cond in enumerate(results["conditions"]):
        hp, fd = cond["hamiltonian_path"], cond["finite_depth"]
        if hp["holds"] is True:
            _assert_path(compiled, _path(hp["witness"], n), h)
        _assert_depth_claim(compiled, fd, h)
    assert verify_report(compiled, certificate(compiled, results)) == {"failures": [], "unchecked": []}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(S.files(), S.sizes(min_n=2, max_n=48))
def test_cover_depth_against_brute_force_small(monkeypatch, source, n):
    """The cover rule at small n (its every claim by the recursion's dense products),
    called directly and through the structural path of conditions.py (DENSE_N = 0)."""
    compiled = patterndsl.compile(source, n)
    for h in range(compiled.heads):
        patterns = _patterns(compiled, h)
        idx = np.arange(n)
        c1 = all(pair_values(P, idx, idx, n).all() for P in patterns)
        fd = depth_by_cover(patterns, n, c1, conditions._candidates(patterns, n), pair_values)
        if fd is not None:
            _assert_depth_claim(compiled, fd, h)
    monkeypatch.setattr(conditions, "DENSE_N", 0)
    results = check_conditions(compiled, budget_seconds=2)
    for h, cond in enumerate(results["conditions"]):
        _assert_depth_claim(compiled, cond["finite_depth"], h)
        if cond["hamiltonian_path"]["holds"] is True:
            _assert_path(compiled, _path(cond["hamiltonian_path"]["witness"], n), h)
    assert verify_report(compiled, certificate(compiled, results)) == {"failures": [], "unchecked": []}


@pytest.mark.parametrize("field", ["step", "tokens", "missing_each"])
def test_cover_evidence_corruptions_are_rejected(field):
    source, n, _ = COVERS[0]
    compiled = patterndsl.compile(source, n)
    results = check_conditions(compiled)
    cert = certificate(compiled, results)
    fd = cert["conditions"][0]["finite_depth"]
    assert "cover" in fd["evidence"] and fd["s"] == 4
    bad = copy.deepcopy(cert)
    ev = bad["conditions"][0]["finite_depth"]["evidence"]
    claim = bad["conditions"][0]["finite_depth"]
    if field == "step":  # claim s = 3 with a cover at step 3
        ev["cover"]["step"] = 3
        claim["s"], claim["s_bounds"] = 3, [3, 3]
        ev["missing_each"] = ev["missing_each"][:2]
    elif field == "tokens":
        ev["cover"]["tokens"] = [1000]  # row 0 of layer 0 does not attend it
    else:  # a pair that S^2 holds
        row2 = np.flatnonzero(compiled.dense(1, 0)[0])
        ev["missing_each"][1] = [0, int(row2[0])]
    assert verify_report(compiled, bad)["failures"], bad


@pytest.mark.parametrize("source", ["dilated(64, 2) | window(3)", "dilated(3, 7) & ~window(2)",
                                    "stride(3) & window(20, 5)", "blocks(4) { dilated(2, 3) }",
                                    "(logsparse | window(4, 1) | dilated(4, 4)) - random(1, seed=63)"])
def test_periodic_atoms_clipped_to_the_intersection(source):
    n = 2100
    assert_row_keys_match_the_reference(patterndsl.compile(source, n).patterns[0][0], n)


# ---- C2: the "split" refutation and the mended greedy walk (branch refute11) --------------------


def _dense_weak_labels(union, removed):
    """Weak components of U − K by BFS over the dense union (no scipy), −1 on K."""
    n = union.shape[0]
    sym = (union | union.T) & ~removed[:, None] & ~removed[None, :]
    labels = np.where(removed, -1, -2)
    q = 0
    for v in range(n):
        if labels[v] != -2:
            continue
        labels[v], frontier = q, np.array([v])
        while frontier.size:
            nxt = sym[frontier].any(axis=0) & (labels == -2)
            labels[nxt] = q
            frontier = np.flatnonzero(nxt)
        q += 1
    return labels


def _same_partition(a, b):
    """Two labelings give the same pieces (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


SPLITS = [("chunk(16) | global(n - 4..n)", 2184, True), ("chunk(64) | global(0..3) | cols(n - 1)", 2049, True),
          ("layers {\n chunk(32)\n rows(100..103) | cols(100..103)\n}\n", 4099, True),
          ("chunk(16) | global(0..200)", 3000, False),  # 200 hubs: few enough pieces (a path exists)
          ("window(3) | global(7)", 2100, False)]


@pytest.mark.parametrize("source, n, refuted", SPLITS)
def test_split_refutation_against_dense_components(source, n, refuted):
    """weak_pieces against a dense BFS at n above DENSE_N, for K = ∅ and K = the hubs; the
    refutation when it is found holds on the dense union, and check_conditions' verdict
    (with it) is re-checked by verify."""
    compiled = patterndsl.compile(source, n)
    patterns = _patterns(compiled)
    union = np.logical_or.reduce(_masks(compiled))
    for hubs in ([], hub_tokens(patterns, n), list(range(0, n, 97))):
        removed = np.zeros(n, dtype=bool)
        removed[hubs] = True
        got = weak_pieces(patterns, n, removed)
        want = _dense_weak_labels(union, removed)
        assert ((got == -1) == removed).all() and _same_partition(got, want)
    ref = split_refutation(patterns, n, hub_tokens(patterns, n))
    assert (ref is not None) == refuted
    results = check_conditions(compiled, budget_seconds=2)
    hp = results["conditions"][0]["hamiltonian_path"]
    if refuted:
        assert hp["holds"] is False
        K = np.zeros(n, dtype=bool)
        for a, b in ref["removed"]:
            K[a:b] = True
        labels = _dense_weak_labels(union, K)
        assert labels.max() + 1 > K.sum() + 1  # more pieces than a path minus K could leave
    else:
        assert hp["holds"] is not False
    assert verify_report(compiled, certificate(compiled, results)) == {"failures": [], "unchecked": []}


def _has_path_brute(union):
    """Held–Karp over subsets: a permutation γ with union[γ(t+1), γ(t)] (n ≤ 12)."""
    n = union.shape[0]
    ends = [0] * (1 << n)
    for v in range(n):
        ends[1 << v] = 1 << v
    for mask in range(1, 1 << n):
        for v in range(n):
            if ends[mask] >> v & 1:
                for w in range(n):
                    if not mask >> w & 1 and union[w, v]:
                        ends[mask | 1 << w] |= 1 << w
    return ends[(1 << n) - 1] != 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.files(), S.sizes(min_n=3, max_n=10))
def test_split_refutation_is_sound_small(source, n):
    """Whenever split_refutation refutes, no Hamiltonian path exists (brute force), and
    its pieces have no edge between them."""
    compiled = patterndsl.compile(source, n)
    for h in range(compiled.heads):
        patterns = _patterns(compiled, h)
        ref = split_refutation(patterns, n, hub_tokens(patterns, n))
        if ref is None:
            continue
        union = np.logical_or.reduce(_masks(compiled, h))
        assert not _has_path_brute(union), (source, n, ref)


@pytest.mark.parametrize("source, n", [("random(n // 3 + 1, seed=572530)", 3766),
                                       ("~(random(r=122, seed=14263) - none())", 2229),
                                       ("random(n // 5, seed=3) | self", 2049)])
def test_greedy_walk_mended_on_random_digraphs(source, n):
    """Dense random digraphs (held-out corpus files 116, 118, 246): Warnsdorff's walk runs dry
    near its end; the tokens left are appended and repair mends the steps: a path of the
    dense union."""
    compiled = patterndsl.compile(source, n)
    union = np.logical_or.reduce(_masks(compiled))
    g = conditions._greedy_path(union, conditions.budget_clock() + 60)
    assert g is not None
    _assert_path(compiled, np.array(g))


# ---- C3: covers by common columns (branch refute11) ------------------------------------------


def _dense_rows(pattern, n, rows):
    """The keys of ``rows`` as bool rows, from rowsets (for the residual of a split pattern)."""
    keys = row_keys(pattern, np.asarray(rows, dtype=np.int64), n)
    out = np.zeros((len(rows), n), dtype=bool)
    for own, lo, hi in zip(keys.own.tolist(), keys.lo.tolist(), keys.hi.tolist()):
        out[own, lo:hi] = True
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(), S.sizes(min_n=2, max_n=80))
def test_common_columns_split_rows_exactly(source, n):
    """A_i = C ∪ R_i for every row (dense reference mask), C ⊆ the full columns."""
    compiled = patterndsl.compile(source, n)
    P = compiled.patterns[0][0]
    C, R = common_columns(P, n)
    mask = compiled.dense(0, 0).astype(bool)
    assert mask[:, C].all()
    rest = _dense_rows(R, n, range(n)) if R is not None else np.zeros((n, n), dtype=bool)
    assert np.array_equal(mask, rest | C[None, :])


COMMON = [("examples/deepspeed_fixed.spat", 2049, 2), ("examples/deepspeed_fixed.spat", 4099, 2),
          ("layers {\n chunk(64) | summary(64, 2)\n window(1)\n}\n", 2100, 3),
          ("blocks(8) { chunk(4) | summary(4, 1) } | window(2)", 3072, 2)]


@pytest.mark.parametrize("source, n, s", COMMON)
def test_common_cover_against_dense_recursion(source, n, s):
    """The cover by common columns at n above DENSE_N: its step is s by the dense products,
    and check_conditions decides s exactly with verify re-checking the certificate."""
    path = pathlib.Path(__file__).resolve().parent.parent / source
    compiled = patterndsl.compile(path.read_text() if source.endswith(".spat") else source, n)
    patterns = _patterns(compiled)
    t, C = common_cover(patterns, n)
    full = _depths(_masks(compiled), t)
    assert full[t - 1] and t == s and full.index(True) + 1 == s
    fd = check_conditions(compiled, budget_seconds=2)["conditions"][0]["finite_depth"]
    assert fd["s"] == s, fd
    assert verify_report(compiled, certificate(compiled, check_conditions(compiled, budget_seconds=2))) == {
        "failures": [], "unchecked": []}


DENSE_DEPTHS = [  # random digraphs (held-out corpus files 116, 127, 261, 140 at smaller n), with and without C1
    ("random(n // 3 + 1, seed=572530)", 2049),
    ("random(4, seed=9) | self | window(1)", 2100),
    ("random(12, seed=5)", 2049),
    ("stride(2) | ((random(4, seed=60) | self) | (dilated(ilog2(n), 4) | stride(3)))", 2300),
    ("layers {\n random(6, seed=3) | window(1)\n random(n // 8, seed=4) | self\n}\n", 2049),
]


def _exact_s(masks, upto=16):
    full = _depths(masks, upto)
    return full.index(True) + 1 if any(full) else None


@pytest.mark.parametrize("source, n", DENSE_DEPTHS)
def test_dense_depth_against_dense_products(source, n):
    """dense_depth's s is the least t with S^t = J by the dense products, its evidence holds
    step by step on the masks, and the claim of check_conditions is it, verified."""
    compiled = patterndsl.compile(source, n)
    masks = _masks(compiled)
    idx = np.arange(n)
    c1 = all(M[idx, idx].all() for M in masks)
    fd = dense_depth(masks, c1, {"holds": None, "s": None, "s_bounds": [1, None]})
    want = _exact_s(masks)
    assert want is not None and fd["s"] == want and fd["s_bounds"] == [want, want], (fd["s_bounds"], want)
    _assert_depth_claim(compiled, fd)
    assert len(fd["evidence"].get("missing_each", [None] * (want - 1))) == want - 1
    results = check_conditions(compiled, budget_seconds=2)
    assert results["conditions"][0]["finite_depth"]["s"] == want
    assert verify_report(compiled, certificate(compiled, results)) == {"failures": [], "unchecked": []}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 40), st.integers(0, 10 ** 6), st.booleans(), st.integers(2049, 4099))
def test_dense_depth_random_digraphs(r, seed, loops, n):
    """Random digraphs of out-degree r at n in 2,049 … 4,099: dense_depth's s against the
    dense products (or its bounds claim unchanged when out of work)."""
    compiled = patterndsl.compile(f"random({r}, seed={seed})" + (" | self" if loops else ""), n)
    masks = _masks(compiled)
    claim = {"holds": None, "s": None, "s_bounds": [1, None]}
    fd = dense_depth(masks, loops, claim)
    if fd["s"] is None:  # out of work or never J: only a raised lower bound, each pair missing
        ev = fd.get("evidence") or {}
        pairs = ev.get("missing_each") or ([ev["missing_before"]] if "missing_before" in ev else [])
        for t, (i, j) in enumerate(pairs, start=1 if "missing_each" in ev else fd["s_bounds"][0] - 1):
            assert not _row_after(masks, i, t)[j]
        return
    assert fd["s"] == _exact_s(masks, fd["s"] + 1)
    _assert_depth_claim(compiled, fd)


# ---- hard11: full/empty rows (G_t, Z_t) and chains through few partial rows (layered_deciders) ----

from patterndsl.analysis.layered_deciders import binary_depth, binary_states, chain_path  # noqa: E402

_PARTIAL_ROWS = st.sampled_from(["rows(45..75, n - 1..n, 100..115)", "rows(3..9)", "rows(0..2, n - 3..n)",
                                 "rows(n // 2..n // 2 + 20)"])
_LAYER1 = st.sampled_from(["self", "causal", "~rows(n // 2..n, 72..104, 60..67)", "~global(n // 2..n, 72..104)",
                           "~(rows(max(0, n - 9)..n) | summary(isqrt(n), 1) | cols(92..129, isqrt(n)..2 * n, 0..31))",
                           "~(rows(3..9) & random(n - 1, seed=5))", "~rows(0..40)"])


def _dense_s(masks, upto):
    """The least t ≤ upto with S^t = J, "infinite" when (t mod p, S^t) repeats first, else None."""
    p, seen = len(masks), set()
    S = masks[0].astype(np.float32)
    for t in range(1, upto + 1):
        B = S > 0
        if B.all():
            return t
        key = (t % p, np.packbits(B).tobytes())
        if key in seen:
            return "infinite"
        seen.add(key)
        S = (masks[t % p].astype(np.float32) @ B.astype(np.float32) > 0).astype(np.float32)
    return None


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PARTIAL_ROWS, st.integers(0, 40), _LAYER1, st.integers(2049, 4099))
def test_binary_depth_against_dense_recursion(rows, seed, layer1, n):
    """Two layers, the first nearly complete (the corpus's ~(rows(…) & random(n − 1, …)));
    the claim from full and empty rows against S^t by dense products at n = 2,049 … 4,099."""
    source = f"layers {{\n~({rows} & random(n - 1, seed={seed}))\n{layer1}\n}}\n"
    compiled = patterndsl.compile(source, n)
    patterns = _patterns(compiled)
    masks = _masks(compiled)
    states = binary_states(patterns, n, 12)
    S = None
    for t, (G, Z) in enumerate(states[:6], start=1):  # G_t, Z_t are sound: rows of S^t that are J, ∅
        S = masks[0] if t == 1 else masks[(t - 1) % 2].astype(np.float32) @ S.astype(np.float32) > 0
        assert S[G].all() and not S[Z].any()
    found = binary_depth(patterns, n)
    truth = _dense_s(masks, 40)
    if found is None:
        return
    if found["holds"] is False:
        assert truth == "infinite", (found, truth)
    else:
        lo, hi = found["s_bounds"]
        assert truth != "infinite" and (truth is None or lo <= truth <= hi), (found, truth)
        if found["s"] is not None:
            assert truth == found["s"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PARTIAL_ROWS, st.integers(0, 40), _LAYER1, st.integers(2049, 4099))
def test_chain_path_is_a_path_of_the_union(rows, seed, layer1, n):
    source = f"layers {{\n~({rows} & random(n - 1, seed={seed}))\n{layer1}\n}}\n"
    compiled = patterndsl.compile(source, n)
    g = chain_path(_patterns(compiled), n)
    if g is not None:
        _assert_path(compiled, g)


def test_corpus_files_150_152_decided_and_verified():
    """The two held-out corpus files that stayed undecided: every head decided at its n, each
    s (or infinity) the dense recursion's, each path a path of the union."""
    import json
    corpus = json.loads((pathlib.Path(__file__).parent.parent / "benchmarks" / "undecided_corpus.json").read_text())
    for index in (150, 152):
        source, n = corpus[index]
        compiled = patterndsl.compile(source, n)
        results = check_conditions(compiled, budget_seconds=10)
        for h, cond in enumerate(results["conditions"]):
            fd, hp = cond["finite_depth"], cond["hamiltonian_path"]
            assert fd["holds"] is not None and hp["holds"] is not None, (index, h, fd, hp)
            truth = _dense_s(_masks(compiled, h), 40)
            assert truth == ("infinite" if fd["holds"] is False else fd["s"]), (index, h, fd, truth)
            if hp["holds"]:
                _assert_path(compiled, _path(hp["witness"], n), h)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(max_depth=2), st.integers(2, 40))
def test_chain_path_ends_on_small_complements(inner, n):
    """Complements of random patterns at small n (most rows full, a few partial: where the
    chains apply): a path, when given, is a path of the union. (The matching's loop test
    once followed a loop of predecessors closed elsewhere by an augmenting path and never
    returned: CI hung in test_verify's hypothesis run on a complement at n = 21; this test
    did not find that case in 150 examples, the bound on the walk is what ends it.)"""
    compiled = patterndsl.compile(f"~({inner})", n)
    g = chain_path(_patterns(compiled), n)
    if g is not None:
        _assert_path(compiled, g)


# ---- exact20: s of one layer with C1 as U's largest distance (structural_deciders.distance_depth) ----

from patterndsl.analysis.structural_deciders import distance_depth  # noqa: E402

SPARSE_ONE_LAYER = ["logsparse | window({a}, {b})", "window({a}, {b}) | dilated({w}, {d})",
                    "(dilated({w}, {d}) - ~causal) | (cols(n - 1) & stride(2)) | window({a}, {b})",
                    "window({a}, {b}) | cols(n - 1 - {b}) | self"]


def _dense_depth_by_products(mask, upto=10_000):
    """The least t with S^t = J by the definition S^t = A S^{t−1} (A as a sparse matrix
    times the dense bool S^{t−1}); None when S^t stops growing first (given C1)."""
    from scipy.sparse import csr_matrix

    A = csr_matrix(mask.astype(np.int32))
    S = mask.astype(np.int32)
    for t in range(1, upto + 1):
        if S.all():
            return t
        new = ((A @ S) > 0).astype(np.int32)
        if (new == S).all():
            return None
        S = new
    return None


@st.composite
def sparse_one_layer(draw):
    n = draw(st.integers(2049, 4099))
    values = {"a": draw(st.integers(1, 6)), "b": draw(st.integers(1, 9)), "w": draw(st.integers(1, 4)),
              "d": draw(st.integers(50, 700))}
    return draw(st.sampled_from(SPARSE_ONE_LAYER)).format(**values), n


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sparse_one_layer())
def test_distance_depth_matches_the_dense_recursion(case):
    source, n = case
    compiled = patterndsl.compile(source, n)
    mask = compiled.dense(0, 0)
    assert mask.diagonal().all()
    truth = _dense_depth_by_products(mask)
    claim = distance_depth(compiled.patterns[0][0], n, {"holds": True, "s": None, "s_bounds": [1, None]},
                           max_work=1 << 30)
    if truth is None:  # not strongly connected: the claim is left as it was
        assert claim["s"] is None
        return
    assert claim["s"] == truth and claim["s_bounds"] == [truth, truth]
    cert = certificate(compiled, check_conditions(compiled, budget_seconds=2.0))
    cert["conditions"][0]["finite_depth"] = claim
    report = verify_report(compiled, cert)
    assert not report["failures"] and not report["unchecked"], report


def test_distance_depth_sampled_lower_bound_is_a_missing_pair():
    # too many edges for a BFS out of every token: BFS out of a sample proves s ≥ d by a pair
    n = 3144
    source = "(dilated(3, 3) - ~causal) | (cols(n - 1) & stride(2)) | window(4, 8)"
    compiled = patterndsl.compile(source, n)
    mask = compiled.dense(0, 0)
    claim = distance_depth(compiled.patterns[0][0], n, {"holds": True, "s": None, "s_bounds": [2, 537],
                                                         "evidence": {"trees": {}}}, max_work=1 << 26)
    lo = claim["s_bounds"][0]
    assert lo > 2 and claim["evidence"]["trees"] == {}
    i, j = claim["evidence"]["missing_before"]
    assert not _row_after([mask], i, lo - 1)[j]
    assert lo <= _dense_depth_by_products(mask) <= 537
