"""Every primitive against the README's language reference (its primitive table).

Two kinds of check, both drawn from the registry (each primitive carries its own):
  * hand-drawn matrices (`Primitive.examples`): the expected 0/1 mask written out
    literally, drawn by hand from the definitions (row i = query i, column j = key j);
  * a property test: for random n (from 1 up) and random calls (`call_sources`:
    parameters 0 where legal, negative where legal, far beyond n, expressions in
    n), the compiled mask equals a plain-Python double loop over (i, j) of the
    primitive's `reference_pair`, with and without the simplification passes.
tests/test_registry.py checks that every registered primitive has every part.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import randomgen
from patterndsl import strategies as S
from patterndsl.errors import SpatError
from patterndsl.primitives import PRIMITIVES


def examples(count: int) -> int:
    """``count`` hypothesis examples, scaled by $PATTERNDSL_TEST_SCALE (e.g. 20 for a long run)."""
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))


def drawn(*rows: str) -> np.ndarray:
    """A hand-drawn mask: one string of 0s and 1s per query row (spaces ignored)."""
    return np.array([[c == "1" for c in row.replace(" ", "")] for row in rows], dtype=bool)


def masks(source: str, n: int):
    """The mask of ``source`` at ``n``, simplified and not (both must agree with the spec)."""
    return (patterndsl.compile(source, n).dense(), patterndsl.compile(source, n, simplify=False).dense())


# ---- hand-drawn matrices --------------------------------------------------------------

# Each primitive's own drawings (`Primitive.examples`), and some of operators.
DRAWN = {key: drawn(*rows) for cls in PRIMITIVES.values() for key, rows in cls.examples.items()}
DRAWN |= {
    ("window(2) | global(0)", 5): drawn(
        "11111",
        "11110",
        "11111",
        "11111",
        "10111"),
    ("causal & stride(2)", 5): drawn(
        "10000",
        "01000",
        "10100",
        "01010",
        "10101"),
    ("chunk(2) - self", 4): drawn(
        "0100",
        "1000",
        "0001",
        "0010"),
    ("~causal", 3): drawn("011", "001", "000"),
}


@pytest.mark.parametrize(("source", "n"), list(DRAWN), ids=[f"{s}@n={n}" for s, n in DRAWN])
def test_hand_drawn(source, n):
    expected = DRAWN[(source, n)]
    assert expected.shape == (n, n), "the drawing itself has the wrong size"
    for got in masks(source, n):
        np.testing.assert_array_equal(got.astype(int), expected.astype(int))


def test_every_primitive_has_drawings_of_itself():
    for cls in PRIMITIVES.values():
        assert cls.examples, f"{cls.name} has no hand-drawn examples"
        for source, n in cls.examples:
            assert patterndsl.compile(source, n, simplify=False).pattern().name == cls.name, source


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_n(n):
    one = np.ones((n, n), dtype=bool)
    eye = np.eye(n, dtype=bool)
    for source, expected in [("all", one), ("none", ~one), ("self", eye), ("stride(5)", eye), ("chunk(5)", one),
                             ("window(-1, 2)", np.eye(n, k=1, dtype=bool)), ("window(1, -1)", np.eye(n, k=-1, dtype=bool)),
                             ("logsparse", one), ("global(n)", ~one), ("summary(1, 1)", one),
                             ("dilated(3, 1)", one), ("random(5)", one), ("random(0)", ~one)]:
        for got in masks(source, n):
            np.testing.assert_array_equal(got, expected, err_msg=source)


def test_mask_is_a_bool_tensor():
    import torch

    mask = patterndsl.compile("window(1)", 4).mask()
    assert mask.dtype == torch.bool and tuple(mask.shape) == (4, 4)
    assert mask.numpy().astype(int).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]


# ---- random -----------------------------------------------------------------------------


@pytest.mark.parametrize(("r", "n"), [(0, 5), (1, 1), (3, 10), (10, 10), (11, 10), (1000, 7), (70, 90), (65, 65)])
def test_random_row_counts(r, n):
    for seed in (0, 1, 12345):
        for got in masks(f"random({r}, seed={seed})", n):
            assert got.sum(axis=1).tolist() == [min(r, n)] * n
            for i in range(n):
                assert set(np.flatnonzero(got[i]).tolist()) == set(randomgen.reference_keys(seed, i, n, r))


def test_random_default_seed_is_zero():
    for n in (1, 9, 40):
        np.testing.assert_array_equal(patterndsl.compile("random(4)", n).dense(),
                                      patterndsl.compile("random(4, seed=0)", n).dense())
        np.testing.assert_array_equal(patterndsl.compile("random(4)", n).dense(),
                                      patterndsl.compile("random(4, 0)", n).dense())


@settings(max_examples=examples(60), deadline=None)
@given(n=S.sizes(max_n=64), r=st.integers(0, 80), seed=st.integers(0, 2**62))
def test_random_property(n, r, seed):
    for got in masks(f"random({r}, seed={seed})", n):
        assert (got.sum(axis=1) == min(r, n)).all()
        for i in (0, n // 2, n - 1):
            assert set(np.flatnonzero(got[i]).tolist()) == set(randomgen.reference_keys(seed, i, n, r))


# ---- the property tests against the README's language reference ---------------------------------
#
# Each draw gives the source text and a plain-Python predicate written from the
# README's primitive table (`Primitive.reference_pair`). The arguments the
# compiler evaluates are checked against a hand evaluation separately: integer
# expressions in n, and index lists.


def _indices(n: int, items) -> set[int]:
    """The index set R of the README: indices, and half-open ranges lo..hi."""
    out = set()
    for item in items:
        if isinstance(item, tuple):
            out.update(range(item[0], item[1]))
        else:
            out.add(item)
    return {x for x in out if 0 <= x < n}


@st.composite
def index_list(draw, n: int):
    """(source text, items) for an index list R at this n."""
    texts, items = [], []
    for _ in range(draw(st.integers(1, 4))):
        form = draw(st.integers(0, 5))
        if form == 0:
            value = draw(st.integers(0, n + 10))
            texts.append(str(value))
            items.append(value)
        elif form == 1:
            lo = draw(st.integers(0, n + 5))
            hi = draw(st.integers(lo + 1, lo + n + 10))
            texts.append(f"{lo}..{hi}")
            items.append((lo, hi))
        elif form == 2:  # the last k tokens: n-k..n (k ≤ n keeps lo ≥ 0)
            k = draw(st.integers(1, n))
            texts.append(f"n-{k}..n")
            items.append((n - k, n))
        elif form == 3:  # n-dependent index, possibly ≥ n (clipped)
            k = draw(st.integers(-min(n, 3), 3))
            texts.append(f"n + {k}" if k >= 0 else f"n - {-k}")
            items.append(n + k)
        elif form == 4:
            k = draw(st.integers(0, 5))
            texts.append(f"n // 2..n + {k}")
            items.append((n // 2, n + k))
        else:
            texts.append("0..1000000")
            items.append((0, 1000000))
    return ", ".join(texts), items


def _power_of_two(x: int) -> bool:
    while x > 1 and x % 2 == 0:
        x //= 2
    return x == 1


@st.composite
def primitive_with_spec(draw, n: int):
    """(source text, predicate(i, j)) for one registered primitive: a call from its own
    strategy (parameters run past n), and its plain-Python meaning (`reference_pair`)
    with the parameters the call gives at this n."""
    name = draw(st.sampled_from(S.PRIMITIVE_NAMES))
    source = draw(S.primitive_sources((name,)))
    node = patterndsl.compile(source, n, simplify=False).pattern()
    assert node.name == name, f"{source} is not a call of {name}"
    return source, lambda i, j: node.reference_pair(i, j, n)


_INTEGER_FUNCTIONS = {"isqrt": math.isqrt, "ilog2": lambda x: x.bit_length() - 1, "cdiv": lambda a, b: -(-a // b),
                      "min": min, "max": max}


@settings(max_examples=examples(100), deadline=None)
@given(text=st.one_of(S.nonnegative_ints(), S.positive_ints()), n=S.sizes(max_n=64))
def test_integer_arguments_are_evaluated_as_written(text, n):
    """The strategies' integer expressions, evaluated by Python (whose // and % are the
    language's), are the parameters the compiler gives the primitive."""
    expected = eval(text, {"__builtins__": {}}, {**_INTEGER_FUNCTIONS, "n": n})
    assert patterndsl.compile(f"window({text}, 0)", n, simplify=False).pattern().left == expected


