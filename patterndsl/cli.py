"""The `patterndsl` command.

Exit codes: 0 success, 1 an error in the input (diagnostics on stderr),
2 a usage error, 3 (check, verify) a condition that fails or is undecided, or a
certificate claim that fails, 4 (verify) no claim fails but some were too costly to
re-check within --budget (they are listed; raise --budget to check them).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from . import ast as A
from .compiled import compile as compile_pattern
from .compiled import decode_source, load_source, parse
from .errors import Source, SpatError
from .formatter import format as format_module
from .reference import parse_size
from .targets import get_target, target_names

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


class UsageError(Exception):
    pass


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _block_size(text: str) -> "int | tuple[int, int]":
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"a block size is B or BQxBK, got {text!r}")
    sizes = tuple(_positive_int(part.strip()) for part in parts)
    return sizes[0] if len(sizes) == 1 else sizes


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patterndsl",
        description="Compile sparse attention patterns written in the .spat language.",
        epilog="Exit codes: 0 success, 1 an error in the input, 2 a usage error, "
               "3 (check, verify) a condition or claim that fails or is undecided, "
               "4 (verify) claims left unchecked within --budget.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, help, many=False):
        sub = commands.add_parser(name, help=help, description=help)
        if many:
            sub.add_argument("files", nargs="+", metavar="FILE", help=".spat files, or - for standard input")
        else:
            sub.add_argument("file", metavar="FILE", help="a .spat file, or - for standard input")
        return sub

    def with_n(sub, required=True):
        sub.add_argument("--n", type=_positive_int, required=required, metavar="N", help="the sequence length")
        sub.add_argument("--memory-budget", type=_size, metavar="SIZE",
                         help="largest dense mask to build, e.g. 4G (default 2G, or PATTERNDSL_MEMORY_BUDGET)")

    mask = command("mask", "write the dense mask as a numpy array [layers, heads, n, n]")
    with_n(mask)
    mask.add_argument("-o", "--output", metavar="OUT", help="output .npy file (default: FILE's name with .npy)")

    comp = command("compile", "compile for a target (see --list-targets), or print the AST or IR")
    with_n(comp, required=False)
    comp.add_argument("--target", default="torch", metavar="NAME", help="the target (default: torch)")
    comp.add_argument("-o", "--output", metavar="OUT", help="output file (default: FILE's name with the target's suffix)")
    comp.add_argument("--emit", choices=["ast", "ir"], help="print the AST, or the IR for --n, instead of compiling")
    comp.add_argument("--no-simplify", action="store_true", help="with --emit ir: the IR before simplification")
    comp.add_argument("--list-targets", action="store_true", help="list the targets and exit")

    show = command("show", "draw the mask in the terminal, one panel per layer and head")
    with_n(show)
    show.add_argument("--width", type=_positive_int, metavar="COLUMNS",
                      help="width of the drawing (default: the terminal's)")
    show.add_argument("--png", metavar="OUT.png",
                      help="draw a picture instead (matplotlib): the block layout and, for n up to 4096, every pair")
    show.add_argument("--block-size", type=_block_size, metavar="B",
                      help="with --png: the block size, B or BQxBK (default: the file's `block`, else 128)")

    layout = command("layout", "print the block layout of every layer and head: blocks computed, "
                               "full and partial, block efficiency, with a warning where it is low")
    with_n(layout)
    layout.add_argument("--block-size", type=_block_size, metavar="B",
                        help="the block size, B or BQxBK (default: the file's `block`, else 128)")
    layout.add_argument("--grid", action="store_true",
                        help="also draw each layout's grid: '#' full, '+' partial, '.' empty")
    layout.add_argument("--json", action="store_true", help="print the layouts' numbers as JSON")

    check = command("check", "prove facts about the pattern: counts, growth, conditions, certificate "
                              "(without --n: the growth as a formula in n)")
    with_n(check, required=False)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--certificate", metavar="CERT", help="write the certificate (JSON) to this file")
    check.add_argument("--budget", type=float, default=10.0, metavar="SECONDS",
                       help="time for searches that may be undecided (default 10)")

    verify = command("verify", "re-check a certificate with an independent checker")
    verify.add_argument("certificate", metavar="CERT", help="a certificate written by `check --certificate`")
    verify.add_argument("--budget", type=_positive_int, default=DEFAULT_VERIFY_BUDGET, metavar="UNITS",
                        help="work allowed per claim, in key intervals and pairs touched (default "
                             f"{DEFAULT_VERIFY_BUDGET:,}); a claim that needs more is listed as unchecked, exit 4")

    fmt = command("fmt", "print a file in canonical form, or check or rewrite several", many=True)
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is not in canonical form")
    mode.add_argument("--write", action="store_true", help="rewrite the file in place")

    from . import experiments

    experiment = commands.add_parser("experiment", help="run one of the seed papers' experiments",
                                     description="run one of the seed papers' experiments")
    experiments.add_parsers(experiment)
    return parser


def _read(path: str) -> Source:
    if path == "-":
        return decode_source(sys.stdin.buffer.read(), "<stdin>")
    return load_source(Path(path))


def _output_path(args, suffix: str) -> Path:
    if args.output:
        return Path(args.output)
    stem = "stdin" if args.file == "-" else Path(args.file).stem
    return Path(stem + suffix)


def _write(path: Path, write) -> None:
    from .errors import Diagnostic

    try:
        write(path)
    except OSError as exc:
        raise SpatError(Diagnostic(f"cannot write {path}: {exc.strerror or exc}")) from None


def run_mask(args) -> int:
    import numpy as np

    compiled = compile_pattern(_read(args.file), args.n, memory_budget=args.memory_budget)
    masks = compiled.dense_all()
    out = _output_path(args, ".npy")
    _write(out, lambda path: np.save(path, masks))
    print(f"wrote {out}: bool {list(masks.shape)} (layers, heads, n, n), "
          f"{int(masks.sum()):,} connections", file=sys.stderr)
    return EXIT_OK


def run_compile(args) -> int:
    if args.list_targets:
        from .targets import TARGETS

        for name in target_names():
            print(f"{name:10} {TARGETS[name].description}")
        return EXIT_OK
    source = _read(args.file)
    if args.emit == "ast":
        print(dump_ast(parse(source)))
        return EXIT_OK
    if args.n is None:
        raise UsageError("--n is required" + (" with --emit ir" if args.emit else ""))
    compiled = compile_pattern(source, args.n, simplify=not args.no_simplify, memory_budget=args.memory_budget)
    if args.emit == "ir":
        print(dump_ir(compiled))
        return EXIT_OK
    try:
        target = get_target(args.target)
    except SpatError as exc:
        raise UsageError(str(exc).removeprefix("error: ")) from None
    out = _output_path(args, target.suffix)
    written = None

    def emit(path):
        nonlocal written
        written = target.emit(compiled, path)

    _write(out, emit)
    print(f"wrote {out}: {written}", file=sys.stderr)
    if target.name in BLOCK_SPARSE_TARGETS:  # warn where the kernels would do mostly wasted work
        from .layout import describe_layouts

        _print_warnings(describe_layouts(compiled)[1])
    return EXIT_OK


BLOCK_SPARSE_TARGETS = ("flex", "triton")


def run_show(args) -> int:
    from .show import render, render_png

    compiled = compile_pattern(_read(args.file), args.n, memory_budget=args.memory_budget)
    if args.png:
        drawn = None

        def draw(path):
            nonlocal drawn
            drawn = render_png(compiled, path, block_size=args.block_size)

        _write(Path(args.png), draw)
        print(f"wrote {args.png}: {drawn}", file=sys.stderr)
        return EXIT_OK
    if args.block_size is not None:
        raise UsageError("--block-size goes with --png")
    width = args.width or shutil.get_terminal_size((80, 24)).columns
    sys.stdout.write(render(compiled, width=max(20, width)))
    return EXIT_OK


def _print_warnings(warnings) -> None:
    for message, help in warnings:
        print(f"warning: {message}\n  help: {help}", file=sys.stderr)


def run_layout(args) -> int:
    import json

    from .layout import describe_layouts, efficiency_warning

    compiled = compile_pattern(_read(args.file), args.n, memory_budget=args.memory_budget)
    if args.json:
        report = []
        for layer in range(compiled.layers):
            for head, layout in enumerate(compiled.layouts(layer, args.block_size)):
                warning = efficiency_warning(compiled.pattern(layer, head), layout)
                report.append({
                    "layer": layer, "head": head, "block_q": layout.block_q, "block_k": layout.block_k,
                    "query_blocks": layout.num_q_blocks, "key_blocks": layout.num_k_blocks,
                    "full": layout.num_full, "partial": layout.num_partial,
                    "connections": layout.connections, "computed_pairs": layout.computed_pairs(),
                    "efficiency": layout.efficiency(), "sparsity": layout.sparsity(),
                    "warning": None if warning is None else {"message": warning[0], "help": warning[1]}})
        print(json.dumps(report, indent=1))
        return EXIT_OK
    text, warnings = describe_layouts(compiled, args.block_size, grid=args.grid)
    print(text)
    _print_warnings(warnings)
    return EXIT_OK


EXIT_CLAIM_FAILS = 3
EXIT_UNCHECKED = 4
DEFAULT_VERIFY_BUDGET = 1 << 31  # patterndsl.verify.DEFAULT_BUDGET, without importing it at startup


def run_check(args) -> int:
    import json

    from .analysis.check import all_hold, check, render

    source = _read(args.file)
    if args.n is None:
        from .analysis.check import render_growth
        from .analysis.growth import growth_formula

        if args.certificate:
            raise UsageError("--certificate needs --n: certificates are about one sequence length")
        report = growth_formula(source)
        sys.stdout.write(json.dumps(report, indent=1) + "\n" if args.json else render_growth(report, source.name))
        return EXIT_OK
    compiled = compile_pattern(source, args.n, memory_budget=args.memory_budget)
    report, cert = check(compiled, budget_seconds=args.budget)
    if args.certificate:
        text = json.dumps(cert, indent=1)
        _write(Path(args.certificate), lambda path: path.write_text(text + "\n", encoding="utf-8"))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        sys.stdout.write(render(report, source.name))
    return EXIT_OK if all_hold(report) else EXIT_CLAIM_FAILS


def run_verify(args) -> int:
    import json

    from .errors import Diagnostic
    from .verify import verify_report

    source = _read(args.file)
    try:
        cert = json.loads(Path(args.certificate).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpatError(Diagnostic(f"cannot read the certificate {args.certificate}: {exc}")) from None
    except RecursionError:
        raise SpatError(Diagnostic(f"cannot read the certificate {args.certificate}: JSON nested too deeply",
                                   help="a certificate written by `check --certificate` nests 5 levels")) from None
    n = cert.get("n") if isinstance(cert, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SpatError(Diagnostic(f"{args.certificate} is not a patterndsl certificate (no valid \"n\")"))
    compiled = compile_pattern(source, n)
    result = verify_report(compiled, cert, max_work=args.budget)
    for failure in result["failures"]:
        print(f"FAILED: {failure}")
    for unchecked in result["unchecked"]:
        print(f"unchecked: {unchecked}")
    if result["failures"]:
        print(f"{args.certificate}: {len(result['failures'])} claim(s) fail")
        return EXIT_CLAIM_FAILS
    if result["unchecked"]:
        print(f"{args.certificate}: no claim fails, but {len(result['unchecked'])} claim(s) were not checked "
              f"within the budget (raise --budget)")
        return EXIT_UNCHECKED
    print(f"{args.certificate}: every claim was checked and holds")
    return EXIT_OK


def run_fmt(args) -> int:
    if not (args.check or args.write) and len(args.files) > 1:
        raise UsageError("printing takes one file; use --check or --write for several")
    status = EXIT_OK
    errors: list[SpatError] = []
    for name in args.files:
        try:
            source = _read(name)
            formatted = format_module(parse(source))
        except SpatError as exc:  # report every file's errors, then fail
            errors.append(exc)
            continue
        if args.check:
            if formatted != source.text:
                print(f"{source.name}: not in canonical form (run `patterndsl fmt --write {source.name}`)",
                      file=sys.stderr)
                status = EXIT_INPUT
        elif args.write:
            if name == "-":
                raise UsageError("--write needs files, not standard input")
            if formatted != source.text:
                _write(Path(name), lambda path: path.write_text(formatted, encoding="utf-8"))
                print(f"reformatted {name}", file=sys.stderr)
        else:
            sys.stdout.write(formatted)
    for exc in errors:
        print(exc, file=sys.stderr)
    return EXIT_INPUT if errors else status


def dump_ast(node, indent: str = "") -> str:
    """The AST as an indented tree, one node per line, with each node's position."""
    lines = []
    stack = [(node, indent, "")]
    while stack:
        current, pad, label = stack.pop()
        if not isinstance(current, A.Node):
            lines.append(f"{pad}{label}{current!r}")
            continue
        fields = {k: v for k, v in vars(current).items() if k not in ("span", "comments", "blank_lines")}
        scalars = {k: v for k, v in fields.items() if not isinstance(v, (A.Node, tuple)) or v == ()}
        where = f"  @{current.span.line}:{current.span.column}" if getattr(current, "span", None) else ""
        head = ", ".join(f"{k}={v!r}" for k, v in scalars.items())
        lines.append(f"{pad}{label}{type(current).__name__}({head}){where}")
        children = []
        for key, value in fields.items():
            if isinstance(value, A.Node):
                children.append((value, pad + "  ", f"{key}: "))
            elif isinstance(value, tuple) and value and key not in scalars:
                for k, item in enumerate(value):
                    children.append((item, pad + "  ", f"{key}[{k}]: "))
        stack.extend(reversed(children))
    return "\n".join(lines)


