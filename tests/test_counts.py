"""Exact connection counts (patterndsl.analysis.counts) against the dense reference.

Every row degree must equal the row sum of the reference mask — for random
nested patterns and files (hypothesis), for each primitive at ragged n, for
the slow paths, and for the examples; and the fast key sets of `random` must
be the keys of patterndsl/randomgen.py's sequential definition.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import randomgen
from patterndsl import strategies as S
from patterndsl.analysis import analyze_rows, connection_counts, degree_stats, row_degrees

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def examples(count: int) -> int:
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


def check_source(source: str, n: int, simplify: bool = True):
    """Every layer × head's degrees, the union's, and connection_counts against the reference."""
    compiled = patterndsl.compile(source, n, simplify=simplify)
    dense = compiled.dense_all()
    result = connection_counts(compiled)
    for l, layer in enumerate(compiled.patterns):
        for h, pattern in enumerate(layer):
            expected = dense[l, h].sum(axis=1)
            got = row_degrees(pattern, n)
            assert got.dtype == np.int64 and got.shape == (n,)
            assert np.array_equal(got, expected), (source, n, l, h, str(pattern))
            assert result["per_layer"][l][h] == int(expected.sum())
            assert result["rows"][l][h] == degree_stats(expected)
    for h in range(compiled.heads):
        union = dense[:, h].any(axis=0).sum(axis=1)
        assert result["union"][h] == int(union.sum()), (source, n, h)
        assert result["union_rows"][h] == degree_stats(union)
    assert result["nonempty_rows"] == bool((dense.sum(axis=3) > 0).all())
    return result


# ---- property tests ---------------------------------------------------------------------


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(), S.sizes(max_n=64), st.booleans())
def test_nested_patterns(source, n, simplify):
    check_source(source, n, simplify)


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(S.files(), S.sizes(max_n=48))
def test_files(source, n):
    check_source(source, n)


PERIODIC = S.primitive_sources(("stride", "summary", "dilated", "window", "chunk", "causal", "cols"))


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.pattern_sources(leaves=PERIODIC), S.sizes(max_n=64))
def test_several_progressions(source, n):
    """Mixtures of progressions (stride, summary, dilated): the enumerated and slow paths."""
    check_source(source, n, simplify=False)


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(1, 300), st.integers(0, 320), st.integers(0, 2**62), st.lists(st.integers(0, 299), max_size=20))
def test_random_key_sets_are_the_keys(n, r, seed, rows):
    rows = np.array([row % n for row in rows], dtype=np.int64)
    expected = np.sort(randomgen.keys(seed, rows, n, r), axis=1)
    assert np.array_equal(np.sort(randomgen.key_sets(seed, rows, n, r), axis=1), expected)


# ---- each primitive at ragged n ----------------------------------------------------------

PRIMITIVES = [
    "all", "none", "self", "causal", "window(0)", "window(3)", "window(2, 0)", "window(-2, 5)",
    "window(5, -2)", "window(n, -(n))", "window(1000000)", "dilated(2, 3)", "dilated(0, 4)",
    "dilated(n, 1)", "dilated(3, n + 1)", "stride(1)", "stride(3)", "stride(isqrt(n))", "stride(2 * n)",
    "chunk(1)", "chunk(4)", "chunk(n + 1)", "summary(5, 2)", "summary(4, 4)", "summary(n, 1)",
    "summary(1000000, 999999)", "global(0..2, 7)", "global(n - 1)", "global(n..n + 3)", "rows(1, 3..5)",
    "cols(0, 2, 4, 6, n - 1)", "cols(n // 2..n)", "logsparse", "random(3, seed=1)", "random(n - 1)",
    "random(n + 1)", "random(0)",
]


@pytest.mark.parametrize("source", PRIMITIVES)
@pytest.mark.parametrize("n", [1, 2, 3, 13, 50, 67])
def test_primitive(source, n):
    check_source(source, n)
    check_source(source, n, simplify=False)


def test_hand_counted():
    """Counts worked out by hand."""
    assert list(row_degrees(patterndsl.compile("window(1)", 5).pattern(), 5)) == [2, 3, 3, 3, 2]
    assert list(row_degrees(patterndsl.compile("stride(3)", 7).pattern(), 7)) == [3, 2, 2, 3, 2, 2, 3]
    assert list(row_degrees(patterndsl.compile("summary(4, 1) & causal", 9).pattern(), 9)) == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert list(row_degrees(patterndsl.compile("logsparse & causal", 8).pattern(), 8)) == [1, 2, 3, 3, 4, 4, 4, 4]
    assert list(row_degrees(patterndsl.compile("dilated(1, 2)", 6).pattern(), 6)) == [2, 2, 3, 3, 2, 2]
    assert row_degrees(patterndsl.compile("random(4, seed=9)", 10).pattern(), 10).tolist() == [4] * 10


SLOW = [
    ("stride(2) & stride(3) | window(1)", "residues mod 6"),
    ("stride(6) - stride(4)", "residues mod 12"),
    ("~(stride(3) | summary(4, 1))", "residues mod 12"),
    ("stride(97) & stride(89)", "dense rows"),
    ("(stride(7) | summary(9, 3)) - stride(5) | random(3)", None),
]


@pytest.mark.parametrize("source, how", SLOW)
@pytest.mark.parametrize("n", [1, 10, 64, 200])
def test_slow_paths(source, how, n):
    """Formulas over several progressions are exact too, and say how they were counted."""
    check_source(source, n, simplify=False)
    result = analyze_rows(patterndsl.compile(source, n, simplify=False).pattern(), n)
    if how and n == 200:
        assert any(how in reason for reason in result.slow_path), result.slow_path


def test_fast_paths_are_fast():
    """The examples and one-progression formulas never take a slow path."""
    for source in ["window(3) | stride(8) | global(0..2)", "dilated(4, 3) & stride(3) | logsparse",
                   "summary(16, 2) & causal | chunk(16) & causal", "stride(5) - window(2) | random(4)"]:
        assert analyze_rows(patterndsl.compile(source, 500).pattern(), 500).slow_path == []


# ---- the examples ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.spat")), ids=lambda p: p.stem)
@pytest.mark.parametrize("n", [1, 5, 257, 1000, 2000])
def test_examples(path, n):
    result = check_source(path.read_text(), n)
    assert result["slow_path"] == []


def test_statistics():
    stats = connection_counts(patterndsl.compile("rows(0..3, 10, 20..40) | cols(0)", 50))["rows"][0][0]
    assert stats["min"] == 1 and stats["max"] == 50
    assert stats["empty_rows"] == 0
    stats = connection_counts(patterndsl.compile("rows(2..5, 7, 9..30)", 40))["rows"][0][0]
    assert stats["empty_rows"] == 40 - 3 - 1 - 21
    assert stats["empty_first"] == [0, 1, 5, 6, 8, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39]
    assert stats["empty_ranges"] == [[0, 2], [5, 7], [8, 9], [30, 40]]
    assert not stats["empty_truncated"]
    many = degree_stats(np.tile([0, 1], 100))
    assert many["empty_rows"] == 100 and len(many["empty_first"]) == 16 and many["empty_truncated"]
    assert len(many["empty_ranges"]) == 16
    assert many["mean"] == 0.5


def test_large_n_stays_small():
    """No n × n anything: n = 2^20 for a structured pattern is quick."""
    n = 1 << 20
    degrees = row_degrees(patterndsl.compile("window(64) | stride(128) | global(0..8)", n).pattern(), n)
    # row 1008: 129 window keys, n/128 stride keys (one, 1008, in the window), 8 global keys
    assert degrees[1008] == 129 + n // 128 - 1 + 8
    assert degrees[:8].tolist() == [n] * 8
