"""Exact counts of grid patterns from coordinate boxes (issue 12, grid12c): a query's keys
as runs of tokens (patterndsl/grid.py `box_runs`, `grid_row_keys`, `grid_degrees`, the
`GridRun` atoms of the row formula), against the dense reference — ragged n (cells at or
beyond n do not exist), raster, tiled and Morton orders, offset grids, 3D grids, grids
combined with each other (a file's layers) and with 1D patterns."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import grid as G
from patterndsl import strategies as S
from patterndsl.analysis.counts import connection_counts, degree_stats, row_degrees
from patterndsl.analysis.rowsets import row_keys
from patterndsl.ir import IndexSet
from patterndsl.reference import evaluate


def compiled(source: str, n: int):
    return patterndsl.compile(source, n).patterns[0][0]


def dense_rows(keys, n: int) -> np.ndarray:
    """The bool [rows, n] matrix of RowKeys (each interval written out)."""
    out = np.zeros((keys.m, n), dtype=bool)
    for own, lo, hi in zip(keys.own, keys.lo, keys.hi):
        out[own, lo:hi] = True
    return out


def assert_exact(pattern, n: int):
    """Degrees, the row sets, the grid's own runs and the empty rows, each against the
    dense reference."""
    reference = evaluate(pattern, np.arange(n), n)
    assert (row_degrees(pattern, n) == reference.sum(axis=1)).all()
    degrees = G.grid_degrees(pattern, n)
    if degrees is not None:
        assert (degrees == reference.sum(axis=1)).all()
    rows = np.arange(n, dtype=np.int64)
    keys = row_keys(pattern, rows, n)
    assert (dense_rows(keys, n) == reference).all()
    # the row sets' invariant: per row sorted, disjoint, not touching
    same = keys.own[1:] == keys.own[:-1]
    assert (keys.own[1:] >= keys.own[:-1]).all() and (keys.lo[1:][same] > keys.hi[:-1][same]).all()
    if isinstance(pattern, G.Grid):
        runs = pattern.row_keys(rows[::-1].copy(), n)  # any order of rows
        if runs is not None:
            assert (dense_rows(runs, n) == reference[::-1]).all()


# ---- runs of a box of cells -----------------------------------------------------------------


@st.composite
def boxes(draw):
    axes = draw(st.integers(1, 3))
    dims = tuple(draw(st.integers(1, 7)) for _ in range(axes))
    tile = None
    if axes > 1 and draw(st.booleans()):
        tile = tuple(draw(st.sampled_from([t for t in range(1, d + 1) if d % t == 0])) for d in dims)
    count = draw(st.integers(1, 6))
    lo = np.array([[draw(st.integers(-2, d)) for d in dims] for _ in range(count)], dtype=np.int64)
    hi = np.array([[draw(st.integers(-1, d + 1)) for d in dims] for _ in range(count)], dtype=np.int64)
    return dims, tile, lo, hi


def token_of_cell(dims, tile):
    """{cell coordinates: its local token} in raster or tile order, written from the issue's
    table (tokens tile by tile in raster order of the tiles, raster order inside a tile)."""
    cells = list(itertools.product(*[range(d) for d in dims]))
    if tile is None:
        return {c: t for t, c in enumerate(cells)}
    tiles = itertools.product(*[range(d // s) for d, s in zip(dims, tile)])
    order = [tuple(a * s + b for a, s, b in zip(tc, tile, inner))
             for tc in tiles for inner in itertools.product(*[range(s) for s in tile])]
    return {c: t for t, c in enumerate(order)}


def morton_token_of_cell(dims):
    """{cell: its local token} in Morton order: cells sorted by their Z-code, the bits of
    the coordinates interleaved with the column's lowest (the issue's table)."""
    bits = max(d - 1 for d in dims).bit_length()

    def z(cell):
        return sum(((x >> b) & 1) << (b * len(dims) + a) for b in range(bits) for a, x in enumerate(reversed(cell)))

    cells = sorted(itertools.product(*[range(d) for d in dims]), key=z)
    return {c: t for t, c in enumerate(cells)}


@settings(max_examples=150, deadline=None)
@given(boxes(), st.booleans())
def test_box_runs_are_the_cells_of_the_box(case, morton):
    dims, tile, lo, hi = case
    if len(dims) == 1:
        tile = None
    if morton:
        owner, start, stop = G.morton_box_runs(lo, hi, dims)
        tokens = morton_token_of_cell(dims)
    else:
        owner, start, stop = G.box_runs(lo, hi, dims, tile)
        tokens = token_of_cell(dims, tile)
    for e in range(lo.shape[0]):
        want = sorted(t for c, t in tokens.items() if all(l <= x <= h for x, l, h in zip(c, lo[e], hi[e])))
        mine = owner == e
        got = [t for s, p in zip(start[mine], stop[mine]) for t in range(s, p)]
        assert got == want  # exact, disjoint, in order
        assert (start[mine][1:] > stop[mine][:-1]).all()  # touching runs are merged


def test_a_natten_box_in_tiles_is_few_runs():
    """natten(7, 7) in 8 × 8 tiles: at most two tiles per axis, so ≤ 14 runs, whole tiles
    one run each (sliding tiles: 3 × 3 × 3 whole tiles, rows of 3 consecutive tiles)."""
    node = compiled("grid(64, 64, tile=(8, 8)) { natten(7, 7) }", 4096)
    keys = node.row_keys(np.arange(4096), 4096)
    assert keys.counts().max() <= 14 and (keys.degrees() == 49).all()
    video = compiled("grid(6, 12, 16, tile=(2, 4, 4)) { sliding_tiles3d(3, 3, 3) }", 1152)
    keys = video.row_keys(np.arange(1152), 1152)
    assert (keys.counts() == 9).all() and (keys.degrees() == 27 * 32).all()


# ---- against the dense reference --------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(source=S.grid_sources(max_side=8), n=S.sizes(max_n=90))
def test_grid_counts_are_the_reference(source, n):
    assert_exact(compiled(source, n), n)


@settings(max_examples=40, deadline=None)
@given(left=S.grid_sources(), right=S.grid_sources(), extra=S.token_free_sources(), n=S.sizes(max_n=70),
       how=st.integers(0, 4))
def test_grids_combined_are_the_reference(left, right, extra, n, how):
    """Grids with each other (a union of layers: `grid_degrees`) and with 1D patterns (the
    row formula's `GridRun` atoms)."""
    text = [f"{left} | {right}", f"({left}) & ({right})", f"({left}) - ({right})", f"{left} | {extra}",
            f"({left}) & ~({extra})"][how]
    assert_exact(compiled(text, n), n)


@pytest.mark.parametrize("source", [
    "grid(4, 6, 8, tile=(2, 2, 4)) { sliding_tiles3d(3, 3, 3) }",  # sliding_tile_video, scaled down
    "grid(16, 16, tile=(4, 4)) { natten(5, 5) }",
    "grid(16, 16, tile=(4, 4)) { transpose(natten(5, 3)) - self }",
    "grid(12, 12) { chunk2d(4, 4) } | grid(12, 12) { chunk2d(4, 4, shift=(2, 2)) }",  # swin's layers
    "grid(12, 12) { window2d(0, 12) & causal } | grid(12, 12) { window2d(12, 0) & causal }",  # strided_image
    "causal | grid(6, 6, offset=9) { all }",  # vision_language
    "grid(3, 5, 5, offset=4) { natten3d(2, 3, 3) & ~window3d(0, 0, 1) }",
    "grid(10, 10, tile=(5, 2)) { euclid(3) | manhattan(1) }",
    "grid(9, 9, order=morton) { natten(3, 3) } | grid(9, 9) { natten(3, 3) }",  # Morton: Z-order cubes
    "grid(2, 5, 6, order=morton, offset=1) { window3d(1, 1, 2) - causal }",
    "grid(8, 8, tile=(2, 4)) { stride2d(2, 3) | chunk2d(3, 3) }",  # stride2d: listed keys
    "grid(8, 8, tile=(2, 4)) { causal & natten(3, 3) }",  # 1D in tiles: intervals of ranks as boxes
    "grid(3, 4, 6, tile=(1, 2, 3), offset=3) { window(5) - ~stride(4) }",
])
def test_by_hand(source):
    for n in (1, 31, 100, 160, 250):  # ragged: the last frames, rows and tiles cut at n
        assert_exact(compiled(source, n), n)


def test_grids_with_1d_patterns_count_the_grid_rows_apart(monkeypatch):
    """`window | grid`: the rows outside the grid are the 1D pattern's alone (the grid
    replaced by none), the grid's rows are counted with it; exact at ragged n."""
    source = "window(3) | grid(8, 8, tile=(4, 4), offset=5) { natten(3, 3) } - (grid(8, 8, offset=9) { self })"
    for n in (3, 40, 70, 100):
        pattern = compiled(source, n)
        apart = G.grids_apart(pattern)
        if n > 5:  # (at n ≤ 5 the compiler drops the grids: none of their cells exists)
            rest, ranges = apart
            assert not G._has_grid_primitive(rest) and ranges == [(5, 69), (9, 73)]
        assert (row_degrees(pattern, n) == evaluate(pattern, np.arange(n), n).sum(axis=1)).all()


def test_box_operands_never_list_keys(monkeypatch):
    """A grid of box operands is counted from its runs: listing its keys is refused here,
    and the counts still match the reference (ragged n) and the closed form (49 per cell)."""
    def refuse(*args, **kwargs):
        raise AssertionError("keys listed")

    monkeypatch.setattr(G, "_grid_points", refuse)
    source = "grid(64, 64, tile=(8, 8)) { natten(7, 7) }"
    pattern = compiled(source, 3000)
    assert (row_degrees(pattern, 3000) == evaluate(pattern, np.arange(3000), 3000).sum(axis=1)).all()
    counts = connection_counts(patterndsl.compile(f"layers {{\n  {source}\n  {source.replace('7, 7', '3, 5')}\n}}",
                                                  1 << 16))
    assert counts["per_layer"] == [[4096 * 49], [4096 * 15]]
    assert counts["union"] == [4096 * 49]  # natten(3, 5) ⊂ natten(7, 7) away from and at the edges
    assert counts["rows"][0][0]["empty_rows"] == (1 << 16) - 4096
    assert counts["rows"][0][0]["empty_ranges"] == [[4096, 1 << 16]]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=60))
