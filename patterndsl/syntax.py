"""Text → AST: the lexer, the statement splitter and the LALR parser.

The tokens are those the grammar (grammar/spat.lark) defines; this module lexes
them itself rather than through lark's lexer so that it can
  * keep going after a bad character and report every one,
  * drop newlines inside parentheses and after an operator (continuation lines),
  * keep comments and blank lines for the formatter,
  * split the file into statements, which are parsed one by one so that a
    syntax error in one statement does not hide the errors in the next.
The parse tree is turned into AST nodes while parsing (lark's inline
transformer), so nothing here recurses over the input's nesting depth.
"""
from __future__ import annotations

import functools
import re
from dataclasses import replace
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedInput, UnexpectedToken

from . import ast as A
from .errors import Diagnostic, Source, Span, SpatError

GRAMMAR_PATH = Path(__file__).parent / "grammar" / "spat.lark"

MAX_SOURCE_BYTES = 1 << 20  # a .spat file larger than 1 MiB is not a pattern
MAX_NESTING = 200  # deepest expression accepted (parentheses, operators)
MAX_NUMBER_DIGITS = 30  # beyond 10^30 an integer cannot mean anything here
MAX_ERRORS = 50  # stop reporting after this many diagnostics

_OPERATOR_TOKENS = {"|", "&", "-", "+", "*", "//", "%", "~", "=", ",", "..", ":"}
_DESCRIBE = {
    "NAME": "a name",
    "NUMBER": "a number",
    "FLOAT": "a number",
    "$END": "the end of the line",
}


class _ToAst:
    """Inline transformer: parse-tree callbacks that build AST nodes.

    The parser runs with keep_all_tokens, so each callback sees the punctuation
    too and can give its node a span that covers the whole construct.
    """

    def __init__(self):
        self.depth: dict[int, int] = {}

    def _node(self, cls, children, *args):
        nodes = [c for c in children if isinstance(c, A.Node)]
        depth = 1 + max((self.depth.get(id(c), 1) for c in nodes), default=0)
        span = _span_of(children[0]).join(_span_of(children[-1]))
        if depth > MAX_NESTING:
            raise SpatError(Diagnostic(
                f"expression nested too deeply (more than {MAX_NESTING} levels)", span,
                help="split it into named parts with `let` or `def`"))
        node = cls(*args, span=span)
        self.depth[id(node)] = depth
        return node

    @staticmethod
    def _nodes(children):
        return [c for c in children if isinstance(c, A.Node)]

    def pattern_stmt(self, c):
        return self._node(A.PatternStmt, c, c[0])

    def let_stmt(self, c):
        return self._node(A.Let, c, str(c[1]), c[3])

    def def_stmt(self, c):
        params = tuple(p for p in c if isinstance(p, A.Param))
        return self._node(A.Def, c, str(c[1]), params, c[-1])

    def param(self, c):
        return self._node(A.Param, c, str(c[0]), c[2] if len(c) == 3 else None)

    def block_stmt(self, c):
        sizes = self._nodes(c)
        return self._node(A.Block, c, sizes[0], sizes[1] if len(sizes) > 1 else None)

    def prob_stmt(self, c):
        return self._node(A.Prob, c, str(c[1]))

    def layers_stmt(self, c):
        return self._node(A.Layers, c, tuple(self._nodes(c)))

    def heads_block(self, c):
        return self._node(A.Heads, c, tuple(self._nodes(c)))

    def head_entry(self, c):
        nodes = self._nodes(c)
        if len(nodes) == 3:
            return self._node(A.HeadEntry, c, nodes[0], nodes[1], nodes[2])
        return self._node(A.HeadEntry, c, nodes[0], None, nodes[1])

    def union(self, c):
        return self._node(A.Union, c, tuple(self._nodes(c)))

    def intersection(self, c):
        return self._node(A.Intersection, c, tuple(self._nodes(c)))

    def _binary(self, c):
        return self._node(A.Binary, c, str(c[1]), c[0], c[2])

    sub = add = mul = floordiv = mod = _binary

    def _unary(self, c):
        return self._node(A.Unary, c, str(c[0]), c[1])

    invert = neg = _unary

    def number(self, c):
        text = str(c[0])
        if len(text.lstrip("0")) > MAX_NUMBER_DIGITS:
            raise SpatError(Diagnostic(f"number too large: {text[:20]}… has {len(text)} digits",
                                       _span_of(c[0]), help="indices and sizes must fit in 64 bits"))
        return self._node(A.Number, c, int(text))

    def float(self, c):
        raise SpatError(Diagnostic(f"'{c[0]}' is not an integer: indices and sizes are integers",
                                   _span_of(c[0]),
                                   help="write an integer, or an integer expression such as `n // 3`"))

    def name(self, c):
        return self._node(A.Name, c, str(c[0]))

    def call(self, c):
        return self._node(A.Call, c, str(c[0]), tuple(self._nodes(c)))

    def atom(self, c):  # "(" expr ")": keep the inner node, widen its span to the parentheses
        inner = c[1]
        widened = replace(inner, span=_span_of(c[0]).join(_span_of(c[2])))
        self.depth[id(widened)] = self.depth.get(id(inner), 1)
        return widened

    def range(self, c):
        return self._node(A.Range, c, c[0], c[2])

    def keyword(self, c):
        return self._node(A.Keyword, c, str(c[0]), c[2])


