"""Text → AST: the lexer, the statement splitter and the LALR parser.

The tokens are those the grammar (grammar/spat.lark) defines; this module lexes
them itself rather than through lark's lexer so that it can
  * keep going after a bad character and report every one,
  * drop newlines inside parentheses and after an operator (continuation lines),
  * keep comments and blank lines for the formatter,
  * split the file into statements, which are parsed one by one so that a
    syntax error in one statement does not hide the errors in the next
    (a keyword on a new line inside an unclosed '(' also starts a new
    statement, after reporting the missing ')').
Lines end at \n, \r\n or a lone \r. The parse tree is turned into AST nodes
while parsing (lark's inline transformer), so nothing here recurses over the
input's nesting depth. A syntax error says what could have come instead: the
exact set of tokens the grammar accepts at that point (found by replaying the
statement), in words ("an expression", "an operator"), with a `help:` for the
usual mistakes.
"""
from __future__ import annotations

import copy
import functools
import re
from dataclasses import replace
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedInput, UnexpectedToken

from . import ast as A
from .errors import Diagnostic, Source, Span, SpatError, did_you_mean

GRAMMAR_PATH = Path(__file__).parent / "grammar" / "spat.lark"

MAX_SOURCE_BYTES = 1 << 18  # a .spat file larger than 256 KiB is not a pattern (and would take seconds to parse)
MAX_NESTING = 100  # deepest expression accepted (parentheses, operators); consumers of the AST recurse on it
MAX_NUMBER_DIGITS = 30  # beyond 10^30 an integer cannot mean anything here
MAX_ERRORS = 50  # stop reporting after this many diagnostics

_OPERATOR_TOKENS = {"|", "&", "-", "+", "*", "//", "%", "~", "=", ",", "..", ":"}


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
        return self._node(A.Prob, c, "".join(str(token) for token in c[1:]))  # NAME or NAME(ARG)

    def queries_stmt(self, c):
        return self._node(A.Queries, c, self._nodes(c)[0])

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
    eq = ne = lt = le = gt = ge = and_ = or_ = _binary

    def _unary(self, c):
        return self._node(A.Unary, c, str(c[0]), c[1])

    invert = neg = not_ = _unary

    def number(self, c):
        text = str(c[0])
        if len(text.lstrip("0")) > MAX_NUMBER_DIGITS:
            raise SpatError(Diagnostic(f"number too large: it has {len(text)} digits (the limit is 2^62)",
                                       _span_of(c[0]),
                                       help="indices, sizes and counts are far smaller; check the number"))
        return self._node(A.Number, c, int(text))

    def float(self, c):
        raise SpatError(Diagnostic(f"'{c[0]}' is not an integer: indices and sizes are integers",
                                   _span_of(c[0]),
                                   help="write an integer, or an integer expression such as `n // 3`"))

    def name(self, c):
        return self._node(A.Name, c, str(c[0]))

    def call(self, c):
        return self._node(A.Call, c, str(c[0]), tuple(self._nodes(c)))

    def scoped(self, c):
        nodes = self._nodes(c)
        return self._node(A.Scoped, c, str(c[0]), tuple(nodes[:-1]), nodes[-1])

    def tuple(self, c):
        return self._node(A.Tuple, c, tuple(self._nodes(c)))

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


def _punctuation_regex(text: str) -> str:
    """A literal token; a lone '<' or '>' only, so that a shift ('<<', '>>') is reported as
    the characters it is rather than as two comparisons."""
    if text in ("<", ">"):
        return f"(?<!{re.escape(text)}){re.escape(text)}(?!{re.escape(text)})"
    return re.escape(text)


@functools.lru_cache(maxsize=None)
def _master_regex():
    _, literals, regexes = _grammar()
    punctuation = sorted((t for t in literals if not t.isidentifier()), key=len, reverse=True)
    parts = [
        ("WS", r"[ \t\f]+"),
        ("COMMENT", regexes["COMMENT"]),
        ("_NL", regexes["_NL"]),
        ("FLOAT", regexes["FLOAT"]),
        ("NUMBER", regexes["NUMBER"]),
        ("NAME", regexes["NAME"]),
    ] + [(f"P{k}", _punctuation_regex(p)) for k, p in enumerate(punctuation)]
    groups = {f"P{k}": literals[p] for k, p in enumerate(punctuation)}
    regex = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in parts))
    return regex, groups


_TRANSFORMER = _ToAst()


class _Lexed:
    def __init__(self):
        self.statements: list[list[Token]] = []
        self.blank_before: set[int] = set()
        self.comments: list[A.Comment] = []
        self.bad_statements: set[int] = set()  # statements whose errors were already reported
        self.last_ends_at_eof = False  # the last statement runs to the end of the file