def test_degree_stats_empty_ranges(values):
    """The empty rows' runs (read without a sort) are IndexSet's."""
    degrees = np.array(values, dtype=np.int64)
    stats = degree_stats(degrees, listed=4)
    ranges = IndexSet.from_indices(np.flatnonzero(degrees == 0)).intervals
    assert stats["empty_ranges"] == [list(r) for r in ranges[:4]]
    assert stats["empty_truncated"] == (len(ranges) > 4 or int((degrees == 0).sum()) > 4)


# ---- stride2d from its residue classes, Morton order without a table (grid12d) --------------


@st.composite
def strided_sources(draw):
    """A 2D grid whose operand holds stride2d, in every option combination (raster, tile=,
    order=morton; offset; & | - ~ with box parts, 1D parts and other strides)."""
    dims = [draw(st.integers(1, 9)) for _ in range(2)]
    options, _ = draw(S.grid_options(dims, orders=("rows", "tile", "morton")))
    step = st.integers(1, 10)
    stride = st.builds("stride2d({}, {})".format, step, step)
    other = st.one_of(stride, st.builds("window2d({}, {})".format, st.integers(0, 3), st.integers(0, 3)),
                      st.builds("natten({}, {})".format, st.integers(1, 5), st.integers(1, 5)),
                      st.builds("chunk2d({}, {}, shift=({}, {}))".format, step, step, st.integers(0, 3),
                                st.integers(0, 3)),
                      st.sampled_from(["causal", "self", "all", "window(3)", "stride(3)"]))
    a, b, c = draw(stride), draw(other), draw(other)
    body = draw(st.sampled_from([a, f"{a} | {b}", f"{a} & {b}", f"{a} - {b}", f"{b} - {a}", f"~{a} & {b}",
                                 f"({a} | {b}) & ~({c})", f"{a} & {b} | {c}", f"~({a} | {b})"]))
    return f"grid({', '.join(options)}) {{ {body} }}"


