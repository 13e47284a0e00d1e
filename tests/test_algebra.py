"""Property tests of the language's algebra, over random nested patterns and n.

  (a) `format` round-trips (parse ∘ format is the identity on ASTs) and is idempotent;
  (b) `simplify`, and each pass in passes.PASSES on its own, keep the reference mask;
  (c) printed IR (`str(node)`) parses and compiles back to the same mask;
  (d) the laws of set algebra hold on the dense masks;
  (e) operator precedence is Python's: ~ tightest, then -, then &, then |.

The random patterns come from patterndsl.strategies; every mask is compared
with the dense reference evaluator (patterndsl/reference.py), the specification.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import ast as A
from patterndsl import passes
from patterndsl import strategies as S
from patterndsl.ir import Complement, Difference, Intersection, Pattern, Union
from patterndsl.reference import dense_mask

MAX_N = 64


def examples(count: int) -> int:
    """``count`` hypothesis examples, scaled by $PATTERNDSL_TEST_SCALE (e.g. 20 for a long run)."""
    return max(1, int(count * float(os.environ.get("PATTERNDSL_TEST_SCALE", "1"))))
sizes = S.sizes(max_n=MAX_N)


def dense(source: str, n: int, simplify: bool = True) -> np.ndarray:
    return patterndsl.compile(source, n, simplify=simplify).dense()


def all_masks(compiled) -> list[np.ndarray]:
    return [dense_mask(p, compiled.n) for layer in compiled.patterns for p in layer]


def nodes(pattern: Pattern):
    """Every node of an IR tree (pre-order)."""
    stack = [pattern]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children())


def as_module(expr: A.Node) -> A.Module:
    return A.Module((A.PatternStmt(expr),))


# ---- (a) format ------------------------------------------------------------------------------


@settings(max_examples=examples(120), deadline=None)
@given(S.pattern_asts(max_depth=4))
def test_format_round_trips_asts(expr):
    text = patterndsl.format(as_module(expr))
    assert patterndsl.parse(text).statements == (A.PatternStmt(expr),), text
    assert patterndsl.format(text) == text


@settings(max_examples=examples(120), deadline=None)
@given(S.pattern_sources(max_depth=4))
def test_format_round_trips_sources(source):
    text = patterndsl.format(source)
    assert patterndsl.parse(text) == patterndsl.parse(source), text
    assert patterndsl.format(text) == text
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert len(code) == 1, "a single expression is printed on one line, after its comments"


@settings(max_examples=examples(80), deadline=None)
@given(S.files(), sizes)
def test_format_round_trips_files(source, n):
    text = patterndsl.format(source)
    before, after = patterndsl.parse(source), patterndsl.parse(text)
    assert after == before, text
    assert patterndsl.format(text) == text, text
    # No comment is lost, their order is kept, and each stays between the same statements.
    assert [c.text.rstrip() for c in after.comments] == [c.text.rstrip() for c in before.comments], text
    assert comment_places(after) == comment_places(before), text
    # ... and the file still means the same.
    original, formatted = patterndsl.compile(source, n), patterndsl.compile(text, n)
    assert (formatted.layers, formatted.heads, formatted.block_size, formatted.prob) == \
           (original.layers, original.heads, original.block_size, original.prob)
    np.testing.assert_array_equal(formatted.dense_all(), original.dense_all())


def comment_places(module: A.Module) -> list[int]:
    """For each comment, how many statements (and entries of layers/heads blocks)
    end on a line before it: the formatter may move a comment from inside a
    multi-line statement to just before it, but never past a statement."""
    ends = []
    stack = list(module.statements)
    while stack:
        node = stack.pop()
        ends.append(node.span.end_line)
        if isinstance(node, (A.Layers, A.Heads)):
            stack.extend(node.entries)
    return [sum(end < comment.line for end in ends) for comment in module.comments]


def test_comments_inside_a_statement_stay_with_it():
    source = ("let w = 3 +  # base\n"
              "    4\n"
              "let s = 2\n"
              "heads {\n"
              "    0: window(w) |  # inner\n"
              "       (causal  # left\n"
              "        - self)  # end\n"
              "    1: stride(s)\n"
              "}\n")
    assert patterndsl.format(source) == ("# base\n"
                                         "let w = 3 + 4\n"
                                         "let s = 2\n"
                                         "heads {\n"
                                         "    # inner\n"
                                         "    # left\n"
                                         "    0: window(w) | causal - self  # end\n"
                                         "    1: stride(s)\n"
                                         "}\n")


def test_blank_lines_between_statements_only():
    # A blank line inside a multi-line statement is not one between statements.
    assert patterndsl.format("let a = 1\nwindow(a) |\n\n    causal\n") == "let a = 1\nwindow(a) | causal\n"
    assert patterndsl.format("let a = 1\n\n\nwindow(a) |\n    causal\n") == "let a = 1\n\nwindow(a) | causal\n"
    assert patterndsl.format("layers {\n    window(1) |  # x\n\n        causal\n}\n") == \
        "layers {\n    # x\n    window(1) | causal\n}\n"


@pytest.mark.parametrize("source", [
    "a | b & c", "(a | b) & c", "a & (b | c)", "a - b - c", "a - (b - c)", "a - (b & c)", "~(a | b)", "~~a",
    "~a - b", "~(a - b)", "(a | b) | c", "a | (b | c)", "a & b & c", "(a & b) & c",
])
def test_format_keeps_parentheses_that_matter(source):
    assert patterndsl.format(source) == source + "\n"


def test_format_drops_parentheses_that_do_not_matter():
    assert patterndsl.format("(a) | ((b & c))") == "a | b & c\n"
    assert patterndsl.format("((a - b)) - c") == "a - b - c\n"
    assert patterndsl.format("(~a) & b") == "~a & b\n"
    assert patterndsl.format("(a - b) & c") == "a - b & c\n"


# ---- (b) simplify and each pass ----------------------------------------------------------------


@settings(max_examples=examples(150), deadline=None)
@given(S.pattern_sources(max_depth=4), sizes)
def test_simplify_keeps_the_mask(source, n):
    compiled = patterndsl.compile(source, n)
    raw, simplified = compiled.raw_patterns[0][0], compiled.patterns[0][0]
    assert simplified == passes.simplify(raw, n)
    np.testing.assert_array_equal(dense_mask(simplified, n), dense_mask(raw, n), err_msg=f"{raw} → {simplified}")
    np.testing.assert_array_equal(dense(source, n), dense(source, n, simplify=False))
    assert simplified.size() <= raw.size()
    assert passes.simplify(simplified, n) == simplified, "simplify stops only when nothing changes"


@settings(max_examples=examples(40), deadline=None)
@given(S.files(), sizes)
def test_simplify_keeps_the_mask_of_files(source, n):
    compiled = patterndsl.compile(source, n)
    raw = patterndsl.compile(source, n, simplify=False)
    assert raw.patterns == compiled.raw_patterns
    np.testing.assert_array_equal(compiled.dense_all(), raw.dense_all())


@pytest.mark.parametrize("rewrite", passes.PASSES, ids=[p.__name__ for p in passes.PASSES])
@settings(max_examples=examples(60), deadline=None)
@given(source=S.pattern_sources(max_depth=3), n=sizes)
def test_each_pass_keeps_the_mask(rewrite, source, n):
    raw = patterndsl.compile(source, n, simplify=False).patterns[0][0]
    for node in nodes(raw):
        rewritten = rewrite(node, n)
        np.testing.assert_array_equal(dense_mask(rewritten, n), dense_mask(node, n),
                                      err_msg=f"{rewrite.__name__}: {node} → {rewritten} (n = {n})")


@pytest.mark.parametrize(("source", "n", "simplified"), [
    ("window(3) | none", 8, "window(3)"),
    ("window(3) & all", 8, "window(3)"),
    ("~~causal", 8, "causal"),
    ("causal - causal", 8, "none"),
    ("(self | causal) | self", 8, "self | causal"),
    ("window(7)", 8, "all"),
    ("window(7, 0)", 8, "causal"),
    ("window(0, 0)", 8, "self"),
    ("window(-8, 9)", 8, "none"),
    ("dilated(2, 1)", 8, "window(2)"),
    ("stride(8)", 8, "self"),
    ("chunk(8)", 8, "all"),
    ("summary(4, 4)", 8, "all"),
    ("random(8, seed=3)", 8, "all"),
    ("random(0)", 8, "none"),
    ("global(8..9)", 8, "none"),
    ("rows(0..n)", 8, "all"),
    ("~(none | all) - causal", 8, "none"),
])
def test_simplify_examples(source, n, simplified):
    compiled = patterndsl.compile(source, n)
    assert str(compiled.pattern()) == simplified
    np.testing.assert_array_equal(compiled.dense(), dense(source, n, simplify=False))


# ---- (c) printed IR ---------------------------------------------------------------------------------


@settings(max_examples=examples(120), deadline=None)
@given(S.pattern_sources(max_depth=4), sizes)
def test_printed_ir_compiles_back(source, n):
    compiled = patterndsl.compile(source, n)
    for ir in {compiled.raw_patterns[0][0], compiled.patterns[0][0]}:
        text = str(ir)
        np.testing.assert_array_equal(dense(text, n, simplify=False), dense_mask(ir, n), err_msg=text)
        # Printed once more, it is the same text (the printing is a fixed point).
        assert str(patterndsl.compile(text, n, simplify=False).patterns[0][0]) == text


def test_printed_ir_of_indices_beyond_n():
    # Every index ≥ n: the index set is empty at this n; it must still print as
    # something that compiles back to the empty pattern.
    for source in ("global(10)", "rows(n..n+3)", "cols(7, 9..12)"):
        ir = patterndsl.compile(source, 5, simplify=False).patterns[0][0]
        assert not dense(str(ir), 5).any(), str(ir)


# ---- (d) laws of set algebra -------------------------------------------------------------------------

three = st.tuples(S.pattern_sources(max_depth=2), S.pattern_sources(max_depth=2), S.pattern_sources(max_depth=2))

LAWS = [
    ("de Morgan |", "~(({a}) | ({b}))", "~({a}) & ~({b})"),
    ("de Morgan &", "~(({a}) & ({b}))", "~({a}) | ~({b})"),
    ("distributivity &|", "({a}) & (({b}) | ({c}))", "(({a}) & ({b})) | (({a}) & ({c}))"),
    ("distributivity |&", "({a}) | (({b}) & ({c}))", "(({a}) | ({b})) & (({a}) | ({c}))"),
    ("absorption |", "({a}) | (({a}) & ({b}))", "{a}"),
    ("absorption &", "({a}) & (({a}) | ({b}))", "{a}"),
    ("double complement", "~~({a})", "{a}"),
    ("difference", "({a}) - ({b})", "({a}) & ~({b})"),
    ("commutativity |", "({a}) | ({b})", "({b}) | ({a})"),
    ("commutativity &", "({a}) & ({b})", "({b}) & ({a})"),
    ("excluded middle", "({a}) | ~({a})", "all"),
    ("non-contradiction", "({a}) & ~({a})", "none"),
    ("difference of a difference", "({a}) - (({b}) - ({c}))", "(({a}) - ({b})) | (({a}) & ({c}))"),
]


@pytest.mark.parametrize(("name", "left", "right"), LAWS, ids=[law[0] for law in LAWS])
@settings(max_examples=examples(25), deadline=None)
@given(abc=three, n=sizes)
def test_law(name, left, right, abc, n):
    a, b, c = abc
    left, right = left.format(a=a, b=b, c=c), right.format(a=a, b=b, c=c)
    expected = dense(right, n, simplify=False)
    np.testing.assert_array_equal(dense(left, n, simplify=False), expected, err_msg=name)
    np.testing.assert_array_equal(dense(left, n), expected, err_msg=name + " (simplified)")


def test_laws_are_not_vacuous():
    # The masks compared above can differ: the same comparisons on wrong laws fail.
    a, b, c, n = "window(1)", "stride(2)", "causal", 6
    assert not np.array_equal(dense(f"~({a} | {b})", n), dense(f"~{a} | ~{b}", n))
    assert not np.array_equal(dense(f"{a} & ({b} | {c})", n), dense(f"({a} & {b}) | {c}", n))
    assert not np.array_equal(dense(f"{a} - {b}", n), dense(f"{b} - {a}", n))


# ---- (e) precedence -------------------------------------------------------------------------------------

PRECEDENCE = [
    ("a | b & c", "a | (b & c)", "(a | b) & c"),
    ("a & b | c", "(a & b) | c", "a & (b | c)"),
    ("a & b - c", "a & (b - c)", "(a & b) - c"),
    ("a - b & c", "(a - b) & c", "a - (b & c)"),
    ("a - b | c", "(a - b) | c", "a - (b | c)"),
    ("~a - b", "(~a) - b", "~(a - b)"),
    ("~a & b", "(~a) & b", "~(a & b)"),
    ("~a | b", "(~a) | b", "~(a | b)"),
    ("a - b - c", "(a - b) - c", "a - (b - c)"),
]


@pytest.mark.parametrize(("source", "meant", "not_meant"), PRECEDENCE)
def test_precedence_parse(source, meant, not_meant):
    assert patterndsl.parse(source) == patterndsl.parse(meant)
    assert patterndsl.parse(source) != patterndsl.parse(not_meant)


# Leaves for which the two readings give different masks (found by hand).
DISTINGUISHING = {
    "a | b & c": dict(a="all", b="self", c="none"),
    "a & b | c": dict(a="none", b="self", c="all"),
    "a - b & c": dict(a="all", b="all", c="none"),
    "a - b | c": dict(a="all", b="none", c="all"),
    "~a - b": dict(a="none", b="all"),
    "~a & b": dict(a="all", b="none"),
    "~a | b": dict(a="none", b="all"),
    "a - b - c": dict(a="all", b="all", c="all"),
}


@pytest.mark.parametrize(("source", "meant", "not_meant"), PRECEDENCE)
def test_precedence_masks(source, meant, not_meant):
    leaves = DISTINGUISHING.get(source, dict(a="window(1)", b="causal", c="stride(2)"))

    def text(template):
        return "".join(leaves.get(ch, ch) for ch in template)

    if source not in DISTINGUISHING:  # a & (b - c) and (a & b) - c are the same set
        assert np.array_equal(dense(text(meant), 5), dense(text(not_meant), 5))
        return  # test_precedence_parse tells the two readings apart

    assert np.array_equal(dense(text(source), 5), dense(text(meant), 5))
    assert not np.array_equal(dense(text(source), 5), dense(text(not_meant), 5))


@settings(max_examples=examples(40), deadline=None)
@given(abc=three, n=sizes)
def test_precedence_property(abc, n):
    a, b, c = (f"({x})" for x in abc)
    for source, meant, _ in PRECEDENCE:
        def text(template):
            return "".join({"a": a, "b": b, "c": c}.get(ch, ch) for ch in template)

        np.testing.assert_array_equal(dense(text(source), n, simplify=False), dense(text(meant), n, simplify=False),
                                      err_msg=source)


def _evaluate_tree(tree, n: int) -> np.ndarray:
    """The mask of a pattern_trees tree, combining the leaves' masks with numpy."""
    kind = tree[0]
    if kind == "leaf":
        return dense(tree[1], n, simplify=False)
    if kind == "|":
        return np.logical_or.reduce([_evaluate_tree(part, n) for part in tree[1]])
    if kind == "&":
        return np.logical_and.reduce([_evaluate_tree(part, n) for part in tree[1]])
    if kind == "-":
        return _evaluate_tree(tree[1], n) & ~_evaluate_tree(tree[2], n)
    return ~_evaluate_tree(tree[1], n)


