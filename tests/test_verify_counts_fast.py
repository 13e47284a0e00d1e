"""verify's fast count paths against the dense reference evaluator: complements written in
place, intersections cut by one interval a row, blocks over sorted rows, a batch's split
read once, and grids whose operand is a box of cells counted as the box's volume."""
from __future__ import annotations

import copy

import numpy as np
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import patterndsl
from patterndsl import strategies
from patterndsl.analysis.conditions import certificate, check_conditions
from patterndsl.analysis.counts import connection_counts
from patterndsl.errors import SpatError
from patterndsl.reference import evaluate
from patterndsl.verify import (_box_grid, _check_counts, _Claims, _complement, _intersection, _KeySets, _keys,
                               _Meter, _row_sizes, _split, verify_report)

SLOW = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _dense(ks: _KeySets, n: int) -> np.ndarray:
    out = np.zeros((ks.m, n), dtype=bool)
    for row, lo, hi in zip(ks.own, ks.lo, ks.hi):
        out[row, lo:hi] = True
    return out


def _normal(ks: _KeySets, n: int) -> bool:
    """Sorted by (own, lo), disjoint, not touching, non-empty, inside [0, n)."""
    own, lo, hi = ks.own, ks.lo, ks.hi
    if not ((lo < hi).all() and (lo >= 0).all() and (hi <= n).all() and (own >= 0).all() and (own < ks.m).all()):
        return False
    same = own[1:] == own[:-1]
    return bool(((own[1:] > own[:-1]) | (same & (lo[1:] > hi[:-1]))).all())


