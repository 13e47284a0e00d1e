"""verify's split key sets (row-independent parts once, long progressions by arithmetic,
blocks { } at block level) against the dense reference evaluator."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import patterndsl
from patterndsl.reference import evaluate
from patterndsl.verify import _check_counts, _Claims, _hits, _keys, _Meter, _pairs, _row_sizes, _split

PARTS = ["window({a})", "window({a}, {b})", "global(0..{a})", "global({g}, {b})", "cols({b}..{d})",
         "rows(0..{a})", "causal", "self", "chunk({c})", "summary({c}, {e})", "summary(8, 3, offset={b})",
         "stride({s})", "stride({s}, offset={b})", "dilated({w}, {s})", "dilated(2, 3)", "~causal",
         "cols(n-4..n)", "none", "all & cols(0..{a})", "summary({c}, {e}) & causal",
         "causal & (summary(8, 3) & window({a}, 300))", "(window({a}) | summary({c}, {e})) & causal",
         "cols(0..{a}) & (chunk({c}) | summary(8, 2, offset={b})) & window({w})"]


@st.composite
def split_cases(draw):
    """A union (optionally inside blocks { }) of row-independent, long-progression and
    interval parts, at n in 2,049 … 4,099 (a stride of s ≤ 32 there has ≥ 64 keys a row)."""
    n = draw(st.integers(2049, 4099))
    parts = draw(st.lists(st.sampled_from(PARTS), min_size=1, max_size=4))
    values = {"a": draw(st.integers(1, 60)), "b": draw(st.integers(0, 59)), "c": draw(st.integers(1, 40)),
              "g": draw(st.integers(0, 59)), "s": draw(st.integers(2, 32)), "w": draw(st.integers(1, 200))}
    values["d"] = values["b"] + values["c"]
    values["e"] = draw(st.integers(1, values["c"]))
    text = " | ".join(p.format(**values) for p in parts)
    if draw(st.booleans()):
        text = f"blocks({draw(st.integers(2, 40))}) {{ {text} }}"
    return text, n


def _rows(n):
    return np.unique(np.concatenate([np.arange(80), np.arange(n - 80, n),
                                     np.random.default_rng(n).integers(0, n, 80)])).astype(np.int64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_cases())
def test_split_sizes_keys_and_hits_match_the_reference(case):
    source, n = case
    compiled = patterndsl.compile(source, n)
    pattern = compiled.patterns[0][0]
    rows = _rows(n)
    dense = evaluate(pattern, rows, n)
    assert (_row_sizes(pattern, rows, n, _Meter(1 << 40)) == dense.sum(axis=1)).all()
    mask, V = _split(pattern, rows, n, _Meter(1 << 40))
    got = np.zeros_like(dense) if mask is None else np.broadcast_to(mask, dense.shape).copy()
    for row, lo, hi in zip(V.own, V.lo, V.hi):
        got[row, lo:hi] = True
    assert (got == dense).all()
    keys = _keys(pattern, rows, n, _Meter(1 << 40))
    listed = np.zeros_like(dense)
    for row, lo, hi in zip(keys.own, keys.lo, keys.hi):
        listed[row, lo:hi] = True
    assert (listed == dense).all()
    C = np.random.default_rng(n + 1).random(n) < 0.3
    ch = _Claims(compiled, 1 << 40)
    assert (_hits(ch, 0, 0, rows, C, np.concatenate([[0], np.cumsum(C)])) == (dense & C).sum(axis=1)).all()
    i, j = np.repeat(rows, 7), np.random.default_rng(n + 2).integers(0, n, rows.size * 7)
    assert (_pairs(pattern, i, j, n) == dense[np.repeat(np.arange(rows.size), 7), j]).all()


def test_blocked_summary_counts_cost_block_rows_not_token_pairs():
    # deepspeed's blocks(16) { chunk(4) | summary(4, 1) | … }: the summary part is read once,
    # each row costs its own interval, so the count re-check at n = 2^16 stays far below n².
    n = 1 << 16
    pattern = patterndsl.compile("blocks(16) { chunk(4) | summary(4, 1) | cols(n-1..n) }", n).patterns[0][0]
    meter = _Meter(1 << 40)
    rows = np.arange(n, dtype=np.int64)
    sizes = _row_sizes(pattern, rows, n, meter)
    assert meter.used < 40 * n
    probe = np.array([0, 17, 4095, n - 1])
    assert (sizes[probe] == evaluate(pattern, probe, n).sum(axis=1)).all()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2049, 4099), st.integers(2, 200), st.integers(1, 8), st.sampled_from(["causal", "window(37)"]))
def test_two_layer_counts_match_the_reference(n, b, c, cut):
    # fixed.spat's shape: the union of two layers counted as |A| + |B| − |A ∩ B|
    source = f"layers {{\n chunk({b}) & {cut}\n summary({b}, {min(b, c)}) & {cut}\n}}"
    compiled = patterndsl.compile(source, n)
    masks = [compiled.dense(k, 0) for k in range(2)]
    truth = {"per_layer": [[int(m.sum())] for m in masks], "union": [int((masks[0] | masks[1]).sum())]}
    assert _check_counts(_Claims(compiled, 1 << 40), truth) is None
    for wrong in ({"per_layer": truth["per_layer"], "union": [truth["union"][0] - 1]},
                  {"per_layer": [[truth["per_layer"][0][0]], [truth["per_layer"][1][0] + 1]], "union": truth["union"]}):
        assert _check_counts(_Claims(compiled, 1 << 40), wrong) is not None


MEETS = ["stride({s}) & causal", "stride({s}, offset={b}) & window({w})", "dilated({w}, {s}) & causal",
         "stride({s}) & ~causal & window({w}, 9)", "causal & stride({s}) & summary({c}, {e})",
         "stride({s}) & (cols(0..{a}) | summary(8, 2))", "stride({s}) & (window({a}) | chunk({c}))",
         "stride({s}) & stride({t})", "dilated({w}, {s}) & stride({t}) & causal", "stride({s}) & all & cols({b}..{d})"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2049, 4099), st.sampled_from(MEETS), st.integers(1, 60), st.integers(0, 59), st.integers(1, 40),
       st.integers(2, 32), st.integers(2, 32), st.integers(1, 200), st.data())
def test_long_progression_meets_match_the_reference(n, meet, a, b, c, s, t, w, data):
    # a stride or dilation with ≥ 64 keys a row, met with intervals and masks, counted by arithmetic
    e = data.draw(st.integers(1, c))
    source = meet.format(a=a, b=b, c=c, d=b + c, e=e, s=s, t=t, w=w)
    compiled = patterndsl.compile(source, n)
    pattern = compiled.patterns[0][0]
    rows = _rows(n)
    assert (_row_sizes(pattern, rows, n, _Meter(1 << 40)) == evaluate(pattern, rows, n).sum(axis=1)).all(), source


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2049, 4099), st.integers(0, 3))
def test_strided_counts_match_the_reference(n, shift):
    # strided.spat's two layers: window(l − 1, 0) and stride(l) & causal, union as |A| + |B| − |A ∩ B|
    source = f"let l = isqrt(n) - {shift}\nlayers {{\n window(l - 1, 0)\n stride(l) & causal\n}}"
    compiled = patterndsl.compile(source, n)
    masks = [compiled.dense(k, 0) for k in range(2)]
    truth = {"per_layer": [[int(m.sum())] for m in masks], "union": [int((masks[0] | masks[1]).sum())]}
    assert _check_counts(_Claims(compiled, 1 << 40), truth) is None
    wrong = {"per_layer": truth["per_layer"], "union": [truth["union"][0] + 1]}
    assert _check_counts(_Claims(compiled, 1 << 40), wrong) is not None


def test_strided_counts_cost_intervals_not_listed_keys():
    # at n = 2^16, stride(256) & causal holds ~n·√n/2 = 2^23 keys; the count re-check reads
    # each row's few intervals and the progression by arithmetic: well under one unit a key
    n = 1 << 16
    compiled = patterndsl.compile("let l = isqrt(n)\nlayers {\n window(l - 1, 0)\n stride(l) & causal\n}", n)
    ch = _Claims(compiled, 1 << 40)
    rows = np.arange(n, dtype=np.int64)
    keys = int(_row_sizes(compiled.patterns[1][0], rows, n, _Meter(1 << 40)).sum())
    assert keys > n * 100
    assert _check_counts(ch, {"per_layer": [[0], [0]], "union": [0]}) is not None
    assert ch.meter.used < 64 * n
    assert ch.meter.used * 4 < keys
