"""The efficiency warning's block-size search estimates large trials (patterndsl.layout.estimate_trial).

A trial block size whose layout would draw many random keys is estimated from evenly spaced
query-block rows; the estimate is exact when every row is sampled (checked against the full
layout, itself checked against the dense reference in test_layout.py), close when sampled, and
its work is bounded by the keys of the sampled rows, never the whole pattern's (counted, not timed).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import layout as L
from patterndsl import primitives as P
from patterndsl import strategies as S
from patterndsl.analysis.counts import row_degrees


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(max_depth=3), st.integers(1, 400), st.sampled_from([16, 32, 64]))
def test_an_estimate_of_every_row_is_the_layout(source, n, size):
    pattern = patterndsl.compile(source, n).pattern()
    connections = int(row_degrees(pattern, n).sum())
    got = L.estimate_trial(pattern, n, size, connections)
    want = L.block_layout(pattern, n, size, size)
    assert got.exact and got.of == want.num_q_blocks
    assert got.num_blocks == want.num_blocks
    assert got.computed == want.computed_pairs()
    assert got.efficiency() == pytest.approx(connections / want.computed_pairs() if want.computed_pairs() else 1.0)


@pytest.mark.parametrize("source", ["random(300, seed=1)", "window(96) | global(0..128) | random(192, seed=2020)",
                                    "random(40, seed=3) & causal"])
def test_a_sampled_estimate_is_close(source, monkeypatch):
    n = 8192
    monkeypatch.setattr(L, "_MAX_TRIAL_POINTS", 1 << 16)
    pattern = patterndsl.compile(source, n).pattern()
    connections = int(row_degrees(pattern, n).sum())
    for size in (16, 64):
        got = L.estimate_trial(pattern, n, size, connections)
        want = L.block_layout(pattern, n, size, size)
        assert not got.exact
        assert got.efficiency() == pytest.approx(want.efficiency(), rel=0.1)
        assert got.num_blocks == pytest.approx(want.num_blocks, rel=0.1)


def _count_drawn_rows(monkeypatch):
    drawn = []
    original = P.Random._keys

    def counting(self, rows, n):
        drawn.append(np.asarray(rows).size)
        return original(self, rows, n)

    monkeypatch.setattr(P.Random, "_keys", counting)
    return drawn


def test_the_search_for_random_builds_no_trial_layout(monkeypatch):
    n = 8192
    compiled = patterndsl.compile("random(1000, seed=1)", n)
    current = compiled.layout()
    built = []
    original = L.block_layout
    monkeypatch.setattr(L, "block_layout", lambda *a, **k: built.append(a) or original(*a, **k))
    drawn = _count_drawn_rows(monkeypatch)
    found = L.efficiency_warning(compiled.pattern(), current)
    assert built == []
    # each of the four other block sizes draws the keys of at most max(16 strips, the budget) rows
    per_size = [max(L._MIN_SAMPLED_STRIPS * size, L._MAX_TRIAL_POINTS // 1000 + size) for size in (16, 32, 64, 256)]
    assert sum(drawn) <= sum(per_size) < 4 * n
    assert found is not None and "no block size from 16 to 256 does much better" in found.help


def test_a_sampled_suggestion_says_about(monkeypatch):
    monkeypatch.setattr(L, "_MAX_TRIAL_POINTS", 1 << 10)
    compiled = patterndsl.compile("window(3) | random(2, seed=5)", 4096)
    found = L.efficiency_warning(compiled.pattern(), compiled.layout(block_size=256))
    assert "block 16 gives about" in found.help


def test_the_layout_of_random_alone_counts_from_its_blocks(monkeypatch):
    n = 2048
    pattern = patterndsl.compile("random(50, seed=4)", n).pattern()
    monkeypatch.setattr(L, "row_degrees", lambda *a: pytest.fail("counted the rows again"))
    assert L.block_layout(pattern, n, 64).connections == n * 50
