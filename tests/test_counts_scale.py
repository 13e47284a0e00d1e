"""The scale paths of the exact counter (issue 11 §4) against the dense reference.

`random(r, seed)` as the only point atom is counted from Floyd's raw draws without
building the key sets (counts._add_random), and `randomgen.key_sets` / `raw_draws` work
in row chunks; both must give exactly the reference's rows, including the rows whose
window meets the last k keys (where the taken picks m_t live) and r close to n.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import randomgen
from patterndsl.analysis import row_degrees
from patterndsl.analysis import counts as C

OTHERS = ["window(2)", "window(0, 3)", "global(0..3)", "global(n-2..n)", "causal", "~causal", "chunk(4)",
          "rows(1..5)", "cols(n-3..n)", "all", "~all"]


def _random_source(draw_op, other, r, seed, negate, parts):
    rnd = f"random({r}, seed={seed})"
    if negate:
        rnd = f"~{rnd}"
    expr = rnd
    for op, o in zip(draw_op, parts):
        expr = f"({expr} {op} {o})"
    return expr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["|", "&"]), min_size=0, max_size=3),
       st.lists(st.sampled_from(OTHERS), min_size=3, max_size=3),
       st.integers(0, 40), st.integers(0, 10 ** 6), st.booleans(), st.integers(4, 80))
def test_random_with_intervals(ops, others, r, seed, negate, n):
    source = _random_source(ops, None, r, seed, negate, others)
    compiled = patterndsl.compile(source, n, simplify=False)
    pattern = compiled.patterns[0][0]
    got = row_degrees(pattern, n)
    assert np.array_equal(got, compiled.dense_all()[0, 0].sum(axis=1)), (source, n)


def test_fast_path_taken_and_exact():
    """bigbird's shape at a few hundred tokens: the fast path runs (no key sets) and is exact."""
    n = 700
    compiled = patterndsl.compile("window(40) | global(0..9) | random(150, seed=2020)", n, simplify=False)
    pattern = compiled.patterns[0][0]
    formula = C._Formula(pattern, n)
    assert C._plain_random(formula) is not None
    calls = []
    original = randomgen.key_sets
    randomgen.key_sets = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        got = row_degrees(pattern, n)
    finally:
        randomgen.key_sets = original
    assert np.array_equal(got, compiled.dense_all()[0, 0].sum(axis=1))
    # only the rows whose window reaches the last 150 keys fall back to the key sets
    assert sum(len(a[1]) for a in calls) <= 40 + 150 + 1


@pytest.mark.parametrize("n, r", [(1, 1), (7, 3), (64, 63), (300, 192), (1000, 5)])
def test_chunked_key_sets_are_the_keys(n, r, monkeypatch):
    monkeypatch.setattr(randomgen, "_CHUNK", 64)  # many chunks, a ragged last one
    rows = np.arange(0, min(3 * n + 5, 120), 2)
    got = randomgen.key_sets(9, rows, n, r)
    for i, row in enumerate(rows[:20]):
        assert sorted(got[i]) == sorted(randomgen.reference_keys(9, int(row), n, r))
    draws = randomgen.raw_draws(9, rows, n, min(r, n))
    for i, row in enumerate(rows[:10]):
        k = min(r, n)
        assert list(draws[i]) == [randomgen.draw(9, int(row), t) % (n - k + t + 1) for t in range(k)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2 ** 64 - 1), st.integers(1, 2 ** 40), st.integers(0, 12), st.integers(1, 9),
       st.lists(st.one_of(st.none(), st.integers(0, 2 ** 64 - 1), st.integers(0, 64)), min_size=1, max_size=3),
       st.integers(1, 4))
