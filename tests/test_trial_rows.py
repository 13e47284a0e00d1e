"""The block-size search's sampled trials read the sampled rows' keys as intervals
(patterndsl.layout._strips_touched), not every key block of each sampled strip: the same
blocks and pairs, in work proportional to the intervals (issue 10: `compile --target flex`
of window(2) at 2^26 stated 4 million key blocks per strip, 64 million per trial)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import layout as L
from patterndsl import strategies as S
from patterndsl.analysis.counts import row_degrees
from patterndsl.reference import dense_mask


def _strips(grid, picks):
    qs = np.unique(np.asarray(picks, dtype=np.int64) % grid.num_q)
    r0, r1 = grid.rows(qs)
    return qs, r0, r1, np.concatenate([np.arange(a, b + 1, dtype=np.int64) for a, b in zip(r0, r1)])


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(max_depth=3), st.integers(1, 600), st.sampled_from([1, 3, 16, 32]),
       st.lists(st.integers(0, 1 << 20), min_size=1, max_size=6))
def test_intervals_give_the_stated_blocks(source, n, size, picks):
    pattern = patterndsl.compile(source, n).pattern()
    grid = L.BlockGrid(n, size, size)
    qs, r0, r1, rows = _strips(grid, picks)
    got = L._strips_touched(pattern, grid, r0, r1, rows)
    assume(got is not None)
    want = L._strips_touched_by_states(pattern, L.BlockGrid(n, size, size), qs, rows, L._point_nodes(pattern))
    assert got == want
    # and the stated blocks are the dense reference's (the specification)
    mask = np.zeros((qs.size * size, grid.num_k * size), dtype=bool)
    dense = dense_mask(pattern, n)
    for k, (a, b) in enumerate(zip(r0, r1)):
        mask[k * size:k * size + b - a + 1, :n] = dense[a:b + 1]
    blocks = mask.reshape(qs.size, size, grid.num_k, size).any(axis=(1, 3))
    heights, widths = r1 - r0 + 1, np.minimum(n - np.arange(grid.num_k) * size, size)
    assert got == (int(blocks.sum()), int((blocks * heights[:, None] * widths[None, :]).sum()))


def test_a_huge_band_trial_reads_rows_not_blocks(monkeypatch):
    """window(2) at 2^26: every size's trial from its sampled rows' intervals; none states a
    strip's 4 million key blocks, and the estimate is the band's 3 blocks a row."""
    n = 1 << 26
    pattern = patterndsl.compile("window(2)", n).pattern()
    monkeypatch.setattr(L, "_strips_touched_by_states", lambda *a: pytest.fail("stated every key block"))
    for size in (16, 64, 256):
        got = L.estimate_trial(pattern, n, size, 5 * n - 6)
        assert got.num_blocks == pytest.approx(3 * (n // size) - 2, rel=0.05)
        assert got.computed == pytest.approx((3 * (n // size) - 2) * size * size, rel=0.05)


def test_too_many_intervals_fall_back_to_the_blocks(monkeypatch):
    """A trial whose rows hold more intervals than the bound states the blocks instead, with the
    same answer as a layout built in full (every strip sampled)."""
    n = 3000
    monkeypatch.setattr(L, "_MAX_TRIAL_INTERVALS", 8)
    pattern = patterndsl.compile("stride(7) | window(3)", n).pattern()
    called = []
    original = L._strips_touched_by_states
    monkeypatch.setattr(L, "_strips_touched_by_states", lambda *a: called.append(1) or original(*a))
    got = L.estimate_trial(pattern, n, 16, int(row_degrees(pattern, n).sum()))
    want = L.block_layout(pattern, n, 16, 16)
    assert called and got.exact
    assert (got.num_blocks, got.computed) == (want.num_blocks, want.computed_pairs())


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(max_depth=3), st.integers(1, 300), st.integers(1, 40), st.integers(1, 40),
       st.integers(0, 300), st.integers(0, 300))
def test_computed_pairs_in_closed_form_are_the_blocks_areas(source, n, block_q, block_k, offset, length):
    """BlockLayout.computed_pairs from the block counts equals the sum of every computed block's
    in-bounds area read off the dense reference, for whole layouts and layouts of some rows."""
    pattern = patterndsl.compile(source, n).pattern()
    offset, length = offset % n, 1 + length % n
    length = min(length, n - offset)
    mask = dense_mask(pattern, n)
    for q0, m in ((0, n), (offset, length)):
        layout = L.block_layout(pattern, n, block_q, block_k, q_offset=q0, q_len=m)
        rows = mask[q0:q0 + m]
        num_q, num_k = -(-m // block_q), -(-n // block_k)
        padded = np.zeros((num_q * block_q, num_k * block_k), dtype=bool)
        padded[:m, :n] = rows
        touched = padded.reshape(num_q, block_q, num_k, block_k).any(axis=(1, 3))
        heights = np.minimum(m - np.arange(num_q) * block_q, block_q)
        widths = np.minimum(n - np.arange(num_k) * block_k, block_k)
        assert layout.computed_pairs() == int((touched * heights[:, None] * widths[None, :]).sum())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 200), st.integers(1, 400), st.sampled_from([1, 7, 16, 32]),
       st.sampled_from([("", "window2d(1, 3) & causal"), (", order=morton", "natten(3, 3) & causal"),
                        ("", "chunk2d(2, 3) & causal"), (", order=morton", "stride2d(2, 3) & causal")]))
def test_a_listed_grid_lists_only_its_cells_rows(offset, extra, block, grid_and_operand):
    """A grid whose operand has no box form lists its keys row by row (primitives.point_blocks):
    only the rows of its cells, whatever n is, and its layout is still the dense reference's
    (issue 10: strided_image's 64 × 64 grids at n = 2^26 listed all 2^26 rows, 78 CPU s)."""
    from patterndsl.grid import Grid

    n = offset + 48 + extra
    options, operand = grid_and_operand
    source = f"grid(6, 8, offset={offset}{options}) {{ {operand} }}"
    pattern = patterndsl.compile(source, n).pattern()
    assert isinstance(pattern, Grid) and pattern._counter() is None and pattern._split() is None
    listed = []
    original = Grid.row_points
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Grid, "row_points", lambda self, rows, n: listed.append(np.asarray(rows)) or original(self, rows, n))
        layout = L.block_layout(pattern, n, block, block)
    rows = np.concatenate(listed)
    assert rows.min() >= offset // block * block and rows.max() < offset + 48
    want = L.reference_layout(pattern, n, block, block)
    assert layout.same_as(want)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(max_depth=3), st.integers(1, 200), st.lists(st.integers(0, 1 << 20), min_size=1, max_size=12))