@settings(max_examples=examples(100), deadline=None)
@given(data=st.data(), n=S.sizes(max_n=64))
def test_index_lists_are_evaluated_as_written(data, n):
    text, items = data.draw(index_list(n), label="R")
    for got in masks(f"rows({text})", n):
        assert set(np.flatnonzero(got.any(axis=1)).tolist()) == _indices(n, items), text


def expected_mask(n: int, predicate) -> np.ndarray:
    out = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            out[i, j] = predicate(i, j)
    return out


@settings(max_examples=examples(250), deadline=None)
@given(data=st.data(), n=S.sizes(max_n=64))
def test_against_the_reference_definition(data, n):
    source, predicate = data.draw(primitive_with_spec(n), label="primitive")
    expected = expected_mask(n, predicate)
    for got in masks(source, n):
        np.testing.assert_array_equal(got, expected, err_msg=f"{source} at n = {n}")


@settings(max_examples=examples(150), deadline=None)
@given(source=S.primitive_sources(), n=S.sizes(max_n=64))
def test_primitive_sources_are_valid_for_every_n(source, n):
    """The strategy's claim: each source compiles for every n ≥ 1."""
    for got in masks(source, n):
        assert got.shape == (n, n)


# ---- parameters that are wrong for this n -----------------------------------------------