def test_draw_minima_is_the_least_offset_draw(seed, n, r, count, offsets, chunk):
    """draw_minima (step by step over row chunks) against the definition of the draws."""
    rows = np.arange(count, dtype=np.int64) * 7919 % max(n, 1)
    k = min(r, n)
    arrays = [None if o is None else (np.arange(count, dtype=np.uint64) * np.uint64(o % 1000) + np.uint64(o))
              for o in offsets]
    saved, randomgen._STEP_ROWS = randomgen._STEP_ROWS, chunk  # several chunks, a ragged last one
    try:
        got = randomgen.draw_minima(randomgen.row_states(seed, rows), n, k, arrays)
    finally:
        randomgen._STEP_ROWS = saved
    for o, least in zip(arrays, got):
        for i, row in enumerate(rows):
            shift = 0 if o is None else int(o[i])
            want = min(((randomgen.draw(seed, int(row), t) % (n - k + t + 1) - shift) % 2 ** 64 for t in range(k)),
                       default=2 ** 64 - 1)
            assert int(least[i]) == want


@pytest.mark.parametrize("source, n", [
    ("window(40) | global(0..9) | random(150, seed=2020)", 700),
    ("window(3) | global(0..2) | random(5, seed=1)", 400),
    ("(window(6) & ~causal) | random(20, seed=3) | cols(n-4..n)", 300),
    ("random(90, seed=11) & ~window(5) & ~global(0..3)", 200),
    ("random(64, seed=5) | global(n//2..n//2+5)", 128),
    ("random(30, seed=4) | causal", 300),  # E is most keys: every row drawn row by row
    ("random(30, seed=4) & ~causal", 300),
])
def test_random_counts_in_slices(source, n, monkeypatch):
    """_add_random with tiny step chunks and slices (the rows with a draw in E drawn again a
    few at a time, the slow rows counted a few at a time) is exact."""
    monkeypatch.setattr(randomgen, "_STEP_ROWS", 5)
    monkeypatch.setattr(C, "_BLOCK_ELEMENTS", 700)
    compiled = patterndsl.compile(source, n, simplify=False)
    pattern = compiled.patterns[0][0]
    assert C._plain_random(C._Formula(pattern, n)) is not None
    assert np.array_equal(row_degrees(pattern, n), compiled.dense_all()[0, 0].sum(axis=1)), source


INTERVALS = ["window(2)", "window(0, 3)", "window(3, -1)", "global(0..3)", "causal", "chunk(4)", "rows(1..5)",
             "cols(n-3..n)", "global(n//2..n//2+2)", "blocks(4) { window(1) }"]
PERIODIC = ["stride(3)", "dilated(2, 3)", "summary(4, 1)"]


@st.composite
def interval_formulas(draw, depth=3):
    """Boolean combinations of interval primitives and at most one periodic primitive."""
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(INTERVALS))
    op = draw(st.sampled_from(["|", "&", "~"]))
    if op == "~":
        return f"~({draw(interval_formulas(depth=depth - 1))})"
    return f"({draw(interval_formulas(depth=depth - 1))} {op} {draw(interval_formulas(depth=depth - 1))})"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interval_formulas(), st.one_of(st.none(), st.sampled_from(PERIODIC)), st.sampled_from(["|", "&"]),
       st.integers(8, 90))
def test_mobius_sum_over_intersections(formula, periodic, op, n):
    """The sum over intersections of intervals (with at most one progression) is exact."""
    source = formula if periodic is None else f"({formula}) {op} {periodic}"
    compiled = patterndsl.compile(source, n, simplify=False)
    pattern = compiled.patterns[0][0]
    terms = C._Formula(pattern, n).mobius()
    got = row_degrees(pattern, n)
    assert np.array_equal(got, compiled.dense_all()[0, 0].sum(axis=1)), (source, n, terms)


def test_mobius_taken_for_banded_hubs():
    n = 50
    for source in ["window(1) | global(0)", "window(256) | global(0..1)", "~causal & chunk(8)", "stride(5) & window(9)"]:
        pattern = patterndsl.compile(source, n, simplify=False).patterns[0][0]
        assert C._Formula(pattern, n).mobius() is not None, source
    # window(1) | global(0): w = +1 for each interval, −1 for each pair, +1 for the triple
    pattern = patterndsl.compile("window(1) | global(0)", n, simplify=False).patterns[0][0]
    assert sorted(w for _, w, _ in C._Formula(pattern, n).mobius()) == [-1, -1, -1, 1, 1, 1, 1]


