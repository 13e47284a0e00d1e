"""The intermediate representation: frozen, hashable pattern nodes with n bound.

A Pattern is a set of pairs (i, j), 0 ≤ i, j < n. Leaves are the primitives
(patterndsl/primitives.py, one class each); the four combinators below join
them. `str(node)` prints the node in .spat syntax with every parameter
evaluated, so printed IR parses back to the same IR.

Every node answers the same questions — its element predicate, its source
expression, its row structure, its block states — and the combinators answer
them from their parts, so no other module asks a node which class it is:

  * `predicate(i, j, n)` / `pairs(i, j, n)`: the meaning, vectorized (the dense
    reference evaluator, patterndsl/reference.py, is `pattern.predicate`);
  * `source(q, k, n, backend)`: the predicate as torch/Triton source
    (patterndsl/codegen.py);
  * `row_structure(n)`: the keys of each query row as a formula over the atoms
    of patterndsl/structure.py, joined by `AnyOf`, `AllOf`, `Not` below (the
    exact counter, patterndsl/analysis/counts.py);
  * `block_states`, `block_candidates`, `block_estimate`, `block_counts`: block
    layouts (patterndsl/layout.py); the combinators describe themselves as a
    union or an intersection of (possibly complemented) terms and the layout's
    `BlockGrid` combines their parts' answers;
  * `with_children(children)`: the same node over new children (the passes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .arrays import unique_sorted


class Pattern:
    """Base of every IR node. Subclasses are frozen dataclasses."""

    # The tighter an operator binds, the higher; used to print minimal parentheses.
    precedence: ClassVar[int] = 100
    # Whether its block_estimate walks every block row or column (an array of num_q or num_k):
    # layout_memory refuses such a pattern from the block rows alone when they pass the budget.
    estimate_walks_blocks: ClassVar[bool] = False

    def children(self) -> tuple["Pattern", ...]:
        return ()

    def with_children(self, children: tuple["Pattern", ...]) -> "Pattern":
        """This node over ``children`` instead of its own (a leaf has none)."""
        return self

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

    def index_sets(self) -> tuple["IndexSet", ...]:
        """The index lists among this node's own parameters (``global(R)``'s R; none
        for most nodes), for analyses that probe the indices a pattern singles out."""
        return ()

    # ---- capabilities every node has (see the module docstring) -----------------------

    def predicate(self, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
        """Bool [len(i), len(j)]: whether query i attends to key j (i a column, j a row)."""
        raise NotImplementedError

    def pairs(self, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
        """Bool [m]: the element predicate at the m pairs (i[k], j[k]) (1-D int arrays of
        equal length), in O(m)."""
        raise NotImplementedError

    def source(self, q: str, k: str, n: int, backend) -> str:
        """The element predicate as a torch/Triton expression over tensors ``q`` and ``k``."""
        raise NotImplementedError

    def row_structure(self, n: int):
        """The keys of every query row, as a formula over patterndsl.structure atoms."""
        raise NotImplementedError

    def block_states(self, grid, qb: np.ndarray, kb: np.ndarray) -> np.ndarray:
        """int8 EMPTY / PARTIAL / FULL of the blocks (qb, kb), exactly (``grid`` is a
        layout.BlockGrid)."""
        raise NotImplementedError

    def block_candidates(self, grid):
        """Sorted codes (grid.codes) of a superset of its non-empty blocks, in time
        proportional to their number; None when it may touch any block."""
        return None

    def band(self, n: int):
        """(lo, hi) when this pattern is exactly the band lo ≤ j − i ≤ hi at n, else None."""
        return None

    def candidates_in_band(self, grid, lo: int, hi: int):
        """Sorted codes of a superset of its non-empty blocks that hold an offset j − i in
        lo..hi (what an intersection with that band can touch); None when it has no such
        form (block_candidates then)."""
        return None

    def block_estimate(self, grid) -> int:
        """About how many codes block_candidates returns (cheap; picks an intersection's
        sparsest part)."""
        return grid.num_blocks

    def block_counts(self, grid, qb, kb):
        """Exact pair counts of the blocks (int64, -1 where not known), or None when it
        knows none."""
        return None

    def child_n(self, n: int) -> int:
        """The size its children are built for (n; ⌈n/B⌉ under `blocks(B)`)."""
        return n

    def transposed(self, n: int) -> "Pattern":
        """The pattern {(j, i) : (i, j) in this one} at n (`transpose(P)`): the combinators
        pass it to their parts, and each primitive names its own transpose."""
        raise NotImplementedError

    def _child_text(self, child: "Pattern", strict: bool = False) -> str:
        text = str(child)
        weaker = child.precedence < self.precedence or (strict and child.precedence == self.precedence)
        return f"({text})" if weaker else text


class Combination(Pattern):
    """A union or an intersection of terms, each a part or a part's complement:
    `terms()` gives (parts, complemented). Union, Intersection and Difference are
    combinations (a − b is a ∩ ~b), so the block layout combines them with one rule."""

    joins_any: ClassVar[bool]  # True: a union of its terms; False: an intersection

    def terms(self) -> tuple[tuple[Pattern, ...], tuple[bool, ...]]:
        raise NotImplementedError

    def block_states(self, grid, qb, kb):
        return grid.combined_states(self, *self.terms(), self.joins_any, qb, kb)

    def block_counts(self, grid, qb, kb):
        return grid.combined_counts(*self.terms(), self.joins_any, qb, kb)


@dataclass(frozen=True)
class Union(Combination):
    parts: tuple[Pattern, ...]
    precedence: ClassVar[int] = 10
    joins_any: ClassVar[bool] = True

    def children(self):
        return self.parts

    def with_children(self, children):
        return Union(tuple(children))

    def transposed(self, n):
        return Union(tuple(p.transposed(n) for p in self.parts))

    def terms(self):
        return self.parts, (False,) * len(self.parts)

    def __str__(self):
        return " | ".join(self._child_text(p) for p in self.parts)

    def predicate(self, i, j, n):
        out = np.array(self.parts[0].predicate(i, j, n), dtype=bool)
        for part in self.parts[1:]:
            out |= part.predicate(i, j, n)
        return out

    def pairs(self, i, j, n):
        out = np.array(self.parts[0].pairs(i, j, n), dtype=bool).reshape(np.shape(i))
        for part in self.parts[1:]:  # each part is asked only about the pairs still out
            todo = np.flatnonzero(~out)
            if todo.size == 0:
                break
            out[todo] = part.pairs(i.take(todo), j.take(todo), n)
        return out

    def source(self, q, k, n, backend):
        return "(" + " | ".join(p.source(q, k, n, backend) for p in self.parts) + ")"

    def row_structure(self, n):
        return AnyOf(tuple(p.row_structure(n) for p in self.parts))

    def block_candidates(self, grid):
        parts = [p.block_candidates(grid) for p in self.parts]
        return None if any(p is None for p in parts) else unique_sorted(np.concatenate(parts))

    def candidates_in_band(self, grid, lo, hi):
        parts = []
        for part in self.parts:
            codes = part.candidates_in_band(grid, lo, hi)
            codes = part.block_candidates(grid) if codes is None else codes
            if codes is None:
                return None
            parts.append(codes)
        return unique_sorted(np.concatenate(parts))

    def block_estimate(self, grid):
        return min(grid.num_blocks, sum(p.block_estimate(grid) for p in self.parts))


@dataclass(frozen=True)
class Intersection(Combination):
    parts: tuple[Pattern, ...]
    precedence: ClassVar[int] = 20
    joins_any: ClassVar[bool] = False

    def children(self):
        return self.parts

    def with_children(self, children):
        return Intersection(tuple(children))

    def transposed(self, n):
        return Intersection(tuple(p.transposed(n) for p in self.parts))

    def terms(self):
        return self.parts, (False,) * len(self.parts)

    def __str__(self):
        return " & ".join(self._child_text(p) for p in self.parts)

    def predicate(self, i, j, n):
        out = np.array(self.parts[0].predicate(i, j, n), dtype=bool)
        for part in self.parts[1:]:
            out &= part.predicate(i, j, n)
        return out

    def pairs(self, i, j, n):
        out = np.ones(np.shape(i), dtype=bool)
        for part in self.parts:  # each part is asked only about the pairs still in
            todo = np.flatnonzero(out)
            if todo.size == 0:
                break
            out[todo] = part.pairs(i[todo], j[todo], n)
        return out

    def source(self, q, k, n, backend):
        return "(" + " & ".join(p.source(q, k, n, backend) for p in self.parts) + ")"

    def row_structure(self, n):
        return AllOf(tuple(p.row_structure(n) for p in self.parts))

    def block_candidates(self, grid):
        return self._candidates(grid, [])

    def candidates_in_band(self, grid, lo, hi):
        return self._candidates(grid, [(lo, hi)])

    def _candidates(self, grid, bands):
        # List the sparsest part; the others are only asked about its blocks. The bands
        # among the others (causal, window) cut its list where it is made: phi3's
        # `blocks(64) { window(15, 0) | summary(8, 1) } & causal` lists the summary's
        # blocks below the diagonal only (23k candidates, not 40k).
        estimates = self._part_estimates(grid)
        sparsest = self.parts[estimates.index(min(estimates))]
        bands = bands + [p.band(grid.n) for p in self.parts if p is not sparsest]
        bands = [b for b in bands if b is not None]
        if bands:
            codes = sparsest.candidates_in_band(grid, max(b[0] for b in bands), min(b[1] for b in bands))
            if codes is not None:
                return codes
        return sparsest.block_candidates(grid)

    def block_estimate(self, grid):
        return min(self._part_estimates(grid))

    def _part_estimates(self, grid) -> list:
        """Each part's block_estimate, once per grid: the layout's memory estimate asks them
        and then its candidates do (phi3's summary counts its key blocks each time)."""
        key = ("part estimates", id(self))
        found = grid.memo.get(key)
        if found is None or found[0] is not self:  # (an id is reused once its object is gone)
            found = grid.memo[key] = (self, [p.block_estimate(grid) for p in self.parts])
        return found[1]


@dataclass(frozen=True)
class Difference(Combination):
    left: Pattern
    right: Pattern
    precedence: ClassVar[int] = 30
    joins_any: ClassVar[bool] = False

    def children(self):
        return (self.left, self.right)

    def with_children(self, children):
        return Difference(*children)

    def transposed(self, n):
        return Difference(self.left.transposed(n), self.right.transposed(n))

    def terms(self):
        return (self.left, self.right), (False, True)

    def __str__(self):
        # `-` is left-associative: a right operand at the same level needs parentheses.
        return f"{self._child_text(self.left)} - {self._child_text(self.right, strict=True)}"

    def predicate(self, i, j, n):
        return self.left.predicate(i, j, n) & ~self.right.predicate(i, j, n)

    def pairs(self, i, j, n):
        out = np.array(self.left.pairs(i, j, n), dtype=bool)
        todo = np.flatnonzero(out)
        out[todo] = ~self.right.pairs(i[todo], j[todo], n)
        return out

    def source(self, q, k, n, backend):
        return f"({self.left.source(q, k, n, backend)} & ~{self.right.source(q, k, n, backend)})"

    def row_structure(self, n):
        return AllOf((self.left.row_structure(n), Not(self.right.row_structure(n))))

    def block_candidates(self, grid):
        return self.left.block_candidates(grid)

    def block_estimate(self, grid):
        return self.left.block_estimate(grid)


@dataclass(frozen=True)
class Complement(Pattern):
    operand: Pattern
    precedence: ClassVar[int] = 40

    def children(self):
        return (self.operand,)

    def with_children(self, children):
        return Complement(children[0])

    def transposed(self, n):
        return Complement(self.operand.transposed(n))

    def __str__(self):
        return f"~{self._child_text(self.operand)}"

    def predicate(self, i, j, n):
        return ~self.operand.predicate(i, j, n)

    def pairs(self, i, j, n):
        return ~self.operand.pairs(i, j, n)

    def source(self, q, k, n, backend):
        return f"(~{self.operand.source(q, k, n, backend)})"

    def row_structure(self, n):
        return Not(self.operand.row_structure(n))

    def block_states(self, grid, qb, kb):
        return grid.complement_states(self.operand.block_states(grid, qb, kb))

    def block_counts(self, grid, qb, kb):
        inner = self.operand.block_counts(grid, qb, kb)
        if inner is None:
            return None
        return np.where(inner < 0, -1, grid.area(qb, kb) - inner)

    # block_candidates: None (any block), block_estimate: all of them — its touched
    # blocks are all but the operand's full ones.


@dataclass(frozen=True)
class Blocked(Pattern):
    """`blocks(B) { P }`: (i, j) exactly when (⌊i/B⌋, ⌊j/B⌋) is in P, a pattern over the
    ⌈n/B⌉ blocks (built for that size: its every capability is asked at ⌈n/B⌉)."""

    block: int
    operand: Pattern
    precedence: ClassVar[int] = 100

    def children(self):
        return (self.operand,)

    def with_children(self, children):
        return Blocked(self.block, children[0])

    def child_n(self, n: int) -> int:
        return -(-n // self.block)

    def transposed(self, n):
        return Blocked(self.block, self.operand.transposed(self.child_n(n)))

    def __str__(self):
        return f"blocks({self.block}) {{ {self.operand} }}"

    def predicate(self, i, j, n):
        return self.operand.predicate(i // self.block, j // self.block, self.child_n(n))

    def pairs(self, i, j, n):
        return self.operand.pairs(i // self.block, j // self.block, self.child_n(n))

    def source(self, q, k, n, backend):
        return self.operand.source(f"({q} // {self.block})", f"({k} // {self.block})", self.child_n(n), backend)

    def row_structure(self, n):
        return Scaled(self.block, self.operand.row_structure(self.child_n(n)))

    # Block layouts: when B divides the kernel's blocks, kernel block (q, k) holds exactly
    # the pattern blocks of block (q, k) of a grid of blocks of BQ/B × BK/B over ⌈n/B⌉;
    # when the kernel's blocks divide B, each lies inside one pattern block pair. Either
    # way FULL and EMPTY carry over, and the work is that of the operand's own layout.
    # Otherwise ("covers") each kernel block meets a few blocks of the operand's layout on a
    # grid of about the kernel's blocks, in cells (⌊BQ/B⌋ × ⌊BK/B⌋, at least 1), which
    # decide it except where it cuts a partial one (layout.BlockGrid.covered_states).

    def _aligned(self, grid):
        """("divides", inner grid), ("inside", unit grid) or ("covers", inner grid)."""
        key = ("blocks grid", self.block)
        if key not in grid.memo:
            B, cells = self.block, self.child_n(grid.n)
            if grid.block_q % B == 0 and grid.block_k % B == 0:
                inner = ("divides", type(grid)(cells, grid.block_q // B, grid.block_k // B))
            elif B % grid.block_q == 0 and B % grid.block_k == 0:
                inner = ("inside", type(grid)(cells, 1, 1))
            else:
                inner = ("covers", type(grid)(cells, max(1, grid.block_q // B), max(1, grid.block_k // B)))
            grid.memo[key] = inner
        return grid.memo[key]

    def block_states(self, grid, qb, kb):
        how, inner = self._aligned(grid)
        if how == "divides" and (inner.block_q, inner.block_k) != (1, 1):
            return self.operand.block_states(inner, qb, kb)
        if how == "covers":
            return grid.covered_states(self.operand, inner, self.block, qb, kb)
        # each kernel block lies in one cell (B = BQ = BK: it is one): in P or not, from its pair
        q, k = np.asarray(qb, dtype=np.int64), np.asarray(kb, dtype=np.int64)
        q = q if grid.block_q == self.block else q * grid.block_q // self.block
        k = k if grid.block_k == self.block else k * grid.block_k // self.block
        held = self.operand.pairs(q.reshape(-1), k.reshape(-1), inner.n).reshape(np.shape(q))
        return np.asarray(held, dtype=bool).view(np.int8) * np.int8(2)  # FULL or EMPTY

    def block_candidates(self, grid):
        how, inner = self._aligned(grid)
        if how == "covers":
            return grid.covered_candidates(self.operand, inner, self.block)
        codes = self.operand.block_candidates(inner)
        if how == "divides" or codes is None or inner.num_blocks == grid.num_blocks:
            return codes  # (B = BQ = BK: a cell is a kernel block, with the same code)
        # each pattern block pair (r, c) covers kernel blocks r·B/BQ … and c·B/BK …
        r, c = inner.decode(codes)
        per_q, per_k = self.block // grid.block_q, self.block // grid.block_k
        q = r[:, None, None] * per_q + np.arange(per_q)[None, :, None]
        k = c[:, None, None] * per_k + np.arange(per_k)[None, None, :]
        q, k = (x.reshape(-1) for x in np.broadcast_arrays(q, k))
        keep = (q < grid.num_q) & (k < grid.num_k)
        return unique_sorted(grid.codes(q[keep], k[keep]))  # not np.unique: block codes collide in its hash

    def candidates_in_band(self, grid, lo, hi):
        how, inner = self._aligned(grid)
        if how == "covers" or (how == "inside" and inner.num_blocks != grid.num_blocks):
            return None
        # a kernel block is an inner block of whole cells (r, c): its tokens' offsets lie
        # within (c − r)·B ± (B − 1), so the cells that can meet lo..hi have c − r in
        # ⌈(lo − B + 1)/B⌉ .. ⌊(hi + B − 1)/B⌋ (a superset where the last cell is cut)
        B = self.block
        return self.operand.candidates_in_band(inner, -((B - 1 - lo) // B), (hi + B - 1) // B)

    def block_estimate(self, grid):
        how, inner = self._aligned(grid)
        estimate = self.operand.block_estimate(inner)
        if how == "inside":
            estimate *= (self.block // grid.block_q) * (self.block // grid.block_k)
        elif how == "covers":  # the kernel blocks an inner block meets, per axis
            estimate *= ((inner.block_q * self.block - 1) // grid.block_q + 2) * (
                (inner.block_k * self.block - 1) // grid.block_k + 2)
        return min(grid.num_blocks, estimate)


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

    @staticmethod
    def from_indices(indices) -> "IndexSet":
        """The set of the given non-negative indices (any order, repeats allowed), as its
        maximal runs; vectorized, for index arrays as long as n."""
        indices = np.unique(np.asarray(indices, dtype=np.int64))
        if indices.size == 0:
            return IndexSet(())
        breaks = np.flatnonzero(np.diff(indices) != 1)
        starts = np.concatenate([indices[:1], indices[breaks + 1]])
        ends = np.concatenate([indices[breaks], indices[-1:]]) + 1
        return IndexSet(tuple((int(lo), int(hi)) for lo, hi in zip(starts, ends)))

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


# ---- boolean formulas over row-structure atoms -------------------------------------------
#
# The connectives of `row_structure` (patterndsl/structure.py holds the atoms and
# re-exports these). They live here, below the structure module, so that the
# combinators above can build their row structure from their parts'.


@dataclass(frozen=True)
class AnyOf:
    parts: tuple


@dataclass(frozen=True)
class AllOf:
    parts: tuple


@dataclass(frozen=True)
class Not:
    part: Any


@dataclass(frozen=True)
class Scaled:
    """The row structure ``part`` of a pattern over blocks of ``size`` (`blocks(B) { P }`):
    row i has the keys of the blocks that block row ⌊i/size⌋ of ``part`` holds
    (structure.scale turns it into atoms over tokens)."""

    size: int
    part: Any
