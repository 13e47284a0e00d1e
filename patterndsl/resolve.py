"""AST → IR: names, definitions, calls and integer arithmetic, with n bound.

Checks done before anything is evaluated (so they are reported even in code
that is never used): duplicate and reserved names, unknown names (with "did you
mean"), recursive `def`/`let`, and the file's shape (one pattern, at most one
`block` and one `prob`). Then each statement is evaluated for the given n;
one failing statement does not stop the others from being checked, so a run
reports every independent error.
"""
from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from . import ast as A
from .errors import Diagnostic, Source, Span, SpatError, did_you_mean
from .ir import Complement, Difference, Intersection, Pattern, Union
from .primitives import PRIMITIVES, ParamError

MAX_INT = 1 << 62  # any integer beyond this in magnitude is an error, not a meaning
MAX_IR_NODES = 100_000  # after expanding every def
MAX_N = 1 << 40
PROBABILITY_MAPS = ("softmax", "sparsemax")
BUILTINS = {"isqrt": "isqrt(x)", "ilog2": "ilog2(x)", "min": "min(a, b, …)", "max": "max(a, b, …)",
            "cdiv": "cdiv(a, b)"}


@dataclass(frozen=True)
class RangeValue:
    """The value of `lo..hi` (an argument for an index list)."""

    lo: int
    hi: int


@dataclass(frozen=True)
class Resolved:
    """What a file declares, evaluated for one n."""

    patterns: tuple[tuple[Pattern, ...], ...]  # [layer][head]
    block: tuple[int, int] | None
    prob: str


class _Failed(Exception):
    """A statement could not be evaluated; its diagnostic is already recorded."""


