"""The primitives of the language, one class each.

Each class is an IR leaf (a frozen dataclass with its parameters evaluated for
a bound n) and carries everything about itself, so that adding a primitive is
adding one class (and its tests); docs/architecture.md lists the parts:

  * what it is: `name`, `signatures` (several alternatives allowed), `build`
    (checks the arguments for this n and makes the node), `meaning` (the rows of
    the README's primitive table), `__str__` (itself in .spat syntax);
  * its meaning: `predicate`, vectorized — the normative definition of the
    README's language reference, which the dense reference evaluator uses — and
    `reference_pair`, the same definition in plain Python, one pair at a time,
    for the tests;
  * what the compiler does with it: `simplify` (its rewrite rules at this n),
    `row_structure` (its keys per query row as a formula over the atoms of
    patterndsl/structure.py, for the exact counter), `row_bound` (its degree
    bound, for the growth analysis), the block methods (`block_states`,
    `block_candidates`, `block_estimate`, `block_counts`, for layouts) and
    `source` (its predicate as torch/Triton code);
  * how it is tested: `call_sources` (a hypothesis strategy of calls legal for
    every n, which patterndsl.strategies draws from) and `examples` (small masks
    drawn by hand, which tests/test_primitives.py checks).
The registry `PRIMITIVES` is all the rest of the package knows of them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import randomgen, segments
from .arrays import unique_sorted
from . import structure as R
from .ir import Complement, IndexSet, Pattern
from .source_expr import SourceExpr

PRIMITIVES: dict[str, type["Primitive"]] = {}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str = "int"  # "int", or "indices": a list of indices and ranges a..b
    default: int | None = None  # None: required
    structural: bool = True  # False: it changes which pairs, never how many (random's seed)


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
        of the off-diagonal ones);
      * lower_triangle: it holds every (i, j) with j ≤ i (so its intersection with a
        causal-dense pattern keeps ≥ c times that one's count);
      * columns: the same bound for its transpose (keys per column), when it is not
        symmetric (None: symmetric, or no better than n per column);
      * parts: bounds of patterns whose union holds it (global(R) = rows(R) | cols(R)),
        counted apart when it is intersected."""

    degree: object
    exceptional: object = 0
    tight: bool = True
    reflexive: bool = False
    symmetric: bool = False
    causal_dense: bool | None = None  # None: the same as symmetric
    lower_triangle: bool = False
    columns: "RowBound | None" = None
    parts: tuple = ()


def primitive(cls):
    PRIMITIVES[cls.name] = cls
    return cls


