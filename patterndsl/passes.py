"""Simplification passes over the IR. Each pass is one function that never
changes the meaning of a pattern (the tests check every one against the dense
reference); `simplify` applies them bottom-up."""
from __future__ import annotations

from .ir import Complement, Difference, Intersection, Pattern, Union
from .primitives import All, Nothing, Primitive

ALL, NONE = All(), Nothing()


def flatten(node: Pattern, n: int) -> Pattern:
    """(a | b) | c → a | b | c, and the same for &."""
    if isinstance(node, (Union, Intersection)):
        parts = []
        for part in node.parts:
            parts.extend(part.parts if type(part) is type(node) else (part,))
        return type(node)(tuple(parts))
    return node


def drop_identities(node: Pattern, n: int) -> Pattern:
    """none disappears from unions, all from intersections; all absorbs a union,
    none an intersection; a single remaining part stands alone."""
    if isinstance(node, (Union, Intersection)):
        identity, absorbing = (NONE, ALL) if isinstance(node, Union) else (ALL, NONE)
        if absorbing in node.parts:
            return absorbing
        parts = tuple(p for p in node.parts if p != identity)
        if not parts:
            return identity
        return parts[0] if len(parts) == 1 else type(node)(parts)
    return node


def dedupe(node: Pattern, n: int) -> Pattern:
    """a | b | a → a | b (first occurrence kept), and the same for &."""
    if isinstance(node, (Union, Intersection)):
        parts = tuple(dict.fromkeys(node.parts))
        return parts[0] if len(parts) == 1 else type(node)(parts)
    return node


def fold_operators(node: Pattern, n: int) -> Pattern:
    """~~a → a, ~all → none, ~none → all, a - none → a, a - all → none,
    none - a → none, a - a → none."""
    if isinstance(node, Complement):
        inner = node.operand
        if isinstance(inner, Complement):
            return inner.operand
        if inner == ALL:
            return NONE
        if inner == NONE:
            return ALL
    if isinstance(node, Difference):
        if node.right == NONE:
            return node.left
        if node.right == ALL or node.left == NONE or node.left == node.right:
            return NONE
    return node


def fold_primitives(node: Pattern, n: int) -> Pattern:
    """Primitives whose parameters make them a simpler primitive at this n (each
    primitive's own rules: `Primitive.simplify`)."""
    return node.simplify(n) if isinstance(node, Primitive) else node


PASSES = (fold_primitives, flatten, fold_operators, drop_identities, dedupe)


def simplify(node: Pattern, n: int) -> Pattern:
    """Apply every pass bottom-up, each node until nothing changes."""
    children = node.children()
    if children:
        simplified = tuple(simplify(child, node.child_n(n)) for child in children)
        if simplified != children:
            node = node.with_children(simplified)
    while True:
        before = node
        for rewrite in PASSES:
            node = rewrite(node, n)
        if node == before:
            return node
        if node.children():  # a rewrite may expose new work below (e.g. ~~(a | none))
            return simplify(node, n)