def _describe(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, RangeValue):
        return f"the range {value.lo}..{value.hi}"
    return f"the pattern `{_short(str(value))}`"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Resolver:
    def __init__(self, module: A.Module, source: Source):
        self.module = module
        self.source = source
        self.diagnostics: list[Diagnostic] = []
        self.lets: dict[str, A.Let] = {}
        self.defs: dict[str, A.Def] = {}
        self.pattern_stmt: A.Node | None = None
        self.block: A.Block | None = None
        self.prob: A.Prob | None = None

    # ---- reporting --------------------------------------------------------

    def report(self, message, span, help=None, notes=()):
        diagnostic = Diagnostic(message, span, help, tuple(notes))
        if diagnostic not in self.diagnostics:
            self.diagnostics.append(diagnostic)

    def fail(self, message, span, help=None, notes=()):
        self.report(message, span, help, notes)
        raise _Failed

    # ---- checks that need no n -------------------------------------------------

    def collect(self):
        names: dict[str, A.Node] = {}
        for stmt in self.module.statements:
            if isinstance(stmt, (A.Let, A.Def)):
                if self._check_new_name(stmt.name, stmt.span, names):
                    names[stmt.name] = stmt
                    (self.lets if isinstance(stmt, A.Let) else self.defs)[stmt.name] = stmt
                if isinstance(stmt, A.Def):
                    seen: dict[str, A.Node] = {}
                    for param in stmt.params:
                        if self._check_new_name(param.name, param.span, seen, kind="parameter"):
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
                if stmt.name not in PROBABILITY_MAPS:
                    hint = did_you_mean(stmt.name, PROBABILITY_MAPS) or (
                        "the probability maps are " + ", ".join(PROBABILITY_MAPS))
                    self.report(f"unknown probability map '{stmt.name}'", stmt.span, help=hint)
        if self.pattern_stmt is None and not self.diagnostics:
            end = Span(1, 1, 1, 2)
            self.report("the file declares no pattern", end,
                        help="add an expression such as `window(64) | global(0..8)` on a line of its own")

    def _check_new_name(self, name, span, seen, kind="name") -> bool:
        reserved = None
        if name == "n":
            reserved = "`n` is the sequence length and cannot be redefined"
        elif name in PRIMITIVES:
            reserved = f"'{name}' is a primitive and cannot be redefined"
        elif name in BUILTINS:
            reserved = f"'{name}' is a built-in function and cannot be redefined"
        if reserved:
            self.report(reserved, span, help=f"choose another {kind}")
            return False
        if name in seen:
            self.report(f"'{name}' is defined twice", span,
                        notes=(f"the first definition is at line {seen[name].span.line}",),
                        help=f"rename one of the two")
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
            for root in roots:
                for node in A.walk(root):
                    if isinstance(node, A.Name):
                        self._check_name(node.id, node.span, scope, module_names, used, call=False)
                    elif isinstance(node, A.Call):
                        self._check_name(node.func, node.span, scope, module_names, used, call=True)
            if isinstance(stmt, (A.Let, A.Def)):
                depends[stmt.name] = used
        for name in self._cycles(depends):
            stmt = self.lets.get(name) or self.defs[name]
            chain = self._cycle_path(name, depends)
            kind = "def" if isinstance(stmt, A.Def) else "let"
            self.report(f"recursive {kind}: " + " → ".join(chain), stmt.span,
                        help="patterns are finite expressions: unroll the recursion, or pass the varying part as a parameter")

    def _check_name(self, name, span, scope, module_names, used, call):
        if name in scope:
            if call:
                self.report(f"'{name}' is a parameter, not something to call", span,
                            help="only primitives, defs and built-in functions are called")
            return
        if name in module_names:
            used.add(name)
            return
        if name == "n" and not call:
            return
        if name in PRIMITIVES or name in BUILTINS or (name == "n" and call):
            if name == "n":
                self.report("`n` is the sequence length, not a function", span)
            return
        kind = "primitive or function" if call else "name"
        candidates = set(PRIMITIVES) | set(BUILTINS) | module_names | scope | ({"n"} if not call else set())
        self.report(f"unknown {kind} '{name}'", span, help=did_you_mean(name, candidates))

    @staticmethod
    def _cycles(depends):
        """Names on a dependency cycle (each cycle reported at its first name)."""
        on_cycle, state = [], {}
        for start in depends:
            if state.get(start):
                continue
            stack = [(start, iter(sorted(depends.get(start, ()))))]
            path, state[start] = [start], 1
            while stack:
                node, edges = stack[-1]
                nxt = next(edges, None)
                if nxt is None:
                    stack.pop()
                    path.pop()
                    state[node] = 2
                elif state.get(nxt) == 1:
                    if not any(name in on_cycle for name in path[path.index(nxt):]):
                        on_cycle.append(nxt)
                elif not state.get(nxt):
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(sorted(depends.get(nxt, ())))))
        return on_cycle

    @staticmethod
    def _cycle_path(name, depends):
        # Breadth-first search for the shortest way back to ``name``.
        previous, frontier = {name: None}, [name]
        while frontier:
            following = []
            for node in frontier:
                for nxt in sorted(depends.get(node, ())):
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

    # ---- evaluation ---------------------------------------------------------

    def resolve(self, n: int | None) -> Resolved:
        self.collect()
        self.check_names()
        if self.diagnostics:
            raise SpatError(self.diagnostics, self.source)
        evaluator = _Evaluator(self, n)
        heads = evaluator.head_count(self.pattern_stmt)
        patterns, block, prob = (), None, "softmax"
        if n is not None:
            for stmt in self.module.statements:  # every let, so unused ones are checked too
                if isinstance(stmt, A.Let):
                    try:
                        evaluator.let_value(stmt.name)
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
        if self.prob is not None:
            prob = self.prob.name
        if self.diagnostics:
            raise SpatError(sorted(self.diagnostics, key=lambda d: (d.span.line, d.span.column) if d.span else (0, 0)),
                            self.source)
        return Resolved(patterns, block, prob)


