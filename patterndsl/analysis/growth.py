"""The growth class of the connection count: O(n), O(n log n), O(n^1.5), O(n²), or in
general O(n^a log^b n), proved from per-row degree bounds (DESIGN.md §3).

How it works
------------
The file's AST is abstractly interpreted with n unknown. Every integer is a
`Quantity`: classes hi and lo of the form n^a log^b n (a, b rationals) with

    |value(n)| ≤ C·hi(n)            for all large n, and, when lo is not None,
    value(n) ≥ c·lo(n) > 0          for all large n,

plus `nonneg` (value ≥ 0 for all large n), the exact value when it does not
depend on n, a closure `at(n)` giving the exact value at any n, and a readable
formula. The rules (all valid for all large n):

    literal k       exact; lo = 1 if k > 0
    n               hi = lo = n
    x + y           hi = max; lo = max of the known lo's if x, y ≥ 0, else lo(x)
                    if hi(y) < lo(x) (and symmetrically), else unknown
    x − y           x + (−y); −y has lo unknown
    x · y           exponents add (lo only when both are known)
    x // y          hi = max(hi(x)/lo(y), 1) (hi(x) + 1 if lo(y) unknown);
                    lo = lo(x)/hi(y) when that still grows (⌊·⌋ may reach 0 otherwise)
    cdiv(x, y)      as //, and lo = max(lo(x)/hi(y), 1) when x, y > 0
    x % y           hi = min(hi x, hi y) if x, y ≥ 0 else hi y; lo unknown
    isqrt(x)        exponents halve
    ilog2(x)        log n if x grows, else constant
    min, max        componentwise

Each primitive gives `row_bound(args, n, ops)` (patterndsl/primitives.py): a
bound D on the degree of all rows but E of them (those ≤ n), so that

    count ≤ n·min(D, n) + n·min(E, n),

and whether that bound is tight (count ≥ c·n·(D + E)). The same method run with
ints gives the concrete bound at one n (`Bound.evaluate`), so the bound that the
class is read off is the one the tests check against the exact counter.

Operators: a union sums the D's and the E's, and its count is at least each
part's (tight when the largest part is); an intersection takes the least of its
parts' bounds and of (min D, ΣE); a difference keeps its left side's bound
(|A − B| ≥ |A| − |B| keeps it tight when B is smaller); a complement is bounded
by n² (tight when its operand is o(n²)). Lower bounds for intersections:
|A ∩ causal| ≥ c·|A| when A is symmetric (the pairs below the diagonal are half
the off-diagonal ones) or `causal_dense`; a pattern that holds every (i, i)
has ≥ n connections.

`growth(compiled)` reports every layer × head and the whole file;
`growth_formula(source)` the same with no n.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

from .. import ast as A
from ..resolve import deep_recursion
from ..ir import IndexSet
from ..primitives import PRIMITIVES, RowBound

Cls = tuple  # (Fraction a, Fraction b): the class n^a log^b n; compared lexicographically

ONE: Cls = (Fraction(0), Fraction(0))
LOG: Cls = (Fraction(0), Fraction(1))
N: Cls = (Fraction(1), Fraction(0))
N2: Cls = (Fraction(2), Fraction(0))


def _mul(x: Cls, y: Cls) -> Cls:
    return (x[0] + y[0], x[1] + y[1])


def _div(x: Cls, y: Cls) -> Cls:
    return (x[0] - y[0], x[1] - y[1])


def _half(x: Cls) -> Cls:
    return (x[0] / 2, x[1] / 2)


def _number(q: Fraction) -> str:
    if q.denominator == 1:
        return str(q.numerator)
    text = f"{float(q):.6g}"
    return text if Fraction(text) == q else f"({q})"


def class_text(c: Cls) -> str:
    """n^a log^b n in words: "1", "n", "n log n", "n^1.5", "n^2", "log^2 n", …"""
    a, b = c
    parts = []
    if a == 1:
        parts.append("n")
    elif a != 0:
        parts.append(f"n^{_number(a)}")
    if b == 1:
        parts.append("log n")
    elif b != 0:
        parts.append(f"log^{_number(b)} n")
    return " ".join(parts) or "1"


def big_o(c: Cls) -> str:
    return f"O({class_text(c)})"


def theta(c: Cls) -> str:
    return f"Θ({class_text(c)})"


# ---- readable formulas ----------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    """A linear form Σ coef·atom + const over opaque atoms (for readable formulas)."""

    terms: tuple = ()  # ((atom text, coefficient), …) in first-seen order
    const: int = 0

    @staticmethod
    def atom(text: str) -> "_Text":
        return _Text(((text, 1),), 0)

    def plus(self, other: "_Text", sign: int = 1) -> "_Text":
        terms = dict(self.terms)
        for atom, coef in other.terms:
            terms[atom] = terms.get(atom, 0) + sign * coef
        return _Text(tuple((a, c) for a, c in terms.items() if c != 0), self.const + sign * other.const)

    def scale(self, k: int) -> "_Text":
        if k == 0:
            return _Text()
        return _Text(tuple((a, c * k) for a, c in self.terms), self.const * k)

    @property
    def simple(self) -> bool:
        """One term with coefficient 1 and no constant, or a constant ≥ 0: needs no parentheses."""
        return (len(self.terms) == 1 and self.terms[0][1] == 1 and self.const == 0) or (
            not self.terms and self.const >= 0)

    def __str__(self) -> str:
        out = ""
        for atom, coef in self.terms:
            sign = "-" if coef < 0 else "+"
            body = atom if abs(coef) == 1 else f"{abs(coef)}·{atom}"
            out = (("-" if sign == "-" else "") + body) if not out else f"{out} {sign} {body}"
        if not out:
            return str(self.const)
        if self.const:
            out += f" {'-' if self.const < 0 else '+'} {abs(self.const)}"
        return out


def _plain(text: str) -> bool:
    """No space or product sign outside parentheses."""
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char in " ·":
            return False
    return True


def _wrap(text: _Text) -> str:
    shown = str(text)
    return shown if text.simple and _plain(shown) else f"({shown})"


# ---- quantities -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Quantity:
    """An integer expression in n, abstractly (see the module's docs)."""

    hi: Cls
    lo: Cls | None
    nonneg: bool
    const: int | None
    at: Callable[[int], int] = field(repr=False)
    text: _Text = field(default_factory=_Text)

    @staticmethod
    def of(value) -> "Quantity":
        if isinstance(value, Quantity):
            return value
        value = int(value)
        return Quantity(ONE, ONE if value > 0 else None, value >= 0, value, lambda n, v=value: v, _Text((), value))

    @staticmethod
    def atom(hi, lo, nonneg, at, text: str) -> "Quantity":
        return Quantity(hi, lo, nonneg or lo is not None, None, at, _Text.atom(text))

    def __str__(self):
        return str(self.text)

    @property
    def grows(self) -> bool:
        return self.lo is not None and self.lo > ONE

    # arithmetic (ints are coerced)

    def __add__(self, other):
        return _add(self, Quantity.of(other))

    __radd__ = __add__

    def __sub__(self, other):
        return _add(self, -Quantity.of(other))

    def __rsub__(self, other):
        return _add(Quantity.of(other), -self)

    def __neg__(self):
        if self.const is not None:
            return Quantity.of(-self.const)
        return Quantity(self.hi, None, False, None, lambda n, f=self.at: -f(n), self.text.scale(-1))

    def __mul__(self, other):
        return _mul_q(self, Quantity.of(other))

    __rmul__ = __mul__

    def __floordiv__(self, other):
        return _floordiv(self, Quantity.of(other), ceil=False)

    def __mod__(self, other):
        return _mod(self, Quantity.of(other))


def _add(x: Quantity, y: Quantity) -> Quantity:
    if x.const is not None and y.const is not None:
        return Quantity.of(x.const + y.const)
    if x.const == 0:
        return y
    if y.const == 0:
        return x
    hi = max(x.hi, y.hi)
    if x.nonneg and y.nonneg:
        known = [c for c in (x.lo, y.lo) if c is not None]
        lo = max(known) if known else None
    elif x.lo is not None and y.hi < x.lo:
        lo = x.lo
    elif y.lo is not None and x.hi < y.lo:
        lo = y.lo
    else:
        lo = None
    text = x.text.plus(y.text)
    if not text.terms:
        # Every term cancelled (`-(n) + n + 2`): equal texts are equal expressions in n,
        # so the sum is the constant left over (for large n: an index-list size is
        # shown as its value for n beyond its indices).
        hi, lo = ONE, (ONE if text.const > 0 else None)
    nonneg = (x.nonneg and y.nonneg) or lo is not None or (not text.terms and text.const >= 0)
    return Quantity(hi, lo, nonneg, None, lambda n, f=x.at, g=y.at: f(n) + g(n), text)


def _mul_q(x: Quantity, y: Quantity) -> Quantity:
    if x.const is not None and y.const is not None:
        return Quantity.of(x.const * y.const)
    if x.const == 0 or y.const == 0:
        return Quantity.of(0)
    for a, b in ((x, y), (y, x)):
        if a.const is not None:  # a constant factor: keep the linear form
            k = a.const
            return Quantity(b.hi, b.lo if k > 0 else None, (b.nonneg and k >= 0) or (b.lo is not None and k > 0),
                            None, lambda n, f=b.at, k=k: k * f(n), b.text.scale(k))
    lo = _mul(x.lo, y.lo) if x.lo is not None and y.lo is not None else None
    return Quantity(_mul(x.hi, y.hi), lo, x.nonneg and y.nonneg, None, lambda n, f=x.at, g=y.at: f(n) * g(n),
                    _Text.atom(f"{_wrap(x.text)}·{_wrap(y.text)}"))


def _floordiv(x: Quantity, y: Quantity, ceil: bool) -> Quantity:
    if x.const is not None and y.const is not None:
        return Quantity.of(-(-x.const // y.const) if ceil else x.const // y.const)
    hi = max(_div(x.hi, y.lo), ONE) if y.lo is not None else max(x.hi, ONE)
    lo = None
    positive = x.lo is not None and y.lo is not None
    if positive:
        quotient = _div(x.lo, y.hi)
        if ceil and quotient >= ONE:
            lo = quotient  # ⌈x/y⌉ ≥ x/y, and ≥ 1 as x, y > 0
        elif ceil:
            lo = ONE
        elif quotient > ONE:
            lo = quotient
    if ceil:
        at = lambda n, f=x.at, g=y.at: -(-f(n) // g(n))  # noqa: E731
        text = _Text.atom(f"cdiv({x}, {y})")
    else:
        at = lambda n, f=x.at, g=y.at: f(n) // g(n)  # noqa: E731
        text = _Text.atom(f"{_wrap(x.text)} // {_wrap(y.text)}")
    return Quantity(hi, lo, (x.nonneg and y.nonneg) or lo is not None, None, at, text)


def _mod(x: Quantity, y: Quantity) -> Quantity:
    if x.const is not None and y.const is not None:
        return Quantity.of(x.const % y.const)
    hi = min(x.hi, y.hi) if x.nonneg and y.nonneg else y.hi
    return Quantity(hi, None, y.nonneg, None, lambda n, f=x.at, g=y.at: f(n) % g(n),
                    _Text.atom(f"{_wrap(x.text)} % {_wrap(y.text)}"))


def q_isqrt(x: Quantity) -> Quantity:
    if x.const is not None:
        return Quantity.of(math.isqrt(x.const))
    return Quantity(_half(x.hi), None if x.lo is None else _half(x.lo), True, None,
                    lambda n, f=x.at: math.isqrt(f(n)), _Text.atom(f"isqrt({x})"))


def q_ilog2(x: Quantity) -> Quantity:
    if x.const is not None:
        return Quantity.of(x.const.bit_length() - 1)
    hi = LOG if x.hi > ONE else ONE
    lo = None
    if x.lo is not None and x.lo[0] > 0:
        lo = LOG
    elif x.grows:
        lo = ONE
    return Quantity(hi, lo, True, None, lambda n, f=x.at: f(n).bit_length() - 1, _Text.atom(f"ilog2({x})"))


def q_clog2(x: Quantity) -> Quantity:
    """⌈log2 x⌉ = (x − 1).bit_length() for x ≥ 1."""
    if x.const is not None:
        return Quantity.of(max(x.const - 1, 0).bit_length())
    return Quantity(LOG if x.hi > ONE else ONE, LOG if (x.lo is not None and x.lo[0] > 0) else None, True, None,
                    lambda n, f=x.at: max(f(n) - 1, 0).bit_length(), _Text.atom(f"⌈log2 {x}⌉"))


def q_min(*args) -> Quantity:
    qs = [Quantity.of(a) for a in args]
    if all(q.const is not None for q in qs):
        return Quantity.of(min(q.const for q in qs))
    nonneg = all(q.nonneg for q in qs)
    hi = min(q.hi for q in qs) if nonneg else max(q.hi for q in qs)
    lo = min(q.lo for q in qs) if all(q.lo is not None for q in qs) else None
    return Quantity(hi, lo, nonneg, None, lambda n, fs=tuple(q.at for q in qs): min(f(n) for f in fs),
                    _Text.atom(f"min({', '.join(str(q) for q in qs)})"))


def q_max(*args) -> Quantity:
    qs = [Quantity.of(a) for a in args]
    if all(q.const is not None for q in qs):
        return Quantity.of(max(q.const for q in qs))
    known = [q.lo for q in qs if q.lo is not None]
    return Quantity(max(q.hi for q in qs), max(known) if known else None, any(q.nonneg for q in qs), None,
                    lambda n, fs=tuple(q.at for q in qs): max(f(n) for f in fs),
                    _Text.atom(f"max({', '.join(str(q) for q in qs)})"))


def q_cdiv(x, y) -> Quantity:
    return _floordiv(Quantity.of(x), Quantity.of(y), ceil=True)


N_QUANTITY = Quantity(N, N, True, None, lambda n: n, _Text.atom("n"))


@dataclass(frozen=True)
class _Range:
    lo: Quantity
    hi: Quantity


def _index_size(items) -> Quantity:
    """|R ∩ [0, n)| for the items of an index list (Quantities and _Ranges)."""
    his, los, texts = [], [], []
    for item in items:
        if isinstance(item, _Range):
            length = q_min(item.hi, N_QUANTITY) - item.lo
            his.append(min(length.hi, item.hi.hi, N))
            los.append(length.lo)
            texts.append(f"{item.lo}..{item.hi}")
        else:
            his.append(ONE)
            los.append(ONE if (item.const is not None or item.hi < N) else None)
            texts.append(str(item))
    known = [c for c in los if c is not None]

    def at(n, items=tuple(items)):
        pairs = [(i.lo.at(n), i.hi.at(n)) if isinstance(i, _Range) else (i.at(n), i.at(n) + 1) for i in items]
        return len(IndexSet.of(pairs, n))

    consts = all((i.lo.const is not None and i.hi.const is not None) if isinstance(i, _Range) else
                 i.const is not None for i in items)
    text = "|{" + ", ".join(texts) + "}|"  # the size of the index set
    if consts:  # |R| is then constant for large n (n beyond every index)
        big = max((i.hi.const if isinstance(i, _Range) else i.const + 1) for i in items)
        value = at(big)
        # (shown as its value: for n beyond every index, which is what a growth class is about)
        return Quantity(ONE, ONE if value > 0 else None, True, None, at,
                        _Text((), value) if value else _Text.atom(text))
    return Quantity(max(his), max(known) if known else None, True, None, at, _Text.atom(text))


class _AbstractOps:
    """`ops` for Primitive.row_bound with symbolic quantities."""

    min = staticmethod(q_min)
    cdiv = staticmethod(q_cdiv)
    clog2 = staticmethod(lambda x: q_clog2(Quantity.of(x)))
    size = staticmethod(_index_size)

    @staticmethod
    def nonneg(x) -> bool:
        return Quantity.of(x).nonneg

    @staticmethod
    def const(x) -> bool:
        return Quantity.of(x).const is not None

    @staticmethod
    def small(x) -> bool:
        return Quantity.of(x).hi < N

    @staticmethod
    def same(x, y) -> bool:
        return x is y or (Quantity.of(x).const is not None and Quantity.of(x).const == Quantity.of(y).const)


class _ConcreteOps:
    """`ops` for Primitive.row_bound with ints (one n); the predicates are not used."""

    min = staticmethod(min)
    cdiv = staticmethod(lambda a, b: -(-a // b))
    clog2 = staticmethod(lambda x: max(x - 1, 0).bit_length())
    nonneg = staticmethod(lambda x: x >= 0)
    const = staticmethod(lambda x: True)
    small = staticmethod(lambda x: True)
    same = staticmethod(lambda x, y: x == y)

    def __init__(self, n: int):
        self.n = n

    def size(self, pairs) -> int:
        return len(IndexSet.of(pairs, self.n))


# ---- bounds of patterns -----------------------------------------------------------------


@dataclass
class BoundSummary:
    """What the analysis knows about one pattern."""

    degree: Quantity  # D: the degree bound of all rows but `exceptional`
    exceptional: Quantity  # E: rows whose degree is only bounded by n
    hi: Cls  # count = O(hi)
    lo: Cls | None  # count = Ω(lo)
    reflexive: bool
    symmetric: bool
    causal_dense: bool
    dominant: str  # the primitive (as written, arguments evaluated where constant) that dominates

    @property
    def tight(self) -> bool:
        return self.lo is not None and self.lo == self.hi


def _count_class(degree: Quantity, exceptional: Quantity) -> Cls:
    if degree.const == 0 and exceptional.const == 0:
        return ONE  # no connections at all
    return _mul(N, min(max(degree.hi, exceptional.hi), N))


class Bound:
    """A symbolic bound on the connection count of one pattern expression."""

    def summary(self) -> BoundSummary:
        cached = self.__dict__.get("_summary")
        if cached is None:
            cached = self._summary()
            if cached.reflexive and (cached.lo is None or cached.lo < N):
                cached.lo = N  # every (i, i): at least n connections
            if cached.lo is not None and cached.lo > cached.hi:
                cached.lo = cached.hi  # (cannot happen; keeps the report consistent)
            self.__dict__["_summary"] = cached
        return cached

    def evaluate(self, n: int) -> int:
        """A rigorous upper bound on the connection count at ``n``, from the concrete
        parameter values (never below the exact count)."""
        return self.concrete(n)[2]

    def concrete(self, n: int) -> tuple[int, int, int]:
        """(D, E, count bound) at n, with D, E ≤ n and count ≤ n²."""
        raise NotImplementedError


class _Leaf(Bound):
    def __init__(self, cls, args: dict, text: str):
        self.cls, self.args, self.text = cls, args, text

    def _summary(self):
        rb: RowBound = self.cls.row_bound(self.args, N_QUANTITY, _AbstractOps)
        degree, exceptional = Quantity.of(rb.degree), Quantity.of(rb.exceptional)
        hi = _count_class(degree, exceptional)
        lo = None
        if rb.tight:
            known = [c for c in (degree.lo, exceptional.lo) if c is not None]
            if known:
                lo = _mul(N, min(max(known), N))
        dense = rb.symmetric if rb.causal_dense is None else rb.causal_dense
        return BoundSummary(degree, exceptional, hi, lo, rb.reflexive, rb.symmetric, dense, self.text)

    def concrete(self, n):
        args = {}
        for name, value in self.args.items():
            if isinstance(value, list):
                args[name] = [(v.lo.at(n), v.hi.at(n)) if isinstance(v, _Range) else (v.at(n), v.at(n) + 1)
                              for v in value]
            else:
                args[name] = value.at(n)
        rb = self.cls.row_bound(args, n, _ConcreteOps(n))
        degree = min(max(int(rb.degree), 0), n)
        exceptional = min(max(int(rb.exceptional), 0), n)
        return degree, exceptional, min(n * n, n * degree + n * exceptional)


class _Union(Bound):
    def __init__(self, parts):
        self.parts = parts

    def _summary(self):
        ss = [p.summary() for p in self.parts]
        degree = ss[0].degree
        exceptional = ss[0].exceptional
        for s in ss[1:]:
            degree, exceptional = degree + s.degree, exceptional + s.exceptional
        top = max(ss, key=lambda s: (s.hi, s.tight))
        known = [s.lo for s in ss if s.lo is not None]
        return BoundSummary(degree, exceptional, _count_class(degree, exceptional), max(known) if known else None,
                       any(s.reflexive for s in ss), all(s.symmetric for s in ss),
                       all(s.causal_dense for s in ss), top.dominant)

    def concrete(self, n):
        cs = [p.concrete(n) for p in self.parts]
        return (min(n, sum(c[0] for c in cs)), min(n, sum(c[1] for c in cs)), min(n * n, sum(c[2] for c in cs)))


class _Intersection(Bound):
    def __init__(self, parts):
        self.parts = parts

    def _summary(self):
        ss = [p.summary() for p in self.parts]
        degree = q_min(*[s.degree for s in ss]) if len(ss) > 1 else ss[0].degree
        exceptional = ss[0].exceptional
        for s in ss[1:]:
            exceptional = exceptional + s.exceptional
        combined = _count_class(degree, exceptional)
        best = min(ss, key=lambda s: s.hi)
        if combined < best.hi:
            summary = BoundSummary(degree, exceptional, combined, None, False, False, False, best.dominant)
        else:
            summary = BoundSummary(best.degree, best.exceptional, best.hi, None, False, False, False, best.dominant)
        summary.reflexive = all(s.reflexive for s in ss)
        summary.symmetric = all(s.symmetric for s in ss)
        summary.causal_dense = summary.symmetric
        # |A ∩ causal| ≥ c·|A| when A (the rest) is symmetric or causal-dense.
        causal = [k for k, p in enumerate(self.parts) if isinstance(p, _Leaf) and p.cls.name == "causal"]
        if causal:
            rest = [p for k, p in enumerate(self.parts) if k != causal[0]]
            rest_summary = rest[0].summary() if len(rest) == 1 else _Intersection(rest).summary()
            if rest_summary.causal_dense or rest_summary.symmetric:
                summary.lo = rest_summary.lo
        return summary

    def concrete(self, n):
        cs = [p.concrete(n) for p in self.parts]
        degree, exceptional = min(c[0] for c in cs), min(n, sum(c[1] for c in cs))
        return degree, exceptional, min(min(c[2] for c in cs), n * degree + n * exceptional)


class _Difference(Bound):
    def __init__(self, left, right):
        self.left, self.right = left, right

    def _summary(self):
        a, b = self.left.summary(), self.right.summary()
        lo = a.lo if (a.lo is not None and b.hi < a.lo) else None  # |A − B| ≥ |A| − |B|
        sym = a.symmetric and b.symmetric
        return BoundSummary(a.degree, a.exceptional, a.hi, lo, False, sym, sym, a.dominant)

    def concrete(self, n):
        return self.left.concrete(n)


class _Complement(Bound):
    def __init__(self, operand, text):
        self.operand, self.text = operand, text

    def _summary(self):
        s = self.operand.summary()
        lo = N2 if s.hi < N2 else None  # |~A| = n² − |A|
        return BoundSummary(N_QUANTITY, Quantity.of(0), N2, lo, False, s.symmetric, s.symmetric, self.text)

    def concrete(self, n):
        return n, 0, n * n


# ---- the abstract interpreter -------------------------------------------------------------


class _Evaluator:
    """Evaluates a (validated) module's AST with n unknown: integers to Quantities,
    patterns to Bounds."""

    def __init__(self, module: A.Module):
        self.lets = {s.name: s for s in module.statements if isinstance(s, A.Let)}
        self.defs = {s.name: s for s in module.statements if isinstance(s, A.Def)}
        self.let_cache: dict = {}
        self.call_cache: dict = {}

    def value(self, node, scope):
        return getattr(self, "_" + type(node).__name__.lower())(node, scope)

    def _number(self, node, scope):
        return Quantity.of(node.value)

    def _name(self, node, scope):
        name = node.id
        if name in scope:
            return scope[name]
        if name == "n":
            return N_QUANTITY
        if name in self.lets:
            if name not in self.let_cache:
                self.let_cache[name] = self.value(self.lets[name].value, {})
            return self.let_cache[name]
        if name in self.defs:
            return self.call_def(self.defs[name], [], {})
        return self.primitive(PRIMITIVES[name], [], {})

    def _range(self, node, scope):
        return _Range(self.value(node.lo, scope), self.value(node.hi, scope))

    def _union(self, node, scope):
        return _Union([self.value(item, scope) for item in node.items])

    def _intersection(self, node, scope):
        return _Intersection([self.value(item, scope) for item in node.items])

    def _unary(self, node, scope):
        value = self.value(node.operand, scope)
        if node.op == "~":
            inner = value.summary().dominant
            return _Complement(value, f"~{inner}" if isinstance(value, _Leaf) else f"~({inner})")
        return -value

    def _binary(self, node, scope):
        left, right = self.value(node.left, scope), self.value(node.right, scope)
        if isinstance(left, Bound):
            return _Difference(left, right)
        return {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                "//": lambda: left // right, "%": lambda: left % right}[node.op]()

    def _call(self, node, scope):
        positional, keywords = [], {}
        for arg in node.args:
            if isinstance(arg, A.Keyword):
                keywords[arg.name] = self.value(arg.value, scope)
            else:
                positional.append(self.value(arg, scope))
        if node.func in self.defs:
            return self.call_def(self.defs[node.func], positional, keywords)
        if node.func in PRIMITIVES:
            return self.primitive(PRIMITIVES[node.func], positional, keywords)
        return {"isqrt": lambda: q_isqrt(positional[0]), "ilog2": lambda: q_ilog2(positional[0]),
                "cdiv": lambda: q_cdiv(*positional), "min": lambda: q_min(*positional),
                "max": lambda: q_max(*positional)}[node.func]()

    def call_def(self, definition: A.Def, positional, keywords):
        key = (definition.name, tuple(map(id, positional)), tuple((k, id(v)) for k, v in sorted(keywords.items())))
        if key in self.call_cache:  # the same arguments (objects): share the result, as the resolver does
            return self.call_cache[key][0]
        scope = {}
        for k, param in enumerate(definition.params):
            if k < len(positional):
                scope[param.name] = positional[k]
            elif param.name in keywords:
                scope[param.name] = keywords[param.name]
            else:
                scope[param.name] = self.value(param.default, {})
        result = self.value(definition.body, scope)
        self.call_cache[key] = (result, positional, keywords)  # (keeps the arguments alive: ids stay unique)
        return result

    def primitive(self, cls, positional, keywords):
        for signature in cls.signatures:
            if signature and signature[0].kind == "indices":
                text = f"{cls.name}({', '.join(f'{i.lo}..{i.hi}' if isinstance(i, _Range) else str(i) for i in positional)})"
                return _Leaf(cls, {signature[0].name: list(positional)}, text)
            names = [spec.name for spec in signature]
            if len(positional) > len(signature) or any(k not in names for k in keywords):
                continue
            args = dict(zip(names, positional))
            ok = True
            for spec in signature[len(positional):]:
                if spec.name in keywords:
                    args[spec.name] = keywords[spec.name]
                elif spec.default is not None:
                    args[spec.name] = Quantity.of(spec.default)
                else:
                    ok = False
            if ok:
                shown = ", ".join(str(v) for k, v in args.items() if k != "seed")
                return _Leaf(cls, args, f"{cls.name}({shown})" if signature else cls.name)
        raise ValueError(f"{cls.name}: arguments match no signature (the file should have been validated)")


def _layer_bounds(module: A.Module) -> list[list[Bound]]:
    """[layer][head] Bounds, in the order of CompiledPattern.patterns."""
    ev = _Evaluator(module)
    stmt = next(s for s in module.statements if isinstance(s, (A.PatternStmt, A.Heads, A.Layers)))
    entries = stmt.entries if isinstance(stmt, A.Layers) else (stmt,)
    heads_blocks = [e for e in entries if isinstance(e, A.Heads)]

    def head_range(entry):
        lo = ev.value(entry.lo, {}).at(0)
        return lo, (lo + 1 if entry.hi is None else ev.value(entry.hi, {}).at(0))

    count = max((head_range(e)[1] for block in heads_blocks for e in block.entries), default=1)
    layers = []
    for entry in entries:
        if isinstance(entry, A.PatternStmt):
            entry = entry.expr
        if isinstance(entry, A.Heads):
            per_head: list = [None] * count
            for head_entry in entry.entries:
                bound = ev.value(head_entry.pattern, {})
                lo, hi = head_range(head_entry)
                for h in range(lo, hi):
                    per_head[h] = bound
            layers.append(per_head)
        else:
            bound = ev.value(entry, {})
            layers.append([bound] * count)
    return layers


# ---- the report ------------------------------------------------------------------------------


def _describe(bound: Bound, n: int | None) -> dict:
    s = bound.summary()
    degree, exceptional = s.degree, s.exceptional
    row_class = min(degree.hi, N)
    row_tight = degree.lo is not None and min(degree.lo, N) == row_class
    out = {
        "growth": big_o(s.hi),
        "tight": s.tight,
        "bound": (theta if s.tight else big_o)(s.hi),
        "exponent": [str(s.hi[0]), str(s.hi[1])],  # a, b of n^a log^b n, as exact fractions
        "per_row": str(degree),
        "per_row_class": (theta if row_tight else big_o)(row_class),
        "exceptional_rows": str(exceptional),
        "dominant": s.dominant,
    }
    if s.hi == ONE:
        why = "no connections"
    else:
        rows = ("every row" if exceptional.const == 0 else
                f"all but {exceptional} row{'' if str(exceptional) == '1' else 's'} (which have up to n keys)")
        why = (f"{rows} {'has' if rows == 'every row' else 'have'} at most {degree} keys "
               f"({out['per_row_class']}), so {out['bound']} connections; dominated by {s.dominant}")
        if not s.tight:
            why += "; an upper bound that may not be tight"
    out["why"] = why
    if n is not None:
        out["bound_at_n"] = bound.evaluate(n)
    return out


def _report(module: A.Module, n: int | None) -> dict:
    with deep_recursion():
        return _report_unguarded(module, n)


def _report_unguarded(module: A.Module, n: int | None) -> dict:
    layers = _layer_bounds(module)
    described: dict[int, dict] = {}
    per_layer = []
    for layer in layers:
        row = []
        for bound in layer:
            if id(bound) not in described:
                described[id(bound)] = _describe(bound, n)
            row.append(described[id(bound)])
        per_layer.append(row)
    worst_class = max(b.summary().hi for layer in layers for b in layer)
    candidates = [(l, h) for l, layer in enumerate(layers) for h, b in enumerate(layer)
                  if b.summary().hi == worst_class]
    tight = [(l, h) for l, h in candidates if layers[l][h].summary().tight]
    l, h = (tight or candidates)[0]
    out = {
        "n": n,
        "growth": big_o(worst_class),
        "tight": bool(tight),
        "bound": (theta if tight else big_o)(worst_class),
        "exponent": [str(worst_class[0]), str(worst_class[1])],
        "dominant": {"layer": l, "head": h, **{k: per_layer[l][h][k] for k in ("per_row", "dominant", "why")}},
        "per_layer": per_layer,
    }
    return out


def bounds(module: A.Module) -> list[list[Bound]]:
    """The symbolic Bound of every layer × head (``bound.evaluate(n)``, ``bound.summary()``)."""
    with deep_recursion():
        return _layer_bounds(module)


def growth(compiled) -> dict:
    """The growth class of a CompiledPattern, per layer × head and for the whole file:

        {"n", "growth": "O(n^1.5)", "tight": bool, "bound": "Θ(n^1.5)" or "O(…)",
         "exponent": [a, b] (n^a log^b n, as fraction strings),
         "dominant": {"layer", "head", "per_row", "dominant", "why"},
         "per_layer": [[{"growth", "tight", "bound", "exponent", "per_row" (the per-row
                         degree bound, a formula in n), "per_row_class",
                         "exceptional_rows", "dominant", "why", "bound_at_n"}]]}

    "tight" means the count is Θ of the class; otherwise only O is proved.
    "bound_at_n" is a rigorous upper bound on the exact count at this n."""
    return _report(compiled.module, compiled.n)


def growth_formula(source: "str | Path | A.Module") -> dict:
    """The same report with no n (`patterndsl check` without --n): the bounds as formulas
    in n. The source must be valid (compile it first for diagnostics)."""
    if not isinstance(source, A.Module):
        from ..compiled import parse

        source = parse(source)
    return _report(source, None)