@st.composite
def key_sets(draw, m: int, n: int):
    """Random key sets of m rows over [0, n): some rows empty, some one interval, some many
    (touching 0 or n often), or exactly one interval in every row (causal, window)."""
    kind = draw(st.sampled_from(["many", "one", "one_some", "full"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if kind == "full":
        lo = rng.integers(0, n, m)
        return _KeySets.make(m, np.arange(m), lo, lo + rng.integers(1, n + 1, m), n)
    if kind.startswith("one"):
        rows = np.arange(m) if kind == "one" else np.flatnonzero(rng.random(m) < 0.6)
        lo = np.where(rng.random(rows.size) < 0.2, 0, rng.integers(0, n, rows.size))
        hi = np.where(rng.random(rows.size) < 0.2, n, lo + rng.integers(0, n // 3 + 2, rows.size))
        return _KeySets.make(m, rows, lo, hi, n)
    count = int(rng.integers(0, 6 * m + 1))
    own = rng.integers(0, m, count)
    lo = np.where(rng.random(count) < 0.1, 0, rng.integers(0, n, count))
    hi = np.where(rng.random(count) < 0.1, n, lo + rng.integers(0, 60, count))
    return _KeySets.make(m, own, lo, hi, n)


@settings(max_examples=80, **SLOW)
@given(st.one_of(st.integers(1, 40), st.integers(2049, 4099)), st.integers(1, 30), st.data())
def test_complement_and_intersection_match_dense_sets(n, m, data):
    sets = [data.draw(key_sets(m, n)) for _ in range(data.draw(st.integers(1, 4)))]
    dense = [_dense(s, n) for s in sets]
    for s, d in zip(sets, dense):
        c = _complement(s, n)
        assert _normal(c, n) and (_dense(c, n) == ~d).all()
    meet = _intersection(sets, n)
    assert _normal(meet, n)
    assert (_dense(meet, n) == np.logical_and.reduce(dense)).all()


def _rows(n):
    return np.unique(np.concatenate([np.arange(80), np.arange(n - 80, n),
                                     np.random.default_rng(n).integers(0, n, 120)])).astype(np.int64)


MEETS = ["window({a}) & causal & chunk({c})", "~causal & window({a}, {b}) & ~chunk({c})",
         "(window({a}) | stride({s})) & causal", "causal & (rows(0..{a}) | chunk({c})) & window({b}, 3)",
         "blocks({B}) {{ window({a}, 0) | summary(8, 1, offset={b}) }} & causal",
         "blocks({B}) {{ window({c}, 0) | dilated(2, 3) }} & ~causal & window({w})",
         "causal & blocks({B}) {{ chunk({c}) }} & (window({a}) | cols(0..{c}))",
         "~(window({a}) & causal) & (chunk({c}) | summary({c}, 1))"]


@settings(max_examples=60, **SLOW)
@given(st.integers(2049, 4099), st.sampled_from(MEETS), st.integers(1, 60), st.integers(0, 59), st.integers(1, 40),
       st.integers(2, 32), st.integers(2, 64), st.integers(1, 300))
def test_meets_and_complements_of_intervals_match_the_reference(n, meet, a, b, c, s, B, w):
    source = meet.format(a=a, b=b, c=c, s=s, B=B, w=w)
    pattern = patterndsl.compile(source, n).patterns[0][0]
    rows = _rows(n)
    dense = evaluate(pattern, rows, n)
    assert (_row_sizes(pattern, rows, n, _Meter(1 << 40)) == dense.sum(axis=1)).all(), source
    assert (_dense(_keys(pattern, rows, n, _Meter(1 << 40)), n) == dense).all(), source
    shuffled = np.random.default_rng(n).permutation(rows)  # blocks over unsorted rows (np.unique's path)
    assert (_dense(_keys(pattern, shuffled, n, _Meter(1 << 40)), n) == evaluate(pattern, shuffled, n)).all()
    mask, V = _split(pattern, rows, n, _Meter(1 << 40))
    again = _split(pattern, rows.copy(), n, _Meter(1 << 40))  # another rows array: computed anew
    for got in ((mask, V), again):
        listed = _dense(got[1], n) | (got[0] if got[0] is not None else False)
        assert (listed == dense).all(), source


@settings(max_examples=12, **SLOW)
@given(st.integers(2049, 4099), st.integers(0, 7), st.integers(2, 64), st.integers(1, 20))
def test_phi3_shaped_counts_match_the_reference_and_catch_corruption(n, h, B, local):
    # phi3_small's layers: causal, then blocks(B) { window(local, 0) | summary(8, 1, offset=h) } & causal
    source = (f"layers {{\n causal\n heads {{\n 0: blocks({B}) {{ window({local}, 0) | summary(8, 1, offset={h}) }}"
              f" & causal\n 1: blocks({B}) {{ window({local}, 0) | summary(8, 1, offset={h + 1}) }} & causal\n }}\n}}")
    compiled = patterndsl.compile(source, n)
    masks = [[compiled.dense(k, hh) for hh in range(2)] for k in range(2)]
    truth = {"per_layer": [[int(m.sum()) for m in row] for row in masks],
             "union": [int((masks[0][hh] | masks[1][hh]).sum()) for hh in range(2)]}
    assert _check_counts(_Claims(compiled, 1 << 40), truth) is None
    for k, hh, delta in ((1, 0, 1), (1, 1, -1), (0, 1, 1)):
        wrong = copy.deepcopy(truth)
        wrong["per_layer"][k][hh] += delta
        assert _check_counts(_Claims(compiled, 1 << 40), wrong) is not None
    wrong = copy.deepcopy(truth)
    wrong["union"][1] -= 1
    assert _check_counts(_Claims(compiled, 1 << 40), wrong) is not None


# ---- grids counted as boxes ---------------------------------------------------------------


@st.composite
def box_grids(draw):
    """A grid over 2D or 3D sides whose operand is a box primitive, a meet of them (with all
    or self), or now and then not a box (stride2d, manhattan, |, transpose): counted anyway."""
    three = draw(st.booleans())
    dims = [draw(st.integers(1, 12 if three else 48)) for _ in range(3 if three else 2)]
    options, tile = draw(strategies.grid_options(dims))
    leaves = strategies.grid_box_calls(three, tile, st.integers(0, 4), st.integers(1, 9), st.integers(-3, 3))
    leaves += [st.just("all"), st.just("self")]
    parts = draw(st.lists(st.one_of(leaves), min_size=1, max_size=3))
    body = " & ".join(parts)
    if draw(st.integers(0, 5)) == 0:  # not a box: the general path
        body = draw(st.sampled_from([f"({body}) | self", "stride2d(2, 3)" if not three else "~self",
                                     f"transpose({parts[0]})", f"manhattan(2) & {body}" if not three else body]))
    return f"grid({', '.join(options)}) {{ {body} }}"


def _compiled(source, n):
    try:
        return patterndsl.compile(source, n)
    except SpatError:
        assume(False)


@settings(max_examples=80, **SLOW)
@given(box_grids(), st.one_of(st.integers(2049, 4099), st.integers(1, 300)))
def test_box_grid_counts_match_the_reference(source, n):
    compiled = _compiled(source, n)
    pattern = compiled.patterns[0][0]
    rows = _rows(n) if n > 300 else np.arange(n, dtype=np.int64)
    cells = pattern.offset + int(np.prod(pattern.dims))
    inside = np.arange(pattern.offset, min(n, cells), dtype=np.int64)
    rows = np.unique(np.concatenate([rows, inside[np.random.default_rng(n).integers(0, inside.size, 150)]])
                     if inside.size else rows)
    assert (_row_sizes(pattern, rows, n, _Meter(1 << 40)) == evaluate(pattern, rows, n).sum(axis=1)).all(), source


@settings(max_examples=40, **SLOW)
@given(strategies.grid_sources(max_side=8), st.integers(1, 80))
def test_any_grid_counts_match_the_reference(source, n):
    # the hypothesis corpus of grids (any operand, grids larger than n): box or not, counted right
    compiled = _compiled(source, n)
    pattern = compiled.patterns[0][0]
    rows = np.arange(n, dtype=np.int64)
    assert (_row_sizes(pattern, rows, n, _Meter(1 << 40)) == evaluate(pattern, rows, n).sum(axis=1)).all(), source


def test_box_grid_counts_cost_rows_not_cells_and_corruption_is_caught():
    # sliding_tile_video's shape, smaller: grid(6, 24, 16, tile=(2, 8, 8)) { sliding_tiles3d(3, 3, 3) }
    # at n = 2^13 (2,304 cells): counted as boxes, a few units a row, not rows × cells pairs
    n = 1 << 13
    source = "grid(6, 24, 16, tile=(2, 8, 8)) { sliding_tiles3d(3, 3, 3) }"
    compiled = patterndsl.compile(source, n)
    assert _box_grid(compiled.patterns[0][0], n)
    dense = compiled.dense(0, 0)
    truth = {"per_layer": [[int(dense.sum())]], "union": [int(dense.sum())]}
    ch = _Claims(compiled, 1 << 40)
    assert _check_counts(ch, truth) is None
    assert ch.meter.used < 16 * n
    cert = certificate(compiled, check_conditions(compiled, budget_seconds=5.0), connection_counts(compiled))
    assert cert["counts"] == truth
    assert verify_report(compiled, cert) == {"failures": [], "unchecked": []}
    for path in (("per_layer", 0, 0), ("union", 0)):
        bad = copy.deepcopy(cert)
        target = bad["counts"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] += 1
        report = verify_report(compiled, bad)
        assert report["failures"] and any("counts" in f for f in report["failures"])


def test_a_grid_past_n_counts_its_first_cells_only():
    # cells at or beyond n have no token: raster and tile order count the box's cells ranked
    # below n − offset; Morton order is not counted as a box there (the general path runs)
    for source, box in (("grid(10, 10, offset=5) { window2d(2, 2) }", True),
                        ("grid(4, 8, 6, tile=(2, 4, 3), offset=3) { sliding_tiles3d(1, 2, 1) & window3d(1, 3, 2) }", True),
                        ("grid(16, 16, order=morton) { natten(5, 3) }", False)):
        for n in (20, 60, 97, 150):
            pattern = patterndsl.compile(source, n).patterns[0][0]
            assert _box_grid(pattern, n) == box, source
            rows = np.arange(n, dtype=np.int64)
            assert (_row_sizes(pattern, rows, n, _Meter(1 << 40)) == evaluate(pattern, rows, n).sum(axis=1)).all()


def test_a_diagonal_read_once_still_tells_heads_apart():
    # head 0 and head 1 share layer 0; head 1's layer 1 lacks the diagonal: its C1 and its
    # diagonal evidence are refused although head 0's (equal layer 0) were read first
    n = 3001
    compiled = patterndsl.compile("layers {\n causal\n heads {\n 0: window(2)\n 1: window(2) - self\n }\n}", n)
    ch = _Claims(compiled, 1 << 40)
    assert ch.c1(0) and not ch.c1(1)
    assert ch.diagonal(0, 0) and ch.diagonal(0, 1) and ch.diagonal(1, 0) and not ch.diagonal(1, 1)
    cert = certificate(compiled, check_conditions(compiled, budget_seconds=2.0), connection_counts(compiled))
    assert verify_report(compiled, cert) == {"failures": [], "unchecked": []}
    bad = copy.deepcopy(cert)
    bad["conditions"][1]["self_loops"] = {"holds": True}
    assert verify_report(compiled, bad)["failures"]
    bad = copy.deepcopy(cert)
    for ev in bad["nonempty_rows"]["evidence"]:
        if ev["layer"] == 1 and ev["head"] == 1:
            ev["keys"] = "diagonal"
    assert verify_report(compiled, bad)["failures"]


def test_union_has_asks_later_layers_only_the_open_pairs():
    n = 4099
    compiled = patterndsl.compile("layers {\n causal\n window(3) & ~causal\n stride(7)\n}", n)
    rng = np.random.default_rng(5)
    i, j = rng.integers(0, n, 5000), rng.integers(0, n, 5000)
    truth = np.logical_or.reduce([compiled.dense(k, 0)[i, j] for k in range(3)])
    assert (_Claims(compiled, 1 << 40).union_has(0, i, j) == truth).all()


def test_count_batches_follow_the_listed_intervals_not_the_progressions():
    # design_card's `window(64) | stride(128) | global(0..8)` and phi3's blocked summary: a
    # long progression and a row-independent summary are counted by arithmetic, so a batch
    # holds many rows (at 256 rows a batch, the batches' fixed cost was most of the time)
    n = 1 << 16
    for source in ("window(64) | stride(128) | global(0..8)",
                   "layers {\n causal\n blocks(64) { window(15, 0) | summary(8, 1, offset=3) } & causal\n}"):
        compiled = patterndsl.compile(source, n)
        ch = _Claims(compiled, 1 << 40)
        assert _check_counts(ch, {"per_layer": [[0]] * compiled.layers, "union": [0]}) is not None
        assert ch.meter.used < 40 * n, source


def test_tiled_and_raster_grids_past_n_match_the_reference():
    # seeded: grids of up to ~4,000 cells in raster or tile order, n from a third of the grid
    # to past it (n ≤ 4,099), operands sliding_tiles / natten / chunk & natten / their 3D forms
    rng = np.random.default_rng(1)
    checked = past = 0
    for _ in range(60):
        three = rng.random() < 0.5
        tile = [int(rng.integers(1, 5 if three else 9)) for _ in range(3 if three else 2)]
        dims = [t * int(rng.integers(1, 5 if three else 9)) for t in tile]
        if three:
            op = (f"sliding_tiles3d({rng.integers(1, 6)}, {rng.integers(1, 6)}, {rng.integers(1, 6)}) & "
                  f"window3d({rng.integers(0, 4)}, {rng.integers(0, 4)}, {rng.integers(0, 4)})")
        else:
            op = (f"sliding_tiles({rng.integers(1, 6)}, {rng.integers(1, 6)})" if rng.random() < 0.5 else
                  f"chunk2d({rng.integers(1, 9)}, {rng.integers(1, 9)}, shift=({rng.integers(-3, 4)}, "
                  f"{rng.integers(-3, 4)})) & natten({rng.integers(1, 9)}, {rng.integers(1, 9)})")
        options = [str(d) for d in dims] + [f"offset={rng.integers(0, 50)}"]
        if rng.random() < 0.6:
            options.append(f"tile=({', '.join(map(str, tile))})")
        cells = int(np.prod(dims))
        n = min(4099, int(rng.integers(max(1, cells // 3), cells + 60)))
        source = f"grid({', '.join(options)}) {{ {op} }}"
        try:
            pattern = patterndsl.compile(source, n).patterns[0][0]
        except SpatError:
            continue
        if not _box_grid(pattern, n):
            continue
        past += pattern.offset + cells > n
        rows = np.arange(n, dtype=np.int64)
        assert (_row_sizes(pattern, rows, n, _Meter(1 << 40)) == evaluate(pattern, rows, n).sum(axis=1)).all(), source
        checked += 1
    assert checked >= 30 and past >= 20
