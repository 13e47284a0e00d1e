"""Diagnostics: what a user sees when a .spat file is wrong.

* Golden files: tests/golden/diagnostics/NAME.spat holds a broken file whose
  first line is `# n = N`; NAME.txt is the exact text of the SpatError that
  compiling it for that n raises. Regenerate them with

      PATTERNDSL_REGEN_GOLDEN=1 pytest tests/test_diagnostics.py

  and read every changed .txt: each must be a message a user understands, with
  the caret under the right span.
* Properties of the reports: several errors in one file are all reported, in
  order; errors inside a def name the call; a parameter that is wrong for this
  n names the value and n.
* Hostile input: nothing but SpatError escapes, and nothing hangs (the work
  is counted, tests/work.py, never timed).
* The command line: exit 1 with the diagnostics on stderr, 2 for usage errors.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import patterndsl
from patterndsl import SpatError
from patterndsl.cli import main
from patterndsl.errors import Diagnostic, Source, Span
from patterndsl.resolve import MAX_IR_NODES
from work import WorkBudgetExceeded, counted_work, front_end_budget

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "diagnostics"
CASES = sorted(path.stem for path in GOLDEN.glob("*.spat"))
REGEN = bool(os.environ.get("PATTERNDSL_REGEN_GOLDEN"))
HEADER = re.compile(r"# n = (\d+)\n")


def compile_error(text: str, n: int = 64, name: str = "t.spat") -> SpatError:
    """The SpatError that compiling ``text`` raises (fails the test if it compiles)."""
    with pytest.raises(SpatError) as info:
        patterndsl.compile(Source(text, name), n=n)
    return info.value


def messages(error: SpatError) -> list[str]:
    return [d.message for d in error.diagnostics]


# ---- golden files --------------------------------------------------------------


def test_there_are_enough_golden_diagnostics():
    assert len(CASES) >= 25
    assert all((GOLDEN / f"{name}.txt").exists() or REGEN for name in CASES)


@pytest.mark.parametrize("name", CASES)
def test_golden_diagnostic(name):
    text = (GOLDEN / f"{name}.spat").read_text(encoding="utf-8")
    header = HEADER.match(text)
    assert header, f"{name}.spat must start with a `# n = N` line"
    error = compile_error(text, n=int(header.group(1)), name=f"{name}.spat")
    rendered = str(error) + "\n"
    expected_path = GOLDEN / f"{name}.txt"
    if REGEN:
        expected_path.write_text(rendered, encoding="utf-8")
    assert rendered == expected_path.read_text(encoding="utf-8")
    # Every report has the documented shape.
    first = rendered.splitlines()[0]
    assert re.match(rf"{name}\.spat:\d+:\d+: error: ", first), first
    assert error.line is not None and error.column is not None


def test_golden_errors_through_a_path_name_the_file():
    path = GOLDEN / "unknown_primitive.spat"
    with pytest.raises(SpatError) as info:
        patterndsl.compile(path, n=64)
    assert str(info.value).startswith(f"{path}:2:1: error: unknown primitive or function 'windw'")


# ---- the shape of a report -----------------------------------------------------


def test_spat_error_attributes_and_caret():
    error = compile_error("window(64) | causal\nstride(2 ** 3)\n")
    assert (error.line, error.column) == (2, 11)
    assert error.message.startswith("unexpected '*'")
    assert error.help and "**" in error.help
    assert str(error).splitlines() == [
        "t.spat:2:11: error: unexpected '*'; expected an expression",
        "  stride(2 ** 3)",
        "            ^",
        "help: there is no power operator '**'; multiply out, e.g. `n * n`",
    ]


def test_caret_spans_the_whole_token():
    error = compile_error("window(64) | globl(0..8)")
    assert str(error).splitlines()[2] == "  " + " " * 13 + "^" * len("globl(0..8)")


def test_tabs_keep_the_caret_aligned():
    error = compile_error("\twindow(64)\t|\tglobl(0..8)")
    line, caret = str(error).splitlines()[1:3]
    assert line == "  \twindow(64)\t|\tglobl(0..8)"
    assert caret == "  \t          \t \t^^^^^^^^^^^"


def test_wide_characters_keep_the_caret_aligned():
    rendered = Diagnostic("x", Span(1, 3, 1, 4)).render(Source("中文?", "f"))
    assert rendered.splitlines()[1:] == ["  中文?", "      ^"]


def test_long_lines_are_shown_as_an_excerpt():
    text = "window(1) | " * 5000 + "globl(0..8)"
    error = compile_error(text)
    shown = str(error).splitlines()
    assert shown[0].startswith("t.spat:1:60001: error: unknown primitive or function 'globl'")
    assert len(shown[1]) < 120 and shown[1].lstrip().startswith("…")
    assert shown[2].index("^") == shown[1].index("globl")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings_count_lines_alike(newline):
    text = newline.join(["# n = 64", "let w = 64", "", "window(w) | globl(0..8)", ""])
    error = compile_error(text)
    assert (error.line, error.column) == (4, 13)
    assert str(error).splitlines()[1] == "  window(w) | globl(0..8)"
    patterndsl.compile(text.replace("globl", "global"), n=64)  # and valid text compiles


def test_crlf_comments_do_not_keep_the_carriage_return():
    module = patterndsl.parse("# hello\r\nwindow(3)  # there\r\n")
    assert [c.text for c in module.comments] == ["# hello", "# there"]


# ---- several errors --------------------------------------------------------------


def test_syntax_errors_in_different_statements_are_reported_together_in_order():
    error = compile_error("let w 64\nwindow(w)) | causal\nlet = 3\nwindow(w) global(0..8)\n")
    assert [(d.span.line, d.span.column) for d in error.diagnostics] == [(1, 7), (2, 10), (3, 5), (4, 11)]
    assert messages(error) == [
        "unexpected '64'; expected '='",
        "unmatched ')'",
        "unexpected '='; expected a name",
        "unexpected 'global'; expected an operator or the end of the line",
    ]


def test_a_missing_close_paren_does_not_hide_the_next_statements():
    error = compile_error("let w = (64\nlet g = 8\nwindow(w) | global(0..g\n")
    assert [(d.span.line, d.message) for d in error.diagnostics] == [(1, "unclosed '('"), (3, "unclosed '('")]


def test_semantic_errors_in_different_statements_are_reported_together_in_order():
    text = ("let w = n // 0\n"
            "let s = n - 64\n"
            "layers {\n"
            "    window(w) | globl(0..8)\n"
            "    stride(s) & causal\n"
            "    chunk(16) | global(9..3)\n"
            "}\n")
    error = compile_error(text, n=64)
    positions = [(d.span.line, d.span.column) for d in error.diagnostics]
    assert positions == sorted(positions) == [(1, 14), (4, 17), (5, 12), (6, 24)]
    assert messages(error) == [
        "division by zero",
        "unknown primitive or function 'globl'",
        "stride(s) needs s ≥ 1, but s = 0 here (n = 64)",
        "range 9..3 is reversed (n = 64)",
    ]


def test_independent_errors_in_one_expression_are_all_reported():
    error = compile_error("stride(n - 64) | global(8..2) | window(-1)", n=64)
    assert [d.span.column for d in error.diagnostics] == [8, 25, 40]


def test_head_range_errors_do_not_hide_the_other_statements():
    text = "let a = 1 // 0\nheads {\n    0..2: causal\n    3..4: chunk(0)\n}\n"
    error = compile_error(text)
    assert messages(error) == [
        "division by zero",
        "heads 2..3 have no pattern: the head ranges leave a gap",
        "chunk(b) needs b ≥ 1, but b = 0 here (n = 64)",
    ]


def test_the_number_of_errors_shown_is_capped():
    error = compile_error("causal\n" + "".join(f"let a{k} = 1 // 0\n" for k in range(500)))
    assert len(error.diagnostics) == 51
    assert error.diagnostics[-1].message == "too many errors: stopped after the first 50"
    error = compile_error("".join(f"let a{k} = b{k}\n" for k in range(500)) + "causal")
    assert len(error.diagnostics) == 51
    assert error.diagnostics[-1].message == "450 more errors not shown"
    error = compile_error("x y\n" * 500)
    assert len(error.diagnostics) == 51
    assert error.diagnostics[-1].message.startswith("too many errors")


# ---- particular diagnostics ----------------------------------------------------------


def test_a_parameter_wrong_for_this_n_names_the_value_and_n():
    error = compile_error("stride(n - 64)", n=64)
    assert error.message == "stride(s) needs s ≥ 1, but s = 0 here (n = 64)"
    assert (error.line, error.column) == (1, 8)
    patterndsl.compile("stride(n - 64)", n=65)  # fine for another n
    for text, value in [("window(n // 2 - 40)", "w = -8"), ("chunk(n // 128)", "b = 0"),
                        ("summary(n // 128, 1)", "b = 0"), ("dilated(4, n - 64)", "d = 0")]:
        error = compile_error(text, n=64)
        assert value in error.message and "(n = 64)" in error.message, error.message


def test_errors_inside_a_def_name_the_call():
    text = "def outer(w) = inner(w - 10)\ndef inner(v) = stride(v)\nouter(10)\n"
    error = compile_error(text)
    assert (error.line, error.column) == (2, 23)
    assert error.diagnostics[0].notes == ("in the call inner(0) at line 1, column 16",
                                          "in the call outer(10) at line 3, column 1")


def test_call_notes_are_capped_for_deep_chains():
    text = "def f0(x) = stride(x - 100)\n" + "".join(
        f"def f{k}(x) = f{k - 1}(x)\n" for k in range(1, 30)) + "f29(1)\n"
    notes = compile_error(text).diagnostics[0].notes
    assert len(notes) == 5 and notes[-1] == "… and 26 more enclosing calls"


def test_division_by_zero_names_the_divisor_and_n():
    error = compile_error("let b = n // (n - 64)\nchunk(b)", n=64)
    assert error.message == "division by zero: `n - 64` is 0 when n = 64"
    assert compile_error("window(cdiv(n, n - 64))").message == "division by zero in cdiv: `n - 64` is 0 when n = 64"
    assert compile_error("window(n % 0)").message == "division by zero"


@pytest.mark.parametrize("text, message, hint", [
    ("windw(64)", "unknown primitive or function 'windw'", "did you mean 'window'?"),
    ("let width = 3\nwindow(widht)", "unknown name 'widht'", "did you mean 'width'?"),
    ("def local(w) = window(w)\nlocl(3)", "unknown primitive or function 'locl'",
     "did you mean 'local' or 'global'?"),
    ("random(3, sed=1)", "random has no parameter 'sed'", "did you mean 'seed'?"),
    ("prob softmx\ncausal", "unknown probability map 'softmx'", "did you mean 'softmax'?"),
    ("blocks 64\ncausal", "unexpected '64'; expected '(', an operator or the end of the line",
     "did you mean 'block'?"),
    ("zzz | causal", "unknown name 'zzz'", "define it first with `let zzz = …`"),
])
def test_did_you_mean(text, message, hint):
    error = compile_error(text)
    assert (error.message, error.help) == (message, hint)


@pytest.mark.parametrize("text, message", [
    ("window | causal", "'window' needs an argument list"),
    ("window(1, 2, 3)", "window takes 1 or 2 arguments, got 3"),
    ("dilated(1)", "dilated takes 2 arguments, got 1"),
    ("causal(1)", "'causal' takes no arguments"),
    ("def f(a, b) = window(a)\nf(1)", "f() is missing the argument 'b'"),
    ("def f(a) = window(a)\nf(1, 2)", "f takes 1 argument, got 2"),
    ("global(5..5)", "range 5..5 is empty (n = 64)"),
    ("global(5..2)", "range 5..2 is reversed (n = 64)"),
    ("heads {\n0..2: causal\n3..4: causal\n}", "heads 2..3 have no pattern: the head ranges leave a gap"),
    ("heads {\n0..2: causal\n1..4: causal\n}", "heads 1..2 are given twice: the head ranges overlap"),
    ("heads {\n0..n // 16: causal\n}", "the number of heads cannot depend on n"),
    ("def f(w) = f(w) | causal\nf(1)", "recursive def: 'f' calls itself"),
    ("def f(w) = g(w)\ndef g(w) = f(w)\nf(1)", "recursive def: f → g → f"),
    ("let a = b\nlet b = a\nwindow(a)", "recursive let: a → b → a"),
    ("window(n * n * n * n * n * n * n * n * n * n * n)",
     "integer too large to mean anything: 73786976294838206464 (|value| > 2^62)"),
    ("window(" + "9" * 40 + ")", "number too large: it has 40 digits (the limit is 2^62)"),
    ("window(1.5)", "'1.5' is not an integer: indices and sizes are integers"),
    ("block 48\ncausal", "block size 48 is not a power of two ≥ 16"),
    ("let w = 4", "the file declares no pattern"),
    ("", "the file declares no pattern"),
    ("causal\nwindow(2)", "a file declares one pattern, and this is a second one"),
    ("window(3) + 1", "'+' works on integers, found the pattern `window(3)`"),
    ("| causal", "a line cannot start with '|'"),
    ("window(3) |", "unexpected end of the file; expected an expression"),
    ("let layers = 3\ncausal", "unexpected 'layers'; expected a name"),
    ("window(3)\x00", "unexpected character '\\x00'"),
    ("window(3) | \ud800", "unexpected character '\\ud800'"),
    ("global([0])", "unexpected character '['"),
    ("window(1 << 3)", "unexpected characters '<<'"),
])
def test_messages(text, message):
    assert compile_error(text).message == message


def test_a_def_chain_that_doubles_is_stopped_early():
    text = "def d0(w) = window(w)\n" + "".join(
        f"def d{k}(w) = d{k - 1}(w) | d{k - 1}(w + {2 ** k})\n" for k in range(1, 40)) + "d39(1)\n"
    # Expanded, d39(1) has 2^40 windows; it is stopped once it passes the node limit,
    # after work in proportion to that limit (about 6 steps per node).
    with counted_work(steps=10 * MAX_IR_NODES) as work:
        error = compile_error(text)
    assert "nodes once every def is expanded" in error.message
    assert work["def_bodies"] <= 2 * MAX_IR_NODES


def test_the_work_count_sees_the_work():
    with counted_work() as work:
        patterndsl.compile("def f(x) = window(x) | causal\nf(1) & f(2)", n=8)
    assert work["def_bodies"] == 2 and work["steps"] >= 8 and work["ast_nodes"] >= 8
    with pytest.raises(WorkBudgetExceeded), counted_work(steps=3):
        patterndsl.compile("window(1) | window(2) | window(3)", n=8)


# ---- hostile input ---------------------------------------------------------------------

HOSTILE = {
    "binary junk": bytes(range(256)).decode("latin-1") * 20,
    "10,000 nested parentheses": "(" * 10_000 + "causal" + ")" * 10_000,
    "10,000 unclosed parentheses": "window" + "(" * 10_000,
    "10,000 closing braces": "}" * 10_000,
    "nesting just past the limit": "~" * 120 + "causal",
    "a 10 MB file": "causal\n" + "# padding\n" * 1_000_000,
    "a 270 KB expression": "causal" + " | causal" * 30_000,
    "a 10 MB line": "window(" + "1+" * 5_000_000 + "1)",
    "3,000 chained defs": "def f0(x) = window(x)\n" + "".join(
        f"def f{k}(x) = f{k - 1}(x) & causal\n" for k in range(1, 3000)) + "f2999(1)\n",
    "defs that double the pattern": "def f0(x) = window(x)\n" + "".join(
        f"def f{k}(x) = f{k - 1}(x) | f{k - 1}(x)\n" for k in range(1, 200)) + "f199(1)\n",
    "defs that double and fail": "def f0(x) = stride(x - 100)\n" + "".join(
        f"def f{k}(x) = f{k - 1}(x) | f{k - 1}(x + 1)\n" for k in range(1, 60)) + "f59(1)\n",
    "defs with distinct arguments that double and fail": "def d0(w) = stride(w - 100000000)\n" + "".join(
        f"def d{k}(w) = d{k - 1}(w) + d{k - 1}(w + {2 ** k})\n" for k in range(1, 40)) + "window(1) | d39(1)\n",
    "integer defs that double": "def d0(w) = w\n" + "".join(
        f"def d{k}(w) = d{k - 1}(w) + d{k - 1}(w + {2 ** k})\n" for k in range(1, 40)) + "window(d39(1))\n",
    "lets that square": "let a0 = n\n" + "".join(f"let a{k} = a{k - 1} * a{k - 1}\n" for k in range(1, 200))
                        + "window(a199)\n",
    "5,000 lets in reverse order": "".join(f"let a{k} = a{k + 1} + 1\n" for k in range(5000))
                                   + "let a5000 = 0\nwindow(a0)\n",
    "a 100,000-digit integer": "window(" + "9" * 100_000 + ")",
    "integers just past 2^62": f"window({(1 << 62) + 1})",
    "huge parameters": "dilated(4611686018427387903, 4611686018427387903) | random(4611686018427387903, "
                       "seed=4611686018427387903) | summary(4611686018427387903, 4611686018427387903)",
    "many layers of many heads": "layers {\n" + "heads {\n0..4096: causal\n}\n" * 200 + "}\n",
    "4097 heads": "heads {\n0..4097: causal\n}\n",
    "NUL bytes": "window(3)\x00\x00 | causal\x00",
    "lone surrogates": "let \udc80 = 3\nwindow(\ud800)",
    "a byte-order mark": "\ufeffwindow(3)",
    "CRLF": "let a = 3\r\nwindow(a)\r\n| causal\r\n",
    "tabs and form feeds": "let\ta\t=\t3\f\n\twindow(a)\t|\tcausal\t",
    "only a comment": "# " + "x" * 100_000,
    "unicode everywhere": "let ä = 3\nwindow(٣) | 中文(1) | causal 🙂",
    "500 syntax errors": "window(3) window(4)\n" * 500,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_gives_a_spat_error_or_a_pattern_quickly(name):
    """Quickly: the parser builds at most one syntax-tree node per character (per run),
    and the resolver's work stays within what its limits allow, whatever the input."""
    text = HOSTILE[name]
    runs = (lambda: patterndsl.parse(text), lambda: patterndsl.format(text), lambda: patterndsl.compile(text, n=64))
    with counted_work(**front_end_budget(text, len(runs))):
        for run in runs:
            try:
                run()
            except SpatError as exc:
                rendered = str(exc)
                assert "error:" in rendered and len(rendered) < 40_000
                assert exc.message


