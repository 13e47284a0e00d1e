"""AST → IR: names, definitions, calls and integer arithmetic, with n bound.

The evaluator is written once, against a *domain* that says what an integer and a
pattern are: `Integers(n)` here (ints for one bound n, IR patterns), and the
growth analysis's symbolic domain (patterndsl/analysis/growth.py: quantities in an
unknown n, bounds on the connection count). Lets, defs, calls, argument binding,
builtins and every check live here; a check on a value runs wherever the domain
knows the value (with a symbolic n: on the constants).

Checks done before anything is evaluated (so they are reported even in code
that is never used): duplicate and reserved names, unknown names (with "did you
mean"), recursive `def`/`let`, and the file's shape (one pattern, at most one
`block` and one `prob`). Then each statement is evaluated for the given n;
one failing statement (or operand, or argument) does not stop the others from
being checked, so a run reports every independent error, sorted by position,
each place once (a def that fails for many arguments is reported at its first
call, with notes naming the calls that led there).

The work is bounded whatever the input: integers beyond 2^62, patterns beyond
MAX_IR_NODES nodes or MAX_IR_DEPTH nested operators, defs nested beyond
MAX_CALL_DEPTH calls or evaluated more than MAX_CALLS times, and more than
MAX_ERRORS diagnostics all stop the evaluation with a diagnostic. Lets are
evaluated in dependency order, so long chains of them do not recurse.
"""
from __future__ import annotations

import math
import sys
from collections import ChainMap
from contextlib import contextmanager
from dataclasses import dataclass

from . import ast as A
from . import probability
import re

from .blocksize import BLOCK_SIZE_HELP, block_size_problem
from .errors import Diagnostic, Source, Span, SpatError, did_you_mean
from .ir import Blocked, Complement, Difference, Intersection, Pattern, Union
from .primitives import PRIMITIVES, ParamError
from . import grid as G
from .segments import transposes_segment_ranks, uses_segments

MAX_INT = 1 << 62  # any integer beyond this in magnitude is an error, not a meaning
MAX_IR_NODES = 100_000  # after expanding every def
MAX_N = 1 << 40
MAX_IR_DEPTH = 100  # operators nested inside one another, after expanding every def (passes recurse on it)
MAX_CALL_DEPTH = 256  # defs calling defs
MAX_CALLS = 200_000  # def bodies evaluated in all
MAX_LAYER_HEADS = 1 << 16  # layers × heads
MAX_ERRORS = 50  # diagnostics shown; the rest are counted
MAX_CHAIN_SHOWN = 8  # names of a recursion cycle a message lists (its first and last four)
MAX_CALL_NOTES = 4  # "in the call …" notes kept for an error inside nested defs
PROBABILITY_MAPS = probability.NAMES
BUILTINS = {"isqrt": "isqrt(x)", "ilog2": "ilog2(x)", "min": "min(a, b, …)", "max": "max(a, b, …)",
            "cdiv": "cdiv(a, b)", "transpose": "transpose(P)", "if": "if(condition, a, b)"}
SCOPES = {"blocks": "blocks(B) { P }", "grid": "grid(H, W) { P } or grid(T, H, W) { P }"}
# Every callable primitive: the registry and the grid primitives (patterndsl/grid.py), live.
_CALLABLE_PRIMITIVES = ChainMap(PRIMITIVES, G.GRID_PRIMITIVES)
COMPARISONS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
               "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@dataclass(frozen=True)
class RangeValue:
    """The value of `lo..hi` (an argument for an index list): two integers of the domain."""

    lo: object
    hi: object


