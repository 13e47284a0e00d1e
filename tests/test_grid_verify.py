"""verify's own evaluation of grids (patterndsl/verify.py: `_grid_cells`, `_grid_relation`):
it matches the dense reference, it runs with patterndsl/grid.py's evaluation switched off,
and it knows every grid primitive."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import grid as G
from patterndsl import strategies as S
from patterndsl.analysis.check import check
from patterndsl.reference import evaluate
from patterndsl.verify import _keys, _Meter, _pairs, verify_report


def keys_dense(pattern, n):
    keys = _keys(pattern, np.arange(n, dtype=np.int64), n, _Meter(1 << 40))
    dense = np.zeros((n, n), dtype=bool)
    for row, lo, hi in zip(keys.own, keys.lo, keys.hi):
        dense[row, lo:hi] = True
    return dense


def all_pairs(pattern, n):
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return _pairs(pattern, i.reshape(-1), j.reshape(-1), n).reshape(n, n)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.grid_sources(max_side=6), st.integers(1, 45), st.sampled_from(["", " | window(1)", " & ~self"]))
def test_verify_reads_grids_as_the_reference_does(source, n, extra):
    pattern = patterndsl.compile(source + extra, n).patterns[0][0]
    reference = evaluate(pattern, np.arange(n), n)
    assert (keys_dense(pattern, n) == reference).all(), source + extra
    assert (all_pairs(pattern, n) == reference).all(), source + extra


SOURCES = {
    "window2d": "grid(4, 5, offset=2) { window2d(1, 2) }",
    "window3d": "grid(2, 3, 4, tile=(1, 3, 2)) { window3d(0, 1, 1) }",
    "natten": "grid(5, 6, order=morton) { natten(3, 4) }",
    "natten3d": "grid(2, 4, 4) { transpose(natten3d(1, 3, 2)) }",
    "chunk2d": "grid(6, 6) { chunk2d(4, 3, shift=(-1, 2)) }",
    "chunk3d": "grid(2, 4, 4, tile=(1, 2, 2)) { chunk3d(1, 2, 3, shift=(0, 1, 1)) }",
    "stride2d": "grid(6, 5) { stride2d(2, 3) }",
    "manhattan": "grid(5, 5, tile=(5, 1)) { manhattan(2) }",
    "euclid": "grid(6, 4) { euclid(2) - self }",
    "sliding_tiles": "grid(6, 8, tile=(2, 2)) { sliding_tiles(1, 3) }",
    "sliding_tiles3d": "grid(2, 4, 4, tile=(1, 2, 2)) { sliding_tiles3d(1, 1, 2) | causal }",
}


def test_every_grid_primitive_is_known():
    assert set(SOURCES) == set(G.GRID_PRIMITIVES)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_without_grid_py_evaluation(name, monkeypatch):
    source = SOURCES[name]
    n = 40
    pattern = patterndsl.compile(source, n).patterns[0][0]
    reference = evaluate(pattern, np.arange(n), n)

    def refuse(*args, **kwargs):
        raise AssertionError("verify used patterndsl/grid.py's evaluation")

    classes = {G.Grid, G.GridTransposed} | {c for p in G.GRID_PRIMITIVES.values() for c in p.__mro__
                                            if c.__module__ == G.__name__}
    for cls in classes:
        for method in ("predicate", "pairs", "reference_pair", "row_points", "rule", "axis_rule", "_ranks"):
            if method in vars(cls):
                monkeypatch.setattr(cls, method, refuse)
    monkeypatch.setattr(G, "morton_ranks", refuse)
    assert (keys_dense(pattern, n) == reference).all()
    assert (all_pairs(pattern, n) == reference).all()


def test_a_grid_certificate_is_checked_and_a_wrong_count_rejected():
    compiled = patterndsl.compile("grid(6, 6, tile=(2, 3)) { natten(3, 3) } | global(0)", 40)
    _, cert = check(compiled, budget_seconds=2)
    report = verify_report(compiled, cert)
    assert report == {"failures": [], "unchecked": []}
    assert cert["counts"]["per_layer"]
    bad = dict(cert, counts={**cert["counts"], "per_layer": [[c + 1 for c in row]
                                                             for row in cert["counts"]["per_layer"]]})
    assert verify_report(compiled, bad)["failures"]