def test_row_keys_list_rows_in_order_and_exactly(source, n, picks):
    """row_keys' intervals come row by row in order (its intersections read the rows still
    holding keys off ``own`` by its changes, without sorting it again) and are the dense
    reference's keys of each row."""
    from patterndsl.analysis.rowsets import row_keys

    pattern = patterndsl.compile(source, n).pattern()
    rows = np.asarray(picks, dtype=np.int64) % n
    keys = row_keys(pattern, rows, n)
    assert (keys.own[1:] >= keys.own[:-1]).all()
    got = np.zeros((rows.size, n), dtype=bool)
    for own, lo, hi in zip(keys.own, keys.lo, keys.hi):
        got[own, lo:hi] = True
    assert np.array_equal(got, dense_mask(pattern, n)[rows])


@pytest.mark.parametrize("later", ["all", "grid(64, 64) { window2d(63, 63) }"])
def test_a_module_refused_at_a_later_layer_counts_no_earlier_layer(later, monkeypatch):
    """emit_module refuses a layer's layout over the budget before it builds the earlier layers'
    (patterns without a grid: CompiledPattern.require_layout_memory; strided at 2^26 built layer
    0, then refused layer 1), and builds every layout before it counts any layout's connections
    (`fixed` at 2^26 counted layer 0's 2^26 rows, then refused layer 1)."""
    from patterndsl.errors import SpatError
    from patterndsl.targets import flex

    n, block = 4096, 16
    first, second = (L.layout_memory(patterndsl.compile(p, n).pattern(), n, block, block) for p in ("window(1)", later))
    assert first < second
    compiled = patterndsl.compile(f"layers {{\n    window(1)\n    {later}\n}}\n", n, memory_budget=(first + second) // 2)
    monkeypatch.setattr(L, "row_degrees", lambda *a: pytest.fail("counted a layout before the refusal"))
    if later == "all":
        monkeypatch.setattr(L, "block_layout", lambda *a, **k: pytest.fail("built a layout before the refusal"))
    with pytest.raises(SpatError, match="the block layout of"):
        flex.emit_module(compiled, block)
