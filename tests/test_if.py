"""`if(c, a, b)` and the conditions `== != < <= > >= and or not`: values against
Python's own evaluation, the growth analysis's bound against the exact count at every
n drawn, the formatter's round trip, and the diagnostics."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import SpatError
from patterndsl import strategies as S
from patterndsl.analysis.growth import bounds, growth_formula
from patterndsl.formatter import format as fmt
from patterndsl.syntax import parse

_FUNCTIONS = {"isqrt": __import__("math").isqrt, "ilog2": lambda x: x.bit_length() - 1,
              "cdiv": lambda a, b: -(-a // b), "min": min, "max": max}


@st.composite
def conditions(draw, depth: int = 2) -> str:
    """A condition over the strategies' integer expressions (Python reads it alike: no
    chained comparisons are drawn)."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        op = draw(st.sampled_from(("==", "!=", "<", "<=", ">", ">=")))
        return f"{draw(S.nonnegative_ints())} {op} {draw(S.nonnegative_ints())}"
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return f"not ({draw(conditions(depth - 1))})"
    op = "and" if kind == 1 else "or"
    return f"({draw(conditions(depth - 1))}) {op} ({draw(conditions(depth - 1))})"


@st.composite
def conditional_ints(draw) -> str:
    """if(c, a, b) with a, b ≥ 0 for every n."""
    return f"if({draw(conditions())}, {draw(S.nonnegative_ints())}, {draw(S.nonnegative_ints())})"


def python_value(text: str, n: int) -> int:
    return eval(text.replace("if(", "_if("), {"__builtins__": {}},
                {**_FUNCTIONS, "n": n, "_if": lambda c, a, b: a if c else b})


@settings(max_examples=150, deadline=None)
@given(text=conditional_ints(), n=S.sizes(max_n=200))
def test_if_is_evaluated_as_python_would(text, n):
    # (Python's _if evaluates both branches: fine, both are ≥ 0 expressions without errors)
    expected = python_value(text, n)
    assert patterndsl.compile(f"window({text}, 0)", n, simplify=False).pattern().left == expected


@settings(max_examples=60, deadline=None)
@given(text=conditional_ints(), other=S.primitive_sources(), ns=st.lists(S.sizes(max_n=120), min_size=1, max_size=3))
def test_growth_bound_holds_with_conditional_parameters(text, other, ns):
    """The symbolic analysis evaluates if(…) exactly at each n (its bound is never below
    the exact count) and, for large n, by the branch taken or by both branches."""
    source = f"window({text}) | chunk(1 + {text}) & {other}"
    bound = bounds(source)[0][0]
    for n in ns:
        compiled = patterndsl.compile(source, n)
        assert bound.evaluate(n) >= int(compiled.mask().sum()), (source, n)


@pytest.mark.parametrize(("source", "values"), [
    # n = 8, 64, 1000
    ("window(if(n >= 64, 4, 1), 0)", (1, 4, 4)),
    ("window(if(n > 8 and n < 1000, 2, 7), 0)", (7, 2, 7)),
    ("window(if(not n == 64 or n % 2 == 1, 3, 5), 0)", (3, 5, 3)),
    ("window(if(n != 8, if(n <= 64, 10, 20), 30), 0)", (30, 10, 20)),
])
def test_hand_written(source, values):
    got = tuple(patterndsl.compile(source, n, simplify=False).pattern().left for n in (8, 64, 1000))
    assert got == values


def test_a_condition_may_be_named_and_passed():
    text = "let big = n >= 64\ndef w(k, wide) = if(wide, k * 2, k)\nwindow(w(3, big), 0)\n"
    assert [patterndsl.compile(text, n, simplify=False).pattern().left for n in (8, 64)] == [3, 6]


def test_only_the_branch_taken_is_checked():
    # 64 // (n - 64) divides by zero at n = 64, in the branch not taken
    text = "window(if(n == 64, 1, 64 // (n - 64)))"
    assert patterndsl.compile(text, 64).mask().sum() > 0
    with pytest.raises(SpatError, match="division by zero"):
        patterndsl.compile(text.replace("n == 64", "n != 64"), 64)


def test_growth_follows_the_branch_taken_for_large_n():
    assert growth_formula("window(if(n >= 4096, 8, n))")["bound"] == "Θ(n)"
    assert growth_formula("window(if(n < 4096, 8, n))")["bound"] == "Θ(n^2)"
    # undecided for large n (n % 2): bounded by both branches
    assert growth_formula("window(if(n % 2 == 0, 8, n))")["bound"] == "O(n^2)"


@pytest.mark.parametrize("text", [
    "window(if(n > 3 and not n == 5 or n < 2, 3, n // 2))",
    "let big = n >= 64\nwindow(if((n > 3 or n < 1) and not not big, 1, 2))",
    "def f(a, b=n >= 3) = window(if(b, a, 0))\nf(2)",
    "window(if(n + 1 == 2 * n, 1, 0))",
])
def test_format_round_trip(text):
    once = fmt(text)
    assert parse(once) == parse(text)
    assert fmt(once) == once


@pytest.mark.parametrize(("text", "message"), [
    ("window(if(n, 1, 2))", "expected a condition, found the integer 64"),
    ("window(n > 2)", "window: 'w' must be an integer, found a condition"),
    ("window(if(n > 2, 1))", "if takes a condition and two integers, got 2 arguments"),
    ("window(if(n > 2, causal, 1))", "if chooses between integers, found the pattern `causal`"),
    ("window(if(causal == 2, 1, 2))", "'==' compares integers, found the pattern `causal`"),
    ("window(if(n > 2 and 3, 1, 2))", "expected a condition, found the integer 3"),
    ("(n > 3)", "expected a pattern, found a condition"),
    ("n > 3", "unexpected '>'"),
    ("window(1 << 3)", "unexpected characters '<<'"),
])
def test_diagnostics(text, message):
    with pytest.raises(SpatError) as info:
        patterndsl.compile(text, 64)
    assert message in str(info.value)
    assert "^" in str(info.value)


def test_conditions_differ():
    # not vacuous: the two branches give different masks
    a = patterndsl.compile("window(if(n > 4, 1, 0))", 8).mask().numpy()
    b = patterndsl.compile("window(if(n < 4, 1, 0))", 8).mask().numpy()
    assert not np.array_equal(a, b)
