"""The primitives of the language, one class each.

Each class is an IR leaf (a frozen dataclass with its parameters evaluated for
a bound n) and knows everything about itself:
  * `signatures`: the parameters it takes (several alternatives allowed),
  * `build`: checks the arguments for this n and makes the node,
  * `predicate`: its element predicate, vectorized — the normative meaning of
    DESIGN.md §1, used by the dense reference evaluator,
  * `__str__`: itself in .spat syntax,
  * `row_structure`: its keys per query row as a formula over the atoms of
    patterndsl/structure.py (intervals, progressions, explicit points), which the
    exact counter (patterndsl/analysis/counts.py) uses instead of a dense mask.
Later passes (counts, block layouts, kernels) add their methods here, so adding
a primitive stays one unit of code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import randomgen
from .arrays import unique_sorted
from . import structure as R
from .ir import IndexSet, Pattern

PRIMITIVES: dict[str, type["Primitive"]] = {}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str = "int"  # "int", or "indices": a list of indices and ranges a..b
    default: int | None = None  # None: required


class ParamError(Exception):
    """An argument that is wrong for this n; the resolver adds the source span."""

    def __init__(self, param: str | None, message: str, help: str | None = None):
        super().__init__(message)
        self.param, self.message, self.help = param, message, help


@dataclass(frozen=True)
class RowBound:
    """A primitive's per-row degree bound (patterndsl/analysis/growth.py).

    Every query row but at most `exceptional` of them holds at most `degree` keys
    (the exceptional rows at most n), so the count is ≤ n·min(degree, n) +
    n·min(exceptional, n). The values are ints (a concrete n) or the growth
    analysis's symbolic quantities; the flags only matter to the latter:
      * tight: for all large n the count is ≥ c·n·(degree + exceptional) for some c > 0;
      * reflexive: every (i, i) is in the pattern (so the count is ≥ n);
      * symmetric: (i, j) in it exactly when (j, i) is;
      * causal_dense: its intersection with `causal` keeps ≥ c times its count
        (true of every symmetric pattern: the pairs below the diagonal are half
        of the off-diagonal ones)."""

    degree: object
    exceptional: object = 0
    tight: bool = True
    reflexive: bool = False
    symmetric: bool = False
    causal_dense: bool | None = None  # None: the same as symmetric


def primitive(cls):
    PRIMITIVES[cls.name] = cls
    return cls


class Primitive(Pattern):
    name: ClassVar[str]
    signatures: ClassVar[tuple[tuple[ParamSpec, ...], ...]] = ((),)
    meaning: ClassVar[str]  # the exact meaning, as DESIGN.md §1 states it

    @classmethod
    def build(cls, args: dict, n: int) -> Pattern:
        return cls(**args)

    def predicate(self, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
        """Bool [len(i), len(j)]: whether query i attends to key j (i a column, j a row)."""
        raise NotImplementedError

    def row_structure(self, n: int):
        """The keys of every query row, as a formula over patterndsl.structure atoms."""
        raise NotImplementedError

    @classmethod
    def row_bound(cls, args: dict, n, ops) -> "RowBound":
        """Its per-row degree bound from its arguments (by parameter name, an index list
        R as `ops.size` takes it), for patterndsl/analysis/growth.py. ``n`` and the
        arguments are ints or symbolic quantities; ``ops`` supplies min, cdiv, clog2,
        size and the predicates nonneg, const, small (|x| = o(n)) and same."""
        raise NotImplementedError

    # ---- blocks (patterndsl/layout.py); ``grid`` is a layout.BlockGrid --------------

    def block_states(self, grid, qb: np.ndarray, kb: np.ndarray) -> np.ndarray:
        """int8 EMPTY / PARTIAL / FULL of the blocks (qb, kb), exactly. The default
        evaluates the blocks; primitives override it with a closed form."""
        from .layout import _evaluate_blocks

        return _evaluate_blocks(self, grid, qb, kb)

    def block_candidates(self, grid):
        """Sorted codes (grid.codes) of a superset of its non-empty blocks, in time
        proportional to their number; None when it may touch any block."""
        return None

    def block_estimate(self, grid) -> int:
        """About how many codes block_candidates returns (cheap; picks an intersection's
        sparsest part)."""
        return grid.num_blocks

    def block_counts(self, grid, qb, kb):
        """Exact pair counts of the blocks in closed form, or None when it has none."""
        return None

    def pairs(self, i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
        """Bool [m]: the element predicate at the m pairs (i[k], j[k]) (1-D int arrays of
        equal length) — O(m), for checking a diagonal, an off-diagonal or one column
        without evaluating whole rows. The default evaluates `predicate` on [m, 1]."""
        return np.array(self.predicate(i.reshape(-1, 1), j.reshape(-1, 1), n), dtype=bool).reshape(-1)

    def __str__(self):
        return self.name

    @classmethod
    def usage(cls) -> str:
        return " or ".join(f"{cls.name}({', '.join(p.name for p in sig)})" for sig in cls.signatures)


def _at_least(value: int, low: int, call: str, param: str, n: int, help: str | None = None):
    if value < low:
        raise ParamError(param, f"{call} needs {param} ≥ {low}, but {param} = {value} here (n = {n})", help)


def _clamp(value: int, n: int) -> int:
    """Clamp a distance parameter to [-n, n]. Every |i − j| is below n, so this never
    changes a predicate's meaning, and keeps i ± value within the index dtype
    (reference.index_dtype: int32 while 2n fits)."""
    return max(-n, min(n, value))


def _full(shape, value: bool) -> np.ndarray:
    return np.full(shape, value, dtype=bool)


@primitive
@dataclass(frozen=True)
class All(Primitive):
    name: ClassVar[str] = "all"
    meaning: ClassVar[str] = "always"

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, reflexive=True, symmetric=True)

    def predicate(self, i, j, n):
        return _full((i.shape[0], j.shape[1]), True)

    def row_structure(self, n):
        return R.Span(0, n)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"({k} >= 0)"  # true everywhere, with a tensor shape

    def block_states(self, grid, qb, kb):
        return np.full(qb.shape, 2, dtype=np.int8)

    def block_counts(self, grid, qb, kb):
        return grid.area(qb, kb)


@primitive
@dataclass(frozen=True)
class Nothing(Primitive):
    name: ClassVar[str] = "none"
    meaning: ClassVar[str] = "never"

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(0, tight=False, symmetric=True)

    def predicate(self, i, j, n):
        return _full((i.shape[0], j.shape[1]), False)

    def row_structure(self, n):
        return R.Span(0, 0)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"({k} < 0)"

    def block_states(self, grid, qb, kb):
        return np.zeros(qb.shape, dtype=np.int8)

    def block_candidates(self, grid):
        return np.zeros(0, dtype=np.int64)

    def block_estimate(self, grid):
        return 0

    def block_counts(self, grid, qb, kb):
        return np.zeros(qb.shape, dtype=np.int64)


class _BandPrimitive(Primitive):
    """The primitives that are a band of offsets, lo ≤ j − i ≤ hi (`_band`): a block holds
    every offset from c0 − r1 to c1 − r0, so its state and pair count have closed forms."""

    def _band(self, n: int) -> tuple[int, int]:
        raise NotImplementedError

    def block_states(self, grid, qb, kb):
        return grid.band_states(qb, kb, *self._band(grid.n))

    def block_candidates(self, grid):
        return grid.band_candidates(*self._band(grid.n))

    def block_estimate(self, grid):
        lo, hi = self._band(grid.n)
        return grid.num_q * min(grid.num_k, (hi - lo + grid.block_q) // grid.block_k + 2)

    def block_counts(self, grid, qb, kb):
        return grid.band_counts(qb, kb, *self._band(grid.n))


@primitive
@dataclass(frozen=True)
class Self(_BandPrimitive):
    name: ClassVar[str] = "self"
    meaning: ClassVar[str] = "j = i"

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(1, reflexive=True, symmetric=True)

    def predicate(self, i, j, n):
        return i == j

    def row_structure(self, n):
        return R.Band(0, 0)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"({q} == {k})"

    def _band(self, n):
        return 0, 0


@primitive
@dataclass(frozen=True)
class Causal(_BandPrimitive):
    name: ClassVar[str] = "causal"
    meaning: ClassVar[str] = "j ≤ i"

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, reflexive=True, causal_dense=True)

    def predicate(self, i, j, n):
        return j <= i

    def row_structure(self, n):
        return R.Band(n, 0)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"({k} <= {q})"

    def _band(self, n):
        return -n, 0


@primitive
@dataclass(frozen=True)
class Window(_BandPrimitive):
    """window(w) is window(w, w); window(l, r) may shift (l or r negative) but not be empty."""

    left: int
    right: int
    name: ClassVar[str] = "window"
    signatures: ClassVar = ((ParamSpec("w"),), (ParamSpec("left"), ParamSpec("right")))
    meaning: ClassVar[str] = "window(w): |i − j| ≤ w; window(l, r): i − l ≤ j ≤ i + r"

    @classmethod
    def row_bound(cls, args, n, ops):
        """The band i − l ≤ j ≤ i + r: at most l + r + 1 keys. Tight when l, r ≥ 0 (the
        rows of one half reach min(l, n/2) or min(r, n/2) keys), when both are
        constants, or when |l|, |r| = o(n) (the middle rows hold the whole band)."""
        if "w" in args:
            left = right = args["w"]
        else:
            left, right = args["left"], args["right"]
        symmetric = ops.same(left, right)
        nonneg = ops.nonneg(left) and ops.nonneg(right)
        tight = nonneg or (ops.const(left) and ops.const(right)) or (ops.small(left) and ops.small(right))
        return RowBound(left + right + 1, tight=tight, reflexive=nonneg, symmetric=symmetric,
                        causal_dense=symmetric or (ops.nonneg(left) and ops.const(right)))

    @classmethod
    def build(cls, args, n):
        if "w" in args:
            _at_least(args["w"], 0, "window(w)", "w", n)
            return cls(args["w"], args["w"])
        left, right = args["left"], args["right"]
        if left + right < 0:
            raise ParamError("right", f"window(left, right) is empty: left + right = {left + right} < 0 (n = {n})",
                             "a window holds i − left ≤ j ≤ i + right; make left + right ≥ 0")
        return cls(left, right)

    def predicate(self, i, j, n):
        return (j >= i - _clamp(self.left, n)) & (j <= i + _clamp(self.right, n))

    def row_structure(self, n):
        return R.Band(_clamp(self.left, n), _clamp(self.right, n))

    def __str__(self):
        if self.left == self.right:
            return f"window({self.left})"
        return f"window({self.left}, {self.right})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"(({k} >= {q} - {_clamp(self.left, n)}) & ({k} <= {q} + {_clamp(self.right, n)}))"

    def _band(self, n):
        return -_clamp(self.left, n), _clamp(self.right, n)


@primitive
@dataclass(frozen=True)
class Dilated(Primitive):
    w: int
    d: int
    name: ClassVar[str] = "dilated"
    signatures: ClassVar = ((ParamSpec("w"), ParamSpec("d")),)
    meaning: ClassVar[str] = "|i − j| ≤ w·d and (i − j) mod d = 0"

    @classmethod
    def row_bound(cls, args, n, ops):
        """At most 2w + 1 keys, and at most ⌈n/d⌉ (one residue class); a middle row
        holds min(w, (n−1)/(2d)) + 1 or more, so this is tight."""
        w, d = args["w"], args["d"]
        return RowBound(ops.min(2 * w + 1, ops.cdiv(n, d)), reflexive=True, symmetric=True)

    @classmethod
    def build(cls, args, n):
        _at_least(args["w"], 0, "dilated(w, d)", "w", n)
        _at_least(args["d"], 1, "dilated(w, d)", "d", n)
        return cls(args["w"], args["d"])

    def predicate(self, i, j, n):
        # (i − j) mod d = 0 exactly when i and j agree mod d; compared on the small
        # broadcast operands, which is much cheaper than reducing the n × n differences.
        reach, d = _clamp(self.w * self.d, n), _clamp(self.d, n)
        return ((i % d) == (j % d)) & (j >= i - reach) & (j <= i + reach)

    def row_structure(self, n):
        # window(w·d) ∩ stride(d); a d beyond n leaves only j = i, as does stride.
        reach = _clamp(self.w * self.d, n)
        return R.AllOf((R.Band(reach, reach), R.Residue(_clamp(self.d, n))))

    def __str__(self):
        return f"dilated({self.w}, {self.d})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        reach, d = _clamp(self.w * self.d, n), _clamp(self.d, n)
        # a zero remainder means the same under truncated (Triton) and floor (torch) division
        return f"(({k} >= {q} - {reach}) & ({k} <= {q} + {reach}) & ((({q} - {k}) % {d}) == 0))"

    def block_states(self, grid, qb, kb):
        # Offsets j − i in lo..hi, all present: some is a multiple of d within the reach
        # (non-empty); all are (full) only for d = 1 or a single offset.
        reach, d = _clamp(self.w * self.d, grid.n), _clamp(self.d, grid.n)
        lo, hi = grid.offsets(qb, kb)
        lo_in, hi_in = np.maximum(lo, -reach), np.minimum(hi, reach)
        touched = (lo_in <= hi_in) & (-(-lo_in // d) * d <= hi_in)
        full = (lo >= -reach) & (hi <= reach) & ((d == 1) | ((lo == hi) & (lo % d == 0)))
        return np.where(full, 2, np.where(touched, 1, 0)).astype(np.int8)

    def block_candidates(self, grid):
        reach, d = _clamp(self.w * self.d, grid.n), _clamp(self.d, grid.n)
        if d < grid.block_q + grid.block_k:
            return grid.band_candidates(-reach, reach)  # every offset-band block holds a multiple
        return _progression_candidates(grid, -(reach // d) * d, reach, d)

    def block_estimate(self, grid):
        reach = _clamp(self.w * self.d, grid.n)
        return grid.num_q * min(grid.num_k, (2 * reach + grid.block_q) // grid.block_k + 2)


@primitive
@dataclass(frozen=True)
class Stride(Primitive):
    s: int
    name: ClassVar[str] = "stride"
    signatures: ClassVar = ((ParamSpec("s"),),)
    meaning: ClassVar[str] = "(i − j) mod s = 0"

    @classmethod
    def row_bound(cls, args, n, ops):
        """One residue class mod s: ⌈n/s⌉ keys at most, ⌊n/s⌋ (and ≥ 1) at least."""
        return RowBound(ops.cdiv(n, args["s"]), reflexive=True, symmetric=True)

    @classmethod
    def build(cls, args, n):
        _at_least(args["s"], 1, "stride(s)", "s", n, help="a stride must be positive; wrap it as max(1, …) if it shrinks with n")
        return cls(args["s"])

    def predicate(self, i, j, n):
        s = _clamp(self.s, n)
        return (i % s) == (j % s)

    def row_structure(self, n):
        return R.Residue(_clamp(self.s, n))

    def __str__(self):
        return f"stride({self.s})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"((({q} - {k}) % {_clamp(self.s, n)}) == 0)"

    def block_states(self, grid, qb, kb):
        s = _clamp(self.s, grid.n)
        lo, hi = grid.offsets(qb, kb)
        touched = -(-lo // s) * s <= hi
        full = (s == 1) | ((lo == hi) & (lo % s == 0))
        return np.where(full, 2, np.where(touched, 1, 0)).astype(np.int8)

    def block_candidates(self, grid):
        s = _clamp(self.s, grid.n)
        if s < grid.block_q + grid.block_k - 1:
            return None  # every block holds a run of offsets longer than s
        reach = grid.n - 1
        return _progression_candidates(grid, -(reach // s) * s, reach, s)

    def block_estimate(self, grid):
        s = _clamp(self.s, grid.n)
        if s < grid.block_q + grid.block_k - 1:
            return grid.num_blocks
        return min(grid.num_blocks, grid.num_q * (2 * (grid.n // s) + 1) * (grid.block_q // grid.block_k + 2))


@primitive
@dataclass(frozen=True)
class Chunk(Primitive):
    b: int
    name: ClassVar[str] = "chunk"
    signatures: ClassVar = ((ParamSpec("b"),),)
    meaning: ClassVar[str] = "⌊i/b⌋ = ⌊j/b⌋"

    @classmethod
    def row_bound(cls, args, n, ops):
        """A row's chunk: min(b, n) keys at most; half the rows or more are in full chunks."""
        return RowBound(ops.min(args["b"], n), reflexive=True, symmetric=True)

    @classmethod
    def build(cls, args, n):
        _at_least(args["b"], 1, "chunk(b)", "b", n, help="a chunk size must be positive; wrap it as max(1, …) if it shrinks with n")
        return cls(args["b"])

    def predicate(self, i, j, n):
        b = _clamp(self.b, n)
        return (i // b) == (j // b)

    def row_structure(self, n):
        return R.Blocks(_clamp(self.b, n))

    def __str__(self):
        return f"chunk({self.b})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        b = _clamp(self.b, n)
        return f"(({q} // {b}) == ({k} // {b}))"

    def block_states(self, grid, qb, kb):
        b = _clamp(self.b, grid.n)
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        touched = (np.maximum(r0 // b, c0 // b) <= np.minimum(r1 // b, c1 // b))
        full = (r0 // b == r1 // b) & (r1 // b == c0 // b) & (c0 // b == c1 // b)
        return np.where(full, 2, np.where(touched, 1, 0)).astype(np.int8)

    def block_candidates(self, grid):
        b = _clamp(self.b, grid.n)
        qb = np.arange(grid.num_q, dtype=np.int64)
        r0, r1 = grid.rows(qb)
        return grid.key_block_range(qb, r0 // b * b, (r1 // b + 1) * b - 1)

    def block_estimate(self, grid):
        b = _clamp(self.b, grid.n)
        return grid.num_q * min(grid.num_k, (b + grid.block_q) // grid.block_k + 2)


@primitive
@dataclass(frozen=True)
class Summary(Primitive):
    b: int
    c: int
    name: ClassVar[str] = "summary"
    signatures: ClassVar = ((ParamSpec("b"), ParamSpec("c")),)
    meaning: ClassVar[str] = "j mod b ≥ b − c (the last c keys of every chunk of b)"

    @classmethod
    def row_bound(cls, args, n, ops):
        """The same keys in every row: c per chunk of b, at most c·⌈n/b⌉; at least
        c·⌊n/b⌋, which is tight when b = o(n)."""
        b, c = args["b"], args["c"]
        small = ops.small(b)
        return RowBound(ops.min(n, c * ops.cdiv(n, b)), tight=small, causal_dense=small)

    @classmethod
    def build(cls, args, n):
        b, c = args["b"], args["c"]
        _at_least(b, 1, "summary(b, c)", "b", n)
        _at_least(c, 1, "summary(b, c)", "c", n)
        if c > b:
            raise ParamError("c", f"summary(b, c) needs c ≤ b, but c = {c} > b = {b} here (n = {n})",
                             "c counts the summary keys at the end of each chunk of b keys")
        return cls(b, c)

    def predicate(self, i, j, n):
        j = j.astype(np.int64)  # b and c are not distances: keep them exact
        return np.broadcast_to(j % self.b >= self.b - self.c, (i.shape[0], j.shape[1]))

    def row_structure(self, n):
        return R.ColumnResidues(self.b, self.c)

    def __str__(self):
        return f"summary({self.b}, {self.c})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"(({k} % {self.b}) >= {self.b - self.c})"

    def _keys_below(self, x):
        """Keys j < x with j mod b ≥ b − c."""
        x = np.asarray(x, dtype=np.int64)
        return x // self.b * self.c + np.maximum(x % self.b - (self.b - self.c), 0)

    def block_counts(self, grid, qb, kb):
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        return (r1 - r0 + 1) * (self._keys_below(c1 + 1) - self._keys_below(c0))

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        kb = np.arange(grid.num_k, dtype=np.int64)
        c0, c1 = grid.cols(kb)
        kb = kb[self._keys_below(c1 + 1) > self._keys_below(c0)]
        return _cross(grid, np.arange(grid.num_q, dtype=np.int64), kb)


class _IndexPrimitive(Primitive):
    """The primitives that take an index list R: items and half-open ranges."""

    signatures: ClassVar = ((ParamSpec("R", kind="indices"),),)

    @classmethod
    def build(cls, args, n):
        return cls(IndexSet.of(args["R"], n))

    def __str__(self):
        # Every index was ≥ n (clipped away): `name()` would not parse, and the
        # index n is beyond every n, so `name(n)` is the same empty set again.
        return f"{self.name}({self.indices or 'n'})"


@primitive
@dataclass(frozen=True)
class Global(_IndexPrimitive):
    indices: IndexSet
    name: ClassVar[str] = "global"
    meaning: ClassVar[str] = "i ∈ R or j ∈ R"

    @classmethod
    def row_bound(cls, args, n, ops):
        """|R| keys in the rows outside R; the |R| rows in R hold all n."""
        size = ops.size(args["R"])
        return RowBound(size, size, symmetric=True)

    def predicate(self, i, j, n):
        return R.index_member(self.indices, i) | R.index_member(self.indices, j)

    def row_structure(self, n):
        return R.AnyOf((R.RowSet(self.indices), Cols(self.indices).row_structure(n)))

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"({backend.member(q, self.indices, n)} | {backend.member(k, self.indices, n)})"

    def block_counts(self, grid, qb, kb):
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        rows_in, cols_in = _count_in(self.indices, r0, r1), _count_in(self.indices, c0, c1)
        height, width = r1 - r0 + 1, c1 - c0 + 1
        return rows_in * width + (height - rows_in) * cols_in

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        return np.union1d(Rows(self.indices).block_candidates(grid), Cols(self.indices).block_candidates(grid))

    def block_estimate(self, grid):
        return Rows(self.indices).block_estimate(grid) + Cols(self.indices).block_estimate(grid)


@primitive
@dataclass(frozen=True)
class Rows(_IndexPrimitive):
    indices: IndexSet
    name: ClassVar[str] = "rows"
    meaning: ClassVar[str] = "i ∈ R"

    @classmethod
    def row_bound(cls, args, n, ops):
        """The |R| rows in R hold n keys, the others none."""
        return RowBound(0, ops.size(args["R"]))

    def predicate(self, i, j, n):
        return np.broadcast_to(R.index_member(self.indices, i), (i.shape[0], j.shape[1]))

    def row_structure(self, n):
        return R.RowSet(self.indices)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return backend.member(q, self.indices, n)

    def block_counts(self, grid, qb, kb):
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        return _count_in(self.indices, r0, r1) * (c1 - c0 + 1)

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        return _cross(grid, _touched_blocks(self.indices, grid.block_q), np.arange(grid.num_k, dtype=np.int64))

    def block_estimate(self, grid):
        return _touched_blocks(self.indices, grid.block_q).size * grid.num_k


@primitive
@dataclass(frozen=True)
class Cols(_IndexPrimitive):
    indices: IndexSet
    name: ClassVar[str] = "cols"
    meaning: ClassVar[str] = "j ∈ R"

    @classmethod
    def row_bound(cls, args, n, ops):
        """|R| keys in every row."""
        return RowBound(ops.size(args["R"]))

    def predicate(self, i, j, n):
        return np.broadcast_to(R.index_member(self.indices, j), (i.shape[0], j.shape[1]))

    def row_structure(self, n):
        spans = tuple(R.Span(lo, hi) for lo, hi in self.indices.intervals)
        if not spans:
            return R.Span(0, 0)
        return spans[0] if len(spans) == 1 else R.AnyOf(spans)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return backend.member(k, self.indices, n)

    def block_counts(self, grid, qb, kb):
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        return (r1 - r0 + 1) * _count_in(self.indices, c0, c1)

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        return _cross(grid, np.arange(grid.num_q, dtype=np.int64), _touched_blocks(self.indices, grid.block_k))

    def block_estimate(self, grid):
        return grid.num_q * _touched_blocks(self.indices, grid.block_k).size


@primitive
@dataclass(frozen=True)
class LogSparse(Primitive):
    name: ClassVar[str] = "logsparse"
    meaning: ClassVar[str] = "i = j, or |i − j| is a power of two"

    @classmethod
    def row_bound(cls, args, n, ops):
        """i and i ± 2^t for 2^t < n: at most 2·⌈log2 n⌉ + 1 keys; the middle rows
        hold 2·(log2 n − 2) or more."""
        return RowBound(2 * ops.clog2(n) + 1, reflexive=True, symmetric=True)

    def predicate(self, i, j, n):
        distance = np.abs(i - j)
        return (distance & (distance - 1)) == 0  # true for 0 and for the powers of two

    def row_structure(self, n):
        return R.Points(self)

    @staticmethod
    def _offsets(n: int) -> np.ndarray:
        powers = [1 << t for t in range(max(n - 1, 0).bit_length())]  # every 2^t ≤ n − 1
        return np.array([0] + powers + [-p for p in powers], dtype=np.int64)

    def row_point_count(self, n: int) -> int:
        return self._offsets(n).size

    def row_points(self, rows: np.ndarray, n: int) -> np.ndarray:
        """int64 [len(rows), k]: i and i ± 2^t (distinct), -1 where outside [0, n)."""
        keys = np.asarray(rows, dtype=np.int64)[:, None] + self._offsets(n)[None, :]
        return np.where((keys >= 0) & (keys < n), keys, -1)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        # d & (d − 1) = 0 for d = 0 and the powers of two; d is taken non-negative
        return (f"(((({q} - {k}) & ({q} - {k} - 1)) == 0) & ({k} <= {q}) | "
                f"((({k} - {q}) & ({k} - {q} - 1)) == 0) & ({q} <= {k}))")

    def block_states(self, grid, qb, kb):
        # The block holds the offsets lo..hi, each of them. Touched: 0 or some ±2^t is among
        # them; full: all are — only runs of at most five (−2..2 is one) can be.
        lo, hi = grid.offsets(qb, kb)
        touched = (lo <= 0) & (hi >= 0) | _holds_power_of_two(lo, hi) | _holds_power_of_two(-hi, -lo)
        full = np.zeros(qb.shape, dtype=bool)
        short = np.nonzero(hi - lo <= 4)[0]
        if short.size:
            offsets = lo[short, None] + np.arange(5)[None, :]
            distance = np.abs(offsets)
            good = ((distance & (distance - 1)) == 0) | (offsets > hi[short, None])
            full[short] = good.all(axis=1)
        return np.where(full, 2, np.where(touched, 1, 0)).astype(np.int8)

    def block_candidates(self, grid):
        qb = np.arange(grid.num_q, dtype=np.int64)
        r0, r1 = grid.rows(qb)
        offsets = self._offsets(grid.n)
        return grid.key_block_range(np.repeat(qb, offsets.size), (r0[:, None] + offsets).reshape(-1),
                                    (r1[:, None] + offsets).reshape(-1))

    def block_estimate(self, grid):
        return grid.num_q * self._offsets(grid.n).size * (grid.block_q // grid.block_k + 2)


@primitive
@dataclass(frozen=True)
class Random(Primitive):
    r: int
    seed: int
    name: ClassVar[str] = "random"
    signatures: ClassVar = ((ParamSpec("r"), ParamSpec("seed", default=0)),)
    meaning: ClassVar[str] = ("each query row holds exactly min(r, n) distinct keys, drawn by the "
                              "seeded generator documented in patterndsl/randomgen.py")

    @classmethod
    def row_bound(cls, args, n, ops):
        """Exactly min(r, n) keys in every row."""
        return RowBound(ops.min(args["r"], n))

    @classmethod
    def build(cls, args, n):
        _at_least(args["r"], 0, "random(r, seed)", "r", n)
        _at_least(args["seed"], 0, "random(r, seed)", "seed", n)
        return cls(args["r"], args["seed"])

    def predicate(self, i, j, n):
        rows = i[:, 0]
        out = np.zeros((rows.size, n), dtype=bool)  # the picks are keys 0..n-1, whatever j holds
        picks = randomgen.keys(self.seed, rows, n, self.r)
        out[np.arange(rows.size)[:, None], picks] = True
        return out if np.array_equal(j[0], np.arange(n)) else out[:, j[0]]

    def row_structure(self, n):
        return R.Points(self)

    def row_point_count(self, n: int) -> int:
        return min(self.r, n)

    def pairs(self, i, j, n):
        # `predicate` builds whole rows: test the row's key set instead, in slices.
        out = np.empty(i.shape[0], dtype=bool)
        step = max(1, (1 << 22) // max(1, min(self.r, n)))
        for start in range(0, i.shape[0], step):
            rows = np.asarray(i[start:start + step], dtype=np.int64)
            keys = randomgen.key_sets(self.seed, rows, n, self.r)
            out[start:start + step] = (keys == np.asarray(j[start:start + step], dtype=np.int64)[:, None]).any(axis=1)
        return out

    def row_points(self, rows: np.ndarray, n: int) -> np.ndarray:
        """int64 [len(rows), min(r, n)]: each row's keys (distinct), in no particular order."""
        return randomgen.key_sets(self.seed, rows, n, self.r)

    def __str__(self):
        return f"random({self.r}, seed={self.seed})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return backend.data(self, q, k, n)

    def _block_pairs(self, grid):
        """(codes, counts): the blocks holding its pairs and how many each (all rows drawn once)."""
        key = ("random blocks", self)
        if key not in grid.memo:
            codes, counts = [], []
            step = max(1, (1 << 22) // max(1, min(self.r, grid.n)))
            step = max(grid.block_q, step // grid.block_q * grid.block_q)
            for start in range(0, grid.n, step):
                rows = np.arange(start, min(grid.n, start + step), dtype=np.int64)
                keys = randomgen.key_sets(self.seed, rows, grid.n, self.r)
                block, count = unique_sorted(grid.codes(rows[:, None] // grid.block_q, keys // grid.block_k),
                                             return_counts=True)
                codes.append(block)
                counts.append(count)
            codes, counts = np.concatenate(codes), np.concatenate(counts)
            grid.memo[key] = (codes, counts)  # row chunks are whole query blocks: codes are unique
        return grid.memo[key]

    def block_counts(self, grid, qb, kb):
        codes, counts = self._block_pairs(grid)
        wanted = grid.codes(qb, kb)
        if codes.size == 0:
            return np.zeros(wanted.shape, dtype=np.int64)
        at = np.minimum(np.searchsorted(codes, wanted), codes.size - 1)
        return np.where(codes[at] == wanted, counts[at], 0)

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        return self._block_pairs(grid)[0]

    def block_estimate(self, grid):
        return min(grid.num_blocks, grid.n * min(self.r, grid.n) // max(1, min(grid.block_k, grid.n)) + grid.num_q)

    def table_bytes(self, grid) -> int:
        """About the peak bytes of its per-block bitmaps (codegen.BlockBitmaps), which generated
        code embeds: every key drawn, with its block and word (int64 each), the dense slot grid,
        and one bitmap of block_q × ⌈block_k / 32⌉ words per block it touches."""
        keys = grid.n * min(self.r, grid.n)
        words = grid.block_q * -(-grid.block_k // 32)
        return keys * 48 + grid.num_blocks * 5 + self.block_estimate(grid) * words * 12


def _cross(grid, qb: np.ndarray, kb: np.ndarray) -> np.ndarray:
    """Sorted codes of every block (q, k) with q in qb and k in kb (both sorted)."""
    return grid.codes(qb[:, None], kb[None, :]).reshape(-1)


def _count_in(indices: IndexSet, lo, hi) -> np.ndarray:
    """|indices ∩ [lo, hi]| per entry (hi inclusive)."""
    if not indices.intervals:
        return np.zeros(np.shape(lo), dtype=np.int64)
    starts = np.array([a for a, _ in indices.intervals], dtype=np.int64)
    ends = np.array([b for _, b in indices.intervals], dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(ends - starts)])

    def below(x):  # |indices ∩ [0, x)|
        k = np.searchsorted(starts, x, side="right")
        last = np.maximum(k - 1, 0)
        return before[last] + np.where(k > 0, np.clip(x - starts[last], 0, ends[last] - starts[last]), 0)

    return below(np.asarray(hi, dtype=np.int64) + 1) - below(np.asarray(lo, dtype=np.int64))


def _touched_blocks(indices: IndexSet, block: int) -> np.ndarray:
    """The blocks of this size that hold an index of the set, sorted."""
    if not indices.intervals:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([np.arange(lo // block, (hi - 1) // block + 1) for lo, hi in indices.intervals]))


def _holds_power_of_two(lo, hi) -> np.ndarray:
    """Whether lo..hi holds a positive power of two (per entry)."""
    top = np.maximum(hi, 1)
    largest = np.left_shift(1, np.frexp(top.astype(np.float64))[1].astype(np.int64) - 1)  # the largest 2^t ≤ top
    return (hi >= 1) & (largest >= lo)


def _progression_candidates(grid, first: int, last: int, step: int) -> np.ndarray:
    """Codes of the blocks that may hold an offset j − i in first, first + step, …, ≤ last."""
    qb = np.arange(grid.num_q, dtype=np.int64)
    r0, r1 = grid.rows(qb)
    offsets = np.arange(first, last + 1, step, dtype=np.int64)
    return grid.key_block_range(np.repeat(qb, offsets.size), (r0[:, None] + offsets).reshape(-1),
                                (r1[:, None] + offsets).reshape(-1))
