"""The structural decisions (patterndsl/analysis/structural.py, graph.py, rowsets.py) —
used above DENSE_N — against brute force: forced on at small n for many patterns, and at
n in 2,049 … 4,099 with dense boolean matrices for a few."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis import conditions
from patterndsl.analysis.conditions import certificate, check_conditions
from patterndsl.analysis.graph import UnionGraph
from patterndsl.analysis.rowsets import row_keys
from patterndsl.analysis.structural import interval_depth
from patterndsl.reference import evaluate
from patterndsl.verify import verify_report

from patterndsl.analysis.check import check
from test_conditions import brute
from test_verify import assert_all_rejected


def _structural(compiled, monkeypatch):
    monkeypatch.setattr(conditions, "DENSE_N", 0)
    return check_conditions(compiled, budget_seconds=2)


def _agrees(compiled, results):
    for h, cond in enumerate(results["conditions"]):
        c1, c2, s, _ = brute(compiled, h)
        assert cond["self_loops"]["holds"] == c1
        if cond["hamiltonian_path"]["holds"] is not None and c2 is not None:
            assert cond["hamiltonian_path"]["holds"] == c2, cond["hamiltonian_path"]
        fd = cond["finite_depth"]
        if fd["holds"] is not None:
            assert fd["holds"] == (s is not None), (fd, s)
        if fd["holds"] is True:
            lo, hi = fd["s_bounds"]
            assert lo <= s <= hi and (fd["s"] is None or fd["s"] == s), (fd, s)
        elif fd["holds"] is None:
            assert fd["s_bounds"][0] <= (s if s is not None else float("inf"))
    report = verify_report(compiled, certificate(compiled, results))
    assert report == {"failures": [], "unchecked": []}, report


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(S.files(), S.sizes(min_n=1, max_n=40))
def test_structural_decisions_against_brute_force(monkeypatch, source, n):
    compiled = patterndsl.compile(source, n)
    _agrees(compiled, _structural(compiled, monkeypatch))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(), S.sizes(max_n=40))
def test_row_keys_match_the_reference(source, n):
    assert_row_keys_match_the_reference(patterndsl.compile(source, n).patterns[0][0], n)


def assert_row_keys_match_the_reference(pattern, n):
    """rowsets.row_keys of every row, drawn as a dense mask, equals the reference's."""
    keys = row_keys(pattern, np.arange(n), n)
    dense = np.zeros((n, n), dtype=bool)
    for row, lo, hi in zip(keys.own, keys.lo, keys.hi):
        dense[row, lo:hi] = True
    assert (dense == evaluate(pattern, np.arange(n), n)).all()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.files(), S.sizes(min_n=1, max_n=40))
def test_components_match_scipy_on_the_dense_graph(source, n):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    compiled = patterndsl.compile(source, n)
    patterns = [compiled.patterns[k][0] for k in range(compiled.layers)]
    union = np.logical_or.reduce([compiled.dense(k, 0) for k in range(compiled.layers)])
    count, labels = connected_components(csr_matrix(union), directed=True, connection="strong")
    token, sinks, sources = UnionGraph(patterns, n).components()
    assert len(np.unique(token)) == count
    # The same partition, and the same sinks (no edge out) and sources (no edge in).
    assert len({(a, b) for a, b in zip(token, labels)}) == count
    off = union & ~np.eye(n, dtype=bool)
    for c in np.unique(token):
        inside = token == c
        assert (int(c) in sinks) == (not off[inside][:, ~inside].any())
        assert (int(c) in sources) == (not off[~inside][:, inside].any())


@pytest.mark.parametrize("source, n, s", [("window(1)", 2049, 2048), ("window(3)", 3001, 1000),
                                          ("window(2, 5)", 2500, 1250), ("window(7, 7)", 4099, 586),
                                          ("layers {\n window(1)\n self\n}", 2100, 2 * 2099 - 1)])
def test_interval_depth_closed_forms_above_dense_n(source, n, s):
    compiled = patterndsl.compile(source, n)
    assert interval_depth([compiled.patterns[k][0] for k in range(compiled.layers)], n) == s


BANDS = ["window(1)", "window(2)", "window(0, 1)", "window(3, 0)", "window(1, 2)", "chunk(3) | window(1)",
         "chunk(4) & window(2)", "self", "window(2) & window(0, 3)", "causal & window(2)"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.sizes(min_n=2, max_n=48), st.lists(st.sampled_from(BANDS), min_size=1, max_size=3))
def test_interval_depth_against_the_recursion(n, layers):
    source = "layers {\n" + "\n".join(layers) + "\n}\n"
    compiled = patterndsl.compile(source, n)
    got = interval_depth([compiled.patterns[k][0] for k in range(compiled.layers)], n)
    _, _, s, _ = brute(compiled, 0)
    assert got == s


@pytest.mark.parametrize("source, n", [("dilated(64, 2) | global(0)", 2049), ("stride(3) | window(1)", 2500),
                                       ("window(1) - rows(1000)", 2049), ("random(3, seed=1) | self", 2049)])
def test_decisions_above_dense_n_against_dense_graphs(source, n):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    compiled = patterndsl.compile(source, n)
    results = check_conditions(compiled)
    union = compiled.dense(0, 0)
    strongly = connected_components(csr_matrix(union), directed=True, connection="strong")[0] == 1
    cond = results["conditions"][0]
    assert cond["finite_depth"]["holds"] is strongly  # C1 holds in each
    assert cond["hamiltonian_path"]["holds"] is not None
    if cond["hamiltonian_path"]["holds"]:
        w = cond["hamiltonian_path"]["witness"]
        g = [x for a, b, d in w["runs"] for x in range(a, b, d)] if isinstance(w, dict) else \
            list(range(n)) if w == "identity" else list(range(n - 1, -1, -1))
        assert sorted(g) == list(range(n)) and all(union[g[t + 1], g[t]] for t in range(n - 1))
    assert verify_report(compiled, certificate(compiled, results)) == {"failures": [], "unchecked": []}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(S.files(), S.sizes(min_n=1, max_n=20))
def test_structural_certificates_reject_corruptions(monkeypatch, source, n):
    """The corruption suite of test_verify.py on certificates of the structural paths
    (trees, periods, counting refutations, runs, intervals)."""
    monkeypatch.setattr(conditions, "DENSE_N", 0)
    compiled = patterndsl.compile(source, n)
    _, cert = check(compiled, budget_seconds=2)
    assert_all_rejected(compiled, cert)