def _ir_shape(pattern: Pattern):
    """The tree of operators of an IR node, leaves as their printed text."""
    if isinstance(pattern, Union):
        return ("|", [_ir_shape(p) for p in pattern.parts])
    if isinstance(pattern, Intersection):
        return ("&", [_ir_shape(p) for p in pattern.parts])
    if isinstance(pattern, Difference):
        return ("-", _ir_shape(pattern.left), _ir_shape(pattern.right))
    if isinstance(pattern, Complement):
        return ("~", _ir_shape(pattern.operand))
    return ("leaf", str(pattern))


def _tree_with_ir_leaves(tree, n: int):
    if tree[0] == "leaf":
        return ("leaf", str(patterndsl.compile(tree[1], n, simplify=False).patterns[0][0]))
    if tree[0] in ("|", "&"):
        return (tree[0], [_tree_with_ir_leaves(part, n) for part in tree[1]])
    return (tree[0],) + tuple(_tree_with_ir_leaves(child, n) for child in tree[1:])


@settings(max_examples=examples(100), deadline=None)
@given(S.pattern_trees(max_depth=4), sizes)
def test_text_means_its_tree(tree_and_text, n):
    """The parser builds exactly the tree the text was written from, with the
    precedence of the README's language reference, and its mask is the tree's, combined by numpy."""
    text, tree = tree_and_text
    raw = patterndsl.compile(text, n, simplify=False).patterns[0][0]
    assert _ir_shape(raw) == _tree_with_ir_leaves(tree, n)
    np.testing.assert_array_equal(dense(text, n), _evaluate_tree(tree, n))


def test_integer_precedence():
    for source, value in [("10 - 2 - 3", 5), ("2 + 3 * 2", 8), ("-2 + 5", 3), ("7 // 2 * 2", 6), ("17 % 5 * 2", 4),
                          ("n - 1 - 1", 6), ("(n - 1) // 2", 3), ("-(2 - 5)", 3), ("max(1, n // 3) + 1", 3)]:
        assert patterndsl.compile(f"window({source})", 8, simplify=False).patterns[0][0] == \
               patterndsl.compile(f"window({value})", 8, simplify=False).patterns[0][0], source


# ---- the strategies themselves --------------------------------------------------------------------------


@settings(max_examples=examples(60), deadline=None)
@given(S.files(), sizes)
def test_generated_files_compile(source, n):
    compiled = patterndsl.compile(source, n)
    assert compiled.layers >= 1 and compiled.heads >= 1
