"""Grid block layouts from coordinate boxes (patterndsl/grid.py: `run_boxes`,
`box_counter`): a run of tokens is exactly a few boxes of cells, and the layouts built
from the boxes equal the dense reference's, for every grid primitive, every token order
that has boxes (rows, tile=) and grids that do and do not divide the blocks."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.grid import Grid, box_counter, run_boxes
from patterndsl.layout import BlockGrid, block_layout, reference_layout


def token_cells(dims, tile):
    """The cells in token order, written out from the orders' definition."""
    if tile is None:
        return [tuple(c) for c in np.ndindex(*dims)]
    tiles = [d // t for d, t in zip(dims, tile)]
    return [tuple(a * t + b for a, t, b in zip(tc, tile, inner))
            for tc in np.ndindex(*tiles) for inner in np.ndindex(*tile)]


@st.composite
def orders(draw):
    three = draw(st.booleans())
    dims = tuple(draw(st.integers(1, 4 if three else 7)) for _ in range(3 if three else 2))
    tile = None
    if draw(st.booleans()):
        tile = tuple(draw(st.sampled_from([t for t in range(1, d + 1) if d % t == 0])) for d in dims)
    return dims, tile


@settings(max_examples=60, deadline=None)
@given(orders(), st.data())
def test_a_run_of_tokens_is_a_few_disjoint_boxes(order, data):
    dims, tile = order
    cells = token_cells(dims, tile)
    lo = data.draw(st.integers(0, len(cells) - 1))
    hi = data.draw(st.integers(lo - 1, len(cells) - 1))
    _, box_lo, box_hi = run_boxes(np.array([lo]), np.array([hi]), dims, tile)
    covered = [c for a, b in zip(box_lo, box_hi) for c in itertools.product(*[range(x, y + 1) for x, y in zip(a, b)])]
    assert sorted(covered) == sorted(cells[lo:hi + 1])  # exactly these cells, each once
    assert len(box_lo) <= 4 * len(dims) - 1


def test_runs_by_hand():
    # a 3 × 4 raster grid: tokens 2 … 9 are (0, 2..3), row 1 whole, (2, 0..1)
    _, lo, hi = run_boxes(np.array([2]), np.array([9]), (3, 4), None)
    assert sorted(map(tuple, np.concatenate([lo, hi], axis=1).tolist())) == [(0, 2, 0, 3), (1, 0, 1, 3), (2, 0, 2, 1)]
    # tiles of 2 × 2 on a 4 × 4 grid: tokens 0 … 7 are the first row of tiles, one box
    _, lo, hi = run_boxes(np.array([0]), np.array([7]), (4, 4), (2, 2))
    assert np.concatenate([lo, hi], axis=1).tolist() == [[0, 0, 1, 3]]


def _operand(source, n):
    pattern = patterndsl.compile(source, n).pattern()
    stack = [pattern]
    while stack:
        node = stack.pop()
        if isinstance(node, Grid):
            return node
        stack.extend(node.children())
    raise AssertionError(source)


@pytest.mark.parametrize("source", [
    "grid(16, 16, tile=(4, 8)) { natten(7, 7) }",
    "grid(16, 16) { natten(7, 7) & chunk2d(4, 4) }",
    "grid(2, 8, 8, tile=(1, 4, 4)) { transpose(natten3d(1, 3, 5)) }",
    "grid(12, 12) { manhattan(3) }",
    "grid(12, 12, tile=(3, 4)) { euclid(2) }",
    "grid(8, 8, tile=(4, 4)) { sliding_tiles(1, 1) & stride2d(2, 3) }",
])
def test_these_operands_have_boxes(source):
    grid = _operand(source, 10_000)
    assert box_counter(grid.operand, grid.dims) is not None


def test_one_dimensional_operands_list_keys():
    assert _operand("grid(8, 8) { causal }", 64)._counter() is None
    # Morton order has boxes too (grid12d): a block's tokens are aligned Z-order cubes
    assert _operand("grid(8, 8, order=morton) { natten(3, 3) }", 64)._counter() is not None


@settings(max_examples=120, deadline=None)
@given(S.grid_sources(max_side=7), st.integers(1, 90), st.sampled_from([(4, 8), (8, 4), (16, 16), (3, 5), (1, 7)]))
def test_layouts_are_the_dense_references(source, n, block):
    pattern = patterndsl.compile(source, n).pattern()
    bq, bk = block
    assert block_layout(pattern, n, bq, bk).same_as(reference_layout(pattern, n, bq, bk)), source


@pytest.mark.parametrize("source,n", [
    ("grid(16, 16, tile=(4, 8)) { natten(7, 7) }", 256),
    ("grid(16, 16, offset=5) { natten(5, 3) }", 250),  # ragged: the last cells do not exist
    ("grid(16, 16) { manhattan(3) | chunk2d(4, 4, shift=(2, 1)) }", 256),
    ("grid(2, 8, 8, tile=(1, 4, 4)) { natten3d(1, 3, 5) & window3d(1, 1, 1) }", 140),
    ("grid(12, 12, tile=(3, 4)) { euclid(2) } | window(3)", 150),
])
def test_box_layouts_by_hand(source, n):
    pattern = patterndsl.compile(source, n).pattern()
    for bq, bk in ((16, 16), (32, 8), (7, 9)):
        assert block_layout(pattern, n, bq, bk).same_as(reference_layout(pattern, n, bq, bk)), (source, bq, bk)


def test_tiles_matching_the_blocks_give_few_blocks():
    # 16 × 16 tiles of 4 × 8 = 32 tokens, blocks of 32: each query block is one tile and
    # natten(3, 3) reaches at most the 3 × 3 tiles around it
    pattern = patterndsl.compile("grid(64, 64, tile=(4, 8)) { natten(3, 3) }", 4096).pattern()
    layout = block_layout(pattern, 4096, 32, 32)
    assert layout.num_blocks <= 9 * (4096 // 32)
    assert layout.same_as(reference_layout(pattern, 4096, 32, 32))


def test_candidates_are_proportional_to_blocks_not_cells():
    # 2^20 cells: the candidates come from 8,192 query blocks' boxes, not the cells' keys
    grid = _operand("grid(1024, 1024, tile=(8, 16)) { natten(7, 7) }", 1 << 20)
    bg = BlockGrid(1 << 20, 128, 128)
    codes = grid.block_candidates(bg)
    assert codes.size <= 9 * bg.num_q and ("point blocks", grid) not in bg.memo


def test_known_coordinates_stay_bounded():
    from patterndsl.codegen import predicate_source
    from patterndsl.grid import _KNOWN_COORDS
    from patterndsl.targets.flex import TorchBackend

    for side in range(2, 180):  # each tiled grid writes two entries
        pattern = patterndsl.compile(f"grid({side}, 2, tile=(1, 2)) {{ natten(1, 1) }}", 2 * side).pattern()
        predicate_source(pattern, "q", "k", 2 * side, TorchBackend(16, 16))
    assert 0 < len(_KNOWN_COORDS) <= _KNOWN_COORDS.size
    assert any(key.startswith("(") for key in _KNOWN_COORDS)  # the latest grid's entries are kept


# ---- the box counter's tables from the rules' key intervals (grid.py `_axis_span`) ------

_BOX_RULES = ["natten(3, 5)", "natten(1, 8)", "window2d(1, 0)", "window2d(9, 2)", "chunk2d(3, 2)",
              "chunk2d(2, 3, shift=(1, 2))", "chunk2d(4, 1, shift=(5, 0))", "all", "self",
              "natten(3, 3) & chunk2d(2, 2, shift=(1, 1))", "window2d(2, 1) & self", "sliding_tiles(1, 3)",
              "natten(2, 2) & window2d(0, 3)"]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(_BOX_RULES), st.sampled_from([(4, 6), (6, 4), (8, 12), (5, 7), (1, 3), (12, 12)]))
def test_key_intervals_are_the_rules_relations(rule, dims):
    """Each axis's interval per coordinate holds exactly the keys of its relation matrix,
    and the counter built from the intervals counts and reaches as the matrix's does."""
    from patterndsl import grid as G

    tile = "" if "sliding" not in rule else f", tile=({2 if dims[0] % 2 == 0 else 1}, {dims[1]})"
    grid = _operand(f"grid({dims[0]}, {dims[1]}{tile}) {{ {rule} }}", dims[0] * dims[1])
    for a, d in enumerate(grid.dims):
        span, m = G._axis_span(grid.operand, a, d), G._axis_relation(grid.operand, a, d)
        assert span is not None and m is not None, rule
        first, last = span
        y = np.arange(d)
        assert np.array_equal((y[None, :] >= first[:, None]) & (y[None, :] <= last[:, None]), m), rule
        from_interval, from_matrix = G._IntervalAxis(first, last), G._TableAxis(m)
        x0, x1 = (v.reshape(-1) for v in np.triu_indices(d))  # every query range x0 ≤ x1 …
        y0, y1 = np.repeat(x0, x0.size), np.repeat(x1, x1.size)  # … against every key range
        x0, x1 = np.tile(x0, x0.size), np.tile(x1, x1.size)
        assert np.array_equal(from_interval.counts(x0, x1, y0, y1), from_matrix.counts(x0, x1, y0, y1)), rule
        assert np.array_equal(from_interval.reach(x0, x1)[1:], from_matrix.reach(x0, x1)[1:]), rule


def test_rules_without_intervals_use_the_relations():
    from patterndsl import grid as G

    for rule in ("stride2d(2, 3)", "transpose(natten(3, 3))", "natten(3, 3) & stride2d(1, 2)"):
        grid = _operand(f"grid(6, 6) {{ {rule} }}", 36)
        assert any(G._axis_span(grid.operand, a, d) is None for a, d in enumerate(grid.dims)), rule
        assert box_counter(grid.operand, grid.dims) is not None, rule


def test_reaches_that_are_not_monotone_use_range_tables():
    # key intervals that go back (coordinate 1 reaches keys before coordinate 0's) and a
    # coordinate without keys (first 6 > last −1): the range's min and max, not its ends
    from patterndsl import grid as G

    first = np.array([2, 0, 0, 6, 4, 4])
    last = np.array([3, 1, 1, -1, 5, 5])
    axis = G._IntervalAxis(first, last)
    assert not axis.monotone
    lo, hi = np.array([0, 3, 2, 3]), np.array([5, 3, 3, 4])
    got = axis.reach(lo, hi)[1:]
    want = [[first[a:b + 1].min() for a, b in zip(lo, hi)], [last[a:b + 1].max() for a, b in zip(lo, hi)]]
    assert [list(x) for x in got] == want


@settings(max_examples=60, deadline=None)
@given(orders(), st.data())
def test_many_runs_at_once_are_each_runs_boxes(order, data):
    """run_boxes of many entries at once (entries that need several rounds of boxes next to
    ones that need one) gives each entry exactly its own tokens' cells."""
    dims, tile = order
    cells = token_cells(dims, tile)
    count = data.draw(st.integers(1, 6))
    lo = np.array([data.draw(st.integers(0, len(cells) - 1)) for _ in range(count)])
    hi = np.array([data.draw(st.integers(int(a) - 1, len(cells) - 1)) for a in lo])
    owner, box_lo, box_hi = run_boxes(lo, hi, dims, tile)
    for e in range(count):
        mine = [c for o, a, b in zip(owner, box_lo, box_hi) if o == e
                for c in itertools.product(*[range(x, y + 1) for x, y in zip(a, b)])]
        assert sorted(mine) == sorted(cells[lo[e]:hi[e] + 1])
