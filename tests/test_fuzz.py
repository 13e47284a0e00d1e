"""Fuzzing: whatever the input, patterndsl answers with a result or a SpatError.

Random text (the language's own characters and any others: NUL, surrogates,
control characters), random token soup, and mutations of the files in
examples/ go through `parse`, `format` and `compile`; nothing but SpatError may
come out, every diagnostic points inside the text, and no example may take
long (a hypothesis deadline, and an alarm that turns a hang into a failure).
The command line gets the same treatment in-process and, a couple of times, as
a real `patterndsl` process.

With CI=true in the environment each property runs 2,000 examples; locally fewer.
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patterndsl
from patterndsl import SpatError
from patterndsl.cli import main
from patterndsl.errors import LINE_BREAK
from work import counted_work, front_end_budget

ROOT = Path(__file__).resolve().parent.parent
# Seeds for the mutations: the examples, and the test files that use heads, layers and defs
# (but not the one built to take seconds to reject: it would eat the fuzzing time).
SLOW_SEEDS = {"diagnostics/def_chain_doubles.spat"}
EXAMPLE_TEXTS = {f"{path.parent.name}/{path.name}": path.read_text(encoding="utf-8")
                 for folder in ("examples", "tests/golden/cli", "tests/golden/diagnostics")
                 for path in sorted((ROOT / folder).glob("*.spat"))
                 if f"{path.parent.name}/{path.name}" not in SLOW_SEEDS}
CI = bool(os.environ.get("CI"))

# No deadline: how long an example takes depends on the machine's load. A blow-up is
# caught by counting the work instead (`check`, tests/work.py).
FUZZ = settings(
    max_examples=2000 if CI else 200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
# Not a speed check (the work is counted): an example still running after this long is
# stuck in something the counts cannot see (a regular expression, a C loop), and a
# failure is better than a CI job that never ends.
HANG_SECONDS = 120

# ---- what the fuzzers feed in ---------------------------------------------------

LANGUAGE_CHARACTERS = ("abcdefghijklmnopqrstuvwxyz_ABCNXYZ0123456789" "()|&-~+*/%=,.:{}#" " \t\n\r\f")
KEYWORDS = ["let", "def", "block", "prob", "layers", "heads"]
FUNCTIONS = ["all", "none", "self", "causal", "window", "dilated", "stride", "chunk", "summary", "global",
             "rows", "cols", "logsparse", "random", "isqrt", "ilog2", "min", "max", "cdiv", "seed", "softmax"]
CLEAN_TOKENS = (KEYWORDS + FUNCTIONS
                + ["n", "w", "x", "f", "g", "0", "1", "2", "3", "7", "8", "16", "64", "128", "4096", "0.5",
                   "9223372036854775807", "4611686018427387904", "1" * 35,
                   "(", ")", "{", "}", "|", "&", "-", "~", "+", "*", "//", "%", "=", ",", "..", ":",
                   "\n", "\n", "#c\n", "\r\n", "\t"])
TOKENS = CLEAN_TOKENS + ["\x00", "\ud800", "é", "中", "[", "]", "/", "**", ";", "'"]

weird_characters = st.one_of(
    st.characters(),  # anything Unicode has, but surrogates
    st.characters(categories=["Cc", "Cf", "Cs", "Co", "Zl", "Zp"]),  # control, format, surrogate, private
    st.sampled_from(["\x00", "\ufeff", "\u2028", "\r", "\x0b", "\x1c", "\U0001F642"]),
)
random_text = st.text(st.one_of(st.sampled_from(LANGUAGE_CHARACTERS), weird_characters), max_size=200)
token_soup = st.lists(st.one_of(st.sampled_from(CLEAN_TOKENS), st.sampled_from(TOKENS)), max_size=60).map(
    lambda tokens: "".join(t if t in "\n\t" else t + " " for t in tokens))

# Programs that parse, or nearly, but whose meaning is random: wrong arities and
# types, negative, zero and huge values, expressions in n, defs calling defs.
_integers = st.one_of(st.integers(-3, 70).map(str), st.sampled_from(
    ["n", "n - 64", "n // 2", "isqrt(n)", "ilog2(n)", "cdiv(n, 3)", "max(1, n - 100)", "min(n, 0)",
     str(1 << 62), str((1 << 62) + 1), "x", "w", "n % 0", "0 - n"]))
_atoms = st.one_of(
    _integers,
    st.sampled_from(["causal", "all", "none", "self", "logsparse", "f(3)", "g(n)", "f", "window", "p"]),
    st.builds(lambda f, args: f"{f}({', '.join(args)})", st.sampled_from(FUNCTIONS + ["f", "g"]),
              st.lists(st.one_of(_integers, st.builds("{}..{}".format, _integers, _integers),
                                 st.builds("seed={}".format, _integers), st.builds("r={}".format, _integers)),
                       max_size=4)),
)
expressions = st.recursive(_atoms, lambda inner: st.one_of(
    st.builds("({})".format, inner), st.builds("~{}".format, inner), st.builds("-{}".format, inner),
    st.builds("{} {} {}".format, inner, st.sampled_from(["|", "&", "-", "+", "*", "//", "%"]), inner)),
    max_leaves=12)
_declarations = st.one_of(
    st.builds("let {} = {}".format, st.sampled_from(["x", "w", "p", "q", "x"]), expressions),
    st.builds("def {}({}) = {}".format, st.sampled_from(["f", "g", "h"]),
              st.sampled_from(["", "x", "x, w", "x", "w=3", "x, w=n // 4"]), expressions),
    st.builds("block {}".format, st.sampled_from(["16", "64", "n", "48", "0", "64, 128"])),
    st.builds("prob {}".format, st.sampled_from(["softmax", "sparsemax", "hardmax"])),
)
_heads = st.builds("heads {{\n{}\n}}".format, st.lists(
    st.builds("{}..{}: {}".format, st.sampled_from(["0", "1", "2", "4", "x"]),
              st.sampled_from(["1", "2", "4", "8", "n"]), expressions), min_size=1, max_size=3).map("\n".join))
_pattern = st.one_of(
    expressions, _heads,
    st.builds("layers {{\n{}\n}}".format, st.lists(st.one_of(expressions, _heads), max_size=3).map("\n".join)))
programs = st.builds(lambda declarations, pattern: "\n".join(declarations + [pattern]),
                     st.lists(_declarations, max_size=4), _pattern)
sizes = st.sampled_from([1, 2, 3, 7, 16, 64, 100, 257, 4096, 1 << 20])

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\.\.|//|[ \t]+|#[^\n]*|\n|.", re.S)
MUTATIONS = ("delete token", "insert token", "duplicate token", "swap tokens", "replace token",
             "delete character", "insert character", "duplicate line", "delete line", "swap lines")


def mutate(text: str, steps: list[tuple[str, int, int, str]]) -> str:
    """Apply mutation steps (kind, position, other position, inserted text) to ``text``."""
    for kind, a, b, new in steps:
        if kind.endswith("line") or kind == "swap lines":
            lines = text.split("\n")
            i, j = a % len(lines), b % len(lines)
            if kind == "duplicate line":
                lines.insert(i, lines[i])
            elif kind == "delete line":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind.endswith("character"):
            i = a % (len(text) + 1)
            text = text[:i] + new[:1] + text[i:] if kind == "insert character" else text[:i] + text[i + 1:]
        else:
            tokens = _TOKEN.findall(text) or [""]
            i, j = a % len(tokens), b % len(tokens)
            if kind == "delete token":
                del tokens[i]
            elif kind == "insert token":
                tokens.insert(i, new)
            elif kind == "duplicate token":
                tokens.insert(i, tokens[i])
            elif kind == "replace token":
                tokens[i] = new
            else:
                tokens[i], tokens[j] = tokens[j], tokens[i]
            text = "".join(tokens)
    return text


steps = st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 10_000), st.integers(0, 10_000),
                           st.one_of(st.sampled_from(TOKENS), st.text(weird_characters, min_size=1, max_size=2))),
                 min_size=1, max_size=6)
mutated_examples = st.builds(lambda name, s: mutate(EXAMPLE_TEXTS[name], s), st.sampled_from(sorted(EXAMPLE_TEXTS)), steps)


@functools.lru_cache(maxsize=None)
def valid_seeds() -> list[str]:
    def compiles(text):
        try:
            patterndsl.compile(text, n=64)
        except SpatError:
            return False
        return True

    return [text for _, text in sorted(EXAMPLE_TEXTS.items()) if compiles(text)]


def random_mutation(rng: random.Random) -> str:
    """A mutated valid seed drawn from ``rng`` (for the command-line fuzz, which runs without hypothesis)."""
    text = rng.choice(valid_seeds())
    count = rng.randint(1, 4)
    return mutate(text, [(rng.choice(MUTATIONS), rng.randrange(10_000), rng.randrange(10_000),
                          rng.choice(TOKENS + ["\x00", "\ud800", "é"])) for _ in range(count)])


# ---- the checks ------------------------------------------------------------------------


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Turn a hang into a test failure (where there are POSIX alarms, in the main thread)."""
    def hung(signum, frame):
        raise AssertionError(f"still running after {seconds} s: a hang")

    try:
        previous = signal.signal(signal.SIGALRM, hung)
    except (AttributeError, ValueError):  # no SIGALRM here, or not the main thread
        yield
        return
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_error(error: SpatError, text: str):
    """A SpatError is well formed: it renders, and every span lies inside the text."""
    rendered = str(error)
    assert error.diagnostics and error.message
    assert rendered.count("error: ") >= len(error.diagnostics)
    line_count = len(LINE_BREAK.split(text))
    for diagnostic in error.diagnostics:
        span = diagnostic.span
        if span is None:
            continue
        assert 1 <= span.line <= line_count, (diagnostic, line_count)
        assert span.column >= 1 and (span.end_line, span.end_column) >= (span.line, span.column), diagnostic
        assert f"<string>:{span.line}:{span.column}: error: {diagnostic.message}" in rendered
    if error.line is not None:
        assert isinstance(error.line, int) and isinstance(error.column, int)
        assert "^" in rendered


