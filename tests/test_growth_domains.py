"""One evaluator, two domains: the growth analysis (no n) runs patterndsl/resolve.py's
evaluator with symbolic quantities, so a file's diagnostics are the ones compiling it
reports — through the Python API and `patterndsl check` without --n."""
from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings

import patterndsl
from patterndsl import strategies as S
from patterndsl.analysis.growth import bounds, growth, growth_formula
from patterndsl.cli import main
from patterndsl.errors import SpatError
from patterndsl.resolve import MAX_CALLS

N = 64

# Files whose errors do not depend on n: the same diagnostics with and without one.
SAME_WITH_AND_WITHOUT_N = {
    "unknown_name": "window(foo)\n",
    "unknown_function": "windw(3) | global(0)\n",
    "unknown_in_def": "def f(w) = window(w + nope)\nf(2)\n",
    "unknown_in_let": "let a = isqrt(m)\nwindow(a)\n",
    "mutual_recursion": "def a(x) = b(x)\ndef b(x) = a(x)\na(1)\n",
    "self_recursion": "def f(x) = f(x) | window(x)\nf(1)\n",
    "recursive_let": "let a = b + 1\nlet b = a\nwindow(a)\n",
    "integer_as_pattern": "let w = 4\nw\n",
    "pattern_as_integer": "window(causal)\n",
    "pattern_plus_integer": "window(3) + 1\n",
    "pattern_in_range": "global(0..causal)\n",
    "wrong_arity": "window(1, 2, 3)\n",
    "unknown_keyword": "random(4, sed=3)\n",
    "def_arity": "def f(a, b) = window(a + b)\nf(1)\n",
    "def_needs_arguments": "def f(a) = window(a)\nf\n",
    "primitive_needs_arguments": "window\n",
    "builtin_arity": "window(isqrt(1, 2))\n",
    "builtin_keyword": "window(min(a=1))\n",
    "division_by_zero": "window(n // 0)\n",
    "cdiv_by_zero": "window(cdiv(n, 0))\n",
    "negative_constant": "window(-1)\n",
    "summary_constants": "summary(3, 5) | global(0..2, 5)\n",
    "empty_window": "window(-5, 2)\n",
    "negative_index": "cols(-1)\n",
    "reversed_range": "global(8..2)\n",
    "isqrt_negative": "window(isqrt(0 - 4))\n",
    "too_large": "window(9999999999999999999999)\n",
    "heads_depend_on_n": "heads {\n  0..n: window(1)\n}\n",
    "heads_gap": "heads {\n  0..2: window(1)\n  3..4: causal\n}\n",
    "block_size": "block 100\nwindow(1)\n",
    "duplicate": "let a = 1\nlet a = 2\nwindow(a)\n",
    "reserved": "let n = 3\nwindow(1)\n",
    "two_errors": "window(foo) | stride(bar)\n",
    "too_many_calls": "def f0(k) = window(k)\n" + "".join(
        f"def f{i}(k) = f{i - 1}(k) | f{i - 1}(k + 1)\n" for i in range(1, 20)) + "f19(1)\n",
}


def _error(call) -> str:
    with pytest.raises(SpatError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("name", sorted(SAME_WITH_AND_WITHOUT_N))
def test_python_api_same_diagnostics(name):
    source = SAME_WITH_AND_WITHOUT_N[name]
    with_n = _error(lambda: patterndsl.compile(source, N))
    without_n = _error(lambda: growth_formula(source))
    # A value check with constant arguments names the n it ran at; without one it names none.
    assert without_n == with_n.replace(f" (n = {N})", "")
    assert _error(lambda: bounds(source)) == without_n


@pytest.mark.parametrize("name", sorted(SAME_WITH_AND_WITHOUT_N))
def test_cli_same_diagnostics(name, tmp_path, capsys):
    path = tmp_path / f"{name}.spat"
    path.write_text(SAME_WITH_AND_WITHOUT_N[name])
    code_with_n = main(["check", str(path), "--n", str(N)])
    with_n = capsys.readouterr()
    code_without_n = main(["check", str(path)])
    without_n = capsys.readouterr()
    assert code_with_n == code_without_n == 1
    assert without_n.out == with_n.out == ""
    assert without_n.err == with_n.err.replace(f" (n = {N})", "")
    assert "internal error" not in without_n.err


def test_value_errors_that_need_an_n():
    """window(n - 100) is wrong below n = 100 only: without an n there is nothing to check."""
    with pytest.raises(SpatError, match=r"w = -36 here \(n = 64\)"):
        patterndsl.compile("window(n - 100)", N)
    assert growth_formula("window(n - 100)")["bound"] == "Θ(n^2)"


def test_equal_arguments_share_one_evaluation():
    """Each level calls the next twice with equal arguments (k + 1 computed twice): the
    evaluator's cache is keyed by value in both domains, so 40 levels are 40 calls,
    not 2^40 (which would stop at MAX_CALLS with a diagnostic)."""
    source = "def g0(k) = k\n" + "".join(
        f"def g{i}(k) = g{i - 1}(k + 1) + g{i - 1}(k + 1)\n" for i in range(1, 41)) + "window(g40(isqrt(n)))\n"
    assert MAX_CALLS < 2 ** 40
    assert growth_formula(source)["bound"] == "Θ(n^1.5)"
    assert patterndsl.compile(source, N).pattern(0, 0) == patterndsl.compile(f"window({2 ** 40 * 48})", N).pattern(0, 0)


def test_a_parameter_that_changes_no_count_is_not_shown():
    """random's seed is a non-structural parameter (ParamSpec.structural): not in the text."""
    out = growth_formula("random(isqrt(n), seed=7)")
    assert out["dominant"]["dominant"] == "random(isqrt(n))"


def test_lower_triangle_flag_not_the_name():
    """|A ∩ T| ≥ c·|A| for any T holding the lower triangle (causal, all, their unions)."""
    for source in ("window(8) & causal", "window(8) & (causal | cols(0))", "stride(isqrt(n)) & (all | self)"):
        assert growth_formula(source)["tight"], source
    # cols is neither symmetric nor causal-dense: the last 4 columns meet the lower triangle in
    # 10 pairs only (cols(0..8) & causal is Θ(n), but from the rows i ≥ 7 that hold all 8 columns)
    assert not growth_formula("cols(n - 4..n) & causal")["tight"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.files(), S.sizes(max_n=64))
def test_both_domains_accept_the_same_files(source, n):
    """A valid file is valid in both domains, with the same layers × heads."""
    compiled = patterndsl.compile(source, n)
    out = growth_formula(source)
    assert len(out["per_layer"]) == compiled.layers
    assert all(len(layer) == compiled.heads for layer in out["per_layer"])
    assert growth(compiled)["growth"] == out["growth"]


@pytest.mark.parametrize("name", ["unknown_name", "mutual_recursion", "integer_as_pattern"])
def test_cli_json_without_n_reports_the_error(name, tmp_path, capsys):
    path = tmp_path / "bad.spat"
    path.write_text(SAME_WITH_AND_WITHOUT_N[name])
    assert main(["check", str(path), "--json"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"bad\.spat:\d+:\d+: error: ", err), err


def test_rewritten_patterns_nest_no_deeper_than_the_ir():
    """The symbolic domain bounds A & ~C1 & … & ~Ck as A − (C1 | … | Ck): within the
    evaluator's depth limit wherever the IR is."""
    source = "window(1) & " + " & ".join(f"~cols({k})" for k in range(150))
    assert patterndsl.compile(source, N).layers == 1
    assert growth_formula(source)["bound"] == "Θ(n)"