@settings(max_examples=120, deadline=None)
@given(source=strided_sources(), n=S.sizes(max_n=110))
def test_stride2d_counts_are_the_reference(source, n):
    assert_exact(compiled(source, n), n)


@settings(max_examples=40, deadline=None)
@given(source=strided_sources(), extra=S.token_free_sources(), n=S.sizes(max_n=90), how=st.integers(0, 2))
def test_stride2d_grids_with_1d_patterns_are_the_reference(source, extra, n, how):
    """Cut by 1D patterns (`_strided_grid`: the conditions' rows/cols probes are such) and as
    a file's layers of one grid frame (`_merge_grids`)."""
    text = [f"({source}) & {extra}", f"({source}) & ~({extra}) & rows(1..{n + 1})",
            f"{source} | {source.replace('stride2d(', 'window2d(0, 0) | stride2d(1 + ')}"][how]
    assert_exact(compiled(text, n), n)


@pytest.mark.parametrize("source", [
    "grid(12, 10, tile=(3, 5), offset=4) { stride2d(3, 4) | window2d(1, 1) }",
    "grid(9, 11, order=morton, offset=2) { stride2d(2, 3) - natten(3, 3) }",
    "grid(8, 8) { ~stride2d(2, 2) & causal }",
    "grid(10, 10, tile=(5, 2)) { stride2d(4, 6) & stride2d(6, 4) | stride2d(20, 1) }",  # lcm per axis; s ≥ side
])
def test_stride2d_by_hand(source):
    for n in (1, 31, 100, 113, 160):
        assert_exact(compiled(source, n), n)