def _span_of(item) -> Span:
    if isinstance(item, Token):
        return Span(item.line, item.column, item.end_line, item.end_column)
    return item.span


@functools.lru_cache(maxsize=None)
def _grammar():
    """(parser, terminal name by literal, regex terminals) built from spat.lark."""
    parser = Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer="basic",
                  start="statement", keep_all_tokens=True, maybe_placeholders=False,
                  transformer=_TRANSFORMER)
    literals, regexes = {}, {}
    for terminal in parser.terminals:
        if terminal.pattern.type == "str":
            literals[terminal.pattern.value] = terminal.name
        else:
            regexes[terminal.name] = terminal.pattern.value
    return parser, literals, regexes


def keywords() -> set[str]:
    _, literals, _ = _grammar()
    return {text for text in literals if text.isidentifier()}


@functools.lru_cache(maxsize=None)
def _master_regex():
    _, literals, regexes = _grammar()
    punctuation = sorted((t for t in literals if not t.isidentifier()), key=len, reverse=True)
    parts = [
        ("WS", r"[ \t\f\r]+"),
        ("COMMENT", regexes["COMMENT"]),
        ("_NL", regexes["_NL"]),
        ("FLOAT", regexes["FLOAT"]),
        ("NUMBER", regexes["NUMBER"]),
        ("NAME", regexes["NAME"]),
    ] + [(f"P{k}", re.escape(p)) for k, p in enumerate(punctuation)]
    groups = {f"P{k}": literals[p] for k, p in enumerate(punctuation)}
    regex = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in parts))
    return regex, groups


_TRANSFORMER = _ToAst()


class _Lexed:
    def __init__(self):
        self.statements: list[list[Token]] = []
        self.comments: list[A.Comment] = []
        self.bad_statements: set[int] = set()  # statements whose errors were already reported


def _lex(source: Source, diagnostics: list[Diagnostic]) -> _Lexed:
    text = source.text
    regex, groups = _master_regex()
    _, literals, _ = _grammar()
    keyword_types = {t: literals[t] for t in literals if t.isidentifier()}
    out = _Lexed()
    current: list[Token] = []
    opener_stack: list[Token] = []  # open ( and { with their positions
    newlines_pending = 0
    line, line_start, pos = 1, 0, 0
    last_significant: Token | None = None
    line_has_token = False

    def close_statement():
        nonlocal current
        if current:
            out.statements.append(current)
        current = []

    while pos < len(text):
        match = regex.match(text, pos)
        column = pos - line_start + 1
        if match is None:
            char = text[pos]
            shown = repr(char)[1:-1] if not char.isprintable() else char
            help = None
            if char == ".":
                help = "ranges are written `a..b`; numbers are integers"
            elif char in "[]":
                help = "index lists go in parentheses: global(0..8, 12)"
            elif char in "/":
                help = "integer division is written `//`"
            diagnostics.append(Diagnostic(f"unexpected character '{shown}'",
                                          Span(line, column, line, column + 1), help))
            out.bad_statements.add(len(out.statements))
            pos += 1
            if len(diagnostics) >= MAX_ERRORS:
                break
            continue
        kind, value = match.lastgroup, match.group()
        end = match.end()
        if kind == "WS":
            pos = end
            continue
        if kind == "COMMENT":
            out.comments.append(A.Comment(value, line, not line_has_token))
            pos = end
            continue
        if kind == "_NL":
            pos = end
            line, line_start, line_has_token = line + 1, end, False
            paren_open = any(t.type == "LPAR" for t in opener_stack)
            if paren_open or (last_significant is not None and last_significant.value in _OPERATOR_TOKENS):
                continue  # a continuation line
            newlines_pending += 1
            continue
        token_type = groups.get(kind, kind)
        if kind == "NAME" and value in keyword_types:
            token_type = keyword_types[value]
        token = Token(token_type, value, pos, line, column, line, column + len(value), end)
        # A pending newline ends the statement unless we are inside braces.
        if newlines_pending:
            if not opener_stack:
                close_statement()
            elif current and current[-1].type != "_NL":
                current.append(Token("_NL", "\n", pos, line, column, line, column, pos))
            newlines_pending = 0
        if value in "({":
            opener_stack.append(token)
            if len(opener_stack) > MAX_NESTING:
                diagnostics.append(Diagnostic(
                    f"brackets nested too deeply (more than {MAX_NESTING} levels)",
                    _span_of(token), help="split the expression with `let` or `def`"))
                out.bad_statements.add(len(out.statements))
                break
        elif value in ")}":
            want = "(" if value == ")" else "{"
            if opener_stack and opener_stack[-1].value == want:
                opener_stack.pop()
            else:
                if opener_stack:
                    opener = opener_stack[-1]
                    closer = ")" if opener.value == "(" else "}"
                    diagnostics.append(Diagnostic(
                        f"'{value}' does not match the '{opener.value}' at line {opener.line}, column {opener.column}",
                        _span_of(token), help=f"close the '{opener.value}' with '{closer}' first"))
                else:
                    diagnostics.append(Diagnostic(f"unmatched '{value}'", _span_of(token),
                                                  help=f"remove it, or add the '{want}' it closes"))
                out.bad_statements.add(len(out.statements))
                pos = end
                continue
        current.append(token)
        last_significant = token
        line_has_token = True
        pos = end
    if opener_stack and len(opener_stack) <= MAX_NESTING:
        opener = opener_stack[0]
        closer = ")" if opener.value == "(" else "}"
        more = len(opener_stack) - 1
        notes = (f"{more} more bracket{'s' if more > 1 else ''} inside it also stay open",) if more else ()
        diagnostics.append(Diagnostic(f"unclosed '{opener.value}'", _span_of(opener),
                                      help=f"add the matching '{closer}'", notes=notes))
        out.bad_statements.add(len(out.statements))
    close_statement()
    return out


