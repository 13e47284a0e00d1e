"""Morton grids at scale (brief morton12): the block-granular descent of a box's key blocks,
the aligned-cube split of a run where the token is the Z-code, the closed-form degrees of
box operands, and the memory budget reaching the grids' key listings — each against the
issue's definition (cells sorted by Z-code) or the dense reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import grid as G
from patterndsl import strategies as S
from patterndsl.errors import SpatError

from test_grid_counts import morton_token_of_cell

DIMS = [(1,), (2, 2), (4, 4), (8, 8), (16, 16), (4, 4, 4), (8, 8, 8), (3, 5), (7, 7), (8, 6), (2, 3, 5)]


def cells_of_token(dims):
    return {t: c for c, t in morton_token_of_cell(dims).items()}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(DIMS), st.data())
def test_run_boxes_are_the_cells_of_the_run(dims, data):
    """morton_run_boxes: disjoint boxes whose cells are exactly the run's tokens, in square
    power-of-two grids (the aligned-cube split) and in others (the descent)."""
    cells = int(np.prod(dims))
    count = data.draw(st.integers(1, 6))
    lo = np.array([data.draw(st.integers(0, cells)) for _ in range(count)], dtype=np.int64)
    hi = np.array([data.draw(st.integers(-1, cells - 1)) for _ in range(count)], dtype=np.int64)
    token = morton_token_of_cell(dims)
    owner, blo, bhi = G.morton_run_boxes(lo, hi, dims)
    for e in range(count):
        got = []
        for a, b in zip(blo[owner == e], bhi[owner == e]):
            assert (a <= b).all() and (a >= 0).all() and (b < np.array(dims)).all()
            got += [token[c] for c in np.ndindex(*(b - a + 1)) for c in [tuple(int(x) for x in a + np.array(c))]]
        assert sorted(got) == list(range(lo[e], hi[e] + 1))  # exact and disjoint


def test_dense_runs_of_aligned_blocks_are_one_box():
    """Aligned blocks of 2^k tokens of a square power-of-two grid are one box each."""
    for size, shape in ((256, (16, 16)), (512, (16, 32)), (32, (4, 8)), (8, (2, 4)), (1, (1, 1))):
        b = np.arange(64 * 64 // size)
        owner, lo, hi = G.morton_run_boxes(b * size, b * size + size - 1, (64, 64))
        assert (owner == b).all() and ((hi - lo + 1) == shape).all()
    owner, lo, hi = G.morton_run_boxes(np.array([128]), np.array([255]), (8, 8, 8))  # 2^7 codes in 3D
    assert owner.tolist() == [0] and (hi - lo + 1).tolist() == [[4, 4, 8]]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DIMS), st.integers(1, 40), st.integers(0, 50), st.data())
def test_block_granular_box_runs_meet_the_same_blocks(dims, block, offset, data):
    """morton_box_runs(…, block, offset): the runs cover the box's cells, and the blocks they
    meet ((token + offset) // block) are exactly the blocks holding a cell of the box."""
    count = data.draw(st.integers(1, 5))
    lo = np.array([[data.draw(st.integers(-2, d)) for d in dims] for _ in range(count)], dtype=np.int64)
    hi = np.array([[data.draw(st.integers(-1, d + 1)) for d in dims] for _ in range(count)], dtype=np.int64)
    token = morton_token_of_cell(dims)
    owner, start, stop = G.morton_box_runs(lo, hi, dims, block, offset)
    for e in range(count):
        want = {t for c, t in token.items() if all(a <= x <= b for x, a, b in zip(c, lo[e], hi[e]))}
        covered = {t for s, p in zip(start[owner == e], stop[owner == e]) for t in range(s, p)}
        assert want <= covered
        assert {(t + offset) // block for t in covered} == {(t + offset) // block for t in want}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([d for d in DIMS if G.aligned_morton_blocks(d, 1, 0)]), st.integers(0, 9), st.integers(0, 3),
       st.data())
def test_aligned_block_runs_are_the_blocks_of_the_box(dims, log_block, offset_blocks, data):
    """morton_block_runs (blocks that are boxes of cells): one run a block, exactly the blocks
    holding a cell of the box, each run a whole block."""
    block = 1 << log_block
    assert G.aligned_morton_blocks(dims, block, offset_blocks * block)
    assert not G.aligned_morton_blocks(dims, block, offset_blocks * block + 1) or block == 1
    count = data.draw(st.integers(1, 5))
    lo = np.array([[data.draw(st.integers(-2, d)) for d in dims] for _ in range(count)], dtype=np.int64)
    hi = np.array([[data.draw(st.integers(-1, d + 1)) for d in dims] for _ in range(count)], dtype=np.int64)
    token = morton_token_of_cell(dims)
    owner, start, stop = G.morton_block_runs(lo, hi, dims, block)
    assert ((stop - start) == block).all() and (start % block == 0).all()
    for e in range(count):
        want = sorted({t // block for c, t in token.items() if all(a <= x <= b for x, a, b in zip(c, lo[e], hi[e]))})
        assert sorted((start[owner == e] // block).tolist()) == want  # each block once


@st.composite
def box_grids(draw):
    """A grid whose operand is one box per query (natten, window, chunk, sliding tiles, their
    intersections and transposes), any order, offset, and a grid larger or smaller than n."""
    three = draw(st.booleans())
    dims = [draw(st.integers(1, 4 if three else 9)) for _ in range(3 if three else 2)]
    options, tile = draw(S.grid_options(dims, orders=("rows", "morton", "tile")))
    k, small = st.integers(1, 5), st.integers(0, 3)
    if three:
        calls = [st.builds("window3d({}, {}, {})".format, small, small, small),
                 st.builds("natten3d({}, {}, {})".format, k, k, k),
                 st.builds("chunk3d({}, {}, {}, shift=({}, {}, {}))".format, k, k, k, small, small, small)]
    else:
        calls = [st.builds("window2d({}, {})".format, small, small), st.builds("natten({}, {})".format, k, k),
                 st.builds("chunk2d({}, {}, shift=({}, {}))".format, k, k, st.integers(-2, 3), st.integers(-2, 3))]
        if tile is not None:
            calls.append(st.builds("sliding_tiles({}, {})".format, k, k))
    call = st.one_of(calls)
    body = draw(st.one_of(call, st.builds("transpose({})".format, call), st.builds("{} & {}".format, call, call)))
    return f"grid({', '.join(options)}) {{ {body} }}"


@settings(max_examples=150, deadline=None)
@given(source=box_grids(), n=st.integers(1, 120))
def test_box_degrees_in_closed_form_are_the_reference(source, n):
    """A box operand's degrees from its boxes alone (no runs listed: `_tree_keys` refused),
    cells beyond n taken off, against the dense reference."""
    pattern = patterndsl.compile(source, n).patterns[0][0]
    assert G.axis_spans(pattern.operand, pattern.dims) is not None
    saved = G._tree_keys
    G._tree_keys = lambda *a: (_ for _ in ()).throw(AssertionError("runs listed"))
    try:
        degrees = G.grid_degrees(pattern, n)
    finally:
        G._tree_keys = saved
    assert (degrees == patterndsl.reference.evaluate(pattern, np.arange(n), n).sum(axis=1)).all()


@settings(max_examples=60, deadline=None)
@given(side=st.sampled_from([1, 2, 4, 8]), three=st.booleans(), offset=st.integers(0, 5), n=st.integers(1, 90),
       body=st.sampled_from(["natten(3, 3)", "window2d(1, 2) | causal", "transpose(natten(2, 3)) & ~stride(3)",
                             "euclid(1) - chunk2d(2, 4)", "stride2d(2, 2) & window2d(2, 2)"]))
def test_morton_source_without_tables(side, three, offset, n, body):
    """Where the token is the Z-code, a Morton grid's torch source (the flex and Triton
    targets inline it) takes the coordinates apart from the token's bits: no tables, the
    reference's pairs."""
    import torch

    from patterndsl.codegen import predicate_source
    from patterndsl.targets.flex import TorchBackend

    if three:
        body = {"natten(3, 3)": "natten3d(1, 3, 3)", "window2d(1, 2) | causal": "window3d(0, 1, 2) | causal"}.get(
            body, "window3d(1, 1, 1) & ~causal")
    dims = f"{side // 2 or 1}, {side // 2 or 1}, {side // 2 or 1}" if three else f"{side}, {side}"
    source = f"grid({dims}, order=morton, offset={offset}) {{ {body} }}"
    compiled = patterndsl.compile(source, n)
    backend = TorchBackend(16, 16)
    expression = predicate_source(compiled.pattern(), "q", "k", n, backend)
    assert not backend.tables, source
    got = eval(expression, {"q": torch.arange(n).view(-1, 1), "k": torch.arange(n).view(1, -1), "torch": torch})
    assert (np.broadcast_to(got.numpy(), (n, n)) == compiled.mask().numpy()).all(), source


LISTED = "grid(64, 64) { stride(3) }"  # no boxes: its keys are listed (4,096 rows × 1,366 slots, 43 MiB)


@pytest.mark.parametrize("command", [["layout"], ["check"], ["show"], ["compile", "--target", "flex"],
                                     ["compile", "--target", "triton"]])
def test_a_raised_budget_reaches_the_grid_listing(command, tmp_path, monkeypatch, capsys):
    """--memory-budget is the budget of every refusal, a grid's listed keys included: where the
    default budget (here PATTERNDSL_MEMORY_BUDGET=600K) refuses the listing, a raised one
    lets it through (check allows itself 4 GiB at least: 5G raises it)."""
    from patterndsl.cli import main

    G._grid_points.cache_clear()  # (a listing kept from an earlier test costs nothing to reuse)
    monkeypatch.setenv("PATTERNDSL_MEMORY_BUDGET", "600K")
    path = tmp_path / "listed.spat"
    path.write_text(LISTED + "\n")
    out = ["-o", str(tmp_path / "out.py")] if command[0] == "compile" else []
    assert main([command[0], str(path), "--n", "4096", *command[1:], *out]) == 1
    assert "listing the keys of grid(64, 64) { stride(3) }" in capsys.readouterr().err
    code = main([command[0], str(path), "--n", "4096", *command[1:], *out, "--memory-budget", "5G"])
    assert code in (0, 3), capsys.readouterr().err  # (check: 3, not every condition holds)
    assert "listing the keys" not in capsys.readouterr().err


def test_a_raised_budget_reaches_the_grid_listing_in_python(monkeypatch):
    """compile(…, memory_budget=) likewise for layouts (and block masks, generated modules),
    the layout against the dense reference; budget_scope nests, None keeping the outer one."""
    from patterndsl.layout import block_layout
    from patterndsl.reference import budget_scope, memory_budget

    G._grid_points.cache_clear()
    monkeypatch.setenv("PATTERNDSL_MEMORY_BUDGET", "600K")
    with pytest.raises(SpatError, match="listing the keys"):
        patterndsl.compile(LISTED, 4096).layouts(0, 256)
    layout = patterndsl.compile(LISTED, 4096, memory_budget="1G").layouts(0, 256)[0]
    pattern = patterndsl.compile(LISTED, 4096).pattern()
    dense = patterndsl.reference.dense_mask(pattern, 4096, budget=1 << 30)
    assert layout.connections == int(dense.sum())
    blocks = dense.reshape(16, 256, 16, 256).any(axis=(1, 3))
    assert (layout.to_dense() > 0).tolist() == blocks.tolist()
    tables = "grid(64, 48, order=morton) { stride(3) }"  # data-backed: the mask_mod's tables list its keys
    with pytest.raises(SpatError, match="listing the keys"):
        patterndsl.compile(tables, 3072).block_mask(256)
    mask = patterndsl.compile(tables, 3072, memory_budget="1G").block_mask(256)
    dense = patterndsl.compile(tables, 3072, memory_budget="1G").mask().numpy()
    assert (mask.to_dense()[0, 0].numpy() > 0).tolist() == dense.reshape(12, 256, 12, 256).any(axis=(1, 3)).tolist()
    with budget_scope(1 << 30):
        with budget_scope(None):
            assert memory_budget() == 1 << 30
            assert block_layout(pattern, 4096, 256).same_as(layout)
    assert memory_budget() == 600 << 10


@settings(max_examples=120, deadline=None)
@given(side=st.sampled_from([1, 2, 4, 8, 16]), three=st.booleans(), offset=st.sampled_from([0, 4, 8, 16, 3]),
       n=st.integers(1, 300), block=st.sampled_from([(4, 8), (8, 16), (16, 16), (32, 4), (2, 2), (1, 1), (6, 8)]),
       body=st.sampled_from(["natten(3, 5)", "window2d(1, 2) | stride2d(4, 4)", "chunk2d(4, 2) & window2d(2, 2)",
                             "transpose(natten(2, 3))", "stride2d(2, 4) - window2d(1, 1)"]))
def test_layouts_where_blocks_are_boxes_are_the_reference(side, three, offset, n, block, body):
    """Square power-of-two Morton grids, where key blocks of a power of two aligned with the
    grid are boxes of cells (`morton_block_runs`) and the count tables apply (forced here at
    small sizes): layouts exact against the reference, aligned or not, ragged n."""
    from patterndsl.layout import block_layout, reference_layout

    if three:
        side = max(1, side // 4)
        body = {"natten(3, 5)": "natten3d(1, 3, 3)", "transpose(natten(2, 3))": "transpose(natten3d(2, 1, 3))"}.get(
            body, "window3d(1, 0, 1) | chunk3d(1, 2, 2)")
    dims = ", ".join([str(side)] * (3 if three else 2))
    source = f"grid({dims}, order=morton, offset={offset}) {{ {body} }}"
    pattern = patterndsl.compile(source, n).pattern()
    bq, bk = block
    saved, G._TABLED_BLOCKS = G._TABLED_BLOCKS, 0  # the count tables however few the blocks
    try:
        assert block_layout(pattern, n, bq, bk).same_as(reference_layout(pattern, n, bq, bk)), source
    finally:
        G._TABLED_BLOCKS = saved


def test_a_raised_budget_reaches_the_grid_listing_in_python_check(monkeypatch):
    """analysis.check.check(compiled) runs within the compiled pattern's memory budget: the
    default refuses the grid's listed keys, compile(…, memory_budget=) lets them through, and
    the counts it reports are the dense reference's."""
    from patterndsl.analysis.check import check

    G._grid_points.cache_clear()
    monkeypatch.setenv("PATTERNDSL_MEMORY_BUDGET", "600K")
    with pytest.raises(SpatError, match="listing the keys"):
        check(patterndsl.compile(LISTED, 4096))
    report, _ = check(patterndsl.compile(LISTED, 4096, memory_budget="1G"))
    dense = patterndsl.reference.dense_mask(patterndsl.compile(LISTED, 4096).pattern(), 4096, budget=1 << 30)
    assert report["connections"]["union"] == [int(dense.sum())]  # (one per head)


@settings(max_examples=120, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), offset=st.integers(0, 5), n=st.integers(1, 160),
       body=st.sampled_from(["euclid({})", "manhattan({})", "euclid({}) | manhattan(1)", "manhattan({}) - euclid(1)"]),
       d=st.integers(0, 4), chunk=st.integers(1, 64))
def test_distance_keys_on_morton_grids_are_listed_cell_by_cell(rows, cols, offset, n, body, d, chunk):
    """euclid / manhattan on a Morton grid (brief euclidm): the keys listed cell by cell
    (`_ball_runs`, chunks of any size), never a one-row box cut into Z-order cubes (work:
    `morton_box_runs` not called), and they are the dense reference's; a lone rule's degrees
    in closed form (`_box_degrees`: no runs listed), raster order too."""
    source = f"grid({rows}, {cols}, order=morton, offset={offset}) {{ {body.format(d)} }}"
    pattern = patterndsl.compile(source, n).patterns[0][0]
    saved = G.morton_box_runs, G._BALL_CELLS, G._tree_keys
    G.morton_box_runs = lambda *a, **k: (_ for _ in ()).throw(AssertionError("a distance row cut into cubes"))
    G._BALL_CELLS = chunk
    try:
        keys = G.grid_row_keys(pattern, np.arange(n), n)
        degrees = G.grid_degrees(pattern, n)
        if "-" not in body and "|" not in body:  # one distance rule: its degrees in closed form, no runs
            G._tree_keys = lambda *a: (_ for _ in ()).throw(AssertionError("runs listed"))
            for order in ("morton", "rows"):
                single = patterndsl.compile(source.replace("morton", order), n).patterns[0][0]
                assert (G.grid_degrees(single, n) == patterndsl.reference.evaluate(single, np.arange(n), n).sum(1)).all()
    finally:
        G.morton_box_runs, G._BALL_CELLS, G._tree_keys = saved
    got = np.zeros((n, n), dtype=bool)
    for own, lo, hi in zip(keys.own, keys.lo, keys.hi):
        assert not got[own, lo:hi].any()  # disjoint runs
        got[own, lo:hi] = True
    dense = patterndsl.reference.evaluate(pattern, np.arange(n), n)
    assert (got == dense).all(), source
    assert (degrees == dense.sum(axis=1)).all(), source
