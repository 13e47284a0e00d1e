"""Hypothesis strategies for .spat sources, for property tests of patterndsl and of
code built on it.

    from hypothesis import given
    from patterndsl import strategies as S

    @given(S.pattern_sources(), S.sizes(max_n=64))
    def test_my_target(source, n):
        compiled = patterndsl.compile(source, n)
        ...

Every source these strategies produce is valid for every n ≥ 1: it parses,
resolves and compiles without a diagnostic (the tests check this). Parameters
range from the degenerate (0 where that is legal, 1, n itself) to far beyond n,
and integer arguments are often expressions in n (``isqrt(n)``, ``n // 2``,
``max(0, n - 5)..n + 1``), so one source exercises many shapes as n varies.

This module imports hypothesis, which is a development dependency: only tests
and users who have hypothesis import it (``import patterndsl`` does not).
"""
from __future__ import annotations

import functools
import sys

from hypothesis import strategies as st

from . import ast as A
from .compiled import parse
from .primitives import PRIMITIVES

__all__ = [
    "grid_options", "grid_box_calls", "grid_sources", "sizes", "nonnegative_ints", "positive_ints", "index_lists",
    "primitive_sources", "pattern_trees", "pattern_sources", "pattern_asts", "files", "PRIMITIVE_NAMES",
]

PRIMITIVE_NAMES = tuple(PRIMITIVES)  # every registered primitive, in the registry's order


# ---- sizes and integers ----------------------------------------------------------


def sizes(min_n: int = 1, max_n: int = 80) -> st.SearchStrategy[int]:
    """Sequence lengths n in min_n..max_n, mostly small (1..8 half of the time),
    shrinking towards min_n."""
    return st.one_of(st.integers(min_n, min(max_n, max(min_n, 8))), st.integers(min_n, max_n))


