"""The canonical form of a .spat file (`patterndsl fmt`).

One statement per line, spaces around binary operators, the fewest
parentheses that keep the tree, `a..b` and `name=value` without spaces, four
spaces of indentation inside `layers { }` and `heads { }`. Comments and single
blank lines between statements are kept. Parsing the output gives back the
same AST (tested).
"""
from __future__ import annotations

from pathlib import Path

from . import ast as A

INDENT = "    "

# How tightly each expression binds; a child that binds more loosely than its
# position requires is printed in parentheses.
_OR, _AND, _NOT, _COMPARISON, _UNION, _INTERSECTION, _SUM, _PRODUCT, _UNARY, _ATOM = range(-3, 7)
_BINARY_LEVEL = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "//": _PRODUCT, "%": _PRODUCT, "or": _OR, "and": _AND,
                 **dict.fromkeys(("==", "!=", "<", "<=", ">", ">="), _COMPARISON)}


def _level(node: A.Node) -> int:
    if isinstance(node, A.Union):
        return _UNION
    if isinstance(node, A.Intersection):
        return _INTERSECTION
    if isinstance(node, A.Binary):
        return _BINARY_LEVEL[node.op]
    if isinstance(node, A.Unary):
        return _NOT if node.op == "not" else _UNARY
    return _ATOM


def _child(node: A.Node, minimum: int) -> str:
    text = expression(node)
    return f"({text})" if _level(node) < minimum else text


def expression(node: A.Node) -> str:
    """An expression in canonical form."""
    if isinstance(node, A.Number):
        return str(node.value)
    if isinstance(node, A.Name):
        return node.id
    if isinstance(node, A.Union):
        return " | ".join(_child(item, _UNION + 1) for item in node.items)
    if isinstance(node, A.Intersection):
        return " & ".join(_child(item, _INTERSECTION + 1) for item in node.items)
    if isinstance(node, A.Binary):
        level = _BINARY_LEVEL[node.op]
        if level == _COMPARISON:  # a comparison does not chain: both sides are sums or tighter
            return f"{_child(node.left, _UNION)} {node.op} {_child(node.right, _UNION)}"
        return f"{_child(node.left, level)} {node.op} {_child(node.right, level + 1)}"
    if isinstance(node, A.Unary):
        if node.op == "not":
            return "not " + _child(node.operand, _NOT)
        return node.op + _child(node.operand, _UNARY)
    if isinstance(node, A.Call):
        return f"{node.func}({', '.join(expression(arg) for arg in node.args)})"
    if isinstance(node, A.Tuple):
        return f"({', '.join(expression(item) for item in node.items)})"
    if isinstance(node, A.Scoped):
        return f"{node.func}({', '.join(expression(arg) for arg in node.args)}) {{ {expression(node.body)} }}"
    if isinstance(node, A.Range):
        return f"{expression(node.lo)}..{expression(node.hi)}"
    if isinstance(node, A.Keyword):
        return f"{node.name}={expression(node.value)}"
    raise TypeError(f"not an expression: {node!r}")


class _Printer:
    def __init__(self, comments, blank_lines):
        self.lines: list[str] = []
        self.blank_lines = blank_lines
        self.trailing: dict[int, str] = {}  # output line index → its trailing comment
        self.comments = sorted(comments, key=lambda c: c.line)
        self.next = 0  # index of the first comment not yet printed

    def emit(self, text: str, source_line: int | None):
        """Add a line, after one blank line if a blank line preceded it in the source."""
        if (source_line is not None and source_line - 1 in self.blank_lines and self.lines
                and self.lines[-1] != "" and not self.lines[-1].endswith("{")):
            self.lines.append("")
        self.lines.append(text)

    def leading_comments(self, before_line: int, indent: str, blank_lines: bool = True):
        while self.next < len(self.comments) and self.comments[self.next].line < before_line:
            comment = self.comments[self.next]
            self.emit(indent + comment.text, comment.line if blank_lines else None)
            self.next += 1

    def line(self, text: str, indent: str, first_line: int | None, source_line: int | None):
        """Print one line, with the trailing comment that stood on ``source_line``."""
        if source_line is not None:
            self.leading_comments(first_line, indent)
            # Comments inside a statement that spans several lines go before it too
            # (left for later, they would land after it, above the next statement);
            # blank lines inside the statement are not kept.
            self.leading_comments(source_line, indent, blank_lines=False)
            if (self.next < len(self.comments) and self.comments[self.next].line == source_line
                    and not self.comments[self.next].own_line):
                self.emit(indent + text, first_line)
                self.trailing[len(self.lines) - 1] = self.comments[self.next].text
                self.next += 1
                return
        # A blank line counts before the statement's first line, not inside it.
        self.emit(indent + text, first_line)

    def text(self) -> str:
        """The lines, trailing comments aligned two spaces after the longest line of each run."""
        lines = list(self.lines)
        run: list[int] = []
        for index in range(len(lines) + 1):
            if index in self.trailing:
                run.append(index)
                continue
            column = max((len(lines[k]) for k in run), default=0) + 2
            for k in run:
                lines[k] = lines[k].ljust(column) + self.trailing[k]
            run = []
        return "\n".join(lines) + "\n" if lines else ""

    def node(self, node: A.Node, indent: str, prefix: str = ""):
        start = node.span.line if node.span else None
        end = node.span.end_line if node.span else None
        if isinstance(node, (A.Layers, A.Heads)):
            keyword = "layers" if isinstance(node, A.Layers) else "heads"
            self.line(f"{prefix}{keyword} {{", indent, start, start)
            for entry in node.entries:
                if isinstance(entry, A.HeadEntry):
                    head = expression(entry.lo) + ("" if entry.hi is None else ".." + expression(entry.hi))
                    self.node(entry.pattern, indent + INDENT, prefix=f"{head}: ")
                else:
                    self.node(entry, indent + INDENT)
            if end is not None:
                self.leading_comments(end, indent + INDENT)
            self.line("}", indent, end, end)
        else:
            self.line(prefix + statement_text(node), indent, start, end)


def statement_text(node: A.Node) -> str:
    if isinstance(node, A.Let):
        return f"let {node.name} = {expression(node.value)}"
    if isinstance(node, A.Def):
        params = ", ".join(p.name if p.default is None else f"{p.name}={expression(p.default)}"
                           for p in node.params)
        return f"def {node.name}({params}) = {expression(node.body)}"
    if isinstance(node, A.Block):
        return f"block {expression(node.query)}" + (f", {expression(node.key)}" if node.key else "")
    if isinstance(node, A.Prob):
        return f"prob {node.name}"
    if isinstance(node, A.Queries):
        return f"queries {expression(node.count)}"
    if isinstance(node, A.PatternStmt):
        return expression(node.expr)
    return expression(node)


def format(source: "str | Path | A.Module") -> str:
    """The canonical text of .spat source (str), a file (Path) or a parsed Module."""
    if not isinstance(source, A.Module):
        from .compiled import parse

        source = parse(source)
    printer = _Printer(source.comments, source.blank_lines)
    for stmt in source.statements:
        printer.node(stmt, "")
    printer.leading_comments(1 << 62, "")
    return printer.text()