def _show_chars(text: str) -> str:
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:12])
    return shown + ("…" if len(text) > 12 else "")


def _bad_char_help(text: str) -> str | None:
    """What to write instead of the characters ``text``, which start no token."""
    char = text[0]
    if text == ".":
        return "ranges are written `a..b`; numbers are integers"
    if char in "[]":
        return "index lists go in parentheses: global(0..8, 12)"
    if text == "/":
        return "integer division is written `//`"
    if char in "<>!":
        return ("there are no shift operators: patterns combine with | & - ~, integers with + - * // %; "
                "comparisons (== != < <= > >=) are the conditions of if(c, a, b)")
    if char == "^":
        return "union is written '|', intersection '&'; there is no power operator"
    if char in "\"'`":
        return "there are no strings in .spat; names are written without quotes"
    if char == ";":
        return "statements are separated by new lines, not ';'"
    if char == "\ufeff":
        return "remove the byte-order mark (U+FEFF) at the start of the text"
    if char.isalnum():
        return "names are made of ASCII letters, digits and '_'; numbers of the digits 0-9"
    if not char.isprintable():
        return "a .spat file is plain text; this one contains control characters or binary data"
    return None


def _still_open(more: int) -> tuple[str, ...]:
    """The note for the brackets opened inside an unclosed one."""
    if not more:
        return ()
    return (f"{more} more bracket{'s' if more > 1 else ''} inside it {'also stay' if more > 1 else 'also stays'} open",)


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
            # A run of characters that start no token: one diagnostic for the run.
            end = pos + 1
            while end < len(text) and end - pos < 1000 and regex.match(text, end) is None:
                end += 1
            bad = text[pos:end]
            plural = "s" if len(bad) > 1 else ""
            diagnostics.append(Diagnostic(f"unexpected character{plural} '{_show_chars(bad)}'",
                                          Span(line, column, line, column + len(bad)), _bad_char_help(bad)))
            out.bad_statements.add(len(out.statements))
            pos = end
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
        if (value in _STATEMENT_HELP and token_type in keyword_types.values() and last_significant is not None
                and line > last_significant.line and opener_stack and opener_stack[-1].type == "LPAR"):
            # A keyword cannot stand inside parentheses: a ')' is missing before this line.
            # Report it and start a new statement here, so the rest of the file is checked.
            first_paren = len(opener_stack)
            while first_paren > 0 and opener_stack[first_paren - 1].type == "LPAR":
                first_paren -= 1
            opener = opener_stack[first_paren]
            more = len(opener_stack) - first_paren - 1
            notes = _still_open(more)
            diagnostics.append(Diagnostic(
                "unclosed '('", _span_of(opener),
                help=f"add ')' at the end of line {last_significant.line}", notes=notes))
            out.bad_statements.add(len(out.statements))
            del opener_stack[first_paren:]
            newlines_pending = max(newlines_pending, 1)
        # A pending newline ends the statement unless we are inside braces.
        if newlines_pending:
            if not opener_stack:
                close_statement()
                if newlines_pending > 1 and out.statements:
                    out.blank_before.add(len(out.statements))
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
                out.bad_statements.add(len(out.statements))
                match_at = next((k for k in range(len(opener_stack) - 1, -1, -1)
                                 if opener_stack[k].value == want), None)
                if match_at is not None:
                    # It closes an outer bracket: the ones opened inside that were never closed.
                    inner = opener_stack[match_at + 1]
                    closer = ")" if inner.value == "(" else "}"
                    more = len(opener_stack) - match_at - 2
                    notes = _still_open(more)
                    diagnostics.append(Diagnostic(
                        f"unclosed '{inner.value}'", _span_of(inner),
                        help=f"add '{closer}' before the '{value}' at line {token.line}, column {token.column}",
                        notes=notes))
                    del opener_stack[match_at:]
                else:
                    if opener_stack:
                        opener = opener_stack[-1]
                        closer = ")" if opener.value == "(" else "}"
                        diagnostics.append(Diagnostic(
                            f"'{value}' does not match the '{opener.value}' at line {opener.line}, "
                            f"column {opener.column}",
                            _span_of(token), help=f"close the '{opener.value}' with '{closer}'"))
                    else:
                        diagnostics.append(Diagnostic(f"unmatched '{value}'", _span_of(token),
                                                      help=f"remove it, or add the '{want}' it closes"))
                    pos = end
                    if len(diagnostics) >= MAX_ERRORS:
                        break
                    continue
        current.append(token)
        last_significant = token
        line_has_token = True
        pos = end
    if opener_stack and len(opener_stack) <= MAX_NESTING:
        opener = opener_stack[0]
        closer = ")" if opener.value == "(" else "}"
        more = len(opener_stack) - 1
        notes = _still_open(more)
        diagnostics.append(Diagnostic(f"unclosed '{opener.value}'", _span_of(opener),
                                      help=f"add the matching '{closer}'", notes=notes))
        out.bad_statements.add(len(out.statements))
    out.last_ends_at_eof = newlines_pending == 0
    close_statement()
    return out