class _Evaluator:
    def __init__(self, resolver: Resolver, n: int | None):
        self.r = resolver
        self.n = n
        self.let_cache: dict[str, object] = {}
        self.let_failed: set[str] = set()
        self.let_active: set[str] = set()
        self.call_cache: dict[tuple, object] = {}
        self.no_n_reason: str | None = None

    # ---- structure ------------------------------------------------------------

    def head_count(self, stmt) -> int:
        """H: the largest head-range end in the file (1 when there is none)."""
        blocks = [stmt] if isinstance(stmt, A.Heads) else [
            e for e in getattr(stmt, "entries", ()) if isinstance(e, A.Heads)]
        ranges = []
        for heads in blocks:
            for entry in heads.entries:
                try:
                    ranges.append((heads, entry, *self.head_range(entry)))
                except _Failed:
                    pass
        if self.r.diagnostics:
            raise SpatError(self.r.diagnostics, self.r.source)
        count = max((hi for _, _, _, hi in ranges), default=1)
        for heads in blocks:
            self.check_tiling(heads, [(e, lo, hi) for h, e, lo, hi in ranges if h is heads], count)
        if self.r.diagnostics:
            raise SpatError(self.r.diagnostics, self.r.source)
        return count

    def head_range(self, entry: A.HeadEntry) -> tuple[int, int]:
        saved, self.no_n_reason = self.no_n_reason, "the number of heads cannot depend on n"
        try:
            lo = self.integer(entry.lo, {}, "a head index")
            hi = lo + 1 if entry.hi is None else self.integer(entry.hi, {}, "a head index")
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

    def layers(self, stmt, heads: int) -> tuple[tuple[Pattern, ...], ...]:
        entries = stmt.entries if isinstance(stmt, A.Layers) else (stmt,)
        if isinstance(stmt, A.Layers) and not entries:
            self.r.fail("`layers { }` is empty", stmt.span, help="give one pattern per line, one line per layer")
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
            return (self.pattern(entry, {}),) * heads
        if not entry.entries:
            self.r.fail("`heads { }` is empty", entry.span, help="give `lo..hi: pattern` lines covering every head")
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

    def block_sizes(self, stmt: A.Block) -> tuple[int, int]:
        sizes = []
        for node in (stmt.query, stmt.key or stmt.query):
            size = self.integer(node, {}, "a block size")
            if size < 16 or size & (size - 1):
                self.r.fail(f"block size {size} is not a power of two ≥ 16", node.span,
                            help="kernels tile the mask in power-of-two blocks: 16, 32, 64, 128, …")
            sizes.append(size)
        return sizes[0], sizes[1]

    # ---- expressions -------------------------------------------------------------

    def let_value(self, name: str):
        if name in self.let_cache:
            return self.let_cache[name]
        if name in self.let_failed:
            raise _Failed
        stmt = self.r.lets[name]
        try:
            value = self.value(stmt.value, {})
        except _Failed:
            self.let_failed.add(name)
            raise
        self.let_cache[name] = value
        return value

    def pattern(self, node: A.Node, scope: dict) -> Pattern:
        value = self.value(node, scope)
        if not isinstance(value, Pattern):
            help = None
            if isinstance(value, int):
                help = "a bare integer is not a pattern; did you mean `window(…)`, `stride(…)` or `global(…)`?"
            self.r.fail(f"expected a pattern, found {_describe(value)}", node.span, help=help)
        return value

    def integer(self, node: A.Node, scope: dict, what: str = "an integer") -> int:
        value = self.value(node, scope)
        if not isinstance(value, int):
            self.r.fail(f"expected {what}, found {_describe(value)}", node.span)
        return value

    def value(self, node: A.Node, scope: dict):
        method = getattr(self, "_" + type(node).__name__.lower())
        return method(node, scope)

    def _number(self, node: A.Number, scope):
        return self._check_int(node.value, node.span)

    def _check_int(self, value: int, span: Span) -> int:
        if abs(value) > MAX_INT:
            self.r.fail(f"integer too large to mean anything: {_short(str(value), 30)} (|value| > 2^62)", span,
                        help="indices, sizes and counts here are far smaller; check the expression")
        return value

    def _name(self, node: A.Name, scope):
        name = node.id
        if name in scope:
            return scope[name]
        if name == "n":
            if self.n is None:
                self.r.fail(self.no_n_reason or "n is not known here", node.span,
                            help="use a constant here")
            return self.n
        if name in self.r.lets:
            return self.let_value(name)
        if name in self.r.defs:
            definition = self.r.defs[name]
            if all(p.default is not None for p in definition.params):
                return self.call_def(definition, [], node.span)
            self.r.fail(f"'{name}' needs arguments", node.span,
                        help=f"call it: {name}({', '.join(p.name for p in definition.params)})")
        if name in PRIMITIVES:
            cls = PRIMITIVES[name]
            if any(len(sig) == 0 for sig in cls.signatures):
                return self.build_primitive(cls, [], node.span)
            self.r.fail(f"'{name}' needs an argument list", node.span, help=f"write {cls.usage()}")
        if name in BUILTINS:
            self.r.fail(f"'{name}' is a function", node.span, help=f"call it: {BUILTINS[name]}")
        self.r.fail(f"unknown name '{name}'", node.span)  # check_names reports these first

    def _union(self, node: A.Union, scope):
        return self._combine(node, scope, Union, "|", "union")

    def _intersection(self, node: A.Intersection, scope):
        return self._combine(node, scope, Intersection, "&", "intersection")

    def _combine(self, node, scope, cls, op, what):
        parts = []
        for item in node.items:
            value = self.value(item, scope)
            if not isinstance(value, Pattern):
                self.r.fail(f"'{op}' takes patterns on both sides, found {_describe(value)}", item.span,
                            help=f"'{op}' is the {what} of two patterns; integers combine with + - * // %")
            parts.append(value)
        return self._sized(cls(tuple(parts)), node.span)

    def _sized(self, pattern: Pattern, span: Span) -> Pattern:
        if pattern.size() > MAX_IR_NODES:
            self.r.fail(f"the pattern grows to {pattern.size():,} nodes once every def is expanded "
                        f"(the limit is {MAX_IR_NODES:,})", span,
                        help="a def that uses its result twice doubles the pattern at each level; restructure it")
        return pattern

    def _unary(self, node: A.Unary, scope):
        value = self.value(node.operand, scope)
        if node.op == "~":
            if not isinstance(value, Pattern):
                self.r.fail(f"'~' complements a pattern, found {_describe(value)}", node.operand.span,
                            help="negate an integer with '-'")
            return self._sized(Complement(value), node.span)
        if not isinstance(value, int):
            self.r.fail(f"unary '-' negates an integer, found {_describe(value)}", node.operand.span,
                        help="complement a pattern with '~'; subtract one from another with `a - b`")
        return self._check_int(-value, node.span)

    def _binary(self, node: A.Binary, scope):
        left = self.value(node.left, scope)
        right = self.value(node.right, scope)
        if node.op == "-" and isinstance(left, Pattern) and isinstance(right, Pattern):
            return self._sized(Difference(left, right), node.span)
        for side, value in ((node.left, left), (node.right, right)):
            if not isinstance(value, int):
                if node.op == "-":
                    other = right if value is left else left
                    message = f"'-' needs two patterns or two integers, found {_describe(value)} and {_describe(other)}"
                    self.r.fail(message, node.span)
                help = "combine patterns with | & - ~" if isinstance(value, Pattern) else None
                self.r.fail(f"'{node.op}' works on integers, found {_describe(value)}", side.span, help=help)
        if node.op in ("//", "%") and right == 0:
            self.r.fail("division by zero", node.right.span,
                        help="the divisor is 0 here" + (f" (n = {self.n})" if self.n is not None else ""))
        result = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                  "//": lambda: left // right, "%": lambda: left % right}[node.op]()
        return self._check_int(result, node.span)

    def _range(self, node: A.Range, scope):
        lo = self.integer(node.lo, scope, "an index")
        hi = self.integer(node.hi, scope, "an index")
        if lo < 0:
            self.r.fail(f"range {lo}..{hi} starts at a negative index" + self._n_note(), node.span,
                        help="indices count from 0; `n-4..n` is the last four tokens")
        if hi <= lo:
            what = "empty" if hi == lo else "reversed"
            self.r.fail(f"range {lo}..{hi} is {what}{self._n_note()}", node.span,
                        help=f"a range a..b holds a ≤ i < b, so it needs a < b"
                             + (f"; did you mean {hi}..{lo}?" if hi < lo else ""))
        return RangeValue(lo, hi)

    def _n_note(self) -> str:
        return f" (n = {self.n})" if self.n is not None else ""

    def _keyword(self, node: A.Keyword, scope):
        self.r.fail(f"keyword argument '{node.name}=' outside a call", node.span)

    def _call(self, node: A.Call, scope):
        positional, keywords = [], {}
        for arg in node.args:
            if isinstance(arg, A.Keyword):
                if arg.name in keywords:
                    self.r.fail(f"argument '{arg.name}' is given twice", arg.span)
                keywords[arg.name] = (self.value(arg.value, scope), arg.span)
            else:
                if keywords:
                    self.r.fail("a positional argument follows a keyword argument", arg.span,
                                help="put positional arguments first")
                positional.append((self.value(arg, scope), arg.span))
        if node.func in self.r.defs:
            return self.call_def(self.r.defs[node.func], positional, node.span, keywords)
        if node.func in PRIMITIVES:
            return self.build_primitive(PRIMITIVES[node.func], positional, node.span, keywords)
        if node.func in BUILTINS:
            return self.call_builtin(node.func, positional, keywords, node.span)
        self.r.fail(f"unknown primitive or function '{node.func}'", node.span)

    def call_builtin(self, name, positional, keywords, span):
        if keywords:
            self.r.fail(f"{name} takes no keyword arguments", next(iter(keywords.values()))[1],
                        help=f"write {BUILTINS[name]}")
        values = []
        for value, arg_span in positional:
            if not isinstance(value, int):
                self.r.fail(f"{name} takes integers, found {_describe(value)}", arg_span)
            values.append((value, arg_span))
        arity = {"isqrt": 1, "ilog2": 1, "cdiv": 2}.get(name)
        if (arity is not None and len(values) != arity) or (arity is None and not values):
            want = f"{arity} argument{'s' if arity != 1 else ''}" if arity else "at least one argument"
            self.r.fail(f"{name} takes {want}, got {len(values)}", span, help=f"write {BUILTINS[name]}")
        args = [v for v, _ in values]
        if name == "isqrt":
            if args[0] < 0:
                self.r.fail(f"isqrt of a negative number ({args[0]}){self._n_note()}", values[0][1])
            return math.isqrt(args[0])
        if name == "ilog2":
            if args[0] < 1:
                self.r.fail(f"ilog2 needs a positive number, got {args[0]}{self._n_note()}", values[0][1])
            return args[0].bit_length() - 1
        if name == "cdiv":
            if args[1] == 0:
                self.r.fail("division by zero in cdiv", values[1][1])
            return -(-args[0] // args[1])
        return min(args) if name == "min" else max(args)

    def build_primitive(self, cls, positional, span, keywords=None):
        keywords = keywords or {}
        bound = self._bind_primitive(cls, positional, keywords, span)
        args, spans = {}, {}
        for spec, (value, arg_span) in bound.items():
            if spec.kind == "indices":
                items = []
                for item, item_span in value:
                    if isinstance(item, RangeValue):
                        items.append((item.lo, item.hi))
                    elif isinstance(item, int):
                        if item < 0:
                            self.r.fail(f"index {item} is negative{self._n_note()}", item_span,
                                        help="indices count from 0; `n-1` is the last token")
                        items.append((item, item + 1))
                    else:
                        self.r.fail(f"{cls.name}(R) takes indices and ranges a..b, found {_describe(item)}",
                                    item_span)
                args[spec.name] = items
            else:
                if not isinstance(value, int) or isinstance(value, bool):
                    self.r.fail(f"{cls.name}: '{spec.name}' must be an integer, found {_describe(value)}",
                                arg_span, help=f"write {cls.usage()}")
                args[spec.name] = value
            spans[spec.name] = arg_span
        if self.n is None:
            self.r.fail(self.no_n_reason or "n is not known here", span)
        try:
            return cls.build(args, self.n)
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
                    bound[spec] = (spec.default, span)
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
        key = (definition.name, tuple(values))
        if key in self.call_cache:
            return self.call_cache[key]
        scope = {p.name: v for p, v in zip(params, values)}
        before = len(self.r.diagnostics)
        try:
            result = self.value(definition.body, scope)
        except _Failed:
            # Say which call led to an error inside the def.
            for k in range(before, len(self.r.diagnostics)):
                d = self.r.diagnostics[k]
                self.r.diagnostics[k] = Diagnostic(d.message, d.span, d.help, d.notes + (
                    f"in the call of {definition.name} at line {span.line}, column {span.column}",))
            raise
        self.call_cache[key] = result
        return result


@contextmanager
def _deep_recursion():
    # Nesting is bounded (200 levels per expression, MAX_IR_NODES overall), but
    # a chain of defs nests their bodies; give Python room for that.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def resolve(module: A.Module, source: Source, n: int | None) -> Resolved:
    """Evaluate ``module`` for sequence length ``n`` (None: structure only)."""
    if n is not None and not (1 <= n <= MAX_N):
        raise SpatError(Diagnostic(f"n must be between 1 and 2^40, got {n}"), source)
    with _deep_recursion():
        try:
            return Resolver(module, source).resolve(n)
        except RecursionError:
            raise SpatError(Diagnostic("the pattern nests too deeply once its defs are expanded",
                                       help="flatten the chain of defs"), source) from None
