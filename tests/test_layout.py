"""Block layouts (patterndsl.layout) against the dense reference, block by block.

The reference layout reads every block off the dense mask; the structural pass
must give the same blocks with the same full/partial split — for random nested
patterns (hypothesis) at ragged n with BQ ≠ BK, for every primitive by hand, and
for the examples — and its CSR lists, transposed lists and counts must agree
with one another.
"""
from __future__ import annotations

import collections
import itertools
import os
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.layout import (FULL, PARTIAL, BlockGrid, BlockLayout, block_layout,
                               describe_layouts, efficiency_warning, reference_layout)

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
BLOCK_SIZES = st.sampled_from([16, 17, 24, 32, 48, 64, 100, 128])


def examples(count: int) -> int:
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


def check_layout(pattern, n: int, block_q: int, block_k: int) -> BlockLayout:
    got = block_layout(pattern, n, block_q, block_k)
    want = reference_layout(pattern, n, block_q, block_k)
    grid_got, grid_want = got.to_dense(), want.to_dense()
    wrong = np.argwhere(grid_got != grid_want)
    assert wrong.size == 0, (f"{pattern} at n={n}, blocks {block_q}×{block_k}: block (qb, kb) = "
                             f"{tuple(wrong[0])} is {grid_got[tuple(wrong[0])]}, the reference says "
                             f"{grid_want[tuple(wrong[0])]}")
    assert got.connections == want.connections
    check_consistent(got)
    return got


def check_consistent(layout: BlockLayout):
    """The CSR lists, the transposed lists and the grid say the same thing."""
    grid = layout.to_dense()
    for kind, state in (("partial", PARTIAL), ("full", FULL)):
        ptr, idx = getattr(layout, f"{kind}_ptr"), getattr(layout, f"{kind}_idx")
        t_ptr, t_idx = getattr(layout, f"t_{kind}_ptr"), getattr(layout, f"t_{kind}_idx")
        assert ptr[0] == 0 and ptr[-1] == idx.size and np.all(np.diff(ptr) >= 0)
        for qb in range(layout.num_q_blocks):
            row = idx[ptr[qb]:ptr[qb + 1]]
            assert np.all(np.diff(row) > 0), "key blocks ascend within a query block"
            assert np.array_equal(row, np.nonzero(grid[qb] == state)[0])
        for kb in range(layout.num_k_blocks):
            assert np.array_equal(t_idx[t_ptr[kb]:t_ptr[kb + 1]], np.nonzero(grid[:, kb] == state)[0])
    assert layout.num_blocks == np.count_nonzero(grid)
    for array in (layout.partial_idx, layout.full_idx, layout.t_partial_idx, layout.t_full_idx):
        assert np.iinfo(array.dtype).max >= max(layout.num_q_blocks, layout.num_k_blocks)


@settings(max_examples=examples(500), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(max_depth=4), st.integers(1, 600), BLOCK_SIZES, BLOCK_SIZES)
def test_nested_patterns_match_the_reference(source, n, block_q, block_k):
    check_layout(patterndsl.compile(source, n).pattern(), n, block_q, block_k)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=list(HealthCheck))
@given(S.pattern_sources(max_depth=3), st.integers(1, 90), st.integers(1, 40), st.integers(1, 40))
def test_small_and_odd_block_sizes(source, n, block_q, block_k):
    check_layout(patterndsl.compile(source, n).pattern(), n, block_q, block_k)


PRIMITIVE_CASES = [
    "all", "none", "self", "causal", "window(0)", "window(5)", "window(40)", "window(3, -2)", "window(-7, 20)",
    "dilated(0, 3)", "dilated(4, 1)", "dilated(3, 7)", "dilated(9, 40)", "stride(1)", "stride(3)", "stride(64)",
    "stride(97)", "chunk(1)", "chunk(5)", "chunk(64)", "chunk(100)", "summary(8, 1)", "summary(64, 64)",
    "summary(50, 7)", "global(0)", "global(0..8, 40..90, n-1)", "rows(3..70)", "cols(max(0, n-20)..n)", "cols(1, 5, 64)",
    "logsparse", "random(0)", "random(3, seed=1)", "random(200, seed=7)",
]


