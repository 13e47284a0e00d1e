"""Block layouts of `blocks(B) { P }` (issue 12) against the dense reference's block
classification (FULL / PARTIAL / EMPTY), for B dividing the kernel's blocks, a multiple of
them and unrelated to them (BlockGrid.covered_states), ragged n, BQ ≠ BK, P nested with
random(avoid=…), grids inside blocks and blocks inside grids; the keys of random(avoid=P)
drawn from P's free runs against the plain-Python rule; work guards at n = 2^20 that count
what is evaluated; and one layout per pattern object."""
from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import randomgen
from patterndsl import strategies as S
from patterndsl.layout import BlockGrid, BlockLayout, block_layout, reference_layout

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def examples(count: int) -> int:
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


def assert_layout_is_the_reference(pattern, n: int, block_q: int, block_k: int):
    got = block_layout(pattern, n, block_q, block_k)
    want = reference_layout(pattern, n, block_q, block_k)
    wrong = np.argwhere(got.to_dense() != want.to_dense())
    assert wrong.size == 0, (f"{pattern} at n={n}, blocks {block_q}×{block_k}: block {tuple(wrong[0])} is "
                             f"{got.to_dense()[tuple(wrong[0])]}, the reference says {want.to_dense()[tuple(wrong[0])]}")
    assert got.same_as(want)


@st.composite
def avoiding_sources(draw) -> str:
    """random(r, seed=s, avoid=Q), Q a small expression (intervals only, or with a stride,
    a summary, a random or a blocks(B) { } in it)."""
    avoid = draw(S.pattern_sources(max_depth=1, leaves=st.one_of(S.token_free_sources(), S.blocked_sources())))
    return f"random({draw(st.integers(0, 5))}, seed={draw(st.integers(0, 99))}, avoid={avoid})"


BODY_LEAVES = st.one_of(S.token_free_sources(), avoiding_sources(), S.blocked_sources(), S.grid_sources(max_side=3))


@st.composite
def kernel_and_pattern_blocks(draw):
    """(BQ, BK, B): B divides both kernel blocks, is a multiple of both, or neither."""
    block_q, block_k = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    how = draw(st.sampled_from(("divides", "multiple", "unrelated")))
    if how == "divides":
        common = np.gcd(block_q, block_k)
        size = draw(st.sampled_from([d for d in range(1, common + 1) if common % d == 0]))
    elif how == "multiple":
        size = int(np.lcm(block_q, block_k)) * draw(st.integers(1, 3))
    else:
        size = draw(st.integers(1, 20))
    return block_q, block_k, size


@settings(max_examples=examples(150), deadline=None)
@given(body=S.pattern_sources(max_depth=2, leaves=BODY_LEAVES), blocks=kernel_and_pattern_blocks(),
       n=S.sizes(max_n=120), outside=st.sampled_from(("", " & causal", " | window(2)", " - stride(3)", " | global(1)")))
def test_blocks_layouts_are_the_reference(body, blocks, n, outside):
    block_q, block_k, size = blocks
    pattern = patterndsl.compile(f"blocks({size}) {{ {body} }}{outside}", n).pattern()
    assert_layout_is_the_reference(pattern, n, block_q, block_k)


@settings(max_examples=examples(60), deadline=None)
@given(body=S.pattern_sources(max_depth=1, leaves=st.one_of(S.token_free_sources(), avoiding_sources())),
       size=st.integers(1, 5), side=st.integers(1, 6), n=S.sizes(max_n=60),
       block_q=st.integers(1, 12), block_k=st.integers(1, 12))
def test_blocks_inside_a_grid(body, size, side, n, block_q, block_k):
    pattern = patterndsl.compile(f"grid({side}, {side}) {{ blocks({size}) {{ {body} }} }}", n).pattern()
    assert_layout_is_the_reference(pattern, n, block_q, block_k)