def test_hostile_results_for_some_inputs():
    assert compile_error(HOSTILE["10,000 nested parentheses"]).message == \
        "brackets nested too deeply (more than 100 levels)"
    assert compile_error(HOSTILE["a 10 MB file"]).message.startswith("file too large")
    assert compile_error(HOSTILE["3,000 chained defs"]).message == "defs call each other more than 256 levels deep"
    assert compile_error(HOSTILE["defs that double the pattern"]).message.startswith("the pattern grows to")
    assert compile_error(HOSTILE["integer defs that double"]).message == \
        "evaluating `d39(1)` takes more than 200,000 calls of defs"
    assert compile_error(HOSTILE["4097 heads"]).message == "4097 heads is more than patterndsl supports (4096)"
    assert compile_error(HOSTILE["many layers of many heads"]).message.startswith(
        "200 layers × 4,096 heads make 819,200 patterns")
    assert patterndsl.compile(HOSTILE["5,000 lets in reverse order"], n=64).pattern() == \
        patterndsl.compile("window(5000)", n=64).pattern()


def test_deep_but_legal_nesting_works_everywhere(tmp_path, capsys):
    # Just inside the limits, the whole pipeline (IR, printing, masks, the CLI) copes.
    text = "def f0(x) = window(x)\n" + "".join(
        f"def f{k}(x) = ~(f{k - 1}(x) | self)\n" for k in range(1, 50)) + "f49(1)\n"
    compiled = patterndsl.compile(text, n=32)
    assert compiled.raw_patterns[0][0].depth() == 99
    compiled.masks()
    str(compiled.pattern())
    path = tmp_path / "deep.spat"
    path.write_text(text)
    assert main(["compile", str(path), "--n", "32", "--emit", "ir"]) == 0
    assert main(["show", str(path), "--n", "32", "--width", "40"]) == 0
    text = "def f0(x) = window(x)\n" + "".join(
        f"def f{k}(x) = ~(f{k - 1}(x) | self)\n" for k in range(1, 51)) + "f50(1)\n"
    assert compile_error(text).message == "the pattern nests more than 100 operators deep (counting the bodies of defs)"


