"""`grid(H, W) { P }`, `grid(T, H, W) { P }` and the grid primitives (issue 12), against
a plain-Python transcription of the issue's table (`cell_of`, `related` below, written
from the table, not from patterndsl/grid.py): hand-drawn masks, the dense reference,
exact counts, block layouts, the torch/flex sources, the formatter, growth claims and
the diagnostics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import SpatError
from patterndsl import strategies as S
from patterndsl.analysis.counts import row_degrees
from patterndsl.formatter import format as fmt
from patterndsl.layout import block_layout, reference_layout
from patterndsl.syntax import parse


def mask(source: str, n: int, simplify: bool = True) -> np.ndarray:
    return patterndsl.compile(source, n, simplify=simplify).mask().numpy()


def drawn(rows) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in rows])


# ---- the transcription -------------------------------------------------------------------


def cell_order(dims, order, tile):
    """[cell coordinates] in token order, one cell per token of the grid."""
    cells = [tuple(c) for c in np.ndindex(*dims)]  # raster order
    if order == "morton":
        def z(cell):
            code, bits = 0, max(d - 1 for d in dims).bit_length()
            for b in range(bits):
                for a, x in enumerate(reversed(cell)):
                    code |= ((x >> b) & 1) << (b * len(dims) + a)
            return code
        return sorted(cells, key=z)
    if tile is not None:
        tiles = [d // t for d, t in zip(dims, tile)]
        out = []
        for tc in np.ndindex(*tiles):
            for inner in np.ndindex(*tile):
                out.append(tuple(a * t + b for a, t, b in zip(tc, tile, inner)))
        return out
    return cells


def natten_keys(x, k, length):
    if k >= length:
        return range(length)
    centre = min(max(x, k // 2), length - 1 - (k - 1) // 2)
    return range(centre - k // 2, centre + (k - 1) // 2 + 1)


def related(call, a, b, dims, tile):
    """Whether cells a, b (coordinate tuples, frame first) are related by the grid primitive
    ``call`` = (name, args, keywords), as the issue's table says."""
    name, args, kw = call
    rank = lambda cell: int(np.ravel_multi_index(cell, dims))  # noqa: E731
    if name in ("window2d", "window3d"):
        return all(abs(x - y) <= r for x, y, r in zip(a, b, args))
    if name in ("natten", "natten3d"):
        return all(y in natten_keys(x, k, d) for x, y, k, d in zip(a, b, args, dims))
    if name in ("chunk2d", "chunk3d"):
        shift = kw.get("shift", (0,) * len(args))
        return all((x - s) // size == (y - s) // size for x, y, size, s in zip(a, b, args, shift))
    if name == "stride2d":
        return all((x - y) % s == 0 for x, y, s in zip(a, b, args))
    if name == "manhattan":
        return abs(a[0] - b[0]) + abs(a[1] - b[1]) <= args[0]
    if name == "euclid":
        return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 <= args[0] ** 2
    if name in ("sliding_tiles", "sliding_tiles3d"):
        tiles = [d // t for d, t in zip(dims, tile)]
        return all(y // t in natten_keys(x // t, k, d) for x, y, t, k, d in zip(a, b, tile, args, tiles))
    if name == "causal":  # a 1D primitive: raster ranks
        return rank(b) <= rank(a)
    raise AssertionError(name)


def grid_mask(n, dims, call, offset=0, order="rows", tile=None):
    out = np.zeros((n, n), dtype=bool)
    cells = cell_order(dims, order, tile)
    for ti, a in enumerate(cells):
        for tj, b in enumerate(cells):
            i, j = offset + ti, offset + tj
            if i < n and j < n and related(call, a, b, dims, tile):
                out[i, j] = True
    return out


def call_text(call):
    name, args, kw = call
    parts = [str(a) for a in args] + [f"{k}=({', '.join(map(str, v))})" for k, v in kw.items()]
    return f"{name}({', '.join(parts)})"


def grid_text(dims, call, offset=0, order="rows", tile=None):
    options = [str(d) for d in dims]
    if offset:
        options.append(f"offset={offset}")
    if order != "rows":
        options.append(f"order={order}")
    if tile is not None:
        options.append(f"tile=({', '.join(map(str, tile))})")
    return f"grid({', '.join(options)}) {{ {call_text(call)} }}"


# ---- hand-drawn --------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "n", "rows"), [
    # a 2 × 3 image; each cell sees the cells within one row and no column apart
    ("grid(2, 3) { window2d(1, 0) }", 6, ("100100", "010010", "001001", "100100", "010010", "001001")),
    # kernel 2 on a 3-wide axis: keys [c - 1, c] around c = clamp(x, 1, 2); every query sees 2 keys
    ("grid(1, 3) { natten(1, 2) }", 3, ("110", "110", "011")),
    # a 3 × 3 grid after a 1-token prompt; only the grid's cells are in it
    ("grid(3, 3, offset=1) { manhattan(0) } | global(0)", 5, ("11111", "11000", "10100", "10010", "10001")),
    # Swin windows of 2 × 2 on a 2 × 4 grid, shifted by one column: windows {0}, {1, 2}, {3}
    ("grid(2, 4) { chunk2d(2, 2, shift=(0, 1)) }", 8,
     ("10001000", "01100110", "01100110", "00010001", "10001000", "01100110", "01100110", "00010001")),
    # 2 × 4 in Morton order: tokens are the cells (0,0) (0,1) (1,0) (1,1) (0,2) (0,3) (1,2) (1,3), raster ranks
    # 0 1 4 5 2 3 6 7; causal compares raster ranks
    ("grid(2, 4, order=morton) { window2d(0, 0) | causal }", 8,
     ("10000000", "11000000", "11101100", "11111100", "11001000", "11001100", "11111110", "11111111")),
    # tiles of 2 × 1 on a 2 × 2 grid: tokens (0,0) (1,0) (0,1) (1,1); stride2d(2, 1): rows an even distance apart (here: the same row), any column
    ("grid(2, 2, tile=(2, 1)) { stride2d(2, 1) }", 4, ("1010", "0101", "1010", "0101")),
    # cells at or beyond n do not exist
    ("grid(2, 2) { window2d(1, 1) }", 3, ("111", "111", "111")),
])
def test_hand_drawn(source, n, rows):
    assert (mask(source, n) == drawn(rows)).all()
    assert (mask(source, n, simplify=False) == drawn(rows)).all()


# ---- against the transcription -----------------------------------------------------------


@st.composite
def grid_cases(draw):
    three = draw(st.booleans()) and draw(st.booleans())
    dims = tuple(draw(st.integers(1, 3 if three else 5)) for _ in range(3 if three else 2))
    order = draw(st.sampled_from(("rows", "morton", "tile")))
    tile = tuple(draw(st.sampled_from([t for t in range(1, d + 1) if d % t == 0])) for d in dims) \
        if order == "tile" else None
    small, k = st.integers(0, 3), st.integers(1, 6)
    axes = len(dims)
    names = (["window3d", "natten3d", "chunk3d"] if three else
             ["window2d", "natten", "chunk2d", "stride2d", "manhattan", "euclid"]) + ["causal"]
    if tile is not None:
        names.append("sliding_tiles3d" if three else "sliding_tiles")
    name = draw(st.sampled_from(names))
    kw = {}
    if name in ("manhattan", "euclid"):
        args = (draw(small),)
    elif name == "causal":
        args = ()
    elif name.startswith("window"):
        args = tuple(draw(small) for _ in range(axes))
    else:
        args = tuple(draw(k) for _ in range(axes))
    if name.startswith("chunk") and draw(st.booleans()):
        kw["shift"] = tuple(draw(st.integers(-2, 3)) for _ in range(axes))
    offset = draw(st.integers(0, 4))
    n = draw(st.integers(1, offset + math.prod(dims) + 3))
    return n, dims, (name, args, kw), offset, "rows" if order == "tile" else order, tile


@settings(max_examples=100, deadline=None)
@given(grid_cases())
def test_the_dense_reference_is_the_table(case):
    n, dims, call, offset, order, tile = case
    text = grid_text(dims, call, offset, order, tile) if call[0] != "causal" else \
        grid_text(dims, ("causal", (), {}), offset, order, tile).replace("causal()", "causal")
    assert (mask(text, n) == grid_mask(n, dims, call, offset, order, tile)).all(), text


def _pipeline(source, n, block=(4, 8)):
    compiled = patterndsl.compile(source, n)
    pattern = compiled.pattern()
    dense = compiled.mask().numpy()
    # exact counts from the listed keys
    assert row_degrees(pattern, n).tolist() == dense.sum(axis=1).tolist()
    # block layouts (grids divide the blocks or not)
    for bq, bk in (block, (16, 16)):
        assert block_layout(pattern, n, bq, bk).same_as(reference_layout(pattern, n, bq, bk))
    # the torch source (the flex and Triton targets inline the same expression)
    from patterndsl.codegen import predicate_source
    from patterndsl.targets.flex import TorchBackend
    backend = TorchBackend(16, 16)
    expression = predicate_source(pattern, "q", "k", n, backend)
    q = torch.arange(n).view(-1, 1)
    k = torch.arange(n).view(1, -1)
    env = {"q": q, "k": k, "torch": torch, **{name: torch.from_numpy(t) for name, t in backend.tables.items()}}
    got = eval(expression, env)  # (Morton order reads the grid's keys from block bitmaps)
    assert (got.numpy() == dense).all(), expression
    # the formatter and the printed IR parse back to the same meaning
    once = fmt(source)
    assert parse(fmt(once)) == parse(once)
    assert (mask(once, n) == dense).all()
    assert (mask(str(pattern), n) == dense).all()
    # transpose
    assert (mask(f"transpose({source})", n) == dense.T).all()


@settings(max_examples=40, deadline=None)
@given(source=S.grid_sources(), extra=S.token_free_sources(), n=S.sizes(max_n=48), how=st.integers(0, 3))
def test_grids_nested_with_old_constructs(source, extra, n, how):
    """Every target and analysis against the dense reference, on grids drawn with the old
    constructs inside them (1D primitives on raster ranks) and around them."""
    text = [source, f"{source} | {extra}", f"({source}) & ~{extra}", f"blocks(2) {{ {source} }}"][how]
    _pipeline(text, n)


@pytest.mark.parametrize("source", [
    "grid(8, 8, tile=(4, 4)) { natten(3, 3) }",
    "grid(2, 4, 4, tile=(1, 2, 2)) { sliding_tiles3d(1, 1, 1) | window3d(0, 1, 1) }",
    "grid(6, 6, offset=5) { chunk2d(3, 3, shift=(1, 1)) } | causal & window(4)",
    "grid(5, 7) { stride2d(2, 3) & causal }",
    "grid(4, 4, order=morton) { euclid(1) }",
])
def test_pipeline_by_hand(source):
    for n in (1, 17, 40, 70):
        _pipeline(source, n)


def test_tiles_that_match_the_blocks_are_block_sparse():
    """NATTEN 7 × 7 on a 128 × 128 image, tokens tile by tile in 8 × 8 tiles = blocks of 64:
    each query block sees only the 3 × 3 tiles around it (at most 9 key blocks), where the
    raster order's query block (half an image row) needs seven rows of keys."""
    n = 128 * 128
    tiled = patterndsl.compile("grid(128, 128, tile=(8, 8)) { natten(7, 7) }", n).layout(block_size=64)
    raster = patterndsl.compile("grid(128, 128) { natten(7, 7) }", n).layout(block_size=64)
    assert tiled.num_blocks <= 9 * (n // 64)
    assert tiled.num_blocks < raster.num_blocks
    whole = patterndsl.compile("grid(128, 128, tile=(8, 8)) { sliding_tiles(3, 3) }", n).layout(block_size=64)
    assert whole.num_partial == 0 and whole.num_blocks <= 9 * (n // 64)  # sliding tiles: whole blocks


def test_every_query_of_natten_sees_kh_kw_keys():
    n = 9 * 11
    degrees = row_degrees(patterndsl.compile("grid(9, 11) { natten(7, 4) }", n).pattern(), n)
    assert (degrees == 28).all()


def test_lets_and_defs_are_evaluated_over_the_cells():
    text = "let near = natten(3, 3)\ndef band(w) = window(w)\ngrid(4, 4) { near | band(1) }\n"
    n = 16
    expected = grid_mask(n, (4, 4), ("natten", (3, 3), {})) | (np.abs(np.arange(n)[:, None] - np.arange(n)) <= 1)
    assert (mask(text, n) == expected).all()


@pytest.mark.parametrize(("text", "tight"), [
    ("grid(isqrt(n), isqrt(n)) { natten(7, 7) }", False),
    ("grid(16, 16, offset=3) { window2d(2, 1) | causal } | window(2)", True),  # Θ(n) from window(2) alone
    ("grid(4, 8, 8, tile=(2, 4, 4)) { sliding_tiles3d(1, 1, 1) }", False),
])
def test_growth_claims_only_what_holds(text, tight):
    """A grid's own bound is an O bound (never Θ: cells beyond n do not exist), and the
    concrete bound at n holds the exact count."""
    from patterndsl.analysis.growth import growth, growth_formula
    assert growth_formula(text)["per_layer"][0][0]["tight"] == tight
    for n in (49, 100, 300, 1024):
        compiled = patterndsl.compile(text, n)
        report = growth(compiled)["per_layer"][0][0]
        assert report["tight"] == tight
        assert int(compiled.mask().sum()) <= report["bound_at_n"]


@pytest.mark.parametrize("text", [
    "grid(4, 4, offset=2, tile=(2, 2)) { natten(3, 3) | causal }",
    "grid(2, 4, 4, order=morton) {\n    chunk3d(1, 2, 2, shift=(0, 1, 1)) |\n    window3d(1, 0, 0)\n}",
])
def test_format_round_trip(text):
    once = fmt(text)
    assert parse(once) == parse(text)
    assert fmt(once) == once
    assert (mask(once, 40) == mask(text, 40)).all()


@pytest.mark.parametrize(("text", "message"), [
    ("natten(3, 3)", "natten means something only inside a grid"),
    ("grid(2, 4, 4) { natten(3, 3) }", "natten is a 2D primitive, used in a 3D grid"),
    ("grid(4, 4) { natten3d(1, 3, 3) }", "natten3d is a 3D primitive, used in a 2D grid"),
    ("grid(6, 6, tile=(4, 3)) { self }", "the tile does not divide the grid: H = 6 is not a multiple of 4"),
    ("grid(4, 4, tile=(2, 2), order=morton) { self }", "tile= and order=morton cannot be combined"),
    ("grid(4, 4, order=zorder) { self }", "order=zorder is not a token order"),
    ("grid(4, 4) { sliding_tiles(3, 3) }", "sliding_tiles needs a tiled grid"),
    ("grid(4) { self }", "grid takes two or three axis lengths, got 1"),
    ("grid(0, 4) { self }", "a grid's axis lengths are ≥ 1, but this one is 0"),
    ("grid(4, 4, offset=-1) { self }", "a grid's offset is ≥ 0"),
    ("grid(4, 4) { natten(0, 3) }", "natten needs kh ≥ 1"),
    ("grid(4, 4) { chunk2d(2, 2, shift=(1, 1, 1)) }", "'shift' takes 2 integers"),
    ("grid(4, 4, tile=(2, 2, 2)) { self }", "tile= takes 2 sizes"),
])
def test_diagnostics(text, message):
    with pytest.raises(SpatError) as info:
        patterndsl.compile(text, 64)
    assert message in str(info.value)
    assert "^" in str(info.value)


def test_growth_reports_the_same_errors():
    from patterndsl.analysis.growth import growth_formula
    with pytest.raises(SpatError) as info:
        growth_formula("natten(3, 3)")
    assert "inside a grid" in str(info.value)


# ---- stride2d's block layouts from its residue classes (grid12d) ---------------------------


@pytest.mark.parametrize("source,table", [
    (source, table) for source in [
        "grid(12, 10, tile=(3, 5)) { stride2d(3, 4) }",
        "grid(12, 10) { stride2d(5, 2) & window2d(7, 3) }",  # the band's multiples of s
        "grid(9, 11, offset=3) { stride2d(2, 3) | window2d(1, 1) }",
        "grid(12, 10) { stride2d(3, 4) - window2d(1, 1) }",
        "grid(10, 10) { stride2d(20, 1) & stride2d(2, 3) }",
    ] for table in (2048, 2)  # 2: every axis too long for a table (closed forms only)
] + [("grid(16, 16, tile=(4, 4)) { stride2d(4, 4) & chunk2d(8, 8) }", 2048)])  # a table axis beside the classes
def test_stride2d_layouts_are_the_reference(source, table, monkeypatch):
    from patterndsl import grid as G
    from patterndsl.layout import BlockGrid

    monkeypatch.setattr(G, "_MAX_AXIS_TABLE", table)
    monkeypatch.setattr(G, "_EXACT_ESTIMATE", -1)  # the estimate's bound, never the listed candidates
    for name in ("point_blocks", "point_block_counts"):  # from boxes, never from listed keys
        monkeypatch.setattr(G, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("keys listed")))
    G.box_counter.cache_clear()
    try:
        for n in (1, 37, 100, 130):
            pattern = patterndsl.compile(source, n).pattern()
            grids = [p for p in [pattern, *pattern.children()] if isinstance(p, G.Grid)]
            for bq, bk in ((16, 16), (7, 9), (32, 8), (1, 1)):
                assert block_layout(pattern, n, bq, bk).same_as(reference_layout(pattern, n, bq, bk)), (n, bq, bk)
                for grid in grids:
                    if grid._counter() is not None:
                        bound = grid.block_estimate(BlockGrid(n, bq, bk))
                        assert bound >= grid.block_candidates(BlockGrid(n, bq, bk)).size
    finally:
        G.box_counter.cache_clear()


def test_stride2d_candidates_are_its_blocks_not_its_bounding_box():
    """stride2d(32, 32) on a 1024² grid, blocks of 1024 (one grid row): a query row's keys lie
    in the 32 rows of its class, so 32 key blocks per query block — not the 1024 of the range
    its class spans — and the layout estimate is refused up front at 2^24 in blocks of 128
    (2.7·10^8 blocks) without listing the stride's."""
    from patterndsl import grid as G
    from patterndsl.layout import BlockGrid, layout_memory

    pattern = patterndsl.compile("grid(1024, 1024) { stride2d(32, 32) }", 1 << 20).pattern()
    codes = pattern.block_candidates(BlockGrid(1 << 20, 1024, 1024))
    assert codes.size == 1024 * 32
    big = patterndsl.compile("grid(4096, 4096) { stride2d(64, 64) | window2d(1, 1) }", 1 << 24).pattern()
    listed = []
    original = G.Grid.block_candidates
    G.Grid.block_candidates = lambda self, grid: listed.append(str(self)) or original(self, grid)
    try:
        assert layout_memory(big, 1 << 24, 128, 128) > 16 << 30  # 64 B per listed block
    finally:
        G.Grid.block_candidates = original
    assert not any("stride2d" in text for text in listed)  # (the window's few are listed)


@st.composite
def morton_sources(draw):
    """A Morton-ordered grid (2D or 3D, sides that are and are not powers of two, an offset)
    over the box and stride primitives."""
    three = draw(st.booleans())
    dims = [draw(st.integers(1, 4 if three else 11)) for _ in range(3 if three else 2)]
    offset = draw(st.integers(0, 5))
    k = st.integers(1, 4)
    if three:
        parts = [st.builds("window3d({}, {}, {})".format, k, k, k), st.builds("natten3d({}, {}, {})".format, k, k, k)]
    else:
        parts = [st.builds("natten({}, {})".format, k, k), st.builds("window2d({}, {})".format, k, k),
                 st.builds("stride2d({}, {})".format, k, k), st.builds("chunk2d({}, {})".format, k, k),
                 st.builds("manhattan({})".format, k)]
    a, b = draw(st.one_of(parts)), draw(st.one_of(parts + [st.just("self")]))
    body = draw(st.sampled_from([a, f"{a} | {b}", f"{a} & {b}", f"{a} - {b}", f"transpose({a})"]))
    return f"grid({', '.join(map(str, dims))}, order=morton, offset={offset}) {{ {body} }}"


@settings(max_examples=80, deadline=None)
@given(morton_sources(), st.integers(1, 140), st.sampled_from([(4, 8), (16, 16), (3, 5), (64, 64), (1, 1)]))
def test_morton_layouts_are_the_reference(source, n, block):
    """Morton layouts from Z-order cubes (grid12d), exact, with the estimate above the
    candidates it lists."""
    from patterndsl import grid as G
    from patterndsl.layout import BlockGrid

    pattern = patterndsl.compile(source, n).pattern()
    bq, bk = block
    assert block_layout(pattern, n, bq, bk).same_as(reference_layout(pattern, n, bq, bk)), source
    if isinstance(pattern, G.Grid) and pattern._counter() is not None:
        bound = G._box_block_estimate(pattern, BlockGrid(n, bq, bk), pattern._counter())
        assert bound >= pattern.block_candidates(BlockGrid(n, bq, bk)).size


def test_morton_layouts_touch_blocks_not_cells(monkeypatch):
    """natten(7, 7) on a 1024² Morton grid: the candidates come from each query block's cubes
    (no key listed), few per query block, and the estimate's bound (cubes per box at the
    best level, never listed) is within a small factor of them."""
    from patterndsl import grid as G
    from patterndsl.layout import BlockGrid

    monkeypatch.setattr(G, "_grid_points", lambda *a, **k: (_ for _ in ()).throw(AssertionError("keys listed")))
    pattern = patterndsl.compile("grid(1024, 1024, order=morton) { natten(7, 7) }", 1 << 20).pattern()
    grid = BlockGrid(1 << 20, 128, 128)
    codes = pattern.block_candidates(grid)
    monkeypatch.setattr(G, "_EXACT_ESTIMATE", -1)
    bound = pattern.block_estimate(BlockGrid(1 << 20, 128, 128))
    assert codes.size <= 12 * grid.num_q and codes.size <= bound <= 8 * codes.size


@pytest.mark.parametrize("source", [
    "grid(9, 11, order=morton) { natten(3, 4) }",
    "grid(12, 10, tile=(3, 5)) { natten(5, 3) & chunk2d(4, 3, shift=(1, 2)) }",
    "grid(3, 4, 5) { natten3d(1, 2, 3) }",
    "grid(16, 16, tile=(4, 4)) { sliding_tiles(3, 1) }",
    "grid(16, 16) { natten(20, 3) & window2d(2, 5) }",
])
def test_long_axes_count_spans_without_tables(source, monkeypatch):
    """Axes too long for a relation matrix (forced: 2) count natten, chunk2d, sliding_tiles
    from their spans' prefix sums (`_SpanAxis`): a box counter exists and layouts are exact."""
    from patterndsl import grid as G

    monkeypatch.setattr(G, "_MAX_AXIS_TABLE", 2)
    G.box_counter.cache_clear()
    G.axis_spans.cache_clear()
    try:
        for n in (1, 37, 130, 300):
            pattern = patterndsl.compile(source, n).pattern()
            if isinstance(pattern, G.Grid):
                assert pattern._counter() is not None
            for bq, bk in ((16, 16), (7, 9), (1, 1), (64, 64)):
                assert block_layout(pattern, n, bq, bk).same_as(reference_layout(pattern, n, bq, bk)), (n, bq, bk)
    finally:
        G.box_counter.cache_clear()
        G.axis_spans.cache_clear()