@pytest.mark.parametrize(("source", "block_q", "block_k"), [
    ("blocks(3) { window(1) }", 8, 8),  # cells of 3 cut every kernel block
    ("blocks(5) { causal } & window(4)", 7, 4),
    ("blocks(12) { global(0) | random(2, seed=4, avoid=window(1) | global(0)) }", 8, 16),
    ("blocks(7) { stride(3) | summary(4, 1) }", 16, 16),
    ("blocks(6) { blocks(4) { self } | window(1) }", 16, 9),  # blocks of blocks: cells of 24
    ("blocks(9) { ~chunk(3) }", 4, 4),  # kernel blocks smaller than the cells, not dividing them
])
@pytest.mark.parametrize("n", [1, 2, 37, 101, 240])
def test_unaligned_blocks_by_hand(source, block_q, block_k, n):
    assert_layout_is_the_reference(patterndsl.compile(source, n).pattern(), n, block_q, block_k)


def test_a_cell_cut_by_a_kernel_block_is_decided_by_its_cells():
    """blocks(3) { self } with blocks of 4: kernel block (0, 0) holds the cells 0..1 × 0..1,
    only (0, 0) and (1, 1) connected: PARTIAL; block (0, 2) holds none of them: EMPTY; the
    last block (n = 6: rows and keys 4, 5, in cell 1) is FULL."""
    layout = block_layout(patterndsl.compile("blocks(3) { self }", 6).pattern(), 6, 4, 4)
    assert layout.to_dense().tolist() == [[1, 1], [1, 2]]