def test_files_that_are_not_utf8_are_reported(tmp_path):
    path = tmp_path / "junk.spat"
    path.write_bytes(b"window(3) | \xff\xfe causal")
    with pytest.raises(SpatError) as info:
        patterndsl.compile(path, n=8)
    assert "is not UTF-8 text" in info.value.message


# ---- the command line -------------------------------------------------------------------


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def broken(tmp_path):
    path = tmp_path / "broken.spat"
    path.write_text("let w = 64\nwindow(w) | strde(128)\n")
    return path


@pytest.mark.parametrize("argv", [
    ["mask", "{file}", "--n", "64", "-o", "{out}.npy"],
    ["compile", "{file}", "--n", "64", "--target", "torch", "-o", "{out}.pt"],
    ["show", "{file}", "--n", "64"],
    ["compile", "{file}", "--n", "64", "--emit", "ir"],
])
def test_cli_reports_input_errors_on_stderr_with_exit_1(argv, broken, tmp_path, capsys):
    argv = [a.format(file=broken, out=tmp_path / "out") for a in argv]
    code, out, err = run_cli(argv, capsys)
    assert code == 1
    assert out == ""
    assert err == (f"{broken}:2:13: error: unknown primitive or function 'strde'\n"
                   "  window(w) | strde(128)\n"
                   "              ^^^^^^^^^^\n"
                   "help: did you mean 'stride'?\n")
    assert not list(tmp_path.glob("out*"))


