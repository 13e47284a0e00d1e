"""The growth class of the connection count: O(n), O(n log n), O(n^1.5), O(n²), or in
general O(n^a log^b n), proved from per-row degree bounds (the README's "What `check`
proves").

How it works
------------
The file is evaluated by patterndsl/resolve.py's evaluator — the one that compiles
it, with its lets, defs, calls, builtins and diagnostics — in a symbolic domain
(`Symbolic`): n is unknown, every integer is a `Quantity`, every pattern a `Bound`.
This module keeps only the algebra of the two.

A Quantity is the expression exactly: Σ coef·atom + constant with integer
coefficients over *atoms* (n, isqrt(x), x // y, min(…), |R|, …), so its text and
its value at any n (`at`) are the expression as written, and equal expressions are
equal Quantities (`n // 3 - n // 3` is 0). It is analysed as a `Form`: the same sum
with rational coefficients over opaque atoms and a constant interval — x // k is
x/k − [0, (k−1)/k], cdiv(x, k) likewise, x % k is in [0, k − 1] — from which come,
for all large n,

    |value(n)| ≤ C·hi(n),       value(n) ≥ c·lo(n) > 0 (lo None: unknown),   nonneg,

with hi = the largest class among the terms, lo = the largest lower class of the
positive terms when every other term is of a smaller class (n − isqrt(n) ≥ c·n;
n − n // 2 ≥ n/2). Opaque atoms carry their own classes:

    n               hi = lo = n
    x · y           exponents add (lo only when both are known)
    x // y          hi = max(hi(x)/lo(y), 1) (hi(x) + 1 if lo(y) unknown);
                    lo = lo(x)/hi(y) when that still grows (⌊·⌋ may reach 0 otherwise)
    cdiv(x, y)      as //, and lo = max(lo(x)/hi(y), 1) when x, y > 0
    x % y           hi = min(hi x, hi y) if x, y ≥ 0 else hi y; lo unknown
    isqrt(x)        exponents halve
    ilog2(x)        log n if x grows, else constant
    min, max        an operand provably the least (greatest) for large n stands for
                    the whole; else componentwise over the others

An index list's size |R ∩ [0, n)| comes from its items' bounds, not from n: a range
lo..hi holds min(hi, n) − max(lo, 0) = min over u ∈ {hi's min operands, n},
l ∈ {lo's max operands, 0} of u − l indices, so `n-4..n` is Θ(1),
`n//2..n//2+3` Θ(1), `max(0, n - isqrt(n))..n` Θ(n^0.5); an index x counts 1 when
n − x ≥ 1 provably.

Each primitive gives `row_bound(args, n, ops)` (patterndsl/primitives.py): a
bound D on the degree of all rows but E of them (those ≤ n), so that

    count ≤ n·min(D, n) + n·min(E, n),

and whether that bound is tight (count ≥ c·n·(D + E)). The same method run with
ints gives the concrete bound at one n (`Bound.evaluate`), so the bound that the
class is read off is the one the tests check against the exact counter.

Operators: a union sums the D's and the E's, and its count is at least each
part's (tight when the largest part is); an intersection takes the least of its
parts' bounds and of (min D, ΣE); a difference keeps its left side's bound
(|A − B| = |A| − |A ∩ B| keeps it tight when A ∩ B is smaller); a complement is
bounded by n² (tight when its operand is o(n²), or its rows leave ≥ c·n keys out:
n − D − E ≥ c·n, as in `~stride(2)`); ~~A is A, A − ~B is A ∩ B, A ∩ ~C is A − C.
Intersections also count rows and columns apart (the *terms* below), which bounds
`cols(0..4) & window(8)` by O(1). Lower bounds for intersections:
|A ∩ T| ≥ c·|A| when T holds the lower triangle (RowBound.lower_triangle: causal,
all) and A is symmetric or `causal_dense`; a pattern that holds every (i, i) has
≥ n connections; and every pattern has *shapes* ("lower bounds" below): boxes of rows
× cols × offsets that it holds in full, periodically or by a count of keys a row, met
through & (rows of one inside the other's), − and ~ (less the taken pattern's rows, its
outer boxes or its runs), blocks and transpose, whose counts are read off rows × keys.

`growth(compiled)` reports every layer × head and the whole file;
`growth_formula(source)` the same with no n.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Callable

from .. import ast as A
from ..compiled import load_source, parse
from ..errors import Source
from ..ir import IndexSet
from ..primitives import ParamError, RowBound
from ..resolve import COMPARISONS, MAX_N, Integers, RangeValue, deep_recursion, evaluate

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


def _plain(text: str) -> bool:
    """No space or product sign outside parentheses."""
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char in " ·":
            return False
    return True


# ---- quantities -------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """The analysis's view of a quantity: Σ coef·atom + a constant in [low, high], over
    opaque atoms (rational coefficients: n // 3 is n/3 − [0, 2/3]). Its classes (the
    rules in the module's docs) hold for all large n."""

    terms: tuple = ()  # ((opaque Atom, Fraction coefficient ≠ 0), …)
    low: Fraction = Fraction(0)
    high: Fraction = Fraction(0)

    def plus(self, other: "Form", sign: int = 1) -> "Form":
        terms = dict(self.terms)
        for atom, coef in other.terms:
            terms[atom] = terms.get(atom, 0) + sign * coef
        low, high = (other.low, other.high) if sign > 0 else (-other.high, -other.low)
        return Form(tuple((a, c) for a, c in terms.items() if c != 0), self.low + low, self.high + high)

    def scale(self, k: Fraction) -> "Form":
        if k == 0:
            return Form()
        low, high = sorted((self.low * k, self.high * k))
        return Form(tuple((a, c * k) for a, c in self.terms), low, high)

    def widen(self, low: Fraction, high: Fraction) -> "Form":
        return Form(self.terms, self.low + low, self.high + high)

    @property
    def zero(self) -> bool:
        return not self.terms and self.low == self.high == 0

    @cached_property
    def hi(self) -> Cls:
        his = [atom.hi for atom, _ in self.terms]
        return max(his + [ONE]) if (self.low or self.high or not his) else max(his)

    @cached_property
    def lo(self) -> Cls | None:
        """A class L with value ≥ c·L > 0 for all large n: the largest lower class of the
        positive terms, when every other term is of a smaller class."""
        positive = [a.lo for a, c in self.terms if c > 0 and a.nonneg and a.lo is not None]
        others = [a.hi for a, c in self.terms if not (c > 0 and a.nonneg)]
        if self.low > 0:
            positive.append(ONE)
        elif self.low < 0:
            others.append(ONE)
        if not positive:
            return None
        lo = max(positive)
        return lo if not others or max(others) < lo else None

    @cached_property
    def nonneg(self) -> bool:
        return self.lo is not None or (self.low >= 0 and all(c > 0 and a.nonneg for a, c in self.terms))


class Atom:
    """A subexpression that is not a sum of others: n, isqrt(x), x // y, min(…), |R|, …

    Atoms are equal when their operation and operands are: equal atoms are the same
    expression in n. An *opaque* atom has its own classes (hi, lo, nonneg); the
    others (x // k, cdiv(x, k), x % k for a constant k, a min or max one of whose
    operands is provably the least or greatest) analyse as a `Form` of other atoms."""

    __slots__ = ("op", "operands", "text", "at", "hi", "lo", "nonneg", "form", "parts", "shown_as", "_hash")

    def __init__(self, op: str, operands: tuple, text: str, at: Callable[[int], int], *, hi: Cls = ONE,
                 lo: Cls | None = None, nonneg: bool = False, form: Form | None = None, parts: tuple = (),
                 shown_as: int | None = None):
        self.op, self.operands, self.at = op, operands, at
        self.shown_as = shown_as  # printed as this constant (its value for every large n)
        self.text = _clip(text)
        self.hi, self.lo, self.nonneg = hi, lo, nonneg or lo is not None
        self.form = form if form is not None else Form(((self, Fraction(1)),))
        self.parts = parts  # for min and max: the operands that can be the least (greatest)
        self._hash = hash((op, operands))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (isinstance(other, Atom) and self._hash == other._hash and self.op == other.op
                                 and self.operands == other.operands)

    def __repr__(self):
        return f"Atom({self.text})"


_MAX_TEXT = 160  # the readable text of an atom, cut in the middle beyond this


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT // 2] + " … " + text[-_MAX_TEXT // 2:]


class Quantity:
    """An integer expression in n, exactly: Σ coef·atom + constant with int coefficients
    (its text and `at(n)` are the expression as written), analysed as a `Form`.
    Quantities are equal when their expressions are (they key the evaluator's caches)."""

    __slots__ = ("terms", "constant", "form", "_hash")

    def __init__(self, terms: tuple = (), constant: int = 0):
        self.terms = terms  # ((Atom, int ≠ 0), …) in first-seen order (for the text)
        self.constant = constant
        form = Form(low=Fraction(constant), high=Fraction(constant))
        for atom, coef in terms:
            form = form.plus(atom.form.scale(Fraction(coef)))
        self.form = form
        self._hash = hash((frozenset(terms), constant))

    @staticmethod
    def of(value) -> "Quantity":
        return value if isinstance(value, Quantity) else Quantity((), int(value))

    @staticmethod
    def atom(atom: Atom) -> "Quantity":
        return Quantity(((atom, 1),), 0)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (isinstance(other, Quantity) and self._hash == other._hash
                                 and self.constant == other.constant and dict(self.terms) == dict(other.terms))

    # the classes (of the form)

    @property
    def const(self) -> int | None:
        """The value, when it does not depend on n."""
        return None if self.terms else self.constant

    @property
    def hi(self) -> Cls:
        return self.form.hi

    @property
    def lo(self) -> Cls | None:
        return self.form.lo

    @property
    def nonneg(self) -> bool:
        return self.form.nonneg

    @property
    def zero(self) -> bool:
        """0 for all large n."""
        return self.form.zero

    @property
    def grows(self) -> bool:
        return self.lo is not None and self.lo > ONE

    def at(self, n: int) -> int:
        return sum(coef * atom.at(n) for atom, coef in self.terms) + self.constant

    # the text

    @property
    def simple(self) -> bool:
        """One term with coefficient 1 and no constant, or a constant ≥ 0: needs no parentheses."""
        text = str(self)
        return text.lstrip("-") == text and _plain(text) or text.isdigit()

    def __str__(self) -> str:
        out, constant = "", self.constant
        for atom, coef in self.terms:
            if atom.shown_as is not None:
                constant += coef * atom.shown_as
                continue
            sign = "-" if coef < 0 else "+"
            body = atom.text if abs(coef) == 1 else f"{abs(coef)}·{atom.text}"
            out = (("-" if sign == "-" else "") + body) if not out else f"{out} {sign} {body}"
        if not out:
            return str(constant)
        if constant:
            out += f" {'-' if constant < 0 else '+'} {abs(constant)}"
        return out

    __repr__ = __str__

    # arithmetic (ints are coerced)

    def __add__(self, other):
        return _add(self, Quantity.of(other))

    __radd__ = __add__

    def __sub__(self, other):
        return _add(self, Quantity.of(other), -1)

    def __rsub__(self, other):
        return _add(Quantity.of(other), self, -1)

    def __neg__(self):
        return _scale(self, -1)

    def __mul__(self, other):
        return _mul_q(self, Quantity.of(other))

    __rmul__ = __mul__

    def __floordiv__(self, other):
        return _floordiv(self, Quantity.of(other), ceil=False)

    def __mod__(self, other):
        return _mod(self, Quantity.of(other))


def _add(x: Quantity, y: Quantity, sign: int = 1) -> Quantity:
    terms = dict(x.terms)
    for atom, coef in y.terms:
        terms[atom] = terms.get(atom, 0) + sign * coef
    return Quantity(tuple((a, c) for a, c in terms.items() if c != 0), x.constant + sign * y.constant)


def _scale(x: Quantity, k: int) -> Quantity:
    if k == 0:
        return Quantity.of(0)
    return Quantity(tuple((a, c * k) for a, c in x.terms), x.constant * k)


def _wrap(x: Quantity) -> str:
    return str(x) if x.simple else f"({x})"


def _mul_q(x: Quantity, y: Quantity) -> Quantity:
    if x.const is not None:
        return _scale(y, x.const)
    if y.const is not None:
        return _scale(x, y.const)
    lo = _mul(x.lo, y.lo) if x.lo is not None and y.lo is not None else None
    return Quantity.atom(Atom("*", (x, y), f"{_wrap(x)}·{_wrap(y)}", lambda n: x.at(n) * y.at(n),
                              hi=_mul(x.hi, y.hi), lo=lo, nonneg=x.nonneg and y.nonneg))


def _floordiv(x: Quantity, y: Quantity, ceil: bool) -> Quantity:
    if x.const is not None and y.const is not None:
        return Quantity.of(-(-x.const // y.const) if ceil else x.const // y.const)
    if ceil:
        at = lambda n: -(-x.at(n) // y.at(n))  # noqa: E731
        op, text = "cdiv", f"cdiv({x}, {y})"
    else:
        at = lambda n: x.at(n) // y.at(n)  # noqa: E731
        op, text = "//", f"{_wrap(x)} // {_wrap(y)}"
    if y.const is not None:
        # x / k rounded: within (|k| − 1)/|k| of it, below for //, above for cdiv.
        slack = Fraction(abs(y.const) - 1, abs(y.const))
        form = x.form.scale(Fraction(1, y.const)).widen(*((0, slack) if ceil else (-slack, 0)))
        return Quantity.atom(Atom(op, (x, y), text, at, form=form))
    hi = max(_div(x.hi, y.lo), ONE) if y.lo is not None else max(x.hi, ONE)
    lo = None
    if x.lo is not None and y.lo is not None:
        quotient = _div(x.lo, y.hi)
        if ceil:
            lo = max(quotient, ONE)  # ⌈x/y⌉ ≥ x/y, and ≥ 1 as x, y > 0
        elif quotient > ONE:
            lo = quotient  # (⌊·⌋ may reach 0 when it does not grow)
    return Quantity.atom(Atom(op, (x, y), text, at, hi=hi, lo=lo, nonneg=x.nonneg and y.nonneg))


def _mod(x: Quantity, y: Quantity) -> Quantity:
    if x.const is not None and y.const is not None:
        return Quantity.of(x.const % y.const)
    at, text = (lambda n: x.at(n) % y.at(n)), f"{_wrap(x)} % {_wrap(y)}"
    if y.const is not None:  # in [0, k − 1] (k > 0) or [k + 1, 0]
        k = y.const
        low, high = (0, k - 1) if k > 0 else (k + 1, 0)
        return Quantity.atom(Atom("%", (x, y), text, at, form=Form((), Fraction(low), Fraction(high))))
    hi = min(x.hi, y.hi) if x.nonneg and y.nonneg else y.hi
    return Quantity.atom(Atom("%", (x, y), text, at, hi=hi, nonneg=y.nonneg))


def q_isqrt(x: Quantity) -> Quantity:
    if x.const is not None:
        return Quantity.of(math.isqrt(x.const))
    return Quantity.atom(Atom("isqrt", (x,), f"isqrt({x})", lambda n: math.isqrt(x.at(n)), hi=_half(x.hi),
                              lo=None if x.lo is None else _half(x.lo), nonneg=True))


def _log_classes(x: Quantity) -> tuple[Cls, Cls | None]:
    """hi and lo of ⌊log2 x⌋ or ⌈log2 x⌉."""
    lo = LOG if (x.lo is not None and x.lo[0] > 0) else None
    return (LOG if x.hi > ONE else ONE), lo


def q_ilog2(x: Quantity) -> Quantity:
    if x.const is not None:
        return Quantity.of(x.const.bit_length() - 1)
    hi, lo = _log_classes(x)
    if lo is None and x.grows:
        lo = ONE
    return Quantity.atom(Atom("ilog2", (x,), f"ilog2({x})", lambda n: x.at(n).bit_length() - 1,
                              hi=hi, lo=lo, nonneg=True))


def q_clog2(x: Quantity) -> Quantity:
    """⌈log2 x⌉ = (x − 1).bit_length() for x ≥ 1."""
    if x.const is not None:
        return Quantity.of(max(x.const - 1, 0).bit_length())
    hi, lo = _log_classes(x)
    return Quantity.atom(Atom("clog2", (x,), f"⌈log2 {x}⌉", lambda n: max(x.at(n) - 1, 0).bit_length(),
                              hi=hi, lo=lo, nonneg=True))


def _at_most(x: Quantity, y: Quantity) -> bool:
    """x ≤ y for all large n (provably)."""
    return (y - x).nonneg


def _extremum(op: str, args) -> Quantity:
    qs = list(dict.fromkeys(Quantity.of(a) for a in args))  # (equal operands once)
    if all(q.const is not None for q in qs):
        return Quantity.of((min if op == "min" else max)(q.const for q in qs))
    fs = tuple(q.at for q in qs)
    text = f"{op}({', '.join(str(q) for q in qs)})"
    at = (lambda n: min(f(n) for f in fs)) if op == "min" else (lambda n: max(f(n) for f in fs))
    # The operands that can be the least (for min; the greatest for max) for large n.
    beaten = (lambda a, b: _at_most(b, a)) if op == "min" else _at_most
    parts = tuple(a for k, a in enumerate(qs)
                  if not any(beaten(a, b) and (k2 < k or not beaten(b, a)) for k2, b in enumerate(qs) if k2 != k))
    if len(parts) == 1:
        return Quantity.atom(Atom(op, tuple(qs), text, at, form=parts[0].form, parts=parts))
    if op == "min":
        nonneg = all(q.nonneg for q in parts)
        hi = min(q.hi for q in parts) if nonneg else max(q.hi for q in parts)
        lo = min(q.lo for q in parts) if all(q.lo is not None for q in parts) else None
    else:
        known = [q.lo for q in parts if q.lo is not None]
        hi, lo, nonneg = max(q.hi for q in parts), (max(known) if known else None), any(q.nonneg for q in parts)
    return Quantity.atom(Atom(op, tuple(qs), text, at, hi=hi, lo=lo, nonneg=nonneg, parts=parts))


def q_min(*args) -> Quantity:
    return _extremum("min", args)


def q_max(*args) -> Quantity:
    return _extremum("max", args)


def q_cdiv(x, y) -> Quantity:
    return _floordiv(Quantity.of(x), Quantity.of(y), ceil=True)


N_QUANTITY = Quantity.atom(Atom("n", (), "n", lambda n: n, hi=N, lo=N, nonneg=True))
ZERO = Quantity.of(0)


def _parts(x: Quantity, op: str) -> list[Quantity]:
    """The operands of x when x is min(…) (op "min") or max(…), recursively; else [x]."""
    if x.constant == 0 and len(x.terms) == 1 and x.terms[0][1] == 1 and x.terms[0][0].op == op:
        return [q for part in x.terms[0][0].parts for q in _parts(part, op)]
    return [x]


def _item_classes(item, n: Quantity = None) -> tuple[Cls | None, Cls | None]:
    """(hi, lo) of |item ∩ [0, n)| for an index (a Quantity) or a range lo..hi: hi None
    when it is 0 for all large n. A range holds min(hi, n) − max(lo, 0) =
    min over u ∈ {hi's min operands, n}, l ∈ {lo's max operands, 0} of u − l indices."""
    n = N_QUANTITY if n is None else n  # (⌈n/B⌉ for a list inside blocks(B) { })
    if isinstance(item, RangeValue):
        uppers, lowers = _parts(item.hi, "min") + [n], _parts(item.lo, "max") + [ZERO]
    else:
        uppers, lowers = [n], [item]  # the index is in [0, n) when n − item ≥ 1
    gaps = [u - l for u in uppers for l in lowers]
    if any((-gap).nonneg for gap in gaps):
        return None, None  # empty for large n
    if not isinstance(item, RangeValue):
        return ONE, (ONE if gaps[0].lo is not None else None)
    los = [gap.lo for gap in gaps]
    return min(min(gap.hi for gap in gaps), N), (min(los) if all(lo is not None for lo in los) else None)


def _index_size(items, n: Quantity = None) -> Quantity:
    """|R ∩ [0, n)| for the items of an index list (Quantities and RangeValues); ``n`` the
    size the list selects from (the sequence length unless given)."""
    items = tuple(items)
    classes = [_item_classes(item, n) for item in items]
    his = [hi for hi, _ in classes if hi is not None]
    known = [lo for _, lo in classes if lo is not None]

    def at(n):
        pairs = [(i.lo.at(n), i.hi.at(n)) if isinstance(i, RangeValue) else (i.at(n), i.at(n) + 1) for i in items]
        return len(IndexSet.of(pairs, n))

    texts = [f"{i.lo}..{i.hi}" if isinstance(i, RangeValue) else str(i) for i in items]
    text = "|{" + ", ".join(texts) + "}|"  # the size of the index set
    consts = all((i.lo.const is not None and i.hi.const is not None) if isinstance(i, RangeValue) else
                 i.const is not None for i in items)
    shown_as = None
    if consts:  # |R| is then constant for large n (n beyond every index)
        big = max((i.hi.const if isinstance(i, RangeValue) else i.const + 1) for i in items)
        # (shown as its value: for n beyond every index, which is what a growth class is about)
        shown_as = at(big) or None
    form = Form() if not his else None
    return Quantity.atom(Atom("size", items, text, at, hi=max(his, default=ONE),
                              lo=max(known) if known else None, nonneg=True, form=form, shown_as=shown_as))


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
    def linear(x) -> bool:
        lo = Quantity.of(x).lo
        return lo is not None and lo >= N

    @staticmethod
    def same(x, y) -> bool:
        return Quantity.of(x) == Quantity.of(y)


def _sized_ops(size: Quantity):
    """`ops` for a primitive built for ``size`` (inside blocks): index lists select from it."""
    return type("_SizedOps", (_AbstractOps,), {"size": staticmethod(lambda items: _index_size(items, size))})


class _ConcreteOps:
    """`ops` for Primitive.row_bound with ints (one n); the predicates are not used."""

    min = staticmethod(min)
    cdiv = staticmethod(lambda a, b: -(-a // b))
    clog2 = staticmethod(lambda x: max(x - 1, 0).bit_length())
    nonneg = staticmethod(lambda x: x >= 0)
    const = staticmethod(lambda x: True)
    small = staticmethod(lambda x: True)
    linear = staticmethod(lambda x: True)
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
    lower_triangle: bool = False  # holds every (i, j) with j ≤ i
    apart: bool = False  # hi is the class of the terms (rows and columns counted apart), below the row bound's
    held: bool = False  # lo is read off a shape it holds (see "lower bounds" above)
    empty: bool = False  # no connections for large n

    @property
    def tight(self) -> bool:
        return self.lo is not None and self.lo == self.hi


def _count_class(degree: Quantity, exceptional: Quantity) -> Cls:
    if degree.zero and exceptional.zero:
        return ONE  # no connections at all (for large n)
    return _mul(N, min(max(degree.hi, exceptional.hi), N))


# ---- rows and columns counted apart ---------------------------------------------------------
#
# Beside its row bound, each pattern has a list of *terms* whose counts add up to a bound
# on its count: a term is a pair of views, rows and columns; a view is a list of groups
# (r, d): r rows (columns) of at most d keys each, every row in some group, so the term
# counts ≤ min over its views of Σ r·d. A primitive is one term (two for
# global(R) = rows(R) | cols(R): RowBound.parts) whose rows are the groups (n, D) and
# (E, n) of its row bound, its columns those of RowBound.columns (its rows again when
# symmetric; else (n, n)). A union joins the terms; an intersection pairs them —
# A ∩ B ⊆ ∪ (Aᵢ ∩ Bⱼ) — and meets each pair's views: a row in A's group (r, d) and in
# B's group (r', d') holds ≤ min(d, d') keys, and there are ≤ min(r, r') such rows, so
#
#     view_A ∩ view_B = [(min(r, r'), min(d, d')) for (r, d) in view_A for (r', d') in view_B].
#
# `cols(0..4) & window(8)` is then O(1) by its columns (4 columns of ≤ 17 keys),
# `rows(n-8..n) & window(2)` by its rows. The same arithmetic runs on Quantities (the
# class) and on ints (the bound at one n).

MAX_TERMS = 16  # beyond, the terms are merged into one (their views' groups joined)
MAX_GROUPS = 16  # beyond, a view's groups are merged into one (Σ r rows of ≤ max d keys)


class _Counting:
    """The arithmetic of terms: symbolic (n unknown) or at one n (ints, clamped to [0, n])."""

    def __init__(self, n, minimum, maximum, size, zero):
        self.n, self.min, self.max, self.size, self.zero = n, minimum, maximum, size, zero
        self.memo: dict = {}  # id(bound) → its terms (at one n: one evaluation)

    @staticmethod
    def at(n: int) -> "_Counting":
        return _Counting(n, min, max, lambda x: min(max(int(x), 0), n), lambda x: x == 0)


SYMBOLIC = _Counting(N_QUANTITY, q_min, q_max, Quantity.of, lambda x: x.zero)


def _view(groups, c: _Counting) -> tuple:
    """The groups (r, d) with r and d sized (≤ n), less the empty ones, at most MAX_GROUPS."""
    groups = [(c.size(r), c.size(d)) for r, d in groups]
    groups = tuple((r, d) for r, d in groups if not (c.zero(r) or c.zero(d)))
    if len(groups) <= MAX_GROUPS:
        return groups
    return ((c.size(sum((r for r, _ in groups[1:]), groups[0][0])), c.max(*[d for _, d in groups])),)


def _leaf_terms(rb: RowBound, c: _Counting) -> list:
    if rb.parts:
        return [term for part in rb.parts for term in _leaf_terms(part, c)]
    rows = _view(((c.n, rb.degree), (rb.exceptional, c.n)), c)
    if rb.columns is not None:
        columns = _view(((c.n, rb.columns.degree), (rb.columns.exceptional, c.n)), c)
    else:
        columns = rows if rb.symmetric else _view(((c.n, c.n),), c)
    return [(rows, columns)]


def _meet(a: tuple, b: tuple, c: _Counting) -> tuple:
    return _view([(c.min(r, s), c.min(d, e)) for r, d in a for s, e in b], c)


def _joined(terms: list, c: _Counting) -> list:
    if len(terms) <= MAX_TERMS:
        return terms
    return [tuple(_view([group for term in terms for group in term[k]], c) for k in (0, 1))]


def _view_class(view: tuple) -> Cls | None:
    """The class of Σ r·d; None when it is 0 for large n."""
    return max((_mul(min(r.hi, N), min(d.hi, N)) for r, d in view), default=None)


def _terms_class(terms: list) -> Cls | None:
    """The class of the terms' count (None: none for large n)."""
    classes = []
    for rows, columns in terms:
        views = [_view_class(rows), _view_class(columns)]
        if None not in views:
            classes.append(min(views))
    return max(classes, default=None)


def _terms_count(terms: list, n: int) -> int:
    return min(n * n, sum(min(sum(r * d for r, d in view) for view in term) for term in terms))



# ---- lower bounds: parts held in full (inner shapes) -----------------------------------------
#
# Beside its upper bounds, each pattern has a list of *shapes*, sets of pairs that it holds
# for all large n, from which a lower bound on its count is read. A shape is
#
#     {(i, j): i ∈ rows, j ∈ cols, j − i ∈ band}        rows, cols, band: intervals [s, e)
#
# whose ends are symbolic: s = max(starts), e = min(ends) (an intersection joins the
# lists; an empty band list is unbounded) — held in one of three ways:
#   * in full (every such pair: `all`, `causal`, window(l, r) as the band [−l, r + 1),
#     rows(R), cols(R), the first chunk of chunk(b), the last c keys of summary(b, c)'s
#     first chunk);
#   * periodically (p, q): any run of L consecutive keys of a row of the shape holds
#     ≥ q·⌊L/p⌋ of the pattern's (stride(s): (s, 1) in j − i; dilated(w, d): (d, 1) in
#     its band; summary(b, c): (b, c) in j);
#   * by count d: each row of the shape holds ≥ d keys in cols whose offsets lie in the
#     band (random(r): min(r, n) anywhere; chunk(b): b keys within |j − i| < b in the rows
#     i ≤ n − b).
# A difference A − B (and ~B = all − B) keeps A's shapes in three ways: less B's rows (every
# row but B's E exceptional ones loses ≤ D keys, B's row bound: the shape carries (D, E) to
# subtract); avoiding B's *outer boxes* (boxes whose union holds B: rows(R), cols(R), a band;
# the parts of the shape before or after each box in rows, cols or offsets); thinned by B's
# runs (stride(s) takes ≤ ⌈L/s⌉ of L consecutive keys, summary(b, c) ≤ c·⌈L/b⌉). An
# intersection meets its parts' shapes pairwise: in full ∩ any is the latter on the common
# rows, cols and band; periodic ∩ periodic only for one same set (one residue class mod p,
# or one summary); by count ∩ in full only when the count's cols and band lie in the
# other's (no key lost). blocks(B) { A } maps A's shapes to tokens (a block band [a, b)
# holds the token band [B·a + B − 1, B·b − 2B + 2); periodic (p, q) becomes (2pB, qB); d key
# blocks ≥ (d − 1)·B + 1 keys); transpose swaps rows and cols of shapes held in full.
#
# A shape's count is at least rows × keys for any of these rows (each needs its ends'
# gaps provably ≥ c·L > 0 for large n):
#   1. the rows whose whole band lies in cols: b − a keys each; or only its right end
#      (min(b − a, i + b − c0) keys, i ≥ the first row) or only its left end;
#   2. the rows whose band covers cols: |cols| keys each;
#   3. with j = i in the band, the square rows ∩ cols (side L): its first ⌊L/2⌋ rows hold
#      min(b, ⌈L/2⌉) keys from the diagonal on, its last ⌊L/2⌋ min(1 − a, ⌈L/2⌉) before it;
#   4. periodic in j: one diagonal j = i + k of the band, q·⌊L/p⌋ pairs for its L rows;
# keys ⌊·/p⌋·q when periodic, less the thinning (Σ q/p < 1), less D (when D is of a smaller
# class), rows less E (likewise).

MAX_SHAPES = 24  # beyond, an operator keeps the first ones with a lower bound (fewer: a weaker one)
MAX_ENDS = 4  # beyond, an interval's starts (ends) are one max (min) atom


def _ends(items, op: str) -> tuple:
    """The starts (op "max") or ends ("min") of an interval, their max/min operands spread,
    less those provably beaten by another for large n (equal ones once)."""
    flat = list(dict.fromkeys(q for item in items for q in _parts(Quantity.of(item), op)))
    beaten = _below if op == "max" else (lambda a, b: _below(b, a))
    kept = [a for k, a in enumerate(flat)
            if not any(beaten(a, b) and (k2 < k or not beaten(b, a)) for k2, b in enumerate(flat) if k2 != k)]
    if len(kept) > MAX_ENDS:  # one max (min) of them all: exact (dropping some would widen the interval)
        return ((q_max if op == "max" else q_min)(*kept),)
    return tuple(kept)


@lru_cache(maxsize=1 << 16)
def _difference(y: Quantity, x: Quantity) -> Form:
    """The form of y − x (without building the Quantity)."""
    return y.form.plus(x.form, -1)


def _below(x: Quantity, y: Quantity) -> bool:
    """x ≤ y for all large n (as _at_most, through the cached form)."""
    return _difference(y, x).nonneg


def _gap_lo(ends, starts) -> Cls | None:
    """A class L with min(ends) − max(starts) ≥ c·L > 0 for all large n (None: not provable)."""
    los = [_difference(e, s).lo for e in ends for s in starts]
    return min(los) if los and None not in los else None


def _gap_at(ends, starts, n: int) -> int:
    return max(0, min(e.at(n) for e in ends) - max(s.at(n) for s in starts))


@dataclass(frozen=True)
class _Shape:
    rows: tuple  # (starts, ends)
    cols: tuple
    band: tuple  # offsets j − i: (starts, ends); an empty list is unbounded
    period: tuple | None = None  # (p, q, ident, along): periodic; along "j" (in the key) or "j-i"
    count: Quantity | None = None  # held by count d (cols and band bound where the keys lie)
    less: tuple = ()  # ((D, E), …): rows lose ≤ D keys each, E rows all
    thin: tuple = ()  # ((p, q), …): any run of L keys loses ≤ q·⌈L/p⌉

    def meet(self, other: "_Shape") -> "_Shape | None":
        """A shape of the intersection (None: none proved)."""
        if self.count is not None and other.count is not None:
            return None
        a, b = (other, self) if other.count is not None else (self, other)  # (a the count, if any)
        less, thin = a.less + b.less, a.thin + b.thin
        if a.count is not None:
            if b.period is not None or b.thin or not (_contains(b.cols, a.cols) and _contains(b.band, a.band)):
                return None
            return _Shape(_meet_interval(a.rows, b.rows), a.cols, a.band, None, a.count, less)
        if a.period is not None and b.period is not None and a.period != b.period:
            return None
        if thin and (a.period or b.period):
            return None
        return _Shape(_meet_interval(a.rows, b.rows), _meet_interval(a.cols, b.cols), _meet_interval(a.band, b.band),
                      a.period or b.period, None, less, thin)

    def minus(self, degree: Quantity, exceptional: Quantity) -> "_Shape":
        return dataclasses.replace(self, less=self.less + ((degree, exceptional),))

    def avoid(self, box: tuple) -> list:
        """Shapes of this one less the pairs of ``box`` (rows, cols, band: an outer bound of
        what is taken away): the parts before or after it in each coordinate. (A count's
        keys may lie anywhere in its cols and band: only its rows are cut.)"""
        out = []
        for k, (starts, ends) in enumerate(box):
            if k and self.count is not None:
                break
            field = ("rows", "cols", "band")[k]
            own = getattr(self, field)
            if starts:  # before the box: own ends at its start
                out.append(dataclasses.replace(self, **{field: _meet_interval(own, ((), starts))}))
            if ends:  # after it
                out.append(dataclasses.replace(self, **{field: _meet_interval(own, (ends, ()))}))
        return out

    # the count

    def _candidates(self):
        """(row gaps, key gaps, needs, along) for each rule: rows and keys are the least of
        their gaps min(ends) − max(starts); the count is ≥ rows × keys (along: q·⌊rows/p⌋,
        one key a row on one diagonal) where each (x, y) of needs has x ≤ y (for all large n:
        proved; at one n: checked)."""
        (r0, r1), (c0, c1), (a, b) = self.rows, self.cols, self.band
        if self.count is not None:
            yield [(r1, r0)], [((self.count,), (ZERO,))], (), False
            return
        if a and b:  # 1. the band inside cols: i + a ≥ c0 and i + b ≤ c1 (one of a's and b's each)
            for ak in a:
                for bk in b:
                    yield [(r1 + tuple(e - bk + 1 for e in c1), r0 + tuple(s - ak for s in c0))], [(b, a)], (), False
        # 1b. its right end inside (i + b ≤ c1): min(b − a, i + b − c0) keys, i ≥ r0
        for bk in b:
            for rj in r0:
                keys = [(b, a)] * bool(a) + [(tuple(x + rj for x in b), c0)]
                yield [(r1 + tuple(e - bk + 1 for e in c1), r0)], keys, (), False
        # 1c. its left end inside (i + a ≥ c0): min(b − a, c1 − i − a) keys, i < r1
        for ak in a:
            for rj in r1:
                keys = [(b, a)] * bool(b) + [(tuple(e - rj + 1 for e in c1), a)]
                yield [(r1, r0 + tuple(s - ak for s in c0))], keys, (), False
        # 2. cols inside the band: i + a ≤ c0 and i + b ≥ c1 (one of c0's and c1's each)
        for ck in c0:
            for ek in c1:
                yield [(r1 + tuple(ck - ak + 1 for ak in a), r0 + tuple(ek - bk for bk in b))], [(c1, c0)], (), False
        # 3. the square rows ∩ cols with j = i in the band (a ≤ 0 < b): half-rows from the diagonal
        needs = tuple((ak, ZERO) for ak in a) + tuple((ONE_Q, bk) for bk in b)
        if all(_below(x, y) for x, y in needs):
            x0, x1 = r0 + c0, r1 + c1
            halves = tuple(q_cdiv(e - s, 2) for e in x1 for s in x0)  # ⌈L/2⌉ for each pair
            rows = [(tuple((e - s) // 2 for e in x1 for s in x0), (ZERO,))]  # ⌊L/2⌋
            yield rows, [(b + halves, (ZERO,))], needs, False
            yield rows, [(tuple(1 - ak for ak in a) + halves, (ZERO,))], needs, False
        # 3b. the band beside the diagonal (a ≥ 0, or b ≤ 1): the same half-rows, from i + a on
        # (min(b − a, ⌈L/2⌉ − a) keys) or up to i + b (min(b − a, ⌈L/2⌉ + b) keys)
        x0, x1 = r0 + c0, r1 + c1
        halves = tuple(q_cdiv(e - s, 2) for e in x1 for s in x0)
        rows = [(tuple((e - s) // 2 for e in x1 for s in x0), (ZERO,))]
        after = tuple((ZERO, ak) for ak in a)
        if a and all(_below(x, y) for x, y in after):
            yield rows, [(b, a)] * bool(b) + [(halves, a)], after, False
        before = tuple((bk, ONE_Q) for bk in b)
        if b and all(_below(x, y) for x, y in before):
            yield rows, [(b, a)] * bool(a) + [(tuple(h + bk for h in halves for bk in b), (ZERO,))], before, False
        # 4. periodic in j: one diagonal j = i + k of the band, k its least offset (or 0)
        if self.period is not None and self.period[3] == "j":
            k = q_max(*a) if a else (q_min(*b) - 1 if b else ZERO)
            yield ([(r1 + tuple(e - k for e in c1), r0 + tuple(s - k for s in c0))], [((ONE_Q,), (ZERO,))],
                   tuple((k + 1, bk) for bk in b), True)

    def _keys_lo(self, run: Cls | None, exact: int | None) -> Cls | None:
        """The class of the keys a row holds in a run of ≥ c·run consecutive ones (exact:
        its length when it is a constant)."""
        if run is None:
            return None
        if self.thin:
            # q/p of each run at most: Σ q/p < 1 for constants, or p growing (q constant)
            share = sum((Fraction(q.const, p.const) for p, q in self.thin if p.const and q.const is not None),
                        Fraction(0))
            others = [(p, q) for p, q in self.thin if not (p.const and q.const is not None)]
            if share >= 1 or run <= ONE or any(q.const is None or p.lo is None or p.lo <= ONE for p, q in others):
                return None
        if self.period is None:
            return run
        p, q = self.period[:2]
        if q.lo is None:
            return None
        if p.const == 1:
            return _mul(run, q.lo)
        if exact is not None and p.const is not None and q.const is not None:
            return ONE if q.const * (exact // p.const) > 0 else None
        per = _div(run, p.hi)
        return _mul(per, q.lo) if per > ONE else None

    @cached_property
    def lo(self) -> Cls | None:
        """A class L with count ≥ c·L for all large n (None: none proved)."""
        best = None
        for row_gaps, key_gaps, needs, along in self._candidates():
            if not all(_below(x, y) for x, y in needs):
                continue
            rows, keys = _gaps_lo(row_gaps), _gaps_lo(key_gaps)
            if along:  # q·⌊rows/p⌋ pairs, one a row: D > 0 may take each
                if any(not d.zero for d, _ in self.less) or self.thin:
                    continue
                rows, keys = self._keys_lo(rows, _gaps_exact(row_gaps)), ONE
            else:
                keys = self._keys_lo(keys, _gaps_exact(key_gaps))
            for degree, exceptional in self.less:
                rows = _less(rows, exceptional)
                keys = _less(keys, degree) if not along else keys
            if rows is not None and keys is not None:
                lo = _mul(rows, min(keys, N))
                best = lo if best is None else max(best, lo)
        return best

    def count_at(self, n: int) -> int:
        """The same lower bound at one n (rows × keys of the best rule there): ≤ the count."""
        best = 0
        for row_gaps, key_gaps, needs, along in self._candidates():
            if any(x.at(n) > y.at(n) for x, y in needs):
                continue
            rows, keys = min(_gaps_at(row_gaps, n), n), min(_gaps_at(key_gaps, n), n)  # (all within [0, n))
            for p, q in self.thin:
                keys -= q.at(n) * -(-keys // p.at(n))
            if self.period is not None:
                p, q = self.period[:2]
                if along:
                    rows, keys = q.at(n) * (rows // p.at(n)), (0 if any(d.at(n) for d, _ in self.less) else 1)
                else:
                    keys = q.at(n) * (keys // p.at(n))
            for degree, exceptional in self.less:
                rows, keys = rows - exceptional.at(n), keys - (0 if along else degree.at(n))
            best = max(best, max(rows, 0) * max(keys, 0))
        return best


def _gaps_lo(gaps) -> Cls | None:
    los = [_gap_lo(ends, starts) for ends, starts in gaps]
    return min(los) if los and None not in los else None


def _gaps_exact(gaps) -> int | None:
    """The least gap when every difference is a constant."""
    values = [(e - s).const for ends, starts in gaps for e in ends for s in starts]
    return min(values) if values and None not in values else None


def _gaps_at(gaps, n: int) -> int:
    return min(_gap_at(ends, starts, n) for ends, starts in gaps)


ONE_Q = Quantity.of(1)


def _less(lo: Cls | None, taken: Quantity) -> Cls | None:
    """The class of x − taken, given x ≥ c·lo: lo when taken is of a smaller class."""
    if lo is None or taken.zero:
        return lo
    return lo if taken.hi < lo else None


def _meet_interval(x: tuple, y: tuple) -> tuple:
    return _ends(x[0] + y[0], "max"), _ends(x[1] + y[1], "min")


def _contains(outer: tuple, inner: tuple) -> bool:
    """inner ⊆ outer for all large n: each of outer's starts ≤ one of inner's, each of its
    ends ≥ one of inner's (an empty list: unbounded)."""
    (s0, e0), (s1, e1) = outer, inner
    if (s0 and not s1) or (e0 and not e1):
        return False
    return (all(any(_below(a, b) for b in s1) for a in s0)
            and all(any(_below(b, a) for b in e1) for a in e0))


def _box(size: Quantity, rows=(ZERO,), rows_end=(), cols=(ZERO,), cols_end=(), band=((), ())) -> _Shape:
    return _Shape((_ends(rows + (ZERO,), "max"), _ends(tuple(rows_end) + (size,), "min")),
                  (_ends(cols + (ZERO,), "max"), _ends(tuple(cols_end) + (size,), "min")),
                  (_ends(band[0], "max"), _ends(band[1], "min")))


def _index_items(items) -> list[tuple]:
    """[(start, end)] of an index list's items (an index x: [x, x + 1))."""
    return [(Quantity.of(i.lo), Quantity.of(i.hi)) if isinstance(i, RangeValue) else (i, i + 1) for i in items]


def _leaf_shapes(leaf) -> list:
    """The shapes a primitive holds (its meaning, as the README's table states it)."""
    name, args, m = leaf.cls.name, leaf.args, leaf.built_for
    arg = lambda key: Quantity.of(args[key])  # noqa: E731
    plain = "offset" not in args or arg("offset").const == 0
    rb, replace = leaf._row_bound(SYMBOLIC), dataclasses.replace
    out = []
    if name == "all":
        out.append(_box(m))
    elif name == "causal":
        out.append(_box(m, band=((), (ONE_Q,))))
    elif name == "window":
        left, right = (arg("w"), arg("w")) if "w" in args else (arg("left"), arg("right"))
        out.append(_box(m, band=((-left,), (right + 1,))))
    elif name == "stride" and plain:
        out.append(replace(_box(m), period=(arg("s"), ONE_Q, ("residue", arg("s")), "j-i")))
    elif name == "dilated":
        reach = arg("w") * arg("d")
        residue = (arg("d"), ONE_Q, ("residue", arg("d")), "j-i")  # (within stride(d))
        out.append(replace(_box(m, band=((-reach,), (reach + 1,))), period=residue))
    elif name == "chunk" and plain:
        b = arg("b")
        out.append(_box(m, rows_end=(b,), cols_end=(b,)))  # the first chunk
        out.append(replace(_box(m, rows_end=(m - b + 1,), band=((1 - b,), (b,))), count=q_min(b, m)))
    elif name == "summary" and plain:
        b, c = arg("b"), arg("c")
        out.append(_box(m, cols=(b - c,), cols_end=(b,)))  # the first chunk's last c keys
        out.append(replace(_box(m), period=(b, c, ("summary", b, c), "j")))
    elif name in ("rows", "cols", "global"):
        for start, end in _index_items(args["R"]):
            if name != "cols":
                out.append(_box(m, rows=(start,), rows_end=(end,)))
            if name != "rows":
                out.append(_box(m, cols=(start,), cols_end=(end,)))
    elif name == "random" and "avoid" not in args:
        out.append(replace(_box(m), count=q_min(arg("r"), m)))
    elif name == "logsparse":
        out.append(_box(m, band=((-ONE_Q,), (Quantity.of(2),))))  # i and i ± 1
    if rb.reflexive:
        out.append(_box(m, band=((ZERO,), (ONE_Q,))))
    if rb.lower_triangle:
        out.append(_box(m, band=((), (ONE_Q,))))
    return out


def _domain(bound) -> Quantity | None:
    """The size its rows and keys range over (n, or ⌈n/B⌉ inside blocks(B) { }), read off its
    leaves (None: none is reached outside a nested blocks or grid, or they differ)."""
    if isinstance(bound, _Leaf):
        return bound.built_for
    if isinstance(bound, (_Blocks, _Grid)):
        return None
    found = {_domain(child) for child in bound.children}
    return found.pop() if len(found) == 1 else None


def _leaf_outer(leaf) -> list | None:
    """Boxes (rows, cols, band; an empty list unbounded) whose union holds the primitive
    (None: no such list; [] for `none`)."""
    name, args = leaf.cls.name, leaf.args
    arg = lambda key: Quantity.of(args[key])  # noqa: E731
    whole = ((), ())
    if name == "none":
        return []
    if name in ("rows", "cols", "global"):
        out = []
        for start, end in _index_items(args["R"]):
            side = ((start,), (end,))
            if name != "cols":
                out.append((side, whole, whole))
            if name != "rows":
                out.append((whole, side, whole))
        return out
    band = None
    if name == "window":
        left, right = (arg("w"), arg("w")) if "w" in args else (arg("left"), arg("right"))
        band = ((-left,), (right + 1,))
    elif name == "self":
        band = ((ZERO,), (ONE_Q,))
    elif name == "causal":
        band = ((), (ONE_Q,))
    elif name == "chunk":  # (any offset: a chunk's keys are within b − 1)
        band = ((1 - arg("b"),), (arg("b"),))
    elif name == "dilated":
        reach = arg("w") * arg("d")
        band = ((-reach,), (reach + 1,))
    elif name == "summary" and Quantity.of(args.get("offset", 0)).const == 0:
        return [(whole, ((arg("b") - arg("c"),), ()), whole)]  # j mod b ≥ b − c: j ≥ b − c
    return None if band is None else [(whole, whole, band)]


def _leaf_runs(leaf) -> tuple | None:
    """(p, q): any run of L consecutive keys of a row holds ≤ q·⌈L/p⌉ of the primitive's."""
    name, args = leaf.cls.name, leaf.args
    if name in ("stride", "summary") and Quantity.of(args.get("offset", 0)).const != 0:
        return None
    if name == "stride":
        return Quantity.of(args["s"]), ONE_Q
    if name == "dilated":
        return Quantity.of(args["d"]), ONE_Q
    if name == "summary":
        return Quantity.of(args["b"]), Quantity.of(args["c"])
    return None


MAX_OUTER = 4  # an outer list longer than this is not used
MAX_PIECES = 6  # pieces kept after each box avoided (those with the best lower bounds)


def _meet_boxes(x: tuple, y: tuple) -> tuple:
    return tuple(_meet_interval(a, b) for a, b in zip(x, y))


def _without(shapes: list, taken) -> list:
    """Shapes of A − B for A's shapes: less B's per-row bound (D, E); avoiding B's outer
    boxes; thinned by B's runs (shapes held in full)."""
    s = taken.summary()
    out = [shape.minus(s.degree, s.exceptional) for shape in shapes]
    boxes = taken.outer()
    if boxes is not None and len(boxes) <= MAX_OUTER:
        for shape in shapes:
            pieces = [shape]
            for box in boxes:
                pieces = _best(piece for p in pieces for piece in p.avoid(box))
            out += pieces
    runs = taken.runs()
    if runs is not None:
        out += [dataclasses.replace(shape, thin=shape.thin + (runs,)) for shape in shapes
                if shape.period is None and shape.count is None]
    return out


def _best(shapes, keep: int = MAX_PIECES) -> list:
    """The shapes with a lower bound, best first, at most ``keep``."""
    held = [s for s in dict.fromkeys(shapes) if s.lo is not None]
    return sorted(held, key=lambda s: s.lo, reverse=True)[:keep]


def _turned(band: tuple) -> tuple:
    """The offsets of the transpose: [a, b) becomes [1 − b, 1 − a)."""
    return tuple(1 - e for e in band[1]), tuple(1 - a for a in band[0])


def _kept(shapes) -> list:
    """At most MAX_SHAPES of them, those with a lower bound first."""
    shapes = list(dict.fromkeys(s for s in shapes if s is not None))
    if len(shapes) > MAX_SHAPES:
        shapes.sort(key=lambda s: s.lo is None)
    return shapes[:MAX_SHAPES]


def _scaled(shape: _Shape, b: Quantity, n: Quantity) -> _Shape | None:
    """A shape of A (over blocks of b tokens) as a shape of blocks(b) { A }."""
    scale = lambda xs: tuple(x * b for x in xs)  # noqa: E731
    (r0, r1), (c0, c1), (a, e) = shape.rows, shape.cols, shape.band
    rows = (_ends(scale(r0), "max"), _ends(scale(r1) + (n,), "min"))
    cols = (_ends(scale(c0), "max"), _ends(scale(c1) + (n,), "min"))
    less = tuple((d * b, x * b) for d, x in shape.less)
    if shape.thin:
        return None
    if shape.count is not None:  # the keys' blocks lie in [B·a − B + 1, B·e) of offsets
        band = (_ends(tuple(x * b - b + 1 for x in a), "max"), _ends(scale(e), "min"))
        return _Shape(rows, cols, band, None, shape.count * b - b + 1, less)
    band = (_ends(tuple(x * b + b - 1 for x in a), "max"), _ends(tuple(x * b - 2 * b + 2 for x in e), "min"))
    period = None
    if shape.period is not None:
        p, q, ident, along = shape.period
        period = (p * b * 2, q * b, ("blocks", b, ident), along)
    return _Shape(rows, cols, band, period, None, less)


class Bound:
    """A symbolic bound on the connection count of one pattern expression: the patterns
    of the symbolic domain. Bounds are equal when they are built alike from equal
    arguments (they key the evaluator's caches), and have a size and a depth, as IR
    patterns do (the evaluator limits them)."""

    precedence = 100  # (as the IR's, for the text)

    def __init__(self, key: tuple, children: tuple = ()):
        self.key, self.children = key, children
        self._hash = hash(key)
        self._size = 1 + sum(child._size for child in children)
        self._depth = 1 + max((child._depth for child in children), default=0)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (isinstance(other, Bound) and self._hash == other._hash and self.key == other.key)

    def size(self) -> int:
        return self._size

    def depth(self) -> int:
        return self._depth

    def _child_text(self, child: "Bound", strict: bool = False) -> str:
        weaker = child.precedence < self.precedence or (strict and child.precedence == self.precedence)
        return f"({child})" if weaker else str(child)

    def terms(self, c: _Counting) -> list:
        """Its terms (see above), symbolic or at one n."""
        memo = self.__dict__ if c is SYMBOLIC else c.memo
        key = "_symbolic_terms" if c is SYMBOLIC else id(self)
        if key not in memo:
            memo[key] = self._terms(c)
        return memo[key]

    def shapes(self) -> list:
        """Sets of pairs it holds for all large n (see above)."""
        cached = self.__dict__.get("_shapes")
        if cached is None:
            cached = self.__dict__["_shapes"] = _kept(self._shapes())
        return cached

    def _shapes(self) -> list:
        return []

    def outer(self) -> list | None:
        """Boxes whose union holds it, in its domain (None: not known)."""
        if "_outer" not in self.__dict__:
            self.__dict__["_outer"] = self._outer()
        return self.__dict__["_outer"]

    def _outer(self):
        return None

    def runs(self) -> tuple | None:
        """(p, q): any run of L keys of a row holds ≤ q·⌈L/p⌉ of its keys (None: not known)."""
        return None

    def summary(self) -> BoundSummary:
        cached = self.__dict__.get("_summary")
        if cached is None:
            cached = self._summary()
            apart = _terms_class(self.terms(SYMBOLIC))
            if apart is None or apart < cached.hi:
                cached.hi, cached.apart = apart or ONE, True
                cached.empty = apart is None
            if cached.reflexive and (cached.lo is None or cached.lo < N):
                cached.lo = N  # every (i, i): at least n connections
            held = max((s.lo for s in self.shapes() if s.lo is not None), default=None)
            if held is not None and (cached.lo is None or held > cached.lo):
                cached.lo, cached.held = held, True
            if cached.lo is not None and cached.lo > cached.hi:
                cached.lo = cached.hi  # (cannot happen; keeps the report consistent)
            self.__dict__["_summary"] = cached
        return cached

    def evaluate(self, n: int) -> int:
        """A rigorous upper bound on the connection count at ``n``, from the concrete
        parameter values (never below the exact count)."""
        return self.concrete(_Counting.at(n))[2]

    def concrete(self, c: _Counting) -> tuple[int, int, int]:
        """(D, E, count bound) at c.n, with D, E ≤ n and count ≤ n², the count also bounded
        by the terms (as the class is: the parts' counts that a parent takes are these)."""
        key = ("concrete", id(self))
        if key not in c.memo:
            degree, exceptional, count = self._concrete(c)
            c.memo[key] = (degree, exceptional, min(count, _terms_count(self.terms(c), c.n)))
        return c.memo[key]


class _Leaf(Bound):
    def __init__(self, cls, args: dict, size: Quantity = None):
        # size: the size the primitive is built for — n, or ⌈n/B⌉ inside blocks(B) { }
        # (its arguments keep n as the sequence length).
        self.cls, self.args, self.built_for = cls, args, N_QUANTITY if size is None else size
        super().__init__((cls, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in args.items()),
                          self.built_for))
        hidden = {spec.name for signature in cls.signatures for spec in signature if not spec.structural}
        defaults = {spec.name: spec.default for signature in cls.signatures for spec in signature
                    if spec.default is not None}  # an optional argument at its default is not shown
        hidden |= {k for k, v in args.items() if k in defaults and Quantity.of(v) == Quantity.of(defaults[k])}
        hidden.add("grid")  # (a grid primitive's grid: its enclosing grid's shape)
        shown = [", ".join(f"{i.lo}..{i.hi}" if isinstance(i, RangeValue) else str(i) for i in v)
                 if isinstance(v, list) else str(v) for k, v in args.items() if k not in hidden]
        self.text = f"{cls.name}({', '.join(shown)})" if args else cls.name

    def __str__(self):
        return self.text

    def _row_bound(self, c: _Counting) -> RowBound:
        if c is SYMBOLIC:
            if self.built_for is N_QUANTITY:
                return self.cls.row_bound(self.args, N_QUANTITY, _AbstractOps)
            return self.cls.row_bound(self.args, self.built_for, _sized_ops(self.built_for))
        n, args = c.n, {}
        for name, value in self.args.items():
            if isinstance(value, list):
                args[name] = [(v.lo.at(n), v.hi.at(n)) if isinstance(v, RangeValue) else (v.at(n), v.at(n) + 1)
                              for v in value]
            else:
                args[name] = value if isinstance(value, Bound) else value.at(n)  # (a pattern: as it is)
        size = self.built_for.at(n)
        return self.cls.row_bound(args, size, _ConcreteOps(size))

    def _terms(self, c):
        return _leaf_terms(self._row_bound(c), c)

    def _shapes(self):
        return _leaf_shapes(self)

    def _outer(self):
        return _leaf_outer(self)

    def runs(self):
        return _leaf_runs(self)

    def _summary(self):
        rb = self._row_bound(SYMBOLIC)
        degree, exceptional = Quantity.of(rb.degree), Quantity.of(rb.exceptional)
        hi = _count_class(degree, exceptional)
        lo = None
        if rb.tight:
            known = [c for c in (degree.lo, exceptional.lo) if c is not None]
            if known:
                lo = _mul(N, min(max(known), N))
        dense = rb.symmetric if rb.causal_dense is None else rb.causal_dense
        return BoundSummary(degree, exceptional, hi, lo, rb.reflexive, rb.symmetric, dense, self.text,
                            rb.lower_triangle)

    def _concrete(self, c):
        rb, n = self._row_bound(c), c.n
        degree = min(max(int(rb.degree), 0), n)
        exceptional = min(max(int(rb.exceptional), 0), n)
        return degree, exceptional, min(n * n, n * degree + n * exceptional)


class _Union(Bound):
    precedence = 10

    def __init__(self, parts):
        super().__init__(("|", tuple(parts)), tuple(parts))
        self.parts = tuple(parts)

    def __str__(self):
        return " | ".join(self._child_text(p) for p in self.parts)

    def _terms(self, c):
        return _joined([term for p in self.parts for term in p.terms(c)], c)

    def _shapes(self):
        return [s for p in self.parts for s in p.shapes()]

    def _outer(self):
        outer = [p.outer() for p in self.parts]
        return None if None in outer else [box for boxes in outer for box in boxes]

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
                            all(s.causal_dense for s in ss), top.dominant, any(s.lower_triangle for s in ss))

    def _concrete(self, c):
        cs, n = [p.concrete(c) for p in self.parts], c.n
        return (min(n, sum(d for d, _, _ in cs)), min(n, sum(e for _, e, _ in cs)),
                min(n * n, sum(count for _, _, count in cs)))


class _Intersection(Bound):
    precedence = 20

    def __init__(self, parts):
        super().__init__(("&", tuple(parts)), tuple(parts))
        self.parts = tuple(parts)

    def __str__(self):
        return " & ".join(self._child_text(p) for p in self.parts)

    def _terms(self, c):
        terms = self.parts[0].terms(c)
        for part in self.parts[1:]:
            terms = _joined([(_meet(t[0], u[0], c), _meet(t[1], u[1], c)) for t in terms for u in part.terms(c)], c)
        return terms

    def _shapes(self):
        shapes = self.parts[0].shapes()
        for part in self.parts[1:]:
            shapes = _kept(s.meet(t) for s in shapes for t in part.shapes())
        return shapes

    def _outer(self):
        known = sorted((p.outer() for p in self.parts if p.outer() is not None), key=len)
        if not known:
            return None
        boxes = known[0]
        for other in known[1:]:
            if len(boxes) * len(other) > MAX_OUTER:
                break
            boxes = [_meet_boxes(x, y) for x in boxes for y in other]
        return boxes

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
        summary.lower_triangle = all(s.lower_triangle for s in ss)
        # |A ∩ T| ≥ c·|A| when T holds the lower triangle and A (the rest) is symmetric or causal-dense.
        triangle = [k for k, s in enumerate(ss) if s.lower_triangle]
        if triangle:
            rest = [p for k, p in enumerate(self.parts) if k != triangle[0]]
            rest_summary = rest[0].summary() if len(rest) == 1 else _Intersection(rest).summary()
            if rest_summary.causal_dense or rest_summary.symmetric:
                summary.lo = rest_summary.lo
        return summary

    def _concrete(self, c):
        cs, n = [p.concrete(c) for p in self.parts], c.n
        degree, exceptional = min(d for d, _, _ in cs), min(n, sum(e for _, e, _ in cs))
        return degree, exceptional, min(min(count for _, _, count in cs), n * degree + n * exceptional)


class _Difference(Bound):
    precedence = 30

    def __init__(self, left, right):
        super().__init__(("-", left, right), (left, right))
        self.left, self.right = left, right

    def __str__(self):
        return f"{self._child_text(self.left)} - {self._child_text(self.right, strict=True)}"

    def _terms(self, c):
        return self.left.terms(c)

    def _shapes(self):
        return _without(self.left.shapes(), self.right)

    def _outer(self):
        return self.left.outer()

    def _summary(self):
        a, b = self.left.summary(), self.right.summary()
        common = min(b.hi, _Intersection((self.left, self.right)).summary().hi)
        lo = a.lo if (a.lo is not None and common < a.lo) else None  # |A − B| = |A| − |A ∩ B|
        sym = a.symmetric and b.symmetric
        return BoundSummary(a.degree, a.exceptional, a.hi, lo, False, sym, sym, a.dominant)

    def _concrete(self, c):
        return self.left.concrete(c)


class _Complement(Bound):
    precedence = 40

    def __init__(self, operand):
        super().__init__(("~", operand), (operand,))
        self.operand = operand
        inner = operand.summary().dominant
        self.text = f"~{inner}" if isinstance(operand, _Leaf) else f"~({inner})"

    def __str__(self):
        return f"~{self._child_text(self.operand)}"

    def _terms(self, c):
        full = _view(((c.n, c.n),), c)
        return [(full, full)]

    def _shapes(self):
        size = _domain(self.operand)  # ~A = all − A
        return [] if size is None else _without([_box(size)], self.operand)

    def _summary(self):
        s = self.operand.summary()
        # |~A| = n² − |A| ≥ n·(n − D − E): Θ(n²) when |A| = o(n²) or n − D − E ≥ c·n.
        lo = N2 if s.hi < N2 or _AbstractOps.linear(N_QUANTITY - s.degree - s.exceptional) else None
        return BoundSummary(N_QUANTITY, Quantity.of(0), N2, lo, False, s.symmetric, s.symmetric, self.text)

    def _concrete(self, c):
        return c.n, 0, c.n * c.n


class _Transpose(Bound):
    """transpose(A): the same count as A, its rows A's columns (the terms' views swap)."""

    def __init__(self, operand):
        super().__init__(("T", operand), (operand,))
        self.operand = operand

    def __str__(self):
        return f"transpose({self.operand})"

    def _terms(self, c):
        return [(columns, rows) for rows, columns in self.operand.terms(c)]

    def _shapes(self):  # (the shapes held in full: rows and cols swap, offsets turn round)
        return [_Shape(s.cols, s.rows, _turned(s.band)) for s in self.operand.shapes()
                if s.period is None and s.count is None and not s.less and not s.thin]

    def _outer(self):
        outer = self.operand.outer()
        return None if outer is None else [(cols, rows, _turned(band)) for rows, cols, band in outer]

    def _summary(self):
        s = self.operand.summary()
        # The row bound of A's columns is not tracked: n per row, with A's count classes.
        return BoundSummary(N_QUANTITY, Quantity.of(0), s.hi, s.lo, s.reflexive, s.symmetric, s.symmetric,
                            s.dominant)

    def _concrete(self, c):
        return c.n, 0, self.operand.concrete(c)[2]


class _Blocks(Bound):
    """blocks(B) { A }, A's leaves built for ⌈n/B⌉: a row's keys are B per key block of its
    block row, so each group (r rows of ≤ d keys) of A's views becomes (B·r, B·d). For a
    constant B the classes are A's (⌈n/B⌉ = Θ(n)); its lower bound is read off A's shapes,
    mapped to tokens."""

    def __init__(self, size, operand, outer: Quantity = None):
        # outer: the size it is built for (n, or the cells of an enclosing blocks { })
        self.outer_size = N_QUANTITY if outer is None else outer
        super().__init__(("blocks", size, operand, self.outer_size), (operand,))
        self.block, self.operand = Quantity.of(size), operand

    def __str__(self):
        return f"blocks({self.block}) {{ {self.operand} }}"

    def _terms(self, c):
        b = self.block if c is SYMBOLIC else self.block.at(c.n)

        def scaled(view):  # r block rows of ≤ d key blocks: r·B rows of ≤ d·B keys
            return _view([(rows * b, degree * b) for rows, degree in view], c)

        return [(scaled(rows), scaled(columns)) for rows, columns in self.operand.terms(c)]

    def _shapes(self):
        if self.block.lo is None:
            return []
        return [_scaled(s, self.block, self.outer_size) for s in self.operand.shapes()]

    def _summary(self):
        s = self.operand.summary()
        degree, exceptional = s.degree * self.block, s.exceptional * self.block
        # A's lower bound is not taken: A's rows over ⌈n/B⌉ blocks may be empty (or it may rest on
        # rules, such as a complement's, that do not survive the scaling); only its shapes are.
        return BoundSummary(degree, exceptional, _count_class(degree, exceptional), None, s.reflexive, s.symmetric,
                            s.causal_dense, f"blocks({self.block}) {{ {s.dominant} }}", s.lower_triangle)

    def _concrete(self, c):
        n, b = c.n, self.block.at(c.n)
        degree, exceptional, count = self.operand.concrete(c)  # (its leaves at ⌈n/B⌉)
        return min(n, degree * b), min(n, exceptional * b), min(n * n, count * b * b)


class _Grid(Bound):
    """grid(…) { A }, A's leaves built for the cells: the grid maps its existing cells one to
    one onto tokens and has no pair outside them, so A's row and column views bound it as
    they are. It claims O only (cells beyond n do not exist, so A's lower bound need not hold)."""

    def __init__(self, dims, operand):
        super().__init__(("grid", dims, operand), (operand,))
        self.dims, self.operand = dims, operand

    def __str__(self):
        return f"grid({', '.join(str(d) for d in self.dims)}) {{ {self.operand} }}"

    def _terms(self, c):
        return self.operand.terms(c)

    def _summary(self):
        s = self.operand.summary()
        return BoundSummary(s.degree, s.exceptional, _count_class(s.degree, s.exceptional), None, False, False,
                            False, f"grid({', '.join(str(d) for d in self.dims)}) {{ {s.dominant} }}", False)

    def _concrete(self, c):
        degree, exceptional, count = self.operand.concrete(c)
        return min(c.n, degree), min(c.n, exceptional), min(c.n * c.n, count)


# ---- conditions (of `if`) ---------------------------------------------------------------


def _sign(x: Quantity) -> int | None:
    """The sign of x for all large n, when provable."""
    if x.const is not None:
        return (x.const > 0) - (x.const < 0)
    if x.lo is not None:
        return 1
    if (-x).lo is not None:
        return -1
    return 0 if x.zero and x.form.low == x.form.high == 0 else None


_SIGN_HOLDS = {"==": lambda s: s == 0, "!=": lambda s: s != 0, "<": lambda s: s < 0, "<=": lambda s: s <= 0,
               ">": lambda s: s > 0, ">=": lambda s: s >= 0}


class Condition:
    """A condition in n: `at(n)` its value at one n, `large` its value for all large n and
    `const` its value at every n (None when not provable). Equal when written alike (they
    key the evaluator's caches)."""

    def __init__(self, key: tuple, text: str, at: Callable[[int], bool], large: bool | None,
                 const: bool | None = None):
        self.key, self.text, self.at, self.large, self.const = key, text, at, large, const

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Condition) and self.key == other.key

    def __str__(self):
        return self.text

    @staticmethod
    def compare(op: str, a, b) -> "Condition":
        a, b = Quantity.of(a), Quantity.of(b)
        holds = COMPARISONS[op]
        sign = _sign(a - b)
        const = holds(a.const, b.const) if a.const is not None and b.const is not None else None
        return Condition((op, a, b), f"{a} {op} {b}", lambda n: holds(a.at(n), b.at(n)),
                         None if sign is None else _SIGN_HOLDS[op](sign), const)

    @staticmethod
    def both(x: "Condition", y: "Condition") -> "Condition":
        if x.const is not None or y.const is not None:  # fold a constant side away
            known, other = (x, y) if x.const is not None else (y, x)
            return other if known.const else known
        large = False if False in (x.large, y.large) else (True if x.large and y.large else None)
        const = False if False in (x.const, y.const) else (True if x.const and y.const else None)
        return Condition(("and", x, y), f"({x} and {y})", lambda n: x.at(n) and y.at(n), large, const)

    @staticmethod
    def either(x: "Condition", y: "Condition") -> "Condition":
        if x.const is not None or y.const is not None:
            known, other = (x, y) if x.const is not None else (y, x)
            return known if known.const else other
        large = True if True in (x.large, y.large) else (False if x.large is False and y.large is False else None)
        const = True if True in (x.const, y.const) else (False if x.const is False and y.const is False else None)
        return Condition(("or", x, y), f"({x} or {y})", lambda n: x.at(n) or y.at(n), large, const)

    @staticmethod
    def negate(x: "Condition") -> "Condition":
        return Condition(("not", x), f"not {x}", lambda n: not x.at(n), None if x.large is None else not x.large,
                         None if x.const is None else not x.const)


def q_choose(condition: Condition, a, b) -> Quantity:
    """if(c, a, b) as an atom: exact at every n (`at`); for large n, the branch c takes
    then when that is provable, else bounded by both branches."""
    a, b = Quantity.of(a), Quantity.of(b)
    if a == b:
        return a
    text = f"if({condition}, {a}, {b})"
    at = lambda n: a.at(n) if condition.at(n) else b.at(n)  # noqa: E731
    if condition.large is not None:
        taken = a if condition.large else b
        return Quantity.atom(Atom("if", (condition, a, b), text, at, form=taken.form, parts=(taken,)))
    lo = min(a.lo, b.lo) if a.lo is not None and b.lo is not None else None
    return Quantity.atom(Atom("if", (condition, a, b), text, at, hi=max(a.hi, b.hi), lo=lo,
                              nonneg=a.nonneg and b.nonneg))


# ---- the symbolic domain --------------------------------------------------------------------


class Symbolic:
    """The domain in which patterndsl/resolve.py's evaluator runs for the growth analysis:
    integers are Quantities in an unknown n, patterns are Bounds (see resolve.Integers
    for the interface)."""

    n = None  # no one n (messages name none)
    n_value = N_QUANTITY

    is_int = staticmethod(lambda value: isinstance(value, Quantity))
    is_pattern = staticmethod(lambda value: isinstance(value, Bound))
    known = staticmethod(lambda value: value.const)
    number = staticmethod(Quantity.of)
    isqrt = staticmethod(q_isqrt)
    ilog2 = staticmethod(q_ilog2)
    cdiv = staticmethod(q_cdiv)
    minimum = staticmethod(q_min)
    maximum = staticmethod(q_max)
    union = staticmethod(_Union)

    @staticmethod
    def intersection(parts) -> Bound:
        # A ∩ ~C is A − C (bounded below by |A| − |A ∩ C|); ~A ∩ ~B is ~(A ∪ B). (One node per
        # side, so that it nests no deeper than the IR: the evaluator limits the depth.)
        parts = tuple(parts)
        rest = tuple(p for p in parts if not (isinstance(p, _Leaf) and p.cls.name == "all"))
        parts = rest or parts[:1]  # `all` is the identity of ∩: A & all is A (tight where A is)
        if len(parts) == 1:
            return parts[0]
        kept = [p for p in parts if not isinstance(p, _Complement)]
        removed = [p.operand for p in parts if isinstance(p, _Complement)]
        if not removed:
            return _Intersection(parts)
        removed = removed[0] if len(removed) == 1 else _Union(removed)
        if not kept:
            return _Complement(removed)
        return _Difference(kept[0] if len(kept) == 1 else _Intersection(kept), removed)

    is_condition = staticmethod(lambda value: isinstance(value, Condition))
    compare = staticmethod(Condition.compare)
    both = staticmethod(Condition.both)
    either = staticmethod(Condition.either)
    negate = staticmethod(Condition.negate)
    # A condition's value at every n, when it has one (else both branches are evaluated).
    decided = staticmethod(lambda condition: condition.const)
    choose = staticmethod(q_choose)

    @staticmethod
    def difference(left: Bound, right: Bound) -> Bound:
        # A − ~B is A ∩ B: bounded as the intersection it is; all − B is ~B.
        if isinstance(left, _Leaf) and left.cls.name == "all":
            return right.operand if isinstance(right, _Complement) else _Complement(right)
        return _Intersection((left, right.operand)) if isinstance(right, _Complement) else _Difference(left, right)

    @staticmethod
    def complement(operand: Bound) -> Bound:
        return operand.operand if isinstance(operand, _Complement) else _Complement(operand)  # ~~A is A

    def __init__(self):
        self.sizes = [N_QUANTITY]  # the size patterns are built for (⌈n/B⌉ inside blocks(B) { })

    def enter_blocks(self, size):
        self.sizes.append(q_cdiv(self.sizes[-1], size))

    def leave_blocks(self):
        self.sizes.pop()

    def blocks(self, size, operand):
        return _Blocks(size, operand, self.sizes[-1])

    def enter_grid(self, cells):
        self.sizes.append(cells)

    def leave_grid(self):
        self.sizes.pop()

    @staticmethod
    def grid(dims, offset, order, tile, operand):
        return _Grid(tuple(dims), operand)

    @staticmethod
    def transpose(operand: Bound) -> Bound:
        return operand.operand if isinstance(operand, _Transpose) else _Transpose(operand)

    def primitive(self, cls, args: dict) -> Bound:
        """The primitive's Bound; with constant arguments, checked as compiling checks them
        (ParamError), at a stand-in n: such a check holds at every n, so the message
        names none."""
        if "grid" in args:  # a grid primitive (patterndsl/grid.py): checked where compiled
            if args["grid"] is None:
                Integers(MAX_N).primitive(cls, dict(args))  # (raises: outside a grid)
            return _Leaf(cls, args, self.sizes[-1])
        values = [v for value in args.values() for v in (value if isinstance(value, list) else [value])]
        if not any(isinstance(v, Bound) for v in values) and all((v.lo.const is not None and v.hi.const is not None) if isinstance(v, RangeValue) else
               v.const is not None for v in values):
            try:
                Integers(MAX_N).primitive(cls, {name: [RangeValue(v.lo.const, v.hi.const) if isinstance(v, RangeValue)
                                                       else v.const for v in value]
                                                if isinstance(value, list) else value.const
                                                for name, value in args.items()})
            except ParamError as exc:
                raise ParamError(exc.param, exc.message.removesuffix(f" (n = {MAX_N})"), exc.help) from None
        return _Leaf(cls, args, self.sizes[-1])


def _layer_bounds(module: A.Module, source: Source) -> tuple[tuple[Bound, ...], ...]:
    """[layer][head] Bounds, in the order of CompiledPattern.patterns (SpatError: the
    diagnostics that compiling the file reports, less those about one n's values)."""
    return evaluate(module, source, Symbolic()).patterns


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
    if s.empty or (s.hi == ONE and degree.zero and exceptional.zero):
        why = "no connections"
    elif s.apart:  # (the rows' bound is looser than the terms')
        why = (f"its intersections hold fewer connections than its rows allow, counted by rows and columns "
               f"apart: {out['bound']}; dominated by {s.dominant}")
        if not s.tight:
            why += "; an upper bound that may not be tight"
    else:
        rows = ("every row" if exceptional.const == 0 else
                f"all but {exceptional} row{'' if str(exceptional) == '1' else 's'} (which have up to n keys)")
        why = (f"{rows} {'has' if rows == 'every row' else 'have'} at most {degree} keys "
               f"({out['per_row_class']}), so {out['bound']} connections; dominated by {s.dominant}")
        if not s.tight:
            why += "; an upper bound that may not be tight"
    if s.tight and s.held:
        why += "; at least as many: it holds a part of that size (rows × keys)"
    out["why"] = why
    if n is not None:
        out["bound_at_n"] = bound.evaluate(n)
    return out


def _report(module: A.Module, source: Source, n: int | None) -> dict:
    with deep_recursion():
        return _report_unguarded(_layer_bounds(module, source), n)


def _report_unguarded(layers, n: int | None) -> dict:
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


def _module_and_source(source: "str | Path | Source | A.Module") -> tuple[A.Module, Source]:
    if isinstance(source, A.Module):
        # (a module without its text: diagnostics, if any, are shown without source lines)
        return source, Source("", "<module>")
    source = load_source(source)
    return parse(source), source


def bounds(source: "str | Path | Source | A.Module") -> tuple[tuple[Bound, ...], ...]:
    """The symbolic Bound of every layer × head (``bound.evaluate(n)``, ``bound.summary()``)."""
    with deep_recursion():
        return _layer_bounds(*_module_and_source(source))


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
    from ..errors import require_compiled

    require_compiled(compiled, "growth()")
    return _report(compiled.module, compiled.source, compiled.n)


def growth_formula(source: "str | Path | Source | A.Module") -> dict:
    """The same report with no n (`patterndsl check` without --n): the bounds as formulas
    in n. Raises SpatError with the file's diagnostics — the same as compiling it
    reports, less those that need one n's values (an unknown name, a recursive def, a
    pattern where an integer belongs: all as with an n)."""
    return _report(*_module_and_source(source), None)
