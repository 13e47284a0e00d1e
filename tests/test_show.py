"""`patterndsl show`'s cell counts (patterndsl/show.py) against the dense reference.

The picture's cells are counted per query row and column bin from the row structure,
never from the n keys of a row; every count must equal the dense mask's, for random
nested patterns (hypothesis) and for the path that evaluates a few columns per bin.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl import show


def _expected(compiled, pattern, col_edges):
    from patterndsl.reference import dense_mask

    mask = dense_mask(pattern, compiled.n).astype(np.int64)
    return np.add.reduceat(mask, col_edges[:-1], axis=1)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(), S.sizes(max_n=48), st.integers(1, 9), st.booleans())
def test_bin_counts_are_the_dense_masks(source, n, bins, by_columns):
    compiled = patterndsl.compile(source, n)
    bins = min(bins, n)
    col_edges = (np.arange(bins + 1) * n) // bins
    for pattern in dict.fromkeys(p for layer in compiled.patterns for p in layer):
        counter = show._RowCounter(pattern, n)
        if by_columns:  # every bin narrower than the columns sampled: exact as well
            counter.formula = None
        got = counter.bin_counts(np.arange(n, dtype=np.int64), col_edges)
        assert np.array_equal(got, _expected(compiled, pattern, col_edges)), (source, n, bins, str(pattern))


def test_a_huge_n_is_drawn_from_sampled_rows_that_include_the_singled_out_ones():
    # global(5) at n = 2^26: row 5 is full; it must show although no evenly spaced row hits it
    compiled = patterndsl.compile("window(64) | global(5)", 1 << 26)
    text = show.render(compiled, width=40)
    top = text.splitlines()[3]
    assert "estimated from" in text and set(top.strip("│")) == {"░"}, text
    body = text.splitlines()[4:-2]
    assert all(line.strip("│")[0] == "░" for line in body[:-1])  # column 5 in every row


def test_several_periodic_atoms_with_a_large_period_are_counted_on_sampled_columns(monkeypatch):
    compiled = patterndsl.compile("stride(97) & dilated(4, 89)", 300)  # common period 8,633
    pattern = compiled.pattern(0, 0)
    col_edges = (np.arange(4) * 300) // 3
    sampled = []
    original = show._RowCounter._sampled
    monkeypatch.setattr(show._RowCounter, "_sampled", lambda self, rows, edges: sampled.append(rows.size)
                        or original(self, rows, edges))
    got = show._RowCounter(pattern, 300).bin_counts(np.arange(300, dtype=np.int64), col_edges)
    assert sampled and np.array_equal(got, _expected(compiled, pattern, col_edges))


def count_pairs_evaluated(monkeypatch):
    """Counts the pairs the bernoulli and random primitives decide (predicate entries and
    listed keys): the drawing work of patterns whose keys are drawn."""
    from patterndsl.primitives import PRIMITIVES

    seen = [0]
    for name, method in (("bernoulli", "predicate"), ("random", "row_points")):  # (bernoulli's row_points
        cls = PRIMITIVES[name]                                                   # reads its predicate)
        original = getattr(cls, method)

        def counted(self, *args, _original=original):
            out = _original(self, *args)
            seen[0] += int(np.size(out))
            return out

        monkeypatch.setattr(cls, method, counted)
    return seen


def test_drawn_keys_are_drawn_within_a_bound_at_every_n(monkeypatch):
    """bernoulli(1, 4) at n = 2^26 listed 2^26 keys for each of ~40 rows looked at (and every
    pair of 2^15 rows at n = 2^15): the rows are counted on column samples instead, and the
    density still estimates p/q."""
    seen = count_pairs_evaluated(monkeypatch)
    for n in (1 << 12, 1 << 15, 1 << 20, 1 << 26):
        seen[0] = 0
        text = show.render(patterndsl.compile("bernoulli(1, 4)", n), width=80)
        assert 0 < seen[0] <= 1 << 24, (n, seen[0])  # n = 2^12: its 2^24 pairs, exactly
        density = float(text.split("density ")[1].split("%")[0])
        assert 20 < density < 30, (n, text.splitlines()[0])


def test_few_drawn_keys_are_still_listed_exactly(monkeypatch):
    """random(3) lists 3 keys a row: counted from its keys, not sampled columns (exact below
    EXACT_LIMIT: the pairs are n · 3)."""
    n = 1 << 12
    compiled = patterndsl.compile("random(3, seed=2)", n)
    counter = show._RowCounter(compiled.pattern(0, 0), n)
    counter.use_columns(80)
    assert counter.formula is not None
    text = show.render(compiled, width=80)
    assert f"{3 * n:,} of {n * n:,} pairs" in text