_BINARY_OPERATORS = ("|", "&", "-", "+", "*", "//", "%")
_CONDITION_TOKENS = {"==", "!=", "<", "<=", ">", ">=", "and", "or", "not"}
_EXPRESSION_START = ("NAME", "NUMBER", "FLOAT", "(", "~", "-")


def _accepted(tokens: list[Token], index: int) -> set[str]:
    """The terminals the grammar accepts after tokens[:index] (exact, unlike LALR's lookahead sets)."""
    parser, _, _ = _grammar()
    interactive = parser.parse_interactive()
    conf = copy.copy(interactive.parser_state.parse_conf)
    conf.callbacks = {}  # no AST building on this replay
    interactive.parser_state.parse_conf = conf
    try:
        for token in tokens[:index]:
            interactive.feed_token(token)
        return interactive.accepts()
    except Exception:  # noqa: BLE001 - only used to word a message; never let it fail the report
        return set()


def _describe_expected(accepted: set[str]) -> tuple[str, set[str]]:
    """A readable "expected …" phrase for a set of terminals, and the set as literal text."""
    _, literals, _ = _grammar()
    names = {v: k for k, v in literals.items()}
    texts = {names.get(t, t) for t in accepted}
    literal_texts = set(names.values())
    rest = set(texts) - _CONDITION_TOKENS  # conditions are for `if`: not offered wherever an integer may go
    if "{" in rest and any(op in rest for op in _BINARY_OPERATORS):
        rest.discard("{")  # after a call: `blocks(B) { … }` is not what a missing operator suggests
    phrases = []
    if "NUMBER" in rest:
        phrases.append("an expression")
        rest -= set(_EXPRESSION_START)
    elif "NAME" in rest:
        phrases.append("a name")
        rest.discard("NAME")
    punctuation = sorted((t for t in rest if t in literal_texts and not t.isidentifier()
                          and t not in _BINARY_OPERATORS), key=lambda t: (t != "(", t))
    phrases += [f"'{t}'" for t in punctuation]
    rest -= set(punctuation)
    operators = [op for op in _BINARY_OPERATORS if op in rest]
    if len(operators) >= 3:
        phrases.append("an operator")
        rest -= set(operators)
    else:
        phrases += [f"'{op}'" for op in operators]
        rest -= set(operators)
    keywords_left = sorted(t for t in rest if t in literal_texts)
    if len(keywords_left) > 2:
        phrases.append("a statement keyword (" + ", ".join(keywords_left) + ")")
    else:
        phrases += [f"'{t}'" for t in keywords_left]
    if "$END" in rest:
        phrases.append("the end of the line")
    elif "_NL" in rest:
        phrases.append("a new line")
    if not phrases:
        return "", texts
    if len(phrases) == 1:
        return "; expected " + phrases[0], texts
    return "; expected " + ", ".join(phrases[:-1]) + " or " + phrases[-1], texts


_STATEMENT_HELP = {
    "let": "a binding is written `let NAME = VALUE`",
    "def": "a def is written `def NAME(PARAMS) = PATTERN`",
    "block": "write `block 64`, or `block 64, 128` for different query and key block sizes",
    "prob": "write `prob softmax`, `prob sparsemax` or `prob entmax(1.5)` (α in (1, 2])",
    "layers": "write `layers {`, then one pattern per line, then `}`",
    "queries": "write `queries 77` (or `queries m`, m given when compiling) on a line of its own",
    "heads": "write `heads {`, then one `lo..hi: pattern` per line, then `}`",
}


def _callable(name: str) -> bool:
    from .primitives import PRIMITIVES
    from .resolve import BUILTINS

    return name in PRIMITIVES or name in BUILTINS


def _starts_expression(token: Token) -> bool:
    return token.type in ("NAME", "NUMBER", "FLOAT") or token.value in ("(", "~")