def test_cli_syntax_errors_exit_1_for_every_command(tmp_path, capsys):
    path = tmp_path / "syntax.spat"
    path.write_text("window(64 | causal\n")
    for argv in (["fmt", str(path)], ["fmt", "--check", str(path)], ["compile", str(path), "--emit", "ast"],
                 ["mask", str(path), "--n", "8", "-o", str(tmp_path / "m.npy")]):
        code, out, err = run_cli(argv, capsys)
        assert code == 1, argv
        assert err.startswith(f"{path}:1:7: error: unclosed '('\n"), argv
        assert "Traceback" not in out + err


def test_cli_usage_errors_exit_2(broken, capsys):
    for argv in ([], ["mask", str(broken)], ["mask", str(broken), "--n", "0"], ["mask", str(broken), "--n", "x"],
                 ["frobnicate"], ["compile", str(broken), "--emit", "bytecode"]):
        code, out, err = run_cli(argv, capsys)
        assert code == 2, argv
        assert "Traceback" not in out + err


def test_cli_missing_file_is_an_input_error(tmp_path, capsys):
    code, out, err = run_cli(["mask", str(tmp_path / "nope.spat"), "--n", "8"], capsys)
    assert code == 1
    assert "cannot read" in err and "Traceback" not in err


def test_cli_succeeds_on_a_good_file(tmp_path, capsys):
    path = tmp_path / "good.spat"
    path.write_text("window(2) | global(0..1)\n")
    code, out, err = run_cli(["mask", str(path), "--n", "8", "-o", str(tmp_path / "m.npy")], capsys)
    assert code == 0 and (tmp_path / "m.npy").exists()