def test_stride2d_counts_never_list_keys(monkeypatch):
    """At 2^20 tokens (a 1024² grid) the counts of stride2d | window2d come from the classes:
    listing the grid's keys or a row's class is refused here; the total is the closed form
    (each cell's class holds 32 · 32 cells; the window adds the 3 × 3 box's cells outside it)."""
    def refuse(*args, **kwargs):
        raise AssertionError("keys listed")

    monkeypatch.setattr(G, "_grid_points", refuse)
    monkeypatch.setattr(G, "_class_keys", refuse)
    n, side = 1 << 20, 1024
    pattern = compiled(f"grid({side}, {side}) {{ stride2d(32, 32) | window2d(1, 1) }}", n)
    degrees = G.grid_degrees(pattern, n)
    per_axis = np.minimum(np.arange(side) + 1, 2) + np.minimum(side - np.arange(side), 2) - 1  # 3 inside, 2 at edges
    box = np.outer(per_axis, per_axis).reshape(-1)
    assert (degrees == 32 * 32 + box - 1).all()  # the box and the class share the cell itself


def test_stride2d_row_sets_list_only_the_rows_asked(monkeypatch):
    """The row sets of a few rows list those rows' classes (never the grid's table), and too
    many rows' classes are refused as too many intervals."""
    from patterndsl.analysis.rowsets import TooManyIntervals

    monkeypatch.setattr(G, "_grid_points", lambda *a, **k: (_ for _ in ()).throw(AssertionError("table")))
    listed = []
    original = G._class_keys
    monkeypatch.setattr(G, "_class_keys", lambda node, mods, ranks: listed.append(ranks.size) or original(node, mods, ranks))
    n = 1 << 20
    pattern = compiled("grid(1024, 1024) { stride2d(32, 32) | window2d(1, 1) }", n)
    rows = np.array([0, 5000, n - 1])
    keys = pattern.row_keys(rows, n)
    assert listed == [3] and (keys.degrees() == G.grid_degrees(pattern, n)[rows]).all()
    with pytest.raises(TooManyIntervals):
        pattern.row_keys(np.arange(1 << 13), n)