@pytest.mark.parametrize("source", ["window(-1)", "window(-3, 2)", "dilated(1, 0)", "dilated(-1, 2)", "stride(0)",
                                    "chunk(0)", "summary(0, 0)", "summary(3, 0)", "summary(3, 4)", "random(-1)",
                                    "random(2, seed=-1)", "global(-1)", "rows(3..3)", "cols(4..2)",
                                    "global(n-9..n)"])
def test_illegal_parameters_are_errors(source):
    with pytest.raises(SpatError):
        patterndsl.compile(source, 8)


# ---- the vectorized predicates on their own ------------------------------------------------------
#
# `predicate(i, j, n)` takes any column of query indices and any row of key
# indices (the reference evaluator passes every key, other callers need not).


@settings(max_examples=examples(100), deadline=None)
@given(source=S.primitive_sources(), n=S.sizes(max_n=64), data=st.data())
def test_predicate_on_any_rows_and_keys(source, n, data):
    from patterndsl.primitives import Primitive
    from patterndsl.reference import index_dtype

    pattern = patterndsl.compile(source, n, simplify=False).pattern()
    assert isinstance(pattern, Primitive)
    full = patterndsl.compile(source, n, simplify=False).dense()
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6), label="rows")
    keys = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6), label="keys")
    i = np.array(rows, dtype=index_dtype(n)).reshape(-1, 1)
    j = np.array(keys, dtype=index_dtype(n)).reshape(1, -1)
    got = np.broadcast_to(pattern.predicate(i, j, n), (len(rows), len(keys)))
    np.testing.assert_array_equal(got, full[np.ix_(rows, keys)])


HUGE_N = [2**30 - 1, 2**30, 2**30 + 7, 2**31 - 1, 2**31 + 5, 2**40]


@pytest.mark.parametrize("n", HUGE_N)
def test_predicates_at_huge_n(n):
    """No overflow in the index arithmetic, whatever n: the predicates see i and j
    in reference.index_dtype(n), as the reference evaluator passes them."""
    from patterndsl.primitives import Causal, Chunk, Dilated, LogSparse, Self, Stride, Summary, Window
    from patterndsl.reference import index_dtype

    rows = [0, 1, 5, n // 2, n - 3, n - 2, n - 1]
    keys = [0, 1, 2, 4, 5, 9, n // 2, n // 2 + 1, n - 5, n - 3, n - 1]
    cases = [
        (Window(n, n), lambda i, j: True),
        (Window(2**62, 0), lambda i, j: j <= i),
        (Window(0, 2**62), lambda i, j: j >= i),
        (Window(-3, 5), lambda i, j: i + 3 <= j <= i + 5),
        (Window(n - 2, -(n - 3)), lambda i, j: i - n + 2 <= j <= i - n + 3),
        (Window(-(2**62), 2**62 + 1), lambda i, j: False),
        (Dilated(2**40, 1), lambda i, j: True),
        (Dilated(2, n // 2), lambda i, j: abs(i - j) <= 2 * (n // 2) and (i - j) % (n // 2) == 0),
        (Stride(n - 1), lambda i, j: (i - j) % (n - 1) == 0),
        (Chunk(n // 2), lambda i, j: i // (n // 2) == j // (n // 2)),
        (Summary(n - 1, 3), lambda i, j: j % (n - 1) >= n - 4),
        (LogSparse(), lambda i, j: i == j or _power_of_two(abs(i - j))),
        (Self(), lambda i, j: i == j),
        (Causal(), lambda i, j: j <= i),
    ]
    i = np.array(rows, dtype=index_dtype(n)).reshape(-1, 1)
    j = np.array(keys, dtype=index_dtype(n)).reshape(1, -1)
    for pattern, spec in cases:
        got = np.broadcast_to(pattern.predicate(i, j, n), (len(rows), len(keys)))
        expected = np.array([[spec(a, b) for b in keys] for a in rows], dtype=bool)
        np.testing.assert_array_equal(got, expected, err_msg=f"{pattern} at n = {n}")