def _syntax_error(exc: UnexpectedInput, tokens: list[Token], at_eof: bool) -> Diagnostic:
    token = getattr(exc, "token", None)
    end_of_statement = token is None or token.type == "$END"
    if end_of_statement:
        last = tokens[-1]
        span = Span(last.end_line, last.end_column, last.end_line, last.end_column + 1)
        what = "end of the file" if at_eof else "end of the line"
        index = len(tokens)
    else:
        span = _span_of(token)
        what = "end of the line" if token.type == "_NL" else "'" + str(token) + "'"
        index = next((k for k, t in enumerate(tokens) if t is token), len(tokens))
    accepted = _accepted(tokens, index)
    if not accepted:
        accepted = set(getattr(exc, "expected", None) or ())
    expected, texts = _describe_expected(accepted)
    previous = tokens[index - 1] if index else None
    value = None if end_of_statement else str(token)
    first = tokens[0].value
    help = None
    message = f"unexpected {what}{expected}"
    at_line_start = previous is None or previous.type in ("_NL", "LBRACE")
    if value is not None and at_line_start and value in set(_BINARY_OPERATORS) - {"-"}:
        message = f"a line cannot start with '{value}'"
        help = (f"to continue the expression on the line above, end that line with '{value}' "
                "(or put the whole expression in parentheses)")
    elif (previous is not None and index == 1 and previous.type == "NAME"
          and did_you_mean(previous.value, keywords())):
        help = did_you_mean(previous.value, keywords())
    elif (previous is not None and previous.value in _OPERATOR_TOKENS and not end_of_statement
          and token.line > previous.line):
        help = (f"the '{previous}' at the end of line {previous.line} continues the expression onto "
                f"line {token.line}; finish the expression, or remove the '{previous}'")
    elif end_of_statement and tokens[-1].value in _OPERATOR_TOKENS:
        help = f"the '{tokens[-1]}' needs something after it"
    elif (previous is not None and previous.value in _BINARY_OPERATORS + ("~",)
          and value in (")", "}", ",", "..", ":")):
        help = f"the '{previous}' needs something after it"
    elif value == "*" and previous is not None and previous.value == "*":
        help = "there is no power operator '**'; multiply out, e.g. `n * n`"
    elif (previous is not None and previous.type == "NAME" and token is not None
          and token.type in ("NUMBER", "NAME") and "(" in texts and _callable(previous.value)):
        help = f"arguments go in parentheses: {previous}({token})"
    elif value == "=" and previous is not None and previous.type == "NAME" and first != "let":
        if first == "def":
            help = f"a def takes a parameter list, `def {previous}(…) = …`; a value is bound with `let {previous} = …`"
        else:
            help = f"to bind a name, write `let {previous} = …`"
    elif ":" in texts and any(t.value == "heads" for t in tokens[:index]):
        help = "a head entry is written `lo..hi: pattern`, e.g. `0..4: causal`"
    elif value == ".." and ".." not in texts:
        help = "a range a..b goes inside a call such as global(0..8), or before ':' in `heads { }`"
    elif value in keywords() and "NAME" in texts:
        help = f"'{value}' is a keyword and cannot be used as a name"
    elif token is not None and _starts_expression(token) and "," in texts:
        help = "separate arguments with ','"
    elif token is not None and (_starts_expression(token) or value == ",") and "|" in texts and "&" in texts:
        help = ("combine patterns with '|' (union) or '&' (intersection); "
                "a new statement goes on a line of its own")
    elif first in _STATEMENT_HELP:
        help = _STATEMENT_HELP[first]
    return Diagnostic(message, span, help)


def _position(diagnostic: Diagnostic):
    span = diagnostic.span
    return (span.line, span.column) if span else (0, 0)


def parse(source: "str | Source", name: str = "<string>") -> A.Module:
    """Parse .spat text into an AST Module; raise SpatError with every syntax error."""
    if not isinstance(source, Source):
        source = Source(source, name)
    if len(source.text) > MAX_SOURCE_BYTES:
        raise SpatError(Diagnostic(
            # Files are read up to the limit + 1 bytes (an endless stream must not be read
            # forever), so the length shown is "more than the limit".
            f"file too large: more than {MAX_SOURCE_BYTES:,} characters (the limit)",
            Span(1, 1, 1, 2), help="a pattern file is a few lines; generate the pattern with `def` and `let` instead"),
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
            at_eof = lexed.last_ends_at_eof and index == len(lexed.statements) - 1
            diagnostics.append(_syntax_error(exc, tokens, at_eof))
        except SpatError as exc:
            diagnostics.extend(exc.diagnostics)
    if diagnostics:
        ordered = sorted(diagnostics, key=_position)
        if len(ordered) >= MAX_ERRORS:
            ordered = ordered[:MAX_ERRORS] + [Diagnostic(
                f"too many errors: stopped after the first {MAX_ERRORS}", None, help="fix the errors above first")]
        raise SpatError(ordered, source)
    blank = frozenset(k + 1 for k, line in enumerate(source.text.split("\n")) if not line.strip())
    return A.Module(tuple(statements), tuple(lexed.comments), blank)