def check(text: str, n: int = 64):
    """parse, format and compile either succeed or raise SpatError, within the work any
    text may cost (tests/work.py)."""
    with no_hang(), counted_work(**front_end_budget(text, runs=3)):
        for run in (patterndsl.parse, patterndsl.format):
            try:
                run(text)
            except SpatError as error:
                check_error(error, text)
        try:
            compiled = patterndsl.compile(text, n=n)
        except SpatError as error:
            check_error(error, text)
            return
        # What compiles can be used: one layer and head's mask, for a small n.
        if n <= 257:
            assert compiled.dense(0, 0).shape == (n, n)


# ---- the properties ------------------------------------------------------------------------


FED_IN = {"random_text": random_text, "token_soup": token_soup, "random_programs": programs,
          "mutated_examples": mutated_examples}


@pytest.mark.parametrize("kind", list(FED_IN))
@FUZZ
@given(data=st.data(), n=sizes)
def test_fuzzed_text(kind, data, n):
    check(data.draw(FED_IN[kind], label=kind), n)


@pytest.mark.parametrize("name", sorted(path.name for path in (ROOT / "examples").glob("*.spat")))
def test_examples_compile_and_their_line_endings_do_not_matter(name):
    text = (ROOT / "examples" / name).read_text(encoding="utf-8")
    reference = patterndsl.compile(text, n=64).patterns
    for newline in ("\r\n", "\r"):
        assert patterndsl.compile(text.replace("\n", newline), n=64).patterns == reference


