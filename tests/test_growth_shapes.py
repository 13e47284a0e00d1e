"""Lower bounds from the shapes a pattern holds (patterndsl/analysis/growth.py, "lower
bounds"): every shape is held (its pairs in full, or its lower count at one n, against
the dense reference), a Θ claim's count over its class stays bounded above and below on
a doubling series of n (hypothesis over nested random patterns), and hand cases for each
rule, with cases where it must not fire."""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis.counts import connection_counts
from patterndsl.analysis.growth import bounds, growth_formula
from patterndsl.errors import SpatError
from patterndsl.reference import dense_mask
from test_growth_tightness import CORPUS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# nested random patterns: the benchmark's corpus (parameters in n), depth up to 3
SOURCES = st.randoms(use_true_random=False).flatmap(
    lambda rng: st.just(CORPUS.pattern(rng, rng.choice([1, 2, 2, 3]))))


def _interval(pair, n: int) -> tuple[int, int]:
    starts, ends = pair
    return max(s.at(n) for s in starts) if starts else -2 * n, min(e.at(n) for e in ends) if ends else 2 * n


def _region(shape, n: int) -> np.ndarray:
    """The pairs of the shape's rows × cols × band at n (what it is held in, or counted over)."""
    (r0, r1), (c0, c1), (a, b) = (_interval(p, n) for p in (shape.rows, shape.cols, shape.band))
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    return (i >= r0) & (i < r1) & (j >= c0) & (j < c1) & (j - i >= a) & (j - i < b)


def _held(source: str, ns) -> None:
    layers = bounds(source)
    for n in ns:
        compiled = patterndsl.compile(source, n)
        for l, layer in enumerate(layers):
            for h, bound in enumerate(layer):
                mask = dense_mask(compiled.pattern(l, h), n)
                for shape in bound.shapes():
                    region = _region(shape, n)
                    assert shape.count_at(n) <= (mask & region).sum(), (source, n, l, h, shape)
                    if shape.period is None and shape.count is None and not shape.less and not shape.thin:
                        assert not (region & ~mask).any(), (source, n, l, h, shape)  # held in full


def _count(source: str, n: int) -> int:
    return connection_counts(patterndsl.compile(source, n))["per_layer"][0][0]


def _region_source(shape, n: int) -> str | None:
    """The shape's rows × cols × band at n as a pattern (None: empty)."""
    (r0, r1), (c0, c1), (a, b) = (_interval(p, n) for p in (shape.rows, shape.cols, shape.band))
    r0, r1, c0, c1, a, b = max(r0, 0), min(r1, n), max(c0, 0), min(c1, n), max(a, 1 - n), min(b, n)
    if r0 >= r1 or c0 >= c1 or a >= b:
        return None
    return f"rows({r0}..{r1}) & cols({c0}..{c1}) & window({-a}, {b - 1})"


def _held_large(source: str, n: int, best: int = 3) -> None:
    """As _held, at a large n through the exact counter (shapes hold for all large n: their
    ends drop those beaten for large n, e.g. 8 against ilog2(n)), for the ``best`` shapes."""
    shapes = sorted(bounds(source)[0][0].shapes(), key=lambda s: -s.count_at(n))[:best]
    for shape in shapes:
        region = _region_source(shape, n)
        if region is None:
            assert shape.count_at(n) == 0, (source, n, shape)
            continue
        inside = _count(f"({source}) & {region}", n)
        assert shape.count_at(n) <= inside, (source, n, shape)
        if shape.period is None and shape.count is None and not shape.less and not shape.thin:
            assert inside == _count(region, n), (source, n, shape)  # held in full


