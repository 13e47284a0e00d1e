"""Source expressions that compose with Python's operators, so code written for numpy
arrays also writes its own torch/Triton source (the grid rules, the bernoulli hash)."""
from __future__ import annotations


class SourceExpr:
    """A torch/Triton source expression; every operator returns the parenthesized text
    (each sub-expression is used once, so the text grows linearly with the code)."""

    def __init__(self, text):
        self.text = str(text)

    def __str__(self):
        return self.text

    def _op(self, op, other, swap=False):
        a, b = (other, self) if swap else (self, other)
        return SourceExpr(f"({a} {op} {b})")

    __add__ = lambda s, o: s._op("+", o)  # noqa: E731
    __radd__ = lambda s, o: s._op("+", o, True)  # noqa: E731
    __sub__ = lambda s, o: s._op("-", o)  # noqa: E731
    __rsub__ = lambda s, o: s._op("-", o, True)  # noqa: E731
    __mul__ = lambda s, o: s._op("*", o)  # noqa: E731
    __rmul__ = lambda s, o: s._op("*", o, True)  # noqa: E731
    __floordiv__ = lambda s, o: s._op("//", o)  # noqa: E731
    __mod__ = lambda s, o: s._op("%", o)  # noqa: E731
    __xor__ = lambda s, o: s._op("^", o)  # noqa: E731
    __rxor__ = lambda s, o: s._op("^", o, True)  # noqa: E731
    __le__ = lambda s, o: s._op("<=", o)  # noqa: E731
    __lt__ = lambda s, o: s._op("<", o)  # noqa: E731
    __ge__ = lambda s, o: s._op(">=", o)  # noqa: E731
    __gt__ = lambda s, o: s._op(">", o)  # noqa: E731
    __and__ = lambda s, o: s._op("&", o)  # noqa: E731
    __rand__ = lambda s, o: s._op("&", o, True)  # noqa: E731
    __or__ = lambda s, o: s._op("|", o)  # noqa: E731
    __ror__ = lambda s, o: s._op("|", o, True)  # noqa: E731
    __neg__ = lambda s: SourceExpr(f"(0 - {s})")  # noqa: E731

    def __eq__(self, other):  # (only ever compared to build a source)
        return self._op("==", other)

    __hash__ = None