def test_unaligned_layout_at_a_million_tokens_evaluates_only_cut_blocks(monkeypatch):
    """Cells of 48 in kernel blocks of 64: never a block evaluated pair by pair, and only the
    kernel blocks that cut a partial block of the band are evaluated, on their few cells."""
    n, size, block = 1 << 20, 48, 64
    evaluated, cells = [], []
    monkeypatch.setattr(BlockGrid, "evaluate_blocks", lambda self, node, qb, kb: evaluated.append(qb.size))
    original = BlockGrid._cell_states

    def counting(self, operand, count, a0, a1, b0, b1):
        cells.append(int(((a1 - a0 + 1) * (b1 - b0 + 1)).sum()))
        return original(self, operand, count, a0, a1, b0, b1)

    monkeypatch.setattr(BlockGrid, "_cell_states", counting)
    pattern = patterndsl.compile(f"blocks({size}) {{ window(1) | global(0) }}", n).pattern()
    layout = block_layout(pattern, n, block)
    assert evaluated == []
    assert sum(cells) <= 16 * (n // block)  # a few cut blocks per block row, at most 4 cells each
    # by hand: kernel row q meets the cells lo … hi; window(1) reaches the cells lo − 1 … hi + 1,
    # the key blocks first … last; global(0) adds key block 0 to every row and row 0 (cell 0)
    # sees every key block
    q, cells_n, blocks = np.arange(n // block), -(-n // size), n // block
    lo, hi = block * q // size, (block * q + block - 1) // size
    first = np.maximum(lo - 1, 0) * size // block
    last = (np.minimum(np.minimum(hi + 2, cells_n) * size, n) - 1) // block
    band = last - first + 1
    assert layout.num_blocks == int(band.sum() + (first > 0).sum() + (blocks - band[0]))


def test_bigbird_blocked_at_a_million_tokens_draws_no_dense_row(monkeypatch):
    """random(avoid=near) inside blocks(64) draws among near's free runs: the dense rule (a row
    of ⌈n/64⌉ booleans per block row) is never used, and every block row has its near blocks
    and 3 random ones outside them, all FULL."""
    def refuse(*args, **kwargs):
        raise AssertionError("a dense row of the avoided pattern was built")

    monkeypatch.setattr(randomgen, "avoiding_keys", refuse)
    n = 1 << 20
    compiled = patterndsl.compile(EXAMPLES / "bigbird_blocked.spat", n)
    layout = compiled.layout()
    blocks = n // 64
    near = np.full(blocks, 5)  # itself, two neighbours, the first and the last block
    near[[0, -1]] = blocks
    near[[1, -2]] = 4
    assert layout.num_partial == 0
    assert layout.num_full == int((near + np.minimum(3, blocks - near)).sum())


@settings(max_examples=examples(80), deadline=None)
@given(source=avoiding_sources(), n=S.sizes(max_n=50))
def test_avoiding_keys_from_runs_follow_the_plain_python_rule(source, n):
    """Row i holds the free keys at the ranks Floyd's algorithm picks over its m free keys."""
    pattern = patterndsl.compile(source, n, simplify=False).pattern()
    avoided = patterndsl.compile(str(pattern.avoid), n, simplify=False).mask().numpy()
    keys = pattern.row_points(np.arange(n), n)
    for i in range(n):
        free = np.flatnonzero(~avoided[i]).tolist()
        expected = sorted(randomgen.reference_avoiding_keys(pattern.seed, i, free, pattern.r))
        assert sorted(k for k in keys[i].tolist() if k >= 0) == expected


def test_heads_sharing_a_pattern_share_one_layout(monkeypatch):
    n = 4096
    compiled = patterndsl.compile(EXAMPLES / "phi3_small.spat", n)
    built = []
    original = BlockLayout.from_blocks
    monkeypatch.setattr(BlockLayout, "from_blocks", staticmethod(lambda *a, **k: built.append(1) or original(*a, **k)))
    layouts = [block_layout(p, n, 64) for layer in compiled.patterns for p in layer]
    distinct = {id(p) for layer in compiled.patterns for p in layer}
    assert len(built) == len({id(layout) for layout in layouts}) == len(distinct) < len(layouts)
    # an equal pattern of another compile builds its own; a layout no one holds is built again
    again = patterndsl.compile(EXAMPLES / "phi3_small.spat", n).patterns[1][0]
    fresh = block_layout(again, n, 64)
    assert fresh is not layouts[32] and fresh.same_as(layouts[32]) and len(built) == len(distinct) + 1
    assert block_layout(again, n, 64) is fresh and len(built) == len(distinct) + 1
    del fresh
    gc.collect()
    assert block_layout(again, n, 64).same_as(layouts[32]) and len(built) == len(distinct) + 2


BANDS = st.sampled_from(("causal", "window(3)", "window(5, 0)", "window(-2, 6)", "self", "window(0, 40)"))
BAND_CUT = st.one_of(st.sampled_from(("summary(4, 1)", "summary(8, 3, offset=5)", "cols(0, 3..5)", "cols(n - 1)")),
                     S.token_free_sources(), S.blocked_sources())


@settings(max_examples=examples(120), deadline=None)
@given(parts=st.lists(BAND_CUT, min_size=1, max_size=2), bands=st.lists(BANDS, min_size=1, max_size=2),
       inner_band=st.sampled_from(("", " & causal", " & window(1)")), blocks=kernel_and_pattern_blocks(),
       n=S.sizes(max_n=150))
def test_intersections_with_bands_list_only_blocks_in_the_band(parts, bands, inner_band, blocks, n):
    """An intersection's bands cut its sparsest part's candidates where they are made
    (candidates_in_band: column patterns, unions, blocks(B) { } with bands of cells): the
    layout is still the reference's, and the candidates are a superset of its blocks."""
    block_q, block_k, size = blocks
    body = " | ".join(parts)
    source = f"blocks({size}) {{ {body}{inner_band} }} & " + " & ".join(bands)
    pattern = patterndsl.compile(source, n).pattern()
    assert_layout_is_the_reference(pattern, n, block_q, block_k)
    flat = patterndsl.compile(f"({body}) & " + " & ".join(bands), n).pattern()
    assert_layout_is_the_reference(flat, n, block_q, block_k)
    grid = BlockGrid(n, block_q, block_k)
    codes = flat.block_candidates(grid)
    if codes is not None:
        want = reference_layout(flat, n, block_q, block_k).to_dense().reshape(-1)
        assert set(np.flatnonzero(want).tolist()) <= set(codes.tolist())
        assert bool(np.all(codes[1:] > codes[:-1]))


@pytest.mark.parametrize("source", ["blocks(4) { summary(2, 1) } & window(0, 3)", "blocks(4) { cols(1, 5) } & window(3, -1)",
                                    "blocks(2) { window(1) | summary(3, 1) } & window(-1, 5)",
                                    "blocks(4) { summary(4, 2) & window(1, 0) } & causal"])
@pytest.mark.parametrize("block, n", [(4, 37), (4, 40), (8, 61), (2, 19)])
def test_bands_of_cells_by_hand(source, block, n):
    """blocks(B) { } & a band: the band of cells reaches every cell whose tokens meet it
    (a band end inside a cell keeps that cell)."""
    assert_layout_is_the_reference(patterndsl.compile(source, n).pattern(), n, block, block)