LARGE = [2 ** 16 + 3, 40_009]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOURCES, st.sampled_from(LARGE))
@example("window(n // 4) & summary(n, 3)", LARGE[0])
@example("window(8) & window(ilog2(n))", LARGE[0])
@example("(stride(2) & global(isqrt(n))) & cols(n // 2..n)", LARGE[1])
@example("cols(3) & (chunk(16) | cols(0..ilog2(n), isqrt(n)))", LARGE[0])
@example("(~window(isqrt(n))) & (summary(n, 3) - chunk(n // 2))", LARGE[1])
def test_shapes_are_held(source, n):
    """Every shape of the pattern holds its lower count at n (within its region), and a
    shape held in full lies in the pattern (exact counts of the pattern within the region)."""
    _held_large(source, n)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(max_depth=2), st.sampled_from(["{}", "blocks(4) {{ {} }}", "blocks(3) {{ ~({}) }}",
                                                       "transpose({})", "~({})", "({}) - window(2)"]),
       st.sampled_from(LARGE))
def test_shapes_are_held_everywhere(source, wrap, n):
    """The same on the primitives' own random calls (offsets, every primitive), inside
    blocks, transpose, complements and differences."""
    source = wrap.format(source)
    try:
        patterndsl.compile(source, 64)
    except SpatError:
        return  # (segment ids inside blocks)
    _held_large(source, n)


@pytest.mark.parametrize("name", ["deepspeed_fixed", "fixed", "bigbird", "longformer_dilated", "prefix_lm"])
def test_example_shapes_are_held(name):
    _held((EXAMPLES / f"{name}.spat").read_text(), [256, 300])


def _value(n: int, c) -> float:
    return n ** float(c[0]) * math.log2(n) ** float(c[1])


DOUBLING = [2 ** k for k in range(7, 13)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SOURCES)
def test_theta_claims_bounded_on_a_doubling_series(source):
    """A Θ(f) claim resting on a shape: count / f bounded above and below over n = 2^7 … 2^12,
    and the shape's own lower count at one n grows like f (2^12 … 2^24, no counting)."""
    summary = bounds(source)[0][0].summary()
    if not (summary.tight and summary.held) or summary.hi == (Fraction(0), Fraction(0)):
        return
    ratios = [connection_counts(patterndsl.compile(source, n))["per_layer"][0][0] / _value(n, summary.hi)
              for n in DOUBLING]
    assert min(ratios) > 0, (source, ratios)
    assert max(ratios) / min(ratios) < 16, (source, ratios)
    best = [max(s.count_at(n) for s in bounds(source)[0][0].shapes()) / _value(n, summary.lo)
            for n in (2 ** 12, 2 ** 16, 2 ** 20, 2 ** 24)]
    assert best[-1] > 0 and best[-1] >= min(best[:-1]) / 4, (source, best)


