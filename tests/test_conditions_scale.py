"""The conditions' large-n reading paths (issue 11 §4, scale24) against the dense reference:
one row as intervals (hub rows, the first missing key, one-row closed sets), the diagonal and
the off-diagonals a slice of rows at a time, unions and intersections evaluated cheap parts
first, a union's absorbed layers, and the union graph's edge estimate."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis import conditions as K
from patterndsl.analysis import graph as G
from patterndsl.analysis.counts import absorbed, connection_counts
from patterndsl.analysis.rowsets import row_keys
from patterndsl.ir import Intersection
from patterndsl.reference import evaluate

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pattern(source, n):
    return patterndsl.compile(source, n, simplify=False).patterns[0][0]


@settings(max_examples=120, **SETTINGS)
@given(S.pattern_sources(), S.sizes(max_n=70), st.data())
def test_row_intervals_are_the_dense_row(source, n, data):
    pattern = _pattern(source, n)
    dense = evaluate(pattern, np.arange(n), n)
    for i in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4)):
        lo, hi = K._row_intervals(pattern, i, n)
        row = np.zeros(n, dtype=bool)
        for a, b in zip(lo, hi):
            row[a:b] = True
        assert np.array_equal(row, dense[i]), (source, n, i)
        assert K._row_full(pattern, i, n) == dense[i].all()
    missing = K._missing_in_first([pattern], n, [0, n // 2])
    rows = [i for i in [0, n // 2, 1, n - 2] if 0 <= i < n and not dense[i].all()]
    assert missing == ([rows[0], int(np.flatnonzero(~dense[rows[0]])[0])] if rows else None)


def test_row_intervals_past_the_limit_read_the_dense_row(monkeypatch):
    n = 64
    pattern = _pattern("stride(2) | window(1)", n)
    monkeypatch.setattr(K, "_ROW_LIMIT", 2)  # n / 16 = 4 intervals at most
    lo, hi = K._row_intervals(pattern, 9, n)
    row = np.zeros(n, dtype=bool)
    for a, b in zip(lo, hi):
        row[a:b] = True
    assert np.array_equal(row, evaluate(pattern, np.array([9]), n)[0]) and lo.size > 2


@settings(max_examples=80, **SETTINGS)
@given(st.lists(S.pattern_sources(max_depth=2), min_size=1, max_size=3), S.sizes(min_n=2, max_n=60),
       st.integers(1, 7))
def test_diagonals_in_slices(sources, n, rows):
    patterns = [_pattern(s, n) for s in sources]
    dense = [evaluate(P, np.arange(n), n) for P in patterns]
    union = np.logical_or.reduce(dense)
    saved, K._OFFDIAGONAL_ROWS = K._OFFDIAGONAL_ROWS, rows  # many slices, a ragged last one
    try:
        sides = K._offdiagonals(patterns, n)
        gaps = [K._diagonal_gap(P, n) for P in patterns]
    finally:
        K._OFFDIAGONAL_ROWS = saved
    i = np.arange(1, n)
    assert sides == (bool(union[i, i - 1].all()), bool(union[i - 1, i].all()))
    for d, gap in zip(dense, gaps):
        assert gap == (None if d.diagonal().all() else int(np.flatnonzero(~d.diagonal())[0]))


@settings(max_examples=120, **SETTINGS)
@given(S.pattern_sources(), S.sizes(max_n=60), st.data())
def test_pair_values_cheap_parts_first(source, n, data):
    pattern = _pattern(source, n)
    i = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=40)), dtype=np.int64)
    j = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=i.size, max_size=i.size)), dtype=np.int64)
    assert np.array_equal(K.pair_values(pattern, i, j, n), evaluate(pattern, np.arange(n), n)[i, j])


@settings(max_examples=60, **SETTINGS)
@given(S.pattern_sources(max_depth=2), S.pattern_sources(max_depth=2), S.sizes(min_n=2, max_n=50))
def test_closed_interval_is_closed(first, second, n):
    """A one-row closed set read from intervals: every returned R attends only inside R in
    every layer; None only when no candidate interval is closed (the dense definition)."""
    patterns = [_pattern(first, n), _pattern(second, n)]
    dense = [evaluate(P, np.arange(n), n) for P in patterns]
    hubs = [0, n // 2]

    def closed(lo, hi):
        return all(not d[lo:hi, :lo].any() and not d[lo:hi, hi:].any() for d in dense)

    found = K._closed_interval(patterns, n, hubs)
    candidates = [(lo, hi) for m in sorted({m for m in hubs + [1, n - 1] if 0 < m < n})
                  for lo, hi in ((0, m), (m, n))]
    assert found == next((c for c in candidates if closed(*c)), None)


@settings(max_examples=60, **SETTINGS)
@given(S.pattern_sources(max_depth=2), S.pattern_sources(max_depth=2), S.sizes(max_n=50))
def test_absorbed_layers_count_the_union(base, other, n):
    """Layers A and A & X: the union is A (absorbed), counted exactly."""
    source = f"layers {{\n  {base}\n  ({other}) & ({base})\n}}"
    compiled = patterndsl.compile(source, n, simplify=False)
    A, AX = compiled.patterns[0][0], compiled.patterns[1][0]
    if isinstance(AX, Intersection) and A in AX.parts and A != AX:
        assert absorbed((A, AX)) == (A,)
    union = compiled.dense(0, 0) | compiled.dense(1, 0)
    assert connection_counts(compiled)["union"] == [int(union.sum())]


def test_absorbed_keeps_what_is_not_absorbed():
    n = 32
    a, b, c = (_pattern(s, n) for s in ("causal", "window(2)", "stride(3)"))
    ab, bc = Intersection((a, b)), Intersection((b, c))
    assert absorbed((a, ab)) == (a,)
    assert absorbed((ab, bc)) == (ab, bc)  # neither is an operand of the other
    assert absorbed((b, ab, bc)) == (b,)
    assert absorbed((ab, a, c)) == (a, c)


@settings(max_examples=60, **SETTINGS)
@given(S.pattern_sources(max_depth=2), S.sizes(min_n=2, max_n=300))
def test_tiles_are_the_graph_edges(source, n):
    """`tiles` counts the edges the build adds (token → tile, for parts read over all rows)."""
    pattern = patterndsl.compile(source, n).patterns[0][0]
    parts = G._split(pattern, n)
    if any(p is not None for _, p in parts):
        return  # periodic parts go through hubs, not tiles of every row
    try:
        graph = G.UnionGraph([pattern], n, edge_limit=1 << 40)
    except G.TooLarge:
        return
    keys = row_keys(pattern, np.arange(n), n)
    assert G.tiles(keys.lo, keys.hi, graph.size) == graph.src.size - 2 * (graph.size - 1)


def test_sample_refuses_by_edges_not_only_intervals(monkeypatch):
    """causal: one interval a row (the intervals' rule lets it through) but about log2(n)/2
    tiles a row: refused up front when that is over twice the limit, built when it fits."""
    n = 1 << 12
    pattern = _pattern("causal", n)
    graph = G.UnionGraph([pattern], n)
    edges = int(graph.src.size - 2 * (graph.size - 1))
    assert edges > 4 * n  # several tiles a row
    batches = []
    original = G.all_rows
    monkeypatch.setattr(G, "all_rows", lambda *a, **k: batches.append(a) or original(*a, **k))
    try:
        G.UnionGraph([pattern], n, edge_limit=edges // 3)
        raise AssertionError("not refused")
    except G.TooLarge:
        pass
    assert batches == []  # refused from the sample, before any batch was read
    assert G.UnionGraph([pattern], n, edge_limit=edges).src.size == graph.src.size