@pytest.mark.parametrize("source", PRIMITIVE_CASES)
@pytest.mark.parametrize("n, block_q, block_k", [(1, 16, 16), (63, 16, 16), (200, 32, 16), (257, 64, 128), (300, 17, 33)])
def test_each_primitive(source, n, block_q, block_k):
    check_layout(patterndsl.compile(source, n, simplify=False).pattern(), n, block_q, block_k)


@pytest.mark.parametrize("source", [
    "window(8) | window(8, 30)",           # two partial blocks whose union is full
    "window(20) & ~window(3)",             # an intersection of partial blocks that is empty somewhere
    "stride(2) | stride(2) - self",        # partial parts that cover each other
    "(window(16) | cols(0..4)) & causal",  # the sinks shape: counts pass through the union
    "~(stride(3) & causal) & window(40)",
    "chunk(32) - (chunk(32) & ~chunk(16))",
])
@pytest.mark.parametrize("n", [64, 131])
def test_ambiguous_combinations(source, n):
    for block_q, block_k in ((16, 16), (32, 16), (16, 64)):
        check_layout(patterndsl.compile(source, n, simplify=False).pattern(), n, block_q, block_k)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.spat")), ids=lambda p: p.stem)
def test_examples(path):
    compiled = patterndsl.compile(path, 520)
    for layer in range(compiled.layers):
        for head in range(compiled.heads):
            check_layout(compiled.pattern(layer, head), 520, *compiled.block_sizes())


def test_window_is_proportional_to_its_blocks():
    """window(256) | global(0..8) at n = 2^20: the candidates are the band's blocks and
    block row 0 and column 0 — not the 8192² grid."""
    n = 1 << 20
    pattern = patterndsl.compile("window(256) | global(0..8)", n).pattern()
    grid = BlockGrid(n, 128, 128)
    assert pattern.block_estimate(grid) < 10 * grid.num_q
    layout = block_layout(pattern, n, 128)
    # the band (5 key blocks a row, 6 fewer at the ends), then row 0 and column 0 beyond it
    assert layout.num_blocks == (5 * 8192 - 6) + 2 * (8192 - 3)
    assert layout.partial_idx.dtype == np.int16


