"""The abstract syntax tree of a .spat file.

Nodes are frozen dataclasses. Every node carries the Span it came from, but the
span is left out of equality and hashing, so two parses of the same program
compare equal however they were laid out (the formatter's round-trip relies on
this).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Span


def _span():
    return field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Node:
    pass


# ---- expressions ---------------------------------------------------------


@dataclass(frozen=True)
class Number(Node):
    value: int
    span: Span | None = _span()


@dataclass(frozen=True)
class Name(Node):
    id: str
    span: Span | None = _span()


@dataclass(frozen=True)
class Range(Node):
    """`lo..hi`, the half-open range lo ≤ x < hi; only inside call arguments."""

    lo: Node
    hi: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Keyword(Node):
    """`name=value` inside a call's argument list."""

    name: str
    value: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]  # positional args, Ranges and Keywords in source order
    span: Span | None = _span()


@dataclass(frozen=True)
class Tuple(Node):
    """`(a, b)` or `(a, b, c)`: a tuple of integers (the grid options `tile=`, `shift=`)."""

    items: tuple[Node, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Scoped(Node):
    """`func(args) { body }`: a pattern evaluated in a scope the call sets up
    (`blocks(B) { P }`: P over the blocks of B tokens)."""

    func: str
    args: tuple[Node, ...]
    body: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "~", "-" or "not"
    operand: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Binary(Node):
    """A left-associative binary operator: - + * // %, a comparison (== != < <= > >=),
    or `and` / `or` of two conditions."""

    op: str
    left: Node
    right: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Union(Node):
    """`a | b | …` kept flat, as written."""

    items: tuple[Node, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Intersection(Node):
    """`a & b & …` kept flat, as written."""

    items: tuple[Node, ...]
    span: Span | None = _span()


# ---- statements ----------------------------------------------------------


@dataclass(frozen=True)
class Let(Node):
    name: str
    value: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Param(Node):
    name: str
    default: Node | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class Def(Node):
    name: str
    params: tuple[Param, ...]
    body: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Block(Node):
    """`block BQ` or `block BQ, BK`."""

    query: Node
    key: Node | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class Queries(Node):
    """`queries M`: a cross-attention file, M queries against n keys (patterndsl/cross.py)."""

    count: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Prob(Node):
    """`prob NAME` or `prob NAME(ARG)`: ``name`` is the map with its argument as written,
    without spaces ("softmax", "entmax(1.5)"), checked by the resolver."""

    name: str
    span: Span | None = _span()


@dataclass(frozen=True)
class HeadEntry(Node):
    """`lo..hi: pattern` (hi None: the single head `lo: pattern`)."""

    lo: Node
    hi: Node | None
    pattern: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Heads(Node):
    entries: tuple[HeadEntry, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Layers(Node):
    entries: tuple[Node, ...]  # expressions or Heads
    span: Span | None = _span()


@dataclass(frozen=True)
class PatternStmt(Node):
    """A bare expression: the file's pattern, one layer, every head."""

    expr: Node
    span: Span | None = _span()


@dataclass(frozen=True)
class Comment:
    """A `#` comment, kept so that `patterndsl fmt` does not lose it."""

    text: str
    line: int
    own_line: bool  # True when nothing but whitespace precedes it on its line


@dataclass(frozen=True)
class Module(Node):
    statements: tuple[Node, ...]
    # Layout the formatter keeps, left out of equality: comments, and the
    # numbers of the source lines that are blank.
    comments: tuple[Comment, ...] = field(default=(), compare=False, hash=False, repr=False)
    blank_lines: frozenset = field(default=frozenset(), compare=False, hash=False, repr=False)
    span: Span | None = _span()


def children(node: Node) -> list[Node]:
    """The direct sub-nodes of ``node``, for passes that walk the tree."""
    out: list[Node] = []
    for value in vars(node).values():
        if isinstance(value, Node):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, Node))
    return out


def walk(node: Node):
    """Every node under ``node`` (pre-order), iteratively."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))
