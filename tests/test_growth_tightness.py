"""Growth classes as tight as the parameters allow (issue 11 §3): index ranges and window
bounds whose size does not grow like n do not count as n. Hand cases, and properties on
random patterns whose parameters are expressions in n: no claim is contradicted by the
exact counts, and a Θ claim is tight (benchmarks/growth_tightness.py measures how often
the claimed exponent is the measured one)."""
from __future__ import annotations

import importlib.util
import math
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis.counts import connection_counts
from patterndsl.analysis.growth import bounds, growth_formula

# (source, the bound claimed without an n)
HAND = [
    ("global(n-4..n)", "Θ(n)"),
    ("cols(n-4..n)", "Θ(n)"),
    ("rows(n-4..n)", "Θ(n)"),
    ("global(n//2..n//2+3)", "Θ(n)"),
    ("global(max(0, n-isqrt(n))..n)", "Θ(n^1.5)"),
    ("window(n//3, -(n//3)+ilog2(n))", "Θ(n log n)"),
    ("cols(n - 1)", "Θ(n)"),  # n − 1 < n: the index is always inside
    ("cols(n // 2..n)", "Θ(n^2)"),
    ("cols(n - ilog2(n)..n)", "Θ(n log n)"),
    ("global(isqrt(n)..2 * isqrt(n))", "Θ(n^1.5)"),
    ("cols(max(0, n - 6)..n + 2)", "Θ(n)"),  # max(0, n − 6) is n − 6 for large n
    ("rows(min(n, 12)..n)", "Θ(n^2)"),
    ("global(n..n + 3)", "O(1)"),  # beyond the sequence at every n: no connections
    ("window(n // 2, -(n // 2) + 1)", "Θ(n)"),
    ("window(-(n // 4), n // 4 + isqrt(n))", "Θ(n^1.5)"),
    ("window(n, -(n) + 2)", "O(n)"),  # shifted off the matrix: no row holds the band
    ("window(isqrt(n), isqrt(n)) & causal", "Θ(n^1.5)"),  # equal sides: symmetric
    ("all & cols(0..n // 4)", "Θ(n^2)"),  # all is the identity of ∩
    ("random(isqrt(n), seed=4) & all", "Θ(n^1.5)"),  # (random(k): k keys a row)
    ("~(all - cols(n - ilog2(n)..n))", "Θ(n log n)"),  # all − B is ~B, and ~~B is B
    ("all - (all - causal)", "Θ(n^2)"),
    ("window(min(n, 12))", "Θ(n)"),
    ("window(n % 5)", "Θ(n)"),  # n mod 5 is in [0, 4]: a band of 1 to 9 keys
    ("window(n - n // 2 * 2, 1)", "Θ(n)"),  # n mod 2, written out: in [0, 1]
    ("stride(n // 4 + 1)", "Θ(n)"),
]


@pytest.mark.parametrize("source, expected", HAND)
def test_hand_cases(source, expected):
    assert growth_formula(source)["bound"] == expected


def test_range_sizes_in_the_formula():
    entry = growth_formula("global(max(0, n - isqrt(n))..n)")["per_layer"][0][0]
    assert entry["per_row_class"] == "Θ(n^0.5)"
    assert growth_formula("cols(n - 4..n)")["per_layer"][0][0]["per_row_class"] == "Θ(1)"


def load_corpus():
    """benchmarks/growth_tightness.py's random patterns (primitives with parameters in n,
    combined with | & - ~), drawn here by hypothesis."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "growth_tightness.py"
    spec = importlib.util.spec_from_file_location("growth_tightness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CORPUS = load_corpus()


def _sources(max_depth: int):
    return st.randoms(use_true_random=False).map(lambda rng: CORPUS.pattern(rng, max_depth))


def _class_value(n: int, hi) -> float:
    return n ** float(hi[0]) * math.log2(n) ** float(hi[1])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sources(max_depth=2), st.lists(S.sizes(min_n=16, max_n=300), min_size=1, max_size=3))
# (once found: a part bounded by its terms, whose concrete count the parent did not take)
@example("(window(n // 3, -(n // 3) + ilog2(n)) & global(0)) & (window(n // 3, -(n // 3) + ilog2(n)) "
         "& summary(16, 2))", [16])
def test_no_claim_contradicted(source, ns):
    """The concrete bound is never below the exact count (n ≥ 16: the corpus's ranges such
    as n-8..n need it), and the class bounds the concrete bound (their ratio does not
    grow from n = 2^14 to 2^26)."""
    bound = bounds(source)[0][0]
    for n in ns:
        count = connection_counts(patterndsl.compile(source, n))["per_layer"][0][0]
        assert count <= bound.evaluate(n) <= n * n, (source, n)
    hi = bound.summary().hi
    ratios = [bound.evaluate(n) / _class_value(n, hi) for n in (2 ** 14, 2 ** 20, 2 ** 26)]
    assert ratios[2] <= 2 * max(ratios[0], ratios[1]) + 1e-9, (source, hi, ratios)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sources(max_depth=2))
def test_tight_claims_are_tight(source):
    """A Θ claim: the exact count over the class stays within a constant factor from
    n = 2^10 to 2^14 (and is never 0). (Θ holds for all large n: at 2^8 a band such as
    window(isqrt(n) // 2) − window(ilog2(n)) is still empty.)"""
    summary = bounds(source)[0][0].summary()
    if not summary.tight or summary.hi == (Fraction(0), Fraction(0)):
        return
    ratios = []
    for n in (2 ** 10, 2 ** 12, 2 ** 14):
        count = connection_counts(patterndsl.compile(source, n))["per_layer"][0][0]
        ratios.append(count / _class_value(n, summary.hi))
    assert min(ratios) > 0, source
    assert max(ratios) / min(ratios) < 16, (source, ratios)
