"""The intermediate representation: frozen, hashable pattern nodes with n bound.

A Pattern is a set of pairs (i, j), 0 ≤ i, j < n. Leaves are the primitives
(patterndsl/primitives.py, one class each); the four operators below combine
them. `str(node)` prints the node in .spat syntax with every parameter
evaluated, so printed IR parses back to the same IR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


class Pattern:
    """Base of every IR node. Subclasses are frozen dataclasses."""

    # The tighter an operator binds, the higher; used to print minimal parentheses.
    precedence: ClassVar[int] = 100

    def children(self) -> tuple["Pattern", ...]:
        return ()

    def size(self) -> int:
        """The number of nodes in this tree (cached: shared subtrees count each time)."""
        cached = self.__dict__.get("_size")
        if cached is None:
            cached = 1 + sum(child.size() for child in self.children())
            object.__setattr__(self, "_size", cached)
        return cached

    def depth(self) -> int:
        cached = self.__dict__.get("_depth")
        if cached is None:
            cached = 1 + max((child.depth() for child in self.children()), default=0)
            object.__setattr__(self, "_depth", cached)
        return cached

    def _child_text(self, child: "Pattern", strict: bool = False) -> str:
        text = str(child)
        weaker = child.precedence < self.precedence or (strict and child.precedence == self.precedence)
        return f"({text})" if weaker else text


@dataclass(frozen=True)
class Union(Pattern):
    parts: tuple[Pattern, ...]
    precedence: ClassVar[int] = 10

    def children(self):
        return self.parts

    def __str__(self):
        return " | ".join(self._child_text(p) for p in self.parts)


@dataclass(frozen=True)
class Intersection(Pattern):
    parts: tuple[Pattern, ...]
    precedence: ClassVar[int] = 20

    def children(self):
        return self.parts

    def __str__(self):
        return " & ".join(self._child_text(p) for p in self.parts)


@dataclass(frozen=True)
class Difference(Pattern):
    left: Pattern
    right: Pattern
    precedence: ClassVar[int] = 30

    def children(self):
        return (self.left, self.right)

    def __str__(self):
        # `-` is left-associative: a right operand at the same level needs parentheses.
        return f"{self._child_text(self.left)} - {self._child_text(self.right, strict=True)}"


@dataclass(frozen=True)
class Complement(Pattern):
    operand: Pattern
    precedence: ClassVar[int] = 40

    def children(self):
        return (self.operand,)

    def __str__(self):
        return f"~{self._child_text(self.operand)}"


@dataclass(frozen=True)
class IndexSet:
    """A set of token indices as sorted, disjoint, non-touching half-open intervals."""

    intervals: tuple[tuple[int, int], ...]

    @staticmethod
    def of(intervals, n: int) -> "IndexSet":
        """Normalize: clip to [0, n), sort, merge overlapping and touching intervals."""
        merged: list[list[int]] = []
        for lo, hi in sorted((max(0, lo), min(n, hi)) for lo, hi in intervals):
            if lo >= hi:
                continue
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return IndexSet(tuple((lo, hi) for lo, hi in merged))

    def __len__(self) -> int:
        return sum(hi - lo for lo, hi in self.intervals)

    def __contains__(self, index: int) -> bool:
        return any(lo <= index < hi for lo, hi in self.intervals)

    def mask(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for lo, hi in self.intervals:
            out[lo:hi] = True
        return out

    def __str__(self) -> str:
        return ", ".join(str(lo) if hi == lo + 1 else f"{lo}..{hi}" for lo, hi in self.intervals)
