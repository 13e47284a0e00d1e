"""Counting the front end's work, for tests that guard against blow-ups without
timing anything (a loaded machine makes timed tests fail; counts do not vary).

    with counted_work(steps=1_000_000) as work:
        patterndsl.compile(text, n=64)
    assert work["def_bodies"] <= ...

Counted: "ast_nodes", the syntax-tree nodes the parser builds; "steps", the
expressions the resolver evaluates (inside def bodies too); "def_bodies", the def
bodies it evaluates; "tree_visits", the nodes whose children a pass over a syntax tree
asks for (`patterndsl.ast.children`, which `walk` uses). A kind given a budget stops the run as soon as it passes it
(raising WorkBudgetExceeded), so a blow-up fails at once instead of hanging.
"""
from __future__ import annotations

import contextlib

from patterndsl import ast, resolve, syntax

COUNTED = (("ast_nodes", syntax._ToAst, "_node"), ("steps", resolve._Evaluator, "value"),
           ("def_bodies", resolve._Evaluator, "call_def"), ("tree_visits", ast, "children"))


class WorkBudgetExceeded(BaseException):
    """A counted kind of work passed its budget (a BaseException, so that no
    `except Exception` in the compiler takes it for an error in the input)."""


@contextlib.contextmanager
def counted_work(**budget: int):
    unknown = set(budget) - {kind for kind, _, _ in COUNTED}
    assert not unknown, f"not counted: {unknown}"
    work = dict.fromkeys((kind for kind, _, _ in COUNTED), 0)
    originals = []

    def counting(kind, original):
        def wrapper(*args, **kwargs):
            work[kind] += 1
            if work[kind] > budget.get(kind, float("inf")):
                raise WorkBudgetExceeded(f"more than {budget[kind]:,} {kind}")
            return original(*args, **kwargs)
        return wrapper

    for kind, owner, method in COUNTED:
        original = owner.__dict__[method]
        originals.append((owner, method, original))
        setattr(owner, method, counting(kind, original))
    try:
        yield work
    finally:
        for owner, method, original in originals:
            setattr(owner, method, original)


def front_end_budget(text: str, runs: int = 1) -> dict:
    """What parsing, formatting or compiling ``text`` (``runs`` of them) may cost at most,
    whatever the text: per run, one syntax-tree node per character, and one more (every
    node but a statement consumes a character: a name, a digit, an operator, a bracket;
    a statement holds an expression and is followed by a line break); one def body more
    than the resolver's call limit (the one that trips it); and ten steps per def body or
    character."""
    return {"ast_nodes": runs * (len(text) + 1), "def_bodies": resolve.MAX_CALLS + 1,
            "steps": 10 * resolve.MAX_CALLS + runs * len(text)}