# ---- the command line ------------------------------------------------------------------------

CLI_FILES = 300 if CI else 60


def cli_commands(path: Path, out: Path, n: int):
    yield ["mask", str(path), "--n", str(n), "-o", str(out / "m.npy")]
    yield ["compile", str(path), "--n", str(n), "--target", "torch", "-o", str(out / "m.pt")]
    yield ["show", str(path), "--n", str(n), "--width", "60"]
    yield ["fmt", str(path)]
    yield ["fmt", "--check", str(path)]
    yield ["compile", str(path), "--emit", "ast"]
    yield ["compile", str(path), "--n", str(n), "--emit", "ir"]


def test_cli_on_mutated_files(tmp_path, capsys):
    rng = random.Random(20240607)
    codes = {0: 0, 1: 0}
    for index in range(CLI_FILES):
        text = random_mutation(rng)
        path = tmp_path / f"mutant{index}.spat"
        data = text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes bytes that are not UTF-8
        path.write_bytes(data)
        commands = list(cli_commands(path, tmp_path, rng.choice([1, 7, 16, 64])))
        argv = commands[index % len(commands)]
        with no_hang():
            code = main(argv)
        captured = capsys.readouterr()
        output = captured.out + captured.err
        assert code in (0, 1), (argv, text, output)
        assert "Traceback" not in output and "internal error" not in output, (argv, text, output)
        if code == 1:  # an error in the input (or `fmt --check` finding a file not canonical): say which
            assert str(path) in captured.err, (argv, text, output)
        codes[code] += 1
    # The mutations reach both outcomes (a fuzzer that only ever fails to parse tests little).
    assert codes[0] > CLI_FILES // 10 and codes[1] > CLI_FILES // 10, codes


def patterndsl_command() -> list[str]:
    found = shutil.which("patterndsl")
    return [found] if found else [sys.executable, "-c", "import sys; from patterndsl.cli import main; sys.exit(main())"]


@pytest.mark.parametrize("junk", [
    bytes(range(256)) * 4,  # binary, not UTF-8
    ("window(64 | ((( \x00 \ud800 " + "global(" * 300).encode("utf-8", "surrogatepass"),
    ("(" * 10_000 + "causal" + ")" * 10_000 + "\n" + "stride(n - 64)\n" * 1000).encode(),
], ids=["binary", "NUL and surrogate", "deep and repeated"])
def test_the_command_on_junk_files(junk, tmp_path):
    path = tmp_path / "junk.spat"
    path.write_bytes(junk)
    for argv in (["mask", str(path), "--n", "64", "-o", str(tmp_path / "out.npy")], ["fmt", "--check", str(path)]):
        result = subprocess.run(patterndsl_command() + argv, capture_output=True, text=True,
                                encoding="utf-8", errors="replace", timeout=120)
        assert result.returncode == 1, result
        assert "Traceback" not in result.stdout + result.stderr
        assert f"{path}" in result.stderr and "error" in result.stderr
