"""Diagnostics: every failure the user can cause is a SpatError.

A SpatError holds one or more Diagnostics. Each renders as

    FILE:LINE:COL: error: MESSAGE
      <the source line>
      ^^^^^ (under the span)
    help: WHAT TO WRITE INSTEAD

Lines and columns are 1-based; columns count characters. A Diagnostic of
severity "warning" (a pattern that works but suits its target badly) renders the
same way with `warning:`; warnings never make a SpatError.
"""
from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from dataclasses import dataclass

# A source line longer than this is shown as an excerpt around the span, so a
# 10 MB one-line file cannot flood the terminal.
_MAX_SHOWN_LINE = 100

# What ends a line, for the lexer and for the excerpts alike: \n, \r\n, or a lone \r.
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line/column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def join(self, other: "Span | None") -> "Span":
        if other is None:
            return self
        start = min((self.line, self.column), (other.line, other.column))
        end = max((self.end_line, self.end_column), (other.end_line, other.end_column))
        return Span(start[0], start[1], end[0], end[1])


@dataclass(frozen=True)
class Source:
    """The text of a .spat file and the name it is reported under."""

    text: str
    name: str = "<string>"

    def line_text(self, line: int) -> str:
        if line == 1:  # no need to split a huge file to show its first line
            match = LINE_BREAK.search(self.text)
            return self.text[:match.start()] if match else self.text
        lines = self._lines()
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return ""

    def _lines(self) -> list[str]:
        # Computed once per Source (a frozen dataclass, so cached by hand).
        lines = self.__dict__.get("_lines_cache")
        if lines is None:
            lines = LINE_BREAK.split(self.text)
            object.__setattr__(self, "_lines_cache", lines)
        return lines


SEVERITIES = ("error", "warning")


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[str, ...] = ()
    severity: str = "error"  # or "warning"

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def render(self, source: Source | None) -> str:
        name = source.name if source is not None else "<input>"
        # A warning's notes and help are indented under it, as `patterndsl layout` has always
        # printed them (its output is compared byte for byte by scripts and golden files).
        help_indent = "  " if self.severity == "warning" else ""
        label = f"{self.severity}: {self.message}"
        if self.span is None or source is None:
            out = [f"{name}: {label}" if source is not None else label]
        else:
            out = [f"{name}:{self.span.line}:{self.span.column}: {label}"]
            out.extend(_excerpt(source.line_text(self.span.line), self.span))
        out.extend(f"{help_indent}note: {note}" for note in self.notes)
        if self.help:
            out.append(f"{help_indent}help: {self.help}")
        return "\n".join(out)

    def to_json(self) -> dict:
        """The diagnostic as JSON (`--json` outputs): severity, message, help, position."""
        out = {"severity": self.severity, "message": self.message, "help": self.help}
        if self.span is not None:
            out["line"], out["column"] = self.span.line, self.span.column
        return out


def warning(message: str, help: str | None = None, span: Span | None = None) -> Diagnostic:
    """A Diagnostic of severity "warning"."""
    return Diagnostic(message, span, help, severity="warning")


def _excerpt(text: str, span: Span) -> list[str]:
    start = span.column - 1
    end = span.end_column - 1 if span.end_line == span.line else len(text)
    end = max(end, start + 1)
    prefix = ""
    if len(text) > _MAX_SHOWN_LINE:
        cut = max(0, start - _MAX_SHOWN_LINE // 2)
        text = text[cut:cut + _MAX_SHOWN_LINE]
        start, end = start - cut, min(end - cut, len(text) + 1)
        prefix = "…" if cut else ""
    # Keep tabs in the caret line so the caret stays under the span; wide
    # characters (CJK, emoji) take two columns on a terminal, combining marks none.
    printable = "".join(ch if ch.isprintable() or ch == "\t" else "?" for ch in text)
    pad = "".join("\t" if ch == "\t" else " " * _width(ch) for ch in printable[:start])
    carets = "^" * max(1, sum(_width(ch) for ch in printable[start:end]))
    return ["  " + prefix + printable, "  " + " " * len(prefix) + pad + carets]


@functools.lru_cache(maxsize=4096)
def _width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


class SpatError(Exception):
    """The one exception patterndsl raises for bad input.

    ``line``, ``column`` and ``message`` describe the first diagnostic; ``str()``
    renders every diagnostic with its source line and caret.
    """

    def __init__(self, diagnostics: "list[Diagnostic] | Diagnostic", source: Source | None = None):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        self.source = source
        super().__init__(self.render())

    @property
    def message(self) -> str:
        return self.diagnostics[0].message

    @property
    def line(self) -> int | None:
        span = self.diagnostics[0].span
        return span.line if span else None

    @property
    def column(self) -> int | None:
        span = self.diagnostics[0].span
        return span.column if span else None

    @property
    def help(self) -> str | None:
        return self.diagnostics[0].help

    def render(self) -> str:
        return "\n".join(d.render(self.source) for d in self.diagnostics)

    def __str__(self) -> str:
        return self.render()


def error(message: str, span: Span | None = None, help: str | None = None, notes=()) -> SpatError:
    """A SpatError with one diagnostic; the caller attaches the source later."""
    return SpatError(Diagnostic(message, span, help, tuple(notes)))


def did_you_mean(word: str, candidates) -> str | None:
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return None
    quoted = [f"'{c}'" for c in close]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"did you mean {listed}?"


def require_compiled(value, what: str) -> None:
    """Raise SpatError unless ``value`` is a CompiledPattern (the analyses' argument)."""
    compiled = any(kind.__name__ == "CompiledPattern" and kind.__module__ == "patterndsl.compiled"
                   for kind in type(value).__mro__)  # (no import: compiled imports this module)
    if not compiled:
        hint = (" (a str is source text: compile it first, patterndsl.compile(source, n))"
                if isinstance(value, (str, bytes)) or hasattr(value, "read_text") else "")
        raise error(f"{what} expects a CompiledPattern, got {type(value).__name__}{hint}",
                    help="call patterndsl.compile(source, n) and pass its result")