# ---- check's memory estimate (refused up front, or run) ----------------------------------

from patterndsl.analysis.check import BYTES_PER_LAYER_TOKEN, BYTES_PER_TOKEN, check, memory_needed  # noqa: E402
from patterndsl.errors import SpatError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("source, layers", [
    ("window(1)", 1),
    ("layers { window(1)\n window(1) }", 1),  # one distinct layer: analysed once
    ("layers { window(1)\n causal }", 2),
    ("layers { causal\n heads { 0: window(1)\n 1: chunk(4) } }", 2),  # the largest head, not all heads
    ("layers { causal\n window(1)\n heads { 0: chunk(4)\n 1: chunk(8) } }", 3),
])
def test_memory_needed_counts_the_largest_head(source, layers):
    n = 1000
    compiled = patterndsl.compile(source, n)
    assert memory_needed(compiled) == n * (2 * BYTES_PER_TOKEN + BYTES_PER_LAYER_TOKEN * (layers - 1))


def test_memory_needed_does_not_grow_with_heads():
    heads = "\n".join(f"{h}: window({h + 1})" for h in range(32))
    many = patterndsl.compile(f"layers {{ causal\n heads {{ {heads} }} }}", 4096)
    two = patterndsl.compile("layers { causal\n window(1) }", 4096)
    assert memory_needed(many) == memory_needed(two)


def test_structured_at_2_30_refused_up_front_with_the_memory():
    compiled = patterndsl.compile("window(1)", 1 << 30)
    with pytest.raises(SpatError) as raised:
        check(compiled)
    message = str(raised.value)
    assert "needs about 192.0 GiB" in message and "over the memory budget of 4.0 GiB" in message


def test_two_layer_examples_at_2_24_are_not_refused():
    """fixed and strided (two layers; measured 1.8 GB at 2^24) fit the 4 GiB budget."""
    for name in ("fixed", "strided"):
        compiled = patterndsl.compile(ROOT / "examples" / f"{name}.spat", 1 << 24)
        assert memory_needed(compiled) <= 4 << 30


# ---- rowsets: points sorted per row, intersections with one interval per row clipped -------

from patterndsl.analysis.rowsets import row_keys  # noqa: E402
from patterndsl.reference import evaluate  # noqa: E402

ROW_PARTS = ["logsparse", "causal", "~causal", "window(3)", "window(2, 0)", "rows(2..9)", "cols(1..5)",
             "random(3, seed=7)", "stride(3)", "global(0, 5)", "chunk(4)", "all", "~all", "summary(4, 1)"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(ROW_PARTS), min_size=1, max_size=4),
       st.lists(st.sampled_from(["&", "|"]), min_size=3, max_size=3), st.integers(1, 70))
def test_row_keys_normalized_and_exact(parts, ops, n):
    source = parts[0]
    for op, part in zip(ops, parts[1:]):
        source = f"({source}) {op} {part}"
    pattern = patterndsl.compile(source, n, simplify=False).patterns[0][0]
    keys = row_keys(pattern, np.arange(n), n)
    same = keys.own[1:] == keys.own[:-1]
    assert (keys.own[1:] >= keys.own[:-1]).all()
    assert (keys.lo < keys.hi).all() and (keys.lo >= 0).all() and (keys.hi <= n).all()
    assert (~same | (keys.lo[1:] > keys.hi[:-1])).all()  # disjoint and not touching
    dense = np.zeros((n, n), dtype=bool)
    for row, lo, hi in zip(keys.own, keys.lo, keys.hi):
        dense[row, lo:hi] = True
    assert (dense == evaluate(pattern, np.arange(n), n)).all()