def _describe_expected(expected: set[str]) -> str:
    _, literals, _ = _grammar()
    names = {v: k for k, v in literals.items()}
    shown = []
    for terminal in sorted(expected):
        if terminal in names:
            shown.append(f"'{names[terminal]}'")
        elif terminal in _DESCRIBE:
            shown.append(_DESCRIBE[terminal])
    shown = sorted(set(shown), key=lambda s: (s.startswith("'"), s))
    if not shown:
        return ""
    if len(shown) > 6:
        shown = shown[:6] + ["…"]
    return "; expected " + (shown[0] if len(shown) == 1 else "one of " + ", ".join(shown))


def _syntax_error(exc: UnexpectedInput, tokens: list[Token]) -> Diagnostic:
    token = getattr(exc, "token", None)
    if token is None or token.type == "$END":
        last = tokens[-1]
        span = Span(last.end_line, last.end_column, last.end_line, last.end_column + 1)
        what = "end of statement"
    else:
        span = _span_of(token)
        what = "'" + str(token) + "'" if token.type != "_NL" else "new line"
    expected = _describe_expected(getattr(exc, "expected", set()) or set())
    help = None
    index = next((k for k, t in enumerate(tokens) if t is token), None)
    previous = tokens[index - 1] if index else None
    if previous is not None and previous.type == "NAME" and token.type in ("NUMBER", "NAME"):
        help = f"arguments go in parentheses: {previous}({token})"
    elif token is not None and token.type == "EQUAL" and previous is not None and previous.type == "NAME":
        help = f"to bind a name, write `let {previous} = …`"
    elif what == "end of statement" and tokens[-1].value in _OPERATOR_TOKENS:
        help = f"the '{tokens[-1]}' needs something after it"
    return Diagnostic(f"unexpected {what}{expected}", span, help)


def _position(diagnostic: Diagnostic):
    span = diagnostic.span
    return (span.line, span.column) if span else (0, 0)


def parse(source: "str | Source", name: str = "<string>") -> A.Module:
    """Parse .spat text into an AST Module; raise SpatError with every syntax error."""
    if not isinstance(source, Source):
        source = Source(source, name)
    if len(source.text) > MAX_SOURCE_BYTES:
        raise SpatError(Diagnostic(
            f"file too large: {len(source.text):,} characters (the limit is {MAX_SOURCE_BYTES:,})",
            None, help="a pattern file is a few lines; generate the pattern with `def` and `let` instead"),
            source)
    diagnostics: list[Diagnostic] = []
    lexed = _lex(source, diagnostics)
    parser, _, _ = _grammar()
    statements = []
    for index, tokens in enumerate(lexed.statements):
        if index in lexed.bad_statements or len(diagnostics) >= MAX_ERRORS:
            continue
        _TRANSFORMER.depth.clear()
        interactive = parser.parse_interactive()
        try:
            for token in tokens:
                interactive.feed_token(token)
            statements.append(interactive.feed_eof(tokens[-1]))
        except UnexpectedToken as exc:
            diagnostics.append(_syntax_error(exc, tokens))
        except SpatError as exc:
            diagnostics.extend(exc.diagnostics)
    if diagnostics:
        raise SpatError(sorted(diagnostics, key=_position), source)
    blank = frozenset(k + 1 for k, line in enumerate(source.text.split("\n")) if not line.strip())
    return A.Module(tuple(statements), tuple(lexed.comments), blank)
