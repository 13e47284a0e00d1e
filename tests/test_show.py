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