def test_a_sparse_part_lists_an_intersection():
    """stride(100) touches every 64 × 64 block; & window(64) lists only the band, and only
    the diagonal blocks hold a multiple of 100 within ±64."""
    n = 1 << 16
    pattern = patterndsl.compile("stride(100) & window(64)", n).pattern()
    assert pattern.block_estimate(BlockGrid(n, 64, 64)) <= 5 * (n // 64)
    layout = block_layout(pattern, n, 64)
    assert layout.num_blocks == n // 64


def test_layout_api_shares_layouts_and_reads_the_block_statement():
    compiled = patterndsl.compile("block 32\nlayers { heads { 0..2: window(4)\n 2..3: causal }\n window(4) }", 100)
    assert compiled.block_sizes() == (32, 32)
    first = compiled.layouts(0)
    assert first[0] is first[1] and first[0] is not first[2]
    assert compiled.layouts(1)[0] is first[0], "layers with the same pattern share the layout"
    assert compiled.layout(0, 2, block_size=(16, 64)).block_q == 16
    assert compiled.layout(0, 2, block_size=(16, 64)).block_k == 64
    with pytest.raises(patterndsl.SpatError, match="positive integer"):
        compiled.layouts(0, block_size=0)


def test_grid_text_and_numbers():
    layout = block_layout(patterndsl.compile("window(1) | cols(0)", 10).pattern(), 10, 4)
    # 10 = 4 + 4 + 2: the last block row and column are ragged; the 2 × 2 corner is full.
    assert str(layout).splitlines()[1:] == ["++.", "+++", "++#"]
    assert layout.num_full == 1 and layout.num_partial == 7
    assert layout.connections == 28 + 8  # the band's 10 + 2·9 pairs, then column 0 below it
    assert layout.computed_pairs() == 4 * 16 + 3 * 8 + 4
    assert layout.efficiency() == pytest.approx(36 / 92)
    assert layout.sparsity() == pytest.approx(1 / 9)


def test_efficiency_warning_suggests_a_block_size():
    compiled = patterndsl.compile(EXAMPLES / "design_card.spat", 4096)
    found = efficiency_warning(compiled.pattern(), compiled.layout())
    message, help = found.message, found.help
    assert found.severity == "warning"
    assert "block efficiency 7.8% with 64 × 64 blocks" in message
    assert "block 16 gives" in help
    assert efficiency_warning(patterndsl.compile("window(256)", 4096).pattern(),
                              patterndsl.compile("window(256)", 4096).layout()) is None


def test_efficiency_warning_without_a_better_block_size():
    compiled = patterndsl.compile("stride(40)", 1024)
    found = efficiency_warning(compiled.pattern(), compiled.layout(block_size=16))
    help = found.help
    assert "no block size from 16 to 256 does much better" in help and "dense kernel" in help


def test_describe_layouts_names_shared_layouts():
    compiled = patterndsl.compile("heads { 0..2: window(30)\n 2..3: stride(40) }", 256)
    text, warnings = describe_layouts(compiled, block_size=16, grid=True)
    assert "layer 0, head 1: the same layout as layer 0, head 0" in text
    assert [w.message.split(":")[0] for w in warnings] == ["layer 0, head 2"]


def test_the_estimate_hands_its_grid_only_to_the_same_pattern_and_blocks():
    """layout_memory hands the grid it estimated on to the block_layout after it; a layout of
    another pattern, other blocks or another n must not read that grid's memo."""
    from patterndsl.layout import layout_memory

    grid_pattern = patterndsl.compile("grid(8, 12, tile=(4, 4)) { natten(3, 5) }", 96).pattern()
    other = patterndsl.compile("grid(8, 12) { natten(5, 3) } | window(3)", 96).pattern()
    for pattern, n, block in ((grid_pattern, 96, 16), (other, 96, 16), (grid_pattern, 96, 32), (grid_pattern, 80, 16)):
        layout_memory(grid_pattern, 96, 16, 16)
        check_layout(pattern, n, block, block)
    layout_memory(grid_pattern, 96, 16, 16)
    check_layout(grid_pattern, 96, 16, 16)  # the hand-off itself


@settings(max_examples=40, deadline=None)
@given(S.pattern_sources(), S.sizes(min_n=1, max_n=60), st.sampled_from([(4, 4), (8, 3), (5, 16)]), st.randoms())
def test_blocks_in_any_order_give_the_same_layout(source, n, block, rng):
    """from_blocks sorts blocks that are not row-major (and takes row-major ones as they come)."""
    pattern = patterndsl.compile(source, n).pattern()
    want = reference_layout(pattern, n, *block)
    qb, kb, states = want.blocks()
    order = list(range(qb.size))
    rng.shuffle(order)
    got = BlockLayout.from_blocks(n, *block, qb[order], kb[order], states[order], want.connections)
    assert got.same_as(want)
    for name in ("t_partial_ptr", "t_partial_idx", "t_full_ptr", "t_full_idx"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 7, 32766, 32767, 32768, 40000]), st.sampled_from([1, 3, 32767, 32768]),
       st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.sampled_from([PARTIAL, FULL])),
                max_size=60), st.booleans())