def dump_ir(compiled) -> str:
    """Each layer's patterns in .spat syntax, heads with the same pattern grouped."""
    from .show import head_ranges

    lines = [f"# n = {compiled.n}, {compiled.layers} layer(s), {compiled.heads} head(s), prob {compiled.prob}"
             + (f", block {compiled.block_size[0]}x{compiled.block_size[1]}" if compiled.block_size else "")]
    for layer, patterns in enumerate(compiled.patterns):
        groups: dict = {}
        for head, pattern in enumerate(patterns):
            groups.setdefault(pattern, []).append(head)
        for pattern, heads in groups.items():
            which = f"heads {head_ranges(heads)}" if len(heads) > 1 else f"head {heads[0]}"
            lines.append(f"layer {layer}, {which}: {pattern}")
    return "\n".join(lines)


def run_experiment(args) -> int:
    from . import experiments

    return experiments.run(args)


COMMANDS = {"mask": run_mask, "compile": run_compile, "show": run_show, "layout": run_layout, "check": run_check,
            "verify": run_verify, "fmt": run_fmt, "experiment": run_experiment}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except SpatError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INPUT
    except UsageError as exc:
        print(f"patterndsl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug in patterndsl, never the user's input: say so, briefly
        print(f"patterndsl: internal error ({type(exc).__name__}: {exc}); please report it with the input file",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