def test_warnings_are_diagnostics_printed_like_errors():
    from patterndsl.errors import Diagnostic, Source, Span, warning

    source = Source("window(64)\n", "w.spat")
    found = warning("wide window", help="narrow it", span=Span(1, 1, 1, 11))
    assert found.severity == "warning"
    assert found.render(source) == "w.spat:1:1: warning: wide window\n  window(64)\n  ^^^^^^^^^^\n  help: narrow it"
    assert found.to_json() == {"severity": "warning", "message": "wide window", "help": "narrow it",
                               "line": 1, "column": 1}
    assert Diagnostic("bad").render(None) == "error: bad"
    assert Diagnostic("bad").to_json() == {"severity": "error", "message": "bad", "help": None}
    with pytest.raises(ValueError, match="severity"):
        Diagnostic("bad", severity="info")


def _reverse_lets(k):
    return "".join(f"let a{i} = a{i + 1} + 1\n" for i in range(k)) + f"let a{k} = 0\nwindow(a0)\n"


def _cycle_through_a_wide_let(k):
    return ("".join(f"let a{i} = a{i + 1}\n" for i in range(k))
            + f"let a{k} = max({', '.join(f'a{i}' for i in range(0, k, 7))})\nwindow(1)\n")


@pytest.mark.parametrize("make", [_reverse_lets, _cycle_through_a_wide_let])
def test_long_let_chains_cost_linear_work(make):
    # Both were quadratic: asking per let whether it needs a grid walked the whole chain
    # below it, and every recursion cycle searched the file for its shortest path.
    def work(k):
        with counted_work() as counted:
            try:
                patterndsl.compile(make(k), n=64)
            except SpatError:
                pass
        return counted

    small, large = work(1000), work(2000)
    for kind in ("tree_visits", "steps", "ast_nodes"):
        assert large[kind] <= 2.5 * max(small[kind], 1), (kind, small[kind], large[kind])