@pytest.mark.parametrize("dims", [(1,), (5,), (3, 5), (7, 7), (8, 8), (2, 9), (9, 2), (3, 4, 5), (1, 6, 3), (2, 1, 7)])
def test_morton_rank_without_a_table(dims):
    """`morton_rank` / `morton_cells` (no table) against the issue's definition: the cells
    sorted by their Z-code."""
    tokens = morton_token_of_cell(dims)
    cells = list(tokens)
    coords = [np.array([c[a] for c in cells]) for a in range(len(dims))]
    assert G.morton_rank(coords, dims).tolist() == [tokens[c] for c in cells]
    back = G.morton_cells(np.array([tokens[c] for c in cells]), dims)
    assert [tuple(int(x[k]) for x in back) for k in range(len(cells))] == cells


def test_morton_grids_past_the_table_use_no_table(monkeypatch):
    """Beyond _RANK_TABLE cells a Morton grid's ranks come from its cubes (forced here at small
    sizes: counts against the reference with the table refused); at 2^26 cells a square
    power-of-two grid's Morton token is its Z-code, asked of a few tokens only."""
    monkeypatch.setattr(G, "_RANK_TABLE", 0)
    monkeypatch.setattr(G, "morton_ranks", lambda dims: (_ for _ in ()).throw(AssertionError("table")))
    for source in ("grid(7, 9, order=morton, offset=3) { natten(3, 3) | stride2d(2, 3) }",
                   "grid(3, 4, 5, order=morton) { window3d(1, 1, 1) - causal }"):
        for n in (40, 150):
            assert_exact(compiled(source, n), n)
    rng = np.random.default_rng(0)
    for dims in ((8192, 8192), (8192, 6000), (300, 400, 500)):  # dense codes (the token is the code), and not
        coords = [rng.integers(0, d, 1000) for d in dims]
        z, rank = G.z_codes(coords, dims), G.morton_rank(coords, dims)
        if dims[0] == dims[1]:
            assert (rank == z).all()
        # the tokens are the cells' order by Z-code, below the cell count, and the cells come back
        assert (np.argsort(rank, kind="stable") == np.argsort(z, kind="stable")).all()
        assert rank.max() < math.prod(dims) and len(set(rank.tolist())) == len(set(z.tolist()))
        assert all((a == b).all() for a, b in zip(G.morton_cells(rank, dims), coords))


@pytest.mark.parametrize("source", [
    "grid(12, 10, tile=(3, 5), offset=4) { stride2d(3, 4) | window2d(1, 1) }",
    "grid(9, 9, order=morton) { stride2d(2, 4) & natten(5, 5) | stride2d(3, 3) }",
    "grid(9, 9, offset=5) { ~stride2d(2, 2) } & causal",
])
def test_stride2d_cut_by_rows_and_cols(source):
    """The conditions' closed-interval probes, P & rows(R) & cols(outside R) (rows as a row
    filter, cols as the boxes of its intervals), exact against the reference."""
    from patterndsl.ir import Intersection
    from patterndsl.primitives import Cols, Rows

    for n in (37, 100, 130):
        pattern = compiled(source, n)
        for lo, hi in ((0, n // 2), (n // 3, n), (5, 6)):
            probe = Intersection((pattern, Rows(IndexSet.of([(lo, hi)], n)),
                                  Cols(IndexSet.of([(0, lo), (hi, n)], n))))
            degrees = G.grid_degrees(probe, n)
            assert degrees is not None and (degrees == evaluate(probe, np.arange(n), n).sum(axis=1)).all()