@pytest.mark.parametrize("source, n", [("logsparse & causal", 1000), ("logsparse & causal & window(40)", 300),
                                       ("causal & window(5, 0)", 50), ("logsparse & ~all", 20),
                                       ("rows(3..7) & logsparse", 64)])
def test_row_keys_hand_cases(source, n):
    pattern = patterndsl.compile(source, n, simplify=False).patterns[0][0]
    keys = row_keys(pattern, np.arange(n), n)
    dense = np.zeros((n, n), dtype=bool)
    for row, lo, hi in zip(keys.own, keys.lo, keys.hi):
        dense[row, lo:hi] = True
    assert (dense == evaluate(pattern, np.arange(n), n)).all()


@pytest.mark.parametrize("source", ["rows(45..75) & random(n - 1, seed=16)",
                                    "random(n - 1, seed=16) & rows(45..75)",
                                    "rows(45..75) - random(n - 2, seed=3)"])
def test_row_sets_draw_random_rows_only_where_the_other_operands_hold_keys(source, monkeypatch):
    """An intersection (or difference) reads the operands that list points last, on the rows
    still holding keys: 30 rows drawn, not n rows of n − 1 keys; the keys equal the reference."""
    from patterndsl.analysis.rowsets import row_keys
    from patterndsl.primitives import Random

    n = 3_000
    drawn = []
    real = Random.row_points
    monkeypatch.setattr(Random, "row_points", lambda self, rows, n: drawn.append(len(rows)) or real(self, rows, n))
    compiled = patterndsl.compile(source, n)
    keys = row_keys(compiled.pattern(), np.arange(n, dtype=np.int64), n)
    assert drawn and max(drawn) == 30
    dense = np.zeros((n, n), dtype=bool)
    for own, lo, hi in zip(keys.own, keys.lo, keys.hi):
        dense[own, lo:hi] = True
    assert np.array_equal(dense, compiled.dense())


# ---- the union graph is refused from a sample of rows before it is built --------------------

from patterndsl.analysis import graph as G  # noqa: E402


@pytest.mark.parametrize("source, n", [("stride(2) & causal", 1 << 16), ("blocks(64) { window(15, 0) | summary(8, 1) } & causal",
                                                                  1 << 20)])
def test_union_graph_refused_before_building(source, n, monkeypatch):
    """About n/4 (or n/16 for phi3_small's layout) intervals per row: far over the edge
    limit (a bare stride(2) is now read over its period, through hubs: slow10). The sample of rows refuses it before any batch of rows is read for the edges."""
    pattern = patterndsl.compile(source, n).patterns[0][0]
    batches = []
    original = G.all_rows
    monkeypatch.setattr(G, "all_rows", lambda *a, **k: batches.append(a) or original(*a, **k))
    with pytest.raises(G.TooLarge):
        G.UnionGraph([pattern], n)
    assert batches == []


@pytest.mark.parametrize("source, n", [("stride(2)", 600), ("stride(2)", 3000), ("window(3) | global(0)", 600),
                                       ("blocks(8) { window(1, 0) | summary(4, 1) } & causal", 600)])
def test_union_graph_sample_agrees_with_the_build(source, n, monkeypatch):
    """Where the graph is small the sample lets it be built (stride(2) at 3,000: 1,500
    intervals a row, one batch), and the same graph as without the sample; a tiny edge
    limit is refused by the sample or by the build, never built."""
    pattern = patterndsl.compile(source, n).patterns[0][0]
    built = G.UnionGraph([pattern], n)
    monkeypatch.setattr(G, "refuse_from_sample", lambda *a: None)
    plain = G.UnionGraph([pattern], n)
    assert np.array_equal(built.src, plain.src) and np.array_equal(built.dst, plain.dst)
    monkeypatch.undo()
    edges = int(built.src.size - 2 * (built.size - 1))  # without the tree's own edges
    with pytest.raises(G.TooLarge):
        G.UnionGraph([pattern], n, edge_limit=max(1, edges // 4))