def test_from_blocks_lists_by_hand(num_q, num_k, drawn, shuffle):
    """from_blocks' four CSR lists against lists built by hand from the blocks, across the
    index types' edges (16-bit indices up to 32,767 blocks a side, 32-bit beyond): each row's
    key blocks ascending, each column's query blocks ascending, pointers where rows start."""
    blocks = {}
    for q, k, state in drawn:  # one state per block
        blocks.setdefault((q % num_q, k % num_k), state)
    listed = sorted(blocks) if not shuffle else list(blocks)
    qb = np.array([q for q, _ in listed], dtype=np.int64)
    kb = np.array([k for _, k in listed], dtype=np.int64)
    states = np.array([blocks[b] for b in listed], dtype=np.int8)
    # one n for both sides: the side with fewer blocks has wider ones (and then about num_q, num_k)
    n = max(num_q, num_k)
    block_q, block_k = -(-n // num_q), -(-n // num_k)
    num_q, num_k = -(-n // block_q), -(-n // block_k)
    keep = (qb < num_q) & (kb < num_k)
    qb, kb, states = qb[keep], kb[keep], states[keep]
    got = BlockLayout.from_blocks(n, block_q, block_k, qb, kb, states, 0, ordered=None if shuffle else True)
    for name, wanted in (("partial", PARTIAL), ("full", FULL)):
        pairs = sorted((int(q), int(k)) for q, k, s in zip(qb, kb, states) if s == wanted)
        for prefix, major, count in (("", 0, num_q), ("t_", 1, num_k)):
            ordered = sorted(pairs, key=lambda p: (p[major], p[1 - major]))
            ptr, idx = getattr(got, f"{prefix}{name}_ptr"), getattr(got, f"{prefix}{name}_idx")
            per_row = collections.Counter(p[major] for p in ordered)
            assert ptr.tolist() == [0] + list(itertools.accumulate(per_row[r] for r in range(count))), prefix + name
            assert idx.tolist() == [p[1 - major] for p in ordered], prefix + name
            assert idx.dtype == (np.int16 if max(num_q, num_k) <= 32767 else np.int32)


@settings(max_examples=60, deadline=None)
@given(S.pattern_sources(), S.sizes(min_n=1, max_n=80), st.randoms())
def test_pairs_agree_with_the_dense_reference(source, n, rng):
    """Pattern.pairs — what the block layout asks of `blocks(B) { … }` cells and of unions'
    remaining pairs — at random pairs and on the whole diagonal band of offsets −2 … 2,
    against the dense reference."""
    compiled = patterndsl.compile(source, n)
    pattern, dense = compiled.pattern(), compiled.dense()
    i = np.array([rng.randrange(n) for _ in range(200)], dtype=np.int64)
    j = np.array([rng.randrange(n) for _ in range(200)], dtype=np.int64)
    rows = np.arange(n, dtype=np.int64)
    for d in range(-2, 3):
        keep = (rows + d >= 0) & (rows + d < n)
        i, j = np.concatenate([i, rows[keep]]), np.concatenate([j, rows[keep] + d])
    got = np.asarray(pattern.pairs(i, j, n), dtype=bool)
    assert got.shape == i.shape and np.array_equal(got, dense[i, j])


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["causal", "self", "window({a})", "window({a}, {b})"]), st.integers(-70, 70),
       st.integers(-70, 70), S.sizes(min_n=1, max_n=60))
def test_band_pairs_by_their_meaning(form, a, b, n):
    """The band primitives' pairs (one difference j − i against the band) at every pair of n,
    in int64 and in int32, against their reference_pair."""
    text = form.format(a=abs(a), b=b if abs(a) + b >= 0 else -b)
    pattern = patterndsl.compile(text, n, simplify=False).pattern()
    i, j = (x.reshape(-1) for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    want = np.array([pattern.reference_pair(int(p), int(q), n) for p, q in zip(i, j)], dtype=bool)
    for dtype in (np.int64, np.int32):
        assert np.array_equal(pattern.pairs(i.astype(dtype), j.astype(dtype), n), want), (text, dtype)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 40), st.integers(1, 40), S.sizes(min_n=1, max_n=90), st.integers(1, 20), st.integers(1, 20))
def test_dilated_block_counts_against_the_dense_reference(w, d, n, block_q, block_k):
    """dilated(w, d)'s closed-form pair count of every block (ragged ones too), and the layout's
    connections counted from the blocks, against the dense reference."""
    pattern = patterndsl.compile(f"dilated({w}, {d})", n, simplify=False).pattern()
    grid = BlockGrid(n, block_q, block_k)
    qb, kb = (x.reshape(-1) for x in np.meshgrid(np.arange(grid.num_q), np.arange(grid.num_k), indexing="ij"))
    padded = np.zeros((grid.num_q * block_q, grid.num_k * block_k), dtype=np.int64)
    padded[:n, :n] = patterndsl.compile(f"dilated({w}, {d})", n).dense()
    want = padded.reshape(grid.num_q, block_q, grid.num_k, block_k).sum(axis=(1, 3)).reshape(-1)
    assert np.array_equal(pattern.block_counts(grid, qb, kb), want)
    union = patterndsl.compile(f"dilated({w}, {d}) | global(0..2)", n)
    assert block_layout(union.pattern(), n, block_q, block_k).connections == int(union.dense().sum())
