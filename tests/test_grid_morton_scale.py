"""Distance rules on Morton grids at scale (brief euclid10): the runs of a query's cells listed
per query row (`_listed_ball_runs`) or read from the table of every cell's runs
(`_ball_table`), the large-ball path, and the full/empty-rows states stopping once they
repeat — each against the dense reference; the big case's work counted, not timed."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import grid as G
from patterndsl.analysis import layered_deciders as LD
from patterndsl.analysis.rowsets import all_rows, row_keys

BODIES = ["euclid({})", "manhattan({})", "euclid({}) | manhattan(1)", "manhattan({}) - euclid(1)",
          "euclid({}) & natten(3, 5)", "natten(3, 3) | euclid({})", "natten(3, 5)", "window2d(1, 2)",
          "chunk2d(3, 2)", "natten(7, 7) - self", "euclid({}) & causal", "manhattan({}) & ~self & window2d(1, 3)"]


def _dense_of_keys(keys, n):
    got = np.zeros((n, n), dtype=bool)
    for own, lo, hi in zip(keys.own.tolist(), keys.lo.tolist(), keys.hi.tolist()):
        assert lo < hi and not got[own, lo:hi].any()  # non-empty, disjoint runs
        got[own, lo:hi] = True
    return got


def _maximal(keys):
    """No two runs of a row touch (they are joined)."""
    same = keys.own[1:] == keys.own[:-1]
    return not (same & (keys.lo[1:] == keys.hi[:-1])).any()


@pytest.fixture
def fresh_tables():
    G._BALL_TABLES.clear()
    yield
    G._BALL_TABLES.clear()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 24), cols=st.integers(1, 24), offset=st.integers(0, 5), extra=st.integers(-30, 30),
       body=st.sampled_from(BODIES), d=st.integers(0, 7), chunk=st.integers(1, 80),
       path=st.sampled_from(["listed", "table", "refused"]), order=st.sampled_from(["morton", "rows"]))
def test_distance_runs_are_the_reference(fresh_tables, rows, cols, offset, extra, body, d, chunk, path, order):
    """Listed per row (chunks of any size), read from the table of every cell (asked with any
    number of queries), or refused up front as too many cells to list (`_BALL_REQUEST`: the
    row sets then list the grid's points): the reference's keys, in disjoint maximal runs."""
    n = max(1, rows * cols + offset + extra)
    source = f"grid({rows}, {cols}, order={order}, offset={offset}) {{ {body.format(d)} }}"
    pattern = patterndsl.compile(source, n).patterns[0][0]
    saved = G._BALL_CELLS, G._BALL_TABLE_ROWS, G._BALL_LISTED, G._BALL_REQUEST
    G._BALL_CELLS, G._BALL_TABLE_ROWS = chunk, (1 if path == "table" else 1 << 40)
    if path == "refused":
        G._BALL_LISTED, G._BALL_REQUEST = 0, 0
    G.run_table.cache_clear()
    try:
        queries = np.arange(n)
        keys = row_keys(pattern, queries, n)
        again = row_keys(pattern, queries[::-1].copy(), n)  # a second request, rows in another order
        if path == "refused" and order == "morton" and n > offset and ("euclid" in body or "manhattan" in body):
            with pytest.raises(G.NoBoxes):
                G.grid_row_keys(pattern, queries, n)
    finally:
        G._BALL_CELLS, G._BALL_TABLE_ROWS, G._BALL_LISTED, G._BALL_REQUEST = saved
        G.run_table.cache_clear()
        G._grid_points.cache_clear()
    dense = patterndsl.reference.evaluate(pattern, queries, n)
    assert (_dense_of_keys(keys, n) == dense).all(), source
    assert (_dense_of_keys(again, n) == dense[::-1]).all(), source
    assert _maximal(keys), source


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2049, 4099), body=st.sampled_from(BODIES[:3] + ["euclid({}) & causal"]), d=st.integers(1, 9),
       wide=st.booleans())
def test_distance_rows_at_two_to_four_thousand_are_the_reference(fresh_tables, n, body, d, wide):
    """n = 2,049 … 4,099 (a dense bool matrix): every row through `all_rows` (the table read)
    and the exact counts (`grid_degrees`) are the reference's."""
    s = math.isqrt(n)
    dims = (s // 2, 2 * s + 1) if wide else (s, s)
    source = f"grid({dims[0]}, {dims[1]}, order=morton) {{ {body.format(d)} }}"
    pattern = patterndsl.compile(source, n).patterns[0][0]
    dense = patterndsl.reference.evaluate(pattern, np.arange(n), n)
    got = np.zeros((n, n), dtype=bool)
    for rows, keys in all_rows(pattern, n, batch=1 << 11):
        for own, lo, hi in zip(keys.own.tolist(), keys.lo.tolist(), keys.hi.tolist()):
            got[rows[own], lo:hi] = True
    assert (got == dense).all(), source
    degrees = G.grid_degrees(pattern, n)
    assert degrees is None or (degrees == dense.sum(axis=1)).all(), source


@settings(max_examples=8, deadline=None)
@given(n=st.integers(2049, 4099),
       layer1=st.sampled_from(["self", "causal", "grid(S, S, order=morton) { manhattan(1) }", "~rows(0..40)"]),
       d=st.integers(1, 3))
def test_binary_states_stop_at_their_period_and_decide_as_the_recursion(n, layer1, d):
    """binary_states stops once (G_t, Z_t) repeats p steps back (p − 1 steps later); the claim
    from full and empty rows is the one the 64 steps gave (the repeat kept by the steps
    listed), and G_t, Z_t are sound rows of S^t by dense products."""
    s = math.isqrt(n)
    source = f"layers {{\ngrid({s}, {s}, order=morton) {{ euclid({d}) }} | rows(0..3)\n{layer1.replace('S', str(s))}\n}}\n"
    compiled = patterndsl.compile(source, n)
    patterns = [compiled.patterns[k][0] for k in range(compiled.layers)]
    masks = [patterndsl.reference.evaluate(P, np.arange(n), n) for P in patterns]
    states = LD.binary_states(patterns, n, 64)
    S = None
    for t, (Gt, Zt) in enumerate(states[:8], start=1):
        S = masks[0] if t == 1 else masks[(t - 1) % 2].astype(np.float32) @ S.astype(np.float32) > 0
        assert S[Gt].all() and not S[Zt].any()
    saved = LD.binary_states
    LD.binary_states = lambda patterns, n, steps: _unstopped(saved, patterns, n, steps)
    try:
        slow = LD.binary_depth(patterns, n)
    finally:
        LD.binary_states = saved
    assert LD.binary_depth(patterns, n) == slow


def _unstopped(binary_states, patterns, n, steps):
    """The states for all the steps asked (the stop undone: the last period repeated)."""
    states = binary_states(patterns, n, steps)
    p = len(patterns)
    while len(states) < steps and len(states) > p:
        states.append(states[len(states) - p])
    return states


def test_morton_distance_rows_at_a_million_are_listed_once(fresh_tables):
    """n = 2^20, grid(1024, 1024, order=morton) { euclid(2) }: three passes over every row list
    each cell's runs once (the table), later passes none; the binary states stop at step 2
    (no row full or empty); the listed keys are the closed-form degrees."""
    n = 1 << 20
    pattern = patterndsl.compile("let s = isqrt(n)\ngrid(s, s, order=morton) { euclid(2) }", n).patterns[0][0]
    listed = []
    saved = G._listed_ball_runs
    G._listed_ball_runs = lambda node, offsets, ranks: (listed.append(ranks.size), saved(node, offsets, ranks))[1]
    try:
        per_pass = []
        for _ in range(3):
            before = sum(listed)
            degrees = np.zeros(n, dtype=np.int64)
            for rows, keys in all_rows(pattern, n):
                np.add.at(degrees, rows[keys.own], keys.hi - keys.lo)
            per_pass.append(sum(listed) - before)
        states = LD.binary_states([pattern], n, 64)
    finally:
        G._listed_ball_runs = saved
    assert per_pass == [n, 0, 0]
    assert len(states) == 2
    assert (degrees == G.grid_degrees(pattern, n)).all()


def _morton_order_by_python(dims):
    """The Z-order of the issue written out cell by cell (Python ints): the raster ranks sorted by code."""
    cells = math.prod(dims)
    coords = np.unravel_index(np.arange(cells), dims)
    bits = max(int(d - 1).bit_length() for d in dims)
    codes = []
    for t in range(cells):
        code = 0
        for b in range(bits):
            for place, axis in enumerate(range(len(dims) - 1, -1, -1)):
                code |= ((int(coords[axis][t]) >> b) & 1) << (b * len(dims) + place)
        codes.append(code)
    return np.array(sorted(range(cells), key=codes.__getitem__), dtype=np.int64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3).filter(lambda d: math.prod(d) <= 4096))
def test_verify_reads_the_morton_order_as_written(dims):
    """verify's own Z-order (`_verify_morton_order`, the codes built over all cells at once) is
    the cell-by-cell one, and grid.py's."""
    from patterndsl import verify as V

    V._MORTON_ORDERS.clear()
    got = V._verify_morton_order(tuple(dims))
    assert np.array_equal(got, _morton_order_by_python(tuple(dims)))
    assert np.array_equal(got, G.morton_ranks(tuple(dims)))
