"""The dense reference evaluator: the specification every target is tested against.

It evaluates the IR literally — each primitive's element predicate, combined
with numpy's logical operators by the combinators (`Pattern.predicate`,
patterndsl/ir.py) — over blocks of query rows, so the temporaries
stay small however large n is. Only the mask it returns is n × n, and that is
refused beyond a memory budget rather than failing with MemoryError.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
from typing import Callable

import numpy as np

from .errors import Diagnostic, SpatError
from .ir import Pattern

DEFAULT_MEMORY_BUDGET = 2 << 30  # bytes; PATTERNDSL_MEMORY_BUDGET overrides it
_ELEMENTS_PER_BLOCK = 1 << 20  # query rows are evaluated in blocks of about this many pairs


def parse_size(text: str) -> int:
    """'2G', '512M', '100000' → bytes; raises ValueError on anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r} (write e.g. 2G, 512M or a number of bytes)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


# The budget of the work under way (a CompiledPattern's memory_budget, the CLI's --memory-budget),
# for code that refuses work without a CompiledPattern at hand (a grid's listed keys, patterndsl/grid.py).
_SCOPED_BUDGET: contextvars.ContextVar = contextvars.ContextVar("patterndsl_memory_budget", default=None)


@contextlib.contextmanager
def budget_scope(budget: "int | None"):
    """Within it, memory_budget() with no budget reads ``budget`` (None: the enclosing one)."""
    token = _SCOPED_BUDGET.set(budget if budget is not None else _SCOPED_BUDGET.get())
    try:
        yield
    finally:
        _SCOPED_BUDGET.reset(token)


def memory_budget(budget: int | None = None) -> int:
    """``budget``, else the enclosing budget_scope's, else PATTERNDSL_MEMORY_BUDGET, else the default."""
    if budget is None:
        budget = _SCOPED_BUDGET.get()
    if budget is not None:
        return budget
    env = os.environ.get("PATTERNDSL_MEMORY_BUDGET")
    if env:
        try:
            return parse_size(env)
        except ValueError as exc:
            raise SpatError(Diagnostic(f"PATTERNDSL_MEMORY_BUDGET: {exc}")) from None
    return DEFAULT_MEMORY_BUDGET


def format_bytes(count: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def check_budget(shape: tuple[int, ...], budget: int | None = None) -> None:
    """Refuse, with a SpatError, a dense boolean mask of this shape over the budget."""
    needed = int(np.prod(shape, dtype=object))
    limit = memory_budget(budget)
    if needed > limit:
        dims = " × ".join(str(d) for d in shape)
        raise SpatError(Diagnostic(
            f"a dense {dims} mask needs {format_bytes(needed)}, more than the memory budget of "
            f"{format_bytes(limit)}",
            help="dense masks are for checking small n: use a smaller --n, raise the budget with "
                 "--memory-budget (memory_budget= in Python, or PATTERNDSL_MEMORY_BUDGET), or use "
                 "`patterndsl show`, which streams the mask block by block"))


class AtLeast(int):
    """A number of bytes known only from below (the estimate leaves part of the work out, e.g. the
    keys a grid lists): a refusal over the budget says "needs at least", not "needs about"."""


def require_memory(what: "str | Callable[[], str]", needed: int, budget: "int | None", help: str) -> None:
    """Refuse, up front and with the size, work that needs more memory than the budget.
    ``what`` names the work (a function, when naming it costs something: only a refusal calls it);
    ``needed`` is an estimate, or an AtLeast when it is only a lower bound."""
    limit = memory_budget(budget)
    if needed > limit:
        amount = f"{'at least' if isinstance(needed, AtLeast) else 'about'} {format_bytes(needed)}"
        raise SpatError(Diagnostic(
            f"{what() if callable(what) else what} needs {amount}, more than the "
            f"memory budget of {format_bytes(limit)}",
            help=f"{help}, or raise the budget with --memory-budget (memory_budget= in Python, or "
                 f"PATTERNDSL_MEMORY_BUDGET)"))


def index_dtype(n: int):
    """The integer type the predicates see i and j in.

    int32 halves the memory traffic. Primitives clamp their distance parameters
    to [-n, n], so they compute values such as i + r up to 2n - 1: int32 holds
    those only while n < 2^30."""
    return np.int32 if n < 2**30 else np.int64


def evaluate(pattern: Pattern, rows: np.ndarray, n: int) -> np.ndarray:
    """Bool [len(rows), n]: the rows ``rows`` of ``pattern``'s mask."""
    index_type = index_dtype(n)
    i = np.asarray(rows, dtype=index_type).reshape(-1, 1)
    j = np.arange(n, dtype=index_type).reshape(1, -1)
    return pattern.predicate(i, j, n)


def row_blocks(n: int):
    """Consecutive row ranges that each hold about _ELEMENTS_PER_BLOCK pairs."""
    step = max(1, _ELEMENTS_PER_BLOCK // max(n, 1))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def dense_mask(pattern: Pattern, n: int, budget: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """The whole n × n boolean mask of ``pattern`` (numpy), within the memory budget.

    With ``out`` (a bool [n, n] array the caller has budgeted for), fill it in place.
    """
    if out is None:
        check_budget((n, n), budget)
        out = np.empty((n, n), dtype=bool)
    for start, stop in row_blocks(n):
        out[start:stop] = evaluate(pattern, np.arange(start, stop), n)
    return out