class Integers:
    """The domain of `resolve`: integers for one bound n, and IR patterns.

    The interface every domain gives the evaluator: `n` (the bound n, an int, for
    messages; None when there is none), `n_value` (the value of the name `n`; None
    where it is not known, and then no pattern is evaluated), `is_int`, `is_pattern`,
    `known` (an integer's int value, None when the domain does not know it),
    `number`, the builtins, the four combinators and `primitive`."""

    def __init__(self, n: int | None):
        self.n = n
        self.n_value = n
        self.sizes = [n]  # the size patterns are built for: n, or ⌈n/B⌉ inside blocks(B) { }
        self.m_given = None  # a cross file's `queries m`: the m given when compiling (patterndsl/cross.py)

    def enter_blocks(self, size: int):
        self.sizes.append(-(-self.sizes[-1] // size) if self.sizes[-1] is not None else None)

    def leave_blocks(self):
        self.sizes.pop()

    def enter_grid(self, cells: int):
        self.sizes.append(cells)

    def leave_grid(self):
        self.sizes.pop()

    def grid(self, dims, offset, order, tile, pattern: Pattern) -> Pattern:
        return G.Grid(tuple(dims), offset, order, None if tile is None else tuple(tile), pattern)

    def blocks(self, size: int, pattern: Pattern) -> Pattern:
        # A block as long as the sequence is the whole sequence: B ≥ n is B = n (and stays
        # within the index dtype).
        return Blocked(min(size, max(1, self.sizes[-1])), pattern)

    @staticmethod
    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    @staticmethod
    def is_pattern(value) -> bool:
        return isinstance(value, Pattern)

    @staticmethod
    def known(value) -> int:
        return value

    @staticmethod
    def number(value: int) -> int:
        return value

    isqrt = staticmethod(math.isqrt)
    ilog2 = staticmethod(lambda x: x.bit_length() - 1)
    cdiv = staticmethod(lambda a, b: -(-a // b))
    minimum = staticmethod(lambda *values: min(values))  # (so that min(x) of one argument is x)
    maximum = staticmethod(lambda *values: max(values))
    union = staticmethod(lambda parts: Union(tuple(parts)))
    intersection = staticmethod(lambda parts: Intersection(tuple(parts)))
    difference = staticmethod(Difference)
    complement = staticmethod(Complement)

    def transpose(self, pattern: Pattern) -> Pattern:
        return pattern.transposed(self.sizes[-1])

    # Conditions (of `if`) are Python bools here: `decided` gives one's value.
    is_condition = staticmethod(lambda value: isinstance(value, bool))
    compare = staticmethod(lambda op, a, b: COMPARISONS[op](a, b))
    both = staticmethod(lambda a, b: a and b)
    either = staticmethod(lambda a, b: a or b)
    negate = staticmethod(lambda a: not a)
    decided = staticmethod(lambda condition: condition)

    @staticmethod
    def choose(condition, a, b):
        return a if condition else b

    def primitive(self, cls, args: dict) -> Pattern:
        """The primitive with its arguments (an index list: indices and RangeValues); may raise
        ParamError."""
        for name, value in args.items():
            if isinstance(value, list):
                args[name] = [(v.lo, v.hi) if isinstance(v, RangeValue) else (v, v + 1) for v in value]
        return cls.build(args, self.sizes[-1])


@dataclass(frozen=True)
class Resolved:
    """What a file declares, evaluated for one n."""

    patterns: tuple[tuple[Pattern, ...], ...]  # [layer][head]
    block: tuple[int, int] | None
    prob: probability.ProbabilityMap  # a str: "softmax", "sparsemax", "entmax(1.5)"
    queries: int | None = None  # a cross file's m (its `queries` statement); None: n × n


class _Failed(Exception):
    """A statement could not be evaluated; its diagnostic is already recorded."""


class _Abort(Exception):
    """A limit on the work was hit (pattern size, nesting, calls): stop evaluating altogether.

    Not a _Failed, so that the places that carry on after an error to report the
    next one let it through: carrying on after such an error could take forever."""


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Resolver:
    def __init__(self, module: A.Module, source: Source):
        self.module = module
        self.source = source
        self.diagnostics: list[Diagnostic] = []
        self._reported: set = set()  # the spans reported
        self.unknown_names: set[str] = set()  # reported by check_names; evaluation skips them quietly
        self.stopped = False  # evaluation stopped after MAX_ERRORS diagnostics
        self.fatal = 0  # diagnostics that make evaluating the file meaningless (cycles, duplicates, …)
        self.depends: dict[str, set[str]] = {}
        self.uses_n: set[str] = set()  # lets and defs whose value depends on n (filled in by resolve)
        self.lets: dict[str, A.Let] = {}
        self.defs: dict[str, A.Def] = {}
        self.pattern_stmt: A.Node | None = None
        self.block: A.Block | None = None
        self.prob: A.Prob | None = None
        self.queries: A.Queries | None = None  # `queries M`: a cross file (patterndsl/cross.py)

    # ---- reporting --------------------------------------------------------

    def report(self, message, span, help=None, notes=()):
        # One diagnostic per place: a def called with many arguments that fails in the
        # same place each time is reported once, at its first call.
        key = span if span is not None else message
        if key not in self._reported:
            self._reported.add(key)
            self.diagnostics.append(Diagnostic(message, span, help, tuple(notes)))

    def error(self) -> SpatError:
        """Every diagnostic so far, sorted by position (the first MAX_ERRORS of them)."""
        ordered = sorted(self.diagnostics, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0))
        if len(ordered) > MAX_ERRORS:
            more = len(ordered) - MAX_ERRORS
            message = (f"too many errors: stopped after the first {MAX_ERRORS}" if self.stopped
                       else f"{more:,} more error{'s' if more > 1 else ''} not shown")
            ordered = ordered[:MAX_ERRORS] + [Diagnostic(message, None, help="fix the errors above first")]
        return SpatError(ordered, self.source)

    def source_text(self, span: Span, limit: int = 40) -> str | None:
        """The source text under a one-line span, if short."""
        if span is None or span.line != span.end_line or span.end_column - span.column > limit:
            return None
        text = self.source.line_text(span.line)[span.column - 1:span.end_column - 1].strip()
        while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
            text = text[1:-1].strip()
        return text or None

    def name_span(self, stmt) -> Span:
        """The span of the name in a `let`, `def` or `prob` (the statement's span if it cannot be found)."""
        span = stmt.span
        if isinstance(stmt, A.Param):
            return Span(span.line, span.column, span.line, span.column + len(stmt.name))
        text = self.source.line_text(span.line)
        match = _BINDING.match(text, span.column - 1)
        if match is None or match.group(2) != stmt.name:
            return span
        return Span(span.line, match.start(2) + 1, span.line, match.end(2) + 1)

    def fail(self, message, span, help=None, notes=(), abort=False):
        self.report(message, span, help, notes)
        if len(self.diagnostics) > MAX_ERRORS:
            self.stopped = True  # enough to show: evaluate no further
            raise _Abort
        raise _Abort if abort else _Failed

    # ---- checks that need no n -------------------------------------------------

    def collect(self):
        names: dict[str, A.Node] = {}
        self.queries = next((s for s in self.module.statements if isinstance(s, A.Queries)), None)
        for stmt in self.module.statements:
            if isinstance(stmt, (A.Let, A.Def)):
                if self._check_new_name(stmt.name, self.name_span(stmt), names):
                    names[stmt.name] = stmt
                    (self.lets if isinstance(stmt, A.Let) else self.defs)[stmt.name] = stmt
                if isinstance(stmt, A.Def):
                    seen: dict[str, A.Node] = {}
                    for param in stmt.params:
                        if self._check_new_name(param.name, self.name_span(param), seen, kind="parameter"):
                            seen[param.name] = param
            elif isinstance(stmt, (A.PatternStmt, A.Heads, A.Layers)):
                if self.pattern_stmt is not None:
                    self.report("a file declares one pattern, and this is a second one", stmt.span,
                                help="put several layers in `layers { … }` and per-head patterns in `heads { … }`",
                                notes=(f"the first pattern is at line {self.pattern_stmt.span.line}",))
                else:
                    self.pattern_stmt = stmt
            elif isinstance(stmt, A.Block):
                if self.block is not None:
                    self.report("`block` is given twice", stmt.span,
                                notes=(f"the first is at line {self.block.span.line}",))
                self.block = stmt
            elif isinstance(stmt, A.Prob):
                if self.prob is not None:
                    self.report("`prob` is given twice", stmt.span,
                                notes=(f"the first is at line {self.prob.span.line}",))
                self.prob = stmt
                self._check_prob(stmt)
            elif isinstance(stmt, A.Queries) and stmt is not self.queries:
                self.report("`queries` is given twice", stmt.span,
                            notes=(f"the first is at line {self.queries.span.line}",),
                            help="a cross file declares its number of queries once")
        if self.pattern_stmt is None and not self.diagnostics:
            # Point just after the last statement: that is where the pattern would go.
            last = self.module.statements[-1].span if self.module.statements else None
            end = Span(last.end_line, last.end_column, last.end_line, last.end_column + 1) if last else Span(1, 1, 1, 2)
            self.report("the file declares no pattern", end,
                        help="add an expression such as `window(64) | global(0..8)` on a line of its own")

    def _check_prob(self, stmt: A.Prob):
        """Report a `prob` that names no map of patterndsl/probability.py or gives it a bad α."""
        name, argument = _prob_parts(stmt.name)
        text = self.source.line_text(stmt.span.line)
        at = _PROB.match(text, stmt.span.column - 1)
        name_span = Span(stmt.span.line, at.start(1) + 1, stmt.span.line, at.end(1) + 1) if at else stmt.span
        argument_span = (Span(stmt.span.line, at.start(3) + 1, stmt.span.line, at.end(3) + 1)
                         if at and at.group(3) else stmt.span)
        if name not in PROBABILITY_MAPS:
            hint = did_you_mean(name, PROBABILITY_MAPS) or (
                "the probability maps are " + ", ".join(PROBABILITY_MAPS))
            self.report(f"unknown probability map '{name}'", name_span, help=hint)
        elif name != probability.ENTMAX and argument is not None:
            self.report(f"{name} takes no argument", argument_span,
                        help=f"write `prob {name}`; α is entmax's: `prob entmax(1.5)`")
        elif name == probability.ENTMAX and argument is None:
            self.report("entmax needs its α", name_span,
                        help="write `prob entmax(1.5)`: α in (1, 2], 2 being sparsemax")
        elif name == probability.ENTMAX:
            _, problem = probability.parse_alpha(argument)
            if problem is not None:
                self.report(problem[0], argument_span, help=problem[1])

    def _check_new_name(self, name, span, seen, kind="name") -> bool:
        reserved = None
        if name == "n":
            reserved = "`n` is the sequence length and cannot be redefined"
        elif name == "m" and self.queries is not None:
            reserved = "`m` is the number of queries of this cross file (`queries`) and cannot be redefined"
        elif name in _CALLABLE_PRIMITIVES:
            reserved = f"'{name}' is a primitive and cannot be redefined"
        elif name in BUILTINS:
            reserved = f"'{name}' is a built-in function and cannot be redefined"
        if reserved:
            self.report(reserved, span, help=f"choose another {kind}")
            return False
        if name in seen:
            first = seen[name].span
            if kind == "parameter":
                self.report(f"parameter '{name}' is listed twice", span,
                            notes=(f"the first is at column {first.column}",), help="rename one of the two")
            else:
                self.report(f"'{name}' is defined twice", span,
                            notes=(f"the first definition is at line {first.line}",),
                            help="rename one of the two")
            return False
        return True

    def check_names(self):
        """Unknown names anywhere, and recursion among defs and lets."""
        module_names = set(self.lets) | set(self.defs)
        depends: dict[str, set[str]] = {}
        for stmt in self.module.statements:
            scope = {p.name for p in stmt.params} if isinstance(stmt, A.Def) else set()
            used: set[str] = set()
            roots = [stmt]
            if isinstance(stmt, A.Def):  # defaults are evaluated outside the def
                roots = [stmt.body] + [p.default for p in stmt.params if p.default is not None]
            mentions_n = False
            for root in roots:
                options = {id(arg.value) for node in A.walk(root) if isinstance(node, A.Scoped) and node.func == "grid"
                           for arg in node.args if isinstance(arg, A.Keyword) and arg.name == "order"}
                for node in A.walk(root):
                    if id(node) in options:
                        continue
                    if isinstance(node, A.Name):
                        mentions_n = mentions_n or node.id == "n"
                        self._check_name(node.id, node.span, scope, module_names, used, call=False)
                    elif isinstance(node, A.Call):
                        self._check_name(node.func, node.span, scope, module_names, used, call=True)
            if isinstance(stmt, (A.Let, A.Def)) and self._binds(stmt):
                depends[stmt.name] = used
                if mentions_n:
                    self.uses_n.add(stmt.name)
        self.depends = depends
        for name, group in self._cycles(depends):
            stmt = self.lets.get(name) or self.defs[name]
            chain = self._cycle_path(name, depends, group)
            if isinstance(stmt, A.Def):
                what = f"'{name}' calls itself" if len(chain) == 2 else self._shown_chain(chain)
                message = f"recursive def: {what}"
                help = ("a def cannot call itself, directly or through other defs; "
                        "write the levels out, one def per level")
            else:
                what = f"'{name}' is defined in terms of itself" if len(chain) == 2 else self._shown_chain(chain)
                message = f"recursive let: {what}"
                help = "a let cannot use its own value; define it from n and the names before it"
            self.fatal += 1
            self.report(message, self._reference(stmt, chain[1]) or self.name_span(stmt), help=help)

    def _binds(self, stmt) -> bool:
        """Whether ``stmt`` is the statement that owns its name (not a rejected duplicate)."""
        return (self.lets.get(stmt.name) is stmt) or (self.defs.get(stmt.name) is stmt)

    @staticmethod
    def _reference(stmt, name) -> Span | None:
        """Where ``stmt`` (a let or def) first uses ``name``."""
        scope = {p.name for p in stmt.params} if isinstance(stmt, A.Def) else set()
        roots = [stmt.body] if isinstance(stmt, A.Def) else [stmt.value]
        if isinstance(stmt, A.Def):
            roots += [p.default for p in stmt.params if p.default is not None]
        for root in roots:
            for node in A.walk(root):
                used = node.id if isinstance(node, A.Name) else node.func if isinstance(node, A.Call) else None
                if used == name and not (isinstance(node, A.Name) and used in scope):
                    return node.span
        return None

    def _check_name(self, name, span, scope, module_names, used, call):
        if name in scope:
            if call:
                self.fatal += 1
                self.report(f"'{name}' is a parameter, not something to call", span,
                            help="only primitives, defs and built-in functions are called")
            return
        if name in module_names:
            used.add(name)
            return
        if name == "n" and not call:
            return
        if name == "m" and not call and self.queries is not None:
            return
        if name in _CALLABLE_PRIMITIVES or name in BUILTINS or (name == "n" and call):
            if name == "n":
                self.fatal += 1
                self.report("`n` is the sequence length, not a function", span,
                            help="use it as a number: `window(n // 8)`")
            return
        kind = "primitive or function" if call else "name"
        hint = None
        if len(self.diagnostics) < MAX_ERRORS:  # only shown ones get a suggestion: linear in the file
            candidates = set(PRIMITIVES) | set(BUILTINS) | module_names | scope | ({"n"} if not call else set())
            hint = did_you_mean(name, candidates) or did_you_mean(name, set(G.GRID_PRIMITIVES))
        if hint is None:
            hint = (f"define it first with `def {name}(…) = …`" if call
                    else f"define it first with `let {name} = …`")
        self.unknown_names.add(name)
        self.report(f"unknown {kind} '{name}'", span, help=hint)

    @staticmethod
    def _cycles(depends) -> list[tuple[str, set[str]]]:
        """Each group of names that depend on one another in a cycle (a strongly connected
        component with a cycle, found by Tarjan's algorithm without recursion: linear in the
        file), as its first name reached and its names. One report per group: a group holds
        as many cycles as it likes, and reporting each (or searching the whole file for each)
        made hostile files quadratic."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        open_names: list[str] = []  # reached, not yet in a finished group
        is_open: set[str] = set()
        groups = []
        for start in depends:
            if start in index:
                continue
            index[start] = low[start] = len(index)
            open_names.append(start)
            is_open.add(start)
            stack = [(start, iter(sorted(depends.get(start, ()))))]
            while stack:
                node, edges = stack[-1]
                nxt = next(edges, None)
                if nxt is None:
                    stack.pop()
                    if stack:
                        low[stack[-1][0]] = min(low[stack[-1][0]], low[node])
                    if low[node] == index[node]:  # node is the first reached of its group
                        group, member = set(), None
                        while member != node:  # the open names down to node are its group
                            member = open_names.pop()
                            is_open.discard(member)
                            group.add(member)
                        if len(group) > 1 or node in depends.get(node, ()):
                            groups.append((node, group))
                elif nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    open_names.append(nxt)
                    is_open.add(nxt)
                    stack.append((nxt, iter(sorted(depends.get(nxt, ())))))
                elif nxt in is_open:
                    low[node] = min(low[node], index[nxt])
        return groups

    @staticmethod
    def _cycle_path(name, depends, group):
        # Breadth-first search for the shortest way back to ``name``, inside its group
        # (a way back never leaves it), so that every group's search together stays linear.
        previous, frontier = {name: None}, [name]
        while frontier:
            following = []
            for node in frontier:
                for nxt in sorted(depends.get(node, ()) & group):
                    if nxt == name:
                        chain = [node]
                        while previous[chain[-1]] is not None:
                            chain.append(previous[chain[-1]])
                        return list(reversed(chain)) + [name]
                    if nxt not in previous:
                        previous[nxt] = node
                        following.append(nxt)
            frontier = following
        return [name, name]

    @staticmethod
    def _shown_chain(chain: list[str]) -> str:
        """A cycle as `a → b → a`, its middle left out when long (a message stays a line)."""
        if len(chain) <= MAX_CHAIN_SHOWN:
            return " → ".join(chain)
        head, tail = chain[:MAX_CHAIN_SHOWN // 2], chain[-(MAX_CHAIN_SHOWN // 2):]
        return " → ".join(head) + f" → … ({len(chain) - len(head) - len(tail):,} more) … → " + " → ".join(tail)

    # ---- evaluation ---------------------------------------------------------

    def resolve(self, domain) -> Resolved:
        before = len(self.diagnostics)
        self.collect()
        self.fatal += len(self.diagnostics) - before  # shape errors: duplicates, reserved names, …
        self.check_names()
        if self.fatal or self.pattern_stmt is None:
            raise self.error()
        for name in self._let_order(every=True):  # dependencies first
            if any(dep in self.uses_n for dep in self.depends.get(name, ())):
                self.uses_n.add(name)
        # Unknown names are reported already; evaluate the rest, so that the other
        # statements' errors are reported with them.
        evaluator = _Evaluator(self, domain)
        patterns, block, prob = (), None, probability.ProbabilityMap(probability.SOFTMAX)
        try:
            heads = evaluator.head_count(self.pattern_stmt)
            if domain.n_value is not None:
                patterns, block = self._evaluate(evaluator, heads)
        except _Abort:  # a limit was hit, and reported; evaluate no further
            if not self.diagnostics:
                self.report("evaluation stopped: the file takes too much work to evaluate", None)
        if self.diagnostics:
            raise self.error()
        if self.prob is not None:
            prob = probability.ProbabilityMap(*_prob_parts(self.prob.name))
        queries = evaluator.queries_value if self.queries is not None else None
        return Resolved(patterns, block, prob, queries)

    def mentions_n(self, node: A.Node) -> bool:
        """Whether the value of ``node`` (outside any def) can depend on n."""
        for sub in A.walk(node):
            name = sub.id if isinstance(sub, A.Name) else sub.func if isinstance(sub, A.Call) else None
            if name == "n" or name in self.uses_n:
                return True
        return False

    def _evaluate(self, evaluator: "_Evaluator", heads: int | None):
        """Every statement in turn, each one's errors reported even when another failed."""
        patterns, block = (), None
        if self.queries is not None and isinstance(evaluator.d, Integers):
            try:
                m = evaluator.d.known(evaluator.query_count())
                # a cross file's primitives are built for max(m, n): the m × n rectangle is the
                # top-left corner of that square pattern, each primitive read by absolute index
                evaluator.d.sizes[0] = max(m, evaluator.d.n_value)
            except _Failed:
                pass
        grid_lets = self._grid_users()
        for name in self._let_order():  # every let, so unused ones are checked too
            if name in grid_lets:  # (checked where a grid uses it: its cells are known there)
                continue
            try:
                evaluator.let_value(name)
            except _Failed:
                pass
        try:
            patterns = evaluator.layers(self.pattern_stmt, heads)
        except _Failed:
            pass
        if self.block is not None:
            try:
                block = evaluator.block_sizes(self.block)
            except _Failed:
                pass
        return patterns, block

    def _grid_users(self) -> set[str]:
        """The lets and defs that call a grid primitive (patterndsl/grid.py), themselves or through
        the lets and defs they use: they mean something only inside a grid. One pass over the file
        and one over the dependency edges, backwards from the direct callers (asking it per let was
        quadratic in a long chain of lets)."""
        statements = {**self.defs, **self.lets}
        users_of: dict[str, list[str]] = {}
        for name, used in self.depends.items():
            if name in statements:
                for dep in used:
                    users_of.setdefault(dep, []).append(name)
        found = {name for name, stmt in statements.items()
                 if any(isinstance(node, A.Call) and node.func in G.GRID_PRIMITIVES for node in A.walk(stmt))}
        stack = list(found)
        while stack:
            for user in users_of.get(stack.pop(), ()):
                if user not in found:
                    found.add(user)
                    stack.append(user)
        return found

    def _let_order(self, every: bool = False) -> list[str]:
        """The lets (every: and defs), each after every name it depends on (so evaluating them never
        recurses deeply)."""
        order, done = [], set()
        for stmt in self.module.statements:
            if not isinstance(stmt, (A.Let, A.Def) if every else A.Let) or not self._binds(stmt) or stmt.name in done:
                continue
            done.add(stmt.name)
            stack = [(stmt.name, iter(sorted(self.depends.get(stmt.name, ()))))]
            while stack:
                name, edges = stack[-1]
                nxt = next(edges, None)
                if nxt is None:
                    stack.pop()
                    if name in self.lets or (every and name in self.defs):
                        order.append(name)
                elif nxt not in done:
                    done.add(nxt)
                    stack.append((nxt, iter(sorted(self.depends.get(nxt, ())))))
        return order


class _Evaluator:
    def __init__(self, resolver: Resolver, domain):
        self.r = resolver
        self.d = domain
        self.n = domain.n  # the bound n, for messages (None: not one n)
        # Lets and def calls are cached per scale: inside `blocks(B) { }` a pattern-valued
        # one is evaluated again, over the blocks (self.scale: the block sizes entered).
        self.scale: tuple = ()
        self.hidden: dict = {}  # pattern parameters of the defs around a blocks { }
        self.let_cache: dict[tuple, object] = {}
        self.let_failed: set[tuple] = set()
        self.let_active: set[str] = set()
        self.call_cache: dict[tuple, object] = {}
        self.call_depth = 0
        self.calls = 0  # def bodies evaluated
        self.failed_calls: set[tuple] = set()
        self.no_n_reason: str | None = None
        self.queries_value = None  # a cross file's m, once evaluated (query_count)
        self.in_queries = False  # evaluating the `queries` statement itself

    # ---- cross files: `queries M` (m queries × n keys; README "Cross-attention") --------

    def query_count(self):
        """m, the number of queries of a cross file: its `queries M` evaluated, the name `m`
        inside M being the m given when compiling (compile(..., m=), --m)."""
        if self.queries_value is not None:
            return self.queries_value
        stmt = self.r.queries
        if self.in_queries:
            self.r.fail("`queries` cannot depend on itself", stmt.span)
        self.in_queries = True
        try:
            value = self.integer(stmt.count, {}, "the number of queries")
        finally:
            self.in_queries = False
        known, given = self.d.known(value), getattr(self.d, "m_given", None)
        if known is not None and not (1 <= known <= MAX_QUERIES):
            self.r.fail(f"a cross file needs between 1 and 2^30 queries, but `queries` gives {known}"
                        f"{self._n_note()}", stmt.count.span,
                        help="wrap it as max(1, …) if it shrinks with n")
        if known is not None and given is not None and known != given and not _is_name_m(stmt.count):
            self.r.fail(f"this file declares {known} queries{self._n_note()}, but m = {given} was given",
                        stmt.count.span, help="give no m, or write `queries m` to take m from the caller")
        self.queries_value = value
        return value

    def _m_value(self, node):
        if self.in_queries:
            given = getattr(self.d, "m_given", None)
            if given is None:
                if getattr(self.d, "n_value", None) is not None and isinstance(self.d, Integers):
                    self.r.fail("this cross file takes its number of queries m from the caller, and none was given",
                                node.span, help="compile(source, n, m=77) in Python, --m 77 on the command line")
                self.r.fail("m is known only when compiling (compile(source, n, m=…)): the growth analysis "
                            "of a cross file needs `queries` and its patterns not to use a caller's m", node.span,
                            help="write the number of queries as an expression in n, e.g. `queries n // 4`")
            return self.d.number(given)
        return self.query_count()

    def _refuse_square_only(self, what: str, span):
        self.r.fail(f"{what} needs a square pattern, and this cross file declares `queries` "
                    f"(m queries × n keys)", span,
                    help="a cross pattern is read by absolute query and key index; write it without "
                         f"{what}, or drop `queries` for an n × n pattern")

    def _check_cross_primitive(self, cls, span):
        if cls.name in ("segment", "segment_start"):
            self.r.fail(f"`{cls.name}` compares the segment ids of one sequence, and this cross file "
                        f"has two (`queries`: m queries × n keys)", span,
                        help="mark the key ranges of each query with intervals(q, k) or rows(…) & cols(…)")
        if cls.name in G.GRID_PRIMITIVES and G.GRID_PRIMITIVES[cls.name] is cls:
            self._refuse_square_only(f"`{cls.name}`", span)
        if cls.name == "random":
            self.r.fail("`random` draws min(r, n) keys for each row of an n × n pattern, and this cross file "
                        "is m × n (`queries`): it is not defined here", span,
                        help="mark each query's keys with intervals(q, k), window(…) or cols(…)")

    # ---- structure ------------------------------------------------------------

    def head_count(self, stmt) -> int | None:
        """H: the largest head-range end in the file (1 when there is none; None when a range is wrong)."""
        blocks = [stmt] if isinstance(stmt, A.Heads) else [
            e for e in getattr(stmt, "entries", ()) if isinstance(e, A.Heads)]
        ranges: list[list] = [[] for _ in blocks]  # per heads block: (entry, lo, hi)
        failed = False
        for k, heads in enumerate(blocks):
            for entry in heads.entries:
                try:
                    ranges[k].append((entry, *self.head_range(entry)))
                except _Failed:
                    failed = True
        if failed:
            return None
        count = max((hi for block in ranges for _, _, hi in block), default=1)
        before = len(self.r.diagnostics)
        for heads, block in zip(blocks, ranges):
            self.check_tiling(heads, block, count)
        return None if len(self.r.diagnostics) > before else count

    def head_range(self, entry: A.HeadEntry) -> tuple[int, int]:
        span = entry.lo.span.join(entry.hi.span if entry.hi else None)
        if self.r.mentions_n(entry.lo) or (entry.hi is not None and self.r.mentions_n(entry.hi)):
            self.r.fail("the number of heads cannot depend on n", span,
                        help="write the head ranges with constants, e.g. `0..4:`")
        saved, self.no_n_reason = self.no_n_reason, "the number of heads cannot depend on n"
        try:  # (constants: known in every domain)
            lo = self.d.known(self.integer(entry.lo, {}, "a head index"))
            hi = lo + 1 if entry.hi is None else self.d.known(self.integer(entry.hi, {}, "a head index"))
        finally:
            self.no_n_reason = saved
        span = entry.lo.span.join(entry.hi.span if entry.hi else None)
        if lo < 0:
            self.r.fail(f"head index {lo} is negative", span, help="heads are numbered from 0")
        if hi <= lo:
            what = "empty" if hi == lo else "reversed"
            self.r.fail(f"head range {lo}..{hi} is {what}", span,
                        help=f"a range a..b holds a ≤ h < b; write {min(lo, hi)}..{max(lo, hi) + (hi == lo)}")
        if hi > 4096:
            self.r.fail(f"{hi} heads is more than patterndsl supports (4096)", span)
        return lo, hi

    def check_tiling(self, heads: A.Heads, ranges, count: int):
        covered = 0
        for entry, lo, hi in sorted(ranges, key=lambda item: (item[1], item[2])):
            if lo > covered:
                self.r.report(f"heads {covered}..{lo} have no pattern: the head ranges leave a gap", entry.span,
                              help=f"add an entry `{covered}..{lo}: …`, or start this one at {covered}")
            elif lo < covered:
                self.r.report(f"heads {lo}..{min(hi, covered)} are given twice: the head ranges overlap",
                              entry.span, help=f"start this range at {covered}")
            covered = max(covered, hi)
        if ranges and covered < count:
            self.r.report(f"this heads block covers heads 0..{covered}, but the file has {count} heads",
                          heads.span, help=f"add an entry `{covered}..{count}: …`; every heads block must cover 0..{count}")

    def layers(self, stmt, heads: int | None) -> tuple[tuple[Pattern, ...], ...]:
        """Every layer's patterns, one per head (heads None: the head ranges are wrong; only check the patterns)."""
        entries = stmt.entries if isinstance(stmt, A.Layers) else (stmt,)
        if isinstance(stmt, A.Layers) and not entries:
            self.r.fail("`layers { }` is empty", stmt.span, help="give one pattern per line, one line per layer")
        if heads is not None and len(entries) * heads > MAX_LAYER_HEADS:
            self.r.fail(f"{len(entries):,} layers × {heads:,} heads make {len(entries) * heads:,} patterns "
                        f"(the limit is {MAX_LAYER_HEADS:,})", stmt.span,
                        help="layers cycle over depth: list each distinct layer once")
        out, failed = [], False
        for entry in entries:
            try:
                out.append(self.layer(entry, heads))
            except _Failed:
                failed = True
        if failed:
            raise _Failed
        return tuple(out)

    def layer(self, entry, heads: int) -> tuple[Pattern, ...]:
        if isinstance(entry, A.PatternStmt):
            entry = entry.expr
        if not isinstance(entry, A.Heads):
            return (self.pattern(entry, {}),) * (heads or 0)
        if not entry.entries:
            self.r.fail("`heads { }` is empty", entry.span, help="give `lo..hi: pattern` lines covering every head")
        if heads is None:
            failed = False
            for head_entry in entry.entries:
                try:
                    self.pattern(head_entry.pattern, {})
                except _Failed:
                    failed = True
            if failed:
                raise _Failed
            return ()
        per_head: list[Pattern | None] = [None] * heads
        failed = False
        for head_entry in entry.entries:
            try:
                lo, hi = self.head_range(head_entry)
                pattern = self.pattern(head_entry.pattern, {})
            except _Failed:
                failed = True
                continue
            for h in range(lo, hi):
                per_head[h] = pattern
        if failed:
            raise _Failed
        return tuple(per_head)

    def block_sizes(self, stmt: A.Block) -> tuple[int, int] | None:
        """The block sizes (None where the domain does not know them)."""
        sizes = []
        for node in (stmt.query, stmt.key or stmt.query):
            size = self.d.known(self.integer(node, {}, "a block size"))
            if size is None:
                return None
            problem = block_size_problem(size)
            if problem:
                self.r.fail(problem, node.span, help=BLOCK_SIZE_HELP)
            sizes.append(size)
        return sizes[0], sizes[1]

    # ---- expressions -------------------------------------------------------------

    def let_value(self, name: str):
        key = (name, self.scale)
        if key in self.let_cache:
            return self.let_cache[key]
        if key in self.let_failed:
            raise _Failed
        stmt = self.r.lets[name]
        try:
            value = self.value(stmt.value, {})
        except _Failed:
            self.let_failed.add(key)
            raise
        self.let_cache[key] = value
        return value

    def pattern(self, node: A.Node, scope: dict) -> Pattern:
        value = self.value(node, scope)
        if not self.d.is_pattern(value):
            help = None
            if self.d.is_int(value):
                help = "a bare integer is not a pattern; did you mean `window(…)`, `stride(…)` or `global(…)`?"
            self.r.fail(f"expected a pattern, found {self.describe(value)}", node.span, help=help)
        return value

    def integer(self, node: A.Node, scope: dict, what: str = "an integer") -> int:
        value = self.value(node, scope)
        if not self.d.is_int(value):
            self.r.fail(f"expected {what}, found {self.describe(value)}", node.span)
        return value

    def describe(self, value) -> str:
        if self.d.is_condition(value):
            return "a condition"
        if self.d.is_int(value):
            return f"the integer {value}"
        if isinstance(value, RangeValue):
            return f"the range {value.lo}..{value.hi}"
        if isinstance(value, tuple):
            return f"the tuple ({', '.join(str(v) for v in value)})"
        return f"the pattern `{_short(str(value))}`"

    def value(self, node: A.Node, scope: dict):
        method = getattr(self, "_" + type(node).__name__.lower())
        return method(node, scope)

    def _number(self, node: A.Number, scope):
        return self._check_int(self.d.number(node.value), node.span)

    def _check_int(self, value, span: Span):
        known = self.d.known(value)
        if known is not None and abs(known) > MAX_INT:
            self.r.fail(f"integer too large to mean anything: {_short(str(known), 30)} (|value| > 2^62)", span,
                        help="indices, sizes and counts here are far smaller; check the expression")
        return value

    def _name(self, node: A.Name, scope):
        name = node.id
        if name in scope:
            return scope[name]
        if name in self.hidden:
            self.r.fail(f"the pattern parameter '{name}' cannot be used inside blocks {{ }}", node.span,
                        help="it was built over tokens; pass the integers it is built from, "
                             "or use a def or let, which are evaluated over the blocks")
        if name == "n":
            if self.d.n_value is None:
                self.r.fail(self.no_n_reason or "n is not known here", node.span,
                            help="use a constant here")
            return self.d.n_value
        if name == "m" and self.r.queries is not None:
            return self._m_value(node)
        if name in self.r.lets:
            return self.let_value(name)
        if name in self.r.defs:
            definition = self.r.defs[name]
            if all(p.default is not None for p in definition.params):
                return self.call_def(definition, [], node.span)
            self.r.fail(f"'{name}' needs arguments", node.span,
                        help=f"call it: {name}({', '.join(p.name for p in definition.params)})")
        if name in _CALLABLE_PRIMITIVES:
            cls = _CALLABLE_PRIMITIVES[name]
            if any(len(sig) == 0 for sig in cls.signatures):
                return self.build_primitive(cls, [], node.span)
            self.r.fail(f"'{name}' needs an argument list", node.span, help=f"write {cls.usage()}")
        if name in BUILTINS:
            self.r.fail(f"'{name}' is a function", node.span, help=f"call it: {BUILTINS[name]}")
        raise _Failed  # an unknown name: check_names reported it

    def _union(self, node: A.Union, scope):
        return self._combine(node, scope, self.d.union, "|", "union")

    def _intersection(self, node: A.Intersection, scope):
        return self._combine(node, scope, self.d.intersection, "&", "intersection")

    def _combine(self, node, scope, combine, op, what):
        parts, failed = [], False
        for item in node.items:  # every item, so that independent errors are all reported
            try:
                value = self.value(item, scope)
                if not self.d.is_pattern(value):
                    self.r.fail(f"'{op}' takes patterns on both sides, found {self.describe(value)}", item.span,
                                help=f"'{op}' is the {what} of two patterns; integers combine with + - * // %")
            except _Failed:
                failed = True
                continue
            parts.append(value)
        if failed:
            raise _Failed
        return self._sized(combine(parts), node.span)

    def _sized(self, pattern, span: Span):
        # (a domain's patterns have depth() and size(), as IR patterns do)
        if pattern.depth() > MAX_IR_DEPTH:
            self.r.fail(f"the pattern nests more than {MAX_IR_DEPTH} operators deep (counting the bodies of defs)",
                        span, help="build it with fewer levels: a union of many parts is one level, `a | b | c`",
                        abort=True)
        if pattern.size() > MAX_IR_NODES:
            self.r.fail(f"the pattern grows to {pattern.size():,} nodes once every def is expanded "
                        f"(the limit is {MAX_IR_NODES:,})", span,
                        help="a def that uses its result twice doubles the pattern at each level; restructure it",
                        abort=True)
        return pattern

    def _unary(self, node: A.Unary, scope):
        if node.op == "not":
            return self.d.negate(self.condition(node.operand, scope))
        value = self.value(node.operand, scope)
        if node.op == "~":
            if not self.d.is_pattern(value):
                self.r.fail(f"'~' complements a pattern, found {self.describe(value)}", node.operand.span,
                            help="negate an integer with '-'")
            return self._sized(self.d.complement(value), node.span)
        if not self.d.is_int(value):
            self.r.fail(f"unary '-' negates an integer, found {self.describe(value)}", node.operand.span,
                        help="complement a pattern with '~'; subtract one from another with `a - b`")
        return self._check_int(-value, node.span)

    def _binary(self, node: A.Binary, scope):
        if node.op in COMPARISONS or node.op in ("and", "or"):
            return self._condition(node, scope)
        left = failed = None
        try:
            left = self.value(node.left, scope)
        except _Failed:
            failed = True  # (evaluate the right side outside this handler: no exception chains)
        right = self.value(node.right, scope)  # its errors are reported either way
        if failed:
            raise _Failed
        if node.op == "-" and self.d.is_pattern(left) and self.d.is_pattern(right):
            return self._sized(self.d.difference(left, right), node.span)
        for side, value in ((node.left, left), (node.right, right)):
            if not self.d.is_int(value):
                if node.op == "-":
                    other = right if value is left else left
                    message = (f"'-' needs two patterns or two integers, found {self.describe(value)} "
                               f"and {self.describe(other)}")
                    self.r.fail(message, node.span)
                help = "combine patterns with | & - ~" if self.d.is_pattern(value) else None
                self.r.fail(f"'{node.op}' works on integers, found {self.describe(value)}", side.span, help=help)
        if node.op in ("//", "%") and self.d.known(right) == 0:
            self._division_by_zero(node.right)
        result = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                  "//": lambda: left // right, "%": lambda: left % right}[node.op]()
        return self._check_int(result, node.span)

    def condition(self, node: A.Node, scope: dict):
        value = self.value(node, scope)
        if not self.d.is_condition(value):
            self.r.fail(f"expected a condition, found {self.describe(value)}", node.span,
                        help="a condition compares integers: `n >= 1024`, `w != 0 and n % w == 0`")
        return value

    def _condition(self, node: A.Binary, scope):
        """A comparison of two integers, or `and` / `or` of two conditions."""
        if node.op in ("and", "or"):
            left = self.condition(node.left, scope)
            right = self.condition(node.right, scope)
            return (self.d.both if node.op == "and" else self.d.either)(left, right)
        sides = []
        for side in (node.left, node.right):
            value = self.value(side, scope)
            if not self.d.is_int(value):
                self.r.fail(f"'{node.op}' compares integers, found {self.describe(value)}", side.span,
                            help="compare integer expressions; patterns combine with | & - ~")
            sides.append(value)
        return self.d.compare(node.op, *sides)

    def _if(self, node: A.Call, scope):
        """if(c, a, b): the integer a when c holds, else b. Only the branch taken is
        evaluated (its errors alone are reported), unless the domain cannot decide c."""
        usage = "write if(condition, a, b): the integer a when the condition holds, else b"
        if len(node.args) != 3 or any(isinstance(arg, (A.Keyword, A.Range)) for arg in node.args):
            self.r.fail(f"if takes a condition and two integers, got {len(node.args)} arguments", node.span,
                        help=usage)
        condition = self.condition(node.args[0], scope)
        decided = self.d.decided(condition)
        branches = node.args[1:] if decided is None else (node.args[1] if decided else node.args[2],)
        values = []
        for branch in branches:
            value = self.value(branch, scope)
            if not self.d.is_int(value):
                self.r.fail(f"if chooses between integers, found {self.describe(value)}", branch.span,
                            help="choose between patterns with arithmetic on their parameters, or write two defs")
            values.append(value)
        if decided is not None:
            return values[0]
        return self._check_int(self.d.choose(condition, *values), node.span)

    def _scoped(self, node: A.Scoped, scope):
        """`blocks(B) { P }`: P over the ⌈n/B⌉ blocks of B tokens (n keeps its meaning)."""
        if node.func not in SCOPES:
            self.r.fail(f"unknown scope '{node.func}'", node.span,
                        help=did_you_mean(node.func, set(SCOPES)) or f"write {' or '.join(SCOPES.values())}")
        if node.func == "grid" and self.r.queries is not None:
            self._refuse_square_only("grid { }", node.span)
        if node.func == "grid":
            return self._grid(node, scope)
        usage = f"write {SCOPES[node.func]}"
        if len(node.args) != 1 or isinstance(node.args[0], (A.Keyword, A.Range)):
            self.r.fail(f"blocks takes one block size, got {len(node.args)} arguments", node.span, help=usage)
        size = self.integer(node.args[0], scope, "a block size")
        known = self.d.known(size)
        if known is not None and known < 1:
            self.r.fail(f"blocks(B) needs B ≥ 1, but B = {known}{self._n_note()}", node.args[0].span,
                        help="a block size must be positive; wrap it as max(1, …) if it shrinks with n")
        # A pattern passed in as a def parameter was built over tokens: not usable over blocks.
        inner = {name: value for name, value in scope.items() if not self.d.is_pattern(value)}
        hidden = {name: value for name, value in scope.items() if self.d.is_pattern(value)}
        saved, saved_hidden = self.scale, self.hidden
        self.scale, self.hidden = saved + (size,), {**self.hidden, **hidden}
        self.d.enter_blocks(size)
        try:
            body = self.pattern(node.body, inner)
        finally:
            self.d.leave_blocks()
            self.scale, self.hidden = saved, saved_hidden
        self._no_segments_inside(body, node.body.span, "blocks(B) { }", "blocks")
        return self._sized(self.d.blocks(size, body), node.span)

    def _no_segments_inside(self, body, span, where: str, positions: str):
        if self.d.is_pattern(body) and uses_segments(body):  # (also a growth Bound: check without --n)
            self.r.fail(f"`segment` and `segment_start` cannot be used inside {where}", span,
                        help=f"they compare token positions, and inside it the positions are {positions}; "
                             "intersect outside instead, e.g. segment & (…)")

    def _grid(self, node: A.Scoped, scope):
        """`grid(H, W) { P }` / `grid(T, H, W) { P }` with offset=, order=, tile= (patterndsl/grid.py):
        P over the raster ranks of the cells (n keeps its meaning)."""
        usage = "write grid(H, W) { P } or grid(T, H, W) { P }, options offset=o, order=rows|morton, tile=(th, tw)"
        positional = [arg for arg in node.args if not isinstance(arg, A.Keyword)]
        keywords = {}
        for arg in node.args:
            if isinstance(arg, A.Keyword):
                if arg.name not in ("offset", "order", "tile"):
                    self.r.fail(f"grid has no option '{arg.name}'", arg.span,
                                help=did_you_mean(arg.name, {"offset", "order", "tile"}) or usage)
                if arg.name in keywords:
                    self.r.fail(f"option '{arg.name}' is given twice", arg.span)
                keywords[arg.name] = arg
        if len(positional) not in (2, 3) or any(isinstance(a, (A.Range, A.Tuple)) for a in positional):
            self.r.fail(f"grid takes two or three axis lengths, got {len(positional)}", node.span, help=usage)
        dims = []
        for arg in positional:
            size = self.integer(arg, scope, "an axis length")
            known = self.d.known(size)
            if known is not None and known < 1:
                self.r.fail(f"a grid's axis lengths are ≥ 1, but this one is {known}{self._n_note()}", arg.span,
                            help="wrap it as max(1, …) if it shrinks with n")
            dims.append(size)
        known_dims = [self.d.known(d) for d in dims]
        if all(d is not None for d in known_dims) and math.prod(known_dims) > MAX_N:
            self.r.fail(f"the grid has {math.prod(known_dims):,} cells (the limit is 2^40)", node.span)
        offset = self.d.number(0)
        if "offset" in keywords:
            offset = self.integer(keywords["offset"].value, scope, "an offset")
            known = self.d.known(offset)
            if known is not None and known < 0:
                self.r.fail(f"a grid's offset is ≥ 0, but offset = {known}{self._n_note()}",
                            keywords["offset"].value.span, help="the offset is the token of the first cell")
        order = "rows"
        if "order" in keywords:
            value = keywords["order"].value
            if not isinstance(value, A.Name) or value.id not in G.ORDERS:
                text = value.id if isinstance(value, A.Name) else None
                self.r.fail(f"order={self.r.source_text(value.span) or '…'} is not a token order", value.span,
                            help=(did_you_mean(text, set(G.ORDERS)) if text else None)
                            or "write order=rows (raster, the default) or order=morton")
            order = value.id
        if order == "morton" and all(d is not None for d in known_dims) and math.prod(known_dims) > 1 << 26:
            self.r.fail("a Morton-ordered grid has at most 2^26 cells", node.span,
                        help="use order=rows or tile=(th, tw) for larger grids")
        tile = None
        if "tile" in keywords:
            value = keywords["tile"].value
            if order == "morton":
                self.r.fail("tile= and order=morton cannot be combined", keywords["tile"].span,
                            help="choose one token order: tile by tile, or Morton's")
            if not isinstance(value, A.Tuple) or len(value.items) != len(dims):
                shape = "(th, tw)" if len(dims) == 2 else "(tt, th, tw)"
                self.r.fail(f"tile= takes {len(dims)} sizes, one per axis", value.span, help=f"write tile={shape}")
            tile = []
            for axis, (item, size, known) in enumerate(zip(value.items, dims, known_dims)):
                t = self.integer(item, scope, "a tile size")
                k = self.d.known(t)
                if k is not None and k < 1:
                    self.r.fail(f"tile sizes are ≥ 1, but this one is {k}{self._n_note()}", item.span)
                if k is not None and known is not None and known % k:
                    axis_name = ("T", "H", "W")[axis + 3 - len(dims)]
                    fits = [d for d in range(1, min(known, 64) + 1) if known % d == 0]
                    self.r.fail(f"the tile does not divide the grid: {axis_name} = {known} is not a multiple of "
                                f"{k}{self._n_note()}", item.span,
                                help=f"tile sizes dividing {known}: {', '.join(map(str, fits[-6:]))}")
                tile.append(t)
        shape = G.GridShape(tuple(dims), None if tile is None else tuple(tile))
        inner = {name: value for name, value in scope.items() if not self.d.is_pattern(value)}
        hidden = {name: value for name, value in scope.items() if self.d.is_pattern(value)}
        saved, saved_hidden = self.scale, self.hidden
        self.scale, self.hidden = saved + (("grid", shape),), {**self.hidden, **hidden}
        cells = dims[0]
        for d in dims[1:]:
            cells = cells * d
        self.d.enter_grid(cells)
        self.grids = getattr(self, "grids", ()) + (shape,)
        try:
            body = self.pattern(node.body, inner)
        finally:
            self.grids = self.grids[:-1]
            self.d.leave_grid()
            self.scale, self.hidden = saved, saved_hidden
        self._no_segments_inside(body, node.body.span, "grid { }", "cells")
        return self._sized(self.d.grid(dims, offset, order, tile, body), node.span)

    def _tuple(self, node: A.Tuple, scope):
        """`(a, b)`: a tuple of integers, the value of an option such as shift=(sh, sw)."""
        return tuple(self.integer(item, scope) for item in node.items)

    def _range(self, node: A.Range, scope):
        lo = self.integer(node.lo, scope, "an index")
        hi = self.integer(node.hi, scope, "an index")
        known_lo, known_hi = self.d.known(lo), self.d.known(hi)
        if known_lo is not None and known_lo < 0:
            self.r.fail(f"range {lo}..{hi} starts at a negative index" + self._n_note(), node.span,
                        help="indices count from 0; `n-4..n` is the last four tokens")
        if known_lo is not None and known_hi is not None and known_hi <= known_lo:
            what = "empty" if known_hi == known_lo else "reversed"
            self.r.fail(f"range {lo}..{hi} is {what}{self._n_note()}", node.span,
                        help="a range a..b holds a ≤ i < b, so it needs a < b"
                             + (f"; did you mean {hi}..{lo}?" if known_hi < known_lo else ""))
        return RangeValue(lo, hi)

    def _division_by_zero(self, divisor: A.Node | None, span: Span | None = None, where: str = ""):
        span = span or divisor.span
        text = self.r.source_text(span)
        message = "division by zero" + (f" in {where}" if where else "")
        if text is not None and not text.isdigit():
            message += f": `{text}` is 0" + (f" when n = {self.n}" if self.n is not None else "")
        self.r.fail(message, span, help="divide by a positive number; `max(1, …)` keeps a divisor positive")

    def _n_note(self) -> str:
        return f" (n = {self.n})" if self.n is not None else ""

    def _keyword(self, node: A.Keyword, scope):
        self.r.fail(f"keyword argument '{node.name}=' outside a call", node.span)

    def _call(self, node: A.Call, scope):
        if node.func == "if" and node.func not in self.r.defs:
            return self._if(node, scope)
        positional, keywords = [], {}
        values, failed = [], False
        for arg in node.args:  # every argument, once, so that independent errors are all reported
            try:
                values.append(self.value(arg.value if isinstance(arg, A.Keyword) else arg, scope))
            except _Failed:
                failed = True
                values.append(None)
        if failed:
            raise _Failed
        for arg, value in zip(node.args, values):
            if isinstance(arg, A.Keyword):
                if arg.name in keywords:
                    self.r.fail(f"argument '{arg.name}' is given twice", arg.span)
                keywords[arg.name] = (value, arg.span)
            else:
                if keywords:
                    self.r.fail("a positional argument follows a keyword argument", arg.span,
                                help="put positional arguments first")
                positional.append((value, arg.span))
        if node.func in self.r.defs:
            return self.call_def(self.r.defs[node.func], positional, node.span, keywords)
        if node.func in _CALLABLE_PRIMITIVES:
            return self.build_primitive(_CALLABLE_PRIMITIVES[node.func], positional, node.span, keywords)
        if node.func in BUILTINS:
            return self.call_builtin(node.func, positional, keywords, node.span)
        raise _Failed  # an unknown function: check_names reported it

    def call_builtin(self, name, positional, keywords, span):
        if name == "transpose":
            return self._transpose(positional, keywords, span)
        if keywords:
            self.r.fail(f"{name} takes no keyword arguments", next(iter(keywords.values()))[1],
                        help=f"write {BUILTINS[name]}")
        values = []
        for value, arg_span in positional:
            if not self.d.is_int(value):
                self.r.fail(f"{name} takes integers, found {self.describe(value)}", arg_span)
            values.append((value, arg_span))
        arity = {"isqrt": 1, "ilog2": 1, "cdiv": 2}.get(name)
        if (arity is not None and len(values) != arity) or (arity is None and not values):
            want = f"{arity} argument{'s' if arity != 1 else ''}" if arity else "at least one argument"
            self.r.fail(f"{name} takes {want}, got {len(values)}", span, help=f"write {BUILTINS[name]}")
        args = [v for v, _ in values]
        known = [self.d.known(v) for v in args]
        if name == "isqrt":
            if known[0] is not None and known[0] < 0:
                self.r.fail(f"isqrt needs a number ≥ 0, got {args[0]}{self._n_note()}", values[0][1])
            return self.d.isqrt(args[0])
        if name == "ilog2":
            if known[0] is not None and known[0] < 1:
                self.r.fail(f"ilog2 needs a positive number, got {args[0]}{self._n_note()}", values[0][1])
            return self.d.ilog2(args[0])
        if name == "cdiv":
            if known[1] == 0:
                self._division_by_zero(None, values[1][1], "cdiv")
            return self.d.cdiv(args[0], args[1])
        return self.d.minimum(*args) if name == "min" else self.d.maximum(*args)

    def _transpose(self, positional, keywords, span):
        if self.r.queries is not None:
            self._refuse_square_only("transpose(P)", span)
        if keywords or len(positional) != 1:
            self.r.fail(f"transpose takes one pattern, got {len(positional) + len(keywords)} arguments", span,
                        help="write transpose(P): (i, j) is in it when (j, i) is in P")
        value, arg_span = positional[0]
        if not self.d.is_pattern(value):
            self.r.fail(f"transpose takes a pattern, found {self.describe(value)}", arg_span,
                        help="write transpose(P): (i, j) is in it when (j, i) is in P")
        if self.d.is_pattern(value) and transposes_segment_ranks(value):  # (also a growth Bound: check without --n)
            self.r.fail("transpose of `segment_start` is not supported: it would need each query's rank "
                        "within its segment", arg_span,
                        help="segment is symmetric and may be transposed; write the sinks on the key side")
        return self._sized(self.d.transpose(value), span)

    def build_primitive(self, cls, positional, span, keywords=None):
        keywords = keywords or {}
        bound = self._bind_primitive(cls, positional, keywords, span)
        args, spans = {}, {}
        for spec, (value, arg_span) in bound.items():
            if spec.kind == "indices":
                items = []
                for item, item_span in value:
                    if self.d.is_int(item):
                        known = self.d.known(item)
                        if known is not None and known < 0:
                            self.r.fail(f"index {item} is negative{self._n_note()}", item_span,
                                        help="indices count from 0; `n-1` is the last token")
                    elif not isinstance(item, RangeValue):
                        self.r.fail(f"{cls.name}(R) takes indices and ranges a..b, found {self.describe(item)}",
                                    item_span)
                    items.append(item)
                args[spec.name] = items
            elif spec.kind == "tuple":
                names = cls.tuple_names(spec.name)
                if arg_span is span:  # the default: zeros
                    items = [self.d.number(0)] * len(names)
                else:
                    items = value
                    if not isinstance(items, tuple) or len(items) != len(names):
                        self.r.fail(f"{cls.name}: '{spec.name}' takes {len(names)} integers", arg_span,
                                    help=f"write {spec.name}=({', '.join(names)})")
                for name, item in zip(names, items):
                    args[name] = item
                    spans[name] = arg_span
                continue
            elif spec.kind == "pattern":
                if not self.d.is_pattern(value):
                    self.r.fail(f"{cls.name}: '{spec.name}' must be a pattern, found {self.describe(value)}",
                                arg_span, help=f"write {cls.usage()}")
                args[spec.name] = value
            else:
                if not self.d.is_int(value):
                    self.r.fail(f"{cls.name}: '{spec.name}' must be an integer, found {self.describe(value)}",
                                arg_span, help=f"write {cls.usage()}")
                args[spec.name] = value
            spans[spec.name] = arg_span
        if self.d.n_value is None:
            self.r.fail(self.no_n_reason or "n is not known here", span)
        if self.r.queries is not None:
            self._check_cross_primitive(cls, span)
        if cls.name in G.GRID_PRIMITIVES and G.GRID_PRIMITIVES[cls.name] is cls:
            args["grid"] = getattr(self, "grids", ())[-1] if getattr(self, "grids", ()) else None
        try:
            return self.d.primitive(cls, args)
        except ParamError as exc:
            self.r.fail(exc.message, spans.get(exc.param, span), help=exc.help)

    def _bind_primitive(self, cls, positional, keywords, span):
        """Match the arguments to one of the primitive's signatures: {spec: (value, span)}."""
        for signature in cls.signatures:
            if signature and signature[0].kind == "indices":
                if keywords:
                    continue
                if not positional:
                    self.r.fail(f"{cls.name} needs at least one index or range", span,
                                help=f"write e.g. {cls.name}(0..8) or {cls.name}(0, 5, n-1)")
                return {signature[0]: (positional, span.join(positional[-1][1]))}
            names = [spec.name for spec in signature]
            if len(positional) > len(signature) or any(k not in names for k in keywords):
                continue
            bound = {}
            for spec, (value, arg_span) in zip(signature, positional):
                bound[spec] = (value, arg_span)
            ok = True
            for spec in signature[len(positional):]:
                if spec.name in keywords:
                    bound[spec] = keywords[spec.name]
                elif spec.default is not None:
                    bound[spec] = (self.d.number(spec.default), span)
                else:
                    ok = False
            if ok and not any(k in names[: len(positional)] for k in keywords):
                return bound
        for name, (_, kw_span) in keywords.items():
            known = {spec.name for sig in cls.signatures for spec in sig}
            if name not in known:
                hint = did_you_mean(name, known)
                self.r.fail(f"{cls.name} has no parameter '{name}'", kw_span,
                            help=hint or f"write {cls.usage()}")
        arities = sorted({len(sig) for sig in cls.signatures})
        count = len(positional) + len(keywords)
        if arities == [0]:
            self.r.fail(f"'{cls.name}' takes no arguments", span, help=f"write `{cls.name}`")
        takes = " or ".join(str(a) for a in arities)
        self.r.fail(f"{cls.name} takes {takes} argument{'s' if arities[-1] != 1 else ''}, got {count}", span,
                    help=f"write {cls.usage()}")

    def call_def(self, definition: A.Def, positional, span, keywords=None):
        keywords = keywords or {}
        params = definition.params
        if len(positional) > len(params):
            self.r.fail(f"{definition.name} takes {len(params)} argument{'s' if len(params) != 1 else ''}, "
                        f"got {len(positional) + len(keywords)}", span,
                        help=f"write {definition.name}({', '.join(p.name for p in params)})",
                        notes=(f"{definition.name} is defined at line {definition.span.line}",))
        values = [value for value, _ in positional]
        for param in params[len(positional):]:
            if param.name in keywords:
                values.append(keywords[param.name][0])
            elif param.default is not None:
                values.append(self.value(param.default, {}))
            else:
                self.r.fail(f"{definition.name}() is missing the argument '{param.name}'", span,
                            help=f"write {definition.name}({', '.join(p.name for p in params)})")
        names = {p.name for p in params}
        for name, (_, kw_span) in keywords.items():
            if name not in names:
                self.r.fail(f"{definition.name} has no parameter '{name}'", kw_span,
                            help=did_you_mean(name, names) or f"its parameters are {', '.join(sorted(names)) or 'none'}")
            if name in {p.name for p in params[: len(positional)]}:
                self.r.fail(f"argument '{name}' is given twice", kw_span)
        key = (definition.name, tuple(values), self.scale)
        if key in self.call_cache:
            return self.call_cache[key]
        if key in self.failed_calls:
            raise _Failed  # reported at its first call

        scope = {p.name: v for p, v in zip(params, values)}
        if self.call_depth >= MAX_CALL_DEPTH:
            self.r.fail(f"defs call each other more than {MAX_CALL_DEPTH} levels deep", span,
                        help="build the pattern with fewer levels of defs", abort=True)
        self.calls += 1
        if self.calls > MAX_CALLS:
            if self.call_depth == 0:
                self._too_many_calls(span)
            raise _Abort  # reported at the outermost call (below), where the user wrote it
        before = len(self.r.diagnostics)
        self.call_depth += 1
        try:
            result = self.value(definition.body, scope)
        except _Abort as exc:
            if self.calls > MAX_CALLS and self.call_depth == 1:
                self._too_many_calls(span)
            self._note_call(definition, values, span, before)
            raise exc
        except _Failed:
            self._note_call(definition, values, span, before)
            self.failed_calls.add(key)
            raise
        finally:
            self.call_depth -= 1
        self.call_cache[key] = result
        return result

    def _too_many_calls(self, span):
        self.r.report(f"evaluating `{self.r.source_text(span, 60) or 'this'}` takes more than {MAX_CALLS:,} "
                      "calls of defs", span,
                      help="a def that calls another def twice doubles the work at each level; restructure it")

    def _note_call(self, definition, values, span, before):
        """Say which call led to the errors (diagnostics[before:]) inside a def."""
        shown = _short(f"{definition.name}({', '.join(_show_value(v) for v in values)})", 60)
        for k in range(before, len(self.r.diagnostics)):
            d = self.r.diagnostics[k]
            self.r.diagnostics[k] = Diagnostic(d.message, d.span, d.help, _add_call_note(
                d.notes, f"in the call {shown} at line {span.line}, column {span.column}"))


_BINDING = re.compile(r"(let|def|prob)[ \t\f]+([A-Za-z_][A-Za-z0-9_]*)")


_PROB = re.compile(r"prob[ \t\f]+([A-Za-z_][A-Za-z0-9_]*)[ \t\f]*(\([ \t\f]*([^ \t\f)]*))?")


MAX_QUERIES = 1 << 30  # a cross file's m (query indices stay int32, as keys do below 2^30)


def _is_name_m(node) -> bool:
    return isinstance(node, A.Name) and node.id == "m"


def _prob_parts(text: str) -> tuple[str, str | None]:
    """`prob`'s name and argument text: "entmax(1.5)" -> ("entmax", "1.5"); "softmax" -> ("softmax", None)."""
    name, _, argument = text.partition("(")
    return name, argument[:-1] if argument else None


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _show_value(value) -> str:
    if isinstance(value, RangeValue):
        return f"{value.lo}..{value.hi}"
    return _short(str(value), 20)


def _add_call_note(notes: tuple[str, ...], note: str) -> tuple[str, ...]:
    """Add an "in the call …" note, keeping at most MAX_CALL_NOTES of them and counting the rest."""
    calls = [k for k, text in enumerate(notes) if text.startswith("in the call ")]
    if len(calls) < MAX_CALL_NOTES:
        return notes + (note,)
    last = notes[-1]
    more = int(last.split()[2]) + 1 if last.startswith("… and ") else 1
    kept = notes[:-1] if last.startswith("… and ") else notes
    return kept + (f"… and {more} more enclosing call{'s' if more > 1 else ''}",)


@contextmanager
def deep_recursion():
    # Nesting is bounded (MAX_IR_DEPTH operators, MAX_CALL_DEPTH defs), but a
    # chain of defs nests their bodies; give Python room for that. Also used by
    # the growth analysis, which interprets the same AST.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def resolve(module: A.Module, source: Source, n: int | None, m: int | None = None) -> Resolved:
    """Evaluate ``module`` for sequence length ``n`` (None: structure only); ``m``: a cross
    file's number of queries, for its `queries m`."""
    if n is not None and not (1 <= n <= MAX_N):
        raise SpatError(Diagnostic(f"n must be between 1 and 2^40, got {n}"), source)
    domain = Integers(n)
    domain.m_given = m
    return evaluate(module, source, domain)


def evaluate(module: A.Module, source: Source, domain) -> Resolved:
    """Evaluate ``module`` in ``domain`` (see `Integers`): the patterns are the domain's,
    and every diagnostic is a SpatError, whatever the domain."""
    with deep_recursion():
        try:
            return Resolver(module, source).resolve(domain)
        except RecursionError:
            raise SpatError(Diagnostic("the pattern nests too deeply once its defs are expanded",
                                       help="flatten the chain of defs"), source) from None