# (source, the claim without an n): each rule firing, and cases where it must not
HAND = [
    # 1. rows whose band lies in cols
    ("window(3) & cols(n // 4..n)", "Θ(n)"),
    ("window(isqrt(n), 0) & cols(0..n // 2) & rows(n // 4..n)", "Θ(n^1.5)"),
    # 2. rows whose band covers cols
    ("window(n // 4) & summary(n, 3)", "Θ(n)"),
    ("window(isqrt(n)) & cols(n // 2)", "Θ(n^0.5)"),
    ("causal & cols(0..n // 2)", "Θ(n^2)"),
    ("cols(0..8) & causal", "Θ(n)"),
    # 3. the square around the diagonal
    ("causal & rows(0..n // 2)", "Θ(n^2)"),
    ("window(ilog2(n), 0) & rows(0..n // 3) & cols(0..n // 3)", "Θ(n log n)"),
    # periodic
    ("(stride(2) & global(isqrt(n))) & cols(n // 2..n)", "Θ(n)"),
    ("(stride(ilog2(n) + 1) & cols(0..n // 4)) & stride(ilog2(n) + 1)", "Θ(n^2 log^-1 n)"),
    ("summary(16, 2) & rows(0..n // 2)", "Θ(n^2)"),
    # by count (random, chunk)
    ("random(4, seed=1) & rows(0..n // 2)", "Θ(n)"),
    ("chunk(16) & window(20)", "Θ(n)"),
    # differences and complements: less D keys a row, E rows
    ("cols(0..n // 2) - window(isqrt(n))", "Θ(n^2)"),
    ("(~window(isqrt(n))) & rows(0..n // 2)", "Θ(n^2)"),
    ("cols(3) & (chunk(16) | cols(0..ilog2(n), isqrt(n)))", "Θ(n)"),
    # avoiding the taken pattern's outer boxes (cols, rows, a band)
    ("cols(n // 2, 0..n // 4) - cols(n // 2..n)", "Θ(n^2)"),
    ("(cols(n // 2..n // 2 + 3) | window(0)) - rows(n // 2..n)", "Θ(n)"),
    ("window(8) - dilated(3, 1)", "Θ(n)"),
    # thinned by the taken pattern's runs
    ("~stride(2)", "Θ(n^2)"),
    ("cols(0..n // 2) - summary(16, 2)", "Θ(n^2)"),
    # 1b/1c: one end of the band inside cols
    ("global(0..4) & window(isqrt(n) // 2)", "Θ(n^0.5)"),
    # 3b. half-rows beside the diagonal
    ("~causal", "Θ(n^2)"),
    ("window(ilog2(n), -1) & rows(0..ilog2(n))", "Θ(log^2 n)"),
    # 4. one diagonal of a pattern periodic in j
    ("self & summary(isqrt(n), 1)", "Θ(n^0.5)"),
    ("summary(16, 2) & window(2)", "Θ(n)"),
    # blocks and transpose
    ("blocks(16) { summary(4, 1) }", "Θ(n^2)"),
    ("blocks(4) { cols(0..n // 8) }", "Θ(n^2)"),
    ("transpose(cols(0..n // 2)) & causal", "Θ(n^2)"),
    # must not fire: the count is 0 (or smaller) for large n
    ("stride(isqrt(n)) & window(ilog2(n)) - self", "O(n log n)"),  # a run of 2·log n keys < √n
    ("summary(4, 1) & summary(4, 1, offset=1)", "O(n^2)"),  # two periodic patterns: disjoint here
    ("stride(2, offset=1) & self", "O(n)"),  # an offset: no shape
    ("cols(n - 1) & random(isqrt(n), seed=3)", "O(n)"),  # a count meets only wider cols
    ("random(4, seed=1) & window(n // 4)", "O(n)"),  # … and a band holding its keys' band
    ("cols(0..n // 2) - cols(0..n // 2 + 1)", "O(n^2)"),  # D of the same class as the keys
    ("~cols(0..n) & rows(0..4)", "O(n)"),
    ("blocks(16) { ~chunk(n // 16) }", "O(n^2)"),  # the complement's D is the whole block row
    ("window(n, -(n) + 2)", "O(n)"),  # shifted off the matrix
    ("transpose(summary(16, 2)) & causal", "O(n^2)"),  # periodic in j: not carried through transpose
    ("cols(0..n // 4) - cols(0..n // 2)", "O(n^2)"),  # the box covers the shape: no part left
    ("rows(0..n // 2) - rows(0..n // 2 + 1)", "O(n^2)"),
    ("window(3) - window(4)", "O(n)"),
    ("(~stride(2)) - stride(2, offset=1)", "O(n^2)"),  # no runs for an offset: the odd offsets go
    ("cols(0..n // 2) - (stride(2) | stride(2, offset=1))", "O(n^2)"),  # a union has no runs
    ("rows(0..4) & window(isqrt(n), 0)", "O(n^0.5)"),
    ("rows(n // 2..n) & window(-(n // 2) - 1, n)", "O(n^2)"),  # offsets > n/2 from rows ≥ n/2: none  # column 0 cuts the band's left end: 10 pairs
    ("(self & summary(isqrt(n), 1)) - cols(0..n)", "O(n^0.5)"),  # D > 0 may take a diagonal's pair
]


@pytest.mark.parametrize("source, expected", HAND)
def test_hand_cases(source, expected):
    assert growth_formula(source)["bound"] == expected
    _held(source, [64, 131])


def test_deepspeed_fixed_is_theta():
    out = growth_formula(EXAMPLES / "deepspeed_fixed.spat")
    assert out["bound"] == "Θ(n^2)" and out["tight"]