class Primitive(Pattern):
    name: ClassVar[str]
    signatures: ClassVar[tuple[tuple[ParamSpec, ...], ...]] = ((),)
    # The exact meaning, as the README's primitive table states it: one (call, meaning)
    # row per form (scripts/primitive_table.py prints the table).
    meaning: ClassVar[tuple[tuple[str, str], ...]]
    # Hand-drawn masks, {(source, n): one string of 0s and 1s per query row}, drawn from
    # the meaning alone (tests/test_primitives.py compares them with the compiled masks).
    examples: ClassVar[dict[tuple[str, int], tuple[str, ...]]]

    def reference_pair(self, i: int, j: int, n: int) -> bool:
        """Whether query i attends to key j: the meaning in plain Python, one pair at a
        time, written from the README's table rather than from `predicate` (for tests)."""
        raise NotImplementedError

    @classmethod
    def call_sources(cls, S):
        """A hypothesis strategy of .spat source text calling this primitive, with
        arguments legal for every n ≥ 1 and often larger than n. ``S`` is
        patterndsl.strategies (its integer and index-list strategies, and ``S.st``),
        passed in so that this module does not import hypothesis. The default serves
        primitives without parameters: `name` or `name()`."""
        if cls.signatures != ((),):
            raise NotImplementedError(f"{cls.name} takes parameters: it writes its own call_sources")
        return S.st.sampled_from((cls.name, f"{cls.name}()"))

    @classmethod
    def build(cls, args: dict, n: int) -> Pattern:
        return cls(**args)

    @classmethod
    def row_bound(cls, args: dict, n, ops) -> "RowBound":
        """Its per-row degree bound from its arguments (by parameter name, an index list
        R as `ops.size` takes it), for patterndsl/analysis/growth.py. ``n`` and the
        arguments are ints or symbolic quantities; ``ops`` supplies min, cdiv, clog2,
        size and the predicates nonneg, const, small (|x| = o(n)), linear (x ≥ c·n) and same."""
        raise NotImplementedError

    # ---- blocks (patterndsl/layout.py); ``grid`` is a layout.BlockGrid --------------

    def block_states(self, grid, qb: np.ndarray, kb: np.ndarray) -> np.ndarray:
        """int8 EMPTY / PARTIAL / FULL of the blocks (qb, kb), exactly. The default
        evaluates the blocks; primitives override it with a closed form."""
        return grid.evaluate_blocks(self, qb, kb)

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

    def simplify(self, n: int) -> Pattern:
        """Its own simplification rules (patterndsl/passes.py): a simpler node with the
        same meaning at this n, or itself."""
        return self

    # Whether (i, j) in it exactly when (j, i) is: then it is its own transpose.
    symmetric: ClassVar[bool] = False

    def transposed(self, n: int) -> Pattern:
        """Its transpose at n: itself when symmetric, else a primitive with the transposed
        meaning, else (a data-backed primitive) the `Transposed` wrapper below."""
        return self if self.symmetric else Transposed(self)


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
    symmetric: ClassVar[bool] = True
    meaning: ClassVar = (("all", "always"),)
    examples: ClassVar = {("all", 3): ("111", "111", "111")}

    def reference_pair(self, i, j, n):
        return True

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, reflexive=True, symmetric=True, lower_triangle=True)

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
    symmetric: ClassVar[bool] = True
    meaning: ClassVar = (("none", "never"),)
    examples: ClassVar = {("none", 3): ("000", "000", "000")}

    def reference_pair(self, i, j, n):
        return False

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

    def pairs(self, i, j, n):
        lo, hi = self._band(n)
        d = np.asarray(j) - np.asarray(i)  # (one difference, not the predicate's two shifted copies)
        return (d >= lo) & (d <= hi)

    def block_states(self, grid, qb, kb):
        return grid.band_states(qb, kb, *self._band(grid.n))

    def block_candidates(self, grid):
        return grid.band_candidates(*self._band(grid.n))

    def band(self, n):
        return self._band(n)

    def candidates_in_band(self, grid, lo, hi):
        own_lo, own_hi = self._band(grid.n)
        lo, hi = max(lo, own_lo), min(hi, own_hi)
        return grid.band_candidates(lo, hi) if lo <= hi else np.zeros(0, dtype=np.int64)

    def block_estimate(self, grid):
        lo, hi = self._band(grid.n)
        return grid.num_q * min(grid.num_k, (hi - lo + grid.block_q) // grid.block_k + 2)

    def block_counts(self, grid, qb, kb):
        return grid.band_counts(qb, kb, *self._band(grid.n))


@primitive
@dataclass(frozen=True)
class Self(_BandPrimitive):
    name: ClassVar[str] = "self"
    symmetric: ClassVar[bool] = True
    meaning: ClassVar = (("self", "j = i"),)
    examples: ClassVar = {("self", 4): ("1000", "0100", "0010", "0001")}

    def reference_pair(self, i, j, n):
        return j == i

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
    meaning: ClassVar = (("causal", "j ≤ i"),)
    examples: ClassVar = {("causal", 4): ("1000", "1100", "1110", "1111")}

    def reference_pair(self, i, j, n):
        return j <= i

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(n, reflexive=True, causal_dense=True, lower_triangle=True)

    def predicate(self, i, j, n):
        return j <= i

    def row_structure(self, n):
        return R.Band(n, 0)

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return f"({k} <= {q})"

    def _band(self, n):
        return -n, 0

    def transposed(self, n):
        return Window(0, n)  # j ≥ i


@primitive
@dataclass(frozen=True)
class Window(_BandPrimitive):
    """window(w) is window(w, w); window(l, r) may shift (l or r negative) but not be empty."""

    left: int
    right: int
    name: ClassVar[str] = "window"
    signatures: ClassVar = ((ParamSpec("w"),), (ParamSpec("left"), ParamSpec("right")))
    meaning: ClassVar = (("window(w)", "|i − j| ≤ w"), ("window(l, r)", "i − l ≤ j ≤ i + r"))
    examples: ClassVar = {
        ("window(1)", 6): ("110000",
                           "111000",
                           "011100",
                           "001110",
                           "000111",
                           "000011"),
        ("window(0)", 3): ("100", "010", "001"),
        ("window(2, 0)", 6): ("100000",
                              "110000",
                              "111000",
                              "011100",
                              "001110",
                              "000111"),
        # negative left: i + 1 ≤ j ≤ i + 2 (strictly ahead)
        ("window(-1, 2)", 6): ("011000",
                               "001100",
                               "000110",
                               "000011",
                               "000001",
                               "000000"),
        # negative right: i - 3 ≤ j ≤ i - 2 (strictly behind)
        ("window(3, -2)", 6): ("000000",
                               "000000",
                               "100000",
                               "110000",
                               "011000",
                               "001100"),
        # l + r = 0 with l < 0: j = i + 2 only
        ("window(-2, 2)", 5): ("00100",
                               "00010",
                               "00001",
                               "00000",
                               "00000"),
        ("window(100)", 3): ("111", "111", "111"),
        ("window(-100, 200)", 3): ("000", "000", "000"),
    }

    def reference_pair(self, i, j, n):
        return i - self.left <= j <= i + self.right

    @classmethod
    def call_sources(cls, S):
        st = S.st

        @st.composite
        def arguments(draw) -> str:
            """`w` or `l, r` with l + r ≥ 0 for every n (one of l, r may be negative)."""
            form = draw(st.integers(0, 3))
            if form == 0:
                return draw(S.nonnegative_ints())
            if form == 1:  # literal, possibly one side negative
                left = draw(st.integers(-120, 120))
                right = draw(st.integers(max(-left, -120), 120))
                if draw(st.booleans()):
                    left, right = right, left
                return f"{left}, {right}"
            if form == 2:  # both sides expressions ≥ 0
                return f"{draw(S.nonnegative_ints())}, {draw(S.nonnegative_ints())}"
            # one side the negation of the other, plus a slack k ≥ 0: l + r = k
            amount = draw(S.nonnegative_ints())
            slack = draw(st.integers(0, 3))
            pair = [f"-({amount})", f"{amount} + {slack}" if slack else amount]
            if draw(st.booleans()):
                pair.reverse()
            return ", ".join(pair)

        return arguments().map(lambda a: f"window({a})")

    @classmethod
    def row_bound(cls, args, n, ops):
        """The band i − l ≤ j ≤ i + r: at most l + r + 1 keys. Tight when l, r ≥ 0 (the
        rows of one half reach min(l, n/2) or min(r, n/2) keys), or when the rows
        max(0, l) ≤ i < min(n, n − r), which hold the whole band, are ≥ c·n:
        n − l, n − r and n − l − r all ≥ c·n."""
        if "w" in args:
            left = right = args["w"]
        else:
            left, right = args["left"], args["right"]
        symmetric = ops.same(left, right)
        nonneg = ops.nonneg(left) and ops.nonneg(right)
        tight = nonneg or all(ops.linear(x) for x in (n - left, n - right, n - left - right))
        return RowBound(left + right + 1, tight=tight, reflexive=nonneg, symmetric=symmetric,
                        causal_dense=symmetric or (ops.nonneg(left) and ops.const(right)),
                        columns=RowBound(left + right + 1))  # (its transpose is window(r, l))

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

    def transposed(self, n):
        return Window(self.right, self.left)

    def simplify(self, n):
        far = n - 1  # no |i − j| exceeds this
        if self.left >= far and self.right >= far:
            return All()
        if self.left == 0 and self.right == 0:
            return Self()
        if self.left >= far and self.right == 0:
            return Causal()
        if self.left < -far or self.right < -far:
            return Nothing()  # the band lies wholly outside the matrix
        return self


@primitive
@dataclass(frozen=True)
class Dilated(Primitive):
    w: int
    d: int
    name: ClassVar[str] = "dilated"
    symmetric: ClassVar[bool] = True
    signatures: ClassVar = ((ParamSpec("w"), ParamSpec("d")),)
    meaning: ClassVar = (("dilated(w, d)", "|i − j| ≤ w·d and (i − j) mod d = 0"),)
    examples: ClassVar = {
        # |i - j| ≤ 2 and i - j even: j ∈ {i-2, i, i+2}
        ("dilated(1, 2)", 6): ("101000",
                               "010100",
                               "101010",
                               "010101",
                               "001010",
                               "000101"),
        # j ∈ {i-3, i, i+3}
        ("dilated(1, 3)", 8): ("10010000",
                               "01001000",
                               "00100100",
                               "10010010",
                               "01001001",
                               "00100100",
                               "00010010",
                               "00001001"),
        ("dilated(0, 5)", 3): ("100", "010", "001"),
        ("dilated(2, 10)", 4): ("1000", "0100", "0010", "0001"),
    }

    def reference_pair(self, i, j, n):
        return abs(i - j) <= self.w * self.d and (i - j) % self.d == 0

    @classmethod
    def call_sources(cls, S):
        return S.st.tuples(S.nonnegative_ints(), S.positive_ints()).map(lambda a: f"dilated({a[0]}, {a[1]})")

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

    def block_counts(self, grid, qb, kb):
        """Pairs in each block, in closed form: offset t = d·s lies on min(H, W, A + t, B − t) + 1
        cells of a block (H = r1 − r0, W = c1 − c0, A = r1 − c0, B = c1 − r0) for −A ≤ t ≤ B, so
        the sum over the multiples of d in the band is a rising run, a flat one and a falling one."""
        reach, d = _clamp(self.w * self.d, grid.n), _clamp(self.d, grid.n)
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        rise, fall, flat = r1 - c0, c1 - r0, np.minimum(r1 - r0, c1 - c0)
        s_lo, s_hi = -(np.minimum(rise, reach) // d), np.minimum(fall, reach) // d
        rising_end = -((rise - flat) // d) - 1  # the last s with A + d·s < min(H, W)
        falling_start = (fall - flat) // d + 1  # the first s with B − d·s < min(H, W)

        def run(a, b, base, slope):  # Σ_{s=a}^{b} (base + slope·s); 0 when b < a
            count = np.maximum(b - a + 1, 0)
            return count * base + slope * ((a + b) * count // 2)

        return (run(s_lo, np.minimum(s_hi, rising_end), rise + 1, d)
                + run(np.maximum(s_lo, rising_end + 1), np.minimum(s_hi, falling_start - 1), flat + 1, 0)
                + run(np.maximum(s_lo, falling_start), s_hi, fall + 1, -d))

    def block_candidates(self, grid):
        reach, d = _clamp(self.w * self.d, grid.n), _clamp(self.d, grid.n)
        if d < grid.block_q + grid.block_k:
            return grid.band_candidates(-reach, reach)  # every offset-band block holds a multiple
        return _progression_candidates(grid, -(reach // d) * d, reach, d)

    def block_estimate(self, grid):
        reach = _clamp(self.w * self.d, grid.n)
        return grid.num_q * min(grid.num_k, (2 * reach + grid.block_q) // grid.block_k + 2)

    def simplify(self, n):
        if self.w == 0 or self.d > n - 1:
            return Self()
        if self.d == 1:
            return Window(self.w, self.w).simplify(n)
        return self


def _offset_calls(S, name: str):
    """Calls `name(x)`, `name(x, offset=o)` and `name(x, o)`: x ≥ 1 for every n, o any integer."""
    st = S.st
    offsets = st.one_of(st.integers(-20, 20).map(str), S.nonnegative_ints(), S.nonnegative_ints().map(lambda x: f"-({x})"))

    @st.composite
    def calls(draw) -> str:
        size = draw(S.positive_ints())
        form = draw(st.integers(0, 2))
        if form == 0:
            return f"{name}({size})"
        offset = draw(offsets)
        return f"{name}({size}, offset={offset})" if form == 1 else f"{name}({size}, {offset})"

    return calls()


def _stride_params(s: int, offset: int, n: int) -> tuple[int, int]:
    """(m, o) with (i − j − o) mod m = 0 ⇔ (i − j − offset) mod s = 0 for all i, j < n, and
    m ≤ 2n, |o| ≤ n: so i − j − o stays within ±2n, in the index dtype (reference.index_dtype).
    ``offset`` is already reduced mod s."""
    if offset == 0:
        return _clamp(s, n), 0
    if s < 2 * n:
        return s, offset if offset <= s // 2 else offset - s
    # Offsets j − i lie in −(n−1)..n−1, fewer than s: at most one of them is ≡ −offset.
    r = (-offset) % s
    hit = r if r <= n - 1 else (r - s if r - s >= -(n - 1) else None)
    if hit is None:
        return 2 * n, n  # j − i ≡ n (mod 2n): ±n, no pair
    return 2 * n, -hit


@primitive
@dataclass(frozen=True)
class Stride(Primitive):
    s: int
    offset: int = 0  # reduced mod s
    name: ClassVar[str] = "stride"
    signatures: ClassVar = ((ParamSpec("s"), ParamSpec("offset", default=0)),)
    meaning: ClassVar = (("stride(s)", "(i − j) mod s = 0"),
                         ("stride(s, offset=o)", "(i − j − o) mod s = 0 (o any integer; `offset` defaults to 0)"))
    examples: ClassVar = {
        ("stride(3)", 6): ("100100",
                           "010010",
                           "001001",
                           "100100",
                           "010010",
                           "001001"),
        ("stride(1)", 2): ("11", "11"),
        ("stride(7)", 3): ("100", "010", "001"),
        # i − j ≡ 1 (mod 3): the diagonal one below, and every third one after it
        ("stride(3, offset=1)", 6): ("001001",
                                     "100100",
                                     "010010",
                                     "001001",
                                     "100100",
                                     "010010"),
        # i − j ≡ −2 ≡ 3 (mod 5): j = i + 2 or j = i − 3
        ("stride(5, offset=-2)", 6): ("001000",
                                      "000100",
                                      "000010",
                                      "100001",
                                      "010000",
                                      "001000"),
        # a stride longer than the sequence: only i − j = 99 − 100 = −1
        ("stride(100, offset=99)", 4): ("0100",
                                        "0010",
                                        "0001",
                                        "0000"),
        ("stride(100, offset=50)", 4): ("0000", "0000", "0000", "0000"),
    }

    def reference_pair(self, i, j, n):
        return (i - j - self.offset) % self.s == 0

    @classmethod
    def call_sources(cls, S):
        return _offset_calls(S, cls.name)

    @classmethod
    def row_bound(cls, args, n, ops):
        """One residue class mod s: ⌈n/s⌉ keys at most, ⌊n/s⌋ (and ≥ 1 without an offset) at least."""
        plain = ops.same(args["offset"], 0)
        return RowBound(ops.cdiv(n, args["s"]), reflexive=plain, symmetric=plain)

    @classmethod
    def build(cls, args, n):
        _at_least(args["s"], 1, "stride(s)", "s", n, help="a stride must be positive; wrap it as max(1, …) if it shrinks with n")
        return cls(args["s"], args["offset"] % args["s"])

    def predicate(self, i, j, n):
        s, o = _stride_params(self.s, self.offset, n)
        if o == 0:
            return (i % s) == (j % s)
        return ((i - j - o) % s) == 0

    def row_structure(self, n):
        s, o = _stride_params(self.s, self.offset, n)
        return R.Residue(s, o)

    def __str__(self):
        return f"stride({self.s})" if self.offset == 0 else f"stride({self.s}, offset={self.offset})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py); `== 0` reads
        the same under floored (torch) and truncated (Triton) remainders."""
        s, o = _stride_params(self.s, self.offset, n)
        if o == 0:
            return f"((({q} - {k}) % {s}) == 0)"
        return f"((({q} - {k} - ({o})) % {s}) == 0)"

    def block_states(self, grid, qb, kb):
        s, o = _stride_params(self.s, self.offset, grid.n)
        t = (-o) % s  # the offsets j − i ≡ t (mod s)
        lo, hi = grid.offsets(qb, kb)
        touched = lo + (t - lo) % s <= hi
        full = (s == 1) | ((lo == hi) & ((lo - t) % s == 0))
        return np.where(full, 2, np.where(touched, 1, 0)).astype(np.int8)

    def block_candidates(self, grid):
        s, o = _stride_params(self.s, self.offset, grid.n)
        if s < grid.block_q + grid.block_k - 1:
            return None  # every block holds a run of offsets longer than s
        reach = grid.n - 1
        first = -reach + (-o + reach) % s
        return _progression_candidates(grid, first, reach, s)

    def block_estimate(self, grid):
        s, _ = _stride_params(self.s, self.offset, grid.n)
        if s < grid.block_q + grid.block_k - 1:
            return grid.num_blocks
        return min(grid.num_blocks, grid.num_q * (2 * (grid.n // s) + 1) * (grid.block_q // grid.block_k + 2))

    def simplify(self, n):
        if self.s == 1:
            return All()
        if self.s > n - 1 and self.offset == 0:
            return Self()
        return self

    def transposed(self, n):
        return Stride(self.s, -self.offset % self.s)  # (j − i − o) ≡ 0 ⇔ (i − j + o) ≡ 0


def _chunk_params(b: int, offset: int, n: int) -> tuple[int, int]:
    """(m, o) with 0 ≤ o < m ≤ n and ⌊(i + o)/m⌋ = ⌊(j + o)/m⌋ ⇔ ⌊(i + offset)/b⌋ = ⌊(j + offset)/b⌋
    for all i, j < n (``offset`` already reduced mod b), so that i + o stays below 2n."""
    if b <= n:
        return b, offset
    boundary = b - offset  # the only chunk boundary that can fall inside 0..n−1
    return (n, 0) if boundary >= n else (n, n - boundary)


@primitive
@dataclass(frozen=True)
class Chunk(Primitive):
    b: int
    offset: int = 0  # reduced mod b
    name: ClassVar[str] = "chunk"
    symmetric: ClassVar[bool] = True
    signatures: ClassVar = ((ParamSpec("b"), ParamSpec("offset", default=0)),)
    meaning: ClassVar = (("chunk(b)", "⌊i/b⌋ = ⌊j/b⌋"),
                         ("chunk(b, offset=o)", "⌊(i + o)/b⌋ = ⌊(j + o)/b⌋ (o any integer; `offset` defaults to 0)"))
    examples: ClassVar = {
        # ragged: chunks {0, 1, 2, 3} and {4, 5}
        ("chunk(4)", 6): ("111100",
                          "111100",
                          "111100",
                          "111100",
                          "000011",
                          "000011"),
        ("chunk(9)", 3): ("111", "111", "111"),
        # chunks {0}, {1, 2, 3}, {4, 5}: the boundaries fall where i + 2 is a multiple of 3
        ("chunk(3, offset=2)", 6): ("100000",
                                    "011100",
                                    "011100",
                                    "011100",
                                    "000011",
                                    "000011"),
        # offset −1 ≡ 3 (mod 4): chunks {0}, {1..4}, {5}
        ("chunk(4, offset=-1)", 6): ("100000",
                                     "011110",
                                     "011110",
                                     "011110",
                                     "011110",
                                     "000001"),
        # a chunk longer than the sequence, cut once: {0, 1}, {2, 3}
        ("chunk(10, offset=8)", 4): ("1100",
                                     "1100",
                                     "0011",
                                     "0011"),
    }

    def reference_pair(self, i, j, n):
        return (i + self.offset) // self.b == (j + self.offset) // self.b

    @classmethod
    def call_sources(cls, S):
        return _offset_calls(S, cls.name)

    @classmethod
    def row_bound(cls, args, n, ops):
        """A row's chunk: min(b, n) keys at most; half the rows or more are in full chunks."""
        return RowBound(ops.min(args["b"], n), reflexive=True, symmetric=True)

    @classmethod
    def build(cls, args, n):
        _at_least(args["b"], 1, "chunk(b)", "b", n, help="a chunk size must be positive; wrap it as max(1, …) if it shrinks with n")
        return cls(args["b"], args["offset"] % args["b"])

    def predicate(self, i, j, n):
        b, o = _chunk_params(self.b, self.offset, n)
        if o == 0:
            return (i // b) == (j // b)
        return ((i + o) // b) == ((j + o) // b)

    def row_structure(self, n):
        return R.Blocks(*_chunk_params(self.b, self.offset, n))

    def __str__(self):
        return f"chunk({self.b})" if self.offset == 0 else f"chunk({self.b}, offset={self.offset})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        b, o = _chunk_params(self.b, self.offset, n)
        if o == 0:
            return f"(({q} // {b}) == ({k} // {b}))"
        return f"((({q} + {o}) // {b}) == (({k} + {o}) // {b}))"

    def block_states(self, grid, qb, kb):
        b, o = _chunk_params(self.b, self.offset, grid.n)
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        r0, r1, c0, c1 = r0 + o, r1 + o, c0 + o, c1 + o
        touched = (np.maximum(r0 // b, c0 // b) <= np.minimum(r1 // b, c1 // b))
        full = (r0 // b == r1 // b) & (r1 // b == c0 // b) & (c0 // b == c1 // b)
        return np.where(full, 2, np.where(touched, 1, 0)).astype(np.int8)

    def block_candidates(self, grid):
        b, o = _chunk_params(self.b, self.offset, grid.n)
        qb = np.arange(grid.num_q, dtype=np.int64)
        r0, r1 = grid.rows(qb)
        return grid.key_block_range(qb, (r0 + o) // b * b - o, ((r1 + o) // b + 1) * b - 1 - o)

    def block_estimate(self, grid):
        b, _ = _chunk_params(self.b, self.offset, grid.n)
        return grid.num_q * min(grid.num_k, (b + grid.block_q) // grid.block_k + 2)

    def simplify(self, n):
        b, o = _chunk_params(self.b, self.offset, n)
        if b >= n and o == 0:
            return All()
        if self.b == 1:
            return Self()
        return self


@primitive
@dataclass(frozen=True)
class Intervals(Primitive):
    """Cross-attention by intervals (README, "Cross-attention"): the t-th run of q queries
    attends to the t-th run of k keys — Flamingo's text chunk t attending to image t."""

    q: int
    k: int
    name: ClassVar[str] = "intervals"
    signatures: ClassVar = ((ParamSpec("q"), ParamSpec("k")),)
    meaning: ClassVar = (("intervals(q, k)", "⌊i/q⌋ = ⌊j/k⌋ (queries t·q … t·q + q − 1 attend to keys "
                                             "t·k … t·k + k − 1; intervals(b, b) is chunk(b))"),)
    examples: ClassVar = {
        # queries {0, 1} → keys {0, 1, 2}; {2, 3} → {3, 4, 5}; {4, 5} → keys 6.. (none left)
        ("intervals(2, 3)", 6): ("111000",
                                 "111000",
                                 "000111",
                                 "000111",
                                 "000000",
                                 "000000"),
        ("intervals(3, 2)", 6): ("110000",
                                 "110000",
                                 "110000",
                                 "001100",
                                 "001100",
                                 "001100"),
        ("intervals(4, 4)", 5): ("11110",
                                 "11110",
                                 "11110",
                                 "11110",
                                 "00001"),
    }

    def reference_pair(self, i, j, n):
        return i // self.q == j // self.k

    @classmethod
    def call_sources(cls, S):
        return S.st.builds(lambda q, k: f"intervals({q}, {k})", S.positive_ints(), S.positive_ints())

    @classmethod
    def row_bound(cls, args, n, ops):
        """A row's keys are one run of k keys (none once t·k ≥ n)."""
        return RowBound(ops.min(args["k"], n), tight=False)

    @classmethod
    def build(cls, args, n):
        _at_least(args["q"], 1, "intervals(q, k)", "q", n, help="a run of queries must be positive")
        _at_least(args["k"], 1, "intervals(q, k)", "k", n, help="a run of keys must be positive")
        return cls(args["q"], args["k"])

    def _sizes(self, n: int) -> tuple[int, int]:
        # a run longer than n is as long as n + 1 inside [0, n): it stays within the index dtype
        return min(self.q, n + 1), min(self.k, n + 1)

    def predicate(self, i, j, n):
        q, k = self._sizes(n)
        return (i // q) == (j // k)

    def row_structure(self, n):
        return R.Paired(*self._sizes(n))

    def __str__(self):
        return f"intervals({self.q}, {self.k})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        run_q, run_k = self._sizes(n)
        return f"(({q} // {run_q}) == ({k} // {run_k}))"

    def block_states(self, grid, qb, kb):
        run_q, run_k = self._sizes(grid.n)
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        a0, a1, b0, b1 = r0 // run_q, r1 // run_q, c0 // run_k, c1 // run_k
        touched = np.maximum(a0, b0) <= np.minimum(a1, b1)
        full = (a0 == a1) & (a1 == b0) & (b0 == b1)
        return np.where(full, 2, np.where(touched, 1, 0)).astype(np.int8)

    def block_candidates(self, grid):
        run_q, run_k = self._sizes(grid.n)
        qb = np.arange(grid.num_q, dtype=np.int64)
        r0, r1 = grid.rows(qb)
        return grid.key_block_range(qb, r0 // run_q * run_k, (r1 // run_q + 1) * run_k - 1)

    def block_estimate(self, grid):
        run_q, run_k = self._sizes(grid.n)
        return grid.num_q * min(grid.num_k, (grid.block_q // run_q + 2) * run_k // grid.block_k + 2)

    def transposed(self, n):
        return Intervals(self.k, self.q)

    def simplify(self, n):
        run_q, run_k = self._sizes(n)
        if run_q == run_k:
            return Chunk(run_q)
        return self


@primitive
@dataclass(frozen=True)
class Summary(Primitive):
    b: int
    c: int
    offset: int = 0  # reduced mod b
    name: ClassVar[str] = "summary"
    estimate_walks_blocks: ClassVar[bool] = True  # the key blocks holding a summary key
    signatures: ClassVar = ((ParamSpec("b"), ParamSpec("c"), ParamSpec("offset", default=0)),)
    meaning: ClassVar = (("summary(b, c)", "j mod b ≥ b − c (the last c keys of every chunk of b)"),
                         ("summary(b, c, offset=o)", "(j + o) mod b ≥ b − c (o any integer; `offset` defaults to 0)"))
    examples: ClassVar = {
        # j mod 3 ≥ 2: keys 2 and 5
        ("summary(3, 1)", 8): ("00100100",) * 8,
        # j mod 4 ≥ 2: keys 2 and 3 (6 and 7 lie beyond n)
        ("summary(4, 2)", 6): ("001100",) * 6,
        # j mod 4 ≥ 1: keys 1, 2, 3 and 5
        ("summary(4, 3)", 6): ("011101",) * 6,
        ("summary(10, 1)", 4): ("0000",) * 4,  # the last key of the first chunk is 9 ≥ n
        ("summary(5, 5)", 3): ("111", "111", "111"),
        # (j + 2) mod 4 ≥ 3: keys 1 and 5
        ("summary(4, 1, offset=2)", 6): ("010001",) * 6,
        # (j − 1) mod 3 ≥ 1, offset −1 ≡ 2: keys 0, 2, 3, 5
        ("summary(3, 2, offset=-1)", 6): ("101101",) * 6,
    }

    def reference_pair(self, i, j, n):
        return (j + self.offset) % self.b >= self.b - self.c

    @classmethod
    def call_sources(cls, S):
        st = S.st

        @st.composite
        def arguments(draw) -> str:
            """`b, c` with 1 ≤ c ≤ b for every n."""
            if draw(st.booleans()):
                b = draw(st.integers(1, 100))
                if draw(st.booleans()):
                    return f"{b}, {draw(st.integers(1, b))}, offset={draw(st.integers(-150, 150))}"
                return f"{b}, {draw(st.integers(1, b))}"
            return draw(st.sampled_from(("n, 1", "n, n", "n + 3, 3", "max(2, n), 2", "2 * n, n", "isqrt(n), 1",
                                         "1000000, 999999")))

        return arguments().map(lambda a: f"summary({a})")

    @classmethod
    def row_bound(cls, args, n, ops):
        """The same keys in every row: c per chunk of b, at most c·⌈n/b⌉; at least
        c·⌊n/b⌋, which is tight when b ≤ n (then ⌊n/b⌋ ≥ 1 and ≥ n/(2b))."""
        b, c = args["b"], args["c"]
        small = ops.small(b)
        keys = ops.min(n, c * ops.cdiv(n, b))
        return RowBound(keys, tight=small or ops.nonneg(n - b), causal_dense=small, columns=RowBound(0, keys))

    @classmethod
    def build(cls, args, n):
        b, c = args["b"], args["c"]
        _at_least(b, 1, "summary(b, c)", "b", n)
        _at_least(c, 1, "summary(b, c)", "c", n)
        if c > b:
            raise ParamError("c", f"summary(b, c) needs c ≤ b, but c = {c} > b = {b} here (n = {n})",
                             "c counts the summary keys at the end of each chunk of b keys")
        return cls(b, c, args["offset"] % b)

    def predicate(self, i, j, n):
        j = j.astype(np.int64)  # b and c are not distances: keep them exact
        return np.broadcast_to((j + self.offset) % self.b >= self.b - self.c, (i.shape[0], j.shape[1]))

    def pairs(self, i, j, n):
        j = np.asarray(j, dtype=np.int64) + self.offset
        # (a power-of-two b by a mask: numpy's % is several times a multiply here)
        held = j & (self.b - 1) if self.b & (self.b - 1) == 0 else j % self.b
        return held >= self.b - self.c

    def row_structure(self, n):
        return R.ColumnResidues(self.b, self.c, self.offset)

    def __str__(self):
        if self.offset == 0:
            return f"summary({self.b}, {self.c})"
        return f"summary({self.b}, {self.c}, offset={self.offset})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        if self.offset == 0:
            return f"(({k} % {self.b}) >= {self.b - self.c})"
        return f"((({k} + {self.offset}) % {self.b}) >= {self.b - self.c})"

    def _keys_below(self, x):
        """Keys j < x with (j + offset) mod b ≥ b − c."""
        def shifted(x):  # the same count for offset 0, over 0..x−1
            return x // self.b * self.c + np.maximum(x % self.b - (self.b - self.c), 0)

        x = np.asarray(x, dtype=np.int64)
        return shifted(x + self.offset) - shifted(np.int64(self.offset))

    def block_counts(self, grid, qb, kb):
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        return (r1 - r0 + 1) * (self._keys_below(c1 + 1) - self._keys_below(c0))

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def _key_blocks(self, grid) -> np.ndarray:
        """The key blocks holding a summary key (kept in grid.memo: the estimate and the
        candidates of one layout both ask; read-only)."""
        key = ("summary key blocks", self.b, self.c, self.offset)
        if key not in grid.memo:
            kb = np.arange(grid.num_k, dtype=np.int64)
            c0, c1 = grid.cols(kb)
            kept = kb[self._keys_below(c1 + 1) > self._keys_below(c0)]
            kept.flags.writeable = False
            grid.memo[key] = kept
        return grid.memo[key]

    def block_candidates(self, grid):
        return _cross(grid, np.arange(grid.num_q, dtype=np.int64), self._key_blocks(grid))

    def block_estimate(self, grid):
        """Exact: every query block meets every key block that holds a summary key
        (without it, `blocks(64) { summary(8, 2) }` at 2^20 was taken for num_q · num_k)."""
        return grid.num_q * self._key_blocks(grid).size

    def candidates_in_band(self, grid, lo, hi):
        return grid.columns_in_band(self._key_blocks(grid), lo, hi)

    def transposed(self, n):
        return SummaryRows(self)

    def simplify(self, n):
        return All() if self.b == self.c else self


@dataclass(frozen=True)
class SummaryRows(Primitive):
    """`transpose(summary(b, c, offset=o))`: the rows i with (i + o) mod b ≥ b − c attend to
    every key (summary's row side). One node of constant size at every n, where rows(R) held
    ⌈n/b⌉ intervals (2^23 of them for summary(8, 2) at n = 2^26, which every command then
    walked). Its methods are Summary's with the rows and the columns swapped."""

    operand: Summary
    name: ClassVar[str] = "transpose"
    estimate_walks_blocks: ClassVar[bool] = True  # the query blocks holding a summary row

    def __str__(self):
        return f"transpose({self.operand})"

    def reference_pair(self, i, j, n):
        return self.operand.reference_pair(j, i, n)

    def transposed(self, n):
        return self.operand

    def simplify(self, n):
        inner = self.operand.simplify(n)
        return self if inner == self.operand else inner.transposed(n)

    def held_rows(self, i) -> np.ndarray:
        """Bool, per query row i: whether it holds every key ((i + o) mod b ≥ b − c)."""
        b, c, o = self.operand.b, self.operand.c, self.operand.offset
        return (np.asarray(i, dtype=np.int64) + o) % b >= b - c  # b and c are not distances: exact

    def predicate(self, i, j, n):
        return np.broadcast_to(self.held_rows(i), (i.shape[0], j.shape[1]))

    def pairs(self, i, j, n):
        return self.held_rows(i).reshape(-1)

    def row_structure(self, n):
        return R.RowResidues(self.operand.b, self.operand.c, self.operand.offset)

    def source(self, q: str, k: str, n: int, backend) -> str:
        return self.operand.source(k, q, n, backend)  # summary's predicate, read at the query

    def index_sets(self):
        """Its first rows (a few chunks' worth), for the analyses that probe singled-out rows."""
        b, c, o = self.operand.b, self.operand.c, self.operand.offset
        first = (b - c - o) % b
        return (IndexSet.of([(lo, lo + c) for lo in range(first - b, first + 3 * b, b)], first + 3 * b),)

    def _query_blocks(self, grid) -> np.ndarray:
        qb = np.arange(grid.num_q, dtype=np.int64)
        r0, r1 = grid.rows(qb)
        return qb[self.operand._keys_below(r1 + 1) > self.operand._keys_below(r0)]

    def block_counts(self, grid, qb, kb):
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        return (self.operand._keys_below(r1 + 1) - self.operand._keys_below(r0)) * (c1 - c0 + 1)

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        return _cross(grid, self._query_blocks(grid), np.arange(grid.num_k, dtype=np.int64))

    def block_estimate(self, grid):
        return self._query_blocks(grid).size * grid.num_k


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

    @classmethod
    def call_sources(cls, S):
        name = cls.name
        return S.index_lists().map(lambda r: f"{name}({r})")

    def index_sets(self):
        return (self.indices,)

    def simplify(self, n):
        if len(self.indices) == 0:
            return Nothing()
        if self.indices == IndexSet(((0, n),)):
            return All()
        return self


@primitive
@dataclass(frozen=True)
class Global(_IndexPrimitive):
    indices: IndexSet
    name: ClassVar[str] = "global"
    symmetric: ClassVar[bool] = True
    meaning: ClassVar = (("global(R)", "i ∈ R or j ∈ R"),)
    examples: ClassVar = {
        ("global(0, 5)", 6): ("111111",
                              "100001",
                              "100001",
                              "100001",
                              "100001",
                              "111111"),
        ("global(n-2..n)", 6): ("000011",
                                "000011",
                                "000011",
                                "000011",
                                "111111",
                                "111111"),
        # 9 ≥ n is clipped away
        ("global(1..3, 9)", 6): ("011000",
                                 "111111",
                                 "111111",
                                 "011000",
                                 "011000",
                                 "011000"),
        ("global(7, 4..100)", 4): ("0000", "0000", "0000", "0000"),
    }

    def reference_pair(self, i, j, n):
        return i in self.indices or j in self.indices

    @classmethod
    def row_bound(cls, args, n, ops):
        """|R| keys in the rows outside R; the |R| rows in R hold all n."""
        size = ops.size(args["R"])
        return RowBound(size, size, symmetric=True,
                        parts=(Rows.row_bound(args, n, ops), Cols.row_bound(args, n, ops)))

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
        # by sorting: np.union1d hashes, and block codes collide (patterndsl/arrays.py)
        return unique_sorted(np.concatenate([Rows(self.indices).block_candidates(grid),
                                             Cols(self.indices).block_candidates(grid)]))

    def block_estimate(self, grid):
        return Rows(self.indices).block_estimate(grid) + Cols(self.indices).block_estimate(grid)


@primitive
@dataclass(frozen=True)
class Rows(_IndexPrimitive):
    indices: IndexSet
    name: ClassVar[str] = "rows"
    meaning: ClassVar = (("rows(R)", "i ∈ R"),)
    examples: ClassVar = {
        ("rows(1..3)", 6): ("000000",
                            "111111",
                            "111111",
                            "000000",
                            "000000",
                            "000000"),
        ("rows(n-1, 7)", 6): ("000000",
                              "000000",
                              "000000",
                              "000000",
                              "000000",
                              "111111"),
        ("rows(0..2, 1..4)", 5): ("11111",  # overlapping ranges
                                  "11111",
                                  "11111",
                                  "11111",
                                  "00000"),
    }

    def reference_pair(self, i, j, n):
        return i in self.indices

    @classmethod
    def row_bound(cls, args, n, ops):
        """The |R| rows in R hold n keys, the others none."""
        return RowBound(0, ops.size(args["R"]), columns=RowBound(ops.size(args["R"])))

    def transposed(self, n):
        return Cols(self.indices)

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
    meaning: ClassVar = (("cols(R)", "j ∈ R"),)
    examples: ClassVar = {
        ("cols(0, 4)", 6): ("100010",) * 6,
        ("cols(n-4..n)", 6): ("001111",) * 6,
        ("cols(n..n+5)", 3): ("000", "000", "000"),
    }

    def reference_pair(self, i, j, n):
        return j in self.indices

    @classmethod
    def row_bound(cls, args, n, ops):
        """|R| keys in every row."""
        return RowBound(ops.size(args["R"]), columns=RowBound(0, ops.size(args["R"])))

    def transposed(self, n):
        return Rows(self.indices)

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

    def candidates_in_band(self, grid, lo, hi):
        return grid.columns_in_band(_touched_blocks(self.indices, grid.block_k), lo, hi)

    def block_estimate(self, grid):
        return grid.num_q * _touched_blocks(self.indices, grid.block_k).size


@primitive
@dataclass(frozen=True)
class LogSparse(Primitive):
    name: ClassVar[str] = "logsparse"
    symmetric: ClassVar[bool] = True
    meaning: ClassVar = (("logsparse", "i = j, or |i − j| is a power of two"),)
    examples: ClassVar = {
        # |i - j| ∈ {0, 1, 2, 4}
        ("logsparse", 8): ("11101000",
                           "11110100",
                           "11111010",
                           "01111101",
                           "10111110",
                           "01011111",
                           "00101111",
                           "00010111"),
    }

    def reference_pair(self, i, j, n):
        distance = abs(i - j)
        while distance > 1 and distance % 2 == 0:
            distance //= 2
        return distance <= 1  # 0 (i = j), or 1 after halving a power of two

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


class _PointBacked(Primitive):
    """A primitive whose keys are its `row_points`: its block layout counts them."""

    point_backed: ClassVar[bool] = True  # layout.py samples its rows for estimates

    def block_counts(self, grid, qb, kb):
        return _point_block_counts(self, grid, qb, kb)

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def block_candidates(self, grid):
        return _point_blocks(self, grid)[0]


def _seeded_call(draw, st, name: str, args: dict, avoid=None) -> str:
    """The source of a call `name(args…)` with a drawn seed, written in each way a call may
    give it: left to its default, by position, by keyword, every argument by keyword; and,
    with ``avoid`` (a strategy of pattern sources), `seed=s, avoid=P` (random's form).
    Shared by Random.call_sources and Bernoulli.call_sources."""
    seed = draw(st.one_of(st.integers(0, 20), st.integers(0, 2**62)))
    form = draw(st.integers(0, 3 if avoid is None else 4))
    values = ", ".join(str(value) for value in args.values())
    if form == 4:
        return f"{name}({values}, seed={seed}, avoid={draw(avoid)})"
    if form == 0:
        return f"{name}({values})"
    if form == 1:
        return f"{name}({values}, {seed})"
    if form == 2:
        return f"{name}({values}, seed={seed})"
    keywords = ", ".join(f"{key}={value}" for key, value in args.items())
    return f"{name}({keywords}, seed={seed})"


_AVOID_ROWS = 1 << 16  # rows whose free runs random(avoid=P) finds at once
_AVOID_ELEMENTS = 1 << 24  # pairs of P evaluated at once where its rows are not runs


@primitive
@dataclass(frozen=True)
class Random(_PointBacked):
    r: int
    seed: int
    avoid: Pattern | None = None  # draw only among the keys outside it (BigBird's rule)
    name: ClassVar[str] = "random"
    signatures: ClassVar = ((ParamSpec("r"), ParamSpec("seed", default=0, structural=False)),
                            (ParamSpec("r"), ParamSpec("seed", default=0, structural=False),
                             ParamSpec("avoid", kind="pattern")))
    meaning: ClassVar = (("random(r, seed=s)", "each query row holds exactly min(r, n) distinct keys, drawn by "
                                               "the generator below (`seed` defaults to 0)"),
                         ("random(r, seed=s, avoid=P)", "each query row holds exactly min(r, m) distinct keys among "
                                                        "the m keys j with (i, j) ∉ P, drawn by the generator below "
                                                        "(BigBird's rule)"))
    # Only the forms a hand can draw: r = 0 and r ≥ n. Which keys a row draws is the
    # generator's (patterndsl/randomgen.py, tests/test_random.py).
    examples: ClassVar = {
        ("random(0)", 3): ("000", "000", "000"),
        ("random(5, seed=9)", 3): ("111", "111", "111"),
        # r ≥ m: every key outside P
        ("random(4, seed=1, avoid=window(1))", 4): ("0011", "0001", "1000", "1100"),
        ("random(2, avoid=all)", 2): ("00", "00"),
    }

    def reference_pair(self, i, j, n):
        if self.avoid is None:
            return j in _reference_keys(self.seed, i, n, self.r)
        row = np.full(n, i, dtype=np.int64)
        free = np.flatnonzero(~self.avoid.pairs(row, np.arange(n, dtype=np.int64), n)).tolist()
        return j in randomgen.reference_avoiding_keys(self.seed, i, free, self.r)

    @classmethod
    def call_sources(cls, S):
        st = S.st

        @st.composite
        def calls(draw) -> str:
            r = draw(st.one_of(S.nonnegative_ints(), st.sampled_from(("n", "n - 1", "n + 1"))))
            # or avoid a pattern drawn from a few other primitives
            avoid = S.primitive_sources(("window", "global", "causal", "chunk", "stride", "cols"))
            return _seeded_call(draw, st, "random", {"r": r}, avoid)

        return calls()

    @classmethod
    def row_bound(cls, args, n, ops):
        """Exactly min(r, n) keys in every row (avoiding P: min(r, m) ≤ min(r, n), which P
        may make 0)."""
        return RowBound(ops.min(args["r"], n), tight="avoid" not in args)

    @classmethod
    def build(cls, args, n):
        _at_least(args["r"], 0, "random(r, seed)", "r", n)
        _at_least(args["seed"], 0, "random(r, seed)", "seed", n)
        return cls(args["r"], args["seed"], args.get("avoid"))

    def predicate(self, i, j, n):
        rows = i[:, 0]
        out = np.zeros((rows.size, n), dtype=bool)  # the picks are keys 0..n-1, whatever j holds
        if self.avoid is None and not randomgen.keeping():  # the reference: Floyd's picks in order
            out[np.arange(rows.size)[:, None], randomgen.keys(self.seed, rows, n, self.r)] = True
        else:  # inside an analysis: the rows it keeps
            picks = self._keys(rows, n)  # -1: a slot without a key (fewer than r free keys)
            held, slot = np.nonzero(picks >= 0)
            out[held, picks[held, slot]] = True
        return out if np.array_equal(j[0], np.arange(n)) else out[:, j[0]]

    def _keys(self, rows: np.ndarray, n: int) -> np.ndarray:
        """int64 [len(rows), min(r, n)]: each row's keys (distinct; -1 in the slots of a row
        with fewer free keys than r), from the generator (patterndsl/randomgen.py); each row
        drawn once inside `randomgen.drawn_once` (an analysis)."""
        return randomgen.kept_keys((self, n), rows, n, min(self.r, n), lambda part: self._drawn(part, n))

    def _drawn(self, rows: np.ndarray, n: int) -> np.ndarray:
        if self.avoid is None:
            return randomgen.key_sets(self.seed, rows, n, self.r)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((rows.size, min(self.r, n)), dtype=np.int64)
        structure = self.avoid.row_structure(n)
        # Row chunks: the free keys as runs (a few per row), or else a dense row of the avoided
        # pattern per row, at most about _AVOID_ELEMENTS booleans at once.
        runs = R.free_runs(structure, rows[:0], n) is not None  # None: not intervals only
        step = max(1, _AVOID_ROWS if runs else _AVOID_ELEMENTS // max(n, 1))
        for start in range(0, rows.size, step):
            part = rows[start:start + step]
            if runs:
                starts, lengths = R.free_runs(structure, part, n)
                out[start:start + step] = randomgen.run_keys(self.seed, part, starts, lengths, n, self.r)
                continue
            free = ~np.asarray(self.avoid.predicate(part[:, None], np.arange(n, dtype=np.int64)[None, :], n),
                               dtype=bool)
            out[start:start + step] = randomgen.avoiding_keys(self.seed, part, np.broadcast_to(free, (part.size, n)),
                                                              self.r)
        return out

    def row_structure(self, n):
        return R.Points(self)

    def row_point_count(self, n: int) -> int:
        return min(self.r, n)

    def pairs(self, i, j, n):
        # `predicate` builds whole rows: test the row's key set instead (binary searches in the
        # rows drawn once, inside an analysis), else in slices.
        found = randomgen.kept_pairs((self, n), i, j, n, min(self.r, n), lambda part: self._drawn(part, n))
        if found is not None:
            return found
        out = np.empty(i.shape[0], dtype=bool)
        step = max(1, (1 << 22) // max(1, min(self.r, n)))
        for start in range(0, i.shape[0], step):
            rows = np.asarray(i[start:start + step], dtype=np.int64)
            keys = self._keys(rows, n)
            out[start:start + step] = (keys == np.asarray(j[start:start + step], dtype=np.int64)[:, None]).any(axis=1)
        return out

    def row_points(self, rows: np.ndarray, n: int) -> np.ndarray:
        """int64 [len(rows), min(r, n)]: each row's keys (distinct), in no particular order."""
        return self._keys(rows, n)

    def __str__(self):
        if self.avoid is None:
            return f"random({self.r}, seed={self.seed})"
        return f"random({self.r}, seed={self.seed}, avoid={self.avoid})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source (patterndsl/codegen.py)."""
        return backend.data(self, q, k, n)

    def block_estimate(self, grid):
        return _bitmap_blocks(grid, min(self.r, grid.n)) + grid.num_q

    def simplify(self, n):
        if self.r == 0:
            return Nothing()
        if self.r >= n:
            return All() if self.avoid is None else Complement(self.avoid)  # every free key
        return self

    def table_bytes(self, grid) -> int:
        """About the peak bytes of its per-block bitmaps (codegen.BlockBitmaps), which generated
        code embeds: every key drawn, with its block and word (int64 each), the dense slot grid,
        and one bitmap of block_q × ⌈block_k / 32⌉ words per block it touches."""
        keys = grid.n * min(self.r, grid.n)
        words = grid.block_q * -(-grid.block_k // 32)
        return keys * 48 + grid.num_blocks * 5 + _bitmap_blocks(grid, min(self.r, grid.n)) * words * 12


@dataclass(frozen=True)
class Transposed(_PointBacked):
    """`transpose(P)` of a data-backed primitive (random): the one transpose no other
    primitive states. Its keys per row are the operand's queries per column, from the
    operand's `row_points` inverted once per n, so every target reads them as points."""

    operand: Primitive
    name: ClassVar[str] = "transpose"

    def __str__(self):
        return f"transpose({self.operand})"

    def transposed(self, n):
        return self.operand

    def simplify(self, n):
        inner = self.operand.simplify(n)
        return self if inner == self.operand else inner.transposed(n)

    def predicate(self, i, j, n):
        # From its own keys (the operand's inverted once per n), not the operand's predicate
        # over every key row: that built n × n booleans for one query row (show at 2^26).
        rows = np.asarray(i, dtype=np.int64).reshape(-1)
        keys = self.row_points(rows, n)
        out = np.zeros((rows.size, n), dtype=bool)
        held, slot = np.nonzero(keys >= 0)
        out[held, keys[held, slot]] = True
        cols = np.asarray(j, dtype=np.int64).reshape(-1)
        return out if np.array_equal(cols, np.arange(n)) else out[:, cols]

    def pairs(self, i, j, n):
        return self.operand.pairs(j, i, n)

    def row_structure(self, n):
        return R.Points(self)

    def row_point_count(self, n: int) -> int:
        return _inverted_points(self.operand, n).shape[1]

    def row_points(self, rows: np.ndarray, n: int) -> np.ndarray:
        return _inverted_points(self.operand, n)[np.asarray(rows, dtype=np.int64)]

    def source(self, q: str, k: str, n: int, backend) -> str:
        return backend.data(self, q, k, n)

    def block_estimate(self, grid):
        # From the operand's keys (as many pairs, the blocks transposed), never by inverting all
        # n rows only to plan (and maybe refuse) the layout.
        return _bitmap_blocks(grid, min(self.operand.row_point_count(grid.n), grid.n)) + grid.num_k

    def inversion_bytes(self, n: int) -> int:
        """About the peak bytes of inverting the operand's keys at n (`_inverted_points`: every
        row's keys drawn at once, sorted by key, and the padded table of each row's queries),
        from the operand's key count alone, so callers refuse it before it runs."""
        drawn = n * self.operand.row_point_count(n)
        # per drawn key: its value, owner, sort order, sorted copies and slots (int64 each);
        # per row: the table is about r + a few slots wide (the busiest column), and a count
        return drawn * _INVERSION_BYTES_PER_KEY + n * 8 * (self.operand.row_point_count(n) + 9)

    def table_bytes(self, grid) -> int:
        """The inversion (`inversion_bytes`) and the per-block bitmaps, as Random.table_bytes."""
        words = grid.block_q * -(-grid.block_k // 32)
        drawn = min(self.operand.row_point_count(grid.n), grid.n)  # keys per row, on average
        return self.inversion_bytes(grid.n) + grid.num_blocks * 5 + _bitmap_blocks(grid, drawn) * words * 12


def _bitmap_blocks(grid, keys_per_row: int) -> int:
    """About how many blocks rows of ``keys_per_row`` keys drawn at random touch (each one
    listed in the layout, with a bitmap in generated code): a query block's rows draw
    m = block_q · keys_per_row keys, which touch about num_k · (1 − e^(−m / num_k)) of its
    key blocks. (Not n · r / block_k: random keys rarely share a block, so at n = 2^20
    random(3)'s tables were 100 times that.)"""
    import math

    drawn = min(grid.block_q, grid.n) * keys_per_row
    per_query_block = min(grid.num_k, drawn, math.ceil(-grid.num_k * math.expm1(-drawn / grid.num_k)))
    return min(grid.num_blocks, grid.num_q * per_query_block)


_INVERSION_BYTES_PER_KEY = 64


@functools.lru_cache(maxsize=8)
def _inverted_points(operand, n: int) -> np.ndarray:
    """int64 [n, width]: row i lists the j with i among operand's keys of row j (-1 padded)."""
    rows = np.arange(n, dtype=np.int64)
    keys = operand.row_points(rows, n)
    owner = np.broadcast_to(rows[:, None], keys.shape)[keys >= 0]
    keys = keys[keys >= 0]
    order = np.lexsort((owner, keys))
    keys, owner = keys[order], owner[order]
    counts = np.bincount(keys, minlength=n)
    width = int(counts.max(initial=0))
    slot = np.arange(keys.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((n, width), -1, dtype=np.int64)
    out[keys, slot] = owner
    return out


def point_blocks(node, grid):
    """(codes, counts): the blocks holding the pairs of a points-backed node (its
    `row_points`) and how many each, all rows listed once, in row chunks of whole
    query blocks (so the codes are unique). Shared by the grids (patterndsl/grid.py). A node
    with `point_rows(n)` (first, last) has keys in the rows first … last − 1 only: just those
    are listed (a 64 × 64 grid at n = 2^26 listed 2^26 rows of 64 slots, 32 GB of −1)."""
    key = ("point blocks", node)
    if key not in grid.memo:
        codes, counts = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        step = max(1, (1 << 22) // max(1, node.row_point_count(grid.n)))
        step = max(grid.block_q, step // grid.block_q * grid.block_q)
        first, last = node.point_rows(grid.n) if hasattr(node, "point_rows") else (0, grid.n)
        for start in range(first // grid.block_q * grid.block_q, last, step):
            rows = np.arange(start, min(last, start + step), dtype=np.int64)
            keys = node.row_points(rows, grid.n)
            owner = np.broadcast_to(rows[:, None], keys.shape)
            held = keys >= 0
            block, count = unique_sorted(grid.codes(owner[held] // grid.block_q, keys[held] // grid.block_k),
                                     return_counts=True)
            codes.append(block)
            counts.append(count)
        grid.memo[key] = (np.concatenate(codes), np.concatenate(counts))
    return grid.memo[key]


def point_block_counts(node, grid, qb, kb):
    """The pairs of a points-backed node in each block (qb, kb), from `point_blocks`."""
    codes, counts = point_blocks(node, grid)
    wanted = grid.codes(qb, kb)
    if codes.size == 0:
        return np.zeros(np.shape(wanted), dtype=np.int64)
    at = np.minimum(np.searchsorted(codes, wanted), codes.size - 1)
    return np.where(codes[at] == wanted, counts[at], 0)


_point_blocks, _point_block_counts = point_blocks, point_block_counts


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


@functools.lru_cache(maxsize=1 << 12)
def _reference_keys(seed: int, i: int, n: int, r: int) -> frozenset:
    """Row i's keys from the generator's plain-Python version (cached: asked per pair)."""
    return frozenset(randomgen.reference_keys(seed, i, n, r))


# ---- run-time segments (patterndsl/segments.py) -------------------------------------
# `segment` and `segment_start(k)` read the segment ids given at call time. Evaluated
# without ids (the analyses, a mask without segments=) they mean the one-document
# segmentation, every id equal: `segment` is `all`, `segment_start(k)` is `cols(0..k)`.


@primitive
@dataclass(frozen=True)
class Segment(Primitive):
    name: ClassVar[str] = "segment"
    symmetric: ClassVar[bool] = True
    reads_segments: ClassVar[bool] = True
    meaning: ClassVar = (("segment", "seg[i] = seg[j], for the segment ids seg given at call time "
                                     "(segments=, one id per position; without ids every id is equal)"),)
    examples: ClassVar = {("segment", 3): ("111", "111", "111")}

    def reference_pair(self, i, j, n):
        seg = segments.for_predicate(n)
        return True if seg is None else int(seg.ids[i]) == int(seg.ids[j])

    @classmethod
    def row_bound(cls, args, n, ops):
        # every segmentation: at most n keys per row (one document), itself always
        return RowBound(n, tight=False, reflexive=True, symmetric=True)

    def predicate(self, i, j, n):
        seg = segments.for_predicate(n)
        if seg is None:
            return _full((i.shape[0], j.shape[1]), True)
        return seg.ids[i] == seg.ids[j]

    def row_structure(self, n):
        return R.Span(0, n)  # the one-document segmentation

    def source(self, q: str, k: str, n: int, backend) -> str:
        """Its element predicate as torch/Triton source: the backend defines ``seg_q`` (the
        query's segment id) and ``seg_k`` (the key's)."""
        seg_q, seg_k = backend.segment_ids()
        return f"({seg_q} == {seg_k})"


@primitive
@dataclass(frozen=True)
class SegmentStart(Primitive):
    k: int
    name: ClassVar[str] = "segment_start"
    signatures: ClassVar = ((ParamSpec("k"),),)
    reads_segments: ClassVar[bool] = True
    meaning: ClassVar = (("segment_start(k)", "seg[i] = seg[j] and j is among the first k positions carrying "
                                              "the id seg[j] (rank(j) < k: per-segment sinks); without ids, "
                                              "j < k"),)
    examples: ClassVar = {("segment_start(2)", 3): ("110", "110", "110")}

    def reference_pair(self, i, j, n):
        seg = segments.for_predicate(n)
        if seg is None:
            return j < self.k
        same = int(seg.ids[i]) == int(seg.ids[j])
        return same and sum(1 for p in range(j) if int(seg.ids[p]) == int(seg.ids[j])) < self.k

    @classmethod
    def call_sources(cls, S):
        return S.st.builds(lambda k: f"segment_start({k})", S.st.integers(0, 6))

    @classmethod
    def row_bound(cls, args, n, ops):
        return RowBound(ops.min(args["k"], n), tight=False)

    @classmethod
    def build(cls, args, n):
        _at_least(args["k"], 0, "segment_start(k)", "k", n)
        return cls(args["k"])

    def predicate(self, i, j, n):
        seg = segments.for_predicate(n)
        if seg is None:
            return np.broadcast_to(j < self.k, (i.shape[0], j.shape[1])).copy()
        return (seg.ids[i] == seg.ids[j]) & (seg.ranks[j] < self.k)

    def row_structure(self, n):
        return R.Span(0, min(self.k, n))  # the one-document segmentation

    def __str__(self):
        return f"segment_start({self.k})"

    def source(self, q: str, k: str, n: int, backend) -> str:
        """``seg_q == seg_k`` and the key's rank in its segment (``segrank_k``) below k."""
        seg_q, seg_k = backend.segment_ids()
        return f"(({seg_q} == {seg_k}) & ({backend.segment_rank()} < {_clamp(self.k, n)}))"

    def simplify(self, n):
        return Nothing() if self.k == 0 else self


@primitive
@dataclass(frozen=True)
class Bernoulli(Primitive):
    """`bernoulli(p, q, seed=s)`: each pair on its own with probability p/q, decided by a
    counter-based hash of (s, i, j) (patterndsl/randomgen.py: `bernoulli_hash`). The hash
    is the predicate itself — the same integer expression in numpy, torch and Triton —
    so no table is embedded. ``swapped``: its transpose, the hash read at (s, j, i)."""

    p: int
    q: int
    seed: int = 0
    swapped: bool = False
    name: ClassVar[str] = "bernoulli"
    signatures: ClassVar = ((ParamSpec("p"), ParamSpec("q"), ParamSpec("seed", default=0, structural=False)),)
    meaning: ClassVar = (("bernoulli(p, q, seed=s)", "h(s, i, j) · q < p · 2^30, for the hash h below: each "
                                                     "pair on its own with probability p/q (0 ≤ p ≤ q, q ≥ 1; "
                                                     "`seed` defaults to 0)"),)
    # The forms a hand can draw (p = 0, p = q), and one mask of the generator worked out from
    # its definition (tests/test_bernoulli.py computes it again in plain Python).
    examples: ClassVar = {
        ("bernoulli(0, 3)", 3): ("000", "000", "000"),
        ("bernoulli(4, 4, seed=7)", 3): ("111", "111", "111"),
        ("bernoulli(1, 1)", 2): ("11", "11"),
        # h(3, i, j) < 2^29 worked out from the definition (tests/test_bernoulli.py: plain_hash)
        ("bernoulli(1, 2, seed=3)", 6): ("111011", "100111", "001110", "101010", "010101", "001111"),
    }

    def _at(self, i, j):
        return (j, i) if self.swapped else (i, j)

    def reference_pair(self, i, j, n):
        a, b = self._at(int(i), int(j))
        return randomgen.bernoulli_hash(self.seed, a, b) * self.q < self.p << randomgen.BERNOULLI_BITS

    @classmethod
    def call_sources(cls, S):
        st = S.st

        @st.composite
        def calls(draw) -> str:
            q = draw(st.one_of(st.integers(1, 8), st.sampled_from((2**40, 1000003))))
            p = draw(st.one_of(st.integers(0, q), st.sampled_from((0, q)))) if q < 100 else draw(
                st.sampled_from((0, 1, q // 3, q - 1, q)))
            return _seeded_call(draw, st, "bernoulli", {"p": p, "q": q})

        return calls()

    @classmethod
    def row_bound(cls, args, n, ops):
        """Θ(n²)·p/q in expectation, which a hash does not prove: O(n²) only, unless p = 0
        (nothing) or p = q (everything)."""
        if ops.same(args["p"], 0):
            return RowBound(0, tight=False, symmetric=True)
        if ops.same(args["p"], args["q"]):
            return RowBound(n, reflexive=True, symmetric=True, lower_triangle=True)
        return RowBound(n, tight=False)

    @classmethod
    def build(cls, args, n):
        call = "bernoulli(p, q, seed)"
        _at_least(args["q"], 1, call, "q", n, help="p/q is the probability of each pair: q must be positive")
        _at_least(args["p"], 0, call, "p", n, help="p/q is the probability of each pair: 0 ≤ p ≤ q")
        if args["p"] > args["q"]:
            raise ParamError("p", f"{call} needs p ≤ q, but p = {args['p']} and q = {args['q']} here (n = {n})",
                             "p/q is the probability of each pair: at most 1")
        _at_least(args["seed"], 0, call, "seed", n)
        return cls(args["p"], args["q"], args["seed"])

    def _threshold(self) -> int:
        return randomgen.bernoulli_threshold(self.p, self.q)

    def predicate(self, i, j, n):
        a, b = self._at(np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64))
        out = randomgen.bernoulli_hash(self.seed, a, b) < self._threshold()
        shape = np.broadcast_shapes(np.shape(i), np.shape(j))
        return out if np.shape(out) == shape else np.broadcast_to(out, shape).copy()  # writable, like the others

    def pairs(self, i, j, n):
        return np.array(self.predicate(np.asarray(i).reshape(-1), np.asarray(j).reshape(-1), n), dtype=bool)

    def row_structure(self, n):
        return R.Points(self)  # its keys listed from the pairs: O(n) per row

    def row_point_count(self, n: int) -> int:
        return n

    def row_points(self, rows: np.ndarray, n: int) -> np.ndarray:
        """int64 [len(rows), n]: key j in slot j when row i holds it, else -1."""
        keys = np.arange(n, dtype=np.int64)
        held = self.predicate(np.asarray(rows, dtype=np.int64).reshape(-1, 1), keys[None, :], n)
        return np.where(held, keys[None, :], -1)

    def __str__(self):
        call = f"bernoulli({self.p}, {self.q}, seed={self.seed})"
        return f"transpose({call})" if self.swapped else call

    def source(self, q: str, k: str, n: int, backend) -> str:
        """The hash written out (SourceExpr): only ``^ * % // +`` on values below
        2^31, so int32 and int64 indices, torch and Triton, compute the same bits."""
        a, b = self._at(SourceExpr(q), SourceExpr(k))
        return f"({randomgen.bernoulli_hash(self.seed, a, b)} < {self._threshold()})"

    # Blocks: a pair is in it with probability p/q whatever the block, so for 0 < p < q
    # (`simplify` folds the others to none and all) every block of more than a few pairs
    # is partial: its layout touches every block. The counts are exact, from the pairs.
    def block_counts(self, grid, qb, kb):
        qb, kb = np.asarray(qb, dtype=np.int64), np.asarray(kb, dtype=np.int64)
        shape = np.broadcast_shapes(qb.shape, kb.shape)
        qb, kb = np.broadcast_to(qb, shape).reshape(-1), np.broadcast_to(kb, shape).reshape(-1)
        (r0, r1), (c0, c1) = grid.rows(qb), grid.cols(kb)
        local_q = np.arange(grid.block_q, dtype=np.int64)
        local_k = np.arange(grid.block_k, dtype=np.int64)
        out = np.zeros(qb.size, dtype=np.int64)
        step = max(1, (1 << 21) // (grid.block_q * grid.block_k))
        for start in range(0, qb.size, step):
            t = slice(start, start + step)
            i = r0[t, None, None] + local_q[None, :, None]
            j = c0[t, None, None] + local_k[None, None, :]
            inside = (i <= r1[t, None, None]) & (j <= c1[t, None, None])
            held = self.predicate(np.minimum(i, r1[t, None, None]), np.minimum(j, c1[t, None, None]), grid.n)
            out[t] = (held & inside).sum(axis=(1, 2))
        return out.reshape(shape)

    def block_states(self, grid, qb, kb):
        return grid.states_from_counts(qb, kb, self.block_counts(grid, qb, kb))

    def simplify(self, n):
        if self.p == 0:
            return Nothing()
        if self.p == self.q:
            return All()
        return self

    def transposed(self, n):
        return Bernoulli(self.p, self.q, self.seed, not self.swapped)