def _literal(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


# Expressions in n that are ≥ 0 (resp. ≥ 1) for every n ≥ 1.
_NONNEGATIVE_IN_N = ("n", "n - 1", "n // 2", "n // 3 + 1", "isqrt(n)", "2 * n", "n + 5", "ilog2(n)",
                     "n % 4", "max(0, n - 10)", "min(n, 7)", "cdiv(n, 4)")
_POSITIVE_IN_N = ("n", "n + 1", "isqrt(n)", "max(1, n // 4)", "cdiv(n, 3)", "ilog2(n) + 1", "2 * n",
                  "min(n, 16)", "n * n")


@functools.lru_cache(maxsize=None)
def nonnegative_ints() -> st.SearchStrategy[str]:
    """Source text of an integer expression that is ≥ 0 for every n ≥ 1: small
    literals (0 included), huge ones (beyond any n), or an expression in n."""
    return st.one_of(_literal(0, 9), _literal(0, 150), st.sampled_from(("1000000", str(2**40))),
                     st.sampled_from(_NONNEGATIVE_IN_N))


@functools.lru_cache(maxsize=None)
def positive_ints() -> st.SearchStrategy[str]:
    """Source text of an integer expression that is ≥ 1 for every n ≥ 1."""
    return st.one_of(_literal(1, 9), _literal(1, 150), st.sampled_from(("1000000", str(2**40))),
                     st.sampled_from(_POSITIVE_IN_N))


@st.composite
def _index_item(draw) -> str:
    """One index (possibly ≥ n, which is clipped) or a half-open range lo..hi with
    0 ≤ lo < hi for every n."""
    form = draw(st.integers(0, 3))
    if form == 0:
        return draw(st.one_of(_literal(0, 9), _literal(0, 150),
                              st.sampled_from(("n - 1", "n", "n + 3", "n // 2", "isqrt(n)"))))
    if form == 1:
        lo = draw(st.integers(0, 100))
        return f"{lo}..{lo + draw(st.integers(1, 60))}"
    if form == 2:
        k = draw(st.integers(1, 20))
        return draw(st.sampled_from((f"max(0, n - {k})..n", f"max(0, n - {k})..n + {k}", f"{k - 1}..n + {k}",
                                     f"n..n + {k}", "n // 2..n")))
    return draw(st.sampled_from(("0..n", "isqrt(n)..2 * n", "n - 1..n", "0..1000000")))


@functools.lru_cache(maxsize=None)
def index_lists() -> st.SearchStrategy[str]:
    """Source text of an index list R: 1 to 4 comma-separated indices and ranges."""
    return st.lists(_index_item(), min_size=1, max_size=4).map(", ".join)


@functools.lru_cache(maxsize=None)
def primitive_sources(names: "tuple[str, ...] | None" = None) -> st.SearchStrategy[str]:
    """Source text of one primitive call, for every registered primitive (or only
    those in ``names``), with parameters that are legal for every n ≥ 1 and often
    larger than n: ``window(-(n), n + 2)``, ``stride(2 * n)``,
    ``global(0, n + 3, max(0, n - 4)..n)``, ``summary(7, 7)``, ``random(n + 1, seed=3)``.
    Each primitive writes its own calls (`Primitive.call_sources`)."""
    this_module = sys.modules[__name__]
    return st.one_of([PRIMITIVES[name].call_sources(this_module) for name in (names or PRIMITIVE_NAMES)])


def transposable_sources(token_free: bool = False) -> st.SearchStrategy[str]:
    """Primitive calls that `transpose` takes: all but `segment_start` (its transpose would
    need each query's rank within its segment, which the resolver refuses)."""
    names = _TOKEN_FREE if token_free else PRIMITIVE_NAMES
    return primitive_sources(tuple(name for name in names if name != "segment_start"))


def token_free_sources() -> st.SearchStrategy[str]:
    """Primitive calls allowed inside blocks { } and grid { }: all but the segment primitives,
    which compare token positions."""
    return primitive_sources(_TOKEN_FREE)


_TOKEN_FREE = tuple(name for name in PRIMITIVE_NAMES if not getattr(PRIMITIVES[name], "reads_segments", False))


@functools.lru_cache(maxsize=None)
def leaf_sources() -> st.SearchStrategy[str]:
    """The default leaves of nested expressions: a primitive call, or now and then its
    transpose (`transpose(P)`: one IR leaf still, the primitive's own transpose;
    tests/test_transpose.py transposes whole expressions), a `blocks(B) { P }`, or a small
    `grid(…) { P }` (sides ≤ 4, so that the property tests stay fast)."""
    transposed = transposable_sources().map(lambda text: f"transpose({text})")
    return st.integers(0, 11).flatmap(lambda k: transposed if k == 0 else blocked_sources() if k == 1
                                      else grid_sources(max_side=4) if k == 2 else primitive_sources())


# Block sizes of `blocks(B) { }`: often a power of two, so that they meet the kernels' blocks.
_BLOCK_SIZES = ("1", "2", "3", "4", "8", "16", "32", "64", "128")


@functools.lru_cache(maxsize=None)
def blocked_sources() -> st.SearchStrategy[str]:
    """`blocks(B) { P }` with P a small expression over primitive calls (now and then
    transposed), B a constant (often a power of two). (A B that grows with n is valid, but its
    growth claim is only an O bound, and one that converges far beyond the n tests reach.)"""
    inner = st.one_of(token_free_sources(), transposable_sources(token_free=True).map(lambda text: f"transpose({text})"))
    body = pattern_trees(max_depth=1, leaves=inner, continuation=False).map(lambda pair: pair[0])
    size = st.sampled_from(_BLOCK_SIZES)
    return st.tuples(size, body).map(lambda pair: f"blocks({pair[0]}) {{ {pair[1]} }}")


# ---- grids (patterndsl/grid.py) -------------------------------------------------------


@st.composite
def grid_options(draw, dims: "list[int]", orders=("rows", "rows", "morton", "tile")):
    """The arguments of a `grid(...)` header over these sides, as a list of their texts,
    and the tile (None unless `tile=`): an offset or not, and an order drawn from
    `orders` ("rows": raster, "morton", or "tile": a tile that divides every side)."""
    options = [str(d) for d in dims]
    if draw(st.booleans()):
        options.append(f"offset={draw(st.integers(0, 6))}")
    order = draw(st.sampled_from(orders))
    tile = None
    if order == "morton":
        options.append("order=morton")
    elif order == "tile":
        tile = [draw(st.sampled_from([t for t in range(1, d + 1) if d % t == 0])) for d in dims]
        options.append(f"tile=({', '.join(map(str, tile))})")
    return options, tile


def grid_box_calls(three: bool, tile, small, k, shift) -> list:
    """Strategies for the grid primitives whose keys are a box of cells (window, natten,
    chunk with and without a shift, sliding tiles when the grid is tiled), in 2D or 3D;
    ``small``/``k`` draw radii and sizes, ``shift`` a 2D chunk's shift."""
    if three:
        calls = [st.builds("window3d({}, {}, {})".format, small, small, small),
                 st.builds("natten3d({}, {}, {})".format, k, k, k),
                 st.builds("chunk3d({}, {}, {}, shift=({}, {}, {}))".format, k, k, k, small, small, small)]
        if tile is not None:
            calls.append(st.builds("sliding_tiles3d({}, {}, {})".format, k, k, k))
    else:
        calls = [st.builds("window2d({}, {})".format, small, small), st.builds("natten({}, {})".format, k, k),
                 st.builds("chunk2d({}, {})".format, k, k),
                 st.builds("chunk2d({}, {}, shift=({}, {}))".format, k, k, shift, shift)]
        if tile is not None:
            calls.append(st.builds("sliding_tiles({}, {})".format, k, k))
    return calls


@st.composite
def grid_sources(draw, max_side: int = 6) -> str:
    """`grid(H, W) { P }` / `grid(T, H, W) { P }` with random options (offset, order=morton,
    a tile that divides the grid), P a small expression over grid primitives and 1D
    primitive calls (which apply to raster ranks). Grids larger than n are common: their
    cells at or beyond n do not exist."""
    three = draw(st.integers(0, 3)) == 0
    dims = [draw(st.integers(1, 3 if three else max_side)) for _ in range(3 if three else 2)]
    options, tile = draw(grid_options(dims))
    small = st.integers(0, 3)
    k = st.integers(1, 5)
    calls = grid_box_calls(three, tile, small, k, st.integers(-2, 3))
    if not three:
        calls += [st.builds("stride2d({}, {})".format, k, k), st.builds("manhattan({})".format, small),
                  st.builds("euclid({})".format, small)]
    calls.append(st.builds("transpose({})".format, st.one_of(calls)))
    calls.append(token_free_sources())
    body = pattern_trees(max_depth=1, leaves=st.one_of(calls), continuation=False).map(lambda pair: pair[0])
    return f"grid({', '.join(options)}) {{ {draw(body)} }}"


# ---- nested expressions -------------------------------------------------------------

# A tree is ("leaf", text) | ("|", [trees]) | ("&", [trees]) | ("-", left, right) | ("~", tree).
_LEVEL = {"|": 1, "&": 2, "-": 3, "~": 4, "leaf": 5}
_POOL_SIZE = 4  # leaves per example: few, so that the same leaf often appears twice


@functools.lru_cache(maxsize=None)
def _shapes(depth: int) -> st.SearchStrategy:
    """Trees whose leaves are ("leaf", k), k an index into a pool of leaves.

    Built once per depth and cached: hypothesis validates every new strategy
    object, which would otherwise dominate the time to draw an example."""
    leaf = st.integers(0, _POOL_SIZE - 1).map(lambda k: ("leaf", k))
    if depth <= 0:
        return leaf
    below = _shapes(depth - 1)
    return st.one_of(
        leaf,
        st.lists(below, min_size=2, max_size=3).map(lambda parts: ("|", parts)),
        st.lists(below, min_size=2, max_size=3).map(lambda parts: ("&", parts)),
        st.tuples(below, below).map(lambda pair: ("-", pair[0], pair[1])),
        below.map(lambda operand: ("~", operand)),
    )


def _fill(tree, pool):
    """Replace each leaf index by its text from ``pool``."""
    kind = tree[0]
    if kind == "leaf":
        return ("leaf", pool[tree[1] % len(pool)])
    if kind in ("|", "&"):
        return (kind, [_fill(part, pool) for part in tree[1]])
    return (kind,) + tuple(_fill(child, pool) for child in tree[1:])


_EXTRA_PARENTHESES = st.integers(0, 9)  # 0: parenthesize a child that does not need it
_SPACE_BEFORE = st.sampled_from((" ", " ", ""))
_COMMENT_TEXT = st.text(st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"),
                                      exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                        max_size=20)
_COMMENT = _COMMENT_TEXT.map(lambda text: "#" + text)
# A line break after an operator continues the line (a blank line may follow it);
# about one operator in five carries a comment, at the end of the line or on a
# line of its own.
_PLAIN_SPACE = st.sampled_from((" ", " ", "", "\n    ", " ", "", " ", " ", "\n\n    ", " ")).map(lambda s: (s, None))
_SPACE_AFTER = st.one_of(_PLAIN_SPACE, _PLAIN_SPACE, _PLAIN_SPACE, _PLAIN_SPACE,
                         st.tuples(st.sampled_from(("  {}\n    ", "\n    {}\n    ")), _COMMENT))
_SPACE_AFTER_ONE_LINE = st.sampled_from((" ", " ", ""))


def _render(draw, tree, continuation: bool = True) -> str:
    """Source text for ``tree``: the parentheses its shape needs, some redundant ones,
    spacing that varies, and now and then a line break after an operator."""
    kind = tree[0]

    def child(subtree, needs_parentheses: bool) -> str:
        text = _render(draw, subtree, continuation)
        if needs_parentheses or draw(_EXTRA_PARENTHESES) == 0:
            return f"({text})"
        return text

    def operator(symbol: str) -> str:
        if continuation:
            after, comment = draw(_SPACE_AFTER)
            after = after.format(comment) if comment is not None else after
        else:
            after = draw(_SPACE_AFTER_ONE_LINE)
        return f"{draw(_SPACE_BEFORE)}{symbol}{after}"

    if kind == "leaf":
        return tree[1]
    level = _LEVEL[kind]
    if kind in ("|", "&"):
        # The same operator nested needs parentheses to keep the tree (a | (b | c)).
        texts = [child(part, _LEVEL[part[0]] <= level) for part in tree[1]]
        out = texts[0]
        for text in texts[1:]:
            out += operator(kind) + text
        return out
    if kind == "-":  # left-associative: a right operand at the same level needs parentheses
        left = child(tree[1], _LEVEL[tree[1][0]] < level)
        right = child(tree[2], _LEVEL[tree[2][0]] <= level)
        return left + operator("-") + right
    return "~" + child(tree[1], _LEVEL[tree[1][0]] < level)


@st.composite
def pattern_trees(draw, max_depth: int = 3, leaves: "st.SearchStrategy[str] | None" = None,
                  continuation: bool = True):
    """(source text, tree): a random nested expression over ``| & - ~`` and
    parentheses, and the tree it denotes, for tests that evaluate the tree
    independently of the parser. A tree is ``("leaf", text)``, ``("|", [trees])``,
    ``("&", [trees])``, ``("-", left, right)`` or ``("~", tree)``.

    The source has the parentheses the tree needs under the precedence of
    the README's language reference (and now and then a redundant pair), varying spaces, and, if
    ``continuation``, line breaks after operators, some with a comment. The leaves come from a small
    pool of 1–4 sources (``leaves``, by default `primitive_sources`) drawn per
    example, so the same leaf often appears twice (``a - a``, ``a | b | a``),
    which the simplification passes act on."""
    pool = draw(st.lists(leaves if leaves is not None else leaf_sources(), min_size=1, max_size=_POOL_SIZE))
    tree = _fill(draw(_shapes(max_depth)), pool)
    return _render(draw, tree, continuation), tree


def pattern_sources(max_depth: int = 3, leaves: "st.SearchStrategy[str] | None" = None) -> st.SearchStrategy[str]:
    """Source text of a random nested pattern expression (see `pattern_trees`)."""
    return pattern_trees(max_depth, leaves).map(lambda pair: pair[0])


def _leaf_ast(text: str) -> A.Node:
    return parse(text).statements[0].expr


def _build_ast(tree) -> A.Node:
    kind = tree[0]
    if kind == "leaf":
        return _leaf_ast(tree[1])
    if kind == "|":
        return A.Union(tuple(_build_ast(part) for part in tree[1]))
    if kind == "&":
        return A.Intersection(tuple(_build_ast(part) for part in tree[1]))
    if kind == "-":
        return A.Binary("-", _build_ast(tree[1]), _build_ast(tree[2]))
    return A.Unary("~", _build_ast(tree[1]))


@st.composite
def pattern_asts(draw, max_depth: int = 3) -> A.Node:
    """A random pattern expression as AST nodes (patterndsl.ast), built directly
    from a tree rather than by parsing it (the leaves, one primitive call each,
    are parsed). Spans are None; AST equality ignores them."""
    pool = draw(st.lists(leaf_sources(), min_size=1, max_size=_POOL_SIZE))
    return _build_ast(_fill(draw(_shapes(max_depth)), pool))


# ---- whole files ----------------------------------------------------------------------

@st.composite
def _def_statement(draw, name: str):
    """(statement text, parameter list): a def over integer parameters and at most
    one pattern parameter; integer parameters are only used where any value ≥ 1
    is legal."""
    count = draw(st.integers(1, 3))
    params = [f"{name}_{'abc'[k]}" for k in range(count)]
    pattern_param = draw(st.booleans())
    templates = ["window({x})", "stride({x})", "chunk({x})", "dilated({x}, {y})", "random({x}, seed={y})",
                 "summary({x} + 1, 1)", "global(0..{x})", "cols({x} - 1, {y})", "window(-({x}), {x} + {y})"]
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        template = draw(st.sampled_from(templates))
        parts.append(template.format(x=draw(st.sampled_from(params)), y=draw(st.sampled_from(params))))
    if pattern_param:
        params.append(f"{name}_p")
        parts.append(params[-1])
    body = parts[0]
    for part in parts[1:]:
        body = f"({body}) {draw(st.sampled_from(('|', '&', '-')))} {part}"
    # Trailing integer parameters may have defaults.
    defaults = {}
    for param in reversed(params):
        if param.endswith("_p") or not draw(st.booleans()):
            break
        defaults[param] = draw(_literal(1, 70))
    header = ", ".join(p + (f" = {defaults[p]}" if p in defaults and draw(st.booleans()) else
                            (f"={defaults[p]}" if p in defaults else "")) for p in params)
    return f"def {name}({header}) = {body}", [(p, p in defaults) for p in params]


@st.composite
def _def_call(draw, name: str, params, int_names, pattern_leaves):
    """A call of a def: some arguments positional, then some by keyword, defaults
    sometimes left out."""
    positional = draw(st.integers(0, len(params)))
    args = []
    for index, (param, has_default) in enumerate(params):
        value = (draw(pattern_leaves) if param.endswith("_p")
                 else draw(st.one_of(positive_ints(), st.sampled_from(int_names or ["1"]))))
        if index < positional:
            args.append(value)
        elif has_default and draw(st.booleans()):
            continue
        else:
            args.append(f"{param}={value}")
    return f"{name}({', '.join(args)})"


@st.composite
def _tiling(draw, heads: int):
    """Head ranges that tile 0..heads, in a random order."""
    cuts = sorted(draw(st.sets(st.integers(1, heads - 1), max_size=heads - 1))) if heads > 1 else []
    bounds = [0] + cuts + [heads]
    ranges = list(zip(bounds, bounds[1:]))
    return draw(st.permutations(ranges))


@st.composite
def files(draw) -> str:
    """Source text of a whole .spat file, valid for every n ≥ 1: integer and
    pattern `let`s, `def`s with parameters (some with defaults) and calls with
    positional and keyword arguments, an optional `block` and `prob`, and one
    pattern: a bare expression, a `heads { }` block (ranges tiling 0..H, in any
    order) or a `layers { }` block whose entries may be `heads { }` blocks.
    Comments (own-line and trailing) and blank lines are sprinkled throughout."""
    lines: list[str] = []

    def comment_lines(indent: str = ""):
        if draw(st.integers(0, 2)) == 0:
            for _ in range(draw(st.integers(1, 2))):
                lines.append(indent + draw(_COMMENT))
        if draw(st.integers(0, 5)) == 0:
            lines.append("")

    def trailing() -> str:
        return ("  " + draw(_COMMENT)) if draw(st.integers(0, 3)) == 0 else ""

    int_names = [f"k{index}" for index in range(draw(st.integers(0, 2)))]
    pattern_names = [f"p{index}" for index in range(draw(st.integers(0, 2)))]
    def_names = [f"f{index}" for index in range(draw(st.integers(0, 2)))]

    for name in int_names:
        comment_lines()
        lines.append(f"let {name} = {draw(positive_ints())}" + trailing())
    defs = {}
    for name in def_names:
        comment_lines()
        text, params = draw(_def_statement(name))
        defs[name] = params
        lines.append(text + trailing())

    simple_leaves = st.one_of(
        primitive_sources(),
        st.sampled_from(int_names).map(lambda k: f"window({k})") if int_names else primitive_sources(),
        st.sampled_from(int_names).map(lambda k: f"stride({k})") if int_names else primitive_sources(),
    )
    for name in pattern_names:
        comment_lines()
        lines.append(f"let {name} = {draw(pattern_sources(2, simple_leaves))}" + trailing())

    leaf_options = [simple_leaves]
    if pattern_names:
        leaf_options.append(st.sampled_from(pattern_names))
    for name, params in defs.items():
        leaf_options.append(_def_call(name, params, int_names, simple_leaves))
    leaves = st.one_of(leaf_options)

    def expression() -> str:
        return draw(pattern_trees(2, leaves))[0]

    if draw(st.booleans()):
        comment_lines()
        lines.append(draw(st.sampled_from(("block 64", "block 16", "block 128, 32", "block 32, 64"))) + trailing())
    if draw(st.booleans()):
        comment_lines()
        lines.append(f"prob {draw(st.sampled_from(('softmax', 'sparsemax', 'entmax(1.5)', 'entmax(1.25)')))}" + trailing())

    heads = draw(st.integers(1, 6))

    def heads_block(indent: str):
        lines.append(indent + "heads {" + trailing())
        for lo, hi in draw(_tiling(heads)):
            comment_lines(indent + "    ")
            head = f"{lo}" if hi == lo + 1 and draw(st.booleans()) else f"{lo}..{hi}"
            lines.append(f"{indent}    {head}: {expression()}" + trailing())
        comment_lines(indent + "    ")
        lines.append(indent + "}" + trailing())

    comment_lines()
    shape = draw(st.sampled_from(("bare", "heads", "layers")))
    if shape == "bare":
        lines.append(expression() + trailing())
    elif shape == "heads":
        heads_block("")
    else:
        lines.append("layers {" + trailing())
        for _ in range(draw(st.integers(1, 3))):
            comment_lines("    ")
            if draw(st.integers(0, 2)) == 0:
                heads_block("    ")
            else:
                lines.append("    " + expression() + trailing())
        lines.append("}" + trailing())
    comment_lines()
    return "\n".join(lines) + "\n"
